/*
 * The cells' elementwise math, VW units at a time: gate activations and
 * new states forward (software-pipelined over blocks of units), and the
 * gradients of the gate pre-activations backward. Needs isa.h,
 * simd_math.h and panels.h (acc_load, acc_store).
 */

/* ---- elementwise gate math, VW units at a time --------------------------- */

/* Loads and stores of the gate math: rem units valid from p (rem >= VW:
 * whole vectors; the callers of whole blocks pass the constant VW, so these
 * are plain loads and stores there). A partial last block loads +0 into the
 * lanes past rem, as padded copies would, and stores only its units: every
 * unit sees the same instructions as in a whole block. */
#define LDR(p) acc_load((p), rem)
#define STR(p, v) acc_store((p), rem, (v))

/* Gate math on NB blocks of VW units side by side (NB <= FR_FAST_NBLK; block b at
 * offset VW b of every pointer, gate q at offset qH), software-pipelined:
 * the LSTM's tanh(c') and the GRU's tanh(n) need the gates of their own
 * block first, so run alone they would be 2 exp chains in flight where the
 * gates had 8 (4). Each call below therefore also finishes the NBP blocks
 * the call before it left pending (their tanh's exp joins this call's exps
 * in one v_exp_k) and leaves its own NB blocks pending for the next. The
 * same instructions reach every lane as without the pipeline (v_exp_k is
 * lane by lane for any K), so the bits do not change. A call with NB = 0
 * only finishes; with NBP = 0 it only starts. Loads and stores of the
 * pending blocks use their own rem (remp). */
#define LDRP(p) acc_load((p), remp)
#define STRP(p, v) acc_store((p), remp, (v))

/* LSTM: i,f,g,o from pre; c' = f c + i g; h' = o tanh(c'). Pending: c'
 * and o in cq/oq, their h' to hxq and ybq. */
static inline INL TGT void lstm_stage(float *pre, int64_t H, const float *cp, float *cx,
                                       int keep, const int NB, const int64_t rem,
                                       V *cq, V *oq, float *hxq, float *ybq,
                                       const int NBP, const int64_t remp)
{
    V p[4 * FR_FAST_NBLK], e[5 * FR_FAST_NBLK];
    for (int b = 0; b < NB; b++)
        for (int q = 0; q < 4; q++) {
            p[4 * b + q] = LDR(pre + q * H + VW * b);
            e[4 * b + q] = q == 2 ? tanh_arg(p[4 * b + q]) : sigmoid_arg(p[4 * b + q]);
        }
    for (int b = 0; b < NBP; b++) e[4 * NB + b] = tanh_arg(cq[b]);
    unsigned pos = 0; /* tanh's exps (2|x| >= 0): gate g of each block, the pending */
    for (int b = 0; b < NB; b++) pos |= 1u << (4 * b + 2);
    for (int b = 0; b < NBP; b++) pos |= 1u << (4 * NB + b);
    v_exp_k(e, 4 * NB + NBP, pos);
    for (int b = 0; b < NBP; b++) {
        const V h = v_mul(oq[b], tanh_from(cq[b], e[4 * NB + b]));
        STRP(hxq + VW * b, h);
        STRP(ybq + VW * b, h);
    }
    for (int b = 0; b < NB; b++) {
        V *g = p + 4 * b; /* i, f, g, o */
        const V *eg = e + 4 * b;
        g[0] = sigmoid_from(g[0], eg[0]);
        g[1] = sigmoid_from(g[1], eg[1]);
        g[2] = tanh_from(g[2], eg[2]);
        g[3] = sigmoid_from(g[3], eg[3]);
        cq[b] = v_fmadd(g[1], LDR(cp + VW * b), v_mul(g[0], g[2]));
        oq[b] = g[3];
        if (keep)
            for (int q = 0; q < 4; q++) STR(pre + q * H + VW * b, g[q]);
        STR(cx + VW * b, cq[b]);
    }
}

/* GRU: r = s(xr+hr), z = s(xz+hz), n = tanh(xn + r (hn + b_hn)),
 * h' = (1-z) n + z h. Pending: n's argument and z in nq/zq; h from hpq,
 * h' to hxq and ybq, n to gcq + 2H. */
