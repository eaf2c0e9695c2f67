"""Speech to text with CTC: spoken digit strings -> digits.

    python -m fastrnn.examples.digits_ctc [--quick] [--compare-torch]

Data: strings of 2-6 digits read aloud by espeak-ng (Debian: apt-get install
espeak-ng) in 8 English accents x 12 voice variants, at random rates, pitches
and word gaps, with white noise at 15-40 dB SNR; features are 13 MFCCs per
10 ms (fastrnn/examples/_audio.py), standardized with training statistics,
4 frames stacked per step (40 ms). The first run synthesizes the corpus
(about a minute) and caches the features in --cache; later runs load them.
Split: a random fifth of the speakers (accent+variant pairs) is held out, so
the test voices are never heard in training.

Model: a 2-layer bidirectional LSTM and a Dense layer per step to 11 classes
(blank = 0, digit d = d + 1), trained with the CTC loss. Reported: the digit
(character) error rate -- edit distance over reference length -- of greedy
(best-path) and prefix-beam decoding on the held-out speakers, and the share
of utterances decoded exactly. --compare-torch trains the same network in
PyTorch (nn.LSTM on packed sequences, nn.Linear, nn.CTCLoss) from fastrnn's
initial weights, with the same data, batch order, optimizer, clipping and
epochs; both engines train a throwaway copy on one batch, untimed, before
their timed fits (_common.warm_up).
"""
import copy
import os

import numpy as np

import fastrnn as fr
from fastrnn.examples import _audio
from fastrnn.examples import _common as C
from fastrnn.examples import _text
from fastrnn.examples._common import (Timer, fit_copy, need_torch, parser, pin_threads,
                                        report, warm_up, with_epochs)

N_CLASSES = 11  # blank + 10 digits


def default_cache():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fastrnn")


def load_data(args):
    """(Xtr, Ytr, Ltr), (Xte, Yte, Lte): padded (N, T, F) float32 features,
    (N, S) labels padded with -1, lengths (N,)."""
    feats, labels, speakers = _audio.digit_corpus(
        args.utterances, seed=args.data_seed, cache=args.cache,
        max_digits=args.max_digits, workers=args.workers, verbose=args.verbose > 0)
    train, test = _audio.speaker_split(speakers, 0.2, seed=args.data_seed)
    frames = np.concatenate([feats[i] for i in train])
    mean, std = frames.mean(axis=0), frames.std(axis=0) + 1e-5

    def prepare(idx):
        seqs = [_audio.stack_frames((feats[i] - mean) / std, args.stack) for i in idx]
        X, L = fr.pad_sequences(seqs, dtype=np.float32)
        S = max(len(labels[i]) for i in idx)
        Y = np.full((len(idx), S), -1, np.int64)
        for r, i in enumerate(idx):
            Y[r, :len(labels[i])] = labels[i]
        return X, Y, L

    return prepare(train), prepare(test)


def error_rates(probs, Y, L, beam_width):
    """Greedy and beam digit error rates and exact-utterance accuracy."""
    refs = [[int(v) for v in row if v >= 0] for row in Y]
    out = {}
    greedy = fr.ctc_greedy_decode(probs, L)
    beam = fr.ctc_beam_decode(probs, L, beam_width=beam_width, probs=True)
    for name, hyp in (("greedy", greedy), ("beam", beam)):
        errs = sum(fr.edit_distance(h, r) for h, r in zip(hyp, refs))
        out[f"cer_{name}"] = errs / sum(len(r) for r in refs)
        out[f"exact_{name}"] = float(np.mean([h == r for h, r in zip(hyp, refs)]))
    return out


def batch_orders(n, epochs, seed):
    """The sample order of each epoch, exactly as Sequential.fit(seed=seed) draws it."""
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
    return [rng.permutation(n) for _ in range(epochs)]


def build_model(args, F):
    model = fr.Sequential([
        fr.LSTM(F, args.hidden, num_layers=args.layers, batch_first=True, bidirectional=True),
        fr.Dense(2 * args.hidden, N_CLASSES),
    ], seed=args.seed)
    model.compile(loss="ctc", optimizer=fr.optim.Adam(lr=args.lr), clip_norm=args.clip)
    return model


def run_fastrnn(args, model, train, test):
    Xtr, Ytr, Ltr = train
    with Timer() as t:
        hist = model.fit(Xtr, Ytr, lengths=Ltr, epochs=args.epochs, batch_size=args.batch_size,
                         seed=args.seed, verbose=args.verbose)
    Xte, Yte, Lte = test
    with Timer() as te:
        probs = model.predict(Xte, lengths=Lte)
    res = {"train_loss_first": hist["loss"][0], "train_loss_last": hist["loss"][-1],
           "test_loss": model.evaluate(Xte, Yte, lengths=Lte)["loss"]}
    res.update(error_rates(probs, Yte, Lte, args.beam_width))
    res.update(fit_s=t.seconds, predict_s=te.seconds)
    return res


def torch_twin(model):
    """The same network in PyTorch, starting from `model`'s initial weights
    (so the two runs differ by float32 rounding only, not by their start)."""
    torch = need_torch()
    nn = torch.nn
    lstm, dense = model.layers

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(lstm.input_size, lstm.hidden_size, num_layers=lstm.num_layers,
                                batch_first=True, bidirectional=True)
            self.fc = nn.Linear(dense.in_features, dense.out_features)

        def forward(self, x, lengths):
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True,
                                                       enforce_sorted=False)
            y, _ = self.lstm(packed)
            y, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True,
                                                    total_length=x.shape[1])
            return self.fc(y)

    net = Net()
    _text.copy_rnn_weights(lstm, net.lstm)
    _text.copy_linear(dense.params, net.fc)
    return net


