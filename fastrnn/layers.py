"""The Layer protocol, and the model layers around the recurrent ones:
Embedding, Dense, Activation, Dropout, and the poolings LastStep, MeanPooling,
MaxPooling, AttentionPooling.

Every layer (the recurrent ones of fastrnn.recurrent too) is a Layer:

    y = layer(x, lengths=None)           # inference, keeps nothing
    y = layer.forward(x, lengths=None)   # training forward, keeps what backward needs
    dx = layer.backward(dy)              # accumulates into layer.grads, returns d x
    layer.params, layer.grads            # dicts of arrays (torch names where torch has the layer)

and a model runs every layer the same way, batch-first (Layer.apply,
apply_backward, step); a recurrent layer's sequence state travels through
them (carries_state), a pooling layer ends the sequence (reduces_sequence).

Sequences are (B, T, F) with `lengths` (B,) ints in 1..T: steps t >= lengths[b]
are padding. Layers that act per step (Dense, Activation, Dropout) give exact
zeros at padding and let no gradient through it; the poolings read only the
valid steps. GEMMs go through the backend's gemm (fastrnn.backends), whose bits do
not depend on the thread count, so training is reproducible bit for bit.
"""
import copy
import inspect
import math
import sys
import types

import numpy as np

from . import backends
from ._validate import as_dtype, lengths_array, positive_int, real_array, to_numpy


_matmul = backends.matmul   # the layers' one product (keyword options only)


def step_mask(lengths, B, T, dtype):
    """(B, T, 1) array: 1 at valid steps, 0 at padding (None without lengths)."""
    if lengths is None:
        return None
    return (np.arange(T)[None, :] < lengths[:, None]).astype(dtype)[:, :, None]


def zero_padding(a, mask):
    """a with every padded step set to exactly 0. `mask` is step_mask's
    (B, T, 1) array. np.where, not a product: inf or NaN in the padding (its
    content is arbitrary) would give inf*0 = NaN and leak."""
    m = mask.astype(bool).reshape(mask.shape[:2] + (1,) * (a.ndim - 2))
    return np.where(m, a, a.dtype.type(0))


def check_seed(seed):
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise TypeError(f"seed: expected an int or None, got {seed!r}")
    return seed


def copy_without_ctx(obj):
    """A deep copy of a layer or model without what its last training
    forward kept for backward (``_ctx``, which may be large)."""
    ctx = obj.__dict__.pop("_ctx", None)
    try:
        new = copy.deepcopy(obj)
    finally:
        obj._ctx = ctx
    new._ctx = None
    return new


def delegate(name):
    """fastrnn.<name>, the public function of fastrnn.formats that a
    delegate method (model.save, layer.to_onnx, ...) hands its call to. It
    is looked up when called, in the package's namespace: the formats are
    built on the core and import it, never the reverse."""
    return getattr(sys.modules["fastrnn"], name)


# ---- the layer classes a model file may name ------------------------------------
_LAYER_CLASSES = {}     # class name -> class: built-in and registered layers
_BUILTIN_NAMES = set()  # fastrnn's own; no registered class may take these names


def register_builtin(*classes):
    """Enter fastrnn's own layer classes (each module registers its own)."""
    for cls in classes:
        _LAYER_CLASSES[cls.__name__] = cls
        _BUILTIN_NAMES.add(cls.__name__)
    return classes[0] if len(classes) == 1 else classes


def layer_classes():
    """A read-only, live view {class name: class} of the layer classes that
    model files may name: fastrnn's own and those given to register_layer
    (fastrnn.formats.native builds layers from this table only)."""
    return types.MappingProxyType(_LAYER_CLASSES)


def register_layer(layer_class):
    """Let model files hold layers of the class `layer_class`, by its name.

    fr.save stores a layer as its class name, its get_config() (JSON) and its
    parameter arrays; fr.load rebuilds it as ``layer_class(**config)`` only when a
    class of that name is registered in the loading process. No code is ever
    read from a file: the process that loads must import the module that
    defines the class (which registers it) first. Usable as a decorator.

    Parameters
    ----------
    layer_class : type
        A subclass of fr.Layer. Its name must not be the name of a built-in
        layer (Dense, LSTM, ...), and its get_config() must return the
        constructor's arguments as JSON values.

    Returns
    -------
    type
        `layer_class` itself, so that ``@fr.register_layer`` decorates a class.

    Raises
    ------
    TypeError
        `layer_class` is not a subclass of fr.Layer.
    ValueError
        Its name is a built-in layer's, or another class of that name (from
        another module) is registered already.

    Examples
    --------
    >>> import fastrnn as fr
    >>> @fr.register_layer
    ... class TimesFactor(fr.Layer):
    ...     def __init__(self, factor=2.0, dtype="float32"):
    ...         super().__init__(dtype)
    ...         self.factor = factor
    ...     def forward(self, x, training=False):
    ...         return x * self.factor
    ...     def backward(self, dy):
    ...         return dy * self.factor
    >>> fr.Sequential([TimesFactor(3.0)])(np.ones((1, 2), "float32"))
    array([[3., 3.]], dtype=float32)
    """
    cls = layer_class
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise TypeError(f"register_layer: layer_class: expected a subclass of fr.Layer, got {cls!r}")
    name = cls.__name__
    if name in _BUILTIN_NAMES:
        raise ValueError(f"register_layer: layer_class: {name!r} is the name of a built-in fastrnn "
                         f"layer (fr.{name}); a model file naming it means fastrnn's own. "
                         "Give your class another name")
    old = _LAYER_CLASSES.get(name)
    if old is not None and old is not cls and \
            (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"register_layer: layer_class: a layer class named {name!r} is registered "
                         f"already ({old.__module__}.{old.__qualname__}); model files name "
                         "layers by class name, so two classes cannot share one")
    # the same class again, or a new version of it (its module re-run): replace
    _LAYER_CLASSES[name] = cls
    return cls


