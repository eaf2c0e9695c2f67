"""Streaming (step), carried state, inter-layer dropout, seeds and init."""
import warnings

import numpy as np
import pytest

import fastrnn as fr
from conftest import helpers_ns

CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru")


def _tol(dtype):
    # step may run its GEMMs on B rows where the full call runs them on T*B
    # rows; allow a few ulps of difference but nothing more
    return dict(rtol=1e-5, atol=1e-6) if np.dtype(dtype) == np.float32 else dict(
        rtol=1e-12, atol=1e-13)


def _as_tuple(cell, st):
    if cell == "lstm":
        assert isinstance(st, tuple) and len(st) == 2
        return st
    return (st,)


def _copy_state(st):
    if st is None:
        return None
    if isinstance(st, tuple):
        return tuple(np.array(a, copy=True) for a in st)
    return np.array(st, copy=True)


# ---------------------------------------------------------------- step
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("B", [1, 4])
@pytest.mark.parametrize("num_layers", [1, 3])
@pytest.mark.parametrize("cell", CELLS)
def test_step_equals_full_call(helpers, cell, num_layers, B, dtype, rng):
    T, I, H = 7, 5, 6
    dt = np.dtype(dtype)
    layer = helpers.make_fr(cell, I, H, num_layers=num_layers, dtype=dtype, seed=3)
    x = rng.standard_normal((T, B, I)).astype(dt)
    y_full, st_full = layer(x)

    state = None
    ys, history = [], []
    for t in range(T):
        xt = x[t].copy()
        y_t, state = layer.step(xt, state)
        np.testing.assert_array_equal(xt, x[t])  # input untouched
        assert isinstance(y_t, np.ndarray) and y_t.shape == (B, H) and y_t.dtype == dt
        for a in _as_tuple(cell, state):
            assert a.shape == (num_layers, B, H) and a.dtype == dt
        ys.append(y_t)
        history.append((state, _copy_state(state)))
    np.testing.assert_allclose(np.stack(ys), y_full, **_tol(dt))
    for a, b in zip(_as_tuple(cell, state), _as_tuple(cell, st_full)):
        np.testing.assert_allclose(a, b, **_tol(dt))
    # a state handed back earlier is not overwritten by later steps
    for st, snap in history:
        for a, b in zip(_as_tuple(cell, st), _as_tuple(cell, snap)):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell", CELLS)
