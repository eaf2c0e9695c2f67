"""The torch twin of fr.Seq2Seq (fastrnn/examples/_seq2seq_torch.py) and the
parity check of fr.Seq2Seq against it (issue 25).

The twin is checked against an independent NumPy reading of the spec
(/work/notes/seq2seq_spec.md): fastrnn._reference's torch-exact LSTM/GRU/RNN
for the encoder and the decoder cells, and the bridge, attention, combination,
output and loss written out below, for every option combination in float32
and float64, with lengths 1 and batch 1 and prime sizes. Then: zero attention
on padding, padding content ignored, each row alone equals its row in the
batch, the flat parameter dict round-trips, gradients by central differences,
the loss counts only valid steps, dropout only in training, clear errors.

check_parity compares fr.Seq2Seq's logits, loss and every gradient with the
twin in float64 holding the same weights (float64 rtol 1e-9, float32 2e-4,
atol scaled as tests/conftest.py's assert_close); it skips until
fastrnn/seq2seq.py exists, and is itself checked now on stand-ins served by
the twin (one honest, the others each with one planted error).
"""
import copy
import doctest
import importlib
import importlib.util
import itertools
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fastrnn._reference import reference_forward  # noqa: E402
from fastrnn.examples import _seq2seq_torch as s2s  # noqa: E402

TorchSeq2Seq = s2s.TorchSeq2Seq

# prime sizes; Vs, Vt, E, He; A for bahdanau; Hd where not the default D*He
VS, VT, E, HE, A, HD = 11, 13, 5, 7, 3, 11

# weights SCALE times torch's default range: at the default, tanh and the
# attention stay so near linear that a float32 comparison misses some errors
# (a bahdanau score without its tanh passed in float32)
SCALE = 2.5

# the batch of every test: source lengths with 1 and S, target sequences of
# 6, 0 (EOS alone: one step) and 3 symbols
B, S = 3, 5
SRC_LENGTHS = np.array([5, 1, 3])
TGT_SYMBOLS = (6, 0, 3)


def config(cell="lstm", decoder_cell="lstm", layers=(1, 1), bidirectional=True,
           attention="general", input_feeding=True, bridge="dense", dropout=0.0):
    """A small configuration; decoder_hidden is the default D*He for dot and
    general attention and HD for bahdanau (so both paths run)."""
    return dict(src_vocab=VS, tgt_vocab=VT, embedding_dim=E, hidden_size=HE,
                num_layers=layers[0], bidirectional=bidirectional, cell=cell,
                decoder_hidden=HD if attention == "bahdanau" else None,
                decoder_layers=layers[1], decoder_cell=decoder_cell,
                attention=attention,
                attention_size=A if attention == "bahdanau" else None,
                input_feeding=input_feeding, bridge=bridge, dropout=dropout)


COMBOS = list(itertools.product(s2s.CELLS, s2s.DECODER_CELLS, ((1, 1), (2, 2)),
                                (False, True), s2s.ATTENTIONS, (True, False),
                                s2s.BRIDGES))


def combo_id(c):
    cell, dcell, (L, Ld), bi, att, feed, bridge = c
    return (f"{cell}-{dcell}-L{L}{Ld}-{'bi' if bi else 'uni'}-{att}-"
            f"{'feed' if feed else 'nofeed'}-{bridge}")


def combo_config(c):
    cell, dcell, layers, bi, att, feed, bridge = c
    return config(cell, dcell, layers, bi, att, feed, bridge)


def batch(rng, src_lengths=SRC_LENGTHS, symbols=TGT_SYMBOLS, pad=0):
    """src (B,S) with `pad` past the lengths, src_lengths, yin, targets, steps."""
    src_lengths = np.asarray(src_lengths)
    S_ = int(src_lengths.max())
    src = rng.integers(0, VS, (len(src_lengths), S_))
    src[np.arange(S_)[None, :] >= src_lengths[:, None]] = pad
    ys = [rng.integers(0, VT, n) for n in symbols]
    yin, targets, steps = s2s.teacher_forcing(ys, VT)
    return src, src_lengths, yin, targets, steps


