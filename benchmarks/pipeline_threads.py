"""fastrnn's threads beside another library's pool in one process.

A serving pipeline that alternates a fastrnn model call with an ONNX Runtime
(or torch) call: fastrnn's time per call in the pipeline against its time
alone, blocks of each taken in turn (one block alone, one block alternating,
and again), so that a machine whose load changes slows both alike.

    python benchmarks/pipeline_threads.py                    # sentiment, B=32
    python benchmarks/pipeline_threads.py --peer torch --model charlm --batch 1
    python benchmarks/pipeline_threads.py --ort-spinning 1   # ORT's default

The peer runs the same model (fr.to_onnx(model) in ORT, fr.to_torch(model)
in torch) at the same thread count. ``--ort-spinning`` is ORT's session
option ``session.intra_op.allow_spinning``: 1 (ORT's default) leaves its
threads spinning after each call, taking the cores from the next fastrnn
call. fastrnn's own side is ``fr.set_wait_policy`` (docs/performance.md):
``--wait-policy`` sets it for the run. Nothing here asserts a time; the
ratio (pipeline / alone, medians) and the spread of each are printed.

Two more figures say what a pipeline can reach: fastrnn alone on one thread
(its floor while a peer's thread holds the other core: a 2-core machine
whose peer spins has one core left), and the CPU time the peer's threads
burn in the 50 ms after one of its calls, while the caller sleeps (its
spinning; 0 when its threads block at once), and the same for fastrnn's.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import fastrnn as fr  # noqa: E402
from fastrnn import _bench_models as bm  # noqa: E402


def make_peer(kind, case, threads, spinning):
    if kind == "ort":
        import onnxruntime as ort
        ort.set_default_logger_severity(4)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", str(int(spinning)))
        sess = ort.InferenceSession(fr.to_onnx(case.model, lengths=False).SerializeToString(),
                                    so, providers=["CPUExecutionProvider"])
        feeds = {sess.get_inputs()[0].name: case.x}
        return lambda: sess.run(None, feeds)
    if kind == "torch":
        import torch
        torch.set_num_threads(threads)
        module = fr.to_torch(case.model).eval()
        xt = torch.from_numpy(case.x)

        def run():
            with torch.inference_mode():
                return module(xt)
        return run
    if kind == "numpy":   # NumPy's BLAS pool: a product of the model's size
        a = np.random.default_rng(0).standard_normal((512, 512)).astype(np.float32)
        return lambda: a @ a
    raise ValueError(kind)


def block(first, second, calls, alternate, counts=None):
    """Seconds of each call of `first` in a block (with a call of `second`
    before each when alternating, not timed); counts: a list that gets
    fastrnn's thread count as each call starts (fr.get_num_threads)."""
    out = []
    for _ in range(calls):
        if alternate:
            second()
        if counts is not None:
            counts.append(fr.get_num_threads())
        t0 = time.perf_counter()
        first()
        out.append(time.perf_counter() - t0)
    return out


def spin_after(peer, repeats=5, wait=0.05):
    """Median CPU milliseconds the process burns in `wait` seconds of the
    caller's sleep right after a call of `peer`: the peer's threads spinning."""
    out = []
    for _ in range(repeats):
        peer()
        c0 = time.process_time()
        time.sleep(wait)
        out.append((time.process_time() - c0) * 1e3)
        time.sleep(0.1)
    return statistics.median(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="sentiment", choices=sorted(bm.MODELS_BY_NAME))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--peer", default="ort", choices=("ort", "torch", "numpy"))
    p.add_argument("--ort-spinning", type=int, default=1, choices=(0, 1))
    p.add_argument("--wait-policy", default=None, choices=("spin", "passive", "both"),
                   help="fr.set_wait_policy for the run; both: blocks of each in turn, "
                        "in one process (default: fastrnn's own default)")
    p.add_argument("--calls", type=int, default=20, help="fastrnn calls per block")
    p.add_argument("--rounds", type=int, default=7, help="blocks of each kind")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.calls, args.rounds = 3, 2
    try:
        from threadpoolctl import threadpool_limits
        limits = threadpool_limits(limits=args.threads)  # noqa: F841 (held for the run)
    except ImportError:
        pass
    threads_was = fr.get_num_threads()
    fr.set_num_threads(args.threads)
    policies = ([fr.get_wait_policy()] if args.wait_policy is None else
                ["spin", "passive"] if args.wait_policy == "both" else [args.wait_policy])
    was = fr.get_wait_policy()
    case = bm.ModelCase(bm.MODELS_BY_NAME[args.model], args.batch, args.threads)
    frozen, x = case.model.freeze(), case.x

    def fast():
        return frozen(x)
    peer = make_peer(args.peer, case, args.threads, args.ort_spinning)
    for _ in range(3):
        fast()
        peer()
    times = {(pol, k): [] for pol in policies for k in range(5)}
    counts = {pol: [] for pol in policies}   # thread counts of the pipeline's calls
    for _ in range(args.rounds):
        for pol in policies:
            fr.set_wait_policy(pol)
            time.sleep(0.05)
            times[pol, 0] += block(fast, peer, args.calls, False)
            times[pol, 1] += block(fast, peer, args.calls, True, counts[pol])
            time.sleep(0.05)
            times[pol, 2] += block(peer, fast, args.calls, False)
            times[pol, 3] += block(peer, fast, args.calls, True)
            if args.threads > 1:   # the floor beside a peer that holds a core
                fr.set_num_threads(1)
                time.sleep(0.05)
                times[pol, 4] += block(fast, peer, args.calls, False)
                fr.set_num_threads(args.threads)
    fr.set_wait_policy(was)
    spin_ms = spin_after(peer, 2 if args.quick else 5)
    own_ms = spin_after(fast, 2 if args.quick else 5)
    fr.set_num_threads(threads_was)

    def fmt(v):
        v = np.array(v) * 1e3
        return "median %.3f ms (min %.3f, max %.3f)" % (np.median(v), v.min(), v.max())
    print("fastrnn %s B=%d, %d thread(s), peer %s%s" % (
        args.model, args.batch, args.threads, args.peer,
        " (allow_spinning=%d)" % args.ort_spinning if args.peer == "ort" else ""))
    for pol in policies:
        print("wait policy %s:" % pol)
        for who, k in (("fastrnn", 0), (args.peer, 2)):
            a, m = times[pol, k], times[pol, k + 1]
            print("  %-8s alone:     %s" % (who, fmt(a)))
            print("  %-8s pipeline:  %s" % (who, fmt(m)))
            print("  %-8s pipeline / alone (medians): %.2f" % (
                who, statistics.median(m) / statistics.median(a)))
        full = [t for t, n in zip(times[pol, 1], counts[pol]) if n > 1]
        print("  fastrnn  pipeline calls on %d threads (adaptive threads' tries): %d of %d%s" % (
            args.threads, len(full), len(counts[pol]),
            ", median %.3f ms" % (statistics.median(full) * 1e3) if full else ""))
        if times[pol, 4]:
            one = times[pol, 4]
            print("  fastrnn  alone, 1 thread: %s" % fmt(one))
            print("  fastrnn  pipeline / alone on 1 thread (medians): %.2f" % (
                statistics.median(times[pol, 1]) / statistics.median(one)))
    print("%s's threads after its call: %.1f ms of CPU in the next 50 ms" % (args.peer, spin_ms))
    print("fastrnn's threads after its call: %.1f ms of CPU in the next 50 ms" % own_ms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
