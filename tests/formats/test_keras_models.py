"""Real Keras 3 models (KERAS_BACKEND=torch) converted with
fr.from_keras(..., sequential=True), live and from .keras files, against
Keras's own model.predict (rtol 1e-5): Bidirectional in every merge mode,
go_backwards, softmax/sigmoid heads, stacks; the small layers that carry
those semantics (fastrnn/formats/keras_layers.py) against NumPy and float64
central differences; and what a lone layer cannot apply warns."""
import os
import warnings

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

import fastrnn as fr  # noqa: E402
from fastrnn.formats.keras import (KerasBidirectionalLast, KerasEmbedding,  # noqa: E402
                                   KerasMasking, KerasMerge, KerasReverse, KerasSequential,
                                   KerasSoftmax)

RTOL, ATOL = 1e-5, 1e-6
KINDS = ["LSTM", "GRU", "SimpleRNN"]
MERGES = ["concat", "sum", "ave", "mul", None]


def randomize(model, rng):
    """Keras initialises biases to 0: every weight random."""
    for layer in model.layers:
        ws = layer.get_weights()
        if ws:
            layer.set_weights([rng.uniform(-.6, .6, w.shape).astype(w.dtype) for w in ws])


def close(got, want, what=""):
    if isinstance(want, (list, tuple)):
        assert isinstance(got, tuple) and len(got) == len(want), what
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL, err_msg=what)
    else:
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=what)


def both(km, tmp_path, name="m"):
    """The model converted live and from its saved .keras file."""
    path = str(tmp_path / f"{name}.keras")
    km.save(path)
    return fr.from_keras(km, sequential=True), fr.from_keras(path, sequential=True)


def check(km, x, tmp_path, name="m"):
    want = km.predict(x, verbose=0)
    live, saved = both(km, tmp_path, name)
    for model, how in ((live, "live"), (saved, "file")):
        close(model(x), want, f"{name} {how} call")
        close(model.predict(x, batch_size=2), want, f"{name} {how} predict")
    return live


# ---- (a) Bidirectional, every merge mode -------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("merge", MERGES)
def test_bidirectional_merge_modes(kind, merge, tmp_path):
    rng = np.random.default_rng(abs(hash((kind, str(merge)))) % 2**32)
    for B, T, I, H, seq in [(1, 1, 1, 1, True), (3, 5, 3, 2, False), (2, 7, 5, 3, True),
                            (1, 5, 2, 1, False)]:
        km = keras.Sequential([keras.Input((T, I)), keras.layers.Bidirectional(
            getattr(keras.layers, kind)(H, return_sequences=seq), merge_mode=merge)])
        randomize(km, rng)
        x = rng.standard_normal((B, T, I)).astype(np.float32)
        model = check(km, x, tmp_path, f"{kind}-{merge}-{seq}")
        names = [type(l).__name__ for l in model.layers]
        assert names[1:] == ([] if seq else ["KerasBidirectionalLast"]) + \
            ([] if merge == "concat" else ["KerasMerge"])
        assert isinstance(model, KerasSequential) == (merge is None)


def test_stacked_bidirectional_with_heads_from_file(tmp_path):
    rng = np.random.default_rng(1)
    km = keras.Sequential([
        keras.Input((None,), dtype="int32"), keras.layers.Embedding(13, 5),
        keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True),
                                   merge_mode="ave"),
        keras.layers.Bidirectional(keras.layers.GRU(2, return_sequences=True, reset_after=False),
                                   merge_mode="mul"),
        keras.layers.Dropout(0.2),
        keras.layers.Bidirectional(keras.layers.SimpleRNN(7), merge_mode="sum"),
        keras.layers.Dense(5, activation="relu"), keras.layers.Dense(3, activation="softmax")])
    randomize(km, rng)
    x = rng.integers(0, 13, (4, 6))
    model = check(km, x, tmp_path, "stack")
    assert np.allclose(model(x).sum(axis=1), 1, atol=1e-6)


