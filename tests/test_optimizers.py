"""Optimizers: the first steps of every optimizer against torch.optim on identical parameters and
gradients, gradient clipping against torch.nn.utils, learning-rate schedules, the Keras-style
apply_gradients, and a whole Sequential training step against the same PyTorch model."""
import numpy as np
import pytest

import cydnn
from cydnn import layers, optimizers

SHAPES = [(4, 3), (3,)]


def _problem(seed=0, steps=3, scales=(1.0, 0.05, 1.5)):
    """Initial parameters and one gradient per step for each variable (float64). The step scales
    vary so that AMSGrad's running maximum matters and momentum buffers change direction."""
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s) for s in SHAPES]
    grads = [[rng.standard_normal(s) * scales[t % len(scales)] for s in SHAPES] for t in range(steps)]
    return params, grads


def _run_cydnn(opt, params, grads):
    ws = [p.copy() for p in params]
    history = []
    for step in grads:
        opt.apply_gradients(zip([g.copy() for g in step], ws))
        history.append([w.copy() for w in ws])
    return history


def _run_torch(torch, make_opt, params, grads, clip=None):
    ps = [torch.tensor(p, requires_grad=True) for p in params]
    opt = make_opt(ps)
    history = []
    for step in grads:
        for p, g in zip(ps, step):
            p.grad = torch.tensor(g)
        if clip is not None:
            clip(ps)
        opt.step()
        history.append([p.detach().numpy().copy() for p in ps])
    return history


CASES = {
    "sgd": (lambda: optimizers.SGD(0.1), lambda T, ps: T.optim.SGD(ps, lr=0.1)),
    "sgd_momentum": (lambda: optimizers.SGD(0.1, momentum=0.9),
                     lambda T, ps: T.optim.SGD(ps, lr=0.1, momentum=0.9)),
    "sgd_nesterov": (lambda: optimizers.SGD(0.1, momentum=0.9, nesterov=True),
                     lambda T, ps: T.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True)),
    "sgd_weight_decay": (lambda: optimizers.SGD(0.1, momentum=0.8, weight_decay=0.05),
                         lambda T, ps: T.optim.SGD(ps, lr=0.1, momentum=0.8, weight_decay=0.05)),
    "sgd_dampening": (lambda: optimizers.SGD(0.1, momentum=0.9, dampening=0.3),
                      lambda T, ps: T.optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.3)),
    "adam": (lambda: optimizers.Adam(0.01, beta_1=0.8, beta_2=0.95, epsilon=1e-6),
             lambda T, ps: T.optim.Adam(ps, lr=0.01, betas=(0.8, 0.95), eps=1e-6)),
    "adam_defaults": (lambda: optimizers.Adam(epsilon=1e-8),
                      lambda T, ps: T.optim.Adam(ps, lr=0.001, eps=1e-8)),
    "adam_amsgrad": (lambda: optimizers.Adam(0.01, beta_1=0.8, beta_2=0.95, epsilon=1e-6, amsgrad=True),
                     lambda T, ps: T.optim.Adam(ps, lr=0.01, betas=(0.8, 0.95), eps=1e-6, amsgrad=True)),
    "adam_weight_decay": (lambda: optimizers.Adam(0.01, epsilon=1e-6, weight_decay=0.1),
                          lambda T, ps: T.optim.Adam(ps, lr=0.01, eps=1e-6, weight_decay=0.1)),
    "adamw": (lambda: optimizers.AdamW(0.01, weight_decay=0.1, epsilon=1e-6),
              lambda T, ps: T.optim.AdamW(ps, lr=0.01, weight_decay=0.1, eps=1e-6)),
    "adamw_amsgrad": (lambda: optimizers.AdamW(0.01, weight_decay=0.1, epsilon=1e-6, amsgrad=True),
                      lambda T, ps: T.optim.AdamW(ps, lr=0.01, weight_decay=0.1, eps=1e-6, amsgrad=True)),
    "rmsprop": (lambda: optimizers.RMSprop(0.01, rho=0.9, epsilon=1e-6),
                lambda T, ps: T.optim.RMSprop(ps, lr=0.01, alpha=0.9, eps=1e-6)),
    "rmsprop_momentum": (lambda: optimizers.RMSprop(0.01, rho=0.8, momentum=0.7, epsilon=1e-6),
                         lambda T, ps: T.optim.RMSprop(ps, lr=0.01, alpha=0.8, momentum=0.7, eps=1e-6)),
    "rmsprop_centered": (lambda: optimizers.RMSprop(0.01, rho=0.9, centered=True, epsilon=1e-6),
                         lambda T, ps: T.optim.RMSprop(ps, lr=0.01, alpha=0.9, centered=True, eps=1e-6)),
    "rmsprop_centered_momentum": (
        lambda: optimizers.RMSprop(0.01, rho=0.9, momentum=0.5, centered=True, epsilon=1e-6, weight_decay=0.01),
        lambda T, ps: T.optim.RMSprop(ps, lr=0.01, alpha=0.9, momentum=0.5, centered=True, eps=1e-6,
                                      weight_decay=0.01)),
    "adagrad": (lambda: optimizers.Adagrad(0.1, initial_accumulator_value=0.0, epsilon=1e-10),
                lambda T, ps: T.optim.Adagrad(ps, lr=0.1, initial_accumulator_value=0.0, eps=1e-10)),
    "adagrad_accumulator": (lambda: optimizers.Adagrad(0.1, initial_accumulator_value=0.1, epsilon=1e-10),
                            lambda T, ps: T.optim.Adagrad(ps, lr=0.1, initial_accumulator_value=0.1, eps=1e-10)),
}


