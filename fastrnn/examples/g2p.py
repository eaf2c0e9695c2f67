"""Grapheme-to-phoneme conversion on the standard CMUdict split with fr.Seq2Seq.

Data: ../shared/data/g2p-cmudict/ (g014b2b.train: 113,438 pronunciations of
106,837 words; g014b2b.ref: 12,000 test words with every reference). A seeded
3% of the training words is held out as a dev set (variants together).

    letters (B, S) -> Embedding(E) -> BiLSTM(H) per direction, lengths
    -> bridge: h0 = tanh(W [h_fwd; h_bwd]), c0 = W' [c_fwd; c_bwd]
    -> LSTM decoder (Hd), input feeding, Luong "general" attention
       a_t = softmax_s(h_t W_a enc_s), masked past each word's length
       h~_t = tanh(W_c [sum_s a_ts enc_s; h_t]) -> Dense -> phones + <eos>

Training: Adam, teacher forcing, dropout, the learning rate halved when the
dev WER stops improving; the weights of the best dev score (greedy WER, then
PER) are kept.
Decoding: greedy and beam search. Scoring as the literature does: a word is
right if it equals any reference (WER); PER = edits to the closest
reference / its length. Baseline: each letter's most frequent phone (learnt
from words with as many letters as phones), which `--quick` must beat.

    python -m fastrnn.examples.g2p [--quick] [--time-limit MIN] [--beam 5]
    python -m fastrnn.examples.g2p --anneal-after 19 --anneal-lr 6.25e-5 \
        --average-last 8 --time-limit 118.5
    python -m fastrnn.examples.g2p --resume OUT/g2p.fastrnn --start-epoch N \
        --lr 6.25e-5 --patience 100 --average-last 6 --time-limit MIN

--anneal-after N goes on after epoch N from the best dev epoch's weights
at the constant rate --anneal-lr; --average-last K also tries the means of
the last 2..K epochs' weights (checkpoint averaging; with --anneal-after,
epochs of that phase only), each kept only when its dev score is better
than the best so far. --resume goes on training a saved model with its
optimizer state (an interrupted run, or a second phase).

Writes OUT/g2p.json (results), OUT/g2p_attention.svg (attention of a few
test words) and OUT/g2p.fastrnn (the model, fr.load reads it).
"""
import collections
import json
import os
import time

import numpy as np

import fastrnn as fr
from fastrnn.examples import _common as C
from fastrnn.examples import _g2p_data as G

PLOT_WORDS = ("PHOENIX", "KNIGHTS", "THOUGHTFUL", "XYLOPHONE", "QUEUE", "ASPHALT")


def letter_baseline(train, phones):
    """Each letter's most frequent phone, learnt from the words whose letter
    count equals their phone count (aligned one to one)."""
    counts = collections.defaultdict(collections.Counter)
    for w, ph in train:
        if len(w) == len(ph):
            for c, p in zip(w, ph):
                counts[c][p] += 1
    table = {c: n.most_common(1)[0][0] for c, n in counts.items()}
    return lambda word: tuple(table[c] for c in word if c in table)


def build(args, n_src, n_tgt, seed):
    return fr.Seq2Seq(n_src, n_tgt, embedding_dim=args.embedding, hidden_size=args.hidden,
                      num_layers=args.layers, bidirectional=True, cell="lstm",
                      decoder_hidden=args.decoder_hidden, decoder_layers=1,
                      attention=args.attention, input_feeding=True, bridge="dense",
                      dropout=args.dropout, seed=seed)


def decode(model, words, gvoc, pvoc, beam, batch_size=256, attention=False):
    """Phone tuples (and attention matrices) of words."""
    src = [gvoc.encode(w) for w in words]
    out = model.predict(src, beam_size=beam, batch_size=batch_size,
                        return_attention=attention)
    hyps, att = out if attention else (out, None)
    phones = [pvoc.decode(h) for h in hyps]
    return (phones, att) if attention else phones


def resume(path, n_src, n_tgt, lr):
    """A saved Seq2Seq for these vocabularies, compiled (its saved optimizer if any)."""
    model = fr.load(path)
    if not isinstance(model, fr.Seq2Seq):
        raise SystemExit(f"--resume {path}: expected a saved fr.Seq2Seq, got "
                         f"{type(model).__name__}")
    if (model.src_vocab, model.tgt_vocab) != (n_src, n_tgt):
        raise SystemExit(f"--resume {path}: vocabularies {model.src_vocab} -> "
                         f"{model.tgt_vocab}, this data has {n_src} -> {n_tgt}")
    if getattr(model, "optimizer", None) is None:
        model.compile("adam", lr=1e-3 if lr is None else lr, clip_norm=5.0)
    return model


