"""fastrnn: fast CPU recurrent layers (RNN, LSTM, GRU) with PyTorch semantics,
plus a layer-normalized LSTM and zoneout / recurrent dropout (fastrnn.regularized).

The forward and backward passes are C kernels (OpenMP threads, BLAS GEMMs from
SciPy) compiled through Cython, under a NumPy-first API.
"""
from ._threads import get_num_threads, set_num_threads
from .interop import from_torch
from .recurrent import GRU, LSTM, RNN
from .regularized import LayerNormLSTM

__version__ = "0.1.0"
__all__ = ["RNN", "LSTM", "GRU", "LayerNormLSTM", "from_torch", "set_num_threads", "get_num_threads",
           "__version__"]