def test_functional_chain_from_file_and_branches_refused(tmp_path):
    rng = np.random.default_rng(2)
    inp = keras.Input((5, 3))
    h = keras.layers.Bidirectional(keras.layers.GRU(4, return_sequences=True),
                                   merge_mode="sum")(inp)
    out = keras.layers.Dense(2, activation="sigmoid")(h)
    km = keras.Model(inp, out)
    randomize(km, rng)
    check(km, rng.standard_normal((2, 5, 3)).astype(np.float32), tmp_path, "func")
    # every layer maps, but the GRU reads the LSTM, not the Dense before it
    a = keras.layers.LSTM(3, return_sequences=True)(inp)
    b = keras.layers.Dense(3)(a)
    c = keras.layers.GRU(3, return_sequences=True)(a)
    branched = keras.Model(inp, [b, c])
    path = str(tmp_path / "branched.keras")
    branched.save(path)
    for source in (branched, path):
        with pytest.raises(NotImplementedError, match="chain"):
            fr.from_keras(source, sequential=True)


# ---- (b) go_backwards ---------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_go_backwards(kind, tmp_path):
    rng = np.random.default_rng(3)
    for B, T, I, H, seq in [(1, 1, 1, 1, True), (3, 7, 2, 5, True), (2, 5, 3, 2, False)]:
        km = keras.Sequential([keras.Input((T, I)), getattr(keras.layers, kind)(
            H, go_backwards=True, return_sequences=seq)])
        randomize(km, rng)
        x = rng.standard_normal((B, T, I)).astype(np.float32)
        model = check(km, x, tmp_path, f"gb-{kind}-{seq}")
        assert type(model.layers[0]).__name__ == "KerasReverse"


@pytest.mark.parametrize("kind", KINDS)
def test_go_backwards_lone_layer_states_and_warning(kind):
    rng = np.random.default_rng(4)
    kl = getattr(keras.layers, kind)(3, go_backwards=True, return_sequences=True,
                                     return_state=True)
    x = rng.standard_normal((2, 6, 4)).astype(np.float32)
    kl(x)
    kl.set_weights([rng.uniform(-.6, .6, w.shape).astype(w.dtype) for w in kl.get_weights()])
    outs = [keras.ops.convert_to_numpy(o) for o in kl(x)]
    with pytest.warns(UserWarning, match="go_backwards"):
        layer = fr.from_keras(kl)
    assert layer.keras_config["go_backwards"]
    y, st = layer(x[:, ::-1])       # the layer reads the reversed input, as the warning says
    close(y, outs[0], "outputs in the reversed order")
    states = st if kind == "LSTM" else (st,)
    for s, want in zip(states, outs[1:]):
        close(s[0], want, "final state")


def test_lone_bidirectional_merge_warns():
    kl = keras.layers.Bidirectional(keras.layers.LSTM(2, return_sequences=True),
                                    merge_mode="mul")
    x = np.random.default_rng(5).standard_normal((1, 3, 2)).astype(np.float32)
    kl(x)
    with pytest.warns(UserWarning, match="merge_mode='mul'"):
        layer = fr.from_keras(kl)
    y, _ = layer(x)
    close(KerasMerge("mul")(y), keras.ops.convert_to_numpy(kl(x)))
    concat = keras.layers.Bidirectional(keras.layers.GRU(2, return_sequences=True))
    concat(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)   # concat applies fully: no warning
        fr.from_keras(concat)


# ---- (d) heads -------------------------------------------------------------------------

@pytest.mark.parametrize("head", ["dense_softmax", "dense_sigmoid", "activation_softmax",
                                  "softmax_layer", "activation_sigmoid"])
def test_heads(head, tmp_path):
    rng = np.random.default_rng(6)
    layers = {
        "dense_softmax": [keras.layers.Dense(7, activation="softmax")],
        "dense_sigmoid": [keras.layers.Dense(1, activation="sigmoid")],
        "activation_softmax": [keras.layers.Dense(3), keras.layers.Activation("softmax")],
        "softmax_layer": [keras.layers.Dense(2), keras.layers.Softmax()],
        "activation_sigmoid": [keras.layers.Dense(3), keras.layers.Activation("sigmoid")],
    }[head]
    for seq in (True, False):
        km = keras.Sequential([keras.Input((None, 3)),
                               keras.layers.GRU(5, return_sequences=seq)] + layers)
        randomize(km, rng)
        x = rng.standard_normal((3, 4, 3)).astype(np.float32) * 3
        check(km, x, tmp_path, f"{head}-{seq}")


# ---- the small layers: values and float64 gradients ------------------------------------