def average_states(states):
    """The element-wise mean of parameter dicts with the same keys and shapes."""
    return {k: np.mean([s[k] for s in states], axis=0).astype(states[0][k].dtype)
            for k in states[0]}


def _key(s):
    """How dev scores rank: the lower WER first, then the lower PER (ties in WER
    are common: one word of the 3,205 moves it by 0.03)."""
    return (s.wer, s.per)


def train(model, args, src, tgt, dev, gvoc, pvoc, budget, checkpoint=None, resumed=False):
    """Epochs until args.epochs or the time budget: keep the best dev epoch's weights.

    resumed: the model comes from --resume with its optimizer (state and lr kept
    unless --lr is given), and its own weights are the first candidate.
    With args.anneal_after N, the epochs after the N-th go on from the best dev
    epoch's weights at the constant rate args.anneal_lr (no halving).
    With args.average_last K, the means of the last k = 2..K epochs' weights
    (with annealing: epochs of that phase only) are candidates too, each kept
    only if its dev score (WER, then PER) is better than the best so far.
    """
    if not resumed:
        model.compile("adam", lr=args.lr, clip_norm=5.0)
    elif args.lr is not None:
        model.optimizer.lr = args.lr
    best, best_state, bad, log = None, None, 0, []
    start = time.perf_counter()
    dev_words = [w for w, _ in dev]
    dev_refs = [r for _, r in dev]

    def dev_score():
        return G.score(decode(model, dev_words, gvoc, pvoc, 1), dev_refs)

    if resumed:
        s = dev_score()
        best, best_state = _key(s), model.state_dict()
        log.append(dict(epoch=args.start_epoch, loss=None, dev_wer=s.wer, dev_per=s.per,
                        lr=model.optimizer.lr, fit_seconds=0.0, resumed_from=args.resume))
        if args.verbose:
            print(f"resumed at epoch {args.start_epoch}: dev WER {s.wer:.2f}  PER {s.per:.2f}  "
                  f"lr {model.optimizer.lr:.2e}", flush=True)
    recent = collections.deque(maxlen=max(args.average_last, 1))
    annealing = False
    for epoch in range(args.start_epoch, args.start_epoch + args.epochs):
        t0 = time.perf_counter()
        h = model.fit(src, tgt, epochs=1, batch_size=args.batch_size, seed=args.seed + epoch,
                      verbose=0)
        fit_s = time.perf_counter() - t0
        s = dev_score()
        log.append(dict(epoch=epoch + 1, loss=h["loss"][-1], dev_wer=s.wer, dev_per=s.per,
                        lr=model.optimizer.lr, fit_seconds=fit_s))
        if args.verbose:
            print(f"epoch {epoch + 1}: loss {h['loss'][-1]:.4f}  dev WER {s.wer:.2f}  "
                  f"PER {s.per:.2f}  lr {model.optimizer.lr:.2e}  fit {fit_s:.0f} s", flush=True)
        if args.average_last > 1 and (annealing or not args.anneal_after):
            recent.append(model.state_dict())
        if best is None or _key(s) < best:
            best, best_state, bad = _key(s), model.state_dict(), 0
            if checkpoint:   # the best weights so far survive an interrupted run
                model.save(checkpoint, include_optimizer=False)
        elif not annealing:
            bad += 1
            if bad >= args.patience:
                model.optimizer.lr = model.optimizer.lr * 0.5
                bad = 0
        if args.anneal_after and epoch + 1 == args.anneal_after:
            annealing = True
            model.load_state_dict(best_state)
            model.optimizer.lr = args.anneal_lr
            log.append(dict(epoch=f"anneal from dev {best[0]:.2f} / {best[1]:.2f}", loss=None,
                            dev_wer=best[0], dev_per=best[1], lr=args.anneal_lr,
                            fit_seconds=0.0))
            if args.verbose:
                print(f"after epoch {epoch + 1}: on from the best dev epoch's weights at a "
                      f"constant lr {args.anneal_lr:.2e}", flush=True)
        spent = time.perf_counter() - start
        per_epoch = spent / sum(e["loss"] is not None for e in log)
        if spent + per_epoch > budget:
            break
    if len(recent) > 1:
        last_state, states = model.state_dict(), list(recent)
        for k in range(2, len(states) + 1):
            model.load_state_dict(average_states(states[-k:]))
            s = dev_score()
            log.append(dict(epoch=f"mean of the last {k}", loss=None, dev_wer=s.wer,
                            dev_per=s.per, lr=None, fit_seconds=0.0))
            if args.verbose:
                print(f"mean of the last {k} epochs: dev WER {s.wer:.2f}  PER {s.per:.2f}",
                      flush=True)
            if _key(s) < best:
                best, best_state = _key(s), model.state_dict()
                if checkpoint:
                    model.save(checkpoint, include_optimizer=False)
        model.load_state_dict(last_state)
    model.load_state_dict(best_state)
    return log, time.perf_counter() - start


