/*
 * The reduced-precision loops (portable/quant_impl.h) at one vector width,
 * included once per build after isa.h and simd_math.h: qkernels_avx2.c
 * (VW = 8) and qkernels_avx512.c (VW = 16). Each output is the portable
 * loops' operations (portable/quant_ref.c) in their order: exact int32
 * sums, then the same FMA epilogue; vdpbf16ps's pair sums by FMAs in its
 * order; simd_math.h's gate math lane by lane. So both builds give its
 * bits.
 */
#include "portable/quant_impl.h"

/* out[m*ldo + o..o+15] = fmaf(acc (16 int32 in two or one vectors, as
 * floats), sa * sw[o..], bias[o..]) */
static inline INL TGT void q_epilogue(const int32_t *acc, float sa, const float *sw,
                                      const float *bias, float *out)
{
    for (int v = 0; v < FRQ_BLK / VW; v++) {
        V a;
#if VW == 16
        a = _mm512_cvtepi32_ps(_mm512_loadu_si512(acc));
#else
        a = _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(acc + 8 * v)));
#endif
        v_st(out + v * VW, v_fmadd(a, v_mul(v_set1(sa), v_ld(sw + v * VW)),
                                   v_ld(bias + v * VW)));
    }
}

/* out[0..Kp) = x[0..K) rounded to bf16 by frq_bf16_bits (as floats: the
 * low 16 bits 0), then zeros. */
static inline INL TGT void FR_SFX(bf16_row)(const float *x, int64_t K, float *out,
                                           int64_t Kp)
{
    int64_t k = 0;
#if VW == 16
    const __m512i abs = _mm512_set1_epi32(0x7FFFFFFF), inf = _mm512_set1_epi32(0x7F800000);
    const __m512i sgn = _mm512_set1_epi32((int)0x80000000u);
    const __m512i hi = _mm512_set1_epi32((int)0xFFFF0000u);
    const __m512i one = _mm512_set1_epi32(1), half = _mm512_set1_epi32(0x7FFF);
    const __m512i quiet = _mm512_set1_epi32(0x00400000);
    for (; k + VW <= K; k += VW) {
        const __m512i u = _mm512_loadu_si512(x + k);
        const __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, abs), inf);
        const __mmask16 den = _mm512_testn_epi32_mask(u, inf);
        __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(
            half, _mm512_and_si512(_mm512_srli_epi32(u, 16), one)));
        r = _mm512_and_si512(r, hi);
        r = _mm512_mask_and_epi32(r, den, u, sgn);
        r = _mm512_mask_and_epi32(r, nan, _mm512_or_si512(u, quiet), hi);
        _mm512_storeu_si512(out + k, r);
    }
#else
    const __m256i abs = _mm256_set1_epi32(0x7FFFFFFF), inf = _mm256_set1_epi32(0x7F800000);
    const __m256i sgn = _mm256_set1_epi32((int)0x80000000u);
    const __m256i hi = _mm256_set1_epi32((int)0xFFFF0000u);
    const __m256i one = _mm256_set1_epi32(1), half = _mm256_set1_epi32(0x7FFF);
    const __m256i quiet = _mm256_set1_epi32(0x00400000), zero = _mm256_setzero_si256();
    for (; k + VW <= K; k += VW) {
        const __m256i u = _mm256_loadu_si256((const __m256i *)(x + k));
        const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs), inf);
        const __m256i den = _mm256_cmpeq_epi32(_mm256_and_si256(u, inf), zero);
        __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(
            half, _mm256_and_si256(_mm256_srli_epi32(u, 16), one)));
        r = _mm256_and_si256(r, hi);
        r = _mm256_blendv_epi8(r, _mm256_and_si256(u, sgn), den);
        r = _mm256_blendv_epi8(r, _mm256_and_si256(_mm256_or_si256(u, quiet), hi), nan);
        _mm256_storeu_si256((__m256i *)(out + k), r);
    }
#endif
    for (; k < K; k++) {
        const uint32_t b = (uint32_t)frq_bf16_bits(x[k]) << 16;
        memcpy(out + k, &b, 4);
    }
    for (; k < Kp; k++) out[k] = 0.0f;
}

