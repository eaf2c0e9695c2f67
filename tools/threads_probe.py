"""One thread against two on one layer, every half second: how a shared
VM's speed for two threads flips (benchmarks/RESULTS.md, "Measured thread
counts").

    python tools/threads_probe.py cell:B:T:I:H [SECONDS]

Each half second: 2 warm calls and 15 timed calls of a frozen layer on one
thread, then the same on two (adaptive threads off, so the counts are the
ones set); prints the two medians and their ratio (below 1: two threads
faster). Run it with OPENBLAS_CORETYPE unset, as the bench.
"""
import sys
import time

import numpy as np

import fastrnn as fr


def main(argv):
    if not argv:
        raise SystemExit(__doc__)
    parts = argv[0].split(":")
    if len(parts) != 5 or parts[0] not in ("lstm", "gru", "rnn"):
        raise ValueError(f"threads_probe: expected cell:B:T:I:H, got {argv[0]!r}")
    B, T, I, H = map(int, parts[1:])
    seconds = float(argv[1]) if len(argv) > 1 else 10.0
    layer = {"lstm": fr.LSTM, "gru": fr.GRU, "rnn": fr.RNN}[parts[0]](I, H, seed=0)
    served = layer.freeze()
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    from fastrnn.backends.cpu import threads
    count, adaptive = threads.num_threads_setting(), fr.set_adaptive_threads(False)
    try:
        t0 = time.perf_counter()
        while True:
            med = {}
            for n in (1, 2):
                fr.set_num_threads(n)
                served(x)
                served(x)
                ts = []
                for _ in range(15):
                    a = time.perf_counter()
                    served(x)
                    ts.append(time.perf_counter() - a)
                med[n] = float(np.median(ts)) * 1e3
            print(f"{time.perf_counter() - t0:6.1f} s  1 thread {med[1]:.3f} ms  2 threads "
                  f"{med[2]:.3f} ms  2/1 {med[2] / med[1]:.2f}", flush=True)
            if time.perf_counter() - t0 >= seconds:
                return 0
            time.sleep(0.5)
    finally:
        fr.set_num_threads(count)
        fr.set_adaptive_threads(adaptive)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
