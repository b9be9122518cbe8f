# Convolutions over NHWC images: Conv2D (and Conv1D as a height-1 Conv2D) by patches + the one GEMM
# or by the direct kernels, chosen once per shape by a ConvPlan; depthwise convolution by a direct
# loop. Forward and backward side by side. The patch matrices are _patches.pxi's, the direct paths'
# layouts _planes.pxi's, their SIMD kernels core/_conv_direct.h's.
#
# Threads. One OpenMP pool; each thread takes a contiguous block of images, builds the patches of a
# few images at a time ("chunk") in its own region of the caller's col buffer, and calls a
# single-threaded sgemm on them while they are hot in cache. Output rows of different images never
# overlap, so the forward pass and dx need no synchronisation.
#
# Direct path. A stride-1 layer with few input channels (kw * channels small: a first layer on grey
# or RGB images) makes a GEMM with a tiny dimension that BLAS runs slowly; there the forward pass and
# dW skip the patches: each image is copied into zero-padded channel planes and the SIMD kernels of
# _conv_direct.h run on them (dx, when wanted, still takes the transposed patches).
#
# Fixed-order reductions. dW and db sum over every image. The batch is cut into n_groups groups of
# images that depend on the batch size only (never on the thread count); each group's sum goes to its
# own slot of a partial buffer, and a second pass adds the slots in group order. The result is
# bit-identical whatever the number of threads.
from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memset
from _blas cimport gemm
from _threads cimport block_start, threads_for_work, GEMM_GRAIN, ELEMENT_GRAIN
from _activation cimport rows_forward, rows_backward, LINEAR
from _conv_direct cimport *

include "_patches.pxi"
include "_planes.pxi"

cdef int SIMD_LEVEL = direct_set_level(-1)   # the widest SIMD level this CPU runs

# the ways to a convolution (ConvPlan.mode, the ``direct`` argument of conv2d_forward / _backward)
cpdef enum:
    PATCHES = 0   # im2col (rows or transposed) + GEMM
    PLANES = 1    # direct, output columns as vector lanes (few input channels, stride 1)
    LANES = 2     # direct, filters as vector lanes (filters a multiple of 16, no dilation)


def im2col_2d(const floating[:, :, ::1] x,   # IN  one image (h, w, c)
              floating[:, ::1] col,          # OUT (oh*ow, kh*kw*c)
              int kh, int kw, int sh, int sw, int pt, int pl, int dh, int dw, int oh, int ow):
    """Python twin of im2col for tests."""
    cdef Geom g = make_geom(x.shape[0], x.shape[1], x.shape[2], oh, ow, kh, kw, sh, sw, pt, pl, dh, dw)
    with nogil:
        im2col(&x[0, 0, 0], &col[0, 0], &g)


def col2im_2d(const floating[:, ::1] col,    # IN  (oh*ow, kh*kw*c)
              floating[:, :, ::1] x,         # OUT one image (h, w, c)
              int kh, int kw, int sh, int sw, int pt, int pl, int dh, int dw, int oh, int ow):
    """Python twin of col2im for tests."""
    cdef Geom g = make_geom(x.shape[0], x.shape[1], x.shape[2], oh, ow, kh, kw, sh, sw, pt, pl, dh, dw)
    with nogil:
        col2im(&col[0, 0], &x[0, 0, 0], &g)


def im2col_transposed_2d(const floating[:, :, ::1] x,   # IN  one image (h, w, c)
                         floating[:, ::1] colt,         # OUT (kh*kw*c, oh*ow)
                         int kh, int kw, int sh, int sw, int pt, int pl, int dh, int dw, int oh, int ow):
    """Python twin of im2col_transposed for tests."""
    cdef Geom g = make_geom(x.shape[0], x.shape[1], x.shape[2], oh, ow, kh, kw, sh, sw, pt, pl, dh, dw)
    with nogil:
        im2col_transposed(&x[0, 0, 0], &colt[0, 0], colt.shape[1], &g)


def col2im_transposed_2d(const floating[:, ::1] colt,   # IN  (kh*kw*c, oh*ow)
                         floating[:, :, ::1] x,         # OUT one image (h, w, c)
                         int kh, int kw, int sh, int sw, int pt, int pl, int dh, int dw, int oh, int ow):
    """Python twin of col2im_transposed for tests."""
    cdef Geom g = make_geom(x.shape[0], x.shape[1], x.shape[2], oh, ow, kh, kw, sh, sw, pt, pl, dh, dw)
    with nogil:
        col2im_transposed(&colt[0, 0], colt.shape[1], &x[0, 0, 0], &g)


def direct_level(int level=-1):
    """Select the direct kernels' SIMD level (0: portable; 1: AVX2 + FMA; 2: AVX-512F; clamped to
    what the CPU runs; negative: the widest) and return the level in force. For tests."""
    return direct_set_level(level)


