"""Layers, directions and masks around the regularized one-layer kernels
(the backend's reg_forward / reg_backward; on the CPU
src/include/fastrnn_reg.h): zoneout and recurrent
dropout for LSTM and GRU, and the layer-normalized LSTM.

The time loop of each layer and direction runs in C; this module only loops
over layers and directions, draws the masks and keeps what backward needs.
fastrnn.recurrent's layers use it (through RegularizedMixin) when zoneout or
recurrent_dropout is > 0, and fastrnn.regularized.LayerNormLSTM always.

Masks, drawn from the layer's seeded generator (layer._dropout_rng) in this
order per training forward: for each layer l, for each direction (forward then
reverse): the zoneout mask (T,B,H) if zoneout > 0, then the recurrent dropout
mask (B,H) if recurrent_dropout > 0; then, for l < num_layers-1 and
dropout > 0, the inter-layer dropout mask (T,B,D*H) of layer l's output.
  zoneout:           m ~ Bernoulli(p) per (t, b, unit); h_t = m*h_{t-1} + (1-m)*h~_t
  recurrent dropout: r ~ Bernoulli(1-p)/(1-p) per (sequence, unit), fixed over
                     time, multiplies h_{t-1} before W_hh (Gal & Ghahramani)
In eval mode (and in __call__/step) there are no random masks: zoneout mixes
h_t = p*h_{t-1} + (1-p)*h~_t and recurrent dropout is off. forward() in eval
mode passes the kernel a zoneout "mask" full of p, which is the same mix, so
backward() works in eval mode too.
"""
import numpy as np


class _RegCtx:
    """What backward needs of a regularized training forward."""
    __slots__ = ("inputs", "caches", "zmasks", "rmasks", "dmasks", "lengths")

    def __init__(self):
        self.inputs, self.caches, self.zmasks, self.rmasks, self.dmasks = [], [], [], [], []
        self.lengths = None


class RegularizedMixin:
    """The regularized path of a recurrent layer. The layer provides params,
    grads, mode, sizes, dtype, bias, dropout, zoneout, recurrent_dropout,
    training and _dropout_rng; `_reg_kind` names the kernel cell and
    `_reg_weights` gives a layer-direction's parameters in kernel order."""

    @property
    def _reg_kind(self):
        return self.mode  # "LSTM" or "GRU"; LayerNormLSTM: "LNLSTM"

    def _reg_weights(self, store, l, d):
        """Parameters of layer l, direction d in the kernel's order (fastrnn_reg.h):
        W_ih, W_hh, b_ih, b_hh (biases None without bias)."""
        n = f"l{l}{'_reverse' if d else ''}"
        if self.bias:
            return [store[f"weight_ih_{n}"], store[f"weight_hh_{n}"],
                    store[f"bias_ih_{n}"], store[f"bias_hh_{n}"]]
        return [store[f"weight_ih_{n}"], store[f"weight_hh_{n}"], None, None]

    def _reg_masks(self, T, B, training):
        """(zoneout mask, recurrent dropout mask) of one layer-direction."""
        if not training:
            return None, None
        dt, H = self.dtype, self.hidden_size
        zm = rm = None
        if self.zoneout > 0:
            if self.training:
                zm = (self._dropout_rng.random((T, B, H)) < self.zoneout).astype(dt)
            else:
                zm = np.full((T, B, H), self.zoneout, dtype=dt)
        if self.recurrent_dropout > 0 and self.training:
            keep = 1.0 - self.recurrent_dropout
            rm = (self._dropout_rng.random((B, H)) < keep).astype(dt)
            rm /= dt.type(keep)
        return zm, rm

    def _reg_forward(self, xt, h0, c0, lens, training):
        """All layers and directions. xt (T,B,I) time-major contiguous, h0/c0
        (L*D,B,H) or None. Returns (y, h_n, c_n or None, _RegCtx or None)."""
        T, B = xt.shape[0], xt.shape[1]
        L, D, H, dt = self.num_layers, self.num_directions, self.hidden_size, self.dtype
        cell, backend = self._reg_kind, self.backend
        has_c = self._is_lstm
        hn = np.empty((L * D, B, H), dtype=dt)
        cn = np.empty((L * D, B, H), dtype=dt) if has_c else None
        ctx = _RegCtx() if training else None
        if ctx is not None:
            ctx.lengths = lens
        inp = xt
        for l in range(L):
            y = np.empty((T, B, D * H), dtype=dt)
            for d in range(D):
                k = l * D + d
                zm, rm = self._reg_masks(T, B, training)
                hk, ck, cache = backend.reg_forward(
                    cell, inp, self._reg_weights(self.params, l, d),
                    None if h0 is None else h0[k], None if c0 is None else c0[k],
                    zm, rm, y, d * H, lens, d == 1, self.zoneout, training)
                hn[k] = hk
                if has_c:
                    cn[k] = ck
                if ctx is not None:
                    ctx.caches.append(cache)
                    ctx.zmasks.append(zm)
                    ctx.rmasks.append(rm)
            dm = None
            if training and self.training and self.dropout > 0 and l < L - 1:
                keep = 1.0 - self.dropout
                dm = (self._dropout_rng.random((T, B, D * H)) < keep).astype(dt)
                dm /= dt.type(keep)
                y *= dm
            if ctx is not None:
                ctx.inputs.append(inp)
                ctx.dmasks.append(dm)
            inp = y
        return inp, hn, cn, ctx

    def _reg_backward(self, ctx, dy, dhn, dcn, want_dstate0):
        """Backward after _reg_forward(training=True): accumulates into grads,
        returns (dx, dh0 or None, dc0 or None), dy (T,B,D*H) contiguous."""
        L, D, H, dt = self.num_layers, self.num_directions, self.hidden_size, self.dtype
        cell, backend = self._reg_kind, self.backend
        has_c = self._is_lstm
        B = dy.shape[1]
        dh0 = np.empty((L * D, B, H), dtype=dt) if want_dstate0 else None
        dc0 = np.empty((L * D, B, H), dtype=dt) if (want_dstate0 and has_c) else None
        dcur = dy
        for l in range(L - 1, -1, -1):
            inp = ctx.inputs[l]
            dx = None
            for d in range(D):
                k = l * D + d
                dx, dhk, dck = backend.reg_backward(
                    cell, inp, self._reg_weights(self.params, l, d),
                    self._reg_weights(self.grads, l, d), ctx.zmasks[k], ctx.rmasks[k],
                    ctx.lengths, d == 1, ctx.caches[k], dcur, d * H,
                    None if dhn is None else dhn[k], None if dcn is None else dcn[k],
                    dx, d > 0, want_dstate0)
                if want_dstate0:
                    dh0[k] = dhk
                    if has_c:
                        dc0[k] = dck
            if l > 0 and ctx.dmasks[l - 1] is not None:
                dx *= ctx.dmasks[l - 1]  # through the dropout of layer l's input
            dcur = dx
        return dcur, dh0, dc0

    def _reg_step(self, xt, h0, c0):
        """One step of all layers, inference semantics: xt (1,B,I)."""
        y, hn, cn, _ = self._reg_forward(xt, h0, c0, None, False)
        return y[0], ((hn, cn) if self._is_lstm else hn)
