/*
 * The fast kernels' float32 GEMM on packed panels (fr_fast_sgemm, fast.h),
 * used for the input projection, the weight and input gradients and the
 * model layers. Needs isa.h and panels.h.
 */

/* C(M,N) (+)= op(A)(M,K) op(B)(K,N), row-major: op(B) packed in VW-column
 * panels, K in blocks of FR_GEMM_KC, op(A) in blocks of FR_GEMM_MC rows
 * packed in groups of FR_GEMM_MR, rows in tiles of up to FR_GEMM_MR
 * sharing each group of FR_GEMM_NP panel vectors (tuning.h). Every output
 * is its old value followed by one FMA chain over k in order, whatever the
 * blocking, tiles and thread split (threads own groups of panels, or of
 * rows), so the bits never depend on the thread count or the width. */

/* Rows [0, mr) of a block of C against NP panels at P, op(A)'s block packed
 * at Ap in groups of FR_GEMM_MR rows, k-major ([g][k][FR_GEMM_MR]): tiles of
 * FR_GEMM_MR, 4, then 1-3 rows, each inside one group, reading FR_GEMM_MR
 * consecutive floats a k (A unpacked, 8 rows 2 KiB apart at K = 512 meet
 * in the same few L1 sets; docs/tuning.md, "packed op(A)"). */
static TGT void gemm_rows(const float *Ap, int64_t mr, const float *P, int64_t kc,
                          float *C, int64_t ldc, int64_t rem, int NP, int zero,
                          const float *init)
{
#define GEMM_AP(m) (Ap + ((m) / FR_GEMM_MR) * kc * FR_GEMM_MR + (m) % FR_GEMM_MR)
#define GEMM_TILE(m, R, NP_) \
    gemm_tile(GEMM_AP(m), FR_GEMM_MR, 1, P, kc, C + (m) * ldc, ldc, rem, R, NP_, zero, init)
#define GEMM_ROWS(NP_)                                                                 \
    do {                                                                               \
        int64_t m = 0;                                                                 \
        for (; m + FR_GEMM_MR <= mr; m += FR_GEMM_MR) {                                \
            /* the next tile's lines of C: read back from L3 past the first K block,   \
             * and new lines (write-allocated) in the first */                         \
            for (int i_ = 0; i_ < FR_GEMM_MR && m + FR_GEMM_MR + i_ < mr; i_++)        \
                for (int q_ = 0; q_ < NP_; q_ += 64 / (VW * 4) > 0 ? 64 / (VW * 4) : 1) \
                    __builtin_prefetch(C + (m + FR_GEMM_MR + i_) * ldc + q_ * VW, 1, 3); \
            GEMM_TILE(m, FR_GEMM_MR, NP_);                                             \
        }                                                                              \
        for (; m + 4 <= mr; m += 4) GEMM_TILE(m, 4, NP_);                              \
        for (; m < mr; m++) GEMM_TILE(m, 1, NP_);                                      \
    } while (0)
#if FR_GEMM_NP > 2
    if (NP == 3) GEMM_ROWS(3);
    else
#endif
    if (NP == 2) GEMM_ROWS(2);
    else GEMM_ROWS(1);
#undef GEMM_ROWS
#undef GEMM_TILE
#undef GEMM_AP
}

/* Rows [m0, m0+mr) and k [k0, k0+kc) of op(A) into groups of FR_GEMM_MR rows,
 * k-major (the last group's missing rows are never read). */
