"""AttentionPooling's C kernel (src/include/fastrnn_pool.h) against the layer's
NumPy path: the same values to float rounding on odd shapes, lengths and
both dtypes; bits independent of the thread count, the vector width and the
rest of the batch; and what the boundary declines or refuses."""
import numpy as np
import pytest

import fastrnn as fr
from fastrnn.backends import cpu
from fastrnn.backends.cpu import _ext

SHAPES = [(1, 1, 1, 1), (1, 40, 128, 128), (3, 7, 5, 17), (2, 9, 33, 31), (5, 13, 16, 16),
          (4, 3, 2, 64), (7, 11, 19, 47)]


@pytest.fixture
def numpy_path(monkeypatch):
    """Run the layer's NumPy path (a backend without attention_pool)."""
    def off():
        monkeypatch.delattr(type(cpu.backend), "attention_pool")
    return off


def _run(pool, x, lengths):
    y = pool(x, lengths=lengths)
    return y, pool.attention_weights.copy()


@pytest.mark.parametrize("dtype,tol", [("float32", 2e-6), ("float64", 1e-14)])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("with_lengths", [False, True])
def test_kernel_matches_the_numpy_path(shape, dtype, tol, with_lengths, numpy_path):
    B, T, F, A = shape
    rng = np.random.default_rng(B * 1000 + T * 10 + F)
    pool = fr.AttentionPooling(F, A, dtype=dtype, seed=4)
    x = rng.standard_normal((B, T, F)).astype(dtype)
    lengths = rng.integers(1, T + 1, size=B) if with_lengths else None
    got = _run(pool, x, lengths)
    numpy_path()
    want = _run(pool, x, lengths)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol)
    if lengths is not None:   # padding gets weight exactly 0
        pad = np.arange(T)[None, :] >= lengths[:, None]
        assert np.all(got[1][pad] == 0)


@pytest.mark.parametrize("dtype,rtol,atol", [("float64", 1e-11, 1e-12),
                                             ("float32", 2e-4, 2e-5)])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (1, 7, 5, 3), (3, 11, 13, 17),
                                   (2, 40, 33, 64)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("with_lengths", [False, True])
def test_kernel_path_matches_torch(shape, dtype, rtol, atol, with_lengths):
    """Forward, weights and every gradient through the kernel against torch
    autograd on the same weights: batch 1, primes, lengths."""
    torch = pytest.importorskip("torch")
    B, T, F, A = shape
    rng = np.random.default_rng(B * 100 + T)
    pool = fr.AttentionPooling(F, A, dtype=dtype, seed=9)
    x = rng.standard_normal((B, T, F)).astype(dtype)
    lengths = rng.integers(1, T + 1, size=B) if with_lengths else np.full(B, T)
    W, b, v = (torch.tensor(pool.params[k].astype(np.float64), requires_grad=True)
               for k in ("weight", "bias", "context"))
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    s = torch.tanh(xt @ W.T + b) @ v
    mask = torch.tensor(np.arange(T)[None, :] < lengths[:, None])
    a = torch.softmax(s.masked_fill(~mask, float("-inf")), dim=1)
    yt = (a[:, :, None] * xt).sum(1)
    R = rng.standard_normal((B, F))
    (yt * torch.tensor(R)).sum().backward()
    y = pool.forward(x, lengths if with_lengths else None)
    weights = pool.attention_weights.copy()
    dx = pool.backward(R.astype(dtype))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=rtol, atol=atol)
    np.testing.assert_allclose(weights, a.detach().numpy(), rtol=rtol, atol=atol)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=rtol, atol=atol)
    for k, t in (("weight", W), ("bias", b), ("context", v)):
        np.testing.assert_allclose(pool.grads[k], t.grad.numpy(), rtol=rtol, atol=atol,
                                   err_msg=k)


def test_kernel_path_gradcheck_float64():
    """Central differences through the kernel path, odd sizes and lengths."""
    rng = np.random.default_rng(21)
    B, T, F, A = 3, 5, 4, 7
    pool = fr.AttentionPooling(F, A, dtype="float64", seed=2)
    x = rng.standard_normal((B, T, F))
    lengths = np.array([5, 1, 3])
    R = rng.standard_normal((B, F))
    pool.zero_grad()
    pool.forward(x, lengths)
    dx = pool.backward(R)

    def f():
        return float((pool(x, lengths) * R).sum())

    eps = 1e-6
    for name, arr in list(pool.params.items()) + [("x", x)]:
        num = np.zeros_like(arr)
        for i in np.ndindex(arr.shape):
            old = arr[i]
            arr[i] = old + eps
            fp = f()
            arr[i] = old - eps
            fm = f()
            arr[i] = old
            num[i] = (fp - fm) / (2 * eps)
        got = dx if name == "x" else pool.grads[name]
        np.testing.assert_allclose(got, num, rtol=1e-6, atol=1e-8, err_msg=name)


