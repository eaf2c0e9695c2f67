"""Reading ONNX models: loading and checking a file, the RNN/LSTM/GRU nodes as
fastrnn layers, and OnnxModel, which runs a graph node by node (the other
operators in NumPy, runtime.OPS). See the package docstring for the mapping.

What a file can ask for is bounded (the rules of _files.py): the model's
bytes, the external data it reads and the arrays a load builds (initializers,
attribute tensors and lists, folded results) are each checked against the
load cap before they are read or computed; external data is read only from
regular files inside the model's folder."""
import math
import os
import re
import stat

import numpy as np

from ..._cells import num_gates
from ...recurrent import GRU, LSTM, RNN
from .._files import check_bytes, open_source, regular_file
from .._files import max_bytes as _max_bytes_of
from ._common import _DEFAULT_ACTS, _TO_TORCH, _block_perm, _require_onnx
from .runtime import OPS, _MAX_DIMS, _RECURRENT, SIZED_BY_VALUES, _np_dtype, out_bytes

_WHO = "from_onnx"
_PY_ITEM = 36  # bytes a list element costs as a Python object: an 8-byte slot + an int or float

# ONNX types packed below a byte: bits per element
_PACKED_BITS = {"INT4": 4, "UINT4": 4, "FLOAT4E2M1": 4, "INT2": 2, "UINT2": 2,
                "FLOAT6E2M3": 6, "FLOAT6E3M2": 6}


def _max_bytes(value):
    return _max_bytes_of(value, "from_onnx: max_bytes")


class _Budget:
    """What one load has taken so far against its cap (bytes)."""

    def __init__(self, cap):
        self.cap, self.used = cap, 0

    def fits(self, nbytes, what):
        """Refuse `what` when nbytes more would pass the cap."""
        total = self.used + nbytes
        if self.used:
            what = f"{what} ({nbytes} bytes) with the {self.used} bytes loaded before it"
        check_bytes(total, self.cap, what, _WHO)

    def take(self, nbytes, what):
        self.fits(nbytes, what)
        self.used += nbytes


# ---- loading -----------------------------------------------------------------

def _load(source, cap):
    """(onnx.ModelProto, the source's name, its folder or None) from a path,
    file object, bytes or ModelProto, with its external data read in (from
    the model's folder only) and checked by onnx.checker; ValueError for what
    is not a valid model or asks for more than `cap` bytes."""
    onnx = _require_onnx()
    folder = None
    if isinstance(source, onnx.ModelProto):
        model, what = source, "the given ModelProto"
    else:
        if isinstance(source, (bytes, bytearray, memoryview)):
            what = "the given bytes"
            data = bytes(source)
            check_bytes(len(data), cap, what, _WHO)
        elif isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            path = os.fsdecode(path) if isinstance(path, bytes) else path
            _, what, folder = open_source(path, _WHO)
            data = _read_regular(path, what, 0, None, cap, f"the model file {what!r}")
        elif hasattr(source, "read"):
            what = "the given file object"
            data = source.read(cap + 1)
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"{_WHO}: the file object must be opened in binary mode, "
                                f"it gave {type(data).__name__}")
            if len(data) > cap:
                raise ValueError(f"{_WHO}: {what} holds more than the load cap of {cap} bytes "
                                 "(pass max_bytes= or fr.formats.set_load_limit to allow more)")
            data = bytes(data)
        else:
            raise TypeError(f"{_WHO}: expected a path, an onnx.ModelProto, bytes or a "
                            f"binary file object, got {type(source).__name__}")
        try:
            model = onnx.load_model_from_string(data)
        except Exception as e:  # protobuf DecodeError, truncated files
            raise ValueError(f"{_WHO}: {what} is not a readable ONNX model "
                             f"({type(e).__name__}: {e})") from None
        del data
    _read_external(model, folder, what, _Budget(cap))
    try:
        _check(model)
    except Exception as e:
        raise ValueError(f"{_WHO}: {what} is not a valid ONNX model "
                         f"(onnx.checker: {str(e).strip().splitlines()[0] if str(e) else e})"
                         ) from None
    return model, what, folder


