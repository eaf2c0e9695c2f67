"""PyTorch twin of fr.Seq2Seq, the attention encoder-decoder of issue 25.

The twin follows /work/notes/seq2seq_spec.md to the letter: the same
constructor arguments, the same flat parameter names (torch conventions, W is
(out, in)) and the same teacher-forced forward pass and loss. It is the oracle
of the parity tests (values and autograd gradients from the same weights) and
the torch side of the side-by-side fit timings.

Importing this module does not import torch: ``TorchSeq2Seq`` is built on its
first access (module ``__getattr__``), so the NumPy helpers here
(``resolve_config``, ``param_shapes``, ``make_params``, ``teacher_forcing``)
work without it.

Symbols: target ids are 0..Vt-1; EOS = Vt and BOS = Vt+1. The output layer has
Vt+1 classes (symbols and EOS), the target embedding Vt+2 rows.

Examples
--------
>>> torch = __import__("pytest").importorskip("torch")
>>> import numpy as np
>>> from fastrnn.examples import _seq2seq_torch as s2s
>>> cfg = dict(src_vocab=7, tgt_vocab=5, embedding_dim=3, hidden_size=4)
>>> twin = s2s.TorchSeq2Seq(**cfg, dtype="float64", seed=0)
>>> yin, targets, steps = s2s.teacher_forcing([[1, 2], [4]], tgt_vocab=5)
>>> src, src_lengths = np.array([[1, 2, 3], [4, 5, 0]]), np.array([3, 2])
>>> loss, logits, grads = twin.loss_and_grads(src, src_lengths, yin, targets, steps)
>>> logits.shape, sorted(grads) == sorted(s2s.param_shapes(**cfg))
((2, 3, 6), True)
"""
import numbers

import numpy as np

from fastrnn._cells import num_gates

__all__ = ["CELLS", "DECODER_CELLS", "ATTENTIONS", "BRIDGES", "resolve_config",
           "param_shapes", "make_params", "teacher_forcing", "torch_twin_class",
           "TorchSeq2Seq"]

CELLS = ("lstm", "gru", "rnn")          # encoder cells (rnn: tanh)
DECODER_CELLS = ("lstm", "gru")
ATTENTIONS = ("dot", "general", "bahdanau")
BRIDGES = ("dense", "zeros")
DTYPES = ("float32", "float64")


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def _choice(value, name, options):
    if value not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value


def _dtype_name(dtype):
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    return name


