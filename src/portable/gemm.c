/* The chunked BLAS GEMM (gemm.h) and the public fr_gemm_f32/f64
 * (fastrnn.h), float32 and float64 from one source (gemm_impl.h). */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "fastrnn.h"
#include "fast/fast.h"
#include "fast/tuning.h"
#include "portable/gemm.h"
#include "runtime/runtime.h"

/* ---- float32 ---- */
#define REAL float
#define FR_REAL_IS_FLOAT 1
#define FN(name) name##_f32
#define GEMM_PTR fr_blas_sgemm
#define FMA fmaf
#include "portable/gemm_impl.h"
#undef REAL
#undef FN
#undef GEMM_PTR
#undef FMA
#undef FR_REAL_IS_FLOAT

/* ---- float64 ---- */
#define REAL double
#define FR_REAL_IS_FLOAT 0
#define FN(name) name##_f64
#define GEMM_PTR fr_blas_dgemm
#define FMA fma
#include "portable/gemm_impl.h"
#undef REAL
#undef FN
#undef GEMM_PTR
#undef FMA
#undef FR_REAL_IS_FLOAT
