/*
 * The fast kernels' float32 GEMM on packed panels (fr_fast_sgemm, fast.h),
 * used for the input projection, the weight and input gradients and the
 * model layers. Needs isa.h and panels.h.
 */

/* ---- GEMM on packed panels ------------------------------------------------
 * C(M,N) (+)= op(A)(M,K) op(B)(K,N), row-major, for the kernels' float32
 * GEMMs (input projection, weight and input gradients, the model layers):
 * op(B) packed in VW-column panels, K in blocks of GEMM_KC, rows in tiles of
 * up to 8 sharing each group of GEMM_NP panel vectors. Every output is its old value
 * followed by one FMA chain over k in order, whatever the blocking, tiles
 * and thread split (threads own groups of panels), so the bits never depend
 * on the thread count. */
#define GEMM_KC 256
#define GEMM_MC 240

/* Rows of the big tile: 8 rows x 3 panels (GEMM_NP below) is 24
 * accumulators of AVX-512's 32 registers; AVX2 has 16, so 6 x 2 (12
 * accumulators, 2 panel vectors, one broadcast). */
#define GEMM_MR (VW == 16 ? 8 : 6)

/* Panels a tile spans: 8 rows x 3 panels is 24 accumulators, 3 panel
 * vectors and a broadcast of AVX-512's 32 registers (11 loads per 24 FMAs,
 * against 10 per 16 with 2 panels); AVX2 keeps 2. */
#if defined(FR_ISA_AVX512)
#define GEMM_NP 3
#else
#define GEMM_NP 2
#endif

/* Rows [0, mr) of a block of C against NP panels at P, op(A)'s block packed
 * at Ap in groups of GEMM_MR rows, k-major ([g][k][GEMM_MR]): tiles of
 * GEMM_MR, 4, then 1-3 rows, each inside one group, reading GEMM_MR
 * consecutive floats a k (A unpacked, 8 rows 2 KiB apart at K = 512, met in
 * the same few L1 sets: 300 GFLOP/s against 340-410 packed). */
static TGT void gemm_rows(const float *Ap, int64_t mr, const float *P, int64_t kc,
                          float *C, int64_t ldc, int64_t rem, int NP, int zero,
                          const float *init)
{
#define GEMM_AP(m) (Ap + ((m) / GEMM_MR) * kc * GEMM_MR + (m) % GEMM_MR)
#define GEMM_ROWS(NP_)                                                                       \
    do {                                                                                     \
        int64_t m = 0;                                                                       \
        for (; m + GEMM_MR <= mr; m += GEMM_MR) {                                            \
            /* the next tile's lines of C: read back from L3 past the first   \
             * K block, and new lines (write-allocated) in the first */         \
            for (int i_ = 0; i_ < GEMM_MR && m + GEMM_MR + i_ < mr; i_++)                    \
                for (int q_ = 0; q_ < NP_; q_ += 64 / (VW * 4) > 0 ? 64 / (VW * 4) : 1)       \
                    __builtin_prefetch(C + (m + GEMM_MR + i_) * ldc + q_ * VW, 1, 3);         \
            gemm_tile(GEMM_AP(m), GEMM_MR, 1, P, kc, C + m * ldc, ldc, rem, GEMM_MR, NP_, zero, init);   \
        }                                                                                    \
        for (; m + 4 <= mr; m += 4)                                                          \
            gemm_tile(GEMM_AP(m), GEMM_MR, 1, P, kc, C + m * ldc, ldc, rem, 4, NP_, zero, init);         \
        for (; m < mr; m++)                                                                  \
            gemm_tile(GEMM_AP(m), GEMM_MR, 1, P, kc, C + m * ldc, ldc, rem, 1, NP_, zero, init);         \
    } while (0)
#if GEMM_NP > 2
    if (NP == 3) GEMM_ROWS(3);
    else
#endif
    if (NP == 2) GEMM_ROWS(2);
    else GEMM_ROWS(1);
#undef GEMM_ROWS
#undef GEMM_AP
}

/* Rows [m0, m0+mr) and k [k0, k0+kc) of op(A) into groups of GEMM_MR rows,
 * k-major (the last group's missing rows are never read). */
