# Pooling over NHWC images (1-D pooling is the height-1 case), forward and backward side by side.
#
# Windows: output cell (oh, ow) covers input rows oh*sh - pt .. + kh - 1 and columns ow*sw - pl ..
# + kw - 1; cells outside the image are padding and never count (max ignores them, average divides
# by the number of real cells, as Keras/TF do with padding="same"). Threads split the batch; every
# image's gradient is written by one thread in a fixed order, so results do not depend on the
# thread count.
from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memset
from _threads cimport block_start, threads_for_work, ELEMENT_GRAIN


# ------------------------------------------------------------------------------------ max pool
DEF CBLOCK = 64  # channels kept in registers / on the stack at a time


cdef void max_pool_image(const floating* x,   # IN  one image (h, w, c)
                         floating* y,         # OUT (oh, ow, c)
                         int* am,             # OUT (oh, ow, c) flat index in the image of each max
                         int h, int w, int c, int oh, int ow, int kh, int kw, int sh, int sw,
                         int pt, int pl) noexcept nogil:
    # running maxima live in local arrays that cannot alias x, so the compare-and-keep compiles
    # to vectorised selects instead of a branch per element
    cdef floating best[CBLOCK]
    cdef int arg[CBLOCK]
    cdef Py_ssize_t p, q, ci, c0, cn, ih, iw, ih0, ih1, iw0, iw1, base
    cdef const floating* xp
    cdef floating v
    cdef int mask
    for p in range(oh):
        ih0 = max(p * sh - pt, 0)
        ih1 = min(p * sh - pt + kh, h)
        for q in range(ow):
            iw0 = max(q * sw - pl, 0)
            iw1 = min(q * sw - pl + kw, w)
            for c0 in range(0, c, CBLOCK):
                cn = min(CBLOCK, c - c0)
                # start from the window's first real cell (every window holds at least one)
                base = (ih0 * w + iw0) * c + c0
                for ci in range(cn):
                    best[ci] = x[base + ci]
                    arg[ci] = <int>(base + ci)
                for ih in range(ih0, ih1):
                    for iw in range(iw0, iw1):
                        base = (ih * w + iw) * c + c0
                        xp = x + base
                        for ci in range(cn):
                            # strict >: the first maximum wins ties. The index is chosen by a bit
                            # mask (0 or all ones) rather than a branch, mispredicted on real data.
                            v = xp[ci]
                            mask = -<int>(v > best[ci])
                            arg[ci] = (arg[ci] & ~mask) | (<int>(base + ci) & mask)
                            best[ci] = v if v > best[ci] else best[ci]
                base = (p * ow + q) * c + c0
                for ci in range(cn):
                    y[base + ci] = best[ci]
                    am[base + ci] = arg[ci]


DEF PAIR_BUF = 512  # input values of a row pair compared at a time by the 2x2 path


