"""Tests of fastrnn.decoding: beam search against brute-force enumeration of
every sequence on tiny vocabularies (no, avg and wu length penalties, several
sources at once and one), beam 1 against greedy decoding and greedy decoding
against a hand loop, scores and attention rows against a replay of each
hypothesis's path, finished sources leaving the batch, and bad inputs."""
import numpy as np
import pytest

from fastrnn.decoding import beam_search, greedy_decode, length_penalty_value

EOS = 0


class Toy:
    """A random recurrent "Markov" decoder with the decoders' step contract.

    State rows: h (N, H) a hidden state updated from the previous token;
    enc (N, S, H) the row's source ("encoder outputs"); code (N,) the path of
    inputs so far (bos first) in base V + 2; bias (N,) the source's eos bias,
    which grows by `rise` per step (so sequences end at various lengths).
    log_probs depend on h and the source (eos's on the bias and the step); attention is a softmax
    over S of enc @ h, except column 0 which carries the code of the path
    (so an attention row names the path that produced it). Inputs are the
    V output ids and bos = V. calls records the rows of each call.
    """

    def __init__(self, rng, V, H=4, S=3, masked=(), rise=0.6):
        self.V, self.S, self.bos, self.rise = V, S, V, rise
        self.E = rng.normal(size=(V + 1, H))
        self.W = rng.normal(size=(H, H)) * 0.9
        self.O = rng.normal(size=(H, V)) * 1.5
        self.Q = rng.normal(size=(H, V))
        self.O[:, EOS] = self.Q[:, EOS] = 0.0   # eos: the bias alone
        self.masked = list(masked)   # tokens of probability 0
        self.calls = []

    def initial(self, rng, B, eos_bias=None):
        H = self.W.shape[0]
        bias = np.zeros(B) if eos_bias is None else np.asarray(eos_bias, dtype=float)
        return (rng.normal(size=(B, H)), rng.normal(size=(B, self.S, H)),
                np.zeros(B), bias)

    def step(self, tokens, state):
        assert tokens.dtype == np.int64 and tokens.ndim == 1
        h, enc, code, bias = state
        self.calls.append(tokens.shape[0])
        h = np.tanh(h @ self.W + self.E[tokens])
        code = code * (self.V + 2) + tokens + 1
        logits = h @ self.O + enc.mean(axis=1) @ self.Q
        logits[:, EOS] += bias
        bias = bias + self.rise
        logits[:, self.masked] = -np.inf
        lp = logits - logits.max(axis=1, keepdims=True)
        lp -= np.log(np.exp(lp).sum(axis=1, keepdims=True))
        e = np.einsum("nsh,nh->ns", enc, h)
        att = np.exp(e - e.max(axis=1, keepdims=True))
        att /= att.sum(axis=1, keepdims=True)
        att[:, 0] = code
        return lp, (h, enc, code, bias), att

    def code(self, inputs):
        c = 0.0
        for x in inputs:
            c = c * (self.V + 2) + x + 1
        return c


def row(state, b):
    return tuple(a[b:b + 1] for a in state)


def replay(toy, state1, emitted):
    """Run one row along a path of emitted tokens: (sum of log-probs, the
    attention rows of each emitted token)."""
    tok, st, total, atts = toy.bos, state1, 0.0, []
    for y in emitted:
        lp, st, att = toy.step(np.array([tok], dtype=np.int64), st)
        total += lp[0, y]
        atts.append(att[0])
        tok = y
    return total, np.array(atts)


def penalty(length, kind, alpha):
    """The oracle's lp(len), written out (not the module's)."""
    return {None: 1.0, "avg": float(length),
            "wu": ((5.0 + length) / 6.0) ** alpha}[kind]


def brute_force(toy, state1, L, kind, alpha):
    """Every sequence a row can emit within L tokens (ending in eos, or cut at
    L), best first: [(tokens without eos, penalized score)]."""
    out = []

    def extend(tok, st, prefix, logp):
        lp, st, _ = toy.step(np.array([tok], dtype=np.int64), st)
        for y in range(toy.V):
            if lp[0, y] == -np.inf:
                continue
            s = logp + lp[0, y]
            if y == EOS:
                out.append((prefix, s / penalty(len(prefix) + 1, kind, alpha)))
            elif len(prefix) + 1 == L:
                out.append((prefix + [y], s / penalty(L, kind, alpha)))
            else:
                extend(y, st, prefix + [y], s)

    extend(toy.bos, state1, [], 0.0)
    out.sort(key=lambda o: -o[1])
    return out


