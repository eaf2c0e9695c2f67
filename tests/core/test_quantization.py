"""int8 and bf16 frozen layers (docs/quantization.md): the portable, AVX2 and
AVX-512 kernels give the same bits; a NumPy model of the same quantization
agrees; error bounds against float32; step, save/load, copies, streaming;
clear errors."""
import copy
import pickle

import numpy as np
import pytest

import fastrnn as fr
from fastrnn import _precision

ext = fr.backends.cpu._ext
CELLS = [(fr.LSTM, {}), (fr.GRU, {}), (fr.RNN, {}), (fr.RNN, {"nonlinearity": "relu"})]
IDS = ["lstm", "gru", "rnn_tanh", "rnn_relu"]
# (I, H, L, bidirectional, T, B): sizes 1, primes, batch 1, a partial 16-unit block
SHAPES = [(1, 1, 1, False, 1, 1), (7, 19, 2, True, 5, 3), (13, 33, 1, False, 4, 1),
          (5, 16, 3, True, 2, 2), (31, 17, 1, True, 11, 5)]


def _isas(prec):
    """(label, switch) pairs for every kernel build this CPU runs (bf16 at
    width 16: vdpbf16ps where the CPU has it, and the FMAs that stand in
    for it)."""
    out = [("portable", lambda: ext.set_fast_path(False))]
    if ext.set_fast_path(True):
        def avx2():
            ext.set_fast_path(True)
            ext.set_fast_width(8)
        out.append(("avx2", avx2))

        def width16(dot):
            def switch():
                ext.set_fast_path(True)
                ext.set_fast_width(16)
                ext.set_bf16_dot(dot)
            return switch
        if ext.set_fast_width(16) == 16 and ext.quant_isa(prec) == 16:
            out.append(("avx512", width16(True)))
            if prec == "bf16" and ext.set_bf16_dot(True):
                out.append(("avx512-fma", width16(False)))
    ext.set_fast_path(True)
    ext.set_fast_width(16)
    ext.set_bf16_dot(True)
    return out


@pytest.fixture
def restore_isa():
    yield
    ext.set_fast_path(True)
    ext.set_fast_width(16)
    ext.set_bf16_dot(True)


def _case(cls, kw, shape, rng, lengths=True):
    I, H, L, bi, T, B = shape
    layer = cls(I, H, num_layers=L, bidirectional=bi, seed=int(rng.integers(1 << 30)), **kw)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    LD = L * (2 if bi else 1)
    h0 = rng.standard_normal((LD, B, H)).astype(np.float32) * 0.5
    state = (h0, rng.standard_normal((LD, B, H)).astype(np.float32)) if cls is fr.LSTM else h0
    lens = rng.integers(1, T + 1, size=B) if lengths and T > 1 else None
    return layer, x, state, lens


def _bits(out):
    y, st = out
    parts = [y] + (list(st) if isinstance(st, tuple) else [st])
    return [p.view(np.uint32).copy() for p in parts]


@pytest.mark.parametrize("prec", ["int8", "bf16"])
@pytest.mark.parametrize("cell", range(4), ids=IDS)
def test_isa_builds_give_the_portable_bits(cell, prec, rng, restore_isa, restore_threads):
    """Portable C, AVX2 and AVX-512 (VNNI for int8) kernels, 1 and 2 threads:
    the same bits on every shape (exact int32 sums, the same float epilogue)."""
    cls, kw = CELLS[cell]
    isas = _isas(prec)
    # (40, 67, ..) has work enough for 2 threads (FRQ_PAR_MIN, tuning.h);
    # (9, 21, ..)'s 12 input rows end the product's 8-row tiles with 4 rows
    for shape in SHAPES + [(40, 67, 2, True, 30, 3), (9, 21, 1, False, 4, 3)]:
        layer, x, state, lens = _case(cls, kw, shape, rng)
        q = layer.freeze(weights=prec)
        ref = None
        for label, switch in isas:
            switch()
            for nt in (1, 2):
                fr.set_num_threads(nt)
                got = _bits(q(x, state, lengths=lens))
                if ref is None:
                    ref = got
                    continue
                for a, b in zip(ref, got):
                    assert np.array_equal(a, b), (label, nt, shape)
    assert len(isas) >= 1


