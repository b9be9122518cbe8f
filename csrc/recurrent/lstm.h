/* The LSTM cell's vectorised float32 kernels (sigmoid gates, tanh): forward step, gate gradients. */
#ifndef CYDNN_RNN_LSTM_H
#define CYDNN_RNN_LSTM_H
#include "recurrent/common.h"

/* LSTM step on nr rows (sigmoid gates, tanh): z (nr x 4u) pre-activations i, f, c~, o;
   a := (i, f, g, o); c := f * cp + i * g; t := tanh(c); h := o * t. Each gate's slice of a row
   has its own restrict pointer: without that the slices of one array might overlap, and gcc
   keeps a scalar fallback that it picks at run time. */
static inline void cydnn_lstm_forward_row_f(int u, const float* restrict zi,
        const float* restrict zf, const float* restrict zg, const float* restrict zo,
        float* restrict ai, float* restrict af, float* restrict ag, float* restrict ao,
        const float* restrict cp, float* restrict c, float* restrict t, float* restrict h) {
    for (int j = 0; j < u; j++) {
        float ig = cydnn_fast_sigmoidf(zi[j]);
        float fg = cydnn_fast_sigmoidf(zf[j]);
        float gg = cydnn_fast_tanhf(zg[j]);
        float og = cydnn_fast_sigmoidf(zo[j]);
        float cc = fg * cp[j] + ig * gg;
        float tt = cydnn_fast_tanhf(cc);
        ai[j] = ig; af[j] = fg; ag[j] = gg; ao[j] = og;
        c[j] = cc; t[j] = tt; h[j] = og * tt;
    }
}

/* Units j0..j1 of nr rows (the whole row: 0..u). */
CYDNN_CLONES static void cydnn_lstm_forward_rows_f(int nr, int u, int j0, int j1, const float* z,
        float* a, const float* cp, float* c, float* t, float* h) {
    for (int r = 0; r < nr; r++) {
        const float* zr = z + (size_t)r * 4 * u + j0;
        float* ar = a + (size_t)r * 4 * u + j0;
        size_t o = (size_t)r * u + j0;
        cydnn_lstm_forward_row_f(j1 - j0, zr, zr + u, zr + 2 * u, zr + 3 * u, ar, ar + u,
                                 ar + 2 * u, ar + 3 * u, cp + o, c + o, t + o, h + o);
    }
}

/* LSTM gate gradients for one row: g = dL/dh, dc = dL/dc from the next step (in) and
   dL/dc_prev (out); dz (4u) := dL/d(pre-activations). */
static inline void cydnn_lstm_backward_gates_f(int u, const float* restrict ai,
        const float* restrict af, const float* restrict ag, const float* restrict ao,
        const float* restrict cp, const float* restrict t, const float* restrict g,
        float* restrict dc, float* restrict dzi, float* restrict dzf, float* restrict dzg,
        float* restrict dzo) {
    for (int j = 0; j < u; j++) {
        float ig = ai[j], fg = af[j], gg = ag[j], og = ao[j], tt = t[j];
        float dct = dc[j] + g[j] * og * (1.0f - tt * tt);   /* through h = o * tanh(c) */
        dzi[j] = dct * gg * ig * (1.0f - ig);               /* input gate */
        dzf[j] = dct * cp[j] * fg * (1.0f - fg);            /* forget gate */
        dzg[j] = dct * ig * (1.0f - gg * gg);               /* candidate */
        dzo[j] = g[j] * tt * og * (1.0f - og);              /* output gate */
        dc[j] = dct * fg;                                   /* to c_prev */
    }
}

CYDNN_CLONES static void cydnn_lstm_backward_row_f(int u, const float* a, const float* cp,
        const float* t, const float* g, float* dc, float* dz) {
    cydnn_lstm_backward_gates_f(u, a, a + u, a + 2 * u, a + 3 * u, cp, t, g, dc, dz, dz + u,
                                dz + 2 * u, dz + 3 * u);
}

#endif
