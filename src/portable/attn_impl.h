/*
 * Internal: the two reductions attention pooling (pool.c) and decoder
 * attention (attend.c) share, float32 and float64 from one macro each.
 * Their orders are the headers' (fastrnn_pool.h, fastrnn_attend.h): the
 * including file compiles them without FMA contraction so that each product
 * and sum rounds on its own, on every build.
 */
#ifndef FASTRNN_ATTN_IMPL_H
#define FASTRNN_ATTN_IMPL_H

#include <stdint.h>

/* NAME(x, y, n) = x . y over n values: 16 lanes, lane i summing k = i mod
 * 16 in order of k, then the lanes added in halves (8, 4, 2, 1). */
#define FR_DOT16_DEF(REAL, NAME)                                                        \
static inline REAL NAME(const REAL *x, const REAL *y, int64_t n)                         \
{                                                                                       \
    REAL l[16] = {0};                                                                   \
    int64_t k0 = 0;                                                                     \
    for (; k0 + 16 <= n; k0 += 16)                                                      \
        for (int i = 0; i < 16; i++) l[i] = l[i] + x[k0 + i] * y[k0 + i];               \
    for (int i = 0; k0 + i < n; i++) l[i] = l[i] + x[k0 + i] * y[k0 + i];               \
    for (int w = 8; w >= 1; w /= 2)                                                     \
        for (int i = 0; i < w; i++) l[i] = l[i] + l[i + w];                             \
    return l[0];                                                                        \
}

/* NAME(a, n): a[0..n) (n >= 1) becomes its softmax in place: the maximum
 * (a NaN wins, so that it reaches every weight), exp(a - max) summed in
 * order of t, each divided by the sum. A -inf score gets weight 0. */
#define FR_SOFTMAX_DEF(REAL, EXP, NAME)                                                 \
static inline void NAME(REAL *a, int64_t n)                                             \
{                                                                                       \
    REAL mx = a[0], sum = 0;                                                            \
    for (int64_t t = 1; t < n; t++) mx = (a[t] > mx || a[t] != a[t]) ? a[t] : mx;       \
    for (int64_t t = 0; t < n; t++) {                                                   \
        a[t] = EXP(a[t] - mx);                                                          \
        sum = sum + a[t];                                                               \
    }                                                                                   \
    for (int64_t t = 0; t < n; t++) a[t] = a[t] / sum;                                  \
}

#endif
