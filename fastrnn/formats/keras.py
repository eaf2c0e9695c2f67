"""Keras 3 interchange: fastrnn layers from Keras LSTM, GRU, SimpleRNN and
Bidirectional layers, live or saved.

    layer = fr.from_keras(keras_layer)              # a live Keras layer
    layers = fr.from_keras(keras_model)             # a model: list of layers
    layers = fr.from_keras("model.keras")           # a saved .keras file
    model = fr.from_keras("model.keras", sequential=True)   # the whole model
    layer = fr.from_keras_weights("GRU", kernel, recurrent_kernel, bias,
                                  reset_after=False)

Keras layers are batch-first, so the returned layers have batch_first=True.
A .keras file is read as data only: its config.json (JSON) and its
model.weights.h5 (HDF5 through h5py) from the zip; keras is not imported and
nothing is unpickled or executed.

Weight mapping (Keras stores x @ kernel, fastrnn/torch W_ih @ x):
    weight_ih = kernel.T, weight_hh = recurrent_kernel.T, gate blocks
    LSTM   Keras i,f,c,o = torch i,f,g,o (same order); bias -> bias_ih, bias_hh = 0
    GRU    Keras z,r,h -> torch r,z,n;
           reset_after=True  (Keras 3 default): bias (2, 3H) = [input, recurrent]
                             -> bias_ih, bias_hh; torch's GRU
           reset_after=False: bias (3H,) -> bias_ih, bias_hh = 0;
                             fr.GRU(linear_before_reset=False)
    SimpleRNN  activation tanh or relu -> fr.RNN(nonlinearity=...)
    Bidirectional          -> bidirectional=True (backward layer's weights ->
                             the *_reverse parameters)
Keras's h' = z*h + (1-z)*hh is torch's h' = (1-z)*n + z*h.

Other activations (hard_sigmoid, linear, elu, softsign, softplus,
leaky_relu, and sigmoid/tanh/relu in other places) map to the layers'
activations= option with ONNX's names and Keras's alpha/beta.

A whole model (sequential=True, live or from a file) maps layer by layer,
with the Keras semantics the core layers lack as the small layers of
keras_layers.py: merge modes (KerasMerge), go_backwards (KerasReverse),
a Bidirectional's final outputs (KerasBidirectionalLast), softmax heads
(KerasSoftmax), and masks (KerasEmbedding, KerasMasking, carried by a
KerasSequential to recurrent layers built with Keras's padding semantics).
docs/keras.md has the table. A lone layer (or the list of a model's
recurrent layers) keeps go_backwards and merge_mode in keras_config and
warns that the caller applies them; recurrent_only=True on a masked model
builds the layers with Keras's padding and warns that each call needs the
mask. What does not map raises an error naming the layer and the field.
Training-only settings (dropout, recurrent_dropout) do not affect
inference and are not carried. return_sequences / return_state do not
change a lone layer: it returns the whole sequence and the final states;
each returned layer keeps the Keras settings that matter in
`layer.keras_config` (a dict: name, return_sequences, return_state,
go_backwards, zero_output_for_mask, masked, and merge_mode for a
Bidirectional).
"""
import io
import json
import numbers
import os
import re
import zipfile

import numpy as np

from .._cells import num_gates
from .._validate import warn_user
from ..layers import Activation, Dense, Dropout, Embedding, LastStep
from ..model import Sequential
from ..recurrent import GRU, LSTM, RNN
from . import _files
from .keras_layers import (KerasBidirectionalLast, KerasEmbedding, KerasMasking, KerasMerge,
                           KerasReverse, KerasSequential, KerasSoftmax)

__all__ = ["from_keras", "from_keras_weights", "from_keras_sequential"]

_KINDS = {"lstm": "LSTM", "gru": "GRU", "simplernn": "SimpleRNN", "simple_rnn": "SimpleRNN",
          "rnn": "SimpleRNN"}
_RECURRENT = ("LSTM", "GRU", "SimpleRNN", "Bidirectional")
_MERGE_MODES = ("concat", "sum", "ave", "mul", None)
# layers of a model that carry no computation at inference
_PASSIVE = ("InputLayer", "Dropout", "SpatialDropout1D", "GaussianDropout", "GaussianNoise",
            "ActivityRegularization")
_MAX_CONFIG_BYTES = 64 << 20   # the JSON of a model of thousands of layers is far less
# A member larger than _RATIO_FLOOR that deflates more than _MAX_RATIO:1 is
# refused before it is inflated: HDF5 headers deflate ~15:1, float weights ~1:1.
_MAX_RATIO = 200
_RATIO_FLOOR = 1 << 20


def _kind(kind):
    k = _KINDS.get(str(kind).lower().replace("-", "_")) if isinstance(kind, str) else None
    if k is None:
        raise ValueError(f"kind: expected 'LSTM', 'GRU' or 'SimpleRNN', got {kind!r}")
    return k


def _arr(a, name):
    if a is None:
        raise TypeError(f"{name}: expected an array, got None")
    if hasattr(a, "detach") and hasattr(a, "numpy"):
        a = a.detach().cpu().numpy()
    elif hasattr(a, "numpy") and not isinstance(a, np.ndarray):
        a = a.numpy()
    a = np.asarray(a)
    if a.dtype.kind != "f":
        raise TypeError(f"{name}: expected a float array, got dtype {a.dtype}")
    return a


def _direction_params(kind, kernel, recurrent_kernel, bias, reset_after, where):
    """torch-layout (weight_ih, weight_hh, bias_ih, bias_hh) of one direction."""
    kernel = _arr(kernel, f"{where}kernel")
    rk = _arr(recurrent_kernel, f"{where}recurrent_kernel")
    G = num_gates(kind)
    if rk.ndim != 2 or rk.shape[1] != G * rk.shape[0]:
        raise ValueError(f"{where}recurrent_kernel: expected shape (units, {G}*units) for "
                         f"{kind}, got {rk.shape}")
    H = rk.shape[0]
    if kernel.ndim != 2 or kernel.shape[1] != G * H:
        raise ValueError(f"{where}kernel: expected shape (input_size, {G * H}) for {kind} "
                         f"with {H} units, got {kernel.shape}")
    order = (1, 0, 2) if kind == "GRU" else tuple(range(G))   # torch block k <- Keras block
    perm = np.concatenate([np.arange(b * H, (b + 1) * H) for b in order])
    w_ih = kernel.T[perm]
    w_hh = rk.T[perm]
    if bias is None:
        return kernel.shape[0], H, (w_ih, w_hh, None, None)
    bias = _arr(bias, f"{where}bias")
    if kind == "GRU" and reset_after:
        if bias.shape != (2, G * H):
            raise ValueError(f"{where}bias: expected shape (2, {G * H}) for a GRU with "
                             f"reset_after=True, got {bias.shape}")
        b_ih, b_hh = bias[0][perm], bias[1][perm]
    else:
        if bias.shape != (G * H,):
            hint = " (a (2, 3*units) bias means reset_after=True)" if kind == "GRU" else ""
            raise ValueError(f"{where}bias: expected shape ({G * H},){hint}, got {bias.shape}")
        b_ih, b_hh = bias[perm], np.zeros_like(bias)
    return kernel.shape[0], H, (w_ih, w_hh, b_ih, b_hh)


