"""The attention kernels' order of operations, bit for bit (issue 28's
shared reductions, src/portable/attn_impl.h): NumPy redoes each product and
sum in the order fastrnn_attend.h and fastrnn_pool.h give (16-lane dot
products, the softmax's maximum, exp, sum and division, the weighted sums
in order of t), with the C library's exp and tanh, and the kernels must give
the same bits. The other kernel tests compare with float64 references to a
tolerance, which a 1-ulp change in these orders would pass."""
import ctypes
import ctypes.util

import numpy as np
import pytest

from fastrnn.backends.cpu import _ext

_libm = ctypes.CDLL(ctypes.util.find_library("m"))
_CFUN = {}
for _name, _ct in (("expf", ctypes.c_float), ("exp", ctypes.c_double),
                   ("tanhf", ctypes.c_float), ("tanh", ctypes.c_double)):
    _f = getattr(_libm, _name)
    _f.restype, _f.argtypes = _ct, [_ct]
    _CFUN[_name] = _f


def libm(name, x):
    """The C library's function on each value of x (the kernels' scalar calls)."""
    f, dt = _CFUN[name], x.dtype
    return np.array([f(float(v)) for v in x.ravel()], dt).reshape(x.shape)


def dot16(x, y):
    """x . y as the headers order it: lane i sums k = i mod 16 in order of
    k, then the lanes are added in halves."""
    lanes = np.zeros(16, x.dtype)
    n = x.shape[0]
    k0 = 0
    while k0 + 16 <= n:
        lanes = lanes + x[k0:k0 + 16] * y[k0:k0 + 16]
        k0 += 16
    r = n - k0
    lanes[:r] = lanes[:r] + x[k0:] * y[k0:]
    for w in (8, 4, 2, 1):
        lanes[:w] = lanes[:w] + lanes[w:2 * w]
    return lanes[0]


def softmax(s, exp):
    mx = s[0]
    for v in s[1:]:
        mx = v if (v > mx or v != v) else mx
    e = libm(exp, (s - mx).astype(s.dtype))
    total = s.dtype.type(0)
    for v in e:
        total = s.dtype.type(total + v)
    return (e / total).astype(s.dtype)


def weighted_sum(a, rows, skip=None):
    out = np.zeros(rows.shape[1], rows.dtype)
    for t in range(rows.shape[0]):
        if skip is not None and skip[t]:
            continue
        out = out + a[t] * rows[t]
    return out


def same_bits(got, want):
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))


SIZES = [(1, 1, 1, 1), (2, 7, 5, 3), (3, 11, 16, 17), (2, 9, 33, 31), (1, 20, 40, 48)]


@pytest.mark.parametrize("dtype,exp", [("float32", "expf"), ("float64", "exp")])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: "x".join(map(str, s)))
def test_attend_gives_the_headers_bits(size, dtype, exp):
    B, S, K, D = size
    rng = np.random.default_rng(sum(size))
    keys = rng.standard_normal((B, S, K)).astype(dtype)
    q = rng.standard_normal((B, K)).astype(dtype)
    enc = rng.standard_normal((B, S, D)).astype(dtype)
    lengths = rng.integers(1, S + 1, size=B)
    mask = np.where(np.arange(S)[None, :] < lengths[:, None], 0.0, -np.inf).astype(dtype)
    a = np.empty((B, S), dtype)
    ctx = np.empty((B, D), dtype)
    assert _ext.attend(keys, q, enc, mask, a, ctx, 2)
    for b in range(B):
        pad = mask[b] == -np.inf
        s = np.array([mask[b, t] if pad[t] else dot16(keys[b, t], q[b]) + mask[b, t]
                      for t in range(S)], dtype)
        wa = softmax(s, exp)
        same_bits(a[b], wa)
        same_bits(ctx[b], weighted_sum(wa, enc[b], skip=pad))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: "x".join(map(str, s)))
def test_attention_pool_gives_the_headers_bits(size):
    """float64 (float32's rows may run the fast path's own tanh)."""
    B, T, F, A = size
    rng = np.random.default_rng(sum(size) + 1)
    z = rng.standard_normal((B * T, A))
    v = rng.standard_normal(A)
    x = rng.standard_normal((B, T, F))
    lengths = rng.integers(1, T + 1, size=B).astype(np.int64)
    u = libm("tanh", z)
    a = np.empty((B, T))
    y = np.empty((B, F))
    assert _ext.attention_pool(z, v, x, lengths, a, y, 2)
    same_bits(z, u)   # tanh in place
    for b in range(B):
        L = lengths[b]
        s = np.array([dot16(u[b * T + t], v) for t in range(L)])
        wa = np.concatenate([softmax(s, "exp"), np.zeros(T - L)])
        same_bits(a[b], wa)
        same_bits(y[b], weighted_sum(wa[:L], x[b, :L]))
