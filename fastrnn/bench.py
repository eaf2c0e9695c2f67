"""Time fastrnn against its peers on the reference shapes.

Run ``python -m fastrnn.bench`` (``--help`` for the options, ``--quick`` for a
short run). The shapes and the peers are those of the project's benchmark spec:

* PyTorch CPU: ``torch.nn.LSTM/GRU/RNN``; infer under ``torch.inference_mode``,
  train as ``grads = None; y = m(x); y.sum().backward()`` (gradients of x and of
  every parameter); variable lengths through ``pack_padded_sequence``.
* ONNX Runtime CPU: the same torch module exported with ``torch.onnx.export``
  (TorchScript exporter, opset 17); variable lengths through the RNN node's
  ``sequence_lens`` input. Inference only.
* A plain NumPy loop (LSTM inference only): the floor any compiled engine must
  clear.

fastrnn infers (and steps) with a frozen copy of its layer, ``layer.freeze()``,
made once before timing, as ONNX Runtime packs its weights once when the session
is made: the calls then read weights packed for the fast loops instead of packing
them each time, with the same bits. ``--per-call`` times the layer itself
(weights packed on every call). Training uses the layer itself.

Every engine runs the same weights (``fr.from_torch(module)``) on the same random
normal inputs, with the same thread count (``--threads``, default 2). A time is
the median over ``--repeat`` repeats (the table also gives each row's spread,
(max - min) / median, and marks with '?' a speedup whose spread is wider than
the gap it reports; the JSON keeps min, median and max of every engine), after warm-up; a repeat runs the call often
enough to last at least a few milliseconds, so short calls are not timer noise.
The engines' repeats of a shape are taken in turn (one repeat of each, then
the next), so that a shared machine whose load changes during a run slows
every engine alike and the ratios hold. Nothing here asserts a time. The
header and the JSON keep the ISA, the BLAS kernels that ran (threadpoolctl's
internal_api, version and architecture; a note when they are below the CPU's,
as with OPENBLAS_CORETYPE=Haswell on an AVX-512 CPU) and the machine's load
(load average, and the share of CPU time stolen by the hypervisor during the
run, from /proc/stat).

Before a shape is timed, fastrnn's results are checked against torch's on the
row's own call: y and the final states, and for training rows dx and every
weight gradient of sum(y), at the test suite's float32 parity claim (rtol 2e-4,
atol 1e-5 of the largest value). A row that fails is not timed: FAIL in the
table and the JSON, a note naming what differs, and exit status 1.

``--precision int8|bf16`` adds, in the same run and the same turns, fastrnn frozen
with reduced-precision weights (``layer.freeze(weights=P)``) and the peers'
reduced-precision models, where they exist (inference and steps only):

* int8: torch's ``torch.ao.quantization.quantize_dynamic(..., dtype=torch.qint8)``
  (LSTM and GRU; torch has no quantized RNN) and ONNX Runtime's
  ``onnxruntime.quantization.quantize_dynamic`` of the exported model, its
  defaults (DynamicQuantizeLSTM; it leaves GRU and RNN nodes in float32, so
  they have no int8 ORT peer).
* bf16: torch's ``quantize_dynamic`` with float16 weights (LSTM, GRU) and the
  torch module cast to bfloat16 (weights and activations).

The table then gives each one's time, fastrnn's reduced-precision speedup
against the best float32 peer and against the best peer of its precision, and
its largest difference from fastrnn's float32 results. Each row checks those
results (outputs and final states of the row's call) against float32 at a
tolerance for the precision (``LOW_TOL``: largest and mean |difference| as a
fraction of the quantity's largest |value|, at least 1): a row outside it is
not timed, FAIL, exit status 1. The peers' differences go in the JSON, not
judged. Where this fastrnn cannot freeze with those weights the option is
refused (exit status 2).

GFLOP/s counts 2*B*G*H*(I+H) flops per step and sequence (G = 4 LSTM, 3 GRU,
1 RNN; summed over the valid steps only when lengths vary), x3 for training; the
share is of the sgemm rate measured in the same run (the faster of NumPy's
and fastrnn's own GEMM, 2048^3, same
thread count).

This module imports only NumPy and fastrnn at import time: torch, onnx,
onnxruntime, threadpoolctl and matplotlib are optional, and an engine whose
package is missing is shown as '-'.
"""

import argparse
import gc
import io
import json
import os
import platform
import statistics
import sys
import time
import warnings
import dataclasses
from dataclasses import dataclass

import numpy as np

from ._cells import num_gates

ENGINES = ("fastrnn", "torch", "ort", "numpy")
PEERS = ("torch", "ort", "numpy")
# --precision P: fastrnn's frozen copy with P weights (layer.freeze(weights=P))
# and the peers that keep their weights in fewer bits, timed in the same run
# as the float32 engines; an engine's family (before the '-') selects it in
# --engines too
PRECISIONS = ("int8", "bf16")
LOW_ENGINES = {
    "int8": ("fastrnn-int8", "torch-qint8", "ort-qint8"),
    "bf16": ("fastrnn-bf16", "torch-fp16", "torch-bf16"),
}
LOW_LABELS = {"fastrnn-int8": "fastrnn int8", "fastrnn-bf16": "fastrnn bf16",
              "torch-qint8": "torch qint8", "ort-qint8": "ORT qint8",
              "torch-fp16": "torch fp16", "torch-bf16": "torch bf16"}
ALL_ENGINES = ENGINES + tuple(e for p in PRECISIONS for e in LOW_ENGINES[p])
CELLS = ("lstm", "gru", "rnn")
VAR_LENGTH_SEED = 1234
INPUT_SEED = 0


@dataclass(frozen=True)
class Shape:
    """One reference shape. mode: 'step' (one streaming step, state carried by
    the caller), 'infer' (the inference call) or 'train' (forward that keeps
    activations + full backward of sum(y))."""
    name: str
    cell: str
    B: int
    T: int
    I: int
    H: int
    mode: str
    var: bool = False      # lengths drawn from 10..T (fixed seed)
    table: int = 1         # which table of the benchmark spec


SHAPES = (
    # first table
    Shape("stream-step", "lstm", 1, 1, 128, 128, "step"),
    Shape("lat-lstm", "lstm", 1, 100, 256, 256, "infer"),
    Shape("lat-gru", "gru", 1, 100, 256, 256, "infer"),
    Shape("serve-lstm", "lstm", 8, 50, 512, 512, "infer"),
    Shape("big-lstm", "lstm", 64, 50, 512, 512, "infer"),
    Shape("db-lstm", "lstm", 16, 25, 1024, 1024, "infer"),
    Shape("train-lstm", "lstm", 64, 50, 512, 512, "train"),
    Shape("train-gru", "gru", 64, 50, 512, 512, "train"),
    Shape("train-rnn", "rnn", 32, 100, 256, 256, "train"),
    Shape("train-small", "lstm", 16, 100, 64, 128, "train"),
    # second table: DeepBench server inference and variable-length batches
    Shape("db-lstm-b1", "lstm", 1, 25, 1024, 1024, "infer", table=2),
    Shape("db-lstm-b4", "lstm", 4, 25, 512, 512, "infer", table=2),
    Shape("long-gru", "gru", 1, 500, 512, 512, "infer", table=2),
    Shape("var-lstm", "lstm", 32, 100, 256, 256, "infer", var=True, table=2),
    Shape("var-gru", "gru", 32, 100, 256, 256, "infer", var=True, table=2),
    Shape("var-lstm-train", "lstm", 32, 100, 256, 256, "train", var=True, table=2),
)
SHAPES_BY_NAME = {s.name: s for s in SHAPES}
QUICK_SHAPES = ("stream-step", "lat-lstm", "lat-gru", "serve-lstm", "train-small",
                "var-gru")


class Unavailable(Exception):
    """An engine cannot run this shape here (package missing, mode unsupported)."""


def get_shape(name):
    try:
        return SHAPES_BY_NAME[name]
    except KeyError:
        raise ValueError("unknown shape %r; known: %s"
                         % (name, ", ".join(SHAPES_BY_NAME))) from None


def parse_custom(spec):
    """A shape from 'cell:B:T:I:H:mode[:var]' (--shape), named after itself;
    table 0 (not in the spec's tables)."""
    parts = [v.strip().lower() for v in spec.split(":")]
    if len(parts) not in (6, 7) or (len(parts) == 7 and parts[6] != "var"):
        raise ValueError("--shape %r: expected cell:B:T:I:H:mode[:var], e.g. "
                         "lstm:3:77:40:96:infer" % spec)
    cell, mode = parts[0], parts[5]
    if cell not in CELLS:
        raise ValueError("--shape %r: cell must be one of lstm, gru, rnn" % spec)
    if mode not in ("step", "infer", "train"):
        raise ValueError("--shape %r: mode must be step, infer or train" % spec)
    try:
        B, T, I, H = (int(v) for v in parts[1:5])
    except ValueError:
        raise ValueError("--shape %r: B, T, I, H must be integers" % spec) from None
    if min(B, T, I, H) < 1:
        raise ValueError("--shape %r: B, T, I, H must be >= 1" % spec)
    if mode == "step" and T != 1:
        raise ValueError("--shape %r: a step has T = 1" % spec)
    var = len(parts) == 7
    if var and (mode == "step" or T < 10):
        raise ValueError("--shape %r: var needs T >= 10 (lengths 10..T) and no step" % spec)
    return Shape(spec.strip().lower(), cell, B, T, I, H, mode, var=var, table=0)


