"""Paired A/B in one process: Seq2Seq training batches (the g2p model) with the
backend's cell_step/attend kernels (B) against the NumPy step (A), alternating
blocks, then beam-5 decoding the same way; prints the median times and B/A,
median and quartiles.

    python tools/ab_seq2seq.py [PAIRS=8] [BATCHES=6] [BATCH_SIZE=64]
"""
import sys, time
import numpy as np
import fastrnn as fr
from fastrnn.backends import cpu

pairs = int(sys.argv[1]) if len(sys.argv) > 1 else 8
nb = int(sys.argv[2]) if len(sys.argv) > 2 else 6
bs = int(sys.argv[3]) if len(sys.argv) > 3 else 64
fr.set_num_threads(2)
cls = type(cpu.backend)
names = ("cell_step", "cell_step_backward", "attend", "attend_backward")
saved = {n: getattr(cls, n) for n in names}
def on():
    for n, f in saved.items(): setattr(cls, n, f)
def off():
    for n in names: delattr(cls, n)
rng = np.random.default_rng(0)
n = nb * bs
src = [rng.integers(0, 27, rng.integers(4, 13)) for _ in range(n)]
tgt = [rng.integers(0, 39, max(1, len(s) + int(rng.integers(-2, 1)))) for s in src]
m = fr.Seq2Seq(27, 39, embedding_dim=64, hidden_size=256, num_layers=2, decoder_hidden=512, dropout=0.3, seed=0)
m.compile("adam", lr=1e-3, clip_norm=5.0)
def run():
    t = time.perf_counter(); m.fit(src, tgt, epochs=1, batch_size=bs, verbose=0, seed=1)
    return (time.perf_counter() - t) / nb * 1e3
run(); off(); run(); on()
r, ta, tb = [], [], []
for i in range(pairs):
    if i % 2: off(); a = run(); on(); b = run()
    else: b = run(); off(); a = run(); on()
    ta.append(a); tb.append(b); r.append(b / a)
q = np.percentile(r, [25, 50, 75])
print(f"B={bs}: numpy {np.median(ta):.1f} ms/batch, kernels {np.median(tb):.1f} ms/batch; B/A {q[1]:.3f} [{q[0]:.3f}, {q[2]:.3f}] of {pairs} pairs")
# decoding: predict with beam 5 on 1000 words, kernels on/off alternating
words = src[:1000] if len(src) >= 1000 else src
def dec():
    t = time.perf_counter(); m.predict(words, beam_size=5); return time.perf_counter() - t
dec(); off(); dec(); on()
r2, da, db = [], [], []
for i in range(max(3, pairs // 2)):
    b = dec(); off(); a = dec(); on()
    da.append(a); db.append(b); r2.append(b / a)
q = np.percentile(r2, [25, 50, 75])
print(f"predict beam 5, {len(words)} words: numpy {np.median(da):.2f} s, kernels {np.median(db):.2f} s; B/A {q[1]:.3f} [{q[0]:.3f}, {q[2]:.3f}]")