static TGT void pack_a(const float *A, int64_t lda, int at, int64_t m0, int64_t mr,
                       int64_t k0, int64_t kc, float *Ap)
{
    const int64_t ng = (mr + FR_GEMM_MR - 1) / FR_GEMM_MR;
    if (at) {
        /* op(A) = A^T: row k of A holds this block's rows side by side.
         * Eight k at a time, every group: a group alone strides lda (8 KiB
         * for a GEMM over 4H = 2048 gate columns) and one k for every
         * group strides kc * FR_GEMM_MR on the stores: either way each line
         * met the others in one L1 set */
        for (int64_t kb = 0; kb < kc; kb += 8) {
            const int64_t ke = kc - kb < 8 ? kc : kb + 8;
            for (int64_t g = 0; g < ng; g++) {
                float *o = Ap + g * kc * FR_GEMM_MR;
                const int64_t n =
                    mr - g * FR_GEMM_MR < FR_GEMM_MR ? mr - g * FR_GEMM_MR : FR_GEMM_MR;
                const float *a = A + k0 * lda + m0 + g * FR_GEMM_MR;
                for (int64_t k = kb; k < ke; k++) {
                    if (n == 8 && FR_GEMM_MR == 8)
                        _mm256_store_ps(o + k * 8, _mm256_loadu_ps(a + k * lda));
                    else if (n == 6 && FR_GEMM_MR == 6) { /* 4 + 2 floats */
                        _mm_storeu_ps(o + k * 6, _mm_loadu_ps(a + k * lda));
                        _mm_storel_pi((__m64 *)(o + k * 6 + 4),
                                      _mm_loadl_pi(_mm_setzero_ps(), (const __m64 *)(a + k * lda + 4)));
                    } else
                        for (int64_t r = 0; r < n; r++) o[k * FR_GEMM_MR + r] = a[k * lda + r];
                }
            }
        }
        return;
    }
    for (int64_t g = 0; g < ng; g++) {
        float *o = Ap + g * kc * FR_GEMM_MR;
        const int64_t r0 = m0 + g * FR_GEMM_MR;
        const int64_t n = mr - g * FR_GEMM_MR < FR_GEMM_MR ? mr - g * FR_GEMM_MR : FR_GEMM_MR;
        int64_t k8 = 0;
        if (n == 8 && FR_GEMM_MR == 8) /* 8x8 blocks transposed in registers */
            for (; k8 + 8 <= kc; k8 += 8)
                transpose8_store(A + r0 * lda + k0 + k8, lda, o + k8 * 8, 8);
        if (n == 6 && FR_GEMM_MR == 6) /* 6x8 blocks, the same way */
            for (; k8 + 8 <= kc; k8 += 8)
                transpose6x8_store(A + r0 * lda + k0 + k8, lda, o + k8 * 6);
        for (int64_t r = 0; r < n; r++) {
            const float *a = A + (r0 + r) * lda + k0;
            for (int64_t k = k8; k < kc; k++) o[k * FR_GEMM_MR + r] = a[k];
        }
    }
}

/* Floats of a thread's packed block of op(B): FR_GEMM_KC rows of the
 * columns it takes at a time, at most FR_GEMM_NC (a multiple of 16: op(A)'s
 * block after it stays aligned). */
static int64_t gemm_b_floats(int64_t N, int nt)
{
    const int64_t groups = (N + FR_GEMM_NP * VW - 1) / (FR_GEMM_NP * VW);
    int64_t cols = (groups + nt - 1) / nt * FR_GEMM_NP * VW;
    if (cols > FR_GEMM_NC) cols = FR_GEMM_NC;
    return FR_GEMM_KC * cols;
}

/* Floats of one thread's scratch: that block, then op(A)'s block. */
static int64_t gemm_thread_floats(int64_t N, int nt)
{
    const int64_t a = (FR_GEMM_MC + FR_GEMM_MR - 1) / FR_GEMM_MR * FR_GEMM_MR * FR_GEMM_KC;
    return gemm_b_floats(N, nt) + (a + 15) / 16 * 16;
}

/* C = op(A) op(B) (beta 0) or C += op(A) op(B) (beta 1); ta, tb 'N' or
 * 'T' as BLAS. Returns 0, or -1 when the scratch could not be had (C is
 * then unchanged). */
