"""Property-based fuzzing of fastrnn's public entry points (hypothesis).

Every call gets random shapes, dtypes, strides, lengths (valid, 0, negative,
> T, the wrong count, floats), states (right or mismatched), NaN/inf values
and empty batches, and must either give the right answer (checked against an
independent oracle: fastrnn._reference for the recurrent layers, NumPy
formulas for the model layers and losses, brute-force enumeration of
alignments for CTC) or raise ValueError/TypeError; it must never crash, hang
or change its inputs (every input is compared with a copy taken before).

CI runs a few examples per property with a fixed seed (derandomized, a few
seconds in all). FASTRNN_FUZZ_EXAMPLES=N runs N random examples per property
(tools/fuzz_long.py is the long run over all entry points); the seed hypothesis
prints on a failure reproduces it.
"""
import copy
import io
import itertools
import json
import os
import tempfile
import zipfile

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fastrnn as fr  # noqa: E402
from fastrnn import _reference, layers as L, losses as LS, optim  # noqa: E402

_LONG = int(os.environ.get("FASTRNN_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=_LONG or 12, deadline=None, derandomize=not _LONG,
                database=None, suppress_health_check=list(HealthCheck), print_blob=True)
BAD = (ValueError, TypeError)
# NaN/inf inputs make NumPy (the oracles, and the NumPy parts of the library)
# warn about invalid values: expected here
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
CELLS = ("RNN_TANH", "RNN_RELU", "LSTM", "GRU")


# ---------------------------------------------------------------- helpers
def snapshot(value):
    """A deep copy of an argument, to check it was not changed."""
    if isinstance(value, np.ndarray):
        return value.copy()
    return copy.deepcopy(value)


def same(a, b):
    """Equal, NaN included, for arrays, tuples/lists of them and scalars."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if a.dtype.kind in "fc":
            return bool(np.array_equal(a, b, equal_nan=True))
        return bool(np.array_equal(a, b))
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b or (a != a and b != b)


class Unchanged:
    """with Unchanged(x, y, ...): the arguments equal their copies afterwards
    (whatever the call did, raise included)."""

    def __init__(self, *args):
        self.args = args
        self.copies = [snapshot(a) for a in args]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for i, (a, c) in enumerate(zip(self.args, self.copies)):
            assert same(a, c), f"argument {i} was changed by the call"
        return False


def close(actual, expected, dtype, what, scale=None):
    """Compare with NaN positions equal and tolerances of the dtype."""
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    nan_a, nan_e = np.isnan(actual), np.isnan(expected)
    assert np.array_equal(nan_a, nan_e), f"{what}: NaN where the oracle has none, or not NaN"
    fin = np.isfinite(expected)
    assert np.array_equal(actual[~fin & ~nan_e], expected[~fin & ~nan_e]), f"{what}: inf differs"
    if scale is None:
        scale = max(1.0, float(np.max(np.abs(expected[fin]), initial=0.0)))
    if np.dtype(dtype) == np.float32:  # the suite's claim (conftest.assert_close)
        rtol, atol = 2e-4, 1e-5 * scale
    else:
        rtol, atol = 1e-8, 1e-9 * scale
    np.testing.assert_allclose(actual[fin], expected[fin], rtol=rtol, atol=atol, err_msg=what)


def values(data, shape, dtype=np.float64, nonfinite=False, lo=-2.0, hi=2.0):
    """A random array of `shape`, from a seed hypothesis draws (fast for any
    size), sprinkled with NaN/+-inf when `nonfinite`."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    a = rng.uniform(lo, hi, size=shape)
    if nonfinite and a.size:
        k = data.draw(st.integers(1, min(3, a.size)), label="n_nonfinite")
        flat = a.reshape(-1)
        for i in rng.choice(a.size, size=k, replace=False):
            flat[i] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]), label="nonfinite")
    return a.astype(dtype)


def layout(data, arr):
    """The same values as a C-contiguous, Fortran-ordered, strided or
    reversed-stride view, or a nested list."""
    kind = data.draw(st.sampled_from(["c", "f", "strided", "negstride", "list"]), label="layout")
    if kind == "f":
        return np.asfortranarray(arr)
    if kind == "strided" and arr.ndim:
        big = np.repeat(arr, 2, axis=-1)
        big[..., 1::2] = -7.0 if arr.dtype.kind == "f" else 7
        return big[..., ::2]
    if kind == "negstride" and arr.ndim:
        return np.flip(np.flip(arr, axis=0).copy(), axis=0)
    if kind == "list":
        return arr.tolist()
    return arr


_LENGTH_KINDS = ["none", "valid", "valid", "list", "uint8", "zero", "negative", "over", "count",
                 "float", "2d", "bool", "str"]


def draw_lengths(data, T, B, valid_only=False):
    """(lengths argument, valid?) for a batch of B sequences of T steps."""
    kind = data.draw(st.sampled_from(_LENGTH_KINDS[:4] if valid_only else _LENGTH_KINDS),
                     label="lengths")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="lseed"))
    ok = rng.integers(1, T + 1, size=B)
    if kind == "none":
        return None, True
    if kind == "valid":
        return ok.astype(data.draw(st.sampled_from([np.int64, np.int32, np.int16]))), True
    if kind == "list":
        return [int(v) for v in ok], True
    if kind == "uint8":
        return ok.astype(np.uint8), T < 256
    bad = ok.copy()
    i = int(rng.integers(B))
    if kind == "zero":
        bad[i] = 0
    elif kind == "negative":
        bad[i] = -int(rng.integers(1, 5))
    elif kind == "over":
        bad[i] = T + int(rng.integers(1, 5))
    elif kind == "count":
        return np.ones(B + data.draw(st.sampled_from([-1, 1])), np.int64)[:max(B - 1, 0) or B + 1], False
    elif kind == "float":
        return ok.astype(np.float64), False
    elif kind == "2d":
        return ok.reshape(1, B), B == 1 and False
    elif kind == "bool":
        return np.ones(B, bool), False
    elif kind == "str":
        return "3", False
    return bad, False


# ---------------------------------------------------------------- recurrent layers
def make_recurrent(data, unidirectional=False):
    cell = data.draw(st.sampled_from(CELLS), label="cell")
    I = data.draw(st.integers(1, 5), label="I")
    H = data.draw(st.integers(1, 9), label="H")
    Lr = data.draw(st.integers(1, 2), label="num_layers")
    bd = False if unidirectional else data.draw(st.booleans(), label="bidirectional")
    kw = dict(num_layers=Lr, bidirectional=bd, batch_first=data.draw(st.booleans()),
              bias=data.draw(st.booleans()), dtype=data.draw(st.sampled_from(["float32", "float64"])),
              seed=data.draw(st.integers(0, 1000)))
    if cell.startswith("RNN"):
        layer = fr.RNN(I, H, nonlinearity="tanh" if cell == "RNN_TANH" else "relu", **kw)
    else:
        layer = getattr(fr, cell)(I, H, **kw)
    return layer


_X_KINDS = ["ok", "ok", "ok", "int", "float16", "ndim2", "ndim4", "wrong_I", "empty_T",
            "empty_B", "bool", "complex", "ragged", "none"]


