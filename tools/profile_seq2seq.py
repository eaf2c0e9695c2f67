"""Where a Seq2Seq training step spends its time: the decoder's GEMMs, the
encoder's C kernels, and the rest (NumPy elementwise work and Python).

    python tools/profile_seq2seq.py [--batches 40] [--batch-size 64]

The G2P example's model (BiLSTM 2x256 encoder, LSTM 512 decoder, general
attention, input feeding) on random CMUdict-shaped words (4-12 letters,
27 graphemes, 39 phones). Wraps fastrnn.seq2seq's GEMM and the encoder's
forward/backward with timers; prints milliseconds per batch and shares.
"""
import argparse
import time

import numpy as np

import fastrnn as fr
import fastrnn.seq2seq as s2s


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    fr.set_num_threads(args.threads)
    spent = {"decoder GEMMs": 0.0, "encoder forward": 0.0, "encoder backward": 0.0}
    gemm = s2s.matmul

    def timed_gemm(*a, **k):
        t = time.perf_counter()
        out = gemm(*a, **k)
        spent["decoder GEMMs"] += time.perf_counter() - t
        return out

    m = fr.Seq2Seq(27, 39, embedding_dim=64, hidden_size=256, num_layers=2,
                   decoder_hidden=512, dropout=0.3, seed=0)
    enc_fwd, enc_bwd = m.encoder.forward, m.encoder.backward

    def wrap(f, key):
        def g(*a, **k):
            t = time.perf_counter()
            out = f(*a, **k)
            spent[key] += time.perf_counter() - t
            return out
        return g

    rng = np.random.default_rng(0)
    n = args.batches * args.batch_size
    src = [rng.integers(0, 27, rng.integers(4, 13)) for _ in range(n)]
    tgt = [rng.integers(0, 39, max(1, len(s) + int(rng.integers(-2, 1)))) for s in src]
    m.compile("adam", lr=1e-3, clip_norm=5.0)
    m.fit(src[:2 * args.batch_size], tgt[:2 * args.batch_size], epochs=1,
          batch_size=args.batch_size, verbose=0)   # warm-up
    s2s.matmul = timed_gemm
    m.encoder.forward, m.encoder.backward = (wrap(enc_fwd, "encoder forward"),
                                             wrap(enc_bwd, "encoder backward"))
    try:
        t = time.perf_counter()
        m.fit(src, tgt, epochs=1, batch_size=args.batch_size, verbose=0)
        total = time.perf_counter() - t
    finally:
        s2s.matmul = gemm
        del m.encoder.forward, m.encoder.backward
    per = 1e3 / args.batches
    print(f"{args.batches} batches of {args.batch_size}, {fr.get_num_threads()} threads: "
          f"{total * per:.1f} ms a batch")
    rest = total - sum(spent.values())
    for k, v in list(spent.items()) + [("the rest (NumPy, Python, optimizer)", rest)]:
        print(f"  {k:38s} {v * per:7.1f} ms  {100 * v / total:5.1f}%")


if __name__ == "__main__":
    main()
