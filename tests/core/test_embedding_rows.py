"""A frozen Embedding -> recurrent model looks layer 0's input projection
up by id (Sequential.freeze, fr_forward_rows_f32): tables of every
embedding row's projection, made once. The results must be the bits of the
model without them, wherever the kernel reads the tables and wherever it
projects x itself (small batches, batch-invariant calls, the fast path
off); copies drop the tables; a replaced embedding weight is never read
through stale tables; bad ids are refused at the kernel's boundary too."""
import copy
import pickle

import numpy as np
import pytest

import fastrnn as fr
from fastrnn.backends.cpu import _ext

CELLS = {"lstm": fr.LSTM, "gru": fr.GRU, "rnn": fr.RNN}
# (B, T): small ones where the time loop may project x itself, and one
# that reads the tables
SHAPES = [(1, 7), (3, 5), (9, 40), (32, 30)]


def model(cell, bidirectional=False, layers=1, V=23, E=11, H=19, seed=1):
    rnn = CELLS[cell](E, H, batch_first=True, bidirectional=bidirectional, num_layers=layers)
    D = 2 if bidirectional else 1
    return fr.Sequential([fr.Embedding(V, E, padding_idx=0), rnn, fr.Dense(D * H, 5)],
                         seed=seed)


def same_bits(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))


def tables_read(frozen, x):
    """Whether a call reads the tables: a changed table changes the output."""
    before = frozen(x)
    saved = [t.copy() for t in frozen.layers[1]._rows[1]]
    for t in frozen.layers[1]._rows[1]:
        t += 1.0
    after = frozen(x)
    for t, s in zip(frozen.layers[1]._rows[1], saved):
        t[...] = s
    return not np.array_equal(before, after)


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("bidirectional,layers", [(False, 1), (True, 1), (False, 2),
                                                  (True, 2)])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_the_same_bits_as_without_tables(cell, bidirectional, layers, shape):
    m = model(cell, bidirectional, layers)
    f = m.freeze()
    assert "_rows" in f.layers[1].__dict__
    B, T = shape
    rng = np.random.default_rng(B * 100 + T)
    x = rng.integers(0, 23, (B, T))          # padding id 0 included
    lengths = rng.integers(1, T + 1, B)
    same_bits(f(x), m(x))
    same_bits(f(x, lengths=lengths), m(x, lengths=lengths))
    if B * T >= 960:   # the time loop's own projection takes small batches
        assert tables_read(f, x)


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("shape", [(1, 40), (2, 40), (8, 20)], ids=lambda s: "x".join(map(str, s)))
def test_small_batches_whose_loop_projects_x_read_the_tables_too(cell, bidirectional, shape):
    """I = H = 64 at batch 1-8: the time loop projects x itself with panels
    (one FMA chain over k from the bias, as the GEMM): the tables replace
    it, the same bits."""
    m = model(cell, bidirectional, V=31, E=64, H=64)
    f = m.freeze()
    B, T = shape
    rng = np.random.default_rng(B + T)
    x = rng.integers(0, 31, (B, T))
    lengths = rng.integers(1, T + 1, B)
    same_bits(f(x), m(x))
    same_bits(f(x, lengths=lengths), m(x, lengths=lengths))
    assert tables_read(f, x)


def test_batch_invariant_and_portable_calls_project_x():
    m = model("gru", True)
    f = m.freeze()
    x = np.random.default_rng(0).integers(0, 23, (32, 30))
    assert tables_read(f, x)
    was = fr.set_batch_invariant(True)
    try:
        assert not tables_read(f, x)
        same_bits(f(x), m(x))
    finally:
        fr.set_batch_invariant(was)
    _ext.set_fast_path(False)
    try:
        assert not tables_read(f, x)
        same_bits(f(x), m(x))
    finally:
        _ext.set_fast_path(True)


def test_copies_and_pickles_drop_the_tables():
    m = model("lstm")
    f = m.freeze()
    x = np.random.default_rng(1).integers(0, 23, (32, 30))
    for g in (copy.deepcopy(f), pickle.loads(pickle.dumps(f))):
        assert "_rows" not in g.layers[1].__dict__
        same_bits(g(x), m(x))


def test_a_replaced_embedding_weight_is_not_read_through_the_tables():
    m = model("lstm")
    f = m.freeze()
    assert not f.layers[0].params["weight"].flags.writeable   # the tables hold its rows
    x = np.random.default_rng(2).integers(0, 23, (32, 30))
    new = np.random.default_rng(3).standard_normal((23, 11)).astype(np.float32)
    f.layers[0].params["weight"] = new
    m.layers[0].params["weight"][...] = new
    same_bits(f(x), m(x))


