"""Numerical edge behaviour, as documented in docs/RELIABILITY.md:

- saturation: at extreme pre-activations (|v| >= 1e4, float32 max, inf) the
  gates are exactly 0 or 1 and tanh exactly +-1 in every kernel (float32 AVX2
  path, portable path, float64), so states are exact and the gate derivatives
  exactly 0 (finite gradients, no inf*0);
- NaN propagates: a NaN in one sequence's input or initial state makes that
  sequence's outputs NaN from that step on and leaves the other sequences
  exact (no flag rejects it; check np.isfinite yourself if you need to);
  relu(NaN) = NaN as in torch (regression: the portable path gave 0);
- overflow in training: Sequential.fit skips an update whose clipped
  gradient norm is not finite (model.skipped_steps counts them), so one bad
  batch cannot poison the weights; a finite norm is clipped to clip_norm.
"""
import numpy as np
import pytest

import fastrnn as fr
from fastrnn.backends.cpu import _ext

PATHS = [("float32", True), ("float32", False), ("float64", False)]

# hidden sizes: under one block of 8 units per thread; and 43, where the
# fast path's gate math takes two blocks side by side, one block and a
# padded tail (at 1 and 2 threads)
UNITS = [10, 43]


@pytest.fixture
def path(request):
    dtype, fast = request.param
    on = _ext.set_fast_path(fast)
    if fast and not on:
        pytest.skip("no AVX2/FMA on this CPU")
    yield dtype
    _ext.set_fast_path(True)


def _set(layer, w_ih, w_hh=0.0, bias=0.0):
    """Every weight of layer 0 set to a constant per gate block (the input is
    then chosen so that each pre-activation is +-v)."""
    G = layer.params["weight_ih_l0"].shape[0] // layer.hidden_size
    w = np.repeat(np.asarray(w_ih, float).reshape(G, 1), layer.hidden_size, axis=0)
    layer.params["weight_ih_l0"][...] = w
    layer.params["weight_hh_l0"][...] = w_hh
    for k in ("bias_ih_l0", "bias_hh_l0"):
        layer.params[k][...] = bias


@pytest.mark.parametrize("path", PATHS, indirect=True, ids=lambda p: f"{p[0]}-{'fast' if p[1] else 'portable'}")
@pytest.mark.parametrize("v", [1e4, 3.0e38, np.inf])
@pytest.mark.parametrize("H", UNITS)
def test_lstm_gates_saturate_exactly(path, v, H):
    """i = f = o = sigmoid(+v) = 1 and g = tanh(+-v) = +-1 exactly: c counts
    the steps exactly (c_t = c_{t-1} + g); sigmoid(-v) = 0 gives c = h = 0."""
    T, B = 5, 3
    lstm = fr.LSTM(1, H, dtype=path, seed=0)
    x = np.full((T, B, 1), v, path)
    for sign in (1.0, -1.0):
        _set(lstm, [1, 1, sign, 1])  # pre-activations v, v, +-v, v
        y, (h, c) = lstm(x)
        np.testing.assert_array_equal(c, np.full((1, B, H), sign * T, path))
        assert np.all(np.isfinite(y)) and np.all(np.sign(y) == sign)
        yf, (hf, cf) = lstm.forward(x)
        np.testing.assert_array_equal(cf, c)
        dx, _ = lstm.backward(np.ones_like(yf))
        # every gate saturated: its derivative is exactly 0, so is dx (and
        # dW = dG^T x, unless x is inf: 0 * inf is NaN)
        assert np.all(dx == 0)
        if np.isfinite(v):
            assert all(np.all(g == 0) for k, g in lstm.grads.items() if "weight_ih" in k)
        lstm.zero_grad()
    _set(lstm, [-1, -1, 1, -1])  # i = 0: nothing enters, c stays 0
    y, (h, c) = lstm(x)
    assert np.all(c == 0) and np.all(h == 0) and np.all(y == 0)


@pytest.mark.parametrize("path", PATHS, indirect=True, ids=lambda p: f"{p[0]}-{'fast' if p[1] else 'portable'}")
@pytest.mark.parametrize("v", [1e4, 3.0e38, np.inf])
@pytest.mark.parametrize("H", UNITS)
def test_gru_and_rnn_saturate_exactly(path, v, H):
    T, B = 4, 2
    rng = np.random.default_rng(0)
    h0 = rng.uniform(-0.9, 0.9, size=(1, B, H)).astype(path)
    x = np.full((T, B, 1), v, path)
    gru = fr.GRU(1, H, dtype=path, seed=0)
    _set(gru, [1, -1, 1])        # z = 0, n = tanh(v) = 1: h' = 1 exactly
    y, h = gru(x, h0)
    assert np.all(y == 1) and np.all(h == 1)
    _set(gru, [1, 1, -1])        # z = 1: h' = h exactly, whatever n is
    y, h = gru(x, h0)
    np.testing.assert_array_equal(h, h0)
    yf, _ = gru.forward(x, h0)
    dx, dh0 = gru.backward(np.ones_like(yf))
    assert np.all(dx == 0) and np.all(np.isfinite(dh0))
    rnn = fr.RNN(1, H, dtype=path, seed=0)
    for sign in (1.0, -1.0):
        _set(rnn, [sign])
        y, h = rnn(x)
        assert np.all(y == sign) and np.all(h == sign)