def with_batch(shape, B):
    """The shape at batch B (--batch), named NAME@bB."""
    return dataclasses.replace(shape, B=B, name="%s@b%d" % (shape.name, B))


def applicable(shape, engine):
    """Whether an engine is meant to run this shape at all (independent of what
    is installed): ORT only infers, the NumPy floor is LSTM inference only,
    reduced precision is for inference only (frozen copies)."""
    if engine in ALL_ENGINES[len(ENGINES):]:
        return shape.mode != "train"
    if engine == "ort":
        return shape.mode != "train"
    if engine == "numpy":
        return shape.cell == "lstm" and shape.mode != "train"
    return engine in ("fastrnn", "torch")


def lengths_for(shape):
    """Lengths for a var-* shape: uniform in 10..T from a fixed seed, the first
    one set to T so that every engine runs (and pads to) T steps."""
    if not shape.var:
        return None
    rng = np.random.default_rng(VAR_LENGTH_SEED)
    lengths = rng.integers(10, shape.T + 1, size=shape.B).astype(np.int64)
    lengths[0] = shape.T
    return lengths


def flops(shape):
    """Flops of one call: 2*G*H*(I+H) per valid (step, sequence), x3 to train."""
    lengths = lengths_for(shape)
    steps = int(lengths.sum()) if lengths is not None else shape.T * shape.B
    f = 2.0 * num_gates(shape.cell) * shape.H * (shape.I + shape.H) * steps
    return 3.0 * f if shape.mode == "train" else f


# ---------------------------------------------------------------------------
# threads

def set_threads(n):
    """Give every engine n threads (BLAS, OpenMP, torch, fastrnn). Returns notes
    on what could not be set. ORT gets n intra-op threads per session."""
    notes = []
    try:
        from threadpoolctl import threadpool_limits
        # Kept for the whole process: the limits of NumPy's and SciPy's BLAS and
        # of the OpenMP runtimes loaded so far.
        set_threads._limits = threadpool_limits(limits=n)
    except ImportError:
        notes.append("threadpoolctl not installed: NumPy's BLAS threads not "
                     "limited (set OMP_NUM_THREADS/OPENBLAS_NUM_THREADS=%d)" % n)
    import fastrnn as fr
    setter = getattr(fr, "set_num_threads", None)
    if setter is None:
        notes.append("fastrnn.set_num_threads missing: fastrnn threads not set")
    else:
        setter(n)
    torch = _try_import("torch")
    if torch is not None:
        torch.set_num_threads(n)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass  # only settable once, before any inter-op work
        if "threadpoolctl" in sys.modules:
            # torch brings its own OpenMP runtime: limit it too.
            from threadpoolctl import threadpool_limits
            set_threads._limits_torch = threadpool_limits(limits=n)
    return notes


def _try_import(name):
    try:
        return __import__(name)
    except ImportError:
        return None


# ---------------------------------------------------------------------------
# one shape, all engines

