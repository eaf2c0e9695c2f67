/*
 * Body of the chunked BLAS GEMM and of the fixed-order GEMM (gemm.h),
 * included twice by gemm.c: REAL=float (FN suffix _f32) and REAL=double
 * (_f64). Needs: REAL, FN(name), GEMM_PTR (the BLAS routine of that type,
 * runtime.h), FMA (fmaf or fma), FR_REAL_IS_FLOAT.
 */

/* ---- row-major GEMM through the Fortran (column-major) routine -------- */

/* C(M,N) = alpha * op(A)(M,K) op(B)(K,N) + beta * C, all row-major. A
 * row-major matrix is its transpose in column-major, so we compute
 * C^T = op(B)^T op(A)^T by swapping the operands. */
static void FN(gemm)(char ta, char tb, int64_t M, int64_t N, int64_t K,
                     REAL alpha, const REAL *A, int64_t lda,
                     const REAL *B, int64_t ldb, REAL beta, REAL *C, int64_t ldc)
{
    int m = (int)N, n = (int)M, k = (int)K;
    int la = (int)ldb, lb = (int)lda, lc = (int)ldc;
    if (M == 0 || N == 0) return;
    if (K == 0) { /* BLAS would be fine, but keep the degenerate case explicit */
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++)
                C[i * ldc + j] = beta == 0 ? 0 : beta * C[i * ldc + j];
        return;
    }
    GEMM_PTR(&tb, &ta, &m, &n, &k, &alpha, (REAL *)B, &la, (REAL *)A, &lb,
             &beta, C, &lc);
}

/* The same GEMM cut into chunks of rows of C (contiguous blocks; column
 * blocks of a row-major C run several times slower in OpenBLAS), one
 * single-threaded BLAS call per chunk, the chunks shared among nt OpenMP
 * threads when the BLAS is held at one thread (pinned). OpenBLAS's bits
 * depend on how a product is partitioned, so the chunk size depends on M
 * alone, never on the thread count: M split in 2, 4 or 8 parts (multiples
 * of 4 rows) as it reaches 2, 4 and 8 times FR_PGEMM_PART_ROWS (every chunk
 * repacks the whole other operand). */
/* The reference order of fr_igemm: every output init, then one fma over
 * k in order. The fast kernels' vector FMAs are this, lane by lane. */
static void FN(chain_gemm)(char ta, char tb, int64_t M, int64_t N, int64_t K, REAL alpha,
                           const REAL *A, int64_t lda, const REAL *B, int64_t ldb, REAL beta,
                           REAL *C, int64_t ldc, const REAL *bias)
{
    const int at = ta == 'T' || ta == 't', bt = tb == 'T' || tb == 't';
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            REAL acc = beta == 0 ? (bias ? bias[n] : 0)
                       : beta == 1 ? C[m * ldc + n] : beta * C[m * ldc + n];
            for (int64_t k = 0; k < K; k++)
                acc = FMA(alpha * (at ? A[k * lda + m] : A[m * lda + k]),
                          bt ? B[n * ldb + k] : B[k * ldb + n], acc);
            C[m * ldc + n] = acc;
        }
}

void FN(fr_igemm)(int nt, char ta, char tb, int64_t M, int64_t N, int64_t K, REAL alpha,
                  const REAL *A, int64_t lda, const REAL *B, int64_t ldb, REAL beta,
                  REAL *C, int64_t ldc, const REAL *bias)
{
    if (M <= 0 || N <= 0) return;
    if (alpha == 1 && (beta == 0 || beta == 1)) {
        const int n = (double)M * N * K >= FR_FAST_GEMM_PAR_MIN ? nt : 1;
#if FR_REAL_IS_FLOAT
        if (fr_fast_width() > 0
            && fr_fast_sgemm(n, ta, tb, M, N, K, A, lda, B, ldb, beta == 1, C, ldc, bias) == 0)
            return;
#else
        if (fr_fast_dgemm(n, ta, tb, M, N, K, A, lda, B, ldb, beta == 1, C, ldc, bias) == 0)
            return;
#endif
    }
    FN(chain_gemm)(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, bias);
}