TGT int FR_SFX(fr_fast_sgemm)(int nt, char ta, char tb, int64_t M, int64_t N, int64_t K,
                              const float *A, int64_t lda, const float *B, int64_t ldb,
                              int beta, float *C, int64_t ldc, const float *bias)
{
    const int64_t groups = (N + FR_GEMM_NP * VW - 1) / (FR_GEMM_NP * VW); /* of FR_GEMM_NP panels */
    const int64_t rgroups = (M + FR_GEMM_MR - 1) / FR_GEMM_MR;            /* of FR_GEMM_MR rows */
    /* Each thread packs all of the operand it does not split, and op(A)
     * once for every FR_GEMM_NC columns of C it covers: split the rows of C
     * where that packs fewer floats than splitting the columns (the
     * backward's dX = dG W and dW = dG^T x, op(A) 4x the size of op(B)) */
    const int64_t ncol_thr = (N + nt - 1) / nt;
    const double pack_cols = (double)M * K * nt * ((ncol_thr + FR_GEMM_NC - 1) / FR_GEMM_NC)
                             + (double)K * N;
    const double pack_rows_ =
        (double)M * K * ((N + FR_GEMM_NC - 1) / FR_GEMM_NC) + (double)K * N * nt;
    const int by_rows = nt > 1 && rgroups >= 2 * (int64_t)nt && pack_rows_ < pack_cols;
    const int64_t parts = by_rows ? rgroups : groups;
    if (nt > parts) nt = (int)parts;
    if (nt < 1) nt = 1;
    const int bnt = by_rows ? 1 : nt; /* threads sharing op(B)'s columns */
    const int64_t per = gemm_thread_floats(N, bnt);
    float *buf = NULL;
    if (posix_memalign((void **)&buf, 64, (size_t)(per * nt) * sizeof(float)) != 0) return -1;
    const int at = ta == 'T' || ta == 't', bt = tb == 'T' || tb == 't';
    fr_region_clock rc;
    fr_region_begin(&rc, nt > 1, (double)M * N * K >= FR_REGION_CPU_WORK);
#pragma omp parallel num_threads(nt) if (fr_omp_going(nt, nt > 1))
    {
        const fr_region_mark rm = fr_region_enter(&rc);
        int tid, nth;
        fr_omp_me(&tid, &nth);
        /* nt slices of panel groups (or of row groups); a smaller team than
         * asked takes them in turn, each thread in its own part of the
         * scratch */
        float *P = buf + per * tid;
        float *Ap = P + gemm_b_floats(N, bnt); /* op(A)'s block */
        for (int sl = tid; sl < nt; sl += nth) {
            const int64_t p0 = parts * sl / nt, p1 = parts * (sl + 1) / nt;
            int64_t c0 = 0, c1 = N, r0 = 0, r1 = M;
            if (by_rows) {
                r0 = p0 * FR_GEMM_MR;
                r1 = p1 * FR_GEMM_MR < M ? p1 * FR_GEMM_MR : M;
            } else {
                c0 = p0 * FR_GEMM_NP * VW;
                c1 = p1 * FR_GEMM_NP * VW < N ? p1 * FR_GEMM_NP * VW : N;
            }
            /* beta 0: the first K block's tiles start from +0 instead of
             * reading C (K = 0: nothing to read C's garbage into, so zero it) */
            if (c1 > c0 && !beta && K == 0)
                for (int64_t m = r0; m < r1; m++) {
                    if (bias) memcpy(C + m * ldc + c0, bias + c0, (size_t)(c1 - c0) * sizeof(float));
                    else memset(C + m * ldc + c0, 0, (size_t)(c1 - c0) * sizeof(float));
                }
            for (int64_t cc0 = c0; cc0 < c1 && r1 > r0; cc0 += FR_GEMM_NC) {
                const int64_t cc1 = c1 - cc0 < FR_GEMM_NC ? c1 : cc0 + FR_GEMM_NC;
                for (int64_t kb = 0; kb < K; kb += FR_GEMM_KC) {
                    const int64_t kc = K - kb < FR_GEMM_KC ? K - kb : FR_GEMM_KC;
                    if (bt) pack_rows(B + kb, ldb, cc0, cc1 - cc0, kc, P);
                    else pack_copy(B, ldb, kb, kc, cc0, cc1, P);
                    for (int64_t mb = r0; mb < r1; mb += FR_GEMM_MC) {
                        const int64_t mr = r1 - mb < FR_GEMM_MC ? r1 - mb : FR_GEMM_MC;
                        pack_a(A, lda, at, mb, mr, kb, kc, Ap);
                        for (int64_t c = cc0; c < cc1; c += FR_GEMM_NP * VW) {
                            const int64_t left = (cc1 - c + VW - 1) / VW;
                            const int NP = left < FR_GEMM_NP ? (int)left : FR_GEMM_NP;
                            gemm_rows(Ap, mr, P + ((c - cc0) / VW) * kc * VW, kc,
                                      C + mb * ldc + c, ldc, N - c, NP, !beta && kb == 0,
                                      bias ? bias + c : NULL);
                        }
                    }
                }
            }
        }
        fr_region_done(&rc, rm);
    }
    fr_region_end(&rc);
    free(buf);
    return 0;
}
