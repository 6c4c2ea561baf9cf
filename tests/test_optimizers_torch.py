"""RAdam, Nadam and Lion against PyTorch in float64: 20 steps on random params and gradients.

References: ``torch.optim.RAdam`` and ``torch.optim.NAdam`` (``decoupled_weight_decay=True``, our
weight decay; ``foreach=False``, the plain per-tensor loop), and Lion written out in torch as in
the paper / ``lion-pytorch`` (its ``update_fn``). PyTorch keeps NAdam's ``mu_product`` and the
step counts in its default dtype, so the torch default dtype is float64 here.
"""
import numpy as np
import pytest

from cutedl import optimizers
from cutedl.layers.base import Param

torch = pytest.importorskip("torch")

STEPS = 20
SHAPES = [(4, 5), (5,), (2, 3, 2)]


@pytest.fixture(autouse=True)
def torch_float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def problem(seed):
    """Initial values and STEPS gradients per param; gradient scales vary a lot across steps."""
    rs = np.random.default_rng(seed)
    values = [rs.standard_normal(s) for s in SHAPES]
    scales = np.exp(rs.uniform(-3, 2, STEPS))
    grads = [[rs.standard_normal(s) * scales[t] for s in SHAPES] for t in range(STEPS)]
    return values, grads


class TorchLion(torch.optim.Optimizer):
    """Lion as in lion-pytorch's update_fn (decoupled weight decay, then the sign update)."""

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr, wd, (beta1, beta2) = group["lr"], group["weight_decay"], group["betas"]
            for p in group["params"]:
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                exp_avg = state["exp_avg"]
                p.mul_(1.0 - lr * wd)
                update = exp_avg.clone().mul_(beta1).add(p.grad, alpha=1.0 - beta1).sign_()
                p.add_(update, alpha=-lr)
                exp_avg.mul_(beta2).add_(p.grad, alpha=1.0 - beta2)


def torch_optimizer(name, params, kw):
    lr, wd = kw.get("lr"), kw.get("weight_decay", 0.0)
    betas = (kw.get("beta_1", 0.9), kw.get("beta_2", 0.999 if name != "lion" else 0.99))
    if name == "radam":
        return torch.optim.RAdam(params, lr=lr, betas=betas, eps=kw.get("epsilon", 1e-8), weight_decay=wd,
                                 decoupled_weight_decay=True, foreach=False)
    if name == "nadam":
        return torch.optim.NAdam(params, lr=lr, betas=betas, eps=kw.get("epsilon", 1e-7), weight_decay=wd,
                                 momentum_decay=kw.get("momentum_decay", 0.004), decoupled_weight_decay=True,
                                 foreach=False)
    return TorchLion(params, lr=lr, betas=betas, weight_decay=wd)


CASES = [
    ("radam", {"lr": 0.01}),
    ("radam", {"lr": 0.05, "beta_1": 0.8, "beta_2": 0.9, "epsilon": 1e-3, "weight_decay": 0.1}),
    ("radam", {"lr": 0.02, "beta_2": 0.99, "weight_decay": 0.01}),
    ("nadam", {"lr": 0.01}),
    ("nadam", {"lr": 0.002, "epsilon": 1e-8}),  # PyTorch's defaults
    ("nadam", {"lr": 0.05, "beta_1": 0.7, "beta_2": 0.95, "momentum_decay": 0.05, "weight_decay": 0.2}),
    ("lion", {"lr": 0.01}),
    ("lion", {"lr": 0.003, "beta_1": 0.5, "beta_2": 0.9, "weight_decay": 0.5}),
]


@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_matches_pytorch_over_20_steps(name, kwargs):
    values, grads = problem(CASES.index((name, kwargs)))
    params = [Param(f"dense_1/p{i}", v.copy()) for i, v in enumerate(values)]
    opt = optimizers.get(name, **kwargs)
    theirs = [torch.tensor(v.copy(), requires_grad=True) for v in values]
    ref = torch_optimizer(name, theirs, kwargs)
    for step in range(STEPS):
        for p, t, g in zip(params, theirs, grads[step]):
            p.grad = g.copy()
            t.grad = torch.tensor(g.copy())
        opt.step(params)
        ref.step()
        for p, t in zip(params, theirs):
            np.testing.assert_allclose(p.value, t.detach().numpy(), rtol=1e-13, atol=1e-15,
                                       err_msg=f"{name} step {step + 1}")
    # the params moved, and the state the two keep is the same
    assert not np.allclose(params[0].value, values[0], atol=1e-3)
    for p, t in zip(params, theirs):
        st = ref.state[t]
        np.testing.assert_allclose(opt.state[p.name]["m"], st["exp_avg"].numpy(), rtol=1e-13, atol=1e-16)
        if name != "lion":
            np.testing.assert_allclose(opt.state[p.name]["v"], st["exp_avg_sq"].numpy(), rtol=1e-13, atol=1e-16)


def test_radam_uses_both_branches_in_these_runs():
    # guards the comparison: with beta_2 = 0.999 the rectified update starts at step 6
    def rho(t, b2):
        rho_inf = 2 / (1 - b2) - 1
        return rho_inf - 2 * t * b2 ** t / (1 - b2 ** t)

    assert rho(5, 0.999) < 5 < rho(6, 0.999) and rho(STEPS, 0.9) > 5 > rho(1, 0.9)


def test_nadam_resumes_with_the_same_momentum_product():
    values, grads = problem(3)
    a = [Param(f"d/p{i}", v.copy()) for i, v in enumerate(values)]
    opt = optimizers.Nadam(lr=0.01)
    for g in grads[:7]:
        for p, gi in zip(a, g):
            p.grad = gi
        opt.step(a)
    snap, saved = opt.get_state(), [p.value.copy() for p in a]
    for g in grads[7:]:
        for p, gi in zip(a, g):
            p.grad = gi
        opt.step(a)
    b = [Param(f"d/p{i}", v) for i, v in enumerate(saved)]
    resumed = optimizers.get(optimizers.serialize(opt))
    resumed.set_state(snap)
    for g in grads[7:]:
        for p, gi in zip(b, g):
            p.grad = gi
        resumed.step(b)
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p.value, q.value)
    assert resumed.iterations == opt.iterations == STEPS
