/*
 * AVX2/FMA float32 time loops (see rnn_fast.h). Compiled for any x86-64:
 * the AVX2 functions carry target attributes and run only after a CPU check.
 * On other targets fr_fast_available() is 0 and the stubs are never called.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "rnn_fast.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FR_HAVE_X86 1
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma")))
#else
#define FR_HAVE_X86 0
#endif

#define ACTIVE(t, b) (lengths == NULL || (t) < lengths[b])

#if FR_HAVE_X86

int fr_fast_available(void)
{
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return cached;
}

/* ---- vector math (8 floats) -------------------------------------------- */

/* The helpers below are inlined into their callers with the count of
 * vectors known, so the loops over k unroll and the vectors stay in
 * registers. */
#define INL __attribute__((always_inline))

/* Most blocks of 8 units the gate math runs side by side (cells_max). */
#define NBLK 2

/* x[k] = exp(x[k]) for K vectors (K <= 4 * NBLK), every step on all K
 * before the next: Cephes' range reduction x = n ln2 + r, degree-6
 * polynomial for e^r, scaled by 2^n through the exponent bits. One exp is
 * a chain of ~18 dependent instructions; on a CPU with a small FP scheduler
 * (Zen: 36 entries) one chain at a time leaves the FMA units idle waiting
 * for latency, while K chains interleaved in program order keep them busy
 * (LSTM gate math, 8 units: 10.4 -> 8.6 ns a unit with two blocks side by
 * side). Each lane gets the same instructions for any K, so the bits never
 * depend on K. max/min keep NaN (x is the second operand, which x86 returns
 * when either is NaN). */
static inline INL AVX2 void v_exp_k(__m256 *x, const int K)
{
    __m256 fx[4 * NBLK], y[4 * NBLK], z[4 * NBLK];
    for (int k = 0; k < K; k++) {
        x[k] = _mm256_min_ps(_mm256_set1_ps(88.3762626647949f), x[k]);
        x[k] = _mm256_max_ps(_mm256_set1_ps(-88.3762626647949f), x[k]);
    }
    for (int k = 0; k < K; k++)
        fx[k] = _mm256_floor_ps(_mm256_fmadd_ps(x[k], _mm256_set1_ps(1.44269504088896341f),
                                                _mm256_set1_ps(0.5f)));
    for (int k = 0; k < K; k++) x[k] = _mm256_fnmadd_ps(fx[k], _mm256_set1_ps(0.693359375f), x[k]);
    for (int k = 0; k < K; k++) x[k] = _mm256_fnmadd_ps(fx[k], _mm256_set1_ps(-2.12194440e-4f), x[k]);
    for (int k = 0; k < K; k++) z[k] = _mm256_mul_ps(x[k], x[k]);
    for (int k = 0; k < K; k++)
        y[k] = _mm256_fmadd_ps(_mm256_set1_ps(1.9875691500E-4f), x[k], _mm256_set1_ps(1.3981999507E-3f));
    for (int k = 0; k < K; k++) y[k] = _mm256_fmadd_ps(y[k], x[k], _mm256_set1_ps(8.3334519073E-3f));
    for (int k = 0; k < K; k++) y[k] = _mm256_fmadd_ps(y[k], x[k], _mm256_set1_ps(4.1665795894E-2f));
    for (int k = 0; k < K; k++) y[k] = _mm256_fmadd_ps(y[k], x[k], _mm256_set1_ps(1.6666665459E-1f));
    for (int k = 0; k < K; k++) y[k] = _mm256_fmadd_ps(y[k], x[k], _mm256_set1_ps(5.0000001201E-1f));
    for (int k = 0; k < K; k++) y[k] = _mm256_fmadd_ps(y[k], z[k], x[k]);
    for (int k = 0; k < K; k++) y[k] = _mm256_add_ps(y[k], _mm256_set1_ps(1.0f));
    for (int k = 0; k < K; k++) {
        __m256i n = _mm256_cvttps_epi32(fx[k]);
        n = _mm256_add_epi32(n, _mm256_set1_epi32(127));
        n = _mm256_slli_epi32(n, 23);
        x[k] = _mm256_mul_ps(y[k], _mm256_castsi256_ps(n));
    }
}

/* The argument of the exp that sigmoid(x) needs: -x */
static inline INL AVX2 __m256 sigmoid_arg(__m256 x)
{
    return _mm256_sub_ps(_mm256_setzero_ps(), x);
}

/* sigmoid(x) = 1 / (1 + e), e = exp(-x). Below -88.376 the exp is clamped
 * to ~2.4e38 and would give ~4.2e-39, not the 0 of a saturated gate (the
 * true value is below that): those lanes are set to exactly 0. NaN stays
 * NaN (the comparison is false). Above +88.4 the result is exactly 1
 * already. */
static inline INL AVX2 __m256 sigmoid_from(__m256 x, __m256 e)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, e));
    __m256 under = _mm256_cmp_ps(x, _mm256_set1_ps(-88.3762626647949f), _CMP_LT_OQ);
    return _mm256_andnot_ps(under, s);
}

/* The argument of the exp that tanh(x) needs: 2|x| */
static inline INL AVX2 __m256 tanh_arg(__m256 x)
{
    __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
    return _mm256_add_ps(ax, ax);
}

/* tanh(x), e = exp(2|x|): Cephes' odd polynomial for |x| < 0.625, else
 * sign(x) (1 - 2 / (e + 1)), which saturates to exactly +-1. */
static inline INL AVX2 __m256 tanh_from(__m256 x, __m256 e)
{
    const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
    __m256 ax = _mm256_andnot_ps(sign, x);
    __m256 big = _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one)));
    big = _mm256_or_ps(big, _mm256_and_ps(sign, x));
    __m256 z = _mm256_mul_ps(x, x);
    __m256 p = _mm256_set1_ps(-5.70498872745E-3f);
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(2.06390887954E-2f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-5.37397155531E-2f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.33314422036E-1f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-3.33332819422E-1f));
    __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), x, x);
    __m256 is_small = _mm256_cmp_ps(ax, _mm256_set1_ps(0.625f), _CMP_LT_OQ);
    return _mm256_blendv_ps(big, small, is_small);
}

