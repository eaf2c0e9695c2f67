"""fit(shards=K) in one process: shards=1 is today's fit bit for bit; K shards
give the gradient of the whole batch (float64, no dropout) for every loss,
masks and weights included; the recorded division guards resumes; bad
arguments are refused by name; models pickle with their weights out of band."""
import pickle

import numpy as np
import pytest

import fastrnn as fr


def _seq_model(dtype, out, per_step):
    layers = [fr.GRU(4, 6, batch_first=True, dtype=dtype)]
    if not per_step:
        layers.append(fr.MeanPooling(dtype=dtype))
    layers.append(fr.Dense(6, out, dtype=dtype))
    return fr.Sequential(layers, seed=1)


def _weights(m):
    return [p.copy() for _, p, _ in m.parameters()]


CASES = {  # name: (loss, per_step, targets from (rng, N, T))
    "ce": (fr.losses.CrossEntropy(), False, lambda r, n, t: r.integers(0, 3, n)),
    "ce_steps_weighted": (fr.losses.CrossEntropy(ignore_index=2, class_weights=[1.0, 2.5, 0.5],
                                                 label_smoothing=0.1), True,
                          lambda r, n, t: r.integers(0, 3, (n, t))),
    "bce_steps": (fr.losses.BinaryCrossEntropy(), True,
                  lambda r, n, t: (r.random((n, t, 3)) > 0.5).astype(np.float64)),
    "mse_steps": (fr.losses.MSE(), True, lambda r, n, t: r.standard_normal((n, t, 3))),
    "ctc_mean": (fr.losses.CTC(), True, lambda r, n, t: r.integers(1, 3, (n, 2))),
    "ctc_sum": (fr.losses.CTC(reduction="sum"), True, lambda r, n, t: r.integers(1, 3, (n, 2))),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("K", [2, 3, 7])
def test_shards_give_the_whole_batch_gradient(case, K, rng):
    loss, per_step, targets = CASES[case]
    N, T = 13, 7
    x = rng.standard_normal((N, T, 4))
    L = rng.integers(3, T + 1, N)
    y = targets(rng, N, T)
    got = []
    for shards in (1, K):
        m = _seq_model("float64", 3, per_step)
        m.compile(loss, fr.optim.SGD(lr=0.5))
        m.fit(x, y, lengths=L, epochs=2, batch_size=N if K == 7 else 5, seed=0, verbose=0,
              shuffle=True, shards=shards)
        got.append(_weights(m))
    for a, b in zip(*got):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12)


def test_shards_one_is_todays_fit_bit_for_bit(rng):
    x = rng.integers(1, 20, (23, 6))
    L = rng.integers(1, 7, 23)
    y = x[:, 0] % 3
    runs = []
    for kw in ({}, {"shards": 1}):
        m = fr.Sequential([fr.Embedding(20, 5), fr.LSTM(5, 7, batch_first=True), fr.Dropout(0.3),
                           fr.MeanPooling(), fr.Dense(7, 3)])
        m.compile("cross_entropy", "adam", metrics=["accuracy"])
        h = m.fit(x, y, lengths=L, epochs=2, batch_size=4, seed=3, verbose=0, **kw)
        runs.append((h.history, b"".join(p.tobytes() for p in _weights(m)), m.sharding))
    assert runs[0] == runs[1]
    assert runs[0][2] is None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sharded_fit_repeats_bit_for_bit_with_dropout(dtype, rng):
    x = rng.standard_normal((11, 5, 4)).astype(dtype)
    y = rng.integers(0, 3, 11)
    out = []
    for _ in range(2):
        m = fr.Sequential([fr.LSTM(4, 6, batch_first=True, dtype=dtype), fr.Dropout(0.5, dtype=dtype),
                           fr.LastStep(dtype=dtype), fr.Dense(6, 3, dtype=dtype)])
        m.compile("cross_entropy", "adam", metrics=["accuracy"])
        h = m.fit(x, y, epochs=2, batch_size=3, seed=9, shards=4, verbose=0)  # a shard is empty
        out.append((h.history, b"".join(p.tobytes() for p in _weights(m))))
    assert out[0] == out[1]
    assert m.sharding == {"shards": 4, "batch_size": 3}