class Case:
    """Inputs, the torch module and the fastrnn layer for one shape, all with
    the same weights; ``runner(engine)`` gives a zero-argument callable that
    does one timed call."""

    def __init__(self, shape, dtype="float32", threads=2, freeze=True, precision=None):
        self.shape = shape
        self.dtype = np.dtype(dtype)
        self.threads = threads
        self.precision = precision
        # engine -> (y, states) of the engine's first call, float64 arrays,
        # recorded while its runner is made (the --precision check reads them)
        self.first = {}
        s = shape
        rng = np.random.default_rng(INPUT_SEED)
        self.x = rng.standard_normal((s.T, s.B, s.I)).astype(self.dtype)
        self.lengths = lengths_for(s)
        self.torch = _try_import("torch")
        self.module = None
        if self.torch is not None:
            torch = self.torch
            torch.manual_seed(0)
            cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[s.cell]
            kw = {"nonlinearity": "tanh"} if s.cell == "rnn" else {}
            self.module = cls(s.I, s.H, **kw).to(_torch_dtype(torch, self.dtype))
        self.layer = self._fastrnn_layer()
        # the layer that infers and steps: a frozen copy (weights packed
        # once, made here, outside the timing), or the layer itself
        self.infer_layer = (self.layer.freeze() if freeze and shape.mode != "train"
                            else self.layer)

    # -- fastrnn ----------------------------------------------------------
    def _fastrnn_layer(self):
        import fastrnn as fr
        s = self.shape
        cls = {"lstm": fr.LSTM, "gru": fr.GRU, "rnn": fr.RNN}[s.cell]
        kw = {"nonlinearity": "tanh"} if s.cell == "rnn" else {}
        if self.module is not None:
            layer = fr.from_torch(self.module)
            if layer.state_dict()["weight_ih_l0"].dtype == self.dtype:
                return layer
            sd = {k: v.detach().cpu().numpy() for k, v in self.module.state_dict().items()}
            layer = cls(s.I, s.H, dtype=self.dtype.name, **kw)
            layer.load_state_dict(sd)
            return layer
        return cls(s.I, s.H, dtype=self.dtype.name, seed=0, **kw)

    def weights(self):
        return {k: np.asarray(v) for k, v in self.layer.state_dict().items()}

    def runner(self, engine):
        if not applicable(self.shape, engine):
            raise Unavailable("%s does not run %s shapes of %s"
                              % (engine, self.shape.mode, self.shape.cell))
        if engine in ENGINES:
            return getattr(self, "_run_" + engine)()
        if engine.startswith("fastrnn-"):
            return self._run_fastrnn(self.low_layer(), engine)
        if engine == "ort-qint8":
            return self._run_ort(self._ort_qint8(), engine)
        return self._run_torch(*self._torch_low(engine.split("-")[1]), engine=engine)

    def low_layer(self):
        """The fastrnn layer frozen with --precision weights, made once."""
        if getattr(self, "_low", None) is None:
            self._low = self.layer.freeze(weights=self.precision)
        return self._low

    def _record(self, engine, y, states):
        """Keep an engine's first (y, states) as float64 NumPy arrays."""
        def arr(a):
            if hasattr(a, "detach"):
                a = a.detach().float().numpy()
            return np.asarray(a, np.float64)
        states = states if isinstance(states, (tuple, list)) else (states,)
        self.first[engine] = (arr(y), tuple(arr(a) for a in states))

    def _run_fastrnn(self, layer=None, engine="fastrnn"):
        layer = self.infer_layer if layer is None else layer
        x, L, s = self.x, self.lengths, self.shape
        kw = {} if L is None else {"lengths": L}
        if s.mode == "step":
            x_t = np.ascontiguousarray(x[0])
            y, st = layer.step(x_t, None)
            self._record(engine, np.asarray(y)[None], st)
            state = [st]

            def run():
                _, state[0] = layer.step(x_t, state[0])
            return run
        if s.mode == "infer":
            self._record(engine, *layer(x, **kw))
            return lambda: layer(x, **kw)
        # train: dy of sum(y) is all ones, made once (torch's sum backward
        # makes no array either: it expands a scalar).
        dy = np.ones((s.T, s.B, s.H), dtype=self.dtype)

        def run():
            layer.zero_grad()
            layer.forward(x, **kw)
            layer.backward(dy)
        return run

    # -- torch ------------------------------------------------------------
    def _need_torch(self):
        if self.torch is None:
            raise Unavailable("torch not installed")
        return self.torch

    def _torch_low(self, kind):
        """(module, input dtype) of a torch reduced-precision peer: 'qint8' and
        'fp16' are torch.ao.quantization.quantize_dynamic's LSTM/GRU (int8
        weights with activations quantized per call, or float16 weights);
        'bf16' is the module cast to bfloat16 (weights and activations)."""
        torch = self._need_torch()
        m = self.module.eval()
        if kind == "bf16":
            import copy
            return copy.deepcopy(m).to(torch.bfloat16), torch.bfloat16
        from torch.ao.quantization import quantize_dynamic

        class Holder(torch.nn.Module):  # quantize_dynamic swaps children only
            def __init__(self, m):
                super().__init__()
                self.m = m
        dtype = {"qint8": torch.qint8, "fp16": torch.float16}[kind]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = quantize_dynamic(Holder(m), {type(m)}, dtype=dtype).m
        if not type(q).__module__.startswith("torch.ao.nn.quantized"):
            raise Unavailable("torch's quantize_dynamic has no %s %s module (left float32)"
                              % (kind, type(m).__name__))
        return q, None

    def _run_torch(self, m=None, cast=None, engine="torch"):
        torch = self._need_torch()
        m = self.module if m is None else m
        s = self.shape
        pack = torch.nn.utils.rnn.pack_padded_sequence
        unpack = torch.nn.utils.rnn.pad_packed_sequence
        L = None if self.lengths is None else torch.from_numpy(self.lengths)

        def tensor(a):
            t = torch.from_numpy(np.ascontiguousarray(a))
            return t if cast is None else t.to(cast)
        if s.mode == "step":
            m.eval()
            x1 = tensor(self.x[:1])
            with torch.inference_mode():
                y, st = m(x1)
            self._record(engine, y, st)
            state = [st]

            def run():
                with torch.inference_mode():
                    _, state[0] = m(x1, state[0])
            return run
        if s.mode == "infer":
            m.eval()
            xt = tensor(self.x)
            if L is None:
                def run():
                    with torch.inference_mode():
                        return m(xt)
            else:
                def run():
                    with torch.inference_mode():
                        y, st = m(pack(xt, L, enforce_sorted=False))
                        return unpack(y, total_length=s.T)[0], st
            self._record(engine, *run())
            return run
        m.train()
        xt = torch.from_numpy(self.x.copy()).requires_grad_(True)

        def run():
            m.zero_grad(set_to_none=True)
            xt.grad = None
            if L is None:
                y = m(xt)[0]
            else:
                y = unpack(m(pack(xt, L, enforce_sorted=False))[0], total_length=s.T)[0]
            y.sum().backward()
        return run

    # -- ONNX Runtime -----------------------------------------------------
    def _need_ort(self):
        self._need_torch()
        ort = _try_import("onnxruntime")
        if ort is None:
            raise Unavailable("onnxruntime not installed")
        ort.set_default_logger_severity(4)  # failures are reported here, once
        if _try_import("onnx") is None:
            raise Unavailable("onnx not installed")
        return ort

    def _ort_qint8(self):
        """The exported model through onnxruntime.quantization.quantize_dynamic
        (its defaults: int8 weights, one scale per tensor, activations uint8
        per call): LSTM becomes DynamicQuantizeLSTM; GRU and RNN nodes it
        leaves float32, and then there is no such peer."""
        self._need_ort()
        import logging
        import tempfile
        import onnx
        try:
            from onnxruntime.quantization import QuantType, quantize_dynamic
        except ImportError as e:
            raise Unavailable("onnxruntime.quantization: %s" % _first_line(e))
        model = self._export_onnx()
        root = logging.getLogger()
        level = root.level
        with tempfile.TemporaryDirectory() as d:
            src, dst = os.path.join(d, "f32.onnx"), os.path.join(d, "qint8.onnx")
            with open(src, "wb") as f:
                f.write(model)
            root.setLevel(logging.ERROR)  # its advice to pre-process, every call
            try:
                quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
            finally:
                root.setLevel(level)
            proto = onnx.load(dst)
        ops = {n.op_type for n in proto.graph.node}
        if not any(op.startswith("DynamicQuantize") for op in ops):
            raise Unavailable("onnxruntime's quantize_dynamic leaves %s in float32 "
                              "(it quantizes LSTM only)" % self.shape.cell.upper())
        return proto.SerializeToString()

    def _run_ort(self, model=None, engine="ort"):
        ort = self._need_ort()
        s = self.shape
        model = self._export_onnx() if model is None else model
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        try:
            sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        except Exception as e:  # e.g. a dtype ORT's CPU kernels lack
            raise Unavailable("onnxruntime: %s" % _first_line(e, 120))
        if s.mode == "step":
            x1 = np.ascontiguousarray(self.x[:1])
            zeros = np.zeros((1, s.B, s.H), dtype=self.dtype)
            feeds = {"x": x1, "h0": zeros}
            if s.cell == "lstm":
                feeds["c0"] = zeros
            out = sess.run(None, feeds)
            self._record(engine, out[0], out[1:])
            state = {"h0": out[1]}
            if s.cell == "lstm":
                state["c0"] = out[2]
            feeds.update(state)

            def run():
                out = sess.run(None, feeds)
                feeds["h0"] = out[1]
                if s.cell == "lstm":
                    feeds["c0"] = out[2]
            return run
        feeds = {"x": self.x}
        if self.lengths is not None:
            feeds["seq_lens"] = self.lengths.astype(np.int32)
        out = sess.run(None, feeds)  # fail here, not while timing (e.g. dtype unsupported)
        self._record(engine, out[0], out[1:])
        return lambda: sess.run(None, feeds)

    def _export_onnx(self):
        """The torch module as ONNX bytes, fixed shapes. For 'step' the initial
        state is an input; for var-* the RNN node gets a sequence_lens input."""
        torch, s = self.torch, self.shape
        import onnx
        m = self.module.eval()
        x = torch.from_numpy(self.x[:1] if s.mode == "step" else self.x)
        if s.mode == "step":
            h0 = torch.zeros(1, s.B, s.H, dtype=x.dtype)
            if s.cell == "lstm":
                wrapped, args = _state_wrappers()["lstm"](m), (x, h0, h0.clone())
                names, outs = ["x", "h0", "c0"], ["y", "h", "c"]
            else:
                wrapped, args = _state_wrappers()["other"](m), (x, h0)
                names, outs = ["x", "h0"], ["y", "h"]
        else:
            wrapped, args, names = m, (x,), ["x"]
            outs = ["y", "h", "c"] if s.cell == "lstm" else ["y", "h"]
        f = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kw = {"dynamo": False}
            try:
                torch.onnx.export(wrapped, args, f, opset_version=17,
                                  input_names=names, output_names=outs, **kw)
            except TypeError:  # a torch without the dynamo argument
                torch.onnx.export(wrapped, args, f, opset_version=17,
                                  input_names=names, output_names=outs)
        proto = onnx.load_from_string(f.getvalue())
        if self.lengths is not None:
            nodes = [n for n in proto.graph.node if n.op_type in ("LSTM", "GRU", "RNN")]
            if len(nodes) != 1:
                raise Unavailable("onnx export: expected one RNN node, got %d" % len(nodes))
            node = nodes[0]
            while len(node.input) < 5:
                node.input.append("")
            node.input[4] = "seq_lens"  # X, W, R, B, sequence_lens, initial_h[, initial_c]
            proto.graph.input.append(onnx.helper.make_tensor_value_info(
                "seq_lens", onnx.TensorProto.INT32, [s.B]))
        return proto.SerializeToString()

    # -- NumPy floor ------------------------------------------------------
    def _run_numpy(self):
        w = self.weights()
        s = self.shape
        W_ihT = np.ascontiguousarray(w["weight_ih_l0"].T)
        W_hhT = np.ascontiguousarray(w["weight_hh_l0"].T)
        b = (w["bias_ih_l0"] + w["bias_hh_l0"]).astype(self.dtype)
        x, L = self.x, self.lengths
        if s.mode == "step":
            x_t = np.ascontiguousarray(x[0])
            state = [numpy_lstm_step(x_t @ W_ihT + b, W_hhT, None, None)]

            def run():
                xw = x_t @ W_ihT + b
                state[0] = numpy_lstm_step(xw, W_hhT, *state[0])
            return run
        return lambda: numpy_lstm(x, W_ihT, W_hhT, b, L)


def _state_wrappers():
    """torch.nn.Module wrappers that make the initial state an ONNX input;
    made on first use so that this module imports without torch."""
    if _WRAPPERS:
        return _WRAPPERS
    import torch

    class StateLSTM(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x, h0, c0):
            y, (h, c) = self.m(x, (h0, c0))
            return y, h, c

    class StateRNN(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x, h0):
            return self.m(x, h0)

    _WRAPPERS.update(lstm=StateLSTM, other=StateRNN)
    return _WRAPPERS


_WRAPPERS = {}


def _torch_dtype(torch, dtype):
    return {"float32": torch.float32, "float64": torch.float64}[np.dtype(dtype).name]


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def numpy_lstm_step(xw, W_hhT, h, c):
    """One LSTM step: gates = xw + h W_hh^T (i, f, g, o, torch's order);
    c' = f*c + i*g; h' = o*tanh(c'). h, c None means zeros."""
    H = W_hhT.shape[0]
    gates = xw if h is None else xw + h @ W_hhT
    i = _sigmoid(gates[:, :H])
    f = _sigmoid(gates[:, H:2 * H])
    g = np.tanh(gates[:, 2 * H:3 * H])
    o = _sigmoid(gates[:, 3 * H:])
    c_new = i * g if c is None else f * c + i * g
    return o * np.tanh(c_new), c_new


