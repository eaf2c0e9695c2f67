"""One step of a cell's gate math after its products (src/include/fastrnn_cell.h,
the backend's cell_step / cell_step_backward, which fastrnn.Seq2Seq's decoder
runs): forward and backward against the header's formulas in float64 on odd
sizes and batch 1, the backward against central differences, the fast and
portable float32 paths, bits independent of the thread count, and what the
boundary declines or refuses. The whole decoder through it is checked
against torch in tests/parity/test_seq2seq_torch_twin.py."""
import numpy as np
import pytest

import fastrnn as fr
from fastrnn.backends import cpu
from fastrnn.backends.cpu import _ext

CELLS = ("LSTM", "GRU", "RNN_TANH", "RNN_RELU")
G = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}
SIZES = [(1, 1), (1, 17), (3, 7), (2, 33), (5, 64), (64, 40)]


def sig(x):
    return 1 / (1 + np.exp(-x))


def ref_forward(cell, pre, gh, h, c):
    """The header's forward in float64: (activations or cache, h_out, c_out)."""
    H = h.shape[1]
    if cell == "LSTM":
        i, f = sig(pre[:, :H]), sig(pre[:, H:2 * H])
        g, o = np.tanh(pre[:, 2 * H:3 * H]), sig(pre[:, 3 * H:])
        c_out = f * c + i * g
        return np.concatenate([i, f, g, o], 1), o * np.tanh(c_out), c_out
    if cell == "GRU":
        r, z = sig(pre[:, :H] + gh[:, :H]), sig(pre[:, H:2 * H] + gh[:, H:2 * H])
        n = np.tanh(pre[:, 2 * H:] + r * gh[:, 2 * H:])
        return np.concatenate([r, z, n, gh[:, 2 * H:]], 1), (1 - z) * n + z * h, None
    a = np.tanh(pre) if cell == "RNN_TANH" else np.maximum(pre, 0)
    return a, a, None


def inputs(cell, B, H, dtype, seed):
    rng = np.random.default_rng(seed)
    r = lambda *s: (2 * rng.standard_normal(s)).astype(dtype)  # noqa: E731
    return dict(pre=r(B, G[cell] * H), gh=r(B, 3 * H), h=r(B, H), c=r(B, H),
                dh=r(B, H), dy=r(B, H), dc=r(B, H))


def run_forward(cell, a, threads=None):
    """The kernel's forward on copies: (acts, h_out, c_out)."""
    B, H = a["h"].shape
    pre = a["pre"].copy()
    h_out = np.empty((B, H), pre.dtype)
    c_out = np.empty((B, H), pre.dtype)
    cache = np.empty((B, 4 * H), pre.dtype)
    n = threads or _ext.num_threads()
    assert _ext.cell_step(_ext.CELLS[cell], pre, a["gh"], a["h"], a["c"], h_out, c_out,
                          cache, n)
    return (cache if cell == "GRU" else pre), h_out, (c_out if cell == "LSTM" else None)


def run_backward(cell, a, acts, c_out, threads=None):
    """The kernel's backward: (dgx, dgh, dhp, dc)."""
    B, H = a["h"].shape
    dt = a["h"].dtype
    dgx = np.empty((B, G[cell] * H), dt)
    dgh = np.empty((B, 3 * H), dt)
    dhp = np.empty((B, H), dt)
    dc = a["dc"].copy()
    n = threads or _ext.num_threads()
    assert _ext.cell_step_backward(_ext.CELLS[cell], acts, a["h"], a["c"], c_out, a["dh"],
                                   a["dy"], dc, dgx, dgh, dhp, n)
    return dgx, (dgh if cell == "GRU" else None), dhp, (dc if cell == "LSTM" else None)


def loss_of(cell, a, w_h, w_c):
    """A scalar of the step's outputs in float64: sum(w_h h_out) + sum(w_c c_out)."""
    _, h_out, c_out = ref_forward(cell, a["pre"], a["gh"], a["h"], a["c"])
    return float((w_h * h_out).sum() + (0 if c_out is None else (w_c * c_out).sum()))


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-13), ("float32", 3e-6)])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("cell", CELLS)
def test_forward_matches_the_header(cell, size, dtype, tol):
    B, H = size
    a = inputs(cell, B, H, dtype, seed=B * 100 + H)
    acts, h_out, c_out = run_forward(cell, a)
    want = ref_forward(cell, *(a[k].astype(np.float64) for k in ("pre", "gh", "h", "c")))
    for got, exp in zip((acts, h_out, c_out), want):
        if exp is not None:
            np.testing.assert_allclose(got, exp, rtol=tol, atol=tol)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("cell", CELLS)
