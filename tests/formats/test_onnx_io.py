"""fr.from_onnx and layer.to_onnx against ONNX Runtime.

1. Graphs made with onnx.helper: one RNN / LSTM / GRU node for every
   direction x layout x sequence_lens x initial states x (GRU)
   linear_before_reset x clip, run by fastrnn and by ONNX Runtime.
2. Models written by torch.onnx.export (TorchScript and, when onnxscript is
   installed, dynamo exporters): embedding + LSTM/GRU/RNN + Linear, checked
   against torch and ONNX Runtime.
3. fastrnn layers exported with to_onnx and run in ONNX Runtime.
4. Errors: files that are not ONNX, truncated files, unsupported operators
   and attributes, bad feeds, and the ImportError without the onnx package.
float32 comparisons: rtol 1e-5 (atol 1e-6 for values near 0).
"""
import itertools
import os
import subprocess
import sys

import numpy as np
import pytest

import fastrnn as fr

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

RTOL, ATOL = 1e-5, 1e-6
G = {"RNN": 1, "LSTM": 4, "GRU": 3}


def ort_run(model, feeds, outputs=None):
    data = model if isinstance(model, (bytes, str)) else model.SerializeToString()
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return sess.run(outputs, feeds)


def close(a, b, what=""):
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=what)


# ---- 1. onnx.helper graphs, every attribute ------------------------------------