def conv2d_direct_sizes(int mode, int h, int w, int c, int oh, int ow, int kh, int kw, int sh, int sw, int f):
    """(scratch values per thread, weight-gradient partial values per group) of a direct path:
    mode 1 (planes) or 2 (filters as lanes)."""
    cdef Geom g = make_geom(h, w, c, oh, ow, kh, kw, sh, sw, 0, 0, 1, 1)
    cdef Planes d = make_planes(&g, f)
    if mode == LANES:
        # the padded image, its gradient, and the weights transposed per kernel row
        return (2 * padded_size(&g) + <Py_ssize_t>kh * f * round_up(kw * c, 32), <Py_ssize_t>kh * kw * c * f)
    return (<Py_ssize_t>c * d.ph * d.pw + <Py_ssize_t>oh * d.lrow, <Py_ssize_t>c * kh * d.ls)


# ------------------------------------------------------------------------------------- helpers
cdef inline void add_bias_rows(floating* z, const floating* b, Py_ssize_t r0, Py_ssize_t r1,
                               Py_ssize_t n) noexcept nogil:
    """z[r, :] += b for r0 <= r < r1."""
    cdef Py_ssize_t r, j
    for r in range(r0, r1):
        for j in range(n):
            z[r * n + j] += b[j]


cdef inline void column_sums(const floating* a, floating* s, Py_ssize_t r0, Py_ssize_t r1,
                             Py_ssize_t n, bint add) noexcept nogil:
    """s[j] (+)= sum over rows r0..r1 of a[r, j], in an order fixed by the rows alone.

    Few columns: blocks of 8 rows are one contiguous run of 8n values, added element-wise into a
    local 8n accumulator (long vectorised loops instead of an n-wide loop per row whose sums
    round-trip through memory); the 8 partial rows are folded at the end."""
    cdef floating acc[8 * 64]
    cdef Py_ssize_t r, j, e, q, blocks, length, base
    if not add:
        for j in range(n):
            s[j] = 0
    if n >= 64 or r1 - r0 < 16:
        for r in range(r0, r1):
            for j in range(n):
                s[j] += a[r * n + j]
        return
    length = 8 * n
    blocks = (r1 - r0) // 8
    base = r0 * n
    for e in range(length):
        acc[e] = 0
    for r in range(blocks):
        for e in range(length):
            acc[e] += a[base + r * length + e]
    for q in range(8):
        for j in range(n):
            s[j] += acc[q * n + j]
    for r in range(r0 + blocks * 8, r1):
        for j in range(n):
            s[j] += a[r * n + j]


cdef void sum_partials(const floating* part, floating* out, Py_ssize_t n_parts, Py_ssize_t size,
                       bint accumulate, int n_threads) noexcept nogil:
    """out[e] (+)= sum over p of part[p, e], p in order; threads split the elements e."""
    cdef int nb = threads_for_work(size + 4096, 4096, n_threads, n_threads), t   # size // 4096 + 1 at most
    cdef Py_ssize_t e, e0, e1, p
    for t in prange(nb, schedule="static", num_threads=nb):
        e0 = (size * t) // nb
        e1 = (size * (t + 1)) // nb
        if not accumulate:
            for e in range(e0, e1):
                out[e] = 0
        for p in range(n_parts):
            for e in range(e0, e1):
                out[e] += part[p * size + e]


