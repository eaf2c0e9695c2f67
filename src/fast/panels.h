/*
 * Packed panels: the recurrent products and the GEMM's inner tiles on
 * weights packed in VW-wide column panels, the packing routines (rows
 * transposed into panels, columns copied into panels) and the masked
 * loads and stores of partial vectors. Needs isa.h.
 */

/* ---- the recurrent products: packed panels ------------------------------ */

#if !defined(FR_ISA_AVX512)
/* Mask of the first n (0..8) lanes. */
static inline TGT __m256i lane_mask(int64_t n)
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), idx);
}
#endif

/* out[b, c] += sum_j g[b, j] P(j, c) for b < B and c < n, where the columns
 * come in VW-wide panels P + (c/VW)*J*VW holding P(j, c) at [j*VW + c%VW] (zero
 * padded). Both recurrent products have this form:
 *   forward : g = h_prev (B,H), J = H, panels of W_hh rows, out = Xp rows
 *   backward: g = dG_h (B,G*H), J = G*H, panels of W_hh columns, out = dh_prev
 * Tiles: 4 sequences x 2 panels, leftover sequences 1 x up to 8 panels (8
 * FMA chains even at batch 1). rows, when given, lists the B sequence rows
 * to use (the active ones of a variable-length batch); NULL means 0..B-1.
 * Every output is its old value followed by one FMA chain over j in order,
 * whatever the tile, so tiling and thread slicing never change a bit. */

/* The accumulators of a tile: rem = columns left from p (<= 0: none). Whole
 * panels use plain loads and stores: AMD's masked store is microcoded, and
 * costs a sizeable part of a short tile (docs/tuning.md). */
static inline TGT V acc_load(const float *p, int64_t rem)
{
#if defined(FR_ISA_AVX512)
    return rem >= VW ? v_ld(p) : _mm512_maskz_loadu_ps(v_head(rem > 0 ? rem : 0), p);
#else
    return rem >= VW ? v_ld(p) : _mm256_maskload_ps(p, lane_mask(rem));
#endif
}

static inline TGT void acc_store(float *p, int64_t rem, V v)
{
#if defined(FR_ISA_AVX512)
    if (rem >= VW) v_st(p, v);
    else _mm512_mask_storeu_ps(p, v_head(rem > 0 ? rem : 0), v);
#else
    if (rem >= VW) v_st(p, v);
    else _mm256_maskstore_ps(p, lane_mask(rem), v);
#endif
}

/* R rows of op(A) from A (row r at A + r*am, element k at + k*ak; at = 1
 * means am = 1, ak = lda, else ak = 1) against NP (1-3) panels of kc rows
 * at P (the next at P + kc*VW, ...), into C (row stride ldc), rem columns
 * left from the first panel; zero: C's old values are taken as +0 (not
 * read), which is what a zeroed C would give, bit for bit, or, with init,
 * as the row at init (every row's, as a C filled with that row would give). */
