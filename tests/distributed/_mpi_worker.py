"""Run under mpiexec by test_mpi.py: scenarios of data-parallel fit, each
writing what it produced (weight bytes' digest, history) to OUT/<name>.r<rank>.json.

    python _mpi_worker.py OUT SCENARIO[,SCENARIO...] [K]

Scenarios: "train" (a run of fit(shards=K)), "resume" (2 epochs, checkpoint
from rank 0, load, 1 more), "fail" (rank 1's layer raises at batch 3: every
rank must raise), "stall" (rank 1 sleeps: the others abort after the timeout),
"mismatch" (rank 1 passes other data: ValueError on every rank).
"""
import hashlib
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.getcwd())  # the checkout's fastrnn, as pytest sees it
import fastrnn as fr  # noqa: E402
from mpi4py import MPI  # noqa: E402


class Boom(fr.Layer):
    """Identity; raises (or sleeps) on one rank at one call."""

    def __init__(self, rank=-1, at=3, sleep=0.0, dtype="float32"):
        super().__init__(dtype)
        self.rank, self.at, self.sleep, self.calls = rank, at, sleep, 0

    def forward(self, x, training):
        self.calls += 1
        if training and MPI.COMM_WORLD.rank == self.rank and self.calls == self.at:
            if self.sleep:
                time.sleep(self.sleep)
            else:
                raise RuntimeError("planted failure")
        return x

    def backward(self, dy):
        return dy


def data(dtype):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((37, 11, 5)).astype(dtype)
    lengths = rng.integers(1, 12, 37)
    y = (x[:, 0, 0] > 0).astype(np.int64) + (x[:, 0, 1] > 0)
    return x, y, lengths


def model(dtype, boom=None):
    layers = [fr.GRU(5, 13, batch_first=True, dtype=dtype), fr.Dropout(0.25, dtype=dtype),
              fr.LSTM(13, 7, batch_first=True, dtype=dtype), fr.MeanPooling(dtype=dtype),
              fr.Dense(7, 3, dtype=dtype)]
    if boom is not None:
        layers.insert(1, boom)
    m = fr.Sequential(layers)
    m.compile("cross_entropy", fr.optim.Adam(lr=3e-3), clip_norm=1.0, metrics=["accuracy"])
    return m


def record(m, h):
    w = hashlib.sha256(b"".join(p.tobytes() for _, p, _ in m.parameters())).hexdigest()
    return {"weights": w, "history": h.history}


def main(out, scenarios, K=4):
    for scenario in scenarios.split(","):
        run(out, scenario, K)


def run(out, scenario, K):
    comm = MPI.COMM_WORLD
    rank = comm.rank
    res = {}
    if scenario == "train":
        for dtype in ("float32", "float64"):
            x, y, L = data(dtype)
            m = model(dtype)
            h = m.fit(x, y, lengths=L, epochs=2, batch_size=9, seed=5, shards=K,
                      comm=comm, verbose=0, validation_split=0.2)
            res[dtype] = record(m, h)
    elif scenario == "resume":
        x, y, L = data("float32")
        m = model("float32")
        path = os.path.join(out, "ckpt.fastrnn")
        m.fit(x, y, lengths=L, epochs=2, batch_size=9, seed=5, shards=K, comm=comm,
              verbose=0, callbacks=[fr.ModelCheckpoint(path, monitor="loss",
                                                       save_best_only=False)])
        comm.Barrier()
        m2 = fr.load(path)
        h = m2.fit(x, y, lengths=L, epochs=1, batch_size=9, seed=6, comm=comm, verbose=0)
        res["resumed"] = record(m2, h)
        try:
            m2.fit(x, y, lengths=L, epochs=1, batch_size=9, seed=6, shards=2 * K, comm=comm,
                   verbose=0)
        except ValueError as e:
            res["other_k"] = str(e)
    elif scenario == "fail":
        x, y, L = data("float32")
        m = model("float32", Boom(rank=1, at=3))
        try:
            m.fit(x, y, lengths=L, epochs=2, batch_size=9, seed=5, shards=K, comm=comm,
                  verbose=0)
        except Exception as e:  # noqa: BLE001 - what each rank saw is the result
            res["error"] = f"{type(e).__name__}: {e}"
        comm.Barrier()
        res["after"] = "still running"
    elif scenario == "stall":
        x, y, L = data("float32")
        m = model("float32", Boom(rank=1, at=2, sleep=60))
        m.fit(x, y, lengths=L, epochs=1, batch_size=9, seed=5, shards=K, verbose=0,
              comm=fr_distributed().MPIComm(comm, timeout=2))
    elif scenario == "mismatch":
        x, y, L = data("float32")
        if rank == 1:
            x = x + 1
        try:
            model("float32").fit(x, y, lengths=L, epochs=1, seed=5, shards=K, comm=comm,
                                 verbose=0)
        except ValueError as e:
            res["error"] = str(e)
    with open(os.path.join(out, f"{scenario}.r{rank}.json"), "w") as f:
        json.dump(res, f)


def fr_distributed():
    import fastrnn.distributed as frd
    return frd


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:]))
