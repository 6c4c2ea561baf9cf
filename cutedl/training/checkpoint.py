"""Training checkpoints: everything ``fit`` needs to continue a run exactly where it stopped.

A checkpoint is one ``.npz`` file (written atomically, loaded with ``allow_pickle=False``) that
holds a UTF-8 JSON document and numeric arrays. The JSON refers to arrays by name
(``{"__array__": "a7"}``), so nested states (optimizer moments, EarlyStopping's best weights,
generator states) need no pickle. It contains:

- the model config and every param value (trainable or not, in ``model.params`` order);
- the optimizer's lr (a float, or a serialized schedule), iterations and state arrays;
- every listener's ``get_state()``, by position in the listener list;
- the History so far and the running sums of the check in progress;
- the position: epoch, batches done in it, and whether the epoch (check and ``on_epoch_end``
  included) is over;
- the data order: the state of every generator of the training dataset at the start of the
  epoch (so a resumed epoch draws the same permutation) and now; and the state of cutedl's
  global generator, Python's ``random``, NumPy's legacy generator and every generator held by a
  layer (Dropout masks);
- the state carried between batches by ``stateful=True`` recurrent layers, and the running
  state of stateful metrics (precision, AUC...), when the model and session have them;
- the extra models and optimizers registered with ``Session.track``.

Positions are *boundaries*: after a batch's step, its ``on_batch_end`` and its check (if one
was due), or after an epoch's check and ``on_epoch_end``. :class:`cutedl.listeners.BackupAndRestore`
writes checkpoints there and ``Session.fit`` resumes from them: training k epochs, being
killed, and resuming gives the same weights and history, bit for bit, as training straight
through (the wall-clock ``time`` column aside).
"""
from __future__ import annotations

import os
import random
import types

from cutedl import backend, schedules
from cutedl import rng as rng_mod
from cutedl._io import load_json_npz, save_json_npz
from cutedl.backend import np
from cutedl.training.history import History
from cutedl.training.state import TrainingState

FORMAT = "cutedl-training-state"
FORMAT_VERSION = 1


# ---------------------------------------------------------------------------- JSON + arrays
def _pack(obj, arrays: dict):
    """A JSON-able copy of ``obj``; arrays go to ``arrays`` and are referred to by name."""
    if backend.is_array(obj):
        obj = backend.to_host(obj)
        if obj.dtype.kind not in "biuf":
            raise TypeError(f"checkpoint: cannot save an array of dtype {obj.dtype}; only numeric arrays.")
        name = f"a{len(arrays)}"
        arrays[name] = np.ascontiguousarray(obj)
        return {"__array__": name}
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"checkpoint: state dict keys must be strings, got {k!r}.")
            out[k] = _pack(v, arrays)
        if "__array__" in out and len(out) == 1:
            raise ValueError("checkpoint: '__array__' is reserved and cannot be a state key.")
        return out
    if isinstance(obj, (list, tuple)):
        return [_pack(v, arrays) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj)
    if obj is None or isinstance(obj, str):
        return obj
    raise TypeError(f"checkpoint: cannot save a value of type {type(obj).__name__} ({obj!r}); a state may hold "
                    f"numbers, strings, None, lists, dicts and NumPy arrays.")


def _unpack(obj, arrays: dict, where: str):
    if isinstance(obj, dict):
        if set(obj) == {"__array__"}:
            name = obj["__array__"]
            if not isinstance(name, str) or name not in arrays:
                raise ValueError(f"{where}: refers to a missing array {name!r} (corrupt file).")
            return arrays[name]
        return {k: _unpack(v, arrays, where) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unpack(v, arrays, where) for v in obj]
    return obj


def save_state(path, state: dict) -> None:
    """Write a state tree (see :func:`_pack`) to ``path`` as one ``.npz``, atomically."""
    arrays: dict = {}
    doc = _pack(state, arrays)
    save_json_npz(path, "__state__", doc, arrays)


