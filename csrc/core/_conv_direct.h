/* Direct convolution kernels, where im2col + GEMM runs a GEMM with a tiny dimension: a first layer
 * on grey or RGB images (planes: output columns as vector lanes), or a layer with 16 or 32 filters
 * (filters as lanes: an implicit GEMM on the NHWC rows, no patches). The kernels themselves are in
 * _conv_direct_impl.h, written once with GCC vector extensions and instantiated here for float and
 * double at three levels, since the portable build has no -march flags:
 *   level 0: 16-byte vectors, the portable build (SSE2 on x86-64, NEON on arm64);
 *   level 1: 32-byte vectors compiled for AVX2 + FMA,
 *   level 2: 64-byte vectors compiled for AVX-512F (x86-64 with GCC or clang only for 1 and 2),
 * the widest the CPU runs chosen at import (cydnn_cd_set_level). All levels sum in the same order;
 * they differ only by FMA rounding.
 */
#ifndef CYDNN_CONV_DIRECT_H
#define CYDNN_CONV_DIRECT_H
#include <stddef.h>
#include <string.h>
#include "_simd_level.h"

/* level 0: 16-byte vectors, 16 registers (SSE2 has no FMA: a multiply and an add) */
#define CD_ATTR
#define CD_VBYTES 16
#define CD_NV 4
#define CD_FB 2
#define CD_IB 2
#define CD_FV 2
#define CD_XP 5
#define CD_EB 5
#define CD_DE 4
#define CD_DXIB 1
#define CD_DXQ 2
#define CD_T float
#define CD_NAME(x) cydnn_cd_##x##_f0
#include "_conv_direct_impl.h"
#undef CD_T
#undef CD_NAME
#define CD_T double
#define CD_NAME(x) cydnn_cd_##x##_d0
#include "_conv_direct_impl.h"
#undef CD_T
#undef CD_NAME
#undef CD_ATTR
#undef CD_VBYTES
#undef CD_NV
#undef CD_FB
#undef CD_IB
#undef CD_FV
#undef CD_XP
#undef CD_EB
#undef CD_DE
#undef CD_DXIB
#undef CD_DXQ

#ifdef CYDNN_SIMD_X86
/* level 1: AVX2 + FMA, 32-byte vectors, 16 registers */
#define CD_ATTR __attribute__((target("avx2,fma")))
#define CD_VBYTES 32
#define CD_NV 4
#define CD_FB 2
#define CD_IB 2
#define CD_FV 2
#define CD_XP 6
#define CD_EB 6
#define CD_DE 4
#define CD_DXIB 1
#define CD_DXQ 2
#define CD_T float
#define CD_NAME(x) cydnn_cd_##x##_f1
#include "_conv_direct_impl.h"
#undef CD_T
#undef CD_NAME
#define CD_T double
#define CD_NAME(x) cydnn_cd_##x##_d1
#include "_conv_direct_impl.h"
#undef CD_T
#undef CD_NAME
#undef CD_ATTR
#undef CD_VBYTES
#undef CD_NV
#undef CD_FB
#undef CD_IB
#undef CD_FV
#undef CD_XP
#undef CD_EB
#undef CD_DE
#undef CD_DXIB
#undef CD_DXQ

/* level 2: AVX-512F, 64-byte vectors, 32 registers */
#define CD_ATTR __attribute__((target("avx512f,fma")))
#define CD_VBYTES 64
#define CD_NV 2
#define CD_FB 6
#define CD_IB 5
#define CD_FV 2
#define CD_XP 10
#define CD_EB 10
#define CD_DE 2
#define CD_DXIB 2
#define CD_DXQ 4
#define CD_T float
#define CD_NAME(x) cydnn_cd_##x##_f2
#include "_conv_direct_impl.h"
#undef CD_T
#undef CD_NAME
#define CD_T double
#define CD_NAME(x) cydnn_cd_##x##_d2
#include "_conv_direct_impl.h"
#undef CD_T
#undef CD_NAME
#undef CD_ATTR
#undef CD_VBYTES
#undef CD_NV
#undef CD_FB
#undef CD_IB
#undef CD_FV
#undef CD_XP
#undef CD_EB
#undef CD_DE
#undef CD_DXIB
#undef CD_DXQ
#endif

/* Output columns per block, at most, over every level: plane widths are rounded up to it. */
#define CYDNN_CD_MAX_BLOCK 32

static int cydnn_cd_level = 0;

/* Use `level` (clamped to what the CPU runs; negative: the best); returns the level in force. */
static int cydnn_cd_set_level(int level) {
    cydnn_cd_level = cydnn_simd_clamp_level(level);
    return cydnn_cd_level;
}