def numpy_lstm(x, W_ihT, W_hhT, b, lengths=None):
    """Plain NumPy LSTM over (T, B, I): one input GEMM, then a loop of steps.
    With lengths, a sequence keeps its state and outputs 0 past its end."""
    T, B, _ = x.shape
    H = W_hhT.shape[0]
    xw = (x.reshape(T * B, -1) @ W_ihT + b).reshape(T, B, 4 * H)
    y = np.empty((T, B, H), dtype=x.dtype)
    h = np.zeros((B, H), dtype=x.dtype)
    c = np.zeros((B, H), dtype=x.dtype)
    for t in range(T):
        h_new, c_new = numpy_lstm_step(xw[t], W_hhT, h, c)
        if lengths is None:
            h, c = h_new, c_new
            y[t] = h
        else:
            active = (t < lengths)[:, None]
            h = np.where(active, h_new, h)
            c = np.where(active, c_new, c)
            y[t] = np.where(active, h_new, 0)
    return y, (h[None], c[None])


# ---------------------------------------------------------------------------
# timing

def _calls_per_repeat(fn, min_time, warmup_time):
    """Warm fn up (at least 2 calls and warmup_time) and return how many calls
    make a repeat of about min_time."""
    times = []
    start = time.perf_counter()
    while len(times) < 2 or time.perf_counter() - start < warmup_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 1000:
            break
    one = max(min(times), 1e-7)
    return max(1, int(min_time / one))


def _one_repeat(fn, number):
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def measure_interleaved(fns, repeat=11, min_time=0.02, warmup_time=0.05, settle=0.25):
    """Median seconds per call of several engines: {name: fn} -> {name:
    median}. Each is warmed up (at least 2 calls and warmup_time), then
    `repeat` repeats of enough calls to last about min_time are taken, the
    engines' repeats in turn (repeat r of every
    engine, then repeat r + 1), so that a machine whose load changes over a
    run slows them alike and their ratio holds. Before each turn the process
    sleeps `settle` seconds: the engine that ran last leaves its thread pool
    spinning for a while (OpenMP's and ORT's wait policies; OpenBLAS's idle
    threads yield-spin for about 0.1 s), which would otherwise take the cores
    from the next one (docs/tuning.md, "The bench's pause between
    engines"). An engine whose call raises
    is left out of the result and its error given back:
    returns (medians, {name: exception}). `measure_spread` gives the
    min/median/max of the same samples."""
    stats, errors = measure_spread(fns, repeat, min_time, warmup_time, settle)
    return {name: st["median"] for name, st in stats.items()}, errors


def measure_spread(fns, repeat=11, min_time=0.02, warmup_time=0.05, settle=0.25):
    """`measure_interleaved`'s samples as {name: {"min", "median", "max"}}
    seconds per call (the spread of the repeats, to show how far a median can
    be trusted); returns (stats, {name: exception})."""
    numbers, errors = {}, {}
    for name, fn in fns.items():
        try:
            numbers[name] = _calls_per_repeat(fn, min_time, warmup_time)
        except Exception as e:
            errors[name] = e
    samples = {name: [] for name in numbers}
    for _ in range(repeat):
        for name in list(samples):
            try:
                if settle > 0 and len(samples) > 1:
                    time.sleep(settle)
                    fns[name]()  # the pool's threads wake up outside the timing
                samples[name].append(_one_repeat(fns[name], numbers[name]))
            except Exception as e:
                errors[name] = e
                del samples[name]
    return {name: {"min": min(v), "median": statistics.median(v), "max": max(v)}
            for name, v in samples.items()}, errors


def sgemm_gflops(n=2048, repeat=5, dtype=np.float32, threads=None):
    """GFLOP/s of an n^3 matrix product (median of repeats) through NumPy,
    or, with threads given, through fastrnn's own GEMM (the CPU backend's
    gemm on fastrnn.get_num_threads() threads: the kernels' packed-panel
    GEMM for float32 where the CPU runs the fast path)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    c = np.empty((n, n), dtype=dtype)
    if threads is None:
        def f():
            np.matmul(a, b, out=c)
    else:
        from fastrnn import backends

        def f():
            backends.get("cpu").gemm(a, b, c, False, False, 1.0, 0.0)
    f()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        samples.append(time.perf_counter() - t0)
    return 2.0 * n ** 3 / statistics.median(samples) / 1e9


# ---------------------------------------------------------------------------
# correctness check (a benchmark of two engines that disagree means nothing)

# The suite's float32 parity claim with torch (tests/conftest.py assert_close):
# rtol 2e-4 and atol 1e-5 of the largest |reference| (a sum of many O(scale)
# terms resolves only to a few float32 ulps of that scale); float64 likewise.
CHECK_TOL = {"float32": (2e-4, 1e-5), "float64": (1e-9, 1e-10)}


class CheckFailed(Exception):
    """fastrnn's results differ from torch's on a shape: its row gets no time."""


def _compare(name, got, ref, dtype, out):
    """Add name's max abs difference to `out`; return the name when it is
    outside CHECK_TOL."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        out[name] = float("inf")
        return name
    rtol, atol = CHECK_TOL[np.dtype(dtype).name]
    scale = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
    out[name] = float(np.max(np.abs(got - ref))) if ref.size else 0.0
    ok = np.allclose(got, ref, rtol=rtol, atol=atol * scale, equal_nan=False)
    return None if ok else name


def check_against_torch(case):
    """fastrnn against torch on this case, the row's own call: the outputs
    and final states (step, infer), and for training also dx and every
    weight gradient of sum(y). Returns {quantity: max abs difference}, or
    None without torch; raises CheckFailed naming each quantity outside
    CHECK_TOL."""
    s, torch = case.shape, case.torch
    if torch is None:
        return None
    m = case.module
    pack = torch.nn.utils.rnn.pack_padded_sequence
    unpack = torch.nn.utils.rnn.pad_packed_sequence
    x = np.ascontiguousarray(case.x[:1] if s.mode == "step" else case.x)
    L = case.lengths
    xt = torch.from_numpy(x.copy())

    def torch_call():
        if L is None:
            y, st = m(xt)
        else:
            y, st = m(pack(xt, torch.from_numpy(L), enforce_sorted=False))
            y = unpack(y, total_length=s.T)[0]
        return y, (st if isinstance(st, tuple) else (st,))

    kw = {} if L is None else {"lengths": L}
    got, ref = {}, {}
    if s.mode == "train":
        m.train()
        m.zero_grad(set_to_none=True)
        xt.requires_grad_(True)
        y, st = torch_call()
        y.sum().backward()
        ref["y"] = y.detach().numpy()
        ref.update({"state%d" % i: a.detach().numpy() for i, a in enumerate(st)})
        ref["dx"] = xt.grad.numpy()
        ref.update({"d" + k: p.grad.numpy().copy() for k, p in m.named_parameters()})
        m.zero_grad(set_to_none=True)
        layer = case.layer
        layer.zero_grad()
        yf, stf = layer.forward(x, **kw)
        dx, _ = layer.backward(np.ones_like(yf))
        got["y"], got["dx"] = yf, dx
        got.update({"d" + k: g.copy() for k, g in layer.grads.items()})
        layer.zero_grad()  # (in place: hence the copies above)
    else:
        m.eval()
        with torch.inference_mode():
            y, st = torch_call()
        ref["y"] = y.numpy()
        ref.update({"state%d" % i: a.numpy() for i, a in enumerate(st)})
        layer = case.infer_layer
        if s.mode == "step":
            yf, stf = layer.step(np.ascontiguousarray(x[0]), None)
            yf = np.asarray(yf)[None]
        else:
            yf, stf = layer(x, **kw)
        got["y"] = yf
    got.update({"state%d" % i: a for i, a in
                enumerate(stf if isinstance(stf, tuple) else (stf,))})
    diffs = {}
    bad = [n for n in ref if _compare(n, got.get(n, np.empty(0)), ref[n], case.dtype, diffs)]
    if bad:
        raise CheckFailed("fastrnn differs from torch beyond rtol %g, atol %g x scale in %s "
                          "(max abs difference %s)" % (
                              CHECK_TOL[case.dtype.name] + (", ".join(bad),
                              ", ".join("%.3g" % diffs[n] for n in bad))))
    return diffs


# --precision's check: each reduced-precision engine's outputs and final
# states against fastrnn's float32 ones on the row's call (those are within
# CHECK_TOL of torch), as fractions of the quantity's largest |float32 value|
# (at least 1): (largest |difference|, mean |difference|). Rounding the
# weights (and for int8 the activations) moves the results by far less; a wrong
# scale, gate, bias or zero point moves them by the order of the values. The
# bounds hold on random weights for bounded, contractive recurrences (torch's
# initialization, as here); a trained model's loss is measured on its data
# (fr.quantization_report, the examples' --precision).
LOW_TOL = {"int8": (0.05, 0.005), "bf16": (0.01, 0.001)}


