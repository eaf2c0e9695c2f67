/*
 * Internal: the AVX2/FMA float32 time loop (rnn_fast.c), chosen at run time
 * by rnn_impl.h when the CPU has AVX2 and FMA. Not part of the public API.
 *
 * Each OpenMP thread owns a slice of hidden units [j0, j1) for the whole
 * sequence: it computes the recurrent product for its units' gate rows of
 * W_hh (which stay in its cache), then the gate math for those units, then
 * meets the others at one barrier per step. No BLAS call inside the loop.
 *
 * Every value is computed by the same instruction sequence whatever the
 * slicing, so the thread count never changes the bits of a result.
 */
#ifndef FASTRNN_FAST_H
#define FASTRNN_FAST_H

#include "fastrnn.h"

/* 1 when this CPU runs the AVX2/FMA kernels (checked once). */
int fr_fast_available(void);

/* Sequences shorter than this use W_hh unpacked (dot-product tiles): packing
 * costs about as much as one step's product. */
#define FR_FAST_PACK_MIN_T 4

/* Input projections with at most this many rows (T*B) skip BLAS (OpenBLAS
 * spends ~100 us packing W for a single row): the time loop does them. */
#define FR_FAST_SMALL_M 8


/*
 * The time loop of one layer and direction, forward. On entry Xp (T,B,G*H)
 * holds bias + x W_ih^T. States as in layer_forward (rnn_impl.h):
 *   training  (gates != NULL): hs, cs (T+1,B,H) slots, initial state in place
 *   inference (gates == NULL): h_a holds the initial h, h_b is scratch (B,H),
 *                              c_buf the initial c, updated in place
 *   Gh        SCRATCH (B,G*H) for GRU
 *   bhn       GRU's b_hn or NULL
 *   h0_zero   the initial h is known to be zero (skip the first product)
 * Writes y rows (stride ldy, output 0 past lengths), the gate cache in
 * training, and the final states into hn, cn. Wp: SCRATCH of
 * fr_fast_pack_len(d) floats, 32-byte aligned, for W_hh packed in row panels.
 * x (T,B,In) and W (= W_ih) non-NULL: Xp holds only the bias and the loop
 * adds x W_ih^T itself, each thread for its own units (short inputs).
 */
void fr_fast_forward_f32(const fr_desc *d, int dir, const float *R, const float *bhn,
                         float *Xp, float *Gh, int h0_zero,
                         float *h_a, float *h_b, float *c_buf,
                         float *hs, float *cs, float *gates,
                         float *y, int64_t ldy, float *hn, float *cn, float *Wp,
                         const float *x, int64_t In, const float *W);

/*
 * The reverse walk of one layer and direction, backward (layer_backward in
 * rnn_impl.h): fills dGx, and dGh for GRU (for LSTM/RNN pass dGh == dGx), for
 * every step; dh holds dL/dh_n on entry, dhp is a second (B,H) buffer, dc
 * (LSTM) holds dL/dc_n and ends as dL/dc0. Rp: SCRATCH of
 * fr_fast_pack_len(d) floats, 32-byte aligned, for W_hh packed in column
 * panels. Returns the buffer (dh or dhp) that ends holding dL/dh0.
 */
float *fr_fast_backward_f32(const fr_desc *d, int dir, const float *R,
                            const float *gates, const float *hs, const float *cs,
                            const float *dy, int64_t ldy,
                            float *dGx, float *dGh, float *dh, float *dhp, float *dc,
                            float *Rp);

/* Floats of W_hh packed in 8-wide panels (G*H by H, H rounded up to 8). */
#define fr_fast_pack_floats(d) ((int64_t)fr_num_gates((d)->cell) * (d)->H * (((d)->H + 7) / 8 * 8))

/* Scratch of the fast loops: the packed W_hh, then 2*B int64 for ordering a
 * variable-length batch by length, plus 8 floats for 32-byte alignment. */
#define fr_fast_pack_len(d) (fr_fast_pack_floats(d) + 4 * (d)->B + 8)

#endif
