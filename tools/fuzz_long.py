#!/usr/bin/env python
"""The long fuzz run: every property of tests/stress/test_fuzz.py with many
random examples, counting each call of a public entry point and how it ended.

    python tools/fuzz_long.py                    # 600 examples per property
    python tools/fuzz_long.py --examples 2000 --seed 7

Each property checks its calls (right answer against an independent oracle,
or ValueError/TypeError for bad input; inputs unchanged); this script wraps
the public entry points to count the calls made from the properties (only
outermost calls: fit() calling layer.forward() counts once) and prints, per
entry point, how many returned and how many raised each exception type.
RuntimeError is what backward() without a preceding forward() raises (the
properties check that on purpose). Exit status 0 when every property held and
the calls numbered at least --min-calls (10,000 by default), else 1.
"""
import argparse
import collections
import functools
import os
import sys
import threading
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=600, help="examples per property")
    ap.add_argument("--seed", type=int, default=None, help="hypothesis seed (random if omitted)")
    ap.add_argument("--min-calls", type=int, default=10_000)
    args = ap.parse_args()
    os.environ["FASTRNN_FUZZ_EXAMPLES"] = str(args.examples)
    sys.path[:0] = [ROOT, os.path.join(ROOT, "tests"), os.path.join(ROOT, "tests", "stress")]

    import warnings

    import hypothesis
    import numpy as np

    import fastrnn as fr
    from fastrnn import layers, losses, model, optim, recurrent
    from fastrnn.formats import native as fio
    import test_fuzz

    warnings.simplefilter("ignore", RuntimeWarning)  # NaN inputs, on purpose
    counts = collections.defaultdict(collections.Counter)
    depth = threading.local()

    def counted(name, fn):
        @functools.wraps(fn)
        def wrapper(*a, **k):
            d = getattr(depth, "n", 0)
            depth.n = d + 1
            try:
                out = fn(*a, **k)
            except BaseException as e:
                if d == 0:
                    counts[name][type(e).__name__] += 1
                raise
            finally:
                depth.n = d
            if d == 0:
                counts[name]["ok"] += 1
            return out
        return wrapper

    targets = [
        (recurrent.RNNBase, ["__call__", "forward", "backward", "step"], "recurrent."),
        (layers.Layer, ["__call__", "forward", "backward"], "layer."),
        (model.Sequential, ["fit", "predict", "evaluate", "compile"], "Sequential."),
        (losses.Loss, ["forward", "backward"], "loss."),
        (losses.CTC, ["forward", "losses"], "CTC."),
        (optim.Optimizer, ["step", "attach"], "optimizer."),
    ]
    for cls, names, prefix in targets:
        for n in names:
            setattr(cls, n, counted(prefix + n, getattr(cls, n)))
    optim.get = counted("optim.get", optim.get)
    test_fuzz.optim = optim
    test_fuzz.fr.load = counted("fr.load", fio.load)
    test_fuzz.fr.ctc_greedy_decode = counted("ctc_greedy_decode", fr.ctc_greedy_decode)
    test_fuzz.fr.ctc_beam_decode = counted("ctc_beam_decode", fr.ctc_beam_decode)
    test_fuzz.fr.pad_sequences = counted("pad_sequences", fr.pad_sequences)

    props = [(n, f) for n, f in vars(test_fuzz).items()
             if n.startswith("test_") and callable(f) and hasattr(f, "hypothesis")]
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    print(f"fastrnn {fr.__version__}, numpy {np.__version__}, hypothesis {hypothesis.__version__}; "
          f"{args.examples} examples per property, seed {seed}")
    failures = []
    t0 = time.perf_counter()
    for name, prop in props:
        t1 = time.perf_counter()
        try:
            hypothesis.seed(seed)(prop)()
            status = "held"
        except Exception as e:  # a property failed: report, run the others
            status = f"FAILED: {type(e).__name__}"
            failures.append((name, traceback.format_exc()))
        print(f"  {name:<36} {status:<10} {time.perf_counter() - t1:7.1f} s", flush=True)
    elapsed = time.perf_counter() - t0

    kinds = sorted({k for c in counts.values() for k in c}, key=lambda k: (k != "ok", k))
    print(f"\n{'entry point':<26}" + "".join(f"{k:>14}" for k in kinds) + f"{'total':>10}")
    total = collections.Counter()
    for name in sorted(counts):
        c = counts[name]
        total.update(c)
        print(f"{name:<26}" + "".join(f"{c.get(k, 0):>14}" for k in kinds)
              + f"{sum(c.values()):>10}")
    print(f"{'all':<26}" + "".join(f"{total.get(k, 0):>14}" for k in kinds)
          + f"{sum(total.values()):>10}")
    unexpected = {k: v for k, v in total.items()
                  if k not in ("ok", "ValueError", "TypeError", "RuntimeError")}
    n = sum(total.values())
    print(f"\n{n} calls in {elapsed:.0f} s; properties failed: {len(failures)}; "
          f"exceptions other than ValueError/TypeError/RuntimeError: {unexpected or 'none'}")
    for name, tb in failures:
        print(f"\n==== {name}\n{tb}")
    ok = not failures and n >= args.min_calls
    print("RESULT:", "CLEAN" if ok else "NOT CLEAN")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
