"""Frozen layers (freeze()): weights packed once for the fast float32 loops.
They must give the very bits of the layer they were made from on every
kernel path (the cases of test_fast_path.py), read their packed weights
rather than the arrays, never use packs that no longer match (a parameter
made writeable again, another vector width, the portable path), refuse
training with a clear error, and survive copies, pickles, models and
threads."""
import copy
import pickle
import threading

import numpy as np
import pytest

import fastrnn as fr
from fastrnn.backends.cpu import _ext
from test_fast_path import CASES, _case, _layer


@pytest.fixture
def restored():
    yield
    _ext.set_fast_path(True)
    _ext.set_fast_width(16)
    fr.set_num_threads(None)


def _infer(layer, x, h0, lengths):
    y, s = layer(x, h0, lengths=lengths)
    y0, s0 = layer(x, None, lengths=lengths)
    out = {"y": y, "y_zero_state": y0}
    for i, a in enumerate(s if isinstance(s, tuple) else (s,)):
        out[f"state{i}"] = a
    for i, a in enumerate(s0 if isinstance(s0, tuple) else (s0,)):
        out[f"state0_{i}"] = a
    return out


# 16-31 rows of a W_ih past 2M floats: the panel GEMM projects x before the
# loop, packing W_ih a block at a time; frozen, the loop reads W_ih's packed
# panels instead (projection mode 2), with the same bits
BIG_W_IH = [
    ("LSTM", 1100, 512, 1, 20, 1, False),
    ("GRU", 1500, 520, 2, 10, 1, False),
    ("LSTM", 700, 777, 3, 7, 1, True),
    ("LSTM", 700, 777, 2, 12, 1, False, "equal"),
]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("case", CASES + BIG_W_IH,
                         ids=lambda c: f"{c[0]}-I{c[1]}-H{c[2]}-B{c[3]}-T{c[4]}")
def test_frozen_gives_the_same_bits(case, threads, restored):
    fr.set_num_threads(threads)
    layer, x, h0, lengths, _ = _case(*case)
    frozen = layer.freeze()
    assert frozen.frozen and not layer.frozen
    want, got = _infer(layer, x, h0, lengths), _infer(frozen, x, h0, lengths)
    for k in want:
        assert np.array_equal(want[k], got[k]), k
    if not layer.bidirectional:
        xt = x[0]
        s = None
        for _ in range(3):  # streaming: T = 1 calls, W_hh as it is
            a, s_a = layer.step(xt, s)
            b, s_b = frozen.step(xt, s)
            assert np.array_equal(a, b)
            s = s_a


# one case on each path that reads packed panels: W_hh (T >= 4), and W_ih
# (True) where the loop projects x: packed whole (rows_project) or in
# panels per thread (mode 2); the GEMM before the loop reads W_ih as it is
PACK_READ = [
    (("LSTM", 33, 77, 7, 20, 1, False, "equal"), True),   # batch split, rows_project
    (("LSTM", 37, 131, 3, 11, 2, True), True),            # mode 2, units split
    (("GRU", 19, 150, 2, 20, 1, False), True),            # mode 2
    (("LSTM", 64, 64, 1, 40, 1, False), True),            # one-thread loop, split projection
    (("GRU", 24, 200, 5, 12, 1, False, "equal"), True),   # batch split, packed W_hh
    (("LSTM", 20, 48, 19, 6, 1, False, "equal"), False),  # units split, x by the GEMM
    ((BIG_W_IH[0]), True),                                # the GEMM's rows, frozen: mode 2
]


@pytest.mark.parametrize("case,ih", PACK_READ, ids=lambda c: f"{c[0]}-H{c[2]}-B{c[3]}-T{c[4]}"
                         if isinstance(c, tuple) else str(c))
