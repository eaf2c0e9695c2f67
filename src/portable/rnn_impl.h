/*
 * Body of the recurrent kernels, included twice by rnn.c: once with
 * REAL=float (SUFFIX f32) and once with REAL=double (SUFFIX f64).
 * Needs: REAL, FN(name) (name with type suffix), EXP, TANH, GEMM_PTR (the
 * BLAS routine of that type, runtime.h), FR_REAL_IS_FLOAT.
 * Shape letters and buffer conventions: see fastrnn.h.
 *
 * One layer and direction, forward (haste's plan):
 *   Xp = bias + X W_ih^T                   one GEMM over all T*B rows
 *   for each step s (t = s, or T-1-s for the reverse direction):
 *     Xp[t] += h_prev W_hh^T               (GRU: Gh = h_prev W_hh^T)
 *     one fused elementwise pass: gates, new state, output
 * Backward walks the steps in the opposite order, keeping dG (gradient of the
 * gate pre-activations) for all steps, then does dW_ih, dW_hh and dx as big
 * GEMMs over all T*B rows after the loop.
 */

static inline REAL FN(sigmoid)(REAL v) { return (REAL)1 / ((REAL)1 + EXP(-v)); }

/* ONNX clip: v clamped to [-c, c] (NaN passes through); *m (when m is not
 * NULL) gets the derivative, 1 inside and 0 outside. c = 0: no clamp. */
static inline REAL FN(clampm)(REAL v, REAL c, REAL *m)
{
    if (c == 0) return v;
    REAL r = v > c ? c : (v < -c ? -c : v);
    if (m) *m = (v > c || v < -c) ? (REAL)0 : (REAL)1;
    return r;
}

/* Is step t of sequence b inside its length? */
#define ACTIVE(t, b) (lengths == NULL || (t) < lengths[b])

/* Fill the B*G*H pre-activation rows of Xp (rows x cols, leading dim ld) with
 * a bias row. */
static void FN(fill_rows)(REAL *Xp, int64_t rows, int64_t cols, const REAL *row,
                          int nt)
{
    int64_t r;
    if (nt == 1 || rows * cols < FR_PAR_MIN) { /* no OpenMP region (its fixed cost) */
        for (r = 0; r < rows; r++)
            memcpy(Xp + r * cols, row, (size_t)cols * sizeof(REAL));
        return;
    }
#pragma omp parallel for num_threads(nt) if (fr_omp_going(nt, 1)) schedule(static)
    for (r = 0; r < rows; r++)
        memcpy(Xp + r * cols, row, (size_t)cols * sizeof(REAL));
}

/* Column sums of A (rows, cols) added to out (cols): each thread owns a block
 * of columns and walks the rows in order, so the result does not depend on
 * the thread count. */
static void FN(colsum_add)(const REAL *A, int64_t rows, int64_t cols, REAL *out,
                           int nt)
{
    int64_t nblk = (cols + FR_COLSUM_COLS - 1) / FR_COLSUM_COLS, blk;
#pragma omp parallel for num_threads(nt) if (fr_omp_going(nt, rows * cols >= FR_PAR_MIN)) schedule(static)
    for (blk = 0; blk < nblk; blk++) {
        int64_t c0 = blk * FR_COLSUM_COLS;
        int64_t c1 = c0 + FR_COLSUM_COLS < cols ? c0 + FR_COLSUM_COLS : cols;
        REAL acc[FR_COLSUM_COLS];
        for (int64_t c = c0; c < c1; c++) acc[c - c0] = 0;
        for (int64_t r = 0; r < rows; r++) {
            const REAL *a = A + r * cols;
            for (int64_t c = c0; c < c1; c++) acc[c - c0] += a[c];
        }
        for (int64_t c = c0; c < c1; c++) out[c] += acc[c - c0];
    }
}

/* The x rows of the valid steps (t < lengths[b]) gathered into xc in
 * (t, b) order; returns how many. */
static int64_t FN(gather_valid)(const fr_desc *d, int64_t In, const REAL *x, REAL *xc)
{
    int64_t n = 0;
    for (int64_t t = 0; t < d->T; t++)
        for (int64_t b = 0; b < d->B; b++)
            if (t < d->lengths[b]) {
                memcpy(xc + n * In, x + (t * d->B + b) * In, (size_t)In * sizeof(REAL));
                n++;
            }
    return n;
}

/* The first n rows of Xp (their projections, in gather_valid's order)
 * moved to their places, from the last one down (a row only moves to a
 * later place, never over one still to move). */
static void FN(scatter_valid)(const fr_desc *d, REAL *Xp, int64_t GX, int64_t n)
{
    for (int64_t t = d->T - 1; t >= 0; t--)
        for (int64_t b = d->B - 1; b >= 0; b--)
            if (t < d->lengths[b]) {
                n--;
                if (n != t * d->B + b)
                    memcpy(Xp + (t * d->B + b) * GX, Xp + n * GX, (size_t)GX * sizeof(REAL));
            }
}

/* Xp (T,B,GX) (+)= x W^T (beta 1 adds to the bias rows already there), by
 * fr_pgemm in mode gm (FR_GEMM_*).
 * With lengths, only the valid steps are projected: their x rows are gathered
 * into xc (SCRATCH, up to T*B*In), multiplied into the first rows of Xp, then
 * moved to their places from the last one down (a row only moves to a later
 * place, never over one still to move). Rows past a length are left as they
 * are: nothing reads them. */
static void FN(project)(const fr_desc *d, int64_t In, const REAL *x, const REAL *W,
                        REAL *Xp, REAL beta, REAL *xc, int nt, int pinned, int gm)
{
    const int64_t T = d->T, B = d->B, GX = (int64_t)fr_num_gates(d->cell) * d->H;
    const int64_t *lengths = d->lengths;
    if (lengths == NULL) {
        FN(fr_pgemm)(gm, nt, pinned, 'N', 'T', T * B, GX, In, 1, x, In, W, In, beta, Xp, GX);
        return;
    }
    /* (with beta 1 every Xp row holds the same bias row) */
    const int64_t n = FN(gather_valid)(d, In, x, xc);
    FN(fr_pgemm)(gm, nt, pinned, 'N', 'T', n, GX, In, 1, xc, In, W, In, beta, Xp, GX);
    FN(scatter_valid)(d, Xp, GX, n);
}

