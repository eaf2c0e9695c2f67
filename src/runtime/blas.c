/*
 * The BLAS the kernels call (fastrnn.h: fr_set_blas, fr_set_blas_threads_api)
 * and its thread pin, once for the whole library: every kernel, recurrent,
 * regularized or a plain GEMM, counts in the same pin.
 */
#include <pthread.h>
#include <stddef.h>
#include "runtime/runtime.h"

fr_sgemm_fn fr_blas_sgemm = NULL;
fr_dgemm_fn fr_blas_dgemm = NULL;

void fr_set_blas(fr_sgemm_fn sgemm, fr_dgemm_fn dgemm)
{
    fr_blas_sgemm = sgemm;
    fr_blas_dgemm = dgemm;
    fr_fast_path_default();
}

/* BLAS thread pinning: a count of kernel calls under way; the first one in
 * saves the BLAS's thread count and sets 1, the last one out restores it. */
static fr_blas_set_threads_fn fr_blas_set = NULL;
static fr_blas_get_threads_fn fr_blas_get = NULL;
static pthread_mutex_t fr_blas_lock = PTHREAD_MUTEX_INITIALIZER;
static int fr_blas_users = 0, fr_blas_saved = 1;

void fr_set_blas_threads_api(fr_blas_set_threads_fn set, fr_blas_get_threads_fn get)
{
    pthread_mutex_lock(&fr_blas_lock);
    if (fr_blas_users == 0) {
        fr_blas_set = (set && get) ? set : NULL;
        fr_blas_get = (set && get) ? get : NULL;
    }
    pthread_mutex_unlock(&fr_blas_lock);
}

int fr_blas_enter(void)
{
    int pinned;
    pthread_mutex_lock(&fr_blas_lock);
    pinned = fr_blas_set != NULL;
    if (pinned && fr_blas_users++ == 0) {
        fr_blas_saved = fr_blas_get();
        if (fr_blas_saved != 1) fr_blas_set(1);
    }
    pthread_mutex_unlock(&fr_blas_lock);
    return pinned;
}

void fr_blas_leave(int pinned)
{
    if (!pinned) return;
    pthread_mutex_lock(&fr_blas_lock);
    if (--fr_blas_users == 0 && fr_blas_saved != 1) fr_blas_set(fr_blas_saved);
    pthread_mutex_unlock(&fr_blas_lock);
}