/* tanh of K vectors in place, the exps side by side */
static inline INL AVX2 void v_tanh_k(__m256 *x, const int K)
{
    __m256 e[4 * NBLK];
    for (int k = 0; k < K; k++) e[k] = tanh_arg(x[k]);
    v_exp_k(e, K);
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

/* 1 sequence x 8 rows: 8 chains, 9 loads per 8 FMAs (batch-1 streaming) */
static inline AVX2 void dot_1x8(const float *restrict h, const float *restrict w,
                                int64_t ldw, int64_t K, float *restrict out)
{
    const int64_t K8 = K & ~(int64_t)7;
    __m256 a[8];
    for (int r = 0; r < 8; r++) a[r] = _mm256_setzero_ps();
    for (int64_t k = 0; k < K8; k += 8) {
        __m256 v = _mm256_loadu_ps(h + k);
        for (int r = 0; r < 8; r++)
            a[r] = _mm256_fmadd_ps(v, _mm256_loadu_ps(w + r * ldw + k), a[r]);
    }
    if (K8 == K) { /* no scalar tail: out[r] += hsum(a[r]) for all 8 at once */
        _mm256_storeu_ps(out, _mm256_add_ps(_mm256_loadu_ps(out), hsum8(a)));
        return;
    }
    for (int r = 0; r < 8; r++) DOT_FINISH(a[r], h, w + r * ldw, out[r]);
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

/* Mask of the first n (0..8) lanes. */
static inline AVX2 __m256i lane_mask(int64_t n)
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), idx);
}

/* Pack columns [k0, k1) of R (GX,H) into 8-column panels: panel p holds
 * Rp[p][j][0..7] = R[j, 8p + i], zero past H, so the reverse walk streams it. */
static AVX2 void pack_cols(const float *R, int64_t GX, int64_t H, int64_t k0, int64_t k1,
                           float *Rp)
{
    for (int64_t kb = k0; kb < k1; kb += 8) {
        float *P = Rp + (kb / 8) * GX * 8;
        const int64_t n = k1 - kb < 8 ? k1 - kb : 8;
        for (int64_t j = 0; j < GX; j++) {
            const float *r = R + j * H + kb;
            int64_t i = 0;
            for (; i < n; i++) P[j * 8 + i] = r[i];
            for (; i < 8; i++) P[j * 8 + i] = 0;
        }
    }
}

/* out[b, c] += sum_j g[b, j] P(j, c) for b < B and c < n, where the columns
 * come in 8-wide panels P + (c/8)*J*8 holding P(j, c) at [j*8 + c%8] (zero
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
static inline AVX2 __m256 acc_load(const float *p, int64_t rem)
{
    return rem >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, lane_mask(rem));
}

static inline AVX2 void acc_store(float *p, int64_t rem, __m256 v)
{
    if (rem >= 8) _mm256_storeu_ps(p, v);
    else _mm256_maskstore_ps(p, lane_mask(rem), v);
}

#define PANEL_TILE_1xN(NP)                                                        \
    do {                                                                          \
        __m256 a[NP];                                                             \
        for (int q = 0; q < NP; q++)                                              \
            a[q] = acc_load(o + 8 * (c + q), n - 8 * (c + q));                    \
        for (int64_t j = 0; j < J; j++) {                                         \
            const __m256 v = _mm256_broadcast_ss(gb + j);                         \
            for (int q = 0; q < NP; q++)                                          \
                a[q] = _mm256_fmadd_ps(v, _mm256_load_ps(P + (c + q) * J * 8 + j * 8), a[q]); \
        }                                                                         \
        for (int q = 0; q < NP; q++)                                              \
            acc_store(o + 8 * (c + q), n - 8 * (c + q), a[q]);                    \
        c += NP;                                                                  \
    } while (0)

#define ROW(i) (rows ? rows[i] : (i))

/* R sequences (rows b0..b0+R-1) x NP panels from panel c: the panel vectors
 * are loaded once per j and shared by the R rows (the leftover rows of a
 * batch that is not a multiple of 4: B = 1..3 reads W_hh once per step, not
 * once per row). */
#define PANEL_TILE_RxN(R, NP)                                                     \
    do {                                                                          \
        __m256 a[R][NP];                                                          \
        float *o_[R];                                                             \
        const float *g_[R];                                                       \
        for (int r_ = 0; r_ < R; r_++) {                                          \
            o_[r_] = out + ROW(b0 + r_) * ldo;                                    \
            g_[r_] = g + ROW(b0 + r_) * ldg;                                      \
            for (int q = 0; q < NP; q++)                                          \
                a[r_][q] = acc_load(o_[r_] + 8 * (c + q), n - 8 * (c + q));        \
        }                                                                         \
        for (int64_t j = 0; j < J; j++) {                                         \
            __m256 w_[NP];                                                        \
            for (int q = 0; q < NP; q++)                                          \
                w_[q] = _mm256_load_ps(P + (c + q) * J * 8 + j * 8);              \
            for (int r_ = 0; r_ < R; r_++) {                                      \
                const __m256 v = _mm256_broadcast_ss(g_[r_] + j);                 \
                for (int q = 0; q < NP; q++)                                      \
                    a[r_][q] = _mm256_fmadd_ps(v, w_[q], a[r_][q]);               \
            }                                                                     \
        }                                                                         \
        for (int r_ = 0; r_ < R; r_++)                                            \
            for (int q = 0; q < NP; q++)                                          \
                acc_store(o_[r_] + 8 * (c + q), n - 8 * (c + q), a[r_][q]);        \
        c += NP;                                                                  \
    } while (0)