def compare_torch(args, gvoc, pvoc, src, tgt):
    """Fit time of one pass over the same words, same batches, in fastrnn and in
    the same model in PyTorch from the same initial weights (Adam, clipping)."""
    torch = C.need_torch()
    from fastrnn.examples import _seq2seq_torch
    C.pin_threads(args.threads)
    n = min(len(src), args.torch_words)
    src, tgt = src[:n], tgt[:n]
    model = build(args, len(gvoc.symbols), len(pvoc.symbols), args.seed)
    cfg = {k: v for k, v in model.get_config().items() if k not in ("dtype", "seed")}
    net = _seq2seq_torch.TorchSeq2Seq(**cfg)
    net.load_params(model.state_dict())
    net.train()
    lr = 1e-3 if args.lr is None else args.lr
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    model.compile("adam", lr=lr, clip_norm=5.0)
    lengths = np.array([len(s) for s in src])
    batches = model._batches(n, lengths, args.batch_size, None)  # fit's order without shuffle
    tensors = []
    for idx in batches:
        s, ls, yin, y, ly = model._batch([src[i] for i in idx], [tgt[i] for i in idx])
        tensors.append(tuple(torch.from_numpy(a) for a in (s, ls, yin, y, ly)))
    C.warm_up(C.fit_copy(model, src[:2 * args.batch_size], tgt[:2 * args.batch_size],
                         epochs=1, batch_size=args.batch_size, shuffle=False))
    with C.Timer() as t_fr:
        model.fit(src, tgt, epochs=1, batch_size=args.batch_size, shuffle=False, verbose=0)
    with C.Timer() as t_torch:
        for s, ls, yin, y, ly in tensors:
            opt.zero_grad()
            loss = net.loss(net(s, ls, yin), y, ly)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
    return {"words": n, "fastrnn_fit_s": t_fr.seconds, "torch_fit_s": t_torch.seconds,
            "speedup": t_torch.seconds / t_fr.seconds}


