"""fr.from_keras / fr.from_keras_weights.

1. from_keras_weights against a NumPy transcription of Keras 3's cell
   equations (no keras needed): LSTM, GRU with reset_after True and False,
   SimpleRNN tanh/relu, bidirectional.
2. Real Keras 3 layers (KERAS_BACKEND=torch; skipped without keras): live
   layers, Bidirectional wrappers, saved .keras files of stacked recurrent
   layers (read without importing keras), outputs and final states equal to
   Keras's (float32, rtol 1e-5).
3. What does not map, and damaged files, raise clear errors.
"""
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import fastrnn as fr

os.environ.setdefault("KERAS_BACKEND", "torch")
RTOL, ATOL = 1e-5, 1e-6


def close(a, b, what=""):
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=what)


def sig(v):
    return 1 / (1 + np.exp(-v))


# ---- 1. Keras equations in NumPy -----------------------------------------------------

def keras_numpy(kind, x, kernel, rk, bias, reset_after=True, act="tanh", reverse=False):
    """Keras 3's cells, batch-first x (B,T,I): sequence (B,T,H), last h, last c."""
    B, T, _ = x.shape
    H = rk.shape[0]
    h = np.zeros((B, H))
    c = np.zeros((B, H))
    ys = []
    steps = range(T - 1, -1, -1) if reverse else range(T)
    f = np.tanh if act == "tanh" else (lambda v: np.maximum(v, 0))
    for t in steps:
        xt = x[:, t]
        if kind == "LSTM":  # kernel columns i, f, c, o
            z = xt @ kernel + h @ rk + (0 if bias is None else bias)
            i, fg, g, o = (z[:, k * H:(k + 1) * H] for k in range(4))
            c = sig(fg) * c + sig(i) * np.tanh(g)
            h = sig(o) * np.tanh(c)
        elif kind == "GRU":  # columns z, r, h
            if reset_after:
                bi, br = (0, 0) if bias is None else (bias[0], bias[1])
                mx = xt @ kernel + bi
                mh = h @ rk + br
                zg = sig(mx[:, :H] + mh[:, :H])
                rg = sig(mx[:, H:2 * H] + mh[:, H:2 * H])
                hh = np.tanh(mx[:, 2 * H:] + rg * mh[:, 2 * H:])
            else:
                bi = 0 if bias is None else bias
                mx = xt @ kernel + bi
                zg = sig(mx[:, :H] + h @ rk[:, :H])
                rg = sig(mx[:, H:2 * H] + h @ rk[:, H:2 * H])
                hh = np.tanh(mx[:, 2 * H:] + (rg * h) @ rk[:, 2 * H:])
            h = zg * h + (1 - zg) * hh
        else:
            h = f(xt @ kernel + h @ rk + (0 if bias is None else bias))
        ys.append(h)
    y = np.stack(ys[::-1] if reverse else ys, axis=1)
    return y, h, c


def rand_weights(kind, I, H, rng, reset_after=True, bias=True):
    G = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}[kind]
    k = rng.uniform(-.5, .5, (I, G * H))
    r = rng.uniform(-.5, .5, (H, G * H))
    if not bias:
        return k, r, None
    b = rng.uniform(-.5, .5, (2, G * H) if kind == "GRU" and reset_after else (G * H,))
    return k, r, b


CASES = [("LSTM", {}), ("GRU", dict(reset_after=True)), ("GRU", dict(reset_after=False)),
         ("SimpleRNN", {}), ("SimpleRNN", dict(activation="relu"))]


