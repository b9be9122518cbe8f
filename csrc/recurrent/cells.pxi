# The table of cells: what the driver and the workspace need to know of each, and its two steps.
# Adding a cell: its <cell>.pxi (and .h), a code below, a row of CELL_INFO and its two steps in the
# dispatch functions (and, with unit_split, its two unit-split functions).

cdef enum:
    SIMPLE_RNN_CELL = 0
    LSTM_CELL = 1
    GRU_CELL = 2
    GRU_RESET_BEFORE_CELL = 3
    N_CELLS = 4


cdef struct cell_info:
    const char* name
    int gates        # width = gates * units
    int states       # 1: h; 2: h and c (cs, tc; dcT, dc)
    bint folds       # the input projection may run inside each step's product (z, bias, kp)
    bint gated       # has a recurrent activation (the fast kernels need it to be the sigmoid)
    bint unit_split  # a small batch may split its units over the threads (forward)
    bint recurrent_bias  # bias (2, width): input bias, recurrent bias (brec, dbias2)
    bint rec         # a per-step product buffer rec (batch, width) and rh (T, batch, u)
    int rsplit       # > 0: the recurrent kernel's columns from rsplit * u on are packed apart
                     #   (rkp2) and multiply rh, not h (the weight gradient too); dh needs drhp
    int dsplit       # > 0: the input projection's gradient is [dz[:, :dsplit * u] | dz2]


cdef cell_info CELL_INFO[N_CELLS]
#                   name                gates states folds gated units rbias  rec  rsplit dsplit
CELL_INFO[SIMPLE_RNN_CELL] = cell_info(b"simple_rnn", 1, 1, True, False, False, False, False, 0, 0)
CELL_INFO[LSTM_CELL] = cell_info(b"lstm", 4, 2, True, True, True, False, False, 0, 0)
CELL_INFO[GRU_CELL] = cell_info(b"gru", 3, 1, False, True, False, True, True, 0, 2)
CELL_INFO[GRU_RESET_BEFORE_CELL] = cell_info(b"gru_reset_before", 3, 1, False, True, False, False,
                                             True, 2, 0)


cdef inline void cell_forward_step(int cell, const rnn_call* c, floating* hs, int s, int b0,
                                   int b1) noexcept nogil:
    """Step s of the cell for rows b0..b1: its product(s) and gates; hs[s+1] (and the cell's other
    states) written for those rows."""
    if cell == SIMPLE_RNN_CELL:
        simple_rnn_forward_step(c, hs, s, b0, b1)
    elif cell == LSTM_CELL:
        lstm_forward_step(c, hs, s, b0, b1)
    elif cell == GRU_CELL:
        gru_forward_step(c, hs, s, b0, b1)
    else:
        gru_rb_forward_step(c, hs, s, b0, b1)


cdef inline void cell_backward_step(int cell, const rnn_call* c, floating* hs, int s, int b0,
                                    int b1) noexcept nogil:
    """Step s of backpropagation through time for rows b0..b1, g = dL/dh_s: the gate gradients
    (dz, dz2), the cell's own carries, and dh := dL/dh_{s-1}."""
    if cell == SIMPLE_RNN_CELL:
        simple_rnn_backward_step(c, hs, s, b0, b1)
    elif cell == LSTM_CELL:
        lstm_backward_step(c, hs, s, b0, b1)
    elif cell == GRU_CELL:
        gru_backward_step(c, hs, s, b0, b1)
    else:
        gru_rb_backward_step(c, hs, s, b0, b1)


cdef inline void cell_units_prepare(int cell, const rnn_call* c, floating* kp, floating* rkp,
                                    int j0, int j1) noexcept nogil:
    """Unit split (cells with unit_split), by the thread owning units j0..j1: pack its columns of
    the kernels into kp and rkp and project the inputs onto them."""
    if cell == LSTM_CELL:
        lstm_units_prepare(c, kp, rkp, j0, j1)


cdef inline void cell_units_step(int cell, const rnn_call* c, const floating* rkp, floating* hs,
                                 int s, int j0, int j1) noexcept nogil:
    """Unit split: step s of the cell for units j0..j1 of every row."""
    if cell == LSTM_CELL:
        lstm_units_step(c, rkp, hs, s, j0, j1)


cdef int cell_code(str name) except -1:
    """The table's code of a cell name."""
    cdef int i
    for i in range(N_CELLS):
        if name == CELL_INFO[i].name.decode():
            return i
    raise ValueError(f"recurrent: unknown cell {name!r}, expected one of "
                     f"{[CELL_INFO[i].name.decode() for i in range(N_CELLS)]}")


CELLS = tuple(CELL_INFO[i].name.decode() for i in range(N_CELLS))
