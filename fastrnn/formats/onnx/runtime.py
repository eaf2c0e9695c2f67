"""NumPy implementations of the ONNX operators that surround recurrent layers
in exported models (OPS: operator name -> fn(node, inputs, opset) -> outputs),
for OnnxModel (reader.py). Each is written from the ONNX operator spec."""
import functools

import numpy as np

from ._common import _require_onnx


# ---- NumPy implementations of the other operators --------------------------------

def _ints(a):
    return [int(v) for v in np.asarray(a).reshape(-1)]


def _axes(node, ins, opset, since, idx=1):
    """Axes of Squeeze/Unsqueeze/Reduce*/Split: an attribute before `since`,
    an optional input from it on."""
    if opset >= since:
        return None if len(ins) <= idx or ins[idx] is None else _ints(ins[idx])
    v = node.attrs.get("axes")
    return None if v is None else [int(x) for x in v]


def _np_dtype(elem):
    onnx = _require_onnx()
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(int(elem)))


def _op_constant(node, ins, opset):
    a = node.attrs
    if "value" in a:
        return [np.asarray(a["value"])]
    if "value_float" in a:
        return [np.array(a["value_float"], np.float32)]
    if "value_floats" in a:
        return [np.array(a["value_floats"], np.float32)]
    if "value_int" in a:
        return [np.array(a["value_int"], np.int64)]
    if "value_ints" in a:
        return [np.array(a["value_ints"], np.int64)]
    raise NotImplementedError(f"from_onnx: Constant node {node.name!r}: only tensor, float "
                              f"and int values are supported, got {sorted(a)}")


def _softmax(x, axis, log, opset):
    x = np.asarray(x)
    if opset < 13:  # coerced to 2-D at `axis`
        shape = x.shape
        axis = axis % x.ndim if x.ndim else 0
        x2 = x.reshape(int(np.prod(shape[:axis], dtype=np.int64)), -1)
        return _softmax(x2, -1, log, 13).reshape(shape)
    m = np.max(x, axis=axis, keepdims=True)
    e = x - m
    if log:
        return e - np.log(np.sum(np.exp(e), axis=axis, keepdims=True))
    p = np.exp(e)
    return p / np.sum(p, axis=axis, keepdims=True)


def _int_div(a, b):
    """ONNX integer Div truncates toward zero (C semantics)."""
    q = np.floor_divide(a, b)
    fix = (np.remainder(a, b) != 0) & ((np.asarray(a) < 0) != (np.asarray(b) < 0))
    return (q + fix).astype(np.result_type(a, b))


def _div(node, ins, opset):
    a, b = ins
    if np.asarray(a).dtype.kind in "iu":
        return [_int_div(a, b)]
    return [np.divide(a, b)]


def _reduce(fn):
    def op(node, ins, opset):
        since = 13 if node.op == "ReduceSum" else 18
        axes = _axes(node, ins, opset, since)
        keep = bool(node.attrs.get("keepdims", 1))
        x = np.asarray(ins[0])
        if not axes:
            if node.attrs.get("noop_with_empty_axes", 0):
                return [x]
            axes = None
        out = fn(x, axis=None if axes is None else tuple(axes), keepdims=keep)
        return [np.asarray(out, dtype=x.dtype)]
    return op


def _squeeze(node, ins, opset):
    axes = _axes(node, ins, opset, 13)
    x = np.asarray(ins[0])
    if axes is None:
        return [np.squeeze(x)]
    return [np.squeeze(x, axis=tuple(axes))]


def _unsqueeze(node, ins, opset):
    axes = _axes(node, ins, opset, 13)
    x = np.asarray(ins[0])
    r = x.ndim + len(axes)
    for ax in sorted(a % r for a in axes):
        x = np.expand_dims(x, ax)
    return [x]


def _reshape(node, ins, opset):
    x = np.asarray(ins[0])
    shape = _ints(ins[1])
    if not node.attrs.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return [x.reshape(shape)]


