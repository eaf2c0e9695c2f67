/*
 * Internal: helpers of rnn.c shared with the sibling kernel file rnn_reg.c
 * (regularized cells). Not part of the public API; nothing here knows Python.
 *
 * fastrnn._reg (rnn_reg.c) is a separate extension module: rather than a second
 * copy of rnn.c, with its own BLAS pointers and its own count of running
 * kernels for the BLAS thread pin (two counts would restore the BLAS's thread
 * count while the other module's kernel still runs, or leave it at one), it
 * calls these functions of fastrnn._core through the pointers below, whose
 * addresses _core hands out (frr_set_internal, rnn_reg.h; fastrnn._losses
 * takes fr_team_note_omp, fr_ctc_set_omp_note in ctc.h).
 */
#ifndef FASTRNN_INTERNAL_H
#define FASTRNN_INTERNAL_H

#include <stdint.h>
#include "fastrnn.h"

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

/* The step team's note that an OpenMP region starts (rnn_team.h): one team
 * and one quiet time for the whole library. */
void fr_team_note_omp(void);

/* The same functions as pointer types. */
typedef void (*fr_omp_note_fn)(void);
typedef int (*fr_blas_enter_fn)(void);
typedef void (*fr_blas_leave_fn)(int);
typedef void (*fr_pgemm_f32_fn)(int, int, char, char, int64_t, int64_t, int64_t, float,
                                const float *, int64_t, const float *, int64_t, float,
                                float *, int64_t);
typedef void (*fr_pgemm_f64_fn)(int, int, char, char, int64_t, int64_t, int64_t, double,
                                const double *, int64_t, const double *, int64_t, double,
                                double *, int64_t);

#endif /* FASTRNN_INTERNAL_H */
