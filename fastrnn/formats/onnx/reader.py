"""ONNX interchange: run ONNX graphs of recurrent models on fastrnn, and export
fastrnn recurrent layers to ONNX.

    m = fr.from_onnx("model.onnx")         # a path, an onnx.ModelProto or bytes
    out = m.run(None, {"ids": ids})        # ONNX Runtime's calling convention
    m.input_names, m.output_names, m.layers

    layer.to_onnx("lstm.onnx", lengths=True, initial_state=True)

from_onnx checks the model with onnx.checker, then executes its graph node by
node: the ONNX RNN, LSTM and GRU nodes on fastrnn layers built once from their
attributes and constant weights, every other node as NumPy (the ops that
torch.onnx.export emits around embeddings, recurrent layers and dense heads;
see OPS). Nothing in a file is ever executed as code: an unknown operator, a
custom domain or a sub-graph raises NotImplementedError naming it.

How the ONNX recurrent operators map onto fastrnn (one ONNX node is one layer
of one or two directions):
    W [D, G*H, I], R [D, G*H, H]     -> weight_ih_l0{sfx}, weight_hh_l0{sfx}
    B [D, 2*G*H] = [Wb, Rb]          -> bias_ih_l0{sfx}, bias_hh_l0{sfx}
    gate blocks: LSTM i,o,f,c -> torch i,f,g,o; GRU z,r,h -> torch r,z,n
    GRU linear_before_reset=1        -> torch's GRU (b_hn inside the reset)
    GRU linear_before_reset=0        -> fr.GRU(linear_before_reset=False)
    clip                             -> the layers' clip= (gate pre-activations)
    RNN activations ["Relu"]         -> fr.RNN(nonlinearity="relu")
    direction "bidirectional"        -> bidirectional=True
    direction "reverse"              -> a forward layer fed each sequence
                                        reversed within its length (and its
                                        output reversed back)
    layout 1 ([B, T, .])             -> batch_first=True
    sequence_lens                    -> lengths (0 allowed: zero outputs and
                                        zero final states, as ONNX Runtime)
    outputs Y [T, D, B, H] (layout 1: [B, T, D, H]), Y_h / Y_c [D, B, H]
    (layout 1: [B, D, H]), zero past each sequence's length.
Not supported (NotImplementedError): other activation functions, non-zero
peepholes P, input_forget=1, float16 weights, weights computed from graph
inputs.

Export: GraphBuilder collects nodes, initializers, inputs and outputs;
emit_recurrent(g, layer, x, ...) appends the nodes of one fastrnn recurrent
layer (one ONNX node per layer, a Transpose/Reshape between layers) and
returns the names of its outputs, so a whole model's exporter can chain it
with its own nodes. export_layer() is the single-layer graph behind
layer.to_onnx(); export_sequential() the whole-model graph behind
fr.Sequential.to_onnx() (inputs "x" [, "lengths"], output "y").

The onnx package is optional: without it these functions raise ImportError
saying `pip install onnx`.
"""
import functools
import os

import numpy as np

__all__ = ["from_onnx", "OnnxModel", "GraphBuilder", "emit_recurrent", "export_layer",
           "export_sequential", "OPS"]

_ONNX_HINT = ("fastrnn's ONNX functions need the onnx package: pip install onnx "
              "(or pip install fastrnn[onnx])")


def _require_onnx():
    try:
        import onnx  # noqa: F401
        from onnx import numpy_helper  # noqa: F401
    except ImportError as e:
        raise ImportError(_ONNX_HINT) from e
    return onnx


# ---- gate orders -------------------------------------------------------------
# torch block k comes from ONNX block _TO_TORCH[op][k]; ONNX block j from torch
# block _TO_ONNX[op][j].
_TO_TORCH = {"LSTM": (0, 2, 3, 1), "GRU": (1, 0, 2), "RNN": (0,)}
_TO_ONNX = {"LSTM": (0, 3, 1, 2), "GRU": (1, 0, 2), "RNN": (0,)}
_GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}
_DEFAULT_ACTS = {"LSTM": ["sigmoid", "tanh", "tanh"], "GRU": ["sigmoid", "tanh"],
                 "RNN": ["tanh"]}


def _block_perm(order, H):
    """Row indices picking gate blocks of H rows in `order`."""
    return np.concatenate([np.arange(b * H, (b + 1) * H) for b in order])


# ---- loading -----------------------------------------------------------------

def _load(source):
    """An onnx.ModelProto from a path, file object, bytes or ModelProto,
    checked by onnx.checker; ValueError for what is not a valid model."""
    onnx = _require_onnx()
    what = None
    try:
        if isinstance(source, onnx.ModelProto):
            model, what = source, "the given ModelProto"
        elif isinstance(source, (bytes, bytearray, memoryview)):
            what = "the given bytes"
            model = onnx.load_model_from_string(bytes(source))
        elif isinstance(source, (str, os.PathLike)):
            what = os.fspath(source)
            if not os.path.isfile(what):
                raise FileNotFoundError(f"from_onnx: no such file: {what!r}")
            model = onnx.load(what)
        elif hasattr(source, "read"):
            what = "the given file object"
            model = onnx.load(source)
        else:
            raise TypeError("from_onnx: expected a path, an onnx.ModelProto, bytes or a "
                            f"binary file object, got {type(source).__name__}")
    except (FileNotFoundError, TypeError):
        raise
    except Exception as e:  # protobuf DecodeError, truncated files, bad external data
        raise ValueError(f"from_onnx: {what} is not a readable ONNX model "
                         f"({type(e).__name__}: {e})") from None
    try:
        _check(model)
    except Exception as e:
        raise ValueError(f"from_onnx: {what} is not a valid ONNX model "
                         f"(onnx.checker: {str(e).strip().splitlines()[0] if str(e) else e})"
                         ) from None
    return model


