"""What every model shares: compile, fit, evaluate, predict and their per-batch forms.

A concrete model (Sequential, the functional Model) supplies the graph:
  * ``_graph_layers()``: its layers, each once, in forward order;
  * ``_build_graph(input_shapes)``: build the layers for inputs of these shapes (batch axis
    included) and return the output shapes;
  * ``_check_input_shapes(shapes)``: validate a new input shape once per distinct shape;
  * ``_n_calls()``: how many layer calls one forward pass makes (one ``CallContext`` each);
  * ``_forward(xs, training, ctxs)`` -> list of outputs; ``_backward(dys, ctxs)`` from a list
    of output gradients (an entry may be dL/d(logits) when ``_fused[k]`` marks that output as
    fused with its loss: then the output layer's ``backward_preactivation`` is used);
  * ``_output_layers()``: the layer producing each output; ``_output_calls()``: the index of
    that call among the contexts;
  * ``_input_grad_flags()``: per call, whether anybody reads its dL/dx (False for calls that
    read model inputs only).

Per-call state. Everything a forward pass keeps for its backward lives in a set of contexts
(one per layer call) that the model owns, never on the layers. Training uses one set; each
running ``predict`` takes a set from a pool and returns it, so several threads can predict with
one model at once. fit, evaluate and the per-batch methods share optimizer, metric and loss
state and hold the model's lock: calls from several threads run one after the other.

The training step: forward, loss value and gradient in one kernel (softmax or sigmoid outputs
are fused with cross-entropy, working on logits), backward, weight penalties, then one fused
optimizer kernel over a flat buffer that holds every trainable weight (layers' weights are
rebound to views of it). Per-batch arrays are gathered into buffers kept between steps.
"""
import functools
import math
import threading
import time

import numpy as np

from .. import backend, losses as losses_mod, metrics as metrics_mod, optimizers as optimizers_mod, saving, threads
from .._kernels import optim as _optim_kernels
from .._validation import as_float_array, check_finite, check_positive_int
from ..callbacks import CallbackList, History
from ..layers.context import CallContext
from ..utils.progbar import Progbar, format_logs


def _as_list(x):
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _holds_lock(method):
    """Run the method under the model's lock: it uses the optimizer's, the metrics' and the
    training contexts' state, which one call at a time may own."""
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return locked