class Layer:
    """Base of every layer: parameters, gradients, mode, config, and the model protocol.

    A model runs its layers batch-first through `apply`, `apply_backward` and
    `step`. Capabilities: ``carries_state`` (recurrent layers),
    ``reduces_sequence`` (poolings: the sequence ends there).

    Subclass it to write a layer in NumPy (docs/custom_layers.md). Implement

    - ``__init__(self, ..., dtype="float32")``: call ``super().__init__(dtype)``,
      keep each constructor argument in an attribute of the same name (that
      is what get_config() returns, and save/load rebuild the layer from it)
      and put the parameter arrays, of ``self.dtype``, in ``self.params``;
    - ``forward(self, x, training=False) -> y``: x is (B, F) or batch-first
      (B, T, F); keep on ``self`` what backward needs;
    - ``backward(self, dy) -> dx``: add each parameter's gradient into
      ``self.grads[name] += ...`` (in place: optimizers hold these arrays)
      and return d loss / d x of x's shape.

    The base class runs them inside a model: it converts x to the layer's
    dtype, sets padded steps (t >= lengths[b]) of x, y, dy and dx to zero,
    makes the gradient arrays, and checks what backward returns. A forward
    that takes a ``lengths`` argument gets the (B,) valid lengths (None when
    every step is valid). `register_layer` lets model files hold the layer;
    `check_gradients` tests backward against finite differences.

    Parameters
    ----------
    dtype : {"float32", "float64"}, default "float32"
        The dtype of inputs, outputs and parameters.

    Examples
    --------
    >>> import numpy as np
    >>> import fastrnn as fr
    >>> layer = fr.Dense(3, 2, seed=0)
    >>> isinstance(layer, fr.Layer), [n for n, p, g in layer.parameters()]
    (True, ['weight', 'bias'])
    """

    has_params = False
    #: a pooling layer turns a sequence (B, T, F) into one vector per sample (B, F)
    reduces_sequence = False
    #: a recurrent layer: a state flows from step to step (apply takes and
    #: returns it; a model's step() carries it between calls)
    carries_state = False
    #: the layer is written as forward(x, training) / backward(dy) in NumPy
    #: (set for subclasses that define forward() and no _run())
    _numpy_api = False
    _forward_args = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "forward" in cls.__dict__ and not hasattr(cls, "_run"):
            cls._numpy_api = True
            try:
                sig = inspect.signature(cls.forward).parameters
            except (TypeError, ValueError):
                sig = {}
            cls._forward_args = tuple(a for a in ("training", "lengths") if a in sig)

    def __init__(self, dtype="float32"):
        self.dtype = as_dtype(dtype)
        self.params = {}
        self.grads = {}
        self.training = True
        self._ctx = None

    #: parameters must be C-contiguous (layers whose kernels take no other)
    _params_contiguous = False

    # ---- parameters ---------------------------------------------------------
    def _param_shapes(self):
        """[(name, shape)] of the parameters, in order; None: not checked."""
        return None

    def _check_arrays(self, which):
        """Every array of params or grads checked to be what the layer takes,
        errors naming the user's key (params['weight']): a replaced array
        would otherwise fail deep inside (gemm: b, w_hh[0]) or run silently
        with the wrong width."""
        shapes = self._param_shapes()
        if shapes is None:
            return
        store = self.params if which == "params" else self.grads
        if not isinstance(store, dict):
            raise TypeError(f"{which}: expected a dict of arrays, got {type(store).__name__}")
        for name, shape in shapes:
            a = store.get(name)
            key = f"{which}[{name!r}]"
            if a is None:
                raise ValueError(f"{key} is missing (this {type(self).__name__} has "
                                 f"{[n for n, _ in shapes]})")
            if not isinstance(a, np.ndarray):
                raise TypeError(f"{key}: expected a NumPy array of dtype {self.dtype.name} "
                                f"and shape {shape}, got {type(a).__name__}")
            if a.dtype != self.dtype:
                raise TypeError(f"{key}: expected dtype {self.dtype.name} (the layer's), "
                                f"got {a.dtype}")
            if a.shape != shape:
                raise ValueError(f"{key}: expected shape {shape}, got {a.shape}")
            if self._params_contiguous and not a.flags.c_contiguous:
                raise ValueError(f"{key}: expected a C-contiguous array "
                                 "(np.ascontiguousarray), got a strided view")
            if which == "grads" and not a.flags.writeable:
                raise ValueError(f"{key}: is read-only; gradients are written in place")

    def _init_grads(self):
        self.grads = {n: np.zeros_like(p) for n, p in self.params.items()}

    def _grad(self, n):
        """The gradient array of parameter n, made (zeros) if missing."""
        g = self.grads.get(n)
        if g is None or g.shape != self.params[n].shape:
            g = self.grads[n] = np.zeros_like(self.params[n])
        return g

    def parameters(self):
        """Return the (name, parameter, gradient) triples, for optimizers.

        Returns
        -------
        list of (str, numpy.ndarray, numpy.ndarray)
            The parameter and gradient arrays themselves (updated in place).
        """
        return [(n, self.params[n], self._grad(n)) for n in self.params]

    def zero_grad(self):
        """Fill every gradient with 0, in place (made first where missing)."""
        for n in self.params:
            self._grad(n)
        for g in self.grads.values():
            g.fill(0)

    def state_dict(self):
        """Return copies of the parameters.

        Returns
        -------
        dict of str to numpy.ndarray
            Parameter name to a copy of its array.
        """
        return {n: p.copy() for n, p in self.params.items()}

    def load_state_dict(self, state_dict):
        """Copy parameters in place from a dict of arrays; names and shapes are checked first.

        Parameters
        ----------
        state_dict : dict of str to array_like
            NumPy arrays or torch tensors, named and shaped as ``layer.params``.

        Raises
        ------
        ValueError
            Listing missing, unexpected and mis-shaped entries.
        """
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"state_dict: expected a dict of arrays, got "
                            f"{type(state_dict).__name__}")
        given = set(state_dict.keys())
        missing = [n for n in self.params if n not in given]
        extra = sorted(str(n) for n in given if n not in self.params)
        new, bad = {}, []
        for n, p in self.params.items():
            if n in given:
                arr = real_array(state_dict[n], f"state_dict[{n!r}]", self.dtype)
                if arr.shape != p.shape:
                    bad.append(f"{n}: expected {p.shape}, got {arr.shape}")
                new[n] = arr
        if missing or extra or bad:
            parts = ([("missing keys: " + ", ".join(missing))] if missing else []) + \
                    ([("unexpected keys: " + ", ".join(extra))] if extra else []) + \
                    ([("wrong shapes: " + "; ".join(bad))] if bad else [])
            raise ValueError(f"load_state_dict for {type(self).__name__}: " + "; ".join(parts))
        for n, arr in new.items():
            np.copyto(self.params[n], arr)

    def reset_parameters(self, seed=None):
        """Draw the parameters again, in place.

        Parameters
        ----------
        seed : int, optional
            Seeds the generator.
        """

    def train(self, mode=True):
        """Set training mode (dropout on) or inference mode.

        Parameters
        ----------
        mode : bool, default True
            True: training; False: inference.

        Returns
        -------
        Layer
            The layer itself.
        """
        self.training = bool(mode)
        return self

    def eval(self):
        """Set inference mode: ``train(False)``.

        Returns
        -------
        Layer
            The layer itself.
        """
        return self.train(False)

    def get_config(self):
        """Return the constructor arguments, JSON-able (save and load use them).

        Returns
        -------
        dict
            ``type(layer)(**layer.get_config())`` builds the same layer.
        """
        return layer_config(self)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    # ---- calls --------------------------------------------------------------
    def __call__(self, x, lengths=None):
        if self._numpy_api:
            return self._numpy_apply(x, lengths, False)
        return self._run(x, lengths, training=False)

    def forward(self, x, lengths=None):
        """Run the layer for training: keeps what `backward` needs.

        Parameters
        ----------
        x : array_like
            The input, batch-first.
        lengths : array_like of int, optional
            (B,) valid steps of each sequence of a (B, T, ...) input; padding steps
            are zero in the output and get no gradient.

        Returns
        -------
        numpy.ndarray
            The output.
        """
        return self._run(x, lengths, training=True)

    def backward(self, dy):
        """Backpropagate through the latest `forward`, accumulating parameter gradients.

        Parameters
        ----------
        dy : array_like
            The gradient of the output, of its shape.

        Returns
        -------
        numpy.ndarray or None
            The gradient of x (None where x has none, as for ids).

        Raises
        ------
        RuntimeError
            Without a preceding `forward`.
        """
        ctx = self._ctx
        if ctx is None:
            raise RuntimeError(f"{type(self).__name__}.backward() needs a preceding "
                               "forward() (each forward allows one backward)")
        self._ctx = None
        dy = real_array(dy, "dy", self.dtype)
        if dy.shape != ctx["y_shape"]:
            raise ValueError(f"dy: expected the shape of the output, {ctx['y_shape']}, "
                             f"got {dy.shape}")
        return self._backward(ctx, dy)

    def output_shape(self, input_shape):
        """Return the output's shape for an input shape.

        Parameters
        ----------
        input_shape : tuple
            The input's shape; None for sizes not known.

        Returns
        -------
        tuple
            The output's shape (None for unknown sizes).
        """
        return input_shape

    # ---- the model protocol (what Sequential and the formats call) ------------
    def apply(self, x, lengths=None, state=None, training=False):
        """Run the layer as a model runs it, batch-first.

        Parameters
        ----------
        x : numpy.ndarray
            The input, batch-first: (B, T, ...) sequences or (B, ...) samples.
        lengths : array_like of int, optional
            (B,) valid steps of each sequence of a (B, T, ...) input; padding steps
            are zero in the output and get no gradient.
        state : object, optional
            The initial state of a layer that carries one; ignored otherwise.
        training : bool, default False
            Keep what `apply_backward` needs (and apply dropout).

        Returns
        -------
        y : numpy.ndarray
            The output.
        state : object or None
            The final state, None for layers without one.
        """
        if self._numpy_api:
            return self._numpy_apply(x, lengths, training), None
        return (self.forward(x, lengths) if training else self(x, lengths)), None

    def apply_backward(self, dy):
        """Backpropagate through `apply` (training=True), accumulating parameter gradients.

        Parameters
        ----------
        dy : numpy.ndarray
            The gradient of apply's output.

        Returns
        -------
        numpy.ndarray or None
            The gradient of x (None when x has none, as for ids).
        """
        if self._numpy_api:
            return self._numpy_backward(dy)
        return self.backward(dy)

    # ---- a layer written as forward(x, training) / backward(dy) ----------------
    def _numpy_apply(self, x, lengths, training):
        name = type(self).__name__
        x = real_array(x, "x", self.dtype)
        lens = self._lengths(lengths, x)
        mask = None
        if lens is not None:
            mask = step_mask(lens, x.shape[0], x.shape[1], self.dtype)
            x = zero_padding(x, mask)  # padding content never reaches forward
        kwargs = {}
        if "training" in self._forward_args:
            kwargs["training"] = bool(training)
        if "lengths" in self._forward_args:
            kwargs["lengths"] = lens
        if training:
            grads = {n: self._grad(n) for n in self.params}
        y = self.forward(x, **kwargs)
        if not isinstance(y, np.ndarray):
            raise TypeError(f"{name}.forward: expected it to return a NumPy array, got "
                            f"{type(y).__name__}")
        y = y.astype(self.dtype, copy=False)
        ymask = mask if (mask is not None and y.ndim >= 2 and
                         y.shape[:2] == x.shape[:2]) else None
        if ymask is not None:
            y = zero_padding(y, ymask)
        if training:
            self._ctx = dict(x_shape=x.shape, y_shape=y.shape, mask=mask, ymask=ymask,
                             grads=grads)
        return y

    def _numpy_backward(self, dy):
        name = type(self).__name__
        if type(self).backward is Layer.backward:
            raise NotImplementedError(f"{name} defines forward() but no backward(dy): it "
                                      "can run inference, not train")
        ctx = self._ctx
        if ctx is None:
            raise RuntimeError(f"{name}: backward needs a preceding training forward "
                               "(apply(..., training=True)); each allows one backward")
        self._ctx = None
        dy = real_array(dy, "dy", self.dtype)
        if dy.shape != ctx["y_shape"]:
            raise ValueError(f"dy: expected the shape of the output, {ctx['y_shape']}, "
                             f"got {dy.shape}")
        if ctx["ymask"] is not None:
            dy = zero_padding(dy, ctx["ymask"])
        dx = self.backward(dy)
        for n, g in ctx["grads"].items():
            if self.grads.get(n) is not g:
                raise RuntimeError(f"{name}.backward replaced the array self.grads[{n!r}]; "
                                   f"add into it in place instead (self.grads[{n!r}] += ...): "
                                   "optimizers hold the original arrays")
        if dx is None:
            return None
        if not isinstance(dx, np.ndarray) or dx.shape != ctx["x_shape"]:
            got = dx.shape if isinstance(dx, np.ndarray) else type(dx).__name__
            raise ValueError(f"{name}.backward: expected d x, an array of the input's shape "
                             f"{ctx['x_shape']}, got {got}")
        dx = np.ascontiguousarray(dx, dtype=self.dtype)
        if ctx["mask"] is not None:
            dx = zero_padding(dx, ctx["mask"])
        return dx

    def step(self, x_t, state=None):
        """Run one time step inside a streaming model; per-step layers apply to x_t as it is.

        Parameters
        ----------
        x_t : numpy.ndarray
            (B, ...) the inputs of one step.
        state : object, optional
            The state of the previous step (recurrent layers).

        Returns
        -------
        y_t : numpy.ndarray
            The outputs of the step.
        state : object or None
            The new state.
        """
        return self(x_t), None

    def describe_output(self):
        """Describe the output's shape in words, for ``Sequential.summary``.

        Returns
        -------
        str
            E.g. "(B, T, 64)".
        """
        return "same as input"

    @property
    def backend(self):
        """The backend whose kernels run this layer: the one that owns its
        parameters (fastrnn.backends.of; NumPy arrays: "cpu")."""
        for p in self.params.values():
            return backends.of(p)
        return backends.get("cpu")

    def freeze(self):
        """Return a copy of this layer for inference only.

        Recurrent layers also pack their weights once (`RNNBase.freeze`).

        Returns
        -------
        Layer
            The copy.
        """
        return copy_without_ctx(self)

    def reseed(self, weight_seed, dropout_seed, weights=True):
        """Draw the initial weights again and restart the dropout masks (``fit(seed=...)`` calls this).

        Parameters
        ----------
        weight_seed : int or numpy.random.SeedSequence
            Seeds the weights when `weights` is true, the layer has parameters and
            was built without a seed.
        dropout_seed : int or numpy.random.SeedSequence
            Seeds the dropout masks.
        weights : bool, default True
            Whether the weights may be drawn again.
        """
        if weights and self.has_params and getattr(self, "seed", None) is None:
            self.reset_parameters(weight_seed)
        self._reseed_dropout(dropout_seed)

    def _reseed_dropout(self, seed):
        """Restart the random masks (layers that draw them override this)."""

    def _lengths(self, lengths, x):
        if lengths is None:
            return None
        if x.ndim < 3:
            raise ValueError(f"lengths: given for a {x.ndim}-D input of shape {x.shape}; "
                             "lengths go with sequences (B, T, features)")
        return lengths_array(lengths, x.shape[1], x.shape[0])


