"""KLDivergence and CategoricalFocalCrossentropy: values and gradients against PyTorch (float64).

References: ``torch.nn.functional.kl_div`` (reduction='batchmean', on log-probabilities) for the
KL divergence, and the focal loss written out in torch ops (Keras 3's definition), both
differentiated by torch's autograd. Plus hand values, masks, the Session's fusion with softmax
and the option errors.
"""
import math

import numpy as np
import pytest

from cutedl import Model, Session, layers, losses

torch = pytest.importorskip("torch")
F = torch.nn.functional

EPS = 1e-7


def softmax64(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def ours(loss, y, x):
    value = loss(y, x)
    return value, loss.backward()


def torch_value_and_grad(fn, x):
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    value = fn(xt)
    value.backward()
    return value.item(), xt.grad.numpy()


def torch_kl(y, from_logits, temperature=1.0):
    """Keras' KL: both sides clipped to [1e-7, 1]; torch's kl_div takes log q and the target p."""
    target = torch.tensor(np.clip(y, EPS, 1.0)).reshape(-1, y.shape[-1])

    def fn(xt):
        x2 = xt.reshape(-1, y.shape[-1])  # (batch * T, classes): batchmean then means over steps too
        logq = F.log_softmax(x2 / temperature, dim=-1) if from_logits else torch.log(torch.clamp(x2, EPS, 1.0))
        return F.kl_div(logq, target, reduction="batchmean") * temperature ** 2

    return fn


def torch_focal(y, alpha, gamma, from_logits, label_smoothing):
    """Keras 3's categorical_focal_crossentropy written out in torch."""
    classes = y.shape[-1]
    t = torch.tensor(y) * (1 - label_smoothing) + label_smoothing / classes

    def fn(xt):
        p = torch.softmax(xt, dim=-1) if from_logits else xt
        p = p / p.sum(dim=-1, keepdim=True)
        p = torch.clamp(p, EPS, 1 - EPS)
        per_sample = (alpha * (1 - p) ** gamma * -t * torch.log(p)).sum(dim=-1)
        return per_sample.mean()

    return fn


# --- KL divergence ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(6, 5), (3, 4, 6)])
@pytest.mark.parametrize("from_logits,temperature", [(False, 1.0), (True, 1.0), (True, 0.7), (True, 4.0)])
def test_kl_divergence_matches_torch(shape, from_logits, temperature):
    rs = np.random.default_rng(0)
    z = rs.standard_normal(shape) * 2
    x = z if from_logits else softmax64(z)
    y = softmax64(rs.standard_normal(shape) * 2)
    y[0, ..., 0] = 0.0  # a zero target: clipped to 1e-7 (Keras), not dropped
    y[0] /= y[0].sum(axis=-1, keepdims=True)
    value, grad = ours(losses.KLDivergence(from_logits=from_logits, temperature=temperature), y, x)
    ref_value, ref_grad = torch_value_and_grad(torch_kl(y, from_logits, temperature), x)
    assert value == pytest.approx(ref_value, rel=1e-12, abs=1e-15)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-15)


def test_kl_divergence_hand_values():
    # KL([0.5, 0.5] || [0.25, 0.75]) = 0.5 log 2 + 0.5 log(2/3)
    value = losses.get("kld")(np.array([[0.5, 0.5]]), np.array([[0.25, 0.75]]))
    assert value == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3), rel=1e-12)
    # identical distributions: 0; a one-hot target against uniform: log(classes) (plus the clipped zeros)
    p = np.array([[0.2, 0.3, 0.5]])
    assert losses.KLDivergence()(p, p) == pytest.approx(0.0, abs=1e-15)
    one_hot = np.array([[1.0, 0.0, 0.0, 0.0]])
    expected = math.log(4) + 3 * EPS * math.log(EPS / 0.25)
    assert losses.KLDivergence()(one_hot, np.full((1, 4), 0.25)) == pytest.approx(expected, rel=1e-12)


def test_kl_divergence_temperature_scales_like_distillation():
    # T^2 * KL(y || softmax(z / T)) as written out; from_logits=True, T=1 equals the probability form
    rs = np.random.default_rng(1)
    z, y = rs.standard_normal((4, 3)), softmax64(rs.standard_normal((4, 3)))
    q = softmax64(z / 3.0)
    expected = 9.0 * np.mean(np.sum(y * np.log(y / q), axis=-1))
    assert losses.KLDivergence(from_logits=True, temperature=3.0)(y, z) == pytest.approx(expected, rel=1e-12)
    assert losses.KLDivergence(from_logits=True)(y, z) == pytest.approx(losses.KLDivergence()(y, softmax64(z)),
                                                                        rel=1e-12)


def test_kl_divergence_extreme_logits_are_finite():
    z = np.array([[1e4, -1e4, 0.0]])
    y = np.array([[0.0, 1.0, 0.0]])
    loss = losses.KLDivergence(from_logits=True)
    value = loss(y, z)
    assert value == pytest.approx(2e4, rel=1e-6) and np.all(np.isfinite(loss.backward()))


# --- focal crossentropy -----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(7, 4), (2, 3, 5)])
@pytest.mark.parametrize("alpha,gamma,from_logits,ls", [
    (0.25, 2.0, False, 0.0), (0.25, 2.0, True, 0.0), (1.0, 0.0, False, 0.0), (0.6, 0.5, True, 0.1),
    (0.4, 3.0, False, 0.2)])
