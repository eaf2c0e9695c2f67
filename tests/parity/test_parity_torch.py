"""Parity of fastrnn with torch.nn.RNN / LSTM / GRU under autograd.

Every output (y, h_n, c_n) and every gradient (dx, dh0, dc0 and each weight
and bias gradient) is compared with torch over many random configurations
drawn from a seeded RNG: cell kinds RNN(tanh/relu), LSTM, GRU; sizes that
include 1 and primes; batch 1; T = 1; 1-3 layers; bidirectional; bias on and
off; batch_first both ways; with and without initial states; lengths None,
all equal, unequal; float32 and float64.

The oracle is torch in float64 holding exactly the weights and inputs the
fastrnn layer sees (for a float32 layer: the float32 values, widened). Its
rounding error is then negligible and the tolerance measures fastrnn alone.
"""
import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastrnn as fr  # noqa: E402


SIZES = (1, 2, 3, 5, 7, 13, 31)
N_SEEDS = 48
CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru")
CELL_INDEX = {c: i for i, c in enumerate(CELLS)}


def draw_config(cell, seed):
    """A random configuration; the key booleans come from the seed's bits so
    every combination of (bidirectional, batch_first, state0, dtype) appears
    three times in 48 seeds, and the lengths mode cycles with seed % 3."""
    rng = np.random.default_rng(10_000 * CELL_INDEX[cell] + seed)
    cfg = dict(
        cell=cell,
        I=int(rng.choice(SIZES)),
        H=int(rng.choice(SIZES)),
        B=int(rng.choice((1, 1, 2, 3, 4, 5))),
        T=int(rng.choice((1, 1, 2, 3, 4, 6, 8))),
        L=int(rng.choice((1, 2, 3))),
        bias=bool(rng.random() < 0.75),
        bidirectional=bool(seed & 1),
        batch_first=bool(seed & 2),
        with_state=bool(seed & 4),
        dtype="float64" if seed & 8 else "float32",
        lengths_mode=("none", "equal", "unequal")[seed % 3],
        # dstate=None in backward (no loss on h_n / c_n) now and then
        use_dstate=bool(rng.random() < 0.75),
        data_seed=int(rng.integers(2**31)),
    )
    if seed == 0:  # the degenerate corner: every size 1
        cfg.update(I=1, H=1, B=1, T=1, L=1)
    if seed == 1:  # T = 1 with a real batch and layers
        cfg.update(T=1, B=3, L=2)
    if seed == 2:  # batch 1, longer sequence
        cfg.update(B=1, T=8)
    return cfg


def _make_inputs(H, cfg, rng):
    dt = np.dtype(cfg["dtype"])
    T, B, I, Hs, L = cfg["T"], cfg["B"], cfg["I"], cfg["H"], cfg["L"]
    D = 2 if cfg["bidirectional"] else 1
    xshape = (B, T, I) if cfg["batch_first"] else (T, B, I)
    yshape = (B, T, D * Hs) if cfg["batch_first"] else (T, B, D * Hs)
    sshape = (L * D, B, Hs)
    x = rng.standard_normal(xshape).astype(dt)
    state0 = None
    if cfg["with_state"]:
        h0 = (0.5 * rng.standard_normal(sshape)).astype(dt)
        if cfg["cell"] == "lstm":
            state0 = (h0, (0.5 * rng.standard_normal(sshape)).astype(dt))
        else:
            state0 = h0
    lengths = H.random_lengths(rng, B, T, cfg["lengths_mode"])
    R = rng.standard_normal(yshape).astype(dt)
    R_h = rng.standard_normal(sshape).astype(dt)
    R_c = rng.standard_normal(sshape).astype(dt)
    return x, state0, lengths, R, R_h, R_c


def _split_state(cell, st):
    if cell == "lstm":
        assert isinstance(st, tuple) and len(st) == 2, "LSTM state must be (h, c)"
        return st
    return st, None


