/* Direct convolution kernels (one image at a time), included by _conv_direct.h once per element
 * type and SIMD level. The includer defines
 *   CD_T       element type (float or double)
 *   CD_VBYTES  vector width in bytes (16: SSE2 / NEON; 32: AVX2; 64: AVX-512)
 *   CD_NAME(x) the name of this instance of x
 *   CD_ATTR    function attributes (a target("...") for the wider levels, or nothing)
 *   CD_NV, CD_FB, CD_IB   planes: vectors of output columns per block, filters per block (<= 8),
 *                         kernel rows per weight-gradient block (<= 5)
 *   CD_FV, CD_XP, CD_EB   filters as lanes: vectors of filters, output positions and input offsets
 *                         per block; CD_DE vectors of input offsets (CD_DE lanes dividing 32),
 *                         CD_DXIB kernel rows (<= 5) and CD_DXQ positions (<= 4) per block of dx
 * chosen so that a block's accumulators fill the registers of the level without spilling.
 *
 * Planes (few input channels, stride 1). The image is copied, per channel, into a zero-padded plane
 * of pw columns, so that output (p, x) of filter f is  sum over (ci, i, j) of
 * plane_ci[p + i][x + j] * W[i, j, ci, f]  with no bounds checks; vectors run along x. pw covers ow
 * rounded up to a block of output columns (CYDNN_CD_MAX_BLOCK) plus kw - 1.
 *
 * Summation orders do not depend on the level or the thread count: the forward sum of each output
 * runs over (ci, i, j) in order; each weight-gradient entry is one running sum over (image, p, x)
 * in order (the lanes of a vector are different entries, never parts of one sum). Levels differ
 * only by FMA rounding.
 */
#define CD_VL (CD_VBYTES / (int)sizeof(CD_T))     /* lanes per vector */
#define CD_XB (CD_NV * CD_VL)                      /* planes: output columns per block */
#define CD_VEC CD_NAME(vec)

typedef CD_T CD_VEC __attribute__((vector_size(CD_VBYTES), aligned(sizeof(CD_T)), may_alias));

/* Keep a loaded vector in a register: GCC otherwise re-reads it as a memory operand of each FMA
 * that uses it, and the loads, not the FMAs, set the pace. */
#ifndef CD_KEEP
#if defined(__x86_64__) && defined(__GNUC__)
#define CD_KEEP(v) __asm__("" : "+v"(v))
#else
#define CD_KEEP(v) ((void)0)
#endif
#endif

/* z[p, x0 .. x0 + XB, f0 .. f0 + nf] (nf <= CD_FB, a constant after inlining): the accumulators
 * stay in registers over all the taps; then bias and a scatter into the NHWC row. */
static inline __attribute__((always_inline)) CD_ATTR void
CD_NAME(forward_block)(const CD_T* planes, int c, int ph, int pw, int kh, int kw,
                       const CD_T* w, const CD_T* bias, int F, int f0, const int nf,
                       int p, int x0, int ow, CD_T* zrow) {
    CD_VEC acc[CD_FB][CD_NV];
    CD_T out[CD_FB][CD_XB];
    CD_T tup[CD_XB][CD_FB];
    for (int fb = 0; fb < nf; fb++)
        for (int v = 0; v < CD_NV; v++) acc[fb][v] = (CD_VEC){0};
    for (int ci = 0; ci < c; ci++) {
        const CD_T* plane = planes + (size_t)ci * ph * pw;
        for (int i = 0; i < kh; i++) {
            const CD_T* row = plane + (size_t)(p + i) * pw + x0;
            const CD_T* wt = w + ((size_t)i * kw * c + ci) * F + f0;   /* W[i, 0, ci, f0] */
            for (int j = 0; j < kw; j++) {
                const CD_VEC* s = (const CD_VEC*)(row + j);
                for (int fb = 0; fb < nf; fb++) {
                    CD_T wv = wt[(size_t)j * c * F + fb];
                    for (int v = 0; v < CD_NV; v++) acc[fb][v] += wv * s[v];
                }
            }
        }
    }
    for (int fb = 0; fb < nf; fb++) {
        CD_T b = bias ? bias[f0 + fb] : (CD_T)0;
        for (int v = 0; v < CD_NV; v++) *(CD_VEC*)(out[fb] + v * CD_VL) = acc[fb][v] + b;
    }
    /* the filters of one output column are neighbours in z: interleave them, then copy nf values
       per column in one move */
    int n = ow - x0 < CD_XB ? ow - x0 : CD_XB;
    CD_T* dst = zrow + (size_t)x0 * F + f0;
    for (int u = 0; u < CD_XB; u++)
        for (int fb = 0; fb < nf; fb++) tup[u][fb] = out[fb][u];
    for (int u = 0; u < n; u++) memcpy(dst + (size_t)u * F, tup[u], nf * sizeof(CD_T));
}

