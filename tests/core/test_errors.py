"""Bad input gets a clear Python exception, good-but-unusual input just works.

Contract (api.md): every public entry point rejects bad input with a
ValueError/TypeError that names the argument, before any C code runs; it
never crashes, never answers silently wrong, never changes an input array.
Array-likes (lists, non-contiguous views, other dtypes that cast safely) are
accepted and give what the contiguous array gives.
"""
import numpy as np
import pytest

import fastrnn as fr

CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru")
ERR = (ValueError, TypeError)

# what "names the argument" means for each argument (regexes, case-insensitive)
X_RE = r"(?i)(\bx\b|input)"
STATE_RE = r"(?i)(h0|c0|h_0|c_0|hx|state)"
LEN_RE = r"(?i)lengths"
DY_RE = r"(?i)\bdy\b"
DSTATE_RE = r"(?i)(dstate|dh|dc|h_n|c_n)"

T, B, I, HID, L = 5, 3, 4, 6, 2


def _layer(helpers, cell, **kw):
    kw.setdefault("num_layers", L)
    kw.setdefault("seed", 0)
    return helpers.make_fr(cell, I, HID, **kw)


def _x(rng, dtype=np.float32, t=T, b=B, i=I):
    return rng.standard_normal((t, b, i)).astype(dtype)


def _state(cell, rng, dtype=np.float32, layers=L, b=B, h=HID):
    h0 = rng.standard_normal((layers, b, h)).astype(dtype)
    if cell == "lstm":
        return (h0, rng.standard_normal((layers, b, h)).astype(dtype))
    return h0


def _calls(layer):
    """Every entry point taking (x, state, lengths): inference and forward."""
    return {
        "call": lambda x, s=None, lengths=None: layer(x, s, lengths=lengths),
        "forward": lambda x, s=None, lengths=None: layer.forward(x, state0=s, lengths=lengths),
    }


def _snapshot(layer):
    return {k: np.array(v, copy=True) for k, v in layer.state_dict().items()}


def _assert_same_params(layer, snap):
    sd = layer.state_dict()
    assert set(sd) == set(snap)
    for k in snap:
        np.testing.assert_array_equal(sd[k], snap[k], err_msg=k)


# ---------------------------------------------------------------- constructor
BAD_CTOR = [
    (dict(hidden_size=0), ValueError, "hidden_size"),
    (dict(hidden_size=-3), ValueError, "hidden_size"),
    (dict(hidden_size=3.5), ERR, "hidden_size"),
    (dict(hidden_size="3"), ERR, "hidden_size"),
    (dict(hidden_size=None), ERR, "hidden_size"),
    (dict(input_size=0), ValueError, "input_size"),
    (dict(input_size=-1), ValueError, "input_size"),
    (dict(input_size=2.5), ERR, "input_size"),
    (dict(num_layers=0), ValueError, "num_layers"),
    (dict(num_layers=-1), ValueError, "num_layers"),
    (dict(num_layers=1.5), ERR, "num_layers"),
    (dict(dropout=-0.1), ValueError, "dropout"),
    (dict(dropout=1.0), ValueError, "dropout"),
    (dict(dropout=1.5), ValueError, "dropout"),
    (dict(dropout=float("nan")), ValueError, "dropout"),
    (dict(dropout="0.5"), ERR, "dropout"),
    (dict(dtype="float16"), ERR, "dtype"),
    (dict(dtype="int32"), ERR, "dtype"),
    (dict(dtype="complex64"), ERR, "dtype"),
    (dict(dtype="banana"), ERR, "dtype"),
]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bad,exc,word", BAD_CTOR, ids=[str(b[0]) for b in BAD_CTOR])
def test_constructor_rejects(cell, bad, exc, word):
    kw = dict(input_size=I, hidden_size=HID)
    kw.update(bad)
    cls = {"rnn_tanh": fr.RNN, "rnn_relu": fr.RNN, "lstm": fr.LSTM, "gru": fr.GRU}[cell]
    if cell.startswith("rnn"):
        kw["nonlinearity"] = cell[4:]
    with pytest.raises(exc, match=word):
        cls(**kw)


@pytest.mark.parametrize("bad", ["sigmoid", "TANHH", "", None, 1])
def test_rnn_rejects_bad_nonlinearity(bad):
    with pytest.raises(ERR, match="nonlinearity"):
        fr.RNN(I, HID, nonlinearity=bad)