@pytest.mark.parametrize("seed", range(N_SEEDS))
@pytest.mark.parametrize("cell", CELLS)
def test_parity_random_config(cell, seed, helpers):
    H = helpers
    cfg = draw_config(cell, seed)
    dt = np.dtype(cfg["dtype"])
    rng = np.random.default_rng(cfg["data_seed"])
    module, layer = H.make_pair(cell, cfg["I"], cfg["H"], num_layers=cfg["L"],
                                bias=cfg["bias"], batch_first=cfg["batch_first"],
                                bidirectional=cfg["bidirectional"],
                                dtype=cfg["dtype"], torch_seed=seed)
    oracle = copy.deepcopy(module).double()
    x, state0, lengths, R, R_h, R_c = _make_inputs(H, cfg, rng)
    lstm = cell == "lstm"
    use_dstate = cfg["use_dstate"]
    copies = [a.copy() for a in (x, R, R_h, R_c)]

    ref = H.torch_run(oracle, x, state0, lengths, R=R,
                      R_h=R_h if use_dstate else None,
                      R_c=R_c if (use_dstate and lstm) else None,
                      batch_first=cfg["batch_first"])

    layer.zero_grad()
    y, st = layer.forward(x, state0=state0, lengths=lengths)
    h_n, c_n = _split_state(cell, st)
    ctx = f"cfg={cfg}"
    for name, a in (("y", y), ("h_n", h_n)) + ((("c_n", c_n),) if lstm else ()):
        assert isinstance(a, np.ndarray), f"{name} is not an ndarray; {ctx}"
        assert a.dtype == dt, f"{name}.dtype {a.dtype} != {dt}; {ctx}"
    H.assert_close(y, ref["y"], dt, f"y; {ctx}")
    H.assert_close(h_n, ref["h_n"], dt, f"h_n; {ctx}")
    if lstm:
        H.assert_close(c_n, ref["c_n"], dt, f"c_n; {ctx}")

    # outputs past each sequence's length are exactly 0
    if lengths is not None:
        for b, n in enumerate(lengths):
            pad = y[b, n:] if cfg["batch_first"] else y[n:, b]
            assert np.all(pad == 0), f"y past length {n} of sequence {b} not 0; {ctx}"

    # the inference call gives the same bits as the training forward
    y_inf, st_inf = layer(x, state0, lengths=lengths)
    h_inf, c_inf = _split_state(cell, st_inf)
    np.testing.assert_array_equal(y_inf, y, err_msg=f"inference y; {ctx}")
    np.testing.assert_array_equal(h_inf, h_n, err_msg=f"inference h_n; {ctx}")
    if lstm:
        np.testing.assert_array_equal(c_inf, c_n, err_msg=f"inference c_n; {ctx}")

    # backward; the inference call in between must not disturb the cache
    if use_dstate:
        dstate = (R_h, R_c) if lstm else R_h
    else:
        dstate = None
    dx, dstate0 = layer.backward(R, dstate)
    assert isinstance(dx, np.ndarray) and dx.dtype == dt, ctx
    H.assert_close(dx, ref["dx"], dt, f"dx; {ctx}")
    if state0 is None:
        assert dstate0 is None, f"dstate0 must be None without state0; {ctx}"
    elif lstm:
        assert isinstance(dstate0, tuple) and len(dstate0) == 2, ctx
        H.assert_close(dstate0[0], ref["dh0"], dt, f"dh0; {ctx}")
        H.assert_close(dstate0[1], ref["dc0"], dt, f"dc0; {ctx}")
    else:
        H.assert_close(dstate0, ref["dh0"], dt, f"dh0; {ctx}")

    grads = layer.grads
    assert set(grads) == set(ref["grads"]), (
        f"grads keys {sorted(grads)} != torch {sorted(ref['grads'])}; {ctx}")
    for name, g in ref["grads"].items():
        assert np.asarray(grads[name]).dtype == dt, f"grads[{name}] dtype; {ctx}"
        H.assert_close(grads[name], g, dt, f"grads[{name}]; {ctx}")

    # nothing the caller passed was modified
    for a, c in zip((x, R, R_h, R_c), copies):
        np.testing.assert_array_equal(a, c)