def resolve_config(src_vocab, tgt_vocab, embedding_dim=64, hidden_size=256, num_layers=1,
                   bidirectional=True, cell="lstm", decoder_hidden=None, decoder_layers=1,
                   decoder_cell="lstm", attention="general", attention_size=None,
                   input_feeding=True, bridge="dense", dropout=0.0):
    """Check the spec's constructor arguments and fill in the derived defaults.

    Parameters
    ----------
    src_vocab, tgt_vocab : int
        Source vocabulary size Vs and number of target symbols Vt (EOS and
        BOS are added: ids Vt and Vt+1).
    embedding_dim : int, default 64
        E, for the source and the target embedding.
    hidden_size : int, default 256
        He, encoder hidden size per direction.
    num_layers : int, default 1
        Encoder layers.
    bidirectional : bool, default True
        Bidirectional encoder (D = 2).
    cell : {"lstm", "gru", "rnn"}, default "lstm"
        Encoder cell ("rnn" is tanh).
    decoder_hidden : int or None, default None
        Hd; None gives D*He.
    decoder_layers : int, default 1
        Ld, stacked decoder cells.
    decoder_cell : {"lstm", "gru"}, default "lstm"
    attention : {"dot", "general", "bahdanau"}, default "general"
        "dot" needs Hd == D*He.
    attention_size : int or None, default None
        A, bahdanau only; None gives Hd.
    input_feeding : bool, default True
        Feed the previous attentional state into the first decoder layer.
    bridge : {"dense", "zeros"}, default "dense"
        Decoder initial state from the encoder's final state, or zeros.
    dropout : float, default 0.0
        In [0, 1): between encoder layers and before the output layer.

    Returns
    -------
    dict
        Every argument by name, with decoder_hidden and attention_size
        resolved (attention_size is None unless attention is "bahdanau").

    Raises
    ------
    TypeError
        A size that is not an int, or a flag that is not a bool.
    ValueError
        A size below 1, an unknown option, dropout outside [0, 1), or dot
        attention with decoder_hidden != D*hidden_size.

    Examples
    --------
    >>> from fastrnn.examples._seq2seq_torch import resolve_config
    >>> cfg = resolve_config(10, 6, hidden_size=8, attention="bahdanau")
    >>> cfg["decoder_hidden"], cfg["attention_size"]
    (16, 16)
    """
    cfg = dict(src_vocab=_positive_int(src_vocab, "src_vocab"),
               tgt_vocab=_positive_int(tgt_vocab, "tgt_vocab"),
               embedding_dim=_positive_int(embedding_dim, "embedding_dim"),
               hidden_size=_positive_int(hidden_size, "hidden_size"),
               num_layers=_positive_int(num_layers, "num_layers"))
    for name, flag in (("bidirectional", bidirectional), ("input_feeding", input_feeding)):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
    cfg["bidirectional"] = bool(bidirectional)
    cfg["cell"] = _choice(cell, "cell", CELLS)
    D = 2 if cfg["bidirectional"] else 1
    De = D * cfg["hidden_size"]
    cfg["decoder_hidden"] = (De if decoder_hidden is None
                             else _positive_int(decoder_hidden, "decoder_hidden"))
    cfg["decoder_layers"] = _positive_int(decoder_layers, "decoder_layers")
    cfg["decoder_cell"] = _choice(decoder_cell, "decoder_cell", DECODER_CELLS)
    cfg["attention"] = _choice(attention, "attention", ATTENTIONS)
    if cfg["attention"] == "dot" and cfg["decoder_hidden"] != De:
        raise ValueError(f"attention='dot' needs decoder_hidden == {D}*hidden_size = {De}, "
                         f"got decoder_hidden={cfg['decoder_hidden']}")
    if cfg["attention"] == "bahdanau":
        cfg["attention_size"] = (cfg["decoder_hidden"] if attention_size is None
                                 else _positive_int(attention_size, "attention_size"))
    else:
        cfg["attention_size"] = None
    cfg["input_feeding"] = bool(input_feeding)
    cfg["bridge"] = _choice(bridge, "bridge", BRIDGES)
    if (isinstance(dropout, bool) or not isinstance(dropout, numbers.Real)
            or not 0.0 <= float(dropout) < 1.0):
        raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
    cfg["dropout"] = float(dropout)
    return cfg


def param_shapes(**config):
    """The spec's flat parameter names and shapes, in the spec's order.

    Parameters
    ----------
    **config
        The constructor arguments (see `resolve_config`).

    Returns
    -------
    dict
        name -> shape tuple: src_embedding, tgt_embedding, encoder.* (torch's
        nn.LSTM/GRU/RNN names), bridge_h.* and bridge_c.* (dense bridge;
        bridge_c only with LSTM encoder and LSTM decoder), decoder.*_l{k}
        (torch LSTMCell/GRUCell layouts), attention.* (none for dot),
        combine.*, out.*.

    Examples
    --------
    >>> from fastrnn.examples._seq2seq_torch import param_shapes
    >>> shapes = param_shapes(src_vocab=10, tgt_vocab=6, embedding_dim=4,
    ...                       hidden_size=3, decoder_cell="gru")
    >>> shapes["tgt_embedding.weight"], shapes["decoder.weight_ih_l0"]
    ((8, 4), (18, 10))
    >>> "bridge_c.weight" in shapes
    False
    """
    c = resolve_config(**config)
    E, He, L = c["embedding_dim"], c["hidden_size"], c["num_layers"]
    D = 2 if c["bidirectional"] else 1
    De, Hd, Ld = D * He, c["decoder_hidden"], c["decoder_layers"]
    Vt = c["tgt_vocab"]
    shapes = {"src_embedding.weight": (c["src_vocab"], E),
              "tgt_embedding.weight": (Vt + 2, E)}
    G = num_gates(c["cell"])
    for k in range(L):
        In = E if k == 0 else De
        for sfx in ("", "_reverse")[:D]:
            shapes[f"encoder.weight_ih_l{k}{sfx}"] = (G * He, In)
            shapes[f"encoder.weight_hh_l{k}{sfx}"] = (G * He, He)
            shapes[f"encoder.bias_ih_l{k}{sfx}"] = (G * He,)
            shapes[f"encoder.bias_hh_l{k}{sfx}"] = (G * He,)
    if c["bridge"] == "dense":
        shapes["bridge_h.weight"] = (Ld * Hd, De)
        shapes["bridge_h.bias"] = (Ld * Hd,)
        if c["cell"] == "lstm" and c["decoder_cell"] == "lstm":
            shapes["bridge_c.weight"] = (Ld * Hd, De)
            shapes["bridge_c.bias"] = (Ld * Hd,)
    Gd = num_gates(c["decoder_cell"])
    for k in range(Ld):
        In = (E + Hd if c["input_feeding"] else E) if k == 0 else Hd
        shapes[f"decoder.weight_ih_l{k}"] = (Gd * Hd, In)
        shapes[f"decoder.weight_hh_l{k}"] = (Gd * Hd, Hd)
        shapes[f"decoder.bias_ih_l{k}"] = (Gd * Hd,)
        shapes[f"decoder.bias_hh_l{k}"] = (Gd * Hd,)
    if c["attention"] == "general":
        shapes["attention.weight"] = (Hd, De)
    elif c["attention"] == "bahdanau":
        A = c["attention_size"]
        shapes["attention.key_weight"] = (A, De)
        shapes["attention.query_weight"] = (A, Hd)
        shapes["attention.v"] = (A,)
    shapes["combine.weight"] = (Hd, De + Hd)
    shapes["combine.bias"] = (Hd,)
    shapes["out.weight"] = (Vt + 1, Hd)
    shapes["out.bias"] = (Vt + 1,)
    return shapes


