"""Estimators for scikit-learn over fastrnn models: RNNClassifier, RNNRegressor.

::

    from fastrnn.sklearn import RNNClassifier
    clf = RNNClassifier(cell="gru", hidden_size=32, pooling="mean", epochs=30,
                        random_state=0).fit(X, y)
    clf.predict(X_test); clf.predict_proba(X_test); clf.score(X_test, y_test)

Each estimator builds, on fit, a Sequential of one recurrent layer stack
(batch-first), a pooling layer, an optional Dropout and a Dense head, and
trains it with Sequential.fit. X is a 3-D array (N, T, F) of N sequences of T
steps of F features, a 2-D array (N, T) (one feature per step: (N, T, 1)) or a
list of N sequences of different lengths, each (T_i, F) or (T_i,), padded
here and run with their lengths. docs/sklearn.md has the parameter table and
the estimator checks that do not apply to sequences.

Needs scikit-learn >= 1.6 (pip install "fastrnn[sklearn]"); ``import fastrnn``
never imports this module or scikit-learn.
"""
import inspect
import numbers

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import (check_array, check_consistent_length,
                                          check_is_fitted, column_or_1d)
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("fastrnn.sklearn needs scikit-learn >= 1.6: "
                      "pip install 'fastrnn[sklearn]' (or scikit-learn)") from e

from . import optim as _optim
from ._validate import as_dtype, positive_int
from .layers import AttentionPooling, Dense, Dropout, LastStep, MaxPooling, MeanPooling
from .model import EarlyStopping, Sequential
from .recurrent import GRU, LSTM, RNN

__all__ = ["RNNClassifier", "RNNRegressor"]

_CELLS = {"lstm": LSTM, "gru": GRU, "rnn": RNN}
_POOLINGS = ("last", "mean", "max", "attention")
_OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
# parameters that shape the network: warm_start keeps the fitted network
# only while none of them changes
_ARCHITECTURE = ("cell", "hidden_size", "num_layers", "bidirectional", "pooling",
                 "dropout", "dtype")
_PREDICT_BATCH = 256


# ---- checks of the constructor parameters (at fit, as scikit-learn does) ----------
def _choice(value, name, choices):
    if not isinstance(value, str) or value.lower() not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, "
                         f"got {value!r}")
    return value.lower()


def _real(value, name, lo, hi=None, lo_open=False, hi_open=True):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not np.isfinite(value):
        raise TypeError(f"{name}: expected a finite number, got {value!r}")
    value = float(value)
    bad_lo = value <= lo if lo_open else value < lo
    bad_hi = hi is not None and (value >= hi if hi_open else value > hi)
    if bad_lo or bad_hi:
        span = f"{'(' if lo_open else '['}{lo}, {'inf' if hi is None else hi}" \
               f"{')' if hi is None or hi_open else ']'}"
        raise ValueError(f"{name}: expected a number in {span}, got {value!r}")
    return value


