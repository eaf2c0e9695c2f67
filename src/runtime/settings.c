/*
 * Runtime settings of the whole library (fastrnn.h): the fast float32 path
 * on or off, the thread count of the kernels, batch-invariant inference. The fast path's vector
 * width is fast/dispatch.c's (fr_set_fast_width).
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <strings.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "fast/fast.h"
#include "runtime/runtime.h"

/* 1: the fast float32 loops run where they apply; 0: the portable path;
 * -1: not chosen yet (off until fr_set_blas or fr_set_fast_path). */
static int fr_use_fast = -1;

int fr_set_fast_path(int enable)
{
    fr_use_fast = enable && fr_fast_available();
    return fr_use_fast;
}

void fr_fast_path_default(void)
{
    if (fr_use_fast < 0) fr_use_fast = fr_fast_available();
}

int fr_fast_path_on(void) { return fr_use_fast > 0; }

/* Batch-invariant inference (fr_set_batch_invariant); atomic as the
 * thread count: callers on other threads read it while one sets it. */
static atomic_int fr_invariant = 0;

int fr_set_batch_invariant(int on)
{
    return atomic_exchange_explicit(&fr_invariant, on != 0, memory_order_relaxed);
}

int fr_batch_invariant(void)
{
    return atomic_load_explicit(&fr_invariant, memory_order_relaxed);
}

/* How waiting threads wait (fr_set_wait_policy): 0 spin a budget, then
 * yield; 1 passive, yield at once; -1 not chosen yet (FASTRNN_WAIT_POLICY,
 * else OMP_WAIT_POLICY, read at the first use). Atomic: read by waiting
 * threads while a caller sets it. */
static atomic_int fr_passive = -1;

int fr_set_wait_policy(int passive)
{
    if (passive < 0) return fr_wait_passive();
    const int was = fr_wait_passive();
    atomic_store_explicit(&fr_passive, passive != 0, memory_order_relaxed);
    return was;
}

int fr_wait_passive(void)
{
    int p = atomic_load_explicit(&fr_passive, memory_order_relaxed);
    if (p < 0) {
        const char *e = getenv("FASTRNN_WAIT_POLICY");
        if (e == NULL || *e == 0) e = getenv("OMP_WAIT_POLICY");
        p = e != NULL && strcasecmp(e, "passive") == 0;
        int expected = -1;   /* a setting made meanwhile wins */
        if (!atomic_compare_exchange_strong(&fr_passive, &expected, p)) p = expected;
    }
    return p;
}

int fr_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* The thread count set for fastrnn alone; 0: OpenMP's default. Atomic:
 * callers on other threads read it while one sets it. */
static atomic_int fr_threads_set = 0;

int fr_set_num_threads(int n)
{
    if (n < 0) return FR_EINVAL;
    return atomic_exchange_explicit(&fr_threads_set, n, memory_order_relaxed);
}

int fr_num_threads_setting(void)
{
    return atomic_load_explicit(&fr_threads_set, memory_order_relaxed);
}

int fr_num_threads(void)
{
    const int n = fr_num_threads_setting();
    if (n > 0) return n;
    const int m = fr_max_threads();
    return m > 1 ? m : 1;
}
