"""Losses with their gradients, and CTC decoding.

Every loss is an object with::

    value = loss.forward(output, target, lengths=None)  # keeps what backward needs
    doutput = loss.backward()                           # d value / d output
    value = loss(output, target, lengths=None)          # value only, keeps nothing
    probs = loss.output_activation(output)              # what predict() returns
    config = loss.get_config()                          # get(loss.name, **config) rebuilds it

`output` is what the model's last layer produced (logits for the classifying
losses); the value is a Python float, the gradient has output's shape and dtype
(float32 and float64 outputs keep their dtype; other real dtypes are computed
and returned as float64).

Sequences are batch-first, (B, T, ...), and `lengths` (B,) ints in 1..T gives
the valid steps of each: padding steps (t >= lengths[b]) add nothing to the
value, get an exact 0 gradient, and are not counted in any mean. lengths apply
to outputs with a time axis, i.e. of 3 or more dimensions; a per-sample output
((B, C) or (B,)) has no steps to mask and lengths are then ignored (a model
passes them with every batch).

Equations (x logits, lsm = log_softmax(x) over the last axis, p = softmax(x))::

  CrossEntropy    items i (samples, or valid steps) whose target y_i is not
                  ignore_index, with class weights w (1 by default), eps the
                  label smoothing, C classes, W = sum_i w[y_i]:
                    value = (1-eps) * sum_i w[y_i] (-lsm[i, y_i]) / W
                            + eps/C * sum_i sum_c w[c] (-lsm[i, c]) / W
                  as torch.nn.functional.cross_entropy(reduction="mean");
                    d value / d x[i] = a_i - p_i * sum_c a_ic, with
                    a_ic = -((1-eps) w[y_i] [c = y_i] + eps/C w[c]) / W.
                  No counted item (all ignored or padding), or W = 0: value 0.0
                  and a zero gradient (torch gives nan).
  BinaryCrossEntropy  with logits, pos_weight q (1 by default), targets y in [0, 1]:
                    l = (1-y) x + (1 + (q-1) y) softplus(-x),
                    softplus(-x) = max(-x, 0) + log1p(exp(-|x|))   (stable)
                    d l / d x = (1-y) - (1 + (q-1) y) sigmoid(-x);
                  value = mean of l over the valid elements.
  MSE             value = mean over valid elements of (x - y)^2, gradient 2 (x - y) / N.
  CTC             the negative log likelihood of the target labelling summed
                  over all alignments (Graves et al. 2006), from a C kernel
                  (src/ctc.h gives the alpha/beta recursions and the gradient
                  softmax - occupancy); reduction "mean" divides each sample's
                  loss by its target length (at least 1) and averages over the
                  batch, "sum" adds them: torch.nn.functional.ctc_loss on
                  log_softmax(x) in time-major order.
"""
import numbers

import numpy as np

from . import backends
from ._validate import lengths_array, to_numpy

__all__ = ["Loss", "CrossEntropy", "BinaryCrossEntropy", "MSE", "CTC", "get",
           "ctc_greedy_decode", "ctc_beam_decode", "edit_distance"]


# ---------------------------------------------------------------- helpers
def _float_output(output, name="output", min_ndim=1):
    """output as a float32/float64 array (other real dtypes become float64)."""
    arr = to_numpy(output, name)
    if arr.dtype.kind not in "fiu" or arr.dtype.kind == "f" and arr.dtype.itemsize > 8:
        raise TypeError(f"{name}: expected a real numeric array (float32 or float64), "
                        f"got dtype {arr.dtype}")
    if arr.dtype != np.float32 and arr.dtype != np.float64:
        arr = arr.astype(np.float64)
    if arr.ndim < min_ndim:
        raise ValueError(f"{name}: expected at least {min_ndim} dimension(s) "
                         f"(batch first), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name}: expected a non-empty batch, got shape {arr.shape}")
    return arr


def _int_array(value, name):
    arr = to_numpy(value, name)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integers, got dtype {arr.dtype}")
    return arr


def _step_mask(lengths, shape):
    """(B, T) bool mask of valid steps for an output of `shape` (B, T, ...),
    or None when every element counts (no lengths, or no time axis)."""
    if lengths is None or len(shape) < 3:
        return None
    B, T = shape[0], shape[1]
    L = lengths_array(lengths, T, B)
    return np.arange(T)[None, :] < L[:, None]


def _log_softmax(x):
    """Stable log_softmax over the last axis, in x's dtype."""
    m = np.max(x, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0).astype(x.dtype, copy=False)
    z = x - m
    return z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))


def _softmax(x):
    return np.exp(_log_softmax(x))


