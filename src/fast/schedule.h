/*
 * Internal: how the fast float32 loops are scheduled, compiled once for
 * both builds of the kernels (schedule.c). Not part of the public API.
 *
 * Each choice is a function of the shape (fr_desc) and, for the thread
 * split, of the thread count; where it depends on the vector width the
 * caller passes it (vw, 8 or 16). None of them changes a bit of a result:
 * they pick among paths that compute every value with the same
 * instruction sequence. The constants they use are in tuning.h.
 *
 * Scratch of the fast loops (the forward's Wp, the backward's Rp, 64-byte
 * aligned): W_hh packed in panels (fr_fast_pack_floats, or the forward's
 * fr_fast_fwd_pack_floats), then 2*B int64 for the length order of a
 * variable-length batch, rounded up to a panel, then, in projection mode 2,
 * W_ih's panels (fr_fast_ih_floats, from fr_fast_ih_offset).
 */
#ifndef FASTRNN_FAST_SCHEDULE_H
#define FASTRNN_FAST_SCHEDULE_H

#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FR_CPU_RELAX() _mm_pause()
#else
#define FR_CPU_RELAX() ((void)0)
#endif
#include "fastrnn.h"
#include "fast/tuning.h"
#include "runtime/runtime.h"

/* Internal to the library: hidden symbols, so that calls between its files
 * are direct (no PLT) and calls within a file may be inlined. */
#pragma GCC visibility push(hidden)

/* ---- packed weights and scratch ------------------------------------------ */

/* Panels are 8 or 16 floats wide (the vector width); the scratch sizes
 * below are for 16, so they serve either. */
#define FR_FAST_PANEL_MAX 16
#define fr_fast_round_panel(n) \
    (((n) + FR_FAST_PANEL_MAX - 1) / FR_FAST_PANEL_MAX * FR_FAST_PANEL_MAX)

/* Floats of W_hh packed in panels (G*H by H, H rounded up to a panel). */
int64_t fr_fast_pack_floats(const fr_desc *d);

/* Does the forward loop pack W_hh? From FR_FAST_PACK_MIN_T steps, but not
 * at batch 1 with a W_hh of more than FR_FAST_PACK_MAX_B1 floats; always
 * when batch-invariant (d->batch_invariant: the panels' order whatever T
 * and B). */
int fr_fast_fwd_packs(const fr_desc *d);

/* Floats of W_hh the forward packs: fr_fast_pack_floats, or 0. */
int64_t fr_fast_fwd_pack_floats(const fr_desc *d);

/* Scratch of the backward loop (fr_fast_pack_len) and of the forward loop
 * without W_ih's panels (fr_fast_fwd_pack_len): the packed W_hh, 2*B int64
 * for the length order, 32 floats for the 64-byte alignments. */
int64_t fr_fast_pack_len(const fr_desc *d);
int64_t fr_fast_fwd_pack_len(const fr_desc *d);

/* Where W_ih's panels start in the forward scratch (projection mode 2),
 * 64-byte aligned when the scratch is. */
int64_t fr_fast_ih_offset(const fr_desc *d);

/* Floats of W_ih packed in panels for inputs of size In in projection
 * mode 2, else 0. */
int64_t fr_fast_ih_floats(const fr_desc *d, int64_t In);

/* Floats of one layer and direction's weights packed once
 * (fr_fast_pack_f32): W_hh's panels, then W_ih's (inputs of size In). */
int64_t fr_fast_packed_floats(const fr_desc *d, int64_t In);

/* ---- the input projection ------------------------------------------------- */

/* How the fast path projects x:
 *   0: one GEMM before the loop (the fast kernels' panel GEMM, through
 *      portable/gemm_impl.h's pgemm)
 *   1: dot tiles on unpacked W_ih in the loop
 *   2: packed W_ih panels in the loop.
 * prepacked: the weights were packed once (fr_fast_pack_f32); then a
 * large W_ih of FR_FAST_INLOOP_PACK_M to FR_FAST_INLOOP_PACK_M_BIG rows
 * is read from its panels in the loop (mode 2) instead of being packed by
 * the GEMM on every call: the same bits, as both start each output from
 * the bias and run one FMA chain over k in order. Batch-invariant
 * (d->batch_invariant): 2 where it would be 1, so that no row's order
 * depends on T*B or B. */
int fr_fast_proj_mode_pk(const fr_desc *d, int prepacked);
int fr_fast_proj_mode(const fr_desc *d); /* not prepacked */

/* ---- threads --------------------------------------------------------------- */

/* Threads of the units split: d->num_threads, 1 below FR_FAST_MIN_WORK
 * multiply-adds a step, at most one per vw units. */
int fr_fast_threads(const fr_desc *d, int vw);

/* Threads of a batch split between threads (every thread all units of its
 * own sequences, no meeting between steps), or 0 for the units split.
 * Equal lengths only. */
int fr_fast_by_rows(const fr_desc *d, int vw);

/* The batch split for a variable-length batch (forward, W_hh packed; x
 * projected before the loop, or, with a W_hh that fits L2, by each thread
 * for its units before the rows' loop): the thread count, or 0. */
int fr_fast_var_by_rows(const fr_desc *d, int packed);

/* With the batch split over by_rows threads and x projected in the loop
 * (mode 2), does each thread project its own rows at each step (1), or
 * are x's projections made before the loop (0; always with lengths)? In:
 * W_ih's input size. */
int fr_fast_rows_project(const fr_desc *d, int by_rows, int mode, int64_t In);

/* Units [j0, j1) of thread tid among nth: blocks of vw units (one panel),
 * so that block boundaries (and the padded tail) do not depend on the
 * thread count. Returned by value: the callers' j0 and j1 then stay in
 * registers through their time loops (no address of them escapes). */