def assert_close(actual, expected, dtype, name=""):
    """tests/conftest.py's tolerances: float32 rtol 2e-4, float64 1e-9, atol
    scaled by the largest |expected|."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    rtol, atol = (2e-4, 1e-5 * scale) if np.dtype(dtype) == np.float32 else (1e-9, 1e-10 * scale)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol,
                               err_msg=f"mismatch in {name}")


# ---------------------------------------------------------------------------
# the spec in NumPy (float64), independent of the twin

MODES = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN_TANH"}


def spec_forward(params, cfg, src, src_lengths, yin):
    """Logits (B,T,Vt+1) and attention (B,T,S) exactly as the spec words them."""
    c = s2s.resolve_config(**cfg)
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    Bn, Sn = src.shape
    T = yin.shape[1]
    L, D, He = c["num_layers"], 2 if c["bidirectional"] else 1, c["hidden_size"]
    Hd, Ld = c["decoder_hidden"], c["decoder_layers"]
    lstm_dec = c["decoder_cell"] == "lstm"
    valid = np.arange(Sn)[None, :] < src_lengths[:, None]
    x = p["src_embedding.weight"][np.where(valid, src, 0)]
    enc_p = {k[len("encoder."):]: v for k, v in p.items() if k.startswith("encoder.")}
    y, h_n, c_n, _ = reference_forward(MODES[c["cell"]], enc_p, x.transpose(1, 0, 2),
                                       lengths=src_lengths, num_layers=L,
                                       bidirectional=c["bidirectional"])
    enc = y.transpose(1, 0, 2)                                    # (B,S,De), 0 past lengths

    def top(s):  # the top layer's h_n per direction, forward first: (B, D*He)
        return np.concatenate([s[(L - 1) * D + d] for d in range(D)], axis=1)

    h = [np.zeros((Bn, Hd))] * Ld
    cs = [np.zeros((Bn, Hd))] * Ld
    if c["bridge"] == "dense":
        h0 = np.tanh(top(h_n) @ p["bridge_h.weight"].T + p["bridge_h.bias"]).reshape(Bn, Ld, Hd)
        h = [h0[:, k] for k in range(Ld)]
        if "bridge_c.weight" in p:
            c0 = (top(c_n) @ p["bridge_c.weight"].T + p["bridge_c.bias"]).reshape(Bn, Ld, Hd)
            cs = [c0[:, k] for k in range(Ld)]
    if c["attention"] == "dot":
        K = enc
    elif c["attention"] == "general":
        K = enc @ p["attention.weight"].T
    else:
        K = enc @ p["attention.key_weight"].T
    feed = np.zeros((Bn, Hd))
    logits, attn = [], []
    for t in range(T):
        x = p["tgt_embedding.weight"][yin[:, t]]
        if c["input_feeding"]:
            x = np.concatenate([x, feed], axis=1)
        for k in range(Ld):
            cell_p = {f"{stem}_l0": p[f"decoder.{stem}_l{k}"]
                      for stem in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
            _, hn, cn, _ = reference_forward("LSTM" if lstm_dec else "GRU", cell_p, x[None],
                                             h0=h[k][None],
                                             c0=cs[k][None] if lstm_dec else None)
            h[k] = hn[0]
            if lstm_dec:
                cs[k] = cn[0]
            x = h[k]
        q = x
        if c["attention"] == "bahdanau":
            scores = np.tanh(K + (q @ p["attention.query_weight"].T)[:, None, :]) @ p["attention.v"]
        else:
            scores = np.einsum("bsh,bh->bs", K, q)
        scores = np.where(valid, scores, -np.inf)
        a = np.exp(scores - scores.max(axis=1, keepdims=True))
        a /= a.sum(axis=1, keepdims=True)
        ctx = np.einsum("bs,bsd->bd", a, enc)
        feed = np.tanh(np.concatenate([ctx, q], axis=1) @ p["combine.weight"].T
                       + p["combine.bias"])
        logits.append(feed @ p["out.weight"].T + p["out.bias"])
        attn.append(a)
    return np.stack(logits, 1), np.stack(attn, 1)


def spec_loss(logits, targets, steps):
    """Cross entropy summed over the steps t < steps[b], over their count."""
    valid = np.arange(logits.shape[1])[None, :] < steps[:, None]
    z = logits[valid]
    m = z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z - m).sum(axis=1)) + m[:, 0]
    return float((lse - z[np.arange(len(z)), targets[valid]]).sum() / valid.sum())


def twin_with(params, cfg, dtype):
    twin = TorchSeq2Seq(**cfg, dtype=dtype)
    twin.load_params(params)
    return twin


# ---------------------------------------------------------------------------
# the twin against the spec


def test_param_names_and_shapes_as_the_spec():
    """Two configurations written out by hand from the spec's table."""
    cfg = dict(src_vocab=11, tgt_vocab=13, embedding_dim=5, hidden_size=7, num_layers=2,
               bidirectional=True, cell="lstm", decoder_hidden=3, decoder_layers=2,
               decoder_cell="lstm", attention="bahdanau", attention_size=2)
    De = 14
    expected = {"src_embedding.weight": (11, 5), "tgt_embedding.weight": (15, 5)}
    for k, In in ((0, 5), (1, De)):
        for sfx in ("", "_reverse"):
            expected.update({f"encoder.weight_ih_l{k}{sfx}": (28, In),
                             f"encoder.weight_hh_l{k}{sfx}": (28, 7),
                             f"encoder.bias_ih_l{k}{sfx}": (28,),
                             f"encoder.bias_hh_l{k}{sfx}": (28,)})
    expected.update({"bridge_h.weight": (6, De), "bridge_h.bias": (6,),
                     "bridge_c.weight": (6, De), "bridge_c.bias": (6,)})
    for k, In in ((0, 5 + 3), (1, 3)):
        expected.update({f"decoder.weight_ih_l{k}": (12, In),
                         f"decoder.weight_hh_l{k}": (12, 3),
                         f"decoder.bias_ih_l{k}": (12,), f"decoder.bias_hh_l{k}": (12,)})
    expected.update({"attention.key_weight": (2, De), "attention.query_weight": (2, 3),
                     "attention.v": (2,), "combine.weight": (3, De + 3),
                     "combine.bias": (3,), "out.weight": (14, 3), "out.bias": (14,)})
    assert s2s.param_shapes(**cfg) == expected
    twin = TorchSeq2Seq(**cfg)
    assert {k: v.shape for k, v in twin.flat_params().items()} == expected

    # GRU encoder, unidirectional; LSTM decoder without feeding: no bridge_c
    # (c0 = 0), general attention, Hd = He by default
    cfg = dict(src_vocab=2, tgt_vocab=1, embedding_dim=3, hidden_size=5,
               bidirectional=False, cell="gru", input_feeding=False)
    expected = {"src_embedding.weight": (2, 3), "tgt_embedding.weight": (3, 3),
                "encoder.weight_ih_l0": (15, 3), "encoder.weight_hh_l0": (15, 5),
                "encoder.bias_ih_l0": (15,), "encoder.bias_hh_l0": (15,),
                "bridge_h.weight": (5, 5), "bridge_h.bias": (5,),
                "decoder.weight_ih_l0": (20, 3), "decoder.weight_hh_l0": (20, 5),
                "decoder.bias_ih_l0": (20,), "decoder.bias_hh_l0": (20,),
                "attention.weight": (5, 5), "combine.weight": (5, 10),
                "combine.bias": (5,), "out.weight": (2, 5), "out.bias": (2,)}
    assert s2s.param_shapes(**cfg) == expected
    # zeros bridge and dot attention: neither bridge nor attention parameters
    shapes = s2s.param_shapes(**cfg, bridge="zeros", attention="dot")
    assert not [k for k in shapes if k.startswith(("bridge", "attention"))]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("combo", COMBOS, ids=[combo_id(c) for c in COMBOS])