def _check(model):
    """onnx.checker.check_model, forgiving one omission ONNX Runtime accepts:
    graph inputs/outputs declared without a shape (onnx.helper's
    make_tensor_value_info(name, type, None)). Those are checked on a copy
    that declares them with an empty shape; every other finding stands."""
    onnx = _require_onnx()
    try:
        onnx.checker.check_model(model)
        return
    except onnx.checker.ValidationError as e:
        shapeless = [v for v in list(model.graph.input) + list(model.graph.output)
                     if v.type.HasField("tensor_type")
                     and not v.type.tensor_type.HasField("shape")]
        if "shape" not in str(e) or not shapeless:
            raise
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for v in list(copy.graph.input) + list(copy.graph.output):
        if v.type.HasField("tensor_type") and not v.type.tensor_type.HasField("shape"):
            v.type.tensor_type.shape.SetInParent()
    onnx.checker.check_model(copy)


def _attrs(node):
    """A node's attributes as Python values (strings decoded, tensors as
    NumPy arrays); graph-valued attributes are refused."""
    onnx = _require_onnx()
    from onnx import numpy_helper
    out = {}
    for a in node.attribute:
        if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            raise NotImplementedError(
                f"from_onnx: node {node.name!r} ({node.op_type}) holds a sub-graph "
                f"(attribute {a.name!r}); control flow is not supported")
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        elif isinstance(v, onnx.TensorProto):
            v = numpy_helper.to_array(v)
        elif isinstance(v, (list, tuple)):
            v = [x.decode("utf-8", "replace") if isinstance(x, bytes) else
                 (numpy_helper.to_array(x) if isinstance(x, onnx.TensorProto) else x)
                 for x in v]
        out[a.name] = v
    return out


class _Node:
    __slots__ = ("op", "name", "inputs", "outputs", "attrs", "rnn")

    def __init__(self, proto):
        self.op = proto.op_type
        self.name = proto.name or f"<unnamed {proto.op_type}>"
        self.inputs = list(proto.input)
        self.outputs = list(proto.output)
        self.attrs = _attrs(proto)
        self.rnn = None  # _RecurrentNode for RNN/LSTM/GRU


# ---- the recurrent nodes -------------------------------------------------------

