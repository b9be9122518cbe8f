# Attention over a sequence of values, forward and backward side by side:
#
#   scores S (Tq x Tv) from the queries q (Tq x D) and keys k (Tv x D), one of
#     dot       S = scale * q @ k^T                                   (Luong; Keras Attention)
#     additive  S_ij = outer * sum_d w_d * tanh(scale * (q_id + k_jd))  (Bahdanau; Keras
#               AdditiveAttention: scale = outer = 1, w = its `scale` vector; Keras Attention
#               score_mode="concat": w = 1, scale = its scale, outer = concat_score_weight)
#   masked steps (value mask, causal mask) get S - 1e9, as Keras does
#   A = softmax(S) over the value steps;  P = A * drop (dropout multipliers, training only)
#   out = P @ v (Tq x Dv)
#
# Every batch element is independent: one prange over the batch, each thread runs single-
# threaded gemms on its own elements. Gradients of the shared score parameters are written per
# batch element and summed over the batch afterwards in batch order, so no result depends on
# the thread count. The additive backward recomputes the tanh instead of keeping the
# (batch, Tq, Tv, D) tensor.
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport exp, tanh
from _blas cimport gemm

cdef enum:
    DOT = 0
    ADDITIVE = 1

# Keras subtracts this from masked scores (not -inf: a fully masked row stays finite)
cdef extern from *:
    """
    #define CYDNN_ATTENTION_MASK_PENALTY 1.0e9
    """
    double MASK_PENALTY "CYDNN_ATTENTION_MASK_PENALTY"


cdef inline void additive_scores(const floating* q, const floating* k, const floating* w, bint has_w,
                                 double scale, double outer, floating* s, int tq, int tv, int d) noexcept nogil:
    """s[i, j] := outer * sum_c w_c tanh(scale * (q[i, c] + k[j, c]))."""
    cdef int i, j, c
    cdef double acc
    for i in range(tq):
        for j in range(tv):
            acc = 0
            for c in range(d):
                acc = acc + (w[c] if has_w else 1.0) * tanh(scale * (q[i * d + c] + k[j * d + c]))
            s[i * tv + j] = <floating>(outer * acc)


cdef inline void masked_softmax_rows(const floating* s, floating* a, const unsigned char* vmask,
                                     bint causal, double scale, int tq, int tv) noexcept nogil:
    """a[i, :] := softmax_j(scale * s[i, j] - 1e9 * masked(i, j)), masked: vmask[j] == 0 or j > i when causal."""
    cdef int i, j
    cdef double x, mx, total
    for i in range(tq):
        mx = -1e300
        for j in range(tv):
            x = scale * s[i * tv + j]
            if (vmask != NULL and vmask[j] == 0) or (causal and j > i):
                x = x - MASK_PENALTY
            a[i * tv + j] = <floating>x
            if x > mx:
                mx = x
        total = 0
        for j in range(tv):
            x = exp(a[i * tv + j] - mx)
            a[i * tv + j] = <floating>x
            total = total + x
        for j in range(tv):
            a[i * tv + j] = <floating>(a[i * tv + j] / total)


