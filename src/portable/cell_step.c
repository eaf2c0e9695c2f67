/*
 * One step of a cell's elementwise math after its products
 * (fastrnn_cell.h), float32 and float64 from one body: the recurrent
 * kernels' portable formulas (rnn_impl.h) row by row, or for float32 with
 * the fast path on, the fast kernels' gate math (src/fast/step.h). Rows
 * are split between the threads; each row is computed alone.
 */
#include <math.h>
#include <stdint.h>
#include "fastrnn_cell.h"
#include "fast/fast.h"
#include "fast/tuning.h"
#include "runtime/runtime.h"

#pragma GCC optimize("fp-contract=off")

/* The arrays a cell reads and writes are all given? */
#define STEP_ARGS_OK(cell, pre, gh, h, c, h_out, c_out, cache)                             \
    ((pre) && (h_out)                                                                     \
     && ((cell) != FR_CELL_LSTM || ((c) && (c_out)))                                      \
     && ((cell) != FR_CELL_GRU || ((gh) && (h) && (cache))))
#define BACK_ARGS_OK(cell, acts, h, c, c_out, dh, dy, dc, dgx, dgh, dhp)                   \
    ((acts) && (dh) && (dy) && (dgx) && (dhp)                                             \
     && ((cell) != FR_CELL_LSTM || ((c) && (c_out) && (dc)))                              \
     && ((cell) != FR_CELL_GRU || ((h) && (dgh))))

static int step_cell_ok(int cell)
{
    return cell == FR_CELL_LSTM || cell == FR_CELL_GRU || cell == FR_CELL_RNN_TANH
           || cell == FR_CELL_RNN_RELU;
}

/* Threads for B rows of GX gate values: one below the tuning threshold. */
static int step_threads(int num_threads, int64_t B, int64_t GX)
{
    return (double)B * GX >= FR_STEP_PAR_MIN ? num_threads : 1;
}

#define STEP_BODY(REAL, EXP, TANH, NAME, BNAME, FASTQ, FAST_FWD, FAST_BWD)                \
static inline REAL NAME##_sig(REAL v) { return (REAL)1 / ((REAL)1 + EXP(-v)); }           \
                                                                                          \
int NAME(int num_threads, int cell, int64_t B, int64_t H, REAL *pre, const REAL *gh,      \
         const REAL *h, const REAL *c, REAL *h_out, REAL *c_out, REAL *cache)             \
{                                                                                         \
    if (num_threads < 1 || B < 1 || H < 1 || !step_cell_ok(cell)                          \
        || !STEP_ARGS_OK(cell, pre, gh, h, c, h_out, c_out, cache))                       \
        return FR_EINVAL;                                                                 \
    const int64_t GX = (int64_t)fr_num_gates(cell) * H;                                   \
    const int nt = step_threads(num_threads, B, GX), fast = FASTQ;                        \
    int64_t b;                                                                            \
    _Pragma("omp parallel for num_threads(nt) if (fr_omp_going(nt, nt > 1)) schedule(static)") \
    for (b = 0; b < B; b++) {                                                             \
        REAL *p = pre + b * GX, *ho = h_out + b * H;                                      \
        if (FAST_FWD(cell, H, p, gh ? gh + b * GX : NULL, h ? h + b * H : NULL,           \
                     c ? c + b * H : NULL, ho, c_out ? c_out + b * H : NULL,              \
                     cache ? cache + b * 4 * H : NULL))                                   \
            continue;                                                                     \
        if (cell == FR_CELL_LSTM) {                                                       \
            const REAL *cb = c + b * H;                                                   \
            REAL *co = c_out + b * H;                                                     \
            for (int64_t j = 0; j < H; j++) {                                             \
                REAL ig = NAME##_sig(p[j]), fg = NAME##_sig(p[H + j]);                    \
                REAL gg = TANH(p[2 * H + j]), og = NAME##_sig(p[3 * H + j]);              \
                REAL cn = fg * cb[j] + ig * gg;                                           \
                p[j] = ig; p[H + j] = fg; p[2 * H + j] = gg; p[3 * H + j] = og;           \
                co[j] = cn;                                                               \
                ho[j] = og * TANH(cn);                                                    \
            }                                                                             \
        } else if (cell == FR_CELL_GRU) {                                                 \
            const REAL *g = gh + b * GX, *hb = h + b * H;                                 \
            REAL *gc = cache + b * 4 * H;                                                 \
            for (int64_t j = 0; j < H; j++) {                                             \
                REAL r = NAME##_sig(p[j] + g[j]), z = NAME##_sig(p[H + j] + g[H + j]);    \
                REAL hl = g[2 * H + j];                                                   \
                REAL n = TANH(p[2 * H + j] + r * hl);                                     \
                gc[j] = r; gc[H + j] = z; gc[2 * H + j] = n; gc[3 * H + j] = hl;          \
                ho[j] = (1 - z) * n + z * hb[j];                                          \
            }                                                                             \
        } else {                                                                          \
            const int relu = cell == FR_CELL_RNN_RELU;                                    \
            for (int64_t j = 0; j < H; j++) {                                             \
                REAL v = p[j];                                                            \
                REAL a = relu ? (v < 0 ? 0 : v) : TANH(v); /* relu(NaN) = NaN */          \
                p[j] = a;                                                                 \
                ho[j] = a;                                                                \
            }                                                                             \
        }                                                                                 \
    }                                                                                     \
    return FR_OK;                                                                         \
}                                                                                         \
                                                                                          \
