"""Layers written by users in NumPy (fr.Layer with forward/backward), their
registration for model files (fr.register_layer), and fr.check_gradients,
which also checks every built-in layer's backward here."""
import numpy as np
import pytest

import fastrnn as fr
from fastrnn import layers as _layers
from fastrnn.examples.custom_layer import GatedResidual, WrongGatedResidual, make_data


@pytest.fixture
def registry():
    """The table of layer classes, restored after the test."""
    saved = dict(_layers._LAYER_CLASSES)
    yield _layers._LAYER_CLASSES
    _layers._LAYER_CLASSES.clear()
    _layers._LAYER_CLASSES.update(saved)


class Scale(fr.Layer):
    """The smallest layer with a parameter: y = x * s per feature."""

    has_params = True

    def __init__(self, features, dtype="float32"):
        super().__init__(dtype)
        self.features = features
        self.params["s"] = np.linspace(0.5, 1.5, features).astype(self.dtype)

    def forward(self, x, training=False):
        self.x = x
        return x * self.params["s"]

    def backward(self, dy):
        self.grads["s"] += (dy * self.x).reshape(-1, self.features).sum(axis=0)
        return dy * self.params["s"]


# ---- fr.check_gradients on the built-in layers ---------------------------------------
BUILTINS = {
    "Dense-tanh": lambda dt: fr.Dense(4, 3, activation="tanh", dtype=dt, seed=0),
    "Dense-linear-nobias": lambda dt: fr.Dense(4, 3, bias=False, dtype=dt, seed=1),
    "Activation-sigmoid": lambda dt: fr.Activation("sigmoid", dtype=dt),
    "Activation-elu": lambda dt: fr.Activation("elu", dtype=dt),
    "Dropout": lambda dt: fr.Dropout(0.4, dtype=dt, seed=2),
    "LastStep": lambda dt: fr.LastStep(dtype=dt),
    "MeanPooling": lambda dt: fr.MeanPooling(dtype=dt),
    "MaxPooling": lambda dt: fr.MaxPooling(dtype=dt),
    "AttentionPooling": lambda dt: fr.AttentionPooling(4, 5, dtype=dt, seed=0),
    "LSTM": lambda dt: fr.LSTM(4, 5, batch_first=True, dtype=dt, seed=0),
    "GRU-2-layers-bidirectional": lambda dt: fr.GRU(4, 3, num_layers=2, bidirectional=True,
                                                    dropout=0.3, dtype=dt, seed=1),
    "RNN-time-major": lambda dt: fr.RNN(4, 3, dtype=dt, seed=2),
    "LayerNormLSTM": lambda dt: fr.LayerNormLSTM(4, 3, batch_first=True, dtype=dt, seed=0),
    "LSTM-zoneout": lambda dt: fr.LSTM(4, 3, batch_first=True, zoneout=0.3, dtype=dt, seed=0),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_check_gradients_passes_on_builtin_layers(name, dtype):
    """float32 layers are checked through their float64 copy."""
    layer = BUILTINS[name](dtype)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 4)).astype(dtype)
    report = fr.check_gradients(layer, x, lengths=[5, 2, 4], max_entries=24)
    assert report.passed and "x" in report.results
    assert set(report.results) == {"x"} | set(layer.params)
    assert all(r["checked"] > 0 for r in report.results.values())


def test_check_gradients_leaves_the_layer_alone():
    layer = fr.LSTM(4, 3, batch_first=True, dtype="float64", seed=0)
    before = {n: p.copy() for n, p in layer.params.items()}
    fr.check_gradients(layer, np.ones((2, 3, 4)), max_entries=8)
    for n, p in layer.params.items():
        np.testing.assert_array_equal(p, before[n])
        assert not layer.grads[n].any()


def test_check_gradients_embedding_checks_only_the_table():
    ids = np.array([[1, 2, 2, 0], [3, 1, 0, 0]])
    report = fr.check_gradients(fr.Embedding(5, 3, seed=0), ids,
                                lengths=[4, 2], max_entries=None)
    assert set(report.results) == {"weight"} and report.results["weight"]["checked"] == 15


class _Planted:
    """Built-in layers with one planted bug each in their backward."""

    class DenseNoBiasGrad(fr.Dense):
        def _backward(self, ctx, dy):
            dx = super()._backward(ctx, dy)
            self.grads["bias"] *= 0.5
            return dx

    class MeanPoolingScaled(fr.MeanPooling):
        def _backward(self, ctx, dy):
            return super()._backward(ctx, dy) * 1.001

    class LSTMNoInputGrad(fr.LSTM):
        def apply_backward(self, dy):
            dx = super().apply_backward(dy)
            dx[:, 0] = 0  # the first step's input gradient lost
            return dx