static inline INL TGT void gemm_tile(const float *A, int64_t lda, const int at,
                                     const float *P, int64_t kc, float *C, int64_t ldc,
                                     int64_t rem, const int R, const int NP, int zero,
                                     const float *init)
{
    V acc[8][3];
    for (int r = 0; r < R; r++)
        for (int q = 0; q < NP; q++)
            acc[r][q] = !zero ? acc_load(C + r * ldc + q * VW, rem - q * VW)
                        : init ? acc_load(init + q * VW, rem - q * VW) : v_zero();
    const float *P1 = P + kc * VW, *P2 = P + 2 * kc * VW;
    for (int64_t k = 0; k < kc; k++) {
        const V w0 = v_lda(P + k * VW);
        const V w1 = NP > 1 ? v_lda(P1 + k * VW) : w0, w2 = NP > 2 ? v_lda(P2 + k * VW) : w0;
        for (int r = 0; r < R; r++) {
            const V a = at ? v_bcast(A + k * lda + r) : v_bcast(A + r * lda + k);
            acc[r][0] = v_fmadd(a, w0, acc[r][0]);
            if (NP > 1) acc[r][1] = v_fmadd(a, w1, acc[r][1]);
            if (NP > 2) acc[r][2] = v_fmadd(a, w2, acc[r][2]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int q = 0; q < NP; q++) acc_store(C + r * ldc + q * VW, rem - q * VW, acc[r][q]);
}

#define ROW(i) (rows ? rows[i] : (i))

/* R sequences (rows g_[i], outputs o_[i]) x 2 panels (P0, P1; m0, m1
 * columns left from each) over j < J, each output its old value followed by
 * one FMA chain over j in order, one variable an accumulator: 4 rows inline
 * in panel_axpy (8 accumulators), and for AVX2 6 rows (12 of its 16
 * registers, 8 loads per 12 FMAs against 6 per 8) in tile_6x2, a function
 * of its own: inlined into panel_axpy, or with its accumulators in an
 * array, GCC kept row pointers or accumulators on the stack and touched
 * them every j; the 4-row tile stays inline, where it was faster than as
 * a call (docs/tuning.md, "panel tiles"). */
#define TILE_X2_DECL(i)                                                        \
    const float *g##i = g_[i];                                                 \
    V a##i##0 = acc_load(o_[i], m0), a##i##1 = acc_load(o_[i] + off1, m1);
#define TILE_X2_FMA(i)                                                         \
    v = v_bcast(g##i + j);                                                     \
    a##i##0 = v_fmadd(v, r0, a##i##0); a##i##1 = v_fmadd(v, r1, a##i##1);
#define TILE_X2_STORE(i) acc_store(o_[i], m0, a##i##0); acc_store(o_[i] + off1, m1, a##i##1);
#define TILE_X3_DECL(i)                                                        \
    const float *g##i = g_[i];                                                 \
    V a##i##0 = acc_load(o_[i], m0), a##i##1 = acc_load(o_[i] + off1, m1),     \
      a##i##2 = acc_load(o_[i] + off2, m2);
#define TILE_X3_FMA(i)                                                         \
    v = v_bcast(g##i + j);                                                     \
    a##i##0 = v_fmadd(v, r0, a##i##0); a##i##1 = v_fmadd(v, r1, a##i##1);      \
    a##i##2 = v_fmadd(v, r2, a##i##2);
#define TILE_X3_STORE(i) acc_store(o_[i], m0, a##i##0);                        \
    acc_store(o_[i] + off1, m1, a##i##1); acc_store(o_[i] + off2, m2, a##i##2);
#define TILE_ROWS4(X) X(0) X(1) X(2) X(3)
#define TILE_ROWS5(X) TILE_ROWS4(X) X(4)
#define TILE_ROWS6(X) TILE_ROWS5(X) X(5)
#define TILE_X2_BODY(ROWS)                                                     \
    do {                                                                       \
        ROWS(TILE_X2_DECL)                                                     \
        for (int64_t j = 0; j < J; j++) {                                      \
            const V r0 = v_lda(P0 + j * VW), r1 = v_lda(P1 + j * VW);          \
            V v;                                                               \
            ROWS(TILE_X2_FMA)                                                  \
        }                                                                      \
        ROWS(TILE_X2_STORE)                                                    \
    } while (0)
#if VW == 8
static __attribute__((noinline)) TGT void tile_6x2(const float *const *g_, float *const *o_,
                                                    const float *P0, const float *P1,
                                                    int64_t J, int64_t off1, int64_t m0,
                                                    int64_t m1)
{
    TILE_X2_BODY(TILE_ROWS6);
}
static __attribute__((noinline)) TGT void tile_5x2(const float *const *g_, float *const *o_,
                                                    const float *P0, const float *P1,
                                                    int64_t J, int64_t off1, int64_t m0,
                                                    int64_t m1)
{
    TILE_X2_BODY(TILE_ROWS5);
}
/* 4 rows x 3 panels (P0, P1, P2; outputs at o_, o_ + off1, o_ + off2; m0,
 * m1, m2 columns left in each): 12 accumulators, 7 loads per 12 FMAs */
static __attribute__((noinline)) TGT void tile_4x3(const float *const *g_, float *const *o_,
                                                    const float *P0, const float *P1,
                                                    const float *P2, int64_t J, int64_t off1,
                                                    int64_t off2, int64_t m0, int64_t m1,
                                                    int64_t m2)
{
    TILE_ROWS4(TILE_X3_DECL)
    for (int64_t j = 0; j < J; j++) {
        const V r0 = v_lda(P0 + j * VW), r1 = v_lda(P1 + j * VW), r2 = v_lda(P2 + j * VW);
        V v;
        TILE_ROWS4(TILE_X3_FMA)
    }
    TILE_ROWS4(TILE_X3_STORE)
}
#endif

/* Panel k of gate q in G gates' panel sequence (nbg panels a gate, pgs
 * panels between the gates' first panels at P, ogs columns between their
 * first outputs): its vectors, first output column and columns left; and
 * the step from a panel to the next (walked, never divided out, in the
 * loops). */
#define GPQK(q, k) (P + ((q) * pgs + (k)) * J * VW)
#define GCOLQK(q, k) ((q) * ogs + (k) * VW)
#define GREMK(k) (n - (k) * VW)
#define GNEXT(q, k)                                                               \
    do {                                                                          \
        if (++(k) == nbg) { (k) = 0; (q)++; }                                     \
    } while (0)
/* R sequences (rows b0..b0+R-1) x NP panels from panel c (gate cg,
 * panel ck of it; all three advance past them): the panel
 * vectors are loaded once per j and shared by the R rows (the 1-3 rows
 * left over every panel: B = 1..3 reads W_hh once per step, not once per
 * row) */
#define GPANEL_TILE_RxN(R, NP)                                                    \
    do {                                                                          \
        V a[R][NP];                                                               \
        float *o_[R];                                                             \
        const float *g_[R], *Pq[NP];                                              \
        int64_t cq[NP], mq[NP];                                                   \
        for (int q = 0; q < NP; q++) {                                            \
            Pq[q] = GPQK(cg, ck); cq[q] = GCOLQK(cg, ck); mq[q] = GREMK(ck);      \
            GNEXT(cg, ck);                                                        \
        }                                                                         \
        for (int r_ = 0; r_ < R; r_++) {                                          \
            o_[r_] = out + ROW(b0 + r_) * ldo;                                    \
            g_[r_] = g + ROW(b0 + r_) * ldg;                                      \
            for (int q = 0; q < NP; q++)                                          \
                a[r_][q] = acc_load(o_[r_] + cq[q], mq[q]);                       \
        }                                                                         \
        for (int64_t j = 0; j < J; j++) {                                         \
            V w_[NP];                                                             \
            for (int q = 0; q < NP; q++) w_[q] = v_lda(Pq[q] + j * VW);           \
            for (int r_ = 0; r_ < R; r_++) {                                      \
                const V v = v_bcast(g_[r_] + j);                                  \
                for (int q = 0; q < NP; q++)                                      \
                    a[r_][q] = v_fmadd(v, w_[q], a[r_][q]);                       \
            }                                                                     \
        }                                                                         \
        for (int r_ = 0; r_ < R; r_++)                                            \
            for (int q = 0; q < NP; q++)                                          \
                acc_store(o_[r_] + cq[q], mq[q], a[r_][q]);                       \
        c += NP;                                                                  \
    } while (0)

/* The `left` (1-3) rows from b0 over the panels from c (cg, ck) to np */
#define GPANEL_LEFTOVERS()                                                        \
    do {                                                                          \
        if (left == 3) {                                                          \
            while (c + 3 <= np) GPANEL_TILE_RxN(3, 3);                            \
            while (c < np) GPANEL_TILE_RxN(3, 1);                                 \
        } else if (left == 2) {                                                   \
            while (c + 4 <= np) GPANEL_TILE_RxN(2, 4);                            \
            while (c < np) GPANEL_TILE_RxN(2, 1);                                 \
        } else if (left == 1) {                                                   \
            while (c + 8 <= np) GPANEL_TILE_RxN(1, 8);                            \
            while (c + 4 <= np) GPANEL_TILE_RxN(1, 4);                            \
            while (c + 2 <= np) GPANEL_TILE_RxN(1, 2);                            \
            while (c < np) GPANEL_TILE_RxN(1, 1);                                 \
        }                                                                         \
    } while (0)

static TGT void panel_axpy_gates(const float *g, int64_t ldg, int64_t B, int64_t J,
                                 const float *P, int64_t pgs, float *out, int64_t ogs,
                                 int64_t ldo, int64_t n, int G, const int64_t *rows);

static TGT void panel_axpy(const float *g, int64_t ldg, int64_t B, int64_t J,
                            const float *P, float *out, int64_t ldo, int64_t n,
                            const int64_t *rows)
{
#if VW == 8
    /* AVX2: one gate of panel_axpy_gates, which holds the 6-, 5- and 4-row
     * tiles */
    panel_axpy_gates(g, ldg, B, J, P, 0, out, 0, ldo, n, 1, rows);
#else
    const int64_t np = (n + VW - 1) / VW;
    /* leftover sequences, done over all panels at once at the end */
    int64_t left = B % 4;
    /* rows in order (not a var-length batch's active list): tiles of 8
     * rows, then the 4-7 left, over groups of 3 panels, as the GEMM's
     * (AVX-512's 32 registers hold up to 24 accumulators); 1-3 rows left
     * take the tiles below */
    if (!rows) {
        const int64_t B8 = B - B % 8, rest = B - B8;
        for (int64_t c = 0; c < np; c += 3) {
            const int NPc = np - c < 3 ? (int)(np - c) : 3;
            const float *Pc = P + c * J * VW;
            float *oc = out + VW * c;
            const int64_t rem = n - VW * c;
#define PAXPY_TILE(R_, b_)                                                               \
            do {                                                                         \
                if (NPc == 3) gemm_tile(g + (b_) * ldg, ldg, 0, Pc, J, oc + (b_) * ldo, ldo, rem, R_, 3, 0, NULL); \
                else if (NPc == 2) gemm_tile(g + (b_) * ldg, ldg, 0, Pc, J, oc + (b_) * ldo, ldo, rem, R_, 2, 0, NULL); \
                else gemm_tile(g + (b_) * ldg, ldg, 0, Pc, J, oc + (b_) * ldo, ldo, rem, R_, 1, 0, NULL); \
            } while (0)
            for (int64_t b = 0; b < B8; b += 8) PAXPY_TILE(8, b);
            switch (rest) {
            case 7: PAXPY_TILE(7, B8); break;
            case 6: PAXPY_TILE(6, B8); break;
            case 5: PAXPY_TILE(5, B8); break;
            case 4: PAXPY_TILE(4, B8); break;
            default: break;
            }
#undef PAXPY_TILE
        }
        left = rest >= 4 ? 0 : rest;
    } else {
        /* a var-length batch's active rows: 4-row tiles over panel pairs */
        const int64_t Bt = B - left; /* rows the 4-row tiles take */
        for (int64_t c0 = 0; c0 < np; c0 += 2) {
            const int two = c0 + 1 < np;
            const int64_t m0 = n - VW * c0, m1 = two ? n - VW * (c0 + 1) : 0; /* columns left */
            const float *P0 = P + c0 * J * VW, *P1 = two ? P0 + J * VW : P0; /* P0 again: unused */
            const int64_t off1 = VW;
            for (int64_t b = 0; b + 4 <= Bt; b += 4) {
                const float *const g_[4] = {g + ROW(b) * ldg, g + ROW(b + 1) * ldg,
                                            g + ROW(b + 2) * ldg, g + ROW(b + 3) * ldg};
                float *const o_[4] = {out + ROW(b) * ldo + VW * c0, out + ROW(b + 1) * ldo + VW * c0,
                                      out + ROW(b + 2) * ldo + VW * c0,
                                      out + ROW(b + 3) * ldo + VW * c0};
                TILE_X2_BODY(TILE_ROWS4);
            }
        }
    }
    /* leftover sequences (`left` of them), over all panels at once */
    const int64_t b0 = B - left, nbg = np, pgs = 0, ogs = 0; /* one gate */
    int64_t c = 0, cg = 0, ck = 0;
    GPANEL_LEFTOVERS();
#endif
}

/* panel_axpy over G gates at once: gate q's n columns at out + q*ogs from
 * its panels at P + q*pgs panels (of J*VW floats). On AVX2 the tiles run
 * over the panels of every gate in one sequence, so a gate's partial last
 * panel pairs with the next gate's first (per gate, H = 77 or 100 left an
 * odd panel or a 3 x 1 tail in every gate); each output is the same FMA
 * chain as per gate, so the bits are those of G calls of panel_axpy. */

static TGT void panel_axpy_gates(const float *g, int64_t ldg, int64_t B, int64_t J,
                                 const float *P, int64_t pgs, float *out, int64_t ogs,
                                 int64_t ldo, int64_t n, int G, const int64_t *rows)
{
#if VW == 16
    const int64_t nbg = (n + VW - 1) / VW;
    if (B < 4) {
        /* 1-3 rows: every gate's panels in one pass, so that several FMA
         * chains are in flight (a gate of under 4 panels at a time ran one
         * or two, each waiting on its FMA's latency) and a gate's last
         * panels share a full tile with the next gate's (a gate at a time
         * ended each gate in a 1-3 x 1 tile) (docs/tuning.md, "panel
         * tiles") */
        const int64_t np = G * nbg, b0 = 0, left = B;
        int64_t c = 0, cg = 0, ck = 0;
        GPANEL_LEFTOVERS();
        return;
    }
    for (int q = 0; q < G; q++)
        panel_axpy(g, ldg, B, J, P + q * pgs * J * VW, out + q * ogs, ldo, n, rows);
#else
    const int64_t nbg = (n + VW - 1) / VW, np = G * nbg;
    /* AVX2: tiles of 6 sequences x 2 panels first (12 accumulators, 8 loads
     * per 12 FMAs against 6 per 8); 5 left take one 5 x 2 tile rather than
     * 4 x 2 and a second pass over every panel for the last row; 1-3 rows
     * left take their own pass below rather than 1-3 x 2 tiles on the pair
     * the 6-row tiles just read.
     * 1-3 rows left after tiles of 6: n5 tiles of 5 rows instead, where
     * that takes every row (5 n5 = -B mod 6), rather than a second pass
     * over every panel for those rows (20 rows: 4 x 5 against 3 x 6 + 2);
     * 4 left take a 4-row tile (not 5 + 5 for 10 rows). The figures:
     * docs/tuning.md, "panel tiles". */
    int64_t n5 = B % 6 == 4 ? 0 : (6 - B % 6) % 6;
    if (5 * n5 > B) n5 = 0;
    const int64_t B6 = B - 5 * n5 - (B - 5 * n5) % 6, r6 = B - 5 * n5 - B6;
    const int64_t left = r6 >= 4 ? r6 - 4 : r6;
    const int64_t Bt = B - left; /* rows the 6-, 5- and 4-row tiles take */
    int64_t cstart = 0;
    /* exactly 4 rows: 4 x 3 tiles (12 accumulators; the 4 x 2 tile's 8
     * FMA chains are just the FMA units' latency times their width, and
     * any late load stalls them) */
    int64_t cg = 0, ck = 0; /* gate and panel in it of panel cstart */
    if (B == 4) {
        const float *const g4[4] = {g + ROW(0) * ldg, g + ROW(1) * ldg, g + ROW(2) * ldg,
                                    g + ROW(3) * ldg};
        for (; cstart + 3 <= np; cstart += 3) {
            int64_t q1 = cg, k1 = ck, q2, k2;
            GNEXT(q1, k1);
            q2 = q1, k2 = k1;
            GNEXT(q2, k2);
            const int64_t col0 = GCOLQK(cg, ck);
            float *const o4[4] = {out + ROW(0) * ldo + col0, out + ROW(1) * ldo + col0,
                                  out + ROW(2) * ldo + col0, out + ROW(3) * ldo + col0};
            for (int i = 0; i < 4; i++) __builtin_prefetch(o4[i] + 3 * VW, 1, 3);
            tile_4x3(g4, o4, GPQK(cg, ck), GPQK(q1, k1), GPQK(q2, k2), J,
                     GCOLQK(q1, k1) - col0, GCOLQK(q2, k2) - col0, GREMK(ck), GREMK(k1),
                     GREMK(k2));
            cg = q2, ck = k2;
            GNEXT(cg, ck);
        }
    }
    int64_t q0 = cg, k0 = ck; /* of panel c0 */
    for (int64_t c0 = cstart; c0 < np && Bt > 0; c0 += 2) {
        const int two = c0 + 1 < np;
        int64_t q1 = q0, k1 = k0;
        GNEXT(q1, k1);
        const int64_t col0 = GCOLQK(q0, k0), off1 = two ? GCOLQK(q1, k1) - col0 : 0;
        const int64_t m0 = GREMK(k0), m1 = two ? GREMK(k1) : 0; /* columns left */
        const float *P0 = GPQK(q0, k0), *P1 = two ? GPQK(q1, k1) : P0; /* P0 again: unused */
        for (int64_t b = 0; b < B6 + 5 * n5;) { /* the 6-row tiles, then the 5-row */
            const int R = b < B6 ? 6 : 5;
            const float *gr[6];
            float *orow[6];
            for (int i = 0; i < R; i++) {
                gr[i] = g + ROW(b + i) * ldg;
                orow[i] = out + ROW(b + i) * ldo + col0;
                __builtin_prefetch(orow[i] + 2 * VW, 1, 3);
            }
            if (R == 6) tile_6x2(gr, orow, P0, P1, J, off1, m0, m1);
            else tile_5x2(gr, orow, P0, P1, J, off1, m0, m1);
            b += R;
        }
        for (int64_t b = B6 + 5 * n5; b + 4 <= Bt; b += 4) {
            const float *const g_[4] = {g + ROW(b) * ldg, g + ROW(b + 1) * ldg,
                                        g + ROW(b + 2) * ldg, g + ROW(b + 3) * ldg};
            float *const o_[4] = {out + ROW(b) * ldo + col0, out + ROW(b + 1) * ldo + col0,
                                  out + ROW(b + 2) * ldo + col0, out + ROW(b + 3) * ldo + col0};
            for (int i = 0; i < 4; i++) __builtin_prefetch(o_[i] + 2 * VW, 1, 3);
            TILE_X2_BODY(TILE_ROWS4);
        }
        q0 = q1, k0 = k1;
        GNEXT(q0, k0);
    }
    /* leftover sequences (`left` of them), over every gate's panels */
    const int64_t b0 = B - left;
    int64_t c = cstart;
    GPANEL_LEFTOVERS();
#endif
}
#undef GPANEL_TILE_RxN
#undef GPANEL_LEFTOVERS
#undef GPQK
#undef GCOLQK
#undef GREMK
#undef GNEXT

#undef ROW

/* The 8x8 transpose in registers: r[i] holds row i on entry, column i on
 * return. */
static inline INL AVX2 void transpose8_regs(__m256 *r)
{
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/* Rows r..r+7 of W, columns k..k+7, transposed in registers: column k+c
 * goes to o + c * ostride (8 floats, 32-byte aligned). */
static inline AVX2 void transpose8_store(const float *w, int64_t ldw, float *o, int64_t ostride)
{
    __m256 r[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(w + i * ldw);
    transpose8_regs(r);
    for (int i = 0; i < 8; i++) _mm256_store_ps(o + i * ostride, r[i]);
}

/* Rows r..r+5 of W, columns k..k+7, transposed in registers: column k+c
 * (6 floats) goes to o + 6c. Each of the first seven stores writes 8
 * floats, its last 2 into the next column's place, which the next store
 * then writes: so the 8 columns go out in order and the last one writes
 * just its 6. */
static inline AVX2 void transpose6x8_store(const float *w, int64_t ldw, float *o)
{
    __m256 r[8];
    for (int i = 0; i < 6; i++) r[i] = _mm256_loadu_ps(w + i * ldw);
    r[6] = r[7] = _mm256_setzero_ps();
    transpose8_regs(r);
    for (int i = 0; i < 7; i++) _mm256_storeu_ps(o + 6 * i, r[i]);
    _mm_storeu_ps(o + 42, _mm256_castps256_ps128(r[7]));
    _mm_storel_pi((__m64 *)(o + 46), _mm256_extractf128_ps(r[7], 1));
}

/* Pack rows [r0, r0+n) of W (ldw apart), K columns, in panels for
 * panel_axpy: panel p holds W[r0 + VW p + i, k] at [k*VW + i] (W_hh's gate
 * rows with K = H, W_ih's with K = In, or a GEMM's op(B) = B^T); lanes past
 * n are zero. */
static TGT void pack_rows(const float *W, int64_t ldw, int64_t r0, int64_t n,
                          int64_t K, float *P)
{
    const int64_t K8 = K & ~(int64_t)7;
    for (int64_t p = 0; p * VW < n; p++) {
        float *Pp = P + p * K * VW;
        const int64_t m = n - VW * p < VW ? n - VW * p : VW;
        const float *w = W + (r0 + VW * p) * ldw;
        if (m == VW) { /* 8x8 blocks transposed in registers, contiguous stores */
            for (int64_t k = 0; k < K8; k += 8)
                for (int h = 0; h < VW; h += 8)
                    transpose8_store(w + h * ldw + k, ldw, Pp + k * VW + h, VW);
            for (int64_t k = K8; k < K; k++)
                for (int64_t i = 0; i < VW; i++) Pp[k * VW + i] = w[i * ldw + k];
            continue;
        }
        for (int64_t i = 0; i < VW; i++) {
            if (i < m) for (int64_t k = 0; k < K; k++) Pp[k * VW + i] = w[i * ldw + k];
            else for (int64_t k = 0; k < K; k++) Pp[k * VW + i] = 0;
        }
    }
}


/* Rows [k0, k0+kc) of B (K,N) row-major, columns [c0, c1), into panels of
 * kc x VW at P (zero past c1). */
static TGT void pack_copy(const float *B, int64_t ldb, int64_t k0, int64_t kc,
                          int64_t c0, int64_t c1, float *P)
{
    for (int64_t c = c0; c < c1; c += VW) {
        float *Pp = P + ((c - c0) / VW) * kc * VW;
        const int64_t w = c1 - c < VW ? c1 - c : VW;
        for (int64_t k = 0; k < kc; k++) {
            const float *b = B + (k0 + k) * ldb + c;
            if (w == VW) v_sta(Pp + k * VW, v_ld(b));
            else v_sta(Pp + k * VW, acc_load(b, w));
        }
    }
}
