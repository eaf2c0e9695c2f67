"""One optimizer step of a large model's parameters: fastrnn's Adam (the
backend's fused step), fastrnn's NumPy Adam (the same bits, ten passes) and
torch.optim.Adam (foreach off and on), in one process, alternating.

    python benchmarks/optim_step.py                  # the G2P model's sizes
    python benchmarks/optim_step.py --rounds 4 --threads 1
    python benchmarks/optim_step.py --quick          # tiny sizes, 3 steps

The parameters are sized like a seq2seq model's (an embedding table, four
large recurrent matrices, 25 small vectors: 4.5 M floats in 31 arrays);
gradients are random and fixed. Printed:
the median ms of 25 steps per engine, per round. Nothing asserts a time: the
figures go to benchmarks/RESULTS.md with the machine's ISA and load.
"""
import argparse
import statistics
import time

import numpy as np

import fastrnn as fr
from fastrnn import optim

SIZES = [10000 * 64, 2048 * 576, 2048 * 512, 2048 * 512, 512 * 1024, 72 * 512] + [2048] * 25


def _median_ms(step, n):
    step()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="sizes / 1000, 3 steps")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.threads < 1:
        p.error("--rounds and --threads must be >= 1")
    fr.set_num_threads(args.threads)
    sizes = [max(1, n // 1000) for n in SIZES] if args.quick else SIZES
    steps = 3 if args.quick else 25
    rng = np.random.default_rng(0)
    params = [(f"p{i}", rng.standard_normal(n).astype(np.float32),
               (rng.standard_normal(n) * 1e-3).astype(np.float32)) for i, n in enumerate(sizes)]
    engines = {}

    def fastrnn_adam(fused):
        def make():
            optim.Adam._fused = fused
            opt = optim.Adam(params=params)

            def step():
                optim.Adam._fused = fused
                opt.step()
            return step
        return make
    engines["fastrnn (fused)"] = fastrnn_adam(True)
    engines["fastrnn (NumPy)"] = fastrnn_adam(False)
    try:
        import torch
        torch.set_num_threads(args.threads)
        tp = [torch.nn.Parameter(torch.from_numpy(q.copy())) for _, q, _ in params]
        for t, (_, _, g) in zip(tp, params):
            t.grad = torch.from_numpy(g.copy())
        for fe in (False, True):
            engines[f"torch (foreach={fe})"] = (
                lambda fe=fe: torch.optim.Adam(tp, foreach=fe).step)
    except ImportError:
        print("torch not installed: fastrnn only")
    print(f"Adam step, {sum(sizes) / 1e6:.3f} M float32 parameters in {len(sizes)} arrays, "
          f"{args.threads} thread(s); median ms of {steps} steps")
    results = {name: [] for name in engines}
    for _ in range(args.rounds):
        for name, make in engines.items():
            results[name].append(_median_ms(make(), steps))
    optim.Adam._fused = True
    for name, ms in results.items():
        print(f"  {name:22s} " + "  ".join(f"{m:7.2f}" for m in ms))
    return 0


if __name__ == "__main__":
    main()
