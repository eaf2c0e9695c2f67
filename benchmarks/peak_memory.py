"""Peak memory of one training step (forward keeping activations + full
backward), fastrnn against torch, each in a fresh process.

    python benchmarks/peak_memory.py            # the three training shapes
    python benchmarks/peak_memory.py --one fastrnn LSTM 64 50 512 512

Prints the growth of the process's peak RSS over a warmed-up baseline (the
library loaded, a one-step call made), in MiB.
"""
import argparse
import resource
import subprocess
import sys

SHAPES = [("train-lstm", "LSTM", 64, 50, 512, 512),
          ("train-gru", "GRU", 64, 50, 512, 512),
          ("train-small", "LSTM", 16, 100, 64, 128)]


def _peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(engine, cell, B, T, I, H):
    import numpy as np
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    if engine == "fastrnn":
        import fastrnn as fr
        fr.set_num_threads(2)
        layer = getattr(fr, cell)(I, H, seed=0)
        dy = np.ones((T, B, H), np.float32)
        layer(x[:1])
        base = _peak_mib()
        layer.zero_grad()
        layer.forward(x)
        layer.backward(dy)
    else:
        import torch
        torch.set_num_threads(2)
        module = getattr(torch.nn, cell)(I, H)
        xt = torch.tensor(x)
        with torch.no_grad():
            module(xt[:1])
        base = _peak_mib()
        module.zero_grad(set_to_none=True)
        xx = xt.clone().requires_grad_()
        y, _ = module(xx)
        y.sum().backward()
    return _peak_mib() - base


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one", nargs=6, metavar=("ENGINE", "CELL", "B", "T", "I", "H"))
    args = ap.parse_args()
    if args.one:
        e, c, *dims = args.one
        print(f"{one(e, c, *map(int, dims)):.1f}")
        return
    print(f"{'shape':12s} {'fastrnn MiB':>12s} {'torch MiB':>10s}")
    for name, cell, B, T, I, H in SHAPES:
        row = []
        for engine in ("fastrnn", "torch"):
            cmd = [sys.executable, __file__, "--one", engine, cell, str(B), str(T), str(I), str(H)]
            res = subprocess.run(cmd, capture_output=True, text=True)
            row.append(res.stdout.strip() if res.returncode == 0 else "-")
        print(f"{name:12s} {row[0]:>12s} {row[1]:>10s}")


if __name__ == "__main__":
    main()