def test_merge_layers_values_and_gradients():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 5, 8))
    f, b = x[..., :4], x[..., 4:]
    for mode, want in (("sum", f + b), ("ave", (f + b) / 2), ("mul", f * b)):
        layer = KerasMerge(mode, dtype="float64")
        np.testing.assert_allclose(layer(x), want, rtol=1e-15)
        np.testing.assert_allclose(layer(x[:, 0]), want[:, 0], rtol=1e-15)
        fr.check_gradients(layer, x, atol=1e-9, rtol=1e-7)
    with pytest.raises(ValueError, match="mode"):
        KerasMerge("concat")
    with pytest.raises(ValueError, match="2H"):
        KerasMerge("sum")(np.zeros((2, 3, 5), np.float32))
    with pytest.raises(RuntimeError, match="KerasSequential"):
        KerasMerge(None)(x)


def test_reverse_softmax_last_values_and_gradients():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 5, 4))
    np.testing.assert_array_equal(KerasReverse("float64")(x), x[:, ::-1])
    fr.check_gradients(KerasReverse("float64"), x, atol=1e-9, rtol=1e-7)
    with pytest.raises(ValueError, match="whole"):
        KerasReverse().step(x[:, 0])
    e = np.exp(x - x.max(-1, keepdims=True))
    np.testing.assert_allclose(KerasSoftmax("float64")(x), e / e.sum(-1, keepdims=True),
                               rtol=1e-14)
    big = np.array([[1e4, 0.0, -1e4]], np.float32)
    assert np.all(np.isfinite(KerasSoftmax()(big)))
    fr.check_gradients(KerasSoftmax("float64"), x, atol=1e-9, rtol=1e-7)
    last = KerasBidirectionalLast("float64")
    lens = np.array([5, 1, 3])
    y = last(x, lengths=lens)
    np.testing.assert_array_equal(y[:, :2], x[np.arange(3), lens - 1, :2])
    np.testing.assert_array_equal(y[:, 2:], x[:, 0, 2:])
    fr.check_gradients(last, x, lengths=lens, atol=1e-9, rtol=1e-7)
    mask = np.array([[0, 1, 1, 0, 0], [0, 0, 0, 0, 0], [1, 0, 1, 0, 1]], bool)
    y = last._run(x, None, False, mask=mask)
    np.testing.assert_array_equal(y[0], np.r_[x[0, 2, :2], x[0, 1, 2:]])
    np.testing.assert_array_equal(y[1], 0)
    np.testing.assert_array_equal(y[2], np.r_[x[2, 4, :2], x[2, 0, 2:]])


def test_mask_layers_refuse_a_plain_sequential_and_save_load(tmp_path):
    emb = KerasEmbedding(6, 2, seed=0)
    ids = np.array([[1, 2, 0], [0, 3, 4]])
    np.testing.assert_array_equal(emb.mask_of(ids), ids != 0)
    masking = KerasMasking(0.5)
    # values and gradient of Masking (as Keras: where(mask, x, 0), so a masked
    # step passes no gradient)
    x = np.random.default_rng(15).standard_normal((2, 4, 3))
    x[0, 1] = 0.5
    x[1, 3] = 0.5
    m64 = KerasMasking(0.5, dtype="float64")
    y, mask = m64._keras_apply(x, None, True)
    np.testing.assert_array_equal(mask, [[1, 0, 1, 1], [1, 1, 1, 0]])
    np.testing.assert_array_equal(y, np.where(mask[..., None], x, 0))
    dy = np.random.default_rng(16).standard_normal(y.shape)
    np.testing.assert_array_equal(m64.apply_backward(dy), np.where(mask[..., None], dy, 0))
    with pytest.raises(RuntimeError, match="KerasSequential"):
        fr.Sequential([emb])(ids)
    with pytest.raises(RuntimeError, match="KerasSequential"):
        fr.Sequential([masking])(np.zeros((1, 2, 3), np.float32))
    model = KerasSequential([emb, fr.Dense(2, 3, seed=1), KerasSoftmax()])
    path = str(tmp_path / "m.fastrnn")
    fr.save(model, path)
    loaded = fr.load(path)
    assert [type(l).__name__ for l in loaded.layers] == ["KerasEmbedding", "Dense",
                                                        "KerasSoftmax"]
    with pytest.raises(RuntimeError, match="KerasSequential"):
        loaded(ids)
    np.testing.assert_array_equal(KerasSequential(loaded.layers)(ids), model(ids))
    with pytest.raises(ValueError, match="whole sequences"):
        model.step(np.array([1]))


# ---- (c) Keras activations through the layers' activations= -------------------------

ACTS = ["sigmoid", "tanh", "relu", "linear", "hard_sigmoid", "elu", "softsign", "softplus",
        "leaky_relu"]