def test_twin_matches_the_spec(combo, dtype, rng):
    """Logits, attention and loss as the NumPy spec; a gradient, finite and
    not all zero, for every parameter (none detached), in the spec's order."""
    cfg = combo_config(combo)
    params = s2s.make_params(dtype, int(rng.integers(1 << 30)), SCALE, **cfg)
    twin = twin_with(params, cfg, dtype)
    src, ls, yin, targets, steps = batch(rng)
    loss, logits, grads = twin.loss_and_grads(src, ls, yin, targets, steps)
    ref, ref_attn = spec_forward(params, cfg, src, ls, yin)
    assert logits.dtype == np.dtype(dtype)
    assert_close(logits, ref, dtype, "logits")
    with torch.no_grad():
        _, attn = twin(src, ls, yin, return_attention=True)
    assert_close(attn.numpy(), ref_attn, dtype, "attention")
    assert_close(loss, spec_loss(ref, targets, steps), dtype, "loss")
    assert list(grads) == list(s2s.param_shapes(**cfg))
    for k, g in grads.items():
        assert g.shape == params[k].shape and g.dtype == np.dtype(dtype), k
        assert np.all(np.isfinite(g)) and np.any(g != 0), k


@pytest.mark.parametrize("attention", s2s.ATTENTIONS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_masked_positions_get_zero_attention(attention, bidirectional, rng):
    """Exactly 0 at s >= src_lengths[b], positive elsewhere, rows summing to 1."""
    cfg = config(attention=attention, bidirectional=bidirectional)
    twin = TorchSeq2Seq(**cfg, dtype="float64", seed=int(rng.integers(1 << 30)))
    src, ls, yin, _, _ = batch(rng)
    with torch.no_grad():
        _, attn = twin(src, ls, yin, return_attention=True)
    attn = attn.numpy()
    pad = np.arange(S)[None, :] >= ls[:, None]                     # (B,S)
    assert attn.shape == (B, yin.shape[1], S)
    assert np.all(attn[np.broadcast_to(pad[:, None, :], attn.shape)] == 0)
    assert np.all(attn[np.broadcast_to(~pad[:, None, :], attn.shape)] > 0)
    np.testing.assert_allclose(attn.sum(axis=2), 1.0, rtol=0, atol=1e-12)
    assert np.all(attn[1, :, 0] == 1.0)                            # length 1: all there


@pytest.mark.parametrize("cell", s2s.CELLS)
def test_padding_content_does_not_change_logits(cell, rng):
    """Ids past the lengths (in range or not) change nothing at the valid
    steps: logits, loss and gradients bit for bit."""
    cfg = config(cell=cell, layers=(2, 1), attention="bahdanau")
    twin = TorchSeq2Seq(**cfg, dtype="float64", seed=int(rng.integers(1 << 30)))
    src, ls, yin, targets, steps = batch(rng)
    loss0, logits0, grads0 = twin.loss_and_grads(src, ls, yin, targets, steps)
    valid = np.arange(yin.shape[1])[None, :] < steps[:, None]
    for fill in ("in range", "out of range"):
        src2, yin2, targets2 = src.copy(), yin.copy(), targets.copy()
        pad = np.arange(S)[None, :] >= ls[:, None]
        past = ~valid
        if fill == "in range":
            src2[pad] = rng.integers(1, VS, pad.sum())
            yin2[past] = rng.integers(0, VT + 2, past.sum())
            targets2[past] = rng.integers(0, VT + 1, past.sum())
        else:
            src2[pad] = -7
            targets2[past] = VT + 99
        assert not np.array_equal(src2, src)
        loss, logits, grads = twin.loss_and_grads(src2, ls, yin2, targets2, steps)
        assert loss == loss0, fill
        np.testing.assert_array_equal(logits[valid], logits0[valid], err_msg=fill)
        for k in grads:
            np.testing.assert_array_equal(grads[k], grads0[k], err_msg=f"{fill}: {k}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("combo", [
    ("lstm", "lstm", (2, 2), True, "general", True, "dense"),
    ("gru", "gru", (1, 2), True, "bahdanau", False, "dense"),
    ("rnn", "lstm", (2, 1), False, "dot", True, "zeros"),
], ids=combo_id)
def test_each_row_alone_is_its_row_in_the_batch(combo, dtype, rng):
    """Batch 1 with the row's own S and T equals that row of the batch: no
    mixing across rows, no dependence on the batch's longest source."""
    cfg = combo_config(combo)
    params = s2s.make_params(dtype, int(rng.integers(1 << 30)), SCALE, **cfg)
    twin = twin_with(params, cfg, dtype)
    src, ls, yin, targets, steps = batch(rng)
    with torch.no_grad():
        logits = twin(src, ls, yin).numpy()
    for b in range(B):
        with torch.no_grad():
            alone = twin(src[b:b + 1, :ls[b]], ls[b:b + 1], yin[b:b + 1, :steps[b]]).numpy()
        assert alone.shape == (1, steps[b], VT + 1)
        assert_close(alone[0], logits[b, :steps[b]], dtype, f"row {b}")
        assert_close(alone[0], spec_forward(params, cfg, src[b:b + 1, :ls[b]], ls[b:b + 1],
                                            yin[b:b + 1, :steps[b]])[0][0], dtype, f"row {b}")


