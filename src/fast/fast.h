/*
 * Internal: the fast float32 time loop (rnn_fast_kernels.h, built at 16
 * floats a vector for AVX-512 and at 8 for AVX2/FMA; rnn_fast.c picks one),
 * chosen at run time by rnn_impl.h when the CPU has AVX2 and FMA. Not part
 * of the public API.
 *
 * Each OpenMP thread owns a slice of hidden units [j0, j1) for the whole
 * sequence: it computes the recurrent product for its units' gate rows of
 * W_hh (which stay in its cache), then the gate math for those units, then
 * meets the others once per step (meet() in rnn_fast_kernels.h: a counter
 * of their own, not OpenMP's barrier). No BLAS call inside the loop.
 * Small models, and 4+ sequences a thread where W_hh has at most 8 MiB,
 * split the batch instead when lengths are equal (fast_by_rows in
 * rnn_fast_kernels.h): each thread runs every unit of its own sequences,
 * with no meeting between steps.
 *
 * Every value is computed by the same instruction sequence whatever the
 * slicing, so the thread count never changes the bits of a result.
 */
#ifndef FASTRNN_FAST_H
#define FASTRNN_FAST_H

#include "fastrnn.h"

/* 1 when this CPU runs the fast kernels (AVX2 and FMA at least; checked
 * once). */
int fr_fast_available(void);


/* For the time loops' per-step meeting (meet() in rnn_fast_kernels.h),
 * one counter for both builds of the kernels: a team of n threads that
 * will meet every step starts (n) or ends (-n); and how many turns a
 * waiting thread spins before it yields the CPU: 20,000 (some 0.6 ms), 16
 * while more threads are in such teams than this process has CPUs, 0 under
 * OMP_WAIT_POLICY=passive. */
void fr_fast_meeting_threads(int delta);
int fr_fast_spin_turns(void);

/* GEMMs with fewer multiply-adds than this run on one thread. */
#define FR_FAST_GEMM_PAR_MIN 1e6

/* Sequences shorter than this use W_hh unpacked (dot-product tiles): packing
 * costs about as much as one step's product. */
#define FR_FAST_PACK_MIN_T 4

/* Input projections with at most this many rows (T*B) skip BLAS (OpenBLAS
 * spends ~100 us packing W for a single row): the time loop does them on the
 * weights as they are. */
#define FR_FAST_SMALL_M 8

/* Small batches up to this many rows (T*B) and B <= FR_FAST_INLOOP_MAX_B,
 * with enough work per step (FR_FAST_MIN_WORK) or I, H >= 64, also skip BLAS
 * (which runs such products at 13-25 GFLOP/s a core):
 * each thread packs its own gate rows of W_ih in VW-row panels and projects
 * every step for its units before the time loop, with the same tiles as the
 * recurrent product. No thread waits for another between the projection
 * and the first step, and each one's slice of W_ih stays in its own cache
 * (lat-lstm: 2.4 ms against 2.9 ms with the BLAS projection first). */
#define FR_FAST_INLOOP_MAX_M 1024
#define FR_FAST_INLOOP_MAX_B 8

/* ... but with fewer rows than this, packing W_ih (a read and a write of it)
 * costs more than it saves: dot tiles on W_ih as it is. From 16 rows the
 * AVX-512 panels win where W_ih has at most FR_FAST_INLOOP_PACK_BIG floats
 * (Zen 5, 2 threads: LSTM B=1 T=20 H=512 0.93 -> 0.67 ms, GRU T=25 H=700
 * 1.60 -> 1.35). Above it, from 16 to 31 rows, the panel GEMM before the
 * loop beats both (db-lstm-b1, 25 rows of a 16 MiB W_ih: minima 4.9-5.4 ms
 * with dot tiles, 5.9 with W_ih packed whole, 3.9-4.1 with the GEMM). */
#define FR_FAST_INLOOP_PACK_M 16
#define FR_FAST_INLOOP_PACK_M_BIG 32
#define FR_FAST_INLOOP_PACK_BIG (2 * 1024 * 1024)

/* Below this many multiply-adds per step (B*G*H*H) the time loop runs on one
 * thread: the barrier costs more than the work it splits. */
#define FR_FAST_MIN_WORK 65536

