"""The recurrent cell kinds and their gate counts: the one table every part of
fastrnn reads (layers, the NumPy reference, the file formats, the bench).

A kind's name may be given as fastrnn's own ("LSTM", "GRU", "RNN_TANH",
"RNN_RELU", "LNLSTM"), as the layer class's ("RNN", "LayerNormLSTM"), as
ONNX's operator ("RNN", "LSTM", "GRU"), as Keras's ("SimpleRNN") or in lower
case (the bench's "lstm", "gru", "rnn").
"""

# gates G of each kind: the rows of W_ih and W_hh are G * hidden_size
#   LSTM i, f, g, o   GRU r, z, n   RNN one
GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3, "LNLSTM": 4}

_ALIASES = {"RNN": "RNN_TANH", "SIMPLERNN": "RNN_TANH", "LAYERNORMLSTM": "LNLSTM"}


def num_gates(kind):
    """Gates G of a cell kind (any of the names in the module docstring)."""
    key = str(kind).upper()
    key = _ALIASES.get(key, key)
    try:
        return GATES[key]
    except KeyError:
        raise ValueError(f"unknown recurrent cell kind {kind!r}; known: "
                         f"{sorted(GATES)} (or RNN, SimpleRNN, LayerNormLSTM)") from None
