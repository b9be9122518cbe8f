# LSTM cell, gates i, f, c~, o: i, f, o = ract(.), c~ = act(.) of x @ kernel + h @ rkernel + bias;
# c := f * c + i * c~;  h := o * act(c). Folds its input projection; a small batch may split its
# units over the threads instead of its rows (driver.pxi).

cdef extern from "recurrent/lstm.h":
    void lstm_forward_rows_f "cydnn_lstm_forward_rows_f"(int nr, int u, int j0, int j1,
        const float* z, float* a, const float* cp, float* c, float* t, float* h) noexcept nogil
    void lstm_backward_row_f "cydnn_lstm_backward_row_f"(int u, const float* a, const float* cp,
        const float* t, const float* g, float* dc, float* dz) noexcept nogil


# ---------------------------------------------------------------------------------- forward
cdef void lstm_cell_generic(const floating* z, floating* a, const floating* cp, floating* c,
                            floating* tc, floating* h, int n_rows, int u, int j0, int j1, int act,
                            double alpha, int ract, double ralpha) noexcept nogil:
    """The twin of lstm_forward_rows_f for any activations (double-precision math), units j0..j1
    of each row."""
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


cdef void lstm_step_cells(const rnn_call* c, floating* zs, floating* hs, int s, int b0, int b1,
                          int j0, int j1) noexcept nogil:
    """The cells of step s for rows b0..b1 and units j0..j1, zs the step's z from row b0 on: the
    gates and states, and the cell state carried through skipped steps."""
    cdef int b, u = c.u
    cdef Py_ssize_t step = <Py_ssize_t>c.batch * u, off = <Py_ssize_t>b0 * u, o
    cdef floating* as_ = <floating*>c.a + 4 * (s * step + off)
    cdef floating* cs = <floating*>c.cs
    cdef floating* tc = <floating*>c.tc
    if floating is float and c.fast:
        lstm_forward_rows_f(b1 - b0, u, j0, j1, zs, as_, cs + s * step + off,
                            cs + (s + 1) * step + off, tc + s * step + off, hs + (s + 1) * step + off)
    else:
        lstm_cell_generic(zs, as_, cs + s * step + off, cs + (s + 1) * step + off,
                          tc + s * step + off, hs + (s + 1) * step + off, b1 - b0, u, j0, j1,
                          c.act, c.alpha, c.ract, c.ralpha)
    if c.mask != NULL:   # skipped steps carry the cell state
        for b in range(b0, b1):
            if not step_on(c.mask, c.T, b, input_time(s, c.T, c.reverse)):
                o = <Py_ssize_t>b * u + j0
                memcpy(cs + (s + 1) * step + o, cs + s * step + o, (j1 - j0) * sizeof(floating))


cdef void lstm_forward_step(const rnn_call* c, floating* hs, int s, int b0, int b1) noexcept nogil:
    """Step s for rows b0..b1: z := bias + x_s @ kernel + h_{s-1} @ rkernel (the first two terms
    in z already unless folded), then the cells."""
    cdef int u = c.u, nin = c.nin
    cdef Py_ssize_t step = <Py_ssize_t>c.batch * u, off = <Py_ssize_t>b0 * u
    # the backward of the fast cells reads only a: with the projection folded in, one step's rows
    # of z serve every step (6.5 MB less to write at the benchmark's size)
    cdef floating* zs = <floating*>c.z + 4 * ((0 if (c.fold and c.fast) else s * step) + off)
    step_product(<const floating*>c.xt + (<Py_ssize_t>s * c.batch + b0) * nin, nin,
                 <const floating*>c.kp, nin if c.fold else 0, hs + s * step + off, u,
                 <const floating*>c.rkp, 0 if (s == 0 and c.zero_state) else u,
                 <const floating*>c.bias, zs, 4 * u, b1 - b0, 4 * u, not c.fold)
    lstm_step_cells(c, zs, hs, s, b0, b1, 0, u)