def _sigmoid(x):
    """Stable logistic function."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def _check_number(value, name, lo=None, hi=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not np.isfinite(value) or (lo is not None and value < lo) or (
            hi is not None and value > hi):
        raise ValueError(f"{name}: expected a finite number in [{lo}, {hi}], got {value}")
    return value


def _check_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} {value!r}")
    return int(value)


def _elements(target, lengths):
    """Valid elements of a target of output's shape: steps masked for (B, T, ...)."""
    y = np.asarray(target)
    if y.ndim < 3 or lengths is None:
        return float(y.size)
    steps = int(np.sum(np.minimum(np.asarray(lengths), y.shape[1])))
    return float(steps * int(np.prod(y.shape[2:])))


# ---------------------------------------------------------------- base class
class Loss:
    """Base class of the losses: a value from a model's output and its gradient.

    Subclasses implement ``_compute(output, target, lengths, want_grad, **extra)``
    returning ``(value, gradient or None)``.
    """

    name = "loss"

    def __init__(self):
        self._grad = None

    def _compute(self, output, target, lengths, want_grad, **extra):
        raise NotImplementedError

    def forward(self, output, target, lengths=None):
        """Compute the mean loss and keep its gradient for `backward`.

        Parameters
        ----------
        output : array_like
            What the model's last layer produced: (B, ...) per sample or
            (B, T, ...) per step (logits for the classifying losses).
        target : array_like
            The targets; their shape depends on the loss (see the class).
        lengths : array_like of int, optional
            (B,) valid steps of each sequence, in 1..T; padding steps add nothing.
            Ignored for outputs without a time axis.

        Returns
        -------
        float
            The loss value.
        """
        value, self._grad = self._compute(output, target, lengths, True)
        return value

    def backward(self):
        """Return the gradient of the last `forward`'s value with respect to its output.

        Returns
        -------
        numpy.ndarray
            d(value)/d(output), of output's shape and dtype; it belongs to the loss
            until the next `forward`.

        Raises
        ------
        RuntimeError
            If `forward` was not called first.
        """
        if self._grad is None:
            raise RuntimeError(f"{type(self).__name__}.backward: call forward() first")
        return self._grad

    def _weight(self, target, lengths):
        """What this loss divides its sum by for one batch, from the targets
        alone (no output needed: fit(shards=K) weighs each shard's mean by
        weight_k / sum of the weights); None for a loss that sums. A loss
        without it cannot train with shards > 1."""
        raise NotImplementedError

    def __call__(self, output, target, lengths=None):
        """The loss value only; keeps nothing."""
        return self._compute(output, target, lengths, False)[0]

    def output_activation(self, output):
        """Map a model's output to what `Sequential.predict` returns for this loss.

        Parameters
        ----------
        output : array_like
            The raw output of the model.

        Returns
        -------
        numpy.ndarray
            Probabilities for the classifying losses, the output itself otherwise.
        """
        return _float_output(output)

    def get_config(self):
        """Return the constructor arguments as a JSON-able dict.

        Returns
        -------
        dict
            ``fr.losses.get(loss.name, **config)`` rebuilds the loss.
        """
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


