"""Sequential models: compile, fit, evaluate, predict, summary, streaming
step and text generation, truncated backpropagation through time.

    model = fr.Sequential([fr.Embedding(V, 64),
                           fr.LSTM(64, 128, batch_first=True, bidirectional=True),
                           fr.AttentionPooling(256), fr.Dense(256, n_classes)])
    model.compile(loss="cross_entropy", optimizer=fr.optim.Adam(lr=1e-3),
                  clip_norm=1.0, metrics=["accuracy"])
    history = model.fit(X, y, lengths=L, epochs=10, batch_size=32, seed=0)

A Sequential is batch-first: inputs are (N, T) ids or (N, T, F) features (or a
list of variable-length sequences, padded here), with `lengths` (N,). The
lengths travel with each batch through the layers, so padding never reaches
pooling, losses or metrics; a recurrent layer built with batch_first=False gets
its input transposed for it. Each batch is cut to its longest sequence.

Reproducibility: fit(seed=s) draws the shuffling and every dropout mask from s;
layers built without a seed and never trained or loaded also draw their initial
weights from s. All arithmetic is deterministic (fixed-order reductions, GEMMs
whose bits do not depend on the thread count), so the same seed and data give
the same weights, bit for bit, with 1 thread or many.
"""
import hashlib
import math
import os
import string
import sys
import time

import numpy as np

from . import _collective
from . import losses as _losses
from . import optim as _optim
from ._validate import lengths_array, numeric_array, positive_int, real_array, to_numpy
from .layers import (Embedding, Layer, check_seed, copy_without_ctx, delegate, step_mask,
                     zero_padding)


def pad_sequences(sequences, dtype=None, value=0):
    """Pad a list of variable-length sequences at the end into one array.

    Parameters
    ----------
    sequences : list of array_like
        N arrays (T_i, ...) or lists of ids, all with the same trailing shape.
    dtype : numpy.dtype, optional
        The dtype of the result; None: the sequences' common dtype.
    value : scalar, default 0
        The padding value.

    Returns
    -------
    padded : numpy.ndarray
        (N, T_max, ...).
    lengths : numpy.ndarray
        (N,) int64, the length of each sequence.

    Raises
    ------
    ValueError
        For an empty list, an empty sequence or mismatched trailing shapes.
    TypeError
        For one array instead of a list.

    Examples
    --------
    >>> import fastrnn as fr
    >>> padded, lengths = fr.pad_sequences([[1, 2, 3], [4]])
    >>> padded
    array([[1, 2, 3],
           [4, 0, 0]])
    >>> lengths
    array([3, 1])
    """
    if isinstance(sequences, np.ndarray):
        raise TypeError("pad_sequences: expected a list of sequences, got one array")
    seqs = [to_numpy(s, f"sequences[{i}]") for i, s in enumerate(sequences)]
    if not seqs:
        raise ValueError("pad_sequences: expected at least one sequence")
    tail = seqs[0].shape[1:]
    for i, s in enumerate(seqs):
        if s.ndim == 0 or s.shape[1:] != tail:
            raise ValueError(f"sequences[{i}]: expected shape (T, *{tail}), got {s.shape}")
        if len(s) == 0:
            raise ValueError(f"sequences[{i}]: empty sequence (every sequence needs >= 1 step)")
    lengths = np.array([len(s) for s in seqs], np.int64)
    dtype = np.result_type(*seqs) if dtype is None else dtype
    out = np.full((len(seqs), int(lengths.max())) + tail, value, dtype=dtype)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out, lengths


class History:
    """What ``Sequential.fit`` returns: the logged values of every epoch, named as Keras names them.

    ``history["loss"]`` reads an entry of ``history.history``.

    Parameters
    ----------
    params : dict, optional
        fit()'s settings, kept as the ``params`` attribute.

    Attributes
    ----------
    history : dict
        {name: [one float per epoch]}: 'loss', each metric under its name
        ('accuracy', 'mae', ...), 'val_loss' and 'val_<metric>' with
        validation data or validation_split, and 'lr'.
    epoch : list of int
        The epochs run (from 0).
    params : dict
        fit()'s settings: 'epochs', 'steps' (batches per epoch), 'verbose'.
    stopped_by : str or None
        None, 'interrupted' (Ctrl-C) or the name of the callback that stopped
        training ('EarlyStopping', ...).

    Examples
    --------
    >>> import fastrnn as fr
    >>> h = fr.History()
    >>> h.append(0, {"loss": 0.5})
    >>> h["loss"], h.history, h.epoch
    ([0.5], {'loss': [0.5]}, [0])
    """

    def __init__(self, params=None):
        self.history = {}
        self.epoch = []
        self.params = dict(params or {})
        self.stopped_by = None

    def append(self, epoch, logs):
        """Record the logs of one epoch.

        Parameters
        ----------
        epoch : int
            The epoch's index.
        logs : dict of str to float
            The values logged.
        """
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)

    def __getitem__(self, key):
        return self.history[key]

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={sorted(self.history)})"


# ---- metrics: each gives (sum, count) over a batch --------------------------
def _valid_steps(lengths, B, T):
    return np.ones((B, T), bool) if lengths is None else \
        (np.arange(T)[None, :] < lengths[:, None])


def _metric_accuracy(loss, out, y, lengths):
    if isinstance(loss, _losses.BinaryCrossEntropy):
        hit = (out > 0) == (np.asarray(y) > 0.5)
        if lengths is not None and out.ndim >= 2:
            m = _valid_steps(lengths, out.shape[0], out.shape[1])
            m = m.reshape(m.shape + (1,) * (out.ndim - 2))
            return float((hit & m).sum()), float(np.broadcast_to(m, hit.shape).sum())
        return float(hit.sum()), float(hit.size)
    if isinstance(loss, _losses.CTC):
        raise ValueError("metric 'accuracy' does not apply to CTC; use 'cer'")
    y = np.asarray(y)
    pred = out.argmax(axis=-1)
    valid = np.ones(y.shape, bool)
    ignore = getattr(loss, "ignore_index", None)
    if ignore is not None:
        valid &= y != ignore
    if out.ndim == 3:
        valid &= _valid_steps(lengths, out.shape[0], out.shape[1])
    elif out.ndim != 2:
        raise ValueError(f"metric 'accuracy': expected outputs (B, C) or (B, T, C), "
                         f"got {out.shape}")
    return float(((pred == y) & valid).sum()), float(valid.sum())


def _regression(kind):
    def metric(loss, out, y, lengths):
        y = np.asarray(y, dtype=out.dtype)
        d = out.astype(np.float64) - y
        e = np.abs(d) if kind == "mae" else d * d
        if lengths is not None and out.ndim >= 2:
            m = _valid_steps(lengths, out.shape[0], out.shape[1])
            m = np.broadcast_to(m.reshape(m.shape + (1,) * (out.ndim - 2)), e.shape)
            return float(e[m].sum()), float(m.sum())
        return float(e.sum()), float(e.size)
    return metric


def _metric_cer(loss, out, y, lengths):
    """Character (label) error rate of greedy CTC decoding."""
    hyp = _losses.ctc_greedy_decode(out, lengths, blank=getattr(loss, "blank", 0))
    if isinstance(y, np.ndarray):
        refs = [[int(v) for v in row if v >= 0] for row in y]
    else:
        refs = [[int(v) for v in row] for row in y]
    errs = sum(_losses.edit_distance(h, r) for h, r in zip(hyp, refs))
    return float(errs), float(max(1, sum(len(r) for r in refs)))


_METRICS = {"accuracy": _metric_accuracy, "acc": _metric_accuracy,
            "mae": _regression("mae"), "mse": _regression("mse"), "cer": _metric_cer}


