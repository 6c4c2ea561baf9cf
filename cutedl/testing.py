"""Numerical gradient checks (float64 central differences), public so users can check their own layers.

    >>> from cutedl import layers, testing
    >>> testing.check_gradients(layers.Dense(3, activation='tanh'), inshape=(4,))

For a layer the scalar checked is ``L = sum(forward(x) * r)`` for a fixed random ``r``; its
analytic gradients come from ``backward(r)`` and are compared with
``(L(v + eps) - L(v - eps)) / (2 eps)`` for every element of ``x`` and of every parameter.

Whole models: :func:`check_model_gradients` checks a model and its loss end to end (on a float64
copy) and names the first layer whose backward disagrees; :func:`doctor` adds the checks done by
hand before a long run (initial loss, overfitting one batch, labels, input scale, dead units).

Random inputs and weights ``r`` are drawn on the host and copied to the device once; the
perturbations happen in place on the device arrays and only the scalar ``L`` and the analytic
gradients come back to the host, where the comparison is made.
"""
from __future__ import annotations

import math

from cutedl import backend
from cutedl.backend import np


class GradientCheckError(AssertionError):
    """Raised when an analytic gradient disagrees with the numerical one."""


def numerical_gradient(f, v, eps: float = 1e-6) -> np.ndarray:
    """dF/dv (a host float64 array) by central differences; ``f()`` reads ``v`` (a host or device
    array), which is perturbed in place and restored."""
    g = np.zeros_like(v, dtype=np.float64)
    flat = v.reshape(-1)  # a view: writing it perturbs v
    gflat = g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return g


def _compare(what: str, analytic, numeric, rtol: float, atol: float) -> float:
    if backend.is_array(analytic):
        analytic = backend.to_host(analytic)
    analytic = np.asarray(analytic, dtype=np.float64)
    if analytic.shape != numeric.shape:
        raise GradientCheckError(f"{what}: analytic gradient has shape {analytic.shape}, expected {numeric.shape}.")
    err = np.abs(analytic - numeric)
    tol = atol + rtol * np.abs(numeric)
    if not np.all(err <= tol):
        i = int(np.argmax(err - tol))
        raise GradientCheckError(
            f"{what}: analytic and numerical gradients differ (max abs error {err.max():.3e}); "
            f"at flat index {i}: analytic {analytic.reshape(-1)[i]:.8g} vs numerical {numeric.reshape(-1)[i]:.8g}."
        )
    return float(err.max()) if err.size else 0.0


def _as_float64_layer(layer, inshape):
    """A float64, built copy of ``layer`` (weights copied when it was already built)."""
    cfg = layer.get_config()
    cfg["dtype"] = "float64"
    clone = type(layer).from_config(cfg)
    clone._build(inshape if inshape is not None else layer.inshape)
    if layer.built:
        for src, dst in zip(layer.params, clone.params):
            dst.value[...] = src.value
    return clone


def check_gradients(target, x=None, inshape=None, y=None, batch_size: int = 3, training: bool = False,
                    eps: float = 1e-6, rtol: float = 1e-5, atol: float = 1e-7, seed: int = 0) -> dict:
    """Check the gradients of a layer, an activation or a loss against central differences.

    Args:
        target: a ``Layer`` (built or not; checked as a float64 copy), an activation (name or
            object) or a ``Loss`` instance.
        x: input (float64); drawn from N(0, 1) with ``batch_size`` rows when None (uniform integers
            in ``[0, layer.integer_input)`` for a layer that takes indices, like Embedding). An
            integer ``x`` has no input gradient: only the parameters are checked.
        inshape: input shape without batch, when ``x`` is None and the layer has none.
        y: targets for a loss (required for losses).
        training: forward mode for layers (random layers replay the same draws each call).
    Returns:
        ``{'input': max_abs_error, '<param name>': max_abs_error, ...}`` (no ``'input'`` for integer
        x); a non-trainable param that ``backward`` leaves without a gradient (layer state such as
        moving statistics) maps to None: it is not checked.
    Raises:
        GradientCheckError: on the first disagreeing gradient, naming it.
    """
    from cutedl import activations
    from cutedl.layers.base import Layer
    from cutedl.losses import Loss

    rs = np.random.default_rng(seed)
    if isinstance(target, Loss):
        if y is None:
            raise ValueError("check_gradients on a loss needs targets y.")
        x = backend.asarray(np.array(x, dtype=np.float64))

        def f():
            return float(target(y, x))

        target(y, x)
        analytic = target.backward()
        numeric = numerical_gradient(f, x, eps)
        return {"input": _compare(f"{type(target).__name__} input", analytic, numeric, rtol, atol)}

    if not isinstance(target, Layer):
        act = activations.get(target)
        if x is None:
            x = rs.standard_normal((batch_size,) + tuple(inshape or (5,)))
        x = backend.asarray(np.array(x, dtype=np.float64))
        r = backend.asarray(rs.standard_normal(act.forward(x).shape))

        def f():
            return float(backend.xp.sum(act.forward(x) * r))

        yv = act.forward(x)
        analytic = act.backward(x, yv, r)
        return {"input": _compare(f"activation {act!r} input", analytic, numerical_gradient(f, x, eps), rtol, atol)}

    if x is not None:
        x = np.array(x)
        if x.dtype.kind == "f":
            x = x.astype(np.float64)
        inshape = x.shape[1:]
    layer = _as_float64_layer(target, inshape)
    if x is None:
        high = getattr(layer, "integer_input", None)  # e.g. Embedding: indices in [0, high)
        shape = (batch_size,) + tuple(layer.inshape)
        x = rs.standard_normal(shape) if high is None else rs.integers(0, high, shape)
    x = backend.asarray(x)
    gen = getattr(layer, "_rng", None)
    state = gen.bit_generator.state if gen is not None else None

    def fwd():
        if state is not None:
            gen.bit_generator.state = state
        return layer.forward(x, training=training)

    out = fwd()
    r = backend.asarray(rs.standard_normal(out.shape))

    def f():
        return float(backend.xp.sum(fwd() * r))

    fwd()
    dx = layer.backward(r)
    grads = {p.name: None if p.grad is None else backend.to_host(p.grad).astype(np.float64) for p in layer.params}
    report = {}
    if x.dtype.kind == "f":
        report["input"] = _compare(f"layer {layer.describe()} input", dx, numerical_gradient(f, x, eps), rtol, atol)
    for p in layer.params:
        if grads[p.name] is None and not p.trainable:
            # State, not a parameter the loss trains (e.g. BatchNormalization's moving statistics):
            # backward leaves its grad None by design, and the report says it was not checked.
            report[p.name] = None
            continue
        if grads[p.name] is None:
            raise GradientCheckError(f"layer {layer.describe()}: backward did not set {p.name}.grad.")
        report[p.name] = _compare(p.name, grads[p.name], numerical_gradient(f, p.value, eps), rtol, atol)
    return report


