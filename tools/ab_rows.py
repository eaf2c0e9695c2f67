"""A frozen model with its embedding's projection tables against the same
frozen model without them (benchmarks/RESULTS.md, "An embedding's rows
projected once"): one process, 0.3 s blocks alternating, 12 pairs; prints
the fused/unfused time ratio, median [quartiles], per batch size.

    python tools/ab_rows.py charlm 1,32,256
"""
import sys
import time

import numpy as np

from fastrnn._bench_models import MODELS_BY_NAME, build, make_input


def block(f, seconds=0.3):
    f()
    t, n = time.perf_counter(), 0
    while time.perf_counter() - t < seconds:
        f()
        n += 1
    return (time.perf_counter() - t) / n


def main(name, batches):
    spec = MODELS_BY_NAME[name]
    for B in batches:
        m, x = build(spec), make_input(spec, B)
        plain, fused = m.freeze(), m.freeze()
        plain.layers[1].__dict__.pop("_rows", None)
        if "_rows" not in fused.layers[1].__dict__:
            raise SystemExit(f"{name}: freeze made no tables")
        if not np.array_equal(plain(x), fused(x)):
            raise SystemExit(f"{name} B={B}: the two copies differ")
        ratios = []
        for _ in range(12):
            a = block(lambda: plain(x))
            b = block(lambda: fused(x))
            ratios.append(b / a)
        q1, med, q3 = np.percentile(ratios, [25, 50, 75])
        print(f"{name} B={B}: fused/unfused {med:.3f} [{q1:.3f}, {q3:.3f}], unfused {a * 1e3:.3f} ms")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], [int(b) for b in sys.argv[2].split(",")])
