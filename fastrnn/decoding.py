"""Greedy and beam-search decoding for encoder-decoder models.

The model is reached only through one function, ``step``::

    log_probs, state, attention = step(tokens, state)

    tokens      (N,) int64: each row's previous output token (bos first)
    state       tuple of arrays, each with N rows along axis 0: the decoder's
                recurrent state and whatever else a row needs (its source's
                encoder outputs and mask, ...)
    log_probs   (N, V) float: log-probabilities of the next token (already
                log-softmaxed, so every value is <= 0)
    state       the new state, a tuple of arrays with N rows again
    attention   (N, S) float, or None

The decoders choose, drop, reorder and repeat rows themselves, by indexing
every array of the state along axis 0 (``a[index]``); ``step`` only ever sees
the rows still being decoded, so a finished sequence (or, in beam search, a
finished source) costs nothing on the following steps. One ``step`` call per
time step serves all the live rows of all sources.

Lengths: a hypothesis's length is the number of tokens it emitted, eos
included (bos is not emitted). ``max_length`` caps it: a hypothesis that has
emitted ``max_length`` tokens without eos is cut there, and counts as finished
with length ``max_length``. The token arrays returned hold neither bos nor
eos; the attention arrays hold one row per emitted token, eos included (so
``len(tokens) + 1`` rows after eos, ``len(tokens)`` rows for a cut one).

This module sits below the models: it imports NumPy only.
"""
import numbers

import numpy as np

from ._validate import positive_int

__all__ = ["greedy_decode", "beam_search", "length_penalty_value"]

# log_probs above this are not log-probabilities (p > 1), whatever the rounding
_LOG_PROB_SLACK = 1e-3

_PENALTIES = (None, "none", "avg", "wu")


# ---------------------------------------------------------------- checks


def _state_arg(state):
    """The input state as a tuple of arrays sharing their first axis; (state, B)."""
    if not isinstance(state, (tuple, list)):
        raise TypeError(f"state: expected a tuple of NumPy arrays (one row per source "
                        f"along axis 0), got {type(state).__name__}")
    if not state:
        raise ValueError("state: expected at least one array (its first axis gives the "
                         "number of sources), got an empty tuple")
    for i, a in enumerate(state):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"state: element {i} is a {type(a).__name__}, expected a "
                            "NumPy array")
        if a.ndim < 1:
            raise ValueError(f"state: element {i} is a 0-d array; every array needs the "
                             "sources along axis 0")
    B = state[0].shape[0]
    for i, a in enumerate(state):
        if a.shape[0] != B:
            raise ValueError(f"state: element {i} has {a.shape[0]} rows along axis 0, "
                             f"element 0 has {B}; every array needs one row per source")
    return tuple(state), B


def _penalty_args(length_penalty, alpha):
    """The length penalty's name (None, 'avg' or 'wu') and alpha as a float."""
    if length_penalty is not None and not isinstance(length_penalty, str):
        raise TypeError(f"length_penalty: expected None, 'avg' or 'wu', got "
                        f"{type(length_penalty).__name__} {length_penalty!r}")
    if length_penalty not in _PENALTIES:
        raise ValueError(f"length_penalty: expected None, 'avg' or 'wu', got "
                         f"{length_penalty!r}")
    if length_penalty == "none":
        length_penalty = None
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"alpha: expected a real number, got {type(alpha).__name__} "
                        f"{alpha!r}")
    alpha = float(alpha)
    if not np.isfinite(alpha):
        raise ValueError(f"alpha: expected a finite number, got {alpha}")
    if alpha != 0.0 and length_penalty != "wu":
        # silently ignoring a tuning knob would hide a typo in the penalty's name
        raise ValueError(f"alpha: only length_penalty='wu' uses alpha, got alpha={alpha} "
                         f"with length_penalty={length_penalty!r}")
    return length_penalty, alpha


