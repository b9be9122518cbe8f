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
 * Summation order: every C[i, j] is one running sum over k in order (a lane of an accumulator),
 * started from C itself (beta = 1), from an initial row (the bias) or from zero, and stored. It
 * does not depend on M, on where row i sits in a call, on the panel width or on the thread count;
 * levels 1 and 2 both fuse multiply and add (identical results), level 0 rounds the product first.
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

/* Run TILE(mr) for the left < PG_MR rows after the whole tiles, mr a constant in each case (the
 * cases past PG_MR - 1 are never taken and compile to nothing). */
#define PG_LAST_ROWS(TILE, left) \
    switch (left) { \
        case 1: if (PG_MR > 1) TILE(1); break;   case 2: if (PG_MR > 2) TILE(2); break; \
        case 3: if (PG_MR > 3) TILE(3); break;   case 4: if (PG_MR > 4) TILE(4); break; \
        case 5: if (PG_MR > 5) TILE(5); break;   case 6: if (PG_MR > 6) TILE(6); break; \
        case 7: if (PG_MR > 7) TILE(7); break;   case 8: if (PG_MR > 8) TILE(8); break; \
        case 9: if (PG_MR > 9) TILE(9); break;   case 10: if (PG_MR > 10) TILE(10); break; \
        case 11: if (PG_MR > 11) TILE(11); break; default: break; \
    }

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

/* Load v (nc <= PW values, zeros past them) as PG_NV vectors; NULL: zeros. */
static inline __attribute__((always_inline)) PG_ATTR void
PG_NAME(load_row)(const PG_T* v, int nc, PG_VEC* out) {
    if (v != NULL && nc == PG_PW) {
        for (int i = 0; i < PG_NV; i++) out[i] = ((const PG_VEC*)v)[i];
        return;
    }
    PG_T buf[PG_PW];
    for (int j = 0; j < PG_PW; j++) buf[j] = (v != NULL && j < nc) ? v[j] : 0;
    for (int i = 0; i < PG_NV; i++) out[i] = *(const PG_VEC*)(buf + i * PG_VL);
}

/* Store the first nc <= PW values of PG_NV vectors to v. */
static inline __attribute__((always_inline)) PG_ATTR void
PG_NAME(store_row)(const PG_VEC* in, int nc, PG_T* v) {
    if (nc == PG_PW) {
        for (int i = 0; i < PG_NV; i++) ((PG_VEC*)v)[i] = in[i];
        return;
    }
    PG_T buf[PG_PW];
    for (int i = 0; i < PG_NV; i++) *(PG_VEC*)(buf + i * PG_VL) = in[i];
    for (int j = 0; j < nc; j++) v[j] = buf[j];
}

/* acc[0:mr] += A[0:mr, 0:K] @ panel, k in order; mr a constant after inlining. */
static inline __attribute__((always_inline)) PG_ATTR void
PG_NAME(tile_sums)(const int mr, int K, const PG_T* A, int lda, const PG_T* panel,
                   PG_VEC acc[PG_MR][PG_NV]) {
    for (int k = 0; k < K; k++) {
        const PG_VEC* b = (const PG_VEC*)(panel + (size_t)k * PG_PW);
        PG_VEC bv[PG_NV];
        for (int v = 0; v < PG_NV; v++) { bv[v] = b[v]; PG_KEEP(bv[v]); }
        for (int r = 0; r < mr; r++) {
            PG_T a = A[(size_t)r * lda + k];
            for (int v = 0; v < PG_NV; v++) acc[r][v] += a * bv[v];
        }
    }
}

/* acc[0:np] += a[0:K] @ the np panels (K rows each), k in order; np a constant after inlining. */
static inline __attribute__((always_inline)) PG_ATTR void
PG_NAME(row_sums)(const int np, int K, const PG_T* a, const PG_T* panels,
                  PG_VEC acc[PG_NP][PG_NV]) {
    for (int k = 0; k < K; k++) {
        PG_T ak = a[k];
        for (int p = 0; p < np; p++) {
            const PG_VEC* b = (const PG_VEC*)(panels + ((size_t)p * K + k) * PG_PW);
            for (int v = 0; v < PG_NV; v++) acc[p][v] += ak * b[v];
        }
    }
}

