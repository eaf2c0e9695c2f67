"""Model layers (Embedding, Dense, Activation, Dropout, poolings): float64
central differences, parity with torch, padding that never leaks, thread-count
invariance, bad input."""
import numpy as np
import pytest

import fastrnn as fr


def numgrad(f, a, eps=1e-6):
    """Central differences of scalar f() with respect to array a (in place)."""
    g = np.zeros_like(a)
    it = np.nditer(a, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = a[i]
        a[i] = old + eps
        fp = f()
        a[i] = old - eps
        fm = f()
        a[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


def check_layer_grads(layer, x, lengths=None, wrt_x=True, tol=1e-6):
    rng = np.random.default_rng(1)
    y = layer.forward(x, lengths)
    R = rng.standard_normal(y.shape)
    layer.zero_grad()
    layer.forward(x, lengths)
    dx = layer.backward(R)

    def f():
        return float((layer(x, lengths) * R).sum())

    for n, p in layer.params.items():
        num = numgrad(f, p)
        np.testing.assert_allclose(layer.grads[n], num, rtol=tol, atol=tol, err_msg=n)
    if wrt_x:
        num = numgrad(f, x)
        np.testing.assert_allclose(dx, num, rtol=tol, atol=tol, err_msg="dx")
    return dx


LENS = np.array([5, 1, 3, 5, 2])


@pytest.mark.parametrize("act", [None, "relu", "tanh", "sigmoid", "elu", "leaky_relu"])
@pytest.mark.parametrize("seq", [False, True])
def test_dense_gradcheck(act, seq):
    rng = np.random.default_rng(0)
    d = fr.Dense(7, 3, activation=act, dtype="float64", seed=2)
    if seq:
        x = rng.standard_normal((5, 5, 7))
        dx = check_layer_grads(d, x, LENS)
        pad = np.arange(5)[None, :] >= LENS[:, None]
        assert np.all(dx[pad] == 0)
        assert np.all(d(x, LENS)[pad] == 0)
    else:
        check_layer_grads(d, rng.standard_normal((4, 7)))


def test_dense_without_bias_and_sizes_one():
    rng = np.random.default_rng(0)
    check_layer_grads(fr.Dense(1, 1, bias=False, dtype="float64", seed=0),
                      rng.standard_normal((1, 1)))
    check_layer_grads(fr.Dense(13, 2, dtype="float64", seed=0),
                      rng.standard_normal((1, 1, 13)))


def test_activation_layer_gradcheck():
    rng = np.random.default_rng(3)
    for act in ("relu", "tanh", "sigmoid", "elu"):
        a = fr.Activation(act, dtype="float64")
        x = rng.standard_normal((5, 5, 4)) + 0.01
        dx = check_layer_grads(a, x, LENS)
        assert np.all(dx[np.arange(5)[None, :] >= LENS[:, None]] == 0)


def test_sigmoid_extremes_are_exact():
    a = fr.Activation("sigmoid")
    y = a(np.array([[-1e4, -100.0, 0.0, 100.0, 1e4]], np.float32))
    assert y[0, 0] == 0 and y[0, -1] == 1 and y[0, 2] == 0.5
    assert np.all(np.isfinite(y))


@pytest.mark.parametrize("pool", ["last", "mean", "max", "attention"])
def test_pooling_gradcheck_and_padding(pool):
    rng = np.random.default_rng(4)
    layer = {"last": fr.LastStep(dtype="float64"), "mean": fr.MeanPooling(dtype="float64"),
             "max": fr.MaxPooling(dtype="float64"),
             "attention": fr.AttentionPooling(6, 4, dtype="float64", seed=1)}[pool]
    x = rng.standard_normal((5, 5, 6))
    dx = check_layer_grads(layer, x, LENS)
    pad = np.arange(5)[None, :] >= LENS[:, None]
    assert np.all(dx[pad] == 0)
    # whatever sits in the padding, the output is the same
    x2 = x.copy()
    x2[pad] = 1e6
    np.testing.assert_array_equal(layer(x, LENS), layer(x2, LENS))


def _attention_reference(x, W, b, v):
    """Additive attention pooling over every step, in float64."""
    x, W, b, v = (np.asarray(a, np.float64) for a in (x, W, b, v))
    s = np.tanh(x @ W.T + b) @ v
    a = np.exp(s - s.max(axis=1, keepdims=True))
    a /= a.sum(axis=1, keepdims=True)
    return np.einsum("bt,btf->bf", a, x)


@pytest.mark.parametrize("pool", ["last", "mean", "max", "attention"])
@pytest.mark.parametrize("B, T, F", [(1, 1, 1), (1, 7, 5), (3, 13, 11), (2, 1, 4)])
def test_pooling_without_lengths(pool, B, T, F):
    """The no-padding path (lengths=None: no mask, no gather): float64
    gradients by central differences, the same bits as lengths all T, and
    the values of a plain reference in float32 (2e-4) and float64 (1e-9)."""
    rng = np.random.default_rng(B * 100 + T * 10 + F)
    make = {"last": lambda d: fr.LastStep(dtype=d), "mean": lambda d: fr.MeanPooling(dtype=d),
            "max": lambda d: fr.MaxPooling(dtype=d),
            "attention": lambda d: fr.AttentionPooling(F, 3, dtype=d, seed=2)}[pool]
    x = rng.standard_normal((B, T, F))
    check_layer_grads(make("float64"), x, None)
    for dtype, tol in (("float32", 2e-4), ("float64", 1e-9)):
        layer = make(dtype)
        xd = x.astype(dtype)
        y = layer(xd)
        assert y.shape == (B, F) and y.dtype == dtype and y.flags.c_contiguous
        np.testing.assert_array_equal(y, layer(xd, np.full(B, T)))
        if pool == "attention":
            p = layer.params
            ref = _attention_reference(xd, p["weight"], p["bias"], p["context"])
        else:
            ref = {"last": lambda a: a[:, -1], "mean": lambda a: a.mean(1),
                   "max": lambda a: a.max(1)}[pool](xd.astype(np.float64))
        np.testing.assert_allclose(y, ref, rtol=tol, atol=tol)


def test_pooling_values():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, 5, 3))
    for b, L in enumerate(LENS):
        np.testing.assert_allclose(fr.MeanPooling(dtype="float64")(x, LENS)[b],
                                   x[b, :L].mean(0), rtol=1e-12)
        np.testing.assert_array_equal(fr.MaxPooling(dtype="float64")(x, LENS)[b],
                                      x[b, :L].max(0))
        np.testing.assert_array_equal(fr.LastStep(dtype="float64")(x, LENS)[b], x[b, L - 1])
    att = fr.AttentionPooling(3, dtype="float64", seed=0)
    att(x, LENS)
    a = att.attention_weights
    np.testing.assert_allclose(a.sum(1), 1, rtol=1e-12)
    assert np.all(a[np.arange(5)[None, :] >= LENS[:, None]] == 0)