#if FR_REAL_IS_FLOAT
/* Xp = bias row + x W^T on the fast kernels' GEMM, which starts each row
 * from the bias row (no pass that fills Xp with it first; the bits of
 * fill_rows and project with beta 1). With lengths, as project: the valid
 * rows are gathered, multiplied into the first rows of Xp and moved to
 * their places; rows past a length are left unwritten (nothing reads them).
 * Returns -1, Xp unwritten, when the GEMM could not run (the caller then
 * fills and projects). */
static int FN(project_bias)(const fr_desc *d, int64_t In, const REAL *x, const REAL *W,
                            REAL *Xp, const REAL *bias, REAL *xc, int nt)
{
    const int64_t T = d->T, B = d->B, GX = (int64_t)fr_num_gates(d->cell) * d->H;
    const int64_t *lengths = d->lengths;
    const int64_t n = lengths ? FN(gather_valid)(d, In, x, xc) : T * B;
    if (n == 0 || In == 0
        || fr_fast_sgemm((double)n * GX * In >= FR_FAST_GEMM_PAR_MIN ? nt : 1, 'N', 'T', n, GX,
                         In, lengths ? xc : x, In, W, In, 0, Xp, GX, bias) != 0)
        return -1;
    if (lengths) FN(scatter_valid)(d, Xp, GX, n);
    return 0;
}
#endif

/* The bias row of a layer's projection: b_ih + b_hh (either may be NULL),
 * but for torch's GRU (linear before reset) b_hn stays inside the reset
 * product, so its rows 2H..3H take b_ih alone. */
static void FN(bias_row)(const fr_desc *d, const REAL *bW, const REAL *bR, REAL *row)
{
    const int64_t H = d->H, GX = (int64_t)fr_num_gates(d->cell) * H;
    const int lbr0 = d->cell == FR_CELL_GRU && !d->gru_lbr;
    for (int64_t j = 0; j < GX; j++) {
        REAL v = bW ? bW[j] : 0;
        if (bR && !(d->cell == FR_CELL_GRU && !lbr0 && j >= 2 * H)) v += bR[j];
        row[j] = v;
    }
}

#if FR_REAL_IS_FLOAT
/* Xp's rows (t,b) inside their lengths = row ids[t,b] of this direction's
 * table (fr_rows_in): what project_bias would have computed for them. */
static void FN(gather_rows)(const fr_desc *d, const fr_rows_in *rows, int dir, REAL *Xp,
                            int nt)
{
    const int64_t TB = d->T * d->B, B = d->B, GX = (int64_t)fr_num_gates(d->cell) * d->H;
    const REAL *tab = rows->tables[dir];
    const int64_t *lengths = d->lengths;
    const int par = nt > 1 && TB * GX >= FR_PAR_MIN;
    /* clocked (the spread of the shares' ends): a partner that lost its
     * core holds this short copy up for a slice of the OS's */
    fr_region_clock rc;
    fr_region_begin(&rc, par, 0);
#pragma omp parallel num_threads(nt) if (fr_omp_going(nt, par))
    {
        const fr_region_mark rm = fr_region_enter(&rc);
        int tid, nth;
        fr_omp_me(&tid, &nth);
        for (int64_t i = TB * tid / nth; i < TB * (tid + 1) / nth; i++) {
            if (lengths && i / B >= lengths[i % B]) continue;
            memcpy(Xp + i * GX, tab + rows->ids[i] * GX, (size_t)GX * sizeof(REAL));
        }
        fr_region_done(&rc, rm);
    }
    fr_region_end(&rc);
}
#endif

/*
 * Forward of one layer and direction.
 *   x     IN  (T,B,In)
 *   y     OUT rows of the output, already offset by dir*H: step t of
 *             sequence b at y + t*yts + b*ybs
 *   h0,c0 IN  (B,H) or NULL
 *   hn,cn OUT (B,H) (cn NULL unless LSTM)
 *   gates OUT (T,B,GC) activated gates (training) or NULL (inference);
 *             GC = G*H, GRU: 4H = r,z,n, W_hn h + b_hn
 *             (gru_lbr = 0: the fourth block is r*h_prev instead)
 *   hs,cs OUT (T+1,B,H) states (training) or NULL; the forward direction keeps
 *             the state before step t in slot t, the reverse one in slot t+1
 *   cmask OUT (T,B,G*H) clip mask (training with clip) or NULL
 *   work  SCRATCH fr_layer_work_len(d, training)
 *   rows  IN  layer 0's tables (fr_forward_rows_f32) or NULL: used where
 *             the projection would be the fast GEMM's, the same bits
 *
 * GRU with gru_lbr = 0 (reset first) splits each step in two: the r,z rows
 * of the recurrent product, then r and z and r*h (in h2), then the n rows
 * (r*h) W_hn^T, then n and h'. b_hn is then plain additive and folds into Xp.
 */
