"""Zoneout, recurrent dropout and the layer-normalized LSTM (fastrnn.regularized,
fastrnn._regrun, src/portable/reg.c).

1. A NumPy reference of every cell (LSTM and GRU with zoneout and recurrent
   dropout, LayerNormLSTM) and of the layer stack, masks replayed from the
   documented draw order: training forward, inference and eval-mode forward.
2. float64 central-difference gradient checks (random directions) of every
   parameter, x, h0 and c0, masks fixed (the mask generator is re-seeded).
3. Parity with torch autograd (a small torch implementation written here) for
   values and gradients, LayerNormLSTM included.
4. zoneout = recurrent_dropout = 0 is the plain torch-parity layer; the
   regularized kernels without masks agree with the plain kernels.
5. Lengths, bidirectional, multi-layer, batch_first, step() == full call,
   thread-count invariance, seeded determinism, config and state dicts,
   bad input.

The tests re-seed `layer._dropout_rng` (private) to fix the masks.
"""
import json

import numpy as np
import pytest

import fastrnn as fr
from fastrnn.backends.cpu import _ext

EPS_LN = 1e-5


# ---------------------------------------------------------------- helpers

def make(kind, I, H, **kw):
    if kind == "LNLSTM":
        return fr.LayerNormLSTM(I, H, **kw)
    return getattr(fr, kind)(I, H, **kw)


def is_lstm(kind):
    return kind in ("LSTM", "LNLSTM")


def kernel_params(layer, store, l, d):
    """A layer-direction's parameters in kernel order, by their documented names."""
    n = f"l{l}{'_reverse' if d else ''}"
    if isinstance(layer, fr.LayerNormLSTM):
        return [store[f"weight_ih_{n}"], store[f"weight_hh_{n}"],
                store.get(f"bias_{n}"), store[f"ln_ih_weight_{n}"],
                store[f"ln_hh_weight_{n}"], store[f"ln_cell_weight_{n}"],
                store[f"ln_cell_bias_{n}"]]
    return [store[f"weight_ih_{n}"], store[f"weight_hh_{n}"],
            store.get(f"bias_ih_{n}"), store.get(f"bias_hh_{n}")]


def draw_masks(layer, T, B, seed, training=True):
    """The masks a training forward draws from default_rng(seed), in the
    documented order. Returns (zmasks[k], rmasks[k], dmasks[l])."""
    rng = np.random.default_rng(seed)
    L, D, H = layer.num_layers, layer.num_directions, layer.hidden_size
    zs, rs, ds = [], [], []
    for l in range(L):
        for _ in range(D):
            zm = rm = None
            if training and layer.zoneout > 0:
                if layer.training:
                    zm = (rng.random((T, B, H)) < layer.zoneout).astype(np.float64)
                else:
                    zm = np.full((T, B, H), layer.zoneout)
            if training and layer.training and layer.recurrent_dropout > 0:
                keep = 1 - layer.recurrent_dropout
                rm = (rng.random((B, H)) < keep).astype(np.float64) / keep
            zs.append(zm)
            rs.append(rm)
        dm = None
        if training and layer.training and layer.dropout > 0 and l < L - 1:
            keep = 1 - layer.dropout
            dm = (rng.random((T, B, D * H)) < keep).astype(np.float64) / keep
        ds.append(dm)
    return zs, rs, ds


def sig(v):
    return 1 / (1 + np.exp(-v))


def np_ln(v):
    m = v.mean(-1, keepdims=True)
    var = ((v - m) ** 2).mean(-1, keepdims=True)
    return (v - m) / np.sqrt(var + EPS_LN)