int BNAME(int num_threads, int cell, int64_t B, int64_t H, const REAL *acts,              \
          const REAL *h, const REAL *c, const REAL *c_out, const REAL *dh, const REAL *dy, \
          REAL *dc, REAL *dgx, REAL *dgh, REAL *dhp)                                      \
{                                                                                         \
    if (num_threads < 1 || B < 1 || H < 1 || !step_cell_ok(cell)                          \
        || !BACK_ARGS_OK(cell, acts, h, c, c_out, dh, dy, dc, dgx, dgh, dhp))             \
        return FR_EINVAL;                                                                 \
    const int64_t GX = (int64_t)fr_num_gates(cell) * H;                                   \
    const int64_t GC = cell == FR_CELL_GRU ? 4 * H : GX;                                  \
    const int nt = step_threads(num_threads, B, GX), fast = FASTQ;                        \
    int64_t b;                                                                            \
    _Pragma("omp parallel for num_threads(nt) if (fr_omp_going(nt, nt > 1)) schedule(static)") \
    for (b = 0; b < B; b++) {                                                             \
        const REAL *g = acts + b * GC, *dhb = dh + b * H, *dyb = dy + b * H;              \
        REAL *dgxb = dgx + b * GX, *dhpb = dhp + b * H;                                   \
        if (FAST_BWD(cell, H, g, h ? h + b * H : NULL, c ? c + b * H : NULL,              \
                     c_out ? c_out + b * H : NULL, dhb, dyb, dc ? dc + b * H : NULL,      \
                     dgxb, dgh ? dgh + b * GX : NULL, dhpb))                              \
            continue;                                                                     \
        if (cell == FR_CELL_LSTM) {                                                       \
            const REAL *cpb = c + b * H, *cxb = c_out + b * H;                            \
            REAL *dcb = dc + b * H;                                                       \
            for (int64_t j = 0; j < H; j++) {                                             \
                REAL ig = g[j], fg = g[H + j], gg = g[2 * H + j], og = g[3 * H + j];      \
                REAL gr = dhb[j] + dyb[j];                                                \
                REAL tc = TANH(cxb[j]);                                                   \
                REAL dct = dcb[j] + gr * og * (1 - tc * tc);                              \
                dgxb[j] = dct * gg * ig * (1 - ig);                                       \
                dgxb[H + j] = dct * cpb[j] * fg * (1 - fg);                               \
                dgxb[2 * H + j] = dct * ig * (1 - gg * gg);                               \
                dgxb[3 * H + j] = gr * tc * og * (1 - og);                                \
                dcb[j] = dct * fg;                                                        \
                dhpb[j] = 0;                                                              \
            }                                                                             \
        } else if (cell == FR_CELL_GRU) {                                                 \
            const REAL *hpb = h + b * H;                                                  \
            REAL *dghb = dgh + b * GX;                                                    \
            for (int64_t j = 0; j < H; j++) {                                             \
                REAL r = g[j], z = g[H + j], n = g[2 * H + j], hl = g[3 * H + j];         \
                REAL gr = dhb[j] + dyb[j];                                                \
                REAL dnp = gr * (1 - z) * (1 - n * n);                                    \
                REAL dzp = gr * (hpb[j] - n) * z * (1 - z);                               \
                REAL drp = dnp * hl * r * (1 - r);                                        \
                dgxb[j] = drp; dgxb[H + j] = dzp; dgxb[2 * H + j] = dnp;                  \
                dghb[j] = drp; dghb[H + j] = dzp; dghb[2 * H + j] = dnp * r;              \
                dhpb[j] = gr * z;                                                         \
            }                                                                             \
        } else {                                                                          \
            const int relu = cell == FR_CELL_RNN_RELU;                                    \
            for (int64_t j = 0; j < H; j++) {                                             \
                REAL a = g[j], gr = dhb[j] + dyb[j];                                      \
                dgxb[j] = relu ? (a > 0 ? gr : 0) : gr * (1 - a * a);                     \
                dhpb[j] = 0;                                                              \
            }                                                                             \
        }                                                                                 \
    }                                                                                     \
    return FR_OK;                                                                         \
}

/* float32 rows go to the fast kernels' gate math where the fast path is on
 * (`fast`, decided once a call; the macros then give 1: done); float64
 * rows never do */
#define FAST_FWD_F32(cell, H, p, gh, h, c, ho, co, gc)                                    \
    (fast && (fr_fast_cell_step_f32(cell, H, p, gh, h, c, ho, co, gc), 1))
#define FAST_BWD_F32(cell, H, g, h, c, co, dh, dy, dc, dgx, dgh, dhp)                     \
    (fast && (fr_fast_cell_step_backward_f32(cell, H, g, h, c, co, dh, dy, dc, dgx, dgh,  \
                                             dhp), 1))
#define FAST_NONE(...) (fast && 0)

STEP_BODY(float, expf, tanhf, fr_cell_step_f32, fr_cell_step_backward_f32,
          fr_fast_available() && fr_fast_path_on(), FAST_FWD_F32, FAST_BWD_F32)
STEP_BODY(double, exp, tanh, fr_cell_step_f64, fr_cell_step_backward_f64, 0, FAST_NONE,
          FAST_NONE)
