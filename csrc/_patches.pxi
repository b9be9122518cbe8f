# The patch matrices of a convolution over NHWC images (im2col / col2im, rows or transposed) and
# the geometry they read; the adjoints sit next to their forwards. Included by conv.pyx: an include,
# not a cimported .pxd, where every function would have to be declared inline; this way the
# generated C is the same as when they were written in conv.pyx (same speed, same bits).
#
# Layout. A patch row of im2col holds, for one output position (oh, ow), the input cells it sees in
# (i, j, c) order: col[oh*OW + ow, (i*KW + j)*C + c] = x[oh*sh - pt + i*dh, ow*sw - pl + j*dw, c]
# (zero outside the image). With the kernel stored as Keras' (KH, KW, C, F), read as a (KH*KW*C, F)
# matrix, the convolution of one image is a single row-major GEMM: z (OH*OW, F) = col @ W.

cdef struct Geom:
    # one image: input (h, w, c), output (oh, ow), kernel (kh, kw), strides, top/left padding, dilations
    int h, w, c, oh, ow, kh, kw, sh, sw, pt, pl, dh, dw


cdef Geom make_geom(int h, int w, int c, int oh, int ow, int kh, int kw, int sh, int sw,
                    int pt, int pl, int dh, int dw):
    """Geom {h, w, c, oh, ow, kh, kw, sh, sw, pt, pl, dh, dw} from its fields."""
    cdef Geom g
    g.h = h; g.w = w; g.c = c; g.oh = oh; g.ow = ow; g.kh = kh; g.kw = kw
    g.sh = sh; g.sw = sw; g.pt = pt; g.pl = pl; g.dh = dh; g.dw = dw
    return g


cdef inline const floating* patches(const floating* x, int cnt, bint transposed, bint pointwise,
                                   floating* col, const Geom* g) noexcept nogil:
    """The patch matrix of cnt consecutive images from x, as the GEMMs read it: x itself for a
    pointwise convolution; else (cnt * oh * ow, kdim) patches written to col, or, when transposed,
    (kdim, cnt * oh * ow)."""
    cdef Py_ssize_t ohw = <Py_ssize_t>g.oh * g.ow, kdim = <Py_ssize_t>g.kh * g.kw * g.c
    cdef Py_ssize_t size = <Py_ssize_t>g.h * g.w * g.c
    cdef int q
    if pointwise:
        return x
    for q in range(cnt):
        if transposed:
            im2col_transposed(x + q * size, col + q * ohw, cnt * ohw, g)
        else:
            im2col(x + q * size, col + q * ohw * kdim, g)
    return col


cdef inline bint is_pointwise(const Geom* g) noexcept nogil:
    """A 1x1 kernel with stride 1 and no padding: the image itself is its patch matrix."""
    return (g.kh == 1 and g.kw == 1 and g.sh == 1 and g.sw == 1 and g.pt == 0 and g.pl == 0
            and g.oh == g.h and g.ow == g.w)


# --------------------------------------------------------------------------------- im2col / col2im
cdef void im2col(const floating* x,   # IN  one image (h, w, c)
                 floating* col,       # OUT (oh*ow, kh*kw*c)
                 const Geom* gp) noexcept nogil:
    """col[oh*OW + ow, (i*KW + j)*C + c] := x[oh*sh - pt + i*dh, ow*sw - pl + j*dw, c], 0 outside."""
    cdef Geom g = gp[0]  # a local copy: the stores into col cannot alias it, so it stays in registers
    cdef Py_ssize_t oh, ow, i, j, q, ih, iw, iw0
    cdef Py_ssize_t c = g.c, kc = g.kw * g.c, rowlen = g.kh * g.kw * g.c
    cdef floating* row
    cdef floating* dst
    cdef const floating* src
    cdef bint inside
    for oh in range(g.oh):
        for ow in range(g.ow):
            row = col + (oh * g.ow + ow) * rowlen
            iw0 = ow * g.sw - g.pl
            # undilated and horizontally inside: the kw*c values of one kernel row are contiguous in x
            inside = g.dw == 1 and iw0 >= 0 and iw0 + g.kw <= g.w
            for i in range(g.kh):
                ih = oh * g.sh - g.pt + i * g.dh
                dst = row + i * kc
                if ih < 0 or ih >= g.h:
                    memset(dst, 0, kc * sizeof(floating))
                elif inside:
                    src = x + (ih * g.w + iw0) * c
                    for q in range(kc):
                        dst[q] = src[q]
                else:
                    for j in range(g.kw):
                        iw = iw0 + j * g.dw
                        if iw < 0 or iw >= g.w:
                            for q in range(c):
                                dst[j * c + q] = 0
                        else:
                            src = x + (ih * g.w + iw) * c
                            for q in range(c):
                                dst[j * c + q] = src[q]