def np_layer(kind, x, w, h0, c0, zm, rm, lengths, reverse, pz):
    """NumPy reference of one layer and direction (src/include/fastrnn_reg.h's equations)."""
    T, B, _ = x.shape
    H = w[1].shape[1]
    h = h0.copy()
    c = c0.copy() if c0 is not None else None
    y = np.zeros((T, B, H))
    lengths = np.full(B, T) if lengths is None else lengths
    for s in range(T):
        t = T - 1 - s if reverse else s
        act = (t < lengths)[:, None]
        hd = h * rm if rm is not None else h
        c_new = None
        if kind == "LSTM":
            pre = x[t] @ w[0].T + hd @ w[1].T
            if w[2] is not None:
                pre = pre + w[2] + w[3]
            i, f, g, o = np.split(pre, 4, axis=1)
            c_new = sig(f) * c + sig(i) * np.tanh(g)
            hh = sig(o) * np.tanh(c_new)
        elif kind == "GRU":
            gx = x[t] @ w[0].T + (w[2] if w[2] is not None else 0)
            gh = hd @ w[1].T + (w[3] if w[3] is not None else 0)
            r = sig(gx[:, :H] + gh[:, :H])
            z = sig(gx[:, H:2 * H] + gh[:, H:2 * H])
            n = np.tanh(gx[:, 2 * H:] + r * gh[:, 2 * H:])
            hh = (1 - z) * n + z * h
        else:
            pre = np_ln(x[t] @ w[0].T) * w[3] + np_ln(hd @ w[1].T) * w[4]
            if w[2] is not None:
                pre = pre + w[2]
            i, f, g, o = np.split(pre, 4, axis=1)
            c_new = sig(f) * c + sig(i) * np.tanh(g)
            hh = sig(o) * np.tanh(np_ln(c_new) * w[5] + w[6])
        if zm is not None:
            hh = zm[t] * h + (1 - zm[t]) * hh
        elif pz:
            hh = pz * h + (1 - pz) * hh
        h = np.where(act, hh, h)
        if c is not None:
            c = np.where(act, c_new, c)
        y[t] = np.where(act, hh, 0)
    return y, h, c


def np_stack(layer, kind, x, h0, c0, lengths, masks, pz):
    """NumPy reference of the whole layer: x (T,B,I) time-major float64."""
    L, D, H = layer.num_layers, layer.num_directions, layer.hidden_size
    T, B, _ = x.shape
    zs, rs, ds = masks
    sd = {k: v.astype(np.float64) for k, v in layer.state_dict().items()}
    hn = np.zeros((L * D, B, H))
    cn = np.zeros((L * D, B, H))
    inp = x
    for l in range(L):
        ys = []
        for d in range(D):
            k = l * D + d
            h_init = h0[k] if h0 is not None else np.zeros((B, H))
            c_init = c0[k] if c0 is not None else np.zeros((B, H))
            y, h, c = np_layer(kind, inp, kernel_params(layer, sd, l, d), h_init,
                               c_init if is_lstm(kind) else None, zs[k], rs[k],
                               lengths, d == 1, pz)
            ys.append(y)
            hn[k] = h
            if c is not None:
                cn[k] = c
        inp = np.concatenate(ys, axis=2)
        if ds[l] is not None:
            inp = inp * ds[l]
    return inp, hn, (cn if is_lstm(kind) else None)


def torch_stack(layer, kind, x, h0, c0, lengths, masks, pz, params):
    """The same stack in torch (autograd), float64; params: dict of leaf tensors."""
    import torch
    import torch.nn.functional as F
    L, D, H = layer.num_layers, layer.num_directions, layer.hidden_size
    T, B, _ = x.shape
    zs, rs, ds = masks
    tt = lambda a: None if a is None else torch.as_tensor(a, dtype=torch.float64)
    lens = torch.as_tensor(np.full(B, T) if lengths is None else lengths)
    hns, cns = [], []
    inp = x
    for l in range(L):
        outs = []
        for d in range(D):
            k = l * D + d
            w = kernel_params(layer, params, l, d)
            zm, rm = tt(zs[k]), tt(rs[k])
            h = h0[k] if h0 is not None else torch.zeros(B, H, dtype=torch.float64)
            c = c0[k] if c0 is not None else torch.zeros(B, H, dtype=torch.float64)
            ys = [None] * T
            for s in range(T):
                t = T - 1 - s if d == 1 else s
                act = (t < lens)[:, None]
                hd = h * rm if rm is not None else h
                if kind == "LSTM":
                    pre = x_t = inp[t] @ w[0].T + hd @ w[1].T
                    if w[2] is not None:
                        pre = x_t + w[2] + w[3]
                    i, f, g, o = pre.chunk(4, 1)
                    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                    hh = torch.sigmoid(o) * torch.tanh(c_new)
                elif kind == "GRU":
                    gx = inp[t] @ w[0].T + (w[2] if w[2] is not None else 0)
                    gh = hd @ w[1].T + (w[3] if w[3] is not None else 0)
                    r = torch.sigmoid(gx[:, :H] + gh[:, :H])
                    z = torch.sigmoid(gx[:, H:2 * H] + gh[:, H:2 * H])
                    n = torch.tanh(gx[:, 2 * H:] + r * gh[:, 2 * H:])
                    hh = (1 - z) * n + z * h
                    c_new = c
                else:
                    pre = (F.layer_norm(inp[t] @ w[0].T, (4 * H,), w[3], None, EPS_LN)
                           + F.layer_norm(hd @ w[1].T, (4 * H,), w[4], None, EPS_LN))
                    if w[2] is not None:
                        pre = pre + w[2]
                    i, f, g, o = pre.chunk(4, 1)
                    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                    hh = torch.sigmoid(o) * torch.tanh(
                        F.layer_norm(c_new, (H,), w[5], w[6], EPS_LN))
                if zm is not None:
                    hh = zm[t] * h + (1 - zm[t]) * hh
                elif pz:
                    hh = pz * h + (1 - pz) * hh
                h = torch.where(act, hh, h)
                c = torch.where(act, c_new, c)
                ys[t] = torch.where(act, hh, torch.zeros_like(hh))
            outs.append(torch.stack(ys))
            hns.append(h)
            cns.append(c)
        inp = torch.cat(outs, 2)
        if ds[l] is not None:
            inp = inp * tt(ds[l])
    return inp, torch.stack(hns), torch.stack(cns)


