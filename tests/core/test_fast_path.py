"""The fast float32 kernels (src/fast/, built for AVX2/FMA and
AVX-512) against the portable path, their bit-for-bit independence from the
thread count at odd sizes (tiles and masked tails of 8 and 16 units), and the
same bits from the AVX-512 build as from the AVX2 one."""
import numpy as np
import pytest

import fastrnn as fr
from fastrnn import _reference
from fastrnn.backends.cpu import _ext

CASES = [  # cell, I, H, B, T, layers, bidirectional
    ("LSTM", 3, 13, 5, 7, 1, False),
    ("LSTM", 37, 64, 9, 6, 2, True),
    ("GRU", 5, 37, 1, 9, 1, False),
    ("GRU", 16, 41, 6, 5, 2, True),
    ("RNN_TANH", 7, 29, 3, 8, 2, False),
    ("RNN_RELU", 11, 24, 4, 6, 1, True),
    ("LSTM", 64, 136, 2, 4, 1, False),
    # small batches with enough work per step: the loop projects x itself,
    # on packed W_ih panels from 32 rows (fr_fast_proj_mode 2; layer 2 from
    # 2H inputs), on W_ih as it is below (mode 1)
    ("LSTM", 37, 131, 3, 11, 2, True),
    ("GRU", 19, 150, 2, 20, 1, False),
    ("GRU", 19, 150, 1, 23, 1, False),
    ("RNN_TANH", 5, 260, 1, 12, 1, False),
    # batch 1 with a W_hh over FR_FAST_PACK_MAX_B1 floats: W_hh stays as it
    # is (dot tiles) for any T
    ("LSTM", 16, 724, 1, 6, 1, False),
    # a loop too small to split over threads, its packed projection split
    ("LSTM", 64, 64, 1, 40, 1, False),
    ("GRU", 70, 72, 2, 20, 2, False),
    # equal lengths, too little work per step to split the units: the batch
    # is split between threads instead (fwd_rows), packed W_hh or (T < 4)
    # W_hh as it is; with 3 threads B=5 splits 1/2/2
    ("LSTM", 20, 32, 3, 50, 1, False, "equal"),
    ("GRU", 7, 61, 5, 30, 2, True, "equal"),
    ("RNN_RELU", 9, 100, 4, 40, 1, False, "equal"),
    ("LSTM", 64, 40, 7, 3, 1, False, "equal"),
    # a large batch in order, units split: the GEMM's tiles (AVX-512 8 rows
    # x 3 panels, AVX2 6 x 2) and the rows left (19 = 2 x 8 + 3 = 3 x 6 + 1)
    ("LSTM", 20, 48, 19, 6, 1, False, "equal"),
    ("GRU", 9, 64, 17, 5, 2, True, "equal"),
    # ... AVX2's 6-row tiles over 2 panels with 4 rows left (10 = 6 + 4)
    ("LSTM", 13, 40, 10, 5, 1, False, "equal"),
    # 16+ rows a thread (FR_FAST_ROWS_MIN_ROWS): the batch split at 2
    # threads, the units split at 3 (33 rows), so the two splits meet
    ("LSTM", 9, 40, 33, 6, 1, False, "equal"),
    ("GRU", 7, 24, 32, 5, 2, True, "equal"),
    ("RNN_TANH", 5, 48, 48, 7, 1, False, "equal"),
    # ... with a packed W_hh of 64K-128K floats (the batch split's bound)
    ("GRU", 24, 200, 5, 12, 1, False, "equal"),
    # ... with 3+ rows a thread (2 threads) each thread projects its own rows
    # step by step (rows_project); at 3 threads its units' columns first
    ("LSTM", 33, 77, 7, 20, 1, False, "equal"),
    ("GRU", 24, 61, 8, 15, 2, True, "equal"),
    # 4+ rows a thread with a W_hh past the L2 bound (FR_FAST_ROWS4_MAX_FLOATS):
    # the batch split at 2 threads (units at 3), x projected in the loop
    # where W_ih is small, before it where it is not (FR_FAST_ROWS_IH_MAX_FLOATS)
    ("LSTM", 50, 190, 9, 7, 1, False, "equal"),
    ("LSTM", 400, 190, 8, 6, 1, False, "equal"),
    ("GRU", 30, 230, 8, 6, 1, False, "equal"),
    # AVX2's 4 x 3 tiles (exactly 4 rows) and 5 x 2 tile (5 rows left)
    ("LSTM", 20, 136, 4, 8, 1, False, "equal"),
    ("LSTM", 20, 136, 5, 8, 1, False),
    ("GRU", 17, 131, 11, 6, 1, False, "equal"),
    # ... and 1-3 rows left after the 6-row tiles taken as 5-row tiles
    # (50 rows = 6 x 5 + 5 x 4 at 1 thread, 25 = 5 x 5 at 2; a
    # variable-length batch passes through every count of active rows)
    ("LSTM", 5, 24, 50, 4, 1, False, "equal"),
    ("GRU", 7, 40, 27, 9, 1, False),
    # variable lengths with 16+ rows a thread, or 4+ with a small W_hh: the
    # batch split too, each thread every nth row in length order
    # (fwd_rows_var); B=12 splits 6/6 and 4/4/4
    ("LSTM", 9, 40, 33, 12, 1, False),
    ("LSTM", 9, 40, 12, 8, 1, False),
    ("GRU", 6, 30, 13, 10, 1, True),
    ("GRU", 7, 24, 40, 9, 2, True),
    ("RNN_TANH", 5, 48, 50, 7, 1, False),
]