class _RecurrentNode:
    """A fastrnn layer configured from one ONNX RNN/LSTM/GRU node."""

    def __init__(self, node, consts):
        from .recurrent import GRU, LSTM, RNN
        op, a, where = node.op, node.attrs, f"from_onnx: {node.op} node {node.name!r}"
        self.op = op
        G = _GATES[op]
        direction = a.get("direction", "forward")
        if direction not in ("forward", "reverse", "bidirectional"):
            raise ValueError(f"{where}: direction {direction!r} is not forward, reverse "
                             "or bidirectional")
        D = 2 if direction == "bidirectional" else 1
        self.reverse = direction == "reverse"
        self.layout = int(a.get("layout", 0))
        if self.layout not in (0, 1):
            raise ValueError(f"{where}: layout {self.layout} is not 0 or 1")
        ins = node.inputs + [""] * (8 - len(node.inputs))

        def const(i, what):
            name = ins[i]
            if not name:
                return None
            if name not in consts:
                raise NotImplementedError(
                    f"{where}: its {what} ({name!r}) is computed from graph inputs; fastrnn "
                    "needs the weights as constants (initializers or Constant nodes)")
            return np.asarray(consts[name])

        W, R, B = const(1, "W"), const(2, "R"), const(3, "B")
        if W is None or R is None:
            raise ValueError(f"{where}: inputs W and R are required")
        if W.dtype not in (np.float32, np.float64):
            raise NotImplementedError(f"{where}: weights of dtype {W.dtype} are not supported "
                                      "(float32 and float64 are)")
        H = a.get("hidden_size")
        H = int(H) if H is not None else (R.shape[-1] if R.ndim == 3 else -1)
        if W.ndim != 3 or W.shape[0] != D or W.shape[1] != G * H:
            raise ValueError(f"{where}: W has shape {W.shape}, expected "
                             f"[{D}, {G * H}, input_size] (directions, {G}*hidden_size)")
        I = W.shape[2]
        if R.shape != (D, G * H, H):
            raise ValueError(f"{where}: R has shape {R.shape}, expected {(D, G * H, H)}")
        if B is not None and B.shape != (D, 2 * G * H):
            raise ValueError(f"{where}: B has shape {B.shape}, expected {(D, 2 * G * H)}")
        acts = [str(s).lower() for s in a.get("activations", [])]
        nonlinearity = "tanh"
        if acts:
            n = len(_DEFAULT_ACTS[op])
            chunks = [acts[i:i + n] for i in range(0, len(acts), n)]
            if len(acts) != n * D:
                raise ValueError(f"{where}: {len(acts)} activations given, expected {n * D}")
            if op == "RNN" and all(c == chunks[0] for c in chunks) and \
                    chunks[0][0] in ("tanh", "relu"):
                nonlinearity = chunks[0][0]
            elif any(c != _DEFAULT_ACTS[op] for c in chunks):
                raise NotImplementedError(
                    f"{where}: activations {a['activations']} are not supported; fastrnn "
                    f"runs the defaults {_DEFAULT_ACTS[op]}"
                    + (" (and Relu for RNN, the same in both directions)" if op == "RNN" else ""))
        if op == "LSTM" and int(a.get("input_forget", 0)) != 0:
            raise NotImplementedError(f"{where}: input_forget=1 (coupled input and forget "
                                      "gates) is not supported")
        self.P_name = None
        if op == "LSTM" and ins[7]:
            if ins[7] in consts:
                if np.any(np.asarray(consts[ins[7]]) != 0):
                    raise NotImplementedError(f"{where}: peephole weights P are not supported "
                                              "(only all-zero P)")
            else:
                self.P_name = ins[7]  # checked at run time
        clip = a.get("clip")
        if clip is not None and not float(clip) > 0:
            raise ValueError(f"{where}: clip must be > 0, got {clip}")
        kw = dict(bias=B is not None, batch_first=self.layout == 1, bidirectional=D == 2,
                  dtype=W.dtype.name, clip=None if clip is None else float(clip))
        if op == "LSTM":
            layer = LSTM(I, H, **kw)
        elif op == "GRU":
            layer = GRU(I, H, linear_before_reset=bool(int(a.get("linear_before_reset", 0))),
                        **kw)
        else:
            layer = RNN(I, H, nonlinearity=nonlinearity, **kw)
        perm = _block_perm(_TO_TORCH[op], H)
        sd = {}
        for d in range(D):
            sfx = "_reverse" if d else ""
            sd[f"weight_ih_l0{sfx}"] = W[d][perm]
            sd[f"weight_hh_l0{sfx}"] = R[d][perm]
            if B is not None:
                sd[f"bias_ih_l0{sfx}"] = B[d, :G * H][perm]
                sd[f"bias_hh_l0{sfx}"] = B[d, G * H:][perm]
        layer.load_state_dict(sd)
        layer.eval()
        self.layer, self.D, self.H, self.I, self.where = layer, D, H, I, where

    def run(self, ins, values):
        ins = list(ins) + [None] * (8 - len(ins))
        X, seq, h0, c0 = ins[0], ins[4], ins[5], ins[6] if self.op == "LSTM" else None
        where, D, H, layer = self.where, self.D, self.H, self.layer
        if self.P_name is not None and np.any(np.asarray(values[self.P_name]) != 0):
            raise NotImplementedError(f"{where}: peephole weights P are not supported "
                                      "(only all-zero P)")
        X = np.asarray(X)
        if X.ndim != 3 or X.shape[2] != self.I:
            raise ValueError(f"{where}: X has shape {X.shape}, expected 3-D with input_size "
                             f"{self.I} last")
        x = X.transpose(1, 0, 2) if self.layout == 1 else X  # time-major view
        T, B = x.shape[0], x.shape[1]

        def state(s, name):
            if s is None:
                return None
            s = np.asarray(s)
            if self.layout == 1:
                s = s.transpose(1, 0, 2)
            if s.shape != (D, B, H):
                raise ValueError(f"{where}: {name} has shape {np.asarray(s).shape}, expected "
                                 f"{(B, D, H) if self.layout == 1 else (D, B, H)}")
            return s

        h0, c0 = state(h0, "initial_h"), state(c0, "initial_c")
        if self.op == "LSTM" and (h0 is None) != (c0 is None):
            zeros = np.zeros((D, B, H), layer.dtype)
            h0 = zeros if h0 is None else h0
            c0 = zeros if c0 is None else c0
        lens = zero = None
        if seq is not None:
            seq = np.asarray(seq)
            if seq.shape != (B,) or seq.dtype.kind not in "iu":
                raise ValueError(f"{where}: sequence_lens must be ({B},) integers, got "
                                 f"{seq.dtype} {seq.shape}")
            if B and (seq.min() < 0 or seq.max() > T):
                raise ValueError(f"{where}: sequence_lens must be in 0..{T}, got "
                                 f"{seq.min()}..{seq.max()}")
            zero = seq == 0
            lens = np.maximum(seq, 1).astype(np.int64)
            if not zero.any():
                zero = None
        src = None
        if self.reverse:  # reverse each sequence within its length
            Lb = np.full(B, T) if lens is None else lens
            t = np.arange(T)[:, None]
            src = np.where(t < Lb[None, :], Lb[None, :] - 1 - t, t)
            x = x[src, np.arange(B)[None, :]]
        st = None if h0 is None else ((h0, c0) if self.op == "LSTM" else h0)
        xin = x.transpose(1, 0, 2) if layer.batch_first else x
        y, st = layer(xin, st, lengths=lens)
        if layer.batch_first:
            y = y.transpose(1, 0, 2)
        hn, cn = st if self.op == "LSTM" else (st, None)
        if src is not None:
            y = y[src, np.arange(B)[None, :]]  # past a length: stays the zeros there
        if zero is not None:
            y = np.array(y)
            y[:, zero] = 0
            hn[:, zero] = 0
            if cn is not None:
                cn[:, zero] = 0
        Y = y.reshape(T, B, D, H)
        Y = Y.transpose(1, 0, 2, 3) if self.layout == 1 else Y.transpose(0, 2, 1, 3)
        if self.layout == 1:
            hn = hn.transpose(1, 0, 2)
            cn = None if cn is None else cn.transpose(1, 0, 2)
        out = [np.ascontiguousarray(Y), np.ascontiguousarray(hn)]
        if self.op == "LSTM":
            out.append(np.ascontiguousarray(cn))
        return out


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


# ---- the model ------------------------------------------------------------------

