"""A batch_first layer's output written (B, T, D*H) by the forward itself,
and its gradient read so by the backward (fr_desc.y_batch_first, the
backend's batch_first=True): the bits of the time-major calls, on every
path of the kernels (one thread and two, the units split, the batch split,
lengths, one step, packed weights, float64, int8, bf16, the embedding
rows' tables, training), and the layer's own transpositions where a
backend does not take the flag.
"""
import numpy as np
import pytest

import fastrnn as fr
from fastrnn import backends

# (cell, B, T, I, H, layers, directions, lengths): odd and prime sizes,
# batch 1; the units split (B*G*H*H >= 65,536 a step), the batch split
# (16 rows a thread, or 4 with a small W_hh), a variable-length batch
# split, one step
SHAPES = [
    ("LSTM", 1, 1, 3, 1, 1, 1, False),
    ("GRU", 2, 7, 5, 3, 2, 2, True),
    ("RNN_TANH", 3, 5, 4, 7, 2, 1, True),
    ("RNN_RELU", 5, 6, 2, 13, 1, 2, False),
    ("LSTM", 8, 9, 16, 48, 1, 1, False),
    ("GRU", 8, 9, 16, 48, 1, 2, True),
    ("LSTM", 37, 6, 5, 20, 1, 1, False),
    ("GRU", 40, 5, 7, 31, 2, 1, False),
    ("LSTM", 37, 6, 5, 20, 1, 2, True),
    ("LSTM", 8, 1, 16, 48, 2, 1, False),
    ("GRU", 3, 4, 11, 67, 1, 2, True),
]
PRECISIONS = ["float32", "packed", "float64", "int8", "bf16"]


def make(cell, I, H, L, D, batch_first, precision):
    kw = dict(num_layers=L, bidirectional=D == 2, seed=7, batch_first=batch_first)
    if precision == "float64":
        kw["dtype"] = "float64"
    if cell.startswith("RNN"):
        layer = fr.RNN(I, H, nonlinearity=cell[4:].lower(), **kw)
    else:
        layer = getattr(fr, cell)(I, H, **kw)
    if precision == "packed":
        return layer.freeze()
    if precision in ("int8", "bf16"):
        return layer.freeze(weights=precision)
    return layer


def pair(shape, precision):
    cell, B, T, I, H, L, D, lens = shape
    rng = np.random.default_rng(B * 1000 + T * 10 + H)
    dt = np.float64 if precision == "float64" else np.float32
    x = rng.standard_normal((B, T, I)).astype(dt)
    lengths = rng.integers(1, T + 1, size=B) if lens else None
    return (make(cell, I, H, L, D, True, precision), make(cell, I, H, L, D, False, precision),
            x, lengths)


def states(s):
    return list(s) if isinstance(s, tuple) else [s]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "-".join(map(str, s)))
def test_batch_first_y_is_the_time_major_y_transposed(shape, precision, threads,
                                                       restore_threads):
    fr.set_num_threads(threads)
    bf, tm, x, lengths = pair(shape, precision)
    y, s = bf(x, lengths=lengths)
    yt, st = tm(np.ascontiguousarray(x.transpose(1, 0, 2)), lengths=lengths)
    B, T = x.shape[:2]
    assert y.shape == (B, T, yt.shape[2]) and y.flags.c_contiguous
    assert np.array_equal(y, yt.transpose(1, 0, 2))
    for a, b in zip(states(s), states(st)):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("shape", [SHAPES[1], SHAPES[5], SHAPES[7], SHAPES[8]],
                         ids=lambda s: "-".join(map(str, s)))
def test_training_forward_and_backward_agree(shape, restore_threads):
    fr.set_num_threads(2)
    bf, tm, x, lengths = pair(shape, "float32")
    y, _ = bf.forward(x, lengths=lengths)
    yt, _ = tm.forward(np.ascontiguousarray(x.transpose(1, 0, 2)), lengths=lengths)
    assert np.array_equal(y, yt.transpose(1, 0, 2))
    dy = np.random.default_rng(3).standard_normal(y.shape).astype(np.float32)
    dx, _ = bf.backward(dy)
    dxt, _ = tm.backward(np.ascontiguousarray(dy.transpose(1, 0, 2)))
    assert np.array_equal(dx, dxt.transpose(1, 0, 2))
    for name in bf.grads:
        assert np.array_equal(bf.grads[name], tm.grads[name]), name


