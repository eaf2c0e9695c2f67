/*
 * What a 2-thread OpenMP region costs after the process has been idle: the
 * machine's wake-up of a sleeping worker (and, on a VM, of its halted
 * vCPU), apart from fastrnn. For each gap, 12 times: sleep, then time a
 * region whose two threads each do ~20 us of arithmetic.
 *
 *     gcc -O2 -fopenmp -o /tmp/wake_probe tools/wake_probe.c && /tmp/wake_probe
 *
 * Prints per gap the mean, the largest and every time (ms). Figures:
 * benchmarks/RESULTS.md ("Beside a spinning pool", the last paragraph).
 */
#include <omp.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

int main(void)
{
    const int gaps[] = {1, 5, 50, 200};
    for (int g = 0; g < 4; g++) {
        double v[12], sum = 0, worst = 0;
        for (int i = 0; i < 12; i++) {
            usleep(gaps[g] * 1000);
            volatile double acc[2] = {0, 0};
            const double t0 = now_ms();
#pragma omp parallel num_threads(2)
            {
                const int id = omp_get_thread_num();
                for (int k = 0; k < 20000; k++) acc[id] += k * 1e-9;
            }
            v[i] = now_ms() - t0;
            sum += v[i];
            if (v[i] > worst) worst = v[i];
        }
        printf("gap %3d ms: mean %.3f ms, max %.3f ms:", gaps[g], sum / 12, worst);
        for (int i = 0; i < 12; i++) printf(" %.2f", v[i]);
        printf("\n");
    }
    return 0;
}
