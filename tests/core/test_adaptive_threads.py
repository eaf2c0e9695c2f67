"""Adaptive threads (fr.set_adaptive_threads): a stall at a step's meeting
sends the next calls to one thread for a back-off period.

The suite runs with adaptation off (conftest: a loaded test machine must not
change the counts other tests check); these tests turn it on. The stalls are
reported through the same C entry the meetings call (fr_note_wait), so no
test depends on the machine's load; benchmarks/contention.py shows the real
thing with a competing process.
"""
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import fastrnn as fr
from fastrnn.backends.cpu import _ext

STALL_NS = 2_000_000   # fastrnn.h: a wait of 2 ms or more is a stall


@pytest.fixture
def adaptive(restore_threads):
    """Adaptation on, 2 threads fixed, no one-thread period left behind, no
    shape's measured verdict (test_measured_threads.py) from before."""
    was = fr.set_adaptive_threads(False)   # clears any period
    fr.set_num_threads(2)
    _ext.forget_measured_threads()
    fr.set_adaptive_threads(True)
    yield
    fr.set_adaptive_threads(False)
    _ext.forget_measured_threads()
    fr.set_adaptive_threads(was)


def test_switch_and_bad_input(adaptive):
    assert fr.get_adaptive_threads() is True
    assert fr.set_adaptive_threads(False) is True
    assert fr.get_adaptive_threads() is False
    assert fr.set_adaptive_threads(True) is False
    for bad in (2, "yes", None, 1.0):
        with pytest.raises(TypeError, match="set_adaptive_threads: expected True or False"):
            fr.set_adaptive_threads(bad)
    assert fr.get_adaptive_threads() is True


def test_a_short_wait_is_no_stall(adaptive):
    before = fr.thread_stats()
    _ext.note_wait(STALL_NS - 1)
    after = fr.thread_stats()
    assert after["stalls"] == before["stalls"]
    assert after["solo_periods"] == before["solo_periods"]
    assert fr.get_num_threads() == 2


def test_a_stall_gives_one_thread_for_the_period_then_the_full_count(adaptive):
    before = fr.thread_stats()
    _ext.note_wait(STALL_NS)
    s = fr.thread_stats()
    assert s["stalls"] == before["stalls"] + 1
    assert s["solo_periods"] == before["solo_periods"] + 1
    assert 0 < s["solo_seconds_left"] <= 0.02
    assert s["threads"] == 1 and s["full_threads"] == 2
    assert fr.get_num_threads() == 1
    # a stall inside the period (a call that started before it) starts none
    _ext.note_wait(10 * STALL_NS)
    assert fr.thread_stats()["solo_periods"] == s["solo_periods"]
    time.sleep(s["solo_seconds_left"] + 0.01)
    assert fr.get_num_threads() == 2
    assert fr.thread_stats()["solo_seconds_left"] == 0.0


def escalate(periods):
    """Stall, then stall again as soon as the full count is back, `periods`
    times in all: the back-off doubles each time after the first."""
    _ext.note_wait(STALL_NS)
    for _ in range(periods - 1):
        time.sleep(fr.thread_stats()["solo_seconds_left"] + 0.005)
        assert fr.get_num_threads() == 2   # the full count is back ...
        _ext.note_wait(STALL_NS)           # ... and its first call stalled at once
    return fr.thread_stats()["solo_seconds_left"]


def test_stalling_again_doubles_the_period(adaptive):
    assert 0.02 < escalate(2) <= 0.04
    fr.set_adaptive_threads(False)
    fr.set_adaptive_threads(True)
    assert 0.04 < escalate(3) <= 0.08


def test_a_lone_stall_later_starts_short(adaptive):
    """A stall of work begun 20 ms or more after the full count came back (a
    quiet machine's lone hiccup) starts the shortest period again, however
    long the back-off had grown: a long back-off is no trap."""
    second = escalate(4)
    assert 0.08 < second <= 0.16
    time.sleep(second + 0.005)
    assert fr.get_num_threads() == 2     # the full count is back here
    time.sleep(0.03)
    _ext.note_wait(STALL_NS)             # work begun 28 ms later stalls
    assert 0 < fr.thread_stats()["solo_seconds_left"] <= 0.02


