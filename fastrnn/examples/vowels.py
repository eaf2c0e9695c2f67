"""Speaker recognition from speech features: JapaneseVowels.

Nine male speakers each say the Japanese vowels /ae/; every utterance is a
sequence of 7-29 frames of 12 LPC cepstral coefficients, and the task is to
name the speaker (Kudo, Toyama & Shimbo 1999; UCI / UEA archive). 270 training
and 370 test utterances, read from the .ts files that sktime 1.2.0 ships:

    pip install --no-deps sktime==1.2.0
    python -m fastrnn.examples.vowels [--quick] [--compare-torch] [--cell lstm]
    python -m fastrnn.examples.vowels --dataset ItalyPowerDemand   # 1 x 24 steps, 2 classes

The network, on features standardized with the training set's mean and
standard deviation per channel:

    frames (B, T, 12), lengths -> bidirectional GRU(12, H)   (or LSTM)
        -> MeanPooling over the valid steps of each utterance (or MaxPooling)
        -> Dense(2H, 9) -> cross-entropy, Adam

The lengths go with every batch, so padding frames never reach the recurrent
states (the reverse direction starts at each utterance's last frame), the
pooling or the loss. The test set is small (one utterance is 0.27 points), so
the example trains --seeds networks and reports the mean test accuracy.

With --compare-torch the same network is trained in PyTorch (nn.GRU with
pack_padded_sequence) from the same initial weights, on the same batches in the
same order, with the same Adam settings; both fit() wall times are printed.
"""
import copy
import os

import numpy as np

import fastrnn as fr
from fastrnn.examples import _common as C
from fastrnn.examples import _seq

DATASETS = {  # name: defaults (67 ItalyPowerDemand series make 3 batches an epoch)
    "JapaneseVowels": dict(epochs=30, pool="mean"),
    "ItalyPowerDemand": dict(epochs=150, pool="max"),
}


def load(name):
    """((x_tr, y_tr), (x_te, y_te), class names): lists of (T_i, C) arrays,
    standardized per channel with the training frames' mean and std."""
    folder = os.path.join(C.package_dir("sktime"), "datasets", "data", name)
    (x_tr, y_tr), (x_te, y_te), names = _seq.load_ts_split(folder, name)
    frames = np.concatenate(x_tr).astype(np.float64)
    mu, sd = frames.mean(axis=0), frames.std(axis=0) + 1e-8
    norm = [[((s - mu) / sd).astype(np.float32) for s in xs] for xs in (x_tr, x_te)]
    return (norm[0], y_tr), (norm[1], y_te), names


def build_model(n_features, n_classes, args, seed):
    Cell = fr.LSTM if args.cell == "lstm" else fr.GRU
    Pool = fr.MaxPooling if args.pool == "max" else fr.MeanPooling
    H = args.hidden
    return fr.Sequential([
        Cell(n_features, H, batch_first=True, bidirectional=True),
        Pool(),
        fr.Dense(2 * H, n_classes),
    ], seed=seed)


def torch_twin(model, args):
    """The same network in PyTorch, starting from `model`'s weights."""
    import torch
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    rnn, _, dense = model.layers

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            Cell = nn.LSTM if args.cell == "lstm" else nn.GRU
            self.rnn = Cell(rnn.input_size, rnn.hidden_size, batch_first=True,
                            bidirectional=True)
            self.out = nn.Linear(dense.in_features, dense.out_features)

        def forward(self, x, lengths):
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            h, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True)
            valid = (torch.arange(h.shape[1])[None, :] < lengths[:, None]).unsqueeze(-1)
            if args.pool == "max":
                pooled = h.masked_fill(~valid, float("-inf")).amax(dim=1)
            else:  # padded outputs are zeros: the sum over valid steps / length
                pooled = h.sum(dim=1) / lengths[:, None].to(h.dtype)
            return self.out(pooled)

    net = Net()
    _seq.copy_rnn(rnn, net.rnn)
    _seq.copy_dense(dense, net.out)
    return net