def layer_config(obj):
    """Constructor arguments read back from same-named attributes."""
    out = {}
    for name, p in inspect.signature(type(obj).__init__).parameters.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if not hasattr(obj, name):
            continue
        v = getattr(obj, name)
        if isinstance(v, np.dtype):
            v = v.name
        elif isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, (np.integer,)):
            v = int(v)
        elif isinstance(v, (np.floating,)):
            v = float(v)
        elif isinstance(v, tuple):
            v = list(v)
        out[name] = v
    return out


def _features(x, name, size, what):
    if x.ndim not in (2, 3):
        raise ValueError(f"{name}: expected (B, {what}) or (B, T, {what}) with {what}="
                         f"{size}, got shape {x.shape}")
    if x.shape[-1] != size:
        raise ValueError(f"{name}: expected last dimension {what}={size}, got shape {x.shape}")
    if x.shape[0] == 0 or (x.ndim == 3 and x.shape[1] == 0):
        raise ValueError(f"{name}: expected a non-empty batch, got shape {x.shape}")


# ---- activations --------------------------------------------------------------
def _sigmoid(z):
    # stable on both sides, no overflow warnings
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


# name -> (f(z), f'(z) expressed through y = f(z) and z)
_ACTIVATIONS = {
    "linear": (lambda z: z, None),
    "relu": (lambda z: np.maximum(z, 0), lambda y, z: (z > 0).astype(z.dtype)),
    "tanh": (np.tanh, lambda y, z: 1 - y * y),
    "sigmoid": (_sigmoid, lambda y, z: y * (1 - y)),
    "elu": (lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
            lambda y, z: np.where(z > 0, 1, y + 1).astype(z.dtype)),
    "leaky_relu": (lambda z: np.where(z > 0, z, z * z.dtype.type(0.01)),
                   lambda y, z: np.where(z > 0, 1, 0.01).astype(z.dtype)),
}