cdef void max_pool_2x2_image(const floating* x,   # IN  one image (h, w, c)
                             floating* y,         # OUT (oh, ow, c)
                             int* am,             # OUT (oh, ow, c) flat index in the image of each max
                             int h, int w, int c, int oh, int ow) noexcept nogil:
    """The common 2x2 stride-2 unpadded window, in two passes per output row.

    Vertical: the two input rows are compared element-wise (contiguous, vectorised), keeping the
    larger value and whether it came from the lower row. Horizontal: each pair of columns picks the
    larger of its two vertical winners. On ties the window's first cell in row-major order wins, as
    in max_pool_image: the right column wins only if greater, or equal with the left winner from the
    lower row and the right one from the upper row."""
    cdef floating v[PAIR_BUF + 4]
    cdef int low[PAIR_BUF + 4]   # rowlen where the lower row's value won, else 0
    cdef Py_ssize_t p, q, q0, qn, k, ci, cn, rowlen = <Py_ssize_t>w * c, qb = PAIR_BUF // (2 * c)
    cdef Py_ssize_t cw = (c + 3) // 4 * 4, total = <Py_ssize_t>oh * ow * c, left, base, out
    cdef const floating* r0
    cdef const floating* r1
    cdef floating a, b
    cdef int take, lo, hi, first, irow = <int>rowlen
    for k in range(PAIR_BUF, PAIR_BUF + 4):
        v[k] = 0
        low[k] = 0
    for p in range(oh):
        r0 = x + 2 * p * rowlen
        r1 = r0 + rowlen
        q0 = 0
        while q0 < ow:
            qn = min(qb, ow - q0)
            # vertical pass over 2*qn columns of both rows
            base = 2 * q0 * c
            for k in range(2 * qn * c):
                a = r0[base + k]
                b = r1[base + k]
                low[k] = irow if b > a else 0
                v[k] = b if b > a else a
            # horizontal pass: columns 2q and 2q + 1, by selects. Each column runs c rounded up to 4
            # channels (whole vectors): the extra lanes write the next outputs, which their own
            # column then overwrites; the columns within cw of the image's end run exactly c.
            for q in range(qn):
                out = (p * ow + q0 + q) * c
                left = 2 * q * c
                first = <int>(2 * p * rowlen + base + left)
                cn = cw if out + cw <= total else c
                for ci in range(cn):
                    a = v[left + ci]
                    b = v[left + c + ci]
                    lo = low[left + ci]
                    hi = low[left + c + ci]
                    take = <int>(b > a) | (<int>(b == a) & <int>(lo != 0) & <int>(hi == 0))
                    y[out + ci] = b if take else a
                    am[out + ci] = (first + <int>(c + ci) + hi) if take else (first + <int>ci + lo)
            q0 += qn


def max_pool2d_forward(const floating[:, :, :, ::1] x,   # IN  (n, h, w, c)
                       floating[:, :, :, ::1] y,         # OUT (n, oh, ow, c) window maxima
                       int[:, :, :, ::1] argmax,         # OUT (n, oh, ow, c) flat index in the image of each max
                       int kh, int kw, int sh, int sw, int pt, int pl, int n_threads):
    """y[n, oh, ow, c] := max over the window's real cells; argmax keeps where it was (first on ties)."""
    cdef int n = x.shape[0], h = x.shape[1], w = x.shape[2], c = x.shape[3]
    cdef int oh = y.shape[1], ow = y.shape[2], t, img
    cdef int nt = threads_for_work(<long long>n * oh * ow * c * kh * kw, ELEMENT_GRAIN, n, n_threads)
    if n == 0 or oh == 0 or ow == 0 or c == 0:
        return
    # the 2x2 stride-2 window with no padding cell has its own vectorised path
    cdef bint pair = (kh == 2 and kw == 2 and sh == 2 and sw == 2 and pt == 0 and pl == 0
                      and 2 * oh <= h and 2 * ow <= w and 2 * c <= PAIR_BUF)
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        for img in range(block_start(n, nt, t), block_start(n, nt, t + 1)):
            if pair:
                max_pool_2x2_image(&x[img, 0, 0, 0], &y[img, 0, 0, 0], &argmax[img, 0, 0, 0],
                                   h, w, c, oh, ow)
            else:
                max_pool_image(&x[img, 0, 0, 0], &y[img, 0, 0, 0], &argmax[img, 0, 0, 0],
                               h, w, c, oh, ow, kh, kw, sh, sw, pt, pl)


def max_pool2d_backward(const floating[:, :, :, ::1] dy,   # IN  (n, oh, ow, c) dL/dy
                        const int[:, :, :, ::1] argmax,    # IN  (n, oh, ow, c) from the forward pass
                        floating[:, :, :, ::1] dx,         # OUT (n, h, w, c) dL/dx
                        int n_threads):
    """dx := 0, then each output's gradient goes to the input cell that held its maximum."""
    cdef int n = dx.shape[0], t, img
    cdef Py_ssize_t k, per_out = <Py_ssize_t>dy.shape[1] * dy.shape[2] * dy.shape[3]
    cdef Py_ssize_t per_in = <Py_ssize_t>dx.shape[1] * dx.shape[2] * dx.shape[3]
    cdef int nt = threads_for_work(<long long>n * (per_in + per_out), ELEMENT_GRAIN, n, n_threads)
    cdef floating* dxp
    cdef const floating* dyp
    cdef const int* ap
    if n == 0 or per_in == 0:
        return
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        for img in range(block_start(n, nt, t), block_start(n, nt, t + 1)):
            dxp = &dx[img, 0, 0, 0]
            memset(dxp, 0, per_in * sizeof(floating))
            if per_out == 0:
                continue
            dyp = &dy[img, 0, 0, 0]
            ap = &argmax[img, 0, 0, 0]
            # gradient with respect to the input: only the arg-max of each window receives it
            for k in range(per_out):
                dxp[ap[k]] += dyp[k]


