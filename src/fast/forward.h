/*
 * The forward time loop of one layer and direction (fr_fast_forward_f32,
 * fast.h): each thread a slice of units meeting the others once a step,
 * or a slice of the batch with no meeting; the input projection in the
 * loop or before it; weights packed once (fr_fast_pack_f32). Needs isa.h,
 * dot.h, panels.h and cell.h.
 */

/* Is step t of sequence b inside its length (a local `lengths`, NULL:
 * every length is T)? */
#define ACTIVE(t, b) (lengths == NULL || (t) < lengths[b])

/* The units of the calling thread of the current OpenMP team. */
static void my_units(int64_t H, int64_t *j0, int64_t *j1)
{
    int tid, nth;
    fr_omp_me(&tid, &nth);
    const fr_fast_units u = fr_fast_unit_slice(H, VW, tid, nth);
    *j0 = u.j0;
    *j1 = u.j1;
}

/* Xp[:, gate rows of units j0..j1) of every gate] += x W_ih^T for those rows:
 * dot tiles on W_ih as it is (projection mode 1), or W_ih's rows packed into
 * this slice's own panels of Wp (mode 2), or, where Wi (W_ih packed whole,

 * fr_fast_pack_f32) is given, its panels as they are: the same panels, so
 * the same bits. */
static TGT void project_units(const fr_desc *d, const float *x, int64_t In,
                               const float *W, float *Wp, const float *Wi, float *Xp,
                               int64_t j0, int64_t j1)
{
    const int64_t H = d->H, M = d->T * d->B, nb = (H + VW - 1) / VW;
    const int G = fr_num_gates(d->cell);
    const int64_t GX = (int64_t)G * H;
    for (int q = 0; q < G && j1 > j0; q++) {
        if (fr_fast_proj_mode_pk(d, Wi != NULL) == 1) {
            rows_dot(x, M, In, W, q * H + j0, q * H + j1, Xp, GX);
            continue;
        }
        /* one pair of panels at a time, packed into the start of this
         * thread's slice of the scratch and used at once while it is in
         * cache: W_ih is read once and never written back packed */
        float *P = Wp + fr_fast_ih_offset(d) + (q * nb + j0 / VW) * In * VW;
        for (int64_t c = j0; c < j1; c += 2 * VW) {
            const int64_t w = j1 - c < 2 * VW ? j1 - c : 2 * VW;
            if (Wi) {
                panel_axpy(x, In, M, In, Wi + (q * nb + c / VW) * In * VW, Xp + q * H + c,
                           GX, w, NULL);
                continue;
            }
            pack_rows(W, In, q * H + c, w, In, P);
            panel_axpy(x, In, M, In, P, Xp + q * H + c, GX, w, NULL);
        }
    }
}

/* What the threads of the forward time loop share (fr_fast_forward_f32's
 * arguments and the choices it made). */
typedef struct {
    const fr_desc *d;
    int dir, h0_zero, packed, by_rows, rows_project;
    const float *R, *bhn, *x, *W;
    float *Xp, *Gh, *h_a, *h_b, *c_buf, *hs, *cs, *gates, *y, *Wp;
    /* the panels of W_hh and of W_ih the loop reads: in Wp, packed by the
     * threads, or the caller's (fr_fast_pack_f32; prepacked: nothing to
     * pack) */
    const float *Wh, *Wi;
    int prepacked;
    int64_t yts, ybs, In; /* y's row of step t, sequence b: y + t*yts + b*ybs */
    const int64_t *order;
    step_meet *meet; /* the threads' meeting once a step (units split) */
    fr_slice_slot *slots; /* or the slices' slots (units split, nth <= FR_MAX_SLICES) */
    int64_t stalls0;      /* fr_stall_count() when the call began */
} fwd_team;

/* The states step s reads (hp, cp) and writes (hx, cx), and its time t:
 * training walks the cache's T+1 slots, inference ping-pongs h between two
 * buffers (other threads may still read h_prev) and updates c in place. */