def load_state(path, who: str = "checkpoint", kind: str = "checkpoint") -> dict:
    """Read a file written by :func:`save_state`; never unpickles, rejects anything else clearly."""
    path = os.fspath(path)
    doc, files = load_json_npz(path, "__state__", who, kind)
    for name, a in files.items():
        if a.dtype.kind not in "biuf":
            raise ValueError(f"{who}: {path!r} holds a non-numeric array {name!r} of dtype {a.dtype}.")
    return _unpack(doc, files, f"{who}: {path!r}")


# ---------------------------------------------------------------------------- generators
def _generators(obj, prefix: str = "", depth: int = 0, seen=None) -> dict:
    """``{path: Generator}`` for the NumPy generators an object (a layer, a dataset) holds.

    Looks through the object's attributes, up to three levels into attributes that are objects
    (cutedl's or the user's: a wrapped layer, an augmenter with its own generator), lists,
    tuples and dicts of them, functions (their closure and defaults) and bound methods, so
    ``Bidirectional(LSTM(...))``, ``Dataset(transform=MyAug())`` or ``transform=lambda x: f(x, gen)``
    are covered. Arrays, modules and classes are not searched.
    """
    seen = set() if seen is None else seen
    found = {}
    if id(obj) in seen:
        return found
    seen.add(id(obj))
    attrs = getattr(obj, "__dict__", None)
    if not isinstance(attrs, dict):
        return found
    for name, value in attrs.items():
        found.update(_generators_in(value, f"{prefix}{name}", depth, seen))
    return found


def _generators_in(value, key, depth, seen) -> dict:
    if isinstance(value, np.random.Generator):
        return {key: value}
    if depth >= 3 or backend.is_array(value) or isinstance(value, (type, str, bytes, int, float)):
        return {}
    found = {}
    if isinstance(value, types.MethodType):  # a bound method: its object
        return _generators_in(value.__self__, key, depth, seen)
    if isinstance(value, types.FunctionType):  # a function: what its closure and defaults hold
        cells = [c.cell_contents for c in (value.__closure__ or ()) if _cell_full(c)]
        for i, item in enumerate(cells + list(value.__defaults__ or ())):
            found.update(_generators_in(item, f"{key}.<{i}>", depth + 1, seen))
        for name in value.__code__.co_names:  # module-level generators the function uses
            if isinstance(value.__globals__.get(name), np.random.Generator):
                found[f"{key}.<global {name}>"] = value.__globals__[name]
        return found
    if callable(value) and not hasattr(value, "__dict__"):
        return {}
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value[:64]):
            found.update(_generators_in(item, f"{key}.{i}", depth + 1, seen))
    elif isinstance(value, dict):
        for k, item in list(value.items())[:64]:
            found.update(_generators_in(item, f"{key}.{k}", depth + 1, seen))
    elif hasattr(value, "__dict__") and not type(value).__module__.startswith(("numpy", "builtins", "types")):
        found.update(_generators(value, f"{key}.", depth + 1, seen))
    return found


