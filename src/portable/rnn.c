/* fastrnn's recurrent kernels: shared helpers, then the float32 and float64
 * kernels instantiated from one source (rnn_impl.h). See fastrnn.h for the
 * API. */
#include <limits.h>
#include <stdint.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "fastrnn.h"
#include "fast/fast.h"
#include "fast/tuning.h"
#include "portable/gemm.h"
#include "runtime/runtime.h"

/* The forward scratch's buffers each start on a 64-byte line: up to 16
 * elements skipped before each of the 6 (rnn_impl.h, layer_forward). */
#define FR_WORK_ALIGN_PAD 96
#define FR_LINE_ALIGN(T, p) ((T *)(((uintptr_t)(p) + 63) & ~(uintptr_t)63))

int fr_num_gates(int cell)
{
    switch (cell) {
    case FR_CELL_RNN_TANH:
    case FR_CELL_RNN_RELU: return 1;
    case FR_CELL_LSTM: return 4;
    case FR_CELL_GRU: return 3;
    default: return 0;
    }
}

/* Sizes must be positive and every GEMM dimension and leading dimension must
 * fit BLAS's 32-bit int; products are formed in 64 bits. */
int fr_check_desc(const fr_desc *d)
{
    if (d == NULL) return FR_EINVAL;
#ifdef FR_PLANT_UB
    /* tools/sanitize.sh's self-test only (setup.py, FASTRNN_PLANT=ub): a
     * signed overflow on every kernel call, which UBSan must stop the run on */
    { volatile int big = INT_MAX, one = 1; big += one; (void)big; }
#endif
#ifdef FR_PLANT_ASAN
    /* ... (FASTRNN_PLANT=asan): a one-byte heap overflow ASan must stop on
     * (a size known only at run time, so UBSan's object-size check, which
     * would stop it first, cannot see it) */
    {
        const size_t n = 8 + (size_t)(d->T < 0);
        volatile char *p = malloc(n);
        if (p) { p[n] = 1; free((void *)p); }
    }
#endif
    const int G = fr_num_gates(d->cell);
    if (G == 0) return FR_EINVAL;
    if (d->T < 1 || d->B < 1 || d->I_ < 1 || d->H < 1 || d->L < 1) return FR_EINVAL;
    if (d->D != 1 && d->D != 2) return FR_EINVAL;
    if (d->num_threads < 1) return FR_EINVAL;
    if (d->gru_lbr != 0 && d->gru_lbr != 1) return FR_EINVAL;
    if (d->y_batch_first != 0 && d->y_batch_first != 1) return FR_EINVAL;
    if (!(d->clip >= 0)) return FR_EINVAL; /* negative or NaN */
    const int64_t lim = INT_MAX;
    if (d->T > lim || d->B > lim || d->I_ > lim || d->H > lim) return FR_ETOOBIG;
    if (d->T * d->B > lim || (int64_t)4 * d->H > lim || (int64_t)d->D * d->H > lim)
        return FR_ETOOBIG;
    /* the largest buffers, (T,B,4H) and (T,B,D*H), must stay well inside int64 */
    if (d->T * d->B > ((int64_t)1 << 62) / ((int64_t)4 * d->H * d->D + d->I_))
        return FR_ETOOBIG;
    if (d->lengths) {
        for (int64_t b = 0; b < d->B; b++)
            if (d->lengths[b] < 1 || d->lengths[b] > d->T) return FR_EINVAL;
    }
    return FR_OK;
}

/* Scratch of one layer-direction forward: Gh (B,G*H), h, c, h2 (B,H), Xp
 * (T,B,G*H) unless Xp lives in the gate cache (training LSTM/RNN), the
 * compacted x rows of a variable-length batch, then the fast path's packed
 * W_hh (and W_ih when its loop projects x in panels). */
/* Largest layer input size: I for layer 0, D*H above. */
static int64_t fr_max_in(const fr_desc *d)
{
    const int64_t above = d->L > 1 ? (int64_t)d->D * d->H : 0;
    return d->I_ > above ? d->I_ : above;
}

static int64_t fr_layer_work_len(const fr_desc *d, int training)
{
    const int64_t GX = (int64_t)fr_num_gates(d->cell) * d->H;
    const int xp_in_cache = training && d->cell != FR_CELL_GRU;
    return d->B * GX + 3 * d->B * d->H + (xp_in_cache ? 0 : d->T * d->B * GX)
           + (d->lengths ? d->T * d->B * fr_max_in(d) : 0) + fr_fast_fwd_pack_len(d)
           + fr_fast_ih_floats(d, fr_max_in(d)) + FR_WORK_ALIGN_PAD;
}