@pytest.mark.parametrize("cls", [fr.LSTM, fr.GRU])
def test_lstm_gru_have_no_nonlinearity(cls):
    with pytest.raises(TypeError):
        cls(I, HID, nonlinearity="relu")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_constructor_accepts_good_dtypes(dtype):
    layer = fr.LSTM(I, HID, dtype=dtype)
    y, _ = layer(np.zeros((2, 1, I)))
    assert y.dtype == np.dtype(dtype)


# ---------------------------------------------------------------- input x
@pytest.mark.parametrize("entry", ["call", "forward"])
@pytest.mark.parametrize("cell", CELLS)
def test_x_wrong_ndim(helpers, cell, entry, rng):
    layer = _layer(helpers, cell)
    call = _calls(layer)[entry]
    for bad in (np.float32(1.0), np.zeros(I, np.float32), np.zeros((1, T, B, I), np.float32)):
        with pytest.raises(ValueError, match=X_RE):
            call(bad)


@pytest.mark.parametrize("cell", CELLS)
def test_x_two_dimensional_is_error_or_unbatched(helpers, cell, rng):
    """A 2-D x is either rejected naming x, or treated as torch's unbatched
    (T, input_size) input; anything else would be a silent wrong answer."""
    layer = _layer(helpers, cell)
    x = _x(rng, b=1)
    try:
        y2, st2 = layer(x[:, 0])
    except ValueError as e:
        assert any(w in str(e).lower() for w in ("x", "input")), str(e)
        return
    y, st = layer(x)
    np.testing.assert_allclose(np.asarray(y2).reshape(y.shape), y, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("entry", ["call", "forward"])
@pytest.mark.parametrize("cell", CELLS)
def test_x_wrong_input_size(helpers, cell, entry, rng):
    layer = _layer(helpers, cell)
    call = _calls(layer)[entry]
    for i in (I - 1, I + 1):
        x = _x(rng, i=i)
        xc = x.copy()
        with pytest.raises(ValueError, match=r"(?i)(input_size|\bx\b|input)"):
            call(x)
        np.testing.assert_array_equal(x, xc)


def test_x_wrong_input_size_batch_first(helpers, rng):
    layer = _layer(helpers, "lstm", batch_first=True)
    with pytest.raises(ValueError, match=r"(?i)(input_size|\bx\b|input)"):
        layer(rng.standard_normal((B, T, I + 2)))


@pytest.mark.parametrize("bad", [
    np.ones((T, B, I), dtype=np.complex64),
    np.ones((T, B, I), dtype=np.complex128),
    np.full((T, B, I), "a"),
    np.full((T, B, I), None, dtype=object),
    np.ones((T, B, I), dtype=object),
], ids=["complex64", "complex128", "str", "object-None", "object-1"])
@pytest.mark.parametrize("entry", ["call", "forward"])
def test_x_bad_dtype(helpers, entry, bad):
    layer = _layer(helpers, "gru")
    call = _calls(layer)[entry]
    with pytest.raises(ERR, match=X_RE):
        call(bad)


def test_x_ragged_list_rejected(helpers):
    layer = _layer(helpers, "lstm")
    with pytest.raises(ERR):
        layer([[[0.0] * I], [[0.0] * (I - 1)]])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_x_empty_time_or_batch(helpers, dtype):
    """T = 0 or B = 0: a clear ValueError, or a well-shaped empty answer."""
    layer = _layer(helpers, "lstm", dtype=dtype)
    for shape in ((0, B, I), (T, 0, I)):
        try:
            y, (h, c) = layer(np.zeros(shape, dtype))
        except ValueError:
            continue
        assert y.shape == (shape[0], shape[1], HID)
        assert h.shape == (L, shape[1], HID)


# ---------------------------------------------------------------- lengths
BAD_LENGTHS = [
    ([0, 3, 5], ValueError),
    ([-1, 3, 5], ValueError),
    ([T + 1, 3, 5], ValueError),
    ([5, 3], ValueError),              # wrong count
    ([5, 3, 2, 1], ValueError),        # wrong count
    ([[5, 3, 2]], ValueError),         # 2-D
    (np.array([[5], [3], [2]]), ValueError),
    (np.array([5.5, 3.0, 2.0]), ERR),  # float
    (np.array([5.0, 3.0, 2.0]), ERR),  # float, even if integral
    (["5", "3", "2"], ERR),
    (np.array([5 + 0j, 3, 2]), ERR),
    (5, ERR),                          # scalar
]


@pytest.mark.parametrize("bad,exc", BAD_LENGTHS, ids=[repr(b[0]).replace(" ", "") for b in BAD_LENGTHS])
@pytest.mark.parametrize("entry", ["call", "forward"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_lengths_rejected(helpers, cell, entry, bad, exc, rng):
    layer = _layer(helpers, cell, bidirectional=True)
    call = _calls(layer)[entry]
    x = _x(rng)
    xc = x.copy()
    badc = np.array(bad, copy=True) if isinstance(bad, np.ndarray) else None
    with pytest.raises(exc, match=LEN_RE):
        call(x, None, lengths=bad)
    np.testing.assert_array_equal(x, xc)
    if badc is not None:
        np.testing.assert_array_equal(bad, badc)


@pytest.mark.parametrize("lengths", [
    [5, 3, 1], (5, 3, 1), np.array([5, 3, 1], np.int32), np.array([5, 3, 1], np.int64),
    np.array([5, 3, 1], np.uint8), np.array([5, 9, 3, 9, 1])[::2],
])
def test_lengths_good_forms(helpers, lengths, rng):
    layer = _layer(helpers, "lstm", bidirectional=True)
    x = _x(rng)
    ref, _ = layer(x, lengths=np.array([5, 3, 1], np.int64))
    y, _ = layer(x, lengths=lengths)
    np.testing.assert_array_equal(y, ref)


# ---------------------------------------------------------------- states
@pytest.mark.parametrize("entry", ["call", "forward"])
@pytest.mark.parametrize("cell", CELLS)
def test_state_wrong_shape(helpers, cell, entry, rng):
    layer = _layer(helpers, cell)
    call = _calls(layer)[entry]
    x = _x(rng)
    bad_shapes = [(L + 1, B, HID), (L - 1, B, HID), (L, B + 1, HID), (L, B, HID + 1),
                  (B, HID), (L, B, HID, 1)]
    for shape in bad_shapes:
        bad = rng.standard_normal(shape).astype(np.float32)
        good = rng.standard_normal((L, B, HID)).astype(np.float32)
        if cell == "lstm":
            states = [(bad, good), (good, bad)]
        else:
            states = [bad]
        for s in states:
            copies = [a.copy() for a in (s if isinstance(s, tuple) else (s,))]
            with pytest.raises(ValueError, match=STATE_RE):
                call(x, s)
            for a, c in zip(s if isinstance(s, tuple) else (s,), copies):
                np.testing.assert_array_equal(a, c)


def test_state_wrong_shape_bidirectional(helpers, rng):
    """Bidirectional needs 2*num_layers state rows."""
    layer = _layer(helpers, "gru", bidirectional=True)
    with pytest.raises(ValueError, match=STATE_RE):
        layer(_x(rng), rng.standard_normal((L, B, HID)))
    y, h = layer(_x(rng), rng.standard_normal((2 * L, B, HID)))
    assert h.shape == (2 * L, B, HID)


@pytest.mark.parametrize("entry", ["call", "forward"])
def test_lstm_state_must_be_pair(helpers, entry, rng):
    layer = _layer(helpers, "lstm")
    call = _calls(layer)[entry]
    x = _x(rng)
    h0, c0 = _state("lstm", rng)
    for bad in (h0, (h0,), (h0, c0, c0), [h0], np.stack([h0, c0])):
        with pytest.raises(ERR, match=STATE_RE):
            call(x, bad)


@pytest.mark.parametrize("entry", ["call", "forward"])
@pytest.mark.parametrize("cell", ["gru", "rnn_tanh"])
def test_gru_rnn_state_not_a_pair(helpers, cell, entry, rng):
    layer = _layer(helpers, cell)
    call = _calls(layer)[entry]
    h0 = _state(cell, rng)
    with pytest.raises(ERR, match=STATE_RE):
        call(_x(rng), (h0, h0))


@pytest.mark.parametrize("entry", ["call", "forward"])
def test_state_bad_dtype(helpers, entry, rng):
    layer = _layer(helpers, "gru")
    call = _calls(layer)[entry]
    with pytest.raises(ERR, match=STATE_RE):
        call(_x(rng), np.ones((L, B, HID), np.complex128))
    with pytest.raises(ERR, match=STATE_RE):
        call(_x(rng), np.full((L, B, HID), "a"))


# ---------------------------------------------------------------- backward
@pytest.mark.parametrize("cell", CELLS)
def test_backward_before_forward(helpers, cell, rng):
    layer = _layer(helpers, cell)
    dy = rng.standard_normal((T, B, HID)).astype(np.float32)
    with pytest.raises((RuntimeError, ValueError), match=r"(?i)forward"):
        layer.backward(dy)
    # an inference call keeps nothing for backward either
    layer(_x(rng))
    with pytest.raises((RuntimeError, ValueError), match=r"(?i)forward"):
        layer.backward(dy)


@pytest.mark.parametrize("cell", CELLS)
def test_backward_dy_wrong_shape(helpers, cell, rng):
    layer = _layer(helpers, cell, bidirectional=True)
    x = _x(rng)
    layer.forward(x)
    grads_before = {k: np.array(v, copy=True) for k, v in layer.grads.items()}
    for shape in ((T, B, HID), (T + 1, B, 2 * HID), (T, B + 1, 2 * HID), (T, B), (B, T, 2 * HID)):
        if shape == (T, B, 2 * HID):
            continue
        dy = rng.standard_normal(shape).astype(np.float32)
        dyc = dy.copy()
        with pytest.raises(ValueError, match=DY_RE):
            layer.backward(dy)
        np.testing.assert_array_equal(dy, dyc)
    with pytest.raises(ERR, match=DY_RE):
        layer.backward(np.ones((T, B, 2 * HID), np.complex64))
    # failed calls accumulated nothing, and a good call still works
    for k in grads_before:
        np.testing.assert_array_equal(layer.grads[k], grads_before[k])
    dx, _ = layer.backward(rng.standard_normal((T, B, 2 * HID)))
    assert dx.shape == x.shape


@pytest.mark.parametrize("cell", CELLS)
def test_failed_forward_keeps_previous_forward(helpers, cell, rng):
    """A rejected forward changes nothing: backward still follows the last good one."""
    layer = _layer(helpers, cell, dtype="float64")
    x = _x(rng, dtype=np.float64)
    dy = rng.standard_normal((T, B, HID))
    layer.forward(x)
    dx_ref, _ = layer.backward(dy)
    layer.zero_grad()
    layer.forward(x)
    with pytest.raises(ValueError):
        layer.forward(_x(rng, dtype=np.float64, t=T + 1, i=I + 1))
    with pytest.raises(ValueError):
        layer.forward(x, lengths=[0, 1, 2])
    dx, _ = layer.backward(dy)
    np.testing.assert_array_equal(dx, dx_ref)


@pytest.mark.parametrize("cell", CELLS)
def test_backward_dstate_wrong(helpers, cell, rng):
    layer = _layer(helpers, cell)
    x = _x(rng)
    layer.forward(x)
    dy = rng.standard_normal((T, B, HID)).astype(np.float32)
    good = rng.standard_normal((L, B, HID)).astype(np.float32)
    bad = rng.standard_normal((L, B + 1, HID)).astype(np.float32)
    if cell == "lstm":
        cases = [(bad, good), (good, bad), good, (good,), (good, good, good)]
    else:
        cases = [bad, rng.standard_normal((L + 1, B, HID)), (good, good)]
    for d in cases:
        with pytest.raises(ERR, match=DSTATE_RE):
            layer.backward(dy, d)
    dx, _ = layer.backward(dy, (good, good) if cell == "lstm" else good)
    assert dx.shape == x.shape


# ---------------------------------------------------------------- load_state_dict
@pytest.mark.parametrize("cell", CELLS)
def test_load_state_dict_reports_missing_extra_misshaped(helpers, cell):
    layer = _layer(helpers, cell, bidirectional=True)
    snap = _snapshot(layer)
    good = {k: v + 1 for k, v in snap.items()}

    d = dict(good)
    del d["weight_hh_l1_reverse"]
    with pytest.raises(ValueError, match="weight_hh_l1_reverse") as e:
        layer.load_state_dict(d)
    assert "missing" in str(e.value).lower()
    _assert_same_params(layer, snap)

    d = dict(good)
    d["weight_hh_l7"] = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match="weight_hh_l7") as e:
        layer.load_state_dict(d)
    assert any(w in str(e.value).lower() for w in ("extra", "unexpected"))
    _assert_same_params(layer, snap)

    d = dict(good)
    d["bias_ih_l0"] = np.zeros(d["bias_ih_l0"].shape[0] + 1, np.float32)
    with pytest.raises(ValueError, match="bias_ih_l0"):
        layer.load_state_dict(d)
    _assert_same_params(layer, snap)

    d = dict(good)
    d["weight_ih_l0"] = d["weight_ih_l0"].T.copy()
    with pytest.raises(ValueError, match="weight_ih_l0"):
        layer.load_state_dict(d)
    _assert_same_params(layer, snap)

    # everything wrong at once: every problem is listed
    d = dict(good)
    del d["weight_ih_l1"]
    d["bogus"] = np.zeros(1)
    d["weight_hh_l0"] = np.zeros((1, 1))
    with pytest.raises(ValueError) as e:
        layer.load_state_dict(d)
    msg = str(e.value)
    for name in ("weight_ih_l1", "bogus", "weight_hh_l0"):
        assert name in msg, msg
    _assert_same_params(layer, snap)

    # bad values
    d = dict(good)
    d["weight_ih_l0"] = np.full(d["weight_ih_l0"].shape, "x")
    with pytest.raises(ERR, match="weight_ih_l0"):
        layer.load_state_dict(d)
    _assert_same_params(layer, snap)
    with pytest.raises(ERR):
        layer.load_state_dict([("weight_ih_l0", snap["weight_ih_l0"])])

    # and the good dict loads, without aliasing the caller's arrays
    good_copy = {k: v.copy() for k, v in good.items()}
    layer.load_state_dict(good)
    for k, v in good.items():
        np.testing.assert_array_equal(v, good_copy[k])
    _assert_same_params(layer, good_copy)
    for v in good.values():
        v[...] = 123.0
    _assert_same_params(layer, good_copy)


def test_load_state_dict_bias_mismatch(helpers):
    with_bias = _layer(helpers, "gru", bias=True)
    no_bias = _layer(helpers, "gru", bias=False)
    with pytest.raises(ValueError, match="bias_ih_l0"):
        no_bias.load_state_dict(with_bias.state_dict())
    with pytest.raises(ValueError, match="bias_ih_l0"):
        with_bias.load_state_dict(no_bias.state_dict())


def test_load_state_dict_float64_into_float32(helpers):
    layer = _layer(helpers, "lstm")
    d = {k: v.astype(np.float64) * 0.5 for k, v in layer.state_dict().items()}
    layer.load_state_dict(d)
    for k, v in layer.state_dict().items():
        assert v.dtype == np.float32
        np.testing.assert_array_equal(v, d[k].astype(np.float32))


# ---------------------------------------------------------------- threads
@pytest.mark.parametrize("bad", [1.5, "2", [2]])
def test_set_num_threads_rejects(bad, restore_threads):
    # (None, 0 and negative counts are left alone: libraries give them meanings)
    with pytest.raises(ERR):
        fr.set_num_threads(bad)
    assert fr.get_num_threads() == restore_threads


# ---------------------------------------------------------------- from_torch
def test_from_torch_rejects_other_things():
    torch = pytest.importorskip("torch")
    for bad in (torch.nn.Linear(3, 4), object(), None, "lstm"):
        with pytest.raises(ERR):
            fr.from_torch(bad)


# ---------------------------------------------------------------- array-likes accepted
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell", CELLS)
def test_noncontiguous_and_lists_equal_contiguous(helpers, cell, dtype, rng):
    layer = _layer(helpers, cell, dtype=dtype, bidirectional=True)
    dt = np.dtype(dtype)
    x = _x(rng, dtype=dt)
    s = _state(cell, rng, dtype=dt, layers=2 * L)
    lengths = np.array([5, 2, 4])
    y_ref, st_ref = layer(x, s, lengths=lengths)
    big = rng.standard_normal((2 * T, B + 2, 2 * I)).astype(dt)
    big[::2, 1:-1, ::2] = x
    views = {
        "strided": big[::2, 1:-1, ::2],
        "fortran": np.asfortranarray(x),
        "transposed": np.ascontiguousarray(x.transpose(1, 0, 2)).transpose(1, 0, 2),
        "list": x.tolist(),
        "negative-stride": np.ascontiguousarray(x[::-1])[::-1],
    }
    if cell == "lstm":
        s_nc = tuple(np.asfortranarray(a) for a in s)
    else:
        s_nc = np.asfortranarray(s)
    for name, xv in views.items():
        before = np.array(xv, copy=True)
        y, st = layer(xv, s_nc, lengths=list(lengths))
        np.testing.assert_array_equal(y, y_ref, err_msg=name)
        if cell == "lstm":
            np.testing.assert_array_equal(st[0], st_ref[0], err_msg=name)
            np.testing.assert_array_equal(st[1], st_ref[1], err_msg=name)
        else:
            np.testing.assert_array_equal(st, st_ref, err_msg=name)
        np.testing.assert_array_equal(np.asarray(xv), before, err_msg=name)
        # the training path too
        yf, _ = layer.forward(xv, state0=s_nc, lengths=lengths)
        np.testing.assert_array_equal(yf, y_ref, err_msg=name)


@pytest.mark.parametrize("cell", CELLS)
def test_backward_noncontiguous_dy_and_inputs_unchanged(helpers, cell, rng):
    layer = _layer(helpers, cell, dtype="float64", bidirectional=True)
    x = _x(rng, dtype=np.float64)
    s = _state(cell, rng, dtype=np.float64, layers=2 * L)
    lengths = np.array([5, 2, 4])
    dy = rng.standard_normal((T, B, 2 * HID))
    dh = rng.standard_normal((2 * L, B, HID))
    dstate = (dh, dh * 2) if cell == "lstm" else dh
    flat_in = [x, dy, dh, lengths] + (list(s) if cell == "lstm" else [s])
    copies = [a.copy() for a in flat_in]

    layer.zero_grad()
    layer.forward(x, state0=s, lengths=lengths)
    dx_ref, ds_ref = layer.backward(dy, dstate)
    g_ref = {k: np.array(v, copy=True) for k, v in layer.grads.items()}
    for a, c in zip(flat_in, copies):
        np.testing.assert_array_equal(a, c)

    layer.zero_grad()
    layer.forward(x.tolist(), state0=s, lengths=lengths.tolist())
    dy_big = np.zeros((T, B, 4 * HID))
    dy_big[:, :, ::2] = dy
    dx, ds = layer.backward(dy_big[:, :, ::2], dstate)
    np.testing.assert_array_equal(dx, dx_ref)
    for a, b in zip(ds if cell == "lstm" else (ds,), ds_ref if cell == "lstm" else (ds_ref,)):
        np.testing.assert_array_equal(a, b)
    for k in g_ref:
        np.testing.assert_array_equal(layer.grads[k], g_ref[k], err_msg=k)
    # outputs are fresh arrays the caller owns
    assert not np.shares_memory(dx, x)


@pytest.mark.parametrize("cell", CELLS)
def test_float64_input_into_float32_layer(helpers, cell, rng):
    layer = _layer(helpers, cell, dtype="float32")
    x64 = rng.standard_normal((T, B, I))
    s64 = _state(cell, rng, dtype=np.float64)
    s32 = tuple(a.astype(np.float32) for a in s64) if cell == "lstm" else s64.astype(np.float32)
    y_ref, _ = layer(x64.astype(np.float32), s32)
    y, st = layer(x64, s64)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, y_ref)
    yf, _ = layer.forward(x64, state0=s64)
    assert yf.dtype == np.float32
    dx, ds = layer.backward(np.ones(y.shape))  # float64 dy
    assert dx.dtype == np.float32


def test_torch_tensor_input_accepted(helpers, rng):
    torch = pytest.importorskip("torch")
    layer = _layer(helpers, "gru")
    x = _x(rng)
    y_ref, _ = layer(x)
    y, _ = layer(torch.from_numpy(x))
    np.testing.assert_array_equal(y, y_ref)


def test_integer_input_is_converted_or_rejected(helpers):
    """An integer array either casts (like a float array of the same values)
    or is rejected with a TypeError/ValueError naming x; never garbage."""
    layer = _layer(helpers, "lstm")
    xi = np.arange(T * B * I).reshape(T, B, I) % 3 - 1
    try:
        y, _ = layer(xi)
    except ERR as e:
        assert any(w in str(e).lower() for w in ("x", "input")), str(e)
        return
    y_ref, _ = layer(xi.astype(np.float32))
    np.testing.assert_array_equal(y, y_ref)