/* The batch split between threads (each thread all units of its
 * sequences, no per-step meeting) when the packed W_hh fits one core's L2
 * with room to spare (512 KiB of Zen 5's 1 MiB; it was 256 KiB for a 512
 * KiB L2: GRU B=5 T=60 I=64 H=200, 500 KiB, minima 0.64-0.76 -> 0.38-0.52
 * ms over 5 alternations, LSTM B=6 H=170 0.50-0.61 -> 0.35-0.59, LSTM B=4
 * H=150 the same within noise), and the call has this many multiply-adds
 * at least (a fork costs a few us). */
#define FR_FAST_ROWS_MAX_FLOATS (128 * 1024)
#define FR_FAST_ROWS_MIN_WORK 200000

/* ... and, whatever the size of W_hh, from this many sequences a thread
 * (equal lengths). Each panel of W_hh then serves 16+ rows a step, so every
 * thread streaming all of it costs little, and with no meeting between
 * steps a thread slowed by the VM's neighbours holds up the others once a
 * call, not once a step. AVX2 EPYC VM, 2 threads, paired medians against
 * the units split (tools/ab_kernels.sh): LSTM B=64 T=50 H=512 infer 0.99,
 * train 1.00, GRU 0.96 and 0.94, RNN B=32 H=256 train 0.94, LSTM B=32 H=512
 * 0.98; against ONNX Runtime in the same process, calls alternating
 * (ORT ms / fastrnn ms, medians of 14 pairs, three rounds each): big-lstm
 * 0.76, 0.74, 0.93 -> 0.96, 0.97, 0.84; LSTM B=32 H=512 0.55, 0.55, 0.63
 * -> 0.65, 0.70, 0.68. At 8 rows a thread it lost (db-lstm, B=16 H=1024,
 * 16 MiB of W_hh a step a thread: 0.96, 0.94, 0.80 -> 0.75 each round). */
#define FR_FAST_ROWS_MIN_ROWS 16
/* ... and from 4 sequences a thread where the packed W_hh has at most
 * FR_FAST_ROWS4_MAX_FLOATS (8 MiB): each thread then streams all of it
 * from L3 every step, with the 4-row tiles (4 x 3) or better, but no
 * thread waits for the other at every step, which on the AVX2 EPYC VM (two
 * vCPUs whose speeds differ by 15-40%, and change) cost more than the
 * second half of W_hh's traffic. Paired medians against the units split,
 * both orders, 2 threads: LSTM B=8 H=512 0.95-0.96 (serve-lstm), B=8
 * H=400 0.93, B=8 H=700 0.95, B=10/12 H=512 0.95-0.96, B=13 H=300 0.98,
 * B=8 H=512 training 0.94, GRU B=8 H=512 0.98; 3 rows a thread lost (LSTM
 * B=6 H=512 1.07), and so did W_hh of 16 MiB (B=8 H=1024 0.96-1.10). */
#define FR_FAST_ROWS4_MAX_FLOATS (2 * 1024 * 1024)
/* With the batch split and 3+ rows a thread, x is projected in the loop,
 * each thread its own rows at each step, where W_ih packed has at most
 * this many floats (1 MiB); a larger W_ih, read again every step, is
 * projected before the loop (LSTM B=8 H=512 0.96 against 0.99, H=1024
 * 0.96 against 1.61; H=256 0.95 in the loop against 1.01 before it). */
#define FR_FAST_ROWS_IH_MAX_FLOATS (256 * 1024)

/* How the fast path projects x (a function of the shape only, so never of
 * the thread count: the bits do not change with it).
 *   0: one GEMM before the loop (the fast kernels' panel GEMM, rnn_impl.h
 *      pgemm); 1: dot tiles on unpacked W_ih in the loop;
 *   2: packed W_ih panels in the loop. */
static inline int fr_fast_proj_mode_pk(const fr_desc *d, int prepacked);
static inline int fr_fast_proj_mode(const fr_desc *d) { return fr_fast_proj_mode_pk(d, 0); }

/* ... where the weights were packed once (prepacked: fr_fast_pack_f32),
 * the large W_ih of 16-31 rows is read from its packed panels in the loop
 * (mode 2) instead of being packed by the GEMM, a block at a time, on every
 * call: the same bits, as both start each output from the bias and run one
 * FMA chain over k in order. */
