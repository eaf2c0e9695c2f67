"""Fingerprints of fastrnn's results, for "same bits before and after" checks
of changes that must not move a bit (a refactor, a build change).

    PYTHONPATH=/path/to/tree_a python tools/bits_snapshot.py > a.json
    PYTHONPATH=/path/to/tree_b python tools/bits_snapshot.py > b.json
    python tools/bits_snapshot.py --compare a.json b.json

Every case runs through the public API only (so two trees of different
layouts can be compared): recurrent layers' inference, training forward and
backward (every gradient), step(), frozen copies, the cell options,
regularized layers, the model layers, the CTC loss, and fit(seed) of whole
models; float32 and float64, odd sizes, batch 1, lengths, given states, 1 and
2 threads. Each case prints the SHA-256 of its output arrays' bytes.
"""
import hashlib
import json
import sys

import numpy as np


def _digest(arrays):
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _flat(obj):
    if obj is None or isinstance(obj, np.ndarray):
        return [obj]
    if isinstance(obj, dict):
        return [v for k in sorted(obj) for v in _flat(obj[k])]
    if isinstance(obj, (tuple, list)):
        return [v for o in obj for v in _flat(o)]
    return [np.asarray(obj)]


def _layer_cases(fr, out):
    rng = np.random.default_rng(1234)
    specs = []
    for cell in ("LSTM", "GRU", "RNN"):
        for (T, B, I, H) in ((1, 1, 128, 128), (7, 1, 5, 3), (13, 3, 17, 29), (25, 4, 64, 128),
                             (50, 8, 96, 64), (20, 16, 33, 77), (9, 33, 64, 48), (4, 2, 1, 1)):
            specs.append((cell, T, B, I, H))
    for cell, T, B, I, H in specs:
        for dtype in ("float32", "float64"):
            for L, bi in ((1, False), (2, True)):
                for lens_on, st_on in ((False, False), (True, True)):
                    kw = dict(num_layers=L, bidirectional=bi, dtype=dtype, seed=7)
                    layer = getattr(fr, cell)(I, H, **kw)
                    D = 2 if bi else 1
                    x = rng.standard_normal((T, B, I)).astype(dtype)
                    lens = (rng.integers(1, T + 1, B) if lens_on else None)
                    st = None
                    if st_on:
                        h0 = rng.standard_normal((L * D, B, H)).astype(dtype)
                        st = (h0, rng.standard_normal((L * D, B, H)).astype(dtype)) \
                            if cell == "LSTM" else h0
                    name = f"{cell}-T{T}B{B}I{I}H{H}-{dtype}-L{L}{'bi' if bi else ''}" \
                           f"{'-len-state' if lens_on else ''}"
                    for nt in (1, 2):
                        fr.set_num_threads(nt)
                        y, s = layer(x, st, lengths=lens)
                        out[f"{name}-t{nt}-infer"] = _digest(_flat((y, s)))
                        layer.zero_grad()
                        y, s = layer.forward(x, st, lengths=lens)
                        dy = np.cos(np.arange(y.size, dtype=dtype)).reshape(y.shape)
                        dst = None
                        if st_on:
                            dst = tuple(np.ones_like(a) for a in s) if cell == "LSTM" \
                                else np.ones_like(s)
                        dx, ds0 = layer.backward(dy, dst)
                        out[f"{name}-t{nt}-train"] = _digest(_flat((y, s, dx, ds0, layer.grads)))
                        if dtype == "float32" and not bi:
                            fz = layer.freeze()
                            out[f"{name}-t{nt}-frozen"] = _digest(_flat(fz(x, st, lengths=lens)))
                            if not lens_on:
                                s_ = None
                                ys = []
                                for t in range(min(T, 5)):
                                    yt, s_ = layer.step(x[t], s_)
                                    ys.append(yt)
                                out[f"{name}-t{nt}-step"] = _digest(_flat((ys, s_)))
    fr.set_num_threads(None)


def _option_cases(fr, out):
    rng = np.random.default_rng(99)
    for dtype in ("float32", "float64"):
        x = rng.standard_normal((11, 3, 13)).astype(dtype)
        lens = np.array([11, 4, 7])
        layers = {
            "gru-lbr0": fr.GRU(13, 19, dtype=dtype, seed=3, linear_before_reset=False),
            "lstm-clip": fr.LSTM(13, 19, dtype=dtype, seed=3, clip=0.7),
            "gru-clip-bi": fr.GRU(13, 19, dtype=dtype, seed=3, clip=0.5, bidirectional=True),
            "lstm-zoneout": fr.LSTM(13, 19, dtype=dtype, seed=3, zoneout=0.2,
                                    recurrent_dropout=0.3, num_layers=2, dropout=0.25),
            "gru-zoneout": fr.GRU(13, 19, dtype=dtype, seed=3, zoneout=0.1, bidirectional=True),
            "lnlstm": fr.LayerNormLSTM(13, 19, dtype=dtype, seed=3, zoneout=0.1),
            "lstm-dropout": fr.LSTM(13, 19, dtype=dtype, seed=3, num_layers=3, dropout=0.3),
        }
        for name, layer in layers.items():
            y, s = layer(x, lengths=lens)
            out[f"opt-{name}-{dtype}-infer"] = _digest(_flat((y, s)))
            y, s = layer.forward(x, lengths=lens)
            dx, _ = layer.backward(np.sin(y))
            out[f"opt-{name}-{dtype}-train"] = _digest(_flat((y, s, dx, layer.grads)))


