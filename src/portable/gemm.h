/*
 * Internal: the chunked BLAS GEMM of the portable kernels (gemm.c), which
 * the recurrent and regularized kernels and fr_gemm_f32/f64 (fastrnn.h)
 * share. Not part of the public API.
 */
#ifndef FASTRNN_PORTABLE_GEMM_H
#define FASTRNN_PORTABLE_GEMM_H

#include <stdint.h>

/* Internal to the library: hidden symbols, so that calls between its files
 * are direct (no PLT) and calls within a file may be inlined. */
#pragma GCC visibility push(hidden)

/* What fr_pgemm's `fast` argument asks for. */
#define FR_GEMM_BLAS 0  /* the BLAS in row chunks */
#define FR_GEMM_FAST 1  /* float32: fr_fast_sgemm where it applies, else BLAS */
#define FR_GEMM_FIXED 2 /* either type: fr_igemm (batch-invariant inference) */

/* Row-major C(M,N) = alpha op(A) op(B) + beta C, op 'N' or 'T', cut into
 * row chunks that depend on M alone (so the bits never depend on nt), the
 * chunks shared among nt OpenMP threads when pinned (fr_blas_enter). fast
 * (FR_GEMM_*): FR_GEMM_FAST (float32 only) the fast kernels' panel GEMM
 * (fr_fast_sgemm) where it applies (alpha 1, beta 0 or 1); FR_GEMM_FIXED
 * fr_igemm, whatever the type; FR_GEMM_BLAS the BLAS. Never call it inside
 * an OpenMP region. */
void fr_pgemm_f32(int fast, int nt, int pinned, char ta, char tb, int64_t M, int64_t N,
                  int64_t K, float alpha, const float *A, int64_t lda,
                  const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
void fr_pgemm_f64(int fast, int nt, int pinned, char ta, char tb, int64_t M, int64_t N,
                  int64_t K, double alpha, const double *A, int64_t lda,
                  const double *B, int64_t ldb, double beta, double *C, int64_t ldc);

/* The fixed-order GEMM of batch-invariant inference: C(M,N) = init +
 * alpha op(A) op(B), init beta C (beta 0: +0; bias, when given with beta 0:
 * that row in every row of C); each output one FMA chain over k in order
 * (fma(alpha a, b, acc)), so a row of C depends on its row of op(A) alone,
 * never on M, the blocking or nt. With alpha 1 and beta 0 or 1 the fast
 * kernels run it (fr_fast_sgemm, fr_fast_dgemm: the same bits), else, or
 * without them, the scalar chain. Never call it inside an OpenMP region. */
void fr_igemm_f32(int nt, char ta, char tb, int64_t M, int64_t N, int64_t K, float alpha,
                  const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                  float *C, int64_t ldc, const float *bias);
void fr_igemm_f64(int nt, char ta, char tb, int64_t M, int64_t N, int64_t K, double alpha,
                  const double *A, int64_t lda, const double *B, int64_t ldb, double beta,
                  double *C, int64_t ldc, const double *bias);

#pragma GCC visibility pop

#endif /* FASTRNN_PORTABLE_GEMM_H */
