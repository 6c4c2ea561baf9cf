"""Random-number generation: one global generator that ``set_seed`` resets.

Every random consumer (initializers, Dropout, Dataset shuffling) takes a ``seed`` argument; without
one it draws its own child seed from the global generator when it is created. After
``cutedl.set_seed(n)``, building the same model and fitting it on the same data repeats bit for bit.
Generators are NumPy ``Generator`` objects on the host (so a checkpoint can save their state);
draws needed on the device go through :func:`cutedl.backend.uniform` and friends.
"""
from __future__ import annotations

import random

from cutedl._validate import check_int
from cutedl.backend import np

_global = np.random.default_rng()


def set_seed(seed: int) -> None:
    """Seed cutedl's global generator (and Python's and NumPy's legacy ones) with ``seed``."""
    global _global
    seed = check_int("set_seed", "seed", seed, minimum=0)
    _global = np.random.default_rng(seed)
    random.seed(seed)
    np.random.seed(seed % (2**32))


def global_rng() -> np.random.Generator:
    """The global generator (use :func:`make_rng` for a consumer's own stream)."""
    return _global


def make_rng(seed=None) -> np.random.Generator:
    """A new generator: seeded by ``seed`` if given, else by a child seed of the global one.

    A ``np.random.Generator`` passed as ``seed`` is returned as it is (shared, not copied).
    """
    if seed is None:
        seed = int(_global.integers(0, 2**63 - 1))
    elif isinstance(seed, np.random.Generator):
        return seed
    else:
        seed = check_int("make_rng", "seed", seed, minimum=0, what="a non-negative integer or None")
    return np.random.default_rng(seed)
