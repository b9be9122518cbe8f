# Recurrent layers (SimpleRNN, LSTM, GRU): whole-sequence forward and backpropagation through time.
#
# Layout. The layer's input is (batch, time, features). Inside, every per-step array is time-major,
# (steps, batch, width), in *processing* order (step s reads input time t = T-1-s when going
# backwards), so the rows one step touches are contiguous and "h_{s-1} for every s" is one matrix:
#   xt  (T, batch, in)     the inputs in processing order (times the dropout multipliers)
#   z   (T, batch, G*u)    gate pre-activations, G = 1 (SimpleRNN), 4 (LSTM i,f,c,o), 3 (GRU z,r,h)
#   a   (T, batch, G*u)    gate activations (LSTM, GRU)
#   hs  (T+1, batch, u)    hs[0] = initial h, hs[s+1] = h after step s (cs likewise for the LSTM cell)
#
# Forward: (1) copy x into xt and project every step at once, z = xt @ kernel + bias, in blocks of
# (T*batch) rows; (2) the recurrence, parallel over the batch: the batch is cut into one block of
# rows per thread, each block runs the whole sequence (rows never interact), and per step
# z[s] += h_{s-1} @ recurrent_kernel followed by the fused gate kernel.
# Backward: (1) per block of rows, steps T-1..0: fused gate gradients dz[s], then
# dh_{s-1} = dz[s] @ recurrent_kernel^T; (2) the weight gradients, one product over all steps
# each, dkernel = xt^T @ dz and drecurrent = hs[0:T]^T @ dz (threads split the columns), the bias
# gradient a column sum in fixed row order, and dx = dz @ kernel^T per row block (BLAS).
# The products run the kernels of _packed_gemm.h (AVX-512, AVX2 or portable, picked at import):
# the kernel and the recurrent kernel (or its transpose) are packed once per call into the
# caller's scratch and read by every block and step; the weight gradients pack chunks of both
# operands as they go.
#
# Thread-count independence. Every entry of those products is one sum over k in order, wherever
# its row or column sits, so their blocks may follow the thread count. OpenBLAS, which runs dx,
# rounds a row of C differently depending on where it sits in a call (edge tiles; different
# between its Haswell and SkylakeX kernels), so dx's blocks are fixed by the shape alone
# (_blas.fixed_blocks, as in dense.pyx) and threads take whole blocks. Every sum written here runs
# in a fixed order: results do not depend on the thread count.
#
# Masking: mask[b, t] = 0 skips the step for that row: state carried (h, c unchanged) and, as in
# Keras, the output is the previous output (zeros before the first unmasked step), or zeros when
# zero_output_for_mask (Bidirectional with return_sequences).
#
# float32 with the default activations (sigmoid gates, tanh) runs vectorised C kernels (below,
# compiled for AVX-512, AVX2 and baseline x86-64 and picked at load time) on the float32
# exp/sigmoid/tanh of _fastmath.h (errors ~1e-7); every other case runs the generic path with the
# activation code of _activation.pxd in double precision (float64 gradient checks go through it).
from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.string cimport memcpy, memset
from _blas cimport gemm, block_start, threads_for_work, fixed_blocks, GEMM_GRAIN
from _activation cimport act_forward, act_derivative, SIGMOID, TANH

cdef extern from *:
    """
    #include <math.h>
    #include <string.h>
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
    #define CYDNN_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
    #else
    #define CYDNN_CLONES
    #endif

    /* The cell kernels below are branch-free loops over a row's units so gcc vectorises them
       (float selects if-convert because setup.py builds with -fno-trapping-math). */
    #include "_fastmath.h"   /* cydnn_fast_expf, cydnn_fast_sigmoidf, cydnn_fast_tanhf */

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

    /* Inside a parallel region: wait for the whole team; the team's size (1 without OpenMP). */
    #ifdef _OPENMP
    #include <omp.h>
    static void cydnn_team_barrier(void) { _Pragma("omp barrier") }
    static int cydnn_team_size(void) { return omp_get_num_threads(); }
    #else
    static void cydnn_team_barrier(void) {}
    static int cydnn_team_size(void) { return 1; }
    #endif

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

    /* GRU step (reset_after) on one row: zx (3u) holds x @ kernel + input bias and becomes the
       pre-activations; rec (3u) = h_prev @ recurrent_kernel; brec (3u) recurrent bias.
       zg = sigmoid, r = sigmoid, hh = tanh(x_h + r * (rec_h + brec_h)); h = zg * hp + (1-zg) * hh. */
    static inline void cydnn_gru_forward_row_f(int u, float* restrict xz, float* restrict xr,
            float* restrict xh, const float* restrict qz, const float* restrict qr,
            const float* restrict qh, const float* restrict bz, const float* restrict br,
            const float* restrict bh, float* restrict az, float* restrict ar, float* restrict ah,
            float* restrict rh, const float* restrict hp, float* restrict h) {
        for (int j = 0; j < u; j++) {
            float pz = xz[j] + qz[j] + bz[j];
            float pr = xr[j] + qr[j] + br[j];
            float zg = cydnn_fast_sigmoidf(pz), rg = cydnn_fast_sigmoidf(pr);
            float rhv = qh[j] + bh[j];
            float ph = xh[j] + rg * rhv;
            float hh = cydnn_fast_tanhf(ph);
            xz[j] = pz; xr[j] = pr; xh[j] = ph;
            az[j] = zg; ar[j] = rg; ah[j] = hh;
            rh[j] = rhv;
            h[j] = zg * hp[j] + (1.0f - zg) * hh;
        }
    }

    CYDNN_CLONES static void cydnn_gru_forward_rows_f(int nr, int u, float* z, const float* rec,
            const float* brec, float* a, float* rh, const float* hp, float* h) {
        for (int r = 0; r < nr; r++) {
            float* zr = z + (size_t)r * 3 * u;
            float* ar = a + (size_t)r * 3 * u;
            const float* qr = rec + (size_t)r * 3 * u;
            size_t o = (size_t)r * u;
            cydnn_gru_forward_row_f(u, zr, zr + u, zr + 2 * u, qr, qr + u, qr + 2 * u, brec,
                                    brec + u, brec + 2 * u, ar, ar + u, ar + 2 * u, rh + o, hp + o,
                                    h + o);
        }
    }

    /* GRU gate gradients for one row: g = dL/dh. dr (3u) := dL/d(h_prev @ U + brec);
       dxh (u) := dL/d(x_h + input bias h); dhp (u) := the direct part g * zg of dL/dh_prev. */
    static inline void cydnn_gru_backward_gates_f(int u, const float* restrict az,
            const float* restrict ar, const float* restrict ah, const float* restrict rh,
            const float* restrict hp, const float* restrict g, float* restrict drz,
            float* restrict drr, float* restrict drh, float* restrict dxh, float* restrict dhp) {
        for (int j = 0; j < u; j++) {
            float zg = az[j], rg = ar[j], hh = ah[j];
            float dph = g[j] * (1.0f - zg) * (1.0f - hh * hh);  /* candidate pre-activation */
            drz[j] = g[j] * (hp[j] - hh) * zg * (1.0f - zg);    /* update gate */
            drr[j] = dph * rh[j] * rg * (1.0f - rg);            /* reset gate */
            drh[j] = dph * rg;                                  /* recurrent part of the candidate */
            dxh[j] = dph;                                       /* input part of the candidate */
            dhp[j] = g[j] * zg;                                 /* h_prev through the update gate */
        }
    }

    CYDNN_CLONES static void cydnn_gru_backward_row_f(int u, const float* a, const float* rh,
            const float* hp, const float* g, float* dr, float* dxh, float* dhp) {
        cydnn_gru_backward_gates_f(u, a, a + u, a + 2 * u, rh, hp, g, dr, dr + u, dr + 2 * u, dxh,
                                   dhp);
    }

    /* SimpleRNN step (tanh) on n values: h := tanh(z). */
    CYDNN_CLONES static void cydnn_tanh_forward_f(int n, const float* restrict z, float* restrict h) {
        for (int j = 0; j < n; j++) h[j] = cydnn_fast_tanhf(z[j]);
    }

    /* SimpleRNN gate gradient (tanh) on n values: dz := g * (1 - h^2). */
    CYDNN_CLONES static void cydnn_tanh_backward_f(int n, const float* restrict h,
            const float* restrict g, float* restrict dz) {
        for (int j = 0; j < n; j++) dz[j] = g[j] * (1.0f - h[j] * h[j]);
    }

    /* GRU with reset_before (Keras reset_after=False), in two passes around the second GEMM.
       Gates on one row: xz, xr (x @ kernel + bias) become the pre-activations with qz, qr
       (h_prev @ recurrent_kernel); a := (zg, r); rhp := r * h_prev, the candidate's GEMM operand. */
    static inline void cydnn_gru_rb_gates_row_f(int u, float* restrict xz, float* restrict xr,
            const float* restrict qz, const float* restrict qr, float* restrict az,
            float* restrict ar, const float* restrict hp, float* restrict rhp) {
        for (int j = 0; j < u; j++) {
            float pz = xz[j] + qz[j], pr = xr[j] + qr[j];
            float zg = cydnn_fast_sigmoidf(pz), rg = cydnn_fast_sigmoidf(pr);
            xz[j] = pz; xr[j] = pr; az[j] = zg; ar[j] = rg;
            rhp[j] = rg * hp[j];
        }
    }

    CYDNN_CLONES static void cydnn_gru_rb_gates_rows_f(int nr, int u, float* z, const float* rec,
            float* a, const float* hp, float* rhp) {
        for (int r = 0; r < nr; r++) {
            size_t o3 = (size_t)r * 3 * u, o = (size_t)r * u;
            cydnn_gru_rb_gates_row_f(u, z + o3, z + o3 + u, rec + o3, rec + o3 + u, a + o3,
                                     a + o3 + u, hp + o, rhp + o);
        }
    }

    /* Candidate on one row: xh += qh ((r * h_prev) @ U_h) is the pre-activation; hh = tanh;
       h = zg * hp + (1 - zg) * hh. */
    static inline void cydnn_gru_rb_candidate_row_f(int u, float* restrict xh,
            const float* restrict qh, const float* restrict az, float* restrict ah,
            const float* restrict hp, float* restrict h) {
        for (int j = 0; j < u; j++) {
            float ph = xh[j] + qh[j];
            float hh = cydnn_fast_tanhf(ph);
            xh[j] = ph; ah[j] = hh;
            h[j] = az[j] * hp[j] + (1.0f - az[j]) * hh;
        }
    }

    CYDNN_CLONES static void cydnn_gru_rb_candidate_rows_f(int nr, int u, float* z,
            const float* rec, float* a, const float* hp, float* h) {
        for (int r = 0; r < nr; r++) {
            size_t o3 = (size_t)r * 3 * u, o = (size_t)r * u;
            cydnn_gru_rb_candidate_row_f(u, z + o3 + 2 * u, rec + o3 + 2 * u, a + o3,
                                         a + o3 + 2 * u, hp + o, h + o);
        }
    }

    /* Backward, first pass on one row (g = dL/dh): the update gate's and the candidate's
       pre-activation gradients; dh := g * zg, the direct part of dL/dh_prev. */
    static inline void cydnn_gru_rb_backward1_row_f(int u, const float* restrict az,
            const float* restrict ah, const float* restrict hp, const float* restrict g,
            float* restrict dzz, float* restrict dzh, float* restrict dh) {
        for (int j = 0; j < u; j++) {
            float zg = az[j], hh = ah[j];
            dzz[j] = g[j] * (hp[j] - hh) * zg * (1.0f - zg);    /* update gate */
            dzh[j] = g[j] * (1.0f - zg) * (1.0f - hh * hh);    /* candidate */
            dh[j] = g[j] * zg;                                 /* h_prev through the update gate */
        }
    }

    CYDNN_CLONES static void cydnn_gru_rb_backward1_f(int u, const float* a, const float* hp,
            const float* g, float* dz, float* dh) {
        cydnn_gru_rb_backward1_row_f(u, a, a + 2 * u, hp, g, dz, dz + 2 * u, dh);
    }

    /* Backward, second pass on one row: drhp = dL/d(r * h_prev) from the candidate's GEMM;
       the reset gate's pre-activation gradient, and dh += drhp * r (h_prev through r * h_prev). */
    CYDNN_CLONES static void cydnn_gru_rb_backward2_f(int u, const float* restrict ar,
            const float* restrict hp, const float* restrict drhp, float* restrict dzr,
            float* restrict dh) {
        for (int j = 0; j < u; j++) {
            float rg = ar[j];
            dzr[j] = drhp[j] * hp[j] * rg * (1.0f - rg);        /* reset gate */
            dh[j] += drhp[j] * rg;
        }
    }

    """
    void lstm_forward_rows_f "cydnn_lstm_forward_rows_f"(int nr, int u, int j0, int j1,
        const float* z, float* a, const float* cp, float* c, float* t, float* h) noexcept nogil
    void team_barrier "cydnn_team_barrier"() noexcept nogil
    int team_size "cydnn_team_size"() noexcept nogil
    void lstm_backward_row_f "cydnn_lstm_backward_row_f"(int u, const float* a, const float* cp,
        const float* t, const float* g, float* dc, float* dz) noexcept nogil
    void gru_forward_rows_f "cydnn_gru_forward_rows_f"(int nr, int u, float* z, const float* rec,
        const float* brec, float* a, float* rh, const float* hp, float* h) noexcept nogil
    void gru_backward_row_f "cydnn_gru_backward_row_f"(int u, const float* a, const float* rh,
        const float* hp, const float* g, float* dr, float* dxh, float* dhp) noexcept nogil
    void tanh_forward_f "cydnn_tanh_forward_f"(int n, const float* z, float* h) noexcept nogil
    void tanh_backward_f "cydnn_tanh_backward_f"(int n, const float* h, const float* g,
        float* dz) noexcept nogil
    void gru_rb_gates_rows_f "cydnn_gru_rb_gates_rows_f"(int nr, int u, float* z, const float* rec,
        float* a, const float* hp, float* rhp) noexcept nogil
    void gru_rb_candidate_rows_f "cydnn_gru_rb_candidate_rows_f"(int nr, int u, float* z,
        const float* rec, float* a, const float* hp, float* h) noexcept nogil
    void gru_rb_backward1_f "cydnn_gru_rb_backward1_f"(int u, const float* a, const float* hp,
        const float* g, float* dz, float* dh) noexcept nogil
    void gru_rb_backward2_f "cydnn_gru_rb_backward2_f"(int u, const float* ar, const float* hp,
        const float* drhp, float* dzr, float* dh) noexcept nogil
    float expf_approx "cydnn_fast_expf"(float x) noexcept nogil
    float tanhf_approx "cydnn_fast_tanhf"(float x) noexcept nogil