def _cell_full(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def generator_states(obj) -> dict:
    """``{path: bit-generator state}`` of every generator :func:`_generators` finds in ``obj``."""
    return {k: g.bit_generator.state for k, g in _generators(obj).items()}


def check_generator_states(obj, states, what: str) -> None:
    """Raise ValueError unless ``states`` fits the generators of ``obj`` (nothing is changed)."""
    gens = _generators(obj)
    if not isinstance(states, dict) or set(gens) != set(states):
        raise ValueError(f"checkpoint: the random generators of {what} do not match the checkpoint "
                         f"(has {sorted(gens)}, saved {sorted(states) if isinstance(states, dict) else states!r}); "
                         f"resume with the same model and data.")
    for k, g in gens.items():
        st = states[k]
        if not isinstance(st, dict) or st.get("bit_generator") != g.bit_generator.state["bit_generator"]:
            raise ValueError(f"checkpoint: the state of generator {k!r} of {what} is not a "
                             f"{g.bit_generator.state['bit_generator']} state.")
        _try_state(type(g.bit_generator)(), st, f"generator {k!r} of {what}")


def _try_state(bitgen, st, what) -> None:
    try:
        bitgen.state = st
    except (ValueError, TypeError, KeyError, OverflowError) as err:
        raise ValueError(f"checkpoint: the saved state of {what} is corrupt ({err}).") from None


def set_generator_states(obj, states: dict, what: str) -> None:
    """Put states saved by :func:`generator_states` back (checked first)."""
    check_generator_states(obj, states, what)
    for k, g in _generators(obj).items():
        g.bit_generator.state = states[k]


def _global_states() -> dict:
    legacy = np.random.get_state()
    return {"cutedl": rng_mod.global_rng().bit_generator.state,
            "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
            "numpy": [legacy[0], legacy[1], int(legacy[2]), int(legacy[3]), float(legacy[4])]}


def _check_global_states(states: dict, who: str) -> None:
    _try_state(type(rng_mod.global_rng().bit_generator)(), states["cutedl"], "cutedl's global generator")
    version, internal, gauss = states["python"]
    if not (isinstance(internal, list) and len(internal) == 625 and all(
            isinstance(v, int) and 0 <= v < 2**32 for v in internal)):
        raise ValueError(f"{who}: the saved state of Python's random module is corrupt.")
    name, keys, pos, has_gauss, cached = states["numpy"]
    keys = np.asarray(keys) if backend.is_host_array(keys) or isinstance(keys, list) else None
    if not (keys is not None and keys.shape == (624,) and keys.dtype.kind in "iu" and isinstance(pos, int)
            and 0 <= pos <= 624):
        raise ValueError(f"{who}: the saved state of NumPy's legacy generator is corrupt.")


def _set_global_states(states: dict) -> None:
    rng_mod.global_rng().bit_generator.state = states["cutedl"]
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


# ---------------------------------------------------------------------------- session state
def _lr_entry(opt):
    lr = opt.lr
    if isinstance(lr, schedules.LearningRateSchedule):
        return {"schedule": schedules.serialize(lr)}
    if callable(lr):
        return {"callable": repr(lr)}
    return float(lr)


def _optimizer_entry(opt) -> dict:
    return {"class": type(opt).__name__, "lr": _lr_entry(opt), **opt.get_state()}


def _model_entry(model) -> dict:
    return {"config": model.get_config(), "param_names": [p.name for p in model.params],
            "weights": [backend.to_host(p.value) for p in model.params]}


def _layer_generators(model) -> dict:
    layers = {}
    for layer in model.layers:
        st = generator_states(layer)
        if st:
            layers[layer.name] = st
    return layers


def capture(session) -> dict:
    """Everything needed to continue ``session``'s fit from its current boundary.

    Reads only public attributes: ``model``, ``optimizer``, ``listeners``, ``history``,
    ``state`` (a :class:`~cutedl.training.state.TrainingState`), ``train_data``, ``val_data``
    and the objects registered with ``Session.track``.
    """
    state = session.state
    train, val = session.train_data, session.val_data
    data_now = generator_states(train)
    out = {
        "format": FORMAT, "version": FORMAT_VERSION,
        "model": _model_entry(session.model),
        "optimizer": _optimizer_entry(session.optimizer),
        "listeners": [{"class": type(lst).__name__, "state": _listener_state(lst)} for lst in session.listeners],
        "history": session.history.to_dict(),
        **state.to_dict(),
        "rng": {"global": _global_states(), "layers": _layer_generators(session.model),
                "train_epoch_start": data_now if state.epoch_done else state.epoch_data,
                "train_now": data_now, "val": {} if val is None else generator_states(val)},
    }
    carried = _carried_states(session.model)
    if carried:
        out["carried_states"] = carried
    metric_states = {k: m.get_state() for k, m in session.stateful_metrics["train"].items()}
    if metric_states:
        out["metrics"] = metric_states
    tracked = {}
    for name, obj in session.tracked.items():
        if isinstance(obj, np.random.Generator):
            tracked[name] = {"kind": "generator", "state": obj.bit_generator.state}
        elif hasattr(obj, "params") and hasattr(obj, "get_config"):  # a Model
            tracked[name] = {"kind": "model", **_model_entry(obj), "generators": _layer_generators(obj)}
        else:  # an optimizer
            tracked[name] = {"kind": "optimizer", **_optimizer_entry(obj)}
    step_gens = _step_generators(session)
    if step_gens:
        tracked["__train_step__"] = {"kind": "step", "states": {k: g.bit_generator.state for k, g in step_gens.items()}}
    if tracked:
        out["tracked"] = tracked
    strategy = getattr(session, "strategy", None)
    if strategy is not None:  # a data-parallel fit: the world size and every rank's generators
        out["strategy"] = strategy.get_state()
    return out


def _stateful_layers(model) -> list:
    """Layers that carry a state from batch to batch (``stateful=True`` RNNs): public ``states``
    and ``reset_states(states)``."""
    return [l for l in model.layers if getattr(l, "stateful", False) is True and hasattr(l, "states")]


def _carried_states(model) -> dict:
    """``{layer name: [state arrays] or None}`` of the stateful layers."""
    return {l.name: None if l.states is None else [backend.to_host(a) for a in l.states]
            for l in _stateful_layers(model)}


def _check_carried(saved, model, who) -> None:
    names = {l.name for l in _stateful_layers(model)}
    if set(saved) != names:
        raise ValueError(f"{who}: the checkpoint carries the states of the layers {sorted(saved)}, this model's "
                         f"stateful layers are {sorted(names)}.")
    for name, states in saved.items():
        if states is None:
            continue
        if not isinstance(states, list) or not all(backend.is_host_array(a) and a.ndim == 2 and a.dtype.kind == "f"
                                                   for a in states):
            raise ValueError(f"{who}: the carried state of layer {name!r} is corrupt.")


def _step_generators(session) -> dict:
    """Generators a custom ``train_step`` function holds (closure, defaults, module globals) or that a
    Session subclass keeps as attributes of its own (not the model's, data's or listeners')."""
    found = {}
    if session.step_function is not None:
        found.update(_generators_in(session.step_function, "train_step", 0, set()))
    for name, value in vars(session).items():
        if isinstance(value, np.random.Generator):
            found[f"session.{name}"] = value
    return found


def _listener_state(lst) -> dict:
    st = lst.get_state()
    try:
        _pack(st, {})
    except (TypeError, ValueError) as err:
        raise TypeError(f"BackupAndRestore: listener {lst!r}.get_state() returned something a checkpoint cannot "
                        f"hold ({err}). Return a dict of numbers, strings, None, lists, dicts and arrays.") from None
    return st


def _match_listeners(current, saved, who) -> list:
    """``[(listener, saved state)]``: the n-th listener of a class gets the n-th saved state of it.

    Listeners without state (progress bars, reports) may come and go between the runs; a
    listener with state must find its saved state, and a saved state its listener.
    """
    by_class: dict = {}
    for entry in saved:
        by_class.setdefault(entry["class"], []).append(entry["state"])
    pairs, seen = [], {}
    for lst in current:
        name = type(lst).__name__
        i = seen.get(name, 0)
        seen[name] = i + 1
        states = by_class.get(name, [])
        if i < len(states):
            pairs.append((lst, states[i]))
        elif lst.get_state():
            raise ValueError(f"{who}: this fit has listener {lst!r} but the checkpoint holds no state for it "
                             f"(saved listeners: {[e['class'] for e in saved]}); resume with the same listeners.")
    for name, states in by_class.items():
        extra = [st for st in states[seen.get(name, 0):] if st]
        if extra:
            raise ValueError(f"{who}: the checkpoint holds the state of a {name} listener that this fit lacks; "
                             f"resume with the same listeners (saved: {[e['class'] for e in saved]}).")
    return pairs


def check_format(state: dict, path) -> None:
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r} is not a cutedl training checkpoint.")
    if state.get("version") != FORMAT_VERSION:
        raise ValueError(f"{str(path)!r} is a training checkpoint of format version {state.get('version')}; "
                         f"this cutedl reads version {FORMAT_VERSION}.")


