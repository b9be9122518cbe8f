/* The GRU (reset_after) cell's vectorised float32 kernels (sigmoid gates, tanh). */
#ifndef CYDNN_RNN_GRU_H
#define CYDNN_RNN_GRU_H
#include "recurrent/common.h"

/* GRU step (reset_after) on one row: zx (3u) holds x @ kernel + input bias and becomes the
   pre-activations; rec (3u) = h_prev @ recurrent_kernel; brec (3u) recurrent bias.
   zg = sigmoid, r = sigmoid, hh = tanh(x_h + r * (rec_h + brec_h)); h = zg * hp + (1-zg) * hh. */
static inline void cydnn_gru_forward_row_f(int u, float* restrict xz, float* restrict xr,
        float* restrict xh, const float* restrict qz, const float* restrict qr,
        const float* restrict qh, const float* restrict bz, const float* restrict br,
        const float* restrict bh, float* restrict az, float* restrict ar, float* restrict ah,
        float* restrict rh, const float* restrict hp, float* restrict h) {
    for (int j = 0; j < u; j++) {
        float pz = xz[j] + qz[j] + bz[j];
        float pr = xr[j] + qr[j] + br[j];
        float zg = cydnn_fast_sigmoidf(pz), rg = cydnn_fast_sigmoidf(pr);
        float rhv = qh[j] + bh[j];
        float ph = xh[j] + rg * rhv;
        float hh = cydnn_fast_tanhf(ph);
        xz[j] = pz; xr[j] = pr; xh[j] = ph;
        az[j] = zg; ar[j] = rg; ah[j] = hh;
        rh[j] = rhv;
        h[j] = zg * hp[j] + (1.0f - zg) * hh;
    }
}

CYDNN_CLONES static void cydnn_gru_forward_rows_f(int nr, int u, float* z, const float* rec,
        const float* brec, float* a, float* rh, const float* hp, float* h) {
    for (int r = 0; r < nr; r++) {
        float* zr = z + (size_t)r * 3 * u;
        float* ar = a + (size_t)r * 3 * u;
        const float* qr = rec + (size_t)r * 3 * u;
        size_t o = (size_t)r * u;
        cydnn_gru_forward_row_f(u, zr, zr + u, zr + 2 * u, qr, qr + u, qr + 2 * u, brec,
                                brec + u, brec + 2 * u, ar, ar + u, ar + 2 * u, rh + o, hp + o,
                                h + o);
    }
}

/* GRU gate gradients for one row: g = dL/dh. dr (3u) := dL/d(h_prev @ U + brec);
   dxh (u) := dL/d(x_h + input bias h); dhp (u) := the direct part g * zg of dL/dh_prev. */
static inline void cydnn_gru_backward_gates_f(int u, const float* restrict az,
        const float* restrict ar, const float* restrict ah, const float* restrict rh,
        const float* restrict hp, const float* restrict g, float* restrict drz,
        float* restrict drr, float* restrict drh, float* restrict dxh, float* restrict dhp) {
    for (int j = 0; j < u; j++) {
        float zg = az[j], rg = ar[j], hh = ah[j];
        float dph = g[j] * (1.0f - zg) * (1.0f - hh * hh);  /* candidate pre-activation */
        drz[j] = g[j] * (hp[j] - hh) * zg * (1.0f - zg);    /* update gate */
        drr[j] = dph * rh[j] * rg * (1.0f - rg);            /* reset gate */
        drh[j] = dph * rg;                                  /* recurrent part of the candidate */
        dxh[j] = dph;                                       /* input part of the candidate */
        dhp[j] = g[j] * zg;                                 /* h_prev through the update gate */
    }
}

CYDNN_CLONES static void cydnn_gru_backward_row_f(int u, const float* a, const float* rh,
        const float* hp, const float* g, float* dr, float* dxh, float* dhp) {
    cydnn_gru_backward_gates_f(u, a, a + u, a + 2 * u, rh, hp, g, dr, dr + u, dr + 2 * u, dxh,
                               dhp);
}

#endif
