# One call of the driver: shapes, options and every array it reads or writes, as the cells see it.
# Arrays are untyped (void*): they hold the call's element type (float or double), which the
# fused driver and cell functions cast them to. NULL marks an array the call does without.

cdef struct rnn_call:
    # shapes: T steps, batch rows, nin input features, u units, width = gates * u columns
    int T, batch, nin, u, width
    # options
    int act, ract              # activation, recurrent activation (_activation codes)
    double alpha, ralpha
    bint reverse               # process the sequence from its last step
    bint zero_output           # masked steps output zeros (else the previous output)
    bint zero_state            # the initial state is zero (skip the first step's h product)
    bint fast                  # float32 with the default activations: the vectorised kernels
    bint fold                  # the input projection runs inside each step's product
    bint need_dh0              # backward: compute dL/d(initial state)
    bint accumulate            # backward: add the weight gradients to the outputs
    const unsigned char* mask  # (batch, T): 0 = skip the step
    int* first_on              # (batch,) backward scratch: each row's first unmasked step
    # inputs and weights
    const void* x              # (batch, T, nin)
    const void* keep           # (batch, nin) dropout multipliers
    const void* kernel         # (nin, width)
    const void* rkernel        # (u, width)
    const void* bias           # (width,) added with the input projection
    const void* brec           # (width,) GRU: the recurrent bias, added to h @ rkernel
    const void* kp             # the kernel, packed (folded cells read it in every step)
    const void* rkp            # the recurrent kernel packed (backward: its transpose); GRU with
    const void* rkp2           #   reset_before: its first 2u columns, rkp2 the candidate's u
    # forward state (kept for backward)
    void* xt                   # (T, batch, nin) inputs in processing order
    void* z                    # (T, batch, width) pre-activations
    void* a                    # (T, batch, width) gate activations (gated cells)
    void* hs                   # (T+1, batch, u) h; hs[0] the initial state
    void* cs                   # (T+1, batch, u) LSTM: c
    void* tc                   # (T, batch, u) LSTM: act(c)
    void* rh                   # (T, batch, u) GRU: h @ U_h + b_rh; reset_before: r * h_{s-1}
    void* rec                  # (batch, width) GRU scratch: a step's h @ rkernel
    void* yseq                 # (batch, T, u) the output sequence
    void* ylast                # (batch, u) the last output
    # backward
    const void* dyseq          # (batch, T, u) dL/d(output sequence)
    const void* dylast         # (batch, u) dL/d(last output)
    const void* dhT            # (batch, u) dL/d(final h)
    const void* dcT            # (batch, u) LSTM: dL/d(final c)
    void* dz                   # (T, batch, width) dL/dz (GRU: of the recurrent projection)
    void* dz2                  # (T, batch, u) GRU: dL/d(the candidate's input part)
    void* dh                   # (batch, u) the carry dL/dh; at the end dL/dh0
    void* dc                   # (batch, u) LSTM: the carry dL/dc; at the end dL/dc0
    void* g                    # (batch, u) scratch: dL/dh_s
    void* drhp                 # (batch, u) GRU reset_before scratch: dL/d(r * h_{s-1})
    void* dkernel              # (nin, width)
    void* drkernel             # (u, width)
    void* dbias                # (width,)
    void* dbias2               # (width,) GRU: the recurrent bias's gradient
    void* dxt                  # (T, batch, nin) scratch
    void* dx                   # (batch, T, nin)