def _check_model(entry, model, who, what="model"):
    if entry["param_names"] != [p.name for p in model.params] or entry["config"] != model.get_config():
        raise ValueError(f"{who}: the checkpoint was written for another {what} (layers "
                         f"{[e['class_name'] for e in entry['config']['layers']]}, params {entry['param_names']}).")
    for p, w in zip(model.params, entry["weights"]):
        if not backend.is_host_array(w) or w.dtype.kind != "f" or tuple(w.shape) != tuple(p.shape):
            raise ValueError(f"{who}: the checkpoint's array for {p.name} is not a float array of shape {p.shape}.")


def _check_optimizer(entry, opt, who):
    if entry["class"] != type(opt).__name__:
        raise ValueError(f"{who}: the checkpoint's optimizer is {entry['class']}, this session uses "
                         f"{type(opt).__name__}.")


def _restore_optimizer(entry, opt):
    lr = entry["lr"]
    if isinstance(lr, (int, float)):
        opt.lr = float(lr)
    elif "schedule" in lr:
        opt.lr = lr["schedule"]
    # a plain-function lr cannot be saved: the session's own function is kept
    opt.set_state({"iterations": entry["iterations"], "state": entry["state"]})


def restore(session, state: dict, path) -> dict:
    """Put a captured state back into ``session`` (its model, optimizer, listeners and data).

    Everything is checked before anything is changed: a checkpoint that belongs to another
    model, optimizer, listener list or dataset, or that is corrupt, raises ValueError naming
    ``path`` and leaves the session as it was. Returns the position continued from.
    """
    check_format(state, path)
    who = f"resume from {str(path)!r}"
    train, val = session.train_data, session.val_data
    try:
        model, opt = session.model, session.optimizer
        _check_model(state["model"], model, who)
        _check_optimizer(state["optimizer"], opt, who)
        pairs = _match_listeners(session.listeners, state["listeners"], who)
        TrainingState.check_dict(state, who)
        if int(state["position"]["samples"]) != train.num_samples:
            raise ValueError(f"{who}: the checkpoint was trained on {state['position']['samples']} samples, "
                             f"this data has {train.num_samples}.")
        history = History.from_dict(state["history"])
        rng = state["rng"]
        pos = dict(state["position"])
        layers = {layer.name: layer for layer in model.layers}
        gen_plan = [(layers[name], st, f"layer {name!r}") for name, st in rng["layers"].items()]
        gen_plan.append((train, rng["train_now"] if pos["epoch_done"] else rng["train_epoch_start"],
                         "the training data"))
        if val is not None:
            gen_plan.append((val, rng["val"], "the validation data"))
        tracked = dict(state.get("tracked", {}))
        step_entry = tracked.pop("__train_step__", {"states": {}})
        step_gens = _step_generators(session)
        if set(step_entry["states"]) != set(step_gens):
            raise ValueError(f"{who}: the random generators of the custom train_step do not match the checkpoint "
                             f"(has {sorted(step_gens)}, saved {sorted(step_entry['states'])}).")
        for k, g in step_gens.items():
            _try_state(type(g.bit_generator)(), step_entry["states"][k], f"generator {k!r} of the train_step")
        if set(tracked) != set(session.tracked):
            raise ValueError(f"{who}: the checkpoint tracks {sorted(tracked)}, this session tracks "
                             f"{sorted(session.tracked)}; resume with the same Session.track(...) objects.")
        for name, entry in tracked.items():
            obj = session.tracked[name]
            if entry["kind"] == "generator":
                if not isinstance(obj, np.random.Generator):
                    raise ValueError(f"{who}: {name!r} was a generator when the checkpoint was written.")
                _try_state(type(obj.bit_generator)(), entry["state"], f"tracked generator {name!r}")
            elif entry["kind"] == "model":
                _check_model(entry, obj, who, f"tracked model {name!r}")
                obj_layers = {layer.name: layer for layer in obj.layers}
                gen_plan += [(obj_layers[n], st, f"layer {n!r} of {name!r}") for n, st in entry["generators"].items()]
            else:
                _check_optimizer(entry, obj, who)
        try:
            for obj, st, what in gen_plan:
                check_generator_states(obj, st, what)
            _check_global_states(rng["global"], who)
        except ValueError as err:
            raise ValueError(f"{who}: {err}") from None
        carried = state.get("carried_states", {})
        _check_carried(carried, model, who)
        metric_states = state.get("metrics", {})
        if set(metric_states) != set(session.stateful_metrics["train"]):
            raise ValueError(f"{who}: the checkpoint holds the accumulated metrics {sorted(metric_states)}, this "
                             f"session has {sorted(session.stateful_metrics['train'])}; resume with the same metrics.")
        for lst, st in pairs:
            try:
                lst.check_state(st)
            except ValueError as err:
                raise ValueError(f"{who}: the saved state of listener {lst!r} is corrupt: {err}") from None
        strategy = getattr(session, "strategy", None)
        saved_size = state["strategy"]["world_size"] if "strategy" in state else 1
        if saved_size != (1 if strategy is None else strategy.size):
            raise ValueError(f"{who}: the checkpoint was written by a fit over {saved_size} process(es), this fit "
                             f"runs over {1 if strategy is None else strategy.size}; resume with the same world "
                             f"size (mpiexec -n {saved_size}).")
        # ---- everything checked: apply
        for lst, st in pairs:
            lst.set_state(st)
        model.set_weights(state["model"]["weights"])
        _restore_optimizer(state["optimizer"], opt)
        for name, entry in tracked.items():
            obj = session.tracked[name]
            if entry["kind"] == "generator":
                obj.bit_generator.state = entry["state"]
            elif entry["kind"] == "model":
                obj.set_weights(entry["weights"])
            else:
                _restore_optimizer(entry, obj)
        for k, g in step_gens.items():
            g.bit_generator.state = step_entry["states"][k]
        session.history.__dict__.update(history.__dict__)
        session.history.params = dict(session.fit_params)  # this fit's settings (epochs may have grown)
        session.state.load_dict(state, who)
        for k, st in metric_states.items():
            session.stateful_metrics["train"][k].set_state(st)
        for layer in _stateful_layers(model):
            layer.reset_states(carried[layer.name])
        for obj, st, what in gen_plan:
            set_generator_states(obj, st, what)
        _set_global_states(rng["global"])
        if strategy is not None:
            strategy.set_state(state.get("strategy"))
    except (KeyError, TypeError, IndexError, AttributeError, OverflowError) as err:
        raise ValueError(f"{who}: the checkpoint is incomplete or corrupt ({type(err).__name__}: {err}).") from None
    return pos


