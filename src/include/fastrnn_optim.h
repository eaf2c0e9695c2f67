/*
 * fastrnn kernels: one Adam or AdamW step of a parameter array, fused into
 * one pass over p, its gradient and its moment buffers. Each element gets
 * the operations of torch.optim.Adam's single-tensor step (and
 * fastrnn/optim.py's NumPy Adam._update, which is the reference), each
 * rounded to the array's type, in this order:
 *   L2 decay (wd > 0, not decoupled): d = g + p*wd, else d = g
 *   AdamW (decoupled):                p = p*decay   (decay = 1 - lr*wd)
 *   m: t = d - m; |w1| < 0.5 ? m = m + t*w1 : m = d - t*(1 - w1)   (lerp)
 *   v = v*beta2 + (d*omb2)*d
 *   AMSGrad: vmax = max(vmax, v) (NaN wins), and vmax stands for v below
 *   p = p + (m*neg_step) / (sqrt(v)/bc2_sqrt + eps)
 * where every scalar is the caller's double rounded to the type first, and
 * 1 - w1 is computed in the type. No FMA contraction; elements are
 * independent, so the thread count changes no bit.
 */
#ifndef FASTRNN_OPTIM_H
#define FASTRNN_OPTIM_H

#include <stdint.h>
#include "fastrnn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    double w1;        /* 1 - beta1 */
    double beta2;
    double omb2;      /* 1 - beta2 */
    double bc2_sqrt;  /* sqrt(1 - beta2^step) */
    double eps;
    double neg_step;  /* -lr / (1 - beta1^step) */
    double wd;        /* L2 weight decay, used when wd_mode is 1 */
    double decay;     /* AdamW's 1 - lr*wd, used when wd_mode is 2 */
    int wd_mode;      /* 0 none, 1 L2 (Adam), 2 decoupled (AdamW) */
    int amsgrad;      /* 1: vmax is read and written */
} fr_adam_args;

/* One step of n elements in place: p, m, v (and vmax with amsgrad, else
 * may be NULL) updated, g read. FR_EINVAL for a NULL array, n < 0 or
 * num_threads < 1. */
int fr_adam_f32(int num_threads, int64_t n, float *p, const float *g, float *m, float *v,
                float *vmax, const fr_adam_args *a);
int fr_adam_f64(int num_threads, int64_t n, double *p, const double *g, double *m,
                double *v, double *vmax, const fr_adam_args *a);

#ifdef __cplusplus
}
#endif
#endif /* FASTRNN_OPTIM_H */
