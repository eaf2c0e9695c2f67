"""What int8 or bf16 weights cost on a user's own data: `quantization_report`
runs a model or a recurrent layer and its ``freeze(weights=...)`` copy on the
same inputs and compares (docs/quantization.md)."""
import numpy as np

from ._precision import check_precision

__all__ = ["quantization_report"]


def _errors(ref, got):
    ref = np.asarray(ref, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    diff = np.abs(got - ref)
    top = float(np.abs(ref).max()) if ref.size else 0.0
    mx = float(diff.max()) if diff.size else 0.0
    return mx, (mx / top if top > 0 else 0.0), float(diff.mean()) if diff.size else 0.0


def quantization_report(model, x, lengths=None, weights="int8"):
    """Compare a model or recurrent layer with its int8 or bf16 frozen copy on your data.

    Runs `model` (float32) and ``model.freeze(weights=weights)`` on `x` and
    reports the errors of the narrow copy's outputs (and, for a layer, its
    final states) against float32, and how often the outputs' argmax over the
    last axis agrees (the predicted class, for a classifier).

    Parameters
    ----------
    model : Sequential or RNN or LSTM or GRU
        A float32 model (run with ``predict``) or recurrent layer (run as
        ``layer(x, lengths=lengths)``, in its own layout).
    x : array_like
        The inputs, as `model` takes them.
    lengths : array_like of int, optional
        (N,) valid steps of each sequence.
    weights : {"int8", "bf16"}, default "int8"
        The precision to try.

    Returns
    -------
    dict
        ``weights``; ``max_abs_error``, ``max_rel_error`` (max abs error over
        the largest float32 output magnitude), ``mean_abs_error`` of the
        outputs; for a layer ``state_max_abs_error`` (h_n, and c_n for an
        LSTM); ``argmax_agreement`` (fraction of outputs whose last-axis argmax
        is the same; None when the last axis has one entry); ``frozen``, the
        narrow copy, to keep.

    Raises
    ------
    ValueError
        For weights="float32" or an unknown precision, a model that is already
        narrow, or one the narrow kernels do not run (``freeze`` says why).
    TypeError
        For a `model` without ``freeze(weights=...)``.

    Examples
    --------
    >>> import numpy as np, fastrnn as fr
    >>> model = fr.Sequential([fr.LSTM(4, 8, batch_first=True), fr.LastStep(),
    ...                        fr.Dense(8, 3)], seed=0)
    >>> x = np.random.default_rng(0).standard_normal((16, 10, 4)).astype(np.float32)
    >>> rep = fr.quantization_report(model, x, weights="int8")
    >>> bool(rep["max_rel_error"] < 0.05), bool(rep["argmax_agreement"] >= 0.9)
    (True, True)
    """
    precision = check_precision(weights)
    if precision == "float32":
        raise ValueError("weights: expected 'int8' or 'bf16' (float32 is the reference)")
    if not callable(getattr(model, "freeze", None)):
        raise TypeError(f"model: expected a Sequential or an RNN/LSTM/GRU layer, got "
                        f"{type(model).__name__}")
    layers = getattr(model, "layers", None)
    parts = layers if isinstance(layers, list) else [model]
    for l in parts:
        if getattr(l, "weights_precision", "float32") != "float32":
            raise ValueError(f"model: already frozen with {l.weights_precision} weights; "
                             f"pass the float32 model")
    frozen = model.freeze(weights=precision)
    out = {"weights": precision}
    if isinstance(layers, list):
        ref, got = model.predict(x, lengths=lengths), frozen.predict(x, lengths=lengths)
    else:
        (ref, sref), (got, sgot) = model(x, lengths=lengths), frozen(x, lengths=lengths)
        sref = sref if isinstance(sref, tuple) else (sref,)
        sgot = sgot if isinstance(sgot, tuple) else (sgot,)
        out["state_max_abs_error"] = max(_errors(a, b)[0] for a, b in zip(sref, sgot))
    out["max_abs_error"], out["max_rel_error"], out["mean_abs_error"] = _errors(ref, got)
    ref, got = np.asarray(ref), np.asarray(got)
    if ref.ndim >= 1 and ref.shape[-1] > 1:
        out["argmax_agreement"] = float(np.mean(ref.argmax(-1) == got.argmax(-1)))
    else:
        out["argmax_agreement"] = None
    out["frozen"] = frozen
    return out
