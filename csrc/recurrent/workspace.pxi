# The workspace of one layer call: every array the driver reads and writes besides the weights and
# the incoming gradients, sized from the cell's table entry and obtained through the caller's
# alloc(key, shape, dtype) (a layer's buffer method, or a per-call context's), so that the arrays
# can be reused from call to call.

def packed_scratch_size(int nin, int u, int width):
    """Values of the scratch array every cell's forward and backward pass packs its kernels into,
    plus the alignment slack. Forward: the kernel (nin x width), then the recurrent kernel
    (u x width) or (GRU with reset_before) two column slices of it. Backward: the recurrent
    kernel's transpose (or its two slices), then the kernel's transpose (width x nin, for dx; the
    GRU packs it as two row ranges, the same size)."""
    cdef size_t fwd = max(pg_packed_size(u, width), pg_packed_size(u, width - u) + pg_packed_size(u, u))
    cdef size_t bwd = max(pg_packed_size(width, u), pg_packed_size(width - u, u) + pg_packed_size(u, u))
    return max(pg_packed_size(nin, width) + fwd, bwd + pg_packed_size(width, nin)) + CYDNN_PG_ALIGN


cdef class Workspace:
    """The arrays of one recurrent call: Workspace(cell, alloc, batch, steps, nin, units, dtype,
    return_sequences). cell: a name of CELLS; alloc(key, shape, dtype) returns a C-contiguous
    array of that shape and dtype (its contents need not be kept). The forward arrays are obtained
    here; start() sets the call's mask, dropout multipliers and initial states; rnn_backward
    obtains the backward arrays (backward_arrays)."""
    cdef readonly str cell
    cdef readonly int code, batch, steps, nin, units, width
    cdef readonly object dtype, alloc
    cdef readonly bint return_sequences, has_initial_state
    # forward (see call.pxi for each array's role)
    cdef readonly object xt, z, a, hs, cs, tc, rh, rec, yseq, ylast, packed, zero_bias
    cdef readonly object mask, keep
    # backward
    cdef readonly object dz, dz2, drhp, g, first_on, dxt, dx
    cdef readonly list state_grads

    def __init__(self, str cell, alloc, int batch, int steps, int nin, int units, dtype,
                 bint return_sequences=False):
        import numpy as np
        self.code = cell_code(cell)
        cdef const cell_info* info = &CELL_INFO[self.code]
        self.dtype = np.dtype(dtype)
        if self.dtype != np.float32 and self.dtype != np.float64:
            raise TypeError(f"Workspace: expected dtype float32 or float64, received {self.dtype}")
        if batch < 0 or steps < 0 or nin < 1 or units < 1:
            raise ValueError(f"Workspace: expected batch >= 0, steps >= 0, nin >= 1, units >= 1, "
                             f"received batch={batch}, steps={steps}, nin={nin}, units={units}")
        self.cell, self.alloc = cell, alloc
        self.batch, self.steps, self.nin, self.units = batch, steps, nin, units
        self.width = info.gates * units
        self.return_sequences = return_sequences
        T, u, w = steps, units, self.width
        self.xt = self._get("xt", (T, batch, nin))
        self.z = self._get("z", (T, batch, w))
        self.a = self._get("a", (T, batch, w)) if info.gated else None
        self.hs = self._get("hs", (T + 1, batch, u))
        self.cs = self._get("state_c", (T + 1, batch, u)) if info.states == 2 else None
        self.tc = self._get("tc", (T, batch, u)) if info.states == 2 else None
        self.rh = self._get("rh", (T, batch, u)) if info.rec else None
        self.rec = self._get("rec", (batch, w)) if info.rec else None
        self.yseq = self._get("yseq", (batch, T, u)) if return_sequences else None
        self.ylast = self._get("ylast", (batch, u))
        self.packed = self._get("packed", (packed_scratch_size(nin, u, w),))
        self.zero_bias = None
        if info.recurrent_bias:   # a GRU without bias still adds a recurrent bias: zeros
            self.zero_bias = self._get("zero_bias", (2, w))
            self.zero_bias.fill(0)
        self.mask = self.keep = None
        self.has_initial_state = False
        self.state_grads = []

    def _get(self, key, shape, dtype=None):
        dtype = self.dtype if dtype is None else dtype
        arr = self.alloc(key, shape, dtype)
        if tuple(arr.shape) != tuple(shape) or arr.dtype != dtype or not arr.flags.c_contiguous:
            raise ValueError(f"Workspace: alloc({key!r}, {tuple(shape)}, {dtype}) returned an array of "
                             f"shape {tuple(arr.shape)}, dtype {arr.dtype} (C-contiguous: "
                             f"{arr.flags.c_contiguous}); expected that shape and dtype, C-contiguous")
        return arr

    def start(self, mask=None, keep=None, initial_state=None):
        """The call's inputs besides x: mask (batch, steps) uint8 (0 = skip the step) or None;
        keep (batch, nin) dropout multipliers or None; initial_state: None (zeros) or one
        (batch, units) array per state (h, and c for the LSTM)."""
        n = CELL_INFO[self.code].states
        self.mask = self._checked("mask", mask, (self.batch, self.steps), "uint8")
        self.keep = self._checked("keep", keep, (self.batch, self.nin), self.dtype)
        states = [self.hs, self.cs][:n]
        if initial_state is not None and len(initial_state) != n:
            raise ValueError(f"Workspace.start: expected {n} initial state(s), received {len(initial_state)}")
        for i, buf in enumerate(states):
            if initial_state is None:
                buf[0].fill(0)
            else:
                buf[0] = self._checked("initial state", initial_state[i], (self.batch, self.units),
                                       self.dtype, False)
        self.has_initial_state = initial_state is not None

    def _checked(self, what, arr, shape, dtype, contiguous=True):
        if arr is None:
            return None
        if tuple(arr.shape) != shape or arr.dtype != dtype or (contiguous and not arr.flags.c_contiguous):
            raise ValueError(f"Workspace.start: expected {what} of shape {shape} and dtype {dtype}, "
                             f"C-contiguous; received shape {tuple(arr.shape)}, dtype {arr.dtype}")
        return arr

    @property
    def states(self):
        """The final states after rnn_forward: [h] or [h, c], each (batch, units)."""
        return [buf[self.steps] for buf in [self.hs, self.cs][:CELL_INFO[self.code].states]]

    @property
    def output(self):
        """The output after rnn_forward: the sequence (batch, steps, units) or the last (batch, units)."""
        return self.yseq if self.return_sequences else self.ylast

    def backward_arrays(self, bint need_dx):
        """Obtain the backward pass's arrays (rnn_backward calls it)."""
        import numpy as np
        cdef const cell_info* info = &CELL_INFO[self.code]
        T, b, u = self.steps, self.batch, self.units
        self.dz = self._get("dz", (T, b, self.width))
        self.dz2 = self._get("dxh", (T, b, u)) if info.dsplit else None
        self.drhp = self._get("drhp", (b, u)) if info.rsplit else None
        self.g = self._get("g", (b, u))
        self.first_on = self._get("first_on", (b,), np.intc)
        self.state_grads = [self._get(f"d_{n}0", (b, u)) for n in "hc"[:info.states]]
        self.dxt = self._get("dxt", (T, b, self.nin)) if need_dx else None
        self.dx = self._get("dx", (b, T, self.nin)) if need_dx else None
