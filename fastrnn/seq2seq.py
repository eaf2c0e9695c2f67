"""Sequence to sequence with attention: a recurrent encoder and an attention decoder.

    model = fr.Seq2Seq(src_vocab=30, tgt_vocab=40, hidden_size=256, seed=0)
    model.fit(sources, targets, epochs=10)          # lists of id sequences
    outputs = model.predict(sources, beam_size=5)   # lists of id arrays

The encoder is one of fastrnn's recurrent layers (RNN, LSTM, GRU; multi-layer,
bidirectional, run with the sources' lengths by the C kernels). The decoder is
a stack of LSTM or GRU cells with torch's LSTMCell/GRUCell semantics and an
attention over the encoder outputs (Luong's dot and general scores,
Bahdanau's additive one), masked by the source lengths, with input feeding
(the previous attentional state joins the next input) and a bridge from the
encoder's final state to the decoder's first. docs/seq2seq.md has the
equations; fastrnn/examples/_seq2seq_torch.py is the same model in torch.

Target symbols are the ids 0..tgt_vocab-1; the model adds its own end token
``eos = tgt_vocab`` (an output class) and start token ``bos = tgt_vocab + 1``
(an input only), so callers never see either.

The decoder's time loop runs in NumPy over whole-batch BLAS calls; every
weight gradient is one GEMM over all steps (rows t*B + b) after the loop, so
a step costs a few GEMMs and O(B*(S+H)) pointwise work. Decoding (greedy and
beam search) lives in fastrnn.decoding over this model's `decoder_step`.
"""
import math

import numpy as np

from . import decoding
from . import optim as _optim
from . import backends
from .backends import matmul
from ._cells import num_gates
from .layers import check_seed
from .model import History
from .recurrent import GRU, LSTM, RNN
from ._validate import as_dtype, positive_int

_ENCODERS = {"lstm": LSTM, "gru": GRU, "rnn": RNN}
_DECODERS = ("lstm", "gru")
_ATTENTION = ("dot", "general", "bahdanau")
_BRIDGES = ("dense", "zeros")


def _sigmoid(x):
    out = np.negative(x)
    np.exp(out, out=out)
    out += 1
    return np.reciprocal(out, out=out)


def _xw(a, w):
    """a (..., K) @ w.T for a weight w (N, K): one GEMM over all leading axes,
    through the backend's deterministic GEMM (bits independent of threads;
    one thread team with the encoder's kernels)."""
    out = matmul(a.reshape(-1, a.shape[-1]), w, trans_b=True)
    return out.reshape(a.shape[:-1] + (w.shape[0],))


def _xv(a, w):
    """a (..., K) @ w for w (K, N), as _xw."""
    out = matmul(a.reshape(-1, a.shape[-1]), w)
    return out.reshape(a.shape[:-1] + (w.shape[1],))


def _tx(a, b):
    """a.T @ b of two (rows, .) arrays: a weight gradient over all rows."""
    return matmul(a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1]), trans_a=True)


def _choice(value, name, allowed):
    if not isinstance(value, str) or value.lower() not in allowed:
        raise ValueError(f"{name}: expected one of {list(allowed)}, got {value!r}")
    return value.lower()


def _ids(seqs, name, vocab, allow_empty=False):
    """Sequences of ids -> list of int64 arrays, each checked against the vocabulary."""
    if isinstance(seqs, np.ndarray) and seqs.ndim == 2:
        seqs = list(seqs)
    if isinstance(seqs, (str, bytes)) or not hasattr(seqs, "__len__"):
        raise TypeError(f"{name}: expected a list of id sequences, got {type(seqs).__name__}")
    out = []
    for i, s in enumerate(seqs):
        if isinstance(s, (str, bytes)):
            raise TypeError(f"{name}[{i}]: expected a sequence of int ids, got a string "
                            "(encode symbols to ids first)")
        a = np.asarray(s)
        if a.ndim != 1:
            raise ValueError(f"{name}[{i}]: expected a 1-D sequence of ids, got shape {a.shape}")
        if a.size == 0:
            if allow_empty:
                out.append(np.zeros(0, np.int64))
                continue
            raise ValueError(f"{name}[{i}] is empty: every sequence needs at least one id")
        if a.dtype.kind not in "iu":
            raise TypeError(f"{name}[{i}]: expected integer ids, got dtype {a.dtype}")
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi >= vocab:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{name}[{i}]: id {bad} is outside the vocabulary 0..{vocab - 1}")
        out.append(a.astype(np.int64))
    return out


def _pad(seqs, fill=0):
    """list of 1-D int arrays -> (B, max len) int64 padded with fill, lengths (B,)."""
    lens = np.array([len(s) for s in seqs], np.int64)
    out = np.full((len(seqs), int(lens.max()) if len(seqs) else 0), fill, np.int64)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out, lens