static inline void step_states(const fwd_team *a, int64_t s, int64_t *t,
                               const float **hp, const float **cp, float **hx, float **cx)
{
    const fr_desc *d = a->d;
    const int64_t T = d->T, BH = d->B * d->H;
    const int dir = a->dir, is_lstm = d->cell == FR_CELL_LSTM;
    *t = dir ? T - 1 - s : s;
    *cp = NULL;
    *cx = NULL;
    if (a->gates) {
        const int64_t ip = dir ? *t + 1 : *t, ix = dir ? *t : *t + 1;
        *hp = a->hs + ip * BH;
        *hx = a->hs + ix * BH;
        if (is_lstm) { *cp = a->cs + ip * BH; *cx = a->cs + ix * BH; }
    } else {
        *hp = (s % 2 == 0) ? a->h_a : a->h_b;
        *hx = (s % 2 == 0) ? a->h_b : a->h_a;
        if (is_lstm) *cp = *cx = a->c_buf;
    }
}

/* fr_y_prefetch_next (schedule.h) on the team's y */
static inline INL TGT void y_prefetch_next(const fwd_team *a, int64_t t, int64_t b,
                                           int64_t j0, int64_t j1)
{
    fr_y_prefetch_next(a->y, a->yts, a->ybs, a->d->T, a->dir, t, b, j0, j1);
}

/* The forward time loop over sequences [r0, r1), every unit (the batch
 * split between threads): no thread reads another's state, so the steps
 * need no meeting. Packed panels of every unit and the bias + projection
 * rows are ready (fwd_thread's first phase). */
static TGT void fwd_rows(const fwd_team *a, int64_t r0, int64_t r1)
{
    const fr_desc *d = a->d;
    const int cell = d->cell, packed = a->packed;
    const int64_t T = d->T, B = d->B, H = d->H;
    const int64_t GX = (int64_t)fr_num_gates(cell) * H;
    const int64_t GC = cell == FR_CELL_GRU ? 4 * H : GX;
    const int64_t nb = (H + VW - 1) / VW, R_ = r1 - r0;
    const int training = a->gates != NULL;
    const int G = fr_num_gates(cell);
    const float *R = a->R, *bhn = a->bhn;
    float *Xp = a->Xp, *Gh = a->Gh, *gates = a->gates, *y = a->y;
    /* W_ih packed whole (rows_project), or NULL: Xp already projected */
    const float *Pih = a->rows_project ? a->Wi : NULL;
    if (R_ <= 0) return;
    for (int64_t s = 0; s < T; s++) {
        int64_t t;
        const float *hp, *cp;
        float *hx, *cx;
        step_states(a, s, &t, &hp, &cp, &hx, &cx);
        float *xp = Xp + t * B * GX;
        float *acc = cell == FR_CELL_GRU ? Gh : xp;
        if (Pih) /* this step's rows of x W_ih^T, as project_units would */
            panel_axpy_gates(a->x + (t * B + r0) * a->In, a->In, R_, a->In, Pih, nb,
                             xp + r0 * GX, H, GX, H, G, NULL);
        if (cell == FR_CELL_GRU)
            memset(Gh + r0 * GX, 0, (size_t)(R_ * GX) * sizeof(float));
        if (!(s == 0 && a->h0_zero)) {
            if (packed)
                panel_axpy_gates(hp + r0 * H, H, R_, H, a->Wh, nb, acc + r0 * GX, H, GX, H, G, NULL);
            else
                for (int q = 0; q < G; q++)
                    rows_dot(hp + r0 * H, R_, H, R, q * H, q * H + H, acc + r0 * GX, GX);
        }
        float *yt = y + t * a->yts;
        for (int64_t b = r0; b < r1; b++) {
            y_prefetch_next(a, t, b, 0, H);
            cell_units(cell, H, 0, H, xp + b * GX,
                       cell == FR_CELL_GRU ? Gh + b * GX : NULL, bhn,
                       hp + b * H, cp ? cp + b * H : NULL, hx + b * H,
                       cx ? cx + b * H : NULL, yt + b * a->ybs,
                       (training && cell == FR_CELL_GRU) ? gates + (t * B + b) * GC : NULL,
                       training);
        }
    }
}

/* Units [j0, j1) of batch row b at time t, after the recurrent product:
 * the gate math, or for a finished row (active 0) its state carried to the
 * next step, an output of 0 and (training) gates of 0. */
