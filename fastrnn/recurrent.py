"""Recurrent layers with torch.nn.RNN / LSTM / GRU semantics.

    y, (h_n, c_n) = lstm(x, (h0, c0), lengths=lengths)   # inference
    y, state = layer.forward(x, state0, lengths=lengths)  # training forward
    dx, dstate0 = layer.backward(dy, dstate)              # gradients
    y_t, state = layer.step(x_t, state)                   # streaming
    served = layer.freeze()                               # inference copy, packed once

Recurrent layers are Layers (fastrnn.layers) with a sequence state: inside a
model they run through the Layer protocol's apply / apply_backward / step,
batch-first, carrying their state. The arithmetic runs in the kernels of the
layer's backend (fastrnn.backends); LSTM and GRU with zoneout or
recurrent_dropout > 0 run the regularized kernels through fastrnn._regrun.
"""
import math

import numpy as np

from ._cells import num_gates
from ._regrun import RegularizedMixin, _RegCtx
from ._validate import (lengths_array, positive_int, real_array,
                        state_array, to_numpy)
from .layers import Layer, register_builtin, copy_without_ctx, delegate

_MAX_ROWS = 2**31 - 1  # T*B rows of the kernels' GEMMs (fr_check_desc's limit)


def _probability(value, name):
    """A float in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a float in [0, 1), got {value!r}")
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name}: expected a probability in [0, 1), got {value}")
    return value


def _clip_value(clip):
    """None (no clamp) or a positive float: the ONNX `clip` bound of the gate
    pre-activations."""
    if clip is None:
        return None
    if isinstance(clip, bool) or not isinstance(clip, (int, float, np.integer, np.floating)):
        raise TypeError(f"clip: expected None or a positive number, got {clip!r}")
    clip = float(clip)
    if not clip > 0:
        raise ValueError(f"clip: expected None or a number > 0, got {clip}")
    return None if math.isinf(clip) else clip


# Parameters start on 64-byte cache lines: the kernels' vector loads of a
# weight row then never straddle two lines (NumPy aligns to 16 bytes only;
# docs/tuning.md, "Parameters on cache lines").
_ALIGN = 64


def _aligned_empty(shape, dtype):
    """np.empty(shape, dtype) whose data starts on a 64-byte line (a view
    into a slightly larger buffer)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buf = np.empty(nbytes + _ALIGN, np.uint8)
    off = (-buf.ctypes.data) % _ALIGN
    return buf[off:off + nbytes].view(dtype).reshape(shape)


def _aligned_copy(a):
    """A C-contiguous copy of `a` on a 64-byte line."""
    out = _aligned_empty(a.shape, a.dtype)
    np.copyto(out, a)
    return out