def test_calls_read_the_packed_weights(case, ih, restored):
    """Packed once, the weights the kernel reads are the packs: changing the
    arrays behind the plan's back (what frozen layers forbid) changes
    nothing until they are packed again."""
    if not _ext.set_fast_path(True):
        pytest.skip("no AVX2/FMA here: nothing is packed")
    layer, x, h0, lengths, _ = _case(*case)
    plan = layer._plan("params")
    assert plan.pack() in (8, 16) and plan.packed
    before = layer(x, h0, lengths=lengths)[0]
    for name, a in layer.params.items():
        if name.startswith("weight_hh") or (ih and name.startswith("weight_ih")):
            a *= 0.5
    assert np.array_equal(layer(x, h0, lengths=lengths)[0], before)
    plan.pack()
    after = layer(x, h0, lengths=lengths)[0]
    plan.unpack()
    assert np.array_equal(layer(x, h0, lengths=lengths)[0], after)
    assert not np.array_equal(after, before)


def test_packs_for_another_path_are_ignored(restored):
    """With the fast loops off after packing, a frozen layer runs the
    portable path as an unfrozen one does (its packs are not read)."""
    if not _ext.set_fast_path(True):
        pytest.skip("no AVX2/FMA here: nothing is packed")
    layer, x, h0, lengths, _ = _case("LSTM", 37, 131, 3, 11, 2, True)
    frozen = layer.freeze()
    assert frozen._plan("params").packed_width in (8, 16)
    _ext.set_fast_path(False)
    assert np.array_equal(frozen(x, h0, lengths=lengths)[0],
                          layer(x, h0, lengths=lengths)[0])
    _ext.set_fast_path(True)
    _ext.set_fast_width(8)   # the AVX-512 build's packs are 16 wide
    assert np.array_equal(frozen(x, h0, lengths=lengths)[0],
                          layer(x, h0, lengths=lengths)[0])


def test_a_parameter_made_writeable_is_packed_again(restored):
    layer, x, h0, lengths, _ = _case("LSTM", 33, 77, 7, 20, 1, False, "equal")
    frozen = layer.freeze()
    w = frozen.params["weight_hh_l0"]
    with pytest.raises(ValueError, match="read-only"):
        w[0, 0] = 1.0
    w.flags.writeable = True
    w *= 0.5
    layer.params["weight_hh_l0"] *= 0.5
    assert np.array_equal(frozen(x, h0)[0], layer(x, h0)[0])
    assert not w.flags.writeable  # read-only again, and packed from the new values
    # a parameter replaced by another array: a new plan, packed, read-only
    frozen.params["weight_ih_l0"] = layer.params["weight_ih_l0"] * 2
    layer.params["weight_ih_l0"] *= 2
    assert np.array_equal(frozen(x, h0)[0], layer(x, h0)[0])
    assert not frozen.params["weight_ih_l0"].flags.writeable


def test_frozen_layers_refuse_training():
    layer = fr.GRU(5, 7, seed=1)
    frozen = layer.freeze()
    x = np.ones((4, 2, 5), np.float32)
    for call in (lambda: frozen.forward(x),
                 lambda: frozen.load_state_dict(layer.state_dict()),
                 lambda: frozen.reset_parameters(3)):
        with pytest.raises(RuntimeError, match="frozen"):
            call()
    # the layer it came from is untouched and trains; unfreeze() gives a
    # trainable copy with the same outputs
    assert all(a.flags.writeable for a in layer.params.values())
    layer.forward(x)
    layer.backward(np.ones((4, 2, 7), np.float32))
    thawed = frozen.unfreeze()
    assert not thawed.frozen and all(a.flags.writeable for a in thawed.params.values())
    assert np.array_equal(thawed(x)[0], frozen(x)[0])
    thawed.forward(x)
    assert frozen.frozen  # unfreeze() copies


