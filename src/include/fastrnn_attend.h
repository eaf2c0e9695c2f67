/*
 * fastrnn kernels: one decoder step of Luong attention (dot, or general
 * after the keys' product), for fastrnn.Seq2Seq. For sequence b < B,
 * keys (B, S, K), q (B, K), enc (B, S, D), a (B, S), ctx (B, D) and the
 * additive mask (B, S) (0 where a source step counts, -inf past its end; or
 * NULL: all count), row-major, "the steps" being those of mask 0:
 *   s_t   = keys_bt . q_b + mask_bt (-inf past the end, reading no key):
 *           the dot in 16 partial sums from +0, lane l
 *           taking k = l, l + 16, .. in order of k, each product and sum
 *           rounded, then added in halves (lane l + 8 into l, + 4, + 2, + 1)
 *   a_b   = softmax of s over t: the max, e_t = exp(s_t - max) in order of
 *           t, their sum in order of t, a_t = e_t / sum (0 past the end)
 *   ctx_b = sum over the steps of a_t enc_bt, in order of t from +0
 * backward, from dctx (B, D):
 *   da_t  = enc_bt . dctx_b over the steps, the 16 lanes as s_t
 *   ds_t  = a_t (da_t - m), m = sum over the steps of a_t da_t in order of
 *           t; ds_t = 0 past the end
 *   dq_b  = sum over the steps of ds_t keys_bt in order of t from +0
 * exp: the C library's. Sequences are computed apart, so neither the
 * thread count nor the rest of the batch changes a bit of a sequence's
 * results.
 */
#ifndef FASTRNN_ATTEND_H
#define FASTRNN_ATTEND_H

#include <stdint.h>
#include "fastrnn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* FR_EINVAL for a size below 1, a NULL array (but mask) or num_threads < 1.
 * A row masked whole gives NaN weights, as the softmax of all -inf. */
int fr_attend_f32(int num_threads, int64_t B, int64_t S, int64_t K, int64_t D,
                  const float *keys, const float *q, const float *enc,
                  const float *mask, float *a, float *ctx);
int fr_attend_f64(int num_threads, int64_t B, int64_t S, int64_t K, int64_t D,
                  const double *keys, const double *q, const double *enc,
                  const double *mask, double *a, double *ctx);
int fr_attend_backward_f32(int num_threads, int64_t B, int64_t S, int64_t K, int64_t D,
                           const float *keys, const float *enc, const float *a,
                           const float *dctx, const float *mask, float *ds, float *dq);
int fr_attend_backward_f64(int num_threads, int64_t B, int64_t S, int64_t K, int64_t D,
                           const double *keys, const double *enc, const double *a,
                           const double *dctx, const double *mask, double *ds,
                           double *dq);

#ifdef __cplusplus
}
#endif
#endif /* FASTRNN_ATTEND_H */
