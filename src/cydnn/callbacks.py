"""Callbacks: hooks into the training loop (Keras names and signatures).

Hooks: on_train_begin/end, on_epoch_begin/end, on_train_batch_begin/end, on_test_begin/end,
on_test_batch_begin/end, on_predict_begin/end. ``logs`` is a dict of floats ('loss',
metric names, 'val_'-prefixed validation values, 'learning_rate' at epoch end).
A callback stops training by setting ``self.model.stop_training = True``.
"""


class Callback:
    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None): pass
    def on_train_end(self, logs=None): pass
    def on_epoch_begin(self, epoch, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass
    def on_train_batch_begin(self, batch, logs=None): pass
    def on_train_batch_end(self, batch, logs=None): pass
    def on_test_begin(self, logs=None): pass
    def on_test_end(self, logs=None): pass
    def on_test_batch_begin(self, batch, logs=None): pass
    def on_test_batch_end(self, batch, logs=None): pass
    def on_predict_begin(self, logs=None): pass
    def on_predict_end(self, logs=None): pass


class CallbackList:
    """Calls every callback's hook in order; only batch hooks someone overrides are called."""

    def __init__(self, callbacks, model, params):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"fit: expected callbacks to be cydnn.callbacks.Callback instances, received {cb!r}")
            cb.set_model(model)
            cb.set_params(params)
        self._batch = [cb for cb in self.callbacks
                       if type(cb).on_train_batch_end is not Callback.on_train_batch_end
                       or type(cb).on_train_batch_begin is not Callback.on_train_batch_begin]

    def __getattr__(self, hook):
        if not hook.startswith("on_"):
            raise AttributeError(hook)
        targets = self._batch if hook.startswith("on_train_batch") else self.callbacks

        def call(*args, **kwargs):
            for cb in targets:
                getattr(cb, hook)(*args, **kwargs)
        return call


class History(Callback):
    """Records every epoch's logs: ``history.history['loss']`` is a list, one value per epoch."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.epoch = []
        self.history = {}

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)