def train_torch(net, x, y, lengths, seed, args):
    """Adam + cross-entropy on the batches fit(seed=seed) makes, in its order.
    Returns the per-epoch mean training losses."""
    import torch
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    X, Y, L = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(lengths)
    rng = _seq.fit_order(seed)
    losses = []
    net.train()
    for _ in range(args.epochs):
        total = 0.0
        for idx in _seq.batches(len(x), args.batch_size, rng):
            idx = torch.from_numpy(idx)
            lb = L[idx]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(X[idx, :int(lb.max())], lb), Y[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(total / len(x))
    return losses


def accuracy_torch(net, x, y, lengths):
    import torch
    net.eval()
    with torch.no_grad():
        logits = net(torch.from_numpy(x), torch.from_numpy(lengths))
    return float((logits.argmax(dim=1).numpy() == y).mean())


def summarize(runs):
    """Mean test accuracy and times over the seeds' runs."""
    acc = [r["accuracy"] for r in runs]
    return {"accuracy": float(np.mean(acc)), "acc_min": float(min(acc)),
            "acc_max": float(max(acc)), "fit_s": float(sum(r["fit_s"] for r in runs)),
            "eval_s": float(sum(r["eval_s"] for r in runs)),
            "loss_first": float(np.mean([r["losses"][0] for r in runs])),
            "loss_last": float(np.mean([r["losses"][-1] for r in runs]))}


def plot(path, runs, conf, names, title):
    """Training loss per epoch of every run (left) and the confusion matrix of
    fastrnn's last model on the test set (right)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return None
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(11, 4.5))
    for (eng, rs), color in zip(runs.items(), ("C0", "C4")):
        for i, r in enumerate(rs):
            a0.plot(np.arange(1, len(r["losses"]) + 1), r["losses"], color=color,
                    ls="-" if eng == "fastrnn" else "--", lw=1.2,
                    label=eng if i == 0 else None)
    a0.set_yscale("log")
    a0.set_xlabel("epoch")
    a0.set_ylabel("training cross-entropy")
    a0.legend()
    a0.set_title("training loss, every seed")
    a1.imshow(conf, cmap="Blues")
    for i in range(conf.shape[0]):
        for j in range(conf.shape[1]):
            if conf[i, j]:
                a1.text(j, i, str(conf[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if conf[i, j] > conf.max() / 2 else "black")
    a1.set_xticks(range(len(names)), names, fontsize=7, rotation=90)
    a1.set_yticks(range(len(names)), names, fontsize=7)
    a1.set_xlabel("predicted")
    a1.set_ylabel("true")
    a1.set_title("fastrnn, test set (last seed)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None):
    p = C.parser(__doc__.splitlines()[0], epochs=None, batch_size=32, threads=1)
    # One thread unless asked (threads=1): these networks are small (a parallel
    # step is tens of microseconds), and on a 2-core machine shared with other
    # work, two threads that meet at a barrier every time step made fit() 5-25x
    # slower, for fastrnn and torch alike (examples/RESULTS.md).
    p.add_argument("--dataset", default="JapaneseVowels", choices=sorted(DATASETS))
    p.add_argument("--cell", default="gru", choices=("gru", "lstm"))
    p.add_argument("--pool", default=None, choices=("mean", "max"),
                   help="pooling over time (default: mean; max for ItalyPowerDemand)")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seeds", type=int, default=3,
                   help="networks trained with seeds seed..seed+N-1; mean accuracy reported")
    p.set_defaults(verbose=0)
    args = p.parse_args(argv)
    for k, v in DATASETS[args.dataset].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.quick:  # a smaller model, fewer epochs: seconds, and still above the baseline
        args.epochs, args.hidden, args.seeds = 8, 16, 1
    C.check_precisions(args)
    torch = C.need_torch() if args.compare_torch else None
    C.pin_threads(args.threads)

    (x_tr, y_tr), (x_te, y_te), names = load(args.dataset)
    if args.quick:  # a random slice (the files are sorted by class): a few batches
        keep = np.sort(np.random.default_rng(args.seed).permutation(len(x_tr))[:192])
        x_tr, y_tr = [x_tr[i] for i in keep], np.asarray(y_tr)[keep]
    X, L = fr.pad_sequences(x_tr, dtype=np.float32)
    Xt, Lt = fr.pad_sequences(x_te, dtype=np.float32)
    print(f"{args.dataset}: {len(x_tr)} train / {len(x_te)} test sequences, "
          f"{X.shape[2]} channels, {int(L.min())}-{int(L.max())} steps, {len(names)} classes")
    print(f"bidirectional {args.cell.upper()}({X.shape[2]}, {args.hidden}) -> {args.pool} "
          f"pooling -> Dense({2 * args.hidden}, {len(names)}); Adam lr {args.lr}, "
          f"{args.epochs} epochs, batch {args.batch_size}, {args.threads} thread(s)")

    runs = {"fastrnn": []}
    by_precision = {}  # --precision: precision -> test accuracy of each seed's model
    if torch is not None:
        runs["torch"] = []
    for seed in range(args.seed, args.seed + args.seeds):
        model = build_model(X.shape[2], len(names), args, seed)
        model.compile(loss="cross_entropy", optimizer=fr.optim.Adam(lr=args.lr),
                      metrics=["accuracy"])
        net = torch_twin(model, args) if torch is not None else None
        if seed == args.seed:  # each engine's start-up, untimed, on throwaway copies
            n = min(args.batch_size, len(X))
            C.warm_up(C.fit_copy(model, X[:n], y_tr[:n], lengths=L[:n], epochs=1,
                                 batch_size=n, seed=seed),
                      None if net is None else lambda: train_torch(
                          copy.deepcopy(net), X[:n], y_tr[:n], L[:n], seed,
                          C.with_epochs(args, 1)))
        with C.Timer() as t:
            hist = model.fit(X, y_tr, lengths=L, epochs=args.epochs,
                             batch_size=args.batch_size, seed=seed, verbose=args.verbose)
        with C.Timer() as te:
            acc = model.evaluate(Xt, y_te, lengths=Lt)["accuracy"]
        runs["fastrnn"].append(dict(accuracy=acc, fit_s=t.seconds, eval_s=te.seconds,
                                    losses=hist["loss"]))
        if args.precision:
            for prec, frozen in C.frozen_at_precisions(model, args):
                by_precision.setdefault(prec, []).append(
                    frozen.evaluate(Xt, y_te, lengths=Lt)["accuracy"])
        line = (f"seed {seed}: fastrnn test accuracy {acc:.4f} (fit {t.seconds:.2f} s, "
                f"loss {hist['loss'][0]:.3f} -> {hist['loss'][-1]:.4f})")
        if net is not None:
            with C.Timer() as t:
                losses = train_torch(net, X, y_tr, L, seed, args)
            with C.Timer() as te:
                acc = accuracy_torch(net, Xt, y_te, Lt)
            runs["torch"].append(dict(accuracy=acc, fit_s=t.seconds, eval_s=te.seconds,
                                      losses=losses))
            line += f"; torch {acc:.4f} (fit {t.seconds:.2f} s)"
        print(line)

    results = {eng: summarize(r) for eng, r in runs.items()}
    # the trivial baseline: always the most frequent training class
    majority = np.bincount(np.asarray(y_tr), minlength=len(names)).argmax()
    results["majority class"] = {"accuracy": float(np.mean(np.asarray(y_te) == majority))}
    C.report_precisions(args.dataset, "accuracy", "accuracy", by_precision, results)
    C.report("vowels", args, results)
    pred = model.predict(Xt, lengths=Lt).argmax(axis=1)
    conf = np.zeros((len(names), len(names)), np.int64)
    np.add.at(conf, (np.asarray(y_te), pred), 1)
    png = plot(os.path.join(args.out, f"vowels_{args.dataset}.png"), runs, conf, names,
               f"{args.dataset}: bidirectional {args.cell.upper()}, test accuracy "
               f"{results['fastrnn']['accuracy']:.4f} (mean of {args.seeds} seed(s))")
    f = results["fastrnn"]
    print(f"\n{args.dataset} test accuracy: {f['accuracy']:.4f} "
          f"(mean of {args.seeds} seed(s), range {f['acc_min']:.4f}-{f['acc_max']:.4f}; "
          f"majority class {results['majority class']['accuracy']:.4f}); "
          f"fastrnn fit {f['fit_s']:.1f} s in all"
          + (f", torch fit {results['torch']['fit_s']:.1f} s" if torch is not None else ""))
    if png:
        print(f"plot (training loss, confusion matrix): {png}")
    return results


if __name__ == "__main__":
    main()