cdef extern from "_packed_gemm.h":
    enum: CYDNN_PG_ALIGN
    size_t pg_packed_size "cydnn_pg_packed_size"(int K, int N) noexcept nogil
    void* pg_align "cydnn_pg_align"(void* p) noexcept nogil
    int pg_set_level "cydnn_pg_set_level"(int level) noexcept nogil
    void pg_pack_f "cydnn_pg_pack_f"(int K, int N, const float* src, int ld, int trans,
                                     float* bp) noexcept nogil
    void pg_pack_d "cydnn_pg_pack_d"(int K, int N, const double* src, int ld, int trans,
                                     double* bp) noexcept nogil
    void pg_gemm_f "cydnn_pg_gemm_f"(int M, int N, int K1, const float* A1, int lda1,
                                     const float* bp1, int K2, const float* A2, int lda2,
                                     const float* bp2, const float* init, int beta, float* C,
                                     int ldc) noexcept nogil
    void pg_gemm_d "cydnn_pg_gemm_d"(int M, int N, int K1, const double* A1, int lda1,
                                     const double* bp1, int K2, const double* A2, int lda2,
                                     const double* bp2, const double* init, int beta, double* C,
                                     int ldc) noexcept nogil
    ctypedef struct pg_seg "cydnn_pg_seg":
        const void* a
        int lda
        int m
        void* c
        int ldc
    void pg_gemm_tn_f "cydnn_pg_gemm_tn_f"(int nseg, const pg_seg* seg, int N, int K,
                                           const float* B, int ldb, int beta) noexcept nogil
    void pg_gemm_tn_d "cydnn_pg_gemm_tn_d"(int nseg, const pg_seg* seg, int N, int K,
                                           const double* B, int ldb, int beta) noexcept nogil

pg_set_level(-1)   # the widest SIMD level this CPU runs


cdef enum:
    # Block sizes (see "Thread-count independence"): blocks are cut from the shape alone
    # (_blas.fixed_blocks, about this many rows each), never from the thread count.
    PROJ_ROW_BLOCK = 256   # (T*batch) rows per GEMM of the input projection and of dx
    # From this batch on, the LSTM and SimpleRNN fold the input projection into each step's
    # product (one pass over [x_s | h] against [kernel; rkernel], no z written then read back);
    # below it, with few rows to share each kernel panel, projecting all steps up front reads the
    # kernel once. Both give the same bits (step_product), so this only moves time.
    FOLD_MIN_BATCH = 4

fold_min_batch = FOLD_MIN_BATCH   # for tests


def fast_tanh(floating x):
    """The float32 tanh of the vectorised kernels (_fastmath.h; for tests)."""
    return tanhf_approx(<float>x)


def fast_exp(floating x):
    """The float32 exp of the vectorised kernels (_fastmath.h; for tests)."""
    return expf_approx(<float>x)


# ------------------------------------------------------------------------------------ helpers
cdef inline bint step_on(const unsigned char* mask, int T, int b, int t) noexcept nogil:
    """Is input time t of row b a real step (no mask: always)?"""
    return mask == NULL or mask[<Py_ssize_t>b * T + t] != 0


cdef inline int input_time(int s, int T, bint reverse) noexcept nogil:
    return T - 1 - s if reverse else s


cdef void project_inputs(const floating* x, int batch, int T, int nin, const floating* keep,
                         bint reverse, const floating* kernel, int width, const floating* bias,
                         floating* xt, floating* z, int r0, int r1) noexcept nogil:
    """Rows r0..r1 of the time-major (T*batch) matrices: xt := x (in processing order, times the
    dropout multipliers); z := bias + xt @ kernel (bias may be NULL; kernel packed by pack_operand;
    kernel NULL: xt only, the cells that fold the projection into each step's product)."""
    cdef int r, s, b, j
    cdef const floating* src
    cdef floating* dst
    for r in range(r0, r1):
        s = r // batch
        b = r - s * batch
        src = x + (<Py_ssize_t>b * T + input_time(s, T, reverse)) * nin
        dst = xt + <Py_ssize_t>r * nin
        if keep == NULL:
            memcpy(dst, src, nin * sizeof(floating))
        else:
            for j in range(nin):
                dst[j] = src[j] * keep[<Py_ssize_t>b * nin + j]
    if kernel != NULL:
        step_product(xt + <Py_ssize_t>r0 * nin, nin, kernel, nin, NULL, 0, NULL, 0, bias,
                     z + <Py_ssize_t>r0 * width, width, r1 - r0, width, False)


cdef void project_all_inputs(const floating* x, int batch, int T, int nin, const floating* keep,
                             bint reverse, const floating* kernel, int width, const floating* bias,
                             floating* xt, floating* z, int n_threads) noexcept nogil:
    """The input projection of every time step, in blocks of (T*batch) rows fixed by the shape:
    xt := x in processing order (times dropout multipliers); z := bias + xt @ kernel (none when
    kernel is NULL)."""
    cdef int rows = T * batch, t, r0, r1
    cdef int nb = fixed_blocks(rows, PROJ_ROW_BLOCK)
    cdef int nt = threads_for_work(<long long>rows * nin * width, GEMM_GRAIN, nb, n_threads)
    for t in prange(nb, schedule="static", num_threads=nt):
        r0 = block_start(rows, nb, t)
        r1 = block_start(rows, nb, t + 1)
        if r1 > r0:
            project_inputs(x, batch, T, nin, keep, reverse, kernel, width, bias, xt, z, r0, r1)


cdef floating* reserve_packed(floating[::1] scratch, Py_ssize_t* used, int K, int N) except NULL:
    """Room for a packed K x N matrix in scratch after the first used[0] values (the packed
    matrices start aligned; used[0] advances)."""
    cdef floating* base = <floating*>pg_align(&scratch[0])
    cdef Py_ssize_t start = (base - &scratch[0]) + used[0]
    cdef Py_ssize_t need = <Py_ssize_t>pg_packed_size(K, N)
    if start + need > scratch.shape[0]:
        raise ValueError(f"recurrent kernels: the packing scratch holds {scratch.shape[0]} values, "
                         f"needs at least {start + need} (use packed_scratch_size)")
    used[0] += need
    return base + used[0] - need


cdef inline void pack_into(int K, int N, const floating* src, int ld, bint trans,
                           floating* bp) noexcept nogil:
    """bp := B (K x N) packed in panels: src (row stride ld), or its transpose when trans. Columns
    c0.. of a packed matrix start at bp + c0 * K when c0 is a whole number of panels (32)."""
    if floating is float:
        pg_pack_f(K, N, src, ld, trans, bp)
    else:
        pg_pack_d(K, N, src, ld, trans, bp)


cdef floating* pack_operand(floating[::1] scratch, Py_ssize_t* used, int K, int N,
                            const floating* src, int ld, bint trans) except NULL:
    """Pack B (K x N): src (row stride ld), or its transpose when trans, into scratch after the
    first used[0] values (reserve_packed); returns where."""
    cdef floating* bp = reserve_packed(scratch, used, K, N)
    pack_into(K, N, src, ld, trans, bp)
    return bp


cdef inline void packed_matmul(const floating* a, int lda, const floating* bp, floating* out,
                               int ldc, int nr, int K, int N, bint accumulate) noexcept nogil:
    """out (nr x N, row stride ldc) := a (nr x K, row stride lda) @ B (+ out when accumulate),
    B packed by pack_operand: the per-step product of every cell."""
    if floating is float:
        pg_gemm_f(nr, N, K, a, lda, bp, 0, NULL, 0, NULL, NULL, accumulate, out, ldc)
    else:
        pg_gemm_d(nr, N, K, a, lda, bp, 0, NULL, 0, NULL, NULL, accumulate, out, ldc)


cdef inline void step_product(const floating* x, int ldx, const floating* kp, int nin,
                              const floating* h, int ldh, const floating* rkp, int u,
                              const floating* bias, floating* out, int ldc, int nr, int N,
                              bint accumulate) noexcept nogil:
    """out (nr x N) := (out if accumulate else bias) + x @ kernel + h @ rkernel in one pass (the
    kernels packed by pack_operand; bias may be NULL, nin or u may be 0): a step's
    pre-activations, one running sum per entry in that order, so projecting the inputs first
    (u = 0) then adding the recurrent part (nin = 0, accumulate) gives the same bits."""
    if floating is float:
        pg_gemm_f(nr, N, nin, x, ldx, kp, u, h, ldh, rkp, bias, accumulate, out, ldc)
    else:
        pg_gemm_d(nr, N, nin, x, ldx, kp, u, h, ldh, rkp, bias, accumulate, out, ldc)


cdef inline void matmul_tn(int nseg, const pg_seg* seg, int N, int K, const floating* b, int ldb,
                           bint accumulate) noexcept nogil:
    """For each segment: seg.c (seg.m x N) := seg.a^T @ b (+ seg.c when accumulate), seg.a (K x m)
    and b (K x N) as they lie, or b's column sums where seg.a is NULL: the weight and bias
    gradients in one pass over b, one fixed-order sum over all the steps' rows per entry."""
    if floating is float:
        pg_gemm_tn_f(nseg, seg, N, K, b, ldb, accumulate)
    else:
        pg_gemm_tn_d(nseg, seg, N, K, b, ldb, accumulate)


cdef inline int add_seg(pg_seg* seg, int n, const void* a, int lda, int m, void* c, int ldc) noexcept nogil:
    """seg[n] := (a, lda, m, c, ldc) when c is not NULL; returns the segments now in use."""
    if c == NULL:
        return n
    seg[n].a = a
    seg[n].lda = lda
    seg[n].m = m
    seg[n].c = c
    seg[n].ldc = ldc
    return n + 1


cdef int step_threads(int T, int batch, int u, int width, int n_threads) noexcept nogil:
    """Threads for the recurrence, each taking one block of batch rows through all the steps.
    Every entry of a per-step product is one fixed-order sum whatever block its row is in, so the
    blocks follow the thread count (one block per thread)."""
    return threads_for_work(<long long>T * batch * u * width, GEMM_GRAIN, batch, n_threads)


def packed_scratch_size(int nin, int u, int width):
    """Values of the scratch array every cell's forward and backward pass packs its kernels into,
    plus the alignment slack. Forward: the kernel (nin x width), then the recurrent kernel
    (u x width) or (GRU with reset_before) two column slices of it. Backward: the recurrent
    kernel's transpose (or its two slices), then the kernel's transpose (width x nin, for dx; the
    GRU packs it as two row ranges, the same size)."""
    cdef size_t fwd = max(pg_packed_size(u, width), pg_packed_size(u, width - u) + pg_packed_size(u, u))
    cdef size_t bwd = max(pg_packed_size(width, u), pg_packed_size(width - u, u) + pg_packed_size(u, u))
    return max(pg_packed_size(nin, width) + fwd, bwd + pg_packed_size(width, nin)) + CYDNN_PG_ALIGN


def packed_level(int level=-1):
    """Select the per-step products' SIMD level (0: portable; 1: AVX2 + FMA; 2: AVX-512F; clamped
    to what the CPU runs; negative: the widest) and return the level in force. For tests."""
    return pg_set_level(level)


