"""Sequential models: gradients against torch, fit/evaluate/predict, padding
that never leaks, reproducibility whatever the thread count, callbacks,
interruption, truncated BPTT, streaming and generation."""
import numpy as np
import pytest

import fastrnn as fr


def classify_data(n=96, T=9, V=12, seed=0):
    """Is token 1 more frequent than token 2 in the valid steps? Lengths vary."""
    rng = np.random.default_rng(seed)
    X = rng.integers(1, V, size=(n, T))
    L = rng.integers(2, T + 1, size=n)
    y = np.array([int((X[i, :L[i]] == 1).sum() > (X[i, :L[i]] == 2).sum()) for i in range(n)])
    return X, y, L


def small_model(seed=None, dropout=0.0, bidirectional=True, V=12):
    H = 8
    D = 2 if bidirectional else 1
    return fr.Sequential([
        fr.Embedding(V, 6, padding_idx=0),
        fr.LSTM(6, H, batch_first=True, bidirectional=bidirectional),
        fr.Dropout(dropout),
        fr.AttentionPooling(D * H, 5),
        fr.Dense(D * H, 2),
    ], seed=seed)


def test_sequential_gradients_match_torch():
    torch = pytest.importorskip("torch")
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    X, y, L = classify_data(n=7, T=6)
    f64 = dict(dtype="float64")
    m = fr.Sequential([fr.Embedding(12, 5, **f64),
                       fr.GRU(5, 4, batch_first=True, bidirectional=True, **f64),
                       fr.AttentionPooling(8, 3, **f64), fr.Dense(8, 2, **f64)], seed=1)
    m.compile(loss="cross_entropy", optimizer=fr.optim.SGD(lr=0.1))
    emb = torch.nn.Embedding(12, 5).double()
    gru = torch.nn.GRU(5, 4, batch_first=True, bidirectional=True).double()
    lin = torch.nn.Linear(8, 2).double()
    with torch.no_grad():
        emb.weight.copy_(torch.tensor(m.layers[0].params["weight"]))
        for k, v in m.layers[1].params.items():
            getattr(gru, k).copy_(torch.tensor(v))
        lin.weight.copy_(torch.tensor(m.layers[3].params["weight"]))
        lin.bias.copy_(torch.tensor(m.layers[3].params["bias"]))
    att = {k: torch.tensor(v, requires_grad=True) for k, v in m.layers[2].params.items()}
    e = emb(torch.tensor(X))
    packed = pack_padded_sequence(e, torch.tensor(L), batch_first=True, enforce_sorted=False)
    h, _ = pad_packed_sequence(gru(packed)[0], batch_first=True, total_length=X.shape[1])
    s = torch.tanh(h @ att["weight"].T + att["bias"]) @ att["context"]
    mask = torch.tensor(np.arange(X.shape[1])[None, :] < L[:, None])
    a = torch.softmax(s.masked_fill(~mask, float("-inf")), 1)
    logits = lin((a[:, :, None] * h).sum(1))
    loss_t = torch.nn.functional.cross_entropy(logits, torch.tensor(y))
    loss_t.backward()

    m.zero_grad()
    out = m.forward(X, L)
    value = m.loss.forward(out, y)
    m.backward(m.loss.backward())
    assert abs(value - loss_t.item()) < 1e-12
    grads = dict((n, g) for n, _, g in m.parameters())
    np.testing.assert_allclose(grads["0.weight"], emb.weight.grad.numpy(), rtol=1e-9, atol=1e-12)
    for k in m.layers[1].params:
        np.testing.assert_allclose(grads[f"1.{k}"], getattr(gru, k).grad.numpy(),
                                   rtol=1e-9, atol=1e-12, err_msg=k)
    for k, t in att.items():
        np.testing.assert_allclose(grads[f"2.{k}"], t.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grads["3.weight"], lin.weight.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_fit_learns_and_evaluate_predict():
    X, y, L = classify_data(n=160)
    m = small_model(seed=0)
    m.compile(loss="cross_entropy", optimizer=fr.optim.Adam(lr=0.02), clip_norm=1.0,
              metrics=["accuracy"])
    h = m.fit(X, y, lengths=L, epochs=12, batch_size=16, seed=0, verbose=0,
              validation_data=(X[:40], y[:40], L[:40]))
    assert h.history["loss"][-1] < 0.7 * h.history["loss"][0]
    assert set(h.history) >= {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    ev = m.evaluate(X, y, lengths=L)
    assert ev["accuracy"] > 0.75
    p = m.predict(X, lengths=L)
    assert p.shape == (160, 2)
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-5)
    assert np.mean(p.argmax(1) == y) == pytest.approx(ev["accuracy"])


def test_padding_never_leaks():
    X, y, L = classify_data(n=10)
    m = small_model(seed=3)
    m.compile(loss="cross_entropy", optimizer="sgd")
    X2 = X.copy()
    pad = np.arange(X.shape[1])[None, :] >= L[:, None]
    X2[pad] = 7
    np.testing.assert_array_equal(m(X, L), m(X2, L))
    grads = []
    for data in (X, X2):
        m.zero_grad()
        out = m.forward(data, L)
        m.loss.forward(out, y)
        m.backward(m.loss.backward())
        grads.append([g.copy() for _, _, g in m.parameters()])
    for a, b in zip(*grads):
        np.testing.assert_array_equal(a, b)


def test_per_step_targets_with_lengths():
    rng = np.random.default_rng(0)
    n, T, V = 40, 7, 6
    X = rng.integers(1, V, size=(n, T))
    L = rng.integers(1, T + 1, size=n)
    Y = np.roll(X, -1, axis=1)  # predict the next token
    m = fr.Sequential([fr.Embedding(V, 8), fr.GRU(8, 16, batch_first=True),
                       fr.Dense(16, V)], seed=0)
    m.compile(loss="cross_entropy", optimizer=fr.optim.Adam(lr=0.03), metrics=["accuracy"])
    ev0 = m.evaluate(X, Y, lengths=L)
    Y2 = Y.copy()
    Y2[np.arange(T)[None, :] >= L[:, None]] = 0  # padded targets do not count
    assert m.evaluate(X, Y2, lengths=L) == ev0
    h = m.fit(X, Y, lengths=L, epochs=8, batch_size=8, seed=1, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]
    p = m.predict(X, lengths=L)
    assert p.shape == (n, T, V)
    assert np.all(p[np.arange(T)[None, :] >= L[:, None]] == 0)


def _train_bytes(threads, seed=0):
    fr.set_num_threads(threads)
    try:
        X, y, L = classify_data(n=64)
        m = small_model(dropout=0.2)
        m.compile(loss="cross_entropy", optimizer=fr.optim.AdamW(lr=0.01), clip_norm=0.5,
                  metrics=["accuracy"])
        h = m.fit(X, y, lengths=L, epochs=3, batch_size=8, seed=seed, verbose=0,
                  validation_data=(X[:16], y[:16], L[:16]))
        return {n: p.tobytes() for n, p, _ in m.parameters()}, h.history
    finally:
        fr.set_num_threads(None)


def test_fit_is_bit_identical_for_any_thread_count():
    w1, h1 = _train_bytes(1)
    w2, h2 = _train_bytes(2)
    w3, h3 = _train_bytes(3)
    assert w1 == w2 == w3
    assert h1 == h2 == h3
    w4, _ = _train_bytes(2, seed=1)
    assert w4 != w1


def test_callbacks_early_stopping_checkpoint_schedule(tmp_path):
    X, y, L = classify_data(n=48)
    m = small_model(seed=0)
    opt = fr.optim.SGD(lr=0.5)
    m.compile(loss="cross_entropy", optimizer=opt)
    sched = fr.optim.StepLR(opt, step_size=1, gamma=0.5)
    # never improves enough after the first epoch: stops after the second
    es = fr.EarlyStopping(monitor="val_loss", patience=1, min_delta=10.0,
                          restore_best_weights=False)
    ck = fr.ModelCheckpoint(tmp_path / "e{epoch}.fastrnn", save_best_only=False)
    h = m.fit(X, y, lengths=L, epochs=10, batch_size=16, seed=0, verbose=0,
              validation_data=(X, y, L), callbacks=[es, ck, sched])
    assert len(h.epoch) == 2 and h.stopped_by == "EarlyStopping"
    assert h.history["lr"] == [0.5, 0.25]
    last = fr.load(tmp_path / "e2.fastrnn")
    np.testing.assert_array_equal(last.predict(X, lengths=L), m.predict(X, lengths=L))
    assert (tmp_path / "e1.fastrnn").exists() and not (tmp_path / "e3.fastrnn").exists()
    # restore_best_weights puts the first epoch's weights back
    m2 = small_model(seed=0)
    m2.compile(loss="cross_entropy", optimizer=fr.optim.SGD(lr=0.5))
    m2.fit(X, y, lengths=L, epochs=10, batch_size=16, seed=0, verbose=0,
           validation_data=(X, y, L), callbacks=[fr.EarlyStopping(patience=1, min_delta=10.0)])
    first = fr.load(tmp_path / "e1.fastrnn")
    np.testing.assert_array_equal(first.predict(X, lengths=L), m2.predict(X, lengths=L))


class _InterruptingLoss(fr.losses.CrossEntropy):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, output, target, lengths=None):
        self.calls += 1
        if self.calls == 5:
            raise KeyboardInterrupt
        return super().forward(output, target, lengths)