@pytest.mark.parametrize("combo", [COMBOS[0], COMBOS[-1],
                                   ("gru", "lstm", (2, 2), True, "bahdanau", True, "dense")],
                         ids=combo_id)
def test_load_params_round_trips(combo, rng):
    cfg = combo_config(combo)
    params = s2s.make_params("float64", int(rng.integers(1 << 30)), SCALE, **cfg)
    twin = twin_with(params, cfg, "float64")
    flat = twin.flat_params()
    assert list(flat) == list(s2s.param_shapes(**cfg))
    for k in params:
        assert flat[k].dtype == np.float64
        np.testing.assert_array_equal(flat[k], params[k], err_msg=k)
    # into a float32 twin: rounded once, to float32
    flat32 = twin_with(params, cfg, "float32").flat_params()
    for k in params:
        assert flat32[k].dtype == np.float32
        np.testing.assert_array_equal(flat32[k], params[k].astype(np.float32), err_msg=k)
    # a second twin loaded from the first's flat dict computes the same bits;
    # so does a pickled copy
    src, ls, yin, _, _ = batch(rng)
    other = TorchSeq2Seq(**cfg, dtype="float64", seed=1)
    with torch.no_grad():
        before = other(src, ls, yin).numpy()
        other.load_params(flat)
        after = other(src, ls, yin).numpy()
        mine = twin(src, ls, yin).numpy()
        copied = pickle.loads(pickle.dumps(twin))(src, ls, yin).numpy()
    assert not np.array_equal(before, mine)
    np.testing.assert_array_equal(after, mine)
    np.testing.assert_array_equal(copied, mine)
    # the seed's weights are make_params's
    seeded = TorchSeq2Seq(**cfg, dtype="float64", seed=5).flat_params()
    for k, v in s2s.make_params("float64", 5, **cfg).items():
        np.testing.assert_array_equal(seeded[k], v, err_msg=k)