def _layer(cell, I, H, L, bd, seed=0):
    if cell.startswith("RNN"):
        return fr.RNN(I, H, num_layers=L, bidirectional=bd, seed=seed,
                      nonlinearity="tanh" if cell == "RNN_TANH" else "relu")
    return getattr(fr, cell)(I, H, num_layers=L, bidirectional=bd, seed=seed)


def _run(layer, x, h0, lengths, dy):
    y_inf, s_inf = layer(x, h0, lengths=lengths)
    layer.zero_grad()
    y, s = layer.forward(x, h0, lengths=lengths)
    dx, ds0 = layer.backward(dy)
    y_zero, _ = layer(x, None, lengths=lengths)  # zero state: the first product skipped
    out = {"y_inf": y_inf, "y_zero_state": y_zero, "y": y, "dx": dx}
    for i, a in enumerate(s if isinstance(s, tuple) else (s,)):
        out[f"state{i}"] = a
    for i, a in enumerate(ds0 if isinstance(ds0, tuple) else (ds0,)):
        out[f"dstate0_{i}"] = a
    out.update({k: v.copy() for k, v in layer.grads.items()})
    return out


def _case(cell, I, H, B, T, L, bd, lens="random"):
    rng = np.random.default_rng(7)
    D = 2 if bd else 1
    layer = _layer(cell, I, H, L, bd)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    h = rng.standard_normal((L * D, B, H)).astype(np.float32)
    h0 = (h, 0.5 * h) if cell == "LSTM" else h
    lengths = rng.integers(1, T + 1, size=B) if lens == "random" else None
    dy = rng.standard_normal((T, B, D * H)).astype(np.float32)
    return layer, x, h0, lengths, dy


@pytest.fixture
def fast_restored():
    yield
    _ext.set_fast_path(True)
    _ext.set_fast_width(16)
    fr.set_num_threads(None)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-H{c[2]}-B{c[3]}-T{c[4]}")