# Keras activation -> ONNX's (name, alpha, beta), the layers' `activations=`
# (docs/variants.md); Keras 3's hard_sigmoid is relu6(x + 3) / 6, its
# leaky_relu has slope 0.2, linear is Affine(1, 0)
_RNN_ACTS = {"sigmoid": ("Sigmoid", None, None), "tanh": ("Tanh", None, None),
             "relu": ("Relu", None, None), "linear": ("Affine", 1.0, 0.0),
             "hard_sigmoid": ("HardSigmoid", 1.0 / 6.0, 0.5), "elu": ("Elu", 1.0, None),
             "softsign": ("Softsign", None, None), "softplus": ("Softplus", None, None),
             "leaky_relu": ("LeakyRelu", 0.2, None)}


def _rnn_act(value, field, where):
    name = "linear" if value is None else value
    if not isinstance(name, str) or name.lower() not in _RNN_ACTS:
        raise NotImplementedError(f"{where}{field}={_show(value)} is not supported (fastrnn "
                                  f"maps {', '.join(sorted(_RNN_ACTS))})")
    return _RNN_ACTS[name.lower()]


def _check_activations(kind, activation, recurrent_activation, where, directions=1):
    """(nonlinearity, layer options) of Keras's activations: none for the
    cell's own (the C kernels run), else `activations=` with ONNX's names in
    ONNX's slots (LSTM f, g, h; GRU f, g; RNN f), per direction."""
    act = _rnn_act(activation, "activation", where)
    if kind == "SimpleRNN":
        if act[0] in ("Tanh", "Relu"):
            return act[0].lower(), {}
        slots = [act]
    else:
        ract = _rnn_act(recurrent_activation, "recurrent_activation", where)
        if (ract[0], act[0]) == ("Sigmoid", "Tanh"):
            return "tanh", {}
        slots = [ract, act, act] if kind == "LSTM" else [ract, act]
    slots = slots * directions
    return "tanh", {"activations": [n for n, _, _ in slots],
                    "activation_alpha": [a for _, a, _ in slots],
                    "activation_beta": [b for _, _, b in slots]}


def from_keras_weights(kind, kernel, recurrent_kernel, bias=None, *, reset_after=True,
                       activation="tanh", recurrent_activation="sigmoid", backward=None,
                       dtype=None):
    """Build a fastrnn layer (batch_first=True) from Keras weight arrays.

    Parameters
    ----------
    kind : {"LSTM", "GRU", "SimpleRNN"}
        The Keras layer type.
    kernel : array_like
        (input_size, G*units), G = 4, 3, 1.
    recurrent_kernel : array_like
        (units, G*units).
    bias : array_like, optional
        (G*units,), or (2, 3*units) for a GRU with reset_after=True; None for
        use_bias=False.
    reset_after : bool, default True
        GRU only: Keras's reset_after (True = torch's GRU).
    activation : str, default "tanh"
        Keras's cell activation: sigmoid, tanh, relu, linear (or None),
        hard_sigmoid, elu, softsign, softplus or leaky_relu. Other than tanh
        (and relu for a SimpleRNN) the layer gets ``activations=`` and runs
        on fastrnn's NumPy engine (docs/variants.md).
    recurrent_activation : str, default "sigmoid"
        Keras's gate activation (LSTM, GRU), from the same list.
    backward : tuple, optional
        For a Bidirectional layer: (kernel, recurrent_kernel, bias) of the
        backward direction.
    dtype : str, optional
        The layer dtype; None: float64 if the kernel is float64, else float32.

    Returns
    -------
    RNNBase
        The layer.

    Examples
    --------
    >>> import numpy as np
    >>> import fastrnn as fr
    >>> k, rk, b = np.zeros((3, 8)), np.zeros((2, 8)), np.zeros(8)
    >>> fr.from_keras_weights("LSTM", k.astype(np.float32), rk.astype(np.float32),
    ...                       b.astype(np.float32)).hidden_size
    2
    """
    return _weights_layer(kind, kernel, recurrent_kernel, bias, reset_after, activation,
                          recurrent_activation, backward, dtype, {})


def _weights_layer(kind, kernel, recurrent_kernel, bias, reset_after, activation,
                   recurrent_activation, backward, dtype, layer_kw):
    kind = _kind(kind)
    if not isinstance(reset_after, (bool, np.bool_)):
        raise TypeError(f"reset_after: expected a bool, got {reset_after!r}")
    _check_activations(kind, activation, recurrent_activation, "")
    I, H, fwd = _direction_params(kind, kernel, recurrent_kernel, bias, reset_after, "")
    dirs = [fwd]
    if backward is not None:
        if not isinstance(backward, (tuple, list)) or len(backward) not in (2, 3):
            raise TypeError("backward: expected (kernel, recurrent_kernel[, bias]) of the "
                            "backward direction")
        bk = list(backward) + [None] * (3 - len(backward))
        if (bk[2] is None) != (bias is None):
            raise ValueError("backward: give a bias for both directions or for neither")
        I2, H2, bwd = _direction_params(kind, bk[0], bk[1], bk[2], reset_after, "backward ")
        if (I2, H2) != (I, H):
            raise ValueError(f"backward: sizes (input_size={I2}, units={H2}) differ from the "
                             f"forward direction's ({I}, {H})")
        dirs.append(bwd)
    if dtype is None:
        dtype = "float64" if np.asarray(fwd[0]).dtype == np.float64 else "float32"
    act, act_kw = _check_activations(kind, activation, recurrent_activation, "", len(dirs))
    kw = dict(bias=bias is not None, batch_first=True, bidirectional=len(dirs) == 2,
              dtype=dtype, **act_kw, **layer_kw)
    if kind == "LSTM":
        layer = LSTM(I, H, **kw)
    elif kind == "GRU":
        layer = GRU(I, H, linear_before_reset=bool(reset_after), **kw)
    else:
        layer = RNN(I, H, nonlinearity=act, **kw)
    sd = {}
    for d, (w_ih, w_hh, b_ih, b_hh) in enumerate(dirs):
        sfx = "_reverse" if d else ""
        sd[f"weight_ih_l0{sfx}"], sd[f"weight_hh_l0{sfx}"] = w_ih, w_hh
        if b_ih is not None:
            sd[f"bias_ih_l0{sfx}"], sd[f"bias_hh_l0{sfx}"] = b_ih, b_hh
    layer.load_state_dict(sd)
    layer.eval()
    return layer