@pytest.mark.parametrize("case", CASES)
def test_first_steps_match_torch(case):
    torch = pytest.importorskip("torch")
    make, make_torch = CASES[case]
    params, grads = _problem()
    ours = _run_cydnn(make(), params, grads)
    theirs = _run_torch(torch, lambda ps: make_torch(torch, ps), params, grads)
    for t, (a, b) in enumerate(zip(ours, theirs)):
        for wa, wb in zip(a, b):
            np.testing.assert_allclose(wa, wb, rtol=1e-12, atol=1e-14, err_msg=f"{case}: step {t + 1}")
    assert not np.allclose(ours[-1][0], params[0])  # the parameters did move


@pytest.mark.parametrize("case", ["sgd_momentum", "adam_amsgrad", "rmsprop_centered_momentum", "adagrad"])
def test_float32_steps_match_float64(case):
    make, _ = CASES[case]
    params, grads = _problem()
    ref = _run_cydnn(make(), params, grads)
    ours = _run_cydnn(make(), [p.astype(np.float32) for p in params],
                      [[g.astype(np.float32) for g in step] for step in grads])
    for wa, wb in zip(ours[-1], ref[-1]):
        assert wa.dtype == np.float32
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)


CLIPS = {
    "clipvalue": (dict(clipvalue=0.5), lambda T, ps: T.nn.utils.clip_grad_value_(ps, 0.5)),
    "clipnorm": (dict(clipnorm=1.0), lambda T, ps: [T.nn.utils.clip_grad_norm_([p], 1.0) for p in ps]),
    "global_clipnorm": (dict(global_clipnorm=1.0), lambda T, ps: T.nn.utils.clip_grad_norm_(ps, 1.0)),
    "clipnorm_inactive": (dict(clipnorm=100.0), lambda T, ps: [T.nn.utils.clip_grad_norm_([p], 100.0) for p in ps]),
}


