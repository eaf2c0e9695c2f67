/*
 * The fast float32 loops (fast.h): which build of the kernels runs, one
 * choice for the whole process. kernels_avx512.c (16 floats a vector)
 * where the CPU has AVX-512 F/VL/DQ, kernels_avx2.c (8 floats) where it
 * has AVX2 and FMA; on other CPUs and targets fr_fast_available() is 0 and
 * the portable path (portable/rnn_impl.h) runs. Both builds give the same
 * bits (see the head of isa.h); fr_set_fast_width chooses between them
 * (tests, before/after timings).
 */
#include "fast/fast.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

/* Widest vector this CPU runs the loops at: 16, 8, or 0 (checked once). */
static int widest(void)
{
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        int w = 0;
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
            w = 8;
            if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
                && __builtin_cpu_supports("avx512dq"))
                w = 16;
        }
        cached = w;
    }
    return cached;
}

/* The width in use; -1 until first asked (then the widest). */
static int fr_width = -1;

static int width(void)
{
    if (fr_width < 0) fr_width = widest();
    return fr_width;
}

int fr_fast_available(void) { return widest() > 0; }

int fr_set_fast_width(int w)
{
    const int top = widest();
    fr_width = w >= 16 ? top : (w >= 8 && top >= 8 ? 8 : top);
    return fr_width;
}

void fr_fast_forward_f32(const fr_desc *d, int dir, const float *R, const float *bhn,
                         float *Xp, float *Gh, int h0_zero,
                         float *h_a, float *h_b, float *c_buf,
                         float *hs, float *cs, float *gates,
                         float *y, int64_t yts, int64_t ybs, float *hn, float *cn, float *Wp,
                         const float *x, int64_t In, const float *W, const float *pk)
{
    if (width() == 16)
        fr_fast_forward_f32_avx512(d, dir, R, bhn, Xp, Gh, h0_zero, h_a, h_b, c_buf, hs, cs,
                                   gates, y, yts, ybs, hn, cn, Wp, x, In, W, pk);
    else
        fr_fast_forward_f32_avx2(d, dir, R, bhn, Xp, Gh, h0_zero, h_a, h_b, c_buf, hs, cs,
                                 gates, y, yts, ybs, hn, cn, Wp, x, In, W, pk);
}

int fr_fast_width(void) { return width(); }

void fr_fast_pack_f32(const fr_desc *d, const float *R, const float *W, int64_t In, float *P)
{
    if (width() == 16)
        fr_fast_pack_f32_avx512(d, R, W, In, P);
    else if (width() == 8)
        fr_fast_pack_f32_avx2(d, R, W, In, P);
}

float *fr_fast_backward_f32(const fr_desc *d, int dir, const float *R,
                            const float *gates, const float *hs, const float *cs,
                            const float *dy, int64_t dts, int64_t dbs,
                            float *dGx, float *dGh, float *dh, float *dhp, float *dc,
                            float *Rp)
{
    if (width() == 16)
        return fr_fast_backward_f32_avx512(d, dir, R, gates, hs, cs, dy, dts, dbs, dGx, dGh,
                                           dh, dhp, dc, Rp);
    return fr_fast_backward_f32_avx2(d, dir, R, gates, hs, cs, dy, dts, dbs, dGx, dGh, dh,
                                     dhp, dc, Rp);
}

int fr_fast_sgemm(int nt, char ta, char tb, int64_t M, int64_t N, int64_t K,
                  const float *A, int64_t lda, const float *B, int64_t ldb,
                  int beta, float *C, int64_t ldc, const float *bias)
{
    if (width() == 16)
        return fr_fast_sgemm_avx512(nt, ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc, bias);
    return fr_fast_sgemm_avx2(nt, ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc, bias);
}

void fr_fast_attn_rows_f32(int64_t A, float *z, const float *v, int64_t m0, int64_t m1,
                           float *s)
{
    if (width() == 16)
        fr_fast_attn_rows_f32_avx512(A, z, v, m0, m1, s);
    else
        fr_fast_attn_rows_f32_avx2(A, z, v, m0, m1, s);
}
void fr_fast_cell_step_f32(int cell, int64_t H, float *pre, const float *gh, const float *h,
                           const float *c, float *h_out, float *c_out, float *cache)
{
    if (width() == 16)
        fr_fast_cell_step_f32_avx512(cell, H, pre, gh, h, c, h_out, c_out, cache);
    else
        fr_fast_cell_step_f32_avx2(cell, H, pre, gh, h, c, h_out, c_out, cache);
}

