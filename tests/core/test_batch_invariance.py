"""Batch-invariant inference (fr.set_batch_invariant): a sequence's outputs and
final states are the same bits alone or inside any batch, whatever B, the
padding T, its lengths and the thread count, for every cell, both dtypes,
both directions and stacked layers; layer.step, model.predict and Dense too.

Each check compares bitwise (np.array_equal), never with a tolerance. The
batch sizes cross the thresholds of src/fast/tuning.h: FR_FAST_SMALL_M and
FR_FAST_INLOOP_MAX_B (8), FR_FAST_INLOOP_PACK_M (16), FR_FAST_INLOOP_PACK_M_BIG
(32), the tiles' row counts (4, 6, 8), the batch split's FR_FAST_ROWS4_MIN_ROWS
and FR_FAST_ROWS_MIN_ROWS times the threads, FR_FAST_INLOOP_MAX_M (T*B over
1024), FR_FAST_PACK_MIN_T (T below 4) and, separately, FR_FAST_PACK_MAX_B1.
"""
import numpy as np
import pytest

import fastrnn as fr

# (constructor, kwargs): every cell and the kernels each one takes; the
# regularized ones (zoneout, LayerNormLSTM) run their inference path
CELLS = [
    ("LSTM", {}),
    ("GRU", {}),
    ("GRU", {"linear_before_reset": False}),
    ("RNN", {"nonlinearity": "tanh"}),
    ("RNN", {"nonlinearity": "relu"}),
    ("LSTM", {"clip": 2.0}),
    ("LSTM", {"zoneout": 0.25}),
    ("GRU", {"zoneout": 0.25}),
    ("LayerNormLSTM", {}),
]
CELL_IDS = ["lstm", "gru", "gru-lbr0", "rnn-tanh", "rnn-relu", "lstm-clip", "lstm-zoneout",
            "gru-zoneout", "lnlstm"]

# every row of each batch is compared with the row alone
BATCH_SIZES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 15, 16, 17, 31, 32, 33, 48, 64, 70)


@pytest.fixture
def invariant():
    """Batch invariance on for the test, the previous setting restored after."""
    before = fr.set_batch_invariant(True)
    yield
    fr.set_batch_invariant(before)


def _layer(name, kw, I, H, dtype, num_layers=2, bidirectional=True, seed=3):
    cls = getattr(fr, name)
    return cls(I, H, num_layers=num_layers, bidirectional=bidirectional, dtype=dtype,
               seed=seed, batch_first=True, **kw)


def _state_rows(state, b):
    """Row b of a final state (h, or (h, c)), (D*L, H) each."""
    if isinstance(state, tuple):
        return tuple(s[:, b] for s in state)
    return (state[:, b],)


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def _check_pool(layer, rng, dtype, I, max_len, sizes=BATCH_SIZES, frozen=None):
    """A pool of sequences, each run alone at its own length (no padding);
    then batches of every size in `sizes`, rows drawn from the pool in a
    random order and padded to a random T >= their longest: every row of
    every batch must be the bits it had alone. Returns the number of rows
    compared."""
    n = max(sizes)
    lens = rng.integers(1, max_len + 1, n)
    xs = [rng.standard_normal((int(L), I)).astype(dtype) for L in lens]
    run = frozen if frozen is not None else layer
    alone = []
    for x in xs:
        y, st = run(x[None])
        alone.append((y[0], _state_rows(st, 0)))
    compared = 0
    for B in sizes:
        idx = rng.choice(n, B, replace=False)
        T = int(lens[idx].max()) + int(rng.integers(0, 3))
        xb = np.zeros((B, T, I), dtype)
        for r, i in enumerate(idx):
            xb[r, :lens[i]] = xs[i]
            xb[r, lens[i]:] = rng.standard_normal((T - lens[i], I))  # padding is never read
        lb = lens[idx] if (lens[idx] < T).any() else None
        y, st = run(xb, lengths=lb)
        for r, i in enumerate(idx):
            ya, sa = alone[i]
            L = int(lens[i])
            assert np.array_equal(y[r, :L], ya), (B, T, r, L, np.abs(y[r, :L] - ya).max())
            assert not y[r, L:].any()
            assert _same(_state_rows(st, r), sa), (B, T, r, L)
            compared += 1
    return compared


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,kw", CELLS, ids=CELL_IDS)
def test_row_alone_equals_row_in_any_batch(name, kw, dtype, threads, invariant, rng,
                                           restore_threads):
    fr.set_num_threads(threads)
    # a size-1 / prime shape, and one past the fast loops' work thresholds
    for I, H, max_len in ((1, 1, 9), (13, 37, 11)):
        layer = _layer(name, kw, I, H, dtype)
        assert _check_pool(layer, rng, dtype, I, max_len) == sum(BATCH_SIZES)


@pytest.mark.parametrize("name,kw", CELLS[:5], ids=CELL_IDS[:5])
def test_wide_and_long_batches(name, kw, invariant, rng, restore_threads):
    """H a multiple of a cache line (the units split) and H not, T*B past
    FR_FAST_INLOOP_MAX_M, on two threads; one direction and a frozen copy
    (its weights packed once) too."""
    fr.set_num_threads(2)
    for dtype in ("float32", "float64"):
        for I, H, bi in ((64, 64, False), (40, 67, True)):
            layer = _layer(name, kw, I, H, dtype, bidirectional=bi)
            frozen = layer.freeze()
            _check_pool(layer, rng, dtype, I, 160, sizes=(1, 7, 8, 9))
            _check_pool(layer, rng, dtype, I, 12, sizes=(1, 3, 24, 40), frozen=frozen)


