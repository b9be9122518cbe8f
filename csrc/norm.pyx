# Batch and layer normalization, forward and backward side by side.
#
# Both work on a 2-D view (rows, channels): batch norm flattens every axis but the channel axis
# into rows (dense (batch, C), NWC (batch*width, C), NHWC (batch*h*w, C)); layer norm flattens
# every axis but the normalized trailing ones.
#
# Sums over rows (batch-norm statistics, gamma/beta gradients) run in a fixed order, so results
# do not depend on the thread count: the rows are cut into chunks whose size depends only on the
# shape (norm_chunks), each chunk writes its own partial sums (threads split the chunks), and the
# partials are then combined in chunk order for each channel. Partials are kept in double.
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt
from _threads cimport block_start, threads_for_work

cdef enum:
    CHUNK_ELEMS = 4096   # aim for chunks of at least this many values (16 KiB of float32) ...
    MAX_CHUNKS = 32      # ... but never more than this many chunks (partials: MAX_CHUNKS x 2 x C)


cdef inline Py_ssize_t chunk_rows(Py_ssize_t rows, Py_ssize_t cols) noexcept nogil:
    """Rows per chunk: a function of the shape only, never of the thread count."""
    cdef Py_ssize_t r = CHUNK_ELEMS // cols if cols > 0 else rows
    cdef Py_ssize_t min_rows = (rows + MAX_CHUNKS - 1) // MAX_CHUNKS
    if r < min_rows:
        r = min_rows
    return r if r > 0 else 1