def _activation(name):
    if name is None:
        name = "linear"
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation: expected one of {sorted(_ACTIVATIONS)} or None, "
                         f"got {name!r}")
    return name


class Activation(Layer):
    """Elementwise activation, zero at padded steps.

    Parameters
    ----------
    activation : {"relu", "tanh", "sigmoid", "elu", "leaky_relu", "linear"}
        The function.
    dtype : {"float32", "float64"}, default "float32"
        The dtype of inputs, outputs and parameters.

    Examples
    --------
    >>> import numpy as np
    >>> import fastrnn as fr
    >>> fr.Activation("relu")(np.array([[-1.0, 2.0]], np.float32))
    array([[0., 2.]], dtype=float32)
    """

    def __init__(self, activation, dtype="float32"):
        super().__init__(dtype)
        self.activation = _activation(activation)

    def _run(self, x, lengths, training):
        x = real_array(x, "x", self.dtype)
        lens = self._lengths(lengths, x) if x.ndim >= 3 else None
        f, _ = _ACTIVATIONS[self.activation]
        mask = step_mask(lens, x.shape[0], x.shape[1], self.dtype) if lens is not None else None
        if mask is not None:
            x = zero_padding(x, mask)  # padding content never reaches f or f'
            y = zero_padding(f(x), mask)
        else:
            y = f(x)
        if training:
            self._ctx = dict(x=x, y=y, mask=mask, y_shape=y.shape)
        return y

    def _backward(self, ctx, dy):
        _, df = _ACTIVATIONS[self.activation]
        dx = dy if df is None else dy * df(ctx["y"], ctx["x"])
        if ctx["mask"] is not None:
            dx = zero_padding(dx, ctx["mask"])
        return np.ascontiguousarray(dx, dtype=self.dtype)