# ---------------------------------------------------------------- cross entropy
class CrossEntropy(Loss):
    """Softmax cross entropy from logits, per sample or per step.

    Output (B, C) with target (B,) class ids, or output (B, T, C) with target
    (B, T) per step (``lengths`` masks the steps).
    ``torch.nn.functional.cross_entropy(reduction="mean")`` semantics. A batch
    with no counted item gives 0.0 and a zero gradient (torch: nan).

    Parameters
    ----------
    ignore_index : int, default -100
        Targets equal to it are not counted.
    class_weights : array_like, optional
        (C,) weight of each class.
    label_smoothing : float, default 0.0
        In [0, 1]: the share of the target mass spread over all classes.

    Examples
    --------
    >>> import numpy as np
    >>> import fastrnn as fr
    >>> loss = fr.losses.CrossEntropy()
    >>> logits = np.array([[2.0, 0.0], [0.0, 2.0]], dtype=np.float32)
    >>> round(loss.forward(logits, np.array([0, 1])), 4)
    0.1269
    >>> loss.backward().shape
    (2, 2)
    """

    name = "cross_entropy"

    def __init__(self, ignore_index=-100, class_weights=None, label_smoothing=0.0):
        super().__init__()
        self.ignore_index = _check_int(ignore_index, "ignore_index")
        self.label_smoothing = _check_number(label_smoothing, "label_smoothing", 0.0, 1.0)
        if class_weights is None:
            self.class_weights = None
        else:
            w = to_numpy(class_weights, "class_weights")
            if w.dtype.kind not in "fiu":
                raise TypeError(f"class_weights: expected real numbers, got dtype {w.dtype}")
            w = np.array(w, dtype=np.float64)
            if w.ndim != 1 or w.size == 0:
                raise ValueError(f"class_weights: expected a 1-D array (C,), got shape {w.shape}")
            if not np.all(np.isfinite(w)) or np.any(w < 0):
                raise ValueError("class_weights: expected finite non-negative weights, "
                                 f"got {w.tolist()}")
            self.class_weights = w

    def get_config(self):
        return {"ignore_index": self.ignore_index,
                "class_weights": None if self.class_weights is None
                else self.class_weights.tolist(),
                "label_smoothing": self.label_smoothing}

    def output_activation(self, output):
        return _softmax(_float_output(output))

    def _compute(self, output, target, lengths, want_grad):
        x = _float_output(output)
        if x.ndim not in (2, 3):
            raise ValueError("output: expected logits (B, C) or (B, T, C), "
                             f"got shape {x.shape}")
        C = x.shape[-1]
        if C < 1:
            raise ValueError(f"output: expected at least one class, got shape {x.shape}")
        y = _int_array(target, "target")
        if y.shape != x.shape[:-1]:
            raise ValueError(f"target: expected class ids of shape {x.shape[:-1]} "
                             f"(output's shape without the class axis), got {y.shape}")
        w = self.class_weights
        if w is not None and w.shape[0] != C:
            raise ValueError(f"class_weights: expected {C} weights (output has {C} "
                             f"classes), got {w.shape[0]}")
        counted = y != self.ignore_index
        mask = _step_mask(lengths, x.shape)
        if mask is not None:
            counted &= mask
        bad = counted & ((y < 0) | (y >= C))
        if np.any(bad):
            raise ValueError(f"target: expected class ids in 0..{C - 1} or ignore_index="
                             f"{self.ignore_index}, got {y[bad].ravel()[0]}")
        eps = self.label_smoothing
        if w is None and eps == 0 and counted.all():
            return self._plain(x, y, want_grad)
        idx = np.flatnonzero(counted.ravel())
        xs = x.reshape(-1, C)[idx]
        ys = y.ravel()[idx].astype(np.intp)
        wy = np.ones(len(idx)) if w is None else w[ys]
        W = float(np.sum(wy))
        grad = np.zeros(x.shape, dtype=x.dtype) if want_grad else None
        if len(idx) == 0 or W == 0.0:
            return 0.0, grad
        lsm = _log_softmax(xs)
        rows = np.arange(len(idx))
        value = (1 - eps) * float(-np.sum(wy * lsm[rows, ys], dtype=np.float64)) / W
        if eps > 0:
            smooth = -(np.sum(lsm, dtype=np.float64) if w is None else float(np.sum(lsm * w, dtype=np.float64)))  # no BLAS gemv: its thread split could change the bits
            value += eps / C * smooth / W
        if want_grad:
            # d value / d lsm = a; through log_softmax: a - p * sum_c a
            r = ((1 - eps) * wy + eps / C * (C if w is None else float(np.sum(w)))) / W
            g = np.exp(lsm) * r[:, None].astype(x.dtype)
            g[rows, ys] -= ((1 - eps) * wy / W).astype(x.dtype)
            if eps > 0:
                g -= (eps / C / W * (np.ones(C) if w is None else w)).astype(x.dtype)
            grad.reshape(-1, C)[idx] = g
        return float(value), grad

    def _weight(self, target, lengths):
        # target (B,) for logits (B, C); (B, T) for (B, T, C): steps masked
        y = np.asarray(target)
        counted = y != self.ignore_index
        if y.ndim >= 2 and lengths is not None:
            counted &= np.arange(y.shape[1])[None, :] < np.asarray(lengths)[:, None]
        if self.class_weights is None:
            return float(np.count_nonzero(counted))
        ys = y[counted].astype(np.intp)
        return float(np.sum(self.class_weights[np.clip(ys, 0, len(self.class_weights) - 1)]))

    @staticmethod
    def _plain(x, y, want_grad):
        """The common case (every item counted, no class weights, no smoothing)
        without gathering and scattering rows: the same arithmetic as the
        general path, so the same bits, in about half the time (it matters
        for language models, whose loss sees every step of every window)."""
        C = x.shape[-1]
        lsm = _log_softmax(x.reshape(-1, C))
        n = lsm.shape[0]
        rows = np.arange(n)
        ys = y.ravel().astype(np.intp)
        value = float(-np.sum(lsm[rows, ys].astype(np.float64))) / n
        if not want_grad:
            return value, None
        inv = np.array(1.0 / n).astype(x.dtype)
        g = np.exp(lsm)
        g *= inv
        g[rows, ys] -= inv
        return value, g.reshape(x.shape)


