"""Keras habits that fastrnn keeps: fit(validation_split=...), Sequential()
then model.add(layer), History.history, and the warnings on inputs that lose
something on the way in (float64 cast to float32, a torch tensor that
requires grad)."""
import warnings

import numpy as np
import pytest

import fastrnn as fr


def data(n=40, T=6, F=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, T, F)).astype(np.float32)
    lengths = rng.integers(2, T + 1, n)
    y = (x[:, 0, 0] > 0).astype(np.int64)
    return x, lengths, y


def model(seed=0, dtype="float32"):
    m = fr.Sequential([fr.GRU(3, 5, batch_first=True, dtype=dtype), fr.LastStep(dtype=dtype),
                       fr.Dense(5, 2, dtype=dtype)], seed=seed)
    m.compile(loss="cross_entropy", optimizer=fr.optim.Adam(lr=0.01), metrics=["accuracy"])
    return m


# ---- validation_split ---------------------------------------------------------------
def test_validation_split_holds_out_the_last_samples_unshuffled():
    """As Keras: the last fraction, taken before shuffling, is the validation
    set; the run is the one validation_data=(that part) gives, bit for bit."""
    x, lengths, y = data()
    a, b = model(), model()
    ha = a.fit(x, y, lengths=lengths, epochs=2, batch_size=8, validation_split=0.25,
               seed=3, verbose=0)
    hb = b.fit(x[:30], y[:30], lengths=lengths[:30], epochs=2, batch_size=8,
               validation_data=(x[30:], y[30:], lengths[30:]), seed=3, verbose=0)
    assert ha.history == hb.history
    for (_, p, _), (_, q, _) in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p, q)
    assert ha.history["val_loss"][-1] == pytest.approx(
        a.evaluate(x[30:], y[30:], lengths=lengths[30:])["loss"], rel=1e-12)


def test_validation_split_without_lengths_and_with_a_list():
    x, _, y = data(n=10)
    m = model()
    h = m.fit(x, y, epochs=1, validation_split=0.1, verbose=0)
    assert len(h.history["val_loss"]) == 1 and len(h.history["val_accuracy"]) == 1
    seqs = [x[i, :2 + i % 3] for i in range(10)]  # ragged: padded first, then split
    h = model().fit(seqs, y, epochs=1, validation_split=0.3, verbose=0)
    assert np.isfinite(h.history["val_loss"][0])


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5, "0.1", True, None])
def test_validation_split_out_of_range(bad):
    x, _, y = data(n=10)
    with pytest.raises(ValueError, match="validation_split: expected a float in"):
        model().fit(x, y, validation_split=bad, verbose=0)


def test_validation_split_errors():
    x, _, y = data(n=10)
    with pytest.raises(ValueError, match="validation_split: given with validation_data"):
        model().fit(x, y, validation_split=0.2, validation_data=(x, y), verbose=0)
    with pytest.raises(ValueError, match="leaves 0 for training"):
        model().fit(x[:1], y[:1], validation_split=0.5, verbose=0)
    with pytest.raises(ValueError, match="leaves 0 for training and 3 for validation"):
        model().fit(x[:3], y[:3], validation_split=0.9, verbose=0)


# ---- Sequential() and add ---------------------------------------------------------------
def test_add_builds_the_model_sequential_builds():
    x, lengths, y = data()
    m = fr.Sequential(seed=4)
    assert m.add(fr.LSTM(3, 5, batch_first=True)) is m
    m.add(fr.MeanPooling()).add(fr.Dense(5, 2))
    ref = fr.Sequential([fr.LSTM(3, 5, batch_first=True), fr.MeanPooling(), fr.Dense(5, 2)],
                        seed=4)
    assert [type(l) for l in m.layers] == [type(l) for l in ref.layers]
    for (n, p, _), (k, q, _) in zip(m.parameters(), ref.parameters()):
        assert n == k
        np.testing.assert_array_equal(p, q)  # the same seed streams per layer
    for mm in (m, ref):
        mm.compile(loss="cross_entropy", optimizer="adam")
    assert m.fit(x, y, lengths=lengths, epochs=2, seed=1, verbose=0).history == \
        ref.fit(x, y, lengths=lengths, epochs=2, seed=1, verbose=0).history


