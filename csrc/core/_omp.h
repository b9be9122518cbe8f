/* core/_omp.h: OpenMP as the kernels see it, with serial stand-ins when built without OpenMP:
 * whether it is there, the thread count for the next parallel regions, and, inside a region,
 * the size of the running team and a barrier for it (the recurrent unit split meets after every
 * step). Used by _parallel.pyx (the Python-facing knob), _threads.pxd and recurrent.pyx. */
#ifndef CYDNN_OMP_H
#define CYDNN_OMP_H

#ifdef _OPENMP
#include <omp.h>
static int cydnn_omp_enabled(void) { return 1; }
static void cydnn_omp_set_threads(int n) { omp_set_num_threads(n); }
static int cydnn_omp_team_size(void) { return omp_get_num_threads(); }
static void cydnn_omp_barrier(void) { _Pragma("omp barrier") }
#else
static int cydnn_omp_enabled(void) { return 0; }
static void cydnn_omp_set_threads(int n) { (void)n; }
static int cydnn_omp_team_size(void) { return 1; }
static void cydnn_omp_barrier(void) {}
#endif

#endif