/* z (oh, ow, F) := conv(planes, W) + bias, W in Keras' (kh, kw, c, F) layout. */
static CD_ATTR void
CD_NAME(forward_image)(const CD_T* planes, int c, int ph, int pw, int kh, int kw,
                       const CD_T* w, const CD_T* bias, int F, int oh, int ow, CD_T* z) {
#define CD_FWD(nf) CD_NAME(forward_block)(planes, c, ph, pw, kh, kw, w, bias, F, f0, nf, p, x0, ow, zrow)
    for (int p = 0; p < oh; p++) {
        CD_T* zrow = z + (size_t)p * ow * F;
        for (int x0 = 0; x0 < ow; x0 += CD_XB) {
            int f0 = 0;
            for (; f0 + CD_FB <= F; f0 += CD_FB) CD_FWD(CD_FB);
            switch (F - f0) {   /* the last filters, fewer than a block */
                case 1: if (CD_FB > 1) CD_FWD(1); break;
                case 2: if (CD_FB > 2) CD_FWD(2); break;
                case 3: if (CD_FB > 3) CD_FWD(3); break;
                case 4: if (CD_FB > 4) CD_FWD(4); break;
                case 5: if (CD_FB > 5) CD_FWD(5); break;
                case 6: if (CD_FB > 6) CD_FWD(6); break;
                case 7: if (CD_FB > 7) CD_FWD(7); break;
                default: break;
            }
        }
    }
#undef CD_FWD
}

/* part[ci, i0 + ib, l0 .. l0 + XB] += sum over (p, x') of plane_ci[p + i0 + ib][x'] * dzpad[p][x'F + l0 ..]
 * for ib < ni (<= CD_IB, a constant after inlining). */
static inline __attribute__((always_inline)) CD_ATTR void
CD_NAME(dw_block)(const CD_T* plane, int pw, const CD_T* dzpad, int lrow, int F, int oh, int nx,
                  int i0, const int ni, int l0, CD_T* part, int ls) {
    CD_VEC acc[CD_IB][CD_NV];
    for (int ib = 0; ib < ni; ib++)
        for (int v = 0; v < CD_NV; v++) acc[ib][v] = *(const CD_VEC*)(part + (size_t)(i0 + ib) * ls + l0 + v * CD_VL);
    for (int p = 0; p < oh; p++) {
        const CD_T* drow = dzpad + (size_t)p * lrow + l0;
        const CD_T* r0 = plane + (size_t)(p + i0) * pw;
        for (int xq = 0; xq < nx; xq++) {
            const CD_VEC* d = (const CD_VEC*)(drow + (size_t)xq * F);
            CD_VEC dv[CD_NV];
            for (int v = 0; v < CD_NV; v++) dv[v] = d[v];
            for (int ib = 0; ib < ni; ib++) {
                CD_T a = r0[(size_t)ib * pw + xq];
                for (int v = 0; v < CD_NV; v++) acc[ib][v] += a * dv[v];
            }
        }
    }
    for (int ib = 0; ib < ni; ib++)
        for (int v = 0; v < CD_NV; v++) *(CD_VEC*)(part + (size_t)(i0 + ib) * ls + l0 + v * CD_VL) = acc[ib][v];
}

/* Weight gradient of one image, added to part (c, kh, ls): part[ci, i, jr*F + f] accumulates
 * dL/dW[i, kw - 1 - jr, ci, f]. dzpad (oh, lrow) holds each row of dz (ow*F values) after
 * (kw - 1)*F zeros and before at least (kw - 1)*F + ls - kw*F zeros, so that the kw*F weights of
 * one input cell and one kernel row, in reversed-j order, read one contiguous run of dzpad. */