static inline INL TGT void gru_stage(const float *pre, const float *gh, int64_t H,
                                      const float *bhn, float *gc, const int NB,
                                      const int64_t rem, V *nq, V *zq, const float *hpq,
                                      float *hxq, float *ybq, float *gcq, const int NBP,
                                      const int64_t remp)
{
    const V one = v_set1(1.0f);
    V a[2 * FR_FAST_NBLK], e[3 * FR_FAST_NBLK];
    for (int b = 0; b < NB; b++)
        for (int q = 0; q < 2; q++) {
            a[2 * b + q] = v_add(LDR(pre + q * H + VW * b), LDR(gh + q * H + VW * b));
            e[2 * b + q] = sigmoid_arg(a[2 * b + q]);
        }
    for (int b = 0; b < NBP; b++) e[2 * NB + b] = tanh_arg(nq[b]);
    v_exp_k(e, 2 * NB + NBP, ((1u << NBP) - 1u) << (2 * NB)); /* tanh's exps (2|x| >= 0): the pending */
    for (int b = 0; b < NBP; b++) {
        const V n = tanh_from(nq[b], e[2 * NB + b]);
        const V h = v_fmadd(zq[b], LDRP(hpq + VW * b), v_mul(v_sub(one, zq[b]), n));
        if (gcq) STRP(gcq + 2 * H + VW * b, n);
        STRP(hxq + VW * b, h);
        STRP(ybq + VW * b, h);
    }
    for (int b = 0; b < NB; b++) {
        const V r = sigmoid_from(a[2 * b], e[2 * b]);
        zq[b] = sigmoid_from(a[2 * b + 1], e[2 * b + 1]);
        V hl = LDR(gh + 2 * H + VW * b);
        if (bhn) hl = v_add(hl, LDR(bhn + VW * b));
        nq[b] = v_fmadd(r, hl, LDR(pre + 2 * H + VW * b));
        if (gc) {
            STR(gc + VW * b, r); STR(gc + H + VW * b, zq[b]); STR(gc + 3 * H + VW * b, hl);
        }
    }
}

/* RNN: h' = tanh(pre) or relu(pre), no dependence between the exps: NB up
 * to 2 FR_FAST_NBLK blocks side by side. */
static inline INL TGT void rnn_cells(float *pre, int relu, float *hx, float *yb, int keep,
                                      const int NB, const int64_t rem)
{
    V v[2 * FR_FAST_NBLK];
    for (int b = 0; b < NB; b++) v[b] = LDR(pre + VW * b);
    if (relu) /* relu(NaN) = NaN, as torch: max returns its 2nd operand on NaN */
        for (int b = 0; b < NB; b++) v[b] = v_max(v_zero(), v[b]);
    else
        v_tanh_k(v, NB);
    for (int b = 0; b < NB; b++) {
        if (keep) STR(pre + VW * b, v[b]);
        STR(hx + VW * b, v[b]);
        STR(yb + VW * b, v[b]);
    }
}

/* The pipeline over units [j0, j1): FR_FAST_NBLK blocks at a time, then one, then
 * a partial last block (masked loads and stores, LDR), then the finish of
 * the last pending blocks. STAGE(j, NB, rem, NBP) is a stage call with the
 * pending blocks at unit jq (remp units in the last). */
#define PIPE_UNITS(STAGE)                                                      \
    do {                                                                       \
        int nbp_ = 0;                                                          \
        int64_t j = j0, jq = j0, remp = VW;                                    \
        for (; j + VW * FR_FAST_NBLK <= j1; j += VW * FR_FAST_NBLK) {          \
            if (nbp_) STAGE(j, FR_FAST_NBLK, VW, FR_FAST_NBLK);                \
            else STAGE(j, FR_FAST_NBLK, VW, 0);                                \
            nbp_ = FR_FAST_NBLK; jq = j;                                       \
        }                                                                      \
        for (; j < j1; j += VW) {                                              \
            const int64_t r_ = j1 - j < VW ? j1 - j : VW;                      \
            if (r_ == VW) {                                                    \
                if (nbp_ == FR_FAST_NBLK) STAGE(j, 1, VW, FR_FAST_NBLK);       \
                else if (nbp_) STAGE(j, 1, VW, 1);                             \
                else STAGE(j, 1, VW, 0);                                       \
            } else {                                                           \
                if (nbp_ == FR_FAST_NBLK) STAGE(j, 1, r_, FR_FAST_NBLK);       \
                else if (nbp_) STAGE(j, 1, r_, 1);                             \
                else STAGE(j, 1, r_, 0);                                       \
            }                                                                  \
            nbp_ = 1; jq = j; remp = r_;                                       \
        }                                                                      \
        if (nbp_ == FR_FAST_NBLK) STAGE(j, 0, VW, FR_FAST_NBLK);               \
        else if (nbp_) STAGE(j, 0, VW, 1);                                     \
    } while (0)

