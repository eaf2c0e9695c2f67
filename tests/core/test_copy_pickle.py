"""Layers and models that have run (and so hold cached kernel plans) still
copy.deepcopy and pickle, and the copies compute exactly what the originals
do, independently of them."""
import copy
import pickle

import numpy as np
import pytest

import fastrnn as fr


def _layers():
    return [fr.RNN(4, 6, num_layers=2, seed=1), fr.GRU(4, 6, bidirectional=True, seed=2),
            fr.LSTM(4, 6, num_layers=2, seed=3), fr.LSTM(4, 6, zoneout=0.2, seed=4),
            fr.LayerNormLSTM(4, 6, seed=5)]


@pytest.mark.parametrize("clone", [copy.deepcopy, lambda o: pickle.loads(pickle.dumps(o))],
                         ids=["deepcopy", "pickle"])
@pytest.mark.parametrize("k", range(5))
def test_recurrent_layer_after_use(clone, k):
    layer = _layers()[k]
    x = np.random.default_rng(0).standard_normal((5, 3, 4)).astype(np.float32)
    layer.eval()
    y, _ = layer(x)
    if not layer.bidirectional:
        layer.step(x[0], None)
    twin = clone(layer)
    np.testing.assert_array_equal(twin(x)[0], y)
    # independent: changing the copy's weights leaves the original alone
    for a in twin.params.values():
        a *= 2
    np.testing.assert_array_equal(layer(x)[0], y)
    assert not np.array_equal(twin(x)[0], y)


def test_fitted_model_deepcopies():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 7, 3)).astype(np.float32)
    t = rng.integers(0, 2, 16)
    m = fr.Sequential([fr.GRU(3, 8, batch_first=True), fr.LastStep(), fr.Dense(8, 2)], seed=0)
    m.compile(loss="cross_entropy", optimizer=fr.optim.Adam(lr=1e-2))
    m.fit(x, t, epochs=2, batch_size=8, seed=0, verbose=0)
    twin = copy.deepcopy(m)
    np.testing.assert_array_equal(twin.predict(x), m.predict(x))
    twin.fit(x, t, epochs=1, batch_size=8, seed=0, verbose=0)   # trains on its own
    assert not np.array_equal(twin.predict(x), m.predict(x))
