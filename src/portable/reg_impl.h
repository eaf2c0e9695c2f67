/*
 * Body of the regularized kernels (fastrnn_reg.h), included twice by reg.c:
 * REAL=float (FN suffix _f32) and REAL=double (_f64).
 * Needs: REAL, FN(name), EXP, TANH, SQRT, PGEMM (the chunked BLAS GEMM of
 * that type, gemm.h, without the fast path), PGEMM_MODE (the same with its
 * FR_GEMM_* mode first: the forward's GEMMs are fixed-order ones when
 * batch-invariant), GEMM_PTR (the BLAS routine,
 * runtime.h). Equations, shapes and buffer layouts: see fastrnn_reg.h.
 *
 * Forward (haste's plan): Xp = bias + x W_ih^T as one GEMM over all T*B rows
 * (LNLSTM: Xp = LN(x W_ih^T), normalized row by row), then per step one
 * recurrent GEMM on hd = h*r and one fused pass over the batch rows (each
 * OpenMP thread owns whole rows: gates, layer norms, new state, zoneout,
 * output, and the next step's hd).
 * Backward walks the steps in the opposite order, keeping the gradients of
 * the pre-activations for all steps; bias, gamma and beta gradients are
 * column sums in a fixed order after the loop, and dW_ih, dW_hh and dx are
 * GEMMs over all T*B rows.
 */

static inline REAL FN(rr_sigmoid)(REAL v) { return (REAL)1 / ((REAL)1 + EXP(-v)); }

/* Is step t of sequence b inside its length? */
#define ACTIVE(t, b) (lengths == NULL || (t) < lengths[b])

/* mean and rstd = 1/sqrt(var + eps) of a row of n values (biased variance,
 * two passes in a fixed order). */
static inline void FN(rr_ln_stats)(const REAL *a, int64_t n, REAL *mean, REAL *rstd)
{
    REAL s = 0;
    for (int64_t j = 0; j < n; j++) s += a[j];
    const REAL m = s / (REAL)n;
    REAL v = 0;
    for (int64_t j = 0; j < n; j++) {
        const REAL e = a[j] - m;
        v += e * e;
    }
    *mean = m;
    *rstd = (REAL)1 / SQRT(v / (REAL)n + (REAL)FRR_LN_EPS);
}

/* Gradient through a layer norm n = (a - mean)*rstd whose output enters as
 * n*scale: with dn = g*scale,
 *   da = rstd * (dn - mean(dn) - n * mean(dn*n)).
 * da may be g itself (each element is read before it is written). */
static inline void FN(rr_ln_back)(const REAL *g, const REAL *scale, const REAL *nrm,
                                  REAL rstd, int64_t n, REAL *da)
{
    REAL s1 = 0, s2 = 0;
    for (int64_t j = 0; j < n; j++) {
        const REAL dn = g[j] * scale[j];
        s1 += dn;
        s2 += dn * nrm[j];
    }
    s1 /= (REAL)n;
    s2 /= (REAL)n;
    for (int64_t j = 0; j < n; j++) da[j] = rstd * (g[j] * scale[j] - s1 - nrm[j] * s2);
}

/* Every row of X (rows, cols) = row. */
static void FN(rr_fill_rows)(REAL *X, int64_t rows, int64_t cols, const REAL *row, int nt)
{
    int64_t r;
#pragma omp parallel for num_threads(nt) if (fr_omp_going(nt, rows * cols >= FRR_PAR_MIN)) schedule(static)
    for (r = 0; r < rows; r++) memcpy(X + r * cols, row, (size_t)cols * sizeof(REAL));
}

/* out[c] += sum_r A[r,c] * M[r,c] (M NULL: 1). Each thread owns a block of
 * columns and walks the rows in order, so the sums do not depend on the
 * thread count. */
