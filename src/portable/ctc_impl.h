/*
 * Body of the CTC kernels, included twice by ctc.c: once with REAL=float
 * (FN suffix _f32) and once with REAL=double (_f64). Equations: fastrnn_ctc.h.
 */

/* One sample. x (T,C) logits, L valid frames, lab the tl target labels.
 * w: this thread's scratch (slot_len doubles). Writes *loss and, when grad is
 * not NULL, grad (T,C): scale * d nll / d x on frames < L, 0 after. */
static void FN(ctc_one)(int64_t T, int64_t C, int blank, int zero_infinity,
                        const REAL *x, int64_t L, const int64_t *lab, int64_t tl,
                        double scale, double *loss, REAL *grad, double *w)
{
    const int64_t Sp = 2 * tl + 1; /* extended labels l'_s: s even blank, s odd lab[s/2] */
    double *lse = w;               /* (T) log-softmax normalizer of each frame */
    double *acc = lse + T;         /* (C) one gradient row in double */
    double *alpha = acc + C;       /* (L, Sp) */
    double *beta = alpha + T * Sp; /* (2, Sp): beta_{t+1} and beta_t */
#define LAB(s) (((s) & 1) ? lab[(s) >> 1] : (int64_t)blank)
#define LP(t, k) ((double)x[(t) * C + (k)] - lse[t])

    /* lse[t] = max + log(sum exp(x - max)) */
    for (int64_t t = 0; t < L; t++) {
        const REAL *row = x + t * C;
        double m = -INFINITY, sum = 0.0;
        for (int64_t k = 0; k < C; k++)
            if ((double)row[k] > m) m = (double)row[k];
        for (int64_t k = 0; k < C; k++) sum += exp((double)row[k] - m);
        lse[t] = m + log(sum);
    }

    /* forward variables. Only s in the window [lo(t), hi(t)) can lie on a
     * complete alignment: hi(t) = min(Sp, 2t+2) (reachable from the start),
     * lo(t) = max(0, Sp - 2(L-t)) (can still reach the end); the cells
     * outside are -inf (those below lo are finite in the plain recursion but
     * feed nothing that reaches the end, so the loss and gradient are the
     * same). beta uses the same window. */
#define LO(t) (Sp - 2 * (L - (t)) > 0 ? Sp - 2 * (L - (t)) : 0)
#define HI(t) (2 * (t) + 2 < Sp ? 2 * (t) + 2 : Sp)
    for (int64_t s = 0; s < Sp; s++) alpha[s] = -INFINITY;
    if (LO(0) == 0) alpha[0] = LP(0, blank);
    if (tl > 0 && LO(0) <= 1) alpha[1] = LP(0, lab[0]);
    for (int64_t t = 1; t < L; t++) {
        const double *prev = alpha + (t - 1) * Sp;
        double *cur = alpha + t * Sp;
        const int64_t lo = LO(t), hi = HI(t);
        for (int64_t s = 0; s < lo; s++) cur[s] = -INFINITY;
        for (int64_t s = lo; s < hi; s++) {
            const int64_t k = LAB(s);
            const double b = s >= 1 ? prev[s - 1] : -INFINITY;
            const double e = (s >= 2 && k != blank && k != LAB(s - 2))
                                 ? lse3(prev[s], b, prev[s - 2]) : lse2(prev[s], b);
            cur[s] = LP(t, k) + e;
        }
        for (int64_t s = hi; s < Sp; s++) cur[s] = -INFINITY;
    }
    const double *last = alpha + (L - 1) * Sp;
    const double nll = -lse2(last[Sp - 1], tl > 0 ? last[Sp - 2] : -INFINITY);
    const int infinite = isinf(nll);
    *loss = (infinite && zero_infinity) ? 0.0 : nll;
    if (grad == NULL) return;

    for (int64_t t = L; t < T; t++)
        for (int64_t k = 0; k < C; k++) grad[t * C + k] = 0;
    if (infinite) { /* no feasible alignment: zero (zero_infinity) or NaN, as torch */
        const REAL fill = zero_infinity ? (REAL)0 : (REAL)NAN;
        for (int64_t i = 0; i < L * C; i++) grad[i] = fill;
        return;
    }

    /* backward variables, two rows, and the gradient of each frame as soon as
     * its beta is known: softmax - occupancy, scaled */
    double *nxt = beta, *cur = beta + Sp;
    for (int64_t s = 0; s < Sp; s++) cur[s] = s >= Sp - 2 && s < HI(L - 1) ? 0.0 : -INFINITY;
    for (int64_t t = L - 1; t >= 0; t--) {
        if (t < L - 1) {
            double *tmp = nxt; nxt = cur; cur = tmp; /* nxt = beta_{t+1} */
            const int64_t lo = LO(t), hi = HI(t);
            for (int64_t s = 0; s < lo; s++) cur[s] = -INFINITY;
            for (int64_t s = lo; s < hi; s++) {
                const int64_t k = LAB(s);
                const double a = LP(t + 1, k) + nxt[s];
                const double b = s + 1 < Sp ? LP(t + 1, LAB(s + 1)) + nxt[s + 1] : -INFINITY;
                const int64_t k2 = s + 2 < Sp ? LAB(s + 2) : blank;
                cur[s] = (k2 != blank && k2 != k) ? lse3(a, b, LP(t + 1, k2) + nxt[s + 2])
                                                  : lse2(a, b);
            }
            for (int64_t s = hi; s < Sp; s++) cur[s] = -INFINITY;
        }
        const double *al = alpha + t * Sp;
        for (int64_t k = 0; k < C; k++) acc[k] = 0.0;
        for (int64_t s = 0; s < Sp; s++) {
            const double e = al[s] + cur[s];
            if (e != -INFINITY) acc[LAB(s)] += exp(e + nll);
        }
        for (int64_t k = 0; k < C; k++)
            grad[t * C + k] = (REAL)(scale * (exp(LP(t, k)) - acc[k]));
    }
#undef LAB
#undef LP
#undef LO
#undef HI
}

