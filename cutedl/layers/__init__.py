"""Layers: every layer class of cutedl, and the registry that holds them by name.

Core (``Dense``, ``Dropout``, ``Flatten``, ``Reshape``, ``Activation``), convolution and pooling,
normalization, recurrent (``SimpleRNN``, ``LSTM``, ``GRU``), masking, wrappers
(``Bidirectional``, ``TimeDistributed``) and ``Embedding``. ``registry`` holds every layer class by
name; ``Model.load`` only creates layers found there.
"""
from cutedl.layers.base import Input, InputLayer, Layer, Node, Param, forward_takes_mask, registry
from cutedl.layers.core import Activation, Dense, Dropout, Flatten, Reshape
from cutedl.layers.conv import (Conv1D, Conv2D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D, UpSampling2D,
                                ZeroPadding2D)
from cutedl.layers.pooling import (AvgPool1D, AvgPool2D, GlobalAveragePooling2D, GlobalMaxPooling2D, MaxPool1D,
                                   MaxPool2D)
from cutedl.layers.normalization import (BatchNormalization, GroupNormalization, LayerNormalization,
                                         LocalResponseNormalization)
from cutedl.layers.masking import Masking
from cutedl.layers.recurrent import GRU, LSTM, RNN, SimpleRNN
from cutedl.layers.wrappers import Bidirectional, TimeDistributed, Wrapper
from cutedl.layers.embedding import Embedding
from cutedl.layers.merge import Add, Average, Concatenate, Maximum, Merge, Minimum, Multiply, Subtract



def register(cls=None, *, name: str | None = None):
    """Register a Layer subclass of your own so that ``Model.load`` can rebuild it.

    Use as a decorator, bare or with a name::

        @cutedl.layers.register
        class Scale(Layer): ...

        @cutedl.layers.register(name="MyScale")
        class Scale(Layer): ...

    (``Model.load(path, custom_objects={'Scale': Scale})`` works without registering.)
    """
    def deco(c):
        if not (isinstance(c, type) and issubclass(c, Layer)):
            raise TypeError(f"layers.register: expected a Layer subclass, got {c!r}.")
        return registry.register(name or c.__name__)(c)

    if cls is None:
        return deco
    if isinstance(cls, str):
        raise TypeError(f"layers.register: pass the name by keyword, @layers.register(name={cls!r}).")
    return deco(cls)


# Keras spellings of the same classes
Convolution2D, Convolution1D = Conv2D, Conv1D
MaxPooling2D, AveragePooling2D, MaxPooling1D, AveragePooling1D = MaxPool2D, AvgPool2D, MaxPool1D, AvgPool1D
GlobalAvgPool2D, GlobalMaxPool2D = GlobalAveragePooling2D, GlobalMaxPooling2D
SeparableConvolution2D = SeparableConv2D

__all__ = ["Layer", "Param", "registry", "register", "forward_takes_mask", "Input", "InputLayer", "Node",
           "Merge", "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate",
           "Dense", "Dropout", "Flatten", "Reshape", "Activation",
           "Conv2D", "Conv1D", "Conv2DTranspose", "ZeroPadding2D", "UpSampling2D", "MaxPool2D", "AvgPool2D",
           "MaxPool1D", "AvgPool1D", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Convolution2D",
           "Convolution1D", "MaxPooling2D", "AveragePooling2D", "MaxPooling1D", "AveragePooling1D",
           "GlobalAvgPool2D", "GlobalMaxPool2D",
           "DepthwiseConv2D", "SeparableConv2D", "SeparableConvolution2D",
           "BatchNormalization", "LayerNormalization", "GroupNormalization", "LocalResponseNormalization",
           "Masking", "RNN", "SimpleRNN", "LSTM", "GRU", "Wrapper", "Bidirectional", "TimeDistributed",
           "Embedding"]
