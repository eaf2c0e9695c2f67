/*
 * The vector ISA of one build of the fast float32 kernels: included first
 * by kernels_avx512.c (FR_ISA_AVX512: VW = 16 floats, AVX-512 F/VL/DQ) or
 * kernels_avx2.c (FR_ISA_AVX2: VW = 8, AVX2 + FMA), which also define
 * FR_SFX(name), the suffix of the entry points. The other headers of
 * src/fast are written once over a vector V of VW floats with the v_*
 * macros below, and are included after this one, once per build.
 *
 * Why the two widths give the same bits: every output of a panel product is
 * its old value followed by one FMA chain over j in order (the tile and
 * panel widths only decide how many chains run side by side), and the gate
 * math is lane by lane, the same instructions for every lane at either
 * width. The dot tiles on unpacked weights (dot.h) sum 8-wide partial
 * products and stay AVX2 in both builds.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <immintrin.h>
#include <sched.h>
#include <stdatomic.h>
#include "fast/fast.h"
#include "fast/tuning.h"
#include "runtime/runtime.h"

#define AVX2 __attribute__((target("avx2,fma")))

#if defined(FR_ISA_AVX512)
#define TGT __attribute__((target("avx512f,avx512vl,avx512dq,avx2,fma")))
#define VW 16
typedef __m512 V;
typedef __m512i VI;
typedef __mmask16 VMASK;                  /* a lane mask */
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
#define v_head(n) ((VMASK)((1u << (n)) - 1u))
#else
#define TGT __attribute__((target("avx2,fma")))
#define VW 8
typedef __m256 V;
typedef __m256i VI;
typedef __m256 VMASK;
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

/* The helpers of these headers marked INL are inlined into their callers
 * with the count of vectors known, so the loops over k unroll and the
 * vectors stay in registers. */
#define INL __attribute__((always_inline))