def test_keyboard_interrupt_leaves_usable_model(capsys):
    X, y, L = classify_data(n=64)
    m = small_model(seed=0)
    m.compile(loss=_InterruptingLoss(), optimizer="adam")
    h = m.fit(X, y, lengths=L, epochs=3, batch_size=8, seed=0, verbose=1)
    assert h.stopped_by == "interrupted"
    assert "interrupted" in capsys.readouterr().out
    p = m.predict(X, lengths=L)
    assert np.all(np.isfinite(p))
    m.compile(loss="cross_entropy", optimizer="adam")
    m.fit(X, y, lengths=L, epochs=1, verbose=0)  # and it trains on


def test_bptt_windows():
    rng = np.random.default_rng(0)
    text = np.tile(np.array([1, 2, 3, 4, 5, 3, 2]), 40)
    n, T, V = 8, 30, 6
    starts = rng.integers(0, len(text) - T - 1, size=n)
    X = np.stack([text[s:s + T] for s in starts])
    Y = np.stack([text[s + 1:s + T + 1] for s in starts])

    def model():
        return fr.Sequential([fr.Embedding(V, 8), fr.LSTM(8, 16, batch_first=True),
                              fr.Dense(16, V)], seed=0)
    m = model()
    m.compile(loss="cross_entropy", optimizer=fr.optim.Adam(lr=0.05))
    h = m.fit(X, Y, epochs=15, batch_size=4, bptt=10, seed=0, verbose=0)
    assert h.history["loss"][-1] < 0.5 * h.history["loss"][0]
    # a window as long as the sequence is plain training
    a, b = model(), model()
    for mm, bp in ((a, None), (b, T)):
        mm.compile(loss="cross_entropy", optimizer=fr.optim.SGD(lr=0.1))
        mm.fit(X, Y, epochs=2, batch_size=4, bptt=bp, seed=0, verbose=0)
    for (_, p, _), (_, q, _) in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p, q)