cdef void emit_outputs(const floating* hnew, const floating* hprev, const unsigned char* mask,
                       int T, int batch, int u, int s, bint reverse, bint zero_output,
                       floating* hs_next, floating* yseq, floating* ylast, int r0, int r1,
                       int j0, int j1) noexcept nogil:
    """After step s for rows r0..r1 and units j0..j1: fix the state of masked rows
    (hs_next := hprev) and write the outputs: yseq[b, s] (if any) and ylast[b], the running last
    output."""
    cdef int b
    cdef bint on
    cdef floating* yl
    cdef Py_ssize_t o
    cdef size_t n
    n = (j1 - j0) * sizeof(floating)
    for b in range(r0, r1):
        on = step_on(mask, T, b, input_time(s, T, reverse))
        o = <Py_ssize_t>b * u + j0
        yl = ylast + o
        if on:
            memcpy(yl, hnew + <Py_ssize_t>(b - r0) * u + j0, n)
        else:
            memcpy(hs_next + o, hprev + o, n)
            if zero_output:
                memset(yl, 0, n)
            # else: ylast keeps the previous output
        if yseq != NULL:
            memcpy(yseq + (<Py_ssize_t>b * T + s) * u + j0, yl, n)


cdef inline void clear_rows(floating* a, int u, int b0, int b1) noexcept nogil:
    """a[b0:b1] := 0 for a (batch x u) array (the running last output starts at zeros)."""
    memset(a + <Py_ssize_t>b0 * u, 0, <Py_ssize_t>(b1 - b0) * u * sizeof(floating))


cdef inline bint output_flows(const unsigned char* mask, const int* first_on, int T, int b, int s,
                              bint reverse, bint zero_output) noexcept nogil:
    """Does the output of step s of row b depend on hs[s+1] (else it is a copy of zeros)?"""
    if mask == NULL:
        return True
    if zero_output:
        return step_on(mask, T, b, input_time(s, T, reverse))
    return s >= first_on[b]


cdef void first_steps(const unsigned char* mask, int T, int b0, int b1, bint reverse,
                      int* first_on) noexcept nogil:
    """first_on[b] := the first processing step that is not masked (T when none)."""
    cdef int b, s
    if mask == NULL:
        return
    for b in range(b0, b1):
        first_on[b] = T
        for s in range(T):
            if step_on(mask, T, b, input_time(s, T, reverse)):
                first_on[b] = s
                break


cdef void start_backward(const floating* dylast, const floating* dhT, const floating* dcT,
                         const unsigned char* mask, const int* first_on, int T, int u,
                         bint reverse, bint zero_output, floating* dh, floating* dc,
                         int b0, int b1) noexcept nogil:
    """The carries before step T-1: dh := dL/dh_T (state gradient + the last output's when it
    depends on h_T); dc := dL/dc_T (dc may be NULL: no cell state)."""
    cdef int b, j
    cdef Py_ssize_t o
    for b in range(b0, b1):
        o = <Py_ssize_t>b * u
        for j in range(u):
            dh[o + j] = dhT[o + j] if dhT != NULL else 0
        if dylast != NULL and output_flows(mask, first_on, T, b, T - 1, reverse, zero_output):
            for j in range(u):
                dh[o + j] += dylast[o + j]
        if dc != NULL:
            for j in range(u):
                dc[o + j] = dcT[o + j] if dcT != NULL else 0


cdef void gather_dh(const floating* dh, const floating* dyseq, const unsigned char* mask,
                    const int* first_on, int T, int u, int s, bint reverse, bint zero_output,
                    floating* g, int b0, int b1) noexcept nogil:
    """g := dL/dh_s for rows b0..b1: the carry from step s+1 plus the gradient of output s."""
    cdef int b, j
    cdef Py_ssize_t o, oy
    for b in range(b0, b1):
        o = <Py_ssize_t>b * u
        if dyseq != NULL and output_flows(mask, first_on, T, b, s, reverse, zero_output):
            oy = (<Py_ssize_t>b * T + s) * u
            for j in range(u):
                g[o + j] = dh[o + j] + dyseq[oy + j]
        else:
            memcpy(g + o, dh + o, u * sizeof(floating))


cdef void weight_grad_cols(const floating* xt, int nin, const floating* hs, const floating* hs2,
                           int rsplit, int u, const floating* dz, int width, const floating* dz2,
                           int ld2, int split, int rows, floating* dk, floating* drk,
                           floating* db, floating* db2, bint accumulate, int c0, int c1) noexcept nogil:
    """Columns c0..c1 of the parameter gradients over all rows (T*batch), dz (rows x width):
    dk (nin x width) (+)= xt^T @ D_in, drk (u x width) (+)= H^T @ dz, db (+)= column sums of D_in and
    db2 (+)= those of dz (NULL outputs are skipped). D_in is dz, or for columns from split on dz2
    (the GRU's input part of h~, when dz2 is not NULL); H is hs, or for columns from rsplit on hs2
    (the GRU with reset_before: r * h). Where D_in is dz, one pass over dz serves all four."""
    cdef pg_seg seg[4]
    cdef int a, e, n
    cdef const floating* h
    cdef const floating* din
    a = c0
    while a < c1:
        # the next sub-range [a, e) in which D_in and H do not change
        e = c1
        if dz2 != NULL and a < split < e:
            e = split
        if hs2 != NULL and a < rsplit < e:
            e = rsplit
        h = hs2 if (hs2 != NULL and a >= rsplit) else hs
        if dz2 == NULL or a < split:   # D_in is dz: one pass
            n = add_seg(seg, 0, xt, nin, nin, NULL if dk == NULL else dk + a, width)
            n = add_seg(seg, n, h, u, u, NULL if drk == NULL else drk + a, width)
            n = add_seg(seg, n, NULL, 0, 1, NULL if db == NULL else db + a, width)
            n = add_seg(seg, n, NULL, 0, 1, NULL if db2 == NULL else db2 + a, width)
            if n:
                matmul_tn(n, seg, e - a, rows, dz + a, width, accumulate)
        else:
            n = add_seg(seg, 0, h, u, u, NULL if drk == NULL else drk + a, width)
            n = add_seg(seg, n, NULL, 0, 1, NULL if db2 == NULL else db2 + a, width)
            if n:
                matmul_tn(n, seg, e - a, rows, dz + a, width, accumulate)
            din = dz2 + (a - split)
            n = add_seg(seg, 0, xt, nin, nin, NULL if dk == NULL else dk + a, width)
            n = add_seg(seg, n, NULL, 0, 1, NULL if db == NULL else db + a, width)
            if n:
                matmul_tn(n, seg, e - a, rows, din, ld2, accumulate)
        a = e


cdef void input_grads(const floating* dz, int ld_dz, const floating* dz2, int ld_dz2, int split,
                      const floating* ktp, const floating* ktp2, int nin, int width,
                      const floating* keep, int batch, int T, bint reverse, floating* dxt,
                      floating* dx, int r0, int r1) noexcept nogil:
    """Rows r0..r1 of dxt := D @ kernel^T (time-major), then dx[b, t] := dxt[s, b] * keep[b].
    D is dz, or [dz[:, :split] | dz2] when dz2 is not NULL; ktp holds kernel^T packed (its first
    split rows when dz2 is not NULL, ktp2 the rest): one running sum per entry over k in order,
    whatever the rows of the call (step_product)."""
    cdef int r, s, b, j
    cdef floating* src
    cdef floating* dst
    if r1 <= r0:
        return
    step_product(dz + <Py_ssize_t>r0 * ld_dz, ld_dz, ktp, width if dz2 == NULL else split,
                 NULL if dz2 == NULL else dz2 + <Py_ssize_t>r0 * ld_dz2, ld_dz2, ktp2,
                 0 if dz2 == NULL else width - split, NULL, dxt + <Py_ssize_t>r0 * nin, nin,
                 r1 - r0, nin, False)
    for r in range(r0, r1):
        s = r // batch
        b = r - s * batch
        src = dxt + <Py_ssize_t>r * nin
        dst = dx + (<Py_ssize_t>b * T + input_time(s, T, reverse)) * nin
        if keep == NULL:
            memcpy(dst, src, nin * sizeof(floating))
        else:
            for j in range(nin):
                dst[j] = src[j] * keep[<Py_ssize_t>b * nin + j]


cdef inline floating* opt_ptr(floating[::1] v) noexcept:
    return NULL if v is None else &v[0]


# ------------------------------------------------------------------------------------ SimpleRNN
cdef void simple_rnn_forward_rows(const floating* xt, const floating* kp, const floating* bias,
                                  floating* z, floating* hs, const floating* rkp,
                                  const unsigned char* mask, floating* yseq, floating* ylast,
                                  int T, int batch, int nin, int u, int act, double alpha, bint reverse,
                                  bint zero_output, bint zero_state, bint fold, bint fast,
                                  int b0, int b1) noexcept nogil:
    cdef int s, j, nr = b1 - b0
    cdef Py_ssize_t step_z = <Py_ssize_t>batch * u
    cdef floating* zs
    cdef floating* hnew
    clear_rows(ylast, u, b0, b1)
    for s in range(T):
        zs = z + s * step_z + <Py_ssize_t>b0 * u
        hnew = hs + (s + 1) * step_z + <Py_ssize_t>b0 * u
        # z := bias + x_s @ kernel + h_{s-1} @ rkernel (no h term from a zero initial state);
        # the first two terms are in z already unless folded into the step
        step_product(xt + (<Py_ssize_t>s * batch + b0) * nin, nin, kp, nin if fold else 0,
                     hs + s * step_z + <Py_ssize_t>b0 * u, u, rkp, 0 if (s == 0 and zero_state) else u,
                     bias, zs, u, nr, u, not fold)
        # h := activation(z) on the block's rows
        if floating is float and fast:
            tanh_forward_f(nr * u, zs, hnew)
        else:
            for j in range(nr * u):
                hnew[j] = <floating>act_forward(act, alpha, zs[j])
        emit_outputs(hnew, hs + s * step_z, mask, T, batch, u, s, reverse, zero_output,
                     hs + (s + 1) * step_z, yseq, ylast, b0, b1, 0, u)


def simple_rnn_forward(const floating[:, :, ::1] x,     # IN  (batch, T, in)
                       const floating[:, ::1] kernel,    # IN  (in, u)
                       const floating[:, ::1] rkernel,   # IN  (u, u)
                       floating[::1] packed,              # scratch (packed_scratch_size(u, width),)
                       const floating[::1] bias,         # IN  (u,) or None
                       const unsigned char[:, ::1] mask, # IN  (batch, T), 0 = skip the step; or None
                       const floating[:, ::1] keep,      # IN  (batch, in) dropout multipliers, or None
                       floating[:, :, ::1] xt,           # OUT (T, batch, in)
                       floating[:, :, ::1] z,            # OUT (T, batch, u) pre-activations
                       floating[:, :, ::1] hs,           # IN/OUT (T+1, batch, u), hs[0] = h0
                       floating[:, :, ::1] yseq,         # OUT (batch, T, u) or None
                       floating[:, ::1] ylast,           # OUT (batch, u) last output
                       int act, double alpha, bint reverse, bint zero_output_for_mask,
                       bint zero_state, bint approx, int n_threads):
    """h_s := act(x_t @ kernel + h_{s-1} @ rkernel + bias), s = 0..T-1 (t = s, or T-1-s reversed)."""
    cdef int batch = x.shape[0], T = x.shape[1], nin = x.shape[2], u = kernel.shape[1]
    cdef int nt, t, r0, r1
    cdef bint fast = approx and act == TANH
    cdef const floating* bias_p = <const floating*>NULL if bias is None else &bias[0]
    cdef const unsigned char* mask_p = <const unsigned char*>NULL if mask is None else &mask[0, 0]
    cdef const floating* keep_p = <const floating*>NULL if keep is None else &keep[0, 0]
    cdef floating* yseq_p = NULL if yseq is None else &yseq[0, 0, 0]
    if batch == 0 or T == 0:
        return
    cdef Py_ssize_t used = 0   # the packed kernel, then the packed recurrent kernel
    cdef bint fold = batch >= FOLD_MIN_BATCH
    cdef const floating* kp = pack_operand(packed, &used, nin, u, &kernel[0, 0], u, False)
    project_all_inputs(&x[0, 0, 0], batch, T, nin, keep_p, reverse,
                       <const floating*>NULL if fold else kp, u, bias_p, &xt[0, 0, 0], &z[0, 0, 0],
                       n_threads)
    cdef const floating* rkp = pack_operand(packed, &used, u, u, &rkernel[0, 0], u, False)
    nt = step_threads(T, batch, nin + u, u, n_threads)
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        r0 = block_start(batch, nt, t)
        r1 = block_start(batch, nt, t + 1)
        if r1 > r0:
            simple_rnn_forward_rows(&xt[0, 0, 0], kp, bias_p, &z[0, 0, 0], &hs[0, 0, 0], rkp,
                                    mask_p, yseq_p, &ylast[0, 0], T, batch, nin, u, act, alpha, reverse,
                                    zero_output_for_mask, zero_state, fold, fast, r0, r1)


