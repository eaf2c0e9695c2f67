"""The two cell options that ONNX and Keras need beyond torch's cells:

- GRU(linear_before_reset=False): n = tanh(W_in x + b_in + W_hn (r*h) + b_hn)
  (ONNX linear_before_reset=0, Keras reset_after=False);
- clip=c: gate pre-activations clamped to [-c, c] (ONNX `clip`).

Checked against the NumPy reference (fastrnn/_reference.py) in float64,
forward and every gradient, by float64 central differences, for thread-count
and fast-path independence in float32, and against an ONNX Runtime node
(skipped without onnx/onnxruntime).
"""
import numpy as np
import pytest

import fastrnn as fr
from fastrnn.backends.cpu import _ext
from fastrnn._reference import reference_backward, reference_forward

MODES = ["RNN_TANH", "RNN_RELU", "LSTM", "GRU"]


def make(mode, I, H, L=1, bd=False, bias=True, dtype="float64", seed=0, **kw):
    common = dict(num_layers=L, bidirectional=bd, bias=bias, dtype=dtype, seed=seed)
    if mode == "GRU":
        return fr.GRU(I, H, **common, **kw)
    if mode == "LSTM":
        return fr.LSTM(I, H, **common, **kw)
    return fr.RNN(I, H, nonlinearity="tanh" if mode == "RNN_TANH" else "relu", **common, **kw)


def options(mode):
    """(linear_before_reset, clip) combinations worth checking for a mode."""
    out = [(True, 0.6)]
    if mode == "GRU":
        out += [(False, None), (False, 0.6)]
    return out


def run_layer(layer, x, state, lengths, dy, dstate):
    layer.zero_grad()
    y, st = layer.forward(x, state, lengths=lengths)
    dx, dst0 = layer.backward(dy, dstate)
    return y, st, dx, dst0, {k: v.copy() for k, v in layer.grads.items()}


