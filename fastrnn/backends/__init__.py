"""Backends: the kernels under the layers, one object per device.

The layers, models and losses never call a compiled module themselves: they
ask for the backend that owns their arrays and call its entry points,

    backend = backends.of(layer.params["weight_hh_l0"])   # NumPy -> "cpu"
    w = backend.rnn_weights(cell, w_ih, w_hh, b_ih, b_hh, I, H, L, D)
    y, h_n, c_n, cache = backend.rnn_forward(w, x, h0, c0, None, lengths, False)

so a second backend (the CuPy one of the GPU issue) plugs in beside the CPU
one without touching layers, models or formats. The contract every backend
keeps is Backend below; docs/architecture.md draws where it sits.

Backends are found by name ("cpu", "cuda") through `get`, or by an array's
type through `of`; a backend's module is imported the first time it is
asked for, so CuPy is imported only when a CUDA array or device is used.
"""
import importlib
import threading

import numpy as np

__all__ = ["Backend", "get", "of", "register", "available", "matmul"]


class Backend:
    """What a backend provides: the entry points the layers, losses and models call.

    Arrays are the backend's own (NumPy for "cpu",
    CuPy for "cuda"); shapes use the letters of src/include/fastrnn.h:
    T steps, B batch, I input size, H hidden size, L layers, D directions,
    G gates (fastrnn._cells). Sequences are time-major (T, B, .) and
    C-contiguous here: the layers have converted and checked them first.
    Every call raises a Python error for what it cannot run, never returns a
    wrong result.

    The entry points::

        name                 "cpu", "cuda", ...

        Recurrent layers with torch's cells (RNN tanh/relu, LSTM, GRU):
        rnn_weights(cell, w_ih, w_hh, b_ih, b_hh, I, H, L, D, writable=False,
                    gru_lbr=1, clip=0.0)
            a handle on the L*D lists of weight arrays (or of their gradients,
            writable=True), checked once. cell: "RNN_TANH", "RNN_RELU", "LSTM"
            or "GRU" (fastrnn._cells). Its methods: matches(store, names,
            gru_lbr, clip) (still the arrays store[names[i]] and these options?),
            keep_read_only() (serving: weights read-only and prepared once;
            returns what was prepared).
        rnn_forward(w, x, h0, c0, dropmask, lengths, training)
            -> (y (T,B,D*H), h_n (L*D,B,H), c_n or None, cache or None)
        rnn_y_batch_first   True when rnn_forward, rnn_forward_rows,
            rnn_qforward and rnn_backward take batch_first=True (optional;
            default False): y then comes back (B,T,D*H), the same values,
            written so by the forward, and rnn_backward reads dy (B,T,D*H)
            (a batch_first layer then copies neither transposed); the other
            arguments keep their layouts
        rnn_backward(w, grads, x, dropmask, lengths, cache, dy, dh_n, dc_n,
                     want_dstate0)
            -> (dx, dh0 or None, dc0 or None); accumulates into grads' arrays
        rnn_stepper(w, params, names)
            the fast path of step(): .run(x_t, state) -> (y_t, state) or None
            (None: not exactly what the kernel takes; the layer's checked path
            then runs), .refresh(params, gru_lbr, clip, active) when the layer's
            options change.

        An embedding before a frozen recurrent stack (optional: without
        it, fastrnn.Sequential's frozen copy runs the layers as they are):
        rnn_rows_tables(w, E) -> list of D arrays (V, G*H), or None
            layer 0's input projection (bias included) of every row of E
            (V, I), one table a direction, bit for bit the rows rnn_forward
            would compute for those inputs; None where no forward would
            read them
        rnn_forward_rows(w, x, ids, tables, h0, c0, lengths)
            -> (y, h_n, c_n or None): rnn_forward's inference with layer 0
            reading row ids[t, b] (int64 (T, B)) of its table where it would
            compute it; x (T, B, I) still holds the input rows, and the
            results are the same bits

        Reduced-precision inference (frozen layers, docs/quantization.md):
        rnn_qweights(cell, precision, w_ih, w_hh, s_ih, s_hh, b_ih, b_hh, I, H, L, D)
            a handle on L*D int8 (precision "int8": int8 values, float32 row
            scales s_ih/s_hh) or bf16 ("bf16": uint16 bit patterns, scales
            None) weight arrays, packed once (a copy).
        rnn_qforward(qw, x, h0, c0, lengths)
            -> (y (T,B,D*H), h_n (L*D,B,H), c_n or None), float32
        rnn_qstepper(qw)
            rnn_stepper's object for a unidirectional qw: .run(x_t, state),
            .refresh(params, gru_lbr, clip, active), the same contract
        quant_kernels(precision) -> the products the next call runs, the
            instruction and its ISA (recorded with benchmark figures).

        Regularized cells (zoneout, recurrent dropout, layer norm), one layer
        and one direction, cell "LSTM", "GRU" or "LNLSTM": reg_forward(...),
        reg_backward(...) (fastrnn._regrun says the arguments).

        Optimizers (optional: without it, fastrnn.optim runs NumPy):
        adam_step(p, g, m, v, vmax, w1, beta2, omb2, bc2_sqrt, eps, neg_step,
                  wd, decay, wd_mode) -> bool
            one Adam / AdamW step in place, the operations and order of
            fastrnn.optim.Adam's NumPy update (src/include/fastrnn_optim.h);
            False, having done nothing, for arrays it does not take.

        Attention pooling (optional: without it, fastrnn.AttentionPooling
        runs NumPy):
        attention_pool(z, v, x, lengths, a, y) -> bool
            after the product z = x W^T + b (B*T, A): tanh over z in place,
            the weights a (B, T) and the pooled y (B, F) of x (B, T, F)
            (src/include/fastrnn_pool.h; lengths int64 (B,) or None);
            False, having done nothing, for arrays it does not take.

        One step of a cell's gate math after its products (optional: without
        it, fastrnn.Seq2Seq's decoder runs NumPy):
        cell_step(cell, pre, gh, h, c, h_out, c_out, cache) -> bool
            LSTM: pre (B, 4H), every product and bias summed, becomes the
            activations; c (B, H) in, c_out and h_out out. GRU: pre = x part
            + b_ih and gh = h part + b_hh (B, 3H), h in, cache (B, 4H: r, z,
            n, gh_n) and h_out out. RNN cells: pre (B, H) -> act over pre and
            into h_out (src/include/fastrnn_cell.h)
        cell_step_backward(cell, acts, h, c, c_out, dh, dy, dc, dgx, dgh, dhp)
            -> bool: the gradients of the step's pre (dgx) and gh (GRU: dgh)
            from dh + dy, dc (LSTM) from dL/dc_out to dL/dc in place, dhp the
            direct part of dL/dh (GRU; else 0); False, having done nothing,
            for arrays it does not take.

        One step of Luong attention (optional: without it, fastrnn.Seq2Seq
        runs NumPy; src/include/fastrnn_attend.h):
        attend(keys, q, enc, mask, a, ctx) -> bool
            the weights a (B, S) and context ctx (B, D) of the query q (B, K)
            over keys (B, S, K) and enc (B, S, D), mask (B, S) added to the
            scores (0, or -inf past a source's end) or None
        attend_backward(keys, enc, a, dctx, mask, ds, dq) -> bool
            from dctx (B, D): the scores' gradient ds (B, S) and the query's
            dq (B, K), overwritten; False, having done nothing, for arrays it
            does not take.

        Dense algebra and losses:
        gemm(a, b, c, trans_a, trans_b, alpha, beta)
            c = alpha op(a) op(b) + beta c in place, bits independent of the
            thread count
        ctc(logits, input_lengths, targets, target_lengths, blank, zero_infinity,
            grad_scale, want_grad) -> (losses (B,) float64, grad or None)

        Threads: num_threads() (what the next call uses).
    """

    name = None
    rnn_y_batch_first = False

    def __repr__(self):
        return f"<fastrnn backend {self.name!r}>"


