/*
 * C-level fuzzer of fastrnn's kernel entry points, under AddressSanitizer and
 * UndefinedBehaviorSanitizer: fr_check_desc, fr_cache_len,
 * fr_forward_work_len, fr_backward_work_len, fr_forward_f32/f64,
 * fr_backward_f32/f64, fr_gemm_f32/f64, fr_ctc_work_len and fr_ctc_f32/f64,
 * and fr_packed_len_f32, fr_pack_f32 and fr_forward_packed_f32 (the same bits
 * as fr_forward_f32).
 *
 * Each input (a byte string) decodes into a descriptor (cell kind, T, B, I, H,
 * L, D, lengths, thread count; some of them invalid on purpose: unknown
 * cells, zero or negative sizes, lengths 0 or > T, huge sizes), flags (bias,
 * initial states, dropout mask, fast path) and the values of every array
 * (normal numbers, and NaN/inf now and then). Every buffer is malloc'ed with
 * exactly the length the kernel reports for it, so ASan flags any read or
 * write past it; UBSan flags signed overflow, bad shifts and misaligned
 * access. Checked besides: an invalid descriptor makes every length -1 and
 * every kernel return its status without touching anything; a valid one gives
 * lengths that did not overflow (at least the (T,B,G*H) gate block per layer
 * and direction), FR_OK, outputs exactly 0 past each length, finite outputs
 * for finite inputs; CTC returns FR_EINVAL for bad labels/lengths and
 * otherwise a loss >= 0 (or +inf when no alignment exists).
 * BLAS: a plain reference GEMM (column-major, as Fortran's) registered
 * through fr_set_blas, so no BLAS library is needed.
 *
 * Standalone (gcc, random inputs from a seeded generator):
 *   gcc -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
 *       -fno-sanitize-recover=undefined -fopenmp -Isrc/include -Isrc \
 *       tools/fuzz_kernels.c $(find src -name '*.c') -lm -o /tmp/fuzz_kernels
 *   /tmp/fuzz_kernels 100000 1        # iterations, seed
 * Coverage-guided with libFuzzer (clang):
 *   clang -O1 -g -fsanitize=fuzzer,address,undefined -DFR_LIBFUZZER -fopenmp \
 *       -Isrc/include -Isrc tools/fuzz_kernels.c $(find src -name '*.c') -lm -o /tmp/fk
 *   /tmp/fk -max_total_time=600
 * (tools/fuzz_kernels.sh builds and runs the standalone one.)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fastrnn.h"
#include "fastrnn_ctc.h"

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_kernels: check failed at line %d: %s: ", __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                      \
            fprintf(stderr, "\n");                                             \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* ---- reference column-major GEMM (what Fortran's sgemm/dgemm compute) ---- */
#define DEFINE_GEMM(NAME, REAL)                                                \
    static void NAME(char *ta, char *tb, int *m, int *n, int *k, REAL *alpha,  \
                     REAL *a, int *lda, REAL *b, int *ldb, REAL *beta, REAL *c, int *ldc) \
    {                                                                          \
        for (int j = 0; j < *n; j++)                                           \
            for (int i = 0; i < *m; i++) {                                     \
                REAL s = 0;                                                    \
                for (int p = 0; p < *k; p++) {                                 \
                    REAL av = (*ta == 'N') ? a[i + (int64_t)p * *lda] : a[p + (int64_t)i * *lda]; \
                    REAL bv = (*tb == 'N') ? b[p + (int64_t)j * *ldb] : b[j + (int64_t)p * *ldb]; \
                    s += av * bv;                                              \
                }                                                              \
                REAL *cv = &c[i + (int64_t)j * *ldc];                          \
                *cv = (*beta == 0 ? 0 : *beta * *cv) + *alpha * s;             \
            }                                                                  \
    }
DEFINE_GEMM(ref_sgemm, float)
DEFINE_GEMM(ref_dgemm, double)

/* ---- the input, read as a stream of small numbers ------------------------- */
typedef struct { const uint8_t *p; size_t n, i; } src_t;