#define LSTM_STAGE(j, NB, rem, NBP)                                            \
    lstm_stage(pre + (j), H, cp + (j), cx + (j), keep, NB, rem, cq, oq,        \
               hx + jq, yb + jq, NBP, remp)
#define GRU_STAGE(j, NB, rem, NBP)                                             \
    gru_stage(pre + (j), gh + (j), H, bhn ? bhn + (j) : NULL,                  \
              gc ? gc + (j) : NULL, NB, rem, nq, zq, hp + jq, hx + jq,         \
              yb + jq, gc ? gc + jq : NULL, NBP, remp)

/* The pipelines of one cell type each, in functions of their own: one
 * function for all three kept its pending vectors in memory
 * (docs/tuning.md, "gate math"). */
static __attribute__((noinline)) TGT void lstm_units(int64_t H, int64_t j0, int64_t j1,
                                                     float *pre, const float *cp,
                                                     float *hx, float *cx, float *yb,
                                                     int keep)
{
    V cq[FR_FAST_NBLK], oq[FR_FAST_NBLK];
    PIPE_UNITS(LSTM_STAGE);
}

static __attribute__((noinline)) TGT void gru_units(int64_t H, int64_t j0, int64_t j1,
                                                    const float *pre, const float *gh,
                                                    const float *bhn, const float *hp,
                                                    float *hx, float *yb, float *gc)
{
    V nq[FR_FAST_NBLK], zq[FR_FAST_NBLK];
    PIPE_UNITS(GRU_STAGE);
}

/* Gate math for units [j0, j1) of one sequence row. j0 is a multiple of
 * VW. */
static TGT void cell_units(int cell, int64_t H, int64_t j0, int64_t j1,
                            float *pre, const float *gh, const float *bhn,
                            const float *hp, const float *cp, float *hx, float *cx,
                            float *yb, float *gc, int keep)
{
    if (cell == FR_CELL_LSTM) {
        lstm_units(H, j0, j1, pre, cp, hx, cx, yb, keep);
    } else if (cell == FR_CELL_GRU) {
        gru_units(H, j0, j1, pre, gh, bhn, hp, hx, yb, gc);
    } else {
        const int relu = cell == FR_CELL_RNN_RELU;
        int64_t j = j0;
        for (; j + 2 * VW * FR_FAST_NBLK <= j1; j += 2 * VW * FR_FAST_NBLK)
            rnn_cells(pre + j, relu, hx + j, yb + j, keep, 2 * FR_FAST_NBLK, VW);
        for (; j + VW <= j1; j += VW)
            rnn_cells(pre + j, relu, hx + j, yb + j, keep, 1, VW);
        if (j < j1)
            rnn_cells(pre + j, relu, hx + j, yb + j, keep, 1, j1 - j);
    }
}



/* Gradients of the gate pre-activations of VW units of one active row:
 *   g = dh + dy (total gradient of h_t)
 *   LSTM: c_t = f c + i gg, h = o tanh(c_t)
 *   GRU : n = tanh(xn + r hl), h = (1-z) n + z h_prev
 *   RNN : h = act(pre)
 * gt: the row's cached activations (stride H between gates); writes dgx, dgh
 * (GRU only) and the direct part of dL/dh_{t-1} into dhp; dc in place.
 * LSTM: tc = tanh(c_t), from bwd_cells. */
