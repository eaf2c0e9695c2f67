/*
 * fastrnn kernels: recurrent layers (vanilla RNN, LSTM, GRU) forward and
 * backward through time, float32 and float64, plain C + OpenMP + BLAS GEMM.
 *
 * These kernels know nothing of Python. The caller owns every buffer (inputs,
 * outputs, the training cache and the scratch workspace); the kernels never
 * allocate, print or exit. Every function returns FR_OK or a negative FR_E*.
 *
 * Shape letters, used everywhere:
 *   T  time steps             B  batch size
 *   I  input size (layer 0)   H  hidden size
 *   L  layers                 D  directions (1, or 2 when bidirectional)
 *   G  gates: 1 (RNN), 4 (LSTM: i,f,g,o), 3 (GRU: r,z,n)
 *   In input size of layer l: I for l = 0, D*H above.
 * All arrays are row-major and contiguous; sequences are time-major (T,B,.).
 * Per layer and direction k = l*D + dir (torch's order of h_n):
 *   w_ih[k] (G*H, In)   w_hh[k] (G*H, H)   b_ih[k], b_hh[k] (G*H)
 * Gate equations are torch's (torch.nn.RNN / LSTM / GRU, b_hn inside the
 * reset product for GRU), with two options of the descriptor for ONNX/Keras:
 *   gru_lbr = 0   GRU's candidate takes the reset before the recurrent
 *                 product (ONNX linear_before_reset=0, Keras reset_after=False):
 *                   n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)
 *                 instead of torch's (gru_lbr = 1, the default)
 *                   n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
 *   clip > 0      every gate pre-activation v is clamped to [-clip, clip]
 *                 before its activation function (ONNX `clip`; the LSTM cell
 *                 state is not clamped); the gradient is 0 where v was outside.
 * Both run in the portable path; the AVX2 fast path handles only the
 * defaults (gru_lbr = 1, clip = 0).
 *
 * Variable lengths: step t of sequence b is "active" when t < lengths[b].
 * An inactive step keeps the state unchanged and writes an output of 0, so the
 * forward direction ends with the state at the last valid step and the
 * reverse direction starts at the last valid step from the initial state.
 */
#ifndef FASTRNN_H
#define FASTRNN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* status codes */
#define FR_OK 0
#define FR_EINVAL (-1)   /* bad sizes or arguments (the caller should have checked) */
#define FR_ENOBLAS (-2)  /* fr_set_blas was never called */
#define FR_ETOOBIG (-3)  /* a GEMM dimension does not fit the BLAS integer */

/* cell kinds */
#define FR_CELL_RNN_TANH 0
#define FR_CELL_RNN_RELU 1
#define FR_CELL_LSTM 2
#define FR_CELL_GRU 3

/* Fortran BLAS gemm signatures (as scipy.linalg.cython_blas exports them) */
typedef void (*fr_sgemm_fn)(char *transa, char *transb, int *m, int *n, int *k,
                            float *alpha, float *a, int *lda, float *b, int *ldb,
                            float *beta, float *c, int *ldc);
typedef void (*fr_dgemm_fn)(char *transa, char *transb, int *m, int *n, int *k,
                            double *alpha, double *a, int *lda, double *b, int *ldb,
                            double *beta, double *c, int *ldc);

/* Set the GEMM routines once, before any kernel runs. */
void fr_set_blas(fr_sgemm_fn sgemm, fr_dgemm_fn dgemm);

/* Optional: the BLAS library's thread-count setter and getter (OpenBLAS's
 * openblas_set_num_threads / openblas_get_num_threads). With them, the
 * kernels hold the BLAS at one thread while they run and split their GEMMs
 * over their own OpenMP threads, so two thread pools never compete for the
 * cores; the BLAS's own count is restored when the last running kernel call
 * returns. Without them, each GEMM is one BLAS call with the BLAS's threads. */
typedef void (*fr_blas_set_threads_fn)(int);
typedef int (*fr_blas_get_threads_fn)(void);
void fr_set_blas_threads_api(fr_blas_set_threads_fn set, fr_blas_get_threads_fn get);

/* Turn the AVX2/FMA float32 kernels on (when the CPU has them) or off;
 * returns whether they are on. On by default where available. */
int fr_set_fast_path(int enable);