def _model_cases(fr, out):
    rng = np.random.default_rng(5)
    N, T, V = 48, 15, 40
    ids = rng.integers(1, V, (N, T))
    lens = rng.integers(3, T + 1, N)
    labels = rng.integers(0, 3, N)
    for nt in (1, 2):
        fr.set_num_threads(nt)
        m = fr.Sequential([fr.Embedding(V, 12, padding_idx=0),
                           fr.LSTM(12, 16, batch_first=True, bidirectional=True),
                           fr.AttentionPooling(32), fr.Dense(32, 3)])
        m.compile(loss="cross_entropy", optimizer=fr.optim.Adam(lr=1e-2), clip_norm=1.0,
                  metrics=["accuracy"])
        h = m.fit(ids, labels, lengths=lens, epochs=2, batch_size=16, seed=11, verbose=0)
        out[f"fit-attn-t{nt}"] = _digest(_flat((m.state_dict(), h.history["loss"])))
        out[f"fit-attn-t{nt}-predict"] = _digest(_flat(m.predict(ids, lengths=lens)))
        m2 = fr.Sequential([fr.GRU(6, 10, batch_first=True, num_layers=2, dropout=0.2),
                            fr.Dense(10, 8, activation="tanh"), fr.Dropout(0.1),
                            fr.MeanPooling(), fr.Dense(8, 1)])
        m2.compile(loss="mse", optimizer="sgd")
        xf = rng.standard_normal((N, T, 6)).astype(np.float32)
        yf = rng.standard_normal((N, 1)).astype(np.float32)
        m2.fit(xf, yf, lengths=lens, epochs=2, batch_size=10, seed=4, verbose=0)
        out[f"fit-gru-mean-t{nt}"] = _digest(_flat(m2.state_dict()))
        m3 = fr.Sequential([fr.Embedding(V, 8), fr.LSTM(8, 12, batch_first=True),
                            fr.Dense(12, V)])
        m3.compile(loss="cross_entropy", optimizer=fr.optim.RMSprop(lr=1e-2))
        m3.fit(ids[:, :-1], ids[:, 1:], epochs=1, batch_size=8, seed=2, verbose=0, bptt=5)
        out[f"fit-lm-bptt-t{nt}"] = _digest(_flat(m3.state_dict()))
        out[f"generate-t{nt}"] = _digest(_flat(m3.generate([1, 2, 3], 6, seed=1)))
        m4 = fr.Sequential([fr.RNN(5, 9, batch_first=True), fr.MaxPooling(), fr.Dense(9, 2)])
        m4.compile(loss="cross_entropy", optimizer=fr.optim.SGD(lr=0.1, momentum=0.9))
        xg = rng.standard_normal((20, 7, 5))
        m4.fit(xg, rng.integers(0, 2, 20), epochs=2, batch_size=6, seed=8, verbose=0)
        out[f"fit-rnn-max-t{nt}"] = _digest(_flat(m4.state_dict()))
        # CTC
        m5 = fr.Sequential([fr.GRU(6, 10, batch_first=True, bidirectional=True),
                            fr.Dense(20, 5)])
        m5.compile(loss="ctc", optimizer="adam")
        tg = [list(rng.integers(1, 5, rng.integers(1, 4))) for _ in range(N)]
        m5.fit(xf, tg, lengths=np.maximum(lens, 8), epochs=1, batch_size=12, seed=3, verbose=0)
        out[f"fit-ctc-t{nt}"] = _digest(_flat(m5.state_dict()))
    fr.set_num_threads(None)


def main(argv):
    if argv[:1] == ["--compare"]:
        a, b = (json.load(open(p)) for p in argv[1:3])
        diff = sorted(k for k in a if b.get(k) != a[k])
        missing = sorted(set(a) ^ set(b))
        print(f"{len(a)} cases; {len(diff)} differ; {len(missing)} in one file only")
        for k in diff[:50]:
            print("  differs:", k)
        for k in missing[:20]:
            print("  only in one:", k)
        return 1 if diff or missing else 0
    import fastrnn as fr
    out = {}
    _layer_cases(fr, out)
    _option_cases(fr, out)
    _model_cases(fr, out)
    json.dump(out, sys.stdout, indent=0, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