PENALTIES = [(None, 0.0), ("avg", 0.0), ("wu", 0.0), ("wu", 0.6), ("wu", 1.5),
             ("wu", -0.7)]


# ---------------------------------------------------------------- brute force

@pytest.mark.parametrize("kind,alpha", PENALTIES)
@pytest.mark.parametrize("V,L,B", [(3, 4, 4), (4, 3, 3), (3, 5, 1)])
def test_wide_beam_is_the_brute_force_ranking(rng, kind, alpha, V, L, B):
    """A beam that never prunes (beam_size >= the live prefixes times V)
    returns the brute-force best hypotheses, in order, with their scores;
    n_best 1, a few and the whole beam."""
    toy = Toy(rng, V)
    # one source leans to eos, one away from it: finishing times differ
    state = toy.initial(rng, B, eos_bias=np.linspace(1.5, -1.5, B) if B > 1 else None)
    K = V * (V - 1) ** (L - 1)
    expected = [brute_force(toy, row(state, b), L, kind, alpha) for b in range(B)]
    for n_best in (1, 3, K):
        hyps, scores = beam_search(toy.step, state, toy.bos, EOS, beam_size=K,
                                   max_length=L, length_penalty=kind, alpha=alpha,
                                   n_best=n_best, return_scores=True)
        assert len(hyps) == len(scores) == B
        for b in range(B):
            want = expected[b][:n_best]
            assert len(hyps[b]) == len(want), (b, n_best)
            assert [h.tolist() for h in hyps[b]] == [w[0] for w in want], (b, n_best)
            np.testing.assert_allclose(scores[b], [w[1] for w in want], rtol=1e-12,
                                       atol=1e-12)
            assert all(h.dtype == np.int64 for h in hyps[b])


@pytest.mark.parametrize("kind,alpha", [(None, 0.0), ("avg", 0.0), ("wu", 1.0)])
def test_batch_rows_decode_as_alone(rng, kind, alpha):
    """Each source of a batch gets what it gets decoded alone (rows of other
    sources, and sources that stop early, do not leak into it)."""
    toy = Toy(rng, 5)
    B = 5
    state = toy.initial(rng, B, eos_bias=[4.0, 0.0, -1.0, 1.0, -3.0])
    kw = dict(beam_size=3, max_length=6, length_penalty=kind, alpha=alpha, n_best=2,
              return_scores=True, return_attention=True)
    together = beam_search(toy.step, state, toy.bos, EOS, **kw)
    for b in range(B):
        alone = beam_search(toy.step, row(state, b), toy.bos, EOS, **kw)
        assert [h.tolist() for h in together[0][b]] == [h.tolist() for h in alone[0][0]]
        np.testing.assert_allclose(together[1][b], alone[1][0], rtol=1e-12)
        for a, e in zip(together[2][b], alone[2][0]):
            np.testing.assert_allclose(a, e, rtol=1e-12)


def test_impossible_tokens_are_never_emitted(rng):
    """Tokens of log-probability -inf are never chosen, and a source with
    fewer possible sequences than n_best returns just those."""
    toy = Toy(rng, 4, masked=[2, 3])   # only eos and 1 remain
    state = toy.initial(rng, 2)
    hyps, scores = beam_search(toy.step, state, toy.bos, EOS, beam_size=4, max_length=2,
                               n_best=4, return_scores=True)
    for b in range(2):
        want = brute_force(toy, row(state, b), 2, None, 0.0)
        assert sorted(h.tolist() for h in hyps[b]) == [[], [1], [1, 1]]
        assert [h.tolist() for h in hyps[b]] == [w[0] for w in want]
        assert np.all(np.isfinite(scores[b]))


# ---------------------------------------------------------------- greedy

def hand_greedy(toy, state1, L):
    tok, st, out, atts = toy.bos, state1, [], []
    for _ in range(L):
        lp, st, att = toy.step(np.array([tok], dtype=np.int64), st)
        tok = int(np.argmax(lp[0]))
        atts.append(att[0])
        if tok == EOS:
            break
        out.append(tok)
    return out, np.array(atts)