class Problem:
    """A float64 layer, inputs, fixed masks and the loss
    sum(y*R1) + sum(h_n*R2) [+ sum(c_n*R3)]."""

    def __init__(self, kind, T=4, B=3, I=3, H=4, L=1, bd=False, use_len=True,
                 use_state=True, bias=True, zoneout=0.3, rdrop=0.3, dropout=0.0,
                 batch_first=False, seed=0, mask_seed=11):
        self.kind, self.bf = kind, batch_first
        D = 2 if bd else 1
        self.layer = make(kind, I, H, num_layers=L, bidirectional=bd, bias=bias,
                          zoneout=zoneout, recurrent_dropout=rdrop, dropout=dropout,
                          batch_first=batch_first, dtype="float64", seed=seed)
        rng = np.random.default_rng(100 + seed)
        self.x = rng.standard_normal((T, B, I))
        self.h0 = rng.standard_normal((L * D, B, H)) if use_state else None
        self.c0 = rng.standard_normal((L * D, B, H)) if use_state and is_lstm(kind) else None
        self.lengths = None
        if use_len:
            self.lengths = rng.integers(1, T + 1, size=B)
            self.lengths[0] = T
            if B > 1:
                self.lengths[1] = max(1, T - 2)
        self.R1 = rng.standard_normal((T, B, D * H))
        self.R2 = rng.standard_normal((L * D, B, H))
        self.R3 = rng.standard_normal((L * D, B, H))
        self.mask_seed = mask_seed

    def state0(self, h0=None, c0=None):
        h0 = self.h0 if h0 is None else h0
        c0 = self.c0 if c0 is None else c0
        if h0 is None:
            return None
        return (h0, c0) if is_lstm(self.kind) else h0

    def masks(self):
        return draw_masks(self.layer, self.x.shape[0], self.x.shape[1], self.mask_seed)

    def forward(self, x=None, h0=None, c0=None):
        x = self.x if x is None else x
        self.layer._dropout_rng = np.random.default_rng(self.mask_seed)
        xl = x.transpose(1, 0, 2) if self.bf else x
        y, st = self.layer.forward(xl, self.state0(h0, c0), lengths=self.lengths)
        if self.bf:
            y = y.transpose(1, 0, 2)
        hn, cn = st if is_lstm(self.kind) else (st, None)
        return y, hn, cn

    def loss(self, **kw):
        y, hn, cn = self.forward(**kw)
        s = np.sum(y * self.R1) + np.sum(hn * self.R2)
        return s + (np.sum(cn * self.R3) if cn is not None else 0)

    def gradients(self):
        self.layer.zero_grad()
        self.forward()
        dy = self.R1.transpose(1, 0, 2) if self.bf else self.R1
        dst = (self.R2, self.R3) if is_lstm(self.kind) else self.R2
        dx, dst0 = self.layer.backward(dy, dst)
        if self.bf:
            dx = dx.transpose(1, 0, 2)
        if dst0 is None:
            dh0 = dc0 = None
        else:
            dh0, dc0 = dst0 if is_lstm(self.kind) else (dst0, None)
        return dx, dh0, dc0, {k: v.copy() for k, v in self.layer.grads.items()}


def directional_check(f, base, g, rng, name, eps=1e-5, ndir=2):
    """Central difference of f along random d against sum(g*d)."""
    assert g is not None and g.shape == base.shape, name
    assert np.all(np.isfinite(g)), name
    for _ in range(ndir):
        d = rng.standard_normal(base.shape)
        fd = (f(base + eps * d) - f(base - eps * d)) / (2 * eps)
        an = float(np.sum(g * d))
        assert abs(fd - an) <= 1e-7 + 1e-6 * abs(an), (name, fd, an)