static void FN(layer_forward)(const fr_desc *d, int dir, int64_t In,
                              const REAL *x, const REAL *W, const REAL *R,
                              const REAL *bW, const REAL *bR,
                              const REAL *h0, const REAL *c0,
                              REAL *y, int64_t yts, int64_t ybs, REAL *hn, REAL *cn,
                              REAL *gates, REAL *hs, REAL *cs, REAL *cmask,
                              REAL *work, int pinned, const float *pk,
                              const fr_rows_in *rows)
{
    (void)rows; /* the float32 instance's only */
    (void)pk; /* the float32 instance's fast loop only */
    const int cell = d->cell, nt = d->num_threads;
    const int64_t T = d->T, B = d->B, H = d->H;
    const int64_t *lengths = d->lengths;
    const int G = fr_num_gates(cell);
    const int64_t GX = (int64_t)G * H;
    const int training = gates != NULL;
    const int64_t BH = B * H;
    const int lbr0 = cell == FR_CELL_GRU && !d->gru_lbr;   /* reset first */
    const REAL clip = fr_clipping(d) ? (REAL)d->clip : 0;
    const int fast = FR_REAL_IS_FLOAT && fr_fast_path_on() && fr_fast_cell(d);
    /* the GEMMs: batch-invariant, a fixed order per output (fr_igemm);
     * else the fast kernels' where the fast loops run, or the BLAS */
    const int gm = d->batch_invariant ? FR_GEMM_FIXED : fast;

    /* LSTM and RNN accumulate the recurrent product straight into Xp; in
     * training Xp is the gate cache itself (overwritten by the activations). */
    /* each buffer on a cache line of its own (FR_WORK_ALIGN_PAD): threads
     * that write neighbouring units or rows then share no line by accident
     * (docs/tuning.md) */
    REAL *Gh = FR_LINE_ALIGN(REAL, work);               /* GRU: (B, 3H) recurrent product */
    REAL *hbuf = FR_LINE_ALIGN(REAL, Gh + B * GX);      /* inference state h (B,H) */
    REAL *cbuf = FR_LINE_ALIGN(REAL, hbuf + BH);        /* inference state c (B,H) */
    REAL *h2 = FR_LINE_ALIGN(REAL, cbuf + BH);          /* inference: second h (fast path) */
    REAL *Xp = (training && cell != FR_CELL_GRU) ? gates : FR_LINE_ALIGN(REAL, h2 + BH);
    REAL *xc = FR_LINE_ALIGN(REAL, (Xp == gates) ? h2 + BH : Xp + T * B * GX); /* compacted x */

    /* Xp = bias + X W_ih^T. torch's GRU folds only b_hr, b_hz here: b_hn stays
     * inside the reset product. */
    const int pmode = fast ? fr_fast_proj_mode_pk(d, pk != NULL) : 0;
    /* layer 0's rows from the tables (fr_forward_rows_f32) where this
     * projection would be the bias and one FMA chain over k: the GEMM
     * before the loop (mode 0) or the loop's panels (mode 2), not its dot
     * tiles (mode 1) */
    const int gathered = FR_REAL_IS_FLOAT && rows && fast && pmode != 1
                         && !d->batch_invariant && (bW || bR);
    const int small = pmode != 0 && !gathered; /* the loop projects x */
    if (bW != NULL || bR != NULL || small) {
        REAL *row = Gh; /* borrow Gh (>= GX elements) for the bias row */
        FN(bias_row)(d, bW, bR, row);
#if FR_REAL_IS_FLOAT
        /* the fast GEMM starts every row from the bias row itself: no pass
         * that fills Xp with it first (the same bits) */
        if (gathered) {
            FN(gather_rows)(d, rows, dir, Xp, nt);
        } else if (fast && !small && FN(project_bias)(d, In, x, W, Xp, row, xc, nt) == 0) {
        } else
#endif
        {
            FN(fill_rows)(Xp, T * B, GX, row, nt);
            if (!small) /* else the fast time loop projects x itself */
                FN(project)(d, In, x, W, Xp, 1, xc, nt, pinned, gm);
        }
    } else {
        FN(project)(d, In, x, W, Xp, 0, xc, nt, pinned, gm);
    }
    const REAL *bhn = (cell == FR_CELL_GRU && !lbr0 && bR) ? bR + 2 * H : NULL;

    /* initial state */
    REAL *h_init, *c_init = NULL;
    if (training) {
        h_init = hs + (dir ? T * BH : 0);
        if (cell == FR_CELL_LSTM) c_init = cs + (dir ? T * BH : 0);
    } else {
        h_init = hbuf;
        if (cell == FR_CELL_LSTM) c_init = cbuf;
    }
    if (h0) memcpy(h_init, h0, (size_t)BH * sizeof(REAL));
    else memset(h_init, 0, (size_t)BH * sizeof(REAL));
    if (c_init) {
        if (c0) memcpy(c_init, c0, (size_t)BH * sizeof(REAL));
        else memset(c_init, 0, (size_t)BH * sizeof(REAL));
    }

#if FR_REAL_IS_FLOAT
    if (fast) { /* AVX-512 or AVX2 time loop, one OpenMP region (fast/fast.h) */
        REAL *pack = xc + (lengths ? T * B * fr_max_in(d) : 0);
        pack = (REAL *)(((uintptr_t)pack + 63) & ~(uintptr_t)63);
        fr_fast_forward_f32(d, dir, R, bhn, Xp, Gh, h0 == NULL, hbuf, h2, cbuf,
                            hs, cs, gates, y, yts, ybs, hn, cn, pack,
                            small ? x : NULL, In, W, pk);
        return;
    }
#endif

    for (int64_t s = 0; s < T; s++) {
        const int64_t t = dir ? T - 1 - s : s;
        const REAL *hp, *cp = NULL;
        REAL *hx, *cx = NULL;
        if (training) {
            int64_t ip = dir ? t + 1 : t, ix = dir ? t : t + 1;
            hp = hs + ip * BH; hx = hs + ix * BH;
            if (cell == FR_CELL_LSTM) { cp = cs + ip * BH; cx = cs + ix * BH; }
        } else { /* in place: each element is read before it is written */
            hp = hx = hbuf;
            if (cell == FR_CELL_LSTM) cp = cx = cbuf;
        }
        REAL *xp = Xp + t * B * GX;
        REAL *mt = cmask ? cmask + t * B * GX : NULL;
        /* recurrent product; skipped when the state is known to be zero */
        const int hzero = (s == 0 && h0 == NULL);
        if (cell == FR_CELL_GRU) {
            if (hzero) memset(Gh, 0, (size_t)B * GX * sizeof(REAL));
            else FN(fr_pgemm)(gm, nt, pinned, 'N', 'T', B, lbr0 ? 2 * H : GX, H, 1, hp, H, R, H,
                           0, Gh, GX);
        } else if (!hzero) {
            FN(fr_pgemm)(gm, nt, pinned, 'N', 'T', B, GX, H, 1, hp, H, R, H, 1, xp, GX);
        }
        REAL *yt = y + t * yts;
        REAL *gt = training ? gates + t * B * (cell == FR_CELL_GRU ? 4 * H : GX) : NULL;
        int64_t b;
        if (lbr0) {
            /* r = s(xr + hr), z = s(xz + hz) into Gh's r,z blocks; rh = r*h (h2) */
#pragma omp parallel for num_threads(nt) if (fr_omp_going(nt, B * GX >= FR_PAR_MIN)) schedule(static)
            for (b = 0; b < B; b++) {
                const REAL *pre = xp + b * GX, *hpb = hp + b * H;
                REAL *gh = Gh + b * GX, *rh = h2 + b * H;
                REAL *mb = mt ? mt + b * GX : NULL;
                if (!ACTIVE(t, b)) { memset(rh, 0, (size_t)H * sizeof(REAL)); continue; }
                for (int64_t j = 0; j < H; j++) {
                    REAL r = FN(sigmoid)(FN(clampm)(pre[j] + gh[j], clip, mb ? mb + j : NULL));
                    REAL z = FN(sigmoid)(FN(clampm)(pre[H + j] + gh[H + j], clip,
                                                    mb ? mb + H + j : NULL));
                    gh[j] = r; gh[H + j] = z; rh[j] = r * hpb[j];
                }
            }
            /* Gh's n block = (r*h) W_hn^T */
            if (!hzero)
                FN(fr_pgemm)(gm, nt, pinned, 'N', 'T', B, H, H, 1, h2, H, R + 2 * H * H, H, 0,
                          Gh + 2 * H, GX);
        }
#pragma omp parallel for num_threads(nt) if (fr_omp_going(nt, B * GX >= FR_PAR_MIN)) schedule(static)
        for (b = 0; b < B; b++) {
            const REAL *hpb = hp + b * H;
            REAL *hxb = hx + b * H, *yb = yt + b * ybs;
            REAL *pre = xp + b * GX;
            if (!ACTIVE(t, b)) { /* state carried over, output 0 */
                if (hxb != hpb) memcpy(hxb, hpb, (size_t)H * sizeof(REAL));
                if (cx && cx != cp) memcpy(cx + b * H, cp + b * H, (size_t)H * sizeof(REAL));
                memset(yb, 0, (size_t)H * sizeof(REAL));
                if (gt) {
                    int64_t gc = cell == FR_CELL_GRU ? 4 * H : GX;
                    memset(gt + b * gc, 0, (size_t)gc * sizeof(REAL));
                }
                continue;
            }
            REAL *mb = mt ? mt + b * GX : NULL;
            if (cell == FR_CELL_LSTM) {
                const REAL *cpb = cp + b * H;
                REAL *cxb = cx + b * H;
                for (int64_t j = 0; j < H; j++) {
                    /* c' = f*c + i*g ; h' = o*tanh(c') */
                    REAL ig = FN(sigmoid)(FN(clampm)(pre[j], clip, mb ? mb + j : NULL));
                    REAL fg = FN(sigmoid)(FN(clampm)(pre[H + j], clip, mb ? mb + H + j : NULL));
                    REAL gg = TANH(FN(clampm)(pre[2 * H + j], clip, mb ? mb + 2 * H + j : NULL));
                    REAL og = FN(sigmoid)(FN(clampm)(pre[3 * H + j], clip,
                                                     mb ? mb + 3 * H + j : NULL));
                    REAL c = fg * cpb[j] + ig * gg;
                    REAL h = og * TANH(c);
                    if (training) { /* pre is the gate cache row */
                        pre[j] = ig; pre[H + j] = fg; pre[2 * H + j] = gg; pre[3 * H + j] = og;
                    }
                    cxb[j] = c; hxb[j] = h; yb[j] = h;
                }
            } else if (lbr0) {
                const REAL *gh = Gh + b * GX, *rh = h2 + b * H;
                REAL *gc = gt ? gt + b * 4 * H : NULL;
                for (int64_t j = 0; j < H; j++) {
                    /* n = tanh(xn + b_hn + (r*h) W_hn^T), h' = (1-z)*n + z*h */
                    REAL r = gh[j], z = gh[H + j];
                    REAL n = TANH(FN(clampm)(pre[2 * H + j] + gh[2 * H + j], clip,
                                             mb ? mb + 2 * H + j : NULL));
                    REAL h = (1 - z) * n + z * hpb[j];
                    if (gc) { gc[j] = r; gc[H + j] = z; gc[2 * H + j] = n; gc[3 * H + j] = rh[j]; }
                    hxb[j] = h; yb[j] = h;
                }
            } else if (cell == FR_CELL_GRU) {
                const REAL *gh = Gh + b * GX;
                REAL *gc = gt ? gt + b * 4 * H : NULL;
                for (int64_t j = 0; j < H; j++) {
                    /* r = s(xr + hr), z = s(xz + hz), n = tanh(xn + r*(W_hn h + b_hn))
                     * h' = (1-z)*n + z*h */
                    REAL r = FN(sigmoid)(FN(clampm)(pre[j] + gh[j], clip, mb ? mb + j : NULL));
                    REAL z = FN(sigmoid)(FN(clampm)(pre[H + j] + gh[H + j], clip,
                                                    mb ? mb + H + j : NULL));
                    REAL hl = gh[2 * H + j] + (bhn ? bhn[j] : 0);
                    REAL n = TANH(FN(clampm)(pre[2 * H + j] + r * hl, clip,
                                             mb ? mb + 2 * H + j : NULL));
                    REAL h = (1 - z) * n + z * hpb[j];
                    if (gc) { gc[j] = r; gc[H + j] = z; gc[2 * H + j] = n; gc[3 * H + j] = hl; }
                    hxb[j] = h; yb[j] = h;
                }
            } else {
                const int relu = cell == FR_CELL_RNN_RELU;
                for (int64_t j = 0; j < H; j++) {
                    /* h' = act(x W^T + b + h R^T) */
                    REAL v = FN(clampm)(pre[j], clip, mb ? mb + j : NULL);
                    REAL h = relu ? (v < 0 ? 0 : v) : TANH(v); /* relu(NaN) = NaN, as torch */
                    if (training) pre[j] = h;
                    hxb[j] = h; yb[j] = h;
                }
            }
        }
    }
    const REAL *h_last = training ? hs + (dir ? 0 : T * BH) : hbuf;
    memcpy(hn, h_last, (size_t)BH * sizeof(REAL));
    if (cn) {
        const REAL *c_last = training ? cs + (dir ? 0 : T * BH) : cbuf;
        memcpy(cn, c_last, (size_t)BH * sizeof(REAL));
    }
}

