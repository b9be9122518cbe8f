# The Python-visible entry points: rnn_forward and rnn_backward on a Workspace, with Options.
# Every array is checked (shape, dtype, contiguity) before any kernel touches memory.
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_C_CONTIGUOUS, PyBUF_FORMAT

import numpy as _np
cdef object UINT8 = _np.dtype(_np.uint8)
cdef object INTC = _np.dtype(_np.intc)


cdef class Options:
    """What a layer's configuration asks of the driver. act, alpha: the activation (_activation
    codes); ract, ralpha: the recurrent activation (gated cells); reverse: go backwards;
    zero_output_for_mask; approx: float32 default activations may run the vectorised kernels;
    accumulate: add the weight gradients to the outputs; n_threads."""
    cdef public int act, ract, n_threads
    cdef public double alpha, ralpha
    cdef public bint reverse, zero_output_for_mask, approx, accumulate

    def __init__(self, int act=TANH, double alpha=0.0, int ract=SIGMOID, double ralpha=0.0,
                 bint reverse=False, bint zero_output_for_mask=False, bint approx=True,
                 bint accumulate=False, int n_threads=1):
        self.act, self.alpha, self.ract, self.ralpha = act, alpha, ract, ralpha
        self.reverse, self.zero_output_for_mask = reverse, zero_output_for_mask
        self.approx, self.accumulate, self.n_threads = approx, accumulate, n_threads


cdef void* data_of(str fn, str what, object arr, tuple shape, object dtype,
                   bint optional=True) except? NULL:
    """arr's data after checking its shape, dtype and contiguity (None: NULL when optional).
    Through the buffer protocol: a few hundred nanoseconds, not microseconds, per array."""
    cdef Py_buffer view
    cdef bint ok
    cdef int i
    cdef void* p = NULL
    cdef Py_UCS4 code = dtype.char
    if arr is None:
        if optional:
            return NULL
        raise ValueError(f"{fn}: expected {what} of shape {shape}, received None")
    try:
        ok = PyObject_GetBuffer(arr, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) == 0
    except (TypeError, ValueError, BufferError):   # not an array, or not C-contiguous
        ok = False
    if ok:
        ok = view.ndim == len(shape) and view.itemsize == dtype.itemsize \
            and view.format != NULL and <Py_UCS4>view.format[0] == code \
            and view.format[1] == 0
        for i in range(view.ndim if ok else 0):
            ok = ok and view.shape[i] == <Py_ssize_t>shape[i]
        p = view.buf if view.len > 0 else NULL
        PyBuffer_Release(&view)
    if not ok:
        raise ValueError(f"{fn}: expected {what} of shape {shape} and dtype {dtype}, C-contiguous; "
                         f"received shape {getattr(arr, 'shape', None)}, "
                         f"dtype {getattr(arr, 'dtype', type(arr).__name__)}")
    return p


cdef void set_call(rnn_call* c, Workspace ws, tuple weights, Options opts, str fn) except *:
    """c := the shapes, options, weights and forward arrays of ws (checked)."""
    cdef const cell_info* info = &CELL_INFO[ws.code]
    cdef int T = ws.steps, b = ws.batch, nin = ws.nin, u = ws.units, w = ws.width
    cdef object dt = ws.dtype
    cdef Py_ssize_t item = dt.itemsize
    memset(c, 0, sizeof(rnn_call))
    c.T, c.batch, c.nin, c.u, c.width = T, b, nin, u, w
    c.act, c.alpha, c.ract, c.ralpha = opts.act, opts.alpha, opts.ract, opts.ralpha
    c.reverse, c.zero_output = opts.reverse, opts.zero_output_for_mask
    c.zero_state = not ws.has_initial_state
    c.need_dh0 = ws.has_initial_state
    c.accumulate = opts.accumulate
    c.fast = (dt.itemsize == 4 and opts.approx and opts.act == TANH
              and (not info.gated or opts.ract == SIGMOID))
    if len(weights) != 3:
        raise ValueError(f"{fn}: expected weights (kernel, recurrent_kernel, bias or None), "
                         f"received {len(weights)} item(s)")
    kernel, rkernel, bias = weights
    c.kernel = data_of(fn, "kernel", kernel, (nin, w), dt, False)
    c.rkernel = data_of(fn, "recurrent_kernel", rkernel, (u, w), dt, False)
    if info.recurrent_bias:   # (2, width): input bias, recurrent bias
        if bias is None:
            bias = ws.zero_bias
        c.bias = data_of(fn, "bias", bias, (2, w), dt)
        c.brec = <const char*>c.bias + w * item
    else:
        c.bias = data_of(fn, "bias", bias, (w,), dt)
    c.mask = <const unsigned char*>data_of(fn, "mask", ws.mask, (b, T), UINT8)
    c.keep = data_of(fn, "keep", ws.keep, (b, nin), dt)
    c.xt = data_of(fn, "xt", ws.xt, (T, b, nin), dt, False)
    c.z = data_of(fn, "z", ws.z, (T, b, w), dt, False)
    c.a = data_of(fn, "a", ws.a, (T, b, w), dt, not info.gated)
    c.hs = data_of(fn, "hs", ws.hs, (T + 1, b, u), dt, False)
    c.cs = data_of(fn, "cs", ws.cs, (T + 1, b, u), dt, info.states == 1)
    c.tc = data_of(fn, "tc", ws.tc, (T, b, u), dt, info.states == 1)
    c.rh = data_of(fn, "rh", ws.rh, (T, b, u), dt, not info.rec)
    c.rec = data_of(fn, "rec", ws.rec, (b, w), dt, not info.rec)
    c.yseq = data_of(fn, "yseq", ws.yseq, (b, T, u), dt)
    c.ylast = data_of(fn, "ylast", ws.ylast, (b, u), dt, False)


