"""fr.to_torch / layer.to_torch: fastrnn layers as torch modules, weights
copied, outputs equal; and the layers torch cannot express are refused."""
import numpy as np
import pytest

import fastrnn as fr

torch = pytest.importorskip("torch")


def _layer(mode, **kw):
    if mode == "LSTM":
        return fr.LSTM(4, 5, **kw)
    if mode == "GRU":
        return fr.GRU(4, 5, **kw)
    return fr.RNN(4, 5, nonlinearity="relu" if mode == "RNN_RELU" else "tanh", **kw)


@pytest.mark.parametrize("mode", ["RNN_TANH", "RNN_RELU", "LSTM", "GRU"])
@pytest.mark.parametrize("kw", [dict(), dict(num_layers=2, bidirectional=True, batch_first=True),
                                dict(bias=False, dtype="float64", dropout=0.25, num_layers=2)])
def test_to_torch_outputs_equal(mode, kw):
    layer = _layer(mode, seed=1, **kw).eval()
    module = layer.to_torch()
    assert isinstance(module, {"LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}.get(mode, torch.nn.RNN))
    assert module.batch_first == layer.batch_first and module.dropout == layer.dropout
    assert not module.training
    x = np.random.default_rng(0).standard_normal((3, 6, 4)).astype(layer.dtype)
    y, st = layer(x)
    with torch.no_grad():
        ty, tst = module(torch.from_numpy(x))
    tol = 1e-12 if layer.dtype == np.float64 else 1e-5
    np.testing.assert_allclose(ty.numpy(), y, rtol=tol, atol=tol)
    hn = st[0] if mode == "LSTM" else st
    np.testing.assert_allclose((tst[0] if mode == "LSTM" else tst).numpy(), hn, rtol=tol, atol=tol)
    # and back: the same parameters
    back = fr.from_torch(module)
    for k, v in layer.params.items():
        np.testing.assert_array_equal(back.params[k], v)


def test_to_torch_copies():
    layer = fr.GRU(3, 4, seed=0)
    module = fr.to_torch(layer)
    layer.params["weight_ih_l0"][...] = 0
    assert torch.count_nonzero(module.weight_ih_l0) > 0


def test_to_torch_refuses_what_torch_lacks():
    with pytest.raises(ValueError, match="linear_before_reset"):
        fr.GRU(3, 4, linear_before_reset=False).to_torch()
    with pytest.raises(ValueError, match="clip"):
        fr.LSTM(3, 4, clip=1.0).to_torch()
    with pytest.raises(TypeError, match="RNN, LSTM or GRU"):
        fr.to_torch(torch.nn.LSTM(3, 4))


def test_to_torch_refuses_what_torch_lacks():
    for kw in (dict(peepholes=True), dict(input_forget=True), dict(padding="carry"),
               dict(activations=["HardSigmoid", "Tanh", "Tanh"])):
        with pytest.raises(ValueError, match=list(kw)[0]):
            fr.LSTM(3, 4, **kw).to_torch()