@pytest.mark.parametrize("clip", CLIPS)
@pytest.mark.parametrize("opt", ["sgd_momentum", "adam"])
def test_gradient_clipping_matches_torch(clip, opt):
    torch = pytest.importorskip("torch")
    kwargs, torch_clip = CLIPS[clip]
    lr = 0.1 if opt == "sgd_momentum" else 0.01
    make = (lambda: optimizers.SGD(lr, momentum=0.9, **kwargs)) if opt == "sgd_momentum" else \
        (lambda: optimizers.Adam(lr, epsilon=1e-6, **kwargs))
    make_torch = (lambda ps: torch.optim.SGD(ps, lr=lr, momentum=0.9)) if opt == "sgd_momentum" else \
        (lambda ps: torch.optim.Adam(ps, lr=lr, eps=1e-6))
    params, grads = _problem(scales=(3.0, 0.2, 2.0))
    ours = _run_cydnn(make(), params, grads)
    theirs = _run_torch(torch, make_torch, params, grads, clip=lambda ps: torch_clip(torch, ps))
    # torch divides by (norm + 1e-6), Keras and cydnn by the norm: a 1e-6 relative difference
    exact = clip in ("clipvalue", "clipnorm_inactive")
    for a, b in zip(ours, theirs):
        for wa, wb in zip(a, b):
            np.testing.assert_allclose(wa, wb, rtol=1e-12 if exact else 2e-6, atol=1e-12 if exact else 1e-7)


def test_clipping_formulas_directly():
    g = np.array([3.0, -4.0, 0.0, 12.0])    # norm 13
    opt = optimizers.SGD(1.0, global_clipnorm=6.5)
    p = np.zeros(4)
    opt.apply(p, g.copy())
    np.testing.assert_allclose(p, -g / 2)
    opt = optimizers.SGD(1.0, clipnorm=5.0)   # per variable: [3, -4] has norm 5 (kept), [0, 12] -> [0, 5]
    p = np.zeros(4)
    opt.apply(p, g.copy(), segments=[(0, 2), (2, 2)])
    np.testing.assert_allclose(p, [-3.0, 4.0, 0.0, -5.0])
    opt = optimizers.SGD(1.0, clipvalue=3.5)
    p = np.zeros(4)
    opt.apply(p, g.copy())
    np.testing.assert_allclose(p, [-3.0, 3.5, 0.0, -3.5])


def test_learning_rate_schedule_is_called_with_the_step_count():
    seen = []

    def schedule(step):
        seen.append(step)
        return 0.1 / (1 + step)

    opt = optimizers.SGD(schedule)
    p = np.zeros(2)
    for _ in range(3):
        opt.apply(p, np.ones(2))
    assert seen == [0, 1, 2] and opt.iterations == 3
    np.testing.assert_allclose(p, -(0.1 + 0.05 + 0.1 / 3) * np.ones(2))


def test_apply_gradients_updates_arrays_in_place_and_keeps_state():
    w = np.array([1.0, 2.0])
    b = np.array([0.5])
    opt = optimizers.SGD(0.5, momentum=0.5)
    opt.apply_gradients([(np.array([1.0, 1.0]), w), (np.array([2.0]), b)])
    np.testing.assert_allclose(w, [0.5, 1.5])
    np.testing.assert_allclose(b, [-0.5])
    opt.apply_gradients([(np.array([1.0, 1.0]), w), (np.array([2.0]), b)])
    np.testing.assert_allclose(w, [0.5 - 0.5 * 1.5, 1.5 - 0.5 * 1.5])  # buf = 0.5 * 1 + 1
    assert opt.iterations == 2


def test_optimizers_by_name_have_keras_defaults():
    assert optimizers.get("sgd").learning_rate == 0.01
    adam = optimizers.get("Adam")
    assert (adam.learning_rate, adam.beta_1, adam.beta_2, adam.epsilon) == (0.001, 0.9, 0.999, 1e-7)
    assert optimizers.get("adamw").weight_decay == 0.004
    assert optimizers.get("rmsprop").rho == 0.9
    assert optimizers.get("adagrad").initial_accumulator_value == 0.1
    clone = optimizers.get(optimizers.serialize(optimizers.RMSprop(0.02, momentum=0.3, centered=True)))
    assert (clone.learning_rate, clone.momentum, clone.centered) == (0.02, 0.3, True)


