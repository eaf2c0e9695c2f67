/*
 * fastrnn kernels: one step of a cell's elementwise math after its
 * products, for loops that make the products themselves and need the step
 * between two of them (fastrnn.Seq2Seq's decoder, whose input at step t
 * depends on its output at t-1). B rows of H units, row-major, torch's
 * gate order:
 *
 * forward (fr_cell_step_*):
 *   LSTM  pre (B, 4H) = x W_ih^T + b_ih + h W_hh^T + b_hh (i, f, g, o),
 *         overwritten by the activations sigmoid(i), sigmoid(f), tanh(g),
 *         sigmoid(o); c (B, H) the previous cell state:
 *         c_out = f c + i g, h_out = o tanh(c_out). gh, h, cache unused.
 *   GRU   pre (B, 3H) = x W_ih^T + b_ih and gh (B, 3H) = h W_hh^T + b_hh
 *         (r, z, n); h (B, H) the previous state: r = sigmoid(pre_r +
 *         gh_r), z likewise, n = tanh(pre_n + r gh_n), h_out = (1 - z) n +
 *         z h; cache (B, 4H) gets r, z, n, gh_n. pre unchanged; c, c_out
 *         unused.
 *   RNN   (FR_CELL_RNN_TANH / _RELU) pre (B, H) -> act(pre), written over
 *         pre and into h_out.
 * backward (fr_cell_step_backward_*), with g = dh + dy, the gradient of
 * h_out (two addends so the caller need not add them first):
 *   LSTM  acts = the forward's pre after the step, c the previous cell,
 *         c_out the step's: dc holds dL/dc_out on entry and dL/dc on
 *         return; dgx (B, 4H) gets dL/dpre; dhp (B, H) gets 0.
 *   GRU   acts = the forward's cache, h the previous state: dgx (B, 3H)
 *         gets dL/dpre, dgh (B, 3H) dL/dgh, dhp (B, H) z g (the direct
 *         part of dL/dh; the caller adds dgh W_hh).
 *   RNN   acts = the forward's pre after the step: dgx (B, H), dhp = 0.
 *
 * float32 with the fast path on (fr_set_fast_path) runs the fast kernels'
 * gate math (src/fast/cell.h: the recurrent layers' fast loops' exp,
 * sigmoid, tanh and FMAs, the same bits at either vector width), else the
 * C library's exp and tanh, each product and sum rounded. Rows are independent: neither the thread count
 * nor the rest of the batch changes a bit of a row.
 */
#ifndef FASTRNN_CELL_H
#define FASTRNN_CELL_H

#include <stdint.h>
#include "fastrnn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* FR_EINVAL for an unknown cell, a size below 1, num_threads < 1 or a NULL
 * array the cell reads or writes. */
int fr_cell_step_f32(int num_threads, int cell, int64_t B, int64_t H, float *pre,
                     const float *gh, const float *h, const float *c, float *h_out,
                     float *c_out, float *cache);
int fr_cell_step_f64(int num_threads, int cell, int64_t B, int64_t H, double *pre,
                     const double *gh, const double *h, const double *c, double *h_out,
                     double *c_out, double *cache);
int fr_cell_step_backward_f32(int num_threads, int cell, int64_t B, int64_t H,
                              const float *acts, const float *h, const float *c,
                              const float *c_out, const float *dh, const float *dy,
                              float *dc, float *dgx, float *dgh, float *dhp);
int fr_cell_step_backward_f64(int num_threads, int cell, int64_t B, int64_t H,
                              const double *acts, const double *h, const double *c,
                              const double *c_out, const double *dh, const double *dy,
                              double *dc, double *dgx, double *dgh, double *dhp);

#ifdef __cplusplus
}
#endif
#endif /* FASTRNN_CELL_H */