def test_backward_after_the_kernel_matches_the_numpy_path(numpy_path):
    rng = np.random.default_rng(3)
    B, T, F, A = 4, 9, 7, 13
    x = rng.standard_normal((B, T, F))
    lengths = np.array([9, 2, 5, 1])
    dy = rng.standard_normal((B, F))
    out = []
    for use_numpy in (False, True):
        if use_numpy:
            numpy_path()
        pool = fr.AttentionPooling(F, A, dtype="float64", seed=5)
        pool.forward(x, lengths)
        dx = pool.backward(dy)
        out.append([dx] + [pool.grads[k].copy() for k in ("weight", "bias", "context")])
    for g, w in zip(*out):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)


def test_bits_do_not_depend_on_threads_width_or_batch():
    """Rows and sequences are independent and both vector widths run the
    same lanes: 1 and 2 threads, widths 16 and 8, and one sequence alone
    give the same bits (B*T*A above FR_POOL_PAR_MIN, so 2 threads split)."""
    rng = np.random.default_rng(11)
    B, T, F, A = 24, 37, 29, 83
    pool = fr.AttentionPooling(F, A, seed=6)
    x = rng.standard_normal((B, T, F)).astype(np.float32)
    lengths = rng.integers(1, T + 1, size=B)
    widest = _ext.set_fast_width(16)
    runs = []
    try:
        for width in sorted({widest, _ext.set_fast_width(8)}):
            _ext.set_fast_width(width)
            for nt in (1, 2):
                fr.set_num_threads(nt)
                runs.append(_run(pool, x, lengths))
    finally:
        _ext.set_fast_width(16)
        fr.set_num_threads(None)
    for y, a in runs[1:]:
        assert np.array_equal(y.view(np.uint32), runs[0][0].view(np.uint32))
        assert np.array_equal(a.view(np.uint32), runs[0][1].view(np.uint32))
    for b in (0, 5, B - 1):
        y1, a1 = _run(pool, x[b:b + 1], lengths[b:b + 1])
        assert np.array_equal(y1[0].view(np.uint32), runs[0][0][b].view(np.uint32))
        assert np.array_equal(a1[0].view(np.uint32), runs[0][1][b].view(np.uint32))


def test_fast_and_portable_rows_agree_to_rounding():
    """The fast path's tanh against the C library's (fr.set_fast_path)."""
    rng = np.random.default_rng(12)
    pool = fr.AttentionPooling(40, 70, seed=7)
    x = rng.standard_normal((6, 21, 40)).astype(np.float32) * 3
    fast = _run(pool, x, None)
    try:
        _ext.set_fast_path(False)
        portable = _run(pool, x, None)
    finally:
        _ext.set_fast_path(True)
    for f, p in zip(fast, portable):
        np.testing.assert_allclose(f, p, rtol=2e-6, atol=2e-6)


def _args(dtype=np.float32, B=2, T=3, F=4, A=5):
    z = np.zeros((B * T, A), dtype)
    v = np.ones(A, dtype)
    x = np.ones((B, T, F), dtype)
    return z, v, x, None, np.empty((B, T), dtype), np.empty((B, F), dtype)


def test_boundary_declines_what_the_kernel_does_not_take():
    z, v, x, lens, a, y = _args()
    assert _ext.attention_pool(z, v, x, lens, a, y, 1)
    assert not _ext.attention_pool(z.astype(np.float16), v, x, lens, a, y, 1)
    assert not _ext.attention_pool(z, v.astype(np.float64), x, lens, a, y, 1)
    assert not _ext.attention_pool(np.asfortranarray(z), v, x, lens, a, y, 1)
    ro = z.copy()
    ro.setflags(write=False)
    assert not _ext.attention_pool(ro, v, x, lens, a, y, 1)
    # outputs sharing memory (a and y overlap): the NumPy path
    both = np.zeros(2 * 3 + 2 * 4, np.float32)
    assert not _ext.attention_pool(z, v, x, lens, both[:6].reshape(2, 3),
                                   both[2:10].reshape(2, 4), 1)


def test_boundary_refuses_bad_shapes_and_lengths():
    z, v, x, _, a, y = _args()
    with pytest.raises(ValueError, match="do not agree"):
        _ext.attention_pool(z[:5], v, x, None, a, y, 1)
    with pytest.raises(ValueError, match="do not agree"):
        _ext.attention_pool(z, v, x, None, a, y[:, :3].copy(), 1)
    with pytest.raises(ValueError):
        _ext.attention_pool(z, v, x.reshape(6, 4), None, a, y, 1)
    for bad in ([0, 3], [4, 1]):
        with pytest.raises(ValueError):
            _ext.attention_pool(z, v, x, np.array(bad, np.int64), a, y, 1)
    with pytest.raises((ValueError, TypeError)):
        _ext.attention_pool(z, v, x, np.array([1, 2], np.int32), a, y, 1)


def test_layer_with_a_backend_without_the_kernel_still_pools(numpy_path):
    numpy_path()
    pool = fr.AttentionPooling(3, seed=0)
    y = pool(np.ones((2, 4, 3), np.float32), lengths=[4, 2])
    np.testing.assert_allclose(y, 1.0, rtol=1e-6)
    np.testing.assert_allclose(pool.attention_weights.sum(axis=1), 1.0, rtol=1e-6)
