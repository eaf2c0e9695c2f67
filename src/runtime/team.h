/*
 * Internal: a small team of helper threads for single time steps (the
 * streaming step). Not part of the public API.
 *
 * Starting and ending an OpenMP region costs two futex wakes and two
 * cache-line round trips through libgomp's barriers, a sizeable part of a
 * streaming step of a small model. The team hands out a step's slices (one
 * per thread, each a slice of units) through one atomic word instead.
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
 * Helpers wait for work spinning with pause for up to
 * FR_TEAM_HELPER_WAIT_US (not at all while the CPUs are crowded), then
 * sleep on a condition variable; a caller wakes sleepers when it hands out
 * work. One caller at a time: a second caller (another thread) gets 0 from
 * fr_team_run and takes its own path (OpenMP). After fork() the child
 * starts a team of its own on first use. Helpers block every signal, and
 * never touch Python. The constants are in fast/tuning.h.
 */
#ifndef FASTRNN_TEAM_H
#define FASTRNN_TEAM_H

#include "fast/tuning.h" /* FR_TEAM_MAX, FR_TEAM_QUIET_MS */

/* Internal to the library: hidden symbols, so that calls between its files
 * are direct (no PLT) and calls within a file may be inlined. */
#pragma GCC visibility push(hidden)

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

/* on = 1: one-step calls take the team; 0 (default): they take OpenMP;
 * 2: the team without the quiet times above (a stress test's setting).
 * Returns the previous setting (a negative `on` only reads it). Off by default: other
 * libraries' OpenMP work between steps (torch shares libgomp's threads,
 * which spin for a while after each of its calls) is not noted, and the
 * helpers are then threads too many. */
int fr_team_enable(int on);

/* Where an OpenMP region of more than one thread starts (fr_omp_going,
 * runtime.h, in every region's if clause): libgomp's threads go on
 * spinning for a while after a region, and helpers spinning beside them
 * would leave more busy threads than cores. So the helpers stop spinning
 * at once (they sleep), and for FR_TEAM_QUIET_MS after the latest region
 * no call takes the team (OpenMP's warm threads run it). Nothing to note
 * while the team is off. */
void fr_team_note_omp(void);

/* Jobs the team has run in this process (mod 2^32): tests check that a
 * call took the team. */
unsigned fr_team_jobs(void);

#pragma GCC visibility pop

#endif /* FASTRNN_TEAM_H */
