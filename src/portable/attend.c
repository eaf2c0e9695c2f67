/*
 * One decoder step of Luong attention (fastrnn_attend.h), float32 and
 * float64 from one body: sequences split between the threads, each one's
 * scores, softmax and context (or their gradients) in the header's order.
 * The 16-lane dot products and the row updates vectorize on any x86-64;
 * products and sums round one at a time (no FMA).
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include "fastrnn_attend.h"
#include "portable/attn_impl.h"
#include "fast/tuning.h"
#include "runtime/runtime.h"

#pragma GCC optimize("fp-contract=off")

#define ATTEND_BODY(REAL, EXP, NAME, BNAME)                                               \
FR_DOT16_DEF(REAL, NAME##_dot)                                                            \
FR_SOFTMAX_DEF(REAL, EXP, NAME##_softmax)                                                 \
                                                                                          \
int NAME(int num_threads, int64_t B, int64_t S, int64_t K, int64_t D, const REAL *keys,   \
         const REAL *q, const REAL *enc, const REAL *mask, REAL *a, REAL *ctx)            \
{                                                                                         \
    if (num_threads < 1 || B < 1 || S < 1 || K < 1 || D < 1 || !keys || !q || !enc || !a  \
        || !ctx)                                                                          \
        return FR_EINVAL;                                                                 \
    const int nt = (double)B * S * (K + D) >= FR_ATTEND_PAR_MIN ? num_threads : 1;        \
    int64_t b;                                                                            \
    _Pragma("omp parallel for num_threads(nt) if (fr_omp_going(nt, nt > 1)) schedule(static)") \
    for (b = 0; b < B; b++) {                                                             \
        const REAL *kb = keys + b * S * K, *qb = q + b * K, *eb = enc + b * S * D;        \
        const REAL *mb = mask ? mask + b * S : NULL;                                      \
        REAL *ab = a + b * S, *cb = ctx + b * D;                                          \
        for (int64_t t = 0; t < S; t++) /* a step past the end reads no key */           \
            ab[t] = mb && mb[t] == -(REAL)INFINITY ? mb[t]                                \
                                                   : NAME##_dot(kb + t * K, qb, K) + (mb ? mb[t] : 0); \
        NAME##_softmax(ab, S);                                                            \
        for (int64_t f = 0; f < D; f++) cb[f] = 0;                                        \
        for (int64_t t = 0; t < S; t++) {                                                 \
            if (mb && mb[t] == -(REAL)INFINITY) continue; /* padding never counts */    \
            const REAL at = ab[t], *et = eb + t * D;                                      \
            for (int64_t f = 0; f < D; f++) cb[f] = cb[f] + at * et[f];                   \
        }                                                                                 \
    }                                                                                     \
    return FR_OK;                                                                         \
}                                                                                         \
                                                                                          \
int BNAME(int num_threads, int64_t B, int64_t S, int64_t K, int64_t D, const REAL *keys,  \
          const REAL *enc, const REAL *a, const REAL *dctx, const REAL *mask, REAL *ds,   \
          REAL *dq)                                                                       \
{                                                                                         \
    if (num_threads < 1 || B < 1 || S < 1 || K < 1 || D < 1 || !keys || !enc || !a        \
        || !dctx || !ds || !dq)                                                           \
        return FR_EINVAL;                                                                 \
    const int nt = (double)B * S * (K + D) >= FR_ATTEND_PAR_MIN ? num_threads : 1;        \
    int64_t b;                                                                            \
    _Pragma("omp parallel for num_threads(nt) if (fr_omp_going(nt, nt > 1)) schedule(static)") \
    for (b = 0; b < B; b++) {                                                             \
        const REAL *kb = keys + b * S * K, *eb = enc + b * S * D, *ab = a + b * S;        \
        const REAL *gb = dctx + b * D, *mb = mask ? mask + b * S : NULL;                  \
        REAL *sb = ds + b * S, *qb = dq + b * K, m = 0;                                   \
        for (int64_t t = 0; t < S; t++) {                                                 \
            if (mb && mb[t] == -(REAL)INFINITY) { sb[t] = 0; continue; }                                \
            sb[t] = NAME##_dot(eb + t * D, gb, D);                                        \
            m = m + ab[t] * sb[t];                                                        \
        }                                                                                 \
        for (int64_t t = 0; t < S; t++)                                                   \
            if (!(mb && mb[t] == -(REAL)INFINITY)) sb[t] = ab[t] * (sb[t] - m);                         \
        for (int64_t k = 0; k < K; k++) qb[k] = 0;                                        \
        for (int64_t t = 0; t < S; t++) {                                                 \
            if (mb && mb[t] == -(REAL)INFINITY) continue;                                 \
            const REAL st = sb[t], *kt = kb + t * K;                                      \
            for (int64_t k = 0; k < K; k++) qb[k] = qb[k] + st * kt[k];                   \
        }                                                                                 \
    }                                                                                     \
    return FR_OK;                                                                         \
}

ATTEND_BODY(float, expf, fr_attend_f32, fr_attend_backward_f32)
ATTEND_BODY(double, exp, fr_attend_f64, fr_attend_backward_f64)
