"""fr.Sequential.to_onnx (fastrnn.formats.onnx.export_sequential) against ONNX
Runtime and fr.from_onnx: every layer kind, with and without lengths, batch
sizes 1 and 5, sequence lengths other than any seen before export, and the
layers that cannot be exported. float32: rtol 1e-5 (atol 1e-6 near 0).
"""
import numpy as np
import pytest

import fastrnn as fr

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

RTOL, ATOL = 1e-5, 1e-6
V = 17


def ort_run(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def emb_bilstm_attention():
    return fr.Sequential([fr.Embedding(V, 8, padding_idx=0),
                          fr.LSTM(8, 6, batch_first=True, bidirectional=True),
                          fr.AttentionPooling(12, 5), fr.Dense(12, 4)], seed=1)


def gru_last_dense():
    # batch_first=False: the Sequential (and the export) transpose around it
    return fr.Sequential([fr.GRU(5, 7, batch_first=False), fr.LastStep(),
                          fr.Dense(7, 3, activation="sigmoid")], seed=2)


def lstm2_per_step():
    return fr.Sequential([fr.Embedding(V, 6), fr.LSTM(6, 5, num_layers=2, batch_first=True),
                          fr.Dropout(0.3), fr.Dense(5, 8, activation="elu"),
                          fr.Activation("leaky_relu"), fr.Dense(8, V)], seed=3)


def rnn_relu_mean():
    return fr.Sequential([fr.RNN(4, 6, nonlinearity="relu", batch_first=True),
                          fr.MeanPooling(), fr.Dense(6, 2, activation="tanh")], seed=4)


def rnn_relu_max():
    return fr.Sequential([fr.RNN(4, 6, nonlinearity="relu", batch_first=True,
                                 bidirectional=True), fr.MaxPooling(),
                          fr.Dense(12, 2, activation="relu")], seed=5)


def features_bigru_last():
    # float features; GRU linear_before_reset=False (ONNX's default variant),
    # bidirectional LastStep, a 2-layer bidirectional stack
    return fr.Sequential([fr.Activation("tanh"),
                          fr.GRU(3, 4, num_layers=2, bidirectional=True, batch_first=True,
                                 linear_before_reset=False),
                          fr.LastStep(), fr.Dense(8, 3)], seed=6)


def features_lstm_sequence():
    return fr.Sequential([fr.LSTM(3, 4, batch_first=True, recurrent_dropout=0.25),
                          fr.Dense(4, 2)], seed=7)


MODELS = [emb_bilstm_attention, gru_last_dense, lstm2_per_step, rnn_relu_mean,
          rnn_relu_max, features_bigru_last, features_lstm_sequence]


def inputs(model, N, T, rng):
    if isinstance(model.layers[0], fr.Embedding):
        x = rng.integers(0, V, (N, T)).astype(np.int64)
    else:
        F = 5 if isinstance(model.layers[0], fr.GRU) and model.layers[0].input_size == 5 else \
            (4 if isinstance(model.layers[0], fr.RNN) else 3)
        x = (rng.standard_normal((N, T, F)) * 1.5).astype(np.float32)
    L = rng.integers(1, T + 1, N).astype(np.int64)
    L[0] = T  # the longest sequence fills the batch
    return x, L


@pytest.fixture(scope="module")
def exported():
    out = {}
    for make in MODELS:
        m = make()
        m.eval()
        out[make.__name__] = (m, m.to_onnx(), m.to_onnx(lengths=False))
    return out


@pytest.mark.parametrize("make", MODELS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("N,T", [(1, 4), (5, 9), (5, 1)])
def test_matches_model_with_lengths(exported, make, N, T):
    m, proto, _ = exported[make.__name__]
    rng = np.random.default_rng(N * 100 + T)
    x, L = inputs(m, N, T, rng)
    if N > 1 and T > 1:
        L[1] = 1
    want = m(x, L)
    got = ort_run(proto, {"x": x, "lengths": L})
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    back = fr.from_onnx(proto).run(None, {"x": x, "lengths": L})[0]
    np.testing.assert_allclose(back, want, rtol=RTOL, atol=ATOL)
    if m.sequence_output:  # exact zeros past each length
        pad = np.arange(T)[None, :] >= L[:, None]
        assert np.all(got[pad] == 0)


@pytest.mark.parametrize("make", MODELS, ids=lambda f: f.__name__)
def test_matches_model_without_lengths(exported, make):
    m, _, proto = exported[make.__name__]
    assert [i.name for i in proto.graph.input] == ["x"]
    x, _ = inputs(m, 3, 6, np.random.default_rng(0))
    want = m(x)
    np.testing.assert_allclose(ort_run(proto, {"x": x}), want, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(fr.from_onnx(proto).run(None, {"x": x})[0], want,
                               rtol=RTOL, atol=ATOL)


def test_graph_interface_and_file(tmp_path):
    m = emb_bilstm_attention()
    path = tmp_path / "m.onnx"
    proto = m.to_onnx(path)
    assert path.exists()
    onnx.checker.check_model(onnx.load(str(path)))
    ins = {i.name: i for i in proto.graph.input}
    assert list(ins) == ["x", "lengths"]
    assert ins["x"].type.tensor_type.elem_type == onnx.TensorProto.INT64
    dims = [d.dim_param or d.dim_value for d in ins["x"].type.tensor_type.shape.dim]
    assert dims == ["N", "T"]
    assert [o.name for o in proto.graph.output] == ["y"]
    x, L = inputs(m, 2, 5, np.random.default_rng(3))
    np.testing.assert_allclose(fr.from_onnx(str(path)).run(None, {"x": x, "lengths": L})[0],
                               m(x, L), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("opset", [14, 18])
def test_other_opsets(opset):
    # ReduceMax / ReduceMean take their axes as an input from opset 18
    for make in (rnn_relu_max, rnn_relu_mean):
        m = make()
        m.eval()
        x, L = inputs(m, 4, 6, np.random.default_rng(opset))
        for lengths in (True, False):
            proto = m.to_onnx(lengths=lengths, opset=opset)
            feeds = {"x": x, "lengths": L} if lengths else {"x": x}
            want = m(x, L) if lengths else m(x)
            np.testing.assert_allclose(ort_run(proto, feeds), want, rtol=RTOL, atol=ATOL)
            np.testing.assert_allclose(fr.from_onnx(proto).run(None, feeds)[0], want,
                                       rtol=RTOL, atol=ATOL)


def test_float64_runs_in_from_onnx():
    m = fr.Sequential([fr.LSTM(3, 4, batch_first=True, dtype="float64"), fr.MeanPooling(
        dtype="float64"), fr.Dense(4, 2, dtype="float64")], seed=0)
    proto = m.to_onnx()
    rng = np.random.default_rng(1)
    x, L = rng.standard_normal((3, 5, 3)), np.array([5, 2, 3])
    np.testing.assert_allclose(fr.from_onnx(proto).run(None, {"x": x, "lengths": L})[0],
                               m(x, L), rtol=1e-12, atol=1e-13)


def test_training_mode_exports_inference():
    m = lstm2_per_step()
    m.train()
    x, L = inputs(m, 3, 5, np.random.default_rng(2))
    proto = m.to_onnx()
    m.eval()
    np.testing.assert_allclose(ort_run(proto, {"x": x, "lengths": L}), m(x, L),
                               rtol=RTOL, atol=ATOL)


def test_refused_layers():
    with pytest.raises(ValueError, match="LayerNormLSTM"):
        fr.Sequential([fr.LayerNormLSTM(3, 4, batch_first=True), fr.LastStep()]).to_onnx()
    with pytest.raises(ValueError, match="zoneout"):
        fr.Sequential([fr.GRU(3, 4, batch_first=True, zoneout=0.1), fr.LastStep()]).to_onnx()
    with pytest.raises(ValueError, match="zoneout"):
        fr.LSTM(3, 4, zoneout=0.2).to_onnx()
    with pytest.raises(TypeError, match="lengths"):
        rnn_relu_mean().to_onnx(lengths=1)
    with pytest.raises(ValueError, match="opset"):
        rnn_relu_mean().to_onnx(opset=9)
    with pytest.raises(TypeError, match="Sequential"):
        fr.formats.onnx.export_sequential(fr.LSTM(3, 4))
