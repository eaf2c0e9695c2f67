/*
 * Reduced-precision inference (fastrnn_q.h): packing, the activation
 * quantization, and the loop over layers, directions and steps, run by
 * one ISA's table of loops (quant_impl.h) chosen by frq_isa.
 *
 * Threads: inside each layer and direction every thread owns a range of
 * unit blocks for the whole sequence (their panels of W_ih and W_hh stay in
 * its cache); at each step it quantizes the whole h into its own buffer,
 * runs its panels' products and its units' gate math, and meets the others
 * once. Each output is computed by the same operations whatever the
 * split, so the thread count changes no bit.
 */
#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "fast/fast.h"
#include "portable/quant_impl.h"
#include "runtime/runtime.h"

int frq_isa(int prec)
{
    if (!fr_fast_path_on()) return 0;
    const int w = fr_fast_width();
    if (w >= 16 && frq_kernels_avx512(prec) != NULL) return 16;
    return frq_kernels_avx2() != NULL ? 8 : 0;
}

static const frq_kernels *kernels(int prec)
{
    const int isa = frq_isa(prec);
    if (isa == 16) return frq_kernels_avx512(prec);
    if (isa == 8) return frq_kernels_avx2();
    return &frq_kernels_ref;
}

/* The sizes of one layer's matrices */
typedef struct {
    int64_t G, H, Hb, Hp, Np, In, Kp_ih, Kp_hh;
} dims;

static int check(const fr_desc *d, int prec)
{
    if (fr_check_desc(d) != FR_OK || (prec != FRQ_INT8 && prec != FRQ_BF16)) return FR_EINVAL;
    if (d->cell == FR_CELL_GRU && d->gru_lbr != 1) return FR_EINVAL;
    if (d->clip > 0 && !isinf(d->clip)) return FR_EINVAL;
    if (prec == FRQ_INT8 && (d->I_ > 65536 || d->D * d->H > 65536)) return FR_EINVAL;
    return FR_OK;
}

static dims dims_of(const fr_desc *d, int prec, int layer)
{
    dims m;
    m.G = fr_num_gates(d->cell);
    m.H = d->H;
    m.Hb = (d->H + FRQ_BLK - 1) / FRQ_BLK;
    m.Hp = m.Hb * FRQ_BLK;
    m.Np = m.Hb * m.G * FRQ_BLK;
    m.In = layer == 0 ? d->I_ : d->D * d->H;
    m.Kp_ih = frq_up(m.In, prec == FRQ_INT8 ? 4 : 2);
    m.Kp_hh = frq_up(m.H, prec == FRQ_INT8 ? 4 : 2);
    return m;
}

/* bytes of one packed matrix of Kp columns */
static int64_t mat_bytes(int prec, int64_t Np, int64_t Kp)
{
    if (prec == FRQ_INT8) return frq_up(Np * Kp, 64) + 3 * Np * 4;
    return frq_up(Np * Kp * 2, 64) + Np * 4;
}

int64_t frq_packed_len(const fr_desc *d, int prec, int k)
{
    if (check(d, prec) != FR_OK || k < 0 || k >= d->L * d->D) return -1;
    const dims m = dims_of(d, prec, k / d->D);
    return mat_bytes(prec, m.Np, m.Kp_ih) + mat_bytes(prec, m.Np, m.Kp_hh);
}

/* Pack one (G*H, K) matrix into P; returns the bytes written */
static int64_t pack_mat(int prec, const dims *m, int64_t K, int64_t Kp, const void *w,
                        const float *s, const float *b, unsigned char *P)
{
    const int64_t Np = m->Np, wb = prec == FRQ_INT8 ? frq_up(Np * Kp, 64)
                                                    : frq_up(Np * Kp * 2, 64);
    memset(P, 0, (size_t)mat_bytes(prec, Np, Kp));
    int32_t *rowsum = (int32_t *)(P + wb);
    float *sw = (float *)(P + wb + Np * 4);
    float *bias = prec == FRQ_INT8 ? (float *)(P + wb + 2 * Np * 4) : (float *)(P + wb);
    for (int64_t u = 0; u < m->Hb; u++)
        for (int64_t g = 0; g < m->G; g++)
            for (int i = 0; i < FRQ_BLK; i++) {
                const int64_t j = u * FRQ_BLK + i, p = u * m->G + g, o = p * FRQ_BLK + i;
                if (j >= m->H) continue;
                const int64_t r = g * m->H + j;
                bias[o] = b != NULL ? b[r] : 0.0f;
                if (prec == FRQ_INT8) {
                    const int8_t *src = (const int8_t *)w + r * K;
                    int8_t *dst = (int8_t *)P + p * Kp * FRQ_BLK;
                    int32_t sum = 0;
                    for (int64_t k = 0; k < K; k++) {
                        dst[(k >> 2) * 64 + i * 4 + (k & 3)] = src[k];
                        sum += src[k];
                    }
                    rowsum[o] = sum;
                    sw[o] = s[r];
                } else {
                    const uint16_t *src = (const uint16_t *)w + r * K;
                    uint16_t *dst = (uint16_t *)P + p * Kp * FRQ_BLK;
                    for (int64_t k = 0; k < K; k++)
                        dst[(k >> 1) * 32 + i * 2 + (k & 1)] = src[k];
                }
            }
    return mat_bytes(prec, Np, Kp);
}