static void FN(rr_colsum)(const REAL *A, const REAL *M, int64_t rows, int64_t cols,
                          REAL *out, int nt)
{
    const int64_t nblk = (cols + FR_COLSUM_COLS - 1) / FR_COLSUM_COLS;
    int64_t blk;
#pragma omp parallel for num_threads(nt) if (fr_omp_going(nt, rows * cols >= FRR_PAR_MIN)) schedule(static)
    for (blk = 0; blk < nblk; blk++) {
        const int64_t c0 = blk * FR_COLSUM_COLS;
        const int64_t c1 = c0 + FR_COLSUM_COLS < cols ? c0 + FR_COLSUM_COLS : cols;
        REAL acc[FR_COLSUM_COLS];
        for (int64_t c = c0; c < c1; c++) acc[c - c0] = 0;
        for (int64_t r = 0; r < rows; r++) {
            const REAL *a = A + r * cols;
            if (M) {
                const REAL *m = M + r * cols;
                for (int64_t c = c0; c < c1; c++) acc[c - c0] += a[c] * m[c];
            } else {
                for (int64_t c = c0; c < c1; c++) acc[c - c0] += a[c];
            }
        }
        for (int64_t c = c0; c < c1; c++) out[c] += acc[c - c0];
    }
}

/* ---- forward ------------------------------------------------------------ */