def draw_x(data, layer, T, B, nonfinite=False, valid_only=False):
    """(x argument, valid?, time-major float64 values or None)."""
    I = layer.input_size
    kind = data.draw(st.sampled_from(_X_KINDS[:5] if valid_only else _X_KINDS), label="x")
    shape = (B, T, I) if layer.batch_first else (T, B, I)
    if kind in ("ok", "float16", "int"):
        v = values(data, shape, nonfinite=nonfinite and kind == "ok")
        if kind == "int":
            v = np.round(v).astype(np.int32)
        elif kind == "float16":
            v = v.astype(np.float16)
        else:
            v = v.astype(data.draw(st.sampled_from([np.float32, np.float64])))
        arg = layout(data, v)
        tm = np.asarray(v, np.float64)
        tm = tm.transpose(1, 0, 2) if layer.batch_first else tm
        # the layer computes in its dtype: round the oracle's input likewise
        return arg, True, tm.astype(layer.dtype).astype(np.float64)
    if kind == "ndim2":
        return values(data, (T, I)), False, None
    if kind == "ndim4":
        return values(data, (1,) + shape), False, None
    if kind == "wrong_I":
        return values(data, shape[:2] + (I + 1,)), False, None
    if kind == "empty_T":
        s = list(shape)
        s[1 if layer.batch_first else 0] = 0
        return np.zeros(s), False, None
    if kind == "empty_B":
        s = list(shape)
        s[0 if layer.batch_first else 1] = 0
        return np.zeros(s), False, None
    if kind == "bool":
        return np.ones(shape, bool), False, None
    if kind == "complex":
        return np.ones(shape, np.complex64), False, None
    if kind == "ragged":
        return [[[1.0] * I], [[1.0] * I, [2.0] * I]], False, None
    return None, False, None


_STATE_KINDS = ["none", "none", "ok", "ok", "shape", "batch", "tuple", "list", "half"]


def draw_state(data, layer, B, nonfinite=False, valid_only=False):
    """(state argument, valid?, (h0, c0) float64 or (None, None))."""
    K, H = layer.num_layers * layer.num_directions, layer.hidden_size
    lstm = layer.mode == "LSTM"
    kind = data.draw(st.sampled_from(_STATE_KINDS[:4] if valid_only else _STATE_KINDS),
                     label="state")
    if kind == "none":
        return None, True, (None, None)
    shape = (K, B, H)
    h = values(data, shape, nonfinite=nonfinite)
    c = values(data, shape)
    hr = h.astype(layer.dtype).astype(np.float64)
    cr = c.astype(layer.dtype).astype(np.float64)
    if kind == "ok":
        if lstm:
            return (layout(data, h), c), True, (hr, cr)
        # (a nested list would read as a tuple of states: arrays only)
        return h if data.draw(st.booleans()) else np.asfortranarray(h), True, (hr, None)
    if kind == "shape":
        bad = values(data, (K + 1, B, H))
        return ((bad, c) if lstm else bad), False, (None, None)
    if kind == "batch":
        bad = values(data, (K, B + 1, H))
        return ((h, bad) if lstm else bad), False, (None, None)
    if kind == "tuple":  # LSTM wants a pair, the others one array
        return ((h, c, c) if lstm else (h, c)), False, (None, None)
    if kind == "list":  # a list pair is accepted for an LSTM
        return ([h, c] if lstm else [h]), lstm, (hr, cr if lstm else None)
    return ((h, None) if lstm else h[:, :, :max(H - 1, 0)]), False, (None, None)


def oracle(layer, xt, h0, c0, lengths):
    params = {k: v.astype(np.float64) for k, v in layer.params.items()}
    lens = None if lengths is None else np.asarray(lengths, np.int64)
    return _reference.reference_forward(layer.mode, params, xt, h0=h0, c0=c0, lengths=lens,
                                        num_layers=layer.num_layers,
                                        bidirectional=layer.bidirectional)


def state_parts(layer, state):
    return state if layer.mode == "LSTM" else (state, None)


@FUZZ
@given(st.data())
def test_recurrent_call(data):
    """layer(x, state, lengths): the oracle's outputs (NaN where it has NaN)
    or ValueError/TypeError; inputs untouched."""
    layer = make_recurrent(data)
    T, B = data.draw(st.integers(1, 5), label="T"), data.draw(st.integers(1, 4), label="B")
    nonfinite = data.draw(st.booleans(), label="nonfinite")
    good = data.draw(st.booleans(), label="good")  # half: all arguments valid
    x, x_ok, xt = draw_x(data, layer, T, B, nonfinite, valid_only=good)
    state, s_ok, (h0, c0) = draw_state(data, layer, B, nonfinite, valid_only=good)
    lengths, l_ok = draw_lengths(data, T, B, valid_only=good)
    with Unchanged(x, state, lengths):
        if not (x_ok and s_ok and l_ok):
            with pytest.raises(BAD):
                layer(x, state, lengths=lengths)
            return
        y, st_n = layer(x, state, lengths=lengths)
    ey, eh, ec, _ = oracle(layer, xt, h0, c0, lengths)
    if layer.batch_first:
        ey = ey.transpose(1, 0, 2)
    hn, cn = state_parts(layer, st_n)
    assert y.dtype == layer.dtype and hn.dtype == layer.dtype
    close(y, ey, layer.dtype, "y")
    close(hn, eh, layer.dtype, "h_n")
    if cn is not None:
        close(cn, ec, layer.dtype, "c_n")
    if lengths is not None:  # outputs past each length are exactly 0
        lens = np.asarray(lengths)
        ym = y if layer.batch_first else y.transpose(1, 0, 2)
        for b in range(B):
            assert not np.any(ym[b, lens[b]:])