@pytest.mark.parametrize("kind,kw", CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_weights_match_keras_equations(kind, kw, bias):
    rng = np.random.default_rng(0)
    I, H = 4, 5
    x = rng.standard_normal((3, 6, I))
    ra = kw.get("reset_after", True)
    k, r, b = rand_weights(kind, I, H, rng, ra, bias)
    layer = fr.from_keras_weights(kind, k, r, b, dtype="float64", **kw)
    assert layer.batch_first and layer.dtype == np.float64
    y, st = layer(x)
    ry, rh, rc = keras_numpy(kind, x, k, r, b, ra, kw.get("activation", "tanh"))
    np.testing.assert_allclose(y, ry, rtol=1e-12, atol=1e-14)
    hn = st[0] if kind == "LSTM" else st
    np.testing.assert_allclose(hn[0], rh, rtol=1e-12, atol=1e-14)
    if kind == "LSTM":
        np.testing.assert_allclose(st[1][0], rc, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind,kw", CASES[:3])
def test_weights_bidirectional(kind, kw):
    rng = np.random.default_rng(1)
    I, H = 3, 4
    x = rng.standard_normal((2, 5, I))
    ra = kw.get("reset_after", True)
    fw, bw = rand_weights(kind, I, H, rng, ra), rand_weights(kind, I, H, rng, ra)
    layer = fr.from_keras_weights(kind, *fw, backward=bw, dtype="float64", **kw)
    y, _ = layer(x)
    yf = keras_numpy(kind, x, *fw, ra)[0]
    yb = keras_numpy(kind, x, *bw, ra, reverse=True)[0]
    np.testing.assert_allclose(y, np.concatenate([yf, yb], axis=2), rtol=1e-12, atol=1e-14)


def test_weights_errors():
    rng = np.random.default_rng(0)
    k, r, b = rand_weights("LSTM", 3, 4, rng)
    with pytest.raises(ValueError, match="kind"):
        fr.from_keras_weights("ConvLSTM", k, r, b)
    with pytest.raises(ValueError, match="recurrent_kernel"):
        fr.from_keras_weights("GRU", k, r, b)
    with pytest.raises(ValueError, match="kernel"):
        fr.from_keras_weights("LSTM", k[:, :8], r, b)
    with pytest.raises(ValueError, match="bias"):
        fr.from_keras_weights("LSTM", k, r, b[:5])
    kg, rg, bg = rand_weights("GRU", 3, 4, rng, reset_after=True)
    with pytest.raises(ValueError, match="reset_after"):
        fr.from_keras_weights("GRU", kg, rg, bg, reset_after=False)
    with pytest.raises(NotImplementedError, match="activation"):
        fr.from_keras_weights("LSTM", k, r, b, activation="selu")
    with pytest.raises(NotImplementedError, match="recurrent_activation"):
        fr.from_keras_weights("GRU", kg, rg, bg, recurrent_activation="gelu")
    with pytest.raises(TypeError, match="kernel"):
        fr.from_keras_weights("LSTM", None, r, b)
    with pytest.raises(ValueError, match="backward"):
        fr.from_keras_weights("LSTM", k, r, b, backward=(k, r))


# ---- 2. real Keras ------------------------------------------------------------------

def keras_mod():
    keras = pytest.importorskip("keras")
    return keras


def to_np(keras, v):
    return keras.ops.convert_to_numpy(v)


def randomize(layer, rng):
    """Keras initialises biases to 0: give every weight random values."""
    layer.set_weights([rng.uniform(-.6, .6, w.shape).astype(w.dtype) for w in layer.get_weights()])


LIVE = [("LSTM", {}), ("GRU", {}), ("GRU", dict(reset_after=False)), ("SimpleRNN", {}),
        ("SimpleRNN", dict(activation="relu")), ("LSTM", dict(use_bias=False)),
        ("GRU", dict(use_bias=False, reset_after=True))]


@pytest.mark.parametrize("kind,kw", LIVE)
def test_live_layers(kind, kw):
    keras = keras_mod()
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 7, 4)).astype(np.float32)
    kl = getattr(keras.layers, kind)(5, return_sequences=True, return_state=True, **kw)
    kl(x)
    randomize(kl, rng)
    outs = [to_np(keras, o) for o in kl(x)]
    layer = fr.from_keras(kl)
    assert layer.batch_first and layer.keras_config["return_sequences"]
    y, st = layer(x)
    close(y, outs[0], "sequence")
    if kind == "LSTM":
        close(st[0][0], outs[1], "h")
        close(st[1][0], outs[2], "c")
    else:
        close(st[0], outs[1], "h")


@pytest.mark.parametrize("kind,kw", LIVE[:4])
def test_live_bidirectional(kind, kw):
    keras = keras_mod()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 6, 3)).astype(np.float32)
    kl = keras.layers.Bidirectional(getattr(keras.layers, kind)(4, return_sequences=True, **kw))
    kl(x)
    randomize(kl, rng)
    want = to_np(keras, kl(x))
    layer = fr.from_keras(kl)
    assert layer.bidirectional
    close(layer(x)[0], want)


def _stacked_model(keras):
    return keras.Sequential([
        keras.Input((6, 4)),
        keras.layers.LSTM(5, return_sequences=True),
        keras.layers.Bidirectional(keras.layers.GRU(3, reset_after=False, return_sequences=True)),
        keras.layers.SimpleRNN(4, return_sequences=True),
        keras.layers.GRU(4, return_sequences=True),
        keras.layers.Dropout(0.3),
        keras.layers.LSTM(3),
    ])


