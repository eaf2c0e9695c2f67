"""Files and other frameworks, above the core: fastrnn's own model files
(native.py), PyTorch (torch.py), ONNX (onnx/: reader, runtime, export) and
Keras 3 (keras.py). Each format imports the layers and models it reads and
writes; the core never imports a format (model.save, model.to_onnx,
layer.to_onnx and layer.to_torch are delegates that call the public
functions below through the package namespace)."""
from ._files import get_load_limit, set_load_limit
from .keras import from_keras, from_keras_sequential, from_keras_weights
from .keras_layers import (KerasBidirectionalLast, KerasEmbedding, KerasMasking, KerasMerge,
                           KerasReverse, KerasSequential, KerasSoftmax)
from .native import load, save
from .onnx import from_onnx, to_onnx
from .torch import from_torch, to_torch

__all__ = ["load", "save", "from_torch", "to_torch", "from_onnx", "to_onnx", "from_keras",
           "from_keras_sequential", "from_keras_weights", "set_load_limit", "get_load_limit",
           "KerasSequential", "KerasMerge", "KerasReverse", "KerasSoftmax",
           "KerasBidirectionalLast", "KerasMasking", "KerasEmbedding"]
