"""Interchange with PyTorch: from_torch (torch.nn.RNN/LSTM/GRU -> fastrnn)
and to_torch (fastrnn -> torch), weights copied; the parameters already have
torch's names, shapes and gate orders, so the mapping is one to one.

Whole models: from_torch(nn.Sequential or a list of modules) -> fr.Sequential
    nn.Embedding -> fr.Embedding        nn.Linear (+ the activation right
    nn.RNN/LSTM/GRU -> the layer        after it) -> fr.Dense(activation)
      (its output sequence flows on)    nn.ReLU/Tanh/Sigmoid/ELU(1)/
    nn.Dropout -> fr.Dropout              LeakyReLU(0.01) -> fr.Activation
    nn.Identity -> nothing              nested nn.Sequential -> flattened
and to_torch(fr.Sequential) -> FastrnnSequential (a torch.nn.Module defined
here), forward(x, lengths=None) batch-first as the Sequential: recurrent
layers run through pack_padded_sequence when lengths are given, per-step
layers are zeroed past each length, and the poolings (LastStep, MeanPooling,
MaxPooling, AttentionPooling) read only the valid steps, as fastrnn's do.

ONNX is in fastrnn.formats.onnx, Keras in fastrnn.formats.keras, fastrnn's
own files in fastrnn.formats.native.
"""
import numpy as np

from ..layers import (Activation, AttentionPooling, Dense, Dropout, Embedding, LastStep,
                      MaxPooling, MeanPooling)
from ..model import Sequential
from ..recurrent import GRU, LSTM, RNN, RNNBase


def _torch_state_dict(module):
    return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}


def from_torch(module):
    """Return the fastrnn equivalent of a torch recurrent module or sequential model.

    Parameters
    ----------
    module : torch.nn.Module or list of torch.nn.Module
        A ``torch.nn.RNN``, ``LSTM`` or ``GRU`` (its weights copied; float64
        modules give float64 layers, others float32); or an ``nn.Sequential`` or a
        list of modules of embeddings, linear layers, activations and recurrent
        layers (see `from_torch_sequential`).

    Returns
    -------
    RNNBase or Sequential
        The layer, or the model for a sequence of modules.

    Raises
    ------
    TypeError, ValueError
        For modules that have no fastrnn equivalent.

    Examples
    --------
    >>> import numpy as np
    >>> import fastrnn as fr
    >>> torch = __import__("pytest").importorskip("torch")
    >>> m = torch.nn.GRU(3, 4, batch_first=True)
    >>> layer = fr.from_torch(m)
    >>> x = np.ones((2, 5, 3), np.float32)
    >>> bool(np.allclose(layer(x)[0], m(torch.from_numpy(x))[0].detach().numpy(), atol=1e-6))
    True
    """
    if isinstance(module, (list, tuple)) or (
            type(module).__name__ in ("Sequential", "ModuleList")
            and hasattr(module, "children")):
        return from_torch_sequential(module)
    return _from_torch_recurrent(module)


def _from_torch_recurrent(module):
    mode = getattr(module, "mode", None)
    cls_name = type(module).__name__
    if mode not in ("LSTM", "GRU", "RNN_TANH", "RNN_RELU") or not hasattr(module, "state_dict"):
        raise TypeError(f"from_torch: expected a torch.nn.RNN, LSTM or GRU, got {cls_name}")
    sd = _torch_state_dict(module)
    dtype = "float64" if any(str(v.dtype) == "float64" for v in sd.values()) else "float32"
    kw = dict(num_layers=module.num_layers, bias=bool(module.bias),
              batch_first=bool(module.batch_first), dropout=float(module.dropout),
              bidirectional=bool(module.bidirectional), dtype=dtype)
    if mode == "LSTM":
        layer = LSTM(module.input_size, module.hidden_size,
                     proj_size=int(getattr(module, "proj_size", 0) or 0), **kw)
    elif mode == "GRU":
        layer = GRU(module.input_size, module.hidden_size, **kw)
    else:
        layer = RNN(module.input_size, module.hidden_size,
                    nonlinearity="tanh" if mode == "RNN_TANH" else "relu", **kw)
    layer.load_state_dict(sd)
    layer.train(bool(getattr(module, "training", True)))
    return layer


