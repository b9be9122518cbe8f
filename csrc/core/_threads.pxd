# core/_threads.pxd: the thread policy, the one place that decides how many threads a kernel runs
# and which rows each takes. Kernels pass the caller's n_threads through these and nothing else.
#
# Two rules keep results bit-identical whatever the thread count:
# * a reduction or a BLAS call is cut into blocks fixed by the shape alone (fixed_blocks; the
#   caller's own fixed group counts), never by the thread count; threads take whole blocks;
# * small problems stay on one thread (threads_for_work: at least one grain of work per thread).
cdef extern from "_omp.h":
    int team_size "cydnn_omp_team_size"() noexcept nogil      # inside a parallel region
    void team_barrier "cydnn_omp_barrier"() noexcept nogil    # inside a parallel region: wait for all


cdef enum:
    GEMM_GRAIN = 1 << 20     # multiply-adds per thread, at least (~10 us of sgemm)
    ELEMENT_GRAIN = 1 << 15  # elementwise operations per thread, at least
    UPDATE_GRAIN = 1 << 17   # optimizer updates are memory-bound: a thread is worth waking for 128K
    GEMM_ROW_BLOCK = 64      # rows per block in row-wise passes (activations, softmax)
    GEMM_COL_BLOCK = 256     # features per GEMM call (columns of y and dx, rows of dW)
    UPDATE_CHUNKS = 64       # chunks a flat buffer's norms are summed in (optim.pyx), fixed by n alone


cdef inline int block_start(int n,          # IN  items
                            int n_blocks,   # IN  near-equal contiguous blocks
                            int i           # IN  a block
                            ) noexcept nogil:
    """floor(n * i / n_blocks): the first index of block i."""
    return <int>((<long long>n * i) // n_blocks)


cdef inline int threads_for_work(long long work,   # IN  units of work in the call
                                 long long grain,  # IN  units a thread must have, at least
                                 int max_blocks,   # IN  blocks the work comes in
                                 int n_threads     # IN  the caller's thread count
                                 ) noexcept nogil:
    """max(1, min(work // grain, n_threads, max_blocks)).

    At most one thread per ``grain`` units of work (and per block), so small problems stay on one
    thread instead of paying OpenMP's wake-up and barrier costs (tens of microseconds when another
    process holds a core)."""
    cdef long long t = work // grain
    if t > n_threads:
        t = n_threads
    if t > max_blocks:
        t = max_blocks
    return <int>t if t > 1 else 1


cdef inline int step_threads(int T,            # IN  steps
                             int batch,        # IN  rows, each carried through every step
                             int u,            # IN  inner size of a step's product
                             int width,        # IN  columns of a step's product
                             int n_threads     # IN  the caller's thread count
                             ) noexcept nogil:
    """Threads for a recurrence whose threads each carry one block of batch rows through all T
    steps (T products of (rows x u) @ (u x width)). Every entry of a packed product is one
    fixed-order sum whatever block its row is in, so the blocks follow the thread count."""
    return threads_for_work(<long long>T * batch * u * width, GEMM_GRAIN, batch, n_threads)


cdef inline int unit_threads(int T,            # IN  steps
                             int batch,        # IN  rows
                             int u,            # IN  units (columns shared out in panels of 32)
                             int width,        # IN  columns of a step's product
                             int min_row_batch,  # IN  from this batch on, rows are shared instead
                             int n_threads     # IN  the caller's thread count
                             ) noexcept nogil:
    """Threads that share each step's units (whole panels of 32, the team meeting after every
    step) when the batch is too small to share by rows; 1 when rows are shared, or when u is not
    a whole number of panels."""
    if batch >= min_row_batch or u % 32 != 0:
        return 1
    return threads_for_work(<long long>T * batch * u * width, GEMM_GRAIN, u // 32, n_threads)


cdef inline int threads_for_elements(Py_ssize_t work,  # IN  elementwise operations
                                     int n_threads,    # IN  the caller's thread count
                                     Py_ssize_t most   # IN  independent items (rows, blocks)
                                     ) noexcept nogil:
    """threads_for_work(work, ELEMENT_GRAIN, min(most, n_threads), n_threads)."""
    return threads_for_work(work, ELEMENT_GRAIN, <int>min(most, <Py_ssize_t>n_threads), n_threads)


cdef inline int fixed_blocks(int n,        # IN  rows
                             int target    # IN  rows per block wanted
                             ) noexcept nogil:
    """max(1, n // target): how many near-equal blocks to cut n rows into.

    A function of the shape alone, never of the thread count. OpenBLAS rounds a row differently
    depending on where it sits in a call (its kernels work in tiles, edge tiles differently), so a
    kernel that cut its GEMM per thread gave results that changed with the thread count. With
    blocks fixed by the shape, every row goes through the same call whatever the threads; threads
    take whole blocks. Blocks stay large: each call re-packs the other operand, so a GEMM is split
    along the operand that is cheaper to re-pack (see dense.pyx)."""
    cdef int b = n // target
    return b if b > 1 else 1


cdef inline int threads_for_updates(Py_ssize_t n,   # IN  values of a flat parameter buffer
                                    int n_threads   # IN  the caller's thread count
                                    ) noexcept nogil:
    """threads_for_work(n, UPDATE_GRAIN, UPDATE_CHUNKS, n_threads), for optimizer updates."""
    return threads_for_work(n, UPDATE_GRAIN, UPDATE_CHUNKS, n_threads)