static inline int fr_fast_proj_mode_pk(const fr_desc *d, int prepacked)
{
    const int64_t M = d->T * d->B;
    if (M <= FR_FAST_SMALL_M) return 1;
    if (M > FR_FAST_INLOOP_MAX_M || d->B > FR_FAST_INLOOP_MAX_B)
        return 0;
    /* tiny sizes: the tiles' fixed costs (accumulators loaded and stored for
     * every 8 columns) outweigh a J of 16-32; BLAS does those better */
    if (d->B * (int64_t)fr_num_gates(d->cell) * d->H * d->H < FR_FAST_MIN_WORK
        && (d->I_ < 64 || d->H < 64))
        return 0;
    if (M < FR_FAST_INLOOP_PACK_M) return 1;
    /* a large W_ih: the panel GEMM before the loop (it packs W_ih a block at
     * a time into a per-thread buffer that stays in cache) */
    if (M < FR_FAST_INLOOP_PACK_M_BIG
        && (int64_t)fr_num_gates(d->cell) * d->H * d->I_ > FR_FAST_INLOOP_PACK_BIG)
        return prepacked ? 2 : 0;
    return 2;
}


/*
 * The time loop of one layer and direction, forward. On entry Xp (T,B,G*H)
 * holds bias + x W_ih^T. States as in layer_forward (rnn_impl.h):
 *   training  (gates != NULL): hs, cs (T+1,B,H) slots, initial state in place
 *   inference (gates == NULL): h_a holds the initial h, h_b is scratch (B,H),
 *                              c_buf the initial c, updated in place
 *   Gh        SCRATCH (B,G*H) for GRU
 *   bhn       GRU's b_hn or NULL
 *   h0_zero   the initial h is known to be zero (skip the first product)
 * Writes y rows (stride ldy, output 0 past lengths), the gate cache in
 * training, and the final states into hn, cn. Wp: SCRATCH of
 * fr_fast_pack_len(d) floats, 64-byte aligned, for W_hh packed in row panels.
 * x (T,B,In) and W (= W_ih) non-NULL: Xp holds only the bias and the loop
 * adds x W_ih^T itself, each thread for its own units, or, when the batch
 * is split between threads with 3+ rows each, for its own rows at each step
 * (fr_fast_proj_mode 1 or 2; in mode 2 Wp also holds fr_fast_ih_floats(d,
 * In) more floats).
 * pk: NULL, or this layer and direction's weights packed once by
 * fr_fast_pack_f32 at the width in use (fr_fast_width): the loop then reads
 * their panels and packs nothing, with the same bits.
 */
/* fr_fast_forward_f32, declared with the other entry points below. */

/*
 * The reverse walk of one layer and direction, backward (layer_backward in
 * rnn_impl.h): fills dGx, and dGh for GRU (for LSTM/RNN pass dGh == dGx), for
 * every step; dh holds dL/dh_n on entry, dhp is a second (B,H) buffer, dc
 * (LSTM) holds dL/dc_n and ends as dL/dc0. Rp: SCRATCH of
 * fr_fast_pack_len(d) floats, 64-byte aligned, for W_hh packed in column
 * panels. Returns the buffer (dh or dhp) that ends holding dL/dh0.
 */
/* fr_fast_backward_f32, declared below. */

/* fr_fast_sgemm: C(M,N) = op(A) op(B) (beta 0) or C += op(A) op(B) (beta 1),
 * row-major, ta/tb 'N' or 'T' as in BLAS, on nt OpenMP threads, with the
 * fast loops' packed panel tiles: the bits do not depend on nt. With bias
 * (N floats, beta 0): C = bias in every row + op(A) op(B), the bits of
 * beta 1 on a C filled with that row, without the pass that fills it.
 * Returns 0, or -1 when its scratch could not be allocated (C unchanged:
 * the caller uses BLAS). */

/* The three entry points, declared once for each name suffix S: none for
 * rnn_fast.c's dispatchers (which rnn_impl.h calls), _avx2 and _avx512 for
 * the two builds of rnn_fast_kernels.h (FR_SFX). */