def _flatten(node, ins, opset):
    x = np.asarray(ins[0])
    axis = int(node.attrs.get("axis", 1))
    axis = axis % x.ndim if x.ndim and axis < 0 else axis
    return [x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)]


def _split(node, ins, opset):
    x = np.asarray(ins[0])
    axis = int(node.attrs.get("axis", 0))
    n = len(node.outputs)
    if opset >= 13:
        sizes = _ints(ins[1]) if len(ins) > 1 and ins[1] is not None else None
    else:
        sizes = node.attrs.get("split")
    if sizes is None:
        dim = x.shape[axis]
        n = int(node.attrs.get("num_outputs", n))
        step = -(-dim // n)  # ceil: the last part may be smaller (opset 18)
        sizes = [min(step, dim - i * step) for i in range(n)]
    cuts = np.cumsum(sizes)[:-1]
    return list(np.split(x, cuts, axis=axis))


def _slice(node, ins, opset):
    x = np.asarray(ins[0])
    if opset >= 10:
        starts, ends = _ints(ins[1]), _ints(ins[2])
        axes = _ints(ins[3]) if len(ins) > 3 and ins[3] is not None else list(range(len(starts)))
        steps = _ints(ins[4]) if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
    else:
        starts, ends = node.attrs["starts"], node.attrs["ends"]
        axes = node.attrs.get("axes", list(range(len(starts))))
        steps = [1] * len(starts)
    idx = [slice(None)] * x.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps):
        if st == 0:
            raise ValueError(f"from_onnx: Slice node {node.name!r} has a step of 0")
        idx[ax % x.ndim] = slice(s, e, st)  # Python slicing clamps as ONNX does
    return [x[tuple(idx)]]


def _gemm(node, ins, opset):
    a, b = np.asarray(ins[0]), np.asarray(ins[1])
    if node.attrs.get("transA", 0):
        a = a.T
    if node.attrs.get("transB", 0):
        b = b.T
    alpha, beta = node.attrs.get("alpha", 1.0), node.attrs.get("beta", 1.0)
    y = a @ b
    if alpha != 1.0:
        y = y * y.dtype.type(alpha)
    if len(ins) > 2 and ins[2] is not None:
        c = np.asarray(ins[2])
        y = y + (c * c.dtype.type(beta) if beta != 1.0 else c)
    return [y]


def _concat(node, ins, opset):
    return [np.concatenate([np.asarray(v) for v in ins if v is not None],
                           axis=int(node.attrs["axis"]))]


def _clip_op(node, ins, opset):
    x = np.asarray(ins[0])
    if opset >= 11:
        lo = ins[1] if len(ins) > 1 else None
        hi = ins[2] if len(ins) > 2 else None
    else:
        lo, hi = node.attrs.get("min"), node.attrs.get("max")
    if lo is not None:
        x = np.maximum(x, np.asarray(lo, x.dtype))
    if hi is not None:
        x = np.minimum(x, np.asarray(hi, x.dtype))
    return [x]


def _arg(fn):
    def op(node, ins, opset):
        x = np.asarray(ins[0])
        axis = int(node.attrs.get("axis", 0))
        keep = bool(node.attrs.get("keepdims", 1))
        if node.attrs.get("select_last_index", 0):
            flip = np.flip(x, axis)
            out = x.shape[axis] - 1 - fn(flip, axis=axis)
        else:
            out = fn(x, axis=axis)
        out = np.asarray(out, np.int64)
        return [np.expand_dims(out, axis) if keep else out]
    return op