def test_greedy_is_the_hand_loop(rng):
    toy = Toy(rng, 5)
    B, L = 6, 5
    state = toy.initial(rng, B, eos_bias=[3.0, 1.0, 0.0, -1.0, -2.0, 2.0])
    toks, atts = greedy_decode(toy.step, state, toy.bos, EOS, L, return_attention=True)
    lengths = set()
    for b in range(B):
        want, want_att = hand_greedy(toy, row(state, b), L)
        assert toks[b].tolist() == want
        assert toks[b].dtype == np.int64
        np.testing.assert_allclose(atts[b], want_att, rtol=1e-12)
        lengths.add(len(want_att))
    # the batch mixes early eos, later eos and the cut at L (1 to L rows)
    assert len(lengths) > 2 and L in lengths


def test_beam_1_without_penalty_is_greedy(rng):
    toy = Toy(rng, 5)
    state = toy.initial(rng, 6, eos_bias=[3.0, 1.0, 0.0, -1.0, -2.0, 2.0])
    toks, atts = greedy_decode(toy.step, state, toy.bos, EOS, 7, return_attention=True)
    hyps, batts = beam_search(toy.step, state, toy.bos, EOS, beam_size=1, max_length=7,
                              return_attention=True)
    for b in range(6):
        assert len(hyps[b]) == 1
        assert hyps[b][0].tolist() == toks[b].tolist()
        np.testing.assert_array_equal(batts[b][0], atts[b])


def test_finished_rows_leave_the_batch(rng):
    """One step call per time step; a row that emitted eos (greedy) or a
    source that stopped (beam) is not in the next call."""
    toy = Toy(rng, 4)
    state = toy.initial(rng, 3, eos_bias=[50.0, -50.0, -50.0])  # source 0: eos at once
    toks = greedy_decode(toy.step, state, toy.bos, EOS, 4)
    assert toks[0].size == 0 and toks[1].size == 4 and toks[2].size == 4
    assert toy.calls == [3, 2, 2, 2]
    toy.calls.clear()
    hyps = beam_search(toy.step, state, toy.bos, EOS, beam_size=2, max_length=4)
    assert hyps[0][0].size == 0
    # first step: one row per source; then two per running source, none for 0
    assert toy.calls == [3, 4, 4, 4]


def test_stopping_early_leaves_no_step_unneeded(rng):
    """Without a penalty every source stops as soon as its best finished
    hypothesis beats all live ones: long before max_length here."""
    toy = Toy(rng, 4)
    state = toy.initial(rng, 2, eos_bias=[6.0, 6.0])
    hyps = beam_search(toy.step, state, toy.bos, EOS, beam_size=3, max_length=40)
    assert len(toy.calls) < 5
    assert all(len(h) == 1 for h in hyps)


def test_ties_go_to_the_better_rank_then_the_lower_token():
    """Of equal extensions the beam keeps those of the better-ranked
    hypothesis, then of the lower token id (also at the edge of the beam);
    of equal final scores the earlier finisher comes first; greedy takes
    the lowest id."""
    V = 12
    lp_row = np.log(np.r_[0.01, np.full(V - 1, 0.99 / (V - 1))])  # eos, then all equal

    def step(tokens, state):
        return np.tile(lp_row, (tokens.shape[0], 1)), state, None

    state = (np.zeros((2, 1)),)
    for L, want in [(1, [[1], [2], [3], [4], [5]]),
                    (2, [[1, 1], [1, 2], [1, 3], [1, 4], [1, 5]])]:
        hyps = beam_search(step, state, V, EOS, beam_size=5, max_length=L, n_best=5)
        assert [[h.tolist() for h in hs] for hs in hyps] == [want] * 2
    assert [t.tolist() for t in greedy_decode(step, state, V, EOS, 3)] == [[1, 1, 1]] * 2


# ---------------------------------------------------------------- consistency