static void FN(rr_forward)(const frr_desc *d, const REAL *x, const REAL *const *w,
                           const REAL *h0, const REAL *c0,
                           const REAL *zmask, const REAL *rmask,
                           REAL *y, int64_t ldy, REAL *hn, REAL *cn,
                           REAL *cache, REAL *work, int pinned)
{
    const int cell = d->cell, nt = d->num_threads, rev = d->reverse;
    const int64_t T = d->T, B = d->B, H = d->H, I = d->I_;
    const int64_t *lengths = d->lengths;
    const int64_t GX = (int64_t)frr_num_gates(cell) * H, BH = B * H, TB = T * B;
    const int training = cache != NULL;
    const int has_c = cell != FRR_GRU;
    const REAL *W = w[0], *R = w[1];
    const REAL *bW = w[2], *bR = cell == FRR_LNLSTM ? NULL : w[3];
    const REAL *gih = NULL, *ghh = NULL, *gc = NULL, *bc = NULL;
    if (cell == FRR_LNLSTM) { gih = w[3]; ghh = w[4]; gc = w[5]; bc = w[6]; }
    /* inference zoneout mixes with p; training uses the mask (or nothing) */
    const int zinf = !training && d->zoneout > 0;
    /* batch-invariant: every GEMM in a fixed order per output (fr_igemm) */
    const int gm = d->batch_invariant ? FR_GEMM_FIXED : FR_GEMM_BLAS;
#define FGEMM(...) PGEMM_MODE(gm, __VA_ARGS__)
    const REAL pz = (REAL)d->zoneout;

    /* cache (training) */
    REAL *gates = NULL, *nx = NULL, *nh = NULL, *nc = NULL, *rs = NULL, *hs = NULL, *cs = NULL;
    if (training) {
        REAL *p = cache + TB * 4 * H;
        gates = cache;
        if (cell == FRR_LNLSTM) {
            nx = p; nh = nx + TB * GX; nc = nh + TB * GX; rs = nc + TB * H;
            p = rs + TB * 3;
        }
        hs = p;
        cs = has_c ? hs + (T + 1) * BH : NULL;
    }
    /* scratch */
    const int xp_in_work = !training || cell == FRR_GRU;
    REAL *Xp = xp_in_work ? work : (cell == FRR_LSTM ? gates : nx);
    REAL *Gh = work + (xp_in_work ? TB * GX : 0);   /* (B,GX) */
    REAL *hbuf = Gh + B * GX, *cbuf = hbuf + BH, *hd = cbuf + BH;

    /* input projection over all T*B rows */
    if (cell == FRR_LNLSTM) {
        FGEMM(nt, pinned, 'N', 'T', TB, GX, I, 1, x, I, W, I, 0, Xp, GX);
        int64_t r;
#pragma omp parallel for num_threads(nt) if (fr_omp_going(nt, TB * GX >= FRR_PAR_MIN)) schedule(static)
        for (r = 0; r < TB; r++) { /* nx = LN(x W_ih^T), in place */
            REAL *row = Xp + r * GX, m, s;
            FN(rr_ln_stats)(row, GX, &m, &s);
            for (int64_t j = 0; j < GX; j++) row[j] = (row[j] - m) * s;
            if (rs) rs[r * 3] = s;
        }
    } else if (bW != NULL || bR != NULL) {
        /* Xp = (b_ih + b_hh) + x W_ih^T; GRU keeps b_hn inside the reset product */
        for (int64_t j = 0; j < GX; j++) {
            REAL v = bW ? bW[j] : 0;
            if (bR && !(cell == FRR_GRU && j >= 2 * H)) v += bR[j];
            Gh[j] = v;
        }
        FN(rr_fill_rows)(Xp, TB, GX, Gh, nt);
        FGEMM(nt, pinned, 'N', 'T', TB, GX, I, 1, x, I, W, I, 1, Xp, GX);
    } else {
        FGEMM(nt, pinned, 'N', 'T', TB, GX, I, 1, x, I, W, I, 0, Xp, GX);
    }
    const REAL *bhn = (cell == FRR_GRU && bR) ? bR + 2 * H : NULL;

    /* initial state */
    REAL *h_init = training ? hs + (rev ? T * BH : 0) : hbuf;
    REAL *c_init = has_c ? (training ? cs + (rev ? T * BH : 0) : cbuf) : NULL;
    if (h0) memcpy(h_init, h0, (size_t)BH * sizeof(REAL));
    else memset(h_init, 0, (size_t)BH * sizeof(REAL));
    if (c_init) {
        if (c0) memcpy(c_init, c0, (size_t)BH * sizeof(REAL));
        else memset(c_init, 0, (size_t)BH * sizeof(REAL));
    }
    if (rmask)
        for (int64_t i = 0; i < BH; i++) hd[i] = h_init[i] * rmask[i];

    for (int64_t s = 0; s < T; s++) {
        const int64_t t = rev ? T - 1 - s : s;
        const REAL *hp, *cp = NULL;
        REAL *hx, *cx = NULL;
        if (training) {
            const int64_t ip = rev ? t + 1 : t, ix = rev ? t : t + 1;
            hp = hs + ip * BH; hx = hs + ix * BH;
            if (has_c) { cp = cs + ip * BH; cx = cs + ix * BH; }
        } else { /* in place: each element is read before it is written */
            hp = hx = hbuf;
            if (has_c) cp = cx = cbuf;
        }
        const REAL *hin = rmask ? hd : hp;  /* what W_hh multiplies */
        REAL *xp = Xp + t * B * GX;
        /* recurrent product; skipped when the state is known to be zero */
        const int hzero = (s == 0 && h0 == NULL);
        if (cell == FRR_LSTM) {
            if (!hzero) FGEMM(nt, pinned, 'N', 'T', B, GX, H, 1, hin, H, R, H, 1, xp, GX);
        } else if (hzero) {
            memset(Gh, 0, (size_t)(B * GX) * sizeof(REAL));
        } else {
            FGEMM(nt, pinned, 'N', 'T', B, GX, H, 1, hin, H, R, H, 0, Gh, GX);
        }
        REAL *yt = y + t * B * ldy;
        const REAL *zt = zmask ? zmask + t * BH : NULL;
        int64_t b;
#pragma omp parallel for num_threads(nt) if (fr_omp_going(nt, B * GX >= FRR_PAR_MIN)) schedule(static)
        for (b = 0; b < B; b++) {
            const REAL *hpb = hp + b * H;
            REAL *hxb = hx + b * H, *yb = yt + b * ldy;
            const int64_t row = t * B + b;
            if (!ACTIVE(t, b)) { /* state carried over, output 0, cache rows 0 */
                if (hxb != hpb) memcpy(hxb, hpb, (size_t)H * sizeof(REAL));
                if (has_c && cx != cp)
                    memcpy(cx + b * H, cp + b * H, (size_t)H * sizeof(REAL));
                memset(yb, 0, (size_t)H * sizeof(REAL));
                if (training) {
                    memset(gates + row * 4 * H, 0, (size_t)(4 * H) * sizeof(REAL));
                    if (cell == FRR_LNLSTM) {
                        memset(nx + row * GX, 0, (size_t)GX * sizeof(REAL));
                        memset(nh + row * GX, 0, (size_t)GX * sizeof(REAL));
                        memset(nc + row * H, 0, (size_t)H * sizeof(REAL));
                        memset(rs + row * 3, 0, 3 * sizeof(REAL));
                    }
                }
                continue; /* hd row unchanged too */
            }
            const REAL *zb = zt ? zt + b * H : NULL;
            const REAL *rb = rmask ? rmask + b * H : NULL;
            REAL *hdb = hd + b * H;
            /* zoneout of the candidate hh against the old state, then output */
#define ZONE_OUT(j, hh)                                                         \
            do {                                                                \
                REAL h_ = (hh);                                                 \
                if (zb) h_ = zb[j] * hpb[j] + (1 - zb[j]) * h_;                 \
                else if (zinf) h_ = pz * hpb[j] + (1 - pz) * h_;                \
                hxb[j] = h_; yb[j] = h_;                                        \
                if (rb) hdb[j] = h_ * rb[j];                                    \
            } while (0)
            if (cell == FRR_LSTM) {
                const REAL *cpb = cp + b * H;
                REAL *cxb = cx + b * H, *pre = xp + b * GX;
                for (int64_t j = 0; j < H; j++) {
                    /* c' = f*c + i*g ; h~ = o*tanh(c') */
                    const REAL ig = FN(rr_sigmoid)(pre[j]);
                    const REAL fg = FN(rr_sigmoid)(pre[H + j]);
                    const REAL gg = TANH(pre[2 * H + j]);
                    const REAL og = FN(rr_sigmoid)(pre[3 * H + j]);
                    const REAL c = fg * cpb[j] + ig * gg;
                    const REAL hh = og * TANH(c);
                    if (training) { /* pre is the gate cache row */
                        pre[j] = ig; pre[H + j] = fg; pre[2 * H + j] = gg; pre[3 * H + j] = og;
                    }
                    cxb[j] = c;
                    ZONE_OUT(j, hh);
                }
            } else if (cell == FRR_GRU) {
                const REAL *pre = xp + b * GX, *gh = Gh + b * GX;
                REAL *g = training ? gates + row * 4 * H : NULL;
                for (int64_t j = 0; j < H; j++) {
                    /* r = s(xr + hr), z = s(xz + hz), n = tanh(xn + r*(W_hn hd + b_hn)),
                     * h~ = (1-z)*n + z*h */
                    const REAL r = FN(rr_sigmoid)(pre[j] + gh[j]);
                    const REAL z = FN(rr_sigmoid)(pre[H + j] + gh[H + j]);
                    const REAL hl = gh[2 * H + j] + (bhn ? bhn[j] : 0);
                    const REAL n = TANH(pre[2 * H + j] + r * hl);
                    const REAL hh = (1 - z) * n + z * hpb[j];
                    if (g) { g[j] = r; g[H + j] = z; g[2 * H + j] = n; g[3 * H + j] = hl; }
                    ZONE_OUT(j, hh);
                }
            } else { /* FRR_LNLSTM */
                REAL *a = Gh + b * GX;                 /* hd W_hh^T */
                const REAL *nxr = xp + b * GX;         /* LN(x W_ih^T) */
                REAL *g = training ? gates + row * GX : a; /* activations */
                REAL *nhr = training ? nh + row * GX : NULL;
                REAL mh, sh, mc, sc;
                FN(rr_ln_stats)(a, GX, &mh, &sh);
                for (int64_t j = 0; j < GX; j++) {
                    /* gate = act(nx*gamma_ih + nh*gamma_hh + b) */
                    const REAL nhv = (a[j] - mh) * sh;
                    if (nhr) nhr[j] = nhv;
                    const REAL v = nxr[j] * gih[j] + nhv * ghh[j] + (bW ? bW[j] : 0);
                    g[j] = (j >= 2 * H && j < 3 * H) ? TANH(v) : FN(rr_sigmoid)(v);
                }
                const REAL *cpb = cp + b * H;
                REAL *cxb = cx + b * H;
                for (int64_t j = 0; j < H; j++) /* c' = f*c + i*g */
                    cxb[j] = g[H + j] * cpb[j] + g[j] * g[2 * H + j];
                FN(rr_ln_stats)(cxb, H, &mc, &sc);
                REAL *ncr = training ? nc + row * H : NULL;
                for (int64_t j = 0; j < H; j++) {
                    /* h~ = o * tanh(LN(c')*gamma_c + beta_c) */
                    const REAL ncv = (cxb[j] - mc) * sc;
                    if (ncr) ncr[j] = ncv;
                    const REAL hh = g[3 * H + j] * TANH(ncv * gc[j] + bc[j]);
                    ZONE_OUT(j, hh);
                }
                if (training) { rs[row * 3 + 1] = sh; rs[row * 3 + 2] = sc; }
            }
#undef ZONE_OUT
        }
    }
    const REAL *h_last = training ? hs + (rev ? 0 : T * BH) : hbuf;
    memcpy(hn, h_last, (size_t)BH * sizeof(REAL));
    if (has_c) {
        const REAL *c_last = training ? cs + (rev ? 0 : T * BH) : cbuf;
        memcpy(cn, c_last, (size_t)BH * sizeof(REAL));
    }
#undef FGEMM
}

