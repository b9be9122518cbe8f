# After backpropagation through time: the weight gradients in one pass over dz (every entry a
# fixed-order sum over all T*batch rows, threads splitting the columns) and dx (packed kernel^T,
# blocks of rows), in one parallel region.

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


cdef int parameter_grads(const cell_info* info, const rnn_call* c, floating[::1] packed,
                         Py_ssize_t used, int n_threads) except -1:
    """dkernel, drkernel and the bias gradients of c (NULL: skipped) and dx. dz (T, batch, width)
    is dL/d(pre-activations); a cell with dsplit (the GRU) has dz the recurrent projection's
    gradient, the input projection's [dz[..., :split] | dz2], and dbias2 the recurrent bias's; a
    cell with rsplit multiplies rh (not h) by the recurrent kernel's columns from rsplit on. dx packs
    kernel^T into packed after its first used values (what the recurrence packed)."""
    cdef int T = c.T, batch = c.batch, width = c.width, nin = c.nin, u = c.u
    cdef int rows = T * batch, t, i, w0, w1
    cdef int split = info.dsplit * u if info.dsplit else width
    cdef int rsplit = info.rsplit * u if info.rsplit else width
    cdef const floating* dz = <const floating*>c.dz
    cdef const floating* dz2 = <const floating*>c.dz2 if info.dsplit else NULL
    cdef const floating* hs2 = <const floating*>c.rh if info.rsplit else NULL
    cdef floating* dx = <floating*>c.dx
    cdef const floating* ktp = NULL
    cdef const floating* ktp2 = NULL
    if dx != NULL:   # kernel^T (width x nin) packed; with dz2 its rows split..width apart
        ktp = pack_operand(packed, &used, split, nin, <const floating*>c.kernel, width, True)
        if split < width:
            ktp2 = pack_operand(packed, &used, width - split, nin,
                                <const floating*>c.kernel + split, width, True)
    # the weights: each thread takes a share of the columns (whole panels of 32), every entry one
    # fixed-order sum over all rows however the columns are split; dx in blocks of rows fixed by
    # the shape (every entry one fixed-order sum too), thread t a contiguous share of them.
    cdef int nbx = fixed_blocks(rows, PROJ_ROW_BLOCK) if dx != NULL else 0
    cdef int panels = (width + 31) // 32
    cdef int nt = threads_for_work(<long long>rows * width * (2 * nin + u), GEMM_GRAIN,
                                   max(max(panels, nbx), 1), n_threads)
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        w0 = min(32 * block_start(panels, nt, t), width)
        w1 = min(32 * block_start(panels, nt, t + 1), width)
        weight_grad_cols(<const floating*>c.xt, nin, <const floating*>c.hs, hs2, rsplit, u, dz,
                         width, dz2, u, split, rows, <floating*>c.dkernel, <floating*>c.drkernel,
                         <floating*>c.dbias, <floating*>c.dbias2, c.accumulate, w0, w1)
        for i in range(block_start(nbx, nt, t), block_start(nbx, nt, t + 1)):
            input_grads(dz, width, dz2, u, split, ktp, ktp2, nin, width,
                        <const floating*>c.keep, batch, T, c.reverse, <floating*>c.dxt, dx,
                        block_start(rows, nbx, i), block_start(rows, nbx, i + 1))
    return 0