def _flag(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


# ---- inputs ------------------------------------------------------------------------
def _is_sequence_list(X):
    """A list (or 1-D object array) of sequences of different shapes; a list
    whose items all share one shape is read as one array instead."""
    if isinstance(X, np.ndarray):
        if X.dtype != object or X.ndim != 1:
            return False
    elif not isinstance(X, (list, tuple)):
        return False
    if len(X) == 0:
        return False
    shapes = set()
    for s in X:
        if not hasattr(s, "__len__") or isinstance(s, (str, bytes, dict)):
            return False
        shapes.add(np.shape(s))
    return len(shapes) > 1


def _to_sequences(X, dtype, name="X"):
    """X as (x (N, T, F) of `dtype`, lengths (N,) int64 or None when every
    sequence has T steps). Errors name X (X[i] for one sequence)."""
    if _is_sequence_list(X):
        seqs = []
        for i, s in enumerate(X):
            if len(s) == 0:
                raise ValueError(f"{name}[{i}]: empty sequence (every sequence needs at "
                                 "least 1 step)")
            a = check_array(s, ensure_2d=False, dtype=dtype, input_name=f"{name}[{i}]")
            if a.ndim == 1:
                a = a[:, None]
            elif a.ndim != 2:
                raise ValueError(f"{name}[{i}]: expected a sequence (T, F) or (T,), got "
                                 f"shape {a.shape}")
            if a.shape[1] == 0:
                raise ValueError(f"{name}[{i}]: expected at least 1 feature per step, got "
                                 f"shape {a.shape}")
            if seqs and a.shape[1] != seqs[0].shape[1]:
                raise ValueError(f"{name}[{i}]: expected {seqs[0].shape[1]} features per step "
                                 f"(as {name}[0]), got shape {a.shape}")
            seqs.append(a)
        lengths = np.array([len(s) for s in seqs], np.int64)
        x = np.zeros((len(seqs), int(lengths.max()), seqs[0].shape[1]), dtype)
        for i, s in enumerate(seqs):
            x[i, :len(s)] = s
        return x, lengths
    x = check_array(X, ensure_2d=False, allow_nd=True, dtype=dtype, input_name=name)
    if x.ndim == 2:
        x = x[:, :, None]
    elif x.ndim != 3:
        raise ValueError(
            f"{name}: expected sequences (N, T, F), (N, T) (one feature per step) or a "
            f"list of (T_i, F) arrays, got a {x.ndim}-D array of shape {x.shape}. "
            "Reshape your data: x.reshape(1, -1) for one sequence of T steps, "
            "x.reshape(-1, 1) for N sequences of one step")
    if x.shape[1] == 0 or x.shape[2] == 0:
        raise ValueError(f"{name}: expected at least 1 step and 1 feature per sequence, "
                         f"got shape {x.shape}")
    return np.ascontiguousarray(x), None


def _subset(x, lengths, idx):
    """Rows idx of padded sequences, cut to their longest sequence."""
    xs = x[idx]
    if lengths is None:
        return xs, None
    ls = lengths[idx]
    T = int(ls.max())
    return np.ascontiguousarray(xs[:, :T]), (None if np.all(ls == T) else ls)


_PARAMETERS_DOC = """
    Parameters
    ----------
    cell : {{"lstm", "gru", "rnn"}}, default="lstm"
        The recurrent cell: fr.LSTM, fr.GRU or fr.RNN (tanh).
    hidden_size : int, default=32
        Units of each recurrent layer (per direction).
    num_layers : int, default=1
        Stacked recurrent layers.
    bidirectional : bool, default=False
        Run each recurrent layer in both directions (the pooled features
        are then ``2 * hidden_size`` wide).
    pooling : {{"last", "mean", "max", "attention"}}, default="last"
        How a sequence becomes one vector: the output at its last valid
        step (fr.LastStep; with ``bidirectional`` the reverse half has then
        seen one step only), the mean or maximum over its valid steps, or
        additive attention (fr.AttentionPooling). Padding never takes part.
    dropout : float, default=0.0
        Dropout probability between stacked recurrent layers and before the
        output layer, in training only.
    epochs : int, default=100
        The most passes over the training data a ``fit`` makes (scikit-learn's
        ``max_iter``); training stops earlier as ``tol`` and
        ``n_iter_no_change`` say.
    batch_size : int, default=32
        Sequences per gradient step.
    optimizer : {{"adam", "adamw", "sgd", "rmsprop"}}, default="adam"
        The fr.optim optimizer.
    learning_rate : float, default=1e-3
        Its learning rate.
    weight_decay : float, default=0.0
        L2 penalty of the optimizer (decoupled for "adamw").
    clip_norm : float or None, default=5.0
        Global-norm gradient clipping (None: no clipping); a step whose
        gradient norm is not finite is skipped.
    shuffle : bool, default=True
        Shuffle the training sequences before each epoch.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data and stop when
        its loss has not improved by ``tol`` for ``n_iter_no_change`` epochs;
        the weights of the best epoch are restored. Without it training stops
        when the training loss has not improved so, and the last weights are
        kept.{stratified}
    validation_fraction : float, default=0.1
        The held-out part with ``early_stopping``, in (0, 1).
    n_iter_no_change : int, default=10
        Epochs without improvement before training stops.
    tol : float, default=1e-4
        The smallest decrease of the monitored loss that counts as an
        improvement.
    warm_start : bool, default=False
        ``fit`` continues from the fitted network and its optimizer state
        instead of starting anew (the parameters that shape the network and
        the {targets} must stay the same).
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the shuffling, the dropout masks and the
        validation split: an int gives the same weights, bit for bit, on
        every fit and at any thread count.
    verbose : int, default=0
        0 silent, 1 a progress line per epoch, 2 one line per epoch.
    dtype : {{"float32", "float64"}}, default="float32"
        The network's float type; X is converted to it.
"""

_ATTRIBUTES_DOC = """
    model_ : fastrnn.Sequential
        The trained network (recurrent layers, pooling, dropout, Dense):
        ``fr.save(est.model_, path)`` writes it, ``model_.predict`` runs it.
    n_features_in_ : int
        Features per time step, F (1 for a 2-D X); not ``X.shape[1]``,
        which for a 2-D X counts time steps.
    history_ : dict of str to list of float
        Per epoch, over the whole life of the network (warm starts and
        ``partial_fit`` append): "loss", "lr" and, with ``early_stopping``,
        "val_loss".
    n_iter_ : int
        Epochs trained in all, ``len(history_["loss"])``.
    best_epoch_ : int or None
        With ``early_stopping``, the index into ``history_`` of the epoch
        whose weights were restored at the end of the last ``fit``; None
        otherwise.
    best_validation_loss_ : float or None
        Its validation loss (None without ``early_stopping``).
"""


class _RNNEstimator(BaseEstimator):
    """The parameters, inputs and training shared by RNNClassifier and
    RNNRegressor; subclasses define the targets (_targets, _n_outputs)."""

    def __init__(self, cell="lstm", hidden_size=32, num_layers=1, bidirectional=False,
                 pooling="last", dropout=0.0, epochs=100, batch_size=32, optimizer="adam",
                 learning_rate=1e-3, weight_decay=0.0, clip_norm=5.0, shuffle=True,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=10,
                 tol=1e-4, warm_start=False, random_state=None, verbose=0, dtype="float32"):
        self.cell = cell
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.pooling = pooling
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.clip_norm = clip_norm
        self.shuffle = shuffle
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.warm_start = warm_start
        self.random_state = random_state
        self.verbose = verbose
        self.dtype = dtype

    # ---- parameters ----------------------------------------------------------------
    def _checked_params(self):
        """The constructor parameters checked, as a dict (errors name them)."""
        p = {"cell": _choice(self.cell, "cell", tuple(_CELLS)),
             "hidden_size": positive_int(self.hidden_size, "hidden_size"),
             "num_layers": positive_int(self.num_layers, "num_layers"),
             "bidirectional": _flag(self.bidirectional, "bidirectional"),
             "pooling": _choice(self.pooling, "pooling", _POOLINGS),
             "dropout": _real(self.dropout, "dropout", 0.0, 1.0),
             "epochs": positive_int(self.epochs, "epochs"),
             "batch_size": positive_int(self.batch_size, "batch_size"),
             "optimizer": _choice(self.optimizer, "optimizer", _OPTIMIZERS),
             "learning_rate": _real(self.learning_rate, "learning_rate", 0.0, lo_open=True),
             "weight_decay": _real(self.weight_decay, "weight_decay", 0.0),
             "clip_norm": (None if self.clip_norm is None else
                           _real(self.clip_norm, "clip_norm", 0.0, lo_open=True)),
             "shuffle": _flag(self.shuffle, "shuffle"),
             "early_stopping": _flag(self.early_stopping, "early_stopping"),
             "validation_fraction": _real(self.validation_fraction, "validation_fraction",
                                          0.0, 1.0, lo_open=True),
             "n_iter_no_change": positive_int(self.n_iter_no_change, "n_iter_no_change"),
             "tol": _real(self.tol, "tol", 0.0),
             "warm_start": _flag(self.warm_start, "warm_start")}
        if isinstance(self.verbose, bool) or self.verbose not in (0, 1, 2):
            raise ValueError(f"verbose: expected 0, 1 or 2, got {self.verbose!r}")
        p["verbose"] = int(self.verbose)
        try:
            p["dtype"] = as_dtype(self.dtype).name
        except TypeError:
            raise ValueError(f"dtype: expected 'float32' or 'float64', got "
                             f"{self.dtype!r}") from None
        return p

    def _seed(self):
        """A fresh int seed drawn from random_state (scikit-learn's rules: an
        int gives the same seed every time, None the global RandomState)."""
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    # ---- the network -------------------------------------------------------------------
    def _build(self, p, n_features, n_outputs, seed):
        dt = p["dtype"]
        D = 2 if p["bidirectional"] else 1
        width = D * p["hidden_size"]
        rec = _CELLS[p["cell"]](n_features, p["hidden_size"], num_layers=p["num_layers"],
                                batch_first=True,
                                dropout=p["dropout"] if p["num_layers"] > 1 else 0.0,
                                bidirectional=p["bidirectional"], dtype=dt)
        pool = {"last": lambda: LastStep(dtype=dt), "mean": lambda: MeanPooling(dtype=dt),
                "max": lambda: MaxPooling(dtype=dt),
                "attention": lambda: AttentionPooling(width, dtype=dt)}[p["pooling"]]()
        layers = [rec, pool]
        if p["dropout"] > 0:
            layers.append(Dropout(p["dropout"], dtype=dt))
        layers.append(Dense(width, n_outputs, dtype=dt))
        model = Sequential(layers, seed=seed)
        model.compile(self._loss_name, optimizer=self._new_optimizer(p),
                      clip_norm=p["clip_norm"])
        self._optimizer_config = self._optimizer_key(p)
        self._architecture = tuple(p[k] for k in _ARCHITECTURE)
        return model

    @staticmethod
    def _optimizer_key(p):
        return (p["optimizer"], p["learning_rate"], p["weight_decay"])

    @staticmethod
    def _new_optimizer(p):
        return _optim.get(p["optimizer"], lr=p["learning_rate"],
                          weight_decay=p["weight_decay"])

    def _check_continuable(self, p, x):
        """The fitted network can train on: the parameters that shape it have
        not changed, and x has its features per step (checked before
        anything changes)."""
        changed = [k for k, old in zip(_ARCHITECTURE, self._architecture) if p[k] != old]
        if changed:
            k = changed[0]
            raise ValueError(
                f"{k}: changed from {self._architecture[_ARCHITECTURE.index(k)]!r} to "
                f"{p[k]!r} since the network was fitted; warm_start and partial_fit "
                "continue the same network (set warm_start=False to fit a new one)")
        self._check_features(x)

    def _reuse(self, p):
        """Prepare the fitted network for more training: a changed optimizer
        setting gives a new optimizer (its state starts again), clip_norm
        applies as it is."""
        model = self.model_
        if self._optimizer_key(p) != self._optimizer_config:
            model.compile(self._loss_name, optimizer=self._new_optimizer(p),
                          clip_norm=p["clip_norm"])
            self._optimizer_config = self._optimizer_key(p)
        else:
            model.clip_norm = p["clip_norm"]

    def _check_features(self, x, name="X"):
        if x.shape[2] != self.n_features_in_:
            raise ValueError(f"{name} has {x.shape[2]} features per step, but "
                             f"{type(self).__name__} is expecting {self.n_features_in_} "
                             "features per step as input")

    def _record(self, history):
        for k, v in history.history.items():
            self.history_.setdefault(k, []).extend(float(a) for a in v)
        self.n_iter_ = len(self.history_.get("loss", []))

    # ---- training ----------------------------------------------------------------------
    def _fit(self, X, y, p):
        self._need_y(y)
        x, lengths = _to_sequences(X, np.dtype(p["dtype"]))
        check_consistent_length(x, y)
        fresh = not (p["warm_start"] and hasattr(self, "model_"))
        if not fresh:
            self._check_continuable(p, x)
        t = self._targets(y, fresh, "fit", p["dtype"])
        seed = self._seed()
        self._base_seed, self._partial_calls = seed, 0  # a later partial_fit goes on
        if fresh:
            self.n_features_in_ = x.shape[2]
            model = self._build(p, x.shape[2], self._n_outputs(), seed)
            history = {}
        else:
            self._reuse(p)
            model = self.model_
            history = self.history_
        validation, stop = None, None
        if p["early_stopping"]:
            tr, va = self._split(len(x), t, p["validation_fraction"], seed)
            xv, lv = _subset(x, lengths, va)
            validation = (xv, t[va]) if lv is None else (xv, t[va], lv)
            x, lengths = _subset(x, lengths, tr)
            t = t[tr]
            stop = EarlyStopping("val_loss", patience=p["n_iter_no_change"],
                                 min_delta=p["tol"], mode="min", restore_best_weights=True)
        else:
            stop = EarlyStopping("loss", patience=p["n_iter_no_change"], min_delta=p["tol"],
                                 mode="min", restore_best_weights=False)
        before = len(history.get("loss", []))
        h = model.fit(x, t, lengths=lengths, epochs=p["epochs"], batch_size=p["batch_size"],
                      validation_data=validation, shuffle=p["shuffle"], seed=seed,
                      verbose=p["verbose"], callbacks=[stop])
        self.model_ = model
        self.history_ = history
        self._record(h)
        if p["early_stopping"] and stop.best_epoch is not None:
            self.best_epoch_ = before + int(stop.best_epoch)
            self.best_validation_loss_ = float(stop.best)
        else:
            self.best_epoch_ = None
            self.best_validation_loss_ = None
        return self

    def _partial_fit(self, X, y, p, classes=None):
        self._need_y(y)
        x, lengths = _to_sequences(X, np.dtype(p["dtype"]))
        check_consistent_length(x, y)
        fresh = not hasattr(self, "model_")
        if fresh:
            if classes is not None or self._needs_classes():
                self._set_classes(classes)
        else:
            self._check_continuable(p, x)
            if classes is not None:
                self._check_same_classes(classes)
        t = self._targets(y, fresh, "partial_fit", p["dtype"])
        if fresh:
            self._base_seed = self._seed()
            self.n_features_in_ = x.shape[2]
            self.model_ = self._build(p, x.shape[2], self._n_outputs(), self._base_seed)
            self.history_ = {}
            self._partial_calls = 0
            self.best_epoch_ = None
            self.best_validation_loss_ = None
        else:
            self._reuse(p)
        # one seed per call, the same for the same sequence of calls
        seed = int(np.random.SeedSequence([self._base_seed, self._partial_calls])
                   .generate_state(1)[0] & 0x7FFFFFFF)
        self._partial_calls += 1
        h = self.model_.fit(x, t, lengths=lengths, epochs=1, batch_size=p["batch_size"],
                            shuffle=p["shuffle"], seed=seed, verbose=p["verbose"])
        self._record(h)
        return self

    def _need_y(self, y):
        if y is None:
            raise ValueError(f"y: {type(self).__name__} requires y to be passed, but the "
                             "target y is None")

    def _split(self, n, t, fraction, seed):
        n_val = int(np.ceil(fraction * n))
        if n_val < 1 or n - n_val < 1:
            raise ValueError(f"validation_fraction: {fraction} of {n} samples leaves "
                             f"{n_val} for validation and {n - n_val} for training; "
                             "early_stopping needs at least 1 of each")
        idx = np.arange(n)
        tr, va = train_test_split(idx, test_size=n_val, random_state=seed,
                                  stratify=self._stratify(t, n_val))
        return np.sort(tr), np.sort(va)

    def _stratify(self, t, n_val):
        return None

    def _predict_raw(self, X):
        check_is_fitted(self, "model_")
        x, lengths = _to_sequences(X, self.model_.dtype)
        self._check_features(x)
        return self.model_.predict(x, lengths=lengths, batch_size=_PREDICT_BATCH)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.input_tags.allow_nan = False
        return tags


def _class_doc(summary, stratified, targets, attributes, see_also, examples):
    """A class docstring from its parts and the shared Parameters and
    Attributes sections (one text for both estimators)."""
    parts = [inspect.cleandoc(summary),
             inspect.cleandoc(_PARAMETERS_DOC).format(stratified=stratified, targets=targets),
             "Attributes\n----------\n" + inspect.cleandoc(attributes) + "\n"
             + inspect.cleandoc(_ATTRIBUTES_DOC),
             "See Also\n--------\n" + see_also,
             "Examples\n--------\n>>> import numpy as np\n"
             ">>> X = np.random.default_rng(0).normal(size=(60, 12, 3))  # 60 sequences\n"
             + inspect.cleandoc(examples)]
    return "\n\n".join(parts) + "\n"


class RNNClassifier(ClassifierMixin, _RNNEstimator):
    __doc__ = _class_doc(
        """A recurrent network that classifies sequences.

        A recurrent layer stack (LSTM, GRU or RNN), a pooling over the valid
        steps, optional dropout and a Dense layer of one logit per class,
        trained with cross-entropy. X is (N, T, F), (N, T) (one feature per
        step) or a list of sequences of different lengths, each (T_i, F) or
        (T_i,); y holds one label per sequence, of any type ``np.unique``
        sorts (ints, strings, ...).""",
        stratified=("\n    The held-out part is stratified by class where every class "
                    "has two members."),
        targets="classes",
        attributes="""
        classes_ : ndarray of shape (n_classes,)
            The class labels, sorted; column i of ``predict_proba`` is
            ``classes_[i]``.""",
        see_also="RNNRegressor : The same network with a regression head.",
        examples="""
        >>> y = np.where(X[:, :, 0].mean(axis=1) > 0, "up", "down")
        >>> from fastrnn.sklearn import RNNClassifier
        >>> clf = RNNClassifier(cell="gru", hidden_size=16, epochs=20, random_state=0)
        >>> clf.fit(X, y).predict(X[:3]).shape
        (3,)
        >>> clf.predict_proba(X[:3]).shape
        (3, 2)""")

    _loss_name = "cross_entropy"

    def fit(self, X, y):
        """Train a network on sequences X and labels y.

        Without ``warm_start`` a new network is built and trained for at most
        ``epochs`` epochs; with it the fitted network trains on.

        Parameters
        ----------
        X : array-like of shape (N, T, F) or (N, T), or list of N arrays
            The sequences: N sequences of T steps of F features, (N, T) for
            one feature per step, or a list of sequences of different
            lengths, each (T_i, F) or (T_i,).
        y : array-like of shape (N,)
            One label per sequence (any sortable, hashable values).

        Returns
        -------
        RNNClassifier
            The fitted estimator (``self``).

        Raises
        ------
        ValueError
            When a parameter, X or y is invalid (the message names it), when
            X and y hold different numbers of samples, or, with
            ``warm_start``, when the classes or the network's shape changed.
        TypeError
            When X is sparse or holds values that are not numbers.

        See Also
        --------
        partial_fit : One epoch, continuing the network.
        predict : Labels of new sequences.

        Examples
        --------
        >>> import numpy as np
        >>> X = np.random.default_rng(0).normal(size=(60, 12, 3)).astype(np.float32)
        >>> y = (X[:, -1, 0] > 0).astype(int)
        >>> RNNClassifier(hidden_size=8, epochs=5, random_state=0).fit(X, y).classes_
        array([0, 1])
        """
        p = self._checked_params()
        return self._fit(X, y, p)


    def partial_fit(self, X, y, classes=None):
        """Train one epoch on X and y, continuing the network if fitted.

        The first call builds the network and must name every class; the
        later calls continue it with its optimizer state (``early_stopping``,
        ``tol`` and ``n_iter_no_change`` do not apply).

        Parameters
        ----------
        X : array-like of shape (N, T, F) or (N, T), or list of N arrays
            The sequences, as for ``fit``.
        y : array-like of shape (N,)
            One label per sequence, each among the classes.
        classes : array-like of shape (n_classes,), default=None
            Every class of the whole training data; required on the first
            call, and when given later it must be the same classes.

        Returns
        -------
        RNNClassifier
            The updated estimator (``self``).

        Raises
        ------
        ValueError
            When ``classes`` is missing on the first call or differs later,
            when y holds a label outside the classes, or as ``fit`` raises.

        See Also
        --------
        fit : Train for up to ``epochs`` epochs.

        Examples
        --------
        >>> import numpy as np
        >>> X = np.random.default_rng(0).normal(size=(60, 12, 3)).astype(np.float32)
        >>> y = (X[:, -1, 0] > 0).astype(int)
        >>> clf = RNNClassifier(hidden_size=8, random_state=0)
        >>> for part in np.array_split(np.arange(60), 3):
        ...     clf = clf.partial_fit(X[part], y[part], classes=[0, 1])
        >>> clf.n_iter_
        3
        """
        p = self._checked_params()
        return self._partial_fit(X, y, p, classes=classes)


    def predict_proba(self, X):
        """Class probabilities of each sequence.

        The softmax of the network's outputs, computed in batches of 256
        sequences in inference mode (no dropout).

        Parameters
        ----------
        X : array-like of shape (N, T, F) or (N, T), or list of N arrays
            The sequences, as for ``fit``, with ``n_features_in_`` features
            per step; their lengths may differ from the training data's.

        Returns
        -------
        ndarray of shape (N, n_classes)
            Softmax probabilities in the network's dtype; column i is
            ``classes_[i]``.

        Raises
        ------
        NotFittedError
            Before ``fit`` or ``partial_fit``.
        ValueError
            When X is invalid or has another number of features per step.

        See Also
        --------
        predict : The most probable labels.

        Examples
        --------
        >>> import numpy as np
        >>> X = np.random.default_rng(0).normal(size=(60, 12, 3)).astype(np.float32)
        >>> y = (X[:, -1, 0] > 0).astype(int)
        >>> clf = RNNClassifier(hidden_size=8, epochs=5, random_state=0).fit(X, y)
        >>> bool(np.allclose(clf.predict_proba(X).sum(axis=1), 1))
        True
        """
        return self._predict_raw(X)


    def predict(self, X):
        """The most probable class of each sequence.

        The label of the largest column of ``predict_proba``.

        Parameters
        ----------
        X : array-like of shape (N, T, F) or (N, T), or list of N arrays
            The sequences, as for ``predict_proba``.

        Returns
        -------
        ndarray of shape (N,)
            Labels from ``classes_``.

        Raises
        ------
        NotFittedError
            Before ``fit`` or ``partial_fit``.
        ValueError
            When X is invalid or has another number of features per step.

        See Also
        --------
        predict_proba : The probabilities of every class.

        Examples
        --------
        >>> import numpy as np
        >>> X = np.random.default_rng(0).normal(size=(60, 12, 3)).astype(np.float32)
        >>> y = np.where(X[:, -1, 0] > 0, "up", "down")
        >>> clf = RNNClassifier(hidden_size=8, epochs=5, random_state=0).fit(X, y)
        >>> sorted(set(clf.predict(X)) - {"up", "down"})
        []
        """
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    # ---- targets ---------------------------------------------------------------------
    def _n_outputs(self):
        return len(self.classes_)

    def _needs_classes(self):
        return True

    def _set_classes(self, classes):
        if classes is None:
            raise ValueError("classes: required on the first call to partial_fit (every "
                             "class of the whole training data, e.g. np.unique(y))")
        classes = column_or_1d(check_array(classes, ensure_2d=False, dtype=None,
                                           input_name="classes"))
        uniq = np.unique(classes)
        if len(uniq) != len(classes):
            raise ValueError(f"classes: expected distinct labels, got {len(classes)} "
                             f"labels of which {len(uniq)} differ")
        self.classes_ = uniq

    def _check_same_classes(self, classes):
        given = np.unique(np.asarray(classes))
        if not np.array_equal(given, self.classes_):
            raise ValueError(f"classes: expected the classes of the first call, "
                             f"{self.classes_.tolist()}, got {given.tolist()}")

    def _labels(self, y):
        y = check_array(y, ensure_2d=False, dtype=None, input_name="y")
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        return y

    def _targets(self, y, fresh, caller, dtype):
        """Class indices of y (int64); a fresh fit sets classes_ from y."""
        y = self._labels(y)
        if caller == "fit" and fresh:
            self.classes_ = np.unique(y)
        try:
            idx = np.clip(np.searchsorted(self.classes_, y), 0, len(self.classes_) - 1)
            bad = self.classes_[idx] != y
        except TypeError:  # labels of another kind than the classes (str and int)
            idx, bad = np.zeros(len(y), np.int64), np.ones(len(y), bool)
        if np.any(bad):
            raise ValueError(f"y: labels {np.unique(y[bad]).tolist()} are not among the "
                             f"classes {self.classes_.tolist()} (of the first partial_fit "
                             "or the fit that warm_start continues)")
        return idx.astype(np.int64)

    def _stratify(self, t, n_val):
        counts = np.bincount(t)
        counts = counts[counts > 0]
        if counts.min() >= 2 and n_val >= len(counts) and len(t) - n_val >= len(counts):
            return t
        return None

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        tags.target_tags.multi_output = False
        return tags


class RNNRegressor(RegressorMixin, _RNNEstimator):
    __doc__ = _class_doc(
        """A recurrent network that regresses sequences to numbers.

        A recurrent layer stack (LSTM, GRU or RNN), a pooling over the valid
        steps, optional dropout and a Dense layer of one output per target,
        trained with mean squared error on the standardized targets (each
        target's mean and standard deviation from the first fit, undone by
        ``predict``). X is (N, T, F), (N, T) (one feature per step) or a list
        of sequences of different lengths; y is (N,) or (N, k) numbers.""",
        stratified="",
        targets="number of targets",
        attributes="""
        y_mean_ : ndarray of shape (k,)
            The mean of each target in the data of the first fit.
        y_scale_ : ndarray of shape (k,)
            Its standard deviation (1 where it is 0).""",
        see_also="RNNClassifier : The same network with a classification head.",
        examples="""
        >>> y = X[:, :, 0].sum(axis=1)
        >>> from fastrnn.sklearn import RNNRegressor
        >>> reg = RNNRegressor(hidden_size=16, pooling="mean", epochs=20, random_state=0)
        >>> reg.fit(X, y).predict(X[:3]).shape
        (3,)""")

    _loss_name = "mse"

    def fit(self, X, y):
        """Train a network on sequences X and targets y.

        Without ``warm_start`` a new network is built and trained for at most
        ``epochs`` epochs; with it the fitted network trains on. The targets
        are standardized with the mean and deviation of the first fit.

        Parameters
        ----------
        X : array-like of shape (N, T, F) or (N, T), or list of N arrays
            The sequences: N sequences of T steps of F features, (N, T) for
            one feature per step, or a list of sequences of different
            lengths, each (T_i, F) or (T_i,).
        y : array-like of shape (N,) or (N, k)
            One target (or k) per sequence.

        Returns
        -------
        RNNRegressor
            The fitted estimator (``self``).

        Raises
        ------
        ValueError
            When a parameter, X or y is invalid (the message names it), when
            X and y hold different numbers of samples, or, with
            ``warm_start``, when the number of targets or the network's shape
            changed.
        TypeError
            When X is sparse or holds values that are not numbers.

        See Also
        --------
        partial_fit : One epoch, continuing the network.
        predict : Targets of new sequences.

        Examples
        --------
        >>> import numpy as np
        >>> X = np.random.default_rng(0).normal(size=(60, 12, 3)).astype(np.float32)
        >>> y = X[:, :, 0].sum(axis=1)
        >>> reg = RNNRegressor(hidden_size=8, epochs=5, random_state=0).fit(X, y)
        >>> reg.n_features_in_
        3
        """
        p = self._checked_params()
        return self._fit(X, y, p)


    def partial_fit(self, X, y):
        """Train one epoch on X and y, continuing the network if fitted.

        The first call builds the network and fixes the targets' scaling;
        the later calls continue it with its optimizer state
        (``early_stopping``, ``tol`` and ``n_iter_no_change`` do not apply).

        Parameters
        ----------
        X : array-like of shape (N, T, F) or (N, T), or list of N arrays
            The sequences, as for ``fit``.
        y : array-like of shape (N,) or (N, k)
            The targets, as many per sequence as on the first call.

        Returns
        -------
        RNNRegressor
            The updated estimator (``self``).

        Raises
        ------
        ValueError
            When the number of targets or features per step changed, or as
            ``fit`` raises.

        See Also
        --------
        fit : Train for up to ``epochs`` epochs.

        Examples
        --------
        >>> import numpy as np
        >>> X = np.random.default_rng(0).normal(size=(60, 12, 3)).astype(np.float32)
        >>> y = X[:, :, 0].sum(axis=1)
        >>> reg = RNNRegressor(hidden_size=8, random_state=0)
        >>> for part in np.array_split(np.arange(60), 3):
        ...     reg = reg.partial_fit(X[part], y[part])
        >>> reg.n_iter_
        3
        """
        p = self._checked_params()
        return self._partial_fit(X, y, p)


    def predict(self, X):
        """Predicted targets of each sequence.

        The network's outputs in inference mode (no dropout), with the
        standardization of the targets undone.

        Parameters
        ----------
        X : array-like of shape (N, T, F) or (N, T), or list of N arrays
            The sequences, as for ``fit``, with ``n_features_in_`` features
            per step; their lengths may differ from the training data's.

        Returns
        -------
        ndarray of shape (N,) or (N, k)
            Float64 predictions, shaped as the y of the latest ``fit``.

        Raises
        ------
        NotFittedError
            Before ``fit`` or ``partial_fit``.
        ValueError
            When X is invalid or has another number of features per step.

        See Also
        --------
        fit : Train the network.

        Examples
        --------
        >>> import numpy as np
        >>> X = np.random.default_rng(0).normal(size=(60, 12, 3)).astype(np.float32)
        >>> y = np.stack([X[:, :, 0].sum(axis=1), X[:, -1, 1]], axis=1)
        >>> reg = RNNRegressor(hidden_size=8, epochs=5, random_state=0).fit(X, y)
        >>> reg.predict(X).shape
        (60, 2)
        """
        out = self._predict_raw(X).astype(np.float64)
        out = out * self.y_scale_ + self.y_mean_
        return out[:, 0] if self._y_1d else out


    # ---- targets ---------------------------------------------------------------------
    def _n_outputs(self):
        return len(self.y_mean_)

    def _needs_classes(self):
        return False

    def _set_classes(self, classes):  # pragma: no cover - regressors have none
        pass

    def _targets(self, y, fresh, caller, dtype):
        """y standardized, (N, k) in the network's dtype; a fresh network
        takes the scaling from this y."""
        y = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")
        if y.ndim not in (1, 2) or (y.ndim == 2 and y.shape[1] == 0):
            raise ValueError(f"y: expected targets (N,) or (N, k), got shape {y.shape}")
        one_d = y.ndim == 1
        y2 = y[:, None] if one_d else y
        if fresh or caller == "fit":
            self._y_1d = one_d  # predict returns y's shape of the latest fit
        if fresh:
            self.y_mean_ = y2.mean(axis=0)
            scale = y2.std(axis=0)
            self.y_scale_ = np.where(scale > 0, scale, 1.0)
        elif y2.shape[1] != len(self.y_mean_):
            raise ValueError(f"y: expected {len(self.y_mean_)} target(s) per sequence, as "
                             f"the fitted network has, got {y2.shape[1]}")
        t = (y2 - self.y_mean_) / self.y_scale_
        return np.ascontiguousarray(t, dtype=dtype)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