# ---- config fields, each checked before it is used --------------------------------

def _show(value, n=60):
    """repr(value), shortened: a hostile config may hold megabytes in a field."""
    r = repr(value)
    return r if len(r) <= n else r[:n - 3] + "..."


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


_FIELD_KINDS = {
    # kind: (test, what the message says it must be)
    "bool": (lambda v: isinstance(v, (bool, np.bool_)), "true or false"),
    "units": (lambda v: _is_int(v) and v >= 1, "a positive int"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "str_or_none": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "dict": (lambda v: isinstance(v, dict), "an object"),
    "dict_or_none": (lambda v: v is None or isinstance(v, dict), "an object or null"),
    # Keras serializes an activation as its name, a custom one as an object
    "activation": (lambda v: v is None or isinstance(v, (str, dict)), "an activation name"),
    "list": (lambda v: isinstance(v, list), "a list"),
    "number": (lambda v: isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)),
               "a number"),
    "axis": (lambda v: _is_int(v), "an int"),
    "rate": (lambda v: isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))
             and 0 <= v < 1, "a number in [0, 1)"),
}


def _field(cfg, key, kind, default, where, of=""):
    """cfg[key] checked to be of `kind` (_FIELD_KINDS); `default` when absent.
    The error names the field, and `where` names the file and layer."""
    if key not in cfg:
        return default
    v = cfg[key]
    test, want = _FIELD_KINDS[kind]
    if not test(v):
        raise ValueError(f"{where}: config field {key!r}{of} must be {want}, got {_show(v)}")
    return int(v) if kind == "units" else bool(v) if kind == "bool" else v


def _required(cfg, key, kind, where, of=""):
    """cfg[key] checked as _field does; its absence is an error too."""
    if key not in cfg:
        raise ValueError(f"{where}: config has no field {key!r}{of}")
    return _field(cfg, key, kind, None, where, of)


def _rnn_spec(cls, cfg, where, of=""):
    """The checked settings of one LSTM/GRU/SimpleRNN config."""
    kw = dict(where=where, of=of)
    act = _field(cfg, "activation", "activation", "tanh", **kw)
    ract = _field(cfg, "recurrent_activation", "activation", "sigmoid", **kw)
    return {
        "kind": _kind(cls),
        "units": _field(cfg, "units", "units", None, **kw),
        "use_bias": _field(cfg, "use_bias", "bool", True, **kw),
        "reset_after": _field(cfg, "reset_after", "bool", True, **kw),
        # null is Keras's linear activation, not the default
        "activation": "linear" if act is None else act,
        "recurrent_activation": "linear" if ract is None else ract,
        "go_backwards": _field(cfg, "go_backwards", "bool", False, **kw),
        "return_sequences": _field(cfg, "return_sequences", "bool", False, **kw),
        "return_state": _field(cfg, "return_state", "bool", False, **kw),
        "zero_output_for_mask": _field(cfg, "zero_output_for_mask", "bool", False, **kw),
        "stateful": _field(cfg, "stateful", "bool", False, **kw),
    }


def _layer_spec(class_name, config, where):
    """(specs, keras_config) of a recurrent layer's config, every field used
    checked: specs holds one _rnn_spec per direction (two for Bidirectional)."""
    name = _field(config, "name", "str", None, where)
    if class_name == "Bidirectional":
        merge = _field(config, "merge_mode", "str_or_none", "concat", where)
        if merge not in _MERGE_MODES:
            raise ValueError(f"{where}: config field 'merge_mode' must be one of "
                             f"{list(_MERGE_MODES)}, got {_show(merge)}")
        inner = _required(config, "layer", "dict", where)
        icls = _required(inner, "class_name", "str", where, " of 'layer'")
        if icls not in ("LSTM", "GRU", "SimpleRNN"):
            raise NotImplementedError(f"{where}: Bidirectional of {_show(icls)} is not "
                                      "supported")
        fw = _rnn_spec(icls, _field(inner, "config", "dict", {}, where, " of 'layer'"),
                       where, " of 'layer'")
        if fw["go_backwards"]:
            raise NotImplementedError(f"{where}: a Bidirectional whose forward layer has "
                                      "go_backwards=True is not supported")
        outer = _field(config, "backward_layer", "dict_or_none", None, where)
        bw = fw
        if outer is not None:
            of = " of 'backward_layer'"
            bcls = _field(outer, "class_name", "str", icls, where, of)
            if bcls != icls:
                raise NotImplementedError(f"{where}: the backward layer is a {_show(bcls)}, "
                                          f"the forward layer a {icls}; fastrnn needs them "
                                          "equal")
            bw = _rnn_spec(bcls, _field(outer, "config", "dict", {}, where, of), where, of)
        for key in ("units", "use_bias", "activation", "recurrent_activation", "reset_after"):
            if bw[key] != fw[key] and None not in (bw[key], fw[key]):
                raise NotImplementedError(f"{where}: the backward layer's {key} differs from "
                                          "the forward layer's; fastrnn needs them equal")
        specs = [fw, bw]
    elif class_name in ("LSTM", "GRU", "SimpleRNN"):
        specs = [_rnn_spec(class_name, config, where)]
    else:
        raise NotImplementedError(f"{where}: Keras layer {_show(class_name)} is not a "
                                  "recurrent layer fastrnn maps (LSTM, GRU, SimpleRNN, "
                                  "Bidirectional)")
    first = specs[0]
    keras_cfg = {"name": name, "return_sequences": first["return_sequences"],
                 "return_state": first["return_state"], "go_backwards": first["go_backwards"],
                 # Keras's Bidirectional forces zero outputs at masked steps of sequences
                 "zero_output_for_mask": first["zero_output_for_mask"] or (
                     len(specs) == 2 and first["return_sequences"])}
    if len(specs) == 2:
        keras_cfg["merge_mode"] = merge
    if first["stateful"]:
        warn_user(f"{where}: stateful=True: Keras carries the state from one batch to the "
                  "next; the fastrnn layer starts from zeros unless given the state "
                  "(layer(x, state) or model.step)")
    return specs, keras_cfg


# ---- one layer from its checked config and weight arrays ----------------------------

def _from_parts(class_name, config, weights, where, layer_kw=None):
    """weights: for LSTM/GRU/SimpleRNN [kernel, recurrent_kernel(, bias)]; for
    Bidirectional {"forward": [...], "backward": [...]}; layer_kw: more
    constructor options of the fastrnn layer (padding)."""
    return _build(_layer_spec(class_name, config, where), weights, where, layer_kw or {})