# name -> module whose `backend` attribute is the Backend instance
_MODULES = {"cpu": "fastrnn.backends.cpu"}
_LOADED = {}
_LOCK = threading.Lock()


def register(name, module):
    """Make a backend available by name, from a module imported when first asked for.

    Parameters
    ----------
    name : str
        The backend's name ("cuda", ...).
    module : str
        A dotted module path whose ``backend`` attribute is a Backend.

    Raises
    ------
    TypeError
        If name or module is not a string.
    """
    if not isinstance(name, str) or not isinstance(module, str):
        raise TypeError("register: name and module are strings")
    with _LOCK:
        _MODULES[name] = module
        _LOADED.pop(name, None)


def available():
    """Return the names of the backends that can be asked for.

    Returns
    -------
    list of str
        Sorted names ("cpu", ...).
    """
    return sorted(_MODULES)


def get(name="cpu"):
    """Return the backend called `name`, importing its module the first time.

    Parameters
    ----------
    name : str, default "cpu"
        A name of `available`.

    Returns
    -------
    Backend
        The backend object.

    Raises
    ------
    ValueError
        For an unknown name.
    ImportError
        If the backend's module cannot be loaded here.
    """
    b = _LOADED.get(name)
    if b is not None:
        return b
    if name not in _MODULES:
        raise ValueError(f"unknown backend {name!r}; available: {available()}")
    with _LOCK:
        b = _LOADED.get(name)
        if b is None:
            try:
                b = importlib.import_module(_MODULES[name]).backend
            except ImportError as e:
                raise ImportError(f"the {name!r} backend cannot be loaded here: {e}") from e
            _LOADED[name] = b
    return b


