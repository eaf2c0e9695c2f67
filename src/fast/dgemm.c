/*
 * The float64 fixed-order GEMM of batch-invariant inference (fr_fast_dgemm,
 * fast.h): C(M,N) = init + op(A) op(B), every output one FMA chain over k in
 * order from its init (C's old value, +0, or a bias row). Neither M, a row's
 * place among the others, the blocking nor the thread split changes a bit:
 * the bits of portable/gemm_impl.h's scalar chain (fma() lane by lane).
 * AVX2 + FMA, 4 doubles a vector, built once (the AVX-512 build would give
 * the same bits); op(B) packed in 4-column panels, a block of FR_DGEMM_KC
 * rows by FR_DGEMM_NC columns at a time; rows in tiles of up to 4 sharing up
 * to 3 panel vectors (12 of AVX2's 16 registers).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "fast/fast.h"
#include "fast/tuning.h"
#include "runtime/runtime.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define DTGT __attribute__((target("avx2,fma")))
#define DINL __attribute__((always_inline))

/* The first rem (0..4) lanes. */
static inline DTGT __m256i dmask(int64_t rem)
{
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(rem > 0 ? rem : 0),
                              _mm256_setr_epi64x(0, 1, 2, 3));
}

static inline DTGT __m256d dload(const double *p, int64_t rem)
{
    return rem >= 4 ? _mm256_loadu_pd(p) : _mm256_maskload_pd(p, dmask(rem));
}

static inline DTGT void dstore(double *p, int64_t rem, __m256d v)
{
    if (rem >= 4) _mm256_storeu_pd(p, v);
    else _mm256_maskstore_pd(p, dmask(rem), v);
}

/* R rows of op(A) (element (r, k) at A[r*am + k*ak]) against NP panels of
 * kc rows at P (the next at P + kc*4), into C (row stride ldc), rem columns
 * left from the first panel. from: 0 C's old values, 1 the row init, 2 +0. */
