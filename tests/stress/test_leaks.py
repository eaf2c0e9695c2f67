"""Memory stays flat: after a warm-up, many more inference and training
calls of each layer kind, of a Sequential (fit and predict), of the CTC loss
and of frozen layers leave the C heap and Python's traced memory where they
were, to within a quarter of one state-sized array (B*H float32) a call.

Two exact counters, not RSS (pages, allocator caches: a 4 KiB-a-call leak
hid in RSS noise under the old 8 MiB bound):

- the C heap: glibc's mallinfo2() bytes in use (uordblks + hblkhd), which
  counts every malloc of the kernels, of Cython's boundary and of NumPy's
  array data, exactly and across all arenas;
- Python's memory: tracemalloc's traced bytes (Python objects, and NumPy's
  array data, which NumPy reports to tracemalloc).

The bound: LEAK_UNIT = 8*32*4 bytes, the h_n of one layer-direction of the
recurrent workloads (B=8, H=32, float32); a workload fails when either
counter grows by LEAK_UNIT/4 a call or more over CALLS calls. Clean runs
grow by 0 bytes of C heap and at most a few hundred bytes of traced memory
in all, except the frozen workload's new copy every call (caches that fill
and stop: about 100 bytes a call at first, fewer later), so the bound is
more than twice the largest clean growth and a quarter of the smallest leak
it must catch. test_planted_leak_is_caught plants such a leak on every
recurrent call, in Python (an array kept in a list) and in C (a malloc
never freed), and checks the test catches each; FASTRNN_LEAK_PLANT=python
or =c plants it in every test here (they must then fail).

CI runs FASTRNN_LEAK_CALLS=200 calls per workload (a quarter of that for
Sequential, whose call is a whole fit or predict); tools/leak_check.py runs
10,000 and prints RSS. Linux with glibc 2.33+ only (mallinfo2).
"""
import ctypes
import gc
import os
import tracemalloc

import numpy as np
import pytest

import fastrnn as fr

CALLS = int(os.environ.get("FASTRNN_LEAK_CALLS", "200"))
WARMUP = 50
# One state-sized array (B=8, H=32, float32) a call is the smallest leak the
# test must catch; a quarter of it a call is allowed (see the docstring).
LEAK_UNIT = 8 * 32 * 4
PER_CALL_BOUND = LEAK_UNIT // 4
PLANT = os.environ.get("FASTRNN_LEAK_PLANT", "")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]


try:
    _LIBC = ctypes.CDLL(None)
    _LIBC.mallinfo2.restype = _MallInfo2
    _LIBC.malloc.restype = ctypes.c_void_p
    _LIBC.malloc.argtypes = [ctypes.c_size_t]
except (OSError, AttributeError):  # not glibc, or glibc before 2.33
    _LIBC = None

pytestmark = [
    pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="RSS read from /proc (Linux)"),
    # AddressSanitizer holds freed memory in its quarantine and replaces malloc
    pytest.mark.skipif(bool(os.environ.get("FASTRNN_SANITIZED")), reason="under ASan (quarantine)"),
]


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def heap():
    """Bytes of C heap in use (malloc'ed and not freed), all arenas."""
    m = _LIBC.mallinfo2()
    return m.uordblks + m.hblkhd


_KEPT = []  # the planted Python-side leak's list


def plant_leak(monkeypatch, kind):
    """Make every recurrent call of the CPU backend leak LEAK_UNIT bytes:
    kind "python" keeps an array in a module list, kind "c" mallocs and
    never frees."""
    from fastrnn import backends
    be = backends.get("cpu")
    forward = be.rnn_forward

    def leaky(*args, **kw):
        if kind == "python":
            _KEPT.append(np.empty(LEAK_UNIT // 4, np.float32))
        else:
            _LIBC.malloc(LEAK_UNIT)
        return forward(*args, **kw)
    monkeypatch.setattr(be, "rnn_forward", leaky)


def _recurrent(cls, training, **kw):
    layer = cls(16, 32, num_layers=2, bidirectional=True, seed=0, **kw)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 8, 16)).astype(np.float32)
    lengths = rng.integers(1, 13, size=8)
    dy = rng.standard_normal((12, 8, 64)).astype(np.float32)
    if not training:
        streaming = cls(16, 32, seed=0, **kw)  # step() streams one direction
        state = [None]

        def run():
            layer(x, lengths=lengths)
            y, state[0] = streaming.step(x[0], state[0])
        return run

    def run():
        layer.forward(x, lengths=lengths)
        layer.backward(dy)
    return run