void fr_fast_cell_step_backward_f32(int cell, int64_t H, const float *acts, const float *h,
                                    const float *c, const float *c_out, const float *dh,
                                    const float *dy, float *dc, float *dgx, float *dgh,
                                    float *dhp)
{
    if (width() == 16)
        fr_fast_cell_step_backward_f32_avx512(cell, H, acts, h, c, c_out, dh, dy, dc, dgx,
                                              dgh, dhp);
    else
        fr_fast_cell_step_backward_f32_avx2(cell, H, acts, h, c, c_out, dh, dy, dc, dgx, dgh,
                                            dhp);
}
#else /* not x86-64 with GCC/Clang: the portable path is always used */
void fr_fast_cell_step_f32(int cell, int64_t H, float *pre, const float *gh, const float *h,
                           const float *c, float *h_out, float *c_out, float *cache)
{
    (void)cell; (void)H; (void)pre; (void)gh; (void)h; (void)c; (void)h_out; (void)c_out;
    (void)cache;
}

void fr_fast_cell_step_backward_f32(int cell, int64_t H, const float *acts, const float *h,
                                    const float *c, const float *c_out, const float *dh,
                                    const float *dy, float *dc, float *dgx, float *dgh,
                                    float *dhp)
{
    (void)cell; (void)H; (void)acts; (void)h; (void)c; (void)c_out; (void)dh; (void)dy;
    (void)dc; (void)dgx; (void)dgh; (void)dhp;
}

void fr_fast_attn_rows_f32(int64_t A, float *z, const float *v, int64_t m0, int64_t m1,
                           float *s)
{
    (void)A; (void)z; (void)v; (void)m0; (void)m1; (void)s;
}

int fr_fast_available(void) { return 0; }

int fr_set_fast_width(int w) { (void)w; return 0; }

int fr_fast_width(void) { return 0; }

void fr_fast_pack_f32(const fr_desc *d, const float *R, const float *W, int64_t In, float *P)
{
    (void)d; (void)R; (void)W; (void)In; (void)P;
}

int fr_fast_sgemm(int nt, char ta, char tb, int64_t M, int64_t N, int64_t K,
                  const float *A, int64_t lda, const float *B, int64_t ldb,
                  int beta, float *C, int64_t ldc, const float *bias)
{
    (void)nt; (void)ta; (void)tb; (void)M; (void)N; (void)K; (void)A; (void)lda; (void)B;
    (void)ldb; (void)beta; (void)C; (void)ldc; (void)bias;
    return -1;
}

void fr_fast_forward_f32(const fr_desc *d, int dir, const float *R, const float *bhn,
                         float *Xp, float *Gh, int h0_zero,
                         float *h_a, float *h_b, float *c_buf,
                         float *hs, float *cs, float *gates,
                         float *y, int64_t yts, int64_t ybs, float *hn, float *cn, float *Wp,
                         const float *x, int64_t In, const float *W, const float *pk)
{
    (void)pk; (void)x; (void)In; (void)W; (void)Wp; (void)d; (void)dir; (void)R; (void)bhn; (void)Xp; (void)Gh; (void)h0_zero;
    (void)h_a; (void)h_b; (void)c_buf; (void)hs; (void)cs; (void)gates;
    (void)y; (void)yts; (void)ybs; (void)hn; (void)cn;
}

float *fr_fast_backward_f32(const fr_desc *d, int dir, const float *R,
                            const float *gates, const float *hs, const float *cs,
                            const float *dy, int64_t dts, int64_t dbs,
                            float *dGx, float *dGh, float *dh, float *dhp, float *dc,
                            float *Rp)
{
    (void)Rp; (void)d; (void)dir; (void)R; (void)gates; (void)hs; (void)cs; (void)dy;
    (void)dts; (void)dbs; (void)dGx; (void)dGh; (void)dhp; (void)dc;
    return dh;
}

#endif