class OnnxModel:
    """An ONNX graph run by fastrnn (see from_onnx).

    run(output_names, feeds) -> list of arrays, as onnxruntime.InferenceSession.
    input_names / output_names: the graph's inputs (without initializers) and
    outputs. layers: the fastrnn layers built for its RNN/LSTM/GRU nodes, in
    node order (a "reverse" node's layer is a forward layer fed reversed
    sequences); layer_nodes: the names of those nodes.
    """

    def __init__(self, model):
        from onnx import numpy_helper
        g = model.graph
        self.opset = max([o.version for o in model.opset_import
                          if o.domain in ("", "ai.onnx")] or [1])
        consts = {}
        for t in g.initializer:
            try:
                consts[t.name] = numpy_helper.to_array(t)
            except Exception as e:
                raise ValueError(f"from_onnx: initializer {t.name!r} cannot be read "
                                 f"({type(e).__name__}: {e})") from None
        if len(g.sparse_initializer):
            raise NotImplementedError("from_onnx: sparse initializers are not supported")
        self._defaults = {i.name for i in g.input if i.name in consts}
        self.input_names = [i.name for i in g.input if i.name not in consts]
        self.output_names = [o.name for o in g.output]
        self._inputs = {}
        for i in g.input:
            tt = i.type.tensor_type
            if not i.type.HasField("tensor_type"):
                raise NotImplementedError(f"from_onnx: graph input {i.name!r} is not a tensor")
            dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim] \
                if tt.HasField("shape") else None
            self._inputs[i.name] = (_np_dtype(tt.elem_type), dims)
        nodes = []
        unsupported = []
        for p in g.node:
            if p.domain not in ("", "ai.onnx"):
                unsupported.append(f"{p.domain}::{p.op_type} (node {p.name!r})")
                continue
            if p.op_type not in OPS and p.op_type not in _RECURRENT:
                unsupported.append(f"{p.op_type} (node {p.name!r})")
                continue
            nodes.append(_Node(p))
        if unsupported:
            raise NotImplementedError(
                "from_onnx: operator(s) not supported by fastrnn's ONNX runner: "
                + ", ".join(unsupported[:10]) + (" ..." if len(unsupported) > 10 else ""))
        # fold what depends on constants only, once; build the recurrent layers
        # (graph inputs with an initializer as default, which old exporters
        # write for every weight, count as constants here; feeding them later
        # is refused once they were used)
        self.layers, self.layer_nodes, self._nodes = [], [], []
        self._frozen = set()
        for n in nodes:
            if n.op in _RECURRENT:
                n.rnn = _RecurrentNode(n, consts)
                self.layers.append(n.rnn.layer)
                self.layer_nodes.append(n.name)
                self._nodes.append(n)
                self._frozen.update(x for x in n.inputs[1:4] + n.inputs[7:8]
                                    if x in self._defaults)
            elif all((not x) or x in consts for x in n.inputs):
                for name, v in zip(n.outputs, self._exec(n, [consts[x] if x else None
                                                             for x in n.inputs], consts)):
                    if name:
                        consts[name] = v
                self._frozen.update(x for x in n.inputs if x in self._defaults)
            else:
                self._nodes.append(n)
        self._consts = consts
        produced = set(consts) | set(self.input_names)
        for n in self._nodes:
            produced.update(o for o in n.outputs if o)
        missing = [o for o in self.output_names if o not in produced]
        if missing:
            raise ValueError(f"from_onnx: graph outputs {missing} are produced by no node")

    def _exec(self, n, ins, values):
        try:
            if n.rnn is not None:
                return n.rnn.run(ins, values)
            return OPS[n.op](n, ins, self.opset)
        except (NotImplementedError, MemoryError):
            raise
        except Exception as e:
            if str(e).startswith("from_onnx"):
                raise
            msg = f"from_onnx: node {n.name!r} ({n.op}) failed: {type(e).__name__}: {e}"
            try:
                new = type(e)(msg)
            except Exception:
                new = RuntimeError(msg)
            raise new from e

    def _feed(self, name, value):
        dt, dims = self._inputs[name]
        arr = value
        if hasattr(arr, "detach") and hasattr(arr, "numpy"):
            arr = arr.detach().cpu().numpy()
        arr = np.asarray(arr)
        if arr.dtype != dt:
            same_kind = (arr.dtype.kind in "iu" and dt.kind in "iu") or \
                        (arr.dtype.kind == "f" and dt.kind == "f") or \
                        (arr.dtype.kind in "iu" and dt.kind == "f") or \
                        (arr.dtype.kind == "b" and dt.kind == "b")
            if not same_kind:
                raise TypeError(f"run: input {name!r} expects dtype {dt}, got {arr.dtype}")
            arr = arr.astype(dt)
        if dims is not None:
            if arr.ndim != len(dims) or any(d and d != s for d, s in zip(dims, arr.shape)):
                want = tuple(d if d else "?" for d in dims)
                raise ValueError(f"run: input {name!r} expects shape {want}, got {arr.shape}")
        return arr

    def run(self, output_names, input_feed, run_options=None):
        """Compute `output_names` (None: all graph outputs) from input_feed, a
        dict {input name: array}; returns a list of NumPy arrays."""
        if not isinstance(input_feed, dict):
            raise TypeError(f"run: input_feed must be a dict {{name: array}}, got "
                            f"{type(input_feed).__name__}")
        names = self.output_names if output_names is None else list(output_names)
        unknown = [n for n in names if n not in self.output_names]
        if unknown:
            raise ValueError(f"run: unknown output(s) {unknown}; outputs are {self.output_names}")
        extra = [k for k in input_feed if k not in self._inputs]
        if extra:
            raise ValueError(f"run: unknown input(s) {extra}; inputs are {self.input_names}")
        missing = [k for k in self.input_names if k not in input_feed]
        if missing:
            raise ValueError(f"run: missing input(s) {missing}")
        frozen = [k for k in input_feed if k in self._frozen]
        if frozen:
            raise ValueError(f"run: input(s) {frozen} have initializer defaults that "
                             "fastrnn built into its layers or folded at load time; they "
                             "cannot be fed")
        vals = dict(self._consts)
        for k, v in input_feed.items():
            vals[k] = self._feed(k, v)
        # only the nodes the requested outputs need
        need, live = set(names), []
        for n in reversed(self._nodes):
            if any(o in need for o in n.outputs):
                live.append(n)
                need.update(x for x in n.inputs if x)
        for n in reversed(live):
            res = self._exec(n, [vals[x] if x else None for x in n.inputs], vals)
            for name, v in zip(n.outputs, res):
                if name:
                    vals[name] = v
        return [np.asarray(vals[n]) for n in names]

    def __repr__(self):
        return (f"OnnxModel(inputs={self.input_names}, outputs={self.output_names}, "
                f"layers={len(self.layers)}, opset={self.opset})")


