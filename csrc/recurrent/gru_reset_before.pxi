# GRU cell, Keras reset_after=False: the reset gate multiplies h_{s-1} before its product with the
# candidate's recurrent kernel, so a step runs two products: h_{s-1} @ U[:, :2u] for the gates
# (packed rkp), then (r * h_{s-1}) @ U[:, 2u:] for the candidate (rkp2). One bias (3u,), added to
# the input projection. z, r = ract(x W_{z,r} + b_{z,r} + h U_{z,r});
# h~ = act(x W_h + b_h + (r * h) U_h);  h := z * h + (1 - z) * h~. rh holds r * h_{s-1}.

cdef extern from "recurrent/gru_reset_before.h":
    void gru_rb_gates_rows_f "cydnn_gru_rb_gates_rows_f"(int nr, int u, float* z, const float* rec,
        float* a, const float* hp, float* rhp) noexcept nogil
    void gru_rb_candidate_rows_f "cydnn_gru_rb_candidate_rows_f"(int nr, int u, float* z,
        const float* rec, float* a, const float* hp, float* h) noexcept nogil
    void gru_rb_backward1_f "cydnn_gru_rb_backward1_f"(int u, const float* a, const float* hp,
        const float* g, float* dz, float* dh) noexcept nogil
    void gru_rb_backward2_f "cydnn_gru_rb_backward2_f"(int u, const float* ar, const float* hp,
        const float* drhp, float* dzr, float* dh) noexcept nogil


# ---------------------------------------------------------------------------------- forward
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


cdef void gru_rb_forward_step(const rnn_call* c, floating* hs, int s, int b0, int b1) noexcept nogil:
    """Step s for rows b0..b1: the gates from h_{s-1} @ rkernel[:, :2u], then the candidate from
    (r * h_{s-1}) @ rkernel[:, 2u:] (both zero from a zero initial state)."""
    cdef int u = c.u, nr = b1 - b0
    cdef Py_ssize_t step = <Py_ssize_t>c.batch * u, off = <Py_ssize_t>b0 * u
    cdef floating* recb = <floating*>c.rec + 3 * off
    cdef floating* zs = <floating*>c.z + 3 * (s * step + off)
    cdef floating* as_ = <floating*>c.a + 3 * (s * step + off)
    cdef floating* rhp = <floating*>c.rh + s * step + off
    cdef floating* hp = hs + s * step + off
    cdef floating* h = hs + (s + 1) * step + off
    if s == 0 and c.zero_state:   # h_{-1} = 0: both recurrent products are zero
        memset(recb, 0, 3 * nr * u * sizeof(floating))
    else:   # the gates' recurrent part: h_{s-1} @ rkernel[:, :2u]
        packed_matmul(hp, u, <const floating*>c.rkp, recb, 3 * u, nr, u, 2 * u, False)
    if floating is float and c.fast:
        gru_rb_gates_rows_f(nr, u, zs, recb, as_, hp, rhp)
    else:
        gru_rb_gates_generic(zs, recb, as_, hp, rhp, nr, u, c.ract, c.ralpha)
    if not (s == 0 and c.zero_state):   # the candidate's: (r * h_{s-1}) @ rkernel[:, 2u:]
        packed_matmul(rhp, u, <const floating*>c.rkp2, recb + 2 * u, 3 * u, nr, u, u, False)
    if floating is float and c.fast:
        gru_rb_candidate_rows_f(nr, u, zs, recb, as_, hp, h)
    else:
        gru_rb_candidate_generic(zs, recb, as_, hp, h, nr, u, c.act, c.alpha)


# ---------------------------------------------------------------------------------- backward
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


cdef void gru_rb_backward_step(const rnn_call* c, floating* hs, int s, int b0, int b1) noexcept nogil:
    """Step s for rows b0..b1, g = dL/dh_s: the update gate's and candidate's gradients and
    dh := g * zg; drhp := the candidate's gradient @ rkernel[:, 2u:]^T, whence the reset gate's
    gradient and dh += drhp * r; then dh += dz[:, :2u] @ rkernel[:, :2u]^T."""
    cdef int b, u = c.u, nr = b1 - b0
    cdef Py_ssize_t step = <Py_ssize_t>c.batch * u, o, o3, off = <Py_ssize_t>b0 * u
    cdef const floating* z = <const floating*>c.z
    cdef const floating* a = <const floating*>c.a
    cdef const floating* g = <const floating*>c.g
    cdef floating* dz = <floating*>c.dz
    cdef floating* dh = <floating*>c.dh
    cdef floating* drhp = <floating*>c.drhp
    for b in range(b0, b1):
        o = <Py_ssize_t>b * u
        o3 = 3 * (s * step + o)
        if step_on(c.mask, c.T, b, input_time(s, c.T, c.reverse)):
            if floating is float and c.fast:
                gru_rb_backward1_f(u, a + o3, hs + s * step + o, g + o, dz + o3, dh + o)
            else:
                gru_rb_backward1_generic(z + o3, a + o3, hs + s * step + o, g + o, dz + o3,
                                         dh + o, u, c.act, c.alpha, c.ract, c.ralpha)
        else:
            # skipped step: no gate gradient; dL/dh passes through unchanged
            memset(dz + o3, 0, 3 * u * sizeof(floating))
            memcpy(dh + o, g + o, u * sizeof(floating))
    # gradient with respect to r * h_{s-1}: the candidate's gradient @ rkernel[:, 2u:]^T
    packed_matmul(dz + 3 * (s * step + off) + 2 * u, 3 * u, <const floating*>c.rkp2, drhp + off,
                  u, nr, u, u, False)
    for b in range(b0, b1):
        o = <Py_ssize_t>b * u
        if step_on(c.mask, c.T, b, input_time(s, c.T, c.reverse)):
            if floating is float and c.fast:
                gru_rb_backward2_f(u, a + 3 * (s * step + o) + u, hs + s * step + o, drhp + o,
                                   dz + 3 * (s * step + o) + u, dh + o)
            else:
                gru_rb_backward2_generic(z + 3 * (s * step + o), a + 3 * (s * step + o),
                                         hs + s * step + o, drhp + o, dz + 3 * (s * step + o),
                                         dh + o, u, c.ract, c.ralpha)
    # gradient with respect to h_{s-1} through the gates: dh += dz[:, :2u] @ rkernel[:, :2u]^T
    if s > 0 or c.need_dh0:
        packed_matmul(dz + 3 * (s * step + off), 3 * u, <const floating*>c.rkp, dh + off, u, nr,
                      2 * u, u, True)
