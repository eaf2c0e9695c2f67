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

from . import _generic
from . import _precision
from ._cells import num_gates
from ._regrun import RegularizedMixin, _RegCtx
from ._validate import (lengths_array, numeric_array, positive_int, real_array,
                        state_array, to_numpy, warn_lossy_cast)
from .layers import Layer, register_builtin, copy_without_ctx, delegate

# an embedding's projection tables (RNNBase._rows_tables) past this size cost
# more memory than the projection they save is worth
_ROWS_MAX_BYTES = 64 << 20
_MAX_ROWS = 2**31 - 1  # T*B rows of the kernels' GEMMs (fr_check_desc's limit)
# the keywords of a backend forward (backward): y written (dy read) (B, T, F),
# or time-major
_Y_BATCH_FIRST, _Y_TIME_MAJOR = {"batch_first": True}, {}


def _flag(v, name):
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(v).__name__} {v!r}")
    return bool(v)


def _tuple(v):
    return None if v is None else tuple(v)


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
    """Common machinery of RNN, LSTM and GRU (and LayerNormLSTM): a Layer with a sequence state.

    Parameters live in ``params`` (torch names and shapes), gradients in ``grads``
    (same keys). Its own calls are time-major unless batch_first (torch's
    protocol): ``__call__(x, state, lengths) -> (y, state)``,
    ``forward(x, state0, lengths)``, ``backward(dy, dstate) -> (dx, dstate0)``,
    ``step(x_t, state)``. Inside a model it runs through the Layer protocol
    (`apply`, `apply_backward`), batch-first. With zoneout and
    recurrent_dropout both 0 the plain torch-parity kernels run. The subclasses'
    docstrings give the shapes.

    Parameters
    ----------
    mode : {"RNN_TANH", "RNN_RELU", "LSTM", "GRU", "LNLSTM"}
        The cell.
    input_size : int
        I, the number of features of each step of x.
    hidden_size : int
        H, the number of units of the hidden state h (and of c for the LSTM).
    num_layers : int, default 1
        L, stacked layers; layer l > 0 reads the D*H outputs of layer l-1.
    bias : bool, default True
        Whether the layers have the biases b_ih and b_hh.
    batch_first : bool, default False
        Take and return x and y as (B, T, ...) instead of (T, B, ...); the states
        are (D*L, B, H) either way, as in torch.
    dropout : float, default 0.0
        In [0, 1): dropout on the outputs of each layer but the last, in
        training (`forward`) only.
    bidirectional : bool, default False
        Run a second direction over the reversed sequences: D = 2.
    dtype : {"float32", "float64"}, default "float32"
        The dtype of the parameters, the inputs and the outputs.
    seed : int, optional
        Seeds the initial weights (torch's uniform(-1/sqrt(H), 1/sqrt(H))) and
        the dropout masks; None draws fresh ones.
    zoneout : float, default 0.0
        In [0, 1): in training each unit of h keeps its previous value with
        probability p at each step; in inference h_t = p h_{t-1} + (1-p) h~_t.
    recurrent_dropout : float, default 0.0
        In [0, 1): in training one mask per (sequence, unit), fixed over time,
        multiplies h_{t-1} before W_hh, scaled by 1/(1-p).
    clip : float, optional
        A bound c > 0: the gate pre-activations are clamped to [-c, c] (ONNX's
        ``clip`` attribute); None: no clamping.
    linear_before_reset : bool, default True
        GRU only: torch's candidate (True) or ONNX's linear_before_reset=0 /
        Keras's reset_after=False (False).
    proj_size : int, default 0
        torch's proj_size: 0 < P < hidden_size projects h = W_hr (o * tanh(c)),
        so h, y and the layers above have P features (c keeps hidden_size).
    peepholes : bool, default False
        Peephole weights ``peephole_l{k}`` (3*H,), blocks (i, f, o): the gates
        i, f see c_{t-1}, o sees c_t (ONNX's P, whose blocks are (i, o, f)).
    input_forget : bool, default False
        Couple the gates: f = 1 - i (ONNX input_forget=1).
    activations : list of str, optional
        ONNX's activation functions by name (any case: "Sigmoid", "Tanh",
        "Relu", "Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh",
        "HardSigmoid", "Elu", "Softsign", "Softplus"), one per ONNX slot
        (LSTM f, g, h; GRU f, g; RNN f), or twice that for a bidirectional layer (forward then
        reverse); None: the cell's own. docs/variants.md.
    activation_alpha, activation_beta : list of float, optional
        Aligned with activations (None entries: ONNX's defaults).
    padding : {"zeros", "carry"}, default "zeros"
        Outputs at invalid steps (past a length, or masked out): 0, or the
        last valid output ("carry", as Keras; 0 before the first valid step).

    Examples
    --------
    >>> import fastrnn as fr
    >>> all(issubclass(c, fr.RNNBase) for c in (fr.RNN, fr.LSTM, fr.GRU, fr.LayerNormLSTM))
    True
    """

    has_params = True
    carries_state = True
    _params_contiguous = True   # the kernels read C-contiguous weights only

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False,
                 dtype="float32", seed=None, zoneout=0.0, recurrent_dropout=0.0,
                 clip=None, linear_before_reset=True, proj_size=0, peepholes=False,
                 input_forget=False, activations=None, activation_alpha=None,
                 activation_beta=None, padding="zeros"):
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
        self._init_variants(proj_size, peepholes, input_forget, activations,
                            activation_alpha, activation_beta, padding)

        # torch's initialisation: every parameter uniform in +-1/sqrt(hidden_size),
        # drawn in torch's parameter order from a generator seeded by `seed`
        self.params = {name: _aligned_empty(shape, self.dtype)
                       for name, shape in self._param_shapes()}
        self.reset_parameters(seed)
        self.grads = {n: _aligned_empty(p.shape, p.dtype) for n, p in self.params.items()}
        for g in self.grads.values():
            g.fill(0)

    def reset_parameters(self, seed=None):
        """Draw every parameter again, in place, as torch initialises them.

        Uniform in +-1/sqrt(hidden_size), in torch's parameter order.

        Parameters
        ----------
        seed : int, optional
            Seeds the generator (which also seeds the dropout masks).

        Raises
        ------
        RuntimeError
            On a frozen layer.
        """
        self._check_trainable("reset_parameters")
        rng = np.random.default_rng(seed)
        self._dropout_rng = np.random.default_rng(rng.integers(0, 2**63 - 1))
        k = 1.0 / math.sqrt(self.hidden_size)
        for name, shape in self._param_shapes():
            self.params[name][...] = rng.uniform(-k, k, size=shape)

    def _init_variants(self, proj_size, peepholes, input_forget, activations,
                       activation_alpha, activation_beta, padding):
        """Check and keep the options the NumPy engine (fastrnn._generic) runs."""
        lstm = self.mode == "LSTM"
        self.proj_size = positive_int(proj_size, "proj_size", minimum=0)
        if self.proj_size and not lstm:
            raise ValueError(f"proj_size: only LSTM layers project h (torch's proj_size), "
                             f"this is a {type(self).__name__}")
        if self.proj_size >= self.hidden_size:
            raise ValueError(f"proj_size: expected 0 <= proj_size < hidden_size="
                             f"{self.hidden_size}, got {self.proj_size}")
        for name, v in (("peepholes", peepholes), ("input_forget", input_forget)):
            if not isinstance(v, (bool, np.bool_)):
                raise TypeError(f"{name}: expected a bool, got {type(v).__name__} {v!r}")
            if v and not lstm:
                raise ValueError(f"{name}: only LSTM layers have {name}, this is a "
                                 f"{type(self).__name__}")
        self.peepholes = bool(peepholes)
        self.input_forget = bool(input_forget)
        if self.mode == "LNLSTM" and activations is not None:
            raise ValueError("activations: not available with LayerNormLSTM")
        slots_mode = self.mode if self.mode in _generic.SLOTS else "LSTM"
        acts, alphas, betas = _generic.normalize_activations(
            slots_mode, activations, activation_alpha, activation_beta, self.num_directions)
        self.activations = None if acts is None else list(acts)
        self.activation_alpha = None if alphas is None else list(alphas)
        self.activation_beta = None if betas is None else list(betas)
        if padding not in ("zeros", "carry"):
            raise ValueError(f"padding: expected 'zeros' or 'carry', got {padding!r}")
        self.padding = padding
        on = [n for n, v in (("proj_size", self.proj_size), ("peepholes", self.peepholes),
                             ("input_forget", self.input_forget),
                             ("activations", self.activations is not None),
                             ("padding='carry'", padding == "carry")) if v]
        if on and (self._regularized or self.mode == "LNLSTM"):
            raise ValueError(f"{', '.join(on)}: not available with zoneout, recurrent_dropout "
                             f"or LayerNormLSTM (their kernels implement torch's cells only)")

    @property
    def _variant(self):
        """The layer's own options need the NumPy engine (fastrnn._generic)."""
        d = self.__dict__
        if d.get("proj_size") or d.get("peepholes") or d.get("input_forget"):
            return True
        acts = d.get("activations")
        return acts is not None and self.mode in _generic.SLOTS and \
            not _generic.is_default_activations(self.mode, tuple(acts),
                                                _tuple(d.get("activation_alpha")),
                                                _tuple(d.get("activation_beta")),
                                                self.num_directions)

    @property
    def _out_size(self):
        """Hr: the width of h and of each direction's output (proj_size or H)."""
        return self.__dict__.get("proj_size") or self.hidden_size

    def _spec(self):
        """The engine's view of this layer (fastrnn._generic.Spec)."""
        mode = self.mode
        return _generic.Spec(
            mode=mode, H=self.hidden_size, P=self.proj_size, L=self.num_layers,
            D=self.num_directions, bias=self.bias, lbr=self.linear_before_reset,
            clip=self.clip, peepholes=self.peepholes, input_forget=self.input_forget,
            acts=_generic.resolve_activations(mode, _tuple(self.activations),
                                              _tuple(self.activation_alpha),
                                              _tuple(self.activation_beta),
                                              self.num_directions),
            carry=self.padding == "carry")

    # ---- structure --------------------------------------------------------
    def _param_shapes(self):
        G, H = num_gates(self.mode), self.hidden_size
        Hr = self._out_size
        P = self.__dict__.get("proj_size", 0)
        peep = self.__dict__.get("peepholes", False)
        out = []
        for l in range(self.num_layers):
            In = self.input_size if l == 0 else self.num_directions * Hr
            for sfx in ("", "_reverse")[: self.num_directions]:
                out.append((f"weight_ih_l{l}{sfx}", (G * H, In)))
                out.append((f"weight_hh_l{l}{sfx}", (G * H, Hr)))
                if self.bias:
                    out.append((f"bias_ih_l{l}{sfx}", (G * H,)))
                    out.append((f"bias_hh_l{l}{sfx}", (G * H,)))
                if P:   # torch's name and place
                    out.append((f"weight_hr_l{l}{sfx}", (P, H)))
                if peep:  # (i, f, o) blocks of H
                    out.append((f"peephole_l{l}{sfx}", (3 * H,)))
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
        state.pop("_qplan", None)
        state.pop("_rows", None)
        return state

    def _plan(self, which):
        """The kernel plan of params or grads, rebuilt (and so re-checked)
        only when one of their arrays was replaced by another object."""
        store = self.params if which == "params" else self.grads
        plans = self.__dict__.setdefault("_plans", {})
        order = self.__dict__.get("_plan_order")
        if order is None:
            # parameter names in the order Plan.arrays keeps them
            w_ih, w_hh, b_ih, b_hh = self._lists({n: n for n, _ in self._param_shapes()})
            order = w_ih + w_hh + (b_ih + b_hh if self.bias else [])
            self._plan_order = order
        plan = plans.get(which)
        lbr = int(self.linear_before_reset)
        clip = self.clip or 0.0
        if plan is None or not plan.matches(store, order, lbr, clip):
            self._check_arrays(which)   # a replaced array is explained by its own name
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
        """Return the constructor's arguments as a JSON-able dict.

        Returns
        -------
        dict
            ``type(layer)(**layer.get_config())`` builds the same layer.
        """
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
        cfg.update(self._variant_config())
        return cfg

    def _variant_config(self):
        """The variants' constructor options that differ from their defaults."""
        d = self.__dict__
        cfg = {}
        if d.get("proj_size"):
            cfg["proj_size"] = self.proj_size
        if d.get("peepholes"):
            cfg["peepholes"] = True
        if d.get("input_forget"):
            cfg["input_forget"] = True
        for k in ("activations", "activation_alpha", "activation_beta"):
            if d.get(k) is not None:
                cfg[k] = list(d[k])
        if d.get("padding", "zeros") != "zeros":
            cfg["padding"] = self.padding
        return cfg

    # ---- serving ------------------------------------------------------------
    def freeze(self, weights="float32"):
        """Return a copy of this layer for inference only, its weights packed once.

        Each call then skips packing them (what ONNX Runtime does when it loads a
        model). With ``weights="float32"`` the results are the same bits as this
        layer's. ``"int8"`` and ``"bf16"`` keep narrower weights and run the
        reduced-precision kernels (docs/quantization.md): int8 weights with one
        scale per output row and activations quantized per row at run time, or
        bfloat16 weights with float32 arithmetic; gates, biases and states stay
        float32. The copy's parameters are read-only arrays of its own (for int8
        and bf16, the float32 values of the narrow weights); it runs calls, `step`
        and lengths/states but not `forward`/`backward`, `load_state_dict` or
        `reset_parameters`. Copies and pickles of a frozen layer stay frozen; a
        frozen model saved with ``model.save()`` loads as a trainable one (int8
        and bf16: as a frozen one of the same precision).

        Parameters
        ----------
        weights : {"float32", "int8", "bf16"}, default "float32"
            The precision of the frozen weights (``weights_precision``).

        Returns
        -------
        RNNBase
            The frozen copy.

        Raises
        ------
        ValueError
            For int8 or bf16 on a layer the reduced-precision kernels do not run
            (float64, zoneout, recurrent_dropout, LayerNormLSTM, clip,
            linear_before_reset=False or the NumPy engine's variants), or an
            unknown `weights`.
        TypeError
            For a `weights` that is not a string.

        Examples
        --------
        >>> import numpy as np, fastrnn as fr
        >>> lstm = fr.LSTM(8, 16, seed=0, batch_first=True)
        >>> q = lstm.freeze(weights="int8")
        >>> q.weights_precision
        'int8'
        >>> x = np.random.default_rng(0).standard_normal((2, 5, 8)).astype(np.float32)
        >>> y, _ = q(x)
        >>> bool(np.abs(y - lstm(x)[0]).max() < 0.05)
        True
        """
        precision = _precision.check_precision(weights)
        if precision != "float32":
            why = self._quant_refusal()
            if why:
                raise ValueError(f"weights={precision!r}: the {precision} kernels run the "
                                 f"plain float32 {type(self).__name__} only; {why}")
        q = self._quantize(precision) if precision != "float32" else None
        return self._freeze_narrow(precision, q)

    def _freeze_narrow(self, precision, q):
        """The frozen copy with narrow weights `q` (names as in params, int8
        row scales under NAME.scale), as freeze made them or fr.load read them."""
        new = copy_without_ctx(self)
        new.__dict__.pop("_qweights", None)
        new.__dict__.pop("_qplan", None)
        if precision != "float32":
            if precision == "int8":
                for n, a in q.items():
                    if not n.endswith(".scale") and a.size and int(np.abs(
                            a.astype(np.int16)).max()) > 127:
                        raise ValueError(f"{n}: int8 weights must lie in [-127, 127]")
            new._qweights = dict(q)
            for n, a in q.items():
                if not n.endswith(".scale"):
                    new.params[n] = _precision.dequantize(precision, a, q.get(n + ".scale"))
        for name, a in new.params.items():
            # arrays of its own, on cache lines (a deep copy is not)
            a = _aligned_copy(a)
            a.flags.writeable = False
            new.params[name] = a
        new._frozen = True
        new._precision = precision
        if precision != "float32":
            new._get_qplan()                      # pack now, not at the first call
        elif not new._regularized and not new._variant:
            new._plan("params").keep_read_only()   # pack now, not at the first call
        return new

    def _quant_refusal(self):
        """Why the int8/bf16 kernels cannot run this layer ('' when they can)."""
        if self.mode == "LNLSTM":
            return "LayerNormLSTM is not available"
        if self.dtype != np.float32:
            return f"this layer is {self.dtype.name}"
        if self._regularized:
            return "zoneout and recurrent_dropout are not available"
        if self.clip is not None:
            return "clip is not available"
        if not self.linear_before_reset:
            return "linear_before_reset=False is not available"
        if self._variant or self.__dict__.get("padding", "zeros") != "zeros":
            return ("proj_size, peepholes, input_forget, activations and padding='carry' "
                    "are not available")
        return ""

    def _quantize(self, precision):
        """The narrow weights (what the kernels and fr.save take): params'
        names, and int8's row scales under NAME.scale."""
        q = {}
        for name, a in self.params.items():
            if not name.startswith("weight_"):
                continue
            if precision == "int8":
                q[name], q[name + ".scale"] = _precision.quantize_int8(a)
            else:
                q[name] = _precision.to_bf16(a)
        return q

    def _get_qplan(self):
        """The kernels' handle on the narrow weights (rebuilt after a copy)."""
        plan = self.__dict__.get("_qplan")
        if plan is None:
            q, prec = self._qweights, self._precision
            names = [f"l{l}{sfx}" for l in range(self.num_layers)
                     for sfx in ("", "_reverse")[: self.num_directions]]
            scales = prec == "int8"
            plan = self.backend.rnn_qweights(
                self.mode, prec, [q[f"weight_ih_{n}"] for n in names],
                [q[f"weight_hh_{n}"] for n in names],
                [q[f"weight_ih_{n}.scale"] for n in names] if scales else None,
                [q[f"weight_hh_{n}.scale"] for n in names] if scales else None,
                [self.params[f"bias_ih_{n}"] for n in names] if self.bias else None,
                [self.params[f"bias_hh_{n}"] for n in names] if self.bias else None,
                self.input_size, self.hidden_size, self.num_layers, self.num_directions)
            self._qplan = plan
        return plan

    @property
    def weights_precision(self):
        """"int8" or "bf16" on a copy frozen with them, else "float32"."""
        return self.__dict__.get("_precision", "float32")

    @property
    def _quantized(self):
        return self.__dict__.get("_precision", "float32") != "float32"

    def unfreeze(self):
        """Return a trainable copy of a frozen layer (of a trainable layer, a plain copy).

        Returns
        -------
        RNNBase
            A copy with writeable parameters of its own.
        """
        new = copy_without_ctx(self)
        new._frozen = False
        for k in ("_precision", "_qweights", "_qplan"):
            new.__dict__.pop(k, None)
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
        extra += "".join(f", {k}={v!r}" for k, v in self._variant_config().items())
        return (f"{type(self).__name__}({self.input_size}, {self.hidden_size}, "
                f"num_layers={self.num_layers}, bias={self.bias}, "
                f"batch_first={self.batch_first}, dropout={self.dropout}, "
                f"bidirectional={self.bidirectional}, dtype={self.dtype.name!r}{extra})")

    # ---- parameters ---------------------------------------------------------
    def load_state_dict(self, state_dict):
        """Copy parameters from a dict of arrays with torch's names.

        Every name and shape is checked before anything is copied.

        Parameters
        ----------
        state_dict : dict of str to array_like
            NumPy arrays or torch tensors, named and shaped as ``layer.params``.

        Raises
        ------
        ValueError
            Listing missing, unexpected and mis-shaped entries.
        RuntimeError
            On a frozen layer.
        """
        self._check_trainable("load_state_dict")
        Layer.load_state_dict(self, state_dict)

    # ---- argument handling ----------------------------------------------------
    def _input(self, x):
        """x as a time-major C-contiguous array of the layer dtype, plus T, B."""
        arr = numeric_array(x, "x")   # converted below, once its size is checked
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
        warn_lossy_cast(arr, "x", self.dtype)
        return np.ascontiguousarray(arr, dtype=self.dtype), T, B

    def _state(self, state, B, name):
        """(h0, c0) from the user's state: None, an array, or an LSTM tuple."""
        if state is None:
            return None, None
        shape = (self.num_layers * self.num_directions, B, self._out_size)
        cshape = (self.num_layers * self.num_directions, B, self.hidden_size)
        if self._is_lstm:
            if not isinstance(state, (tuple, list)) or len(state) != 2:
                raise TypeError(f"{name}: an LSTM state is a tuple (h, c) of two arrays "
                                f"of shape {shape}, got {type(state).__name__}")
            h, c = state
            if h is None or c is None:
                raise TypeError(f"{name}: an LSTM state needs both h and c (or pass None)")
            return (state_array(h, f"{name}[0] (h)", shape, self.dtype),
                    state_array(c, f"{name}[1] (c)", cshape, self.dtype))
        if isinstance(state, (tuple, list)):
            raise TypeError(f"{name}: a {type(self).__name__} state is one array of shape "
                            f"{shape}, got a {type(state).__name__}")
        return state_array(state, name, shape, self.dtype), None

    def _output(self, y, hn, cn, states=None):
        """The call's results; y is already in the layer's layout (_run)."""
        out = (y, ((hn, cn) if self._is_lstm else hn))
        if states is None:
            return out
        h_all, c_all = states
        if self.batch_first:   # (L, T, B, F) -> (L, B, T, F)
            h_all = np.ascontiguousarray(h_all.transpose(0, 2, 1, 3))
            if c_all is not None:
                c_all = np.ascontiguousarray(c_all.transpose(0, 2, 1, 3))
        return out + (((h_all, c_all) if self._is_lstm else h_all),)

    def _steps_array(self, value, name, T, B):
        """mask / resets: booleans in x's leading layout, as (T, B) bool."""
        if value is None:
            return None
        arr = to_numpy(value, name)
        if arr.dtype != np.bool_:
            raise TypeError(f"{name}: expected booleans (dtype bool), got dtype {arr.dtype}")
        shape = (B, T) if self.batch_first else (T, B)
        if arr.shape != shape:
            layout = "(B, T)" if self.batch_first else "(T, B)"
            raise ValueError(f"{name}: expected shape {shape}, x's leading {layout}, "
                             f"got {arr.shape}")
        if self.batch_first:
            arr = arr.T
        return np.ascontiguousarray(arr)

    def _run(self, x, state, lengths, training, state_name, mask=None, resets=None,
             want_states=False, ids=None):
        """The call: (xt, h0, c0, lens, mask, y, hn, cn, cache, states), xt
        time-major and y in the layer's layout ((B, T, F) with batch_first)."""
        if training:
            self._check_trainable("forward")
        xt, T, B = self._input(x)
        h0, c0 = self._state(state, B, state_name)
        lens = lengths_array(lengths, T, B)
        valid = self._steps_array(mask, "mask", T, B)
        rs = self._steps_array(resets, "resets", T, B)
        if valid is not None and lens is not None:
            raise ValueError("mask, lengths: give one of them (a mask covers lengths: "
                             "mask[t, b] = t < lengths[b])")
        if lens is not None and bool(np.all(lens == T)):
            lens = None  # same semantics, no masking work
        if valid is not None and bool(valid.all()):
            valid = None
        if rs is not None and not rs.any():
            rs = None
        extra = (mask is not None or resets is not None or want_states)
        if extra and self._quantized:
            raise ValueError(f"mask, resets, return_states: not available on a "
                             f"{self.weights_precision} frozen layer (lengths are)")
        be = self.backend
        # batch_first=True for a backend forward that writes y (B, T, F)
        # itself; at B = 1 the two layouts are one (_layout copies nothing)
        bf = self.batch_first and B > 1 and getattr(be, "rnn_y_batch_first", False)
        kw = _Y_BATCH_FIRST if bf else _Y_TIME_MAJOR
        if self._quantized:
            y, hn, cn = be.rnn_qforward(self._get_qplan(), xt, h0, c0, lens, **kw)
            return xt, h0, c0, lens, None, self._layout(y, bf), hn, cn, None, None
        if extra and (self._regularized or self.mode == "LNLSTM"):
            raise ValueError("mask, resets, return_states: not available with zoneout, "
                             "recurrent_dropout or LayerNormLSTM")
        if self._variant or extra or (self.padding == "carry" and lens is not None):
            if valid is None and lens is not None:
                valid = np.arange(T)[:, None] < lens[None, :]
            out = self._generic_run(xt, h0, c0, valid, rs, training, want_states)
            return out[:5] + (self._layout(out[5], False),) + out[6:]
        if self._regularized:
            self._check_arrays("params")
            y, hn, cn, cache = self._reg_forward(xt, h0, c0, lens, training)
            return xt, h0, c0, lens, None, self._layout(y, False), hn, cn, cache, None
        mask = None
        if training and self.training and self.dropout > 0 and self.num_layers > 1:
            keep = 1.0 - self.dropout
            shape = (self.num_layers - 1, T, B, self.num_directions * self.hidden_size)
            mask = (self._dropout_rng.random(shape) < keep).astype(self.dtype)
            mask /= self.dtype.type(keep)
        plan = self._plan("params")
        if self.__dict__.get("_frozen", False):
            plan.keep_read_only()
        rows = self.__dict__.get("_rows")   # (plan, tables, E): _rows_tables
        if ids is not None and not training and rows is not None and rows[0] is plan:
            # layer 0's projection looked up by id: the same bits (fastrnn.h)
            y, hn, cn = be.rnn_forward_rows(
                plan, xt, np.ascontiguousarray(ids.T), rows[1], h0, c0, lens, **kw)
            return xt, h0, c0, lens, None, self._layout(y, bf), hn, cn, None, None
        y, hn, cn, cache = be.rnn_forward(plan, xt, h0, c0, mask, lens, training, **kw)
        return xt, h0, c0, lens, mask, self._layout(y, bf), hn, cn, cache, None

    def _layout(self, y, written):
        """y (T, B, F) from an engine in the layer's layout; written: the
        engine wrote it (B, T, F) already."""
        if self.batch_first and not written:
            return np.ascontiguousarray(y.transpose(1, 0, 2))
        return y

    def _rows_tables(self, E):
        """Tables of layer 0's input projection of every row of E (V, I),
        for a frozen float32 layer after an embedding (Sequential.freeze):
        True when made (kept with the plan and the E they belong to; copies
        and pickles leave them out), else False. Not past _ROWS_MAX_BYTES."""
        make = getattr(self.backend, "rnn_rows_tables", None)
        if (make is None or not self.__dict__.get("_frozen", False) or self._quantized
                or self._regularized or self._variant or self.dtype != np.float32
                or self.__dict__.get("padding", "zeros") != "zeros"
                or E.dtype != np.float32 or E.ndim != 2 or E.shape[1] != self.input_size):
            return False
        G = num_gates(self.mode)
        if E.shape[0] * G * self.hidden_size * self.num_directions * 4 > _ROWS_MAX_BYTES:
            return False
        plan = self._plan("params")
        plan.keep_read_only()
        tables = make(plan, np.ascontiguousarray(E))
        if tables is None:
            return False
        self._rows = (plan, tables, E)
        return True

    def _generic_run(self, xt, h0, c0, valid, resets, training, want_states):
        """The variants' path: fastrnn._generic's NumPy engine."""
        self._check_arrays("params")
        T, B = xt.shape[0], xt.shape[1]
        mask = None
        if training and self.training and self.dropout > 0 and self.num_layers > 1:
            keep = 1.0 - self.dropout   # the same draws as the kernels' path
            shape = (self.num_layers - 1, T, B, self.num_directions * self._out_size)
            mask = (self._dropout_rng.random(shape) < keep).astype(self.dtype)
            mask /= self.dtype.type(keep)
        y, hn, cn, states, cache = _generic.forward(
            self._spec(), self.params, xt, h0, c0, valid, resets, mask, training, want_states)
        return xt, h0, c0, None, mask, y, hn, cn, cache, states

    # ---- public calls -------------------------------------------------------
    def __call__(self, x, state=None, lengths=None, *, mask=None, resets=None,
                 return_states=False):
        """Inference: keeps nothing for backward, applies no dropout.

        Takes `forward`'s arguments and returns what it returns.
        """
        *_, y, hn, cn, _, states = self._run(x, state, lengths, False, "state", mask, resets,
                                             _flag(return_states, "return_states"))
        return self._output(y, hn, cn, states)

    def forward(self, x, state0=None, lengths=None, *, mask=None, resets=None,
                return_states=False):
        """Run the layer for training: keeps what `backward` needs, applies dropout.

        Parameters
        ----------
        x : array_like
            (T, B, input_size), or (B, T, input_size) with batch_first.
        state0 : numpy.ndarray or tuple of numpy.ndarray, optional
            The initial state, (D*num_layers, B, Hr) with Hr = proj_size or
            hidden_size; (h0, c0) for an LSTM, c0 (D*num_layers, B, hidden_size).
            None: zeros.
        lengths : array_like of int, optional
            (B,) valid steps of each sequence, in 1..T.
        mask : array_like of bool, optional
            (T, B), or (B, T) with batch_first: True where a step is valid. A
            masked-out step holds the state; its output is 0 (padding="zeros")
            or the last valid output (padding="carry"). Not with lengths.
        resets : array_like of bool, optional
            Shaped as mask: where True, that sequence's state restarts from the
            initial state before the step.
        return_states : bool, default False
            Also return the state after every step of every layer.

        Returns
        -------
        y : numpy.ndarray
            (T, B, D*Hr), or (B, T, D*Hr) with batch_first; 0 past each length.
        state : numpy.ndarray or tuple of numpy.ndarray
            h_n, or (h_n, c_n) for an LSTM: (D*num_layers, B, Hr) and
            (D*num_layers, B, hidden_size).
        states : numpy.ndarray or tuple of numpy.ndarray
            Only with return_states: h_all, or (h_all, c_all) for an LSTM;
            h_all (L, T, B, D*Hr), or (L, B, T, D*Hr) with batch_first, c_all
            the same with hidden_size.
        """
        want = _flag(return_states, "return_states")
        xt, h0, c0, lens, mask, y, hn, cn, cache, states = self._run(
            x, state0, lengths, True, "state0", mask, resets, want)
        if isinstance(cache, _generic.Cache):
            # the engine keeps its own zero-padded copy of x
            self._ctx = dict(cache=cache, y_shape=xt.shape[:2] + y.shape[2:],
                             has_state=h0 is not None, want_states=want)
            return self._output(y, hn, cn, states)
        if xt is x or not xt.flags.owndata:
            xt = xt.copy()  # the caller's memory: it may change before backward()
            if isinstance(cache, _RegCtx):
                cache.inputs[0] = xt
        if lens is not None:
            # padding content is arbitrary (inf, NaN): the kernels never read it
            # forward, but dW_ih = dG^T x spans every row and 0 * inf = NaN
            xt[np.arange(xt.shape[0])[:, None] >= lens[None, :]] = 0
        self._ctx = dict(x=xt, lengths=lens, mask=mask, cache=cache,
                         y_shape=xt.shape[:2] + y.shape[2:], has_state=h0 is not None)
        return self._output(y, hn, cn)

    def _grad_state(self, value, name, shape):
        return None if value is None else state_array(value, name, shape, self.dtype)

    def backward(self, dy, dstate=None, dstates=None):
        """Backpropagate through the latest `forward`.

        Parameter gradients are accumulated into ``layer.grads`` (call
        `zero_grad` between steps). Each `forward` allows one backward.

        Parameters
        ----------
        dy : array_like
            d(loss)/dy, of y's shape.
        dstate : numpy.ndarray or tuple of numpy.ndarray, optional
            d(loss)/d(final state), shaped as the state (dh_n, dc_n for an LSTM).
        dstates : numpy.ndarray or tuple of numpy.ndarray, optional
            d(loss)/d(states) after a forward with return_states: d(h_all), or
            (d(h_all), d(c_all)) for an LSTM (either may be None).

        Returns
        -------
        dx : numpy.ndarray
            d(loss)/dx, of x's shape.
        dstate0 : numpy.ndarray or tuple of numpy.ndarray or None
            d(loss)/d(initial state), None when `forward` got no initial state.

        Raises
        ------
        RuntimeError
            Without a preceding `forward`.
        """
        ctx = self._ctx
        if ctx is None:
            raise RuntimeError("backward() needs a preceding forward() (each forward "
                               "allows one backward)")
        T, B, DH = ctx["y_shape"]
        y_shape = (B, T, DH) if self.batch_first else (T, B, DH)
        dy = real_array(dy, "dy", self.dtype)
        if dy.shape != y_shape:
            raise ValueError(f"dy: expected the shape of y, {y_shape}, got {dy.shape}")
        cache, be = ctx["cache"], self.backend
        # a backend backward that reads dy (B, T, F) itself (as _run's forward)
        bf = (self.batch_first and B > 1 and getattr(be, "rnn_y_batch_first", False)
              and not isinstance(cache, (_generic.Cache, _RegCtx)))
        if self.batch_first and not bf:
            dy = dy.transpose(1, 0, 2)
        dy = np.ascontiguousarray(dy)
        LD = self.num_layers * self.num_directions
        shape, cshape = (LD, B, self._out_size), (LD, B, self.hidden_size)
        dhn = dcn = None
        if dstate is not None:
            if self._is_lstm:
                if not isinstance(dstate, (tuple, list)) or len(dstate) != 2:
                    raise TypeError("dstate: for an LSTM, a tuple (dh_n, dc_n) "
                                    "(either may be None)")
                dhn = self._grad_state(dstate[0], "dstate[0] (dh_n)", shape)
                dcn = self._grad_state(dstate[1], "dstate[1] (dc_n)", cshape)
            else:
                if isinstance(dstate, (tuple, list)):
                    raise TypeError(f"dstate: one array of shape {shape} for "
                                    f"{type(self).__name__}")
                dhn = state_array(dstate, "dstate", shape, self.dtype)
        dh_all = dc_all = None
        if dstates is not None:
            if not ctx.get("want_states"):
                raise ValueError("dstates: the preceding forward() returned no states "
                                 "(call it with return_states=True)")
            dh_all, dc_all = self._grad_states(dstates, T, B)
        if isinstance(cache, _generic.Cache):
            self._check_arrays("params")
            self._check_arrays("grads")
            dx, dh0, dc0 = _generic.backward(self._spec(), self.params, self.grads, cache, dy,
                                             dhn, dcn, dh_all, dc_all, ctx["has_state"])
        elif isinstance(cache, _RegCtx):
            self._check_arrays("params")
            self._check_arrays("grads")
            dx, dh0, dc0 = self._reg_backward(cache, dy, dhn, dcn, ctx["has_state"])
        else:
            dx, dh0, dc0 = be.rnn_backward(
                self._plan("params"), self._plan("grads"), ctx["x"], ctx["mask"],
                ctx["lengths"], cache, dy, dhn, dcn, ctx["has_state"],
                **(_Y_BATCH_FIRST if bf else _Y_TIME_MAJOR))
        self._ctx = None
        if self.batch_first:
            dx = np.ascontiguousarray(dx.transpose(1, 0, 2))
        if not ctx["has_state"]:
            return dx, None
        return dx, ((dh0, dc0) if self._is_lstm else dh0)

    def _grad_states(self, dstates, T, B):
        """dstates as time-major (L, T, B, F) arrays (dh_all, dc_all or None)."""
        L, D = self.num_layers, self.num_directions
        lead = (L, B, T) if self.batch_first else (L, T, B)
        hshape, cshape = lead + (D * self._out_size,), lead + (D * self.hidden_size,)
        if self._is_lstm:
            if not isinstance(dstates, (tuple, list)) or len(dstates) != 2:
                raise TypeError("dstates: for an LSTM, a tuple (dh_all, dc_all) "
                                "(either may be None)")
            dh, dc = dstates
        else:
            if isinstance(dstates, (tuple, list)):
                raise TypeError(f"dstates: one array of shape {hshape} for "
                                f"{type(self).__name__}")
            dh, dc = dstates, None
        out = []
        for v, name, shp in ((dh, "dstates (dh_all)", hshape), (dc, "dstates (dc_all)", cshape)):
            if v is None:
                out.append(None)
                continue
            a = real_array(v, name, self.dtype)
            if a.shape != shp:
                raise ValueError(f"{name}: expected the shape of the states, {shp}, "
                                 f"got {a.shape}")
            if self.batch_first:
                a = a.transpose(0, 2, 1, 3)
            out.append(np.ascontiguousarray(a))
        return out[0], out[1]

    # ---- the Layer protocol (inside a model: batch-first) -----------------------
    def apply(self, x, lengths=None, state=None, training=False, ids=None):
        """Run the layer on a batch-first sequence, as a model runs it.

        A layer built with batch_first=False gets the sequence transposed for it.

        Parameters
        ----------
        x : numpy.ndarray
            (B, T, input_size).
        lengths : numpy.ndarray, optional
            (B,) valid steps of each sequence.
        state : numpy.ndarray or tuple of numpy.ndarray, optional
            The initial state; None: zeros.
        training : bool, default False
            Run `forward` (keeps what backward needs) instead of inference.
        ids : numpy.ndarray, optional
            int64 (B, T): the embedding ids x's rows come from, when a frozen
            model made this layer's tables (Sequential.freeze); inference
            then looks up layer 0's input projection. The same results.

        Returns
        -------
        y : numpy.ndarray
            (B, T, D*hidden_size).
        state : numpy.ndarray or tuple of numpy.ndarray
            The final state.
        """
        if getattr(x, "ndim", 0) != 3:
            raise ValueError(f"{type(self).__name__}: needs a sequence (B, T, F), got shape "
                             f"{getattr(x, 'shape', None)}")
        xin = x if self.batch_first else np.ascontiguousarray(x.transpose(1, 0, 2))
        if training:
            y, st = self.forward(xin, state, lengths=lengths)
        elif ids is not None:   # x = an embedding's rows at these (B, T) ids
            *_, y, hn, cn, _, _ = self._run(xin, state, lengths, False, "state", ids=ids)
            y, st = self._output(y, hn, cn)
        else:
            y, st = self(xin, state, lengths=lengths)
        return (y if self.batch_first else np.ascontiguousarray(y.transpose(1, 0, 2))), st

    def apply_backward(self, dy):
        """Backpropagate through `apply` (training=True).

        Parameters
        ----------
        dy : numpy.ndarray
            (B, T, D*hidden_size) gradient of apply's output.

        Returns
        -------
        numpy.ndarray
            (B, T, input_size) gradient of its input (the initial state's gradient
            is not needed inside a model).
        """
        if not self.batch_first:
            dy = np.ascontiguousarray(dy.transpose(1, 0, 2))
        dx, _ = self.backward(dy)
        return dx if self.batch_first else np.ascontiguousarray(dx.transpose(1, 0, 2))

    def describe_output(self):
        """Describe the output for ``Sequential.summary``.

        Returns
        -------
        str
            "(B, T, D*hidden_size)" with the number filled in.
        """
        return f"(B, T, {self.num_directions * self._out_size})"

    def _reseed_dropout(self, seed):
        self._dropout_rng = np.random.default_rng(seed)

    def step(self, x_t, state=None):
        """Run one time step of all layers, for streaming.

        Step by step it gives the full-sequence call's outputs to float rounding.

        Parameters
        ----------
        x_t : array_like
            (B, input_size), the inputs of one step.
        state : numpy.ndarray or tuple of numpy.ndarray, optional
            The state returned by the previous step, (D*num_layers, B, hidden_size)
            ((h, c) for an LSTM); None starts from zeros.

        Returns
        -------
        y_t : numpy.ndarray
            (B, D*hidden_size), the last layer's output.
        state : numpy.ndarray or tuple of numpy.ndarray
            The new state, to pass to the next step.
        """
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
        exact = (type(arr) is np.ndarray and arr.dtype == self.dtype and arr.ndim == 2
                 and arr.flags.c_contiguous)
        if not exact:
            arr = numeric_array(x_t, "x_t")   # converted below, once its size is checked
        if arr.ndim != 2 or arr.shape[1] != self.input_size:
            raise ValueError(f"x_t: expected shape (B, input_size={self.input_size}), "
                             f"got {arr.shape}")
        B = arr.shape[0]
        if B == 0:
            raise ValueError("x_t: expected at least one sequence (B >= 1)")
        if B > _MAX_ROWS:  # as __call__ refuses it, before a copy that could be huge
            raise ValueError(f"x_t: B = {B} rows exceed {_MAX_ROWS}, the most one kernel "
                             "call takes (BLAS's 32-bit row count); split the batch")
        if not exact:
            warn_lossy_cast(arr, "x_t", self.dtype)
            arr = np.ascontiguousarray(arr, dtype=self.dtype)
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
            self._check_arrays("params")
            return self._reg_step(xt, h0, c0)
        if self._variant:
            *_, y, hn, cn, _, _ = self._generic_run(xt, h0, c0, None, None, False, False)
            return y[0], ((hn, cn) if is_lstm else hn)
        if self._quantized:   # one step of the sequence kernels: the same bits
            qplan = self._get_qplan()
            y, hn, cn = self.backend.rnn_qforward(qplan, xt, h0, c0, None)
            stepper = self.__dict__.get("_stepper")
            if stepper is None or stepper.plan is not qplan:
                self._stepper = self.backend.rnn_qstepper(qplan)
            return y[0], ((hn, cn) if is_lstm else hn)
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
        """Export to ONNX as one RNN/LSTM/GRU node (needs the onnx package).

        ``fr.to_onnx(self, ...)`` is the same call.

        Parameters
        ----------
        path : str or os.PathLike, optional
            Where to write the model; None: only return it.
        lengths : bool, default False
            Add a ``sequence_lens`` input.
        initial_state : bool, default False
            Add initial-state inputs.
        opset : int, default 17
            The ONNX opset.

        Returns
        -------
        onnx.ModelProto
            The model.
        """
        return delegate("to_onnx")(self, path, lengths=lengths,
                                   initial_state=initial_state, opset=opset)

    def to_torch(self):
        """Return the equivalent torch.nn.RNN/LSTM/GRU with the weights copied (needs torch).

        Returns
        -------
        torch.nn.Module
            The torch module.
        """
        return delegate("to_torch")(self)

    def _state_ok(self, state, B):
        """Cheap test that a state is already exactly what the kernel takes
        (as step() returns it), so streaming skips the full conversion."""
        if state is None:
            return True
        LD = self.num_layers * self.num_directions
        shapes = ((LD, B, self._out_size), (LD, B, self.hidden_size))
        parts = state if self._is_lstm else (state,)
        if self._is_lstm and (type(state) is not tuple or len(state) != 2):
            return False
        for a, shape in zip(parts, shapes):
            if not (type(a) is np.ndarray and a.dtype == self.dtype and a.shape == shape
                    and a.flags.c_contiguous):
                return False
        return True