def test_load_params_refuses_wrong_dicts():
    cfg = config(attention="bahdanau")
    twin = TorchSeq2Seq(**cfg, seed=0)
    good = s2s.make_params("float32", 1, **cfg)
    before = twin.flat_params()
    bad_shape = dict(good, **{"decoder.weight_hh_l0": good["decoder.weight_hh_l0"][:, :-1]})
    with pytest.raises(ValueError, match=r"decoder\.weight_hh_l0.*shape"):
        twin.load_params(bad_shape)
    missing = {k: v for k, v in good.items() if k != "attention.v"}
    with pytest.raises(ValueError, match=r"missing \['attention\.v'\]"):
        twin.load_params(missing)
    with pytest.raises(ValueError, match=r"unknown \['decoder\.weight_ih_l1'\]"):
        twin.load_params(dict(good, **{"decoder.weight_ih_l1": good["decoder.weight_ih_l0"]}))
    with pytest.raises(TypeError, match=r"out\.bias.*floating"):
        twin.load_params(dict(good, **{"out.bias": good["out.bias"].astype(np.int64)}))
    with pytest.raises(TypeError, match="params must be a dict"):
        twin.load_params(list(good.items()))
    after = twin.flat_params()  # a refused dict leaves every parameter as it was
    for k in before:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)


@pytest.mark.parametrize("combo", [
    ("lstm", "lstm", (2, 2), True, "bahdanau", True, "dense"),
    ("gru", "gru", (1, 1), True, "general", False, "dense"),
    ("rnn", "lstm", (2, 1), False, "dot", True, "zeros"),
    ("gru", "lstm", (1, 2), False, "general", True, "dense"),
], ids=combo_id)
def test_gradients_central_differences(combo, rng):
    """Each named gradient is the derivative of the loss along a random
    direction of that parameter alone (float64): named_flat_grads's names
    are the ones load_params writes."""
    cfg = combo_config(combo)
    params = s2s.make_params("float64", int(rng.integers(1 << 30)), SCALE, **cfg)
    twin = twin_with(params, cfg, "float64")
    args = batch(rng)
    _, _, grads = twin.loss_and_grads(*args)
    eps = 1e-6
    for k, p in params.items():
        d = rng.standard_normal(p.shape)
        losses = []
        for sign in (1, -1):
            twin.load_params(dict(params, **{k: p + sign * eps * d}))
            losses.append(twin.loss_and_grads(*args)[0])
        numeric = (losses[0] - losses[1]) / (2 * eps)
        analytic = float(np.sum(grads[k] * d))
        assert abs(numeric - analytic) <= 1e-6 * max(1.0, abs(analytic)), (k, numeric, analytic)


def test_loss_counts_only_valid_steps(rng):
    """Summed over t < tgt_lengths[b], divided by their number (not by B)."""
    twin = TorchSeq2Seq(**config(), dtype="float64", seed=0)
    logits = torch.tensor(rng.standard_normal((B, 7, VT + 1)))
    targets = rng.integers(0, VT + 1, (B, 7))
    steps = np.array([7, 1, 4])
    loss = float(twin.loss(logits, targets, steps))
    assert loss == pytest.approx(spec_loss(logits.numpy(), targets, steps), rel=1e-12)
    logp = torch.log_softmax(logits, -1).numpy()
    nll = [-logp[b, t, targets[b, t]] for b in range(B) for t in range(steps[b])]
    assert loss == pytest.approx(sum(nll) / 12, rel=1e-12)
    with pytest.raises(ValueError, match="tgt_lengths must be in 1..7"):
        twin.loss(logits, targets, np.array([7, 0, 4]))
    with pytest.raises(ValueError, match="targets must hold ids in 0..13"):
        twin.loss(logits, np.where(targets == targets, VT + 1, 0), steps)


