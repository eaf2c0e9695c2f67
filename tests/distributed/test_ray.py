"""Ray Data scoring: predict_ray's actors (RayPredictor) agree with
model.predict (float tolerance: Ray chooses the batches). Skips without
ray[data]."""
import os

import numpy as np
import pytest

import fastrnn as fr

ray = pytest.importorskip("ray")
pytest.importorskip("pyarrow")  # Ray Data needs it (ray[data])


def test_ray_map_batches_matches_predict_on_the_same_batches(rng):
    import fastrnn.distributed as frd
    x = rng.standard_normal((25, 6, 3)).astype(np.float32)
    L = rng.integers(1, 7, 25)
    model = fr.Sequential([fr.GRU(3, 8, batch_first=True), fr.MeanPooling(),
                           fr.Dense(8, 3)], seed=4).compile("cross_entropy")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ds = ray.data.from_items([{"i": i, "x": x[i], "lengths": L[i]} for i in range(25)])
        out = frd.predict_ray(model, ds, lengths_column="lengths", rows_per_batch=7,
                              concurrency=2).take_all()
    finally:
        ray.shutdown()
    out = sorted(out, key=lambda r: int(r["i"]))
    got = np.stack([r["y"] for r in out])
    ref = np.concatenate([model.predict(x[a:a + 7], lengths=L[a:a + 7]) for a in range(0, 25, 7)])
    np.testing.assert_allclose(got, ref, rtol=2e-4, atol=1e-6)
    # Ray may regroup rows into other batches than these: bitwise equality
    # needs batch-invariant kernels (issue 26 item 4); switch on when they land
    with fr.batch_invariant():
        assert np.array_equal(got, model.predict(x, lengths=L))
