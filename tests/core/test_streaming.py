"""fr.StreamSession: many streams stepped as one batch, against each stream run
alone (the layer's or model's step with batch 1), over random interleavings of
opens, closes, resets, pushes and state moves; its errors; its lock.

A session pushes inside fr.batch_invariant() (its default), so every
comparison with each stream run alone (its batch-1 step, with the setting on
too) is bit for bit. test_session_without_batch_invariance checks that the
switch is what gives those bits, and the tolerance that holds without it.
"""
import io
import threading

import numpy as np
import pytest

import fastrnn as fr

# the session runs its pushes batch-invariant: every comparison is bit for bit
BATCH_INVARIANT = True

# what the kernels guarantee today between a batched step and batch 1: a few
# float roundings a step, through the recurrence of a few dozen steps
TOL = {np.float32: 1e-5, np.float64: 1e-12}

# the largest push whose float32 fast-loop rows have batch-1 bits today: up to
# FR_FAST_SMALL_M (src/fast/tuning.h) rows the loop projects x with the same
# dot tiles as at batch 1
SMALL_PUSH = 8


def _ref_step(model, x_row, state):
    """One stream alone: its step with batch 1 (batch-invariant, as the session)."""
    with fr.batch_invariant():
        return _ref_step_plain(model, x_row, state)


def _ref_step_plain(model, x_row, state):
    x = np.asarray(x_row)[None]
    if isinstance(model, (list, tuple)):
        new, k = [], 0
        for l in model:
            if l.carries_state:
                x, st = l.step(x, None if state is None else state[k])
                new.append(st)
                k += 1
            else:
                x, _ = l.step(x, None)
        return x[0], new
    y, st = model.step(x, state)
    return y[0], st


def _check(pairs, dtype, exact):
    assert pairs
    for got, want in pairs:
        assert got.dtype == want.dtype == dtype
        if exact:
            assert got.tobytes() == want.tobytes(), np.abs(got - want).max()
        else:
            np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype])