# --------------------------------------------------------------------------- a whole training step
def _mlp_pair(torch, dtype, seed=0):
    """The same 10-16-8-3 MLP in cydnn and in torch (kernel = torch weight transposed)."""
    cydnn.set_floatx(dtype)
    tdtype = {"float64": torch.float64, "float32": torch.float32}[dtype]
    rng = np.random.default_rng(seed)
    model = cydnn.Sequential([layers.Dense(16, activation="relu", input_shape=(10,)),
                              layers.Dense(8, activation="tanh"), layers.Dense(3, activation="softmax")])
    tmodel = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8), torch.nn.Tanh(),
                                 torch.nn.Linear(8, 3)).to(tdtype)
    weights = []
    for lin in (tmodel[0], tmodel[2], tmodel[4]):
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(rng.standard_normal(tuple(lin.weight.shape)) * 0.5))
            lin.bias.copy_(torch.tensor(rng.standard_normal(tuple(lin.bias.shape)) * 0.1))
        weights += [lin.weight.detach().numpy().T.copy(), lin.bias.detach().numpy().copy()]
    model.set_weights(weights)
    return model, tmodel


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sequential_training_steps_match_torch(dtype):
    torch = pytest.importorskip("torch")
    model, tmodel = _mlp_pair(torch, dtype)
    tdtype = {"float64": torch.float64, "float32": torch.float32}[dtype]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((32, 10)).astype(dtype)
    y = rng.integers(0, 3, 32)
    model.compile(optimizer=optimizers.SGD(0.1, momentum=0.9), loss="sparse_categorical_crossentropy")
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.1, momentum=0.9)
    xt, yt = torch.tensor(x, dtype=tdtype), torch.tensor(y)
    losses_t = []
    for _ in range(3):
        topt.zero_grad()
        loss = torch.nn.functional.cross_entropy(tmodel(xt), yt)
        loss.backward()
        topt.step()
        losses_t.append(loss.item())
    hist = model.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0)  # one batch per epoch
    tol = dict(rtol=1e-11, atol=1e-13) if dtype == "float64" else dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(hist.history["loss"], losses_t, **tol)
    expected = [a for lin in (tmodel[0], tmodel[2], tmodel[4])
                for a in (lin.weight.detach().numpy().T, lin.bias.detach().numpy())]
    for w, e in zip(model.get_weights(), expected):
        np.testing.assert_allclose(w, e, **tol)
    with torch.no_grad():
        np.testing.assert_allclose(model.predict(x), torch.softmax(tmodel(xt), -1).numpy(), **tol)


def test_train_on_batch_equals_fit_on_one_batch():
    cydnn.set_floatx("float64")
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 4)), rng.standard_normal((16, 2))
    models = []
    for _ in range(2):
        cydnn.set_random_seed(5)
        m = cydnn.Sequential([layers.Dense(8, activation="elu", input_shape=(4,)), layers.Dense(2)])
        m.compile(optimizer=optimizers.RMSprop(0.01, momentum=0.5), loss="mse")
        models.append(m)
    for _ in range(2):
        models[0].train_on_batch(x, y)
    models[1].fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(models[0].get_weights(), models[1].get_weights()):
        np.testing.assert_array_equal(a, b)


def test_adagrad_state_of_a_newly_trainable_weight_starts_at_the_initial_accumulator():
    """When a model re-packs its parameters (a layer unfrozen), the new variable's accumulator
    starts at initial_accumulator_value, as it does on the first step, and old ones are kept."""
    opt = cydnn.optimizers.Adagrad(0.1, initial_accumulator_value=0.25)
    params, grads = np.ones(3, np.float32), np.ones(3, np.float32)
    opt.apply(params, grads)
    opt.remap_slots({("a", 0): (0, 3)}, {("a", 0): (0, 3), ("b", 0): (3, 2)})
    np.testing.assert_array_equal(opt._slots["accumulator"], np.array([1.25, 1.25, 1.25, 0.25, 0.25], np.float32))
