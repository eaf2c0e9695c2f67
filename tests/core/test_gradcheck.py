"""float64 gradient checks of the real fastrnn layers (no torch needed).

1. Random-direction checks (kann-style): for every parameter, x, h0 and c0,
   the central difference of the loss along a random direction d must equal
   g.d, with loss = sum(y*R1) + sum(h_n*R2) [+ sum(c_n*R3)] for fixed random R.
2. Parity with the NumPy reference (fastrnn/_reference.py): forward outputs,
   states and every gradient agree to ~1e-10 in float64.

Only the public API of api.md is used, except in the dropout test, which
reads the mask the layer drew (a private attribute) and skips without it.
"""

import numpy as np
import pytest

import fastrnn as fr
from fastrnn._reference import reference_backward, reference_forward

MODES = ["RNN_TANH", "RNN_RELU", "LSTM", "GRU"]


# ---------------------------------------------------------------- helpers

def make_layer(mode, I, H, L=1, bd=False, bias=True, batch_first=False, seed=0, **kw):
    kw = dict(num_layers=L, bidirectional=bd, bias=bias, batch_first=batch_first,
              dtype="float64", seed=seed, **kw)
    if mode == "LSTM":
        return fr.LSTM(I, H, **kw)
    if mode == "GRU":
        return fr.GRU(I, H, **kw)
    return fr.RNN(I, H, nonlinearity="tanh" if mode == "RNN_TANH" else "relu", **kw)


def make_lengths(rng, T, B):
    """Lengths that really mask: for B >= 2 one full and one short sequence,
    for B == 1 a length below T (so max(lengths) < T is covered too)."""
    if T == 1:
        return np.ones(B, dtype=np.int64)
    lengths = rng.integers(1, T + 1, size=B)
    if B == 1:
        lengths[0] = rng.integers(1, T)
    else:
        lengths[0] = T
        lengths[1] = rng.integers(1, T)
    return lengths.astype(np.int64)


class Problem:
    """A layer, its inputs and the random weights R1, R2, R3 of the loss."""

    def __init__(self, mode, T, B, I, H, L, bd, use_len, use_state, bias=True,
                 seed=0, batch_first=False, away_from_kink=False):
        self.mode, self.L, self.bd = mode, L, bd
        self.is_lstm = mode == "LSTM"
        self.batch_first = batch_first
        D = 2 if bd else 1
        self.layer = make_layer(mode, I, H, L, bd, bias, batch_first=batch_first, seed=seed)
        rng = np.random.default_rng(1000 + seed)
        for attempt in range(50):
            self.x = rng.standard_normal((T, B, I))
            self.h0 = rng.standard_normal((D * L, B, H)) if use_state else None
            self.c0 = (rng.standard_normal((D * L, B, H))
                       if use_state and self.is_lstm else None)
            self.lengths = make_lengths(rng, T, B) if use_len else None
            # Finite differences must not cross the kink of relu: redraw the
            # inputs until every pre-activation is at least 1e-3 from 0.
            if mode != "RNN_RELU" or not away_from_kink or self.relu_margin() > 1e-3:
                break
        else:
            raise AssertionError("no input found away from the relu kink")
        self.R1 = rng.standard_normal((T, B, D * H))
        self.R2 = rng.standard_normal((D * L, B, H))
        self.R3 = rng.standard_normal((D * L, B, H)) if self.is_lstm else None

    # the layer's own view (batch_first transposes x / y)
    def lx(self, x=None):
        x = self.x if x is None else x
        return x.transpose(1, 0, 2) if self.batch_first else x

    def state0(self, h0=None, c0=None):
        h0 = self.h0 if h0 is None else h0
        c0 = self.c0 if c0 is None else c0
        if h0 is None:
            return None
        return (h0, c0) if self.is_lstm else h0

    def dstate(self):
        return (self.R2, self.R3) if self.is_lstm else self.R2

    def relu_margin(self):
        """Smallest |pre-activation| over all steps, from the reference."""
        _, _, _, ctx = self.reference()
        pre = [c["pre"].ravel() for lay in ctx["layers"] for d in lay["steps"]
               for (_, _, c) in d]
        return float(np.min(np.abs(np.concatenate(pre))))

    def reference(self, dropmasks=None):
        return reference_forward(self.mode, self.layer.state_dict(), self.x, self.h0,
                                 self.c0, self.lengths, self.L, self.bd, dropmasks)

    def loss(self, x=None, h0=None, c0=None):
        y, st = self.layer.forward(self.lx(x), self.state0(h0, c0), lengths=self.lengths)
        if self.batch_first:
            y = y.transpose(1, 0, 2)
        hn, cn = st if self.is_lstm else (st, None)
        s = np.sum(y * self.R1) + np.sum(hn * self.R2)
        if self.is_lstm:
            s += np.sum(cn * self.R3)
        return s

    def gradients(self):
        """(y, h_n, c_n, dx, dh0, dc0, grads) from forward + backward."""
        self.layer.zero_grad()
        y, st = self.layer.forward(self.lx(), self.state0(), lengths=self.lengths)
        dy = self.R1.transpose(1, 0, 2) if self.batch_first else self.R1
        dx, dst0 = self.layer.backward(dy, self.dstate())
        if self.batch_first:
            y, dx = y.transpose(1, 0, 2), dx.transpose(1, 0, 2)
        hn, cn = st if self.is_lstm else (st, None)
        if dst0 is None:
            dh0 = dc0 = None
        else:
            dh0, dc0 = dst0 if self.is_lstm else (dst0, None)
        grads = {k: np.array(v, copy=True) for k, v in self.layer.grads.items()}
        return y, hn, cn, dx, dh0, dc0, grads