cdef void simple_rnn_backward_rows(const floating* z, const floating* hs, const floating* rkp,
                                   const unsigned char* mask, const int* first_on,
                                   const floating* dyseq, floating* dz, floating* dh, floating* g,
                                   int T, int batch, int u, int act, double alpha, bint reverse,
                                   bint zero_output, bint need_dh0, bint fast,
                                   int b0, int b1) noexcept nogil:
    cdef int s, b, j, nr = b1 - b0
    cdef Py_ssize_t step = <Py_ssize_t>batch * u, o
    cdef floating* dzr
    cdef const floating* hr
    cdef const floating* zr
    for s in range(T - 1, -1, -1):
        gather_dh(dh, dyseq, mask, first_on, T, u, s, reverse, zero_output, g, b0, b1)
        for b in range(b0, b1):
            o = <Py_ssize_t>b * u
            dzr = dz + s * step + o
            if step_on(mask, T, b, input_time(s, T, reverse)):
                # gradient with respect to the pre-activation: g * act'(z)
                hr = hs + (s + 1) * step + o
                zr = z + s * step + o
                if floating is float and fast:
                    tanh_backward_f(u, hr, g + o, dzr)
                else:
                    for j in range(u):
                        dzr[j] = <floating>(g[o + j] * act_derivative(act, alpha, zr[j], hr[j]))
                if mask != NULL:
                    memset(dh + o, 0, u * sizeof(floating))
            else:
                # skipped step: no gate gradient, the state gradient passes through unchanged
                memset(dzr, 0, u * sizeof(floating))
                memcpy(dh + o, g + o, u * sizeof(floating))
        # gradient with respect to h_{s-1}: dz @ rkernel^T (added to the pass-through of skipped rows)
        if s > 0 or need_dh0:
            packed_matmul(dz + s * step + <Py_ssize_t>b0 * u, u, rkp, dh + <Py_ssize_t>b0 * u, u,
                          nr, u, u, mask != NULL)


def simple_rnn_backward(const floating[:, :, ::1] xt,      # IN  (T, batch, in) from forward
                        const floating[:, ::1] kernel,     # IN  (in, u)
                        const floating[:, ::1] rkernel,    # IN  (u, u)
                        floating[::1] packed,              # scratch (packed_scratch_size(u, width),)
                        const unsigned char[:, ::1] mask,  # IN  (batch, T) or None
                        const floating[:, ::1] keep,       # IN  (batch, in) or None
                        const floating[:, :, ::1] z,       # IN  (T, batch, u) from forward
                        const floating[:, :, ::1] hs,      # IN  (T+1, batch, u) from forward
                        const floating[:, :, ::1] dyseq,   # IN  (batch, T, u) dL/d(output sequence), or None
                        const floating[:, ::1] dylast,     # IN  (batch, u) dL/d(last output), or None
                        const floating[:, ::1] dhT,        # IN  (batch, u) dL/d(final state), or None
                        floating[:, :, ::1] dz,            # OUT (T, batch, u) scratch: dL/dz
                        floating[:, ::1] dh,               # OUT (batch, u) dL/dh0
                        floating[:, ::1] g,                # scratch (batch, u)
                        int[::1] first_on,                 # scratch (batch,)
                        floating[:, ::1] dkernel,          # OUT (in, u) or None
                        floating[:, ::1] drkernel,         # OUT (u, u) or None
                        floating[::1] dbias,               # OUT (u,) or None
                        floating[:, :, ::1] dxt,           # scratch (T, batch, in), or None
                        floating[:, :, ::1] dx,            # OUT (batch, T, in) or None
                        int act, double alpha, bint reverse, bint zero_output_for_mask,
                        bint need_dh0, bint accumulate, bint approx, int n_threads):
    """Backpropagation through time; weight gradients (+)= when accumulate."""
    cdef int batch = hs.shape[1], T = z.shape[0], u = rkernel.shape[0]
    cdef int nt, t, r0, r1
    cdef bint fast = approx and act == TANH
    cdef const unsigned char* mask_p = <const unsigned char*>NULL if mask is None else &mask[0, 0]
    cdef const floating* dyseq_p = <const floating*>NULL if dyseq is None else &dyseq[0, 0, 0]
    cdef const floating* dylast_p = <const floating*>NULL if dylast is None else &dylast[0, 0]
    cdef const floating* dhT_p = <const floating*>NULL if dhT is None else &dhT[0, 0]
    if batch == 0 or T == 0:
        return
    cdef Py_ssize_t used = 0
    cdef const floating* rkp = pack_operand(packed, &used, u, u, &rkernel[0, 0], u, True)
    nt = step_threads(T, batch, u, u, n_threads)
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        r0 = block_start(batch, nt, t)
        r1 = block_start(batch, nt, t + 1)
        if r1 > r0:
            first_steps(mask_p, T, r0, r1, reverse, &first_on[0])
            start_backward(dylast_p, dhT_p, <floating*>NULL, mask_p,
                           &first_on[0], T, u, reverse, zero_output_for_mask, &dh[0, 0],
                           <floating*>NULL, r0, r1)
            simple_rnn_backward_rows(&z[0, 0, 0], &hs[0, 0, 0], rkp, mask_p,
                                     &first_on[0], dyseq_p, &dz[0, 0, 0], &dh[0, 0], &g[0, 0],
                                     T, batch, u, act, alpha, reverse, zero_output_for_mask,
                                     need_dh0, fast, r0, r1)
    cdef floating[:, :, ::1] no_dz2 = None
    cdef floating[::1] no_dbias2 = None
    parameter_grads(xt, hs, no_dz2, 0, dz, no_dz2, u, kernel, keep, dkernel, drkernel, dbias, no_dbias2, dxt,
                    dx, packed, used, reverse, accumulate, n_threads)


cdef void parameter_grads(const floating[:, :, ::1] xt, const floating[:, :, ::1] hs,
                          const floating[:, :, ::1] hs2, int rsplit,
                          const floating[:, :, ::1] dz, const floating[:, :, ::1] dz2, int split,
                          const floating[:, ::1] kernel, const floating[:, ::1] keep,
                          floating[:, ::1] dkernel, floating[:, ::1] drkernel, floating[::1] dbias,
                          floating[::1] dbias2, floating[:, :, ::1] dxt, floating[:, :, ::1] dx,
                          floating[::1] packed, Py_ssize_t used, bint reverse, bint accumulate,
                          int n_threads):
    """After the recurrence: dkernel, drkernel and the bias gradients (one pass over dz, every entry
    a fixed-order sum over all T*batch rows) and dx, in one parallel region. dz (T, batch, width) is
    dL/d(pre-activations). For the GRU, dz is the gradient of the recurrent projection; the input
    projection's is [dz[..., :split] | dz2] and dbias2 receives the recurrent bias's gradient.
    hs2 (T, batch, u) or None: the left operand of the recurrent kernel's columns from rsplit on
    (the GRU with reset_before multiplies r * h_{s-1} there). dx packs kernel^T into packed after
    its first used values (what the recurrence packed)."""
    cdef int T = dz.shape[0], batch = dz.shape[1], width = dz.shape[2], nin = xt.shape[2]
    cdef int u = hs.shape[2], rows = T * batch, t
    cdef const floating* dz2_p = <const floating*>NULL if dz2 is None else &dz2[0, 0, 0]
    cdef int ld2 = 0 if dz2 is None else dz2.shape[2]
    cdef const floating* hs2_p = <const floating*>NULL if hs2 is None else &hs2[0, 0, 0]
    cdef const floating* keep_p = <const floating*>NULL if keep is None else &keep[0, 0]
    cdef floating* dk = NULL if dkernel is None else &dkernel[0, 0]
    cdef floating* drk = NULL if drkernel is None else &drkernel[0, 0]
    cdef floating* db = opt_ptr(dbias)
    cdef floating* db2 = opt_ptr(dbias2)
    cdef floating* dx_p = NULL if dx is None else &dx[0, 0, 0]
    cdef const floating* ktp = NULL
    cdef const floating* ktp2 = NULL
    if dx_p != NULL:   # kernel^T (width x nin) packed; for the GRU its rows split..width apart
        ktp = pack_operand(packed, &used, width if dz2 is None else split, nin, &kernel[0, 0],
                           width, True)
        if dz2 is not None:
            ktp2 = pack_operand(packed, &used, width - split, nin, &kernel[0, split], width, True)
    # dkernel, drkernel and the biases: each thread takes a share of the columns (whole panels of
    # 32), every entry one fixed-order sum over all T*batch rows (matmul_tn) however the columns
    # are split; dx in blocks of rows fixed by the shape (every entry one fixed-order sum too);
    # thread t takes a contiguous share of them.
    cdef int nbx = fixed_blocks(rows, PROJ_ROW_BLOCK) if dx_p != NULL else 0
    cdef int panels = (width + 31) // 32
    cdef int i, w0, w1, nt = threads_for_work(<long long>rows * width * (2 * nin + u), GEMM_GRAIN,
                                              max(max(panels, nbx), 1), n_threads)
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        w0 = min(32 * block_start(panels, nt, t), width)
        w1 = min(32 * block_start(panels, nt, t + 1), width)
        weight_grad_cols(&xt[0, 0, 0], nin, &hs[0, 0, 0], hs2_p, rsplit, u, &dz[0, 0, 0], width,
                         dz2_p, ld2, split, rows, dk, drk, db, db2, accumulate, w0, w1)
        # gradient with respect to the input
        for i in range(block_start(nbx, nt, t), block_start(nbx, nt, t + 1)):
            input_grads(&dz[0, 0, 0], width, dz2_p, ld2, split, ktp, ktp2, nin, width, keep_p,
                        batch, T, reverse, &dxt[0, 0, 0], dx_p, block_start(rows, nbx, i),
                        block_start(rows, nbx, i + 1))


# ------------------------------------------------------------------------------------ LSTM
cdef void lstm_cell_generic(const floating* z, floating* a, const floating* cp, floating* c,
                            floating* tc, floating* h, int n_rows, int u, int j0, int j1, int act,
                            double alpha, int ract, double ralpha) noexcept nogil:
    """The LSTM step for any activations (double-precision math), units j0..j1 of each row."""
    cdef int r, j
    cdef Py_ssize_t oz, o
    cdef double ig, fg, gg, og, cc, tt
    for r in range(n_rows):
        oz = <Py_ssize_t>r * 4 * u
        o = <Py_ssize_t>r * u
        for j in range(j0, j1):
            ig = act_forward(ract, ralpha, z[oz + j])
            fg = act_forward(ract, ralpha, z[oz + u + j])
            gg = act_forward(act, alpha, z[oz + 2 * u + j])
            og = act_forward(ract, ralpha, z[oz + 3 * u + j])
            a[oz + j] = <floating>ig
            a[oz + u + j] = <floating>fg
            a[oz + 2 * u + j] = <floating>gg
            a[oz + 3 * u + j] = <floating>og
            cc = fg * cp[o + j] + ig * gg
            tt = act_forward(act, alpha, cc)
            c[o + j] = <floating>cc
            tc[o + j] = <floating>tt
            h[o + j] = <floating>(og * tt)


cdef void lstm_step_cells(floating* zs, floating* as_, floating* cs, floating* tc, floating* hs,
                          const unsigned char* mask, floating* yseq, floating* ylast, int T,
                          int batch, int u, int s, int b0, int b1, int j0, int j1, int act,
                          double alpha, int ract, double ralpha, bint reverse, bint zero_output,
                          bint fast) noexcept nogil:
    """The cells of step s for rows b0..b1 and units j0..j1, zs and as_ the step's z and a from
    row b0 on: the gates and states, the cell state carried through skipped steps, the outputs."""
    cdef int b
    cdef Py_ssize_t step = <Py_ssize_t>batch * u, off = <Py_ssize_t>b0 * u, o
    if floating is float and fast:
        lstm_forward_rows_f(b1 - b0, u, j0, j1, zs, as_, cs + s * step + off,
                            cs + (s + 1) * step + off, tc + s * step + off, hs + (s + 1) * step + off)
    else:
        lstm_cell_generic(zs, as_, cs + s * step + off, cs + (s + 1) * step + off,
                          tc + s * step + off, hs + (s + 1) * step + off, b1 - b0, u, j0, j1, act,
                          alpha, ract, ralpha)
    if mask != NULL:   # skipped steps carry the cell state
        for b in range(b0, b1):
            if not step_on(mask, T, b, input_time(s, T, reverse)):
                o = <Py_ssize_t>b * u + j0
                memcpy(cs + (s + 1) * step + o, cs + s * step + o, (j1 - j0) * sizeof(floating))
    emit_outputs(hs + (s + 1) * step + off, hs + s * step, mask, T, batch, u, s, reverse,
                 zero_output, hs + (s + 1) * step, yseq, ylast, b0, b1, j0, j1)