cdef void col2im(const floating* col,  # IN  (oh*ow, kh*kw*c) gradient w.r.t. the patches
                 floating* x,          # OUT one image (h, w, c) gradient w.r.t. the input
                 const Geom* gp) noexcept nogil:
    """The adjoint of im2col: zero x, then add every patch entry back to the cell it was copied from."""
    cdef Geom g = gp[0]  # a local copy, as in im2col
    cdef Py_ssize_t oh, ow, i, j, q, ih, iw, iw0
    cdef Py_ssize_t c = g.c, kc = g.kw * g.c, rowlen = g.kh * g.kw * g.c
    cdef const floating* src
    cdef floating* dst
    cdef bint inside
    memset(x, 0, <size_t>g.h * g.w * g.c * sizeof(floating))
    for oh in range(g.oh):
        for ow in range(g.ow):
            iw0 = ow * g.sw - g.pl
            inside = g.dw == 1 and iw0 >= 0 and iw0 + g.kw <= g.w
            for i in range(g.kh):
                ih = oh * g.sh - g.pt + i * g.dh
                if ih < 0 or ih >= g.h:
                    continue
                src = col + (oh * g.ow + ow) * rowlen + i * kc
                if inside:
                    # one contiguous run of kw*c values, as in im2col
                    dst = x + (ih * g.w + iw0) * c
                    for q in range(kc):
                        dst[q] += src[q]
                    continue
                for j in range(g.kw):
                    iw = iw0 + j * g.dw
                    if iw < 0 or iw >= g.w:
                        continue
                    dst = x + (ih * g.w + iw) * c
                    for q in range(c):
                        dst[q] += src[j * c + q]


cdef inline void valid_range(int n_out, int stride, int off, int size, Py_ssize_t* lo,
                             Py_ssize_t* hi) noexcept nogil:
    """Outputs o in [lo, hi) read an input cell inside the image: 0 <= o*stride + off < size."""
    cdef Py_ssize_t a = 0 if off >= 0 else (-off + stride - 1) // stride
    cdef Py_ssize_t b = 0 if size - off <= 0 else (size - off - 1) // stride + 1
    b = min(b, <Py_ssize_t>n_out)
    lo[0] = min(a, b)
    hi[0] = b


cdef void im2col_transposed(const floating* x,   # IN  one image (h, w, c)
                            floating* colt,      # OUT (kh*kw*c, oh*ow) block, rows ld apart
                            Py_ssize_t ld,
                            const Geom* gp) noexcept nogil:
    """colt[(i*KW + j)*C + c, oh*OW + ow] := x[oh*sh - pt + i*dh, ow*sw - pl + j*dw, c], 0 outside.

    Patches as columns (Caffe's layout): each kernel tap fills whole output rows, long runs that
    beat the short copies of im2col when kw*c is small (a first layer on grey images)."""
    cdef Geom g = gp[0]
    cdef Py_ssize_t i, j, ci, p, q, ih, lo, hi, off, src
    cdef floating* row
    cdef floating* dst
    for i in range(g.kh):
        for j in range(g.kw):
            off = j * g.dw - g.pl
            valid_range(g.ow, g.sw, <int>off, g.w, &lo, &hi)
            for ci in range(g.c):
                row = colt + ((i * g.kw + j) * g.c + ci) * ld
                for p in range(g.oh):
                    ih = p * g.sh - g.pt + i * g.dh
                    dst = row + p * g.ow
                    if ih < 0 or ih >= g.h:
                        for q in range(g.ow):
                            dst[q] = 0
                        continue
                    for q in range(lo):
                        dst[q] = 0
                    for q in range(hi, g.ow):
                        dst[q] = 0
                    if g.sw == 1 and g.c == 1:
                        src = ih * g.w + off
                        for q in range(lo, hi):
                            dst[q] = x[src + q]
                    else:
                        src = (ih * g.w + off) * g.c + ci
                        for q in range(lo, hi):
                            dst[q] = x[src + q * g.sw * g.c]


cdef void col2im_transposed(const floating* colt,  # IN  (kh*kw*c, oh*ow) block, rows ld apart
                            Py_ssize_t ld,
                            floating* x,           # OUT one image (h, w, c): zeroed, then accumulated
                            const Geom* gp) noexcept nogil:
    """The adjoint of im2col_transposed."""
    cdef Geom g = gp[0]
    cdef Py_ssize_t i, j, ci, p, q, ih, lo, hi, off, dst
    cdef const floating* src
    memset(x, 0, <size_t>g.h * g.w * g.c * sizeof(floating))
    for i in range(g.kh):
        for j in range(g.kw):
            off = j * g.dw - g.pl
            valid_range(g.ow, g.sw, <int>off, g.w, &lo, &hi)
            for ci in range(g.c):
                for p in range(g.oh):
                    ih = p * g.sh - g.pt + i * g.dh
                    if ih < 0 or ih >= g.h:
                        continue
                    src = colt + ((i * g.kw + j) * g.c + ci) * ld + p * g.ow
                    if g.sw == 1 and g.c == 1:
                        dst = ih * g.w + off
                        for q in range(lo, hi):
                            x[dst + q] += src[q]
                    else:
                        dst = (ih * g.w + off) * g.c + ci
                        for q in range(lo, hi):
                            x[dst + q * g.sw * g.c] += src[q]
