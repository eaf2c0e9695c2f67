"""Exporting fastrnn layers and models to ONNX: GraphBuilder, emit_recurrent
(one fastrnn recurrent layer as ONNX nodes), export_layer (behind
fr.to_onnx(layer) and layer.to_onnx) and export_sequential (behind
fr.to_onnx(model) and model.to_onnx)."""
import numpy as np

from ... import _generic
from ...layers import (Activation, AttentionPooling, Dense, Dropout, Embedding, LastStep,
                       MaxPooling, MeanPooling)
from ...model import Sequential
from ...recurrent import RNNBase
from .._files import atomic_write
from ._common import _TO_ONNX, _block_perm, _require_onnx


def _write(model, path):
    """Write `model` to `path` atomically: serialized first, then a new file
    renamed over `path` (atomic_write), so a failure leaves the old file and
    no temporary one, and a symlink at `path` is replaced, not written through."""
    data = model.SerializeToString()
    with atomic_write(path, "to_onnx") as f:
        f.write(data)


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
    if not isinstance(layer, RNNBase):
        raise TypeError(f"emit_recurrent: expected a fastrnn RNN, LSTM or GRU, got "
                        f"{type(layer).__name__}")
    _check_exportable(layer, "emit_recurrent")
    mode = layer.mode
    op = "RNN" if mode.startswith("RNN") else mode
    L, D, H = layer.num_layers, layer.num_directions, layer.hidden_size
    perm = _block_perm(_TO_ONNX[op], H)
    prefix = g.fresh(op.lower())
    attrs = dict(hidden_size=H, direction="bidirectional" if D == 2 else "forward")
    if op == "GRU":
        attrs["linear_before_reset"] = int(layer.linear_before_reset)
    if op == "RNN" and mode == "RNN_RELU":
        attrs["activations"] = ["Relu"] * D
    if layer.activations is not None:
        # ONNX lists one per slot and direction; alpha/beta consumed in order
        names = list(layer.activations)
        alphas, betas = layer.activation_alpha, layer.activation_beta
        if len(names) == _generic.SLOTS[mode] and D == 2:
            names = names * 2
            alphas = None if alphas is None else list(alphas) * 2
            betas = None if betas is None else list(betas) * 2
        attrs["activations"] = names
        oa, ob = _generic.onnx_alpha_beta(names, alphas, betas)
        if oa:
            attrs["activation_alpha"] = [float(v) for v in oa]
        if ob:
            attrs["activation_beta"] = [float(v) for v in ob]
    if op == "LSTM" and layer.input_forget:
        attrs["input_forget"] = 1
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
            if layer.peepholes:
                # ours (i, f, o) blocks, ONNX's P (i, o, f)
                pp = [p[f"peephole_l{l}{s}"] for s in sfxs]
                P = np.stack([np.concatenate([v[:H], v[2 * H:], v[H:2 * H]]) for v in pp])
                ins.append(g.constant(P, f"{prefix}_l{l}_P"))
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
    if not isinstance(layer, RNNBase):
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
        _write(model, path)
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
    if getattr(layer, "proj_size", 0):
        raise ValueError(f"{who}: LSTM with proj_size={layer.proj_size} cannot be exported: "
                         "ONNX's LSTM has no projection of h")
    if getattr(layer, "padding", "zeros") != "zeros":
        raise ValueError(f"{who}: padding={layer.padding!r} cannot be exported: ONNX's "
                         "recurrent operators give 0 past each length (padding='zeros')")
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
    if not isinstance(model, Sequential):
        raise TypeError(f"export_sequential: expected an fr.Sequential, got "
                        f"{type(model).__name__}")
    if not isinstance(lengths, bool):
        raise TypeError(f"to_onnx: lengths must be a bool, got {lengths!r}")
    onnx = _require_onnx()
    for i, l in enumerate(model.layers):
        if isinstance(l, RNNBase):
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
        elif isinstance(l, RNNBase):
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
        _write(m, path)
    return m



def to_onnx(obj, path=None, **kwargs):
    """Export a fastrnn recurrent layer or a Sequential to ONNX.

    Parameters
    ----------
    obj : RNNBase or Sequential
        A layer (one ONNX RNN/LSTM/GRU node; `export_layer`) or a model
        (`export_sequential`).
    path : str or os.PathLike, optional
        Where to write the model; None: only return it.
    **kwargs
        For a layer: ``lengths=False`` (a ``sequence_lens`` input),
        ``initial_state=False``, ``opset=17``; for a model: ``lengths=True`` (a
        "lengths" input), ``opset=17``.

    Returns
    -------
    onnx.ModelProto
        The model.

    Examples
    --------
    >>> import fastrnn as fr
    >>> _ = __import__("pytest").importorskip("onnx")
    >>> proto = fr.to_onnx(fr.GRU(3, 4, seed=0), lengths=True)
    >>> [n.op_type for n in proto.graph.node if n.op_type == "GRU"]
    ['GRU']
    """
    if isinstance(obj, Sequential):
        return export_sequential(obj, path, **kwargs)
    if isinstance(obj, RNNBase):
        return export_layer(obj, path, **kwargs)
    raise TypeError(f"to_onnx: expected a fastrnn RNN, LSTM, GRU or Sequential, got "
                    f"{type(obj).__name__}")