void FN(fr_pgemm)(int fast, int nt, int pinned, char ta, char tb, int64_t M, int64_t N,
                  int64_t K, REAL alpha, const REAL *A, int64_t lda,
                  const REAL *B, int64_t ldb, REAL beta, REAL *C, int64_t ldc)
{
    if (fast == FR_GEMM_FIXED) {
        FN(fr_igemm)(nt, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, NULL);
        return;
    }
#if FR_REAL_IS_FLOAT
    /* fast: the fast kernels' own panel GEMM (AVX-512 or AVX2, whatever
     * core type the BLAS was told to use), for the layers the fast loops
     * run and the model layers; the cells they decline keep the BLAS, so
     * switching the fast path never changes their bits */
    if (fast && alpha == 1 && (beta == 0 || beta == 1) && M > 0 && N > 0 && K > 0
        && fr_fast_sgemm((double)M * N * K >= FR_FAST_GEMM_PAR_MIN ? nt : 1, ta, tb, M, N, K,
                         A, lda, B, ldb, beta == 1, C, ldc, NULL) == 0)
        return;
#endif
        const int64_t parts = M >= 8 * FR_PGEMM_PART_ROWS ? 8 : M >= 4 * FR_PGEMM_PART_ROWS ? 4 : 2;
    int64_t chunk = ((M + parts - 1) / parts + 3) / 4 * 4;
    const int64_t nchunk = (M + chunk - 1) / chunk;
    if (!pinned || (double)M * N * K < FR_PGEMM_PAR_MIN) nt = 1;
    if (nt > nchunk) nt = (int)nchunk;
    fr_region_clock rc;
    fr_region_begin(&rc, nt > 1, (double)M * N * K >= FR_REGION_CPU_WORK);
#pragma omp parallel num_threads(nt) if (fr_omp_going(nt, nt > 1))
    {
        const fr_region_mark rm = fr_region_enter(&rc);
        int64_t c;
#pragma omp for schedule(static) nowait
        for (c = 0; c < nchunk; c++) {
            const int64_t a0 = c * chunk;
            const int64_t n = M - a0 < chunk ? M - a0 : chunk;
            FN(gemm)(ta, tb, n, N, K, alpha, ta == 'N' ? A + a0 * lda : A + a0,
                     lda, B, ldb, beta, C + a0 * ldc, ldc);
        }
        fr_region_done(&rc, rm);
    }
    fr_region_end(&rc);
}

/* ---- a plain GEMM for the model layers (Dense, attention) ------------- */

/* C(M,N) = alpha op(A) op(B) + beta C, row-major, through the same chunked
 * GEMM as the recurrent kernels: its bits depend on the shapes alone, never
 * on the thread count (the layers above rely on that for reproducible
 * training). */
int FN(fr_gemm)(int num_threads, char ta, char tb, int64_t M, int64_t N, int64_t K,
                REAL alpha, const REAL *A, int64_t lda, const REAL *B, int64_t ldb,
                REAL beta, REAL *C, int64_t ldc)
{
    if (GEMM_PTR == NULL) return FR_ENOBLAS;
    if (M < 0 || N < 0 || K < 0 || num_threads < 1 || !C || (K > 0 && (!A || !B)))
        return FR_EINVAL;
    if ((ta != 'N' && ta != 'T') || (tb != 'N' && tb != 'T')) return FR_EINVAL;
    if (M > INT_MAX || N > INT_MAX || K > INT_MAX || lda > INT_MAX || ldb > INT_MAX
        || ldc > INT_MAX)
        return FR_ETOOBIG;
    if (fr_batch_invariant()) { /* no BLAS: no pin */
        FN(fr_igemm)(num_threads, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, NULL);
        return FR_OK;
    }
    const int pinned = fr_blas_enter();
    FN(fr_pgemm)(FR_REAL_IS_FLOAT && fr_fast_path_on(), num_threads, pinned, ta, tb, M, N, K,
                 alpha, A, lda, B, ldb, beta, C, ldc);
    fr_blas_leave(pinned);
    return FR_OK;
}
