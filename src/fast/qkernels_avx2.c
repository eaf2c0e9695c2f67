/*
 * The reduced-precision loops at 8 floats a vector (AVX2 + FMA): qkernels.h's
 * body plus the int8 product with vpmaddwd on int8 widened to int16 (the
 * pair sums of at most 2 * 127 * 127 cannot saturate, unlike vpmaddubsw's
 * int16 result): the same int32 as the portable sum, exactly.
 */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FR_ISA_AVX2 1
#define FR_SFX(name) name##_avx2
#include "fast/isa.h"
#include "fast/simd_math.h"
#include "fast/qkernels.h"

/* rows of activations per pass over a panel: 4 accumulators each */
enum { Q_MB = 2 };

static void mm_i8_avx2(int64_t M, int64_t Kp, const int8_t *A, const float *sa,
                       const int8_t *W, const int32_t *rowsum, const float *sw,
                       const float *bias, int64_t p0, int64_t p1, float *out, int64_t ldo,
                       void *scratch) TGT;
static void mm_i8_avx2(int64_t M, int64_t Kp, const int8_t *A, const float *sa,
                       const int8_t *W, const int32_t *rowsum, const float *sw,
                       const float *bias, int64_t p0, int64_t p1, float *out, int64_t ldo,
                       void *scratch)
{
    (void)rowsum;
    int16_t *a16 = (int16_t *)scratch;   /* Q_MB rows of qx widened */
    const __m256i order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
    for (int64_t m0 = 0; m0 < M; m0 += Q_MB) {
        const int mb = M - m0 < Q_MB ? (int)(M - m0) : Q_MB;
        for (int i = 0; i < mb; i++)
            for (int64_t k = 0; k < Kp; k++) a16[i * Kp + k] = A[(m0 + i) * Kp + k];
        for (int64_t p = p0; p < p1; p++) {
            const int8_t *w = W + p * Kp * FRQ_BLK;
            /* acc[i][q]: rows 4q..4q+3, two partial sums each */
            __m256i acc[Q_MB][4];
            for (int i = 0; i < Q_MB; i++)
                for (int q = 0; q < 4; q++) acc[i][q] = _mm256_setzero_si256();
            for (int64_t k4 = 0; k4 < Kp / 4; k4++) {
                __m256i wv[4];
                for (int q = 0; q < 4; q++)
                    wv[q] = _mm256_cvtepi8_epi16(
                        _mm_load_si128((const __m128i *)(w + k4 * 64 + 16 * q)));
                for (int i = 0; i < mb; i++) {
                    int64_t a4;
                    memcpy(&a4, a16 + i * Kp + 4 * k4, 8);
                    const __m256i av = _mm256_set1_epi64x(a4);
                    for (int q = 0; q < 4; q++)
                        acc[i][q] = _mm256_add_epi32(acc[i][q], _mm256_madd_epi16(av, wv[q]));
                }
            }
            for (int i = 0; i < mb; i++) {
                int32_t s[FRQ_BLK];
                /* hadd within 128-bit lanes gives rows 0 1 4 5 | 2 3 6 7 */
                _mm256_storeu_si256((__m256i *)s, _mm256_permutevar8x32_epi32(
                    _mm256_hadd_epi32(acc[i][0], acc[i][1]), order));
                _mm256_storeu_si256((__m256i *)(s + 8), _mm256_permutevar8x32_epi32(
                    _mm256_hadd_epi32(acc[i][2], acc[i][3]), order));
                q_epilogue(s, sa[m0 + i], sw + p * FRQ_BLK, bias + p * FRQ_BLK,
                           out + (m0 + i) * ldo + p * FRQ_BLK);
            }
        }
    }
}

static const frq_kernels k_avx2 = {mm_i8_avx2, mm_bf16_avx2, qcell_avx2, qrow_avx2};

const frq_kernels *frq_kernels_avx2(void)
{
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return NULL;
    return &k_avx2;
}

#else
#include "portable/quant_impl.h"
const frq_kernels *frq_kernels_avx2(void) { return NULL; }
#endif
