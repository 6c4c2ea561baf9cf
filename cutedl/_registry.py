"""Name registries: one ``get()`` per family (activations, losses, optimizers, ...).

``registry.get('relu')`` accepts a name (case-insensitive, with aliases), an instance, a class or a
``{'class_name': ..., 'config': {...}}`` dict, and raises ValueError listing the valid names for
anything unknown. Classes register themselves with a decorator next to their definition.
"""
from __future__ import annotations


def normalize_name(name: str) -> str:
    """The form names are compared in: 'Leaky-ReLU ' -> 'leaky_relu'."""
    return name.strip().lower().replace("-", "_").replace(" ", "_")


class Registry:
    """A family of named classes.

    Args:
        kind: what the family is called in error messages ('activation', 'loss', ...).
        base: the base class; instances of it pass through ``get`` unchanged.
    """

    def __init__(self, kind: str, base: type | None = None):
        self.kind = kind
        self.base = base
        self._classes: dict[str, type] = {}
        self._canonical: list[str] = []

    def register(self, name: str, *aliases: str):
        """Class decorator: register under ``name`` (the canonical name) and ``aliases``."""
        for n in (name,) + aliases:
            if not isinstance(n, str) or not n:
                raise TypeError(f"{self.kind} registry: register takes the name(s) to register under, as in "
                                f"@registry.register('MyClass'); got {n!r}.")

        def deco(cls):
            if self.base is not None and not (isinstance(cls, type) and issubclass(cls, self.base)):
                raise TypeError(f"{self.kind} registry: only {self.base.__name__} subclasses can be registered, "
                                f"got {cls!r}.")
            for n in (name,) + aliases:
                k = normalize_name(n)
                if k in self._classes and self._classes[k] is not cls:
                    raise ValueError(f"{self.kind} name {n!r} is already registered.")
                self._classes[k] = cls
            # 'name' on the class is the canonical registry name; instances may override it.
            if "registry_name" not in cls.__dict__:
                cls.registry_name = name
            self._canonical.append(name)
            return cls

        return deco

    def names(self) -> list[str]:
        """Canonical names, in registration order."""
        return list(self._canonical)

    def all_names(self) -> list[str]:
        """Every accepted name, aliases included, sorted."""
        return sorted(self._classes)

    def classes(self) -> dict[str, type]:
        """Canonical name -> class."""
        return {n: self._classes[normalize_name(n)] for n in self._canonical}

    def lookup(self, name: str) -> type:
        """The class registered under ``name``; ValueError listing valid names when unknown."""
        if not isinstance(name, str):
            raise TypeError(f"{self.kind} name must be a string, got {type(name).__name__}.")
        k = normalize_name(name)
        if k not in self._classes:
            raise ValueError(
                f"Unknown {self.kind} {name!r}. Valid {self.kind} names: "
                f"{', '.join(self.all_names())}."
            )
        return self._classes[k]

    def get(self, identifier, **kwargs):
        """Resolve ``identifier`` (name, instance, class or config dict) to an instance."""
        if self.base is not None and isinstance(identifier, self.base):
            if kwargs:
                raise TypeError(f"Cannot pass options {sorted(kwargs)} with a {self.kind} instance.")
            return identifier
        if isinstance(identifier, str):
            return self.lookup(identifier)(**kwargs)
        if isinstance(identifier, type) and self.base is not None and issubclass(identifier, self.base):
            return identifier(**kwargs)
        if isinstance(identifier, dict):
            return self.deserialize(identifier)
        raise TypeError(
            f"Cannot interpret {identifier!r} as a {self.kind}: pass a name "
            f"({', '.join(self.names())}), an instance or a config dict."
        )

    def serialize(self, obj) -> dict:
        """``{'class_name': canonical name, 'config': obj.get_config()}``."""
        return {"class_name": obj.registry_name, "config": obj.get_config()}

    def deserialize(self, config: dict):
        """Inverse of :meth:`serialize`; only registered classes can be created."""
        if not isinstance(config, dict) or "class_name" not in config:
            raise ValueError(f"A {self.kind} config must be a dict with 'class_name', got {config!r}.")
        cls = self.lookup(config["class_name"])
        cfg = config.get("config") or {}
        if not isinstance(cfg, dict):
            raise ValueError(f"{self.kind} config for {config['class_name']!r} must be a dict.")
        return cls(**cfg)


class Configurable:
    """Mixin for registry members described fully by ``get_config()``: equality, hash and repr.

    Two activations (initializers, regularizers...) of the same class with the same config are
    equal, so ``Dense(3, activation='relu').activation == activations.get('relu')``.
    """

    def get_config(self) -> dict:
        return {}

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash((type(self), tuple(sorted((k, repr(v)) for k, v in self.get_config().items()))))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"