def rnn_model(op, T, B, I, H, direction="forward", layout=0, seq=False, init_h=False,
              init_c=False, lbr=None, clip=None, acts=None, bias=True, peep=None,
              outputs=("Y", "Y_h", "Y_c"), seed=0, opset=14, dtype=np.float32,
              alpha=None, beta=None, input_forget=None):
    """A graph with one recurrent node; returns (model, feeds). dtype: ONNX's
    T (X, the weights, the states and the outputs)."""
    rng = np.random.default_rng(seed)
    D = 2 if direction == "bidirectional" else 1
    g = G[op]
    FT = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    inits = [numpy_helper.from_array(rng.uniform(-.6, .6, (D, g * H, I)).astype(dtype), "W"),
             numpy_helper.from_array(rng.uniform(-.6, .6, (D, g * H, H)).astype(dtype), "R")]
    if bias:
        inits.append(numpy_helper.from_array(
            rng.uniform(-.5, .5, (D, 2 * g * H)).astype(dtype), "B"))
    xs = (B, T, I) if layout else (T, B, I)
    st = (B, D, H) if layout else (D, B, H)
    feeds = {"X": (rng.standard_normal(xs) * 1.5).astype(dtype)}
    ins = ["X", "W", "R", "B" if bias else "", "", "", "", ""]
    graph_in = [helper.make_tensor_value_info("X", FT, list(xs))]
    if seq:
        lens = rng.integers(0, T + 1, size=B).astype(np.int32)
        lens[0] = T
        if B > 2:
            lens[1], lens[2] = 0, 1
        feeds["seq"] = lens
        ins[4] = "seq"
        graph_in.append(helper.make_tensor_value_info("seq", TensorProto.INT32, [B]))
    for flag, name, idx in ((init_h, "h0", 5), (init_c and op == "LSTM", "c0", 6)):
        if flag:
            feeds[name] = rng.standard_normal(st).astype(dtype)
            ins[idx] = name
            graph_in.append(helper.make_tensor_value_info(name, FT, list(st)))
    if peep is not None:
        inits.append(numpy_helper.from_array(peep.astype(dtype), "P"))
        ins[7] = "P"
    while ins and not ins[-1]:
        ins.pop()
    outs = [o for o in outputs if o != "Y_c" or op == "LSTM"]
    node_outs = [o if o in outs else "" for o in ("Y", "Y_h", "Y_c")[:3 if op == "LSTM" else 2]]
    while node_outs and not node_outs[-1]:
        node_outs.pop()
    attrs = dict(hidden_size=H, direction=direction)
    if layout:
        attrs["layout"] = 1
    if lbr is not None:
        attrs["linear_before_reset"] = lbr
    if clip is not None:
        attrs["clip"] = clip
    if acts is not None:
        attrs["activations"] = acts
    for name, v in (("activation_alpha", alpha), ("activation_beta", beta),
                    ("input_forget", input_forget)):
        if v is not None:
            attrs[name] = v
    node = helper.make_node(op, ins, node_outs, name=f"{op.lower()}_node", **attrs)
    graph = helper.make_graph([node], "g", graph_in,
                              [helper.make_tensor_value_info(o, FT, None)
                               for o in outs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return model, feeds


def check_node(op, T=5, B=4, I=3, H=4, tol=None, **kw):
    """The node of rnn_model(op, ...) run by fastrnn and ONNX Runtime; tol:
    rtol = atol (None: RTOL, ATOL)."""
    model, feeds = rnn_model(op, T, B, I, H, **kw)
    if kw.get("layout", 0) == 1:
        # ONNX Runtime runs only layout 0: the same node (same weights) with
        # layout 0 on time-major inputs, outputs brought to layout 1 per the
        # spec (X [B,T,I], states [B,D,H], Y [B,T,D,H])
        model0, feeds0 = rnn_model(op, T, B, I, H, **dict(kw, layout=0))
        feeds = {k: (v.transpose(1, 0, 2) if k != "seq" else v) for k, v in feeds0.items()}
        want = [w.transpose(2, 0, 1, 3) if w.ndim == 4 else w.transpose(1, 0, 2)
                for w in ort_run(model0, feeds0)]
    else:
        want = ort_run(model, feeds)
    m = fr.from_onnx(model)
    got = m.run(None, feeds)
    assert len(got) == len(want)
    for name, a, b in zip(m.output_names, got, want):
        assert a.shape == b.shape, (name, a.shape, b.shape)
        if tol is None:
            close(a, b, f"{op} {kw} {name}")
        else:
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol, err_msg=f"{op} {kw} {name}")
    return m


@pytest.mark.parametrize("op", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
def test_helper_node_every_attribute(op, direction, layout):
    lbrs = [0, 1] if op == "GRU" else [None]
    states = [(False, False), (True, False), (True, True)] if op == "LSTM" \
        else [(False, False), (True, False)]
    for i, (seq, (ih, ic), lbr, clip) in enumerate(itertools.product(
            [False, True], states, lbrs, [None, 0.9])):
        check_node(op, direction=direction, layout=layout, seq=seq, init_h=ih, init_c=ic,
                   lbr=lbr, clip=clip, seed=i)


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_rnn_relu_activation(direction):
    D = 2 if direction == "bidirectional" else 1
    m = check_node("RNN", direction=direction, acts=["Relu"] * D, seq=True, init_h=True)
    assert m.layers[0].nonlinearity == "relu"
    check_node("RNN", direction=direction, acts=["Tanh"] * D)


@pytest.mark.parametrize("op", ["RNN", "LSTM", "GRU"])
def test_no_bias_subsets_of_outputs_and_opsets(op):
    check_node(op, bias=False, direction="bidirectional", seq=True)
    check_node(op, outputs=("Y_h",), direction="reverse", opset=17)
    check_node(op, outputs=("Y",), layout=1, init_h=True, opset=21)
    if op == "LSTM":
        check_node(op, outputs=("Y_c",), seq=True, init_h=True, init_c=True)


def test_default_gru_is_linear_before_reset_0():
    m = check_node("GRU", lbr=None, init_h=True)
    assert m.layers[0].linear_before_reset is False
    m = check_node("GRU", lbr=1, init_h=True)
    assert m.layers[0].linear_before_reset is True


def test_peepholes_zero_and_not():
    """All-zero P is the plain cell (the C path); other P, ONNX's blocks
    (i, o, f), become the layer's peephole_l0 blocks (i, f, o)."""
    m = check_node("LSTM", peep=np.zeros((1, 12)), H=4)
    assert m.layers[0].peepholes is False
    rng = np.random.default_rng(3)
    P = rng.uniform(-.8, .8, (2, 12))
    m = check_node("LSTM", peep=P, H=4, direction="bidirectional", seq=True, init_h=True,
                   init_c=True, tol=1e-4)
    layer = m.layers[0]
    assert layer.peepholes is True
    for d, sfx in enumerate(("", "_reverse")):
        i, o, f = P[d].reshape(3, 4).astype(np.float32)
        np.testing.assert_array_equal(layer.params[f"peephole_l0{sfx}"],
                                      np.concatenate([i, f, o]))
    with pytest.raises(ValueError, match="P has shape"):
        fr.from_onnx(rnn_model("LSTM", 3, 2, 3, 4, peep=np.ones((1, 9)))[0])


def test_single_sequence_and_single_step():
    check_node("LSTM", T=1, B=1, direction="bidirectional", seq=True, init_h=True)
    check_node("GRU", T=1, B=3, lbr=1, seq=True)


# activation sets per direction, with ONNX's packed alpha and beta (each value
# taken by the next activation that uses it; None: ONNX Runtime's defaults)
ACTS = {
    "LSTM": [(["HardSigmoid", "LeakyRelu", "Softsign"], [0.25, 0.05], [0.45]),
             (["Sigmoid", "Elu", "Tanh"], None, None),
             (["Sigmoid", "ScaledTanh", "Affine"], [0.9, 1.1], [1.2, 0.1]),
             (["Sigmoid", "Softplus", "ThresholdedRelu"], [0.2], None)],
    "GRU": [(["HardSigmoid", "Softsign"], [0.3], [0.4]),
            (["Sigmoid", "ThresholdedRelu"], [0.1], None),
            (["HardSigmoid", "Affine"], None, [0.2, 0.3]),
            (["Sigmoid", "Relu"], None, None)],
    "RNN": [([a], al, be) for a, al, be in [
        ("Sigmoid", None, None), ("Tanh", None, None), ("Relu", None, None),
        ("Affine", [0.7], [0.1]), ("LeakyRelu", [0.2], None), ("LeakyRelu", None, None),
        ("ThresholdedRelu", [0.3], None), ("ScaledTanh", [1.2], [0.8]),
        ("HardSigmoid", [0.3], [0.4]), ("HardSigmoid", None, None), ("Elu", [0.5], None),
        ("Elu", None, None), ("Softsign", None, None), ("Softplus", None, None)]],
}


def _pack(fwd, rev):
    """ONNX's one alpha (or beta) list for both directions: forward's values,
    then reverse's. Where forward's run on defaults (None), reverse's would be
    taken by forward's activations: both directions then use defaults."""
    return None if fwd is None else fwd + (rev or [])


def _act_sets(op, D):
    """[(activations, activation_alpha, activation_beta)] for D directions:
    every set once, forward and reverse different when D == 2."""
    sets = ACTS[op]
    if D == 1:
        return list(sets)
    out = []
    for k, (names, al, be) in enumerate(sets):
        n2, a2, b2 = sets[(k + 1) % len(sets)]
        out.append((names + n2, _pack(al, a2), _pack(be, b2)))
    return out


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_lstm_every_attribute_combination(direction):
    """peepholes (none, zero, not) x input_forget x activations (default and
    each set) x clip, with sequence_lens and initial states: ONNX Runtime at 1e-4."""
    D = 2 if direction == "bidirectional" else 1
    rng = np.random.default_rng(7)
    acts = [(None, None, None)] + _act_sets("LSTM", D)
    peeps = [None, np.zeros((D, 12)), rng.uniform(-.8, .8, (D, 12))]
    for i, (peep, forget, (names, al, be), clip) in enumerate(itertools.product(
            peeps, [0, 1], acts, [None, 0.9])):
        m = check_node("LSTM", H=4, direction=direction, peep=peep, input_forget=forget,
                       acts=names, alpha=al, beta=be, clip=clip, seq=i % 2 == 0,
                       init_h=i % 3 != 0, init_c=i % 3 == 2, seed=i, tol=1e-4)
        layer = m.layers[0]
        assert layer.input_forget is bool(forget)
        assert layer.peepholes is (peep is not None and bool(np.any(peep)))


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_gru_and_rnn_activations(direction):
    D = 2 if direction == "bidirectional" else 1
    for i, ((names, al, be), lbr) in enumerate(itertools.product(_act_sets("GRU", D),
                                                                 [0, 1])):
        check_node("GRU", direction=direction, acts=names, alpha=al, beta=be, lbr=lbr,
                   seq=i % 2 == 0, init_h=i % 3 != 0, seed=i, tol=1e-4)
    for i, (names, al, be) in enumerate(_act_sets("RNN", D)):
        check_node("RNN", direction=direction, acts=names, alpha=al, beta=be,
                   seq=i % 2 == 0, init_h=i % 3 != 0, clip=[None, 1.5][i % 2], seed=i,
                   tol=1e-4)


@pytest.mark.parametrize("T,B,I,H", [(1, 1, 1, 1), (7, 1, 5, 3), (3, 5, 2, 7)])
def test_attribute_nodes_at_edge_sizes(T, B, I, H):
    """Size 1, batch 1 and primes, every option on, both directions."""
    rng = np.random.default_rng(T * 100 + H)
    names, al, be = _act_sets("LSTM", 2)[0]
    check_node("LSTM", T=T, B=B, I=I, H=H, direction="bidirectional", seq=True,
               init_h=True, init_c=True, peep=rng.uniform(-.8, .8, (2, 3 * H)),
               input_forget=1, acts=names, alpha=al, beta=be, clip=1.5, tol=1e-4)
    names, al, be = _act_sets("GRU", 2)[0]
    check_node("GRU", T=T, B=B, I=I, H=H, direction="bidirectional", seq=True,
               init_h=True, acts=names, alpha=al, beta=be, lbr=1, tol=1e-4)
    check_node("RNN", T=T, B=B, I=I, H=H, direction="reverse", seq=True,
               acts=["LeakyRelu"], alpha=[0.3], tol=1e-4)


def test_activation_names_and_counts_checked():
    for op, acts, what in [("GRU", ["Sigmoid", "Swish"], "unknown function 'Swish'"),
                           ("LSTM", ["Sigmoid", "Tanh"], "expected 3"),
                           ("RNN", ["Tanh"] * 3, "expected 1")]:
        model, _ = rnn_model(op, 3, 2, 3, 4, acts=acts)
        with pytest.raises(ValueError, match=what):
            fr.from_onnx(model)
    model, _ = rnn_model("LSTM", 3, 2, 3, 4, input_forget=2)
    with pytest.raises(ValueError, match="input_forget"):
        fr.from_onnx(model)


def test_layer_taken_out_of_the_model():
    model, feeds = rnn_model("LSTM", 6, 3, 3, 4, direction="bidirectional", layout=1,
                             init_h=True, init_c=True)
    m = fr.from_onnx(model)
    layer = m.layers[0]
    assert isinstance(layer, fr.LSTM) and layer.batch_first and layer.bidirectional
    assert m.layer_nodes == ["lstm_node"]
    Y, Yh, Yc = m.run(None, feeds)
    h0, c0 = (feeds[k].transpose(1, 0, 2) for k in ("h0", "c0"))
    y, (hn, cn) = layer(feeds["X"], (h0, c0))
    close(y, Y.reshape(3, 6, 8))
    close(hn, Yh.transpose(1, 0, 2))


# ---- 2. torch.onnx.export ---------------------------------------------------------

class _Net:
    """Embedding -> recurrent -> Linear -> LogSoftmax, as torch.nn.Module."""

    @staticmethod
    def make(kind, batch_first, bidirectional, layers, seed=0):
        torch = pytest.importorskip("torch")
        torch.manual_seed(seed)

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.emb = torch.nn.Embedding(30, 6)
                self.rnn = getattr(torch.nn, kind)(6, 5, num_layers=layers,
                                                   batch_first=batch_first,
                                                   bidirectional=bidirectional)
                self.fc = torch.nn.Linear(5 * (2 if bidirectional else 1), 4)
                self.batch_first = batch_first

            def forward(self, ids):
                y, _ = self.rnn(self.emb(ids))
                return torch.log_softmax(self.fc(y), dim=-1)

        return Net().eval()


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bidirectional,layers", [(False, 1), (True, 2)])
def test_torch_export_torchscript(kind, batch_first, bidirectional, layers, tmp_path):
    torch = pytest.importorskip("torch")
    net = _Net.make(kind, batch_first, bidirectional, layers)
    ids = torch.randint(0, 30, (7, 3))  # (T, B) or (B, T)
    path = tmp_path / "net.onnx"
    axes = {"ids": {0: "a", 1: "b"}, "out": {0: "a", 1: "b"}}
    torch.onnx.export(net, (ids,), str(path), dynamo=False, input_names=["ids"],
                      output_names=["out"], dynamic_axes=axes, opset_version=17)
    m = fr.from_onnx(str(path))
    assert m.input_names == ["ids"] and m.output_names == ["out"]
    assert len(m.layers) == layers
    for shape in ((7, 3), (4, 5)):  # the exported axes are dynamic
        ids2 = torch.randint(0, 30, shape)
        with torch.no_grad():
            want = net(ids2).numpy()
        (got,) = m.run(None, {"ids": ids2.numpy()})
        close(got, want, f"torch {kind}")
        close(got, ort_run(str(path), {"ids": ids2.numpy()})[0], f"ORT {kind}")


DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "data")


@pytest.mark.parametrize("name,layers", [("dynamo_lstm_gru_rnn", ["LSTM", "LSTM", "GRU"]),
                                         ("dynamo_gru_tm", ["GRU", "GRU"])])
def test_torch_export_dynamo_files(name, layers):
    """Files the dynamo exporter wrote (tests/data/make_onnx_fixtures.py):
    LSTM/GRU nodes with its Transpose/Reshape glue, and the RNN it unrolls
    into MatMul/Slice/Squeeze/Relu; against torch's outputs and ORT."""
    path = os.path.join(DATA, name + ".onnx")
    ref = np.load(os.path.join(DATA, name + ".npz"), allow_pickle=False)
    m = fr.from_onnx(path)
    assert [type(l).__name__ for l in m.layers] == layers
    (got,) = m.run(["out"], {"ids": ref["ids"]})
    close(got, ref["out"])
    close(got, ort_run(path, {"ids": ref["ids"]})[0])


@pytest.mark.skipif(not os.environ.get("FASTRNN_TEST_DYNAMO"),
                    reason="live dynamo export takes ~30 s; set FASTRNN_TEST_DYNAMO=1")
def test_torch_export_dynamo_live(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    sys.path.insert(0, DATA)
    try:
        import make_onnx_fixtures as mk
    finally:
        sys.path.remove(DATA)
    import torch
    torch.manual_seed(2)
    net = mk.LstmGruRnn().eval()
    ids = torch.randint(0, 30, (2, 5))
    path = str(tmp_path / "dyn.onnx")
    torch.onnx.export(net, (ids,), path, dynamo=True, input_names=["ids"],
                      output_names=["out"])
    with torch.no_grad():
        want = net(ids).numpy()
    (got,) = fr.from_onnx(path).run(None, {"ids": ids.numpy()})
    close(got, want)


# ---- 3. export ------------------------------------------------------------------------

def _layer(mode, I, H, L, bd, bf, **kw):
    common = dict(num_layers=L, bidirectional=bd, batch_first=bf, seed=3, **kw)
    if mode == "LSTM":
        return fr.LSTM(I, H, **common)
    if mode == "GRU":
        return fr.GRU(I, H, **common)
    return fr.RNN(I, H, nonlinearity="relu" if mode == "RNN_RELU" else "tanh", **common)


@pytest.mark.parametrize("mode", ["RNN_TANH", "RNN_RELU", "LSTM", "GRU"])
@pytest.mark.parametrize("L,bd", [(1, False), (2, True), (3, False)])
@pytest.mark.parametrize("bf", [False, True])
def test_export_runs_in_onnxruntime(mode, L, bd, bf, tmp_path):
    I, H, T, B = 5, 6, 7, 4
    D = 2 if bd else 1
    layer = _layer(mode, I, H, L, bd, bf)
    rng = np.random.default_rng(L)
    x = rng.standard_normal((B, T, I) if bf else (T, B, I)).astype(np.float32)
    lengths = np.array([7, 3, 1, 5], np.int64)
    h0 = rng.standard_normal((L * D, B, H)).astype(np.float32)
    c0 = rng.standard_normal((L * D, B, H)).astype(np.float32)
    is_lstm = mode == "LSTM"
    for use_len, use_state in ((False, False), (True, True), (True, False)):
        path = tmp_path / f"l_{use_len}_{use_state}.onnx"
        model = layer.to_onnx(path, lengths=use_len, initial_state=use_state)
        assert path.exists()
        feeds = {"input": x}
        state = None
        if use_len:
            feeds["lengths"] = lengths
        if use_state:
            feeds["h0"] = h0
            state = h0
            if is_lstm:
                feeds["c0"] = c0
                state = (h0, c0)
        y, st = layer(x, state, lengths=lengths if use_len else None)
        want = [y] + (list(st) if is_lstm else [st])
        got = ort_run(str(path), feeds)
        names = [o.name for o in model.graph.output]
        assert names == ["output", "h_n"] + (["c_n"] if is_lstm else [])
        for a, b, n in zip(got, want, names):
            close(a, b, f"ORT {n}")
        # and fastrnn's own runner reads its export back
        for a, b, n in zip(fr.from_onnx(model).run(None, feeds), want, names):
            close(a, b, f"from_onnx {n}")


@pytest.mark.parametrize("kw", [dict(linear_before_reset=False), dict(clip=0.7),
                                dict(linear_before_reset=False, clip=0.5, bias=False)])
def test_export_gru_options(kw):
    layer = fr.GRU(4, 5, num_layers=2, bidirectional=True, seed=1, **kw)
    x = (np.random.default_rng(0).standard_normal((6, 3, 4)) * 2).astype(np.float32)
    model = layer.to_onnx()
    y, hn = layer(x)
    Y, Hn = ort_run(model, {"input": x})
    close(Y, y)
    close(Hn, hn)


def test_export_lstm_clip_and_float64_round_trip():
    layer = fr.LSTM(4, 5, clip=0.8, seed=2)
    x = (np.random.default_rng(0).standard_normal((6, 3, 4)) * 2).astype(np.float32)
    y, (hn, cn) = layer(x)
    got = ort_run(layer.to_onnx(opset=14), {"input": x})
    for a, b in zip(got, (y, hn, cn)):
        close(a, b)
    # ONNX Runtime has no float64 recurrent kernels; fastrnn's runner does
    layer64 = fr.GRU(3, 4, num_layers=2, dtype="float64", seed=1, linear_before_reset=False)
    x64 = np.random.default_rng(1).standard_normal((5, 2, 3))
    y64, h64 = layer64(x64)
    m = fr.from_onnx(layer64.to_onnx(lengths=True).SerializeToString())
    assert m.layers[0].dtype == np.float64
    Y, H = m.run(None, {"input": x64, "lengths": np.array([5, 2])})
    y64, h64 = layer64(x64, lengths=np.array([5, 2]))
    np.testing.assert_allclose(Y, y64, rtol=1e-12)
    np.testing.assert_allclose(H, h64, rtol=1e-12)


EXPORT_VARIANTS = [
    ("LSTM", dict(peepholes=True)),
    ("LSTM", dict(input_forget=True, peepholes=True, clip=0.9)),
    ("LSTM", dict(activations=["HardSigmoid", "Affine", "ScaledTanh"])),  # ONNX defaults
    ("LSTM", dict(activations=["Sigmoid", "LeakyRelu", "Softsign"] + ["Elu", "Tanh", "Tanh"],
                  activation_alpha=[None, 0.2, None, 0.5, None, None], peepholes=True)),
    ("GRU", dict(activations=["Sigmoid", "ThresholdedRelu"], linear_before_reset=False)),
    ("GRU", dict(activations=["HardSigmoid", "Softplus"], activation_alpha=[0.3, None],
                 activation_beta=[0.4, None])),
    ("RNN", dict(activations=["Affine"], activation_alpha=[0.6], activation_beta=[0.1])),
    ("RNN", dict(activations=["Elu"])),
]


@pytest.mark.parametrize("mode,kw", EXPORT_VARIANTS)
@pytest.mark.parametrize("bd", [False, True])
def test_export_variants_run_in_onnxruntime(mode, kw, bd):
    """peepholes (P, blocks back to ONNX's i, o, f), input_forget and the
    activations (every alpha and beta written out) of 2-layer layers:
    ONNX Runtime and fastrnn's runner at 1e-4, with lengths and states."""
    I, H, T, B, L = 4, 5, 6, 3, 2
    D = 2 if bd else 1
    kw = dict(kw)
    if not bd and kw.get("activations") and len(kw["activations"]) > (3 if mode == "LSTM"
                                                                       else 2):
        n = 3 if mode == "LSTM" else 2
        kw = {k: (v[:n] if k.startswith("activation") and v else v) for k, v in kw.items()}
    layer = getattr(fr, mode)(I, H, num_layers=L, bidirectional=bd, seed=3, **kw)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    lengths = np.array([6, 2, 4], np.int64)
    h0 = rng.standard_normal((L * D, B, H)).astype(np.float32)
    c0 = rng.standard_normal((L * D, B, H)).astype(np.float32)
    feeds = {"input": x, "lengths": lengths, "h0": h0}
    state = h0
    if mode == "LSTM":
        feeds["c0"], state = c0, (h0, c0)
    y, st = layer(x, state, lengths=lengths)
    want = [y] + (list(st) if mode == "LSTM" else [st])
    model = layer.to_onnx(lengths=True, initial_state=True)
    for who, got in (("ORT", ort_run(model, feeds)),
                     ("from_onnx", fr.from_onnx(model).run(None, feeds))):
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=f"{who} {kw}")


def test_export_refuses_projection_and_carried_padding():
    with pytest.raises(ValueError, match="proj_size"):
        fr.LSTM(3, 4, proj_size=2).to_onnx()
    for lengths in (False, True):
        with pytest.raises(ValueError, match="carry"):
            fr.GRU(3, 4, padding="carry", seed=0).to_onnx(lengths=lengths)


def test_emit_recurrent_chains_layers():
    """The node-emitting helpers compose: two layers in one graph."""
    from fastrnn.formats.onnx import GraphBuilder, emit_recurrent
    a = fr.LSTM(3, 4, batch_first=True, bidirectional=True, seed=1)
    b = fr.GRU(8, 2, batch_first=True, seed=2)
    g = GraphBuilder(opset=17)
    x = g.input("x", np.float32, ["B", "T", 3])
    y1, _, _ = emit_recurrent(g, a, x)
    y2, h2, _ = emit_recurrent(g, b, y1)
    g.output(y2, "y", np.float32, ["B", "T", 2])
    g.output(h2, "h", np.float32, [1, "B", 2])
    model = g.build("two")
    xv = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    ya, _ = a(xv)
    yb, hb = b(ya)
    Y, Hh = ort_run(model, {"x": xv})
    close(Y, yb)
    close(Hh, hb)


def test_export_argument_errors():
    layer = fr.LSTM(3, 4)
    with pytest.raises(TypeError, match="lengths"):
        layer.to_onnx(lengths=1)
    with pytest.raises(ValueError, match="opset"):
        layer.to_onnx(opset=9)
    from fastrnn.formats.onnx import export_layer
    with pytest.raises(TypeError, match="RNN, LSTM or GRU"):
        export_layer(object())


# ---- 4. errors ------------------------------------------------------------------------

def test_not_onnx_and_truncated_files(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not an onnx model at all \x00\x01\x02" * 10)
    with pytest.raises(ValueError, match="ONNX model"):
        fr.from_onnx(str(bad))
    model, _ = rnn_model("LSTM", 3, 2, 3, 4)
    data = model.SerializeToString()
    for cut in (len(data) // 2, len(data) - 7, 10):
        trunc = tmp_path / f"trunc{cut}.onnx"
        trunc.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="ONNX model"):
            fr.from_onnx(str(trunc))
    with pytest.raises(ValueError, match="ONNX model"):
        fr.from_onnx(b"")
    with pytest.raises(FileNotFoundError, match="no such file"):
        fr.from_onnx(str(tmp_path / "missing.onnx"))
    with pytest.raises(TypeError, match="path"):
        fr.from_onnx(12)


def _tiny(op_type, domain="", **attrs):
    node = helper.make_node(op_type, ["x"], ["y"], domain=domain, **attrs)
    graph = helper.make_graph([node], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    opsets = [helper.make_opsetid("", 17)]
    if domain:
        opsets.append(helper.make_opsetid(domain, 1))
    return helper.make_model(graph, opset_imports=opsets)


def test_unknown_operator_and_domain():
    with pytest.raises(NotImplementedError, match="Hardmax"):
        fr.from_onnx(_tiny("Hardmax"))
    with pytest.raises(NotImplementedError, match="com.example::Magic"):
        fr.from_onnx(_tiny("Magic", domain="com.example"))


def test_numpy_ops_match_onnxruntime():
    """A chain of the common non-recurrent ops, against ONNX Runtime."""
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    i64 = lambda v: numpy_helper.from_array(np.array(v, np.int64))  # noqa: E731
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0, 2]),
        helper.make_node("Shape", ["t"], ["s"]),
        helper.make_node("Constant", [], ["two"], value=i64([2])),
        helper.make_node("Slice", ["s", "two", "three"], ["s2"]),
        helper.make_node("Constant", [], ["three"], value=i64([3])),
        helper.make_node("Unsqueeze", ["t", "ax0"], ["u"]),
        helper.make_node("Squeeze", ["u", "ax0"], ["q"]),
        helper.make_node("Reshape", ["q", "shape"], ["r"]),
        helper.make_node("Gemm", ["r", "w", "b"], ["gm"], transB=1, alpha=0.5, beta=2.0),
        helper.make_node("Sigmoid", ["gm"], ["sg"]),
        helper.make_node("Tanh", ["gm"], ["th"]),
        helper.make_node("Sub", ["sg", "th"], ["d"]),
        helper.make_node("Relu", ["d"], ["re"]),
        helper.make_node("Div", ["re", "half"], ["dv"]),
        helper.make_node("ReduceMean", ["dv"], ["rm"], axes=[1], keepdims=1),
        helper.make_node("Split", ["gm"], ["sp0", "sp1"], axis=1),
        helper.make_node("Concat", ["sp1", "sp0", "rm"], ["cat"], axis=1),
        helper.make_node("Softmax", ["cat"], ["sm"], axis=-1),
        helper.make_node("LogSoftmax", ["cat"], ["lsm"], axis=0),
        helper.make_node("Equal", ["s2", "s2"], ["eq"]),
        helper.make_node("Where", ["eq", "sm", "lsm"], ["wh"]),
        helper.make_node("ConstantOfShape", ["s"], ["zeros"],
                         value=numpy_helper.from_array(np.array([1.5], np.float32))),
        helper.make_node("Expand", ["half", "s"], ["ex"]),
        helper.make_node("Add", ["zeros", "ex"], ["zz"]),
        helper.make_node("Flatten", ["zz"], ["fl"], axis=2),
        helper.make_node("Cast", ["s"], ["sf"], to=TensorProto.FLOAT),
        helper.make_node("Gather", ["fl", "idx"], ["ga"], axis=1),
        helper.make_node("MatMul", ["wh", "wt"], ["mm"]),
    ]
    inits = [numpy_helper.from_array(np.array([0], np.int64), "ax0"),
             numpy_helper.from_array(np.array([-1, 4], np.int64), "shape"),
             numpy_helper.from_array(np.random.default_rng(1).standard_normal((6, 4))
                                     .astype(np.float32), "w"),
             numpy_helper.from_array(np.ones(6, np.float32), "b"),
             numpy_helper.from_array(np.array(0.5, np.float32), "half"),
             numpy_helper.from_array(np.array([2, 0], np.int64), "idx"),
             numpy_helper.from_array(np.random.default_rng(2).standard_normal((7, 2))
                                     .astype(np.float32), "wt")]
    outs = ["mm", "ga", "sf", "wh"]
    graph = helper.make_graph(
        nodes, "ops", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs], inits)
    # topological order for the checker: put the Constant before its use
    order = sorted(graph.node, key=lambda n: 0 if n.op_type == "Constant" else 1)
    del graph.node[:]
    graph.node.extend(order)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    want = ort_run(model, {"x": x})
    got = fr.from_onnx(model).run(None, {"x": x})
    for a, b, n in zip(got, want, outs):
        assert a.dtype == b.dtype and a.shape == b.shape, n
        close(a, b, n)


