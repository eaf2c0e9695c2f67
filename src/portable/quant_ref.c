/*
 * The portable loops of the reduced-precision kernels (quant_impl.h): the
 * reference the AVX2 and AVX-512 builds (fast/qkernels.h) must equal bit
 * for bit. Scalar C; every FMA is an explicit fmaf (one rounding, as the
 * vector FMAs), and the gate math is fast/simd_math.h's, lane by lane.
 */
#include <math.h>
#include <string.h>
#include "portable/quant_impl.h"

/* simd_math.h's v_exp_k for one lane: pos 1 for an argument >= 0 (tanh),
 * 0 for one <= 0 (sigmoid). The clamps keep x86's min/max NaN rule (the
 * second operand, x, when either is NaN). */
static float exp_s(float x, int pos)
{
    const float magic = 12582912.0f;
    if (pos)
        x = 64.0f < x ? 64.0f : x;
    else
        x = -88.0f > x ? -88.0f : x;
    const float t = fmaf(x, 1.44269504088896341f, magic);
    float z = t - magic;
    x = fmaf(-z, 0.693359375f, x);
    x = fmaf(-z, -2.12194440e-4f, x);
    z = x * x;
    float y = fmaf(1.9875691500E-4f, x, 1.3981999507E-3f);
    y = fmaf(y, x, 8.3334519073E-3f);
    y = fmaf(y, x, 4.1665795894E-2f);
    y = fmaf(y, x, 1.6666665459E-1f);
    y = fmaf(y, x, 5.0000001201E-1f);
    y = fmaf(y, z, x);
    uint32_t b;
    memcpy(&b, &t, 4);
    b = (b + 127u) << 23;
    float s;
    memcpy(&s, &b, 4);
    return fmaf(y, s, s);
}

static int sign_bit(float x)
{
    uint32_t b;
    memcpy(&b, &x, 4);
    return (int)(b >> 31);
}

static float sigmoid_s(float x)
{
    const float e = exp_s(sign_bit(x) ? x : -x, 0);   /* -|x| (NaN keeps its bits) */
    return (sign_bit(x) ? e : 1.0f) / (1.0f + e);
}

static float tanh_s(float x)
{
    const float ax = fabsf(x);
    const float e = exp_s(ax + ax, 1);
    float big = 1.0f - 2.0f / (e + 1.0f);
    if (sign_bit(x)) big = -big;   /* big >= 0 (or NaN): OR-ing the sign negates */
    const float z = x * x;
    float p = fmaf(-5.70498872745E-3f, z, 2.06390887954E-2f);
    p = fmaf(p, z, -5.37397155531E-2f);
    p = fmaf(p, z, 1.33314422036E-1f);
    p = fmaf(p, z, -3.33332819422E-1f);
    const float small = fmaf(p * z, x, x);
    return ax < 0.625f ? small : big;
}

static void mm_i8_ref(int64_t M, int64_t Kp, const int8_t *A, const float *sa,
                      const int8_t *W, const int32_t *rowsum, const float *sw,
                      const float *bias, int64_t p0, int64_t p1, float *out, int64_t ldo,
                      void *scratch)
{
    (void)rowsum;
    (void)scratch;
    for (int64_t m = 0; m < M; m++) {
        const int8_t *a = A + m * Kp;
        for (int64_t p = p0; p < p1; p++) {
            const int8_t *w = W + p * Kp * FRQ_BLK;
            for (int i = 0; i < FRQ_BLK; i++) {
                int32_t acc = 0;
                for (int64_t k = 0; k < Kp; k++)
                    acc += (int32_t)a[k] * (int32_t)w[(k >> 2) * 64 + i * 4 + (k & 3)];
                const int64_t o = p * FRQ_BLK + i;
                out[m * ldo + o] = fmaf((float)acc, sa[m] * sw[o], bias[o]);
            }
        }
    }
}

static float bf16_f(uint16_t v)
{
    const uint32_t b = (uint32_t)v << 16;
    float f;
    memcpy(&f, &b, 4);
    return f;
}