def directional_check(f, base, g, rng, name, eps=1e-5, ndir=2):
    """central difference of f along random d vs sum(g*d)."""
    assert g is not None, name + ": gradient is None"
    assert g.shape == base.shape, "%s: gradient shape %s, expected %s" % (name, g.shape, base.shape)
    assert np.all(np.isfinite(g)), name
    for _ in range(ndir):
        d = rng.standard_normal(base.shape)
        fd = (f(base + eps * d) - f(base - eps * d)) / (2 * eps)
        an = float(np.sum(g * d))
        tol = 1e-7 + 1e-6 * abs(an)
        assert abs(fd - an) <= tol, (
            "%s: finite difference %.12g vs analytic %.12g (diff %.3g)" % (name, fd, an, fd - an))


def check_problem(p, seed=0):
    rng = np.random.default_rng(seed)
    y, hn, cn, dx, dh0, dc0, grads = p.gradients()
    layer = p.layer
    sd = layer.state_dict()
    assert set(grads) == set(sd), (sorted(grads), sorted(sd))

    # exact zeros past the lengths
    if p.lengths is not None:
        pad = np.arange(p.x.shape[0])[:, None] >= p.lengths[None, :]
        assert np.all(y[pad] == 0.0), "y past lengths not exactly 0"
        assert np.all(dx[pad] == 0.0), "dx past lengths not exactly 0"

    directional_check(lambda v: p.loss(x=v), p.x, dx, rng, "x")
    if p.h0 is None:
        assert dh0 is None and dc0 is None, "dstate0 must be None when state0 was None"
    else:
        directional_check(lambda v: p.loss(h0=v), p.h0, dh0, rng, "h0")
        if p.is_lstm:
            directional_check(lambda v: p.loss(c0=v), p.c0, dc0, rng, "c0")

    for name in sorted(sd):
        def f(v, name=name):
            d2 = dict(sd)
            d2[name] = v
            layer.load_state_dict(d2)
            try:
                return p.loss()
            finally:
                layer.load_state_dict(sd)
        directional_check(f, sd[name], grads[name], rng, name)


# ---------------------------------------------------------------- 1. random-direction checks