typedef struct {
    int64_t j0, j1;
} fr_fast_units;
fr_fast_units fr_fast_unit_slice(int64_t H, int vw, int tid, int nth);

/* ---- variable lengths ------------------------------------------------------ */

/* The batch rows sorted by length, longest first (ties by index), in the
 * scratch at `at` (2*B int64), or NULL when every length is T. The rows
 * still active at step t are then a prefix. The second B int64 are free
 * once it returns (per-thread lists of the batch split). */
int64_t *fr_fast_rows_by_length(const fr_desc *d, float *at);

/* Number of sequences active at step t, moving from n (its value at a
 * neighbouring step); order from fr_fast_rows_by_length. */
static inline int64_t active_count(const int64_t *lengths, const int64_t *order, int64_t B,
                                   int64_t t, int64_t n)
{
    while (n > 0 && lengths[order[n - 1]] <= t) n--;
    while (n < B && lengths[order[n]] > t) n++;
    return n;
}

/* ---- a batch-first y ------------------------------------------------------ */

/* With y batch-first (ybs > yts: one step's rows a page or more apart,
 * where no hardware prefetcher follows the stores), units [j0, j1) of row
 * b at the step after t (dir 1: the reverse direction's next, t - 1) asked
 * into cache now, so a fresh y does not miss on every line a step writes.
 * Row (t, b) of y is at y + t*yts + b*ybs. */
static inline void fr_y_prefetch_next(const float *y, int64_t yts, int64_t ybs, int64_t T,
                                      int dir, int64_t t, int64_t b, int64_t j0, int64_t j1)
{
    const int64_t tn = dir ? t - 1 : t + 1;
    if (ybs <= yts || tn < 0 || tn >= T) return;
    const float *p = y + tn * yts + b * ybs;
    for (int64_t j = j0; j < j1; j += FR_FAST_LINE_FLOATS) __builtin_prefetch(p + j, 1, 3);
}

/* ---- the threads' meeting once a step -------------------------------------- */

/* A team of n threads that will meet every step starts (delta n) or ends
 * (-n): one count over every caller and both builds of the kernels. */
void fr_fast_meeting_threads(int delta);

/* Turns a waiting thread spins before it yields the CPU:
 * FR_FAST_SPIN_TURNS, FR_FAST_SPIN_TURNS_CROWDED while more threads are
 * in meeting teams than this process has CPUs, 0 under
 * OMP_WAIT_POLICY=passive or just after a stall (fr_stall_recent). */
int fr_fast_spin_turns(void);

/* The meeting of the time loops' threads once a step: a counter and a
 * flag that flips each time, in a cache line of their own (cheaper than
 * OpenMP's barrier). A waiting thread spins with pause for
 * fr_fast_spin_turns() turns, then yields to the OS at every turn, and
 * reports how long it yielded (fr_note_wait: adaptive threads). Each
 * thread's writes before the meeting are seen by every thread after it:
 * the counter's add releases and acquires, the flag is stored with
 * release and loaded with acquire. */
/* One turn of a wait: a pause while spins < limit, then a yield to the OS,
 * the first of which notes the time in *t0 (the wait past the spinning,
 * which the waiter gives fr_note_wait when it ends). */
static inline void wait_turn(int spins, int limit, int64_t *t0)
{
    if (spins < limit) {
        FR_CPU_RELAX();
    } else {
        if (*t0 == 0) *t0 = fr_now_ns();
        sched_yield();
    }
}

typedef struct {
    _Alignas(64) atomic_int count;
    atomic_int flag;
    char pad_[56];
} step_meet;

static inline void meet(step_meet *m, int nth, int *my_flag)
{
    const int f = !*my_flag;
    *my_flag = f;
    if (atomic_fetch_add_explicit(&m->count, 1, memory_order_acq_rel) == nth - 1) {
        atomic_store_explicit(&m->count, 0, memory_order_relaxed);
        atomic_store_explicit(&m->flag, f, memory_order_release);
        return;
    }
    const int limit = fr_fast_spin_turns();
    int64_t t0 = 0;   /* when the spinning ended: the wait past it goes to fr_note_wait */
    for (int spins = 0; atomic_load_explicit(&m->flag, memory_order_acquire) != f; spins++)
        wait_turn(spins, limit, &t0);
    if (t0 != 0) fr_note_wait(fr_now_ns() - t0);
}

/* The forward's units split with claimable slices: slice k of step s is
 * claimed once (state 2s -> 2s+1, slice_claim) and marked done (2s+2,
 * slice_done); step s is over when every slot is past 2s+1. A thread takes
 * its own slice first and another's only when that one's owner is late
 * (it lost its core): the slices compute the same instructions whoever
 * runs them, so the bits do not change. One cache line a slot. */
#define FR_MAX_SLICES 64
typedef struct {
    _Alignas(64) _Atomic int64_t state;
    char pad_[56];
} fr_slice_slot;

static inline int slice_claim(fr_slice_slot *sl, int64_t s)
{
    int64_t want = 2 * s;
    if (atomic_load_explicit(&sl->state, memory_order_relaxed) != want) return 0;
    return atomic_compare_exchange_strong_explicit(&sl->state, &want, 2 * s + 1,
                                                   memory_order_acq_rel, memory_order_relaxed);
}

static inline void slice_done(fr_slice_slot *sl, int64_t s)
{
    atomic_store_explicit(&sl->state, 2 * s + 2, memory_order_release);
}

static inline int slice_finished(fr_slice_slot *sl, int64_t s)
{
    return atomic_load_explicit(&sl->state, memory_order_acquire) >= 2 * s + 2;
}

#pragma GCC visibility pop

#endif /* FASTRNN_FAST_SCHEDULE_H */
