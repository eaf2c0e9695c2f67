/*
 * The reverse walk of one layer and direction (fr_fast_backward_f32,
 * fast.h). Needs isa.h, panels.h, cell.h and forward.h (ACTIVE, my_units,
 * the scheduling helpers).
 */

TGT float *FR_SFX(fr_fast_backward_f32)(const fr_desc *d, int dir, const float *R,
                                 const float *gates, const float *hs, const float *cs,
                                 const float *dy, int64_t dts, int64_t dbs,
                                 float *dGx, float *dGh, float *dh, float *dhp, float *dc,
                                 float *Rp)
{
    int64_t *order = fr_fast_rows_by_length(d, Rp + fr_fast_pack_floats(d));
    const int cell = d->cell;
    const int64_t T = d->T, B = d->B, H = d->H, BH = B * H;
    const int64_t GX = (int64_t)fr_num_gates(cell) * H;
    const int64_t GC = cell == FR_CELL_GRU ? 4 * H : GX;
    const int64_t *lengths = d->lengths;
    const int is_lstm = cell == FR_CELL_LSTM, is_gru = cell == FR_CELL_GRU;
    const int by_rows = fr_fast_by_rows(d, VW);
    const int nt = by_rows ? by_rows : fr_fast_threads(d, VW);
    step_meet m = {0};
    const int meeting = nt > 1 && !by_rows && T > 1 ? nt : 0;
    if (meeting) fr_fast_meeting_threads(meeting);
    fr_region_clock rc;
    fr_region_begin(&rc, nt > 1, (double)T * B * GX * H >= FR_REGION_CPU_WORK);

#pragma omp parallel num_threads(nt) if (fr_omp_going(nt, 1))
    {
        const fr_region_mark rm = fr_region_enter(&rc);
        int64_t j0, j1, nact = B;
        int my_flag = 0, nth = 1;
#ifdef _OPENMP
        nth = omp_get_num_threads();
#endif

        my_units(H, &j0, &j1);
        const size_t nbytes = (size_t)(j1 - j0) * sizeof(float);
        float *cur = dh, *prev = dhp;   /* dL/dh_t and dL/dh_{t-1} */
        /* this thread's columns of W_hh in panels (rows of R: its GX gate
         * rows), only it reads them: the reverse walk streams them */
        if (j1 > j0) pack_copy(R, H, 0, GX, j0, j1, Rp + (j0 / VW) * GX * VW);
        if (by_rows) {
            /* the batch split (as forward, fr_fast_by_rows): every thread reads
             * every column panel, then walks its own sequences, all units,
             * with no meeting between steps */
            int tid = 0;
#ifdef _OPENMP
            tid = omp_get_thread_num();
#endif
            if (nth > 1) {
#pragma omp barrier
            }
            const int64_t r0 = B * tid / nth, r1 = B * (tid + 1) / nth;
            for (int64_t s = T - 1; s >= 0 && r1 > r0; s--) {
                const int64_t t = dir ? T - 1 - s : s;
                const int64_t ip = dir ? t + 1 : t, ix = dir ? t : t + 1;
                float *dgx = dGx + t * B * GX, *dgh = dGh + t * B * GX;
                for (int64_t b = r0; b < r1; b++)
                    bwd_units(cell, H, 0, H, gates + (t * B + b) * GC, cur + b * H,
                              dy + t * dts + b * dbs, is_gru ? hs + ip * BH + b * H : NULL,
                              is_lstm ? cs + ip * BH + b * H : NULL,
                              is_lstm ? cs + ix * BH + b * H : NULL,
                              is_lstm ? dc + b * H : NULL, dgx + b * GX,
                              is_gru ? dgh + b * GX : NULL, prev + b * H);
                panel_axpy(dgh + r0 * GX, GX, r1 - r0, GX, Rp, prev + r0 * H, H, H, NULL);
                float *tmp = cur; cur = prev; prev = tmp;
            }
        } else
        for (int64_t s = T - 1; s >= 0; s--) {
            const int64_t t = dir ? T - 1 - s : s;
            const int64_t ip = dir ? t + 1 : t, ix = dir ? t : t + 1;
            float *dgx = dGx + t * B * GX, *dgh = dGh + t * B * GX;
            /* (A) gate gradients of this thread's units */
            for (int64_t b = 0; b < B && j1 > j0; b++) {
                float *dgxb = dgx + b * GX, *dghb = dgh + b * GX;
                if (!ACTIVE(t, b)) { /* the carried state passes the gradient on */
                    memcpy(prev + b * H + j0, cur + b * H + j0, nbytes);
                    for (int q = 0; q < fr_num_gates(cell); q++) {
                        memset(dgxb + q * H + j0, 0, nbytes);
                        if (is_gru) memset(dghb + q * H + j0, 0, nbytes);
                    }
                    continue;
                }
                bwd_units(cell, H, j0, j1, gates + (t * B + b) * GC, cur + b * H,
                          dy + t * dts + b * dbs, is_gru ? hs + ip * BH + b * H : NULL,
                          is_lstm ? cs + ip * BH + b * H : NULL,
                          is_lstm ? cs + ix * BH + b * H : NULL,
                          is_lstm ? dc + b * H : NULL, dgxb, is_gru ? dghb : NULL,
                          prev + b * H);
            }
            if (nth > 1) meet(&m, nth, &my_flag);
            /* (B) dL/dh_{t-1} += dG_h W_hh for this thread's columns */
            /* finished sequences: dG rows are 0 and prev already holds the
             * carried gradient, so they skip the product */
            if (order) nact = active_count(lengths, order, B, t, nact);
            if (j1 > j0)
                panel_axpy(dgh, GX, nact, GX, Rp + (j0 / VW) * GX * VW, prev + j0, H, j1 - j0,
                           order);
            float *tmp = cur; cur = prev; prev = tmp;
        }
        fr_region_done(&rc, rm);
    }
    fr_region_end(&rc);
    if (meeting) fr_fast_meeting_threads(-meeting);
    return (T % 2 == 0) ? dh : dhp;
}

