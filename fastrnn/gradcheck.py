"""fr.check_gradients: a layer's backward against float64 central differences.

    report = fr.check_gradients(layer, x)            # raises on a mismatch
    report = fr.check_gradients(layer, x, raise_on_failure=False)
    print(report)                                     # one line per array

The check runs the layer through the model protocol (apply / apply_backward,
batch-first, as Sequential runs it) on a float64 copy of it, with the loss
L = sum(y * R) for a fixed random R of the output's shape: backward(R) gives
dL/dx and dL/dp, and (L(v + eps) - L(v - eps)) / (2 eps) estimates each entry
v of x and of every parameter. Dropout masks are drawn again from one seed
before every forward, so each one sees the same masks.
"""
import numpy as np

from ._validate import positive_int, to_numpy
from .layers import Layer, copy_without_ctx

__all__ = ["check_gradients", "GradientReport", "GradientCheckError"]


class GradientCheckError(AssertionError):
    """Raised by fr.check_gradients when a backward disagrees with the finite difference.

    Parameters
    ----------
    message : str
        The worst entry, said in words.
    report : GradientReport
        Every array's result, kept as the ``report`` attribute.

    Examples
    --------
    >>> import fastrnn as fr
    >>> issubclass(fr.GradientCheckError, AssertionError)
    True
    """

    def __init__(self, message, report):
        super().__init__(message)
        self.report = report


class GradientReport:
    """What fr.check_gradients found.

    Parameters
    ----------
    layer_name : str
        The checked layer's class name.
    results : dict
        As the attribute below.
    worst : tuple or None
        As the attribute below.
    rtol, atol : float
        The tolerances the entries were held to.

    Attributes
    ----------
    results : dict
        {array name: dict(worst=(index, analytic, numeric), max_abs_err,
        max_rel_err, checked, failed)} for "x" (float inputs only) and each
        parameter.
    passed : bool
        True when every checked entry agrees within ``atol + rtol * abs(numeric)``.
    worst : tuple or None
        (array name, index, analytic, numeric) of the entry furthest outside
        the tolerance (or closest to it when all pass).

    Examples
    --------
    >>> import numpy as np
    >>> import fastrnn as fr
    >>> x = np.random.default_rng(0).standard_normal((4, 3))
    >>> report = fr.check_gradients(fr.Dense(3, 2, seed=0), x)
    >>> report.passed, sorted(report.results)
    (True, ['bias', 'weight', 'x'])
    """

    def __init__(self, layer_name, results, worst, rtol, atol):
        self.layer_name = layer_name
        self.results = results
        self.worst = worst
        self.rtol, self.atol = rtol, atol
        self.passed = all(r["failed"] == 0 for r in results.values())

    def __bool__(self):
        return self.passed

    def __str__(self):
        head = (f"check_gradients({self.layer_name}): "
                f"{'passed' if self.passed else 'FAILED'} (rtol {self.rtol:g}, "
                f"atol {self.atol:g})")
        rows = [head]
        for n, r in self.results.items():
            idx, a, b = r["worst"]
            rows.append(f"  {n}: {r['checked']} entries, {r['failed']} failed, max abs error "
                        f"{r['max_abs_err']:.3g}; worst at {idx}: backward {a:.8g}, "
                        f"finite difference {b:.8g}")
        return "\n".join(rows)

    __repr__ = __str__


def _float64_twin(layer):
    """A float64 copy of `layer` with the same parameter values."""
    if np.dtype(layer.dtype) == np.float64:
        return copy_without_ctx(layer)
    cfg = dict(layer.get_config())
    if "dtype" not in cfg:
        raise TypeError(f"layer: {type(layer).__name__} is {np.dtype(layer.dtype).name} and "
                        "its get_config() has no 'dtype' to build a float64 copy from; "
                        "pass a float64 layer")
    cfg["dtype"] = "float64"
    try:
        twin = type(layer)(**cfg)
    except (TypeError, ValueError) as e:
        raise TypeError(f"layer: cannot build a float64 copy of {type(layer).__name__} from "
                        f"its get_config() ({e}); pass a float64 layer") from None
    twin.load_state_dict({n: np.asarray(p, np.float64) for n, p in layer.params.items()})
    twin.train(layer.training)
    return twin


