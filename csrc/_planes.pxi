# The direct convolution paths' image layouts (core/_conv_direct.h reads them): zero-padded
# channel planes for "planes" (output columns as lanes), zero-padded NHWC images for "lanes"
# (filters as lanes), their gradients' crops, and the scratch sizes they take. Included by conv.pyx
# after _patches.pxi (Geom), as it is, and for the same reason.


cdef struct Planes:
    # zero-padded channel planes (c, ph, pw) of one image; padded dz rows of lrow values; ls lanes
    # per (channel, kernel row) in the weight-gradient partial sums
    int ph, pw, lrow, ls


cdef inline int round_up(int a, int b) noexcept nogil:
    """ceil(a / b) * b."""
    return (a + b - 1) // b * b


cdef inline Planes make_planes(const Geom* g, int f) noexcept nogil:
    """ph = oh + kh - 1; pw = round_up(ow, block) + kw - 1; ls = round_up(kw * f, 64); lrow = (ow + kw - 1) * f + ls."""
    cdef Planes d
    d.ph = g.oh + g.kh - 1
    d.pw = round_up(g.ow, DIRECT_MAX_BLOCK) + g.kw - 1
    d.ls = round_up(g.kw * f, 64)   # a multiple of every level's block of lanes
    d.lrow = (g.ow + g.kw - 1) * f + d.ls
    return d


cdef void fill_planes(const floating* x,   # IN  one image (h, w, c)
                      floating* planes,    # OUT (c, ph, pw)
                      const Geom* gp, const Planes* d) noexcept nogil:
    """planes[ci, r, s] := x[r - pt, s - pl, ci], 0 outside the image."""
    cdef Geom g = gp[0]
    cdef Py_ssize_t r, s, ci, s0, s1, size = <Py_ssize_t>d.ph * d.pw
    cdef const floating* src
    cdef floating* dst
    memset(planes, 0, <size_t>g.c * size * sizeof(floating))
    s0 = max(0, g.pl)
    s1 = min(d.pw, g.pl + g.w)
    for r in range(max(0, g.pt), min(d.ph, g.pt + g.h)):
        src = x + (r - g.pt) * g.w * g.c
        for ci in range(g.c):
            dst = planes + ci * size + r * d.pw
            if g.c == 1:
                for s in range(s0, s1):
                    dst[s] = src[s - g.pl]
            else:
                for s in range(s0, s1):
                    dst[s] = src[(s - g.pl) * g.c + ci]


cdef void fill_dzpad(const floating* dz,   # IN  one image's dL/dz (oh, ow, f)
                     floating* dzpad,      # OUT (oh, lrow): each row after (kw - 1)*f zeros, then zeros
                     const Geom* g, const Planes* d, int f) noexcept nogil:
    """dzpad[p, (kw - 1)*f + k] := dz[p, k] for k < ow*f, 0 elsewhere in the row."""
    cdef Py_ssize_t p, k, lead = <Py_ssize_t>(g.kw - 1) * f, run = <Py_ssize_t>g.ow * f
    cdef floating* row
    cdef const floating* src
    for p in range(g.oh):
        row = dzpad + p * d.lrow
        src = dz + p * run
        for k in range(lead):
            row[k] = 0
        for k in range(run):
            row[lead + k] = src[k]
        for k in range(lead + run, d.lrow):
            row[k] = 0


cdef inline int padded_rows(const Geom* g) noexcept nogil:
    """(oh - 1) * sh + kh: rows of a padded image (filters-as-lanes path)."""
    return (g.oh - 1) * g.sh + g.kh


cdef inline int padded_cols(const Geom* g) noexcept nogil:
    """(ow - 1) * sw + kw: columns of a padded image (filters-as-lanes path)."""
    return (g.ow - 1) * g.sw + g.kw


cdef void fill_padded(const floating* x,   # IN  one image (h, w, c)
                      floating* xp,        # OUT (hp, wp, c) then slack, zero outside the image
                      const Geom* gp) noexcept nogil:
    """xp[r, s, :] := x[r - pt, s - pl, :], 0 outside (filters-as-lanes path)."""
    cdef Geom g = gp[0]
    cdef int hp = padded_rows(&g), wp = padded_cols(&g)
    cdef Py_ssize_t r, k, s0 = max(0, g.pl), s1 = min(wp, g.pl + g.w)
    cdef floating* dst
    cdef const floating* src
    memset(xp, 0, (<size_t>hp * wp * g.c + direct_slack(g.c, g.sw)) * sizeof(floating))
    if s1 <= s0:
        return
    for r in range(max(0, g.pt), min(hp, g.pt + g.h)):
        dst = xp + (r * wp + s0) * g.c
        src = x + ((r - g.pt) * g.w + s0 - g.pl) * g.c
        for k in range((s1 - s0) * g.c):
            dst[k] = src[k]


cdef inline Py_ssize_t padded_size(const Geom* g) noexcept nogil:
    """Values of a padded image and its slack (filters-as-lanes path)."""
    return <Py_ssize_t>padded_rows(g) * padded_cols(g) * g.c + direct_slack(g.c, g.sw)


cdef void crop_padded(const floating* xp,   # IN  (hp, wp, c) gradient w.r.t. the padded image
                      floating* x,          # OUT one image (h, w, c) gradient w.r.t. the input
                      const Geom* gp) noexcept nogil:
    """x[r, s, :] := xp[r + pt, s + pl, :], 0 where the windows never reach (the adjoint of fill_padded)."""
    cdef Geom g = gp[0]
    cdef int hp = padded_rows(&g), wp = padded_cols(&g)
    cdef Py_ssize_t r, s, k, rp, sp
    cdef floating* dst
    cdef const floating* src
    for r in range(g.h):
        dst = x + r * g.w * g.c
        rp = r + g.pt
        for s in range(g.w):
            sp = s + g.pl
            if rp < hp and sp < wp:
                src = xp + (rp * wp + sp) * g.c
                for k in range(g.c):
                    dst[s * g.c + k] = src[k]
            else:
                for k in range(g.c):
                    dst[s * g.c + k] = 0