class RNNBase(RegularizedMixin, Layer):
    """Common machinery of RNN, LSTM and GRU (and LayerNormLSTM): a Layer
    with a sequence state. Parameters live in `params` (torch names and
    shapes), gradients in `grads` (same keys).

    Its own calls are time-major unless batch_first (torch's protocol):
    __call__(x, state, lengths) -> (y, state), forward(x, state0, lengths),
    backward(dy, dstate) -> (dx, dstate0), step(x_t, state). Inside a model
    it runs through the Layer protocol (apply, apply_backward), batch-first.

    zoneout / recurrent_dropout (LSTM, GRU, LayerNormLSTM): see
    fastrnn._regrun; when both are 0 the plain torch-parity kernels run."""

    has_params = True
    carries_state = True

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False,
                 dtype="float32", seed=None, zoneout=0.0, recurrent_dropout=0.0,
                 clip=None, linear_before_reset=True):
        Layer.__init__(self, dtype)
        self.mode = mode
        self.input_size = positive_int(input_size, "input_size")
        self.hidden_size = positive_int(hidden_size, "hidden_size")
        self.num_layers = positive_int(num_layers, "num_layers")
        for name, v in (("bias", bias), ("batch_first", batch_first),
                        ("bidirectional", bidirectional)):
            if not isinstance(v, (bool, np.bool_)):
                raise TypeError(f"{name}: expected a bool, got {type(v).__name__} {v!r}")
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.bidirectional = bool(bidirectional)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float, np.floating)):
            raise TypeError(f"dropout: expected a float in [0, 1), got {dropout!r}")
        dropout = float(dropout)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout}")
        self.dropout = dropout
        self.zoneout = _probability(zoneout, "zoneout")
        self.recurrent_dropout = _probability(recurrent_dropout, "recurrent_dropout")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise TypeError(f"seed: expected an int or None, got {seed!r}")
        self.seed = seed
        self.clip = _clip_value(clip)
        if not isinstance(linear_before_reset, (bool, np.bool_)):
            raise TypeError(f"linear_before_reset: expected a bool, got "
                            f"{type(linear_before_reset).__name__} {linear_before_reset!r}")
        self.linear_before_reset = bool(linear_before_reset)
        if (self.zoneout or self.recurrent_dropout or mode == "LNLSTM") and \
                (self.clip is not None or not self.linear_before_reset):
            raise ValueError("clip and linear_before_reset=False are not available with "
                             "zoneout, recurrent_dropout or LayerNormLSTM (their kernels "
                             "implement torch's cells only)")
        self.num_directions = 2 if self.bidirectional else 1

        # torch's initialisation: every parameter uniform in +-1/sqrt(hidden_size),
        # drawn in torch's parameter order from a generator seeded by `seed`
        self.params = {name: _aligned_empty(shape, self.dtype)
                       for name, shape in self._param_shapes()}
        self.reset_parameters(seed)
        self.grads = {n: _aligned_empty(p.shape, p.dtype) for n, p in self.params.items()}
        for g in self.grads.values():
            g.fill(0)

    def reset_parameters(self, seed=None):
        """Draw every parameter again, in place, as torch initialises them:
        uniform in +-1/sqrt(hidden_size), in torch's parameter order, from a
        generator seeded by `seed` (which also seeds the dropout masks)."""
        self._check_trainable("reset_parameters")
        rng = np.random.default_rng(seed)
        self._dropout_rng = np.random.default_rng(rng.integers(0, 2**63 - 1))
        k = 1.0 / math.sqrt(self.hidden_size)
        for name, shape in self._param_shapes():
            self.params[name][...] = rng.uniform(-k, k, size=shape)

    # ---- structure --------------------------------------------------------
    def _param_shapes(self):
        G, H = num_gates(self.mode), self.hidden_size
        out = []
        for l in range(self.num_layers):
            In = self.input_size if l == 0 else self.num_directions * H
            for sfx in ("", "_reverse")[: self.num_directions]:
                out.append((f"weight_ih_l{l}{sfx}", (G * H, In)))
                out.append((f"weight_hh_l{l}{sfx}", (G * H, H)))
                if self.bias:
                    out.append((f"bias_ih_l{l}{sfx}", (G * H,)))
                    out.append((f"bias_hh_l{l}{sfx}", (G * H,)))
        return out

    def _lists(self, store):
        """Arrays of `store` per kernel index k = layer*D + direction."""
        L, D = self.num_layers, self.num_directions
        names = [f"l{l}{sfx}" for l in range(L) for sfx in ("", "_reverse")[:D]]
        w_ih = [store[f"weight_ih_{n}"] for n in names]
        w_hh = [store[f"weight_hh_{n}"] for n in names]
        if not self.bias:
            return w_ih, w_hh, None, None
        return (w_ih, w_hh, [store[f"bias_ih_{n}"] for n in names],
                [store[f"bias_hh_{n}"] for n in names])

    # what step()'s stepper keeps a copy of (a C struct of options and the
    # params dict): setting one of these refreshes it
    _STEP_OPTIONS = frozenset(("params", "zoneout", "recurrent_dropout",
                               "linear_before_reset", "clip"))

    def __setattr__(self, name, value):
        object.__setattr__(self, name, value)
        if name in RNNBase._STEP_OPTIONS:
            stepper = self.__dict__.get("_stepper")
            if stepper is None:
                return
            if type(self.params) is not dict:
                del self._stepper  # the checked path explains at the next step
                return
            stepper.refresh(self.params, int(self.linear_before_reset), self.clip or 0.0,
                            not self._regularized)

    def __getstate__(self):
        """Copies and pickles leave out the kernel plans and step()'s stepper
        (C pointer tables into this object's own arrays, rebuilt on the next
        call)."""
        state = self.__dict__.copy()
        state.pop("_plans", None)
        state.pop("_stepper", None)
        return state

    def _plan(self, which):
        """The kernel plan of params or grads, rebuilt (and so re-checked)
        only when one of their arrays was replaced by another object."""
        store = self.params if which == "params" else self.grads
        plans = self.__dict__.setdefault("_plans", {})
        order = self.__dict__.get("_plan_order")
        if order is None:
            # parameter names in the order Plan.arrays keeps them
            w_ih, w_hh, b_ih, b_hh = self._lists({n: n for n in store})
            order = w_ih + w_hh + (b_ih + b_hh if self.bias else [])
            self._plan_order = order
        plan = plans.get(which)
        lbr = int(self.linear_before_reset)
        clip = self.clip or 0.0
        if plan is None or not plan.matches(store, order, lbr, clip):
            w_ih, w_hh, b_ih, b_hh = self._lists(store)
            plan = self.backend.rnn_weights(self.mode, w_ih, w_hh, b_ih, b_hh,
                                            self.input_size, self.hidden_size,
                                            self.num_layers, self.num_directions,
                                            which == "grads", lbr, clip)
            plans[which] = plan
        return plan

    @property
    def _is_lstm(self):
        return self.mode == "LSTM"

    @property
    def _regularized(self):
        """Run the regularized kernels (zoneout or recurrent dropout on)."""
        return self.zoneout > 0 or self.recurrent_dropout > 0

    def get_config(self):
        """The constructor's arguments as a JSON-able dict:
        type(layer)(**layer.get_config()) builds the same layer."""
        cfg = dict(input_size=self.input_size, hidden_size=self.hidden_size,
                   num_layers=self.num_layers, bias=self.bias,
                   batch_first=self.batch_first, dropout=self.dropout,
                   bidirectional=self.bidirectional, dtype=self.dtype.name,
                   seed=None if self.seed is None else int(self.seed))
        if self.mode.startswith("RNN"):
            cfg["nonlinearity"] = self.nonlinearity
        else:
            cfg["zoneout"] = self.zoneout
            cfg["recurrent_dropout"] = self.recurrent_dropout
        if self.mode == "GRU":
            cfg["linear_before_reset"] = self.linear_before_reset
        if self.clip is not None:
            cfg["clip"] = self.clip
        return cfg

    # ---- serving ------------------------------------------------------------
    def freeze(self):
        """A copy of this layer for inference only, with its float32 weights
        packed once for the fast kernels: each call then skips packing them
        (what ONNX Runtime does when it loads a model). The results are the
        same bits as this layer's. The copy's parameters are read-only
        arrays of its own (this layer and the arrays anyone holds stay as
        they are); it runs __call__ and step() but not forward()/backward(),
        load_state_dict() or reset_parameters(). A parameter made writeable
        again is made read-only and packed again at the next call. Copies
        and pickles of a frozen layer stay frozen; a frozen model saved with
        model.save() loads as a trainable one."""
        new = copy_without_ctx(self)
        for name, a in new.params.items():
            # arrays of its own, on cache lines (a deep copy is not)
            a = _aligned_copy(a)
            a.flags.writeable = False
            new.params[name] = a
        new._frozen = True
        if not new._regularized:
            new._plan("params").keep_read_only()   # pack now, not at the first call
        return new

    def unfreeze(self):
        """A trainable copy of a frozen layer (writeable parameters of its
        own: a deep copy of an array is writeable); of a trainable layer, a
        plain copy."""
        new = copy_without_ctx(self)
        new._frozen = False
        for store in (new.params, new.grads):
            for name, a in store.items():
                store[name] = _aligned_copy(a)
        return new

    @property
    def frozen(self):
        """True for a copy made by freeze()."""
        return self.__dict__.get("_frozen", False)

    def _check_trainable(self, what):
        if self.__dict__.get("_frozen", False):
            raise RuntimeError(f"{what}: this {type(self).__name__} is frozen for inference "
                               f"(made by freeze(), read-only parameters); call "
                               f"unfreeze() for a trainable copy")

    def __repr__(self):
        extra = ""
        if self.mode.startswith("RNN"):
            extra = f", nonlinearity={self.nonlinearity!r}"
        if self.zoneout or self.recurrent_dropout:
            extra += (f", zoneout={self.zoneout}, "
                      f"recurrent_dropout={self.recurrent_dropout}")
        if not self.linear_before_reset:
            extra += ", linear_before_reset=False"
        if self.clip is not None:
            extra += f", clip={self.clip!r}"
        return (f"{type(self).__name__}({self.input_size}, {self.hidden_size}, "
                f"num_layers={self.num_layers}, bias={self.bias}, "
                f"batch_first={self.batch_first}, dropout={self.dropout}, "
                f"bidirectional={self.bidirectional}, dtype={self.dtype.name!r}{extra})")

    # ---- parameters ---------------------------------------------------------
    def load_state_dict(self, state_dict):
        """Copy parameters from a dict of arrays (NumPy or torch tensors) with
        torch's names; every name and shape is checked first."""
        self._check_trainable("load_state_dict")
        Layer.load_state_dict(self, state_dict)

    # ---- argument handling ----------------------------------------------------
    def _input(self, x):
        """x as a time-major C-contiguous array of the layer dtype, plus T, B."""
        arr = real_array(x, "x", self.dtype)
        layout = "(B, T, input_size)" if self.batch_first else "(T, B, input_size)"
        if arr.ndim != 3:
            raise ValueError(f"x: expected a 3-D array {layout} with input_size="
                             f"{self.input_size}, got shape {arr.shape}")
        if arr.shape[2] != self.input_size:
            raise ValueError(f"x: expected last dimension input_size={self.input_size}, "
                             f"got shape {arr.shape}")
        if self.batch_first:
            arr = arr.transpose(1, 0, 2)
        T, B = arr.shape[0], arr.shape[1]
        if T == 0 or B == 0:
            raise ValueError(f"x: expected at least one time step and one sequence, "
                             f"got shape {tuple(to_numpy(x, 'x').shape)}")
        if T * B > _MAX_ROWS:  # checked before the copy below, which could be huge
            raise ValueError(f"x: T*B = {T}*{B} = {T * B} rows exceed {_MAX_ROWS}, the "
                             "most one kernel call takes (BLAS's 32-bit row count); "
                             "split the batch or the sequence")
        return np.ascontiguousarray(arr), T, B

    def _state(self, state, B, name):
        """(h0, c0) from the user's state: None, an array, or an LSTM tuple."""
        if state is None:
            return None, None
        shape = (self.num_layers * self.num_directions, B, self.hidden_size)
        if self._is_lstm:
            if not isinstance(state, (tuple, list)) or len(state) != 2:
                raise TypeError(f"{name}: an LSTM state is a tuple (h, c) of two arrays "
                                f"of shape {shape}, got {type(state).__name__}")
            h, c = state
            if h is None or c is None:
                raise TypeError(f"{name}: an LSTM state needs both h and c (or pass None)")
            return (state_array(h, f"{name}[0] (h)", shape, self.dtype),
                    state_array(c, f"{name}[1] (c)", shape, self.dtype))
        if isinstance(state, (tuple, list)):
            raise TypeError(f"{name}: a {type(self).__name__} state is one array of shape "
                            f"{shape}, got a {type(state).__name__}")
        return state_array(state, name, shape, self.dtype), None

    def _output(self, y, hn, cn):
        if self.batch_first:
            y = np.ascontiguousarray(y.transpose(1, 0, 2))
        return y, ((hn, cn) if self._is_lstm else hn)

    def _run(self, x, state, lengths, training, state_name):
        if training:
            self._check_trainable("forward")
        xt, T, B = self._input(x)
        h0, c0 = self._state(state, B, state_name)
        lens = lengths_array(lengths, T, B)
        if lens is not None and bool(np.all(lens == T)):
            lens = None  # same semantics, no masking work
        if self._regularized:
            y, hn, cn, cache = self._reg_forward(xt, h0, c0, lens, training)
            return xt, h0, c0, lens, None, y, hn, cn, cache
        mask = None
        if training and self.training and self.dropout > 0 and self.num_layers > 1:
            keep = 1.0 - self.dropout
            shape = (self.num_layers - 1, T, B, self.num_directions * self.hidden_size)
            mask = (self._dropout_rng.random(shape) < keep).astype(self.dtype)
            mask /= self.dtype.type(keep)
        plan = self._plan("params")
        if self.__dict__.get("_frozen", False):
            plan.keep_read_only()
        y, hn, cn, cache = self.backend.rnn_forward(plan, xt, h0, c0, mask, lens, training)
        return xt, h0, c0, lens, mask, y, hn, cn, cache

    # ---- public calls -------------------------------------------------------
    def __call__(self, x, state=None, lengths=None):
        """Inference: keeps nothing for backward, applies no dropout."""
        _, _, _, _, _, y, hn, cn, _ = self._run(x, state, lengths, False, "state")
        return self._output(y, hn, cn)

    def forward(self, x, state0=None, lengths=None):
        """Training forward: keeps what backward() needs."""
        xt, h0, c0, lens, mask, y, hn, cn, cache = self._run(
            x, state0, lengths, True, "state0")
        if xt is x or not xt.flags.owndata:
            xt = xt.copy()  # the caller's memory: it may change before backward()
            if isinstance(cache, _RegCtx):
                cache.inputs[0] = xt
        if lens is not None:
            # padding content is arbitrary (inf, NaN): the kernels never read it
            # forward, but dW_ih = dG^T x spans every row and 0 * inf = NaN
            xt[np.arange(xt.shape[0])[:, None] >= lens[None, :]] = 0
        self._ctx = dict(x=xt, lengths=lens, mask=mask, cache=cache,
                         y_shape=y.shape, has_state=h0 is not None)
        return self._output(y, hn, cn)

    def backward(self, dy, dstate=None):
        """Gradients after the latest forward(): accumulates parameter gradients
        into `grads`, returns (dx, dstate0) shaped like x and state0 (dstate0 is
        None when forward() got no initial state)."""
        ctx = self._ctx
        if ctx is None:
            raise RuntimeError("backward() needs a preceding forward() (each forward "
                               "allows one backward)")
        T, B, DH = ctx["y_shape"]
        y_shape = (B, T, DH) if self.batch_first else (T, B, DH)
        dy = real_array(dy, "dy", self.dtype)
        if dy.shape != y_shape:
            raise ValueError(f"dy: expected the shape of y, {y_shape}, got {dy.shape}")
        if self.batch_first:
            dy = dy.transpose(1, 0, 2)
        dy = np.ascontiguousarray(dy)
        dhn = dcn = None
        if dstate is not None:
            shape = (self.num_layers * self.num_directions, B, self.hidden_size)
            if self._is_lstm:
                if not isinstance(dstate, (tuple, list)) or len(dstate) != 2:
                    raise TypeError("dstate: for an LSTM, a tuple (dh_n, dc_n) "
                                    "(either may be None)")
                dh, dc = dstate
                dhn = None if dh is None else state_array(dh, "dstate[0] (dh_n)", shape, self.dtype)
                dcn = None if dc is None else state_array(dc, "dstate[1] (dc_n)", shape, self.dtype)
            else:
                if isinstance(dstate, (tuple, list)):
                    raise TypeError(f"dstate: one array of shape {shape} for "
                                    f"{type(self).__name__}")
                dhn = state_array(dstate, "dstate", shape, self.dtype)
        if isinstance(ctx["cache"], _RegCtx):
            dx, dh0, dc0 = self._reg_backward(ctx["cache"], dy, dhn, dcn, ctx["has_state"])
        else:
            dx, dh0, dc0 = self.backend.rnn_backward(
                self._plan("params"), self._plan("grads"), ctx["x"], ctx["mask"],
                ctx["lengths"], ctx["cache"], dy, dhn, dcn, ctx["has_state"])
        self._ctx = None
        if self.batch_first:
            dx = np.ascontiguousarray(dx.transpose(1, 0, 2))
        if not ctx["has_state"]:
            return dx, None
        return dx, ((dh0, dc0) if self._is_lstm else dh0)

    # ---- the Layer protocol (inside a model: batch-first) -----------------------
    def apply(self, x, lengths=None, state=None, training=False):
        """The layer on a batch-first sequence (B, T, input_size), as a model
        runs it: (y (B, T, D*hidden_size), final state). A layer built with
        batch_first=False gets the sequence transposed for it."""
        if getattr(x, "ndim", 0) != 3:
            raise ValueError(f"{type(self).__name__}: needs a sequence (B, T, F), got shape "
                             f"{getattr(x, 'shape', None)}")
        xin = x if self.batch_first else np.ascontiguousarray(x.transpose(1, 0, 2))
        if training:
            y, st = self.forward(xin, state, lengths=lengths)
        else:
            y, st = self(xin, state, lengths=lengths)
        return (y if self.batch_first else np.ascontiguousarray(y.transpose(1, 0, 2))), st

    def apply_backward(self, dy):
        """Backward of apply(training=True): d x, batch-first (the gradient of
        the initial state is not needed inside a model)."""
        if not self.batch_first:
            dy = np.ascontiguousarray(dy.transpose(1, 0, 2))
        dx, _ = self.backward(dy)
        return dx if self.batch_first else np.ascontiguousarray(dx.transpose(1, 0, 2))

    def describe_output(self):
        return f"(B, T, {self.num_directions * self.hidden_size})"

    def _reseed_dropout(self, seed):
        self._dropout_rng = np.random.default_rng(seed)

    def step(self, x_t, state=None):
        """One time step of all layers for streaming: x_t (B, input_size) ->
        (y_t (B, hidden_size), state), exactly the full call's outputs."""
        # the per-call path: the backend's stepper, made by the first call,
        # holds the layer's options (refreshed by __setattr__ when they
        # change) and checks in C that everything is exactly what the kernel
        # takes, else returns None; no attribute of the layer is read here
        stepper = self.__dict__.get("_stepper")
        if stepper is not None:
            out = stepper.run(x_t, state)
            if out is not None:
                return out
        return self._step_checked(x_t, state)

    def _step_checked(self, x_t, state):
        """step() with every input converted or explained."""
        if self.bidirectional:
            raise ValueError("step: a bidirectional layer cannot stream (its reverse "
                             "direction needs the whole sequence)")
        arr = x_t
        if not (type(arr) is np.ndarray and arr.dtype == self.dtype and arr.ndim == 2
                and arr.flags.c_contiguous):
            arr = np.ascontiguousarray(real_array(x_t, "x_t", self.dtype))
        if arr.ndim != 2 or arr.shape[1] != self.input_size:
            raise ValueError(f"x_t: expected shape (B, input_size={self.input_size}), "
                             f"got {arr.shape}")
        B = arr.shape[0]
        if B == 0:
            raise ValueError("x_t: expected at least one sequence (B >= 1)")
        xt = arr.reshape(1, B, self.input_size)  # a view: arr is C-contiguous
        is_lstm = self._is_lstm
        if not self._state_ok(state, B):
            state = self._state(state, B, "state")
            if not is_lstm:
                state = state[0]
        if is_lstm:
            h0, c0 = (None, None) if state is None else state
        else:
            h0, c0 = state, None
        if self._regularized:
            return self._reg_step(xt, h0, c0)
        plan = self._plan("params")
        backend = self.backend
        y, hn, cn, _ = backend.rnn_forward(plan, xt, h0, c0, None, None, False)
        out = (hn, cn) if is_lstm else hn
        stepper = self.__dict__.get("_stepper")
        if (stepper is None or stepper.plan is not plan) and type(self.params) is dict:
            self._stepper = backend.rnn_stepper(plan, self.params, self._plan_order)
        return y[0], out

    # ---- interchange ----------------------------------------------------------
    def to_onnx(self, path=None, lengths=False, initial_state=False, opset=17):
        """Export to ONNX (needs the onnx package): one ONNX RNN/LSTM/GRU node
        per layer. Inputs "input" [, "lengths" (B,) int64] [, "h0"[, "c0"]],
        outputs "output", "h_n"[, "c_n"]; written to `path` when given.
        Returns the onnx.ModelProto. fr.to_onnx(self, ...) is the same call
        (fastrnn.formats.onnx.export_layer)."""
        return delegate("to_onnx")(self, path, lengths=lengths,
                                   initial_state=initial_state, opset=opset)

    def to_torch(self):
        """The equivalent torch.nn.RNN/LSTM/GRU with the weights copied (needs
        torch). fr.to_torch(self) is the same call (fastrnn.formats.torch)."""
        return delegate("to_torch")(self)

    def _state_ok(self, state, B):
        """Cheap test that a state is already exactly what the kernel takes
        (as step() returns it), so streaming skips the full conversion."""
        if state is None:
            return True
        shape = (self.num_layers * self.num_directions, B, self.hidden_size)
        parts = state if self._is_lstm else (state,)
        if self._is_lstm and (type(state) is not tuple or len(state) != 2):
            return False
        for a in parts:
            if not (type(a) is np.ndarray and a.dtype == self.dtype and a.shape == shape
                    and a.flags.c_contiguous):
                return False
        return True