int frq_pack(const fr_desc *d, int prec, int k, const void *w_ih, const float *s_ih,
             const void *w_hh, const float *s_hh, const float *b_ih, const float *b_hh,
             void *out)
{
    if (frq_packed_len(d, prec, k) < 0 || w_ih == NULL || w_hh == NULL || out == NULL
        || ((uintptr_t)out & 63) != 0 || (b_ih == NULL) != (b_hh == NULL)
        || (prec == FRQ_INT8 && (s_ih == NULL || s_hh == NULL)))
        return FR_EINVAL;
    const dims m = dims_of(d, prec, k / d->D);
    unsigned char *P = (unsigned char *)out;
    P += pack_mat(prec, &m, m.In, m.Kp_ih, w_ih, s_ih, b_ih, P);
    pack_mat(prec, &m, m.H, m.Kp_hh, w_hh, s_hh, b_hh, P);
    return FR_OK;
}

/* Pointers into one packed matrix */
typedef struct {
    const void *W;
    const int32_t *rowsum;
    const float *sw, *bias;
} mat;

static mat mat_at(int prec, int64_t Np, int64_t Kp, const unsigned char *P)
{
    mat r;
    r.W = P;
    const int64_t wb = prec == FRQ_INT8 ? frq_up(Np * Kp, 64) : frq_up(Np * Kp * 2, 64);
    r.rowsum = (const int32_t *)(P + wb);
    r.sw = (const float *)(P + wb + Np * 4);
    r.bias = prec == FRQ_INT8 ? (const float *)(P + wb + 2 * Np * 4) : (const float *)(P + wb);
    return r;
}

/* Scratch layout (bytes), each part 64-byte aligned */
typedef struct {
    int64_t xq, sx, xp, gh, hb, cb, yb, thr, per, total, Kin, Kmax;
} layout;

static layout layout_of(const fr_desc *d, int prec, int nt)
{
    layout s;
    const dims m = dims_of(d, prec, 0);
    const int64_t TB = d->T * d->B, B = d->B;
    s.Kin = frq_up(d->I_ > d->D * d->H ? d->I_ : d->D * d->H, 4);
    s.Kmax = s.Kin > m.Kp_hh ? s.Kin : m.Kp_hh;
    int64_t o = 0;
    s.xq = o; o += prec == FRQ_INT8 ? frq_up(TB * s.Kin, 64) : 0;
    s.sx = o; o += frq_up(TB * 4, 64);
    s.xp = o; o += frq_up(TB * m.Np * 4, 64);
    s.gh = o; o += frq_up(B * m.Np * 4, 64);
    s.hb = o; o += frq_up(2 * B * m.Hp * 4, 64);
    s.cb = o; o += frq_up(B * m.Hp * 4, 64);
    s.yb = o; o += d->L > 1 ? 2 * frq_up(TB * d->D * d->H * 4, 64) : 0;
    /* per thread: h quantized (B, Kp_hh), its scales, the loops' scratch */
    s.per = frq_up(B * m.Kp_hh, 64) + frq_up(B * 4, 64) + FRQ_BLK * 2 * s.Kmax + 64;
    s.per = frq_up(s.per, 64);
    s.thr = o;
    s.total = o + nt * s.per;
    return s;
}

/* Threads of a call: d->num_threads, at most one a unit block, and one
 * where the whole call has fewer than FRQ_PAR_MIN multiply-adds (a
 * streaming step of a small layer: starting the team costs more than the
 * split saves). bf16 counts 4 a multiply-add: its products are float FMAs.
 * The split changes no bit (run_dir). */
static int threads(const fr_desc *d, int prec)
{
    const int64_t Hb = (d->H + FRQ_BLK - 1) / FRQ_BLK;
    int nt = d->num_threads < 1 ? 1 : d->num_threads;
#ifndef _OPENMP
    nt = 1;
#endif
    const int64_t K = (d->I_ > d->D * d->H ? d->I_ : d->D * d->H) + d->H;
    const double work = (double)d->T * d->B * d->D * d->L * Hb * FRQ_BLK
                        * fr_num_gates(d->cell) * K * (prec == FRQ_BF16 ? 4 : 1);
    if (work < FRQ_PAR_MIN) nt = 1;
    return Hb < nt ? (int)Hb : nt;
}

