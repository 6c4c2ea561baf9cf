"""Tests for cutedl.optimizers.

Reference values come from the update formulas written out below in plain NumPy (new arrays at
every line, no in-place tricks, Adam in its bias-corrected textbook form), never from the code
under test.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from cutedl import optimizers
from cutedl.layers.base import Param
from cutedl.optimizers import (SGD, Adadelta, Adagrad, Adam, AdamW, Fixed, Lion, Momentum, Nadam, Optimizer,
                               RAdam, RMSProp)

# Keras 3 defaults, written out independently of the module.
DEFAULTS = {
    "sgd": dict(lr=0.01, momentum=0.0, nesterov=False),
    "fixed": dict(lr=0.01, momentum=0.0, nesterov=False),
    "momentum": dict(lr=0.01, momentum=0.9, nesterov=False),
    "adagrad": dict(lr=0.001, initial_accumulator_value=0.1, epsilon=1e-7),
    "rmsprop": dict(lr=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False),
    "adadelta": dict(lr=0.001, rho=0.95, epsilon=1e-7),
    "adam": dict(lr=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False),
    "adamw": dict(lr=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, weight_decay=0.004),
    # Keras has no RAdam: PyTorch's defaults
    "radam": dict(lr=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-8),
    "nadam": dict(lr=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, momentum_decay=0.004),
    "lion": dict(lr=0.001, beta_1=0.9, beta_2=0.99),
}
COMMON = dict(weight_decay=0.0, clipnorm=None, clipvalue=None, global_clipnorm=None)


# ---------------------------------------------------------------------- reference formulas
def ref_sgd(w, g, s, t, lr, hp):
    if hp["momentum"] == 0:
        return w - lr * g
    s["velocity"] = hp["momentum"] * s.get("velocity", np.zeros_like(w)) - lr * g
    if hp["nesterov"]:
        return w + hp["momentum"] * s["velocity"] - lr * g
    return w + s["velocity"]


def ref_adagrad(w, g, s, t, lr, hp):
    acc = s.get("accumulator", np.full_like(w, hp["initial_accumulator_value"])) + g ** 2
    s["accumulator"] = acc
    return w - lr * g / np.sqrt(acc + hp["epsilon"])


def ref_rmsprop(w, g, s, t, lr, hp):
    rho = hp["rho"]
    ms = rho * s.get("velocity", np.zeros_like(w)) + (1 - rho) * g ** 2
    s["velocity"] = ms
    if hp["centered"]:
        mg = rho * s.get("average_gradient", np.zeros_like(w)) + (1 - rho) * g
        s["average_gradient"] = mg
        step = lr * g / np.sqrt(ms - mg ** 2 + hp["epsilon"])
    else:
        step = lr * g / np.sqrt(ms + hp["epsilon"])
    if hp["momentum"] > 0:
        s["momentum"] = hp["momentum"] * s.get("momentum", np.zeros_like(w)) + step
        return w - s["momentum"]
    return w - step


def ref_adadelta(w, g, s, t, lr, hp):
    rho, eps = hp["rho"], hp["epsilon"]
    eg2 = rho * s.get("accumulated_grad", np.zeros_like(w)) + (1 - rho) * g ** 2
    edx2 = s.get("accumulated_delta_var", np.zeros_like(w))
    dx = -np.sqrt(edx2 + eps) / np.sqrt(eg2 + eps) * g
    s["accumulated_grad"] = eg2
    s["accumulated_delta_var"] = rho * edx2 + (1 - rho) * dx ** 2
    return w + lr * dx


def ref_adam(w, g, s, t, lr, hp):
    b1, b2 = hp["beta_1"], hp["beta_2"]
    m = b1 * s.get("m", np.zeros_like(w)) + (1 - b1) * g
    v = b2 * s.get("v", np.zeros_like(w)) + (1 - b2) * g ** 2
    s["m"], s["v"] = m, v
    if hp["amsgrad"]:
        v = np.maximum(s.get("v_hat", np.zeros_like(w)), v)
        s["v_hat"] = v
    m_hat = m / (1 - b1 ** t)
    v_hat = v / (1 - b2 ** t)
    # Keras adds epsilon to sqrt(v) before the bias correction: eps_hat = eps / sqrt(1 - b2**t).
    return w - lr * m_hat / (np.sqrt(v_hat) + hp["epsilon"] / math.sqrt(1 - b2 ** t))


REFS = {"sgd": ref_sgd, "fixed": ref_sgd, "momentum": ref_sgd, "adagrad": ref_adagrad,
        "rmsprop": ref_rmsprop, "adadelta": ref_adadelta, "adam": ref_adam, "adamw": ref_adam}


def reference_run(name, kwargs, values, grads_per_step, lrs=None):
    """Values after applying ``grads_per_step`` with the textbook formulas."""
    hp = {**COMMON, **DEFAULTS[name], **kwargs}
    values = [np.array(v, dtype=np.float64) for v in values]
    states = [{} for _ in values]
    for t, grads in enumerate(grads_per_step, start=1):
        lr = hp["lr"] if lrs is None else lrs[t - 1]
        grads = [np.array(g, dtype=np.float64) for g in grads]
        if hp["clipnorm"] is not None:
            grads = [g * hp["clipnorm"] / max(np.sqrt(np.sum(g ** 2)), hp["clipnorm"]) for g in grads]
        if hp["global_clipnorm"] is not None:
            total = np.sqrt(sum(np.sum(g ** 2) for g in grads))
            grads = [g * hp["global_clipnorm"] / max(total, hp["global_clipnorm"]) for g in grads]
        if hp["clipvalue"] is not None:
            grads = [np.minimum(np.maximum(g, -hp["clipvalue"]), hp["clipvalue"]) for g in grads]
        new = []
        for w, g, s in zip(values, grads, states):
            w = w - lr * hp["weight_decay"] * w
            new.append(REFS[name](w, g, s, t, lr, hp))
        values = new
    return values


def make_params(values, dtype=np.float64, prefix="dense_1"):
    names = ["weight", "bias", "extra"]
    return [Param(f"{prefix}/{names[i]}", np.array(v, dtype=dtype)) for i, v in enumerate(values)]


def run(opt, params, grads_per_step):
    for grads in grads_per_step:
        for p, g in zip(params, grads):
            p.grad = np.array(g, dtype=p.value.dtype)
        opt.step(params)


_rng = np.random.default_rng(1234)
W0 = [_rng.normal(size=(3, 4)), _rng.normal(size=(4,))]
# Large first gradients, small later ones: v decreases, so amsgrad's running max matters.
GRADS = [[2.0 * _rng.normal(size=(3, 4)), 2.0 * _rng.normal(size=(4,))],
         [0.1 * _rng.normal(size=(3, 4)), 0.1 * _rng.normal(size=(4,))],
         [0.3 * _rng.normal(size=(3, 4)), 0.3 * _rng.normal(size=(4,))]]

CASES = [
    ("sgd", {}),
    ("fixed", {"lr": 0.3}),
    ("sgd", {"lr": 0.1, "momentum": 0.9}),
    ("sgd", {"lr": 0.1, "momentum": 0.8, "nesterov": True}),
    ("momentum", {}),
    ("momentum", {"nesterov": True}),
    ("adagrad", {}),
    ("adagrad", {"lr": 0.1, "initial_accumulator_value": 0.5, "epsilon": 0.01}),
    ("rmsprop", {}),
    ("rmsprop", {"lr": 0.01, "momentum": 0.5}),
    ("rmsprop", {"centered": True}),
    ("rmsprop", {"lr": 0.01, "centered": True, "momentum": 0.8, "rho": 0.7, "epsilon": 1e-3}),
    ("adadelta", {}),
    ("adadelta", {"lr": 1.0, "rho": 0.9, "epsilon": 1e-3}),
    ("adam", {}),
    ("adam", {"lr": 0.01, "beta_1": 0.5, "beta_2": 0.8, "epsilon": 0.1}),
    ("adam", {"lr": 0.01, "beta_2": 0.5, "amsgrad": True}),
    ("adamw", {}),
    ("adamw", {"lr": 0.05, "weight_decay": 0.1, "amsgrad": True}),
    # decoupled weight decay
    ("sgd", {"lr": 0.1, "weight_decay": 0.5}),
    ("adam", {"lr": 0.1, "weight_decay": 0.2}),
    ("rmsprop", {"lr": 0.1, "weight_decay": 0.1, "momentum": 0.3}),
    ("adagrad", {"lr": 0.1, "weight_decay": 0.3}),
    ("adadelta", {"lr": 1.0, "weight_decay": 0.3}),
    # clipping
    ("sgd", {"lr": 0.1, "clipnorm": 0.5}),
    ("sgd", {"lr": 0.1, "clipnorm": 100.0}),  # norms below the limit: unchanged
    ("adam", {"lr": 0.01, "clipvalue": 0.3}),
    ("sgd", {"lr": 0.1, "momentum": 0.5, "global_clipnorm": 0.7}),
    ("momentum", {"clipnorm": 1.0, "clipvalue": 0.2}),
    ("rmsprop", {"lr": 0.01, "global_clipnorm": 1.5, "clipvalue": 0.4, "weight_decay": 0.1}),
]


@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_matches_textbook_formulas(name, kwargs):
    opt = optimizers.get(name, **kwargs)
    params = make_params(W0)
    for step in range(len(GRADS)):
        run(opt, params, [GRADS[step]])
        expected = reference_run(name, kwargs, W0, GRADS[: step + 1])
        for p, e in zip(params, expected):
            np.testing.assert_allclose(p.value, e, rtol=1e-12, atol=1e-14, err_msg=f"step {step + 1}")
    assert opt.iterations == len(GRADS)
    # The params did move (a wrong test setup could make every case pass trivially).
    assert not np.allclose(params[0].value, W0[0])


def test_amsgrad_and_options_change_the_result():
    # Guards the reference test: these options must matter for the chosen gradients.
    def final(name, **kw):
        return reference_run(name, kw, W0, GRADS)[0]

    def differ(a, b):
        return np.max(np.abs(a - b)) > 1e-4

    assert differ(final("adam", lr=0.01, beta_2=0.5, amsgrad=True), final("adam", lr=0.01, beta_2=0.5))
    assert differ(final("rmsprop", centered=True), final("rmsprop"))
    assert differ(final("sgd", lr=0.1, momentum=0.8, nesterov=True), final("sgd", lr=0.1, momentum=0.8))
    assert differ(final("sgd", lr=0.1, clipnorm=0.5), final("sgd", lr=0.1))
    assert differ(final("sgd", lr=0.1, global_clipnorm=0.7), final("sgd", lr=0.1, clipnorm=0.7))
    assert differ(final("adam", lr=0.01, clipvalue=0.3), final("adam", lr=0.01))
    assert differ(final("adam", lr=0.1, weight_decay=0.2), final("adam", lr=0.1))
    assert differ(final("adam", epsilon=0.1, lr=0.01), final("adam", lr=0.01))


def test_nesterov_first_step_by_hand():
    # velocity = -lr*g = -0.2; p = 1 + 0.9 * (-0.2) - 0.2 = 0.62
    p = Param("w/x", np.array([1.0]))
    p.grad = np.array([2.0])
    SGD(lr=0.1, momentum=0.9, nesterov=True).step([p])
    np.testing.assert_allclose(p.value, [0.62], rtol=1e-15)


def test_adam_first_step_is_lr_times_sign():
    # With m = (1-b1) g and v = (1-b2) g^2 the bias-corrected step is lr * g/|g| (eps aside).
    p = Param("w/x", np.array([1.0, -1.0, 0.5]))
    p.grad = np.array([3.0, -0.02, 1e3])
    Adam(lr=0.01, epsilon=1e-12).step([p])
    np.testing.assert_allclose(p.value, [0.99, -0.99, 0.49], rtol=1e-9)


def test_defaults_follow_keras():
    for name, defaults in DEFAULTS.items():
        cfg = optimizers.get(name).get_config()
        expected = {**COMMON, **defaults}
        assert cfg == expected, name


# ---------------------------------------------------------------------- behaviour
A = np.array([1.0, 10.0, 0.5, 3.0])
X0 = np.array([1.0, -2.0, 3.0, 0.5])


def quadratic(x):
    return 0.5 * float(np.sum(A * x ** 2))


@pytest.mark.parametrize("name", optimizers.registry.names())
def test_defaults_decrease_a_quadratic(name):
    opt = optimizers.get(name)
    p = Param("q/x", X0.copy())
    losses = [quadratic(p.value)]
    for _ in range(100):
        p.grad = A * p.value
        opt.step([p])
        losses.append(quadratic(p.value))
    assert losses[-1] < losses[0]
    if name != "momentum":  # heavy-ball momentum overshoots by design; the others descend monotonically
        assert all(b < a for a, b in zip(losses, losses[1:])), name


@pytest.mark.parametrize("name,kwargs,factor", [
    ("sgd", {"lr": 0.05}, 1e-2), ("momentum", {}, 1e-3), ("adagrad", {"lr": 0.5}, 1e-3),
    ("rmsprop", {"lr": 0.05}, 1e-2), ("rmsprop", {"lr": 0.05, "centered": True, "momentum": 0.5}, 1e-3),
    ("adadelta", {"lr": 1.0}, 0.95), ("adam", {"lr": 0.1}, 1e-2), ("adamw", {"lr": 0.1}, 1e-2),
    ("sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True}, 1e-3),
    ("radam", {"lr": 0.3}, 1e-3), ("nadam", {"lr": 0.1}, 1e-2),
    ("lion", {"lr": 0.05}, 0.05),  # fixed-size sign steps: it ends oscillating within lr of the minimum
])
def test_tuned_optimizers_minimise_a_quadratic(name, kwargs, factor):
    opt = optimizers.get(name, **kwargs)
    p = Param("q/x", X0.copy())
    for _ in range(100):
        p.grad = A * p.value
        opt.step([p])
    assert quadratic(p.value) < factor * quadratic(X0)


ALL_CONFIGS = [
    ("sgd", {}), ("sgd", {"momentum": 0.9, "nesterov": True}), ("momentum", {}), ("adagrad", {}),
    ("rmsprop", {}), ("rmsprop", {"momentum": 0.9, "centered": True}), ("adadelta", {}),
    ("adam", {}), ("adam", {"amsgrad": True}), ("adamw", {}),
    ("adam", {"clipnorm": 0.1, "clipvalue": 0.01, "weight_decay": 0.1}),
    ("sgd", {"global_clipnorm": 0.1, "clipvalue": 0.01}),
    ("radam", {}), ("nadam", {}), ("lion", {"weight_decay": 0.1}),
]
EXPECTED_KEYS = {
    ("sgd", ()): set(), ("sgd", ("momentum", "nesterov")): {"velocity"}, ("momentum", ()): {"velocity"},
    ("adagrad", ()): {"accumulator"}, ("rmsprop", ()): {"velocity"},
    ("rmsprop", ("centered", "momentum")): {"velocity", "momentum", "average_gradient"},
    ("adadelta", ()): {"accumulated_grad", "accumulated_delta_var"}, ("adam", ()): {"m", "v"},
    ("adam", ("amsgrad",)): {"m", "v", "v_hat"}, ("adamw", ()): {"m", "v"},
    ("adam", ("clipnorm", "clipvalue", "weight_decay")): {"m", "v"},
    ("sgd", ("clipvalue", "global_clipnorm")): set(),
    ("radam", ()): {"m", "v"}, ("nadam", ()): {"m", "v"}, ("lion", ("weight_decay",)): {"m"},
}


@pytest.mark.parametrize("name,kwargs", ALL_CONFIGS, ids=[f"{n}-{k}" for n, k in ALL_CONFIGS])
def test_float32_stays_float32_and_state_layout(name, kwargs):
    rng = np.random.default_rng(0)
    params = make_params([rng.normal(size=(5, 3)), rng.normal(size=(3,))], dtype=np.float32)
    grads = [[rng.normal(size=(5, 3)), rng.normal(size=(3,))] for _ in range(3)]
    opt = optimizers.get(name, **kwargs)
    assert opt.state == {}  # created lazily
    run(opt, params, grads)
    for p in params:
        assert p.value.dtype == np.float32
        st = opt.state[p.name]
        assert set(st) == EXPECTED_KEYS[(name, tuple(sorted(kwargs)))]
        for arr in st.values():
            assert arr.shape == p.shape and arr.dtype == np.float32
    # float64 params get float64 state.
    params64 = make_params([rng.normal(size=(5, 3)), rng.normal(size=(3,))], dtype=np.float64)
    opt64 = optimizers.get(name, **kwargs)
    run(opt64, params64, grads)
    for p in params64:
        assert p.value.dtype == np.float64
        assert all(arr.dtype == np.float64 for arr in opt64.state[p.name].values())


def test_float32_follows_float64_reference():
    params = make_params(W0, dtype=np.float32)
    opt = Adam(lr=0.01, amsgrad=True, clipnorm=1.0)
    run(opt, params, GRADS)
    expected = reference_run("adam", {"lr": 0.01, "amsgrad": True, "clipnorm": 1.0}, W0, GRADS)
    for p, e in zip(params, expected):
        assert p.value.dtype == np.float32
        np.testing.assert_allclose(p.value, e, rtol=1e-5, atol=1e-6)


def test_state_is_allocated_once():
    params = make_params(W0)
    opt = RMSProp(momentum=0.5, centered=True, clipnorm=1.0)
    run(opt, params, GRADS[:1])
    ids = {name: {k: id(a) for k, a in st.items()} for name, st in opt.state.items()}
    run(opt, params, GRADS[1:])
    assert ids == {name: {k: id(a) for k, a in st.items()} for name, st in opt.state.items()}


def test_skips_frozen_params_and_missing_grads():
    frozen = Param("dense_1/weight", W0[0].copy(), trainable=False)
    frozen.grad = GRADS[0][0].copy()
    no_grad = Param("dense_1/bias", W0[1].copy())
    live = Param("dense_2/weight", W0[0].copy())
    live.grad = GRADS[0][0].copy()
    opt = Adam(lr=0.1, weight_decay=0.5)
    opt.step([frozen, no_grad, live])
    np.testing.assert_array_equal(frozen.value, W0[0])
    np.testing.assert_array_equal(no_grad.value, W0[1])
    assert not np.allclose(live.value, W0[0])
    assert set(opt.state) == {"dense_2/weight"}
    assert opt.iterations == 1


@pytest.mark.parametrize("kwargs", [{"clipnorm": 0.5}, {"clipvalue": 0.1}, {"global_clipnorm": 0.5},
                                    {"clipnorm": 0.5, "clipvalue": 0.1}])
@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop"])
def test_clipping_leaves_grad_untouched(name, kwargs):
    params = make_params(W0)
    grads = [g.copy() for g in GRADS[0]]
    for p, g in zip(params, grads):
        p.grad = g
    optimizers.get(name, **kwargs).step(params)
    for p, g in zip(params, GRADS[0]):
        assert p.grad is not None
        np.testing.assert_array_equal(p.grad, g)


def test_accepts_a_generator_of_params():
    params = make_params(W0)
    for p, g in zip(params, GRADS[0]):
        p.grad = g
    SGD(lr=0.1, global_clipnorm=0.5).step(p for p in params)
    expected = reference_run("sgd", {"lr": 0.1, "global_clipnorm": 0.5}, W0, GRADS[:1])
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p.value, e, rtol=1e-12)


def test_grad_shape_mismatch_and_duplicate_names():
    p = Param("dense_1/weight", np.zeros((3, 4)))
    p.grad = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"Adam: param 'dense_1/weight' has shape \(3, 4\) but its grad"):
        Adam().step([p])
    a, b = Param("x/w", np.zeros(2)), Param("x/w", np.zeros(2))
    a.grad = b.grad = np.ones(2)
    with pytest.raises(ValueError, match=r"several params are named \['x/w'\]"):
        SGD().step([a, b])


def test_state_of_another_model_is_rejected():
    opt = Adam()
    p = Param("dense_1/weight", np.zeros((3, 4)))
    p.grad = np.ones((3, 4))
    opt.step([p])
    q = Param("dense_1/weight", np.zeros((4, 4)))
    q.grad = np.ones((4, 4))
    with pytest.raises(ValueError, match=r"state 'm' of param 'dense_1/weight' has shape \(3, 4\)"):
        opt.step([q])


# ---------------------------------------------------------------------- checkpoints
ROUND_TRIP = [
    ("sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True}), ("adagrad", {"lr": 0.1}),
    ("rmsprop", {"lr": 0.01, "momentum": 0.5, "centered": True}), ("adadelta", {"lr": 1.0}),
    ("adam", {"lr": 0.05, "amsgrad": True, "clipnorm": 1.0}), ("adamw", {"lr": 0.05}),
    ("radam", {"lr": 0.05, "beta_2": 0.9}), ("nadam", {"lr": 0.05}), ("lion", {"lr": 0.01, "weight_decay": 0.1}),
]


@pytest.mark.parametrize("name,kwargs", ROUND_TRIP, ids=[n for n, _ in ROUND_TRIP])
def test_get_state_set_state_continues_identically(name, kwargs):
    def train(opt, params, steps):
        for _ in range(steps):
            params[0].grad = A * params[0].value
            params[1].grad = np.cos(params[1].value)
            opt.step(params)

    start = [X0.copy(), np.array([0.3, -0.7])]
    params = make_params(start, dtype=np.float32)
    opt = optimizers.get(name, **kwargs)
    train(opt, params, 3)
    snapshot = opt.get_state()
    saved_values = [p.value.copy() for p in params]
    train(opt, params, 4)  # the uninterrupted run

    # get_state returned copies: later steps did not change the snapshot.
    assert snapshot["iterations"] == 3
    assert any(not np.array_equal(snapshot["state"]["dense_1/weight"][k], opt.state["dense_1/weight"][k])
               for k in snapshot["state"]["dense_1/weight"])

    resumed = optimizers.registry.deserialize(optimizers.serialize(optimizers.get(name, **kwargs)))
    resumed.set_state(snapshot)
    params2 = make_params(saved_values, dtype=np.float32)
    train(resumed, params2, 4)
    assert resumed.iterations == opt.iterations == 7
    for p, q in zip(params, params2):
        np.testing.assert_array_equal(p.value, q.value)
    # set_state copied the arrays: the snapshot is still the step-3 state.
    assert snapshot["iterations"] == 3
    assert not np.shares_memory(snapshot["state"]["dense_1/weight"][next(iter(snapshot["state"]["dense_1/weight"]))],
                                resumed.state["dense_1/weight"][next(iter(resumed.state["dense_1/weight"]))])


def _trained_adam():
    opt = Adam()
    params = make_params(W0)
    run(opt, params, GRADS[:1])
    return opt, params


def test_set_state_errors():
    opt, params = _trained_adam()
    good = opt.get_state()
    with pytest.raises(ValueError, match=r"Adam.set_state expects the dict returned by get_state\(\)"):
        opt.set_state({"state": {}})
    with pytest.raises(ValueError, match=r"Adam.set_state: 'iterations' must be an integer >= 0, got -1"):
        opt.set_state({**good, "iterations": -1})
    bad_keys = {"iterations": 1, "state": {**good["state"], "dense_1/bias": {"m": np.zeros(4)}}}
    with pytest.raises(ValueError, match=r"state of param 'dense_1/bias' must have keys \['m', 'v'\]"):
        opt.set_state(bad_keys)
    missing = {"iterations": 1, "state": {"dense_1/weight": good["state"]["dense_1/weight"]}}
    with pytest.raises(ValueError, match=r"param names do not match.*missing \['dense_1/bias'\], unexpected \[\]"):
        opt.set_state(missing)
    wrong_shape = {"iterations": 1, "state": {**good["state"],
                                              "dense_1/bias": {"m": np.zeros(5), "v": np.zeros(5)}}}
    with pytest.raises(ValueError, match=r"state 'm' of param 'dense_1/bias' has shape \(5,\), expected \(4,\)"):
        opt.set_state(wrong_shape)
    # A fresh optimizer cannot check shapes until it sees the params: the first step does.
    fresh = Adam()
    fresh.set_state(wrong_shape)
    with pytest.raises(ValueError, match=r"has shape \(5,\) but the param has shape \(4,\)"):
        run(fresh, make_params(W0), GRADS[:1])
    # A differently configured optimizer (amsgrad needs v_hat).
    with pytest.raises(ValueError, match=r"must have keys \['m', 'v', 'v_hat'\]"):
        Adam(amsgrad=True).set_state(good)


# ---------------------------------------------------------------------- hyper-parameters
@pytest.mark.parametrize("make,match", [
    (lambda: SGD(lr=-0.1), r"SGD: lr must be a finite number >= 0, got -0.1"),
    (lambda: Adam(lr=float("nan")), r"Adam: lr must be a finite number >= 0, got nan"),
    (lambda: Adam(lr="fast"), r"Adam: lr must be a number >= 0 or a callable schedule .* got str 'fast'"),
    (lambda: Adam(beta_1=1.0),
     r"Adam: beta_1 must be a finite number in \[0, 1\), got 1.0\. The default is beta_1=0.9"),
    (lambda: AdamW(beta_2=-0.5), r"AdamW: beta_2 must be a finite number in \[0, 1\), got -0.5"),
    (lambda: SGD(momentum=1.5), r"SGD: momentum must be a finite number in \[0, 1\], got 1.5"),
    (lambda: Momentum(momentum=-0.1), r"Momentum: momentum must be .* in \[0, 1\].* default is momentum=0.9"),
    (lambda: RMSProp(momentum=2), r"RMSProp: momentum must be a finite number in \[0, 1\], got 2"),
    (lambda: RMSProp(rho=1.0), r"RMSProp: rho must be a finite number in \[0, 1\), got 1.0"),
    (lambda: RMSProp(epsilon=0), r"RMSProp: epsilon must be a finite number > 0, got 0"),
    (lambda: Adadelta(epsilon=-1e-7), r"Adadelta: epsilon must be a finite number > 0, got -1e-07"),
    (lambda: Adagrad(initial_accumulator_value=-1), r"Adagrad: initial_accumulator_value must be .*>= 0, got -1"),
    (lambda: Adam(weight_decay=-0.01), r"Adam: weight_decay must be a finite number >= 0, got -0.01"),
    (lambda: Adam(clipnorm=-1.0), r"Adam: clipnorm must be a finite number > 0 \(or None to disable it\), got -1.0"),
    (lambda: SGD(clipvalue=-0.5), r"SGD: clipvalue must be a finite number > 0 \(or None to disable it\), got -0.5"),
    (lambda: SGD(global_clipnorm=0), r"SGD: global_clipnorm must be a finite number > 0"),
    (lambda: SGD(clipnorm=1.0, global_clipnorm=1.0), r"SGD: set at most one of clipnorm .* and global_clipnorm"),
    (lambda: Adam(beta_1="0.9"), r"Adam: beta_1 must be a finite number in \[0, 1\), got str '0.9'\. The default is beta_1=0.9"),
    (lambda: Adam(amsgrad="yes"), r"Adam: amsgrad must be True or False, got str 'yes'"),
    (lambda: SGD(nesterov=1), r"SGD: nesterov must be True or False, got int 1"),
])
def test_invalid_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_wrong_types_are_also_type_errors():
    with pytest.raises(TypeError):
        Adam(lr="fast")
    with pytest.raises(TypeError):
        RMSProp(centered=None)


def test_lr_can_be_set_and_is_validated():
    opt = SGD(lr=0.1)
    opt.lr = 0.5
    assert opt.lr == 0.5 and opt.current_lr == 0.5
    with pytest.raises(ValueError, match=r"SGD: lr must be a finite number >= 0, got -1"):
        opt.lr = -1
    weight_decay_none = Adam(weight_decay=None)
    assert weight_decay_none.weight_decay == 0.0


# ---------------------------------------------------------------------- registry
def test_get_by_name_alias_instance_and_config():
    assert type(optimizers.get("adam")) is Adam
    assert type(optimizers.get("ADAM")) is Adam
    assert type(optimizers.get("Fixed")) is SGD
    assert Fixed is SGD
    assert type(optimizers.get("RMSprop")) is RMSProp
    assert type(optimizers.get("AdamW")) is AdamW
    m = optimizers.get("momentum")
    assert type(m) is Momentum and m.momentum == 0.9 and isinstance(m, SGD)
    opt = Adam(lr=0.1)
    assert optimizers.get(opt) is opt
    assert optimizers.get("adam", lr=0.2).lr == 0.2
    assert optimizers.get(RMSProp).rho == 0.9
    for name, _ in CASES:
        o = optimizers.get(name)
        clone = optimizers.registry.deserialize(optimizers.serialize(o))
        assert type(clone) is type(o) and clone.get_config() == o.get_config()
    assert repr(Adam()).startswith("Adam(lr=0.001, weight_decay=0.0, beta_1=0.9")


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"Unknown optimizer 'adamx'\. Valid optimizer names: adadelta, adagrad, "
                                         r"adam, adamw, fixed, lion, momentum, nadam, radam, rmsprop, sgd\."):
        optimizers.get("adamx")
    with pytest.raises(TypeError, match=r"None is not an optimizer"):
        optimizers.get(None)


def test_every_registered_class_is_an_optimizer():
    assert set(optimizers.registry.names()) == {"sgd", "momentum", "adagrad", "rmsprop", "adadelta", "adam", "adamw",
                                                  "radam", "nadam", "lion"}
    for cls in optimizers.registry.classes().values():
        assert issubclass(cls, Optimizer)


# ---------------------------------------------------------------------- schedules
def test_callable_lr_uses_the_step_count():
    def schedule(step):
        return 0.1 / (1 + step)

    opt = Adam(lr=lambda step: 0.1 / (1 + step))
    params = make_params(W0)
    seen = []
    for step in range(3):
        seen.append(opt.current_lr)
        run(opt, params, [GRADS[step]])
    np.testing.assert_allclose(seen, [0.1, 0.05, 0.1 / 3], rtol=1e-15)
    lrs = [schedule(t) for t in range(3)]
    expected = reference_run("adam", {}, W0, GRADS, lrs=lrs)
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p.value, e, rtol=1e-12, atol=1e-14)
    # A constant lr of the first value gives a different result: the schedule was really used.
    assert not np.allclose(reference_run("adam", {"lr": 0.1}, W0, GRADS)[0], expected[0])


def test_callable_lr_drives_weight_decay_and_resumes_from_iterations():
    opt = SGD(lr=lambda step: 0.1 * (step + 1), weight_decay=0.5)
    params = make_params(W0)
    run(opt, params, GRADS)
    expected = reference_run("sgd", {"weight_decay": 0.5}, W0, GRADS, lrs=[0.1, 0.2, 0.3])
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p.value, e, rtol=1e-12)
    opt.set_state({"iterations": 9, "state": opt.get_state()["state"]})
    assert opt.current_lr == pytest.approx(1.0)


def test_bad_schedule_values():
    p = Param("w/x", np.ones(2))
    p.grad = np.ones(2)
    with pytest.raises(ValueError, match=r"SGD: the lr schedule .* returned -1.0 at step 0"):
        SGD(lr=lambda step: -1.0).step([p])
    with pytest.raises(TypeError, match=r"returned 'x' at step 0"):
        SGD(lr=lambda step: "x").step([p])
    np.testing.assert_array_equal(p.value, [1.0, 1.0])
