"""Tests of fastrnn.losses: values and gradients against torch (float32 and
float64), float64 central differences (no torch), the CTC kernel's edge cases
(repeats, empty and infeasible targets, padding, reductions, zero_infinity),
thread-count invariance, the decoders against brute-force enumeration, the
registry, and bad-input errors."""
import itertools
import json

import numpy as np
import pytest

from fastrnn import losses as L

DTYPES = ("float32", "float64")


def _torch():
    return pytest.importorskip("torch")


def _close_value(actual, expected, dtype):
    rtol = 2e-4 if dtype == "float32" else 1e-9
    assert np.isclose(actual, expected, rtol=rtol, atol=rtol * 1e-2), (actual, expected)


def _mask(lengths, B, T):
    if lengths is None:
        return np.ones((B, T), dtype=bool)
    return np.arange(T)[None, :] < np.asarray(lengths)[:, None]


def _central_diff(f, x, h=1e-6):
    """Elementwise central differences of the scalar f at x (float64)."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        xp = x.copy()
        xp[i] += h
        xm = x.copy()
        xm[i] -= h
        g[i] = (f(xp) - f(xm)) / (2 * h)
    return g


# ====================================================================== cross entropy
CE_SHAPES = [(1, None, 1), (1, None, 2), (3, None, 5), (7, None, 11),
             (1, 1, 3), (2, 1, 2), (3, 4, 5), (5, 13, 7), (2, 3, 1)]


def _ce_torch(x, y, lengths, ignore_index, weights, eps):
    torch = _torch()
    C = x.shape[-1]
    yt = np.array(y, dtype=np.int64)
    if x.ndim == 3:
        yt[~_mask(lengths, *x.shape[:2])] = ignore_index
    xt = torch.tensor(x, requires_grad=True)
    w = None if weights is None else torch.tensor(weights, dtype=xt.dtype)
    loss = torch.nn.functional.cross_entropy(
        xt.reshape(-1, C), torch.tensor(yt.reshape(-1)), weight=w,
        ignore_index=ignore_index, label_smoothing=eps, reduction="mean")
    loss.backward()
    return loss.item(), xt.grad.numpy()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,T,C", CE_SHAPES)
@pytest.mark.parametrize("variant", ["plain", "weights_smooth_ignore"])
def test_cross_entropy_matches_torch(rng, helpers, dtype, B, T, C, variant):
    shape = (B, C) if T is None else (B, T, C)
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    y = rng.integers(0, C, size=shape[:-1])
    lengths = None
    kw = {}
    weights, eps, ignore = None, 0.0, -100
    if variant != "plain":
        weights = rng.uniform(0.2, 2.0, size=C)
        eps, ignore = 0.1, 0 if C > 1 else -100
        kw = dict(class_weights=weights, label_smoothing=eps, ignore_index=ignore)
        if T is not None:
            lengths = rng.integers(1, T + 1, size=B)
    loss = L.CrossEntropy(**kw)
    x0, y0 = x.copy(), y.copy()
    value = loss.forward(x, y, lengths)
    grad = loss.backward()
    assert np.array_equal(x, x0) and np.array_equal(y, y0)  # inputs untouched
    assert grad.dtype == x.dtype and grad.shape == x.shape
    counted = y != ignore
    if T is not None:
        counted &= _mask(lengths, B, T)
    if not counted.any():
        assert value == 0.0 and not grad.any()
        return
    tv, tg = _ce_torch(x, y, lengths, ignore, weights, eps)
    _close_value(value, tv, dtype)
    helpers.assert_close(grad, tg, dtype, "dlogits")
    assert loss(x, y, lengths) == value
    if T is not None and lengths is not None:
        assert not grad[~_mask(lengths, B, T)].any()


def test_cross_entropy_all_ignored_and_padding_content():
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    y = np.full((2, 3), -100)
    loss = L.CrossEntropy()
    assert loss.forward(x, y) == 0.0
    assert not loss.backward().any()
    # padded steps: their targets (even out of range) and logits never matter
    y = np.array([[1, 2, 99], [3, -5, 7]])
    lengths = [2, 1]
    v1 = loss.forward(x, y, lengths)
    g1 = loss.backward().copy()
    x2 = x.copy()
    x2[0, 2] = np.nan
    x2[1, 1:] = 1e30
    assert loss.forward(x2, y, lengths) == v1
    assert np.array_equal(loss.backward(), g1)
    assert not g1[0, 2].any() and not g1[1, 1:].any()


def test_cross_entropy_per_sample_ignores_lengths():
    x = np.random.default_rng(1).standard_normal((3, 4))
    y = np.array([0, 3, 1])
    loss = L.CrossEntropy()
    assert loss(x, y, lengths=[1, 1, 1]) == loss(x, y)


def test_cross_entropy_central_difference(rng):
    x = rng.standard_normal((3, 4, 5))
    y = rng.integers(0, 5, size=(3, 4))
    y[1, 2] = -1
    lengths = np.array([4, 2, 3])
    loss = L.CrossEntropy(ignore_index=-1, class_weights=[1, 2, .5, 1, 3],
                          label_smoothing=0.2)
    loss.forward(x, y, lengths)
    num = _central_diff(lambda z: loss(z, y, lengths), x)
    np.testing.assert_allclose(loss.backward(), num, rtol=1e-6, atol=1e-9)


def test_cross_entropy_extreme_logits_are_stable():
    x = np.array([[1000.0, -1000.0, 0.0], [-1e4, 1e4, 3.0]])
    y = np.array([1, 0])
    loss = L.CrossEntropy()
    v = loss.forward(x, y)
    assert np.isclose(v, (2000.0 + 2e4) / 2)
    g = loss.backward()
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, [[0.5, -0.5, 0], [-0.5, 0.5, 0]], atol=1e-12)


# ====================================================================== BCE and MSE
BCE_SHAPES = [(1,), (5,), (3, 1), (4, 7), (1, 1, 1), (3, 5, 2), (2, 13, 3)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BCE_SHAPES)
@pytest.mark.parametrize("pos_weight", [False, True])
def test_bce_matches_torch(rng, helpers, dtype, shape, pos_weight):
    torch = _torch()
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    y = rng.uniform(0, 1, size=shape)
    y[..., :1] = np.round(y[..., :1])
    pw = rng.uniform(0.5, 3.0, size=shape[-1]) if pos_weight else None
    lengths = rng.integers(1, shape[1] + 1, size=shape[0]) if len(shape) == 3 else None
    loss = L.BinaryCrossEntropy(pos_weight=pw)
    value = loss.forward(x, y, lengths)
    grad = loss.backward()
    assert grad.dtype == x.dtype and grad.shape == x.shape
    m = _mask(lengths, *shape[:2]) if len(shape) == 3 else np.ones(shape, dtype=bool)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.tensor(y, dtype=xt.dtype)
    pwt = None if pw is None else torch.tensor(pw, dtype=xt.dtype)
    if len(shape) == 3:  # valid steps only: (n, K) against pos_weight (K,)
        mt = torch.tensor(m)
        xv, yv = xt[mt], yt[mt]
    else:
        xv, yv = xt, yt
    tl = torch.nn.functional.binary_cross_entropy_with_logits(xv, yv, pos_weight=pwt)
    tl.backward()
    _close_value(value, tl.item(), dtype)
    helpers.assert_close(grad, xt.grad.numpy(), dtype, "dlogits")
    assert not grad[~m].any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BCE_SHAPES)
def test_mse_matches_torch(rng, helpers, dtype, shape):
    torch = _torch()
    x = rng.standard_normal(shape).astype(dtype)
    y = rng.standard_normal(shape)
    lengths = rng.integers(1, shape[1] + 1, size=shape[0]) if len(shape) == 3 else None
    loss = L.MSE()
    value = loss.forward(x, y, lengths)
    grad = loss.backward()
    assert grad.dtype == x.dtype
    m = _mask(lengths, *shape[:2]) if len(shape) == 3 else np.ones(shape, dtype=bool)
    xt = torch.tensor(x, requires_grad=True)
    tl = torch.nn.functional.mse_loss(xt[torch.tensor(m)],
                                      torch.tensor(y, dtype=xt.dtype)[torch.tensor(m)])
    tl.backward()
    _close_value(value, tl.item(), dtype)
    helpers.assert_close(grad, xt.grad.numpy(), dtype, "doutput")
    assert not grad[~m].any()


def test_bce_mse_central_difference(rng):
    x = rng.standard_normal((3, 4, 2)) * 2
    y = rng.uniform(0, 1, size=x.shape)
    lengths = np.array([4, 1, 3])
    for loss in (L.BinaryCrossEntropy(pos_weight=[2.0, 0.5]), L.MSE()):
        loss.forward(x, y, lengths)
        num = _central_diff(lambda z: loss(z, y, lengths), x)
        np.testing.assert_allclose(loss.backward(), num, rtol=1e-6, atol=1e-9)


def test_bce_extreme_logits_are_stable():
    x = np.array([800.0, -800.0, 50.0], dtype=np.float32)
    y = np.array([0.0, 1.0, 1.0])
    loss = L.BinaryCrossEntropy()
    v = loss.forward(x, y)
    assert np.isclose(v, (800 + 800 + np.log1p(np.exp(-50.0))) / 3, rtol=1e-6)
    np.testing.assert_allclose(loss.backward(), [1 / 3, -1 / 3, 0], atol=1e-7)


def test_output_activations(rng):
    x = rng.standard_normal((2, 3, 4))
    for loss in (L.CrossEntropy(), L.CTC()):
        p = loss.output_activation(x)
        np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-12)
        np.testing.assert_allclose(p, np.exp(x) / np.exp(x).sum(-1, keepdims=True))
    np.testing.assert_allclose(L.BinaryCrossEntropy().output_activation(x),
                               1 / (1 + np.exp(-x)))
    assert np.array_equal(L.MSE().output_activation(x), x)
    assert L.MSE().output_activation(x.astype(np.float32)).dtype == np.float32


# ====================================================================== CTC
def _ctc_case(rng, B, T, C, S, blank=0, feasible=True):
    """Random logits, padded (-1) targets, input and target lengths."""
    x = rng.standard_normal((B, T, C)) * 1.5
    il = rng.integers(1, T + 1, size=B)
    il[0] = T
    labels = [c for c in range(C) if c != blank]
    tg = np.full((B, S), -1, dtype=np.int64)
    tl = np.zeros(B, dtype=np.int64)
    for b in range(B):
        n = int(rng.integers(0, S + 1)) if labels else 0
        seq = list(rng.choice(labels, size=n)) if n else []
        if feasible:  # shorten until some alignment fits the input
            while seq and len(seq) + sum(a == b_ for a, b_ in zip(seq, seq[1:])) > il[b]:
                seq.pop()
        tg[b, :len(seq)] = seq
        tl[b] = len(seq)
    return x, il, tg, tl


def _ctc_torch(x, il, tg, tl, blank=0, reduction="mean", zero_infinity=False):
    torch = _torch()
    xt = torch.tensor(x, requires_grad=True)
    flat = np.concatenate([tg[b, :tl[b]] for b in range(len(tl))]).astype(np.int64)
    loss = torch.nn.functional.ctc_loss(
        xt.log_softmax(-1).transpose(0, 1), torch.tensor(flat),
        torch.tensor(np.asarray(il, dtype=np.int64)), torch.tensor(tl), blank=blank,
        reduction=reduction, zero_infinity=zero_infinity)
    loss.backward()
    return loss.item(), xt.grad.numpy()


CTC_SHAPES = [(1, 1, 2, 1, 0), (3, 7, 5, 3, 0), (5, 13, 2, 4, 0), (2, 17, 11, 6, 0),
              (7, 29, 3, 5, 2), (4, 11, 1, 0, 0), (3, 5, 4, 0, 1)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,T,C,S,blank", CTC_SHAPES)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_ctc_matches_torch(rng, helpers, dtype, B, T, C, S, blank, reduction):
    x, il, tg, tl = _ctc_case(rng, B, T, C, S, blank)
    x = x.astype(dtype)
    loss = L.CTC(blank=blank, reduction=reduction)
    x0, tg0 = x.copy(), tg.copy()
    value = loss.forward(x, tg, il)
    grad = loss.backward()
    assert np.array_equal(x, x0) and np.array_equal(tg, tg0)
    assert grad.dtype == x.dtype and grad.shape == x.shape
    tv, tgrad = _ctc_torch(x, il, tg, tl, blank, reduction)
    _close_value(value, tv, dtype)
    helpers.assert_close(grad, tgrad, dtype, "dlogits")
    # float32: the kernel works in double, so it also matches the float64 truth
    ev, egrad = _ctc_torch(x.astype(np.float64), il, tg, tl, blank, reduction)
    _close_value(value, ev, dtype)
    helpers.assert_close(grad, egrad, dtype, "dlogits vs float64")
    assert not grad[~_mask(il, B, T)].any()  # exact zeros past each input length
    assert loss(x, tg, il) == value


def test_ctc_long_sequences_float32_against_float64_truth(rng, helpers):
    x, il, tg, tl = _ctc_case(rng, 3, 200, 6, 40)
    loss = L.CTC()
    v = loss.forward(x.astype(np.float32), tg, il)
    ev, egrad = _ctc_torch(x.astype(np.float32).astype(np.float64), il, tg, tl)
    _close_value(v, ev, "float32")
    helpers.assert_close(loss.backward(), egrad, "float32", "dlogits")


def test_ctc_central_difference(rng):
    x, il, tg, tl = _ctc_case(rng, 3, 6, 4, 3)
    tg[0, :3] = [2, 2, 3]  # a repeat: needs a blank between
    tl[0] = 3
    il = np.array([6, 4, 5])
    for reduction in ("mean", "sum"):
        loss = L.CTC(reduction=reduction)
        loss.forward(x, tg, il)
        num = _central_diff(lambda z: loss(z, tg, il), x)
        np.testing.assert_allclose(loss.backward(), num, rtol=1e-6, atol=1e-9)


def test_ctc_known_values():
    # T=1, one label: p = softmax[0, label]
    x = np.log(np.array([[[0.2, 0.5, 0.3]]]))
    assert np.isclose(L.CTC()(x, [[1]]), -np.log(0.5), rtol=1e-13)
    # empty target: every frame blank
    x = np.log(np.array([[[0.6, 0.4], [0.7, 0.3], [0.1, 0.9]]]))
    assert np.isclose(L.CTC()(x, [[]]), -np.log(0.6 * 0.7 * 0.1), rtol=1e-13)
    # repeat [1, 1] in T=3 has the single alignment 1, blank, 1
    x = np.log(np.array([[[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]]]))
    assert np.isclose(L.CTC(reduction="sum")(x, [[1, 1]]), -np.log(0.8 * 0.6 * 0.5),
                      rtol=1e-13)
    # label 1 in T=2: alignments 1-1, 1-b, b-1
    p = np.array([[0.3, 0.7], [0.4, 0.6]])
    want = p[0, 1] * p[1, 1] + p[0, 1] * p[1, 0] + p[0, 0] * p[1, 1]
    assert np.isclose(L.CTC()(np.log(p)[None], [[1]]), -np.log(want), rtol=1e-13)


def test_ctc_empty_targets_all_forms(rng, helpers):
    x = rng.standard_normal((3, 5, 4))
    il = np.array([5, 2, 4])
    v1 = L.CTC().forward(x, np.zeros((3, 0), dtype=np.int64), il)
    v2 = L.CTC()(x, [[], [], []], il)
    v3 = L.CTC()(x, np.full((3, 2), -1), il)
    assert v1 == v2 == v3
    lsm = x - np.log(np.exp(x).sum(-1, keepdims=True))
    want = np.mean([-lsm[b, :il[b], 0].sum() for b in range(3)])
    assert np.isclose(v1, want, rtol=1e-12)
    tv, _ = _ctc_torch(x, il, np.zeros((3, 0), dtype=np.int64), np.zeros(3, np.int64))
    _close_value(v1, tv, "float64")


def test_ctc_target_forms_agree(rng):
    x, il, tg, tl = _ctc_case(rng, 4, 9, 5, 4)
    loss = L.CTC()
    ref = loss.forward(x, tg, il)
    gref = loss.backward().copy()
    lists = [list(tg[b, :tl[b]]) for b in range(4)]
    junk = tg.copy()
    junk[junk == -1] = 77  # beyond target_lengths anything goes
    flat = np.concatenate(lists).astype(np.int32)
    for target, kw in [(lists, {}), (tuple(np.array(s) for s in lists), {}),
                       (junk, dict(target_lengths=tl)), (flat, dict(target_lengths=tl)),
                       (tg.astype(np.int32), {}), (np.asfortranarray(tg), {}),
                       ([s + [-1] for s in lists], {})]:
        assert loss.forward(x, target, il, **kw) == ref
        assert np.array_equal(loss.backward(), gref)


def test_ctc_infeasible_targets(rng):
    _torch()
    x = rng.standard_normal((3, 4, 3))
    il = np.array([4, 2, 3])
    tg = np.array([[1, 2, -1], [1, 1, -1], [1, 2, 1]])  # b=1 needs 3 frames, has 2
    tl = np.array([2, 2, 3])
    for reduction in ("mean", "sum"):
        loss = L.CTC(reduction=reduction)
        assert loss.forward(x, tg, il) == np.inf
        g = loss.backward()
        tv, tgrad = _ctc_torch(x, il, tg, tl, reduction=reduction)
        assert tv == np.inf
        assert np.array_equal(np.isnan(g), np.isnan(tgrad))
        assert np.all(np.isnan(g[1, :2])) and not g[1, 2:].any()
        np.testing.assert_allclose(g[[0, 2]], tgrad[[0, 2]], rtol=1e-9, atol=1e-12)

        zl = L.CTC(reduction=reduction, zero_infinity=True)
        v = zl.forward(x, tg, il)
        g = zl.backward()
        tv, tgrad = _ctc_torch(x, il, tg, tl, reduction=reduction, zero_infinity=True)
        assert np.isclose(v, tv, rtol=1e-12)
        assert not g[1].any()
        np.testing.assert_allclose(g, tgrad, rtol=1e-9, atol=1e-12)
    # target longer than the input: infeasible too
    assert L.CTC()(x[:1, :2], [[1, 2, 1]]) == np.inf
    assert L.CTC(zero_infinity=True)(x[:1, :2], [[1, 2, 1]]) == 0.0
    assert L.CTC(zero_infinity=True).losses(x, tg, il)[1] == 0.0
    assert L.CTC().losses(x, tg, il)[1] == np.inf


def test_ctc_padding_frames_do_not_matter(rng):
    x, il, tg, tl = _ctc_case(rng, 4, 10, 5, 3)
    il = np.array([10, 3, 7, 1])
    loss = L.CTC()
    v = loss.forward(x, tg, il)
    g = loss.backward().copy()
    assert not g[~_mask(il, 4, 10)].any()
    x2 = x.copy()
    x2[~_mask(il, 4, 10)] = rng.standard_normal(x2[~_mask(il, 4, 10)].shape) * 100
    assert loss.forward(x2, tg, il) == v
    assert np.array_equal(loss.backward(), g)
    # each sample alone gives the same loss as inside the batch
    per = loss.losses(x, tg, il)
    for b in range(4):
        alone = L.CTC(reduction="sum").losses(x[b:b + 1, :il[b]], tg[b:b + 1])
        assert alone[0] == per[b]


def test_ctc_thread_count_invariance(rng, restore_threads):
    import fastrnn as fr

    x, il, tg, tl = _ctc_case(rng, 24, 120, 12, 30)  # well above the threading threshold
    for dtype in DTYPES:
        xs = x.astype(dtype)
        out = []
        for n in (1, 2):
            fr.set_num_threads(n)
            loss = L.CTC()
            v = loss.forward(xs, tg, il)
            out.append((np.float64(v).tobytes(), loss.backward().tobytes(),
                        loss.losses(xs, tg, il).tobytes()))
        assert out[0] == out[1]


def test_ctc_kernel_rejects_bad_arguments():
    from fastrnn.backends.cpu import _ext

    x = np.zeros((1, 3, 4))
    ok = dict(input_lengths=np.array([3]), targets=np.array([[1, 2]]),
              target_lengths=np.array([2]))
    losses, grad = _ext.ctc(x, ok["input_lengths"], ok["targets"], ok["target_lengths"],
                            0, False, None, True, 1)
    assert np.isfinite(losses[0]) and grad.shape == x.shape
    with pytest.raises(ValueError, match="status"):
        _ext.ctc(x, None, np.array([[1, 0]]), np.array([2]), 0, False, None, True, 1)
    with pytest.raises(ValueError, match="status"):
        _ext.ctc(x, np.array([4]), np.array([[1, 2]]), np.array([2]), 0, False, None,
                 False, 1)
    with pytest.raises(ValueError, match="status"):
        _ext.ctc(x, None, np.array([[1, 2]]), np.array([3]), 0, False, None, True, 1)
    with pytest.raises(ValueError, match="status"):
        _ext.ctc(x, None, np.array([[1, 2]]), np.array([2]), 4, False, None, True, 1)
    with pytest.raises(TypeError, match="targets"):
        _ext.ctc(x, None, np.array([[1, 2]], dtype=np.int32), np.array([2]), 0, False,
                 None, True, 1)
    with pytest.raises(ValueError, match="C-contiguous"):
        _ext.ctc(np.zeros((1, 4, 3)).transpose(0, 2, 1), None, np.array([[1, 2]]),
                 np.array([2]), 0, False, None, True, 1)


@pytest.mark.parametrize("target,kw,exc,match", [
    ([[1, 0]], {}, ValueError, "label 0 at position 1"),         # blank as a label
    ([[1, 5]], {}, ValueError, "label 5"),                        # out of range
    ([[1, -2]], {}, ValueError, "label -2"),
    ([[-1, 2]], {}, ValueError, "after its -1 padding"),
    ([[1, 2], [1]], {}, ValueError, "expected 1 label sequences"),
    ([[1.0, 2.0]], {}, TypeError, "target"),
    ([1, 2], {}, ValueError, "target"),
    (np.array([1, 2]), {}, ValueError, "target_lengths"),
    (np.array([1, 2]), dict(target_lengths=[3]), ValueError, "sum\\(target_lengths\\)"),
    (np.array([[1, 2]]), dict(target_lengths=[3]), ValueError, "target_lengths"),
    (np.array([[1, 2]]), dict(target_lengths=[-1]), ValueError, "target_lengths"),
    (np.array([[1, 2]]), dict(target_lengths=[1, 1]), ValueError, "target_lengths"),
    (np.array([[1, 2]]), dict(target_lengths=[1.0]), TypeError, "target_lengths"),
    (np.array([[1, 2]]), dict(lengths=[0]), ValueError, "lengths"),
    (np.array([[1, 2]]), dict(lengths=[4]), ValueError, "lengths"),
    (np.array([[1, 2]]), dict(lengths=[2.0]), TypeError, "lengths"),
])
def test_ctc_bad_inputs(target, kw, exc, match):
    x = np.zeros((1, 3, 4))
    with pytest.raises(exc, match=match):
        L.CTC().forward(x, target, **kw)


def test_ctc_bad_config_and_output():
    with pytest.raises(ValueError, match="reduction"):
        L.CTC(reduction="none")
    with pytest.raises(ValueError, match="blank"):
        L.CTC(blank=-1)
    with pytest.raises(TypeError, match="zero_infinity"):
        L.CTC(zero_infinity="yes")
    with pytest.raises(ValueError, match="blank"):
        L.CTC(blank=4)(np.zeros((1, 3, 4)), [[1]])
    with pytest.raises(ValueError, match="output"):
        L.CTC()(np.zeros((3, 4)), [[1]])
    with pytest.raises(TypeError, match="output"):
        L.CTC()(np.zeros((1, 3, 4), dtype=complex), [[1]])
    with pytest.raises(RuntimeError, match="forward"):
        L.CTC().backward()


# ====================================================================== other errors
@pytest.mark.parametrize("make,args,exc,match", [
    (L.CrossEntropy, (np.zeros((2, 3)), [0, 3]), ValueError, "target.*0..2"),
    (L.CrossEntropy, (np.zeros((2, 3)), [0.0, 1.0]), TypeError, "target"),
    (L.CrossEntropy, (np.zeros((2, 3)), [0, 1, 2]), ValueError, "target"),
    (L.CrossEntropy, (np.zeros(3), [0]), ValueError, "output"),
    (L.CrossEntropy, (np.zeros((2, 4, 3)), np.zeros((2, 4), int), [5, 1]), ValueError,
     "lengths"),
    (L.CrossEntropy, (np.array([["a"]]), [0]), TypeError, "output"),
    (L.BinaryCrossEntropy, (np.zeros((2, 3)), np.zeros((3, 2))), ValueError, "target"),
    (L.BinaryCrossEntropy, (np.zeros(2), [0.5, 1.5]), ValueError, "\\[0, 1\\]"),
    (L.BinaryCrossEntropy, (np.zeros(2), [0.5, np.nan]), ValueError, "\\[0, 1\\]"),
    (L.MSE, (np.zeros((2, 3)), np.zeros(3)), ValueError, "target"),
    (L.MSE, (np.zeros((2, 3, 1)), np.zeros((2, 3, 1)), [1, 4]), ValueError, "lengths"),
    (L.MSE, (np.zeros((0, 3)), np.zeros((0, 3))), ValueError, "non-empty"),
])
def test_bad_inputs(make, args, exc, match):
    with pytest.raises(exc, match=match):
        make().forward(*args)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="label_smoothing"):
        L.CrossEntropy(label_smoothing=1.5)
    with pytest.raises(ValueError, match="class_weights"):
        L.CrossEntropy(class_weights=[1, -1])
    with pytest.raises(ValueError, match="class_weights"):
        L.CrossEntropy(class_weights=[1, 2])(np.zeros((1, 3)), [0])
    with pytest.raises(TypeError, match="ignore_index"):
        L.CrossEntropy(ignore_index=1.5)
    with pytest.raises(ValueError, match="pos_weight"):
        L.BinaryCrossEntropy(pos_weight=[[1.0]])
    with pytest.raises(ValueError, match="pos_weight"):
        L.BinaryCrossEntropy(pos_weight=[1.0, 2.0])(np.zeros((2, 3)), np.zeros((2, 3)))


# ====================================================================== registry
def test_get_and_config_roundtrip():
    for name, cls in [("cross_entropy", L.CrossEntropy), ("binary_cross_entropy",
                      L.BinaryCrossEntropy), ("mse", L.MSE), ("ctc", L.CTC),
                      ("categorical_crossentropy", L.CrossEntropy), ("BCE",
                      L.BinaryCrossEntropy)]:
        assert type(L.get(name)) is cls
    made = [L.CrossEntropy(ignore_index=3, class_weights=[1.0, 2.0], label_smoothing=0.1),
            L.BinaryCrossEntropy(pos_weight=[2.0, 1.0]), L.BinaryCrossEntropy(pos_weight=3),
            L.MSE(), L.CTC(blank=2, reduction="sum", zero_infinity=True)]
    for loss in made:
        cfg = json.loads(json.dumps(loss.get_config()))
        again = L.get(loss.name, **cfg)
        assert type(again) is type(loss) and again.get_config() == loss.get_config()
        assert repr(again) == repr(loss)
    inst = L.MSE()
    assert L.get(inst) is inst
    assert type(L.get(L.CTC, blank=1)) is L.CTC
    with pytest.raises(ValueError, match="cross_entropy.*ctc.*mse"):
        L.get("hinge")
    with pytest.raises(TypeError):
        L.get(3)
    with pytest.raises(TypeError):
        L.get(inst, blank=1)


def test_call_keeps_nothing(rng):
    x = rng.standard_normal((2, 3))
    loss = L.CrossEntropy()
    loss.forward(x, [0, 1])
    g = loss.backward().copy()
    loss(x * 5, [2, 2])
    assert np.array_equal(loss.backward(), g)


# ====================================================================== decoders
def test_greedy_decode():
    path = np.array([[1, 1, 0, 1, 2, 2, 0, 3], [0, 0, 2, 2, 2, 0, 0, 0]])
    x = np.eye(4)[path] * 3.0  # logits
    assert L.ctc_greedy_decode(x) == [[1, 1, 2, 3], [2]]
    assert L.ctc_greedy_decode(x, lengths=[4, 1]) == [[1, 1], []]
    probs = np.exp(x) / np.exp(x).sum(-1, keepdims=True)
    assert L.ctc_greedy_decode(probs) == [[1, 1, 2, 3], [2]]
    x3 = np.eye(4)[np.where(path == 0, 3, np.where(path == 3, 0, path))]
    assert L.ctc_greedy_decode(x3, blank=3) == [[1, 1, 2, 0], [2]]
    with pytest.raises(ValueError, match="blank"):
        L.ctc_greedy_decode(x, blank=4)


def _brute_force(lp, blank):
    """Exact log p(labelling) for every labelling, by enumerating alignments."""
    T, C = lp.shape
    total = {}
    for path in itertools.product(range(C), repeat=T):
        lab = tuple(k for i, k in enumerate(path) if k != blank and (i == 0 or
                                                                     path[i - 1] != k))
        total[lab] = np.logaddexp(total.get(lab, -np.inf), sum(lp[t, k] for t, k in
                                                               enumerate(path)))
    return total


@pytest.mark.parametrize("T,C,blank", [(1, 2, 0), (4, 3, 0), (5, 3, 1), (3, 4, 3), (6, 2, 0)])
def test_beam_decode_exhaustive_matches_brute_force(rng, T, C, blank):
    x = rng.standard_normal((3, T, C)) * 2
    lengths = np.array([T, max(1, T - 1), 1])
    seqs, scores = L.ctc_beam_decode(x, lengths, beam_width=10 ** 6, blank=blank,
                                     return_scores=True)
    lp = x - np.log(np.exp(x).sum(-1, keepdims=True))
    for b in range(3):
        exact = _brute_force(lp[b, :lengths[b]], blank)
        best = max(exact, key=exact.get)
        assert tuple(seqs[b]) == best
        assert np.isclose(scores[b], exact[best], rtol=1e-12)
        # the exact CTC loss of the decoded labelling agrees with its score
        nll = L.CTC(blank=blank, reduction="sum").losses(
            x[b:b + 1, :lengths[b]], [seqs[b]])[0]
        assert np.isclose(-nll, scores[b], rtol=1e-12)
    # the same from probabilities and from log-probabilities
    p = np.exp(lp)
    assert L.ctc_beam_decode(p, lengths, beam_width=10 ** 6, blank=blank) == seqs
    assert L.ctc_beam_decode(lp, lengths, beam_width=10 ** 6, blank=blank,
                             probs=False) == seqs


def test_beam_decode_pruned_scores_are_lower_bounds(rng):
    x = rng.standard_normal((4, 6, 3)) * 2
    lp = x - np.log(np.exp(x).sum(-1, keepdims=True))
    for width in (1, 2, 3):
        seqs, scores = L.ctc_beam_decode(x, beam_width=width, return_scores=True)
        for b in range(4):
            exact = _brute_force(lp[b], 0)[tuple(seqs[b])]
            assert scores[b] <= exact + 1e-12
    # beam search beats or ties greedy decoding in exact probability
    greedy = L.ctc_greedy_decode(x)
    beam = L.ctc_beam_decode(x, beam_width=16)
    for b in range(4):
        exact = _brute_force(lp[b], 0)
        assert exact[tuple(beam[b])] >= exact.get(tuple(greedy[b]), -np.inf) - 1e-12


def test_beam_decode_bad_inputs():
    x = np.zeros((1, 3, 4))
    with pytest.raises(ValueError, match="beam_width"):
        L.ctc_beam_decode(x, beam_width=0)
    with pytest.raises(TypeError, match="beam_width"):
        L.ctc_beam_decode(x, beam_width=2.5)
    with pytest.raises(ValueError, match="output"):
        L.ctc_beam_decode(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="lengths"):
        L.ctc_beam_decode(x, lengths=[4])


def test_edit_distance():
    import fastrnn as fr
    assert fr.edit_distance is L.edit_distance
    assert L.edit_distance([], []) == 0
    assert L.edit_distance([1, 2, 3], []) == 3
    assert L.edit_distance([], [4, 5]) == 2
    assert L.edit_distance([1, 2, 3], [1, 2, 3]) == 0
    assert L.edit_distance([1, 2, 3], [1, 3]) == 1          # deletion
    assert L.edit_distance([1, 3], [1, 2, 3]) == 1          # insertion
    assert L.edit_distance([1, 2, 3], [1, 4, 3]) == 1       # substitution
    assert L.edit_distance("kitten", "sitting") == 3
    assert L.edit_distance(np.array([1, 2, 3]), (1, 4, 3)) == 1


@pytest.mark.parametrize("bad, err, msg", [
    (None, TypeError, "{} must be a sequence"),
    (5, TypeError, "{} must be a sequence"),
    ({1, 2}, TypeError, "{} must be a sequence"),
    (np.zeros((2, 3)), ValueError, "{} must be 1-D"),
])
def test_edit_distance_bad_inputs(bad, err, msg):
    with pytest.raises(err, match=msg.format("a")):
        L.edit_distance(bad, [1, 2])
    with pytest.raises(err, match=msg.format("b")):
        L.edit_distance([1, 2], bad)