def _build(spec, weights, where, layer_kw):
    specs, keras_cfg = spec
    if len(specs) == 2:
        layer = _single(specs[0], weights["forward"], where, layer_kw,
                        backward=weights["backward"])
    else:
        layer = _single(specs[0], weights, where, layer_kw)
    layer.keras_config = keras_cfg
    return layer


def _single(spec, w, where, layer_kw, backward=None):
    use_bias = spec["use_bias"]
    n = 3 if use_bias else 2
    for name, ws in (("weights", w), ("backward weights", backward)):
        if ws is not None and len(ws) != n:
            raise ValueError(f"{where}: expected {n} {name} arrays (kernel, recurrent_kernel"
                             f"{', bias' if use_bias else ''}), got {len(ws)}")
    try:
        layer = _weights_layer(
            spec["kind"], w[0], w[1], w[2] if use_bias else None, spec["reset_after"],
            spec["activation"], spec["recurrent_activation"],
            None if backward is None else tuple(backward), None, layer_kw)
    except (ValueError, TypeError, NotImplementedError) as e:
        raise type(e)(f"{where}: {e}") from None
    units = spec["units"]
    if units is not None and units != layer.hidden_size:
        raise ValueError(f"{where}: config says units={units}, the weights have "
                         f"{layer.hidden_size}")
    return layer


def _warn_unapplied(layer, where):
    """A lone recurrent layer cannot apply what Keras applies around its
    cell (go_backwards, a merge other than concat): say so."""
    kc = layer.keras_config
    if kc["go_backwards"]:
        warn_user(f"{where}: go_backwards=True: Keras reads the input last step first and "
                  "returns the outputs in that order; give this layer x[:, ::-1] (and the "
                  "mask reversed), or convert the model with sequential=True")
    if kc.get("merge_mode", "concat") != "concat":
        warn_user(f"{where}: merge_mode={kc['merge_mode']!r}: the layer returns the two "
                  "directions concatenated, (..., 2*units); merge them with "
                  "fr.formats.keras.KerasMerge, or convert the model with sequential=True")


# ---- live Keras objects and models as a list of entries ------------------------------

def _is_keras(obj):
    return any(c.__module__.startswith("keras") for c in type(obj).__mro__)


def _live_layer(layer, layer_kw=None):
    cls = type(layer).__name__
    cfg = layer.get_config()
    where = f"from_keras: layer {_show(layer.name)} ({cls})"
    if not isinstance(cfg, dict):
        raise TypeError(f"{where}: get_config() gave a {type(cfg).__name__}, not a dict")
    if cls == "Bidirectional":
        w = {"forward": layer.forward_layer.get_weights(),
             "backward": layer.backward_layer.get_weights()}
        cfg = dict(cfg)
        cfg["layer"] = {"class_name": type(layer.forward_layer).__name__,
                        "config": layer.forward_layer.get_config()}
        cfg["backward_layer"] = {"class_name": type(layer.backward_layer).__name__,
                                 "config": layer.backward_layer.get_config()}
        return _from_parts(cls, cfg, w, where, layer_kw)
    return _from_parts(cls, cfg, layer.get_weights(), where, layer_kw)


class _Entry:
    """One layer of a Keras model, live or from a file: its class name,
    checked config, where (for messages), weights(n) -> its n arrays and
    recurrent(layer_kw) -> the fastrnn recurrent layer."""

    def __init__(self, cls, cfg, name, where, weights, recurrent):
        self.cls, self.cfg, self.name, self.where = cls, cfg, name, where
        self.weights, self.recurrent = weights, recurrent


def _live_entries(model):
    out = []
    for kl in model.layers:
        cls = type(kl).__name__
        cfg = kl.get_config()
        where = f"from_keras: layer {_show(getattr(kl, 'name', None))} ({cls})"
        if not isinstance(cfg, dict):
            raise TypeError(f"{where}: get_config() gave a {type(cfg).__name__}, not a dict")
        out.append(_Entry(cls, cfg, getattr(kl, "name", None), where,
                          lambda n, kl=kl, where=where: _live_weights(kl, n, where),
                          lambda kw, kl=kl: _live_layer(kl, kw)))
    return out


def _makes_mask(entry):
    """The Keras layers that make a mask from their input."""
    if entry.cls == "Embedding":
        return _field(entry.cfg, "mask_zero", "bool", False, entry.where)
    return entry.cls == "Masking"


def _masked_padding(cls, cfg, where):
    """The fastrnn padding of a recurrent layer that gets a Keras mask:
    'carry' where Keras repeats the last valid output at a masked step,
    'zeros' where it gives zeros (zero_output_for_mask=True, and both
    directions of a Bidirectional returning sequences)."""
    if cls == "Bidirectional":
        return "zeros"
    return "zeros" if _field(cfg, "zero_output_for_mask", "bool", False, where) else "carry"


def _pick(entries, recurrent_only, where):
    """The recurrent layers of a model's entries. Layers that get Keras's mask
    are built with its padding semantics, and a warning says that each call
    needs the mask (lengths= or mask=)."""
    out, skipped, masked, makers = [], [], False, []
    for e in entries:
        if e.cls in _RECURRENT:
            kw = {}
            if masked:
                kw["padding"] = _masked_padding(e.cls, e.cfg, e.where)
            layer = e.recurrent(kw)
            _warn_unapplied(layer, e.where)
            layer.keras_config["masked"] = masked
            out.append(layer)
            if not layer.keras_config["return_sequences"]:
                masked = False
        elif e.cls in _PASSIVE:
            continue
        else:
            if _makes_mask(e):
                masked = True
                makers.append(f"{e.name} ({e.cls})")
            skipped.append(f"{e.name} ({e.cls})")
    if skipped and not recurrent_only:
        raise NotImplementedError(
            f"{where}: layers {skipped} are not recurrent layers; pass recurrent_only=True "
            "to get the list of the model's recurrent layers alone (or sequential=True "
            "for the whole model)")
    if not out:
        raise ValueError(f"{where}: the model holds no LSTM, GRU, SimpleRNN or "
                         "Bidirectional layer")
    if makers and any(l.keras_config["masked"] for l in out):
        warn_user(f"{where}: {', '.join(makers)} mask the input; the recurrent layers that "
                  "get the mask (keras_config['masked']) have Keras's padding semantics, and "
                  "each call needs the mask: lengths= (right padding) or mask= (B, T) "
                  "booleans; sequential=True builds a model that makes the mask itself")
    return out


# ---- saved .keras files -------------------------------------------------------------

