"""pytest-benchmark over every reference shape, for fastrnn and its peers.

Records times, never asserts them. Run (see benchmarks/README.md):

    python -m pytest benchmarks --benchmark-group-by=group --benchmark-columns=median,iqr,rounds
    python -m pytest -q benchmarks --benchmark-disable      # one call each: a smoke test

The cases (inputs, weights shared through fr.from_torch, the torch/ORT/NumPy
calls) come from fastrnn.bench, so these numbers and `python -m fastrnn.bench`
time the same thing. A peer whose package is missing is skipped per test.
"""

import os

import pytest

from fastrnn import bench

THREADS = int(os.environ.get("FASTRNN_BENCH_THREADS", "2"))

CASES = [
    pytest.param(shape, engine, id="%s-%s" % (shape.name, engine))
    for shape in bench.SHAPES
    for engine in bench.ENGINES
    if bench.applicable(shape, engine)
]


@pytest.fixture(scope="module", autouse=True)
def _threads():
    bench.set_threads(THREADS)


def _require(engine):
    if engine in ("torch", "ort"):
        pytest.importorskip("torch")
    if engine == "ort":
        pytest.importorskip("onnx")
        pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("shape,engine", CASES)
def test_reference_shape(benchmark, shape, engine):
    _require(engine)
    case = bench.Case(shape, dtype="float32", threads=THREADS)
    try:
        fn = case.runner(engine)
    except bench.Unavailable as e:
        pytest.skip(str(e))
    benchmark.group = shape.name
    benchmark.extra_info.update(
        engine=engine, cell=shape.cell, B=shape.B, T=shape.T, I=shape.I, H=shape.H,
        mode=shape.mode, var_lengths=shape.var, threads=THREADS, flop=bench.flops(shape))
    benchmark(fn)
