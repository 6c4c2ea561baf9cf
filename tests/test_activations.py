"""Activations: gradients, values against independent formulas, extremes, dtypes, lookup."""
import math

import numpy as np
import pytest

from cutedl import activations, testing
from cutedl.activations import ActivationFunction

NAMES = activations.registry.names()

# Kinks: relu-likes at 0, hard_sigmoid at +-3. Keep inputs |x| in [0.1, 2.8] so every central
# difference (eps = 1e-6) stays on one smooth piece.
_rs = np.random.default_rng(7)
X_SAFE = _rs.uniform(0.1, 2.8, size=(4, 6)) * _rs.choice([-1.0, 1.0], size=(4, 6))


def _sigmoid_ref(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))


SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946

# Independent scalar formulas (math module, one element at a time).
SCALAR_REF = {
    "linear": lambda v: v,
    "relu": lambda v: max(v, 0.0),
    "leaky_relu": lambda v: v if v > 0 else 0.2 * v,
    "elu": lambda v: v if v > 0 else math.exp(v) - 1.0,
    "selu": lambda v: SELU_SCALE * (v if v > 0 else SELU_ALPHA * (math.exp(v) - 1.0)),
    "sigmoid": _sigmoid_ref,
    "hard_sigmoid": lambda v: min(max(v + 3.0, 0.0), 6.0) / 6.0,
    "tanh": math.tanh,
    "softplus": lambda v: math.log1p(math.exp(v)) if v < 30 else v + math.log1p(math.exp(-v)),
    "softsign": lambda v: v / (1.0 + abs(v)),
    "swish": lambda v: v * _sigmoid_ref(v),
    "gelu": lambda v: 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))),
}


def _softmax_ref(row):
    m = max(row)
    e = [math.exp(v - m) for v in row]
    s = sum(e)
    return [v / s for v in e]


def _apply_ref(name, x):
    if name == "softmax":
        return np.array([_softmax_ref(list(r)) for r in np.asarray(x, np.float64).reshape(-1, x.shape[-1])]
                        ).reshape(x.shape)
    f = SCALAR_REF[name]
    return np.array([f(float(v)) for v in np.asarray(x).reshape(-1)]).reshape(x.shape)


# ---------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("name", NAMES)
def test_gradient_check_every_activation(name):
    report = testing.check_gradients(name, x=X_SAFE)
    assert report["input"] < 1e-6


@pytest.mark.parametrize("name", NAMES)
def test_gradient_check_wide_inputs(name):
    # Larger magnitudes exercise the tails (exp(-|x|) branches, the erfc fit); kinks avoided.
    x = np.array([[-9.5, -6.2, -3.7, -1.3, 0.4, 2.2, 3.6, 7.4, 11.9]])
    testing.check_gradients(name, x=x)


@pytest.mark.parametrize("options", [{"negative_slope": 0.05}, {"negative_slope": 1.7}])
def test_gradient_check_leaky_relu_options(options):
    testing.check_gradients(activations.LeakyReLU(**options), x=X_SAFE)


@pytest.mark.parametrize("act", [activations.ELU(alpha=0.3), activations.Softmax(axis=0),
                                 activations.GELU(approximate=True)])
def test_gradient_check_options(act):
    testing.check_gradients(act, x=X_SAFE)


# ---------------------------------------------------------------------------- values