# T, B, I, H, L, bidirectional, use_lengths, use_state, bias
CASES = [
    (1, 1, 1, 1, 1, False, False, False, True),
    (4, 3, 2, 3, 1, False, True, True, True),
    (4, 3, 7, 5, 2, True, True, True, True),
    (4, 1, 7, 1, 1, True, True, True, True),     # B = 1, length < T
    (1, 3, 2, 5, 2, True, True, True, True),     # T = 1
    (4, 3, 1, 3, 2, False, True, True, False),   # no bias
    (4, 3, 2, 5, 2, True, False, False, True),   # no state given
    (4, 1, 1, 1, 2, True, False, True, True),    # all sizes 1 but T
]


def case_id(c):
    T, B, I, H, L, bd, ul, us, bias = c
    return "T%dB%dI%dH%dL%d%s%s%s%s" % (T, B, I, H, L, "bi" if bd else "",
                                       "-len" if ul else "", "-state" if us else "",
                                       "" if bias else "-nobias")


@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("mode", MODES)
def test_directional_gradients(mode, case):
    check_problem(Problem(mode, *case, seed=3, away_from_kink=True))


@pytest.mark.parametrize("mode", MODES)
def test_directional_gradients_batch_first(mode):
    check_problem(Problem(mode, 4, 3, 2, 3, 2, True, True, True, seed=5, batch_first=True,
                          away_from_kink=True))


@pytest.mark.parametrize("mode", MODES)
def test_batch_first_gradients_odd_sizes(mode):
    """The kernels write y (B, T, F) and read dy so (fr_desc.y_batch_first):
    T 7, B 5, I 1, H 5, one layer, lengths and initial states."""
    check_problem(Problem(mode, 7, 5, 1, 5, 1, False, True, True, seed=9, batch_first=True,
                          away_from_kink=True))


# ---------------------------------------------------------------- 2. parity with the reference

RTOL, ATOL = 1e-10, 1e-12


def check_against_reference(p, dropmasks=None, grads_etc=None):
    y, hn, cn, dx, dh0, dc0, grads = grads_etc if grads_etc is not None else p.gradients()
    ry, rhn, rcn, ctx = p.reference(dropmasks)
    rdx, rdh0, rdc0, rgrads = reference_backward(ctx, p.R1, p.R2, p.R3)
    close = lambda a, b, what: np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL,
                                                          err_msg=what)
    close(y, ry, "y")
    close(hn, rhn, "h_n")
    if p.is_lstm:
        close(cn, rcn, "c_n")
    close(dx, rdx, "dx")
    if p.h0 is not None:
        close(dh0, rdh0, "dh0")
        if p.is_lstm:
            close(dc0, rdc0, "dc0")
    assert set(grads) == set(rgrads)
    for k in rgrads:
        close(grads[k], rgrads[k], k)


def random_config(seed):
    rng = np.random.default_rng(seed)
    return dict(T=int(rng.integers(1, 8)), B=int(rng.integers(1, 6)),
                I=int(rng.integers(1, 9)), H=int(rng.integers(1, 9)),
                L=int(rng.integers(1, 4)), bd=bool(rng.integers(2)),
                use_len=bool(rng.integers(2)), use_state=bool(rng.integers(2)),
                bias=bool(rng.integers(4)))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("mode", MODES)