def train_torch(net, args, train, orders):
    """Adam + CTC + global-norm clipping on the batches of `orders`;
    returns the per-epoch mean training losses."""
    torch = need_torch()
    nn = torch.nn
    Xtr, Ytr, Ltr = train
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    ctc = nn.CTCLoss(blank=0, reduction="mean")
    losses = []
    net.train()
    for order in orders:
        total = 0.0
        for i in range(0, len(order), args.batch_size):
            idx = order[i:i + args.batch_size]
            T = int(Ltr[idx].max())  # cut the batch to its longest sequence, as fit() does
            x = torch.from_numpy(Xtr[idx, :T])
            lens = torch.from_numpy(Ltr[idx])
            y = torch.from_numpy(np.maximum(Ytr[idx], 0))
            ylens = torch.from_numpy((Ytr[idx] >= 0).sum(axis=1))
            opt.zero_grad()
            logp = net(x, lens).log_softmax(-1).transpose(0, 1)
            loss = ctc(logp, y, lens, ylens)
            loss.backward()
            if args.clip:
                nn.utils.clip_grad_norm_(net.parameters(), args.clip)
            opt.step()
            total += loss.item() * len(idx)
        losses.append(total / len(order))
        if args.verbose:
            print(f"torch epoch {len(losses)}/{len(orders)}: loss {losses[-1]:.4f}", flush=True)
    return losses


def run_torch(args, net, train, test):
    torch = need_torch()
    nn = torch.nn
    Xtr = train[0]
    torch.manual_seed(args.seed)
    with Timer() as t:
        losses = train_torch(net, args, train, batch_orders(len(Xtr), args.epochs, args.seed))
    Xte, Yte, Lte = test
    net.eval()
    ctc = nn.CTCLoss(blank=0, reduction="mean")
    with Timer() as te, torch.no_grad():
        logits = net(torch.from_numpy(Xte), torch.from_numpy(Lte))
        probs = logits.softmax(-1).numpy()
        y = torch.from_numpy(np.maximum(Yte, 0))
        test_loss = ctc(logits.log_softmax(-1).transpose(0, 1), y, torch.from_numpy(Lte),
                        torch.from_numpy((Yte >= 0).sum(axis=1))).item()
    res = {"train_loss_first": losses[0], "train_loss_last": losses[-1], "test_loss": test_loss}
    res.update(error_rates(probs, Yte, Lte, args.beam_width))
    res.update(fit_s=t.seconds, predict_s=te.seconds)
    return res


def main(argv=None):
    p = parser(__doc__.splitlines()[0], epochs=8, batch_size=16)
    p.add_argument("--utterances", type=int, default=1000,
                   help="corpus size (train + test)")
    p.add_argument("--max-digits", type=int, default=6)
    p.add_argument("--hidden", type=int, default=32, help="LSTM units per direction")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--stack", type=int, default=4, help="10 ms frames stacked per step")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--clip", type=float, default=5.0, help="global gradient-norm clip")
    p.add_argument("--beam-width", type=int, default=8)
    p.add_argument("--data-seed", type=int, default=0,
                   help="seed of the synthesized corpus and of the speaker split")
    p.add_argument("--cache", default=default_cache(),
                   help="folder of the cached features (default ~/.cache/fastrnn)")
    p.add_argument("--workers", type=int, default=4, help="espeak-ng processes at once")
    args = p.parse_args(argv)
    if args.quick:  # ~120 short utterances, a one-layer model, 15 short epochs: seconds,
        # and a digit error rate well below the always-blank output's 1.0
        args.utterances, args.max_digits = 120, 3
        args.hidden, args.layers = 32, 1
        args.epochs = 15
        args.batch_size = min(args.batch_size, 8)
    C.check_precisions(args)
    pin_threads(args.threads)

    train, test = load_data(args)
    print(f"train {len(train[0])} utterances, test {len(test[0])} (held-out speakers); "
          f"{train[0].shape[2]} features per step, up to {train[0].shape[1]} steps")
    model = build_model(args, train[0].shape[2])
    net = torch_twin(model) if args.compare_torch else None  # same start
    n = min(args.batch_size, len(train[0]))  # warm-ups: one batch each, untimed
    one = tuple(a[:n] for a in train)
    warm_up(fit_copy(model, *one[:2], lengths=one[2], epochs=1, batch_size=n, seed=args.seed),
            None if net is None else lambda: train_torch(
                copy.deepcopy(net), with_epochs(args, 1), one, [np.arange(n)]))
    # the trivial baseline: blank at every step (the most frequent frame label) decodes
    # to nothing, a digit error rate of 1.0
    results = {"fastrnn": run_fastrnn(args, model, train, test),
               "always blank": {"cer_greedy": 1.0, "cer_beam": 1.0}}
    if net is not None:
        results["torch"] = run_torch(args, net, train, test)
    if args.precision:
        Xte, Yte, Lte = test
        C.report_precisions("digits_ctc", "cer_greedy", "cer", {
            prec: [error_rates(frozen.predict(Xte, lengths=Lte), Yte, Lte,
                               args.beam_width)["cer_greedy"]]
            for prec, frozen in C.frozen_at_precisions(model, args)}, results)
    report("digits_ctc", args, results)
    return results


if __name__ == "__main__":
    main()
