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

__all__ = ["host_float", "forward_loss", "compute_grads", "apply_grads", "metric_logs", "batch_weight"]


def host_float(value) -> float:
    """A logged scalar as a Python float: losses and metrics already return host floats (their one
    device->host crossing); a device scalar crosses here (counted by :func:`cutedl.backend.item`)."""
    return value if isinstance(value, float) else backend.item(value)


def batch_weight(x, mask) -> int:
    """What a batch weighs in means over batches: its samples, or its real steps when masked."""
    return len(x) if mask is None else metrics_mod.mask_weight(mask, len(x))


def forward_loss(session, x, y, training: bool):
    """``(outputs, loss, mask)`` of a batch, the loss as a device scalar (without penalties).

    With a masked sequence output (``model.output_mask`` not None) the loss counts the real
    steps only.
    """
    model = session.model
    x = model.check_input(x)
    out = model.forward(x, training=training, logits=session.fused_logits)
    mask = model.output_mask
    loss = session.train_loss(y, out) if mask is None else session.train_loss(y, out, mask=mask)
    return out, loss, mask


def metric_logs(session, logs: dict, y, out, mask) -> dict:
    """Add ``{metric name: value}`` of the batch to ``logs`` (host floats)."""
    if session.metrics:
        pred = session.outputs(out)
        for m in session.metrics:
            logs[m.name] = host_float(m(y, pred) if mask is None else m(y, pred, mask=mask))
    return logs


def compute_grads(session, x, y):
    """Forward, loss and backward of one batch; returns ``(loss, logs)`` with host floats.

    Sets every trainable param's ``grad`` (the loss's gradient plus each regularizer's), and
    ``session.batch_weight``. When the loss is not finite, no backward runs and the grads are
    left as they were: :func:`apply_grads` must not be called (the default step skips it).
    """
    out, loss, mask = forward_loss(session, x, y, training=True)
    value = host_float(loss)
    if session.regularized:
        value += host_float(sum(p.regularizer.loss(p.value) for p in session.regularized))
    session.batch_weight = batch_weight(x, mask)
    logs = {"loss": value}
    if value == value and abs(value) != float("inf"):
        session.model.backward(session.train_loss.backward())
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