static unsigned next(src_t *s)
{
    return s->i < s->n ? s->p[s->i++] : 0;
}

static int pick(src_t *s, int hi) /* 0..hi */
{
    return (int)(next(s) % (unsigned)(hi + 1));
}

/* 1..hi mostly; now and then (1 in 24) 0 or -1: an invalid size */
static int64_t size(src_t *s, int hi)
{
    if (pick(s, 23) == 0) return -(int64_t)pick(s, 1);
    return 1 + pick(s, hi - 1);
}

static double value(src_t *s)
{
    unsigned v = next(s);
    if (v == 255) return NAN;
    if (v == 254) return INFINITY;
    if (v == 253) return -INFINITY;
    return ((int)v - 126) / 40.0;
}

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    CHECK(p != NULL, "malloc(%zu)", bytes);
    return p;
}

static long n_ok, n_inval, n_toobig, n_ctc_ok, n_ctc_inval, n_gemm;

/* ---- recurrent kernels --------------------------------------------------- */
/* float32: the same inference through weights packed once (fr_pack_f32,
 * fr_forward_packed_f32) gives the very bits of fr_forward_f32 */
static long n_packed, n_bfirst, n_bfirst_bwd;
static void packed_check_f32(const fr_desc *d, const float *x, float **w_ih, float **w_hh,
                             float **b_ih, float **b_hh, const float *h0, const float *c0,
                             const float *y, const float *hn, const float *cn)
{
    const int64_t K = (int64_t)d->L * d->D, BH = d->B * d->H;
    if (fr_packed_len_f32(d, 0) <= 0) return;  /* no fast loops for d here */
    float **pk = xmalloc(K * sizeof(float *));
    for (int64_t k = 0; k < K; k++) {
        const int64_t n = fr_packed_len_f32(d, (int)k);
        CHECK(n > 0, "packed length %lld", (long long)n);
        if (posix_memalign((void **)&pk[k], 64, (size_t)n * sizeof(float)) != 0) abort();
    }
    const int width = fr_pack_f32(d, (const float *const *)w_ih, (const float *const *)w_hh, pk);
    CHECK(width == 8 || width == 16, "pack width %d", width);
    const int64_t n_y = d->T * d->B * d->D * d->H;
    float *y2 = xmalloc(n_y * sizeof(float)), *hn2 = xmalloc(K * BH * sizeof(float));
    float *cn2 = cn ? xmalloc(K * BH * sizeof(float)) : NULL;
    float *work = xmalloc(fr_forward_work_len(d, 0) * sizeof(float));
    const int st = fr_forward_packed_f32(d, x, (const float *const *)w_ih,
                                         (const float *const *)w_hh,
                                         (const float *const *)b_ih, (const float *const *)b_hh,
                                         h0, c0, NULL, y2, hn2, cn2, NULL, work,
                                         (const float *const *)pk, width);
    CHECK(st == FR_OK, "packed forward status %d", st);
    CHECK(memcmp(y, y2, (size_t)n_y * sizeof(float)) == 0, "packed y differs%s", "");
    CHECK(memcmp(hn, hn2, (size_t)(K * BH) * sizeof(float)) == 0, "packed h_n differs%s", "");
    if (cn) CHECK(memcmp(cn, cn2, (size_t)(K * BH) * sizeof(float)) == 0, "packed c_n differs%s", "");
    n_packed++;
    free(work); free(y2); free(hn2); free(cn2);
    for (int64_t k = 0; k < K; k++) free(pk[k]);
    free(pk);
}
static void packed_check_f64(const fr_desc *d, const double *x, double **w_ih, double **w_hh,
                             double **b_ih, double **b_hh, const double *h0, const double *c0,
                             const double *y, const double *hn, const double *cn)
{
    (void)d; (void)x; (void)w_ih; (void)w_hh; (void)b_ih; (void)b_hh; (void)h0; (void)c0;
    (void)y; (void)hn; (void)cn;
}

