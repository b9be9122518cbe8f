/* Packed-panel GEMM for the recurrent steps, included by _packed_gemm.h once per element type and
 * SIMD level. The includer defines
 *   PG_T       element type (float or double)
 *   PG_VBYTES  vector width in bytes (16: SSE2 / NEON; 32: AVX2; 64: AVX-512)
 *   PG_NAME(x) the name of this instance of x
 *   PG_ATTR    function attributes (a target("...") for the wider levels, or nothing)
 *   PG_NV      vectors per panel (a panel is PG_NV * lanes columns of B)
 *   PG_MR      rows of C per tile (PG_MR * PG_NV accumulators stay in registers)
 *   PG_NP      panels per tile of a single-row product (<= 4; PG_NP * PG_NV accumulators)
 *
 * B (K x N) is packed once into panels of PW columns, each panel K rows of PW contiguous values
 * (the last panel zero-padded), so that a tile of C reads its panel as one forward stream that
 * stays in L1 across the tiles of a panel. The recurrent kernel is packed once per sequence and
 * used by every step, where a BLAS call would re-pack it in every step.
 *
 * Summation order: every C[i, j] is one running sum over k = 0..K-1 in order (a lane of an
 * accumulator), started at zero and then added to C (beta = 1) or stored (beta = 0). It does not
 * depend on M, on where row i sits in a call, on the panel width or on the thread count; levels
 * 1 and 2 both fuse multiply and add (identical results), level 0 rounds the product first.
 */
#define PG_VL (PG_VBYTES / (int)sizeof(PG_T))     /* lanes per vector */
#define PG_PW (PG_NV * PG_VL)                      /* columns per panel */
#define PG_VEC PG_NAME(vec)

typedef PG_T PG_VEC __attribute__((vector_size(PG_VBYTES), aligned(sizeof(PG_T)), may_alias));

#ifndef PG_KEEP
#if defined(__x86_64__) && defined(__GNUC__)
/* Keep a loaded vector in a register: GCC otherwise re-reads it as a memory operand of each FMA. */
#define PG_KEEP(v) __asm__("" : "+v"(v))
#else
#define PG_KEEP(v) ((void)0)
#endif
#endif

/* Columns per panel at this level. */
static int PG_NAME(panel)(void) { return PG_PW; }

/* Bp := B (K x N) in panels; B[k, n] = src[k * ld + n], or src[n * ld + k] when trans. */
static PG_ATTR void
PG_NAME(pack)(int K, int N, const PG_T* src, int ld, int trans, PG_T* bp) {
    for (int n0 = 0; n0 < N; n0 += PG_PW) {
        int nc = N - n0 < PG_PW ? N - n0 : PG_PW;
        PG_T* dst = bp + (size_t)n0 * K;
        for (int k = 0; k < K; k++) {
            PG_T* d = dst + (size_t)k * PG_PW;
            if (trans)
                for (int j = 0; j < nc; j++) d[j] = src[(size_t)(n0 + j) * ld + k];
            else
                for (int j = 0; j < nc; j++) d[j] = src[(size_t)k * ld + n0 + j];
            for (int j = nc; j < PG_PW; j++) d[j] = 0;
        }
    }
}

/* C[0:mr, 0:nc] (+)= A[0:mr, :] @ panel, mr <= PG_MR a constant after inlining. */
static inline __attribute__((always_inline)) PG_ATTR void
PG_NAME(tile)(const int mr, int K, const PG_T* A, int lda, const PG_T* panel, int nc, int beta,
              PG_T* C, int ldc) {
    PG_VEC acc[PG_MR][PG_NV];
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < PG_NV; v++) acc[r][v] = (PG_VEC){0};
    for (int k = 0; k < K; k++) {
        const PG_VEC* b = (const PG_VEC*)(panel + (size_t)k * PG_PW);
        PG_VEC bv[PG_NV];
        for (int v = 0; v < PG_NV; v++) { bv[v] = b[v]; PG_KEEP(bv[v]); }
        for (int r = 0; r < mr; r++) {
            PG_T a = A[(size_t)r * lda + k];
            for (int v = 0; v < PG_NV; v++) acc[r][v] += a * bv[v];
        }
    }
    if (nc == PG_PW) {
        for (int r = 0; r < mr; r++) {
            PG_VEC* c = (PG_VEC*)(C + (size_t)r * ldc);
            if (beta)
                for (int v = 0; v < PG_NV; v++) c[v] += acc[r][v];
            else
                for (int v = 0; v < PG_NV; v++) c[v] = acc[r][v];
        }
    } else {   /* the last panel's real columns only */
        PG_T out[PG_PW];
        for (int r = 0; r < mr; r++) {
            for (int v = 0; v < PG_NV; v++) *(PG_VEC*)(out + v * PG_VL) = acc[r][v];
            PG_T* c = C + (size_t)r * ldc;
            for (int j = 0; j < nc; j++) c[j] = beta ? c[j] + out[j] : out[j];
        }
    }
}

