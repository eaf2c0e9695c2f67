"""One decoder step of Luong attention (src/include/fastrnn_attend.h, the
backend's attend / attend_backward, which fastrnn.Seq2Seq runs for dot and
general attention): forward and backward against NumPy in float64 on odd
sizes, batch 1 and masks, the backward against central differences,
padding content that never matters, bits independent of the thread count
and of the rest of the batch, and what the boundary declines or refuses.
The decoder through it against torch: tests/parity/test_seq2seq_torch_twin.py;
against its NumPy path: tests/core/test_cell_step_kernel.py."""
import numpy as np
import pytest

from fastrnn.backends.cpu import _ext

SIZES = [(1, 1, 1, 1), (1, 7, 5, 3), (3, 11, 16, 17), (4, 9, 33, 31), (64, 12, 40, 48)]


def inputs(B, S, K, D, dtype, seed, masked=True):
    rng = np.random.default_rng(seed)
    keys = rng.standard_normal((B, S, K)).astype(dtype)
    q = rng.standard_normal((B, K)).astype(dtype)
    enc = rng.standard_normal((B, S, D)).astype(dtype)
    mask = None
    if masked:
        lengths = rng.integers(1, S + 1, size=B)
        mask = np.where(np.arange(S)[None, :] < lengths[:, None], 0.0, -np.inf).astype(dtype)
    return keys, q, enc, mask


def ref(keys, q, enc, mask):
    """The step in float64: (a, ctx)."""
    s = np.einsum("bsk,bk->bs", keys, q)
    if mask is not None:
        s = s + mask
    e = np.exp(s - s.max(axis=1, keepdims=True))
    a = e / e.sum(axis=1, keepdims=True)
    return a, np.einsum("bs,bsd->bd", a, enc)


def forward(keys, q, enc, mask, threads=2):
    B, S, D = enc.shape
    a = np.empty((B, S), q.dtype)
    ctx = np.empty((B, D), q.dtype)
    assert _ext.attend(keys, q, enc, mask, a, ctx, threads)
    return a, ctx


