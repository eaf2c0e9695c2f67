/*
 * Vector math of the fast kernels (VW floats a vector, isa.h): exp of K
 * vectors side by side, sigmoid and tanh from it. Lane by lane, the same
 * instructions for every lane and any K, so neither the vector width nor
 * the number of vectors in flight changes a bit.
 */

/* x[k] = exp(x[k]) for K vectors (K <= 5 * FR_FAST_NBLK), every step on all K
 * before the next. Where bit k of pos is set the arguments are >= 0
 * (tanh's 2|x|), else <= 0 (sigmoid's -|x|); or NaN. Cephes' range
 * reduction x = n ln2 + r, n the nearest integer to x log2(e) (the FMA
 * that adds 1.5 * 2^23 rounds it, and leaves n in the low bits of the sum
 * for 2^n), degree-6 polynomial p = e^r - 1, then exp = 2^n p + 2^n in one
 * rounding. Arguments above 64 are taken as 64 (tanh is exactly 1 from
 * 2|x| ~ 18), below -88 as -88: from about -87.7, n = -127 makes 2^n
 * exactly 0 (the true value is below the smallest normal float). One exp
 * is a chain of ~14 dependent instructions; on a CPU with a small FP
 * scheduler one chain at a time leaves the FMA units idle waiting for
 * latency, while K chains interleaved in program order
 * keep them busy. Each lane gets the same instructions for any K, so the
 * bits never depend on K. min/max keep NaN (x is the second operand, which
 * x86 returns when either is NaN), and a NaN reaches the result through
 * the FMAs. */
static inline INL TGT void v_exp_k(V *x, const int K, const unsigned pos)
{
    const V magic = v_set1(12582912.0f); /* 1.5 * 2^23 */
    V t[5 * FR_FAST_NBLK], y[5 * FR_FAST_NBLK], z[5 * FR_FAST_NBLK];
    for (int k = 0; k < K; k++)
        x[k] = (pos >> k) & 1u ? v_min(v_set1(64.0f), x[k]) : v_max(v_set1(-88.0f), x[k]);
    for (int k = 0; k < K; k++) t[k] = v_fmadd(x[k], v_set1(1.44269504088896341f), magic);
    for (int k = 0; k < K; k++) z[k] = v_sub(t[k], magic); /* n */
    for (int k = 0; k < K; k++) x[k] = v_fnmadd(z[k], v_set1(0.693359375f), x[k]);
    for (int k = 0; k < K; k++) x[k] = v_fnmadd(z[k], v_set1(-2.12194440e-4f), x[k]);
    for (int k = 0; k < K; k++) z[k] = v_mul(x[k], x[k]);
    for (int k = 0; k < K; k++)
        y[k] = v_fmadd(v_set1(1.9875691500E-4f), x[k], v_set1(1.3981999507E-3f));
    for (int k = 0; k < K; k++) y[k] = v_fmadd(y[k], x[k], v_set1(8.3334519073E-3f));
    for (int k = 0; k < K; k++) y[k] = v_fmadd(y[k], x[k], v_set1(4.1665795894E-2f));
    for (int k = 0; k < K; k++) y[k] = v_fmadd(y[k], x[k], v_set1(1.6666665459E-1f));
    for (int k = 0; k < K; k++) y[k] = v_fmadd(y[k], x[k], v_set1(5.0000001201E-1f));
    for (int k = 0; k < K; k++) y[k] = v_fmadd(y[k], z[k], x[k]); /* e^r - 1 */
    for (int k = 0; k < K; k++) {
        const V s = v_pow2n_t(t[k]);
        x[k] = v_fmadd(y[k], s, s);
    }
}

/* The argument of the exp that sigmoid(x) needs: -|x| */
static inline INL TGT V sigmoid_arg(V x)
{
    return v_or(x, v_set1(-0.0f));
}

/* sigmoid(x) = 1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0, e =
 * exp(-|x|) <= 1. Below about -87.7, e is exactly 0, and so is the gate
 * (its true value is below the smallest normal float); above ~17 it is
 * exactly 1. NaN stays NaN. */
static inline INL TGT V sigmoid_from(V x, V e)
{
    const V one = v_set1(1.0f);
    return v_div(v_blend_sign(x, one, e), v_add(one, e));
}

/* The argument of the exp that tanh(x) needs: 2|x| */
static inline INL TGT V tanh_arg(V x)
{
    V ax = v_abs(x);
    return v_add(ax, ax);
}

/* tanh(x), e = exp(2|x|): Cephes' odd polynomial for |x| < 0.625, else
 * sign(x) (1 - 2 / (e + 1)), which saturates to exactly +-1. */
static inline INL TGT V tanh_from(V x, V e)
{
    const V one = v_set1(1.0f);
    V ax = v_abs(x);
    V big = v_sub(one, v_div(v_set1(2.0f), v_add(e, one)));
    big = v_or(big, v_signof(x));
    V z = v_mul(x, x);
    V p = v_set1(-5.70498872745E-3f);
    p = v_fmadd(p, z, v_set1(2.06390887954E-2f));
    p = v_fmadd(p, z, v_set1(-5.37397155531E-2f));
    p = v_fmadd(p, z, v_set1(1.33314422036E-1f));
    p = v_fmadd(p, z, v_set1(-3.33332819422E-1f));
    V small = v_fmadd(v_mul(p, z), x, x);
    return v_blend(v_lt(ax, v_set1(0.625f)), big, small);
}

/* tanh of K vectors in place, the exps side by side */
static inline INL TGT void v_tanh_k(V *x, const int K)
{
    V e[4 * FR_FAST_NBLK];
    for (int k = 0; k < K; k++) e[k] = tanh_arg(x[k]);
    v_exp_k(e, K, ~0u);
    for (int k = 0; k < K; k++) x[k] = tanh_from(x[k], e[k]);
}
