"""Dynamics: per-layer training diagnostics at each check, and plain-words diagnoses.

At each check :class:`Dynamics` records, for every layer:

- ``grad_norm``: the L2 norm of the layer's gradients (all its trainable params) at one step;
- ``update_ratio``: ``||w_after - w_before|| / ||w_before||`` of that step's update (a healthy
  value is around 1e-3; near 1e-1 the learning rate is likely too high);
- ``dead_relu``: for a ReLU layer, the share of its units (features, or channels) that output 0
  for every sample of a fixed probe batch;
- ``act_std``: the standard deviation of the layer's output on the probe batch.

Gradient and update figures come from the last training step before the check: the listener
knows from the fit's schedule which step that is and copies the trainable weights before it
only (one copy per check, not per step). Activation figures come from a forward pass (inference
mode, :func:`~cutedl.layers.base.no_grad`) of the first ``probe_size`` validation samples (the
training samples without ``val_data``), layer by layer; for a functional (graph) model or one
with stateful layers they are left out (None). Overhead: under 2 % of an MNIST MLP epoch (see
``bench/dynamics.py``).
"""
from __future__ import annotations

import math

from cutedl import backend
from cutedl._validate import check_int
from cutedl.layers.base import forward_takes_mask, no_grad
from cutedl.listeners.base import Listener, check_fields, restore_fields

__all__ = ["Dynamics", "QUANTITIES"]

QUANTITIES = ("grad_norm", "update_ratio", "dead_relu", "act_std")
"""The per-layer figures of a :class:`Dynamics` record."""


def _relu_layer(layer) -> bool:
    act = getattr(layer, "activation", None)
    return getattr(act, "registry_name", None) == "relu" or type(layer).__name__ == "ReLU"


def _finite(v):
    return v is not None and math.isfinite(v)


