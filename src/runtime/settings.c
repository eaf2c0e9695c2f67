/*
 * Runtime settings of the whole library (fastrnn.h): the fast float32 path
 * on or off, and OpenMP's thread count. The fast path's vector width is
 * fast/dispatch.c's (fr_set_fast_width).
 */
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

int fr_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