def _snake(name):
    """Keras's naming.to_snake_case: the h5 group of a model's layer is its
    class name in snake case, numbered _1, _2 ... on repeats."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _read_member(zf, name, cap, shown):
    """The bytes of zip member `name`: its declared size checked against the
    caps and its compression ratio before it is inflated, and no more than the
    declared size read (zipfile checks the CRC at the end)."""
    infos = [i for i in zf.infolist() if i.filename == name]
    if not infos:
        raise ValueError(f"from_keras: {shown!r} has no {name}; is it a Keras 3 .keras file?")
    if len(infos) > 1:
        raise ValueError(f"from_keras: {shown!r} holds {len(infos)} members named {name}; "
                         "a .keras file holds one")
    info = infos[0]
    if name == "config.json" and info.file_size > _MAX_CONFIG_BYTES:
        raise ValueError(f"from_keras: config.json of {shown!r} is too large "
                         f"({info.file_size} bytes, more than {_MAX_CONFIG_BYTES})")
    _files.check_bytes(info.file_size, cap, f"{name} of {shown!r}", "from_keras")
    if info.file_size > _RATIO_FLOOR and info.file_size > _MAX_RATIO * info.compress_size:
        raise ValueError(f"from_keras: {name} of {shown!r} inflates {info.compress_size} "
                         f"bytes to {info.file_size}, a compression ratio over {_MAX_RATIO}:1 "
                         "that no Keras weights reach (a zip bomb?)")
    try:
        with zf.open(info) as f:
            data = f.read(info.file_size)
            if len(data) != info.file_size:
                raise EOFError(f"{len(data)} of {info.file_size} bytes")
    except Exception as e:  # zipfile, zlib, bz2, lzma: any damage is the file's
        raise ValueError(f"from_keras: {name} of {shown!r} is damaged "
                         f"({type(e).__name__}: {e})") from None
    return data


def _read_keras_file(readable, shown, cap):
    try:
        zf = zipfile.ZipFile(readable)
    except Exception as e:  # BadZipFile, OSError, and whatever a damaged directory gives
        raise ValueError(f"from_keras: {shown!r} is not a .keras file (a zip archive): "
                         f"{type(e).__name__}: {e}") from None
    with zf:
        text = _read_member(zf, "config.json", cap, shown)
        try:
            config = json.loads(text.decode("utf-8"))
        except (ValueError, RecursionError) as e:   # bad UTF-8 or JSON, nesting too deep
            raise ValueError(f"from_keras: config.json of {shown!r} is not JSON "
                             f"({type(e).__name__}: {e})") from None
        weights = _read_member(zf, "model.weights.h5", cap, shown)
    return config, weights


class _Weights:
    """The arrays of an open model.weights.h5, read as data from that file
    alone: every h5py call is guarded (any error is the file's damage, a
    ValueError naming it), paths are followed through hard links only, and
    each dataset's layout, dtype, shape and size are checked before it is read.
    """

    def __init__(self, h5, shown, cap):
        self.h5, self.shown, self.cap, self.total = h5, shown, cap, 0

    def _call(self, fn, path):
        try:
            return fn()
        except Exception as e:  # h5py raises KeyError, OSError, RuntimeError, ... on damage
            raise ValueError(f"from_keras: model.weights.h5 of {self.shown!r} is damaged at "
                             f"{path!r} ({type(e).__name__}: {e})") from None

    def node(self, path, where, want):
        """The group or dataset (`want`) at `path`, reached through hard links:
        an external link reads another file and a soft link another object,
        and Keras writes neither."""
        import h5py
        from h5py import h5l
        obj, parts = self.h5, path.split("/")
        for k, part in enumerate(parts):
            here = "/".join(parts[:k + 1])
            if not isinstance(obj, h5py.Group):
                raise ValueError(f"{where}: {'/'.join(parts[:k])!r} in model.weights.h5 is "
                                 "not a group")
            links, key = obj.id.links, part.encode()
            info = self._call(lambda: links.get_info(key) if links.exists(key) else None, here)
            if info is None:
                raise ValueError(f"{where}: model.weights.h5 has no {here!r}")
            if info.type == h5l.TYPE_EXTERNAL:
                target = self._call(lambda: links.get_val(key), here)
                raise ValueError(f"{where}: {here!r} in model.weights.h5 is an external link "
                                 f"(to {_show(target)}); nothing is read from other files")
            if info.type == h5l.TYPE_SOFT:
                target = self._call(lambda: links.get_val(key), here)
                raise ValueError(f"{where}: {here!r} in model.weights.h5 is a soft link "
                                 f"(to {_show(target)}); Keras writes none")
            if info.type != h5l.TYPE_HARD:
                raise ValueError(f"{where}: {here!r} in model.weights.h5 is a link of type "
                                 f"{info.type}; only plain groups and datasets are read")
            parent = obj
            obj = self._call(lambda: parent[part], here)
        cls = h5py.Group if want == "group" else h5py.Dataset
        if not isinstance(obj, cls):
            raise ValueError(f"{where}: {path!r} in model.weights.h5 is a "
                             f"{type(obj).__name__.lower()}, expected a {want}")
        return obj

    def _checked(self, d, path, where):
        """(shape, dtype) of dataset `d`, refused if reading it could touch
        anything but this file's own bytes or inflate without bound."""
        from h5py import h5d
        dcpl = self._call(d.id.get_create_plist, path)
        layout = self._call(dcpl.get_layout, path)
        if layout == h5d.VIRTUAL:
            raise ValueError(f"{where}: {path!r} in model.weights.h5 is a virtual dataset "
                             "(its data lie in other files); nothing is read from other files")
        if self._call(dcpl.get_external_count, path):
            raise ValueError(f"{where}: {path!r} in model.weights.h5 has external storage "
                             "(its data lie in other files); nothing is read from other files")
        if layout not in (h5d.COMPACT, h5d.CONTIGUOUS, h5d.CHUNKED):
            raise ValueError(f"{where}: {path!r} in model.weights.h5 has an unknown layout "
                             f"({layout})")
        if self._call(dcpl.get_nfilters, path):
            # HDF5 inflates a filtered chunk with no bound on its size
            raise ValueError(f"{where}: {path!r} in model.weights.h5 is stored through a "
                             "filter (compression); Keras writes weights unfiltered, and "
                             "filtered chunks are not read")
        shape, dtype = self._call(lambda: (d.shape, d.dtype), path)
        if dtype.kind != "f" or dtype.itemsize not in (2, 4, 8):
            raise ValueError(f"{where}: {path!r} in model.weights.h5 has dtype {dtype}, "
                             "expected float16, float32 or float64")
        return shape, dtype

    def plain(self, group, n, where):
        """The n float arrays group/vars/0..n-1 of a non-recurrent layer
        (Dense, Embedding), checked and counted against the cap."""
        vpath = f"{group}/vars"
        v = self.node(vpath, where, "group")
        count = self._call(lambda: len(v), vpath)
        if count != n:
            raise ValueError(f"{where}: {vpath!r} in model.weights.h5 holds {count} entries, "
                             f"expected {n}")
        found = []
        for i in range(n):
            path = f"{vpath}/{i}"
            d = self.node(path, where, "dataset")
            shape, dtype = self._checked(d, path, where)
            self.total += int(np.prod(shape, dtype=object)) * dtype.itemsize
            _files.check_bytes(self.total, self.cap,
                               f"model.weights.h5's {path!r} (with the arrays before it)", where)
            found.append((path, d, shape))
        return [self._read(path, d, shape) for path, d, shape in found]

    def _read(self, path, d, shape):
        a = self._call(lambda: d[()], path)
        if not isinstance(a, np.ndarray) or a.shape != shape:
            raise ValueError(f"from_keras: model.weights.h5 of {self.shown!r} is damaged "
                             f"at {path!r} (read {type(a).__name__}, not a {shape} array)")
        return a

    def arrays(self, groups, specs, where):
        """The arrays of each group's vars/0..n-1 (groups: one cell per
        direction, specs: their _rnn_spec), checked against the config and the
        cap before any is read."""
        found, I = [], None
        for group, spec in zip(groups, specs):
            vpath = f"{group}/vars"
            v = self.node(vpath, where, "group")
            n = 3 if spec["use_bias"] else 2
            count = self._call(lambda: len(v), vpath)
            if count != n:
                raise ValueError(f"{where}: {vpath!r} in model.weights.h5 holds {count} "
                                 f"entries, expected {n} (kernel, recurrent_kernel"
                                 f"{', bias' if n == 3 else ''})")
            G, H = num_gates(spec["kind"]), spec["units"]
            for i in range(n):
                path = f"{vpath}/{i}"
                d = self.node(path, where, "dataset")
                shape, dtype = self._checked(d, path, where)
                if H is None:   # units read from the kernel when the config omits it
                    if not (isinstance(shape, tuple) and len(shape) == 2 and shape[1] >= G
                            and shape[1] % G == 0):
                        raise ValueError(f"{where}: {path!r} in model.weights.h5 (kernel) has "
                                         f"shape {shape}, expected (input_size, {G}*units) "
                                         f"for a {spec['kind']}")
                    H = shape[1] // G
                want = [(I, G * H), (H, G * H),
                        (2, G * H) if spec["kind"] == "GRU" and spec["reset_after"]
                        else (G * H,)][i]
                ok = isinstance(shape, tuple) and len(shape) == len(want) and \
                    all(s == w if w is not None else s >= 1 for s, w in zip(shape, want))
                if not ok:
                    role = ("kernel", "recurrent_kernel", "bias")[i]
                    shown = str(want).replace("None", "input_size")
                    raise ValueError(f"{where}: {path!r} in model.weights.h5 ({role}) has "
                                     f"shape {shape}, expected {shown} for a {spec['kind']} "
                                     f"with units={H}")
                if i == 0:
                    I = shape[0]
                self.total += int(np.prod(shape, dtype=object)) * dtype.itemsize
                _files.check_bytes(self.total, self.cap,
                                   f"model.weights.h5's {path!r} (with the arrays before it)",
                                   where)
                found.append((path, d, shape))
        out = [self._read(path, d, shape) for path, d, shape in found]
        k = len(out) // len(groups)
        return [out[j * k:(j + 1) * k] for j in range(len(groups))]