def test_step_and_generate():
    rng = np.random.default_rng(1)
    m = fr.Sequential([fr.Embedding(9, 5), fr.LSTM(5, 7, batch_first=True, num_layers=2),
                       fr.Dense(7, 9)], seed=0)
    X = rng.integers(0, 9, size=(3, 6))
    full = m(X)
    states = None
    for t in range(6):
        out, states = m.step(X[:, t], states)
        np.testing.assert_allclose(out, full[:, t], rtol=1e-5, atol=1e-6)
    g1 = m.generate([1, 2, 3], 20, temperature=0.8, top_k=4, seed=5)
    g2 = m.generate([1, 2, 3], 20, temperature=0.8, top_k=4, seed=5)
    np.testing.assert_array_equal(g1, g2)
    assert g1.shape == (20,) and g1.min() >= 0 and g1.max() < 9
    greedy = m.generate([4], 5, top_k=1, seed=0)
    ids, st = [4], None
    for _ in range(5):
        out, st = m.step(np.array([ids[-1]]), st)
        ids.append(int(out[0].argmax()))
    np.testing.assert_array_equal(greedy, ids[1:])
    with pytest.raises(ValueError, match="temperature"):
        m.generate([1], 3, temperature=0)


def test_regression_and_ragged_lists():
    rng = np.random.default_rng(2)
    seqs = [rng.standard_normal((int(rng.integers(2, 9)), 3)) for _ in range(60)]
    target = np.array([s[:, 0].sum() for s in seqs])[:, None]
    m = fr.Sequential([fr.GRU(3, 12, batch_first=True), fr.LastStep(), fr.Dense(12, 1)], seed=0)
    m.compile(loss="mse", optimizer=fr.optim.Adam(lr=0.02), metrics=["mae"])
    h = m.fit(seqs, target, epochs=20, batch_size=10, seed=0, verbose=0)
    assert h.history["loss"][-1] < 0.5 * h.history["loss"][0]
    assert m.predict(seqs).shape == (60, 1)
    X, L = fr.pad_sequences(seqs)
    np.testing.assert_array_equal(m.predict(seqs), m.predict(X, lengths=L))


