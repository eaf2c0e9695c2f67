/*
 * Internal: the fast float32 path, the time loops and GEMM written once over
 * a vector of VW floats (isa.h and the headers after it) and built twice,
 * kernels_avx512.c (VW = 16, AVX-512 F/VL/DQ) and kernels_avx2.c (VW = 8,
 * AVX2 + FMA); dispatch.c picks one at run time. portable/rnn_impl.h calls
 * it for float32 when the CPU has AVX2 and FMA, the fast path is on
 * (fr_set_fast_path) and the cell is a default one. Not part of the public
 * API; scheduling and scratch sizes: schedule.h.
 *
 * Each OpenMP thread owns a slice of hidden units [j0, j1) for the whole
 * sequence: it computes the recurrent product for its units' gate rows of
 * W_hh (which stay in its cache), then the gate math for those units, then
 * meets the others once per step (meet(), schedule.h). No BLAS call inside
 * the loop. Where fr_fast_by_rows says so, the batch is split instead:
 * each thread runs every unit of its own sequences, with no meeting
 * between steps.
 *
 * Every value is computed by the same instruction sequence whatever the
 * slicing and the vector width, so neither the thread count nor the width
 * changes the bits of a result.
 */
#ifndef FASTRNN_FAST_H
#define FASTRNN_FAST_H

#include "fastrnn.h"
#include "fast/schedule.h"

/* Internal to the library: hidden symbols, so that calls between its files
 * are direct (no PLT) and calls within a file may be inlined. */
#pragma GCC visibility push(hidden)

/* 1 when this CPU runs the fast kernels (AVX2 and FMA at least; checked
 * once). */
int fr_fast_available(void);

/* The vector width in use (8 or 16; fr_set_fast_width), 0 without fast
 * kernels. */
int fr_fast_width(void);

/*
 * fr_fast_forward_f32: the time loop of one layer and direction, forward.
 * On entry Xp (T,B,G*H) holds bias + x W_ih^T. States as in layer_forward
 * (portable/rnn_impl.h):
 *   training  (gates != NULL): hs, cs (T+1,B,H) slots, initial state in place
 *   inference (gates == NULL): h_a holds the initial h, h_b is scratch (B,H),
 *                              c_buf the initial c, updated in place
 *   Gh        SCRATCH (B,G*H) for GRU
 *   bhn       GRU's b_hn or NULL
 *   h0_zero   the initial h is known to be zero (skip the first product)
 * Writes y rows (step t of sequence b at y + t*yts + b*ybs, output 0 past
 * lengths), the gate cache in
 * training, and the final states into hn, cn. Wp: SCRATCH of
 * fr_fast_fwd_pack_len(d) floats, 64-byte aligned, for W_hh packed in row
 * panels.
 * x (T,B,In) and W (= W_ih) non-NULL: Xp holds only the bias and the loop
 * adds x W_ih^T itself, each thread for its own units, or, when the batch
 * is split between threads, for its own rows at each step
 * (fr_fast_rows_project), in projection mode 1 or 2 (fr_fast_proj_mode; in
 * mode 2 Wp also holds fr_fast_ih_floats(d, In) more floats).
 * pk: NULL, or this layer and direction's weights packed once by
 * fr_fast_pack_f32 at the width in use (fr_fast_width): the loop then reads
 * their panels and packs nothing, with the same bits.
 */
/*
 * fr_fast_backward_f32: the reverse walk of one layer and direction,
 * backward (layer_backward in portable/rnn_impl.h): fills dGx, and dGh for
 * GRU (for LSTM/RNN pass dGh == dGx), for every step; dh holds dL/dh_n on
 * entry, dhp is a second (B,H) buffer, dc (LSTM) holds dL/dc_n and ends as
 * dL/dc0. Rp: SCRATCH of fr_fast_pack_len(d) floats, 64-byte aligned, for
 * W_hh packed in column panels. dy: step t of sequence b at dy + t*dts +
 * b*dbs. Returns the buffer (dh or dhp) that ends holding dL/dh0.
 */