# ---------------------------------------------------------------------------- whole-model check
def format_table(header, rows) -> str:
    """Rows of strings as aligned text columns under ``header``, with a rule below it (the table
    style of the printed results: gradient checks, the doctor, experiment comparisons)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: "  ".join(f"{str(c):<{w}}" for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(header), "  ".join("-" * w for w in widths).rstrip()] + [fmt(r) for r in rows])


def _fmt_err(v) -> str:
    return "-" if v is None else f"{v:.1e}"


def _float64_config(value):
    """A model or layer config with every 'float32' dtype entry (nested layers included) as 'float64'."""
    if isinstance(value, dict):
        return {k: ("float64" if k == "dtype" and v == "float32" else _float64_config(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_float64_config(v) for v in value]
    return value


def model_copy(model, dtype=None, custom_objects: dict | None = None):
    """A new, assembled model with ``model``'s architecture and weights (``dtype``: 'float64' for a
    float64 copy; None keeps the model's). Built from ``get_config`` / ``from_config``, so layers of
    your own classes need ``@cutedl.layers.register`` or ``custom_objects``. The original is not
    touched: training the copy never changes it.
    """
    from cutedl.model import Model

    if not isinstance(model, Model):
        raise TypeError(f"model_copy expects a cutedl Model, got {type(model).__name__}.")
    if not model.assembled:
        raise RuntimeError("model_copy: the model is not assembled; call model.assemble() first.")
    cfg = model.get_config()
    old = backend.floatx()
    if dtype is not None:
        dtype = backend.resolve_dtype(dtype)
        if dtype == np.float64:
            cfg = _float64_config(cfg)
        backend.set_floatx(dtype)
    try:
        clone = Model.from_config(cfg, custom_objects).assemble()
    finally:
        backend.set_floatx(old)
    clone.set_weights([backend.to_host(w) for w in model.get_weights()])
    return clone


def _host_batch(a, who: str, what: str):
    """Host copies of a batch (an array or a tuple/list of them): floats as float64, others kept."""
    if isinstance(a, (tuple, list)):
        return tuple(_host_batch(v, who, what) for v in a)
    a = backend.to_host(a) if backend.is_array(a) else backend.as_array(a, who, what)
    return a.astype(np.float64) if a.dtype.kind == "f" else np.array(a)


def _rows(a, n):
    return tuple(v[:n] for v in a) if isinstance(a, tuple) else a[:n]


def _copy_loss(loss):
    """A fresh loss (list, dict) equal to ``loss``, so a check never shares a loss's cache."""
    from cutedl import losses

    if isinstance(loss, dict):
        return {k: _copy_loss(v) for k, v in loss.items()}
    if isinstance(loss, (list, tuple)):
        return [_copy_loss(v) for v in loss]
    fn = losses.get(loss)
    return losses.get(losses.registry.serialize(fn))


def _session_loss(model, loss, who):
    if loss is not None:
        return loss
    try:
        return model.session.loss
    except RuntimeError:
        raise ValueError(f"{who}: pass loss=... (the model is not compiled, so it has no loss of its own).") from None


class _Probe:
    """Instance-level hooks on a model's layers: adds a perturbation to a layer's output, records
    the gradient each layer's backward receives and the masks layers compute. Removed on exit."""

    def __init__(self, model):
        self.model = model
        self.deltas: dict = {}
        self.out_grads: dict = {}
        self.out_shapes: dict = {}
        self.outputs: dict = {}
        self.masks: list = []
        self.keep_outputs = False

    def __enter__(self):
        for layer in self.model.layers:
            self._hook(layer)
        return self

    def __exit__(self, *exc):
        for layer in self.model.layers:
            for name in ("forward", "backward", "compute_mask"):
                layer.__dict__.pop(name, None)

    def _hook(self, layer):
        forward, backward, compute_mask = layer.forward, layer.backward, layer.compute_mask
        name = layer.name

        def hooked_forward(*args, **kwargs):
            out = forward(*args, **kwargs)
            if not backend.is_array(out):  # a list of outputs (return_state): not probed
                return out
            self.out_shapes[name] = out.shape
            delta = self.deltas.get(name)
            if delta is not None:
                out = out + delta
            if self.keep_outputs:
                self.outputs.setdefault(name, []).append(backend.to_host(out))
            return out

        def hooked_backward(grad):
            if backend.is_array(grad):
                self.out_grads[name] = backend.to_host(grad).astype(np.float64)
            return backward(grad)

        def hooked_compute_mask(*args, **kwargs):
            m = compute_mask(*args, **kwargs)
            self.masks.append(None if m is None else backend.to_host(m).copy())
            return m

        layer.forward, layer.backward, layer.compute_mask = hooked_forward, hooked_backward, hooked_compute_mask


