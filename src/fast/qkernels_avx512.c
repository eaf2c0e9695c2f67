/*
 * The reduced-precision loops at 16 floats a vector (AVX-512 F/VL/DQ;
 * int8 products with VNNI's vpdpbusd, which needs AVX512_VNNI and BW):
 * qkernels.h's body plus the int8 product. vpdpbusd multiplies unsigned
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

/* rows of activations per pass over a panel (accumulators in registers) */
enum { Q_MB = 8 };

static void mm_i8_vnni(int64_t M, int64_t Kp, const int8_t *A, const float *sa,
                       const int8_t *W, const int32_t *rowsum, const float *sw,
                       const float *bias, int64_t p0, int64_t p1, float *out, int64_t ldo,
                       void *scratch) VNNI;
static void mm_i8_vnni(int64_t M, int64_t Kp, const int8_t *A, const float *sa,
                       const int8_t *W, const int32_t *rowsum, const float *sw,
                       const float *bias, int64_t p0, int64_t p1, float *out, int64_t ldo,
                       void *scratch)
{
    uint8_t *au = (uint8_t *)scratch;   /* Q_MB rows of qx + 128 */
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    for (int64_t m0 = 0; m0 < M; m0 += Q_MB) {
        const int mb = M - m0 < Q_MB ? (int)(M - m0) : Q_MB;
        for (int i = 0; i < mb; i++) {
            const int8_t *a = A + (m0 + i) * Kp;
            int64_t k = 0;
            for (; k + 64 <= Kp; k += 64)
                _mm512_storeu_si512(au + i * Kp + k,
                                    _mm512_xor_si512(_mm512_loadu_si512(a + k), flip));
            for (; k < Kp; k++) au[i * Kp + k] = (uint8_t)(a[k] ^ (int8_t)0x80);
        }
        for (int64_t p = p0; p < p1; p++) {
            const int8_t *w = W + p * Kp * FRQ_BLK;
            __m512i acc[Q_MB];
            for (int i = 0; i < Q_MB; i++) acc[i] = _mm512_setzero_si512();
            if (mb == Q_MB) {
                for (int64_t k4 = 0; k4 < Kp / 4; k4++) {
                    const __m512i wv = _mm512_load_si512(w + k4 * 64);
                    for (int i = 0; i < Q_MB; i++) {
                        int32_t a4;
                        memcpy(&a4, au + i * Kp + 4 * k4, 4);
                        acc[i] = _mm512_dpbusd_epi32(acc[i], _mm512_set1_epi32(a4), wv);
                    }
                }
            } else {
                for (int64_t k4 = 0; k4 < Kp / 4; k4++) {
                    const __m512i wv = _mm512_load_si512(w + k4 * 64);
                    for (int i = 0; i < mb; i++) {
                        int32_t a4;
                        memcpy(&a4, au + i * Kp + 4 * k4, 4);
                        acc[i] = _mm512_dpbusd_epi32(acc[i], _mm512_set1_epi32(a4), wv);
                    }
                }
            }
            const __m512i off = _mm512_slli_epi32(_mm512_loadu_si512(rowsum + p * FRQ_BLK), 7);
            for (int i = 0; i < mb; i++) {
                int32_t s[FRQ_BLK];
                _mm512_storeu_si512(s, _mm512_sub_epi32(acc[i], off));
                q_epilogue(s, sa[m0 + i], sw + p * FRQ_BLK, bias + p * FRQ_BLK,
                           out + (m0 + i) * ldo + p * FRQ_BLK);
            }
        }
    }
}

static const frq_kernels k_vnni = {mm_i8_vnni, mm_bf16_avx512, qcell_avx512, qrow_avx512};
/* bf16 alone needs only AVX-512 F (the int8 entries are never called then) */
static const frq_kernels k_f = {NULL, mm_bf16_avx512, qcell_avx512, NULL};

const frq_kernels *frq_kernels_avx512(int prec)
{
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
          && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma")))
        return NULL;
    if (prec != FRQ_INT8) return &k_f;
    if (!(__builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni")))
        return NULL;
    return &k_vnni;
}

#else
#include "portable/quant_impl.h"
const frq_kernels *frq_kernels_avx512(int prec) { (void)prec; return NULL; }
#endif