def from_onnx(source):
    """Load an ONNX model (a path, an onnx.ModelProto, serialized bytes or a
    binary file object) as an OnnxModel that runs its graph with fastrnn
    layers for the RNN/LSTM/GRU nodes. The model is checked with
    onnx.checker first; invalid files raise ValueError, unsupported operators
    or attributes NotImplementedError."""
    return OnnxModel(_load(source))


# ---- export -------------------------------------------------------------------------

class GraphBuilder:
    """Collects the pieces of an ONNX graph, with unique names.

        g = GraphBuilder(opset=17)
        x = g.input("input", np.float32, ["T", "B", 8])
        y, h_n, c_n = emit_recurrent(g, lstm, x)
        g.output(y, "output", np.float32, ["T", "B", 16])
        model = g.build("my_model")            # checked onnx.ModelProto

    node(op, inputs, n_out, **attrs) appends a node and returns its output
    name(s); constant(array) adds an initializer and returns its name.
    """

    def __init__(self, opset=17):
        onnx = _require_onnx()
        self._onnx = onnx
        if not isinstance(opset, int) or not 14 <= opset <= onnx.defs.onnx_opset_version():
            raise ValueError(f"opset: expected an int in 14..{onnx.defs.onnx_opset_version()}, "
                             f"got {opset!r}")
        self.opset = opset
        self.nodes, self.initializers, self.inputs, self.outputs = [], [], [], []
        self._used = set()

    def fresh(self, base):
        """A name not used yet in this graph, from `base`."""
        name, i = base, 1
        while name in self._used:
            name, i = f"{base}_{i}", i + 1
        self._used.add(name)
        return name

    def constant(self, array, base="const"):
        from onnx import numpy_helper
        name = self.fresh(base)
        # np.array, not np.ascontiguousarray: that one makes 0-d scalars 1-d
        self.initializers.append(numpy_helper.from_array(np.array(array, order="C"), name))
        return name

    def node(self, op, inputs, n_out=1, base=None, outputs=None, **attrs):
        """Append node `op`; trailing empty optional inputs are dropped.
        Returns its output name (n_out == 1) or list of names."""
        inputs = list(inputs)
        while inputs and not inputs[-1]:
            inputs.pop()
        base = base or op.lower()
        if outputs is None:
            outputs = [self.fresh(f"{base}_out{i}" if n_out > 1 else base) for i in range(n_out)]
        else:
            for o in outputs:
                self._used.add(o)
        self.nodes.append(self._onnx.helper.make_node(op, inputs, outputs,
                                                      name=self.fresh(f"{base}_node"), **attrs))
        return outputs[0] if len(outputs) == 1 else list(outputs)

    def _vi(self, name, dtype, shape):
        elem = self._onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        return self._onnx.helper.make_tensor_value_info(name, elem, shape)

    def input(self, name, dtype, shape):
        """Declare a graph input (shape: ints and symbolic names)."""
        if name in self._used:
            raise ValueError(f"name {name!r} already used in the graph")
        self._used.add(name)
        self.inputs.append(self._vi(name, dtype, shape))
        return name

    def output(self, value, name, dtype, shape=None):
        """Declare `value` as graph output `name` (an Identity renames it)."""
        if value != name:
            self.node("Identity", [value], outputs=[name])
        self.outputs.append(self._vi(name, dtype, shape))
        return name

    def build(self, graph_name="fastrnn", check=True):
        onnx = self._onnx
        graph = onnx.helper.make_graph(self.nodes, graph_name, self.inputs, self.outputs,
                                       self.initializers)
        model = onnx.helper.make_model(graph, producer_name="fastrnn",
                                       opset_imports=[onnx.helper.make_opsetid("", self.opset)])
        if check:
            onnx.checker.check_model(model)
        return model


