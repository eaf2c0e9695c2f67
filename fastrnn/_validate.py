"""Input checks shared by the public API.

Every public call converts and checks its arguments here, before any C code
runs, and raises TypeError (wrong kind or dtype) or ValueError (wrong shape or
value) naming the argument, what it got and what it expected.
"""
import numbers

import numpy as np

_DTYPES = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}


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


def real_array(value, name, dtype):
    """A real-valued array converted to `dtype` (copy only when needed)."""
    return numeric_array(value, name).astype(dtype, copy=False)


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