@pytest.mark.parametrize("layer", [
    _Planted.DenseNoBiasGrad(4, 3, seed=0), _Planted.MeanPoolingScaled(),
    _Planted.LSTMNoInputGrad(4, 3, batch_first=True, seed=0),
    WrongGatedResidual(4, seed=0)], ids=lambda l: type(l).__name__)
def test_check_gradients_fails_on_a_wrong_backward(layer):
    x = np.random.default_rng(1).standard_normal((2, 4, 4))
    with pytest.raises(fr.GradientCheckError, match="worst entry") as e:
        fr.check_gradients(layer, x)
    assert isinstance(e.value, AssertionError) and not e.value.report.passed
    report = fr.check_gradients(layer, x, raise_on_failure=False)
    assert not report and "FAILED" in str(report)
    name, where, analytic, numeric = report.worst
    assert abs(analytic - numeric) > 1e-6


def test_check_gradients_arguments():
    with pytest.raises(TypeError, match="layer: expected an fr.Layer"):
        fr.check_gradients(np.ones(3), np.ones((1, 3)))
    with pytest.raises(ValueError, match="eps: expected a number > 0"):
        fr.check_gradients(fr.Dense(3, 2), np.ones((1, 3)), eps=0)
    with pytest.raises(ValueError, match="max_entries"):
        fr.check_gradients(fr.Dense(3, 2), np.ones((1, 3)), max_entries=0)

    class NoDtype(fr.Layer):
        def __init__(self):
            super().__init__("float32")

        def forward(self, x, training=False):
            return x

        def backward(self, dy):
            return dy

    with pytest.raises(TypeError, match="pass a float64 layer"):
        fr.check_gradients(NoDtype(), np.ones((1, 3)))


# ---- the NumPy layer API --------------------------------------------------------------
def test_numpy_layer_forward_backward_and_grads_made_for_it():
    layer = Scale(3)
    assert layer.grads == {}  # made when needed (parameters(), training)
    (name, p, g), = layer.parameters()
    assert name == "s" and g.shape == p.shape and not g.any()
    x = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    y, state = layer.apply(x, None, None, training=True)
    assert state is None
    np.testing.assert_array_equal(y, x * p)
    dx = layer.apply_backward(np.ones_like(y))
    np.testing.assert_array_equal(dx, np.broadcast_to(p, x.shape))
    np.testing.assert_array_equal(g, x.reshape(-1, 3).sum(0))
    np.testing.assert_array_equal(layer(x), x * p)  # inference
    y_t, st = layer.step(x[:, 0])
    np.testing.assert_array_equal(y_t, x[:, 0] * p)
    assert st is None and repr(layer) == "Scale(features=3, dtype='float32')"


def test_numpy_layer_padding_is_zero_and_gets_no_gradient():
    class Spy(fr.Layer):
        def __init__(self, dtype="float32"):
            super().__init__(dtype)

        def forward(self, x, training=False, lengths=None):
            self.seen = (x.copy(), lengths)
            return x + 1

        def backward(self, dy):
            self.dy = dy.copy()
            return dy + 1

    layer = Spy()
    x = np.full((2, 3, 2), np.nan, np.float32)
    x[0, :3], x[1, :1] = 1, 2
    y, _ = layer.apply(x, np.array([3, 1]), None, True)
    seen, lengths = layer.seen
    assert np.isfinite(seen).all() and (seen[1, 1:] == 0).all()
    np.testing.assert_array_equal(lengths, [3, 1])
    assert (y[1, 1:] == 0).all() and (y[0] == 2).all()
    dx = layer.apply_backward(np.ones_like(y))
    assert (layer.dy[1, 1:] == 0).all() and (dx[1, 1:] == 0).all() and (dx[0] == 2).all()


def test_numpy_layer_errors_name_the_problem():
    class Rebinds(Scale):
        def backward(self, dy):
            self.grads["s"] = (dy * self.x).reshape(-1, self.features).sum(axis=0)
            return dy

    class WrongShape(Scale):
        def backward(self, dy):
            super().backward(dy)
            return dy[:, :1]

    class NotArray(Scale):
        def forward(self, x, training=False):
            return x.tolist()

    class InferenceOnly(fr.Layer):
        def forward(self, x, training=False):
            return x

    x = np.ones((2, 3), np.float32)
    layer = Rebinds(3)
    layer.apply(x, training=True)
    with pytest.raises(RuntimeError, match=r"replaced the array self.grads\['s'\].*\+="):
        layer.apply_backward(np.ones_like(x))
    layer = WrongShape(3)
    layer.apply(x, training=True)
    with pytest.raises(ValueError, match=r"WrongShape.backward: expected d x.*\(2, 3\)"):
        layer.apply_backward(np.ones_like(x))
    with pytest.raises(TypeError, match="NotArray.forward: expected it to return a NumPy"):
        NotArray(3)(x)
    with pytest.raises(RuntimeError, match="needs a preceding training forward"):
        Scale(3).apply_backward(x)
    layer = InferenceOnly()
    np.testing.assert_array_equal(layer(x), x)
    layer.apply(x, training=True)
    with pytest.raises(NotImplementedError, match="no backward"):
        layer.apply_backward(x)


