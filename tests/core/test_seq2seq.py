"""fr.Seq2Seq: gradients against finite differences, training, decoding, files, bad input.

Parity with torch autograd is in tests/parity/test_seq2seq_torch_twin.py;
beam search against brute force in tests/core/test_decoding.py.
"""
import numpy as np
import pytest

import fastrnn as fr

BASE = dict(src_vocab=7, tgt_vocab=5, embedding_dim=4, hidden_size=3)
CONFIGS = [
    {},
    dict(attention="dot", decoder_hidden=6),
    dict(attention="bahdanau", attention_size=5),
    dict(decoder_cell="gru"),
    dict(cell="gru", decoder_layers=2),
    dict(cell="rnn", bidirectional=False, num_layers=2, decoder_hidden=4),
    dict(input_feeding=False, bridge="zeros"),
    dict(num_layers=2, decoder_layers=2, attention="bahdanau", hidden_size=5),
]


def _batch(m, rng, B=3, S=5, T=4):
    ls = rng.integers(1, S + 1, B)
    ls[0] = S
    src = rng.integers(0, m.src_vocab, (B, S))
    ly = rng.integers(1, T + 1, B)
    ly[0] = T
    y = rng.integers(0, m.tgt_vocab + 1, (B, T))
    yin = rng.integers(0, m.tgt_vocab + 2, (B, T))
    return src, ls, yin, y, ly


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items())
                         or "default")
def test_gradients_match_finite_differences_float64(cfg):
    m = fr.Seq2Seq(dtype="float64", seed=1, **{**BASE, **cfg})
    rng = np.random.default_rng(2)
    args = _batch(m, rng)
    _, _, grads = m.loss_and_grads(*args)
    eps = 1e-6
    for name, p in m.params.items():
        flat = p.reshape(-1)
        g = grads[name].reshape(-1)
        scale = np.abs(g).max() + 1e-3
        for i in rng.choice(flat.size, min(4, flat.size), replace=False):
            old = flat[i]
            flat[i] = old + eps
            lp = m.loss_and_grads(*args)[0]
            flat[i] = old - eps
            lm = m.loss_and_grads(*args)[0]
            flat[i] = old
            num = (lp - lm) / (2 * eps)
            assert abs(num - g[i]) <= 1e-6 * scale, (name, i, num, g[i])


def test_padding_of_sources_changes_nothing():
    m = fr.Seq2Seq(**BASE, seed=0, dtype="float64")
    rng = np.random.default_rng(0)
    src, ls, yin, y, ly = _batch(m, rng)
    ls[1] = 2
    loss, logits, grads = m.loss_and_grads(src, ls, yin, y, ly)
    src2 = src.copy()
    src2[1, 2:] = (src2[1, 2:] + 3) % m.src_vocab
    loss2, logits2, grads2 = m.loss_and_grads(src2, ls, yin, y, ly)
    assert loss == loss2
    np.testing.assert_array_equal(logits, logits2)
    for n in grads:
        np.testing.assert_array_equal(grads[n], grads2[n])


def _reverse_task(rng, n, vocab=6):
    src = [rng.integers(0, vocab, rng.integers(2, 6)) for _ in range(n)]
    return src, [s[::-1] for s in src]


def test_learns_to_reverse_and_decodes_it():
    rng = np.random.default_rng(0)
    src, tgt = _reverse_task(rng, 600)
    m = fr.Seq2Seq(6, 6, embedding_dim=16, hidden_size=24, decoder_hidden=32, seed=3)
    m.compile("adam", lr=1e-2, clip_norm=5.0)
    # 16 epochs: the seeded run sits at 0.89-0.9 greedy after 12, whichever
    # way the last bits of the gate math round
    hist = m.fit(src, tgt, epochs=16, batch_size=32, seed=0, verbose=0)
    assert hist["loss"][-1] < 0.2 * hist["loss"][0]
    test_src, test_tgt = _reverse_task(np.random.default_rng(9), 100)
    for beam in (1, 3):
        out = m.predict(test_src, beam_size=beam)
        right = np.mean([np.array_equal(o, t) for o, t in zip(out, test_tgt)])
        assert right >= 0.9, (beam, right)
    out, att = m.predict(test_src[:4], beam_size=2, return_attention=True)
    for o, a, s in zip(out, att, test_src[:4]):
        assert a.shape == (len(o) + 1, len(s))
        np.testing.assert_allclose(a.sum(axis=1), 1.0, rtol=1e-5)
    ev = m.evaluate(test_src, test_tgt)
    assert ev["accuracy"] > 0.9 and ev["loss"] < hist["loss"][0]


def test_seeded_fits_give_the_same_bits_on_1_and_2_threads():
    rng = np.random.default_rng(0)
    src, tgt = _reverse_task(rng, 96)
    runs = []
    for threads in (1, 2, 2):
        fr.set_num_threads(threads)
        try:
            m = fr.Seq2Seq(6, 6, embedding_dim=8, hidden_size=8, dropout=0.2,
                           attention="bahdanau", seed=5)
            m.fit(src, tgt, epochs=2, batch_size=16, seed=1, sampling_ratio=0.3, verbose=0)
        finally:
            fr.set_num_threads(2)
        runs.append(m.state_dict())
    for other in runs[1:]:
        for n in runs[0]:
            np.testing.assert_array_equal(runs[0][n], other[n], err_msg=n)


