/*
 * The fast float32 loops' scheduling (schedule.h), compiled once for both
 * builds of the kernels. The figures behind each choice are in
 * docs/tuning.md ("fast/schedule.c").
 */
#include <stdatomic.h>
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "fast/schedule.h"

/* ---- packed weights and scratch ------------------------------------------ */

int64_t fr_fast_pack_floats(const fr_desc *d)
{
    return (int64_t)fr_num_gates(d->cell) * d->H * fr_fast_round_panel(d->H);
}

int fr_fast_fwd_packs(const fr_desc *d)
{
    /* batch-invariant: always the panels' order (one FMA chain over j from
     * the old value), never the dot tiles' (8-wide partial sums), whatever
     * T and B */
    if (d->batch_invariant) return 1;
    return d->T >= FR_FAST_PACK_MIN_T
           && !(d->B == 1 && fr_fast_pack_floats(d) > FR_FAST_PACK_MAX_B1);
}

int64_t fr_fast_fwd_pack_floats(const fr_desc *d)
{
    return fr_fast_fwd_packs(d) ? fr_fast_pack_floats(d) : 0;
}

int64_t fr_fast_pack_len(const fr_desc *d)
{
    return fr_fast_pack_floats(d) + 4 * d->B + 32;
}

int64_t fr_fast_fwd_pack_len(const fr_desc *d)
{
    return fr_fast_fwd_pack_floats(d) + 4 * d->B + 32;
}

int64_t fr_fast_ih_offset(const fr_desc *d)
{
    return fr_fast_fwd_pack_floats(d) + fr_fast_round_panel(4 * d->B);
}

int64_t fr_fast_ih_floats(const fr_desc *d, int64_t In)
{
    return fr_fast_proj_mode(d) == 2
        ? (int64_t)fr_num_gates(d->cell) * fr_fast_round_panel(d->H) * In : 0;
}

int64_t fr_fast_packed_floats(const fr_desc *d, int64_t In)
{
    return fr_fast_pack_floats(d)
           + (int64_t)fr_num_gates(d->cell) * fr_fast_round_panel(d->H) * In;
}

/* ---- the input projection ------------------------------------------------- */

static int proj_mode(const fr_desc *d, int prepacked);


int fr_fast_proj_mode_pk(const fr_desc *d, int prepacked)
{
    const int m = proj_mode(d, prepacked);
    /* batch-invariant: never the dot tiles (mode 1); modes 0 and 2 give the
     * same bits (the bias, then one FMA chain over k in order) */
    return m == 1 && d->batch_invariant ? 2 : m;
}

static int proj_mode(const fr_desc *d, int prepacked)
{
    const int64_t M = d->T * d->B;
    if (M <= FR_FAST_SMALL_M) return 1;
    if (M > FR_FAST_INLOOP_MAX_M || d->B > FR_FAST_INLOOP_MAX_B)
        return 0;
    /* tiny sizes: the tiles' fixed costs (accumulators loaded and stored for
     * every vector of columns) outweigh a short J; BLAS does those better */
    if (d->B * (int64_t)fr_num_gates(d->cell) * d->H * d->H < FR_FAST_MIN_WORK
        && (d->I_ < FR_FAST_INLOOP_MIN_SIZE || d->H < FR_FAST_INLOOP_MIN_SIZE))
        return 0;
    if (M < FR_FAST_INLOOP_PACK_M) return 1;
    /* a large W_ih: the panel GEMM before the loop (it packs W_ih a block at
     * a time into a per-thread buffer that stays in cache) */
    if (M < FR_FAST_INLOOP_PACK_M_BIG
        && (int64_t)fr_num_gates(d->cell) * d->H * d->I_ > FR_FAST_INLOOP_PACK_BIG)
        return prepacked ? 2 : 0;
    return 2;
}

int fr_fast_proj_mode(const fr_desc *d) { return fr_fast_proj_mode_pk(d, 0); }

/* ---- threads --------------------------------------------------------------- */

int fr_fast_threads(const fr_desc *d, int vw)
{
    const int64_t work = d->B * (int64_t)fr_num_gates(d->cell) * d->H * d->H;
    int nt = d->num_threads;
    if (work < FR_FAST_MIN_WORK) nt = 1;
    if (nt > (d->H + vw - 1) / vw) nt = (int)((d->H + vw - 1) / vw);
    return nt < 1 ? 1 : nt;
}

/* With the batch split no thread waits for another between steps and no
 * state crosses cores, but each thread streams all of W_hh every step.
 * Taken:
 *  - from FR_FAST_ROWS_MIN_ROWS sequences a thread, whatever W_hh;
 *  - from FR_FAST_ROWS4_MIN_ROWS a thread with a packed W_hh of up to
 *    FR_FAST_ROWS4_MAX_FLOATS;
 *  - else where W_hh fits one core's L2 (FR_FAST_ROWS_MAX_FLOATS) and
 *    each thread has FR_FAST_ROWS_L2_MIN_ROWS sequences, or the units split
 *    would run on one thread (too little work a step for a meeting every
 *    step) or cut cache lines (H not a multiple of a line: every row of h,
 *    c, y and the gates would have a line written by two threads every
 *    step).
 * Needs a sequence per thread, equal lengths, and FR_FAST_ROWS_MIN_WORK. */