@FUZZ
@given(st.data())
def test_recurrent_forward_backward(data):
    """forward/backward against the oracle's gradients; bad dy/dstate refused
    without losing the forward; inputs untouched."""
    layer = make_recurrent(data)
    T, B = data.draw(st.integers(1, 4), label="T"), data.draw(st.integers(1, 3), label="B")
    good = data.draw(st.integers(0, 3), label="good") > 0  # 3 in 4: all arguments valid
    x, x_ok, xt = draw_x(data, layer, T, B, valid_only=good)
    state, s_ok, (h0, c0) = draw_state(data, layer, B, valid_only=good)
    lengths, l_ok = draw_lengths(data, T, B, valid_only=good)
    with Unchanged(x, state, lengths):
        if not (x_ok and s_ok and l_ok):
            with pytest.raises(BAD):
                layer.forward(x, state, lengths=lengths)
            with pytest.raises(RuntimeError):
                layer.backward(np.zeros(1))
            return
        y, st_n = layer.forward(x, state, lengths=lengths)
    DH = layer.num_directions * layer.hidden_size
    yshape = (B, T, DH) if layer.batch_first else (T, B, DH)
    assert y.shape == yshape
    kind = data.draw(st.sampled_from(["ok", "ok", "ok", "shape", "complex", "dstate_shape",
                                      "dstate_kind"]), label="dy")
    dy = values(data, yshape)
    K, H = layer.num_layers * layer.num_directions, layer.hidden_size
    dh = values(data, (K, B, H))
    dc = values(data, (K, B, H)) if layer.mode == "LSTM" else None
    dstate = (dh, dc) if layer.mode == "LSTM" else dh
    if kind != "ok":
        bad_dy = {"shape": values(data, yshape[:-1] + (DH + 1,)),
                  "complex": dy.astype(np.complex128)}.get(kind, dy)
        bad_ds = {"dstate_shape": (dh[:, :, :0], dc) if dc is not None else dh[:, :, :0],
                  "dstate_kind": (dh, dc, dc) if dc is not None else (dh, dh)}.get(kind, dstate)
        with Unchanged(bad_dy, bad_ds):
            with pytest.raises(BAD):
                layer.backward(bad_dy, bad_ds)
    layer.zero_grad()
    with Unchanged(dy, dstate):
        dx, ds0 = layer.backward(dy, dstate)
    ey, eh, ec, ctx = oracle(layer, xt, h0, c0, lengths)
    dyt = dy.transpose(1, 0, 2) if layer.batch_first else dy
    edx, edh0, edc0, egrads = _reference.reference_backward(ctx, dyt, dh, dc)
    if layer.batch_first:
        edx = edx.transpose(1, 0, 2)
    close(dx, edx, layer.dtype, "dx")
    if state is None:
        assert ds0 is None
    else:
        dh0, dc0 = state_parts(layer, ds0)
        close(dh0, edh0, layer.dtype, "dh0")
        if dc0 is not None:
            close(dc0, edc0, layer.dtype, "dc0")
    for k, g in layer.grads.items():
        close(g, egrads[k], layer.dtype, k)
    with pytest.raises(RuntimeError):  # one backward per forward
        layer.backward(dy, dstate)


@FUZZ
@given(st.data())
def test_recurrent_step(data):
    """step() frame by frame equals the full call; bad frames and states
    refused; a bidirectional layer cannot stream."""
    layer = make_recurrent(data)
    T, B = data.draw(st.integers(1, 4), label="T"), data.draw(st.integers(1, 3), label="B")
    xs = values(data, (T, B, layer.input_size)).astype(layer.dtype)
    if layer.bidirectional:
        with pytest.raises(ValueError, match="bidirectional"):
            layer.step(xs[0])
        return
    bad = data.draw(st.sampled_from([None, None, "shape", "empty", "state", "complex"]))
    if bad is not None:
        K, H = layer.num_layers, layer.hidden_size
        args = {"shape": (xs[0][:, :0], None), "empty": (xs[0][:0], None),
                "complex": (xs[0].astype(np.complex64), None),
                "state": (xs[0], np.zeros((K, B + 1, H)) if layer.mode != "LSTM"
                          else (np.zeros((K, B, H)), np.zeros((K, B, H + 1))))}[bad]
        with Unchanged(*args):
            with pytest.raises(BAD):
                layer.step(*args)
    tm = xs if not layer.batch_first else xs.transpose(1, 0, 2)
    full_y, full_state = layer(tm if not layer.batch_first else tm, None)
    full_y = full_y if not layer.batch_first else full_y.transpose(1, 0, 2)
    state = None
    for t in range(T):
        frame = layout(data, xs[t])
        with Unchanged(frame):
            y_t, state = layer.step(frame, state)
        close(y_t, full_y[t], layer.dtype, f"y[{t}]", scale=1.0 if layer.mode != "RNN_RELU" else None)
    for a, b in zip(state_parts(layer, state), state_parts(layer, full_state)):
        if b is not None:
            close(a, b, layer.dtype, "state")


# ---------------------------------------------------------------- the fast paths
# Shapes that reach each of the fast float32 loops' schedules (src/fast/
# schedule.c; thresholds in src/fast/tuning.h, figures in docs/tuning.md):
# name -> (cells, I, H, B, T, lengths, threads), ranges inclusive; lengths
# "none" (equal lengths, given as None), "random", or "any" of those and an
# array of all T. The
# property draws within each, so a tuning change that moves a threshold
# keeps the regime's name but may need its ranges moved.
FAST_REGIMES = {
    # T*B <= FR_FAST_SMALL_M (8): dot tiles project x in the loop (mode 1)
    "small_m": (CELLS, (3, 20), (8, 40), (1, 2), (1, 4), "any", (1, 2)),
    # 9-15 rows, B <= 8, I and H >= FR_FAST_INLOOP_MIN_SIZE: mode 1, more rows
    "inloop_dot": (CELLS, (64, 80), (64, 80), (2, 2), (5, 7), "any", (1, 3)),
    # 16-1024 rows, B <= FR_FAST_INLOOP_MAX_B: W_ih packed in panels (mode 2)
    "inloop_panels": (CELLS, (64, 90), (64, 100), (1, 3), (16, 20), "any", (1, 3)),
    # ... with a loop too small to split (B*G*H*H < FR_FAST_MIN_WORK) but 2-3
    # threads: the packed projection alone is split between them
    "split_projection": (CELLS, (64, 70), (64, 72), (1, 1), (32, 40), "none", (2, 3)),
    # B = 1 and W_hh over FR_FAST_PACK_MAX_B1 floats: W_hh unpacked for any T
    "b1_big_whh": (("LSTM",), (8, 16), (724, 736), (1, 1), (5, 6), "none", (1, 2)),
    # T < FR_FAST_PACK_MIN_T with a batch over 8: BLAS projection, W_hh unpacked
    "short_t": (CELLS, (5, 20), (16, 48), (9, 14), (1, 3), "any", (1, 3)),
    # ... and the batch split on that unpacked W_hh (16+ rows a thread)
    "short_t_batch_split": (("LSTM", "GRU"), (16, 24), (40, 48), (32, 40), (2, 3), "none",
                            (2, 2)),
    # a large batch in order at 1 thread: the GEMM's row tiles and the rows left
    "gemm_tiles": (CELLS, (5, 24), (24, 64), (17, 50), (4, 6), "none", (1, 1)),
    # equal lengths, FR_FAST_ROWS_MIN_ROWS (16) rows a thread and at least
    # FR_FAST_ROWS_MIN_WORK multiply-adds: the batch split
    "batch_split": (CELLS, (5, 24), (32, 48), (32, 40), (6, 8), "none", (2, 2)),
    # FR_FAST_ROWS4_MIN_ROWS (4) rows a thread, small W_hh, variable lengths:
    # rows dealt out in length order (var_by_rows)
    "batch_split_var": (("LSTM", "GRU"), (5, 24), (32, 40), (14, 20), (8, 10), "random", (2, 3)),
    # 4+ rows a thread with a packed W_hh past FR_FAST_ROWS_MAX_FLOATS (within
    # FR_FAST_ROWS4_MAX_FLOATS): the batch split decided by the 4-row rule
    "rows4_big_whh": (("LSTM",), (20, 50), (190, 230), (8, 12), (6, 8), "none", (2, 2)),
    # the batch split (7-8 rows, a W_hh under FR_FAST_ROWS_MAX_FLOATS) with
    # 3+ rows a thread and mode 2: each thread projects its own rows
    "rows_project": (("LSTM", "GRU"), (24, 40), (61, 80), (7, 8), (15, 20), "none", (2, 2)),
    # variable lengths, fewer than 4 rows a thread, B*G*H*H >= FR_FAST_MIN_WORK:
    # the units split, threads meeting every step
    "units_split": (("LSTM", "GRU"), (64, 72), (96, 136), (3, 7), (6, 10), "random", (2, 3)),
}