/* ---- backward ----------------------------------------------------------- */

static void FN(rr_backward)(const frr_desc *d, const REAL *x, const REAL *const *w,
                            const REAL *zmask, const REAL *rmask, const REAL *cache,
                            const REAL *dy, int64_t ldy, const REAL *dhn, const REAL *dcn,
                            REAL *dx, int dx_acc, REAL *dh0, REAL *dc0,
                            REAL *const *dw, REAL *work, int pinned)
{
    const int cell = d->cell, nt = d->num_threads, rev = d->reverse;
    const int64_t T = d->T, B = d->B, H = d->H, I = d->I_;
    const int64_t *lengths = d->lengths;
    const int64_t GX = (int64_t)frr_num_gates(cell) * H, BH = B * H, TB = T * B;
    const int has_c = cell != FRR_GRU;
    const REAL *W = w[0], *R = w[1];
    const REAL *gih = NULL, *ghh = NULL, *gc = NULL;
    if (cell == FRR_LNLSTM) { gih = w[3]; ghh = w[4]; gc = w[5]; }

    /* cache */
    const REAL *gates = cache, *nx = NULL, *nh = NULL, *nc = NULL, *rs = NULL;
    const REAL *p = cache + TB * 4 * H;
    if (cell == FRR_LNLSTM) {
        nx = p; nh = nx + TB * GX; nc = nh + TB * GX; rs = nc + TB * H;
        p = rs + TB * 3;
    }
    const REAL *hs = p, *cs = has_c ? hs + (T + 1) * BH : NULL;

    /* scratch */
    REAL *dG = work;                                        /* (T,B,GX) input side */
    REAL *dG2 = cell == FRR_LSTM ? dG : dG + TB * GX;        /* recurrent side */
    REAL *q = (cell == FRR_LSTM ? dG : dG2) + TB * GX;
    REAL *dU = NULL;                                        /* LNLSTM (T,B,H) */
    if (cell == FRR_LNLSTM) { dU = q; q += TB * H; }
    REAL *hdall = q;                                        /* (T,B,H) */
    REAL *dh = hdall + TB * H, *dhd = dh + BH, *dc = dhd + BH, *tmp = dc + BH;

    /* dhd holds the direct part of dL/dh_{t-1}; tmp the product dG2_t W_hh,
     * which reaches h_{t-1} through the dropout mask: dh = dhd + r*tmp. */
    if (dhn) memcpy(dhd, dhn, (size_t)BH * sizeof(REAL));
    else memset(dhd, 0, (size_t)BH * sizeof(REAL));
    memset(tmp, 0, (size_t)BH * sizeof(REAL));
    if (has_c) {
        if (dcn) memcpy(dc, dcn, (size_t)BH * sizeof(REAL));
        else memset(dc, 0, (size_t)BH * sizeof(REAL));
    }

    for (int64_t s = T - 1; s >= 0; s--) {
        const int64_t t = rev ? T - 1 - s : s;
        const int64_t ip = rev ? t + 1 : t;
        const REAL *hp = hs + ip * BH;
        const REAL *cp = has_c ? cs + ip * BH : NULL;
        const REAL *dyt = dy + t * B * ldy;
        const REAL *zt = zmask ? zmask + t * BH : NULL;
        REAL *dgt = dG + t * B * GX, *dg2t = dG2 + t * B * GX;
        int64_t b;
#pragma omp parallel for num_threads(nt) if (fr_omp_going(nt, B * GX >= FRR_PAR_MIN)) schedule(static)
        for (b = 0; b < B; b++) {
            const int64_t row = t * B + b;
            REAL *dhb = dh + b * H, *dhdb = dhd + b * H;
            const REAL *tb = tmp + b * H, *rb = rmask ? rmask + b * H : NULL;
            for (int64_t j = 0; j < H; j++) dhb[j] = dhdb[j] + (rb ? rb[j] * tb[j] : tb[j]);
            REAL *dgb = dgt + b * GX, *dg2b = dg2t + b * GX;
            if (!ACTIVE(t, b)) { /* the gradient passes the carried state unchanged */
                memcpy(dhdb, dhb, (size_t)H * sizeof(REAL));
                memset(dgb, 0, (size_t)GX * sizeof(REAL));
                if (dg2b != dgb) memset(dg2b, 0, (size_t)GX * sizeof(REAL));
                if (dU) memset(dU + row * H, 0, (size_t)H * sizeof(REAL));
                continue; /* dc row unchanged too */
            }
            const REAL *dyb = dyt + b * ldy, *zb = zt ? zt + b * H : NULL;
            if (cell == FRR_LSTM) {
                const REAL *g = gates + row * 4 * H, *cpb = cp + b * H;
                const REAL *cxb = cs + (rev ? t : t + 1) * BH + b * H;
                REAL *dcb = dc + b * H;
                for (int64_t j = 0; j < H; j++) {
                    const REAL ig = g[j], fg = g[H + j], gg = g[2 * H + j], og = g[3 * H + j];
                    const REAL gh = dhb[j] + dyb[j];
                    const REAL m = zb ? zb[j] : 0;
                    const REAL dhh = (1 - m) * gh;   /* through h~ */
                    const REAL tc = TANH(cxb[j]);
                    const REAL dct = dcb[j] + dhh * og * (1 - tc * tc);
                    dgb[j] = dct * gg * ig * (1 - ig);
                    dgb[H + j] = dct * cpb[j] * fg * (1 - fg);
                    dgb[2 * H + j] = dct * ig * (1 - gg * gg);
                    dgb[3 * H + j] = dhh * tc * og * (1 - og);
                    dcb[j] = dct * fg;
                    dhdb[j] = m * gh;                /* zoned-out path */
                }
            } else if (cell == FRR_GRU) {
                const REAL *g = gates + row * 4 * H, *hpb = hp + b * H;
                for (int64_t j = 0; j < H; j++) {
                    const REAL r = g[j], z = g[H + j], n = g[2 * H + j], hl = g[3 * H + j];
                    const REAL gh = dhb[j] + dyb[j];
                    const REAL m = zb ? zb[j] : 0;
                    const REAL dhh = (1 - m) * gh;
                    const REAL dnp = dhh * (1 - z) * (1 - n * n);
                    const REAL dzp = dhh * (hpb[j] - n) * z * (1 - z);
                    const REAL drp = dnp * hl * r * (1 - r);
                    dgb[j] = drp; dgb[H + j] = dzp; dgb[2 * H + j] = dnp;
                    dg2b[j] = drp; dg2b[H + j] = dzp; dg2b[2 * H + j] = dnp * r;
                    dhdb[j] = m * gh + dhh * z;      /* zoned-out path + z*h path */
                }
            } else { /* FRR_LNLSTM */
                const REAL *g = gates + row * GX, *cpb = cp + b * H;
                const REAL *nhr = nh + row * GX, *ncr = nc + row * H;
                const REAL sh = rs[row * 3 + 1], sc = rs[row * 3 + 2];
                const REAL *bc = w[6];
                REAL *dub = dU + row * H, *dcb = dc + b * H;
                REAL s1 = 0, s2 = 0;
                for (int64_t j = 0; j < H; j++) {
                    /* u = LN(c')*gamma_c + beta_c, h~ = o*tanh(u) */
                    const REAL og = g[3 * H + j];
                    const REAL gh = dhb[j] + dyb[j];
                    const REAL m = zb ? zb[j] : 0;
                    const REAL dhh = (1 - m) * gh;
                    const REAL tu = TANH(ncr[j] * gc[j] + bc[j]);
                    dgb[3 * H + j] = dhh * tu * og * (1 - og);
                    const REAL du = dhh * og * (1 - tu * tu);
                    dub[j] = du;
                    const REAL dn = du * gc[j];
                    s1 += dn;
                    s2 += dn * ncr[j];
                    dhdb[j] = m * gh;
                }
                s1 /= (REAL)H;
                s2 /= (REAL)H;
                for (int64_t j = 0; j < H; j++) {
                    const REAL ig = g[j], fg = g[H + j], gg = g[2 * H + j];
                    /* dc' = dc (from step t+1) + gradient through LN(c') */
                    const REAL dct = dcb[j] + sc * (dub[j] * gc[j] - s1 - ncr[j] * s2);
                    dgb[j] = dct * gg * ig * (1 - ig);
                    dgb[H + j] = dct * cpb[j] * fg * (1 - fg);
                    dgb[2 * H + j] = dct * ig * (1 - gg * gg);
                    dcb[j] = dct * fg;
                }
                /* the recurrent projection's gradient through its layer norm */
                FN(rr_ln_back)(dgb, ghh, nhr, sh, GX, dg2b);
            }
        }
        /* tmp = dG2_t W_hh: gradient of hd, reaches h_{t-1} at the next pass */
        PGEMM(nt, pinned, 'N', 'N', B, H, GX, 1, dg2t, GX, R, H, 0, tmp, H);
    }
    {
        const REAL *rm = rmask;
        for (int64_t i = 0; i < BH; i++) dh[i] = dhd[i] + (rm ? rm[i] * tmp[i] : tmp[i]);
    }
    if (dh0) memcpy(dh0, dh, (size_t)BH * sizeof(REAL));
    if (dc0 && has_c) memcpy(dc0, dc, (size_t)BH * sizeof(REAL));

    /* hd = h_{t-1}*r of every step (the slots before each step are contiguous) */
    const REAL *hsrc = hs + (rev ? BH : 0), *hin = hsrc;
    if (rmask) {
        int64_t r;
#pragma omp parallel for num_threads(nt) if (fr_omp_going(nt, TB * H >= FRR_PAR_MIN)) schedule(static)
        for (r = 0; r < TB; r++) {
            const REAL *src = hsrc + r * H, *m = rmask + (r % B) * H;
            REAL *dst = hdall + r * H;
            for (int64_t j = 0; j < H; j++) dst[j] = src[j] * m[j];
        }
        hin = hdall;
    }

    /* parameter gradients over all steps */
    if (cell == FRR_LNLSTM) {
        if (dw[2]) FN(rr_colsum)(dG, NULL, TB, GX, dw[2], nt);   /* b */
        FN(rr_colsum)(dG, nx, TB, GX, dw[3], nt);                 /* gamma_ih */
        FN(rr_colsum)(dG, nh, TB, GX, dw[4], nt);                 /* gamma_hh */
        FN(rr_colsum)(dU, nc, TB, H, dw[5], nt);                  /* gamma_c */
        FN(rr_colsum)(dU, NULL, TB, H, dw[6], nt);                /* beta_c */
        int64_t r;
#pragma omp parallel for num_threads(nt) if (fr_omp_going(nt, TB * GX >= FRR_PAR_MIN)) schedule(static)
        for (r = 0; r < TB; r++) /* dG becomes d(x W_ih^T) through its layer norm */
            FN(rr_ln_back)(dG + r * GX, gih, nx + r * GX, rs[r * 3], GX, dG + r * GX);
    } else if (dw[2]) {
        FN(rr_colsum)(dG, NULL, TB, GX, dw[2], nt);
        FN(rr_colsum)(dG2, NULL, TB, GX, dw[3], nt);
    }
    PGEMM(nt, pinned, 'T', 'N', GX, I, TB, 1, dG, GX, x, I, 1, dw[0], I);
    PGEMM(nt, pinned, 'T', 'N', GX, H, TB, 1, dG2, GX, hin, H, 1, dw[1], H);
    PGEMM(nt, pinned, 'N', 'N', TB, I, GX, 1, dG, GX, W, I, dx_acc ? 1 : 0, dx, I);
}