static CD_ATTR void
CD_NAME(dw_image)(const CD_T* planes, int c, int ph, int pw, int kh, int kw,
                  const CD_T* dzpad, int lrow, int F, int oh, int ow, CD_T* part, int ls) {
#define CD_DW(ni) CD_NAME(dw_block)(plane, pw, dzpad, lrow, F, oh, nx, i0, ni, l0, pc, ls)
    int nx = ow + kw - 1, lanes = kw * F;
    for (int ci = 0; ci < c; ci++) {
        const CD_T* plane = planes + (size_t)ci * ph * pw;
        CD_T* pc = part + (size_t)ci * kh * ls;
        for (int l0 = 0; l0 < lanes; l0 += CD_XB) {
            int i0 = 0;
            for (; i0 + CD_IB <= kh; i0 += CD_IB) CD_DW(CD_IB);
            switch (kh - i0) {   /* the last kernel rows, fewer than a block */
                case 1: if (CD_IB > 1) CD_DW(1); break;
                case 2: if (CD_IB > 2) CD_DW(2); break;
                case 3: if (CD_IB > 3) CD_DW(3); break;
                case 4: if (CD_IB > 4) CD_DW(4); break;
                default: break;
            }
        }
    }
#undef CD_DW
}

/* ---------------------------------------------------------------------------------------------
 * Filters as lanes ("implicit GEMM"), for layers whose filter count is a multiple of 16. The image
 * is a zero-padded NHWC copy (hp, wp, c) with slack after it; with dilation 1 the kw*c inputs that
 * one output position sees in kernel row i are contiguous:
 *   z[p, x, :] = bias + sum over i, e < kw*c of  xp[(p*sh + i)*wp*c + x*sw*c + e] * W[i, e, :]
 * Blocks of CD_XP output positions x CD_FV vectors of filters (one vector when the filters do not
 * fill CD_FV) stay in registers. A block past the row's end computes from the slack and is not
 * stored. Level constants CD_FV, CD_XP, CD_EB come from
 * the including header.
 */
static inline __attribute__((always_inline)) CD_ATTR void
CD_NAME(nhwc_forward_block)(const CD_T* row0, int rowstep, int kh, int e_len, int step,
                            const CD_T* w, const CD_T* bias, int F, int fv0, const int fv, int np, CD_T* zp) {
    CD_VEC acc[CD_XP][CD_FV];
    for (int v = 0; v < fv; v++) {
        CD_VEC b = bias ? *(const CD_VEC*)(bias + fv0 + v * CD_VL) : (CD_VEC){0};
        for (int u = 0; u < CD_XP; u++) acc[u][v] = b;
    }
    for (int i = 0; i < kh; i++) {
        const CD_T* row = row0 + (size_t)i * rowstep;
        const CD_T* wi = w + (size_t)i * e_len * F + fv0;
        for (int e = 0; e < e_len; e++) {
            CD_VEC wv[CD_FV];
            for (int v = 0; v < fv; v++) wv[v] = *(const CD_VEC*)(wi + (size_t)e * F + v * CD_VL);
            for (int u = 0; u < CD_XP; u++) {
                CD_T a = row[(size_t)u * step + e];
                for (int v = 0; v < fv; v++) acc[u][v] += a * wv[v];
            }
        }
    }
    for (int u = 0; u < CD_XP; u++)
        if (u < np)
            for (int v = 0; v < fv; v++) *(CD_VEC*)(zp + (size_t)u * F + v * CD_VL) = acc[u][v];
}

/* z (oh, ow, F) := conv(xp, W) + bias; xp (hp, wp, c) padded, W (kh, kw*c, F). */
static CD_ATTR void
CD_NAME(nhwc_forward)(const CD_T* xp, int wp, int c, int kh, int kw, int sh, int sw,
                      const CD_T* w, const CD_T* bias, int F, int oh, int ow, CD_T* z) {
    int e_len = kw * c, step = sw * c, rowstep = wp * c;
    for (int p = 0; p < oh; p++)
        for (int x0 = 0; x0 < ow; x0 += CD_XP) {
            const CD_T* row0 = xp + (size_t)p * sh * rowstep + (size_t)x0 * step;
            CD_T* zp = z + ((size_t)p * ow + x0) * F;
            int np = ow - x0 < CD_XP ? ow - x0 : CD_XP;
            if (F % (CD_FV * CD_VL) == 0)
                for (int fv0 = 0; fv0 < F; fv0 += CD_FV * CD_VL)
                    CD_NAME(nhwc_forward_block)(row0, rowstep, kh, e_len, step, w, bias, F, fv0, CD_FV, np, zp + fv0);
            else   /* one vector of filters at a time */
                for (int fv0 = 0; fv0 < F; fv0 += CD_VL)
                    CD_NAME(nhwc_forward_block)(row0, rowstep, kh, e_len, step, w, bias, F, fv0, 1, np, zp + fv0);
        }
}