/* Vector width of those kernels: 16 (AVX-512 F/VL/DQ, where the CPU has
 * it) or 8 (AVX2/FMA); a wider request than the CPU runs gets its widest.
 * Returns the width in use (0: no fast kernels here). Both widths give the
 * same bits; the default is the widest. */
int fr_set_fast_width(int width);

/* Largest thread count OpenMP would use here (1 when built without OpenMP). */
int fr_max_threads(void);

/* fastrnn's own thread count, held once for the library: n >= 1 fixes it,
 * 0 goes back to OpenMP's default (fr_max_threads, which follows
 * OMP_NUM_THREADS and threadpoolctl). Returns the previous setting, or
 * FR_EINVAL for n < 0. fr_num_threads_setting() is the setting (0: the
 * default), fr_num_threads() the count the next call uses (>= 1). The
 * callers pass that count in fr_desc.num_threads; a kernel never reads it. */
int fr_set_num_threads(int n);
int fr_num_threads_setting(void);
int fr_num_threads(void);

/* Adaptive threads, held once for the library (on unless
 * FASTRNN_ADAPTIVE_THREADS is 0, off or false). A stall is a thread of a
 * team that waited longer than any step's imbalance at a step's meeting
 * (fr_note_wait), or a thread of a parallel region that lost a quarter of
 * the region's time to the OS (short regions: as much together, or
 * finished long after the first): a partner had lost its core. After one,
 * fr_num_threads() gives 1 for a short period, twice as long each time the
 * full count stalls again as soon as it comes back, up to a cap (the
 * values: settings.c and docs/tuning.md). fr_full_threads() is the count
 * without it.
 * fr_set_adaptive_threads returns the previous setting; a negative argument
 * only returns it. fr_thread_stats: stalls seen (adaptive or not),
 * one-thread periods begun, ns left of the current one, and slices of a
 * step one thread took from another that was late (the forward's units
 * split). Never changes a result's bits. */
int fr_set_adaptive_threads(int on);
int fr_adaptive_threads(void);
int fr_full_threads(void);
void fr_note_wait(int64_t waited_ns);
void fr_thread_stats(int64_t *stalls, int64_t *solo_periods, int64_t *solo_left_ns,
                     int64_t *taken);
/* Measured thread counts, part of adaptive threads: a recurrent call of a
 * small shape (T >= 2; the bound: runtime/pick.c) runs on one thread or on
 * the full count, whichever the recent calls of its shape took less time
 * with; now and then it tries the other. fr_picked_one: calls so far that
 * ran on one thread by that verdict. */
int64_t fr_picked_one(void);

/* How threads that wait for each other inside a call wait, held once for
 * the library: 0 spin (a budget of FR_FAST_SPIN_TURNS pauses, then yield
 * the CPU), 1 passive (yield at once; the step team's helpers sleep). The
 * initial setting is FASTRNN_WAIT_POLICY's, else OMP_WAIT_POLICY's
 * ("passive" or not). Returns the previous setting; a negative argument
 * only returns it. Never changes a result's bits. */
int fr_set_wait_policy(int passive);
int fr_wait_passive(void);

/* Batch-invariant inference, held once for the library (off until set):
 * with it on, a row of a result is the same bits whatever the other rows
 * (a sequence alone or in any batch, any padding T, any thread count),
 * because every output element is reduced in one fixed order: one FMA
 * chain over k in order, from its bias or old value (fixed-order GEMMs
 * instead of the BLAS, packed panels instead of the dot tiles). Returns
 * the previous setting. As with the thread count, the callers pass it in
 * fr_desc.batch_invariant (frr_desc too); fr_gemm_f32/f64 read it
 * themselves. */
int fr_set_batch_invariant(int on);
int fr_batch_invariant(void);

/* C(M,N) = alpha op(A) op(B) + beta C, row-major; op is 'N' or 'T'. Same
 * chunked GEMM as the kernels: bits independent of num_threads; with
 * fr_batch_invariant() on, a row of C depends on its row of op(A) alone.
 * IN: A, B; IN/OUT: C. Used by the model layers (Dense, attention
 * pooling). */
int fr_gemm_f32(int num_threads, char ta, char tb, int64_t M, int64_t N, int64_t K,
                float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                float beta, float *C, int64_t ldc);
int fr_gemm_f64(int num_threads, char ta, char tb, int64_t M, int64_t N, int64_t K,
                double alpha, const double *A, int64_t lda, const double *B, int64_t ldb,
                double beta, double *C, int64_t ldc);