def _from_file(readable, shown, recurrent_only, cap, sequential=False):
    import h5py
    config, weights = _read_keras_file(readable, shown, cap)
    where = f"from_keras: {shown!r}"
    if not isinstance(config, dict):
        raise ValueError(f"{where}: config.json is not a JSON object")
    top_cls = _required(config, "class_name", "str", where)
    top = _field(config, "config", "dict", {}, where)
    try:
        h5 = h5py.File(io.BytesIO(weights), "r")
    except Exception as e:
        raise ValueError(f"{where}: model.weights.h5 is not a readable HDF5 file "
                         f"({type(e).__name__}: {e})") from None
    try:
        reader = _Weights(h5, shown, cap)
        if top_cls in _RECURRENT and not sequential:  # a single saved layer
            layer = _from_file_layer(reader, top_cls, top, "", where, {})
            _warn_unapplied(layer, where)
            return [layer]
        if top_cls not in ("Sequential", "Functional", "Model"):
            raise NotImplementedError(f"{where}: a saved {_show(top_cls)} is not supported "
                                      "(Sequential, functional models and recurrent layers are)")
        layers = _required(top, "layers", "list", where)
        counts, entries = {}, []
        for n, entry in enumerate(layers):
            if not isinstance(entry, dict):
                raise ValueError(f"{where}: layer entry {n} of config.json is not an object")
            at = f"{where} layer {n}"
            cls = _required(entry, "class_name", "str", at)
            cfg = _field(entry, "config", "dict", {}, at)
            snake = _snake(str(cls))
            k = counts.get(snake)
            counts[snake] = 0 if k is None else k + 1
            group = f"layers/{snake}" + ("" if k is None else f"_{k + 1}")
            lname = _field(cfg, "name", "str", group, f"{at} ({group!r})")
            lwhere = f"{where} layer {_show(lname)}"
            entries.append(_Entry(
                cls, cfg, lname, lwhere,
                lambda n, group=group, lwhere=lwhere: reader.plain(group, n, lwhere),
                lambda kw, cls=cls, cfg=cfg, group=group, lwhere=lwhere:
                    _from_file_layer(reader, cls, cfg, group, lwhere, kw)))
        if sequential:
            if top_cls != "Sequential":
                _check_chain(top, where)
            return _to_sequential(entries, where)
        return _pick(entries, recurrent_only, where)
    finally:
        try:
            h5.close()
        except Exception:  # noqa: BLE001 - closing a damaged file must not hide the answer
            pass