def test_frozen_layers_check_their_input():
    """A frozen layer's calls validate as the layer's do, before any kernel."""
    frozen = fr.LSTM(5, 7, seed=1).freeze()
    x = np.ones((4, 3, 5), np.float32)
    bad = [
        (lambda: frozen(np.ones((4, 3, 6), np.float32)), ValueError),        # feature size
        (lambda: frozen(np.ones((4, 5), np.float32)), ValueError),           # ndim
        (lambda: frozen(x, lengths=[1, 5, 2]), ValueError),                  # length > T
        (lambda: frozen(x, lengths=[0, 1, 2]), ValueError),                  # length 0
        (lambda: frozen(x, lengths=[1, 2]), ValueError),                     # one too few
        (lambda: frozen(x, np.ones((1, 3, 7), np.float32)), TypeError),      # h alone for an LSTM
        (lambda: frozen(x.astype(complex)), TypeError),                      # dtype
        (lambda: frozen.step(np.ones((3, 4), np.float32)), ValueError),      # step's x_t
    ]
    for call, err in bad:
        with pytest.raises(err):
            call()


def test_copies_and_pickles_stay_frozen():
    layer = fr.LSTM(6, 9, num_layers=2, seed=2)
    x = np.random.default_rng(0).standard_normal((12, 3, 6)).astype(np.float32)
    want = layer(x)[0]
    frozen = layer.freeze()
    for other in (copy.deepcopy(frozen), pickle.loads(pickle.dumps(frozen))):
        assert other.frozen
        assert np.array_equal(other(x)[0], want)
        assert not any(a.flags.writeable for a in other.params.values())
        with pytest.raises(RuntimeError, match="frozen"):
            other.forward(x)


def test_frozen_float64_and_regularized_layers():
    """Nothing to pack (float64; the regularized kernels): still read-only,
    still inference only, the same bits."""
    x64 = np.random.default_rng(1).standard_normal((10, 2, 4))
    l64 = fr.LSTM(4, 6, dtype="float64", seed=3)
    f64 = l64.freeze()
    assert not f64._plan("params").packed
    assert np.array_equal(f64(x64)[0], l64(x64)[0])
    lz = fr.LSTM(4, 6, zoneout=0.1, seed=3)
    fz = lz.freeze()
    x = x64.astype(np.float32)
    assert np.array_equal(fz(x)[0], lz(x)[0])
    with pytest.raises(RuntimeError, match="frozen"):
        fz.forward(x)


