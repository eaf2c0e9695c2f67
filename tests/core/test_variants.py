"""The layers' variants (docs/variants.md), run by fastrnn._generic's NumPy
engine: ONNX activations, peepholes, input_forget, padding="carry", general
masks, LSTM projections, resets and return_states.

Oracles: ONNX Runtime nodes built with onnx.helper (activations, peepholes,
input_forget, clip, lengths), Keras 3 and a hand forward fill (carry), the
plain C path on compressed sequences (masks), torch (proj_size:
tests/parity/test_proj_torch.py), pieces run separately (resets), single
layers run step by step (return_states), and float64 central differences
for every gradient.
"""
import numpy as np
import pytest

import fastrnn as fr
from fastrnn import _generic

TOL = {np.float32: dict(rtol=2e-4, atol=2e-4), np.float64: dict(rtol=1e-9, atol=1e-9)}

# (T, B, I, H): size 1, primes, batch 1
SHAPES = [(1, 1, 1, 1), (5, 3, 7, 11), (7, 1, 3, 5), (4, 2, 13, 2)]


def _layer(cell, I, H, **kw):
    return {"LSTM": fr.LSTM, "GRU": fr.GRU, "RNN": fr.RNN}[cell](I, H, **kw)


def _close(a, b, dtype, what=""):
    np.testing.assert_allclose(a, b, err_msg=what, **TOL[np.dtype(dtype).type])


# ---- ONNX Runtime nodes -------------------------------------------------------

