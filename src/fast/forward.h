/*
 * The forward time loop of one layer and direction (fr_fast_forward_f32,
 * fast.h): each thread a slice of units meeting the others once a step,
 * or a slice of the batch with no meeting; the input projection in the
 * loop or before it; weights packed once (fr_fast_pack_f32). Needs isa.h,
 * dot.h, panels.h and cell.h.
 */

/* Rows of a variable-length batch sorted by length, longest first (ties by
 * index): the sequences still active at step t are then a prefix of it. */
static int cmp_len_desc(const void *a, const void *b)
{
    const int64_t *x = (const int64_t *)a, *y = (const int64_t *)b;
    if (x[0] != y[0]) return x[0] > y[0] ? -1 : 1;
    return x[1] < y[1] ? -1 : (x[1] > y[1]);
}

/* The batch rows by length in the scratch at buf (after the packed
 * weights: 2*B int64), or NULL when every length is T. Its second B int64
 * are free once it returns (fwd_rows_var's per-thread lists). */
static int64_t *rows_by_length(const fr_desc *d, float *at)
{
    if (d->lengths == NULL) return NULL;
    int64_t *buf = (int64_t *)at;
    for (int64_t b = 0; b < d->B; b++) { buf[2 * b] = d->lengths[b]; buf[2 * b + 1] = b; }
    qsort(buf, (size_t)d->B, 2 * sizeof(int64_t), cmp_len_desc);
    for (int64_t i = 0; i < d->B; i++) buf[i] = buf[2 * i + 1]; /* reads stay ahead of writes */
    return buf;
}

/* Number of sequences active at step t, moving from n (its value at a
 * neighbouring step). */
static inline int64_t active_count(const int64_t *lengths, const int64_t *order, int64_t B,
                                   int64_t t, int64_t n)
{
    while (n > 0 && lengths[order[n - 1]] <= t) n--;
    while (n < B && lengths[order[n]] > t) n++;
    return n;
}

/* Units [j0, j1) of thread tid among nth: blocks of VW units (one panel),
 * so that block boundaries (and the padded tail) do not depend on the
 * thread count. */
static void unit_slice(int64_t H, int tid, int nth, int64_t *j0, int64_t *j1)
{
    const int64_t nblk = (H + VW - 1) / VW;
    const int64_t a = nblk * tid / nth, b = nblk * (tid + 1) / nth;
    *j0 = a * VW;
    *j1 = b * VW < H ? b * VW : H;
    if (*j0 > H) *j0 = H;
}

/* The units of the calling thread of the current OpenMP team. */
static void my_units(int64_t H, int64_t *j0, int64_t *j1)
{
    int tid = 0, nth = 1;
#ifdef _OPENMP
    tid = omp_get_thread_num();
    nth = omp_get_num_threads();
#endif
    unit_slice(H, tid, nth, j0, j1);
}

/* The meeting of the time loops' threads once a step: a counter and a
 * flag that flips each time, in a cache line of their own. libgomp's
 * barrier took 0.45-0.58 us against 0.23 for this one on the 2-vCPU VM
 * (200,000 meetings of 2 threads), and the small models meet every 3-15
 * us. A waiting thread spins with pause for fr_fast_spin_turns() turns
 * (rnn_fast.c: 20,000, some 0.6 ms; 16 with more threads in such teams
 * than CPUs, so that the threads it waits for get the cores: spinning
 * 4,096 turns there made 4 callers of 2 threads on 2 cores 3x slower than
 * libgomp's barrier, which throttles its spinning the same way; 0 under
 * OMP_WAIT_POLICY=passive), then yields to the OS at every turn. Each
 * thread's writes before the meeting are seen by every thread after it:
 * the counter's add releases and acquires, the flag is stored with release
 * and loaded with acquire. */
typedef struct {
    _Alignas(64) atomic_int count;
    atomic_int flag;
    char pad_[56];
} step_meet;