def make_params(dtype="float32", seed=None, scale=1.0, **config):
    """Random flat parameters of a configuration, from a seeded NumPy generator.

    torch's default scales: embeddings N(0, 1); every other array U(-k, k)
    with k = 1/sqrt(fan), fan the hidden size for the encoder's and the
    decoder's arrays, the weight's fan-in for a Linear's weight and bias,
    A for attention.v.

    Parameters
    ----------
    dtype : {"float32", "float64"}, default "float32"
    seed : int or None, default None
        Seed of numpy.random.default_rng; None draws fresh entropy.
    scale : float, default 1.0
        Multiplies k (not the embeddings): tests use scale > 1 to drive the
        cells and the attention out of their near-linear range.
    **config
        The constructor arguments (see `resolve_config`).

    Returns
    -------
    dict
        name -> C-contiguous array of `dtype`, names and shapes as
        `param_shapes`.

    Raises
    ------
    ValueError
        dtype other than float32/float64, or a bad configuration.

    Examples
    --------
    >>> from fastrnn.examples._seq2seq_torch import make_params
    >>> p = make_params(src_vocab=10, tgt_vocab=6, hidden_size=3, embedding_dim=4,
    ...                 dtype="float64", seed=0)
    >>> p["out.weight"].shape, p["out.weight"].dtype
    ((7, 6), dtype('float64'))
    >>> bool((make_params(src_vocab=10, tgt_vocab=6, seed=1)["out.bias"]
    ...       == make_params(src_vocab=10, tgt_vocab=6, seed=1)["out.bias"]).all())
    True
    """
    dtype = _dtype_name(dtype)
    if (isinstance(scale, bool) or not isinstance(scale, numbers.Real)
            or not 0 < float(scale) < np.inf):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    c = resolve_config(**config)
    shapes = param_shapes(**c)
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in shapes.items():
        module, _, stem = name.partition(".")
        if module.endswith("embedding"):
            a = rng.standard_normal(shape)
        else:
            if module == "encoder":      # torch's RNNs: 1/sqrt(hidden) for every array
                fan = c["hidden_size"]
            elif module == "decoder":    # torch's RNN cells likewise
                fan = c["decoder_hidden"]
            elif stem == "bias":         # nn.Linear: the weight's fan-in
                fan = shapes[module + ".weight"][1]
            else:                        # a weight's fan-in; attention.v: A
                fan = shape[-1]
            k = float(scale) / np.sqrt(fan)
            a = rng.uniform(-k, k, shape)
        params[name] = np.ascontiguousarray(a, dtype=dtype)
    return params


