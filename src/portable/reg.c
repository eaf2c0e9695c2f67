/* fastrnn regularized kernels (zoneout, recurrent dropout, layer-normalized
 * LSTM): shared helpers, then the float32 and float64 kernels instantiated
 * from one source (reg_impl.h). See fastrnn_reg.h for the API and
 * equations. The GEMMs are the portable path's (gemm.h, BLAS), the thread
 * pin and the step team's note the library's (runtime.h). */
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "fastrnn_reg.h"
#include "fast/tuning.h"
#include "portable/gemm.h"
#include "runtime/runtime.h"

int frr_num_gates(int cell)
{
    switch (cell) {
    case FRR_LSTM:
    case FRR_LNLSTM: return 4;
    case FRR_GRU: return 3;
    default: return 0;
    }
}

int frr_num_params(int cell)
{
    switch (cell) {
    case FRR_LSTM:
    case FRR_GRU: return 4;
    case FRR_LNLSTM: return 7;
    default: return 0;
    }
}

int frr_check_desc(const frr_desc *d)
{
    if (d == NULL) return FR_EINVAL;
    if (frr_num_gates(d->cell) == 0) return FR_EINVAL;
    if (d->T < 1 || d->B < 1 || d->I_ < 1 || d->H < 1) return FR_EINVAL;
    if (d->reverse != 0 && d->reverse != 1) return FR_EINVAL;
    if (d->num_threads < 1) return FR_EINVAL;
    if (!(d->zoneout >= 0.0 && d->zoneout <= 1.0)) return FR_EINVAL; /* NaN too */
    const int64_t lim = INT_MAX;
    if (d->T > lim || d->B > lim || d->I_ > lim || d->H > lim) return FR_ETOOBIG;
    if (d->T * d->B > lim || (int64_t)4 * d->H > lim) return FR_ETOOBIG;
    /* the largest buffers, (T,B,4H) several times and (T,B,I), stay inside int64 */
    if (d->T * d->B > ((int64_t)1 << 60) / ((int64_t)16 * d->H + d->I_ + 8))
        return FR_ETOOBIG;
    if (d->lengths) {
        for (int64_t b = 0; b < d->B; b++)
            if (d->lengths[b] < 1 || d->lengths[b] > d->T) return FR_EINVAL;
    }
    return FR_OK;
}

int64_t frr_cache_len(const frr_desc *d)
{
    if (frr_check_desc(d) != FR_OK) return -1;
    const int64_t T = d->T, B = d->B, H = d->H, TB = T * B;
    const int64_t states = (T + 1) * B * H;
    switch (d->cell) {
    case FRR_LSTM: return TB * 4 * H + 2 * states;
    case FRR_GRU: return TB * 4 * H + states;
    default: return 3 * TB * 4 * H + TB * H + TB * 3 + 2 * states;
    }
}

/* Forward scratch: Xp (T,B,G*H) unless it lives in the cache (training LSTM
 * keeps it in the gate cache, training LNLSTM in nx), Gh (B,G*H), then h, c
 * and hd (B,H). */
int64_t frr_forward_work_len(const frr_desc *d, int training)
{
    if (frr_check_desc(d) != FR_OK) return -1;
    const int64_t T = d->T, B = d->B, H = d->H;
    const int64_t GX = (int64_t)frr_num_gates(d->cell) * H;
    const int xp_in_work = !training || d->cell == FRR_GRU;
    return (xp_in_work ? T * B * GX : 0) + B * GX + 3 * B * H;
}

/* Backward scratch: dG (T,B,G*H), a second (T,B,G*H) for GRU (recurrent
 * side) and LNLSTM (gradient of the recurrent projection), dcn (T,B,H) for
 * LNLSTM, the recurrent GEMM inputs hd (T,B,H), then dh, dh_direct, dc and
 * the product dG W_hh (B,H). */
int64_t frr_backward_work_len(const frr_desc *d)
{
    if (frr_check_desc(d) != FR_OK) return -1;
    const int64_t T = d->T, B = d->B, H = d->H, TB = T * B;
    const int64_t GX = (int64_t)frr_num_gates(d->cell) * H;
    return TB * GX * (d->cell == FRR_LSTM ? 1 : 2) + (d->cell == FRR_LNLSTM ? TB * H : 0)
           + TB * H + 4 * B * H;
}

/* ---- float32 ---- */
#define REAL float
#define FN(name) name##_f32
#define EXP expf
#define TANH tanhf
#define SQRT sqrtf
#define PGEMM_MODE fr_pgemm_f32 /* its first argument: FR_GEMM_BLAS or _FIXED */
#define PGEMM(...) PGEMM_MODE(FR_GEMM_BLAS, __VA_ARGS__) /* BLAS, as the portable path */
#define GEMM_PTR fr_blas_sgemm
#include "portable/reg_impl.h"
#undef REAL
#undef FN
#undef EXP
#undef TANH
#undef SQRT
#undef PGEMM
#undef PGEMM_MODE
#undef GEMM_PTR

/* ---- float64 ---- */
#define REAL double
#define FN(name) name##_f64
#define EXP exp
#define TANH tanh
#define SQRT sqrt
#define PGEMM_MODE fr_pgemm_f64
#define PGEMM(...) PGEMM_MODE(FR_GEMM_BLAS, __VA_ARGS__)
#define GEMM_PTR fr_blas_dgemm
#include "portable/reg_impl.h"
#undef REAL
#undef FN
#undef EXP
#undef TANH
#undef SQRT
#undef PGEMM
#undef PGEMM_MODE
#undef GEMM_PTR
