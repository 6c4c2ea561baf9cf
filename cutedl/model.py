"""Model: a stack of layers. Assemble, forward, backward, predict, summary, weights, save/load.

    >>> model = Model([Dense(400, inshape=784, activation='relu'), Dense(10)]).assemble()
    >>> model.predict(x).shape
    (n, 10)

This module owns the architecture and its computation; it has no training loop. Keras-style
sugar (``compile`` / ``fit`` / ``evaluate``) builds the trainer named by ``Model.session_class``,
which :mod:`cutedl.training.session` sets to :class:`cutedl.Session` when it is imported (as
``import cutedl`` always does), so this module never imports the training package.
"""
from __future__ import annotations

import math
import os

from cutedl import backend
from cutedl._io import load_json_npz, save_json_npz
from cutedl._validate import check_int
from cutedl.data.sources import as_source, is_source
from cutedl.layers.base import (Input, InputLayer, Layer, Node, fmt_shape, forward_takes_mask, grad_enabled, no_grad,
                               snake_case, unique_name)
from cutedl.layers.base import registry as layer_registry

def _layer_class(name, custom_objects):
    """The layer class named ``name``: from ``custom_objects`` first, then the registry."""
    if custom_objects is not None:
        if not isinstance(custom_objects, dict):
            raise TypeError(f"custom_objects must be a dict {{class name: class}}, got {type(custom_objects).__name__}.")
        if name in custom_objects:
            cls = custom_objects[name]
            if not (isinstance(cls, type) and issubclass(cls, Layer)):
                raise TypeError(f"custom_objects[{name!r}] must be a Layer subclass, got {cls!r}.")
            return cls
    try:
        return layer_registry.lookup(name)
    except ValueError as err:
        raise ValueError(f"{err} For a layer class of your own, decorate it with @cutedl.layers.register or pass "
                         f"custom_objects={{{name!r}: {name}}} to Model.load.") from None


FORMAT = "cutedl-model"
FORMAT_VERSION = 1


class _Call:
    """One layer call of the graph: ``layer`` maps the nodes ``ins`` to the node ``out`` (ids)."""

    __slots__ = ("layer", "ins", "out", "shared")

    def __init__(self, layer, ins, out):
        self.layer, self.ins, self.out, self.shared = layer, list(ins), out, False


