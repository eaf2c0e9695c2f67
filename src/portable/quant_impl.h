/*
 * Internal: the reduced-precision kernels' shared layout and the table of
 * one ISA's loops (fastrnn_q.h). The driver (portable/quant.c) owns the
 * layers, directions, time loop, threads and activation quantization; a
 * table (portable: quant_ref.c; AVX2 and AVX-512: fast/qkernels.h) owns the
 * products and the gate math, each the same operations in the same order.
 *
 * Packed layout of one matrix (K = In or H), rows grouped in panels of 16:
 * panel p = u*G + g holds gate g's rows for units u*16 .. u*16+15 (rows
 * past H are zero), so a product's output for unit block u is G*16 floats
 * side by side, gate by gate (Np = ceil(H/16)*G*16 outputs a row).
 *   int8: W [Np/16][Kp/4][16][4] (Kp = K rounded up to 4, zero padded),
 *         rowsum [Np] int32 (sum_k of the row: VNNI's u8 offset), scale
 *         [Np], bias [Np]
 *   bf16: W [Np/16][Kp/2][16][2] uint16 (Kp = K rounded up to 2, zero
 *         padded): each 32-bit word holds one row's k (low) and k+1
 *         (high), vdpbf16ps's operand (a shift and a mask widen it to
 *         float32 where that instruction is missing); bias [Np]
 * each section 64-byte aligned; the ih matrix, then the hh matrix.
 */
#ifndef FASTRNN_QUANT_IMPL_H
#define FASTRNN_QUANT_IMPL_H

#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif
#include "fastrnn_q.h"

#pragma GCC visibility push(hidden)

#define FRQ_BLK 16   /* units per block, rows per panel */

static inline int64_t frq_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

/*
 * One ISA's loops.
 * mm_i8: for m < M and panels p0 <= p < p1, output o = p*16 + i:
 *   out[m*ldo + o] = fmaf((float)sum_k A[m*Kp + k] W[o][k], sa[m] * sw[o], bias[o])
 *   A (M, Kp) int8 zero padded; scratch: 32 * Kp bytes, 64-byte aligned.
 * mm_bf16: vdpbf16ps's sum (fastrnn_q.h): each row A[m*lda + 0..K) rounded
 *   by frq_bf16_bits and zero padded to Kp; then from acc = bias[o], for
 *   each pair k = 0, 2, ..: acc = fma(a[k+1], w[k+1], acc), then
 *   acc = fma(a[k], w[k], acc), denormal operands and results as zero
 *   (frq_dp_enter); out[m*ldo + o] = acc. scratch: 32 * Kp bytes, 64-byte
 *   aligned.
 * cell: unit blocks u0 <= u < u1 of one sequence: gates gx, gh (G*16 a
 *   block, as the products leave them), h (read), hn (written), c (LSTM,
 *   updated); every lane of a block is computed (rows past H are zero and
 *   leave h and c at 0 there).
 * quant: symmetric int8 of one row of n floats into q (Kp bytes, zero
 *   padded) and its scale (quantization rule: fastrnn_q.h): amax = max |x|;
 *   NaN scale for a non-finite value, 0 for amax 0 (q all 0); else
 *   q[k] = clamp(rint(x[k] * (127 / amax)), -127, 127), scale amax / 127.
 */
typedef struct {
    void (*mm_i8)(int64_t M, int64_t Kp, const int8_t *A, const float *sa, const int8_t *W,
                  const int32_t *rowsum, const float *sw, const float *bias, int64_t p0,
                  int64_t p1, float *out, int64_t ldo, void *scratch);
    void (*mm_bf16)(int64_t M, int64_t K, const float *A, int64_t lda, const uint16_t *W,
                    const float *bias, int64_t p0, int64_t p1, float *out, int64_t ldo,
                    void *scratch);
    void (*cell)(int cell, int64_t u0, int64_t u1, const float *gx, const float *gh,
                 const float *h, float *hn, float *c);
    void (*quant)(const float *x, int64_t n, int8_t *q, int64_t Kp, float *scale);
} frq_kernels;

/* bf16 bits of x as vcvtne2ps2bf16 gives them: round to nearest even; a
 * denormal (exponent field 0) to a zero of its sign; a NaN stays NaN, made
 * quiet. */
static inline uint16_t frq_bf16_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x40u);
    if ((u & 0x7F800000u) == 0) return (uint16_t)((u >> 16) & 0x8000u);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

/* vdpbf16ps's arithmetic for the FMAs that stand in for it: denormal
 * inputs read as zero and denormal results flushed to zero (MXCSR DAZ and
 * FTZ on x86, this thread only, until frq_dp_leave). Where there is no
 * MXCSR, frq_dp_ftz flushes each result after its rounding instead. */
#if defined(__x86_64__) || defined(__i386__)
static inline unsigned frq_dp_enter(void)
{
    const unsigned old = _mm_getcsr();
    _mm_setcsr(old | 0x8040u);
    return old;
}
static inline void frq_dp_leave(unsigned old) { _mm_setcsr(old); }
static inline float frq_dp_ftz(float x) { return x; }
#else
static inline unsigned frq_dp_enter(void) { return 0; }
static inline void frq_dp_leave(unsigned old) { (void)old; }
static inline float frq_dp_ftz(float x)
{
    return fabsf(x) < 1.17549435e-38f ? copysignf(0.0f, x) : x;
}
#endif

extern const frq_kernels frq_kernels_ref;
/* NULL where the build or the CPU lacks them */
const frq_kernels *frq_kernels_avx2(void);
const frq_kernels *frq_kernels_avx512(int prec);

#pragma GCC visibility pop

#endif /* FASTRNN_QUANT_IMPL_H */
