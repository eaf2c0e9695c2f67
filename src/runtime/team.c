/*
 * The step team (team.h): helper threads that run the slices of one
 * time step.
 *
 * Two words, each in a cache line of its own:
 *  - claim: the job's generation (high 32 bits) and one bit a slice (low
 *    32), set when some thread has taken the slice. The caller publishes a
 *    job by storing the new generation with slice 0 and every bit from n
 *    up already set. A thread takes slice k with one fetch_or of bit k: the
 *    old value says whether it got it, and for which generation.
 *  - fin: one bit a slice a helper has finished.
 * A helper may be late by any number of jobs: a fetch_or on a job whose
 * slices are all taken takes nothing, so a late helper never runs a stale
 * job, and the caller, which took everything left, never waits for it.
 * The job (fn, arg, n) is written before the claim word is stored
 * (release), and read by a helper only after its fetch_or took a slice
 * (acquire); the caller writes the next job only after it has seen every
 * slice a helper took finished (fin, release/acquire), so no helper reads
 * a job while it changes.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* sched_getcpu, sched_getaffinity */
#endif
#include "runtime/team.h"
#include "fast/schedule.h"
#include "fast/tuning.h"

#if defined(__unix__) || defined(__APPLE__)

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

typedef struct {
    _Alignas(64) _Atomic uint64_t word;
    char pad_[56];
} line_u64;

static line_u64 claim, fin;
static atomic_int enabled = 0; /* off unless asked for (team.h) */
static atomic_flag busy = ATOMIC_FLAG_INIT;
static atomic_int sleepers;
static pthread_mutex_t sleep_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
/* The job, and the team, are the business of the caller holding `busy`. */
static fr_team_fn job_fn;
static void *job_arg;
static int job_n;
static uint32_t generation;
static int helpers; /* started: slices 1..helpers have a thread */
/* OpenMP regions: how many have started (helpers spinning stop when it
 * moves), and when the latest of another kernel did (ms) */
static line_u64 omp_regions;
static _Atomic int64_t omp_last_ms = INT64_MIN / 4;
/* when a step last took OpenMP (fr_team_run returned 0) */
static _Atomic int64_t step_omp_last_ms = INT64_MIN / 4;
/* the CPU the latest caller ran on, or -1 */
static atomic_int caller_cpu = -1;

static int this_cpu(void)
{
#if defined(__linux__)
    return sched_getcpu();
#else
    return -2;
#endif
}

/* A coarse monotonic clock in ms: its resolution is plenty for the quiet
 * time, and it is much cheaper to read than the fine one. */