KINDS = ["LSTM", "GRU", "LNLSTM"]


# ---------------------------------------------------------------- 1. NumPy reference

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("cfg", [
    dict(L=1, bd=False),
    dict(L=2, bd=True, dropout=0.4),
    dict(L=1, bd=True, use_state=False, bias=False),
], ids=["L1", "L2bi-dropout", "bi-nostate-nobias"])
def test_forward_matches_numpy_reference(kind, cfg):
    p = Problem(kind, T=5, **cfg)
    ref = np_stack(p.layer, kind, p.x, p.h0, p.c0, p.lengths, p.masks(), 0.0)
    got = p.forward()
    for name, a, b in zip(("y", "h_n", "c_n"), got, ref):
        if b is None:
            assert a is None
        else:
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=name)
    zs = p.masks()[0]
    assert any(z is not None and 0 < z.mean() < 1 for z in zs)  # masks really mix


@pytest.mark.parametrize("kind", KINDS)
def test_inference_and_eval_forward_match_reference(kind):
    """Inference zoneout mixes with p; eval-mode forward() gives the same
    values (a mask full of p) and still supports backward()."""
    p = Problem(kind, T=5, L=2, bd=True, dropout=0.5, zoneout=0.25, rdrop=0.5)
    layer = p.layer
    none = ([None] * 4, [None] * 4, [None, None])
    ref = np_stack(layer, kind, p.x, p.h0, p.c0, p.lengths, none, 0.25)
    y, st = layer(p.x, p.state0(), lengths=p.lengths)
    np.testing.assert_allclose(y, ref[0], rtol=1e-12, atol=1e-12)
    hn = st[0] if is_lstm(kind) else st
    np.testing.assert_allclose(hn, ref[1], rtol=1e-12, atol=1e-12)
    layer.eval()
    y2, _ = layer.forward(p.x, p.state0(), lengths=p.lengths)
    np.testing.assert_array_equal(y, y2)
    dx, _ = layer.backward(np.ones_like(y2))
    assert dx.shape == p.x.shape and np.all(np.isfinite(dx))


def test_zoneout_keeps_previous_state_where_mask_is_one():
    p = Problem("LSTM", T=6, B=4, H=8, use_len=False, zoneout=0.5, rdrop=0.0)
    y, _, _ = p.forward()
    zm = p.masks()[0][0].astype(bool)
    prev = np.concatenate([p.h0, y[:-1]])
    assert zm.any() and (~zm).any()
    np.testing.assert_array_equal(y[zm], prev[zm])
    assert np.all(y[~zm] != prev[~zm])


# ---------------------------------------------------------------- 2. central differences

GRAD_CASES = [
    dict(T=4, B=3, L=1, bd=False),
    dict(T=4, B=3, L=2, bd=True, dropout=0.3),
    dict(T=3, B=2, L=1, bd=True, use_state=False, bias=False),
    dict(T=4, B=2, L=1, bd=False, zoneout=0.0, rdrop=0.5),
    dict(T=4, B=3, L=1, bd=False, zoneout=0.5, rdrop=0.0, batch_first=True),
    dict(T=1, B=1, I=1, H=1, L=1, bd=False, use_len=False),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", GRAD_CASES, ids=lambda c: "-".join(
    f"{k}{int(v) if isinstance(v, bool) else v}" for k, v in c.items()))
def test_central_difference_gradients(kind, case):
    p = Problem(kind, **case)
    rng = np.random.default_rng(5)
    dx, dh0, dc0, grads = p.gradients()
    layer = p.layer
    sd = layer.state_dict()
    assert set(grads) == set(sd)
    if p.lengths is not None:
        pad = np.arange(p.x.shape[0])[:, None] >= p.lengths[None, :]
        assert np.all(dx[pad] == 0.0)
    directional_check(lambda v: p.loss(x=v), p.x, dx, rng, "x")
    if p.h0 is None:
        assert dh0 is None and dc0 is None
    else:
        directional_check(lambda v: p.loss(h0=v), p.h0, dh0, rng, "h0")
        if is_lstm(kind):
            directional_check(lambda v: p.loss(c0=v), p.c0, dc0, rng, "c0")
    for name in sorted(sd):
        def f(v, name=name):
            layer.params[name][...] = v
            try:
                return p.loss()
            finally:
                layer.params[name][...] = sd[name]
        directional_check(f, sd[name], grads[name], rng, name)