static AVX2 void panel_axpy(const float *g, int64_t ldg, int64_t B, int64_t J,
                            const float *P, float *out, int64_t ldo, int64_t n,
                            const int64_t *rows)
{
    const int64_t np = (n + 7) / 8;
    for (int64_t c0 = 0; c0 < np; c0 += 2) {
        const int two = c0 + 1 < np;
        const int64_t m0 = n - 8 * c0, m1 = two ? n - 8 * (c0 + 1) : 0; /* columns left */
        const float *P0 = P + c0 * J * 8, *P1 = two ? P0 + J * 8 : P0; /* P0 again: unused */
        int64_t b = 0;
        for (; b + 4 <= B; b += 4) {
            float *o0 = out + ROW(b) * ldo + 8 * c0, *o1 = out + ROW(b + 1) * ldo + 8 * c0;
            float *o2 = out + ROW(b + 2) * ldo + 8 * c0, *o3 = out + ROW(b + 3) * ldo + 8 * c0;
            const float *g0 = g + ROW(b) * ldg, *g1 = g + ROW(b + 1) * ldg;
            const float *g2 = g + ROW(b + 2) * ldg, *g3 = g + ROW(b + 3) * ldg;
            __m256 a00 = acc_load(o0, m0), a01 = acc_load(o0 + 8, m1);
            __m256 a10 = acc_load(o1, m0), a11 = acc_load(o1 + 8, m1);
            __m256 a20 = acc_load(o2, m0), a21 = acc_load(o2 + 8, m1);
            __m256 a30 = acc_load(o3, m0), a31 = acc_load(o3 + 8, m1);
            for (int64_t j = 0; j < J; j++) {
                const __m256 r0 = _mm256_load_ps(P0 + j * 8), r1 = _mm256_load_ps(P1 + j * 8);
                __m256 v = _mm256_broadcast_ss(g0 + j);
                a00 = _mm256_fmadd_ps(v, r0, a00); a01 = _mm256_fmadd_ps(v, r1, a01);
                v = _mm256_broadcast_ss(g1 + j);
                a10 = _mm256_fmadd_ps(v, r0, a10); a11 = _mm256_fmadd_ps(v, r1, a11);
                v = _mm256_broadcast_ss(g2 + j);
                a20 = _mm256_fmadd_ps(v, r0, a20); a21 = _mm256_fmadd_ps(v, r1, a21);
                v = _mm256_broadcast_ss(g3 + j);
                a30 = _mm256_fmadd_ps(v, r0, a30); a31 = _mm256_fmadd_ps(v, r1, a31);
            }
            acc_store(o0, m0, a00); acc_store(o0 + 8, m1, a01);
            acc_store(o1, m0, a10); acc_store(o1 + 8, m1, a11);
            acc_store(o2, m0, a20); acc_store(o2 + 8, m1, a21);
            acc_store(o3, m0, a30); acc_store(o3 + 8, m1, a31);
        }
    }
    /* leftover sequences (B % 4 of them), over all panels at once */
    const int64_t b0 = B - B % 4;
    if (B % 4 == 3) {
        int64_t c = 0;
        while (c + 3 <= np) PANEL_TILE_RxN(3, 3);
        while (c < np) PANEL_TILE_RxN(3, 1);
    } else if (B % 4 == 2) {
        int64_t c = 0;
        while (c + 4 <= np) PANEL_TILE_RxN(2, 4);
        while (c < np) PANEL_TILE_RxN(2, 1);
    } else if (B % 4 == 1) {
        float *o = out + ROW(b0) * ldo;
        const float *gb = g + ROW(b0) * ldg;
        int64_t c = 0;
        while (c + 8 <= np) PANEL_TILE_1xN(8);
        while (c + 4 <= np) PANEL_TILE_1xN(4);
        while (c < np) PANEL_TILE_1xN(1);
    }
}

#undef ROW

/* Pack panels for panel_axpy. rows_of_W: panel p holds W[r0 + 8p + i, k] at
 * [k*8 + i] (forward: W_hh rows r0.. , J = K = H columns); otherwise panel p
 * holds W[j, c0 + 8p + i] at [j*8 + i] (backward: W_hh columns, J = rows).
 * Lanes past `n` are zero. */
static AVX2 void pack_rows(const float *W, int64_t ldw, int64_t r0, int64_t n,
                           int64_t K, float *P)
{
    const int64_t K8 = K & ~(int64_t)7;
    for (int64_t p = 0; p * 8 < n; p++) {
        float *Pp = P + p * K * 8;
        const int64_t m = n - 8 * p < 8 ? n - 8 * p : 8;
        if (m == 8) { /* 8x8 blocks transposed in registers, contiguous stores */
            const float *w = W + (r0 + 8 * p) * ldw;
            for (int64_t k = 0; k < K8; k += 8) {
                __m256 a0 = _mm256_loadu_ps(w + k), a1 = _mm256_loadu_ps(w + ldw + k);
                __m256 a2 = _mm256_loadu_ps(w + 2 * ldw + k), a3 = _mm256_loadu_ps(w + 3 * ldw + k);
                __m256 a4 = _mm256_loadu_ps(w + 4 * ldw + k), a5 = _mm256_loadu_ps(w + 5 * ldw + k);
                __m256 a6 = _mm256_loadu_ps(w + 6 * ldw + k), a7 = _mm256_loadu_ps(w + 7 * ldw + k);
                __m256 t0 = _mm256_unpacklo_ps(a0, a1), t1 = _mm256_unpackhi_ps(a0, a1);
                __m256 t2 = _mm256_unpacklo_ps(a2, a3), t3 = _mm256_unpackhi_ps(a2, a3);
                __m256 t4 = _mm256_unpacklo_ps(a4, a5), t5 = _mm256_unpackhi_ps(a4, a5);
                __m256 t6 = _mm256_unpacklo_ps(a6, a7), t7 = _mm256_unpackhi_ps(a6, a7);
                __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
                __m256 u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
                __m256 u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
                __m256 u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
                __m256 u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
                __m256 u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
                __m256 u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
                __m256 u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
                float *o = Pp + k * 8;
                _mm256_store_ps(o, _mm256_permute2f128_ps(u0, u4, 0x20));
                _mm256_store_ps(o + 8, _mm256_permute2f128_ps(u1, u5, 0x20));
                _mm256_store_ps(o + 16, _mm256_permute2f128_ps(u2, u6, 0x20));
                _mm256_store_ps(o + 24, _mm256_permute2f128_ps(u3, u7, 0x20));
                _mm256_store_ps(o + 32, _mm256_permute2f128_ps(u0, u4, 0x31));
                _mm256_store_ps(o + 40, _mm256_permute2f128_ps(u1, u5, 0x31));
                _mm256_store_ps(o + 48, _mm256_permute2f128_ps(u2, u6, 0x31));
                _mm256_store_ps(o + 56, _mm256_permute2f128_ps(u3, u7, 0x31));
            }
            for (int64_t k = K8; k < K; k++)
                for (int64_t i = 0; i < 8; i++) Pp[k * 8 + i] = w[i * ldw + k];
            continue;
        }
        for (int64_t i = 0; i < 8; i++) {
            const float *w = W + (r0 + 8 * p + i) * ldw;
            if (i < m) for (int64_t k = 0; k < K; k++) Pp[k * 8 + i] = w[k];
            else for (int64_t k = 0; k < K; k++) Pp[k * 8 + i] = 0;
        }
    }
}

