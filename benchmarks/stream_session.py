"""Many concurrent streams: fr.StreamSession.push against a loop of one-stream
step() calls.

    python benchmarks/stream_session.py                        # 64 streams, LSTM H=256
    python benchmarks/stream_session.py --streams 256 --hidden 512 --cell gru
    python benchmarks/stream_session.py --quick                # a few seconds

Each call advances a random subset of about --fraction of the --streams open
streams by one step (the subsets and inputs drawn once, seed 0, and cycled):

* session: one ``session.push(ids, x_t)`` (gather the streams' states, one
  batched step, scatter them back);
* loop: ``layer.step(x_t[k:k+1], states[id])`` for each stream of the subset,
  the caller keeping one state per stream (what a server does without a
  session).

Both step the same frozen layer (``layer.freeze()``, weights packed once) with
the same inputs; their calls are timed in turn (fastrnn.bench's
measure_interleaved), so a machine whose load changes slows them alike.
Prints the median milliseconds per call and per stream-step, and their
ratio. Nothing asserts a time.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import fastrnn as fr  # noqa: E402
from fastrnn import bench  # noqa: E402


def make_cases(cell, streams, I, H, layers, fraction, dtype, draws, seed=0):
    """(layer, session, ids, [(subset ids, x_t)]): the subsets of about
    fraction * streams ids (at least 1), each with its (n, I) inputs."""
    rng = np.random.default_rng(seed)
    layer = getattr(fr, cell.upper())(I, H, num_layers=layers, dtype=dtype, seed=seed).freeze()
    session = fr.StreamSession(layer, streams)
    ids = [session.open() for _ in range(streams)]
    n = max(1, int(round(fraction * streams)))
    pushes = []
    for _ in range(draws):
        pick = [ids[k] for k in rng.permutation(streams)[:n]]
        pushes.append((pick, rng.standard_normal((n, I)).astype(dtype)))
    return layer, session, ids, pushes


def run(args):
    notes = bench.set_threads(args.threads)
    layer, session, ids, pushes = make_cases(args.cell, args.streams, args.input, args.hidden,
                                             args.layers, args.fraction, args.dtype, 16)
    states = dict.fromkeys(ids)
    turn = {"session": 0, "loop": 0}

    def push():
        k = turn["session"] = (turn["session"] + 1) % len(pushes)
        pick, x = pushes[k]
        session.push(pick, x)

    def loop():
        k = turn["loop"] = (turn["loop"] + 1) % len(pushes)
        pick, x = pushes[k]
        for r, sid in enumerate(pick):
            _, states[sid] = layer.step(x[r:r + 1], states[sid])

    # the same outputs, to float rounding (docs/streaming.md, "Bits")
    pick, x = pushes[0]
    y = fr.StreamSession(layer, args.streams)
    ref = [layer.step(x[r:r + 1])[0] for r in range(len(pick))]
    fresh = [y.open() for _ in pick]
    diff = float(np.abs(y.push(fresh, x) - np.concatenate(ref)).max())

    medians, errors = bench.measure_interleaved(
        {"session": push, "loop": loop}, repeat=args.repeat,
        min_time=0.005 if args.quick else 0.02, warmup_time=0.02 if args.quick else 0.05)
    for name, e in errors.items():
        print(f"note: {name} failed: {type(e).__name__}: {e}")
    n = len(pushes[0][0])
    print(f"fastrnn StreamSession: {args.cell.upper()} I={args.input} H={args.hidden} "
          f"layers={args.layers} {args.dtype}, {args.streams} streams open, {n} stepped a "
          f"call, {args.threads} thread(s), median of {args.repeat} repeats; "
          f"session vs loop max |diff| {diff:.2e}")
    print(f"{'engine':<8} {'ms/call':>10} {'us/stream-step':>15}")
    for name, sec in medians.items():
        print(f"{name:<8} {sec * 1e3:>10.3f} {sec * 1e6 / n:>15.2f}")
    if len(medians) == 2:
        print(f"loop / session: {medians['loop'] / medians['session']:.2f}x")
    for note in notes:
        print("note: " + note)
    return medians


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python benchmarks/stream_session.py",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--cell", default="lstm", choices=["lstm", "gru", "rnn"])
    p.add_argument("--streams", type=int, default=64, help="streams open (default 64)")
    p.add_argument("--fraction", type=float, default=0.5,
                   help="share of the streams stepped a call (default 0.5)")
    p.add_argument("--input", type=int, default=256, help="input size (default 256)")
    p.add_argument("--hidden", type=int, default=256, help="hidden size (default 256)")
    p.add_argument("--layers", type=int, default=1, help="num_layers (default 1)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--threads", type=int, default=2, help="threads (default 2)")
    p.add_argument("--repeat", type=int, default=None, help="repeats (default 11; 3 --quick)")
    p.add_argument("--quick", action="store_true", help="few repeats, short calls")
    args = p.parse_args(argv)
    for name in ("streams", "input", "hidden", "layers", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if not 0 < args.fraction <= 1:
        p.error("--fraction must be in (0, 1]")
    args.repeat = args.repeat or (3 if args.quick else 11)
    return args


def main(argv=None):
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
