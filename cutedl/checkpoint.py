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
  layer (Dropout masks).

Positions are *boundaries*: after a batch's step, its ``on_batch_end`` and its check (if one
was due), or after an epoch's check and ``on_epoch_end``. :class:`cutedl.listeners.BackupAndRestore`
writes checkpoints there and ``Session.fit`` resumes from them: training k epochs, being
killed, and resuming gives the same weights and history, bit for bit, as training straight
through (the wall-clock ``time`` column aside).
"""
from __future__ import annotations

import os
import random
import time

import numpy as np

from cutedl import rng as rng_mod
from cutedl._io import load_json_npz, save_json_npz
from cutedl.history import History
from cutedl.listeners import Listener

FORMAT = "cutedl-training-state"
FORMAT_VERSION = 1


# ---------------------------------------------------------------------------- JSON + arrays
def _pack(obj, arrays: dict):
    """A JSON-able copy of ``obj``; arrays go to ``arrays`` and are referred to by name."""
    if isinstance(obj, np.ndarray):
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
def _generators(obj, prefix: str = "", depth: int = 0) -> dict:
    """``{path: Generator}`` for the generators an object (a layer, a dataset) holds.

    Looks at the object's attributes, and up to two levels into attributes that are objects of
    cutedl classes or lists of objects, so ``Bidirectional(LSTM(...))`` or a dataset holding an
    augmenter with its own generator are covered.
    """
    found = {}
    attrs = getattr(obj, "__dict__", None)
    if attrs is None:
        return found
    for name, value in attrs.items():
        key = f"{prefix}{name}"
        if isinstance(value, np.random.Generator):
            found[key] = value
        elif depth < 2 and isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                if hasattr(item, "__dict__") and not isinstance(item, np.ndarray):
                    found.update(_generators(item, f"{key}.{i}.", depth + 1))
        elif depth < 2 and _is_component(value):
            found.update(_generators(value, f"{key}.", depth + 1))
    return found


def _is_component(value) -> bool:
    """Objects of cutedl's own classes (wrapped layers, augmenters, inner datasets) are searched too."""
    return type(value).__module__.startswith("cutedl.") and hasattr(value, "__dict__")


def generator_states(obj) -> dict:
    return {k: g.bit_generator.state for k, g in _generators(obj).items()}


def set_generator_states(obj, states: dict, what: str) -> None:
    gens = _generators(obj)
    if set(gens) != set(states):
        raise ValueError(f"checkpoint: the random generators of {what} do not match the checkpoint "
                         f"(has {sorted(gens)}, saved {sorted(states)}); resume with the same model and data.")
    for k, g in gens.items():
        g.bit_generator.state = states[k]


def _global_states() -> dict:
    legacy = np.random.get_state()
    return {"cutedl": rng_mod.global_rng().bit_generator.state,
            "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
            "numpy": [legacy[0], legacy[1], int(legacy[2]), int(legacy[3]), float(legacy[4])]}


def _set_global_states(states: dict) -> None:
    rng_mod.global_rng().bit_generator.state = states["cutedl"]
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


# ---------------------------------------------------------------------------- session state
def capture(session, train, val, epoch_data_state: dict) -> dict:
    """Everything needed to continue ``session``'s fit from its current boundary."""
    from cutedl import schedules

    model, opt = session.model, session.optimizer
    lr = opt.lr
    if isinstance(lr, schedules.LearningRateSchedule):
        lr = {"schedule": schedules.serialize(lr)}
    elif callable(lr):
        lr = {"callable": repr(lr)}
    else:
        lr = float(lr)
    layers = {}
    for layer in model.layers:
        st = generator_states(layer)
        if st:
            layers[layer.name] = st
    return {
        "format": FORMAT, "version": FORMAT_VERSION,
        "model": {"config": model.get_config(), "param_names": [p.name for p in model.params],
                  "weights": [p.value for p in model.params]},
        "optimizer": {"class": type(opt).__name__, "lr": lr, **opt.get_state()},
        "listeners": [{"class": type(lst).__name__, "state": lst.get_state()} for lst in session.listeners],
        "history": session.history.to_dict(),
        "position": dict(session._position),
        "accumulator": {"sums": dict(session._acc.sums), "count": session._acc.count},
        "session": {"step": session.step, "warned_nan": session._warned_nan,
                    "check_origin": session._check_origin,
                    "elapsed": session._t_offset + time.perf_counter() - session._t0},
        "rng": {"global": _global_states(), "layers": layers, "train_epoch_start": epoch_data_state,
                "train_now": generator_states(train), "val": {} if val is None else generator_states(val)},
    }


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
        elif type(lst).get_state is not Listener.get_state:
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


def restore(session, state: dict, train, val, path) -> dict:
    """Put a captured state back into ``session`` (its model, optimizer, listeners and data).

    Returns the position to continue from. Raises ValueError when the checkpoint belongs to
    another model, optimizer, listener list or dataset.
    """
    check_format(state, path)
    who = f"resume from {str(path)!r}"
    try:
        model, opt = session.model, session.optimizer
        m = state["model"]
        if m["param_names"] != [p.name for p in model.params] or m["config"] != model.get_config():
            raise ValueError(f"{who}: the checkpoint was written for another model (layers "
                             f"{[e['class_name'] for e in m['config']['layers']]}, params {m['param_names']}).")
        o = state["optimizer"]
        if o["class"] != type(opt).__name__:
            raise ValueError(f"{who}: the checkpoint's optimizer is {o['class']}, this session uses "
                             f"{type(opt).__name__}.")
        pairs = _match_listeners(session.listeners, state["listeners"], who)
        rng = state["rng"]
        if int(state["position"].get("samples", train.num_samples)) != train.num_samples:
            raise ValueError(f"{who}: the checkpoint was trained on {state['position']['samples']} samples, "
                             f"this data has {train.num_samples}.")
        model.set_weights(m["weights"])
        lr = o["lr"]
        if isinstance(lr, (int, float)):
            opt.lr = float(lr)
        elif "schedule" in lr:
            opt.lr = lr["schedule"]
        # a plain-function lr cannot be saved: the session's own function is kept
        opt.set_state({"iterations": o["iterations"], "state": o["state"]})
        for lst, st in pairs:
            lst.set_state(st)
        session.history.__dict__.update(History.from_dict(state["history"]).__dict__)
        session.history.params = dict(session.fit_params)  # this fit's settings (epochs may have grown)
        acc = state["accumulator"]
        session._acc.sums = {k: float(v) for k, v in acc["sums"].items()}
        session._acc.count = int(acc["count"])
        s = state["session"]
        session.step = int(s["step"])
        session._warned_nan = bool(s["warned_nan"])
        session._check_origin = int(s["check_origin"])
        # wall-clock time goes on from the checkpoint's (the time column is the only thing a resume changes)
        session._t0 = time.perf_counter()
        session._t_offset = float(s["elapsed"])
        layers = {layer.name: layer for layer in model.layers}
        for name, st in rng["layers"].items():
            set_generator_states(layers[name], st, f"layer {name!r}")
        pos = dict(state["position"])
        set_generator_states(train, rng["train_now"] if pos["epoch_done"] else rng["train_epoch_start"],
                             "the training data")
        if val is not None:
            set_generator_states(val, rng["val"], "the validation data")
        _set_global_states(rng["global"])
    except (KeyError, TypeError, IndexError) as err:
        raise ValueError(f"{who}: the checkpoint is incomplete or corrupt ({type(err).__name__}: {err}).") from None
    session._position = pos
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
                      "params": {p.name: p.value for p in model.params}})


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