def problem(mode, T, B, I, H, L, bd, seed, use_len=True, use_state=True, scale=1.0):
    rng = np.random.default_rng(seed)
    D = 2 if bd else 1
    x = rng.standard_normal((T, B, I)) * scale
    h0 = rng.standard_normal((L * D, B, H)) if use_state else None
    c0 = rng.standard_normal((L * D, B, H)) if (use_state and mode == "LSTM") else None
    lengths = None
    if use_len:
        lengths = rng.integers(1, T + 1, size=B)
        lengths[0] = T
        if B > 1:
            lengths[1] = max(1, T - 2)
    dy = rng.standard_normal((T, B, D * H))
    dh = rng.standard_normal((L * D, B, H))
    dc = rng.standard_normal((L * D, B, H)) if mode == "LSTM" else None
    return x, h0, c0, lengths, dy, dh, dc


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("L,bd", [(1, False), (2, True)])
def test_matches_reference_float64(mode, L, bd):
    T, B, I, H = 6, 3, 4, 5
    for lbr, clip in options(mode):
        kw = {"clip": clip}
        if mode == "GRU":
            kw["linear_before_reset"] = lbr
        layer = make(mode, I, H, L, bd, seed=3, **kw)
        x, h0, c0, lengths, dy, dh, dc = problem(mode, T, B, I, H, L, bd, seed=5, scale=2.0)
        state = (h0, c0) if mode == "LSTM" else h0
        dstate = (dh, dc) if mode == "LSTM" else dh
        y, st, dx, dst0, grads = run_layer(layer, x, state, lengths, dy, dstate)
        ry, rh, rc, ctx = reference_forward(mode, layer.state_dict(), x, h0, c0, lengths,
                                            L, bd, linear_before_reset=lbr, clip=clip)
        rdx, rdh0, rdc0, rgrads = reference_backward(ctx, dy, dh, dc)
        hn = st[0] if mode == "LSTM" else st
        np.testing.assert_allclose(y, ry, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(hn, rh, rtol=1e-10, atol=1e-12)
        if mode == "LSTM":
            np.testing.assert_allclose(st[1], rc, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(dst0[1], rdc0, rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(dx, rdx, rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(dst0[0] if mode == "LSTM" else dst0, rdh0,
                                   rtol=1e-9, atol=1e-11)
        for k in grads:
            np.testing.assert_allclose(grads[k], rgrads[k], rtol=1e-9, atol=1e-11,
                                       err_msg=f"{mode} lbr={lbr} clip={clip} {k}")
        if clip:  # the clip really clamps something in this problem
            masks = [c["m"] for lay in ctx["layers"] for d in lay["steps"] for (_, _, c) in d]
            flat = np.concatenate([np.ravel(m) for mm in masks
                                   for m in (mm if isinstance(mm, tuple) else (mm,))])
            assert 0 < flat.mean() < 1


def test_reset_first_gru_differs_from_torch_gru():
    layer = make("GRU", 3, 4, seed=1)
    other = make("GRU", 3, 4, seed=1, linear_before_reset=False)
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    h0 = np.random.default_rng(1).standard_normal((1, 2, 4))
    assert not np.allclose(layer(x, h0)[0], other(x, h0)[0])
    # and without bias or state both share r,z: the first step agrees where h0 = 0
    a = make("GRU", 3, 4, seed=1, bias=False)
    b = make("GRU", 3, 4, seed=1, bias=False, linear_before_reset=False)
    np.testing.assert_allclose(a(x[:1])[0], b(x[:1])[0], rtol=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_central_differences(mode):
    """float64 random-direction checks of every parameter, x and the states."""
    T, B, I, H, L, bd = 4, 2, 3, 4, 2, True
    for lbr, clip in options(mode):
        kw = {"clip": clip}
        if mode == "GRU":
            kw["linear_before_reset"] = lbr
        layer = make(mode, I, H, L, bd, seed=11, **kw)
        x, h0, c0, lengths, dy, dh, dc = problem(mode, T, B, I, H, L, bd, seed=12, scale=1.5)
        is_lstm = mode == "LSTM"

        def loss(x_, h_, c_):
            y, st = layer(x_, (h_, c_) if is_lstm else h_, lengths=lengths)
            hn, cn = st if is_lstm else (st, None)
            s = np.sum(y * dy) + np.sum(hn * dh)
            return s + (np.sum(cn * dc) if is_lstm else 0.0)

        _, _, dx, dst0, grads = run_layer(layer, x, (h0, c0) if is_lstm else h0, lengths,
                                          dy, (dh, dc) if is_lstm else dh)
        rng = np.random.default_rng(99)
        eps = 1e-6
        # clamping makes the loss piecewise smooth: a step must not cross a
        # clip boundary, so directions are scaled small and the tolerance is
        # relative to |g.d|
        for name in list(layer.params) + ["x", "h0"] + (["c0"] if is_lstm else []):
            if name in layer.params:
                p = layer.params[name]
                d = rng.standard_normal(p.shape)
                base = p.copy()
                p[...] = base + eps * d
                lp = loss(x, h0, c0)
                p[...] = base - eps * d
                lm = loss(x, h0, c0)
                p[...] = base
                g = grads[name]
            else:
                arr = {"x": x, "h0": h0, "c0": c0}[name]
                d = rng.standard_normal(arr.shape)
                args = {"x": x, "h0": h0, "c0": c0}
                args[name] = arr + eps * d
                lp = loss(args["x"], args["h0"], args["c0"])
                args[name] = arr - eps * d
                lm = loss(args["x"], args["h0"], args["c0"])
                g = {"x": dx, "h0": dst0[0] if is_lstm else dst0,
                     "c0": dst0[1] if is_lstm else None}[name]
            fd = (lp - lm) / (2 * eps)
            an = float(np.sum(g * d))
            assert abs(fd - an) <= 1e-6 * max(1.0, abs(an)), \
                f"{mode} lbr={lbr} clip={clip} {name}: fd {fd} vs analytic {an}"


@pytest.mark.parametrize("mode", MODES)
def test_float32_threads_and_fast_path_do_not_change_bits(mode):
    """The options run in the portable path; its bits are independent of the
    thread count, and switching the fast path on or off changes nothing."""
    T, B, I, H, L, bd = 5, 6, 7, 19, 2, True
    for lbr, clip in options(mode):
        kw = {"clip": clip}
        if mode == "GRU":
            kw["linear_before_reset"] = lbr
        layer = make(mode, I, H, L, bd, dtype="float32", seed=2, **kw)
        x, h0, c0, lengths, dy, dh, dc = problem(mode, T, B, I, H, L, bd, seed=4, scale=2.0)
        x, dy = x.astype(np.float32), dy.astype(np.float32)
        state = (h0.astype(np.float32), c0.astype(np.float32)) if mode == "LSTM" \
            else h0.astype(np.float32)
        results = []
        was = _ext.set_fast_path(True)
        try:
            for fast, threads in ((True, 1), (True, 2), (False, 1)):
                _ext.set_fast_path(fast)
                fr.set_num_threads(threads)
                y, st, dx, dst0, grads = run_layer(layer, x, state, lengths, dy, None)
                results.append([y, dx] + [grads[k] for k in sorted(grads)])
        finally:
            _ext.set_fast_path(was)
            fr.set_num_threads(None)
        for other in results[1:]:
            for a, b in zip(results[0], other):
                assert np.array_equal(a, b)


def test_torch_default_path_unchanged_by_options():
    """clip=None and linear_before_reset=True are exactly the torch cells."""
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    a = fr.GRU(3, 5, seed=1)
    b = fr.GRU(3, 5, seed=1, linear_before_reset=True, clip=None)
    assert np.array_equal(a(x)[0], b(x)[0])
    # a huge clip clamps nothing (the clipped cell runs the portable loop,
    # whose exp and tanh round differently from the fast loops': a few ulp)
    c = fr.GRU(3, 5, seed=1, clip=1e30)
    np.testing.assert_allclose(a(x)[0], c(x)[0], rtol=1e-5, atol=1e-7)


def test_step_matches_full_call_with_options():
    layer = make("GRU", 3, 4, L=2, seed=1, linear_before_reset=False, clip=0.5)
    x = np.random.default_rng(0).standard_normal((6, 2, 3)) * 3
    y, hn = layer(x)
    state = None
    for t in range(6):
        yt, state = layer.step(x[t], state)
        np.testing.assert_allclose(yt, y[t], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(state, hn, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("bad,exc", [(-1.0, ValueError), (0, ValueError),
                                     (float("nan"), ValueError), ("1", TypeError),
                                     (True, TypeError)])
def test_bad_clip(bad, exc):
    with pytest.raises(exc, match="clip"):
        fr.LSTM(3, 4, clip=bad)


def test_bad_linear_before_reset():
    with pytest.raises(TypeError, match="linear_before_reset"):
        fr.GRU(3, 4, linear_before_reset=0)


def test_repr_shows_options():
    r = repr(fr.GRU(3, 4, linear_before_reset=False, clip=2.0))
    assert "linear_before_reset=False" in r and "clip=2.0" in r


@pytest.mark.parametrize("lbr", [0, 1])
@pytest.mark.parametrize("clip", [None, 0.8])
def test_gru_matches_onnxruntime_node(lbr, clip):
    """A GRU node with linear_before_reset 0/1 (and clip) in ONNX Runtime."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    T, B, I, H = 7, 3, 4, 6
    rng = np.random.default_rng(lbr * 10 + (clip is not None))
    layer = fr.GRU(I, H, seed=3, linear_before_reset=bool(lbr), clip=clip)
    sd = layer.state_dict()
    order = np.r_[np.arange(H, 2 * H), np.arange(H), np.arange(2 * H, 3 * H)]  # z,r,h
    W = sd["weight_ih_l0"][order][None]
    R = sd["weight_hh_l0"][order][None]
    Bias = np.concatenate([sd["bias_ih_l0"][order], sd["bias_hh_l0"][order]])[None]
    x = (rng.standard_normal((T, B, I)) * 2).astype(np.float32)
    h0 = rng.standard_normal((1, B, H)).astype(np.float32)
    attrs = dict(hidden_size=H, linear_before_reset=lbr)
    if clip is not None:
        attrs["clip"] = clip
    node = helper.make_node("GRU", ["X", "W", "R", "B", "", "h0"], ["Y", "Yh"], **attrs)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, B, I]),
         helper.make_tensor_value_info("h0", TensorProto.FLOAT, [1, B, H])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [T, 1, B, H]),
         helper.make_tensor_value_info("Yh", TensorProto.FLOAT, [1, B, H])],
        [numpy_helper.from_array(W, "W"), numpy_helper.from_array(R, "R"),
         numpy_helper.from_array(Bias, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    Y, Yh = sess.run(None, {"X": x, "h0": h0})
    y, hn = layer(x, h0)
    np.testing.assert_allclose(y, Y[:, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hn, Yh, rtol=1e-5, atol=1e-6)
