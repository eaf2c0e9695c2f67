/*
 * Every tuning constant of the C kernels, each with a one-line reason. The
 * measurements behind each value are in docs/tuning.md (one section a
 * constant, under the same headings as here). None of them changes a bit
 * of any result: they choose thread counts, tile shapes, block sizes and
 * paths whose outputs are the same by construction (see the heads of
 * fast/isa.h and portable/gemm_impl.h).
 *
 * Included by every C file of src/ that uses one; the GEMM tile constants
 * at the end need VW (fast/isa.h) where they are used.
 */
#ifndef FASTRNN_TUNING_H
#define FASTRNN_TUNING_H

/* ---- portable kernels (portable/rnn_impl.h, reg_impl.h, ctc_impl.h) ------- */

/* Elements below which an elementwise pass runs on one thread: waking the
 * OpenMP team costs more than the work. */
#define FR_PAR_MIN 16384

/* The same threshold for the regularized cells' passes. */
#define FRR_PAR_MIN 16384

/* Alpha cells (sum over samples of T*(2S+1)) below which CTC runs on one
 * thread: the same trade for the CTC recursions. */
#define FR_CTC_PAR_MIN 20000

/* Columns a thread sums at a time in the bias gradients: their partial
 * sums stay in registers and L1 while every row passes. */
#define FR_COLSUM_COLS 64

/* ---- chunked BLAS GEMM (portable/gemm_impl.h) ------------------------------ */

/* Multiply-adds below which the chunks of a GEMM run on one thread. */
#define FR_PGEMM_PAR_MIN 1e6

/* Rows of C a chunk has at least: every chunk repacks the whole other
 * operand, so few large chunks (M split in 2, 4 or 8 as M reaches 2, 4
 * and 8 times this). */
#define FR_PGEMM_PART_ROWS 1024

/* ---- the step team (runtime/team.c) --------------------------------------- */

/* Most slices (threads) one call hands out: one bit a slice in the claim
 * word, and more helpers than this would not fit a streaming step. */
#define FR_TEAM_MAX 16

/* Milliseconds after the latest OpenMP region during which no call takes
 * the team: libgomp's threads still spin for that long. */
#define FR_TEAM_QUIET_MS 30

/* Pauses the caller spins waiting for a helper's slice before it yields
 * the CPU (a helper woken onto the caller's CPU runs only then). */
#define FR_TEAM_WAIT_SPINS 1000

/* Microseconds a helper spins for the next job before it sleeps, as long
 * as libgomp's threads spin after a region. */
#define FR_TEAM_HELPER_WAIT_US 5000

/* A helper reads the clock every this many spins (a clock read costs
 * more than a pause). */
#define FR_TEAM_CLOCK_EVERY 64

/* Below this many spin turns (fr_fast_spin_turns: crowded CPUs, or a
 * passive wait policy) helpers do not spin at all. */
#define FR_TEAM_POLITE_TURNS 1000

/* ---- the fast path's schedule (fast/schedule.c) ---------------------------- */

/* Turns a thread waiting at the per-step meeting spins (with pause)
 * before it yields: a few hundred microseconds, longer than any step. */
#define FR_FAST_SPIN_TURNS 20000

/* ... while more threads meet every step than there are CPUs: short, so
 * that the threads it waits for get the cores. */
#define FR_FAST_SPIN_TURNS_CROWDED 16

/* Floats of a 64-byte cache line: unit slices that end inside a line make
 * two threads write it every step. */
#define FR_FAST_LINE_FLOATS 16

/* GEMMs of fewer multiply-adds than this run on one thread. */
#define FR_FAST_GEMM_PAR_MIN 1e6

/* Sequences shorter than this use W_hh unpacked (dot-product tiles):
 * packing costs about as much as one step's product. */
#define FR_FAST_PACK_MIN_T 4

/* At batch 1 a W_hh of more floats than this stays unpacked: it cannot
 * stay in the cores' L2 anyway, and the packed copy doubles its traffic. */
#define FR_FAST_PACK_MAX_B1 (2 * 1024 * 1024)

/* Input projections with at most this many rows (T*B) skip BLAS, whose
 * packing of W dominates a product of a few rows: dot tiles in the loop. */
#define FR_FAST_SMALL_M 8

/* Rows (T*B) and batch up to which the time loop projects x itself, each
 * thread for its own gate rows: its slices of W_ih stay in its cache and
 * no thread waits for another before the first step. */
#define FR_FAST_INLOOP_MAX_M 1024
#define FR_FAST_INLOOP_MAX_B 8

/* ... when the step has FR_FAST_MIN_WORK multiply-adds or I and H are at
 * least this: below both, the tiles' fixed costs outweigh their work. */
#define FR_FAST_INLOOP_MIN_SIZE 64

/* Rows from which the in-loop projection packs W_ih into panels (below,
 * packing costs more than it saves: dot tiles on W_ih as it is). */
#define FR_FAST_INLOOP_PACK_M 16

/* ... but a W_ih of more floats than FR_FAST_INLOOP_PACK_BIG with fewer
 * rows than FR_FAST_INLOOP_PACK_M_BIG is projected by the panel GEMM
 * before the loop, which packs it a cache-sized block at a time. */