@pytest.mark.parametrize("kind,alpha", PENALTIES)
def test_narrow_beam_scores_and_attention_match_their_paths(rng, kind, alpha):
    """With pruning (beam 2 over V = 6), every returned hypothesis's score is
    the sum of its path's log-probs / lp(len), its attention rows are the
    step's rows for that path (column 0 spells the path), and the n_best come
    best first."""
    toy = Toy(rng, 6)
    B, L = 4, 6
    state = toy.initial(rng, B, eos_bias=[2.0, 0.0, -1.0, -3.0])
    hyps, scores, atts = beam_search(toy.step, state, toy.bos, EOS, beam_size=2,
                                     max_length=L, length_penalty=kind, alpha=alpha,
                                     n_best=2, return_scores=True, return_attention=True)
    for b in range(B):
        assert len(hyps[b]) == 2
        assert scores[b][0] >= scores[b][1]
        for h, s, a in zip(hyps[b], scores[b], atts[b]):
            cut = len(h) == L
            emitted = h.tolist() + ([] if cut else [EOS])
            assert EOS not in h.tolist() and len(emitted) <= L
            total, want_att = replay(toy, row(state, b), emitted)
            np.testing.assert_allclose(s, total / penalty(len(emitted), kind, alpha),
                                       rtol=1e-12)
            assert a.shape == (len(emitted), toy.S)
            np.testing.assert_allclose(a, want_att, rtol=1e-12)
            codes = [toy.code([toy.bos] + emitted[:i]) for i in range(len(emitted))]
            assert a[:, 0].tolist() == codes


def test_return_values_and_empty_batch(rng):
    toy = Toy(rng, 3)
    state = toy.initial(rng, 2)
    hyps = beam_search(toy.step, state, toy.bos, EOS, beam_size=2, max_length=3)
    assert isinstance(hyps, list) and len(hyps) == 2
    assert all(isinstance(h, list) and len(h) == 1 for h in hyps)
    before = [a.copy() for a in state]
    out = beam_search(toy.step, state, toy.bos, EOS, beam_size=2, max_length=3,
                      return_attention=True, return_scores=True)
    assert len(out) == 3
    for a, b in zip(state, before):   # the caller's state is left alone
        np.testing.assert_array_equal(a, b)

    toy.calls.clear()
    empty = toy.initial(rng, 0)
    assert greedy_decode(toy.step, empty, toy.bos, EOS, 3) == []
    assert greedy_decode(toy.step, empty, toy.bos, EOS, 3, return_attention=True) == ([], [])
    assert beam_search(toy.step, empty, toy.bos, EOS) == []
    assert beam_search(toy.step, empty, toy.bos, EOS, return_scores=True,
                       return_attention=True) == ([], [], [])
    assert toy.calls == []


def test_length_penalty_value():
    assert length_penalty_value(3) == 1.0
    assert length_penalty_value(3, "avg") == 3.0
    assert length_penalty_value(4, "wu", alpha=0.5) == pytest.approx(1.5 ** 0.5)
    np.testing.assert_allclose(length_penalty_value([1, 7], "wu", alpha=2.0),
                               [1.0, 4.0])


# ---------------------------------------------------------------- bad input

_OK = object()


def _bad_step(lp=None, state_rows=None, att=_OK, out=None):
    """A step function that returns one thing wrong (the rest as it should)."""
    def step(tokens, state):
        if out is not None:
            return out
        N = tokens.shape[0]
        p = np.log(np.full((N, 3), 1 / 3)) if lp is None else lp(N)
        st = state if state_rows is None else (np.zeros((state_rows, 2)),)
        a = np.full((N, 2), 0.5) if att is _OK else att
        return p, st, a
    return step


GOOD_STATE = (np.zeros((2, 2)),)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(beam_size=0), ValueError, "beam_size"),
    (dict(beam_size=-2), ValueError, "beam_size"),
    (dict(beam_size=2.0), TypeError, "beam_size"),
    (dict(beam_size=True), TypeError, "beam_size"),
    (dict(max_length=0), ValueError, "max_length"),
    (dict(max_length=-1), ValueError, "max_length"),
    (dict(max_length=None), TypeError, "max_length"),
    (dict(n_best=3, beam_size=2), ValueError, "n_best"),
    (dict(n_best=0), ValueError, "n_best"),
    (dict(length_penalty="average"), ValueError, "length_penalty"),
    (dict(length_penalty=1), TypeError, "length_penalty"),
    (dict(length_penalty="avg", alpha=0.5), ValueError, "alpha"),
    (dict(length_penalty="wu", alpha=float("nan")), ValueError, "alpha"),
    (dict(length_penalty="wu", alpha="1"), TypeError, "alpha"),
    (dict(eos=3), ValueError, r"eos: expected an id in \[0, 3\)"),
    (dict(eos=-1), ValueError, "eos"),
    (dict(bos=-1), ValueError, "bos"),
    (dict(bos=1.5), TypeError, "bos"),
])
def test_bad_arguments(kwargs, error, match):
    args = dict(bos=3, eos=0)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        beam_search(_bad_step(), GOOD_STATE, **args)


