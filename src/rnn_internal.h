/*
 * Internal: helpers of rnn.c shared with the sibling kernel file rnn_reg.c
 * (regularized cells). Not part of the public API; nothing here knows Python.
 *
 * A module that compiles rnn_reg.c also compiles rnn.c (and rnn_fast.c, which
 * rnn.c calls), so it has its own copy of the BLAS pointers and thread-pinning
 * state: it must call fr_set_blas (and fr_set_blas_threads_api) itself.
 */
#ifndef FASTRNN_INTERNAL_H
#define FASTRNN_INTERNAL_H

#include <stdint.h>
#include "fastrnn.h"

/* 1 when fr_set_blas gave a float32 (resp. float64) GEMM. */
int fr_have_sgemm(void);
int fr_have_dgemm(void);

/* Hold the BLAS at one thread while a kernel runs (see fr_set_blas_threads_api);
 * fr_blas_enter returns the `pinned` flag to pass to the GEMMs and to leave. */
int fr_blas_enter(void);
void fr_blas_leave(int pinned);

/* Row-major C(M,N) = alpha op(A) op(B) + beta C, cut into row chunks that
 * depend on M alone (so the bits never depend on nt), the chunks shared among
 * nt OpenMP threads when pinned. Never call it inside an OpenMP region. */
void fr_pgemm_f32(int nt, int pinned, char ta, char tb, int64_t M, int64_t N,
                  int64_t K, float alpha, const float *A, int64_t lda,
                  const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
void fr_pgemm_f64(int nt, int pinned, char ta, char tb, int64_t M, int64_t N,
                  int64_t K, double alpha, const double *A, int64_t lda,
                  const double *B, int64_t ldb, double beta, double *C, int64_t ldc);

#endif /* FASTRNN_INTERNAL_H */