/* ---- elementwise gate math, 8 units at a time ---------------------------- */

/* Gate math on NB blocks of 8 units side by side (NB <= NBLK; block b at
 * offset 8b of every pointer, gate q at offset qH). */

/* LSTM: i,f,g,o from pre; c' = f c + i g; h' = o tanh(c'). */
static inline INL AVX2 void lstm_cells(float *pre, int64_t H, const float *cp, float *cx,
                                       float *hx, float *yb, int keep, const int NB)
{
    __m256 p[4 * NBLK], e[4 * NBLK], c[NBLK], tc[NBLK];
    for (int b = 0; b < NB; b++)
        for (int q = 0; q < 4; q++) {
            p[4 * b + q] = _mm256_loadu_ps(pre + q * H + 8 * b);
            e[4 * b + q] = q == 2 ? tanh_arg(p[4 * b + q]) : sigmoid_arg(p[4 * b + q]);
        }
    v_exp_k(e, 4 * NB);
    for (int b = 0; b < NB; b++) {
        __m256 *g = p + 4 * b; /* i, f, g, o */
        const __m256 *eg = e + 4 * b;
        g[0] = sigmoid_from(g[0], eg[0]);
        g[1] = sigmoid_from(g[1], eg[1]);
        g[2] = tanh_from(g[2], eg[2]);
        g[3] = sigmoid_from(g[3], eg[3]);
        c[b] = tc[b] = _mm256_fmadd_ps(g[1], _mm256_loadu_ps(cp + 8 * b), _mm256_mul_ps(g[0], g[2]));
    }
    v_tanh_k(tc, NB);
    for (int b = 0; b < NB; b++) {
        const __m256 h = _mm256_mul_ps(p[4 * b + 3], tc[b]);
        if (keep)
            for (int q = 0; q < 4; q++) _mm256_storeu_ps(pre + q * H + 8 * b, p[4 * b + q]);
        _mm256_storeu_ps(cx + 8 * b, c[b]);
        _mm256_storeu_ps(hx + 8 * b, h);
        _mm256_storeu_ps(yb + 8 * b, h);
    }
}

/* GRU: r = s(xr+hr), z = s(xz+hz), n = tanh(xn + r (hn + b_hn)), h' = (1-z) n + z h. */
static inline INL AVX2 void gru_cells(const float *pre, const float *gh, int64_t H,
                                      const float *bhn, const float *hp, float *hx,
                                      float *yb, float *gc, const int NB)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 a[2 * NBLK], e[2 * NBLK], hl[NBLK], n[NBLK];
    for (int b = 0; b < NB; b++)
        for (int q = 0; q < 2; q++) {
            a[2 * b + q] = _mm256_add_ps(_mm256_loadu_ps(pre + q * H + 8 * b),
                                         _mm256_loadu_ps(gh + q * H + 8 * b));
            e[2 * b + q] = sigmoid_arg(a[2 * b + q]);
        }
    v_exp_k(e, 2 * NB);
    for (int b = 0; b < NB; b++) {
        a[2 * b] = sigmoid_from(a[2 * b], e[2 * b]);             /* r */
        a[2 * b + 1] = sigmoid_from(a[2 * b + 1], e[2 * b + 1]); /* z */
        hl[b] = _mm256_loadu_ps(gh + 2 * H + 8 * b);
        if (bhn) hl[b] = _mm256_add_ps(hl[b], _mm256_loadu_ps(bhn + 8 * b));
        n[b] = _mm256_fmadd_ps(a[2 * b], hl[b], _mm256_loadu_ps(pre + 2 * H + 8 * b));
    }
    v_tanh_k(n, NB);
    for (int b = 0; b < NB; b++) {
        const __m256 r = a[2 * b], z = a[2 * b + 1];
        const __m256 h = _mm256_fmadd_ps(z, _mm256_loadu_ps(hp + 8 * b),
                                         _mm256_mul_ps(_mm256_sub_ps(one, z), n[b]));
        if (gc) {
            _mm256_storeu_ps(gc + 8 * b, r); _mm256_storeu_ps(gc + H + 8 * b, z);
            _mm256_storeu_ps(gc + 2 * H + 8 * b, n[b]); _mm256_storeu_ps(gc + 3 * H + 8 * b, hl[b]);
        }
        _mm256_storeu_ps(hx + 8 * b, h);
        _mm256_storeu_ps(yb + 8 * b, h);
    }
}