def test_the_again_window_starts_at_the_first_full_call(adaptive):
    """The 20 ms count from the first call that takes the full count after a
    period, not from the period's end: a long call begun in the period runs
    on one thread past it, and the next call's stall still doubles."""
    second = escalate(2)
    time.sleep(second + 0.05)            # no call for 50 ms after the end
    assert fr.get_num_threads() == 2     # the first call with 2 threads ...
    _ext.note_wait(STALL_NS)             # ... stalls at once
    assert 0.04 < fr.thread_stats()["solo_seconds_left"] <= 0.08
    fr.set_adaptive_threads(False)
    fr.set_adaptive_threads(True)
    second = escalate(2)
    time.sleep(second + 0.05)
    _ext.note_wait(STALL_NS)             # no call took the full count: from the end
    assert 0 < fr.thread_stats()["solo_seconds_left"] <= 0.02


MS = 1_000_000


def stalls():
    return fr.thread_stats()["stalls"]


def test_a_region_that_lost_a_quarter_of_its_time_is_a_stall(adaptive):
    """A region in which a thread lost 1 ms and a quarter of the region's
    time to the OS (fr_region_end's reading of the CPU clocks) stalls; one
    that lost less of a long region does not."""
    s0 = stalls()
    _ext.note_region(10 * MS, 1 * MS)    # 10%: no stall (and judged: >= 4 ms)
    assert stalls() == s0 and fr.get_num_threads() == 2
    _ext.note_region(4 * MS, 1 * MS)
    assert stalls() == s0 + 1 and fr.get_num_threads() == 1


