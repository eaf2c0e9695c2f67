"""Audio for the speech examples: MFCC features in NumPy/SciPy, and a spoken
digit-string corpus synthesized with espeak-ng (Debian package `espeak-ng`),
cached as features in an .npz so re-runs skip synthesis.

MFCC of a signal s sampled at sr Hz (the usual HTK/Kaldi-style recipe):
  pre-emphasis   s'[n] = s[n] - a s[n-1]                      (a = 0.97)
  framing        frames of N = 25 ms every H = 10 ms (the tail padded with 0)
  window         x_t[n] = s'[t H + n] w[n],  w Hamming: 0.54 - 0.46 cos(2 pi n / (N-1))
  power          P_t[k] = |FFT_nfft(x_t)[k]|^2 / nfft,  k = 0..nfft/2,  nfft = 2^ceil(log2 N)
  mel            mel(f) = 2595 log10(1 + f / 700); M triangular filters H_m with
                 centres equally spaced in mel between fmin and fmax
                 E_t[m] = log(max(sum_k H_m[k] P_t[k], eps))
  cepstrum       c_t = DCT-II(E_t, orthonormal)[:n_mfcc]      (scipy.fft.dct)

The corpus: strings of 2-6 digits read by espeak-ng ("3 1 4" is read "three
one four") with an English accent voice (en, en-us, en-gb-x-rp, ...), a
voice variant (m1..m7, f1..f5), a speaking rate (words per minute), a pitch
and a word gap, all drawn at random, plus white noise at a random SNR. Label
of digit d is d + 1 (0 is the CTC blank). A "speaker" is an (accent, variant)
pair; the test set holds out a random fifth of the speakers, so every test
utterance is spoken by a voice/variant combination never heard in training.
"""
import concurrent.futures
import hashlib
import json
import os
import shutil
import subprocess
import tempfile

import numpy as np
import scipy.fft
import scipy.io.wavfile

ACCENTS = ("en", "en-us", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc",
           "en-gb-x-gbclan", "en-gb-x-gbcwmd")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
CORPUS_VERSION = 1  # bump when generation or features change (invalidates caches)


# ------------------------------------------------------------------ features
def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_mels, nfft, sr, fmin=0.0, fmax=None):
    """(n_mels, nfft // 2 + 1) triangular filters, peak 1, on the FFT bins."""
    fmax = sr / 2 if fmax is None else fmax
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    freqs = np.arange(nfft // 2 + 1) * sr / nfft
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None, :] - lo) / (mid - lo)
    down = (hi - freqs[None, :]) / (hi - mid)
    return np.maximum(0.0, np.minimum(up, down))


def mfcc(signal, sr, n_mfcc=13, n_mels=26, frame_ms=25.0, hop_ms=10.0,
         preemphasis=0.97, fmin=20.0, fmax=None):
    """(frames, n_mfcc) float64 MFCCs of a 1-D signal (see the module docstring)."""
    s = np.asarray(signal, dtype=np.float64).ravel()
    s = np.append(s[:1], s[1:] - preemphasis * s[:-1])
    N = int(round(sr * frame_ms / 1000.0))
    H = int(round(sr * hop_ms / 1000.0))
    n_frames = 1 + max(0, int(np.ceil((len(s) - N) / H)))
    s = np.pad(s, (0, max(0, (n_frames - 1) * H + N - len(s))))
    idx = np.arange(N)[None, :] + H * np.arange(n_frames)[:, None]
    frames = s[idx] * np.hamming(N)
    nfft = 1 << (N - 1).bit_length()
    power = np.abs(np.fft.rfft(frames, nfft)) ** 2 / nfft
    energies = power @ mel_filterbank(n_mels, nfft, sr, fmin, fmax).T
    logmel = np.log(np.maximum(energies, np.finfo(np.float64).eps))
    return scipy.fft.dct(logmel, type=2, axis=1, norm="ortho")[:, :n_mfcc]


def stack_frames(feats, k):
    """Concatenate each k consecutive frames into one step, every k frames:
    (T, F) -> (ceil(T / k), k F), the tail padded by repeating the last frame.
    Shorter sequences make the recurrent layers k times cheaper."""
    T, F = feats.shape
    n = -(-T // k)
    pad = np.concatenate([feats, np.repeat(feats[-1:], n * k - T, axis=0)])
    return pad.reshape(n, k * F)


# ------------------------------------------------------------------ synthesis
def have_espeak():
    return shutil.which("espeak-ng") is not None


def speak(text, path, voice="en", speed=175, pitch=50, gap=0):
    """Write espeak-ng's reading of `text` to the WAV file `path`."""
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(int(speed)), "-p", str(int(pitch)),
                    "-g", str(int(gap)), "-w", path, text],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def read_wav(path):
    """(signal float64 in [-1, 1], sample rate) of a 16-bit PCM WAV."""
    sr, x = scipy.io.wavfile.read(path)
    return x.astype(np.float64) / 32768.0, sr