def _builds_agree(q, x, prec, each=None):
    """q(x) gives the same bits in every build, 1 and 2 threads (NaN for
    NaN, whatever its sign); each(label) runs once in every build."""
    ref = None
    for label, switch in _isas(prec):
        switch()
        if each is not None:
            each(label)
        for nt in (1, 2):
            fr.set_num_threads(nt)
            got = _bits(q(x))
            if ref is None:
                ref = got
                continue
            for a, b in zip(ref, got):
                nan = np.isnan(a.view(np.float32))
                assert np.array_equal(nan, np.isnan(b.view(np.float32))), (label, nt)
                assert np.array_equal(a[~nan], b[~nan]), (label, nt)


def test_int8_input_ties_round_to_even_in_every_build(rng, restore_isa, restore_threads):
    """Input rows whose scaled values fall exactly halfway (amax 127: each
    x * 127/amax is x itself, x = k + 0.5) and whose length is no multiple
    of a vector (I = 37): every build rounds them to even as the portable
    reference does (the vector loop's round against its 1.5 * 2^23 trick),
    the vector tail included."""
    T, B, I = 6, 3, 37
    x = (rng.integers(-126, 126, size=(T, B, I)) + 0.5).astype(np.float32)
    x[:, :, 5] = 127.0
    x[:, 1, 36] = -127.0
    _builds_agree(fr.LSTM(I, 19, seed=2).freeze(weights="int8"), x, "int8")


def test_bf16_rounding_and_flushing_are_the_same_in_every_build(rng, restore_isa,
                                                                restore_threads):
    """bf16's input rounding and vdpbf16ps's arithmetic, on inputs that tell
    them apart: ties (1 + 2^-8 rounds to 1, 1 + 3 * 2^-8 up), values whose
    rounding carries into the exponent, denormal inputs (read as zero),
    NaN and inf, and products of 2^-70 whose sums are denormal: flushed to
    zero, not kept. Every build gives the same bits (a NaN's sign apart: the
    gate math's FMAs pass on whichever NaN operand their form takes); the
    flush is pinned."""
    T, B, I = 5, 3, 37
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    x[:, :, 0] = np.float32(1 + 2 ** -8)
    x[:, :, 1] = np.float32(1 + 3 * 2 ** -8)
    x[:, :, 2] = np.float32(-(2 - 2 ** -9))
    x[:, :, 3] = np.float32(1e-40)
    x[1, 0, 4], x[2, 1, 5] = np.nan, np.inf
    q = fr.LSTM(I, 19, seed=2).freeze(weights="bf16")
    tiny = fr.RNN(2, 1, nonlinearity="relu", bias=False)
    tiny.params["weight_ih_l0"][:] = 2.0 ** -70
    tiny.params["weight_hh_l0"][:] = 0.0
    tq = tiny.freeze(weights="bf16")
    xt = np.full((1, 1, 2), 2.0 ** -70, np.float32)

    def flushed(label):
        # two products of 2^-140 sum to 2^-139, a denormal: flushed
        assert tq(xt)[0].view(np.uint32)[0, 0, 0] == 0, label
    _builds_agree(q, x, "bf16", each=flushed)
    # NaN and inf stay in their rows (batch rows are computed apart)
    assert np.isnan(q(x)[0][1:, 0]).all() and np.isfinite(q(x)[0][:, 2]).all()


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _quant_rows(a):
    """The kernels' activation quantization (fastrnn_q.h), in float32."""
    amax = np.abs(a).max(axis=1).astype(np.float32)
    safe = np.where(amax > 0, amax, np.float32(1))
    inv = (np.float32(127) / safe).astype(np.float32)
    magic = np.float32(12582912.0)
    q = ((a * inv[:, None]).astype(np.float32) + magic).astype(np.float32) - magic
    q = np.clip(q, -127, 127)
    q[amax == 0] = 0
    return q.astype(np.int64), np.where(amax > 0, amax / np.float32(127), 0).astype(np.float32)


def _bf16_rows(a):
    """The kernels' bf16 rounding of activations (fastrnn_q.h), as float32."""
    r = _precision.from_bf16(_precision.to_bf16(a))
    return np.where((np.abs(a) < np.finfo(np.float32).tiny), np.float32(0) * a, r)