def check_fast_case(cell, I, H, B, T, bd, lens_kind, threads, seed, frozen=False, plant=None):
    """One float32 layer on the fast path: inference (also through a frozen
    copy, weights packed once, when `frozen`), training forward and
    backward against the float64 oracle at the suite's claim (rtol 2e-4,
    atol 1e-5 of the largest value). `plant` plants a defect the check must
    catch: "gate" runs the kernels with an LSTM/GRU's first two gates'
    recurrent biases swapped (an RNN's negated); "scale" makes every result
    1e-3 off (relative), the size of error the old 2e-3 tolerance passed."""
    fr.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    kw = dict(bidirectional=bd, seed=seed)
    layer = (fr.RNN(I, H, nonlinearity="tanh" if cell == "RNN_TANH" else "relu", **kw)
             if cell.startswith("RNN") else getattr(fr, cell)(I, H, **kw))
    D = 2 if bd else 1
    x = rng.uniform(-2, 2, (T, B, I)).astype(np.float32)
    h0 = rng.uniform(-1, 1, (D, B, H)).astype(np.float32)
    c0 = rng.uniform(-1, 1, (D, B, H)).astype(np.float32)
    # no lengths is what the kernels call equal lengths; an array of all T
    # ("full") takes the variable-length paths
    lengths = {"none": None, "full": np.full(B, T),
               "random": rng.integers(1, T + 1, size=B)}[lens_kind]
    dy = rng.uniform(-1, 1, (T, B, D * H))
    dh = rng.uniform(-1, 1, (D, B, H))
    dc = rng.uniform(-1, 1, (D, B, H)) if cell == "LSTM" else None
    params = {k: v.astype(np.float64) for k, v in layer.params.items()}
    if plant == "gate":
        for k, b in layer.params.items():
            if k.startswith("bias_hh"):
                if cell.startswith("RNN"):
                    b[...] = -b
                else:
                    b[:2 * H] = np.concatenate([b[H:2 * H], b[:H]])
    state = (h0, c0) if cell == "LSTM" else h0
    off = (lambda a: a * (1 + 1e-3)) if plant == "scale" else (lambda a: a)
    ey, eh, ec, ctx = _reference.reference_forward(
        layer.mode, params, x.astype(np.float64), h0=h0.astype(np.float64),
        c0=c0.astype(np.float64) if cell == "LSTM" else None, lengths=lengths,
        bidirectional=bd)
    y, st_n = layer(x, state, lengths=lengths)
    hn, cn = state_parts(layer, st_n)
    close(off(y), ey, "float32", "y (inference)")
    close(off(hn), eh, "float32", "h_n (inference)")
    if cn is not None:
        close(off(cn), ec, "float32", "c_n (inference)")
    if frozen:
        y, st_n = layer.freeze()(x, state, lengths=lengths)
        close(off(y), ey, "float32", "y (frozen)")
        close(off(state_parts(layer, st_n)[0]), eh, "float32", "h_n (frozen)")
    layer.zero_grad()
    y, _ = layer.forward(x, state, lengths=lengths)
    close(off(y), ey, "float32", "y (training)")
    dx, ds0 = layer.backward(dy.astype(np.float32), (dh.astype(np.float32), dc.astype(np.float32))
                             if cell == "LSTM" else dh.astype(np.float32))
    edx, edh0, edc0, egrads = _reference.reference_backward(ctx, dy, dh, dc)
    close(off(dx), edx, "float32", "dx")
    dh0, dc0 = state_parts(layer, ds0)
    close(off(dh0), edh0, "float32", "dh0")
    if dc0 is not None:
        close(off(dc0), edc0, "float32", "dc0")
    for k, g in layer.grads.items():
        close(off(g), egrads[k], "float32", k)


def draw_fast_case(data, regime):
    cells, I, H, B, T, lens_kind, threads = FAST_REGIMES[regime]
    return dict(cell=data.draw(st.sampled_from(cells), label="cell"),
                I=data.draw(st.integers(*I), label="I"), H=data.draw(st.integers(*H), label="H"),
                B=data.draw(st.integers(*B), label="B"), T=data.draw(st.integers(*T), label="T"),
                bd=data.draw(st.booleans(), label="bidirectional"),
                lens_kind=(data.draw(st.sampled_from(["none", "full", "random"]))
                           if lens_kind == "any" else lens_kind),
                threads=data.draw(st.integers(*threads), label="threads"),
                frozen=data.draw(st.booleans(), label="frozen"),
                seed=data.draw(st.integers(0, 999), label="seed"))


FAST = settings(FUZZ, max_examples=_LONG or 3)


@pytest.mark.parametrize("regime", sorted(FAST_REGIMES))
@FAST
@given(data=st.data())
def test_recurrent_fast_paths(regime, data, restore_threads):
    """Every fast-path schedule, at shapes drawn within its thresholds, 1-3
    threads, the AVX2 (8-float) or AVX-512 (16-float) build where the CPU
    runs it: float32 results and gradients within the suite's claim of the
    float64 oracle."""
    ext = fr.backends.cpu._ext
    if not ext.set_fast_path(True):
        pytest.skip("this CPU has no AVX2/FMA: only the portable path exists")
    ext.set_fast_width(data.draw(st.sampled_from([8, 16]), label="width"))
    try:
        check_fast_case(**draw_fast_case(data, regime))
    finally:
        ext.set_fast_width(16)  # the default: the widest this CPU runs


@pytest.mark.parametrize("plant", ["gate", "scale"])
@pytest.mark.parametrize("regime", ["inloop_panels", "batch_split_var", "units_split"])
def test_fast_paths_catch_planted_defects(regime, plant, restore_threads):
    """check_fast_case fails on a wrong gate and on a 1e-3 relative error
    (which the old 2e-3 tolerance let through), on shapes of three of the
    schedules."""
    cells, I, H, B, T, lens_kind, threads = FAST_REGIMES[regime]
    with pytest.raises(AssertionError):
        check_fast_case(cells[-1], I[0], H[0], B[1], T[1], False,
                        "random" if lens_kind == "any" else lens_kind, threads[1], seed=1,
                        plant=plant)


# ---------------------------------------------------------------- model layers
def _np_act(name, z):
    return {"linear": z, "relu": np.maximum(z, 0), "tanh": np.tanh(z),
            "sigmoid": 1 / (1 + np.exp(-z)),
            "elu": np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
            "leaky_relu": np.where(z > 0, z, 0.01 * z)}[name]


