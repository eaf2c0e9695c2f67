/*
 * fastrnn regularized recurrent kernels: one layer, one direction, float32
 * and float64, plain C + OpenMP + BLAS GEMM (the library's BLAS, registered
 * once with fr_set_blas, fastrnn.h). Forward inference, forward training
 * (keeping a cache) and backward through time for three cells:
 *
 *   FRR_LSTM    torch's LSTM (gates i,f,g,o)
 *   FRR_GRU     torch's GRU (gates r,z,n, b_hn inside the reset product)
 *   FRR_LNLSTM  layer-normalized LSTM (haste's LayerNormLSTM, torch gate order)
 *
 * each with zoneout and recurrent (variational) dropout.
 *
 * Shape letters: T steps, B batch, I input size, H hidden size, G gates
 * (4 LSTM and LNLSTM, 3 GRU). Arrays are row-major and contiguous, sequences
 * time-major (T,B,.).
 *
 * Equations of one active step t of sequence b (h, c: the previous state):
 *   hd  = h * r                  r (B,H): recurrent dropout mask, already
 *                                scaled by 1/(1-p) (training), else r = 1
 *   LSTM:   [i,f,g,o] = act(x W_ih^T + b_ih + hd W_hh^T + b_hh)
 *           c' = f*c + i*g,  h~ = o*tanh(c')
 *   GRU:    r_ = s(x W_ir^T + b_ir + hd W_hr^T + b_hr), z likewise,
 *           n = tanh(x W_in^T + b_in + r_*(hd W_hn^T + b_hn)),
 *           h~ = (1-z)*n + z*h   (the undropped h)
 *   LNLSTM: [i,f,g,o] = act(LN(x W_ih^T)*gamma_ih + LN(hd W_hh^T)*gamma_hh + b)
 *           c' = f*c + i*g,  h~ = o*tanh(LN(c')*gamma_c + beta_c)
 *           LN(v) = (v - mean(v)) / sqrt(var(v) + 1e-5) over the row (4H for
 *           the gate projections, H for c'), var biased, as haste.
 *   zoneout (h only; c is never zoned out, as haste):
 *     training   h' = m*h + (1-m)*h~   m = zmask[t,b,:] (1 = keep the old value)
 *     inference  h' = p*h + (1-p)*h~   p = d->zoneout
 *     no zoneout h' = h~
 *   y_t = h'  (the zoned-out state)
 *
 * Variable lengths: step t of sequence b is active when t < lengths[b]. An
 * inactive step keeps h and c unchanged and writes an output of 0.
 * Direction: reverse = 0 walks t = 0..T-1; reverse = 1 walks t = T-1..0, so
 * (steps past a length being inactive) each sequence starts at its last valid
 * step from the initial state and ends at t = 0: the caller passes x as it is,
 * no per-sequence reversal. Masks are indexed by the real t, not the walk.
 *
 * Parameters: an array w of frr_num_params(cell) pointers (IN; gradients: dw,
 * ACCUMULATE (+=), same order and shapes):
 *   LSTM, GRU: w[0] W_ih (G*H,I), w[1] W_hh (G*H,H), w[2] b_ih (G*H),
 *              w[3] b_hh (G*H); w[2] and w[3] both NULL: no bias
 *   LNLSTM:    w[0] W_ih (4H,I), w[1] W_hh (4H,H), w[2] b (4H) or NULL,
 *              w[3] gamma_ih (4H), w[4] gamma_hh (4H), w[5] gamma_c (H),
 *              w[6] beta_c (H)
 *
 * The caller owns every buffer; the kernels never allocate, print or exit and
 * return FR_OK or a negative FR_E* (fastrnn.h). Every parallel pass gives each
 * OpenMP thread its own rows and every GEMM is cut by its size alone, so the
 * thread count never changes a bit of any result.
 */
#ifndef FASTRNN_REG_H
#define FASTRNN_REG_H

#include <stdint.h>
#include "fastrnn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* cell kinds */
#define FRR_LSTM 0
#define FRR_GRU 1
#define FRR_LNLSTM 2

/* the epsilon of every layer norm (haste's) */
#define FRR_LN_EPS 1e-5