#define DEFINE_RUN(NAME, REAL, FWD, BWD, GEMM, PACKED_CHECK)                   \
static void NAME(src_t *s, const fr_desc *d, int finite_in)                    \
{                                                                              \
    const int G = fr_num_gates(d->cell);                                       \
    const int64_t T = d->T, B = d->B, I = d->I_, H = d->H, L = d->L, D = d->D; \
    const int64_t K = L * D, GH = G * H, DH = D * H;                           \
    const int bias = pick(s, 1), with_h0 = pick(s, 1), with_mask = pick(s, 1); \
    const int is_lstm = d->cell == FR_CELL_LSTM;                               \
    REAL **w_ih = xmalloc(K * sizeof(REAL *)), **w_hh = xmalloc(K * sizeof(REAL *)); \
    REAL **b_ih = xmalloc(K * sizeof(REAL *)), **b_hh = xmalloc(K * sizeof(REAL *)); \
    REAL **dw_ih = xmalloc(K * sizeof(REAL *)), **dw_hh = xmalloc(K * sizeof(REAL *)); \
    REAL **db_ih = xmalloc(K * sizeof(REAL *)), **db_hh = xmalloc(K * sizeof(REAL *)); \
    for (int64_t k = 0; k < K; k++) {                                          \
        const int64_t In = k < D ? I : DH;                                     \
        w_ih[k] = xmalloc(GH * In * sizeof(REAL));                             \
        w_hh[k] = xmalloc(GH * H * sizeof(REAL));                              \
        b_ih[k] = xmalloc(GH * sizeof(REAL));                                  \
        b_hh[k] = xmalloc(GH * sizeof(REAL));                                  \
        dw_ih[k] = calloc(GH * In, sizeof(REAL));                              \
        dw_hh[k] = calloc(GH * H, sizeof(REAL));                               \
        db_ih[k] = calloc(GH, sizeof(REAL));                                   \
        db_hh[k] = calloc(GH, sizeof(REAL));                                   \
        for (int64_t i = 0; i < GH * In; i++) w_ih[k][i] = (REAL)(value(s) * 0.5); \
        for (int64_t i = 0; i < GH * H; i++) w_hh[k][i] = (REAL)(value(s) * 0.5); \
        for (int64_t i = 0; i < GH; i++) { b_ih[k][i] = (REAL)value(s); b_hh[k][i] = (REAL)value(s); } \
    }                                                                          \
    REAL *x = xmalloc(T * B * I * sizeof(REAL));                               \
    for (int64_t i = 0; i < T * B * I; i++) {                                  \
        x[i] = (REAL)value(s);                                                 \
        if (finite_in && !isfinite(x[i])) x[i] = 1;                            \
    }                                                                          \
    if (finite_in)                                                             \
        for (int64_t k = 0; k < K; k++) {                                      \
            const int64_t In = k < D ? I : DH;                                 \
            for (int64_t i = 0; i < GH * In; i++) if (!isfinite(w_ih[k][i])) w_ih[k][i] = 0; \
            for (int64_t i = 0; i < GH * H; i++) if (!isfinite(w_hh[k][i])) w_hh[k][i] = 0; \
            for (int64_t i = 0; i < GH; i++) {                                 \
                if (!isfinite(b_ih[k][i])) b_ih[k][i] = 0;                     \
                if (!isfinite(b_hh[k][i])) b_hh[k][i] = 0;                     \
            }                                                                  \
        }                                                                      \
    REAL *h0 = NULL, *c0 = NULL, *mask = NULL;                                 \
    if (with_h0) {                                                             \
        h0 = xmalloc(K * B * H * sizeof(REAL));                                \
        c0 = xmalloc(K * B * H * sizeof(REAL));                                \
        for (int64_t i = 0; i < K * B * H; i++) { h0[i] = (REAL)(value(s) * 0.2); c0[i] = (REAL)(value(s) * 0.2); } \
        if (finite_in)                                                         \
            for (int64_t i = 0; i < K * B * H; i++) {                          \
                if (!isfinite(h0[i])) h0[i] = 0;                               \
                if (!isfinite(c0[i])) c0[i] = 0;                               \
            }                                                                  \
    }                                                                          \
    if (with_mask && L > 1) {                                                  \
        mask = xmalloc((L - 1) * T * B * DH * sizeof(REAL));                   \
        for (int64_t i = 0; i < (L - 1) * T * B * DH; i++) mask[i] = (REAL)(pick(s, 1) * 2); \
    }                                                                          \
    const int64_t cl = fr_cache_len(d), fw = fr_forward_work_len(d, 0);        \
    const int64_t fwt = fr_forward_work_len(d, 1), bw = fr_backward_work_len(d); \
    CHECK(cl >= K * T * B * GH && fw >= 0 && fwt >= 0 && bw >= T * B * GH,     \
          "lengths %lld %lld %lld %lld", (long long)cl, (long long)fw, (long long)fwt, (long long)bw); \
    REAL *y = xmalloc(T * B * DH * sizeof(REAL)), *hn = xmalloc(K * B * H * sizeof(REAL)); \
    REAL *cn = is_lstm ? xmalloc(K * B * H * sizeof(REAL)) : NULL;             \
    REAL *work = xmalloc(fw * sizeof(REAL));                                   \
    int st = FWD(d, x, (const REAL *const *)w_ih, (const REAL *const *)w_hh,   \
                 bias ? (const REAL *const *)b_ih : NULL, bias ? (const REAL *const *)b_hh : NULL, \
                 h0, is_lstm ? c0 : NULL, NULL, y, hn, cn, NULL, work);        \
    CHECK(st == FR_OK, "inference forward status %d", st);                     \
    for (int64_t t = 0; t < T; t++)                                            \
        for (int64_t b = 0; b < B; b++)                                        \
            for (int64_t j = 0; j < DH; j++) {                                 \
                REAL v = y[(t * B + b) * DH + j];                              \
                if (d->lengths && t >= d->lengths[b])                          \
                    CHECK(v == 0, "y[%lld,%lld] = %g past its length", (long long)t, (long long)b, (double)v); \
                else if (finite_in && d->cell != FR_CELL_RNN_RELU)             \
                    CHECK(isfinite(v) && fabs((double)v) <= 1, "y = %g", (double)v); \
            }                                                                  \
    PACKED_CHECK(d, x, w_ih, w_hh, bias ? b_ih : NULL, bias ? b_hh : NULL, h0,   \
                 is_lstm ? c0 : NULL, y, hn, cn);                              \
    fr_desc dbf = *d;  /* the same call writing y (B,T,DH): y's bits, moved */ \
    dbf.y_batch_first = 1;                                                     \
    REAL *yb = xmalloc(T * B * DH * sizeof(REAL));                             \
    st = FWD(&dbf, x, (const REAL *const *)w_ih, (const REAL *const *)w_hh,    \
             bias ? (const REAL *const *)b_ih : NULL, bias ? (const REAL *const *)b_hh : NULL, \
             h0, is_lstm ? c0 : NULL, NULL, yb, hn, cn, NULL, work);           \
    CHECK(st == FR_OK, "batch-first forward status %d", st);                   \
    for (int64_t t = 0; t < T; t++)                                            \
        for (int64_t b = 0; b < B; b++)                                        \
            CHECK(memcmp(yb + (b * T + t) * DH, y + (t * B + b) * DH,          \
                         (size_t)DH * sizeof(REAL)) == 0,                      \
                  "batch-first y[%lld,%lld] differs", (long long)b, (long long)t); \
    free(yb);                                                                  \
    n_bfirst++;                                                                \
    free(work);                                                                \
    REAL *cache = xmalloc(cl * sizeof(REAL));                                  \
    work = xmalloc(fwt * sizeof(REAL));                                        \
    st = FWD(d, x, (const REAL *const *)w_ih, (const REAL *const *)w_hh,       \
             bias ? (const REAL *const *)b_ih : NULL, bias ? (const REAL *const *)b_hh : NULL, \
             h0, is_lstm ? c0 : NULL, mask, y, hn, cn, cache, work);           \
    CHECK(st == FR_OK, "training forward status %d", st);                      \
    free(work);                                                                \
    REAL *dy = xmalloc(T * B * DH * sizeof(REAL));                             \
    REAL *dhn = xmalloc(K * B * H * sizeof(REAL)), *dcn = xmalloc(K * B * H * sizeof(REAL)); \
    for (int64_t i = 0; i < T * B * DH; i++) dy[i] = (REAL)value(s);           \
    for (int64_t i = 0; i < K * B * H; i++) { dhn[i] = (REAL)value(s); dcn[i] = (REAL)value(s); } \
    REAL *dx = xmalloc(T * B * I * sizeof(REAL));                              \
    REAL *dh0 = xmalloc(K * B * H * sizeof(REAL)), *dc0 = xmalloc(K * B * H * sizeof(REAL)); \
    work = xmalloc(bw * sizeof(REAL));                                         \
    const int with_dhn = pick(s, 1);                                           \
    st = BWD(d, x, (const REAL *const *)w_ih, (const REAL *const *)w_hh, mask, cache, dy, \
             with_dhn ? dhn : NULL, is_lstm ? dcn : NULL, dx, dh0, is_lstm ? dc0 : NULL, \
             dw_ih, dw_hh, bias ? db_ih : NULL, bias ? db_hh : NULL, work);    \
    CHECK(st == FR_OK, "backward status %d", st);                              \
    {   /* the same backward reading dy (B,T,DH), after the same training      \
         * forward: dx, dh0, dc0 and the last layer's dW_hh, the same bits */  \
        REAL *dyb = xmalloc(T * B * DH * sizeof(REAL));                        \
        REAL *keep = xmalloc((T * B * I + 2 * K * B * H + GH * H) * sizeof(REAL)); \
        for (int64_t t = 0; t < T; t++)                                        \
            for (int64_t b = 0; b < B; b++)                                    \
                memcpy(dyb + (b * T + t) * DH, dy + (t * B + b) * DH,          \
                       (size_t)DH * sizeof(REAL));                             \
        memcpy(keep, dx, (size_t)(T * B * I) * sizeof(REAL));                  \
        memcpy(keep + T * B * I, dh0, (size_t)(K * B * H) * sizeof(REAL));    \
        if (is_lstm) memcpy(keep + T * B * I + K * B * H, dc0, (size_t)(K * B * H) * sizeof(REAL)); \
        memcpy(keep + T * B * I + 2 * K * B * H, dw_hh[K - 1], (size_t)(GH * H) * sizeof(REAL)); \
        memset(dw_hh[K - 1], 0, (size_t)(GH * H) * sizeof(REAL));             \
        REAL *wf = xmalloc(fwt * sizeof(REAL));                                \
        st = FWD(d, x, (const REAL *const *)w_ih, (const REAL *const *)w_hh,   \
                 bias ? (const REAL *const *)b_ih : NULL, bias ? (const REAL *const *)b_hh : NULL, \
                 h0, is_lstm ? c0 : NULL, mask, y, hn, cn, cache, wf);         \
        CHECK(st == FR_OK, "training forward status %d", st);                  \
        free(wf);                                                              \
        st = BWD(&dbf, x, (const REAL *const *)w_ih, (const REAL *const *)w_hh, mask, cache, \
                 dyb, with_dhn ? dhn : NULL, is_lstm ? dcn : NULL, dx, dh0,      \
                 is_lstm ? dc0 : NULL, dw_ih, dw_hh, bias ? db_ih : NULL,        \
                 bias ? db_hh : NULL, work);                                   \
        CHECK(st == FR_OK, "batch-first backward status %d", st);              \
        CHECK(memcmp(keep, dx, (size_t)(T * B * I) * sizeof(REAL)) == 0         \
              && memcmp(keep + T * B * I, dh0, (size_t)(K * B * H) * sizeof(REAL)) == 0 \
              && (!is_lstm || memcmp(keep + T * B * I + K * B * H, dc0,         \
                                     (size_t)(K * B * H) * sizeof(REAL)) == 0)  \
              && memcmp(keep + T * B * I + 2 * K * B * H, dw_hh[K - 1],         \
                        (size_t)(GH * H) * sizeof(REAL)) == 0,                  \
              "the backward with a batch-first dy differs");                   \
        free(dyb); free(keep);                                                 \
        n_bfirst_bwd++;                                                        \
    }                                                                          \
    /* the model layers' GEMM on the same arrays: C (T*B, G*H) = x W^T */     \
    REAL *gc = xmalloc(T * B * GH * sizeof(REAL));                             \
    st = GEMM(d->num_threads, 'N', 'T', T * B, GH, I, 1, x, I, w_ih[0], I, 0, gc, GH); \
    CHECK(st == FR_OK, "gemm status %d", st);                                  \
    n_gemm++;                                                                  \
    free(gc); free(work); free(dx); free(dh0); free(dc0); free(dy); free(dhn); free(dcn); \
    free(cache); free(y); free(hn); free(cn); free(x); free(h0); free(c0); free(mask); \
    for (int64_t k = 0; k < K; k++) {                                          \
        free(w_ih[k]); free(w_hh[k]); free(b_ih[k]); free(b_hh[k]);            \
        free(dw_ih[k]); free(dw_hh[k]); free(db_ih[k]); free(db_hh[k]);        \
    }                                                                          \
    free(w_ih); free(w_hh); free(b_ih); free(b_hh);                            \
    free(dw_ih); free(dw_hh); free(db_ih); free(db_hh);                        \
}
DEFINE_RUN(run_f32, float, fr_forward_f32, fr_backward_f32, fr_gemm_f32, packed_check_f32)
DEFINE_RUN(run_f64, double, fr_forward_f64, fr_backward_f64, fr_gemm_f64, packed_check_f64)