@FUZZ
@given(st.data())
def test_model_layers(data):
    """Each model layer on random (B, F) / (B, T, F) inputs and lengths: the
    NumPy formula, or ValueError/TypeError; backward gives dx of x's shape."""
    kind = data.draw(st.sampled_from(["Dense", "Activation", "Dropout", "Embedding", "LastStep",
                                      "MeanPooling", "MaxPooling", "AttentionPooling"]))
    dtype = data.draw(st.sampled_from(["float32", "float64"]))
    B, T, F = (data.draw(st.integers(0 if i == 0 else 1, 4), label=n) for i, n in
               enumerate("BTF"))
    B = B or data.draw(st.sampled_from([0, 1, 2]), label="B2")
    seq = data.draw(st.booleans(), label="seq") or kind.endswith("Pooling") or kind == "LastStep"
    nonfinite = data.draw(st.booleans(), label="nonfinite")
    lengths, l_ok = draw_lengths(data, T, B) if B else (None, True)
    act = data.draw(st.sampled_from(["relu", "tanh", "sigmoid", "elu", "leaky_relu", None]))
    if kind == "Dense":
        layer = L.Dense(F, data.draw(st.integers(1, 4)), activation=act, dtype=dtype,
                        bias=data.draw(st.booleans()), seed=1)
    elif kind == "Activation":
        layer = L.Activation(act, dtype=dtype)
    elif kind == "Dropout":
        layer = L.Dropout(data.draw(st.sampled_from([0.0, 0.5])), dtype=dtype, seed=0)
    elif kind == "Embedding":
        layer = L.Embedding(F + 2, 3, dtype=dtype, seed=0,
                            padding_idx=data.draw(st.sampled_from([None, 0])))
    elif kind == "AttentionPooling":
        layer = L.AttentionPooling(F, data.draw(st.integers(1, 3)), dtype=dtype, seed=0)
    else:
        layer = getattr(L, kind)(dtype=dtype)
    wrong = data.draw(st.sampled_from([None, None, None, "features", "ndim", "complex"]))
    if kind == "Embedding":
        rng = np.random.default_rng(data.draw(st.integers(0, 99)))
        x = rng.integers(0, F + 2, size=(B, T) if seq else (B,))
        if wrong == "features":
            x = x + (F + 2)  # out of range ids
        elif wrong == "complex":
            x = x.astype(np.float64) + 0.5  # not whole numbers
        elif wrong == "ndim":
            x = np.int64(0)
        x_ok = wrong is None and B > 0
    else:
        shape = (B, T, F) if seq else (B, F)
        x = values(data, shape, nonfinite=nonfinite)
        if wrong == "features" and kind not in ("Activation", "Dropout", "LastStep",
                                                "MeanPooling", "MaxPooling"):
            x = values(data, shape[:-1] + (F + 1,))
        elif wrong == "ndim":
            x = values(data, (B,)) if kind != "Activation" and kind != "Dropout" else x
            wrong = wrong if kind not in ("Activation", "Dropout") else None
        elif wrong == "complex":
            x = x.astype(np.complex128)
        else:
            wrong = None
        x_ok = wrong is None and (B > 0 or kind in ("Activation", "Dropout"))
    if isinstance(x, np.ndarray) and x.ndim and x.size and x.dtype.kind != "c":
        x = layout(data, x)  # (a list of complex or of nothing would lose the dtype)
    if not seq and lengths is not None:
        # lengths need a time axis; Activation ignores them on (B, F)
        l_ok = kind == "Activation"
    if kind == "Dropout":
        l_ok = True  # Dropout ignores lengths (elementwise, no padding semantics)
    with Unchanged(x, lengths):
        if not (x_ok and l_ok):
            with pytest.raises(BAD):
                layer(x, lengths=lengths)
            return
        y = layer(x, lengths=lengths)
    xv = np.asarray(x)
    lens = None if lengths is None or kind == "Dropout" or not seq else \
        np.asarray(lengths).astype(np.int64)
    mask = None if lens is None or not seq else (np.arange(T)[None, :] < lens[:, None])
    f64 = xv.astype(np.float64) if kind != "Embedding" else None
    if kind != "Embedding":
        f64 = f64.astype(dtype).astype(np.float64)
    P = {k: v.astype(np.float64) for k, v in layer.params.items()}
    if kind == "Dense":
        z = f64 @ P["weight"].T + (P["bias"] if "bias" in P else 0)
        ey = _np_act(layer.activation, z)
    elif kind == "Activation":
        ey = _np_act(layer.activation, f64)
    elif kind == "Dropout":
        ey = f64
    elif kind == "Embedding":
        ey = P["weight"][xv]
        if mask is not None:
            ey = ey * mask[:, :, None]
    else:
        m = mask if mask is not None else np.ones((B, T), bool)
        ln = m.sum(axis=1)
        if kind == "LastStep":
            ey = f64[np.arange(B), ln - 1]
        elif kind == "MeanPooling":
            ey = np.where(m[:, :, None], f64, 0).sum(axis=1) / ln[:, None]
        elif kind == "MaxPooling":
            ey = np.where(m[:, :, None], f64, -np.inf).max(axis=1)
            # NaN at a valid step: argmax semantics pick the first NaN
            nanv = np.isnan(np.where(m[:, :, None], f64, 0)).any(axis=1)
            ey = np.where(nanv, np.nan, ey)
        else:
            u = np.tanh(f64 @ P["weight"].T + P["bias"])
            s = np.where(m, u @ P["context"], -np.inf)
            e = np.exp(s - s.max(axis=1, keepdims=True))
            a = e / e.sum(axis=1, keepdims=True)
            ey = np.einsum("bt,btf->bf", a, f64)
    if mask is not None and kind in ("Dense", "Activation"):
        ey = np.where(mask[:, :, None], ey, 0)
    assert y.dtype == np.dtype(dtype)
    if not (nonfinite and kind in ("MaxPooling", "AttentionPooling", "MeanPooling", "Dense")):
        close(y, ey, dtype, kind)
    # training: forward + backward, bad dy refused
    y2 = layer.forward(x, lengths=lengths)
    dy = values(data, y2.shape)
    with pytest.raises(BAD):
        layer.backward(values(data, y2.shape + (2,)))
    y2 = layer.forward(x, lengths=lengths)
    with Unchanged(dy):
        dx = layer.backward(dy)
    if kind == "Embedding":
        assert dx is None
    else:
        assert dx.shape == xv.shape
        if not nonfinite and mask is not None and kind in ("Dense", "Activation", "Dropout"):
            assert not np.any(dx[~mask]), "gradient leaked into padding"
    for g in layer.grads.values():
        if not nonfinite:
            assert np.all(np.isfinite(g))


