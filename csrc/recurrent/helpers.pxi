# Helpers every cell and the driver share: processing order and masks, the input projection, the
# packed products (_packed_gemm.h), the outputs of a step and the carries of backpropagation.
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