def _call_step(step, tokens, state, t, check):
    """One call of step on N rows, its outputs checked; (log_probs float64, state,
    attention or None). check: dict with the first step's V and S (filled at t = 0),
    eos and whether attention is needed."""
    N = tokens.shape[0]
    out = step(tokens, state)
    if not isinstance(out, tuple) or len(out) != 3:
        raise TypeError(f"step: expected it to return (log_probs, state, attention), got "
                        f"{type(out).__name__}"
                        + (f" of length {len(out)}" if isinstance(out, tuple) else ""))
    lp, new_state, att = out
    lp = np.asarray(lp)
    if lp.dtype.kind != "f":
        raise TypeError(f"log_probs: step {t} returned dtype {lp.dtype}, expected floats")
    if lp.ndim != 2 or lp.shape[0] != N:
        raise ValueError(f"log_probs: step {t} returned shape {lp.shape}, expected "
                         f"({N}, V): one row per input token")
    if t == 0:
        check["V"] = V = lp.shape[1]
        if not 0 <= check["eos"] < V:
            raise ValueError(f"eos: expected an id in [0, {V}) (V = {V}, the width of "
                             f"the first step's log_probs), got {check['eos']}")
    elif lp.shape[1] != check["V"]:
        raise ValueError(f"log_probs: step {t} returned {lp.shape[1]} columns, the first "
                         f"step {check['V']}")
    lp = lp.astype(np.float64, copy=False)
    if N:
        # one pass: max propagates NaN, shows +inf and values > 0, and finds rows
        # with no possible token at all
        top = lp.max(axis=1)
        if np.isnan(top).any():
            raise ValueError(f"log_probs: step {t} returned NaN (row "
                             f"{int(np.flatnonzero(np.isnan(top))[0])})")
        if (top > _LOG_PROB_SLACK).any():
            raise ValueError(f"log_probs: step {t} returned values > 0 (max "
                             f"{top.max()}); expected log-probabilities (apply "
                             "log_softmax to the logits)")
        if (top == -np.inf).any():
            raise ValueError(f"log_probs: step {t} returned a row of -inf only (row "
                             f"{int(np.flatnonzero(top == -np.inf)[0])}): no token "
                             "is possible")
    if not isinstance(new_state, (tuple, list)):
        raise TypeError(f"step: step {t} returned a state of type "
                        f"{type(new_state).__name__}, expected a tuple of NumPy arrays")
    for i, a in enumerate(new_state):
        if not isinstance(a, np.ndarray) or a.ndim < 1 or a.shape[0] != N:
            got = (f"shape {a.shape}" if isinstance(a, np.ndarray)
                   else type(a).__name__)
            raise ValueError(f"step: step {t} returned state element {i} with {got}, "
                             f"expected a NumPy array with {N} rows along axis 0")
    if check["attention"]:
        if att is None:
            raise ValueError(f"step: step {t} returned attention None, but "
                             "return_attention=True needs (N, S) attention weights")
        att = np.asarray(att)
        if att.ndim != 2 or att.shape[0] != N or (t > 0 and att.shape[1] != check["S"]):
            raise ValueError(f"attention: step {t} returned shape {att.shape}, expected "
                             f"({N}, {check.get('S', 'S')}): one row per input token")
        check.setdefault("S", att.shape[1])
    return lp, tuple(new_state), att


def _take(state, index):
    return tuple(a[index] for a in state)


# ---------------------------------------------------------------- penalty

def length_penalty_value(length, length_penalty=None, alpha=0.0):
    """The length penalty lp(len) that divides a hypothesis's log-probability.

    As OpenNMT's ``PenaltyBuilder``: None gives 1 (no penalty), ``"avg"``
    gives ``len`` (the mean log-probability per token), ``"wu"`` gives
    ``((5 + len) / 6) ** alpha`` (Wu et al. 2016, GNMT). ``len`` counts the
    emitted tokens, eos included.

    Parameters
    ----------
    length : int or array_like of int
        Hypothesis lengths (emitted tokens, eos included), >= 1.
    length_penalty : {None, 'avg', 'wu'}, optional
        Which penalty (``'none'`` is None).
    alpha : float, default 0.0
        The exponent of ``'wu'``; must stay 0 for the others.

    Returns
    -------
    numpy.ndarray or float
        lp(length), float64, of `length`'s shape (a float for an int).

    Raises
    ------
    TypeError
        `length_penalty` not a string or None, `alpha` not a real number.
    ValueError
        A `length` < 1 (or NaN), an unknown `length_penalty`, a non-finite
        `alpha` or one given without ``'wu'``.

    Examples
    --------
    >>> from fastrnn.decoding import length_penalty_value
    >>> length_penalty_value(7, "wu", alpha=1.0)
    2.0
    >>> length_penalty_value([1, 4], "avg")
    array([1., 4.])
    """
    kind, alpha = _penalty_args(length_penalty, alpha)
    length = np.asarray(length, dtype=np.float64)
    if length.size and not (length >= 1).all():
        raise ValueError(f"length: expected lengths >= 1, got min {length.min()}")
    value = _lp(length, kind, alpha)
    return float(value) if value.ndim == 0 else value