static inline INL TGT void row_units(const fwd_team *a, int64_t t, int64_t b, int active,
                                     const float *hp, const float *cp, float *hx,
                                     float *cx, int64_t j0, int64_t j1)
{
    const int cell = a->d->cell;
    const int64_t B = a->d->B, H = a->d->H;
    const int64_t GX = (int64_t)fr_num_gates(cell) * H;
    const int64_t GC = cell == FR_CELL_GRU ? 4 * H : GX;
    const int training = a->gates != NULL;
    float *yb = a->y + t * a->yts + b * a->ybs;
    y_prefetch_next(a, t, b, j0, j1);
    if (!active) {
        const size_t nbytes = (size_t)(j1 - j0) * sizeof(float);
        if (hx != hp) memcpy(hx + b * H + j0, hp + b * H + j0, nbytes);
        if (cx && cx != cp) memcpy(cx + b * H + j0, cp + b * H + j0, nbytes);
        memset(yb + j0, 0, nbytes);
        if (training)
            for (int q = 0; q < (cell == FR_CELL_GRU ? 4 : fr_num_gates(cell)); q++)
                memset(a->gates + (t * B + b) * GC + q * H + j0, 0, nbytes);
        return;
    }
    cell_units(cell, H, j0, j1, a->Xp + (t * B + b) * GX,
               cell == FR_CELL_GRU ? a->Gh + b * GX : NULL, a->bhn,
               hp + b * H, cp ? cp + b * H : NULL, hx + b * H,
               cx ? cx + b * H : NULL, yb,
               (training && cell == FR_CELL_GRU) ? a->gates + (t * B + b) * GC : NULL,
               training);
}

/* The batch split of a variable-length batch (fr_fast_var_by_rows): thread
 * tid of nth takes every nth row of the batch in length order (order, longest
 * first), so each thread's rows are in length order too and the threads
 * get about the same work. At each step its rows still active are a prefix
 * of its list: the product and gate math run for them, and the others
 * carry their state to the next step with an output of 0, as the units
 * split does for them. list: scratch of B int64 shared by the team, each
 * thread writing its own part. Same tiles and chains as the units split:
 * the same bits. */
static TGT void fwd_rows_var(const fwd_team *a, int tid, int nth, int64_t *list)
{
    const fr_desc *d = a->d;
    const int cell = d->cell, packed = a->packed;
    const int64_t T = d->T, B = d->B, H = d->H;
    const int64_t GX = (int64_t)fr_num_gates(cell) * H;
    const int64_t nb = (H + VW - 1) / VW;
    const int64_t *lengths = d->lengths;
    const int G = fr_num_gates(cell);
    const float *R = a->R;
    float *Xp = a->Xp, *Gh = a->Gh;
    /* this thread's rows: order[tid], order[tid + nth], ... */
    const int64_t off = B / nth * tid + (tid < B % nth ? tid : B % nth);
    int64_t cnt = 0;
    for (int64_t i = tid; i < B; i += nth) list[off + cnt++] = a->order[i];
    const int64_t *mine = list + off;
    int64_t nact = cnt;
    for (int64_t s = 0; s < T; s++) {
        int64_t t;
        const float *hp, *cp;
        float *hx, *cx;
        step_states(a, s, &t, &hp, &cp, &hx, &cx);
        nact = active_count(lengths, mine, cnt, t, nact);
        float *xp = Xp + t * B * GX;
        float *acc = cell == FR_CELL_GRU ? Gh : xp;
        if (cell == FR_CELL_GRU)
            for (int64_t i = 0; i < nact; i++)
                memset(Gh + mine[i] * GX, 0, (size_t)GX * sizeof(float));
        if (!(s == 0 && a->h0_zero) && nact > 0) {
            if (packed)
                panel_axpy_gates(hp, H, nact, H, a->Wh, nb, acc, H, GX, H, G, mine);
            else
                for (int64_t i = 0; i < nact; i++)
                    for (int q = 0; q < G; q++)
                        rows_dot(hp + mine[i] * H, 1, H, R, q * H, q * H + H,
                                 acc + mine[i] * GX, GX);
        }
        /* rows past nact have finished */
        for (int64_t i = 0; i < cnt; i++)
            row_units(a, t, mine[i], i < nact, hp, cp, hx, cx, 0, H);
    }
}

/* Step s (time t, states hp/cp -> hx/cx) of units [j0, j1) over the batch:
 * the recurrent product into the gate rows, then the gate math. */
