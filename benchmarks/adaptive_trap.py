"""Adaptive threads' one-thread trap (benchmarks/RESULTS.md): raise the back-off
to its 2 s maximum with simulated stalls, then run a quiet continuous workload
and see whether the calls get back to two threads. Prints calls a second,
stalls and one-thread periods for each 5 s.

    python benchmarks/adaptive_trap.py
"""
import time
import numpy as np
import fastrnn as fr
from fastrnn.backends.cpu import _ext

fr.set_num_threads(2)
layer = fr.LSTM(256, 256, seed=0)
x = np.random.default_rng(0).standard_normal((50, 16, 256)).astype(np.float32)
dy = np.ones((50, 16, 256), np.float32)

def work(sec):
    s0 = fr.thread_stats(); n = 0; t = time.perf_counter()
    while time.perf_counter() - t < sec:
        layer.forward(x); layer.backward(dy); n += 1
    s1 = fr.thread_stats()
    return n / sec, s1["stalls"] - s0["stalls"], s1["solo_periods"] - s0["solo_periods"]

print("quiet, before:", work(5))
_ext.note_wait(5_000_000)
for _ in range(8):   # each period's end followed at once by another stall: the back-off doubles
    time.sleep(fr.thread_stats()["solo_seconds_left"] + 0.002)
    _ext.note_wait(5_000_000)
print("back-off now", fr.thread_stats()["solo_seconds_left"], "s")
for i in range(4):
    print(f"quiet, after the escalation, {i * 5}-{i * 5 + 5} s:", work(5))
fr.set_num_threads(1)
print("one thread:", work(5))