/* One row of C across np <= PG_NP panels, np a constant after inlining: C[0, 0:nc] (+)= a @ those
 * panels. A single row (batch 1) has too few accumulators per panel to hide the FMA latency;
 * several panels at once give it PG_NP * PG_NV independent sums, each still in k order. */
static inline __attribute__((always_inline)) PG_ATTR void
PG_NAME(row)(const int np, int K, const PG_T* a, const PG_T* panels, int nc, int beta, PG_T* C) {
    PG_VEC acc[PG_NP][PG_NV];
    for (int p = 0; p < np; p++)
        for (int v = 0; v < PG_NV; v++) acc[p][v] = (PG_VEC){0};
    for (int k = 0; k < K; k++) {
        PG_T ak = a[k];
        for (int p = 0; p < np; p++) {
            const PG_VEC* b = (const PG_VEC*)(panels + ((size_t)p * K + k) * PG_PW);
            for (int v = 0; v < PG_NV; v++) acc[p][v] += ak * b[v];
        }
    }
    PG_T out[PG_NP * PG_PW] = {0};
    for (int p = 0; p < np; p++)
        for (int v = 0; v < PG_NV; v++) *(PG_VEC*)(out + p * PG_PW + v * PG_VL) = acc[p][v];
    for (int j = 0; j < nc; j++) C[j] = beta ? C[j] + out[j] : out[j];
}

/* C (M x N, row stride ldc) := A (M x K, row stride lda) @ B + (beta ? C : 0), Bp packed by pack. */
static PG_ATTR void
PG_NAME(gemm)(int M, int N, int K, const PG_T* A, int lda, const PG_T* bp, int beta, PG_T* C,
              int ldc) {
#define PG_TILE(mr) PG_NAME(tile)(mr, K, A + (size_t)i * lda, lda, panel, nc, beta, C + (size_t)i * ldc + n0, ldc)
#define PG_ROW(np) PG_NAME(row)(np, K, A, bp + (size_t)n0 * K, nc, beta, C + n0)
    if (M == 1) {
        for (int n0 = 0; n0 < N;) {
            int np = (N - n0 + PG_PW - 1) / PG_PW;   /* panels left, at most a group */
            if (np > PG_NP) np = PG_NP;
            int nc = N - n0 < np * PG_PW ? N - n0 : np * PG_PW;
            switch (np) {
                case 1: PG_ROW(1); break;
                case 2: if (PG_NP >= 2) PG_ROW(2); break;
                case 3: if (PG_NP >= 3) PG_ROW(3); break;
                case 4: if (PG_NP >= 4) PG_ROW(4); break;
                default: break;
            }
            n0 += np * PG_PW;
        }
        return;
    }
    for (int n0 = 0; n0 < N; n0 += PG_PW) {
        int nc = N - n0 < PG_PW ? N - n0 : PG_PW;
        const PG_T* panel = bp + (size_t)n0 * K;
        int i = 0;
        for (; i + PG_MR <= M; i += PG_MR) PG_TILE(PG_MR);
        switch (M - i) {   /* the last rows, fewer than a tile */
            case 1: if (PG_MR > 1) PG_TILE(1); break;
            case 2: if (PG_MR > 2) PG_TILE(2); break;
            case 3: if (PG_MR > 3) PG_TILE(3); break;
            case 4: if (PG_MR > 4) PG_TILE(4); break;
            case 5: if (PG_MR > 5) PG_TILE(5); break;
            case 6: if (PG_MR > 6) PG_TILE(6); break;
            case 7: if (PG_MR > 7) PG_TILE(7); break;
            case 8: if (PG_MR > 8) PG_TILE(8); break;
            case 9: if (PG_MR > 9) PG_TILE(9); break;
            case 10: if (PG_MR > 10) PG_TILE(10); break;
            case 11: if (PG_MR > 11) PG_TILE(11); break;
            default: break;
        }
    }
#undef PG_TILE
#undef PG_ROW
}

#undef PG_VL
#undef PG_PW
#undef PG_VEC