/* Scratch of one layer-direction backward: dG (T,B,G*H) (twice for GRU),
 * dh, dh_prev, dc (B,H), then the fast path's packed W_hh. */
static int64_t fr_layer_bwork_len(const fr_desc *d)
{
    const int64_t GX = (int64_t)fr_num_gates(d->cell) * d->H;
    return d->T * d->B * GX * (d->cell == FR_CELL_GRU ? 2 : 1) + 3 * d->B * d->H
           + fr_fast_pack_len(d);
}

/* Are gate pre-activations clamped (clip > 0 and finite)? */
static int fr_clipping(const fr_desc *d)
{
    return d->clip > 0 && d->clip < HUGE_VAL;
}

/* The default cells, which the AVX2 fast path handles; it declines the
 * reset-first GRU and clipping (the portable path runs them). */
static int fr_fast_cell(const fr_desc *d)
{
    return !(d->cell == FR_CELL_GRU && !d->gru_lbr) && !fr_clipping(d);
}

/* Training cache of one layer and direction: the activated gates (T,B,GC)
 * (GRU: GC = 4H, r, z, n and W_hn h + b_hn, or r*h when gru_lbr = 0), the
 * states h (T+1,B,H), for LSTM c (T+1,B,H), and when clipping the mask
 * (T,B,G*H): 1 where a pre-activation was inside [-clip, clip], else 0. */
static int64_t fr_cache_per_k(const fr_desc *d)
{
    const int64_t T = d->T, B = d->B, H = d->H;
    const int64_t GX = (int64_t)fr_num_gates(d->cell) * H;
    const int64_t GC = d->cell == FR_CELL_GRU ? 4 * H : GX;
    return T * B * GC + (T + 1) * B * H * (d->cell == FR_CELL_LSTM ? 2 : 1)
           + (fr_clipping(d) ? T * B * GX : 0);
}

int64_t fr_cache_len(const fr_desc *d)
{
    if (fr_check_desc(d) != FR_OK) return -1;
    const int64_t T = d->T, B = d->B, H = d->H;
    return (int64_t)(d->L - 1) * T * B * d->D * H + (int64_t)d->L * d->D * fr_cache_per_k(d);
}

/* Do a bidirectional layer's two directions run side by side, one thread
 * each (forward passes)? Where a direction's time loop is too small to
 * split (FR_FAST_MIN_WORK, the fast loops' threshold): its threads would
 * otherwise run one direction after the other. Independent of the thread
 * count, since the scratch (fr_forward_work_len) depends on it. */
static int fr_dirs_side_by_side(const fr_desc *d)
{
    return d->D == 2
           && d->B * (int64_t)fr_num_gates(d->cell) * d->H * d->H < FR_FAST_MIN_WORK;
}

int64_t fr_forward_work_len(const fr_desc *d, int training)
{
    if (fr_check_desc(d) != FR_OK) return -1;
    const int64_t pp = (!training && d->L > 1) ? 2 * d->T * d->B * d->D * d->H : 0;
    /* the second direction's own layer scratch, after the ping-pong */
    return fr_layer_work_len(d, training) * (fr_dirs_side_by_side(d) ? 2 : 1) + pp;
}

int64_t fr_backward_work_len(const fr_desc *d)
{
    if (fr_check_desc(d) != FR_OK) return -1;
    const int64_t pp = d->L > 1 ? 2 * d->T * d->B * d->D * d->H : 0;
    return fr_layer_bwork_len(d) + pp;
}

/* ---- float32 ---- */
#define REAL float
#define FR_REAL_IS_FLOAT 1
#define FN(name) name##_f32
#define EXP expf
#define TANH tanhf
#define GEMM_PTR fr_blas_sgemm
#include "portable/rnn_impl.h"
#undef REAL
#undef FN
#undef EXP
#undef TANH
#undef GEMM_PTR
#undef FR_REAL_IS_FLOAT

/* ---- weights packed once (float32 fast loops) ---- */

/* The fast loops run for d (float32 kernels on, a cell they take)? */
static int fr_fast_runs(const fr_desc *d)
{
    return fr_fast_path_on() && fr_fast_cell(d) && fr_fast_width() > 0;
}

/* Input size of layer/direction k: I for the first layer, D*H after it. */
static int64_t in_of(const fr_desc *d, int k)
{
    return k < d->D ? d->I_ : (int64_t)d->D * d->H;
}