# ---------------------------------------------------------------- binary cross entropy
class BinaryCrossEntropy(Loss):
    """Sigmoid and binary cross entropy from logits, numerically stable.

    As ``torch.nn.functional.binary_cross_entropy_with_logits(reduction="mean")``:
    target has output's shape, values in [0, 1]. Sequences (B, T, ...) are
    masked by ``lengths``.

    Parameters
    ----------
    pos_weight : float or array_like, optional
        Weight of the positive term: a number, or an array broadcast against
        output (e.g. (K,) for output (..., K)).
    """

    name = "binary_cross_entropy"

    def __init__(self, pos_weight=None):
        super().__init__()
        if pos_weight is None:
            self.pos_weight = None
        else:
            pw = to_numpy(pos_weight, "pos_weight")
            if pw.dtype.kind not in "fiu":
                raise TypeError(f"pos_weight: expected real numbers, got dtype {pw.dtype}")
            pw = np.array(pw, dtype=np.float64)
            if pw.ndim > 1:
                raise ValueError(f"pos_weight: expected a number or a 1-D array, got "
                                 f"shape {pw.shape}")
            if not np.all(np.isfinite(pw)):
                raise ValueError("pos_weight: expected finite values")
            self.pos_weight = pw

    def get_config(self):
        return {"pos_weight": None if self.pos_weight is None else self.pos_weight.tolist()}

    def output_activation(self, output):
        return _sigmoid(_float_output(output))

    def _weight(self, target, lengths):
        return _elements(target, lengths)

    def _compute(self, output, target, lengths, want_grad):
        x = _float_output(output)
        y = to_numpy(target, "target")
        if y.dtype.kind not in "fiub":
            raise TypeError(f"target: expected real numbers in [0, 1], got dtype {y.dtype}")
        if y.shape != x.shape:
            raise ValueError(f"target: expected output's shape {x.shape}, got {y.shape}")
        if self.pos_weight is not None:
            try:
                pw = np.broadcast_to(self.pos_weight, x.shape)
            except ValueError:
                raise ValueError(f"pos_weight: shape {self.pos_weight.shape} does not "
                                 f"broadcast against output's shape {x.shape}") from None
        mask = _step_mask(lengths, x.shape)
        if mask is not None:
            xs, ys = x[mask], y[mask]
            pws = None if self.pos_weight is None else pw[mask]
        else:
            xs, ys = x, y
            pws = None if self.pos_weight is None else pw
        ys = ys.astype(x.dtype)
        if not np.all((ys >= 0) & (ys <= 1)):
            raise ValueError("target: expected values in [0, 1]")
        n = xs.size
        grad = np.zeros(x.shape, dtype=x.dtype) if want_grad else None
        if n == 0:
            return 0.0, grad
        sp = np.maximum(-xs, 0) + np.log1p(np.exp(-np.abs(xs)))  # softplus(-x)
        lw = 1 if pws is None else (1 + (pws - 1) * ys).astype(x.dtype)
        value = float(np.sum((1 - ys) * xs + lw * sp, dtype=np.float64)) / n
        if want_grad:
            g = ((1 - ys) - lw * _sigmoid(-xs)) / x.dtype.type(n)
            if mask is not None:
                grad[mask] = g
            else:
                grad[...] = g
        return value, grad


# ---------------------------------------------------------------- mean squared error
class MSE(Loss):
    """Mean squared error; target of output's shape.

    Sequences (B, T, ...) are masked by ``lengths`` (the mean is over the valid
    elements only).
    """

    name = "mse"

    def _weight(self, target, lengths):
        return _elements(target, lengths)

    def _compute(self, output, target, lengths, want_grad):
        x = _float_output(output)
        y = to_numpy(target, "target")
        if y.dtype.kind not in "fiub":
            raise TypeError(f"target: expected real numbers, got dtype {y.dtype}")
        if y.shape != x.shape:
            raise ValueError(f"target: expected output's shape {x.shape}, got {y.shape}")
        mask = _step_mask(lengths, x.shape)
        d = (x[mask] - y[mask].astype(x.dtype)) if mask is not None else x - y.astype(x.dtype)
        n = d.size
        grad = np.zeros(x.shape, dtype=x.dtype) if want_grad else None
        if n == 0:
            return 0.0, grad
        value = float(np.sum(np.square(d), dtype=np.float64)) / n
        if want_grad:
            g = d * x.dtype.type(2.0 / n)
            if mask is not None:
                grad[mask] = g
            else:
                grad[...] = g
        return value, grad


