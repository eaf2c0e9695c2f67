"""ONNX's own backend node tests of the recurrent operators, run by fastrnn.

onnx.backend.test.loader.load_model_tests(kind="node") gives every node test
ONNX ships; the 18 of RNN, LSTM and GRU (test_rnn*, test_lstm*, test_gru*,
test_simple_rnn*) run here as written: the model and its data sets (the
model.onnx and test_data_set_*/input_*.pb, output_*.pb of a test folder when
the installed onnx keeps them on disk, else the ModelProto and arrays the
loader builds, which are what those files hold) through fr.from_onnx(model)
.run, compared as ONNX's backend runner compares (each test's rtol and atol,
1e-3 and 1e-7 for these). Every one feeds W, R and B as graph inputs.

Loading the node tests builds all of ONNX's cases (several seconds): done
once per session, by the first test of this file.
"""
import functools
import glob
import os
import re

import numpy as np
import pytest

import fastrnn as fr

onnx = pytest.importorskip("onnx")
from onnx import numpy_helper  # noqa: E402

PATTERN = re.compile(r"test_(rnn|lstm|gru|simple_rnn)")
NAMES = [
    "test_gru_batchwise", "test_gru_bidirectional", "test_gru_defaults",
    "test_gru_reverse", "test_gru_seq_length", "test_gru_with_initial_bias",
    "test_lstm_batchwise", "test_lstm_bidirectional", "test_lstm_defaults",
    "test_lstm_reverse", "test_lstm_with_initial_bias", "test_lstm_with_peepholes",
    "test_rnn_seq_length", "test_simple_rnn_batchwise", "test_simple_rnn_bidirectional",
    "test_simple_rnn_defaults", "test_simple_rnn_reverse",
    "test_simple_rnn_with_initial_bias",
]


@functools.lru_cache(maxsize=1)
def _cases():
    """{name: onnx TestCase} of the recurrent node tests."""
    import warnings

    from onnx.backend.test.loader import load_model_tests
    with warnings.catch_warnings():  # other operators' cases overflow casts on purpose
        warnings.simplefilter("ignore")
        tests = load_model_tests(kind="node")
    return {t.name: t for t in tests if PATTERN.match(t.name)}


def _read_pb(path):
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return numpy_helper.to_array(t)


def _model_and_data(case):
    """(ModelProto, [(inputs, outputs), ...]) of one node test, read from its
    folder when it has one (as ONNX's runner does), else from the loader."""
    if case.model_dir is not None:
        model = onnx.load(os.path.join(case.model_dir, "model.onnx"))
        data = []
        for d in sorted(glob.glob(os.path.join(case.model_dir, "test_data_set_*"))):
            n_in = len(glob.glob(os.path.join(d, "input_*.pb")))
            n_out = len(glob.glob(os.path.join(d, "output_*.pb")))
            data.append(([_read_pb(os.path.join(d, f"input_{i}.pb")) for i in range(n_in)],
                         [_read_pb(os.path.join(d, f"output_{i}.pb")) for i in range(n_out)]))
        return model, data
    return case.model, list(case.data_sets)


def test_the_selection_is_the_18_recurrent_cases():
    assert sorted(_cases()) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_node_test_passes(name):
    case = _cases()[name]
    model, data = _model_and_data(case)
    assert data, f"{name} has no data set"
    m = fr.from_onnx(model)
    graph_inputs = [i.name for i in model.graph.input]
    for inputs, outputs in data:
        feeds = dict(zip(graph_inputs, inputs))
        got = m.run(None, feeds)
        assert len(got) == len(outputs)
        for out_name, g, w in zip(m.output_names, got, outputs):
            assert g.dtype == w.dtype, (out_name, g.dtype, w.dtype)
            assert g.shape == w.shape, (out_name, g.shape, w.shape)
            np.testing.assert_allclose(g, w, rtol=case.rtol, atol=case.atol,
                                       err_msg=f"{name} {out_name}")