static inline DINL DTGT void dtile(const double *A, int64_t am, int64_t ak, const double *P,
                                   int64_t kc, double *C, int64_t ldc, int64_t rem,
                                   const int R, const int NP, int from, const double *init)
{
    __m256d acc[4][3];
    for (int r = 0; r < R; r++)
        for (int q = 0; q < NP; q++)
            acc[r][q] = from == 0 ? dload(C + r * ldc + 4 * q, rem - 4 * q)
                        : from == 1 ? dload(init + 4 * q, rem - 4 * q) : _mm256_setzero_pd();
    for (int64_t k = 0; k < kc; k++) {
        const __m256d w0 = _mm256_load_pd(P + k * 4);
        const __m256d w1 = NP > 1 ? _mm256_load_pd(P + (kc + k) * 4) : w0;
        const __m256d w2 = NP > 2 ? _mm256_load_pd(P + (2 * kc + k) * 4) : w0;
        for (int r = 0; r < R; r++) {
            const __m256d a = _mm256_broadcast_sd(A + r * am + k * ak);
            acc[r][0] = _mm256_fmadd_pd(a, w0, acc[r][0]);
            if (NP > 1) acc[r][1] = _mm256_fmadd_pd(a, w1, acc[r][1]);
            if (NP > 2) acc[r][2] = _mm256_fmadd_pd(a, w2, acc[r][2]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int q = 0; q < NP; q++) dstore(C + r * ldc + 4 * q, rem - 4 * q, acc[r][q]);
}

/* dtile with R and NP known at compile time (its loops unroll). */
static DTGT void dtile_any(const double *A, int64_t am, int64_t ak, const double *P, int64_t kc,
                           double *C, int64_t ldc, int64_t rem, int R, int NP, int from,
                           const double *init)
{
#define DT(R_, NP_) dtile(A, am, ak, P, kc, C, ldc, rem, R_, NP_, from, init)
    switch (R * 4 + NP) {
    case 4 * 4 + 3: DT(4, 3); break;
    case 4 * 4 + 2: DT(4, 2); break;
    case 4 * 4 + 1: DT(4, 1); break;
    case 3 * 4 + 3: DT(3, 3); break;
    case 3 * 4 + 2: DT(3, 2); break;
    case 3 * 4 + 1: DT(3, 1); break;
    case 2 * 4 + 3: DT(2, 3); break;
    case 2 * 4 + 2: DT(2, 2); break;
    case 2 * 4 + 1: DT(2, 1); break;
    case 1 * 4 + 3: DT(1, 3); break;
    case 1 * 4 + 2: DT(1, 2); break;
    default: DT(1, 1); break;
    }
#undef DT
}

/* Rows k0..k0+kc of op(B), columns c0..c1, into 4-column panels (k-major,
 * zero padded): panel p holds column c0 + 4p + j of row k at P[(p*kc + k)*4 + j]. */
static void dpack(const double *B, int64_t ldb, int bt, int64_t k0, int64_t kc, int64_t c0,
                  int64_t c1, double *P)
{
    for (int64_t c = c0; c < c1; c += 4) {
        double *p = P + ((c - c0) / 4) * kc * 4;
        const int64_t w = c1 - c < 4 ? c1 - c : 4;
        for (int64_t k = 0; k < kc; k++) {
            for (int64_t j = 0; j < w; j++)
                p[k * 4 + j] = bt ? B[(c + j) * ldb + k0 + k] : B[(k0 + k) * ldb + c + j];
            for (int64_t j = w; j < 4; j++) p[k * 4 + j] = 0;
        }
    }
}

int fr_fast_dgemm(int nt, char ta, char tb, int64_t M, int64_t N, int64_t K,
                  const double *A, int64_t lda, const double *B, int64_t ldb,
                  int beta, double *C, int64_t ldc, const double *bias)
{
    if (!fr_fast_available()) return -1;
    if (M <= 0 || N <= 0) return 0;
    const int at = ta == 'T' || ta == 't', bt = tb == 'T' || tb == 't';
    const int64_t am = at ? 1 : lda, ak = at ? lda : 1;
    /* threads own groups of 3 panels (12 columns) */
    const int64_t groups = (N + 11) / 12;
    if (nt > groups) nt = (int)groups;
    if (nt < 1) nt = 1;
    const int64_t per = (int64_t)FR_DGEMM_KC * FR_DGEMM_NC;
    double *buf = NULL;
    if (posix_memalign((void **)&buf, 64, (size_t)(per * nt) * sizeof(double)) != 0) return -1;
#pragma omp parallel num_threads(nt) if (fr_omp_going(nt, nt > 1))
    {
        int tid, nth;
        fr_omp_me(&tid, &nth);
        double *P = buf + per * tid;
        for (int sl = tid; sl < nt; sl += nth) {
            const int64_t c0 = groups * sl / nt * 12;
            const int64_t c1 = groups * (sl + 1) / nt * 12 < N ? groups * (sl + 1) / nt * 12 : N;
            if (c1 > c0 && K == 0 && !beta)
                for (int64_t m = 0; m < M; m++) {
                    if (bias) memcpy(C + m * ldc + c0, bias + c0, (size_t)(c1 - c0) * sizeof(double));
                    else memset(C + m * ldc + c0, 0, (size_t)(c1 - c0) * sizeof(double));
                }
            for (int64_t cc0 = c0; cc0 < c1; cc0 += FR_DGEMM_NC) {
                const int64_t cc1 = c1 - cc0 < FR_DGEMM_NC ? c1 : cc0 + FR_DGEMM_NC;
                for (int64_t kb = 0; kb < K; kb += FR_DGEMM_KC) {
                    const int64_t kc = K - kb < FR_DGEMM_KC ? K - kb : FR_DGEMM_KC;
                    /* the first K block starts from the init, the others
                     * from what the previous block stored */
                    const int from = beta || kb > 0 ? 0 : bias ? 1 : 2;
                    dpack(B, ldb, bt, kb, kc, cc0, cc1, P);
                    for (int64_t m = 0; m < M; m += 4) {
                        const int R = M - m < 4 ? (int)(M - m) : 4;
                        for (int64_t c = cc0; c < cc1; c += 12) {
                            const int64_t left = (cc1 - c + 3) / 4;
                            const int NP = left < 3 ? (int)left : 3;
                            dtile_any(A + m * am + kb * ak, am, ak, P + ((c - cc0) / 4) * kc * 4,
                                      kc, C + m * ldc + c, ldc, cc1 - c, R, NP, from,
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

#else /* not x86-64 with GCC/Clang: the scalar chain runs (the same bits) */

int fr_fast_dgemm(int nt, char ta, char tb, int64_t M, int64_t N, int64_t K,
                  const double *A, int64_t lda, const double *B, int64_t ldb,
                  int beta, double *C, int64_t ldc, const double *bias)
{
    (void)nt; (void)ta; (void)tb; (void)M; (void)N; (void)K; (void)A; (void)lda; (void)B;
    (void)ldb; (void)beta; (void)C; (void)ldc; (void)bias;
    return -1;
}

#endif