def _ort_run(layer, x, lengths=None, h0=None, c0=None, write_alpha_beta=True):
    """The layer (one layer, float32) as one ONNX node run by ONNX Runtime:
    returns (y (T, B, D*H), h_n, c_n or None)."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper
    from fastrnn.formats.onnx._common import _TO_ONNX, _block_perm

    op = "RNN" if layer.mode.startswith("RNN") else layer.mode
    H, D = layer.hidden_size, layer.num_directions
    perm = _block_perm(_TO_ONNX[op], H)
    p = layer.params
    sfxs = ["", "_reverse"][:D]
    W = np.stack([p[f"weight_ih_l0{s}"][perm] for s in sfxs])
    R = np.stack([p[f"weight_hh_l0{s}"][perm] for s in sfxs])
    inits = [numpy_helper.from_array(W, "W"), numpy_helper.from_array(R, "R")]
    ins = ["X", "W", "R"]
    if layer.bias:
        Bv = np.stack([np.concatenate([p[f"bias_ih_l0{s}"][perm], p[f"bias_hh_l0{s}"][perm]])
                       for s in sfxs])
        inits.append(numpy_helper.from_array(Bv, "B"))
        ins.append("B")
    else:
        ins.append("")
    feeds = {"X": x}
    ins.append("seq" if lengths is not None else "")
    if lengths is not None:
        feeds["seq"] = np.asarray(lengths, np.int32)
    ins.append("h0" if h0 is not None else "")
    if h0 is not None:
        feeds["h0"] = h0
    if op == "LSTM":
        ins.append("c0" if c0 is not None else "")
        if c0 is not None:
            feeds["c0"] = c0
        if layer.peepholes:
            # ours (i, f, o), ONNX's (i, o, f)
            Pv = np.stack([np.concatenate([p[f"peephole_l0{s}"][:H], p[f"peephole_l0{s}"][2 * H:],
                                           p[f"peephole_l0{s}"][H:2 * H]]) for s in sfxs])
            inits.append(numpy_helper.from_array(Pv, "P"))
            ins.append("P")
    while ins and not ins[-1]:
        ins.pop()
    attrs = dict(hidden_size=H, direction="bidirectional" if D == 2 else "forward")
    if op == "GRU":
        attrs["linear_before_reset"] = int(layer.linear_before_reset)
    if op == "LSTM" and layer.input_forget:
        attrs["input_forget"] = 1
    if layer.clip is not None:
        attrs["clip"] = float(layer.clip)
    acts = layer.activations
    if acts is None and layer.mode == "RNN_RELU":
        acts = ["Relu"]
    if acts is not None:
        slots = _generic.SLOTS[layer.mode]
        names = list(acts) * (D if len(acts) == slots else 1)
        al = layer.activation_alpha
        be = layer.activation_beta
        if al is not None and len(al) != len(names):
            al = list(al) * D
        if be is not None and len(be) != len(names):
            be = list(be) * D
        oa, ob = _generic.onnx_alpha_beta(names, al, be)
        attrs["activations"] = names
        if not write_alpha_beta:
            oa = ob = None
        if oa:
            attrs["activation_alpha"] = oa
        if ob:
            attrs["activation_beta"] = ob
    n_out = 3 if op == "LSTM" else 2
    outs = ["Y", "Y_h", "Y_c"][:n_out]
    node = helper.make_node(op, ins, outs, **attrs)
    f32 = TensorProto.FLOAT
    gin = [helper.make_tensor_value_info("X", f32, list(x.shape))]
    if lengths is not None:
        gin.append(helper.make_tensor_value_info("seq", TensorProto.INT32, [x.shape[1]]))
    if h0 is not None:
        gin.append(helper.make_tensor_value_info("h0", f32, list(h0.shape)))
    if c0 is not None:
        gin.append(helper.make_tensor_value_info("c0", f32, list(c0.shape)))
    gout = [helper.make_tensor_value_info(o, f32, [None] * (4 if o == "Y" else 3)) for o in outs]
    graph = helper.make_graph([node], "g", gin, gout, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    res = sess.run(None, feeds)
    T, B = x.shape[0], x.shape[1]
    y = res[0].transpose(0, 2, 1, 3).reshape(T, B, D * H)
    return y, res[1], (res[2] if op == "LSTM" else None)


ALL_ACTS = ["Sigmoid", "Tanh", "Relu", "Affine", "LeakyRelu", "ThresholdedRelu",
            "ScaledTanh", "HardSigmoid", "Elu", "Softsign", "Softplus"]


def _alpha_beta(names, rng):
    """Random alpha/beta for the activations that take them (None else)."""
    al, be = [], []
    for n in names:
        ta, tb, _, _ = _generic.ACTIVATIONS[n]
        al.append(float(rng.uniform(0.3, 0.9)) if ta else None)
        be.append(float(rng.uniform(0.1, 0.6)) if tb else None)
    if n == "ThresholdedRelu":
        al[-1] = 0.05
    return al, be


def _ort_case(cell, T, B, I, H, rng, lengths=False, state=False, write_alpha_beta=True, **kw):
    layer = _layer(cell, I, H, seed=int(rng.integers(1 << 30)), **kw)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    lens = rng.integers(1, T + 1, B) if lengths else None
    D = layer.num_directions
    h0 = c0 = None
    st = None
    if state:
        h0 = rng.standard_normal((D, B, H)).astype(np.float32)
        c0 = rng.standard_normal((D, B, H)).astype(np.float32) if cell == "LSTM" else None
        st = (h0, c0) if cell == "LSTM" else h0
    y, s = layer(x, st, lengths=lens)
    ey, eh, ec = _ort_run(layer, x, lens, h0, c0, write_alpha_beta)
    _close(y, ey, np.float32, "y")
    if cell == "LSTM":
        _close(s[0], eh, np.float32, "h_n")
        _close(s[1], ec, np.float32, "c_n")
    else:
        _close(s, eh, np.float32, "h_n")


@pytest.mark.parametrize("cell", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("act", ALL_ACTS)
def test_activation_matches_onnxruntime(cell, act, rng):
    """Each ONNX activation in each slot it can fill, alpha/beta given
    explicitly, against ONNX Runtime's node."""
    slots = _generic.SLOTS["LSTM" if cell == "LSTM" else ("GRU" if cell == "GRU" else "RNN_TANH")]
    for s in range(slots):
        names = list(_generic.DEFAULT_ACTIVATIONS["LSTM" if cell == "LSTM" else
                                                   ("GRU" if cell == "GRU" else "RNN_TANH")])
        names[s] = act
        al, be = _alpha_beta(names, rng)
        _ort_case(cell, 5, 3, 4, 6, rng, lengths=True, state=True, activations=names,
                  activation_alpha=al, activation_beta=be)


