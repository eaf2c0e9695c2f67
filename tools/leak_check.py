#!/usr/bin/env python
"""RSS over many calls of each workload of tests/stress/test_leaks.py
(inference and training of RNN, LSTM, GRU, the model layers, a Sequential's
predict and fit, the CTC loss): prints RSS after the warm-up, after the calls,
and the growth per call. Linux only (/proc/self/statm).

    python tools/leak_check.py               # 10,000 calls per workload
    python tools/leak_check.py --calls 50000

Exit status 1 when any workload grew by more than --bound MiB (default 8).
"""
import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=10_000)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--bound", type=float, default=8.0, help="MiB of growth allowed")
    args = ap.parse_args()
    sys.path[:0] = [ROOT, os.path.join(ROOT, "tests"), os.path.join(ROOT, "tests", "stress")]
    import fastrnn as fr
    import test_leaks

    print(f"fastrnn {fr.__version__}, {fr.get_num_threads()} threads; {args.calls} calls "
          f"per workload after {args.warmup} warm-up calls")
    print(f"{'workload':<14}{'mode':<11}{'RSS before':>12}{'RSS after':>12}{'growth':>11}"
          f"{'per call':>11}{'time':>8}")
    worst = 0
    for name in test_leaks.WORKLOADS:
        for training in (False, True):
            t0 = time.perf_counter()
            before, after = test_leaks.measure(name, training, calls=args.calls,
                                               warmup=args.warmup)
            dt = time.perf_counter() - t0
            grow = after - before
            worst = max(worst, grow)
            print(f"{name:<14}{'training' if training else 'inference':<11}"
                  f"{before / 2**20:>9.1f} MiB{after / 2**20:>9.1f} MiB"
                  f"{grow / 2**10:>8.0f} KiB{grow / args.calls:>9.1f} B{dt:>7.0f}s", flush=True)
    ok = worst <= args.bound * 2**20
    print(f"largest growth {worst / 2**10:.0f} KiB over {args.calls} calls: "
          f"{'FLAT' if ok else 'GROWING'} (bound {args.bound} MiB)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
