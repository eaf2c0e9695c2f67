"""Measured thread counts, part of adaptive threads (fr.set_adaptive_threads):
a recurrent call of a small shape runs on one thread or on the full count,
whichever its shape's recent calls took less time with (src/runtime/pick.c).

The suite runs with adaptation off (conftest); these tests turn it on and
plant the times the calls record (_ext.plant_measured_times), so no verdict
depends on the machine's speed. benchmarks/RESULTS.md has the real figures.
"""
import functools
import threading

import numpy as np
import pytest

import fastrnn as fr
from fastrnn.backends.cpu import _ext

FAST, SLOW = 1_000, 3_000        # planted ns per step
SAMPLES = 5                      # pick.c: times kept per count; 2 * SAMPLES measuring calls
PROBE_FULL, PROBE_ONE = 8, 256   # pick.c: on one thread every 8th call tries the full count


@pytest.fixture
def measured(restore_threads):
    """Adaptation on, 2 threads, an empty table, the clock's times after."""
    was = fr.set_adaptive_threads(False)
    fr.set_num_threads(2)
    fr.set_adaptive_threads(True)
    _ext.forget_measured_threads()
    yield
    _ext.plant_measured_times(0, 0)
    _ext.forget_measured_threads()
    fr.set_adaptive_threads(False)
    fr.set_adaptive_threads(was)


def ones():
    return fr.thread_stats()["measured_one"]


def calls(layer, x, n):
    """n calls of layer on x; the measured_one count after them."""
    for _ in range(n):
        layer(x)
    return ones()


def stalls():
    return fr.thread_stats()["stalls"]


_planned = [0]   # stalls a test makes on purpose (set_leave_test)


def steady(test):
    """Run a test again where the machine itself stalled during it: the
    one-thread period a real stall starts sends calls to one thread without
    measuring them, and the counts the test checks move. A failure with no
    stall but the test's own is a failure."""
    @functools.wraps(test)
    def run(*args, **kwargs):
        for _ in range(5):
            _ext.forget_measured_threads()
            fr.set_adaptive_threads(False)   # no period left behind
            fr.set_adaptive_threads(True)
            _planned[0] = 0
            s0 = stalls()
            try:
                return test(*args, **kwargs)
            except AssertionError:
                if stalls() - s0 == _planned[0]:
                    raise
        pytest.skip("the machine stalled during each of 5 tries")
    return run


def small(rng, T=6, B=3, I=8, H=16):
    layer = fr.LSTM(I, H, seed=2)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    return layer, x


def taken():
    return fr.thread_stats()["taken_slices"]


@steady
def test_one_thread_where_its_calls_were_faster(measured, rng):
    """The count a call runs on shows in taken slices: with every call's
    second thread leaving after step 0 (set_leave_test), a call on two
    threads of a units-split shape (3 rows, H 96) has its first thread take
    the slices over; a call on one thread has none to take."""
    layer, x = small(rng, T=17, B=3, I=40, H=96)
    _ext.plant_measured_times(FAST, SLOW)
    before = ones()
    assert calls(layer, x, 2 * SAMPLES) == before   # 5 calls of each count, in turn
    s0 = stalls()
    _ext.set_leave_test(True)
    try:
        t0 = taken()
        for _ in range(PROBE_FULL - 1):
            layer(x)
        assert taken() == t0   # on one thread
        layer(x)
        assert taken() > t0    # every 8th call tries the full count
    finally:
        _ext.set_leave_test(False)
        _planned[0] += stalls() - s0
    assert ones() == before + PROBE_FULL - 1
    # the slices taken were a stall's: its one-thread period ended here
    fr.set_adaptive_threads(False)
    fr.set_adaptive_threads(True)
    assert calls(layer, x, PROBE_FULL) == before + 2 * (PROBE_FULL - 1)


@steady
def test_the_full_count_where_its_calls_were_faster(measured, rng):
    layer, x = small(rng)
    _ext.plant_measured_times(SLOW, FAST)
    before = ones()
    assert calls(layer, x, 2 * SAMPLES + 2 * PROBE_ONE) == before


@steady
def test_one_thread_only_where_clearly_faster(measured, rng):
    """One thread takes over when its time is under 0.9 of the full count's
    (a machine's hiccups on the full count seldom send a shape there); once
    there it stays while it is faster at all."""
    layer, x = small(rng)
    _ext.plant_measured_times(2_800, 3_000)
    before = ones()
    assert calls(layer, x, 2 * SAMPLES + 2 * PROBE_ONE) == before
    _ext.forget_measured_threads()
    _ext.plant_measured_times(2_600, 3_000)
    assert calls(layer, x, 2 * SAMPLES + PROBE_FULL) == before + PROBE_FULL - 1
    _ext.plant_measured_times(2_900, 3_000)
    assert calls(layer, x, 2 * PROBE_FULL) == before + 3 * (PROBE_FULL - 1)