# ---------------------------------------------------------------- Sequential
def make_model(data, dtype):
    arch = data.draw(st.sampled_from(["emb_lstm_pool", "gru_seq", "rnn_last", "lstm_attn",
                                      "gru_mean_dense"]), label="arch")
    s = data.draw(st.integers(0, 9))
    if arch == "emb_lstm_pool":
        return arch, fr.Sequential([fr.Embedding(7, 3, dtype=dtype), fr.LSTM(3, 4, batch_first=True,
                                    dtype=dtype), fr.MaxPooling(dtype=dtype),
                                    fr.Dense(4, 3, dtype=dtype)], seed=s)
    if arch == "gru_seq":
        return arch, fr.Sequential([fr.GRU(2, 4, batch_first=False, bidirectional=True,
                                           dtype=dtype), fr.Dense(8, 3, dtype=dtype)], seed=s)
    if arch == "rnn_last":
        return arch, fr.Sequential([fr.RNN(2, 3, num_layers=2, batch_first=True, dtype=dtype),
                                    fr.LastStep(dtype=dtype), fr.Dense(3, 1, dtype=dtype)], seed=s)
    if arch == "lstm_attn":
        return arch, fr.Sequential([fr.LSTM(2, 3, batch_first=True, dtype=dtype),
                                    fr.AttentionPooling(3, dtype=dtype),
                                    fr.Dense(3, 3, dtype=dtype)], seed=s)
    return arch, fr.Sequential([fr.GRU(2, 3, batch_first=True, dtype=dtype),
                                fr.MeanPooling(dtype=dtype), fr.Dropout(0.3, dtype=dtype),
                                fr.Dense(3, 1, activation="tanh", dtype=dtype)], seed=s)


@FUZZ
@given(st.data())
def test_sequential_fit_predict(data):
    """compile/fit/predict/evaluate on tiny random data: finite losses and
    right shapes, or ValueError/TypeError; the data is not changed."""
    dtype = data.draw(st.sampled_from(["float32", "float64"]))
    arch, model = make_model(data, dtype)
    N, T = data.draw(st.integers(1, 6), label="N"), data.draw(st.integers(1, 5), label="T")
    rng = np.random.default_rng(data.draw(st.integers(0, 999)))
    if arch == "emb_lstm_pool":
        X = rng.integers(0, 7, size=(N, T))
    else:
        X = rng.standard_normal((N, T, 2))
    seq_out = arch == "gru_seq"
    if arch in ("rnn_last", "gru_mean_dense"):
        loss, y = "mse", rng.standard_normal((N, 1))
    elif seq_out:
        loss, y = "cross_entropy", rng.integers(0, 3, size=(N, T))
    else:
        loss, y = "cross_entropy", rng.integers(0, 3, size=N)
    lengths, l_ok = draw_lengths(data, T, N)
    bad_y = data.draw(st.sampled_from([None, None, None, "count", "class"]))
    if bad_y == "count":
        y = y[:-1] if N > 1 else np.concatenate([y, y])
    elif bad_y == "class" and loss == "cross_entropy":
        y = y + 3
    else:
        bad_y = None
    opt = data.draw(st.sampled_from(["adam", "sgd", "rmsprop", "adamw"]))
    model.compile(loss=loss, optimizer=opt, clip_norm=data.draw(st.sampled_from([None, 1.0])),
                  metrics=["accuracy"] if loss == "cross_entropy" else ["mae"])
    bs = data.draw(st.integers(1, 4))
    with Unchanged(X, y, lengths):
        if not l_ok or bad_y is not None:
            with pytest.raises(BAD):
                model.fit(X, y, lengths=lengths, epochs=1, batch_size=bs, verbose=0, seed=0)
            return
        h = model.fit(X, y, lengths=lengths, epochs=1, batch_size=bs, verbose=0, seed=0)
        p = model.predict(X, lengths=lengths, batch_size=bs)
        ev = model.evaluate(X, y, lengths=lengths)
    assert np.isfinite(h.history["loss"][0]) and np.isfinite(ev["loss"])
    assert p.shape[0] == N and p.dtype == np.dtype(dtype) and np.all(np.isfinite(p))
    if seq_out:
        assert p.shape == (N, T, 3)
        lens = np.full(N, T) if lengths is None else np.asarray(lengths)
        valid = np.arange(T)[None, :] < lens[:, None]
        np.testing.assert_allclose(p.sum(axis=-1)[valid], 1.0, rtol=1e-4)
        assert not np.any(p[~valid])
    for _, param, _ in model.parameters():
        assert np.all(np.isfinite(param))


# ---------------------------------------------------------------- losses
def _log_softmax(z):
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


@FUZZ
@given(st.data())
def test_dense_losses(data):
    """cross entropy, BCE and MSE: NumPy's value and a gradient of output's
    shape and dtype, or ValueError/TypeError."""
    name = data.draw(st.sampled_from(["cross_entropy", "binary_cross_entropy", "mse"]))
    B, T, C = (data.draw(st.integers(1, 4), label=n) for n in "BTC")
    seq = data.draw(st.booleans(), label="seq")
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(data.draw(st.integers(0, 999)))
    shape = (B, T, C) if seq else (B, C)
    out = layout(data, rng.standard_normal(shape).astype(dtype))
    if name == "cross_entropy":
        tgt = rng.integers(0, C, size=shape[:-1])
    elif name == "binary_cross_entropy":
        tgt = rng.uniform(0, 1, size=shape)
    else:
        tgt = rng.standard_normal(shape)
    lengths, l_ok = draw_lengths(data, T, B) if seq else (None, True)
    bad = data.draw(st.sampled_from([None, None, "shape", "class", "complex", "empty"]))
    if bad == "shape":
        tgt = tgt[..., :0] if name != "cross_entropy" else tgt[:1] if B > 1 else np.zeros((2,) + tgt.shape[1:], int)
        if name != "cross_entropy" and tgt.shape == np.shape(out):
            bad = None
    elif bad == "class" and name == "cross_entropy":
        tgt = tgt + C
    elif bad == "complex":
        out = np.asarray(out).astype(np.complex64)
    elif bad == "empty":
        out = np.zeros((0,) + shape[1:], dtype)
    else:
        bad = None
    loss = LS.get(name)
    with Unchanged(out, tgt, lengths):
        if bad is not None or not l_ok:
            with pytest.raises(BAD):
                loss.forward(out, tgt, lengths=lengths)
            return
        v = loss.forward(out, tgt, lengths=lengths)
        g = loss.backward()
    o = np.asarray(out, np.float64)
    m = np.ones(shape[:-1], bool)
    if seq and lengths is not None:
        m = np.arange(T)[None, :] < np.asarray(lengths)[:, None]
    if name == "cross_entropy":
        lp = np.take_along_axis(_log_softmax(o), np.asarray(tgt)[..., None], -1)[..., 0]
        ev = -lp[m].mean()
    elif name == "binary_cross_entropy":
        el = np.maximum(o, 0) - o * tgt + np.log1p(np.exp(-np.abs(o)))
        ev = el[m].mean()
    else:
        ev = ((o - tgt) ** 2)[m].mean()
    assert np.isclose(v, ev, rtol=1e-4 if dtype == np.float32 else 1e-10, atol=1e-6)
    in_dt = np.asarray(out).dtype  # lists come in as float64
    assert g.shape == shape and g.dtype == in_dt and np.all(np.isfinite(g))
    if seq and lengths is not None:
        assert not np.any(g[~m])


def _ctc_brute(lp, target, blank):
    """-log of the summed probability of every alignment of length T that
    collapses (repeats merged, blanks removed) to `target`."""
    T, C = lp.shape
    total = -np.inf
    for path in itertools.product(range(C), repeat=T):
        col = [k for i, k in enumerate(path) if k != blank and (i == 0 or k != path[i - 1])]
        if col == list(target):
            total = np.logaddexp(total, sum(lp[t, k] for t, k in enumerate(path)))
    return -total