def _numpy_narrow(q, x, state, lens):
    """A NumPy model of the int8 or bf16 forward: int8's integer sums, or
    bf16-rounded activations times the bf16 weights in float64; float64
    gates."""
    int8 = q.weights_precision == "int8"
    T, B, _ = x.shape
    H, L, D = q.hidden_size, q.num_layers, q.num_directions
    lstm, gru = q.mode == "LSTM", q.mode == "GRU"
    if state is None:
        h0 = np.zeros((L * D, B, H), np.float32)
        c0 = np.zeros_like(h0)
    elif lstm:
        h0, c0 = state
    else:
        h0, c0 = state, np.zeros_like(state)
    lens = np.full(B, T) if lens is None else np.asarray(lens)
    inp = x.astype(np.float32)
    hn, cn = np.zeros_like(h0), np.zeros_like(h0)
    for l in range(L):
        out = np.zeros((T, B, D * H), np.float32)
        for d in range(D):
            k = l * D + d
            sfx = f"l{l}" + ("_reverse" if d else "")
            W = {n: (q._qweights[f"weight_{n}_{sfx}"].astype(np.int64),
                     q._qweights[f"weight_{n}_{sfx}.scale"]) if int8 else
                 _precision.from_bf16(q._qweights[f"weight_{n}_{sfx}"]).astype(np.float64)
                 for n in ("ih", "hh")}
            b_ih, b_hh = q.params[f"bias_ih_{sfx}"], q.params[f"bias_hh_{sfx}"]

            def prod(a, n, b):
                if not int8:
                    return (_bf16_rows(a).astype(np.float64) @ W[n].T + b).astype(np.float32)
                qa, sa = _quant_rows(a)
                acc = (qa @ W[n][0].T).astype(np.float32).astype(np.float64)
                sc = (sa[:, None] * W[n][1][None, :]).astype(np.float32)
                return (acc * sc + b).astype(np.float32)
            h, c = h0[k].copy(), c0[k].copy()
            steps = range(T - 1, -1, -1) if d else range(T)
            for t in steps:
                gx = prod(inp[t], "ih", b_ih).astype(np.float64)
                gh = prod(h, "hh", b_hh).astype(np.float64)
                if lstm:
                    i, f, g, o = np.split(gx + gh, 4, axis=1)
                    cn_ = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
                    hnew = _sigmoid(o) * np.tanh(cn_)
                elif gru:
                    xr, xz, xn = np.split(gx, 3, axis=1)
                    hr, hz, hn_ = np.split(gh, 3, axis=1)
                    r, z = _sigmoid(xr + hr), _sigmoid(xz + hz)
                    n = np.tanh(xn + r * hn_)
                    hnew, cn_ = (1 - z) * n + z * h, c
                else:
                    v = gx + gh
                    hnew = np.tanh(v) if q.mode == "RNN_TANH" else np.maximum(v, 0)
                    cn_ = c
                act = (t < lens)[:, None]
                h = np.where(act, hnew, h).astype(np.float32)
                c = np.where(act, cn_, c).astype(np.float32)
                out[t, :, d * H:(d + 1) * H] = np.where(act, h, 0)
            hn[k], cn[k] = h, c
        inp = out
    return out, hn, cn


@pytest.mark.parametrize("prec", ["int8", "bf16"])
@pytest.mark.parametrize("cell", range(4), ids=IDS)
def test_kernels_match_a_numpy_model_of_the_quantization(cell, prec, rng):
    """The kernels' int8 or bf16 forward against an independent NumPy model
    of the same quantization (int8: integer sums exact; bf16: activations
    rounded to bf16 as vcvtne2ps2bf16 does; gates in float64): float32
    rounding apart, within 2e-4 (bf16 without its activation rounding is
    off by about 1e-3)."""
    cls, kw = CELLS[cell]
    for shape in SHAPES:
        layer, x, state, lens = _case(cls, kw, shape, rng)
        q = layer.freeze(weights=prec)
        y, st = q(x, state, lengths=lens)
        ry, rh, rc = _numpy_narrow(q, x, state, lens)
        np.testing.assert_allclose(y, ry, rtol=0, atol=2e-4)
        np.testing.assert_allclose(st[0] if isinstance(st, tuple) else st, rh, rtol=0,
                                   atol=2e-4)
        if isinstance(st, tuple):
            np.testing.assert_allclose(st[1], rc, rtol=0, atol=2e-4)