/* part[i, e0 .. e0 + CD_EB, fv0 .. fv0 + fv*VL] += sum over (p, x) in order of
 * xp[(p*sh + i)*wp*c + x*sw*c + e] * dz[p, x, f]  (fv vectors of filters, a constant after inlining);
 * a block past kw*c reads the slack and stores only its real rows. */
static inline __attribute__((always_inline)) CD_ATTR void
CD_NAME(nhwc_dw_block)(const CD_T* xp, int rowstep, int step, int sh, const CD_T* dz, int F, int oh, int ow,
                       int i, int e0, int e_len, int fv0, const int fv, CD_T* part) {
    CD_T* pp = part + ((size_t)i * e_len + e0) * F + fv0;
    CD_VEC acc[CD_EB][CD_FV];
    for (int eb = 0; eb < CD_EB; eb++)
        for (int v = 0; v < fv; v++)
            acc[eb][v] = e0 + eb < e_len ? *(const CD_VEC*)(pp + (size_t)eb * F + v * CD_VL) : (CD_VEC){0};
    for (int p = 0; p < oh; p++) {
        const CD_T* row = xp + ((size_t)p * sh + i) * rowstep + e0;
        const CD_T* g = dz + (size_t)p * ow * F + fv0;
        for (int x = 0; x < ow; x++) {
            CD_VEC gv[CD_FV];
            for (int v = 0; v < fv; v++) gv[v] = *(const CD_VEC*)(g + (size_t)x * F + v * CD_VL);
            for (int eb = 0; eb < CD_EB; eb++) {
                CD_T a = row[(size_t)x * step + eb];
                for (int v = 0; v < fv; v++) acc[eb][v] += a * gv[v];
            }
        }
    }
    for (int eb = 0; eb < CD_EB; eb++)
        if (e0 + eb < e_len)
            for (int v = 0; v < fv; v++) *(CD_VEC*)(pp + (size_t)eb * F + v * CD_VL) = acc[eb][v];
}

/* part (kh, kw*c, F) += the weight gradient of one image: for each kernel row i and input offset e,
 * part[i, e, :] += sum over (p, x) in order of xp[(p*sh + i)*wp*c + x*sw*c + e] * dz[p, x, :]. */
static CD_ATTR void
CD_NAME(nhwc_dw)(const CD_T* xp, int wp, int c, int kh, int kw, int sh, int sw,
                 const CD_T* dz, int F, int oh, int ow, CD_T* part) {
    int e_len = kw * c, step = sw * c, rowstep = wp * c;
    for (int i = 0; i < kh; i++)
        for (int e0 = 0; e0 < e_len; e0 += CD_EB) {
            if (F % (CD_FV * CD_VL) == 0)
                for (int fv0 = 0; fv0 < F; fv0 += CD_FV * CD_VL)
                    CD_NAME(nhwc_dw_block)(xp, rowstep, step, sh, dz, F, oh, ow, i, e0, e_len, fv0, CD_FV, part);
            else   /* one vector of filters at a time */
                for (int fv0 = 0; fv0 < F; fv0 += CD_VL)
                    CD_NAME(nhwc_dw_block)(xp, rowstep, step, sh, dz, F, oh, ow, i, e0, e_len, fv0, 1, part);
        }
}

/* dxp[(p*sh + i0 + ib)*wp*c + (x + q)*sw*c + e0 ..] += sum over f of dz[p, x + q, f] * wt[i0 + ib, f, e0 ..]
 * for q < nq (<= CD_DXQ) positions and ib < ni (<= CD_DXIB) kernel rows, constants after inlining,
 * over CD_DE vectors of offsets e: each weight vector is loaded once (CD_KEEP: not re-read as a
 * memory operand of every FMA) for all the positions. Their windows overlap in dxp: they are added
 * in position order. */