/*
 * Backward of one layer and direction (after layer_forward in training).
 *   x      IN  (T,B,In) the layer's input as the forward saw it
 *   dy     IN  rows of the output's gradient, offset by dir*H: step t of
 *              sequence b at dy + t*dts + b*dbs
 *   dhn,dcn IN (B,H) or NULL
 *   dx     OUT (T,B,In): = dG W_ih, added to what is there when dx_beta = 1
 *   dh0,dc0 OUT (B,H) or NULL
 *   dW..dbR ACCUMULATE
 *   cmask  IN  (T,B,G*H) clip mask from the forward, or NULL (no clip)
 *   work   SCRATCH fr_layer_bwork_len(d)
 *
 * GRU with gru_lbr = 0: n = tanh(a_n + (r*h) W_hn^T) gives, per step,
 *   d(rh) = dn_pre W_hn,  dr = d(rh) * h,  dh_prev += d(rh) * r,
 * so the step has two passes around the d(rh) GEMM (d(rh) lives in dc, which
 * a GRU does not use), and dW_hn = dn_pre^T (r*h) over all steps, with r*h
 * from the cache's fourth block.
 */
static void FN(layer_backward)(const fr_desc *d, int dir, int64_t In,
                               const REAL *x, const REAL *W, const REAL *R,
                               const REAL *gates, const REAL *hs, const REAL *cs,
                               const REAL *cmask, const REAL *dy, int64_t dts,
                               int64_t dbs, const REAL *dhn, const REAL *dcn,
                               REAL *dx, REAL dx_beta, REAL *dh0, REAL *dc0,
                               REAL *dW, REAL *dR, REAL *dbW, REAL *dbR,
                               REAL *work, int pinned)
{
    const int cell = d->cell, nt = d->num_threads;
    const int64_t T = d->T, B = d->B, H = d->H;
    const int64_t *lengths = d->lengths;
    const int G = fr_num_gates(cell);
    const int64_t GX = (int64_t)G * H;
    const int64_t GC = cell == FR_CELL_GRU ? 4 * H : GX;
    const int64_t BH = B * H;
    const int lbr0 = cell == FR_CELL_GRU && !d->gru_lbr;
    const int fast = FR_REAL_IS_FLOAT && fr_fast_path_on() && fr_fast_cell(d);
    (void)fast; /* used by the float32 instance only */

    REAL *dGx = work;                                   /* (T,B,GX) d pre-activation, input side */
    REAL *dGh = cell == FR_CELL_GRU ? dGx + T * B * GX : dGx; /* recurrent side */
    REAL *dh = dGh + T * B * GX;                        /* (B,H) dL/dh_t */
    REAL *dhp = dh + BH;                                /* (B,H) dL/dh_{t-1} */
    REAL *dc = dhp + BH;                                /* (B,H) dL/dc_t */

    if (dhn) memcpy(dh, dhn, (size_t)BH * sizeof(REAL));
    else memset(dh, 0, (size_t)BH * sizeof(REAL));
    if (cell == FR_CELL_LSTM) {
        if (dcn) memcpy(dc, dcn, (size_t)BH * sizeof(REAL));
        else memset(dc, 0, (size_t)BH * sizeof(REAL));
    }

#if FR_REAL_IS_FLOAT
    if (fast) /* AVX-512 or AVX2 reverse walk, one OpenMP region (fast/fast.h) */
        dh = fr_fast_backward_f32(d, dir, R, gates, hs, cs, dy, dts, dbs, dGx, dGh, dh, dhp, dc,
                                  (REAL *)(((uintptr_t)(dc + BH) + 63) & ~(uintptr_t)63));
    else
#endif
    for (int64_t s = T - 1; s >= 0; s--) {
        const int64_t t = dir ? T - 1 - s : s;
        const int64_t ip = dir ? t + 1 : t, ix = dir ? t : t + 1;
        const REAL *hp = hs + ip * BH;
        const REAL *cp = cell == FR_CELL_LSTM ? cs + ip * BH : NULL;
        const REAL *cx = cell == FR_CELL_LSTM ? cs + ix * BH : NULL;
        const REAL *gt = gates + t * B * GC;
        const REAL *dyt = dy + t * dts;
        const REAL *mt = cmask ? cmask + t * B * GX : NULL;
        REAL *dgx = dGx + t * B * GX, *dgh = dGh + t * B * GX;
        int64_t b;
#pragma omp parallel for num_threads(nt) if (fr_omp_going(nt, B * GX >= FR_PAR_MIN)) schedule(static)
        for (b = 0; b < B; b++) {
            REAL *dhb = dh + b * H, *dhpb = dhp + b * H;
            REAL *dgxb = dgx + b * GX, *dghb = dgh + b * GX;
            if (!ACTIVE(t, b)) { /* gradient passes the carried state unchanged */
                memcpy(dhpb, dhb, (size_t)H * sizeof(REAL));
                memset(dgxb, 0, (size_t)GX * sizeof(REAL));
                if (dghb != dgxb) memset(dghb, 0, (size_t)GX * sizeof(REAL));
                continue; /* dc row unchanged too */
            }
            const REAL *g = gt + b * GC, *dyb = dyt + b * dbs;
            const REAL *mb = mt ? mt + b * GX : NULL; /* clip mask: 1 or 0 */
#define MASK(q) (mb ? mb[(q) * H + j] : (REAL)1)
            if (cell == FR_CELL_LSTM) {
                const REAL *cpb = cp + b * H, *cxb = cx + b * H;
                REAL *dcb = dc + b * H;
                for (int64_t j = 0; j < H; j++) {
                    REAL ig = g[j], fg = g[H + j], gg = g[2 * H + j], og = g[3 * H + j];
                    REAL gh = dhb[j] + dyb[j];
                    REAL tc = TANH(cxb[j]);
                    REAL dct = dcb[j] + gh * og * (1 - tc * tc);
                    dgxb[j] = dct * gg * ig * (1 - ig) * MASK(0);
                    dgxb[H + j] = dct * cpb[j] * fg * (1 - fg) * MASK(1);
                    dgxb[2 * H + j] = dct * ig * (1 - gg * gg) * MASK(2);
                    dgxb[3 * H + j] = gh * tc * og * (1 - og) * MASK(3);
                    dcb[j] = dct * fg;
                    dhpb[j] = 0;
                }
            } else if (lbr0) { /* first pass: all but r (which needs d(rh)) */
                const REAL *hpb = hp + b * H;
                for (int64_t j = 0; j < H; j++) {
                    REAL z = g[H + j], n = g[2 * H + j];
                    REAL gh = dhb[j] + dyb[j];
                    REAL dnp = gh * (1 - z) * (1 - n * n) * MASK(2);
                    REAL dzp = gh * (hpb[j] - n) * z * (1 - z) * MASK(1);
                    dgxb[H + j] = dzp; dgxb[2 * H + j] = dnp;
                    dghb[H + j] = dzp; dghb[2 * H + j] = dnp;
                    dhpb[j] = gh * z;                          /* direct path */
                }
            } else if (cell == FR_CELL_GRU) {
                const REAL *hpb = hp + b * H;
                for (int64_t j = 0; j < H; j++) {
                    REAL r = g[j], z = g[H + j], n = g[2 * H + j], hl = g[3 * H + j];
                    REAL gh = dhb[j] + dyb[j];
                    REAL dnp = gh * (1 - z) * (1 - n * n) * MASK(2); /* d n pre-activation */
                    REAL dzp = gh * (hpb[j] - n) * z * (1 - z) * MASK(1);
                    REAL drp = dnp * hl * r * (1 - r) * MASK(0);
                    dgxb[j] = drp; dgxb[H + j] = dzp; dgxb[2 * H + j] = dnp;
                    dghb[j] = drp; dghb[H + j] = dzp; dghb[2 * H + j] = dnp * r;
                    dhpb[j] = gh * z;                          /* direct path */
                }
            } else {
                const int relu = cell == FR_CELL_RNN_RELU;
                for (int64_t j = 0; j < H; j++) {
                    REAL h = g[j], gh = dhb[j] + dyb[j];
                    dgxb[j] = (relu ? (h > 0 ? gh : 0) : gh * (1 - h * h)) * MASK(0);
                    dhpb[j] = 0;
                }
            }
#undef MASK
        }
        if (lbr0) {
            REAL *drh = dc; /* (B,H) d(r*h) = dn_pre W_hn */
            FN(fr_pgemm)(fast, nt, pinned, 'N', 'N', B, H, H, 1, dgh + 2 * H, GX, R + 2 * H * H, H,
                      0, drh, H);
#pragma omp parallel for num_threads(nt) if (fr_omp_going(nt, B * GX >= FR_PAR_MIN)) schedule(static)
            for (b = 0; b < B; b++) {
                if (!ACTIVE(t, b)) continue;
                const REAL *g = gt + b * GC, *hpb = hp + b * H, *drb = drh + b * H;
                const REAL *mb = mt ? mt + b * GX : NULL;
                REAL *dhpb = dhp + b * H;
                for (int64_t j = 0; j < H; j++) {
                    REAL r = g[j];
                    REAL drp = drb[j] * hpb[j] * r * (1 - r) * (mb ? mb[j] : (REAL)1);
                    dgx[b * GX + j] = drp; dgh[b * GX + j] = drp;
                    dhpb[j] += drb[j] * r;
                }
            }
            /* dh_{t-1} += dG_h[r,z] W_hh[r,z] */
            FN(fr_pgemm)(fast, nt, pinned, 'N', 'N', B, H, 2 * H, 1, dgh, GX, R, H, 1, dhp, H);
        } else {
            /* dh_{t-1} += dG_h W_hh */
            FN(fr_pgemm)(fast, nt, pinned, 'N', 'N', B, H, GX, 1, dgh, GX, R, H, 1, dhp, H);
        }
        REAL *tmp = dh; dh = dhp; dhp = tmp;
    }
    if (dh0) memcpy(dh0, dh, (size_t)BH * sizeof(REAL));
    if (dc0 && cell == FR_CELL_LSTM) memcpy(dc0, dc, (size_t)BH * sizeof(REAL));

    /* weight gradients over all steps at once */
    FN(fr_pgemm)(fast, nt, pinned, 'T', 'N', GX, In, T * B, 1, dGx, GX, x, In, 1, dW, In);
    if (lbr0) { /* r,z rows take h_prev, the n rows r*h_prev */
        FN(fr_pgemm)(fast, nt, pinned, 'T', 'N', 2 * H, H, T * B, 1, dGh, GX, hs + (dir ? BH : 0), H,
                  1, dR, H);
        FN(fr_pgemm)(fast, nt, pinned, 'T', 'N', H, H, T * B, 1, dGh + 2 * H, GX, gates + 3 * H, GC,
                  1, dR + 2 * H * H, H);
    } else {
        FN(fr_pgemm)(fast, nt, pinned, 'T', 'N', GX, H, T * B, 1, dGh, GX, hs + (dir ? BH : 0), H, 1,
                  dR, H);
    }
    if (dbW) FN(colsum_add)(dGx, T * B, GX, dbW, nt);
    if (dbR) FN(colsum_add)(dGh, T * B, GX, dbR, nt);
    FN(fr_pgemm)(fast, nt, pinned, 'N', 'N', T * B, In, GX, 1, dGx, GX, W, In, dx_beta, dx, In);
}