static TGT void pack_a(const float *A, int64_t lda, int at, int64_t m0, int64_t mr,
                       int64_t k0, int64_t kc, float *Ap)
{
    const int64_t ng = (mr + GEMM_MR - 1) / GEMM_MR;
    if (at) {
        /* op(A) = A^T: row k of A holds this block's rows side by side.
         * Eight k at a time, every group: a group alone strides lda (8 KiB
         * for a GEMM over 4H = 2048 gate columns) and one k for every
         * group strides kc * GEMM_MR on the stores: either way each line
         * met the others in one L1 set (5-9% of a training step) */
        for (int64_t kb = 0; kb < kc; kb += 8) {
            const int64_t ke = kc - kb < 8 ? kc : kb + 8;
            for (int64_t g = 0; g < ng; g++) {
                float *o = Ap + g * kc * GEMM_MR;
                const int64_t n = mr - g * GEMM_MR < GEMM_MR ? mr - g * GEMM_MR : GEMM_MR;
                const float *a = A + k0 * lda + m0 + g * GEMM_MR;
                for (int64_t k = kb; k < ke; k++) {
                    if (n == 8 && GEMM_MR == 8)
                        _mm256_store_ps(o + k * 8, _mm256_loadu_ps(a + k * lda));
                    else if (n == 6 && GEMM_MR == 6) { /* 4 + 2 floats */
                        _mm_storeu_ps(o + k * 6, _mm_loadu_ps(a + k * lda));
                        _mm_storel_pi((__m64 *)(o + k * 6 + 4),
                                      _mm_loadl_pi(_mm_setzero_ps(), (const __m64 *)(a + k * lda + 4)));
                    } else
                        for (int64_t r = 0; r < n; r++) o[k * GEMM_MR + r] = a[k * lda + r];
                }
            }
        }
        return;
    }
    for (int64_t g = 0; g < ng; g++) {
        float *o = Ap + g * kc * GEMM_MR;
        const int64_t r0 = m0 + g * GEMM_MR;
        const int64_t n = mr - g * GEMM_MR < GEMM_MR ? mr - g * GEMM_MR : GEMM_MR;
        int64_t k8 = 0;
        if (n == 8 && GEMM_MR == 8) /* 8x8 blocks transposed in registers */
            for (; k8 + 8 <= kc; k8 += 8)
                transpose8_store(A + r0 * lda + k0 + k8, lda, o + k8 * 8, 8);
        if (n == 6 && GEMM_MR == 6) /* 6x8 blocks, the same way */
            for (; k8 + 8 <= kc; k8 += 8)
                transpose6x8_store(A + r0 * lda + k0 + k8, lda, o + k8 * 6);
        for (int64_t r = 0; r < n; r++) {
            const float *a = A + (r0 + r) * lda + k0;
            for (int64_t k = k8; k < kc; k++) o[k * GEMM_MR + r] = a[k];
        }
    }
}

/* Floats of one thread's packed block for N columns among nt threads. */
/* Columns of op(B) a thread packs at a time (a multiple of both builds'
 * groups, 48 and 16 columns): the packed block of K_C x GEMM_NC floats, 1 MiB,
 * stays the size of an L2 however wide C is (a 100k-word output layer
 * would otherwise pack 100 MiB at once). */
#define GEMM_NC 1056

/* Floats of a thread's packed block of op(B): K_C rows of the columns it
 * takes at a time (a multiple of 16: op(A)'s block after it stays aligned). */
static int64_t gemm_b_floats(int64_t N, int nt)
{
    const int64_t groups = (N + GEMM_NP * VW - 1) / (GEMM_NP * VW);
    int64_t cols = (groups + nt - 1) / nt * GEMM_NP * VW;
    if (cols > GEMM_NC) cols = GEMM_NC;
    return GEMM_KC * cols;
}

/* Floats of one thread's scratch: that block, then op(A)'s block. */
static int64_t gemm_thread_floats(int64_t N, int nt)
{
    const int64_t a = (GEMM_MC + GEMM_MR - 1) / GEMM_MR * GEMM_MR * GEMM_KC;
    return gemm_b_floats(N, nt) + (a + 15) / 16 * 16;
}

/* C = op(A) op(B) (beta 0) or C += op(A) op(B) (beta 1); ta, tb 'N' or
 * 'T' as BLAS. Returns 0, or -1 when the scratch could not be had (C is
 * then unchanged). */
