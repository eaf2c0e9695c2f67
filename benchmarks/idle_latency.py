"""fastrnn's call after the process has been idle: one thread against the
full count, calls spaced by a gap (a service answering sporadic requests).

    python benchmarks/idle_latency.py                  # gaps 5, 50, 200 ms
    python benchmarks/idle_latency.py --gaps 0.02,1 --calls 20
    python benchmarks/idle_latency.py --default        # as users run it

For each workload (the sentiment model at B=32, a frozen LSTM(256, 256) at
B=1 T=100) and gap, calls on 1 thread and on the full count alternate, each
after sleeping the gap; adaptive threads is off for the run, so every call
takes the count it asks for. Printed: the median and 90th percentile ms of
each. With --default the calls instead take the library's own choice
(adaptive threads on, the full count asked for), 4 calls to warm, then
--calls timed: what a service answering sporadic requests gets. On a VM
whose idle vCPU the host must wake, the full count's call
waits for its sleeping partner (tools/wake_probe.c times that wake-up
alone). Nothing asserts a time; figures go to benchmarks/RESULTS.md.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import fastrnn as fr  # noqa: E402
from fastrnn import _bench_models as bm  # noqa: E402


def workloads():
    case = bm.ModelCase(bm.MODELS_BY_NAME["sentiment"], 32, 2)
    model, xs = case.model.freeze(), case.x
    layer = fr.LSTM(256, 256, seed=0).freeze()
    xl = np.random.default_rng(0).standard_normal((100, 1, 256)).astype(np.float32)
    return (("sentiment B=32", lambda: model(xs)), ("LSTM(256) B=1 T=100", lambda: layer(xl)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gaps", default="0.005,0.05,0.2", help="seconds, comma-separated")
    p.add_argument("--calls", type=int, default=16, help="calls of each count per gap")
    p.add_argument("--threads", type=int, default=2, help="the full count")
    p.add_argument("--default", action="store_true",
                   help="the library's own thread choice (adaptive threads on)")
    args = p.parse_args(argv)
    gaps = [float(g) for g in args.gaps.split(",")]
    if args.calls < 1 or args.threads < 2 or any(g < 0 for g in gaps):
        p.error("--calls >= 1, --threads >= 2 and gaps >= 0")
    threads_was, adaptive_was = fr.get_num_threads(), fr.set_adaptive_threads(False)
    if args.default:
        fr.set_adaptive_threads(True)
        try:
            fr.set_num_threads(args.threads)
            print("fastrnn after idling: the default choice (adaptive threads on, %d asked)"
                  % args.threads)
            for name, call in workloads():
                call()
                for gap in gaps:
                    took = []
                    for i in range(4 + args.calls):
                        time.sleep(gap)
                        t0 = time.perf_counter()
                        call()
                        if i >= 4:
                            took.append((time.perf_counter() - t0) * 1e3)
                    print("%-20s gap %6.3f s: default %.3f ms (p90 %.3f)" % (
                        name, gap, np.median(took), np.percentile(took, 90)), flush=True)
        finally:
            fr.set_num_threads(threads_was)
            fr.set_adaptive_threads(adaptive_was)
        return 0
    try:
        print("fastrnn after idling: 1 thread against %d, adaptive threads off" % args.threads)
        for name, call in workloads():
            call()
            for gap in gaps:
                took = {1: [], args.threads: []}
                for i in range(args.calls):
                    for n in ((1, args.threads) if i % 2 else (args.threads, 1)):
                        fr.set_num_threads(n)
                        time.sleep(gap)
                        t0 = time.perf_counter()
                        call()
                        took[n].append((time.perf_counter() - t0) * 1e3)
                one, full = np.array(took[1]), np.array(took[args.threads])
                print("%-20s gap %6.3f s: 1 thread %.3f ms (p90 %.3f), %d threads %.3f ms "
                      "(p90 %.3f)" % (name, gap, np.median(one), np.percentile(one, 90),
                                      args.threads, np.median(full), np.percentile(full, 90)),
                      flush=True)
    finally:
        fr.set_num_threads(threads_was)
        fr.set_adaptive_threads(adaptive_was)
    return 0


if __name__ == "__main__":
    sys.exit(main())