typedef struct {
    int cell;                 /* FR_CELL_* */
    int64_t T, B, I_, H;      /* I_: input size I (complex.h reserves the name I) */
    int L, D;
    int num_threads;          /* OpenMP threads for the elementwise passes, >= 1 */
    const int64_t *lengths;   /* IN (B) values in 1..T, or NULL: every length is T */
    int gru_lbr;              /* GRU: 1 torch (linear before reset), 0 reset first */
    double clip;              /* > 0: clamp gate pre-activations to [-clip, clip];
                                 0 or +inf: no clamp */
    int batch_invariant;      /* 1: the forward gives each sequence the same bits
                                 whatever the rest of the batch, B, T and the
                                 threads (see fr_set_batch_invariant); 0: the
                                 fastest split. The backward ignores it */
    int y_batch_first;        /* 1: the forward's y and the backward's dy are
                                 (B, T, D*H), the row of step t of sequence b
                                 at b*T + t (a batch-first caller's layout, no
                                 transposing copy); 0: (T, B, D*H). x, dx and
                                 the states keep their layouts */
} fr_desc;

/* FR_OK when the descriptor is usable: known cell, sizes >= 1, D in {1,2},
 * lengths in 1..T, gru_lbr and y_batch_first 0 or 1, clip >= 0 (not NaN),
 * every GEMM dimension
 * within BLAS's 32-bit int. */
int fr_check_desc(const fr_desc *d);

/* Number of gates G of a cell kind, 0 for an unknown kind. */
int fr_num_gates(int cell);

/* Element counts (of the kernel's REAL type) of the caller-owned buffers.
 * Return -1 for an invalid descriptor. */
int64_t fr_cache_len(const fr_desc *d);                      /* training cache */
int64_t fr_forward_work_len(const fr_desc *d, int training); /* forward scratch */
int64_t fr_backward_work_len(const fr_desc *d);              /* backward scratch */

/*
 * Forward through all layers and directions.
 *   x        IN  (T,B,I)
 *   w_ih.. b_hh  IN  arrays of L*D pointers; b_ih / b_hh may be NULL (no bias)
 *   h0       IN  (L*D,B,H) or NULL (zeros)
 *   c0       IN  (L*D,B,H) or NULL (zeros); LSTM only
 *   dropmask IN  (L-1,T,B,D*H) or NULL: multiplies the input of layers 1..L-1
 *                (already scaled by 1/(1-p)); training only
 *   y        OUT (T,B,D*H)
 *   hn       OUT (L*D,B,H)
 *   cn       OUT (L*D,B,H) or NULL; LSTM only
 *   cache    OUT fr_cache_len(d) elements, or NULL for inference (keeps nothing)
 *   work     SCRATCH fr_forward_work_len(d, cache != NULL) elements
 */
int fr_forward_f32(const fr_desc *d, const float *x,
                   const float *const *w_ih, const float *const *w_hh,
                   const float *const *b_ih, const float *const *b_hh,
                   const float *h0, const float *c0, const float *dropmask,
                   float *y, float *hn, float *cn, float *cache, float *work);
int fr_forward_f64(const fr_desc *d, const double *x,
                   const double *const *w_ih, const double *const *w_hh,
                   const double *const *b_ih, const double *const *b_hh,
                   const double *h0, const double *c0, const double *dropmask,
                   double *y, double *hn, double *cn, double *cache, double *work);

/*
 * Weights packed once, for serving (float32): the fast loops otherwise pack
 * W_hh (and, for small batches, W_ih) into vector panels on every call.
 *   fr_packed_len_f32(d, k)  floats of the buffer of layer/direction k
 *                            (k = l*D + dir; only d's cell, sizes, L, D,
 *                            gru_lbr and clip matter); 0 where the fast
 *                            loops would not run (nothing to pack); -1 for
 *                            an invalid d or k
 *   fr_pack_f32(d, w_ih, w_hh, packed)  fills the L*D buffers (64-byte
 *                            aligned); returns the vector width they were
 *                            packed for (8 or 16), 0 when nothing was packed,
 *                            FR_EINVAL for a NULL or misaligned pointer
 *   fr_forward_packed_f32(..., packed, width)  fr_forward_f32 with them: the
 *                            same bits, without the per-call packing. The
 *                            weights must not have changed since packing (the
 *                            caller's contract); buffers packed for another
 *                            width than the one in use now (fr_set_fast_width,
 *                            fr_set_fast_path) are ignored, and the call packs
 *                            as fr_forward_f32 does.
 */
