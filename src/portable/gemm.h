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

/* Row-major C(M,N) = alpha op(A) op(B) + beta C, op 'N' or 'T', cut into
 * row chunks that depend on M alone (so the bits never depend on nt), the
 * chunks shared among nt OpenMP threads when pinned (fr_blas_enter). fast
 * (float32 only): the fast kernels' panel GEMM (fr_fast_sgemm) where it
 * applies (alpha 1, beta 0 or 1); 0 keeps the BLAS. Never call it inside
 * an OpenMP region. */
void fr_pgemm_f32(int fast, int nt, int pinned, char ta, char tb, int64_t M, int64_t N,
                  int64_t K, float alpha, const float *A, int64_t lda,
                  const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
void fr_pgemm_f64(int fast, int nt, int pinned, char ta, char tb, int64_t M, int64_t N,
                  int64_t K, double alpha, const double *A, int64_t lda,
                  const double *B, int64_t ldb, double beta, double *C, int64_t ldc);

#pragma GCC visibility pop

#endif /* FASTRNN_PORTABLE_GEMM_H */