def test_embedding_grads_and_padding_idx():
    rng = np.random.default_rng(6)
    e = fr.Embedding(11, 4, padding_idx=0, dtype="float64", seed=0)
    assert np.all(e.params["weight"][0] == 0)
    ids = rng.integers(0, 11, size=(5, 5))
    ids[0, :3] = 7  # repeated ids accumulate
    y = e.forward(ids, LENS)
    R = rng.standard_normal(y.shape)
    assert e.backward(R) is None
    expect = np.zeros((11, 4))
    for b in range(5):
        for t in range(LENS[b]):
            if ids[b, t] != 0:
                expect[ids[b, t]] += R[b, t]
    np.testing.assert_allclose(e.grads["weight"], expect, rtol=1e-12, atol=1e-12)
    pad = np.arange(5)[None, :] >= LENS[:, None]
    assert np.all(y[pad] == 0)


def test_embedding_bad_ids():
    e = fr.Embedding(5, 2)
    with pytest.raises(ValueError, match="0..4"):
        e(np.array([[0, 5]]))
    with pytest.raises(ValueError, match="0..4"):
        e(np.array([[-1, 2]]))
    with pytest.raises(TypeError, match="integer ids"):
        e(np.array([[0.5, 1.0]]))
    with pytest.raises(TypeError, match="integer ids"):
        e(np.array([["a"]]))
    with pytest.raises(ValueError, match="padding_idx"):
        fr.Embedding(5, 2, padding_idx=5)