#ifdef CYDNN_SIMD_X86
#define CYDNN_CD_DISPATCH(fn, suffix, args) \
    do { \
        if (cydnn_cd_level >= 2) cydnn_cd_##fn##_##suffix##2 args; \
        else if (cydnn_cd_level == 1) cydnn_cd_##fn##_##suffix##1 args; \
        else cydnn_cd_##fn##_##suffix##0 args; \
    } while (0)
#else
#define CYDNN_CD_DISPATCH(fn, suffix, args) cydnn_cd_##fn##_##suffix##0 args
#endif

static void cydnn_cd_forward_f(const float* planes, int c, int ph, int pw, int kh, int kw, const float* w,
                               const float* bias, int F, int oh, int ow, float* z) {
    CYDNN_CD_DISPATCH(forward_image, f, (planes, c, ph, pw, kh, kw, w, bias, F, oh, ow, z));
}
static void cydnn_cd_forward_d(const double* planes, int c, int ph, int pw, int kh, int kw, const double* w,
                               const double* bias, int F, int oh, int ow, double* z) {
    CYDNN_CD_DISPATCH(forward_image, d, (planes, c, ph, pw, kh, kw, w, bias, F, oh, ow, z));
}
static void cydnn_cd_dw_f(const float* planes, int c, int ph, int pw, int kh, int kw, const float* dzpad,
                          int lrow, int F, int oh, int ow, float* part, int ls) {
    CYDNN_CD_DISPATCH(dw_image, f, (planes, c, ph, pw, kh, kw, dzpad, lrow, F, oh, ow, part, ls));
}
static void cydnn_cd_dw_d(const double* planes, int c, int ph, int pw, int kh, int kw, const double* dzpad,
                          int lrow, int F, int oh, int ow, double* part, int ls) {
    CYDNN_CD_DISPATCH(dw_image, d, (planes, c, ph, pw, kh, kw, dzpad, lrow, F, oh, ow, part, ls));
}

/* Values of slack after the padded image of the filters-as-lanes kernels, for every level: a block
 * running up to 16 positions past a row's end (forward), up to 16 offsets past kw*c (dW), and the
 * fewer than 32 zero lanes past kw*c of each patch gradient (dx). */
#define CYDNN_CD_SLACK(c, sw) ((16 * (sw) + 16) * (c) + 64)

static void cydnn_cd_nhwc_forward_f(const float* xp, int wp, int c, int kh, int kw, int sh, int sw, const float* w,
                                    const float* bias, int F, int oh, int ow, float* z) {
    CYDNN_CD_DISPATCH(nhwc_forward, f, (xp, wp, c, kh, kw, sh, sw, w, bias, F, oh, ow, z));
}
static void cydnn_cd_nhwc_forward_d(const double* xp, int wp, int c, int kh, int kw, int sh, int sw, const double* w,
                                    const double* bias, int F, int oh, int ow, double* z) {
    CYDNN_CD_DISPATCH(nhwc_forward, d, (xp, wp, c, kh, kw, sh, sw, w, bias, F, oh, ow, z));
}
static void cydnn_cd_nhwc_dw_f(const float* xp, int wp, int c, int kh, int kw, int sh, int sw, const float* dz,
                               int F, int oh, int ow, float* part) {
    CYDNN_CD_DISPATCH(nhwc_dw, f, (xp, wp, c, kh, kw, sh, sw, dz, F, oh, ow, part));
}
static void cydnn_cd_nhwc_dw_d(const double* xp, int wp, int c, int kh, int kw, int sh, int sw, const double* dz,
                               int F, int oh, int ow, double* part) {
    CYDNN_CD_DISPATCH(nhwc_dw, d, (xp, wp, c, kh, kw, sh, sw, dz, F, oh, ow, part));
}

static void cydnn_cd_nhwc_dx_f(float* dxp, int wp, int c, int kh, int sh, int sw, const float* dz, const float* wt,
                               int ep, int F, int oh, int ow) {
    CYDNN_CD_DISPATCH(nhwc_dx, f, (dxp, wp, c, kh, sh, sw, dz, wt, ep, F, oh, ow));
}
static void cydnn_cd_nhwc_dx_d(double* dxp, int wp, int c, int kh, int sh, int sw, const double* dz, const double* wt,
                               int ep, int F, int oh, int ow) {
    CYDNN_CD_DISPATCH(nhwc_dx, d, (dxp, wp, c, kh, sh, sw, dz, wt, ep, F, oh, ow));
}

#endif