@pytest.mark.parametrize("step,error,match", [
    (_bad_step(lp=lambda N: np.zeros((N + 1, 3))), ValueError, r"log_probs: .*shape"),
    (_bad_step(lp=lambda N: np.zeros(N)), ValueError, r"log_probs: .*shape"),
    (_bad_step(lp=lambda N: np.full((N, 3), np.nan)), ValueError, "log_probs: .*NaN"),
    (_bad_step(lp=lambda N: np.full((N, 3), np.inf)), ValueError, "log_probs: .*> 0"),
    (_bad_step(lp=lambda N: np.ones((N, 3))), ValueError, "log_probs: .*log_softmax"),
    (_bad_step(lp=lambda N: np.full((N, 3), -np.inf)), ValueError, "log_probs: .*-inf"),
    (_bad_step(lp=lambda N: np.zeros((N, 3), dtype=np.int64)), TypeError, "log_probs"),
    (_bad_step(state_rows=7), ValueError, "state element 0"),
    (_bad_step(att=None), ValueError, "attention None"),
    (_bad_step(att=np.zeros(4)), ValueError, "attention: "),
    (_bad_step(out=(1, 2)), TypeError, r"step: .*\(log_probs, state, attention\)"),
])
@pytest.mark.parametrize("decode", ["greedy", "beam"])
def test_bad_step_outputs(step, error, match, decode):
    with pytest.raises(error, match=match):
        if decode == "greedy":
            greedy_decode(step, GOOD_STATE, 3, 0, 4, return_attention=True)
        else:
            beam_search(step, GOOD_STATE, 3, 0, beam_size=2, max_length=4,
                        return_attention=True)


def test_nan_on_a_later_step_is_caught():
    def step(tokens, state):
        lp = np.log(np.tile([0.1, 0.5, 0.4], (tokens.shape[0], 1)))
        if state[0][0, 0] > 0:
            lp[-1, 1] = np.nan
        return lp, (state[0] + 1,), None
    with pytest.raises(ValueError, match="log_probs: step 1 returned NaN"):
        beam_search(step, GOOD_STATE, 3, 0, beam_size=2, max_length=4)


@pytest.mark.parametrize("state,error,match", [
    (np.zeros((2, 2)), TypeError, "state: expected a tuple"),
    ((), ValueError, "state: expected at least one array"),
    (([1, 2],), TypeError, "state: element 0 is a list"),
    ((np.zeros(2), np.zeros(3)), ValueError, "state: element 1 has 3 rows"),
    ((np.array(1.0),), ValueError, "state: element 0 is a 0-d"),
])
def test_bad_state(state, error, match):
    with pytest.raises(error, match=match):
        beam_search(_bad_step(), state, 3, 0)
    with pytest.raises(error, match=match):
        greedy_decode(_bad_step(), state, 3, 0, 4)


def test_bad_greedy_arguments():
    with pytest.raises(ValueError, match="max_length"):
        greedy_decode(_bad_step(), GOOD_STATE, 3, 0, 0)
    with pytest.raises(TypeError, match="step: expected a callable"):
        greedy_decode(None, GOOD_STATE, 3, 0, 4)
    with pytest.raises(TypeError, match="step: expected a callable"):
        beam_search("model", GOOD_STATE, 3, 0)
    with pytest.raises(ValueError, match="eos"):
        greedy_decode(_bad_step(), GOOD_STATE, 3, 5, 4)
    with pytest.raises(ValueError, match="length: expected lengths >= 1"):
        length_penalty_value(0, "avg")