# ------------------------------------------------------------------------------------- Conv2D
def conv2d_forward(const floating[:, :, :, ::1] x,   # IN  (n, h, w, c)
                   const floating[:, ::1] w,         # IN  (kh*kw*c, f): Keras' (kh, kw, c, f) kernel
                   const floating[::1] b,            # IN  (f,) or None
                   floating[:, :, :, ::1] z,         # OUT (n, oh, ow, f) pre-activation
                   floating[:, :, :, ::1] y,         # OUT (n, oh, ow, f) activation; may be z when linear
                   floating[:, ::1] col,             # scratch (>= threads, chunk*oh*ow*kh*kw*c)
                   int kh, int kw, int sh, int sw, int pt, int pl, int dh, int dw, int chunk,
                   int n_groups, bint transposed, int direct, int act, double alpha, int n_threads):
    """z := conv(x, W) + b;  y := f(z). Padding beyond (pt, pl) is implied by the output size.

    ``direct`` 1 (planes: stride and dilation 1) or 2 (filters as lanes: filters a multiple of 16,
    dilation 1); col then holds conv2d_direct_sizes' scratch: per image, a zero-padded copy and the
    direct kernel, then the activation.

    Per chunk of images: patches (im2col, or im2col_transposed when ``transposed``), one sgemm,
    then bias and activation on the rows while they are in cache. The images are cut into
    n_groups groups and each group into chunks exactly as in conv2d_backward, whatever the thread
    count: sgemm may round a row differently depending on where it sits in its call, so the calls
    themselves must not depend on the threads.
    """
    cdef int n = x.shape[0], f = w.shape[1], kdim = w.shape[0], ng = max(1, min(n_groups, n))
    cdef Geom g = make_geom(x.shape[1], x.shape[2], x.shape[3], z.shape[1], z.shape[2],
                            kh, kw, sh, sw, pt, pl, dh, dw)
    cdef Py_ssize_t ohw = <Py_ssize_t>g.oh * g.ow
    # one thread per GEMM_GRAIN multiply-adds at most: small layers stay on one thread
    cdef int nt = threads_for_work(<long long>n * ohw * kdim * f, GEMM_GRAIN, min(ng, col.shape[0]), n_threads)
    cdef int t, grp, i0, i1, img, cnt, q
    cdef bint pointwise = is_pointwise(&g), has_bias = b is not None
    cdef Py_ssize_t r0, rows
    cdef const floating* a
    cdef floating* cbuf
    cdef floating* zp = &z[0, 0, 0, 0]
    cdef floating* yp = &y[0, 0, 0, 0]
    cdef const floating* bp = &b[0] if has_bias else NULL
    cdef Planes d = make_planes(&g, f)
    if n == 0 or ohw == 0:
        return
    if direct:
        # images are independent: any split over threads gives the same bits
        nt = threads_for_work(<long long>n * ohw * kdim * f, GEMM_GRAIN, min(n, col.shape[0]), n_threads)
        for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
            cbuf = &col[t, 0]
            for img in range(block_start(n, nt, t), block_start(n, nt, t + 1)):
                if direct == LANES:
                    fill_padded(&x[img, 0, 0, 0], cbuf, &g)
                    if floating is float:
                        lanes_forward_f(cbuf, padded_cols(&g), g.c, kh, kw, sh, sw, &w[0, 0], bp, f, g.oh, g.ow,
                                        zp + img * ohw * f)
                    else:
                        lanes_forward_d(cbuf, padded_cols(&g), g.c, kh, kw, sh, sw, &w[0, 0], bp, f, g.oh, g.ow,
                                        zp + img * ohw * f)
                else:
                    fill_planes(&x[img, 0, 0, 0], cbuf, &g, &d)
                    if floating is float:
                        direct_forward_f(cbuf, g.c, d.ph, d.pw, kh, kw, &w[0, 0], bp, f, g.oh, g.ow, zp + img * ohw * f)
                    else:
                        direct_forward_d(cbuf, g.c, d.ph, d.pw, kh, kw, &w[0, 0], bp, f, g.oh, g.ow, zp + img * ohw * f)
                rows_forward(act, alpha, zp, yp, img * ohw, (img + 1) * ohw, f)
        return
    chunk = max(1, chunk)
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        cbuf = &col[t, 0]
        for grp in range(block_start(ng, nt, t), block_start(ng, nt, t + 1)):
            i0 = block_start(n, ng, grp)
            i1 = block_start(n, ng, grp + 1)
            img = i0
            while img < i1:
                cnt = min(chunk, i1 - img)
                r0 = img * ohw
                rows = cnt * ohw
                a = patches(&x[img, 0, 0, 0], cnt, transposed, pointwise, cbuf, &g)
                if transposed and not pointwise:
                    # z (rows, f) = patches^T @ W, sgemm reading the (kdim, rows) patches transposed
                    gemm(True, False, <int>rows, f, kdim, <floating>1, a, <int>rows, &w[0, 0], f,
                         <floating>0, zp + r0 * f, f)
                    if has_bias:
                        add_bias_rows(zp, bp, r0, r0 + rows, f)
                else:
                    gemm(False, False, <int>rows, f, kdim, <floating>1, a, kdim, &w[0, 0], f,
                         <floating>0, zp + r0 * f, f)
                    if has_bias:
                        add_bias_rows(zp, bp, r0, r0 + rows, f)
                rows_forward(act, alpha, zp, yp, r0, r0 + rows, f)
                img = img + cnt