int64_t frq_work_len(const fr_desc *d, int prec)
{
    if (check(d, prec) != FR_OK) return -1;
    return layout_of(d, prec, threads(d, prec)).total;
}

/* Everything one layer and direction's threads share */
typedef struct {
    const fr_desc *d;
    int prec, dir, k;
    const frq_kernels *K;
    dims m;
    const float *in;          /* (T, B, In) */
    const unsigned char *pk;  /* packed */
    const float *h0, *c0;     /* (B, H) or NULL */
    float *y;                 /* (T, B, D*H), or (B, T, D*H): */
    int64_t yts, ybs;         /* step t of sequence b at y + t*yts + b*ybs */
    float *hn, *cn;           /* (B, H) */
    unsigned char *w;
    layout s;
    step_meet *meet;          /* the threads' meeting (schedule.h) */
} job;

static int active(const fr_desc *d, int64_t t, int64_t b)
{
    return d->lengths == NULL || t < d->lengths[b];
}

static void run_dir(const job *J, int tid, int nth)
{
    const fr_desc *d = J->d;
    const dims *m = &J->m;
    const int64_t T = d->T, B = d->B, TB = T * B, H = m->H, Hp = m->Hp, Np = m->Np;
    const int64_t G = m->G;
    const int64_t u0 = m->Hb * tid / nth, u1 = m->Hb * (tid + 1) / nth;
    const int64_t p0 = u0 * G, p1 = u1 * G;
    const int int8 = J->prec == FRQ_INT8;
    const mat ih = mat_at(J->prec, Np, m->Kp_ih, J->pk);
    const mat hh = mat_at(J->prec, Np, m->Kp_hh,
                          J->pk + mat_bytes(J->prec, Np, m->Kp_ih));
    int8_t *xq = (int8_t *)(J->w + J->s.xq);
    float *sx = (float *)(J->w + J->s.sx), *xp = (float *)(J->w + J->s.xp);
    float *gh = (float *)(J->w + J->s.gh), *hb = (float *)(J->w + J->s.hb);
    float *cb = (float *)(J->w + J->s.cb);
    unsigned char *mine = J->w + J->s.thr + tid * J->s.per;
    int8_t *qh = (int8_t *)mine;
    float *sh = (float *)(mine + frq_up(B * m->Kp_hh, 64));
    void *scr = mine + frq_up(B * m->Kp_hh, 64) + frq_up(B * 4, 64);
    int my_flag = 0;

    /* the input's rows, quantized (int8) by all threads, then every
     * thread's panels of x W_ih^T + b_ih for the whole sequence */
    if (int8) {
        const int64_t r0 = TB * tid / nth, r1 = TB * (tid + 1) / nth;
        for (int64_t r = r0; r < r1; r++) {
            if (active(d, r / B, r % B))
                J->K->quant(J->in + r * m->In, m->In, xq + r * m->Kp_ih, m->Kp_ih, sx + r);
            else {
                memset(xq + r * m->Kp_ih, 0, (size_t)m->Kp_ih);
                sx[r] = 0.0f;
            }
        }
        if (nth > 1) meet(J->meet, nth, &my_flag);
        J->K->mm_i8(TB, m->Kp_ih, xq, sx, (const int8_t *)ih.W, ih.rowsum, ih.sw, ih.bias,
                    p0, p1, xp, Np, scr);
    } else {
        J->K->mm_bf16(TB, m->In, J->in, m->In, (const uint16_t *)ih.W, ih.bias, p0, p1, xp,
                      Np, scr);
    }
    /* initial states of this thread's units; lanes past H stay 0 */
    float *hc = hb, *hx = hb + B * Hp;
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = u0 * FRQ_BLK; j < u1 * FRQ_BLK; j++) {
            hc[b * Hp + j] = J->h0 != NULL && j < H ? J->h0[b * H + j] : 0.0f;
            hx[b * Hp + j] = 0.0f;
            cb[b * Hp + j] = J->c0 != NULL && j < H ? J->c0[b * H + j] : 0.0f;
        }
    if (nth > 1) meet(J->meet, nth, &my_flag);
    for (int64_t s = 0; s < T; s++) {
        const int64_t t = J->dir ? T - 1 - s : s;
        if (int8) {
            for (int64_t b = 0; b < B; b++)
                J->K->quant(hc + b * Hp, H, qh + b * m->Kp_hh, m->Kp_hh, sh + b);
            J->K->mm_i8(B, m->Kp_hh, qh, sh, (const int8_t *)hh.W, hh.rowsum, hh.sw,
                        hh.bias, p0, p1, gh, Np, scr);
        } else {
            J->K->mm_bf16(B, H, hc, Hp, (const uint16_t *)hh.W, hh.bias, p0, p1, gh, Np, scr);
        }
        for (int64_t b = 0; b < B; b++) {
            float *yr = J->y + t * J->yts + b * J->ybs + J->dir * H;
            const int64_t j0 = u0 * FRQ_BLK, j1 = u1 * FRQ_BLK < H ? u1 * FRQ_BLK : H;
            fr_y_prefetch_next(J->y + J->dir * H, J->yts, J->ybs, T, J->dir, t, b, j0, j1);
            if (active(d, t, b)) {
                J->K->cell(d->cell, u0, u1, xp + (t * B + b) * Np, gh + b * Np, hc + b * Hp,
                           hx + b * Hp, cb + b * Hp);
                if (j1 > j0) memcpy(yr + j0, hx + b * Hp + j0, (size_t)(j1 - j0) * 4);
            } else {
                memcpy(hx + b * Hp + j0, hc + b * Hp + j0, (size_t)(u1 - u0) * FRQ_BLK * 4);
                if (j1 > j0) memset(yr + j0, 0, (size_t)(j1 - j0) * 4);
            }
        }
        if (nth > 1) meet(J->meet, nth, &my_flag);
        float *tmp = hc;
        hc = hx;
        hx = tmp;
    }
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = u0 * FRQ_BLK; j < u1 * FRQ_BLK && j < H; j++) {
            J->hn[b * H + j] = hc[b * Hp + j];
            if (J->cn != NULL) J->cn[b * H + j] = cb[b * Hp + j];
        }
}

