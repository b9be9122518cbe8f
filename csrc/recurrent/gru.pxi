# GRU cell, Keras reset_after (gates z, r, h): z, r = ract(x W + b_i + h U + b_r) (z, r parts);
# h~ = act(x W_h + b_ih + r * (h U_h + b_rh));  h := z * h + (1 - z) * h~. Projects its inputs
# first; each step's h @ U goes to the scratch rec. Backward: dz is the gradient of the recurrent
# projection (dr), dz2 that of the candidate's input part (the input projection's is
# [dz[:, :2u] | dz2]).

cdef extern from "recurrent/gru.h":
    void gru_forward_rows_f "cydnn_gru_forward_rows_f"(int nr, int u, float* z, const float* rec,
        const float* brec, float* a, float* rh, const float* hp, float* h) noexcept nogil
    void gru_backward_row_f "cydnn_gru_backward_row_f"(int u, const float* a, const float* rh,
        const float* hp, const float* g, float* dr, float* dxh, float* dhp) noexcept nogil


cdef void gru_cell_generic(floating* z, const floating* rec, const floating* brec, floating* a,
                           floating* rh, const floating* hp, floating* h, int n_rows, int u,
                           int act, double alpha, int ract, double ralpha) noexcept nogil:
    """The twin of gru_forward_rows_f for any activations (double-precision math)."""
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


cdef void gru_forward_step(const rnn_call* c, floating* hs, int s, int b0, int b1) noexcept nogil:
    """Step s for rows b0..b1: rec := h_{s-1} @ rkernel (zeros from a zero state), then the gates."""
    cdef int u = c.u, nr = b1 - b0
    cdef Py_ssize_t step = <Py_ssize_t>c.batch * u, off = <Py_ssize_t>b0 * u
    cdef floating* recb = <floating*>c.rec + 3 * off
    cdef floating* zs = <floating*>c.z + 3 * (s * step + off)
    cdef floating* as_ = <floating*>c.a + 3 * (s * step + off)
    cdef floating* rh = <floating*>c.rh + s * step + off
    if s == 0 and c.zero_state:
        memset(recb, 0, 3 * nr * u * sizeof(floating))
    else:
        packed_matmul(hs + s * step + off, u, <const floating*>c.rkp, recb, 3 * u, nr, u, 3 * u, False)
    if floating is float and c.fast:
        gru_forward_rows_f(nr, u, zs, recb, <const float*>c.brec, as_, rh, hs + s * step + off,
                           hs + (s + 1) * step + off)
    else:
        gru_cell_generic(zs, recb, <const floating*>c.brec, as_, rh, hs + s * step + off,
                         hs + (s + 1) * step + off, nr, u, c.act, c.alpha, c.ract, c.ralpha)


cdef void gru_gate_grads_generic(const floating* z, const floating* a, const floating* rh,
                                 const floating* hp, const floating* g, floating* dr,
                                 floating* dxh, floating* dhp, int u, int act, double alpha,
                                 int ract, double ralpha) noexcept nogil:
    """The twin of gru_backward_row_f: one row, dr (3u) := dL/d(h_prev @ U + b_r); dxh (u) :=
    dL/d(candidate input part); dhp (u) := g * z, the direct part of dL/dh_prev."""
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


cdef void gru_backward_step(const rnn_call* c, floating* hs, int s, int b0, int b1) noexcept nogil:
    """Step s for rows b0..b1, g = dL/dh_s: dr, dxh and the direct part of dh; then
    dh += dr @ rkernel^T."""
    cdef int b, u = c.u, nr = b1 - b0
    cdef Py_ssize_t step = <Py_ssize_t>c.batch * u, o, o3
    cdef const floating* z = <const floating*>c.z
    cdef const floating* a = <const floating*>c.a
    cdef const floating* rh = <const floating*>c.rh
    cdef const floating* g = <const floating*>c.g
    cdef floating* dr = <floating*>c.dz
    cdef floating* dxh = <floating*>c.dz2
    cdef floating* dh = <floating*>c.dh
    for b in range(b0, b1):
        o = <Py_ssize_t>b * u
        o3 = 3 * (s * step + o)
        if step_on(c.mask, c.T, b, input_time(s, c.T, c.reverse)):
            if floating is float and c.fast:
                gru_backward_row_f(u, a + o3, rh + s * step + o, hs + s * step + o, g + o,
                                   dr + o3, dxh + s * step + o, dh + o)
            else:
                gru_gate_grads_generic(z + o3, a + o3, rh + s * step + o, hs + s * step + o,
                                       g + o, dr + o3, dxh + s * step + o, dh + o, u, c.act,
                                       c.alpha, c.ract, c.ralpha)
        else:
            # skipped step: no gate gradient; dL/dh passes through unchanged
            memset(dr + o3, 0, 3 * u * sizeof(floating))
            memset(dxh + s * step + o, 0, u * sizeof(floating))
            memcpy(dh + o, g + o, u * sizeof(floating))
    if s > 0 or c.need_dh0:
        packed_matmul(dr + 3 * (s * step + <Py_ssize_t>b0 * u), 3 * u, <const floating*>c.rkp,
                      dh + <Py_ssize_t>b0 * u, u, nr, 3 * u, u, True)