def _same_masks(a, b) -> bool:
    return len(a) == len(b) and all((u is None and v is None) or (u is not None and v is not None and u.shape == v.shape
                                    and bool((u == v).all())) for u, v in zip(a, b))


class GradientRow:
    """One layer of a :class:`ModelGradientCheck`: max relative errors of what its backward produced.

    Attributes:
        layer, kind: the layer's name and class name.
        output_error: error of the gradient the layer *received* (dL/d its output; None when not
            checked: a shared layer, or a layer whose output gets no gradient).
        param_errors: ``{param name: error}`` (None: a param backward leaves without a gradient,
            such as BatchNormalization's moving statistics).
        passed_error: error of the gradient the layer *passed back* (dL/d its inputs, that is the
            output errors of the layers or model inputs feeding it; None when not checked).
        skipped: elements left out because a perturbation changed a mask (a discontinuity).
    """

    def __init__(self, layer, kind):
        self.layer, self.kind = layer, kind
        self.output_error = None
        self.param_errors: dict = {}
        self.passed_error = None
        self.skipped = 0
        self.ok = True

    @property
    def param_error(self):
        errs = [e for e in self.param_errors.values() if e is not None]
        return max(errs) if errs else None

    def __repr__(self) -> str:
        return (f"GradientRow({self.layer!r}, output_error={self.output_error}, param_error={self.param_error}, "
                f"passed_error={self.passed_error}, ok={self.ok})")


def _max_error(rows, inputs) -> float:
    errs = [e for r in rows for e in (r.output_error, r.param_error) if e is not None]
    return max(errs + [e for e in inputs.values() if e is not None], default=0.0)


class ModelGradientCheck:
    """What :func:`check_model_gradients` found: a per-layer table of max relative errors.

    Attributes:
        rows: one :class:`GradientRow` per layer, in forward order.
        inputs: ``{input name: error}`` (None for an integer input: ids have no gradient).
        first_failure: the name of the layer whose backward first goes wrong, walking from the
            loss towards the inputs (``'loss'`` when the loss's own gradient is wrong), or None.
        message: one sentence saying what disagrees, or that all agree.
        ok: True when every checked gradient agrees within ``rtol``.
        max_error: the largest relative error seen.
    """

    def __init__(self, rows, inputs, first_failure, message, rtol, eps, elements):
        self.rows, self.inputs, self.first_failure, self.message = rows, inputs, first_failure, message
        self.rtol, self.eps, self.elements = rtol, eps, elements
        self.input_skipped: dict = {}

    @property
    def ok(self) -> bool:
        return self.first_failure is None

    @property
    def max_error(self) -> float:
        return _max_error(self.rows, self.inputs)

    def row(self, layer: str) -> GradientRow:
        for r in self.rows:
            if r.layer == layer:
                return r
        raise KeyError(f"no layer {layer!r} in this check; layers: {[r.layer for r in self.rows]}.")

    def raise_if_failed(self) -> None:
        """Raise :class:`GradientCheckError` with :attr:`message` unless every gradient agrees."""
        if not self.ok:
            raise GradientCheckError(self.message)

    def __str__(self) -> str:
        head = ("layer", "type", "dL/d output", "params", "dL/d inputs", "skipped", "")
        rows = [(f"input {name}", "Input", "-", "-", "integer ids" if e is None else _fmt_err(e),
                 str(self.input_skipped.get(name, 0) or ""), "") for name, e in self.inputs.items()]
        for r in self.rows:
            mark = "<- first to disagree" if r.layer == self.first_failure else ("" if r.ok else "FAIL")
            rows.append((r.layer, r.kind, _fmt_err(r.output_error), _fmt_err(r.param_error),
                         _fmt_err(r.passed_error), str(r.skipped or ""), mark))
        return (f"Gradient check (float64 central differences, eps {self.eps:g}, up to {self.elements} elements "
                f"per array; max relative error, fails above {self.rtol:g}; skipped: elements at a kink or a "
                f"mask edge)\n" + format_table(head, rows) + "\n" + self.message)

    def print_report(self) -> None:
        print(self)

    def __repr__(self) -> str:
        return f"ModelGradientCheck(ok={self.ok}, first_failure={self.first_failure!r}, max_error={self.max_error:.2e})"