def emit_recurrent(g, layer, x, lengths=None, h0=None, c0=None):
    """Append the ONNX nodes that compute `layer` (fr.RNN, LSTM or GRU, in
    inference) to GraphBuilder g, and return the names (y, h_n, c_n).

    x        name of the input: (T, B, input_size), or (B, T, input_size)
             when layer.batch_first
    lengths  name of an int32 (B,) tensor of lengths in 1..T, or None
    h0, c0   names of (L*D, B, H) initial states, or None (zeros)
    Returns y in the layer's layout, (T, B, D*H) or (B, T, D*H), and h_n, c_n
    (L*D, B, H) in torch's order (c_n None unless LSTM). Past a sequence's
    length y is 0, as the layer gives.

    One ONNX node per layer (layout 0, direction forward or bidirectional),
    weights as initializers in ONNX gate order; Y [T, D, B, H] is turned into
    the next layer's input by Transpose + Reshape; the states of the layers
    are sliced from h0/c0 and concatenated for h_n/c_n.
    """
    from .recurrent import _RNNBase
    if not isinstance(layer, _RNNBase):
        raise TypeError(f"emit_recurrent: expected a fastrnn RNN, LSTM or GRU, got "
                        f"{type(layer).__name__}")
    _check_exportable(layer, "emit_recurrent")
    mode = layer.mode
    op = "RNN" if mode.startswith("RNN") else mode
    L, D, H = layer.num_layers, layer.num_directions, layer.hidden_size
    G = _GATES[op]
    perm = _block_perm(_TO_ONNX[op], H)
    prefix = g.fresh(op.lower())
    attrs = dict(hidden_size=H, direction="bidirectional" if D == 2 else "forward")
    if op == "GRU":
        attrs["linear_before_reset"] = int(layer.linear_before_reset)
    if op == "RNN" and mode == "RNN_RELU":
        attrs["activations"] = ["Relu"] * D
    if layer.clip is not None:
        attrs["clip"] = float(layer.clip)
    p = layer.params
    cur = g.node("Transpose", [x], base=f"{prefix}_tm", perm=[1, 0, 2]) \
        if layer.batch_first else x
    hs, cs = [], []
    for l in range(L):
        sfxs = ["", "_reverse"][:D]
        W = np.stack([p[f"weight_ih_l{l}{s}"][perm] for s in sfxs])
        R = np.stack([p[f"weight_hh_l{l}{s}"][perm] for s in sfxs])
        ins = [cur, g.constant(W, f"{prefix}_l{l}_W"), g.constant(R, f"{prefix}_l{l}_R")]
        if layer.bias:
            B = np.stack([np.concatenate([p[f"bias_ih_l{l}{s}"][perm],
                                          p[f"bias_hh_l{l}{s}"][perm]]) for s in sfxs])
            ins.append(g.constant(B, f"{prefix}_l{l}_B"))
        else:
            ins.append("")
        ins.append(lengths or "")

        def part(s, what):
            if s is None:
                return ""
            if L == 1:
                return s
            return g.node("Slice", [s, g.constant(np.array([l * D], np.int64), "start"),
                                    g.constant(np.array([(l + 1) * D], np.int64), "end"),
                                    g.constant(np.array([0], np.int64), "axis0")],
                          base=f"{prefix}_l{l}_{what}")

        ins.append(part(h0, "h0"))
        if op == "LSTM":
            ins.append(part(c0, "c0"))
        outs = g.node(op, ins, 3 if op == "LSTM" else 2, base=f"{prefix}_l{l}", **attrs)
        Y, Yh = outs[0], outs[1]
        hs.append(Yh)
        if op == "LSTM":
            cs.append(outs[2])
        # Y [T, D, B, H] -> [T, B, D*H]
        Yt = g.node("Transpose", [Y], base=f"{prefix}_l{l}_Yt", perm=[0, 2, 1, 3])
        cur = g.node("Reshape", [Yt, g.constant(np.array([0, 0, D * H], np.int64), "shape")],
                     base=f"{prefix}_l{l}_y")
    y = g.node("Transpose", [cur], base=f"{prefix}_y", perm=[1, 0, 2]) \
        if layer.batch_first else cur
    h_n = hs[0] if L == 1 else g.node("Concat", hs, base=f"{prefix}_h_n", axis=0)
    c_n = None
    if op == "LSTM":
        c_n = cs[0] if L == 1 else g.node("Concat", cs, base=f"{prefix}_c_n", axis=0)
    return y, h_n, c_n


def export_layer(layer, path=None, lengths=False, initial_state=False, opset=17):
    """An ONNX model computing `layer` (inference; dropout does not apply):

      inputs   "input" (T, B, input_size) or (B, T, input_size) (batch_first),
               "lengths" (B,) int64 when lengths=True,
               "h0" [and "c0" for LSTM] (L*D, B, H) when initial_state=True;
      outputs  "output" (T, B, D*H) or (B, T, D*H), "h_n" [and "c_n"].

    T and B are symbolic. Written to `path` when given; returns the
    onnx.ModelProto. ONNX Runtime's recurrent kernels take float32 only.
    """
    from .recurrent import _RNNBase
    if not isinstance(layer, _RNNBase):
        raise TypeError(f"to_onnx: expected a fastrnn RNN, LSTM or GRU, got "
                        f"{type(layer).__name__}")
    for name, v in (("lengths", lengths), ("initial_state", initial_state)):
        if not isinstance(v, bool):
            raise TypeError(f"to_onnx: {name} must be a bool, got {v!r}")
    g = GraphBuilder(opset)
    dt = layer.dtype
    I, H, K = layer.input_size, layer.hidden_size, layer.num_layers * layer.num_directions
    DH = layer.num_directions * H
    x = g.input("input", dt, ["B", "T", I] if layer.batch_first else ["T", "B", I])
    lens = None
    if lengths:
        lens = g.node("Cast", [g.input("lengths", np.int64, ["B"])], base="lengths_i32",
                      to=_require_onnx().TensorProto.INT32)
    h0 = c0 = None
    if initial_state:
        h0 = g.input("h0", dt, [K, "B", H])
        if layer.mode == "LSTM":
            c0 = g.input("c0", dt, [K, "B", H])
    y, h_n, c_n = emit_recurrent(g, layer, x, lens, h0, c0)
    g.output(y, "output", dt, ["B", "T", DH] if layer.batch_first else ["T", "B", DH])
    g.output(h_n, "h_n", dt, [K, "B", H])
    if c_n is not None:
        g.output(c_n, "c_n", dt, [K, "B", H])
    model = g.build(type(layer).__name__.lower())
    if path is not None:
        _require_onnx().save(model, os.fspath(path))
    return model


# ---- whole models -------------------------------------------------------------------

