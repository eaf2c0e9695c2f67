"""NumPy implementations of the ONNX operators that surround recurrent layers
in exported models (OPS: operator name -> fn(node, inputs, opset) -> outputs),
for OnnxModel (reader.py). Each is written from the ONNX operator spec."""
import functools
import math

import numpy as np

from ._common import _require_onnx

_MAX_DIMS = 64  # NumPy's limit on an array's dimensions: longer shape lists are hostile


def _where(node):
    return f"from_onnx: {node.op} node {node.name!r}"


# ---- NumPy implementations of the other operators --------------------------------

def _ints(a, node, what, limit=_MAX_DIMS):
    """The values of a small int tensor (shape, axes, repeats...) as Python
    ints; ValueError past `limit` entries, before building the list."""
    a = np.asarray(a)
    if a.size > limit:
        raise ValueError(f"{_where(node)}: {what} has {a.size} entries, more than the "
                         f"{limit} it can use")
    return [int(v) for v in a.reshape(-1)]


def _axes(node, ins, opset, since, idx=1):
    """Axes of Squeeze/Unsqueeze/Reduce*/Split: an attribute before `since`,
    an optional input from it on."""
    if opset >= since:
        return None if len(ins) <= idx or ins[idx] is None else _ints(ins[idx], node, "axes")
    v = node.attrs.get("axes")
    return None if v is None else [int(x) for x in v]


def _iattr(node, name, default):
    """Int attribute `name` of `node` (`default` when absent); ValueError
    naming the node and the attribute for anything else."""
    v = node.attrs.get(name, default)
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise ValueError(f"{_where(node)}: attribute {name!r} must be an int, got {v!r}")
    return int(v)


def _np_dtype(elem, where="from_onnx: data type"):
    """The NumPy dtype of ONNX type number `elem`; ValueError naming `where`
    for a number ONNX does not define."""
    onnx = _require_onnx()
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(int(elem)))
    except (KeyError, ValueError, TypeError):
        raise ValueError(f"{where} is {elem!r}, not an ONNX data type") from None


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
    shape = _ints(ins[1], node, "shape")
    if not node.attrs.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return [x.reshape(shape)]


def _flatten(node, ins, opset):
    x = np.asarray(ins[0])
    axis = _iattr(node, "axis", 1)
    axis = axis % x.ndim if x.ndim and axis < 0 else axis
    return [x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)]


def _split(node, ins, opset):
    x = np.asarray(ins[0])
    axis = _iattr(node, "axis", 0)
    n = len(node.outputs)
    if opset >= 13:
        sizes = _ints(ins[1], node, "split", limit=len(node.outputs)) \
            if len(ins) > 1 and ins[1] is not None else None
    else:
        sizes = node.attrs.get("split")
    if sizes is None:
        dim = x.shape[axis]
        n = _iattr(node, "num_outputs", n)
        if not 1 <= n <= len(node.outputs):  # each part is an output
            raise ValueError(f"{_where(node)}: attribute 'num_outputs' is {n}; the node has "
                             f"{len(node.outputs)} outputs")
        step = -(-dim // n)  # ceil: the last part may be smaller (opset 18)
        sizes = [min(step, dim - i * step) for i in range(n)]
    cuts = np.cumsum(sizes)[:-1]
    return list(np.split(x, cuts, axis=axis))


def _slice(node, ins, opset):
    x = np.asarray(ins[0])
    if opset >= 10:
        starts, ends = _ints(ins[1], node, "starts"), _ints(ins[2], node, "ends")
        axes = _ints(ins[3], node, "axes") if len(ins) > 3 and ins[3] is not None \
            else list(range(len(starts)))
        steps = _ints(ins[4], node, "steps") if len(ins) > 4 and ins[4] is not None \
            else [1] * len(starts)
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
                           axis=_iattr(node, "axis", 0))]


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
        axis = _iattr(node, "axis", 0)
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
    axis = _iattr(node, "axis", -1) % x.ndim
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
    start = _iattr(node, "start", 0)
    end = node.attrs.get("end")
    return [np.array(s[start:None if end is None else int(end)], np.int64)]


def _dims(node, v, what):
    """A shape-like input (shape, repeats) as ints >= 0."""
    dims = _ints(v, node, what)
    if any(d < 0 for d in dims):
        raise ValueError(f"{_where(node)}: {what} {dims} has a negative dimension")
    return dims


