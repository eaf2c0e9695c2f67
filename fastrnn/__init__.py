"""fastrnn: fast CPU recurrent layers (RNN, LSTM, GRU) with PyTorch semantics,
plus a layer-normalized LSTM and zoneout / recurrent dropout (fastrnn.regularized).

The forward and backward passes are C kernels (OpenMP threads, BLAS GEMMs from
SciPy) compiled through Cython, under a NumPy-first API. docs/architecture.md
maps the package: backends (the kernels) <- layers <- model <- formats.
"""
from ._version import __version__
from .backends.cpu.threads import (batch_invariant, get_adaptive_threads, get_batch_invariant,
                                   get_num_threads, get_step_team, get_wait_policy,
                                   set_adaptive_threads, set_batch_invariant, set_num_threads,
                                   set_step_team, set_wait_policy, thread_stats)
from .recurrent import GRU, LSTM, RNN, RNNBase
from . import backends, losses, optim
from .model import (Callback, EarlyStopping, History, LearningRateScheduler,
                    ModelCheckpoint, Sequential, pad_sequences)
from .losses import ctc_beam_decode, ctc_greedy_decode, edit_distance
from .regularized import LayerNormLSTM
from .layers import (Activation, AttentionPooling, Dense, Dropout, Embedding, LastStep,
                     Layer, MaxPooling, MeanPooling, register_layer)
from .gradcheck import GradientCheckError, GradientReport, check_gradients
from .streaming import StreamSession
from .seq2seq import Seq2Seq
from . import decoding
from .quantization import quantization_report
from . import formats
from .formats import (from_keras, from_keras_sequential, from_keras_weights, from_onnx,
                      from_torch, load, save, to_onnx, to_torch)

__all__ = ["RNN", "LSTM", "GRU", "RNNBase", "LayerNormLSTM", "Layer", "from_torch", "to_torch",
           "from_onnx", "to_onnx", "from_keras", "from_keras_sequential", "from_keras_weights",
           "set_num_threads", "get_num_threads", "set_step_team", "get_step_team",
           "set_wait_policy", "get_wait_policy", "set_adaptive_threads",
           "get_adaptive_threads", "thread_stats",
           "set_batch_invariant", "get_batch_invariant", "batch_invariant",
           "__version__", "Activation", "AttentionPooling", "Dense", "Dropout",
           "Embedding", "LastStep", "MaxPooling", "MeanPooling", "Sequential", "load", "save",
           "pad_sequences", "losses", "optim", "backends", "formats", "Callback",
           "EarlyStopping", "ModelCheckpoint", "LearningRateScheduler", "History",
           "ctc_greedy_decode", "ctc_beam_decode", "edit_distance", "register_layer",
           "check_gradients", "GradientReport", "GradientCheckError",
           "StreamSession", "quantization_report", "Seq2Seq", "decoding"]