def of(array):
    """Return the backend that owns an array.

    Parameters
    ----------
    array : array_like or None
        A NumPy array (or None, for layers without parameters): "cpu"; a CuPy
        array: "cuda".

    Returns
    -------
    Backend
        The backend object.

    Raises
    ------
    TypeError
        For a CuPy array when no CUDA backend is registered.
    """
    if array is None or type(array) is np.ndarray or isinstance(array, np.ndarray):
        return get("cpu")
    module = type(array).__module__.split(".")[0]
    if module == "cupy":
        if "cuda" not in _MODULES:
            raise TypeError("got a CuPy (GPU) array, and this fastrnn has no CUDA backend; "
                            "the CPU layers take NumPy arrays (use .get())")
        return get("cuda")
    return get("cpu")


def matmul(a, b, *, trans_a=False, trans_b=False, out=None, beta=0.0):
    """Return ``op(a) @ op(b) (+ beta * out)`` through the GEMM of `a`'s backend.

    The layers' one matrix product: deterministic, its bits independent of
    the thread count (the backend's contract for ``gemm``).

    Parameters
    ----------
    a, b : numpy.ndarray
        2-D arrays of one dtype (made C-contiguous here if they are not).
    trans_a, trans_b : bool, default False
        Use the transpose of `a` (of `b`).
    out : numpy.ndarray, optional
        A C-contiguous (M, N) array to write into; None allocates one.
    beta : float, default 0.0
        With `out`, add ``beta * out`` to the product (0: overwrite).

    Returns
    -------
    numpy.ndarray
        The (M, N) product, `out` when given.
    """
    a = np.ascontiguousarray(a)
    b = np.ascontiguousarray(b)
    M = a.shape[1] if trans_a else a.shape[0]
    N = b.shape[0] if trans_b else b.shape[1]
    if out is None:
        out = np.empty((M, N), dtype=a.dtype)
        beta = 0.0
    of(a).gemm(a, b, out, trans_a, trans_b, 1.0, beta)
    return out

