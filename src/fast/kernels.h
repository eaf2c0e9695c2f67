/*
 * The fast float32 time loops (see rnn_fast.h), written once over a vector
 * of VW floats and compiled twice: src/rnn_fast_avx2.c (VW = 8, AVX2 + FMA)
 * and src/rnn_fast_avx512.c (VW = 16, AVX-512 F/VL/DQ). rnn_fast.c picks one
 * at run time. The including file defines FR_ISA_AVX512 or FR_ISA_AVX2 and
 * FR_SFX(name), the suffix of the two entry points.
 *
 * Why the two widths give the same bits: every output of a panel product is
 * its old value followed by one FMA chain over j in order (the tile and
 * panel widths only decide how many chains run side by side), and the gate
 * math is lane by lane, the same instructions for every lane at either
 * width. The dot tiles on unpacked weights (short inputs, streaming steps)
 * sum 8-wide partial products and stay AVX2 in both builds.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <immintrin.h>
#include <sched.h>
#include <stdatomic.h>
#include "fast/fast.h"
#include "runtime/team.h"

#define AVX2 __attribute__((target("avx2,fma")))
#define ACTIVE(t, b) (lengths == NULL || (t) < lengths[b])

#if defined(FR_ISA_AVX512)
#define TGT __attribute__((target("avx512f,avx512vl,avx512dq,avx2,fma")))
#define VW 16
typedef __m512 V;
typedef __m512i VI;
typedef __mmask16 VM;                     /* a lane mask */
#define v_ld(p) _mm512_loadu_ps(p)
#define v_lda(p) _mm512_load_ps(p)
#define v_st(p, v) _mm512_storeu_ps(p, v)
#define v_sta(p, v) _mm512_store_ps(p, v)
#define v_set1(x) _mm512_set1_ps(x)
#define v_zero() _mm512_setzero_ps()
#define v_add _mm512_add_ps
#define v_sub _mm512_sub_ps
#define v_mul _mm512_mul_ps
#define v_div _mm512_div_ps
#define v_min _mm512_min_ps
#define v_max _mm512_max_ps
#define v_fmadd _mm512_fmadd_ps
#define v_fnmadd _mm512_fnmadd_ps
#define v_bcast(p) _mm512_set1_ps(*(p))
#define v_lt(a, b) _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ)
#define v_gt(a, b) _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ)
#define v_blend(m, a, b) _mm512_mask_blend_ps(m, a, b)       /* m ? b : a */
#define v_keep(m, v) _mm512_maskz_mov_ps(m, v)               /* m ? v : +0 */
#define v_abs(x) _mm512_and_ps(x, _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff)))
#define v_signof(x) _mm512_and_ps(x, v_set1(-0.0f))
#define v_or _mm512_or_ps
#define v_blend_sign(x, a, b)                                /* x < 0 (sign bit) ? b : a */ \
    _mm512_mask_blend_ps(_mm512_movepi32_mask(_mm512_castps_si512(x)), a, b)
/* 2^n from t = n + 1.5 * 2^23 (-127 <= n <= 127; n = -127 gives +0): the
 * low 9 bits of t's bits plus 127 are n + 127, shifted into the exponent */
#define v_pow2n_t(t) _mm512_castsi512_ps(_mm512_slli_epi32(                   \
        _mm512_add_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(127)), 23))
/* the first n lanes (n < VW) */
#define v_head(n) ((VM)((1u << (n)) - 1u))
#else
#define TGT __attribute__((target("avx2,fma")))
#define VW 8
typedef __m256 V;
typedef __m256i VI;
typedef __m256 VM;
#define v_ld(p) _mm256_loadu_ps(p)
#define v_lda(p) _mm256_load_ps(p)
#define v_st(p, v) _mm256_storeu_ps(p, v)
#define v_sta(p, v) _mm256_store_ps(p, v)
#define v_set1(x) _mm256_set1_ps(x)
#define v_zero() _mm256_setzero_ps()
#define v_add _mm256_add_ps
#define v_sub _mm256_sub_ps
#define v_mul _mm256_mul_ps
#define v_div _mm256_div_ps
#define v_min _mm256_min_ps
#define v_max _mm256_max_ps
#define v_fmadd _mm256_fmadd_ps
#define v_fnmadd _mm256_fnmadd_ps
#define v_bcast(p) _mm256_broadcast_ss(p)
#define v_lt(a, b) _mm256_cmp_ps(a, b, _CMP_LT_OQ)
#define v_gt(a, b) _mm256_cmp_ps(a, b, _CMP_GT_OQ)
#define v_blend(m, a, b) _mm256_blendv_ps(a, b, m)
#define v_keep(m, v) _mm256_and_ps(v, m)
#define v_abs(x) _mm256_andnot_ps(v_set1(-0.0f), x)
#define v_signof(x) _mm256_and_ps(x, v_set1(-0.0f))
#define v_or _mm256_or_ps
#define v_blend_sign(x, a, b) _mm256_blendv_ps(a, b, x)
#define v_pow2n_t(t) _mm256_castsi256_ps(_mm256_slli_epi32(                   \
        _mm256_add_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(127)), 23))
#endif

/* ---- vector math (VW floats) -------------------------------------------- */

/* The helpers below are inlined into their callers with the count of
 * vectors known, so the loops over k unroll and the vectors stay in
 * registers. */
#define INL __attribute__((always_inline))

/* Most blocks of VW units the gate math starts side by side (cell_units). */
#define NBLK 2

/* x[k] = exp(x[k]) for K vectors (K <= 5 * NBLK), every step on all K
 * before the next. Where bit k of pos is set the arguments are >= 0
 * (tanh's 2|x|), else <= 0 (sigmoid's -|x|); or NaN. Cephes' range
 * reduction x = n ln2 + r, n the nearest integer to x log2(e) (the FMA
 * that adds 1.5 * 2^23 rounds it, and leaves n in the low bits of the sum
 * for 2^n), degree-6 polynomial p = e^r - 1, then exp = 2^n p + 2^n in one
 * rounding. Arguments above 64 are taken as 64 (tanh is exactly 1 from
 * 2|x| ~ 18), below -88 as -88: from about -87.7, n = -127 makes 2^n
 * exactly 0 (the true value is below the smallest normal float). One exp
 * is a chain of ~14 dependent instructions; on a CPU with a small FP
 * scheduler (Zen: 36 entries) one chain at a time leaves the FMA units
 * idle waiting for latency, while K chains interleaved in program order
 * keep them busy. Each lane gets the same instructions for any K, so the
 * bits never depend on K. min/max keep NaN (x is the second operand, which
 * x86 returns when either is NaN), and a NaN reaches the result through
 * the FMAs. */
static inline INL TGT void v_exp_k(V *x, const int K, const unsigned pos)
{
    const V magic = v_set1(12582912.0f); /* 1.5 * 2^23 */
    V t[5 * NBLK], y[5 * NBLK], z[5 * NBLK];
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
    V e[4 * NBLK];
    for (int k = 0; k < K; k++) e[k] = tanh_arg(x[k]);
    v_exp_k(e, K, ~0u);
    for (int k = 0; k < K; k++) x[k] = tanh_from(x[k], e[k]);
}

static inline AVX2 float hsum(__m256 s)
{
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
}

/* ---- dot products of rows, on unpacked weights ---------------------------
 * For short inputs, where packing W would cost more than the product:
 * out(b, r) += sum_k h[b,k] W[r,k]. Every (b, r) gets the same sequence: one
 * 8-wide accumulator over k in order, a fixed horizontal sum, then the scalar
 * tail in order. Tiles only decide how many such chains run side by side
 * (for latency), so the tile shape, and so the thread slicing, never changes
 * a bit. */
#define DOT_FINISH(acc, hp, wp, o)                            \
    do {                                                      \
        float s_ = hsum(acc);                                 \
        for (int64_t k = K8; k < K; k++) s_ = fmaf((hp)[k], (wp)[k], s_); \
        (o) += s_;                                            \
    } while (0)

/* 4 sequences x 2 rows: 8 chains, 6 loads per 8 FMAs */
static inline AVX2 void dot_4x2(const float *restrict h, int64_t ldh,
                                const float *restrict w, int64_t ldw, int64_t K,
                                float *restrict out, int64_t ldo)
{
    const int64_t K8 = K & ~(int64_t)7;
    const float *h0 = h, *h1 = h + ldh, *h2 = h + 2 * ldh, *h3 = h + 3 * ldh;
    const float *w0 = w, *w1 = w + ldw;
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00;
    __m256 a20 = a00, a21 = a00, a30 = a00, a31 = a00;
    for (int64_t k = 0; k < K8; k += 8) {
        __m256 x0 = _mm256_loadu_ps(w0 + k), x1 = _mm256_loadu_ps(w1 + k);
        __m256 v = _mm256_loadu_ps(h0 + k);
        a00 = _mm256_fmadd_ps(v, x0, a00); a01 = _mm256_fmadd_ps(v, x1, a01);
        v = _mm256_loadu_ps(h1 + k);
        a10 = _mm256_fmadd_ps(v, x0, a10); a11 = _mm256_fmadd_ps(v, x1, a11);
        v = _mm256_loadu_ps(h2 + k);
        a20 = _mm256_fmadd_ps(v, x0, a20); a21 = _mm256_fmadd_ps(v, x1, a21);
        v = _mm256_loadu_ps(h3 + k);
        a30 = _mm256_fmadd_ps(v, x0, a30); a31 = _mm256_fmadd_ps(v, x1, a31);
    }
    DOT_FINISH(a00, h0, w0, out[0]);           DOT_FINISH(a01, h0, w1, out[1]);
    DOT_FINISH(a10, h1, w0, out[ldo]);         DOT_FINISH(a11, h1, w1, out[ldo + 1]);
    DOT_FINISH(a20, h2, w0, out[2 * ldo]);     DOT_FINISH(a21, h2, w1, out[2 * ldo + 1]);
    DOT_FINISH(a30, h3, w0, out[3 * ldo]);     DOT_FINISH(a31, h3, w1, out[3 * ldo + 1]);
}

/* 4 sequences x 1 row */
static inline AVX2 void dot_4x1(const float *restrict h, int64_t ldh,
                                const float *restrict w, int64_t K,
                                float *restrict out, int64_t ldo)
{
    const int64_t K8 = K & ~(int64_t)7;
    const float *h0 = h, *h1 = h + ldh, *h2 = h + 2 * ldh, *h3 = h + 3 * ldh;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t k = 0; k < K8; k += 8) {
        __m256 x = _mm256_loadu_ps(w + k);
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(h0 + k), x, a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(h1 + k), x, a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(h2 + k), x, a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(h3 + k), x, a3);
    }
    DOT_FINISH(a0, h0, w, out[0]);       DOT_FINISH(a1, h1, w, out[ldo]);
    DOT_FINISH(a2, h2, w, out[2 * ldo]); DOT_FINISH(a3, h3, w, out[3 * ldo]);
}

/* hsum of 8 vectors at once, lane r = hsum(a[r]) bit for bit: the same
 * pairs added in the same order, ((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7)),
 * with 21 instructions instead of 8 x 6 */