def test_dropout_only_in_training(rng):
    cfg = config(layers=(2, 1))
    params = s2s.make_params("float64", 3, **cfg)
    plain = twin_with(params, cfg, "float64")
    dropped = twin_with(params, dict(cfg, dropout=0.5), "float64")
    src, ls, yin, _, _ = batch(rng)
    with torch.no_grad():
        ref = plain(src, ls, yin).numpy()
        dropped.eval()
        np.testing.assert_array_equal(dropped(src, ls, yin).numpy(), ref)
        dropped.train()
        assert not np.allclose(dropped(src, ls, yin).numpy(), ref)


def test_bad_configuration_and_inputs_raise():
    with pytest.raises(ValueError, match="cell must be one of"):
        TorchSeq2Seq(VS, VT, cell="lstmx")
    with pytest.raises(ValueError, match="decoder_cell must be one of"):
        TorchSeq2Seq(VS, VT, decoder_cell="rnn")
    with pytest.raises(ValueError, match="attention must be one of"):
        TorchSeq2Seq(VS, VT, attention="luong")
    with pytest.raises(ValueError, match="bridge must be one of"):
        TorchSeq2Seq(VS, VT, bridge="mean")
    with pytest.raises(ValueError, match="decoder_hidden == 2\\*hidden_size = 8"):
        TorchSeq2Seq(VS, VT, hidden_size=4, decoder_hidden=5, attention="dot")
    with pytest.raises(ValueError, match="hidden_size must be >= 1"):
        TorchSeq2Seq(VS, VT, hidden_size=0)
    with pytest.raises(TypeError, match="embedding_dim must be an int"):
        TorchSeq2Seq(VS, VT, embedding_dim=4.0)
    with pytest.raises(TypeError, match="bidirectional must be a bool"):
        TorchSeq2Seq(VS, VT, bidirectional="yes")
    with pytest.raises(ValueError, match="dropout must be a number in"):
        TorchSeq2Seq(VS, VT, dropout=1.0)
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        TorchSeq2Seq(VS, VT, dtype="float16")
    twin = TorchSeq2Seq(**config(), seed=0)
    src, ls = np.array([[1, 2, 3]]), np.array([3])
    yin = np.array([[VT + 1]])
    with pytest.raises(TypeError, match="src must hold integers"):
        twin(src.astype(float), ls, yin)
    with pytest.raises(ValueError, match="src_lengths must be in 1..3"):
        twin(src, np.array([4]), yin)
    with pytest.raises(ValueError, match=r"src_lengths must have shape \(1,\)"):
        twin(src, np.array([3, 3]), yin)
    with pytest.raises(ValueError, match="src must hold ids in 0..10"):
        twin(np.array([[1, VS, 3]]), ls, yin)
    with pytest.raises(ValueError, match="yin must hold ids in 0..14"):
        twin(src, ls, np.array([[VT + 2]]))
    with pytest.raises(ValueError, match="yin must have 1 rows"):
        twin(src, ls, np.array([[1], [2]]))
    with pytest.raises(ValueError, match="sequences must hold symbols in 0..12"):
        s2s.teacher_forcing([[VT]], VT)


def test_teacher_forcing_follows_the_spec():
    """[BOS, y_1..y_n] in, [y_1..y_n, EOS] out: n+1 steps."""
    yin, targets, steps = s2s.teacher_forcing([[4, 0, 12], [], [7]], VT, pad=-1)
    EOS, BOS = VT, VT + 1
    assert yin.tolist() == [[BOS, 4, 0, 12], [BOS, -1, -1, -1], [BOS, 7, -1, -1]]
    assert targets.tolist() == [[4, 0, 12, EOS], [EOS, -1, -1, -1], [7, EOS, -1, -1]]
    assert steps.tolist() == [4, 1, 2]