int FN(fr_ctc)(int64_t B, int64_t T, int64_t C, int64_t S, int blank,
               int zero_infinity, int num_threads, const REAL *logits,
               const int64_t *input_lengths, const int64_t *targets,
               const int64_t *target_lengths, const double *grad_scale,
               double *losses, REAL *grad, double *work)
{
    if (logits == NULL || losses == NULL || work == NULL) return FR_EINVAL;
    const int rc = check_args(B, T, C, S, blank, num_threads, input_lengths, targets,
                              target_lengths);
    if (rc != FR_OK) return rc;
    const int64_t slot = slot_len(T, C, S);
    double cells = 0; /* alpha cells in all, to decide whether threads pay */
    for (int64_t b = 0; b < B; b++)
        cells += (double)(input_lengths ? input_lengths[b] : T) * (2 * target_lengths[b] + 1);
    int nt = num_threads;
    if (nt > B) nt = (int)B;
    if (cells < FR_CTC_PAR_MIN) nt = 1;
    int64_t b;
    /* dynamic: samples differ in length; each sample's loss and gradient rows
     * are written by the one thread that computes it, in the same order
     * whatever the thread, so the bits never depend on the schedule. */
#pragma omp parallel for num_threads(nt) if (fr_omp_going(nt, nt > 1)) schedule(dynamic, 1)
    for (b = 0; b < B; b++) {
#ifdef _OPENMP
        const int tid = omp_get_thread_num();
#else
        const int tid = 0;
#endif
        FN(ctc_one)(T, C, blank, zero_infinity, logits + b * T * C,
                    input_lengths ? input_lengths[b] : T,
                    targets ? targets + b * S : NULL, target_lengths[b],
                    grad_scale ? grad_scale[b] : 1.0, losses + b,
                    grad ? grad + b * T * C : NULL, work + tid * slot);
    }
    return FR_OK;
}