# ---------------------------------------------------------------- parity in float32 vs torch float32
@pytest.mark.parametrize("cell", CELLS)
def test_parity_float32_against_torch_float32(cell, helpers):
    H = helpers
    """Direct float32-to-float32 comparison at the suite's float32 tolerance."""
    rng = np.random.default_rng(7)
    T, B, I, Hs, L = 6, 4, 5, 7, 2
    module, layer = H.make_pair(cell, I, Hs, num_layers=L, bidirectional=True,
                                dtype="float32", torch_seed=3)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    lengths = np.array([6, 3, 1, 5])
    R = rng.standard_normal((T, B, 2 * Hs)).astype(np.float32)
    R_h = rng.standard_normal((2 * L, B, Hs)).astype(np.float32)
    lstm = cell == "lstm"
    ref = H.torch_run(module, x, None, lengths, R=R, R_h=R_h,
                      R_c=R_h if lstm else None)
    y, st = layer.forward(x, lengths=lengths)
    dx, _ = layer.backward(R, (R_h, R_h) if lstm else R_h)
    H.assert_close(y, ref["y"], np.float32, "y")
    H.assert_close(_split_state(cell, st)[0], ref["h_n"], np.float32, "h_n")
    H.assert_close(dx, ref["dx"], np.float32, "dx")
    for name, g in ref["grads"].items():
        H.assert_close(layer.grads[name], g, np.float32, f"grads[{name}]")


# ---------------------------------------------------------------- parameters and interchange
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 3])
@pytest.mark.parametrize("cell", CELLS)
def test_state_dict_names_and_shapes_match_torch(cell, num_layers, bidirectional, bias,
                                                 helpers):
    H = helpers
    I, Hs = 5, 7
    m = H.make_torch(cell, I, Hs, num_layers=num_layers, bias=bias,
                     bidirectional=bidirectional)
    for dtype in ("float32", "float64"):
        layer = H.make_fr(cell, I, Hs, num_layers=num_layers, bias=bias,
                          bidirectional=bidirectional, dtype=dtype, seed=1)
        sd = layer.state_dict()
        tsd = m.state_dict()
        assert set(sd) == set(tsd), (
            f"missing {sorted(set(tsd) - set(sd))}, extra {sorted(set(sd) - set(tsd))}")
        assert list(sd) == list(tsd), "state_dict order differs from torch's"
        for k, v in sd.items():
            assert isinstance(v, np.ndarray), k
            assert v.shape == tuple(tsd[k].shape), (k, v.shape, tuple(tsd[k].shape))
            assert v.dtype == np.dtype(dtype), (k, v.dtype)
        # grads mirror state_dict
        g = layer.grads
        assert set(g) == set(sd)
        for k in sd:
            assert np.asarray(g[k]).shape == sd[k].shape


@pytest.mark.parametrize("cell", CELLS)
def test_from_torch_round_trip(cell, helpers):
    H = helpers
    rng = np.random.default_rng(11)
    configs = [
        dict(num_layers=1, bias=True, batch_first=False, bidirectional=False, double=False),
        dict(num_layers=2, bias=False, batch_first=True, bidirectional=True, double=False),
        dict(num_layers=3, bias=True, batch_first=True, bidirectional=False, double=True),
        dict(num_layers=2, bias=True, batch_first=False, bidirectional=True, double=True),
    ]
    for i, c in enumerate(configs):
        I, Hs, T, B = 4, 6, 5, 3
        m = H.make_torch(cell, I, Hs, num_layers=c["num_layers"], bias=c["bias"],
                         batch_first=c["batch_first"], bidirectional=c["bidirectional"],
                         torch_seed=i, double=c["double"])
        layer = fr.from_torch(m)
        dt = np.dtype("float64" if c["double"] else "float32")
        sd = layer.state_dict()
        tsd = H.torch_state_to_numpy(m)
        assert set(sd) == set(tsd), c
        for k in tsd:
            np.testing.assert_array_equal(np.asarray(sd[k], dtype=tsd[k].dtype), tsd[k],
                                          err_msg=f"{k} {c}")
        shape = (B, T, I) if c["batch_first"] else (T, B, I)
        x = rng.standard_normal(shape).astype(dt)
        lengths = np.array([5, 2, 4])
        ref = H.torch_run(m, x, None, lengths, batch_first=c["batch_first"])
        y, st = layer(x, lengths=lengths)
        assert y.dtype == dt, (y.dtype, c)
        H.assert_close(y, ref["y"], dt, f"y {c}")
        H.assert_close(_split_state(cell, st)[0], ref["h_n"], dt, f"h_n {c}")
        if cell == "lstm":
            H.assert_close(st[1], ref["c_n"], dt, f"c_n {c}")

        # and back: the fastrnn weights load into a fresh torch module
        m2 = H.make_torch(cell, I, Hs, num_layers=c["num_layers"], bias=c["bias"],
                          batch_first=c["batch_first"], bidirectional=c["bidirectional"],
                          torch_seed=100 + i, double=c["double"])
        m2.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in sd.items()})
        for k, v in m2.state_dict().items():
            np.testing.assert_array_equal(v.numpy(), tsd[k])