def test_model_freeze_predicts_the_same_bits(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((20, 15, 8)).astype(np.float32)
    y = rng.integers(0, 3, size=20)
    model = fr.Sequential([fr.LSTM(8, 16, batch_first=True, seed=1), fr.LastStep(),
                           fr.Dense(16, 3, seed=2)], seed=0)
    model.compile("cross_entropy", optimizer="adam")
    model.fit(x, y, epochs=1, batch_size=10, verbose=0)
    frozen = model.freeze()
    assert frozen.layers[0].frozen and not model.layers[0].frozen
    assert np.array_equal(frozen.predict(x), model.predict(x))
    with pytest.raises(RuntimeError, match="frozen"):
        frozen.fit(x, y, epochs=1, verbose=0)
    # saved and loaded: the same predictions, from a trainable model
    path = tmp_path / "frozen.fastrnn"
    frozen.save(str(path))
    loaded = fr.load(str(path))
    assert not loaded.layers[0].frozen
    assert np.array_equal(loaded.predict(x), frozen.predict(x))
    model.fit(x, y, epochs=1, batch_size=10, verbose=0)  # the original still trains


def test_parameters_start_on_cache_lines(tmp_path):
    """The recurrent layers' parameters and gradients start on 64-byte lines
    when the layer is made, frozen, unfrozen or loaded (the dot tiles read
    the weights as they are: a row 16 bytes into a line splits every other
    vector load), and stay C-contiguous arrays of the layer's dtype."""
    def on_lines(store):
        return all(a.ctypes.data % 64 == 0 and a.flags.c_contiguous for a in store.values())

    for layer in (fr.LSTM(5, 7, num_layers=2, bidirectional=True, seed=0),
                  fr.GRU(3, 64, seed=0, dtype="float64"), fr.RNN(1, 9, seed=0),
                  fr.LayerNormLSTM(4, 6, seed=0)):
        assert on_lines(layer.params) and on_lines(layer.grads), layer
        assert not any(g.any() for g in layer.grads.values())
        frozen = layer.freeze()
        assert on_lines(frozen.params)
        assert not any(a.flags.writeable for a in frozen.params.values())
        thawed = frozen.unfreeze()
        assert on_lines(thawed.params) and on_lines(thawed.grads)
        assert all(a.flags.writeable for a in thawed.params.values())
        for k in layer.params:
            assert np.array_equal(thawed.params[k], layer.params[k])
            assert np.shares_memory(frozen.params[k], layer.params[k]) is False
    model = fr.Sequential([fr.LSTM(8, 16, seed=1), fr.LastStep(), fr.Dense(16, 3, seed=2)])
    path = tmp_path / "m.fastrnn"
    model.save(str(path))
    assert on_lines(fr.load(str(path)).layers[0].params)
    assert on_lines(model.freeze().layers[0].params)


def test_frozen_layer_from_many_threads_while_repacking(restored):
    """Calls from several threads while another keeps making a parameter
    writeable (every call that sees it repacks): no crash, and every result
    is the one of the unchanged weights."""
    layer, x, h0, _, _ = _case("LSTM", 33, 77, 7, 20, 1, False, "equal")
    want = layer(x, h0)[0]
    frozen = layer.freeze()
    errors, stop = [], threading.Event()

    def caller():
        try:
            for _ in range(30):
                if not np.array_equal(frozen(x, h0)[0], want):
                    errors.append("wrong result")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(repr(e))

    def toggler():
        w = frozen.params["weight_hh_l0"]
        while not stop.is_set():
            w.flags.writeable = True  # values unchanged: only forces repacks

    ts = [threading.Thread(target=caller) for _ in range(4)]
    tg = threading.Thread(target=toggler)
    tg.start()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    stop.set()
    tg.join()
    assert errors == []


# every path that reads packed weights, against torch: odd sizes (primes),
# batch 1, variable and equal lengths, given initial states, 1 and 2 threads
FROZEN_TORCH = [  # cell, I, H, B, T, layers, bidirectional[, "equal"]
    ("lstm", 24, 77, 8, 30, 1, False, "equal"),   # batch split, rows_project
    ("lstm", 37, 131, 3, 11, 2, True),            # mode 2 panels, units split
    ("gru", 19, 150, 1, 23, 1, False),            # batch 1
    # W_ih past 2M floats over 16-31 rows: the GEMM, frozen the loop's panels
    ("lstm", 4200, 127, 1, 20, 1, False),
    ("gru", 5400, 131, 2, 10, 1, True),
    ("lstm", 7, 37, 13, 9, 1, False),             # variable-length batch split
    ("rnn_tanh", 5, 101, 5, 12, 1, False),
]


@pytest.mark.parametrize("case", FROZEN_TORCH, ids=lambda c: "-".join(map(str, c[:5])))
def test_frozen_matches_torch(case, helpers, restored):
    pytest.importorskip("torch")
    cell, I, H, B, T, L, bd = case[:7]
    D = 2 if bd else 1
    rng = np.random.default_rng(13)
    module, layer = helpers.make_pair(cell, I, H, num_layers=L, bidirectional=bd,
                                      dtype="float32", torch_seed=3)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    lengths = None if case[7:] == ("equal",) else rng.integers(1, T + 1, size=B)
    if lengths is not None:
        lengths[0] = T
    h0 = (0.5 * rng.standard_normal((L * D, B, H))).astype(np.float32)
    state0 = (h0, -h0) if cell == "lstm" else h0
    ref = helpers.torch_run(module, x, state0, lengths)
    frozen = layer.freeze()
    for nt in (1, 2):
        fr.set_num_threads(nt)
        y, st = frozen(x, state0, lengths=lengths)
        helpers.assert_close(y, ref["y"], np.float32, f"y, {case}, {nt} thread(s)")
        hn = st[0] if cell == "lstm" else st
        helpers.assert_close(hn, ref["h_n"], np.float32, f"h_n, {case}, {nt} thread(s)")