/* C[0:mr, 0:nc] := (beta ? C : init) + A1[0:mr, 0:K1] @ panel1 + A2[0:mr, 0:K2] @ panel2, one
 * running sum per entry; mr <= PG_MR a constant after inlining; iv: init's vectors (zeros when
 * there is none). */
static inline __attribute__((always_inline)) PG_ATTR void
PG_NAME(tile)(const int mr, int K1, const PG_T* A1, int lda1, const PG_T* panel1, int K2,
              const PG_T* A2, int lda2, const PG_T* panel2, const PG_VEC* iv, int nc, int beta,
              PG_T* C, int ldc) {
    PG_VEC acc[PG_MR][PG_NV];
    for (int r = 0; r < mr; r++) {
        if (beta)
            PG_NAME(load_row)(C + (size_t)r * ldc, nc, acc[r]);
        else
            for (int v = 0; v < PG_NV; v++) acc[r][v] = iv[v];
    }
    PG_NAME(tile_sums)(mr, K1, A1, lda1, panel1, acc);
    PG_NAME(tile_sums)(mr, K2, A2, lda2, panel2, acc);
    for (int r = 0; r < mr; r++) PG_NAME(store_row)(acc[r], nc, C + (size_t)r * ldc);
}

/* One row of C across np <= PG_NP panels, np a constant after inlining: C[0, 0:nc] :=
 * (beta ? C : init) + a1 @ panels1 + a2 @ panels2. A single row (batch 1) has too few accumulators
 * per panel to hide the FMA latency; several panels at once give it PG_NP * PG_NV independent
 * sums, each still in k order. */
static inline __attribute__((always_inline)) PG_ATTR void
PG_NAME(row)(const int np, int K1, const PG_T* a1, const PG_T* panels1, int K2, const PG_T* a2,
             const PG_T* panels2, const PG_T* init, int nc, int beta, PG_T* C) {
    PG_VEC acc[PG_NP][PG_NV];
    const PG_T* start = beta ? C : init;
    for (int p = 0; p < np; p++)
        PG_NAME(load_row)(start == NULL ? NULL : start + p * PG_PW, nc - p * PG_PW, acc[p]);
    PG_NAME(row_sums)(np, K1, a1, panels1, acc);
    PG_NAME(row_sums)(np, K2, a2, panels2, acc);
    PG_T out[PG_NP * PG_PW] = {0};
    for (int p = 0; p < np; p++)
        for (int v = 0; v < PG_NV; v++) *(PG_VEC*)(out + p * PG_PW + v * PG_VL) = acc[p][v];
    for (int j = 0; j < nc; j++) C[j] = out[j];
}

/* C (M x N, row stride ldc) := (beta ? C : init) + A1 @ B1 + A2 @ B2: A1 (M x K1) and A2 (M x K2)
 * with row strides lda1 and lda2, B1 and B2 packed by pack (K1 or K2 may be 0), init a row of N
 * values that every row starts from (NULL: zeros). Each entry is one running sum: its start, then
 * A1's k in order, then A2's; so C := init + A1 @ B1 followed by C := C + A2 @ B2 (beta) gives the
 * same bits as the one call. */