/* ---- whole stack ------------------------------------------------------- */

/* fr_forward, with packed: NULL, or L*D blobs of weights packed for the
 * fast loops at the width in use (fr_pack_f32; float32 only) */
/* One layer l and direction dir of forward_all: its cache slices (training)
 * and its layer_forward, with the scratch given. */
static void FN(forward_dir)(const fr_desc *d, int64_t l, int dir, int64_t In, const REAL *in,
                            REAL *out, const REAL *const *w_ih, const REAL *const *w_hh,
                            const REAL *const *b_ih, const REAL *const *b_hh, const REAL *h0,
                            const REAL *c0, REAL *hn, REAL *cn, REAL *cache, REAL *work,
                            int pinned, const float *const *packed, const fr_rows_in *rows)
{
    const int64_t T = d->T, B = d->B, H = d->H, L = d->L, D = d->D;
    const int64_t BH = B * H, DH = D * H, TBDH = T * B * DH;
    const int is_lstm = d->cell == FR_CELL_LSTM;
    const int64_t GC = d->cell == FR_CELL_GRU ? 4 * H : fr_num_gates(d->cell) * H;
    const int64_t k = l * D + dir;
    /* the last layer writes the caller's layout, (B,T,DH) with y_batch_first */
    const int bf = l == L - 1 && d->y_batch_first;
    REAL *gates = NULL, *hs = NULL, *cs = NULL, *cmask = NULL;
    if (cache != NULL) {
        gates = cache + (L - 1) * TBDH + k * fr_cache_per_k(d);
        hs = gates + T * B * GC;
        cs = is_lstm ? hs + (T + 1) * BH : NULL;
        if (fr_clipping(d)) cmask = hs + (T + 1) * BH * (is_lstm ? 2 : 1);
    }
    FN(layer_forward)(d, dir, In, in, w_ih[k], w_hh[k], b_ih ? b_ih[k] : NULL,
                      b_hh ? b_hh[k] : NULL, h0 ? h0 + k * BH : NULL,
                      (c0 && is_lstm) ? c0 + k * BH : NULL, out + dir * H,
                      bf ? DH : B * DH, bf ? T * DH : DH, hn + k * BH,
                      is_lstm ? cn + k * BH : NULL, gates, hs, cs, cmask, work, pinned,
                      packed ? packed[k] : NULL, l == 0 ? rows : NULL);
}

