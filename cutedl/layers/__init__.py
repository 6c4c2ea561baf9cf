"""Layers: ``cutedl.layers.Dense``, ``Dropout``, ``Flatten``, ``Reshape``, ``Activation``.

``registry`` holds every layer class by name; ``Model.load`` only creates layers found there.
"""
from cutedl.layers.base import Layer, Param, registry
from cutedl.layers.core import Activation, Dense, Dropout, Flatten, Reshape

__all__ = ["Layer", "Param", "registry", "Dense", "Dropout", "Flatten", "Reshape", "Activation"]

# ---- convolution and pooling layers (issue 3) ----
# ---- end of convolution layers ----


# ---- normalization layers (issue 3) ----
# ---- end of normalization layers ----


# ---- recurrent, masking and wrapper layers (issue 4) ----
from cutedl.layers.base import forward_takes_mask  # noqa: E402
from cutedl.layers.masking import Masking  # noqa: E402
from cutedl.layers.recurrent import GRU, LSTM, RNN, SimpleRNN  # noqa: E402

__all__ += ["Masking", "forward_takes_mask", "RNN", "SimpleRNN", "LSTM", "GRU"]
# ---- end of recurrent layers ----


# ---- embedding layer (issue 4) ----
from cutedl.layers.embedding import Embedding  # noqa: E402

__all__ += ["Embedding"]
# ---- end of embedding layer ----
