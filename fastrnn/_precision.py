"""Weight precisions of frozen layers (docs/quantization.md): the NumPy
quantizers that `freeze(weights=...)` runs once. A leaf: imports NumPy only.

int8: symmetric per output row, scale_r = max|w_r| / 127, q = round-half-even(
w / scale_r) in [-127, 127] (a row of zeros: scale 0, q 0). bf16: the upper
16 bits of float32 after round-to-nearest-even (NaN stays a quiet NaN).
`dequantize` gives the float32 values the kernels multiply by.
"""
import numpy as np

PRECISIONS = ("float32", "int8", "bf16")


def check_precision(weights):
    """`weights` as one of PRECISIONS, or a clear error naming the argument."""
    if not isinstance(weights, str):
        raise TypeError(f"weights: expected one of {', '.join(map(repr, PRECISIONS))}, "
                        f"got {type(weights).__name__} {weights!r}")
    if weights not in PRECISIONS:
        raise ValueError(f"weights: expected one of {', '.join(map(repr, PRECISIONS))}, "
                         f"got {weights!r}")
    return weights


def quantize_int8(w):
    """(q int8, scale float32 per row) of a 2-D weight (rows = outputs)."""
    w = np.asarray(w, dtype=np.float32)
    amax = np.max(np.abs(w), axis=1)
    if not np.all(np.isfinite(amax)):
        raise ValueError("weights: int8 quantization needs finite weights")
    scale = (amax / np.float32(127)).astype(np.float32)
    safe = np.where(scale > 0, scale, np.float32(1))
    q = np.rint(w / safe[:, None])
    q = np.clip(q, -127, 127).astype(np.int8)
    return np.ascontiguousarray(q), np.ascontiguousarray(scale)


def to_bf16(w):
    """bf16 bit patterns (uint16) of float32 values, round to nearest even."""
    w = np.ascontiguousarray(w, dtype=np.float32)
    u = w.view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(w)
    if nan.any():
        r[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)   # quiet, sign kept
    return r


def from_bf16(b):
    """float32 values of bf16 bit patterns."""
    return (np.asarray(b, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def dequantize(precision, q, scale=None):
    """float32 weights the kernels multiply by."""
    if precision == "int8":
        return (q.astype(np.float32) * scale[:, None]).astype(np.float32)
    return from_bf16(q)