class Dense(Layer):
    """Fully connected layer, y = act(x W^T + b), with ``torch.nn.Linear``'s parameters and initialisation.

    Parameters ``weight`` (out, in) and ``bias`` (out,). On a sequence
    (B, T, in) it applies per step (zero at padded steps); on (B, in) per sample.

    Parameters
    ----------
    in_features : int
        The input's last dimension.
    out_features : int
        The output's last dimension.
    activation : str, optional
        One of `Activation`'s names; None: linear.
    bias : bool, default True
        Whether there is a bias.
    dtype : {"float32", "float64"}, default "float32"
        The dtype of inputs, outputs and parameters.
    seed : int, optional
        Seeds the initial weights (and masks); None draws fresh ones.

    Examples
    --------
    >>> import numpy as np
    >>> import fastrnn as fr
    >>> dense = fr.Dense(4, 2, seed=0)
    >>> dense(np.ones((3, 4), np.float32)).shape, dense(np.ones((3, 5, 4), np.float32)).shape
    ((3, 2), (3, 5, 2))
    """

    has_params = True

    def __init__(self, in_features, out_features, activation=None, bias=True,
                 dtype="float32", seed=None):
        super().__init__(dtype)
        self.in_features = positive_int(in_features, "in_features")
        self.out_features = positive_int(out_features, "out_features")
        self.activation = _activation(activation)
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"bias: expected a bool, got {bias!r}")
        self.bias = bool(bias)
        self.seed = check_seed(seed)
        self.params["weight"] = np.zeros((self.out_features, self.in_features), self.dtype)
        if self.bias:
            self.params["bias"] = np.zeros((self.out_features,), self.dtype)
        self.reset_parameters(seed)
        self._init_grads()

    def _param_shapes(self):
        return [("weight", (self.out_features, self.in_features))] + \
            ([("bias", (self.out_features,))] if self.bias else [])

    def reset_parameters(self, seed=None):
        # torch.nn.Linear: kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(in)), bias the same
        rng = np.random.default_rng(seed)
        k = 1.0 / math.sqrt(self.in_features)
        for n, p in self.params.items():
            p[...] = rng.uniform(-k, k, size=p.shape)

    def output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.out_features,)

    def describe_output(self):
        return f"(..., {self.out_features})"

    def _run(self, x, lengths, training):
        self._check_arrays("params")
        x = real_array(x, "x", self.dtype)
        _features(x, "x", self.in_features, "in_features")
        lens = self._lengths(lengths, x)
        mask = step_mask(lens, x.shape[0], x.shape[1], self.dtype)
        if mask is not None:
            x = zero_padding(x, mask)  # padding content never reaches z or dW
        x2 = np.ascontiguousarray(x.reshape(-1, self.in_features))
        if self.bias:
            z = np.empty((x2.shape[0], self.out_features), self.dtype)
            z[...] = self.params["bias"]
            _matmul(x2, self.params["weight"], trans_b=True, out=z, beta=1.0)
        else:
            z = _matmul(x2, self.params["weight"], trans_b=True)
        f, _ = _ACTIVATIONS[self.activation]
        y = f(z).reshape(x.shape[:-1] + (self.out_features,))
        if mask is not None:
            y = zero_padding(y, mask)
        if training:
            self._ctx = dict(x2=x2, z=z, y=y.reshape(z.shape), mask=mask,
                             x_shape=x.shape, y_shape=y.shape)
        return y

    def _backward(self, ctx, dy):
        self._check_arrays("grads")
        if ctx["mask"] is not None:
            dy = zero_padding(dy, ctx["mask"])
        dz = np.ascontiguousarray(dy.reshape(-1, self.out_features))
        _, df = _ACTIVATIONS[self.activation]
        if df is not None:
            dz = dz * df(ctx["y"], ctx["z"])
        x2 = ctx["x2"]
        # dW += dz^T x, db += sum over rows of dz, dx = dz W
        _matmul(dz, x2, trans_a=True, out=self.grads["weight"], beta=1.0)
        if self.bias:
            self.grads["bias"] += dz.sum(axis=0)
        dx = _matmul(dz, self.params["weight"])
        return dx.reshape(ctx["x_shape"])


