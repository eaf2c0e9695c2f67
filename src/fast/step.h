/*
 * One step of a cell's gate math after its products, one row
 * (fastrnn_cell.h; portable/cell_step.c splits the rows): the recurrent
 * loops' own pipelines, cell_units forward and bwd_units backward
 * (cell.h): the same instructions for the same pre-activations. Included
 * once per build after isa.h, simd_math.h, panels.h and cell.h.
 */
void FR_SFX(fr_fast_cell_step_f32)(int cell, int64_t H, float *pre, const float *gh,
                                   const float *h, const float *c, float *h_out,
                                   float *c_out, float *cache) TGT;
void FR_SFX(fr_fast_cell_step_f32)(int cell, int64_t H, float *pre, const float *gh,
                                   const float *h, const float *c, float *h_out,
                                   float *c_out, float *cache)
{
    /* GRU: gh already holds b_hh (b_hn too), so no separate b_hn; the
     * activations kept over pre (LSTM, RNN) or in cache (GRU) */
    cell_units(cell, H, 0, H, pre, gh, NULL, h, c, h_out, c_out, h_out, cache, 1);
}

void FR_SFX(fr_fast_cell_step_backward_f32)(int cell, int64_t H, const float *acts,
                                            const float *h, const float *c,
                                            const float *c_out, const float *dh,
                                            const float *dy, float *dc, float *dgx,
                                            float *dgh, float *dhp) TGT;
void FR_SFX(fr_fast_cell_step_backward_f32)(int cell, int64_t H, const float *acts,
                                            const float *h, const float *c,
                                            const float *c_out, const float *dh,
                                            const float *dy, float *dc, float *dgx,
                                            float *dgh, float *dhp)
{
    bwd_units(cell, H, 0, H, acts, dh, dy, h, c, c_out, dc, dgx, dgh, dhp);
}