def _lp(length, kind, alpha):
    """lp over a float64 array of lengths (checked arguments)."""
    if kind is None:
        return np.ones_like(length)
    if kind == "avg":
        return length.copy()
    return ((5.0 + length) / 6.0) ** alpha


# ---------------------------------------------------------------- greedy

def greedy_decode(step, state, bos, eos, max_length, return_attention=False):
    """Greedy decoding: each source emits its most probable next token until eos.

    All sources are decoded together, one ``step`` call per time step on the
    rows still running; a source that emitted eos is dropped from the next
    call. Of equally probable tokens the lowest id is taken.

    Parameters
    ----------
    step : callable
        ``step(tokens, state) -> (log_probs, state, attention)``, as the
        module's docstring describes: tokens (N,) int64, log_probs (N, V),
        state a tuple of arrays with N rows, attention (N, S) or None.
    state : tuple of numpy.ndarray
        The initial state of the B sources, each array with B rows along
        axis 0 (B = 0 decodes nothing).
    bos : int
        The first input token of every source (need not be in [0, V): a
        model's bos is often an input id only).
    eos : int
        The token that ends a sequence, in [0, V) (checked against the first
        step's V).
    max_length : int
        Most tokens a source emits, eos included (>= 1); a source that has
        emitted that many without eos is cut there.
    return_attention : bool, default False
        Also return the attention weights of each emitted token.

    Returns
    -------
    tokens : list of numpy.ndarray
        B int64 arrays: the emitted tokens, without bos and eos.
    attention : list of numpy.ndarray
        Only with ``return_attention=True``: B arrays (len, S), one row per
        emitted token, eos included (``len(tokens[b]) + 1`` rows, or
        ``len(tokens[b])`` for a source cut at `max_length`).

    Raises
    ------
    TypeError
        `step` not callable or returning something other than
        ``(log_probs, state, attention)``; `state` not a tuple of arrays;
        `bos`, `eos` or `max_length` not an int; float log_probs expected.
    ValueError
        `max_length` < 1, `bos` < 0, `eos` outside [0, V); log_probs of the
        wrong shape, with NaN, values > 0 or a row of -inf only; a returned
        state or attention without one row per token; attention None with
        `return_attention`.

    Examples
    --------
    A bigram model over V = 3 tokens (0 is eos), with bos = 3 as its input:

    >>> import numpy as np
    >>> from fastrnn.decoding import greedy_decode
    >>> table = np.log([[1/3, 1/3, 1/3],    # after 0 (eos, never an input)
    ...                 [0.32, 0.43, 0.25], # after 1
    ...                 [0.9, 0.05, 0.05],  # after 2
    ...                 [0.1, 0.5, 0.4]])   # after bos
    >>> step = lambda tokens, state: (table[tokens], state, None)
    >>> greedy_decode(step, (np.zeros((1, 1)),), bos=3, eos=0, max_length=4)
    [array([1, 1, 1, 1])]
    """
    if not callable(step):
        raise TypeError(f"step: expected a callable, got {type(step).__name__}")
    state, B = _state_arg(state)
    bos = positive_int(bos, "bos", 0)
    eos = positive_int(eos, "eos", 0)
    max_length = positive_int(max_length, "max_length", 1)
    return_attention = bool(return_attention)
    check = {"eos": eos, "attention": return_attention}

    emitted = []                        # per step: (N_t,) tokens of the live rows
    attn = []                           # per step: (N_t, S) attention of the live rows
    rows = np.arange(B)                 # the source of each live row
    rows_at = []                        # per step: rows at that step
    tokens = np.full(B, bos, dtype=np.int64)
    for t in range(max_length):
        if rows.size == 0:
            break
        lp, state, att = _call_step(step, tokens, state, t, check)
        tokens = np.argmax(lp, axis=1).astype(np.int64)  # argmax: lowest id of ties
        emitted.append(tokens)
        rows_at.append(rows)
        if return_attention:
            attn.append(att)
        live = tokens != eos
        if not live.all():              # only copy the state when a row finished
            rows, tokens, state = rows[live], tokens[live], _take(state, live)

    # a source's tokens are its rows' entries at each step until it stopped
    out = [[] for _ in range(B)]
    out_att = [[] for _ in range(B)]
    for t, (r, tok) in enumerate(zip(rows_at, emitted)):
        for i, b in enumerate(r.tolist()):
            out[b].append(tok[i])
            if return_attention:
                out_att[b].append(attn[t][i])
    seqs = []
    for b in range(B):
        seq = np.array(out[b], dtype=np.int64)
        seqs.append(seq[:-1] if seq.size and seq[-1] == eos else seq)
    if not return_attention:
        return seqs
    S = check.get("S", 0)
    return seqs, [np.array(a) if a else np.zeros((0, S)) for a in out_att]