@FUZZ
@given(st.data())
def test_ctc(data):
    """CTC on every target form against brute-force enumeration of the
    alignments (inf when none exists); malformed targets, lengths and blanks
    refused."""
    B, T, C = (data.draw(st.integers(1, 3), label="B"), data.draw(st.integers(1, 4), label="T"),
               data.draw(st.integers(2, 3), label="C"))
    blank = data.draw(st.integers(0, C - 1), label="blank")
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(data.draw(st.integers(0, 999)))
    x = rng.standard_normal((B, T, C)).astype(dtype)
    labels = [k for k in range(C) if k != blank]
    tl = rng.integers(0, 4, size=B)
    seqs = [list(rng.choice(labels, size=n)) for n in tl]
    form = data.draw(st.sampled_from(["padded", "list", "concat", "padded_tl"]))
    S = max(max(tl), 1)
    padded = np.full((B, S), -1, np.int64)
    for b, s in enumerate(seqs):
        padded[b, :len(s)] = s
    kwargs = {}
    if form == "padded":
        target = padded
    elif form == "list":
        target = [list(map(int, s)) for s in seqs]
    elif form == "concat":
        target = np.array([k for s in seqs for k in s], np.int64)
        kwargs["target_lengths"] = tl
    else:
        target = np.where(padded < 0, labels[0], padded)
        kwargs["target_lengths"] = tl
    lengths, l_ok = draw_lengths(data, T, B)
    bad = data.draw(st.sampled_from([None, None, None, "label", "blank_label", "gap",
                                     "tl_long", "tl_neg", "blank_range", "ndim"]))
    loss = LS.CTC(blank=blank, zero_infinity=data.draw(st.booleans()))
    ok = l_ok
    if bad == "label" and max(tl) > 0:
        target = padded.copy()
        target[int(np.argmax(tl)), 0] = C
        kwargs, ok = {}, False
    elif bad == "blank_label" and max(tl) > 0:
        target = padded.copy()
        target[int(np.argmax(tl)), 0] = blank
        kwargs, ok = {}, False
    elif bad == "gap" and S >= 2 and max(tl) >= 2:
        target = padded.copy()
        target[int(np.argmax(tl)), 0] = -1
        kwargs, ok = {}, False
    elif bad == "tl_long":
        target, kwargs, ok = padded, {"target_lengths": tl + S + 1}, False
    elif bad == "tl_neg":
        target, kwargs, ok = padded, {"target_lengths": tl - 5}, False
    elif bad == "blank_range":
        loss, ok = LS.CTC(blank=C), False
    elif bad == "ndim":
        target, kwargs, ok = padded[None], {}, False
    with Unchanged(x, target, lengths, kwargs):
        if not ok:
            with pytest.raises(BAD):
                loss.losses(x, target, lengths, **kwargs)
            return
        got = loss.losses(x, target, lengths, **kwargs)
        value = loss.forward(x, target, lengths, **kwargs)
        grad = loss.backward()
    il = np.full(B, T) if lengths is None else np.asarray(lengths)
    lp = _log_softmax(x.astype(np.float64))
    for b in range(B):
        e = _ctc_brute(lp[b, :il[b]], seqs[b], blank)
        if np.isinf(e):
            assert got[b] == (0.0 if loss.zero_infinity else np.inf)
        else:
            assert np.isclose(got[b], e, rtol=1e-5 if dtype == np.float32 else 1e-10), (b, got[b], e)
        assert not np.any(grad[b, il[b]:])
    assert grad.shape == x.shape and grad.dtype == dtype
    assert np.isfinite(value) or (not loss.zero_infinity)


# ---------------------------------------------------------------- optimizers
@FUZZ
@given(st.data())
def test_optimizers(data):
    """Random hyper-parameters (valid or not) and parameters with NaN/inf:
    a step updates in place, leaves the gradients alone and moves nothing
    when the gradient is 0 and no decay applies; bad settings refused."""
    name = data.draw(st.sampled_from(["sgd", "adam", "adamw", "rmsprop"]))
    lr = data.draw(st.sampled_from([0.0, 1e-3, 0.1, 10.0, -1.0, float("nan"), float("inf"), "1"]))
    cfg = {"lr": lr}
    if name == "sgd":
        cfg["momentum"] = data.draw(st.sampled_from([0.0, 0.9, -0.5]))
        cfg["nesterov"] = data.draw(st.booleans()) and cfg["momentum"] > 0
    elif name in ("adam", "adamw"):
        cfg["betas"] = data.draw(st.sampled_from([(0.9, 0.999), (1.0, 0.5), (0.5, -0.1)]))
    else:
        cfg["alpha"] = data.draw(st.sampled_from([0.99, 1.5]))
        cfg["centered"] = data.draw(st.booleans())
    valid = (isinstance(lr, float) and np.isfinite(lr) and lr >= 0
             and cfg.get("momentum", 0) >= 0 and cfg.get("alpha", 0.5) <= 1
             and cfg.get("betas", (0.9, 0.99)) in ((0.9, 0.999), (0.9, 0.99)))
    if not valid:
        with pytest.raises(BAD):
            optim.get(name, **cfg)
        return
    opt = optim.get(name, **cfg)
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    shapes = data.draw(st.lists(st.tuples(st.integers(1, 3), st.integers(1, 3)), min_size=1,
                                max_size=3))
    nonfinite = data.draw(st.booleans())
    params = [("p%d" % i, values(data, s, dtype, nonfinite=nonfinite),
               values(data, s, dtype, nonfinite=nonfinite)) for i, s in enumerate(shapes)]
    zero = data.draw(st.booleans())
    if zero:
        for _, _, g in params:
            g[...] = 0
    opt.attach(params)
    before = [p.copy() for _, p, _ in params]
    with Unchanged(*[g for _, _, g in params]):
        opt.step()
    for (_, p, g), b in zip(params, before):
        assert p.dtype == dtype
        if (zero or lr == 0.0) and not nonfinite:  # (0 * inf is NaN, as in torch)
            assert same(p, b) or name == "adamw"  # AdamW decays even at g = 0
        elif not nonfinite:
            assert np.all(np.isfinite(p))


# ---------------------------------------------------------------- model files
_MODEL_FILE = []


def model_file():
    """(bytes of a saved, compiled and trained model, ids it predicts on);
    made once (a module-level cache: hypothesis would print a fixture's
    value with every failure)."""
    if not _MODEL_FILE:
        m = fr.Sequential([fr.Embedding(6, 3), fr.GRU(3, 4, batch_first=True,
                                                      bidirectional=True),
                           fr.MeanPooling(), fr.Dense(8, 2)], seed=0)
        m.compile(loss="cross_entropy", optimizer="adam", clip_norm=1.0)
        X = np.random.default_rng(0).integers(0, 6, size=(6, 4))
        m.fit(X, np.arange(6) % 2, epochs=1, batch_size=3, verbose=0, seed=0)
        with tempfile.TemporaryDirectory() as folder:   # a cache, not a fixture: no tmp_path
            path = os.path.join(folder, "m.fastrnn")
            m.save(path)
            with open(path, "rb") as f:
                _MODEL_FILE.append((f.read(), X))
    return _MODEL_FILE[0]


