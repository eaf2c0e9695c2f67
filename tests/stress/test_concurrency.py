"""Several Python threads calling kernels at once: the GIL is released inside
them, so nothing may be shared by accident (workspaces are per call, the BLAS
thread pin is reference-counted)."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastrnn as fr
from fastrnn.backends.cpu import _ext


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("cell", ["LSTM", "GRU", "RNN"])
def test_eight_threads_one_layer_inference(cell, fast):
    _ext.set_fast_path(fast)
    try:
        layer = getattr(fr, cell)(24, 40, num_layers=2, bidirectional=True, seed=3)
        rng = np.random.default_rng(0)
        xs = [rng.standard_normal((9, 5, 24)).astype(np.float32) for _ in range(16)]
        lens = [rng.integers(1, 10, size=5) for _ in range(16)]
        expected = [layer(x, lengths=l)[0] for x, l in zip(xs, lens)]
        with ThreadPoolExecutor(8) as pool:
            for _ in range(3):
                got = list(pool.map(lambda a: layer(a[0], lengths=a[1])[0], zip(xs, lens)))
                for e, g in zip(expected, got):
                    assert np.array_equal(e, g)
    finally:
        _ext.set_fast_path(True)


def test_parallel_training_of_different_layers():
    """Training and inference of different layers in parallel threads give the
    same bits as one after another."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((12, 6, 10)).astype(np.float32)
    dy = rng.standard_normal((12, 6, 16)).astype(np.float32)

    def train(seed):
        layer = fr.GRU(10, 16, seed=seed)
        for _ in range(3):
            y, _ = layer.forward(x)
            layer.backward(dy)
        return {k: v.copy() for k, v in layer.grads.items()}, layer(x)[0]

    serial = [train(s) for s in range(6)]
    with ThreadPoolExecutor(6) as pool:
        parallel = list(pool.map(train, range(6)))
    for (g1, y1), (g2, y2) in zip(serial, parallel):
        assert np.array_equal(y1, y2)
        for k in g1:
            assert np.array_equal(g1[k], g2[k]), k


def test_step_from_threads_matches_sequential():
    lstm = fr.LSTM(8, 32, seed=0)
    rng = np.random.default_rng(2)
    frames = rng.standard_normal((20, 3, 8)).astype(np.float32)

    def stream(offset):
        state, out = None, []
        for t in range(20):
            y, state = lstm.step(frames[(t + offset) % 20], state)
            out.append(y)
        return np.stack(out)

    expected = [stream(o) for o in range(8)]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(stream, range(8)))
    for e, g in zip(expected, got):
        assert np.array_equal(e, g)


def test_blas_thread_count_restored():
    """fastrnn holds SciPy's BLAS at one thread only while its kernels run."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from fastrnn.backends.cpu import threads as _threads
    if not _threads.BLAS_PINNED:
        pytest.skip("SciPy's BLAS is not an OpenBLAS found by threadpoolctl")

    def blas_threads():
        return [i["num_threads"] for i in threadpoolctl.threadpool_info()
                if i["internal_api"] == "openblas" and "64_" not in i["filepath"]]

    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        before = blas_threads()
        layer = fr.LSTM(16, 32, seed=0)
        x = np.ones((5, 4, 16), np.float32)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: layer(x), range(8)))
        layer.forward(x)
        layer.backward(np.ones((5, 4, 32), np.float32))
        with pytest.raises(ValueError):
            layer(np.ones((5, 4, 3), np.float32))
        assert blas_threads() == before


@pytest.mark.parametrize("nt", [2, 3])
def test_threads_meeting_every_step_from_many_callers(nt, restore_threads):
    """Shapes whose time loops split the units between threads that meet
    every step (forward and backward), called from 6 Python threads at once:
    more loop threads than CPUs, each team meeting on its own counter. Every
    result has the bits of the same calls made one after another."""
    fr.set_num_threads(nt)
    rng = np.random.default_rng(7)
    layers = [fr.LSTM(32, 128, seed=1), fr.GRU(32, 128, seed=2)]
    x = rng.standard_normal((20, 5, 32)).astype(np.float32)
    dy = rng.standard_normal((20, 5, 128)).astype(np.float32)
    lens = np.array([20, 3, 17, 20, 9])

    def job(i):
        layer = layers[i % 2]
        if i % 3 == 2:  # training: a copy, so callers do not share grads
            layer = layer.__class__(32, 128, seed=1 + i % 2)
            layer.forward(x, lengths=lens)
            dx, _ = layer.backward(dy)
            return dx, layer.grads["weight_hh_l0"].copy()
        return layer(x, lengths=lens if i % 4 == 1 else None)[0], None

    expected = [job(i) for i in range(12)]
    with ThreadPoolExecutor(6) as pool:
        for _ in range(2):
            got = list(pool.map(job, range(12)))
            for (e0, e1), (g0, g1) in zip(expected, got):
                assert np.array_equal(e0, g0)
                if e1 is not None:
                    assert np.array_equal(e1, g1)