int fr_fast_by_rows(const fr_desc *d, int vw)
{
    int nt = d->num_threads;
    if (nt > d->B) nt = (int)d->B;
    if (nt < 2 || d->lengths != NULL) return 0;
    const int64_t work = d->T * d->B * (int64_t)fr_num_gates(d->cell) * d->H * (d->H + d->I_);
    if (work < FR_FAST_ROWS_MIN_WORK) return 0;
    if (d->B >= (int64_t)FR_FAST_ROWS_MIN_ROWS * nt) return nt;
    if (d->B >= (int64_t)FR_FAST_ROWS4_MIN_ROWS * nt
        && fr_fast_pack_floats(d) <= FR_FAST_ROWS4_MAX_FLOATS)
        return nt;
    if (fr_fast_threads(d, vw) > 1 && d->H % FR_FAST_LINE_FLOATS == 0
        && d->B < (int64_t)FR_FAST_ROWS_L2_MIN_ROWS * nt)
        return 0;
    if (fr_fast_pack_floats(d) > FR_FAST_ROWS_MAX_FLOATS) return 0;
    return nt;
}

/* The row counts of fr_fast_by_rows (FR_FAST_ROWS_MIN_ROWS, or
 * FR_FAST_ROWS4_MIN_ROWS with a small W_hh, x projected before the loop;
 * or more than FR_FAST_ROWS_L2_MIN_ROWS with a W_hh that fits L2, x
 * projected before the loop or by each thread for its units before its
 * rows' loop: at exactly two a thread, rows that end at different steps
 * leave a thread idle as often as the meeting costs): the rows are dealt
 * out in length order, instead of the units split's meeting at every
 * step. */
int fr_fast_var_by_rows(const fr_desc *d, int packed)
{
    int nt = d->num_threads;
    if (nt > d->B) nt = (int)d->B;
    if (nt < 2 || d->lengths == NULL || !packed) return 0;
    const int64_t work = d->T * d->B * (int64_t)fr_num_gates(d->cell) * d->H * (d->H + d->I_);
    if (work < FR_FAST_ROWS_MIN_WORK) return 0;
    if (d->B > (int64_t)FR_FAST_ROWS_L2_MIN_ROWS * nt
        && fr_fast_pack_floats(d) <= FR_FAST_ROWS_MAX_FLOATS)
        return nt;
    if (fr_fast_proj_mode(d) != 0) return 0;
    if (d->B >= (int64_t)FR_FAST_ROWS_MIN_ROWS * nt) return nt;
    return d->B >= (int64_t)FR_FAST_ROWS4_MIN_ROWS * nt
                   && fr_fast_pack_floats(d) <= FR_FAST_ROWS4_MAX_FLOATS
               ? nt : 0;
}

/* Projecting its own rows at each step, a thread writes no cache line
 * another thread writes (the units' edges cut lines when H is not a
 * multiple of a line) and uses each row while it is in cache; with fewer
 * than FR_FAST_ROWS_IH_MIN_ROWS rows the panels of W_ih serve too few
 * rows a step, and a W_ih larger than FR_FAST_ROWS_IH_MAX_FLOATS, read
 * again every step, does not stay in L2. */
int fr_fast_rows_project(const fr_desc *d, int by_rows, int mode, int64_t In)
{
    /* (variable lengths: fwd_rows_var projects nothing; x is projected
     * before its loop) */
    return by_rows && mode == 2 && d->lengths == NULL
           && d->B / by_rows >= FR_FAST_ROWS_IH_MIN_ROWS
           && (int64_t)fr_num_gates(d->cell) * fr_fast_round_panel(d->H) * In
                  <= FR_FAST_ROWS_IH_MAX_FLOATS;
}

fr_fast_units fr_fast_unit_slice(int64_t H, int vw, int tid, int nth)
{
    const int64_t nblk = (H + vw - 1) / vw;
    const int64_t a = nblk * tid / nth, b = nblk * (tid + 1) / nth;
    fr_fast_units u;
    u.j0 = a * vw;
    u.j1 = b * vw < H ? b * vw : H;
    if (u.j0 > H) u.j0 = H;
    return u;
}

/* ---- variable lengths ------------------------------------------------------ */

/* Longest first, ties by index. */
static int cmp_len_desc(const void *a, const void *b)
{
    const int64_t *x = (const int64_t *)a, *y = (const int64_t *)b;
    if (x[0] != y[0]) return x[0] > y[0] ? -1 : 1;
    return x[1] < y[1] ? -1 : (x[1] > y[1]);
}

int64_t *fr_fast_rows_by_length(const fr_desc *d, float *at)
{
    if (d->lengths == NULL) return NULL;
    int64_t *buf = (int64_t *)at;
    for (int64_t b = 0; b < d->B; b++) { buf[2 * b] = d->lengths[b]; buf[2 * b + 1] = b; }
    qsort(buf, (size_t)d->B, 2 * sizeof(int64_t), cmp_len_desc);
    for (int64_t i = 0; i < d->B; i++) buf[i] = buf[2 * i + 1]; /* reads stay ahead of writes */
    return buf;
}

/* ---- the threads' meeting once a step -------------------------------------- */

/* Threads now in teams that meet every step, over every caller. */
static atomic_int meeting_threads;

void fr_fast_meeting_threads(int delta)
{
    atomic_fetch_add_explicit(&meeting_threads, delta, memory_order_relaxed);
}

int fr_fast_spin_turns(void)
{
    static atomic_int cpus; /* read once */
    const int p = fr_wait_passive();
    if (p || fr_stall_recent()) return 0;
    int n = atomic_load_explicit(&cpus, memory_order_relaxed);
    if (n == 0) {
        n = 1;
#ifdef _OPENMP
        n = omp_get_num_procs();
#endif
        if (n < 1) n = 1;
        atomic_store_explicit(&cpus, n, memory_order_relaxed);
    }
    return atomic_load_explicit(&meeting_threads, memory_order_relaxed) > n
               ? FR_FAST_SPIN_TURNS_CROWDED : FR_FAST_SPIN_TURNS;
}