#define FR_FAST_INLOOP_PACK_M_BIG 32
#define FR_FAST_INLOOP_PACK_BIG (2 * 1024 * 1024)

/* Multiply-adds per step (B*G*H*H) below which the time loop runs on one
 * thread: the meeting every step costs more than the work it splits. */
#define FR_FAST_MIN_WORK 65536

/* The batch split (each thread every unit of its own sequences, no
 * meeting between steps) where the packed W_hh has at most this many
 * floats (it must stay in one core's L2 with room to spare) ... */
#define FR_FAST_ROWS_MAX_FLOATS (128 * 1024)

/* ... and the call has at least this many multiply-adds (a fork costs
 * more than a smaller call). */
#define FR_FAST_ROWS_MIN_WORK 200000

/* ... and each thread has at least this many sequences (else only where
 * the units split would cut cache lines or run on one thread): from two
 * rows a step the panels, read from L2, serve enough rows to beat a
 * meeting every step. */
#define FR_FAST_ROWS_L2_MIN_ROWS 2

/* Sequences a thread from which the batch is split whatever the size of
 * W_hh: each panel then serves enough rows a step that every thread
 * streaming all of W_hh costs little. */
#define FR_FAST_ROWS_MIN_ROWS 16

/* Sequences a thread from which the batch is split when the packed W_hh
 * has at most FR_FAST_ROWS4_MAX_FLOATS (streamed from L3 every step by
 * every thread): no thread then waits for another at every step. */
#define FR_FAST_ROWS4_MIN_ROWS 4
#define FR_FAST_ROWS4_MAX_FLOATS (2 * 1024 * 1024)

/* With the batch split and at least FR_FAST_ROWS_IH_MIN_ROWS rows a
 * thread, each thread projects its own rows at each step where W_ih
 * packed has at most FR_FAST_ROWS_IH_MAX_FLOATS (it stays in L2); fewer
 * rows, or a larger W_ih, are projected before the loop. */
#define FR_FAST_ROWS_IH_MIN_ROWS 3
#define FR_FAST_ROWS_IH_MAX_FLOATS (256 * 1024)

/* ---- the fast kernels (fast/cell.h, fast/gemm.h; per build, needs VW) ------ */

/* Most blocks of VW units the gate math starts side by side: enough exp
 * chains in flight to keep the FMA units busy, few enough for the
 * registers. */
#define FR_FAST_NBLK 2

/* Rows of op(B) (the k extent) packed at a time by the panel GEMM: a
 * block of FR_GEMM_KC x FR_GEMM_NC floats stays the size of an L2. */
#define FR_GEMM_KC 256

/* Rows of op(A) packed at a time, a multiple of both builds' tile rows
 * (8 and 6): its packed block stays in L2 beside op(B)'s. */
#define FR_GEMM_MC 240

/* Columns of op(B) a thread packs at a time, a multiple of both builds'
 * groups (48 and 16 columns): the packed block never grows with C. */
#define FR_GEMM_NC 1056

/* Rows of the GEMM's big tile and panels it spans: 8 x 3 is 24
 * accumulators of AVX-512's 32 registers, 6 x 2 is 12 of AVX2's 16. */
#define FR_GEMM_MR (VW == 16 ? 8 : 6)
#define FR_GEMM_NP (VW == 16 ? 3 : 2)

/* ---- the float64 fixed-order GEMM (fast/dgemm.c) --------------------------- */

/* Rows of op(B) packed at a time: its block of FR_DGEMM_KC x FR_DGEMM_NC
 * doubles stays in L2 while every row of op(A) passes. */
#define FR_DGEMM_KC 256

/* Columns of op(B) packed at a time, a multiple of a tile's 12 columns. */
#define FR_DGEMM_NC 240

/* ---- the reduced-precision kernels (portable/quant.c) ---------------------- */

/* Below this many multiply-adds a call (bf16 counting 4 each) the int8 and
 * bf16 kernels run on one thread: starting and meeting the team costs
 * more than splitting the units saves. */
#define FRQ_PAR_MIN 1048576.0

/* ---- the fused Adam step (portable/optim.c) -------------------------------- */

/* Elements below which one thread runs the step: a small parameter's pass
 * takes less than starting the team. */
#define FR_ADAM_PAR_MIN 65536

/* ---- attention pooling (portable/pool.c) ----------------------------------- */

/* B*T*A (tanh values) below which one thread pools: a small batch's pass
 * takes less than starting the team. */
#define FR_POOL_PAR_MIN 65536

/* ---- one step of a cell's gate math (portable/cell_step.c) ----------------- */

/* B*G*H (gate values) below which one thread runs the step: a small
 * batch's rows take less than starting the team. */
#define FR_STEP_PAR_MIN 65536

/* ---- one step of Luong attention (portable/attend.c) ----------------------- */

/* B*S*(K+D) (products) below which one thread attends: a small batch's
 * pass takes less than starting the team. */
#define FR_ATTEND_PAR_MIN 65536

#endif /* FASTRNN_TUNING_H */