class Dynamics(Listener):
    """Record per-layer gradient norms, update/weight ratios, dead ReLUs and activation spread.

    Args:
        probe_size: validation samples in the probe batch of the activation figures.

    Attributes:
        records: one dict per check: ``{'step', 'epoch', 'probe_step', 'layers': {layer name:
            {'grad_norm', 'update_ratio', 'dead_relu', 'act_std'}}}`` (None where a figure does not
            apply: a layer without params has no gradient, only ReLU layers have dead units).
            ``probe_step`` is the step the gradient figures come from.

    The thresholds of :meth:`diagnoses` are class attributes (``HIGH_UPDATE``...). The records
    survive a resume (BackupAndRestore); data-parallel ranks other than 0 record nothing.

    Example:
        >>> dyn = listeners.Dynamics()
        >>> sess.fit(train, epochs=10, val_data=val, listeners=[dyn])
        >>> dyn.diagnoses()
        ['dense_2: update/weight ratio 0.3 -- lr likely too high']
        >>> reports.fit_report(history, 'report.png', panels=[reports.dynamics_panel(dyn)])
    """

    HIGH_UPDATE = 0.1     # update/weight ratio above: lr likely too high
    LOW_UPDATE = 1e-6     # below: the layer no longer learns
    DEAD_RELU = 0.4       # share of dead units at or above which a ReLU layer is reported
    GRAD_GROWTH = 100.0   # gradient norm growth since the first check that reads as exploding
    ACT_COLLAPSED = 1e-3  # activation std below: collapsed
    ACT_EXPLODING = 1e3   # above: exploding

    def __init__(self, probe_size: int = 256):
        self.probe_size = check_int("Dynamics", "probe_size", probe_size, minimum=1, what="a positive integer")
        self.records: list = []
        self._before = None
        self._latest = None

    # ------------------------------------------------------------------ fit events
    def on_fit_start(self, logs=None):
        self.records, self._before, self._latest = [], None, None
        self._probe = None
        if not self.is_main:
            return
        data = self.session.val_data if self.session.val_data is not None else self.session.train_data
        model = self.model
        if not model.functional and not any(getattr(l, "stateful", False) for l in model.layers):
            x, _ = data.head(self.probe_size)
            self._probe = x

    def _due(self, step: int) -> bool:
        """Whether a check follows training step ``step`` (so its gradients are the ones to keep)."""
        p, st = self.session.fit_params, self.session.state
        per_epoch = p.get("steps_per_epoch") or 0
        last_batch = bool(per_epoch) and st.batches_done + 1 >= per_epoch
        closing = last_batch and st.epoch == p["epochs"]  # the fit's closing check follows
        if p.get("val_steps"):
            return step % p["val_steps"] == 0 or closing
        if not per_epoch:  # an epoch of unknown length: sample every 10 steps
            return step % 10 == 1
        return last_batch and ((st.epoch - st.check_origin) % p["val_epochs"] == 0 or closing)

    def on_batch_start(self, step, logs=None):
        if self.is_main and self._due(step):
            self._before = [[p.value.copy() for p in layer.params if p.trainable] for layer in self.model.layers]

    def on_batch_end(self, step, logs=None):
        if self._before is None:
            return
        xp, figures = backend.xp, {}
        for layer, before in zip(self.model.layers, self._before):
            params = [p for p in layer.params if p.trainable]
            if not params:
                continue
            grads = [p.grad for p in params if p.grad is not None]
            g2 = sum(backend.item(xp.vdot(g.ravel(), g.ravel())) for g in grads) if grads else math.nan
            d2 = sum(backend.item(xp.vdot((p.value - w).ravel(), (p.value - w).ravel())) for p, w in zip(params, before))
            w2 = sum(backend.item(xp.vdot(w.ravel(), w.ravel())) for w in before)
            figures[layer.name] = {"grad_norm": math.sqrt(g2) if math.isfinite(g2) else (math.inf if grads else None),
                                   "update_ratio": math.sqrt(d2 / w2) if w2 > 0 else None}
        self._latest = (int(step), figures)
        self._before = None

    def on_val_end(self, step, logs=None):
        if not self.is_main:
            return
        acts = self._activations()
        probe_step, grads = self._latest if self._latest is not None else (None, {})
        layers = {}
        for layer in self.model.layers:
            g = grads.get(layer.name, {})
            a = acts.get(layer.name, {})
            layers[layer.name] = {"grad_norm": _plain(g.get("grad_norm")), "update_ratio": _plain(g.get("update_ratio")),
                                  "dead_relu": _plain(a.get("dead_relu")), "act_std": _plain(a.get("act_std"))}
        self.records.append({"step": int(step), "epoch": int((logs or {}).get("epoch", self.session.state.epoch)),
                             "probe_step": probe_step, "layers": layers})

    def _activations(self) -> dict:
        """``{layer name: {'act_std', 'dead_relu'}}`` on the probe batch, layer by layer (sequential models)."""
        if self._probe is None:
            return {}
        model, xp = self.model, backend.xp
        x = model.check_input(backend.to_device(self._probe))
        if x.dtype != model.dtype and (x.dtype.kind == "f" or getattr(model.layers[0], "integer_input", None) is None):
            x = x.astype(model.dtype)
        out, mask = {}, None
        with no_grad():
            for layer in model.layers:
                logits = layer.output_logits
                layer.output_logits = False  # the activated output, as predict gives it
                try:
                    if mask is not None and forward_takes_mask(layer):
                        y = layer.forward(x, training=False, mask=mask)
                    else:
                        y = layer.forward(x, training=False)
                    mask = layer.compute_mask(x, mask)
                finally:
                    layer.output_logits = logits
                fig = {"act_std": backend.item(xp.std(y.astype(xp.float64)))}
                if _relu_layer(layer) and y.size:
                    alive = (y.reshape(-1, y.shape[-1]) > 0).any(axis=0)  # per feature / channel
                    fig["dead_relu"] = 1.0 - backend.item(xp.mean(alive))
                out[layer.name] = fig
                x = y
        return out

    # ------------------------------------------------------------------ reading the records
    def series(self, quantity: str) -> tuple:
        """``(steps, {layer name: values})`` of one quantity over the checks (host float64, NaN where absent)."""
        if quantity not in QUANTITIES:
            raise ValueError(f"Dynamics.series: quantity must be one of {', '.join(QUANTITIES)}, got {quantity!r}.")
        np = backend.np
        steps = np.array([r["step"] for r in self.records], dtype=np.float64)
        names = [n for n in (self.records[0]["layers"] if self.records else {})
                 if any(r["layers"].get(n, {}).get(quantity) is not None for r in self.records)]
        values = {n: np.array([_nan(r["layers"].get(n, {}).get(quantity)) for r in self.records], dtype=np.float64)
                  for n in names}
        return steps, values

    def diagnoses(self, quantity: str | None = None) -> list:
        """Plain-words findings at the last check, e.g. ``'dense_2: update/weight ratio 0.3 -- lr likely too high'``.

        ``quantity`` keeps only the findings about one figure (see :data:`QUANTITIES`).
        """
        if quantity is not None and quantity not in QUANTITIES:
            raise ValueError(f"Dynamics.diagnoses: quantity must be one of {', '.join(QUANTITIES)}, got {quantity!r}.")
        if not self.records:
            return []
        first, last = self.records[0]["layers"], self.records[-1]["layers"]
        out = []
        for name, f in last.items():
            g, r, d, s = f["grad_norm"], f["update_ratio"], f["dead_relu"], f["act_std"]
            g0 = first.get(name, {}).get("grad_norm")
            if g is not None and not math.isfinite(g):
                out.append(("grad_norm", f"{name}: non-finite gradient norm -- exploding gradients; lower the lr or "
                                         f"clip gradients"))
            elif _finite(g0) and g0 > 0 and _finite(g) and g / g0 > self.GRAD_GROWTH:
                out.append(("grad_norm", f"{name}: gradient norm grew {g / g0:.0f}x since the first check -- "
                                         f"exploding gradients?"))
            if _finite(r) and r > self.HIGH_UPDATE:
                out.append(("update_ratio", f"{name}: update/weight ratio {r:.2g} -- lr likely too high"))
            elif _finite(r) and r < self.LOW_UPDATE:
                out.append(("update_ratio", f"{name}: update/weight ratio {r:.1e} -- lr likely too low, or the layer "
                                            f"no longer learns"))
            if _finite(d) and d >= self.DEAD_RELU:
                out.append(("dead_relu", f"{name}: {100 * d:.0f} % dead ReLUs"))
            if _finite(s) and s < self.ACT_COLLAPSED:
                out.append(("act_std", f"{name}: activation std {s:.1e} -- activations collapsed"))
            elif _finite(s) and s > self.ACT_EXPLODING:
                out.append(("act_std", f"{name}: activation std {s:.2g} -- activations exploding"))
        return [text for q, text in out if quantity is None or q == quantity]

    # ------------------------------------------------------------------ resuming
    def get_state(self) -> dict:
        return {"records": self.records}

    def check_state(self, state: dict) -> None:
        check_fields(self, state, {"records": "list"})
        for r in state["records"]:
            if not (isinstance(r, dict) and isinstance(r.get("layers"), dict) and "step" in r):
                raise ValueError(f"Dynamics.set_state: a record must be a dict with 'step' and 'layers', got {r!r:.80}.")

    def set_state(self, state: dict) -> None:
        self.check_state(state)
        restore_fields(self, state, {"records": "list"})

    def __repr__(self) -> str:
        return f"Dynamics(probe_size={self.probe_size})"


def _plain(v):
    """A figure as a JSON-friendly value: a float, or None (NaN and missing alike)."""
    return float(v) if v is not None and not (isinstance(v, float) and math.isnan(v)) else None


def _nan(v):
    return math.nan if v is None else float(v)
