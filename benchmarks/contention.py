"""fastrnn on shared cores: its calls beside a competing process (issue 28).

For each workload (a streaming step, inference, training) and each competitor
(none; a CPU-bound loop of one thread; a second process running the same
fastrnn workload with its default threads), fastrnn's calls are timed with
one thread, with the default thread choice (adaptive: docs/performance.md,
"Shared cores") and, for comparison, with the thread count fixed at the
machine's core count and adaptation off (what fastrnn did before). The modes
run in alternating blocks so that a machine whose speed drifts slows them
alike.

    python benchmarks/contention.py                       # every workload
    python benchmarks/contention.py --workloads lat-lstm --rounds 8
    python benchmarks/contention.py --json benchmarks/results/contention.json

Printed per (workload, competitor, mode): the median, 90th percentile and
maximum ms a call, and the number of stalls (calls over 10x the median of the
one-thread calls with no competitor). The rules it shows (issue 28): with a
competitor, the default's median is within 10% of the one-thread median
(ratio <= 1.10), and the default has no stall. Nothing asserts a time: the
figures go to benchmarks/RESULTS.md with the machine's ISA and load.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import fastrnn as fr  # noqa: E402
from fastrnn import bench  # noqa: E402

WORKLOADS = ("stream-step", "lat-lstm", "serve-lstm", "train-small", "big-lstm")
COMPETITORS = ("none", "loop", "fastrnn")
STALL = 10.0   # a call over STALL x the quiet 1-thread median is a stall


def runner(name):
    """A zero-argument callable doing one call of the bench's shape `name`."""
    case = bench.Case(bench.get_shape(name))
    return case.runner("fastrnn")


def serve(name):
    """The competing fastrnn process: the workload in a loop, default threads."""
    run = runner(name)
    while True:
        run()


def start_competitor(kind, name):
    if kind == "none":
        return None
    if kind == "loop":
        code = "while True:\n    pass\n"
        args = [sys.executable, "-c", code]
    else:
        args = [sys.executable, os.path.abspath(__file__), "--serve", name]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5 if kind == "fastrnn" else 0.3)   # its import and warm-up
    return proc


def stop_competitor(proc):
    if proc is not None:
        proc.kill()
        proc.wait()


def set_mode(mode, cores):
    if mode == "1 thread":
        fr.set_num_threads(1)
        fr.set_adaptive_threads(True)
    elif mode == "default":
        fr.set_num_threads(None)
        fr.set_adaptive_threads(True)
    else:   # fixed: all cores, adaptation off
        fr.set_num_threads(cores)
        fr.set_adaptive_threads(False)


def block(run, seconds):
    out = []
    end = time.perf_counter() + seconds
    while True:
        t0 = time.perf_counter()
        run()
        t1 = time.perf_counter()
        out.append(t1 - t0)
        if t1 > end:
            return out


def measure(run, modes, cores, rounds, seconds):
    times = {m: [] for m in modes}
    for _ in range(rounds):
        for m in modes:
            set_mode(m, cores)
            run()   # a first call under the mode, not timed
            times[m] += block(run, seconds)
    set_mode("default", cores)
    return times


def summary(ts, quiet):
    ts = sorted(ts)
    return {"calls": len(ts), "median_ms": 1e3 * statistics.median(ts),
            "p90_ms": 1e3 * ts[int(0.9 * (len(ts) - 1))], "max_ms": 1e3 * ts[-1],
            "stalls": sum(t > STALL * quiet for t in ts)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    p.add_argument("--competitors", default=",".join(COMPETITORS))
    p.add_argument("--rounds", type=int, default=5, help="alternations of the modes")
    p.add_argument("--seconds", type=float, default=0.4, help="of each block")
    p.add_argument("--json", default=None)
    p.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.serve:
        return serve(a.serve)
    if a.rounds < 1:
        p.error("--rounds: at least 1")
    if not a.seconds > 0:
        p.error("--seconds: a time > 0")
    names = [n for n in a.workloads.split(",") if n]
    for n in names:
        try:
            bench.get_shape(n)
        except ValueError as e:
            p.error(f"--workloads: {e}")
    comps = [c for c in a.competitors.split(",") if c]
    bad = sorted(set(comps) - set(COMPETITORS))
    if bad or not comps or not names:
        p.error(f"--competitors: each of {', '.join(COMPETITORS)}; --workloads: "
                f"bench shapes (got competitors {comps}, workloads {names})")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    modes = ("1 thread", "default", f"fixed {cores}")
    steal0 = bench.read_steal()
    rows = []
    print(f"{bench._cpu_name()}; {bench._isa()}; {cores} CPUs", flush=True)
    print(f"{'workload':12} {'competitor':10} {'mode':9} {'median':>9} {'p90':>9} "
          f"{'max':>9} {'stalls':>6} {'vs 1 thr':>8}")
    for name in names:
        run = runner(name)
        quiet = None
        for comp in comps:
            proc = start_competitor(comp, name)
            try:
                times = measure(run, modes, cores, a.rounds, a.seconds)
            finally:
                stop_competitor(proc)
            if quiet is None:   # the first competitor listed ("none" by default) sets the stall line
                quiet = statistics.median(times["1 thread"])
            one = statistics.median(times["1 thread"])
            for m in modes:
                s = summary(times[m], quiet)
                s.update(workload=name, competitor=comp, mode=m,
                         vs_one_thread=1e-3 * s["median_ms"] / one)
                rows.append(s)
                print(f"{name:12} {comp:10} {m:9} {s['median_ms']:9.4f} {s['p90_ms']:9.4f} "
                      f"{s['max_ms']:9.3f} {s['stalls']:6d} {s['vs_one_thread']:8.2f}",
                      flush=True)
    load = bench.machine_load(steal0)
    print(bench.format_machine(bench.blas_info(), load))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rows": rows, "load": load, "cores": cores, "cpu": bench._cpu_name(),
                       "isa": bench._isa(),
                       "stall_factor": STALL}, f, indent=1)


if __name__ == "__main__":
    main()
