"""Layers: ``cutedl.layers.Dense``, ``Dropout``, ``Flatten``, ``Reshape``, ``Activation``.

``registry`` holds every layer class by name; ``Model.load`` only creates layers found there.
"""
from cutedl.layers.base import Layer, Param, registry
from cutedl.layers.core import Activation, Dense, Dropout, Flatten, Reshape

__all__ = ["Layer", "Param", "registry", "Dense", "Dropout", "Flatten", "Reshape", "Activation"]

# ---- convolution and pooling layers (issue 3) ----
from cutedl.layers.conv import Conv1D, Conv2D, Conv2DTranspose, UpSampling2D, ZeroPadding2D  # noqa: E402
from cutedl.layers.pooling import (AvgPool1D, AvgPool2D, GlobalAveragePooling2D, GlobalMaxPooling2D,  # noqa: E402
                                   MaxPool1D, MaxPool2D)

# Keras spellings of the same classes
Convolution2D, Convolution1D = Conv2D, Conv1D
MaxPooling2D, AveragePooling2D, MaxPooling1D, AveragePooling1D = MaxPool2D, AvgPool2D, MaxPool1D, AvgPool1D
GlobalAvgPool2D, GlobalMaxPool2D = GlobalAveragePooling2D, GlobalMaxPooling2D
__all__ += ["Conv2D", "Conv1D", "Conv2DTranspose", "ZeroPadding2D", "UpSampling2D", "MaxPool2D", "AvgPool2D",
            "MaxPool1D", "AvgPool1D", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Convolution2D",
            "Convolution1D", "MaxPooling2D", "AveragePooling2D", "MaxPooling1D", "AveragePooling1D",
            "GlobalAvgPool2D", "GlobalMaxPool2D"]
# ---- end of convolution layers ----


# ---- normalization layers (issue 3) ----
from cutedl.layers.normalization import BatchNormalization, LayerNormalization  # noqa: E402

__all__ += ["BatchNormalization", "LayerNormalization"]
# ---- end of normalization layers ----


# ---- recurrent, masking and wrapper layers (issue 4) ----
from cutedl.layers.base import forward_takes_mask  # noqa: E402
from cutedl.layers.masking import Masking  # noqa: E402
from cutedl.layers.recurrent import GRU, LSTM, RNN, SimpleRNN  # noqa: E402
from cutedl.layers.wrappers import Bidirectional, TimeDistributed, Wrapper  # noqa: E402

__all__ += ["Masking", "forward_takes_mask", "RNN", "SimpleRNN", "LSTM", "GRU", "Wrapper", "Bidirectional",
            "TimeDistributed"]
# ---- end of recurrent layers ----


# ---- embedding layer (issue 4) ----
from cutedl.layers.embedding import Embedding  # noqa: E402

__all__ += ["Embedding"]
# ---- end of embedding layer ----
