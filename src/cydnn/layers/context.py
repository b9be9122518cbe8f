"""Per-call state and parameters: what a layer call keeps for its backward, and what a weight is.

A layer holds its configuration and its ``Parameter`` objects only. Everything one call of the
layer computes for its backward pass (the input, pre-activations, masks, scratch arrays) lives
in a ``CallContext`` that the caller owns and hands to ``forward(x, ..., ctx=ctx)`` and then to
``backward(dy, ctx=ctx)`` -- as PyTorch's autograd hands ``ctx`` to a Function, or as Caffe's net
owns every blob. A model keeps one context per layer call (so a layer shared by several calls of
a graph gets one context per call) and a pool of such sets, one taken by each running
``predict``: calls from several threads never share state. Contexts keep their arrays between
steps, keyed by name and shape, so a steady-state training step allocates nothing.

A layer called directly (``layer(x)``, ``layer.forward(x)`` then ``layer.backward(dy)``, as tests
and gradient checks do) uses a context of its own: the eager context.
"""
import numpy as np


class CallContext:
    """One call's state. Layers set attributes on it in ``forward`` (``ctx.x = x``) and read
    them in ``backward``; ``buffer`` gives arrays kept between calls.

    Two flags are decided by whoever assembles the step, never by the layer:
      * ``accumulate``: backward adds its weight gradients to the gradient buffers instead of
        overwriting them (a layer's second call in a graph, gradient accumulation over batches);
      * ``need_input_grad``: False when nobody reads dL/dx (the call reads model inputs only),
        so backward may skip computing it and return None.
    ``logits`` is set by layers whose activation a loss can fuse with (softmax, sigmoid): the
    pre-activation of this call.
    """

    def __init__(self):
        self.accumulate = False
        self.need_input_grad = True
        self.logits = None
        self._buffers = {}
        self._children = None

    def buffer(self, key, shape, dtype):
        """A scratch array kept between calls, reallocated only when its shape changes. The array
        of the previous shape is kept as well, so an epoch's shorter last batch and the next
        epoch's full batches alternate between two arrays instead of allocating each time."""
        shape = tuple(shape)
        buf = self._buffers.get(key)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            spare_key = ("previous shape", key)
            spare = self._buffers.get(spare_key)
            if buf is not None:
                self._buffers[spare_key] = buf
            if spare is not None and spare.shape == shape and spare.dtype == dtype:
                buf = spare
            else:
                buf = np.empty(shape, dtype=dtype)
            self._buffers[key] = buf
        return buf

    def child(self, key):
        """The context of an inner call (a wrapped layer's, one per direction or time step
        group): created on first use, kept after. Its flags follow this context's."""
        if self._children is None:
            self._children = {}
        sub = self._children.get(key)
        if sub is None:
            sub = self._children[key] = CallContext()
        sub.accumulate = self.accumulate
        sub.need_input_grad = self.need_input_grad
        return sub


class Parameter:
    """One weight of a layer: its value, its gradient (None when not trainable), its penalty.

    ``value`` and ``grad`` are arrays in the weight's Keras shape. A model rebinds them to views
    of its flat parameter and gradient buffers (so one optimizer kernel updates every weight);
    layers therefore read ``param.value`` on every call and keep no other reference.
    """

    __slots__ = ("name", "value", "grad", "regularizer", "trainable")

    def __init__(self, name, value, regularizer=None, trainable=True):
        self.name = name
        self.value = value
        self.grad = np.zeros_like(value) if trainable else None
        self.regularizer = regularizer
        self.trainable = bool(trainable)

    def set_grad(self, value, accumulate):
        """grad := value, or grad += value when accumulating (a no-op for a frozen weight)."""
        if self.grad is None:
            return
        if accumulate:
            self.grad += value
        else:
            self.grad[...] = value

    def __repr__(self):
        return f"<Parameter {self.name!r} shape={self.value.shape} trainable={self.trainable}>"