def test_import_needs_no_torch():
    """The module and its NumPy helpers import and run with torch blocked;
    TorchSeq2Seq then raises ImportError."""
    code = ("import sys; sys.modules['torch'] = None\n"
            "from fastrnn.examples import _seq2seq_torch as s2s\n"
            "p = s2s.make_params(src_vocab=3, tgt_vocab=2, hidden_size=2, seed=0)\n"
            "assert p['out.weight'].shape == (3, 4)\n"
            "try:\n    s2s.TorchSeq2Seq\nexcept ImportError:\n    print('ok')\n")
    tree = os.path.abspath(os.path.join(os.path.dirname(s2s.__file__), "..", ".."))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=tree, env=dict(os.environ, PYTHONPATH=tree), timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr


def test_class_docstring_examples_run():
    """The class is built lazily, so tests/docs/test_doctests.py cannot find
    its examples (nor its methods'): they run here."""
    tests = [t for t in doctest.DocTestFinder().find(TorchSeq2Seq, "TorchSeq2Seq",
                                                     globs={}) if t.examples]
    assert len(tests) >= 6
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for t in tests:
        runner.run(t)
    assert runner.failures == 0


def test_twin_deepcopy_is_independent():
    twin = TorchSeq2Seq(**config(), seed=0)
    other = copy.deepcopy(twin)
    other.load_params(s2s.make_params("float32", 1, **config()))
    assert not np.array_equal(twin.flat_params()["out.bias"], other.flat_params()["out.bias"])


# ---------------------------------------------------------------------------
# fr.Seq2Seq against the twin


def fr_seq2seq():
    """fr.Seq2Seq, or a skip while fastrnn/seq2seq.py does not exist (an
    import error inside an existing module fails, it does not skip)."""
    try:
        module = importlib.import_module("fastrnn.seq2seq")
    except ModuleNotFoundError as e:
        if e.name != "fastrnn.seq2seq":
            raise
        pytest.skip("fastrnn.seq2seq not built yet")
    return module.Seq2Seq


def check_parity(fr_model_factory, config, dtype, seed=0, data_seed=0,
                 src_lengths=SRC_LENGTHS, symbols=TGT_SYMBOLS, scale=SCALE):
    """fr model's logits, loss and gradients against the twin in float64.

    fr_model_factory(**config, dtype=dtype, seed=seed) must give a model
    with .params (the spec's flat dict, arrays of dtype) and
    .loss_and_grads(src, src_lengths, yin, targets, tgt_lengths) ->
    (loss, logits (B,T,Vt+1), grads dict of the same keys), computed in
    training mode (config's dropout must be 0). tgt_lengths are the valid
    decoder steps (n_b + 1). The twin holds the model's own weights, widened
    to float64 (exactly), so its rounding is negligible and the tolerance
    measures the model alone. `scale` (None: leave them) multiplies the
    model's arrays in place first: the model must compute from
    model.params's arrays, and the embeddings are left as they are.
    """
    assert config.get("dropout", 0.0) == 0.0, "parity needs dropout 0"
    model = fr_model_factory(**config, dtype=dtype, seed=seed)
    shapes = s2s.param_shapes(**config)
    params = model.params
    assert set(params) == set(shapes), (sorted(set(params) ^ set(shapes)))
    for k, shape in shapes.items():
        assert np.asarray(params[k]).shape == shape, k
        assert np.asarray(params[k]).dtype == np.dtype(dtype), k
    if scale is not None:  # as make_params(scale=...): the embeddings stay
        for k, v in params.items():
            if not k.endswith("embedding.weight"):
                v *= np.asarray(scale, v.dtype)
    params = {k: np.array(v, copy=True) for k, v in params.items()}
    truth = TorchSeq2Seq(**config, dtype="float64")
    truth.load_params(params)
    src, ls, yin, targets, steps = batch(np.random.default_rng(data_seed), src_lengths, symbols)
    loss, logits, grads = model.loss_and_grads(src, ls, yin, targets, steps)
    t_loss, t_logits, t_grads = truth.loss_and_grads(src, ls, yin, targets, steps)
    logits = np.asarray(logits)
    assert logits.dtype == np.dtype(dtype), logits.dtype
    assert_close(logits, t_logits, dtype, "logits")
    assert np.ndim(loss) == 0
    assert_close(float(loss), t_loss, dtype, "loss")
    assert set(grads) == set(shapes), (sorted(set(grads) ^ set(shapes)))
    for k in shapes:
        g = np.asarray(grads[k])
        assert g.dtype == np.dtype(dtype), (k, g.dtype)
        assert_close(g, t_grads[k], dtype, f"grad {k}")
    for k in shapes:  # computing left the model's weights as they were
        np.testing.assert_array_equal(model.params[k], params[k], err_msg=k)