# -------------------------------------------------------------------------------- average pool
def avg_pool2d_forward(const floating[:, :, :, ::1] x,   # IN  (n, h, w, c)
                       floating[:, :, :, ::1] y,         # OUT (n, oh, ow, c) window means
                       int kh, int kw, int sh, int sw, int pt, int pl, int n_threads):
    """y[n, oh, ow, c] := mean over the window's real cells (padding is not counted)."""
    cdef int n = x.shape[0], h = x.shape[1], w = x.shape[2], c = x.shape[3]
    cdef int oh = y.shape[1], ow = y.shape[2], t, img
    cdef int nt = threads_for_work(<long long>n * oh * ow * c * kh * kw, ELEMENT_GRAIN, n, n_threads)
    cdef Py_ssize_t p, q, ci, ih, iw, ih0, ih1, iw0, iw1
    cdef const floating* xp
    cdef floating* yp
    cdef floating inv
    if n == 0 or oh == 0 or ow == 0 or c == 0:
        return
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        for img in range(block_start(n, nt, t), block_start(n, nt, t + 1)):
            for p in range(oh):
                ih0 = max(p * sh - pt, 0)
                ih1 = min(p * sh - pt + kh, h)
                for q in range(ow):
                    iw0 = max(q * sw - pl, 0)
                    iw1 = min(q * sw - pl + kw, w)
                    yp = &y[img, p, q, 0]
                    for ci in range(c):
                        yp[ci] = 0
                    for ih in range(ih0, ih1):
                        for iw in range(iw0, iw1):
                            xp = &x[img, ih, iw, 0]
                            for ci in range(c):
                                yp[ci] += xp[ci]
                    inv = <floating>1.0 / <floating>((ih1 - ih0) * (iw1 - iw0))
                    for ci in range(c):
                        yp[ci] = yp[ci] * inv


def avg_pool2d_backward(const floating[:, :, :, ::1] dy,   # IN  (n, oh, ow, c) dL/dy
                        floating[:, :, :, ::1] dx,         # OUT (n, h, w, c) dL/dx
                        int kh, int kw, int sh, int sw, int pt, int pl, int n_threads):
    """dx := 0, then each output's gradient, divided by its count of real cells, goes to each of them."""
    cdef int n = dx.shape[0], h = dx.shape[1], w = dx.shape[2], c = dx.shape[3]
    cdef int oh = dy.shape[1], ow = dy.shape[2], t, img
    cdef int nt = threads_for_work(<long long>n * oh * ow * c * kh * kw, ELEMENT_GRAIN, n, n_threads)
    cdef Py_ssize_t p, q, ci, ih, iw, ih0, ih1, iw0, iw1
    cdef const floating* gp
    cdef floating* dxp
    cdef floating inv
    if n == 0 or h == 0 or w == 0 or c == 0:
        return
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        for img in range(block_start(n, nt, t), block_start(n, nt, t + 1)):
            memset(&dx[img, 0, 0, 0], 0, <size_t>h * w * c * sizeof(floating))
            for p in range(oh):
                ih0 = max(p * sh - pt, 0)
                ih1 = min(p * sh - pt + kh, h)
                for q in range(ow):
                    iw0 = max(q * sw - pl, 0)
                    iw1 = min(q * sw - pl + kw, w)
                    gp = &dy[img, p, q, 0]
                    inv = <floating>1.0 / <floating>((ih1 - ih0) * (iw1 - iw0))
                    # gradient with respect to the input: an equal share for every real cell
                    for ih in range(ih0, ih1):
                        for iw in range(iw0, iw1):
                            dxp = &dx[img, ih, iw, 0]
                            for ci in range(c):
                                dxp[ci] += gp[ci] * inv