static inline void meet(step_meet *m, int nth, int *my_flag)
{
    const int f = !*my_flag;
    *my_flag = f;
    if (atomic_fetch_add_explicit(&m->count, 1, memory_order_acq_rel) == nth - 1) {
        atomic_store_explicit(&m->count, 0, memory_order_relaxed);
        atomic_store_explicit(&m->flag, f, memory_order_release);
        return;
    }
    const int limit = fr_fast_spin_turns();
    for (int spins = 0; atomic_load_explicit(&m->flag, memory_order_acquire) != f; spins++) {
        if (spins < limit) _mm_pause();
        else sched_yield();
    }
}

/* Threads worth using: below FR_FAST_MIN_WORK multiply-adds per step the
 * barrier costs more than the work it splits. */
static int fast_threads(const fr_desc *d)
{
    const int64_t work = d->B * (int64_t)fr_num_gates(d->cell) * d->H * d->H;
    int nt = d->num_threads;
    if (work < FR_FAST_MIN_WORK) nt = 1;
    if (nt > (d->H + VW - 1) / VW) nt = (int)((d->H + VW - 1) / VW);
    return nt < 1 ? 1 : nt;
}

/* Threads for a batch split between threads (fwd_rows), or 0 for the
 * split by units. With the batch split no thread waits for another between
 * steps and no state crosses cores, but each thread streams all of W_hh
 * every step, so it must stay in one core's L2 (FR_FAST_ROWS_MAX_FLOATS).
 * Used where the split by units runs on one thread (too little work per
 * step for a meeting every step), or where its slices end inside cache
 * lines (H not a multiple of 16: every row of h, c, y and the gates then
 * has a line written by two threads every step; LSTM B=7 H=77: 1.5-2.2
 * against 0.7 ms). Elsewhere the units split stays (it was faster: LSTM
 * B=3 H=96 0.56 against 0.62 ms, B=5 H=128 0.92 against 1.00), but for
 * FR_FAST_ROWS_MIN_ROWS rows a thread and more, or 4 rows a thread and
 * more with a W_hh of up to FR_FAST_ROWS4_MAX_FLOATS. Needs a sequence per
 * thread, equal lengths, and enough work for a fork. */
static int fast_by_rows(const fr_desc *d)
{
    int nt = d->num_threads;
    if (nt > d->B) nt = (int)d->B;
    if (nt < 2 || d->lengths != NULL) return 0;
    const int64_t work = d->T * d->B * (int64_t)fr_num_gates(d->cell) * d->H * (d->H + d->I_);
    if (work < FR_FAST_ROWS_MIN_WORK) return 0;
    /* many rows a thread: each panel of W_hh serves enough rows a step
     * that streaming all of it costs little, and no meeting every step
     * leaves a thread that its neighbours slow down holding up the other
     * at every step (FR_FAST_ROWS_MIN_ROWS) */
    if (d->B >= (int64_t)FR_FAST_ROWS_MIN_ROWS * nt) return nt;
    if (d->B >= 4 * (int64_t)nt && fr_fast_pack_floats(d) <= FR_FAST_ROWS4_MAX_FLOATS) return nt;
    if (fast_threads(d) > 1 && d->H % 16 == 0) return 0;
    if (fr_fast_pack_floats(d) > FR_FAST_ROWS_MAX_FLOATS) return 0;
    return nt;
}

/* A variable-length batch with x projected before the loop and W_hh packed,
 * and FR_FAST_ROWS_MIN_ROWS rows a thread or more, or 4 or more with W_hh
 * of at most FR_FAST_ROWS4_MAX_FLOATS (as fast_by_rows for equal lengths):
 * the batch split too (fwd_rows_var), the rows dealt out in length order,
 * instead of the units split's meeting at every step (paired, both orders:
 * LSTM B=24 H=128 0.86/0.94, GRU B=12 H=256 0.885/0.99, GRU B=10 H=100
 * 0.73, LSTM B=16 H=256 0.93/1.02, B=10 H=512 1.01/0.99). Returns the
 * thread count, or 0. */