def check_gradients(layer, x, lengths=None, training=True, eps=1e-6, rtol=1e-5, atol=1e-6,
                    max_entries=64, seed=0, raise_on_failure=True):
    """Check a layer's backward against float64 central differences.

    Runs a float64 copy of `layer` (the layer itself is not changed) on `x`
    as a model runs it, takes L = sum(y * R) with a fixed random R, and
    compares dL/dx (float inputs) and dL/dp of every parameter from the
    layer's backward with (L(v + eps) - L(v - eps)) / (2 eps).

    Parameters
    ----------
    layer : fr.Layer
        Any layer, built-in or a subclass written in NumPy. A float32 layer
        is rebuilt in float64 from its get_config() and parameters.
    x : array_like
        An input batch, batch-first: (B, F), (B, T, F), or (B, T) ids for an
        Embedding (ids get no gradient and are not checked).
    lengths : array_like of int, optional
        (B,) valid lengths of a sequence batch.
    training : bool, default True
        Run forward in training mode (dropout masks are redrawn from one seed
        before each forward, so every evaluation sees the same masks).
    eps : float, default 1e-6
        The finite-difference step.
    rtol, atol : float, default 1e-5, 1e-6
        An entry fails when ``abs(backward - numeric) > atol + rtol * abs(numeric)``.
    max_entries : int or None, default 64
        At most this many entries per array (chosen at random with `seed`,
        the largest-magnitude gradient entry always among them); None checks
        every entry (two forwards each).
    seed : int, default 0
        Seeds R, the entries chosen and the dropout masks.
    raise_on_failure : bool, default True
        Raise GradientCheckError when an entry fails; else return the report.

    Returns
    -------
    GradientReport
        Per array: entries checked and failed, the largest error and the
        worst entry; `passed`; `worst`.

    Raises
    ------
    GradientCheckError
        (an AssertionError) with the worst entry, when raise_on_failure and an
        entry fails; its `report` attribute holds the whole report.
    TypeError
        `layer` is not an fr.Layer, or cannot be copied in float64.
    ValueError
        eps, rtol, atol or max_entries out of range; the layer's own errors
        for a bad x.

    Examples
    --------
    >>> import numpy as np, fastrnn as fr
    >>> x = np.random.default_rng(0).standard_normal((3, 5, 4))
    >>> fr.check_gradients(fr.LSTM(4, 6, batch_first=True, seed=0), x).passed
    True
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"layer: expected an fr.Layer, got {type(layer).__name__}")
    for name, v in (("eps", eps), ("rtol", rtol), ("atol", atol)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v >= 0) or \
                (name == "eps" and v == 0):
            raise ValueError(f"{name}: expected a number {'> 0' if name == 'eps' else '>= 0'}, "
                             f"got {v!r}")
    if max_entries is not None:
        max_entries = positive_int(max_entries, "max_entries")
    L = _float64_twin(layer)
    xin = to_numpy(x, "x")
    is_float = xin.dtype.kind == "f"
    xv = xin.astype(np.float64) if is_float else xin.copy()
    rng = np.random.default_rng(seed)
    dropout_seed = int(rng.integers(2**31))

    def run(xa):
        L._reseed_dropout(dropout_seed)
        y, _ = L.apply(xa, lengths, None, training)
        return y

    y = run(xv)
    R = rng.standard_normal(np.shape(y))
    L.zero_grad()
    dx = L.apply_backward(R)
    analytic = {}
    if is_float:
        if dx is None:
            raise ValueError("x: the layer returned no gradient (None) for a float input")
        analytic["x"] = (xv, np.asarray(dx, np.float64))
    for n, p in L.params.items():
        analytic[n] = (p, np.array(L.grads[n], np.float64))

    def loss():
        return float(np.sum(run(xv) * R))

    results, worst, worst_score = {}, None, -1.0
    for name, (arr, grad) in analytic.items():
        flat = arr.reshape(-1)  # a view: x and the parameters are contiguous
        if not np.shares_memory(flat, arr):
            raise TypeError(f"{name}: not a contiguous array, cannot be perturbed in place")
        n = flat.size
        if max_entries is None or n <= max_entries:
            idx = np.arange(n)
        else:
            big = int(np.argmax(np.abs(grad.reshape(-1))))
            rest = rng.choice(n, size=max_entries - 1, replace=False)
            idx = np.unique(np.r_[big, rest])
        g = grad.reshape(-1)
        res = dict(checked=0, failed=0, max_abs_err=0.0, max_rel_err=0.0, worst=None)
        best = -1.0
        for i in idx:
            v = flat[i]
            flat[i] = v + eps
            lp = loss()
            flat[i] = v - eps
            lm = loss()
            flat[i] = v
            num = (lp - lm) / (2 * eps)
            a = float(g[i])
            err = abs(a - num)
            tol = atol + rtol * abs(num)
            score = err / tol if tol > 0 else (np.inf if err > 0 else 0.0)
            res["checked"] += 1
            res["failed"] += int(not err <= tol)
            res["max_abs_err"] = max(res["max_abs_err"], err)
            res["max_rel_err"] = max(res["max_rel_err"], err / max(abs(num), abs(a), 1e-300))
            where = tuple(int(k) for k in np.unravel_index(i, arr.shape))
            if not score <= best:
                best = score
                res["worst"] = (where, a, num)
            if not score <= worst_score:
                worst_score = score
                worst = (name, where, a, num)
        results[name] = res
    report = GradientReport(type(layer).__name__, results, worst, rtol, atol)
    if raise_on_failure and not report.passed:
        name, where, a, num = worst
        raise GradientCheckError(
            f"check_gradients({type(layer).__name__}): backward disagrees with the finite "
            f"difference; worst entry {name}{list(where)}: backward {a:.8g}, finite "
            f"difference {num:.8g} (|error| {abs(a - num):.3g} > atol + rtol*|numeric| = "
            f"{atol + rtol * abs(num):.3g})\n{report}", report)
    return report