cdef void lstm_units_prepare(const rnn_call* c, floating* kp, floating* rkp, int j0,
                             int j1) noexcept nogil:
    """Unit split, by the thread owning units j0..j1 (whole panels): pack those columns of every
    gate of the kernels into kp and rkp (room for all columns) and project the inputs onto them,
    z := bias + xt @ kernel there."""
    cdef int g, c0, u = c.u, nin = c.nin
    for g in range(4):
        c0 = g * u + j0
        pack_into(nin, j1 - j0, <const floating*>c.kernel + c0, 4 * u, False, kp + <Py_ssize_t>c0 * nin)
        pack_into(u, j1 - j0, <const floating*>c.rkernel + c0, 4 * u, False, rkp + <Py_ssize_t>c0 * u)
        step_product(<const floating*>c.xt, nin, kp + <Py_ssize_t>c0 * nin, nin, NULL, 0, NULL, 0,
                     <const floating*>NULL if c.bias == NULL else <const floating*>c.bias + c0,
                     <floating*>c.z + c0, 4 * u, c.T * c.batch, j1 - j0, False)


cdef void lstm_units_step(const rnn_call* c, const floating* rkp, floating* hs, int s, int j0,
                          int j1) noexcept nogil:
    """Unit split: step s for units j0..j1 of every row: z[:, gate g's columns of them] += h @
    those of rkernel, then the cells. Every entry is the same sum as in lstm_forward_step."""
    cdef int g, u = c.u, batch = c.batch
    cdef Py_ssize_t step = <Py_ssize_t>batch * u
    cdef floating* zs = <floating*>c.z + 4 * s * step
    if not (s == 0 and c.zero_state):
        for g in range(4):
            packed_matmul(hs + s * step, u, rkp + <Py_ssize_t>(g * u + j0) * u, zs + g * u + j0,
                          4 * u, batch, u, j1 - j0, True)
    lstm_step_cells(c, zs, hs, s, 0, batch, j0, j1)


# ---------------------------------------------------------------------------------- backward
cdef void lstm_gate_grads_generic(const floating* z, const floating* a, const floating* cp,
                                  const floating* c, const floating* tc, const floating* g,
                                  floating* dc, floating* dz, int u, int act, double alpha,
                                  int ract, double ralpha) noexcept nogil:
    """The twin of lstm_backward_row_f: one row, dz (4u) := dL/d(pre-activations); dc :=
    dL/dc_prev (in: dL/dc)."""
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


cdef void lstm_backward_step(const rnn_call* c, floating* hs, int s, int b0, int b1) noexcept nogil:
    """Step s for rows b0..b1, g = dL/dh_s: dz and the carry dc; dh := dz @ rkernel^T (added to
    the pass-through of skipped rows)."""
    cdef int b, u = c.u, nr = b1 - b0
    cdef Py_ssize_t step = <Py_ssize_t>c.batch * u, o, o4
    cdef const floating* z = <const floating*>c.z
    cdef const floating* a = <const floating*>c.a
    cdef const floating* cs = <const floating*>c.cs
    cdef const floating* tc = <const floating*>c.tc
    cdef const floating* g = <const floating*>c.g
    cdef floating* dz = <floating*>c.dz
    cdef floating* dh = <floating*>c.dh
    cdef floating* dc = <floating*>c.dc
    for b in range(b0, b1):
        o = <Py_ssize_t>b * u
        o4 = 4 * (s * step + o)
        if step_on(c.mask, c.T, b, input_time(s, c.T, c.reverse)):
            if floating is float and c.fast:
                lstm_backward_row_f(u, a + o4, cs + s * step + o, tc + s * step + o, g + o,
                                    dc + o, dz + o4)
            else:
                lstm_gate_grads_generic(z + o4, a + o4, cs + s * step + o, cs + (s + 1) * step + o,
                                        tc + s * step + o, g + o, dc + o, dz + o4, u, c.act,
                                        c.alpha, c.ract, c.ralpha)
            if c.mask != NULL:
                memset(dh + o, 0, u * sizeof(floating))
        else:
            # skipped step: no gate gradient; dL/dh and dL/dc pass through unchanged
            memset(dz + o4, 0, 4 * u * sizeof(floating))
            memcpy(dh + o, g + o, u * sizeof(floating))
    if s > 0 or c.need_dh0:
        packed_matmul(dz + 4 * (s * step + <Py_ssize_t>b0 * u), 4 * u, <const floating*>c.rkp,
                      dh + <Py_ssize_t>b0 * u, u, nr, 4 * u, u, c.mask != NULL)