static int FN(forward_all)(const fr_desc *dc, const REAL *x,
                           const REAL *const *w_ih, const REAL *const *w_hh,
                           const REAL *const *b_ih, const REAL *const *b_hh,
                           const REAL *h0, const REAL *c0, const REAL *dropmask,
                           REAL *y, REAL *hn, REAL *cn, REAL *cache, REAL *work,
                           const float *const *packed, const fr_rows_in *rows)
{
    int st = fr_check_desc(dc);
    if (st != FR_OK) return st;
    if (GEMM_PTR == NULL) return FR_ENOBLAS;
    if (!x || !w_ih || !w_hh || !y || !hn || !work) return FR_EINVAL;
    if (dc->cell == FR_CELL_LSTM && !cn) return FR_EINVAL;
    fr_pick pick;   /* the count this shape's recent calls ran fastest with */
    fr_desc dp = *dc;
    dp.num_threads = fr_pick_begin(&pick, dc, (cache ? FR_PICK_TRAIN : 0)
                     | (packed ? FR_PICK_PACKED : 0) | (rows ? FR_PICK_ROWS : 0)
                     | (FR_REAL_IS_FLOAT ? 0 : FR_PICK_F64));
    const fr_desc *d = &dp;
    const int64_t T = d->T, B = d->B, H = d->H, L = d->L, D = d->D;
    const int64_t DH = D * H, TBDH = T * B * DH;
    const int training = cache != NULL;
    REAL *layer_work = work;
    REAL *pp0 = work + fr_layer_work_len(d, training), *pp1 = pp0 + TBDH; /* inference ping-pong */
    /* the second direction's scratch when the two run side by side */
    REAL *layer_work1 = pp0 + ((!training && L > 1) ? 2 * TBDH : 0);
    const int side = fr_dirs_side_by_side(d) && d->num_threads >= 2;
    fr_desc d1 = *d;   /* each direction on one thread */
    d1.num_threads = 1;
    /* the fast loops that project x themselves call no BLAS: no need to pin
     * it (a get and two sets of OpenBLAS's thread count per call, which a
     * streaming step() would pay every time) */
    const int no_blas = d->batch_invariant /* fixed-order GEMMs only */
                        || (FR_REAL_IS_FLOAT && fr_fast_path_on() && fr_fast_cell(d)
                            && fr_fast_proj_mode_pk(d, packed != NULL) != 0);
    const int pinned = no_blas ? 0 : fr_blas_enter();

    const REAL *in = x;
    for (int64_t l = 0; l < L; l++) {
        const int64_t In = l == 0 ? d->I_ : DH;
        REAL *out;
        if (l == L - 1) out = y;
        else if (training) out = cache + l * TBDH;      /* input of layer l+1 */
        else out = (l % 2) ? pp1 : pp0;
        if (!side) {
            for (int dir = 0; dir < D; dir++)
                FN(forward_dir)(d, l, dir, In, in, out, w_ih, w_hh, b_ih, b_hh, h0, c0, hn, cn,
                                cache, layer_work, pinned, packed, rows);
        } else {
            /* CPU clocks read where a direction's work pays for them: a
             * core shared with another pool loses a fraction of every pass */
            fr_region_clock rc;
            fr_region_begin(&rc, 1, (double)T * B * fr_num_gates(d->cell) * H * (H + In)
                                        >= FR_REGION_CPU_WORK);
#pragma omp parallel num_threads(2) if (fr_omp_going(2, 1))
            {
                const fr_region_mark rm = fr_region_enter(&rc);
                int tid, nth;
                fr_omp_me(&tid, &nth);
                /* direction tid on thread tid (both here when OpenMP gives one) */
                for (int dir = tid; dir < 2; dir += nth)
                    FN(forward_dir)(&d1, l, dir, In, in, out, w_ih, w_hh, b_ih, b_hh, h0, c0,
                                    hn, cn, cache, dir ? layer_work1 : layer_work, pinned,
                                    packed, rows);
                fr_region_done(&rc, rm);
            }
            fr_region_end(&rc);
        }
        if (training && dropmask && l < L - 1) {
            const REAL *m = dropmask + l * TBDH;
            int64_t i;
#pragma omp parallel for num_threads(d->num_threads) if (fr_omp_going(d->num_threads, TBDH >= FR_PAR_MIN)) schedule(static)
            for (i = 0; i < TBDH; i++) out[i] *= m[i];
        }
        in = out;
    }
    fr_blas_leave(pinned);
    fr_pick_end(&pick);
    return FR_OK;
}