static PG_ATTR void
PG_NAME(gemm)(int M, int N, int K1, const PG_T* A1, int lda1, const PG_T* bp1, int K2,
              const PG_T* A2, int lda2, const PG_T* bp2, const PG_T* init, int beta, PG_T* C,
              int ldc) {
#define PG_TILE(mr) PG_NAME(tile)(mr, K1, A1 + (size_t)i * lda1, lda1, bp1 + (size_t)n0 * K1, K2, A2 + (size_t)i * lda2, lda2, bp2 + (size_t)n0 * K2, iv, nc, beta, C + (size_t)i * ldc + n0, ldc)
#define PG_ROW(np) PG_NAME(row)(np, K1, A1, bp1 + (size_t)n0 * K1, K2, A2, bp2 + (size_t)n0 * K2, init == NULL ? NULL : init + n0, nc, beta, C + n0)
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
        PG_VEC iv[PG_NV];
        PG_NAME(load_row)(init == NULL ? NULL : init + n0, nc, iv);
        int i = 0;
        for (; i + PG_MR <= M; i += PG_MR) PG_TILE(PG_MR);
        PG_LAST_ROWS(PG_TILE, M - i);   /* the last rows, fewer than a tile */
    }
#undef PG_TILE
#undef PG_ROW
}

/* Rows crow[0:mr] (columns n0..n0+nc) := (start ? themselves : 0) + sum over k of
 * ap[k, 0:mr]^T panel[k, :]: ap a packed chunk of A's columns (K x PG_MR), the panel a packed chunk
 * of B (K x PW). The running sums live in C between chunks, stored and reloaded exactly, so a
 * chunked sum is the same chain as an unbroken one. */
static inline __attribute__((always_inline)) PG_ATTR void
PG_NAME(tile_tn)(const int mr, int K, const PG_T* ap, const PG_T* panel, int nc, int start,
                 PG_T* const* crow, int n0) {
    PG_VEC acc[PG_MR][PG_NV];
    for (int r = 0; r < mr; r++) {
        if (start)
            PG_NAME(load_row)(crow[r] + n0, nc, acc[r]);
        else
            for (int v = 0; v < PG_NV; v++) acc[r][v] = (PG_VEC){0};
    }
    for (int k = 0; k < K; k++) {
        const PG_VEC* b = (const PG_VEC*)(panel + (size_t)k * PG_PW);
        const PG_T* a = ap + (size_t)k * PG_MR;
        PG_VEC bv[PG_NV];
        for (int v = 0; v < PG_NV; v++) { bv[v] = b[v]; PG_KEEP(bv[v]); }
        for (int r = 0; r < mr; r++)
            for (int v = 0; v < PG_NV; v++) acc[r][v] += a[r] * bv[v];
    }
    for (int r = 0; r < mr; r++) PG_NAME(store_row)(acc[r], nc, crow[r] + n0);
}

/* gemm_tn's blocking: rows of A and B per chunk, and rows of C per block (a whole number of
 * tiles). The packed chunks, (PG_KC x PG_MR) per tile and (PG_KC x PW), live on the stack and stay
 * in L2/L1. A block holds every row of a recurrent layer's weight gradients (inputs + units + the
 * bias row <= PG_MB) so that B, the largest operand, is read and packed once. */
#define PG_KC 128
#define PG_MB ((192 + PG_MR - 1) / PG_MR * PG_MR)

/* For each segment s, rows of C: seg[s].c (m x N, row stride ldc) := a^T @ B (+ itself when
 * beta), a (K x m, row stride lda) and B (K x N, row stride ldb) as they lie in memory; a NULL
 * `a` stands for a column of ones (m = 1): the row gets B's column sums. The segments' rows are
 * stacked into one A^T so that every block of them shares one pass over B: the weight gradients,
 * sums over all the steps' rows. Each entry is one sum over k in order, continuing from C when
 * beta: (C + a0 b0) + a1 b1 ...; the same whatever segments it is computed with. */