def test_ctc_model_learns():
    rng = np.random.default_rng(3)
    n, T, C = 24, 12, 4
    labels = [rng.integers(1, C, size=int(rng.integers(1, 4))) for _ in range(n)]
    X = np.zeros((n, T, C), np.float32)
    for i, lab in enumerate(labels):  # each label shown for 3 frames
        for j, c in enumerate(lab):
            X[i, 3 * j:3 * j + 2, c] = 1
    X += 0.1 * rng.standard_normal(X.shape).astype(np.float32)
    m = fr.Sequential([fr.LSTM(C, 16, batch_first=True, bidirectional=True),
                       fr.Dense(32, C)], seed=0)
    m.compile(loss="ctc", optimizer=fr.optim.Adam(lr=0.03), metrics=["cer"])
    h = m.fit(X, labels, epochs=25, batch_size=8, seed=0, verbose=0)
    assert h.history["loss"][-1] < 0.5 * h.history["loss"][0]
    assert h.history["cer"][-1] < h.history["cer"][0]


def test_summary_and_errors(capsys):
    m = small_model(seed=0)
    text = m.summary()
    assert "total parameters" in text and "AttentionPooling" in text
    assert text in capsys.readouterr().out
    X, y, L = classify_data(n=8)
    with pytest.raises(RuntimeError, match="compile"):
        m.fit(X, y, lengths=L)
    m.compile(loss="cross_entropy", optimizer="adam", metrics=["accuracy"])
    with pytest.raises(ValueError, match="targets"):
        m.fit(X, y[:5], lengths=L, verbose=0)
    with pytest.raises(ValueError, match="lengths"):
        m.fit(X, y, lengths=L[:3], verbose=0)
    with pytest.raises(ValueError, match="unknown metric"):
        m.compile(loss="cross_entropy", metrics=["f1-ish"])
    with pytest.raises(ValueError, match="loss"):
        m.compile(loss="hinge-ish")
    with pytest.raises(TypeError):
        fr.Sequential([fr.Dense(2, 2), "relu"])
    with pytest.raises(ValueError, match="dtype"):
        fr.Sequential([fr.Dense(2, 2), fr.Dense(2, 2, dtype="float64")])
    with pytest.raises(ValueError, match="pooling"):
        fr.Sequential([fr.MeanPooling(), fr.LSTM(2, 2, batch_first=True)])


def test_regularized_layers_train_reproducibly_in_a_model():
    def run(threads):
        fr.set_num_threads(threads)
        try:
            X, y, L = classify_data(n=48)
            m = fr.Sequential([fr.Embedding(12, 6),
                               fr.LayerNormLSTM(6, 8, batch_first=True, zoneout=0.1),
                               fr.GRU(8, 8, batch_first=True, recurrent_dropout=0.2,
                                      bidirectional=True),
                               fr.MeanPooling(), fr.Dense(16, 2)])
            m.compile(loss="cross_entropy", optimizer=fr.optim.Adam(lr=0.01))
            h = m.fit(X, y, lengths=L, epochs=2, batch_size=8, seed=4, verbose=0)
            return [p.tobytes() for _, p, _ in m.parameters()], h.history
        finally:
            fr.set_num_threads(None)
    a, b = run(1), run(2)
    assert a == b
    assert a[1]["loss"][-1] < a[1]["loss"][0]


def test_dropout_stays_on_after_validation_epochs():
    """Regression: evaluating validation_data switched the model to eval mode
    and fit never switched back, so dropout was off from the second epoch on."""
    seen = []

    class SpyDropout(fr.Dropout):
        def forward(self, x, lengths=None):
            seen.append(self.training)
            return super().forward(x, lengths)

    rng = np.random.default_rng(0)
    X = rng.standard_normal((16, 5, 3)).astype(np.float32)
    y = rng.integers(0, 2, size=16)
    m = fr.Sequential([fr.GRU(3, 4, batch_first=True), fr.MeanPooling(), SpyDropout(0.5),
                       fr.Dense(4, 2)], seed=0)
    m.compile(loss="cross_entropy", optimizer="sgd")
    m.fit(X, y, epochs=3, batch_size=8, validation_data=(X, y), verbose=0, seed=0)
    assert len(seen) == 6 and all(seen)
    assert not m.training  # fit leaves the model in inference mode, as before
    m.train()
    m.predict(X)
    m.evaluate(X, y)
    assert m.training and all(l.training for l in m.layers)  # predict/evaluate keep the mode
