"""Layers: ``cutedl.layers.Dense``, ``Dropout``, ``Flatten``, ``Reshape``, ``Activation``.

``registry`` holds every layer class by name; ``Model.load`` only creates layers found there.
"""
from cutedl.layers.base import Layer, Param, registry
from cutedl.layers.core import Activation, Dense, Dropout, Flatten, Reshape

__all__ = ["Layer", "Param", "registry", "Dense", "Dropout", "Flatten", "Reshape", "Activation"]

# ---- convolution, pooling, normalization layers (issue 3) ----
# ---- end of convolution layers ----


# ---- embedding, recurrent and wrapper layers (issue 4) ----
# ---- end of recurrent layers ----
