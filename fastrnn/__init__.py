"""fastrnn: fast CPU recurrent layers (RNN, LSTM, GRU) with PyTorch semantics.

The forward and backward passes are C kernels (OpenMP threads, BLAS GEMMs from
SciPy) compiled through Cython, under a NumPy-first API.
"""
from ._threads import get_num_threads, set_num_threads
from .interop import from_torch, to_torch
from .keras_io import from_keras, from_keras_weights
from .onnx_io import from_onnx
from .recurrent import GRU, LSTM, RNN

__version__ = "0.1.0"
__all__ = ["RNN", "LSTM", "GRU", "from_torch", "to_torch", "from_onnx", "from_keras",
           "from_keras_weights", "set_num_threads", "get_num_threads", "__version__"]