class Dropout(Layer):
    """Inverted dropout (``torch.nn.Dropout``).

    In training each element is zeroed with probability p and the rest scaled
    by 1/(1-p); identity in inference.

    Parameters
    ----------
    p : float, default 0.5
        The drop probability, in [0, 1).
    dtype : {"float32", "float64"}, default "float32"
        The dtype of inputs, outputs and parameters.
    seed : int, optional
        Seeds the initial weights (and masks); None draws fresh ones.

    Examples
    --------
    >>> import numpy as np
    >>> import fastrnn as fr
    >>> x = np.ones((2, 3), np.float32)
    >>> bool(np.array_equal(fr.Dropout(0.5)(x), x))     # inference: identity
    True
    """

    def __init__(self, p=0.5, dtype="float32", seed=None):
        super().__init__(dtype)
        if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)):
            raise TypeError(f"p: expected a float in [0, 1), got {p!r}")
        if not 0.0 <= float(p) < 1.0:
            raise ValueError(f"p: expected a probability in [0, 1), got {p}")
        self.p = float(p)
        self.seed = check_seed(seed)
        self.rng = np.random.default_rng(seed)

    def reset_parameters(self, seed=None):
        self.rng = np.random.default_rng(seed)

    def _reseed_dropout(self, seed):
        self.rng = np.random.default_rng(seed)

    def _run(self, x, lengths, training):
        x = real_array(x, "x", self.dtype)
        if not (training and self.training) or self.p == 0.0:
            if training:
                self._ctx = dict(mask=None, y_shape=x.shape)
            return x
        keep = 1.0 - self.p
        mask = (self.rng.random(x.shape) < keep).astype(self.dtype)
        mask /= self.dtype.type(keep)
        y = x * mask
        self._ctx = dict(mask=mask, y_shape=y.shape)
        return y

    def _backward(self, ctx, dy):
        return dy if ctx["mask"] is None else dy * ctx["mask"]


class Embedding(Layer):
    """Lookup table (``torch.nn.Embedding``): int ids (B, T) -> (B, T, embedding_dim).

    Initialised N(0, 1) as torch; the row of `padding_idx` is zero and gets no
    gradient. Ids at padded steps (t >= lengths[b]) get no gradient either.

    Parameters
    ----------
    num_embeddings : int
        The number of ids (the vocabulary size).
    embedding_dim : int
        The size of each vector.
    padding_idx : int, optional
        An id whose vector stays zero.
    dtype : {"float32", "float64"}, default "float32"
        The dtype of inputs, outputs and parameters.
    seed : int, optional
        Seeds the initial weights (and masks); None draws fresh ones.

    Examples
    --------
    >>> import numpy as np
    >>> import fastrnn as fr
    >>> emb = fr.Embedding(10, 3, padding_idx=0, seed=0)
    >>> out = emb(np.array([[1, 2, 0]]))
    >>> out.shape, bool(np.all(out[0, 2] == 0))
    ((1, 3, 3), True)
    """

    has_params = True

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None,
                 dtype="float32", seed=None):
        super().__init__(dtype)
        self.num_embeddings = positive_int(num_embeddings, "num_embeddings")
        self.embedding_dim = positive_int(embedding_dim, "embedding_dim")
        if padding_idx is not None:
            if isinstance(padding_idx, bool) or not isinstance(padding_idx, (int, np.integer)):
                raise TypeError(f"padding_idx: expected an int or None, got {padding_idx!r}")
            padding_idx = int(padding_idx)
            if padding_idx < 0:
                padding_idx += self.num_embeddings
            if not 0 <= padding_idx < self.num_embeddings:
                raise ValueError(f"padding_idx: expected a value in 0..{self.num_embeddings - 1}, "
                                 f"got {padding_idx}")
        self.padding_idx = padding_idx
        self.seed = check_seed(seed)
        self.params["weight"] = np.zeros((self.num_embeddings, self.embedding_dim), self.dtype)
        self.reset_parameters(seed)
        self._init_grads()

    def _param_shapes(self):
        return [("weight", (self.num_embeddings, self.embedding_dim))]

    def reset_parameters(self, seed=None):
        rng = np.random.default_rng(seed)
        w = self.params["weight"]
        w[...] = rng.standard_normal(w.shape)
        if self.padding_idx is not None:
            w[self.padding_idx] = 0

    def output_shape(self, input_shape):
        return tuple(input_shape) + (self.embedding_dim,)

    def describe_output(self):
        return f"(B, T, {self.embedding_dim})"

    def ids(self, x):
        """Return x as a checked int64 array of ids in 0..num_embeddings-1.

        Parameters
        ----------
        x : array_like
            Integer ids (whole-number floats are accepted).

        Returns
        -------
        numpy.ndarray
            int64 ids of x's shape.

        Raises
        ------
        TypeError
            For non-integer input.
        ValueError
            For ids out of range.
        """
        arr = to_numpy(x, "x")
        if arr.dtype.kind == "f":
            if arr.size and not np.all(np.isfinite(arr) & (arr == np.round(arr))):
                raise TypeError("x: Embedding takes integer ids; got floats that are "
                                "not whole numbers")
        elif arr.dtype.kind not in "iub":
            raise TypeError(f"x: Embedding takes integer ids, got dtype {arr.dtype}")
        if arr.ndim == 0 or arr.size == 0:
            raise ValueError(f"x: expected a non-empty array of ids, got shape {arr.shape}")
        # the range is checked on the values as given: a cast first would turn
        # 1e30 or 2**64-1 into some int64 and report that instead
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi >= self.num_embeddings:
            lo, hi = (v.item() for v in (lo, hi))
            raise ValueError(f"x: ids must lie in 0..{self.num_embeddings - 1} "
                             f"(num_embeddings={self.num_embeddings}), got min {lo!r} and "
                             f"max {hi!r}")
        return arr.astype(np.int64, copy=False)

    def _run(self, x, lengths, training):
        self._check_arrays("params")
        ids = self.ids(x)
        lens = None
        if lengths is not None:
            if ids.ndim != 2:
                raise ValueError(f"lengths: given for ids of shape {ids.shape}; "
                                 "lengths go with (B, T) ids")
            lens = lengths_array(lengths, ids.shape[1], ids.shape[0])
        # np.take: the rows weight[ids] gives, without fancy indexing's cost
        # (benchmarks/RESULTS.md, "Embedding rows by np.take")
        y = np.take(self.params["weight"], ids, axis=0)
        if lens is not None:
            y = zero_padding(y, step_mask(lens, ids.shape[0], ids.shape[1], self.dtype))
        if training:
            self._ctx = dict(ids=ids, lengths=lens, y_shape=y.shape)
        return y

    def _backward(self, ctx, dy):
        self._check_arrays("grads")
        ids, lens = ctx["ids"], ctx["lengths"]
        E = self.embedding_dim
        rows = dy.reshape(-1, E)
        flat = ids.reshape(-1)
        keep = np.ones(flat.shape, bool)
        if lens is not None:
            keep &= (np.arange(ids.shape[1])[None, :] < lens[:, None]).reshape(-1)
        if self.padding_idx is not None:
            keep &= flat != self.padding_idx
        flat, rows = flat[keep], rows[keep]
        if flat.size:
            # rows of equal id summed in a fixed order (stable sort), no atomics
            order = np.argsort(flat, kind="stable")
            sid = flat[order]
            starts = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]])
            sums = np.add.reduceat(rows[order], starts, axis=0)
            self.grads["weight"][sid[starts]] += sums
        return None