static int fwd_var_by_rows(const fr_desc *d, int packed)
{
    int nt = d->num_threads;
    if (nt > d->B) nt = (int)d->B;
    if (nt < 2 || d->lengths == NULL || !packed || fr_fast_proj_mode(d) != 0) return 0;
    if (d->B < (int64_t)FR_FAST_ROWS_MIN_ROWS * nt
        && !(d->B >= 4 * (int64_t)nt && fr_fast_pack_floats(d) <= FR_FAST_ROWS4_MAX_FLOATS))
        return 0;
    const int64_t work = d->T * d->B * (int64_t)fr_num_gates(d->cell) * d->H * (d->H + d->I_);
    return work < FR_FAST_ROWS_MIN_WORK ? 0 : nt;
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
         * cache: W_ih is read once and never written back packed (db-lstm-b4
         * packs 4 MiB per call) */
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
    int64_t ldy, In;
    const int64_t *order;
    step_meet *meet; /* the threads' meeting once a step (units split) */
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

/* The forward time loop over sequences [r0, r1), every unit (the batch
 * split between threads): no thread reads another's state, so the steps
 * need no meeting. Packed panels of every unit and the bias + projection
 * rows are ready (fwd_thread's first phase). */
static TGT void fwd_rows(const fwd_team *a, int64_t r0, int64_t r1)
{
    const fr_desc *d = a->d;
    const int cell = d->cell, packed = a->packed;
    const int64_t T = d->T, B = d->B, H = d->H, ldy = a->ldy;
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
        float *yt = y + t * B * ldy;
        for (int64_t b = r0; b < r1; b++)
            cell_units(cell, H, 0, H, xp + b * GX,
                       cell == FR_CELL_GRU ? Gh + b * GX : NULL, bhn,
                       hp + b * H, cp ? cp + b * H : NULL, hx + b * H,
                       cx ? cx + b * H : NULL, yt + b * ldy,
                       (training && cell == FR_CELL_GRU) ? gates + (t * B + b) * GC : NULL,
                       training);
    }
}

/* The batch split of a variable-length batch (fwd_var_by_rows): thread tid
 * of nth takes every nth row of the batch in length order (order, longest
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
    const int64_t T = d->T, B = d->B, H = d->H, ldy = a->ldy;
    const int64_t GX = (int64_t)fr_num_gates(cell) * H;
    const int64_t GC = cell == FR_CELL_GRU ? 4 * H : GX;
    const int64_t nb = (H + VW - 1) / VW;
    const int64_t *lengths = d->lengths;
    const int training = a->gates != NULL;
    const int G = fr_num_gates(cell);
    const float *R = a->R, *bhn = a->bhn;
    float *Xp = a->Xp, *Gh = a->Gh, *gates = a->gates, *y = a->y;
    /* this thread's rows: order[tid], order[tid + nth], ... */
    const int64_t off = B / nth * tid + (tid < B % nth ? tid : B % nth);
    int64_t cnt = 0;
    for (int64_t i = tid; i < B; i += nth) list[off + cnt++] = a->order[i];
    const int64_t *mine = list + off;
    int64_t nact = cnt;
    const size_t nbytes = (size_t)H * sizeof(float);
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
        float *yt = y + t * B * ldy;
        for (int64_t i = 0; i < cnt; i++) {
            const int64_t b = mine[i];
            float *yb = yt + b * ldy;
            if (i >= nact) { /* finished: state carried, output 0 */
                if (hx != hp) memcpy(hx + b * H, hp + b * H, nbytes);
                if (cx && cx != cp) memcpy(cx + b * H, cp + b * H, nbytes);
                memset(yb, 0, nbytes);
                if (training)
                    for (int q = 0; q < (cell == FR_CELL_GRU ? 4 : G); q++)
                        memset(gates + (t * B + b) * GC + q * H, 0, nbytes);
                continue;
            }
            cell_units(cell, H, 0, H, xp + b * GX,
                       cell == FR_CELL_GRU ? Gh + b * GX : NULL, bhn,
                       hp + b * H, cp ? cp + b * H : NULL, hx + b * H,
                       cx ? cx + b * H : NULL, yb,
                       (training && cell == FR_CELL_GRU) ? gates + (t * B + b) * GC : NULL,
                       training);
        }
    }
}

