/*
 * fastrnn kernels: additive attention pooling (fastrnn.AttentionPooling)
 * after its product z = x W^T + b. For sequence b < B, step t < T and row
 * m = b*T + t (z (B*T, A) row-major, x (B, T, F), a (B, T), y (B, F)):
 *   u_m = tanh(z_m), written over z_m
 *   s_m = u_m . v: 16 partial sums from +0, lane l taking a = l, l + 16, ..
 *         in order of a (float32 on the fast path by FMAs, otherwise a
 *         product and a sum each rounded), then added in halves (lane l + 8
 *         into l, then + 4, + 2, + 1)
 *   a_b = softmax of s_b over t < len_b: the max, e_t = exp(s_t - max) in
 *         order of t, their sum in order of t, a_t = e_t / sum; a_t = 0 past
 *         len_b
 *   y_b = sum over t < len_b of a_t x_bt in order of t from +0, each
 *         product and sum rounded
 * tanh: float32 on the fast path (fr_set_fast_path) the fast kernels'
 * (src/fast/simd_math.h, the same bits at either vector width), else the C
 * library's tanhf / tanh; exp: the C library's. Rows and sequences are
 * computed independently, so neither the thread count nor the rest of the
 * batch changes a bit of a sequence's results.
 */
#ifndef FASTRNN_POOL_H
#define FASTRNN_POOL_H

#include <stdint.h>
#include "fastrnn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* lengths: B values in 1..T, or NULL (every sequence T steps). FR_EINVAL
 * for a size below 1, a NULL array, a length out of range or
 * num_threads < 1. */
int fr_attn_pool_f32(int num_threads, int64_t B, int64_t T, int64_t A, int64_t F, float *z,
                     const float *v, const float *x, const int64_t *lengths, float *a,
                     float *y);
int fr_attn_pool_f64(int num_threads, int64_t B, int64_t T, int64_t A, int64_t F,
                     double *z, const double *v, const double *x, const int64_t *lengths,
                     double *a, double *y);

#ifdef __cplusplus
}
#endif
#endif /* FASTRNN_POOL_H */