#define FR_FAST_ENTRY_POINTS(S)                                                          \
    void fr_fast_forward_f32##S(const fr_desc *d, int dir, const float *R,               \
                                const float *bhn, float *Xp, float *Gh, int h0_zero,     \
                                float *h_a, float *h_b, float *c_buf, float *hs,         \
                                float *cs, float *gates, float *y, int64_t ldy,          \
                                float *hn, float *cn, float *Wp, const float *x,         \
                                int64_t In, const float *W, const float *pk);            \
    void fr_fast_pack_f32##S(const fr_desc *d, const float *R, const float *W,           \
                             int64_t In, float *P);                                      \
    float *fr_fast_backward_f32##S(const fr_desc *d, int dir, const float *R,            \
                                   const float *gates, const float *hs, const float *cs, \
                                   const float *dy, int64_t ldy, float *dGx, float *dGh, \
                                   float *dh, float *dhp, float *dc, float *Rp);         \
    int fr_fast_sgemm##S(int nt, char ta, char tb, int64_t M, int64_t N, int64_t K,      \
                         const float *A, int64_t lda, const float *B, int64_t ldb,       \
                         int beta, float *C, int64_t ldc, const float *bias);
FR_FAST_ENTRY_POINTS()
FR_FAST_ENTRY_POINTS(_avx2)
FR_FAST_ENTRY_POINTS(_avx512)

/* Panels are 8 or 16 floats wide (the vector width); the scratch sizes
 * below are for 16, so they serve either. */
#define FR_FAST_PANEL_MAX 16
#define fr_fast_round_panel(n) (((n) + FR_FAST_PANEL_MAX - 1) / FR_FAST_PANEL_MAX * FR_FAST_PANEL_MAX)

/* Floats of W_hh packed in panels (G*H by H, H rounded up to a panel). */
#define fr_fast_pack_floats(d) ((int64_t)fr_num_gates((d)->cell) * (d)->H * fr_fast_round_panel((d)->H))

/* ... of which the forward loop packs only for FR_FAST_PACK_MIN_T steps or
 * more (a streaming step's scratch stays small: no allocation that large
 * that malloc maps and unmaps it on every call) */
/* At batch 1 a W_hh of more floats than this stays as it is (dot tiles on
 * its rows): it cannot stay in the cores' L2 anyway, and the packed copy,
 * written every call, doubles what goes through L3. A function of the
 * shape alone, never of the thread count. */
#define FR_FAST_PACK_MAX_B1 (2 * 1024 * 1024)

/* Does the forward loop pack W_hh (a function of the shape alone)? */
static inline int fr_fast_fwd_packs(const fr_desc *d)
{
    return d->T >= FR_FAST_PACK_MIN_T
           && !(d->B == 1 && fr_fast_pack_floats(d) > FR_FAST_PACK_MAX_B1);
}

#define fr_fast_fwd_pack_floats(d) (fr_fast_fwd_packs(d) ? fr_fast_pack_floats(d) : 0)

/* Scratch of the fast loops: the packed W_hh, then 2*B int64 for ordering a
 * variable-length batch by length, plus 32 floats for the 64-byte
 * alignments of the panels of W_hh and of W_ih (fr_fast_ih_offset). */
#define fr_fast_pack_len(d) (fr_fast_pack_floats(d) + 4 * (d)->B + 32)
#define fr_fast_fwd_pack_len(d) (fr_fast_fwd_pack_floats(d) + 4 * (d)->B + 32)

/* Where the packed W_ih starts in the forward scratch (projection mode 2),
 * 64-byte aligned when pack is: after W_hh and the length order. */
#define fr_fast_ih_offset(d) (fr_fast_fwd_pack_floats(d) + fr_fast_round_panel(4 * (d)->B))

/* fr_fast_pack_f32(d, R, W, In, P): W_hh (R) and W_ih (W, (G*H, In)) of
 * one layer and direction packed into P (fr_fast_packed_floats(d, In)
 * floats, 64-byte aligned) at the width in use, for fr_fast_forward_f32's
 * pk. fr_fast_width(): that width (8 or 16), 0 without fast kernels. */
#define fr_fast_packed_floats(d, In) \
    (fr_fast_pack_floats(d) + (int64_t)fr_num_gates((d)->cell) * fr_fast_round_panel((d)->H) * (In))
int fr_fast_width(void);

/* Floats of W_ih packed in panels for inputs of size In (mode 2), else 0. */
static inline int64_t fr_fast_ih_floats(const fr_desc *d, int64_t In)
{
    return fr_fast_proj_mode(d) == 2
        ? (int64_t)fr_num_gates(d->cell) * fr_fast_round_panel(d->H) * In : 0;
}

#endif
