"""fr.from_keras(model, sequential=True): Keras 3 Sequential models of
Embedding / Dense / Activation / Dropout / recurrent layers as fr.Sequential,
outputs equal to Keras's (KERAS_BACKEND=torch; skipped without keras), and
the settings that do not map exactly refused."""
import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

import fastrnn as fr  # noqa: E402

V = 11


def build(layers, shape):
    m = keras.Sequential([keras.Input(shape=shape)] + layers)
    return m


def test_embedding_recurrent_dense():
    keras.utils.set_random_seed(0)
    km = build([keras.layers.Embedding(V, 6),
                keras.layers.Bidirectional(keras.layers.LSTM(5, return_sequences=True)),
                keras.layers.Dropout(0.3),
                keras.layers.GRU(4, return_sequences=False),
                keras.layers.Dense(7, activation="relu"), keras.layers.Dense(3)], (None,))
    model = fr.from_keras(km, sequential=True)
    assert [type(l).__name__ for l in model.layers] == ["Embedding", "LSTM", "Dropout", "GRU",
                                                        "LastStep", "Dense", "Dense"]
    x = np.random.default_rng(0).integers(0, V, (4, 9))
    want = np.asarray(km(x, training=False).detach().cpu().numpy())
    np.testing.assert_allclose(model(x), want, rtol=1e-5, atol=1e-6)


def test_features_simplernn_per_step():
    keras.utils.set_random_seed(1)
    km = build([keras.layers.SimpleRNN(5, activation="relu", return_sequences=True),
                keras.layers.Dense(4, activation="tanh"), keras.layers.Activation("sigmoid"),
                keras.layers.GRU(3, reset_after=False, return_sequences=True),
                keras.layers.Dense(2, activation="elu")], (None, 3))
    model = fr.from_keras(km, sequential=True)
    x = np.random.default_rng(1).standard_normal((2, 6, 3)).astype(np.float32)
    want = km(x, training=False).detach().cpu().numpy()
    np.testing.assert_allclose(model(x), want, rtol=1e-5, atol=1e-6)
    assert model.sequence_output


def test_refusals():
    cases = [([keras.layers.LSTM(3, return_sequences=True),
               keras.layers.Dense(2, activation="selu")], (None, 3), "selu"),
             ([keras.layers.LSTM(3, return_state=True)], (None, 3), "return_state"),
             ([keras.layers.Bidirectional(keras.layers.GRU(3, return_sequences=True),
                                          merge_mode=None), keras.layers.Dense(2)],
              (None, 3), "merge_mode=None"),
             ([keras.layers.Conv1D(2, 1)], (None, 3), "Conv1D")]
    for layers, shape, match in cases:
        try:
            km = build(layers, shape)
        except Exception:  # noqa: BLE001 - a model Keras itself cannot build is no case
            continue
        with pytest.raises(NotImplementedError, match=match):
            fr.from_keras(km, sequential=True)
    with pytest.raises(TypeError, match="Keras model"):
        fr.from_keras_sequential(fr.LSTM(3, 3))