def norm_chunks(Py_ssize_t rows, Py_ssize_t cols):
    """How many row chunks a (rows, cols) input is cut into: the first axis of ``partials``."""
    cdef Py_ssize_t r = chunk_rows(rows, cols)
    return max(1, (rows + r - 1) // r)


# ------------------------------------------------------------------------- batch normalization

cdef inline Py_ssize_t rows_counted(const unsigned char* mask, Py_ssize_t r0, Py_ssize_t r1) noexcept nogil:
    """How many rows of r0 <= r < r1 enter the statistics: all, or those whose mask is set."""
    cdef Py_ssize_t r, k = 0
    if mask == NULL:
        return r1 - r0
    for r in range(r0, r1):
        k += mask[r] != 0
    return k


cdef inline void zero_sums(double* a,   # OUT (n,) zeros
                           double* b,   # OUT (n,) zeros
                           Py_ssize_t n) noexcept nogil:
    """a[c] := 0;  b[c] := 0: a chunk's two rows of partial sums, before it adds its rows in."""
    cdef Py_ssize_t c
    for c in range(n):
        a[c] = 0
        b[c] = 0


cdef void chunk_moments(const floating* x, const unsigned char* mask, Py_ssize_t r0, Py_ssize_t r1,
                        Py_ssize_t n, double* mean, double* m2) noexcept nogil:
    """mean[c], m2[c] := mean and sum of squared deviations of x[r, c] over r0 <= r < r1 (only
    rows whose mask is set, when mask != NULL; zeros when there are none).

    Two passes over the chunk (it is still in cache for the second): the sum of squared
    deviations from the chunk mean, not E[x^2] - E[x]^2, which cancels badly."""
    cdef Py_ssize_t r, c, count = rows_counted(mask, r0, r1)
    cdef double d
    cdef const floating* row
    zero_sums(mean, m2, n)
    if count == 0:
        return
    for r in range(r0, r1):
        if mask != NULL and mask[r] == 0:
            continue
        row = x + r * n
        for c in range(n):
            mean[c] += row[c]
    for c in range(n):
        mean[c] /= count
    for r in range(r0, r1):
        if mask != NULL and mask[r] == 0:
            continue
        row = x + r * n
        for c in range(n):
            d = row[c] - mean[c]
            m2[c] += d * d


cdef void chunk_grad_sums(const floating* x, const floating* dy, const floating* mean,
                          Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t n,
                          double* s_dy, double* s_dyx) noexcept nogil:
    """s_dy[c] := sum_r dy[r, c];  s_dyx[c] := sum_r dy[r, c] * (x[r, c] - mean[c]) over r0 <= r < r1."""
    cdef Py_ssize_t r, c
    cdef const floating* xr
    cdef const floating* gr
    zero_sums(s_dy, s_dyx, n)
    for r in range(r0, r1):
        xr = x + r * n
        gr = dy + r * n
        for c in range(n):
            s_dy[c] += gr[c]
            s_dyx[c] += gr[c] * (xr[c] - mean[c])


cdef void rows_affine(const floating* x, const floating* mean, const floating* scale,
                      const floating* shift, floating* y, Py_ssize_t r0, Py_ssize_t r1,
                      Py_ssize_t n) noexcept nogil:
    """y[r, c] := (x[r, c] - mean[c]) * scale[c] + shift[c] for r0 <= r < r1."""
    cdef Py_ssize_t r, c
    cdef const floating* xr
    cdef floating* yr
    for r in range(r0, r1):
        xr = x + r * n
        yr = y + r * n
        for c in range(n):
            yr[c] = (xr[c] - mean[c]) * scale[c] + shift[c]


cdef void combine_moments(const double* part, const unsigned char* mask, Py_ssize_t n_chunks,
                          Py_ssize_t rows_per, Py_ssize_t m, Py_ssize_t n, Py_ssize_t c0, Py_ssize_t c1,
                          double* mean, double* var) noexcept nogil:
    """Channels c0 <= c < c1: batch mean and biased variance from the per-chunk (mean_k, M2_k) in
    ``part`` (n_chunks, 2, n), chunks in order (Chan et al.: M2 = sum_k M2_k + n_k (mean_k - mean)^2).
    n_k counts the chunk's rows in the statistics; with none at all, mean = var = 0."""
    cdef Py_ssize_t k, c, nk, total = rows_counted(mask, 0, m)
    cdef const double* pm
    cdef const double* pq
    cdef double d
    for c in range(c0, c1):
        mean[c] = 0
        var[c] = 0
    if total == 0:
        return
    for k in range(n_chunks):
        nk = rows_counted(mask, k * rows_per, min(m, (k + 1) * rows_per))
        pm = part + 2 * k * n
        for c in range(c0, c1):
            mean[c] += nk * pm[c]
    for c in range(c0, c1):
        mean[c] /= total
    for k in range(n_chunks):
        nk = rows_counted(mask, k * rows_per, min(m, (k + 1) * rows_per))
        pm = part + 2 * k * n
        pq = pm + n
        for c in range(c0, c1):
            d = pm[c] - mean[c]
            var[c] += pq[c] + nk * d * d
    for c in range(c0, c1):
        var[c] /= total


cdef void bn_forward_channels(const floating* gamma, const floating* beta, floating* moving_mean,
                              floating* moving_var, double* stats, const double* part,
                              const unsigned char* mask, floating* coef, Py_ssize_t n_chunks,
                              Py_ssize_t rows_per, Py_ssize_t m, Py_ssize_t n, Py_ssize_t c0,
                              Py_ssize_t c1, bint batch_stats, double momentum,
                              double epsilon) noexcept nogil:
    """Channels c0 <= c < c1: the statistics to normalize with (batch ones, updating the moving
    ones, or the moving ones), stats := (mean, 1/sqrt(var + eps)), and the affine map's coef."""
    cdef Py_ssize_t c
    cdef double* mean = stats
    cdef double* inv = stats + n
    cdef double g
    if batch_stats:
        combine_moments(part, mask, n_chunks, rows_per, m, n, c0, c1, mean, inv)  # inv holds var for now
        for c in range(c0, c1):
            moving_mean[c] = <floating>(momentum * moving_mean[c] + (1.0 - momentum) * mean[c])
            moving_var[c] = <floating>(momentum * moving_var[c] + (1.0 - momentum) * inv[c])
    else:
        for c in range(c0, c1):
            mean[c] = moving_mean[c]
            inv[c] = moving_var[c]
    for c in range(c0, c1):
        inv[c] = 1.0 / sqrt(inv[c] + epsilon)
        g = gamma[c] if gamma != NULL else 1.0
        coef[c] = <floating>mean[c]                                    # row 0: mean
        coef[n + c] = <floating>(inv[c] * g)                           # row 1: scale
        coef[2 * n + c] = beta[c] if beta != NULL else 0               # row 2: shift


def batch_norm_forward(const floating[:, ::1] x,        # IN  (rows, C)
                       const unsigned char[::1] row_mask,  # IN (rows,) 1 = row enters the statistics
                                                        #     (a sequence mask), or None: every row
                       const floating[::1] gamma,       # IN  (C,), or None (scale=False: gamma = 1)
                       const floating[::1] beta,        # IN  (C,), or None (center=False: beta = 0)
                       floating[::1] moving_mean,       # IN/OUT (C,) updated in place with batch_stats
                       floating[::1] moving_var,        # IN/OUT (C,) updated in place with batch_stats
                       double[:, ::1] stats,            # OUT (2, C) mean and 1/sqrt(var + eps) used
                       double[:, :, ::1] partials,      # scratch (norm_chunks(rows, C), 2, C)
                       floating[:, ::1] coef,           # scratch (4, C)
                       floating[:, ::1] y,              # OUT (rows, C)
                       bint batch_stats, double momentum, double epsilon, int n_threads):
    """y := (x - mean) / sqrt(var + eps) * gamma + beta, per channel c.

    With ``batch_stats`` (training): mean, var are the batch mean and biased variance over the
    rows, and moving := momentum * moving + (1 - momentum) * batch (Keras: the biased variance
    goes into the moving variance too). Otherwise mean, var are the moving statistics.
    With ``row_mask`` the batch statistics are taken over the masked-in rows only (Keras' masked
    moments); every row is normalized.
    """
    cdef Py_ssize_t m = x.shape[0], n = x.shape[1]
    cdef Py_ssize_t rows_per = chunk_rows(m, n)
    cdef Py_ssize_t n_chunks = (m + rows_per - 1) // rows_per
    cdef int nt = max(1, n_threads), t, nb
    cdef Py_ssize_t k
    cdef const floating* g = &gamma[0] if gamma is not None else NULL
    cdef const floating* b = &beta[0] if beta is not None else NULL
    cdef const floating* xp
    cdef const unsigned char* mk = &row_mask[0] if (row_mask is not None and m > 0) else NULL
    cdef double* pp
    if n == 0 or m == 0:
        return
    xp = &x[0, 0]
    pp = &partials[0, 0, 0] if batch_stats else NULL
    # per-chunk moments, chunks split over threads
    if batch_stats:
        nb = threads_for_work(n_chunks, 1, <int>n_chunks, nt)
        if nb == 1:
            for k in range(n_chunks):
                chunk_moments(xp, mk, k * rows_per, min(m, (k + 1) * rows_per), n, pp + 2 * k * n,
                              pp + (2 * k + 1) * n)
        else:
            for k in prange(n_chunks, nogil=True, schedule="static", num_threads=nb):
                chunk_moments(xp, mk, k * rows_per, min(m, (k + 1) * rows_per), n, pp + 2 * k * n,
                              pp + (2 * k + 1) * n)
    # per channel: combine the chunks in order, update the moving statistics, fold gamma and beta
    # into the affine map (a small job: one thread unless there are many channels)
    nb = threads_for_work(n * n_chunks, 8 * CHUNK_ELEMS, nt, nt)
    if nb == 1:
        bn_forward_channels(g, b, &moving_mean[0], &moving_var[0], &stats[0, 0], pp, mk, &coef[0, 0],
                            n_chunks, rows_per, m, n, 0, n, batch_stats, momentum, epsilon)
    else:
        for t in prange(nb, nogil=True, schedule="static", num_threads=nb):
            bn_forward_channels(g, b, &moving_mean[0], &moving_var[0], &stats[0, 0], pp, mk, &coef[0, 0],
                                n_chunks, rows_per, m, n, block_start(n, nb, t), block_start(n, nb, t + 1),
                                batch_stats, momentum, epsilon)
    # the affine map, rows split over threads
    nb = threads_for_work(m * n, CHUNK_ELEMS, <int>min(m, <Py_ssize_t>nt), nt)
    if nb == 1:
        rows_affine(xp, &coef[0, 0], &coef[1, 0], &coef[2, 0], &y[0, 0], 0, m, n)
    else:
        for t in prange(nb, nogil=True, schedule="static", num_threads=nb):
            rows_affine(xp, &coef[0, 0], &coef[1, 0], &coef[2, 0], &y[0, 0],
                        block_start(m, nb, t), block_start(m, nb, t + 1), n)


cdef void bn_backward_channels(const floating* gamma, const double* stats, double* part,
                               floating* dgamma, floating* dbeta, floating* coef,
                               Py_ssize_t n_chunks, Py_ssize_t count, Py_ssize_t n, Py_ssize_t c0,
                               Py_ssize_t c1, bint need_sums, bint batch_stats,
                               bint accumulate) noexcept nogil:
    """Channels c0 <= c < c1: S1 = sum dy and S2 = sum dy * (x - mean) summed over the chunks in
    order (into chunk 0's slots), the weight gradients, and dx's coefficients A, B, D in coef.
    ``count`` is the number of rows the batch statistics were taken over."""
    cdef Py_ssize_t k, c
    cdef double* s1 = part
    cdef double* s2 = part + n
    cdef const double* p
    cdef double inv, a
    if need_sums:
        for k in range(1, n_chunks):   # chunk order: the same sums whatever the thread count
            p = part + 2 * k * n
            for c in range(c0, c1):
                s1[c] += p[c]
                s2[c] += p[n + c]
    for c in range(c0, c1):
        inv = stats[n + c]
        # gradient with respect to beta: dy summed over the rows
        if dbeta != NULL:
            dbeta[c] = <floating>((dbeta[c] if accumulate else 0) + s1[c])
        # gradient with respect to gamma: dy times the normalized input, summed over the rows
        if dgamma != NULL:
            dgamma[c] = <floating>((dgamma[c] if accumulate else 0) + s2[c] * inv)
        # gradient with respect to the input, as dx = A * dy + B * (x - mean) + D
        a = (gamma[c] if gamma != NULL else 1.0) * inv
        coef[c] = <floating>a
        if batch_stats and count > 0:
            coef[n + c] = <floating>(-a * inv * inv * s2[c] / count)
            coef[2 * n + c] = <floating>(-a * s1[c] / count)
        else:
            coef[n + c] = 0
            coef[2 * n + c] = 0


def batch_norm_backward(const floating[:, ::1] x,      # IN  (rows, C) the forward input
                        const unsigned char[::1] row_mask,  # IN  (rows,) as in the forward, or None
                        const floating[:, ::1] dy,     # IN  (rows, C) dL/dy
                        const floating[::1] gamma,     # IN  (C,), or None (gamma = 1)
                        const double[:, ::1] stats,    # IN  (2, C) mean, 1/sqrt(var + eps) from the forward
                        floating[::1] dgamma,          # OUT (C,) dL/dgamma, or None
                        floating[::1] dbeta,           # OUT (C,) dL/dbeta, or None
                        floating[:, ::1] dx,           # OUT (rows, C) dL/dx, or None
                        double[:, :, ::1] partials,    # scratch (norm_chunks(rows, C), 2, C)
                        floating[:, ::1] coef,         # scratch (4, C)
                        bint batch_stats, bint accumulate, int n_threads):
    """Gradients of y = (x - mean) * inv * gamma + beta, inv = 1/sqrt(var + eps), per channel.

    With S1 = sum_r dy and S2 = sum_r dy * (x - mean) over the rows (M of them):
        dbeta (+)= S1;  dgamma (+)= S2 * inv;
        dx = gamma * inv * (dy - S1 / M - (x - mean) * inv^2 * S2 / M)   (batch statistics:
             mean and var depend on x)
        dx = gamma * inv * dy                                             (moving statistics)
    With ``row_mask``, M counts the masked-in rows and only those get the two statistics terms
    (the others did not enter the mean and variance); S1, S2 still run over every row, since
    every output depends on the statistics.
    """
    cdef Py_ssize_t m = x.shape[0], n = x.shape[1]
    cdef Py_ssize_t rows_per = chunk_rows(m, n)
    cdef Py_ssize_t n_chunks = (m + rows_per - 1) // rows_per
    cdef int nt = max(1, n_threads), t, nb
    cdef Py_ssize_t k, c
    cdef const floating* g = &gamma[0] if gamma is not None else NULL
    cdef floating* dgp = &dgamma[0] if dgamma is not None else NULL
    cdef floating* dbp = &dbeta[0] if dbeta is not None else NULL
    cdef bint want_dx = dx is not None
    cdef bint need_sums = dgp != NULL or dbp != NULL or (want_dx and batch_stats)
    cdef const floating* xp
    cdef const floating* gp
    cdef const unsigned char* mk = &row_mask[0] if (row_mask is not None and m > 0) else NULL
    cdef Py_ssize_t count = rows_counted(mk, 0, m)
    cdef double* pp
    cdef floating* cp
    if n == 0 or m == 0 or not (want_dx or dgp != NULL or dbp != NULL):
        return
    xp, gp, cp = &x[0, 0], &dy[0, 0], &coef[0, 0]
    pp = &partials[0, 0, 0] if need_sums else NULL
    for c in range(n):  # coef row 3: the mean as floating, for the per-element differences
        cp[3 * n + c] = <floating>stats[0, c]
    # per-chunk partial sums, chunks split over threads
    if need_sums:
        nb = threads_for_work(n_chunks, 1, <int>n_chunks, nt)
        if nb == 1:
            for k in range(n_chunks):
                chunk_grad_sums(xp, gp, cp + 3 * n, k * rows_per, min(m, (k + 1) * rows_per), n,
                                pp + 2 * k * n, pp + (2 * k + 1) * n)
        else:
            for k in prange(n_chunks, nogil=True, schedule="static", num_threads=nb):
                chunk_grad_sums(xp, gp, cp + 3 * n, k * rows_per, min(m, (k + 1) * rows_per), n,
                                pp + 2 * k * n, pp + (2 * k + 1) * n)
    # per channel: combine, weight gradients, dx coefficients
    nb = threads_for_work(n * n_chunks, 8 * CHUNK_ELEMS, nt, nt)
    if nb == 1:
        bn_backward_channels(g, &stats[0, 0], pp, dgp, dbp, cp, n_chunks, count, n, 0, n, need_sums,
                             batch_stats, accumulate)
    else:
        for t in prange(nb, nogil=True, schedule="static", num_threads=nb):
            bn_backward_channels(g, &stats[0, 0], pp, dgp, dbp, cp, n_chunks, count, n,
                                 block_start(n, nb, t), block_start(n, nb, t + 1), need_sums,
                                 batch_stats, accumulate)
    # gradient with respect to the input, rows split over threads
    if want_dx:
        nb = threads_for_work(m * n, CHUNK_ELEMS, <int>min(m, <Py_ssize_t>nt), nt)
        if nb == 1:
            rows_bn_input_grad(xp, gp, cp, mk, &dx[0, 0], 0, m, n)
        else:
            for t in prange(nb, nogil=True, schedule="static", num_threads=nb):
                rows_bn_input_grad(xp, gp, cp, mk, &dx[0, 0], block_start(m, nb, t), block_start(m, nb, t + 1), n)


cdef void rows_bn_input_grad(const floating* x, const floating* dy, const floating* coef,
                             const unsigned char* mask, floating* dx, Py_ssize_t r0, Py_ssize_t r1,
                             Py_ssize_t n) noexcept nogil:
    """dx[r, c] := A[c] * dy[r, c] + B[c] * (x[r, c] - mean[c]) + D[c]; coef rows A, B, D, mean.
    Rows whose mask is 0 (when mask != NULL) did not enter the statistics: dx = A * dy."""
    cdef const floating* a = coef
    cdef const floating* b = coef + n
    cdef const floating* d = coef + 2 * n
    cdef const floating* mean = coef + 3 * n
    cdef Py_ssize_t r, c
    cdef const floating* xr
    cdef const floating* gr
    cdef floating* dr
    for r in range(r0, r1):
        xr = x + r * n
        gr = dy + r * n
        dr = dx + r * n
        if mask != NULL and mask[r] == 0:
            for c in range(n):
                dr[c] = a[c] * gr[c]
        else:
            for c in range(n):
                dr[c] = a[c] * gr[c] + b[c] * (xr[c] - mean[c]) + d[c]


# ------------------------------------------------------------------------- layer normalization
#
# Sums along a row use 8 interleaved accumulators of the input's type, combined in a fixed tree
# in double: the compiler vectorizes them (one accumulator is a serial dependency chain, and
# float -> double conversions defeat the vectorizer), and the order is still fixed by the code,
# not by the thread count. Each lane adds n / 8 values.

cdef inline double lanes_total(const floating* acc) noexcept nogil:
    """The 8 lanes of a row reduction added in a fixed tree, in double."""
    return (((<double>acc[0] + acc[4]) + (<double>acc[1] + acc[5]))
            + ((<double>acc[2] + acc[6]) + (<double>acc[3] + acc[7])))


cdef inline double row_sum(const floating* x, Py_ssize_t n) noexcept nogil:
    """sum_j x[j]."""
    cdef floating acc[8]
    cdef Py_ssize_t j, l, n8 = n - n % 8
    for l in range(8):
        acc[l] = 0
    for j in range(0, n8, 8):
        for l in range(8):
            acc[l] += x[j + l]
    for j in range(n8, n):
        acc[0] += x[j]
    return lanes_total(acc)


cdef inline double row_sum_sq_dev(const floating* x, double mu, Py_ssize_t n) noexcept nogil:
    """sum_j (x[j] - mu)^2."""
    cdef floating acc[8]
    cdef floating d, mu_f = <floating>mu
    cdef Py_ssize_t j, l, n8 = n - n % 8
    for l in range(8):
        acc[l] = 0
    for j in range(0, n8, 8):
        for l in range(8):
            d = x[j + l] - mu_f
            acc[l] += d * d
    for j in range(n8, n):
        d = x[j] - mu_f
        acc[0] += d * d
    return lanes_total(acc)


cdef inline double row_dot(const floating* u, const floating* v, Py_ssize_t n) noexcept nogil:
    """sum_j u[j] * v[j] (v may be NULL: sum_j u[j])."""
    cdef floating acc[8]
    cdef Py_ssize_t j, l, n8 = n - n % 8
    if v == NULL:
        return row_sum(u, n)
    for l in range(8):
        acc[l] = 0
    for j in range(0, n8, 8):
        for l in range(8):
            acc[l] += u[j + l] * v[j + l]
    for j in range(n8, n):
        acc[0] += u[j] * v[j]
    return lanes_total(acc)


cdef inline double row_dot_dev(const floating* u, const floating* v, const floating* x, double mu,
                               Py_ssize_t n) noexcept nogil:
    """sum_j u[j] * v[j] * (x[j] - mu) (v may be NULL: taken as ones)."""
    cdef floating acc[8]
    cdef floating mu_f = <floating>mu
    cdef Py_ssize_t j, l, n8 = n - n % 8
    for l in range(8):
        acc[l] = 0
    if v != NULL:
        for j in range(0, n8, 8):
            for l in range(8):
                acc[l] += u[j + l] * v[j + l] * (x[j + l] - mu_f)
        for j in range(n8, n):
            acc[0] += u[j] * v[j] * (x[j] - mu_f)
    else:
        for j in range(0, n8, 8):
            for l in range(8):
                acc[l] += u[j + l] * (x[j + l] - mu_f)
        for j in range(n8, n):
            acc[0] += u[j] * (x[j] - mu_f)
    return lanes_total(acc)


cdef void rows_layer_norm(const floating* x, const floating* gamma, const floating* beta,
                          double* stats, floating* y, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t n,
                          double epsilon) noexcept nogil:
    """Each row r0 <= r < r1 normalized over its n features; stats[r] := (mean, 1/sqrt(var + eps))."""
    cdef Py_ssize_t r, j
    cdef double q, mu, inv
    cdef floating mu_f, inv_f
    cdef const floating* xr
    cdef floating* yr
    for r in range(r0, r1):
        xr = x + r * n
        yr = y + r * n
        mu = row_sum(xr, n) / n
        q = row_sum_sq_dev(xr, mu, n)  # biased variance, second pass (the row is in cache)
        inv = 1.0 / sqrt(q / n + epsilon)
        stats[2 * r] = mu
        stats[2 * r + 1] = inv
        mu_f = <floating>mu
        inv_f = <floating>inv
        if gamma != NULL and beta != NULL:
            for j in range(n):
                yr[j] = (xr[j] - mu_f) * inv_f * gamma[j] + beta[j]
        elif gamma != NULL:
            for j in range(n):
                yr[j] = (xr[j] - mu_f) * inv_f * gamma[j]
        elif beta != NULL:
            for j in range(n):
                yr[j] = (xr[j] - mu_f) * inv_f + beta[j]
        else:
            for j in range(n):
                yr[j] = (xr[j] - mu_f) * inv_f


def layer_norm_forward(const floating[:, ::1] x,    # IN  (rows, n) n = the normalized features
                       const floating[::1] gamma,   # IN  (n,), or None (scale=False)
                       const floating[::1] beta,    # IN  (n,), or None (center=False)
                       double[:, ::1] stats,        # OUT (rows, 2) mean, 1/sqrt(var + eps) per row
                       floating[:, ::1] y,          # OUT (rows, n)
                       double epsilon, int n_threads):
    """y[r] := (x[r] - mean(x[r])) / sqrt(var(x[r]) + eps) * gamma + beta, rows split over threads."""
    cdef Py_ssize_t m = x.shape[0], n = x.shape[1]
    cdef int nb = threads_for_work(m * n, CHUNK_ELEMS, <int>min(m, <Py_ssize_t>max(1, n_threads)), max(1, n_threads)), t
    cdef const floating* g = &gamma[0] if gamma is not None else NULL
    cdef const floating* b = &beta[0] if beta is not None else NULL
    if m == 0 or n == 0:
        return
    if nb == 1:
        rows_layer_norm(&x[0, 0], g, b, &stats[0, 0], &y[0, 0], 0, m, n, epsilon)
        return
    for t in prange(nb, nogil=True, schedule="static", num_threads=nb):
        rows_layer_norm(&x[0, 0], g, b, &stats[0, 0], &y[0, 0],
                        block_start(m, nb, t), block_start(m, nb, t + 1), n, epsilon)


cdef void chunk_layer_norm_backward(const floating* x, const floating* dy, const floating* gamma,
                                    const double* stats, floating* dx, double* s_dy, double* s_dyxhat,
                                    Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t n) noexcept nogil:
    """Rows r0 <= r < r1: dx (when dx != NULL) and this chunk's partial sums of dy and dy * xhat
    (when s_dy != NULL)."""
    cdef Py_ssize_t r, j
    cdef double mu, inv
    cdef floating mu_f, inv_f, a_f = 0, b_f = 0, xh
    cdef const floating* xr
    cdef const floating* gr
    cdef floating* dr
    if s_dy != NULL:
        zero_sums(s_dy, s_dyxhat, n)
    for r in range(r0, r1):
        xr = x + r * n
        gr = dy + r * n
        mu = stats[2 * r]
        inv = stats[2 * r + 1]
        mu_f = <floating>mu
        inv_f = <floating>inv
        if dx != NULL:
            a_f = <floating>(row_dot(gr, gamma, n) / n)                    # mean_j(g)
            b_f = <floating>(row_dot_dev(gr, gamma, xr, mu, n) * inv / n)  # mean_j(g * xhat)
        if dx != NULL and s_dy != NULL:
            # both in one pass over the row: the weight gradients' partial sums (dy and dy * xhat)
            # and the gradient with respect to the input (below)
            dr = dx + r * n
            if gamma != NULL:
                for j in range(n):
                    xh = (xr[j] - mu_f) * inv_f
                    s_dy[j] += gr[j]
                    s_dyxhat[j] += gr[j] * xh
                    dr[j] = inv_f * (gr[j] * gamma[j] - a_f - xh * b_f)
            else:
                for j in range(n):
                    xh = (xr[j] - mu_f) * inv_f
                    s_dy[j] += gr[j]
                    s_dyxhat[j] += gr[j] * xh
                    dr[j] = inv_f * (gr[j] - a_f - xh * b_f)
        elif s_dy != NULL:
            # gradient with respect to gamma and beta: this row's dy * xhat and dy
            for j in range(n):
                xh = (xr[j] - mu_f) * inv_f
                s_dy[j] += gr[j]
                s_dyxhat[j] += gr[j] * xh
        elif dx != NULL:
            # gradient with respect to the input: with g = dy * gamma and xhat = (x - mean) * inv,
            # dx = inv * (g - mean_j(g) - xhat * mean_j(g * xhat))
            dr = dx + r * n
            if gamma != NULL:
                for j in range(n):
                    dr[j] = inv_f * (gr[j] * gamma[j] - a_f - (xr[j] - mu_f) * inv_f * b_f)
            else:
                for j in range(n):
                    dr[j] = inv_f * (gr[j] - a_f - (xr[j] - mu_f) * inv_f * b_f)


cdef void ln_weight_grads(double* part, Py_ssize_t n_chunks, Py_ssize_t n, Py_ssize_t j0, Py_ssize_t j1,
                          floating* dgamma, floating* dbeta, bint accumulate) noexcept nogil:
    """Features j0 <= j < j1: the chunks' partial sums added in chunk order (into chunk 0's
    slots), then dbeta (+)= sum_r dy and dgamma (+)= sum_r dy * xhat."""
    cdef Py_ssize_t k, j
    cdef double* s1 = part
    cdef double* s2 = part + n
    cdef const double* p
    for k in range(1, n_chunks):   # chunk order: the same sums whatever the thread count
        p = part + 2 * k * n
        for j in range(j0, j1):
            s1[j] += p[j]
            s2[j] += p[n + j]
    for j in range(j0, j1):
        # gradient with respect to beta
        if dbeta != NULL:
            dbeta[j] = <floating>((dbeta[j] if accumulate else 0) + s1[j])
        # gradient with respect to gamma
        if dgamma != NULL:
            dgamma[j] = <floating>((dgamma[j] if accumulate else 0) + s2[j])


def layer_norm_backward(const floating[:, ::1] x,     # IN  (rows, n) the forward input
                        const floating[:, ::1] dy,    # IN  (rows, n) dL/dy
                        const floating[::1] gamma,    # IN  (n,), or None (gamma = 1)
                        const double[:, ::1] stats,   # IN  (rows, 2) from layer_norm_forward
                        floating[::1] dgamma,         # OUT (n,) dL/dgamma, or None
                        floating[::1] dbeta,          # OUT (n,) dL/dbeta, or None
                        floating[:, ::1] dx,          # OUT (rows, n) dL/dx, or None
                        double[:, :, ::1] partials,   # scratch (norm_chunks(rows, n), 2, n); None
                                                      # when neither dgamma nor dbeta is wanted
                        bint accumulate, int n_threads):
    """dx per row (rows split over threads, in chunks); dgamma (+)= sum_r dy * xhat and
    dbeta (+)= sum_r dy from per-chunk partial sums combined in chunk order."""
    cdef Py_ssize_t m = x.shape[0], n = x.shape[1]
    cdef Py_ssize_t rows_per = chunk_rows(m, n)
    cdef Py_ssize_t n_chunks = (m + rows_per - 1) // rows_per
    cdef int nt = max(1, n_threads), nb, t
    cdef Py_ssize_t k
    cdef const floating* g = &gamma[0] if gamma is not None else NULL
    cdef floating* dgp = &dgamma[0] if dgamma is not None else NULL
    cdef floating* dbp = &dbeta[0] if dbeta is not None else NULL
    cdef bint want_sums = dgp != NULL or dbp != NULL
    cdef floating* dxp
    cdef const floating* xp
    cdef const floating* gp
    cdef const double* sp
    cdef double* pp
    if n == 0 or m == 0 or not (want_sums or dx is not None):
        return
    xp, gp, sp = &x[0, 0], &dy[0, 0], &stats[0, 0]
    dxp = &dx[0, 0] if dx is not None else NULL
    pp = &partials[0, 0, 0] if want_sums else NULL
    nb = threads_for_work(n_chunks, 1, <int>n_chunks, nt)
    if nb == 1:
        for k in range(n_chunks):
            chunk_layer_norm_backward(xp, gp, g, sp, dxp, pp + 2 * k * n if want_sums else NULL,
                                      pp + (2 * k + 1) * n if want_sums else NULL,
                                      k * rows_per, min(m, (k + 1) * rows_per), n)
    else:
        for k in prange(n_chunks, nogil=True, schedule="static", num_threads=nb):
            chunk_layer_norm_backward(xp, gp, g, sp, dxp, pp + 2 * k * n if want_sums else NULL,
                                      pp + (2 * k + 1) * n if want_sums else NULL,
                                      k * rows_per, min(m, (k + 1) * rows_per), n)
    if not want_sums:
        return
    nb = threads_for_work(n * n_chunks, 8 * CHUNK_ELEMS, nt, nt)
    if nb == 1:
        ln_weight_grads(pp, n_chunks, n, 0, n, dgp, dbp, accumulate)
    else:
        for t in prange(nb, nogil=True, schedule="static", num_threads=nb):
            ln_weight_grads(pp, n_chunks, n, block_start(n, nb, t), block_start(n, nb, t + 1), dgp, dbp,
                            accumulate)