class RNN(RNNBase):
    """Elman RNN: h' = act(W_ih x + b_ih + W_hh h + b_hh), act tanh or relu.

    Calling the layer::

        y, h_n = layer(x, h_0=None, lengths=None)      # inference
        y, h_n = layer.forward(x, h_0=None, lengths=None)  # training
        dx, dstate0 = layer.backward(dy)                 # after forward
        y_t, h_n = layer.step(x_t, state=None)           # one streaming step

    Shapes, with T steps, B sequences, I = input_size, H = hidden_size,
    D = 2 if bidirectional else 1, L = num_layers:

    - x: (T, B, I), or (B, T, I) with ``batch_first=True``; any array-like
      (lists, torch CPU tensors) of a real dtype.
    - y: (T, B, D*H), or (B, T, D*H): the last layer's h at every step, both
      directions concatenated.
    - h_0, h_n: (D*L, B, H), in torch's order (layer 0 forward, layer 0
      reverse, layer 1 forward, ...); h_n is the state after the last step
      (of each sequence's length).
    - lengths: (B,) ints in 1..T, the valid steps of each sequence (padding at
      the end). Outputs past a sequence's length are exactly 0 and its final
      state is the one at its last valid step, as torch gives with
      ``pack_padded_sequence``. None: every sequence has T steps.
    - The initial state defaults to zeros; a given state is never modified.

    `forward` keeps what `backward` needs and applies dropout; `backward`
    accumulates the parameter gradients into ``layer.grads`` (torch's names and
    shapes). Parameters are ``layer.params``: ``weight_ih_l{k}`` (1*H, I or
    D*H), ``weight_hh_l{k}`` (1*H, H), ``bias_ih_l{k}``, ``bias_hh_l{k}``
    (1*H,), with ``_reverse`` for the second direction.

    Parameters
    ----------
    input_size : int
        I, the number of features of each step of x.
    hidden_size : int
        H, the number of units of the hidden state h (and of c for the LSTM).
    num_layers : int, default 1
        L, stacked layers; layer l > 0 reads the D*H outputs of layer l-1.
    nonlinearity : {"tanh", "relu"}, default "tanh"
        The activation.
    bias : bool, default True
        Whether the layers have the biases b_ih and b_hh.
    batch_first : bool, default False
        Take and return x and y as (B, T, ...) instead of (T, B, ...); the states
        are (D*L, B, H) either way, as in torch.
    dropout : float, default 0.0
        In [0, 1): dropout on the outputs of each layer but the last, in
        training (`forward`) only.
    bidirectional : bool, default False
        Run a second direction over the reversed sequences: D = 2.
    dtype : {"float32", "float64"}, default "float32"
        The dtype of the parameters, the inputs and the outputs.
    seed : int, optional
        Seeds the initial weights (torch's uniform(-1/sqrt(H), 1/sqrt(H))) and
        the dropout masks; None draws fresh ones.
    clip : float, optional
        A bound c > 0: the gate pre-activations are clamped to [-c, c] (ONNX's
        ``clip`` attribute); None: no clamping.
    activations : list of str, optional
        ONNX's activation functions by name (any case: "Sigmoid", "Tanh",
        "Relu", "Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh",
        "HardSigmoid", "Elu", "Softsign", "Softplus"), one per ONNX slot
        (f), or twice that for a bidirectional layer (forward then
        reverse); None: the cell's own. docs/variants.md.
    activation_alpha, activation_beta : list of float, optional
        Aligned with activations (None entries: ONNX's defaults).
    padding : {"zeros", "carry"}, default "zeros"
        Outputs at invalid steps (past a length, or masked out): 0, or the
        last valid output ("carry", as Keras; 0 before the first valid step).

    Examples
    --------
    >>> import numpy as np
    >>> import fastrnn as fr
    >>> rnn = fr.RNN(3, 5, num_layers=2, nonlinearity="relu", seed=0)
    >>> y, h_n = rnn(np.ones((7, 2, 3), np.float32))
    >>> y.shape, h_n.shape
    ((7, 2, 5), (2, 2, 5))
    """

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh",
                 bias=True, batch_first=False, dropout=0.0, bidirectional=False,
                 dtype="float32", seed=None, clip=None, activations=None,
                 activation_alpha=None, activation_beta=None, padding="zeros"):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
        if nonlinearity != "tanh" and activations is not None:
            raise ValueError("nonlinearity, activations: give one of them (activations "
                             "replaces the nonlinearity)")
        self.nonlinearity = nonlinearity
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU",
                         input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, dtype, seed, clip=clip,
                         activations=activations, activation_alpha=activation_alpha,
                         activation_beta=activation_beta, padding=padding)