@pytest.mark.parametrize("cell", CELLS)
def test_fastrnn_weights_into_torch(cell, helpers):
    H = helpers
    """A seeded fastrnn layer's state_dict, loaded into torch, gives torch's outputs."""
    rng = np.random.default_rng(5)
    layer = H.make_fr(cell, 3, 5, num_layers=2, bidirectional=True, dtype="float64", seed=9)
    m = H.make_torch(cell, 3, 5, num_layers=2, bidirectional=True, double=True)
    m.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in layer.state_dict().items()})
    x = rng.standard_normal((4, 2, 3))
    ref = H.torch_run(m, x)
    y, _ = layer(x)
    H.assert_close(y, ref["y"], np.float64, "y")


@pytest.mark.parametrize("cell", CELLS)
def test_load_state_dict_accepts_torch_tensors(cell, helpers):
    H = helpers
    m = H.make_torch(cell, 3, 4, num_layers=2, bidirectional=True, torch_seed=2)
    layer = H.make_fr(cell, 3, 4, num_layers=2, bidirectional=True, seed=0)
    layer.load_state_dict(m.state_dict())  # torch tensors, not NumPy
    tsd = H.torch_state_to_numpy(m)
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(v, tsd[k])
    x = np.random.default_rng(0).standard_normal((3, 2, 3)).astype(np.float32)
    ref = H.torch_run(m, x)
    y, _ = layer(x)
    H.assert_close(y, ref["y"], np.float32, "y")


# ---------------------------------------------------------------- gradient accumulation
@pytest.mark.parametrize("cell", CELLS)
def test_grads_accumulate_and_zero_grad(cell, helpers):
    H = helpers
    rng = np.random.default_rng(3)
    T, B, I, Hs, L = 4, 3, 3, 5, 2
    layer = H.make_fr(cell, I, Hs, num_layers=L, bidirectional=True, dtype="float64", seed=4)

    def one(x, R, lengths):
        layer.zero_grad()
        layer.forward(x, lengths=lengths)
        layer.backward(R)
        return {k: np.array(v, copy=True) for k, v in layer.grads.items()}

    xs = [rng.standard_normal((T, B, I)) for _ in range(2)]
    Rs = [rng.standard_normal((T, B, 2 * Hs)) for _ in range(2)]
    lens = [np.array([4, 2, 3]), None]
    g1 = one(xs[0], Rs[0], lens[0])
    g2 = one(xs[1], Rs[1], lens[1])
    assert any(np.any(v != 0) for v in g1.values())

    layer.zero_grad()
    for x, R, ln in zip(xs, Rs, lens):
        layer.forward(x, lengths=ln)
        layer.backward(R)
    for k in g1:
        np.testing.assert_allclose(layer.grads[k], g1[k] + g2[k], rtol=1e-12, atol=1e-13,
                                   err_msg=k)

    # an inference call does not touch grads either
    before = {k: np.array(v, copy=True) for k, v in layer.grads.items()}
    layer(xs[0])
    for k in before:
        np.testing.assert_array_equal(layer.grads[k], before[k])

    layer.zero_grad()
    assert set(layer.grads) == set(layer.state_dict())
    for k, v in layer.grads.items():
        assert np.asarray(v).shape == layer.state_dict()[k].shape
        assert np.all(np.asarray(v) == 0), k


# ---------------------------------------------------------------- threads
def test_get_set_num_threads(restore_threads):
    fr.set_num_threads(1)
    assert fr.get_num_threads() == 1
    fr.set_num_threads(2)
    assert fr.get_num_threads() in (1, 2)  # 1 allowed only if built without OpenMP