cdef void lstm_forward_rows(const floating* xt, const floating* kp, const floating* bias,
                            floating* z, floating* a, floating* hs, floating* cs, floating* tc,
                            const floating* rkp, const unsigned char* mask, floating* yseq,
                            floating* ylast, int T, int batch, int nin, int u, int act, double alpha,
                            int ract, double ralpha, bint reverse, bint zero_output,
                            bint zero_state, bint fold, bint fast, int b0, int b1) noexcept nogil:
    cdef int s, nr = b1 - b0
    cdef Py_ssize_t step = <Py_ssize_t>batch * u, off = <Py_ssize_t>b0 * u
    cdef floating* zs
    cdef floating* as_
    clear_rows(ylast, u, b0, b1)
    for s in range(T):
        # the backward of the fast cells reads only a: with the projection folded in, one
        # step's rows of z serve every step (6.5 MB less to write at the benchmark's size)
        zs = z + 4 * ((0 if (fold and fast) else s * step) + off)
        as_ = a + 4 * (s * step + off)
        # z := bias + x_s @ kernel + h_{s-1} @ rkernel (no h term from a zero initial state);
        # the first two terms are in z already unless folded into the step
        step_product(xt + (<Py_ssize_t>s * batch + b0) * nin, nin, kp, nin if fold else 0,
                     hs + s * step + off, u, rkp, 0 if (s == 0 and zero_state) else u, bias, zs,
                     4 * u, nr, 4 * u, not fold)
        lstm_step_cells(zs, as_, cs, tc, hs, mask, yseq, ylast, T, batch, u, s, b0, b1, 0, u, act,
                        alpha, ract, ralpha, reverse, zero_output, fast)