def test_add_errors():
    m = fr.Sequential()
    with pytest.raises(ValueError, match="has no layers: add them with model.add"):
        m.predict(np.ones((1, 2, 3)))
    with pytest.raises(ValueError, match="has no layers"):
        m.compile(loss="mse")
    with pytest.raises(TypeError, match="layer: expected a fastrnn layer, got str"):
        m.add("LSTM")
    m.add(fr.Dense(3, 2))
    with pytest.raises(ValueError, match="layer: dtype float64 differs from the model's "
                                         "float32"):
        m.add(fr.Dense(2, 2, dtype="float64"))
    m.add(fr.MeanPooling())
    with pytest.raises(ValueError, match="layer: LSTM after a pooling layer"):
        m.add(fr.LSTM(2, 2, batch_first=True))
    m.compile(loss="mse")
    with pytest.raises(RuntimeError, match="compiled already; add every layer before"):
        m.add(fr.Dense(2, 1))
    assert len(m.layers) == 2


# ---- History ------------------------------------------------------------------------
def test_history_is_keras_shaped():
    x, lengths, y = data()
    h = model().fit(x, y, lengths=lengths, epochs=3, batch_size=16, validation_split=0.2,
                    verbose=0)
    assert isinstance(h.history, dict)
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(h.history)
    for k, v in h.history.items():
        assert isinstance(v, list) and len(v) == 3 and all(type(e) is float for e in v), k
    assert h.epoch == [0, 1, 2] and h.params == {"epochs": 3, "steps": 2, "verbose": 0}
    assert h["loss"] is h.history["loss"] and h.stopped_by is None
    assert "val_loss" in repr(h)


# ---- warnings -----------------------------------------------------------------------------
def test_float64_into_float32_warns_once_per_call_site():
    x, lengths, y = data()
    x64 = x.astype(np.float64)
    layer = fr.Dense(3, 2)
    m = model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(3):
            layer(x64)                                     # one call site
        m.fit(x64, y, lengths=lengths, epochs=2, verbose=0)  # another
        m.predict(x64, lengths=lengths)                     # a third
        m.layers[0].step(x64[:, 0])                         # x_t
    msgs = [w for w in caught if issubclass(w.category, UserWarning)]
    assert len(msgs) == 4, [str(w.message) for w in msgs]
    assert all(w.filename == __file__ for w in msgs)  # the user's line, not fastrnn's
    text = str(msgs[0].message)
    assert "float64 input cast to float32" in text and "astype(np.float32)" in text \
        and "dtype='float64'" in text
    assert "x_t: float64" in str(msgs[3].message)


def test_no_warning_when_nothing_is_lost():
    x, lengths, y = data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fr.Dense(3, 2)(x)                                     # float32 as it is
        fr.Dense(3, 2, dtype="float64")(x)                    # widened: nothing lost
        fr.Dense(3, 2)(np.ones((2, 3), np.int64))             # ints
        model(dtype="float64").fit(x.astype(np.float64), y, epochs=1, verbose=0)
        fr.GRU(3, 2).forward(x.transpose(1, 0, 2), state0=np.zeros((1, 40, 2)))  # states


class FakeTensor:
    """What fastrnn's input conversion sees of a torch CPU tensor."""

    def __init__(self, a, requires_grad):
        self.a, self.requires_grad = a, requires_grad
        self.dtype = a.dtype

    def detach(self):
        return FakeTensor(self.a, False)

    def cpu(self):
        return self

    def numpy(self):
        return self.a


def test_tensor_requiring_grad_warns():
    x, lengths, y = data()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        fr.Dense(3, 2)(FakeTensor(x, requires_grad=True))
        fr.Dense(3, 2)(FakeTensor(x, requires_grad=False))
    assert len(caught) == 1 and caught[0].filename == __file__
    text = str(caught[0].message)
    assert text.startswith("x: a torch tensor with requires_grad=True") and \
        "x.detach()" in text and "no gradient flows back" in text


def test_real_torch_tensor_requiring_grad_warns():
    torch = pytest.importorskip("torch")
    t = torch.ones(2, 4, 3, requires_grad=True)
    with pytest.warns(UserWarning, match="requires_grad=True"):
        y = fr.LSTM(3, 2, batch_first=True)(t)[0]
    assert y.shape == (2, 4, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fr.LSTM(3, 2, batch_first=True)(t.detach())