def test_step_with_initial_state(helpers, cell, dtype, rng):
    T, B, I, H, L = 5, 3, 4, 7, 2
    dt = np.dtype(dtype)
    layer = helpers.make_fr(cell, I, H, num_layers=L, dtype=dtype, seed=5)
    x = rng.standard_normal((T, B, I)).astype(dt)
    h0 = rng.standard_normal((L, B, H)).astype(dt)
    s0 = (h0, rng.standard_normal((L, B, H)).astype(dt)) if cell == "lstm" else h0
    s0_copy = _copy_state(s0)
    y_full, st_full = layer(x, s0)
    state, ys = s0, []
    for t in range(T):
        y_t, state = layer.step(x[t], state)
        ys.append(y_t)
    np.testing.assert_allclose(np.stack(ys), y_full, **_tol(dt))
    for a, b in zip(_as_tuple(cell, state), _as_tuple(cell, st_full)):
        np.testing.assert_allclose(a, b, **_tol(dt))
    for a, b in zip(_as_tuple(cell, s0), _as_tuple(cell, s0_copy)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cell", CELLS)
def test_step_batch_first_layer(helpers, cell, rng):
    """x_t is (B, input_size) whatever batch_first says."""
    T, B, I, H = 4, 3, 2, 5
    layer = helpers.make_fr(cell, I, H, num_layers=2, batch_first=True, dtype="float64", seed=1)
    x = rng.standard_normal((B, T, I))
    y_full, _ = layer(x)
    state, ys = None, []
    for t in range(T):
        y_t, state = layer.step(x[:, t], state)
        ys.append(y_t)
    np.testing.assert_allclose(np.stack(ys, axis=1), y_full, **_tol(np.float64))


@pytest.mark.parametrize("cell", CELLS)
def test_step_bidirectional_raises(helpers, cell, rng):
    layer = helpers.make_fr(cell, 3, 4, bidirectional=True, seed=0)
    with pytest.raises((ValueError, RuntimeError, NotImplementedError, TypeError),
                       match=r"(?i)bidirectional"):
        layer.step(rng.standard_normal((2, 3)).astype(np.float32), None)


@pytest.mark.parametrize("cell", CELLS)
def test_step_rejects_bad_input(helpers, cell, rng):
    layer = helpers.make_fr(cell, 3, 4, num_layers=2, seed=0)
    with pytest.raises(ValueError, match=r"(?i)(x|input)"):
        layer.step(rng.standard_normal((2, 4)), None)          # wrong input_size
    with pytest.raises(ValueError, match=r"(?i)(x|input)"):
        layer.step(rng.standard_normal((1, 2, 3, 1)), None)    # wrong ndim
    bad = rng.standard_normal((2, 5, 4))                         # batch 5 vs 2
    st = (bad, bad) if cell == "lstm" else bad
    with pytest.raises(ValueError, match=r"(?i)(state|h0|c0|hx|h_0)"):
        layer.step(rng.standard_normal((2, 3)), st)


@pytest.mark.parametrize("cell", CELLS)
def test_step_does_not_disturb_training(helpers, cell, rng):
    """An inference step between forward and backward keeps nothing and
    changes nothing: backward follows the last forward."""
    T, B, I, H = 4, 2, 3, 5
    layer = helpers.make_fr(cell, I, H, num_layers=2, dtype="float64", seed=2)
    x = rng.standard_normal((T, B, I))
    dy = rng.standard_normal((T, B, H))
    layer.zero_grad()
    layer.forward(x)
    dx_ref, _ = layer.backward(dy)
    g_ref = {k: np.array(v, copy=True) for k, v in layer.grads.items()}
    layer.zero_grad()
    layer.forward(x)
    layer.step(rng.standard_normal((7, I)), None)
    layer(rng.standard_normal((2, 7, I)))
    dx, _ = layer.backward(dy)
    np.testing.assert_array_equal(dx, dx_ref)
    for k in g_ref:
        np.testing.assert_array_equal(layer.grads[k], g_ref[k])


# ---------------------------------------------------------------- carried state
@pytest.mark.parametrize("cell", CELLS)
def test_state_carried_across_chunks(helpers, cell, rng):
    """Running x[:k] then x[k:] from the returned state equals running x."""
    T, B, I, H = 9, 3, 4, 5
    layer = helpers.make_fr(cell, I, H, num_layers=3, dtype="float64", seed=6)
    x = rng.standard_normal((T, B, I))
    y_full, st_full = layer(x)
    y1, s1 = layer(x[:4])
    y2, s2 = layer(x[4:], s1)
    np.testing.assert_allclose(np.concatenate([y1, y2]), y_full, **_tol(np.float64))
    for a, b in zip(_as_tuple(cell, s2), _as_tuple(cell, st_full)):
        np.testing.assert_allclose(a, b, **_tol(np.float64))
    # the returned state is the caller's: changing it does not affect the layer
    for a in _as_tuple(cell, s1):
        a[...] = 0.0
    y_again, _ = layer(x)
    np.testing.assert_array_equal(y_again, y_full)


# ---------------------------------------------------------------- dropout
def _quiet(fn, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **kw)


@pytest.mark.parametrize("cell", CELLS)
def test_dropout_training_only(helpers, cell, rng):
    T, B, I, H = 6, 4, 5, 8
    layer = helpers.make_fr(cell, I, H, num_layers=3, dropout=0.5, dtype="float64", seed=4)
    x = rng.standard_normal((T, B, I))
    y_inf1, _ = layer(x)
    y_inf2, _ = layer(x)
    np.testing.assert_array_equal(y_inf1, y_inf2)  # inference is deterministic
    y_tr, _ = layer.forward(x)
    assert not np.allclose(y_tr, y_inf1), "training forward with dropout equals inference"
    y_tr2, _ = layer.forward(x)
    assert not np.array_equal(y_tr, y_tr2), "dropout mask did not change between forwards"
    # a backward after a dropout forward still runs and has the right shapes
    dx, _ = layer.backward(np.ones_like(y_tr2))
    assert dx.shape == x.shape and np.all(np.isfinite(dx))
    y_inf3, _ = layer(x)
    np.testing.assert_array_equal(y_inf3, y_inf1)  # training left inference alone


@pytest.mark.parametrize("cell", CELLS)
def test_no_dropout_training_equals_inference(helpers, cell, rng):
    x = rng.standard_normal((5, 3, 4))
    for kw in (dict(num_layers=3, dropout=0.0), dict(num_layers=1, dropout=0.5)):
        layer = _quiet(helpers.make_fr, cell, 4, 6, dtype="float64", seed=1, **kw)
        y_inf, st_inf = layer(x)
        y_tr, st_tr = layer.forward(x)
        np.testing.assert_array_equal(y_tr, y_inf, err_msg=str(kw))
        for a, b in zip(_as_tuple(cell, st_tr), _as_tuple(cell, st_inf)):
            np.testing.assert_array_equal(a, b, err_msg=str(kw))


@pytest.mark.parametrize("p", [0.25, 0.5])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_dropout_rate_scaling_and_backward_mask(helpers, p, bidirectional, rng):
    """Weights chosen so the output of layer 1 exposes the mask.

    Layer 0 (ReLU RNN, zero weights, bias_ih 1) outputs exactly 1 everywhere.
    Layer 1 has weight_ih = identity (per direction), weight_hh = 0 and
    bias_ih = -0.5, so y = relu(m / (1 - p) - 0.5) with m the dropout mask:
    either 1/(1-p) - 0.5 or 0. Then
      - the fraction of zeros estimates p, the non-zeros check the 1/(1-p) scale;
      - with dy = 1, grad weight_ih_l1[i, j] = sum_{t,b} [m_i] * m_j / (1 - p),
        which the mask read off y predicts exactly: backward used the same mask.
    """
    T, B, H = 25, 8, 16
    D = 2 if bidirectional else 1
    layer = helpers.make_fr("rnn_relu", 3, H, num_layers=2, dropout=p,
                            bidirectional=bidirectional, dtype="float64", seed=0)
    sd = {k: np.zeros_like(v) for k, v in layer.state_dict().items()}
    for sfx in ("", "_reverse")[:D]:
        sd[f"bias_ih_l0{sfx}"][:] = 1.0
        sd[f"weight_ih_l1{sfx}"][:] = 0.0
        sd[f"bias_ih_l1{sfx}"][:] = -0.5
    # direction d of layer 1 reads input features d*H .. d*H+H-1 one-to-one
    for d, sfx in enumerate(("", "_reverse")[:D]):
        sd[f"weight_ih_l1{sfx}"][:, d * H:(d + 1) * H] = np.eye(H)
    layer.load_state_dict(sd)
    x = rng.standard_normal((T, B, 3))

    y_inf, _ = layer(x)
    np.testing.assert_allclose(y_inf, 0.5)  # no dropout at inference

    layer.zero_grad()
    y, _ = layer.forward(x)
    hi = 1.0 / (1.0 - p) - 0.5
    on = y > 0
    assert np.all((y == 0) | np.isclose(y, hi, rtol=1e-12)), "values other than 0 and 1/(1-p)-0.5"
    frac = 1.0 - on.mean()
    assert abs(frac - p) < 0.05, f"dropped fraction {frac:.3f} vs p = {p}"
    assert not all(np.array_equal(on[t], on[0]) for t in range(1, T)), "mask constant over time"
    assert not all(np.array_equal(on[:, b], on[:, 0]) for b in range(1, B)), "mask constant over batch"

    layer.backward(np.ones_like(y))
    m = on.astype(np.float64) / (1.0 - p)  # mask on layer-1 input feature j (scaled)
    for d, sfx in enumerate(("", "_reverse")[:D]):
        on_d = on[:, :, d * H:(d + 1) * H].astype(np.float64)          # [m_i] of outputs
        expect = np.einsum("tbi,tbj->ij", on_d, m)                       # (H, D*H)
        np.testing.assert_allclose(layer.grads[f"weight_ih_l1{sfx}"], expect,
                                   rtol=1e-12, atol=1e-12, err_msg=sfx)
        np.testing.assert_allclose(layer.grads[f"bias_ih_l1{sfx}"], on_d.sum(axis=(0, 1)),
                                   rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- seeds and init
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell", CELLS)
def test_seed_reproducible(helpers, cell, dtype):
    kw = dict(num_layers=2, bidirectional=True, dtype=dtype)
    a = helpers.make_fr(cell, 4, 6, seed=123, **kw).state_dict()
    b = helpers.make_fr(cell, 4, 6, seed=123, **kw).state_dict()
    c = helpers.make_fr(cell, 4, 6, seed=124, **kw).state_dict()
    n1 = helpers.make_fr(cell, 4, 6, seed=None, **kw).state_dict()
    n2 = helpers.make_fr(cell, 4, 6, seed=None, **kw).state_dict()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        assert not np.array_equal(a[k], c[k]), f"seeds 123 and 124 give the same {k}"
        assert not np.array_equal(n1[k], n2[k]), f"seed=None twice gives the same {k}"
    # parameters of one layer are not copies of each other
    assert not np.array_equal(a["weight_hh_l0"], a["weight_hh_l0_reverse"])
    assert not np.array_equal(a["bias_ih_l0"], a["bias_hh_l0"])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell", CELLS)
def test_init_uniform_in_range(helpers, cell, dtype):
    H = 64
    k = 1.0 / np.sqrt(H)
    layer = helpers.make_fr(cell, 40, H, num_layers=2, dtype=dtype, seed=7)
    for name, w in layer.state_dict().items():
        w = np.asarray(w, dtype=np.float64).ravel()
        assert np.all(np.abs(w) <= k * (1 + 1e-6)), f"{name} outside +-1/sqrt(H)"
        assert np.abs(w).max() > 0.9 * k, f"{name} does not fill the range"
        if w.size >= 1000:  # crude uniformity: four equal bins
            counts = np.histogram(w, bins=4, range=(-k, k))[0] / w.size
            assert np.all(np.abs(counts - 0.25) < 0.05), f"{name} bins {counts}"
            assert abs(w.mean()) < 0.05 * k, f"{name} mean {w.mean()}"


def test_step_reuses_its_own_state_safely():
    """step() takes the state it returned last without re-converting it but
    still checks it: a state reshaped in place is refused with the state's
    name, and another layer's state (same shapes) is taken as well."""
    a = fr.LSTM(5, 7, num_layers=2, seed=1)
    b = fr.LSTM(5, 7, num_layers=2, seed=2)
    x = np.random.default_rng(0).standard_normal((4, 3, 5)).astype(np.float32)
    y_full, _ = a(x)
    st, ys = None, []
    for t in range(4):
        yt, st = a.step(x[t], st)
        ys.append(yt)
    np.testing.assert_allclose(np.stack(ys), y_full, rtol=1e-5, atol=1e-6)
    _, sb = b.step(x[0], None)
    _, st2 = a.step(x[0], sb)           # b's state: converted and checked
    assert st2[0].shape == (2, 3, 7)
    _, st3 = a.step(x[1], None)
    st3[0].shape = (6, 7)               # the returned array reshaped in place
    with pytest.raises(ValueError, match=r"state\[0\] \(h\): expected shape \(2, 3, 7\)"):
        a.step(x[2], st3)


# ---------------------------------------------------------------- step's per-call path
# After its first call, step() runs through a C-checked stepper that gives up
# (and lets the full path convert or explain) whenever anything differs from
# what the kernel takes. Each case below must give the same answer as a fresh
# layer would.

_stream = helpers_ns.stream


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell", CELLS)
def test_step_fast_path_equals_first_call(helpers, cell, dtype, rng):
    """The stepper's calls give the bits of the full path's call."""
    layer = helpers.make_fr(cell, 6, 11, num_layers=2, dtype=dtype, seed=3)
    x = rng.standard_normal((5, 3, 6)).astype(dtype)
    assert "_stepper" not in layer.__dict__
    ys, st = _stream(layer, x)
    assert "_stepper" in layer.__dict__
    ref = helpers.make_fr(cell, 6, 11, num_layers=2, dtype=dtype, seed=3)
    st_ref = None
    for t in range(5):
        y_ref, st_ref = ref._step_checked(x[t], st_ref)   # the full path, every time
        np.testing.assert_array_equal(ys[t], y_ref)
    for a, b in zip(_as_tuple(cell, st), _as_tuple(cell, st_ref)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cell", CELLS)
def test_step_sees_replaced_and_edited_weights(helpers, cell, rng):
    layer = helpers.make_fr(cell, 4, 9, seed=1)
    other = helpers.make_fr(cell, 4, 9, seed=2)
    x = rng.standard_normal((3, 2, 4)).astype(np.float32)
    _stream(layer, x)                                      # the stepper exists
    # a weight array replaced by another object
    layer.params["weight_hh_l0"] = other.params["weight_hh_l0"].copy()
    mixed = helpers.make_fr(cell, 4, 9, seed=1)
    mixed.params["weight_hh_l0"][...] = other.params["weight_hh_l0"]
    np.testing.assert_array_equal(_stream(layer, x)[0], _stream(mixed, x)[0])
    # edited in place (what optimizers and load_state_dict do)
    layer.load_state_dict(other.state_dict())
    np.testing.assert_array_equal(_stream(layer, x)[0], _stream(other, x)[0])
    # the whole dict replaced, by a dict and by another mapping type
    layer.params = {k: v.copy() for k, v in mixed.params.items()}
    np.testing.assert_array_equal(_stream(layer, x)[0], _stream(mixed, x)[0])
    from collections import OrderedDict
    layer.params = OrderedDict((k, v.copy()) for k, v in other.params.items())
    np.testing.assert_array_equal(_stream(layer, x)[0], _stream(other, x)[0])


def test_step_sees_changed_options(rng):
    x = rng.standard_normal((4, 2, 3)).astype(np.float32) * 4
    rnn = fr.RNN(3, 5, seed=0)
    _stream(rnn, x)
    rnn.clip = 0.5
    ref = fr.RNN(3, 5, seed=0, clip=0.5)
    np.testing.assert_array_equal(_stream(rnn, x)[0], _stream(ref, x)[0])
    gru = fr.GRU(3, 5, seed=0)
    _stream(gru, x)
    gru.linear_before_reset = False
    ref = fr.GRU(3, 5, seed=0, linear_before_reset=False)
    np.testing.assert_array_equal(_stream(gru, x)[0], _stream(ref, x)[0])
    lstm = fr.LSTM(3, 5, seed=0)
    _stream(lstm, x)
    lstm.zoneout = 0.3                 # regularized kernels from now on
    lstm.eval()
    ref = fr.LSTM(3, 5, seed=0, zoneout=0.3)
    ref.eval()
    np.testing.assert_array_equal(_stream(lstm, x)[0], _stream(ref, x)[0])


@pytest.mark.parametrize("cell", CELLS)
def test_step_fast_path_takes_other_inputs_through_full_path(helpers, cell, rng):
    """Inputs the stepper does not take as they are still work (converted) or
    fail with the full path's messages."""
    layer = helpers.make_fr(cell, 6, 7, seed=4)
    x = rng.standard_normal((3, 2, 6))
    ys, st = _stream(layer, x.astype(np.float32))
    ref = helpers.make_fr(cell, 6, 7, seed=4)
    # float64, Fortran order, a list: converted
    y64, _ = _stream(ref, list(x))
    yf, _ = _stream(layer, [np.asfortranarray(xt.astype(np.float32)) for xt in x])
    np.testing.assert_array_equal(y64, ys)
    np.testing.assert_array_equal(yf, ys)
    # another batch size than the state's
    with pytest.raises(ValueError, match="state"):
        layer.step(x[0, :1].astype(np.float32), st)
    with pytest.raises(ValueError, match="x_t"):
        layer.step(np.zeros((2, 5), np.float32), None)
    with pytest.raises(ValueError, match="x_t"):
        layer.step(np.zeros((0, 6), np.float32), None)
    # a state of the wrong dtype is converted, as the full path does
    st64 = tuple(a.astype(np.float64) for a in _as_tuple(cell, st))
    y1, _ = layer.step(x[0].astype(np.float32), st64 if cell == "lstm" else st64[0])
    y2, _ = ref.step(x[0].astype(np.float32), st)
    np.testing.assert_array_equal(y1, y2)


def test_step_copy_and_pickle_after_streaming(rng):
    import copy
    import pickle
    lstm = fr.LSTM(4, 6, seed=0)
    x = rng.standard_normal((3, 1, 4)).astype(np.float32)
    ys, _ = _stream(lstm, x)
    for twin in (copy.deepcopy(lstm), pickle.loads(pickle.dumps(lstm))):
        np.testing.assert_array_equal(_stream(twin, x)[0], ys)