def test_matches_reference_random(mode, seed):
    c = random_config(seed)
    p = Problem(mode, c["T"], c["B"], c["I"], c["H"], c["L"], c["bd"], c["use_len"],
                c["use_state"], c["bias"], seed=seed)
    check_against_reference(p)
    # inference call gives the same outputs as the training forward
    y, st = p.layer(p.x, p.state0(), lengths=p.lengths)
    ry, rhn, rcn, _ = p.reference()
    np.testing.assert_allclose(y, ry, rtol=RTOL, atol=ATOL)
    hn, cn = st if p.is_lstm else (st, None)
    np.testing.assert_allclose(hn, rhn, rtol=RTOL, atol=ATOL)
    if p.is_lstm:
        np.testing.assert_allclose(cn, rcn, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("mode", MODES)
def test_matches_reference_larger(mode):
    """Sizes large enough to reach the threaded / blocked paths of the kernels."""
    p = Problem(mode, 6, 17, 33, 64, 2, True, True, True, seed=1)
    check_against_reference(p)


@pytest.mark.parametrize("mode", MODES)
def test_matches_reference_batch_first(mode):
    check_against_reference(Problem(mode, 5, 4, 3, 6, 2, True, True, True, seed=2,
                                    batch_first=True))


@pytest.mark.parametrize("mode", MODES)
def test_backward_accumulates_and_zero_grad(mode):
    p = Problem(mode, 4, 3, 2, 3, 2, True, True, True, seed=4)
    *_, g1 = p.gradients()
    # a second forward/backward without zero_grad doubles the gradients
    p.layer.forward(p.x, p.state0(), lengths=p.lengths)
    p.layer.backward(p.R1, p.dstate())
    for k, v in p.layer.grads.items():
        np.testing.assert_allclose(v, 2 * g1[k], rtol=1e-12, atol=1e-14, err_msg=k)
    p.layer.zero_grad()
    for k, v in p.layer.grads.items():
        assert np.all(v == 0), k


@pytest.mark.parametrize("mode", MODES)
def test_backward_without_dstate(mode):
    """dstate=None means zero gradients of h_n / c_n."""
    p = Problem(mode, 4, 3, 2, 3, 2, True, True, True, seed=6)
    p.R2 = np.zeros_like(p.R2)
    if p.is_lstm:
        p.R3 = np.zeros_like(p.R3)
    p.layer.zero_grad()
    p.layer.forward(p.x, p.state0(), lengths=p.lengths)
    dx, dst0 = p.layer.backward(p.R1)
    ry, rhn, rcn, ctx = p.reference()
    rdx, rdh0, rdc0, rgrads = reference_backward(ctx, p.R1)
    np.testing.assert_allclose(dx, rdx, rtol=RTOL, atol=ATOL)
    dh0 = dst0[0] if p.is_lstm else dst0
    np.testing.assert_allclose(dh0, rdh0, rtol=RTOL, atol=ATOL)
    if p.is_lstm:
        np.testing.assert_allclose(dst0[1], rdc0, rtol=RTOL, atol=ATOL)
    for k in rgrads:
        np.testing.assert_allclose(p.layer.grads[k], rgrads[k], rtol=RTOL, atol=ATOL, err_msg=k)


@pytest.mark.parametrize("mode", MODES)
def test_dropout_matches_reference_with_its_mask(mode):
    """Training forward with inter-layer dropout: with the mask the layer drew
    (read from its private training context), forward and backward match the
    reference with the same dropmasks."""
    T, B, I, H, L = 5, 3, 4, 3, 3
    p = Problem(mode, T, B, I, H, L, True, True, True, seed=8)
    p.layer = make_layer(mode, I, H, L, True, dropout=0.4, seed=8)
    p.layer.train()
    p.layer.zero_grad()
    y, st = p.layer.forward(p.x, p.state0(), lengths=p.lengths)
    ctx = getattr(p.layer, "_ctx", None)
    if not isinstance(ctx, dict) or ctx.get("mask") is None:
        pytest.skip("the layer does not expose its dropout mask")
    mask = np.array(ctx["mask"], dtype=np.float64, copy=True)
    assert mask.shape == (L - 1, T, B, 2 * H)
    assert np.any(mask == 0), "dropout=0.4 dropped nothing"
    dx, dst0 = p.layer.backward(p.R1, p.dstate())
    hn, cn = st if p.is_lstm else (st, None)
    dh0, dc0 = dst0 if p.is_lstm else (dst0, None)
    grads = {k: v.copy() for k, v in p.layer.grads.items()}
    check_against_reference(p, dropmasks=list(mask),
                            grads_etc=(y, hn, cn, dx, dh0, dc0, grads))
    # inference applies no dropout
    yi, _ = p.layer(p.x, p.state0(), lengths=p.lengths)
    ry, _, _, _ = p.reference()
    np.testing.assert_allclose(yi, ry, rtol=RTOL, atol=ATOL)
