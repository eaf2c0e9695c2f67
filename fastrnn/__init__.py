"""fastrnn: fast CPU recurrent layers (RNN, LSTM, GRU) with PyTorch semantics,
plus a layer-normalized LSTM and zoneout / recurrent dropout (fastrnn.regularized).

The forward and backward passes are C kernels (OpenMP threads, BLAS GEMMs from
SciPy) compiled through Cython, under a NumPy-first API.
"""
from ._threads import get_num_threads, get_step_team, set_num_threads, set_step_team
from .interop import from_torch, to_torch
from .keras_io import from_keras, from_keras_sequential, from_keras_weights
from .onnx_io import from_onnx
from .recurrent import GRU, LSTM, RNN
from . import losses, optim
from .io import load
from .model import (Callback, EarlyStopping, History, LearningRateScheduler,
                    ModelCheckpoint, Sequential, pad_sequences)
from .losses import ctc_beam_decode, ctc_greedy_decode, edit_distance
from .regularized import LayerNormLSTM
from .layers import (Activation, AttentionPooling, Dense, Dropout, Embedding, LastStep,
                     MaxPooling, MeanPooling)

__version__ = "0.1.0"
__all__ = ["RNN", "LSTM", "GRU", "LayerNormLSTM", "from_torch", "to_torch", "from_onnx", "from_keras",
           "from_keras_sequential", "from_keras_weights", "set_num_threads", "get_num_threads",
           "set_step_team", "get_step_team",
           "__version__", "Activation", "AttentionPooling", "Dense", "Dropout",
           "Embedding", "LastStep", "MaxPooling", "MeanPooling", "Sequential", "load",
           "pad_sequences", "losses", "optim", "Callback", "EarlyStopping", "ModelCheckpoint",
           "LearningRateScheduler", "History", "ctc_greedy_decode", "ctc_beam_decode",
           "edit_distance"]