def test_focal_crossentropy_matches_torch(shape, alpha, gamma, from_logits, ls):
    rs = np.random.default_rng(2)
    z = rs.standard_normal(shape) * 2
    x = z if from_logits else softmax64(z) * 1.7  # rows not summing to 1: normalised first (Keras)
    y = np.eye(shape[-1])[rs.integers(0, shape[-1], shape[:-1])]
    loss = losses.CategoricalFocalCrossentropy(alpha=alpha, gamma=gamma, from_logits=from_logits, label_smoothing=ls)
    value, grad = ours(loss, y, x)
    ref_value, ref_grad = torch_value_and_grad(torch_focal(y, alpha, gamma, from_logits, ls), x)
    assert value == pytest.approx(ref_value, rel=1e-12, abs=1e-15)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-15)


def test_focal_with_gamma_0_alpha_1_is_the_crossentropy():
    rs = np.random.default_rng(3)
    z = rs.standard_normal((6, 4))
    y = np.eye(4)[rs.integers(0, 4, 6)]
    for from_logits in (False, True):
        x = z if from_logits else softmax64(z)
        focal = losses.CategoricalFocalCrossentropy(alpha=1.0, gamma=0.0, from_logits=from_logits)
        cce = losses.CategoricalCrossentropy(from_logits=from_logits)
        assert focal(y, x) == pytest.approx(cce(y, x), rel=1e-12)
        np.testing.assert_allclose(focal.backward(), cce.backward(), rtol=1e-9, atol=1e-15)


def test_focal_hand_value():
    # p_true = 0.8: -0.25 * 0.2^2 * log 0.8
    value = losses.get("categorical_focal_crossentropy")(np.array([[0.0, 1.0]]), np.array([[0.2, 0.8]]))
    assert value == pytest.approx(-0.25 * 0.04 * math.log(0.8), rel=1e-12)


# --- masks, fusion, registry, errors ----------------------------------------------------------------


@pytest.mark.parametrize("loss", [losses.KLDivergence(), losses.KLDivergence(from_logits=True, temperature=2.0),
                                  losses.CategoricalFocalCrossentropy(), losses.CategoricalFocalCrossentropy(
                                      from_logits=True, label_smoothing=0.1)])
def test_masked_loss_is_the_mean_over_real_steps(loss):
    rs = np.random.default_rng(4)
    z = rs.standard_normal((3, 5, 4))
    x = z if loss.from_logits else softmax64(z)
    y = np.eye(4)[rs.integers(0, 4, (3, 5))] if isinstance(loss, losses.CategoricalFocalCrossentropy) \
        else softmax64(rs.standard_normal((3, 5, 4)))
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 1, 1, 0]], dtype=bool)
    per_step = [loss(y[b, t][None], x[b, t][None]) for b, t in zip(*np.nonzero(mask))]
    assert loss(y, x, mask=mask) == pytest.approx(np.mean(per_step), rel=1e-12)
    g = loss.backward()
    assert np.all(g[~mask] == 0) and np.any(g[mask] != 0)


@pytest.mark.parametrize("name", ["kl_divergence", "categorical_focal_crossentropy"])
def test_session_fuses_softmax_into_the_loss(name):
    model = Model([layers.Dense(3, inshape=(4,), activation="softmax")]).assemble()
    sess = Session(model, name, "sgd")
    assert sess.train_loss.from_logits and type(sess.train_loss) is type(losses.get(name))


@pytest.mark.parametrize("alias,cls", [("kld", losses.KLDivergence), ("KL_Divergence", losses.KLDivergence),
                                       ("kullback_leibler_divergence", losses.KLDivergence),
                                       ("categorical_focal_crossentropy", losses.CategoricalFocalCrossentropy),
                                       ("focal_crossentropy", losses.CategoricalFocalCrossentropy)])
def test_get_by_name_and_alias(alias, cls):
    assert type(losses.get(alias)) is cls


@pytest.mark.parametrize("loss", [losses.KLDivergence(from_logits=True, temperature=2.5),
                                  losses.CategoricalFocalCrossentropy(0.5, 1.0, True, 0.1)])
def test_config_round_trip(loss):
    clone = losses.get(losses.serialize(loss))
    assert type(clone) is type(loss) and clone.get_config() == loss.get_config()
    assert losses.serialize(type(loss)()) == type(loss).registry_name


def test_with_logits_keeps_options():
    fused = losses.CategoricalFocalCrossentropy(alpha=0.5, gamma=1.0, label_smoothing=0.1).with_logits()
    assert fused.get_config() == {"alpha": 0.5, "gamma": 1.0, "from_logits": True, "label_smoothing": 0.1}
    assert losses.KLDivergence().with_logits().get_config() == {"from_logits": True, "temperature": 1.0}


def test_option_errors():
    with pytest.raises(ValueError, match=r"KLDivergence: temperature=2.0 needs from_logits=True"):
        losses.KLDivergence(temperature=2.0)
    with pytest.raises(ValueError, match=r"KLDivergence: temperature must be a finite number > 0, got 0"):
        losses.KLDivergence(from_logits=True, temperature=0)
    with pytest.raises(ValueError, match=r"CategoricalFocalCrossentropy: gamma must be a finite number >= 0, got -1"):
        losses.CategoricalFocalCrossentropy(gamma=-1)
    with pytest.raises(ValueError, match=r"CategoricalFocalCrossentropy: alpha must be a finite number >= 0"):
        losses.CategoricalFocalCrossentropy(alpha=float("nan"))
    with pytest.raises(TypeError, match=r"from_logits must be True or False"):
        losses.KLDivergence(from_logits="yes")


@pytest.mark.parametrize("loss", [losses.KLDivergence(), losses.CategoricalFocalCrossentropy()])
def test_integer_labels_suggest_one_hot(loss):
    with pytest.raises(ValueError, match=r"got labels of shape \(batch,\) but outputs \(batch, 3\).*"
                                         r"cutedl\.datasets\.one_hot\(y, 3\)"):
        loss(np.array([0, 1, 2, 0]), np.full((4, 3), 1 / 3))