def check_model_gradients(model, x, y, loss=None, *, loss_weights=None, training: bool = False,
                          max_elements: int | None = 64, eps: float = 1e-6, rtol: float = 1e-4,
                          atol: float = 1e-8, seed: int = 0, custom_objects: dict | None = None) -> ModelGradientCheck:
    """Check a whole model's backward pass, and its loss's, against float64 central differences.

    The scalar checked is what training minimises: the loss of ``model`` on ``(x, y)`` (with
    fused logits, ``loss_weights`` and regularization penalties, as :class:`cutedl.Session`
    computes it). It runs on a **float64 copy** of the model (same architecture and weights,
    rebuilt with ``get_config`` / ``from_config``), so the model you pass is never touched and
    may be float32. Compared, at up to ``max_elements`` sampled elements of each array (always
    including its largest analytic gradient): every param's gradient, the gradient each layer
    receives (dL/d its output) and the gradient w.r.t. every float input. Integer inputs (ids
    for an Embedding) get no input check. An element whose perturbation changes a mask (a padded
    step of a ``Masking`` input) is a discontinuity and is skipped.

    The relative error of an element is ``|a - n| / (max(|a|, |n|) + atol / rtol)`` (analytic
    ``a``, numerical ``n``); an array disagrees when it exceeds ``rtol``. Walking from the loss to
    the inputs, the first layer that received a correct gradient but produced a wrong one (for
    its params, or passed back to its inputs) is :attr:`ModelGradientCheck.first_failure`.

    Args:
        model: an assembled :class:`cutedl.Model` (sequential or functional).
        x: a few samples (a list of arrays for several inputs); 2-8 are plenty.
        y: their targets (a list for several outputs).
        loss: a loss, a list or dict of them (several outputs); default the compiled model's.
        loss_weights: as :class:`cutedl.Session`.
        training: forward in training mode (Dropout replays the same draws at every evaluation,
            BatchNormalization uses batch statistics).
        max_elements: elements sampled per array (None: all; slow for big layers).
        eps, rtol, atol: perturbation and tolerances (see above).
        seed: seed of the element sampling.
        custom_objects: ``{class name: Layer subclass}`` for layers of your own, when not registered.
    Returns:
        a :class:`ModelGradientCheck`; ``print(result)`` shows the table, ``result.raise_if_failed()``
        raises :class:`GradientCheckError` in a test.

    Example:
        >>> result = testing.check_model_gradients(model, x[:4], y[:4], 'categorical_crossentropy')
        >>> result.ok, result.first_failure
        (True, None)
    """
    from cutedl._validate import check_bool, check_int, check_number
    from cutedl.model import Model
    from cutedl.training import checkpoint, step
    from cutedl.training.session import Session

    who = "check_model_gradients"
    if not isinstance(model, Model):
        raise TypeError(f"{who}: model must be a cutedl Model, got {type(model).__name__}.")
    training = check_bool(who, "training", training)
    max_elements = check_int(who, "max_elements", max_elements, minimum=1, allow_none=True)
    eps = check_number(who, "eps", eps, minimum=0, low_open=True)
    rtol = check_number(who, "rtol", rtol, minimum=0, low_open=True)
    atol = check_number(who, "atol", atol, minimum=0)
    seed = check_int(who, "seed", seed, minimum=0)
    loss = _copy_loss(_session_loss(model, loss, who))
    clone = model_copy(model, "float64", custom_objects)
    xh, yh = _host_batch(x, who, "x"), _host_batch(y, who, "y")
    sess = Session(clone, loss=loss, optimizer="sgd", loss_weights=loss_weights)
    xs = list(xh) if isinstance(xh, tuple) else [xh]
    xdev = [backend.to_device(np.ascontiguousarray(a)) for a in xs]
    ydev = step.to_device(yh)
    xarg = tuple(xdev) if clone.num_inputs > 1 else xdev[0]
    rs = np.random.default_rng(seed)
    config = clone.get_config()
    graph = config.get("graph")
    n_in = len(xs)
    names_in = [i["name"] for i in graph["inputs"]] if graph else ["input"]
    if graph:  # call j of the graph reads nodes ins and writes node n_in + j
        calls = [(clone.layers[li], ins) for li, ins in graph["calls"]]
    else:
        calls = [(layer, [j]) for j, layer in enumerate(clone.layers)]
    node_of = {}  # node id -> producing layer name (inputs: None)
    for j, (layer, _) in enumerate(calls):
        node_of[n_in + j] = layer.name
    ncalls: dict = {}
    for layer, _ in calls:
        ncalls[layer.name] = ncalls.get(layer.name, 0) + 1

    with _Probe(clone) as probe:
        rng_states = {layer.name: checkpoint.generator_states(layer) for layer in clone.layers}

        def value():
            for layer in clone.layers:
                if rng_states[layer.name]:
                    checkpoint.set_generator_states(layer, rng_states[layer.name], layer.describe())
            clone.reset_states()
            probe.masks.clear()
            _, total, _ = step.forward_loss(sess, xarg, ydev, training=training)
            v = step.host_float(total)
            for p in sess.regularized:
                v += step.host_float(p.regularizer.loss(p.value))
            return v

        base = value()
        base_masks = list(probe.masks)
        dxs = clone.backward(step.backward_losses(sess), input_grad=True)
        for p in sess.regularized:
            if p.grad is not None:
                p.grad += p.regularizer.grad(p.value)
        dxs = dxs if clone.num_inputs > 1 else [dxs]
        analytic = {p.name: None if p.grad is None else backend.to_host(p.grad).astype(np.float64) for p in clone.params}
        out_grads = dict(probe.out_grads)

        def compare(a, set_value, size):
            """Max relative error of analytic ``a`` (host, flat) against central differences; skipped count."""
            a = a.reshape(-1)
            idx = np.arange(size)
            if max_elements is not None and size > max_elements:
                top = int(np.argmax(np.abs(a)))
                idx = np.union1d(rs.choice(size, max_elements - 1, replace=False), [top])
            worst, skipped = 0.0, 0
            for i in idx:
                set_value(i, eps)
                fp, mp = value(), list(probe.masks)
                set_value(i, -eps)
                fm, mm = value(), list(probe.masks)
                set_value(i, 0.0)
                if not (_same_masks(mp, base_masks) and _same_masks(mm, base_masks)):
                    skipped += 1
                    continue
                up, down = (fp - base) / eps, (base - fm) / eps
                if abs(up - down) > 0.01 * (max(abs(up), abs(down)) + atol / rtol):
                    skipped += 1  # a kink (ReLU at 0, tied maxima): one-sided slopes differ, no gradient to check
                    continue
                n = (fp - fm) / (2 * eps)
                diff = abs(a[i] - n)
                if diff:
                    worst = max(worst, float(diff / (max(abs(a[i]), abs(n)) + atol / rtol)))
            return worst, skipped

        def array_setter(arr):
            flat = arr.reshape(-1)  # a view: writing it perturbs the array
            saved = {}

            def set_value(i, d):
                if i not in saved:
                    saved[i] = float(flat[i])
                flat[i] = saved[i] + d
            return set_value

        def delta_setter(name, shape):
            def set_value(i, d):
                if d == 0.0:
                    probe.deltas.pop(name, None)
                    return
                delta = np.zeros(shape, dtype=np.float64)
                delta.reshape(-1)[i] = d
                probe.deltas[name] = backend.to_device(delta)
            return set_value

        inputs, input_skipped = {}, {}
        for k, (name, xd) in enumerate(zip(names_in, xdev)):
            if xd.dtype.kind != "f" or dxs[k] is None:
                inputs[name] = None
                continue
            inputs[name], input_skipped[name] = compare(backend.to_host(dxs[k]).astype(np.float64), array_setter(xd), xd.size)
        rows = []
        for layer in clone.layers:
            row = GradientRow(layer.name, type(layer).__name__)
            g = out_grads.get(layer.name)
            if g is not None and ncalls.get(layer.name) == 1 and layer.name in probe.out_shapes:
                shape = probe.out_shapes[layer.name]
                row.output_error, row.skipped = compare(g, delta_setter(layer.name, shape), int(np.prod(shape)))
            for p in layer.params:
                if analytic[p.name] is None:
                    row.param_errors[p.name] = None
                    continue
                err, skipped = compare(analytic[p.name], array_setter(p.value), p.size)
                row.param_errors[p.name], row.skipped = err, row.skipped + skipped
            rows.append(row)

    by_name = {r.layer: r for r in rows}
    for layer, ins in calls:  # what each layer passed back = the errors of the nodes it reads
        errs = [inputs.get(names_in[i]) if i < n_in else by_name[node_of[i]].output_error for i in ins]
        errs = [e for e in errs if e is not None]
        if errs:
            r = by_name[layer.name]
            r.passed_error = max(errs + ([r.passed_error] if r.passed_error is not None else []))
    bad = lambda e: e is not None and e > rtol  # noqa: E731
    for r in rows:
        r.ok = not (bad(r.output_error) or bad(r.param_error) or bad(r.passed_error))
    first, message = None, ""
    outputs = set(clone.output_names)
    for layer, _ in reversed(calls):
        r = by_name[layer.name]
        if bad(r.output_error):
            if layer.name in outputs:
                first = "loss"
                message = (f"The loss's gradient disagrees: dL/d output of '{layer.name}' has relative error "
                           f"{r.output_error:.2e}. Check the loss's backward.")
                break
            continue
        if bad(r.param_error) or bad(r.passed_error):
            first = layer.name
            what = []
            if bad(r.param_error):
                worst = max((e, n) for n, e in r.param_errors.items() if e is not None)
                what.append(f"its param gradient {worst[1]} (relative error {worst[0]:.2e})")
            if bad(r.passed_error):
                what.append(f"the gradient it passes to its inputs (relative error {r.passed_error:.2e})")
            message = (f"Layer '{layer.name}' ({r.kind}) is the first to disagree, walking back from the loss: it "
                       f"received a correct gradient, but its backward is wrong for {' and for '.join(what)}.")
            break
    if first is None and not all(r.ok for r in rows):  # e.g. a wrong gradient into a shared layer
        first = next(r.layer for r in reversed(rows) if not r.ok)
        message = f"Layer '{first}' is the last (in forward order) whose gradients disagree."
    if first is None:
        message = f"All gradients agree (max relative error {_max_error(rows, inputs):.1e})."
    result = ModelGradientCheck(rows, inputs, first, message, rtol, eps,
                                "all" if max_elements is None else max_elements)
    result.input_skipped = input_skipped
    return result