def test_activation_defaults_are_onnx_defaults(rng):
    """No alpha/beta: ONNX's defaults, where ONNX Runtime has the same
    (LeakyRelu 0.01, HardSigmoid 0.2/0.5, Elu 1); the others' are checked
    against the ONNX operators' values written out."""
    _ort_case("LSTM", 5, 3, 4, 6, rng, write_alpha_beta=False,
              activations=["HardSigmoid", "LeakyRelu", "Elu"])
    _ort_case("GRU", 5, 3, 4, 6, rng, write_alpha_beta=False,
              activations=["HardSigmoid", "Elu"], activation_alpha=[None, None])
    x = rng.standard_normal((4, 2, 3)).astype(np.float32)
    for name, al, be in (("Affine", 1.0, 0.0), ("ScaledTanh", 1.0, 1.0),
                         ("ThresholdedRelu", 1.0, None), ("LeakyRelu", 0.01, None),
                         ("HardSigmoid", 0.2, 0.5), ("Elu", 1.0, None)):
        a = fr.RNN(3, 4, seed=0, activations=[name])
        b = fr.RNN(3, 4, seed=0, activations=[name], activation_alpha=[al],
                   activation_beta=[be])
        assert np.array_equal(a(x)[0], b(x)[0]), name


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("opts", [dict(peepholes=True), dict(input_forget=True),
                                  dict(peepholes=True, input_forget=True, clip=0.7),
                                  dict(peepholes=True, bidirectional=True,
                                       activations=["HardSigmoid", "Softsign", "Elu",
                                                    "Sigmoid", "Tanh", "ScaledTanh"],
                                       activation_alpha=[0.3, None, 0.5, None, None, 0.8],
                                       activation_beta=[0.45, None, None, None, None, 1.2]),
                                  dict(peepholes=True, bias=False, bidirectional=True)],
                         ids=["peep", "ifg", "peep-ifg-clip", "peep-bi-acts", "peep-nobias-bi"])
def test_lstm_options_match_onnxruntime(shape, opts, rng):
    T, B, I, H = shape
    for lengths, state in ((False, False), (True, True)):
        _ort_case("LSTM", T, B, I, H, rng, lengths=lengths, state=state, **opts)


@pytest.mark.parametrize("lbr", [True, False])
def test_gru_rnn_activations_bidirectional_match_onnxruntime(lbr, rng):
    _ort_case("GRU", 6, 3, 5, 7, rng, lengths=True, state=True, bidirectional=True,
              linear_before_reset=lbr, clip=2.0,
              activations=["Softsign", "LeakyRelu", "HardSigmoid", "Tanh"],
              activation_alpha=[None, 0.2, 0.25, None], activation_beta=[None, None, 0.4, None])
    _ort_case("RNN", 6, 3, 5, 7, rng, lengths=True, state=True, bidirectional=True,
              activations=["Softplus", "Elu"], activation_alpha=[None, 0.6])


def test_default_activations_keep_the_c_path_bits(rng):
    """Activations equal to the cell's own run the C kernels: same bits."""
    x = rng.standard_normal((6, 3, 4)).astype(np.float32)
    for cell, acts in (("LSTM", ["sigmoid", "TANH", "Tanh"]), ("GRU", ["Sigmoid", "Tanh"]),
                       ("RNN", ["Tanh"])):
        a = _layer(cell, 4, 5, seed=3)
        b = _layer(cell, 4, 5, seed=3, activations=acts)
        assert not b._variant
        ya, _ = a(x)
        yb, _ = b(x)
        assert np.array_equal(ya, yb)


# ---- the engine against the reference on the plain configuration ------------------

