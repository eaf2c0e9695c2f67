"""Input checks shared by the public API.

Every public call converts and checks its arguments here, before any C code
runs, and raises TypeError (wrong kind or dtype) or ValueError (wrong shape or
value) naming the argument, what it got and what it expected.
"""
import numbers
import os
import sys
import warnings

import numpy as np

_DTYPES = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}
_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
# the arguments that carry a user's data into a layer or model: a float64
# array cast to a float32 layer there deserves a warning (gradients, states
# and weights are cast without one)
_DATA_ARGS = ("x", "x_t")


def warn_user(message):
    """A UserWarning reported at the first caller outside the fastrnn
    package, so Python's default filter shows it once per call site of the
    user's code (a loop warns once)."""
    level, frame = 2, sys._getframe(1)  # stacklevel 2: warn_user's caller
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
        level += 1
    warnings.warn(message, UserWarning, stacklevel=level)


def as_dtype(dtype):
    """The layer dtype from 'float32'/'float64' or a NumPy/torch dtype."""
    if isinstance(dtype, type) and issubclass(dtype, np.generic):
        dtype = np.dtype(dtype)  # np.float32 and friends
    name = getattr(dtype, "name", None) or str(dtype)
    name = name.replace("torch.", "")
    try:
        name = np.dtype(name).name
    except TypeError:
        pass
    if name not in _DTYPES:
        raise TypeError(f"dtype: expected 'float32' or 'float64', got {dtype!r}")
    return _DTYPES[name]


def to_numpy(value, name):
    """Any array-like (lists, views, torch CPU tensors) as a NumPy array."""
    if value is None:
        raise TypeError(f"{name}: expected an array, got None")
    if hasattr(value, "detach") and hasattr(value, "cpu") and hasattr(value, "numpy"):
        # a torch tensor, maybe requiring grad, maybe on another device
        device = getattr(getattr(value, "device", None), "type", "cpu")
        if getattr(value, "requires_grad", False) is True:
            warn_user(f"{name}: a torch tensor with requires_grad=True was turned into a NumPy "
                      "array; fastrnn runs outside torch's autograd, so no gradient flows "
                      f"back to it. Pass {name}.detach() to say that this is intended "
                      "(and silence this warning)")
        try:
            t = value.detach().cpu()
            if str(t.dtype) == "torch.bfloat16":  # NumPy has no bfloat16
                t = t.float()
            value = t.numpy()
        except Exception as e:  # noqa: BLE001 - meta tensors, exotic dtypes: one error
            raise TypeError(f"{name}: cannot read this {device} tensor of dtype {value.dtype} "
                            f"as a NumPy array ({type(e).__name__}: {e})") from None
    elif hasattr(value, "get") and type(value).__module__.startswith("cupy"):
        raise TypeError(f"{name}: got a CuPy (GPU) array; the CPU layers take "
                        "NumPy arrays (use .get())")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise TypeError(f"{name}: cannot be read as a numeric array ({e})") from None
    return arr


def numeric_array(value, name):
    """A real-valued array as given, not yet converted: callers check its
    shape first when the conversion (a copy) could be huge."""
    arr = to_numpy(value, name)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name}: expected a real numeric array (float or int), "
                        f"got dtype {arr.dtype}")
    return arr


def warn_lossy_cast(arr, name, dtype):
    """Warn (once per call site) when float64 data `x`/`x_t` is about to be
    cast to a float32 layer: precision is lost without a word otherwise."""
    if arr.dtype == np.float64 and np.dtype(dtype) == np.float32 and name in _DATA_ARGS:
        warn_user(f"{name}: float64 input cast to float32, the layer's dtype (precision is "
                  f"lost; the cast copies the array at each call). Pass "
                  f"{name}.astype(np.float32), or build the layers with dtype='float64' to "
                  "compute in float64")


def real_array(value, name, dtype):
    """A real-valued array converted to `dtype` (copy only when needed)."""
    arr = numeric_array(value, name)
    warn_lossy_cast(arr, name, dtype)
    return arr.astype(dtype, copy=False)


def positive_int(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return value


def lengths_array(lengths, T, B):
    """lengths (B,) integers in 1..T as contiguous int64, or None when absent."""
    if lengths is None:
        return None
    arr = to_numpy(lengths, "lengths")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"lengths: expected integers, got dtype {arr.dtype}")
    if arr.shape != (B,):
        raise ValueError(f"lengths: expected shape ({B},) (one length per sequence), "
                         f"got {arr.shape}")
    if arr.size and (arr.min() < 1 or arr.max() > T):
        raise ValueError(f"lengths: expected values in 1..{T} (T), got min "
                         f"{arr.min()} and max {arr.max()}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def state_array(value, name, shape, dtype):
    """An initial state or state gradient of exactly `shape`, C-contiguous."""
    arr = real_array(value, name, dtype)
    if arr.shape != shape:
        raise ValueError(f"{name}: expected shape {shape} "
                         f"(num_layers*num_directions, batch, hidden_size), got {arr.shape}")
    return np.ascontiguousarray(arr)
