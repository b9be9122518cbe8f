# The sequence driver, written once for every cell (cells.pxi).
#
# Forward: (1) copy x into xt in processing order and project every step at once,
# z = xt @ kernel + bias, in blocks of (T*batch) rows (cells that fold it into each step's product
# skip the product from batch FOLD_MIN_BATCH on); (2) the recurrence, parallel over the batch: one
# block of rows per thread, each running the whole sequence (rows never interact), step by step
# (the cell's step, then the outputs). A cell with unit_split and a small batch instead shares each
# step's units among the threads, which meet after each step.
# Backward: per block of rows, steps T-1..0: dL/dh_s (the carry plus the output's gradient), then
# the cell's backward step (gate gradients, dL/dh_{s-1}); then the weight gradients and dx
# (grads.pxi).

def lstm_unit_threads(int T, int batch, int u, int n_threads):
    """The threads an LSTM forward of these sizes shares its units over (1: rows are shared):
    the driver's decision (core/_threads.pxd unit_threads), for tests."""
    return unit_threads(T, batch, u, 4 * u, FOLD_MIN_BATCH, n_threads)


cdef void forward_rows(int cell, const rnn_call* c, floating* hs, int b0, int b1) noexcept nogil:
    """The whole sequence for rows b0..b1 (one thread's block); hs is c.hs."""
    cdef int s, u = c.u
    cdef Py_ssize_t step = <Py_ssize_t>c.batch * u, off = <Py_ssize_t>b0 * u
    clear_rows(<floating*>c.ylast, u, b0, b1)
    for s in range(c.T):
        cell_forward_step(cell, c, hs, s, b0, b1)
        emit_outputs(hs + (s + 1) * step + off, hs + s * step, c.mask, c.T, c.batch, u, s,
                     c.reverse, c.zero_output, hs + (s + 1) * step, <floating*>c.yseq,
                     <floating*>c.ylast, b0, b1, 0, u)