def test_fast_equals_portable(case, fast_restored):
    if not _ext.set_fast_path(True):
        pytest.skip("this CPU has no AVX2/FMA: only the portable path exists")
    layer, x, h0, lengths, dy = _case(*case)
    fast = _run(layer, x, h0, lengths, dy)
    _ext.set_fast_path(False)
    portable = _run(layer, x, h0, lengths, dy)
    for k in fast:
        np.testing.assert_allclose(fast[k], portable[k], rtol=2e-4, atol=2e-5, err_msg=k)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-H{c[2]}-B{c[3]}-T{c[4]}")
def test_threads_do_not_change_bits(case, fast, fast_restored):
    _ext.set_fast_path(fast)
    results = []
    for n in (1, 2, 3):
        fr.set_num_threads(n)
        layer, x, h0, lengths, dy = _case(*case)
        results.append(_run(layer, x, h0, lengths, dy))
    for other in results[1:]:
        for k in results[0]:
            assert np.array_equal(results[0][k], other[k]), k


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-H{c[2]}-B{c[3]}-T{c[4]}")
def test_avx512_equals_avx2_bit_for_bit(case, fast_restored):
    """16-float panels and gate blocks give the bits of 8-float ones: every
    panel output is one FMA chain over j in order, the gate math is lane by
    lane (src/fast/panels.h, cell.h)."""
    _ext.set_fast_path(True)
    if _ext.set_fast_width(16) != 16:
        pytest.skip("this CPU has no AVX-512: only the AVX2 build runs")
    results = {}
    for width in (8, 16):
        assert _ext.set_fast_width(width) == width
        for n in (1, 2):
            fr.set_num_threads(n)
            results[width, n] = _run(*_case(*case))
    for key, other in results.items():
        for k in other:
            assert np.array_equal(results[8, 1][k], other[k], equal_nan=True), (key, k)


def test_fast_width_requests(fast_restored):
    """16 on a CPU without AVX-512 falls back to the widest it has; 8 is
    always there with the fast path; other widths and non-integers are
    refused with the argument's name."""
    if not _ext.set_fast_path(True):
        pytest.skip("this CPU has no AVX2/FMA")
    top = _ext.set_fast_width(16)
    assert top in (8, 16)
    assert _ext.set_fast_width(8) == 8
    assert _ext.set_fast_width(16) == top
    for bad in (0, 4, 32, -8):
        with pytest.raises(ValueError, match="width must be 8 or 16"):
            _ext.set_fast_width(bad)
    for bad in (16.0, "16", None, True):
        with pytest.raises(TypeError, match="width must be 8 or 16"):
            _ext.set_fast_width(bad)
    assert _ext.set_fast_width(16) == top  # a refused call changed nothing


def _saturating(scale):
    """(layer, x) for an LSTM, a GRU and a tanh RNN whose input weights are
    +-0.5 and biases 0, fed x = +-scale. At scale 1e4 every gate's
    pre-activation is +-5000 plus a recurrent part below 3: far past where
    sigmoid and tanh round to exactly 0, 1 or +-1, in float32 and float64."""
    rng = np.random.default_rng(3)
    x = np.where(rng.random((6, 3, 1)) < 0.5, -scale, scale).astype(np.float32)
    for layer in (fr.LSTM(1, 8, seed=0), fr.GRU(1, 8, seed=0), fr.RNN(1, 8, seed=0)):
        w = layer.params["weight_ih_l0"]
        w[...] = np.where(rng.random(w.shape) < 0.5, -0.5, 0.5)
        layer.params["bias_ih_l0"][...] = 0
        layer.params["bias_hh_l0"][...] = 0
        yield layer, x