def conv2d_backward(const floating[:, :, :, ::1] x,    # IN  (n, h, w, c) the forward input
                    const floating[:, ::1] w,          # IN  (kh*kw*c, f)
                    const floating[:, :, :, ::1] z,    # IN  (n, oh, ow, f) pre-activation
                    const floating[:, :, :, ::1] y,    # IN  (n, oh, ow, f) activation
                    const floating[:, :, :, ::1] dy,   # IN  (n, oh, ow, f) dL/dy
                    floating[:, :, :, ::1] dz,         # OUT (n, oh, ow, f) dL/dz; pass dy itself when act is LINEAR
                    floating[:, ::1] dw,               # OUT (kh*kw*c, f) dL/dW, or None
                    floating[::1] db,                  # OUT (f,) dL/db, or None
                    floating[:, :, :, ::1] dx,         # OUT (n, h, w, c) dL/dx, or None (first layer)
                    floating[:, ::1] col,              # scratch (>= threads, chunk*oh*ow*kh*kw*c)
                    floating[:, ::1] dw_part,          # scratch (groups, kh*kw*c*f) per-group dW
                    floating[:, ::1] db_part,          # scratch (groups, f) per-group db
                    int kh, int kw, int sh, int sw, int pt, int pl, int dh, int dw_, int chunk,
                    bint transposed, int direct, int act, double alpha, bint accumulate, int n_threads):
    """dz := dy * f'(z);  dW (+)= sum_n col_n^T @ dz_n;  db (+)= sum of dz rows;  dx := col2im(dz @ W^T).

    The images are split into dw_part.shape[0] groups (a function of the batch size only); group g
    sums its images into dw_part[g] / db_part[g] and the groups are added in order afterwards.
    ``transposed`` selects the patch layout, as in conv2d_forward. ``direct`` 1 (planes): dW by the
    direct kernel (dw_part rows then hold its (c, kh, ls) lane sums, conv2d_direct_sizes), dx by the
    transposed patches; 2 (filters as lanes): dW and dx by its direct kernels.
    """
    cdef int n = x.shape[0], f = w.shape[1], kdim = w.shape[0], ng = dw_part.shape[0]
    cdef Geom g = make_geom(x.shape[1], x.shape[2], x.shape[3], z.shape[1], z.shape[2],
                            kh, kw, sh, sw, pt, pl, dh, dw_)
    cdef Py_ssize_t ohw = <Py_ssize_t>g.oh * g.ow
    cdef int nt = threads_for_work(2 * <long long>n * ohw * kdim * f, GEMM_GRAIN, min(ng, col.shape[0]), n_threads)
    cdef int t, g0, g1, grp, i0, i1, img, cnt, q
    cdef bint pointwise = is_pointwise(&g), first, tr
    cdef bint want_dx = dx is not None, want_dw = dw is not None, want_db = db is not None
    cdef Py_ssize_t r0, rows
    cdef const floating* a
    cdef floating* cbuf
    cdef const floating* zp = &z[0, 0, 0, 0]
    cdef const floating* yp = &y[0, 0, 0, 0]
    cdef const floating* dyp = &dy[0, 0, 0, 0]
    cdef floating* dzp = &dz[0, 0, 0, 0]
    cdef floating* dwp = &dw_part[0, 0]
    cdef floating* dbp = &db_part[0, 0]
    cdef Planes d = make_planes(&g, f)
    cdef Py_ssize_t psize = dw_part.shape[1], planes_size = <Py_ssize_t>g.c * d.ph * d.pw
    cdef Py_ssize_t i, j, ci, fi, e, ep = round_up(kw * g.c, 32), lanes_size = padded_size(&g)
    cdef floating s
    cdef floating* wt
    if n == 0 or ohw == 0 or ng == 0:
        return
    chunk = max(1, chunk)
    tr = (transposed or direct == PLANES) and not pointwise
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        g0 = block_start(ng, nt, t)
        g1 = block_start(ng, nt, t + 1)
        cbuf = &col[t, 0]
        wt = NULL
        if want_dx and direct == LANES:
            # W (kh, kw*c, f) transposed per kernel row to (kh, f, ep), zeros past kw*c, after the
            # padded image and its gradient in this thread's scratch
            wt = cbuf + 2 * lanes_size
            for i in range(kh):
                for fi in range(f):
                    for e in range(ep):
                        wt[(i * f + fi) * ep + e] = w[i * kw * g.c + e, fi] if e < kw * g.c else 0
        for grp in range(g0, g1):
            i0 = block_start(n, ng, grp)
            i1 = block_start(n, ng, grp + 1)
            first = True
            img = i0
            while img < i1:
                cnt = min(chunk, i1 - img)
                r0 = img * ohw
                rows = cnt * ohw
                # gradient with respect to the pre-activation
                if act != LINEAR:
                    rows_backward(act, alpha, zp, yp, dyp, dzp, r0, r0 + rows, f)
                # gradient with respect to the weights: this group's dW (+)= patches^T @ dz
                if want_dw and direct == LANES:
                    if first:
                        memset(dwp + <Py_ssize_t>grp * kdim * f, 0, <size_t>kdim * f * sizeof(floating))
                    for q in range(cnt):
                        fill_padded(&x[img + q, 0, 0, 0], cbuf, &g)
                        if floating is float:
                            lanes_dw_f(cbuf, padded_cols(&g), g.c, kh, kw, sh, sw, dzp + (r0 + q * ohw) * f, f,
                                       g.oh, g.ow, dwp + <Py_ssize_t>grp * kdim * f)
                        else:
                            lanes_dw_d(cbuf, padded_cols(&g), g.c, kh, kw, sh, sw, dzp + (r0 + q * ohw) * f, f,
                                       g.oh, g.ow, dwp + <Py_ssize_t>grp * kdim * f)
                elif want_dw and direct == PLANES:
                    if first:
                        memset(dwp + grp * psize, 0, psize * sizeof(floating))
                    for q in range(cnt):
                        fill_planes(&x[img + q, 0, 0, 0], cbuf, &g, &d)
                        fill_dzpad(dzp + r0 * f + q * ohw * f, cbuf + planes_size, &g, &d, f)
                        if floating is float:
                            direct_dw_f(cbuf, g.c, d.ph, d.pw, kh, kw, cbuf + planes_size, d.lrow, f, g.oh,
                                        g.ow, dwp + grp * psize, d.ls)
                        else:
                            direct_dw_d(cbuf, g.c, d.ph, d.pw, kh, kw, cbuf + planes_size, d.lrow, f, g.oh,
                                        g.ow, dwp + grp * psize, d.ls)
                elif want_dw:
                    a = patches(&x[img, 0, 0, 0], cnt, tr, pointwise, cbuf, &g)
                    if tr:
                        gemm(False, False, kdim, f, <int>rows, <floating>1, a, <int>rows, dzp + r0 * f, f,
                             <floating>(0 if first else 1), dwp + <Py_ssize_t>grp * kdim * f, f)
                    else:
                        gemm(True, False, kdim, f, <int>rows, <floating>1, a, kdim, dzp + r0 * f, f,
                             <floating>(0 if first else 1), dwp + <Py_ssize_t>grp * kdim * f, f)
                # gradient with respect to the bias: this group's column sums of dz, in row order
                if want_db:
                    column_sums(dzp, dbp + <Py_ssize_t>grp * f, r0, r0 + rows, f, not first)
                # gradient with respect to the input: patch gradients dz @ W^T, scattered back
                if want_dx and direct == LANES:
                    for q in range(cnt):
                        memset(cbuf + lanes_size, 0, lanes_size * sizeof(floating))
                        if floating is float:
                            lanes_dx_f(cbuf + lanes_size, padded_cols(&g), g.c, kh, sh, sw, dzp + (r0 + q * ohw) * f,
                                       wt, <int>ep, f, g.oh, g.ow)
                        else:
                            lanes_dx_d(cbuf + lanes_size, padded_cols(&g), g.c, kh, sh, sw, dzp + (r0 + q * ohw) * f,
                                       wt, <int>ep, f, g.oh, g.ow)
                        crop_padded(cbuf + lanes_size, &dx[img + q, 0, 0, 0], &g)
                elif want_dx:
                    if tr:
                        gemm(False, True, kdim, <int>rows, f, <floating>1, &w[0, 0], f, dzp + r0 * f, f,
                             <floating>0, cbuf, <int>rows)
                        for q in range(cnt):
                            col2im_transposed(cbuf + q * ohw, rows, &dx[img + q, 0, 0, 0], &g)
                    elif pointwise:
                        gemm(False, True, <int>rows, kdim, f, <floating>1, dzp + r0 * f, f, &w[0, 0], f,
                             <floating>0, &dx[img, 0, 0, 0], kdim)
                    else:
                        gemm(False, True, <int>rows, kdim, f, <floating>1, dzp + r0 * f, f, &w[0, 0], f,
                             <floating>0, cbuf, kdim)
                        for q in range(cnt):
                            col2im(cbuf + q * ohw * kdim, &dx[img + q, 0, 0, 0], &g)
                first = False
                img = img + cnt
    # the groups' partial sums, added in group order
    if want_dw and direct == PLANES:
        # lane (ci, i, (kw - 1 - j)*f + fi) of the direct kernel holds dW[i, j, ci, fi]
        for i in range(kh):
            for j in range(kw):
                for ci in range(g.c):
                    for fi in range(f):
                        s = dw[(i * kw + j) * g.c + ci, fi] if accumulate else 0
                        for grp in range(ng):
                            s = s + dwp[grp * psize + (ci * kh + i) * d.ls + (kw - 1 - j) * f + fi]
                        dw[(i * kw + j) * g.c + ci, fi] = s
    elif want_dw:
        sum_partials(dwp, &dw[0, 0], ng, <Py_ssize_t>kdim * f, accumulate, n_threads)
    if want_db:
        sum_partials(dbp, &db[0], ng, f, accumulate, 1)


