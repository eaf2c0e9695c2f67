/*
 * Runtime settings of the whole library (fastrnn.h): the fast float32 path
 * on or off, the thread count of the kernels, batch-invariant inference. The fast path's vector
 * width is fast/dispatch.c's (fr_set_fast_width).
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
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

/* ---- adaptive threads (fr_set_adaptive_threads) ----------------------------
 * A thread of a team that waits FR_STALL_NS or more for a partner at a step's
 * meeting (fr_note_wait), or a region's thread that lost its core
 * (fr_region_end), is evidence that another process or pool has the core.
 * Then the calls that start during the next back-off period run on one
 * thread; the back-off doubles, from FR_SOLO_MIN_NS to FR_SOLO_MAX_NS, when
 * the stalled work began within FR_AGAIN_NS of the full count's return (the
 * first call after the period that took it; the period's end if none did
 * yet), and starts again from FR_SOLO_MIN_NS otherwise: contention stalls
 * the full count at once, while a quiet machine's lone hiccups (a few a
 * second on a VM) come later and each cost one short period. Regions too
 * short to lose FR_REGION_STALL_NS each are judged together: their time
 * and losses add up until FR_REGION_WINDOW_NS of regions (a core shared
 * with a spinning pool loses a fraction of every short region). All of it
 * atomic: any thread may call. The values and why: docs/tuning.md. */
#define FR_STALL_NS 2000000LL        /* no step's imbalance waits that long */
#define FR_REGION_STALL_NS 1000000LL /* time lost in a region (fr_region_end) */
#define FR_REGION_WINDOW_NS 4000000LL /* short regions' time judged at once */
#define FR_SOLO_MIN_NS 20000000LL
#define FR_SOLO_MAX_NS 2000000000LL
#define FR_AGAIN_NS 20000000LL       /* a stall this soon after the full count's return doubles */
#define FR_RECENT_NS 50000000LL      /* waiting threads yield at once this long after a stall */

static atomic_int fr_adaptive = -1;          /* -1: FASTRNN_ADAPTIVE_THREADS, read once */
static _Atomic int64_t fr_solo_until = 0;    /* monotonic ns: one thread until then */
static _Atomic int64_t fr_solo_len = 0;      /* the back-off now */
static _Atomic int64_t fr_full_since = 0;    /* when a call first took the full count after it */
static atomic_int fr_recent = 0;             /* a stall in the last FR_RECENT_NS or so */
static _Atomic int64_t fr_last_stall = 0;    /* when, for fr_recent */
static _Atomic int64_t fr_stalls = 0, fr_solo_periods = 0, fr_taken = 0;   /* the stats */
/* the short regions not judged yet: their summed time and losses, and the
 * start of the first of them */
static _Atomic int64_t fr_win_wall = 0, fr_win_lost = 0, fr_win_start = 0;

/* The window of short regions emptied. */
static void win_reset(void)
{
    atomic_store_explicit(&fr_win_wall, 0, memory_order_relaxed);
    atomic_store_explicit(&fr_win_lost, 0, memory_order_relaxed);
    atomic_store_explicit(&fr_win_start, 0, memory_order_relaxed);
}
/* for the tests: fr_stalled_since is always true (every call's helpers
 * leave after step 0, as after a stall during the call) */
static atomic_int fr_leave_test = 0;

int64_t fr_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t fr_thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int fr_adaptive_threads(void)
{
    int a = atomic_load_explicit(&fr_adaptive, memory_order_relaxed);
    if (a < 0) {
        const char *e = getenv("FASTRNN_ADAPTIVE_THREADS");
        a = !(e != NULL && (strcmp(e, "0") == 0 || strcasecmp(e, "off") == 0
                            || strcasecmp(e, "false") == 0));
        int expected = -1;   /* a setting made meanwhile wins */
        if (!atomic_compare_exchange_strong(&fr_adaptive, &expected, a)) a = expected;
    }
    return a;
}

int fr_set_adaptive_threads(int on)
{
    if (on < 0) return fr_adaptive_threads();
    const int was = fr_adaptive_threads();
    atomic_store_explicit(&fr_adaptive, on != 0, memory_order_relaxed);
    if (!on) {   /* no period, quick yield or half-judged regions left behind */
        atomic_store_explicit(&fr_solo_until, 0, memory_order_relaxed);
        atomic_store_explicit(&fr_recent, 0, memory_order_relaxed);
        win_reset();
    }
    return was;
}

/* A stall of work that began at `began` (monotonic ns): counted always; with
 * adaptation on, it starts a one-thread period (unless one is running) and
 * the quick yields. */