# ---------------------------------------------------------------------------- the model doctor
class DoctorCheck:
    """One check of :func:`doctor`: ``status`` is 'pass', 'warn', 'fail' or 'skip'; ``measured`` says
    what was measured (numbers), ``advice`` what to do about a warning or failure; ``values``
    holds the numbers for programs."""

    def __init__(self, name: str, status: str, measured: str, advice: str = "", **values):
        self.name, self.status, self.measured, self.advice, self.values = name, status, measured, advice, values

    def __repr__(self) -> str:
        return f"DoctorCheck({self.name!r}, {self.status!r}, {self.measured!r})"


_RANK = {"skip": 0, "pass": 1, "warn": 2, "fail": 3}


class DoctorReport:
    """What :func:`doctor` found: ``checks`` in order; ``str(report)`` is a readable table.

    ``report['overfit']`` is one :class:`DoctorCheck`; ``report.status`` the worst status;
    ``report.ok`` is True when nothing failed; ``report.gradients`` the full
    :class:`ModelGradientCheck`.
    """

    def __init__(self, checks, gradients=None):
        self.checks, self.gradients = list(checks), gradients

    def __getitem__(self, name: str) -> DoctorCheck:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"no check {name!r}; checks: {[c.name for c in self.checks]}.")

    @property
    def status(self) -> str:
        return max((c.status for c in self.checks), key=_RANK.__getitem__, default="skip")

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    def __str__(self) -> str:
        rows = [(c.name, c.status.upper(), c.measured) for c in self.checks]
        out = ["Model doctor", format_table(("check", "status", "measured"), rows)]
        advice = [f"- {c.name}: {c.advice}" for c in self.checks if c.advice and c.status in ("warn", "fail")]
        if advice:
            out += ["", "What to do:"] + advice
        return "\n".join(out)

    def print_report(self) -> None:
        print(self)

    def __repr__(self) -> str:
        return f"DoctorReport({', '.join(f'{c.name}={c.status}' for c in self.checks)})"