# ------------------------------------------------------------------------------------- the plan
# Tuning, read when a plan is built (module globals: tests monkeypatch them).
# Patches of a few images are built at a time so they are still in cache when sgemm reads them.
CHUNK_BYTES = 512 * 1024
# The weight gradient is summed per group of images, then over groups in order (results do not
# depend on the thread count). At most this many groups, and at most this many bytes of partials.
MAX_GROUPS = 16
MAX_PARTIAL_BYTES = 32 * 1024 * 1024
# Patch layout. im2col copies runs of kw * channels contiguous values per kernel row; below this
# many the patches are built transposed instead (one run per output row and tap), which measured
# faster for grey-image first layers (LeNet's 5x5x6 on 28x28x1, batch 64, forward+backward: 2.79 -> 1.76 ms).
TRANSPOSED_BELOW = 16
# Direct kernels (core/_conv_direct.h), on CPUs with AVX2 + FMA or AVX-512 (their portable 16-byte
# level lost to OpenBLAS on LeNet: 5.2 vs 3.3-4.7 ms a step; AVX2 2.8-3.1, AVX-512 2.3).
SIMD = SIMD_LEVEL >= 1
# Filters as vector lanes: a filter count that is a multiple of 16 up to this, no dilation (an
# implicit GEMM on the NHWC rows, no patches: forward, dW and dx). LeNet's second layer
# (5x5, 6 -> 16) forward 0.47 -> 0.17 ms, backward 1.10 -> 0.42 ms (vs OpenBLAS's Haswell kernels).
# The ConvNet workload (its 3x3, 32 -> 64 on 26x26) 112 -> 76 ms a step with the Haswell kernels,
# even (72 ms) with the SkylakeX ones: 64 filters is where those catch up. First layers with 16-64
# filters are faster this way than as planes too (32 filters 3x3 on 28x28x1: 4.0 -> 2.9 ms).
LANES_MAX_FILTERS = 64 if SIMD else 0
# Otherwise planes (output columns as lanes): stride 1, no dilation, kw * channels below this and
# at most PLANES_MAX_FILTERS filters. LeNet's first layer (5x5, 1 -> 6 on 28x28, batch 64) forward
# 0.85 -> 0.20 ms, backward 0.78 -> 0.18 ms (Haswell kernels); 100 filters lost to the SkylakeX ones.
DIRECT_BELOW = 16 if SIMD else 0
PLANES_MAX_FILTERS = 48


