/* The fast float32 time loops at 8 floats a vector (AVX2 + FMA): the body
 * is the headers below; dispatch.c calls these only on a CPU with AVX2 and
 * FMA. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FR_ISA_AVX2 1
#define FR_SFX(name) name##_avx2
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