cpdef int unit_threads(int T, int batch, int u, int n_threads) noexcept nogil:
    """Threads that share the LSTM forward's units (whole panels of 32) for a batch below
    FOLD_MIN_BATCH; 1: the rows are shared as usual. Python-visible for tests."""
    if batch >= FOLD_MIN_BATCH or u % 32 != 0:
        return 1
    return threads_for_work(<long long>T * batch * u * 4 * u, GEMM_GRAIN, u // 32, n_threads)


cdef void lstm_forward_units(const floating* xt, const floating* kernel, const floating* rkernel,
                             floating* kp, floating* rkp, const floating* bias, floating* z,
                             floating* a, floating* hs, floating* cs, floating* tc,
                             const unsigned char* mask, floating* yseq, floating* ylast, int T,
                             int batch, int nin, int u, int act, double alpha, int ract,
                             double ralpha, bint reverse, bint zero_output, bint zero_state,
                             bint fast) noexcept nogil:
    """The forward pass for a batch too small to share by rows, called by every thread of a
    parallel region: each takes whole panels of 32 units (the 4 gates' columns of them) of every
    row, packs those columns of the kernels (kp, rkp: room for all of them) and projects the
    inputs (xt, time-major) onto them; the team meets after each step (the next step's product
    reads all of h). Every entry is the same sum as in lstm_forward_rows: the same bits."""
    cdef int nt = team_size(), t = threadid()
    cdef int j0 = 32 * block_start(u // 32, nt, t), j1 = 32 * block_start(u // 32, nt, t + 1)
    cdef int s, g, c0
    cdef Py_ssize_t step = <Py_ssize_t>batch * u
    cdef floating* zs
    cdef floating* as_
    if j1 > j0:
        for g in range(4):   # this thread's columns of the kernels, and z := bias + x @ kernel there
            c0 = g * u + j0
            pack_into(nin, j1 - j0, kernel + c0, 4 * u, False, kp + <Py_ssize_t>c0 * nin)
            pack_into(u, j1 - j0, rkernel + c0, 4 * u, False, rkp + <Py_ssize_t>c0 * u)
            step_product(xt, nin, kp + <Py_ssize_t>c0 * nin, nin, NULL, 0, NULL, 0,
                         <const floating*>NULL if bias == NULL else bias + c0, z + c0, 4 * u,
                         T * batch, j1 - j0, False)
    for s in range(T):
        zs = z + 4 * s * step
        as_ = a + 4 * s * step
        if j1 > j0:
            if not (s == 0 and zero_state):
                for g in range(4):   # z[:, gate g's columns of these units] += h @ those of U
                    packed_matmul(hs + s * step, u, rkp + <Py_ssize_t>(g * u + j0) * u, zs + g * u + j0,
                                  4 * u, batch, u, j1 - j0, True)
            lstm_step_cells(zs, as_, cs, tc, hs, mask, yseq, ylast, T, batch, u, s, 0, batch, j0,
                            j1, act, alpha, ract, ralpha, reverse, zero_output, fast)
        team_barrier()


def lstm_forward(const floating[:, :, ::1] x,     # IN  (batch, T, in)
                 const floating[:, ::1] kernel,    # IN  (in, 4u)   gates i, f, c, o
                 const floating[:, ::1] rkernel,   # IN  (u, 4u)
                 floating[::1] packed,              # scratch (packed_scratch_size(u, width),)
                 const floating[::1] bias,         # IN  (4u,) or None
                 const unsigned char[:, ::1] mask, # IN  (batch, T), 0 = skip the step; or None
                 const floating[:, ::1] keep,      # IN  (batch, in) dropout multipliers, or None
                 floating[:, :, ::1] xt,           # OUT (T, batch, in)
                 floating[:, :, ::1] z,            # OUT (T, batch, 4u) pre-activations (*)
                 floating[:, :, ::1] a,            # OUT (T, batch, 4u) activations i, f, c~, o
                 floating[:, :, ::1] hs,           # IN/OUT (T+1, batch, u), hs[0] = h0
                 floating[:, :, ::1] cs,           # IN/OUT (T+1, batch, u), cs[0] = c0
                 floating[:, :, ::1] tc,           # OUT (T, batch, u) act(c)
                 floating[:, :, ::1] yseq,         # OUT (batch, T, u) or None
                 floating[:, ::1] ylast,           # OUT (batch, u) last output
                 int act, double alpha, int ract, double ralpha, bint reverse,
                 bint zero_output_for_mask, bint zero_state, bint approx, int n_threads):
    """i, f, o = ract(.), c~ = act(.) of x_t @ kernel + h @ rkernel + bias;
    c := f * c + i * c~;  h := o * act(c).
    (*) The fast float32 cells (approx, tanh and sigmoid) from batch FOLD_MIN_BATCH on use z[0]
    as every step's scratch: their backward needs a only."""
    cdef int batch = x.shape[0], T = x.shape[1], nin = x.shape[2], u = rkernel.shape[0]
    cdef int nt, t, r0, r1
    cdef bint fast = approx and act == TANH and ract == SIGMOID
    cdef const floating* bias_p = <const floating*>NULL if bias is None else &bias[0]
    cdef const unsigned char* mask_p = <const unsigned char*>NULL if mask is None else &mask[0, 0]
    cdef const floating* keep_p = <const floating*>NULL if keep is None else &keep[0, 0]
    cdef floating* yseq_p = NULL if yseq is None else &yseq[0, 0, 0]
    if batch == 0 or T == 0:
        return
    cdef Py_ssize_t used = 0   # the packed kernel, then the packed recurrent kernel
    cdef bint fold = batch >= FOLD_MIN_BATCH
    cdef int ut = unit_threads(T, batch, u, n_threads)
    cdef floating* kp_units
    cdef floating* rkp_units
    if ut > 1:   # a small batch: the threads share each step's units instead of its rows
        kp_units = reserve_packed(packed, &used, nin, 4 * u)
        rkp_units = reserve_packed(packed, &used, u, 4 * u)
        project_all_inputs(&x[0, 0, 0], batch, T, nin, keep_p, reverse, NULL, 4 * u, NULL,
                           &xt[0, 0, 0], &z[0, 0, 0], n_threads)
        clear_rows(&ylast[0, 0], u, 0, batch)
        with nogil, parallel(num_threads=ut):
            lstm_forward_units(&xt[0, 0, 0], &kernel[0, 0], &rkernel[0, 0], kp_units, rkp_units,
                               bias_p, &z[0, 0, 0], &a[0, 0, 0], &hs[0, 0, 0], &cs[0, 0, 0],
                               &tc[0, 0, 0], mask_p, yseq_p, &ylast[0, 0], T, batch, nin, u, act,
                               alpha, ract, ralpha, reverse, zero_output_for_mask, zero_state, fast)
        return
    cdef const floating* kp = pack_operand(packed, &used, nin, 4 * u, &kernel[0, 0], 4 * u, False)
    project_all_inputs(&x[0, 0, 0], batch, T, nin, keep_p, reverse,
                       <const floating*>NULL if fold else kp, 4 * u, bias_p, &xt[0, 0, 0],
                       &z[0, 0, 0], n_threads)
    cdef const floating* rkp = pack_operand(packed, &used, u, 4 * u, &rkernel[0, 0], 4 * u, False)
    nt = step_threads(T, batch, nin + u, 4 * u, n_threads)
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        r0 = block_start(batch, nt, t)
        r1 = block_start(batch, nt, t + 1)
        if r1 > r0:
            lstm_forward_rows(&xt[0, 0, 0], kp, bias_p, &z[0, 0, 0], &a[0, 0, 0], &hs[0, 0, 0],
                              &cs[0, 0, 0], &tc[0, 0, 0], rkp, mask_p, yseq_p, &ylast[0, 0], T,
                              batch, nin, u, act, alpha, ract, ralpha, reverse,
                              zero_output_for_mask, zero_state, fold, fast, r0, r1)


cdef void lstm_gate_grads_generic(const floating* z, const floating* a, const floating* cp,
                                  const floating* c, const floating* tc, const floating* g,
                                  floating* dc, floating* dz, int u, int act, double alpha,
                                  int ract, double ralpha) noexcept nogil:
    """One row: dz (4u) := dL/d(pre-activations); dc := dL/dc_prev (in: dL/dc)."""
    cdef int j
    cdef double ig, fg, gg, og, dct
    for j in range(u):
        ig = a[j]
        fg = a[u + j]
        gg = a[2 * u + j]
        og = a[3 * u + j]
        # through h = o * act(c), then c = f * c_prev + i * c~
        dct = dc[j] + g[j] * og * act_derivative(act, alpha, c[j], tc[j])
        dz[j] = <floating>(dct * gg * act_derivative(ract, ralpha, z[j], ig))              # input gate
        dz[u + j] = <floating>(dct * cp[j] * act_derivative(ract, ralpha, z[u + j], fg))   # forget gate
        dz[2 * u + j] = <floating>(dct * ig * act_derivative(act, alpha, z[2 * u + j], gg))  # candidate
        dz[3 * u + j] = <floating>(g[j] * tc[j] * act_derivative(ract, ralpha, z[3 * u + j], og))  # output gate
        dc[j] = <floating>(dct * fg)   # to c_prev


cdef void lstm_backward_rows(const floating* z, const floating* a, const floating* cs,
                             const floating* tc, const floating* rkp,
                             const unsigned char* mask, const int* first_on,
                             const floating* dyseq, floating* dz, floating* dh, floating* dc,
                             floating* g, int T, int batch, int u, int act, double alpha,
                             int ract, double ralpha, bint reverse, bint zero_output,
                             bint need_dh0, bint fast, int b0, int b1) noexcept nogil:
    cdef int s, b, nr = b1 - b0
    cdef Py_ssize_t step = <Py_ssize_t>batch * u, o, o4
    for s in range(T - 1, -1, -1):
        gather_dh(dh, dyseq, mask, first_on, T, u, s, reverse, zero_output, g, b0, b1)
        for b in range(b0, b1):
            o = <Py_ssize_t>b * u
            o4 = 4 * (s * step + o)
            if step_on(mask, T, b, input_time(s, T, reverse)):
                if floating is float and fast:
                    lstm_backward_row_f(u, a + o4, cs + s * step + o, tc + s * step + o, g + o,
                                        dc + o, dz + o4)
                else:
                    lstm_gate_grads_generic(z + o4, a + o4, cs + s * step + o,
                                            cs + (s + 1) * step + o, tc + s * step + o, g + o,
                                            dc + o, dz + o4, u, act, alpha, ract, ralpha)
                if mask != NULL:
                    memset(dh + o, 0, u * sizeof(floating))
            else:
                # skipped step: no gate gradient; dL/dh and dL/dc pass through unchanged
                memset(dz + o4, 0, 4 * u * sizeof(floating))
                memcpy(dh + o, g + o, u * sizeof(floating))
        # gradient with respect to h_{s-1}: dz @ rkernel^T (added to the pass-through of skipped rows)
        if s > 0 or need_dh0:
            packed_matmul(dz + 4 * (s * step + <Py_ssize_t>b0 * u), 4 * u, rkp,
                          dh + <Py_ssize_t>b0 * u, u, nr, 4 * u, u, mask != NULL)


def lstm_backward(const floating[:, :, ::1] xt,      # IN  (T, batch, in) from forward
                  const floating[:, ::1] kernel,     # IN  (in, 4u)
                  const floating[:, ::1] rkernel,    # IN  (u, 4u)
                  floating[::1] packed,              # scratch (packed_scratch_size(u, width),)
                  const unsigned char[:, ::1] mask,  # IN  (batch, T) or None
                  const floating[:, ::1] keep,       # IN  (batch, in) or None
                  const floating[:, :, ::1] z,       # IN  (T, batch, 4u) from forward
                  const floating[:, :, ::1] a,       # IN  (T, batch, 4u) from forward
                  const floating[:, :, ::1] hs,      # IN  (T+1, batch, u) from forward
                  const floating[:, :, ::1] cs,      # IN  (T+1, batch, u) from forward
                  const floating[:, :, ::1] tc,      # IN  (T, batch, u) from forward
                  const floating[:, :, ::1] dyseq,   # IN  (batch, T, u) or None
                  const floating[:, ::1] dylast,     # IN  (batch, u) or None
                  const floating[:, ::1] dhT,        # IN  (batch, u) dL/d(final h), or None
                  const floating[:, ::1] dcT,        # IN  (batch, u) dL/d(final c), or None
                  floating[:, :, ::1] dz,            # OUT (T, batch, 4u) scratch: dL/dz
                  floating[:, ::1] dh,               # OUT (batch, u) dL/dh0
                  floating[:, ::1] dc,               # OUT (batch, u) dL/dc0
                  floating[:, ::1] g,                # scratch (batch, u)
                  int[::1] first_on,                 # scratch (batch,)
                  floating[:, ::1] dkernel,          # OUT (in, 4u) or None
                  floating[:, ::1] drkernel,         # OUT (u, 4u) or None
                  floating[::1] dbias,               # OUT (4u,) or None
                  floating[:, :, ::1] dxt,           # scratch (T, batch, in), or None
                  floating[:, :, ::1] dx,            # OUT (batch, T, in) or None
                  int act, double alpha, int ract, double ralpha, bint reverse,
                  bint zero_output_for_mask, bint need_dh0, bint accumulate, bint approx,
                  int n_threads):
    """Backpropagation through time; weight gradients (+)= when accumulate."""
    cdef int batch = hs.shape[1], T = z.shape[0], u = rkernel.shape[0]
    cdef int nt, t, r0, r1
    cdef bint fast = approx and act == TANH and ract == SIGMOID
    cdef const unsigned char* mask_p = <const unsigned char*>NULL if mask is None else &mask[0, 0]
    cdef const floating* dyseq_p = <const floating*>NULL if dyseq is None else &dyseq[0, 0, 0]
    cdef const floating* dcT_p = <const floating*>NULL if dcT is None else &dcT[0, 0]
    cdef const floating* dylast_p = <const floating*>NULL if dylast is None else &dylast[0, 0]
    cdef const floating* dhT_p = <const floating*>NULL if dhT is None else &dhT[0, 0]
    if batch == 0 or T == 0:
        return
    cdef Py_ssize_t used = 0
    cdef const floating* rkp = pack_operand(packed, &used, 4 * u, u, &rkernel[0, 0], 4 * u, True)
    nt = step_threads(T, batch, u, 4 * u, n_threads)
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        r0 = block_start(batch, nt, t)
        r1 = block_start(batch, nt, t + 1)
        if r1 > r0:
            first_steps(mask_p, T, r0, r1, reverse, &first_on[0])
            start_backward(dylast_p, dhT_p, dcT_p,
                           mask_p, &first_on[0], T, u, reverse, zero_output_for_mask, &dh[0, 0],
                           &dc[0, 0], r0, r1)
            lstm_backward_rows(&z[0, 0, 0], &a[0, 0, 0], &cs[0, 0, 0], &tc[0, 0, 0],
                               rkp, mask_p, &first_on[0], dyseq_p, &dz[0, 0, 0],
                               &dh[0, 0], &dc[0, 0], &g[0, 0], T, batch, u, act, alpha, ract,
                               ralpha, reverse, zero_output_for_mask, need_dh0, fast, r0, r1)
    cdef floating[:, :, ::1] no_dz2 = None
    cdef floating[::1] no_dbias2 = None
    parameter_grads(xt, hs, no_dz2, 0, dz, no_dz2, 4 * u, kernel, keep, dkernel, drkernel, dbias, no_dbias2,
                    dxt, dx, packed, used, reverse, accumulate, n_threads)


# ------------------------------------------------------------------------------------ GRU
cdef void gru_cell_generic(floating* z, const floating* rec, const floating* brec, floating* a,
                           floating* rh, const floating* hp, floating* h, int n_rows, int u,
                           int act, double alpha, int ract, double ralpha) noexcept nogil:
    """The GRU (reset_after) step for any activations (double-precision math)."""
    cdef int r, j
    cdef Py_ssize_t o3, o
    cdef double pz, pr, zg, rg, rhv, ph, hh
    for r in range(n_rows):
        o3 = <Py_ssize_t>r * 3 * u
        o = <Py_ssize_t>r * u
        for j in range(u):
            pz = z[o3 + j] + rec[o3 + j] + brec[j]
            pr = z[o3 + u + j] + rec[o3 + u + j] + brec[u + j]
            zg = act_forward(ract, ralpha, pz)
            rg = act_forward(ract, ralpha, pr)
            rhv = rec[o3 + 2 * u + j] + brec[2 * u + j]
            ph = z[o3 + 2 * u + j] + rg * rhv
            hh = act_forward(act, alpha, ph)
            z[o3 + j] = <floating>pz
            z[o3 + u + j] = <floating>pr
            z[o3 + 2 * u + j] = <floating>ph
            a[o3 + j] = <floating>zg
            a[o3 + u + j] = <floating>rg
            a[o3 + 2 * u + j] = <floating>hh
            rh[o + j] = <floating>rhv
            h[o + j] = <floating>(zg * hp[o + j] + (1.0 - zg) * hh)


cdef void gru_forward_rows(floating* z, floating* a, floating* rh, floating* hs, floating* rec,
                           const floating* rkp, const floating* brec,
                           const unsigned char* mask, floating* yseq, floating* ylast, int T,
                           int batch, int u, int act, double alpha, int ract, double ralpha,
                           bint reverse, bint zero_output, bint zero_state, bint fast,
                           int b0, int b1) noexcept nogil:
    cdef int s, nr = b1 - b0
    cdef Py_ssize_t step = <Py_ssize_t>batch * u, off = <Py_ssize_t>b0 * u
    cdef floating* recb = rec + 3 * off
    clear_rows(ylast, u, b0, b1)
    for s in range(T):
        # recurrent projection h_{s-1} @ rkernel of the block's rows (zeros from a zero state)
        if s == 0 and zero_state:
            memset(recb, 0, 3 * nr * u * sizeof(floating))
        else:
            packed_matmul(hs + s * step + off, u, rkp, recb, 3 * u, nr, u, 3 * u, False)
        if floating is float and fast:
            gru_forward_rows_f(nr, u, z + 3 * (s * step + off), recb, brec,
                               a + 3 * (s * step + off), rh + s * step + off, hs + s * step + off,
                               hs + (s + 1) * step + off)
        else:
            gru_cell_generic(z + 3 * (s * step + off), recb, brec, a + 3 * (s * step + off),
                             rh + s * step + off, hs + s * step + off, hs + (s + 1) * step + off,
                             nr, u, act, alpha, ract, ralpha)
        emit_outputs(hs + (s + 1) * step + off, hs + s * step, mask, T, batch, u, s, reverse,
                     zero_output, hs + (s + 1) * step, yseq, ylast, b0, b1, 0, u)


def gru_forward(const floating[:, :, ::1] x,      # IN  (batch, T, in)
                const floating[:, ::1] kernel,     # IN  (in, 3u)   gates z, r, h
                const floating[:, ::1] rkernel,    # IN  (u, 3u)
                floating[::1] packed,              # scratch (packed_scratch_size(u, width),)
                const floating[:, ::1] bias,       # IN  (2, 3u): input bias, recurrent bias; or None
                const unsigned char[:, ::1] mask,  # IN  (batch, T), 0 = skip the step; or None
                const floating[:, ::1] keep,       # IN  (batch, in) dropout multipliers, or None
                floating[:, :, ::1] xt,            # OUT (T, batch, in)
                floating[:, :, ::1] z,             # OUT (T, batch, 3u) pre-activations
                floating[:, :, ::1] a,             # OUT (T, batch, 3u) activations z, r, h~
                floating[:, :, ::1] rh,            # OUT (T, batch, u) h_{s-1} @ U_h + b_rh
                floating[:, :, ::1] hs,            # IN/OUT (T+1, batch, u), hs[0] = h0
                floating[:, ::1] rec,              # scratch (batch, 3u)
                floating[:, :, ::1] yseq,          # OUT (batch, T, u) or None
                floating[:, ::1] ylast,            # OUT (batch, u) last output
                int act, double alpha, int ract, double ralpha, bint reverse,
                bint zero_output_for_mask, bint zero_state, bint approx, int n_threads):
    """Keras GRU with reset_after: z, r = ract(x W + b_i + h U + b_r) (z, r parts);
    h~ = act(x W_h + b_ih + r * (h U_h + b_rh));  h := z * h + (1 - z) * h~."""
    cdef int batch = x.shape[0], T = x.shape[1], nin = x.shape[2], u = rkernel.shape[0]
    cdef int nt, t, r0, r1
    cdef bint fast = approx and act == TANH and ract == SIGMOID
    cdef const floating* bias_p = <const floating*>NULL if bias is None else &bias[0, 0]
    cdef const unsigned char* mask_p = <const unsigned char*>NULL if mask is None else &mask[0, 0]
    cdef const floating* keep_p = <const floating*>NULL if keep is None else &keep[0, 0]
    cdef floating* yseq_p = NULL if yseq is None else &yseq[0, 0, 0]
    cdef floating[::1] zeros
    cdef const floating* brec
    if batch == 0 or T == 0:
        return
    if bias is None:
        import numpy as np
        zeros = np.zeros(3 * u, dtype=np.float32 if floating is float else np.float64)
        brec = &zeros[0]
    else:
        brec = &bias[1, 0]
    cdef Py_ssize_t used = 0   # the packed kernel, then the packed recurrent kernel
    cdef const floating* kp = pack_operand(packed, &used, nin, 3 * u, &kernel[0, 0], 3 * u, False)
    project_all_inputs(&x[0, 0, 0], batch, T, nin, keep_p, reverse, kp, 3 * u, bias_p,
                       &xt[0, 0, 0], &z[0, 0, 0], n_threads)
    cdef const floating* rkp = pack_operand(packed, &used, u, 3 * u, &rkernel[0, 0], 3 * u, False)
    nt = step_threads(T, batch, u, 3 * u, n_threads)
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        r0 = block_start(batch, nt, t)
        r1 = block_start(batch, nt, t + 1)
        if r1 > r0:
            gru_forward_rows(&z[0, 0, 0], &a[0, 0, 0], &rh[0, 0, 0], &hs[0, 0, 0], &rec[0, 0],
                             rkp, brec, mask_p, yseq_p, &ylast[0, 0], T, batch, u,
                             act, alpha, ract, ralpha, reverse, zero_output_for_mask, zero_state,
                             fast, r0, r1)


cdef void gru_gate_grads_generic(const floating* z, const floating* a, const floating* rh,
                                 const floating* hp, const floating* g, floating* dr,
                                 floating* dxh, floating* dhp, int u, int act, double alpha,
                                 int ract, double ralpha) noexcept nogil:
    """One row: dr (3u) := dL/d(h_prev @ U + b_r); dxh (u) := dL/d(candidate input part);
    dhp (u) := g * z, the direct part of dL/dh_prev."""
    cdef int j
    cdef double zg, rg, hh, dph
    for j in range(u):
        zg = a[j]
        rg = a[u + j]
        hh = a[2 * u + j]
        dph = g[j] * (1.0 - zg) * act_derivative(act, alpha, z[2 * u + j], hh)   # candidate pre-activation
        dr[j] = <floating>(g[j] * (hp[j] - hh) * act_derivative(ract, ralpha, z[j], zg))   # update gate
        dr[u + j] = <floating>(dph * rh[j] * act_derivative(ract, ralpha, z[u + j], rg))   # reset gate
        dr[2 * u + j] = <floating>(dph * rg)   # recurrent part of the candidate
        dxh[j] = <floating>dph                 # input part of the candidate
        dhp[j] = <floating>(g[j] * zg)         # h_prev through the update gate


cdef void gru_backward_rows(const floating* z, const floating* a, const floating* rh,
                            const floating* hs, const floating* rkp,
                            const unsigned char* mask, const int* first_on,
                            const floating* dyseq, floating* dr, floating* dxh, floating* dh,
                            floating* g, int T, int batch, int u, int act, double alpha,
                            int ract, double ralpha, bint reverse, bint zero_output,
                            bint need_dh0, bint fast, int b0, int b1) noexcept nogil:
    cdef int s, b, nr = b1 - b0
    cdef Py_ssize_t step = <Py_ssize_t>batch * u, o, o3
    for s in range(T - 1, -1, -1):
        gather_dh(dh, dyseq, mask, first_on, T, u, s, reverse, zero_output, g, b0, b1)
        for b in range(b0, b1):
            o = <Py_ssize_t>b * u
            o3 = 3 * (s * step + o)
            if step_on(mask, T, b, input_time(s, T, reverse)):
                if floating is float and fast:
                    gru_backward_row_f(u, a + o3, rh + s * step + o, hs + s * step + o, g + o,
                                       dr + o3, dxh + s * step + o, dh + o)
                else:
                    gru_gate_grads_generic(z + o3, a + o3, rh + s * step + o, hs + s * step + o,
                                           g + o, dr + o3, dxh + s * step + o, dh + o, u, act,
                                           alpha, ract, ralpha)
            else:
                # skipped step: no gate gradient; dL/dh passes through unchanged
                memset(dr + o3, 0, 3 * u * sizeof(floating))
                memset(dxh + s * step + o, 0, u * sizeof(floating))
                memcpy(dh + o, g + o, u * sizeof(floating))
        # gradient with respect to h_{s-1}: dh (direct part) += dr @ rkernel^T
        if s > 0 or need_dh0:
            packed_matmul(dr + 3 * (s * step + <Py_ssize_t>b0 * u), 3 * u, rkp,
                          dh + <Py_ssize_t>b0 * u, u, nr, 3 * u, u, True)


def gru_backward(const floating[:, :, ::1] xt,      # IN  (T, batch, in) from forward
                 const floating[:, ::1] kernel,     # IN  (in, 3u)
                 const floating[:, ::1] rkernel,    # IN  (u, 3u)
                 floating[::1] packed,              # scratch (packed_scratch_size(u, width),)
                 const unsigned char[:, ::1] mask,  # IN  (batch, T) or None
                 const floating[:, ::1] keep,       # IN  (batch, in) or None
                 const floating[:, :, ::1] z,       # IN  (T, batch, 3u) from forward
                 const floating[:, :, ::1] a,       # IN  (T, batch, 3u) from forward
                 const floating[:, :, ::1] rh,      # IN  (T, batch, u) from forward
                 const floating[:, :, ::1] hs,      # IN  (T+1, batch, u) from forward
                 const floating[:, :, ::1] dyseq,   # IN  (batch, T, u) or None
                 const floating[:, ::1] dylast,     # IN  (batch, u) or None
                 const floating[:, ::1] dhT,        # IN  (batch, u) dL/d(final h), or None
                 floating[:, :, ::1] dr,            # OUT (T, batch, 3u) scratch: dL/d(recurrent projection)
                 floating[:, :, ::1] dxh,           # OUT (T, batch, u) scratch: dL/d(candidate input part)
                 floating[:, ::1] dh,               # OUT (batch, u) dL/dh0
                 floating[:, ::1] g,                # scratch (batch, u)
                 int[::1] first_on,                 # scratch (batch,)
                 floating[:, ::1] dkernel,          # OUT (in, 3u) or None
                 floating[:, ::1] drkernel,         # OUT (u, 3u) or None
                 floating[:, ::1] dbias,            # OUT (2, 3u) or None
                 floating[:, :, ::1] dxt,           # scratch (T, batch, in), or None
                 floating[:, :, ::1] dx,            # OUT (batch, T, in) or None
                 int act, double alpha, int ract, double ralpha, bint reverse,
                 bint zero_output_for_mask, bint need_dh0, bint accumulate, bint approx,
                 int n_threads):
    """Backpropagation through time; weight gradients (+)= when accumulate.

    The input projection's gradient is [dr[:, :2u] | dxh]; the recurrent projection's is dr.
    """
    cdef int batch = hs.shape[1], T = z.shape[0], u = rkernel.shape[0]
    cdef int nt, t, r0, r1
    cdef bint fast = approx and act == TANH and ract == SIGMOID
    cdef const unsigned char* mask_p = <const unsigned char*>NULL if mask is None else &mask[0, 0]
    cdef const floating* dyseq_p = <const floating*>NULL if dyseq is None else &dyseq[0, 0, 0]
    cdef const floating* dylast_p = <const floating*>NULL if dylast is None else &dylast[0, 0]
    cdef const floating* dhT_p = <const floating*>NULL if dhT is None else &dhT[0, 0]
    if batch == 0 or T == 0:
        return
    cdef Py_ssize_t used = 0
    cdef const floating* rkp = pack_operand(packed, &used, 3 * u, u, &rkernel[0, 0], 3 * u, True)
    nt = step_threads(T, batch, u, 3 * u, n_threads)
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        r0 = block_start(batch, nt, t)
        r1 = block_start(batch, nt, t + 1)
        if r1 > r0:
            first_steps(mask_p, T, r0, r1, reverse, &first_on[0])
            start_backward(dylast_p, dhT_p, <floating*>NULL, mask_p,
                           &first_on[0], T, u, reverse, zero_output_for_mask, &dh[0, 0],
                           <floating*>NULL, r0, r1)
            gru_backward_rows(&z[0, 0, 0], &a[0, 0, 0], &rh[0, 0, 0], &hs[0, 0, 0],
                              rkp, mask_p, &first_on[0], dyseq_p, &dr[0, 0, 0],
                              &dxh[0, 0, 0], &dh[0, 0], &g[0, 0], T, batch, u, act, alpha, ract,
                              ralpha, reverse, zero_output_for_mask, need_dh0, fast, r0, r1)
    cdef floating[::1] db_in = None
    cdef floating[::1] db_rec = None
    if dbias is not None:
        db_in = dbias[0]
        db_rec = dbias[1]
    cdef floating[:, :, ::1] no_hs2 = None
    parameter_grads(xt, hs, no_hs2, 0, dr, dxh, 2 * u, kernel, keep, dkernel, drkernel, db_in,
                    db_rec, dxt, dx, packed, used, reverse, accumulate, n_threads)


# ------------------------------------------------------------------------------------ GRU, reset_before
# Keras GRU(reset_after=False): the reset gate multiplies h_{s-1} before its product with the
# candidate's recurrent kernel, so a step runs two GEMMs: h_{s-1} @ U[:, :2u] for the gates, then
# (r * h_{s-1}) @ U[:, 2u:] for the candidate. One bias (3u,), added to the input projection.
cdef void gru_rb_gates_generic(floating* z, const floating* rec, floating* a, const floating* hp,
                               floating* rhp, int n_rows, int u, int ract, double ralpha) noexcept nogil:
    cdef int r, j
    cdef Py_ssize_t o3, o
    cdef double pz, pr, rg
    for r in range(n_rows):
        o3 = <Py_ssize_t>r * 3 * u
        o = <Py_ssize_t>r * u
        for j in range(u):
            pz = z[o3 + j] + rec[o3 + j]
            pr = z[o3 + u + j] + rec[o3 + u + j]
            rg = act_forward(ract, ralpha, pr)
            z[o3 + j] = <floating>pz
            z[o3 + u + j] = <floating>pr
            a[o3 + j] = <floating>act_forward(ract, ralpha, pz)
            a[o3 + u + j] = <floating>rg
            rhp[o + j] = <floating>(rg * hp[o + j])


cdef void gru_rb_candidate_generic(floating* z, const floating* rec, floating* a, const floating* hp,
                                   floating* h, int n_rows, int u, int act, double alpha) noexcept nogil:
    cdef int r, j
    cdef Py_ssize_t o3, o
    cdef double ph, hh, zg
    for r in range(n_rows):
        o3 = <Py_ssize_t>r * 3 * u
        o = <Py_ssize_t>r * u
        for j in range(u):
            ph = z[o3 + 2 * u + j] + rec[o3 + 2 * u + j]
            hh = act_forward(act, alpha, ph)
            zg = a[o3 + j]
            z[o3 + 2 * u + j] = <floating>ph
            a[o3 + 2 * u + j] = <floating>hh
            h[o + j] = <floating>(zg * hp[o + j] + (1.0 - zg) * hh)


cdef void gru_rb_forward_rows(floating* z, floating* a, floating* rhp, floating* hs, floating* rec,
                              const floating* rkp, const floating* rkp_h, const unsigned char* mask, floating* yseq,
                              floating* ylast, int T, int batch, int u, int act, double alpha,
                              int ract, double ralpha, bint reverse, bint zero_output,
                              bint zero_state, bint fast, int b0, int b1) noexcept nogil:
    cdef int s, nr = b1 - b0
    cdef Py_ssize_t step = <Py_ssize_t>batch * u, off = <Py_ssize_t>b0 * u
    cdef floating* recb = rec + 3 * off
    cdef floating* zs
    cdef floating* as_
    clear_rows(ylast, u, b0, b1)
    for s in range(T):
        zs = z + 3 * (s * step + off)
        as_ = a + 3 * (s * step + off)
        if s == 0 and zero_state:   # h_{-1} = 0: both recurrent products are zero
            memset(recb, 0, 3 * nr * u * sizeof(floating))
        else:   # the gates' recurrent part: h_{s-1} @ rkernel[:, :2u]
            packed_matmul(hs + s * step + off, u, rkp, recb, 3 * u, nr, u, 2 * u, False)
        if floating is float and fast:
            gru_rb_gates_rows_f(nr, u, zs, recb, as_, hs + s * step + off, rhp + s * step + off)
        else:
            gru_rb_gates_generic(zs, recb, as_, hs + s * step + off, rhp + s * step + off, nr, u,
                                 ract, ralpha)
        if not (s == 0 and zero_state):   # the candidate's: (r * h_{s-1}) @ rkernel[:, 2u:]
            packed_matmul(rhp + s * step + off, u, rkp_h, recb + 2 * u, 3 * u, nr, u, u, False)
        if floating is float and fast:
            gru_rb_candidate_rows_f(nr, u, zs, recb, as_, hs + s * step + off,
                                    hs + (s + 1) * step + off)
        else:
            gru_rb_candidate_generic(zs, recb, as_, hs + s * step + off, hs + (s + 1) * step + off,
                                     nr, u, act, alpha)
        emit_outputs(hs + (s + 1) * step + off, hs + s * step, mask, T, batch, u, s, reverse,
                     zero_output, hs + (s + 1) * step, yseq, ylast, b0, b1, 0, u)


def gru_reset_before_forward(const floating[:, :, ::1] x,      # IN  (batch, T, in)
                             const floating[:, ::1] kernel,     # IN  (in, 3u)   gates z, r, h
                             const floating[:, ::1] rkernel,    # IN  (u, 3u)
                             floating[::1] packed,              # scratch (packed_scratch_size(u, width),)
                             const floating[::1] bias,          # IN  (3u,) or None
                             const unsigned char[:, ::1] mask,  # IN  (batch, T) or None
                             const floating[:, ::1] keep,       # IN  (batch, in) or None
                             floating[:, :, ::1] xt,            # OUT (T, batch, in)
                             floating[:, :, ::1] z,             # OUT (T, batch, 3u) pre-activations
                             floating[:, :, ::1] a,             # OUT (T, batch, 3u) activations z, r, h~
                             floating[:, :, ::1] rhp,           # OUT (T, batch, u) r * h_{s-1}
                             floating[:, :, ::1] hs,            # IN/OUT (T+1, batch, u), hs[0] = h0
                             floating[:, ::1] rec,              # scratch (batch, 3u)
                             floating[:, :, ::1] yseq,          # OUT (batch, T, u) or None
                             floating[:, ::1] ylast,            # OUT (batch, u) last output
                             int act, double alpha, int ract, double ralpha, bint reverse,
                             bint zero_output_for_mask, bint zero_state, bint approx,
                             int n_threads):
    """Keras GRU with reset_after=False: z, r = ract(x W_{z,r} + b_{z,r} + h U_{z,r});
    h~ = act(x W_h + b_h + (r * h) U_h);  h := z * h + (1 - z) * h~."""
    cdef int batch = x.shape[0], T = x.shape[1], nin = x.shape[2], u = rkernel.shape[0]
    cdef int nt, t, r0, r1
    cdef bint fast = approx and act == TANH and ract == SIGMOID
    cdef const floating* bias_p = <const floating*>NULL if bias is None else &bias[0]
    cdef const unsigned char* mask_p = <const unsigned char*>NULL if mask is None else &mask[0, 0]
    cdef const floating* keep_p = <const floating*>NULL if keep is None else &keep[0, 0]
    cdef floating* yseq_p = NULL if yseq is None else &yseq[0, 0, 0]
    if batch == 0 or T == 0:
        return
    cdef Py_ssize_t used = 0   # the packed kernel, then the packed recurrent kernel
    cdef const floating* kp = pack_operand(packed, &used, nin, 3 * u, &kernel[0, 0], 3 * u, False)
    project_all_inputs(&x[0, 0, 0], batch, T, nin, keep_p, reverse, kp, 3 * u, bias_p,
                       &xt[0, 0, 0], &z[0, 0, 0], n_threads)
    cdef const floating* rkp = pack_operand(packed, &used, u, 2 * u, &rkernel[0, 0], 3 * u, False)
    cdef const floating* rkp_h = pack_operand(packed, &used, u, u, &rkernel[0, 2 * u], 3 * u, False)
    nt = step_threads(T, batch, u, 3 * u, n_threads)
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        r0 = block_start(batch, nt, t)
        r1 = block_start(batch, nt, t + 1)
        if r1 > r0:
            gru_rb_forward_rows(&z[0, 0, 0], &a[0, 0, 0], &rhp[0, 0, 0], &hs[0, 0, 0], &rec[0, 0],
                                rkp, rkp_h, mask_p, yseq_p, &ylast[0, 0], T, batch, u, act,
                                alpha, ract, ralpha, reverse, zero_output_for_mask, zero_state,
                                fast, r0, r1)


cdef void gru_rb_backward1_generic(const floating* z, const floating* a, const floating* hp,
                                   const floating* g, floating* dz, floating* dh, int u, int act,
                                   double alpha, int ract, double ralpha) noexcept nogil:
    """One row: update gate and candidate pre-activation gradients; dh := g * zg."""
    cdef int j
    cdef double zg, hh
    for j in range(u):
        zg = a[j]
        hh = a[2 * u + j]
        dz[j] = <floating>(g[j] * (hp[j] - hh) * act_derivative(ract, ralpha, z[j], zg))      # update gate
        dz[2 * u + j] = <floating>(g[j] * (1.0 - zg) * act_derivative(act, alpha, z[2 * u + j], hh))  # candidate
        dh[j] = <floating>(g[j] * zg)   # h_prev through the update gate


cdef void gru_rb_backward2_generic(const floating* z, const floating* a, const floating* hp,
                                   const floating* drhp, floating* dz, floating* dh, int u,
                                   int ract, double ralpha) noexcept nogil:
    """One row, after drhp = dL/d(r * h_prev): the reset gate's gradient; dh += drhp * r."""
    cdef int j
    cdef double rg
    for j in range(u):
        rg = a[u + j]
        dz[u + j] = <floating>(drhp[j] * hp[j] * act_derivative(ract, ralpha, z[u + j], rg))   # reset gate
        dh[j] = <floating>(dh[j] + drhp[j] * rg)   # h_prev through r * h_prev


cdef void gru_rb_backward_rows(const floating* z, const floating* a, const floating* hs,
                               const floating* rkp, const floating* rkp_h, const unsigned char* mask,
                               const int* first_on, const floating* dyseq, floating* dz,
                               floating* drhp, floating* dh, floating* g, int T, int batch, int u,
                               int act, double alpha, int ract, double ralpha, bint reverse,
                               bint zero_output, bint need_dh0, bint fast,
                               int b0, int b1) noexcept nogil:
    cdef int s, b, nr = b1 - b0
    cdef Py_ssize_t step = <Py_ssize_t>batch * u, o, o3, off = <Py_ssize_t>b0 * u
    for s in range(T - 1, -1, -1):
        gather_dh(dh, dyseq, mask, first_on, T, u, s, reverse, zero_output, g, b0, b1)
        for b in range(b0, b1):
            o = <Py_ssize_t>b * u
            o3 = 3 * (s * step + o)
            if step_on(mask, T, b, input_time(s, T, reverse)):
                if floating is float and fast:
                    gru_rb_backward1_f(u, a + o3, hs + s * step + o, g + o, dz + o3, dh + o)
                else:
                    gru_rb_backward1_generic(z + o3, a + o3, hs + s * step + o, g + o, dz + o3,
                                             dh + o, u, act, alpha, ract, ralpha)
            else:
                # skipped step: no gate gradient; dL/dh passes through unchanged
                memset(dz + o3, 0, 3 * u * sizeof(floating))
                memcpy(dh + o, g + o, u * sizeof(floating))
        # gradient with respect to r * h_{s-1}: the candidate's gradient @ rkernel[:, 2u:]^T
        packed_matmul(dz + 3 * (s * step + off) + 2 * u, 3 * u, rkp_h, drhp + off, u, nr, u, u, False)
        for b in range(b0, b1):
            o = <Py_ssize_t>b * u
            if step_on(mask, T, b, input_time(s, T, reverse)):
                if floating is float and fast:
                    gru_rb_backward2_f(u, a + 3 * (s * step + o) + u, hs + s * step + o, drhp + o,
                                       dz + 3 * (s * step + o) + u, dh + o)
                else:
                    gru_rb_backward2_generic(z + 3 * (s * step + o), a + 3 * (s * step + o),
                                             hs + s * step + o, drhp + o, dz + 3 * (s * step + o),
                                             dh + o, u, ract, ralpha)
        # gradient with respect to h_{s-1} through the gates: dh += dz[:, :2u] @ rkernel[:, :2u]^T
        if s > 0 or need_dh0:
            packed_matmul(dz + 3 * (s * step + off), 3 * u, rkp, dh + off, u, nr, 2 * u, u, True)


def gru_reset_before_backward(const floating[:, :, ::1] xt,      # IN  (T, batch, in) from forward
                              const floating[:, ::1] kernel,     # IN  (in, 3u)
                              const floating[:, ::1] rkernel,    # IN  (u, 3u)
                              floating[::1] packed,              # scratch (packed_scratch_size(u, width),)
                              const unsigned char[:, ::1] mask,  # IN  (batch, T) or None
                              const floating[:, ::1] keep,       # IN  (batch, in) or None
                              const floating[:, :, ::1] z,       # IN  (T, batch, 3u) from forward
                              const floating[:, :, ::1] a,       # IN  (T, batch, 3u) from forward
                              const floating[:, :, ::1] rhp,     # IN  (T, batch, u) from forward
                              const floating[:, :, ::1] hs,      # IN  (T+1, batch, u) from forward
                              const floating[:, :, ::1] dyseq,   # IN  (batch, T, u) or None
                              const floating[:, ::1] dylast,     # IN  (batch, u) or None
                              const floating[:, ::1] dhT,        # IN  (batch, u) or None
                              floating[:, :, ::1] dz,            # OUT (T, batch, 3u) scratch: dL/d(pre-activations)
                              floating[:, ::1] drhp,             # scratch (batch, u)
                              floating[:, ::1] dh,               # OUT (batch, u) dL/dh0
                              floating[:, ::1] g,                # scratch (batch, u)
                              int[::1] first_on,                 # scratch (batch,)
                              floating[:, ::1] dkernel,          # OUT (in, 3u) or None
                              floating[:, ::1] drkernel,         # OUT (u, 3u) or None
                              floating[::1] dbias,               # OUT (3u,) or None
                              floating[:, :, ::1] dxt,           # scratch (T, batch, in), or None
                              floating[:, :, ::1] dx,            # OUT (batch, T, in) or None
                              int act, double alpha, int ract, double ralpha, bint reverse,
                              bint zero_output_for_mask, bint need_dh0, bint accumulate,
                              bint approx, int n_threads):
    """Backpropagation through time; weight gradients (+)= when accumulate. The recurrent
    kernel's candidate columns multiply r * h_{s-1} (rhp), the gates' columns h_{s-1}."""
    cdef int batch = hs.shape[1], T = z.shape[0], u = rkernel.shape[0]
    cdef int nt, t, r0, r1
    cdef bint fast = approx and act == TANH and ract == SIGMOID
    cdef const unsigned char* mask_p = <const unsigned char*>NULL if mask is None else &mask[0, 0]
    cdef const floating* dyseq_p = <const floating*>NULL if dyseq is None else &dyseq[0, 0, 0]
    cdef const floating* dylast_p = <const floating*>NULL if dylast is None else &dylast[0, 0]
    cdef const floating* dhT_p = <const floating*>NULL if dhT is None else &dhT[0, 0]
    if batch == 0 or T == 0:
        return
    cdef Py_ssize_t used = 0   # U[:, :2u]^T and U[:, 2u:]^T
    cdef const floating* rkp = pack_operand(packed, &used, 2 * u, u, &rkernel[0, 0], 3 * u, True)
    cdef const floating* rkp_h = pack_operand(packed, &used, u, u, &rkernel[0, 2 * u], 3 * u, True)
    nt = step_threads(T, batch, u, 3 * u, n_threads)
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        r0 = block_start(batch, nt, t)
        r1 = block_start(batch, nt, t + 1)
        if r1 > r0:
            first_steps(mask_p, T, r0, r1, reverse, &first_on[0])
            start_backward(dylast_p, dhT_p, <floating*>NULL, mask_p, &first_on[0], T, u, reverse,
                           zero_output_for_mask, &dh[0, 0], <floating*>NULL, r0, r1)
            gru_rb_backward_rows(&z[0, 0, 0], &a[0, 0, 0], &hs[0, 0, 0], rkp, rkp_h, mask_p,
                                 &first_on[0], dyseq_p, &dz[0, 0, 0], &drhp[0, 0], &dh[0, 0],
                                 &g[0, 0], T, batch, u, act, alpha, ract, ralpha, reverse,
                                 zero_output_for_mask, need_dh0, fast, r0, r1)
    cdef floating[:, :, ::1] no_dz2 = None
    cdef floating[::1] no_dbias2 = None
    parameter_grads(xt, hs, rhp, 2 * u, dz, no_dz2, 3 * u, kernel, keep, dkernel, drkernel, dbias,
                    no_dbias2, dxt, dx, packed, used, reverse, accumulate, n_threads)


def packed_product(const floating[:, ::1] a,      # IN  (M, K), or (K, M) when transpose_a
                   const floating[:, ::1] b,      # IN  (K, N), or (N, K) when transpose_b
                   floating[:, ::1] out,          # IN/OUT (M, N)
                   bint transpose_a, bint transpose_b, bint accumulate):
    """out := op(a) @ op(b) (+ out when accumulate) at the level in force (packed_level), for tests:
    a @ b or a @ b.T through the per-step products' packing and kernels; a.T @ b through the
    weight gradients' kernel (matmul_tn)."""
    import numpy as np
    cdef int M = a.shape[1] if transpose_a else a.shape[0], K = a.shape[0] if transpose_a else a.shape[1]
    cdef int N = b.shape[0] if transpose_b else b.shape[1]
    if (transpose_a and transpose_b) or (b.shape[1] if transpose_b else b.shape[0]) != K \
            or out.shape[0] != M or out.shape[1] != N:
        raise ValueError(f"packed_product: shapes ({a.shape[0]}, {a.shape[1]}){'.T' if transpose_a else ''} @ "
                         f"({b.shape[0]}, {b.shape[1]}){'.T' if transpose_b else ''} -> "
                         f"({out.shape[0]}, {out.shape[1]}) do not match (or both transposed)")
    cdef floating[::1] scratch = np.zeros(pg_packed_size(K, N) + CYDNN_PG_ALIGN,
                                          dtype=np.float32 if floating is float else np.float64)
    cdef Py_ssize_t used = 0
    cdef const floating* bp
    cdef pg_seg seg[1]
    if transpose_a:
        add_seg(seg, 0, &a[0, 0], M, M, &out[0, 0], N)
        with nogil:
            matmul_tn(1, seg, N, K, &b[0, 0], N, accumulate)
        return
    bp = pack_operand(scratch, &used, K, N, &b[0, 0], b.shape[1], transpose_b)
    with nogil:
        packed_matmul(&a[0, 0], K, bp, &out[0, 0], N, M, K, N, accumulate)


def packed_weight_grads(const floating[:, ::1] b, list parts, list outs, bint accumulate):
    """For tests: in one call of the weight gradients' kernel (matmul_tn), at the level in force,
    outs[i] := parts[i].T @ b (+ outs[i] when accumulate), parts[i] (K, m_i) and outs[i] (m_i, N);
    where parts[i] is None, outs[i] (1, N) receives b's column sums. At most 4 parts."""
    cdef pg_seg seg[4]
    cdef int i, n = len(parts), K = b.shape[0], N = b.shape[1]
    cdef const floating[:, ::1] a
    cdef floating[:, ::1] c
    if n != len(outs) or not 1 <= n <= 4:
        raise ValueError(f"packed_weight_grads: expected 1 to 4 parts and as many outputs, "
                         f"received {n} parts and {len(outs)} outputs")
    for i in range(n):
        c = outs[i]
        if parts[i] is None:
            if c.shape[0] != 1 or c.shape[1] != N:
                raise ValueError(f"packed_weight_grads: output {i} (column sums) must be (1, {N}), "
                                 f"received ({c.shape[0]}, {c.shape[1]})")
            add_seg(seg, i, NULL, 0, 1, &c[0, 0], N)
        else:
            a = parts[i]
            if a.shape[0] != K or c.shape[0] != a.shape[1] or c.shape[1] != N:
                raise ValueError(f"packed_weight_grads: part {i} ({a.shape[0]}, {a.shape[1]}).T @ "
                                 f"({K}, {N}) -> ({c.shape[0]}, {c.shape[1]}) do not match")
            add_seg(seg, i, &a[0, 0], a.shape[1], a.shape[1], &c[0, 0], N)
    with nogil:
        matmul_tn(n, seg, N, K, &b[0, 0], N, accumulate)
