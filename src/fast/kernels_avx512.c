/* The fast float32 time loops at 16 floats a vector (AVX-512 F, VL, DQ):
 * the body is the headers below; dispatch.c calls these only on a CPU
 * with those extensions (and AVX2 + FMA, which the dot tiles use). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FR_ISA_AVX512 1
#define FR_SFX(name) name##_avx512
#include "fast/isa.h"
#include "fast/simd_math.h"
#include "fast/dot.h"
#include "fast/panels.h"
#include "fast/cell.h"
#include "fast/forward.h"
#include "fast/backward.h"
#include "fast/gemm.h"
#include "fast/pool.h"
#include "fast/step.h"
#endif
