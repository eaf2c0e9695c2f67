"""The CTC speech example (fastrnn/examples/digits_ctc.py) and its audio
helpers (fastrnn/examples/_audio.py): MFCC pieces against their formulas,
and a --quick smoke run (skipped when espeak-ng is not installed) whose
training loss must fall and whose digit error rate must beat the always-blank
output's 1.0."""
import json

import numpy as np
import pytest
import scipy.fft

from fastrnn.examples import _audio


def test_mel_filterbank_triangles():
    sr, nfft, M = 16000, 512, 26
    fb = _audio.mel_filterbank(M, nfft, sr, fmin=0.0)
    assert fb.shape == (M, nfft // 2 + 1)
    assert np.all(fb >= 0) and np.all(fb <= 1)
    # centres rise with m, each filter is one triangle (rises then falls)
    peaks = fb.argmax(axis=1)
    assert np.all(np.diff(peaks) > 0)
    for row in fb:
        nz = np.flatnonzero(row)
        d = np.diff(row[nz[0]:nz[-1] + 1])
        assert np.all(np.diff(np.sign(d[d != 0])) <= 0)  # never rises after falling
    np.testing.assert_allclose(_audio.mel_to_hz(_audio.hz_to_mel([0, 700, 4000])),
                               [0, 700, 4000], atol=1e-9)


def test_mfcc_matches_the_recipe():
    """mfcc() equals the recipe written out frame by frame with a loop."""
    rng = np.random.default_rng(0)
    sr = 8000
    s = rng.standard_normal(1234)
    got = _audio.mfcc(s, sr, n_mfcc=13, n_mels=20, fmin=0.0)
    N, H, nfft = 200, 80, 256
    e = np.append(s[0], s[1:] - 0.97 * s[:-1])
    n_frames = 1 + int(np.ceil((len(e) - N) / H))
    e = np.pad(e, (0, (n_frames - 1) * H + N - len(e)))
    w = 0.54 - 0.46 * np.cos(2 * np.pi * np.arange(N) / (N - 1))
    fb = _audio.mel_filterbank(20, nfft, sr, fmin=0.0)
    rows = []
    for t in range(n_frames):
        spec = np.fft.fft(e[t * H:t * H + N] * w, nfft)[:nfft // 2 + 1]
        logmel = np.log(fb @ (np.abs(spec) ** 2 / nfft))
        k = np.arange(20)
        dct = np.array([np.sum(logmel * np.cos(np.pi * q * (2 * k + 1) / 40)) for q in range(13)])
        dct *= np.sqrt(2 / 20)
        dct[0] /= np.sqrt(2)
        rows.append(dct)
    assert got.shape == (n_frames, 13)
    np.testing.assert_allclose(got, np.array(rows), rtol=1e-9, atol=1e-9)


def test_tone_energy_lands_in_its_mel_band():
    sr, f0 = 16000, 1000.0
    t = np.arange(sr // 2) / sr
    s = np.sin(2 * np.pi * f0 * t)
    c = _audio.mfcc(s, sr, n_mfcc=26, n_mels=26, preemphasis=0.0)
    logmel = scipy.fft.idct(c, norm="ortho", axis=1)
    fb = _audio.mel_filterbank(26, 512, sr, fmin=20.0)
    assert np.all(logmel.argmax(axis=1) == fb[:, int(f0 * 512 / sr)].argmax())


def test_stack_frames():
    x = np.arange(14, dtype=float).reshape(7, 2)
    y = _audio.stack_frames(x, 3)
    assert y.shape == (3, 6)
    np.testing.assert_array_equal(y[0], [0, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(y[2], [12, 13, 12, 13, 12, 13])


def test_speaker_split_holds_out_whole_speakers():
    speakers = [f"a{i % 10}" for i in range(100)]
    train, test = _audio.speaker_split(speakers, 0.2, seed=1)
    assert len(train) + len(test) == 100 and len(test) == 20
    assert not {speakers[i] for i in train} & {speakers[i] for i in test}


def test_quick_run_learns(tmp_path):
    if not _audio.have_espeak():
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    from fastrnn.examples import digits_ctc
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ["--quick", "--out", str(out), "--cache", str(cache), "--verbose", "0",
            "--threads", "1"]
    res = digits_ctc.main(args)["fastrnn"]
    assert res["train_loss_last"] < res["train_loss_first"]
    # beyond the trivial baseline: blank everywhere decodes to nothing (error rate 1.0)
    assert res["cer_beam"] < 0.6 and res["cer_greedy"] < 0.6
    with open(out / "digits_ctc.json") as f:
        saved = json.load(f)
    assert saved["results"]["fastrnn"]["train_loss_last"] == res["train_loss_last"]
    assert list(cache.glob("digits_*.npz"))
    # the second run loads the cached features and trains the same model bit for bit
    again = digits_ctc.main(args)["fastrnn"]
    assert again["train_loss_last"] == res["train_loss_last"]


def test_beam_decode_reads_padded_probabilities_as_probabilities():
    """Sequential.predict() gives CTC probabilities with zero rows at padding;
    ctc_beam_decode must still recognise them as probabilities (it judged
    the zero rows too and took the probabilities for logits)."""
    import fastrnn as fr
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 7, 4)) * 3
    lengths = np.array([7, 4, 2])
    p = np.exp(x) / np.exp(x).sum(-1, keepdims=True)
    p[np.arange(7)[None, :] >= lengths[:, None]] = 0.0
    want = fr.ctc_beam_decode(x, lengths, beam_width=10 ** 6)
    assert fr.ctc_beam_decode(p, lengths, beam_width=10 ** 6) == want
    assert fr.ctc_beam_decode(p, lengths, beam_width=10 ** 6, probs=True) == want


def test_torch_twin_same_start():
    """--compare-torch's torch network starts from fastrnn's initial weights
    (it drew its own before, so the two CERs did not compare like for like):
    the same per-step outputs from the same padded batch."""
    torch = pytest.importorskip("torch")
    import argparse
    from fastrnn.examples import digits_ctc
    args = argparse.Namespace(hidden=8, layers=2, lr=1e-2, clip=5.0, seed=3)
    model = digits_ctc.build_model(args, 6)
    net = digits_ctc.torch_twin(model)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 7, 6)).astype(np.float32)
    L = np.array([7, 4, 2])
    got = model(x, lengths=L)
    with torch.no_grad():
        ref = net(torch.from_numpy(x), torch.from_numpy(L)).numpy()
    for b, n in enumerate(L):  # padded steps: fastrnn zeros, torch its bias
        np.testing.assert_allclose(got[b, :n], ref[b, :n], rtol=2e-4, atol=1e-5)
