/*
 * Attention pooling's rows (fastrnn_pool.h) at one vector width, included
 * once per build after isa.h, simd_math.h and panels.h (acc_load,
 * acc_store): u = tanh(z) by the fast kernels' tanh, lane by lane, four
 * vectors' exps side by side; then s = u . v in 16 lanes (one vector at
 * VW = 16, two at 8), each lane an FMA a step in order of k, the halves
 * added as the header says. Lanes past A load +0 and add +0 * +0. So both
 * widths give the same bits.
 */
void FR_SFX(fr_fast_attn_rows_f32)(int64_t A, float *z, const float *v, int64_t m0,
                                   int64_t m1, float *s) TGT;
void FR_SFX(fr_fast_attn_rows_f32)(int64_t A, float *z, const float *v, int64_t m0,
                                   int64_t m1, float *s)
{
    enum { NV = 16 / VW };   /* vectors of the 16 lanes */
    for (int64_t m = m0; m < m1; m++) {
        float *u = z + m * A;
        int64_t k = 0;
        for (; k + 4 * VW <= A; k += 4 * VW) {
            V t[4];
            for (int q = 0; q < 4; q++) t[q] = v_ld(u + k + q * VW);
            v_tanh_k(t, 4);
            for (int q = 0; q < 4; q++) v_st(u + k + q * VW, t[q]);
        }
        for (; k < A; k += VW) {
            V t = acc_load(u + k, A - k);
            v_tanh_k(&t, 1);
            acc_store(u + k, A - k, t);
        }
        V acc[NV];
        for (int q = 0; q < NV; q++) acc[q] = v_zero();
        for (k = 0; k < A; k += 16)
            for (int q = 0; q < NV; q++) {
                const int64_t rem = A - k - q * VW;
                acc[q] = v_fmadd(acc_load(u + k + q * VW, rem),
                                 acc_load(v + k + q * VW, rem), acc[q]);
            }
        float l[16];
        for (int q = 0; q < NV; q++) v_st(l + q * VW, acc[q]);
        for (int w = 8; w >= 1; w /= 2)
            for (int i = 0; i < w; i++) l[i] = l[i] + l[i + w];
        s[m] = l[0];
    }
}