class Seq2Seq:
    """An attention encoder-decoder: a recurrent encoder, a bridge, an attention decoder.

    Parameters live in ``params`` (a flat dict, torch-style names, below);
    gradients in ``grads`` under the same keys. De = D * hidden_size (D = 2
    when bidirectional), Hd = decoder_hidden.

    Parameters
    ----------
    src_vocab : int
        Number of source symbols (ids 0..src_vocab-1).
    tgt_vocab : int
        Number of target symbols (ids 0..tgt_vocab-1); the model adds its end
        and start tokens (`eos`, `bos`).
    embedding_dim : int, default 64
        E, the width of both embeddings.
    hidden_size : int, default 256
        The encoder's units per direction.
    num_layers : int, default 1
        The encoder's layers.
    bidirectional : bool, default True
        A bidirectional encoder.
    cell : {"lstm", "gru", "rnn"}, default "lstm"
        The encoder's cell.
    decoder_hidden : int, optional
        Hd, the decoder's units; None: De.
    decoder_layers : int, default 1
        Stacked decoder cells.
    decoder_cell : {"lstm", "gru"}, default "lstm"
        The decoder's cell (torch's LSTMCell / GRUCell).
    attention : {"general", "dot", "bahdanau"}, default "general"
        The score: q . K_s with K = enc (dot, needs De == Hd) or enc W_a^T
        (general), or v . tanh(enc_s W_k^T + q W_q^T) (bahdanau, additive).
    attention_size : int, optional
        A, the width of the additive score; None: Hd.
    input_feeding : bool, default True
        Feed the previous attentional state h~ into the next decoder input.
    bridge : {"dense", "zeros"}, default "dense"
        The decoder's initial state: tanh(Dense) of the encoder's final top
        layer h (both directions; c through a linear Dense when both cells are
        LSTMs, else 0), or zeros.
    dropout : float, default 0.0
        In [0, 1): dropout on the encoder's outputs between its layers and on
        h~ before the output layer, in training only.
    dtype : {"float32", "float64"}, default "float32"
        The dtype of the parameters and the arithmetic.
    seed : int, optional
        Seeds the initial weights and the dropout masks.

    Attributes
    ----------
    eos, bos : int
        The model's end token (output class tgt_vocab) and start token.
    params, grads : dict of str to numpy.ndarray
        Parameters and gradients, flat, under the same keys.

    Examples
    --------
    >>> import fastrnn as fr
    >>> model = fr.Seq2Seq(5, 4, embedding_dim=8, hidden_size=8, seed=0)
    >>> hist = model.fit([[1, 2, 3], [4, 3]], [[3, 2, 1], [0, 1]], epochs=2, verbose=0)
    >>> [len(p) <= 20 for p in model.predict([[1, 2, 3]], beam_size=2)]
    [True]
    """

    def __init__(self, src_vocab, tgt_vocab, embedding_dim=64, hidden_size=256, num_layers=1,
                 bidirectional=True, cell="lstm", decoder_hidden=None, decoder_layers=1,
                 decoder_cell="lstm", attention="general", attention_size=None,
                 input_feeding=True, bridge="dense", dropout=0.0, dtype="float32", seed=None):
        self._configure(src_vocab, tgt_vocab, embedding_dim, hidden_size, num_layers,
                        bidirectional, cell, decoder_hidden, decoder_layers, decoder_cell,
                        attention, attention_size, input_feeding, bridge, dropout, dtype, seed)
        self._build()

    def _configure(self, src_vocab, tgt_vocab, embedding_dim, hidden_size, num_layers,
                   bidirectional, cell, decoder_hidden, decoder_layers, decoder_cell,
                   attention, attention_size, input_feeding, bridge, dropout, dtype, seed):
        """Check and keep the constructor's arguments (allocates nothing)."""
        self.src_vocab = positive_int(src_vocab, "src_vocab")
        self.tgt_vocab = positive_int(tgt_vocab, "tgt_vocab")
        self.embedding_dim = positive_int(embedding_dim, "embedding_dim")
        self.hidden_size = positive_int(hidden_size, "hidden_size")
        self.num_layers = positive_int(num_layers, "num_layers")
        for name, v in (("bidirectional", bidirectional), ("input_feeding", input_feeding)):
            if not isinstance(v, (bool, np.bool_)):
                raise TypeError(f"{name}: expected a bool, got {v!r}")
        self.bidirectional = bool(bidirectional)
        self.input_feeding = bool(input_feeding)
        self.cell = _choice(cell, "cell", tuple(_ENCODERS))
        self.decoder_cell = _choice(decoder_cell, "decoder_cell", _DECODERS)
        self.attention = _choice(attention, "attention", _ATTENTION)
        self.bridge = _choice(bridge, "bridge", _BRIDGES)
        D = 2 if self.bidirectional else 1
        self.decoder_hidden = (D * self.hidden_size if decoder_hidden is None
                               else positive_int(decoder_hidden, "decoder_hidden"))
        self.decoder_layers = positive_int(decoder_layers, "decoder_layers")
        self.attention_size = (self.decoder_hidden if attention_size is None
                               else positive_int(attention_size, "attention_size"))
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float, np.floating)) \
                or not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout!r}")
        self.dropout = float(dropout)
        self.dtype = as_dtype(dtype)
        self.seed = check_seed(seed)
        De = D * self.hidden_size
        if self.attention == "dot" and De != self.decoder_hidden:
            raise ValueError(f"attention='dot' needs the encoder's output width "
                             f"({De}) to equal decoder_hidden ({self.decoder_hidden})")
        self.eos = self.tgt_vocab
        self.bos = self.tgt_vocab + 1
        self.optimizer = None
        self.clip_norm = None

    # ---- parameters ------------------------------------------------------------
    @property
    def _De(self):
        return (2 if self.bidirectional else 1) * self.hidden_size

    @property
    def _gates(self):
        return 4 if self.decoder_cell == "lstm" else 3

    def _shapes(self):
        """[(name, shape)] of the parameters that are not the encoder's, in order."""
        E, Hd, L, De = self.embedding_dim, self.decoder_hidden, self.decoder_layers, self._De
        G = self._gates
        out = [("src_embedding.weight", (self.src_vocab, E)),
               ("tgt_embedding.weight", (self.tgt_vocab + 2, E))]
        if self.bridge == "dense":
            out += [("bridge_h.weight", (L * Hd, De)), ("bridge_h.bias", (L * Hd,))]
            if self._bridge_c:
                out += [("bridge_c.weight", (L * Hd, De)), ("bridge_c.bias", (L * Hd,))]
        for k in range(L):
            fan = (E + Hd if self.input_feeding else E) if k == 0 else Hd
            out += [(f"decoder.weight_ih_l{k}", (G * Hd, fan)),
                    (f"decoder.weight_hh_l{k}", (G * Hd, Hd)),
                    (f"decoder.bias_ih_l{k}", (G * Hd,)),
                    (f"decoder.bias_hh_l{k}", (G * Hd,))]
        if self.attention == "general":
            out.append(("attention.weight", (Hd, De)))
        elif self.attention == "bahdanau":
            A = self.attention_size
            out += [("attention.key_weight", (A, De)), ("attention.query_weight", (A, Hd)),
                    ("attention.v", (A,))]
        out += [("combine.weight", (Hd, De + Hd)), ("combine.bias", (Hd,)),
                ("out.weight", (self.tgt_vocab + 1, Hd)), ("out.bias", (self.tgt_vocab + 1,))]
        return out

    def _encoder_shapes(self):
        """[(name, shape)] of the encoder's parameters (torch's names), known
        before it is built (fr.load checks a file's sizes against them)."""
        G = num_gates(self.cell)
        H, D = self.hidden_size, (2 if self.bidirectional else 1)
        out = []
        for k in range(self.num_layers):
            fan = self.embedding_dim if k == 0 else D * H
            for sfx in ("", "_reverse")[:D]:
                out += [(f"encoder.weight_ih_l{k}{sfx}", (G * H, fan)),
                        (f"encoder.weight_hh_l{k}{sfx}", (G * H, H)),
                        (f"encoder.bias_ih_l{k}{sfx}", (G * H,)),
                        (f"encoder.bias_hh_l{k}{sfx}", (G * H,))]
        return out

    def parameter_shapes(self):
        """Return every parameter's name and shape, as ``params`` holds them.

        Returns
        -------
        dict of str to tuple
            Name -> shape.
        """
        return dict(self._shapes() + self._encoder_shapes())

    @property
    def _bridge_c(self):
        return self.bridge == "dense" and self.cell == "lstm" and self.decoder_cell == "lstm"

    def _build(self):
        rng = np.random.default_rng(self.seed)
        enc_seed, self._drop_seed = (int(s) for s in rng.integers(0, 2**62, size=2))
        self.encoder = _ENCODERS[self.cell](
            self.embedding_dim, self.hidden_size, num_layers=self.num_layers,
            batch_first=True, bidirectional=self.bidirectional, dropout=self.dropout,
            dtype=self.dtype, seed=enc_seed)
        self._rng = np.random.default_rng(self._drop_seed)
        self.params, self.grads = {}, {}
        for name, shape in self._shapes():
            if name.endswith("embedding.weight"):
                p = rng.standard_normal(shape)          # torch's nn.Embedding
            else:
                fan = shape[1] if len(shape) == 2 else shape[0]
                if name.startswith("decoder."):
                    fan = self.decoder_hidden           # torch's LSTMCell / GRUCell
                k = 1.0 / math.sqrt(fan)
                p = rng.uniform(-k, k, size=shape)
            self.params[name] = np.ascontiguousarray(p, dtype=self.dtype)
            self.grads[name] = np.zeros(shape, self.dtype)
        for n, p in self.encoder.params.items():
            self.params["encoder." + n] = p             # the encoder's own arrays
            self.grads["encoder." + n] = self.encoder.grads[n]

    def parameters(self):
        """Return the (name, parameter, gradient) triples, for fr.optim optimizers.

        Returns
        -------
        list of (str, numpy.ndarray, numpy.ndarray)
            The arrays themselves (updated in place).
        """
        self._check_params()
        return [(n, self.params[n], self.grads[n]) for n in self.params]

    def _check_params(self):
        want = self.parameter_shapes()
        if set(want) != set(self.params):
            raise ValueError(f"params: expected the keys {sorted(want)}, got "
                             f"{sorted(self.params)}")
        for n, shape in want.items():
            p = self.params[n]
            if not isinstance(p, np.ndarray) or p.dtype != self.dtype or p.shape != shape:
                raise ValueError(f"params[{n!r}]: expected a {self.dtype.name} array of shape "
                                 f"{shape}")
            if n.startswith("encoder.") and p is not self.encoder.params[n[8:]]:
                raise ValueError(f"params[{n!r}] was replaced; assign into it in place "
                                 "(load_state_dict does)")

    def zero_grad(self):
        """Fill every gradient with 0, in place."""
        for g in self.grads.values():
            g.fill(0)

    def state_dict(self):
        """Return copies of the parameters (flat dict, the ``params`` keys).

        Returns
        -------
        dict of str to numpy.ndarray
            The copies.
        """
        return {n: p.copy() for n, p in self.params.items()}

    def load_state_dict(self, state_dict):
        """Copy parameters in place from a dict with exactly the ``params`` keys and shapes.

        Parameters
        ----------
        state_dict : dict of str to array_like
            Name -> array (any real dtype; converted to the model's).

        Raises
        ------
        ValueError
            On missing or extra keys or a shape that differs.
        """
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict: expected a dict, got {type(state_dict).__name__}")
        missing = sorted(set(self.params) - set(state_dict))
        extra = sorted(set(state_dict) - set(self.params))
        if missing or extra:
            raise ValueError(f"state_dict: missing keys {missing}, unexpected keys {extra}")
        for n, p in self.params.items():
            a = np.asarray(state_dict[n])
            if a.shape != p.shape:
                raise ValueError(f"state_dict[{n!r}]: expected shape {p.shape}, got {a.shape}")
            if a.dtype.kind not in "fiu":
                raise TypeError(f"state_dict[{n!r}]: expected real numbers, got {a.dtype}")
            p[...] = a

    def get_config(self):
        """Return the constructor arguments (what save/load rebuild the model from).

        Returns
        -------
        dict
            Name -> value.
        """
        return dict(src_vocab=self.src_vocab, tgt_vocab=self.tgt_vocab,
                    embedding_dim=self.embedding_dim, hidden_size=self.hidden_size,
                    num_layers=self.num_layers, bidirectional=self.bidirectional,
                    cell=self.cell, decoder_hidden=self.decoder_hidden,
                    decoder_layers=self.decoder_layers, decoder_cell=self.decoder_cell,
                    attention=self.attention, attention_size=self.attention_size,
                    input_feeding=self.input_feeding, bridge=self.bridge,
                    dropout=self.dropout, dtype=self.dtype.name, seed=self.seed)

    def __repr__(self):
        cfg = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"Seq2Seq({cfg})"

    # ---- the encoder and the bridge ---------------------------------------------
    def _encode(self, src, ls, training):
        """src (B,S) ids, ls (B,) -> enc (B,S,De), keys, neg mask, decoder state0, cache."""
        P = self.params
        x = np.take(P["src_embedding.weight"], src, axis=0)
        if training:
            enc, st = self.encoder.forward(x, None, lengths=ls)
        else:
            enc, st = self.encoder(x, None, lengths=ls)
        B, S = src.shape
        D, L, Hd = (2 if self.bidirectional else 1), self.decoder_layers, self.decoder_hidden
        hn = st[0] if self.cell == "lstm" else st
        zh = hn[-D:].transpose(1, 0, 2).reshape(B, -1)
        zc = st[1][-D:].transpose(1, 0, 2).reshape(B, -1) if self._bridge_c else None
        if self.bridge == "dense":
            h0 = np.tanh(_xw(zh, P["bridge_h.weight"]) + P["bridge_h.bias"])
            c0 = (_xw(zc, P["bridge_c.weight"]) + P["bridge_c.bias"] if zc is not None
                  else np.zeros((B, L * Hd), self.dtype))
        else:
            h0 = np.zeros((B, L * Hd), self.dtype)
            c0 = np.zeros((B, L * Hd), self.dtype)
        if self.attention == "dot":
            keys = enc
        elif self.attention == "general":
            keys = _xw(enc, P["attention.weight"])
        else:
            keys = _xw(enc, P["attention.key_weight"])
        neg = np.where(np.arange(S)[None, :] < ls[:, None], 0.0, -np.inf).astype(self.dtype)
        h0 = np.ascontiguousarray(h0.reshape(B, L, Hd).transpose(1, 0, 2))
        c0 = np.ascontiguousarray(c0.reshape(B, L, Hd).transpose(1, 0, 2))
        return enc, keys, neg, h0, c0, (src, zh, zc, h0)

    # ---- one decoder step (shared by training and decoding) ------------------------
    def _cells(self, x_part, h, c, store=None):
        """Run the decoder's cells for one step.

        x_part (B, G*Hd): layer 0's input projection without its bias; h, c
        (L, B, Hd) (c ignored by GRU). Returns the new h, c (L, B, Hd), writing
        what backward needs into store (a dict of per-layer lists) if given.
        The gate math runs in the backend's cell_step where it has one (C),
        else in NumPy; the same arrays go to the store either way.
        """
        P, Hd = self.params, self.decoder_hidden
        hs, cs = np.empty(h.shape, h.dtype), np.empty(c.shape, c.dtype)
        step = getattr(backends.of(x_part), "cell_step", None)
        inp = None
        for k in range(self.decoder_layers):
            gx = x_part if k == 0 else _xw(inp, P[f"decoder.weight_ih_l{k}"])
            gx = gx + P[f"decoder.bias_ih_l{k}"]
            gh = _xw(h[k], P[f"decoder.weight_hh_l{k}"])
            gh += P[f"decoder.bias_hh_l{k}"]
            if self.decoder_cell == "lstm":
                acts = gx + gh
                ck = np.ascontiguousarray(c[k])
                if not (step and step("LSTM", acts, None, None, ck, hs[k], cs[k], None)):
                    g = acts.copy()
                    acts[:, :2 * Hd] = _sigmoid(g[:, :2 * Hd])
                    acts[:, 2 * Hd:3 * Hd] = np.tanh(g[:, 2 * Hd:3 * Hd])
                    acts[:, 3 * Hd:] = _sigmoid(g[:, 3 * Hd:])
                    i, f, gg, o = (acts[:, j * Hd:(j + 1) * Hd] for j in range(4))
                    cs[k] = f * ck + i * gg
                    hs[k] = o * np.tanh(cs[k])
                if store is not None:
                    store["acts"][k].append(acts)
                    store["c_out"][k].append(cs[k])
            else:
                hk = np.ascontiguousarray(h[k])
                cache = np.empty((hk.shape[0], 4 * Hd), hk.dtype)
                if not (step and step("GRU", gx, gh, hk, None, hs[k], None, cache)):
                    rz = _sigmoid(gx[:, :2 * Hd] + gh[:, :2 * Hd])
                    r, z = rz[:, :Hd], rz[:, Hd:]
                    ghn = gh[:, 2 * Hd:]
                    n = np.tanh(gx[:, 2 * Hd:] + r * ghn)
                    hs[k] = n + z * (hk - n)
                    cache[:, :2 * Hd] = rz
                    cache[:, 2 * Hd:3 * Hd] = n
                    cache[:, 3 * Hd:] = ghn
                if store is not None:
                    store["cache"][k].append(cache)
            if store is not None and k > 0:
                store["x"][k].append(inp)
            inp = hs[k]
        return hs, cs

    def _attend(self, q, enc, keys, neg):
        """q (B,Hd) -> attention weights a (B,S), context (B,De), and u (bahdanau) or None.

        dot and general attend in the backend's `attend` where it has one (C),
        else in NumPy."""
        P = self.params
        if self.attention == "bahdanau":
            qp = _xw(q, P["attention.query_weight"])
            u = np.tanh(keys + qp[:, None, :])
            scores = _xv(u, P["attention.v"][:, None])[:, :, 0]
        else:
            kernel = getattr(backends.of(q), "attend", None)
            if kernel is not None:
                a = np.empty(neg.shape, q.dtype)
                ctx = np.empty((enc.shape[0], enc.shape[2]), q.dtype)
                if kernel(keys, q, enc, neg, a, ctx):
                    return a, ctx, None
            u = None
            scores = np.matmul(keys, q[:, :, None])[:, :, 0]
        scores = scores + neg
        scores -= scores.max(axis=1, keepdims=True)
        a = np.exp(scores)
        a /= a.sum(axis=1, keepdims=True)
        ctx = np.matmul(a[:, None, :], enc)[:, 0, :]
        return a, ctx, u

    def _combine(self, ctx, q):
        P = self.params
        cq = np.concatenate([ctx, q], axis=1)
        return np.tanh(_xw(cq, P["combine.weight"]) + P["combine.bias"]), cq

    # ---- training forward and backward --------------------------------------------
    def _forward(self, src, ls, yin, training, sampling=0.0):
        """Teacher-forced forward: logits (B, T, V+1) and the cache for _backward."""
        P, E, Hd = self.params, self.embedding_dim, self.decoder_hidden
        L = self.decoder_layers
        enc, keys, neg, h, c, enc_cache = self._encode(src, ls, training)
        B, T = yin.shape
        W0 = P["decoder.weight_ih_l0"]
        We, Wf = np.ascontiguousarray(W0[:, :E]), np.ascontiguousarray(W0[:, E:])
        yin = yin.copy()
        emb = np.take(P["tgt_embedding.weight"], yin, axis=0)   # (B, T, E)
        if not sampling:
            ge = _xw(emb, We)
        store = {k: [[] for _ in range(L)] for k in ("acts", "c_out", "cache", "x")}
        store.update(h_prev=[[] for _ in range(L)], c_prev=[[] for _ in range(L)])
        feed = np.zeros((B, Hd), self.dtype)
        feeds, A, CQ, HT, U = [], [], [], [], []
        h0, c0 = h, c
        sample_rng = self._rng if sampling else None
        for t in range(T):
            if sampling and t > 0:
                pick = sample_rng.random(B) < sampling
                if pick.any():
                    logit = _xw(HT[-1][pick], P["out.weight"]) + P["out.bias"]
                    guess = logit.argmax(axis=1)
                    # an eos guess would end the sequence: keep the gold token there
                    yin[pick, t] = np.where(guess == self.eos, yin[pick, t], guess)
                    emb[:, t] = np.take(P["tgt_embedding.weight"], yin[:, t], axis=0)
            xp = ge[:, t] if not sampling else _xw(emb[:, t], We)
            if self.input_feeding:
                feeds.append(feed)
                xp = xp + _xw(feed, Wf)
            for k in range(L):
                store["h_prev"][k].append(h[k])
                store["c_prev"][k].append(c[k])
            h, c = self._cells(xp, h, c, store)
            a, ctx, u = self._attend(h[-1], enc, keys, neg)
            feed, cq = self._combine(ctx, h[-1])
            A.append(a)
            CQ.append(cq)
            HT.append(feed)
            U.append(u)
        HTs = np.stack(HT, axis=1)                              # (B, T, Hd)
        mask = None
        if training and self.dropout:
            keep = 1.0 - self.dropout
            mask = (self._rng.random(HTs.shape) < keep).astype(self.dtype) / keep
            HTd = HTs * mask
        else:
            HTd = HTs
        logits = _xw(HTd, P["out.weight"]) + P["out.bias"]
        cache = dict(src=src, ls=ls, yin=yin, emb=emb, enc=enc, keys=keys, neg=neg, store=store,
                     feeds=feeds, A=A, CQ=CQ, HT=HT, HTd=HTd, U=U, mask=mask,
                     enc_cache=enc_cache, h0=h0, c0=c0)
        return logits, cache

    def _backward(self, cache, dlogits):
        """Accumulate every parameter's gradient from d loss / d logits (B, T, V+1)."""
        P, G_ = self.params, self.grads
        E, Hd, L, De = self.embedding_dim, self.decoder_hidden, self.decoder_layers, self._De
        B, T, V = dlogits.shape
        enc, keys, store = cache["enc"], cache["keys"], cache["store"]
        lstm = self.decoder_cell == "lstm"
        dl2 = dlogits.reshape(B * T, V)
        G_["out.weight"] += _tx(dl2, cache["HTd"])
        G_["out.bias"] += dl2.sum(axis=0)
        dHT = _xv(dl2, P["out.weight"]).reshape(B, T, Hd)
        if cache["mask"] is not None:
            dHT *= cache["mask"]
        Wc = P["combine.weight"]
        W0 = P["decoder.weight_ih_l0"]
        Wf = np.ascontiguousarray(W0[:, E:])
        dh = [np.zeros((B, Hd), self.dtype) for _ in range(L)]
        dc = [np.zeros((B, Hd), self.dtype) for _ in range(L)]
        dfeed = None
        dPre = np.empty((T, B, Hd), self.dtype)
        dCtx = np.empty((T, B, De), self.dtype)
        DS = np.empty((T, B, enc.shape[1]), self.dtype)
        dGX = [np.empty((T, B, self._gates * Hd), self.dtype) for _ in range(L)]
        dGH = dGX if lstm else [np.empty((T, B, 3 * Hd), self.dtype) for _ in range(L)]
        back = getattr(backends.of(dlogits), "cell_step_backward", None)
        attb = None if self.attention == "bahdanau" else \
            getattr(backends.of(dlogits), "attend_backward", None)
        neg = cache["neg"]
        dq_att = np.empty((B, Hd), self.dtype)            # the attention's dL/dq
        zero_bh = np.zeros((B, Hd), self.dtype)
        dhp = np.empty((B, Hd), self.dtype)               # the step's direct dL/dh_prev
        bahdanau = self.attention == "bahdanau"
        if bahdanau:
            v = P["attention.v"]
            dKb = np.zeros_like(keys)
            dQP = np.empty((T, B, self.attention_size), self.dtype)
            dv = np.zeros_like(v)
        for t in range(T - 1, -1, -1):
            dht = dHT[:, t] if dfeed is None else dHT[:, t] + dfeed
            ht = cache["HT"][t]
            dpre = dht * (1 - ht * ht)
            dPre[t] = dpre
            dcq = _xv(dpre, Wc)
            dctx, dq = dcq[:, :De], dcq[:, De:]
            dCtx[t] = dctx
            a = cache["A"][t]
            if attb is not None and attb(keys, enc, a, dCtx[t], neg, DS[t], dq_att):
                dq = dq + dq_att
            else:
                da = np.matmul(enc, dctx[:, :, None])[:, :, 0]
                ds = a * (da - (a * da).sum(axis=1, keepdims=True))
                DS[t] = ds
                if bahdanau:
                    u = cache["U"][t]
                    dv += np.einsum("bs,bsa->a", ds, u)
                    dpu = (ds[:, :, None] * v) * (1 - u * u)
                    dKb += dpu
                    dqp = dpu.sum(axis=1)
                    dQP[t] = dqp
                    dq = dq + _xv(dqp, P["attention.query_weight"])
                else:
                    dq = dq + np.matmul(ds[:, None, :], keys)[:, 0, :]
            for k in range(L - 1, -1, -1):
                dy = dq if k == L - 1 else zero_bh       # dh[k] holds the rest of dL/dh
                dgx, dgh = dGX[k][t], dGH[k][t]
                hp = store["h_prev"][k][t]
                if lstm:
                    acts, cp, cx = store["acts"][k][t], store["c_prev"][k][t], \
                        store["c_out"][k][t]
                    if not (back and back("LSTM", acts, None, cp, cx, dh[k], dy, dc[k], dgx,
                                          None, dhp)):
                        i, f, gg, o = (acts[:, j * Hd:(j + 1) * Hd] for j in range(4))
                        g = dh[k] + dy
                        tc = np.tanh(cx)
                        dck = dc[k] + g * o * (1 - tc * tc)
                        dgx[:, :Hd] = dck * gg * i * (1 - i)
                        dgx[:, Hd:2 * Hd] = dck * cp * f * (1 - f)
                        dgx[:, 2 * Hd:3 * Hd] = dck * i * (1 - gg * gg)
                        dgx[:, 3 * Hd:] = g * tc * o * (1 - o)
                        dc[k][...] = dck * f
                        dhp[...] = 0
                else:
                    gc = store["cache"][k][t]                  # r, z, n, gh_n
                    if not (back and back("GRU", gc, hp, None, None, dh[k], dy, None, dgx,
                                          dgh, dhp)):
                        r, z = gc[:, :Hd], gc[:, Hd:2 * Hd]
                        n, ghn = gc[:, 2 * Hd:3 * Hd], gc[:, 3 * Hd:]
                        g = dh[k] + dy
                        dnp = g * (1 - z) * (1 - n * n)
                        dgx[:, :Hd] = (dnp * ghn) * r * (1 - r)
                        dgx[:, Hd:2 * Hd] = (g * (hp - n)) * z * (1 - z)
                        dgx[:, 2 * Hd:] = dnp
                        dgh[:, :2 * Hd] = dgx[:, :2 * Hd]
                        dgh[:, 2 * Hd:] = dnp * r
                        dhp[...] = g * z
                dhk = _xv(dgh, P[f"decoder.weight_hh_l{k}"])
                if not lstm:
                    dhk += dhp
                if k > 0:
                    dh[k - 1] = dh[k - 1] + _xv(dgx, P[f"decoder.weight_ih_l{k}"])
                elif self.input_feeding:
                    dfeed = _xv(dgx, Wf)
                dh[k] = dhk
        # ---- weight gradients: one GEMM each over all T*B rows ----
        flat = lambda a: a.reshape(-1, a.shape[-1])  # noqa: E731
        for k in range(L):
            dgx2, dgh2 = flat(dGX[k]), flat(dGH[k])
            hp = flat(np.stack(store["h_prev"][k]))
            G_[f"decoder.weight_hh_l{k}"] += _tx(dgh2, hp)
            G_[f"decoder.bias_hh_l{k}"] += dgh2.sum(axis=0)
            G_[f"decoder.bias_ih_l{k}"] += dgx2.sum(axis=0)
            if k > 0:
                G_[f"decoder.weight_ih_l{k}"] += _tx(dgx2, np.stack(store["x"][k]))
        # layer 0's input: [emb(yin_t); feed_t], rows ordered (t, b)
        dgx2 = flat(dGX[0])
        emb_tb = flat(cache["emb"].transpose(1, 0, 2))
        gw = G_["decoder.weight_ih_l0"]
        gw[:, :E] += _tx(dgx2, emb_tb)
        if self.input_feeding:
            gw[:, E:] += _tx(dgx2, np.stack(cache["feeds"]))
        demb = _xv(dgx2, W0[:, :E])
        np.add.at(G_["tgt_embedding.weight"], cache["yin"].T.reshape(-1), demb)
        G_["combine.weight"] += _tx(dPre, np.stack(cache["CQ"]))
        G_["combine.bias"] += flat(dPre).sum(axis=0)
        # attention: d enc = sum_t a_t (x) dctx_t, plus the keys' share
        At = np.stack(cache["A"], axis=2)                       # (B, S, T)
        denc = np.matmul(At, dCtx.transpose(1, 0, 2))           # (B, S, De)
        if bahdanau:
            Q = flat(np.stack(self._tops(cache)))
            G_["attention.query_weight"] += _tx(dQP, Q)
            G_["attention.v"] += dv
            G_["attention.key_weight"] += _tx(dKb, enc)
            denc += _xv(dKb, P["attention.key_weight"])
        else:
            Qb = np.stack(self._tops(cache), axis=1)            # (B, T, Hd)
            dK = np.matmul(DS.transpose(1, 2, 0), Qb)           # (B, S, Hd)
            if self.attention == "dot":
                denc += dK
            else:
                G_["attention.weight"] += _tx(dK, enc)
                denc += _xv(dK, P["attention.weight"])
        # the bridge, then the encoder
        src, zh, zc, h0 = cache["enc_cache"]
        D = 2 if self.bidirectional else 1
        dh0 = np.stack(dh, axis=1).reshape(B, L * Hd)           # (B, L*Hd), layer-major
        dc0 = np.stack(dc, axis=1).reshape(B, L * Hd)
        hn_shape = (D * self.num_layers, B, self.hidden_size)
        dhn = np.zeros(hn_shape, self.dtype)
        dcn = np.zeros(hn_shape, self.dtype) if self.cell == "lstm" else None
        if self.bridge == "dense":
            h0f = h0.transpose(1, 0, 2).reshape(B, L * Hd)
            dpre = dh0 * (1 - h0f * h0f)
            G_["bridge_h.weight"] += _tx(dpre, zh)
            G_["bridge_h.bias"] += dpre.sum(axis=0)
            dzh = _xv(dpre, P["bridge_h.weight"])
            dhn[-D:] = dzh.reshape(B, D, -1).transpose(1, 0, 2)
            if self._bridge_c:
                G_["bridge_c.weight"] += _tx(dc0, zc)
                G_["bridge_c.bias"] += dc0.sum(axis=0)
                dcn[-D:] = _xv(dc0, P["bridge_c.weight"]).reshape(B, D, -1).transpose(1, 0, 2)
        dstate = (dhn, dcn) if self.cell == "lstm" else dhn
        dx, _ = self.encoder.backward(np.ascontiguousarray(denc), dstate)
        valid = np.arange(src.shape[1])[None, :] < cache["ls"][:, None]
        np.add.at(G_["src_embedding.weight"], src[valid], dx[valid])

    def _tops(self, cache):
        """The top decoder layer's h at each step (the attention queries), list of (B, Hd)."""
        store, L = cache["store"], self.decoder_layers
        # h_t of the top layer is h_prev of step t+1; the last one is CQ's query part
        hs = store["h_prev"][L - 1][1:] + [cache["CQ"][-1][:, self._De:]]
        return hs

    # ---- the loss ---------------------------------------------------------------
    def _batch(self, sources, targets):
        """Padded arrays of a batch: src, ls, yin, y, ly (targets get bos/eos)."""
        src, ls = _pad(sources)
        yseq = [np.concatenate([t, [self.eos]]) for t in targets]
        y, ly = _pad(yseq, fill=self.eos)
        yin = np.concatenate([np.full((len(targets), 1), self.bos, np.int64), y[:, :-1]], 1)
        return src, ls, yin, y, ly

    def _loss(self, logits, y, ly):
        """Mean cross entropy over valid steps and its gradient wrt logits."""
        B, T, V = logits.shape
        m = logits.max(axis=2, keepdims=True)
        z = logits - m
        lse = np.log(np.exp(z).sum(axis=2, keepdims=True))
        logp = z - lse
        valid = np.arange(T)[None, :] < ly[:, None]
        n = int(valid.sum())
        picked = np.take_along_axis(logp, y[:, :, None], axis=2)[:, :, 0]
        loss = -float(picked[valid].sum()) / n
        d = np.exp(logp)
        np.put_along_axis(d, y[:, :, None],
                          np.take_along_axis(d, y[:, :, None], axis=2) - 1, axis=2)
        d *= (valid / n)[:, :, None].astype(self.dtype)
        correct = int(((logp.argmax(axis=2) == y) & valid).sum())
        return loss, d.astype(self.dtype, copy=False), correct, n

    def loss_and_grads(self, src, src_lengths, yin, targets, tgt_lengths, training=True):
        """Loss, logits and gradients of one padded batch (the arrays the decoder sees).

        For tests and tools that drive the model with their own arrays; `fit`
        builds them from sequences. Gradients are zeroed first; dropout applies
        when training.

        Parameters
        ----------
        src : array_like of int
            (B, S) source ids, padded past src_lengths.
        src_lengths : array_like of int
            (B,) in 1..S.
        yin : array_like of int
            (B, T) decoder inputs (bos first), in 0..tgt_vocab+1.
        targets : array_like of int
            (B, T) the classes to predict, in 0..tgt_vocab (eos = tgt_vocab).
        tgt_lengths : array_like of int
            (B,) valid steps of targets, in 1..T.
        training : bool, default True
            Apply dropout.

        Returns
        -------
        loss : float
            Mean cross entropy over the valid target steps.
        logits : numpy.ndarray
            (B, T, tgt_vocab + 1).
        grads : dict of str to numpy.ndarray
            Copies of the gradients, the ``params`` keys.
        """
        src, ls = self._check_src_array(src, src_lengths)
        yin = self._check_array(yin, "yin", self.tgt_vocab + 2, 2)
        y = self._check_array(targets, "targets", self.tgt_vocab + 1, 2)
        if y.shape != yin.shape or y.shape[0] != src.shape[0]:
            raise ValueError(f"targets and yin: expected the same shape (B={src.shape[0]}, T), "
                             f"got {y.shape} and {yin.shape}")
        ly = self._check_array(tgt_lengths, "tgt_lengths", y.shape[1] + 1, 1)
        if ly.shape != (y.shape[0],) or (ly.size and ly.min() < 1):
            raise ValueError(f"tgt_lengths: expected ({y.shape[0]},) values in 1..{y.shape[1]}")
        self._check_params()
        self.zero_grad()
        logits, cache = self._forward(src, ls, yin, bool(training))
        loss, d, _, _ = self._loss(logits, y, ly)
        self._backward(cache, d)
        return loss, logits, {n: g.copy() for n, g in self.grads.items()}

    def _check_array(self, a, name, vocab, ndim):
        a = np.asarray(a)
        if a.dtype.kind not in "iu" or a.ndim != ndim:
            raise ValueError(f"{name}: expected a {ndim}-D array of ints, got {a.dtype} "
                             f"shape {a.shape}")
        if a.size and (a.min() < 0 or a.max() >= vocab):
            raise ValueError(f"{name}: expected ids in 0..{vocab - 1}")
        return a.astype(np.int64)

    def _check_src_array(self, src, src_lengths):
        src = self._check_array(src, "src", self.src_vocab, 2)
        ls = self._check_array(src_lengths, "src_lengths", src.shape[1] + 1, 1)
        if ls.shape != (src.shape[0],) or (ls.size and ls.min() < 1):
            raise ValueError(f"src_lengths: expected ({src.shape[0]},) values in "
                             f"1..{src.shape[1]}")
        return src, ls

    # ---- training -----------------------------------------------------------------
    def compile(self, optimizer="adam", clip_norm=None, **optimizer_config):
        """Choose the optimizer and gradient clipping for `fit`.

        Parameters
        ----------
        optimizer : str or fastrnn.optim.Optimizer, default "adam"
            A name ("sgd", "adam", "adamw", "rmsprop") or an optimizer object.
        clip_norm : float, optional
            Clip the global gradient norm to this before each step.
        **optimizer_config
            Constructor arguments of an optimizer given by name (lr=...).

        Returns
        -------
        Seq2Seq
            The model itself.
        """
        if isinstance(optimizer, str):
            self.optimizer = _optim.get(optimizer, **optimizer_config)
        else:
            if optimizer_config:
                raise TypeError("optimizer settings go to a named optimizer only")
            self.optimizer = optimizer
        if not hasattr(self.optimizer, "step") or not hasattr(self.optimizer, "attach"):
            raise TypeError(f"optimizer: expected a name or an fr.optim optimizer, got "
                            f"{type(optimizer).__name__}")
        self.optimizer.attach(self.parameters())
        if clip_norm is not None and (isinstance(clip_norm, bool) or
                                      not isinstance(clip_norm, (int, float)) or
                                      not clip_norm > 0):
            raise ValueError(f"clip_norm: expected a number > 0 or None, got {clip_norm!r}")
        self.clip_norm = None if clip_norm is None else float(clip_norm)
        return self

    def _batches(self, n, lengths, batch_size, rng):
        """Index batches of similar source length: shuffled, then sorted within
        chunks of 50 batches (less padding, still random)."""
        order = rng.permutation(n) if rng is not None else np.arange(n)
        chunk = batch_size * 50
        out = []
        for c0 in range(0, n, chunk):
            part = order[c0:c0 + chunk]
            part = part[np.argsort(lengths[part], kind="stable")]
            out += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
        if rng is not None:
            out = [out[i] for i in rng.permutation(len(out))]
        return out

    def fit(self, sources, targets, epochs=1, batch_size=64, validation_data=None,
            sampling_ratio=0.0, shuffle=True, seed=None, callbacks=None, verbose=1,
            time_limit=None):
        """Train with teacher forcing on (source, target) sequence pairs.

        Compiles with Adam (lr 1e-3) if `compile` was not called.

        Parameters
        ----------
        sources : list of sequences of int
            Source id sequences (each non-empty, ids in 0..src_vocab-1).
        targets : list of sequences of int
            Target id sequences (ids in 0..tgt_vocab-1, no start or end
            token; may be empty: the model learns to end at once).
        epochs : int, default 1
            Passes over the data.
        batch_size : int, default 64
            Pairs per update.
        validation_data : tuple (sources, targets), optional
            Scored after each epoch: "val_loss" and "val_accuracy" (per token).
        sampling_ratio : float, default 0.0
            Scheduled sampling: the probability that a decoder input is the
            model's own previous guess instead of the true token.
        shuffle : bool, default True
            Draw the batches in a new order each epoch.
        seed : int, optional
            Seeds the batch order (and, through the model's seed, dropout).
        callbacks : list of fastrnn.Callback, optional
            on_train_begin / on_epoch_end (may return True to stop) / on_train_end.
        verbose : int, default 1
            0: silent; 1: one line per epoch.
        time_limit : float, optional
            Seconds: stop after the epoch that passes it.

        Returns
        -------
        History
            Per-epoch "loss", "accuracy", "seconds" and the validation figures.
        """
        import time
        src = _ids(sources, "sources", self.src_vocab)
        tgt = _ids(targets, "targets", self.tgt_vocab, allow_empty=True)
        if len(src) != len(tgt):
            raise ValueError(f"sources and targets: expected as many of each, got {len(src)} "
                             f"and {len(tgt)}")
        if not src:
            raise ValueError("sources: expected at least one pair to train on")
        epochs = positive_int(epochs, "epochs", 0)
        batch_size = positive_int(batch_size, "batch_size")
        if isinstance(sampling_ratio, bool) or not 0.0 <= float(sampling_ratio) < 1.0:
            raise ValueError(f"sampling_ratio: expected a probability in [0, 1), got "
                             f"{sampling_ratio!r}")
        if time_limit is not None and (isinstance(time_limit, bool) or
                                       not isinstance(time_limit, (int, float)) or
                                       not time_limit > 0):
            raise ValueError(f"time_limit: expected seconds > 0 or None, got {time_limit!r}")
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data: expected a (sources, targets) pair")
        if self.optimizer is None:
            self.compile("adam", lr=1e-3)
        rng = np.random.default_rng(check_seed(seed)) if shuffle else None
        lengths = np.array([len(s) for s in src])
        history = History(dict(epochs=epochs, batch_size=batch_size))
        cbs = list(callbacks or [])
        for cb in cbs:
            cb.on_train_begin(self)
        start = time.perf_counter()
        for epoch in range(epochs):
            t0 = time.perf_counter()
            total, correct, count = 0.0, 0, 0
            for idx in self._batches(len(src), lengths, batch_size, rng):
                s, ls, yin, y, ly = self._batch([src[i] for i in idx], [tgt[i] for i in idx])
                self.zero_grad()
                logits, cache = self._forward(s, ls, yin, True, float(sampling_ratio))
                loss, d, ok, n = self._loss(logits, y, ly)
                self._backward(cache, d)
                if self._clip():
                    self.optimizer.step()
                total += loss * n
                correct += ok
                count += n
            logs = {"loss": total / count, "accuracy": correct / count,
                    "seconds": time.perf_counter() - t0}
            if validation_data is not None:
                val = self.evaluate(*validation_data)
                logs.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
            history.append(epoch, logs)
            if verbose:
                shown = " ".join(f"{k} {v:.4f}" for k, v in logs.items())
                print(f"epoch {epoch + 1}/{epochs}: {shown}", flush=True)
            stop = any(bool(cb.on_epoch_end(self, epoch, logs)) for cb in cbs)
            if stop or (time_limit is not None and time.perf_counter() - start >= time_limit):
                break
        for cb in cbs:
            cb.on_train_end(self)
        return history

    def _clip(self):
        if self.clip_norm is None:
            return True
        norm = _optim.clip_grad_norm([g for g in self.grads.values()], self.clip_norm)
        return math.isfinite(norm)

    def evaluate(self, sources, targets, batch_size=256):
        """Teacher-forced loss and per-token accuracy (no dropout).

        Parameters
        ----------
        sources, targets : list of sequences of int
            As for `fit`.
        batch_size : int, default 256
            Pairs per forward pass.

        Returns
        -------
        dict
            "loss" (mean cross entropy per target token, end tokens included)
            and "accuracy".
        """
        src = _ids(sources, "sources", self.src_vocab)
        tgt = _ids(targets, "targets", self.tgt_vocab, allow_empty=True)
        if len(src) != len(tgt) or not src:
            raise ValueError("sources and targets: expected as many of each, at least one")
        batch_size = positive_int(batch_size, "batch_size")
        total, correct, count = 0.0, 0, 0
        lengths = np.array([len(s) for s in src])
        for idx in self._batches(len(src), lengths, batch_size, None):
            s, ls, yin, y, ly = self._batch([src[i] for i in idx], [tgt[i] for i in idx])
            logits, _ = self._forward(s, ls, yin, False)
            loss, _, ok, n = self._loss(logits, y, ly)
            total += loss * n
            correct += ok
            count += n
        return {"loss": total / count, "accuracy": correct / count}

    # ---- decoding -------------------------------------------------------------------
    def encode(self, src, src_lengths):
        """Run the encoder and the bridge: the decoder's first state for `decoder_step`.

        Parameters
        ----------
        src : array_like of int
            (B, S) source ids, padded past src_lengths.
        src_lengths : array_like of int
            (B,) in 1..S.

        Returns
        -------
        tuple of numpy.ndarray
            (h, c, feed, enc, keys, neg): every array has the batch as its
            first axis (h, c are (B, decoder_layers, Hd)), as fastrnn.decoding
            takes it.
        """
        src, ls = self._check_src_array(src, src_lengths)
        enc, keys, neg, h, c, _ = self._encode(src, ls, False)
        feed = np.zeros((src.shape[0], self.decoder_hidden), self.dtype)
        return (np.ascontiguousarray(h.transpose(1, 0, 2)),
                np.ascontiguousarray(c.transpose(1, 0, 2)), feed, enc, keys, neg)

    def decoder_step(self, tokens, state):
        """One decoder step for N rows: the contract fastrnn.decoding drives.

        The decoding loop's hot path, so it checks nothing: tokens must be
        ids in 0..tgt_vocab+1 and state what `encode` or a previous step
        returned (`predict` and fastrnn.decoding guarantee both).

        Parameters
        ----------
        tokens : numpy.ndarray
            (N,) the previous output ids (`bos` at the first step).
        state : tuple of numpy.ndarray
            What `encode` or the previous step returned.

        Returns
        -------
        log_probs : numpy.ndarray
            (N, tgt_vocab + 1) log-probabilities of the next token (eos last).
        state : tuple of numpy.ndarray
            The new state.
        attention : numpy.ndarray
            (N, S) the attention weights of this step.
        """
        P = self.params
        h, c, feed, enc, keys, neg = state
        W0 = P["decoder.weight_ih_l0"]
        x = np.take(P["tgt_embedding.weight"], tokens, axis=0)
        if self.input_feeding:
            x = np.concatenate([x, feed], axis=1)
        xp = _xw(x, W0)
        hs, cs = self._cells(xp, h.transpose(1, 0, 2), c.transpose(1, 0, 2))
        a, ctx, _ = self._attend(hs[-1], enc, keys, neg)
        feed, _ = self._combine(ctx, hs[-1])
        logits = _xw(feed, P["out.weight"]) + P["out.bias"]
        logits -= logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return logp, (hs.transpose(1, 0, 2), cs.transpose(1, 0, 2), feed, enc, keys, neg), a

    def predict(self, sources, beam_size=1, max_length=None, length_penalty=None, alpha=0.0,
                batch_size=256, return_attention=False):
        """Translate source sequences: greedy (beam_size 1) or beam search.

        Parameters
        ----------
        sources : list of sequences of int
            Source id sequences (each non-empty).
        beam_size : int, default 1
            1: greedy; more: beam search (fastrnn.decoding.beam_search).
        max_length : int, optional
            Most tokens to emit per source (end token included); None: 2 * the
            source's padded length + 10.
        length_penalty : {None, "avg", "wu"}, optional
            OpenNMT's length penalties for ranking finished hypotheses.
        alpha : float, default 0.0
            The "wu" penalty's exponent.
        batch_size : int, default 256
            Sources decoded together.
        return_attention : bool, default False
            Also return each output's attention weights, (len + 1, len(source)).

        Returns
        -------
        outputs : list of numpy.ndarray
            One int64 id array per source, without start or end token.
        attention : list of numpy.ndarray
            Only with return_attention.
        """
        src = _ids(sources, "sources", self.src_vocab)
        beam_size = positive_int(beam_size, "beam_size")
        if max_length is not None:
            max_length = positive_int(max_length, "max_length")
        batch_size = positive_int(batch_size, "batch_size")
        outs, atts = [None] * len(src), [None] * len(src)
        lengths = np.array([len(s) for s in src])
        for idx in self._batches(len(src), lengths, batch_size, None):
            s, ls = _pad([src[i] for i in idx])
            state = self.encode(s, ls)
            ml = max_length if max_length is not None else 2 * s.shape[1] + 10
            if beam_size == 1 and length_penalty is None:
                res = decoding.greedy_decode(self.decoder_step, state, self.bos, self.eos, ml,
                                             return_attention=return_attention)
            else:
                res = decoding.beam_search(self.decoder_step, state, self.bos, self.eos,
                                           beam_size=beam_size, max_length=ml,
                                           length_penalty=length_penalty, alpha=alpha,
                                           return_attention=return_attention)
            hyps, att = (res if return_attention else (res, None))
            for j, i in enumerate(idx):
                outs[i] = _first(hyps[j])
                if return_attention:
                    atts[i] = _first(att[j])[:, :ls[j]]
        return (outs, atts) if return_attention else outs

    def save(self, path, include_optimizer=True):
        """Write the model to one data-only file (``fr.save(self, path)``; ``fr.load`` reads it).

        Parameters
        ----------
        path : str or os.PathLike
            The file to write (replaced atomically).
        include_optimizer : bool, default True
            Also save the optimizer's state.
        """
        from .layers import delegate
        delegate("save")(self, path, include_optimizer=include_optimizer)


def _first(x):
    """beam_search may return n-best lists; the model returns the best."""
    return x[0] if isinstance(x, list) else x