def test_not_made_where_they_would_not_be_read_or_too_big(monkeypatch):
    assert "_rows" not in model("lstm").freeze(weights="int8").layers[1].__dict__
    dense_first = fr.Sequential([fr.LSTM(4, 8, batch_first=True), fr.Dense(8, 2)], seed=0)
    assert "_rows" not in dense_first.freeze().layers[0].__dict__
    no_bias = fr.Sequential([fr.Embedding(9, 4), fr.LSTM(4, 8, batch_first=True, bias=False),
                             fr.Dense(8, 2)], seed=0)
    assert "_rows" not in no_bias.freeze().layers[1].__dict__
    import fastrnn.recurrent as rec
    monkeypatch.setattr(rec, "_ROWS_MAX_BYTES", 23 * 4 * 19 * 4 - 1)
    assert "_rows" not in model("lstm").freeze().layers[1].__dict__


def test_the_kernel_refuses_ids_outside_the_tables():
    m = model("lstm")
    f = m.freeze()
    layer = f.layers[1]
    plan, tables, _ = layer._rows
    x = np.zeros((30, 32, 11), np.float32)
    for bad in (-1, 23):
        ids = np.zeros((30, 32), np.int64)
        ids[5, 7] = bad
        with pytest.raises(ValueError, match=r"ids: expected values in 0\.\.22"):
            _ext.forward_rows(plan, x, ids, tables, None, None, None, 2)
    ids = np.zeros((30, 32), np.int64)
    with pytest.raises(ValueError, match=r"lengths: expected values in 1\.\.30"):
        _ext.forward_rows(plan, x, ids, tables, None, None, np.full(32, 31, np.int64), 2)
    with pytest.raises(ValueError, match="h0: expected shape"):
        _ext.forward_rows(plan, x, ids, tables, np.zeros((1, 31, 19), np.float32), None,
                          None, 2)
    with pytest.raises(TypeError, match="x: expected dtype float32"):
        _ext.forward_rows(plan, x.astype(np.float64), ids, tables, None, None, None, 2)
    with pytest.raises(ValueError, match="tables: expected 1"):
        _ext.forward_rows(plan, x, np.zeros((30, 32), np.int64), tables * 2, None, None,
                          None, 2)
    with pytest.raises(TypeError, match="ids: expected dtype int64"):
        _ext.forward_rows(plan, x, np.zeros((30, 32), np.int32), tables, None, None, None, 2)


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("shape", [(1, 40), (32, 30)], ids=lambda s: "x".join(map(str, s)))
def test_given_initial_states_the_same_bits(cell, shape):
    """The backend entry with h0 (and c0): the model path never passes
    states, the entry takes them; the bits of the plain forward."""
    m = model(cell, True, V=31, E=64, H=64)
    f = m.freeze()
    layer = f.layers[1]
    plan, tables, E = layer._rows
    B, T = shape
    rng = np.random.default_rng(B)
    ids = rng.integers(0, 31, (T, B))
    x = np.ascontiguousarray(E[ids])
    h0 = rng.standard_normal((2, B, 64)).astype(np.float32)
    c0 = rng.standard_normal((2, B, 64)).astype(np.float32) if cell == "lstm" else None
    lengths = rng.integers(1, T + 1, B).astype(np.int64)
    got = _ext.forward_rows(plan, x, ids, tables, h0, c0, lengths, 2)
    want = _ext.forward(plan, x, h0, c0, None, lengths, False, 2)
    for g, w in zip(got, want[:3]):
        if w is not None:
            same_bits(g, w)


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("shape", [(1, 40), (1, 7), (32, 30)], ids=lambda s: "x".join(map(str, s)))
def test_against_torch(cell, shape):
    """The frozen model with its tables against torch on the same weights
    (fr.to_torch): odd sizes, batch 1, lengths."""
    torch = pytest.importorskip("torch")
    m = model(cell, True, V=31, E=13, H=17)
    f = m.freeze()
    module = fr.to_torch(m)
    B, T = shape
    rng = np.random.default_rng(T)
    x = rng.integers(0, 31, (B, T))
    lengths = rng.integers(1, T + 1, B)
    lengths[0] = T
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
        want_l = module(torch.from_numpy(x), torch.from_numpy(lengths)).numpy()
    np.testing.assert_allclose(f(x), want, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(f(x, lengths=lengths), want_l, rtol=2e-4, atol=2e-5)
