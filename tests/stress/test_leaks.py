"""Memory stays flat: the resident set size (RSS) after many inference and
training calls of each layer kind and of a Sequential (fit and predict) is
what it was after a warm-up, within a generous bound. Every call allocates
outputs, caches and kernel workspaces of tens of kilobytes, so a leak of any
of them, or of the C pointer tables, would show as megabytes.

CI runs FASTRNN_LEAK_CALLS=300 calls per workload (the default; a
quarter of that for Sequential, whose call is a whole fit or predict);
tools/leak_check.py runs 10,000 and prints the measured figures.
Linux only (RSS from /proc/self/statm).
"""
import gc
import os

import numpy as np
import pytest

import fastrnn as fr

CALLS = int(os.environ.get("FASTRNN_LEAK_CALLS", "300"))
WARMUP = 50
# RSS growth allowed over the measured calls: 8 MiB in all, i.e. at most
# ~27 KiB a call at 300 calls. The workloads allocate ~40-300 KiB per call.
BOUND = 8 << 20

pytestmark = [
    pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="RSS read from /proc (Linux)"),
    # AddressSanitizer holds freed memory in its quarantine: RSS grows by design
    pytest.mark.skipif(bool(os.environ.get("FASTRNN_SANITIZED")), reason="under ASan (quarantine)"),
]


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


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
    """(RSS after warm-up, RSS after `calls` more calls) in bytes."""
    run = WORKLOADS[name](training)
    for _ in range(warmup):
        run()
    gc.collect()
    before = rss()
    for _ in range(calls):
        run()
    gc.collect()
    return before, rss()


@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_rss_flat(name, training):
    before, after = measure(name, training, calls=CALLS if name != "Sequential" else CALLS // 4)
    assert after - before < BOUND, (
        f"{name} ({'training' if training else 'inference'}): RSS grew by "
        f"{(after - before) / 2**20:.1f} MiB over {CALLS} calls")