static PG_ATTR void
PG_NAME(gemm_tn)(int nseg, const cydnn_pg_seg* seg, int N, int K, const PG_T* B, int ldb,
                 int beta) {
    PG_T apack[PG_MB * PG_KC] __attribute__((aligned(64)));
    PG_T bpack[PG_KC * PG_PW] __attribute__((aligned(64)));
    PG_T* crow[PG_MB];
    int M = 0;
    for (int s = 0; s < nseg; s++) M += seg[s].m;
    if (K == 0 && !beta) {   /* empty sums */
        for (int s = 0; s < nseg; s++)
            for (int i = 0; i < seg[s].m; i++)
                for (int j = 0; j < N; j++) ((PG_T*)seg[s].c)[(size_t)i * seg[s].ldc + j] = 0;
        return;
    }
#define PG_TILE_TN(mr) PG_NAME(tile_tn)(mr, kc, apack + (size_t)t * PG_KC * PG_MR, bpack, nc, start, crow + t * PG_MR, n0)
    for (int m0 = 0; m0 < M; m0 += PG_MB) {
        int mb = M - m0 < PG_MB ? M - m0 : PG_MB;
        /* the block's rows of C, and the ones rows of the packed A (the same in every chunk) */
        for (int s = 0, g0 = 0; s < nseg; g0 += seg[s].m, s++) {
            int i0 = g0 > m0 ? g0 : m0, i1 = g0 + seg[s].m < m0 + mb ? g0 + seg[s].m : m0 + mb;
            for (int i = i0; i < i1; i++) {
                crow[i - m0] = (PG_T*)seg[s].c + (size_t)(i - g0) * seg[s].ldc;
                if (seg[s].a == NULL)
                    for (int k = 0; k < PG_KC; k++)
                        apack[((size_t)((i - m0) / PG_MR) * PG_KC + k) * PG_MR + (i - m0) % PG_MR] = 1;
            }
        }
        for (int k0 = 0; k0 < K; k0 += PG_KC) {
            int kc = K - k0 < PG_KC ? K - k0 : PG_KC;
            int start = beta || k0 > 0;
            for (int s = 0, g0 = 0; s < nseg; g0 += seg[s].m, s++) {   /* pack A's chunk */
                int i0 = g0 > m0 ? g0 : m0, i1 = g0 + seg[s].m < m0 + mb ? g0 + seg[s].m : m0 + mb;
                if (seg[s].a == NULL || i1 <= i0) continue;
                for (int k = 0; k < kc; k++) {
                    const PG_T* src = (const PG_T*)seg[s].a + (size_t)(k0 + k) * seg[s].lda + (i0 - g0);
                    for (int li = i0 - m0; li < i1 - m0;) {   /* runs up to the next tile's start */
                        int t = li / PG_MR, r = li - t * PG_MR;
                        int n = i1 - m0 - li < PG_MR - r ? i1 - m0 - li : PG_MR - r;
                        PG_T* dst = apack + ((size_t)t * PG_KC + k) * PG_MR + r;
                        if (n == PG_MR) memcpy(dst, src, PG_MR * sizeof(PG_T));
                        else for (int j = 0; j < n; j++) dst[j] = src[j];
                        src += n;
                        li += n;
                    }
                }
            }
            for (int n0 = 0; n0 < N; n0 += PG_PW) {
                int nc = N - n0 < PG_PW ? N - n0 : PG_PW;
                for (int k = 0; k < kc; k++) {   /* pack B's chunk, zeros past the last column */
                    const PG_T* src = B + (size_t)(k0 + k) * ldb + n0;
                    PG_T* dst = bpack + (size_t)k * PG_PW;
                    if (nc == PG_PW) {
                        for (int v = 0; v < PG_NV; v++) ((PG_VEC*)dst)[v] = ((const PG_VEC*)src)[v];
                    } else {
                        for (int j = 0; j < nc; j++) dst[j] = src[j];
                        for (int j = nc; j < PG_PW; j++) dst[j] = 0;
                    }
                }
                int t = 0;
                for (; (t + 1) * PG_MR <= mb; t++) PG_TILE_TN(PG_MR);
                PG_LAST_ROWS(PG_TILE_TN, mb - t * PG_MR);   /* the last rows, fewer than a tile */
            }
        }
    }
#undef PG_TILE_TN
}

#undef PG_VL
#undef PG_LAST_ROWS
#undef PG_PW
#undef PG_KC
#undef PG_MB
#undef PG_VEC