int64_t fr_packed_len_f32(const fr_desc *d, int k);
int fr_pack_f32(const fr_desc *d, const float *const *w_ih, const float *const *w_hh,
                float *const *packed);
int fr_forward_packed_f32(const fr_desc *d, const float *x,
                          const float *const *w_ih, const float *const *w_hh,
                          const float *const *b_ih, const float *const *b_hh,
                          const float *h0, const float *c0, const float *dropmask,
                          float *y, float *hn, float *cn, float *cache, float *work,
                          const float *const *packed, int width);

/*
 * Layer 0's input projection read from tables (float32 inference): where the
 * input rows come from a table of V rows (an embedding), each direction's
 * projection of every such row is made once and looked up per step.
 *   fr_rows_table_f32(d, w_ih, b_ih, b_hh, E, V, out)  out (V, G*H) = the
 *       bias row + E W_ih^T for one direction of layer 0 (E (V, I); b_ih,
 *       b_hh NULL or (G*H)), computed as the forward computes those rows, so
 *       a row of out is bit for bit the projection the forward would make of
 *       input row E[v]. FR_EINVAL where no fast GEMM runs (fast path off,
 *       or a cell the fast loops decline) or the layer has no bias: no
 *       forward would use a table then.
 *   fr_forward_rows_f32(..., rows)  fr_forward_packed_f32 whose layer 0
 *       copies row ids[t,b] of rows->tables[dir] where it would have
 *       projected x's row (t,b) as the bias and one FMA chain over k (the
 *       fast GEMM, or the time loop's panels at small batches); where it
 *       would not (the loop's dot tiles under 16 rows, batch-invariant
 *       calls, the fast path off) it projects x as usual. So x must still
 *       hold the input rows E[ids], and the results are the same bits
 *       either way.
 *       Inference only (cache NULL); ids (T,B) in 0..V-1.
 */
typedef struct {
    const int64_t *ids;           /* IN (T,B) */
    int64_t V;                    /* rows of each table */
    const float *const *tables;   /* IN D tables (V, G*H) from fr_rows_table_f32 */
} fr_rows_in;

int fr_rows_table_f32(const fr_desc *d, const float *w_ih, const float *b_ih,
                      const float *b_hh, const float *E, int64_t V, float *out);
int fr_forward_rows_f32(const fr_desc *d, const float *x,
                        const float *const *w_ih, const float *const *w_hh,
                        const float *const *b_ih, const float *const *b_hh,
                        const float *h0, const float *c0, float *y, float *hn, float *cn,
                        float *work, const float *const *packed, int width,
                        const fr_rows_in *rows);

/*
 * Backward through time after a training forward with the same d, x, weights
 * and dropmask, whose cache is given.
 *   dy       IN  (T,B,D*H) gradient of y (ignored past each length: y is 0 there)
 *   dhn, dcn IN  (L*D,B,H) gradients of h_n, c_n, or NULL (zeros)
 *   dx       OUT (T,B,I)
 *   dh0, dc0 OUT (L*D,B,H) gradients of the initial states, or NULL (not wanted)
 *   dw_ih.. db_hh  ACCUMULATE (+=) arrays of L*D pointers; db_* NULL when no bias
 *   work     SCRATCH fr_backward_work_len(d) elements
 */
int fr_backward_f32(const fr_desc *d, const float *x,
                    const float *const *w_ih, const float *const *w_hh,
                    const float *dropmask, const float *cache,
                    const float *dy, const float *dhn, const float *dcn,
                    float *dx, float *dh0, float *dc0,
                    float *const *dw_ih, float *const *dw_hh,
                    float *const *db_ih, float *const *db_hh, float *work);
int fr_backward_f64(const fr_desc *d, const double *x,
                    const double *const *w_ih, const double *const *w_hh,
                    const double *dropmask, const double *cache,
                    const double *dy, const double *dhn, const double *dcn,
                    double *dx, double *dh0, double *dc0,
                    double *const *dw_ih, double *const *dw_hh,
                    double *const *db_ih, double *const *db_hh, double *work);

#ifdef __cplusplus
}
#endif
#endif /* FASTRNN_H */
