/* The SimpleRNN cell's vectorised float32 kernels (tanh). */
#ifndef CYDNN_RNN_SIMPLE_RNN_H
#define CYDNN_RNN_SIMPLE_RNN_H
#include "recurrent/common.h"

/* SimpleRNN step (tanh) on n values: h := tanh(z). */
CYDNN_CLONES static void cydnn_tanh_forward_f(int n, const float* restrict z, float* restrict h) {
    for (int j = 0; j < n; j++) h[j] = cydnn_fast_tanhf(z[j]);
}

/* SimpleRNN gate gradient (tanh) on n values: dz := g * (1 - h^2). */
CYDNN_CLONES static void cydnn_tanh_backward_f(int n, const float* restrict h,
        const float* restrict g, float* restrict dz) {
    for (int j = 0; j < n; j++) dz[j] = g[j] * (1.0f - h[j] * h[j]);
}

#endif