@pytest.mark.parametrize("name", NAMES)
def test_forward_matches_independent_formula(name):
    x = np.concatenate([X_SAFE.reshape(-1), [-40.0, -12.0, -3.0, -0.5, 0.0, 0.5, 3.0, 12.0, 40.0]])
    x = x.reshape(3, -1)
    got = activations.get(name).forward(x)
    np.testing.assert_allclose(got, _apply_ref(name, x), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", NAMES)
def test_forward_float32_close_to_float64_reference(name):
    x = np.linspace(-9.0, 9.0, 73).reshape(1, -1)
    got = activations.get(name).forward(x.astype(np.float32))
    np.testing.assert_allclose(got, _apply_ref(name, x.astype(np.float32)), rtol=2e-6, atol=2e-6)


def test_gelu_tanh_approximation_values():
    x = np.linspace(-6, 6, 49)
    c = math.sqrt(2 / math.pi)
    want = [0.5 * v * (1 + math.tanh(c * (v + 0.044715 * v ** 3))) for v in x]
    np.testing.assert_allclose(activations.GELU(approximate=True).forward(x), want, rtol=1e-12, atol=1e-15)


def test_gelu_exact_lower_tail_is_relatively_accurate():
    # Phi(-10) ~ 7.6e-24: 1 + erf(...) would lose it all; x * erfc(-x / sqrt 2) / 2 keeps it.
    x = np.array([-5.0, -10.0, -20.0, -30.0])
    want = [0.5 * v * math.erfc(-v / math.sqrt(2)) for v in x]
    np.testing.assert_allclose(activations.get("gelu").forward(x), want, rtol=1e-11)


def test_softmax_axis_option():
    x = np.arange(6.0).reshape(2, 3)
    y = activations.Softmax(axis=0).forward(x)
    e = np.exp(x - x.max(axis=0))
    np.testing.assert_allclose(y, e / e.sum(axis=0), rtol=1e-14)
    np.testing.assert_allclose(y.sum(axis=0), 1.0)


def test_leaky_relu_and_elu_options_values():
    x = np.array([-2.0, -0.5, 0.0, 1.5])
    np.testing.assert_allclose(activations.LeakyReLU(negative_slope=0.1).forward(x), [-0.2, -0.05, 0.0, 1.5])
    np.testing.assert_allclose(activations.LeakyReLU(negative_slope=2.0).forward(x), [-4.0, -1.0, 0.0, 1.5])
    np.testing.assert_allclose(activations.ELU(alpha=0.5).forward(x),
                               [0.5 * (math.exp(-2) - 1), 0.5 * (math.exp(-0.5) - 1), 0.0, 1.5])


def test_hard_sigmoid_keras3_definition():
    x = np.array([-5.0, -3.0, -1.5, 0.0, 1.5, 3.0, 5.0])
    np.testing.assert_allclose(activations.get("hard_sigmoid").forward(x),
                               [0, 0, 0.25, 0.5, 0.75, 1, 1], atol=1e-15)


# ---------------------------------------------------------------------------- extreme inputs


EXTREMES = np.array([-3e38, -1e30, -1e4, -100.0, -1.0, 0.0, 1.0, 100.0, 1e4, 1e30, 3e38], dtype=np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", NAMES)
def test_extreme_inputs_are_finite_without_warnings(name, dtype):
    # pytest runs with -W error::RuntimeWarning, so an overflow in exp fails here.
    act = activations.get(name)
    x = EXTREMES.astype(dtype).reshape(1, -1)
    y = act.forward(x)
    g = act.backward(x, y, np.ones_like(y))
    assert y.dtype == dtype and g.dtype == dtype
    assert np.all(np.isfinite(y)), y
    assert np.all(np.isfinite(g)), g


def test_extreme_limits_float32():
    x = np.array([-1e4, 1e4, -1e30, 1e30], dtype=np.float32)
    sig = activations.get("sigmoid").forward(x)
    np.testing.assert_array_equal(sig, [0, 1, 0, 1])
    relu_x = np.array([0, 1e4, 0, 1e30], dtype=np.float32)  # the float32 roundings of the limits
    np.testing.assert_array_equal(activations.get("tanh").forward(x), [-1, 1, -1, 1])
    np.testing.assert_array_equal(activations.get("softplus").forward(x), relu_x)
    np.testing.assert_allclose(activations.get("softsign").forward(x), [-1 + 1e-4, 1 - 1e-4, -1, 1], rtol=1e-7)
    np.testing.assert_array_equal(activations.get("gelu").forward(x), relu_x)
    np.testing.assert_array_equal(activations.GELU(approximate=True).forward(x), relu_x)
    np.testing.assert_array_equal(activations.get("swish").forward(x), relu_x)
    np.testing.assert_array_equal(activations.get("elu").forward(x), relu_x - (relu_x == 0))
    np.testing.assert_array_equal(activations.get("hard_sigmoid").forward(x), [0, 1, 0, 1])
    # gradients in the tails: sigmoid' = 0, softplus' = sigmoid, swish' = step, gelu' = step
    ones = np.ones_like(x)
    for name, want in [("sigmoid", [0, 0, 0, 0]), ("softplus", [0, 1, 0, 1]), ("swish", [0, 1, 0, 1]),
                       ("gelu", [0, 1, 0, 1]), ("tanh", [0, 0, 0, 0])]:
        act = activations.get(name)
        np.testing.assert_array_equal(np.abs(act.backward(x, act.forward(x), ones)), want, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_extreme_rows(dtype):
    x = np.array([[1e4, -1e4, 0.0], [3e38, -3e38, 0.0], [-3e38, -3e38, -3e38], [1e30, 1e30, -1e30]], dtype=dtype)
    y = activations.get("softmax").forward(x)
    assert y.dtype == dtype
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(y, [[1, 0, 0], [1, 0, 0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0]], atol=1e-7)


def test_softmax_is_shift_invariant_and_sums_to_one():
    x = np.random.default_rng(0).standard_normal((5, 7))
    sm = activations.get("softmax")
    np.testing.assert_allclose(sm.forward(x), sm.forward(x + 1000.0), rtol=1e-12)
    np.testing.assert_allclose(sm.forward(x).sum(axis=-1), 1.0, rtol=1e-14)


# ---------------------------------------------------------------------------- dtypes and purity


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", NAMES)
def test_dtype_preserved_and_inputs_untouched(name, dtype):
    act = activations.get(name)
    x = X_SAFE.astype(dtype)
    grad = np.full_like(x, 0.5)
    x0, g0 = x.copy(), grad.copy()
    y = act.forward(x)
    dx = act.backward(x, y, grad)
    assert y.dtype == dtype and dx.dtype == dtype
    assert y.shape == x.shape and dx.shape == x.shape
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(grad, g0)


def test_integer_input_becomes_floatx():
    y = activations.get("relu").forward(np.array([-2, 3]))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, [0.0, 3.0])


# ---------------------------------------------------------------------------- lookup and config


def test_get_names_aliases_case_instances_none():
    assert isinstance(activations.get("ReLU"), activations.ReLU)
    assert isinstance(activations.get("SiLU"), activations.Swish)
    assert isinstance(activations.get("swish"), activations.Swish)
    assert isinstance(activations.get("identity"), activations.Linear)
    assert isinstance(activations.get("Leaky-ReLU"), activations.LeakyReLU)
    assert isinstance(activations.get(None), activations.Linear)
    assert activations.get(None).is_linear and not activations.get("relu").is_linear
    act = activations.GELU(approximate=True)
    assert activations.get(act) is act
    assert isinstance(activations.get(activations.Tanh), activations.Tanh)


def test_get_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"Unknown activation 'rleu'.*relu.*softmax"):
        activations.get("rleu")


def test_get_wrong_type():
    with pytest.raises(TypeError, match="activation"):
        activations.get(3.5)


@pytest.mark.parametrize("name", NAMES)
def test_serialize_round_trip(name):
    act = activations.get(name)
    assert activations.get(activations.serialize(act)) == act
    assert activations.registry.deserialize(activations.registry.serialize(act)) == act


@pytest.mark.parametrize("act", [activations.LeakyReLU(negative_slope=0.1), activations.ELU(alpha=0.5),
                                 activations.Softmax(axis=0), activations.GELU(approximate=True)])
def test_options_round_trip(act):
    cfg = activations.serialize(act)
    assert isinstance(cfg, dict)
    back = activations.get(cfg)
    assert back == act and back.get_config() == act.get_config()


def test_serialize_default_options_gives_name():
    assert activations.serialize(activations.Softmax()) == "softmax"
    assert activations.serialize(activations.get("silu")) == "swish"


@pytest.mark.parametrize("bad, err, match", [
    (dict(negative_slope=-0.1), ValueError, "negative_slope must be a finite number >= 0, got -0.1. Use a slope"),
    (dict(negative_slope="big"), TypeError, "negative_slope must be a finite number >= 0, got str"),
    (dict(negative_slope=float("nan")), ValueError, "finite"),
])
def test_leaky_relu_bad_options(bad, err, match):
    with pytest.raises(err, match=match):
        activations.LeakyReLU(**bad)


def test_other_bad_options():
    with pytest.raises(TypeError, match="approximate must be True or False"):
        activations.GELU(approximate="yes")
    with pytest.raises(TypeError, match="axis must be an int"):
        activations.Softmax(axis=1.0)
    with pytest.raises(TypeError, match="alpha must be a finite number, got NoneType None"):
        activations.ELU(alpha=None)


def test_every_registered_activation_is_an_activation():
    for name, cls in activations.registry.classes().items():
        assert issubclass(cls, ActivationFunction), name
        assert cls().registry_name == name
