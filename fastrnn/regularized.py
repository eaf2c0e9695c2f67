"""Regularized recurrent layers: the layer-normalized LSTM, and zoneout and
recurrent (variational) dropout for LSTM and GRU.

    lstm = fr.LayerNormLSTM(32, 64, zoneout=0.1, recurrent_dropout=0.25, seed=0)
    y, (h_n, c_n) = lstm(x, (h0, c0), lengths=lengths)      # same protocol as fr.LSTM
    gru = fr.GRU(32, 64, zoneout=0.1)                       # fr.LSTM / fr.GRU take them too

LayerNormLSTM (haste's LayerNormLSTM, in torch's gate order i, f, g, o), per
layer and direction, with hd = h_{t-1} * r (r the recurrent dropout mask, 1 in
inference):
    [i, f, g, o] = [s, s, tanh, s]( LN(x_t W_ih^T) * gamma_ih
                                    + LN(hd W_hh^T) * gamma_hh + b )
    c_t = f * c_{t-1} + i * g
    h~_t = o * tanh( LN(c_t) * gamma_c + beta_c )
    h_t = zoneout(h_{t-1}, h~_t),   y_t = h_t
LN(v) = (v - mean(v)) / sqrt(var(v) + 1e-5) over the 4H gate pre-activations
(or the H cell units), biased variance, as haste; the two gate layer norms have
no beta (the gate bias b plays its part), as haste.

Parameters (torch-style names; `_reverse` suffix for the backward direction):
    weight_ih_l{k}       (4H, in)   uniform(-1/sqrt(H), 1/sqrt(H)), as torch's LSTM
    weight_hh_l{k}       (4H, H)    same
    bias_l{k}            (4H,)      same (absent with bias=False)
    ln_ih_weight_l{k}    (4H,)      gamma_ih, ones
    ln_hh_weight_l{k}    (4H,)      gamma_hh, ones
    ln_cell_weight_l{k}  (H,)       gamma_c, ones
    ln_cell_bias_l{k}    (H,)       beta_c, zeros (kept with bias=False: it is
                                    the cell layer norm's own shift)

Zoneout, recurrent dropout, mask order and eval-mode behaviour: see
fastrnn._regrun. The time loop of every layer and direction runs in C
(src/portable/reg.c); layers and directions are looped here.
"""
from ._regrun import RegularizedMixin
from .layers import register_builtin
from .recurrent import GRU, LSTM, RNNBase

__all__ = ["LayerNormLSTM", "LSTM", "GRU", "RegularizedMixin"]


class LayerNormLSTM(RNNBase):
    """Layer-normalized LSTM (haste's, in torch's gate order) with zoneout and recurrent dropout.

    Same protocol and shapes as `fastrnn.LSTM`: ``y, (h_n, c_n) = layer(x,
    (h_0, c_0), lengths)``, `forward`, `backward`, `step`; x is (T, B, I) (or
    (B, T, I) with batch_first), y (T, B, D*H), h_n and c_n (D*L, B, H). Its
    parameters are ``weight_ih_l0``, ``weight_hh_l0``, ``bias_l0``,
    ``ln_ih_weight_l0``, ``ln_hh_weight_l0``, ``ln_cell_weight_l0``,
    ``ln_cell_bias_l0`` (equations in the module docstring).

    Parameters
    ----------
    input_size : int
        I, the number of features of each step of x.
    hidden_size : int
        H, the number of units of h and c.
    num_layers : int, default 1
        L, stacked layers.
    bias : bool, default True
        Whether the layers have a bias.
    batch_first : bool, default False
        x and y as (B, T, ...) instead of (T, B, ...).
    dropout : float, default 0.0
        Dropout between layers, in training.
    bidirectional : bool, default False
        Run a reverse direction too: D = 2.
    zoneout : float, default 0.0
        Zoneout probability of h, in [0, 1).
    recurrent_dropout : float, default 0.0
        Recurrent dropout probability on h_{t-1}, in [0, 1).
    dtype : {"float32", "float64"}, default "float32"
        The dtype of parameters, inputs and outputs.
    seed : int, optional
        Seeds the initial weights and the masks.

    Examples
    --------
    >>> import numpy as np
    >>> import fastrnn as fr
    >>> layer = fr.LayerNormLSTM(4, 8, zoneout=0.1, seed=0)
    >>> y, (h_n, c_n) = layer(np.ones((6, 2, 4), np.float32))
    >>> y.shape, h_n.shape, c_n.shape
    ((6, 2, 8), (1, 2, 8), (1, 2, 8))
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False,
                 zoneout=0.0, recurrent_dropout=0.0, dtype="float32", seed=None):
        super().__init__("LNLSTM", input_size, hidden_size, num_layers, bias,
                         batch_first, dropout, bidirectional, dtype, seed,
                         zoneout=zoneout, recurrent_dropout=recurrent_dropout)

    def reset_parameters(self, seed=None):
        """Draw the weights and biases as torch's LSTM does; layer-norm gains 1 and shifts 0.

        Parameters
        ----------
        seed : int, optional
            Seeds the generator (uniform in +-1/sqrt(hidden_size)).
        """
        super().reset_parameters(seed)
        for name, p in self.params.items():
            if name.startswith("ln_"):
                p.fill(0 if name.startswith("ln_cell_bias") else 1)

    @property
    def _is_lstm(self):
        return True

    @property
    def _regularized(self):
        return True  # only the regularized kernels implement this cell

    @property
    def _reg_kind(self):
        return "LNLSTM"

    def _param_shapes(self):
        H = self.hidden_size
        out = []
        for l in range(self.num_layers):
            In = self.input_size if l == 0 else self.num_directions * H
            for sfx in ("", "_reverse")[: self.num_directions]:
                out.append((f"weight_ih_l{l}{sfx}", (4 * H, In)))
                out.append((f"weight_hh_l{l}{sfx}", (4 * H, H)))
                if self.bias:
                    out.append((f"bias_l{l}{sfx}", (4 * H,)))
                out.append((f"ln_ih_weight_l{l}{sfx}", (4 * H,)))
                out.append((f"ln_hh_weight_l{l}{sfx}", (4 * H,)))
                out.append((f"ln_cell_weight_l{l}{sfx}", (H,)))
                out.append((f"ln_cell_bias_l{l}{sfx}", (H,)))
        return out

    def _reg_weights(self, store, l, d):
        n = f"l{l}{'_reverse' if d else ''}"
        return [store[f"weight_ih_{n}"], store[f"weight_hh_{n}"],
                store[f"bias_{n}"] if self.bias else None,
                store[f"ln_ih_weight_{n}"], store[f"ln_hh_weight_{n}"],
                store[f"ln_cell_weight_{n}"], store[f"ln_cell_bias_{n}"]]

    def __repr__(self):
        return (f"LayerNormLSTM({self.input_size}, {self.hidden_size}, "
                f"num_layers={self.num_layers}, bias={self.bias}, "
                f"batch_first={self.batch_first}, dropout={self.dropout}, "
                f"bidirectional={self.bidirectional}, zoneout={self.zoneout}, "
                f"recurrent_dropout={self.recurrent_dropout}, dtype={self.dtype.name!r})")


register_builtin(LayerNormLSTM)