# fastrnn activation name -> (ONNX op, attributes); "linear" emits nothing
_ACT_OPS = {"relu": ("Relu", {}), "tanh": ("Tanh", {}), "sigmoid": ("Sigmoid", {}),
            "elu": ("Elu", {"alpha": 1.0}), "leaky_relu": ("LeakyRelu", {"alpha": 0.01})}


def _check_exportable(layer, who):
    """ValueError for recurrent layers that one ONNX RNN/LSTM/GRU node cannot
    compute: the layer-normalized LSTM, and zoneout (its inference mix
    h_t = p*h_{t-1} + (1-p)*h~_t needs a custom loop). Recurrent dropout alone
    is fine: it is off in inference, which is then the plain cell."""
    if getattr(layer, "mode", None) == "LNLSTM":
        raise ValueError(f"{who}: LayerNormLSTM has no ONNX operator (the layer norms sit "
                         "inside the recurrence); it cannot be exported")
    if getattr(layer, "zoneout", 0):
        raise ValueError(f"{who}: {type(layer).__name__} with zoneout={layer.zoneout} cannot "
                         "be exported: its inference step h_t = p*h_{t-1} + (1-p)*h~_t has no "
                         "ONNX RNN/LSTM/GRU equivalent (build it with zoneout=0)")


def _reduce_node(g, op, x, axes, keepdims, base):
    """Reduce* over `axes`: as an input from opset 18 (13 for ReduceSum), an
    attribute before."""
    since = 13 if op == "ReduceSum" else 18
    if g.opset >= since:
        return g.node(op, [x, g.constant(np.array(axes, np.int64), "axes")], base=base,
                      keepdims=int(keepdims))
    return g.node(op, [x], base=base, axes=list(axes), keepdims=int(keepdims))


def _input_features(layers):
    """The input feature size the first layers fix (None when none does)."""
    for l in layers:
        for attr in ("input_size", "in_features"):
            if hasattr(l, attr):
                return int(getattr(l, attr))
        if getattr(l, "reduces_sequence", False):
            return None
    return None


