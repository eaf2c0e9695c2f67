/*
 * fastrnn CTC kernel: connectionist temporal classification loss (Graves et
 * al., 2006) and its gradient with respect to the logits, float32 and float64,
 * plain C + OpenMP over the batch. Knows nothing of Python; the caller owns
 * every buffer and has validated the inputs (the kernel re-checks them and
 * returns FR_EINVAL rather than reading out of bounds).
 *
 * Shape letters: B batch, T time steps (padded), C classes (blank included),
 * S the padded target length (may be 0). All arrays row-major, contiguous,
 * batch-first.
 *
 * For sample b with input length L = input_lengths[b] and target
 * l = targets[b, :tl] (tl = target_lengths[b]), let lp = log_softmax(logits[b])
 * and l' the extended labels (blank, l1, blank, l2, ..., l_tl, blank), 2tl+1
 * of them. In log space,
 *   alpha_0(0) = lp[0, blank], alpha_0(1) = lp[0, l1], else -inf
 *   alpha_t(s) = lp[t, l'_s] + lse(alpha_{t-1}(s), alpha_{t-1}(s-1),
 *                                  alpha_{t-1}(s-2) if l'_s != blank, l'_s != l'_{s-2})
 *   beta_{L-1}(s) = 0 for the last two s (the last one when tl = 0), else -inf
 *   beta_t(s) = lse over s' in {s, s+1, s+2 (same rule)} of lp[t+1, l'_s'] + beta_{t+1}(s')
 *   nll = -log p = -lse(alpha_{L-1}(2tl), alpha_{L-1}(2tl-1))
 * (beta_t excludes frame t, so alpha_t(s) + beta_t(s) is the log probability
 * of all alignments through s at t). The gradient of nll w.r.t. the logits is
 *   d nll / d logits[t, k] = softmax[t, k] - sum_{s: l'_s = k} exp(alpha_t(s) + beta_t(s) + nll)
 * for t < L, and exactly 0 for t >= L.
 *
 * Precision: the recursions, log-sum-exps, occupancies and the loss run in
 * double for both kernels; only the logits (in) and the gradient (out) are in
 * the sample's type. In float32, alpha + beta + nll cancels terms of size
 * ~T*|log C| down to O(1) and would lose ~T float32 ulps of the occupancy;
 * in double the cost is nil next to the recurrent layers that feed a CTC.
 *
 * Determinism: each sample is computed by one thread, in a fixed order, into
 * outputs only that thread writes; the thread count never changes the bits.
 */
#ifndef FASTRNN_CTC_H
#define FASTRNN_CTC_H

#include <stdint.h>
#include "fastrnn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of doubles of the caller-owned scratch of fr_ctc_* for these sizes
 * and thread count; -1 for invalid sizes (B, T, C, num_threads < 1, S < 0) or
 * a workspace that would not fit in int64. */
int64_t fr_ctc_work_len(int64_t T, int64_t C, int64_t S, int num_threads);

/*
 * CTC loss of each sample, and optionally its gradient.
 *   logits          IN  (B,T,C) unnormalized scores; log_softmax is applied inside
 *   input_lengths   IN  (B) values in 1..T, or NULL: every length is T
 *   targets         IN  (B,S) labels; row b is read up to target_lengths[b] only,
 *                       those labels must lie in 0..C-1 and differ from blank
 *   target_lengths  IN  (B) values in 0..S
 *   blank           the blank class, 0..C-1
 *   zero_infinity   nonzero: an infinite loss (no feasible alignment) becomes 0
 *                   with a zero gradient; zero: the loss is +inf and the
 *                   gradient NaN on that sample's valid frames (as torch)
 *   grad_scale      IN  (B) factor applied to sample b's gradient (e.g.
 *                   1/(B*max(tl,1)) for a mean), or NULL: 1
 *   losses          OUT (B) negative log likelihood of each sample (double)
 *   grad            OUT (B,T,C) grad_scale[b] * d losses[b] / d logits[b], or
 *                   NULL when only the loss is wanted
 *   work            SCRATCH fr_ctc_work_len(T, C, S, num_threads) doubles
 * Returns FR_OK, or FR_EINVAL for bad sizes, lengths or labels (nothing is
 * written then).
 */
int fr_ctc_f32(int64_t B, int64_t T, int64_t C, int64_t S, int blank,
               int zero_infinity, int num_threads, const float *logits,
               const int64_t *input_lengths, const int64_t *targets,
               const int64_t *target_lengths, const double *grad_scale,
               double *losses, float *grad, double *work);
int fr_ctc_f64(int64_t B, int64_t T, int64_t C, int64_t S, int blank,
               int zero_infinity, int num_threads, const double *logits,
               const int64_t *input_lengths, const int64_t *targets,
               const int64_t *target_lengths, const double *grad_scale,
               double *losses, double *grad, double *work);

#ifdef __cplusplus
}
#endif
#endif /* FASTRNN_CTC_H */