static void fuzz_recurrent(src_t *s)
{
    static const int64_t huge[] = {(int64_t)1 << 31, (int64_t)1 << 40, INT64_MAX / 2, -5};
    fr_desc d = {0};
    int64_t lengths[8];
    d.cell = pick(s, 31) == 0 ? 4 + pick(s, 1) * 100 : pick(s, 3);  /* 4, 104: unknown */
    /* torch's GRU and no clip mostly (the fast loops run those), else the
     * reset-first GRU, a clip, or a value the descriptor check refuses */
    d.gru_lbr = pick(s, 7) == 0 ? (pick(s, 3) == 0 ? 2 : 0) : 1;
    d.clip = pick(s, 7) != 0 ? 0.0 : pick(s, 3) == 0 ? (pick(s, 1) ? -1.0 : NAN)
                                  : 0.25 + 4.0 * pick(s, 3);
    d.T = size(s, 6);
    d.B = size(s, 6);
    d.I_ = size(s, 5);
    d.H = size(s, 17);                     /* past 8 and 16: the AVX2 tails */
    if (pick(s, 7) == 0) {                 /* small batches over longer inputs:  */
        d.T = 6 + size(s, 30);             /* the time loop projects x itself,   */
        d.B = size(s, 8);                  /* on packed W_ih panels from 32 rows */
        d.I_ = 56 + size(s, 16);           /* and I, H >= 64 (fr_fast_proj_mode) */
        d.H = 56 + size(s, 16);
    }
    d.L = (int)size(s, 3);
    d.D = pick(s, 23) == 0 ? 3 * pick(s, 1) : 1 + pick(s, 1);        /* 0, 3: invalid */
    d.num_threads = (int)size(s, 3);
    d.y_batch_first = pick(s, 31) == 0 ? 2 : 0;   /* 2: invalid */
    d.lengths = NULL;
    if (pick(s, 15) == 0) {                /* sizes far beyond memory: checks only */
        int64_t *f[] = {&d.T, &d.B, &d.I_, &d.H};
        *f[pick(s, 3)] = huge[pick(s, 3)];
        int st = fr_check_desc(&d);
        int64_t cl = fr_cache_len(&d), fw = fr_forward_work_len(&d, 1), bw = fr_backward_work_len(&d);
        if (st != FR_OK) {
            CHECK(cl == -1 && fw == -1 && bw == -1, "lengths of a bad desc");
            CHECK(fr_forward_f32(&d, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                                 NULL, NULL, NULL) == st, "forward status");
            st == FR_ETOOBIG ? n_toobig++ : n_inval++;
        } else {  /* accepted: every length in int64 and at least the gate block */
            const int64_t G = fr_num_gates(d.cell);
            CHECK(cl > 0 && fw > 0 && bw > 0, "overflowed lengths");
            CHECK(cl / d.L / d.D / d.T / d.B >= G * d.H, "cache too short");
            n_ok++;
        }
        return;
    }
    if (d.B >= 1 && d.B <= 8 && pick(s, 1)) {
        for (int64_t b = 0; b < d.B; b++)
            lengths[b] = pick(s, 39) == 0 ? (int64_t)pick(s, 8) - 1 : 1 + pick(s, (int)(d.T > 0 ? d.T - 1 : 0));
        d.lengths = lengths;
    }
    const int st = fr_check_desc(&d);
    const int64_t cl = fr_cache_len(&d), fw = fr_forward_work_len(&d, 0), bw = fr_backward_work_len(&d);
    if (st != FR_OK) {
        CHECK(st == FR_EINVAL || st == FR_ETOOBIG, "status %d", st);
        CHECK(cl == -1 && fw == -1 && bw == -1, "lengths of a bad desc: %lld %lld %lld",
              (long long)cl, (long long)fw, (long long)bw);
        /* the kernels must refuse before reading any pointer */
        CHECK(fr_forward_f64(&d, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                             NULL, NULL, NULL) == st, "forward status");
        CHECK(fr_backward_f32(&d, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                              NULL, NULL, NULL, NULL, NULL, NULL) == st, "backward status");
        n_inval++;
        return;
    }
    fr_set_fast_path(pick(s, 1));
    const int finite_in = pick(s, 3) != 0;
    if (pick(s, 1)) run_f32(s, &d, finite_in);
    else run_f64(s, &d, finite_in);
    n_ok++;
}