def _softmax_outputs(sess):
    """``[(output name, loss, classes)]`` for the outputs trained with a softmax crossentropy."""
    out = []
    model = sess.model
    shapes = model.outshape if model.num_outputs > 1 else [model.outshape]
    for k, (fn, layer) in enumerate(zip(sess.losses, model.output_layers)):
        act = getattr(getattr(layer, "activation", None), "registry_name", None)
        if fn.output_activation == "softmax" and (fn.from_logits or act == "softmax"):
            out.append((model.output_names[k], fn, shapes[k][-1]))
    return out


def _check_initial_loss(sess, x, y) -> DoctorCheck:
    name = "initial loss"
    outs = _softmax_outputs(sess)
    if not outs:
        return DoctorCheck(name, "skip", "not a softmax crossentropy: no reference value")
    logs = sess.evaluate((x, y), batch_size=len(y[0]) if isinstance(y, tuple) else len(y))
    worst, parts, values = "pass", [], {}
    for out_name, fn, classes in outs:
        key = "loss" if sess.model.num_outputs == 1 else f"{out_name}_loss"
        value, ref = logs[key], math.log(classes)
        ratio = value / ref
        status = "pass" if abs(ratio - 1) <= 0.25 else "warn" if ratio <= 2 else "fail"
        worst = max(worst, status, key=_RANK.__getitem__)
        parts.append(f"{'' if sess.model.num_outputs == 1 else out_name + ': '}{value:.3f} vs ln({classes}) = "
                     f"{ref:.3f} ({ratio:.2f}x)")
        values[out_name] = {"loss": value, "expected": ref, "ratio": ratio}
    return DoctorCheck(name, worst, "; ".join(parts),
                       "at initialisation a C-class softmax should guess about 1/C for every class. A much higher "
                       "loss means confident wrong guesses: too large initial weights (a custom initializer?), "
                       "unscaled inputs, or a last layer that is not initialised like the others.", **values)


def _check_labels(sess, y) -> DoctorCheck:
    """Labels against each output's loss: one-hot for categorical, integers for sparse, [0, 1] for binary."""
    from cutedl import losses

    name = "labels"
    model = sess.model
    ys = list(y) if isinstance(y, tuple) else [y]
    shapes = model.outshape if model.num_outputs > 1 else [model.outshape]
    notes, worst, advice = [], "pass", []
    for out_name, fn, yi, shape in zip(model.output_names, sess.losses, ys, shapes):
        prefix = "" if model.num_outputs == 1 else f"{out_name}: "
        classes = shape[-1]
        status, note = "pass", ""
        if isinstance(fn, losses.CategoricalCrossentropy):
            if yi.shape[1:] == tuple(shape[:-1]) or (yi.shape[1:] == tuple(shape[:-1]) + (1,) and classes > 1):
                status, note = "fail", f"integer labels {yi.shape} for CategoricalCrossentropy (wants one-hot)"
                advice.append("use SparseCategoricalCrossentropy with integer labels, or one-hot encode them: "
                              f"cutedl.datasets.one_hot(y, {classes}).")
            elif yi.shape[1:] != tuple(shape):
                status, note = "fail", f"labels {yi.shape} do not match the outputs (batch, {', '.join(map(str, shape))})"
            else:
                low, high = float(yi.min()), float(yi.max())
                sums = yi.sum(axis=-1)
                if low < 0 or high > 1 or not np.allclose(sums, 1.0, atol=1e-3):
                    status = "fail"
                    note = f"rows are not distributions (values {low:g}..{high:g}, row sums {sums.min():.3g}..{sums.max():.3g})"
                    advice.append("categorical targets must be one-hot (or probability) rows summing to 1.")
                else:
                    present = np.unique(yi.reshape(-1, classes).argmax(axis=-1)).size
                    note = f"one-hot, {present} of {classes} classes present"
        elif isinstance(fn, losses.SparseCategoricalCrossentropy):
            if yi.shape[1:] == tuple(shape) and classes > 1:
                status, note = "fail", f"one-hot labels {yi.shape} for SparseCategoricalCrossentropy (wants integers)"
                advice.append("use CategoricalCrossentropy with one-hot labels, or pass y.argmax(axis=-1).")
            elif yi.dtype.kind == "f" and not np.all(yi == np.floor(yi)):
                status, note = "fail", "fractional labels for SparseCategoricalCrossentropy"
            elif yi.size and (yi.min() < 0 or yi.max() >= classes):
                status = "fail"
                note = f"labels {int(yi.min())}..{int(yi.max())} outside [0, {classes})"
                advice.append(f"give the last layer one unit per class ({int(yi.max()) + 1}?).")
            else:
                note = f"integer labels, {np.unique(yi).size} of {classes} classes present"
        elif isinstance(fn, losses.BinaryCrossentropy):
            if yi.size and (yi.min() < 0 or yi.max() > 1):
                status, note = "fail", f"targets {float(yi.min()):g}..{float(yi.max()):g} outside [0, 1]"
                advice.append("binary crossentropy needs targets in [0, 1] (0/1 labels).")
            else:
                note = f"targets in [0, 1], mean {float(yi.mean()):.3f}"
        else:
            if yi.shape[1:] != tuple(shape):
                status = "warn"
                note = f"targets {yi.shape} differ from the outputs (batch, {', '.join(map(str, shape))})"
                advice.append("check that each target has the output's shape.")
            else:
                note = f"targets of the output shape, mean {float(yi.mean()):.3g}, std {float(yi.std()):.3g}"
        worst = max(worst, status, key=_RANK.__getitem__)
        notes.append(prefix + note)
    return DoctorCheck(name, worst, "; ".join(notes), " ".join(advice))