def teacher_forcing(sequences, tgt_vocab, pad=0):
    """Decoder inputs and targets of target sequences, as the spec builds them.

    A sequence y_1..y_n gives n+1 steps: inputs [BOS, y_1..y_n] and targets
    [y_1..y_n, EOS], EOS = tgt_vocab and BOS = tgt_vocab+1.

    Parameters
    ----------
    sequences : sequence of sequences of int
        Target symbols, each in 0..tgt_vocab-1; a sequence may be empty.
    tgt_vocab : int
        Vt, the number of target symbols.
    pad : int, default 0
        Value of the steps past a row's length (inputs and targets).

    Returns
    -------
    yin : ndarray of int64, shape (B, T)
    targets : ndarray of int64, shape (B, T)
    steps : ndarray of int64, shape (B,)
        n_b + 1 valid steps of row b; T = max(steps).

    Raises
    ------
    ValueError
        No sequences, or a symbol outside 0..tgt_vocab-1.

    Examples
    --------
    >>> from fastrnn.examples._seq2seq_torch import teacher_forcing
    >>> yin, targets, steps = teacher_forcing([[3, 1], []], tgt_vocab=4)
    >>> yin.tolist(), targets.tolist(), steps.tolist()
    ([[5, 3, 1], [5, 0, 0]], [[3, 1, 4], [4, 0, 0]], [3, 1])
    """
    Vt = _positive_int(tgt_vocab, "tgt_vocab")
    seqs = [np.asarray(s, dtype=np.int64).reshape(-1) for s in sequences]
    if not seqs:
        raise ValueError("sequences must hold at least one sequence")
    for s in seqs:
        if s.size and (s.min() < 0 or s.max() >= Vt):
            raise ValueError(f"sequences must hold symbols in 0..{Vt - 1}, got {s.tolist()}")
    steps = np.array([s.size + 1 for s in seqs], dtype=np.int64)
    yin = np.full((len(seqs), int(steps.max())), pad, dtype=np.int64)
    targets = yin.copy()
    for b, s in enumerate(seqs):
        yin[b, :s.size + 1] = np.concatenate([[Vt + 1], s])
        targets[b, :s.size + 1] = np.concatenate([s, [Vt]])
    return yin, targets, steps


def _ids(x, name, high):
    """(B, N) int64 array of ids in 0..high-1 (a TypeError for non-integers)."""
    a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x)
    if not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must hold integers, got dtype {a.dtype}")
    if a.ndim != 2 or 0 in a.shape:
        raise ValueError(f"{name} must be a non-empty (B, N) array, got shape {a.shape}")
    return a.astype(np.int64)


def _lengths(x, name, B, high):
    a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x)
    if not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must hold integers, got dtype {a.dtype}")
    if a.shape != (B,):
        raise ValueError(f"{name} must have shape ({B},), got {a.shape}")
    if a.min() < 1 or a.max() > high:
        raise ValueError(f"{name} must be in 1..{high}, got {a.tolist()}")
    return a.astype(np.int64)


def _check_range(a, name, high, valid=None):
    v = a if valid is None else a[valid]
    if v.size and (v.min() < 0 or v.max() >= high):
        raise ValueError(f"{name} must hold ids in 0..{high - 1}, got {v.min()}..{v.max()}")


_CACHE = {}


def torch_twin_class():
    """Import torch and build the TorchSeq2Seq class (once).

    Returns
    -------
    type
        The torch.nn.Module subclass also reached as
        ``fastrnn.examples._seq2seq_torch.TorchSeq2Seq``.

    Raises
    ------
    ImportError
        Where torch is not installed.

    Examples
    --------
    >>> torch = __import__("pytest").importorskip("torch")
    >>> from fastrnn.examples import _seq2seq_torch as s2s
    >>> s2s.torch_twin_class() is s2s.TorchSeq2Seq
    True
    """
    if "TorchSeq2Seq" not in _CACHE:
        _CACHE["TorchSeq2Seq"] = _build_class()
    return _CACHE["TorchSeq2Seq"]