def test_backward_matches_central_differences_float64(cell, size):
    """dL/dpre, dL/dgh (GRU), the direct dL/dh (GRU) and dL/dc (LSTM) of
    L = sum(dh' h_out) + sum(dc' c_out), with dh' = dh + dy, against central
    differences of the header's forward."""
    B, H = size
    a = inputs(cell, B, H, np.float64, seed=7 + B * H)
    if cell == "RNN_RELU":  # keep every pre-activation away from relu's kink
        a["pre"] += np.where(a["pre"] >= 0, 0.1, -0.1)
    acts, _, c_out = run_forward(cell, a)
    dgx, dgh, dhp, dc = run_backward(cell, a, acts, c_out)
    w_h, w_c = a["dh"] + a["dy"], a["dc"]
    eps = 1e-6

    def numeric(name):
        g = np.zeros_like(a[name])
        for idx in np.ndindex(*g.shape):
            old = a[name][idx]
            a[name][idx] = old + eps
            up = loss_of(cell, a, w_h, w_c)
            a[name][idx] = old - eps
            down = loss_of(cell, a, w_h, w_c)
            a[name][idx] = old
            g[idx] = (up - down) / (2 * eps)
        return g

    if B * H > 300:   # central differences element by element: small sizes only
        pytest.skip("covered by the smaller sizes")
    np.testing.assert_allclose(dgx, numeric("pre"), rtol=1e-6, atol=1e-8)
    if cell == "GRU":
        np.testing.assert_allclose(dgh, numeric("gh"), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(dhp, numeric("h"), rtol=1e-6, atol=1e-8)
    else:
        assert np.all(dhp == 0)
    if cell == "LSTM":
        np.testing.assert_allclose(dc, numeric("c"), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("cell", CELLS)
def test_float32_fast_and_portable_paths_agree_and_keep_their_bits(cell, size):
    """The fast gate math (AVX2/AVX-512) and the portable loops give the same
    values to float32 rounding; each gives the same bits on 1 and 2 threads
    and at either vector width."""
    B, H = size
    a = inputs(cell, B, H, np.float32, seed=3 + B + H)
    out = {}
    try:
        for fast in (True, False):
            _ext.set_fast_path(fast)
            for threads in (1, 2):
                f = run_forward(cell, a, threads)
                b = run_backward(cell, a, f[0], f[2], threads)
                out[fast, threads] = [x for x in f + b if x is not None]
        if _ext.set_fast_width(16) == 16:
            _ext.set_fast_path(True)
            _ext.set_fast_width(8)
            f = run_forward(cell, a, 2)
            b = run_backward(cell, a, f[0], f[2], 2)
            out["avx2"] = [x for x in f + b if x is not None]
    finally:
        _ext.set_fast_path(True)
        _ext.set_fast_width(16)
    for fast in (True, False):
        for x, y in zip(out[fast, 1], out[fast, 2]):
            np.testing.assert_array_equal(x, y)
    for x, y in zip(out[True, 1], out[False, 1]):
        np.testing.assert_allclose(x, y, rtol=2e-5, atol=2e-6)
    if "avx2" in out:
        for x, y in zip(out[True, 1], out["avx2"]):
            np.testing.assert_array_equal(x, y)


def test_a_row_does_not_depend_on_the_rest_of_the_batch():
    a = inputs("LSTM", 64, 40, np.float32, seed=1)
    whole = run_forward("LSTM", a)
    one = {k: np.ascontiguousarray(v[5:6]) for k, v in a.items()}
    part = run_forward("LSTM", one)
    for x, y in zip(whole, part):
        np.testing.assert_array_equal(x[5:6], y)


def test_the_boundary_declines_what_the_kernel_does_not_take():
    """False, having written nothing: a non-contiguous, read-only or
    overlapping written array, mixed dtypes; the caller's NumPy path then runs."""
    B, H = 3, 5
    L = _ext.CELLS["LSTM"]
    pre = np.ones((B, 4 * H), np.float32)
    c = np.zeros((B, H), np.float32)
    h_out, c_out = np.zeros((B, H), np.float32), np.zeros((B, H), np.float32)
    keep = pre.copy()
    wide = np.zeros((B, 2 * H), np.float32)
    assert not _ext.cell_step(L, pre, None, None, c, wide[:, :H], c_out, None, 1)
    ro = np.zeros((B, H), np.float32)
    ro.flags.writeable = False
    assert not _ext.cell_step(L, pre, None, None, c, ro, c_out, None, 1)
    assert not _ext.cell_step(L, pre, None, None, c, h_out, h_out, None, 1)
    assert not _ext.cell_step(L, pre, None, None, c.astype(np.float64), h_out, c_out, None, 1)
    assert not _ext.cell_step(L, pre.astype(np.float16), None, None, c, h_out, c_out, None, 1)
    np.testing.assert_array_equal(pre, keep)
    assert np.all(h_out == 0) and np.all(c_out == 0)


def test_the_boundary_refuses_bad_shapes_cells_and_missing_arrays():
    B, H = 3, 5
    L = _ext.CELLS["LSTM"]
    pre = np.ones((B, 4 * H), np.float32)
    c, h_out, c_out = (np.zeros((B, H), np.float32) for _ in range(3))
    with pytest.raises(ValueError, match="shape"):
        _ext.cell_step(L, pre, None, None, np.zeros((B, H + 1), np.float32), h_out, c_out,
                       None, 1)
    with pytest.raises(ValueError, match="blocks of units"):
        _ext.cell_step(L, np.ones((B, 4 * H + 1), np.float32), None, None, c, h_out, c_out,
                       None, 1)
    with pytest.raises(ValueError, match="unknown cell"):
        _ext.cell_step(9, pre, None, None, c, h_out, c_out, None, 1)
    with pytest.raises(ValueError, match="needs is None"):
        _ext.cell_step(L, pre, None, None, None, h_out, c_out, None, 1)
    with pytest.raises(ValueError, match="needs is None"):
        _ext.cell_step_backward(_ext.CELLS["GRU"], np.ones((B, 4 * H), np.float32), None,
                                None, None, c, c, None, np.ones((B, 3 * H), np.float32),
                                None, h_out, 1)
    with pytest.raises(ValueError, match="rejected its arguments"):
        _ext.cell_step(L, pre, None, None, c, h_out, c_out, None, 0)


@pytest.mark.parametrize("attention", ["general", "dot", "bahdanau"])
@pytest.mark.parametrize("decoder_cell", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_seq2seq_kernel_path_matches_its_numpy_path(decoder_cell, attention, dtype,
                                                     monkeypatch):
    """The decoder's loss and every gradient, kernels (cell_step and, for dot
    and general, attend) against NumPy, on two decoder layers (the lower
    layer's gradient arrives through dh, the top's attention part through
    dy) and ragged source lengths."""
    rng = np.random.default_rng(5)
    m = fr.Seq2Seq(9, 7, embedding_dim=5, hidden_size=6, num_layers=1, decoder_hidden=12,
                   decoder_layers=2, decoder_cell=decoder_cell, attention=attention,
                   dropout=0.0, dtype=dtype, seed=2)
    src = rng.integers(0, 9, (3, 6))
    ls = np.array([6, 2, 4])
    tgt = [rng.integers(0, 7, n) for n in (4, 1, 3)]

    def run():
        s, _, yin, y, ly = m._batch([a[:n] for a, n in zip(src, ls)], tgt)
        loss, _, grads = m.loss_and_grads(s, ls, yin, y, ly)
        hyps = m.predict([a[:n] for a, n in zip(src, ls)], beam_size=3)
        return loss, grads, hyps

    got = run()
    for name in ("cell_step", "cell_step_backward", "attend", "attend_backward"):
        monkeypatch.delattr(type(cpu.backend), name)
    want = run()
    tol = 2e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(got[0], want[0], rtol=tol)
    for k in want[1]:
        np.testing.assert_allclose(got[1][k], want[1][k], rtol=tol, atol=tol, err_msg=k)
    assert [list(h) for h in got[2]] == [list(h) for h in want[2]]