def test_saved_keras_file_of_stacked_layers(tmp_path):
    keras = keras_mod()
    pytest.importorskip("h5py")
    rng = np.random.default_rng(4)
    model = _stacked_model(keras)
    for l in model.layers:
        if l.get_weights():
            randomize(l, rng)
    path = str(tmp_path / "stack.keras")
    model.save(path)
    x = rng.standard_normal((3, 6, 4)).astype(np.float32)
    want = to_np(keras, model(x))
    layers = fr.from_keras(path)
    assert [type(l).__name__ for l in layers] == ["LSTM", "GRU", "RNN", "GRU", "LSTM"]
    assert layers[1].bidirectional and not layers[1].linear_before_reset
    assert layers[-1].keras_config == {"name": model.layers[-1].name,
                                       "return_sequences": False, "return_state": False,
                                       "go_backwards": False, "zero_output_for_mask": False,
                                       "masked": False}
    assert layers[1].keras_config["merge_mode"] == "concat"
    h = x
    for l in layers:
        h, _ = l(h)
    close(h[:, -1], want)
    # the live model gives the same layers
    for a, b in zip(layers, fr.from_keras(model)):
        for k in a.params:
            np.testing.assert_array_equal(a.params[k], b.params[k])


def test_saved_functional_model_and_recurrent_only(tmp_path):
    keras = keras_mod()
    pytest.importorskip("h5py")
    rng = np.random.default_rng(5)
    inp = keras.Input((5,), dtype="int32")
    e = keras.layers.Embedding(20, 4)(inp)
    a = keras.layers.LSTM(3, return_sequences=True)(e)
    b = keras.layers.LSTM(2)(a)
    out = keras.layers.Dense(2)(b)
    model = keras.Model(inp, out)
    for l in model.layers:
        if l.get_weights():
            randomize(l, rng)
    path = str(tmp_path / "func.keras")
    model.save(path)
    with pytest.raises(NotImplementedError, match="recurrent_only"):
        fr.from_keras(path)
    layers = fr.from_keras(path, recurrent_only=True)
    assert len(layers) == 2
    ids = rng.integers(0, 20, (2, 5))
    emb = model.layers[1].get_weights()[0][ids]
    y, _ = layers[0](emb)
    y, (hn, _) = layers[1](y)
    want = to_np(keras, model.layers[2](emb))
    close(layers[0](emb)[0], want)
    close(hn[0], to_np(keras, model.layers[3](model.layers[2](emb))))


def test_saved_file_read_without_keras_and_h5py_hint(tmp_path):
    keras = keras_mod()
    pytest.importorskip("h5py")
    model = keras.Sequential([keras.Input((4, 3)), keras.layers.GRU(2)])
    path = str(tmp_path / "g.keras")
    model.save(path)
    code = ("import sys; sys.modules['keras'] = None\n"
            "import fastrnn as fr\n"
            f"ls = fr.from_keras({path!r})\n"
            "print('LOADED', len(ls), 'keras' in sys.modules and sys.modules['keras'] is not None)\n"
            "sys.modules['h5py'] = None\n"
            "try:\n    fr.from_keras(" + repr(path) + ")\n"
            "except ImportError as e:\n    print('IMPORTERROR', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert "LOADED 1 False" in out.stdout, out.stdout + out.stderr
    assert "IMPORTERROR" in out.stdout and "pip install h5py" in out.stdout, out.stdout


@pytest.mark.parametrize("make,match", [
    (lambda k: k.layers.LSTM(3, activation="selu"), "activation"),
    (lambda k: k.layers.GRU(3, recurrent_activation="swish"), "recurrent_activation"),
])
def test_live_layers_that_do_not_map(make, match):
    keras = keras_mod()
    kl = make(keras)
    kl(np.zeros((1, 2, 3), np.float32))
    with pytest.raises(NotImplementedError, match=match):
        fr.from_keras(kl)


def test_bad_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        fr.from_keras(str(tmp_path / "missing.keras"))
    with pytest.raises(TypeError, match="Keras"):
        fr.from_keras(object())
    pytest.importorskip("h5py")
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="zip"):
        fr.from_keras(str(junk))
    empty = tmp_path / "empty.keras"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("metadata.json", "{}")
    with pytest.raises(ValueError, match="config.json"):
        fr.from_keras(str(empty))
    badh5 = tmp_path / "badh5.keras"
    with zipfile.ZipFile(badh5, "w") as z:
        z.writestr("config.json", '{"class_name": "Sequential", "config": {"layers": []}}')
        z.writestr("model.weights.h5", b"garbage")
    with pytest.raises(ValueError, match="HDF5"):
        fr.from_keras(str(badh5))


def test_truncated_keras_file(tmp_path):
    keras = keras_mod()
    pytest.importorskip("h5py")
    model = keras.Sequential([keras.Input((4, 3)), keras.layers.LSTM(2)])
    path = tmp_path / "m.keras"
    model.save(str(path))
    data = path.read_bytes()
    cut = tmp_path / "cut.keras"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError):
        fr.from_keras(str(cut))
