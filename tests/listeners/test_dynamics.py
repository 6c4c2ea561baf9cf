"""listeners.Dynamics: figures against independent NumPy computations, the probe schedule, the
diagnosis rules, resume and data-parallel behaviour, and the report panel."""
import math

import numpy as np
import pytest

import cutedl
from cutedl import Dataset, Model, Session, layers, listeners, optimizers, reports


class StepLog(listeners.Listener):
    """Independent record of every step: weights before and after, and the gradients."""

    def on_fit_start(self, logs=None):
        self.before, self.after, self.grads = {}, {}, {}

    def on_batch_start(self, step, logs=None):
        self.before[step] = [p.value.copy() for p in self.model.params]

    def on_batch_end(self, step, logs=None):
        self.after[step] = [p.value.copy() for p in self.model.params]
        self.grads[step] = [p.grad.copy() for p in self.model.params]


def _data(n=120, seed=0):
    rs = np.random.default_rng(seed)
    x = rs.standard_normal((n, 6)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[(x[:, :3]).argmax(1)]
    return x, y


def _mlp():
    return Model([layers.Dense(12, inshape=6, activation="relu"), layers.Dense(8, activation="tanh"),
                  layers.Dropout(0.2), layers.Dense(3, activation="softmax")]).assemble()


def _fit(extra=(), epochs=3, val_steps=0, val_epochs=1, lr=0.01, model=None, **dyn_kwargs):
    x, y = _data()
    model = model or _mlp()
    sess = Session(model, "categorical_crossentropy", optimizers.Adam(lr))
    dyn = listeners.Dynamics(**dyn_kwargs)
    log = StepLog()
    h = sess.fit(Dataset(x[:96], y[:96], batch_size=16), epochs=epochs, val_data=(x[96:], y[96:]), val_steps=val_steps,
                 val_epochs=val_epochs, listeners=[log, dyn, *extra], verbose=0)
    return model, h, dyn, log, x[96:]


def test_figures_match_numpy():
    model, h, dyn, log, xv = _fit()
    assert [r["step"] for r in dyn.records] == h["step"] == [6, 12, 18]
    assert [r["probe_step"] for r in dyn.records] == [6, 12, 18]  # the step right before each check
    dense = [l for l in model.layers if l.params]
    slices, at = {}, 0
    for l in model.layers:
        slices[l.name] = slice(at, at + len(l.params))
        at += len(l.params)
    for r in dyn.records:
        s = r["probe_step"]
        for l in dense:
            sl = slices[l.name]
            g = math.sqrt(sum(float((a.astype(np.float64) ** 2).sum()) for a in log.grads[s][sl]))
            dw = math.sqrt(sum(float(((a - b).astype(np.float64) ** 2).sum())
                               for a, b in zip(log.after[s][sl], log.before[s][sl])))
            w = math.sqrt(sum(float((b.astype(np.float64) ** 2).sum()) for b in log.before[s][sl]))
            fig = r["layers"][l.name]
            assert fig["grad_norm"] == pytest.approx(g, rel=1e-5)
            assert fig["update_ratio"] == pytest.approx(dw / w, rel=1e-4)
        assert r["layers"][model.layers[2].name]["grad_norm"] is None  # Dropout has no params
    # activations of the final weights on the probe batch, by hand
    w1, b1, w2, b2, w3, b3 = [p.value.astype(np.float64) for p in model.params]
    h1 = np.maximum(xv @ w1 + b1, 0)
    h2 = np.tanh(h1 @ w2 + b2)
    last = dyn.records[-1]["layers"]
    assert last[model.layers[0].name]["act_std"] == pytest.approx(h1.std(), rel=1e-5)
    assert last[model.layers[1].name]["act_std"] == pytest.approx(h2.std(), rel=1e-5)
    assert last[model.layers[2].name]["act_std"] == pytest.approx(h2.std(), rel=1e-5)  # Dropout: identity
    assert last[model.layers[0].name]["dead_relu"] == pytest.approx(1 - (h1 > 0).any(0).mean())
    assert last[model.layers[1].name]["dead_relu"] is None  # not a ReLU layer
    steps, ratios = dyn.series("update_ratio")
    assert steps.tolist() == [6, 12, 18] and set(ratios) == {l.name for l in dense}


@pytest.mark.parametrize("kwargs, probes", [
    ({"val_steps": 4}, [4, 8, 12, 16, 18]),             # every 4 steps, + the closing check
    ({"val_epochs": 2}, [12, 18]),                      # epochs 2 and 3 (the last epoch always checks)
])
def test_probe_step_is_the_last_step_before_each_check(kwargs, probes):
    _, h, dyn, _, _ = _fit(**kwargs)
    assert h["step"] == [r["step"] for r in dyn.records]
    assert [r["probe_step"] for r in dyn.records] == probes


def test_dead_relus_and_a_too_high_lr_are_diagnosed():
    model = _mlp()
    first = model.layers[0]
    first.params[1].value[:9] = -100.0  # 9 of 12 units never fire: no gradient reaches them either
    _, _, dyn, _, _ = _fit(model=model, epochs=1)
    assert dyn.records[-1]["layers"][first.name]["dead_relu"] == pytest.approx(0.75)
    assert f"{first.name}: 75 % dead ReLUs" in dyn.diagnoses()
    _, _, hot, _, _ = _fit(epochs=1, lr=5.0)
    assert any("lr likely too high" in d for d in hot.diagnoses())
    _, _, calm, _, _ = _fit(epochs=1, lr=1e-3)
    assert calm.diagnoses() == []


def test_diagnosis_rules_on_hand_records():
    dyn = listeners.Dynamics()
    fig = lambda g=1.0, r=1e-3, d=None, s=1.0: {"grad_norm": g, "update_ratio": r, "dead_relu": d, "act_std": s}  # noqa: E731
    dyn.records = [{"step": 1, "epoch": 1, "probe_step": 1, "layers": {"a": fig(), "b": fig(), "c": fig(), "d": fig()}},
                   {"step": 2, "epoch": 2, "probe_step": 2,
                    "layers": {"a": fig(r=0.3), "b": fig(g=math.inf, d=0.6), "c": fig(g=500.0, r=1e-8, s=1e-5),
                               "d": fig(s=5e3)}}]
    assert dyn.diagnoses() == [
        "a: update/weight ratio 0.3 -- lr likely too high",
        "b: non-finite gradient norm -- exploding gradients; lower the lr or clip gradients",
        "b: 60 % dead ReLUs",
        "c: gradient norm grew 500x since the first check -- exploding gradients?",
        "c: update/weight ratio 1.0e-08 -- lr likely too low, or the layer no longer learns",
        "c: activation std 1.0e-05 -- activations collapsed",
        "d: activation std 5e+03 -- activations exploding",
    ]
    with pytest.raises(ValueError, match="quantity must be one of"):
        dyn.series("grad")


def test_resume_and_functional_models(tmp_path):
    class Kill(listeners.Listener):
        def on_batch_end(self, step, logs=None):
            if step == 8:
                raise RuntimeError("simulated crash")

    cutedl.set_seed(5)
    _, _, straight, _, _ = _fit()
    cutedl.set_seed(5)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit(extra=[listeners.BackupAndRestore(tmp_path / "b"), Kill()])
    cutedl.set_seed(5)
    _, _, resumed, _, _ = _fit(extra=[listeners.BackupAndRestore(tmp_path / "b"), listeners.Listener()])
    assert resumed.records == straight.records

    inp = layers.Input((6,))
    out = layers.Dense(3, activation="softmax")(layers.Dense(8, activation="relu")(inp))
    _, h, dyn, _, _ = _fit(model=Model(inputs=inp, outputs=out), epochs=2)
    fig = next(iter(dyn.records[-1]["layers"].values()))
    assert fig["grad_norm"] > 0 and fig["act_std"] is None and len(dyn.records) == 2


def test_nothing_on_other_ranks():
    class Rank1:
        def is_main(self):
            return False

    class FakeSession:
        strategy = Rank1()

    dyn = listeners.Dynamics()
    dyn.set_session(FakeSession())
    dyn.on_fit_start()
    dyn.on_batch_start(1)
    dyn.on_batch_end(1)
    dyn.on_val_end(1, logs={"epoch": 1})
    assert dyn.records == []


def test_dynamics_panel(tmp_path):
    _, h, dyn, _, _ = _fit(epochs=2)
    path = reports.fit_report(h, tmp_path / "r.png", panels=[reports.dynamics_panel(dyn)], dpi=40)
    assert (tmp_path / "r.png").stat().st_size > 1000 and path.endswith("r.png")
    title, draw = reports.dynamics_panel(dyn, "dead_relu")
    assert "dead" in title
    with pytest.raises(ValueError, match="quantity"):
        reports.dynamics_panel(dyn, "speed")
    empty = reports.dynamics_panel(listeners.Dynamics())
    reports.fit_report(h, tmp_path / "e.png", panels=[empty], dpi=40)
