"""The step team (src/runtime/team.h): one-step calls on helper threads of
fastrnn's own instead of an OpenMP region. Same bits as the OpenMP path (and
the whole-sequence call to rounding), from several Python threads at once, after the
helpers fell asleep, and in a child after fork()."""
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastrnn as fr
from fastrnn.backends.cpu import _ext
from conftest import helpers_ns

steps = helpers_ns.stream


@pytest.fixture
def two_threads():
    """Two threads and the step team on (it is off by default)."""
    was = fr.get_num_threads()
    fr.set_num_threads(2)
    team_was = fr.set_step_team(True)
    yield
    fr.set_step_team(team_was)
    fr.set_num_threads(was)


QUIET_S = 0.06  # past FR_TEAM_QUIET_MS (src/fast/tuning.h) after an OpenMP region


def team_runs(layer, x, state):
    """Whether a step of this layer runs on the team here (it needs the fast
    path, two CPUs, a split of at least two slices, and no OpenMP region in
    the last FR_TEAM_QUIET_MS)."""
    time.sleep(QUIET_S)
    before = _ext.step_team_jobs()
    layer.step(x, state)
    return _ext.step_team_jobs() != before


def flat(state):
    return np.concatenate([np.ravel(s) for s in (state if isinstance(state, tuple) else (state,))])


# each with enough work for two slices (units split: B=1, or H a multiple
# of 16); odd and prime sizes included
CASES = [("LSTM", 128, 128, 1, 1), ("LSTM", 40, 256, 1, 1), ("LSTM", 7, 131, 1, 2),
         ("LSTM", 13, 144, 3, 1), ("GRU", 1, 149, 1, 1), ("GRU", 33, 208, 2, 1),
         ("RNN", 128, 512, 1, 1), ("RNN", 5, 257, 1, 1)]