def to_torch(layer):
    """Return the torch equivalent of a fastrnn layer or model, with its weights copied.

    Parameters
    ----------
    layer : RNNBase or Sequential
        An RNN, LSTM or GRU (same dtype, batch_first, dropout, train/eval mode
        in torch), or an ``fr.Sequential`` (a FastrnnSequential module, see
        `to_torch_sequential`).

    Returns
    -------
    torch.nn.Module
        The torch module.

    Raises
    ------
    ValueError
        For layers torch cannot express: a GRU with linear_before_reset=False,
        clip, peepholes, input_forget, activations and padding="carry".

    Examples
    --------
    >>> import fastrnn as fr
    >>> torch = __import__("pytest").importorskip("torch")
    >>> fr.to_torch(fr.LSTM(3, 4, num_layers=2))
    LSTM(3, 4, num_layers=2)
    """
    try:
        import torch
    except ImportError as e:
        raise ImportError("to_torch needs PyTorch: pip install torch") from e
    if isinstance(layer, Sequential):
        return to_torch_sequential(layer)
    if not isinstance(layer, RNNBase):
        raise TypeError(f"to_torch: expected a fastrnn RNN, LSTM or GRU, got "
                        f"{type(layer).__name__}")
    if layer.mode == "LNLSTM":
        raise ValueError("to_torch: LayerNormLSTM has no torch.nn equivalent")
    if layer.zoneout:
        raise ValueError(f"to_torch: zoneout={layer.zoneout} has no torch.nn."
                         f"{type(layer).__name__} equivalent")
    if layer.clip is not None:
        raise ValueError(f"to_torch: the layer clips its gate pre-activations "
                         f"(clip={layer.clip}); torch.nn.{type(layer).__name__} cannot")
    if layer.mode == "GRU" and not layer.linear_before_reset:
        raise ValueError("to_torch: a GRU with linear_before_reset=False (reset before the "
                         "recurrent product) has no torch.nn.GRU equivalent")
    no_torch = [k for k in ("peepholes", "input_forget", "activations", "padding")
                if k in layer._variant_config()]
    if no_torch:
        raise ValueError(f"to_torch: {', '.join(no_torch)}: torch.nn."
                         f"{type(layer).__name__} has no such option")
    dtype = torch.float64 if layer.dtype == np.float64 else torch.float32
    kw = dict(num_layers=layer.num_layers, bias=layer.bias, batch_first=layer.batch_first,
              dropout=layer.dropout, bidirectional=layer.bidirectional, dtype=dtype)
    if layer.mode == "LSTM":
        module = torch.nn.LSTM(layer.input_size, layer.hidden_size,
                               proj_size=layer.proj_size, **kw)
    elif layer.mode == "GRU":
        module = torch.nn.GRU(layer.input_size, layer.hidden_size, **kw)
    else:
        module = torch.nn.RNN(layer.input_size, layer.hidden_size,
                              nonlinearity=layer.nonlinearity, **kw)
    module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in layer.params.items()})
    module.train(layer.training)
    return module


# ---- whole models ---------------------------------------------------------------------

# torch activation class name -> fastrnn activation name (with the parameter
# values fastrnn's activation has; others are refused)
_TORCH_ACTS = {"ReLU": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid", "ELU": "elu",
               "LeakyReLU": "leaky_relu"}


def _torch_act(module):
    """fastrnn's name for a torch activation module, or None when it is none."""
    name = _TORCH_ACTS.get(type(module).__name__)
    if name == "elu" and float(module.alpha) != 1.0:
        raise ValueError(f"from_torch: nn.ELU(alpha={module.alpha}) is not supported "
                         "(fastrnn's elu has alpha 1)")
    if name == "leaky_relu" and float(module.negative_slope) != 0.01:
        raise ValueError(f"from_torch: nn.LeakyReLU(negative_slope={module.negative_slope}) "
                         "is not supported (fastrnn's leaky_relu has slope 0.01)")
    return name


def _flatten_modules(modules, where):
    out = []
    for i, m in enumerate(modules):
        name = f"{where}[{i}]"
        if type(m).__name__ in ("Sequential", "ModuleList") and hasattr(m, "children"):
            out.extend(_flatten_modules(list(m.children()), name))
        elif type(m).__name__ == "Identity":
            continue
        else:
            out.append((name, m))
    return out