def _run_all(H, cell, dtype, x, state0, lengths, R, dstate, dims):
    """Inference, training forward and backward of a freshly seeded layer:
    every output and gradient, flattened into a list."""
    I, Hs, L = dims
    lstm = cell == "lstm"
    layer = H.make_fr(cell, I, Hs, num_layers=L, bidirectional=True, dtype=dtype, seed=8)
    y_inf, _ = layer(x, state0, lengths=lengths)
    y, st = layer.forward(x, state0=state0, lengths=lengths)
    dx, ds0 = layer.backward(R, dstate)
    flat = [("y_inf", y_inf), ("y", y), ("dx", dx)]
    flat += list(zip(("h_n", "c_n"), st)) if lstm else [("h_n", st)]
    flat += list(zip(("dh0", "dc0"), ds0)) if lstm else [("dh0", ds0)]
    flat += [(k, np.array(layer.grads[k])) for k in sorted(layer.grads)]
    return flat


def _thread_case(cell, dtype):
    rng = np.random.default_rng(21)
    T, B, I, Hs, L = 10, 24, 20, 40, 2
    dt = np.dtype(dtype)
    x = rng.standard_normal((T, B, I)).astype(dt)
    lengths = rng.integers(1, T + 1, size=B)
    lengths[0] = T
    R = rng.standard_normal((T, B, 2 * Hs)).astype(dt)
    R_h = rng.standard_normal((2 * L, B, Hs)).astype(dt)
    h0 = rng.standard_normal((2 * L, B, Hs)).astype(dt)
    lstm = cell == "lstm"
    state0 = (h0, h0 * 0.5) if lstm else h0
    dstate = (R_h, R_h) if lstm else R_h
    return x, state0, lengths, R, dstate, (I, Hs, L)


def _assert_same_bits(a, b, what):
    bad = [ka for (ka, va), (_, vb) in zip(a, b) if not np.array_equal(va, vb)]
    assert not bad, f"{what}: these differ: {bad}"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell", CELLS)