# ---------------------------------------------------------------- CTC
def _ctc_targets(target, target_lengths, B, C, blank):
    """(targets (B, S) int64 C-contiguous, target_lengths (B,) int64), checked.

    target: (B, S) ints padded with -1, a list of B int sequences (each may
    end in -1 padding), or, with target_lengths, torch's 1-D concatenation.
    Without target_lengths a row's length is the count of labels before its
    -1 padding; with them, row b's first target_lengths[b] entries are used.
    """
    is_list = isinstance(target, (list, tuple)) or (
        isinstance(target, np.ndarray) and target.dtype == object)
    if is_list:
        seqs = list(target)
        if len(seqs) != B:
            raise ValueError(f"target: expected {B} label sequences (one per sample), "
                             f"got {len(seqs)}")
        rows = []
        for b, s in enumerate(seqs):
            a = to_numpy(s, f"target[{b}]")
            if a.ndim != 1:
                raise ValueError(f"target[{b}]: expected a 1-D sequence of labels, "
                                 f"got shape {a.shape}")
            if a.size and a.dtype.kind not in "iu":
                raise TypeError(f"target[{b}]: expected integer labels, got dtype {a.dtype}")
            rows.append(a.astype(np.int64))
        S = max((len(r) for r in rows), default=0)
        tg = np.full((B, S), -1, dtype=np.int64)
        for b, r in enumerate(rows):
            tg[b, :len(r)] = r
        avail = np.array([len(r) for r in rows], dtype=np.int64)
    else:
        arr = _int_array(target, "target")
        if arr.ndim == 1:
            if target_lengths is None:
                raise ValueError(
                    f"target: got a 1-D array of shape {arr.shape}; expected (B, S) "
                    "labels padded with -1, a list of B sequences, or a 1-D "
                    "concatenation of all labels together with target_lengths")
            tl = _ctc_target_lengths(target_lengths, B, None)
            if int(tl.sum()) != arr.shape[0]:
                raise ValueError(f"target: a 1-D target must hold sum(target_lengths) = "
                                 f"{int(tl.sum())} labels, got {arr.shape[0]}")
            S = int(tl.max()) if B else 0
            tg = np.full((B, S), -1, dtype=np.int64)
            starts = np.concatenate([[0], np.cumsum(tl)[:-1]])
            for b in range(B):
                tg[b, :tl[b]] = arr[starts[b]:starts[b] + tl[b]]
            _check_labels(tg, tl, C, blank)
            return tg, tl
        if arr.ndim != 2 or arr.shape[0] != B:
            raise ValueError(f"target: expected labels of shape ({B}, S) padded with -1, "
                             f"got shape {arr.shape}")
        tg = np.ascontiguousarray(arr, dtype=np.int64)
        S = tg.shape[1]
        avail = np.full(B, S, dtype=np.int64)
    if target_lengths is not None:
        tl = _ctc_target_lengths(target_lengths, B, avail)
    else:
        pad = tg == -1
        tl = (np.where(pad.any(axis=1), pad.argmax(axis=1), S) if S else
              np.zeros(B)).astype(np.int64)
        tl = np.minimum(tl, avail)
        after = np.arange(S)[None, :] >= tl[:, None]
        if np.any(after & ~pad):
            b = int(np.flatnonzero(np.any(after & ~pad, axis=1))[0])
            raise ValueError(f"target: sample {b} has labels after its -1 padding; "
                             "-1 may only pad the end of a label sequence")
    _check_labels(tg, tl, C, blank)
    return tg, tl


def _ctc_target_lengths(target_lengths, B, avail):
    tl = _int_array(target_lengths, "target_lengths")
    if tl.shape != (B,):
        raise ValueError(f"target_lengths: expected shape ({B},), got {tl.shape}")
    tl = np.ascontiguousarray(tl, dtype=np.int64)
    if np.any(tl < 0):
        raise ValueError(f"target_lengths: expected values >= 0, got {int(tl.min())}")
    if avail is not None and np.any(tl > avail):
        b = int(np.flatnonzero(tl > avail)[0])
        raise ValueError(f"target_lengths: sample {b} has target length {int(tl[b])} but "
                         f"its target holds only {int(avail[b])} labels")
    return tl


def _check_labels(tg, tl, C, blank):
    S = tg.shape[1]
    used = np.arange(S)[None, :] < tl[:, None]
    bad = used & ((tg < 0) | (tg >= C) | (tg == blank))
    if np.any(bad):
        b, i = (int(v[0]) for v in np.nonzero(bad))
        raise ValueError(f"target: sample {b} has label {int(tg[b, i])} at position {i}; "
                         f"expected labels in 0..{C - 1} other than blank={blank}")


