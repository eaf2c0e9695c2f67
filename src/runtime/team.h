/*
 * Internal: a small team of helper threads for single time steps (the
 * streaming step). Not part of the public API.
 *
 * An OpenMP region costs 0.65-1.5 us to start and end on a 2-vCPU VM (two
 * futex wakes and two cache-line round trips through libgomp's barriers);
 * a streaming LSTM step of 128 units takes ~5 us in C, so that is 10-25% of
 * it. The team hands out a step's slices (one per thread, each a slice of
 * units) through one atomic word, for a round trip of ~0.12 us.
 *
 * A slice is owned by one thread: helper k runs slice k, so that the
 * weights of its units stay in its core's cache between steps. The caller
 * runs slice 0, then claims every slice no helper has claimed yet and runs
 * it too. So a helper that is descheduled, asleep, or busy in another
 * program never holds the caller up: the step then costs what one thread
 * costs. The caller waits only for slices a helper has claimed and not yet
 * finished. The slices must therefore be independent (no barrier between
 * them): the time loop of one step, whose threads never meet.
 *
 * Helpers wait for work spinning fr_fast_spin_turns() turns (with pause),
 * then sleep on a condition variable; a caller wakes sleepers when it
 * hands out work. One caller at a time: a second caller (another thread)
 * gets 0 from fr_team_run and takes its own path (OpenMP). After fork()
 * the child starts a team of its own on first use. Helpers block every
 * signal, and never touch Python.
 */
#ifndef FASTRNN_TEAM_H
#define FASTRNN_TEAM_H

#include "fast/tuning.h" /* FR_TEAM_MAX, FR_TEAM_QUIET_MS */

/* One slice of a job: fn(arg, slice, nslices); every slice exactly once,
 * on any thread, in any order, concurrently. */
typedef void (*fr_team_fn)(void *arg, int slice, int nslices);

/* Runs slices 0..n-1 of fn(arg, ., n) on the calling thread and the team's
 * helpers, and returns 1 when all are done. Returns 0, having run nothing,
 * when the team is not used: n < 2, n > FR_TEAM_MAX or more than the CPUs
 * this process may use, the team is off (fr_team_enable(0)), an OpenMP
 * region started in the last FR_TEAM_QUIET_MS, OMP_WAIT_POLICY or
 * GOMP_SPINCOUNT is set (libgomp's spinning is then not the default one
 * the quiet time is made for), another caller holds the team, or its
 * threads could not be started. */
int fr_team_run(int n, fr_team_fn fn, void *arg);

/* 1 uses the team, 0 (default) leaves one-step calls to OpenMP, 2 uses it
 * without the quiet times above (a stress test's setting); returns the
 * previous setting (a negative `on` only reads it). Off by default: other libraries' OpenMP work between
 * steps (torch shares libgomp's threads, which spin 4.5-9 ms after each of
 * its calls) is not noted, and the helpers are then threads too many
 * (steps 1.4-2x as long; 0.86-0.97x in a process that streams alone). */
int fr_team_enable(int on);

/* Where an OpenMP region of more than one thread starts: libgomp's threads
 * go on spinning 4.5-9 ms after a region (300,000 pauses), and helpers
 * spinning beside them would leave more busy threads than cores (forward
 * then one step on 2 vCPUs: 530 us a step against 18). So the helpers stop
 * spinning at once (they sleep), and for FR_TEAM_QUIET_MS after the latest
 * region no call takes the team (OpenMP's warm threads run it). The other
 * extension modules (_reg, _losses) reach it through a pointer
 * (rnn_internal.h). */
void fr_team_note_omp(void);

/* cond, for an OpenMP region's if clause, after noting the region
 * (fr_team_note_omp) when it will start more than one thread. */
static inline int fr_omp_going(int nt, int cond)
{
    if (nt > 1 && cond) fr_team_note_omp();
    return cond;
}

/* Jobs the team has run in this process (mod 2^32): tests check that a
 * call took the team. */
unsigned fr_team_jobs(void);

#endif