def _layer_norm(node, ins, opset):
    x = np.asarray(ins[0])
    axis = int(node.attrs.get("axis", -1)) % x.ndim
    eps = x.dtype.type(node.attrs.get("epsilon", 1e-5))
    axes = tuple(range(axis, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    inv = 1 / np.sqrt(var + eps)
    y = (x - mean) * inv * ins[1]
    if len(ins) > 2 and ins[2] is not None:
        y = y + ins[2]
    return [y.astype(x.dtype), mean, inv]


def _batch_norm(node, ins, opset):
    x, scale, b, mean, var = (np.asarray(v) for v in ins[:5])
    eps = x.dtype.type(node.attrs.get("epsilon", 1e-5))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * scale.reshape(shape) \
        + b.reshape(shape)
    return [y.astype(x.dtype)]


def _gelu(node, ins, opset):
    from scipy.special import erf
    x = np.asarray(ins[0])
    if node.attrs.get("approximate", "none") == "tanh":
        c = np.sqrt(2 / np.pi)
        y = 0.5 * x * (1 + np.tanh(c * (x + 0.044715 * x ** 3)))
    else:
        y = 0.5 * x * (1 + erf(x / np.sqrt(2)))
    return [y.astype(x.dtype)]


def _unary(fn):
    def op(node, ins, opset):
        x = np.asarray(ins[0])
        return [np.asarray(fn(x), dtype=x.dtype)]
    return op


def _binary(fn):
    def op(node, ins, opset):
        return [fn(np.asarray(ins[0]), np.asarray(ins[1]))]
    return op


def _variadic(fn):
    def op(node, ins, opset):
        return [functools.reduce(fn, [np.asarray(v) for v in ins])]
    return op


def _sigmoid(x):
    from scipy.special import expit
    return expit(x)


def _erf(x):
    from scipy.special import erf
    return erf(x)


def _attr_unary(fn):
    def op(node, ins, opset):
        x = np.asarray(ins[0])
        return [np.asarray(fn(x, node.attrs), dtype=x.dtype)]
    return op


def _shape(node, ins, opset):
    s = np.asarray(ins[0]).shape
    start = int(node.attrs.get("start", 0))
    end = node.attrs.get("end")
    return [np.array(s[start:None if end is None else int(end)], np.int64)]


def _constant_of_shape(node, ins, opset):
    v = node.attrs.get("value")
    v = np.zeros(1, np.float32) if v is None else np.asarray(v).reshape(-1)
    return [np.full(_ints(ins[0]), v[0], dtype=v.dtype)]


def _expand(node, ins, opset):
    x = np.asarray(ins[0])
    shape = np.broadcast_shapes(x.shape, tuple(_ints(ins[1])))
    return [np.array(np.broadcast_to(x, shape))]


def _dropout(node, ins, opset):  # inference: identity, mask of ones
    x = np.asarray(ins[0])
    return [x, np.ones(x.shape, bool)]


def _range(node, ins, opset):
    start = np.asarray(ins[0])
    return [np.arange(start, ins[1], ins[2]).astype(start.dtype)]


OPS = {
    "Identity": lambda n, i, o: [np.asarray(i[0])],
    "Constant": _op_constant,
    "Cast": lambda n, i, o: [np.asarray(i[0]).astype(_np_dtype(n.attrs["to"]))],
    "CastLike": lambda n, i, o: [np.asarray(i[0]).astype(np.asarray(i[1]).dtype)],
    "Shape": _shape,
    "Size": lambda n, i, o: [np.array(np.asarray(i[0]).size, np.int64)],
    "Gather": lambda n, i, o: [np.take(np.asarray(i[0]), np.asarray(i[1]),
                                       axis=int(n.attrs.get("axis", 0)))],
    "GatherElements": lambda n, i, o: [np.take_along_axis(
        np.asarray(i[0]), np.asarray(i[1]), axis=int(n.attrs.get("axis", 0)))],
    "MatMul": _binary(np.matmul),
    "Gemm": _gemm,
    "Add": _binary(np.add),
    "Sub": _binary(np.subtract),
    "Mul": _binary(np.multiply),
    "Div": _div,
    "Pow": lambda n, i, o: [np.power(i[0], i[1]).astype(np.asarray(i[0]).dtype)],
    "Neg": _unary(np.negative),
    "Abs": _unary(np.abs),
    "Sqrt": _unary(np.sqrt),
    "Exp": _unary(np.exp),
    "Log": _unary(np.log),
    "Reciprocal": _unary(lambda x: 1 / x),
    "Floor": _unary(np.floor),
    "Ceil": _unary(np.ceil),
    "Sign": _unary(np.sign),
    "Erf": _unary(lambda x: _erf(x)),
    "Relu": _unary(lambda x: np.maximum(x, 0)),
    "Tanh": _unary(np.tanh),
    "Sigmoid": _unary(_sigmoid),
    "Softplus": _unary(lambda x: np.logaddexp(0, x)),
    "Softsign": _unary(lambda x: x / (1 + np.abs(x))),
    "LeakyRelu": _attr_unary(lambda x, a: np.where(x >= 0, x, a.get("alpha", 0.01) * x)),
    "Elu": _attr_unary(lambda x, a: np.where(x >= 0, x, a.get("alpha", 1.0) * np.expm1(x))),
    "Selu": _attr_unary(lambda x, a: a.get("gamma", 1.0507009873554805) * np.where(
        x > 0, x, a.get("alpha", 1.6732632423543772) * np.expm1(x))),
    "HardSigmoid": _attr_unary(lambda x, a: np.clip(
        a.get("alpha", 0.2) * x + a.get("beta", 0.5), 0, 1)),
    "Gelu": _gelu,
    "Softmax": lambda n, i, o: [_softmax(i[0], int(n.attrs.get("axis", -1 if o >= 13 else 1)),
                                         False, o).astype(np.asarray(i[0]).dtype)],
    "LogSoftmax": lambda n, i, o: [_softmax(i[0], int(n.attrs.get("axis", -1 if o >= 13 else 1)),
                                            True, o).astype(np.asarray(i[0]).dtype)],
    "Transpose": lambda n, i, o: [np.transpose(np.asarray(i[0]), n.attrs.get("perm"))],
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Reshape": _reshape,
    "Flatten": _flatten,
    "Concat": _concat,
    "Split": _split,
    "Slice": _slice,
    "ConstantOfShape": _constant_of_shape,
    "Expand": _expand,
    "Tile": lambda n, i, o: [np.tile(np.asarray(i[0]), _ints(i[1]))],
    "Where": lambda n, i, o: [np.where(np.asarray(i[0]), i[1], i[2])],
    "Equal": _binary(np.equal),
    "Less": _binary(np.less),
    "LessOrEqual": _binary(np.less_equal),
    "Greater": _binary(np.greater),
    "GreaterOrEqual": _binary(np.greater_equal),
    "Not": lambda n, i, o: [np.logical_not(i[0])],
    "And": _binary(np.logical_and),
    "Or": _binary(np.logical_or),
    "Xor": _binary(np.logical_xor),
    "Max": _variadic(np.maximum),
    "Min": _variadic(np.minimum),
    "Sum": _variadic(np.add),
    "Mean": lambda n, i, o: [(functools.reduce(np.add, [np.asarray(v) for v in i])
                              / len(i)).astype(np.asarray(i[0]).dtype)],
    "ReduceMean": _reduce(np.mean),
    "ReduceSum": _reduce(np.sum),
    "ReduceMax": _reduce(np.max),
    "ReduceMin": _reduce(np.min),
    "ReduceProd": _reduce(np.prod),
    "ArgMax": _arg(np.argmax),
    "ArgMin": _arg(np.argmin),
    "Range": _range,
    "Dropout": _dropout,
    "Clip": _clip_op,
    "LayerNormalization": _layer_norm,
    "BatchNormalization": _batch_norm,
}
_RECURRENT = ("RNN", "LSTM", "GRU")