def from_torch_sequential(modules):
    """An fr.Sequential from an nn.Sequential or a list of torch modules,
    weights copied (float64 when the modules hold float64, else float32).

    The fr.Sequential is batch-first. The torch chain of recurrent layers
    with batch_first=False runs time-major (T, N): feed the returned model
    the transposed data; mixed batch_first settings are refused. In torch an
    nn.LSTM inside nn.Sequential returns a tuple; here its output sequence
    flows on to the next layer. Unmapped modules raise TypeError naming them.
    """
    where = "from_torch"
    items = _flatten_modules(list(modules.children()) if hasattr(modules, "children")
                             else list(modules), "modules")
    if not items:
        raise ValueError("from_torch: expected at least one module")
    dtypes = set()
    for name, m in items:
        if not hasattr(m, "parameters"):
            raise TypeError(f"{where}: {name} is a {type(m).__name__}, not a torch module")
        dtypes.update(str(p.dtype) for p in m.parameters())
    dtype = "float64" if "torch.float64" in dtypes else "float32"
    bfs = {bool(m.batch_first) for _, m in items if getattr(m, "mode", None) is not None}
    if len(bfs) > 1:
        raise ValueError(f"{where}: the recurrent modules mix batch_first=True and False; "
                         "the data between them would change layout")
    layers, i = [], 0
    while i < len(items):
        name, m = items[i]
        kind = type(m).__name__
        if kind == "Embedding":
            if m.max_norm is not None:
                raise ValueError(f"{where}: {name} nn.Embedding(max_norm={m.max_norm}) "
                                 "renormalises rows at lookup; fastrnn's Embedding does not")
            layer = Embedding(m.num_embeddings, m.embedding_dim, padding_idx=m.padding_idx,
                              dtype=dtype)
            layer.load_state_dict(_torch_state_dict(m))
        elif kind == "Linear":
            act = None
            if i + 1 < len(items):
                act = _torch_act(items[i + 1][1])
                if act is not None:
                    i += 1  # folded into the Dense
            layer = Dense(m.in_features, m.out_features, activation=act,
                          bias=m.bias is not None, dtype=dtype)
            layer.load_state_dict(_torch_state_dict(m))
        elif kind in ("Dropout",):
            layer = Dropout(float(m.p), dtype=dtype)
        elif getattr(m, "mode", None) in ("LSTM", "GRU", "RNN_TANH", "RNN_RELU"):
            layer = _from_torch_recurrent(m)
            if np.dtype(layer.dtype).name != dtype:  # a float32 RNN in a float64 chain
                raise ValueError(f"{where}: {name} holds {layer.dtype} weights, the other "
                                 f"modules {dtype}")
        elif _torch_act(m) is not None:
            layer = Activation(_torch_act(m), dtype=dtype)
        else:
            raise TypeError(f"{where}: {name} ({kind}) has no fastrnn equivalent; mapped are "
                            "nn.Embedding, nn.Linear, nn.RNN/LSTM/GRU, nn.Dropout, nn.Identity "
                            "and nn.ReLU/Tanh/Sigmoid/ELU/LeakyReLU")
        layers.append(layer)
        i += 1
    model = Sequential(layers)
    training = getattr(modules, "training", None)
    if training is None:
        training = all(m.training for _, m in items)
    model.train(bool(training))
    return model


_TORCH_CLASSES = {}