int FN(fr_forward)(const fr_desc *d, const REAL *x,
                   const REAL *const *w_ih, const REAL *const *w_hh,
                   const REAL *const *b_ih, const REAL *const *b_hh,
                   const REAL *h0, const REAL *c0, const REAL *dropmask,
                   REAL *y, REAL *hn, REAL *cn, REAL *cache, REAL *work)
{
    return FN(forward_all)(d, x, w_ih, w_hh, b_ih, b_hh, h0, c0, dropmask, y, hn, cn,
                           cache, work, NULL, NULL);
}

int FN(fr_backward)(const fr_desc *dc, const REAL *x,
                    const REAL *const *w_ih, const REAL *const *w_hh,
                    const REAL *dropmask, const REAL *cache,
                    const REAL *dy, const REAL *dhn, const REAL *dcn,
                    REAL *dx, REAL *dh0, REAL *dc0,
                    REAL *const *dw_ih, REAL *const *dw_hh,
                    REAL *const *db_ih, REAL *const *db_hh, REAL *work)
{
    int st = fr_check_desc(dc);
    if (st != FR_OK) return st;
    if (GEMM_PTR == NULL) return FR_ENOBLAS;
    if (!x || !w_ih || !w_hh || !cache || !dy || !dx || !dw_ih || !dw_hh || !work)
        return FR_EINVAL;
    fr_pick pick;   /* as forward_all's */
    fr_desc dp = *dc;
    dp.num_threads = fr_pick_begin(&pick, dc, FR_PICK_BACKWARD
                                   | (FR_REAL_IS_FLOAT ? 0 : FR_PICK_F64));
    const fr_desc *d = &dp;
    const int64_t T = d->T, B = d->B, H = d->H, L = d->L, D = d->D;
    const int64_t BH = B * H, DH = D * H, TBDH = T * B * DH;
    const int is_lstm = d->cell == FR_CELL_LSTM;
    const int64_t GC = d->cell == FR_CELL_GRU ? 4 * H : fr_num_gates(d->cell) * H;
    const int64_t per_k = fr_cache_per_k(d);
    const int clipping = fr_clipping(d);
    REAL *layer_work = work;
    REAL *pp0 = work + fr_layer_bwork_len(d), *pp1 = pp0 + TBDH;
    const int pinned = fr_blas_enter();

    const REAL *dcur = dy; /* gradient of this layer's output (T,B,DH) */
    for (int64_t l = L - 1; l >= 0; l--) {
        const int64_t In = l == 0 ? d->I_ : DH;
        const REAL *xin = l == 0 ? x : cache + (l - 1) * TBDH;
        REAL *dxl = l == 0 ? dx : ((l % 2) ? pp1 : pp0);
        /* the last layer's dy in the caller's layout (y_batch_first) */
        const int bf = l == L - 1 && d->y_batch_first;
        for (int dir = 0; dir < D; dir++) {
            const int64_t k = l * D + dir;
            const REAL *gates = cache + (L - 1) * TBDH + k * per_k;
            const REAL *hs = gates + T * B * GC;
            const REAL *cs = is_lstm ? hs + (T + 1) * BH : NULL;
            const REAL *cmask = clipping ? hs + (T + 1) * BH * (is_lstm ? 2 : 1) : NULL;
            FN(layer_backward)(d, dir, In, xin, w_ih[k], w_hh[k], gates, hs, cs, cmask,
                               dcur + dir * H, bf ? DH : B * DH, bf ? T * DH : DH,
                               dhn ? dhn + k * BH : NULL,
                               (dcn && is_lstm) ? dcn + k * BH : NULL,
                               dxl, dir == 0 ? 0 : 1,
                               dh0 ? dh0 + k * BH : NULL,
                               (dc0 && is_lstm) ? dc0 + k * BH : NULL,
                               dw_ih[k], dw_hh[k],
                               db_ih ? db_ih[k] : NULL, db_hh ? db_hh[k] : NULL,
                               layer_work, pinned);
        }
        if (l > 0 && dropmask) { /* through the dropout of layer l's input */
            const REAL *m = dropmask + (l - 1) * TBDH;
            int64_t i;
#pragma omp parallel for num_threads(d->num_threads) if (fr_omp_going(d->num_threads, TBDH >= FR_PAR_MIN)) schedule(static)
            for (i = 0; i < TBDH; i++) dxl[i] *= m[i];
        }
        dcur = dxl;
    }
    fr_blas_leave(pinned);
    fr_pick_end(&pick);
    return FR_OK;
}

#undef ACTIVE
