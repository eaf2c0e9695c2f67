/*
 * The reduced-precision loops at 16 floats a vector (AVX-512 F/VL/DQ;
 * int8 products with VNNI's vpdpbusd, which needs AVX512_VNNI and BW):
 * qkernels.h's body plus the int8 product, and the bf16 product with
 * vdpbf16ps where the CPU has AVX512_BF16. vpdpbusd multiplies unsigned
 * by signed bytes, so the activations go in as qx + 128 and the sum loses
 * 128 * rowsum after: the same int32 as the portable sum, exactly.
 */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FR_ISA_AVX512 1
#define FR_SFX(name) name##_avx512
#include "fast/isa.h"
#include "fast/simd_math.h"
#include "fast/qkernels.h"

#define VNNI __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,avx512vnni,avx2,fma")))

/* rows of activations a tile, and a pass over the weights: 16 rows and two
 * panels of a 512-column matrix fill 24 KB of the 32 KB L1 (at 32 rows
 * they overflow it); the per-thread scratch holds 32 rows (quant_impl.h) */
enum { Q_MB = 8, Q_SB = 16 };

/* acc + the u8 x s8 dot products of a's and w's byte quads: vpdpbusd by
 * inline assembly, the accumulator in place (GCC 12's intrinsic copies it
 * into another register and back around every instruction) */
static inline INL VNNI __m512i dpbusd(__m512i acc, __m512i a, __m512i w)
{
    __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "vm"(w));
    return acc;
}

/* MR rows by PR panels of int8 products from vpdpbusd: rows past mr repeat
 * the last row and panels past pr the last panel (computed, not stored),
 * so every tile keeps its accumulators in registers and, at one row, a
 * panel's chain of vpdpbusd is not the only one in flight. One function
 * per shape, its arrays of exactly that size (registers, not the stack). */
#define I8_TILE(MR, PR)                                                                    \
static inline INL VNNI void i8_tile_##MR##x##PR(                                           \
    int mr, int pr, int64_t Kp, const uint8_t *au, const float *sa, const int8_t *W,       \
    const int32_t *rowsum, const float *sw, const float *bias, int64_t pa, float *out,     \
    int64_t ldo)                                                                           \
{                                                                                          \
    __m512i acc[MR][PR];                                                                   \
    const uint8_t *ar[MR];                                                                 \
    const int8_t *wp[PR];                                                                  \
    for (int i = 0; i < MR; i++) ar[i] = au + (i < mr ? i : mr - 1) * Kp;                  \
    for (int q = 0; q < PR; q++) {                                                         \
        wp[q] = W + (pa + (q < pr ? q : pr - 1)) * Kp * FRQ_BLK;                           \
        for (int i = 0; i < MR; i++) acc[i][q] = _mm512_setzero_si512();                   \
    }                                                                                      \
    for (int64_t k4 = 0; k4 < Kp / 4; k4++) {                                              \
        __m512i w[PR];                                                                     \
        for (int q = 0; q < PR; q++) w[q] = _mm512_load_si512(wp[q] + k4 * 64);            \
        for (int i = 0; i < MR; i++) {                                                     \
            int32_t a4;                                                                    \
            memcpy(&a4, ar[i] + 4 * k4, 4);                                                \
            const __m512i a = _mm512_set1_epi32(a4);                                       \
            for (int q = 0; q < PR; q++) acc[i][q] = dpbusd(acc[i][q], a, w[q]);                 \
        }                                                                                  \
    }                                                                                      \
    for (int q = 0; q < pr; q++) {                                                         \
        const int64_t p = pa + q;                                                          \
        const __m512i off = _mm512_slli_epi32(_mm512_loadu_si512(rowsum + p * FRQ_BLK), 7); \
        for (int i = 0; i < mr; i++) {                                                     \
            int32_t s[FRQ_BLK];                                                            \
            _mm512_storeu_si512(s, _mm512_sub_epi32(acc[i][q], off));                      \
            q_epilogue(s, sa[i], sw + p * FRQ_BLK, bias + p * FRQ_BLK,                     \
                       out + i * ldo + p * FRQ_BLK);                                       \
        }                                                                                  \
    }                                                                                      \
}
I8_TILE(8, 2)
I8_TILE(4, 2)
I8_TILE(2, 2)
I8_TILE(4, 4)
I8_TILE(2, 6)
I8_TILE(1, 8)
#define i8_tile(MR, PR, ...) i8_tile_##MR##x##PR(__VA_ARGS__)

static void mm_i8_vnni(int64_t M, int64_t Kp, const int8_t *A, const float *sa,
                       const int8_t *W, const int32_t *rowsum, const float *sw,
                       const float *bias, int64_t p0, int64_t p1, float *out, int64_t ldo,
                       void *scratch) VNNI;