def _check_input_scale(model, x) -> DoctorCheck:
    name = "input scale"
    xs = list(x) if isinstance(x, tuple) else [x]
    notes, worst, values = [], "pass", {}
    for k, xi in enumerate(xs):
        prefix = "" if len(xs) == 1 else f"input {k}: "
        if xi.dtype.kind != "f":
            notes.append(prefix + "integer ids (not scaled)")
            continue
        peak, mean, std = float(np.abs(xi).max()), float(xi.mean()), float(xi.std())
        values[f"input_{k}"] = {"max_abs": peak, "mean": mean, "std": std}
        status = "warn" if peak > 50 or std > 10 else "pass"
        worst = max(worst, status, key=_RANK.__getitem__)
        notes.append(f"{prefix}|x| <= {peak:.3g}, mean {mean:.3g}, std {std:.3g}")
    return DoctorCheck(name, worst, "; ".join(notes),
                       "the inputs look unscaled (0-255 pixels?); scale them to about [0, 1] or mean 0 / std 1, "
                       "e.g. x / 255 or cutedl.datasets.normalize(x).", **values)


def _activation_checks(model, x) -> list:
    """Dead ReLU units and saturated sigmoid/tanh outputs after initialisation, on the batch ``x``."""
    from cutedl.layers.base import no_grad
    from cutedl.training import step

    watched = {}
    for layer in model.layers:
        act = getattr(getattr(layer, "activation", None), "registry_name", None)
        # recurrent cells with gates (LSTM, GRU) output gate * activation: not the activation's range
        if act in ("relu", "sigmoid", "tanh") and not hasattr(layer, "recurrent_activation"):
            watched[layer.name] = (layer, act)
    if not watched:
        none = "no ReLU/sigmoid/tanh layer"
        return [DoctorCheck("dead ReLUs", "skip", none), DoctorCheck("saturation", "skip", none)]
    with _Probe(model) as probe, no_grad():
        probe.keep_outputs = True
        model.reset_states()
        model.forward(model.check_input(step.to_device(x)), training=False)
        outputs = {name: probe.outputs.get(name, []) for name in watched}
    dead, saturated = {}, {}
    for name, (layer, act) in watched.items():
        if not outputs[name]:
            continue
        y = outputs[name][-1]
        if act == "relu":
            axis = 1 if type(layer).__name__.startswith("Conv") and y.ndim > 2 else y.ndim - 1
            alive = np.moveaxis(y > 0, axis, -1).reshape(-1, y.shape[axis]).any(axis=0)
            dead[name] = float(1.0 - alive.mean())
        else:
            edge = np.abs(y - 0.5) > 0.49 if act == "sigmoid" else np.abs(y) > 0.99
            saturated[name] = float(edge.mean())

    def grade(shares, what, advice):
        if not shares:
            return DoctorCheck(what, "skip", f"no {'ReLU' if what == 'dead ReLUs' else 'sigmoid/tanh'} layer")
        worst = max(shares.values())
        status = "pass" if worst < 0.1 else "warn" if worst < 0.5 else "fail"
        text = ", ".join(f"{n} {100 * s:.0f} %" for n, s in shares.items())
        return DoctorCheck(what, status, text, advice, shares=shares)

    return [grade(dead, "dead ReLUs", "units that output 0 for every sample get no gradient and never learn: "
                                      "check the initializer (He/Glorot), the bias initializer and the input scale."),
            grade(saturated, "saturation", "saturated sigmoid/tanh outputs (|y| near the limits) pass almost no "
                                           "gradient: use smaller initial weights or scale the inputs.")]


def _check_overfit(model, loss, optimizer, x, y, max_steps, custom_objects):
    """Train a copy on one batch: a healthy model and optimizer drive its loss near zero quickly."""
    from cutedl import optimizers
    from cutedl.training.session import Session

    name = "overfit one batch"
    clone = model_copy(model, custom_objects=custom_objects)
    opt = optimizers.get(optimizers.serialize(optimizer)) if optimizer is not None else optimizers.Adam(1e-3)
    sess = Session(clone, loss=_copy_loss(loss), optimizer=opt)
    start = sess.evaluate((x, y), batch_size=len(y[0]) if isinstance(y, tuple) else len(y))["loss"]
    target = 0.05 * start
    last, steps = start, 0
    for steps in range(1, max_steps + 1):
        last = sess.train_on_batch(x, y)["loss"]
        if not math.isfinite(last) or last <= target:
            break
    final = sess.evaluate((x, y), batch_size=len(y[0]) if isinstance(y, tuple) else len(y))["loss"]
    label = f"{type(opt).__name__}(lr={opt.current_lr:g})"
    values = dict(start=start, final=final, steps=steps, target=target, optimizer=label)
    n = len(y[0]) if isinstance(y, tuple) else len(y)
    if math.isfinite(final) and final <= target:
        return DoctorCheck(name, "pass", f"{n} samples: loss {start:.3g} -> {final:.3g} (5 % of the start) in {steps} "
                                         f"steps with {label}", **values)
    if not math.isfinite(final) or final >= 0.9 * start:
        return DoctorCheck(name, "fail", f"{n} samples: loss {start:.3g} -> {final:.3g} after {steps} steps with {label}",
                           "the loss does not go down even on one batch: check the learning rate (0? far too "
                           "high?), frozen layers (trainable=False), and the gradient check above.", **values)
    return DoctorCheck(name, "warn", f"{n} samples: loss {start:.3g} -> {final:.3g} after {steps} steps with {label} "
                                     f"(target {target:.3g})",
                       "the loss falls but slowly: a small learning rate, a model too small for the batch, or "
                       "strong regularization (dropout, weight decay).", **values)