# every option at least once, with the edges: lengths 1, an empty target
# sequence, batch 1 with S = T = 1
PARITY = [  # combo, src_lengths, target symbols
    (("lstm", "lstm", (1, 1), True, "general", True, "dense"), SRC_LENGTHS, TGT_SYMBOLS),
    (("lstm", "lstm", (2, 2), True, "bahdanau", True, "dense"), SRC_LENGTHS, TGT_SYMBOLS),
    (("lstm", "gru", (2, 1), False, "dot", False, "dense"), SRC_LENGTHS, TGT_SYMBOLS),
    (("gru", "lstm", (1, 2), True, "dot", True, "dense"), SRC_LENGTHS, TGT_SYMBOLS),
    (("gru", "gru", (2, 2), False, "general", False, "zeros"), SRC_LENGTHS, TGT_SYMBOLS),
    (("rnn", "lstm", (1, 1), False, "bahdanau", False, "zeros"), SRC_LENGTHS, TGT_SYMBOLS),
    (("rnn", "gru", (2, 1), True, "general", True, "dense"), (2, 7), (5, 1)),
    (("lstm", "lstm", (1, 2), True, "bahdanau", False, "zeros"), (1,), (0,)),
    (("gru", "gru", (1, 1), True, "dot", True, "dense"), (3,), (4,)),
]
PARITY_IDS = [f"{combo_id(c)}-S{max(sl)}B{len(sl)}" for c, sl, _ in PARITY]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", PARITY, ids=PARITY_IDS)
def test_fr_seq2seq_matches_the_twin(case, dtype):
    Seq2Seq = fr_seq2seq()
    combo, src_lengths, symbols = case
    check_parity(Seq2Seq, combo_config(combo), dtype, seed=7,
                 src_lengths=np.asarray(src_lengths), symbols=symbols)


class TwinAsFr:
    """fr.Seq2Seq's expected interface, served by the twin: the stand-in
    that checks check_parity before fr.Seq2Seq exists. `defect` plants one
    error in what it returns."""

    def __init__(self, dtype="float32", seed=None, defect=None, **config):
        self.twin = TorchSeq2Seq(**config, dtype=dtype, seed=seed)
        self.params = self.twin.flat_params()
        self.defect = defect

    def loss_and_grads(self, *args):
        self.twin.load_params(self.params)
        loss, logits, grads = self.twin.loss_and_grads(*args)
        eps = 1e-3 if self.twin.np_dtype == np.float32 else 1e-7  # 5x the tolerance and more
        if self.defect == "logit":
            logits[0, 0, 0] += eps * max(1.0, abs(logits[0, 0, 0]))
        elif self.defect == "loss":
            loss *= 1 + eps
        elif self.defect == "grad":
            g = grads["encoder.weight_hh_l0"]
            i = np.unravel_index(np.argmax(np.abs(g)), g.shape)
            g[i] *= 1 + 10 * eps
        elif self.defect == "missing grad":
            del grads["attention.weight"]
        elif self.defect == "float64 grads":
            grads = {k: g.astype(np.float64) for k, g in grads.items()}
        elif self.defect == "moves weights":
            self.params["out.bias"] = self.params["out.bias"] + 1
        return loss, logits, grads


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_check_parity_passes_the_twin_itself(dtype):
    """torch in float32 meets the float32 tolerance against float64 truth
    (so fr.Seq2Seq is held to what torch achieves)."""
    for combo, src_lengths, symbols in PARITY:
        check_parity(TwinAsFr, combo_config(combo), dtype, seed=7,
                     src_lengths=np.asarray(src_lengths), symbols=symbols)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("defect", ["logit", "loss", "grad", "missing grad",
                                    "float64 grads", "moves weights"])
def test_check_parity_catches_a_planted_error(defect, dtype):
    if defect == "float64 grads" and dtype == "float64":
        pytest.skip("float64 grads are right for a float64 model")

    def factory(**kw):
        return TwinAsFr(defect=defect, **kw)

    with pytest.raises(AssertionError):
        check_parity(factory, config(), dtype, seed=7)


def test_check_parity_skip_reason(monkeypatch):
    """Without fastrnn/seq2seq.py the parity tests skip with this reason."""
    if importlib.util.find_spec("fastrnn.seq2seq") is not None:
        pytest.skip("fastrnn.seq2seq exists")
    with pytest.raises(pytest.skip.Exception, match="fastrnn.seq2seq not built yet"):
        fr_seq2seq()

