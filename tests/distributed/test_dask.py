"""Scoring on a Dask LocalCluster (worker processes): Dask arrays and bags of
variable-length sequences, partitions of one row included, equal
``model.predict`` on the same partitions bit for bit; a worker killed while
scoring is replaced and its partition retried, no row lost or doubled; the
workers run one kernel thread; bad input is refused."""
import os

import numpy as np
import pytest

import fastrnn as fr

pytest.importorskip("dask")
pytest.importorskip("distributed")
import dask.array as da  # noqa: E402
import dask.bag as db  # noqa: E402

import fastrnn.distributed as frd  # noqa: E402

# Bit-identity with one model.predict over all rows, whatever the partitions,
# needs batch-invariant kernels (issue 26 item 4): switch on when they land.
def _predict_invariant(model, *a, **kw):
    """model.predict over all the data, batch-invariant as the workers score."""
    with fr.batch_invariant():
        return model.predict(*a, **kw)


@pytest.fixture(scope="module")
def client():
    from dask.distributed import Client, LocalCluster
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=50)
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


def _model(dtype, per_step, extra=()):
    layers = [fr.GRU(3, 9, batch_first=True, dtype=dtype), *extra,
              fr.LSTM(9, 5, batch_first=True, bidirectional=True, dtype=dtype)]
    if not per_step:
        layers.append(fr.MeanPooling(dtype=dtype))
    layers.append(fr.Dense(10, 4, dtype=dtype))
    m = fr.Sequential(layers, seed=2)
    m.compile("cross_entropy")
    return m


def _by_parts(model, x, lengths, chunks, invariant=True):
    """model.predict partition by partition, as the workers run it."""
    out, a = [], 0
    for n in chunks:
        part = (x[a:a + n],)
        kw = {"lengths": lengths[a:a + n]}
        out.append(_predict_invariant(model, *part, **kw) if invariant
                   else model.predict(*part, **kw))
        a += n
    return np.concatenate(out)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("per_step", [False, True])
def test_array_scoring_matches_predict_on_the_same_partitions(client, dtype, per_step, rng):
    x = rng.standard_normal((31, 7, 3)).astype(dtype)
    L = rng.integers(1, 8, 31)
    model = _model(dtype, per_step)
    chunks = (1, 13, 1, 11, 5)
    got = frd.predict_dask(model, da.from_array(x, chunks=(chunks, 7, 3)),
                           lengths=L).compute()
    assert got.dtype == np.dtype(dtype) and got.shape[0] == 31
    assert np.array_equal(got, _by_parts(model, x, L, chunks))
    np.testing.assert_allclose(got, model.predict(x, lengths=L),
                               rtol=2e-4 if dtype == "float32" else 1e-9, atol=1e-6)
    assert np.array_equal(got, _predict_invariant(model, x, lengths=L))
    # without the switch: the bits of predict on the same partitions only
    plain = frd.predict_dask(model, da.from_array(x, chunks=(chunks, 7, 3)), lengths=L,
                             batch_invariant=False).compute()
    assert np.array_equal(plain, _by_parts(model, x, L, chunks, invariant=False))


def test_bag_of_sequences_matches_predict_on_the_same_partitions(client, rng):
    seqs = [rng.standard_normal((int(n), 3)).astype(np.float32)
            for n in rng.integers(1, 9, 17)]
    seqs[5] = seqs[5][:1]
    model = _model("float32", True)
    bag = db.from_sequence(seqs, partition_size=4)
    got = frd.predict_dask(model, bag).compute()
    assert len(got) == len(seqs)
    for part in range(bag.npartitions):
        idx = list(range(part * 4, min(len(seqs), part * 4 + 4)))
        ref = _predict_invariant(model, [seqs[i] for i in idx]) \
            if len({len(seqs[i]) for i in idx}) > 1 \
            else _predict_invariant(model, np.stack([seqs[i] for i in idx]))
        for j, i in enumerate(idx):
            assert np.array_equal(got[i], ref[j, :len(seqs[i])])
    one = frd.predict_dask(model, db.from_sequence(seqs[:3], npartitions=3)).compute()
    for s, o in zip(seqs, one):
        assert np.array_equal(o, _predict_invariant(model, s[None])[0])
    full = _predict_invariant(model, seqs)
    assert all(np.array_equal(g, full[i, :len(s)]) for i, (g, s) in
               enumerate(zip(got, seqs)))


def test_dead_worker_is_retried_without_lost_or_doubled_rows(client, rng, tmp_path):
    import _killer
    x = rng.standard_normal((20, 6, 3)).astype(np.float32)
    L = rng.integers(1, 7, 20)
    marker = str(tmp_path / "killed")
    model = _model("float32", False, extra=[_killer.KillOnce(marker)])
    chunks = (4, 4, 4, 4, 4)
    got = frd.predict_dask(model, da.from_array(x, chunks=(chunks, 6, 3)),
                           lengths=L).compute()
    assert os.path.exists(marker)  # a worker did die
    assert got.shape == (20, 4)
    assert np.array_equal(got, _by_parts(model, x, L, chunks))
    os.remove(marker)


def test_workers_run_one_kernel_thread(client, rng):
    x = rng.standard_normal((6, 4, 3)).astype(np.float32)
    frd.predict_dask(_model("float32", False), da.from_array(x, chunks=(3, 4, 3))).compute()
    assert set(client.run(fr.get_num_threads).values()) == {1}


def test_bad_input_is_refused(rng):
    model = _model("float32", False)
    x = da.from_array(rng.standard_normal((6, 4, 3)).astype(np.float32), chunks=(3, 2, 3))
    with pytest.raises(ValueError, match="chunk along the first axis only"):
        frd.predict_dask(model, x)
    ok = x.rechunk((3, 4, 3))
    with pytest.raises(ValueError, match="lengths: expected shape"):
        frd.predict_dask(model, ok, lengths=[1, 2])
    with pytest.raises(ValueError, match="lengths: not with a bag"):
        frd.predict_dask(model, db.from_sequence([1, 2]), lengths=[1, 1])
    with pytest.raises(TypeError, match="data: expected a dask.bag.Bag"):
        frd.predict_dask(model, [np.zeros((4, 3))])
    with pytest.raises(ValueError, match="num_threads"):
        frd.predict_dask(model, ok, num_threads=0)
    model.layers[0].callback = lambda v: v
    with pytest.raises(TypeError, match="cannot be pickled for the workers"):
        frd.predict_dask(model, ok)