def _assert_saturated(layer, x):
    """The layer's outputs are those of exactly saturated gates: the float64
    oracle's (whose gates are exactly 0, 1 and +-1 there). GRU and RNN
    outputs are then exactly -1, 0 or 1 (h = (1-z) n + z h_prev with z in
    {0, 1}, n = +-1) and must equal the oracle's bit for bit; an LSTM's
    cell state counts steps (integers, bit for bit) and h = o tanh(c) is
    exactly 0 where o is 0 and within the fast tanh's 2 ulp elsewhere."""
    params = {k: v.astype(np.float64) for k, v in layer.params.items()}
    ey, eh, ec, _ = _reference.reference_forward(layer.mode, params, x.astype(np.float64))
    y, state = layer(x)
    if layer.mode == "LSTM":
        h, c = state
        assert np.array_equal(ec, np.round(ec)), "the oracle's cell state is not integral"
        assert np.array_equal(c, ec.astype(np.float32)), "c_n is not the exact step count"
        assert np.array_equal(y == 0, ey == 0), "an output gate is not exactly 0"
        np.testing.assert_array_max_ulp(y, ey.astype(np.float32), maxulp=2)
    else:
        assert set(np.unique(ey)) <= {-1.0, 0.0, 1.0}, "the oracle is not saturated"
        assert np.array_equal(y, ey.astype(np.float32)), f"{layer.mode}: not exactly 0/+-1"
        assert np.array_equal(np.asarray(state), eh.astype(np.float32))


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "portable"])
def test_saturation_exact(fast, fast_restored):
    """Gates saturate to exactly 0/1 and +-1 at extreme inputs, on the fast
    loops and the portable path; the same check fails where the inputs do
    not saturate (it tells saturated from merely bounded outputs)."""
    _ext.set_fast_path(fast)
    for layer, x in _saturating(1e4):
        _assert_saturated(layer, x)
    for layer, x in _saturating(1.0):
        with pytest.raises(AssertionError):
            _assert_saturated(layer, x)


def test_nan_stays_in_its_sequence(fast_restored):
    """NaN in the input propagates to the outputs of its own sequence only."""
    _ext.set_fast_path(True)
    x = np.random.default_rng(0).standard_normal((4, 3, 1)).astype(np.float32)
    x[1, 1, 0] = np.nan
    for layer in (fr.LSTM(1, 9, seed=0), fr.GRU(1, 9, seed=0), fr.RNN(1, 9, seed=0),
                  fr.RNN(1, 9, nonlinearity="relu", seed=0)):
        y, _ = layer(x)
        assert np.all(np.isnan(y[1:, 1])), layer
        assert np.all(np.isfinite(y[:, [0, 2]])), layer


def _activation_inputs():
    """float32 inputs over every binade from 1e-30 to 100 (both signs, a
    few thousand per binade), zeros, and the saturation edges."""
    rng = np.random.default_rng(5)
    mags = np.exp(rng.uniform(np.log(1e-30), np.log(100.0), 200_000))
    edges = [0.0, 0.625, 9.0, 9.1, 17.0, 20.0, 87.0, 87.7, 88.0, 88.5, 1e4]
    x = np.concatenate([mags, -mags, edges, np.negative(edges)]).astype(np.float32)
    return x


def _ulps(got, ref):
    """|got - ref| in units of the float32 spacing at the reference; where the
    reference is below the smallest normal float, in units of that float
    (the kernels give 0 there: a saturated gate)."""
    tiny = np.finfo(np.float32).tiny
    spacing = np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
    spacing = np.where(np.abs(ref) < tiny, tiny, spacing)
    return np.abs(got.astype(np.float64) - ref) / spacing


