/* What the recurrent cells' vectorised kernels share: the SIMD dispatch of their loops and the
 * team barrier of the unit-split recurrence. The cell kernels are branch-free loops over a row's
 * units so gcc vectorises them (float selects if-convert because setup.py builds with
 * -fno-trapping-math); each is compiled for x86-64-v4, v3 and the baseline and picked at load. */
#ifndef CYDNN_RNN_COMMON_H
#define CYDNN_RNN_COMMON_H
#include <math.h>
#include <string.h>
#include <stddef.h>
#include "_fastmath.h"   /* cydnn_fast_expf, cydnn_fast_sigmoidf, cydnn_fast_tanhf */

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define CYDNN_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CYDNN_CLONES
#endif

/* Inside a parallel region: wait for the whole team; the team's size (1 without OpenMP). */
#ifdef _OPENMP
#include <omp.h>
static void cydnn_team_barrier(void) { _Pragma("omp barrier") }
static int cydnn_team_size(void) { return omp_get_num_threads(); }
#else
static void cydnn_team_barrier(void) {}
static int cydnn_team_size(void) { return 1; }
#endif
#endif