def _model_layers(training):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 12, 16)).astype(np.float32)
    lengths = rng.integers(1, 13, size=8)
    ids = rng.integers(0, 50, size=(8, 12))
    stack = [fr.Dense(16, 16, activation="tanh", seed=0), fr.Activation("relu"),
             fr.Dropout(0.2, seed=0), fr.AttentionPooling(16, 8, seed=0)]
    pools = [fr.MeanPooling(), fr.MaxPooling(), fr.LastStep()]
    emb = fr.Embedding(50, 16, seed=0)

    def run():
        if training:
            h = emb.forward(ids, lengths=lengths)
            emb.backward(np.ones_like(h))
            h = x
            for l in stack[:3]:
                h = l.forward(h, lengths=lengths)
            out = stack[3].forward(h, lengths=lengths)
            d = stack[3].backward(np.ones_like(out))
            for l in reversed(stack[:3]):
                d = l.backward(d)
            for p in pools:
                p.backward(np.ones_like(p.forward(x, lengths=lengths)))
        else:
            emb(ids, lengths=lengths)
            h = x
            for l in stack:
                h = l(h, lengths=lengths)
            for p in pools:
                p(x, lengths=lengths)
    return run


def _sequential(training):
    rng = np.random.default_rng(2)
    X = rng.integers(0, 40, size=(16, 10))
    L = rng.integers(1, 11, size=16)
    y = rng.integers(0, 3, size=16)
    m = fr.Sequential([fr.Embedding(40, 8), fr.LSTM(8, 16, batch_first=True),
                       fr.AttentionPooling(16), fr.Dense(16, 3)], seed=0)
    m.compile(loss="cross_entropy", optimizer="adam", clip_norm=1.0, metrics=["accuracy"])
    if training:
        return lambda: m.fit(X, y, lengths=L, epochs=1, batch_size=16, verbose=0)
    return lambda: m.predict(X, lengths=L)


def _ctc(training):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 20, 8)).astype(np.float32)
    tg = rng.integers(1, 8, size=(6, 5))
    loss = fr.losses.CTC()
    if training:
        return lambda: (loss.forward(x, tg), loss.backward())
    return lambda: loss(x, tg)


def _frozen(training):
    """Frozen layers (weights packed once): calls, with a repack on every one
    (a parameter made writeable again); in the training slot, which a frozen
    layer refuses, a new frozen copy (copies and packs) every call."""
    layer = fr.LSTM(16, 32, num_layers=2, bidirectional=True, seed=0)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((12, 8, 16)).astype(np.float32)
    lengths = rng.integers(1, 13, size=8)
    frozen = layer.freeze()
    if training:
        return lambda: layer.freeze()(x, lengths=lengths)

    def run():
        frozen(x, lengths=lengths)
        frozen.params["weight_hh_l0"].flags.writeable = True
    return run


WORKLOADS = {
    "RNN": lambda t: _recurrent(fr.RNN, t),
    "LSTM": lambda t: _recurrent(fr.LSTM, t),
    "GRU": lambda t: _recurrent(fr.GRU, t),
    "model layers": _model_layers,
    "Sequential": _sequential,
    "CTC loss": _ctc,
    "frozen LSTM": _frozen,
}


def measure(name, training, calls=CALLS, warmup=WARMUP):
    """(RSS after warm-up, RSS after `calls` more calls) in bytes
    (tools/leak_check.py)."""
    run = WORKLOADS[name](training)
    for _ in range(warmup):
        run()
    gc.collect()
    before = rss()
    for _ in range(calls):
        run()
    gc.collect()
    return before, rss()


def growth(run, calls, warmup=WARMUP):
    """(C heap growth, traced Python memory growth) in bytes over `calls`
    calls after `warmup` calls. Two passes: tracemalloc's own bookkeeping is
    malloc'ed, so the heap is counted without it."""
    for _ in range(warmup):
        run()
    gc.collect()
    before = heap()
    for _ in range(calls):
        run()
    gc.collect()
    c_heap = heap() - before
    tracemalloc.start()
    try:
        for _ in range(5):  # tracemalloc's first traces of each site
            run()
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(calls):
            run()
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return c_heap, traced


def check_flat(name, training, calls):
    """Raise AssertionError when either counter grew by PER_CALL_BOUND
    bytes a call or more."""
    c_heap, traced = growth(WORKLOADS[name](training), calls)
    what = f"{name} ({'training' if training else 'inference'}), {calls} calls"
    bound = calls * PER_CALL_BOUND
    grew = [f"{counter} grew by {n} bytes" for counter, n in
            (("C heap", c_heap), ("traced Python memory", traced)) if n >= bound]
    assert not grew, f"{what}: {'; '.join(grew)} (bound {bound})"


needs_mallinfo2 = pytest.mark.skipif(_LIBC is None, reason="needs glibc's mallinfo2")


@needs_mallinfo2
@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_memory_flat(name, training, monkeypatch):
    if PLANT:  # FASTRNN_LEAK_PLANT: every test here must fail
        plant_leak(monkeypatch, PLANT)
    check_flat(name, training, CALLS if name != "Sequential" else CALLS // 4)


@needs_mallinfo2
@pytest.mark.parametrize("kind, counter", [("python", "traced Python memory"),
                                           ("c", "C heap")])
def test_planted_leak_is_caught(kind, counter, monkeypatch):
    """One state-sized array a call, leaked in Python or in C, fails
    check_flat on the counter that sees it (the RNN workload: the cheapest
    with that state)."""
    plant_leak(monkeypatch, kind)
    try:
        with pytest.raises(AssertionError, match=counter):
            check_flat("RNN", False, CALLS)
    finally:
        _KEPT.clear()