TGT int FR_SFX(fr_fast_sgemm)(int nt, char ta, char tb, int64_t M, int64_t N, int64_t K,
                              const float *A, int64_t lda, const float *B, int64_t ldb,
                              int beta, float *C, int64_t ldc, const float *bias)
{
    const int64_t groups = (N + GEMM_NP * VW - 1) / (GEMM_NP * VW); /* of GEMM_NP panels */
    const int64_t rgroups = (M + GEMM_MR - 1) / GEMM_MR;            /* of GEMM_MR rows */
    /* Each thread packs all of the operand it does not split, and op(A)
     * once for every GEMM_NC columns of C it covers: split the rows of C
     * where that packs fewer floats than splitting the columns (the
     * backward's dX = dG W and dW = dG^T x, op(A) 4x the size of op(B)) */
    const int64_t ncol_thr = (N + nt - 1) / nt;
    const double pack_cols = (double)M * K * nt * ((ncol_thr + GEMM_NC - 1) / GEMM_NC)
                             + (double)K * N;
    const double pack_rows_ = (double)M * K * ((N + GEMM_NC - 1) / GEMM_NC) + (double)K * N * nt;
    const int by_rows = nt > 1 && rgroups >= 2 * (int64_t)nt && pack_rows_ < pack_cols;
    const int64_t parts = by_rows ? rgroups : groups;
    if (nt > parts) nt = (int)parts;
    if (nt < 1) nt = 1;
    const int bnt = by_rows ? 1 : nt; /* threads sharing op(B)'s columns */
    const int64_t per = gemm_thread_floats(N, bnt);
    float *buf = NULL;
    if (posix_memalign((void **)&buf, 64, (size_t)(per * nt) * sizeof(float)) != 0) return -1;
    const int at = ta == 'T' || ta == 't', bt = tb == 'T' || tb == 't';
#pragma omp parallel num_threads(nt) if (fr_omp_going(nt, nt > 1))
    {
        int tid = 0, nth = 1;
#ifdef _OPENMP
        tid = omp_get_thread_num();
        nth = omp_get_num_threads();
#endif
        /* nt slices of panel groups (or of row groups); a smaller team than
         * asked takes them in turn, each thread in its own part of the
         * scratch */
        float *P = buf + per * tid;
        float *Ap = P + gemm_b_floats(N, bnt); /* op(A)'s block */
        for (int sl = tid; sl < nt; sl += nth) {
            const int64_t p0 = parts * sl / nt, p1 = parts * (sl + 1) / nt;
            int64_t c0 = 0, c1 = N, r0 = 0, r1 = M;
            if (by_rows) {
                r0 = p0 * GEMM_MR;
                r1 = p1 * GEMM_MR < M ? p1 * GEMM_MR : M;
            } else {
                c0 = p0 * GEMM_NP * VW;
                c1 = p1 * GEMM_NP * VW < N ? p1 * GEMM_NP * VW : N;
            }
            /* beta 0: the first K block's tiles start from +0 instead of
             * reading C (K = 0: nothing to read C's garbage into, so zero it) */
            if (c1 > c0 && !beta && K == 0)
                for (int64_t m = r0; m < r1; m++) {
                    if (bias) memcpy(C + m * ldc + c0, bias + c0, (size_t)(c1 - c0) * sizeof(float));
                    else memset(C + m * ldc + c0, 0, (size_t)(c1 - c0) * sizeof(float));
                }
            for (int64_t cc0 = c0; cc0 < c1 && r1 > r0; cc0 += GEMM_NC) {
                const int64_t cc1 = c1 - cc0 < GEMM_NC ? c1 : cc0 + GEMM_NC;
                for (int64_t kb = 0; kb < K; kb += GEMM_KC) {
                    const int64_t kc = K - kb < GEMM_KC ? K - kb : GEMM_KC;
                    if (bt) pack_rows(B + kb, ldb, cc0, cc1 - cc0, kc, P);
                    else pack_copy(B, ldb, kb, kc, cc0, cc1, P);
                    for (int64_t mb = r0; mb < r1; mb += GEMM_MC) {
                        const int64_t mr = r1 - mb < GEMM_MC ? r1 - mb : GEMM_MC;
                        pack_a(A, lda, at, mb, mr, kb, kc, Ap);
                        for (int64_t c = cc0; c < cc1; c += GEMM_NP * VW) {
                            const int64_t left = (cc1 - c + VW - 1) / VW;
                            const int NP = left < GEMM_NP ? (int)left : GEMM_NP;
                            gemm_rows(Ap, mr, P + ((c - cc0) / VW) * kc * VW, kc,
                                      C + mb * ldc + c, ldc, N - c, NP, !beta && kb == 0,
                                      bias ? bias + c : NULL);
                        }
                    }
                }
            }
        }
    }
    free(buf);
    return 0;
}