def test_run_argument_errors():
    model, feeds = rnn_model("GRU", 4, 2, 3, 4, seq=True)
    m = fr.from_onnx(model)
    with pytest.raises(ValueError, match="missing input"):
        m.run(None, {"X": feeds["X"]})
    with pytest.raises(ValueError, match="unknown output"):
        m.run(["nope"], feeds)
    with pytest.raises(ValueError, match="unknown input"):
        m.run(None, dict(feeds, extra=np.zeros(1)))
    with pytest.raises(ValueError, match="shape"):
        m.run(None, dict(feeds, X=feeds["X"][:, :, :2]))
    with pytest.raises(TypeError, match="dtype"):
        m.run(None, dict(feeds, X=feeds["X"].astype(bool)))
    with pytest.raises(ValueError, match="sequence_lens"):
        m.run(None, dict(feeds, seq=np.array([9, 1], np.int32)))
    with pytest.raises(TypeError, match="dict"):
        m.run(None, [feeds["X"]])
    # float64 and int64 feeds are converted to the declared types
    f64 = dict(feeds, X=feeds["X"].astype(np.float64), seq=feeds["seq"].astype(np.int64))
    for a, b in zip(m.run(None, f64), m.run(None, feeds)):
        np.testing.assert_array_equal(a, b)


