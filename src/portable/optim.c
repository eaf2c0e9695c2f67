/*
 * The fused Adam / AdamW step (fastrnn_optim.h), float32 and float64 from
 * one body. Memory-bound: one read of p, g, m, v (vmax) and one write of
 * p, m, v (vmax), where NumPy's sequence makes about ten passes. Each
 * combination of the step's options gets its own loop (its branches
 * folded away), so the compiler vectorizes it; vector sqrt and division
 * round as the scalar ones do.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include "fastrnn_optim.h"
#include "fast/tuning.h"
#include "runtime/runtime.h"

/* each operation rounds on its own, as NumPy's elementwise ufuncs do */
#pragma GCC optimize("fp-contract=off")

#define ADAM_SPAN(REAL, SQRT, NAME)                                                     \
static inline __attribute__((always_inline)) void NAME(                                 \
    int64_t lo, int64_t hi, REAL *restrict p, const REAL *restrict g, REAL *restrict m,  \
    REAL *restrict v, REAL *restrict vmax, REAL w1, REAL omw1, REAL beta2, REAL omb2,   \
    REAL bc2, REAL eps, REAL neg_step, REAL wd, REAL decay, const int mode,             \
    const int small, const int ams)                                                     \
{                                                                                       \
    for (int64_t i = lo; i < hi; i++) {                                                 \
        REAL d = g[i], pi = p[i];                                                       \
        if (mode == 1) {                                                                \
            const REAL t = pi * wd;                                                     \
            d = d + t;                                                                  \
        } else if (mode == 2) {                                                         \
            pi = pi * decay;                                                            \
        }                                                                               \
        const REAL mi = m[i];                                                           \
        REAL t = d - mi, mn;                                                            \
        if (small) {                                                                    \
            t = t * w1;                                                                 \
            mn = mi + t;                                                                \
        } else {                                                                        \
            t = t * omw1;                                                               \
            mn = d - t;                                                                 \
        }                                                                               \
        m[i] = mn;                                                                      \
        REAL vi = v[i] * beta2, b = d * omb2;                                           \
        b = b * d;                                                                      \
        vi = vi + b;                                                                    \
        v[i] = vi;                                                                      \
        if (ams) {                                                                      \
            const REAL x = vmax[i];                                                     \
            vi = (x != x || x > vi) ? x : vi;                                           \
            vmax[i] = vi;                                                               \
        }                                                                               \
        REAL den = SQRT(vi);                                                            \
        den = den / bc2;                                                                \
        den = den + eps;                                                                \
        REAL step = mn * neg_step;                                                      \
        step = step / den;                                                              \
        p[i] = pi + step;                                                               \
    }                                                                                   \
}

/* The loop of one combination of options, the flags constants. */
#define ADAM_RUN(SPAN, mode, small, ams)                                                \
    SPAN(lo, hi, p, g, m, v, vmax, w1, omw1, beta2, omb2, bc2, eps, neg_step, wd, decay, \
         mode, small, ams)

#define ADAM_FN(REAL, NAME, SPAN)                                                       \
int NAME(int num_threads, int64_t n, REAL *p, const REAL *g, REAL *m, REAL *v,         \
         REAL *vmax, const fr_adam_args *a)                                             \
{                                                                                       \
    if (a == NULL || n < 0 || num_threads < 1 || (n > 0 && (!p || !g || !m || !v))      \
        || (a->amsgrad && n > 0 && vmax == NULL) || a->wd_mode < 0 || a->wd_mode > 2)   \
        return FR_EINVAL;                                                               \
    const REAL w1 = (REAL)a->w1, omw1 = (REAL)1 - w1, beta2 = (REAL)a->beta2;           \
    const REAL omb2 = (REAL)a->omb2, bc2 = (REAL)a->bc2_sqrt, eps = (REAL)a->eps;       \
    const REAL neg_step = (REAL)a->neg_step, wd = (REAL)a->wd, decay = (REAL)a->decay;  \
    const int small = fabs((double)w1) < 0.5, mode = a->wd_mode, ams = a->amsgrad != 0; \
    const int nt = n >= FR_ADAM_PAR_MIN ? num_threads : 1;                              \
    _Pragma("omp parallel num_threads(nt) if (fr_omp_going(nt, nt > 1))")              \
    {                                                                                   \
        int tid, nth;                                                                   \
        fr_omp_me(&tid, &nth);                                                          \
        /* 16-element aligned spans: no cache line written by two threads */         \
        const int64_t per = (n / nth + 15) / 16 * 16;                                   \
        const int64_t lo = tid * per < n ? tid * per : n;                               \
        const int64_t hi = lo + per < n ? lo + per : n;                                 \
        const int k = mode * 4 + small * 2 + ams;                                       \
        switch (k) {                                                                    \
        case 0: ADAM_RUN(SPAN, 0, 0, 0); break;                                         \
        case 1: ADAM_RUN(SPAN, 0, 0, 1); break;                                         \
        case 2: ADAM_RUN(SPAN, 0, 1, 0); break;                                         \
        case 3: ADAM_RUN(SPAN, 0, 1, 1); break;                                         \
        case 4: ADAM_RUN(SPAN, 1, 0, 0); break;                                         \
        case 5: ADAM_RUN(SPAN, 1, 0, 1); break;                                         \
        case 6: ADAM_RUN(SPAN, 1, 1, 0); break;                                         \
        case 7: ADAM_RUN(SPAN, 1, 1, 1); break;                                         \
        case 8: ADAM_RUN(SPAN, 2, 0, 0); break;                                         \
        case 9: ADAM_RUN(SPAN, 2, 0, 1); break;                                         \
        case 10: ADAM_RUN(SPAN, 2, 1, 0); break;                                        \
        default: ADAM_RUN(SPAN, 2, 1, 1); break;                                        \
        }                                                                               \
    }                                                                                   \
    return FR_OK;                                                                       \
}

ADAM_SPAN(float, sqrtf, span_f32)
ADAM_SPAN(double, sqrt, span_f64)
ADAM_FN(float, fr_adam_f32, span_f32)
ADAM_FN(double, fr_adam_f64, span_f64)