# ---------------------------------------------------------------- beam search

def beam_search(step, state, bos, eos, beam_size=5, max_length=50, length_penalty=None,
                alpha=0.0, n_best=1, return_attention=False, return_scores=False):
    """Beam search over the sources of a batch, with OpenNMT's length penalties.

    Each source keeps up to `beam_size` live hypotheses (token prefixes), with
    score = the sum of their tokens' log-probabilities. At each time step,
    for each source, the `beam_size` best one-token extensions of all its
    live hypotheses are kept (extensions of log-probability -inf never): an
    extension ending in eos is finished (eos counts in its length), the
    others are the next step's live hypotheses. At `max_length` the live
    hypotheses are cut and count as finished with length `max_length`.

    The length penalty applies when a hypothesis finishes, and only to rank
    the finished ones: its final score is ``score / lp(len)``, ``len`` the
    tokens it emitted (eos included, bos not), lp as in
    `length_penalty_value` (None: 1; ``'avg'``: len; ``'wu'``:
    ``((5 + len) / 6) ** alpha``). The extensions kept at each step are
    chosen by the unpenalized score (at one step they all have the same
    length, so the penalty would not change that choice).

    A source stops once it has `n_best` finished hypotheses and none of its
    live ones can still beat the `n_best`-th of them: since log-probabilities
    are <= 0, a live hypothesis with score s and length l can at best finish
    at ``s / max(lp(l + 1), lp(max_length))`` (lp is monotonic in len). So
    stopping never changes the result, which is that of running every source
    to `max_length`; with a beam wide enough that nothing is ever pruned it is
    the exact best of all sequences (the tests check it against enumeration).
    With ``'avg'`` or ``'wu'`` that bound is loose, and sources tend to run to
    `max_length` or until their beams die out. A stopped source's rows leave
    the batch; ``step`` sees only the live rows of the running sources.

    Ties are broken by rank: of equal extensions, the one of the better-ranked
    hypothesis, then the one of the lower token id, is kept; of equal final
    scores, the hypothesis that finished first comes first.

    Parameters
    ----------
    step : callable
        ``step(tokens, state) -> (log_probs, state, attention)``, as the
        module's docstring describes: tokens (N,) int64, log_probs (N, V),
        state a tuple of arrays with N rows, attention (N, S) or None.
    state : tuple of numpy.ndarray
        The initial state of the B sources, each array with B rows along
        axis 0 (B = 0 decodes nothing). The first step runs on these B rows;
        from then on each source has up to `beam_size` rows.
    bos : int
        The first input token (need not be in [0, V): a model's bos is often
        an input id only).
    eos : int
        The token that ends a hypothesis, in [0, V) (checked against the first
        step's V).
    beam_size : int, default 5
        Live hypotheses kept per source (>= 1; 1 is greedy decoding).
    max_length : int, default 50
        Most tokens a hypothesis emits, eos included (>= 1).
    length_penalty : {None, 'avg', 'wu'}, optional
        The length penalty of the final ranking (``'none'`` is None).
    alpha : float, default 0.0
        The exponent of ``'wu'``; must stay 0 with the other penalties.
    n_best : int, default 1
        Hypotheses returned per source, best first (1..`beam_size`); fewer
        where fewer finished (every other extension had probability 0).
    return_attention : bool, default False
        Also return each hypothesis's attention weights.
    return_scores : bool, default False
        Also return each hypothesis's final score.

    Returns
    -------
    hypotheses : list of list of numpy.ndarray
        B lists of up to `n_best` int64 token arrays, best first, without bos
        and eos.
    scores : list of list of float
        Only with ``return_scores=True``: their final scores,
        ``sum of log-probabilities / lp(len)``.
    attention : list of list of numpy.ndarray
        Only with ``return_attention=True``: their attention weights, (len, S)
        with one row per emitted token, eos included.

    Raises
    ------
    TypeError
        `step` not callable or returning something other than
        ``(log_probs, state, attention)``; `state` not a tuple of arrays;
        `bos`, `eos`, `beam_size`, `max_length` or `n_best` not an int;
        `length_penalty` not a string; `alpha` not a real number.
    ValueError
        `beam_size`, `max_length` or `n_best` < 1, `n_best` > `beam_size`,
        `bos` < 0, `eos` outside [0, V), an unknown `length_penalty`, `alpha`
        non-finite or given without ``'wu'``; log_probs of the wrong shape,
        with NaN, values > 0 or a row of -inf only; a returned state or
        attention without one row per token; attention None with
        `return_attention`.

    Examples
    --------
    The bigram model of `greedy_decode`'s example: greedy decoding takes 1
    (p = 0.5) and goes on to the cut at max_length (p = 0.04); the beam
    finds 2 then eos (p = 0.4 * 0.9 = 0.36), and 1, 1, eos second:

    >>> import numpy as np
    >>> from fastrnn.decoding import beam_search
    >>> table = np.log([[1/3, 1/3, 1/3],    # after 0 (eos, never an input)
    ...                 [0.32, 0.43, 0.25], # after 1
    ...                 [0.9, 0.05, 0.05],  # after 2
    ...                 [0.1, 0.5, 0.4]])   # after bos
    >>> step = lambda tokens, state: (table[tokens], state, None)
    >>> hyps, scores = beam_search(step, (np.zeros((1, 1)),), bos=3, eos=0,
    ...                            beam_size=2, max_length=4, n_best=2,
    ...                            return_scores=True)
    >>> hyps
    [[array([2]), array([1, 1])]]
    >>> np.round(np.exp(scores), 3)
    array([[0.36 , 0.069]])
    """
    if not callable(step):
        raise TypeError(f"step: expected a callable, got {type(step).__name__}")
    state, B = _state_arg(state)
    bos = positive_int(bos, "bos", 0)
    eos = positive_int(eos, "eos", 0)
    K = positive_int(beam_size, "beam_size", 1)
    max_length = positive_int(max_length, "max_length", 1)
    n_best = positive_int(n_best, "n_best", 1)
    if n_best > K:
        raise ValueError(f"n_best: expected at most beam_size = {K} hypotheses, got "
                         f"{n_best}")
    kind, alpha = _penalty_args(length_penalty, alpha)
    return_attention = bool(return_attention)
    check = {"eos": eos, "attention": return_attention}

    # finished[b]: up to n_best (final score, finishing order, tokens, attention),
    # best first; order breaks ties in favour of the earlier finisher
    finished = [[] for _ in range(B)]
    serial = 0

    def finish(b, score, length, toks, att):
        nonlocal serial
        key = score / float(_lp(np.float64(length), kind, alpha))
        fin = finished[b]
        if len(fin) == n_best and key <= fin[-1][0]:
            return                      # cannot enter the n_best: keep no copy
        fin.append((key, serial, toks, att))
        serial += 1
        fin.sort(key=lambda f: (-f[0], f[1]))
        del fin[n_best:]

    # the live rows, grouped by source in source order and, inside a source,
    # by rank (best first): row r belongs to source src[r]
    src = np.arange(B)
    scores = np.zeros(B)                        # sum of log-probs so far
    hist = np.zeros((B, 0), dtype=np.int64)     # tokens emitted so far
    ahist = None                                # (N, t, S) attention so far
    tokens = np.full(B, bos, dtype=np.int64)
    for t in range(max_length):
        N = src.size
        if N == 0:
            break
        lp, new_state, att = _call_step(step, tokens, state, t, check)
        V = lp.shape[1]
        if return_attention and ahist is None:
            ahist = np.zeros((B, 0, att.shape[1]), dtype=att.dtype)

        # group g = the g-th running source; slot = a row's rank within it
        starts = np.flatnonzero(np.r_[True, src[1:] != src[:-1]])
        sizes = np.diff(np.r_[starts, N])
        group = np.repeat(np.arange(starts.size), sizes)
        slot = np.arange(N) - starts[group]
        G, W = starts.size, int(sizes.max())
        if N == G * W:                            # every source has W rows
            cand = (scores[:, None] + lp).reshape(G, W * V)
        else:                                     # pad: empty slots are never chosen
            cand = np.full((G, W, V), -np.inf)
            cand[group, slot] = scores[:, None] + lp
            cand = cand.reshape(G, W * V)
        k = min(K, W * V)
        if k < W * V:
            pick = np.argpartition(-cand, k - 1, axis=1)[:, :k]
            # a tie at the edge of the beam: argpartition's choice among the tied
            # is arbitrary, a stable sort's is the lower (slot, token)
            edge = np.take_along_axis(cand, pick, axis=1).min(axis=1)
            tied = np.flatnonzero((edge > -np.inf)
                                  & (np.count_nonzero(cand >= edge[:, None], axis=1) > k))
            for g in tied.tolist():
                pick[g] = np.argsort(-cand[g], kind="stable")[:k]
        else:
            pick = np.broadcast_to(np.arange(W * V), (G, k))
        val = np.take_along_axis(cand, pick, axis=1)
        order = np.lexsort((pick, -val), axis=1)  # best first; ties: lower (slot, token)
        pick = np.take_along_axis(pick, order, axis=1)
        val = np.take_along_axis(val, order, axis=1)
        keep = val > -np.inf                      # impossible extensions never
        sel_group = np.broadcast_to(np.arange(G)[:, None], (G, k))[keep]
        pick, val = pick[keep], val[keep]
        parent = starts[sel_group] + pick // V    # the row each extension extends
        tok = (pick % V).astype(np.int64)
        sel_src = src[starts][sel_group]
        if return_attention:
            new_ahist = np.concatenate([ahist[parent], att[parent][:, None, :]], axis=1)
        new_hist = np.concatenate([hist[parent], tok[:, None]], axis=1)

        ended = (tok == eos) if t + 1 < max_length else np.ones(tok.size, dtype=bool)
        for i in np.flatnonzero(ended).tolist():
            seq = new_hist[i, :-1] if tok[i] == eos else new_hist[i]
            finish(int(sel_src[i]), float(val[i]), t + 1, seq.copy(),
                   new_ahist[i].copy() if return_attention else None)
        live = ~ended

        # a running source stops when no live hypothesis can beat its n_best-th
        # finished one: lp's largest value over the lengths still reachable
        if t + 1 < max_length and live.any():
            reach = _lp(np.array([t + 2.0, float(max_length)]), kind, alpha)
            lp_hi, lp_lo = reach.max(), reach.min()
            best_live = np.full(B, -np.inf)
            np.maximum.at(best_live, sel_src[live], val[live])
            bound = np.where(best_live <= 0, best_live / lp_hi, best_live / lp_lo)
            for b in np.unique(sel_src[live]).tolist():
                fin = finished[b]
                if len(fin) == n_best and bound[b] <= fin[-1][0]:
                    live &= sel_src != b

        src, scores, tokens = sel_src[live], val[live], tok[live]
        hist = new_hist[live]
        if return_attention:
            ahist = new_ahist[live]
        state = _take(new_state, parent[live])

    hyps = [[f[2] for f in fin] for fin in finished]
    out = [hyps]
    if return_scores:
        out.append([[f[0] for f in fin] for fin in finished])
    if return_attention:
        out.append([[f[3] for f in fin] for fin in finished])
    return out[0] if len(out) == 1 else tuple(out)