def _drive(model, capacity, make_x, rng, n_ops=50, max_push=None, move_to=None,
           invariant=True):
    """Random opens/closes/resets/pushes/exports on a session of `model`; returns
    (session output row, the same stream alone) pairs and the largest push.
    move_to: a model of the same weights; some streams are exported, closed and
    continued in a session of it (as in another process)."""
    s = fr.StreamSession(model, capacity, batch_invariant=invariant)
    other = (fr.StreamSession(move_to, capacity, batch_invariant=invariant)
             if move_to is not None else None)
    ref = {}       # (session, id) -> the stream's state run alone
    for _ in range(capacity * 3 // 4):   # enough streams for pushes past SMALL_PUSH
        ref[(s, s.open())] = None
    pairs, biggest = [], 0
    for _ in range(n_ops):
        r = rng.random()
        open_ids = list(ref)
        if (r < 0.3 or not ref) and len(s) < capacity:
            ref[(s, s.open())] = None
        elif r < 0.36 and ref:
            sess, sid = open_ids[rng.integers(len(open_ids))]
            sess.close(sid)
            del ref[(sess, sid)]
        elif r < 0.4 and ref:
            sess, sid = open_ids[rng.integers(len(open_ids))]
            sess.reset(sid)
            ref[(sess, sid)] = None
        elif r < 0.46 and other is not None and len(other) < capacity:
            key = [k for k in open_ids if k[0] is s]
            if key:
                sess, sid = key[rng.integers(len(key))]
                buf = io.BytesIO()
                np.savez(buf, **sess.export(sid))
                buf.seek(0)
                new = other.import_state(np.load(buf, allow_pickle=False))
                sess.close(sid)
                ref[(other, new)] = ref.pop((sess, sid))
        else:
            for sess in (s, other):
                mine = [k for k in open_ids if k[0] is sess]
                if not mine:
                    continue
                top = min(len(mine), max_push or len(mine))
                # half the pushes step as many streams as they may: big batches
                n = top if rng.random() < 0.5 else int(rng.integers(1, top + 1))
                pick = [mine[i] for i in rng.permutation(len(mine))[:n]]
                x = make_x(n)
                y = sess.push([sid for _, sid in pick], x)
                assert y.shape[0] == n
                biggest = max(biggest, n)
                for k, key in enumerate(pick):
                    m = model if sess is s else move_to
                    step = _ref_step if invariant else _ref_step_plain
                    want, ref[key] = step(m, x[k], ref[key])
                    pairs.append((y[k], want))
    return pairs, biggest


def _floats(rng, I, dtype):
    return lambda n: rng.standard_normal((n, I)).astype(dtype)


CELLS = {
    "rnn_tanh": lambda I, H, L, dt: fr.RNN(I, H, num_layers=L, dtype=dt, seed=3),
    "rnn_relu": lambda I, H, L, dt: fr.RNN(I, H, num_layers=L, nonlinearity="relu",
                                           dtype=dt, seed=3),
    "lstm": lambda I, H, L, dt: fr.LSTM(I, H, num_layers=L, dtype=dt, seed=3),
    "gru": lambda I, H, L, dt: fr.GRU(I, H, num_layers=L, dtype=dt, seed=3),
    "gru_reset_first": lambda I, H, L, dt: fr.GRU(I, H, num_layers=L, dtype=dt, seed=3,
                                                  linear_before_reset=False),
    "lstm_clip": lambda I, H, L, dt: fr.LSTM(I, H, num_layers=L, dtype=dt, seed=3, clip=0.7),
    "ln_lstm": lambda I, H, L, dt: fr.LayerNormLSTM(I, H, num_layers=L, dtype=dt, seed=3),
    "lstm_zoneout": lambda I, H, L, dt: fr.LSTM(I, H, num_layers=L, dtype=dt, seed=3,
                                                zoneout=0.2),
    "gru_recurrent_dropout": lambda I, H, L, dt: fr.GRU(I, H, num_layers=L, dtype=dt,
                                                        seed=3, recurrent_dropout=0.3),
}
FAST_CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru")   # the float32 fast loops' cells
# (input_size, hidden_size, num_layers): sizes 1, primes, and H = 37 > 32
SIZES = [(1, 1, 1), (7, 5, 2), (13, 37, 3), (3, 17, 1)]
DTYPES = [np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_interleavings_match_each_stream_alone(cell, dtype, rng):
    for I, H, L in SIZES:
        layer = CELLS[cell](I, H, L, dtype)
        pairs, biggest = _drive(layer, 12, _floats(rng, I, dtype), rng)
        assert biggest > SMALL_PUSH  # the batched kernels' other paths ran too
        _check(pairs, dtype, BATCH_INVARIANT)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("cell", FAST_CELLS)
def test_bitwise_small_pushes(cell, dtype, rng):
    """float32 on the fast loops: pushes of up to 8 streams are bit for bit
    each stream alone today (float64: within TOL, unless BATCH_INVARIANT)."""
    for I, H, L in SIZES + [(40, 64, 2)]:
        layer = CELLS[cell](I, H, L, dtype)
        pairs, biggest = _drive(layer, 12, _floats(rng, I, dtype), rng, max_push=SMALL_PUSH)
        assert 1 < biggest <= SMALL_PUSH
        _check(pairs, dtype, BATCH_INVARIANT or dtype == np.float32)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_bitwise_any_batch(dtype, rng):
    """Every cell, pushes of any size, bit for bit: what BATCH_INVARIANT turns on."""
    for cell in CELLS:
        layer = CELLS[cell](33, 64, 2, dtype)
        pairs, _ = _drive(layer, 20, _floats(rng, 33, dtype), rng, n_ops=30)
        _check(pairs, dtype, True)


def test_session_without_batch_invariance(rng):
    """batch_invariant=False: pushes of more than 8 float32 streams differ from
    each stream alone in the last bits (the kernels' row-count paths), within
    TOL; the default session (the other tests) gives the bits exactly. Also
    the setting is restored after a push."""
    assert fr.get_batch_invariant() is False
    layer = CELLS["lstm"](13, 37, 2, np.float32)
    pairs, biggest = _drive(layer, 16, _floats(rng, 13, np.float32), rng, invariant=False)
    assert biggest > SMALL_PUSH
    _check(pairs, np.float32, False)
    assert any(g.tobytes() != w.tobytes() for g, w in pairs)
    assert fr.get_batch_invariant() is False
    with pytest.raises(TypeError, match="batch_invariant"):
        fr.StreamSession(layer, 2, batch_invariant=1)


def test_batch_invariant_blocks_nest_and_restore():
    """fr.batch_invariant() blocks are counted across threads and nesting; a
    set_batch_invariant inside one sets what the last block restores."""
    assert fr.get_batch_invariant() is False
    with fr.batch_invariant():
        with fr.batch_invariant():
            assert fr.get_batch_invariant() is True
        assert fr.get_batch_invariant() is True
        assert fr.set_batch_invariant(True) is False   # what it goes back to
    assert fr.get_batch_invariant() is True
    fr.set_batch_invariant(False)
    seen = []

    def worker():
        with fr.batch_invariant():
            seen.append(fr.get_batch_invariant())
    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [True] * 8 and fr.get_batch_invariant() is False


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_stack_and_sequential(dtype, rng):
    """A list of layers (recurrent, Dense between) and a Sequential with an
    Embedding, states moved into a session of a copy of the model."""
    stack = [fr.GRU(6, 11, num_layers=2, dtype=dtype, seed=1),
             fr.Dense(11, 7, activation="tanh", dtype=dtype, seed=2),
             fr.LSTM(7, 5, dtype=dtype, seed=4)]
    copy = [l.freeze() for l in stack]
    pairs, _ = _drive(stack, 10, _floats(rng, 6, dtype), rng, move_to=copy)
    _check(pairs, dtype, BATCH_INVARIANT)

    model = fr.Sequential([fr.Embedding(19, 6, dtype=dtype, seed=0),
                           fr.LSTM(6, 13, num_layers=2, dtype=dtype, seed=1),
                           fr.Dropout(0.5, dtype=dtype), fr.RNN(13, 3, dtype=dtype, seed=2),
                           fr.Dense(3, 4, dtype=dtype, seed=5)])
    pairs, _ = _drive(model, 10, lambda n: rng.integers(0, 19, n), rng,
                      move_to=model.freeze())
    _check(pairs, dtype, BATCH_INVARIANT)


def test_model_moved_through_files(tmp_path, rng):
    """A stream exported to an .npz, continued by a session of the model loaded
    from fr.save in a fresh object: the same outputs as continuing it here."""
    model = fr.Sequential([fr.LSTM(4, 9, num_layers=2, seed=0), fr.Dense(9, 2, seed=1)])
    s = fr.StreamSession(model, 3)
    a = s.open()
    xs = rng.standard_normal((6, 1, 4)).astype(np.float32)
    for x in xs[:3]:
        s.push([a], x)
    np.savez(tmp_path / "stream.npz", **s.export(a))
    fr.save(model, tmp_path / "model.frn")
    here = [s.push([a], x) for x in xs[3:]]
    s2 = fr.StreamSession(fr.load(tmp_path / "model.frn"), 1)
    b = s2.import_state(np.load(tmp_path / "stream.npz", allow_pickle=False))
    there = [s2.push([b], x) for x in xs[3:]]
    for u, v in zip(here, there):
        assert u.tobytes() == v.tobytes()


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_matches_full_sequence_forward(dtype, rng):
    """Each stream's outputs, pushed in a busy session, against the layer run
    over that stream's whole sequence (the reference of step itself)."""
    layer = fr.LSTM(5, 23, num_layers=2, dtype=dtype, seed=0)
    s = fr.StreamSession(layer, 16)
    ids = [s.open() for _ in range(16)]
    T = 9
    xs = rng.standard_normal((16, T, 5)).astype(dtype)
    ys = np.zeros((16, T, 23), dtype)
    t_of = np.zeros(16, int)
    while t_of.min() < T:
        live = [k for k in range(16) if t_of[k] < T]
        pick = rng.permutation(live)[:int(rng.integers(1, len(live) + 1))]
        y = s.push([ids[k] for k in pick], xs[pick, t_of[pick]])
        ys[pick, t_of[pick]] = y
        t_of[pick] += 1
    full, _ = layer(np.ascontiguousarray(xs.transpose(1, 0, 2)))
    tol = {np.float32: 2e-4, np.float64: 1e-9}[dtype]
    np.testing.assert_allclose(ys, full.transpose(1, 0, 2), rtol=tol, atol=tol)


def test_streams_stay_apart():
    """A push moves only its streams; a closed slot reopens at zero; ids are
    never reused; reset starts a stream again."""
    layer = fr.GRU(2, 3, seed=0)
    s = fr.StreamSession(layer, 2)
    a, b = s.open(), s.open()
    one = np.ones((1, 2), np.float32)
    first = s.push([a], one)
    s.push([a], one)
    before = s.export(b)
    s.push([a], one)
    after = s.export(b)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    s.close(a)
    c = s.open()
    assert c not in (a, b) and a not in s and c in s and s.ids() == [b, c]
    assert s.push([c], one).tobytes() == first.tobytes()   # the slot came back at zero
    saved = s.export(c)
    kept = {k: np.array(v, copy=True) for k, v in saved.items()}
    s.push([c], one)
    assert all(np.array_equal(saved[k], kept[k]) for k in kept)  # a copy, not a view
    s.reset(c)
    assert s.push([c], one).tobytes() == first.tobytes()
    assert len(s) == 2 and s.capacity == 2


def test_failed_push_changes_no_state():
    class Fails(fr.Layer):
        armed = False

        def forward(self, x, training=False):
            if self.armed:
                raise RuntimeError("boom")
            return x

    bad = Fails()
    stack = [fr.LSTM(2, 3, seed=0), bad, fr.GRU(3, 2, seed=1)]
    s = fr.StreamSession(stack, 2)
    a = s.open()
    s.push([a], np.ones((1, 2), np.float32))
    before = s.export(a)
    bad.armed = True
    with pytest.raises(RuntimeError, match="boom"):
        s.push([a], np.ones((1, 2), np.float32))
    after = s.export(a)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_threads_share_a_session(rng):
    """Pushes from 6 threads at once, each on its own streams: every stream's
    outputs are what it gives alone (the session's lock keeps them apart)."""
    layer = fr.LSTM(8, 32, seed=0)
    s = fr.StreamSession(layer, 12)
    xs = rng.standard_normal((6, 20, 2, 8)).astype(np.float32)
    got = {}

    def work(w):
        ids = [s.open(), s.open()]
        got[w] = [s.push(ids, x) for x in xs[w]]

    threads = [threading.Thread(target=work, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pairs = []
    for w in range(6):
        for k in range(2):
            st = None
            for t in range(20):
                want, st = _ref_step(layer, xs[w, t, k], st)
                pairs.append((got[w][t][k], want))
    _check(pairs, np.float32, True)   # pushes of 2 streams: batch-1 bits today


def test_lock_serializes_pushes_of_one_stream():
    """4 threads push the same stream with the same input 40 times each: with
    the lock every push sees the state the previous one left (no push lost),
    so the stream ends where 160 steps in a row take it."""
    layer = fr.GRU(16, 64, seed=0)
    s = fr.StreamSession(layer, 2)
    a = s.open()
    x = np.full((1, 16), 0.01, np.float32)

    def work():
        for _ in range(40):
            s.push([a], x)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    st = None
    with fr.batch_invariant():   # as the session's pushes
        for _ in range(160):
            _, st = layer.step(x, st)
    assert s.export(a)["state0_h"].tobytes() == st[:, 0].tobytes()


# ---- errors ------------------------------------------------------------------------
def test_model_errors():
    with pytest.raises(ValueError, match="bidirectional.*future"):
        fr.StreamSession(fr.LSTM(2, 3, bidirectional=True), 4)
    with pytest.raises(ValueError, match=r"layer 1 \(LSTM\) is bidirectional"):
        fr.StreamSession([fr.GRU(2, 3), fr.LSTM(3, 3, bidirectional=True)], 4)
    with pytest.raises(ValueError, match="pools over whole sequences"):
        fr.StreamSession(fr.Sequential([fr.LSTM(2, 3), fr.LastStep()]), 4)
    with pytest.raises(TypeError, match="model: expected a recurrent layer"):
        fr.StreamSession("lstm", 4)
    with pytest.raises(TypeError, match=r"layer 1 \(int\) is not a fr.Layer"):
        fr.StreamSession([fr.LSTM(2, 3), 5], 4)
    with pytest.raises(ValueError, match="empty"):
        fr.StreamSession([], 4)
    with pytest.raises(ValueError, match="no layers"):
        fr.StreamSession(fr.Sequential(), 4)

    class Stateful(fr.Layer):
        carries_state = True

        def forward(self, x, training=False):
            return x

    with pytest.raises(TypeError, match="carries a state"):
        fr.StreamSession([Stateful()], 4)
    for cap, err in ((0, ValueError), (-1, ValueError), (True, TypeError), (2.0, TypeError)):
        with pytest.raises(err, match="capacity"):
            fr.StreamSession(fr.LSTM(2, 3), cap)


def test_capacity_and_id_errors():
    s = fr.StreamSession(fr.LSTM(2, 3, seed=0), 2)
    a, b = s.open(), s.open()
    with pytest.raises(RuntimeError, match="open: all 2 streams"):
        s.open()
    saved = s.export(a)
    with pytest.raises(RuntimeError, match="import_state: all 2 streams"):
        s.import_state(saved)
    s.close(b)
    for call in (s.close, s.reset, s.export):
        with pytest.raises(ValueError, match=f"stream_id: stream {b} is not open"):
            call(b)
        with pytest.raises(ValueError, match="stream_id: stream 99 is not open"):
            call(99)
        with pytest.raises(TypeError, match="stream_id: expected an int"):
            call("a")
        with pytest.raises(TypeError, match="stream_id: expected an int"):
            call(True)
    x1 = np.zeros((1, 2), np.float32)
    with pytest.raises(ValueError, match=rf"ids: stream {b} \(ids\[0\]\) is not open"):
        s.push([b], x1)
    c = s.open()
    with pytest.raises(ValueError, match=f"ids: stream {a} is given twice"):
        s.push([a, c, a], np.zeros((3, 2), np.float32))
    with pytest.raises(TypeError, match=r"ids: expected a sequence.*pass \["):
        s.push(a, x1)
    with pytest.raises(TypeError, match="ids: expected int stream ids"):
        s.push([1.0], x1)
    with pytest.raises(ValueError, match="ids: expected at least one"):
        s.push([], np.zeros((0, 2), np.float32))
    with pytest.raises(ValueError, match="ids: expected a 1-D"):
        s.push([[a]], x1)


def test_input_errors():
    s = fr.StreamSession(fr.LSTM(2, 3, seed=0), 3)
    a, b = s.open(), s.open()
    with pytest.raises(ValueError, match=r"x_t: expected shape \(2, 2\)"):
        s.push([a, b], np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError, match=r"x_t: expected shape \(2, 2\)"):
        s.push([a, b], np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"x_t: expected shape \(1, 2\)"):
        s.push([a], np.zeros(2, np.float32))
    with pytest.raises(TypeError, match="x_t: expected a real numeric array"):
        s.push([a], np.zeros((1, 2), complex))
    with pytest.raises(TypeError, match="x_t: expected a real numeric array"):
        s.push([a], np.zeros((1, 2), bool))
    with pytest.warns(UserWarning, match="x_t: float64 input cast to float32"):
        s.push([a], np.zeros((1, 2)))

    m = fr.Sequential([fr.Embedding(5, 2, seed=0), fr.GRU(2, 3, seed=1)])
    s = fr.StreamSession(m, 2)
    a, b = s.open(), s.open()
    with pytest.raises(ValueError, match=r"x_t: expected \(2,\) ids"):
        s.push([a, b], [[1], [2]])
    with pytest.raises(TypeError, match="x_t: expected integer ids"):
        s.push([a], [0.5])
    with pytest.raises(ValueError, match=r"x_t: ids must lie in 0..4"):
        s.push([a, b], [1, 5])
    assert s.push([a, b], [1.0, 4.0]).shape == (2, 3)   # whole floats, as Embedding takes


def test_import_errors():
    s = fr.StreamSession([fr.LSTM(2, 3, num_layers=2, seed=0), fr.GRU(3, 4, seed=1)], 4)
    good = s.export(s.open())
    assert sorted(good) == ["layout", "state0_c", "state0_h", "state1_h", "version"]
    assert good["state0_h"].shape == (2, 3) and good["state1_h"].shape == (1, 4)

    def changed(**kw):
        d = dict(good)
        for k, v in kw.items():
            if v is None:
                del d[k]
            else:
                d[k] = v
        return d

    cases = [
        ([1, 2], TypeError, "data: expected the dict"),
        (changed(version=None), ValueError, "no 'version' key"),
        (changed(version=2), ValueError, r"data\['version'\]: this fastrnn reads .* 1, got 2"),
        (changed(version="1"), TypeError, r"data\['version'\]: expected an int"),
        (changed(state1_h=None), ValueError, r"missing keys \['state1_h'\]"),
        (changed(extra=np.zeros(1)), ValueError, r"unexpected keys \['extra'\]"),
        (changed(layout="GRU(num_layers=1)"), ValueError, r"data\['layout'\]: the state is of"),
        (changed(layout=3), TypeError, r"data\['layout'\]: expected a str"),
        (changed(state0_c=np.zeros((2, 3))), TypeError,
         r"data\['state0_c'\]: expected dtype float32"),
        (changed(state1_h=np.zeros((4,), np.float32)), ValueError,
         r"data\['state1_h'\]: expected shape \(1, 4\)"),
        (changed(state0_h=np.zeros((2, 3), object)), TypeError, r"data\['state0_h'\]"),
    ]
    for data, err, msg in cases:
        with pytest.raises(err, match=msg):
            s.import_state(data)
    assert len(s) == 1   # no failed import took a slot
    other = fr.StreamSession(fr.LSTM(2, 3, num_layers=2, seed=0), 4)
    with pytest.raises(ValueError, match="missing keys|unexpected keys"):
        other.import_state(good)