@pytest.mark.parametrize("cell", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_engine_matches_c_path_on_plain_cells(cell, dtype, rng):
    """return_states=True sends a plain layer to the engine: it agrees with
    the kernels on values and on every gradient (float32 2e-4, float64 1e-9)."""
    for (T, B, I, H) in SHAPES:
        for kw in (dict(), dict(num_layers=2, bidirectional=True),
                   dict(linear_before_reset=False, clip=0.5) if cell == "GRU" else dict(bias=False)):
            layer = _layer(cell, I, H, dtype=dtype, seed=1, **kw)
            x = rng.standard_normal((T, B, I)).astype(dtype)
            lens = rng.integers(1, T + 1, B)
            y0, s0 = layer.forward(x, lengths=lens)
            dy = rng.standard_normal(y0.shape).astype(dtype)
            layer.zero_grad()
            dx0, _ = layer.backward(dy)
            g0 = {k: v.copy() for k, v in layer.grads.items()}
            y1, s1, _ = layer.forward(x, lengths=lens, return_states=True)
            layer.zero_grad()
            dx1, _ = layer.backward(dy)
            _close(y1, y0, dtype, "y")
            for a, b in zip(np.atleast_1d(s1) if cell != "LSTM" else s1,
                            np.atleast_1d(s0) if cell != "LSTM" else s0):
                _close(a, b, dtype, "state")
            _close(dx1, dx0, dtype, "dx")
            for k in g0:
                _close(layer.grads[k], g0[k], dtype, k)


# ---- central differences -----------------------------------------------------------

def _numeric_check(layer, x, state=None, mask=None, resets=None, lengths=None,
                   return_states=False, rng=None, n=6, eps=1e-6, tol=1e-6):
    """Every gradient (x, the initial state, every parameter; from dy,
    dstate and dstates) against float64 central differences of
    L = sum(y*Ry) + sum(state*Rs) (+ sum(states*Rss))."""
    rng = rng or np.random.default_rng(0)
    kw = dict(mask=mask, resets=resets, lengths=lengths, return_states=return_states)

    def run(x_, st_):
        out = layer.forward(x_, st_, **kw)
        return out

    out = run(x, state)
    Ry = rng.standard_normal(out[0].shape)
    is_lstm = isinstance(out[1], tuple)
    Rs = tuple(rng.standard_normal(a.shape) for a in out[1]) if is_lstm else \
        rng.standard_normal(out[1].shape)
    Rss = None
    if return_states:
        Rss = tuple(rng.standard_normal(a.shape) for a in out[2]) if is_lstm else \
            rng.standard_normal(out[2].shape)

    def loss(x_, st_):
        o = run(x_, st_)
        layer._ctx = None
        v = float(np.sum(o[0] * Ry))
        if is_lstm:
            v += sum(float(np.sum(a * r)) for a, r in zip(o[1], Rs))
        else:
            v += float(np.sum(o[1] * Rs))
        if return_states:
            if is_lstm:
                v += sum(float(np.sum(a * r)) for a, r in zip(o[2], Rss))
            else:
                v += float(np.sum(o[2] * Rss))
        return v

    layer.zero_grad()
    run(x, state)
    dx, dst = layer.backward(Ry, Rs, Rss) if return_states else layer.backward(Ry, Rs)
    checks = [("x", x, dx)]
    if state is not None:
        if is_lstm:
            checks += [("h0", state[0], dst[0]), ("c0", state[1], dst[1])]
        else:
            checks.append(("h0", state, dst))
    checks += [(k, layer.params[k], layer.grads[k].copy()) for k in layer.params]
    for name, arr, grad in checks:
        flat = arr.reshape(-1)
        idx = rng.choice(flat.size, size=min(n, flat.size), replace=False)
        idx = np.union1d(idx, [int(np.argmax(np.abs(grad)))])
        for i in idx:
            old = flat[i]
            flat[i] = old + eps
            lp = loss(x, state)
            flat[i] = old - eps
            lm = loss(x, state)
            flat[i] = old
            num = (lp - lm) / (2 * eps)
            got = grad.reshape(-1)[i]
            assert abs(got - num) <= tol + 1e-5 * abs(num), (name, int(i), got, num)


GRAD_CASES = {
    "lstm-peep": ("LSTM", dict(peepholes=True)),
    "lstm-ifg": ("LSTM", dict(input_forget=True, peepholes=True)),
    "lstm-clip-acts": ("LSTM", dict(clip=0.6, peepholes=True,
                                    activations=["HardSigmoid", "Elu", "Softsign"],
                                    activation_alpha=[0.3, 0.7, None],
                                    activation_beta=[0.45, None, None])),
    "lstm-acts2": ("LSTM", dict(activations=["Softplus", "ScaledTanh", "LeakyRelu"],
                                activation_alpha=[None, 0.8, 0.2],
                                activation_beta=[None, 1.3, None])),
    "lstm-acts3": ("LSTM", dict(activations=["Sigmoid", "Affine", "Tanh"],
                                activation_alpha=[None, 0.9, None],
                                activation_beta=[None, 0.1, None])),
    "lstm-proj": ("LSTM", dict(proj_size=2, peepholes=True)),
    "gru-acts": ("GRU", dict(activations=["Softsign", "Elu"])),
    "gru-nolbr-acts": ("GRU", dict(linear_before_reset=False, clip=0.9,
                                   activations=["HardSigmoid", "Softplus"])),
    "rnn-acts": ("RNN", dict(activations=["ThresholdedRelu"], activation_alpha=[0.1])),
    "rnn-relu": ("RNN", dict(activations=["Relu"])),
}


@pytest.mark.parametrize("case", list(GRAD_CASES))
@pytest.mark.parametrize("shape", [(1, 1, 1, 3), (5, 3, 7, 4)], ids=["size1", "primes"])
def test_gradients_central_differences(case, shape, rng):
    cell, kw = GRAD_CASES[case]
    T, B, I, H = shape
    for extra in (dict(), dict(num_layers=2, bidirectional=True, padding="carry")):
        layer = _layer(cell, I, H, dtype="float64", seed=5, **kw, **extra)
        x = rng.standard_normal((T, B, I))
        L, D, Hr = layer.num_layers, layer.num_directions, layer._out_size
        h0 = rng.standard_normal((L * D, B, Hr))
        st = (h0, rng.standard_normal((L * D, B, H))) if cell == "LSTM" else h0
        mask = rng.random((T, B)) < 0.7 if extra else None
        _numeric_check(layer, x, st, mask=mask, rng=rng)


# ---- padding="carry" and masks ---------------------------------------------------

def _ffill(y_zeros, valid, D, Hr):
    """The carry outputs expected from the zeros outputs: each direction's
    last valid output in its walk order (0 before the first)."""
    T, B = valid.shape
    out = np.zeros_like(y_zeros)
    for d in range(D):
        sl = slice(d * Hr, (d + 1) * Hr)
        for b in range(B):
            last = np.zeros(Hr, y_zeros.dtype)
            for t in (range(T) if d == 0 else range(T - 1, -1, -1)):
                if valid[t, b]:
                    last = y_zeros[t, b, sl]
                out[t, b, sl] = last
    return out


@pytest.mark.parametrize("cell", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_carry_is_the_forward_fill_of_zeros(cell, dtype, rng):
    for (T, B, I, H) in SHAPES:
        for kw in (dict(), dict(bidirectional=True, num_layers=2)):
            z = _layer(cell, I, H, dtype=dtype, seed=2, **kw)
            c = _layer(cell, I, H, dtype=dtype, seed=2, padding="carry", **kw)
            x = rng.standard_normal((T, B, I)).astype(dtype)
            for how in ("lengths", "mask"):
                if how == "lengths":
                    lens = rng.integers(1, T + 1, B)
                    valid = np.arange(T)[:, None] < lens[None, :]
                    args = dict(lengths=lens)
                else:
                    valid = rng.random((T, B)) < 0.6
                    args = dict(mask=valid)
                # zeros with lengths runs the kernels, carry the engine: to rounding
                yz, sz = z(x, **args)
                yc, sc = c(x, **args)
                _close(yc, _ffill(yz, valid, z.num_directions, H), dtype, how)
                for a, b in zip(sc if cell == "LSTM" else (sc,), sz if cell == "LSTM" else (sz,)):
                    _close(a, b, dtype, how)


def test_carry_matches_keras_masked_lstm(rng):
    """Keras 3 (torch backend) LSTM over a masked batch with right and left
    padding: the outputs at masked steps repeat the last valid one."""
    keras = pytest.importorskip("keras")
    T, B, I, H = 7, 4, 3, 5
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    mask = np.ones((B, T), bool)
    mask[0, 5:] = False
    mask[1, :2] = False   # left padding
    mask[2, 3] = False    # a hole
    kl = keras.layers.LSTM(H, return_sequences=True, return_state=True)
    kl.build((B, T, I))
    kernel, rec, bias = (np.asarray(w) for w in kl.get_weights())
    layer = fr.LSTM(I, H, batch_first=True, padding="carry")
    layer.load_state_dict({"weight_ih_l0": kernel.T, "weight_hh_l0": rec.T,
                           "bias_ih_l0": bias, "bias_hh_l0": np.zeros_like(bias)})
    ky, kh, kc = kl(x, mask=mask)
    ky, kh, kc = (np.asarray(t.detach().cpu() if hasattr(t, "detach") else t)
                  for t in (ky, kh, kc))
    y, (h, c) = layer(x, mask=mask)
    _close(y, ky, np.float32, "y")
    _close(h[0], kh, np.float32, "h")
    _close(c[0], kc, np.float32, "c")


def _compressed_oracle(layer, plain, x, valid, st):
    """Each sequence run alone on its valid steps only, by the plain kernels
    (`plain`: the same weights, no variants); outputs scattered back."""
    T, B, _ = x.shape
    y = np.zeros((T, B, layer.num_directions * layer._out_size), x.dtype)
    hn = np.zeros_like(st[0] if isinstance(st, tuple) else st)
    cn = np.zeros_like(st[1]) if isinstance(st, tuple) else None
    for b in range(B):
        idx = np.flatnonzero(valid[:, b])
        if idx.size == 0:
            if cn is not None:
                hn[:, b], cn[:, b] = st[0][:, b], st[1][:, b]
            else:
                hn[:, b] = st[:, b]
            continue
        sb = (st[0][:, b:b + 1], st[1][:, b:b + 1]) if cn is not None else st[:, b:b + 1]
        yb, s = plain(x[idx, b:b + 1], sb)
        y[idx, b] = yb[:, 0]
        if cn is not None:
            hn[:, b], cn[:, b] = s[0][:, 0], s[1][:, 0]
        else:
            hn[:, b] = s[:, 0]
    return y, ((hn, cn) if cn is not None else hn)


@pytest.mark.parametrize("cell", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_mask_with_holes_and_left_padding_equals_compressed_runs(cell, dtype, rng):
    for (T, B, I, H) in SHAPES:
        for kw in (dict(), dict(bidirectional=True, num_layers=2), dict(batch_first=True)):
            plain = _layer(cell, I, H, dtype=dtype, seed=4,
                           **{k: v for k, v in kw.items() if k != "batch_first"})
            layer = _layer(cell, I, H, dtype=dtype, seed=4, **kw)
            x = rng.standard_normal((T, B, I)).astype(dtype)
            valid = rng.random((T, B)) < 0.6
            valid[: T // 2, 0] = False     # left padding
            x[~valid] = np.nan             # never read
            LD = plain.num_layers * plain.num_directions
            h0 = rng.standard_normal((LD, B, H)).astype(dtype)
            st = (h0, rng.standard_normal((LD, B, H)).astype(dtype)) if cell == "LSTM" else h0
            ey, es = _compressed_oracle(layer, plain, x, valid, st)
            if layer.batch_first:
                y, s = layer(x.transpose(1, 0, 2), st, mask=valid.T)
                y = y.transpose(1, 0, 2)
            else:
                y, s = layer(x, st, mask=valid)
            _close(y, ey, dtype, "y")
            for a, b in zip(s if cell == "LSTM" else (s,), es if cell == "LSTM" else (es,)):
                _close(a, b, dtype, "state")


def test_masked_training_ignores_nan_padding(rng):
    layer = fr.LSTM(3, 4, peepholes=True, num_layers=2, bidirectional=True, dtype="float64")
    x = rng.standard_normal((6, 2, 3))
    valid = rng.random((6, 2)) < 0.6
    x[~valid] = np.inf
    y, _ = layer.forward(x, mask=valid)
    dx, _ = layer.backward(np.ones_like(y))
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    assert all(np.all(np.isfinite(g)) for g in layer.grads.values())
    assert np.all(dx[~valid] == 0)


# ---- step, freeze, config, files ------------------------------------------------

VARIANTS = [("LSTM", dict(proj_size=3, peepholes=True)),
            ("LSTM", dict(input_forget=True, activations=["HardSigmoid", "Tanh", "Softsign"])),
            ("GRU", dict(activations=["Sigmoid", "Relu"], linear_before_reset=False)),
            ("RNN", dict(activations=["Elu"], activation_alpha=[0.5], num_layers=2))]


@pytest.mark.parametrize("cell,kw", VARIANTS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_step_streams_the_full_call(cell, kw, dtype, rng):
    layer = _layer(cell, 4, 5, dtype=dtype, seed=0, **kw)
    x = rng.standard_normal((6, 3, 4)).astype(dtype)
    y, s = layer(x)
    st = None
    for t in range(6):
        yt, st = layer.step(x[t], st)
        _close(yt, y[t], dtype, f"step {t}")
    for a, b in zip(st if cell == "LSTM" else (st,), s if cell == "LSTM" else (s,)):
        _close(a, b, dtype, "state")
    frozen = layer.freeze()
    assert np.array_equal(frozen(x)[0], y)
    with pytest.raises(RuntimeError):
        frozen.forward(x)


@pytest.mark.parametrize("cell,kw", VARIANTS + [("GRU", dict(padding="carry"))])
def test_config_and_files_round_trip(cell, kw, rng, tmp_path):
    layer = _layer(cell, 4, 5, seed=0, **kw)
    cfg = layer.get_config()
    for k, v in kw.items():
        assert cfg[k] == v, k
        assert getattr(layer, k) == v
    twin = type(layer)(**cfg)
    twin.load_state_dict(layer.state_dict())
    x = rng.standard_normal((5, 2, 4)).astype(np.float32)
    lens = [5, 2]
    assert np.array_equal(twin(x, lengths=lens)[0], layer(x, lengths=lens)[0])
    path = tmp_path / "m.fr"
    model = fr.Sequential([layer])
    fr.save(model, path)
    back = fr.load(path)
    xb = x.transpose(1, 0, 2)
    assert np.array_equal(back.predict(xb), model.predict(xb))
    assert back.layers[0].get_config() == cfg


def test_model_fit_with_a_variant_layer(rng):
    model = fr.Sequential([fr.LSTM(3, 6, proj_size=2, peepholes=True, batch_first=True),
                           fr.LastStep(), fr.Dense(2, 1)])
    x = rng.standard_normal((16, 5, 3)).astype(np.float32)
    y = x.sum((1, 2))[:, None].astype(np.float32)
    model.compile(loss="mse", optimizer="adam")
    hist = model.fit(x, y, lengths=[5, 3] * 8, epochs=3, batch_size=8, seed=0, verbose=0)
    assert np.all(np.isfinite(hist.history["loss"]))


# ---- errors ------------------------------------------------------------------------

def test_bad_options_name_the_argument():
    with pytest.raises(ValueError, match="proj_size"):
        fr.LSTM(3, 4, proj_size=4)
    with pytest.raises(ValueError, match="proj_size"):
        fr.LSTM(3, 4, proj_size=-1)
    with pytest.raises(TypeError, match="proj_size"):
        fr.LSTM(3, 4, proj_size=1.5)
    with pytest.raises(TypeError, match="proj_size"):
        fr.GRU(3, 4, proj_size=2)
    with pytest.raises(TypeError, match="peepholes"):
        fr.GRU(3, 4, peepholes=True)
    with pytest.raises(ValueError, match="proj_size"):
        fr.RNNBase("GRU", 3, 4, proj_size=2)
    with pytest.raises(ValueError, match="peepholes"):
        fr.RNNBase("RNN_TANH", 3, 4, peepholes=True)
    with pytest.raises(ValueError, match="input_forget"):
        fr.RNNBase("GRU", 3, 4, input_forget=True)
    with pytest.raises(TypeError, match="peepholes"):
        fr.LSTM(3, 4, peepholes=1)
    with pytest.raises(ValueError, match="activations.*'Swish'"):
        fr.LSTM(3, 4, activations=["Sigmoid", "Tanh", "Swish"])
    with pytest.raises(ValueError, match="activations"):
        fr.GRU(3, 4, activations=["Sigmoid", "Tanh", "Tanh"])
    with pytest.raises(ValueError, match="activations"):
        fr.LSTM(3, 4, activations=["Sigmoid", "Tanh", "Tanh"] * 2)  # not bidirectional
    with pytest.raises(TypeError, match="activations"):
        fr.RNN(3, 4, activations="Tanh")
    with pytest.raises(ValueError, match="activation_alpha"):
        fr.RNN(3, 4, activations=["Tanh"], activation_alpha=[1.0, 2.0])
    with pytest.raises(ValueError, match="activation_alpha"):
        fr.RNN(3, 4, activation_alpha=[1.0])
    with pytest.raises(TypeError, match="activation_beta"):
        fr.RNN(3, 4, activations=["Affine"], activation_beta=["x"])
    with pytest.raises(ValueError, match="nonlinearity, activations"):
        fr.RNN(3, 4, nonlinearity="relu", activations=["Tanh"])
    with pytest.raises(ValueError, match="padding"):
        fr.GRU(3, 4, padding="same")
    with pytest.raises(ValueError, match="peepholes.*zoneout"):
        fr.LSTM(3, 4, peepholes=True, zoneout=0.1)
    with pytest.raises(ValueError, match="proj_size.*recurrent_dropout"):
        fr.LSTM(3, 4, proj_size=2, recurrent_dropout=0.1)


def test_bad_call_arguments_name_the_argument(rng):
    layer = fr.LSTM(3, 4, batch_first=True)
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=r"mask: expected shape \(2, 5\)"):
        layer(x, mask=np.ones((5, 2), bool))
    with pytest.raises(TypeError, match="mask: expected booleans"):
        layer(x, mask=np.ones((2, 5), np.int64))
    with pytest.raises(ValueError, match=r"resets: expected shape \(2, 5\)"):
        layer(x, resets=np.zeros((2, 4), bool))
    with pytest.raises(TypeError, match="resets: expected booleans"):
        layer(x, resets=np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="mask, lengths"):
        layer(x, lengths=[5, 3], mask=np.ones((2, 5), bool))
    with pytest.raises(TypeError, match="return_states"):
        layer(x, return_states=1)
    with pytest.raises(TypeError):
        layer(x, None, None, np.ones((2, 5), bool))  # keyword-only
    y, _ = layer.forward(x)
    with pytest.raises(ValueError, match="dstates"):
        layer.backward(np.ones_like(y), None, np.ones((1, 2, 5, 4)))
    reg = fr.LSTM(3, 4, zoneout=0.1)
    with pytest.raises(ValueError, match="mask, resets, return_states"):
        reg(x.transpose(1, 0, 2), mask=np.ones((5, 2), bool))
    p = fr.LSTM(3, 4, proj_size=2)
    with pytest.raises(ValueError, match=r"state\[0\] \(h\): expected shape \(1, 2, 2\)"):
        p(x.transpose(1, 0, 2), (np.zeros((1, 2, 4)), np.zeros((1, 2, 4))))
    with pytest.raises(ValueError, match=r"state\[1\] \(c\): expected shape \(1, 2, 4\)"):
        p(x.transpose(1, 0, 2), (np.zeros((1, 2, 2)), np.zeros((1, 2, 2))))