int64_t fr_packed_len_f32(const fr_desc *d, int k)
{
    if (fr_check_desc(d) != FR_OK || k < 0 || k >= d->L * d->D) return -1;
    if (!fr_fast_runs(d)) return 0;
    return fr_fast_packed_floats(d, in_of(d, k));
}

int fr_pack_f32(const fr_desc *d, const float *const *w_ih, const float *const *w_hh,
                float *const *packed)
{
    if (fr_check_desc(d) != FR_OK || !w_ih || !w_hh || !packed) return FR_EINVAL;
    if (!fr_fast_runs(d)) return 0;
    const int K = d->L * d->D;
    for (int k = 0; k < K; k++)
        if (!w_ih[k] || !w_hh[k] || !packed[k] || ((uintptr_t)packed[k] & 63))
            return FR_EINVAL;
    for (int k = 0; k < K; k++)
        fr_fast_pack_f32(d, w_hh[k], w_ih[k], in_of(d, k), packed[k]);
    return fr_fast_width();
}

int fr_forward_packed_f32(const fr_desc *d, const float *x,
                          const float *const *w_ih, const float *const *w_hh,
                          const float *const *b_ih, const float *const *b_hh,
                          const float *h0, const float *c0, const float *dropmask,
                          float *y, float *hn, float *cn, float *cache, float *work,
                          const float *const *packed, int width)
{
    /* packed for another width than the one in use, or the fast loops do
     * not run: the call packs as it would without them */
    if (packed && (width <= 0 || width != fr_fast_width() || !fr_fast_runs(d)))
        packed = NULL;
    return forward_all_f32(d, x, w_ih, w_hh, b_ih, b_hh, h0, c0, dropmask, y, hn, cn,
                           cache, work, packed, NULL);
}

int fr_rows_table_f32(const fr_desc *d, const float *w_ih, const float *b_ih,
                      const float *b_hh, const float *E, int64_t V, float *out)
{
    if (fr_check_desc(d) != FR_OK || !w_ih || !E || !out || V < 1 || (!b_ih && !b_hh)
        || !fr_fast_path_on() || !fr_fast_cell(d))
        return FR_EINVAL;
    const int64_t In = d->I_, GX = (int64_t)fr_num_gates(d->cell) * d->H;
    if (V > INT_MAX) return FR_ETOOBIG;
    float *row = malloc((size_t)GX * sizeof(float));
    if (row == NULL) return FR_EINVAL;
    bias_row_f32(d, b_ih, b_hh, row);
    /* project_bias's GEMM: each output the bias followed by one FMA chain
     * over k, whatever the rows, threads or width */
    const int st = fr_fast_sgemm((double)V * GX * In >= FR_FAST_GEMM_PAR_MIN ? d->num_threads : 1,
                                 'N', 'T', V, GX, In, E, In, w_ih, In, 0, out, GX, row);
    free(row);
    return st == 0 ? FR_OK : FR_EINVAL;
}

int fr_forward_rows_f32(const fr_desc *d, const float *x,
                        const float *const *w_ih, const float *const *w_hh,
                        const float *const *b_ih, const float *const *b_hh,
                        const float *h0, const float *c0, float *y, float *hn, float *cn,
                        float *work, const float *const *packed, int width,
                        const fr_rows_in *rows)
{
    const int st = fr_check_desc(d);
    if (st != FR_OK) return st;
    if (rows != NULL) {
        if (!rows->ids || !rows->tables || rows->V < 1) return FR_EINVAL;
        for (int k = 0; k < d->D; k++)
            if (!rows->tables[k]) return FR_EINVAL;
        for (int64_t i = 0; i < d->T * d->B; i++) /* a table row each, never past one */
            if (rows->ids[i] < 0 || rows->ids[i] >= rows->V) return FR_EINVAL;
    }
    if (packed && (width <= 0 || width != fr_fast_width() || !fr_fast_runs(d)))
        packed = NULL;
    return forward_all_f32(d, x, w_ih, w_hh, b_ih, b_hh, h0, c0, NULL, y, hn, cn, NULL, work,
                           packed, rows);
}

/* ---- float64 ---- */
#define REAL double
#define FR_REAL_IS_FLOAT 0
#define FN(name) name##_f64
#define EXP exp
#define TANH tanh
#define GEMM_PTR fr_blas_dgemm
#include "portable/rnn_impl.h"
#undef REAL
#undef FN
#undef EXP
#undef TANH
#undef GEMM_PTR
#undef FR_REAL_IS_FLOAT
