/* Stress test of the step team's protocol (src/runtime/team.c), built with
 * ThreadSanitizer by tools/team_stress.sh. Several caller threads hand out
 * jobs at once, with pauses long enough for the helpers to fall asleep, and
 * OpenMP-region notes in between; every job checks that each of its slices
 * ran exactly once, with the job's own argument, before the call returned.
 *   team_stress CALLERS JOBS_PER_CALLER
 * Exits 1 at the first slice run twice, missed, or run for a finished job. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include "runtime/team.h"

/* fast/schedule.c's spin limit (FR_FAST_SPIN_TURNS), shorter here so that
 * the helpers fall asleep often */
int fr_fast_spin_turns(void) { return 2000; }

typedef struct {
    atomic_int runs[FR_TEAM_MAX];
    atomic_int live; /* 1 while its fr_team_run call may still run slices */
    long sum;        /* written by the slices: a plain field, so TSan checks the ordering */
    long parts[FR_TEAM_MAX];
} job;

static atomic_int failures, ran_on_team;
static int max_n; /* the team takes up to as many slices as CPUs */

static void slice(void *arg, int s, int n)
{
    job *j = arg;
    if (!atomic_load(&j->live)) atomic_fetch_add(&failures, 1);
    if (s < 0 || s >= n) atomic_fetch_add(&failures, 1);
    atomic_fetch_add(&j->runs[s], 1);
    long acc = 0;
    for (int i = 0; i < 2000 * (s + 1); i++) acc += i ^ s;
    j->parts[s] = acc; /* each slice its own element */
}

static void nap(long ns)
{
    struct timespec t = {0, ns};
    nanosleep(&t, NULL);
}

static void *caller(void *p)
{
    const long jobs = (long)(intptr_t)p;
    unsigned seed = (unsigned)(uintptr_t)&seed;
    for (long k = 0; k < jobs; k++) {
        const int n = 2 + (int)(rand_r(&seed) % (unsigned)(max_n - 1));
        job j = {0};
        atomic_store(&j.live, 1);
        const int took = fr_team_run(n, slice, &j);
        atomic_store(&j.live, 0);
        if (took) {
            atomic_fetch_add(&ran_on_team, 1);
            for (int s = 0; s < FR_TEAM_MAX; s++) {
                const int want = s < n ? 1 : 0;
                if (atomic_load(&j.runs[s]) != want) {
                    fprintf(stderr, "slice %d of %d ran %d times\n", s, n, atomic_load(&j.runs[s]));
                    atomic_fetch_add(&failures, 1);
                }
            }
            for (int s = 0; s < n; s++) j.sum += j.parts[s]; /* after the call: no race */
        }
        const unsigned r = rand_r(&seed) % 1000;
        if (r < 10) nap(2000000);           /* long enough for the helpers to sleep */
        else if (r < 11) fr_team_note_omp(); /* an OpenMP region: the quiet time */
        else if (r < 300) nap(20000);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    const int callers = argc > 1 ? atoi(argv[1]) : 3;
    const long jobs = argc > 2 ? atol(argv[2]) : 2000;
    fr_team_enable(2); /* no quiet times: every call that can takes the helpers */
    const long c = sysconf(_SC_NPROCESSORS_ONLN);
    max_n = c < 2 ? 2 : c > 4 ? 4 : (int)c;
    pthread_t t[64];
    for (int i = 0; i < callers && i < 64; i++)
        pthread_create(&t[i], NULL, caller, (void *)(intptr_t)jobs);
    for (int i = 0; i < callers && i < 64; i++) pthread_join(t[i], NULL);
    printf("%d callers x %ld jobs: %d taken (%u handed to helpers), %d failures\n", callers,
           jobs, atomic_load(&ran_on_team), fr_team_jobs(), atomic_load(&failures));
    return atomic_load(&failures) != 0;
}
