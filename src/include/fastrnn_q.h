/*
 * fastrnn kernels: reduced-precision inference of the plain RNN, LSTM and
 * GRU (torch's cells, gru_lbr = 1, clip = 0), all layers and directions,
 * lengths and initial states, as fr_forward_f32 takes them (fastrnn.h for
 * the shape letters and fr_desc). float32 in and out; only the weights,
 * and for int8 the products' operands, are narrower.
 *
 * FRQ_INT8. Weights W_ih (G*H, In) and W_hh (G*H, H) are int8 values q in
 * [-127, 127] with one float32 scale per output row r (w = q * s_r; the
 * caller quantizes). Each input row x of a product (one (t, b) row of the
 * layer's input, or one batch row of h at each step) is quantized here,
 * symmetric int8: a = max|x_k| / 127, qx_k = round-to-nearest-even(x_k *
 * (127 / a)) (0 where a = 0; a row with a non-finite value gets a = NaN,
 * so its products are NaN). The product is the exact int32 sum
 * acc_r = sum_k qx_k q_rk, then g_r = fmaf((float)acc_r, a * s_r, b_r).
 * Gates, biases, cell state and h are float32.
 *
 * FRQ_BF16. Weights are bfloat16 bit patterns (uint16: the high half of a
 * float32). Each input row of a product is rounded to bf16 as
 * vcvtne2ps2bf16 rounds (to nearest even; denormals to zero; NaN stays
 * NaN) and the product is AVX512_BF16's vdpbf16ps sum: from its bias, for
 * each pair of columns k, k+1 (K padded with a zero column to even),
 * acc = fma(x_k+1, w_r,k+1, acc), then acc = fma(x_k, w_rk, acc), each a
 * float32 FMA (a product of two bf16 is exact) with denormal operands and
 * results taken as zero. Builds without the instruction run exactly these
 * FMAs.
 *
 * The gate math after the products is fixed: sigmoid and tanh from the
 * fast kernels' exp (src/fast/simd_math.h), LSTM c' = fmaf(f, c, i g),
 * h' = o tanh(c'); GRU n = tanh(fmaf(r, gh_n, gx_n)), h' = fmaf(z, h - n, n).
 * The portable C loops, the AVX2 build and the AVX-512 build (VNNI
 * vpdpbusd for int8, vdpbf16ps for bf16) run exactly these operations:
 * their results are the same bits. Which runs: frq_isa(), frq_bf16_dot().
 *
 * Weights are packed once per layer and direction (frq_pack) into a buffer
 * of frq_packed_len bytes, 64-byte aligned, the same layout for every ISA.
 * Limits (FR_EINVAL otherwise): the default cell options, and for int8
 * In, H <= 65536 (the int32 sums cannot overflow).
 */
#ifndef FASTRNN_Q_H
#define FASTRNN_Q_H

#include <stdint.h>
#include "fastrnn.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FRQ_INT8 1
#define FRQ_BF16 2

/* Which kernels run the next call: 16 (AVX-512; for int8 with VNNI and BW;
 * for bf16 see frq_bf16_dot),
 * 8 (AVX2 + FMA) or 0 (the portable loops). It follows the fast path's
 * switches: fr_set_fast_path(0) gives 0, fr_set_fast_width(8) gives 8, and
 * an int8 call at width 16 on a CPU without AVX-512 VNNI runs at 8. */
int frq_isa(int prec);

/* Whether bf16 products at width 16 run vdpbf16ps (1: the CPU has AVX-512
 * BF16 and BW, and frq_set_bf16_dot left it on) or the AVX-512 F FMAs that
 * give its bits (0). frq_set_bf16_dot(0) turns the instruction off, 1 back
 * on where the CPU has it (tests, before/after timings); returns the new
 * state. */
int frq_bf16_dot(void);
int frq_set_bf16_dot(int on);

/* Bytes of layer/direction k's packed buffer (k = l*D + dir); -1 for an
 * invalid d, prec or k. */
int64_t frq_packed_len(const fr_desc *d, int prec, int k);

/*
 * Pack layer/direction k: w_ih (G*H, In) and w_hh (G*H, H), int8 or bf16
 * bits (uint16) by prec; s_ih, s_hh (G*H) the int8 row scales (ignored for
 * bf16); b_ih, b_hh (G*H) or NULL (no bias). out: frq_packed_len bytes,
 * 64-byte aligned.
 */
int frq_pack(const fr_desc *d, int prec, int k, const void *w_ih, const float *s_ih,
             const void *w_hh, const float *s_hh, const float *b_ih, const float *b_hh,
             void *out);

/* Bytes of forward scratch (depends on T, B, H, I, L, D, num_threads); -1
 * for an invalid d or prec. */
int64_t frq_work_len(const fr_desc *d, int prec);

/*
 * Inference forward through all layers and directions.
 *   x        IN  (T,B,I)
 *   packed   IN  L*D buffers from frq_pack with the same d's sizes and prec
 *   h0, c0   IN  (L*D,B,H) or NULL (zeros); c0 LSTM only
 *   y        OUT (T,B,D*H), 0 past each length
 *   hn, cn   OUT (L*D,B,H); cn LSTM only (else may be NULL)
 *   work     SCRATCH frq_work_len(d, prec) bytes, 64-byte aligned
 */
int frq_forward(const fr_desc *d, int prec, const float *x, const void *const *packed,
                const float *h0, const float *c0, float *y, float *hn, float *cn,
                void *work);

#ifdef __cplusplus
}
#endif
#endif /* FASTRNN_Q_H */