def __getattr__(name):
    if name == "TorchSeq2Seq":
        return torch_twin_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _build_class():
    import torch
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    class TorchSeq2Seq(nn.Module):
        """The spec's attention encoder-decoder in PyTorch (issue 25).

        Built from nn.Embedding, nn.LSTM/GRU/RNN (batch_first, packed by
        length) for the encoder, nn.LSTMCell/GRUCell for the decoder layers
        and nn.Linear for the bridge, the attention, the combination and the
        output; the decoder cells' parameters are exposed under the spec's
        names decoder.<stem>_l{k} by `load_params`, `flat_params` and
        `named_flat_grads`.

        Parameters
        ----------
        src_vocab, tgt_vocab, embedding_dim, hidden_size, num_layers, \
bidirectional, cell, decoder_hidden, decoder_layers, decoder_cell, attention, \
attention_size, input_feeding, bridge, dropout
            As `resolve_config` (the spec's constructor).
        dtype : {"float32", "float64"}, default "float32"
        seed : int or None, default None
            The initial weights are ``make_params(dtype, seed, **config)``.

        Raises
        ------
        TypeError, ValueError
            A bad configuration (see `resolve_config`) or dtype.

        Examples
        --------
        >>> torch = __import__("pytest").importorskip("torch")
        >>> import numpy as np
        >>> from fastrnn.examples import _seq2seq_torch as s2s
        >>> cfg = dict(src_vocab=9, tgt_vocab=4, embedding_dim=3, hidden_size=2,
        ...            attention="bahdanau", attention_size=5)
        >>> twin = s2s.TorchSeq2Seq(**cfg, dtype="float64", seed=3)
        >>> p = s2s.make_params(**cfg, dtype="float64", seed=3)
        >>> all(np.array_equal(twin.flat_params()[k], p[k]) for k in p)
        True
        >>> src, lengths = np.array([[1, 2, 8]]), np.array([2])
        >>> logits, attn = twin(src, lengths, np.array([[5, 0]]), return_attention=True)
        >>> tuple(logits.shape), attn[0, :, 2].tolist()
        ((1, 2, 5), [0.0, 0.0])
        """

        def __init__(self, src_vocab, tgt_vocab, embedding_dim=64, hidden_size=256,
                     num_layers=1, bidirectional=True, cell="lstm", decoder_hidden=None,
                     decoder_layers=1, decoder_cell="lstm", attention="general",
                     attention_size=None, input_feeding=True, bridge="dense",
                     dropout=0.0, dtype="float32", seed=None):
            super().__init__()
            c = resolve_config(src_vocab, tgt_vocab, embedding_dim, hidden_size, num_layers,
                               bidirectional, cell, decoder_hidden, decoder_layers,
                               decoder_cell, attention, attention_size, input_feeding,
                               bridge, dropout)
            self.config = c
            self.np_dtype = np.dtype(_dtype_name(dtype))
            E, He, L = c["embedding_dim"], c["hidden_size"], c["num_layers"]
            D = 2 if c["bidirectional"] else 1
            De, Hd, Ld, Vt = D * He, c["decoder_hidden"], c["decoder_layers"], c["tgt_vocab"]
            self.src_embedding = nn.Embedding(c["src_vocab"], E)
            self.tgt_embedding = nn.Embedding(Vt + 2, E)
            rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[c["cell"]]
            # torch applies dropout only between layers (and warns for one layer)
            self.encoder = rnn(E, He, num_layers=L, batch_first=True,
                               bidirectional=c["bidirectional"],
                               dropout=c["dropout"] if L > 1 else 0.0)
            if c["bridge"] == "dense":
                self.bridge_h = nn.Linear(De, Ld * Hd)
                if c["cell"] == "lstm" and c["decoder_cell"] == "lstm":
                    self.bridge_c = nn.Linear(De, Ld * Hd)
            cellcls = nn.LSTMCell if c["decoder_cell"] == "lstm" else nn.GRUCell
            In0 = E + Hd if c["input_feeding"] else E
            self.decoder_cells = nn.ModuleList(
                [cellcls(In0 if k == 0 else Hd, Hd) for k in range(Ld)])
            if c["attention"] == "general":
                self.attention = nn.Linear(De, Hd, bias=False)
            elif c["attention"] == "bahdanau":
                A = c["attention_size"]
                self.attention = nn.Module()
                self.attention.key_weight = nn.Parameter(torch.empty(A, De))
                self.attention.query_weight = nn.Parameter(torch.empty(A, Hd))
                self.attention.v = nn.Parameter(torch.empty(A))
            self.combine = nn.Linear(De + Hd, Hd)
            self.out_dropout = nn.Dropout(c["dropout"])
            self.out = nn.Linear(Hd, Vt + 1)
            self.to(getattr(torch, self.np_dtype.name))
            self._shapes = param_shapes(**c)
            self.load_params(make_params(self.np_dtype.name, seed, **c))

        # -- the spec's flat parameter names --------------------------------

        def _flat(self):
            """spec name -> the module's Parameter, in the spec's order."""
            flat = {}
            for name, p in self.named_parameters():
                if name.startswith("decoder_cells."):
                    _, k, stem = name.split(".")
                    name = f"decoder.{stem}_l{k}"
                flat[name] = p
            assert sorted(flat) == sorted(self._shapes), (sorted(flat), self._shapes)
            return {k: flat[k] for k in self._shapes}

        def load_params(self, params):
            """Copy the spec's flat parameter dict into the module.

            Parameters
            ----------
            params : dict
                name -> array of exactly the spec's names and shapes (see
                `param_shapes`); real floating arrays, cast to the module's
                dtype.

            Raises
            ------
            ValueError
                Missing or unknown names, or an array of the wrong shape.
            TypeError
                An array that is not real floating point.

            Examples
            --------
            >>> torch = __import__("pytest").importorskip("torch")
            >>> from fastrnn.examples import _seq2seq_torch as s2s
            >>> cfg = dict(src_vocab=9, tgt_vocab=4, embedding_dim=3, hidden_size=2)
            >>> twin = s2s.TorchSeq2Seq(**cfg)
            >>> twin.load_params(s2s.make_params(**cfg, dtype="float64", seed=1))
            >>> twin.flat_params()["combine.bias"].dtype
            dtype('float32')
            """
            if not isinstance(params, dict):
                raise TypeError(f"params must be a dict, got {type(params).__name__}")
            flat = self._flat()
            missing = [k for k in flat if k not in params]
            unknown = [k for k in params if k not in flat]
            if missing or unknown:
                raise ValueError(f"params: missing {missing}, unknown {unknown}")
            arrays = {}
            for k, p in flat.items():
                a = np.asarray(params[k])
                if not np.issubdtype(a.dtype, np.floating):
                    raise TypeError(f"params[{k!r}] must be floating point, got {a.dtype}")
                if a.shape != tuple(p.shape):
                    raise ValueError(f"params[{k!r}] must have shape {tuple(p.shape)}, "
                                     f"got {a.shape}")
                arrays[k] = np.ascontiguousarray(a, dtype=self.np_dtype)
            with torch.no_grad():  # all checked before any is copied
                for k, p in flat.items():
                    p.copy_(torch.from_numpy(arrays[k]))

        def flat_params(self):
            """The parameters as the spec's flat dict.

            Returns
            -------
            dict
                name -> NumPy copy, in the spec's order.

            Examples
            --------
            >>> torch = __import__("pytest").importorskip("torch")
            >>> from fastrnn.examples import _seq2seq_torch as s2s
            >>> twin = s2s.TorchSeq2Seq(9, 4, embedding_dim=3, hidden_size=2, bridge="zeros")
            >>> list(twin.flat_params())[:3]
            ['src_embedding.weight', 'tgt_embedding.weight', 'encoder.weight_ih_l0']
            """
            return {k: p.detach().cpu().numpy().copy() for k, p in self._flat().items()}

        def named_flat_grads(self):
            """The gradients of the last backward pass, by the spec's names.

            Returns
            -------
            dict
                name -> NumPy copy of the gradient (zeros where the
                parameter got none), in the spec's order.

            Examples
            --------
            >>> torch = __import__("pytest").importorskip("torch")
            >>> import numpy as np
            >>> from fastrnn.examples import _seq2seq_torch as s2s
            >>> twin = s2s.TorchSeq2Seq(9, 4, embedding_dim=3, hidden_size=2, seed=0)
            >>> logits = twin(np.array([[1, 2]]), np.array([2]), np.array([[5, 1]]))
            >>> twin.loss(logits, np.array([[1, 4]]), np.array([2])).backward()
            >>> g = twin.named_flat_grads()
            >>> g["out.bias"].shape, bool(np.abs(g["decoder.weight_hh_l0"]).sum() > 0)
            ((5,), True)
            """
            return {k: (np.zeros(tuple(p.shape), self.np_dtype) if p.grad is None
                        else p.grad.detach().cpu().numpy().copy())
                    for k, p in self._flat().items()}

        # -- forward and loss ----------------------------------------------

        def forward(self, src, src_lengths, yin, return_attention=False):
            """Teacher-forced logits.

            Parameters
            ----------
            src : array-like of int, shape (B, S)
                Source ids in 0..Vs-1 (any value past a row's length).
            src_lengths : array-like of int, shape (B,)
                In 1..S.
            yin : array-like of int, shape (B, T)
                Decoder inputs, ids in 0..Vt+1 (BOS first, see
                `teacher_forcing`).
            return_attention : bool, default False
                Also return the attention weights.

            Returns
            -------
            logits : torch.Tensor, shape (B, T, Vt+1)
            attention : torch.Tensor, shape (B, T, S)
                Only with return_attention; exactly 0 at s >= src_lengths[b].

            Raises
            ------
            TypeError
                Ids or lengths that are not integers.
            ValueError
                Shapes that disagree, ids or lengths out of range.

            Examples
            --------
            >>> torch = __import__("pytest").importorskip("torch")
            >>> import numpy as np
            >>> from fastrnn.examples import _seq2seq_torch as s2s
            >>> twin = s2s.TorchSeq2Seq(9, 4, embedding_dim=3, hidden_size=2, seed=0)
            >>> tuple(twin(np.array([[1, 2, 3]]), np.array([3]), np.array([[5, 1]])).shape)
            (1, 2, 5)
            """
            c = self.config
            src = _ids(src, "src", c["src_vocab"])
            B, S = src.shape
            lens = _lengths(src_lengths, "src_lengths", B, S)
            valid = np.arange(S)[None, :] < lens[:, None]                  # (B,S)
            _check_range(src, "src", c["src_vocab"], valid)
            yin = _ids(yin, "yin", c["tgt_vocab"] + 2)
            if yin.shape[0] != B:
                raise ValueError(f"yin must have {B} rows (src's), got {yin.shape[0]}")
            _check_range(yin, "yin", c["tgt_vocab"] + 2)
            # ids past a row's length may be anything: zero them before the lookup
            src = np.where(valid, src, 0)
            T = yin.shape[1]
            D = 2 if c["bidirectional"] else 1
            He, L = c["hidden_size"], c["num_layers"]
            Hd, Ld = c["decoder_hidden"], c["decoder_layers"]
            lstm_dec = c["decoder_cell"] == "lstm"

            lens_t = torch.from_numpy(lens)
            packed = pack_padded_sequence(self.src_embedding(torch.from_numpy(src)), lens_t,
                                          batch_first=True, enforce_sorted=False)
            out, state = self.encoder(packed)
            enc, _ = pad_packed_sequence(out, batch_first=True, total_length=S)  # (B,S,De)
            h_n, c_n = state if c["cell"] == "lstm" else (state, None)

            def top(s):  # (L*D, B, He) -> top layer's directions side by side (B, D*He)
                return s.view(L, D, B, He)[-1].permute(1, 0, 2).reshape(B, D * He)

            zeros = enc.new_zeros(B, Hd)
            hs, cs = [zeros] * Ld, [zeros] * Ld
            if c["bridge"] == "dense":
                h0 = torch.tanh(self.bridge_h(top(h_n))).view(B, Ld, Hd)
                hs = [h0[:, k] for k in range(Ld)]
                if hasattr(self, "bridge_c"):
                    c0 = self.bridge_c(top(c_n)).view(B, Ld, Hd)
                    cs = [c0[:, k] for k in range(Ld)]

            mask = torch.from_numpy(~valid)                                # (B,S) padding
            if c["attention"] == "dot":
                keys = enc
            elif c["attention"] == "general":
                keys = self.attention(enc)                                 # (B,S,Hd)
            else:
                keys = enc @ self.attention.key_weight.T                   # (B,S,A)
            emb = self.tgt_embedding(torch.from_numpy(yin))                # (B,T,E)
            feed = zeros
            states, attns = [], []
            for t in range(T):
                x = torch.cat([emb[:, t], feed], 1) if c["input_feeding"] else emb[:, t]
                for k, cell in enumerate(self.decoder_cells):
                    if lstm_dec:
                        hs[k], cs[k] = cell(x, (hs[k], cs[k]))
                    else:
                        hs[k] = cell(x, hs[k])
                    x = hs[k]
                q = x                                                      # (B,Hd)
                if c["attention"] == "bahdanau":
                    qa = q @ self.attention.query_weight.T                 # (B,A)
                    scores = torch.tanh(keys + qa[:, None, :]) @ self.attention.v
                else:
                    scores = torch.bmm(keys, q[:, :, None])[:, :, 0]       # (B,S)
                a = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=1)
                ctx = torch.bmm(a[:, None, :], enc)[:, 0]                  # (B,De)
                feed = torch.tanh(self.combine(torch.cat([ctx, q], 1)))    # h~ (B,Hd)
                states.append(feed)
                attns.append(a)
            logits = self.out(self.out_dropout(torch.stack(states, 1)))   # (B,T,Vt+1)
            if return_attention:
                return logits, torch.stack(attns, 1)
            return logits

        def loss(self, logits, targets, tgt_lengths):
            """Cross entropy summed over the valid steps, over their count.

            Parameters
            ----------
            logits : torch.Tensor, shape (B, T, Vt+1)
            targets : array-like of int, shape (B, T)
                Ids in 0..Vt at the valid steps (anything past them).
            tgt_lengths : array-like of int, shape (B,)
                Valid steps of each row, in 1..T (n_b + 1 for a target
                sequence of n_b symbols: `teacher_forcing`'s steps).

            Returns
            -------
            torch.Tensor
                A scalar.

            Raises
            ------
            TypeError, ValueError
                As `forward`, for targets and tgt_lengths.

            Examples
            --------
            >>> torch = __import__("pytest").importorskip("torch")
            >>> import numpy as np
            >>> from fastrnn.examples import _seq2seq_torch as s2s
            >>> twin = s2s.TorchSeq2Seq(9, 4, embedding_dim=3, hidden_size=2, seed=0)
            >>> logits = torch.zeros(2, 3, 5)
            >>> loss = twin.loss(logits, np.array([[1, 4, 0], [4, 9, 9]]), np.array([2, 1]))
            >>> round(float(loss), 6)  # log(5): uniform over 5 classes
            1.609438
            """
            B, T = logits.shape[:2]
            targets = _ids(targets, "targets", self.config["tgt_vocab"] + 1)
            if targets.shape != (B, T):
                raise ValueError(f"targets must have shape {(B, T)}, got {targets.shape}")
            steps = _lengths(tgt_lengths, "tgt_lengths", B, T)
            valid = np.arange(T)[None, :] < steps[:, None]
            _check_range(targets, "targets", self.config["tgt_vocab"] + 1, valid)
            valid_t = torch.from_numpy(valid)
            return (torch.nn.functional.cross_entropy(
                logits[valid_t], torch.from_numpy(targets[valid]), reduction="sum")
                / int(valid.sum()))

        def loss_and_grads(self, src, src_lengths, yin, targets, tgt_lengths):
            """Loss, logits and every gradient, as fr.Seq2Seq.loss_and_grads.

            Runs in the module's current mode (train: dropout on).

            Parameters
            ----------
            src, src_lengths, yin
                As `forward`.
            targets, tgt_lengths
                As `loss`.

            Returns
            -------
            loss : float
            logits : ndarray, shape (B, T, Vt+1)
            grads : dict
                name -> gradient, as `named_flat_grads`.

            Examples
            --------
            >>> torch = __import__("pytest").importorskip("torch")
            >>> import numpy as np
            >>> from fastrnn.examples import _seq2seq_torch as s2s
            >>> twin = s2s.TorchSeq2Seq(9, 4, embedding_dim=3, hidden_size=2, seed=0)
            >>> yin, tg, steps = s2s.teacher_forcing([[1, 2]], 4)
            >>> loss, logits, grads = twin.loss_and_grads([[3, 4]], [2], yin, tg, steps)
            >>> isinstance(loss, float), logits.shape, len(grads) == len(twin.flat_params())
            (True, (1, 3, 5), True)
            """
            self.zero_grad(set_to_none=True)
            logits = self(src, src_lengths, yin)
            loss = self.loss(logits, targets, tgt_lengths)
            loss.backward()
            return float(loss.detach()), logits.detach().cpu().numpy(), self.named_flat_grads()

    TorchSeq2Seq.__module__ = __name__
    TorchSeq2Seq.__qualname__ = "TorchSeq2Seq"  # pickle finds it through __getattr__
    return TorchSeq2Seq