def export_sequential(model, path=None, lengths=True, opset=17):
    """An ONNX model computing fr.Sequential `model` in inference,
    model(x, lengths) (raw outputs: logits for classifiers):

      inputs   "x": (N, T) int64 ids when the first layer is an Embedding,
               else (N, T, F) floats of the model's dtype;
               "lengths": (N,) int64 in 1..T, when lengths=True;
      output   "y": (N, T, C) for sequence outputs (0 past each length), or
               (N, C) after a pooling layer.

    N and T are symbolic. Layer by layer (batch-first throughout; `valid` is
    the (N, T, 1) step mask t < lengths[n], built once from Range and Less):
      Embedding         Gather(weight, x), times valid
      RNN/LSTM/GRU      emit_recurrent (one node per layer, lengths as int32
                        sequence_lens; a batch_first=False layer is fed the
                        transposed sequence, as the Sequential does)
      Dense             MatMul(x, W^T) + b, activation, times valid on sequences
      Activation        the activation, times valid on sequences
      Dropout           nothing (identity in inference)
      LastStep          GatherElements at lengths-1 (Slice of step T-1 without lengths)
      MeanPooling       ReduceSum(x * valid) / lengths (ReduceMean without lengths)
      MaxPooling        ReduceMax(Where(valid, x, -inf))
      AttentionPooling  s = tanh(x W^T + b) v, Where(valid, s, -inf), Softmax
                        over steps, ReduceSum(a * x)
    LayerNormLSTM and zoneout layers raise ValueError (no ONNX operator
    computes them). Written to `path` when given; returns the onnx.ModelProto.
    ONNX Runtime's recurrent kernels take float32 only.
    """
    from .layers import (Activation, AttentionPooling, Dense, Dropout, Embedding, LastStep,
                         MaxPooling, MeanPooling)
    from .model import Sequential, is_recurrent
    if not isinstance(model, Sequential):
        raise TypeError(f"export_sequential: expected an fr.Sequential, got "
                        f"{type(model).__name__}")
    if not isinstance(lengths, bool):
        raise TypeError(f"to_onnx: lengths must be a bool, got {lengths!r}")
    onnx = _require_onnx()
    for i, l in enumerate(model.layers):
        if is_recurrent(l):
            _check_exportable(l, f"to_onnx: layers[{i}]")
    g = GraphBuilder(opset)
    dt = np.dtype(model.dtype)
    ids = isinstance(model.layers[0], Embedding)
    if ids:
        x = g.input("x", np.int64, ["N", "T"])
    else:
        F = _input_features(model.layers)
        x = g.input("x", dt, ["N", "T", F if F is not None else "F"])
    lens = lens32 = valid = validf = None
    if lengths:
        lens = g.input("lengths", np.int64, ["N"])
        lens32 = g.node("Cast", [lens], base="lengths_i32", to=onnx.TensorProto.INT32)
        # valid[n, t, 0] = t < lengths[n]
        T = g.node("Gather", [g.node("Shape", [x], base="x_shape"),
                              g.constant(np.array(1, np.int64), "one")], base="T", axis=0)
        steps = g.node("Range", [g.constant(np.array(0, np.int64), "zero"), T,
                                 g.constant(np.array(1, np.int64), "one")], base="steps")
        steps = g.node("Unsqueeze", [steps, g.constant(np.array([0], np.int64), "axes")],
                       base="steps_row")
        lcol = g.node("Unsqueeze", [lens, g.constant(np.array([1], np.int64), "axes")],
                      base="lengths_col")
        valid = g.node("Unsqueeze", [g.node("Less", [steps, lcol], base="valid2"),
                                     g.constant(np.array([2], np.int64), "axes")],
                       base="valid")
        validf = g.node("Cast", [valid], base="valid_f",
                        to=onnx.helper.np_dtype_to_tensor_dtype(dt))
    neg_inf = g.constant(np.array(-np.inf, dt), "neg_inf") if lengths else None

    def act(v, name, base):
        if name == "linear":
            return v
        op, attrs = _ACT_OPS[name]
        return g.node(op, [v], base=base, **attrs)

    def linear(v, W, b, base):
        v = g.node("MatMul", [v, g.constant(np.ascontiguousarray(W.T), f"{base}_WT")],
                   base=f"{base}_mm")
        if b is not None:
            v = g.node("Add", [v, g.constant(b, f"{base}_b")], base=f"{base}_z")
        return v

    cur, seq, feat = x, True, None
    for i, l in enumerate(model.layers):
        base = f"l{i}_{type(l).__name__.lower()}"
        if isinstance(l, Embedding):
            if i != 0:
                raise ValueError(f"to_onnx: layers[{i}]: an Embedding is only exportable as "
                                 "the first layer (it takes the model's ids)")
            cur = g.node("Gather", [g.constant(l.params["weight"], f"{base}_weight"), cur],
                         base=base, axis=0)
            if validf is not None:
                cur = g.node("Mul", [cur, validf], base=f"{base}_masked")
            feat = l.embedding_dim
        elif is_recurrent(l):
            xin = cur if l.batch_first else g.node("Transpose", [cur], base=f"{base}_tm",
                                                   perm=[1, 0, 2])
            y, _, _ = emit_recurrent(g, l, xin, lens32)
            cur = y if l.batch_first else g.node("Transpose", [y], base=f"{base}_bf",
                                                 perm=[1, 0, 2])
            feat = l.num_directions * l.hidden_size
        elif isinstance(l, Dense):
            cur = linear(cur, l.params["weight"], l.params.get("bias"), base)
            cur = act(cur, l.activation, f"{base}_act")
            if seq and validf is not None:
                cur = g.node("Mul", [cur, validf], base=f"{base}_masked")
            feat = l.out_features
        elif isinstance(l, Activation):
            cur = act(cur, l.activation, base)
            if seq and validf is not None:
                cur = g.node("Mul", [cur, validf], base=f"{base}_masked")
        elif isinstance(l, Dropout):
            pass
        elif isinstance(l, LastStep):
            if lens is None:
                cur = g.node("Slice", [cur, g.constant(np.array([-1], np.int64), "start"),
                                       g.constant(np.array([np.iinfo(np.int64).max], np.int64),
                                                  "end"),
                                       g.constant(np.array([1], np.int64), "axes")],
                             base=f"{base}_slice")
            else:
                # index (N, 1, F) holding lengths-1, for GatherElements on axis 1
                last = g.node("Sub", [lens, g.constant(np.array(1, np.int64), "one")],
                              base=f"{base}_last")
                last = g.node("Unsqueeze", [last, g.constant(np.array([1, 2], np.int64),
                                                             "axes")], base=f"{base}_idx3")
                shp = g.node("Shape", [cur], base=f"{base}_shape")
                shp = g.node("Mul", [shp, g.constant(np.array([1, 0, 1], np.int64), "keep")],
                             base=f"{base}_shape0")
                shp = g.node("Add", [shp, g.constant(np.array([0, 1, 0], np.int64), "one_t")],
                             base=f"{base}_shape1")
                idx = g.node("Expand", [last, shp], base=f"{base}_index")
                cur = g.node("GatherElements", [cur, idx], base=f"{base}_gather", axis=1)
            cur = g.node("Squeeze", [cur, g.constant(np.array([1], np.int64), "axes")],
                         base=base)
        elif isinstance(l, MeanPooling):
            if validf is None:
                cur = _reduce_node(g, "ReduceMean", cur, [1], False, base)
            else:
                s = _reduce_node(g, "ReduceSum", g.node("Mul", [cur, validf],
                                                        base=f"{base}_masked"),
                                 [1], False, f"{base}_sum")
                n = g.node("Unsqueeze", [g.node("Cast", [lens], base=f"{base}_n",
                                                to=onnx.helper.np_dtype_to_tensor_dtype(dt)),
                                         g.constant(np.array([1], np.int64), "axes")],
                           base=f"{base}_ncol")
                cur = g.node("Div", [s, n], base=base)
        elif isinstance(l, MaxPooling):
            if valid is not None:
                cur = g.node("Where", [valid, cur, neg_inf], base=f"{base}_masked")
            cur = _reduce_node(g, "ReduceMax", cur, [1], False, base)
        elif isinstance(l, AttentionPooling):
            A = l.attention_size
            u = g.node("Tanh", [linear(cur, l.params["weight"], l.params["bias"], base)],
                       base=f"{base}_u")
            s = g.node("MatMul", [u, g.constant(l.params["context"].reshape(A, 1),
                                                f"{base}_context")], base=f"{base}_score")
            if valid is not None:
                s = g.node("Where", [valid, s, neg_inf], base=f"{base}_score_masked")
            a = g.node("Softmax", [s], base=f"{base}_weights", axis=1)
            cur = _reduce_node(g, "ReduceSum", g.node("Mul", [a, cur], base=f"{base}_wx"),
                               [1], False, base)
        else:
            raise ValueError(f"to_onnx: layers[{i}]: {type(l).__name__} has no ONNX export")
        if getattr(l, "reduces_sequence", False):
            seq = False
    if seq:
        shape = ["N", "T", feat if feat is not None else "F_out"]
        if ids and feat is None:
            shape = None
    else:
        shape = ["N", feat if feat is not None else "F_out"]
    g.output(cur, "y", dt, shape)
    m = g.build("sequential")
    if path is not None:
        onnx.save(m, os.fspath(path))
    return m
