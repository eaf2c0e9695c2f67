"""Reading ONNX models: loading and checking a file, the RNN/LSTM/GRU nodes as
fastrnn layers, and OnnxModel, which runs a graph node by node (the other
operators in NumPy, runtime.OPS). See the package docstring for the mapping."""
import os

import numpy as np

from ..._cells import num_gates
from ...recurrent import GRU, LSTM, RNN
from ._common import _DEFAULT_ACTS, _TO_TORCH, _block_perm, _require_onnx
from .runtime import OPS, _RECURRENT, _np_dtype


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
        op, a, where = node.op, node.attrs, f"from_onnx: {node.op} node {node.name!r}"
        self.op = op
        G = num_gates(op)
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
    """Load an ONNX model that runs its graph with fastrnn layers for the RNN/LSTM/GRU nodes.

    The returned model follows ONNX Runtime's calling convention,
    ``m.run(None, {"x": x})``; its recurrent layers are ``m.layers``, the ops
    around them run in NumPy. The model is checked with ``onnx.checker`` first.

    Parameters
    ----------
    source : str, os.PathLike, bytes, file or onnx.ModelProto
        A path, serialized bytes, a binary file object or a ModelProto.

    Returns
    -------
    OnnxModel
        The runnable model.

    Raises
    ------
    ValueError
        For an invalid file.
    NotImplementedError
        For unsupported operators or attributes.

    Examples
    --------
    >>> import numpy as np
    >>> import fastrnn as fr
    >>> _ = __import__("pytest").importorskip("onnx")
    >>> lstm = fr.LSTM(3, 4, seed=0)
    >>> m = fr.from_onnx(fr.to_onnx(lstm))
    >>> x = np.ones((5, 2, 3), np.float32)
    >>> y = m.run(None, {m.input_names[0]: x})[0]
    >>> y.shape                       # y: (T, B, H), as the layer gives
    (5, 2, 4)
    """
    return OnnxModel(_load(source))


