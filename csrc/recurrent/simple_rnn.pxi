# SimpleRNN cell: h_s := act(x_s @ kernel + h_{s-1} @ rkernel + bias). Folds its input projection.

cdef extern from "recurrent/simple_rnn.h":
    void tanh_forward_f "cydnn_tanh_forward_f"(int n, const float* z, float* h) noexcept nogil
    void tanh_backward_f "cydnn_tanh_backward_f"(int n, const float* h, const float* g,
        float* dz) noexcept nogil


cdef void simple_rnn_forward_step(const rnn_call* c, floating* hs, int s, int b0,
                                  int b1) noexcept nogil:
    """Step s for rows b0..b1: z := bias + x_s @ kernel + h_{s-1} @ rkernel (no h term from a zero
    initial state; the first two terms are in z already unless folded into the step); h := act(z)."""
    cdef int j, nin = c.nin, u = c.u, nr = b1 - b0
    cdef Py_ssize_t step = <Py_ssize_t>c.batch * u, off = <Py_ssize_t>b0 * u
    cdef floating* zs = <floating*>c.z + s * step + off
    cdef floating* hnew = hs + (s + 1) * step + off
    step_product(<const floating*>c.xt + (<Py_ssize_t>s * c.batch + b0) * nin, nin,
                 <const floating*>c.kp, nin if c.fold else 0, hs + s * step + off, u,
                 <const floating*>c.rkp, 0 if (s == 0 and c.zero_state) else u,
                 <const floating*>c.bias, zs, u, nr, u, not c.fold)
    if floating is float and c.fast:
        tanh_forward_f(nr * u, zs, hnew)
    else:   # the generic twin
        for j in range(nr * u):
            hnew[j] = <floating>act_forward(c.act, c.alpha, zs[j])


cdef void simple_rnn_backward_step(const rnn_call* c, floating* hs, int s, int b0,
                                   int b1) noexcept nogil:
    """Step s for rows b0..b1, g = dL/dh_s: dz := g * act'(z); dh := dz @ rkernel^T (added to the
    pass-through of skipped rows)."""
    cdef int b, j, u = c.u, nr = b1 - b0
    cdef Py_ssize_t step = <Py_ssize_t>c.batch * u, o
    cdef floating* dz = <floating*>c.dz
    cdef floating* dh = <floating*>c.dh
    cdef const floating* g = <const floating*>c.g
    cdef const floating* z = <const floating*>c.z
    cdef floating* dzr
    cdef const floating* hr
    cdef const floating* zr
    for b in range(b0, b1):
        o = <Py_ssize_t>b * u
        dzr = dz + s * step + o
        if step_on(c.mask, c.T, b, input_time(s, c.T, c.reverse)):
            hr = hs + (s + 1) * step + o
            zr = z + s * step + o
            if floating is float and c.fast:
                tanh_backward_f(u, hr, g + o, dzr)
            else:   # the generic twin
                for j in range(u):
                    dzr[j] = <floating>(g[o + j] * act_derivative(c.act, c.alpha, zr[j], hr[j]))
            if c.mask != NULL:
                memset(dh + o, 0, u * sizeof(floating))
        else:
            # skipped step: no gate gradient, the state gradient passes through unchanged
            memset(dzr, 0, u * sizeof(floating))
            memcpy(dh + o, g + o, u * sizeof(floating))
    if s > 0 or c.need_dh0:
        packed_matmul(dz + s * step + <Py_ssize_t>b0 * u, u, <const floating*>c.rkp,
                      dh + <Py_ssize_t>b0 * u, u, nr, u, u, c.mask != NULL)
