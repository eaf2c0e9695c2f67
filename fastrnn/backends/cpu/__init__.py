"""The CPU backend: fastrnn's C kernels (src/) behind the one compiled
extension _ext, on NumPy arrays. Its entry points are those of
fastrnn.backends.Backend; thread settings are in threads.py."""
from .. import Backend
from . import _ext, threads  # noqa: F401  (threads pins OpenBLAS at import)


class CPUBackend(Backend):
    """The C kernels on NumPy arrays; every call runs on
    threads.get_num_threads() OpenMP threads (bits independent of that)."""

    name = "cpu"

    def num_threads(self):
        return _ext.num_threads()

    # ---- recurrent layers (torch's cells) ---------------------------------------
    def rnn_weights(self, cell, w_ih, w_hh, b_ih, b_hh, input_size, hidden_size, num_layers,
                    num_directions, writable=False, gru_lbr=1, clip=0.0):
        return _ext.Plan(_ext.CELLS[cell], w_ih, w_hh, b_ih, b_hh, input_size, hidden_size,
                         num_layers, num_directions, writable, gru_lbr, clip)

    # the forwards and rnn_backward take batch_first (Backend.rnn_y_batch_first)
    rnn_y_batch_first = True

    def rnn_forward(self, weights, x, h0, c0, dropmask, lengths, training, batch_first=False):
        return _ext.forward(weights, x, h0, c0, dropmask, lengths, training,
                            _ext.num_threads(), batch_first)

    def rnn_backward(self, weights, grads, x, dropmask, lengths, cache, dy, dhn, dcn,
                     want_dstate0, batch_first=False):
        return _ext.backward(weights, grads, x, dropmask, lengths, cache, dy, dhn, dcn,
                             want_dstate0, _ext.num_threads(), batch_first)

    def rnn_rows_tables(self, weights, E):
        return _ext.rows_tables(weights, E, _ext.num_threads())

    def rnn_forward_rows(self, weights, x, ids, tables, h0, c0, lengths, batch_first=False):
        return _ext.forward_rows(weights, x, ids, tables, h0, c0, lengths,
                                 _ext.num_threads(), batch_first)

    def rnn_stepper(self, weights, params, names):
        return _ext.Stepper(weights, params, names)

    # ---- reduced-precision inference (int8, bf16) ---------------------------------
    def rnn_qweights(self, cell, precision, w_ih, w_hh, s_ih, s_hh, b_ih, b_hh, input_size,
                     hidden_size, num_layers, num_directions):
        return _ext.QPlan(_ext.CELLS[cell], precision, w_ih, w_hh, s_ih, s_hh, b_ih, b_hh,
                          input_size, hidden_size, num_layers, num_directions)

    def rnn_qforward(self, weights, x, h0, c0, lengths, batch_first=False):
        return _ext.qforward(weights, x, h0, c0, lengths, _ext.num_threads(), batch_first)

    def rnn_qstepper(self, weights):
        return _ext.QStepper(weights)

    def quant_kernels(self, precision):
        if precision not in _ext.PRECISIONS:
            raise ValueError(f"precision: expected 'int8' or 'bf16', got {precision!r}")
        width = _ext.quant_isa(precision)
        if width == 0:
            return "portable C loops"
        if precision == "int8":
            return "vpdpbusd (AVX512_VNNI)" if width == 16 else "vpmaddwd (AVX2)"
        if width == 16:
            return "vdpbf16ps (AVX512_BF16)" if _ext.bf16_dot() else "FMAs (AVX-512 F)"
        return "FMAs (AVX2)"

    # ---- regularized cells, one layer and direction ------------------------------
    def reg_forward(self, cell, x, w, h0, c0, zmask, rmask, y, col, lengths, reverse,
                    zoneout, training):
        return _ext.reg_forward(_ext.REG_CELLS[cell], x, w, h0, c0, zmask, rmask, y, col,
                                lengths, reverse, zoneout, training, _ext.num_threads())

    def reg_backward(self, cell, x, w, dw, zmask, rmask, lengths, reverse, cache, dy, col,
                     dhn, dcn, dx, dx_accumulate, want_dstate0):
        return _ext.reg_backward(_ext.REG_CELLS[cell], x, w, dw, zmask, rmask, lengths,
                                 reverse, cache, dy, col, dhn, dcn, dx, dx_accumulate,
                                 want_dstate0, _ext.num_threads())

    # ---- optimizers ------------------------------------------------------------------
    def adam_step(self, p, g, m, v, vmax, w1, beta2, omb2, bc2_sqrt, eps, neg_step, wd,
                  decay, wd_mode):
        return _ext.adam_step(p, g, m, v, vmax, w1, beta2, omb2, bc2_sqrt, eps, neg_step, wd,
                              decay, wd_mode, _ext.num_threads())

    # ---- attention pooling ------------------------------------------------------------
    def attention_pool(self, z, v, x, lengths, a, y):
        return _ext.attention_pool(z, v, x, lengths, a, y, _ext.num_threads())

    # ---- one step of a cell after its products --------------------------------------
    def cell_step(self, cell, pre, gh, h, c, h_out, c_out, cache):
        return _ext.cell_step(_ext.CELLS[cell], pre, gh, h, c, h_out, c_out, cache,
                              _ext.num_threads())

    def cell_step_backward(self, cell, acts, h, c, c_out, dh, dy, dc, dgx, dgh, dhp):
        return _ext.cell_step_backward(_ext.CELLS[cell], acts, h, c, c_out, dh, dy, dc, dgx,
                                       dgh, dhp, _ext.num_threads())

    # ---- one step of Luong attention -------------------------------------------------
    def attend(self, keys, q, enc, mask, a, ctx):
        return _ext.attend(keys, q, enc, mask, a, ctx, _ext.num_threads())

    def attend_backward(self, keys, enc, a, dctx, mask, ds, dq):
        return _ext.attend_backward(keys, enc, a, dctx, mask, ds, dq, _ext.num_threads())

    # ---- dense algebra and losses ------------------------------------------------
    def gemm(self, a, b, c, trans_a, trans_b, alpha, beta):
        _ext.gemm(a, b, c, trans_a, trans_b, alpha, beta, _ext.num_threads())

    def ctc(self, logits, input_lengths, targets, target_lengths, blank, zero_infinity,
            grad_scale, want_grad):
        return _ext.ctc(logits, input_lengths, targets, target_lengths, blank, zero_infinity,
                        grad_scale, want_grad, _ext.num_threads())


backend = CPUBackend()