# Max abs error of y and the states against the float32 layer, torch's
# initialisation, x ~ N(0, 1), T = 20, H = 64, 2 layers: int8 weights and
# activations each carry a relative rounding of at most 1/254 of their row's
# largest magnitude, bf16 weights and activations 2^-9 each; measured maxima
# are about 2-25x below these (docs/quantization.md)
BOUNDS = {"int8": 0.03, "bf16": 0.01}


@pytest.mark.parametrize("prec", ["int8", "bf16"])
@pytest.mark.parametrize("cell", range(4), ids=IDS)
def test_error_against_float32_is_bounded(cell, prec, rng):
    cls, kw = CELLS[cell]
    layer = cls(24, 64, num_layers=2, bidirectional=True, seed=3, **kw)
    x = rng.standard_normal((20, 4, 24)).astype(np.float32)
    lens = np.array([20, 7, 1, 13])
    y, st = layer(x, lengths=lens)
    q = layer.freeze(weights=prec)
    yq, sq = q(x, lengths=lens)
    assert q.weights_precision == prec
    assert np.abs(yq - y).max() < BOUNDS[prec]
    for a, b in zip(st if isinstance(st, tuple) else (st,),
                    sq if isinstance(sq, tuple) else (sq,)):
        assert np.abs(a - b).max() < (BOUNDS[prec] * 4 if cls is fr.LSTM else BOUNDS[prec])
    # past each length, 0, as float32
    assert np.all(yq[7:, 1] == 0) and np.all(yq[1:, 2] == 0)


@pytest.mark.parametrize("prec", ["int8", "bf16"])
@pytest.mark.parametrize("cell", range(4), ids=IDS)
def test_step_gives_the_sequence_bits(cell, prec, rng):
    cls, kw = CELLS[cell]
    layer = cls(6, 23, num_layers=2, seed=1, **kw)
    q = layer.freeze(weights=prec)
    x = rng.standard_normal((7, 3, 6)).astype(np.float32)
    y, st = q(x)
    s, ys = None, []
    for t in range(7):
        yt, s = q.step(x[t], s)
        ys.append(yt)
    assert np.array_equal(np.stack(ys), y)
    for a, b in zip(st if isinstance(st, tuple) else (st,), s if isinstance(s, tuple) else (s,)):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("prec", ["int8", "bf16"])
@pytest.mark.parametrize("cell", range(4), ids=IDS)
def test_step_fast_path_gives_the_checked_bits(cell, prec, rng, restore_isa,
                                               restore_threads):
    """The C stepper (QStepper, made by the first step) runs exactly what the
    checked path runs: the sequence's bits on sizes 1, primes and batch 1,
    every ISA build, 1 and 2 threads; anything not exact (float64 x, a list,
    a state of the wrong shape) returns None and the checked path answers."""
    cls, kw = CELLS[cell]
    for I, H, L, T, B in [(1, 1, 1, 3, 1), (7, 19, 2, 4, 3), (13, 33, 1, 5, 1)]:
        q = cls(I, H, num_layers=L, seed=int(rng.integers(1 << 30)), **kw).freeze(
            weights=prec)
        x = rng.standard_normal((T, B, I)).astype(np.float32)
        for label, switch in _isas(prec):
            switch()
            for nt in (1, 2):
                fr.set_num_threads(nt)
                y, st = q(x)
                s, ys = None, []
                for t in range(T):
                    yt, s = q.step(x[t], s)
                    ys.append(yt)
                assert type(q._stepper).__name__ == "QStepper"
                assert np.array_equal(np.stack(ys), y), (label, nt, I, H)
                for a, b in zip(_bits((y[-1], st)), _bits((ys[-1], s))):
                    assert np.array_equal(a, b), (label, nt, I, H)
        stepper = q._stepper
        s0 = q.step(x[0])[1]
        assert stepper.run(x[1], s0) is not None
        assert stepper.run(x[1].astype(np.float64), s0) is None
        assert stepper.run(x[1].tolist(), s0) is None
        bad = (s0[0][:, :0], s0[1]) if isinstance(s0, tuple) else s0[:, :0]
        assert stepper.run(x[1], bad) is None
        ref = _bits(q.step(x[1], s0))
        with pytest.warns(UserWarning, match="x_t"):
            wide = _bits(q.step(x[1].astype(np.float64), s0))
        assert all(np.array_equal(a, b) for a, b in zip(ref, wide))