def test_gradients_accumulate_and_zero():
    p = Problem("LNLSTM")
    _, _, _, g1 = p.gradients()
    p.forward()
    p.layer.backward(p.R1, (p.R2, p.R3))
    for k, g in p.layer.grads.items():
        np.testing.assert_allclose(g, 2 * g1[k], rtol=1e-12, atol=1e-14)
    names = [n for n, _, _ in p.layer.parameters()]
    assert names == list(p.layer.state_dict())
    for n, prm, grad in p.layer.parameters():
        assert prm is p.layer.params[n] and grad is p.layer.grads[n]
    p.layer.zero_grad()
    assert all(np.all(g == 0) for g in p.layer.grads.values())


# ---------------------------------------------------------------- 3. torch autograd

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("cfg", [
    dict(L=1, bd=False),
    dict(L=2, bd=True, dropout=0.3),
    dict(L=2, bd=False, bias=False, use_state=False),
], ids=["L1", "L2bi", "L2-nobias-nostate"])
def test_values_and_gradients_match_torch(kind, cfg):
    torch = pytest.importorskip("torch")
    p = Problem(kind, T=5, B=3, I=4, H=5, **cfg)
    dx, dh0, dc0, grads = p.gradients()
    y, hn, cn = p.forward()
    params = {k: torch.tensor(v, requires_grad=True) for k, v in p.layer.state_dict().items()}
    x = torch.tensor(p.x, requires_grad=True)
    h0 = None if p.h0 is None else torch.tensor(p.h0, requires_grad=True)
    c0 = None if p.c0 is None else torch.tensor(p.c0, requires_grad=True)
    ty, thn, tcn = torch_stack(p.layer, kind, x, h0, c0, p.lengths, p.masks(), 0.0, params)
    loss = (ty * torch.tensor(p.R1)).sum() + (thn * torch.tensor(p.R2)).sum()
    if is_lstm(kind):
        loss = loss + (tcn * torch.tensor(p.R3)).sum()
    loss.backward()
    close = dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(y, ty.detach().numpy(), **close)
    np.testing.assert_allclose(hn, thn.detach().numpy(), **close)
    if is_lstm(kind):
        np.testing.assert_allclose(cn, tcn.detach().numpy(), **close)
    np.testing.assert_allclose(dx, x.grad.numpy(), **close)
    if h0 is not None:
        np.testing.assert_allclose(dh0, h0.grad.numpy(), **close)
        if c0 is not None:
            np.testing.assert_allclose(dc0, c0.grad.numpy(), **close)
    for k, t in params.items():
        np.testing.assert_allclose(grads[k], t.grad.numpy(), err_msg=k, **close)


def test_layernorm_lstm_float32_close_to_torch():
    torch = pytest.importorskip("torch")
    layer = fr.LayerNormLSTM(6, 16, zoneout=0.2, seed=4)
    for k, v in layer.params.items():  # move the gains and shifts off 1 and 0
        if k.startswith("ln_"):
            v += np.random.default_rng(len(k)).uniform(-0.3, 0.3, v.shape).astype(np.float32)
    x = np.random.default_rng(0).standard_normal((7, 4, 6)).astype(np.float32)
    lengths = np.array([7, 5, 2, 7])
    y, (hn, cn) = layer(x, lengths=lengths)
    params = {k: torch.tensor(v.astype(np.float64)) for k, v in layer.state_dict().items()}
    none = ([None], [None], [None])
    ty, thn, tcn = torch_stack(layer, "LNLSTM", torch.tensor(x.astype(np.float64)),
                               None, None, lengths, none, 0.2, params)
    np.testing.assert_allclose(y, ty.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(cn, tcn.numpy(), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- 4. zoneout = recurrent dropout = 0

@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_zero_regularization_is_the_plain_layer(kind):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 3, 5)).astype(np.float32)
    a = make(kind, 5, 7, num_layers=2, bidirectional=True, seed=2)
    b = make(kind, 5, 7, num_layers=2, bidirectional=True, seed=2,
             zoneout=0.0, recurrent_dropout=0.0)
    assert not b._regularized
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    ya, _ = a(x, lengths=[6, 2, 4])
    yb, _ = b(x, lengths=[6, 2, 4])
    np.testing.assert_array_equal(ya, yb)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_regularized_kernels_without_masks_match_plain_kernels(kind):
    """The regularized kernels with no zoneout and no dropout compute torch's
    cells: forced onto a plain layer they agree with the plain kernels."""
    rng = np.random.default_rng(1)
    layer = make(kind, 4, 6, num_layers=2, bidirectional=True, dtype="float64", seed=3)
    x = rng.standard_normal((5, 3, 4))
    h0 = rng.standard_normal((4, 3, 6))
    c0 = rng.standard_normal((4, 3, 6))
    st = (h0, c0) if kind == "LSTM" else h0
    lengths = np.array([5, 1, 3])
    dy = rng.standard_normal((5, 3, 12))
    y, s = layer.forward(x, st, lengths=lengths)
    dx, ds = layer.backward(dy, s)
    plain = {k: v.copy() for k, v in layer.grads.items()}
    layer.zero_grad()
    layer.zoneout = 1e-300  # routes to the regularized kernels; no mask in eval
    layer.eval()
    y2, s2 = layer.forward(x, st, lengths=lengths)
    dx2, ds2 = layer.backward(dy, s2)
    close = dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y2, y, **close)
    np.testing.assert_allclose(dx2, dx, **close)
    for a, b in zip(np.atleast_1d(ds2), np.atleast_1d(ds)) if kind == "GRU" else zip(ds2, ds):
        np.testing.assert_allclose(a, b, **close)
    for k in plain:
        np.testing.assert_allclose(layer.grads[k], plain[k], err_msg=k, **close)