def attention_forward(const floating[:, :, ::1] q,       # IN  (B, Tq, D) queries
                      const floating[:, :, ::1] k,       # IN  (B, Tv, D) keys
                      const floating[:, :, ::1] v,       # IN  (B, Tv, Dv) values
                      int mode, double scale,            # IN  DOT or ADDITIVE; the scale (see top)
                      const floating[::1] w,             # IN  (D,) additive feature weights, or None (ones)
                      double outer,                      # IN  additive outer factor
                      const unsigned char[:, ::1] vmask, # IN  (B, Tv) 1 = keep, or None
                      bint causal,                       # IN  query i sees values j <= i only
                      const floating[:, :, ::1] drop,    # IN  (B, Tq, Tv) dropout multipliers, or None
                      floating[:, :, ::1] scores,        # OUT (B, Tq, Tv) dot: q @ k^T unscaled; additive: S
                      floating[:, :, ::1] attn,          # OUT (B, Tq, Tv) A = softmax(S)
                      floating[:, :, ::1] dropped,       # OUT (B, Tq, Tv) P = A * drop, or None
                      floating[:, :, ::1] out,           # OUT (B, Tq, Dv) P @ v
                      int n_threads):
    """out := dropout(softmax(mask(S(q, k)))) @ v for every batch element."""
    cdef int nb = q.shape[0], tq = q.shape[1], d = q.shape[2], tv = k.shape[1], dv = v.shape[2]
    cdef int b, i
    cdef bint has_w = w is not None, has_mask = vmask is not None, has_drop = drop is not None
    cdef const floating* p
    if nb == 0 or tq == 0:
        return
    for b in prange(nb, nogil=True, schedule="static", num_threads=max(1, min(n_threads, nb))):
        if mode == DOT:
            gemm(False, True, tq, tv, d, <floating>1, &q[b, 0, 0], d, &k[b, 0, 0], d,
                 <floating>0, &scores[b, 0, 0], tv)
            masked_softmax_rows(&scores[b, 0, 0], &attn[b, 0, 0], &vmask[b, 0] if has_mask else NULL,
                                causal, scale, tq, tv)
        else:
            additive_scores(&q[b, 0, 0], &k[b, 0, 0], &w[0] if has_w else NULL, has_w, scale, outer,
                            &scores[b, 0, 0], tq, tv, d)
            masked_softmax_rows(&scores[b, 0, 0], &attn[b, 0, 0], &vmask[b, 0] if has_mask else NULL,
                                causal, 1.0, tq, tv)
        p = &attn[b, 0, 0]
        if has_drop:
            for i in range(tq * tv):
                (&dropped[b, 0, 0])[i] = (&attn[b, 0, 0])[i] * (&drop[b, 0, 0])[i]
            p = &dropped[b, 0, 0]
        gemm(False, False, tq, dv, tv, <floating>1, p, tv, &v[b, 0, 0], dv, <floating>0, &out[b, 0, 0], dv)


cdef inline void additive_backward(const floating* q, const floating* k, const floating* w, bint has_w,
                                   double scale, double outer, const floating* ds,
                                   floating* dq, floating* dk, floating* dparams,
                                   int tq, int tv, int d) noexcept nogil:
    """From dL/dS: dq, dk, and dparams = [dL/dw (d entries), dL/dscale, dL/douter] of one element."""
    cdef int i, j, c
    cdef double g, t, wc, pre, dpre, dscale = 0, douter = 0
    for c in range(d * tq):
        dq[c] = 0
    for c in range(d * tv):
        dk[c] = 0
    for c in range(d):
        dparams[c] = 0
    for i in range(tq):
        for j in range(tv):
            g = ds[i * tv + j]  # dL/dS_ij
            if g == 0:
                continue
            for c in range(d):
                wc = w[c] if has_w else 1.0
                pre = q[i * d + c] + k[j * d + c]
                t = tanh(scale * pre)
                douter = douter + g * wc * t                # S = outer * sum_c w_c t_c
                dparams[c] = dparams[c] + g * outer * t     # gradient with respect to w_c
                dpre = g * outer * wc * (1 - t * t)         # through tanh
                dscale = dscale + dpre * pre                # gradient with respect to the inner scale
                dq[i * d + c] = dq[i * d + c] + dpre * scale
                dk[j * d + c] = dk[j * d + c] + dpre * scale
    dparams[d] = <floating>dscale
    dparams[d + 1] = <floating>douter