# ---- callbacks -----------------------------------------------------------------
class Callback:
    """Base class of the hooks into ``Sequential.fit``.

    Override any of `on_train_begin`, `on_epoch_end` (return True to stop
    training) and `on_train_end`.

    Examples
    --------
    >>> import fastrnn as fr
    >>> class StopAtLoss(fr.Callback):
    ...     def on_epoch_end(self, model, epoch, logs):
    ...         return logs["loss"] < 0.1
    >>> StopAtLoss().on_epoch_end(None, 0, {"loss": 0.05})
    True
    """

    def on_train_begin(self, model):
        """Run before the first epoch.

        Parameters
        ----------
        model : Sequential
            The model being trained.
        """
        pass

    def on_epoch_end(self, model, epoch, logs):
        """Run after each epoch.

        Parameters
        ----------
        model : Sequential
            The model being trained.
        epoch : int
            The epoch's index, from 0.
        logs : dict of str to float
            This epoch's values: "loss", metrics, "val_*", "lr".

        Returns
        -------
        bool
            True to stop training.
        """
        return False

    def on_train_end(self, model):
        """Run after training, also when it was stopped or interrupted.

        Parameters
        ----------
        model : Sequential
            The model being trained.
        """
        pass


def _improved(mode, value, best, min_delta):
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


def _mode(mode, monitor):
    if not isinstance(monitor, str):
        raise TypeError(f"monitor: expected the name of a logged value (a str such as "
                        f"'val_loss'), got {type(monitor).__name__} {monitor!r}")
    if mode == "auto":
        return "max" if ("acc" in monitor) else "min"
    if mode not in ("min", "max"):
        raise ValueError(f"mode: expected 'min', 'max' or 'auto', got {mode!r}")
    return mode


class EarlyStopping(Callback):
    """Stop training when a monitored value has stopped improving.

    Parameters
    ----------
    monitor : str, default "val_loss"
        A key of the epoch's logs ("val_*" needs validation data).
    patience : int, default 5
        Epochs without an improvement of at least min_delta before stopping.
    min_delta : float, default 0.0
        The least change that counts as an improvement.
    mode : {"auto", "min", "max"}, default "auto"
        Whether lower or higher is better; "auto": higher for accuracies.
    restore_best_weights : bool, default True
        Put the best epoch's weights back when training ends.

    Examples
    --------
    >>> import fastrnn as fr
    >>> stop = fr.EarlyStopping(monitor="loss", patience=1, restore_best_weights=False)
    >>> stop.on_train_begin(None)
    >>> [stop.on_epoch_end(None, e, {"loss": v}) for e, v in enumerate([1.0, 0.5, 0.6])]
    [False, False, True]
    """

    def __init__(self, monitor="val_loss", patience=5, min_delta=0.0, mode="auto",
                 restore_best_weights=True):
        self.monitor = monitor
        self.patience = positive_int(patience, "patience", minimum=0)
        self.min_delta = float(min_delta)
        self.mode = _mode(mode, monitor)
        self.restore_best_weights = bool(restore_best_weights)

    def on_train_begin(self, model):
        self.best, self.wait, self.best_weights, self.best_epoch = None, 0, None, None

    def on_epoch_end(self, model, epoch, logs):
        if self.monitor not in logs:
            raise ValueError(f"EarlyStopping: monitor {self.monitor!r} is not among the "
                             f"logged values {sorted(logs)} (pass validation_data or "
                             "validation_split for val_*)")
        v = logs[self.monitor]
        if _improved(self.mode, v, self.best, self.min_delta):
            self.best, self.wait, self.best_epoch = v, 0, epoch
            if self.restore_best_weights:
                self.best_weights = model.state_dict()
            return False
        self.wait += 1
        return self.wait >= self.patience

    def on_train_end(self, model):
        if self.restore_best_weights and self.best_weights is not None:
            model.load_state_dict(self.best_weights)


def _checkpoint_fields(path):
    """The named fields of a ModelCheckpoint path pattern, each checked to
    format: {epoch} (an int, e.g. {epoch:03d}) or the name of a logged value
    (a float, e.g. {val_loss:.4f}). Positional fields, attribute and index
    lookups ({epoch.real}, {x[0]}) and nested specs are refused: the pattern
    is filled by str.format, which would otherwise fail or reach into objects
    after a whole epoch of training."""
    hint = ("use {epoch} (formats as an int, e.g. {epoch:03d}) or the name of a logged "
            "value (loss, val_loss, a metric, lr; e.g. {val_loss:.4f}), and {{ }} for "
            "literal braces")
    try:
        parsed = list(string.Formatter().parse(path))
    except ValueError as e:
        raise ValueError(f"ModelCheckpoint: path {path!r} is not a valid format pattern "
                         f"({e}); {hint}") from None
    fields = []
    for _, name, spec, conv in parsed:
        if name is None:
            continue
        shown = "{" + name + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "") + "}"
        if not name.isidentifier():
            raise ValueError(f"ModelCheckpoint: path field {shown} in {path!r} is not a "
                             f"name; {hint}")
        sample = 1 if name == "epoch" else 1.0
        try:
            if "{" in spec or "}" in spec:
                raise ValueError("nested fields are not supported")
            if conv not in (None, "r", "s", "a"):
                raise ValueError(f"unknown conversion !{conv}")
            format(sample if conv is None else str(sample), spec)
        except ValueError as e:
            raise ValueError(f"ModelCheckpoint: path field {shown} in {path!r} cannot "
                             f"format {'an int' if name == 'epoch' else 'a float'} "
                             f"({e}); {hint}") from None
        fields.append(name)
    return fields


class ModelCheckpoint(Callback):
    """Save the model after each epoch, or only when a monitored value improves.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (``fr.save``). It may hold "{epoch}" (1-based, with a
        format spec such as "{epoch:03d}") and the names of logged values
        ("{val_loss:.4f}", any key of fit's history). The pattern is checked
        when the callback is built, the names against the logs at the first
        epoch's end.
    monitor : str, default "val_loss"
        A key of the epoch's logs.
    save_best_only : bool, default True
        Save only when `monitor` improves.
    mode : {"auto", "min", "max"}, default "auto"
        Whether lower or higher is better; "auto": higher for accuracies.

    Raises
    ------
    ValueError
        A path pattern with positional, attribute or index fields, or a
        format spec that cannot format its value.

    Examples
    --------
    >>> import fastrnn as fr
    >>> ckpt = fr.ModelCheckpoint("best-{epoch}.fastrnn", monitor="loss")
    >>> ckpt.save_best_only
    True
    """

    def __init__(self, path, monitor="val_loss", save_best_only=True, mode="auto"):
        try:
            path = os.fspath(path)
        except TypeError:
            raise TypeError(f"ModelCheckpoint: path: expected a file path (str or "
                            f"os.PathLike), got {type(path).__name__} {path!r}") from None
        self.path = os.fsdecode(path)
        self._fields = _checkpoint_fields(self.path)
        self.monitor = monitor
        self.save_best_only = bool(save_best_only)
        self.mode = _mode(mode, monitor)
        self.best = None

    def on_epoch_end(self, model, epoch, logs):
        unknown = [f for f in self._fields if f != "epoch" and f not in logs]
        if unknown:
            raise ValueError(f"ModelCheckpoint: path field {{{unknown[0]}}} of "
                             f"{self.path!r} is not among the logged values "
                             f"{sorted(logs)} (or 'epoch')")
        if self.save_best_only:
            if self.monitor not in logs:
                raise ValueError(f"ModelCheckpoint: monitor {self.monitor!r} is not among "
                                 f"the logged values {sorted(logs)}")
            if not _improved(self.mode, logs[self.monitor], self.best, 0.0):
                return False
            self.best = logs[self.monitor]
        if getattr(model, "_rank", 0) != 0:
            return False  # data-parallel fit: rank 0 writes, the others hold the same bits
        values = {k: v for k, v in logs.items() if k in self._fields}
        model.save(self.path.format(**values, epoch=epoch + 1))
        return False


class LearningRateScheduler(Callback):
    """Step a schedule of ``fr.optim`` once per epoch.

    A ReduceLROnPlateau is stepped with the monitored value. A schedule passed
    directly in fit's callbacks is wrapped so.

    Parameters
    ----------
    schedule : fastrnn.optim.LRSchedule
        The schedule.
    monitor : str, default "val_loss"
        The value given to a ReduceLROnPlateau ("loss" when it is not logged).

    Examples
    --------
    >>> import fastrnn as fr
    >>> opt = fr.optim.SGD(lr=1.0)
    >>> cb = fr.LearningRateScheduler(fr.optim.StepLR(opt, step_size=1, gamma=0.5))
    >>> cb.on_epoch_end(None, 0, {"loss": 1.0}), opt.lr
    (False, 0.5)
    """

    def __init__(self, schedule, monitor="val_loss"):
        self.schedule = schedule
        self.monitor = monitor

    def on_epoch_end(self, model, epoch, logs):
        if isinstance(self.schedule, _optim.ReduceLROnPlateau):
            key = self.monitor if self.monitor in logs else "loss"
            self.schedule.step(logs[key])
        else:
            self.schedule.step()
        return False