class CTC(Loss):
    """Connectionist temporal classification loss on logits (B, T, C), batch-first.

    log_softmax is applied inside. ``lengths`` are the input lengths (B,) in
    1..T (None: all T). target: (B, S) ints padded with -1, a list of B int
    sequences, or (with ``target_lengths``) torch's 1-D concatenation; labels in
    0..C-1 other than blank; empty targets are allowed. A sample with no
    feasible alignment (input too short for its target, counting a blank between
    repeats) has loss inf and a NaN gradient on its valid frames, or 0 and a
    zero gradient with ``zero_infinity=True``, as
    ``torch.nn.functional.ctc_loss``. Computed by a C kernel over OpenMP
    threads, bit-identical for any thread count.

    Parameters
    ----------
    blank : int, default 0
        The class index of the blank.
    reduction : {"mean", "sum"}, default "mean"
        "mean": each sample's loss over its target length (at least 1), then the
        batch mean; "sum": their sum.
    zero_infinity : bool, default False
        Give infeasible samples loss 0 and a zero gradient.
    """

    name = "ctc"

    def __init__(self, blank=0, reduction="mean", zero_infinity=False):
        super().__init__()
        self.blank = _check_int(blank, "blank")
        if self.blank < 0:
            raise ValueError(f"blank: expected a class index >= 0, got {self.blank}")
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction: expected 'mean' or 'sum', got {reduction!r}")
        self.reduction = reduction
        if not isinstance(zero_infinity, (bool, np.bool_)):
            raise TypeError(f"zero_infinity: expected a bool, got {zero_infinity!r}")
        self.zero_infinity = bool(zero_infinity)

    def get_config(self):
        return {"blank": self.blank, "reduction": self.reduction,
                "zero_infinity": self.zero_infinity}

    def output_activation(self, output):
        return _softmax(_float_output(output))

    def forward(self, output, target, lengths=None, target_lengths=None):
        """Compute the CTC loss and keep its gradient for `backward`.

        Parameters
        ----------
        output : array_like
            (B, T, C) logits.
        target : array_like or list
            (B, S) labels padded with -1, a list of B label sequences, or with
            `target_lengths` the 1-D concatenation of all targets.
        lengths : array_like of int, optional
            (B,) input lengths in 1..T; None: all T.
        target_lengths : array_like of int, optional
            (B,) target lengths, for a 1-D concatenated `target`.

        Returns
        -------
        float
            The reduced loss.
        """
        value, self._grad = self._compute(output, target, lengths, True,
                                          target_lengths=target_lengths)
        return value

    def __call__(self, output, target, lengths=None, target_lengths=None):
        return self._compute(output, target, lengths, False,
                             target_lengths=target_lengths)[0]

    def losses(self, output, target, lengths=None, target_lengths=None):
        """Return the per-sample negative log likelihoods, unreduced.

        Parameters
        ----------
        output : array_like
            (B, T, C) logits.
        target : array_like or list
            As for `forward`.
        lengths : array_like of int, optional
            (B,) input lengths; None: all T.
        target_lengths : array_like of int, optional
            (B,) target lengths, for a 1-D concatenated `target`.

        Returns
        -------
        numpy.ndarray
            (B,) float64 losses (0 for infeasible samples with ``zero_infinity``).
        """
        x, il, tg, tl = self._inputs(output, target, lengths, target_lengths)
        return self._run(x, il, tg, tl, None, False)[0]

    def _inputs(self, output, target, lengths, target_lengths):
        x = _float_output(output)
        if x.ndim != 3:
            raise ValueError(f"output: expected logits (B, T, C), got shape {x.shape}")
        B, T, C = x.shape
        if T < 1 or C < 1:
            raise ValueError(f"output: expected T >= 1 and C >= 1, got shape {x.shape}")
        if self.blank >= C:
            raise ValueError(f"blank: {self.blank} is not a class of output, which has "
                             f"{C} classes")
        il = lengths_array(lengths, T, B)
        tg, tl = _ctc_targets(target, target_lengths, B, C, self.blank)
        return np.ascontiguousarray(x), il, tg, tl

    def _run(self, x, il, tg, tl, scale, want_grad):
        return backends.of(x).ctc(x, il, tg, tl, self.blank, self.zero_infinity, scale,
                                  want_grad)

    def _weight(self, target, lengths):
        # "mean": the batch mean of per-sample values; "sum": a plain sum
        if self.reduction == "sum":
            return None
        return float(len(target))

    def _compute(self, output, target, lengths, want_grad, target_lengths=None):
        x, il, tg, tl = self._inputs(output, target, lengths, target_lengths)
        B = x.shape[0]
        denom = np.maximum(tl, 1).astype(np.float64)
        scale = (1.0 / (B * denom)) if self.reduction == "mean" else None
        losses, grad = self._run(x, il, tg, tl, scale, want_grad)
        if self.reduction == "mean":
            value = float(np.mean(losses / denom))
        else:
            value = float(np.sum(losses))
        return value, grad


# ---------------------------------------------------------------- registry
_LOSSES = {
    "cross_entropy": CrossEntropy,
    "binary_cross_entropy": BinaryCrossEntropy,
    "mse": MSE,
    "ctc": CTC,
}
_ALIASES = {
    "categorical_crossentropy": "cross_entropy",
    "sparse_categorical_crossentropy": "cross_entropy",
    "crossentropy": "cross_entropy",
    "binary_crossentropy": "binary_cross_entropy",
    "bce": "binary_cross_entropy",
    "mean_squared_error": "mse",
}