def test_short_regions_are_judged_together(adaptive):
    """A core shared with a spinning pool costs every short region a part of
    its time, under 1 ms each: their losses add up until 4 ms of regions."""
    s0 = stalls()
    for _ in range(2):
        _ext.note_region(MS + MS // 2, 2 * MS // 5)   # 27% of 1.5 ms, twice
    assert stalls() == s0 and fr.get_num_threads() == 2
    _ext.note_region(MS + MS // 2, 2 * MS // 5)       # 4.5 ms, 1.2 ms lost
    assert stalls() == s0 + 1 and fr.get_num_threads() == 1


def test_short_regions_that_lose_little_never_stall(adaptive):
    s0 = stalls()
    for _ in range(100):                 # 10% of every region, 100 ms of them
        _ext.note_region(MS, MS // 10)
    for _ in range(8):                   # 22% of a 4 ms window: under 1 ms
        _ext.note_region(MS // 2, 110_000)
    for _ in range(3):                   # 1.2 ms lost of 5.7 ms: under a quarter
        _ext.note_region(1_900_000, 400_000)
    _ext.note_region(MS // 2, 0)         # a window that starts clean
    assert stalls() == s0 and fr.get_num_threads() == 2


def test_a_stall_empties_the_window(adaptive):
    """The regions before a stall are judged by it: their losses do not add
    to the next regions' and stall again."""
    s0 = stalls()
    _ext.note_region(3 * MS, MS - 1)     # 33%, not yet 4 ms
    _ext.note_wait(STALL_NS)             # a stall at a meeting
    assert stalls() == s0 + 1
    time.sleep(fr.thread_stats()["solo_seconds_left"] + 0.005)
    _ext.note_region(MS, MS // 5)        # with the old 3 ms: 4 ms, 1.2 ms lost
    assert stalls() == s0 + 1 and fr.get_num_threads() == 2


def test_note_region_bad_input():
    for wall, lost in ((MS, 2 * MS), (-1, 0), (MS, -1)):
        with pytest.raises(ValueError, match="note_region: expected 0 <= lost_ns <= wall_ns"):
            _ext.note_region(wall, lost)


def test_off_counts_stalls_but_keeps_the_count(adaptive):
    fr.set_adaptive_threads(False)
    before = fr.thread_stats()
    _ext.note_wait(STALL_NS)
    after = fr.thread_stats()
    assert after["stalls"] == before["stalls"] + 1
    assert after["solo_periods"] == before["solo_periods"]
    assert fr.get_num_threads() == 2 and after["solo_seconds_left"] == 0.0


def test_turning_it_off_ends_the_period(adaptive):
    _ext.note_wait(STALL_NS)
    assert fr.get_num_threads() == 1
    fr.set_adaptive_threads(False)
    assert fr.get_num_threads() == 2
    fr.set_adaptive_threads(True)
    assert fr.get_num_threads() == 2   # the period is gone, not paused


def test_one_thread_already_stays_one(adaptive):
    fr.set_num_threads(1)
    _ext.note_wait(STALL_NS)
    assert fr.get_num_threads() == 1 and fr.thread_stats()["full_threads"] == 1


def test_calls_in_a_period_give_the_same_bits(adaptive, rng):
    """The calls a period sends to one thread give the bits of 2 threads
    (the thread count never changes a result)."""
    layer = fr.LSTM(24, 48, seed=3)
    x = rng.standard_normal((30, 5, 24)).astype(np.float32)
    y2, (h2, c2) = layer(x)
    _ext.note_wait(STALL_NS)
    assert fr.get_num_threads() == 1
    y1, (h1, c1) = layer(x)
    assert np.array_equal(y1, y2) and np.array_equal(h1, h2) and np.array_equal(c1, c2)


@pytest.mark.parametrize("value, want", [(None, "True"), ("0", "False"), ("off", "False"),
                                         ("FALSE", "False"), ("1", "True")])
def test_initial_setting_from_the_environment(value, want):
    env = {k: v for k, v in os.environ.items() if k != "FASTRNN_ADAPTIVE_THREADS"}
    if value is not None:
        env["FASTRNN_ADAPTIVE_THREADS"] = value
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", "import fastrnn as fr; "
                          "print(fr.get_adaptive_threads())"], env=env, capture_output=True,
                         text=True, check=True, cwd=root)
    assert out.stdout.strip() == want


# units-split shapes: 1-3 rows, 2 rows a thread with lengths, or a W_hh
# past FR_FAST_ROWS_MAX_FLOATS (RNN H=384: 147 Ki floats)
@pytest.mark.parametrize("cell, B, T, I, H, var, train", [
    ("lstm", 3, 17, 40, 96, False, False), ("gru", 2, 11, 7, 160, True, False),
    ("lstm", 1, 13, 33, 128, False, True), ("rnn", 5, 9, 16, 384, True, True),
    ("lstm", 2, 7, 5, 199, True, False), ("lstm", 4, 7, 5, 199, True, False)])
def test_a_step_taken_over_keeps_the_bits(adaptive, rng, cell, B, T, I, H, var, train):
    """The units split's slices are claimable: after a stall during a call
    (forced here for every call) the second thread leaves after step 0 and
    the first takes its slices. Same bits as 1 thread, and the stats show
    the slices were taken."""
    layer = {"lstm": fr.LSTM, "gru": fr.GRU, "rnn": fr.RNN}[cell](I, H, seed=5)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    lengths = rng.integers(1, T + 1, size=B) if var else None
    if var:
        lengths[0] = T

    def run():
        if train:
            return layer.forward(x, lengths=lengths)
        return layer(x, lengths=lengths)

    fr.set_num_threads(1)
    want = run()
    fr.set_num_threads(2)
    before = fr.thread_stats()["taken_slices"]
    _ext.set_leave_test(True)
    try:
        got = run()
    finally:
        _ext.set_leave_test(False)
    assert fr.thread_stats()["taken_slices"] > before
    for w, g in zip(want if isinstance(want, tuple) else (want,),
                    got if isinstance(got, tuple) else (got,)):
        for a, b in zip(w if isinstance(w, tuple) else (w,), g if isinstance(g, tuple) else (g,)):
            assert np.array_equal(a, b)