static inline AVX2 __m256 hsum8(const __m256 *a)
{
    __m256 q[4], c[2];
    for (int i = 0; i < 4; i++) /* [a(2i) lo+hi | a(2i+1) lo+hi]: q0..q3 of each */
        q[i] = _mm256_add_ps(_mm256_permute2f128_ps(a[2 * i], a[2 * i + 1], 0x20),
                             _mm256_permute2f128_ps(a[2 * i], a[2 * i + 1], 0x31));
    for (int i = 0; i < 2; i++) /* q0+q2, q1+q3 of rows 4i, 4i+2 | 4i+1, 4i+3 */
        c[i] = _mm256_add_ps(_mm256_shuffle_ps(q[2 * i], q[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm256_shuffle_ps(q[2 * i], q[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    /* (q0+q2) + (q1+q3): lanes hold rows 0 2 4 6 | 1 3 5 7 */
    const __m256 f = _mm256_add_ps(_mm256_shuffle_ps(c[0], c[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm256_shuffle_ps(c[0], c[1], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm256_permutevar8x32_ps(f, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* 1 sequence x 8 rows: 8 chains, 9 loads per 8 FMAs (batch-1 streaming).
 * The accumulators are named values, not an array: an array's zeroing was
 * a `rep stos` to the stack on every call (8% of the streaming step's dot
 * time at K = 128) and its sums went through memory. */
static inline AVX2 void dot_1x8(const float *restrict h, const float *restrict w,
                                int64_t ldw, int64_t K, float *restrict out)
{
    const int64_t K8 = K & ~(int64_t)7;
    const float *w0 = w, *w1 = w + ldw, *w2 = w + 2 * ldw, *w3 = w + 3 * ldw;
    const float *w4 = w + 4 * ldw, *w5 = w + 5 * ldw, *w6 = w + 6 * ldw, *w7 = w + 7 * ldw;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    __m256 a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (int64_t k = 0; k < K8; k += 8) {
        const __m256 v = _mm256_loadu_ps(h + k);
        a0 = _mm256_fmadd_ps(v, _mm256_loadu_ps(w0 + k), a0);
        a1 = _mm256_fmadd_ps(v, _mm256_loadu_ps(w1 + k), a1);
        a2 = _mm256_fmadd_ps(v, _mm256_loadu_ps(w2 + k), a2);
        a3 = _mm256_fmadd_ps(v, _mm256_loadu_ps(w3 + k), a3);
        a4 = _mm256_fmadd_ps(v, _mm256_loadu_ps(w4 + k), a4);
        a5 = _mm256_fmadd_ps(v, _mm256_loadu_ps(w5 + k), a5);
        a6 = _mm256_fmadd_ps(v, _mm256_loadu_ps(w6 + k), a6);
        a7 = _mm256_fmadd_ps(v, _mm256_loadu_ps(w7 + k), a7);
    }
    if (K8 == K) { /* no scalar tail: out[r] += hsum(a[r]) for all 8 at once */
        const __m256 a[8] = {a0, a1, a2, a3, a4, a5, a6, a7};
        _mm256_storeu_ps(out, _mm256_add_ps(_mm256_loadu_ps(out), hsum8(a)));
        return;
    }
    DOT_FINISH(a0, h, w0, out[0]); DOT_FINISH(a1, h, w1, out[1]);
    DOT_FINISH(a2, h, w2, out[2]); DOT_FINISH(a3, h, w3, out[3]);
    DOT_FINISH(a4, h, w4, out[4]); DOT_FINISH(a5, h, w5, out[5]);
    DOT_FINISH(a6, h, w6, out[6]); DOT_FINISH(a7, h, w7, out[7]);
}

static inline AVX2 void dot_1x1(const float *restrict h, const float *restrict w,
                                int64_t K, float *restrict out)
{
    const int64_t K8 = K & ~(int64_t)7;
    __m256 a0 = _mm256_setzero_ps();
    for (int64_t k = 0; k < K8; k += 8)
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(h + k), _mm256_loadu_ps(w + k), a0);
    DOT_FINISH(a0, h, w, out[0]);
}

/* out(b, r) += h[b,:] . W[r,:] for b < B and r in [r0, r1); out row stride ldo.
 * Rows in blocks of 8 (their weights stay in L1 while all of h passes). */
static AVX2 void rows_dot(const float *h, int64_t B, int64_t K, const float *W,
                          int64_t r0, int64_t r1, float *out, int64_t ldo)
{
    for (int64_t rb = r0; rb < r1; rb += 8) {
        const int64_t re = rb + 8 < r1 ? rb + 8 : r1;
        int64_t b = 0;
        for (; b + 4 <= B; b += 4) {
            int64_t r = rb;
            for (; r + 2 <= re; r += 2)
                dot_4x2(h + b * K, K, W + r * K, K, K, out + b * ldo + r, ldo);
            for (; r < re; r++)
                dot_4x1(h + b * K, K, W + r * K, K, out + b * ldo + r, ldo);
        }
        for (; b < B; b++) {
            if (re - rb == 8) {
                dot_1x8(h + b * K, W + rb * K, K, K, out + b * ldo + rb);
                continue;
            }
            for (int64_t r = rb; r < re; r++) dot_1x1(h + b * K, W + r * K, K, out + b * ldo + r);
        }
    }
}

/* ---- the recurrent products: packed panels ------------------------------ */

#if !defined(FR_ISA_AVX512)
/* Mask of the first n (0..8) lanes. */
static inline TGT __m256i lane_mask(int64_t n)
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), idx);
}
#endif

/* out[b, c] += sum_j g[b, j] P(j, c) for b < B and c < n, where the columns
 * come in VW-wide panels P + (c/VW)*J*VW holding P(j, c) at [j*VW + c%VW] (zero
 * padded). Both recurrent products have this form:
 *   forward : g = h_prev (B,H), J = H, panels of W_hh rows, out = Xp rows
 *   backward: g = dG_h (B,G*H), J = G*H, panels of W_hh columns, out = dh_prev
 * Tiles: 4 sequences x 2 panels, leftover sequences 1 x up to 8 panels (8
 * FMA chains even at batch 1). rows, when given, lists the B sequence rows
 * to use (the active ones of a variable-length batch); NULL means 0..B-1. Every output is its old value followed by one
 * FMA chain over j in order, whatever the tile, so tiling and thread slicing
 * never change a bit. */
/* The accumulators of a tile: rem = columns left from p (<= 0: none). Whole
 * panels use plain loads and stores: AMD's masked store is microcoded (over
 * 10 cycles), which at J = 128 cost a tenth of the tile's time. */
static inline TGT V acc_load(const float *p, int64_t rem)
{
#if defined(FR_ISA_AVX512)
    return rem >= VW ? v_ld(p) : _mm512_maskz_loadu_ps(v_head(rem > 0 ? rem : 0), p);
#else
    return rem >= VW ? v_ld(p) : _mm256_maskload_ps(p, lane_mask(rem));
#endif
}

static inline TGT void acc_store(float *p, int64_t rem, V v)
{
#if defined(FR_ISA_AVX512)
    if (rem >= VW) v_st(p, v);
    else _mm512_mask_storeu_ps(p, v_head(rem > 0 ? rem : 0), v);
#else
    if (rem >= VW) v_st(p, v);
    else _mm256_maskstore_ps(p, lane_mask(rem), v);
#endif
}

/* R rows of op(A) from A (row r at A + r*am, element k at + k*ak; at = 1
 * means am = 1, ak = lda, else ak = 1) against NP (1-3) panels of kc rows
 * at P (the next at P + kc*VW, ...), into C (row stride ldc), rem columns
 * left from the first panel; zero: C's old values are taken as +0 (not
 * read), which is what a zeroed C would give, bit for bit, or, with init,
 * as the row at init (every row's, as a C filled with that row would give). */
static inline INL TGT void gemm_tile(const float *A, int64_t lda, const int at,
                                     const float *P, int64_t kc, float *C, int64_t ldc,
                                     int64_t rem, const int R, const int NP, int zero,
                                     const float *init)
{
    V acc[8][3];
    for (int r = 0; r < R; r++)
        for (int q = 0; q < NP; q++)
            acc[r][q] = !zero ? acc_load(C + r * ldc + q * VW, rem - q * VW)
                        : init ? acc_load(init + q * VW, rem - q * VW) : v_zero();
    const float *P1 = P + kc * VW, *P2 = P + 2 * kc * VW;
    for (int64_t k = 0; k < kc; k++) {
        const V w0 = v_lda(P + k * VW);
        const V w1 = NP > 1 ? v_lda(P1 + k * VW) : w0, w2 = NP > 2 ? v_lda(P2 + k * VW) : w0;
        for (int r = 0; r < R; r++) {
            const V a = at ? v_bcast(A + k * lda + r) : v_bcast(A + r * lda + k);
            acc[r][0] = v_fmadd(a, w0, acc[r][0]);
            if (NP > 1) acc[r][1] = v_fmadd(a, w1, acc[r][1]);
            if (NP > 2) acc[r][2] = v_fmadd(a, w2, acc[r][2]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int q = 0; q < NP; q++) acc_store(C + r * ldc + q * VW, rem - q * VW, acc[r][q]);
}

#define ROW(i) (rows ? rows[i] : (i))

/* R sequences (rows g_[i], outputs o_[i]) x 2 panels (P0, P1; m0, m1
 * columns left from each) over j < J, each output its old value followed by
 * one FMA chain over j in order, one variable an accumulator: 4 rows inline
 * in panel_axpy (8 accumulators), and for AVX2 6 rows (12 of its 16
 * registers, 8 loads per 12 FMAs against 6 per 8) in tile_6x2, a function
 * of its own: inlined into panel_axpy, or with its accumulators in an
 * array, GCC kept row pointers or accumulators on the stack and touched
 * them every j (15-60% slower than the 4-row tile); the 4-row tile as a
 * call was 4-5% slower at B = 4-5. */
#define TILE_X2_DECL(i)                                                        \
    const float *g##i = g_[i];                                                 \
    V a##i##0 = acc_load(o_[i], m0), a##i##1 = acc_load(o_[i] + off1, m1);
#define TILE_X2_FMA(i)                                                         \
    v = v_bcast(g##i + j);                                                     \
    a##i##0 = v_fmadd(v, r0, a##i##0); a##i##1 = v_fmadd(v, r1, a##i##1);
#define TILE_X2_STORE(i) acc_store(o_[i], m0, a##i##0); acc_store(o_[i] + off1, m1, a##i##1);
#define TILE_X3_DECL(i)                                                        \
    const float *g##i = g_[i];                                                 \
    V a##i##0 = acc_load(o_[i], m0), a##i##1 = acc_load(o_[i] + off1, m1),     \
      a##i##2 = acc_load(o_[i] + off2, m2);
#define TILE_X3_FMA(i)                                                         \
    v = v_bcast(g##i + j);                                                     \
    a##i##0 = v_fmadd(v, r0, a##i##0); a##i##1 = v_fmadd(v, r1, a##i##1);      \
    a##i##2 = v_fmadd(v, r2, a##i##2);
#define TILE_X3_STORE(i) acc_store(o_[i], m0, a##i##0);                        \
    acc_store(o_[i] + off1, m1, a##i##1); acc_store(o_[i] + off2, m2, a##i##2);
#define TILE_ROWS4(X) X(0) X(1) X(2) X(3)
#define TILE_ROWS5(X) TILE_ROWS4(X) X(4)
#define TILE_ROWS6(X) TILE_ROWS5(X) X(5)
#define TILE_X2_BODY(ROWS)                                                     \
    do {                                                                       \
        ROWS(TILE_X2_DECL)                                                     \
        for (int64_t j = 0; j < J; j++) {                                      \
            const V r0 = v_lda(P0 + j * VW), r1 = v_lda(P1 + j * VW);          \
            V v;                                                               \
            ROWS(TILE_X2_FMA)                                                  \
        }                                                                      \
        ROWS(TILE_X2_STORE)                                                    \
    } while (0)
#if VW == 8
static __attribute__((noinline)) TGT void tile_6x2(const float *const *g_, float *const *o_,
                                                    const float *P0, const float *P1,
                                                    int64_t J, int64_t off1, int64_t m0,
                                                    int64_t m1)
{
    TILE_X2_BODY(TILE_ROWS6);
}
static __attribute__((noinline)) TGT void tile_5x2(const float *const *g_, float *const *o_,
                                                    const float *P0, const float *P1,
                                                    int64_t J, int64_t off1, int64_t m0,
                                                    int64_t m1)
{
    TILE_X2_BODY(TILE_ROWS5);
}
/* 4 rows x 3 panels (P0, P1, P2; outputs at o_, o_ + off1, o_ + off2; m0,
 * m1, m2 columns left in each): 12 accumulators, 7 loads per 12 FMAs */
static __attribute__((noinline)) TGT void tile_4x3(const float *const *g_, float *const *o_,
                                                    const float *P0, const float *P1,
                                                    const float *P2, int64_t J, int64_t off1,
                                                    int64_t off2, int64_t m0, int64_t m1,
                                                    int64_t m2)
{
    TILE_ROWS4(TILE_X3_DECL)
    for (int64_t j = 0; j < J; j++) {
        const V r0 = v_lda(P0 + j * VW), r1 = v_lda(P1 + j * VW), r2 = v_lda(P2 + j * VW);
        V v;
        TILE_ROWS4(TILE_X3_FMA)
    }
    TILE_ROWS4(TILE_X3_STORE)
}
#endif

/* Panel k of gate q in G gates' panel sequence (nbg panels a gate, pgs
 * panels between the gates' first panels at P, ogs columns between their
 * first outputs): its vectors, first output column and columns left; and
 * the step from a panel to the next (walked, never divided out, in the
 * loops). */
#define GPQK(q, k) (P + ((q) * pgs + (k)) * J * VW)
#define GCOLQK(q, k) ((q) * ogs + (k) * VW)
#define GREMK(k) (n - (k) * VW)
#define GNEXT(q, k)                                                               \
    do {                                                                          \
        if (++(k) == nbg) { (k) = 0; (q)++; }                                     \
    } while (0)
/* R sequences (rows b0..b0+R-1) x NP panels from panel c (gate cg,
 * panel ck of it; all three advance past them): the panel
 * vectors are loaded once per j and shared by the R rows (the 1-3 rows
 * left over every panel: B = 1..3 reads W_hh once per step, not once per
 * row) */
#define GPANEL_TILE_RxN(R, NP)                                                    \
    do {                                                                          \
        V a[R][NP];                                                               \
        float *o_[R];                                                             \
        const float *g_[R], *Pq[NP];                                              \
        int64_t cq[NP], mq[NP];                                                   \
        for (int q = 0; q < NP; q++) {                                            \
            Pq[q] = GPQK(cg, ck); cq[q] = GCOLQK(cg, ck); mq[q] = GREMK(ck);      \
            GNEXT(cg, ck);                                                        \
        }                                                                         \
        for (int r_ = 0; r_ < R; r_++) {                                          \
            o_[r_] = out + ROW(b0 + r_) * ldo;                                    \
            g_[r_] = g + ROW(b0 + r_) * ldg;                                      \
            for (int q = 0; q < NP; q++)                                          \
                a[r_][q] = acc_load(o_[r_] + cq[q], mq[q]);                       \
        }                                                                         \
        for (int64_t j = 0; j < J; j++) {                                         \
            V w_[NP];                                                             \
            for (int q = 0; q < NP; q++) w_[q] = v_lda(Pq[q] + j * VW);           \
            for (int r_ = 0; r_ < R; r_++) {                                      \
                const V v = v_bcast(g_[r_] + j);                                  \
                for (int q = 0; q < NP; q++)                                      \
                    a[r_][q] = v_fmadd(v, w_[q], a[r_][q]);                       \
            }                                                                     \
        }                                                                         \
        for (int r_ = 0; r_ < R; r_++)                                            \
            for (int q = 0; q < NP; q++)                                          \
                acc_store(o_[r_] + cq[q], mq[q], a[r_][q]);                       \
        c += NP;                                                                  \
    } while (0)

/* The `left` (1-3) rows from b0 over the panels from c (cg, ck) to np */
#define GPANEL_LEFTOVERS()                                                        \
    do {                                                                          \
        if (left == 3) {                                                          \
            while (c + 3 <= np) GPANEL_TILE_RxN(3, 3);                            \
            while (c < np) GPANEL_TILE_RxN(3, 1);                                 \
        } else if (left == 2) {                                                   \
            while (c + 4 <= np) GPANEL_TILE_RxN(2, 4);                            \
            while (c < np) GPANEL_TILE_RxN(2, 1);                                 \
        } else if (left == 1) {                                                   \
            while (c + 8 <= np) GPANEL_TILE_RxN(1, 8);                            \
            while (c + 4 <= np) GPANEL_TILE_RxN(1, 4);                            \
            while (c < np) GPANEL_TILE_RxN(1, 1);                                 \
        }                                                                         \
    } while (0)

static TGT void panel_axpy_gates(const float *g, int64_t ldg, int64_t B, int64_t J,
                                 const float *P, int64_t pgs, float *out, int64_t ogs,
                                 int64_t ldo, int64_t n, int G, const int64_t *rows);

static TGT void panel_axpy(const float *g, int64_t ldg, int64_t B, int64_t J,
                            const float *P, float *out, int64_t ldo, int64_t n,
                            const int64_t *rows)
{
#if VW == 8
    /* AVX2: one gate of panel_axpy_gates, which holds the 6-, 5- and 4-row
     * tiles */
    panel_axpy_gates(g, ldg, B, J, P, 0, out, 0, ldo, n, 1, rows);
#else
    const int64_t np = (n + VW - 1) / VW;
    /* leftover sequences, done over all panels at once at the end */
    int64_t left = B % 4;
    /* rows in order (not a var-length batch's active list): tiles of 8
     * rows, then the 4-7 left, over groups of 3 panels, as the GEMM's
     * (AVX-512's 32 registers hold up to 24 accumulators); 1-3 rows left
     * take the tiles below */
    if (!rows) {
        const int64_t B8 = B - B % 8, rest = B - B8;
        for (int64_t c = 0; c < np; c += 3) {
            const int NPc = np - c < 3 ? (int)(np - c) : 3;
            const float *Pc = P + c * J * VW;
            float *oc = out + VW * c;
            const int64_t rem = n - VW * c;
#define PAXPY_TILE(R_, b_)                                                               \
            do {                                                                         \
                if (NPc == 3) gemm_tile(g + (b_) * ldg, ldg, 0, Pc, J, oc + (b_) * ldo, ldo, rem, R_, 3, 0, NULL); \
                else if (NPc == 2) gemm_tile(g + (b_) * ldg, ldg, 0, Pc, J, oc + (b_) * ldo, ldo, rem, R_, 2, 0, NULL); \
                else gemm_tile(g + (b_) * ldg, ldg, 0, Pc, J, oc + (b_) * ldo, ldo, rem, R_, 1, 0, NULL); \
            } while (0)
            for (int64_t b = 0; b < B8; b += 8) PAXPY_TILE(8, b);
            switch (rest) {
            case 7: PAXPY_TILE(7, B8); break;
            case 6: PAXPY_TILE(6, B8); break;
            case 5: PAXPY_TILE(5, B8); break;
            case 4: PAXPY_TILE(4, B8); break;
            default: break;
            }
#undef PAXPY_TILE
        }
        left = rest >= 4 ? 0 : rest;
    } else {
        /* a var-length batch's active rows: 4-row tiles over panel pairs */
        const int64_t Bt = B - left; /* rows the 4-row tiles take */
        for (int64_t c0 = 0; c0 < np; c0 += 2) {
            const int two = c0 + 1 < np;
            const int64_t m0 = n - VW * c0, m1 = two ? n - VW * (c0 + 1) : 0; /* columns left */
            const float *P0 = P + c0 * J * VW, *P1 = two ? P0 + J * VW : P0; /* P0 again: unused */
            const int64_t off1 = VW;
            for (int64_t b = 0; b + 4 <= Bt; b += 4) {
                const float *const g_[4] = {g + ROW(b) * ldg, g + ROW(b + 1) * ldg,
                                            g + ROW(b + 2) * ldg, g + ROW(b + 3) * ldg};
                float *const o_[4] = {out + ROW(b) * ldo + VW * c0, out + ROW(b + 1) * ldo + VW * c0,
                                      out + ROW(b + 2) * ldo + VW * c0,
                                      out + ROW(b + 3) * ldo + VW * c0};
                TILE_X2_BODY(TILE_ROWS4);
            }
        }
    }
    /* leftover sequences (`left` of them), over all panels at once */
    const int64_t b0 = B - left, nbg = np, pgs = 0, ogs = 0; /* one gate */
    int64_t c = 0, cg = 0, ck = 0;
    GPANEL_LEFTOVERS();
#endif
}

/* panel_axpy over G gates at once: gate q's n columns at out + q*ogs from
 * its panels at P + q*pgs panels (of J*VW floats). On AVX2 the tiles run
 * over the panels of every gate in one sequence, so a gate's partial last
 * panel pairs with the next gate's first (per gate, H = 77 or 100 left an
 * odd panel or a 3 x 1 tail in every gate); each output is the same FMA
 * chain as per gate, so the bits are those of G calls of panel_axpy. */

static TGT void panel_axpy_gates(const float *g, int64_t ldg, int64_t B, int64_t J,
                                 const float *P, int64_t pgs, float *out, int64_t ogs,
                                 int64_t ldo, int64_t n, int G, const int64_t *rows)
{
#if VW == 16
    for (int q = 0; q < G; q++)
        panel_axpy(g, ldg, B, J, P + q * pgs * J * VW, out + q * ogs, ldo, n, rows);
#else
    const int64_t nbg = (n + VW - 1) / VW, np = G * nbg;
    /* AVX2: tiles of 6 sequences x 2 panels first (12 accumulators, 8 loads
     * per 12 FMAs against 6 per 8); 5 left take one 5 x 2 tile (against
     * 4 x 2 and a second pass over every panel for the last row: LSTM B=5
     * H=128 0.93, H=512 0.81, GRU B=5 H=131 0.87 on one thread; 1-3 rows
     * left as 1-3 x 2 tiles on the pair the 6-row tiles just read were
     * 3-7% slower than their own pass below).
     * 1-3 rows left after tiles of 6: n5 tiles of 5 rows instead, where
     * that takes every row (5 n5 = -B mod 6), rather than a second pass
     * over every panel for those rows (20 rows: 4 x 5 against 3 x 6 + 2);
     * 4 left take a 4-row tile (10 rows as 5 + 5 was 1.03x slower) */
    int64_t n5 = B % 6 == 4 ? 0 : (6 - B % 6) % 6;
    if (5 * n5 > B) n5 = 0;
    const int64_t B6 = B - 5 * n5 - (B - 5 * n5) % 6, r6 = B - 5 * n5 - B6;
    const int64_t left = r6 >= 4 ? r6 - 4 : r6;
    const int64_t Bt = B - left; /* rows the 6-, 5- and 4-row tiles take */
    int64_t cstart = 0;
    /* exactly 4 rows: 4 x 3 tiles (12 accumulators; the 4 x 2 tile's 8
     * FMA chains are just the FMA units' latency times their width, and
     * any late load stalls them): paired medians, 2 threads, both orders,
     * LSTM B=4 H=512 0.92-0.95, B=4 H=256 0.95-0.97, B=4 H=128 training
     * 0.96; one thread 0.99-1.02 */
    int64_t cg = 0, ck = 0; /* gate and panel in it of panel cstart */
    if (B == 4) {
        const float *const g4[4] = {g + ROW(0) * ldg, g + ROW(1) * ldg, g + ROW(2) * ldg,
                                    g + ROW(3) * ldg};
        for (; cstart + 3 <= np; cstart += 3) {
            int64_t q1 = cg, k1 = ck, q2, k2;
            GNEXT(q1, k1);
            q2 = q1, k2 = k1;
            GNEXT(q2, k2);
            const int64_t col0 = GCOLQK(cg, ck);
            float *const o4[4] = {out + ROW(0) * ldo + col0, out + ROW(1) * ldo + col0,
                                  out + ROW(2) * ldo + col0, out + ROW(3) * ldo + col0};
            for (int i = 0; i < 4; i++) __builtin_prefetch(o4[i] + 3 * VW, 1, 3);
            tile_4x3(g4, o4, GPQK(cg, ck), GPQK(q1, k1), GPQK(q2, k2), J,
                     GCOLQK(q1, k1) - col0, GCOLQK(q2, k2) - col0, GREMK(ck), GREMK(k1),
                     GREMK(k2));
            cg = q2, ck = k2;
            GNEXT(cg, ck);
        }
    }
    int64_t q0 = cg, k0 = ck; /* of panel c0 */
    for (int64_t c0 = cstart; c0 < np && Bt > 0; c0 += 2) {
        const int two = c0 + 1 < np;
        int64_t q1 = q0, k1 = k0;
        GNEXT(q1, k1);
        const int64_t col0 = GCOLQK(q0, k0), off1 = two ? GCOLQK(q1, k1) - col0 : 0;
        const int64_t m0 = GREMK(k0), m1 = two ? GREMK(k1) : 0; /* columns left */
        const float *P0 = GPQK(q0, k0), *P1 = two ? GPQK(q1, k1) : P0; /* P0 again: unused */
        for (int64_t b = 0; b < B6 + 5 * n5;) { /* the 6-row tiles, then the 5-row */
            const int R = b < B6 ? 6 : 5;
            const float *gr[6];
            float *orow[6];
            for (int i = 0; i < R; i++) {
                gr[i] = g + ROW(b + i) * ldg;
                orow[i] = out + ROW(b + i) * ldo + col0;
                __builtin_prefetch(orow[i] + 2 * VW, 1, 3);
            }
            if (R == 6) tile_6x2(gr, orow, P0, P1, J, off1, m0, m1);
            else tile_5x2(gr, orow, P0, P1, J, off1, m0, m1);
            b += R;
        }
        for (int64_t b = B6 + 5 * n5; b + 4 <= Bt; b += 4) {
            const float *const g_[4] = {g + ROW(b) * ldg, g + ROW(b + 1) * ldg,
                                        g + ROW(b + 2) * ldg, g + ROW(b + 3) * ldg};
            float *const o_[4] = {out + ROW(b) * ldo + col0, out + ROW(b + 1) * ldo + col0,
                                  out + ROW(b + 2) * ldo + col0, out + ROW(b + 3) * ldo + col0};
            for (int i = 0; i < 4; i++) __builtin_prefetch(o_[i] + 2 * VW, 1, 3);
            TILE_X2_BODY(TILE_ROWS4);
        }
        q0 = q1, k0 = k1;
        GNEXT(q0, k0);
    }
    /* leftover sequences (`left` of them), over every gate's panels */
    const int64_t b0 = B - left;
    int64_t c = cstart;
    GPANEL_LEFTOVERS();
#endif
}
#undef GPANEL_TILE_RxN
#undef GPANEL_LEFTOVERS
#undef GPQK
#undef GCOLQK
#undef GREMK
#undef GNEXT

#undef ROW

/* The 8x8 transpose in registers: r[i] holds row i on entry, column i on
 * return. */
static inline INL AVX2 void transpose8_regs(__m256 *r)
{
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/* Rows r..r+7 of W, columns k..k+7, transposed in registers: column k+c
 * goes to o + c * ostride (8 floats, 32-byte aligned). */
static inline AVX2 void transpose8_store(const float *w, int64_t ldw, float *o, int64_t ostride)
{
    __m256 r[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(w + i * ldw);
    transpose8_regs(r);
    for (int i = 0; i < 8; i++) _mm256_store_ps(o + i * ostride, r[i]);
}

/* Rows r..r+5 of W, columns k..k+7, transposed in registers: column k+c
 * (6 floats) goes to o + 6c. Each of the first seven stores writes 8
 * floats, its last 2 into the next column's place, which the next store
 * then writes: so the 8 columns go out in order and the last one writes
 * just its 6. */
static inline AVX2 void transpose6x8_store(const float *w, int64_t ldw, float *o)
{
    __m256 r[8];
    for (int i = 0; i < 6; i++) r[i] = _mm256_loadu_ps(w + i * ldw);
    r[6] = r[7] = _mm256_setzero_ps();
    transpose8_regs(r);
    for (int i = 0; i < 7; i++) _mm256_storeu_ps(o + 6 * i, r[i]);
    _mm_storeu_ps(o + 42, _mm256_castps256_ps128(r[7]));
    _mm_storel_pi((__m64 *)(o + 46), _mm256_extractf128_ps(r[7], 1));
}

/* Pack rows [r0, r0+n) of W (ldw apart), K columns, in panels for
 * panel_axpy: panel p holds W[r0 + VW p + i, k] at [k*VW + i] (W_hh's gate
 * rows with K = H, W_ih's with K = In, or a GEMM's op(B) = B^T); lanes past
 * n are zero. */
static TGT void pack_rows(const float *W, int64_t ldw, int64_t r0, int64_t n,
                          int64_t K, float *P)
{
    const int64_t K8 = K & ~(int64_t)7;
    for (int64_t p = 0; p * VW < n; p++) {
        float *Pp = P + p * K * VW;
        const int64_t m = n - VW * p < VW ? n - VW * p : VW;
        const float *w = W + (r0 + VW * p) * ldw;
        if (m == VW) { /* 8x8 blocks transposed in registers, contiguous stores */
            for (int64_t k = 0; k < K8; k += 8)
                for (int h = 0; h < VW; h += 8)
                    transpose8_store(w + h * ldw + k, ldw, Pp + k * VW + h, VW);
            for (int64_t k = K8; k < K; k++)
                for (int64_t i = 0; i < VW; i++) Pp[k * VW + i] = w[i * ldw + k];
            continue;
        }
        for (int64_t i = 0; i < VW; i++) {
            if (i < m) for (int64_t k = 0; k < K; k++) Pp[k * VW + i] = w[i * ldw + k];
            else for (int64_t k = 0; k < K; k++) Pp[k * VW + i] = 0;
        }
    }
}

/* ---- elementwise gate math, VW units at a time --------------------------- */

/* Loads and stores of the gate math: rem units valid from p (rem >= VW:
 * whole vectors; the callers of whole blocks pass the constant VW, so these
 * are plain loads and stores there). A partial last block loads +0 into the
 * lanes past rem, as padded copies would, and stores only its units: every
 * unit sees the same instructions as in a whole block. */
#define LDR(p) acc_load((p), rem)
#define STR(p, v) acc_store((p), rem, (v))

/* Gate math on NB blocks of VW units side by side (NB <= NBLK; block b at
 * offset VW b of every pointer, gate q at offset qH), software-pipelined:
 * the LSTM's tanh(c') and the GRU's tanh(n) need the gates of their own
 * block first, so run alone they would be 2 exp chains in flight where the
 * gates had 8 (4). Each call below therefore also finishes the NBP blocks
 * the call before it left pending (their tanh's exp joins this call's exps
 * in one v_exp_k) and leaves its own NB blocks pending for the next. The
 * same instructions reach every lane as without the pipeline (v_exp_k is
 * lane by lane for any K), so the bits do not change. A call with NB = 0
 * only finishes; with NBP = 0 it only starts. Loads and stores of the
 * pending blocks use their own rem (remp). */
#define LDRP(p) acc_load((p), remp)
#define STRP(p, v) acc_store((p), remp, (v))

/* LSTM: i,f,g,o from pre; c' = f c + i g; h' = o tanh(c'). Pending: c'
 * and o in cq/oq, their h' to hxq and ybq. */
static inline INL TGT void lstm_stage(float *pre, int64_t H, const float *cp, float *cx,
                                       int keep, const int NB, const int64_t rem,
                                       V *cq, V *oq, float *hxq, float *ybq,
                                       const int NBP, const int64_t remp)
{
    V p[4 * NBLK], e[5 * NBLK];
    for (int b = 0; b < NB; b++)
        for (int q = 0; q < 4; q++) {
            p[4 * b + q] = LDR(pre + q * H + VW * b);
            e[4 * b + q] = q == 2 ? tanh_arg(p[4 * b + q]) : sigmoid_arg(p[4 * b + q]);
        }
    for (int b = 0; b < NBP; b++) e[4 * NB + b] = tanh_arg(cq[b]);
    unsigned pos = 0; /* tanh's exps (2|x| >= 0): gate g of each block, the pending */
    for (int b = 0; b < NB; b++) pos |= 1u << (4 * b + 2);
    for (int b = 0; b < NBP; b++) pos |= 1u << (4 * NB + b);
    v_exp_k(e, 4 * NB + NBP, pos);
    for (int b = 0; b < NBP; b++) {
        const V h = v_mul(oq[b], tanh_from(cq[b], e[4 * NB + b]));
        STRP(hxq + VW * b, h);
        STRP(ybq + VW * b, h);
    }
    for (int b = 0; b < NB; b++) {
        V *g = p + 4 * b; /* i, f, g, o */
        const V *eg = e + 4 * b;
        g[0] = sigmoid_from(g[0], eg[0]);
        g[1] = sigmoid_from(g[1], eg[1]);
        g[2] = tanh_from(g[2], eg[2]);
        g[3] = sigmoid_from(g[3], eg[3]);
        cq[b] = v_fmadd(g[1], LDR(cp + VW * b), v_mul(g[0], g[2]));
        oq[b] = g[3];
        if (keep)
            for (int q = 0; q < 4; q++) STR(pre + q * H + VW * b, g[q]);
        STR(cx + VW * b, cq[b]);
    }
}

/* GRU: r = s(xr+hr), z = s(xz+hz), n = tanh(xn + r (hn + b_hn)),
 * h' = (1-z) n + z h. Pending: n's argument and z in nq/zq; h from hpq,
 * h' to hxq and ybq, n to gcq + 2H. */
static inline INL TGT void gru_stage(const float *pre, const float *gh, int64_t H,
                                      const float *bhn, float *gc, const int NB,
                                      const int64_t rem, V *nq, V *zq, const float *hpq,
                                      float *hxq, float *ybq, float *gcq, const int NBP,
                                      const int64_t remp)
{
    const V one = v_set1(1.0f);
    V a[2 * NBLK], e[3 * NBLK];
    for (int b = 0; b < NB; b++)
        for (int q = 0; q < 2; q++) {
            a[2 * b + q] = v_add(LDR(pre + q * H + VW * b), LDR(gh + q * H + VW * b));
            e[2 * b + q] = sigmoid_arg(a[2 * b + q]);
        }
    for (int b = 0; b < NBP; b++) e[2 * NB + b] = tanh_arg(nq[b]);
    v_exp_k(e, 2 * NB + NBP, ((1u << NBP) - 1u) << (2 * NB)); /* tanh's exps (2|x| >= 0): the pending */
    for (int b = 0; b < NBP; b++) {
        const V n = tanh_from(nq[b], e[2 * NB + b]);
        const V h = v_fmadd(zq[b], LDRP(hpq + VW * b), v_mul(v_sub(one, zq[b]), n));
        if (gcq) STRP(gcq + 2 * H + VW * b, n);
        STRP(hxq + VW * b, h);
        STRP(ybq + VW * b, h);
    }
    for (int b = 0; b < NB; b++) {
        const V r = sigmoid_from(a[2 * b], e[2 * b]);
        zq[b] = sigmoid_from(a[2 * b + 1], e[2 * b + 1]);
        V hl = LDR(gh + 2 * H + VW * b);
        if (bhn) hl = v_add(hl, LDR(bhn + VW * b));
        nq[b] = v_fmadd(r, hl, LDR(pre + 2 * H + VW * b));
        if (gc) {
            STR(gc + VW * b, r); STR(gc + H + VW * b, zq[b]); STR(gc + 3 * H + VW * b, hl);
        }
    }
}

/* RNN: h' = tanh(pre) or relu(pre), no dependence between the exps: NB up
 * to 2 NBLK blocks side by side. */
static inline INL TGT void rnn_cells(float *pre, int relu, float *hx, float *yb, int keep,
                                      const int NB, const int64_t rem)
{
    V v[2 * NBLK];
    for (int b = 0; b < NB; b++) v[b] = LDR(pre + VW * b);
    if (relu) /* relu(NaN) = NaN, as torch: max returns its 2nd operand on NaN */
        for (int b = 0; b < NB; b++) v[b] = v_max(v_zero(), v[b]);
    else
        v_tanh_k(v, NB);
    for (int b = 0; b < NB; b++) {
        if (keep) STR(pre + VW * b, v[b]);
        STR(hx + VW * b, v[b]);
        STR(yb + VW * b, v[b]);
    }
}

/* The pipeline over units [j0, j1): NBLK blocks at a time, then one, then
 * a partial last block (masked loads and stores, LDR), then the finish of
 * the last pending blocks. STAGE(j, NB, rem, NBP) is a stage call with the
 * pending blocks at unit jq (remp units in the last). */
#define PIPE_UNITS(STAGE)                                                      \
    do {                                                                       \
        int nbp_ = 0;                                                          \
        int64_t j = j0, jq = j0, remp = VW;                                    \
        for (; j + VW * NBLK <= j1; j += VW * NBLK) {                          \
            if (nbp_) STAGE(j, NBLK, VW, NBLK); else STAGE(j, NBLK, VW, 0);    \
            nbp_ = NBLK; jq = j;                                               \
        }                                                                      \
        for (; j < j1; j += VW) {                                              \
            const int64_t r_ = j1 - j < VW ? j1 - j : VW;                      \
            if (r_ == VW) {                                                    \
                if (nbp_ == NBLK) STAGE(j, 1, VW, NBLK);                       \
                else if (nbp_) STAGE(j, 1, VW, 1);                             \
                else STAGE(j, 1, VW, 0);                                       \
            } else {                                                           \
                if (nbp_ == NBLK) STAGE(j, 1, r_, NBLK);                       \
                else if (nbp_) STAGE(j, 1, r_, 1);                             \
                else STAGE(j, 1, r_, 0);                                       \
            }                                                                  \
            nbp_ = 1; jq = j; remp = r_;                                       \
        }                                                                      \
        if (nbp_ == NBLK) STAGE(j, 0, VW, NBLK);                               \
        else if (nbp_) STAGE(j, 0, VW, 1);                                     \
    } while (0)

#define LSTM_STAGE(j, NB, rem, NBP)                                            \
    lstm_stage(pre + (j), H, cp + (j), cx + (j), keep, NB, rem, cq, oq,        \
               hx + jq, yb + jq, NBP, remp)
#define GRU_STAGE(j, NB, rem, NBP)                                             \
    gru_stage(pre + (j), gh + (j), H, bhn ? bhn + (j) : NULL,                  \
              gc ? gc + (j) : NULL, NB, rem, nq, zq, hp + jq, hx + jq,         \
              yb + jq, gc ? gc + jq : NULL, NBP, remp)

/* The pipelines of one cell type each, in functions of their own (one
 * function for all three kept its pending vectors in memory: LSTM H=24
 * 12.4 against 10.2 cycles a unit). */
static __attribute__((noinline)) TGT void lstm_units(int64_t H, int64_t j0, int64_t j1,
                                                     float *pre, const float *cp,
                                                     float *hx, float *cx, float *yb,
                                                     int keep)
{
    V cq[NBLK], oq[NBLK];
    PIPE_UNITS(LSTM_STAGE);
}

static __attribute__((noinline)) TGT void gru_units(int64_t H, int64_t j0, int64_t j1,
                                                    const float *pre, const float *gh,
                                                    const float *bhn, const float *hp,
                                                    float *hx, float *yb, float *gc)
{
    V nq[NBLK], zq[NBLK];
    PIPE_UNITS(GRU_STAGE);
}

/* Gate math for units [j0, j1) of one sequence row. j0 is a multiple of
 * VW. */
static TGT void cell_units(int cell, int64_t H, int64_t j0, int64_t j1,
                            float *pre, const float *gh, const float *bhn,
                            const float *hp, const float *cp, float *hx, float *cx,
                            float *yb, float *gc, int keep)
{
    if (cell == FR_CELL_LSTM) {
        lstm_units(H, j0, j1, pre, cp, hx, cx, yb, keep);
    } else if (cell == FR_CELL_GRU) {
        gru_units(H, j0, j1, pre, gh, bhn, hp, hx, yb, gc);
    } else {
        const int relu = cell == FR_CELL_RNN_RELU;
        int64_t j = j0;
        for (; j + 2 * VW * NBLK <= j1; j += 2 * VW * NBLK)
            rnn_cells(pre + j, relu, hx + j, yb + j, keep, 2 * NBLK, VW);
        for (; j + VW <= j1; j += VW)
            rnn_cells(pre + j, relu, hx + j, yb + j, keep, 1, VW);
        if (j < j1)
            rnn_cells(pre + j, relu, hx + j, yb + j, keep, 1, j1 - j);
    }
}


/* Rows of a variable-length batch sorted by length, longest first (ties by
 * index): the sequences still active at step t are then a prefix of it. */
static int cmp_len_desc(const void *a, const void *b)
{
    const int64_t *x = (const int64_t *)a, *y = (const int64_t *)b;
    if (x[0] != y[0]) return x[0] > y[0] ? -1 : 1;
    return x[1] < y[1] ? -1 : (x[1] > y[1]);
}

/* The batch rows by length in the scratch at buf (after the packed
 * weights: 2*B int64), or NULL when every length is T. Its second B int64
 * are free once it returns (fwd_rows_var's per-thread lists). */
static int64_t *rows_by_length(const fr_desc *d, float *at)
{
    if (d->lengths == NULL) return NULL;
    int64_t *buf = (int64_t *)at;
    for (int64_t b = 0; b < d->B; b++) { buf[2 * b] = d->lengths[b]; buf[2 * b + 1] = b; }
    qsort(buf, (size_t)d->B, 2 * sizeof(int64_t), cmp_len_desc);
    for (int64_t i = 0; i < d->B; i++) buf[i] = buf[2 * i + 1]; /* reads stay ahead of writes */
    return buf;
}

/* Number of sequences active at step t, moving from n (its value at a
 * neighbouring step). */
static inline int64_t active_count(const int64_t *lengths, const int64_t *order, int64_t B,
                                   int64_t t, int64_t n)
{
    while (n > 0 && lengths[order[n - 1]] <= t) n--;
    while (n < B && lengths[order[n]] > t) n++;
    return n;
}

/* Units [j0, j1) of thread tid among nth: blocks of VW units (one panel),
 * so that block boundaries (and the padded tail) do not depend on the
 * thread count. */
static void unit_slice(int64_t H, int tid, int nth, int64_t *j0, int64_t *j1)
{
    const int64_t nblk = (H + VW - 1) / VW;
    const int64_t a = nblk * tid / nth, b = nblk * (tid + 1) / nth;
    *j0 = a * VW;
    *j1 = b * VW < H ? b * VW : H;
    if (*j0 > H) *j0 = H;
}

/* The units of the calling thread of the current OpenMP team. */
static void my_units(int64_t H, int64_t *j0, int64_t *j1)
{
    int tid = 0, nth = 1;
#ifdef _OPENMP
    tid = omp_get_thread_num();
    nth = omp_get_num_threads();
#endif
    unit_slice(H, tid, nth, j0, j1);
}

/* The meeting of the time loops' threads once a step: a counter and a
 * flag that flips each time, in a cache line of their own. libgomp's
 * barrier took 0.45-0.58 us against 0.23 for this one on the 2-vCPU VM
 * (200,000 meetings of 2 threads), and the small models meet every 3-15
 * us. A waiting thread spins with pause for fr_fast_spin_turns() turns
 * (rnn_fast.c: 20,000, some 0.6 ms; 16 with more threads in such teams
 * than CPUs, so that the threads it waits for get the cores: spinning
 * 4,096 turns there made 4 callers of 2 threads on 2 cores 3x slower than
 * libgomp's barrier, which throttles its spinning the same way; 0 under
 * OMP_WAIT_POLICY=passive), then yields to the OS at every turn. Each
 * thread's writes before the meeting are seen by every thread after it:
 * the counter's add releases and acquires, the flag is stored with release
 * and loaded with acquire. */
typedef struct {
    _Alignas(64) atomic_int count;
    atomic_int flag;
    char pad_[56];
} step_meet;

static inline void meet(step_meet *m, int nth, int *my_flag)
{
    const int f = !*my_flag;
    *my_flag = f;
    if (atomic_fetch_add_explicit(&m->count, 1, memory_order_acq_rel) == nth - 1) {
        atomic_store_explicit(&m->count, 0, memory_order_relaxed);
        atomic_store_explicit(&m->flag, f, memory_order_release);
        return;
    }
    const int limit = fr_fast_spin_turns();
    for (int spins = 0; atomic_load_explicit(&m->flag, memory_order_acquire) != f; spins++) {
        if (spins < limit) _mm_pause();
        else sched_yield();
    }
}

/* Threads worth using: below FR_FAST_MIN_WORK multiply-adds per step the
 * barrier costs more than the work it splits. */
static int fast_threads(const fr_desc *d)
{
    const int64_t work = d->B * (int64_t)fr_num_gates(d->cell) * d->H * d->H;
    int nt = d->num_threads;
    if (work < FR_FAST_MIN_WORK) nt = 1;
    if (nt > (d->H + VW - 1) / VW) nt = (int)((d->H + VW - 1) / VW);
    return nt < 1 ? 1 : nt;
}

/* Threads for a batch split between threads (fwd_rows), or 0 for the
 * split by units. With the batch split no thread waits for another between
 * steps and no state crosses cores, but each thread streams all of W_hh
 * every step, so it must stay in one core's L2 (FR_FAST_ROWS_MAX_FLOATS).
 * Used where the split by units runs on one thread (too little work per
 * step for a meeting every step), or where its slices end inside cache
 * lines (H not a multiple of 16: every row of h, c, y and the gates then
 * has a line written by two threads every step; LSTM B=7 H=77: 1.5-2.2
 * against 0.7 ms). Elsewhere the units split stays (it was faster: LSTM
 * B=3 H=96 0.56 against 0.62 ms, B=5 H=128 0.92 against 1.00), but for
 * FR_FAST_ROWS_MIN_ROWS rows a thread and more, or 4 rows a thread and
 * more with a W_hh of up to FR_FAST_ROWS4_MAX_FLOATS. Needs a sequence per
 * thread, equal lengths, and enough work for a fork. */
static int fast_by_rows(const fr_desc *d)
{
    int nt = d->num_threads;
    if (nt > d->B) nt = (int)d->B;
    if (nt < 2 || d->lengths != NULL) return 0;
    const int64_t work = d->T * d->B * (int64_t)fr_num_gates(d->cell) * d->H * (d->H + d->I_);
    if (work < FR_FAST_ROWS_MIN_WORK) return 0;
    /* many rows a thread: each panel of W_hh serves enough rows a step
     * that streaming all of it costs little, and no meeting every step
     * leaves a thread that its neighbours slow down holding up the other
     * at every step (FR_FAST_ROWS_MIN_ROWS) */
    if (d->B >= (int64_t)FR_FAST_ROWS_MIN_ROWS * nt) return nt;
    if (d->B >= 4 * (int64_t)nt && fr_fast_pack_floats(d) <= FR_FAST_ROWS4_MAX_FLOATS) return nt;
    if (fast_threads(d) > 1 && d->H % 16 == 0) return 0;
    if (fr_fast_pack_floats(d) > FR_FAST_ROWS_MAX_FLOATS) return 0;
    return nt;
}

/* A variable-length batch with x projected before the loop and W_hh packed,
 * and FR_FAST_ROWS_MIN_ROWS rows a thread or more, or 4 or more with W_hh
 * of at most FR_FAST_ROWS4_MAX_FLOATS (as fast_by_rows for equal lengths):
 * the batch split too (fwd_rows_var), the rows dealt out in length order,
 * instead of the units split's meeting at every step (paired, both orders:
 * LSTM B=24 H=128 0.86/0.94, GRU B=12 H=256 0.885/0.99, GRU B=10 H=100
 * 0.73, LSTM B=16 H=256 0.93/1.02, B=10 H=512 1.01/0.99). Returns the
 * thread count, or 0. */
static int fwd_var_by_rows(const fr_desc *d, int packed)
{
    int nt = d->num_threads;
    if (nt > d->B) nt = (int)d->B;
    if (nt < 2 || d->lengths == NULL || !packed || fr_fast_proj_mode(d) != 0) return 0;
    if (d->B < (int64_t)FR_FAST_ROWS_MIN_ROWS * nt
        && !(d->B >= 4 * (int64_t)nt && fr_fast_pack_floats(d) <= FR_FAST_ROWS4_MAX_FLOATS))
        return 0;
    const int64_t work = d->T * d->B * (int64_t)fr_num_gates(d->cell) * d->H * (d->H + d->I_);
    return work < FR_FAST_ROWS_MIN_WORK ? 0 : nt;
}

/* Xp[:, gate rows of units j0..j1) of every gate] += x W_ih^T for those rows:
 * dot tiles on W_ih as it is (projection mode 1), or W_ih's rows packed into
 * this slice's own panels of Wp (mode 2), or, where Wi (W_ih packed whole,
 * fr_fast_pack_f32) is given, its panels as they are: the same panels, so
 * the same bits. */
static TGT void project_units(const fr_desc *d, const float *x, int64_t In,
                               const float *W, float *Wp, const float *Wi, float *Xp,
                               int64_t j0, int64_t j1)
{
    const int64_t H = d->H, M = d->T * d->B, nb = (H + VW - 1) / VW;
    const int G = fr_num_gates(d->cell);
    const int64_t GX = (int64_t)G * H;
    for (int q = 0; q < G && j1 > j0; q++) {
        if (fr_fast_proj_mode_pk(d, Wi != NULL) == 1) {
            rows_dot(x, M, In, W, q * H + j0, q * H + j1, Xp, GX);
            continue;
        }
        /* one pair of panels at a time, packed into the start of this
         * thread's slice of the scratch and used at once while it is in
         * cache: W_ih is read once and never written back packed (db-lstm-b4
         * packs 4 MiB per call) */
        float *P = Wp + fr_fast_ih_offset(d) + (q * nb + j0 / VW) * In * VW;
        for (int64_t c = j0; c < j1; c += 2 * VW) {
            const int64_t w = j1 - c < 2 * VW ? j1 - c : 2 * VW;
            if (Wi) {
                panel_axpy(x, In, M, In, Wi + (q * nb + c / VW) * In * VW, Xp + q * H + c,
                           GX, w, NULL);
                continue;
            }
            pack_rows(W, In, q * H + c, w, In, P);
            panel_axpy(x, In, M, In, P, Xp + q * H + c, GX, w, NULL);
        }
    }
}

/* What the threads of the forward time loop share (fr_fast_forward_f32's
 * arguments and the choices it made). */
typedef struct {
    const fr_desc *d;
    int dir, h0_zero, packed, by_rows, rows_project;
    const float *R, *bhn, *x, *W;
    float *Xp, *Gh, *h_a, *h_b, *c_buf, *hs, *cs, *gates, *y, *Wp;
    /* the panels of W_hh and of W_ih the loop reads: in Wp, packed by the
     * threads, or the caller's (fr_fast_pack_f32; prepacked: nothing to
     * pack) */
    const float *Wh, *Wi;
    int prepacked;
    int64_t ldy, In;
    const int64_t *order;
    step_meet *meet; /* the threads' meeting once a step (units split) */
} fwd_team;

/* The states step s reads (hp, cp) and writes (hx, cx), and its time t:
 * training walks the cache's T+1 slots, inference ping-pongs h between two
 * buffers (other threads may still read h_prev) and updates c in place. */
static inline void step_states(const fwd_team *a, int64_t s, int64_t *t,
                               const float **hp, const float **cp, float **hx, float **cx)
{
    const fr_desc *d = a->d;
    const int64_t T = d->T, BH = d->B * d->H;
    const int dir = a->dir, is_lstm = d->cell == FR_CELL_LSTM;
    *t = dir ? T - 1 - s : s;
    *cp = NULL;
    *cx = NULL;
    if (a->gates) {
        const int64_t ip = dir ? *t + 1 : *t, ix = dir ? *t : *t + 1;
        *hp = a->hs + ip * BH;
        *hx = a->hs + ix * BH;
        if (is_lstm) { *cp = a->cs + ip * BH; *cx = a->cs + ix * BH; }
    } else {
        *hp = (s % 2 == 0) ? a->h_a : a->h_b;
        *hx = (s % 2 == 0) ? a->h_b : a->h_a;
        if (is_lstm) *cp = *cx = a->c_buf;
    }
}

/* The forward time loop over sequences [r0, r1), every unit (the batch
 * split between threads): no thread reads another's state, so the steps
 * need no meeting. Packed panels of every unit and the bias + projection
 * rows are ready (fwd_thread's first phase). */
static TGT void fwd_rows(const fwd_team *a, int64_t r0, int64_t r1)
{
    const fr_desc *d = a->d;
    const int cell = d->cell, packed = a->packed;
    const int64_t T = d->T, B = d->B, H = d->H, ldy = a->ldy;
    const int64_t GX = (int64_t)fr_num_gates(cell) * H;
    const int64_t GC = cell == FR_CELL_GRU ? 4 * H : GX;
    const int64_t nb = (H + VW - 1) / VW, R_ = r1 - r0;
    const int training = a->gates != NULL;
    const int G = fr_num_gates(cell);
    const float *R = a->R, *bhn = a->bhn;
    float *Xp = a->Xp, *Gh = a->Gh, *gates = a->gates, *y = a->y;
    /* W_ih packed whole (rows_project), or NULL: Xp already projected */
    const float *Pih = a->rows_project ? a->Wi : NULL;
    if (R_ <= 0) return;
    for (int64_t s = 0; s < T; s++) {
        int64_t t;
        const float *hp, *cp;
        float *hx, *cx;
        step_states(a, s, &t, &hp, &cp, &hx, &cx);
        float *xp = Xp + t * B * GX;
        float *acc = cell == FR_CELL_GRU ? Gh : xp;
        if (Pih) /* this step's rows of x W_ih^T, as project_units would */
            panel_axpy_gates(a->x + (t * B + r0) * a->In, a->In, R_, a->In, Pih, nb,
                             xp + r0 * GX, H, GX, H, G, NULL);
        if (cell == FR_CELL_GRU)
            memset(Gh + r0 * GX, 0, (size_t)(R_ * GX) * sizeof(float));
        if (!(s == 0 && a->h0_zero)) {
            if (packed)
                panel_axpy_gates(hp + r0 * H, H, R_, H, a->Wh, nb, acc + r0 * GX, H, GX, H, G, NULL);
            else
                for (int q = 0; q < G; q++)
                    rows_dot(hp + r0 * H, R_, H, R, q * H, q * H + H, acc + r0 * GX, GX);
        }
        float *yt = y + t * B * ldy;
        for (int64_t b = r0; b < r1; b++)
            cell_units(cell, H, 0, H, xp + b * GX,
                       cell == FR_CELL_GRU ? Gh + b * GX : NULL, bhn,
                       hp + b * H, cp ? cp + b * H : NULL, hx + b * H,
                       cx ? cx + b * H : NULL, yt + b * ldy,
                       (training && cell == FR_CELL_GRU) ? gates + (t * B + b) * GC : NULL,
                       training);
    }
}

/* The batch split of a variable-length batch (fwd_var_by_rows): thread tid
 * of nth takes every nth row of the batch in length order (order, longest
 * first), so each thread's rows are in length order too and the threads
 * get about the same work. At each step its rows still active are a prefix
 * of its list: the product and gate math run for them, and the others
 * carry their state to the next step with an output of 0, as the units
 * split does for them. list: scratch of B int64 shared by the team, each
 * thread writing its own part. Same tiles and chains as the units split:
 * the same bits. */
static TGT void fwd_rows_var(const fwd_team *a, int tid, int nth, int64_t *list)
{
    const fr_desc *d = a->d;
    const int cell = d->cell, packed = a->packed;
    const int64_t T = d->T, B = d->B, H = d->H, ldy = a->ldy;
    const int64_t GX = (int64_t)fr_num_gates(cell) * H;
    const int64_t GC = cell == FR_CELL_GRU ? 4 * H : GX;
    const int64_t nb = (H + VW - 1) / VW;
    const int64_t *lengths = d->lengths;
    const int training = a->gates != NULL;
    const int G = fr_num_gates(cell);
    const float *R = a->R, *bhn = a->bhn;
    float *Xp = a->Xp, *Gh = a->Gh, *gates = a->gates, *y = a->y;
    /* this thread's rows: order[tid], order[tid + nth], ... */
    const int64_t off = B / nth * tid + (tid < B % nth ? tid : B % nth);
    int64_t cnt = 0;
    for (int64_t i = tid; i < B; i += nth) list[off + cnt++] = a->order[i];
    const int64_t *mine = list + off;
    int64_t nact = cnt;
    const size_t nbytes = (size_t)H * sizeof(float);
    for (int64_t s = 0; s < T; s++) {
        int64_t t;
        const float *hp, *cp;
        float *hx, *cx;
        step_states(a, s, &t, &hp, &cp, &hx, &cx);
        nact = active_count(lengths, mine, cnt, t, nact);
        float *xp = Xp + t * B * GX;
        float *acc = cell == FR_CELL_GRU ? Gh : xp;
        if (cell == FR_CELL_GRU)
            for (int64_t i = 0; i < nact; i++)
                memset(Gh + mine[i] * GX, 0, (size_t)GX * sizeof(float));
        if (!(s == 0 && a->h0_zero) && nact > 0) {
            if (packed)
                panel_axpy_gates(hp, H, nact, H, a->Wh, nb, acc, H, GX, H, G, mine);
            else
                for (int64_t i = 0; i < nact; i++)
                    for (int q = 0; q < G; q++)
                        rows_dot(hp + mine[i] * H, 1, H, R, q * H, q * H + H,
                                 acc + mine[i] * GX, GX);
        }
        float *yt = y + t * B * ldy;
        for (int64_t i = 0; i < cnt; i++) {
            const int64_t b = mine[i];
            float *yb = yt + b * ldy;
            if (i >= nact) { /* finished: state carried, output 0 */
                if (hx != hp) memcpy(hx + b * H, hp + b * H, nbytes);
                if (cx && cx != cp) memcpy(cx + b * H, cp + b * H, nbytes);
                memset(yb, 0, nbytes);
                if (training)
                    for (int q = 0; q < (cell == FR_CELL_GRU ? 4 : G); q++)
                        memset(gates + (t * B + b) * GC + q * H, 0, nbytes);
                continue;
            }
            cell_units(cell, H, 0, H, xp + b * GX,
                       cell == FR_CELL_GRU ? Gh + b * GX : NULL, bhn,
                       hp + b * H, cp ? cp + b * H : NULL, hx + b * H,
                       cx ? cx + b * H : NULL, yb,
                       (training && cell == FR_CELL_GRU) ? gates + (t * B + b) * GC : NULL,
                       training);
        }
    }
}

/* The forward time loop of thread tid of nth: its units, every step, one
 * barrier per step. With nth == 1 it runs outside any OpenMP region (the
 * region alone costs about 0.5 us, a streaming step's fixed cost). */
static TGT void fwd_thread(const fwd_team *a, int tid, int nth)
{
    const fr_desc *d = a->d;
    const int cell = d->cell, h0_zero = a->h0_zero, packed = a->packed;
    const int64_t T = d->T, B = d->B, H = d->H, ldy = a->ldy, In = a->In;
    const int64_t GX = (int64_t)fr_num_gates(cell) * H;
    const int64_t GC = cell == FR_CELL_GRU ? 4 * H : GX;
    const int64_t *lengths = d->lengths, *order = a->order;
    const int training = a->gates != NULL;
    const int G = fr_num_gates(cell);
    const float *R = a->R, *bhn = a->bhn, *x = a->x, *W = a->W;
    float *Xp = a->Xp, *Gh = a->Gh, *gates = a->gates, *y = a->y, *Wp = a->Wp;
    int64_t j0, j1, nact = B;
    unit_slice(H, tid, nth, &j0, &j1);
    const int64_t nb = (H + VW - 1) / VW;
    /* this thread's gate rows of W_hh, packed in VW-row panels; only it
     * reads them. Short sequences use the weights as they are. */
    for (int q = 0; q < G && j1 > j0 && packed && !a->prepacked; q++)
        pack_rows(R, H, q * H + j0, j1 - j0, H, Wp + (q * nb + j0 / VW) * H * VW);
    /* short inputs and small batches: this thread's gate rows of the
     * input projection too, so its slices of W_ih and W_hh stay in its
     * own cache between calls and no thread waits for another */
    if (a->rows_project) {
        /* each thread projects its own rows step by step (fwd_rows), from
         * W_ih packed whole */
        float *P = Wp + fr_fast_ih_offset(d);
        for (int q = 0; q < G && j1 > j0 && !a->prepacked; q++)
            pack_rows(W, In, q * H + j0, j1 - j0, In, P + (q * nb + j0 / VW) * In * VW);
    } else if (x) {
        project_units(d, x, In, W, Wp, a->prepacked ? a->Wi : NULL, Xp, j0, j1);
    }
    if (a->by_rows) { /* then the batch is split: every thread reads every panel */
        if (nth > 1) {
#pragma omp barrier
        }
        if (a->order) fwd_rows_var(a, tid, nth, (int64_t *)a->order + B);
        else fwd_rows(a, B * tid / nth, B * (tid + 1) / nth);
        return;
    }
    int my_flag = 0;
    for (int64_t s = 0; s < T; s++) {
        int64_t t;
        const float *hp, *cp;
        float *hx, *cx;
        step_states(a, s, &t, &hp, &cp, &hx, &cx);
        float *xp = Xp + t * B * GX;
        if (order) nact = active_count(lengths, order, B, t, nact);
        if (j1 > j0) {
            /* recurrent product for this thread's gate rows */
            float *acc = cell == FR_CELL_GRU ? Gh : xp;
            if (cell == FR_CELL_GRU)
                for (int64_t b = 0; b < B; b++)
                    for (int q = 0; q < G; q++)
                        memset(Gh + b * GX + q * H + j0, 0, (size_t)(j1 - j0) * sizeof(float));
            if (!(s == 0 && h0_zero)) {
                if (packed) /* finished sequences skip the product */
                    panel_axpy_gates(hp, H, nact, H, a->Wh + (j0 / VW) * H * VW, nb, acc + j0, H,
                                     GX, j1 - j0, G, order);
                else
                    for (int q = 0; q < G; q++)
                        rows_dot(hp, B, H, R, q * H + j0, q * H + j1, acc, GX);
            }
            /* gate math for this thread's units */
            float *yt = y + t * B * ldy;
            for (int64_t b = 0; b < B; b++) {
                float *yb = yt + b * ldy;
                const size_t nbytes = (size_t)(j1 - j0) * sizeof(float);
                if (!ACTIVE(t, b)) {
                    if (hx != hp) memcpy(hx + b * H + j0, hp + b * H + j0, nbytes);
                    if (cx && cx != cp) memcpy(cx + b * H + j0, cp + b * H + j0, nbytes);
                    memset(yb + j0, 0, nbytes);
                    if (training)
                        for (int q = 0; q < (cell == FR_CELL_GRU ? 4 : G); q++)
                            memset(gates + (t * B + b) * GC + q * H + j0, 0, nbytes);
                    continue;
                }
                cell_units(cell, H, j0, j1, xp + b * GX,
                           cell == FR_CELL_GRU ? Gh + b * GX : NULL, bhn,
                           hp + b * H, cp ? cp + b * H : NULL, hx + b * H,
                           cx ? cx + b * H : NULL, yb,
                           (training && cell == FR_CELL_GRU) ? gates + (t * B + b) * GC : NULL,
                           training);
            }
        }
        /* the next step reads every unit's h; after the last one the
         * region's closing barrier is the meeting */
        if (nth > 1 && s + 1 < T) meet(a->meet, nth, &my_flag);
    }
}

/* A slice of units of a one-step call, for the step team (rnn_team.h). */
static void fwd_slice(void *a, int slice, int nslices)
{
    fwd_thread((const fwd_team *)a, slice, nslices);
}

/* W_hh (R) and W_ih (W, In columns) packed once, in the panels the
 * forward loop would pack them into on every call (fr_fast_pack_f32 in
 * rnn_fast.h): P then holds W_hh's panels, the same layout whatever the
 * units split, and from fr_fast_pack_floats(d) W_ih's. */
TGT void FR_SFX(fr_fast_pack_f32)(const fr_desc *d, const float *R, const float *W,
                                  int64_t In, float *P)
{
    const int G = fr_num_gates(d->cell);
    const int64_t H = d->H, nb = (H + VW - 1) / VW;
    float *Pi = P + fr_fast_pack_floats(d);
    for (int q = 0; q < G; q++) {
        pack_rows(R, H, q * H, H, H, P + q * nb * H * VW);
        pack_rows(W, In, q * H, H, In, Pi + q * nb * In * VW);
    }
}

TGT void FR_SFX(fr_fast_forward_f32)(const fr_desc *d, int dir, const float *R, const float *bhn,
                              float *Xp, float *Gh, int h0_zero,
                              float *h_a, float *h_b, float *c_buf,
                              float *hs, float *cs, float *gates,
                              float *y, int64_t ldy, float *hn, float *cn, float *Wp,
                              const float *x, int64_t In, const float *W, const float *pk)
{
    const int cell = d->cell;
    const int64_t T = d->T, B = d->B, H = d->H, BH = B * H;
    const int training = gates != NULL, is_lstm = cell == FR_CELL_LSTM;
    /* packing W_hh pays off over a few steps; the choice depends on T alone */
    const int packed = fr_fast_fwd_packs(d);
    const int by_rows = fast_by_rows(d) ? fast_by_rows(d) : fwd_var_by_rows(d, packed);
    const int nt = by_rows ? by_rows : fast_threads(d);
    int64_t *order = rows_by_length(d, Wp + fr_fast_fwd_pack_floats(d));

    /* a time loop too small to split (one thread) over many rows: the
     * packed projection still runs on all the threads, each on its units
     * (the same tiles, so the same bits), before the loop */
    const int mode = fr_fast_proj_mode_pk(d, pk != NULL);
    if (x && nt == 1 && d->num_threads > 1 && mode == 2) {
        int nx = d->num_threads;
        if (nx > (H + VW - 1) / VW) nx = (int)((H + VW - 1) / VW);
#pragma omp parallel num_threads(nx) if (fr_omp_going(nx, 1))
        {
            int64_t j0, j1;
            my_units(H, &j0, &j1);
            project_units(d, x, In, W, Wp, pk ? pk + fr_fast_pack_floats(d) : NULL, Xp, j0, j1);
        }
        x = NULL;
    }

    /* The batch split with x projected in the loop: with three or more
     * rows a thread, each thread projects its own rows at each step
     * instead of its units' columns of every row before the loop: it then
     * writes no cache line another thread writes (the units' edges cut
     * lines when H % 16 != 0) and uses each row while it is in cache (C,
     * 2 threads: LSTM B=7 T=64 I=33 H=77 0.85 -> 0.79 ms, B=8 H=77 0.79 ->
     * 0.71). With fewer rows the panels of W_ih serve too few rows a step
     * (B=3 H=64: 0.50 against 0.58). A W_ih too large for one core's L2
     * (FR_FAST_ROWS_IH_MAX_FLOATS) is projected before the loop. */
    const int rows_project = by_rows && x && mode == 2 && B / by_rows >= 3
                             && (int64_t)fr_num_gates(cell) * fr_fast_round_panel(H) * In
                                <= FR_FAST_ROWS_IH_MAX_FLOATS;
    step_meet m = {0};
    const fwd_team team = {d, dir, h0_zero, packed, by_rows > 0, rows_project, R, bhn, x, W, Xp, Gh,
                           h_a, h_b, c_buf, hs, cs, gates, y, Wp,
                           pk ? pk : Wp,
                           pk ? pk + fr_fast_pack_floats(d) : Wp + fr_fast_ih_offset(d),
                           pk != NULL, ldy, In, order, &m};
    /* the threads that will meet every step, for meet()'s spin limit */
    const int meeting = nt > 1 && !by_rows && T > 1 ? nt : 0;
    /* one step (streaming): its slices of units are independent, and the
     * step team starts and ends them in ~0.12 us against 0.65-1.5 for an
     * OpenMP region (rnn_team.h); when it declines, it has noted the region */
    const int step = nt > 1 && T == 1 && !by_rows;
    if (nt == 1) {
        fwd_thread(&team, 0, 1);
    } else if (step && fr_team_run(nt, fwd_slice, (void *)&team)) {
    } else {
        if (meeting) fr_fast_meeting_threads(meeting);
#pragma omp parallel num_threads(nt) if (step || fr_omp_going(nt, 1))
        {
            int tid = 0, nth = 1;
#ifdef _OPENMP
            tid = omp_get_thread_num();
            nth = omp_get_num_threads();
#endif
            fwd_thread(&team, tid, nth);
        }
        if (meeting) fr_fast_meeting_threads(-meeting);
    }
    const float *h_last, *c_last = NULL;
    if (training) {
        h_last = hs + (dir ? 0 : T * BH);
        if (is_lstm) c_last = cs + (dir ? 0 : T * BH);
    } else {
        h_last = (T % 2 == 1) ? h_b : h_a;
        c_last = c_buf;
    }
    memcpy(hn, h_last, (size_t)BH * sizeof(float));
    if (cn && is_lstm) memcpy(cn, c_last, (size_t)BH * sizeof(float));
}

/* ---- backward ------------------------------------------------------------ */

/* Columns [c0, c1) of rows [k0, k0+kc) of B into panels (with the GEMM below). */
static TGT void pack_copy(const float *B, int64_t ldb, int64_t k0, int64_t kc,
                          int64_t c0, int64_t c1, float *P);

/* Gradients of the gate pre-activations of VW units of one active row:
 *   g = dh + dy (total gradient of h_t)
 *   LSTM: c_t = f c + i gg, h = o tanh(c_t)
 *   GRU : n = tanh(xn + r hl), h = (1-z) n + z h_prev
 *   RNN : h = act(pre)
 * gt: the row's cached activations (stride H between gates); writes dgx, dgh
 * (GRU only) and the direct part of dL/dh_{t-1} into dhp; dc in place.
 * LSTM: tc = tanh(c_t), from bwd_cells. */
static inline INL TGT void bwd_cell8(int cell, int64_t H, const float *gt,
                                      const float *dh, const float *dyb,
                                      const float *hp, const float *cp, V tc,
                                      float *dc, float *dgx, float *dgh, float *dhp,
                                      const int64_t rem)
{
    const V one = v_set1(1.0f);
    V g = v_add(LDR(dh), LDR(dyb));
    if (cell == FR_CELL_LSTM) {
        V ig = LDR(gt), fg = LDR(gt + H);
        V gg = LDR(gt + 2 * H), og = LDR(gt + 3 * H);
        V dct = v_fmadd(v_mul(g, og), v_fnmadd(tc, tc, one),
                                     LDR(dc));
        STR(dgx, v_mul(v_mul(dct, gg),
                                            v_mul(ig, v_sub(one, ig))));
        STR(dgx + H, v_mul(v_mul(dct, LDR(cp)),
                                                v_mul(fg, v_sub(one, fg))));
        STR(dgx + 2 * H, v_mul(v_mul(dct, ig),
                                                    v_fnmadd(gg, gg, one)));
        STR(dgx + 3 * H, v_mul(v_mul(g, tc),
                                                    v_mul(og, v_sub(one, og))));
        STR(dc, v_mul(dct, fg));
        STR(dhp, v_zero());
    } else if (cell == FR_CELL_GRU) {
        V r = LDR(gt), z = LDR(gt + H);
        V n = LDR(gt + 2 * H), hl = LDR(gt + 3 * H);
        V dnp = v_mul(v_mul(g, v_sub(one, z)), v_fnmadd(n, n, one));
        V dzp = v_mul(v_mul(g, v_sub(LDR(hp), n)),
                                   v_mul(z, v_sub(one, z)));
        V drp = v_mul(v_mul(dnp, hl), v_mul(r, v_sub(one, r)));
        STR(dgx, drp); STR(dgx + H, dzp); STR(dgx + 2 * H, dnp);
        STR(dgh, drp); STR(dgh + H, dzp);
        STR(dgh + 2 * H, v_mul(dnp, r));
        STR(dhp, v_mul(g, z));
    } else {
        V h = LDR(gt), d;
        if (cell == FR_CELL_RNN_RELU)
            d = v_keep(v_gt(h, v_zero()), g);
        else
            d = v_mul(g, v_fnmadd(h, h, one));
        STR(dgx, d);
        STR(dhp, v_zero());
    }
}

/* bwd_cell8 on NB blocks of VW units from unit j (the LSTM's tanh(c_t) of
 * all NB blocks side by side) */
static inline INL TGT void bwd_cells(int cell, int64_t H, int64_t j, const float *gt,
                                      const float *dh, const float *dyb, const float *hp,
                                      const float *cp, const float *cx, float *dc,
                                      float *dgx, float *dgh, float *dhp, const int NB,
                                      const int64_t rem)
{
    V tc[NBLK];
    for (int b = 0; b < NB; b++) tc[b] = v_zero();
    if (cell == FR_CELL_LSTM) {
        for (int b = 0; b < NB; b++) tc[b] = LDR(cx + j + VW * b);
        v_tanh_k(tc, NB);
    }
    for (int b = 0; b < NB; b++) {
        const int64_t u = j + VW * b;
        bwd_cell8(cell, H, gt + u, dh + u, dyb + u, hp ? hp + u : NULL, cp ? cp + u : NULL,
                  tc[b], dc ? dc + u : NULL, dgx + u, dgh ? dgh + u : NULL, dhp + u, rem);
    }
}

/* bwd_cells over units [j0, j1) of one row; the partial last block with
 * masked loads and stores (LDR: the same instructions for every unit). */
static TGT void bwd_units(int cell, int64_t H, int64_t j0, int64_t j1,
                           const float *gt, const float *dh, const float *dyb,
                           const float *hp, const float *cp, const float *cx,
                           float *dc, float *dgx, float *dgh, float *dhp)
{
    int64_t j = j0;
    for (; j + VW * NBLK <= j1; j += VW * NBLK)
        bwd_cells(cell, H, j, gt, dh, dyb, hp, cp, cx, dc, dgx, dgh, dhp, NBLK, VW);
    for (; j + VW <= j1; j += VW)
        bwd_cells(cell, H, j, gt, dh, dyb, hp, cp, cx, dc, dgx, dgh, dhp, 1, VW);
    if (j < j1)
        bwd_cells(cell, H, j, gt, dh, dyb, hp, cp, cx, dc, dgx, dgh, dhp, 1, j1 - j);
}

TGT float *FR_SFX(fr_fast_backward_f32)(const fr_desc *d, int dir, const float *R,
                                 const float *gates, const float *hs, const float *cs,
                                 const float *dy, int64_t ldy,
                                 float *dGx, float *dGh, float *dh, float *dhp, float *dc,
                                 float *Rp)
{
    int64_t *order = rows_by_length(d, Rp + fr_fast_pack_floats(d));
    const int cell = d->cell;
    const int64_t T = d->T, B = d->B, H = d->H, BH = B * H;
    const int64_t GX = (int64_t)fr_num_gates(cell) * H;
    const int64_t GC = cell == FR_CELL_GRU ? 4 * H : GX;
    const int64_t *lengths = d->lengths;
    const int is_lstm = cell == FR_CELL_LSTM, is_gru = cell == FR_CELL_GRU;
    const int by_rows = fast_by_rows(d);
    const int nt = by_rows ? by_rows : fast_threads(d);
    step_meet m = {0};
    const int meeting = nt > 1 && !by_rows && T > 1 ? nt : 0;
    if (meeting) fr_fast_meeting_threads(meeting);

#pragma omp parallel num_threads(nt) if (fr_omp_going(nt, 1))
    {
        int64_t j0, j1, nact = B;
        int my_flag = 0, nth = 1;
#ifdef _OPENMP
        nth = omp_get_num_threads();
#endif

        my_units(H, &j0, &j1);
        const size_t nbytes = (size_t)(j1 - j0) * sizeof(float);
        float *cur = dh, *prev = dhp;   /* dL/dh_t and dL/dh_{t-1} */
        /* this thread's columns of W_hh in panels (rows of R: its GX gate
         * rows), only it reads them: the reverse walk streams them */
        if (j1 > j0) pack_copy(R, H, 0, GX, j0, j1, Rp + (j0 / VW) * GX * VW);
        if (by_rows) {
            /* the batch split (as forward, fast_by_rows): every thread reads
             * every column panel, then walks its own sequences, all units,
             * with no meeting between steps */
            int tid = 0;
#ifdef _OPENMP
            tid = omp_get_thread_num();
#endif
            if (nth > 1) {
#pragma omp barrier
            }
            const int64_t r0 = B * tid / nth, r1 = B * (tid + 1) / nth;
            for (int64_t s = T - 1; s >= 0 && r1 > r0; s--) {
                const int64_t t = dir ? T - 1 - s : s;
                const int64_t ip = dir ? t + 1 : t, ix = dir ? t : t + 1;
                float *dgx = dGx + t * B * GX, *dgh = dGh + t * B * GX;
                for (int64_t b = r0; b < r1; b++)
                    bwd_units(cell, H, 0, H, gates + (t * B + b) * GC, cur + b * H,
                              dy + (t * B + b) * ldy, is_gru ? hs + ip * BH + b * H : NULL,
                              is_lstm ? cs + ip * BH + b * H : NULL,
                              is_lstm ? cs + ix * BH + b * H : NULL,
                              is_lstm ? dc + b * H : NULL, dgx + b * GX,
                              is_gru ? dgh + b * GX : NULL, prev + b * H);
                panel_axpy(dgh + r0 * GX, GX, r1 - r0, GX, Rp, prev + r0 * H, H, H, NULL);
                float *tmp = cur; cur = prev; prev = tmp;
            }
        } else
        for (int64_t s = T - 1; s >= 0; s--) {
            const int64_t t = dir ? T - 1 - s : s;
            const int64_t ip = dir ? t + 1 : t, ix = dir ? t : t + 1;
            float *dgx = dGx + t * B * GX, *dgh = dGh + t * B * GX;
            /* (A) gate gradients of this thread's units */
            for (int64_t b = 0; b < B && j1 > j0; b++) {
                float *dgxb = dgx + b * GX, *dghb = dgh + b * GX;
                if (!ACTIVE(t, b)) { /* the carried state passes the gradient on */
                    memcpy(prev + b * H + j0, cur + b * H + j0, nbytes);
                    for (int q = 0; q < fr_num_gates(cell); q++) {
                        memset(dgxb + q * H + j0, 0, nbytes);
                        if (is_gru) memset(dghb + q * H + j0, 0, nbytes);
                    }
                    continue;
                }
                bwd_units(cell, H, j0, j1, gates + (t * B + b) * GC, cur + b * H,
                          dy + (t * B + b) * ldy, is_gru ? hs + ip * BH + b * H : NULL,
                          is_lstm ? cs + ip * BH + b * H : NULL,
                          is_lstm ? cs + ix * BH + b * H : NULL,
                          is_lstm ? dc + b * H : NULL, dgxb, is_gru ? dghb : NULL,
                          prev + b * H);
            }
            if (nth > 1) meet(&m, nth, &my_flag);
            /* (B) dL/dh_{t-1} += dG_h W_hh for this thread's columns */
            /* finished sequences: dG rows are 0 and prev already holds the
             * carried gradient, so they skip the product */
            if (order) nact = active_count(lengths, order, B, t, nact);
            if (j1 > j0)
                panel_axpy(dgh, GX, nact, GX, Rp + (j0 / VW) * GX * VW, prev + j0, H, j1 - j0,
                           order);
            float *tmp = cur; cur = prev; prev = tmp;
        }
    }
    if (meeting) fr_fast_meeting_threads(-meeting);
    return (T % 2 == 0) ? dh : dhp;
}


/* ---- GEMM on packed panels ------------------------------------------------
 * C(M,N) (+)= op(A)(M,K) op(B)(K,N), row-major, for the kernels' float32
 * GEMMs (input projection, weight and input gradients, the model layers):
 * op(B) packed in VW-column panels, K in blocks of GEMM_KC, rows in tiles of
 * up to 8 sharing each group of GEMM_NP panel vectors. Every output is its old value
 * followed by one FMA chain over k in order, whatever the blocking, tiles
 * and thread split (threads own groups of panels), so the bits never depend
 * on the thread count. */
#define GEMM_KC 256
#define GEMM_MC 240

/* Rows of the big tile: 8 rows x 3 panels (GEMM_NP below) is 24
 * accumulators of AVX-512's 32 registers; AVX2 has 16, so 6 x 2 (12
 * accumulators, 2 panel vectors, one broadcast). */
#define GEMM_MR (VW == 16 ? 8 : 6)

/* Panels a tile spans: 8 rows x 3 panels is 24 accumulators, 3 panel
 * vectors and a broadcast of AVX-512's 32 registers (11 loads per 24 FMAs,
 * against 10 per 16 with 2 panels); AVX2 keeps 2. */
#if defined(FR_ISA_AVX512)
#define GEMM_NP 3
#else
#define GEMM_NP 2
#endif

/* Rows [0, mr) of a block of C against NP panels at P, op(A)'s block packed
 * at Ap in groups of GEMM_MR rows, k-major ([g][k][GEMM_MR]): tiles of
 * GEMM_MR, 4, then 1-3 rows, each inside one group, reading GEMM_MR
 * consecutive floats a k (A unpacked, 8 rows 2 KiB apart at K = 512, met in
 * the same few L1 sets: 300 GFLOP/s against 340-410 packed). */
static TGT void gemm_rows(const float *Ap, int64_t mr, const float *P, int64_t kc,
                          float *C, int64_t ldc, int64_t rem, int NP, int zero,
                          const float *init)
{
#define GEMM_AP(m) (Ap + ((m) / GEMM_MR) * kc * GEMM_MR + (m) % GEMM_MR)
#define GEMM_ROWS(NP_)                                                                       \
    do {                                                                                     \
        int64_t m = 0;                                                                       \
        for (; m + GEMM_MR <= mr; m += GEMM_MR) {                                            \
            /* the next tile's lines of C: read back from L3 past the first   \
             * K block, and new lines (write-allocated) in the first */         \
            for (int i_ = 0; i_ < GEMM_MR && m + GEMM_MR + i_ < mr; i_++)                    \
                for (int q_ = 0; q_ < NP_; q_ += 64 / (VW * 4) > 0 ? 64 / (VW * 4) : 1)       \
                    __builtin_prefetch(C + (m + GEMM_MR + i_) * ldc + q_ * VW, 1, 3);         \
            gemm_tile(GEMM_AP(m), GEMM_MR, 1, P, kc, C + m * ldc, ldc, rem, GEMM_MR, NP_, zero, init);   \
        }                                                                                    \
        for (; m + 4 <= mr; m += 4)                                                          \
            gemm_tile(GEMM_AP(m), GEMM_MR, 1, P, kc, C + m * ldc, ldc, rem, 4, NP_, zero, init);         \
        for (; m < mr; m++)                                                                  \
            gemm_tile(GEMM_AP(m), GEMM_MR, 1, P, kc, C + m * ldc, ldc, rem, 1, NP_, zero, init);         \
    } while (0)
#if GEMM_NP > 2
    if (NP == 3) GEMM_ROWS(3);
    else
#endif
    if (NP == 2) GEMM_ROWS(2);
    else GEMM_ROWS(1);
#undef GEMM_ROWS
#undef GEMM_AP
}

/* Rows [m0, m0+mr) and k [k0, k0+kc) of op(A) into groups of GEMM_MR rows,
 * k-major (the last group's missing rows are never read). */
static TGT void pack_a(const float *A, int64_t lda, int at, int64_t m0, int64_t mr,
                       int64_t k0, int64_t kc, float *Ap)
{
    const int64_t ng = (mr + GEMM_MR - 1) / GEMM_MR;
    if (at) {
        /* op(A) = A^T: row k of A holds this block's rows side by side.
         * Eight k at a time, every group: a group alone strides lda (8 KiB
         * for a GEMM over 4H = 2048 gate columns) and one k for every
         * group strides kc * GEMM_MR on the stores: either way each line
         * met the others in one L1 set (5-9% of a training step) */
        for (int64_t kb = 0; kb < kc; kb += 8) {
            const int64_t ke = kc - kb < 8 ? kc : kb + 8;
            for (int64_t g = 0; g < ng; g++) {
                float *o = Ap + g * kc * GEMM_MR;
                const int64_t n = mr - g * GEMM_MR < GEMM_MR ? mr - g * GEMM_MR : GEMM_MR;
                const float *a = A + k0 * lda + m0 + g * GEMM_MR;
                for (int64_t k = kb; k < ke; k++) {
                    if (n == 8 && GEMM_MR == 8)
                        _mm256_store_ps(o + k * 8, _mm256_loadu_ps(a + k * lda));
                    else if (n == 6 && GEMM_MR == 6) { /* 4 + 2 floats */
                        _mm_storeu_ps(o + k * 6, _mm_loadu_ps(a + k * lda));
                        _mm_storel_pi((__m64 *)(o + k * 6 + 4),
                                      _mm_loadl_pi(_mm_setzero_ps(), (const __m64 *)(a + k * lda + 4)));
                    } else
                        for (int64_t r = 0; r < n; r++) o[k * GEMM_MR + r] = a[k * lda + r];
                }
            }
        }
        return;
    }
    for (int64_t g = 0; g < ng; g++) {
        float *o = Ap + g * kc * GEMM_MR;
        const int64_t r0 = m0 + g * GEMM_MR;
        const int64_t n = mr - g * GEMM_MR < GEMM_MR ? mr - g * GEMM_MR : GEMM_MR;
        int64_t k8 = 0;
        if (n == 8 && GEMM_MR == 8) /* 8x8 blocks transposed in registers */
            for (; k8 + 8 <= kc; k8 += 8)
                transpose8_store(A + r0 * lda + k0 + k8, lda, o + k8 * 8, 8);
        if (n == 6 && GEMM_MR == 6) /* 6x8 blocks, the same way */
            for (; k8 + 8 <= kc; k8 += 8)
                transpose6x8_store(A + r0 * lda + k0 + k8, lda, o + k8 * 6);
        for (int64_t r = 0; r < n; r++) {
            const float *a = A + (r0 + r) * lda + k0;
            for (int64_t k = k8; k < kc; k++) o[k * GEMM_MR + r] = a[k];
        }
    }
}

/* Rows [k0, k0+kc) of B (K,N) row-major, columns [c0, c1), into panels of
 * kc x VW at P (zero past c1). */
static TGT void pack_copy(const float *B, int64_t ldb, int64_t k0, int64_t kc,
                          int64_t c0, int64_t c1, float *P)
{
    for (int64_t c = c0; c < c1; c += VW) {
        float *Pp = P + ((c - c0) / VW) * kc * VW;
        const int64_t w = c1 - c < VW ? c1 - c : VW;
        for (int64_t k = 0; k < kc; k++) {
            const float *b = B + (k0 + k) * ldb + c;
            if (w == VW) v_sta(Pp + k * VW, v_ld(b));
            else v_sta(Pp + k * VW, acc_load(b, w));
        }
    }
}

/* Floats of one thread's packed block for N columns among nt threads. */
/* Columns of op(B) a thread packs at a time (a multiple of both builds'
 * groups, 48 and 16 columns): the packed block of K_C x GEMM_NC floats, 1 MiB,
 * stays the size of an L2 however wide C is (a 100k-word output layer
 * would otherwise pack 100 MiB at once). */
#define GEMM_NC 1056

/* Floats of a thread's packed block of op(B): K_C rows of the columns it
 * takes at a time (a multiple of 16: op(A)'s block after it stays aligned). */
static int64_t gemm_b_floats(int64_t N, int nt)
{
    const int64_t groups = (N + GEMM_NP * VW - 1) / (GEMM_NP * VW);
    int64_t cols = (groups + nt - 1) / nt * GEMM_NP * VW;
    if (cols > GEMM_NC) cols = GEMM_NC;
    return GEMM_KC * cols;
}

/* Floats of one thread's scratch: that block, then op(A)'s block. */
static int64_t gemm_thread_floats(int64_t N, int nt)
{
    const int64_t a = (GEMM_MC + GEMM_MR - 1) / GEMM_MR * GEMM_MR * GEMM_KC;
    return gemm_b_floats(N, nt) + (a + 15) / 16 * 16;
}

/* C = op(A) op(B) (beta 0) or C += op(A) op(B) (beta 1); ta, tb 'N' or
 * 'T' as BLAS. Returns 0, or -1 when the scratch could not be had (C is
 * then unchanged). */
TGT int FR_SFX(fr_fast_sgemm)(int nt, char ta, char tb, int64_t M, int64_t N, int64_t K,
                              const float *A, int64_t lda, const float *B, int64_t ldb,
                              int beta, float *C, int64_t ldc, const float *bias)
{
    const int64_t groups = (N + GEMM_NP * VW - 1) / (GEMM_NP * VW); /* of GEMM_NP panels */
    const int64_t rgroups = (M + GEMM_MR - 1) / GEMM_MR;            /* of GEMM_MR rows */
    /* Each thread packs all of the operand it does not split, and op(A)
     * once for every GEMM_NC columns of C it covers: split the rows of C
     * where that packs fewer floats than splitting the columns (the
     * backward's dX = dG W and dW = dG^T x, op(A) 4x the size of op(B)) */
    const int64_t ncol_thr = (N + nt - 1) / nt;
    const double pack_cols = (double)M * K * nt * ((ncol_thr + GEMM_NC - 1) / GEMM_NC)
                             + (double)K * N;
    const double pack_rows_ = (double)M * K * ((N + GEMM_NC - 1) / GEMM_NC) + (double)K * N * nt;
    const int by_rows = nt > 1 && rgroups >= 2 * (int64_t)nt && pack_rows_ < pack_cols;
    const int64_t parts = by_rows ? rgroups : groups;
    if (nt > parts) nt = (int)parts;
    if (nt < 1) nt = 1;
    const int bnt = by_rows ? 1 : nt; /* threads sharing op(B)'s columns */
    const int64_t per = gemm_thread_floats(N, bnt);
    float *buf = NULL;
    if (posix_memalign((void **)&buf, 64, (size_t)(per * nt) * sizeof(float)) != 0) return -1;
    const int at = ta == 'T' || ta == 't', bt = tb == 'T' || tb == 't';
#pragma omp parallel num_threads(nt) if (fr_omp_going(nt, nt > 1))
    {
        int tid = 0, nth = 1;
#ifdef _OPENMP
        tid = omp_get_thread_num();
        nth = omp_get_num_threads();
#endif
        /* nt slices of panel groups (or of row groups); a smaller team than
         * asked takes them in turn, each thread in its own part of the
         * scratch */
        float *P = buf + per * tid;
        float *Ap = P + gemm_b_floats(N, bnt); /* op(A)'s block */
        for (int sl = tid; sl < nt; sl += nth) {
            const int64_t p0 = parts * sl / nt, p1 = parts * (sl + 1) / nt;
            int64_t c0 = 0, c1 = N, r0 = 0, r1 = M;
            if (by_rows) {
                r0 = p0 * GEMM_MR;
                r1 = p1 * GEMM_MR < M ? p1 * GEMM_MR : M;
            } else {
                c0 = p0 * GEMM_NP * VW;
                c1 = p1 * GEMM_NP * VW < N ? p1 * GEMM_NP * VW : N;
            }
            /* beta 0: the first K block's tiles start from +0 instead of
             * reading C (K = 0: nothing to read C's garbage into, so zero it) */
            if (c1 > c0 && !beta && K == 0)
                for (int64_t m = r0; m < r1; m++) {
                    if (bias) memcpy(C + m * ldc + c0, bias + c0, (size_t)(c1 - c0) * sizeof(float));
                    else memset(C + m * ldc + c0, 0, (size_t)(c1 - c0) * sizeof(float));
                }
            for (int64_t cc0 = c0; cc0 < c1 && r1 > r0; cc0 += GEMM_NC) {
                const int64_t cc1 = c1 - cc0 < GEMM_NC ? c1 : cc0 + GEMM_NC;
                for (int64_t kb = 0; kb < K; kb += GEMM_KC) {
                    const int64_t kc = K - kb < GEMM_KC ? K - kb : GEMM_KC;
                    if (bt) pack_rows(B + kb, ldb, cc0, cc1 - cc0, kc, P);
                    else pack_copy(B, ldb, kb, kc, cc0, cc1, P);
                    for (int64_t mb = r0; mb < r1; mb += GEMM_MC) {
                        const int64_t mr = r1 - mb < GEMM_MC ? r1 - mb : GEMM_MC;
                        pack_a(A, lda, at, mb, mr, kb, kc, Ap);
                        for (int64_t c = cc0; c < cc1; c += GEMM_NP * VW) {
                            const int64_t left = (cc1 - c + VW - 1) / VW;
                            const int NP = left < GEMM_NP ? (int)left : GEMM_NP;
                            gemm_rows(Ap, mr, P + ((c - cc0) / VW) * kc * VW, kc,
                                      C + mb * ldc + c, ldc, N - c, NP, !beta && kb == 0,
                                      bias ? bias + c : NULL);
                        }
                    }
                }
            }
        }
    }
    free(buf);
    return 0;
}
