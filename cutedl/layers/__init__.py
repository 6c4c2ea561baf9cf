"""Layers: ``cutedl.layers.Dense``, ``Dropout``, ``Flatten``, ``Reshape``, ``Activation``.

``registry`` holds every layer class by name; ``Model.load`` only creates layers found there.
"""
from cutedl.layers.base import Layer, Param, registry
from cutedl.layers.core import Activation, Dense, Dropout, Flatten, Reshape

__all__ = ["Layer", "Param", "registry", "Dense", "Dropout", "Flatten", "Reshape", "Activation"]

# ---- convolution and pooling layers (issue 3) ----
# ---- end of convolution layers ----


# ---- normalization layers (issue 3) ----
from cutedl.layers.normalization import BatchNormalization, LayerNormalization  # noqa: E402

__all__ += ["BatchNormalization", "LayerNormalization"]
# ---- end of normalization layers ----


# ---- recurrent, masking and wrapper layers (issue 4) ----
# ---- end of recurrent layers ----


# ---- embedding layer (issue 4) ----
# ---- end of embedding layer ----