def _plan(n, seed, min_digits, max_digits):
    """The random choices for n utterances: one dict each."""
    rng = np.random.default_rng(seed)
    plan = []
    for _ in range(n):
        digits = rng.integers(0, 10, size=rng.integers(min_digits, max_digits + 1))
        plan.append({"digits": [int(d) for d in digits],
                     "accent": ACCENTS[rng.integers(len(ACCENTS))],
                     "variant": VARIANTS[rng.integers(len(VARIANTS))],
                     "speed": int(rng.integers(130, 261)),
                     "pitch": int(rng.integers(25, 76)),
                     "gap": int(rng.integers(0, 4)),
                     "snr_db": float(rng.uniform(15, 40)),
                     "noise_seed": int(rng.integers(2**31))})
    return plan


def _features(u, folder, i):
    path = os.path.join(folder, f"u{i}.wav")
    speak(" ".join(str(d) for d in u["digits"]), path,
          voice=f"{u['accent']}+{u['variant']}", speed=u["speed"], pitch=u["pitch"],
          gap=u["gap"])
    s, sr = read_wav(path)
    os.remove(path)
    noise = np.random.default_rng(u["noise_seed"]).standard_normal(len(s))
    s = s + noise * np.sqrt(np.mean(s ** 2) / 10 ** (u["snr_db"] / 10))
    return mfcc(s, sr).astype(np.float32)


def digit_corpus(n, seed=0, cache=None, min_digits=2, max_digits=6, workers=4,
                 verbose=True):
    """n synthesized utterances: (features list of (T_i, 13) float32 MFCCs,
    labels list of int arrays (digit + 1), speakers list of 'accent+variant').
    Loaded from cache/digits_<settings>_<n>.npz (or the first n of a larger
    such corpus) when there, else synthesized (espeak-ng in `workers` threads)
    and saved there."""
    # the plan draws utterance after utterance, so a corpus of n is the first
    # n of any larger one with the same settings: a larger cache serves too
    key = json.dumps([CORPUS_VERSION, seed, min_digits, max_digits, ACCENTS, VARIANTS])
    stem = f"digits_{hashlib.sha1(key.encode()).hexdigest()[:10]}_"
    path = None if cache is None else os.path.join(cache, f"{stem}{n}.npz")
    found = []
    if cache is not None and os.path.isdir(cache):
        for name in os.listdir(cache):
            size = name[len(stem):-len(".npz")]
            if name.startswith(stem) and name.endswith(".npz") and size.isdigit() \
                    and int(size) >= n:
                found.append((int(size), os.path.join(cache, name)))
    if found:
        with np.load(min(found)[1], allow_pickle=False) as z:
            offs, lab_offs = z["offsets"][:n + 1], z["label_offsets"][:n + 1]
            feats = [z["features"][a:b] for a, b in zip(offs[:-1], offs[1:])]
            labels = [z["labels"][a:b] for a, b in zip(lab_offs[:-1], lab_offs[1:])]
            return feats, labels, [str(s) for s in z["speakers"][:n]]
    if not have_espeak():
        raise SystemExit("this example synthesizes speech with espeak-ng: "
                         "apt-get install espeak-ng")
    plan = _plan(n, seed, min_digits, max_digits)
    if verbose:
        print(f"synthesizing {n} utterances with espeak-ng ({workers} workers)...", flush=True)
    with tempfile.TemporaryDirectory() as tmp, \
            concurrent.futures.ThreadPoolExecutor(max(1, workers)) as ex:
        feats = list(ex.map(lambda a: _features(a[1], tmp, a[0]), enumerate(plan)))
    labels = [np.array(u["digits"], np.int64) + 1 for u in plan]
    speakers = [f"{u['accent']}+{u['variant']}" for u in plan]
    if path is not None:
        os.makedirs(cache, exist_ok=True)
        tmp_path = path + ".tmp.npz"
        np.savez_compressed(
            tmp_path, features=np.concatenate(feats),
            offsets=np.cumsum([0] + [len(f) for f in feats]),
            labels=np.concatenate(labels),
            label_offsets=np.cumsum([0] + [len(l) for l in labels]),
            speakers=np.array(speakers))
        os.replace(tmp_path, path)
    return feats, labels, speakers


def speaker_split(speakers, test_fraction=0.2, seed=0):
    """(train indices, test indices): a random test_fraction of the distinct
    speakers (accent+variant pairs) is held out for testing."""
    names = sorted(set(speakers))
    rng = np.random.default_rng(seed)
    n_test = max(1, int(round(test_fraction * len(names))))
    held = set(rng.choice(names, size=n_test, replace=False).tolist())
    test = np.array([i for i, s in enumerate(speakers) if s in held], dtype=np.intp)
    train = np.array([i for i, s in enumerate(speakers) if s not in held], dtype=np.intp)
    return train, test