static void mm_i8_vnni(int64_t M, int64_t Kp, const int8_t *A, const float *sa,
                       const int8_t *W, const int32_t *rowsum, const float *sw,
                       const float *bias, int64_t p0, int64_t p1, float *out, int64_t ldo,
                       void *scratch)
{
    uint8_t *au = (uint8_t *)scratch;   /* Q_SB rows of qx + 128 */
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    for (int64_t m0 = 0; m0 < M; m0 += Q_SB) {
        const int sb = M - m0 < Q_SB ? (int)(M - m0) : Q_SB;
        for (int i = 0; i < sb; i++) {
            const int8_t *a = A + (m0 + i) * Kp;
            int64_t k = 0;
            for (; k + 64 <= Kp; k += 64)
                _mm512_storeu_si512(au + i * Kp + k,
                                    _mm512_xor_si512(_mm512_loadu_si512(a + k), flip));
            for (; k < Kp; k++) au[i * Kp + k] = (uint8_t)(a[k] ^ (int8_t)0x80);
        }
        const float *s = sa + m0;
        float *o = out + m0 * ldo;
        /* accumulators: rows x panels <= 16 of the 32 registers */
        if (sb > 4) {
            /* two panels at a time through all sb rows, 8 a tile: the
             * panels stay in cache while the rows pass (weights read once
             * per Q_SB rows, not once per 8) */
            for (int64_t pa = p0; pa < p1; pa += 2) {
                const int pr = p1 - pa < 2 ? (int)(p1 - pa) : 2;
                for (int i0 = 0; i0 < sb; i0 += Q_MB) {
                    const int mb = sb - i0 < Q_MB ? sb - i0 : Q_MB;
                    const uint8_t *ai = au + i0 * Kp;
                    float *oi = o + i0 * ldo;
                    if (mb > 4)
                        i8_tile(8, 2, mb, pr, Kp, ai, s + i0, W, rowsum, sw, bias, pa, oi, ldo);
                    else if (mb > 2)
                        i8_tile(4, 2, mb, pr, Kp, ai, s + i0, W, rowsum, sw, bias, pa, oi, ldo);
                    else
                        i8_tile(2, 2, mb, pr, Kp, ai, s + i0, W, rowsum, sw, bias, pa, oi, ldo);
                }
            }
            continue;
        }
        for (int64_t pa = p0; pa < p1;) {
            const int left = (int)(p1 - pa < 8 ? p1 - pa : 8);
            int pr;
            if (sb > 2) {
                pr = left < 4 ? left : 4;
                i8_tile(4, 4, sb, pr, Kp, au, s, W, rowsum, sw, bias, pa, o, ldo);
            } else if (sb == 2) {
                pr = left < 6 ? left : 6;
                i8_tile(2, 6, sb, pr, Kp, au, s, W, rowsum, sw, bias, pa, o, ldo);
            } else {
                pr = left;
                i8_tile(1, 8, sb, pr, Kp, au, s, W, rowsum, sw, bias, pa, o, ldo);
            }
            pa += pr;
        }
    }
}

/* vdpbf16ps needs a compiler that knows AVX512_BF16 (GCC 10, Clang 9) */
#if (defined(__clang__) && __clang_major__ >= 9) || (!defined(__clang__) && __GNUC__ >= 10)
#define FR_BF16_DP 1
#define BF16DP __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,avx512bf16,avx2,fma")))

/* mr rows of A (row stride lda) rounded to bf16 pairs (vcvtne2ps2bf16: the
 * rule of frq_bf16_bits), K2 32-bit words a row (k low, k+1 high; zero
 * padded). */
static inline INL BF16DP void bf16_pairs(const float *A, int64_t lda, int mr, int64_t K,
                                         uint32_t *a2, int64_t K2)
{
    for (int i = 0; i < mr; i++) {
        const float *x = A + i * lda;
        uint32_t *o = a2 + i * K2;
        for (int64_t k = 0; k < 2 * K2; k += 32) {
            const int64_t n = K - k;
            const __mmask16 lo = n >= 16 ? 0xFFFF : (n > 0 ? (__mmask16)((1u << n) - 1) : 0);
            const __mmask16 hi = n >= 32 ? 0xFFFF
                                 : (n > 16 ? (__mmask16)((1u << (n - 16)) - 1) : 0);
            const __m512bh r = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, x + k + 16),
                                                   _mm512_maskz_loadu_ps(lo, x + k));
            const int64_t w = 2 * K2 - k < 32 ? (2 * K2 - k) / 2 : 16;
            _mm512_mask_storeu_epi32(o + k / 2, (__mmask16)((1u << w) - 1), (__m512i)r);
        }
    }
}

/* MR rows by PR panels of outputs from vdpbf16ps: rows past mr repeat the
 * last row and panels past pr the last panel (computed, not stored), so
 * every tile keeps its accumulators in registers. */
