"""Interchange with PyTorch: from_torch (torch.nn.RNN/LSTM/GRU -> fastrnn)
and to_torch (fastrnn -> torch), weights copied; the parameters already have
torch's names, shapes and gate orders, so the mapping is one to one.

ONNX is in fastrnn.onnx_io, Keras in fastrnn.keras_io.
"""
import numpy as np

from .recurrent import GRU, LSTM, RNN, _RNNBase


def _torch_state_dict(module):
    return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}


def from_torch(module):
    """The fastrnn layer equivalent to a torch.nn.RNN, LSTM or GRU, with its
    weights copied (float64 modules give float64 layers, others float32)."""
    mode = getattr(module, "mode", None)
    cls_name = type(module).__name__
    if mode not in ("LSTM", "GRU", "RNN_TANH", "RNN_RELU") or not hasattr(module, "state_dict"):
        raise TypeError(f"from_torch: expected a torch.nn.RNN, LSTM or GRU, got {cls_name}")
    if getattr(module, "proj_size", 0):
        raise ValueError(f"from_torch: LSTM with proj_size={module.proj_size} (projections of "
                         "h) is not supported; fastrnn's LSTM has no projection")
    sd = _torch_state_dict(module)
    dtype = "float64" if any(str(v.dtype) == "float64" for v in sd.values()) else "float32"
    kw = dict(num_layers=module.num_layers, bias=bool(module.bias),
              batch_first=bool(module.batch_first), dropout=float(module.dropout),
              bidirectional=bool(module.bidirectional), dtype=dtype)
    if mode == "LSTM":
        layer = LSTM(module.input_size, module.hidden_size, **kw)
    elif mode == "GRU":
        layer = GRU(module.input_size, module.hidden_size, **kw)
    else:
        layer = RNN(module.input_size, module.hidden_size,
                    nonlinearity="tanh" if mode == "RNN_TANH" else "relu", **kw)
    layer.load_state_dict(sd)
    layer.train(bool(getattr(module, "training", True)))
    return layer


def to_torch(layer):
    """The torch.nn.RNN, LSTM or GRU equivalent to a fastrnn layer, with its
    weights copied (same dtype, batch_first, dropout, train/eval mode).
    Layers torch cannot express raise ValueError: a GRU with
    linear_before_reset=False, and clip."""
    try:
        import torch
    except ImportError as e:
        raise ImportError("to_torch needs PyTorch: pip install torch") from e
    if not isinstance(layer, _RNNBase):
        raise TypeError(f"to_torch: expected a fastrnn RNN, LSTM or GRU, got "
                        f"{type(layer).__name__}")
    if layer.clip is not None:
        raise ValueError(f"to_torch: the layer clips its gate pre-activations "
                         f"(clip={layer.clip}); torch.nn.{type(layer).__name__} cannot")
    if layer.mode == "GRU" and not layer.linear_before_reset:
        raise ValueError("to_torch: a GRU with linear_before_reset=False (reset before the "
                         "recurrent product) has no torch.nn.GRU equivalent")
    dtype = torch.float64 if layer.dtype == np.float64 else torch.float32
    kw = dict(num_layers=layer.num_layers, bias=layer.bias, batch_first=layer.batch_first,
              dropout=layer.dropout, bidirectional=layer.bidirectional, dtype=dtype)
    if layer.mode == "LSTM":
        module = torch.nn.LSTM(layer.input_size, layer.hidden_size, **kw)
    elif layer.mode == "GRU":
        module = torch.nn.GRU(layer.input_size, layer.hidden_size, **kw)
    else:
        module = torch.nn.RNN(layer.input_size, layer.hidden_size,
                              nonlinearity=layer.nonlinearity, **kw)
    module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in layer.params.items()})
    module.train(layer.training)
    return module