static inline INL TGT void bwd_cell8(int cell, int64_t H, const float *gt,
                                      const float *dh, const float *dyb,
                                      const float *hp, const float *cp, V tc,
                                      float *dc, float *dgx, float *dgh, float *dhp,
                                      const int64_t rem)
{
    const V one = v_set1(1.0f);
    V g = v_add(LDR(dh), LDR(dyb));
    if (cell == FR_CELL_LSTM) {
        V ig = LDR(gt), fg = LDR(gt + H);
        V gg = LDR(gt + 2 * H), og = LDR(gt + 3 * H);
        V dct = v_fmadd(v_mul(g, og), v_fnmadd(tc, tc, one),
                                     LDR(dc));
        STR(dgx, v_mul(v_mul(dct, gg),
                                            v_mul(ig, v_sub(one, ig))));
        STR(dgx + H, v_mul(v_mul(dct, LDR(cp)),
                                                v_mul(fg, v_sub(one, fg))));
        STR(dgx + 2 * H, v_mul(v_mul(dct, ig),
                                                    v_fnmadd(gg, gg, one)));
        STR(dgx + 3 * H, v_mul(v_mul(g, tc),
                                                    v_mul(og, v_sub(one, og))));
        STR(dc, v_mul(dct, fg));
        STR(dhp, v_zero());
    } else if (cell == FR_CELL_GRU) {
        V r = LDR(gt), z = LDR(gt + H);
        V n = LDR(gt + 2 * H), hl = LDR(gt + 3 * H);
        V dnp = v_mul(v_mul(g, v_sub(one, z)), v_fnmadd(n, n, one));
        V dzp = v_mul(v_mul(g, v_sub(LDR(hp), n)),
                                   v_mul(z, v_sub(one, z)));
        V drp = v_mul(v_mul(dnp, hl), v_mul(r, v_sub(one, r)));
        STR(dgx, drp); STR(dgx + H, dzp); STR(dgx + 2 * H, dnp);
        STR(dgh, drp); STR(dgh + H, dzp);
        STR(dgh + 2 * H, v_mul(dnp, r));
        STR(dhp, v_mul(g, z));
    } else {
        V h = LDR(gt), d;
        if (cell == FR_CELL_RNN_RELU)
            d = v_keep(v_gt(h, v_zero()), g);
        else
            d = v_mul(g, v_fnmadd(h, h, one));
        STR(dgx, d);
        STR(dhp, v_zero());
    }
}

/* bwd_cell8 on NB blocks of VW units from unit j (the LSTM's tanh(c_t) of
 * all NB blocks side by side) */
static inline INL TGT void bwd_cells(int cell, int64_t H, int64_t j, const float *gt,
                                      const float *dh, const float *dyb, const float *hp,
                                      const float *cp, const float *cx, float *dc,
                                      float *dgx, float *dgh, float *dhp, const int NB,
                                      const int64_t rem)
{
    V tc[FR_FAST_NBLK];
    for (int b = 0; b < NB; b++) tc[b] = v_zero();
    if (cell == FR_CELL_LSTM) {
        for (int b = 0; b < NB; b++) tc[b] = LDR(cx + j + VW * b);
        v_tanh_k(tc, NB);
    }
    for (int b = 0; b < NB; b++) {
        const int64_t u = j + VW * b;
        bwd_cell8(cell, H, gt + u, dh + u, dyb + u, hp ? hp + u : NULL, cp ? cp + u : NULL,
                  tc[b], dc ? dc + u : NULL, dgx + u, dgh ? dgh + u : NULL, dhp + u, rem);
    }
}

/* bwd_cells over units [j0, j1) of one row; the partial last block with
 * masked loads and stores (LDR: the same instructions for every unit). */
static TGT void bwd_units(int cell, int64_t H, int64_t j0, int64_t j1,
                           const float *gt, const float *dh, const float *dyb,
                           const float *hp, const float *cp, const float *cx,
                           float *dc, float *dgx, float *dgh, float *dhp)
{
    int64_t j = j0;
    for (; j + VW * FR_FAST_NBLK <= j1; j += VW * FR_FAST_NBLK)
        bwd_cells(cell, H, j, gt, dh, dyb, hp, cp, cx, dc, dgx, dgh, dhp, FR_FAST_NBLK, VW);
    for (; j + VW <= j1; j += VW)
        bwd_cells(cell, H, j, gt, dh, dyb, hp, cp, cx, dc, dgx, dgh, dhp, 1, VW);
    if (j < j1)
        bwd_cells(cell, H, j, gt, dh, dyb, hp, cp, cx, dc, dgx, dgh, dhp, 1, j1 - j);
}
