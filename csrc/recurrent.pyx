# Recurrent layers (SimpleRNN, LSTM, GRU): whole-sequence forward and backpropagation through time.
#
# One sequence driver (recurrent/driver.pxi) runs every cell: the input projection (or its folding
# into each step's product), the split of the work over threads (blocks of batch rows; or, for a
# small LSTM batch, panels of units with a barrier after each step), the step loop, the loop of
# backpropagation through time, and after it the weight gradients and dx (recurrent/grads.pxi).
# A cell (recurrent/<cell>.pxi) brings only its step: forward (its product(s) with the recurrent
# kernel and its gates) and backward (its gate gradients and dL/dh_{s-1}), each as a vectorised
# float32 kernel (recurrent/<cell>.h) next to its generic twin, plus an entry in the table of
# recurrent/cells.pxi. The layer side talks to one Workspace (recurrent/workspace.pxi), which sizes
# and obtains every buffer through the layer's alloc(key, shape, dtype), and to rnn_forward and
# rnn_backward (recurrent/api.pxi).
#
# Layout. The layer's input is (batch, time, features). Inside, every per-step array is time-major,
# (steps, batch, width), in *processing* order (step s reads input time t = T-1-s when going
# backwards), so the rows one step touches are contiguous and "h_{s-1} for every s" is one matrix:
#   xt  (T, batch, in)     the inputs in processing order (times the dropout multipliers)
#   z   (T, batch, G*u)    gate pre-activations, G = 1 (SimpleRNN), 4 (LSTM i,f,c,o), 3 (GRU z,r,h)
#   a   (T, batch, G*u)    gate activations (LSTM, GRU)
#   hs  (T+1, batch, u)    hs[0] = initial h, hs[s+1] = h after step s (cs likewise for the LSTM cell)
#
# The products run the kernels of _packed_gemm.h (AVX-512, AVX2 or portable, picked at import):
# the kernel and the recurrent kernel (or its transpose, and the kernel's transpose for dx) are
# packed once per call into the workspace's scratch and read by every block and step; the weight
# gradients pack chunks of both operands as they go.
#
# Thread-count independence. Every entry of those products is one sum over k in order, wherever
# its row or column sits, so their blocks may follow the thread count; every sum written here runs
# in a fixed order: results do not depend on the thread count nor on the rows of a call.
#
# Masking: mask[b, t] = 0 skips the step for that row: state carried (h, c unchanged) and, as in
# Keras, the output is the previous output (zeros before the first unmasked step), or zeros when
# zero_output_for_mask (Bidirectional with return_sequences).
#
# float32 with the default activations (sigmoid gates, tanh) runs the vectorised C kernels on the
# float32 exp/sigmoid/tanh of _fastmath.h (errors ~1e-7); every other case runs the generic twins
# with the activation code of _activation.pxd in double precision (float64 gradient checks).
from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.string cimport memcpy, memset
from _threads cimport (block_start, threads_for_work, fixed_blocks, step_threads, unit_threads, team_barrier,
                       team_size, GEMM_GRAIN)
from _activation cimport act_forward, act_derivative, SIGMOID, TANH

cdef extern from "recurrent/common.h":
    float expf_approx "cydnn_fast_expf"(float x) noexcept nogil
    float tanhf_approx "cydnn_fast_tanhf"(float x) noexcept nogil

cdef extern from "_packed_gemm.h":
    enum: CYDNN_PG_ALIGN
    size_t pg_packed_size "cydnn_pg_packed_size"(int K, int N) noexcept nogil
    void* pg_align "cydnn_pg_align"(void* p) noexcept nogil
    int pg_set_level "cydnn_pg_set_level"(int level) noexcept nogil
    void pg_pack_f "cydnn_pg_pack_f"(int K, int N, const float* src, int ld, int trans,
                                     float* bp) noexcept nogil
    void pg_pack_d "cydnn_pg_pack_d"(int K, int N, const double* src, int ld, int trans,
                                     double* bp) noexcept nogil
    void pg_gemm_f "cydnn_pg_gemm_f"(int M, int N, int K1, const float* A1, int lda1,
                                     const float* bp1, int K2, const float* A2, int lda2,
                                     const float* bp2, const float* init, int beta, float* C,
                                     int ldc) noexcept nogil
    void pg_gemm_d "cydnn_pg_gemm_d"(int M, int N, int K1, const double* A1, int lda1,
                                     const double* bp1, int K2, const double* A2, int lda2,
                                     const double* bp2, const double* init, int beta, double* C,
                                     int ldc) noexcept nogil
    ctypedef struct pg_seg "cydnn_pg_seg":
        const void* a
        int lda
        int m
        void* c
        int ldc
    void pg_gemm_tn_f "cydnn_pg_gemm_tn_f"(int nseg, const pg_seg* seg, int N, int K,
                                           const float* B, int ldb, int beta) noexcept nogil
    void pg_gemm_tn_d "cydnn_pg_gemm_tn_d"(int nseg, const pg_seg* seg, int N, int K,
                                           const double* B, int ldb, int beta) noexcept nogil

pg_set_level(-1)   # the widest SIMD level this CPU runs


cdef enum:
    # Block sizes (see "Thread-count independence"): blocks are cut from the shape alone
    # (_threads.fixed_blocks, about this many rows each), never from the thread count.
    PROJ_ROW_BLOCK = 256   # (T*batch) rows per GEMM of the input projection and of dx
    # From this batch on, the LSTM and SimpleRNN fold the input projection into each step's
    # product (one pass over [x_s | h] against [kernel; rkernel], no z written then read back);
    # below it, with few rows to share each kernel panel, projecting all steps up front reads the
    # kernel once. Both give the same bits (step_product), so this only moves time.
    FOLD_MIN_BATCH = 4

fold_min_batch = FOLD_MIN_BATCH   # for tests


def fast_tanh(floating x):
    """The float32 tanh of the vectorised kernels (_fastmath.h; for tests)."""
    return tanhf_approx(<float>x)


def fast_exp(floating x):
    """The float32 exp of the vectorised kernels (_fastmath.h; for tests)."""
    return expf_approx(<float>x)


include "recurrent/call.pxi"
include "recurrent/helpers.pxi"
include "recurrent/simple_rnn.pxi"
include "recurrent/lstm.pxi"
include "recurrent/gru.pxi"
include "recurrent/gru_reset_before.pxi"
include "recurrent/cells.pxi"
include "recurrent/driver.pxi"
include "recurrent/grads.pxi"
include "recurrent/workspace.pxi"
include "recurrent/api.pxi"
include "recurrent/packed_hooks.pxi"
