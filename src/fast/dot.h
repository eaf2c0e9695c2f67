/*
 * Dot-product tiles on unpacked weights (AVX2 in both builds): for short
 * inputs and streaming steps, where packing W would cost more than the
 * product. Needs isa.h.
 */

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
 * a `rep stos` to the stack on every call and its sums went through memory
 * (docs/tuning.md). */
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