def _members(blob):
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _archive(members):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for n, b in members.items():
            zf.writestr(n, b)
    return out.getvalue()


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3), max_leaves=6)


def _mutate(data, blob):
    kind = data.draw(st.sampled_from(["flip", "truncate", "overwrite", "json_value",
                                      "drop", "add", "member_bytes", "npy_header"]), label="mut")
    b = bytearray(blob)
    if kind == "flip":
        for p in data.draw(st.lists(st.integers(0, len(b) - 1), min_size=1, max_size=4)):
            b[p] ^= 1 << data.draw(st.integers(0, 7))
        return bytes(b)
    if kind == "truncate":
        return bytes(b[:data.draw(st.integers(0, len(b) - 1))])
    if kind == "overwrite":
        p = data.draw(st.integers(0, len(b) - 1))
        chunk = data.draw(st.binary(min_size=1, max_size=64))
        b[p:p + len(chunk)] = chunk
        return bytes(b)
    members = _members(blob)
    names = sorted(members)
    if kind == "json_value":
        cfg = json.loads(members["config.json"])
        node, path = cfg, []
        while isinstance(node, (dict, list)) and node and data.draw(st.integers(0, 3)) > 0:
            key = data.draw(st.sampled_from(sorted(node) if isinstance(node, dict)
                                            else list(range(len(node)))))
            path.append(key)
            if not isinstance(node[key], (dict, list)) or not node[key]:
                break
            node = node[key]
        new = data.draw(_JSON_VALUES)
        if path:
            target = cfg
            for k in path[:-1]:
                target = target[k]
            target[path[-1]] = new
        else:
            cfg = new
        members["config.json"] = json.dumps(cfg).encode()
    elif kind == "drop":
        del members[data.draw(st.sampled_from(names))]
    elif kind == "add":
        name = data.draw(st.sampled_from(["arrays/model/9.w.npy", "../x.npy", "arrays/a.pkl",
                                          "/etc/passwd", "arrays\\b.npy", "config.json.bak"]))
        members[name] = data.draw(st.binary(max_size=64))
    elif kind == "member_bytes":
        members[data.draw(st.sampled_from(names))] = data.draw(st.binary(max_size=200))
    else:
        name = data.draw(st.sampled_from([n for n in names if n.endswith(".npy")]))
        arr = np.lib.format.read_array(io.BytesIO(members[name]), allow_pickle=False)
        new = data.draw(st.sampled_from(["f8", "i8", "O", "T", "0d", "big"]))
        out = io.BytesIO()
        if new == "O":
            np.save(out, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        elif new == "T":
            np.save(out, np.asfortranarray(np.atleast_2d(arr).T))
        elif new == "0d":
            np.save(out, np.float32(1))
        elif new == "big":
            np.save(out, np.zeros(arr.size + 1000, arr.dtype))
        else:
            np.save(out, arr.astype(new))
        members[name] = out.getvalue()
    return _archive(members)


@FUZZ
@given(st.data())
def test_load_mutated_files(data):
    """fr.load on a valid file with bits flipped, bytes cut or overwritten, or
    members dropped, added or edited: a working model or a ValueError naming
    fr.load (FileNotFoundError only for a missing path); never another
    exception, never code run."""
    blob, X = model_file()
    bad = _mutate(data, blob)
    try:
        m = fr.load(bad)
    except ValueError as e:
        assert "fr.load" in str(e)
        return
    try:
        p = m.predict(X)
    except BAD:
        return  # a legal but different model (e.g. another vocabulary size)
    assert p.shape[0] == X.shape[0]


# ---------------------------------------------------------------- helpers of the API
@FUZZ
@given(st.data())
def test_decoders_and_padding(data):
    """ctc_greedy_decode / ctc_beam_decode / pad_sequences on random input."""
    B, T, C = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 5)), data.draw(st.integers(2, 4)))
    x = values(data, (B, T, C), nonfinite=data.draw(st.booleans()))
    lengths, l_ok = draw_lengths(data, T, B)
    with Unchanged(x, lengths):
        for fn in (fr.ctc_greedy_decode, lambda *a: fr.ctc_beam_decode(*a, beam_width=3)):
            if not l_ok:
                with pytest.raises(BAD):
                    fn(x, lengths)
                continue
            out = fn(x, lengths)
            assert len(out) == B
            for b, seq in enumerate(out):
                assert all(0 < k < C for k in seq)  # blank 0 never emitted
    seqs = [values(data, (n, 2)) for n in data.draw(st.lists(st.integers(0, 3), min_size=0,
                                                            max_size=3))]
    with Unchanged(seqs):
        if not seqs or any(len(s) == 0 for s in seqs):
            with pytest.raises(BAD):
                fr.pad_sequences(seqs)
        else:
            padded, lens = fr.pad_sequences(seqs)
            assert list(lens) == [len(s) for s in seqs]
            for s, row, n in zip(seqs, padded, lens):
                assert same(row[:n], s) and not np.any(row[n:])


# ---------------------------------------------------------------- foreign arrays
class _FakeCupy:
    """Stands for a CuPy (GPU) array: what to_numpy recognises it by."""
    __module__ = "cupy._core.core"

    def get(self):  # pragma: no cover - never called
        raise AssertionError("the GPU array was read")


def test_wrong_device_and_foreign_arrays():
    """GPU (CuPy) arrays and torch tensors that cannot be read on the CPU (meta
    device, float8) get a TypeError naming the argument; bfloat16 and
    requires_grad tensors are read like any array-like."""
    lstm = fr.LSTM(3, 4, seed=0)
    for bad in (_FakeCupy(), object(), "abc", {"a": 1}):
        with pytest.raises(TypeError, match="^x: "):
            lstm(bad)
    with pytest.raises(TypeError, match=r"^state\[0\] \(h\): got a CuPy"):
        lstm(np.zeros((2, 1, 3)), (_FakeCupy(), _FakeCupy()))
    torch = pytest.importorskip("torch")
    for bad in (torch.zeros(2, 1, 3, device="meta"), torch.zeros(2, 1, 3, dtype=torch.float8_e4m3fn)):
        with pytest.raises(TypeError, match="^x: cannot read"):
            lstm(bad)
        with pytest.raises(TypeError, match="^lengths: cannot read"):
            lstm(np.zeros((2, 1, 3)), lengths=torch.ones(1, dtype=torch.int64, device="meta"))
        lstm.forward(np.zeros((2, 1, 3)))
        with pytest.raises(TypeError, match="^dy: cannot read"):
            lstm.backward(torch.zeros(2, 1, 4, dtype=bad.dtype, device=bad.device))
    x = torch.randn(2, 1, 3, requires_grad=True)
    np.testing.assert_array_equal(lstm(x)[0], lstm(x.detach().numpy())[0])
    xb = torch.randn(2, 1, 3).to(torch.bfloat16)
    np.testing.assert_array_equal(lstm(xb)[0], lstm(xb.float().numpy())[0])