def _check_chain(top, where):
    """A functional model's config must be a chain (each layer fed by the one
    before it, one input, one output) to run as a Sequential."""
    layers = _required(top, "layers", "list", where)
    prev = None
    for n, entry in enumerate(layers):
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: layer entry {n} of config.json is not an object")
        cfg = _field(entry, "config", "dict", {}, where)
        name = _field(entry, "name", "str", None, where)
        name = _field(cfg, "name", "str", name, where)
        nodes = entry.get("inbound_nodes", [])
        sources = []
        for node in nodes if isinstance(nodes, (list, tuple)) else [None]:
            args = node.get("args") if isinstance(node, dict) else None
            for a in args if isinstance(args, (list, tuple)) else [None]:
                hist = (a.get("config") or {}).get("keras_history") \
                    if isinstance(a, dict) and isinstance(a.get("config"), dict) else None
                if not (isinstance(hist, (list, tuple)) and hist and isinstance(hist[0], str)):
                    raise NotImplementedError(f"{where}: layer {_show(name)} has inputs that "
                                              "are not one layer's output; sequential=True "
                                              "takes a chain of layers")
                sources.append(hist[0])
        if (prev is None and sources) or (prev is not None and sources != [prev]):
            raise NotImplementedError(f"{where}: layer {_show(name)} is fed by {sources}, not "
                                      "by the layer before it; sequential=True takes a "
                                      "chain of layers")
        prev = name


def _from_file_layer(reader, cls, cfg, group, where, layer_kw):
    spec = _layer_spec(cls, cfg, where)
    join = (lambda *p: "/".join(x for x in (group,) + p if x))
    if len(spec[0]) == 2:
        fw, bw = reader.arrays([join("forward_layer", "cell"), join("backward_layer", "cell")],
                               spec[0], where)
        w = {"forward": fw, "backward": bw}
    else:
        w = reader.arrays([join("cell")], spec[0], where)[0]
    return _build(spec, w, where, layer_kw)


# Keras activation name -> fastrnn's (Keras 3's leaky_relu has slope 0.2: not mapped)
_KERAS_ACTS = {"linear": "linear", None: "linear", "relu": "relu", "tanh": "tanh",
               "sigmoid": "sigmoid", "elu": "elu"}


def _keras_act(name, where):
    if name not in _KERAS_ACTS:
        raise NotImplementedError(f"{where}: activation {name!r} is not mapped (linear, relu, "
                                  "tanh, sigmoid and elu are)")
    return _KERAS_ACTS[name]


def _live_weights(kl, n, where):
    """The `n` float32 weight arrays of live Keras layer `kl`."""
    ws = kl.get_weights()
    if len(ws) != n:
        raise ValueError(f"{where}: expected {n} weight arrays, got {len(ws)}")
    return [_arr(w, f"{where}: weight {i}").astype(np.float32) for i, w in enumerate(ws)]


def _dense_layers(e):
    """fr.Dense (and a KerasSoftmax for activation="softmax") of a Keras Dense entry."""
    use_bias = _field(e.cfg, "use_bias", "bool", True, e.where)
    name = _field(e.cfg, "activation", "str_or_none", None, e.where)
    softmax = name == "softmax"
    act = "linear" if softmax else _keras_act(name, e.where)
    ws = [_arr(w, f"{e.where}: weight {i}").astype(np.float32)
          for i, w in enumerate(e.weights(2 if use_bias else 1))]
    kernel = ws[0]
    if kernel.ndim != 2:
        raise ValueError(f"{e.where}: kernel of shape {kernel.shape}, expected "
                         "(in_features, units)")
    units = _field(e.cfg, "units", "units", kernel.shape[1], e.where)
    if units != kernel.shape[1] or (use_bias and ws[1].shape != (units,)):
        raise ValueError(f"{e.where}: config says units={units}, the weights have shapes "
                         f"{[w.shape for w in ws]}")
    d = Dense(kernel.shape[0], kernel.shape[1], activation=act, bias=use_bias)
    sd = {"weight": kernel.T}
    if d.bias:
        sd["bias"] = ws[1]
    d.load_state_dict(sd)
    return [d, KerasSoftmax()] if softmax else [d]


def _embedding_layer(e, mask_zero):
    w = _arr(e.weights(1)[0], f"{e.where}: embeddings").astype(np.float32)
    if w.ndim != 2:
        raise ValueError(f"{e.where}: embeddings of shape {w.shape}, expected "
                         "(input_dim, output_dim)")
    dims = (_field(e.cfg, "input_dim", "units", w.shape[0], e.where),
            _field(e.cfg, "output_dim", "units", w.shape[1], e.where))
    if dims != w.shape:
        raise ValueError(f"{e.where}: config says (input_dim, output_dim)={dims}, the "
                         f"embeddings have shape {w.shape}")
    emb = KerasEmbedding(w.shape[0], w.shape[1], mask_zero=True) if mask_zero else \
        Embedding(w.shape[0], w.shape[1])
    emb.load_state_dict({"weight": w})
    return emb


def _to_sequential(entries, where):
    """The fastrnn model computing a chain of Keras layers: an fr.Sequential,
    or a KerasSequential where a mask must travel or the output is Keras's
    list of two (merge_mode=None)."""
    out, masked, keras_model, n = [], False, False, len(entries)
    for i, e in enumerate(entries):
        cls, cfg, at = e.cls, e.cfg, e.where
        if cls in _PASSIVE:
            if cls == "Dropout":
                out.append(Dropout(float(_field(cfg, "rate", "rate", 0.0, at))))
            continue
        if cls == "Embedding":
            mask_zero = _field(cfg, "mask_zero", "bool", False, at)
            if out:
                raise NotImplementedError(f"{at}: an Embedding after other layers is not "
                                          "mapped (it takes the model's ids)")
            out.append(_embedding_layer(e, mask_zero))
            masked = masked or mask_zero
            keras_model = keras_model or mask_zero
        elif cls == "Masking":
            value = _field(cfg, "mask_value", "number", 0.0, at)
            out.append(KerasMasking(value))
            masked = keras_model = True
        elif cls == "Dense":
            out.extend(_dense_layers(e))
        elif cls == "Activation":
            name = _field(cfg, "activation", "str_or_none", None, at)
            out.append(KerasSoftmax() if name == "softmax" else Activation(_keras_act(name, at)))
        elif cls == "Softmax":
            axis = _field(cfg, "axis", "axis", -1, at)
            if axis != -1:
                raise NotImplementedError(f"{at}: Softmax over axis {axis} is not mapped "
                                          "(the last axis, -1, is)")
            if masked:
                raise NotImplementedError(f"{at}: a Softmax layer given Keras's (B, T) mask "
                                          "applies it to the classes axis; not mapped")
            out.append(KerasSoftmax())
        elif cls in _RECURRENT:
            kw = {"padding": _masked_padding(cls, cfg, at)} if masked else {}
            layer = e.recurrent(kw)
            kc = layer.keras_config
            kc["masked"] = masked
            if kc["return_state"]:
                raise NotImplementedError(f"{at}: return_state=True has no place in a "
                                          "Sequential")
            bidi = cls == "Bidirectional"
            if kc["go_backwards"]:
                out.append(KerasReverse())   # its outputs stay in the reversed order
            out.append(layer)
            if not kc["return_sequences"]:
                # with a mask the layer carries (or zeroes) its outputs as Keras's loop
                # does, so Keras's last output is the last step's
                out.append(KerasBidirectionalLast() if bidi else LastStep())
                masked = False
            merge = kc.get("merge_mode", "concat")
            if merge is None:
                if i != n - 1:
                    raise NotImplementedError(f"{at}: merge_mode=None (a list of the two "
                                              "directions' outputs) is mapped for the last "
                                              "layer of a model only")
                keras_model = True
            if merge != "concat":
                out.append(KerasMerge(merge))
        else:
            raise NotImplementedError(f"{at}: not mapped to a fastrnn layer (Embedding, "
                                      "Masking, Dense, Activation, Softmax, Dropout, LSTM, "
                                      "GRU, SimpleRNN and Bidirectional are)")
    if not out:
        raise ValueError(f"{where}: the model has no layers to map")
    return (KerasSequential if keras_model else Sequential)(out).eval()