def _read_regular(path, shown, offset, length, cap, what):
    """`length` bytes (None: the rest) from `offset` of regular file `path`,
    checked against its size and `cap` before reading. Opened without
    blocking, so that a FIFO swapped in after the check cannot hang the load."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise ValueError(f"{_WHO}: cannot read {shown!r} ({e.strerror or e})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{_WHO}: {shown!r} is not a regular file")
        if offset > st.st_size:
            raise ValueError(f"{_WHO}: {what}: offset {offset} is past the end of {shown!r} "
                             f"({st.st_size} bytes)")
        n = st.st_size - offset if length is None else length
        check_bytes(n, cap, what, _WHO)
        f.seek(offset)
        data = f.read(n)
    if len(data) != n:
        raise ValueError(f"{_WHO}: {shown!r} changed while it was read ({what})")
    return data


def _tensor_layout(t, what):
    """(dtype, dims, bytes of the stored data, bytes of the array, whether it
    is packed below a byte) that TensorProto `t` declares, checked: a known
    type that is not a string, at most 64 dims, none negative."""
    onnx = _require_onnx()
    if t.data_type == onnx.TensorProto.STRING:
        raise NotImplementedError(f"{_WHO}: {what} is a string tensor; string tensors are "
                                  "not supported")
    dtype = _np_dtype(t.data_type, f"{_WHO}: {what}: data type")
    if len(t.dims) > _MAX_DIMS:
        raise ValueError(f"{_WHO}: {what} has {len(t.dims)} dims, more than NumPy's "
                         f"{_MAX_DIMS}")
    dims = [int(d) for d in t.dims]
    if any(d < 0 for d in dims):
        raise ValueError(f"{_WHO}: {what}: dims {dims} has a negative dimension")
    n = math.prod(dims)
    bits = next((b for name, b in _PACKED_BITS.items()
                 if getattr(onnx.TensorProto, name, None) == t.data_type), None)
    stored = -(-n * bits // 8) if bits else n * dtype.itemsize
    return dtype, dims, stored, n * dtype.itemsize, bool(bits)


def _tensors_of(graph):
    """(TensorProto, description) of every tensor of `graph`: initializers
    and node attributes, sub-graphs included."""
    for t in graph.initializer:
        yield t, f"initializer {t.name!r}"
    for node in graph.node:
        for a in node.attribute:
            at = f"{node.op_type} node {node.name or '<unnamed>'!r}, attribute {a.name!r}"
            if a.HasField("t"):
                yield a.t, at
            for t in a.tensors:
                yield t, at
            if a.HasField("g"):
                yield from _tensors_of(a.g)
            for g in a.graphs:
                yield from _tensors_of(g)


def _read_external(model, folder, what, budget):
    """Move the external data of `model`'s tensors into the model: each
    location must name a regular file inside `folder` (no absolute path, no
    '..', no symlink leading out), its offset and length must lie within the
    file and match the tensor's dims; without a folder (bytes, file objects,
    ModelProtos) there is nothing to read and the model is refused."""
    onnx = _require_onnx()
    for t, at in _tensors_of(model.graph):
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        loc = info.get("location", "")
        if folder is None:
            raise ValueError(f"{_WHO}: {at} keeps its data in the external file {loc!r}, but "
                             f"{what} has no model folder to read it from (give from_onnx "
                             "the model's path)")
        dtype, dims, need, _, _ = _tensor_layout(t, at)
        full = _external_path(loc, folder, at)
        offset, length = (_external_int(info, k, at) for k in ("offset", "length"))
        offset = offset or 0
        if length is not None and length != need:
            raise ValueError(f"{_WHO}: {at}: external data length {length} does not match "
                             f"the tensor: dims {dims} of {dtype} need {need} bytes")
        size = os.stat(full).st_size
        if length is not None and offset + length > size:
            raise ValueError(f"{_WHO}: {at}: external data offset {offset} + length {length} "
                             f"runs past the end of {loc!r} ({size} bytes)")
        if offset <= size < offset + need:
            raise ValueError(f"{_WHO}: {at}: the external file {loc!r} ({size} bytes) holds "
                             f"{size - offset} bytes from offset {offset}; dims {dims} of "
                             f"{dtype} need {need}")
        budget.take(need, at)
        data = _read_regular(full, loc, offset, need, budget.cap, at)
        del t.external_data[:]
        t.data_location = onnx.TensorProto.DEFAULT
        t.raw_data = data


def _external_int(info, key, at):
    v = info.get(key)
    if v is None or v == "":
        return None
    try:
        n = int(v)
    except ValueError:
        raise ValueError(f"{_WHO}: {at}: external data {key} {v!r} is not an integer") from None
    if n < 0:
        raise ValueError(f"{_WHO}: {at}: external data {key} {n} is negative")
    return n


def _external_path(loc, folder, at):
    """The path of external data location `loc`, which must stay in `folder`."""
    bad = None
    if not loc or "\0" in loc:
        bad = "is empty" if not loc else "holds a NUL character"
    elif os.path.isabs(loc) or loc.startswith("\\"):
        bad = "is an absolute path"
    elif ".." in re.split(r"[/\\]", loc):
        bad = "climbs out with '..'"
    else:
        full = os.path.join(folder, loc)
        base, real = os.path.realpath(folder), os.path.realpath(full)
        if os.path.commonpath([base, real]) != base:
            bad = f"leads out through a symlink (to {real!r})"
    if bad:
        raise ValueError(f"{_WHO}: {at}: external data location {loc!r} {bad}; it must name "
                         f"a file inside the model's folder {folder!r}")
    return regular_file(full, f"{_WHO}: {at}: external data")


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


def _tensor(t, what, budget):
    """TensorProto `t` as a NumPy array, its declared size taken from
    `budget` first and its stored data checked against its dims."""
    onnx = _require_onnx()
    from onnx import numpy_helper
    if t.data_location == onnx.TensorProto.EXTERNAL:
        loc = {e.key: e.value for e in t.external_data}.get("location", "")
        raise ValueError(f"{_WHO}: {what} keeps its data in the external file {loc!r}, but "
                         "a ModelProto given to OnnxModel has no model folder to read it "
                         "from (load the model with fr.from_onnx(path))")
    if t.HasField("segment"):
        raise NotImplementedError(f"{_WHO}: {what} is a segment of a tensor; segments are "
                                  "not supported")
    dtype, dims, stored, nbytes, packed = _tensor_layout(t, what)
    budget.take(nbytes, what)
    if t.HasField("raw_data"):
        got = len(t.raw_data)
        if got != stored:
            raise ValueError(f"{_WHO}: {what}: raw_data holds {got} bytes; dims {dims} of "
                             f"{dtype.name} need {stored}")
    elif not packed:
        field = onnx.helper.tensor_dtype_to_field(t.data_type)
        n = len(getattr(t, field))
        want = math.prod(dims) * (2 if dtype.kind == "c" else 1)
        if n != want:
            raise ValueError(f"{_WHO}: {what}: {field} holds {n} values; dims {dims} need "
                             f"{want}")
    try:
        return numpy_helper.to_array(t)
    except Exception as e:
        raise ValueError(f"{_WHO}: {what} cannot be read ({type(e).__name__}: {e})") from None


def _attrs(node, budget):
    """A node's attributes as Python values (strings decoded, tensors as
    NumPy arrays), what they build counted in `budget`; graph-valued
    attributes are refused."""
    onnx = _require_onnx()
    out = {}
    for a in node.attribute:
        at = f"{node.op_type} node {node.name or '<unnamed>'!r}, attribute {a.name!r}"
        if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            raise NotImplementedError(
                f"{_WHO}: node {node.name!r} ({node.op_type}) holds a sub-graph "
                f"(attribute {a.name!r}); control flow is not supported")
        if a.type == onnx.AttributeProto.TENSOR:
            out[a.name] = _tensor(a.t, at, budget)
            continue
        if a.type == onnx.AttributeProto.TENSORS:
            out[a.name] = [_tensor(t, at, budget) for t in a.tensors]
            continue
        n = len(a.ints) + len(a.floats) + len(a.strings)
        budget.take(n * _PY_ITEM + len(a.s) + sum(len(x) for x in a.strings), at)
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        elif isinstance(v, (list, tuple)):
            v = [x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in v]
        out[a.name] = v
    return out


class _Node:
    __slots__ = ("op", "name", "inputs", "outputs", "attrs", "rnn")

    def __init__(self, proto, budget):
        self.op = proto.op_type
        self.name = proto.name or f"<unnamed {proto.op_type}>"
        self.inputs = list(proto.input)
        self.outputs = list(proto.output)
        self.attrs = _attrs(proto, budget)
        self.rnn = None  # _RecurrentNode for RNN/LSTM/GRU


# ---- the recurrent nodes -------------------------------------------------------

_KINDS = {int: "an int", float: "a float", str: "a string", list: "a list of strings",
          "floats": "a list of floats"}


def _attr(node, name, kind, default):
    """Attribute `name` of `node` checked to be of `kind` (an int, float, str,
    or a list of strings); `default` when absent."""
    v = node.attrs.get(name)
    if v is None:
        return default
    if kind is float and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if kind == "floats":
        ok = isinstance(v, list) and all(isinstance(x, (int, float)) and
                                         not isinstance(x, bool) for x in v)
        if ok:
            v = [float(x) for x in v]
    else:
        ok = isinstance(v, kind) and not isinstance(v, bool)
    if kind is list:
        ok = ok and all(isinstance(x, str) for x in v)
    if not ok:
        raise ValueError(f"{_WHO}: {node.op} node {node.name!r}: attribute {name!r} must be "
                         f"{_KINDS[kind]}, got {v!r}")
    return v


# ONNX's activation functions as ONNX Runtime reads them: lower-case name ->
# (canonical name, default alpha, default beta); None: takes no such value
_ORT_ACTS = {"sigmoid": ("Sigmoid", None, None), "tanh": ("Tanh", None, None),
             "relu": ("Relu", None, None), "affine": ("Affine", 0.0, 0.0),
             "leakyrelu": ("LeakyRelu", 0.01, None),
             "thresholdedrelu": ("ThresholdedRelu", 0.0, None),
             "scaledtanh": ("ScaledTanh", 0.0, 0.0), "hardsigmoid": ("HardSigmoid", 0.2, 0.5),
             "elu": ("Elu", 1.0, None), "softsign": ("Softsign", None, None),
             "softplus": ("Softplus", None, None)}

# the node inputs a layer is built from: (index, ONNX name)
_WEIGHTS = ((1, "W"), (2, "R"), (3, "B"), (7, "P"))
# ONNX's T: the dtype a layer computes in for weights of each dtype (float16:
# float32, its outputs cast back to float16, as ONNX Runtime's CPU provider does)
_COMPUTE = {np.dtype(np.float16): np.dtype(np.float32), np.dtype(np.float32):
            np.dtype(np.float32), np.dtype(np.float64): np.dtype(np.float64)}


def _same(a, kept):
    """Whether array `a` is the array `kept` or equal to it in dtype, shape
    and every value (NaN never equal: such weights build a new layer)."""
    if a is None or kept is None:
        return a is kept
    return a is kept or (a.dtype == kept.dtype and a.shape == kept.shape
                         and np.array_equal(a, kept))


class _RecurrentNode:
    """A fastrnn layer configured from one ONNX RNN/LSTM/GRU node.

    The attributes are read and checked once, at load. The layer is built
    from the node's weights W, R, B, P (layer_for): at load when they are
    constants; else at the first run, and again at any run whose weights
    differ from those it was built from."""

    def __init__(self, node, consts):
        op, where = node.op, f"{_WHO}: {node.op} node {node.name!r}"
        self.op, self.where, self._consts = op, where, consts
        direction = _attr(node, "direction", str, "forward")
        if direction not in ("forward", "reverse", "bidirectional"):
            raise ValueError(f"{where}: attribute 'direction' is {direction!r}, not forward, "
                             "reverse or bidirectional")
        self.D = D = 2 if direction == "bidirectional" else 1
        self.reverse = direction == "reverse"
        self.layout = _attr(node, "layout", int, 0)
        if self.layout not in (0, 1):
            raise ValueError(f"{where}: attribute 'layout' is {self.layout}, not 0 or 1")
        self.ins = node.inputs + [""] * (8 - len(node.inputs))
        if not self.ins[1] or not self.ins[2]:
            raise ValueError(f"{where}: inputs W and R are required")
        if op != "LSTM":
            self.ins[7] = ""  # P is an LSTM input only
        H = _attr(node, "hidden_size", int, None)
        if H is not None and H < 1:
            raise ValueError(f"{where}: attribute 'hidden_size' must be an int >= 1, got {H}")
        self.hidden_size = H
        self.nonlinearity, self.acts = "tanh", {}
        self._activations(node, D)
        self.input_forget = False
        if op == "LSTM":
            forget = _attr(node, "input_forget", int, 0)
            if forget not in (0, 1):
                raise ValueError(f"{where}: attribute 'input_forget' is {forget}, not 0 or 1")
            self.input_forget = bool(forget)
        self.clip = _attr(node, "clip", float, None)
        if self.clip is not None and not self.clip > 0:
            raise ValueError(f"{where}: attribute 'clip' must be > 0, got {self.clip}")
        self.lbr = _attr(node, "linear_before_reset", int, 0) if op == "GRU" else 0
        if self.lbr not in (0, 1):
            raise ValueError(f"{where}: attribute 'linear_before_reset' is {self.lbr}, not "
                             "0 or 1")
        self.layer, self._kept = None, None
        names = [self.ins[i] for i, _ in _WEIGHTS]
        if all(not x or x in consts for x in names):
            self.layer_for([consts[x] if x else None for x in names])

    def _activations(self, node, D):
        """activations, activation_alpha, activation_beta as the layer's
        options (self.acts; empty: the cell's own; RNN Relu in both
        directions: nonlinearity="relu", both on the C path). ONNX's alpha and
        beta lists are consumed in order by the activations that take them;
        where a list runs out, ONNX Runtime's value applies (its defaults:
        LeakyRelu 0.01, HardSigmoid 0.2 and 0.5, Elu 1.0, any other 0, which
        for Affine, ScaledTanh and ThresholdedRelu are not the ONNX operators'
        defaults): written out, so that the layer computes what ORT does."""
        op, where = self.op, self.where
        given = _attr(node, "activations", list, [])
        alphas = _attr(node, "activation_alpha", "floats", [])
        betas = _attr(node, "activation_beta", "floats", [])
        if not given:
            return
        n = len(_DEFAULT_ACTS[op])
        if len(given) != n * D:
            raise ValueError(f"{where}: attribute 'activations' lists {len(given)} "
                             f"functions, expected {n * D} ({n} per direction)")
        names, al, be = [], [], []
        ia = ib = 0
        for a in given:
            spec = _ORT_ACTS.get(a.lower())
            if spec is None:
                raise ValueError(f"{where}: attribute 'activations': unknown function {a!r}; "
                                 f"ONNX's are {sorted(v[0] for v in _ORT_ACTS.values())}")
            name, da, db = spec
            names.append(name)
            if da is None:
                al.append(None)
            else:
                al.append(alphas[ia] if ia < len(alphas) else da)
                ia += 1
            if db is None:
                be.append(None)
            else:
                be.append(betas[ib] if ib < len(betas) else db)
                ib += 1
        lower = [x.lower() for x in names]
        chunks = [lower[i:i + n] for i in range(0, len(lower), n)]
        if all(c == _DEFAULT_ACTS[op] for c in chunks):
            return
        if op == "RNN" and all(c == ["relu"] for c in chunks):
            self.nonlinearity = "relu"
            return
        self.acts = dict(activations=names, activation_alpha=al, activation_beta=be)

    def layer_for(self, weights):
        """The layer for weights [W, R, B, P] (None for an input the node does
        not have). The rule: the layer built last is kept when each array is
        the one it was built from (one of the model's own constants) or, for
        an array fed or computed at run time, equal to the copy kept of it in
        dtype, shape and every value (a comparison as long as the weights, at
        each run); otherwise a new layer is built and becomes the kept one."""
        weights = [None if a is None else np.asarray(a) for a in weights]
        if self._kept is not None and all(map(_same, weights, self._kept)):
            return self.layer
        self.layer = self._build(*weights)
        owned = [self._consts.get(self.ins[i]) if self.ins[i] else None for i, _ in _WEIGHTS]
        self._kept = [a if a is None or a is o else np.array(a, copy=True)
                      for a, o in zip(weights, owned)]
        return self.layer

    def _build(self, W, R, B, P):
        op, where, D = self.op, self.where, self.D
        G = num_gates(op)
        if W.dtype not in _COMPUTE:
            raise NotImplementedError(f"{where}: weights of dtype {W.dtype} are not supported "
                                      "(float16, float32 and float64 are)")
        dtype = _COMPUTE[W.dtype]
        for name, a in (("R", R), ("B", B), ("P", P)):
            if a is not None and a.dtype != W.dtype:
                raise ValueError(f"{where}: {name} is {a.dtype}, W is {W.dtype}; ONNX gives "
                                 "them one type T")
        H = self.hidden_size
        if H is None:
            H = R.shape[-1] if R.ndim == 3 else 0
            if H < 1:
                raise ValueError(f"{where}: without attribute 'hidden_size' it is read off R's "
                                 f"last dimension, but R has shape {R.shape}")
            hs = f"hidden_size {H} read off R"
        else:
            hs = f"attribute 'hidden_size' {H}"
        if W.ndim != 3 or W.shape[0] != D or W.shape[1] != G * H:
            raise ValueError(f"{where}: W has shape {W.shape}, expected [{D}, {G * H}, "
                             f"input_size] ({D} direction(s), {G} x {hs})")
        I = W.shape[2]
        if I < 1:
            raise ValueError(f"{where}: W has shape {W.shape}: input_size 0; it must be >= 1")
        if R.shape != (D, G * H, H):
            raise ValueError(f"{where}: R has shape {R.shape}, expected {(D, G * H, H)} "
                             f"({hs})")
        if B is not None and B.shape != (D, 2 * G * H):
            raise ValueError(f"{where}: B has shape {B.shape}, expected {(D, 2 * G * H)} "
                             f"({hs})")
        if P is not None and P.shape != (D, 3 * H):
            raise ValueError(f"{where}: P has shape {P.shape}, expected {(D, 3 * H)} ({hs})")
        peep = P is not None and bool(np.any(P != 0))  # all-zero P: the plain cell
        kw = dict(bias=B is not None, batch_first=self.layout == 1, bidirectional=D == 2,
                  dtype=dtype.name, clip=self.clip, **self.acts)
        try:
            if op == "LSTM":
                layer = LSTM(I, H, peepholes=peep, input_forget=self.input_forget, **kw)
            elif op == "GRU":
                layer = GRU(I, H, linear_before_reset=bool(self.lbr), **kw)
            else:
                layer = RNN(I, H, nonlinearity=self.nonlinearity, **kw)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{where}: {e}") from None
        perm = _block_perm(_TO_TORCH[op], H)
        sd = {}
        for d in range(D):
            sfx = "_reverse" if d else ""
            sd[f"weight_ih_l0{sfx}"] = W[d][perm].astype(dtype)
            sd[f"weight_hh_l0{sfx}"] = R[d][perm].astype(dtype)
            if B is not None:
                sd[f"bias_ih_l0{sfx}"] = B[d, :G * H][perm].astype(dtype)
                sd[f"bias_hh_l0{sfx}"] = B[d, G * H:][perm].astype(dtype)
            if peep:  # ONNX's blocks (i, o, f) -> the layer's (i, f, o)
                sd[f"peephole_l0{sfx}"] = P[d].reshape(3, H)[[0, 2, 1]].reshape(-1).astype(dtype)
        layer.load_state_dict(sd)
        layer.eval()
        self.out_dtype = W.dtype  # ONNX's T: the outputs' dtype
        return layer

    def run(self, ins, values):
        ins = list(ins) + [None] * (8 - len(ins))
        layer = self.layer_for([ins[i] if self.ins[i] else None for i, _ in _WEIGHTS])
        X, seq, h0, c0 = ins[0], ins[4], ins[5], ins[6] if self.op == "LSTM" else None
        where, D, H, I = self.where, self.D, layer.hidden_size, layer.input_size
        X = np.asarray(X)
        if X.ndim != 3 or X.shape[2] != I:
            raise ValueError(f"{where}: X has shape {X.shape}, expected 3-D with input_size "
                             f"{I} last")
        if X.dtype.kind == "f":  # float16 X computes in float32, as its weights
            X = X.astype(layer.dtype, copy=False)
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
            return s.astype(layer.dtype, copy=False) if s.dtype.kind == "f" else s

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
        out = [Y, hn] + ([cn] if self.op == "LSTM" else [])
        return [np.ascontiguousarray(a, dtype=self.out_dtype) for a in out]


# ---- the model ------------------------------------------------------------------

class OnnxModel:
    """An ONNX graph run by fastrnn (see from_onnx).

    run(output_names, feeds) -> list of arrays, as onnxruntime.InferenceSession.
    input_names / output_names: the graph's inputs (without initializers) and
    outputs. layers: the fastrnn layers built for its RNN/LSTM/GRU nodes, in
    node order (a "reverse" node's layer is a forward layer fed reversed
    sequences; None for a node whose weights come from graph inputs until it
    has run, then the layer of its last run); layer_nodes: the names of those
    nodes.

    Weights fed at run time: a node keeps its layer while its W, R, B, P equal
    (dtype, shape, values) those it was built from, and builds a new one when
    they differ. Graph inputs with initializer defaults may be fed; the nodes
    folded from them at load then run again.

    max_bytes caps what the load builds (initializers, attribute tensors and
    lists, folded constants, together) and what one operator sized by a
    tensor's values (ConstantOfShape, Expand, Tile, Range) builds at run time;
    None: fr.formats.get_load_limit(). OnnxModel reads no files: external
    data is read by from_onnx, from the model's folder.
    """

    def __init__(self, model, max_bytes=None):
        g = model.graph
        self.max_bytes = _max_bytes(max_bytes)
        budget = _Budget(self.max_bytes)
        self.opset = max([o.version for o in model.opset_import
                          if o.domain in ("", "ai.onnx")] or [1])
        consts = {}
        for t in g.initializer:
            consts[t.name] = _tensor(t, f"initializer {t.name!r}", budget)
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
            self._inputs[i.name] = (_np_dtype(tt.elem_type,
                                              f"{_WHO}: graph input {i.name!r}: elem_type"),
                                    dims)
        nodes = []
        unsupported = []
        for p in g.node:
            if p.domain not in ("", "ai.onnx"):
                unsupported.append(f"{p.domain}::{p.op_type} (node {p.name!r})")
                continue
            if p.op_type not in OPS and p.op_type not in _RECURRENT:
                unsupported.append(f"{p.op_type} (node {p.name!r})")
                continue
            nodes.append(_Node(p, budget))
        if unsupported:
            raise NotImplementedError(
                "from_onnx: operator(s) not supported by fastrnn's ONNX runner: "
                + ", ".join(unsupported[:10]) + (" ..." if len(unsupported) > 10 else ""))
        # fold what depends on constants only, once; build the recurrent layers
        # whose weights are constants (graph inputs with an initializer as
        # default, which old exporters write for every weight, count as
        # constants here: a run that feeds one folds again what depends on it)
        self.layer_nodes, self._nodes, self._rnn, self._folded = [], [], [], []
        for n in nodes:
            if n.op in _RECURRENT:
                n.rnn = _RecurrentNode(n, consts)
                self._rnn.append(n.rnn)
                self.layer_nodes.append(n.name)
                self._nodes.append(n)
            elif all((not x) or x in consts for x in n.inputs):
                ins = [consts[x] if x else None for x in n.inputs]
                what = f"{n.op} node {n.name!r}"
                budget.fits(self._guard(n, out_bytes, n, ins), what)
                outs = self._exec(n, ins, consts)
                known = [np.asarray(v) for v in ins if v is not None]
                budget.take(sum(np.asarray(v).nbytes for v in outs  # new memory only
                                if not any(np.may_share_memory(v, k) for k in known)), what)
                for name, v in zip(n.outputs, outs):
                    if name:
                        consts[name] = v
                self._folded.append(n)
            else:
                self._nodes.append(n)
        self._consts = consts
        produced = set(consts) | set(self.input_names)
        for n in self._nodes:
            produced.update(o for o in n.outputs if o)
        missing = [o for o in self.output_names if o not in produced]
        if missing:
            raise ValueError(f"from_onnx: graph outputs {missing} are produced by no node")

    @property
    def layers(self):
        """The fastrnn layers of the recurrent nodes, in node order (None for a
        node whose weights are graph inputs and that has not run yet)."""
        return [r.layer for r in self._rnn]

    def _exec(self, n, ins, values):
        if n.rnn is not None:
            return self._guard(n, n.rnn.run, ins, values)
        if n.op in SIZED_BY_VALUES:
            check_bytes(self._guard(n, out_bytes, n, ins), self.max_bytes,
                        f"{n.op} node {n.name!r}", _WHO)
        return self._guard(n, OPS[n.op], n, ins, self.opset)

    def _guard(self, n, fn, *args):
        """fn(*args), its errors turned into ones that name node n."""
        try:
            return fn(*args)
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
        vals = dict(self._consts)
        for k, v in input_feed.items():
            vals[k] = self._feed(k, v)
        # inputs fed over their initializer defaults: fold again what was
        # folded from them at load, in node order
        changed = {k for k in input_feed if k in self._defaults}
        for n in self._folded if changed else ():
            if any(x in changed for x in n.inputs if x):
                res = self._exec(n, [vals[x] if x else None for x in n.inputs], vals)
                for name, v in zip(n.outputs, res):
                    if name:
                        vals[name] = v
                        changed.add(name)
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


def from_onnx(source, max_bytes=None):
    """Load an ONNX model that runs its graph with fastrnn layers for the RNN/LSTM/GRU nodes.

    The returned model follows ONNX Runtime's calling convention,
    ``m.run(None, {"x": x})``; its recurrent layers are ``m.layers``, the ops
    around them run in NumPy. The model is checked with ``onnx.checker`` first.
    External data (tensors stored in other files) is read only from a path's
    folder: regular files inside it, never through '..', an absolute
    location or a symlink leading out.

    Parameters
    ----------
    source : str, os.PathLike, bytes, file or onnx.ModelProto
        A path, serialized bytes, a binary file object or a ModelProto.
    max_bytes : int, optional
        Caps, each on its own, the bytes read (the model, then its external
        data) and the arrays the load builds (default
        ``fr.formats.get_load_limit()``, 1 GiB); a file asking for more is
        refused before the allocation.

    Returns
    -------
    OnnxModel
        The runnable model.

    Raises
    ------
    ValueError
        For an invalid or oversized file, external data outside the model's
        folder, or a path that names a directory, FIFO or device.
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
    cap = _max_bytes(max_bytes)
    model, _, _ = _load(source, cap)
    return OnnxModel(model, max_bytes=cap)


