"""Cost of batch-invariant inference: the same tree, the same process, the
switch off (A) and on (B), calls paired.

    python tools/ab_invariant.py PAIRS THREADS DTYPE SHAPE...

SHAPE: a reference shape of fastrnn.bench (or "all"), or
cell:B:T:I:H:mode[:var]; training shapes are skipped (the switch is for
inference). Inference and steps run a frozen copy of the layer as the bench
does (float32; float64 layers are not packed). For each shape, PAIRS pairs
of blocks (a block: enough calls for ~20 ms) run A then B or B then A in
turn; printed: the median B/A time ratio of the pairs and its quartiles
(tools/ab_python.py's method: adjacent blocks see the same machine).
"""
import statistics
import sys
import time

import numpy as np

import fastrnn as fr
from fastrnn import bench


def _call(shape, dtype):
    cls = {"lstm": fr.LSTM, "gru": fr.GRU, "rnn": fr.RNN}[shape.cell]
    layer = cls(shape.I, shape.H, seed=0, dtype=dtype)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((shape.T, shape.B, shape.I)).astype(dtype)
    lengths = None
    if shape.var:
        lengths = rng.integers(10, shape.T + 1, shape.B)
    served = layer.freeze()
    if shape.mode == "step":
        def f():
            state = None
            for t in range(shape.T):
                _, state = served.step(x[t], state)
        return f
    return lambda: served(x, lengths=lengths)


def _block(f, n):
    t0 = time.perf_counter()
    for _ in range(n):
        f()
    return time.perf_counter() - t0


def main(argv):
    pairs, threads, dtype = int(argv[0]), int(argv[1]), argv[2]
    names = argv[3:]
    if names == ["all"]:
        names = [s.name for s in bench.SHAPES]
    fr.set_num_threads(threads)
    for name in names:
        shape = bench.SHAPES_BY_NAME.get(name) or bench.parse_custom(name)
        if shape.mode == "train":
            continue
        f = _call(shape, dtype)
        for on in (False, True, False):  # warm both paths, then size a block
            fr.set_batch_invariant(on)
            for _ in range(3):
                f()
        t = statistics.median(_block(f, 1) for _ in range(5))
        n = max(1, int(0.02 / max(t, 1e-7)))
        ratios = []
        for p in range(pairs):
            order = (False, True) if p % 2 == 0 else (True, False)
            got = {}
            for on in order:
                fr.set_batch_invariant(on)
                got[on] = _block(f, n)
            ratios.append(got[True] / got[False])
        fr.set_batch_invariant(False)
        q = statistics.quantiles(ratios, n=4)
        print(f"{name:16s} {dtype} B/A median {statistics.median(ratios):.3f} "
              f"(quartiles {q[0]:.3f} {q[2]:.3f}, {pairs} pairs of {n} calls)", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