@pytest.mark.parametrize("prec", ["int8", "bf16"])
def test_save_load_copy_pickle_keep_the_bits(prec, rng, tmp_path):
    model = fr.Sequential([fr.LSTM(5, 12, batch_first=True, num_layers=2, bidirectional=True),
                           fr.GRU(24, 9, batch_first=True), fr.RNN(9, 4, batch_first=True),
                           fr.LastStep(), fr.Dense(4, 3)], seed=0)
    x = rng.standard_normal((6, 8, 5)).astype(np.float32)
    lens = np.array([8, 3, 1, 8, 5, 2])
    q = model.freeze(weights=prec)
    assert [getattr(l, "weights_precision", None) for l in q.layers] == \
        [prec, prec, prec, None, None]
    y = q.predict(x, lengths=lens)
    path = tmp_path / "q.fastrnn"
    fr.save(q, path)
    r = fr.load(path)
    assert [getattr(l, "weights_precision", None) for l in r.layers] == \
        [prec, prec, prec, None, None]
    assert all(l.frozen for l in r.layers[:3])
    assert np.array_equal(r.predict(x, lengths=lens), y)
    for other in (copy.deepcopy(q), pickle.loads(pickle.dumps(q))):
        assert np.array_equal(other.predict(x, lengths=lens), y)
    # the file holds the narrow weights, not their float32 values
    import json
    import zipfile
    cfg = json.loads(zipfile.ZipFile(path).read("config.json"))
    want = "int8" if prec == "int8" else "uint16"
    assert cfg["arrays"]["model/0.weight_hh_l0"]["dtype"] == want
    assert ("model/0.weight_hh_l0.scale" in cfg["arrays"]) == (prec == "int8")
    # unfreeze: a trainable float32 copy with the narrow weights' values
    u = q.layers[0].unfreeze()
    assert u.weights_precision == "float32" and not u.frozen
    assert np.array_equal(u.params["weight_ih_l0"], q.layers[0].params["weight_ih_l0"])


def test_load_refuses_bad_narrow_weights(rng, tmp_path):
    import zipfile
    q = fr.Sequential([fr.GRU(3, 5, batch_first=True)], seed=0).freeze(weights="int8")
    path = tmp_path / "q.fastrnn"
    fr.save(q, path)
    src = zipfile.ZipFile(path)
    members = {n: src.read(n) for n in src.namelist()}
    import io
    buf = io.BytesIO()
    np.save(buf, -np.ones(15, np.float32))
    members["arrays/model/0.weight_ih_l0.scale.npy"] = buf.getvalue()
    bad = tmp_path / "bad.fastrnn"
    with zipfile.ZipFile(bad, "w") as zf:
        for n, b in members.items():
            zf.writestr(n, b)
    with pytest.raises(ValueError, match="scales"):
        fr.load(bad)


@pytest.mark.parametrize("prec", ["int8", "bf16"])
def test_streaming_session_gives_each_stream_its_own_bits(prec, rng):
    """A StreamSession on a narrow model: every stream's outputs are the bits
    of that stream stepped alone (the narrow kernels compute each batch row
    on its own: its own activation scale, the same operations)."""
    model = fr.Sequential([fr.LSTM(4, 10, batch_first=True), fr.GRU(10, 6, batch_first=True),
                           fr.Dense(6, 2)], seed=0)
    q = model.freeze(weights=prec)
    x = rng.standard_normal((3, 6, 4)).astype(np.float32)
    sess = fr.StreamSession(q, 4)
    ids = [sess.open() for _ in range(3)]
    outs = np.stack([sess.push(ids, x[:, t]) for t in range(6)], 1)
    for b in range(3):
        s, ref = None, []
        for t in range(6):
            yt, s = q.step(x[b:b + 1, t], s)
            ref.append(yt[0])
        assert np.array_equal(outs[b], np.stack(ref))


