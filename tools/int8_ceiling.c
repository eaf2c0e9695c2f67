/*
 * The ceilings that bound an int8 layer at batch 1 on an AVX-512 VNNI CPU,
 * measured, and the bound they give one LSTM shape (tools/int8_ceiling.sh
 * builds and runs it):
 *   clock      a chain of dependent adds (one a cycle)
 *   vnni, fma  vpdpbusd (vfmadd231ps) on 12 register accumulators: the int8
 *              (float32) multiply-add peak
 *   stream     one row's product as the 1x8 tile runs it: 8 panels (16 KB
 *              apart) read in step, one vpdpbusd from memory a 64 bytes;
 *              a thread's share of W_hh rounded up to whole 128 KB tiles,
 *              every thread at once, a meeting a pass
 *   beside     the same stream with a second product's 8 rows beside it
 *              (8 broadcast loads and 8 vpdpbusd more a 64 bytes): what a
 *              kernel that hides the input projection under the stream pays
 *   bound      T * 4*H*H / stream + T * 4*H*I / vnni (seconds): W_hh read
 *              once a step, the input projection at the multiply-add peak
 * Accumulators are asm operands, so they stay in registers (in an array
 * the compiler keeps them in memory, and the loop measures its stores).
 *   int8_ceiling THREADS T I H
 */
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TGT __attribute__((target("avx512f,avx512bw,avx512vnni")))
enum { PANEL = 16384, REPS = 7 };

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static double clock_ghz(void)
{
    const long n = 100000000;
    double best = 1e9;
    for (int r = 0; r < REPS; r++) {
        long x = 0;
        const double t0 = now();
        for (long i = 0; i < n; i++)
            __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0" : "+r"(x));
        const double t = now() - t0;
        best = t < best ? t : best;
    }
    return 4.0 * n / best / 1e9;
}

/* 12 independent accumulators %0..%11, sources %12 and %13 */
#define FMA12(op)                                                                          \
    op " %12,%13,%0\n\t" op " %12,%13,%1\n\t" op " %12,%13,%2\n\t" op " %12,%13,%3\n\t"   \
    op " %12,%13,%4\n\t" op " %12,%13,%5\n\t" op " %12,%13,%6\n\t" op " %12,%13,%7\n\t"   \
    op " %12,%13,%8\n\t" op " %12,%13,%9\n\t" op " %12,%13,%10\n\t" op " %12,%13,%11"

/* multiply-adds a second, all threads together: vpdpbusd (64 a zmm) or,
 * fp32 set, vfmadd231ps (16 a zmm) */
static TGT double mac_peak(int nt, int fp32)
{
    const long n = 10000000;
    double best = 1e9;
#pragma omp parallel num_threads(nt)
    {
        __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
        __m512i a6 = a0, a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
        const __m512i x = _mm512_set1_epi8(1), y = _mm512_set1_epi8(2);
        for (int r = 0; r < REPS; r++) {
#pragma omp barrier
            const double t0 = now();
#define PEAK_LOOP(op)                                                                      \
    for (long i = 0; i < n; i++)                                                           \
        __asm__ volatile(FMA12(op)                                                         \
                         : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5),     \
                           "+v"(a6), "+v"(a7), "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11)    \
                         : "v"(x), "v"(y))
            if (fp32)
                PEAK_LOOP("vfmadd231ps");
            else
                PEAK_LOOP("vpdpbusd");
#undef PEAK_LOOP
#pragma omp barrier
#pragma omp master
            {
                const double t = now() - t0;
                best = t < best ? t : best;
            }
        }
    }
    return 12.0 * (fp32 ? 16 : 64) * n * nt / best;
}

/* bytes of the 8-panel stream a second, all threads; beside: with the
 * second product's broadcasts and vpdpbusd */