def close_scaled(got, want, what=""):
    """rtol 1e-5 of the output's scale: unbounded activations (linear, relu)
    give outputs far from 1, where float32 rounding scales with them."""
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * scale, err_msg=what)


@pytest.mark.parametrize("kind", KINDS)
def test_keras_activations(kind, tmp_path):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 5, 2)).astype(np.float32)
    pairs = [(a, "sigmoid") for a in ACTS] + [("tanh", r) for r in ACTS] + \
        [("softsign", "hard_sigmoid"), ("elu", "linear")]
    if kind == "SimpleRNN":
        pairs = [(a, None) for a in ACTS]
    for i, (act, ract) in enumerate(pairs):
        kw = {"activation": act} if ract is None else {"activation": act,
                                                       "recurrent_activation": ract}
        inner = getattr(keras.layers, kind)(3 if i % 2 else 1, return_sequences=True, **kw)
        km = keras.Sequential([keras.Input((5, 2)), keras.layers.Bidirectional(inner)
                               if i % 3 == 0 else inner])
        randomize(km, rng)
        want = km.predict(x, verbose=0)
        live, saved = both(km, tmp_path, f"act{i}")
        for model in (live, saved):
            close_scaled(model(x), want, f"{kind} {act} {ract}")
        layer = live.layers[0]
        default = act in ("tanh", "relu" if kind == "SimpleRNN" else "tanh") and \
            ract in (None, "sigmoid")
        assert (layer.activations is None) == default, (act, ract)


def test_keras_activations_float64_equations():
    """from_keras_weights with hard_sigmoid gates and a linear cell against a
    float64 NumPy transcription of Keras's LSTM (1e-9)."""
    rng = np.random.default_rng(10)
    I, H = 3, 2
    k, r, b = (rng.uniform(-.5, .5, s) for s in ((I, 4 * H), (H, 4 * H), (4 * H,)))
    x = rng.standard_normal((2, 4, I))
    layer = fr.from_keras_weights("LSTM", k, r, b, activation="linear",
                                  recurrent_activation="hard_sigmoid", dtype="float64")
    hs = lambda v: np.clip(v / 6 + 0.5, 0, 1)   # noqa: E731 - Keras 3's relu6(x+3)/6
    h, c, ys = np.zeros((2, H)), np.zeros((2, H)), []
    for t in range(4):
        z = x[:, t] @ k + h @ r + b
        i, f, g, o = (z[:, j * H:(j + 1) * H] for j in range(4))
        c = hs(f) * c + hs(i) * g
        h = hs(o) * c
        ys.append(h)
    np.testing.assert_allclose(layer(x)[0], np.stack(ys, 1), rtol=1e-9, atol=1e-12)


# ---- (d) masks --------------------------------------------------------------------------

IDS = np.array([[3, 4, 5, 0, 0, 0],     # right padding
                [0, 0, 1, 2, 3, 4],     # left padding
                [1, 0, 2, 0, 3, 0],     # holes
                [0, 0, 0, 0, 0, 0],     # nothing valid
                [5, 4, 3, 2, 1, 6]])    # full


def masked_cases(kind):
    rec = lambda **kw: getattr(keras.layers, kind)(3, **kw)   # noqa: E731
    return {
        "carry-seq-dense": [rec(return_sequences=True), keras.layers.Dense(2)],
        "last": [rec(), keras.layers.Dense(2, activation="sigmoid")],
        "zero-output": [rec(return_sequences=True, zero_output_for_mask=True)],
        "zero-output-last": [rec(zero_output_for_mask=True)],
        "backwards-seq": [rec(return_sequences=True, go_backwards=True)],
        "backwards-last": [rec(go_backwards=True)],
        "bidi-seq": [keras.layers.Bidirectional(rec(return_sequences=True))],
        "bidi-last-ave": [keras.layers.Bidirectional(rec(), merge_mode="ave")],
        "bidi-none": [keras.layers.Bidirectional(rec(return_sequences=True),
                                                 merge_mode=None)],
        "stack-softmax": [rec(return_sequences=True), rec(return_sequences=True,
                                                          activation="softsign"),
                          keras.layers.Dense(4, activation="softmax")],
    }


