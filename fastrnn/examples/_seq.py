"""What the sequence examples (vowels, co2) share: the sktime .ts reader, the
batch order fit() uses, and copying a fastrnn model's weights into its torch
twin so both sides start from the same point.

The .ts format (sktime/UEA archive): header lines start with '@' or '#'; after
'@data' one sample per line, channels separated by ':', each channel's values
by ',', the class label last. Series may differ in length between samples.
"""
import os

import numpy as np

from fastrnn.examples import _common as C


def read_ts(path):
    """(list of (T_i, C) float32 arrays, list of label strings) from a .ts file."""
    xs, labels = [], []
    in_data = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                in_data = line.lower().startswith("@data")
                continue
            *channels, label = line.split(":")
            series = [np.array(ch.split(","), dtype=np.float64) for ch in channels]
            if len({len(s) for s in series}) != 1:
                raise ValueError(f"{path}: channels of unequal length in one sample")
            xs.append(np.stack(series, axis=1).astype(np.float32))
            labels.append(label.strip())
    if not xs:
        raise ValueError(f"{path}: no samples after @data")
    return xs, labels


def load_ts_split(folder, name):
    """Train and test of one dataset: ((x_tr, y_tr), (x_te, y_te), class names),
    labels mapped to 0..K-1 in the order of their sorted names."""
    x_tr, l_tr = read_ts(os.path.join(folder, f"{name}_TRAIN.ts"))
    x_te, l_te = read_ts(os.path.join(folder, f"{name}_TEST.ts"))
    names = sorted(set(l_tr) | set(l_te), key=lambda s: (len(s), s))
    index = {n: i for i, n in enumerate(names)}
    return ((x_tr, np.array([index[l] for l in l_tr], np.int64)),
            (x_te, np.array([index[l] for l in l_te], np.int64)), names)


def fit_order(seed):
    """The generator fit(seed=s) shuffles with: one permutation per epoch."""
    return np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])


def batches(n, batch_size, rng):
    """Index arrays of one epoch's batches, in fit()'s order."""
    order = rng.permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def copy_rnn(layer, module):
    """fastrnn LSTM/GRU weights -> torch.nn.LSTM/GRU (same names and shapes)."""
    import torch
    with torch.no_grad():
        for n, p in module.named_parameters():
            p.copy_(torch.from_numpy(layer.params[n]))


def copy_dense(layer, linear):
    """fastrnn Dense -> torch.nn.Linear."""
    import torch
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(layer.params["weight"]))
        linear.bias.copy_(torch.from_numpy(layer.params["bias"]))
