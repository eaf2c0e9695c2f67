/*
 * Internal: what every kernel of the library shares, held once in C: the
 * BLAS given to fr_set_blas and its thread pin (blas.c), the fast-path
 * switch (settings.c), and the step team's note of OpenMP regions
 * (team.c). Not part of the public API; nothing here knows Python.
 */
#ifndef FASTRNN_RUNTIME_H
#define FASTRNN_RUNTIME_H

#include "fastrnn.h"
#include "runtime/team.h"

/* Internal to the library: hidden symbols, so that calls between its files
 * are direct (no PLT) and calls within a file may be inlined. */
#pragma GCC visibility push(hidden)

/* The GEMMs given to fr_set_blas; NULL until then (kernels return
 * FR_ENOBLAS). */
extern fr_sgemm_fn fr_blas_sgemm;
extern fr_dgemm_fn fr_blas_dgemm;

/* Hold the BLAS at one thread while a kernel runs (fr_set_blas_threads_api):
 * fr_blas_enter returns the `pinned` flag to pass to the GEMMs and to
 * fr_blas_leave. Calls nest and overlap across threads: the BLAS's own
 * count comes back when the last one leaves. */
int fr_blas_enter(void);
void fr_blas_leave(int pinned);

/* Is the fast float32 path on (fr_set_fast_path)? Until chosen it is off,
 * and fr_set_blas turns it on where the CPU runs it
 * (fr_fast_path_default). */
int fr_fast_path_on(void);
void fr_fast_path_default(void);

/* cond, for an OpenMP region's if clause, after noting the region for the
 * step team (fr_team_note_omp) when it will start more than one thread.
 * Every OpenMP region of the library goes through it. */
static inline int fr_omp_going(int nt, int cond)
{
    if (nt > 1 && cond) fr_team_note_omp();
    return cond;
}

#pragma GCC visibility pop

#endif /* FASTRNN_RUNTIME_H */