def attention_backward(const floating[:, :, ::1] q,       # IN  (B, Tq, D)
                       const floating[:, :, ::1] k,       # IN  (B, Tv, D)
                       const floating[:, :, ::1] v,       # IN  (B, Tv, Dv)
                       int mode, double scale,
                       const floating[::1] w,             # IN  (D,) or None
                       double outer,
                       const floating[:, :, ::1] drop,    # IN  (B, Tq, Tv) or None
                       const floating[:, :, ::1] scores,  # IN  (B, Tq, Tv) from the forward
                       const floating[:, :, ::1] attn,    # IN  (B, Tq, Tv) A from the forward
                       const floating[:, :, ::1] dropped, # IN  (B, Tq, Tv) P from the forward, or None
                       const floating[:, :, ::1] dout,    # IN  (B, Tq, Dv) dL/dout (query mask applied)
                       const floating[:, :, ::1] dattn,   # IN  (B, Tq, Tv) extra dL/dA (scores returned), or None
                       floating[:, :, ::1] ds,            # OUT (B, Tq, Tv) dL/dS
                       floating[:, :, ::1] dq,            # OUT (B, Tq, D)
                       floating[:, :, ::1] dk,            # OUT (B, Tv, D)
                       floating[:, :, ::1] dv,            # OUT (B, Tv, Dv)
                       floating[:, ::1] dparams,          # OUT (B, n_params) per-element parameter gradients
                       floating[::1] dparams_sum,         # OUT (n_params,) their sum over the batch
                       int n_threads):
    """dv := P^T dout;  dA := (dout v^T) * drop (+ dattn);  dS := A * (dA - rowsum(dA * A));
    dot: dq := scale dS k, dk := scale dS^T q, dscale := sum(dS * q k^T);
    additive: through the tanh (see additive_backward); n_params = D + 2 (dw, dscale, douter)."""
    cdef int nb = q.shape[0], tq = q.shape[1], d = q.shape[2], tv = k.shape[1], dv_ = v.shape[2]
    cdef int np_ = dparams.shape[1]
    cdef int b, i, j, c
    cdef bint has_w = w is not None, has_drop = drop is not None, has_extra = dattn is not None
    cdef double dot, acc
    cdef floating* g
    cdef const floating* a
    cdef const floating* p
    if nb == 0:
        return
    for b in prange(nb, nogil=True, schedule="static", num_threads=max(1, min(n_threads, nb))):
        g = &ds[b, 0, 0]
        a = &attn[b, 0, 0]
        p = &dropped[b, 0, 0] if has_drop else a
        # gradient with respect to the values: dv = P^T @ dout
        gemm(True, False, tv, dv_, tq, <floating>1, p, tv, &dout[b, 0, 0], dv_, <floating>0, &dv[b, 0, 0], dv_)
        # gradient with respect to the weights P, then A (through the dropout multipliers)
        gemm(False, True, tq, tv, dv_, <floating>1, &dout[b, 0, 0], dv_, &v[b, 0, 0], dv_, <floating>0, g, tv)
        if has_drop:
            for i in range(tq * tv):
                g[i] = g[i] * (&drop[b, 0, 0])[i]
        if has_extra:
            for i in range(tq * tv):
                g[i] = g[i] + (&dattn[b, 0, 0])[i]
        # gradient with respect to the scores, through the softmax (masking subtracts a constant)
        for i in range(tq):
            dot = 0
            for j in range(tv):
                dot = dot + g[i * tv + j] * a[i * tv + j]
            for j in range(tv):
                g[i * tv + j] = <floating>(a[i * tv + j] * (g[i * tv + j] - dot))
        if mode == DOT:
            # gradient with respect to the queries and keys (S = scale q k^T), and the scale
            gemm(False, False, tq, d, tv, <floating>scale, g, tv, &k[b, 0, 0], d, <floating>0, &dq[b, 0, 0], d)
            gemm(True, False, tv, d, tq, <floating>scale, g, tv, &q[b, 0, 0], d, <floating>0, &dk[b, 0, 0], d)
            acc = 0
            for i in range(tq * tv):
                acc = acc + g[i] * (&scores[b, 0, 0])[i]
            dparams[b, 0] = <floating>acc
        else:
            additive_backward(&q[b, 0, 0], &k[b, 0, 0], &w[0] if has_w else NULL, has_w, scale, outer, g,
                              &dq[b, 0, 0], &dk[b, 0, 0], &dparams[b, 0], tq, tv, d)
    # parameter gradients: sum over the batch in batch order
    for c in range(np_):
        acc = 0
        for b in range(nb):
            acc = acc + dparams[b, c]
        dparams_sum[c] = <floating>acc
