# Test hooks: the packed products of _packed_gemm.h on their own, at the SIMD level in force.

def packed_level(int level=-1):
    """Select the per-step products' SIMD level (0: portable; 1: AVX2 + FMA; 2: AVX-512F; clamped
    to what the CPU runs; negative: the widest) and return the level in force. For tests."""
    return pg_set_level(level)


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