class _Pooling(Layer):
    reduces_sequence = True

    def _seq(self, x, lengths, name="x"):
        x = real_array(x, name, self.dtype)
        if x.ndim != 3 or 0 in x.shape[:2]:
            raise ValueError(f"{name}: {type(self).__name__} takes a sequence (B, T, features), "
                             f"got shape {x.shape}")
        lens = self._lengths(lengths, x)
        if lens is None:
            lens = np.full(x.shape[0], x.shape[1], np.int64)
        return x, lens

    def output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def describe_output(self):
        return "(B, F)"


class LastStep(_Pooling):
    """Take the output at each sequence's last valid step: (B, T, F) -> (B, F).

    For a bidirectional layer this is the forward direction's final state
    beside the reverse direction's first step, as torch's output[len-1].

    Parameters
    ----------
    dtype : {"float32", "float64"}, default "float32"
        The dtype of inputs, outputs and parameters.

    Examples
    --------
    >>> import numpy as np
    >>> import fastrnn as fr
    >>> x = np.arange(6, dtype=np.float32).reshape(1, 3, 2)
    >>> fr.LastStep()(x, lengths=[2])
    array([[2., 3.]], dtype=float32)
    """

    def __init__(self, dtype="float32"):
        super().__init__(dtype)

    def _run(self, x, lengths, training):
        x, lens = self._seq(x, lengths)
        # without lengths every sequence ends at T: a slice, not a gather
        y = (np.ascontiguousarray(x[:, -1]) if lengths is None else
             x[np.arange(x.shape[0]), lens - 1])
        if training:
            self._ctx = dict(x_shape=x.shape, lengths=lens, y_shape=y.shape)
        return y

    def _backward(self, ctx, dy):
        dx = np.zeros(ctx["x_shape"], self.dtype)
        dx[np.arange(dx.shape[0]), ctx["lengths"] - 1] = dy
        return dx


class MeanPooling(_Pooling):
    """Average over each sequence's valid steps: (B, T, F) -> (B, F).

    Parameters
    ----------
    dtype : {"float32", "float64"}, default "float32"
        The dtype of inputs, outputs and parameters.

    Examples
    --------
    >>> import numpy as np
    >>> import fastrnn as fr
    >>> x = np.arange(6, dtype=np.float32).reshape(1, 3, 2)
    >>> fr.MeanPooling()(x, lengths=[2])
    array([[1., 2.]], dtype=float32)
    """

    def __init__(self, dtype="float32"):
        super().__init__(dtype)

    def _run(self, x, lengths, training):
        x, lens = self._seq(x, lengths)
        mask = step_mask(lens, x.shape[0], x.shape[1], self.dtype)
        inv = (1.0 / lens.astype(self.dtype)).astype(self.dtype)[:, None]
        # without lengths there is no padding to zero (the same sums: the
        # same values, in the same order)
        y = (x if lengths is None else zero_padding(x, mask)).sum(axis=1) * inv
        if training:
            self._ctx = dict(mask=mask, inv=inv, y_shape=y.shape)
        return y

    def _backward(self, ctx, dy):
        dx = np.broadcast_to((dy * ctx["inv"])[:, None, :], ctx["mask"].shape[:2] + dy.shape[1:])
        return zero_padding(dx, ctx["mask"])


class MaxPooling(_Pooling):
    """Take the maximum over each sequence's valid steps: (B, T, F) -> (B, F).

    The gradient goes to the first step holding the maximum.

    Parameters
    ----------
    dtype : {"float32", "float64"}, default "float32"
        The dtype of inputs, outputs and parameters.

    Examples
    --------
    >>> import numpy as np
    >>> import fastrnn as fr
    >>> x = np.arange(6, dtype=np.float32).reshape(1, 3, 2)
    >>> fr.MaxPooling()(x, lengths=[2])
    array([[2., 3.]], dtype=float32)
    """

    def __init__(self, dtype="float32"):
        super().__init__(dtype)

    def _run(self, x, lengths, training):
        x, lens = self._seq(x, lengths)
        mask = step_mask(lens, x.shape[0], x.shape[1], bool)
        xm = np.where(mask, x, -np.inf)
        arg = np.argmax(xm, axis=1)                     # (B, F)
        y = np.take_along_axis(x, arg[:, None, :], axis=1)[:, 0, :]
        if training:
            self._ctx = dict(arg=arg, x_shape=x.shape, y_shape=y.shape)
        return np.ascontiguousarray(y)

    def _backward(self, ctx, dy):
        dx = np.zeros(ctx["x_shape"], self.dtype)
        np.put_along_axis(dx, ctx["arg"][:, None, :], dy[:, None, :], axis=1)
        return dx