class RNN(RNNBase):
    """Elman RNN, h' = act(W_ih x + b_ih + W_hh h + b_hh), act tanh or relu.

    clip: None, or a bound c > 0: the pre-activation is clamped to [-c, c]
    first (ONNX's `clip` attribute)."""

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh",
                 bias=True, batch_first=False, dropout=0.0, bidirectional=False,
                 dtype="float32", seed=None, clip=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU",
                         input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, dtype, seed, clip=clip)


class LSTM(RNNBase):
    """LSTM with torch's gates i, f, g, o.

    clip: None, or a bound c > 0: the four gate pre-activations are clamped to
    [-c, c] before their sigmoid/tanh (ONNX's `clip`; the cell state is not).

    zoneout (p): in training each unit of h keeps its previous value with
    probability p at each step (h_t = m*h_{t-1} + (1-m)*h~_t, m ~ Bernoulli(p), c unaffected);
    in inference h_t = p*h_{t-1} + (1-p)*h~_t. recurrent_dropout (p): in
    training one mask per (sequence, unit), fixed over time, multiplies h_{t-1}
    before W_hh, scaled by 1/(1-p); none in inference. Both 0 (default): torch's
    LSTM exactly. The masks come from the layer's seeded generator.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False,
                 dtype="float32", seed=None, zoneout=0.0, recurrent_dropout=0.0, clip=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias,
                         batch_first, dropout, bidirectional, dtype, seed,
                         zoneout=zoneout, recurrent_dropout=recurrent_dropout, clip=clip)


class GRU(RNNBase):
    """GRU with torch's gates r, z, n.

    linear_before_reset=True (torch, the default): n = tanh(W_in x + b_in +
    r * (W_hn h + b_hn)). False (ONNX linear_before_reset=0, Keras
    reset_after=False): n = tanh(W_in x + b_in + W_hn (r * h) + b_hn); this
    variant runs in the portable kernels (not the AVX2 fast path).
    clip: None, or a bound c > 0 for the gate pre-activations (ONNX `clip`).

    zoneout (p): in training each unit of h keeps its previous value with
    probability p at each step (h_t = m*h_{t-1} + (1-m)*h~_t, m ~ Bernoulli(p));
    in inference h_t = p*h_{t-1} + (1-p)*h~_t. recurrent_dropout (p): in
    training one mask per (sequence, unit), fixed over time, multiplies h_{t-1}
    before W_hh, scaled by 1/(1-p); none in inference. Both 0 (default): torch's
    GRU exactly. The masks come from the layer's seeded generator.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False,
                 dtype="float32", seed=None, zoneout=0.0, recurrent_dropout=0.0,
                 linear_before_reset=True, clip=None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias,
                         batch_first, dropout, bidirectional, dtype, seed,
                         zoneout=zoneout, recurrent_dropout=recurrent_dropout, clip=clip,
                         linear_before_reset=linear_before_reset)


register_builtin(RNN, LSTM, GRU)