def test_recurrent_dropout_only_is_plain_in_inference():
    x = np.random.default_rng(2).standard_normal((6, 3, 5)).astype(np.float32)
    a = fr.LSTM(5, 7, seed=2)
    b = fr.LSTM(5, 7, seed=2, recurrent_dropout=0.5)
    np.testing.assert_allclose(b(x)[0], a(x)[0], rtol=1e-5, atol=1e-6)
    b.train()
    y1, _ = b.forward(x)
    assert not np.allclose(y1, a(x)[0], atol=1e-3)  # training applies the masks


# ---------------------------------------------------------------- 5. lengths, step, threads, seeds

@pytest.mark.parametrize("kind", KINDS)
def test_lengths_match_truncated_sequences(kind):
    layer = make(kind, 3, 5, num_layers=2, bidirectional=True, zoneout=0.3,
                 recurrent_dropout=0.2, dtype="float64", seed=1)
    rng = np.random.default_rng(3)
    T, B = 6, 4
    x = rng.standard_normal((T, B, 3))
    lengths = np.array([6, 3, 1, 4])
    y, st = layer(x, lengths=lengths)
    hn = st[0] if is_lstm(kind) else st
    for b in range(B):
        n = lengths[b]
        assert np.all(y[n:, b] == 0.0)
        yb, sb = layer(x[:n, b:b + 1])
        np.testing.assert_allclose(y[:n, b], yb[:, 0], rtol=1e-12, atol=1e-13)
        hb = sb[0] if is_lstm(kind) else sb
        np.testing.assert_allclose(hn[:, b], hb[:, 0], rtol=1e-12, atol=1e-13)
        if is_lstm(kind):
            np.testing.assert_allclose(st[1][:, b], sb[1][:, 0], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", KINDS)
def test_step_equals_full_inference_call(kind, dtype):
    # to float rounding: the full call projects all T*B input rows in one GEMM,
    # a step only B rows, and a BLAS may order a row's sums by the GEMM's size
    layer = make(kind, 4, 6, num_layers=2, zoneout=0.3, recurrent_dropout=0.4,
                 dropout=0.5, seed=7, dtype=dtype)
    x = np.random.default_rng(4).standard_normal((6, 3, 4)).astype(dtype)
    close = dict(rtol=1e-5, atol=1e-6) if dtype == "float32" else dict(rtol=1e-13, atol=1e-14)
    y, st = layer(x)
    state, ys = None, []
    for t in range(6):
        yt, state = layer.step(x[t], state)
        ys.append(yt)
    np.testing.assert_allclose(np.stack(ys), y, **close)
    for a, b in zip(state, st) if is_lstm(kind) else [(state, st)]:
        np.testing.assert_allclose(a, b, **close)
    with pytest.raises(ValueError, match="bidirectional"):
        make(kind, 4, 6, bidirectional=True, zoneout=0.1).step(x[0])


@pytest.mark.parametrize("kind", KINDS)
def test_thread_count_does_not_change_bits(kind):
    # B * G * H >= 16384 so the per-step passes really run on several threads
    layer = make(kind, 32, 64, num_layers=2, bidirectional=True, zoneout=0.2,
                 recurrent_dropout=0.2, seed=5)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 64, 32)).astype(np.float32)
    lengths = rng.integers(1, 6, size=64)
    dy = rng.standard_normal((5, 64, 128)).astype(np.float32)
    out = []
    try:
        for n in (1, 2):
            fr.set_num_threads(n)
            layer.zero_grad()
            layer._dropout_rng = np.random.default_rng(9)
            y, _ = layer.forward(x, lengths=lengths)
            dx, _ = layer.backward(dy)
            yi, _ = layer(x, lengths=lengths)
            out.append([y, dx, yi] + [g.copy() for g in layer.grads.values()])
    finally:
        fr.set_num_threads(None)
    for a, b in zip(*out):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("kind", KINDS)