def test_numpy_layer_trains_in_a_model_with_an_optimizer():
    x, lengths, y = make_data(96, 0, T=8)
    model = fr.Sequential([fr.LSTM(3, 8, batch_first=True), GatedResidual(8),
                           fr.MeanPooling(), fr.Dense(8, 3)], seed=0)
    start = model.layers[1].params["wg"].copy()
    model.compile(loss="cross_entropy", optimizer=fr.optim.AdamW(lr=0.02))
    h = model.fit(x, y, lengths=lengths, epochs=4, batch_size=32, seed=0, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]
    assert not np.array_equal(model.layers[1].params["wg"], start)
    assert "GatedResidual" in model.summary(print_fn=None)
    # fit(seed=...) drew the unseeded layer's weights (its reset_parameters)
    again = fr.Sequential([fr.LSTM(3, 8, batch_first=True), GatedResidual(8),
                           fr.MeanPooling(), fr.Dense(8, 3)], seed=0)
    np.testing.assert_array_equal(again.layers[1].params["wg"], start)


# ---- register_layer and model files ------------------------------------------------------
def test_registered_layer_saves_and_loads(tmp_path):
    x, lengths, y = make_data(64, 1, T=6)
    model = fr.Sequential([fr.GRU(3, 6, batch_first=True), GatedResidual(6),
                           fr.LastStep(), fr.Dense(6, 3)], seed=1)
    model.compile(loss="cross_entropy", optimizer="adam", metrics=["accuracy"])
    model.fit(x, y, lengths=lengths, epochs=2, seed=0, verbose=0)
    model.save(tmp_path / "m.fastrnn")
    loaded = fr.load(tmp_path / "m.fastrnn")
    assert type(loaded.layers[1]) is GatedResidual and loaded.layers[1].features == 6
    np.testing.assert_array_equal(model.predict(x, lengths=lengths),
                                  loaded.predict(x, lengths=lengths))
    # training goes on from the saved optimizer state, the same in both
    for m in (model, loaded):
        m.fit(x, y, lengths=lengths, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_array_equal(model.layers[1].params["wh"], loaded.layers[1].params["wh"])


def test_unregistered_layer_is_refused_on_save_and_load(tmp_path, registry):
    model = fr.Sequential([Scale(3)])
    with pytest.raises(TypeError, match=r"layer 0: Scale .*fr.register_layer\(Scale\)"):
        model.save(tmp_path / "m.fastrnn")
    fr.register_layer(Scale)
    model.save(tmp_path / "m.fastrnn")
    assert type(fr.load(tmp_path / "m.fastrnn").layers[0]) is Scale
    del registry["Scale"]  # as in a process that never imported the class
    with pytest.raises(ValueError, match=r"layer 0: unknown layer class 'Scale': not "
                                         r"registered in this process.*fr.register_layer"):
        fr.load(tmp_path / "m.fastrnn")


def test_register_layer_refuses_builtin_names_and_non_layers(registry):
    class Dense(Scale):
        pass

    with pytest.raises(ValueError, match="'Dense' is the name of a built-in"):
        fr.register_layer(Dense)
    assert registry["Dense"] is fr.Dense
    for name in ("LSTM", "GRU", "RNN", "LayerNormLSTM", "Embedding", "AttentionPooling"):
        with pytest.raises(ValueError, match="built-in"):
            fr.register_layer(type(name, (Scale,), {}))
    with pytest.raises(TypeError, match="layer_class: expected a subclass of fr.Layer"):
        fr.register_layer(int)
    with pytest.raises(TypeError, match="layer_class: expected a subclass of fr.Layer"):
        fr.register_layer(Scale(2))


def test_register_layer_decorator_and_name_clash(registry):
    @fr.register_layer
    class Twice(Scale):
        pass

    assert registry["Twice"] is Twice and fr.register_layer(Twice) is Twice
    other = type("Twice", (Scale,), {"__module__": "somewhere.else"})
    with pytest.raises(ValueError, match="named 'Twice' is registered already"):
        fr.register_layer(other)
    # the same class defined again (a notebook cell run twice) replaces it
    again = type("Twice", (Scale,), {"__module__": Twice.__module__,
                                     "__qualname__": Twice.__qualname__})
    assert fr.register_layer(again) is again and registry["Twice"] is again
