"""One training step, in two halves: :func:`compute_grads` and :func:`apply_grads`.

``compute_grads`` runs the forward pass, the loss (plus regularization penalties) and the
backward pass, leaving every param's ``grad`` set; ``apply_grads`` lets the optimizer update
the params from them. Between the two halves is the seam where a data-parallel strategy
averages the gradients over processes, and where a custom ``Session.train_step`` can mix
several models, losses or optimizers.

Data arrives on the device (the loop copies each batch there once); the only values brought
back to the host are the logged scalars (loss and metrics), through :func:`cutedl.backend.item`.
"""
from __future__ import annotations

from cutedl import backend
from cutedl import metrics as metrics_mod

__all__ = ["host_float", "to_device", "backward_losses", "forward_loss", "compute_grads", "apply_grads", "metric_logs", "batch_weight"]


def host_float(value) -> float:
    """A logged scalar as a Python float: losses and metrics already return host floats (their one
    device->host crossing); a device scalar crosses here (counted by :func:`cutedl.backend.item`)."""
    return value if isinstance(value, float) else backend.item(value)


def batch_rows(x) -> int:
    """Samples in a batch (an array, or a tuple of arrays for several inputs)."""
    return len(x[0]) if isinstance(x, (tuple, list)) else len(x)


def batch_weight(x, mask) -> int:
    """What a batch weighs in means over batches: its samples, or its real steps when masked."""
    n = batch_rows(x)
    return n if mask is None else metrics_mod.mask_weight(mask, n)


def to_device(batch):
    """A host batch (an array, a tuple of arrays for several inputs/targets, or None) on the device."""
    if batch is None:
        return None
    if isinstance(batch, (tuple, list)):
        return tuple(backend.to_device(a) for a in batch)
    return backend.to_device(batch)


def _per_output(session, y, out):
    """``[(loss fn, weight, name, y_i, out_i, mask_i)]`` for each model output."""
    model = session.model
    if model.num_outputs == 1:
        return [(session.train_losses[0], session.loss_weights[0], None, y, out, model.output_mask)]
    if not isinstance(y, (tuple, list)) or len(y) != model.num_outputs:
        raise ValueError(f"Session: the model has {model.num_outputs} outputs ({', '.join(model.output_names)}); "
                         f"pass y as a tuple of {model.num_outputs} target arrays, got {type(y).__name__}.")
    return list(zip(session.train_losses, session.loss_weights, model.output_names, y, out, model.output_masks))


def forward_loss(session, x, y, training: bool, parts: dict | None = None):
    """``(outputs, loss, mask)`` of a batch (without penalties); the loss of a model with several
    outputs is the ``loss_weights``-weighted sum of each output's loss, and each one is put in
    ``parts`` as ``{'<output>_loss': value}`` when given.

    With a masked sequence output (``model.output_mask`` not None) the loss counts the real
    steps only.
    """
    model = session.model
    x = model.check_input(x)
    out = model.forward(x, training=training, logits=session.fused)
    return out, forward_loss_of(session, y, out, parts), model.output_mask


def forward_loss_of(session, y, out, parts: dict | None = None):
    """The (weighted total) loss of outputs ``out`` already computed by the model's forward."""
    total = None
    for fn, w, name, yi, oi, mi in _per_output(session, y, out):
        li = fn(yi, oi) if mi is None else fn(yi, oi, mask=mi)
        if name is not None and parts is not None:
            parts[f"{name}_loss"] = host_float(li)
        li = li if w == 1.0 else li * w
        total = li if total is None else total + li
    return total


def metric_logs(session, logs: dict, y, out, mask, kind: str = "train") -> dict:
    """Add ``{metric name: value}`` of the batch to ``logs`` (host floats); with several outputs
    every metric is computed on each, as ``<output>_<metric>``. A stateful metric (``stateful =
    True``: precision, AUC...) is not logged per batch: its ``kind`` ('train' or 'val') instance
    accumulates the batch and gives its value at the check."""
    if session.metrics:
        stateful = session.stateful_metrics[kind]
        for _, _, name, yi, oi, mi in _per_output(session, y, out):
            pred = session.output_activation(oi, name)
            for m in session.metrics:
                key = m.name if name is None else f"{name}_{m.name}"
                if key in stateful:
                    stateful[key].update(yi, pred, mask=mi)
                else:
                    logs[key] = host_float(m(yi, pred) if mi is None else m(yi, pred, mask=mi))
    return logs


def backward_losses(session):
    """dL/doutput of each output (weighted), after :func:`forward_loss`."""
    grads = []
    for fn, w in zip(session.train_losses, session.loss_weights):
        g = fn.backward()
        grads.append(g if w == 1.0 else g * g.dtype.type(w))
    return grads if session.model.num_outputs > 1 else grads[0]


def compute_grads(session, x, y):
    """Forward, loss and backward of one batch; returns ``(loss, logs)`` with host floats.

    Sets every trainable param's ``grad`` (the loss's gradient plus each regularizer's), and
    ``session.batch_weight``. When the loss is not finite, no backward runs and the grads are
    left as they were: :func:`apply_grads` must not be called (the default step skips it).
    """
    if batch_rows(x) == 0:  # a data-parallel rank's share of a batch smaller than the world: it weighs nothing
        for p in session.model.trainable_params:
            p.grad = backend.xp.zeros_like(p.value)
        session.batch_weight = 0
        return 0.0, {k: 0.0 for k in session.train_log_keys() if k not in session.stateful_metrics["train"]}
    parts: dict = {}
    out, loss, mask = forward_loss(session, x, y, training=True, parts=parts)
    value = host_float(loss)
    if session.regularized:
        value += host_float(sum(p.regularizer.loss(p.value) for p in session.regularized))
    session.batch_weight = batch_weight(x, mask)
    logs = {"loss": value, **parts}
    if value == value and abs(value) != float("inf"):
        session.model.backward(backward_losses(session))
        for p in session.regularized:
            if p.grad is not None:
                p.grad += p.regularizer.grad(p.value)
    metric_logs(session, logs, y, out, mask)
    return value, logs


def apply_grads(session, params=None, optimizer=None) -> None:
    """Update ``params`` (default: the model's trainable params) with ``optimizer`` (default:
    the session's) from their grads, after the session's strategy has reduced them.
    """
    params = session.model.trainable_params if params is None else params
    strategy = getattr(session, "strategy", None)
    if strategy is not None:
        strategy.reduce_grads(params)
    (session.optimizer if optimizer is None else optimizer).step(params)