def reduced_errors(case):
    """Each reduced-precision engine's first call against fastrnn's float32
    results: {engine: {"max_abs", "mean_abs", "max_rel", "mean_rel", "per"}},
    the relative ones divided by the quantity's scale (max(1, max |value|)),
    the worst quantity of y and the final states; "per" gives each quantity's
    (max_abs, mean_abs)."""
    s, layer = case.shape, case.infer_layer
    kw = {} if case.lengths is None else {"lengths": case.lengths}
    if s.mode == "step":
        y, st = layer.step(np.ascontiguousarray(case.x[0]), None)
        y = np.asarray(y)[None]
    else:
        y, st = layer(case.x, **kw)
    ref = [np.asarray(y, np.float64)] + [np.asarray(a, np.float64) for a in
                                          (st if isinstance(st, tuple) else (st,))]
    names = ["y"] + ["state%d" % i for i in range(len(ref) - 1)]
    out = {}
    for engine, (gy, gst) in case.first.items():
        if engine in ENGINES:
            continue
        got = [gy] + list(gst)
        per, worst = {}, [0.0, 0.0, 0.0, 0.0]
        for name, g, r in zip(names, got, ref):
            if g.shape != r.shape:
                per[name] = (float("inf"), float("inf"))
                worst = [float("inf")] * 4
                continue
            d = np.abs(g - r)
            scale = max(1.0, float(np.max(np.abs(r)))) if r.size else 1.0
            m, a = (float(d.max()), float(d.mean())) if d.size else (0.0, 0.0)
            per[name] = (m, a)
            worst = [max(worst[0], m), max(worst[1], a),
                     max(worst[2], m / scale), max(worst[3], a / scale)]
        out[engine] = dict(zip(("max_abs", "mean_abs", "max_rel", "mean_rel"), worst),
                           per=per)
    return out


def check_reduced(case):
    """reduced_errors(case), raising CheckFailed when fastrnn's own
    reduced-precision engine is outside LOW_TOL (the peers' errors are
    reported, never judged)."""
    errors = reduced_errors(case)
    engine = "fastrnn-" + case.precision
    if engine in errors:
        e = errors[engine]
        tol_max, tol_mean = LOW_TOL[case.precision]
        if not (e["max_rel"] <= tol_max and e["mean_rel"] <= tol_mean):
            bad = [n for n, (m, a) in e["per"].items() if not (m < float("inf"))] or \
                list(e["per"])
            raise CheckFailed(
                "fastrnn %s differs from float32 beyond %g (largest) and %g (mean) x scale: "
                "largest %.3g, mean %.3g x scale (%s)" % (
                    case.precision, tol_max, tol_mean, e["max_rel"], e["mean_rel"],
                    ", ".join("%s %.3g/%.3g" % (n, *e["per"][n]) for n in bad)))
    return errors


# ---------------------------------------------------------------------------
# reporting

def _fmt_ms(v):
    if v is None:
        return "-"
    if v >= 100:
        return "%.0f" % v
    if v >= 10:
        return "%.1f" % v
    if v >= 1:
        return "%.2f" % v
    if v >= 0.1:
        return "%.3f" % v
    return "%.4f" % v