def test_dropout():
    d = fr.Dropout(0.3, dtype="float64", seed=0)
    x = np.ones((200, 50))
    y = d.forward(x)
    kept = y != 0
    assert 0.6 < kept.mean() < 0.8
    np.testing.assert_allclose(y[kept], 1 / 0.7)
    dx = d.backward(np.ones_like(x))
    np.testing.assert_array_equal(dx, y)  # same mask
    d.eval()
    np.testing.assert_array_equal(d(x), x)
    with pytest.raises(ValueError, match="p"):
        fr.Dropout(1.0)


torch = None


def _torch():
    return pytest.importorskip("torch")


def test_dense_and_embedding_match_torch():
    torch = _torch()
    rng = np.random.default_rng(7)
    lin = torch.nn.Linear(9, 5).double()
    d = fr.Dense(9, 5, activation="tanh", dtype="float64")
    d.load_state_dict({k: v.detach().numpy() for k, v in lin.state_dict().items()})
    x = rng.standard_normal((3, 4, 9))
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.tanh(lin(xt))
    R = rng.standard_normal(yt.shape)
    (yt * torch.tensor(R)).sum().backward()
    y = d.forward(x)
    dx = d.backward(R)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d.grads["weight"], lin.weight.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d.grads["bias"], lin.bias.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_attention_pooling_matches_torch():
    torch = _torch()
    rng = np.random.default_rng(8)
    B, T, F, A = 4, 6, 5, 3
    lens = np.array([6, 2, 1, 4])
    att = fr.AttentionPooling(F, A, dtype="float64", seed=3)
    W, b, v = (torch.tensor(att.params[k], requires_grad=True)
               for k in ("weight", "bias", "context"))
    x = rng.standard_normal((B, T, F))
    xt = torch.tensor(x, requires_grad=True)
    s = torch.tanh(xt @ W.T + b) @ v
    mask = torch.tensor(np.arange(T)[None, :] < lens[:, None])
    a = torch.softmax(s.masked_fill(~mask, float("-inf")), dim=1)
    yt = (a[:, :, None] * xt).sum(1)
    R = rng.standard_normal((B, F))
    (yt * torch.tensor(R)).sum().backward()
    y = att.forward(x, lens)
    dx = att.backward(R)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    for k, t in (("weight", W), ("bias", b), ("context", v)):
        np.testing.assert_allclose(att.grads[k], t.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_dense_bits_do_not_depend_on_threads():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((64, 40, 96)).astype(np.float32)
    d = fr.Dense(96, 200, activation="relu", seed=0)
    out = []
    for n in (1, 2, 3):
        fr.set_num_threads(n)
        try:
            d.zero_grad()
            y = d.forward(x)
            dx = d.backward(np.ones_like(y))
            out.append((y, dx, d.grads["weight"].copy()))
        finally:
            fr.set_num_threads(None)
    for y, dx, gw in out[1:]:
        assert np.array_equal(y, out[0][0]) and np.array_equal(dx, out[0][1])
        assert np.array_equal(gw, out[0][2])


def test_layer_bad_input():
    d = fr.Dense(4, 2)
    with pytest.raises(ValueError, match="in_features=4"):
        d(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="lengths"):
        d(np.zeros((3, 4)), lengths=[1, 1, 1])
    with pytest.raises(ValueError, match="lengths"):
        d(np.zeros((3, 2, 4)), lengths=[1, 3, 1])
    with pytest.raises(TypeError):
        d(np.array([["x"] * 4]))
    with pytest.raises(ValueError, match="sequence"):
        fr.MeanPooling()(np.zeros((3, 4)))
    with pytest.raises(RuntimeError, match="forward"):
        fr.Dense(2, 2).backward(np.zeros((1, 2)))
    with pytest.raises(ValueError, match="shape of the output"):
        d.forward(np.zeros((3, 4)))
        d.backward(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="activation"):
        fr.Dense(2, 2, activation="swish2")
    x = np.ones((2, 4), np.float32)
    x.setflags(write=False)
    d.forward(x)
    d.backward(np.ones((2, 2)))  # read-only input is fine and untouched
