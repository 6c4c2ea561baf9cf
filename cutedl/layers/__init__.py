"""Layers: every layer class of cutedl, and the registry that holds them by name.

Core (``Dense``, ``Dropout``, ``Flatten``, ``Reshape``, ``Activation``), convolution and pooling,
normalization, recurrent (``SimpleRNN``, ``LSTM``, ``GRU``), masking, wrappers
(``Bidirectional``, ``TimeDistributed``) and ``Embedding``. ``registry`` holds every layer class by
name; ``Model.load`` only creates layers found there.
"""
from cutedl.layers.base import Layer, Param, forward_takes_mask, registry
from cutedl.layers.core import Activation, Dense, Dropout, Flatten, Reshape
from cutedl.layers.conv import Conv1D, Conv2D, Conv2DTranspose, UpSampling2D, ZeroPadding2D
from cutedl.layers.pooling import (AvgPool1D, AvgPool2D, GlobalAveragePooling2D, GlobalMaxPooling2D, MaxPool1D,
                                   MaxPool2D)
from cutedl.layers.normalization import BatchNormalization, LayerNormalization
from cutedl.layers.masking import Masking
from cutedl.layers.recurrent import GRU, LSTM, RNN, SimpleRNN
from cutedl.layers.wrappers import Bidirectional, TimeDistributed, Wrapper
from cutedl.layers.embedding import Embedding


# Keras spellings of the same classes
Convolution2D, Convolution1D = Conv2D, Conv1D
MaxPooling2D, AveragePooling2D, MaxPooling1D, AveragePooling1D = MaxPool2D, AvgPool2D, MaxPool1D, AvgPool1D
GlobalAvgPool2D, GlobalMaxPool2D = GlobalAveragePooling2D, GlobalMaxPooling2D

__all__ = ["Layer", "Param", "registry", "forward_takes_mask",
           "Dense", "Dropout", "Flatten", "Reshape", "Activation",
           "Conv2D", "Conv1D", "Conv2DTranspose", "ZeroPadding2D", "UpSampling2D", "MaxPool2D", "AvgPool2D",
           "MaxPool1D", "AvgPool1D", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Convolution2D",
           "Convolution1D", "MaxPooling2D", "AveragePooling2D", "MaxPooling1D", "AveragePooling1D",
           "GlobalAvgPool2D", "GlobalMaxPool2D",
           "BatchNormalization", "LayerNormalization",
           "Masking", "RNN", "SimpleRNN", "LSTM", "GRU", "Wrapper", "Bidirectional", "TimeDistributed",
           "Embedding"]