def rnn_forward(Workspace ws, x, tuple weights, Options opts):
    """The cell's forward pass over the sequence x (batch, steps, nin) with weights (kernel,
    recurrent_kernel, bias or None); the output, states and what backward needs land in ws
    (ws.output, ws.states). Call ws.start(...) first."""
    cdef rnn_call c
    cdef float[::1] pf
    cdef double[::1] pd
    set_call(&c, ws, weights, opts, "rnn_forward")
    c.x = data_of("rnn_forward", "x", x, (ws.batch, ws.steps, ws.nin), ws.dtype, False)
    if ws.dtype.itemsize == 4:
        pf = ws.packed
        run_forward(ws.code, &c, pf, opts.n_threads)
    else:
        pd = ws.packed
        run_forward(ws.code, &c, pd, opts.n_threads)


def rnn_backward(Workspace ws, tuple weights, dyseq, dylast, dstates, grads, Options opts,
                 bint need_dx=True):
    """Backpropagation through time after rnn_forward on ws. dyseq (batch, steps, units) or
    dylast (batch, units): the output's gradient (either may be None); dstates: one gradient per
    final state or None each (or None); grads: (dkernel, drecurrent_kernel, dbias), None each
    where not wanted, (+)= when opts.accumulate. Returns dx (or None without need_dx);
    ws.state_grads holds dL/d(initial states)."""
    cdef rnn_call c
    cdef float[::1] pf
    cdef double[::1] pd
    cdef str fn = "rnn_backward"
    cdef const cell_info* info = &CELL_INFO[ws.code]
    cdef int T = ws.steps, b = ws.batch, u = ws.units, w = ws.width
    cdef Py_ssize_t item = ws.dtype.itemsize
    ws.backward_arrays(need_dx)
    set_call(&c, ws, weights, opts, fn)
    dt = ws.dtype
    c.dyseq = data_of(fn, "dyseq", dyseq, (b, T, u), dt)
    c.dylast = data_of(fn, "dylast", dylast, (b, u), dt)
    dstates = [None] * info.states if dstates is None else list(dstates)
    if len(dstates) != info.states:
        raise ValueError(f"{fn}: expected {info.states} state gradient(s), received {len(dstates)}")
    c.dhT = data_of(fn, "the gradient of h", dstates[0], (b, u), dt)
    if info.states == 2:
        c.dcT = data_of(fn, "the gradient of c", dstates[1], (b, u), dt)
        c.dc = data_of(fn, "dc", ws.state_grads[1], (b, u), dt, False)
    c.dh = data_of(fn, "dh", ws.state_grads[0], (b, u), dt, False)
    c.dz = data_of(fn, "dz", ws.dz, (T, b, w), dt, False)
    c.dz2 = data_of(fn, "dz2", ws.dz2, (T, b, u), dt, not info.dsplit)
    c.drhp = data_of(fn, "drhp", ws.drhp, (b, u), dt, not info.rsplit)
    c.g = data_of(fn, "g", ws.g, (b, u), dt, False)
    c.first_on = <int*>data_of(fn, "first_on", ws.first_on, (b,), INTC, False)
    if len(grads) != 3:
        raise ValueError(f"{fn}: expected grads (dkernel, drecurrent_kernel, dbias), each an array "
                         f"or None, received {len(grads)} item(s)")
    c.dkernel = data_of(fn, "dkernel", grads[0], (ws.nin, w), dt)
    c.drkernel = data_of(fn, "drecurrent_kernel", grads[1], (u, w), dt)
    if info.recurrent_bias:
        c.dbias = data_of(fn, "dbias", grads[2], (2, w), dt)
        if c.dbias != NULL:
            c.dbias2 = <char*>c.dbias + w * item
    else:
        c.dbias = data_of(fn, "dbias", grads[2], (w,), dt)
    c.dxt = data_of(fn, "dxt", ws.dxt, (T, b, ws.nin), dt, not need_dx)
    c.dx = data_of(fn, "dx", ws.dx, (b, T, ws.nin), dt, not need_dx)
    if dt.itemsize == 4:
        pf = ws.packed
        run_backward(ws.code, &c, pf, opts.n_threads)
    else:
        pd = ws.packed
        run_backward(ws.code, &c, pd, opts.n_threads)
    return ws.dx