def test_batch1_large_w_hh(invariant, rng, restore_threads):
    """At batch 1 a W_hh of more than FR_FAST_PACK_MAX_B1 floats is not
    packed without the switch (dot tiles): with it, the panels' bits."""
    fr.set_num_threads(2)
    layer = fr.LSTM(5, 740, num_layers=1, seed=0, batch_first=True)
    _check_pool(layer, rng, "float32", 5, 6, sizes=(1, 2, 3))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,kw", CELLS, ids=CELL_IDS)
def test_step_row_alone_equals_row_in_batch(name, kw, dtype, invariant, rng,
                                            restore_threads):
    """layer.step on a batch: each row the bits of that row stepped alone,
    over a few chained steps, on 1 and 2 threads; the frozen copy too."""
    I, H = 11, 29
    layer = _layer(name, kw, I, H, dtype, bidirectional=False)
    for threads in (1, 2):
        fr.set_num_threads(threads)
        for B in (2, 5, 9, 17, 40):
            xs = rng.standard_normal((3, B, I)).astype(dtype)
            for run in (layer, layer.freeze() if name != "LayerNormLSTM" else layer):
                st, alone = None, [None] * B
                for t in range(3):
                    y, st = run.step(xs[t], st)
                    for b in range(B):
                        ya, alone[b] = run.step(xs[t, b:b + 1], alone[b])
                        assert np.array_equal(y[b], ya[0]), (B, t, b)
                        assert _same(_state_rows(st, b), _state_rows(alone[b], 0))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_predict_does_not_depend_on_batch_size(dtype, invariant, rng, restore_threads):
    """model.predict of a row: the same bits whatever batch_size and the
    rows beside it (Embedding, a stacked bidirectional GRU, a pooling, Dense)."""
    f = {"dtype": dtype}
    model = fr.Sequential([fr.Embedding(50, 8, **f),
                           fr.GRU(8, 23, num_layers=2, bidirectional=True, batch_first=True, **f),
                           fr.MeanPooling(**f), fr.Dense(46, 5, **f)], seed=1)
    model.compile(loss="cross_entropy")
    n = 90
    lens = rng.integers(1, 15, n)
    seqs = [rng.integers(0, 50, int(L)) for L in lens]
    for threads in (1, 2):
        fr.set_num_threads(threads)
        ref = model.predict(seqs, batch_size=n)
        for bs in (1, 7, 33):
            assert np.array_equal(model.predict(seqs, batch_size=bs), ref), bs
        one = np.concatenate([model.predict([s]) for s in seqs[:10]])
        assert np.array_equal(one, ref[:10])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dense_row_alone(dtype, invariant, rng, restore_threads):
    """The backend's GEMM (Dense, attention): a row of the output depends on
    its row of the input alone, beta 0 and 1, transposed or not."""
    from fastrnn import backends
    be = backends.get("cpu")
    w = rng.standard_normal((257, 19)).astype(dtype)
    for threads in (1, 2):
        fr.set_num_threads(threads)
        for M in (1, 3, 8, 70, 300):
            a = rng.standard_normal((M, 257)).astype(dtype)
            c0 = rng.standard_normal((M, 19)).astype(dtype)
            for beta in (0.0, 1.0):
                c = c0.copy()
                be.gemm(a, w, c, False, False, 1.0, beta)
                at = np.ascontiguousarray(a.T)
                c2 = c0.copy()
                be.gemm(at, w, c2, True, False, 1.0, beta)
                assert np.array_equal(c, c2)
                for m in {0, M // 2, M - 1}:
                    r = c0[m:m + 1].copy()
                    be.gemm(a[m:m + 1], w, r, False, False, 1.0, beta)
                    assert np.array_equal(r[0], c[m]), (M, m, beta)


def test_switch_round_trip_and_errors():
    before = fr.set_batch_invariant(True)
    try:
        assert fr.get_batch_invariant() is True
        assert fr.set_batch_invariant(False) is True
        assert fr.get_batch_invariant() is False
        for bad in ("yes", 2, None):
            with pytest.raises(TypeError, match="set_batch_invariant"):
                fr.set_batch_invariant(bad)
    finally:
        fr.set_batch_invariant(before)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
def test_invariant_forward_matches_torch(cell, dtype, invariant, helpers, rng):
    """The fixed-order kernels against torch: size 1, primes, batch 1, with
    lengths, two layers and both directions (float32 2e-4, float64 1e-9)."""
    pytest.importorskip("torch")
    for I, H, B, T in ((1, 1, 1, 1), (7, 13, 1, 5), (11, 17, 3, 2), (5, 31, 9, 6)):
        tmod, layer = helpers.make_pair(cell, I, H, num_layers=2, bidirectional=True,
                                        dtype=dtype, torch_seed=int(rng.integers(1 << 30)))
        x = rng.standard_normal((T, B, I)).astype(dtype)
        lengths = helpers.random_lengths(rng, B, T, "unequal")
        y, st = layer(x, lengths=lengths)
        out = helpers.torch_run(tmod, x, lengths=lengths)
        helpers.assert_close(y, out["y"], dtype, "y")
        h = st[0] if isinstance(st, tuple) else st
        helpers.assert_close(h, out["h_n"], dtype, "h_n")
        if isinstance(st, tuple):
            helpers.assert_close(st[1], out["c_n"], dtype, "c_n")


@pytest.mark.parametrize("name,kw", CELLS, ids=CELL_IDS)
def test_invariant_training_forward_gradients(name, kw, invariant, rng):
    """A training forward also runs the fixed-order GEMMs when the switch is
    on: its backward still checks against float64 central differences."""
    layer = _layer(name, kw, 3, 5, "float64")
    x = rng.standard_normal((2, 4, 3))
    fr.check_gradients(layer, x, lengths=np.array([4, 2]))  # raises on a mismatch
