"""A layer written in NumPy, trained inside a Sequential with an LSTM, saved,
loaded, and its backward checked against finite differences.

    python -m fastrnn.examples.custom_layer [--quick]

The layer is a gated residual block applied at every step (docs/custom_layers.md
walks through it):

    g = sigmoid(x Wg^T + bg)          the gate, per unit
    h = tanh(x Wh^T + bh)             the candidate
    y = x + g * h

The task needs no data set: sequences of 3 noisy channels and random lengths,
labelled by the channel whose mean over the valid steps is largest (majority
class about 1/3).
"""
import os
import tempfile

import numpy as np

import fastrnn as fr

from . import _common as C


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow for large |z|


@fr.register_layer
class GatedResidual(fr.Layer):
    """y = x + sigmoid(x Wg^T + bg) * tanh(x Wh^T + bh), per step.

    Parameters
    ----------
    features : int
        The size F of the last axis of x (and of y).
    dtype : str, default "float32"
        The parameters' and outputs' dtype.
    seed : int, optional
        Seeds the initial weights.
    """

    has_params = True

    def __init__(self, features, dtype="float32", seed=None):
        super().__init__(dtype)
        self.features = int(features)  # same names as the arguments: get_config()
        self.seed = seed
        F = self.features
        self.params["wg"] = np.zeros((F, F), self.dtype)
        self.params["bg"] = np.zeros(F, self.dtype)
        self.params["wh"] = np.zeros((F, F), self.dtype)
        self.params["bh"] = np.zeros(F, self.dtype)
        self.reset_parameters(seed)

    def reset_parameters(self, seed=None):
        """Draw the weights in place (fit(seed=...) calls this for seed=None)."""
        rng = np.random.default_rng(seed)
        k = 1.0 / np.sqrt(self.features)
        for p in self.params.values():
            p[...] = rng.uniform(-k, k, p.shape)

    def forward(self, x, training=False):
        p = self.params
        g = _sigmoid(x @ p["wg"].T + p["bg"])
        h = np.tanh(x @ p["wh"].T + p["bh"])
        self.saved = (x, g, h)  # what backward needs
        return x + g * h

    def backward(self, dy):
        x, g, h = self.saved
        p, d = self.params, self.grads
        dzg = dy * h * g * (1 - g)        # through the gate's sigmoid
        dzh = dy * g * (1 - h * h)        # through the candidate's tanh
        F = self.features
        xf, dg, dh = x.reshape(-1, F), dzg.reshape(-1, F), dzh.reshape(-1, F)
        d["wg"] += dg.T @ xf              # in place: optimizers hold these arrays
        d["bg"] += dg.sum(axis=0)
        d["wh"] += dh.T @ xf
        d["bh"] += dh.sum(axis=0)
        return dy + dzg @ p["wg"] + dzh @ p["wh"]


class WrongGatedResidual(GatedResidual):
    """GatedResidual with a planted bug: backward forgets the residual path
    (returns dx without dy). check_gradients must catch it."""

    def backward(self, dy):
        return super().backward(dy) - dy


def make_data(n, seed, T=20, F=3):
    """(x (n, T, F) float32, lengths (n,), labels (n,)): the label is the
    channel with the largest mean over the valid steps."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(T // 2, T + 1, n)
    shift = rng.normal(0, 0.35, (n, 1, F))
    x = (rng.standard_normal((n, T, F)) + shift).astype(np.float32)
    valid = np.arange(T)[None, :, None] < lengths[:, None, None]
    means = np.where(valid, x, 0).sum(1) / lengths[:, None]
    return x, lengths, means.argmax(1)


def build(hidden, seed):
    model = fr.Sequential([fr.LSTM(3, hidden, batch_first=True), GatedResidual(hidden),
                           fr.MeanPooling(), fr.Dense(hidden, 3)], seed=seed)
    model.compile(loss="cross_entropy", optimizer=fr.optim.Adam(lr=0.01),
                  metrics=["accuracy"])
    return model


def run(quick=False, seed=0, epochs=None, verbose=0, out=None):
    """Train, save, load, check; returns a dict of results."""
    n_train = 600 if quick else 3000
    epochs = epochs or (8 if quick else 20)
    x, lengths, y = make_data(n_train, seed)
    xt, lt, yt = make_data(400, seed + 1)
    model = build(16, seed)
    with C.Timer() as t:
        history = model.fit(x, y, lengths=lengths, epochs=epochs, batch_size=32,
                            validation_split=0.1, seed=seed, verbose=verbose)
    acc = model.evaluate(xt, yt, lengths=lt)["accuracy"]
    majority = float(np.bincount(y, minlength=3).max() / len(y))
    majority_test = float(np.mean(yt == np.bincount(y, minlength=3).argmax()))

    # save and load: the file holds "GatedResidual", its config and arrays
    folder = out or tempfile.mkdtemp()
    path = os.path.join(folder, "custom_layer_model.fastrnn")
    model.save(path)
    loaded = fr.load(path)
    same = bool(np.array_equal(model.predict(xt, lengths=lt), loaded.predict(xt, lengths=lt)))

    # the layer's backward against float64 central differences
    probe = np.random.default_rng(seed).standard_normal((2, 5, 16))
    report = fr.check_gradients(model.layers[1], probe, lengths=[5, 3])
    bad = fr.check_gradients(WrongGatedResidual(16, seed=0), probe, raise_on_failure=False)
    return {"accuracy": float(acc), "majority_test": majority_test, "majority_train": majority,
            "loss_first": history.history["loss"][0], "loss_last": history.history["loss"][-1],
            "val_loss_last": history.history["val_loss"][-1],
            "loaded_predictions_identical": same, "gradients_ok": report.passed,
            "planted_bug_caught": not bad.passed, "fit_s": t.seconds, "path": path}


def main(argv=None):
    p = C.parser(__doc__.split("\n")[0], epochs=20, batch_size=32, threads=1)
    args = p.parse_args(argv)
    C.pin_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    r = run(quick=args.quick, seed=args.seed,
            epochs=None if args.epochs == 20 else args.epochs,  # 20: the default
            verbose=args.verbose, out=args.out)
    print(f"test accuracy {r['accuracy']:.3f} (majority class {r['majority_test']:.3f}); "
          f"loaded model predicts the same: {r['loaded_predictions_identical']}; "
          f"check_gradients: {'passed' if r['gradients_ok'] else 'FAILED'}; planted bug "
          f"{'caught' if r['planted_bug_caught'] else 'MISSED'}")
    results = {"fastrnn": {k: r[k] for k in ("accuracy", "loss_first", "loss_last", "fit_s")},
               "majority class": {"accuracy": r["majority_test"]}}
    C.report("custom_layer", args, results)
    return r


if __name__ == "__main__":
    main()