def weights_as_inputs(model, names, free_dims=False):
    """The model with initializers `names` made graph inputs without
    defaults (free_dims: their dims and X's named, not numbers); returns
    (model, {name: array})."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    fed, keep = {}, []
    for t in m.graph.initializer:
        if t.name not in names:
            keep.append(t)
            continue
        fed[t.name] = numpy_helper.to_array(t).copy()
        dims = [f"{t.name}{i}" for i in range(len(t.dims))] if free_dims else list(t.dims)
        m.graph.input.append(helper.make_tensor_value_info(t.name, t.data_type, dims))
    del m.graph.initializer[:]
    m.graph.initializer.extend(keep)
    if free_dims:
        for i, d in enumerate(m.graph.input[0].type.tensor_type.shape.dim):
            d.dim_param = f"X{i}"
    return m, fed


@pytest.mark.parametrize("op", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_weights_fed_as_graph_inputs(op, direction):
    for i, names in enumerate([("W",), ("R", "B"), ("W", "R", "B")]):
        model, feeds = rnn_model(op, 5, 4, 3, 4, direction=direction, seq=True, init_h=True,
                                 init_c=True, seed=i, lbr=1 if op == "GRU" else None)
        want = ort_run(model, feeds)
        dyn, fed = weights_as_inputs(model, names)
        m = fr.from_onnx(dyn)
        assert m.layers == [None], "no layer before the weights are fed"
        assert set(names) <= set(m.input_names)
        got = m.run(None, {**feeds, **fed})
        assert len(got) == len(want)
        for name, a, b in zip(m.output_names, got, want):
            close(a, b, f"{op} {direction} {names} {name}")


def test_fed_weights_build_a_layer_per_content():
    """The layer is kept while the fed weights hold the same values, built
    again when they change (in place too), for any shape the node allows."""
    model, feeds = rnn_model("LSTM", 5, 3, 3, 4, direction="bidirectional", seq=True,
                             init_h=True, init_c=True)
    dyn, fed = weights_as_inputs(model, ("W", "R", "B"), free_dims=True)
    m = fr.from_onnx(dyn)

    def check(feeds):
        got = m.run(None, feeds)
        for name, a, b in zip(m.output_names, got, ort_run(dyn, feeds)):
            close(a, b, name)

    check({**feeds, **fed})
    layer = m.layers[0]
    check({**feeds, **fed})
    assert m.layers[0] is layer, "the same arrays fed again: the layer is kept"
    check({**feeds, **{k: v.copy() for k, v in fed.items()}})
    assert m.layers[0] is layer, "equal arrays fed: the layer is kept"
    fed["R"] *= 0.5  # in place
    check({**feeds, **fed})
    assert m.layers[0] is not layer
    layer = m.layers[0]
    rng = np.random.default_rng(1)  # input size 5, then back to 3
    wide = dict(fed, W=rng.uniform(-.6, .6, (2, 16, 5)).astype(np.float32),
                X=rng.standard_normal((5, 3, 5)).astype(np.float32))
    check({**feeds, **wide})
    assert m.layers[0].input_size == 5
    check({**feeds, **fed})
    assert m.layers[0].input_size == 3
    with pytest.raises(ValueError, match="W has shape"):
        m.run(None, {**feeds, **dict(fed, W=fed["W"][:, :5])})


def test_fed_default_is_folded_again():
    """A graph input with an initializer default that a folded node reads:
    feeding it folds that node again, and the layer follows."""
    model, feeds = rnn_model("GRU", 5, 3, 3, 4, seq=True, lbr=1)
    g = model.graph
    W = numpy_helper.to_array(g.initializer[0])
    g.initializer[0].CopyFrom(numpy_helper.from_array(W.transpose(0, 2, 1).copy(), "Wt"))
    g.input.append(helper.make_tensor_value_info("Wt", TensorProto.FLOAT, [1, 3, 12]))
    g.node.insert(0, helper.make_node("Transpose", ["Wt"], ["W"], perm=[0, 2, 1]))
    m = fr.from_onnx(model)
    assert m.input_names == ["X", "seq"] and m.layers[0] is not None
    for f in (feeds, dict(feeds, Wt=W.transpose(0, 2, 1) * 0.5), feeds):
        for name, a, b in zip(m.output_names, m.run(None, f), ort_run(model, f)):
            close(a, b, name)


def test_import_error_without_onnx():
    code = ("import sys; sys.modules['onnx'] = None\n"
            "import fastrnn as fr\n"
            "try:\n    fr.from_onnx('x.onnx')\n"
            "except ImportError as e:\n    print('IMPORTERROR', e)\n"
            "try:\n    fr.LSTM(2, 3).to_onnx()\n"
            "except ImportError as e:\n    print('IMPORTERROR', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.count("IMPORTERROR") == 2, out.stdout + out.stderr
    assert "pip install onnx" in out.stdout


def test_hidden_size_inferred():
    model, feeds = rnn_model("GRU", 3, 2, 3, 4, lbr=1)
    want = ort_run(model, feeds)[0]  # ONNX Runtime needs hidden_size; fastrnn reads it off R
    node = model.graph.node[0]
    kept = [a for a in node.attribute if a.name != "hidden_size"]
    del node.attribute[:]
    node.attribute.extend(kept)
    m = fr.from_onnx(model)
    assert m.layers[0].hidden_size == 4
    close(m.run(None, feeds)[0], want)


@pytest.mark.parametrize("op", ["RNN", "LSTM", "GRU"])
def test_float16_computes_in_float32(op):
    """T = float16 (X, weights, states): computed in float32 and given back
    as float16, as ONNX Runtime's CPU provider does (it casts around its
    float kernels); the weights as initializers or fed."""
    model, feeds = rnn_model(op, 6, 4, 3, 5, direction="bidirectional", seq=True,
                             init_h=True, init_c=True, dtype=np.float16,
                             lbr=0 if op == "GRU" else None)
    want = ort_run(model, feeds)
    m = fr.from_onnx(model)
    assert m.layers[0].dtype == np.float32
    dyn, fed = weights_as_inputs(model, ("W", "R", "B"))
    for got in (m.run(None, feeds), fr.from_onnx(dyn).run(None, {**feeds, **fed})):
        assert len(got) == len(want)
        for name, a, b in zip(m.output_names, got, want):
            assert a.dtype == np.float16, name
            # one float16 step apart at most: float32 sums in another order
            np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32),
                                       rtol=1e-3, atol=1e-3, err_msg=name)


def test_initializers_listed_as_inputs(tmp_path):
    """keep_initializers_as_inputs=True (older exporters): weights are graph
    inputs with defaults; they load, and feeding one overrides its default,
    as in ONNX Runtime."""
    torch = pytest.importorskip("torch")
    net = _Net.make("GRU", True, True, 1)
    ids = torch.randint(0, 30, (2, 5))
    path = str(tmp_path / "kiai.onnx")
    torch.onnx.export(net, (ids,), path, dynamo=False, input_names=["ids"],
                      output_names=["out"], keep_initializers_as_inputs=True, opset_version=14)
    m = fr.from_onnx(path)
    assert m.input_names == ["ids"]
    with torch.no_grad():
        want = net(ids).numpy()
    close(m.run(None, {"ids": ids.numpy()})[0], want)
    model = onnx.load(path)
    gru = [n for n in model.graph.node if n.op_type == "GRU"][0]
    defaults = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for name in (gru.input[2], gru.input[1]):  # R and W, defaults the GRU node reads
        if name not in defaults:
            continue
        feeds = {"ids": ids.numpy(), name: defaults[name] * 0.5}
        close(m.run(None, feeds)[0], ort_run(path, feeds)[0], name)
    close(m.run(None, {"ids": ids.numpy()})[0], want)