static void stall(int64_t began)
{
    atomic_fetch_add_explicit(&fr_stalls, 1, memory_order_relaxed);
    win_reset(); /* the regions before it are judged: they start no second stall */
    if (!fr_adaptive_threads()) return;
    const int64_t now = fr_now_ns();
    atomic_store_explicit(&fr_last_stall, now, memory_order_relaxed);
    atomic_store_explicit(&fr_recent, 1, memory_order_relaxed);
    int64_t until = atomic_load_explicit(&fr_solo_until, memory_order_relaxed);
    if (now < until) return;   /* a call that started before the period began */
    int64_t len = atomic_load_explicit(&fr_solo_len, memory_order_relaxed);
    /* the full count stalled as soon as it came back: back off longer;
     * else start short */
    int64_t back = atomic_load_explicit(&fr_full_since, memory_order_relaxed);
    if (back < until) back = until;
    len = (until > 0 && len > 0 && began - back < FR_AGAIN_NS) ? 2 * len : FR_SOLO_MIN_NS;
    if (len > FR_SOLO_MAX_NS) len = FR_SOLO_MAX_NS;
    if (atomic_compare_exchange_strong(&fr_solo_until, &until, now + len)) {
        atomic_store_explicit(&fr_solo_len, len, memory_order_relaxed);
        atomic_fetch_add_explicit(&fr_solo_periods, 1, memory_order_relaxed);
    }
}

void fr_note_wait(int64_t waited_ns)
{
    if (waited_ns >= FR_STALL_NS) stall(fr_now_ns() - waited_ns);
}

void fr_note_region(int64_t start, int64_t wall, int64_t lost)
{
    if (lost >= FR_REGION_STALL_NS && 4 * lost >= wall) {
        stall(start);
        return;
    }
    /* a short region: added to the window; the call that fills it judges
     * it and empties it (racing calls may judge a window twice or miss a
     * region: a count, not a ledger) */
    int64_t s0 = 0;
    atomic_compare_exchange_strong(&fr_win_start, &s0, start);
    const int64_t w = atomic_fetch_add_explicit(&fr_win_wall, wall, memory_order_relaxed) + wall;
    const int64_t l = atomic_fetch_add_explicit(&fr_win_lost, lost, memory_order_relaxed) + lost;
    if (w < FR_REGION_WINDOW_NS) return;
    const int64_t began = atomic_load_explicit(&fr_win_start, memory_order_relaxed);
    win_reset();
    if (l >= FR_REGION_STALL_NS && 4 * l >= w) stall(began ? began : start);
}

void fr_region_end(const fr_region_clock *c)
{
    if (c->start == 0) return;
    const int64_t first = atomic_load_explicit(&c->first, memory_order_relaxed);
    const int64_t last = atomic_load_explicit(&c->last, memory_order_relaxed);
    if (first == 0) return;
    if (c->cpu) {
        fr_note_region(c->start, last - c->start,
                       atomic_load_explicit(&c->lost, memory_order_relaxed));
    } else if (last - first >= FR_REGION_STALL_NS) {
        stall(c->start);
    }
}

void fr_note_taken(void)
{
    atomic_fetch_add_explicit(&fr_taken, 1, memory_order_relaxed);
}

int fr_stall_recent(void)
{
    return atomic_load_explicit(&fr_recent, memory_order_relaxed);
}

int64_t fr_stall_count(void)
{
    return atomic_load_explicit(&fr_stalls, memory_order_relaxed);
}

int fr_stalled_since(int64_t count)
{
    return atomic_load_explicit(&fr_stalls, memory_order_relaxed) != count
           || atomic_load_explicit(&fr_leave_test, memory_order_relaxed);
}

int fr_set_leave_test(int on)
{
    return atomic_exchange_explicit(&fr_leave_test, on != 0, memory_order_relaxed);
}

void fr_thread_stats(int64_t *stalls, int64_t *solo_periods, int64_t *solo_left_ns,
                     int64_t *taken)
{
    *stalls = atomic_load_explicit(&fr_stalls, memory_order_relaxed);
    *solo_periods = atomic_load_explicit(&fr_solo_periods, memory_order_relaxed);
    *taken = atomic_load_explicit(&fr_taken, memory_order_relaxed);
    const int64_t left = atomic_load_explicit(&fr_solo_until, memory_order_relaxed) - fr_now_ns();
    *solo_left_ns = left > 0 && fr_adaptive_threads() ? left : 0;
}

int fr_full_threads(void)
{
    const int n = fr_num_threads_setting();
    if (n > 0) return n;
    const int m = fr_max_threads();
    return m > 1 ? m : 1;
}

int fr_num_threads(void)
{
    const int n = fr_full_threads();
    if (atomic_load_explicit(&fr_recent, memory_order_relaxed)
        && (!fr_adaptive_threads()
            || fr_now_ns() - atomic_load_explicit(&fr_last_stall, memory_order_relaxed)
                   > FR_RECENT_NS))
        atomic_store_explicit(&fr_recent, 0, memory_order_relaxed);
    if (n <= 1 || !fr_adaptive_threads()) return n;
    const int64_t until = atomic_load_explicit(&fr_solo_until, memory_order_relaxed);
    if (until == 0) return n;
    const int64_t now = fr_now_ns();
    if (now < until) return 1;
    /* the first call to take the full count after the period: FR_AGAIN_NS
     * counts from here */
    int64_t f = atomic_load_explicit(&fr_full_since, memory_order_relaxed);
    if (f < until) atomic_compare_exchange_strong(&fr_full_since, &f, now);
    return n;
}