/* The forward time loop of thread tid of nth: its units, every step, one
 * barrier per step. With nth == 1 it runs outside any OpenMP region (the
 * region alone costs about 0.5 us, a streaming step's fixed cost). */
static TGT void fwd_thread(const fwd_team *a, int tid, int nth)
{
    const fr_desc *d = a->d;
    const int cell = d->cell, h0_zero = a->h0_zero, packed = a->packed;
    const int64_t T = d->T, B = d->B, H = d->H, ldy = a->ldy, In = a->In;
    const int64_t GX = (int64_t)fr_num_gates(cell) * H;
    const int64_t GC = cell == FR_CELL_GRU ? 4 * H : GX;
    const int64_t *lengths = d->lengths, *order = a->order;
    const int training = a->gates != NULL;
    const int G = fr_num_gates(cell);
    const float *R = a->R, *bhn = a->bhn, *x = a->x, *W = a->W;
    float *Xp = a->Xp, *Gh = a->Gh, *gates = a->gates, *y = a->y, *Wp = a->Wp;
    int64_t j0, j1, nact = B;
    unit_slice(H, tid, nth, &j0, &j1);
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
    int my_flag = 0;
    for (int64_t s = 0; s < T; s++) {
        int64_t t;
        const float *hp, *cp;
        float *hx, *cx;
        step_states(a, s, &t, &hp, &cp, &hx, &cx);
        float *xp = Xp + t * B * GX;
        if (order) nact = active_count(lengths, order, B, t, nact);
        if (j1 > j0) {
            /* recurrent product for this thread's gate rows */
            float *acc = cell == FR_CELL_GRU ? Gh : xp;
            if (cell == FR_CELL_GRU)
                for (int64_t b = 0; b < B; b++)
                    for (int q = 0; q < G; q++)
                        memset(Gh + b * GX + q * H + j0, 0, (size_t)(j1 - j0) * sizeof(float));
            if (!(s == 0 && h0_zero)) {
                if (packed) /* finished sequences skip the product */
                    panel_axpy_gates(hp, H, nact, H, a->Wh + (j0 / VW) * H * VW, nb, acc + j0, H,
                                     GX, j1 - j0, G, order);
                else
                    for (int q = 0; q < G; q++)
                        rows_dot(hp, B, H, R, q * H + j0, q * H + j1, acc, GX);
            }
            /* gate math for this thread's units */
            float *yt = y + t * B * ldy;
            for (int64_t b = 0; b < B; b++) {
                float *yb = yt + b * ldy;
                const size_t nbytes = (size_t)(j1 - j0) * sizeof(float);
                if (!ACTIVE(t, b)) {
                    if (hx != hp) memcpy(hx + b * H + j0, hp + b * H + j0, nbytes);
                    if (cx && cx != cp) memcpy(cx + b * H + j0, cp + b * H + j0, nbytes);
                    memset(yb + j0, 0, nbytes);
                    if (training)
                        for (int q = 0; q < (cell == FR_CELL_GRU ? 4 : G); q++)
                            memset(gates + (t * B + b) * GC + q * H + j0, 0, nbytes);
                    continue;
                }
                cell_units(cell, H, j0, j1, xp + b * GX,
                           cell == FR_CELL_GRU ? Gh + b * GX : NULL, bhn,
                           hp + b * H, cp ? cp + b * H : NULL, hx + b * H,
                           cx ? cx + b * H : NULL, yb,
                           (training && cell == FR_CELL_GRU) ? gates + (t * B + b) * GC : NULL,
                           training);
            }
        }
        /* the next step reads every unit's h; after the last one the
         * region's closing barrier is the meeting */
        if (nth > 1 && s + 1 < T) meet(a->meet, nth, &my_flag);
    }
}

/* A slice of units of a one-step call, for the step team (rnn_team.h). */
static void fwd_slice(void *a, int slice, int nslices)
{
    fwd_thread((const fwd_team *)a, slice, nslices);
}