static inline __attribute__((always_inline)) CD_ATTR void
CD_NAME(nhwc_dx_block)(CD_T* dx0, int rowstep, int step, const CD_T* g, const CD_T* wt, int ep, int F,
                       const int nq, int i0, const int ni, int e0) {
    CD_VEC acc[CD_DXQ][CD_DXIB][CD_DE];
    for (int q = 0; q < nq; q++)
        for (int ib = 0; ib < ni; ib++)
            for (int v = 0; v < CD_DE; v++) acc[q][ib][v] = (CD_VEC){0};
    for (int f = 0; f < F; f++) {
        CD_T a[CD_DXQ];
        for (int q = 0; q < nq; q++) a[q] = g[(size_t)q * F + f];
        for (int ib = 0; ib < ni; ib++) {
            const CD_T* wr = wt + ((size_t)(i0 + ib) * F + f) * ep + e0;
            for (int v = 0; v < CD_DE; v++) {
                CD_VEC wv = *(const CD_VEC*)(wr + v * CD_VL);
                CD_KEEP(wv);
                for (int q = 0; q < nq; q++) acc[q][ib][v] += a[q] * wv;
            }
        }
    }
    for (int q = 0; q < nq; q++)
        for (int ib = 0; ib < ni; ib++) {
            CD_T* d = dx0 + (size_t)(i0 + ib) * rowstep + (size_t)q * step + e0;
            for (int v = 0; v < CD_DE; v++) *(CD_VEC*)(d + v * CD_VL) += acc[q][ib][v];
        }
}

/* Input gradient of one image, filters-as-lanes path: dxp (hp, wp, c) and its slack, zeroed by the
 * caller, receives every position's patch gradient dz[p, x, :] @ W^T at its place, in (p, x, i)
 * order:  dxp[(p*sh + i)*wp*c + x*sw*c + e] += sum over f of dz[p, x, f] * W[i, e, f].
 * wt (kh, F, ep) holds W transposed per kernel row with the offsets e zero-padded to ep (a multiple
 * of 32), so the padding lanes add zeros to the next cells. */
static CD_ATTR void
CD_NAME(nhwc_dx)(CD_T* dxp, int wp, int c, int kh, int sh, int sw, const CD_T* dz, const CD_T* wt,
                 int ep, int F, int oh, int ow) {
#define CD_DX(nq, ni) CD_NAME(nhwc_dx_block)(dx0, rowstep, step, g, wt, ep, F, nq, i0, ni, e0)
#define CD_DX_ROWS(nq) do { \
        int i0 = 0; \
        for (; i0 + CD_DXIB <= kh; i0 += CD_DXIB) CD_DX(nq, CD_DXIB); \
        switch (kh - i0) {   /* the last kernel rows, fewer than a block */ \
            case 1: if (CD_DXIB > 1) CD_DX(nq, 1); break; \
            case 2: if (CD_DXIB > 2) CD_DX(nq, 2); break; \
            case 3: if (CD_DXIB > 3) CD_DX(nq, 3); break; \
            case 4: if (CD_DXIB > 4) CD_DX(nq, 4); break; \
            default: break; \
        } } while (0)
    int step = sw * c, rowstep = wp * c;
    for (int p = 0; p < oh; p++)
        for (int x = 0; x < ow; x += CD_DXQ) {
            const CD_T* g = dz + ((size_t)p * ow + x) * F;
            CD_T* dx0 = dxp + (size_t)p * sh * rowstep + (size_t)x * step;
            for (int e0 = 0; e0 < ep; e0 += CD_DE * CD_VL) {
                switch (ow - x < CD_DXQ ? ow - x : CD_DXQ) {   /* positions left in the row */
                    case 1: CD_DX_ROWS(1); break;
                    case 2: if (CD_DXQ >= 2) CD_DX_ROWS(2); break;
                    case 3: if (CD_DXQ >= 3) CD_DX_ROWS(3); break;
                    case 4: if (CD_DXQ >= 4) CD_DX_ROWS(4); break;
                    default: break;
                }
            }
        }
#undef CD_DX_ROWS
#undef CD_DX
}

#undef CD_VL
#undef CD_XB
#undef CD_VEC