/* ---- entry points ------------------------------------------------------- */

/* The pointer arguments the kernels cannot do without. */
static int FN(rr_check_params)(const frr_desc *d, const REAL *const *w)
{
    if (!w || !w[0] || !w[1]) return FR_EINVAL;
    if (d->cell == FRR_LNLSTM) {
        if (!w[3] || !w[4] || !w[5] || !w[6]) return FR_EINVAL;
    } else if ((w[2] == NULL) != (w[3] == NULL)) {
        return FR_EINVAL;
    }
    return FR_OK;
}

int FN(frr_forward)(const frr_desc *d, const REAL *x, const REAL *const *w,
                    const REAL *h0, const REAL *c0,
                    const REAL *zmask, const REAL *rmask,
                    REAL *y, int64_t ldy, REAL *hn, REAL *cn,
                    REAL *cache, REAL *work)
{
    int st = frr_check_desc(d);
    if (st != FR_OK) return st;
    if (GEMM_PTR == NULL) return FR_ENOBLAS;
    if (!x || !y || !hn || !work || ldy < d->H) return FR_EINVAL;
    if ((st = FN(rr_check_params)(d, w)) != FR_OK) return st;
    if (d->cell != FRR_GRU && !cn) return FR_EINVAL;
    if (!cache && (zmask || rmask)) return FR_EINVAL; /* masks are for training */
    const int pinned = d->batch_invariant ? 0 : fr_blas_enter(); /* no BLAS then */
    FN(rr_forward)(d, x, w, h0, d->cell == FRR_GRU ? NULL : c0, zmask, rmask,
                   y, ldy, hn, cn, cache, work, pinned);
    fr_blas_leave(pinned);
    return FR_OK;
}