@pytest.mark.parametrize("width", [8, 16])
def test_activations_accuracy(width, fast_restored):
    """The fast loops' tanh and sigmoid against float64 math: a one-unit
    RNN gives y = tanh(x) exactly, a GRU with h0 = 1 and only its z gate fed
    gives y = sigmoid(x) exactly (h = z * 1 + (1 - z) * tanh(0)). Within 1.5
    ulp (tanh) and 2.5 ulp (sigmoid) over 400k inputs; exactly +-1, 0 and 1
    where saturated; the odd symmetry of tanh holds bit for bit."""
    if not _ext.set_fast_path(True):
        pytest.skip("this CPU has no AVX2/FMA: only the portable path exists")
    if _ext.set_fast_width(width) != width:
        pytest.skip(f"this CPU cannot run the {width}-float kernels")
    x = _activation_inputs()
    x64 = x.astype(np.float64)
    H = 9  # a whole vector block and a masked tail of 1 unit
    rnn = fr.RNN(1, H, seed=0)
    sd = {k: np.zeros_like(v) for k, v in rnn.state_dict().items()}
    sd["weight_ih_l0"][:] = 1.0
    rnn.load_state_dict(sd)
    y, _ = rnn(x[None, :, None])
    t = y[0]
    assert np.all(t == t[:, :1])  # every unit, full block or tail, alike
    t = t[:, 0]
    ref = np.tanh(x64)
    assert _ulps(t, ref).max() <= 1.5
    assert np.all(t[np.abs(x) >= 9.1] == np.sign(x[np.abs(x) >= 9.1]))
    # tanh(-x) == -tanh(x) on the random magnitudes
    n = 200_000
    assert np.array_equal(t[n:2 * n], -t[:n])

    gru = fr.GRU(1, H, seed=0)
    sd = {k: np.zeros_like(v) for k, v in gru.state_dict().items()}
    sd["weight_ih_l0"][H:2 * H] = 1.0  # the z gate's rows (r, z, n)
    gru.load_state_dict(sd)
    y, _ = gru(x[None, :, None], np.ones((1, len(x), H), np.float32))
    s = y[0]
    assert np.all(s == s[:, :1])
    s = s[:, 0]
    with np.errstate(over="ignore"):
        ref = 1.0 / (1.0 + np.exp(-x64))
    err = _ulps(s, ref)
    assert err.max() <= 2.5, (x[err.argmax()], s[err.argmax()], ref[err.argmax()])
    assert np.all(s[x >= 17.0] == 1.0) and np.all(s[x <= -88.0] == 0.0)
    assert np.all((s >= 0) & (s <= 1))
    assert s[x == 0].tolist() == [0.5, 0.5]


GEMM_SHAPES = [(1, 1, 1), (3, 5, 7), (17, 33, 300), (240, 64, 256), (241, 47, 257),
               (8, 16, 1), (1000, 31, 513), (7, 2048, 512), (64, 17, 1024), (13, 97, 1),
               (33, 2200, 300),  # several column blocks (GEMM_NC) a thread
               (6, 9, 8), (12, 40, 17), (4, 9, 0),  # AVX2's 6-row groups of op(A); K = 0
               # the split by rows of C (op(A) the larger to pack), with K = 0
               # and with several column blocks
               (300, 20, 0), (2300, 2200, 5)]