def backward(keys, enc, a, dctx, mask, threads=2):
    B, S, K = keys.shape
    ds = np.empty((B, S), a.dtype)
    dq = np.empty((B, K), a.dtype)
    assert _ext.attend_backward(keys, enc, a, dctx, mask, ds, dq, threads)
    return ds, dq


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-13), ("float32", 2e-6)])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: "x".join(map(str, s)))
def test_forward_and_backward_match_numpy(size, dtype, tol, masked):
    keys, q, enc, mask = inputs(*size, dtype, seed=sum(size), masked=masked)
    a, ctx = forward(keys, q, enc, mask)
    f64 = [None if x is None else x.astype(np.float64) for x in (keys, q, enc, mask)]
    wa, wctx = ref(*f64)
    np.testing.assert_allclose(a, wa, rtol=tol, atol=tol)
    np.testing.assert_allclose(ctx, wctx, rtol=tol, atol=tol)
    if mask is not None:
        assert np.all(a[np.isinf(mask)] == 0)
    dctx = np.random.default_rng(1).standard_normal(ctx.shape).astype(dtype)
    ds, dq = backward(keys, enc, a, dctx, mask)
    da = np.einsum("bsd,bd->bs", f64[2], dctx.astype(np.float64))
    wds = wa * (da - (wa * da).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(ds, wds, rtol=tol * 10, atol=tol * 10)
    np.testing.assert_allclose(dq, np.einsum("bs,bsk->bk", wds, f64[0]), rtol=tol * 10,
                               atol=tol * 10)


@pytest.mark.parametrize("size", SIZES[:4], ids=lambda s: "x".join(map(str, s)))
def test_backward_matches_central_differences_float64(size):
    """dq, and ds as the gradient of the scores, of L = sum(w ctx)."""
    keys, q, enc, mask = inputs(*size, np.float64, seed=3)
    a, ctx = forward(keys, q, enc, mask)
    w = np.random.default_rng(2).standard_normal(ctx.shape)
    ds, dq = backward(keys, enc, a, w, mask)
    eps = 1e-6
    num = np.zeros_like(q)
    for idx in np.ndindex(*q.shape):
        old = q[idx]
        q[idx] = old + eps
        up = float((forward(keys, q, enc, mask)[1] * w).sum())
        q[idx] = old - eps
        down = float((forward(keys, q, enc, mask)[1] * w).sum())
        q[idx] = old
        num[idx] = (up - down) / (2 * eps)
    np.testing.assert_allclose(dq, num, rtol=1e-6, atol=1e-8)
    # ds is dL/ds: a shift of one score by eps through an extra mask term
    m0 = np.zeros(a.shape) if mask is None else mask
    nds = np.zeros_like(a)
    for idx in np.ndindex(*a.shape):
        if np.isinf(m0[idx]):
            continue
        m = m0.copy()
        m[idx] += eps
        up = float((forward(keys, q, enc, m)[1] * w).sum())
        m[idx] -= 2 * eps
        down = float((forward(keys, q, enc, m)[1] * w).sum())
        nds[idx] = (up - down) / (2 * eps)
    np.testing.assert_allclose(ds, nds, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_padding_content_never_matters_and_bits_keep(dtype):
    """Keys and encodings past a source's end (even NaN) change nothing; 1 and
    2 threads and a row alone give the same bits."""
    keys, q, enc, mask = inputs(64, 12, 40, 48, dtype, seed=9)
    a, ctx = forward(keys, q, enc, mask, threads=2)
    dctx = np.ones_like(ctx)
    ds, dq = backward(keys, enc, a, dctx, mask, threads=2)
    pad = np.isinf(mask)
    k2, e2 = keys.copy(), enc.copy()
    k2[pad], e2[pad] = np.nan, np.nan
    a2, ctx2 = forward(k2, q, e2, mask, threads=1)
    ds2, dq2 = backward(k2, e2, a2, dctx, mask, threads=1)
    for x, y in ((a, a2), (ctx, ctx2), (ds, ds2), (dq, dq2)):
        np.testing.assert_array_equal(x, y)
    one = [np.ascontiguousarray(x[7:8]) for x in (keys, q, enc, mask)]
    a1, ctx1 = forward(*one, threads=1)
    np.testing.assert_array_equal(a1, a[7:8])
    np.testing.assert_array_equal(ctx1, ctx[7:8])


def test_the_boundary_declines_and_refuses():
    """False, having written nothing, for a mixed dtype, a non-contiguous input,
    a read-only or overlapping output (the caller's NumPy path then runs);
    errors for shapes that disagree and a bad thread count."""
    keys, q, enc, mask = inputs(3, 5, 4, 6, np.float32, seed=1)
    a, ctx = np.zeros((3, 5), np.float32), np.zeros((3, 6), np.float32)
    assert not _ext.attend(keys, q, enc, mask.astype(np.float64), a, ctx, 1)
    assert not _ext.attend(keys[:, :, ::-1], q, enc, mask, a, ctx, 1)
    ro = np.zeros_like(ctx)
    ro.flags.writeable = False
    assert not _ext.attend(keys, q, enc, mask, a, ro, 1)
    buf = np.zeros(18, np.float32)
    assert not _ext.attend(keys, q, enc, mask, buf[:15].reshape(3, 5), buf.reshape(3, 6), 1)
    assert np.all(a == 0) and np.all(ctx == 0) and np.all(buf == 0)
    ds, dq = np.zeros((3, 5), np.float32), np.zeros((3, 4), np.float32)
    assert not _ext.attend_backward(keys, enc, a, ctx, mask, ds, ds[:, :4], 1)
    with pytest.raises(ValueError, match="shape"):
        _ext.attend(keys, q[:, :3].copy(), enc, mask, a, ctx, 1)
    with pytest.raises(ValueError, match="do not agree"):
        _ext.attend(keys, q, enc[:, :4].copy(), mask, a, ctx, 1)
    with pytest.raises(ValueError, match="3-D"):
        _ext.attend(keys[0], q, enc, mask, a, ctx, 1)
    with pytest.raises(ValueError, match="rejected its arguments"):
        _ext.attend(keys, q, enc, mask, a, ctx, 0)
    with pytest.raises(ValueError, match="rejected its arguments"):
        _ext.attend_backward(keys, enc, a, ctx, mask, ds, dq, 0)
