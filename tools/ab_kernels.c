/* Before/after timing of two builds of the C kernels in one process
 * (tools/ab_kernels.sh builds them and runs this). Each shape is called on
 * build A and build B in turn, alternating which goes first, and the ratio
 * B/A of each adjacent pair is kept: on a shared VM whose speed drifts by
 * 10-50% within seconds, the median of those paired ratios is steady where
 * minima and medians of separate runs are not (A against a copy of itself
 * reads 0.99-1.02).
 *
 *   ab_kernels libA.so libB.so PAIRS THREADS SPEC...
 *   SPEC: cell:B:T:I:H:mode[:var]  (cell lstm|gru|rnn, mode infer|train,
 *         var: lengths 10..T from a fixed seed, the first T)
 *         gemm:M:N:K:ta:tb        (fr_gemm_f32, beta 0; ta/tb N or T)
 * The float32 fast path needs no BLAS; the BLAS entry given to the
 * libraries exits if it is ever called. Each shape's line ends with
 * whether the two builds' last outputs (and gradients, in training) have
 * the same bits. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <time.h>
#include "fastrnn.h"
typedef int (*fwd_t)(const fr_desc *, const float *, const float *const *, const float *const *,
  const float *const *, const float *const *, const float *, const float *, const float *,
  float *, float *, float *, float *, float *);
typedef int (*bwd_t)(const fr_desc *, const float *, const float *const *, const float *const *,
  const float *, const float *, const float *, const float *, const float *, float *, float *, float *,
  float *const *, float *const *, float *const *, float *const *, float *);
typedef int64_t (*len_t)(const fr_desc *);
typedef int64_t (*wlen_t)(const fr_desc *, int);
static void naive_sgemm(char *ta, char *tb, int *m, int *n, int *k, float *alpha, float *a, int *lda,
                        float *b, int *ldb, float *beta, float *c, int *ldc) {
  (void)ta; (void)tb; (void)m; (void)n; (void)k; (void)alpha; (void)a; (void)lda; (void)b;
  (void)ldb; (void)beta; (void)c; (void)ldc;
  fprintf(stderr, "BLAS sgemm called: this shape left the fast path\n"); exit(3);
}
static void naive_dgemm(char *ta, char *tb, int *m, int *n, int *k, double *alpha, double *a, int *lda,
                        double *b, int *ldb, double *beta, double *c, int *ldc) {
  (void)ta; (void)tb; (void)m; (void)n; (void)k; (void)alpha; (void)a; (void)lda; (void)b;
  (void)ldb; (void)beta; (void)c; (void)ldc;
  fprintf(stderr, "BLAS dgemm called\n"); exit(4);
}
typedef int (*gemm_t)(int, char, char, int64_t, int64_t, int64_t, float, const float *, int64_t,
                      const float *, int64_t, float, float *, int64_t);
typedef struct { fwd_t fwd; bwd_t bwd; len_t cache_len; wlen_t fwork; len_t bwork; gemm_t gemm; } lib_t;
static lib_t load(const char *path) {
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) { fprintf(stderr, "%s\n", dlerror()); exit(2); }
  lib_t L;
  ((void (*)(fr_sgemm_fn, fr_dgemm_fn))dlsym(h, "fr_set_blas"))(naive_sgemm, naive_dgemm);
  L.fwd = (fwd_t)dlsym(h, "fr_forward_f32"); L.bwd = (bwd_t)dlsym(h, "fr_backward_f32");
  L.cache_len = (len_t)dlsym(h, "fr_cache_len"); L.fwork = (wlen_t)dlsym(h, "fr_forward_work_len");
  L.bwork = (len_t)dlsym(h, "fr_backward_work_len");
  L.gemm = (gemm_t)dlsym(h, "fr_gemm_f32");
  return L;
}
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
static float *rnd(int64_t n, float s) {
  float *p = aligned_alloc(64, ((n * 4 + 63) / 64) * 64 + 64);
  for (int64_t i = 0; i < n; i++) p[i] = s * ((float)rand() / RAND_MAX * 2 - 1);
  return p;
}
static int cmpd(const void *a, const void *b) { double x = *(double *)a, y = *(double *)b; return x < y ? -1 : x > y; }
int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: %s libA.so libB.so PAIRS THREADS SPEC...\n", argv[0]);
    return 1;
  }
  lib_t LA = load(argv[1]), LB = load(argv[2]);
  int pairs = atoi(argv[3]), nt = atoi(argv[4]);
  for (int s = 5; s < argc; s++) {
    char cellname[16], mode[16], var[8] = ""; long B, T, I, H;
    if (!strncmp(argv[s], "gemm:", 5)) {
      long M, N, K; char ta, tb;
      sscanf(argv[s] + 5, "%ld:%ld:%ld:%c:%c", &M, &N, &K, &ta, &tb);
      float *A = rnd(M * K, 1), *Bm = rnd(N * K, 1), *C = rnd(M * N, 1);
      int64_t lda = ta == 'T' ? M : K, ldb = tb == 'T' ? K : N;
      lib_t *libs[2] = {&LA, &LB};
      double *t[2]; t[0] = malloc(8 * pairs); t[1] = malloc(8 * pairs); double *ratio = malloc(8 * pairs);
      for (int it = -2; it < pairs; it++) {
        for (int kk = 0; kk < 2; kk++) {
          int k = (it & 1) ? 1 - kk : kk;
          double t0 = now();
          libs[k]->gemm(nt, ta, tb, M, N, K, 1.0f, A, lda, Bm, ldb, 0.0f, C, N);
          if (it >= 0) t[k][it] = now() - t0;
        }
        if (it >= 0) ratio[it] = t[1][it] / t[0][it];
      }
      qsort(t[0], pairs, 8, cmpd); qsort(t[1], pairs, 8, cmpd); qsort(ratio, pairs, 8, cmpd);
      printf("%-28s A %6.1f GF/s med %6.1f | B %6.1f med %6.1f | B/A paired median %.3f [p25 %.3f p75 %.3f]\n", argv[s],
             2e-9 * M * N * K / t[0][0], 2e-9 * M * N * K / t[0][pairs / 2], 2e-9 * M * N * K / t[1][0], 2e-9 * M * N * K / t[1][pairs / 2],
             ratio[pairs / 2], ratio[pairs / 4], ratio[3 * pairs / 4]);
      continue;
    }
    char spec[128]; strcpy(spec, argv[s]); for (char *p = spec; *p; p++) if (*p == ':') *p = ' ';
    if (sscanf(spec, "%15s %ld %ld %ld %ld %15s %7s", cellname, &B, &T, &I, &H, mode, var) < 6) return 1;
    fr_desc d = {0};
    d.cell = !strcmp(cellname, "lstm") ? FR_CELL_LSTM : !strcmp(cellname, "gru") ? FR_CELL_GRU : FR_CELL_RNN_TANH;
    d.T = T; d.B = B; d.I_ = I; d.H = H; d.L = 1; d.D = 1; d.num_threads = nt; d.gru_lbr = 1;
    int64_t *lens = NULL;
    if (!strcmp(var, "var")) { lens = malloc(8 * B); srand(5); for (long b = 0; b < B; b++) lens[b] = 10 + rand() % (T - 9); lens[0] = T; d.lengths = lens; }
    int G = d.cell == FR_CELL_LSTM ? 4 : d.cell == FR_CELL_GRU ? 3 : 1;
    int train = !strcmp(mode, "train");
    float *x = rnd(T * B * I, 1), *wih = rnd(G * H * I, 0.06f), *whh = rnd(G * H * H, 0.06f);
    float *bih = rnd(G * H, 0.1f), *bhh = rnd(G * H, 0.1f);
    const float *pw_ih[1] = {wih}, *pw_hh[1] = {whh}, *pb_ih[1] = {bih}, *pb_hh[1] = {bhh};
    float *dy = rnd(T * B * H, 1);
    /* outputs per build, compared bit for bit after the timing */
    float *y[2], *hn[2], *cn[2], *dx[2], *dwih[2], *dwhh[2], *dbih[2], *dbhh[2];
    for (int k = 0; k < 2; k++) {
      y[k] = rnd(T * B * H, 0); hn[k] = rnd(B * H, 0); cn[k] = rnd(B * H, 0); dx[k] = rnd(T * B * I, 0);
      dwih[k] = rnd(G * H * I, 0); dwhh[k] = rnd(G * H * H, 0); dbih[k] = rnd(G * H, 0); dbhh[k] = rnd(G * H, 0);
    }
    lib_t *libs[2] = {&LA, &LB};
    float *cache[2], *work[2];
    for (int k = 0; k < 2; k++) {
      int64_t cl = train ? libs[k]->cache_len(&d) : 0, wl = libs[k]->fwork(&d, train);
      if (train && libs[k]->bwork(&d) > wl) wl = libs[k]->bwork(&d);
      cache[k] = rnd(cl + 16, 0); work[k] = rnd(wl + 16, 0);
    }
    double *t[2]; t[0] = malloc(8 * pairs); t[1] = malloc(8 * pairs); double *ratio = malloc(8 * pairs);
    for (int it = -2; it < pairs; it++) {
      for (int kk = 0; kk < 2; kk++) {
        int k = (it & 1) ? 1 - kk : kk;
        lib_t *L = libs[k];
        double t0 = now();
        float *const pdw_ih[1] = {dwih[k]}, *const pdw_hh[1] = {dwhh[k]}, *const pdb_ih[1] = {dbih[k]}, *const pdb_hh[1] = {dbhh[k]};
        if (train) /* the gradients of one call (they accumulate) */
          for (int64_t i = 0; i < G * H; i++) {
            dbih[k][i] = dbhh[k][i] = 0;
            for (int64_t j = 0; j < I; j++) dwih[k][i * I + j] = 0;
            for (int64_t j = 0; j < H; j++) dwhh[k][i * H + j] = 0;
          }
        int rc = L->fwd(&d, x, pw_ih, pw_hh, pb_ih, pb_hh, NULL, NULL, NULL, y[k], hn[k], cn[k], train ? cache[k] : NULL, work[k]);
        if (train && !rc) rc = L->bwd(&d, x, pw_ih, pw_hh, NULL, cache[k], dy, NULL, NULL, dx[k], NULL, NULL, pdw_ih, pdw_hh, pdb_ih, pdb_hh, work[k]);
        double el = now() - t0;
        if (rc) { fprintf(stderr, "rc %d\n", rc); return 1; }
        if (it >= 0) t[k][it] = el;
      }
      if (it >= 0) ratio[it] = t[1][it] / t[0][it];
    }
    qsort(t[0], pairs, 8, cmpd); qsort(t[1], pairs, 8, cmpd); qsort(ratio, pairs, 8, cmpd);
    int same = !memcmp(y[0], y[1], 4 * T * B * H) && !memcmp(hn[0], hn[1], 4 * B * H)
               && (d.cell != FR_CELL_LSTM || !memcmp(cn[0], cn[1], 4 * B * H));
    if (train)
      same = same && !memcmp(dx[0], dx[1], 4 * T * B * I) && !memcmp(dwih[0], dwih[1], 4 * G * H * I)
             && !memcmp(dwhh[0], dwhh[1], 4 * G * H * H) && !memcmp(dbih[0], dbih[1], 4 * G * H)
             && !memcmp(dbhh[0], dbhh[1], 4 * G * H);
    printf("%-28s A min %8.3f med %8.3f | B min %8.3f med %8.3f ms | B/A paired median %.3f [p25 %.3f p75 %.3f] | %s\n",
           argv[s], t[0][0] * 1e3, t[0][pairs / 2] * 1e3, t[1][0] * 1e3, t[1][pairs / 2] * 1e3,
           ratio[pairs / 2], ratio[pairs / 4], ratio[3 * pairs / 4], same ? "same bits" : "BITS DIFFER");
    fflush(stdout);
  }
  return 0;
}