class _Progress:
    """One progress line per epoch (verbose=1), rewritten at most 10 times a second."""

    def __init__(self, verbose, epochs, steps, stream=None):
        self.verbose, self.epochs, self.steps = verbose, epochs, steps
        self.stream = stream or sys.stdout
        self.last = 0.0

    def batch(self, epoch, i, loss):
        if self.verbose != 1:
            return
        now = time.perf_counter()
        if i + 1 < self.steps and now - self.last < 0.1:
            return
        self.last = now
        w = 24
        done = int(w * (i + 1) / self.steps)
        bar = "=" * max(0, done - 1) + (">" if done < w else "=") + "." * (w - done)
        self.stream.write(f"\rEpoch {epoch + 1}/{self.epochs} [{bar}] {i + 1}/{self.steps}"
                          f" - loss {loss:.4f}")
        self.stream.flush()

    def epoch_end(self, epoch, logs, seconds):
        if self.verbose == 0:
            return
        items = " - ".join(f"{k} {v:.4g}" for k, v in logs.items() if k != "lr")
        self.stream.write(f"\rEpoch {epoch + 1}/{self.epochs} - {seconds:.1f}s - {items}"
                          + " " * 20 + "\n")
        self.stream.flush()


class Sequential:
    """A stack of layers run in order, batch-first, with Keras's compile / fit / evaluate / predict.

    Inputs are (N, T) ids, (N, T, F) features or a list of variable-length
    sequences (padded here), with ``lengths`` (N,) that travel with each batch
    through the layers, so padding never reaches pooling, losses or metrics. A
    recurrent layer built with batch_first=False gets its input transposed for
    it. Each batch is cut to its longest sequence. Calling the model,
    ``model(x, lengths)``, is inference on one batch and returns the raw
    outputs (logits for classifiers).

    ``fit(seed=s)`` draws the shuffling and every dropout mask from s (and the
    initial weights of layers built without a seed); all arithmetic is
    deterministic, so the same seed and data give the same weights, bit for bit,
    at any thread count.

    Parameters
    ----------
    layers : list of fr.Layer, optional
        The layers, first to last. Leave it out to start empty and add them
        with add().
    seed : int, optional
        Seeds the initial weights of the layers built without a seed, and
        their dropout masks.

    Raises
    ------
    TypeError
        `layers` is not a list of fastrnn layers.
    ValueError
        The layers' dtypes differ, or a recurrent layer follows a pooling one.

    Examples
    --------
    >>> import numpy as np
    >>> import fastrnn as fr
    >>> model = fr.Sequential([fr.Embedding(20, 8), fr.LSTM(8, 16, batch_first=True),
    ...                        fr.MeanPooling(), fr.Dense(16, 3)], seed=0)
    >>> _ = model.compile(loss="cross_entropy", optimizer="adam", metrics=["accuracy"])
    >>> x = np.random.default_rng(0).integers(1, 20, size=(32, 7))   # (N, T) ids
    >>> y = x[:, 0] % 3                                             # (N,) classes
    >>> history = model.fit(x, y, lengths=np.full(32, 7), epochs=2, batch_size=8,
    ...                     seed=0, verbose=0)
    >>> sorted(history.history), model.predict(x).shape
    (['accuracy', 'loss', 'lr'], (32, 3))
    """

    def __init__(self, layers=None, seed=None):
        if layers is None:
            layers = []
        if isinstance(layers, (Layer,)) or not hasattr(layers, "__iter__"):
            raise TypeError("layers: expected a list of layers")
        layers = list(layers)
        for i, l in enumerate(layers):
            if not isinstance(l, Layer):
                raise TypeError(f"layers[{i}]: expected a fastrnn layer, got {type(l).__name__}")
        dtypes = {np.dtype(l.dtype).name for l in layers}
        if len(dtypes) > 1:
            raise ValueError(f"layers: all layers need one dtype, got {sorted(dtypes)}")
        self.layers = []
        self.dtype = None
        self.seed = check_seed(seed)
        self.training = True
        self.loss = None
        self.optimizer = None
        self.clip_norm = None
        self.metrics = []
        self._trained = False
        self._ctx = None
        self.sharding = None  # {"shards", "batch_size"} of the last fit(shards > 1)
        seen = False
        for l in layers:  # checked before any layer is reseeded
            if l.reduces_sequence:
                seen = True
            elif seen and l.carries_state:
                raise ValueError(f"layers: {type(l).__name__} after a pooling layer has no "
                                 "sequence to run over")
        for l in layers:
            self._append(l, "layers", reseed=False)
        if seed is not None:
            self._seed_layers(seed, weights=True)

    def add(self, layer):
        """Append a layer (Keras' model.add).

        Parameters
        ----------
        layer : fr.Layer
            The next layer; its dtype must be the model's.

        Returns
        -------
        Sequential
            The model itself.

        Raises
        ------
        TypeError
            `layer` is not a fastrnn layer.
        ValueError
            Its dtype differs from the other layers', or it is a recurrent
            layer after a pooling one.
        RuntimeError
            The model is compiled already (add every layer before compile()).

        Examples
        --------
        >>> import fastrnn as fr
        >>> model = fr.Sequential(seed=0)
        >>> _ = model.add(fr.LSTM(3, 8, batch_first=True)).add(fr.LastStep())
        >>> [type(l).__name__ for l in model.add(fr.Dense(8, 2)).layers]
        ['LSTM', 'LastStep', 'Dense']
        """
        if not isinstance(layer, Layer):
            raise TypeError(f"layer: expected a fastrnn layer, got {type(layer).__name__}")
        if self.optimizer is not None:
            raise RuntimeError("add: this model is compiled already; add every layer "
                               "before compile() (its optimizer holds the parameters it had)")
        if self.dtype is not None and np.dtype(layer.dtype) != self.dtype:
            raise ValueError(f"layer: dtype {np.dtype(layer.dtype).name} differs from the "
                             f"model's {self.dtype.name} (all layers need one dtype)")
        self._append(layer, "layer")
        return self

    def _append(self, layer, name, reseed=True):
        if layer.carries_state and any(l.reduces_sequence for l in self.layers):
            raise ValueError(f"{name}: {type(layer).__name__} after a pooling layer has no "
                             "sequence to run over")
        i = len(self.layers)
        self.layers.append(layer)
        if self.dtype is None:
            self.dtype = np.dtype(layer.dtype)
        if reseed and self.seed is not None:  # the streams _seed_layers gives layer i
            streams = np.random.SeedSequence(self.seed).spawn(2 * i + 2)
            layer.reseed(streams[2 * i], streams[2 * i + 1], True)

    def _check_layers(self):
        if not self.layers:
            raise ValueError("this Sequential has no layers: add them with model.add(layer) "
                             "or Sequential([...])")

    # ---- structure ---------------------------------------------------------
    @property
    def sequence_output(self):
        """True when the model outputs one vector per step (no pooling)."""
        return not any(l.reduces_sequence for l in self.layers)

    def parameters(self):
        """Return the (name, parameter, gradient) triples of every layer.

        Returns
        -------
        list of (str, numpy.ndarray, numpy.ndarray)
            Names "{layer index}.{param}", as torch's nn.Sequential names them.
        """
        out = []
        for i, l in enumerate(self.layers):
            for n, p, g in l.parameters():
                out.append((f"{i}.{n}", p, g))
        return out

    def state_dict(self):
        """Return copies of every parameter.

        Returns
        -------
        dict of str to numpy.ndarray
            "{layer index}.{param}" to a copy of the array.
        """
        return {n: p.copy() for n, p, _ in self.parameters()}

    def load_state_dict(self, state_dict):
        """Copy parameters into the layers from a `state_dict`-like dict.

        Parameters
        ----------
        state_dict : dict of str to array_like
            "{layer index}.{param}" to arrays (NumPy or torch tensors).

        Raises
        ------
        ValueError
            For unexpected keys or a layer's missing or mis-shaped entries.
        TypeError
            If state_dict is not a dict.
        """
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"state_dict: expected a dict of arrays, got "
                            f"{type(state_dict).__name__}")
        per, extra = {}, []
        for k in state_dict.keys():
            i, _, n = str(k).partition(".")
            if not i.isdigit() or int(i) >= len(self.layers):
                extra.append(str(k))
            else:
                per.setdefault(int(i), {})[n] = state_dict[k]
        if extra:
            raise ValueError("load_state_dict: unexpected keys: " + ", ".join(sorted(extra)))
        errors = []
        for i, l in enumerate(self.layers):
            if not l.params and i not in per:
                continue
            try:
                l.load_state_dict(per.get(i, {}))
            except (ValueError, TypeError) as e:
                errors.append(f"layer {i} ({type(l).__name__}): {e}")
        if errors:
            raise ValueError("load_state_dict: " + "; ".join(errors))
        self._trained = True

    def zero_grad(self):
        """Fill every layer's gradients with 0."""
        for l in self.layers:
            l.zero_grad()

    def train(self, mode=True):
        """Set training mode (dropout on) or inference mode in every layer.

        Parameters
        ----------
        mode : bool, default True
            True: training; False: inference.

        Returns
        -------
        Sequential
            The model itself.
        """
        self.training = bool(mode)
        for l in self.layers:
            l.train(mode)
        return self

    def freeze(self, weights="float32"):
        """Return a copy of this model for inference only.

        Its RNN/LSTM/GRU layers are their `freeze` copies, whose weights are packed
        once instead of at every call; with ``weights="float32"`` the same bits as
        this model. ``"int8"`` or ``"bf16"`` narrow the recurrent layers' weights
        (docs/quantization.md; Dense and Embedding stay float32). fit on the copy
        raises; this model stays trainable. A float32 copy that starts Embedding ->
        RNN/LSTM/GRU also keeps the recurrent layer's input projection of every
        embedding row (up to 64 MiB of tables) and looks it up by id where the
        kernel would compute it: the same bits (docs/performance.md, "An
        embedding before a recurrent layer"); its embedding weight is read-only.

        Parameters
        ----------
        weights : {"float32", "int8", "bf16"}, default "float32"
            The precision of the recurrent layers' frozen weights.

        Returns
        -------
        Sequential
            The frozen copy.

        Raises
        ------
        ValueError
            For int8 or bf16 when a recurrent layer cannot run them (its
            `freeze` says why), or an unknown `weights`.
        TypeError
            For a `weights` that is not a string.
        """
        if not isinstance(weights, str):
            raise TypeError(f"weights: expected 'float32', 'int8' or 'bf16', got "
                            f"{type(weights).__name__} {weights!r}")
        if weights not in ("float32", "int8", "bf16"):
            raise ValueError(f"weights: expected 'float32', 'int8' or 'bf16', got {weights!r}")
        new = copy_without_ctx(self)
        out = []
        for i, l in enumerate(new.layers):
            if weights == "float32" or not getattr(l, "carries_state", False):
                out.append(l.freeze())
                continue
            try:
                out.append(l.freeze(weights=weights))
            except TypeError as e:
                raise ValueError(f"layer {i} ({type(l).__name__}): cannot freeze with "
                                 f"weights={weights!r}: {e}") from None
            except ValueError as e:
                raise ValueError(f"layer {i} ({type(l).__name__}): {e}") from None
        new.layers = out
        if (weights == "float32" and len(out) > 1 and type(out[0]) is Embedding
                and hasattr(out[1], "_rows_tables")):
            # an embedding before a recurrent layer: that layer's input
            # projection of each embedding row, made once (the same bits)
            E = out[0].params["weight"]
            E.setflags(write=False)   # the tables hold its rows
            out[1]._rows_tables(E)
        return new

    def eval(self):
        """Set inference mode: ``train(False)``.

        Returns
        -------
        Sequential
            The model itself.
        """
        return self.train(False)

    def _seed_layers(self, seed, weights):
        """Dropout generators (and, when `weights`, unseeded initial weights)
        drawn from `seed`, one independent stream per layer."""
        streams = np.random.SeedSequence(seed).spawn(2 * len(self.layers))
        for i, l in enumerate(self.layers):
            l.reseed(streams[2 * i], streams[2 * i + 1], weights)

    # ---- running ---------------------------------------------------------------
    def _input(self, x, lengths):
        """(x, lengths) checked: ids for an Embedding first, floats otherwise."""
        self._check_layers()
        if isinstance(x, (list, tuple)) and x and hasattr(x[0], "__len__") and \
                len({len(s) for s in x}) > 1:
            if lengths is not None:
                raise ValueError("lengths: not needed with a list of variable-length "
                                 "sequences (their lengths are taken)")
            x, lengths = pad_sequences(x)
        if isinstance(self.layers[0], Embedding):
            x = self.layers[0].ids(x)
        else:
            x = real_array(x, "x", self.dtype)
        if x.ndim == 0 or x.shape[0] == 0:
            raise ValueError(f"x: expected a non-empty batch, got shape {x.shape}")
        if lengths is not None:
            if x.ndim < 2:
                raise ValueError(f"lengths: given for x of shape {x.shape}, which has no "
                                 "time axis (expected (N, T) ids or (N, T, F))")
            lengths = lengths_array(lengths, x.shape[1], x.shape[0])
        return x, lengths

    def _run(self, x, lengths, training, states=None):
        """All layers; returns the output and the final states of the layers
        that carry one (in layer order)."""
        finals = []
        seq = x.ndim >= 2 if isinstance(self.layers[0], Embedding) else x.ndim >= 3
        # a frozen embedding + recurrent layer made tables (freeze): the
        # recurrent layer looks its input projection up by these ids
        rows = self.layers[1].__dict__.get("_rows") if len(self.layers) > 1 else None
        ids = (x if rows is not None and not training and x.ndim == 2
               and rows[2] is self.layers[0].params.get("weight")
               and not rows[2].flags.writeable else None)
        for i, l in enumerate(self.layers):
            s0 = None
            if l.carries_state and states is not None:
                s0 = states[len(finals)]
            if i == 1 and ids is not None:
                x, st = l.apply(x, lengths if seq else None, s0, training, ids=ids)
            else:
                x, st = l.apply(x, lengths if seq else None, s0, training)
            if l.carries_state:
                finals.append(st)
            if l.reduces_sequence:
                seq = False
        return x, finals

    def __call__(self, x, lengths=None):
        """Inference on one batch: the raw outputs (logits for classifiers)."""
        x, lengths = self._input(x, lengths)
        return self._run(x, lengths, False)[0]

    def forward(self, x, lengths=None, states=None):
        """Run a training forward pass on one batch, keeping what `backward` needs.

        Parameters
        ----------
        x : array_like or list
            Batch-first: (N, T) int ids when the first layer is an Embedding,
            (N, T, F) features, (N, F) per-sample features, or a list of N
            variable-length sequences (padded here; then no `lengths`).
        lengths : array_like of int, optional
            (N,) valid steps of each sequence of x, in 1..T (padding at the end);
            None: every sequence has T steps.
        states : list, optional
            Initial states of the recurrent layers, in layer order.

        Returns
        -------
        numpy.ndarray
            The raw outputs: (N, T, ...) per step, or (N, ...) after a pooling.
        """
        x, lengths = self._input(x, lengths)
        out, finals = self._run(x, lengths, True, states)
        self._final_states = finals
        self._ctx = True
        return out

    def backward(self, dout):
        """Backpropagate through every layer from the gradient of the outputs.

        Parameters
        ----------
        dout : numpy.ndarray
            d(loss)/d(output), of the output's shape.

        Returns
        -------
        numpy.ndarray or None
            d(loss)/dx; None when the first layer is an Embedding.

        Raises
        ------
        RuntimeError
            Without a preceding `forward`.
        """
        if self._ctx is None:
            raise RuntimeError("backward() needs a preceding forward()")
        self._ctx = None
        d = dout
        for l in reversed(self.layers):
            d = l.apply_backward(d)
            if d is None:
                break
        return d

    # ---- streaming and generation --------------------------------------------------
    def step(self, x_t, states=None):
        """Run one time step through all layers, for streaming.

        Parameters
        ----------
        x_t : array_like
            (B,) ids after an Embedding, else (B, F).
        states : list, optional
            The states returned by the previous step (one per recurrent layer);
            None starts from zeros.

        Returns
        -------
        out : numpy.ndarray
            (B, ...) the outputs of the step.
        states : list
            The new states, to pass back in on the next call.

        Raises
        ------
        ValueError
            For a model with a pooling layer.
        """
        self._check_layers()
        if any(l.reduces_sequence for l in self.layers):
            raise ValueError("step: a model with a pooling layer needs whole sequences")
        if isinstance(self.layers[0], Embedding):
            x = self.layers[0].ids(x_t)
            if x.ndim != 1:
                raise ValueError(f"x_t: expected ids of shape (B,), got {x.shape}")
        else:
            x = numeric_array(x_t, "x_t")   # each layer's step converts it, after its checks
        n = sum(l.carries_state for l in self.layers)
        if states is None:
            states = [None] * n
        if len(states) != n:
            raise ValueError(f"states: expected {n} states (one per recurrent "
                             f"layer), got {len(states)}")
        new = []
        for l in self.layers:
            x, st = l.step(x, states[len(new)] if l.carries_state else None)
            if l.carries_state:
                new.append(st)
        return x, new

    def generate(self, prompt, length, temperature=1.0, top_k=None, seed=None):
        """Sample ids after a prompt from a language model (Embedding ... Dense(vocab)).

        Each id is drawn from softmax(logits / temperature), restricted to the
        top_k most likely ids when given.

        Parameters
        ----------
        prompt : array_like of int
            A 1-D sequence of ids.
        length : int
            How many ids to generate.
        temperature : float, default 1.0
            > 0; lower is greedier.
        top_k : int, optional
            Sample among the top_k most likely ids only.
        seed : int, optional
            Seeds the sampling.

        Returns
        -------
        numpy.ndarray
            (length,) int64, the new ids.
        """
        self._check_layers()
        if not isinstance(self.layers[0], Embedding):
            raise ValueError("generate: the model must start with an Embedding")
        length = positive_int(length, "length", minimum=0)
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
                or not temperature > 0:
            raise ValueError(f"temperature: expected a number > 0, got {temperature!r}")
        if top_k is not None:
            top_k = positive_int(top_k, "top_k")
        ids = self.layers[0].ids(np.atleast_1d(prompt))
        if ids.ndim != 1:
            raise ValueError(f"prompt: expected a 1-D sequence of ids, got shape {ids.shape}")
        rng = np.random.default_rng(seed)
        states, logits = None, None
        for t in ids:
            logits, states = self.step(np.array([t]), states)
        out = []
        for _ in range(length):
            z = logits[0].astype(np.float64) / temperature
            if top_k is not None and top_k < z.size:
                cut = np.partition(z, -top_k)[-top_k]
                z = np.where(z >= cut, z, -np.inf)
            p = np.exp(z - z.max())
            p /= p.sum()
            nxt = int(rng.choice(p.size, p=p))
            out.append(nxt)
            logits, states = self.step(np.array([nxt]), states)
        return np.array(out, np.int64)

    # ---- training ---------------------------------------------------------------
    def compile(self, loss, optimizer="adam", clip_norm=None, metrics=None, **loss_kwargs):
        """Choose the loss, the optimizer, gradient clipping and metrics.

        Parameters
        ----------
        loss : str or fastrnn.losses.Loss
            "cross_entropy", "binary_cross_entropy", "mse", "ctc", or a loss object.
        optimizer : str or fastrnn.optim.Optimizer, default "adam"
            A name ("sgd", "adam", "adamw", "rmsprop") or an optimizer object.
        clip_norm : float, optional
            Clip the global gradient norm to this value before each step; a
            non-finite norm skips the step.
        metrics : list of str, optional
            Among "accuracy", "mae", "mse", "cer".
        **loss_kwargs
            Constructor arguments of a loss given by name.

        Returns
        -------
        Sequential
            The model itself.
        """
        self._check_layers()
        self.loss = _losses.get(loss, **loss_kwargs)
        self.optimizer = _optim.get(optimizer) if isinstance(optimizer, str) else optimizer
        if not hasattr(self.optimizer, "step") or not hasattr(self.optimizer, "attach"):
            raise TypeError(f"optimizer: expected a name or an fr.optim optimizer, got "
                            f"{type(optimizer).__name__}")
        self.optimizer.attach(self.parameters())
        if clip_norm is not None:
            if isinstance(clip_norm, bool) or not isinstance(clip_norm, (int, float)) \
                    or not clip_norm > 0:
                raise ValueError(f"clip_norm: expected a number > 0 or None, got {clip_norm!r}")
            clip_norm = float(clip_norm)
        self.clip_norm = clip_norm
        metrics = list(metrics or [])
        for m in metrics:
            if m not in _METRICS:
                raise ValueError(f"metrics: unknown metric {m!r}; known: {sorted(_METRICS)}")
        self.metrics = metrics
        return self

    def _check_compiled(self):
        if self.loss is None:
            raise RuntimeError("call compile(loss=..., optimizer=...) first")

    def _targets(self, y, n):
        """Targets as an array (CTC: (N, S) padded with -1, from a list too)."""
        if isinstance(self.loss, _losses.CTC):
            if isinstance(y, np.ndarray):
                arr = y
            else:
                seqs = [np.asarray(s, np.int64).reshape(-1) for s in y]
                S = max([len(s) for s in seqs] + [1])
                arr = np.full((len(seqs), S), -1, np.int64)
                for i, s in enumerate(seqs):
                    arr[i, :len(s)] = s
        else:
            arr = to_numpy(y, "y")
        if arr.ndim == 0 or arr.shape[0] != n:
            raise ValueError(f"y: expected {n} targets (one per sample of x), got shape "
                             f"{arr.shape}")
        return arr

    def _batches(self, x, y, lengths, batch_size, order):
        """(xb, yb, lb) per batch, each cut to its longest sequence."""
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            xb = x[idx]
            yb = None if y is None else y[idx]
            lb = None if lengths is None else lengths[idx]
            if lb is not None:
                T = int(lb.max())
                if T < xb.shape[1]:
                    if yb is not None and self.sequence_output and \
                            not isinstance(self.loss, _losses.CTC) and \
                            yb.ndim >= 2 and yb.shape[1] == xb.shape[1]:
                        yb = yb[:, :T]
                    xb = xb[:, :T]
            yield xb, yb, lb

    def _loss_lengths(self, lb):
        return lb if self.sequence_output else None

    def _clip(self):
        """Global-norm clipping; False when the gradient norm is not finite
        (the step is then skipped, so one bad batch cannot poison the weights)."""
        if self.clip_norm is None:
            return True
        norm = _optim.clip_grad_norm([g for _, _, g in self.parameters()], self.clip_norm)
        if not math.isfinite(norm):
            self.skipped_steps = getattr(self, "skipped_steps", 0) + 1
            return False
        return True

    def _update(self):
        if self._clip():
            self.optimizer.step()

    def _train_batch(self, xb, yb, lb, bptt):
        if not bptt or xb.shape[1] <= bptt:
            self.zero_grad()
            out = self.forward(xb, lb)
            value = self.loss.forward(out, yb, lengths=self._loss_lengths(lb))
            self.backward(self.loss.backward())
            self._update()
            return value, out
        # truncated BPTT: windows of `bptt` steps, recurrent states carried
        # across windows (their gradient is cut at the boundary). The window
        # outputs are kept only for metrics: a language model over a long text
        # would otherwise hold (B, T, vocabulary) floats for the whole epoch.
        T = xb.shape[1]
        states, total, weight = None, 0.0, 0
        outs = []
        for t0 in range(0, T, bptt):
            xw = xb[:, t0:t0 + bptt]
            yw = yb[:, t0:t0 + bptt]
            lw = None
            if lb is not None:
                if int(lb.min()) <= t0:
                    raise ValueError("bptt: every sequence of a batch must reach each "
                                     "window (give equal lengths, or none, with bptt)")
                lw = np.minimum(lb - t0, xw.shape[1])
            self.zero_grad()
            out = self.forward(xw, lw, states)
            value = self.loss.forward(out, yw, lengths=self._loss_lengths(lw))
            self.backward(self.loss.backward())
            self._update()
            states = [_copy_state(s) for s in self._final_states]
            total += value * xw.shape[1]
            weight += xw.shape[1]
            if self.metrics:  # only metrics read the outputs: keep none otherwise
                outs.append(out)
        return total / weight, (np.concatenate(outs, axis=1) if outs else None)

    def fit(self, x, y, lengths=None, epochs=1, batch_size=32, validation_data=None,
            shuffle=True, seed=None, verbose=1, callbacks=None, bptt=None,
            validation_split=0.0, shards=None, comm=None):
        """Train the model on (x, y) for a number of epochs.

        Parameters
        ----------
        x : array_like or list
            Batch-first: (N, T) int ids when the first layer is an Embedding,
            (N, T, F) features, (N, F) per-sample features, or a list of N
            variable-length sequences (padded here; then no `lengths`).
        y : array_like
            Targets, one per sample of x: (N,) class ids or (N, K) values for a
            per-sample output (after a pooling layer), (N, T) class ids or
            (N, T, K) values for a per-step output; for CTC, (N, S) labels padded
            with -1 or a list of N label sequences.
        lengths : array_like of int, optional
            (N,) valid steps of each sequence of x, in 1..T (padding at the end);
            None: every sequence has T steps.
        epochs : int, default 1
            Passes over the data.
        batch_size : int, default 32
            Samples per gradient step.
        validation_data : tuple, optional
            (x, y) or (x, y, lengths) evaluated after each epoch; logged as
            "val_loss" and "val_<metric>".
        shuffle : bool, default True
            Shuffle the samples each epoch.
        seed : int, optional
            Seeds the shuffling, the dropout masks and the initial weights of
            layers built without a seed: the same seed gives the same weights, bit
            for bit.
        verbose : {0, 1, 2}, default 1
            0: silent; 1: a progress bar and a line per epoch; 2: a line per epoch.
        callbacks : list, optional
            `Callback` objects (`EarlyStopping`, `ModelCheckpoint`, ...) and
            ``fr.optim`` schedules (stepped once per epoch).
        bptt : int, optional
            Truncated backpropagation through time in windows of that many steps,
            the recurrent states carried across windows.
        validation_split : float, default 0.0
            In [0, 1): hold out the last fraction of the samples, as given and
            before any shuffling (as Keras does), for validation instead of
            `validation_data` (not both).
        shards : int, optional
            Compute every batch as this many fixed shards (contiguous slices,
            sizes differing by at most one) whose gradients are summed in
            shard order, each shard with its own dropout masks drawn from
            (seed, epoch, batch, shard): the same weights, bit for bit, in one
            process as over any rank count that divides it. 1 (the default
            for a model never trained with shards) is today's single pass.
            Kept in ``model.sharding`` (and saved with the model); resuming
            with another count or batch_size raises unless that is set to None.
        comm : mpi4py.MPI.Intracomm or fastrnn.distributed.MPIComm, optional
            Data-parallel training (docs/distributed.md): every rank passes the
            same arguments and computes its shards of every batch; the shard
            gradients are gathered with MPI and summed in shard order on every
            rank, so every rank takes the same optimizer steps. The rank count
            must divide `shards`. A rank that fails stops every rank with an
            error naming it; one that stops answering aborts the job after the
            MPIComm timeout. Only rank 0 prints and writes checkpoints.

        Returns
        -------
        History
            ``history.history`` maps "loss", each metric, "val_*" and "lr" to their
            values per epoch; ``history.stopped_by`` says why training stopped
            early. Ctrl-C stops after the current batch and returns the history so
            far (stopped_by "interrupted"); the model stays usable.

        Raises
        ------
        RuntimeError
            If the model is not compiled, or (with `comm`) another rank failed.
        ValueError, TypeError
            For bad arguments, naming them (with `comm`: arguments that differ
            between ranks).
        """
        self._check_compiled()
        if isinstance(validation_split, bool) or \
                not isinstance(validation_split, (int, float, np.integer, np.floating)) or \
                not 0.0 <= float(validation_split) < 1.0:
            raise ValueError(f"validation_split: expected a float in [0, 1), got "
                             f"{validation_split!r}")
        validation_split = float(validation_split)
        if validation_split and validation_data is not None:
            raise ValueError("validation_split: given with validation_data; pass one of "
                             "them (validation_data wins in Keras, here it is an error)")
        epochs = positive_int(epochs, "epochs", minimum=0)
        batch_size = positive_int(batch_size, "batch_size")
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose: expected 0, 1 or 2, got {verbose!r}")
        if bptt is not None:
            bptt = positive_int(bptt, "bptt")
        seed = check_seed(seed)
        shards, comm = self._sharding_args(shards, comm, batch_size, bptt)
        x, lengths = self._input(x, lengths)
        y = self._targets(y, x.shape[0])
        val = None
        if validation_split:
            n_all = x.shape[0]
            split = int(n_all * (1.0 - validation_split))  # Keras' split point
            if split < 1 or split >= n_all:
                raise ValueError(f"validation_split: {validation_split} of {n_all} samples "
                                 f"leaves {split} for training and {n_all - split} for "
                                 "validation; both need at least one")
            vl = None if lengths is None else lengths[split:]
            val = (x[split:], y[split:], vl)
            x, y = x[:split], y[:split]
            lengths = None if lengths is None else lengths[:split]
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise TypeError("validation_data: expected (x, y) or (x, y, lengths)")
            vx, vy = validation_data[0], validation_data[1]
            vl = validation_data[2] if len(validation_data) == 3 else None
            vx, vl = self._input(vx, vl)
            val = (vx, self._targets(vy, vx.shape[0]), vl)
        if comm is not None and seed is None:
            seed = self._common_seed(comm)  # every rank must draw the same masks
        if seed is not None:
            self._seed_layers(seed, weights=not self._trained and self.seed is None)
        if comm is not None:
            self._check_same_everywhere(comm, x, y, lengths, val, (
                epochs, batch_size, bool(shuffle), seed, shards, validation_split))
        # shard dropout streams: (entropy, epoch, batch, shard) -> one per layer
        shard_entropy = seed if seed is not None else \
            np.random.SeedSequence().entropy
        rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0]
                                    if seed is not None else None)
        cbs = []
        for cb in callbacks or []:
            if isinstance(cb, Callback):
                cbs.append(cb)
            elif hasattr(cb, "step") and hasattr(cb, "optimizer"):
                cbs.append(LearningRateScheduler(cb))
            else:
                raise TypeError(f"callbacks: expected fr.Callback objects or schedules, "
                                f"got {type(cb).__name__}")
        n = x.shape[0]
        steps = math.ceil(n / batch_size)
        progress = _Progress(verbose if comm is None or comm.rank == 0 else 0, epochs, steps)
        history = History({"epochs": epochs, "steps": steps, "verbose": verbose})
        self._trained = True
        if shards > 1:
            self.sharding = {"shards": shards, "batch_size": batch_size}
        self._rank = 0 if comm is None else comm.rank
        self.train()
        for cb in cbs:
            cb.on_train_begin(self)
        try:
            for epoch in range(epochs):
                t0 = time.perf_counter()
                self.train()  # (each epoch: a callback may have switched modes)
                order = rng.permutation(n) if shuffle else np.arange(n)
                sums = {}
                for i, (xb, yb, lb) in enumerate(self._batches(x, y, lengths, batch_size, order)):
                    if shards > 1:
                        value, msums = self._train_shards(
                            xb, yb, lb, shards, comm, (shard_entropy, epoch, i),
                            f"at epoch {epoch + 1}, batch {i + 1}")
                    else:
                        value, out = self._train_batch(xb, yb, lb, bptt)
                        msums = [_METRICS[m](self.loss, out, yb, self._loss_lengths(lb))
                                 for m in self.metrics]
                    if not math.isfinite(value):
                        sums.setdefault("nonfinite", 0)
                    nb = xb.shape[0]
                    sums["loss"] = sums.get("loss", 0.0) + value * nb
                    sums["_n"] = sums.get("_n", 0) + nb
                    for m, (s, c) in zip(self.metrics, msums):
                        a, b = sums.get(m, (0.0, 0.0))
                        sums[m] = (a + s, b + c)
                    progress.batch(epoch, i, sums["loss"] / sums["_n"])
                logs = {"loss": sums["loss"] / sums["_n"]}
                for m in self.metrics:
                    s, c = sums[m]
                    logs[m] = s / c if c else float("nan")
                if val is not None:
                    vlogs = self._evaluate(*val, batch_size=batch_size)
                    logs.update({f"val_{k}": v for k, v in vlogs.items()})
                logs["lr"] = float(self.optimizer.lr)
                history.append(epoch, logs)
                progress.epoch_end(epoch, logs, time.perf_counter() - t0)
                stop = self._epoch_callbacks(cbs, epoch, logs, history, comm)
                if stop:
                    break
        except KeyboardInterrupt:
            history.stopped_by = "interrupted"
            if verbose:
                sys.stdout.write("\nfit: interrupted; the model keeps the weights of the "
                                 "last finished batch\n")
        finally:
            self._ctx = None
            self._rank = 0
            for l in self.layers:
                l._ctx = None
            for cb in cbs:
                cb.on_train_end(self)
            self.eval()
        return history

    # ---- sharded and data-parallel steps (fit(shards=K, comm=...)) ----------------
    def _sharding_args(self, shards, comm, batch_size, bptt):
        """(shards, Collective or None), checked against the model's recorded
        division: resuming with another one would not give the same bits."""
        recorded = getattr(self, "sharding", None)
        if shards is None:
            shards = recorded["shards"] if recorded else 1
        shards = positive_int(shards, "shards")
        if recorded and (recorded["shards"], recorded["batch_size"]) != (shards, batch_size):
            raise ValueError(
                f"shards: this model was trained with shards={recorded['shards']}, "
                f"batch_size={recorded['batch_size']} (model.sharding); shards={shards}, "
                f"batch_size={batch_size} would divide every batch differently, so the "
                "bits would differ from an uninterrupted run. Pass the same values, or "
                "set model.sharding = None to divide anew")
        if comm is not None:
            comm = _collective.wrap(comm)
            if shards % comm.size:
                raise ValueError(f"shards: {comm.size} ranks need shards to be a multiple "
                                 f"of {comm.size} (each rank computes shards/ranks of "
                                 f"every batch), got shards={shards}")
            if comm.size == 1:
                comm = None
        if shards > 1:
            if bptt:
                raise ValueError("bptt: truncated backpropagation through time is not "
                                 "supported with shards > 1")
            if type(self.loss)._weight is _losses.Loss._weight:
                raise TypeError(f"shards: the loss {type(self.loss).__name__} does not say "
                                "what it divides by (Loss._weight), which shards > 1 need")
        return shards, comm

    def _common_seed(self, comm):
        """Rank 0's fresh random seed, on every rank."""
        mine = np.frombuffer(np.random.SeedSequence().generate_state(2, np.uint32).tobytes(),
                             np.uint8)
        rows = comm.exchange(mine, "choosing a seed")
        return int(rows[0].copy().view(np.uint64)[0] >> np.uint64(1))

    def _check_same_everywhere(self, comm, x, y, lengths, val, args):
        """ValueError on every rank when the ranks' data, arguments, weights or
        optimizer state differ (data-parallel training needs them equal)."""
        def digest(*arrays):
            h = hashlib.blake2b(digest_size=8)
            for a in arrays:
                if a is None:
                    h.update(b"none")
                    continue
                a = np.ascontiguousarray(a)
                h.update(f"{a.dtype.str}{a.shape}".encode())
                h.update(a.view(np.uint8).reshape(-1) if a.dtype != object else
                         repr(a.tolist()).encode())
            return h.digest()
        ocfg, oarr = self.optimizer.state_dict()
        parts = [("x", digest(x)), ("y", digest(y)), ("lengths", digest(lengths)),
                 ("validation data", digest(*(val or (None,)))),
                 ("the arguments (epochs, batch_size, shuffle, seed, shards, "
                  "validation_split)", hashlib.blake2b(repr(args).encode(),
                                                       digest_size=8).digest()),
                 ("the weights", digest(*[p for _, p, _ in self.parameters()])),
                 ("the optimizer state", digest(
                     np.frombuffer(repr(sorted(ocfg.items())).encode(), np.uint8),
                     *[oarr[k] for k in sorted(oarr)]))]
        payload = np.frombuffer(b"".join(d for _, d in parts), np.uint8)
        rows = comm.exchange(payload, "checking that every rank has the same arguments")
        for r in range(1, comm.size):
            for j, (name, _) in enumerate(parts):
                if bytes(rows[r, 8 * j:8 * j + 8]) != bytes(rows[0, 8 * j:8 * j + 8]):
                    raise ValueError(f"comm: rank {r}'s {name} differ from rank 0's; every "
                                     "rank must pass the same arguments to fit (and start "
                                     "from the same weights: give a seed, or load one file)")

    def _cut(self, xb, yb, lb):
        """A batch (or shard) cut to its longest sequence."""
        if lb is not None and lb.size:
            T = int(lb.max())
            if T < xb.shape[1]:
                if yb is not None and self.sequence_output and \
                        not isinstance(self.loss, _losses.CTC) and \
                        yb.ndim >= 2 and yb.shape[1] == xb.shape[1]:
                    yb = yb[:, :T]
                xb = xb[:, :T]
        return xb, yb, lb

    def _train_shards(self, xb, yb, lb, K, comm, key, where):
        """One optimizer step over K fixed shards of the batch: each shard's
        gradient (its mean loss weighted by its share of the loss's divisor),
        then their sum in shard order, on every rank the same. Returns the
        batch's loss and the metrics' (sum, count) pairs."""
        nb = xb.shape[0]
        bounds = [k * nb // K for k in range(K + 1)]
        parts = [self._cut(xb[a:b], yb[a:b], None if lb is None else lb[a:b])
                 for a, b in zip(bounds, bounds[1:])]
        weights = [0.0 if xs.shape[0] == 0 else
                   self.loss._weight(ys, self._loss_lengths(ls)) for xs, ys, ls in parts]
        total_w = 0.0
        for w in weights:
            total_w += 0.0 if w is None else w
        scales = [1.0 if w is None else (w / total_w if total_w else 0.0) for w in weights]
        rank, size = (0, 1) if comm is None else (comm.rank, comm.size)
        mine = range(rank * K // size, (rank + 1) * K // size)
        params = self.parameters()
        P = sum(g.size for _, _, g in params)
        nstat = 1 + 2 * len(self.metrics)
        grads = np.zeros((len(mine), P), self.dtype)   # one row per shard of this rank
        stats = np.zeros((len(mine), nstat))           # loss share, then (sum, count) per metric
        error = None
        try:
            for row, k in enumerate(mine):
                xs, ys, ls = parts[k]
                if xs.shape[0] == 0:
                    continue  # a batch smaller than K: an empty shard adds zeros
                streams = np.random.SeedSequence(key[0], spawn_key=(0xD15, *key[1:], k))
                for l, st in zip(self.layers, streams.spawn(len(self.layers))):
                    l._reseed_dropout(st)
                self.zero_grad()
                out = self.forward(xs, ls)
                value = self.loss.forward(out, ys, lengths=self._loss_lengths(ls))
                d = self.loss.backward()
                self.backward(d * d.dtype.type(scales[k]))
                off = 0
                for _, _, g in params:
                    grads[row, off:off + g.size] = g.reshape(-1)
                    off += g.size
                stats[row, 0] = scales[k] * value
                for j, m in enumerate(self.metrics):
                    stats[row, 1 + 2 * j:3 + 2 * j] = _METRICS[m](
                        self.loss, out, ys, self._loss_lengths(ls))
        except Exception as e:  # noqa: BLE001 - told to the other ranks, then raised
            if comm is None:
                raise
            error, failure = f"{type(e).__name__}: {e}", e
        if comm is not None:
            payload = np.concatenate([stats.view(np.uint8).reshape(-1),
                                      grads.view(np.uint8).reshape(-1)])
            try:
                rows = comm.exchange(payload, where, error)
            except _collective.RankFailed:
                if error is not None:
                    raise failure
                raise
            nsb = stats.nbytes
            stats = rows[:, :nsb].copy().view(np.float64).reshape(K, nstat)
            grads = rows[:, nsb:].copy().view(self.dtype).reshape(K, P)
        summed = grads[0].copy()
        for k in range(1, K):  # the fixed order that makes the bits rank-count free
            summed += grads[k]
        off = 0
        for _, _, g in params:
            g[...] = summed[off:off + g.size].reshape(g.shape)
            off += g.size
        self._update()
        value = 0.0
        msums = [(0.0, 0.0)] * len(self.metrics)
        for k in range(K):
            value += float(stats[k, 0])
            msums = [(a + float(stats[k, 1 + 2 * j]), b + float(stats[k, 2 + 2 * j]))
                     for j, (a, b) in enumerate(msums)]
        return value, msums

    def _epoch_callbacks(self, cbs, epoch, logs, history, comm):
        """The callbacks at an epoch's end; with `comm` every rank learns
        whether any failed or asked to stop. Returns whether to stop."""
        stop, error = False, None
        try:
            for cb in cbs:
                if cb.on_epoch_end(self, epoch, logs):
                    stop = True
                    history.stopped_by = type(cb).__name__
        except Exception as e:  # noqa: BLE001 - told to the other ranks, then raised
            if comm is None:
                raise
            error, failure = f"{type(e).__name__}: {e}", e
        if comm is not None:
            try:
                rows = comm.exchange(np.array([stop], np.uint8),
                                     f"in the callbacks after epoch {epoch + 1}", error)
            except _collective.RankFailed:
                if error is not None:
                    raise failure
                raise
            stop = bool(rows[:, 0].any())
        return stop

    def _evaluate(self, x, y, lengths, batch_size):
        sums, n = {"loss": 0.0}, 0
        metric_sums = {m: (0.0, 0.0) for m in self.metrics}
        # _run(..., training=False) is inference in every layer: no mode switch
        # (one would turn dropout off for the rest of fit, and race between
        # threads sharing the model)
        order = np.arange(x.shape[0])
        for xb, yb, lb in self._batches(x, y, lengths, batch_size, order):
            out = self._run(xb, lb, False)[0]
            value = self.loss(out, yb, lengths=self._loss_lengths(lb))
            sums["loss"] += value * xb.shape[0]
            n += xb.shape[0]
            for m in self.metrics:
                s, c = _METRICS[m](self.loss, out, yb, self._loss_lengths(lb))
                a, b = metric_sums[m]
                metric_sums[m] = (a + s, b + c)
        logs = {"loss": sums["loss"] / n}
        for m, (s, c) in metric_sums.items():
            logs[m] = s / c if c else float("nan")
        return logs

    def evaluate(self, x, y, lengths=None, batch_size=256):
        """Compute the loss and metrics over the whole data, in inference mode.

        Parameters
        ----------
        x : array_like or list
            Batch-first: (N, T) int ids when the first layer is an Embedding,
            (N, T, F) features, (N, F) per-sample features, or a list of N
            variable-length sequences (padded here; then no `lengths`).
        y : array_like
            Targets, as for `fit`.
        lengths : array_like of int, optional
            (N,) valid steps of each sequence of x, in 1..T (padding at the end);
            None: every sequence has T steps.
        batch_size : int, default 256
            Samples per batch.

        Returns
        -------
        dict of str to float
            {"loss": ..., metric: ...}.
        """
        self._check_compiled()
        batch_size = positive_int(batch_size, "batch_size")
        x, lengths = self._input(x, lengths)
        y = self._targets(y, x.shape[0])
        return self._evaluate(x, y, lengths, batch_size)

    def predict(self, x, lengths=None, batch_size=256):
        """Return the model's outputs through the loss's output activation.

        Class probabilities for cross-entropy and CTC, sigmoid for binary
        cross-entropy, raw values for MSE or before compile.

        Parameters
        ----------
        x : array_like or list
            Batch-first: (N, T) int ids when the first layer is an Embedding,
            (N, T, F) features, (N, F) per-sample features, or a list of N
            variable-length sequences (padded here; then no `lengths`).
        lengths : array_like of int, optional
            (N,) valid steps of each sequence of x, in 1..T (padding at the end);
            None: every sequence has T steps.
        batch_size : int, default 256
            Samples per batch.

        Returns
        -------
        numpy.ndarray
            (N, ...) per sample, or (N, T, ...) per step, zero at padding.
        """
        batch_size = positive_int(batch_size, "batch_size")
        x, lengths = self._input(x, lengths)
        # inference through _run(..., training=False): the model's mode is
        # neither read nor changed, so threads may share one model
        outs = []
        order = np.arange(x.shape[0])
        T = x.shape[1] if x.ndim >= 2 else None
        for xb, _, lb in self._batches(x, None, lengths, batch_size, order):
            out = self._run(xb, lb, False)[0]
            if self.loss is not None:
                out = self.loss.output_activation(out)
            if self.sequence_output and lb is not None:
                out = zero_padding(out, step_mask(lb, out.shape[0], out.shape[1], out.dtype))
                if out.shape[1] < T:
                    pad = np.zeros((out.shape[0], T - out.shape[1]) + out.shape[2:], out.dtype)
                    out = np.concatenate([out, pad], axis=1)
            outs.append(out)
        return np.concatenate(outs, axis=0)

    # ---- description and files ---------------------------------------------------------
    def summary(self, print_fn=print):
        """Describe the layers, their output sizes and parameter counts in a table.

        Parameters
        ----------
        print_fn : callable or None, default print
            Called with the table; None prints nothing.

        Returns
        -------
        str
            The table.
        """
        rows = [("#", "layer", "output (features)", "params")]
        total = 0
        for i, l in enumerate(self.layers):
            count = sum(p.size for _, p, _ in l.parameters())
            total += count
            desc = l.describe_output()
            rows.append((str(i), repr(l) if len(repr(l)) < 60 else type(l).__name__,
                         desc, f"{count:,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        line = "-" * (sum(widths) + 6)
        text = [line] + [" ".join(r[c].ljust(widths[c]) for c in range(4)) for r in rows[:1]]
        text += [line] + [" ".join(r[c].ljust(widths[c]) for c in range(4)) for r in rows[1:]]
        text += [line, f"total parameters: {total:,} ({self.dtype.name})"]
        if self.loss is not None:
            text.append(f"loss: {self.loss.name}, optimizer: {type(self.optimizer).__name__}"
                        + (f", clip_norm {self.clip_norm}" if self.clip_norm else ""))
        out = "\n".join(text)
        if print_fn is not None:
            print_fn(out)
        return out

    def save(self, path, include_optimizer=True):
        """Write the model to one data-only file: ``fr.save(self, path, include_optimizer)``.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write; ``fr.load`` reads it back.
        include_optimizer : bool, default True
            Also save the optimizer's state.
        """
        delegate("save")(self, path, include_optimizer=include_optimizer)

    def to_onnx(self, path=None, lengths=True, opset=17):
        """Export the model (inference) to ONNX (needs the onnx package).

        Inputs "x" ((N, T) int64 ids after an Embedding, else (N, T, F)) and, with
        lengths=True, "lengths" (N,) int64; output "y", what ``model(x, lengths)``
        returns. ``fr.to_onnx(self, ...)`` is the same call.

        Parameters
        ----------
        path : str or os.PathLike, optional
            Where to write it; None: only return it.
        lengths : bool, default True
            Add the "lengths" input.
        opset : int, default 17
            The ONNX opset.

        Returns
        -------
        onnx.ModelProto
            The model.
        """
        return delegate("to_onnx")(self, path, lengths=lengths, opset=opset)

    def __repr__(self):
        inner = ",\n  ".join(repr(l) for l in self.layers)
        return f"Sequential([\n  {inner}\n])"


def _copy_state(s):
    if s is None:
        return None
    if isinstance(s, tuple):
        return tuple(a.copy() for a in s)
    return s.copy()