def from_keras_sequential(model):
    """Build an fr.Sequential (float32, batch-first, inference mode) computing a live Keras model.

    The model is a chain of::

        InputLayer, Dropout (and the other noise layers)  -> nothing / fr.Dropout
        Embedding                      -> fr.Embedding (weight = embeddings);
                                          mask_zero=True: KerasEmbedding
        Masking                        -> KerasMasking
        Dense(activation)              -> fr.Dense (weight = kernel.T), per step
                                          on sequences; softmax: + KerasSoftmax
        Activation, Softmax            -> fr.Activation, KerasSoftmax
        LSTM / GRU / SimpleRNN         -> the recurrent layer;
                                          go_backwards: KerasReverse before it
                                          return_sequences=False: + fr.LastStep
        Bidirectional(merge_mode)      -> the bidirectional layer;
                                          return_sequences=False:
                                          + KerasBidirectionalLast;
                                          sum, ave, mul, None: + KerasMerge

    The output equals the Keras model's. A model with a mask (Embedding
    mask_zero=True, Masking) or a last merge_mode=None becomes a
    `fastrnn.formats.keras.KerasSequential`, which makes the mask from the
    input as Keras does and carries it to the recurrent layers (built with
    Keras's padding semantics: padding="carry" where Keras repeats the last
    valid output, "zeros" where it gives zeros). return_state=True and
    activations fastrnn does not have are refused (docs/keras.md).

    Parameters
    ----------
    model : keras.Model
        A live Keras Sequential or functional chain.

    Returns
    -------
    Sequential
        The model (a KerasSequential where a mask travels).

    Examples
    --------
    >>> import fastrnn as fr
    >>> keras = __import__("pytest").importorskip("keras")
    >>> m = keras.Sequential([keras.Input((5, 3)), keras.layers.GRU(4), keras.layers.Dense(2)])
    >>> [type(l).__name__ for l in fr.from_keras_sequential(m).layers]
    ['GRU', 'LastStep', 'Dense']
    """
    if not _is_keras(model) or not hasattr(model, "layers"):
        raise TypeError(f"from_keras_sequential: expected a live Keras model, got "
                        f"{type(model).__name__}")
    where = f"from_keras: model {_show(getattr(model, 'name', ''))}"
    if type(model).__name__ != "Sequential":
        cfg = model.get_config()
        if isinstance(cfg, dict) and "layers" in cfg:
            _check_chain(cfg, where)
    return _to_sequential(_live_entries(model), where)


def from_keras(source, recurrent_only=False, sequential=False, *, max_bytes=None):
    """Build fastrnn layers from Keras 3 layers, models or saved ``.keras`` files.

    The layers are batch_first=True, in inference mode, and carry
    ``keras_config`` (name, return_sequences, return_state).

    Parameters
    ----------
    source : keras.layers.Layer, keras.Model, str, os.PathLike or bytes
        A live Keras LSTM/GRU/SimpleRNN/Bidirectional layer (one layer); a live
        Keras model (the list of its recurrent layers); a path to a saved
        ``.keras`` file, or its bytes (the list of its recurrent layers, read
        as data with h5py, without keras).
    recurrent_only : bool, default False
        Models only: skip layers that are not recurrent (Embedding, Dense, ...)
        instead of raising NotImplementedError for them.
    sequential : bool, default False
        Models, live or saved: return the whole model as an fr.Sequential
        (a KerasSequential where Keras's mask travels; see
        `from_keras_sequential`).
    max_bytes : int, optional
        Files only: the cap on what the load may allocate (the config.json
        and model.weights.h5 members each, and the weight arrays together);
        default ``fr.formats.get_load_limit()``, 1 GiB.

    Returns
    -------
    RNNBase or list of RNNBase or Sequential
        The layer, the layers, or the model.

    Raises
    ------
    NotImplementedError
        For layers or options that do not map exactly.
    ValueError
        A file that is damaged, has a config field of the wrong type, a weight
        dataset of the wrong dtype or shape, would read outside the file
        (external links or storage, virtual datasets) or allocate more than
        the cap; the message names the file, the layer and the field.

    Examples
    --------
    >>> import fastrnn as fr
    >>> keras = __import__("pytest").importorskip("keras")
    >>> layer = keras.layers.LSTM(4, return_sequences=True)
    >>> _ = layer(keras.ops.zeros((1, 5, 3)))
    >>> fr.from_keras(layer).hidden_size
    4
    """
    cap = _files.max_bytes(max_bytes, "from_keras: max_bytes")
    if isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)):
        readable, shown, _ = _files.open_source(source, "from_keras")
        try:
            import h5py  # noqa: F401
        except ImportError as e:
            raise ImportError("from_keras on a .keras file needs h5py: pip install h5py") from e
        if isinstance(readable, str):
            readable = _files.open_regular(readable, "from_keras")  # checked on the open file
        with readable:
            return _from_file(readable, shown, recurrent_only, cap, bool(sequential))
    if sequential:
        return from_keras_sequential(source)
    if not _is_keras(source):
        raise TypeError(f"from_keras: expected a Keras layer or model or a .keras path, got "
                        f"{type(source).__name__}")
    if hasattr(source, "layers") and type(source).__name__ not in _RECURRENT:
        where = f"from_keras: model {_show(getattr(source, 'name', ''))}"
        return _pick(_live_entries(source), recurrent_only, where)
    if not getattr(source, "built", True) or not source.get_weights():
        raise ValueError(f"from_keras: layer {source.name!r} has no weights yet (build it or "
                         "call it once first)")
    layer = _live_layer(source)
    _warn_unapplied(layer, f"from_keras: layer {_show(source.name)}")
    return layer