def test_sharding_is_saved_and_guards_resume(tmp_path, rng):
    x = rng.standard_normal((8, 5, 4)).astype(np.float32)
    y = rng.integers(0, 3, 8)
    m = _seq_model("float32", 3, False)
    m.compile("cross_entropy")
    m.fit(x, y, epochs=1, batch_size=4, seed=0, shards=2, verbose=0)
    m.save(tmp_path / "m.fastrnn")
    m2 = fr.load(tmp_path / "m.fastrnn")
    assert m2.sharding == {"shards": 2, "batch_size": 4}
    with pytest.raises(ValueError, match=r"trained with shards=2, batch_size=4"):
        m2.fit(x, y, epochs=1, batch_size=4, seed=0, shards=4, verbose=0)
    with pytest.raises(ValueError, match=r"shards=2, batch_size=8 would divide"):
        m2.fit(x, y, epochs=1, batch_size=8, seed=0, verbose=0)
    m2.fit(x, y, epochs=1, batch_size=4, seed=0, verbose=0)  # the recorded K by default
    m2.sharding = None
    m2.fit(x, y, epochs=1, batch_size=8, seed=0, verbose=0, shards=1)


def test_bad_shard_and_comm_arguments(rng):
    x = rng.standard_normal((6, 5, 4)).astype(np.float32)
    y = rng.integers(0, 3, 6)
    m = _seq_model("float32", 3, False).compile("cross_entropy")
    for bad, err in ((0, ValueError), (2.5, TypeError), ("2", TypeError)):
        with pytest.raises(err, match="shards"):
            m.fit(x, y, shards=bad, verbose=0)
    with pytest.raises(TypeError, match="comm: expected an mpi4py communicator"):
        m.fit(x, y, shards=2, comm="COMM_WORLD", verbose=0)
    with pytest.raises(TypeError, match="comm: expected an mpi4py communicator"):
        m.fit(x, y, shards=2, comm=object(), verbose=0)
    seq = _seq_model("float32", 3, True).compile("cross_entropy")
    with pytest.raises(ValueError, match="bptt"):
        seq.fit(x, rng.integers(0, 3, (6, 5)), shards=2, bptt=2, verbose=0)

    class MyLoss(fr.losses.MSE):
        _weight = fr.losses.Loss._weight
    m.compile(MyLoss())
    with pytest.raises(TypeError, match="does not say what it divides by"):
        m.fit(x, rng.standard_normal((6, 3)), shards=2, verbose=0)


def test_comm_of_the_wrong_kind_is_refused():
    MPI = pytest.importorskip("mpi4py.MPI")
    from fastrnn._collective import check_comm
    with pytest.raises(TypeError, match="intracommunicator"):
        check_comm(MPI.COMM_NULL)
    check_comm(MPI.COMM_WORLD)
    import fastrnn.distributed as frd
    with pytest.raises(ValueError, match="timeout"):
        frd.MPIComm(MPI.COMM_WORLD, timeout=0)


def test_scoring_copy_pickles_weights_out_of_band(rng):
    import fastrnn.distributed as frd
    m = fr.Sequential([fr.Embedding(500, 16), fr.LSTM(16, 32, batch_first=True),
                       fr.MeanPooling(), fr.Dense(32, 3)], seed=0)
    m.compile("cross_entropy", "adam")
    x = rng.integers(1, 500, (9, 6))
    m.fit(x, x[:, 0] % 3, epochs=1, verbose=0, seed=0)  # optimizer state exists
    bufs = []
    data = pickle.dumps(frd.for_scoring(m), protocol=5, buffer_callback=bufs.append)
    weights = sum(p.nbytes for _, p, _ in m.parameters())
    shipped = sum(memoryview(b).nbytes for b in bufs)
    assert weights <= shipped < weights + 1024  # no gradients, no optimizer state
    assert len(data) < 8192
    frames = [memoryview(bytes(memoryview(b))) for b in bufs]  # read-only, as received
    m2 = pickle.loads(data, buffers=frames)
    views = [np.frombuffer(f, np.uint8) for f in frames]
    for _, p, _ in m2.parameters():  # zero-copy: every weight reads a received frame
        assert not p.flags.writeable and any(np.shares_memory(p, v) for v in views)
    assert np.array_equal(m2.predict(x), m.predict(x))
    assert m.optimizer is not None and all(g is not None for _, _, g in m.parameters())


def test_unpicklable_model_is_refused():
    import fastrnn.distributed as frd
    m = _seq_model("float32", 3, False)
    m.layers[-1].hook = lambda v: v
    with pytest.raises(TypeError, match="cannot be pickled for the workers"):
        frd.for_scoring(m)
    with pytest.raises(TypeError, match="expected an fr.Sequential"):
        frd.for_scoring(m.layers[0])