/* W_hh (R) and W_ih (W, In columns) packed once, in the panels the
 * forward loop would pack them into on every call (fr_fast_pack_f32 in
 * rnn_fast.h): P then holds W_hh's panels, the same layout whatever the
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
                              float *y, int64_t ldy, float *hn, float *cn, float *Wp,
                              const float *x, int64_t In, const float *W, const float *pk)
{
    const int cell = d->cell;
    const int64_t T = d->T, B = d->B, H = d->H, BH = B * H;
    const int training = gates != NULL, is_lstm = cell == FR_CELL_LSTM;
    /* packing W_hh pays off over a few steps; the choice depends on T alone */
    const int packed = fr_fast_fwd_packs(d);
    const int by_rows = fast_by_rows(d) ? fast_by_rows(d) : fwd_var_by_rows(d, packed);
    const int nt = by_rows ? by_rows : fast_threads(d);
    int64_t *order = rows_by_length(d, Wp + fr_fast_fwd_pack_floats(d));

    /* a time loop too small to split (one thread) over many rows: the
     * packed projection still runs on all the threads, each on its units
     * (the same tiles, so the same bits), before the loop */
    const int mode = fr_fast_proj_mode_pk(d, pk != NULL);
    if (x && nt == 1 && d->num_threads > 1 && mode == 2) {
        int nx = d->num_threads;
        if (nx > (H + VW - 1) / VW) nx = (int)((H + VW - 1) / VW);
#pragma omp parallel num_threads(nx) if (fr_omp_going(nx, 1))
        {
            int64_t j0, j1;
            my_units(H, &j0, &j1);
            project_units(d, x, In, W, Wp, pk ? pk + fr_fast_pack_floats(d) : NULL, Xp, j0, j1);
        }
        x = NULL;
    }

    /* The batch split with x projected in the loop: with three or more
     * rows a thread, each thread projects its own rows at each step
     * instead of its units' columns of every row before the loop: it then
     * writes no cache line another thread writes (the units' edges cut
     * lines when H % 16 != 0) and uses each row while it is in cache (C,
     * 2 threads: LSTM B=7 T=64 I=33 H=77 0.85 -> 0.79 ms, B=8 H=77 0.79 ->
     * 0.71). With fewer rows the panels of W_ih serve too few rows a step
     * (B=3 H=64: 0.50 against 0.58). A W_ih too large for one core's L2
     * (FR_FAST_ROWS_IH_MAX_FLOATS) is projected before the loop. */
    const int rows_project = by_rows && x && mode == 2 && B / by_rows >= 3
                             && (int64_t)fr_num_gates(cell) * fr_fast_round_panel(H) * In
                                <= FR_FAST_ROWS_IH_MAX_FLOATS;
    step_meet m = {0};
    const fwd_team team = {d, dir, h0_zero, packed, by_rows > 0, rows_project, R, bhn, x, W, Xp, Gh,
                           h_a, h_b, c_buf, hs, cs, gates, y, Wp,
                           pk ? pk : Wp,
                           pk ? pk + fr_fast_pack_floats(d) : Wp + fr_fast_ih_offset(d),
                           pk != NULL, ldy, In, order, &m};
    /* the threads that will meet every step, for meet()'s spin limit */
    const int meeting = nt > 1 && !by_rows && T > 1 ? nt : 0;
    /* one step (streaming): its slices of units are independent, and the
     * step team starts and ends them in ~0.12 us against 0.65-1.5 for an
     * OpenMP region (rnn_team.h); when it declines, it has noted the region */
    const int step = nt > 1 && T == 1 && !by_rows;
    if (nt == 1) {
        fwd_thread(&team, 0, 1);
    } else if (step && fr_team_run(nt, fwd_slice, (void *)&team)) {
    } else {
        if (meeting) fr_fast_meeting_threads(meeting);
#pragma omp parallel num_threads(nt) if (step || fr_omp_going(nt, 1))
        {
            int tid = 0, nth = 1;
#ifdef _OPENMP
            tid = omp_get_thread_num();
            nth = omp_get_num_threads();
#endif
            fwd_thread(&team, tid, nth);
        }
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