def get(name_or_loss, **kwargs):
    """Return a Loss from its name, class or instance.

    Parameters
    ----------
    name_or_loss : str, Loss or type
        "cross_entropy", "binary_cross_entropy", "mse", "ctc" (or a Keras-style
        alias); a Loss instance is returned as it is, a Loss subclass is
        instantiated.
    **kwargs
        Constructor arguments of the loss.

    Returns
    -------
    Loss
        The loss object.

    Raises
    ------
    ValueError
        For an unknown name.
    TypeError
        For anything else than a name or a Loss.
    """
    if isinstance(name_or_loss, Loss):
        if kwargs:
            raise TypeError("get: constructor arguments given with a Loss instance: "
                            f"{sorted(kwargs)}")
        return name_or_loss
    if isinstance(name_or_loss, type) and issubclass(name_or_loss, Loss):
        return name_or_loss(**kwargs)
    if not isinstance(name_or_loss, str):
        raise TypeError(f"loss: expected a name or a Loss, got "
                        f"{type(name_or_loss).__name__} {name_or_loss!r}")
    key = name_or_loss.lower()
    key = _ALIASES.get(key, key)
    if key not in _LOSSES:
        raise ValueError(f"loss: unknown loss {name_or_loss!r}; known: "
                         f"{', '.join(sorted(_LOSSES))} (aliases: "
                         f"{', '.join(sorted(_ALIASES))})")
    return _LOSSES[key](**kwargs)


# ---------------------------------------------------------------- CTC decoding
def _decode_inputs(output, lengths):
    x = _float_output(output)
    if x.ndim != 3:
        raise ValueError(f"output: expected (B, T, C) scores, got shape {x.shape}")
    B, T, C = x.shape
    if T < 1 or C < 1:
        raise ValueError(f"output: expected T >= 1 and C >= 1, got shape {x.shape}")
    il = lengths_array(lengths, T, B)
    return x, (np.full(B, T, dtype=np.int64) if il is None else il)


def _decode_blank(blank, C):
    blank = _check_int(blank, "blank")
    if not 0 <= blank < C:
        raise ValueError(f"blank: expected a class index in 0..{C - 1}, got {blank}")
    return blank


def _label_sequence(s, name):
    """A list of the labels of a sequence (list, tuple, str, 1-D array)."""
    if isinstance(s, np.ndarray):
        if s.ndim != 1:
            raise ValueError(f"edit_distance: {name} must be 1-D, got shape {s.shape}")
        return s.tolist()
    if isinstance(s, (list, tuple, str, range)):
        return list(s)
    raise TypeError(f"edit_distance: {name} must be a sequence of labels (list, tuple, "
                    f"str or 1-D array), got {type(s).__name__}")


def edit_distance(a, b):
    """Return the Levenshtein distance between two label sequences.

    Insertions, deletions and substitutions cost 1: the numerator of a
    character error rate of decoded CTC output against its reference.

    Parameters
    ----------
    a, b : list, tuple, str or numpy.ndarray
        The label sequences (1-D).

    Returns
    -------
    int
        The edit distance.

    Examples
    --------
    >>> import fastrnn as fr
    >>> fr.edit_distance("kitten", "sitting")
    3
    """
    a, b = _label_sequence(a, "a"), _label_sequence(b, "b")
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]


def ctc_greedy_decode(output, lengths=None, blank=0):
    """Decode CTC output by best path: argmax per frame, repeats merged, blanks dropped.

    Parameters
    ----------
    output : array_like
        (B, T, C) logits, log-probabilities or probabilities (the argmax is the
        same).
    lengths : array_like of int, optional
        (B,) valid frames of each sample; None: all T.
    blank : int, default 0
        The blank's class index.

    Returns
    -------
    list of list of int
        B label sequences.

    Examples
    --------
    >>> import numpy as np
    >>> import fastrnn as fr
    >>> frames = np.eye(3)[[1, 1, 0, 1, 2, 2, 0]]    # (T=7, C=3) one-hot, blank 0
    >>> fr.ctc_greedy_decode(frames[None])
    [[1, 1, 2]]
    """
    x, il = _decode_inputs(output, lengths)
    blank = _decode_blank(blank, x.shape[2])
    best = np.argmax(x, axis=-1)
    out = []
    for b in range(x.shape[0]):
        path = best[b, :il[b]]
        keep = np.ones(len(path), dtype=bool)
        keep[1:] = path[1:] != path[:-1]
        path = path[keep]
        out.append([int(k) for k in path[path != blank]])
    return out


def _looks_like_probs(x):
    """Every row of x non-negative, at most 1 and summing to 1."""
    tol = 1e-3 if x.dtype == np.float32 else 1e-6
    return bool(np.all(x >= 0) and np.all(x <= 1)
                and np.all(np.abs(np.sum(x, axis=-1, dtype=np.float64) - 1) < tol))