@pytest.mark.parametrize("path", PATHS, indirect=True, ids=lambda p: f"{p[0]}-{'fast' if p[1] else 'portable'}")
@pytest.mark.parametrize("cell", ["LSTM", "GRU", "RNN_TANH", "RNN_RELU"])
@pytest.mark.parametrize("H", UNITS)
def test_nan_propagates_within_its_sequence(path, cell, H):
    """NaN in x[t, b] makes y[t:, b] NaN and h_n[:, b] NaN (forward direction);
    the other sequences are untouched, bit for bit; NaN in h0 likewise."""
    T, B, I = 6, 4, 3
    if cell.startswith("RNN"):
        layer = fr.RNN(I, H, nonlinearity=cell[4:].lower(), dtype=path, seed=1)
    else:
        layer = getattr(fr, cell)(I, H, dtype=path, seed=1)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((T, B, I)).astype(path)
    clean, _ = layer(x)
    x[2, 1, 0] = np.nan
    y, st = layer(x)
    h = st[0] if cell == "LSTM" else st
    assert np.all(np.isnan(y[2:, 1])) and np.all(np.isnan(h[:, 1]))
    keep = [0, 2, 3]
    np.testing.assert_array_equal(y[:, keep], clean[:, keep])
    np.testing.assert_array_equal(y[:2, 1], clean[:2, 1])
    h0 = np.zeros((1, B, H), path)
    h0[0, 3, 4] = np.nan
    state = (h0, np.zeros_like(h0)) if cell == "LSTM" else h0
    y, _ = layer(rng.standard_normal((T, B, I)).astype(path), state)
    assert np.all(np.isfinite(y[:, :3])) and np.all(np.isnan(y[:, 3]))


def test_nan_in_weights_makes_outputs_nan():
    lstm = fr.LSTM(2, 4, seed=0)
    lstm.params["weight_hh_l0"][0, 0] = np.nan
    y, _ = lstm(np.ones((3, 2, 2), np.float32))
    assert np.isnan(y).any() and not np.isinf(y).any()


@pytest.mark.parametrize("act", ["sigmoid", "tanh"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_activation_layer_saturates_exactly(act, dtype):
    big = np.finfo(dtype).max
    x = np.array([[-np.inf, -big, -1e4, 0.0, 1e4, big, np.inf]], dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = fr.Activation(act, dtype=dtype)(x)
    lo = 0.0 if act == "sigmoid" else -1.0
    np.testing.assert_array_equal(y[0, [0, 1, 2]], lo)
    np.testing.assert_array_equal(y[0, [4, 5, 6]], 1.0)


def _exploding_model(clip):
    m = fr.Sequential([fr.RNN(3, 8, nonlinearity="relu", batch_first=True),
                       fr.LastStep(), fr.Dense(8, 1)], seed=0)
    m.compile(loss="mse", optimizer=fr.optim.SGD(lr=0.1), clip_norm=clip)
    return m


def test_clip_norm_skips_non_finite_updates():
    """Inputs large enough that the loss and gradients overflow to inf/NaN in
    float32: every such update is skipped, the weights stay finite and equal
    to where they were, and the count is reported."""
    m = _exploding_model(1.0)
    before = [p.copy() for _, p, _ in m.parameters()]
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((8, 5, 3)) * 1e30).astype(np.float32)
    y = rng.standard_normal((8, 1)).astype(np.float32)
    with np.errstate(all="ignore"):
        h = m.fit(X, y, epochs=2, batch_size=4, verbose=0, seed=0)
    assert m.skipped_steps == 4
    assert not np.isfinite(h.history["loss"][0])
    for (n, p, _), b in zip(m.parameters(), before):
        np.testing.assert_array_equal(p, b, err_msg=n)
    # and the model still trains on sane data afterwards
    h = m.fit(X * np.float32(1e-30), y, epochs=1, batch_size=4, verbose=0, seed=0)
    assert np.isfinite(h.history["loss"][0]) and m.skipped_steps == 4


def test_clip_norm_bounds_each_update():
    """Large but finite gradients: with plain SGD each update moves the
    weights by at most lr * clip_norm (global norm)."""
    m = _exploding_model(0.5)
    rng = np.random.default_rng(1)
    X = (rng.standard_normal((4, 5, 3)) * 50).astype(np.float32)
    y = (rng.standard_normal((4, 1)) * 1e3).astype(np.float32)
    for _ in range(3):
        before = [p.astype(np.float64) for _, p, _ in m.parameters()]
        m.fit(X, y, epochs=1, batch_size=4, verbose=0, shuffle=False)
        step = np.sqrt(sum(np.sum((p - b) ** 2) for (_, p, _), b in zip(m.parameters(), before)))
        assert step <= 0.1 * 0.5 * (1 + 1e-5)
        assert all(np.all(np.isfinite(p)) for _, p, _ in m.parameters())
    assert getattr(m, "skipped_steps", 0) == 0
