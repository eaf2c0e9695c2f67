"""fr.from_torch of nn.Sequential / lists of modules and fr.to_torch of
fr.Sequential: weights copied, outputs equal both ways (float32 rtol 1e-5,
float64 1e-12), with lengths through pack_padded_sequence; unmapped modules
and layers are refused with their names."""
import numpy as np
import pytest

import fastrnn as fr

torch = pytest.importorskip("torch")
nn = torch.nn
V = 13


def torch_chain(modules, x):
    """Run a torch chain as from_torch reads it: a recurrent module's output
    sequence flows on."""
    for m in modules:
        x = m(x)
        if isinstance(x, tuple):
            x = x[0]
    return x


def close(a, b, dtype=np.float32):
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * 0.1)


def torch_models():
    torch.manual_seed(0)
    yield "emb_lstm_relu_head", nn.Sequential(
        nn.Embedding(V, 6, padding_idx=0), nn.LSTM(6, 5, batch_first=True, bidirectional=True),
        nn.Dropout(0.2), nn.Linear(10, 7), nn.ReLU(), nn.Linear(7, 3)), True
    yield "gru_act_chain", nn.Sequential(
        nn.Linear(4, 6), nn.Tanh(), nn.GRU(6, 5, num_layers=2, batch_first=True),
        nn.Identity(), nn.Sigmoid(), nn.Linear(5, 2), nn.ELU(), nn.LeakyReLU(0.01)), False
    yield "rnn_relu_f64", nn.Sequential(
        nn.RNN(3, 4, nonlinearity="relu", batch_first=True, dtype=torch.float64),
        nn.Linear(4, 2, bias=False, dtype=torch.float64)), False
    yield "time_major_list", [nn.Embedding(V, 4), nn.GRU(4, 3), nn.Linear(3, 2)], True


@pytest.mark.parametrize("name,tm,ids", [(n, m, i) for n, m, i in torch_models()],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_from_torch_sequential_outputs_equal(name, tm, ids):
    mods = list(tm) if isinstance(tm, list) else tm
    if not isinstance(mods, list):
        mods.eval()
    else:
        for m in mods:
            m.eval()
    model = fr.from_torch(mods)
    assert isinstance(model, fr.Sequential) and not model.training
    dtype = np.float64 if name.endswith("f64") else np.float32
    assert model.dtype == dtype
    rng = np.random.default_rng(1)
    x = rng.integers(0, V, (3, 7)) if ids else rng.standard_normal((3, 7, 4 if "gru" in name
                                                                    else 3)).astype(dtype)
    time_major = name == "time_major_list"
    tx = torch.from_numpy(x.T.copy() if time_major else x)
    with torch.no_grad():
        want = torch_chain(mods, tx).numpy()
    if time_major:
        want = want.transpose(1, 0, 2)
    close(model(x), want, dtype)
    # the Dense folded the activation after nn.Linear
    if name == "emb_lstm_relu_head":
        assert [type(l).__name__ for l in model.layers] == ["Embedding", "LSTM", "Dropout",
                                                            "Dense", "Dense"]
        assert model.layers[3].activation == "relu" and model.layers[0].padding_idx == 0


def test_from_torch_sequential_with_lengths_matches_packed():
    torch.manual_seed(1)
    tm = nn.Sequential(nn.Embedding(V, 5), nn.LSTM(5, 4, batch_first=True), nn.Linear(4, 3)).eval()
    model = fr.from_torch(tm)
    rng = np.random.default_rng(2)
    x, L = rng.integers(0, V, (4, 6)), np.array([6, 2, 5, 1])
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    with torch.no_grad():
        e = tm[0](torch.from_numpy(x))
        y, _ = tm[1](pack_padded_sequence(e, torch.from_numpy(L), batch_first=True,
                                          enforce_sorted=False))
        y, _ = pad_packed_sequence(y, batch_first=True, total_length=6)
        want = tm[2](y).numpy()
    got = model(x, L)
    valid = np.arange(6)[None, :] < L[:, None]
    close(got[valid], want[valid])
    assert np.all(got[~valid] == 0)


def fr_models():
    yield fr.Sequential([fr.Embedding(V, 6, padding_idx=1),
                         fr.LSTM(6, 5, batch_first=True, bidirectional=True),
                         fr.AttentionPooling(10, 4), fr.Dense(10, 3)], seed=0)
    yield fr.Sequential([fr.GRU(3, 5, num_layers=2), fr.LastStep(),
                         fr.Dense(5, 2, activation="tanh")], seed=1)
    yield fr.Sequential([fr.Embedding(V, 4), fr.RNN(4, 6, nonlinearity="relu",
                                                     batch_first=True, bidirectional=True),
                         fr.Dropout(0.5), fr.Dense(12, 5, activation="elu"),
                         fr.Activation("leaky_relu"), fr.Dense(5, 4)], seed=2)
    yield fr.Sequential([fr.LSTM(3, 4, batch_first=True, dtype="float64"),
                         fr.MeanPooling(dtype="float64"),
                         fr.Dense(4, 2, activation="sigmoid", dtype="float64")], seed=3)
    yield fr.Sequential([fr.GRU(3, 4, batch_first=True, bidirectional=True), fr.MaxPooling(),
                         fr.Dense(8, 2)], seed=4)


@pytest.mark.parametrize("i", range(5))
@pytest.mark.parametrize("N", [1, 5])
def test_to_torch_sequential_outputs_equal(i, N):
    model = list(fr_models())[i].eval()
    module = fr.to_torch(model)
    assert isinstance(module, torch.nn.Module) and not module.training
    rng = np.random.default_rng(10 * i + N)
    T = 7
    if isinstance(model.layers[0], fr.Embedding):
        x = rng.integers(0, V, (N, T))
    else:
        x = rng.standard_normal((N, T, 3)).astype(model.dtype)
    L = rng.integers(1, T + 1, N)
    L[0] = T
    with torch.no_grad():
        got_l = module(torch.from_numpy(x), torch.from_numpy(L)).numpy()
        got = module(torch.from_numpy(x)).numpy()
    close(got_l, model(x, L), model.dtype)
    close(got, model(x), model.dtype)
    # and back: a torch chain of the mapped modules gives the same parameters
    if i == 2:
        back = fr.from_torch([m for m in module.layers])
        for a, b in zip(back.layers, model.layers):
            assert type(a) is type(b)
            for k, v in b.params.items():
                np.testing.assert_array_equal(a.params[k], v)
        assert back.layers[3].activation == "elu"


def test_refusals():
    with pytest.raises(TypeError, match=r"modules\[1\] \(Conv1d\)"):
        fr.from_torch(nn.Sequential(nn.Linear(3, 3), nn.Conv1d(3, 3, 1)))
    with pytest.raises(ValueError, match="LeakyReLU"):
        fr.from_torch([nn.Linear(3, 3), nn.LeakyReLU(0.2)])
    with pytest.raises(ValueError, match="batch_first"):
        fr.from_torch([nn.LSTM(3, 3, batch_first=True), nn.GRU(3, 3)])
    with pytest.raises(ValueError, match="max_norm"):
        fr.from_torch([nn.Embedding(5, 3, max_norm=1.0)])
    with pytest.raises(ValueError, match="zoneout"):
        fr.to_torch(fr.Sequential([fr.LSTM(3, 4, zoneout=0.1), fr.LastStep()]))
    with pytest.raises(ValueError, match="LayerNormLSTM"):
        fr.to_torch(fr.Sequential([fr.LayerNormLSTM(3, 4), fr.LastStep()]))