def _fill_value(node):
    v = node.attrs.get("value")
    return np.zeros(1, np.float32) if v is None else np.asarray(v).reshape(-1)


def _constant_of_shape(node, ins, opset):
    v = _fill_value(node)
    return [np.full(_dims(node, ins[0], "shape"), v[0], dtype=v.dtype)]


def _expand(node, ins, opset):
    x = np.asarray(ins[0])
    shape = np.broadcast_shapes(x.shape, tuple(_dims(node, ins[1], "shape")))
    return [np.array(np.broadcast_to(x, shape))]


def _tile(node, ins, opset):
    return [np.tile(np.asarray(ins[0]), _dims(node, ins[1], "repeats"))]


def _cast(node, ins, opset):
    return [np.asarray(ins[0]).astype(_cast_type(node))]


def _cast_type(node):
    return _np_dtype(node.attrs["to"], f"{_where(node)}: attribute 'to'")


def _dropout(node, ins, opset):  # inference: identity, mask of ones
    x = np.asarray(ins[0])
    return [x, np.ones(x.shape, bool)]


def _range(node, ins, opset):
    start = np.asarray(ins[0])
    _range_count(node, ins)
    return [np.arange(start, ins[1], ins[2]).astype(start.dtype)]


def _range_count(node, ins):
    """The number of values Range gives: ceil((limit - start) / delta), at
    least 0; ValueError for a zero delta or bounds that are not finite."""
    vals = []
    for v, what in zip(ins[:3], ("start", "limit", "delta")):
        a = np.asarray(v)
        if a.size != 1:
            raise ValueError(f"{_where(node)}: {what} must be a scalar, got shape {a.shape}")
        x = a.reshape(-1)[0].item()
        if isinstance(x, float) and not math.isfinite(x):
            raise ValueError(f"{_where(node)}: {what} {x} is not finite")
        vals.append(x)
    start, limit, delta = vals
    if delta == 0:
        raise ValueError(f"{_where(node)}: delta is 0")
    if all(isinstance(x, int) for x in vals):
        return max(-(-(limit - start) // delta), 0)
    n = (limit - start) / delta
    if not math.isfinite(n):
        raise ValueError(f"{_where(node)}: (limit - start) / delta = {n} is not finite")
    return max(math.ceil(n), 0)


# ---- what an operator allocates, before it runs ----------------------------------------
# Folding runs nodes on constants from the file at load time, and a few
# operators take their output size from a tensor's values: each is bounded
# here, from shapes and those values alone, so that the load cap is checked
# before the allocation happens.

def _prod(dims):
    return math.prod(int(d) for d in dims)


def _broadcast(shapes):
    """NumPy's broadcast of `shapes` (None when they do not broadcast)."""
    nd = max((len(s) for s in shapes), default=0)
    out = []
    for dims in zip(*[(1,) * (nd - len(s)) + tuple(s) for s in shapes]):
        big = {d for d in dims if d != 1}
        if len(big) > 1:
            return None
        out.append(big.pop() if big else 1)
    return out


def _itemsize(arrs):
    return max((a.itemsize for a in arrs), default=8)


def _elementwise_bytes(node, arrs):
    shape = _broadcast([a.shape for a in arrs])
    n = max((a.size for a in arrs), default=0) if shape is None else _prod(shape)
    return n * _itemsize(arrs) * max(len(node.outputs), 1)


def _gather_bytes(node, arrs):
    x, idx = arrs[0], arrs[1]
    if x.ndim == 0:
        return 0
    ax = _iattr(node, "axis", 0) % x.ndim
    return idx.size * _prod(x.shape[:ax] + x.shape[ax + 1:]) * x.itemsize


def _matmul_bytes(node, arrs):
    a, b = arrs[0], arrs[1]
    if a.ndim == 0 or b.ndim == 0:
        return 0
    sa = a.shape if a.ndim > 1 else (1,) + a.shape
    sb = b.shape if b.ndim > 1 else b.shape + (1,)
    batch = _broadcast([sa[:-2], sb[:-2]])
    return 0 if batch is None else _prod(batch) * sa[-2] * sb[-1] * _itemsize(arrs[:2])


def _gemm_bytes(node, arrs):
    a, b = arrs[0], arrs[1]
    if a.ndim != 2 or b.ndim != 2:
        return 0
    m = a.shape[1] if node.attrs.get("transA", 0) else a.shape[0]
    n = b.shape[0] if node.attrs.get("transB", 0) else b.shape[1]
    shape = [m, n] if len(arrs) < 3 else (_broadcast([(m, n), arrs[2].shape]) or [m, n])
    return _prod(shape) * _itemsize(arrs)


def _view_bytes(node, arrs):  # reshapes copy only what is not contiguous
    x = arrs[0]
    return 0 if x.flags.c_contiguous else x.nbytes


_SIZES = {
    "ConstantOfShape": lambda n, a: _prod(_dims(n, a[0], "shape")) * _fill_value(n).itemsize,
    "Expand": lambda n, a: _prod(_broadcast([a[0].shape, _dims(n, a[1], "shape")]) or [0])
    * a[0].itemsize,
    "Tile": lambda n, a: a[0].size * _prod(_dims(n, a[1], "repeats")) * a[0].itemsize,
    "Range": lambda n, a: _range_count(n, a) * a[0].itemsize,
    "Concat": lambda n, a: sum(x.size for x in a) * _itemsize(a),
    "MatMul": _matmul_bytes,
    "Gemm": _gemm_bytes,
    "Gather": _gather_bytes,
    "GatherElements": lambda n, a: a[1].size * a[0].itemsize,
    "Cast": lambda n, a: a[0].size * _cast_type(n).itemsize,
    "CastLike": lambda n, a: a[0].size * a[1].itemsize,
    "ArgMax": lambda n, a: a[0].size * 8,
    "ArgMin": lambda n, a: a[0].size * 8,
    "Shape": lambda n, a: _MAX_DIMS * 8,
    "Size": lambda n, a: 8,
    "Constant": lambda n, a: 0,   # its attribute, counted when read
    "Identity": lambda n, a: 0,
    "Transpose": lambda n, a: 0,
    "Squeeze": lambda n, a: 0,
    "Unsqueeze": lambda n, a: 0,
    "Slice": lambda n, a: 0,
    "Split": lambda n, a: 0,
    "Reshape": _view_bytes,
    "Flatten": _view_bytes,
    "BatchNormalization": lambda n, a: a[0].nbytes,
    "Dropout": lambda n, a: a[0].nbytes + a[0].size,
    "ReduceMean": lambda n, a: a[0].nbytes,
    "ReduceSum": lambda n, a: a[0].nbytes,
    "ReduceMax": lambda n, a: a[0].nbytes,
    "ReduceMin": lambda n, a: a[0].nbytes,
    "ReduceProd": lambda n, a: a[0].nbytes,
}

# operators whose output size comes from a tensor's values, not its shape:
# checked against the cap at run time too
SIZED_BY_VALUES = ("ConstantOfShape", "Expand", "Tile", "Range")


def out_bytes(node, ins):
    """An upper bound on the bytes `node`'s outputs take, from its inputs'
    shapes and the values that set sizes, computed before it runs; ValueError
    (naming the node) for negative dimensions and impossible ranges."""
    arrs = [np.asarray(v) for v in ins if v is not None]
    if not arrs and node.op != "Constant":
        return 0
    return _SIZES.get(node.op, _elementwise_bytes)(node, arrs)


OPS = {
    "Identity": lambda n, i, o: [np.asarray(i[0])],
    "Constant": _op_constant,
    "Cast": _cast,
    "CastLike": lambda n, i, o: [np.asarray(i[0]).astype(np.asarray(i[1]).dtype)],
    "Shape": _shape,
    "Size": lambda n, i, o: [np.array(np.asarray(i[0]).size, np.int64)],
    "Gather": lambda n, i, o: [np.take(np.asarray(i[0]), np.asarray(i[1]),
                                       axis=_iattr(n, "axis", 0))],
    "GatherElements": lambda n, i, o: [np.take_along_axis(
        np.asarray(i[0]), np.asarray(i[1]), axis=_iattr(n, "axis", 0))],
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
    "Softmax": lambda n, i, o: [_softmax(i[0], _iattr(n, "axis", -1 if o >= 13 else 1),
                                         False, o).astype(np.asarray(i[0]).dtype)],
    "LogSoftmax": lambda n, i, o: [_softmax(i[0], _iattr(n, "axis", -1 if o >= 13 else 1),
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
    "Tile": _tile,
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