static TGT void fwd_units_step(const fwd_team *a, int64_t s, int64_t t, const float *hp,
                               const float *cp, float *hx, float *cx, int64_t j0, int64_t j1,
                               int64_t nact)
{
    const fr_desc *d = a->d;
    const int cell = d->cell, packed = a->packed;
    const int64_t B = d->B, H = d->H;
    const int64_t GX = (int64_t)fr_num_gates(cell) * H;
    const int64_t *lengths = d->lengths, *order = a->order;
    const int G = fr_num_gates(cell);
    const float *R = a->R;
    float *Gh = a->Gh;
    const int64_t nb = (H + VW - 1) / VW;
    float *xp = a->Xp + t * B * GX;
    if (j1 <= j0) return;
    /* recurrent product for these gate rows */
    float *acc = cell == FR_CELL_GRU ? Gh : xp;
    if (cell == FR_CELL_GRU)
        for (int64_t b = 0; b < B; b++)
            for (int q = 0; q < G; q++)
                memset(Gh + b * GX + q * H + j0, 0, (size_t)(j1 - j0) * sizeof(float));
    if (!(s == 0 && a->h0_zero)) {
        if (packed) /* finished sequences skip the product */
            panel_axpy_gates(hp, H, nact, H, a->Wh + (j0 / VW) * H * VW, nb, acc + j0, H,
                             GX, j1 - j0, G, order);
        else
            for (int q = 0; q < G; q++)
                rows_dot(hp, B, H, R, q * H + j0, q * H + j1, acc, GX);
    }
    /* gate math for these units */
    for (int64_t b = 0; b < B; b++) row_units(a, t, b, ACTIVE(t, b), hp, cp, hx, cx, j0, j1);
}

/* Slice k of nth of step s, and its slot marked done (after slice_claim). */
static TGT void fwd_slice_step(const fwd_team *a, int64_t s, int64_t t, const float *hp,
                               const float *cp, float *hx, float *cx, int k, int nth,
                               int64_t nact)
{
    const fr_fast_units u = fr_fast_unit_slice(a->d->H, VW, k, nth);
    fwd_units_step(a, s, t, hp, cp, hx, cx, u.j0, u.j1, nact);
    slice_done(a->slots + k, s);
}

/* Wait until every slice of step s is done. A slice nobody has claimed
 * after the spinning (at once after a recent stall) is taken here: its
 * owner has not come back to its core. The wait past the spinning goes to
 * fr_note_wait, as the meeting's. */
static TGT void slices_wait(const fwd_team *a, int64_t s, int64_t t, const float *hp,
                            const float *cp, float *hx, float *cx, int nth, int64_t nact)
{
    const int limit = fr_fast_spin_turns();
    int64_t t0 = 0;
    for (int spins = 0;; spins++) {
        int left = 0;
        for (int k = 0; k < nth; k++) {
            if (slice_finished(a->slots + k, s)) continue;
            /* step 0 reads each slice's own panels, packed by its owner */
            if (s > 0 && spins >= limit && slice_claim(a->slots + k, s)) {
                fwd_slice_step(a, s, t, hp, cp, hx, cx, k, nth, nact);
                fr_note_taken();
                continue;
            }
            left = 1;
        }
        if (!left) break;
        wait_turn(spins, limit, &t0);
    }
    if (t0 != 0) fr_note_wait(fr_now_ns() - t0);
}

/* The forward time loop of thread tid of nth: its units, every step, one
 * barrier per step. With nth == 1 it runs outside any OpenMP region (the
 * region alone would be a streaming step's largest fixed cost). */
