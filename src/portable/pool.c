/*
 * Attention pooling after its product (fastrnn_pool.h), float32 and
 * float64 from one body: each row's tanh and score (float32 on the fast
 * path: fr_fast_attn_rows_f32), the threads meet, then each sequence's
 * softmax and weighted sum. Products and sums round one at a time (no
 * FMA): the loops vectorize on any x86-64 and give the header's bits.
 */
#include <math.h>
#include <stdint.h>
#include "fastrnn_pool.h"
#include "portable/attn_impl.h"
#include "fast/fast.h"
#include "fast/tuning.h"
#include "runtime/runtime.h"

#pragma GCC optimize("fp-contract=off")

#define POOL_BODY(REAL, TANH, EXP, ROWS, SEQ, NAME, FAST)                               \
FR_DOT16_DEF(REAL, ROWS##_dot)                                                          \
FR_SOFTMAX_DEF(REAL, EXP, SEQ##_softmax)                                                \
                                                                                        \
/* rows [m0, m1): u = tanh(z) over z, s[m] = u . v in 16 lanes (the header) */          \
static void ROWS##_c(int64_t A, REAL *z, const REAL *v, int64_t m0, int64_t m1,        \
                     REAL *s)                                                           \
{                                                                                       \
    for (int64_t m = m0; m < m1; m++) {                                                 \
        REAL *u = z + m * A;                                                            \
        for (int64_t k = 0; k < A; k++) u[k] = TANH(u[k]);                              \
        s[m] = ROWS##_dot(u, v, A);                                                     \
    }                                                                                   \
}                                                                                       \
                                                                                        \
static void ROWS(int fast, int64_t A, REAL *z, const REAL *v, int64_t m0, int64_t m1,   \
                 REAL *s)                                                               \
{                                                                                       \
    if (fast)                                                                           \
        POOL_FAST_ROWS_##REAL(A, z, v, m0, m1, s);                                      \
    else                                                                                \
        ROWS##_c(A, z, v, m0, m1, s);                                                   \
}                                                                                       \
                                                                                        \
/* sequence b: the scores in a (T) become its weights, y (F) its sum */                 \
static void SEQ(int64_t T, int64_t F, int64_t L, const REAL *x, REAL *a, REAL *y)       \
{                                                                                       \
    SEQ##_softmax(a, L);                                                                \
    for (int64_t t = L; t < T; t++) a[t] = 0;                                           \
    for (int64_t f = 0; f < F; f++) y[f] = 0;                                           \
    for (int64_t t = 0; t < L; t++) {                                                   \
        const REAL at = a[t], *xt = x + t * F;                                          \
        for (int64_t f = 0; f < F; f++) y[f] = y[f] + at * xt[f];                       \
    }                                                                                   \
}                                                                                       \
                                                                                        \
int NAME(int num_threads, int64_t B, int64_t T, int64_t A, int64_t F, REAL *z,          \
         const REAL *v, const REAL *x, const int64_t *lengths, REAL *a, REAL *y)        \
{                                                                                       \
    if (num_threads < 1 || B < 1 || T < 1 || A < 1 || F < 1 || !z || !v || !x || !a     \
        || !y)                                                                          \
        return FR_EINVAL;                                                               \
    for (int64_t b = 0; lengths != NULL && b < B; b++)                                  \
        if (lengths[b] < 1 || lengths[b] > T) return FR_EINVAL;                         \
    const int nt = (double)B * T * A >= FR_POOL_PAR_MIN ? num_threads : 1;              \
    const int fast = FAST;                                                              \
    _Pragma("omp parallel num_threads(nt) if (fr_omp_going(nt, nt > 1))")               \
    {                                                                                   \
        int tid, nth;                                                                   \
        fr_omp_me(&tid, &nth);                                                          \
        const int64_t M = B * T;                                                        \
        ROWS(fast, A, z, v, M * tid / nth, M * (tid + 1) / nth, a);                     \
        _Pragma("omp barrier")                                                          \
        for (int64_t b = B * tid / nth; b < B * (tid + 1) / nth; b++)                   \
            SEQ(T, F, lengths != NULL ? lengths[b] : T, x + b * T * F, a + b * T,       \
                y + b * F);                                                             \
    }                                                                                   \
    return FR_OK;                                                                       \
}

#define POOL_FAST_ROWS_float(A, z, v, m0, m1, s) fr_fast_attn_rows_f32(A, z, v, m0, m1, s)
#define POOL_FAST_ROWS_double(A, z, v, m0, m1, s) ((void)0)

/* float32 rows run the fast kernels' tanh where the fast path is on */
POOL_BODY(float, tanhf, expf, rows_f32, seq_f32, fr_attn_pool_f32,
          fr_fast_available() && fr_fast_path_on())
POOL_BODY(double, tanh, exp, rows_f64, seq_f64, fr_attn_pool_f64, 0)
