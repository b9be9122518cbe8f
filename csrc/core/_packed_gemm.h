/* Packed-panel GEMM for the per-step products of the recurrent layers (h @ U forward, dz @ U^T
 * backward): small M (a block of batch rows), B (the recurrent kernel) packed once per sequence.
 * The kernels are in _packed_gemm_impl.h, written once with GCC vector extensions and instantiated
 * here for float and double at three levels, since the portable build has no -march flags:
 *   level 0: 16-byte vectors, the portable build (SSE2 on x86-64, NEON on arm64);
 *   level 1: 32-byte vectors compiled for AVX2 + FMA,
 *   level 2: 64-byte vectors compiled for AVX-512F (x86-64 with GCC or clang only for 1 and 2),
 * the widest the CPU runs chosen at import (cydnn_pg_set_level). Why not BLAS: a BLAS call packs
 * B on every call, which for these shapes (M = 32..64 rows, K = 128, N = 512) is a sizeable part
 * of the call, and its result for a row depends on the row's place in the call (edge tiles); here
 * B is packed once for all the steps of a sequence and every entry is one fixed-order sum.
 */
#ifndef CYDNN_PACKED_GEMM_H
#define CYDNN_PACKED_GEMM_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "_simd_level.h"

/* A segment of the weight gradients' product (gemm_tn): C (m x N) := a^T @ B, a (K x m, row
 * stride lda; NULL: a column of ones, m = 1) and C (row stride ldc) of the call's element type. */
typedef struct {
    const void* a;
    int lda;
    int m;
    void* c;
    int ldc;
} cydnn_pg_seg;
/* level 0: 16-byte vectors, 16 registers: 4 x 2 accumulators */
#define PG_ATTR
#define PG_VBYTES 16
#define PG_NV 2
#define PG_MR 4
#define PG_NP 2
#define PG_T float
#define PG_NAME(x) cydnn_pg_##x##_f0
#include "_packed_gemm_impl.h"
#undef PG_T
#undef PG_NAME
#define PG_T double
#define PG_NAME(x) cydnn_pg_##x##_d0
#include "_packed_gemm_impl.h"
#undef PG_T
#undef PG_NAME
#undef PG_ATTR
#undef PG_VBYTES
#undef PG_NV
#undef PG_MR
#undef PG_NP

#ifdef CYDNN_SIMD_X86
/* level 1: AVX2 + FMA, 16 registers: 6 x 2 accumulators */
#define PG_ATTR __attribute__((target("avx2,fma")))
#define PG_VBYTES 32
#define PG_NV 2
#define PG_MR 6
#define PG_NP 4
#define PG_T float
#define PG_NAME(x) cydnn_pg_##x##_f1
#include "_packed_gemm_impl.h"
#undef PG_T
#undef PG_NAME
#define PG_T double
#define PG_NAME(x) cydnn_pg_##x##_d1
#include "_packed_gemm_impl.h"
#undef PG_T
#undef PG_NAME
#undef PG_ATTR
#undef PG_VBYTES
#undef PG_NV
#undef PG_MR
#undef PG_NP

/* level 2: AVX-512F, 32 registers: 12 x 2 accumulators */
#define PG_ATTR __attribute__((target("avx512f,fma")))
#define PG_VBYTES 64
#define PG_NV 2
#define PG_MR 12
#define PG_NP 1
#define PG_T float
#define PG_NAME(x) cydnn_pg_##x##_f2
#include "_packed_gemm_impl.h"
#undef PG_T
#undef PG_NAME
#define PG_T double
#define PG_NAME(x) cydnn_pg_##x##_d2
#include "_packed_gemm_impl.h"
#undef PG_T
#undef PG_NAME
#undef PG_ATTR
#undef PG_VBYTES
#undef PG_NV
#undef PG_MR
#undef PG_NP
#endif

/* Columns per panel, at most, over every level and type: packed sizes are rounded up to it. */
#define CYDNN_PG_MAX_PANEL 32
/* Bytes a packed matrix's start is aligned to (the caller's buffer has this much slack). */
#define CYDNN_PG_ALIGN 64

static int cydnn_pg_level = 0;

/* Use `level` (clamped to what the CPU runs; negative: the best); returns the level in force. */
static int cydnn_pg_set_level(int level) {
    cydnn_pg_level = cydnn_simd_clamp_level(level);
    return cydnn_pg_level;
}

#ifdef CYDNN_SIMD_X86
#define CYDNN_PG_DISPATCH(fn, suffix, args) \
    ((cydnn_pg_level >= 2) ? cydnn_pg_##fn##_##suffix##2 args : \
     (cydnn_pg_level == 1) ? cydnn_pg_##fn##_##suffix##1 args : cydnn_pg_##fn##_##suffix##0 args)
#else
#define CYDNN_PG_DISPATCH(fn, suffix, args) cydnn_pg_##fn##_##suffix##0 args
#endif

/* Values a packed K x N matrix takes (any level), not counting the alignment slack. */
static size_t cydnn_pg_packed_size(int K, int N) {
    return (size_t)K * (size_t)((N + CYDNN_PG_MAX_PANEL - 1) / CYDNN_PG_MAX_PANEL * CYDNN_PG_MAX_PANEL);
}

/* The first CYDNN_PG_ALIGN-aligned address at or after p. */
static void* cydnn_pg_align(void* p) {
    return (void*)(((uintptr_t)p + CYDNN_PG_ALIGN - 1) & ~(uintptr_t)(CYDNN_PG_ALIGN - 1));
}

static void cydnn_pg_pack_f(int K, int N, const float* src, int ld, int trans, float* bp) {
    CYDNN_PG_DISPATCH(pack, f, (K, N, src, ld, trans, bp));
}
static void cydnn_pg_pack_d(int K, int N, const double* src, int ld, int trans, double* bp) {
    CYDNN_PG_DISPATCH(pack, d, (K, N, src, ld, trans, bp));
}
static void cydnn_pg_gemm_f(int M, int N, int K1, const float* A1, int lda1, const float* bp1,
                            int K2, const float* A2, int lda2, const float* bp2, const float* init,
                            int beta, float* C, int ldc) {
    CYDNN_PG_DISPATCH(gemm, f, (M, N, K1, A1, lda1, bp1, K2, A2, lda2, bp2, init, beta, C, ldc));
}
static void cydnn_pg_gemm_d(int M, int N, int K1, const double* A1, int lda1, const double* bp1,
                            int K2, const double* A2, int lda2, const double* bp2,
                            const double* init, int beta, double* C, int ldc) {
    CYDNN_PG_DISPATCH(gemm, d, (M, N, K1, A1, lda1, bp1, K2, A2, lda2, bp2, init, beta, C, ldc));
}
static void cydnn_pg_gemm_tn_f(int nseg, const cydnn_pg_seg* seg, int N, int K, const float* B,
                               int ldb, int beta) {
    CYDNN_PG_DISPATCH(gemm_tn, f, (nseg, seg, N, K, B, ldb, beta));
}
static void cydnn_pg_gemm_tn_d(int nseg, const cydnn_pg_seg* seg, int N, int K, const double* B,
                               int ldb, int beta) {
    CYDNN_PG_DISPATCH(gemm_tn, d, (nseg, seg, N, K, B, ldb, beta));
}
#endif