def doctor(model, x, y, loss=None, optimizer=None, *, samples: int = 4, batch_size: int = 32, stats_samples: int = 256,
           max_steps: int = 200, seed: int = 0, custom_objects: dict | None = None) -> DoctorReport:
    """Run the checks practitioners do by hand before a long training run; return a :class:`DoctorReport`.

    Checks (each 'pass', 'warn', 'fail' or 'skip', with the numbers measured):

    - **gradients**: :func:`check_model_gradients` on the first ``samples`` samples.
    - **initial loss**: a C-class softmax crossentropy should start near ln(C) (pass within 25 %,
      warn up to 2x, fail above), measured on the first ``stats_samples`` samples.
    - **overfit one batch**: a copy of the model, trained with a copy of ``optimizer`` (default: the
      compiled one, else Adam(1e-3)) on the first ``batch_size`` samples, must bring the loss to 5 %
      of its start within ``max_steps`` steps (fail when it drops less than 10 %).
    - **labels**: one-hot rows for CategoricalCrossentropy, integer labels in range for the sparse
      one, targets in [0, 1] for BinaryCrossentropy, the output's shape for regression.
    - **input scale**: float inputs with ``|x| > 50`` (unscaled 0-255 pixels) or std > 10 warn.
    - **dead ReLUs**: per ReLU layer, the share of units that output 0 for every sample (warn from
      10 %, fail from 50 %); **saturation**: per sigmoid/tanh layer, the share of outputs within
      1 % of their limits (same thresholds).

    The model's weights and state are never changed: the checks run on copies
    (:func:`model_copy`).

    Args:
        model: an assembled :class:`cutedl.Model`.
        x, y: training data (arrays, or tuples of arrays for several inputs/outputs); only the
            first samples are used.
        loss: a loss (list/dict for several outputs); default the compiled model's.
        optimizer: the optimizer to try on one batch (an instance or a name; copied, never stepped).
        samples, batch_size, stats_samples, max_steps: sizes of the checks (see above).
        seed: seed of the gradient check's element sampling.
        custom_objects: ``{class name: Layer subclass}`` for layers of your own, when not registered.

    Example:
        >>> report = testing.doctor(model, x_train, y_train, loss='categorical_crossentropy')
        >>> print(report)          # a table: check, status, measured
        >>> report['overfit one batch'].status
        'pass'
    """
    from cutedl import optimizers
    from cutedl._validate import check_int
    from cutedl.model import Model
    from cutedl.training.session import Session

    who = "doctor"
    if not isinstance(model, Model):
        raise TypeError(f"{who}: model must be a cutedl Model, got {type(model).__name__}.")
    samples = check_int(who, "samples", samples, minimum=1)
    batch_size = check_int(who, "batch_size", batch_size, minimum=1)
    stats_samples = check_int(who, "stats_samples", stats_samples, minimum=1)
    max_steps = check_int(who, "max_steps", max_steps, minimum=1)
    loss = _session_loss(model, loss, who)
    if optimizer is None:
        try:
            optimizer = model.session.optimizer
        except RuntimeError:
            optimizer = None
    elif not isinstance(optimizer, optimizers.Optimizer):
        optimizer = optimizers.get(optimizer)
    n = max(samples, batch_size, stats_samples)
    xh = _host_batch(_rows(tuple(x), n) if isinstance(x, (tuple, list)) else x[:n], who, "x")
    yh = _host_batch(_rows(tuple(y), n) if isinstance(y, (tuple, list)) else y[:n], who, "y")
    try:
        probe_sess = Session(model_copy(model, custom_objects=custom_objects), loss=_copy_loss(loss), optimizer="sgd")
    except ValueError as err:
        raise ValueError(f"{who}: {err}") from None
    labels = _check_labels(probe_sess, yh)
    checks, grads = [], None
    if labels.status == "fail":
        skipped = "skipped: the labels do not fit the loss (see labels)"
        checks += [DoctorCheck(c, "skip", skipped) for c in ("gradients", "initial loss", "overfit one batch")]
    else:
        grads = check_model_gradients(model, _rows(xh, samples), _rows(yh, samples), loss, max_elements=32, seed=seed,
                                      custom_objects=custom_objects)
        measured = f"max relative error {grads.max_error:.1e} over {len(grads.rows)} layers"
        if not grads.ok:
            measured += f"; first to disagree: {grads.first_failure}"
        checks.append(DoctorCheck("gradients", "pass" if grads.ok else "fail", measured,
                                  "" if grads.ok else grads.message, first_failure=grads.first_failure))
        checks.append(_check_initial_loss(probe_sess, _rows(xh, stats_samples), _rows(yh, stats_samples)))
        checks.append(_check_overfit(model, loss, optimizer, _rows(xh, batch_size), _rows(yh, batch_size), max_steps,
                                     custom_objects))
    checks.append(labels)
    checks.append(_check_input_scale(model, _rows(xh, stats_samples)))
    checks.extend(_activation_checks(probe_sess.model, _rows(xh, stats_samples)))
    return DoctorReport(checks, grads)