class Network:
    def __init__(self, name=None):
        self.name = name or type(self).__name__.lower()
        self.optimizer = None
        self.loss = None
        self.compiled = False
        self.stop_training = False
        self.history = None
        self._params = None     # flat trainable weights
        self._flat_grads = None
        self._pack_key = None
        self._layout = {}       # (layer name, weight index) -> (offset, size)
        self._segments = []
        self._seen_shapes = set()
        self._gather = {}
        self._grad_bufs = {}
        self._lock = threading.RLock()  # fit/evaluate/train_on_batch: shared optimizer and metric state
        self._reset_contexts()

    # ================================================================ per-call state
    def _reset_contexts(self):
        """Forget every context set (the graph changed: calls were added or removed)."""
        self._train_ctxs = None
        self._ctx_pool = []

    def _new_contexts(self):
        ctxs = [CallContext() for _ in range(self._n_calls())]
        for ctx, flag in zip(ctxs, self._input_grad_flags()):
            ctx.need_input_grad = flag
        return ctxs

    def _training_contexts(self):
        if self._train_ctxs is None:
            self._train_ctxs = self._new_contexts()
        return self._train_ctxs

    def _take_contexts(self):
        """A context set for one inference call; hand it back with ``_give_back``."""
        try:
            return self._ctx_pool.pop()  # atomic: two threads never get the same set
        except IndexError:
            return self._new_contexts()

    def _give_back(self, ctxs):
        if len(ctxs) == self._n_calls():
            self._ctx_pool.append(ctxs)

    def _infer(self, xs):
        """Outputs of an inference pass on xs (copies: the context set, whose buffers held them,
        goes back to the pool for the next call), with a context set of its own (thread-safe)."""
        ctxs = self._take_contexts()
        try:
            return [o.copy() for o in self._forward(xs, False, ctxs)]
        finally:
            self._give_back(ctxs)

    # ================================================================ compile
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None):
        """Choose the optimizer, the loss (one for all outputs, or one per output) and metrics."""
        if loss is None:
            raise ValueError(f"{type(self).__name__}.compile: expected a loss (e.g. 'mse', "
                             f"'sparse_categorical_crossentropy'), received loss=None")
        self.optimizer = optimizers_mod.get(optimizer)
        # resolve every name now, so a misspelt loss or metric fails here rather than at fit()
        for spec in (loss.values() if isinstance(loss, dict) else _as_list(loss)):
            if spec is not None:
                losses_mod.get(spec)
        for spec in (metrics.values() if isinstance(metrics, dict) else _as_list(metrics)):
            for m in (spec if isinstance(spec, (list, tuple)) else [spec]):
                metrics_mod.get(m)
        self._loss_spec, self._metric_spec = loss, metrics
        self._loss_weights = loss_weights
        self.compiled = True
        self._losses = None
        if self.built:
            self._setup_losses()

    def _setup_losses(self):
        n_out = len(self.output_shapes)
        spec = self._loss_spec
        if isinstance(spec, dict):
            names = [layer.name for layer in self._output_layers()]
            missing = set(spec) - set(names)
            if missing:
                raise ValueError(f"compile: loss given for unknown outputs {sorted(missing)}; outputs are {names}")
            spec = [spec.get(n) for n in names]
        specs = list(spec) if isinstance(spec, (list, tuple)) else [spec] * n_out
        if len(specs) != n_out:
            raise ValueError(f"compile: expected {n_out} losses (one per output), received {len(specs)}")
        # a fresh Loss object per output (they keep scratch buffers)
        self._losses = [losses_mod.get(s if not isinstance(s, losses_mod.Loss) or n_out == 1 else
                                       losses_mod.get(losses_mod.serialize(s))) for s in specs]
        self.loss = self._losses[0] if n_out == 1 else self._losses
        lw = self._loss_weights
        self._lw = [1.0] * n_out if lw is None else [float(w) for w in _as_list(lw)]
        if len(self._lw) != n_out:
            raise ValueError(f"compile: expected {n_out} loss_weights, received {len(self._lw)}")
        mspec = self._metric_spec or []
        if isinstance(mspec, dict) or (n_out > 1 and mspec and isinstance(mspec[0], (list, tuple))):
            per_out = [mspec.get(l.name, []) for l in self._output_layers()] if isinstance(mspec, dict) else mspec
        else:
            per_out = [mspec] * n_out
        self._metrics = []
        for k, ms in enumerate(per_out):
            objs = [metrics_mod.get(m, self._losses[k], self.output_shapes[k]) for m in _as_list(ms)]
            self._metrics.append(objs)
        # fuse softmax/sigmoid outputs with cross-entropy: the kernel takes the logits
        self._fused = []
        for layer, loss in zip(self._output_layers(), self._losses):
            act = getattr(layer, "activation", None)
            code = loss.logits_code(act.name) if (act is not None and hasattr(layer, "backward_preactivation")) else None
            self._fused.append(code)

    def _metric_names(self):
        multi = len(self.output_shapes) > 1
        names = []
        for layer, ms in zip(self._output_layers(), self._metrics):
            names += [f"{layer.name}_{m.name}" if multi else m.name for m in ms]
        return names

    # ================================================================ parameters
    @property
    def layers(self):
        return list(self._graph_layers())

    @property
    def weights(self):
        return [w for layer in self._graph_layers() for w in layer.weights]

    @property
    def trainable_weights(self):
        return [w for layer in self._graph_layers() for w in layer.trainable_weights]

    @property
    def non_trainable_weights(self):
        return [w for layer in self._graph_layers() for w in layer.non_trainable_weights]

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        weights = list(weights)
        expected = sum(len(layer.weights) for layer in self._graph_layers())
        if len(weights) != expected:
            raise ValueError(f"{type(self).__name__} '{self.name}': expected {expected} weight arrays, "
                             f"received {len(weights)}")
        i = 0
        for layer in self._graph_layers():
            n = len(layer.weights)
            layer.set_weights(weights[i:i + n])
            i += n

    def count_params(self):
        return sum(layer.count_params() for layer in self._graph_layers())

    def get_layer(self, name=None, index=None):
        layers = self.layers
        if index is not None:
            return layers[index]
        for layer in layers:
            if layer.name == name:
                return layer
        raise ValueError(f"{type(self).__name__} '{self.name}': no layer named {name!r}; "
                         f"layers are {[l.name for l in layers]}")

    def _pack_parameters(self):
        """Bind every trainable weight to a view of one flat buffer (and its gradient to one flat
        gradient buffer) so the optimizer runs one kernel per step. Re-packed when the set of
        trainable weights changes (a layer frozen or unfrozen); optimizer state follows."""
        entries = [(layer, i) for layer in self._graph_layers() if layer.trainable
                   for i, p in enumerate(layer._params) if p.trainable]
        key = tuple((id(layer), i) for layer, i in entries)
        if key == self._pack_key and self._params is not None:
            return
        dtypes = {layer.dtype for layer, _ in entries}
        if len(dtypes) > 1:
            raise ValueError(f"{type(self).__name__} '{self.name}': all trainable layers must share one dtype, "
                             f"found {sorted(d.name for d in dtypes)}")
        dtype = dtypes.pop() if dtypes else np.dtype(backend.floatx())
        total = sum(layer._params[i].value.size for layer, i in entries)
        params = np.empty(total, dtype=dtype)
        grads = np.zeros(total, dtype=dtype)
        layout, segments, off = {}, [], 0
        for layer, i in entries:
            p = layer._params[i]
            w, n = p.value, p.value.size
            params[off:off + n] = w.reshape(-1)
            p.value = params[off:off + n].reshape(w.shape)
            p.grad = grads[off:off + n].reshape(w.shape)
            layout[(layer.name, i)] = (off, n)
            segments.append((off, n))
            off += n
        if self._pack_key is not None and self.optimizer is not None:
            self.optimizer.remap_slots(self._layout, layout)
        self._params, self._flat_grads = params, grads
        self._layout, self._segments, self._pack_key = layout, segments, key

    # ================================================================ data plumbing
    def _standardize_x(self, x, who):
        xs = _as_list(x)
        n_in = len(self.input_shapes) if self.built else None
        if n_in is not None and len(xs) != n_in:
            raise ValueError(f"{who}: expected {n_in} input arrays, received {len(xs)}")
        dtype = self._dtype()
        xs = [as_float_array(a, dtype, who, "input x") for a in xs]
        if not xs:
            raise ValueError(f"{who}: expected input data x, received None")
        n = xs[0].shape[0] if xs[0].ndim else 0
        for a in xs:
            if a.ndim == 0:
                raise ValueError(f"{who}: expected x with a batch axis, received a scalar")
            if a.shape[0] != n:
                raise ValueError(f"{who}: all inputs must have the same number of samples, received "
                                 f"{[a.shape[0] for a in xs]}")
        if not self.built:
            with self._lock:  # two first predict calls from two threads build once
                if not self.built:
                    self.build([(None,) + a.shape[1:] for a in xs])
        self._check_new_shapes([a.shape for a in xs])
        return xs

    def _check_new_shapes(self, shapes):
        key = tuple(tuple(s[1:]) for s in shapes)
        if key not in self._seen_shapes:
            self._check_input_shapes([tuple(s) for s in shapes])  # real batch size, for the messages
            self._seen_shapes.add(key)

    def _standardize_y(self, y, xs, who):
        n = xs[0].shape[0]
        ys = _as_list(y)
        if len(ys) != len(self.output_shapes):
            raise ValueError(f"{who}: expected {len(self.output_shapes)} target arrays (one per output), "
                             f"received {len(ys)}")
        shapes = self._concrete_output_shapes(xs)
        out = []
        for yk, loss, shape in zip(ys, self._losses, shapes):
            yk = loss.prepare_targets(yk, (n,) + tuple(shape[1:]), self._dtype())
            if yk.shape[0] != n:
                raise ValueError(f"{who}: expected {n} target rows (as many as input samples), received {yk.shape[0]}")
            out.append(yk)
        return out

    def _concrete_output_shapes(self, xs):
        """Output shapes for these inputs; where a size is not fixed by the model (a sequence
        length, say) it is read off an inference pass on the first sample."""
        shapes = self.output_shapes
        if any(s is None for shape in shapes for s in shape[1:]) and xs[0].shape[0] > 0:
            shapes = [o.shape for o in self._infer([a[:1] for a in xs])]
        return shapes

    def _dtype(self):
        for layer in self._graph_layers():
            if layer.built and layer._params:
                return layer.dtype
        layers = self.layers
        return layers[0].dtype if layers else np.dtype(backend.floatx())

    def _take(self, key, arr, idx):
        """arr[idx] into a buffer kept between steps (one per array and batch size)."""
        shape = (len(idx),) + arr.shape[1:]
        key = (key, len(idx))  # full batches and the last, shorter one each keep a buffer
        buf = self._gather.get(key)
        if buf is None or buf.shape != shape or buf.dtype != arr.dtype:
            buf = self._gather[key] = np.empty(shape, dtype=arr.dtype)
        # idx is a slice of a permutation of range(n), always in range: mode="clip" writes straight
        # into buf, where the default mode="raise" buffers the whole batch in a temporary first
        np.take(arr, idx, axis=0, out=buf, mode="clip")
        return buf

    def _sample_weights(self, ys, sample_weight, class_weight, n):
        sw = None
        if sample_weight is not None:
            sw = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
            if sw.shape[0] != n:
                raise ValueError(f"fit: expected sample_weight of shape ({n},), received shape {np.shape(sample_weight)}")
        if class_weight is not None:
            if len(ys) != 1:
                raise ValueError("fit: class_weight is supported for single-output models only")
            y = ys[0]
            if y.ndim == 1 and y.dtype.kind in "iu":
                labels = y
            elif y.ndim == 2 and y.shape[1] > 1:
                labels = np.argmax(y, axis=1)
            else:
                labels = np.round(y.reshape(n, -1)[:, 0]).astype(np.intp)
            cw = np.ones(n)
            for cls, w in class_weight.items():
                cw[labels == int(cls)] = float(w)
            sw = cw if sw is None else sw * cw
        return None if sw is None else np.ascontiguousarray(sw, dtype=self._dtype())

    # ================================================================ one step
    def _step_losses(self, outs, ys, sw, want_grad, ctxs):
        """Total loss (weighted over outputs) and, when want_grad, the gradient per output."""
        total, grads = 0.0, []
        calls = self._output_calls()
        for k, (out, yk, loss) in enumerate(zip(outs, ys, self._losses)):
            code = self._fused[k]
            pred = ctxs[calls[k]].logits.reshape(out.shape) if code is not None else out
            g = None
            if want_grad:
                # one buffer per shape: full batches and an epoch's last, shorter one each keep theirs
                key = (k, pred.shape, pred.dtype)
                g = self._grad_bufs.get(key)
                if g is None:
                    g = self._grad_bufs[key] = np.empty(pred.shape, dtype=pred.dtype)
            value = loss.compute(yk, pred, sw, g, code)
            if self._lw[k] != 1.0:
                value *= self._lw[k]
                if g is not None:
                    g *= self._lw[k]
            total += value
            grads.append(g)
        return total, grads

    def _train_step(self, xs, ys, sw, apply=True, accumulate=False, grad_scale=1.0):
        """Forward and backward on one batch; apply the optimizer unless ``apply`` is False
        (gradient accumulation). Returns the loss including weight penalties."""
        ctxs = self._training_contexts()
        outs = self._forward(xs, True, ctxs)
        value, grads = self._step_losses(outs, ys, sw, True, ctxs)
        for ctx in ctxs:
            ctx.accumulate = accumulate
        self._backward(grads, ctxs)
        if apply and grad_scale != 1.0:  # mean of the accumulated batch gradients
            _optim_kernels.scale(self._flat_grads, grad_scale, threads.get_num_threads())
        penalty = 0.0
        for layer in self._graph_layers():
            if layer.has_regularizers:
                penalty += layer.regularization_penalty(add_gradients=apply)
        if apply:
            self.optimizer.apply(self._params, self._flat_grads, self._segments)
        self._update_metrics(ys, outs, sw)
        return value + penalty

    def _update_metrics(self, ys, outs, sw):
        for ms, yk, out in zip(self._metrics, ys, outs):
            for m in ms:
                m.update_state(yk, out, sw)

    def _reset_metrics(self):
        for ms in self._metrics:
            for m in ms:
                m.reset_state()

    def _metric_logs(self, prefix=""):
        logs = {}
        for name, m in zip(self._metric_names(), [m for ms in self._metrics for m in ms]):
            logs[prefix + name] = m.result()
        return logs

    def _require_compiled(self, who):
        if not self.compiled:
            raise RuntimeError(f"{type(self).__name__} '{self.name}': call compile(optimizer, loss) before {who}()")
        if self._losses is None:
            self._setup_losses()

    # ================================================================ fit
    @_holds_lock
    def fit(self, x=None, y=None, batch_size=32, epochs=1, verbose=1, callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, class_weight=None, sample_weight=None, initial_epoch=0,
            gradient_accumulation_steps=1, check_finite_values=False):
        """Train for ``epochs`` passes over (x, y); return a History.

        ``gradient_accumulation_steps=k`` sums the gradients of k consecutive batches and takes
        one optimizer step with their mean (for SGD: the same step as on the k batches joined).
        ``check_finite_values`` rejects inputs and targets holding NaN or inf before training.
        """
        batch_size = check_positive_int(batch_size, "fit", "batch_size")
        epochs = check_positive_int(epochs, "fit", "epochs", allow_zero=True)
        k_acc = check_positive_int(gradient_accumulation_steps, "fit", "gradient_accumulation_steps")
        if not 0.0 <= float(validation_split) < 1.0:
            raise ValueError(f"fit: expected validation_split in [0, 1), received validation_split={validation_split!r}")
        xs = self._standardize_x(x, "fit")
        self._require_compiled("fit")
        n = xs[0].shape[0]
        if y is None:
            raise ValueError("fit: expected targets y, received None")
        ys = self._standardize_y(y, xs, "fit")
        sw = self._sample_weights(ys, sample_weight, class_weight, n)
        if check_finite_values:
            for a in xs:
                check_finite(a, "fit", "input x")
            for a in ys:
                check_finite(a, "fit", "target y")

        val = None
        if validation_data is not None:
            vd = list(validation_data)
            if len(vd) not in (2, 3):
                raise ValueError(f"fit: expected validation_data=(x_val, y_val) or (x_val, y_val, sample_weight), "
                                 f"received a sequence of {len(vd)}")
            vx = self._standardize_x(vd[0], "fit (validation_data)")
            vy = self._standardize_y(vd[1], vx, "fit (validation_data)")
            vsw = None if len(vd) == 2 or vd[2] is None else np.ascontiguousarray(vd[2], dtype=self._dtype())
            val = (vx, vy, vsw)
        elif validation_split > 0:
            split = int(n * (1.0 - validation_split))
            if split == 0 or split == n:
                raise ValueError(f"fit: validation_split={validation_split} leaves an empty training or validation set "
                                 f"with {n} samples")
            val = ([a[split:] for a in xs], [a[split:] for a in ys], None if sw is None else sw[split:])
            xs, ys = [a[:split] for a in xs], [a[:split] for a in ys]
            sw = None if sw is None else sw[:split]
            n = split

        self._pack_parameters()
        steps = math.ceil(n / batch_size)
        self.history = History()
        cbs = CallbackList(_as_list(callbacks) + [self.history], self,
                           {"epochs": epochs, "steps": steps, "verbose": verbose, "batch_size": batch_size})
        self.stop_training = False
        cbs.on_train_begin()
        rng = backend.rng()
        step_in_group = 0
        for epoch in range(initial_epoch, epochs):
            if self.stop_training:
                break
            cbs.on_epoch_begin(epoch)
            self._reset_metrics()
            if verbose:
                print(f"Epoch {epoch + 1}/{epochs}", flush=True) if verbose == 1 else None
            bar = Progbar(steps, verbose=verbose)
            order = rng.permutation(n) if shuffle else np.arange(n)
            loss_sum, seen = 0.0, 0
            t0 = time.perf_counter()
            for b in range(steps):
                idx = order[b * batch_size:(b + 1) * batch_size]
                cbs.on_train_batch_begin(b)
                xb = [self._take(("x", i), a, idx) for i, a in enumerate(xs)]
                yb = [self._take(("y", i), a, idx) for i, a in enumerate(ys)]
                swb = None if sw is None else self._take("sw", sw, idx)
                step_in_group += 1
                last_of_group = step_in_group == k_acc or b == steps - 1
                value = self._train_step(xb, yb, swb, apply=last_of_group, accumulate=step_in_group > 1,
                                         grad_scale=1.0 / step_in_group)
                if last_of_group:
                    step_in_group = 0
                loss_sum += value * len(idx)
                seen += len(idx)
                logs = {"loss": loss_sum / seen, **self._metric_logs()}
                cbs.on_train_batch_end(b, logs)
                bar.update(b + 1, logs)
                if self.stop_training:
                    break
            logs = {"loss": loss_sum / max(seen, 1), **self._metric_logs()}
            if val is not None:
                vlogs = self._evaluate_arrays(*val, batch_size=batch_size)
                logs.update({"val_" + k: v for k, v in vlogs.items()})
            logs["learning_rate"] = self.optimizer.current_learning_rate()
            if verbose == 1:
                bar.update(b + 1, {k: v for k, v in logs.items() if k != "learning_rate"}, finalize=True)
            elif verbose == 2:
                shown = format_logs({k: v for k, v in logs.items() if k != "learning_rate"})
                print(f"Epoch {epoch + 1}/{epochs} - {time.perf_counter() - t0:.2f}s - {shown}", flush=True)
            cbs.on_epoch_end(epoch, logs)
        cbs.on_train_end()
        return self.history

    # ================================================================ evaluate / predict
    def _evaluate_arrays(self, xs, ys, sw, batch_size, callbacks=None):
        ctxs = self._training_contexts()  # the model's lock is held: no training step runs meanwhile
        self._reset_metrics()
        n = xs[0].shape[0]
        total = 0.0
        # the weights do not change while evaluating: their penalty is one number
        penalty = sum(layer.regularization_penalty() for layer in self._graph_layers() if layer.has_regularizers)
        for b, start in enumerate(range(0, n, batch_size)):
            sl = slice(start, start + batch_size)
            if callbacks:
                callbacks.on_test_batch_begin(b)
            xb = [np.ascontiguousarray(a[sl]) for a in xs]
            outs = self._forward(xb, False, ctxs)
            yb = [a[sl] for a in ys]
            swb = None if sw is None else np.ascontiguousarray(sw[sl])
            value, _ = self._step_losses(outs, yb, swb, False, ctxs)
            total += (value + penalty) * xb[0].shape[0]
            self._update_metrics(yb, outs, swb)
            if callbacks:
                callbacks.on_test_batch_end(b)
        return {"loss": total / max(n, 1), **self._metric_logs()}

    @_holds_lock
    def evaluate(self, x=None, y=None, batch_size=32, verbose=0, sample_weight=None, return_dict=False,
                 callbacks=None):
        """Loss (and metrics) on (x, y): a float, a list [loss, *metrics], or a dict."""
        batch_size = check_positive_int(batch_size, "evaluate", "batch_size")
        xs = self._standardize_x(x, "evaluate")
        self._require_compiled("evaluate")
        ys = self._standardize_y(y, xs, "evaluate")
        sw = None if sample_weight is None else np.ascontiguousarray(sample_weight, dtype=self._dtype()).reshape(-1)
        cbs = CallbackList(_as_list(callbacks), self, {"verbose": verbose})
        cbs.on_test_begin()
        logs = self._evaluate_arrays(xs, ys, sw, batch_size, cbs)
        cbs.on_test_end(logs)
        if verbose:
            print(format_logs(logs))
        if return_dict:
            return logs
        vals = list(logs.values())
        return vals[0] if len(vals) == 1 else vals

    def predict(self, x, batch_size=32, verbose=0, callbacks=None):
        """Outputs for x, computed in batches (inference mode): an array, or a list of arrays."""
        batch_size = check_positive_int(batch_size, "predict", "batch_size")
        xs = self._standardize_x(x, "predict")
        n = xs[0].shape[0]
        cbs = CallbackList(_as_list(callbacks), self, {"verbose": verbose})
        cbs.on_predict_begin()
        results = None
        ctxs = self._take_contexts()
        try:
            for start in range(0, n, batch_size):
                sl = slice(start, start + batch_size)
                outs = self._forward([np.ascontiguousarray(a[sl]) for a in xs], False, ctxs)
                if results is None:
                    results = [np.empty((n,) + o.shape[1:], dtype=o.dtype) for o in outs]
                for r, o in zip(results, outs):
                    r[sl] = o
        finally:
            self._give_back(ctxs)
        cbs.on_predict_end()
        if results is None:
            results = [np.empty((0,) + tuple(s[1:]), dtype=self._dtype()) for s in self.output_shapes]
        return results[0] if len(results) == 1 else results

    def __call__(self, x, training=False):
        xs = self._standardize_x(x, "call")
        if training:
            with self._lock:
                out = [o.copy() for o in self._forward(xs, True, self._training_contexts())]
        else:
            out = self._infer(xs)
        return out[0] if len(out) == 1 else out

    @_holds_lock
    def train_on_batch(self, x, y, sample_weight=None, class_weight=None, return_dict=False):
        """One optimizer step on one batch; returns its loss (and metrics)."""
        xs = self._standardize_x(x, "train_on_batch")
        self._require_compiled("train_on_batch")
        ys = self._standardize_y(y, xs, "train_on_batch")
        sw = self._sample_weights(ys, sample_weight, class_weight, xs[0].shape[0])
        self._pack_parameters()
        self._reset_metrics()
        value = self._train_step(xs, ys, sw)
        logs = {"loss": value, **self._metric_logs()}
        if return_dict:
            return logs
        vals = list(logs.values())
        return vals[0] if len(vals) == 1 else vals

    def test_on_batch(self, x, y, sample_weight=None, return_dict=False):
        return self.evaluate(x, y, batch_size=max(1, len(_as_list(x)[0])), sample_weight=sample_weight,
                             return_dict=return_dict)

    def predict_on_batch(self, x):
        return self.predict(x, batch_size=max(1, len(_as_list(x)[0])))

    # ================================================================ summary
    def summary(self, print_fn=print):
        """Print each layer's name, type, output shape and parameter count (and, for graph models,
        the layers each one is connected to), then the totals."""
        if not self.built:
            raise ValueError(f"{type(self).__name__} '{self.name}': the model is not built yet; call build(input_shape) "
                             f"or fit/predict it on data (or start it with an InputLayer) first")
        rows = [[c if isinstance(c, list) else [c] for c in r] for r in self._summary_rows()]  # a cell: its lines
        headers = ("Layer (type)", "Output Shape", "Param #", "Connected to")[:len(rows[0]) if rows else 3]
        w = [max([len(h)] + [len(s) for r in rows for s in r[i]]) for i, h in enumerate(headers)]
        line = "  ".join("{:%s%d}" % (a, wi) for a, wi in zip("<<><", w))
        total_w = sum(w) + 2 * (len(w) - 1)
        print_fn(f'Model: "{self.name}"')
        print_fn("=" * total_w)
        print_fn(line.format(*headers).rstrip())
        print_fn("=" * total_w)
        for r in rows:
            for k in range(max(len(c) for c in r)):
                print_fn(line.format(*(c[k] if k < len(c) else "" for c in r)).rstrip())
        trainable = sum(w.size for w in self.trainable_weights)
        total = self.count_params()
        print_fn("=" * total_w)
        print_fn(f"Total params: {total:,}")
        print_fn(f"Trainable params: {trainable:,}")
        print_fn(f"Non-trainable params: {total - trainable:,}")

    def _summary_rows(self):
        """One row per layer: (name (type), output shape, param count[, connected-to lines])."""
        return [(f"{layer.name} ({type(layer).__name__})", str(layer.output_shape), str(layer.count_params()))
                for layer in self._summary_layers()]

    def _summary_layers(self):
        return self._graph_layers()

    # ================================================================ saving (cydnn.saving does the work)
    def save(self, path):
        """Write the model (config, weights, compile settings, optimizer state) to one file;
        ``cydnn.load_model(path)`` rebuilds it ready to resume training."""
        saving.save_model(self, path)

    def save_weights(self, path):
        """Write only the weights, by layer name (e.g. ``model.save_weights('m.weights.npz')``)."""
        saving.save_weights(self, path)

    def load_weights(self, path, skip_mismatch=False, by_name=True):
        """Load weights written by save_weights (or save): by layer name, or by position with
        ``by_name=False``; ``skip_mismatch`` skips (with a warning) layers whose shapes differ."""
        saving.load_weights(self, path, skip_mismatch=skip_mismatch, by_name=by_name)