def _classes():
    """The torch module classes of to_torch(fr.Sequential), defined on first
    use so that importing fastrnn needs no torch."""
    if _TORCH_CLASSES:
        return _TORCH_CLASSES
    import torch
    from torch import nn

    def valid_mask(x, lengths):
        """(N, T, 1) bool, t < lengths[n]."""
        T = x.shape[1]
        return (torch.arange(T, device=x.device)[None, :] < lengths[:, None])[:, :, None]

    class LastStep(nn.Module):
        """x[n, lengths[n]-1] (the last step without lengths)."""

        def forward(self, x, lengths=None):
            if lengths is None:
                return x[:, -1]
            return x[torch.arange(x.shape[0]), lengths - 1]

    class MeanPooling(nn.Module):
        """Mean over the valid steps."""

        def forward(self, x, lengths=None):
            if lengths is None:
                return x.mean(dim=1)
            s = (x * valid_mask(x, lengths).to(x.dtype)).sum(dim=1)
            return s / lengths.to(x.dtype)[:, None]

    class MaxPooling(nn.Module):
        """Maximum over the valid steps."""

        def forward(self, x, lengths=None):
            if lengths is not None:
                x = x.masked_fill(~valid_mask(x, lengths), float("-inf"))
            return x.max(dim=1).values

    class AttentionPooling(nn.Module):
        """a = softmax over valid t of v . tanh(W h_t + b); out = sum_t a_t h_t."""

        def __init__(self, input_size, attention_size, dtype):
            super().__init__()
            self.proj = nn.Linear(input_size, attention_size, dtype=dtype)
            self.context = nn.Parameter(torch.zeros(attention_size, dtype=dtype))

        def forward(self, x, lengths=None):
            s = torch.tanh(self.proj(x)) @ self.context          # (N, T)
            if lengths is not None:
                s = s.masked_fill(~valid_mask(x, lengths)[:, :, 0], float("-inf"))
            a = torch.softmax(s, dim=1)
            return (a[:, :, None] * x).sum(dim=1)

    class FastrnnSequential(nn.Module):
        """A fastrnn Sequential as a torch module: forward(x, lengths=None),
        batch-first, the same outputs as the Sequential's model(x, lengths)
        (raw outputs; zeros past each length on sequence outputs)."""

        def __init__(self, layers, kinds):
            super().__init__()
            self.layers = nn.ModuleList(layers)
            self.kinds = list(kinds)

        def forward(self, x, lengths=None):
            from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
            seq = True
            if lengths is not None:
                lengths = torch.as_tensor(lengths, dtype=torch.int64, device=x.device)
            for layer, kind in zip(self.layers, self.kinds):
                if kind == "recurrent":
                    xin = x if layer.batch_first else x.transpose(0, 1)
                    if lengths is None:
                        y, _ = layer(xin)
                    else:
                        T = x.shape[1]
                        packed = pack_padded_sequence(xin, lengths.cpu(),
                                                      batch_first=layer.batch_first,
                                                      enforce_sorted=False)
                        y, _ = layer(packed)
                        y, _ = pad_packed_sequence(y, batch_first=layer.batch_first,
                                                   total_length=T)
                    x = y if layer.batch_first else y.transpose(0, 1)
                elif kind == "pool":
                    x = layer(x, lengths)
                    seq = False
                else:  # per step: Embedding, Linear (+ activation), activations, Dropout
                    x = layer(x)
                    if kind == "masked" and seq and lengths is not None:
                        x = x * valid_mask(x, lengths).to(x.dtype)
            return x

    _TORCH_CLASSES.update(LastStep=LastStep, MeanPooling=MeanPooling, MaxPooling=MaxPooling,
                          AttentionPooling=AttentionPooling,
                          FastrnnSequential=FastrnnSequential)
    return _TORCH_CLASSES


def _torch_activation(name):
    from torch import nn
    return {"relu": nn.ReLU(), "tanh": nn.Tanh(), "sigmoid": nn.Sigmoid(), "elu": nn.ELU(),
            "leaky_relu": nn.LeakyReLU(0.01)}[name]


def to_torch_sequential(model):
    """A FastrnnSequential torch module equivalent to fr.Sequential `model`
    (weights copied, same dtype and train/eval mode); see the module docstring.
    LayerNormLSTM and zoneout layers raise ValueError."""
    import torch
    from torch import nn
    C = _classes()
    tdtype = torch.float64 if np.dtype(model.dtype) == np.float64 else torch.float32

    def copy(module, params):
        module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in params.items()})
        return module

    layers, kinds = [], []
    for i, l in enumerate(model.layers):
        if isinstance(l, RNNBase):
            layers.append(to_torch(l))
            kinds.append("recurrent")
        elif isinstance(l, Embedding):
            layers.append(copy(nn.Embedding(l.num_embeddings, l.embedding_dim,
                                             padding_idx=l.padding_idx, dtype=tdtype), l.params))
            kinds.append("masked")
        elif isinstance(l, Dense):
            lin = copy(nn.Linear(l.in_features, l.out_features, bias=l.bias, dtype=tdtype),
                       l.params)
            layers.append(lin if l.activation == "linear" else
                          nn.Sequential(lin, _torch_activation(l.activation)))
            kinds.append("masked")
        elif isinstance(l, Activation):
            layers.append(nn.Identity() if l.activation == "linear"
                          else _torch_activation(l.activation))
            kinds.append("masked")
        elif isinstance(l, Dropout):
            layers.append(nn.Dropout(l.p))
            kinds.append("step")
        elif isinstance(l, LastStep):
            layers.append(C["LastStep"]())
            kinds.append("pool")
        elif isinstance(l, MeanPooling):
            layers.append(C["MeanPooling"]())
            kinds.append("pool")
        elif isinstance(l, MaxPooling):
            layers.append(C["MaxPooling"]())
            kinds.append("pool")
        elif isinstance(l, AttentionPooling):
            att = C["AttentionPooling"](l.input_size, l.attention_size, tdtype)
            copy(att, {"proj.weight": l.params["weight"], "proj.bias": l.params["bias"],
                       "context": l.params["context"]})
            layers.append(att)
            kinds.append("pool")
        else:
            raise ValueError(f"to_torch: layers[{i}]: {type(l).__name__} has no torch "
                             "equivalent here")
    module = C["FastrnnSequential"](layers, kinds)
    module.train(bool(model.training))
    return module