def test_save_load_round_trip_resumes_training(tmp_path):
    rng = np.random.default_rng(0)
    src, tgt = _reverse_task(rng, 64)
    m = fr.Seq2Seq(6, 6, embedding_dim=8, hidden_size=8, cell="gru", decoder_cell="gru",
                   attention="dot", decoder_hidden=16, seed=2)
    m.compile("adam", lr=3e-3, clip_norm=1.0)
    m.fit(src, tgt, epochs=1, batch_size=16, verbose=0)
    path = tmp_path / "s2s.fastrnn"
    m.save(path)
    back = fr.load(path)
    assert isinstance(back, fr.Seq2Seq) and back.get_config() == m.get_config()
    assert back.clip_norm == 1.0 and back.optimizer.lr == pytest.approx(3e-3)
    for a, b in ((m, back),):
        a.fit(src, tgt, epochs=1, batch_size=16, seed=4, verbose=0)
        b.fit(src, tgt, epochs=1, batch_size=16, seed=4, verbose=0)
    for n in m.params:
        np.testing.assert_array_equal(m.params[n], back.params[n], err_msg=n)
    same = [np.array_equal(x, y) for x, y in zip(m.predict(src[:8]), back.predict(src[:8]))]
    assert all(same)


def test_load_refuses_arrays_that_do_not_fit_the_config(tmp_path):
    import json
    import zipfile
    m = fr.Seq2Seq(6, 6, embedding_dim=8, hidden_size=8, seed=2)
    path = tmp_path / "s2s.fastrnn"
    m.save(path)
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    cfg = json.loads(members["config.json"])
    cfg["seq2seq"]["hidden_size"] = 4096          # asks for far more than the file holds
    members["config.json"] = json.dumps(cfg).encode()
    bad = tmp_path / "bad.fastrnn"
    with zipfile.ZipFile(bad, "w") as zf:
        for n, b in members.items():
            zf.writestr(n, b)
    with pytest.raises(ValueError, match="do not match the config"):
        fr.load(bad)


def test_bad_input_gets_clear_errors():
    m = fr.Seq2Seq(6, 5, embedding_dim=4, hidden_size=4, seed=0)
    with pytest.raises(ValueError, match=r"sources\[1\] is empty"):
        m.predict([[1, 2], []])
    with pytest.raises(ValueError, match=r"sources\[0\]: id 6 is outside"):
        m.predict([[1, 6]])
    with pytest.raises(ValueError, match=r"targets\[1\]: id 5 is outside"):
        m.fit([[1], [2]], [[0], [5]], verbose=0)
    with pytest.raises(ValueError, match="beam_size"):
        m.predict([[1, 2]], beam_size=0)
    with pytest.raises(ValueError, match="max_length"):
        m.predict([[1, 2]], max_length=0)
    with pytest.raises(TypeError, match="string"):
        m.predict(["abc"])
    with pytest.raises(ValueError, match="as many"):
        m.fit([[1], [2]], [[0]], verbose=0)
    with pytest.raises(ValueError, match="time_limit"):
        m.fit([[1]], [[0]], time_limit="1h", verbose=0)
    with pytest.raises(ValueError, match="sampling_ratio"):
        m.fit([[1]], [[0]], sampling_ratio=1.0, verbose=0)
    with pytest.raises(ValueError, match="attention='dot'"):
        fr.Seq2Seq(6, 5, hidden_size=4, decoder_hidden=6, attention="dot")
    with pytest.raises(ValueError, match="attention"):
        fr.Seq2Seq(6, 5, attention="luong")
    with pytest.raises(ValueError, match="src_vocab"):
        fr.Seq2Seq(0, 5)
    with pytest.raises(ValueError, match="src_lengths"):
        m.loss_and_grads(np.zeros((2, 3), int), [3, 0], np.zeros((2, 2), int),
                         np.zeros((2, 2), int), [2, 2])


def test_predict_stops_at_max_length_and_handles_batch_1():
    m = fr.Seq2Seq(6, 5, embedding_dim=4, hidden_size=4, seed=0)
    out = m.predict([[1, 2, 3]], max_length=2)
    assert len(out) == 1 and len(out[0]) <= 2
    out = m.predict([[1, 2, 3]], beam_size=3, max_length=3, length_penalty="wu", alpha=0.6)
    assert len(out[0]) <= 3


def test_fit_takes_validation_data_and_the_model_callbacks(tmp_path):
    rng = np.random.default_rng(0)
    src, tgt = _reverse_task(rng, 48)
    m = fr.Seq2Seq(6, 6, embedding_dim=8, hidden_size=8, seed=0)
    path = tmp_path / "best.fastrnn"
    stops = fr.EarlyStopping(monitor="val_loss", patience=1)
    hist = m.fit(src, tgt, epochs=3, batch_size=16, validation_data=(src[:16], tgt[:16]),
                 callbacks=[stops, fr.ModelCheckpoint(path, monitor="val_loss")], verbose=0)
    assert len(hist["val_loss"]) >= 1 and all(np.isfinite(hist["val_loss"]))
    best = fr.load(path)      # the checkpoint holds the best validation epoch's weights
    assert isinstance(best, fr.Seq2Seq)
    assert best.evaluate(src[:16], tgt[:16])["loss"] == pytest.approx(min(hist["val_loss"]),
                                                                      rel=1e-6)
