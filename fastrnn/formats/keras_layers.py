"""The Keras semantics that fastrnn's own layers do not have, as small layers
and one model class, so that ``fr.from_keras(model, sequential=True)`` computes
what the Keras model computes (docs/keras.md):

    KerasMerge(mode)          Bidirectional merge_mode "sum", "ave", "mul" on the
                              (..., 2H) concatenation of the two directions;
                              mode None: the model returns the two halves
    KerasReverse()            go_backwards: the whole padded time axis reversed
                              (the mask with it), as Keras reverses it
    KerasSoftmax()            softmax over the last axis (Dense(activation=
                              "softmax"), Activation("softmax"))
    KerasBidirectionalLast()  Bidirectional(return_sequences=False): the forward
                              half at the last valid step beside the backward
                              half at the first (each direction's final output)
    KerasMasking(mask_value)  keras.layers.Masking: makes the mask, zeroes the
                              masked steps
    KerasEmbedding(...,       Embedding(mask_zero=True): makes the mask ids != 0
                   mask_zero)
    KerasSequential(layers)   an fr.Sequential that carries Keras's mask from the
                              layer that makes it to the recurrent layers

A Keras mask is computed from the data and travels with the tensors; an
fr.Sequential passes only `lengths`. KerasSequential carries the mask: it
gives every recurrent layer the mask (as `lengths` where the mask is
right-padded, else as `mask=`), flips it at KerasReverse, drops it where the
sequence ends, and runs every other layer on all steps, as Keras does (a Dense
after a masked LSTM sees the carried outputs). The layers that make a mask,
and KerasMerge(None), refuse to run in a plain fr.Sequential (what fr.load
returns): rebuild the model with ``KerasSequential(fr.load(path).layers)``.
"""
import numpy as np

from .._validate import lengths_array, real_array
from ..layers import Embedding, Layer, register_builtin
from ..model import Sequential

__all__ = ["KerasMerge", "KerasReverse", "KerasSoftmax", "KerasBidirectionalLast",
           "KerasMasking", "KerasEmbedding", "KerasSequential"]

_MERGES = ("sum", "ave", "mul")


def _only_in_keras_model(layer):
    return RuntimeError(
        f"{layer!r} makes or splits Keras's mask or outputs, which only "
        "fr.formats.keras.KerasSequential carries: run it inside one "
        "(KerasSequential(model.layers) rebuilds a model that fr.load returned)")


def _halves(x, name):
    if x.ndim not in (2, 3) or x.shape[-1] % 2:
        raise ValueError(f"{name}: expected (B, 2H) or (B, T, 2H), the two directions "
                         f"concatenated, got shape {x.shape}")
    H = x.shape[-1] // 2
    return x[..., :H], x[..., H:]