def test_seeded_determinism(kind):
    x = np.random.default_rng(0).standard_normal((5, 3, 4)).astype(np.float32)

    def run(seed):
        layer = make(kind, 4, 6, num_layers=2, zoneout=0.3, recurrent_dropout=0.3,
                     dropout=0.3, seed=seed)
        y1, _ = layer.forward(x)
        y2, _ = layer.forward(x)  # the masks move on between calls
        return layer.state_dict(), y1, y2

    a, b, c = run(3), run(3), run(4)
    for k in a[0]:
        np.testing.assert_array_equal(a[0][k], b[0][k])
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[2], b[2])
    assert not np.array_equal(a[1], a[2])
    assert not np.array_equal(a[1], c[1])


def test_layernorm_lstm_parameters_and_init():
    layer = fr.LayerNormLSTM(3, 4, num_layers=2, bidirectional=True, seed=0)
    sd = layer.state_dict()
    stems = ["weight_ih", "weight_hh", "bias", "ln_ih_weight", "ln_hh_weight",
             "ln_cell_weight", "ln_cell_bias"]
    expected = [f"{s}_l{l}{sfx}" for l in range(2) for sfx in ("", "_reverse") for s in stems]
    assert list(sd) == expected
    assert sd["weight_ih_l0"].shape == (16, 3) and sd["weight_ih_l1"].shape == (16, 8)
    assert sd["ln_cell_weight_l1_reverse"].shape == (4,)
    k = 1 / np.sqrt(4)
    assert np.all(np.abs(sd["weight_hh_l0"]) <= k) and np.std(sd["weight_hh_l0"]) > 0.1
    assert np.all(sd["ln_ih_weight_l0"] == 1) and np.all(sd["ln_cell_bias_l1"] == 0)
    assert all(v.dtype == np.float32 for v in sd.values())
    nob = fr.LayerNormLSTM(3, 4, bias=False)
    assert "bias_l0" not in nob.state_dict() and "ln_cell_bias_l0" in nob.state_dict()
    other = fr.LayerNormLSTM(3, 4, num_layers=2, bidirectional=True, seed=1)
    other.load_state_dict(sd)
    x = np.ones((2, 1, 3), np.float32)
    np.testing.assert_array_equal(other(x)[0], layer(x)[0])
    with pytest.raises(ValueError, match="missing keys: ln_hh_weight_l0"):
        bad = dict(sd)
        del bad["ln_hh_weight_l0"]
        other.load_state_dict(bad)
    with pytest.raises(ValueError, match="wrong shapes"):
        other.load_state_dict({**sd, "ln_cell_bias_l0": np.zeros(5)})


@pytest.mark.parametrize("kind", KINDS)
def test_get_config_round_trip(kind):
    layer = make(kind, 3, 4, num_layers=2, bidirectional=True, zoneout=0.1,
                 recurrent_dropout=0.2, dropout=0.3, batch_first=True,
                 dtype="float64", seed=np.int64(5))
    cfg = json.loads(json.dumps(layer.get_config()))
    assert cfg["zoneout"] == 0.1 and cfg["recurrent_dropout"] == 0.2 and cfg["seed"] == 5
    twin = type(layer)(**cfg)
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(twin.state_dict()[k], v)
    assert "zoneout=0.1" in repr(layer)
    assert "zoneout" not in fr.RNN(3, 4).get_config()


# ---------------------------------------------------------------- 6. bad input