typedef struct {
    int cell;                 /* FRR_* */
    int64_t T, B, I_, H;      /* I_: input size (complex.h reserves I) */
    int reverse;              /* 0 forward in time, 1 backward (see above) */
    int num_threads;          /* OpenMP threads, >= 1 */
    double zoneout;           /* inference zoneout probability p in [0, 1] */
    const int64_t *lengths;   /* IN (B) values in 1..T, or NULL: all T */
    int batch_invariant;      /* 1: the forward's GEMMs in a fixed order, so each
                                 sequence's bits do not depend on the batch
                                 (fastrnn.h, fr_set_batch_invariant) */
} frr_desc;

/* FR_OK when the descriptor is usable (known cell, sizes >= 1, reverse 0/1,
 * zoneout in [0,1], lengths in 1..T, GEMM sizes within BLAS's int). */
int frr_check_desc(const frr_desc *d);

/* Gates G (4 or 3) and parameter count (4 or 7) of a cell; 0 when unknown. */
int frr_num_gates(int cell);
int frr_num_params(int cell);

/* Element counts (of the kernel's REAL type) of the caller-owned buffers,
 * -1 for an invalid descriptor.
 * Cache layout (training), for the record:
 *   LSTM:   gates (T,B,4H) i,f,g,o | hs (T+1,B,H) | cs (T+1,B,H)
 *   GRU:    gates (T,B,4H) r,z,n,W_hn h+b_hn | hs (T+1,B,H)
 *   LNLSTM: gates (T,B,4H) | nx (T,B,4H) | nh (T,B,4H) | nc (T,B,H) |
 *           rstd (T,B,3) | hs (T+1,B,H) | cs (T+1,B,H)
 * hs/cs slot t holds the state before step t (forward) or after it (reverse). */
int64_t frr_cache_len(const frr_desc *d);
int64_t frr_forward_work_len(const frr_desc *d, int training);
int64_t frr_backward_work_len(const frr_desc *d);

/*
 * Forward of one layer and direction.
 *   x      IN  (T,B,I)
 *   w      IN  parameters (see above)
 *   h0, c0 IN  (B,H) or NULL (zeros); c0 LSTM/LNLSTM only
 *   zmask  IN  (T,B,H) zoneout mask (1 keeps the old h) or NULL; training only
 *   rmask  IN  (B,H) recurrent dropout mask, scaled, or NULL; training only
 *   y      OUT (T,B,ldy): columns [0,H) of each row (pass y + dir*H to write
 *              one direction of a bidirectional output), ldy >= H
 *   hn, cn OUT (B,H) final states; cn NULL for GRU, required otherwise
 *   cache  OUT frr_cache_len(d) elements (training), or NULL (inference: masks
 *              must be NULL, zoneout mixes with d->zoneout)
 *   work   SCRATCH frr_forward_work_len(d, cache != NULL) elements
 */
int frr_forward_f32(const frr_desc *d, const float *x, const float *const *w,
                    const float *h0, const float *c0,
                    const float *zmask, const float *rmask,
                    float *y, int64_t ldy, float *hn, float *cn,
                    float *cache, float *work);
int frr_forward_f64(const frr_desc *d, const double *x, const double *const *w,
                    const double *h0, const double *c0,
                    const double *zmask, const double *rmask,
                    double *y, int64_t ldy, double *hn, double *cn,
                    double *cache, double *work);

/*
 * Backward through time after a training forward with the same d, x, w and
 * masks, whose cache is given.
 *   dy       IN  (T,B,ldy) gradient of y, columns [0,H) (ignored past lengths)
 *   dhn, dcn IN  (B,H) gradients of the final states, or NULL (zeros)
 *   dx       OUT (T,B,I); added to what is there when dx_accumulate != 0
 *   dh0, dc0 OUT (B,H) gradients of the initial states, or NULL (not wanted)
 *   dw       ACCUMULATE parameter gradients, same layout as w (bias entries
 *                NULL exactly when w's are)
 *   work     SCRATCH frr_backward_work_len(d) elements
 */
int frr_backward_f32(const frr_desc *d, const float *x, const float *const *w,
                     const float *zmask, const float *rmask, const float *cache,
                     const float *dy, int64_t ldy, const float *dhn, const float *dcn,
                     float *dx, int dx_accumulate, float *dh0, float *dc0,
                     float *const *dw, float *work);
int frr_backward_f64(const frr_desc *d, const double *x, const double *const *w,
                     const double *zmask, const double *rmask, const double *cache,
                     const double *dy, int64_t ldy, const double *dhn, const double *dcn,
                     double *dx, int dx_accumulate, double *dh0, double *dc0,
                     double *const *dw, double *work);

#ifdef __cplusplus
}
#endif
#endif /* FASTRNN_REG_H */