static TGT void fwd_thread(const fwd_team *a, int tid, int nth)
{
    const fr_desc *d = a->d;
    const int cell = d->cell, packed = a->packed;
    const int64_t T = d->T, B = d->B, H = d->H, In = a->In;
    const int64_t *lengths = d->lengths, *order = a->order;
    const int G = fr_num_gates(cell);
    const float *R = a->R, *x = a->x, *W = a->W;
    float *Xp = a->Xp, *Wp = a->Wp;
    const fr_fast_units u = fr_fast_unit_slice(H, VW, tid, nth);
    const int64_t j0 = u.j0, j1 = u.j1;
    int64_t nact = B;
    const int64_t nb = (H + VW - 1) / VW;
    /* this thread's gate rows of W_hh, packed in VW-row panels; only it
     * reads them. Short sequences use the weights as they are. */
    for (int q = 0; q < G && j1 > j0 && packed && !a->prepacked; q++)
        pack_rows(R, H, q * H + j0, j1 - j0, H, Wp + (q * nb + j0 / VW) * H * VW);
    /* short inputs and small batches: this thread's gate rows of the
     * input projection too, so its slices of W_ih and W_hh stay in its
     * own cache between calls and no thread waits for another */
    if (a->rows_project) {
        /* each thread projects its own rows step by step (fwd_rows), from
         * W_ih packed whole */
        float *P = Wp + fr_fast_ih_offset(d);
        for (int q = 0; q < G && j1 > j0 && !a->prepacked; q++)
            pack_rows(W, In, q * H + j0, j1 - j0, In, P + (q * nb + j0 / VW) * In * VW);
    } else if (x) {
        project_units(d, x, In, W, Wp, a->prepacked ? a->Wi : NULL, Xp, j0, j1);
    }
    if (a->by_rows) { /* then the batch is split: every thread reads every panel */
        if (nth > 1) {
#pragma omp barrier
        }
        if (a->order) fwd_rows_var(a, tid, nth, (int64_t *)a->order + B);
        else fwd_rows(a, B * tid / nth, B * (tid + 1) / nth);
        return;
    }
    fr_slice_slot *slots = a->slots;
    int my_flag = 0;
    for (int64_t s = 0; s < T; s++) {
        int64_t t;
        const float *hp, *cp;
        float *hx, *cx;
        step_states(a, s, &t, &hp, &cp, &hx, &cx);
        if (order) nact = active_count(lengths, order, B, t, nact);
        if (slots == NULL || nth == 1) {
            fwd_units_step(a, s, t, hp, cp, hx, cx, j0, j1, nact);
            /* the next step reads every unit's h; after the last one the
             * region's closing barrier is the meeting */
            if (nth > 1 && s + 1 < T) meet(a->meet, nth, &my_flag);
            continue;
        }
        /* claimable slices (slots): after a stall during this call the
         * threads but the first leave (the first takes every slice), so
         * that a thread that lost its core holds no slice again */
        if (tid != 0 && s > 0 && fr_stalled_since(a->stalls0)) break;
        if (slice_claim(slots + tid, s))
            fwd_slice_step(a, s, t, hp, cp, hx, cx, tid, nth, nact);
        if (s + 1 < T || tid == 0) slices_wait(a, s, t, hp, cp, hx, cx, nth, nact);
    }
}

/* A slice of units of a one-step call, for the step team (runtime/team.h). */
static void fwd_slice(void *a, int slice, int nslices)
{
    fwd_thread((const fwd_team *)a, slice, nslices);
}

/* W_hh (R) and W_ih (W, In columns) packed once, in the panels the
 * forward loop would pack them into on every call (fr_fast_pack_f32 in
 * fast.h): P then holds W_hh's panels, the same layout whatever the
 * units split, and from fr_fast_pack_floats(d) W_ih's. */
TGT void FR_SFX(fr_fast_pack_f32)(const fr_desc *d, const float *R, const float *W,
                                  int64_t In, float *P)
{
    const int G = fr_num_gates(d->cell);
    const int64_t H = d->H, nb = (H + VW - 1) / VW;
    float *Pi = P + fr_fast_pack_floats(d);
    for (int q = 0; q < G; q++) {
        pack_rows(R, H, q * H, H, H, P + q * nb * H * VW);
        pack_rows(W, In, q * H, H, In, Pi + q * nb * In * VW);
    }
}