# ------------------------------------------------------------------------------ global pooling
def global_avg_pool_forward(const floating[:, :, ::1] x,   # IN  (n, cells, c): spatial axes flattened
                            floating[:, ::1] y,            # OUT (n, c) means over the cells
                            int n_threads):
    """y[n, c] := mean over cells of x[n, cell, c] (summed in cell order)."""
    cdef int n = x.shape[0], cells = x.shape[1], c = x.shape[2], t, img
    cdef int nt = threads_for_work(<long long>n * cells * c, ELEMENT_GRAIN, n, n_threads)
    cdef Py_ssize_t k, ci
    cdef floating inv
    if n == 0 or c == 0:
        return
    inv = <floating>1.0 / <floating>max(cells, 1)
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        for img in range(block_start(n, nt, t), block_start(n, nt, t + 1)):
            for ci in range(c):
                y[img, ci] = 0
            for k in range(cells):
                for ci in range(c):
                    y[img, ci] += x[img, k, ci]
            for ci in range(c):
                y[img, ci] = y[img, ci] * inv


def global_avg_pool_backward(const floating[:, ::1] dy,   # IN  (n, c) dL/dy
                             floating[:, :, ::1] dx,      # OUT (n, cells, c) dL/dx
                             int n_threads):
    """dx[n, cell, c] := dy[n, c] / cells."""
    cdef int n = dx.shape[0], cells = dx.shape[1], c = dx.shape[2], t, img
    cdef int nt = threads_for_work(<long long>n * cells * c, ELEMENT_GRAIN, n, n_threads)
    cdef Py_ssize_t k, ci
    cdef floating inv
    if n == 0 or c == 0 or cells == 0:
        return
    inv = <floating>1.0 / <floating>cells
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        for img in range(block_start(n, nt, t), block_start(n, nt, t + 1)):
            for k in range(cells):
                for ci in range(c):
                    dx[img, k, ci] = dy[img, ci] * inv


def global_max_pool_forward(const floating[:, :, ::1] x,   # IN  (n, cells, c)
                            floating[:, ::1] y,            # OUT (n, c) maxima over the cells
                            int[:, ::1] argmax,            # OUT (n, c) the cell of each maximum (first on ties)
                            int n_threads):
    """y[n, c] := max over cells of x[n, cell, c]."""
    cdef int n = x.shape[0], cells = x.shape[1], c = x.shape[2], t, img
    cdef int nt = threads_for_work(<long long>n * cells * c, ELEMENT_GRAIN, n, n_threads)
    cdef Py_ssize_t k, ci
    if n == 0 or c == 0 or cells == 0:
        return
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        for img in range(block_start(n, nt, t), block_start(n, nt, t + 1)):
            for ci in range(c):
                y[img, ci] = x[img, 0, ci]
                argmax[img, ci] = 0
            for k in range(1, cells):
                for ci in range(c):
                    if x[img, k, ci] > y[img, ci]:
                        y[img, ci] = x[img, k, ci]
                        argmax[img, ci] = <int>k


def global_max_pool_backward(const floating[:, ::1] dy,      # IN  (n, c) dL/dy
                             const int[:, ::1] argmax,       # IN  (n, c) from the forward pass
                             floating[:, :, ::1] dx,         # OUT (n, cells, c) dL/dx
                             int n_threads):
    """dx := 0, then dx[n, argmax[n, c], c] := dy[n, c]."""
    cdef int n = dx.shape[0], cells = dx.shape[1], c = dx.shape[2], t, img
    cdef int nt = threads_for_work(<long long>n * cells * c, ELEMENT_GRAIN, n, n_threads)
    cdef Py_ssize_t ci
    if n == 0 or c == 0 or cells == 0:
        return
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        for img in range(block_start(n, nt, t), block_start(n, nt, t + 1)):
            memset(&dx[img, 0, 0], 0, <size_t>cells * c * sizeof(floating))
            for ci in range(c):
                dx[img, argmax[img, ci], ci] = dy[img, ci]