int FN(frr_backward)(const frr_desc *d, const REAL *x, const REAL *const *w,
                     const REAL *zmask, const REAL *rmask, const REAL *cache,
                     const REAL *dy, int64_t ldy, const REAL *dhn, const REAL *dcn,
                     REAL *dx, int dx_accumulate, REAL *dh0, REAL *dc0,
                     REAL *const *dw, REAL *work)
{
    int st = frr_check_desc(d);
    if (st != FR_OK) return st;
    if (GEMM_PTR == NULL) return FR_ENOBLAS;
    if (!x || !cache || !dy || !dx || !work || ldy < d->H) return FR_EINVAL;
    if ((st = FN(rr_check_params)(d, w)) != FR_OK) return st;
    if ((st = FN(rr_check_params)(d, (const REAL *const *)dw)) != FR_OK) return st;
    if ((w[2] == NULL) != (dw[2] == NULL)) return FR_EINVAL;
    const int pinned = fr_blas_enter();
    FN(rr_backward)(d, x, w, zmask, rmask, cache, dy, ldy, dhn,
                    d->cell == FRR_GRU ? NULL : dcn, dx, dx_accumulate, dh0,
                    d->cell == FRR_GRU ? NULL : dc0, dw, work, pinned);
    fr_blas_leave(pinned);
    return FR_OK;
}

#undef ACTIVE