def main(argv=None):
    p = C.parser(__doc__.splitlines()[0], epochs=60, batch_size=64, threads=2)
    p.add_argument("--data", default=None, help="folder of the g014b2b files")
    p.add_argument("--time-limit", type=float, default=105.0,
                   help="minutes of training (the epoch that would pass it is not started)")
    p.add_argument("--embedding", type=int, default=64)
    p.add_argument("--hidden", type=int, default=256, help="encoder units per direction")
    p.add_argument("--layers", type=int, default=2, help="encoder layers")
    p.add_argument("--decoder-hidden", type=int, default=512)
    p.add_argument("--attention", default="general", choices=("general", "dot", "bahdanau"))
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--lr", type=float, default=None,
                   help="Adam's learning rate (1e-3; with --resume: the saved one)")
    p.add_argument("--patience", type=int, default=1,
                   help="epochs without a better dev WER before the lr is halved")
    p.add_argument("--average-last", type=int, default=0, metavar="K",
                   help="also try the mean of the last K epochs' weights (kept if its "
                        "dev WER is lower)")
    p.add_argument("--anneal-after", type=int, default=0, metavar="N",
                   help="after epoch N: go on from the best dev epoch's weights at the "
                        "constant --anneal-lr (no halving; --average-last then averages "
                        "that phase's epochs)")
    p.add_argument("--anneal-lr", type=float, default=6.25e-5)
    p.add_argument("--resume", default=None, metavar="PATH",
                   help="go on training a saved g2p model (its optimizer state included)")
    p.add_argument("--start-epoch", type=int, default=0,
                   help="with --resume: epochs already done (numbering, shuffle seeds)")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--dev-fraction", type=float, default=0.03)
    p.add_argument("--torch-words", type=int, default=20000,
                   help="--compare-torch: words of the timed pass (both engines)")
    args = p.parse_args(argv)
    if args.epochs < 1 and not args.compare_torch:
        p.error("--epochs: at least 1 (0 only with --compare-torch, to time the engines)")
    if args.average_last < 0:
        p.error("--average-last: expected 0 (off) or a count of epochs")
    if args.anneal_after < 0 or (args.anneal_after and args.anneal_after <= args.start_epoch):
        p.error("--anneal-after: 0 (off) or an epoch number past --start-epoch")
    if not args.anneal_lr > 0:
        p.error("--anneal-lr: expected a learning rate > 0")
    if args.start_epoch < 0 or (args.start_epoch and not args.resume):
        p.error("--start-epoch: a count >= 0, and only with --resume")
    if args.quick:
        args.epochs, args.hidden, args.decoder_hidden = min(args.epochs, 12), 48, 96
        args.layers, args.embedding, args.dropout = 1, 32, 0.0
        args.lr, args.time_limit = 5e-3, min(args.time_limit, 0.6)
        args.torch_words = min(args.torch_words, 1000)
    if args.lr is None and not args.resume:
        args.lr = 1e-3
    C.pin_threads(args.threads)
    pairs, test = G.load_split(args.data)
    train_pairs, dev = G.dev_split(pairs, fraction=args.dev_fraction, seed=args.seed)
    gvoc, pvoc = G.vocabs(pairs)
    if args.quick:
        rng = np.random.default_rng(args.seed)
        train_pairs = [train_pairs[i] for i in rng.choice(len(train_pairs), 6000, False)]
        dev = dev[:300]
        test = [test[i] for i in rng.choice(len(test), 1000, False)]
    src = [gvoc.encode(w) for w, _ in train_pairs]
    tgt = [pvoc.encode(ph, word=w) for w, ph in train_pairs]
    if args.compare_torch:
        got = compare_torch(args, gvoc, pvoc, src, tgt)
        print(f"fit of {got['words']} words, same batches: fastrnn {got['fastrnn_fit_s']:.1f} s, "
              f"torch {got['torch_fit_s']:.1f} s ({got['speedup']:.2f}x)", flush=True)
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "g2p_torch.json"), "w") as f:
            json.dump(dict(got, threads=args.threads), f, indent=1)
        if args.epochs == 0:
            return got
    if args.resume:
        model = resume(args.resume, len(gvoc.symbols), len(pvoc.symbols), args.lr)
    else:
        model = build(args, len(gvoc.symbols), len(pvoc.symbols), args.seed)
    print(f"g2p: {len(train_pairs)} training pronunciations, {len(dev)} dev words, "
          f"{len(test)} test words; {sum(p.size for p in model.params.values()):,} "
          f"parameters; {fr.get_num_threads()} threads", flush=True)
    os.makedirs(args.out, exist_ok=True)
    log, fit_s = train(model, args, src, tgt, dev, gvoc, pvoc, args.time_limit * 60,
                       checkpoint=os.path.join(args.out, "g2p_best.fastrnn"),
                       resumed=bool(args.resume))

    words = [w for w, _ in test]
    refs = [r for _, r in test]
    results = {}
    base = letter_baseline(train_pairs, pvoc)
    s = G.score([base(w) for w in words], refs)
    results["letter baseline"] = {"wer": s.wer, "per": s.per}
    for name, beam in (("greedy", 1), (f"beam {args.beam}", args.beam)):
        with C.Timer() as t:
            hyps = decode(model, words, gvoc, pvoc, beam)
        s = G.score(hyps, refs)
        results[f"fastrnn {name}"] = {"wer": s.wer, "per": s.per, "decode_s": t.seconds,
                                      "fit_s": fit_s,
                                      "epochs": sum(e["loss"] is not None for e in log)}
    plot_words = [w for w in PLOT_WORDS if gvoc.index.keys() >= set(w)]
    hyps, att = decode(model, plot_words, gvoc, pvoc, args.beam, attention=True)
    os.makedirs(args.out, exist_ok=True)
    panels = [(a, tuple(w), tuple(h) + ("</s>",), w) for w, h, a in zip(plot_words, hyps, att)]
    G.write_attention_grid_svg(os.path.join(args.out, "g2p_attention.svg"), panels,
                               title=f"fr.Seq2Seq attention (beam {args.beam})")
    model.save(os.path.join(args.out, "g2p.fastrnn"))
    C.report("g2p", args, results)
    with open(os.path.join(args.out, "g2p_epochs.json"), "w") as f:
        json.dump(log, f, indent=1)
    return results


if __name__ == "__main__":
    main()