def format_table(results, sgemm, precision=None):
    """The results as a text table; with a precision, columns for its engines
    (LOW_ENGINES), fastrnn's reduced-precision speedups against the best
    float32 peer and the best peer of that precision, and its largest
    difference from float32 (x the quantity's scale, reduced_errors)."""
    low = LOW_ENGINES[precision] if precision else ()
    cols = ["name", "cell", "mode", "fastrnn ms", "torch ms", "ORT ms", "numpy ms",
            "speedup", "spread"]
    if precision:
        cols += ["%s ms" % LOW_LABELS[e] for e in low]
        cols += ["%s vs fp32 peer" % precision, "vs %s peer" % precision,
                 "%s err" % precision]
    else:  # (fastrnn float32's rates; with a precision, in the JSON only: width)
        cols += ["GFLOP/s", "% sgemm"]
    rows = []

    def sp(v, who):
        return "-" if v is None else "%.2fx %s" % (v, who)
    for r in results:
        ms = r["ms"]
        mode = r["mode"] + (" var" if r["lengths"] is not None else "")
        if r.get("check") == "FAIL":
            rows.append([r["name"], r["cell"], mode, "FAIL"] + ["-"] * 3 +
                        ["check failed"] + ["-"] * (len(cols) - 8))
            continue
        row = [
            r["name"], r["cell"], mode,
            _fmt_ms(ms.get("fastrnn")), _fmt_ms(ms.get("torch")),
            _fmt_ms(ms.get("ort")), _fmt_ms(ms.get("numpy")),
            sp(r["speedup_vs_best_peer"], r["best_peer"]) +
            (" ?" if r.get("spread_wider_than_gap") else ""),
            _fmt_spread(r, r["best_peer"]),
        ]
        if precision:
            red = r.get("reduced") or {}
            err = ((red.get("errors") or {}).get("fastrnn-" + precision) or {}).get("max_rel")
            row += [_fmt_ms(ms.get(e)) for e in low]
            row += [sp(red.get("speedup_vs_best_float32_peer"), red.get("best_float32_peer")),
                    sp(red.get("speedup_vs_best_reduced_peer"),
                       LOW_LABELS.get(red.get("best_reduced_peer"), "")),
                    "-" if err is None else "%.1e" % err]
        else:
            row += [
                "-" if r["gflops"] is None else "%.1f" % r["gflops"],
                "-" if r["sgemm_share"] is None else "%.0f%%" % (100 * r["sgemm_share"]),
            ]
        rows.append(row)
    widths = [max(len(c), *(len(row[i]) for row in rows)) if rows else len(c)
              for i, c in enumerate(cols)]
    left = {0, 1, 2}

    def line(cells):
        return "  ".join(c.ljust(w) if i in left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    out = [line(cols), line(["-" * w for w in widths])]
    out += [line(row) for row in rows]
    return "\n".join(out)


def _fmt_spread(r, peer):
    """'a%/b%': the (max - min) / median of fastrnn's repeats and the best
    peer's."""
    lo, hi = r.get("ms_min", {}), r.get("ms_max", {})
    out = []
    for e in ("fastrnn", peer):
        if e in lo and e in hi and r["ms"].get(e):
            out.append("%.0f%%" % _spread_pct({"min": lo[e], "max": hi[e],
                                               "median": r["ms"][e]}))
    return "/".join(out) or "-"


def write_png(results, path, subtitle=""):
    """Bar chart of fastrnn's speedup over each peer, log scale. Returns a note
    when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed: no chart written to %s" % path
    names = [r["name"] for r in results]
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(names) + 2), 4.5))
    label = {"torch": "vs PyTorch", "ort": "vs ONNX Runtime", "numpy": "vs NumPy loop"}
    # (label, speedup of a row or None): float32 over each peer, then with
    # --precision the reduced-precision copy over the best float32 peer and
    # over the best peer of its precision
    series = [(label[peer], lambda r, peer=peer: (r["ms"].get(peer) / r["ms"]["fastrnn"]
                                                  if r["ms"].get(peer) and r["ms"].get("fastrnn")
                                                  else None)) for peer in PEERS]
    precision = next((r["precision"] for r in results if r.get("reduced")), None)
    if precision:
        series += [("%s vs best float32 peer" % precision,
                    lambda r: (r.get("reduced") or {}).get("speedup_vs_best_float32_peer")),
                   ("%s vs best %s peer" % (precision, precision),
                    lambda r: (r.get("reduced") or {}).get("speedup_vs_best_reduced_peer"))]
    width = 0.8 / len(series)
    for k, (text, speedup) in enumerate(series):
        xs, ys = [], []
        for j, r in enumerate(results):
            v = speedup(r)
            if v:
                xs.append(j + (k - (len(series) - 1) / 2) * width)
                ys.append(v)
        if xs:
            ax.bar(xs, ys, width, label=text)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    from matplotlib.ticker import FuncFormatter
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: "%gx" % v))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=35, ha="right")
    ax.set_ylabel("speedup of fastrnn (x, log)")
    ax.set_title("fastrnn speedup over peers (higher is better)"
                 + ("\n" + subtitle if subtitle else ""), fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _isa():
    """The vector extensions that matter to the kernels and the peers, as
    this CPU reports them (recorded with every figure)."""
    flags = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    names = [n for n in ("avx2", "fma", "avx512f", "avx512vl", "avx512dq", "avx512bw",
                         "avx512_vnni", "avx512_bf16", "amx_tile") if n in flags]
    return " ".join(names) or platform.machine()


def spread_wider_than_gap(spread, a, b):
    """Whether engine a's or b's spread of repeats (max - min) is wider than
    the gap between their medians: then the order of the two is not settled
    by this run (None when either is missing). spread: {engine: {"min",
    "median", "max"}}."""
    if a not in spread or b not in spread or a == b:
        return None
    sa, sb = spread[a], spread[b]
    width = max(sa["max"] - sa["min"], sb["max"] - sb["min"])
    return bool(width > abs(sa["median"] - sb["median"]))


def _spread_pct(st):
    """(max - min) / median of one engine's repeats, in percent."""
    return 100.0 * (st["max"] - st["min"]) / st["median"] if st and st["median"] else None


def read_steal(path="/proc/stat"):
    """(steal, total) jiffies of all CPUs from /proc/stat (None elsewhere):
    steal is time a hypervisor gave this VM's vCPUs to someone else."""
    try:
        with open(path) as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    vals = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    vals += [0] * (8 - len(vals))
    return vals[7], sum(vals)


def machine_load(steal_start=None):
    """The machine's load with a result: os.getloadavg() and, given the
    read_steal() taken at the start of the run, the share of CPU time stolen
    since then (None where the OS does not say)."""
    out = {"loadavg": None, "steal_share": None, "cpus": os.cpu_count()}
    try:
        out["loadavg"] = [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        pass
    now = read_steal()
    if steal_start is not None and now is not None and now[1] > steal_start[1]:
        out["steal_share"] = round((now[0] - steal_start[0]) / (now[1] - steal_start[1]), 4)
    return out


# OpenBLAS's kernel families (threadpoolctl's "architecture") that use AVX-512
_OPENBLAS_AVX512 = {"skylakex", "cooperlake", "sapphirerapids"}
# ... and those that use neither AVX-512 nor AVX2 (the rest use AVX2)
_OPENBLAS_PRE_AVX2 = {"sandybridge", "nehalem", "core2", "penryn", "dunnington", "atom",
                      "prescott", "katmai", "coppermine", "northwood", "banias", "bulldozer",
                      "piledriver", "opteron", "barcelona", "bobcat", "generic"}


def blas_info():
    """The BLAS libraries loaded in this process as threadpoolctl reports them
    (internal_api, version, architecture: the kernel family OpenBLAS runs,
    threads, file); [] without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keep = ("user_api", "internal_api", "version", "architecture", "num_threads",
            "threading_layer", "filepath")
    return [{k: d.get(k) for k in keep} for d in threadpool_info()]


def blas_warnings(libs, isa):
    """Notes for each BLAS whose kernels are below what the CPU has (isa:
    the _isa() string), naming OPENBLAS_CORETYPE when it is set."""
    flags = set(isa.split())
    best = "avx512f" if "avx512f" in flags else "avx2" if "avx2" in flags else None
    env = os.environ.get("OPENBLAS_CORETYPE")
    out = []
    for lib in libs:
        arch = lib.get("architecture")
        if lib.get("internal_api") != "openblas" or not arch:
            continue
        a = arch.lower()
        capped = ((best == "avx512f" and a not in _OPENBLAS_AVX512) or
                  (best == "avx2" and a in _OPENBLAS_PRE_AVX2))
        if capped:
            out.append("%s (OpenBLAS %s) runs its %s kernels on a CPU with %s%s: GEMMs "
                       "through it are slower than this machine allows" % (
                           os.path.basename(lib.get("filepath") or "?"), lib.get("version"),
                           arch, {"avx512f": "AVX-512", "avx2": "AVX2"}[best],
                           " (OPENBLAS_CORETYPE=%s is set; unset it for the CPU's own "
                           "kernels)" % env if env else ""))
    if env and not out:
        out.append("OPENBLAS_CORETYPE=%s: NumPy's OpenBLAS runs those kernels, whatever "
                   "this CPU has" % env)
    return out


def format_machine(libs, load):
    """One header line: the BLAS kernels and the machine's load."""
    blas = ", ".join(sorted({"%s %s %s" % (d.get("internal_api"), d.get("version"),
                                           d.get("architecture"))
                             for d in libs if d.get("user_api") == "blas"})) or "unknown"
    la = load.get("loadavg")
    st = load.get("steal_share")
    return "BLAS: %s; load average %s on %s CPUs; steal %s" % (
        blas, "/".join("%.2f" % v for v in la) if la else "?", load.get("cpus"),
        "?" if st is None else "%.1f%%" % (100 * st))


def _versions():
    v = {"python": platform.python_version(), "numpy": np.__version__}
    for name in ("fastrnn", "torch", "onnxruntime", "onnx"):
        mod = sys.modules.get(name) or _try_import(name)
        if mod is not None:
            v[name] = getattr(mod, "__version__", "?")
    return v


# ---------------------------------------------------------------------------
# main

def _first_line(e, limit=200):
    """The gist of an exception message (ORT's are long and multi-line)."""
    text = str(e).strip()
    for marker in ("Status Message:", "] : "):
        if marker in text:
            text = text.split(marker)[-1].strip()
    return text.splitlines()[0][:limit] if text else ""


PRECISION_NOTES = {
    "int8": "--precision int8: fastrnn int8 = layer.freeze(weights='int8'); torch qint8 = "
            "torch.ao.quantization.quantize_dynamic(qint8) (LSTM, GRU); ORT qint8 = "
            "onnxruntime.quantization.quantize_dynamic (DynamicQuantizeLSTM: LSTM only)",
    "bf16": "--precision bf16: fastrnn bf16 = layer.freeze(weights='bf16'); torch fp16 = "
            "torch.ao.quantization.quantize_dynamic(float16) (LSTM, GRU); torch bf16 = "
            "the module in bfloat16 (weights and activations)",
}


def precision_kernels(precision):
    """Which of fastrnn's reduced-precision products run here (recorded with
    the figures): the instruction and its ISA, or the portable loops."""
    import fastrnn as fr
    return fr.backends.get("cpu").quant_kernels(precision)


def precision_refused(precision):
    """None when this fastrnn freezes layers with `precision` weights, else
    why not (the bench then refuses the option before timing anything)."""
    import fastrnn as fr
    try:
        frozen = fr.LSTM(3, 4, seed=0).freeze(weights=precision)
    except TypeError as e:
        if "weights" in str(e):
            return "this fastrnn has no layer.freeze(weights=...) (reduced-precision " \
                   "inference is not built in)"
        raise
    except (ValueError, NotImplementedError) as e:
        return "fastrnn refuses it: %s" % _first_line(e)
    got = getattr(frozen, "weights_precision", None)
    if got != precision:
        return "layer.freeze(weights=%r) gave weights_precision %r" % (precision, got)
    return None


def run_shape(shape, engines, dtype, threads, repeat, min_time, progress, notes, skipped,
              freeze=True, precision=None):
    """Check and time one shape: (case, {engine: ms}, check detail, reduced
    detail). The reduced detail is None without --precision (or for training
    rows), else {"errors": reduced_errors} or {"failed": reason}."""
    case = Case(shape, dtype=dtype, threads=threads, freeze=freeze, precision=precision)

    def fail(e):
        reason = "%s: %s" % (type(e).__name__, _first_line(e, 400))
        notes.append("%s: FAIL, not timed: %s" % (shape.name, reason))
        progress("    FAIL: %s" % reason)
        return reason
    # a benchmark of two engines that disagree means nothing: a row whose
    # check fails (or cannot run) is not timed, and is reported as FAIL
    try:
        diffs = check_against_torch(case)
    except Exception as e:
        return case, {}, {"failed": fail(e)}, None
    diff = None if diffs is None else {"max_abs_diff": max(diffs.values()), "per": diffs}
    fns = {}
    for engine in engines:
        if not applicable(shape, engine):
            continue
        try:
            fns[engine] = case.runner(engine)
        except Unavailable as e:
            skipped.setdefault((engine, str(e)), []).append(shape.name)
        except Exception as e:
            if engine.startswith("fastrnn"):  # fastrnn's own failure fails the row
                fns.clear()
                return case, {}, {"failed": fail(e)}, None
            reason = "%s: %s" % (type(e).__name__, _first_line(e))
            skipped.setdefault((engine, reason), []).append(shape.name)
            progress("    %-8s failed: %s" % (engine, reason))
    low = None
    if precision and shape.mode != "train":
        try:
            low = {"errors": check_reduced(case)}
        except Exception as e:
            fns.clear()
            reason = fail(e)
            return case, {}, {"failed": reason}, {"failed": reason}
    try:
        stats, errors = measure_spread(fns, repeat=repeat, min_time=min_time)
    finally:
        fns.clear()
        gc.collect()
    for engine, e in errors.items():
        notes.append("%s: %s failed: %s: %s" % (shape.name, engine, type(e).__name__,
                                                 _first_line(e)))
    ms = {}
    case.spread = {}
    for engine in engines:
        if engine in stats:
            st = {k: v * 1e3 for k, v in stats[engine].items()}
            ms[engine] = st["median"]
            case.spread[engine] = st
            progress("    %-12s %s ms (%s .. %s)" % (engine, _fmt_ms(st["median"]),
                                                   _fmt_ms(st["min"]), _fmt_ms(st["max"])))
    return case, ms, diff, low


def reduced_result(precision, ms, low):
    """The --precision part of a row: fastrnn's reduced-precision time, its
    speedups against the best float32 peer, the best peer of the same kind
    (LOW_ENGINES) and its own float32 copy, and the check's errors."""
    engine = "fastrnn-" + precision
    f = ms.get(engine)

    def best(names):
        times = {e: ms[e] for e in names if e in ms}
        b = min(times, key=times.get) if times else None
        return b, (times[b] / f if (b and f) else None)
    b32, s32 = best(PEERS)
    blow, slow = best(LOW_ENGINES[precision][1:])
    return {
        "engine": engine, "ms": f,
        "best_float32_peer": b32, "speedup_vs_best_float32_peer": s32,
        "best_reduced_peer": blow, "speedup_vs_best_reduced_peer": slow,
        "speedup_vs_fastrnn_float32": (ms["fastrnn"] / f) if (f and "fastrnn" in ms) else None,
        "check": None if low is None else "FAIL" if "failed" in low else "ok",
        "tolerance": {"max_rel": LOW_TOL[precision][0], "mean_rel": LOW_TOL[precision][1]},
        "errors": None if low is None else low.get("errors"),
    }


def build_result(shape, ms, diff, sgemm, case, low=None):
    peers = {p: ms[p] for p in PEERS if p in ms}
    best_peer = min(peers, key=peers.get) if peers else None
    f = ms.get("fastrnn")
    gfl = flops(shape)
    gflops = gfl / (f * 1e-3) / 1e9 if f else None
    spread = getattr(case, "spread", {})
    return {
        "ms_min": {e: st["min"] for e, st in spread.items()},
        "ms_max": {e: st["max"] for e, st in spread.items()},
        "spread_wider_than_gap": spread_wider_than_gap(spread, "fastrnn", best_peer),
        "name": shape.name, "cell": shape.cell, "B": shape.B, "T": shape.T,
        "I": shape.I, "H": shape.H, "mode": shape.mode, "table": shape.table,
        "lengths": None if case.lengths is None else case.lengths.tolist(),
        "flop": gfl,
        "ms": ms,
        "best_peer": best_peer,
        "speedup_vs_best_peer": (peers[best_peer] / f) if (f and best_peer) else None,
        "speedup": {p: peers[p] / f for p in peers} if f else {},
        "gflops": gflops,
        "sgemm_share": (gflops / sgemm) if (gflops and sgemm) else None,
        "check": ("FAIL" if diff and "failed" in diff else
                  "not run (no torch)" if diff is None else "ok"),
        "check_detail": diff,  # {"max_abs_diff", "per"} or {"failed"}
        "max_abs_diff_vs_torch": (diff or {}).get("max_abs_diff"),
        "precision": case.precision or "float32",
        "reduced": reduced_result(case.precision, ms, low) if case.precision else None,
    }


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m fastrnn.bench",
        description="Time fastrnn against PyTorch, ONNX Runtime and a NumPy loop "
                    "on the reference shapes (medians; nothing is asserted).")
    p.add_argument("--shapes", default=None,
                   help="comma-separated shape names (default: all; see --list)")
    p.add_argument("--shape", action="append", default=[], metavar="SPEC",
                   help="a shape of your own, cell:B:T:I:H:mode[:var] with mode step, "
                        "infer or train (var: lengths 10..T); repeatable, run after "
                        "--shapes (and alone when --shapes is not given)")
    p.add_argument("--batch", type=int, default=None,
                   help="run the selected reference shapes at this batch size instead")
    p.add_argument("--cell", default=None,
                   help="only these cells: comma-separated of lstm, gru, rnn")
    p.add_argument("--threads", type=int, default=2,
                   help="threads for every engine (default 2)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--repeat", type=int, default=None,
                   help="timed repeats per engine and shape (default 11; 3 with --quick)")
    p.add_argument("--engines", default=",".join(ENGINES),
                   help="comma-separated subset of %s" % ",".join(ENGINES))
    p.add_argument("--json", metavar="PATH", help="write all results as JSON")
    p.add_argument("--png", metavar="PATH", help="bar chart of speedups (needs matplotlib)")
    p.add_argument("--quick", action="store_true",
                   help="a few shapes, few repeats (well under a minute)")
    p.add_argument("--per-call", action="store_true",
                   help="fastrnn infers with the layer itself, packing its weights on "
                        "every call (default: a frozen copy, layer.freeze(), weights "
                        "packed once, as ONNX Runtime's session packs them)")
    p.add_argument("--step-team", action="store_true",
                   help="fastrnn's one-step calls run on its step team "
                        "(fastrnn.set_step_team; default: OpenMP's threads)")
    p.add_argument("--batch-invariant", action="store_true",
                   help="fastrnn runs with fastrnn.set_batch_invariant(True) (a sequence's "
                        "bits independent of its batch); compare with a run without it "
                        "for the switch's cost")
    p.add_argument("--precision", default=None, choices=PRECISIONS,
                   help="also time fastrnn frozen with int8 or bf16 weights "
                        "(layer.freeze(weights=...)) and the peers' reduced-precision "
                        "models (int8: torch qint8 quantize_dynamic, ONNX Runtime "
                        "quantize_dynamic; bf16: torch float16-weight quantize_dynamic, "
                        "torch in bfloat16), beside the float32 engines; each row checks "
                        "fastrnn's reduced results against its float32 ones (LOW_TOL)")
    p.add_argument("--list", action="store_true", help="list the shapes and exit")
    add_model_args(p)
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error("--threads must be >= 1")
    if args.repeat is not None and args.repeat < 1:
        p.error("--repeat must be >= 1")
    if args.precision and args.dtype != "float32":
        p.error("--precision reduces float32 weights: it needs --dtype float32")
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    bad = [e for e in engines if e not in ALL_ENGINES]
    if bad:
        p.error("unknown engine(s) %s; known: %s" % (", ".join(bad), ", ".join(ALL_ENGINES)))
    low = LOW_ENGINES[args.precision] if args.precision else ()
    stray = [e for e in engines if e not in ENGINES and e not in low]
    if stray:
        p.error("engine(s) %s need --precision %s" % (
            ", ".join(stray), " or ".join(sorted({q for q in PRECISIONS for e in stray
                                                 if e in LOW_ENGINES[q]}))))
    # a family (fastrnn, torch, ort) brings its engines of --precision along
    args.engines = [e for e in ENGINES if e in engines] + \
        [e for e in low if e in engines or e.split("-")[0] in engines]
    parse_model_args(p, args)
    if args.models and not (args.shapes or args.shape):
        args.shape_list = []   # --models alone: the model section only
        return args
    if args.shapes:
        names = [n.strip() for n in args.shapes.split(",") if n.strip()]
        try:
            args.shape_list = [get_shape(n) for n in names]
        except ValueError as e:
            p.error(str(e))
    elif args.shape:
        args.shape_list = []
    elif args.quick:
        args.shape_list = [get_shape(n) for n in QUICK_SHAPES]
    else:
        args.shape_list = list(SHAPES)
    if args.batch is not None:
        if args.batch < 1:
            p.error("--batch must be >= 1")
        args.shape_list = [with_batch(sh, args.batch) for sh in args.shape_list]
    try:
        args.shape_list += [parse_custom(spec) for spec in args.shape]
    except ValueError as e:
        p.error(str(e))
    if args.cell:
        cells = [c.strip().lower() for c in args.cell.split(",") if c.strip()]
        bad = [c for c in cells if c not in CELLS]
        if bad:
            p.error("unknown cell(s) %s; known: lstm, gru, rnn" % ", ".join(bad))
        args.shape_list = [s for s in args.shape_list if s.cell in cells]
    if not args.shape_list:
        p.error("no shape selected")
    return args


# ---------------------------------------------------------------------------
# the model section (--models): fastrnn/_bench_models.py

MODEL_ENGINES = ("fastrnn", "torch", "ort")


def add_model_args(p):
    p.add_argument("--models", nargs="?", const="all", default=None, metavar="NAMES",
                   help="time the examples' whole models (sentiment, vowels, co2, charlm; "
                        "comma-separated, default all) against torch running "
                        "fr.to_torch(model) and ONNX Runtime running fr.to_onnx(model); "
                        "without --shapes or --shape, only this section runs")
    p.add_argument("--model-batches", default=None, metavar="B,B,...",
                   help="batch sizes of the model section (default 1,32,256)")


def parse_model_args(p, args):
    from ._bench_models import MODEL_BATCHES, MODELS_BY_NAME
    if args.models is None:
        args.model_list = []
        return
    names = (list(MODELS_BY_NAME) if args.models == "all" else
             [n.strip() for n in args.models.split(",") if n.strip()])
    bad = [n for n in names if n not in MODELS_BY_NAME]
    if bad or not names:
        p.error("--models: unknown model(s) %s; known: %s" % (
            ", ".join(bad) or "(none)", ", ".join(MODELS_BY_NAME)))
    args.model_list = names
    try:
        batches = (MODEL_BATCHES if args.model_batches is None else
                   tuple(int(v) for v in args.model_batches.split(",") if v.strip()))
    except ValueError:
        p.error("--model-batches: expected integers, e.g. 1,32,256")
    if not batches or min(batches) < 1:
        p.error("--model-batches: expected batch sizes >= 1")
    args.model_batch_list = batches


def run_model_section(args, repeat, min_time, progress, notes):
    if not args.model_list:
        return []
    from ._bench_models import run_models
    engines = [e for e in args.engines if e in MODEL_ENGINES]
    for e, pkg in (("torch", "torch"), ("ort", "onnxruntime")):
        if e in engines and _try_import(pkg) is None:
            notes.append("models: %s not run (%s not installed)" % (e, pkg))
            engines.remove(e)
    return run_models(args.model_list, args.model_batch_list, engines, args.threads,
                      measure_spread, repeat, min_time, progress, notes)


def print_model_section(model_results):
    if not model_results:
        return
    from ._bench_models import format_models
    print()
    print("whole models (the examples' models, random weights, full-length sequences): "
          "fastrnn's frozen model call vs torch (fr.to_torch) vs ONNX Runtime "
          "(fr.to_onnx); vs = peer ms / fastrnn ms")
    print(format_models(model_results))


def main(argv=None):
    args = parse_args(argv)
    if args.list:
        print("%-15s %-5s %4s %4s %5s %5s  %s" % ("name", "cell", "B", "T", "I", "H", "mode"))
        for s in SHAPES:
            print("%-15s %-5s %4d %4d %5d %5d  %s%s" % (
                s.name, s.cell, s.B, s.T, s.I, s.H, s.mode,
                ", lengths 10..%d" % s.T if s.var else ""))
        return 0
    repeat = args.repeat or (3 if args.quick else 11)
    min_time = 0.005 if args.quick else 0.02

    def progress(msg):
        print(msg, file=sys.stderr, flush=True)

    if args.precision:
        refused = precision_refused(args.precision)
        if refused:
            print("python -m fastrnn.bench: --precision %s: %s" % (args.precision, refused),
                  file=sys.stderr)
            return 2
    t_start = time.perf_counter()
    steal_start = read_steal()
    notes = set_threads(args.threads)
    from . import set_batch_invariant, set_step_team
    team_was = set_step_team(args.step_team)
    invariant_was = set_batch_invariant(args.batch_invariant)
    skipped = {}  # (engine, reason) -> shape names
    progress("bench: sgemm 2048^3 through NumPy and fastrnn, %d thread(s) ..." % args.threads)
    gemm_dtype = np.float32 if args.dtype == "float32" else np.float64
    sgemm_numpy = sgemm_gflops(repeat=3 if args.quick else 5, dtype=gemm_dtype)
    sgemm_own = sgemm_gflops(repeat=3 if args.quick else 5, dtype=gemm_dtype,
                             threads=args.threads)
    # the share is of the faster of the two: the machine's rate as far as
    # this run can tell (a BLAS told to use older kernels, OPENBLAS_CORETYPE,
    # understates it)
    sgemm = max(sgemm_numpy, sgemm_own)
    progress("bench: sgemm NumPy %.1f, fastrnn %.1f GFLOP/s" % (sgemm_numpy, sgemm_own))
    libs = blas_info()
    notes += blas_warnings(libs, _isa())
    results = []
    n = len(args.shape_list)
    for k, shape in enumerate(args.shape_list, 1):
        progress("bench: [%d/%d] %s (%s B=%d T=%d I=%d H=%d %s%s)" % (
            k, n, shape.name, shape.cell, shape.B, shape.T, shape.I, shape.H,
            shape.mode, " var" if shape.var else ""))
        case, ms, diff, low = run_shape(shape, args.engines, args.dtype, args.threads, repeat,
                                        min_time, progress, notes, skipped,
                                        freeze=not args.per_call, precision=args.precision)
        results.append(build_result(shape, ms, diff, sgemm, case, low))
        del case
        gc.collect()
    model_results = run_model_section(args, repeat, min_time, progress, notes)
    elapsed = time.perf_counter() - t_start
    for (engine, reason), names in skipped.items():
        notes.append("%s not run (%s) on %s" % (
            engine, reason, "every shape" if len(names) == n else ", ".join(names)))

    versions = _versions()
    load = machine_load(steal_start)
    if any(r.get("spread_wider_than_gap") for r in results):
        notes.append("'?' after a speedup: fastrnn's or the best peer's spread of repeats "
                     "(max - min) is wider than the gap between their medians; this run "
                     "does not settle which is faster there")
    print("fastrnn bench: %s (%s), %d thread(s), %s, median of %d repeats, %s"
          % (_cpu_name(), _isa(), args.threads, args.dtype, repeat,
             ", ".join("%s %s" % kv for kv in versions.items())))
    print("fastrnn infers with %s%s" % ("the layer itself (--per-call: weights packed every "
                                        "call)" if args.per_call else
                                        "a frozen copy (layer.freeze(): weights packed once)",
                                        "; one-step calls on the step team (--step-team)"
                                        if args.step_team else "") +
          ("; batch-invariant (--batch-invariant)" if args.batch_invariant else ""))
    print("sgemm 2048^3: NumPy %.1f, fastrnn %.1f GFLOP/s; speedup = best peer ms / "
          "fastrnn ms; GFLOP/s and %% sgemm (of the faster) are fastrnn's"
          % (sgemm_numpy, sgemm_own))
    print(format_machine(libs, load) + "; spread = (max - min) / median of the repeats, "
          "fastrnn/best peer")
    if args.precision:
        print(PRECISION_NOTES[args.precision] + "; fastrnn's %s products: %s; %s err: "
              "fastrnn %s's largest difference from its float32 results x scale (check: "
              "<= %g, mean <= %g)" % ((args.precision, precision_kernels(args.precision))
                                      + (args.precision,) * 2 + LOW_TOL[args.precision]))
    if results:
        print()
        print(format_table(results, sgemm, args.precision))
    print_model_section(model_results)
    if notes:
        print()
        for note in notes:
            print("note: " + note)

    if args.json:
        meta = {"cpu": _cpu_name(), "isa": _isa(),
                "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
                "cores": os.cpu_count(), "threads": args.threads,
                "dtype": args.dtype, "repeat": repeat, "quick": args.quick,
                "fastrnn_infer": "per-call" if args.per_call else "frozen",
                "step_team": args.step_team, "batch_invariant": args.batch_invariant,
                "precision": args.precision,
                "precision_kernels": (precision_kernels(args.precision)
                                      if args.precision else None),
                "reduced_tolerance": (dict(zip(("max_rel", "mean_rel"),
                                               LOW_TOL[args.precision]))
                                      if args.precision else None),
                "sgemm_gflops": sgemm, "sgemm_numpy_gflops": sgemm_numpy,
                "sgemm_fastrnn_gflops": sgemm_own, "versions": versions, "seconds": elapsed,
                "var_length_seed": VAR_LENGTH_SEED, "input_seed": INPUT_SEED,
                "blas": libs, "load": load,
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results, "models": model_results,
                       "notes": notes}, f, indent=1)
        progress("bench: wrote %s" % args.json)
    if args.png:
        note = write_png(results, args.png, "%d thread(s), %s, %s" % (
            args.threads, args.dtype, _cpu_name()))
        if note:
            print("note: " + note)
        else:
            progress("bench: wrote %s" % args.png)
    progress("bench: done in %.1f s" % elapsed)
    set_step_team(team_was)
    set_batch_invariant(invariant_was)
    low_failed = [r["name"] for r in results if (r["reduced"] or {}).get("check") == "FAIL"]
    failed = [r["name"] for r in results if r["check"] == "FAIL" and r["name"] not in low_failed]
    failed += ["model %s B=%d" % (r["model"], r["B"]) for r in model_results
               if isinstance(r["check"], str)]
    if failed:
        print("FAIL: fastrnn differs from torch on %s (not timed; see the notes)"
              % ", ".join(failed))
    if low_failed:
        print("FAIL: fastrnn %s differs from float32 beyond its tolerance on %s (not timed; "
              "see the notes)" % (args.precision, ", ".join(low_failed)))
    return 1 if failed or low_failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # e.g. piped into head
        sys.stderr.close()
        sys.exit(0)
