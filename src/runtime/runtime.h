/*
 * Internal: what every kernel of the library shares, held once in C: the
 * BLAS given to fr_set_blas and its thread pin (blas.c), the fast-path
 * switch (settings.c), and the step team's note of OpenMP regions
 * (team.c). Not part of the public API; nothing here knows Python.
 */
#ifndef FASTRNN_RUNTIME_H
#define FASTRNN_RUNTIME_H

#include <stdatomic.h>
#include <stdint.h>
#include "fastrnn.h"
#include "runtime/team.h"
#ifdef _OPENMP
#include <omp.h>
#endif

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

/* CLOCK_MONOTONIC in ns (settings.c): the waits fr_note_wait is given. */
int64_t fr_now_ns(void);

/* Adaptive threads saw a stall lately (FR_RECENT_NS, settings.c; the
 * flag is cleared by the first call after that): waiting threads then
 * yield at once (fr_fast_spin_turns), since a partner that lost its core
 * may be waiting for this very core. */
int fr_stall_recent(void);

/* Stalls seen so far (fr_thread_stats' count), and whether one came since
 * fr_stall_count gave `count`: a call reads it before its region. */
int64_t fr_stall_count(void);
int fr_stalled_since(int64_t count);

/* For the tests: fr_stalled_since always true, so that every call's
 * helpers leave after step 0. Returns the previous setting. */
int fr_set_leave_test(int on);

/* A thread took another's slice of a step (fr_thread_stats counts them). */
void fr_note_taken(void);

/* CPU time of the calling thread in ns (settings.c; a system call). */
int64_t fr_thread_cpu_ns(void);

/* How the threads of one OpenMP region fared: the caller fr_region_begin's
 * before the region (going: it starts more than one thread; cpu: the
 * region has FR_REGION_CPU_WORK multiply-adds or more, enough to pay for
 * reading each thread's CPU clock), each thread fr_region_enter's at the
 * start of its share and fr_region_done's at its end, the caller
 * fr_region_end's after it. A stall (fr_note_wait's) is, where the CPU
 * clocks were read, a thread that lost FR_REGION_STALL_NS or more of the
 * region to the OS and at least a quarter of the region's time (its share
 * then runs late, and one thread would not have been slower), or where
 * short regions lost that much together (fr_note_region); elsewhere,
 * a spread of FR_REGION_STALL_NS or more between the first and the last
 * to finish (no short region's shares differ by that much on cores of
 * their own). */
#define FR_REGION_CPU_WORK 4000000.0 /* multiply-adds: read the CPU clocks from here */

typedef struct {
    int64_t start;
    int cpu;
    _Atomic int64_t first, last, lost;
} fr_region_clock;

typedef struct {
    int64_t wall, cpu;
} fr_region_mark;

static inline void fr_region_begin(fr_region_clock *c, int going, int cpu)
{
    c->start = going ? fr_now_ns() : 0;
    c->cpu = cpu;
    atomic_init(&c->first, 0);
    atomic_init(&c->last, 0);
    atomic_init(&c->lost, 0);
}

static inline fr_region_mark fr_region_enter(const fr_region_clock *c)
{
    fr_region_mark m = {0, 0};
    if (c->start != 0 && c->cpu) {
        m.wall = fr_now_ns();
        m.cpu = fr_thread_cpu_ns();
    }
    return m;
}

static inline void fr_region_done(fr_region_clock *c, fr_region_mark m)
{
    if (c->start == 0) return;
    const int64_t t = fr_now_ns();
    if (m.wall != 0) {
        const int64_t lost = (t - m.wall) - (fr_thread_cpu_ns() - m.cpu);
        int64_t l = atomic_load_explicit(&c->lost, memory_order_relaxed);
        while (lost > l
               && !atomic_compare_exchange_weak_explicit(&c->lost, &l, lost,
                                                         memory_order_relaxed,
                                                         memory_order_relaxed)) {}
    }
    int64_t f = atomic_load_explicit(&c->first, memory_order_relaxed);
    while ((f == 0 || t < f)
           && !atomic_compare_exchange_weak_explicit(&c->first, &f, t, memory_order_relaxed,
                                                     memory_order_relaxed)) {}
    int64_t l = atomic_load_explicit(&c->last, memory_order_relaxed);
    while (t > l
           && !atomic_compare_exchange_weak_explicit(&c->last, &l, t, memory_order_relaxed,
                                                     memory_order_relaxed)) {}
}

void fr_region_end(const fr_region_clock *c);

/* A region's verdict from its start (monotonic ns), time and the most a
 * thread of it lost to the OS (ns): a stall where that is FR_REGION_STALL_NS
 * and a quarter of its time; else the region joins the window of short
 * ones, judged by the same rule once their time reaches
 * FR_REGION_WINDOW_NS (settings.c). fr_region_end calls it where the CPU
 * clocks were read; the tests call it directly (_ext.note_region). */
void fr_note_region(int64_t start, int64_t wall, int64_t lost);

/* Measured thread counts (pick.c): a recurrent call (T >= 2, steps and
 * call within FR_PICK_MAX_STEP and FR_PICK_MAX_WORK multiply-adds) with
 * adaptive threads on and a count n >= 2 runs on 1 thread or n, as its
 * shape's recent calls went faster: the caller runs with fr_pick_begin's
 * count, then calls fr_pick_end. kind
 * tells apart calls of one shape with other work (training, packed, rows,
 * backward, float64, int8 or bf16 weights). fr_picked_one: calls sent to
 * one thread by a verdict so far; fr_pick_forget empties the table. */
typedef struct {
    int slot, one;
    uint64_t key;
    int64_t T, start;
} fr_pick;

#define FR_PICK_TRAIN 1
#define FR_PICK_PACKED 2
#define FR_PICK_ROWS 4
#define FR_PICK_BACKWARD 8
#define FR_PICK_F64 16
#define FR_PICK_INT8 32   /* frq_forward's narrow weights */
#define FR_PICK_BF16 64

int fr_pick_begin(fr_pick *p, const fr_desc *d, int kind);
void fr_pick_end(const fr_pick *p);
void fr_pick_forget(void);
/* For the tests: each call records one_ns (one thread) or full_ns (the full
 * count) as its time per step instead of the clock's; 0 leaves the clock. */
void fr_pick_plant(int64_t one_ns, int64_t full_ns);

/* This thread's number in the current OpenMP team and the team's size (0
 * and 1 outside a team, or without OpenMP). */
static inline void fr_omp_me(int *tid, int *nth)
{
#ifdef _OPENMP
    *tid = omp_get_thread_num();
    *nth = omp_get_num_threads();
#else
    *tid = 0;
    *nth = 1;
#endif
}

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
