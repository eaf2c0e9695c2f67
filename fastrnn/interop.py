"""Interchange with other frameworks."""
from .recurrent import GRU, LSTM, RNN


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
        raise ValueError("from_torch: LSTM with proj_size > 0 (projections) is not supported")
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
