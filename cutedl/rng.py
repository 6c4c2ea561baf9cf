"""Random-number generation: one global generator that ``set_seed`` resets.

Every random consumer (initializers, Dropout, Dataset shuffling) takes a ``seed`` argument; without
one it draws its own child seed from the global generator when it is created. After
``cutedl.set_seed(n)``, building the same model and fitting it on the same data repeats bit for bit.
"""
from __future__ import annotations

import random

import numpy as np

_global = np.random.default_rng()


def set_seed(seed: int) -> None:
    """Seed cutedl's global generator (and Python's and NumPy's legacy ones) with ``seed``."""
    global _global
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"set_seed expects a non-negative integer, got {seed!r}.")
    _global = np.random.default_rng(int(seed))
    random.seed(int(seed))
    np.random.seed(int(seed) % (2**32))


def global_rng() -> np.random.Generator:
    """The global generator (use :func:`make_rng` for a consumer's own stream)."""
    return _global


def make_rng(seed=None) -> np.random.Generator:
    """A new generator: seeded by ``seed`` if given, else by a child seed of the global one."""
    if seed is None:
        seed = int(_global.integers(0, 2**63 - 1))
    elif isinstance(seed, np.random.Generator):
        return seed
    elif isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}.")
    return np.random.default_rng(int(seed))
