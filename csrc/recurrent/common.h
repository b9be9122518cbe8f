/* What the recurrent cells' vectorised kernels share. The cell kernels are branch-free loops over
 * a row's units so gcc vectorises them (float selects if-convert because setup.py builds with
 * -fno-trapping-math); each is marked CYDNN_CLONES (core/_simd_level.h): compiled for x86-64-v4,
 * v3 and the baseline and picked at load. */
#ifndef CYDNN_RNN_COMMON_H
#define CYDNN_RNN_COMMON_H
#include <math.h>
#include <string.h>
#include <stddef.h>
#include "_fastmath.h"     /* cydnn_fast_expf, cydnn_fast_sigmoidf, cydnn_fast_tanhf */
#include "_simd_level.h"   /* CYDNN_CLONES: the one SIMD selection */
#endif