/* fr_fast_sgemm: C(M,N) = op(A) op(B) (beta 0) or C += op(A) op(B) (beta 1),
 * row-major, ta/tb 'N' or 'T' as in BLAS, on nt OpenMP threads, with the
 * fast loops' packed panel tiles: the bits do not depend on nt. With bias
 * (N floats, beta 0): C = bias in every row + op(A) op(B), the bits of
 * beta 1 on a C filled with that row, without the pass that fills it.
 * Returns 0, or -1 when its scratch could not be allocated (C unchanged:
 * the caller uses BLAS).
 *
 * fr_fast_pack_f32(d, R, W, In, P): W_hh (R) and W_ih (W, (G*H, In)) of one
 * layer and direction packed into P (fr_fast_packed_floats(d, In) floats,
 * 64-byte aligned) at the width in use, for fr_fast_forward_f32's pk. */

/* fr_fast_attn_rows_f32: rows [m0, m1) of attention pooling's z (A floats
 * each): tanh over z and each row's score into s (fastrnn_pool.h; pool.h).
 * Called only where fr_fast_available(). */

/* fr_fast_cell_step_f32, fr_fast_cell_step_backward_f32: one row of one
 * step's gate math after its products (fastrnn_cell.h; step.h). Called
 * only where fr_fast_available(). */

/* The seven entry points, declared once for each name suffix S: none for
 * dispatch.c's dispatchers (which portable/rnn_impl.h calls), _avx2 and
 * _avx512 for the two builds of the kernels (FR_SFX). */
#define FR_FAST_ENTRY_POINTS(S)                                                          \
    void fr_fast_forward_f32##S(const fr_desc *d, int dir, const float *R,               \
                                const float *bhn, float *Xp, float *Gh, int h0_zero,     \
                                float *h_a, float *h_b, float *c_buf, float *hs,         \
                                float *cs, float *gates, float *y, int64_t yts,          \
                                int64_t ybs, float *hn, float *cn, float *Wp,            \
                                const float *x, int64_t In, const float *W,              \
                                const float *pk);                                        \
    void fr_fast_pack_f32##S(const fr_desc *d, const float *R, const float *W,           \
                             int64_t In, float *P);                                      \
    float *fr_fast_backward_f32##S(const fr_desc *d, int dir, const float *R,            \
                                   const float *gates, const float *hs, const float *cs, \
                                   const float *dy, int64_t dts, int64_t dbs,            \
                                   float *dGx, float *dGh, float *dh, float *dhp,        \
                                   float *dc, float *Rp);                                \
    int fr_fast_sgemm##S(int nt, char ta, char tb, int64_t M, int64_t N, int64_t K,      \
                         const float *A, int64_t lda, const float *B, int64_t ldb,       \
                         int beta, float *C, int64_t ldc, const float *bias);            \
    void fr_fast_attn_rows_f32##S(int64_t A, float *z, const float *v, int64_t m0,        \
                                  int64_t m1, float *s);                                 \
    void fr_fast_cell_step_f32##S(int cell, int64_t H, float *pre, const float *gh,      \
                                  const float *h, const float *c, float *h_out,          \
                                  float *c_out, float *cache);                           \
    void fr_fast_cell_step_backward_f32##S(int cell, int64_t H, const float *acts,       \
                                           const float *h, const float *c,               \
                                           const float *c_out, const float *dh,          \
                                           const float *dy, float *dc, float *dgx,       \
                                           float *dgh, float *dhp);
FR_FAST_ENTRY_POINTS()
FR_FAST_ENTRY_POINTS(_avx2)
FR_FAST_ENTRY_POINTS(_avx512)

/* fr_fast_dgemm (dgemm.c): the float64 GEMM of batch-invariant inference,
 * fr_fast_sgemm's contract in float64 (beta 0 or 1, bias), each output one
 * FMA chain over k in order from its init, so a row of C depends on its row
 * of op(A) alone; AVX2 + FMA, built once. Returns -1 (C unchanged) without
 * AVX2/FMA or its scratch: the caller then runs the scalar chain (the same
 * bits). */
int fr_fast_dgemm(int nt, char ta, char tb, int64_t M, int64_t N, int64_t K,
                  const double *A, int64_t lda, const double *B, int64_t ldb,
                  int beta, double *C, int64_t ldc, const double *bias);

#pragma GCC visibility pop

#endif /* FASTRNN_FAST_H */