/* vdpbf16ps's sum (quant_impl.h) by FMAs, where the instruction is
 * missing: bf16 rows of W widened to float (a 32-bit word holds a row's k
 * in its low half and k+1 in its high half, so a shift gives k's floats
 * and a mask k+1's), each pair's k+1 first, under frq_dp_enter. */
static void FR_SFX(mm_bf16)(int64_t M, int64_t K, const float *A, int64_t lda,
                            const uint16_t *W, const float *bias, int64_t p0, int64_t p1,
                            float *out, int64_t ldo, void *scratch) TGT;
static void FR_SFX(mm_bf16)(int64_t M, int64_t K, const float *A, int64_t lda,
                            const uint16_t *W, const float *bias, int64_t p0, int64_t p1,
                            float *out, int64_t ldo, void *scratch)
{
    enum { NV = FRQ_BLK / VW, MB = 2, PB = VW == 16 ? 4 : 2 };
    const int64_t K2 = (K + 1) / 2, Kp = 2 * K2;   /* the panel's stride is K2 * 32 */
    float *ar = (float *)scratch;                    /* MB rows rounded to bf16 */
#if VW == 16
    const __m512i hi = _mm512_set1_epi32((int)0xFFFF0000u);
#else
    const __m256i hi = _mm256_set1_epi32((int)0xFFFF0000u);
#endif
    const unsigned mode = frq_dp_enter();
    for (int64_t m0 = 0; m0 < M; m0 += MB) {
        const int mb = M - m0 < MB ? (int)(M - m0) : MB;
        for (int i = 0; i < mb; i++) FR_SFX(bf16_row)(A + (m0 + i) * lda, K, ar + i * Kp, Kp);
        for (int64_t pa = p0; pa < p1; pa += PB) {
            const int pb = p1 - pa < PB ? (int)(p1 - pa) : PB;
            V acc[MB][PB][NV];
            for (int i = 0; i < mb; i++)
                for (int q = 0; q < pb; q++)
                    for (int v = 0; v < NV; v++)
                        acc[i][q][v] = v_ld(bias + (pa + q) * FRQ_BLK + v * VW);
            for (int64_t kk = 0; kk < K2; kk++) {
                V a0[MB], a1[MB];
                for (int i = 0; i < mb; i++) {
                    a0[i] = v_set1(ar[i * Kp + 2 * kk]);
                    a1[i] = v_set1(ar[i * Kp + 2 * kk + 1]);
                }
                for (int q = 0; q < pb; q++)
                    for (int v = 0; v < NV; v++) {
                        const uint16_t *src = W + ((pa + q) * K2 + kk) * 32 + v * VW * 2;
#if VW == 16
                        const __m512i r = _mm512_loadu_si512(src);
                        const V w0 = _mm512_castsi512_ps(_mm512_slli_epi32(r, 16));
                        const V w1 = _mm512_castsi512_ps(_mm512_and_si512(r, hi));
#else
                        const __m256i r = _mm256_loadu_si256((const __m256i *)src);
                        const V w0 = _mm256_castsi256_ps(_mm256_slli_epi32(r, 16));
                        const V w1 = _mm256_castsi256_ps(_mm256_and_si256(r, hi));
#endif
                        for (int i = 0; i < mb; i++) {
                            acc[i][q][v] = v_fmadd(a1[i], w1, acc[i][q][v]);
                            acc[i][q][v] = v_fmadd(a0[i], w0, acc[i][q][v]);
                        }
                    }
            }
            for (int i = 0; i < mb; i++)
                for (int q = 0; q < pb; q++)
                    for (int v = 0; v < NV; v++)
                        v_st(out + (m0 + i) * ldo + (pa + q) * FRQ_BLK + v * VW, acc[i][q][v]);
        }
    }
    frq_dp_leave(mode);
}

static inline INL TGT V q_sigmoid(V x)
{
    V e = sigmoid_arg(x);
    v_exp_k(&e, 1, 0u);
    return sigmoid_from(x, e);
}

static inline INL TGT V q_tanh(V x)
{
    v_tanh_k(&x, 1);
    return x;
}

static void FR_SFX(qcell)(int cell, int64_t u0, int64_t u1, const float *gx, const float *gh,
                          const float *h, float *hn, float *c) TGT;