def test_quantization_report(rng):
    model = fr.Sequential([fr.GRU(4, 16, batch_first=True), fr.LastStep(),
                           fr.Dense(16, 3)], seed=0)
    x = rng.standard_normal((32, 9, 4)).astype(np.float32)
    rep = fr.quantization_report(model, x, weights="int8")
    assert rep["weights"] == "int8" and rep["frozen"].layers[0].weights_precision == "int8"
    assert 0 < rep["max_abs_error"] < 0.05 and rep["max_rel_error"] < 0.05
    assert rep["argmax_agreement"] >= 0.9
    layer = fr.LSTM(4, 8, seed=0)
    rep = fr.quantization_report(layer, x.transpose(1, 0, 2), lengths=np.full(32, 9),
                                 weights="bf16")
    assert rep["state_max_abs_error"] < 0.01 and rep["max_abs_error"] < 0.01
    with pytest.raises(ValueError, match="float32 is the reference"):
        fr.quantization_report(layer, x, weights="float32")
    with pytest.raises(ValueError, match="already frozen"):
        fr.quantization_report(layer.freeze(weights="int8"), x)
    with pytest.raises(TypeError, match="model"):
        fr.quantization_report(object(), x)


def test_bad_input_is_refused_clearly(rng):
    l = fr.LSTM(3, 4)
    with pytest.raises(ValueError, match="weights"):
        l.freeze(weights="int4")
    with pytest.raises(TypeError, match="weights"):
        l.freeze(weights=8)
    for bad, why in [(fr.LSTM(3, 4, dtype="float64"), "float64"),
                     (fr.LSTM(3, 4, zoneout=0.1), "zoneout"),
                     (fr.GRU(3, 4, linear_before_reset=False), "linear_before_reset"),
                     (fr.LSTM(3, 4, clip=2.0), "clip"),
                     (fr.LSTM(3, 4, proj_size=2), "proj_size"),
                     (fr.LayerNormLSTM(3, 4), "LayerNormLSTM")]:
        with pytest.raises(ValueError, match=why):
            bad.freeze(weights="int8")
    with pytest.raises(ValueError, match="layer 0"):
        fr.Sequential([fr.LSTM(3, 4, zoneout=0.1, batch_first=True)]).freeze(weights="bf16")
    with pytest.raises(ValueError, match="weights"):
        fr.Sequential([fr.LSTM(3, 4, batch_first=True)]).freeze(weights="fp16")
    q = l.freeze(weights="int8")
    x = rng.standard_normal((2, 1, 3)).astype(np.float32)
    with pytest.raises(RuntimeError, match="frozen"):
        q.forward(x)
    with pytest.raises(ValueError, match="mask"):
        q(x, mask=np.ones((2, 1), bool))
    with pytest.raises(ValueError, match="x"):
        q(x[:, :, :2])
    with pytest.raises(ValueError, match="lengths"):
        q(x, lengths=[3])
    with pytest.raises(TypeError, match="state"):
        q(x, np.zeros((1, 1, 4), np.float32))
    with pytest.raises(ValueError, match="bidirectional"):
        fr.GRU(3, 4, bidirectional=True).freeze(weights="int8").step(x[0])
    with pytest.raises(TypeError, match="set_bf16_dot"):
        ext.set_bf16_dot(1)
    # the boundary refuses what the layer never passes
    with pytest.raises(TypeError, match="x"):
        ext.qforward(q._get_qplan(), x.astype(np.float64), None, None, None, 1)


def test_narrow_weights_helpers():
    w = np.array([[0.5, -1.0, 0.25], [0, 0, 0]], np.float32)
    q, s = _precision.quantize_int8(w)
    assert q.dtype == np.int8 and q[0, 1] == -127 and np.all(q[1] == 0) and s[1] == 0
    assert np.allclose(_precision.dequantize("int8", q, s)[0], w[0], atol=s[0] / 2)
    b = _precision.to_bf16(np.array([1.0, 1.00390625, 1.01171875, np.nan], np.float32))
    # ties to even: 1 + 2^-8 -> 1, 1 + 3 * 2^-8 -> 1 + 2^-6 ... and NaN stays NaN
    f = _precision.from_bf16(b)
    assert f[0] == 1.0 and f[1] == 1.0 and f[2] == np.float32(1.015625) and np.isnan(f[3])