def spy(monkeypatch, backend, flag):
    """Record the batch_first each recurrent forward of `backend` gets, with
    its rnn_y_batch_first set to flag."""
    seen = []
    monkeypatch.setattr(backend, "rnn_y_batch_first", flag, raising=False)
    for name in ("rnn_forward", "rnn_forward_rows", "rnn_qforward", "rnn_backward"):
        orig = getattr(backend, name)

        def wrapped(*args, _orig=orig, **kw):
            seen.append(kw.get("batch_first", False))
            return _orig(*args, **kw)
        monkeypatch.setattr(backend, name, wrapped)
    return seen


@pytest.mark.parametrize("precision", ["float32", "packed", "int8"])
@pytest.mark.parametrize("flag", [True, False])
def test_the_kernel_writes_the_layout_only_where_the_backend_says(precision, flag,
                                                                  monkeypatch):
    bf, tm, x, lengths = pair(SHAPES[8], precision)
    seen = spy(monkeypatch, backends.get("cpu"), flag)
    y, _ = bf(x, lengths=lengths)
    assert seen == [flag]           # without the flag the layer transposes
    yt, _ = tm(np.ascontiguousarray(x.transpose(1, 0, 2)), lengths=lengths)
    assert np.array_equal(y, yt.transpose(1, 0, 2))


@pytest.mark.parametrize("flag", [True, False])
def test_training_reads_dy_in_the_layout_the_backend_says(flag, monkeypatch,
                                                          restore_threads):
    fr.set_num_threads(2)
    bf, tm, x, lengths = pair(SHAPES[7], "float32")
    dy = np.random.default_rng(4).standard_normal((x.shape[0], x.shape[1], 31)).astype(np.float32)
    tm.forward(np.ascontiguousarray(x.transpose(1, 0, 2)))
    dxt, _ = tm.backward(np.ascontiguousarray(dy.transpose(1, 0, 2)))
    seen = spy(monkeypatch, backends.get("cpu"), flag)
    bf.forward(x)
    dx, _ = bf.backward(dy)
    assert seen == [flag, flag]
    assert np.array_equal(dx, dxt.transpose(1, 0, 2))
    for name in bf.grads:
        assert np.array_equal(bf.grads[name], tm.grads[name]), name


@pytest.mark.parametrize("flag", [True, False])
def test_a_frozen_model_with_embedding_rows(flag, monkeypatch):
    """Embedding -> LSTM(batch_first) -> Dense frozen: the LSTM reads its
    input projection from the embedding's tables (rnn_forward_rows) and
    writes y batch-first; the same bits as the trainable model."""
    model = fr.Sequential([fr.Embedding(30, 8), fr.LSTM(8, 32, batch_first=True),
                           fr.Dense(32, 5)], seed=1)
    frozen = model.freeze()
    ids = np.random.default_rng(2).integers(0, 30, size=(9, 11))
    want = model(ids)
    seen = spy(monkeypatch, backends.get("cpu"), flag)
    assert np.array_equal(frozen(ids), want)
    assert seen == [flag]


def test_the_backend_flag_changes_the_layout_of_y_only():
    """The flag changes y's layout only: x stays (T, B, I) for the backend."""
    layer = fr.LSTM(4, 6, seed=0)
    be = layer.backend
    plan = layer._plan("params")
    x = np.random.default_rng(0).standard_normal((5, 3, 4)).astype(np.float32)
    y, hn, cn, _ = be.rnn_forward(plan, x, None, None, None, None, False, batch_first=True)
    yt, hnt, cnt, _ = be.rnn_forward(plan, x, None, None, None, None, False)
    assert y.shape == (3, 5, 6) and yt.shape == (5, 3, 6)
    assert np.array_equal(y, yt.transpose(1, 0, 2)) and np.array_equal(hn, hnt)
