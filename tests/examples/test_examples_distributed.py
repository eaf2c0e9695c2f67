"""The distributed example (fastrnn/examples/distributed.py): mpiexec -n 2
training equals one process bit for bit, then Dask scoring learns the task."""
import pytest


def test_distributed_quick_run():
    pytest.importorskip("mpi4py")
    pytest.importorskip("distributed")
    from fastrnn.examples import distributed
    r = distributed.main(["--quick"])
    assert r["bit_identical"] is True
    assert r["accuracy"] > 0.34