@pytest.mark.parametrize("kind", KINDS)
def test_bad_arguments(kind):
    for bad, exc in ((1.0, ValueError), (-0.1, ValueError), ("0.1", TypeError),
                     (True, TypeError), (None, TypeError)):
        with pytest.raises(exc, match="zoneout"):
            make(kind, 3, 4, zoneout=bad)
        with pytest.raises(exc, match="recurrent_dropout"):
            make(kind, 3, 4, recurrent_dropout=bad)
    layer = make(kind, 3, 4, zoneout=0.2, recurrent_dropout=0.2)
    x = np.zeros((5, 2, 3), np.float32)
    before = x.copy()
    with pytest.raises(ValueError, match="input_size"):
        layer(np.zeros((5, 2, 4)))
    with pytest.raises(ValueError, match="lengths"):
        layer(x, lengths=[0, 5])
    with pytest.raises(ValueError, match="lengths"):
        layer(x, lengths=[1, 2, 3])
    with pytest.raises((ValueError, TypeError), match="state"):
        layer(x, np.zeros((1, 3, 4)))
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(np.zeros((5, 2, 4)))
    layer.forward(x)
    with pytest.raises(ValueError, match="dy"):
        layer.backward(np.zeros((5, 2, 5)))
    with pytest.raises(TypeError, match="x"):
        layer(np.array([["a"]]))
    np.testing.assert_array_equal(x, before)


def test_kernel_boundary_checks():
    H, I = 4, 3
    w = [np.zeros((16, I)), np.zeros((16, H)), None, np.ones(16), np.ones(16),
         np.ones(H), np.zeros(H)]
    x = np.zeros((2, 2, I))
    y = np.zeros((2, 2, H))
    lnl, gru = _ext.REG_CELLS["LNLSTM"], _ext.REG_CELLS["GRU"]
    hn, cn, cache = _ext.reg_forward(lnl, x, w, None, None, None, None, y, 0, None,
                                     False, 0.0, True, 1)
    assert hn.shape == (2, H) and cache.ndim == 1
    with pytest.raises(TypeError, match="dtype"):
        _ext.reg_forward(lnl, x.astype(np.float32), w, None, None, None, None, y, 0, None,
                         False, 0.0, False, 1)
    with pytest.raises(ValueError, match="w\\[3\\]: required"):
        _ext.reg_forward(lnl, x, w[:3] + [None] + w[4:], None, None, None, None, y, 0, None,
                         False, 0.0, False, 1)
    with pytest.raises(ValueError, match="columns"):
        _ext.reg_forward(lnl, x, w, None, None, None, None, y, 2, None, False, 0.0, False, 1)
    with pytest.raises(ValueError, match="training"):
        _ext.reg_forward(lnl, x, w, None, None, np.zeros((2, 2, H)), None, y, 0, None,
                         False, 0.0, False, 1)
    with pytest.raises(ValueError, match="zoneout"):
        _ext.reg_forward(lnl, x, w, None, None, None, None, y, 0, None, False, 1.5, False, 1)
    with pytest.raises(ValueError, match="lengths"):
        _ext.reg_forward(lnl, x, w, None, None, None, None, y, 0, np.array([3, 1]),
                         False, 0.0, False, 1)
    gw = [np.zeros((12, I)), np.zeros((12, H)), np.zeros(12), None]
    with pytest.raises(ValueError, match="both biases"):
        _ext.reg_forward(gru, x, gw, None, None, None, None, y, 0, None, False, 0.0, False, 1)
    with pytest.raises(ValueError, match="cache"):
        dw = [np.zeros_like(a) if a is not None else None for a in w]
        _ext.reg_backward(lnl, x, w, dw, None, None, None, False, cache[:-1], y, 0,
                          None, None, None, False, False, 1)


def test_threads_mixing_plain_and_regularized_layers():
    """The regularized kernels run on the plain ones' GEMMs and BLAS thread
    pin (one module, one BLAS state): plain and regularized kernels in
    parallel Python threads give the bits of a serial run and leave the
    BLAS's thread count as it was."""
    from concurrent.futures import ThreadPoolExecutor
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from fastrnn.backends.cpu import threads as _threads

    def blas_threads():
        return [i["num_threads"] for i in threadpoolctl.threadpool_info()
                if i["internal_api"] == "openblas" and "64_" not in i["filepath"]]

    layers = [fr.LSTM(16, 32, seed=0), fr.LayerNormLSTM(16, 32, zoneout=0.1, seed=1),
              fr.GRU(16, 32, recurrent_dropout=0.2, seed=2)]
    x = np.random.default_rng(0).standard_normal((6, 4, 16)).astype(np.float32)
    jobs = [layers[i % 3] for i in range(12)]
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        before = blas_threads()
        serial = [lay(x)[0] for lay in jobs]
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(lambda lay: lay(x)[0], jobs))
        if _threads.BLAS_PINNED:
            assert blas_threads() == before
    for a, b in zip(serial, got):
        assert a.tobytes() == b.tobytes()