static void FR_SFX(qcell)(int cell, int64_t u0, int64_t u1, const float *gx, const float *gh,
                          const float *h, float *hn, float *c)
{
    const int G = fr_num_gates(cell);
    for (int64_t u = u0; u < u1; u++) {
        const float *x = gx + u * G * FRQ_BLK, *r = gh + u * G * FRQ_BLK;
        for (int v = 0; v < FRQ_BLK; v += VW) {
            const int64_t j = u * FRQ_BLK + v;
            if (cell == FR_CELL_LSTM) {
                const V ig = q_sigmoid(v_add(v_ld(x + v), v_ld(r + v)));
                const V fg = q_sigmoid(v_add(v_ld(x + 16 + v), v_ld(r + 16 + v)));
                const V gg = q_tanh(v_add(v_ld(x + 32 + v), v_ld(r + 32 + v)));
                const V og = q_sigmoid(v_add(v_ld(x + 48 + v), v_ld(r + 48 + v)));
                const V cn = v_fmadd(fg, v_ld(c + j), v_mul(ig, gg));
                v_st(c + j, cn);
                v_st(hn + j, v_mul(og, q_tanh(cn)));
            } else if (cell == FR_CELL_GRU) {
                const V rg = q_sigmoid(v_add(v_ld(x + v), v_ld(r + v)));
                const V zg = q_sigmoid(v_add(v_ld(x + 16 + v), v_ld(r + 16 + v)));
                const V ng = q_tanh(v_fmadd(rg, v_ld(r + 32 + v), v_ld(x + 32 + v)));
                v_st(hn + j, v_fmadd(zg, v_sub(v_ld(h + j), ng), ng));
            } else {
                const V s = v_add(v_ld(x + v), v_ld(r + v));
                v_st(hn + j, cell == FR_CELL_RNN_TANH ? q_tanh(s) : v_max(v_zero(), s));
            }
        }
    }
}

/* quant (quant_impl.h) a vector at a time: max |x| (exact in any order),
 * then rint(x * inv) by the vector round to nearest even, the reference's
 * 1.5 * 2^23 trick for |x * inv| <= 127, and the same clamps. */
static void FR_SFX(qrow)(const float *x, int64_t n, int8_t *q, int64_t Kp, float *scale) TGT;
static void FR_SFX(qrow)(const float *x, int64_t n, int8_t *q, int64_t Kp, float *scale)
{
    const V big = v_set1(3.4028234664e38f);
    V vmax = v_zero();
    int bad = 0;
    int64_t k = 0;
    for (; k + VW <= n; k += VW) {
        const V a = v_abs(v_ld(x + k));
#if VW == 16
        bad |= _mm512_cmp_ps_mask(a, big, _CMP_NLE_UQ) != 0;
#else
        bad |= _mm256_movemask_ps(_mm256_cmp_ps(a, big, _CMP_NLE_UQ)) != 0;
#endif
        vmax = v_max(vmax, a);
    }
    float lanes[VW], amax = 0.0f;
    v_st(lanes, vmax);
    for (int i = 0; i < VW; i++) amax = lanes[i] > amax ? lanes[i] : amax;
    for (; k < n; k++) {
        const float a = fabsf(x[k]);
        bad |= !(a <= 3.4028234664e38f);
        amax = a > amax ? a : amax;
    }
    memset(q, 0, (size_t)Kp);
    if (bad || amax == 0.0f) {
        *scale = bad ? NAN : 0.0f;
        return;
    }
    const float inv = 127.0f / amax;
    const V vinv = v_set1(inv), lo = v_set1(-127.0f), hi = v_set1(127.0f);
    for (k = 0; k + VW <= n; k += VW) {
        V v = v_mul(v_ld(x + k), vinv);
#if VW == 16
        v = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v = v_max(v_min(v, hi), lo);
        _mm_storeu_si128((__m128i *)(q + k), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(v)));
#else
        v = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v = v_max(v_min(v, hi), lo);
        int32_t w[8];
        _mm256_storeu_si256((__m256i *)w, _mm256_cvtps_epi32(v));
        for (int i = 0; i < 8; i++) q[k + i] = (int8_t)w[i];
#endif
    }
    for (; k < n; k++) {
        const float p = x[k] * inv;   /* no add after it: nothing to fuse into an FMA */
        float v = rintf(p);
        v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
        q[k] = (int8_t)(int)v;
    }
    *scale = amax / 127.0f;
}
