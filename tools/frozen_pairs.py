"""Frozen (weights packed once) against per-call inference, in one process,
calls alternating: the paired medians of RESULTS.md's frozen table.

    python tools/frozen_pairs.py PAIRS SPEC...   (SPEC: cell:B:T:I:H[:var])

Each pair times both layers (median of 5 calls each, after one warm-up
call), in alternating order; the ratio is frozen / per-call (below 1: the
frozen layer is faster). var: lengths drawn from 10..T (the bench's seed).
"""
import sys
import time

import numpy as np

import fastrnn as fr


def pairs(spec, n):
    parts = spec.split(":")
    cell = parts[0].upper()
    B, T, I, H = map(int, parts[1:5])
    layer = getattr(fr, cell)(I, H, seed=1)
    frozen = layer.freeze()
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    kw = {}
    if len(parts) > 5:
        kw["lengths"] = np.random.default_rng(1234).integers(10, T + 1, size=B)
    out = []
    for r in range(n):
        took = {}
        for m in ((layer, frozen) if r % 2 == 0 else (frozen, layer)):
            m(x, **kw)
            ts = []
            for _ in range(5):
                t0 = time.perf_counter()
                m(x, **kw)
                ts.append(time.perf_counter() - t0)
            took[m is frozen] = np.median(ts)
        out.append((took[False], took[True]))
    return np.array(out) * 1e3


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    fr.set_num_threads(2)
    for spec in argv[1:]:
        r = pairs(spec, int(argv[0]))
        q = r[:, 1] / r[:, 0]
        print(f"{spec:24s} per-call {np.median(r[:, 0]):8.3f}  frozen {np.median(r[:, 1]):8.3f} ms"
              f"  paired {np.median(q):.3f} [p25 {np.percentile(q, 25):.3f}"
              f" p75 {np.percentile(q, 75):.3f}]", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