class KerasMerge(Layer):
    """Merge the two directions of a bidirectional output as Keras's ``merge_mode``.

    The input is the (..., 2H) concatenation [forward, backward] an fr
    bidirectional layer returns (or KerasBidirectionalLast); the output is
    forward + backward ("sum"), their mean ("ave") or their product ("mul"),
    (..., H). Mode None is Keras's list of the two outputs: inside a
    KerasSequential, as its last layer, the model returns the tuple (forward,
    backward).

    Parameters
    ----------
    mode : {"sum", "ave", "mul"} or None
        Keras's merge_mode ("concat" needs no layer).
    dtype : {"float32", "float64"}, default "float32"
        The dtype of inputs and outputs.

    Examples
    --------
    >>> import numpy as np
    >>> from fastrnn.formats.keras import KerasMerge
    >>> KerasMerge("sum")(np.array([[1.0, 2.0, 10.0, 20.0]], np.float32))
    array([[11., 22.]], dtype=float32)
    """

    def __init__(self, mode, dtype="float32"):
        super().__init__(dtype)
        if mode is not None and mode not in _MERGES:
            raise ValueError(f"mode: expected one of {list(_MERGES)} or None, got {mode!r}")
        self.mode = mode

    def _run(self, x, lengths, training):
        if self.mode is None:
            raise _only_in_keras_model(self)
        x = real_array(x, "x", self.dtype)
        f, b = _halves(x, "x")
        if self.mode == "sum":
            y = f + b
        elif self.mode == "ave":
            y = (f + b) * self.dtype.type(0.5)
        else:
            y = f * b
        if training:
            self._ctx = dict(f=f, b=b, y_shape=y.shape)
        return np.ascontiguousarray(y)

    def _keras_apply(self, x, mask, training):
        if self.mode is None:   # the model splits its output; nothing to compute here
            x = real_array(x, "x", self.dtype)
            _halves(x, "x")
            if training:
                self._ctx = dict(y_shape=x.shape)
            return x, mask
        return self._run(x, None, training), mask

    def _backward(self, ctx, dy):
        if self.mode is None:
            return dy
        if self.mode == "sum":
            df = db = dy
        elif self.mode == "ave":
            df = db = dy * self.dtype.type(0.5)
        else:
            df, db = dy * ctx["b"], dy * ctx["f"]
        return np.ascontiguousarray(np.concatenate([df, db], axis=-1), dtype=self.dtype)

    def describe_output(self):
        """Describe the output for ``Sequential.summary``.

        Returns
        -------
        str
            "(..., H)", half the input's features; mode None: the input's.
        """
        return "same as input" if self.mode is None else "(..., H)"

    def output_shape(self, input_shape):
        if self.mode is None:
            return input_shape
        return tuple(input_shape[:-1]) + (None if input_shape[-1] is None
                                          else input_shape[-1] // 2,)


class KerasReverse(Layer):
    """Reverse the time axis of a batch-first sequence, padding included (Keras's go_backwards).

    Keras's go_backwards layer reads its input, and its mask, last step first
    and returns its outputs in that order; an fr layer after KerasReverse
    does the same. Inside a KerasSequential the mask is reversed with x. It
    needs whole sequences (no streaming `step`).

    Parameters
    ----------
    dtype : {"float32", "float64"}, default "float32"
        The dtype of inputs and outputs.

    Examples
    --------
    >>> import numpy as np
    >>> from fastrnn.formats.keras import KerasReverse
    >>> KerasReverse()(np.arange(3, dtype=np.float32).reshape(1, 3, 1))[0, :, 0]
    array([2., 1., 0.], dtype=float32)
    """

    def __init__(self, dtype="float32"):
        super().__init__(dtype)

    def _run(self, x, lengths, training):
        x = real_array(x, "x", self.dtype)
        if x.ndim != 3:
            raise ValueError(f"x: KerasReverse takes whole sequences (B, T, F), got shape "
                             f"{x.shape}")
        if lengths is not None:
            raise ValueError("lengths: KerasReverse reverses the padded time axis, as Keras "
                             "does; inside a KerasSequential the mask follows it")
        y = np.ascontiguousarray(x[:, ::-1])
        if training:
            self._ctx = dict(y_shape=y.shape)
        return y

    def _keras_apply(self, x, mask, training):
        return self._run(x, None, training), (None if mask is None
                                              else np.ascontiguousarray(mask[:, ::-1]))

    def _backward(self, ctx, dy):
        return np.ascontiguousarray(dy[:, ::-1])

    def step(self, x_t, state=None):
        """Refuse streaming: the reversed order needs the whole sequence.

        Parameters
        ----------
        x_t : numpy.ndarray
            One step's inputs.
        state : object, optional
            Unused.

        Returns
        -------
        tuple
            Never returns.

        Raises
        ------
        ValueError
            Always.
        """
        raise ValueError("step: KerasReverse (go_backwards) needs the whole sequence")


class KerasSoftmax(Layer):
    """Softmax over the last axis, as Keras's ``activation="softmax"``.

    Parameters
    ----------
    dtype : {"float32", "float64"}, default "float32"
        The dtype of inputs and outputs.

    Examples
    --------
    >>> import numpy as np
    >>> from fastrnn.formats.keras import KerasSoftmax
    >>> KerasSoftmax()(np.zeros((1, 4), np.float32))
    array([[0.25, 0.25, 0.25, 0.25]], dtype=float32)
    """

    def __init__(self, dtype="float32"):
        super().__init__(dtype)

    def _run(self, x, lengths, training):
        # lengths are not used: Keras computes every step, padding included
        x = real_array(x, "x", self.dtype)
        z = x - x.max(axis=-1, keepdims=True)   # no overflow; softmax is shift-free
        e = np.exp(z)
        y = e / e.sum(axis=-1, keepdims=True)
        if training:
            self._ctx = dict(y=y, y_shape=y.shape)
        return y

    def _backward(self, ctx, dy):
        y = ctx["y"]
        return np.ascontiguousarray(y * (dy - (dy * y).sum(axis=-1, keepdims=True)))


class KerasBidirectionalLast(Layer):
    """The final outputs of both directions: (B, T, 2H) -> (B, 2H), as Keras's Bidirectional(return_sequences=False).

    The forward half is taken at each sequence's last valid step, the
    backward half at its first (where the reverse direction ends). Valid
    steps come from `lengths`, or inside a KerasSequential from the mask; a
    sequence with no valid step gives zeros, as Keras.

    Parameters
    ----------
    dtype : {"float32", "float64"}, default "float32"
        The dtype of inputs and outputs.

    Examples
    --------
    >>> import numpy as np
    >>> from fastrnn.formats.keras import KerasBidirectionalLast
    >>> y = np.arange(12, dtype=np.float32).reshape(1, 3, 4)   # T = 3, 2H = 4
    >>> KerasBidirectionalLast()(y)
    array([[8., 9., 2., 3.]], dtype=float32)
    """

    reduces_sequence = True

    def __init__(self, dtype="float32"):
        super().__init__(dtype)

    def _run(self, x, lengths, training, mask=None):
        x = real_array(x, "x", self.dtype)
        if x.ndim != 3 or x.shape[-1] % 2 or 0 in x.shape[:2]:
            raise ValueError(f"x: expected (B, T, 2H), the two directions concatenated, "
                             f"got shape {x.shape}")
        B, T, H2 = x.shape
        if mask is None:
            lens = lengths_array(lengths, T, B) if lengths is not None else np.full(B, T)
            mask = np.arange(T)[None, :] < lens[:, None]
        any_ = mask.any(axis=1)
        last = np.where(any_, T - 1 - np.argmax(mask[:, ::-1], axis=1), 0)
        first = np.where(any_, np.argmax(mask, axis=1), 0)
        rows, H = np.arange(B), H2 // 2
        y = np.concatenate([x[rows, last, :H], x[rows, first, H:]], axis=1)
        y[~any_] = 0
        if training:
            self._ctx = dict(x_shape=x.shape, last=last, first=first, any=any_,
                             y_shape=y.shape)
        return y

    def _keras_apply(self, x, mask, training):
        return self._run(x, None, training, mask=mask), None

    def _backward(self, ctx, dy):
        dx = np.zeros(ctx["x_shape"], self.dtype)
        H = dx.shape[-1] // 2
        dy = np.where(ctx["any"][:, None], dy, 0)
        rows = np.arange(dx.shape[0])
        dx[rows, ctx["last"], :H] += dy[:, :H]
        dx[rows, ctx["first"], H:] += dy[:, H:]
        return dx

    def output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def describe_output(self):
        """Describe the output for ``Sequential.summary``.

        Returns
        -------
        str
            "(B, 2H)".
        """
        return "(B, 2H)"


class KerasMasking(Layer):
    """Keras's Masking layer: steps whose features all equal `mask_value` are masked and zeroed.

    Runs inside a KerasSequential only, which carries the mask it makes to
    the recurrent layers after it (a plain fr.Sequential would drop it).

    Parameters
    ----------
    mask_value : float, default 0.0
        The value that marks a masked step (in every feature).
    dtype : {"float32", "float64"}, default "float32"
        The dtype of inputs and outputs.

    Examples
    --------
    >>> import numpy as np
    >>> from fastrnn.formats.keras import KerasMasking
    >>> KerasMasking(-1.0).mask_of(np.array([[[1.0], [-1.0]]], np.float32))
    array([[ True, False]])
    """

    #: the layer makes Keras's mask
    makes_mask = True

    def __init__(self, mask_value=0.0, dtype="float32"):
        super().__init__(dtype)
        if isinstance(mask_value, bool) or not isinstance(mask_value, (int, float, np.number)):
            raise TypeError(f"mask_value: expected a number, got {mask_value!r}")
        self.mask_value = float(mask_value)

    def mask_of(self, x):
        """Return Keras's mask of a batch: True where some feature differs from mask_value.

        Parameters
        ----------
        x : array_like
            (B, T, F) features.

        Returns
        -------
        numpy.ndarray
            (B, T) bool.
        """
        x = real_array(x, "x", self.dtype)
        if x.ndim != 3:
            raise ValueError(f"x: KerasMasking takes sequences (B, T, F), got shape {x.shape}")
        return np.any(x != self.dtype.type(self.mask_value), axis=-1)

    def _run(self, x, lengths, training):
        raise _only_in_keras_model(self)

    def _keras_apply(self, x, mask, training):
        x = real_array(x, "x", self.dtype)
        m = self.mask_of(x)
        y = np.where(m[..., None], x, self.dtype.type(0))
        if training:
            self._ctx = dict(m=m, y_shape=y.shape)
        return y, m

    def _backward(self, ctx, dy):
        return np.ascontiguousarray(np.where(ctx["m"][..., None], dy, 0), dtype=self.dtype)


class KerasEmbedding(Embedding):
    """An fr.Embedding that makes Keras's mask: with mask_zero=True, id 0 marks a masked step.

    Runs inside a KerasSequential only when mask_zero is set (the model
    carries the mask to the recurrent layers); the vector of id 0 is the
    table's row 0, as in Keras, and gets gradients.

    Parameters
    ----------
    num_embeddings : int
        The number of ids.
    embedding_dim : int
        The size of each vector.
    mask_zero : bool, default True
        Id 0 marks a masked step.
    dtype : {"float32", "float64"}, default "float32"
        The dtype of outputs and parameters.
    seed : int, optional
        Seeds the initial weights.

    Examples
    --------
    >>> import numpy as np
    >>> from fastrnn.formats.keras import KerasEmbedding
    >>> KerasEmbedding(5, 2, seed=0).mask_of(np.array([[3, 1, 0]]))
    array([[ True,  True, False]])
    """

    def __init__(self, num_embeddings, embedding_dim, mask_zero=True, dtype="float32",
                 seed=None):
        super().__init__(num_embeddings, embedding_dim, None, dtype, seed)
        if not isinstance(mask_zero, (bool, np.bool_)):
            raise TypeError(f"mask_zero: expected a bool, got {mask_zero!r}")
        self.mask_zero = bool(mask_zero)

    @property
    def makes_mask(self):
        """True when the layer makes Keras's mask (mask_zero)."""
        return self.mask_zero

    def mask_of(self, x):
        """Return Keras's mask of a batch of ids: True where the id is not 0.

        Parameters
        ----------
        x : array_like
            (B, T) int ids.

        Returns
        -------
        numpy.ndarray
            (B, T) bool.
        """
        ids = self.ids(x)
        if ids.ndim != 2:
            raise ValueError(f"x: expected (B, T) ids, got shape {ids.shape}")
        return ids != 0

    def _run(self, x, lengths, training):
        if self.mask_zero:
            raise _only_in_keras_model(self)
        return super()._run(x, lengths, training)

    def _keras_apply(self, x, mask, training):
        m = self.mask_of(x) if self.mask_zero else mask
        return Embedding._run(self, x, None, training), m


def _right_padded_lengths(mask):
    """(B,) lengths when each row of the (B, T) mask is True then False with
    at least one True (what `lengths` expresses), else None."""
    lens = mask.sum(axis=1)
    if lens.min() < 1:
        return None
    if not np.array_equal(mask, np.arange(mask.shape[1])[None, :] < lens[:, None]):
        return None
    return lens.astype(np.int64)


class KerasSequential(Sequential):
    """An fr.Sequential that carries Keras's mask, as ``fr.from_keras`` builds it for masked models.

    The mask is made by a KerasEmbedding(mask_zero=True) or KerasMasking layer
    (and by ``lengths``, when given: steps past each length are masked too).
    Each recurrent layer after it gets the mask, as ``lengths`` where it is
    right-padded and as ``mask=`` otherwise (left padding, holes); a
    KerasReverse reverses it with the sequence; it ends where the sequence
    ends (a pooling layer, a return_sequences=False layer). Every other layer
    runs on all steps, as in Keras. A last KerasMerge(None) makes the model
    return the tuple (forward, backward) of Keras's merge_mode=None.

    Parameters
    ----------
    layers : list of fr.Layer, optional
        The layers, first to last.
    seed : int, optional
        Seeds the initial weights of the layers built without a seed.

    Examples
    --------
    >>> import numpy as np
    >>> import fastrnn as fr
    >>> from fastrnn.formats.keras import KerasEmbedding, KerasSequential
    >>> model = KerasSequential([KerasEmbedding(9, 3, seed=0),
    ...                          fr.GRU(3, 2, batch_first=True, seed=0)])
    >>> model(np.array([[4, 7, 0, 0]])).shape
    (1, 4, 2)
    """

    def _run(self, x, lengths, training, states=None):
        finals = []
        mask = None
        if lengths is not None:
            mask = np.arange(x.shape[1])[None, :] < lengths[:, None]
        base = mask    # the user's lengths mask every mask made later too
        seq = x.ndim >= 2 if isinstance(self.layers[0], Embedding) else x.ndim >= 3
        for layer in self.layers:
            s0 = None
            if layer.carries_state and states is not None:
                s0 = states[len(finals)]
            keras = getattr(layer, "_keras_apply", None)
            if keras is not None:
                x, made = keras(x, mask if seq else None, training)
                if isinstance(layer, KerasReverse) and base is not None:
                    base = base[:, ::-1]
                if getattr(layer, "makes_mask", False) and base is not None:
                    made = made & base
                mask, st = made, None
            elif layer.carries_state:
                x, st = self._recurrent(layer, x, mask if seq else None, s0, training)
            else:
                x, st = layer.apply(x, None, s0, training)
            if layer.carries_state:
                finals.append(st)
            if layer.reduces_sequence:
                seq, mask = False, None
        return x, finals

    @staticmethod
    def _recurrent(layer, x, mask, s0, training):
        if mask is None or bool(mask.all()):
            return layer.apply(x, None, s0, training)
        lens = _right_padded_lengths(mask)
        if lens is not None:
            return layer.apply(x, lens, s0, training)
        if getattr(x, "ndim", 0) != 3:
            raise ValueError(f"{type(layer).__name__}: needs a sequence (B, T, F), got shape "
                             f"{getattr(x, 'shape', None)}")
        m = mask if layer.batch_first else np.ascontiguousarray(mask.T)
        xin = x if layer.batch_first else np.ascontiguousarray(x.transpose(1, 0, 2))
        run = layer.forward if training else layer
        y, st = run(xin, s0, mask=m)
        return (y if layer.batch_first else np.ascontiguousarray(y.transpose(1, 0, 2))), st

    def _split(self, out):
        last = self.layers[-1] if self.layers else None
        if isinstance(last, KerasMerge) and last.mode is None:
            return _halves(out, "output")
        return out

    def __call__(self, x, lengths=None):
        """Inference on one batch: the outputs Keras's model(x) gives."""
        return self._split(super().__call__(x, lengths))

    def predict(self, x, lengths=None, batch_size=256):
        """Return the model's outputs (through the loss's output activation, after compile).

        Parameters
        ----------
        x : array_like or list
            Batch-first, as Keras's model.predict takes it.
        lengths : array_like of int, optional
            (N,) valid steps of each sequence; steps past them are masked too,
            and zero in a per-step output.
        batch_size : int, default 256
            Samples per batch.

        Returns
        -------
        numpy.ndarray or tuple of numpy.ndarray
            The outputs; the tuple (forward, backward) after a KerasMerge(None).
        """
        return self._split(super().predict(x, lengths, batch_size))

    def step(self, x_t, states=None):
        """Run one time step, for streaming; a model that makes a mask or reverses time refuses.

        Parameters
        ----------
        x_t : array_like
            (B,) ids after an Embedding, else (B, F).
        states : list, optional
            The states returned by the previous step.

        Returns
        -------
        out : numpy.ndarray
            The outputs of the step.
        states : list
            The new states.

        Raises
        ------
        ValueError
            For a model with a mask, a KerasReverse or a pooling layer.
        """
        for layer in self.layers:
            if getattr(layer, "makes_mask", False) or isinstance(
                    layer, (KerasReverse, KerasBidirectionalLast)) or (
                    isinstance(layer, KerasMerge) and layer.mode is None):
                raise ValueError(f"step: {layer!r} needs whole sequences (Keras's masks, "
                                 "reversal and final outputs are not streamed)")
        return super().step(x_t, states)


register_builtin(KerasMerge, KerasReverse, KerasSoftmax, KerasBidirectionalLast,
                 KerasMasking, KerasEmbedding)