@pytest.mark.parametrize("cell,I,H,B,L", CASES)
@pytest.mark.parametrize("frozen", [False, True])
def test_team_steps_match_openmp_and_full_call(two_threads, cell, I, H, B, L, frozen):
    layer = getattr(fr, cell)(I, H, num_layers=L, seed=5)
    if frozen:
        layer = layer.freeze()
    rng = np.random.default_rng(H)
    frames = rng.standard_normal((6, B, I)).astype(np.float32)
    if not team_runs(layer, frames[0], None):
        pytest.skip("the step team does not run here (no fast path, or one CPU)")
    y_team, s_team = steps(layer, frames)
    fr.set_step_team(False)
    try:
        y_omp, s_omp = steps(layer, frames)
    finally:
        fr.set_step_team(True)
    assert np.array_equal(y_team, y_omp)
    assert np.array_equal(flat(s_team), flat(s_omp))
    # the whole sequence takes packed panels (another summation order)
    y_full, s_full = layer(frames)
    np.testing.assert_allclose(y_team, y_full, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(flat(s_team), flat(s_full), rtol=1e-5, atol=1e-6)


# one-step calls of the whole API (inference and the training forward with
# T = 1) on the team, against torch: cell, I, H, B, lengths given
TORCH_CASES = [("lstm", 7, 131, 1, False), ("gru", 13, 149, 1, True),
               ("rnn_tanh", 5, 257, 1, False), ("lstm", 3, 144, 3, True),
               ("gru", 11, 208, 2, False)]


@pytest.mark.parametrize("cell,I,H,B,with_lengths", TORCH_CASES)
def test_team_one_step_calls_against_torch(two_threads, helpers, cell, I, H, B, with_lengths):
    """Inference and training of one time step on the team, from given
    states (and lengths of 1 where given): outputs, states, dx, dh0 and every
    gradient against torch; the team ran each forward."""
    rng = np.random.default_rng(H)
    module, layer = helpers.make_pair(cell, I, H, torch_seed=3)
    x = rng.standard_normal((1, B, I)).astype(np.float32)
    lengths = np.ones(B, np.int64) if with_lengths else None
    h0 = (0.5 * rng.standard_normal((1, B, H))).astype(np.float32)
    c0 = (0.5 * rng.standard_normal((1, B, H))).astype(np.float32)
    lstm = cell == "lstm"
    state0 = (h0, c0) if lstm else h0
    R = rng.standard_normal((1, B, H)).astype(np.float32)
    R_h = rng.standard_normal((1, B, H)).astype(np.float32)
    ref = helpers.torch_run(module, x, state0, lengths, R=R, R_h=R_h, R_c=R_h if lstm else None)
    time.sleep(QUIET_S)
    before = _ext.step_team_jobs()
    y_inf, _ = layer(x, state0, lengths=lengths)
    y, st = layer.forward(x, state0, lengths=lengths)
    if _ext.step_team_jobs() - before != 2:
        pytest.skip("the step team does not run here")
    dx, ds0 = layer.backward(R, (R_h, R_h) if lstm else R_h)
    f32 = np.float32
    helpers.assert_close(y_inf, ref["y"], f32, "y (inference)")
    helpers.assert_close(y, ref["y"], f32, "y")
    helpers.assert_close(st[0] if lstm else st, ref["h_n"], f32, "h_n")
    if lstm:
        helpers.assert_close(st[1], ref["c_n"], f32, "c_n")
    helpers.assert_close(dx, ref["dx"], f32, "dx")
    helpers.assert_close(ds0[0] if lstm else ds0, ref["dh0"], f32, "dh0")
    for name, g in ref["grads"].items():
        helpers.assert_close(layer.grads[name], g, f32, f"grads[{name}]")


def test_team_wakes_sleeping_helpers(two_threads):
    """Steps far apart: the helpers have stopped spinning and sleep; every
    call still gives the same bits (and the caller never waits for them)."""
    layer = fr.LSTM(64, 128, seed=1)
    rng = np.random.default_rng(0)
    frames = rng.standard_normal((5, 1, 64)).astype(np.float32)
    if not team_runs(layer, frames[0], None):
        pytest.skip("the step team does not run here")
    expected, _ = steps(layer, frames)  # back to back: the helpers spin
    state = None
    for t in range(5):
        time.sleep(0.02)  # far past the helpers' spinning (~1 ms)
        y, state = layer.step(frames[t], state)
        assert np.array_equal(y, expected[t])


def test_team_from_many_python_threads(two_threads):
    """Eight streams at once: one caller holds the team, the others take
    OpenMP; every stream equals its own sequential run."""
    rng = np.random.default_rng(3)
    layers = [fr.LSTM(32, 128, seed=s) if s % 2 else fr.GRU(32, 96, seed=s) for s in range(8)]
    frames = [rng.standard_normal((30, 1, 32)).astype(np.float32) for _ in range(8)]
    expected = [steps(layer, f)[0] for layer, f in zip(layers, frames)]
    with ThreadPoolExecutor(8) as pool:
        for _ in range(3):
            got = list(pool.map(lambda a: steps(*a)[0], zip(layers, frames)))
            for e, g in zip(expected, got):
                assert np.array_equal(e, g)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_team_in_a_forked_child(two_threads):
    """The child of fork() has no helpers: it starts its own and gets the
    parent's bits."""
    layer = fr.LSTM(48, 128, seed=2)
    rng = np.random.default_rng(4)
    frames = rng.standard_normal((4, 1, 48)).astype(np.float32)
    if not team_runs(layer, frames[0], None):
        pytest.skip("the step team does not run here")
    expected, _ = steps(layer, frames)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            os.close(r)
            before = _ext.step_team_jobs()
            got, _ = steps(layer, frames)
            ok = np.array_equal(got, expected) and _ext.step_team_jobs() != before
            os.write(w, b"ok" if ok else b"bad")
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        answer = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert answer == b"ok"


def test_no_team_right_after_an_openmp_region(two_threads):
    """libgomp's threads spin for milliseconds after a region: a step then
    runs on them, not on the team (whose helpers would leave more busy
    threads than cores), until the quiet time has passed."""
    layer = fr.LSTM(128, 128, seed=6)
    big = fr.LSTM(64, 128, seed=7)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 128)).astype(np.float32)
    X = rng.standard_normal((40, 8, 64)).astype(np.float32)
    if not team_runs(layer, x, None):
        pytest.skip("the step team does not run here")
    expected, state = layer.step(x, None)
    for _ in range(3):
        big(X)  # OpenMP regions of two threads
        before = _ext.step_team_jobs()
        y, _ = layer.step(x, None)
        assert _ext.step_team_jobs() == before
        assert np.array_equal(y, expected)
    time.sleep(QUIET_S)
    before = _ext.step_team_jobs()
    y, _ = layer.step(x, None)
    assert _ext.step_team_jobs() == before + 1
    assert np.array_equal(y, expected)


def test_team_off_by_default_and_reported():
    """Off in a fresh process; set_step_team returns the previous setting,
    get_step_team the current one, and only booleans are taken."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", "import fastrnn as fr; print(fr.get_step_team())"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
    was = fr.set_step_team(True)
    try:
        assert fr.get_step_team() is True
        assert fr.set_step_team(False) is True
        assert fr.get_step_team() is False
        for bad in ("yes", 2, None, 1.0):
            with pytest.raises(TypeError, match="set_step_team"):
                fr.set_step_team(bad)
    finally:
        fr.set_step_team(was)
    assert fr.get_step_team() is was


def test_team_off_runs_nothing_on_it():
    """With the team off (the default), a step never takes it."""
    layer = fr.LSTM(128, 128, seed=8)
    x = np.ones((1, 128), np.float32)
    was = fr.set_step_team(False)
    try:
        time.sleep(QUIET_S)
        before = _ext.step_team_jobs()
        layer.step(x)
        layer.step(x)
        assert _ext.step_team_jobs() == before
    finally:
        fr.set_step_team(was)