int frq_forward(const fr_desc *d, int prec, const float *x, const void *const *packed,
                const float *h0, const float *c0, float *y, float *hn, float *cn,
                void *work)
{
    if (check(d, prec) != FR_OK || x == NULL || packed == NULL || y == NULL || hn == NULL
        || work == NULL || ((uintptr_t)work & 63) != 0
        || (d->cell == FR_CELL_LSTM && cn == NULL))
        return FR_EINVAL;
    for (int k = 0; k < d->L * d->D; k++)
        if (packed[k] == NULL || ((uintptr_t)packed[k] & 63) != 0) return FR_EINVAL;
    int nt = threads(d, prec);
    fr_pick pick = {.slot = -1};   /* 1 or nt, as this shape's recent calls ran faster */
    if (nt > 1) {
        fr_desc dp = *d;
        dp.num_threads = nt;
        nt = fr_pick_begin(&pick, &dp, prec == FRQ_INT8 ? FR_PICK_INT8 : FR_PICK_BF16);
    }
    job J;
    J.d = d;
    J.prec = prec;
    J.K = kernels(prec);
    J.s = layout_of(d, prec, nt);
    J.w = (unsigned char *)work;
    const int64_t TB = d->T * d->B, BH = d->B * d->H;
    const float *in = x;
    for (int l = 0; l < d->L; l++) {
        float *out = l == d->L - 1 ? y
                   : (float *)(J.w + J.s.yb + (l & 1) * frq_up(TB * d->D * d->H * 4, 64));
        J.m = dims_of(d, prec, l);
        J.in = in;
        J.y = out;
        /* the last layer writes the caller's layout (y_batch_first) */
        const int bf = l == d->L - 1 && d->y_batch_first;
        J.yts = bf ? d->D * d->H : d->B * d->D * d->H;
        J.ybs = bf ? d->T * d->D * d->H : d->D * d->H;
        for (int dir = 0; dir < d->D; dir++) {
            const int k = l * d->D + dir;
            J.dir = dir;
            J.k = k;
            J.pk = (const unsigned char *)packed[k];
            J.h0 = h0 != NULL ? h0 + k * BH : NULL;
            J.c0 = d->cell == FR_CELL_LSTM && c0 != NULL ? c0 + k * BH : NULL;
            J.hn = hn + k * BH;
            J.cn = d->cell == FR_CELL_LSTM ? cn + k * BH : NULL;
            step_meet mt = {0};
            J.meet = &mt;
            if (nt == 1) {
                run_dir(&J, 0, 1);
                continue;
            }
            /* the threads that meet every step, for meet()'s spin limit */
            fr_fast_meeting_threads(nt);
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (fr_omp_going(nt, 1))
            run_dir(&J, omp_get_thread_num(), omp_get_num_threads());
#else
            run_dir(&J, 0, 1);
#endif
            fr_fast_meeting_threads(-nt);
        }
        in = out;
    }
    fr_pick_end(&pick);
    return FR_OK;
}