static int64_t now_ms(void)
{
    struct timespec t;
#ifdef CLOCK_MONOTONIC_COARSE
    if (clock_gettime(CLOCK_MONOTONIC_COARSE, &t) != 0)
#endif
        clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int64_t now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

void fr_team_note_omp(void)
{
    /* nothing to tell while the team is off (fr_team_enable starts it with
     * a quiet time instead) */
    if (!atomic_load_explicit(&enabled, memory_order_relaxed)) return;
    atomic_fetch_add_explicit(&omp_regions.word, 1, memory_order_relaxed);
    atomic_store_explicit(&omp_last_ms, now_ms(), memory_order_relaxed);
}

/* 1 when libgomp spins as by default: neither OMP_WAIT_POLICY nor
 * GOMP_SPINCOUNT set (read once). */
static int default_spinning(void)
{
    static atomic_int v = -1;
    int r = atomic_load_explicit(&v, memory_order_relaxed);
    if (r < 0) {
        r = getenv("OMP_WAIT_POLICY") == NULL && getenv("GOMP_SPINCOUNT") == NULL;
        atomic_store_explicit(&v, r, memory_order_relaxed);
    }
    return r;
}

int fr_team_enable(int on)
{
    if (on < 0) return atomic_load_explicit(&enabled, memory_order_relaxed);
    /* while it was off no region was noted: libgomp's threads may be
     * spinning, so the first FR_TEAM_QUIET_MS run every slice on the caller */
    if (on) atomic_store_explicit(&step_omp_last_ms, now_ms(), memory_order_relaxed);
    return atomic_exchange_explicit(&enabled, on > 2 ? 2 : on, memory_order_relaxed);
}

unsigned fr_team_jobs(void)
{
    return (unsigned)(atomic_load_explicit(&claim.word, memory_order_relaxed) >> 32);
}

/* Helper k: takes slice k of every job it sees. */
static void *helper(void *p)
{
    const int k = (int)(intptr_t)p;
    const uint64_t bit = (uint64_t)1 << k;
    uint32_t seen = (uint32_t)(atomic_load_explicit(&claim.word, memory_order_relaxed) >> 32);
    for (;;) {
        /* crowded CPUs (more threads meet every step than there are CPUs,
         * fr_fast_spin_turns) or a passive wait policy: no spinning at all */
        const int polite = fr_fast_spin_turns() < FR_TEAM_POLITE_TURNS;
        const uint64_t regions = atomic_load_explicit(&omp_regions.word, memory_order_relaxed);
        int spins = 0, shared_cpu = 0;
        int64_t since = -1;
        while ((uint32_t)(atomic_load_explicit(&claim.word, memory_order_relaxed) >> 32) == seen) {
            /* Spin for FR_TEAM_HELPER_WAIT_US, as libgomp's threads do after
             * a region: with pause, but with yields while on the CPU of the
             * latest caller (the kernel likes to wake a thread on its
             * waker's CPU: spinning there keeps that caller from the CPU it
             * waits for). Stop at once when an OpenMP region starts: its
             * threads need the cores. */
            if (!polite && atomic_load_explicit(&omp_regions.word, memory_order_relaxed) == regions) {
                if ((spins++ & (FR_TEAM_CLOCK_EVERY - 1)) == 0) { /* a power of 2 */
                    const int64_t t = now_us();
                    if (since < 0) since = t;
                    if (t - since >= FR_TEAM_HELPER_WAIT_US) goto sleep;
                    shared_cpu = this_cpu() == atomic_load_explicit(&caller_cpu, memory_order_relaxed);
                }
                if (shared_cpu) sched_yield();
                else CPU_RELAX();
                continue;
            }
        sleep:
            /* asleep until a caller publishes a job: it reads `sleepers`
             * after storing the claim word, this thread reads the claim word
             * after counting itself (both sequentially consistent), so one
             * of them sees the other */
            pthread_mutex_lock(&sleep_lock);
            atomic_fetch_add_explicit(&sleepers, 1, memory_order_seq_cst);
            while ((uint32_t)(atomic_load_explicit(&claim.word, memory_order_seq_cst) >> 32) == seen)
                pthread_cond_wait(&wake, &sleep_lock);
            atomic_fetch_sub_explicit(&sleepers, 1, memory_order_relaxed);
            pthread_mutex_unlock(&sleep_lock);
            break;
        }
        const uint64_t old = atomic_fetch_or_explicit(&claim.word, bit, memory_order_acq_rel);
        seen = (uint32_t)(old >> 32);
        if (old & bit) continue; /* taken, or no slice k in this job */
        job_fn(job_arg, k, job_n);
        atomic_fetch_or_explicit(&fin.word, bit, memory_order_release);
    }
    return NULL;
}

/* In a child after fork() the helpers do not exist: start anew. */
static void after_fork_child(void)
{
    helpers = 0;
    atomic_store_explicit(&sleepers, 0, memory_order_relaxed);
    atomic_flag_clear_explicit(&busy, memory_order_relaxed);
    pthread_mutex_init(&sleep_lock, NULL);
    pthread_cond_init(&wake, NULL);
}

static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
static void register_fork(void) { pthread_atfork(NULL, NULL, after_fork_child); }

/* CPUs this process may run on (read once). */
static int cpus(void)
{
    static atomic_int n;
    int v = atomic_load_explicit(&n, memory_order_relaxed);
    if (v == 0) {
        v = 1;
#if defined(__linux__) && defined(CPU_COUNT)
        cpu_set_t set;
        if (sched_getaffinity(0, sizeof set, &set) == 0) v = CPU_COUNT(&set);
        else
#endif
        {
            long c = sysconf(_SC_NPROCESSORS_ONLN);
            v = c > 0 ? (int)c : 1;
        }
        if (v < 1) v = 1;
        atomic_store_explicit(&n, v, memory_order_relaxed);
    }
    return v;
}

/* Helpers for slices 1..m (the caller holds `busy`); 0 if one fails. */
static int start_helpers(int m)
{
    pthread_once(&fork_once, register_fork);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* signals stay with the callers */
    int ok = 1;
    while (helpers < m) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        const int rc = pthread_create(&t, &attr, helper, (void *)(intptr_t)(helpers + 1));
        pthread_attr_destroy(&attr);
        if (rc != 0) {
            ok = 0;
            break;
        }
        helpers++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return ok;
}

/* The caller takes OpenMP: libgomp's threads will spin after it. */
static int to_openmp(void)
{
    atomic_fetch_add_explicit(&omp_regions.word, 1, memory_order_relaxed);
    atomic_store_explicit(&step_omp_last_ms, now_ms(), memory_order_relaxed);
    return 0;
}

int fr_team_run(int n, fr_team_fn fn, void *arg)
{
    const int on = atomic_load_explicit(&enabled, memory_order_relaxed);
    if (!on) return 0; /* the default: OpenMP, nothing to note */
    if (n < 2 || n > FR_TEAM_MAX || n > cpus() || !default_spinning())
        return to_openmp();
    if (on == 1) { /* 2: no quiet times */
        const int64_t now = now_ms();
        /* another kernel's region lately: libgomp's threads are warm, take them */
        if (now - atomic_load_explicit(&omp_last_ms, memory_order_relaxed) < FR_TEAM_QUIET_MS)
            return to_openmp();
        /* only steps on OpenMP lately: every slice here while its threads
         * wind down */
        if (now - atomic_load_explicit(&step_omp_last_ms, memory_order_relaxed)
            < FR_TEAM_QUIET_MS) {
            for (int s = 0; s < n; s++) fn(arg, s, n);
            return 1;
        }
    }
    if (atomic_flag_test_and_set_explicit(&busy, memory_order_acquire)) return to_openmp();
    if (helpers < n - 1 && !start_helpers(n - 1)) {
        atomic_flag_clear_explicit(&busy, memory_order_release);
        return to_openmp();
    }
    job_fn = fn;
    job_arg = arg;
    job_n = n;
    atomic_store_explicit(&caller_cpu, this_cpu(), memory_order_relaxed);
    atomic_store_explicit(&fin.word, 0, memory_order_relaxed);
    const uint32_t taken = (uint32_t)(~(uint64_t)0 << n) | 1u; /* no slice n.., 0 is mine */
    generation++;
    atomic_store_explicit(&claim.word, ((uint64_t)generation << 32) | taken,
                          memory_order_seq_cst);
    if (atomic_load_explicit(&sleepers, memory_order_seq_cst) > 0) {
        pthread_mutex_lock(&sleep_lock);
        pthread_cond_broadcast(&wake);
        pthread_mutex_unlock(&sleep_lock);
    }
    fn(arg, 0, n);
    /* every slice no helper has taken yet runs here */
    uint64_t theirs = 0;
    for (int s = 1; s < n; s++) {
        const uint64_t bit = (uint64_t)1 << s;
        if (atomic_fetch_or_explicit(&claim.word, bit, memory_order_acq_rel) & bit) {
            theirs |= bit;
            continue;
        }
        fn(arg, s, n);
    }
    /* A helper still on its slice: normally a fraction of a slice's time
     * behind. Spin a little, then give the CPU away at every turn: a helper
     * woken onto this very CPU (the kernel likes the waker's CPU) runs only
     * when this thread yields. */
    for (int spins = 0;
         (atomic_load_explicit(&fin.word, memory_order_acquire) & theirs) != theirs; spins++) {
        if (spins < FR_TEAM_WAIT_SPINS) CPU_RELAX();
        else sched_yield();
    }
    atomic_flag_clear_explicit(&busy, memory_order_release);
    return 1;
}

#else /* no POSIX threads: the team is never used */

void fr_team_note_omp(void) {}

int fr_team_run(int n, fr_team_fn fn, void *arg)
{
    (void)n; (void)fn; (void)arg;
    return 0;
}

int fr_team_enable(int on)
{
    (void)on;
    return 0;
}

unsigned fr_team_jobs(void) { return 0; }

#endif
