"""Models shared by threads, models trained in parallel threads, and fastrnn
inside a thread pool (tests/test_concurrency.py does the same for bare layers).

The kernels release the GIL, so two threads really run a model at once:
nothing a call writes may be shared (workspaces and outputs are per call;
predict/evaluate neither read nor change the model's train/eval mode).

Nested parallelism: each thread that calls a kernel gets its own OpenMP team
of fr.get_num_threads() threads. OpenMP limits are per thread: a
threadpoolctl limit entered in the main thread does not reach the workers of a
ThreadPoolExecutor (libgomp semantics); enter it inside each worker, or use
fr.set_num_threads(n), which holds for every thread. With
ThreadpoolController().select(user_api="openmp").limit(1) or set_num_threads
the results are bit-identical (the thread count never changes the bits).
threadpool_limits(1, user_api="openmp") inside workers limits as well, but on
exit it restores *every* library's count, the BLAS's included, from whatever
it read on entry: that overrides the one-thread BLAS pin of kernels running in
other workers at that moment, and their GEMMs may then differ in the last bit.
"""
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastrnn as fr


def _classifier(seed=0):
    m = fr.Sequential([fr.Embedding(30, 8), fr.LSTM(8, 16, batch_first=True, bidirectional=True),
                       fr.Dropout(0.3), fr.AttentionPooling(32, 8), fr.Dense(32, 4)], seed=seed)
    m.compile(loss="cross_entropy", optimizer="adam", clip_norm=1.0, metrics=["accuracy"])
    return m


def _batches(n=16, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        B = int(rng.integers(1, 9))
        X = rng.integers(0, 30, size=(B, 11))
        out.append((X, rng.integers(1, 12, size=B), rng.integers(0, 4, size=B)))
    return out


def test_eight_threads_one_model_predict_equal_sequential():
    m = _classifier()
    data = _batches()
    m.fit(np.concatenate([d[0] for d in data[:4]]), np.concatenate([d[2] for d in data[:4]]),
          lengths=np.concatenate([d[1] for d in data[:4]]), epochs=1, batch_size=8, verbose=0,
          seed=0)
    m.train()  # mode must be neither read nor changed by predict
    expected = [m.predict(X, lengths=L) for X, L, _ in data]
    raw = [m(X, lengths=L) for X, L, _ in data]
    evals = [m.evaluate(X, y, lengths=L) for X, L, y in data]
    with ThreadPoolExecutor(8) as pool:
        for _ in range(3):
            got = list(pool.map(lambda d: m.predict(d[0], lengths=d[1]), data))
            got_raw = list(pool.map(lambda d: m(d[0], lengths=d[1]), data))
            got_ev = list(pool.map(lambda d: m.evaluate(d[0], d[2], lengths=d[1]), data))
            for e, g in zip(expected, got):
                np.testing.assert_array_equal(e, g)
            for e, g in zip(raw, got_raw):
                np.testing.assert_array_equal(e, g)
            assert got_ev == evals
    assert m.training and all(l.training for l in m.layers)


def test_step_streams_from_threads():
    m = fr.Sequential([fr.Embedding(20, 6), fr.GRU(6, 12, batch_first=True, num_layers=2),
                       fr.Dense(12, 20)], seed=1)
    prompts = [np.arange(k, k + 9) % 20 for k in range(8)]

    def stream(p):
        states, outs = None, []
        for t in p:
            out, states = m.step(np.array([t]), states)
            outs.append(out)
        return np.concatenate(outs)

    expected = [stream(p) for p in prompts]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(stream, prompts))
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(e, g)


def _train(seed):
    """A model trained on its own data: weights and history."""
    m = _classifier(seed)
    X = np.concatenate([d[0] for d in _batches(6, seed)])
    L = np.concatenate([d[1] for d in _batches(6, seed)])
    y = np.concatenate([d[2] for d in _batches(6, seed)])
    h = m.fit(X, y, lengths=L, epochs=2, batch_size=8, verbose=0, seed=seed,
              validation_data=(X[:5], y[:5], L[:5]))
    return [p.copy() for _, p, _ in m.parameters()], h.history


def test_parallel_training_of_different_models_is_bit_identical():
    serial = [_train(s) for s in range(4)]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(_train, range(4)))
    for (w1, h1), (w2, h2) in zip(serial, parallel):
        assert h1 == h2
        for a, b in zip(w1, w2):
            np.testing.assert_array_equal(a, b)


def test_training_beside_inference_threads():
    """One thread trains model A while seven predict with model B: both give
    what they give alone."""
    b = _classifier(5)
    data = _batches(14, 3)
    expected = [b.predict(X, lengths=L) for X, L, _ in data]
    alone = _train(7)
    with ThreadPoolExecutor(8) as pool:
        trained = pool.submit(_train, 7)
        preds = list(pool.map(lambda d: b.predict(d[0], lengths=d[1]), data))
        w, h = trained.result()
    for e, g in zip(expected, preds):
        np.testing.assert_array_equal(e, g)
    assert h == alone[1]
    for x1, x2 in zip(w, alone[0]):
        np.testing.assert_array_equal(x1, x2)


def _tasks():
    return len(os.listdir("/proc/self/task"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="threads counted in /proc")
def test_nested_parallelism_limited_in_a_thread_pool(restore_threads):
    """W pool workers calling kernels: with a threadpoolctl OpenMP limit of 1
    entered in each worker, or fr.set_num_threads(1), no OpenMP thread is
    started beyond the W workers; without a limit at most W*(n-1) are. The
    results are the same bits, except under threadpool_limits in the workers
    (see the module docstring): equal to float32 rounding there."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    lstm = fr.LSTM(32, 64, num_layers=2, seed=0)
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((20, 32, 32)).astype(np.float32) for _ in range(8)]
    expected = [lstm(x)[0] for x in xs]
    W = 4

    omp = threadpoolctl.ThreadpoolController().select(user_api="openmp")

    def limited(x):  # touches only the OpenMP runtime, on entry and exit
        with omp.limit(limits=1):
            return fr.get_num_threads(), lstm(x)[0], _tasks()

    def limited_all(x):  # restores every library (BLAS too) on exit
        with threadpoolctl.threadpool_limits(1, user_api="openmp"):
            return fr.get_num_threads(), lstm(x)[0], _tasks()

    def plain(x):
        return fr.get_num_threads(), lstm(x)[0], _tasks()

    def run(fn, exact=True):
        base = _tasks()
        with ThreadPoolExecutor(W) as pool:
            out = list(pool.map(fn, xs))
        for e, (_, y, _) in zip(expected, out):
            if exact:
                np.testing.assert_array_equal(e, y)
            else:
                np.testing.assert_allclose(e, y, rtol=1e-5, atol=1e-6)
        return base, [o[0] for o in out], max(o[2] for o in out)

    base, ns, peak = run(limited)
    assert ns == [1] * len(xs)
    assert peak <= base + W
    base, ns, peak = run(limited_all, exact=False)
    assert ns == [1] * len(xs) and peak <= base + W
    # a limit entered in the main thread stays in the main thread
    with threadpoolctl.threadpool_limits(1, user_api="openmp"):
        assert fr.get_num_threads() == 1
    fr.set_num_threads(1)
    base, ns, peak = run(plain)
    assert ns == [1] * len(xs) and peak <= base + W
    fr.set_num_threads(2)
    base, ns, peak = run(plain)
    assert ns == [2] * len(xs) and peak <= base + W * 2