static TGT double stream(int nt, size_t n, int beside)
{
    const size_t tiles = n / (8 * PANEL);
    const int passes = (int)(2000000000 / (tiles * 8 * PANEL)) + 1;
    double best = 1e9;
#pragma omp parallel num_threads(nt)
    {
        int8_t *w = aligned_alloc(64, tiles * 8 * PANEL);
        int8_t *xs = aligned_alloc(64, 8 * PANEL);   /* 8 rows of the second product */
        memset(w, 1, tiles * 8 * PANEL);
        memset(xs, 1, 8 * PANEL);
        __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
        __m512i a6 = a0, a7 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0, b4 = a0, b5 = a0;
        __m512i b6 = a0, b7 = a0;
        const __m512i h = _mm512_set1_epi8(1);
        const long S = PANEL;
        for (int r = 0; r < REPS; r++) {
#pragma omp barrier
            const double t0 = now();
            for (int s = 0; s < passes; s++) {
                for (size_t t = 0; t < tiles; t++) {
                    const int8_t *p = w + t * 8 * PANEL, *q = xs + t % 8 * PANEL;
                    for (long k = 0; k < S; k += 64) {
                        __asm__ volatile(
                            "vpdpbusd (%8),%9,%0\n\tvpdpbusd (%8,%10,1),%9,%1\n\t"
                            "vpdpbusd (%8,%10,2),%9,%2\n\tvpdpbusd (%11),%9,%3\n\t"
                            "vpdpbusd (%8,%10,4),%9,%4\n\tvpdpbusd (%11,%10,2),%9,%5\n\t"
                            "vpdpbusd (%12),%9,%6\n\tvpdpbusd (%12,%10,1),%9,%7"
                            : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5),
                              "+v"(a6), "+v"(a7)
                            : "r"(p + k), "v"(h), "r"(S), "r"(p + 3 * S + k), "r"(p + 6 * S + k));
                        if (beside) {
                            const int32_t *x = (const int32_t *)(xs + k / 16);
                            const __m512i wq = _mm512_load_si512(q + k);
                            __asm__ volatile(
                                "vpdpbusd %8,%9,%0\n\tvpdpbusd %8,%10,%1\n\t"
                                "vpdpbusd %8,%11,%2\n\tvpdpbusd %8,%12,%3\n\t"
                                "vpdpbusd %8,%13,%4\n\tvpdpbusd %8,%14,%5\n\t"
                                "vpdpbusd %8,%15,%6\n\tvpdpbusd %8,%16,%7"
                                : "+v"(b0), "+v"(b1), "+v"(b2), "+v"(b3), "+v"(b4), "+v"(b5),
                                  "+v"(b6), "+v"(b7)
                                : "v"(wq), "v"(_mm512_set1_epi32(x[0])),
                                  "v"(_mm512_set1_epi32(x[1024])), "v"(_mm512_set1_epi32(x[2048])),
                                  "v"(_mm512_set1_epi32(x[3072])), "v"(_mm512_set1_epi32(x[4096])),
                                  "v"(_mm512_set1_epi32(x[5120])), "v"(_mm512_set1_epi32(x[6144])),
                                  "v"(_mm512_set1_epi32(x[7168])));
                        }
                    }
                }
#pragma omp barrier
            }
#pragma omp master
            {
                const double t = now() - t0;
                best = t < best ? t : best;
            }
        }
        volatile int sink = _mm512_reduce_add_epi32(
            _mm512_add_epi32(_mm512_add_epi32(a0, a7), _mm512_add_epi32(b0, b7)));
        (void)sink;
        free(w);
        free(xs);
    }
    return (double)tiles * 8 * PANEL * nt * passes / best;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: int8_ceiling THREADS T I H\n");
        return 2;
    }
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512vnni") || !__builtin_cpu_supports("avx512bw")) {
        fprintf(stderr, "int8_ceiling: this CPU has no AVX512_VNNI\n");
        return 1;
    }
    const int nt = atoi(argv[1]);
    const double T = atof(argv[2]), I = atof(argv[3]), H = atof(argv[4]);
    if (nt < 1 || nt > 1024 || !(T >= 1) || !(I >= 1) || !(H >= 1) || H > 65536) {
        fprintf(stderr, "int8_ceiling: THREADS 1..1024, T and I >= 1, H 1..65536\n");
        return 2;
    }
    const double whh = 4 * H * H;                         /* int8 bytes of W_hh */
    /* a thread's share in whole tiles of 8 panels, at least one */
    const size_t tile = 8 * PANEL, per = (size_t)ceil(whh / nt / tile) * tile;
    const double ghz = clock_ghz(), peak = mac_peak(nt, 0), fma = mac_peak(nt, 1);
    const double bw = stream(nt, per, 0), bw2 = stream(nt, per, 1);
    printf("clock %.2f GHz; on %d thread(s): vpdpbusd %.1f G int8 multiply-adds/s (%.2f zmm a "
           "cycle a thread), vfmadd231ps %.1f GFLOP/s (%.2f)\n", ghz, nt, peak / 1e9,
           peak / 64 / nt / (ghz * 1e9), 2 * fma / 1e9, fma / 16 / nt / (ghz * 1e9));
    printf("W_hh stream, %.2f MB a thread: %.1f GB/s; with 8 rows of a second product "
           "beside it: %.1f GB/s\n", per / 1e6, bw / 1e9, bw2 / 1e9);
    const double t_hh = T * whh / bw, t_ih = T * 4 * H * I / peak;
    printf("bound for B 1, T %.0f, I %.0f, H %.0f: W_hh %.3f ms + input projection %.3f ms"
           " = %.3f ms\n", T, I, H, t_hh * 1e3, t_ih * 1e3, (t_hh + t_ih) * 1e3);
    return 0;
}