def test_openmp_thread_count_invariance(cell, dtype, restore_threads, helpers):
    """fastrnn's own OpenMP passes: 1 and 2 threads give the same bits (BLAS
    pinned to one thread, so only fastrnn's threading varies)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    case = _thread_case(cell, dtype)
    results = []
    for n in (1, 2):
        fr.set_num_threads(n)
        with threadpoolctl.threadpool_limits(1, user_api="blas"):
            results.append(_run_all(helpers, cell, dtype, *case))
    _assert_same_bits(results[0], results[1], "OpenMP 1 vs 2 threads")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell", CELLS)
def test_thread_count_invariance(cell, dtype, restore_threads, helpers):
    """fr.set_num_threads(1) and (2) give bit-identical outputs and gradients
    (whatever set_num_threads does to the BLAS it also controls)."""
    case = _thread_case(cell, dtype)
    results = []
    for n in (1, 2, 1):
        fr.set_num_threads(n)
        results.append(_run_all(helpers, cell, dtype, *case))
    _assert_same_bits(results[0], results[2], "repeat run")
    _assert_same_bits(results[0], results[1], "set_num_threads 1 vs 2")


# ------------------------------------------------ float32 fast paths of small batches
# Shapes that take the AVX2 loop's own input projection (dot tiles below 32
# rows, packed W_ih panels from 32, split over threads when the loop is not),
# and the 1-3 leftover rows of the recurrent tiles; given initial states and
# ragged lengths, against torch float32 (forward, states, dx, dh0, all grads).
SMALL_BATCH_PATHS = [  # cell, I, H, B, T, layers, bidirectional
    ("lstm", 37, 131, 3, 11, 2, True),     # packed panels, 3 leftover rows
    ("gru", 19, 150, 2, 20, 1, False),     # packed panels, 2 leftover rows
    ("gru", 19, 150, 1, 23, 1, False),     # unpacked dot tiles, batch 1
    ("rnn_tanh", 5, 260, 1, 12, 1, False), # unpacked dot tiles, batch 1
    ("lstm", 64, 64, 1, 40, 1, False),     # loop on 1 thread, projection split
    ("lstm", 67, 71, 5, 13, 2, False),     # 4 + 1 rows, odd sizes
    # 1-3 rows and under 4 panels a gate: every gate's panels in one pass
    ("gru", 1, 32, 1, 52, 1, False),
    ("lstm", 16, 48, 3, 50, 1, False),
    ("rnn_tanh", 8, 40, 1, 30, 2, True),
    ("gru", 5, 17, 2, 19, 1, True),
    # equal lengths, little work per step: the batch split between threads
    ("lstm", 20, 32, 3, 50, 1, False, "equal"),
    ("gru", 7, 61, 5, 30, 2, True, "equal"),
    ("rnn_relu", 9, 100, 4, 40, 1, False, "equal"),
    # ... 3+ rows a thread: each thread projects its own rows every step
    ("lstm", 33, 77, 7, 20, 1, False, "equal"),
    ("gru", 24, 61, 8, 15, 2, True, "equal"),
    # ... a packed W_hh of 64K-128K floats (the batch split's upper range)
    ("gru", 24, 200, 5, 12, 1, False, "equal"),
    # batch 1 with W_hh over 2M floats (kept unpacked) and 16-31 rows of a
    # W_ih over 2M floats (the panel GEMM before the loop)
    ("lstm", 724, 724, 1, 20, 1, False),
    ("gru", 840, 840, 2, 9, 1, False),     # the same projection, ragged B=2
    # batches of 16+: the GEMM's tiles in order (AVX-512 8 rows, AVX2 6),
    # and ragged
    ("lstm", 20, 48, 19, 6, 1, False, "equal"),
    ("lstm", 20, 48, 19, 6, 1, False),
    # 16+ equal-length rows a thread: the batch split at 2 threads
    ("lstm", 13, 37, 33, 7, 1, False, "equal"),
    ("gru", 11, 64, 32, 6, 2, True, "equal"),
    # 4+ equal-length rows a thread with a W_hh past one L2 (the batch
    # split from 4 rows): x projected in the loop (small W_ih), before it
    # (large W_ih, and B > 8: the GEMM that starts from the bias row)
    ("gru", 30, 230, 8, 6, 1, False, "equal"),
    ("lstm", 400, 190, 8, 6, 1, False, "equal"),
    ("lstm", 50, 190, 9, 7, 1, False, "equal"),
    ("lstm", 50, 190, 9, 7, 1, False),     # ragged: units split, active rows
    # AVX2's 4 x 3 tile (exactly 4 rows), 5 x 2 tile (5 left), 5-row tiles
    # for 1-3 left (50 = 6 x 5 + 5 x 4 on one thread, 25 = 5 x 5 on two),
    # the backward GEMMs split by rows (T*B rows against I columns)
    ("lstm", 20, 136, 4, 8, 1, False, "equal"),
    ("lstm", 20, 136, 4, 8, 2, True),
    ("lstm", 20, 136, 5, 8, 1, False),
    ("gru", 17, 131, 11, 6, 1, False, "equal"),
    ("lstm", 5, 24, 50, 4, 1, False, "equal"),
    ("gru", 7, 40, 27, 9, 1, False),       # ragged, B > 8: bias in the GEMM, gathered rows
    # every gate's panels in one sequence: H % 8 != 0 at small batches,
    # and batch 1 with a packed W_hh past one L2
    ("lstm", 40, 100, 6, 10, 1, False, "equal"),
    ("rnn_tanh", 9, 77, 7, 12, 1, False, "equal"),
    ("lstm", 30, 200, 1, 9, 1, False),
    # H a multiple of a cache line and 2-3 rows a thread (small W_hh): the
    # batch split (FR_FAST_ROWS_L2_MIN_ROWS), also 2 layers both ways
    ("lstm", 40, 64, 4, 30, 1, False, "equal"),
    ("gru", 17, 96, 6, 25, 2, True, "equal"),
    # variable lengths, 16+ rows a thread: the batch split, rows dealt in
    # length order (fwd_rows_var), inference and training
    ("lstm", 9, 40, 33, 12, 1, False),
    ("gru", 7, 24, 40, 9, 2, True),
    # ... from 3 rows a thread where W_hh fits L2, x projected by each
    # thread for its units before the rows' loop: 6 rows = 3 + 3 (H a
    # multiple of a line), 7 = 3 + 4 both ways over 2 layers
    ("lstm", 40, 96, 6, 20, 1, False),
    ("gru", 17, 77, 7, 15, 2, True),
    # ... from 4 rows a thread (small W_hh), odd sizes: 13 rows = 6 + 7,
    # 11 = 5 + 6, prime H and I
    ("lstm", 7, 37, 13, 9, 1, False),
    ("gru", 5, 31, 11, 7, 1, True),
    ("rnn_tanh", 3, 53, 17, 6, 2, False),
]


def _check_against_torch(H, case, dtype, threads):
    """case = (cell, I, H, B, T, layers, bidirectional[, "equal"]): ragged
    lengths (or equal ones), given initial states; inference and training
    outputs, states, dx, dh0 and every gradient against torch at each thread
    count. Returns each thread count's results for bit comparisons."""
    cell, I, Hs, B, T, L, bd = case[:7]
    D = 2 if bd else 1
    rng = np.random.default_rng(11)
    module, layer = H.make_pair(cell, I, Hs, num_layers=L, bidirectional=bd,
                                dtype=dtype, torch_seed=5)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    lengths = rng.integers(1, T + 1, size=B)
    lengths[0] = T
    if case[7:] == ("equal",):
        lengths = None
    h0 = (0.5 * rng.standard_normal((L * D, B, Hs))).astype(dtype)
    c0 = (0.5 * rng.standard_normal((L * D, B, Hs))).astype(dtype)
    lstm = cell == "lstm"
    state0 = (h0, c0) if lstm else h0
    R = rng.standard_normal((T, B, D * Hs)).astype(dtype)
    R_h = rng.standard_normal((L * D, B, Hs)).astype(dtype)
    ref = H.torch_run(module, x, state0, lengths, R=R, R_h=R_h, R_c=R_h if lstm else None)
    dt = np.dtype(dtype).type
    out = []
    for nt in threads:
        fr.set_num_threads(nt)
        layer.zero_grad()
        y_inf, _ = layer(x, state0, lengths=lengths)
        y, st = layer.forward(x, state0, lengths=lengths)
        dx, ds0 = layer.backward(R, (R_h, R_h) if lstm else R_h)
        ctx = f"{case}, {nt} thread(s)"
        H.assert_close(y_inf, ref["y"], dt, f"y (inference); {ctx}")
        H.assert_close(y, ref["y"], dt, f"y; {ctx}")
        H.assert_close(_split_state(cell, st)[0], ref["h_n"], dt, f"h_n; {ctx}")
        H.assert_close(dx, ref["dx"], dt, f"dx; {ctx}")
        H.assert_close(_split_state(cell, ds0)[0], ref["dh0"], dt, f"dh0; {ctx}")
        for name, g in ref["grads"].items():
            H.assert_close(layer.grads[name], g, dt, f"grads[{name}]; {ctx}")
        out.append([("y_inf", y_inf), ("y", y), ("dx", dx)]
                   + [(k, v.copy()) for k, v in sorted(layer.grads.items())])
    return out