class Model:
    """A network of layers: a sequential stack, or a graph (functional model).

    Args:
        layers: list of :class:`~cutedl.layers.Layer` for a sequential model; the first needs
            ``inshape`` (or pass ``inshape`` to :meth:`assemble`).
        name: model name.
        inputs, outputs: for a functional model, the input node(s) from :func:`cutedl.layers.Input`
            and the output node(s) of layer calls (a node or a list). Such a model is assembled
            already (its layers were built when called).

    A sequential model is a graph too: ``Model([a, b, c])`` runs as ``c(b(a(input)))``. Forward
    runs the layer calls in topological order; backward runs them in reverse, a node's gradient
    being the sum over its consumers; a layer called several times (shared) gets the sum of the
    gradients of its calls. Masks flow along edges.

    Example (a residual block):
        >>> x = layers.Input((64,))
        >>> h = layers.Dense(64, activation='relu')(x)
        >>> y = layers.Dense(10, activation='softmax')(layers.Add()([x, h]))
        >>> model = Model(inputs=x, outputs=y)
    """

    session_class = None
    """The trainer ``compile`` builds (``cutedl.Session``; set by :mod:`cutedl.training.session`)."""

    def __init__(self, layers=None, name: str = "model", inputs=None, outputs=None):
        if not isinstance(name, str) or not name:
            raise TypeError(f"Model: name must be a non-empty string, got {name!r}.")
        self.name = name
        self.layers: list[Layer] = []
        self.assembled = False
        self.functional = inputs is not None or outputs is not None
        self._session = None
        self.output_mask = None
        self.output_masks: list = []
        if self.functional:
            if layers is not None:
                raise TypeError("Model: pass either a list of layers (sequential) or inputs= and outputs= "
                                "(functional), not both.")
            self._trace(inputs, outputs)
            return
        if layers is not None and not isinstance(layers, (list, tuple)):
            raise TypeError(f"Model expects a list of layers, got {type(layers).__name__}.")
        for layer in layers or []:
            self.add(layer)

    # ------------------------------------------------------------------ building
    def add(self, layer: Layer) -> "Model":
        """Append a layer (before :meth:`assemble`; sequential models only)."""
        if self.functional:
            raise TypeError("Model.add: a functional model is defined by its inputs and outputs; call layers on "
                            "nodes instead.")
        if not isinstance(layer, Layer):
            raise TypeError(f"Model.add expects a cutedl Layer, got {type(layer).__name__}: {layer!r}.")
        if layer.multi_input:
            raise TypeError(f"Layer {layer.describe()} merges several inputs and needs a functional model "
                            f"(Model(inputs=..., outputs=...)).")
        if any(layer is l for l in self.layers):
            raise ValueError(f"Layer {layer.describe()} is already in this model; create a new one.")
        self.layers.append(layer)
        self.assembled = False
        return self

    def assemble(self, inshape=None) -> "Model":
        """Infer every layer's shapes from the first layer's ``inshape``, create all params.

        Returns the model, so ``Model([...]).assemble()`` reads naturally. A functional model is
        assembled when it is created; this returns it unchanged.
        """
        if self.functional:
            return self
        if not self.layers:
            raise ValueError("Model has no layers: pass a list of layers or call add() before assemble().")
        first = self.layers[0]
        shape = inshape if inshape is not None else first.inshape
        if shape is None:
            raise ValueError(
                f"The first layer {first.describe()} has no inshape, so the model cannot infer its shapes. "
                f"Give it one, e.g. {type(first).__name__}(..., inshape=784), or call assemble(inshape=...)."
            )
        taken = {l.name for l in self.layers if l.name is not None}
        if len(taken) != sum(l.name is not None for l in self.layers):
            raise ValueError(f"Layer names must be unique within a model, got {[l.name for l in self.layers]}.")
        for layer in self.layers:
            if layer.name is None:
                layer.name = unique_name(snake_case(type(layer).__name__), taken)
                taken.add(layer.name)
        for layer in self.layers:
            if getattr(layer, "returns_list", False):
                raise ValueError(
                    f"Layer {layer.describe()} returns a list of arrays (return_state=True, or "
                    f"Bidirectional with merge_mode=None), but a sequential Model passes one array from "
                    f"layer to layer. Use return_state=False and read layer.states after a forward (or "
                    f"a merge_mode), or call the layer on its own (layer._build(inshape); layer.forward(x)).")
        for i, layer in enumerate(self.layers):
            # Later layers must not keep an inshape from a previous assemble.
            if i > 0 and layer.built:
                layer.inshape = None
            layer._build(shape)
            shape = layer.outshape
        self._input_shapes = [tuple(first.inshape)]
        self._input_names = ["input"]
        self._calls = [_Call(layer, [i], i + 1) for i, layer in enumerate(self.layers)]
        self._input_ids, self._output_ids = [0], [len(self.layers)]
        self._finish_graph()
        self.assembled = True
        return self

    def _trace(self, inputs, outputs) -> None:
        """Build the call list of a functional model from its input and output nodes."""
        self._multi_in = isinstance(inputs, (list, tuple))
        self._multi_out = isinstance(outputs, (list, tuple))
        ins = list(inputs) if self._multi_in else [inputs]
        outs = list(outputs) if self._multi_out else [outputs]
        for what, nodes in (("inputs", ins), ("outputs", outs)):
            if not nodes or not all(isinstance(n, Node) for n in nodes):
                raise TypeError(f"Model: {what} must be nodes (from layers.Input and layer calls), got {nodes!r}.")
        for n in ins:
            if not isinstance(n.layer, InputLayer):
                raise ValueError(f"Model: inputs must come from layers.Input(...), got the output of "
                                 f"{n.layer.describe()}.")
        ids: dict = {}  # Node -> local id (inputs first)
        for n in ins:
            if id(n) in ids:
                raise ValueError("Model: the same input node is given twice.")
            ids[id(n)] = len(ids)
        calls, seen = [], set()

        def visit(node, path):
            if id(node) in ids:
                return
            if isinstance(node.layer, InputLayer):
                raise ValueError(f"Model: the outputs depend on the input {node.layer.name!r}, which is not in "
                                 f"inputs; pass every Input the outputs need.")
            if id(node) in path:
                raise ValueError("Model: the graph has a cycle.")
            for src in node.inputs:
                visit(src, path | {id(node)})
            if id(node) not in ids:
                ids[id(node)] = len(ids)
                calls.append((node, [ids[id(s)] for s in node.inputs]))

        for n in outs:
            visit(n, frozenset())
        self._calls = [_Call(node.layer, srcs, ids[id(node)]) for node, srcs in calls]
        self._input_ids = list(range(len(ins)))
        self._output_ids = [ids[id(n)] for n in outs]
        self._input_shapes = [n.shape for n in ins]
        self._input_names = [n.layer.name for n in ins]
        self._input_dtypes = [n.layer.dtype for n in ins]
        self.layers = []
        for c in self._calls:
            if not any(c.layer is l for l in self.layers):
                self.layers.append(c.layer)
        names = [l.name for l in self.layers] + self._input_names
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"Layer names must be unique within a model; repeated: {dup}.")
        self._finish_graph()
        self.assembled = True

    def _finish_graph(self) -> None:
        """Derived facts of the call list: shared layers, last uses, layers fed only by inputs."""
        counts: dict = {}
        for c in self._calls:
            counts[id(c.layer)] = counts.get(id(c.layer), 0) + 1
        for c in self._calls:
            c.shared = counts[id(c.layer)] > 1
        self._last_use = {}
        for k, c in enumerate(self._calls):
            for i in c.ins:
                self._last_use[i] = k
        inputs = set(self._input_ids)
        fed = {}
        for c in self._calls:
            only_inputs = not c.layer.multi_input and all(i in inputs for i in c.ins)
            fed[id(c.layer)] = fed.get(id(c.layer), True) and only_inputs
        self._input_fed = [l for l in self.layers if fed.get(id(l))]
        self.output_layers = [next(c.layer for c in self._calls if c.out == o) if o not in inputs else None
                              for o in self._output_ids]
        self.first_layers = [c.layer for c in self._calls if any(i in inputs for i in c.ins)]
        if not hasattr(self, "_multi_in"):
            self._multi_in = self._multi_out = False

    def _require_assembled(self, what: str):
        if not self.assembled:
            raise RuntimeError(f"Model is not assembled: call model.assemble() before {what}.")

    @property
    def inshape(self):
        """The input shape (without batch); a list of them for a model with several inputs."""
        if self.functional:
            return list(self._input_shapes) if self._multi_in else self._input_shapes[0]
        return self.layers[0].inshape if self.layers else None

    @property
    def outshape(self):
        """The output shape (without batch); a list of them for a model with several outputs."""
        if not self.assembled:
            return None
        shapes = [l.outshape for l in self.output_layers]
        return shapes if self._multi_out else shapes[0]

    @property
    def num_inputs(self) -> int:
        return len(self._input_ids) if self.assembled else 1

    @property
    def num_outputs(self) -> int:
        return len(self._output_ids) if self.assembled else 1

    @property
    def output_names(self) -> list:
        """Names of the output layers (log keys of a multi-output model use them)."""
        return [l.name for l in self.output_layers] if self.assembled else []

    @property
    def dtype(self):
        return self.layers[0].dtype if self.layers else backend.floatx()

    @property
    def params(self) -> list:
        """Every param, layer by layer, in creation order."""
        return [p for layer in self.layers for p in layer.params]

    @property
    def trainable_params(self) -> list:
        return [p for p in self.params if p.trainable]

    def count_params(self) -> int:
        return sum(p.size for p in self.params)

    # ------------------------------------------------------------------ computation
    def _input_list(self, x, who: str) -> list:
        if self._multi_in:
            if not isinstance(x, (list, tuple)) or len(x) != len(self._input_ids):
                raise ValueError(f"{who}: this model has {len(self._input_ids)} inputs "
                                 f"({', '.join(self._input_names)}); pass a list or tuple of {len(self._input_ids)} "
                                 f"arrays, got {type(x).__name__}.")
            return list(x)
        return [x]

    def check_input(self, x):
        """Validate a batch: an array of shape ``(batch, *inshape)`` (a list of them for several inputs)."""
        self._require_assembled("using it")
        xs = self._input_list(x, "Model input")
        out = []
        for k, (xi, shape) in enumerate(zip(xs, self._input_shapes)):
            if not hasattr(xi, "shape") or not hasattr(xi, "dtype"):
                xi = backend.as_array(xi, "Model input", "x")
            if xi.dtype.kind not in "biuf":
                raise TypeError(f"Model input must be numeric, got an array of dtype {xi.dtype}.")
            if xi.ndim != len(shape) + 1 or any(e is not None and e != a for e, a in zip(shape, xi.shape[1:])):
                hint = ""
                if xi.ndim > 2 and len(shape) == 1 and math.prod(xi.shape[1:]) == shape[0]:
                    hint = " Reshape the data with x.reshape(len(x), -1) or start the model with Flatten()."
                who = (f"layer {self.layers[0].describe()}" if not self.functional
                       else f"input {self._input_names[k]!r}")
                if len(xs) > 1 and len(xi) != len(xs[0]):
                    raise ValueError(f"Model input: the inputs have {len(xs[0])} and {len(xi)} samples.")
                raise ValueError(f"Model input: {who} expected input of shape {fmt_shape(shape)}, "
                                 f"got {tuple(xi.shape)}.{hint}")
            out.append(xi)
        if len(out) > 1 and len({len(a) for a in out}) > 1:
            raise ValueError(f"Model input: the inputs have different numbers of samples: {[len(a) for a in out]}.")
        return out if self._multi_in else out[0]

    def forward(self, x, training: bool = False, logits=False):
        """Run every layer call. ``logits=True`` (or one bool per output) makes the output layers
        skip their activation (fused losses).

        Masks flow along edges (see :mod:`cutedl.layers.base`): after each call the layer's
        ``compute_mask`` gives the mask of its output, passed as ``mask=`` to the next layer
        whose ``forward`` takes one. The outputs' masks are kept in ``self.output_masks``
        (``self.output_mask`` is the first).
        """
        self._require_assembled("forward()")
        xs = self._input_list(x, "Model.forward")
        values, masks = {}, {}
        for k, (nid, xi) in enumerate(zip(self._input_ids, xs)):
            # Indices stay as given for layers that read them (Embedding has an ``integer_input``
            # bound and checks float ids itself); anything else is cast to the model's float dtype.
            if xi.dtype != self.dtype and not self._reads_integers(nid):
                xi = xi.astype(self.dtype)
            values[nid] = xi
        flags = logits if isinstance(logits, (list, tuple)) else [logits] * len(self._output_ids)
        outs = dict(zip(self._output_ids, flags))
        keep = grad_enabled()
        self._snapshots = {}
        for k, c in enumerate(self._calls):
            layer = c.layer
            layer.output_logits = bool(outs.get(c.out, False))
            args = [values[i] for i in c.ins]
            ms = [masks.get(i) for i in c.ins]
            arg, m = (args, ms) if layer.multi_input else (args[0], ms[0])
            has_mask = any(v is not None for v in ms)
            if has_mask and forward_takes_mask(layer):
                y = layer.forward(arg, training=training, mask=m)
            else:
                y = layer.forward(arg, training=training)
            masks[c.out] = layer.compute_mask(arg, m)
            values[c.out] = y
            if c.shared and keep:
                self._snapshots[k] = dict(layer.__dict__)
            for i in c.ins:  # free what no later call reads (predict's peak memory)
                if self._last_use.get(i) == k and i not in outs:
                    values.pop(i, None)
        self._out_meta = {o: (values[o].shape, values[o].dtype) for o in self._output_ids}
        self.output_masks = [masks.get(o) for o in self._output_ids]
        self.output_mask = self.output_masks[0]
        result = [values[o] for o in self._output_ids]
        return result if self._multi_out else result[0]

    def _reads_integers(self, nid) -> bool:
        return any(getattr(c.layer, "integer_input", None) is not None for c in self._calls if nid in c.ins)

    def backward(self, grad, input_grad: bool = False):
        """Backpropagate dL/doutput (a list of them for several outputs), setting every param's grad.

        Masks need no handling here: a layer that took a mask in ``forward`` cached it and gives
        masked steps no gradient. A shared layer's params get the sum over its calls.

        Returns dL/dinput (a list for several inputs) when ``input_grad`` is True, else None:
        layers fed by the inputs then skip their input gradient, a quarter of an MLP's backward
        FLOPs.
        """
        grads_out = list(grad) if self._multi_out else [grad]
        if len(grads_out) != len(self._output_ids):
            raise ValueError(f"Model.backward: the model has {len(self._output_ids)} outputs, got "
                             f"{len(grads_out)} gradients.")
        for layer in self._input_fed:
            layer.skip_input_grad = not input_grad
        grads: dict = {}
        for o, g in zip(self._output_ids, grads_out):
            grads[o] = g if o not in grads else grads[o] + g
        shared: dict = {}
        for k in range(len(self._calls) - 1, -1, -1):
            c = self._calls[k]
            layer = c.layer
            g = grads.pop(c.out, None)
            if g is None:  # no consumer passed a gradient back (e.g. it skipped its input gradient)
                continue
            if c.shared:
                layer.__dict__.update(self._snapshots[k])
            gin = layer.backward(g)
            if c.shared:
                acc = shared.setdefault(id(layer), {})
                for p in layer.params:
                    if p.grad is not None:
                        acc[id(p)] = p.grad.copy() if id(p) not in acc else acc[id(p)] + p.grad
            for nid, gi in zip(c.ins, gin if layer.multi_input else [gin]):
                if gi is not None:
                    grads[nid] = gi if nid not in grads else grads[nid] + gi
        for layer in self.layers:
            acc = shared.get(id(layer))
            if acc:
                for p in layer.params:
                    if id(p) in acc:
                        p.grad = acc[id(p)]
        if not input_grad:
            return None
        ins = [grads.get(i) for i in self._input_ids]
        return ins if self._multi_in else ins[0]

    def reset_states(self) -> None:
        """Clear the carried state of every stateful layer (``stateful=True`` RNNs, wrappers)."""
        for layer in self.layers:
            reset = getattr(layer, "reset_states", None)
            if reset is not None:
                reset()

    def predict(self, x, batch_size: int | None = None):
        """Outputs for ``x`` (inference mode), ``batch_size`` rows at a time (all at once if None).

        Runs under :func:`~cutedl.layers.base.no_grad` (no training caches are kept) and returns
        host (NumPy) arrays whatever the backend (a list of them for several outputs).
        """
        if batch_size is not None:
            batch_size = check_int("predict", "batch_size", batch_size, minimum=1, what="a positive integer")
        if is_source(x):
            return self._predict_source(x)
        xs = self._input_list(self.check_input(x), "predict")
        np = backend.np
        for xi in xs:
            if xi.dtype.kind == "f":
                finite = backend.to_host(backend.xp.isfinite(xi)) if not backend.is_host_array(xi) else np.isfinite(xi)
                if not finite.all():
                    raise ValueError(f"predict: the input holds {xi.size - int(finite.sum())} NaN/inf value(s); "
                                     f"clean or impute them first.")
        n = len(xs[0])
        step = n if batch_size is None or batch_size >= n else batch_size
        outs = None
        with no_grad():
            for i in range(0, max(n, 1), max(step, 1)):
                part = [backend.to_device(xi[i:i + step]) for xi in xs]
                ys = self.forward(part if self._multi_in else part[0], training=False)
                ys = [backend.to_host(y) for y in (ys if self._multi_out else [ys])]
                if step >= n:
                    outs = ys
                    break
                if outs is None:
                    outs = [np.empty((n,) + y.shape[1:], dtype=y.dtype) for y in ys]
                for o, y in zip(outs, ys):
                    o[i:i + len(y)] = y
        return outs if self._multi_out else outs[0]

    def _predict_source(self, source):
        """Predictions for every batch of a generator or indexable source, joined (host arrays)."""
        np = backend.np
        src = as_source(source)
        pieces = []
        with no_grad():
            for x, _ in src.batches(transform=False):
                ys = self.forward(backend.to_device(x) if not isinstance(x, (tuple, list)) else
                                  [backend.to_device(a) for a in x], training=False)
                pieces.append([backend.to_host(y) for y in (ys if self._multi_out else [ys])])
        if not pieces:
            raise ValueError("predict: the source yielded no batch.")
        outs = [np.concatenate([p[k] for p in pieces]) for k in range(len(pieces[0]))]
        return outs if self._multi_out else outs[0]

    def __call__(self, x, training: bool = False):
        return self.forward(self.check_input(x), training=training)

    # ------------------------------------------------------------------ weights
    def get_weights(self) -> list:
        """Host (NumPy) copies of every param value, layer by layer, in creation order (Keras order)."""
        return [w.copy() if w is p.value else w for p in self.params for w in (backend.to_host(p.value),)]

    def set_weights(self, weights) -> None:
        """Load values from :meth:`get_weights`' list (shapes must match exactly)."""
        self._require_assembled("set_weights()")
        params = self.params
        weights = list(weights)
        if len(weights) != len(params):
            raise ValueError(f"set_weights: the model has {len(params)} params, got {len(weights)} arrays.")
        for p, w in zip(params, weights):
            w = w if backend.is_array(w) else backend.np.asarray(w)
            if tuple(w.shape) != tuple(p.shape):
                raise ValueError(f"set_weights: {p.name} has shape {p.shape}, got an array of shape {w.shape}.")
        for p, w in zip(params, weights):
            p.value[...] = backend.asarray(w)

    # ------------------------------------------------------------------ description
    def summary(self) -> str:
        """A table of layers (name, type, output shape, params; a functional model adds each
        call's inputs) with totals, as a string. Before :meth:`assemble` it says so."""
        graph = self.functional
        head = ("Layer", "Type", "Output shape", "Params") + (("Inputs",) if graph else ())
        rows = [head]
        if graph:
            names = dict(zip(self._input_ids, self._input_names))
            for nid, shape, name in zip(self._input_ids, self._input_shapes, self._input_names):
                rows.append((name, "Input", fmt_shape(shape), "0", ""))
            counted = set()
            for c in self._calls:
                names[c.out] = c.layer.name
                params = "(shared)" if id(c.layer) in counted else f"{c.layer.count_params():,}"
                counted.add(id(c.layer))
                rows.append((c.layer.name, type(c.layer).__name__, fmt_shape(c.layer.outshape), params,
                             ", ".join(names[i] for i in c.ins)))
        else:
            for layer in self.layers:
                out = fmt_shape(layer.outshape) if self.assembled and layer.built else "?"
                params = f"{layer.count_params():,}" if self.assembled else "-"
                rows.append((layer.name or "?", type(layer).__name__, out, params))
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        line = "-" * (sum(widths) + 2 * (len(head) - 1))

        def fmt(r):
            cells = [f"{r[0]:<{widths[0]}}", f"{r[1]:<{widths[1]}}", f"{r[2]:<{widths[2]}}", f"{r[3]:>{widths[3]}}"]
            if graph:
                cells.append(f"{r[4]:<{widths[4]}}")
            return "  ".join(cells).rstrip()

        title = f'Model "{self.name}"'
        if not self.assembled:
            title += " (not assembled yet: call model.assemble() to infer the shapes and create the params)"
        out = [title, line, fmt(rows[0]), line] + [fmt(r) for r in rows[1:]] + [line]
        if self.assembled:
            total = self.count_params()
            trainable = sum(p.size for p in self.params if p.trainable)
            out += [f"Total params: {total:,}", f"Trainable params: {trainable:,}",
                    f"Non-trainable params: {total - trainable:,}"]
        return "\n".join(out)

    def __repr__(self) -> str:
        return f"Model(name={self.name!r}, layers={[l.name or type(l).__name__ for l in self.layers]})"

    # ------------------------------------------------------------------ persistence
    def get_config(self) -> dict:
        """The architecture as JSON-friendly data. A functional model adds a ``graph`` entry: its
        inputs, every call (layer index and the nodes it reads) and its outputs."""
        cfg = {"name": self.name,
               "layers": [{"class_name": type(l).__name__, "config": l.get_config()} for l in self.layers]}
        if self.functional:
            index = {id(l): i for i, l in enumerate(self.layers)}
            cfg["graph"] = {
                "inputs": [{"name": n, "shape": list(s), "dtype": d.name}
                           for n, s, d in zip(self._input_names, self._input_shapes, self._input_dtypes)],
                "calls": [[index[id(c.layer)], list(c.ins)] for c in self._calls],
                "outputs": list(self._output_ids), "multi_input": self._multi_in, "multi_output": self._multi_out}
        return cfg

    @classmethod
    def from_config(cls, config: dict, custom_objects: dict | None = None) -> "Model":
        """Rebuild the architecture of :meth:`get_config` (unbuilt for a sequential model).

        ``custom_objects``: ``{class name: Layer subclass}`` for layers defined in user code.
        """
        if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
            raise ValueError("Not a cutedl model config: expected a dict with a 'layers' list.")
        layers = []
        for entry in config["layers"]:
            if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
                raise ValueError(f"Bad layer entry in model config: {entry!r}.")
            layers.append(_layer_class(entry.get("class_name"), custom_objects).from_config(entry["config"]))
        name = str(config.get("name", "model"))
        graph = config.get("graph")
        if graph is None:
            return cls(layers, name=name)
        if not isinstance(graph, dict):
            raise ValueError("Bad model config: 'graph' must be a dict.")
        nodes = [Input(tuple(i["shape"]), name=i["name"], dtype=i["dtype"]) for i in graph["inputs"]]
        for li, ins in graph["calls"]:
            if not (isinstance(li, int) and 0 <= li < len(layers)) or not all(
                    isinstance(i, int) and 0 <= i < len(nodes) for i in ins):
                raise ValueError(f"Bad model config: the call {[li, ins]!r} refers to a missing layer or node.")
            layer = layers[li]
            args = [nodes[i] for i in ins]
            nodes.append(layer(args if layer.multi_input else args[0]))
        outs = [nodes[i] for i in graph["outputs"]]
        ins = nodes[:len(graph["inputs"])]
        return cls(inputs=ins if graph.get("multi_input") else ins[0],
                   outputs=outs if graph.get("multi_output") else outs[0], name=name)

    def save(self, path) -> None:
        """Save architecture (JSON) and weights (arrays) to one ``.npz`` file, atomically.

        The file holds only numeric arrays and a UTF-8 JSON document; loading never unpickles.
        """
        self._require_assembled("save()")
        meta = {"format": FORMAT, "version": FORMAT_VERSION, "config": self.get_config(),
                "params": [p.name for p in self.params]}
        arrays = {f"param_{i}": backend.to_host(p.value) for i, p in enumerate(self.params)}
        save_json_npz(path, "__config__", meta, arrays)

    @classmethod
    def load(cls, path, custom_objects: dict | None = None) -> "Model":
        """Rebuild a model saved by :meth:`save`: same layers, same weights, same predictions.

        Layers of your own classes load when registered (``@cutedl.layers.register``) or when
        passed as ``custom_objects={'Scale': Scale}`` (Keras' name).
        """
        path = os.fspath(path)
        meta, files = load_json_npz(path, "__config__", "Model.load", "model file")
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"Model.load: {path!r} is not a cutedl model file.")
        if meta.get("version") != FORMAT_VERSION:
            raise ValueError(f"Model.load: {path!r} has format version {meta.get('version')}, "
                             f"this cutedl reads version {FORMAT_VERSION}.")
        try:
            model = cls.from_config(meta.get("config"), custom_objects).assemble()
        except (TypeError, ValueError, RuntimeError, KeyError) as err:
            # e.g. an unknown layer or activation name, or arguments no cutedl layer takes
            raise ValueError(f"Model.load: {path!r} has an architecture cutedl cannot rebuild: "
                             f"{type(err).__name__}: {err}") from None
        params = model.params
        if len(params) != len([k for k in files if k.startswith("param_")]):
            raise ValueError(f"Model.load: {path!r} holds a different number of arrays than its architecture needs.")
        weights = []
        for i, p in enumerate(params):
            w = files.get(f"param_{i}")
            if w is None or w.dtype.kind != "f":
                raise ValueError(f"Model.load: {path!r} has a missing or non-float array for {p.name}.")
            weights.append(w)
        model.set_weights(weights)
        return model

    # ------------------------------------------------------------------ Keras-style sugar
    def compile(self, loss, optimizer="adam", metrics=None, **session_kwargs) -> None:
        """Attach a loss, optimizer and metrics (assembling the model if needed).

        Extra keyword arguments go to the trainer (``cutedl.Session``): ``train_step``, ``strategy``.
        """
        if not self.assembled:
            self.assemble()
        self._session = self.session_class(self, loss=loss, optimizer=optimizer, metrics=metrics, **session_kwargs)

    @property
    def session(self):
        if self._session is None:
            raise RuntimeError("Model is not compiled: call model.compile(loss=..., optimizer=...) first, "
                               "or train it with cutedl.Session(model, loss, optimizer).fit(...).")
        return self._session

    def fit(self, x=None, y=None, batch_size: int | None = None, epochs: int = 1, verbose: int = 1,
            callbacks=None, listeners=None, validation_split: float = 0.0, validation_data=None,
            shuffle: bool = True, initial_epoch: int = 0, validation_steps: int | None = None,
            validation_freq: int = 1, val_epochs: int | None = None, val_steps: int = 0,
            val_batches: int = -1, history=None):
        """Keras-style ``fit`` on :meth:`cutedl.Session.fit`; returns the History.

        ``callbacks`` and ``listeners`` are the same thing. ``x`` may be a Dataset (then no
        ``y``); ``validation_data`` a Dataset or an ``(x_val, y_val)`` tuple. Keras names map to
        Session's: ``validation_freq`` → ``val_epochs``, ``validation_steps`` → ``val_batches``;
        ``initial_epoch`` and ``history`` (a History to continue) pass through unchanged.
        """
        if isinstance(validation_data, tuple) and len(validation_data) != 2:
            raise ValueError(f"Model.fit: validation_data must be (x_val, y_val) or a Dataset, got a tuple of "
                             f"{len(validation_data)} items (cutedl has no sample weights).")
        if val_epochs is None:
            val_epochs = validation_freq
        elif validation_freq != 1:
            raise ValueError("Model.fit: pass validation_freq or val_epochs, not both (they are the same).")
        if validation_steps is not None:
            if val_batches != -1:
                raise ValueError("Model.fit: pass validation_steps or val_batches, not both (they are the same).")
            val_batches = validation_steps
        data = x if y is None else (x, y)
        return self.session.fit(data, epochs=epochs, batch_size=batch_size, val_data=validation_data,
                                validation_split=validation_split, val_epochs=val_epochs,
                                val_steps=val_steps, val_batches=val_batches,
                                listeners=list(callbacks or []) + list(listeners or []),
                                verbose=verbose, shuffle=shuffle, initial_epoch=initial_epoch, history=history)

    def evaluate(self, x=None, y=None, batch_size: int | None = None, verbose: int = 0,
                 steps: int | None = None, return_dict: bool = False):
        """Keras-style ``evaluate`` over at most ``steps`` batches.

        Returns the loss (a float) when the model was compiled without metrics, else the list
        ``[loss, metric_1, ...]`` in the compile order, as Keras does, so ``loss, acc =
        model.evaluate(x, y)`` works; ``return_dict=True`` gives ``{'loss': ..., <metric>: ...}``
        (what :meth:`cutedl.Session.evaluate` always returns). ``verbose`` is accepted for Keras
        code; evaluation shows no progress bar.
        """
        steps = check_int("Model.evaluate", "steps", steps, minimum=1, allow_none=True,
                          what="a positive integer or None (all batches)")
        data = x if y is None else (x, y)
        logs = self.session.evaluate(data, batch_size=batch_size, max_batches=-1 if steps is None else int(steps))
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values
