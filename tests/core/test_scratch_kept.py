"""The scratch buffer kept between kernel calls (backends/cpu/_arrays.pxi,
_take_scratch): its stale content never reaches a result, it is never shared
by two calls at once, and its size stays bounded."""
import threading

import numpy as np
import pytest

import fastrnn as fr
from fastrnn.backends.cpu import _ext

@pytest.fixture(autouse=True)
def keep_every_size():
    """Keep buffers of any size (the pool starts at 32 MiB), so these small
    cases run through it."""
    old = _ext._SCRATCH_MIN
    _ext._SCRATCH_MIN = 0
    yield
    _ext._SCRATCH_MIN = old
    _ext.release_scratch()


CASES = [  # cell, I, H, layers, bidirectional, T, B, lengths, training, dtype
    ("LSTM", 5, 7, 1, False, 6, 3, False, False, np.float32),
    ("LSTM", 8, 16, 2, True, 9, 4, True, True, np.float32),
    ("GRU", 3, 11, 1, True, 5, 2, True, False, np.float32),
    ("GRU", 6, 5, 2, False, 4, 3, False, True, np.float64),
    ("RNN", 4, 9, 1, False, 7, 1, False, True, np.float64),
    ("LSTM", 32, 128, 1, False, 30, 64, False, False, np.float32),
]


def _poison():
    """Keep NaN-filled scratch for both dtypes, and bytes of 0xFF (a NaN as
    float32, -1 as int8) for the int8/bf16 kernels, larger than any case
    needs."""
    for dt in (np.float32, np.float64):
        for slot in (0, 1):   # a call's scratch, a training forward's cache
            _ext._scratch_kept[2 * np.dtype(dt).num + slot] = np.full(1 << 21, np.nan, dt)
    _ext._scratch_kept[2 * np.dtype(np.uint8).num] = np.full(1 << 23, 0xFF, np.uint8)


def _results(case):
    cell, I, H, L, bi, T, B, with_lengths, training, dt = case
    layer = getattr(fr, cell)(I, H, num_layers=L, bidirectional=bi,
                              dtype=np.dtype(dt).name, seed=3)
    rng = np.random.default_rng(T * 100 + B)
    x = rng.standard_normal((T, B, I)).astype(dt)
    lengths = rng.integers(1, T + 1, size=B) if with_lengths else None
    if not training:
        y, st = layer.freeze()(x, lengths=lengths)
        return [y] + (list(st) if isinstance(st, tuple) else [st])
    layer.zero_grad()
    y, st = layer.forward(x, lengths=lengths)
    dx = layer.backward(np.ones_like(y))[0]
    return [y, dx] + [g.copy() for g in layer.grads.values()]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c[:9])))
def test_stale_scratch_never_reaches_a_result(case):
    _ext.release_scratch()
    fresh = _results(case)
    _poison()
    stale = _results(case)
    _ext.release_scratch()
    for a, b in zip(fresh, stale):
        assert np.array_equal(a, b, equal_nan=True)
        assert np.all(np.isfinite(b))


@pytest.mark.parametrize("weights", ["int8", "bf16"])
@pytest.mark.parametrize("cell,bi,with_lengths", [("LSTM", False, False), ("GRU", True, True),
                                                  ("RNN", False, True)])
def test_stale_scratch_never_reaches_a_narrow_result(weights, cell, bi, with_lengths):
    rng = np.random.default_rng(7)
    q = getattr(fr, cell)(9, 21, num_layers=2, bidirectional=bi, seed=1).freeze(weights=weights)
    x = rng.standard_normal((11, 5, 9)).astype(np.float32)
    lengths = rng.integers(1, 12, size=5) if with_lengths else None

    def run():
        y, st = q(x, lengths=lengths)
        return [y] + (list(st) if isinstance(st, tuple) else [st])

    _ext.release_scratch()
    fresh = run()
    _poison()
    stale = run()
    _ext.release_scratch()
    for a, b in zip(fresh, stale):
        assert np.array_equal(a, b) and np.all(np.isfinite(b))


def test_one_buffer_a_dtype_and_not_past_the_cap():
    _ext.release_scratch()
    lstm = fr.LSTM(16, 32, seed=0)
    for T in (3, 40, 7):   # a larger call keeps the larger buffer
        lstm(np.ones((T, 8, 16), np.float32))
    kept = _ext._scratch_kept
    key = 2 * np.dtype(np.float32).num
    assert list(kept) == [key]
    big = kept[key].shape[0]
    lstm(np.ones((3, 8, 16), np.float32))
    assert kept[key].shape[0] == big
    # a training forward lends its cache (slot 1); its backward gives it back
    y, _ = lstm.forward(np.ones((5, 8, 16), np.float32))
    assert key + 1 not in kept
    lstm.backward(np.ones_like(y))
    assert kept[key + 1].shape[0] >= y.size
    _ext.release_scratch()
    assert not _ext._scratch_kept
    # a call whose scratch is past the cap, or under the floor, keeps nothing
    old = _ext._SCRATCH_KEEP
    try:
        _ext._SCRATCH_KEEP = 1024
        lstm(np.ones((40, 8, 16), np.float32))
        assert not _ext._scratch_kept
    finally:
        _ext._SCRATCH_KEEP = old
    _ext._SCRATCH_MIN = 1 << 25
    lstm(np.ones((40, 8, 16), np.float32))
    y, _ = lstm.forward(np.ones((5, 8, 16), np.float32))
    lstm.backward(np.ones_like(y))
    assert not _ext._scratch_kept


def test_a_cache_the_caller_made_is_never_kept():
    """Only caches a training forward lent go back: one made by the caller
    (or given back already) stays the caller's."""
    _ext.release_scratch()
    lstm = fr.LSTM(4, 6, seed=0)
    x = np.ones((3, 2, 4), np.float32)
    y, _ = lstm.forward(x)
    lent = lstm._ctx["cache"]
    mine = lent.copy()
    plan, grads = lstm._plan("params"), lstm._plan("grads")
    dy = np.ones_like(y)
    _ext.backward(plan, grads, x, None, None, mine, dy, None, None, False, 1)
    assert not _ext._scratch_kept.get(2 * np.dtype(np.float32).num + 1)
    _ext.backward(plan, grads, x, None, None, lent, dy, None, None, False, 1)
    kept = _ext._scratch_kept[2 * np.dtype(np.float32).num + 1]
    _ext.backward(plan, grads, x, None, None, lent, dy, None, None, False, 1)  # again
    assert _ext._scratch_kept[2 * np.dtype(np.float32).num + 1] is kept
    assert mine.base is None and np.array_equal(mine, lent)


def test_calls_on_several_threads_get_their_own_buffers():
    """Threads calling at once: each result as the call made alone."""
    _ext.release_scratch()
    layers = [fr.LSTM(12, 24, seed=s).freeze() for s in range(4)]
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((20 + 7 * i, 5, 12)).astype(np.float32) for i in range(4)]
    want = [q(x)[0] for q, x in zip(layers, xs)]
    errors = []

    def work(i):
        try:
            for _ in range(60):
                if not np.array_equal(layers[i](xs[i])[0], want[i]):
                    errors.append(i)
                    return
        except Exception as e:  # pragma: no cover - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
