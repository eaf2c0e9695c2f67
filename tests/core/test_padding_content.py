"""Padding content never matters: NaN or inf written into the padded steps
(t >= lengths[b]) changes no output and no gradient of any layer or model
(regression: an inf in the padding came out as inf*0 = NaN and leaked through
Dense, Activation, MeanPooling and AttentionPooling)."""
import numpy as np
import pytest

import fastrnn as fr


def _poisoned(x, lengths, value):
    y = x.copy()
    for b, n in enumerate(lengths):
        y[b, n:] = value
    return y


LAYERS = {
    "Dense": lambda: fr.Dense(3, 2, activation="tanh", seed=0),
    "Activation": lambda: fr.Activation("sigmoid"),
    "MeanPooling": lambda: fr.MeanPooling(),
    "MaxPooling": lambda: fr.MaxPooling(),
    "LastStep": lambda: fr.LastStep(),
    "AttentionPooling": lambda: fr.AttentionPooling(3, 2, seed=0),
    "LSTM": lambda: fr.LSTM(3, 2, batch_first=True, bidirectional=True, seed=0),
    "GRU": lambda: fr.GRU(3, 2, batch_first=True, seed=0),
}


def _run(layer, x, lengths, dy_seed=1):
    recurrent = hasattr(layer, "hidden_size")
    y = layer(x, lengths=lengths)
    y = y[0] if recurrent else y
    layer.zero_grad()
    yf = layer.forward(x, lengths=lengths)
    yf = yf[0] if recurrent else yf
    dy = np.random.default_rng(dy_seed).standard_normal(yf.shape).astype(np.float32)
    dx = layer.backward(dy)
    dx = dx[0] if recurrent else dx
    return y, dx, {k: v.copy() for k, v in layer.grads.items()}


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 1e30])
def test_padding_values_do_not_leak(name, value):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 3)).astype(np.float32)
    lengths = np.array([5, 2, 1])
    clean = _run(LAYERS[name](), x, lengths)
    dirty = _run(LAYERS[name](), _poisoned(x, lengths, value), lengths)
    for a, b in zip(clean[:2], dirty[:2]):
        np.testing.assert_array_equal(a, b)
    for k in clean[2]:
        np.testing.assert_array_equal(clean[2][k], dirty[2][k], err_msg=k)


def test_model_predict_and_training_ignore_padding_content():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 6, 3)).astype(np.float32)
    lengths = np.array([6, 3, 1, 4])
    y = rng.integers(0, 2, size=(4, 6))

    def model():
        m = fr.Sequential([fr.Dense(3, 4, activation="relu"), fr.GRU(4, 5, batch_first=True),
                           fr.Activation("tanh"), fr.Dense(5, 2)], seed=0)
        m.compile(loss="cross_entropy", optimizer="adam")
        return m

    a, b = model(), model()
    a.fit(x, y, lengths=lengths, epochs=2, batch_size=2, verbose=0, seed=0)
    b.fit(_poisoned(x, lengths, np.nan), y, lengths=lengths, epochs=2, batch_size=2,
          verbose=0, seed=0)
    for (n, p, _), (_, q, _) in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p, q, err_msg=n)
    pa = a.predict(x, lengths=lengths)
    pb = b.predict(_poisoned(x, lengths, np.inf), lengths=lengths)
    np.testing.assert_array_equal(pa, pb)
    assert np.all(np.isfinite(pa))