def read(path) -> dict:
    """Load and check a training checkpoint written by BackupAndRestore (for inspection).

    Returns the state dict: ``state['history']`` (a History dict), ``state['position']``,
    ``state['model']['weights']`` (arrays), ``state['optimizer']``...
    """
    state = load_state(path, "checkpoint.read")
    check_format(state, path)
    return state


def history_of(path) -> History:
    """The History recorded in a training checkpoint."""
    return History.from_dict(read(path)["history"])


# ---------------------------------------------------------------------------- weights only
WEIGHTS_FORMAT = "cutedl-weights"


def save_weights(model, path) -> None:
    """Every param value of ``model`` (by name) to one ``.npz``, atomically; no architecture."""
    save_state(path, {"format": WEIGHTS_FORMAT, "version": FORMAT_VERSION,
                      "params": {p.name: backend.to_host(p.value) for p in model.params}})


def load_weights(model, path) -> None:
    """Load values saved by :func:`save_weights` into ``model``: same param names and shapes."""
    state = load_state(path, "load_weights", "weights file")
    if (not isinstance(state, dict) or state.get("format") != WEIGHTS_FORMAT
            or not isinstance(state.get("params"), dict)):
        raise ValueError(f"load_weights: {str(path)!r} is not a cutedl weights file.")
    saved = state["params"]
    names = [p.name for p in model.params]
    if set(saved) != set(names):
        raise ValueError(f"load_weights: {str(path)!r} holds params {sorted(saved)}, the model has {sorted(names)}.")
    for p in model.params:
        if not isinstance(saved[p.name], np.ndarray) or saved[p.name].dtype.kind != "f":
            raise ValueError(f"load_weights: {str(path)!r} has a non-float array for {p.name}.")
    model.set_weights([saved[n] for n in names])