@pytest.mark.parametrize("kind", KINDS)
def test_embedding_mask_zero(kind, tmp_path):
    rng = np.random.default_rng(11)
    for name, layers in masked_cases(kind).items():
        km = keras.Sequential([keras.Input((None,), dtype="int32"),
                               keras.layers.Embedding(7, 4, mask_zero=True)] + layers)
        randomize(km, rng)
        model = check(km, IDS, tmp_path, f"{kind}-{name}")
        assert isinstance(model, KerasSequential)
        pads = [l.padding for l in model.layers if isinstance(l, fr.RNNBase)]
        if name in ("carry-seq-dense", "last", "backwards-seq", "backwards-last",
                    "stack-softmax"):
            assert set(pads) == {"carry"}, name
        else:
            assert set(pads) == {"zeros"}, name
        for B in (1, 2):   # batch 1 and a batch of right-padded rows (lengths)
            close(model(IDS[:B]), km.predict(IDS[:B], verbose=0), f"{name} B={B}")


def test_masking_layer_stacked(tmp_path):
    rng = np.random.default_rng(12)
    km = keras.Sequential([keras.Input((6, 2)), keras.layers.Masking(-1.0),
                           keras.layers.LSTM(3, return_sequences=True),
                           keras.layers.Bidirectional(keras.layers.GRU(2, return_sequences=True)),
                           keras.layers.SimpleRNN(5), keras.layers.Dense(3, activation="softmax")])
    randomize(km, rng)
    x = rng.standard_normal((4, 6, 2)).astype(np.float32)
    x[0, 4:] = -1
    x[1, :2] = -1
    x[2, 3] = -1
    x[3] = -1
    check(km, x, tmp_path, "masking")


def test_masked_model_trains_through_the_mask():
    """A KerasSequential's forward/backward runs the recurrent layers with the
    mask (holes, left padding, an empty row): its float32 training forward
    equals Keras's predict, and in float64 the gradients of the weights and
    of the embeddings equal central differences (1e-6 relative)."""
    rng = np.random.default_rng(13)
    km = keras.Sequential([keras.Input((None,), dtype="int32"),
                           keras.layers.Embedding(7, 3, mask_zero=True),
                           keras.layers.GRU(2, return_sequences=True), keras.layers.Dense(2)])
    randomize(km, rng)
    out = fr.from_keras(km, sequential=True).forward(IDS)
    close(out, km.predict(IDS, verbose=0))
    for kind in ("LSTM", "GRU"):
        model = KerasSequential([
            KerasEmbedding(7, 3, dtype="float64", seed=1),
            getattr(fr, kind)(3, 2, batch_first=True, padding="carry", dtype="float64",
                              seed=2),
            getattr(fr, kind)(2, 3, batch_first=True, bidirectional=True, dtype="float64",
                              seed=3),
            fr.Dense(6, 2, dtype="float64", seed=4)])
        w = rng.standard_normal((5, 6, 2))
        loss = lambda: float((model(IDS) * w).sum())   # noqa: E731
        model.zero_grad()
        out = model.forward(IDS)
        np.testing.assert_allclose(out, model(IDS), rtol=1e-12)
        model.backward(w)
        for layer, name in ((model.layers[1], "weight_hh_l0"), (model.layers[2], "weight_ih_l0"),
                            (model.layers[0], "weight")):
            p, g = layer.params[name], layer.grads[name]
            for idx in list(np.ndindex(p.shape))[:6]:
                keep = p[idx]
                p[idx] = keep + 1e-6
                up = loss()
                p[idx] = keep - 1e-6
                down = loss()
                p[idx] = keep
                np.testing.assert_allclose(g[idx], (up - down) / 2e-6, rtol=1e-6, atol=1e-8,
                                           err_msg=f"{kind} {name}{idx}")


def test_recurrent_only_masked_model_maps_the_mask(tmp_path):
    rng = np.random.default_rng(14)
    km = keras.Sequential([keras.Input((None,), dtype="int32"),
                           keras.layers.Embedding(7, 4, mask_zero=True),
                           keras.layers.LSTM(3, return_sequences=True),
                           keras.layers.GRU(2, return_sequences=True)])
    randomize(km, rng)
    path = str(tmp_path / "rec.keras")
    km.save(path)
    want = km.predict(IDS, verbose=0)
    emb = km.layers[0].get_weights()[0][IDS]
    mask = IDS != 0
    for source in (km, path):
        with pytest.warns(UserWarning, match="mask"):
            layers = fr.from_keras(source, recurrent_only=True)
        assert [l.padding for l in layers] == ["carry", "carry"]
        assert all(l.keras_config["masked"] for l in layers)
        h = emb
        for layer in layers:
            h, _ = layer(h, mask=mask)
        close(h, want, "recurrent layers given the mask")