/* RNN: h' = tanh(pre) or relu(pre). */
static inline INL AVX2 void rnn_cells(float *pre, int relu, float *hx, float *yb, int keep,
                                      const int NB)
{
    __m256 v[NBLK];
    for (int b = 0; b < NB; b++) v[b] = _mm256_loadu_ps(pre + 8 * b);
    if (relu) /* relu(NaN) = NaN, as torch: max returns its 2nd operand on NaN */
        for (int b = 0; b < NB; b++) v[b] = _mm256_max_ps(_mm256_setzero_ps(), v[b]);
    else
        v_tanh_k(v, NB);
    for (int b = 0; b < NB; b++) {
        if (keep) _mm256_storeu_ps(pre + 8 * b, v[b]);
        _mm256_storeu_ps(hx + 8 * b, v[b]);
        _mm256_storeu_ps(yb + 8 * b, v[b]);
    }
}

/* NB whole blocks of units from unit j of one sequence row */
static inline INL AVX2 void cells_at(int cell, int64_t H, int64_t j, float *pre,
                                     const float *gh, const float *bhn, const float *hp,
                                     const float *cp, float *hx, float *cx, float *yb,
                                     float *gc, int keep, const int NB)
{
    if (cell == FR_CELL_LSTM)
        lstm_cells(pre + j, H, cp + j, cx + j, hx + j, yb + j, keep, NB);
    else if (cell == FR_CELL_GRU)
        gru_cells(pre + j, gh + j, H, bhn ? bhn + j : NULL, hp + j, hx + j, yb + j,
                  gc ? gc + j : NULL, NB);
    else
        rnn_cells(pre + j, cell == FR_CELL_RNN_RELU, hx + j, yb + j, keep, NB);
}

/* Gate math for units [j0, j1) of one sequence row, NBLK blocks of 8 at a
 * time, then one. j0 is a multiple of 8; a partial last block goes through
 * padded copies so that every unit sees the same vector instructions. */
