/* The GRU (reset_before) cell's vectorised float32 kernels (sigmoid gates, tanh). */
#ifndef CYDNN_RNN_GRU_RB_H
#define CYDNN_RNN_GRU_RB_H
#include "recurrent/common.h"

/* GRU with reset_before (Keras reset_after=False), in two passes around the second GEMM.
   Gates on one row: xz, xr (x @ kernel + bias) become the pre-activations with qz, qr
   (h_prev @ recurrent_kernel); a := (zg, r); rhp := r * h_prev, the candidate's GEMM operand. */
static inline void cydnn_gru_rb_gates_row_f(int u, float* restrict xz, float* restrict xr,
        const float* restrict qz, const float* restrict qr, float* restrict az,
        float* restrict ar, const float* restrict hp, float* restrict rhp) {
    for (int j = 0; j < u; j++) {
        float pz = xz[j] + qz[j], pr = xr[j] + qr[j];
        float zg = cydnn_fast_sigmoidf(pz), rg = cydnn_fast_sigmoidf(pr);
        xz[j] = pz; xr[j] = pr; az[j] = zg; ar[j] = rg;
        rhp[j] = rg * hp[j];
    }
}

CYDNN_CLONES static void cydnn_gru_rb_gates_rows_f(int nr, int u, float* z, const float* rec,
        float* a, const float* hp, float* rhp) {
    for (int r = 0; r < nr; r++) {
        size_t o3 = (size_t)r * 3 * u, o = (size_t)r * u;
        cydnn_gru_rb_gates_row_f(u, z + o3, z + o3 + u, rec + o3, rec + o3 + u, a + o3,
                                 a + o3 + u, hp + o, rhp + o);
    }
}

/* Candidate on one row: xh += qh ((r * h_prev) @ U_h) is the pre-activation; hh = tanh;
   h = zg * hp + (1 - zg) * hh. */
static inline void cydnn_gru_rb_candidate_row_f(int u, float* restrict xh,
        const float* restrict qh, const float* restrict az, float* restrict ah,
        const float* restrict hp, float* restrict h) {
    for (int j = 0; j < u; j++) {
        float ph = xh[j] + qh[j];
        float hh = cydnn_fast_tanhf(ph);
        xh[j] = ph; ah[j] = hh;
        h[j] = az[j] * hp[j] + (1.0f - az[j]) * hh;
    }
}

CYDNN_CLONES static void cydnn_gru_rb_candidate_rows_f(int nr, int u, float* z,
        const float* rec, float* a, const float* hp, float* h) {
    for (int r = 0; r < nr; r++) {
        size_t o3 = (size_t)r * 3 * u, o = (size_t)r * u;
        cydnn_gru_rb_candidate_row_f(u, z + o3 + 2 * u, rec + o3 + 2 * u, a + o3,
                                     a + o3 + 2 * u, hp + o, h + o);
    }
}

/* Backward, first pass on one row (g = dL/dh): the update gate's and the candidate's
   pre-activation gradients; dh := g * zg, the direct part of dL/dh_prev. */
static inline void cydnn_gru_rb_backward1_row_f(int u, const float* restrict az,
        const float* restrict ah, const float* restrict hp, const float* restrict g,
        float* restrict dzz, float* restrict dzh, float* restrict dh) {
    for (int j = 0; j < u; j++) {
        float zg = az[j], hh = ah[j];
        dzz[j] = g[j] * (hp[j] - hh) * zg * (1.0f - zg);    /* update gate */
        dzh[j] = g[j] * (1.0f - zg) * (1.0f - hh * hh);    /* candidate */
        dh[j] = g[j] * zg;                                 /* h_prev through the update gate */
    }
}

CYDNN_CLONES static void cydnn_gru_rb_backward1_f(int u, const float* a, const float* hp,
        const float* g, float* dz, float* dh) {
    cydnn_gru_rb_backward1_row_f(u, a, a + 2 * u, hp, g, dz, dz + 2 * u, dh);
}

/* Backward, second pass on one row: drhp = dL/d(r * h_prev) from the candidate's GEMM;
   the reset gate's pre-activation gradient, and dh += drhp * r (h_prev through r * h_prev). */
CYDNN_CLONES static void cydnn_gru_rb_backward2_f(int u, const float* restrict ar,
        const float* restrict hp, const float* restrict drhp, float* restrict dzr,
        float* restrict dh) {
    for (int j = 0; j < u; j++) {
        float rg = ar[j];
        dzr[j] = drhp[j] * hp[j] * rg * (1.0f - rg);        /* reset gate */
        dh[j] += drhp[j] * rg;
    }
}

#endif