def partial_groups(batch,            # IN  images in the batch
                   partial_values,   # IN  values of one group's partial sums (dW)
                   itemsize):        # IN  bytes per value
    """max(1, min(batch, MAX_GROUPS, MAX_PARTIAL_BYTES // (partial_values * itemsize))): how many
    image groups a weight gradient is summed over, a function of shapes only."""
    cap = max(1, MAX_PARTIAL_BYTES // max(1, partial_values * itemsize))
    return max(1, min(batch, MAX_GROUPS, cap))


cdef class ConvPlan:
    """How a Conv2D runs on one input shape at one thread count, decided once (oneDNN's primitive
    descriptor): the path (``mode``: PATCHES, PLANES or LANES; ``transposed`` patches), images per
    chunk, image groups of the weight gradient, and the scratch each takes (``col`` values per
    thread, ``part`` values per group). ``forward`` / ``backward`` run the kernels with it."""
    cdef readonly int mode, chunk, groups, threads, filters, kdim
    cdef readonly bint transposed
    cdef readonly Py_ssize_t col, part
    cdef readonly tuple x4, z4, args

    def __init__(self, tuple x4,         # IN  input shape (n, h, w, c), NHWC
                 int filters,            # IN  output channels
                 tuple kernel,           # IN  (kh, kw)
                 tuple strides,          # IN  (sh, sw)
                 tuple padding,          # IN  ((top, bottom), (left, right)) cells
                 tuple dilation,         # IN  (dh, dw)
                 int itemsize,           # IN  bytes per value (4 float32, 8 float64)
                 int threads):           # IN  the thread count the plan runs at
        """out = (in + before + after - dilation * (k - 1) - 1) // stride + 1 per axis; then the path."""
        n, h, w, c = x4
        kh, kw = kernel
        out = [(size + pad[0] + pad[1] - d * (k - 1) - 1) // s + 1
               for size, pad, k, s, d in zip((h, w), padding, kernel, strides, dilation)]
        self.x4, self.z4 = tuple(x4), (n, out[0], out[1], filters)
        self.filters, self.threads, self.kdim = filters, threads, kh * kw * c
        self.args = (kh, kw, strides[0], strides[1], padding[0][0], padding[1][0], dilation[0], dilation[1])
        self.transposed = kw * c < TRANSPOSED_BELOW
        if tuple(dilation) == (1, 1) and filters % 16 == 0 and filters <= LANES_MAX_FILTERS:
            self.mode = LANES
        elif (tuple(strides) == (1, 1) and tuple(dilation) == (1, 1) and kw * c < DIRECT_BELOW
              and filters <= PLANES_MAX_FILTERS):
            self.mode = PLANES
        else:
            self.mode = PATCHES
        per_image = out[0] * out[1] * self.kdim
        self.groups = partial_groups(n, self.kdim * filters, itemsize)
        self.chunk = max(1, min(-(-n // self.groups), CHUNK_BYTES // max(1, per_image * itemsize)))
        self.col, self.part = self.chunk * per_image, self.kdim * filters
        if self.mode != PATCHES:
            scratch, self.part = conv2d_direct_sizes(self.mode, h, w, c, out[0], out[1], kh, kw,
                                                     strides[0], strides[1], filters)
            # planes take dx from the transposed patches; the lanes never build patches
            self.col = max(self.col, scratch) if self.mode == PLANES else scratch

    def forward(self, x,            # IN  (n, h, w, c), shaped as x4
                w, b,               # IN  (kdim, filters) kernel, (filters,) bias or None
                z, y,               # OUT (n, oh, ow, filters) pre-activation, activation (may be z)
                col,                # scratch (threads, col)
                int act, double alpha):
        """conv2d_forward with this plan: z := conv(x, W) + b;  y := f(z)."""
        conv2d_forward(x, w, b, z, y, col, *self.args, self.chunk, self.groups, self.transposed, self.mode,
                       act, alpha, self.threads)

    def backward(self, x, w, z, y, dy,    # IN  the forward's input, kernel, outputs; dL/dy
                 dz, dw, db, dx,          # OUT dL/dz (dy itself when linear); dW, db, dx or None
                 col, dw_part, db_part,   # scratch (threads, col), (groups, part), (groups, filters)
                 int act, double alpha, bint accumulate):
        """conv2d_backward with this plan: dz := dy * f'(z); dW, db (+)= their sums; dx."""
        conv2d_backward(x, w, z, y, dy, dz, dw, db, dx, col, dw_part, db_part, *self.args, self.chunk,
                        self.transposed, self.mode, act, alpha, accumulate, self.threads)

    def __repr__(self):
        return (f"ConvPlan(x={self.x4}, z={self.z4}, mode={('patches', 'planes', 'lanes')[self.mode]}, "
                f"transposed={bool(self.transposed)}, chunk={self.chunk}, groups={self.groups}, "
                f"threads={self.threads})")


# ------------------------------------------------------------------------------ DepthwiseConv2D
cdef inline void depthwise_tap_forward(const floating* xp,   # IN  (c,) the input cell under the tap
                                       const floating* kp,   # IN  (c, m) the tap's filters
                                       floating* out,        # OUT (c*m,) the output cell, accumulated
                                       Py_ssize_t c, Py_ssize_t m) noexcept nogil:
    """out[ci*m + mj] += xp[ci] * kp[ci*m + mj]."""
    cdef Py_ssize_t ci, mj
    if m == 1:
        for ci in range(c):
            out[ci] += xp[ci] * kp[ci]
    else:
        for ci in range(c):
            for mj in range(m):
                out[ci * m + mj] += xp[ci] * kp[ci * m + mj]


cdef inline void depthwise_tap_backward(const floating* xp,   # IN  (c,) the input cell under the tap
                                        const floating* kp,   # IN  (c, m) the tap's filters
                                        const floating* g,    # IN  (c*m,) dL/dz of the output cell
                                        floating* tap,        # OUT (c, m) dL/dk of the tap, accumulated; or NULL
                                        floating* dxp,        # OUT (c,) dL/dx of the input cell, accumulated; or NULL
                                        Py_ssize_t c, Py_ssize_t m) noexcept nogil:
    """tap[ci*m + mj] += xp[ci] * g[ci*m + mj];  dxp[ci] += sum_mj g[ci*m + mj] * kp[ci*m + mj]."""
    cdef Py_ssize_t ci, mj
    cdef floating s
    if m == 1:
        # one filter per channel: plain loops over channels (vectorised)
        if tap != NULL:
            for ci in range(c):
                tap[ci] += xp[ci] * g[ci]
        if dxp != NULL:
            for ci in range(c):
                dxp[ci] += g[ci] * kp[ci]
        return
    # gradient with respect to the kernel tap
    if tap != NULL:
        for ci in range(c):
            for mj in range(m):
                tap[ci * m + mj] += xp[ci] * g[ci * m + mj]
    # gradient with respect to the input cell
    if dxp != NULL:
        for ci in range(c):
            s = 0
            for mj in range(m):
                s = s + g[ci * m + mj] * kp[ci * m + mj]
            dxp[ci] += s


cdef void depthwise_image(const floating* x,   # IN  one image (h, w, c)
                          const floating* k,   # IN  (kh, kw, c, m)
                          const floating* b,   # IN  (c*m,) bias, or NULL (forward)
                          floating* z,         # OUT (oh, ow, c*m) pre-activation (forward)
                          const floating* dz,  # IN  (oh, ow, c*m) dL/dz (backward)
                          floating* dk,        # OUT (kh, kw, c, m) dL/dk, accumulated; or NULL (backward)
                          floating* db,        # OUT (c*m,) dL/db, accumulated (backward)
                          floating* dx,        # OUT (h, w, c) dL/dx, accumulated; or NULL (backward)
                          int h, int wd, int c, int m, int oh, int ow, int kh, int kw,
                          int sh, int sw, int pt, int pl, int dh, int dw, bint backward) noexcept nogil:
    """Every output cell (p, q) and each tap (i, j) of it inside the image, in row-major order:
    forward z[p, q] := b + sum of depthwise_tap_forward; backward db += dz[p, q], depthwise_tap_backward."""
    cdef Py_ssize_t p, q, i, j, ih, iw, ci, cell, cm = <Py_ssize_t>c * m
    cdef const floating* xp
    cdef const floating* kp
    for p in range(oh):
        for q in range(ow):
            cell = (p * ow + q) * cm
            if backward:
                # gradient with respect to the bias
                for ci in range(cm):
                    db[ci] += dz[cell + ci]
            else:
                for ci in range(cm):
                    z[cell + ci] = b[ci] if b != NULL else 0
            for i in range(kh):
                ih = p * sh - pt + i * dh
                if ih < 0 or ih >= h:
                    continue
                for j in range(kw):
                    iw = q * sw - pl + j * dw
                    if iw < 0 or iw >= wd:
                        continue
                    xp = x + (ih * wd + iw) * c
                    kp = k + (i * kw + j) * cm
                    if backward:
                        depthwise_tap_backward(xp, kp, dz + cell,
                                               (dk + (i * kw + j) * cm) if dk != NULL else NULL,
                                               (dx + (ih * wd + iw) * c) if dx != NULL else NULL, c, m)
                    else:
                        depthwise_tap_forward(xp, kp, z + cell, c, m)


def depthwise_conv2d_forward(const floating[:, :, :, ::1] x,  # IN  (n, h, w, c)
                             const floating[:, :, :, ::1] k,  # IN  (kh, kw, c, m) depthwise kernel
                             const floating[::1] b,           # IN  (c*m,) or None
                             floating[:, :, :, ::1] z,        # OUT (n, oh, ow, c*m) pre-activation
                             floating[:, :, :, ::1] y,        # OUT (n, oh, ow, c*m); may be z when linear
                             int sh, int sw, int pt, int pl, int dh, int dw,
                             int act, double alpha, int n_threads):
    """z[n, oh, ow, c*m + j] := sum_{i1,i2} x[n, oh*sh - pt + i1*dh, ow*sw - pl + i2*dw, c] k[i1, i2, c, j] + b."""
    cdef int n = x.shape[0], h = x.shape[1], wd = x.shape[2], c = x.shape[3]
    cdef int kh = k.shape[0], kw = k.shape[1], m = k.shape[3], oh = z.shape[1], ow = z.shape[2]
    cdef Py_ssize_t ohw = <Py_ssize_t>oh * ow
    cdef int cm = c * m, t, img, i0, i1
    cdef int nt = threads_for_work(<long long>n * ohw * kh * kw * c * m, ELEMENT_GRAIN, n, n_threads)
    cdef const floating* bp = &b[0] if b is not None else NULL
    cdef floating* zp = &z[0, 0, 0, 0]
    cdef floating* yp = &y[0, 0, 0, 0]
    if n == 0 or ohw == 0:
        return
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        i0 = block_start(n, nt, t)
        i1 = block_start(n, nt, t + 1)
        for img in range(i0, i1):
            depthwise_image(&x[img, 0, 0, 0], &k[0, 0, 0, 0], bp, &z[img, 0, 0, 0], NULL, NULL, NULL,
                            NULL, h, wd, c, m, oh, ow, kh, kw, sh, sw, pt, pl, dh, dw, False)
            rows_forward(act, alpha, zp, yp, img * ohw, (img + 1) * ohw, cm)


def depthwise_conv2d_backward(const floating[:, :, :, ::1] x,   # IN  (n, h, w, c)
                              const floating[:, :, :, ::1] k,   # IN  (kh, kw, c, m)
                              const floating[:, :, :, ::1] z,   # IN  (n, oh, ow, c*m) pre-activation
                              const floating[:, :, :, ::1] y,   # IN  activation
                              const floating[:, :, :, ::1] dy,  # IN  dL/dy
                              floating[:, :, :, ::1] dz,        # OUT dL/dz; pass dy itself when act is LINEAR
                              floating[:, :, :, ::1] dk,        # OUT (kh, kw, c, m) dL/dk, or None
                              floating[::1] db,                 # OUT (c*m,) dL/db, or None
                              floating[:, :, :, ::1] dx,        # OUT (n, h, w, c) dL/dx, or None
                              floating[:, ::1] dk_part,         # scratch (groups, kh*kw*c*m)
                              floating[:, ::1] db_part,         # scratch (groups, c*m)
                              int sh, int sw, int pt, int pl, int dh, int dw,
                              int act, double alpha, bint accumulate, int n_threads):
    """dz := dy * f'(z);  dk (+)= sum x * dz over images and positions;  db (+)= sum dz;
    dx[.., c] := sum_{taps, j} dz[.., c*m + j] k[.., c, j]. Group partial sums as in conv2d_backward."""
    cdef int n = x.shape[0], h = x.shape[1], wd = x.shape[2], c = x.shape[3]
    cdef int kh = k.shape[0], kw = k.shape[1], m = k.shape[3], oh = z.shape[1], ow = z.shape[2]
    cdef Py_ssize_t p, ci, ohw = <Py_ssize_t>oh * ow, ksize = <Py_ssize_t>kh * kw * c * m
    cdef Py_ssize_t in_size = <Py_ssize_t>h * wd * c
    cdef int cm = c * m, ng = dk_part.shape[0], t, g0, g1, grp, img
    cdef int nt = threads_for_work(2 * <long long>n * ohw * ksize, ELEMENT_GRAIN, ng, n_threads)
    cdef bint want_dx = dx is not None, want_dk = dk is not None, want_db = db is not None
    cdef floating* dx0 = &dx[0, 0, 0, 0] if want_dx else NULL
    cdef floating* dxp
    cdef floating* dkp
    cdef floating* dbp
    if n == 0 or ohw == 0 or ng == 0:
        return
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        g0 = block_start(ng, nt, t)
        g1 = block_start(ng, nt, t + 1)
        for grp in range(g0, g1):
            dkp = &dk_part[grp, 0]
            dbp = &db_part[grp, 0]
            for p in range(ksize):
                dkp[p] = 0
            for ci in range(cm):
                dbp[ci] = 0
            for img in range(block_start(n, ng, grp), block_start(n, ng, grp + 1)):
                # gradient with respect to the pre-activation
                if act != LINEAR:
                    rows_backward(act, alpha, &z[0, 0, 0, 0], &y[0, 0, 0, 0], &dy[0, 0, 0, 0],
                                  &dz[0, 0, 0, 0], img * ohw, (img + 1) * ohw, cm)
                dxp = NULL
                if want_dx:
                    dxp = dx0 + img * in_size
                    memset(dxp, 0, <size_t>in_size * sizeof(floating))
                depthwise_image(&x[img, 0, 0, 0], &k[0, 0, 0, 0], NULL, NULL, &dz[img, 0, 0, 0],
                                dkp if want_dk else NULL, dbp, dxp, h, wd, c, m, oh, ow, kh, kw,
                                sh, sw, pt, pl, dh, dw, True)
    # the groups' partial sums, added in group order
    if want_dk:
        sum_partials(&dk_part[0, 0], &dk[0, 0, 0, 0], ng, ksize, accumulate, n_threads)
    if want_db:
        sum_partials(&db_part[0, 0], &db[0], ng, cm, accumulate, 1)