static AVX2 void cell_units(int cell, int64_t H, int64_t j0, int64_t j1,
                            float *pre, const float *gh, const float *bhn,
                            const float *hp, const float *cp, float *hx, float *cx,
                            float *yb, float *gc, int keep)
{
    int64_t j = j0;
    for (; j + 8 * NBLK <= j1; j += 8 * NBLK)
        cells_at(cell, H, j, pre, gh, bhn, hp, cp, hx, cx, yb, gc, keep, NBLK);
    for (; j + 8 <= j1; j += 8)
        cells_at(cell, H, j, pre, gh, bhn, hp, cp, hx, cx, yb, gc, keep, 1);
    if (j < j1) {
        /* padded tail: 4 gate blocks of 8 with stride 8 */
        const int64_t n = j1 - j;
        float P[32] = {0}, GH[32] = {0}, BN[8] = {0}, HP[8] = {0}, CP[8] = {0};
        float HX[8], CX[8], Y[8], GC[32];
        const int G = fr_num_gates(cell);
        for (int q = 0; q < G; q++)
            for (int64_t u = 0; u < n; u++) {
                P[q * 8 + u] = pre[q * H + j + u];
                if (gh) GH[q * 8 + u] = gh[q * H + j + u];
            }
        for (int64_t u = 0; u < n; u++) {
            if (bhn) BN[u] = bhn[j + u];
            if (hp) HP[u] = hp[j + u];
            if (cp) CP[u] = cp[j + u];
        }
        cells_at(cell, 8, 0, P, GH, bhn ? BN : NULL, HP, CP, HX, CX, Y, gc ? GC : NULL, keep, 1);
        for (int64_t u = 0; u < n; u++) {
            hx[j + u] = HX[u]; yb[j + u] = Y[u];
            if (cx) cx[j + u] = CX[u];
            if (keep && cell != FR_CELL_GRU)
                for (int q = 0; q < G; q++) pre[q * H + j + u] = P[q * 8 + u];
            if (gc)
                for (int q = 0; q < 4; q++) gc[q * H + j + u] = GC[q * 8 + u];
        }
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
 * weights), or NULL when every length is T. */
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

/* Units [j0, j1) of thread tid among nth: blocks of 8 units, so that block
 * boundaries (and the padded tail) do not depend on the thread count. */
static void unit_slice(int64_t H, int tid, int nth, int64_t *j0, int64_t *j1)
{
    const int64_t nblk = (H + 7) / 8;
    const int64_t a = nblk * tid / nth, b = nblk * (tid + 1) / nth;
    *j0 = a * 8;
    *j1 = b * 8 < H ? b * 8 : H;
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

/* Threads worth using: below FR_FAST_MIN_WORK multiply-adds per step the
 * barrier costs more than the work it splits. */
static int fast_threads(const fr_desc *d)
{
    const int64_t work = d->B * (int64_t)fr_num_gates(d->cell) * d->H * d->H;
    int nt = d->num_threads;
    if (work < FR_FAST_MIN_WORK) nt = 1;
    if (nt > (d->H + 7) / 8) nt = (int)((d->H + 7) / 8);
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
 * B=3 H=96 0.56 against 0.62 ms, B=5 H=128 0.92 against 1.00). Needs a
 * sequence per thread, equal lengths, and enough work for a fork. */
static int fast_by_rows(const fr_desc *d)
{
    int nt = d->num_threads;
    if (nt > d->B) nt = (int)d->B;
    if (nt < 2 || d->lengths != NULL) return 0;
    if (fast_threads(d) > 1 && d->H % 16 == 0) return 0;
    if (fr_fast_pack_floats(d) > FR_FAST_ROWS_MAX_FLOATS) return 0;
    const int64_t work = d->T * d->B * (int64_t)fr_num_gates(d->cell) * d->H * (d->H + d->I_);
    return work >= FR_FAST_ROWS_MIN_WORK ? nt : 0;
}

/* Xp[:, gate rows of units j0..j1) of every gate] += x W_ih^T for those rows:
 * dot tiles on W_ih as it is (projection mode 1), or W_ih's rows packed into
 * this slice's own panels of Wp (mode 2). */
static AVX2 void project_units(const fr_desc *d, const float *x, int64_t In,
                               const float *W, float *Wp, float *Xp, int64_t j0, int64_t j1)
{
    const int64_t H = d->H, M = d->T * d->B, nb = (H + 7) / 8;
    const int G = fr_num_gates(d->cell);
    const int64_t GX = (int64_t)G * H;
    for (int q = 0; q < G && j1 > j0; q++) {
        if (fr_fast_proj_mode(d) == 1) {
            rows_dot(x, M, In, W, q * H + j0, q * H + j1, Xp, GX);
            continue;
        }
        /* one pair of panels at a time, packed into the start of this
         * thread's slice of the scratch and used at once while it is in
         * cache: W_ih is read once and never written back packed (db-lstm-b4
         * packs 4 MiB per call) */
        float *P = Wp + fr_fast_ih_offset(d) + (q * nb + j0 / 8) * In * 8;
        for (int64_t c = j0; c < j1; c += 16) {
            const int64_t w = j1 - c < 16 ? j1 - c : 16;
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
    int64_t ldy, In;
    const int64_t *order;
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
static AVX2 void fwd_rows(const fwd_team *a, int64_t r0, int64_t r1)
{
    const fr_desc *d = a->d;
    const int cell = d->cell, packed = a->packed;
    const int64_t T = d->T, B = d->B, H = d->H, ldy = a->ldy;
    const int64_t GX = (int64_t)fr_num_gates(cell) * H;
    const int64_t GC = cell == FR_CELL_GRU ? 4 * H : GX;
    const int64_t nb = (H + 7) / 8, R_ = r1 - r0;
    const int training = a->gates != NULL;
    const int G = fr_num_gates(cell);
    const float *R = a->R, *bhn = a->bhn;
    float *Xp = a->Xp, *Gh = a->Gh, *gates = a->gates, *y = a->y, *Wp = a->Wp;
    /* W_ih packed whole (rows_project), or NULL: Xp already projected */
    const float *Pih = a->rows_project ? Wp + fr_fast_ih_offset(d) : NULL;
    if (R_ <= 0) return;
    for (int64_t s = 0; s < T; s++) {
        int64_t t;
        const float *hp, *cp;
        float *hx, *cx;
        step_states(a, s, &t, &hp, &cp, &hx, &cx);
        float *xp = Xp + t * B * GX;
        float *acc = cell == FR_CELL_GRU ? Gh : xp;
        if (Pih) /* this step's rows of x W_ih^T, as project_units would */
            for (int q = 0; q < G; q++)
                panel_axpy(a->x + (t * B + r0) * a->In, a->In, R_, a->In, Pih + q * nb * a->In * 8,
                           xp + r0 * GX + q * H, GX, H, NULL);
        if (cell == FR_CELL_GRU)
            memset(Gh + r0 * GX, 0, (size_t)(R_ * GX) * sizeof(float));
        if (!(s == 0 && a->h0_zero))
            for (int q = 0; q < G; q++) {
                if (packed)
                    panel_axpy(hp + r0 * H, H, R_, H, Wp + q * nb * H * 8,
                               acc + r0 * GX + q * H, GX, H, NULL);
                else
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

/* The forward time loop of thread tid of nth: its units, every step, one
 * barrier per step. With nth == 1 it runs outside any OpenMP region (the
 * region alone costs about 0.5 us, a streaming step's fixed cost). */
static AVX2 void fwd_thread(const fwd_team *a, int tid, int nth)
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
    const int64_t nb = (H + 7) / 8;
    /* this thread's gate rows of W_hh, packed in 8-row panels; only it
     * reads them. Short sequences use the weights as they are. */
    for (int q = 0; q < G && j1 > j0 && packed; q++)
        pack_rows(R, H, q * H + j0, j1 - j0, H, Wp + (q * nb + j0 / 8) * H * 8);
    /* short inputs and small batches: this thread's gate rows of the
     * input projection too, so its slices of W_ih and W_hh stay in its
     * own cache between calls and no thread waits for another */
    if (a->rows_project) {
        /* each thread projects its own rows step by step (fwd_rows), from
         * W_ih packed whole */
        float *P = Wp + fr_fast_ih_offset(d);
        for (int q = 0; q < G && j1 > j0; q++)
            pack_rows(W, In, q * H + j0, j1 - j0, In, P + (q * nb + j0 / 8) * In * 8);
    } else if (x) {
        project_units(d, x, In, W, Wp, Xp, j0, j1);
    }
    if (a->by_rows) { /* then the batch is split: every thread reads every panel */
        if (nth > 1) {
#pragma omp barrier
        }
        fwd_rows(a, B * tid / nth, B * (tid + 1) / nth);
        return;
    }
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
            if (!(s == 0 && h0_zero))
                for (int q = 0; q < G; q++) {
                    if (packed) /* finished sequences skip the product */
                        panel_axpy(hp, H, nact, H, Wp + (q * nb + j0 / 8) * H * 8,
                                   acc + q * H + j0, GX, j1 - j0, order);
                    else
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
        if (nth > 1 && s + 1 < T) {
#pragma omp barrier
        }
    }
}

AVX2 void fr_fast_forward_f32(const fr_desc *d, int dir, const float *R, const float *bhn,
                              float *Xp, float *Gh, int h0_zero,
                              float *h_a, float *h_b, float *c_buf,
                              float *hs, float *cs, float *gates,
                              float *y, int64_t ldy, float *hn, float *cn, float *Wp,
                              const float *x, int64_t In, const float *W)
{
    const int cell = d->cell;
    const int64_t T = d->T, B = d->B, H = d->H, BH = B * H;
    const int training = gates != NULL, is_lstm = cell == FR_CELL_LSTM;
    const int by_rows = fast_by_rows(d);
    const int nt = by_rows ? by_rows : fast_threads(d);
    /* packing W_hh pays off over a few steps; the choice depends on T alone */
    const int packed = T >= FR_FAST_PACK_MIN_T;
    int64_t *order = rows_by_length(d, Wp + fr_fast_fwd_pack_floats(d));

    /* a time loop too small to split (one thread) over many rows: the
     * packed projection still runs on all the threads, each on its units
     * (the same tiles, so the same bits), before the loop */
    if (x && nt == 1 && d->num_threads > 1 && fr_fast_proj_mode(d) == 2) {
        int nx = d->num_threads;
        if (nx > (H + 7) / 8) nx = (int)((H + 7) / 8);
#pragma omp parallel num_threads(nx)
        {
            int64_t j0, j1;
            my_units(H, &j0, &j1);
            project_units(d, x, In, W, Wp, Xp, j0, j1);
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
     * (B=3 H=64: 0.50 against 0.58). */
    const int rows_project = by_rows && x && fr_fast_proj_mode(d) == 2 && B / by_rows >= 3;
    const fwd_team team = {d, dir, h0_zero, packed, by_rows > 0, rows_project, R, bhn, x, W, Xp, Gh,
                           h_a, h_b, c_buf, hs, cs, gates, y, Wp, ldy, In, order};
    if (nt == 1) {
        fwd_thread(&team, 0, 1);
    } else {
#pragma omp parallel num_threads(nt)
        {
            int tid = 0, nth = 1;
#ifdef _OPENMP
            tid = omp_get_thread_num();
            nth = omp_get_num_threads();
#endif
            fwd_thread(&team, tid, nth);
        }
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

/* Gradients of the gate pre-activations of 8 units of one active row:
 *   g = dh + dy (total gradient of h_t)
 *   LSTM: c_t = f c + i gg, h = o tanh(c_t)
 *   GRU : n = tanh(xn + r hl), h = (1-z) n + z h_prev
 *   RNN : h = act(pre)
 * gt: the row's cached activations (stride H between gates); writes dgx, dgh
 * (GRU only) and the direct part of dL/dh_{t-1} into dhp; dc in place.
 * LSTM: tc = tanh(c_t), from bwd_cells. */
static inline INL AVX2 void bwd_cell8(int cell, int64_t H, const float *gt,
                                      const float *dh, const float *dyb,
                                      const float *hp, const float *cp, __m256 tc,
                                      float *dc, float *dgx, float *dgh, float *dhp)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 g = _mm256_add_ps(_mm256_loadu_ps(dh), _mm256_loadu_ps(dyb));
    if (cell == FR_CELL_LSTM) {
        __m256 ig = _mm256_loadu_ps(gt), fg = _mm256_loadu_ps(gt + H);
        __m256 gg = _mm256_loadu_ps(gt + 2 * H), og = _mm256_loadu_ps(gt + 3 * H);
        __m256 dct = _mm256_fmadd_ps(_mm256_mul_ps(g, og), _mm256_fnmadd_ps(tc, tc, one),
                                     _mm256_loadu_ps(dc));
        _mm256_storeu_ps(dgx, _mm256_mul_ps(_mm256_mul_ps(dct, gg),
                                            _mm256_mul_ps(ig, _mm256_sub_ps(one, ig))));
        _mm256_storeu_ps(dgx + H, _mm256_mul_ps(_mm256_mul_ps(dct, _mm256_loadu_ps(cp)),
                                                _mm256_mul_ps(fg, _mm256_sub_ps(one, fg))));
        _mm256_storeu_ps(dgx + 2 * H, _mm256_mul_ps(_mm256_mul_ps(dct, ig),
                                                    _mm256_fnmadd_ps(gg, gg, one)));
        _mm256_storeu_ps(dgx + 3 * H, _mm256_mul_ps(_mm256_mul_ps(g, tc),
                                                    _mm256_mul_ps(og, _mm256_sub_ps(one, og))));
        _mm256_storeu_ps(dc, _mm256_mul_ps(dct, fg));
        _mm256_storeu_ps(dhp, _mm256_setzero_ps());
    } else if (cell == FR_CELL_GRU) {
        __m256 r = _mm256_loadu_ps(gt), z = _mm256_loadu_ps(gt + H);
        __m256 n = _mm256_loadu_ps(gt + 2 * H), hl = _mm256_loadu_ps(gt + 3 * H);
        __m256 dnp = _mm256_mul_ps(_mm256_mul_ps(g, _mm256_sub_ps(one, z)), _mm256_fnmadd_ps(n, n, one));
        __m256 dzp = _mm256_mul_ps(_mm256_mul_ps(g, _mm256_sub_ps(_mm256_loadu_ps(hp), n)),
                                   _mm256_mul_ps(z, _mm256_sub_ps(one, z)));
        __m256 drp = _mm256_mul_ps(_mm256_mul_ps(dnp, hl), _mm256_mul_ps(r, _mm256_sub_ps(one, r)));
        _mm256_storeu_ps(dgx, drp); _mm256_storeu_ps(dgx + H, dzp); _mm256_storeu_ps(dgx + 2 * H, dnp);
        _mm256_storeu_ps(dgh, drp); _mm256_storeu_ps(dgh + H, dzp);
        _mm256_storeu_ps(dgh + 2 * H, _mm256_mul_ps(dnp, r));
        _mm256_storeu_ps(dhp, _mm256_mul_ps(g, z));
    } else {
        __m256 h = _mm256_loadu_ps(gt), d;
        if (cell == FR_CELL_RNN_RELU)
            d = _mm256_and_ps(g, _mm256_cmp_ps(h, _mm256_setzero_ps(), _CMP_GT_OQ));
        else
            d = _mm256_mul_ps(g, _mm256_fnmadd_ps(h, h, one));
        _mm256_storeu_ps(dgx, d);
        _mm256_storeu_ps(dhp, _mm256_setzero_ps());
    }
}

/* bwd_cell8 on NB blocks of 8 units from unit j (the LSTM's tanh(c_t) of
 * all NB blocks side by side) */
static inline INL AVX2 void bwd_cells(int cell, int64_t H, int64_t j, const float *gt,
                                      const float *dh, const float *dyb, const float *hp,
                                      const float *cp, const float *cx, float *dc,
                                      float *dgx, float *dgh, float *dhp, const int NB)
{
    __m256 tc[NBLK];
    for (int b = 0; b < NB; b++) tc[b] = _mm256_setzero_ps();
    if (cell == FR_CELL_LSTM) {
        for (int b = 0; b < NB; b++) tc[b] = _mm256_loadu_ps(cx + j + 8 * b);
        v_tanh_k(tc, NB);
    }
    for (int b = 0; b < NB; b++) {
        const int64_t u = j + 8 * b;
        bwd_cell8(cell, H, gt + u, dh + u, dyb + u, hp ? hp + u : NULL, cp ? cp + u : NULL,
                  tc[b], dc ? dc + u : NULL, dgx + u, dgh ? dgh + u : NULL, dhp + u);
    }
}

/* bwd_cells over units [j0, j1) of one row; the partial last block goes
 * through padded copies (same instructions for every unit). */
static AVX2 void bwd_units(int cell, int64_t H, int64_t j0, int64_t j1,
                           const float *gt, const float *dh, const float *dyb,
                           const float *hp, const float *cp, const float *cx,
                           float *dc, float *dgx, float *dgh, float *dhp)
{
    const int GC = cell == FR_CELL_GRU ? 4 : fr_num_gates(cell);
    const int G = fr_num_gates(cell);
    int64_t j = j0;
    for (; j + 8 * NBLK <= j1; j += 8 * NBLK)
        bwd_cells(cell, H, j, gt, dh, dyb, hp, cp, cx, dc, dgx, dgh, dhp, NBLK);
    for (; j + 8 <= j1; j += 8)
        bwd_cells(cell, H, j, gt, dh, dyb, hp, cp, cx, dc, dgx, dgh, dhp, 1);
    if (j < j1) {
        const int64_t n = j1 - j;
        float GT[32] = {0}, DH[8] = {0}, DY[8] = {0}, HP[8] = {0}, CP[8] = {0}, CX[8] = {0};
        float DC[8] = {0}, DGX[32], DGH[32], DHP[8];
        for (int64_t u = 0; u < n; u++) {
            for (int q = 0; q < GC; q++) GT[q * 8 + u] = gt[q * H + j + u];
            DH[u] = dh[j + u]; DY[u] = dyb[j + u];
            if (hp) HP[u] = hp[j + u];
            if (cp) { CP[u] = cp[j + u]; CX[u] = cx[j + u]; DC[u] = dc[j + u]; }
        }
        bwd_cells(cell, 8, 0, GT, DH, DY, HP, CP, CX, DC, DGX, DGH, DHP, 1);
        for (int64_t u = 0; u < n; u++) {
            for (int q = 0; q < G; q++) {
                dgx[q * H + j + u] = DGX[q * 8 + u];
                if (dgh) dgh[q * H + j + u] = DGH[q * 8 + u];
            }
            if (dc) dc[j + u] = DC[u];
            dhp[j + u] = DHP[u];
        }
    }
}

AVX2 float *fr_fast_backward_f32(const fr_desc *d, int dir, const float *R,
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

#pragma omp parallel num_threads(nt)
    {
        int64_t j0, j1, nact = B;
        my_units(H, &j0, &j1);
        const size_t nbytes = (size_t)(j1 - j0) * sizeof(float);
        float *cur = dh, *prev = dhp;   /* dL/dh_t and dL/dh_{t-1} */
        if (j1 > j0) pack_cols(R, GX, H, j0, j1, Rp); /* only this thread reads them */
        if (by_rows) {
            /* the batch split (as forward, fast_by_rows): every thread reads
             * every column panel, then walks its own sequences, all units,
             * with no meeting between steps */
            int tid = 0, nth = 1;
#ifdef _OPENMP
            tid = omp_get_thread_num();
            nth = omp_get_num_threads();
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
#pragma omp barrier
            /* (B) dL/dh_{t-1} += dG_h W_hh for this thread's columns */
            /* finished sequences: dG rows are 0 and prev already holds the
             * carried gradient, so they skip the product */
            if (order) nact = active_count(lengths, order, B, t, nact);
            if (j1 > j0)
                panel_axpy(dgh, GX, nact, GX, Rp + (j0 / 8) * GX * 8, prev + j0, H, j1 - j0,
                           order);
            float *tmp = cur; cur = prev; prev = tmp;
        }
    }
    return (T % 2 == 0) ? dh : dhp;
}

#else /* not x86-64 with GCC/Clang: the portable path is always used */

int fr_fast_available(void) { return 0; }


void fr_fast_forward_f32(const fr_desc *d, int dir, const float *R, const float *bhn,
                         float *Xp, float *Gh, int h0_zero,
                         float *h_a, float *h_b, float *c_buf,
                         float *hs, float *cs, float *gates,
                         float *y, int64_t ldy, float *hn, float *cn, float *Wp,
                         const float *x, int64_t In, const float *W)
{
    (void)x; (void)In; (void)W; (void)Wp; (void)d; (void)dir; (void)R; (void)bhn; (void)Xp; (void)Gh; (void)h0_zero;
    (void)h_a; (void)h_b; (void)c_buf; (void)hs; (void)cs; (void)gates;
    (void)y; (void)ldy; (void)hn; (void)cn;
}

float *fr_fast_backward_f32(const fr_desc *d, int dir, const float *R,
                            const float *gates, const float *hs, const float *cs,
                            const float *dy, int64_t ldy,
                            float *dGx, float *dGh, float *dh, float *dhp, float *dc,
                            float *Rp)
{
    (void)Rp; (void)d; (void)dir; (void)R; (void)gates; (void)hs; (void)cs; (void)dy;
    (void)ldy; (void)dGx; (void)dGh; (void)dhp; (void)dc;
    return dh;
}

#endif
