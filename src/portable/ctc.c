/* fastrnn CTC kernel: shared helpers, then the float32 and float64 kernels
 * instantiated from one source (ctc_impl.h). Equations and conventions:
 * fastrnn_ctc.h. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "fastrnn_ctc.h"
#include "fast/tuning.h"
#include "runtime/runtime.h"

/* log(exp(a) + exp(b)), exact for -inf operands. */
static inline double lse2(double a, double b)
{
    const double m = a > b ? a : b;
    if (m == -INFINITY) return -INFINITY;
    return m + log1p(exp(-fabs(a - b)));
}

/* log(exp(a) + exp(b) + exp(c)), exact for -inf operands. */
static inline double lse3(double a, double b, double c)
{
    double m = a > b ? a : b;
    if (c > m) m = c;
    if (m == -INFINITY) return -INFINITY;
    return m + log(exp(a - m) + exp(b - m) + exp(c - m));
}

/* Per-thread scratch, in doubles: lse (T), one double row of the gradient
 * (C), alpha (T*(2S+1)), two rows of beta (2*(2S+1)). */
static int64_t slot_len(int64_t T, int64_t C, int64_t S)
{
    return T + C + (T + 2) * (2 * S + 1);
}

int64_t fr_ctc_work_len(int64_t T, int64_t C, int64_t S, int num_threads)
{
    if (T < 1 || C < 1 || S < 0 || num_threads < 1) return -1;
    /* keep every product well inside int64 */
    const int64_t lim = (int64_t)1 << 40;
    if (T > lim || C > lim || S > lim) return -1;
    if ((double)(T + 2) * (double)(2 * S + 1) * num_threads > (double)((int64_t)1 << 60))
        return -1;
    return slot_len(T, C, S) * num_threads;
}

/* FR_OK when sizes, lengths and labels are what the kernels assume. */
static int check_args(int64_t B, int64_t T, int64_t C, int64_t S, int blank,
                      int num_threads, const int64_t *input_lengths,
                      const int64_t *targets, const int64_t *target_lengths)
{
    if (B < 1 || fr_ctc_work_len(T, C, S, num_threads) < 0) return FR_EINVAL;
    if (blank < 0 || blank >= C || target_lengths == NULL) return FR_EINVAL;
    if (S > 0 && targets == NULL) return FR_EINVAL;
    for (int64_t b = 0; b < B; b++) {
        if (input_lengths && (input_lengths[b] < 1 || input_lengths[b] > T))
            return FR_EINVAL;
        const int64_t tl = target_lengths[b];
        if (tl < 0 || tl > S) return FR_EINVAL;
        for (int64_t i = 0; i < tl; i++) {
            const int64_t k = targets[b * S + i];
            if (k < 0 || k >= C || k == blank) return FR_EINVAL;
        }
    }
    return FR_OK;
}

#define REAL float
#define FN(name) name##_f32
#include "portable/ctc_impl.h"
#undef REAL
#undef FN

#define REAL double
#define FN(name) name##_f64
#include "portable/ctc_impl.h"
#undef REAL
#undef FN