class LSTM(RNNBase):
    """LSTM with torch's gates i, f, g, o, on NumPy arrays.

    Same equations, weights and results as ``torch.nn.LSTM``.

    Calling the layer::

        y, (h_n, c_n) = layer(x, (h_0, c_0)=None, lengths=None)      # inference
        y, (h_n, c_n) = layer.forward(x, (h_0, c_0)=None, lengths=None)  # training
        dx, dstate0 = layer.backward(dy)                 # after forward
        y_t, (h_n, c_n) = layer.step(x_t, state=None)           # one streaming step

    Shapes, with T steps, B sequences, I = input_size, H = hidden_size,
    D = 2 if bidirectional else 1, L = num_layers:

    - x: (T, B, I), or (B, T, I) with ``batch_first=True``; any array-like
      (lists, torch CPU tensors) of a real dtype.
    - y: (T, B, D*H), or (B, T, D*H): the last layer's h at every step, both
      directions concatenated.
    - h_0, h_n: (D*L, B, H), in torch's order (layer 0 forward, layer 0
      reverse, layer 1 forward, ...); h_n is the state after the last step
      (of each sequence's length).
    - c_0, c_n: the cell states, shaped as h_0 and h_n.
    - lengths: (B,) ints in 1..T, the valid steps of each sequence (padding at
      the end). Outputs past a sequence's length are exactly 0 and its final
      state is the one at its last valid step, as torch gives with
      ``pack_padded_sequence``. None: every sequence has T steps.
    - The initial state defaults to zeros; a given state is never modified.

    `forward` keeps what `backward` needs and applies dropout; `backward`
    accumulates the parameter gradients into ``layer.grads`` (torch's names and
    shapes). Parameters are ``layer.params``: ``weight_ih_l{k}`` (4*H, I or
    D*H), ``weight_hh_l{k}`` (4*H, H), ``bias_ih_l{k}``, ``bias_hh_l{k}``
    (4*H,), with ``_reverse`` for the second direction.

    Parameters
    ----------
    input_size : int
        I, the number of features of each step of x.
    hidden_size : int
        H, the number of units of the hidden state h (and of c for the LSTM).
    num_layers : int, default 1
        L, stacked layers; layer l > 0 reads the D*H outputs of layer l-1.
    bias : bool, default True
        Whether the layers have the biases b_ih and b_hh.
    batch_first : bool, default False
        Take and return x and y as (B, T, ...) instead of (T, B, ...); the states
        are (D*L, B, H) either way, as in torch.
    dropout : float, default 0.0
        In [0, 1): dropout on the outputs of each layer but the last, in
        training (`forward`) only.
    bidirectional : bool, default False
        Run a second direction over the reversed sequences: D = 2.
    dtype : {"float32", "float64"}, default "float32"
        The dtype of the parameters, the inputs and the outputs.
    seed : int, optional
        Seeds the initial weights (torch's uniform(-1/sqrt(H), 1/sqrt(H))) and
        the dropout masks; None draws fresh ones.
    zoneout : float, default 0.0
        In [0, 1): in training each unit of h keeps its previous value with
        probability p at each step; in inference h_t = p h_{t-1} + (1-p) h~_t.
    recurrent_dropout : float, default 0.0
        In [0, 1): in training one mask per (sequence, unit), fixed over time,
        multiplies h_{t-1} before W_hh, scaled by 1/(1-p).
    clip : float, optional
        A bound c > 0: the gate pre-activations are clamped to [-c, c] (ONNX's
        ``clip`` attribute); None: no clamping.
    proj_size : int, default 0
        torch's proj_size: 0 < P < hidden_size projects h = W_hr (o * tanh(c)),
        so h, y and the layers above have P features (c keeps hidden_size).
    peepholes : bool, default False
        Peephole weights ``peephole_l{k}`` (3*H,), blocks (i, f, o): the gates
        i, f see c_{t-1}, o sees c_t (ONNX's P, whose blocks are (i, o, f)).
    input_forget : bool, default False
        Couple the gates: f = 1 - i (ONNX input_forget=1).
    activations : list of str, optional
        ONNX's activation functions by name (any case: "Sigmoid", "Tanh",
        "Relu", "Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh",
        "HardSigmoid", "Elu", "Softsign", "Softplus"), one per ONNX slot
        (f, g, h), or twice that for a bidirectional layer (forward then
        reverse); None: the cell's own. docs/variants.md.
    activation_alpha, activation_beta : list of float, optional
        Aligned with activations (None entries: ONNX's defaults).
    padding : {"zeros", "carry"}, default "zeros"
        Outputs at invalid steps (past a length, or masked out): 0, or the
        last valid output ("carry", as Keras; 0 before the first valid step).

    See Also
    --------
    GRU, RNN, LayerNormLSTM

    Examples
    --------
    >>> import numpy as np
    >>> import fastrnn as fr
    >>> lstm = fr.LSTM(input_size=8, hidden_size=16, seed=0)
    >>> x = np.random.default_rng(0).standard_normal((5, 3, 8)).astype(np.float32)
    >>> y, (h_n, c_n) = lstm(x, lengths=[5, 2, 4])     # x: (T=5, B=3, I=8)
    >>> y.shape, h_n.shape, c_n.shape
    ((5, 3, 16), (1, 3, 16), (1, 3, 16))
    >>> bool(np.all(y[2:, 1] == 0)), bool(np.array_equal(h_n[0, 1], y[1, 1]))
    (True, True)
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False,
                 dtype="float32", seed=None, zoneout=0.0, recurrent_dropout=0.0, clip=None,
                 proj_size=0, peepholes=False, input_forget=False, activations=None,
                 activation_alpha=None, activation_beta=None, padding="zeros"):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias,
                         batch_first, dropout, bidirectional, dtype, seed,
                         zoneout=zoneout, recurrent_dropout=recurrent_dropout, clip=clip,
                         proj_size=proj_size, peepholes=peepholes, input_forget=input_forget,
                         activations=activations, activation_alpha=activation_alpha,
                         activation_beta=activation_beta, padding=padding)


class GRU(RNNBase):
    """GRU with torch's gates r, z, n, on NumPy arrays.

    Same equations, weights and results as ``torch.nn.GRU``. With
    ``linear_before_reset=False`` (ONNX linear_before_reset=0, Keras
    reset_after=False) the candidate is n = tanh(W_in x + b_in + W_hn (r * h) +
    b_hn), run by the portable kernels.

    Calling the layer::

        y, h_n = layer(x, h_0=None, lengths=None)      # inference
        y, h_n = layer.forward(x, h_0=None, lengths=None)  # training
        dx, dstate0 = layer.backward(dy)                 # after forward
        y_t, h_n = layer.step(x_t, state=None)           # one streaming step

    Shapes, with T steps, B sequences, I = input_size, H = hidden_size,
    D = 2 if bidirectional else 1, L = num_layers:

    - x: (T, B, I), or (B, T, I) with ``batch_first=True``; any array-like
      (lists, torch CPU tensors) of a real dtype.
    - y: (T, B, D*H), or (B, T, D*H): the last layer's h at every step, both
      directions concatenated.
    - h_0, h_n: (D*L, B, H), in torch's order (layer 0 forward, layer 0
      reverse, layer 1 forward, ...); h_n is the state after the last step
      (of each sequence's length).
    - lengths: (B,) ints in 1..T, the valid steps of each sequence (padding at
      the end). Outputs past a sequence's length are exactly 0 and its final
      state is the one at its last valid step, as torch gives with
      ``pack_padded_sequence``. None: every sequence has T steps.
    - The initial state defaults to zeros; a given state is never modified.

    `forward` keeps what `backward` needs and applies dropout; `backward`
    accumulates the parameter gradients into ``layer.grads`` (torch's names and
    shapes). Parameters are ``layer.params``: ``weight_ih_l{k}`` (3*H, I or
    D*H), ``weight_hh_l{k}`` (3*H, H), ``bias_ih_l{k}``, ``bias_hh_l{k}``
    (3*H,), with ``_reverse`` for the second direction.

    Parameters
    ----------
    input_size : int
        I, the number of features of each step of x.
    hidden_size : int
        H, the number of units of the hidden state h (and of c for the LSTM).
    num_layers : int, default 1
        L, stacked layers; layer l > 0 reads the D*H outputs of layer l-1.
    bias : bool, default True
        Whether the layers have the biases b_ih and b_hh.
    batch_first : bool, default False
        Take and return x and y as (B, T, ...) instead of (T, B, ...); the states
        are (D*L, B, H) either way, as in torch.
    dropout : float, default 0.0
        In [0, 1): dropout on the outputs of each layer but the last, in
        training (`forward`) only.
    bidirectional : bool, default False
        Run a second direction over the reversed sequences: D = 2.
    dtype : {"float32", "float64"}, default "float32"
        The dtype of the parameters, the inputs and the outputs.
    seed : int, optional
        Seeds the initial weights (torch's uniform(-1/sqrt(H), 1/sqrt(H))) and
        the dropout masks; None draws fresh ones.
    zoneout : float, default 0.0
        In [0, 1): in training each unit of h keeps its previous value with
        probability p at each step; in inference h_t = p h_{t-1} + (1-p) h~_t.
    recurrent_dropout : float, default 0.0
        In [0, 1): in training one mask per (sequence, unit), fixed over time,
        multiplies h_{t-1} before W_hh, scaled by 1/(1-p).
    linear_before_reset : bool, default True
        True: torch's n = tanh(W_in x + b_in + r * (W_hn h + b_hn)).
    clip : float, optional
        A bound c > 0: the gate pre-activations are clamped to [-c, c] (ONNX's
        ``clip`` attribute); None: no clamping.
    activations : list of str, optional
        ONNX's activation functions by name (any case: "Sigmoid", "Tanh",
        "Relu", "Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh",
        "HardSigmoid", "Elu", "Softsign", "Softplus"), one per ONNX slot
        (f, g), or twice that for a bidirectional layer (forward then
        reverse); None: the cell's own. docs/variants.md.
    activation_alpha, activation_beta : list of float, optional
        Aligned with activations (None entries: ONNX's defaults).
    padding : {"zeros", "carry"}, default "zeros"
        Outputs at invalid steps (past a length, or masked out): 0, or the
        last valid output ("carry", as Keras; 0 before the first valid step).

    Examples
    --------
    >>> import numpy as np
    >>> import fastrnn as fr
    >>> gru = fr.GRU(4, 6, bidirectional=True, batch_first=True, seed=0)
    >>> y, h_n = gru(np.zeros((2, 9, 4), np.float32))  # x: (B=2, T=9, I=4)
    >>> y.shape, h_n.shape                              # D=2: y has 2*6 features
    ((2, 9, 12), (2, 2, 6))
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False,
                 dtype="float32", seed=None, zoneout=0.0, recurrent_dropout=0.0,
                 linear_before_reset=True, clip=None, activations=None,
                 activation_alpha=None, activation_beta=None, padding="zeros"):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias,
                         batch_first, dropout, bidirectional, dtype, seed,
                         zoneout=zoneout, recurrent_dropout=recurrent_dropout, clip=clip,
                         linear_before_reset=linear_before_reset, activations=activations,
                         activation_alpha=activation_alpha, activation_beta=activation_beta,
                         padding=padding)


register_builtin(RNN, LSTM, GRU)