@pytest.mark.parametrize("shape", GEMM_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_panel_gemm(shape, fast_restored):
    """The fast kernels' panel GEMM (float32 GEMMs of the layers the fast
    loops run, and of _ext.gemm) against float64 products, every op(A),
    op(B), beta 0 and 1, a NaN-filled C with beta 0 (BLAS semantics: C is
    not read), partial panels and K blocks; the same bits at 1-3 threads and
    at both vector widths."""
    if not _ext.set_fast_path(True):
        pytest.skip("this CPU has no AVX2/FMA")
    M, N, K = shape
    rng = np.random.default_rng(M * 1000 + N + K)
    widths = [w for w in (8, 16) if _ext.set_fast_width(w) == w]
    for ta in (False, True):
        for tb in (False, True):
            A = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
            B = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
            ref = (A.T if ta else A).astype(np.float64) @ (B.T if tb else B).astype(np.float64)
            for beta in (0.0, 1.0):
                C0 = rng.standard_normal((M, N)).astype(np.float32)
                if beta == 0:
                    C0[:] = np.nan
                want = ref + (C0 if beta else 0)
                outs = []
                for w in widths:
                    _ext.set_fast_width(w)
                    for nt in (1, 2, 3):
                        C = C0.copy()
                        _ext.gemm(A, B, C, ta, tb, 1.0, beta, nt)
                        outs.append(C)
                np.testing.assert_allclose(outs[0], want, rtol=1e-4,
                                           atol=1e-4 * np.sqrt(K) + 1e-6)
                for other in outs[1:]:
                    assert np.array_equal(outs[0], other), (ta, tb, beta)


def test_wait_policy_reaches_the_meeting_and_keeps_bits(fast_restored, restore_threads):
    """fr.set_wait_policy: 'passive' stops the per-step meeting's spinning
    (0 turns), 'spin' brings it back; neither changes a bit; the previous
    policy comes back; another policy is refused naming the argument."""
    was = fr.get_wait_policy()
    try:
        _ext.set_fast_path(True)
        results = {}
        for policy in ("passive", "spin"):
            fr.set_wait_policy(policy)
            assert fr.get_wait_policy() == policy
            assert (_ext.spin_turns() == 0) == (policy == "passive")
            for n in (1, 2):
                fr.set_num_threads(n)
                results[policy, n] = _run(*_case(*CASES[0]))
        for key, other in results.items():
            for k in other:
                assert np.array_equal(results["spin", 1][k], other[k]), (key, k)
        assert fr.set_wait_policy("passive") == "spin"
        with pytest.raises(ValueError, match="policy: expected 'spin' or 'passive'"):
            fr.set_wait_policy("active")
    finally:
        fr.set_wait_policy(was)


@pytest.mark.parametrize("env, want", [({}, "spin"), ({"FASTRNN_WAIT_POLICY": "passive"}, "passive"),
                                       ({"OMP_WAIT_POLICY": "PASSIVE"}, "passive"),
                                       ({"FASTRNN_WAIT_POLICY": "spin",
                                         "OMP_WAIT_POLICY": "passive"}, "spin")])
def test_wait_policy_from_the_environment(env, want):
    """The initial policy: FASTRNN_WAIT_POLICY, else OMP_WAIT_POLICY."""
    import os
    import subprocess
    import sys
    e = {k: v for k, v in os.environ.items()
         if k not in ("FASTRNN_WAIT_POLICY", "OMP_WAIT_POLICY")}
    e.update(env)
    out = subprocess.run([sys.executable, "-c", "import fastrnn as fr; "
                          "print(fr.get_wait_policy())"], env=e, capture_output=True,
                         text=True, check=True, cwd=os.path.dirname(os.path.dirname(
                             os.path.dirname(os.path.abspath(__file__)))))
    assert out.stdout.strip() == want


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_directions_side_by_side_keep_the_bits(cell, dtype, rng, restore_threads):
    """A bidirectional layer too small to split a direction (B*G*H*H under
    the fast loops' threshold) runs its two directions on one thread each
    with 2 threads: the same bits as 1 thread, inference (frozen and not),
    training forward with states and lengths, two layers."""
    cls = {"lstm": fr.LSTM, "gru": fr.GRU, "rnn": fr.RNN}[cell]
    layer = cls(7, 37, num_layers=2, bidirectional=True, dtype=dtype, seed=11)
    frozen = layer.freeze() if dtype == "float32" else layer
    x = rng.standard_normal((23, 3, 7)).astype(dtype)
    lengths = np.array([23, 9, 16])
    shape = (4, 3, 37)
    h0 = rng.standard_normal(shape).astype(dtype)
    state = (h0, rng.standard_normal(shape).astype(dtype)) if cell == "lstm" else h0

    def run():
        out = [frozen(x), layer(x, lengths=lengths), layer.forward(x, state, lengths=lengths)]
        flat = []
        for y, st in out:
            flat.append(y)
            flat.extend(st if isinstance(st, tuple) else (st,))
        return flat

    fr.set_num_threads(1)
    want = run()
    fr.set_num_threads(2)
    for _ in range(3):
        for a, b in zip(want, run()):
            assert np.array_equal(a, b)