@pytest.mark.parametrize("case", SMALL_BATCH_PATHS, ids=lambda c: "-".join(map(str, c[:5])))
def test_parity_float32_small_batch_paths(case, helpers, restore_threads):
    _check_against_torch(helpers, case, "float32", (1, 2))


# GEMMs of many rows (T*B), which the kernels cut into 2, 4 or 8 row chunks
# as T*B passes 4096 and 8192 (one single-threaded BLAS call each, the
# chunks shared among the threads): against torch, and the same bits at 1, 2
# and 3 threads.
LONG_GEMMS = [  # cell, I, H, B, T, layers, bidirectional
    ("lstm", 7, 13, 32, 70, 1, False),      # T*B = 2240: 2 chunks
    ("gru", 5, 11, 64, 70, 2, True),        # 4480: 4 chunks
    ("rnn_tanh", 3, 9, 100, 90, 1, False),  # 9000: 8 chunks
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", LONG_GEMMS, ids=lambda c: "-".join(map(str, c[:5])))
def test_parity_long_gemms(case, dtype, helpers, restore_threads):
    results = _check_against_torch(helpers, case, dtype, (1, 2, 3))
    _assert_same_bits(results[0], results[1], "1 vs 2 threads")
    _assert_same_bits(results[0], results[2], "1 vs 3 threads")