static void mm_bf16_ref(int64_t M, int64_t K, const float *A, int64_t lda,
                        const uint16_t *W, const float *bias, int64_t p0, int64_t p1,
                        float *out, int64_t ldo, void *scratch)
{
    const int64_t K2 = (K + 1) / 2;
    float *a = (float *)scratch;   /* one row rounded to bf16, zero padded */
    const unsigned mode = frq_dp_enter();
    for (int64_t m = 0; m < M; m++) {
        for (int64_t k = 0; k < 2 * K2; k++)
            a[k] = k < K ? bf16_f(frq_bf16_bits(A[m * lda + k])) : 0.0f;
        for (int64_t p = p0; p < p1; p++)
            for (int i = 0; i < FRQ_BLK; i++) {
                const int64_t o = p * FRQ_BLK + i;
                const uint16_t *w = W + p * K2 * 32 + i * 2;
                float acc = frq_dp_ftz(bias[o]);
                for (int64_t kk = 0; kk < K2; kk++) {
                    acc = frq_dp_ftz(fmaf(a[2 * kk + 1], frq_dp_ftz(bf16_f(w[kk * 32 + 1])), acc));
                    acc = frq_dp_ftz(fmaf(a[2 * kk], frq_dp_ftz(bf16_f(w[kk * 32])), acc));
                }
                out[m * ldo + o] = acc;
            }
    }
    frq_dp_leave(mode);
}

static void cell_ref(int cell, int64_t u0, int64_t u1, const float *gx, const float *gh,
                     const float *h, float *hn, float *c)
{
    const int G = fr_num_gates(cell);
    for (int64_t u = u0; u < u1; u++) {
        const float *x = gx + u * G * FRQ_BLK, *r = gh + u * G * FRQ_BLK;
        for (int i = 0; i < FRQ_BLK; i++) {
            const int64_t j = u * FRQ_BLK + i;
            if (cell == FR_CELL_LSTM) {
                const float ig = sigmoid_s(x[i] + r[i]);
                const float fg = sigmoid_s(x[16 + i] + r[16 + i]);
                const float gg = tanh_s(x[32 + i] + r[32 + i]);
                const float og = sigmoid_s(x[48 + i] + r[48 + i]);
                c[j] = fmaf(fg, c[j], ig * gg);
                hn[j] = og * tanh_s(c[j]);
            } else if (cell == FR_CELL_GRU) {
                const float rg = sigmoid_s(x[i] + r[i]);
                const float zg = sigmoid_s(x[16 + i] + r[16 + i]);
                const float ng = tanh_s(fmaf(rg, r[32 + i], x[32 + i]));
                hn[j] = fmaf(zg, h[j] - ng, ng);
            } else {
                const float v = x[i] + r[i];
                hn[j] = cell == FR_CELL_RNN_TANH ? tanh_s(v) : (0.0f > v ? 0.0f : v);
            }
        }
    }
}

/* Symmetric int8 of one row (quantization rule: fastrnn_q.h). The rounding
 * adds and subtracts 1.5 * 2^23 (round to nearest even for |v| <= 127),
 * plain float operations, so every ISA's compiler gives the same bits. */
static void quant_ref(const float *x, int64_t n, int8_t *q, int64_t Kp, float *scale)
{
    float amax = 0.0f;
    int bad = 0;
    for (int64_t k = 0; k < n; k++) {
        const float a = fabsf(x[k]);
        bad |= !(a <= 3.4028234664e38f);
        amax = a > amax ? a : amax;
    }
    memset(q, 0, (size_t)Kp);
    if (bad || amax == 0.0f) {
        *scale = bad ? NAN : 0.0f;
        return;
    }
    const float inv = 127.0f / amax, magic = 12582912.0f;
    for (int64_t k = 0; k < n; k++) {
        float v = (x[k] * inv + magic) - magic;
        v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
        q[k] = (int8_t)(int)v;
    }
    *scale = amax / 127.0f;
}

const frq_kernels frq_kernels_ref = {mm_i8_ref, mm_bf16_ref, cell_ref, quant_ref};