cdef void forward_units(int cell, const rnn_call* c, floating* kp, floating* rkp) noexcept nogil:
    """The whole sequence for a batch too small to share by rows, called by every thread of a
    parallel region: each takes whole panels of 32 units of every row, packs and projects its
    columns (kp, rkp: room for all of them), and the team meets after each step (the next step's
    product reads all of h). Every entry is the same sum as by rows: the same bits."""
    cdef int nt = team_size(), t = threadid(), s, u = c.u
    cdef int j0 = 32 * block_start(u // 32, nt, t), j1 = 32 * block_start(u // 32, nt, t + 1)
    cdef Py_ssize_t step = <Py_ssize_t>c.batch * u
    cdef floating* hs = <floating*>c.hs
    if j1 > j0:
        cell_units_prepare(cell, c, kp, rkp, j0, j1)
    for s in range(c.T):
        if j1 > j0:
            cell_units_step(cell, c, rkp, hs, s, j0, j1)
            emit_outputs(hs + (s + 1) * step, hs + s * step, c.mask, c.T, c.batch, u, s, c.reverse,
                         c.zero_output, hs + (s + 1) * step, <floating*>c.yseq, <floating*>c.ylast,
                         0, c.batch, j0, j1)
        team_barrier()


cdef int run_forward(int cell, rnn_call* c, floating[::1] packed, int n_threads) except -1:
    """The forward pass of c (its arrays checked by the caller); packed: the packing scratch."""
    cdef const cell_info* info = &CELL_INFO[cell]
    cdef int T = c.T, batch = c.batch, nin = c.nin, u = c.u, width = c.width
    cdef int nt, t, r0, r1, ut, rsplit = info.rsplit * u if info.rsplit else width
    cdef Py_ssize_t used = 0   # the packed kernel, then the packed recurrent kernel
    cdef floating* kp
    cdef floating* rkp
    if batch == 0 or T == 0:
        return 0
    c.fold = info.folds and batch >= FOLD_MIN_BATCH
    ut = unit_threads(T, batch, u, width, FOLD_MIN_BATCH, n_threads) if info.unit_split else 1
    if ut > 1:   # a small batch: the threads share each step's units instead of its rows
        kp = reserve_packed(packed, &used, nin, width)
        rkp = reserve_packed(packed, &used, u, width)
        project_all_inputs(<const floating*>c.x, batch, T, nin, <const floating*>c.keep,
                           c.reverse, NULL, width, NULL, <floating*>c.xt, <floating*>c.z,
                           n_threads)
        clear_rows(<floating*>c.ylast, u, 0, batch)
        with nogil, parallel(num_threads=ut):
            forward_units(cell, c, kp, rkp)
        return 0
    kp = pack_operand(packed, &used, nin, width, <const floating*>c.kernel, width, False)
    c.kp = kp
    project_all_inputs(<const floating*>c.x, batch, T, nin, <const floating*>c.keep, c.reverse,
                       <const floating*>NULL if c.fold else kp, width, <const floating*>c.bias,
                       <floating*>c.xt, <floating*>c.z, n_threads)
    c.rkp = pack_operand(packed, &used, u, rsplit, <const floating*>c.rkernel, width, False)
    if rsplit < width:
        c.rkp2 = pack_operand(packed, &used, u, width - rsplit, <const floating*>c.rkernel + rsplit,
                              width, False)
    nt = step_threads(T, batch, (nin + u) if info.folds else u, width, n_threads)
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        r0 = block_start(batch, nt, t)
        r1 = block_start(batch, nt, t + 1)
        if r1 > r0:
            forward_rows(cell, c, <floating*>c.hs, r0, r1)
    return 0


cdef void backward_rows(int cell, const rnn_call* c, floating* hs, int b0, int b1) noexcept nogil:
    """Backpropagation through time for rows b0..b1 (one thread's block)."""
    cdef int s
    first_steps(c.mask, c.T, b0, b1, c.reverse, c.first_on)
    start_backward(<const floating*>c.dylast, <const floating*>c.dhT, <const floating*>c.dcT,
                   c.mask, c.first_on, c.T, c.u, c.reverse, c.zero_output, <floating*>c.dh,
                   <floating*>c.dc, b0, b1)
    for s in range(c.T - 1, -1, -1):
        gather_dh(<const floating*>c.dh, <const floating*>c.dyseq, c.mask, c.first_on, c.T, c.u, s,
                  c.reverse, c.zero_output, <floating*>c.g, b0, b1)
        cell_backward_step(cell, c, hs, s, b0, b1)


cdef int run_backward(int cell, rnn_call* c, floating[::1] packed, int n_threads) except -1:
    """The backward pass of c after run_forward (its arrays checked by the caller): the carries
    dh (dc) end as dL/d(initial states); the weight gradients (+)= when c.accumulate; dx."""
    cdef const cell_info* info = &CELL_INFO[cell]
    cdef int T = c.T, batch = c.batch, u = c.u, width = c.width
    cdef int nt, t, r0, r1, rsplit = info.rsplit * u if info.rsplit else width
    cdef Py_ssize_t used = 0   # the recurrent kernel's transpose (two row ranges: rsplit)
    if batch == 0 or T == 0:
        return 0
    c.rkp = pack_operand(packed, &used, rsplit, u, <const floating*>c.rkernel, width, True)
    if rsplit < width:
        c.rkp2 = pack_operand(packed, &used, width - rsplit, u, <const floating*>c.rkernel + rsplit,
                              width, True)
    nt = step_threads(T, batch, u, width, n_threads)
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        r0 = block_start(batch, nt, t)
        r1 = block_start(batch, nt, t + 1)
        if r1 > r0:
            backward_rows(cell, c, <floating*>c.hs, r0, r1)
    parameter_grads(info, c, packed, used, n_threads)
    return 0
