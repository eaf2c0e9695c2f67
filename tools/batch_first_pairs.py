"""A batch_first layer's y written (B, T, F) by the kernels against the way
before, in one process (benchmarks/RESULTS.md, "Batch-first output written
by the kernel").

    python tools/batch_first_pairs.py PAIRS [PREC] cell:B:T:I:H[:bi] ...

PREC: float32 (default), int8 or bf16 (the frozen layer's weights). For each
spec three calls of the same frozen layer's weights, in blocks of about
40 ms, the order reversed every other pair: "bf", the batch_first layer on
(B, T, I) (the kernels write y batch-first); "old", the time-major layer
on x transposed and its y transposed back, both copies as before; "tm",
the time-major layer alone. Prints the medians and bf/old per pair:
median [quartiles] (below 1: the kernels' layout faster). 2 threads;
run it with OPENBLAS_CORETYPE unset, as the bench.
"""
import sys
import time

import numpy as np

import fastrnn as fr

CELLS = {"lstm": fr.LSTM, "gru": fr.GRU, "rnn": fr.RNN}


def parse(spec):
    parts = spec.split(":")
    bi = parts[-1] == "bi"
    if bi:
        parts = parts[:-1]
    if len(parts) != 5 or parts[0] not in CELLS or not all(p.isdigit() for p in parts[1:]):
        raise ValueError(f"batch_first_pairs: expected cell:B:T:I:H[:bi], got {spec!r}")
    return parts[0], *map(int, parts[1:]), bi


def block(f, n):
    t0 = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t0) / n * 1e3


def run(spec, pairs, prec):
    cell, B, T, I, H, bi = parse(spec)
    make = CELLS[cell]
    tm = make(I, H, seed=0, bidirectional=bi).freeze(weights=prec)
    bf = make(I, H, seed=0, bidirectional=bi, batch_first=True).freeze(weights=prec)
    xb = np.random.default_rng(0).standard_normal((B, T, I)).astype(np.float32)
    xt = np.ascontiguousarray(xb.transpose(1, 0, 2))

    def old():
        y, _ = tm(np.ascontiguousarray(xb.transpose(1, 0, 2)))
        return np.ascontiguousarray(y.transpose(1, 0, 2))

    calls = {"bf": lambda: bf(xb)[0], "old": old, "tm": lambda: tm(xt)[0]}
    if not np.array_equal(calls["bf"](), old()):
        raise AssertionError(f"{spec}: the batch-first y differs from the old one")
    n = max(3, int(0.04 / max(1e-6, block(old, 1) / 1e3)))
    times = {k: [] for k in calls}
    for p in range(pairs):
        for k in (list(calls) if p % 2 == 0 else list(calls)[::-1]):
            calls[k]()
            times[k].append(block(calls[k], n))
    r = np.array(times["bf"]) / np.array(times["old"])
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"{prec} {spec}: bf {med['bf']:.4g} old {med['old']:.4g} tm {med['tm']:.4g} ms; "
          f"bf/old {np.median(r):.3f} [{np.percentile(r, 25):.3f}, {np.percentile(r, 75):.3f}]")


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    pairs = int(argv[0])
    prec, specs = ("float32", argv[1:])
    if argv[1] in ("float32", "int8", "bf16"):
        prec, specs = argv[1], argv[2:]
    for spec in specs:
        parse(spec)
    was = fr.get_num_threads()
    fr.set_num_threads(2)
    try:
        for spec in specs:
            run(spec, pairs, prec)
    finally:
        fr.set_num_threads(was)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
