"""Helpers of the text examples (sentiment, charlm): tokens to ids, seeded
splits, the torch twins' batching in the exact order Sequential.fit uses, and
copying a fastrnn model's initial weights into its torch twin.

Kept out of _common.py (shared with the other example helpers) on purpose."""
import collections
import math
import time

import numpy as np

PAD, UNK = "<pad>", "<unk>"


def build_vocab(token_lists, min_count=1, max_size=None):
    """Vocabulary from training sequences: id 0 is padding, id 1 unknown, then
    tokens seen at least `min_count` times, most frequent first (ties by token,
    so the ids do not depend on dict order)."""
    counts = collections.Counter(t for toks in token_lists for t in toks)
    kept = sorted((t for t, c in counts.items() if c >= min_count),
                  key=lambda t: (-counts[t], t))
    if max_size is not None:
        kept = kept[:max_size - 2]
    return {t: i for i, t in enumerate([PAD, UNK] + kept)}


def encode(token_lists, vocab, max_len=None):
    """Token lists -> (ids (N, T) int64 padded with 0, lengths (N,)); tokens
    outside the vocabulary map to <unk>, sequences are cut to max_len (empty
    ones become a single <unk>)."""
    unk = vocab[UNK]
    seqs = [[vocab.get(t, unk) for t in toks][:max_len] or [unk] for toks in token_lists]
    lengths = np.array([len(s) for s in seqs], np.int64)
    ids = np.zeros((len(seqs), int(lengths.max())), np.int64)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = s
    return ids, lengths


def split(n, seed, test_fraction=0.2):
    """Seeded random split of range(n) into (train, test) index arrays."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def fit_order(seed):
    """The generator Sequential.fit(seed=seed) draws its epoch permutations
    from: the torch twins use it too, so both see the same batches."""
    return np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])


def batches(n, batch_size, rng, shuffle=True):
    """Index arrays of one epoch's batches, as Sequential.fit makes them."""
    order = rng.permutation(n) if shuffle else np.arange(n)
    for i in range(0, n, batch_size):
        yield order[i:i + batch_size]


def confusion_matrix(y_true, y_pred, n_classes):
    """counts[i, j]: samples of class i predicted as j."""
    m = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(m, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return m


def format_confusion(m, names):
    w = max(8, max(len(n) for n in names) + 1)
    lines = ["true \\ pred".ljust(w + 4) + "".join(n.rjust(w) for n in names)]
    for n, row in zip(names, m):
        lines.append(n.ljust(w + 4) + "".join(str(v).rjust(w) for v in row))
    return "\n".join(lines)


class Clock:
    """Wall-clock and CPU seconds of a block (the CPU time of the whole
    process, all threads): on a machine shared with other jobs the wall time
    also counts the time others held the cores, the CPU time does not."""

    def __enter__(self):
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        self.cpu_seconds = time.process_time() - self.c0


def bits(nats):
    return nats / math.log(2)


def copy_rnn_weights(fr_layer, torch_rnn):
    """Load a fastrnn LSTM/GRU/RNN's parameters into the torch module of the
    same shape (their names and layouts are torch's)."""
    import torch
    sd = {k: torch.from_numpy(v.copy()) for k, v in fr_layer.state_dict().items()}
    torch_rnn.load_state_dict(sd)


def copy_linear(fr_params, torch_linear):
    import torch
    with torch.no_grad():
        torch_linear.weight.copy_(torch.from_numpy(fr_params["weight"]))
        if "bias" in fr_params:
            torch_linear.bias.copy_(torch.from_numpy(fr_params["bias"]))