TGT void FR_SFX(fr_fast_forward_f32)(const fr_desc *d, int dir, const float *R, const float *bhn,
                              float *Xp, float *Gh, int h0_zero,
                              float *h_a, float *h_b, float *c_buf,
                              float *hs, float *cs, float *gates,
                              float *y, int64_t yts, int64_t ybs, float *hn, float *cn,
                              float *Wp,
                              const float *x, int64_t In, const float *W, const float *pk)
{
    const int cell = d->cell;
    const int64_t T = d->T, B = d->B, H = d->H, BH = B * H;
    const int training = gates != NULL, is_lstm = cell == FR_CELL_LSTM;
    /* packing W_hh pays off over a few steps; the choice depends on T alone */
    const int packed = fr_fast_fwd_packs(d);
    int by_rows = fr_fast_by_rows(d, VW);
    if (!by_rows) by_rows = fr_fast_var_by_rows(d, packed);
    const int nt = by_rows ? by_rows : fr_fast_threads(d, VW);
    int64_t *order = fr_fast_rows_by_length(d, Wp + fr_fast_fwd_pack_floats(d));

    /* a time loop too small to split (one thread) over many rows: the
     * packed projection still runs on all the threads, each on its units
     * (the same tiles, so the same bits), before the loop */
    const int mode = fr_fast_proj_mode_pk(d, pk != NULL);
    if (x && nt == 1 && d->num_threads > 1 && mode == 2) {
        int nx = d->num_threads;
        if (nx > (H + VW - 1) / VW) nx = (int)((H + VW - 1) / VW);
        fr_region_clock rc;
        fr_region_begin(&rc, nx > 1,
                        (double)T * B * fr_num_gates(cell) * H * In >= FR_REGION_CPU_WORK);
#pragma omp parallel num_threads(nx) if (fr_omp_going(nx, 1))
        {
            const fr_region_mark rm = fr_region_enter(&rc);
            int64_t j0, j1;
            my_units(H, &j0, &j1);
            project_units(d, x, In, W, Wp, pk ? pk + fr_fast_pack_floats(d) : NULL, Xp, j0, j1);
            fr_region_done(&rc, rm);
        }
        fr_region_end(&rc);
        x = NULL;
    }

    /* the batch split with x projected in the loop: each thread its own
     * rows at each step, from W_ih packed whole, or x before the loop */
    const int rows_project = x && fr_fast_rows_project(d, by_rows, mode, In);
    step_meet m = {0};
    fr_slice_slot slots[FR_MAX_SLICES];
    const int claim = nt > 1 && !by_rows && T > 1 && nt <= FR_MAX_SLICES;
    for (int k = 0; k < nt && claim; k++) atomic_init(&slots[k].state, 0);
    const fwd_team team = {d, dir, h0_zero, packed, by_rows > 0, rows_project, R, bhn, x, W, Xp, Gh,
                           h_a, h_b, c_buf, hs, cs, gates, y, Wp,
                           pk ? pk : Wp,
                           pk ? pk + fr_fast_pack_floats(d) : Wp + fr_fast_ih_offset(d),
                           pk != NULL, yts, ybs, In, order, &m, claim ? slots : NULL,
                           fr_stall_count()};
    /* the threads that will meet every step, for meet()'s spin limit */
    const int meeting = nt > 1 && !by_rows && T > 1 ? nt : 0;
    /* one step (streaming): its slices of units are independent, and the
     * step team starts and ends them for less than an OpenMP region
     * (runtime/team.h); when it declines, it has noted the region */
    const int step = nt > 1 && T == 1 && !by_rows;
    if (nt == 1) {
        fwd_thread(&team, 0, 1);
    } else if (step && fr_team_run(nt, fwd_slice, (void *)&team)) {
    } else {
        if (meeting) fr_fast_meeting_threads(meeting);
        fr_region_clock rc;
        fr_region_begin(&rc, 1, (double)T * B * fr_num_gates(cell) * H * (H + (x ? In : 0))
                                    >= FR_REGION_CPU_WORK);
#pragma omp parallel num_threads(nt) if (step || fr_omp_going(nt, 1))
        {
            const fr_region_mark rm = fr_region_enter(&rc);
            int tid, nth;
            fr_omp_me(&tid, &nth);
            fwd_thread(&team, tid, nth);
            fr_region_done(&rc, rm);
        }
        fr_region_end(&rc);
        if (meeting) fr_fast_meeting_threads(-meeting);
    }
    const float *h_last, *c_last = NULL;
    if (training) {
        h_last = hs + (dir ? 0 : T * BH);
        if (is_lstm) c_last = cs + (dir ? 0 : T * BH);
    } else {
        h_last = (T % 2 == 1) ? h_b : h_a;
        c_last = c_buf;
    }
    memcpy(hn, h_last, (size_t)BH * sizeof(float));
    if (cn && is_lstm) memcpy(cn, c_last, (size_t)BH * sizeof(float));
}