static inline INL BF16DP void dp_tile(const int MR, const int PR, int mr, int pr, int64_t K2,
                                      const uint32_t *a2, const uint16_t *W, int64_t pa,
                                      const float *bias, float *out, int64_t ldo)
{
    __m512 acc[8][8];
    const uint32_t *ar[8];
    const uint16_t *wp[8];
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) ar[i] = a2 + (i < mr ? i : mr - 1) * K2;
#pragma GCC unroll 8
    for (int q = 0; q < PR; q++) {
        const int64_t p = pa + (q < pr ? q : pr - 1);
        wp[q] = W + p * K2 * 32;
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) acc[i][q] = _mm512_loadu_ps(bias + p * FRQ_BLK);
    }
    for (int64_t kk = 0; kk < K2; kk++) {
        __m512bh w[8];
#pragma GCC unroll 8
        for (int q = 0; q < PR; q++) w[q] = (__m512bh)_mm512_load_si512(wp[q] + kk * 32);
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
            const __m512bh a = (__m512bh)_mm512_set1_epi32((int)ar[i][kk]);
#pragma GCC unroll 8
            for (int q = 0; q < PR; q++) acc[i][q] = _mm512_dpbf16_ps(acc[i][q], a, w[q]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
        for (int q = 0; q < PR; q++)
            if (i < mr && q < pr)
                _mm512_storeu_ps(out + i * ldo + (pa + q) * FRQ_BLK, acc[i][q]);
}

/* vdpbf16ps itself (the sum quant_impl.h defines): 8 rows of A a pass,
 * converted once into scratch, each panel's weights read once a pass. */
static void mm_bf16_dp(int64_t M, int64_t K, const float *A, int64_t lda, const uint16_t *W,
                       const float *bias, int64_t p0, int64_t p1, float *out, int64_t ldo,
                       void *scratch) BF16DP;
static void mm_bf16_dp(int64_t M, int64_t K, const float *A, int64_t lda, const uint16_t *W,
                       const float *bias, int64_t p0, int64_t p1, float *out, int64_t ldo,
                       void *scratch)
{
    const int64_t K2 = (K + 1) / 2;
    uint32_t *a2 = (uint32_t *)scratch;
    for (int64_t m0 = 0; m0 < M; m0 += 8) {
        const int mr = M - m0 < 8 ? (int)(M - m0) : 8;
        bf16_pairs(A + m0 * lda, lda, mr, K, a2, K2);
        float *o = out + m0 * ldo;
        /* accumulators: rows x panels <= 24 of the 32 registers */
        for (int64_t pa = p0; pa < p1;) {
            const int left = (int)(p1 - pa < 8 ? p1 - pa : 8);
            if (mr > 4) {
                const int pr = left < 3 ? left : 3;
                dp_tile(8, 3, mr, pr, K2, a2, W, pa, bias, o, ldo);
                pa += pr;
            } else if (mr > 2) {
                const int pr = left < 6 ? left : 6;
                dp_tile(4, 6, mr, pr, K2, a2, W, pa, bias, o, ldo);
                pa += pr;
            } else if (mr == 2) {
                dp_tile(2, 8, mr, left, K2, a2, W, pa, bias, o, ldo);
                pa += left;
            } else {
                dp_tile(1, 8, mr, left, K2, a2, W, pa, bias, o, ldo);
                pa += left;
            }
        }
    }
}

static int bf16_dot = 1;   /* frq_set_bf16_dot */

static int cpu_bf16(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw");
}

int frq_set_bf16_dot(int on)
{
    bf16_dot = on && cpu_bf16();
    return bf16_dot;
}

int frq_bf16_dot(void) { return bf16_dot && cpu_bf16(); }
#else
int frq_set_bf16_dot(int on) { (void)on; return 0; }
int frq_bf16_dot(void) { return 0; }
#endif

static const frq_kernels k_vnni = {mm_i8_vnni, mm_bf16_avx512, qcell_avx512, qrow_avx512};
/* bf16 alone needs only AVX-512 F (the int8 entries are never called then);
 * with AVX512_BF16 its products are vdpbf16ps's own */
static const frq_kernels k_f = {NULL, mm_bf16_avx512, qcell_avx512, NULL};
#ifdef FR_BF16_DP
static const frq_kernels k_bf16 = {NULL, mm_bf16_dp, qcell_avx512, NULL};
#else
static const frq_kernels k_bf16 = {NULL, mm_bf16_avx512, qcell_avx512, NULL};
#endif

const frq_kernels *frq_kernels_avx512(int prec)
{
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
          && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma")))
        return NULL;
    if (prec != FRQ_INT8) return frq_bf16_dot() ? &k_bf16 : &k_f;
    if (!(__builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni")))
        return NULL;
    return &k_vnni;
}

#else
#include "portable/quant_impl.h"
const frq_kernels *frq_kernels_avx512(int prec) { (void)prec; return NULL; }
int frq_set_bf16_dot(int on) { (void)on; return 0; }
int frq_bf16_dot(void) { return 0; }
#endif