def ctc_beam_decode(output, lengths=None, beam_width=8, blank=0, probs=None,
                    return_scores=False):
    """Decode CTC output by prefix beam search (Hannun et al. 2014) in log space.

    Each prefix keeps two log scores, ending in blank (pb) and not (pnb); per
    frame t with log-probabilities lp::

        same prefix:      pb'  = lse(pb, pnb) + lp[blank]
                          pnb' = pnb + lp[last label]       (repeat collapses)
        prefix + (c,):    pnb' = lse(pb, pnb) + lp[c],  or pb + lp[c] when c
                          repeats the prefix's last label (needs a blank between)

    the contributions reaching the same prefix are summed, and the
    `beam_width` prefixes of highest lse(pb', pnb') are kept (ties broken by
    order of generation, so the result is deterministic). With a beam wide
    enough to keep every prefix this is exact: the labelling of highest total
    probability over all its alignments.

    Parameters
    ----------
    output : array_like
        (B, T, C) logits or log-probabilities (log_softmax is applied, which
        leaves log-probabilities unchanged), or probabilities (their log is
        taken).
    lengths : array_like of int, optional
        (B,) valid frames of each sample; None: all T.
    beam_width : int, default 8
        Prefixes kept per frame.
    blank : int, default 0
        The blank's class index.
    probs : bool, optional
        Whether `output` holds probabilities; None tells them apart (valid rows
        in [0, 1] summing to 1 are probabilities; frames past `lengths` are not
        looked at).
    return_scores : bool, default False
        Also return the log-probability of each labelling.

    Returns
    -------
    labels : list of list of int
        B label sequences.
    scores : list of float
        Only with ``return_scores=True``: the B log-probabilities of those
        labellings as the beam computed them (exact when nothing was pruned).

    Examples
    --------
    >>> import numpy as np
    >>> import fastrnn as fr
    >>> frames = np.eye(3)[[1, 0, 1, 2]] * 0.9 + 0.1 / 3     # probabilities
    >>> fr.ctc_beam_decode(frames[None], beam_width=4)
    [[1, 1, 2]]
    """
    x, il = _decode_inputs(output, lengths)
    B, T, C = x.shape
    blank = _decode_blank(blank, C)
    beam_width = _check_int(beam_width, "beam_width")
    if beam_width < 1:
        raise ValueError(f"beam_width: expected an int >= 1, got {beam_width}")
    if probs is None:  # judged on the valid frames (predict() zeroes the padding)
        probs = _looks_like_probs(x[np.arange(T)[None, :] < il[:, None]])
    x = x.astype(np.float64)
    if probs:
        if np.any(x < 0):
            raise ValueError("output: probabilities must be >= 0")
        with np.errstate(divide="ignore"):
            lp = np.log(x)
    else:
        lp = _log_softmax(x)
    seqs, scores = [], []
    for b in range(B):
        seq, score = _prefix_beam(lp[b, :il[b]], beam_width, blank)
        seqs.append(seq)
        scores.append(score)
    return (seqs, scores) if return_scores else seqs


def _prefix_beam(lp, beam_width, blank):
    """Prefix beam search over lp (L, C) log-probabilities; (labels, log p)."""
    C = lp.shape[1]
    labels = np.array([c for c in range(C) if c != blank], dtype=np.intp)
    col = {int(c): j for j, c in enumerate(labels)}  # label -> column of ext
    prefixes = [()]
    pb = np.array([0.0])
    pnb = np.array([-np.inf])
    for row in lp:
        N = len(prefixes)
        ptot = np.logaddexp(pb, pnb)
        last = np.array([p[-1] if p else -1 for p in prefixes], dtype=np.intp)
        has_last = last >= 0
        new_pb = ptot + row[blank]
        new_pnb = np.where(has_last, pnb + row[np.where(has_last, last, 0)], -np.inf)
        ext = ptot[:, None] + row[labels][None, :]  # (N, C-1): prefix i + label j
        for i in np.flatnonzero(has_last):
            j = col[int(last[i])]
            ext[i, j] = pb[i] + row[last[i]]
        # an extension that is already a prefix of the beam adds to its pnb
        index = {p: i for i, p in enumerate(prefixes)}
        for k, p in enumerate(prefixes):
            if p:
                i = index.get(p[:-1])
                if i is not None:
                    j = col[p[-1]]
                    new_pnb[k] = np.logaddexp(new_pnb[k], ext[i, j])
                    ext[i, j] = -np.inf
        scores = np.concatenate([np.logaddexp(new_pb, new_pnb), ext.ravel()])
        order = np.argsort(-scores, kind="stable")[:beam_width]
        kept = order[scores[order] > -np.inf]
        if len(kept) == 0:
            kept = order[:1]
        nlab = len(labels)
        nxt, nb, nn = [], [], []
        for m in kept:
            if m < N:
                nxt.append(prefixes[m])
                nb.append(new_pb[m])
                nn.append(new_pnb[m])
            else:
                i, j = divmod(int(m) - N, nlab)
                nxt.append(prefixes[i] + (int(labels[j]),))
                nb.append(-np.inf)
                nn.append(ext[i, j])
        prefixes, pb, pnb = nxt, np.array(nb), np.array(nn)
    total = np.logaddexp(pb, pnb)
    best = int(np.argmax(total))
    return list(prefixes[best]), float(total[best])