/* ---- CTC ------------------------------------------------------------------ */
static void fuzz_ctc(src_t *s)
{
    const int64_t B = size(s, 4), T = size(s, 7), C = size(s, 5), S = pick(s, 5);
    const int blank = pick(s, 23) == 0 ? (int)C + pick(s, 1) - 1 - 2 * pick(s, 1) * (int)C
                                        : pick(s, (int)(C > 1 ? C - 1 : 0));
    const int zi = pick(s, 1), nt = 1 + pick(s, 2);
    const int64_t wl = fr_ctc_work_len(T, C, S, nt);
    if (T < 1 || C < 1) CHECK(wl == -1, "work length of bad sizes");
    if (wl < 0 || B < 1) {
        CHECK(fr_ctc_f64(B, T, C, S, blank, zi, nt, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                         NULL) == FR_EINVAL, "bad sizes accepted");
        n_ctc_inval++;
        return;
    }
    int64_t il[4], tl[4], *tg = xmalloc((B * S + 1) * sizeof(int64_t));
    int expect_ok = blank >= 0 && blank < C;
    for (int64_t b = 0; b < B; b++) {
        il[b] = pick(s, 39) == 0 ? (int64_t)pick(s, 8) - 1 : 1 + pick(s, (int)T - 1);
        tl[b] = pick(s, 39) == 0 ? (int64_t)pick(s, 8) - 2 : pick(s, (int)S);
        if (il[b] < 1 || il[b] > T || tl[b] < 0 || tl[b] > S) expect_ok = 0;
        for (int64_t i = 0; i < S; i++) {
            tg[b * S + i] = pick(s, 39) == 0 ? (int64_t)pick(s, 7) - 1
                            : (blank == 0 && C > 1) ? 1 + pick(s, (int)C - 2) : pick(s, (int)C - 1);
            if (i < tl[b] && (tg[b * S + i] < 0 || tg[b * S + i] >= C || tg[b * S + i] == blank))
                expect_ok = 0;
        }
    }
    const int use_il = pick(s, 1);
    if (!use_il) {  /* every length T */
        expect_ok = blank >= 0 && blank < C;
        for (int64_t b = 0; b < B; b++) {
            if (tl[b] < 0 || tl[b] > S) expect_ok = 0;
            for (int64_t i = 0; i < (tl[b] > 0 ? tl[b] : 0) && i < S; i++)
                if (tg[b * S + i] < 0 || tg[b * S + i] >= C || tg[b * S + i] == blank) expect_ok = 0;
        }
    }
    double *work = xmalloc(wl * sizeof(double)), *losses = xmalloc(B * sizeof(double));
    double *scale = xmalloc(B * sizeof(double));
    for (int64_t b = 0; b < B; b++) scale[b] = 1.0 / (double)B;
    const int f32 = pick(s, 1), want_grad = pick(s, 1);
    int st;
    if (f32) {
        float *x = xmalloc(B * T * C * sizeof(float)), *g = want_grad ? xmalloc(B * T * C * sizeof(float)) : NULL;
        for (int64_t i = 0; i < B * T * C; i++) { x[i] = (float)value(s); if (!isfinite(x[i])) x[i] = 0; }
        st = fr_ctc_f32(B, T, C, S, blank, zi, nt, x, use_il ? il : NULL, tg, tl,
                        pick(s, 1) ? scale : NULL, losses, g, work);
        free(x); free(g);
    } else {
        double *x = xmalloc(B * T * C * sizeof(double)), *g = want_grad ? xmalloc(B * T * C * sizeof(double)) : NULL;
        for (int64_t i = 0; i < B * T * C; i++) { x[i] = value(s); if (!isfinite(x[i])) x[i] = 0; }
        st = fr_ctc_f64(B, T, C, S, blank, zi, nt, x, use_il ? il : NULL, tg, tl,
                        pick(s, 1) ? scale : NULL, losses, g, work);
        free(x); free(g);
    }
    CHECK(st == (expect_ok ? FR_OK : FR_EINVAL), "ctc status %d, expected %s", st,
          expect_ok ? "OK" : "EINVAL");
    if (st == FR_OK) {
        for (int64_t b = 0; b < B; b++)
            CHECK(losses[b] >= -1e-9 && !isnan(losses[b]), "loss[%lld] = %g", (long long)b, losses[b]);
        n_ctc_ok++;
    } else {
        n_ctc_inval++;
    }
    free(tg); free(work); free(losses); free(scale);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init = 0;
    if (!init) { fr_set_blas(ref_sgemm, ref_dgemm); init = 1; }
    src_t s = {data, size, 0};
    if (pick(&s, 3) == 0) fuzz_ctc(&s);
    else fuzz_recurrent(&s);
    return 0;
}

#ifndef FR_LIBFUZZER
static uint64_t rng_state;
static uint64_t xorshift(void)
{
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return rng_state;
}

int main(int argc, char **argv)
{
    const long iters = argc > 1 ? atol(argv[1]) : 10000;
    rng_state = 0x9E3779B97F4A7C15ull ^ (uint64_t)(argc > 2 ? atoll(argv[2]) : 1);
    uint8_t buf[4096];
    for (long it = 0; it < iters; it++) {
        size_t n = (size_t)(xorshift() % sizeof buf);
        for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)xorshift();
        LLVMFuzzerTestOneInput(buf, n);
    }
    printf("fuzz_kernels: %ld inputs; recurrent: %ld ran (FR_OK), %ld refused FR_EINVAL, "
           "%ld refused FR_ETOOBIG; gemm %ld; packed weights %ld (same bits); batch-first "
           "y %ld, dy %ld (same bits); ctc: %ld ran, %ld refused; no sanitizer report\n",
           iters, n_ok, n_inval, n_toobig, n_gemm, n_packed, n_bfirst, n_bfirst_bwd, n_ctc_ok,
           n_ctc_inval);
    return 0;
}
#endif