class AttentionPooling(_Pooling):
    """Pool by additive attention over the valid steps of each sequence: (B, T, F) -> (B, F).

    Bahdanau; Yang et al. 2016::

        u_t = tanh(W h_t + b)          W (A, F), b (A,)
        s_t = v . u_t                  v (A,)
        a   = softmax over valid t of s_t   (padding gets weight exactly 0)
        out = sum_t a_t h_t

    ``attention_weights`` keeps the latest a (B, T) for inspection.

    Parameters
    ----------
    input_size : int
        F, the features of each step.
    attention_size : int, optional
        A, the size of the attention layer; None: F.
    dtype : {"float32", "float64"}, default "float32"
        The dtype of inputs, outputs and parameters.
    seed : int, optional
        Seeds the initial weights (and masks); None draws fresh ones.

    Examples
    --------
    >>> import numpy as np
    >>> import fastrnn as fr
    >>> pool = fr.AttentionPooling(4, seed=0)
    >>> out = pool(np.ones((2, 5, 4), np.float32), lengths=[5, 3])
    >>> out.shape, pool.attention_weights.shape
    ((2, 4), (2, 5))
    """

    has_params = True

    def __init__(self, input_size, attention_size=None, dtype="float32", seed=None):
        super().__init__(dtype)
        self.input_size = positive_int(input_size, "input_size")
        self.attention_size = (self.input_size if attention_size is None
                               else positive_int(attention_size, "attention_size"))
        self.seed = check_seed(seed)
        A, F = self.attention_size, self.input_size
        self.params = {"weight": np.zeros((A, F), self.dtype),
                       "bias": np.zeros((A,), self.dtype),
                       "context": np.zeros((A,), self.dtype)}
        self.reset_parameters(seed)
        self._init_grads()
        self.attention_weights = None

    def _param_shapes(self):
        A, F = self.attention_size, self.input_size
        return [("weight", (A, F)), ("bias", (A,)), ("context", (A,))]

    def reset_parameters(self, seed=None):
        rng = np.random.default_rng(seed)
        kf = 1.0 / math.sqrt(self.input_size)
        ka = 1.0 / math.sqrt(self.attention_size)
        self.params["weight"][...] = rng.uniform(-kf, kf, self.params["weight"].shape)
        self.params["bias"][...] = rng.uniform(-kf, kf, self.params["bias"].shape)
        self.params["context"][...] = rng.uniform(-ka, ka, self.params["context"].shape)

    def _run(self, x, lengths, training):
        self._check_arrays("params")
        x, lens = self._seq(x, lengths)
        if x.shape[2] != self.input_size:
            raise ValueError(f"x: expected last dimension input_size={self.input_size}, "
                             f"got shape {x.shape}")
        B, T, F = x.shape
        A = self.attention_size
        # valid: None when every step is (no lengths, or all of them T):
        # then no mask is built or applied
        valid = None if lengths is None else np.arange(T)[None, :] < lens[:, None]
        if valid is not None and valid.all():
            valid = None
        if valid is not None:  # padding content never reaches u, the scores or dW
            x = np.where(valid[:, :, None], x, self.dtype.type(0))
        x2 = np.ascontiguousarray(x.reshape(B * T, F))
        z = np.empty((B * T, A), self.dtype)
        z[...] = self.params["bias"]
        _matmul(x2, self.params["weight"], trans_b=True, out=z, beta=1.0)
        # the rest in one kernel where the backend has it (its order of
        # operations: src/include/fastrnn_pool.h), else in NumPy below
        pool = getattr(self.backend, "attention_pool", None)
        a = np.empty((B, T), self.dtype)
        y = np.empty((B, F), self.dtype)
        if pool is not None and pool(z, self.params["context"], x2.reshape(B, T, F),
                                     None if valid is None else lens, a, y):
            self.attention_weights = a
            if training:
                self._ctx = dict(x=x, x2=x2, u=z, a=a, y_shape=y.shape)
            return y
        u = np.tanh(z, out=z)
        # s_m = u_m . v: a fixed-order dot per row (NumPy's einsum loop, no
        # BLAS), so its bits depend neither on the batch nor on the threads
        s = np.einsum("ma,a->m", u, self.params["context"], optimize=False).reshape(B, T)
        if valid is not None:
            s = np.where(valid, s, -np.inf)
        s = s - s.max(axis=1, keepdims=True)
        e = np.exp(s)  # exactly 0 at padding
        a = (e / e.sum(axis=1, keepdims=True)).astype(self.dtype)
        y = np.einsum("bt,btf->bf", a, x, optimize=False)
        self.attention_weights = a
        if training:
            self._ctx = dict(x=x, x2=x2, u=u, a=a, y_shape=y.shape)
        return y

    def _backward(self, ctx, dy):
        self._check_arrays("grads")
        x, x2, u, a = ctx["x"], ctx["x2"], ctx["u"], ctx["a"]
        B, T, F = x.shape
        A = self.attention_size
        # out = sum_t a_t h_t:   dh_t = a_t dout,  da_t = dout . h_t
        dx = a[:, :, None] * dy[:, None, :]
        da = np.einsum("btf,bf->bt", x, dy, optimize=False)
        # softmax: ds_t = a_t (da_t - sum_k a_k da_k)   (0 at padding, where a = 0)
        ds = a * (da - (a * da).sum(axis=1, keepdims=True))
        ds2 = np.ascontiguousarray(ds.reshape(B * T, 1))
        # s = u v:  dv = u^T ds,  du = ds v^T;  u = tanh(z): dz = du (1 - u^2)
        g = self.grads
        _matmul(u, ds2, trans_a=True, out=g["context"].reshape(A, 1), beta=1.0)
        dz = ds2 * self.params["context"][None, :] * (1 - u * u)
        # z = x W^T + b
        _matmul(dz, x2, trans_a=True, out=g["weight"], beta=1.0)
        g["bias"] += dz.sum(axis=0)
        dx += _matmul(dz, self.params["weight"]).reshape(B, T, F)
        return dx


register_builtin(Activation, Dense, Dropout, Embedding, LastStep, MeanPooling, MaxPooling,
                  AttentionPooling)