@steady
def test_the_chosen_count_slowing_down_turns_the_verdict(measured, rng):
    layer, x = small(rng)
    _ext.plant_measured_times(FAST, SLOW)
    calls(layer, x, 2 * SAMPLES + PROBE_FULL)
    assert fr.thread_stats()["measured_one"] > 0
    _ext.plant_measured_times(SLOW, FAST)
    before = ones()
    # slow calls on one thread: its middle passes the full count's
    assert calls(layer, x, SAMPLES // 2 + 1) <= before + SAMPLES // 2 + 1
    turned = ones()
    assert calls(layer, x, 3 * PROBE_FULL) == turned


@steady
def test_shapes_are_measured_apart(measured, rng):
    """The verdict is per shape: another batch size starts measuring afresh."""
    layer, x = small(rng, B=3)
    _ext.plant_measured_times(FAST, SLOW)
    calls(layer, x, 2 * SAMPLES + PROBE_FULL)
    other = rng.standard_normal((6, 4, 8)).astype(np.float32)
    before = ones()
    assert calls(layer, other, 2 * SAMPLES) == before
    layer(other)
    assert ones() == before + 1


@steady
def test_training_forward_and_backward_are_measured_apart(measured, rng):
    """A training step's forward and backward (each its own entry in the
    table) both reach a verdict when they come in turn."""
    layer = fr.RNN(16, 127, seed=4)
    x = rng.standard_normal((13, 2, 16)).astype(np.float32)
    dy = np.ones((13, 2, 127), np.float32)
    _ext.plant_measured_times(FAST, SLOW)
    before = ones()
    for _ in range(2 * SAMPLES + PROBE_FULL):
        layer.zero_grad()
        layer.forward(x)
        layer.backward(dy)
    assert ones() == before + 2 * (PROBE_FULL - 1)


@steady
def test_many_shapes_in_turn_keep_their_verdicts(measured, rng):
    """Shapes that share a pair of slots (two ways) or not: 24 shapes in
    turn, each called between the others, all reach the verdict."""
    layers = [small(rng, B=b) for b in range(1, 25)]
    _ext.plant_measured_times(FAST, SLOW)
    before = ones()
    for _ in range(2 * SAMPLES + PROBE_FULL):
        for layer, x in layers:
            layer(x)
    assert ones() - before == len(layers) * (PROBE_FULL - 1)


@steady
def test_one_shape_in_four_kinds_of_call(measured, rng):
    """Inference, a frozen copy, training's forward and its backward of one
    shape in turn: four entries, each with its own verdict."""
    layer, x = small(rng, T=9, B=3, I=12, H=20)
    frozen = layer.freeze()
    dy = np.ones((9, 3, 20), np.float32)
    _ext.plant_measured_times(FAST, SLOW)
    before = ones()
    for _ in range(2 * SAMPLES + PROBE_FULL):
        layer(x)
        frozen(x)
        layer.zero_grad()
        layer.forward(x)
        layer.backward(dy)
    assert ones() == before + 4 * (PROBE_FULL - 1)


def test_off_measures_nothing(measured, rng):
    layer, x = small(rng)
    _ext.plant_measured_times(FAST, SLOW)
    fr.set_adaptive_threads(False)
    before = ones()
    assert calls(layer, x, 2 * SAMPLES + 2 * PROBE_FULL) == before


@pytest.mark.parametrize("cell, B, T, I, H, L, bidir", [
    ("lstm", 3, 1, 8, 16, 1, False),          # one step: the step team's
    ("lstm", 2, 4, 512, 512, 1, False),       # 2 * 4 * 512 * 1024 > 2^20 a step
    ("gru", 1, 3, 8, 350, 2, True),           # layer 1: 3 * 350 * 1050 > 2^20
    ("rnn", 1, 8200, 64, 320, 1, False),      # 2^17 a step, past 1e9 a call
])
def test_steps_large_steps_and_large_calls_are_not_measured(measured, rng, cell, B, T, I, H,
                                                            L, bidir):
    """One-step calls, steps past 2^20 multiply-adds (their meeting costs
    little) and calls past 1e9 (six measuring calls cost too much) keep the
    full count."""
    _ext.plant_measured_times(FAST, SLOW)
    layer = {"lstm": fr.LSTM, "gru": fr.GRU, "rnn": fr.RNN}[cell](I, H, num_layers=L,
                                                                  bidirectional=bidir, seed=1)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    before = ones()
    assert calls(layer, x, 2 * SAMPLES + PROBE_FULL) == before


@steady
def test_a_step_under_the_bound_is_measured(measured, rng):
    """The bound's other side: 2^20 multiply-adds a step exactly."""
    layer = fr.LSTM(256, 256, seed=1)   # 2 * 1024 * 512 = 2^20
    x = rng.standard_normal((3, 2, 256)).astype(np.float32)
    _ext.plant_measured_times(FAST, SLOW)
    before = ones()
    assert calls(layer, x, 2 * SAMPLES + PROBE_FULL) == before + PROBE_FULL - 1


def test_plant_bad_input():
    with pytest.raises(ValueError, match="plant_measured_times: expected times >= 0"):
        _ext.plant_measured_times(-1, 0)


def outputs(layer, x, lengths, train, state0=None):
    if not train:
        y, state = layer(x, state0, lengths=lengths)
        return [y, *(state if isinstance(state, tuple) else (state,))]
    layer.zero_grad()
    y, state = layer.forward(x, state0, lengths=lengths)
    dx, dstate0 = layer.backward(np.ones_like(y))
    got = [y, *(state if isinstance(state, tuple) else (state,)), dx,
           *(g.copy() for _, _, g in layer.parameters())]
    if state0 is not None:
        got += list(dstate0 if isinstance(dstate0, tuple) else (dstate0,))
    return got


@pytest.mark.parametrize("cell, B, T, I, H, L, bidir, var, train, dtype, given", [
    ("lstm", 3, 17, 40, 96, 1, False, False, False, "float32", False),
    ("gru", 5, 11, 7, 33, 2, True, True, False, "float32", True),
    ("rnn", 1, 13, 16, 127, 1, False, True, True, "float32", False),
    ("lstm", 6, 9, 5, 64, 2, True, True, True, "float32", True),
    ("gru", 2, 7, 3, 1, 1, False, False, True, "float32", False),
    ("lstm", 5, 13, 7, 31, 2, True, True, True, "float64", True),
    ("gru", 1, 11, 3, 17, 1, False, False, False, "float64", True)])
@pytest.mark.parametrize("plant", [(FAST, SLOW), (SLOW, FAST), (0, 0)])
def test_every_call_gives_the_bits_of_one_thread(measured, rng, cell, B, T, I, H, L, bidir,
                                                 var, train, dtype, given, plant):
    """Whatever count each call ran on (5 calls of each while measuring,
    then the verdict's, with its tries of the other), the outputs, states
    and gradients are those of one thread: float32 and float64, lengths,
    given initial states."""
    cls = {"lstm": fr.LSTM, "gru": fr.GRU, "rnn": fr.RNN}[cell]
    layer = cls(I, H, num_layers=L, bidirectional=bidir, seed=4, dtype=dtype)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    lengths = rng.integers(1, T + 1, size=B) if var else None
    if var:
        lengths[0] = T   # the last step counts
    state = None
    if given:
        h0 = rng.standard_normal((L * (2 if bidir else 1), B, H)).astype(dtype)
        state = (h0, h0 * 0.5) if cell == "lstm" else h0
    fr.set_num_threads(1)
    want = outputs(layer, x, lengths, train, state)
    fr.set_num_threads(2)
    _ext.plant_measured_times(*plant)
    for _ in range(2 * SAMPLES + PROBE_FULL + 1):
        got = outputs(layer, x, lengths, train, state)
        assert len(got) == len(want)
        for w, g in zip(want, got):
            assert np.array_equal(w, g)


@steady
@pytest.mark.parametrize("prec", ["int8", "bf16"])
def test_narrow_weights_are_measured_too(measured, rng, prec):
    """int8 and bf16 frozen layers (frq_forward): the same verdicts, apart
    from the float32 calls of the same shape, and one thread's bits."""
    layer = fr.LSTM(40, 96, seed=6)
    x = rng.standard_normal((9, 3, 40)).astype(np.float32)
    q = layer.freeze(weights=prec)
    fr.set_num_threads(1)
    want = q(x)
    fr.set_num_threads(2)
    _ext.plant_measured_times(FAST, SLOW)
    for _ in range(2 * SAMPLES):
        layer(x)   # float32: a shape of its own
    before = ones()
    for _ in range(2 * SAMPLES):
        got = q(x)
        assert np.array_equal(got[0], want[0])
    assert ones() == before
    for _ in range(PROBE_FULL):
        got = q(x)
        for w, g in zip((want[0], *want[1]), (got[0], *got[1])):
            assert np.array_equal(w, g)
    assert ones() == before + PROBE_FULL - 1


def test_threads_calling_at_once_keep_the_bits(measured, rng):
    """Calls from several Python threads share the table (a lock around it)."""
    layer, x = small(rng, T=20, B=4, I=12, H=40)
    fr.set_num_threads(1)
    want, _ = layer(x)
    fr.set_num_threads(2)
    bad = []

    def run():
        for _ in range(40):
            y, _ = layer(x)
            if not np.array_equal(y, want):
                bad.append(1)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad
