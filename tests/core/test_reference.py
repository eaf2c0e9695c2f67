"""The NumPy reference (fastrnn/_reference.py) against torch and against
central differences.

The torch half skips when torch is not importable; the central-difference
half needs nothing but NumPy.
"""

import importlib.util
import os

import numpy as np
import pytest


def _load_reference():
    # The reference must be testable even when the compiled engine is not
    # built (then `import fastrnn` fails), so fall back to loading the file.
    try:
        from fastrnn import _reference
        return _reference
    except ImportError:
        path = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "fastrnn", "_reference.py")
        spec = importlib.util.spec_from_file_location("_fastrnn_reference", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod


ref = _load_reference()
reference_forward = ref.reference_forward
reference_backward = ref.reference_backward

MODES = ["RNN_TANH", "RNN_RELU", "LSTM", "GRU"]
RTOL, ATOL = 1e-9, 1e-12


# ---------------------------------------------------------------- helpers

def make_params(rng, mode, I, H, L, bidirectional, bias=True, scale=None):
    G = ref.num_gates(mode)
    D = 2 if bidirectional else 1
    scale = 1.0 / np.sqrt(H) if scale is None else scale
    params = {}
    for layer in range(L):
        In = I if layer == 0 else D * H
        for sfx in ("", "_reverse")[:D]:
            params["weight_ih_l%d%s" % (layer, sfx)] = rng.uniform(-scale, scale, (G * H, In))
            params["weight_hh_l%d%s" % (layer, sfx)] = rng.uniform(-scale, scale, (G * H, H))
            if bias:
                params["bias_ih_l%d%s" % (layer, sfx)] = rng.uniform(-scale, scale, G * H)
                params["bias_hh_l%d%s" % (layer, sfx)] = rng.uniform(-scale, scale, G * H)
    return params


def make_lengths(rng, T, B):
    lengths = rng.integers(1, T + 1, size=B)
    lengths[rng.integers(B)] = T          # torch's pad_packed needs no total_length then,
    return lengths                        # but we pass total_length anyway


# Each case: T, B, I, H, L, bidirectional, use_lengths, use_h0, bias
CASES = [
    (1, 1, 1, 1, 1, False, False, False, True),    # everything size 1
    (5, 3, 4, 3, 1, False, True, True, True),
    (6, 4, 3, 5, 2, True, True, True, True),
    (4, 1, 7, 2, 3, True, False, True, True),      # batch 1, three layers
    (7, 5, 2, 7, 2, False, True, False, True),
    (3, 2, 5, 1, 1, True, True, True, True),       # H = 1 bidirectional
    (1, 3, 2, 3, 2, True, True, True, True),       # T = 1
    (5, 3, 3, 4, 2, True, True, True, False),      # no bias
    (8, 6, 11, 13, 2, True, True, True, True),     # primes
]


def case_id(c):
    T, B, I, H, L, bd, ul, uh, bias = c
    return "T%dB%dI%dH%dL%d%s%s%s%s" % (T, B, I, H, L, "bi" if bd else "",
                                       "-len" if ul else "", "-h0" if uh else "",
                                       "" if bias else "-nobias")


# ---------------------------------------------------------------- torch half

def _torch():
    return pytest.importorskip("torch")


def torch_module(mode, I, H, L, bd, bias, params):
    torch = _torch()
    kw = dict(num_layers=L, bidirectional=bd, bias=bias, dtype=torch.float64)
    if mode == "LSTM":
        mod = torch.nn.LSTM(I, H, **kw)
    elif mode == "GRU":
        mod = torch.nn.GRU(I, H, **kw)
    else:
        mod = torch.nn.RNN(I, H, nonlinearity="tanh" if mode == "RNN_TANH" else "relu", **kw)
    names = dict(mod.named_parameters())
    assert set(names) == set(params), (sorted(names), sorted(params))
    with torch.no_grad():
        for k, v in params.items():
            assert tuple(names[k].shape) == v.shape, k
            names[k].copy_(torch.from_numpy(v))
    return mod


def torch_forward_backward(mod, mode, x, h0, c0, lengths, R1, R2, R3):
    """Runs mod on x (with pack_padded_sequence when lengths is given) and
    backprops loss = sum(y*R1) + sum(h_n*R2) + sum(c_n*R3)."""
    torch = _torch()
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    T = x.shape[0]
    xt = torch.tensor(x, requires_grad=True)
    h0t = None if h0 is None else torch.tensor(h0, requires_grad=True)
    c0t = None if c0 is None else torch.tensor(c0, requires_grad=True)
    if mode == "LSTM":
        hx = None if h0t is None else (h0t, c0t)
    else:
        hx = h0t
    inp = xt
    if lengths is not None:
        inp = pack_padded_sequence(xt, torch.tensor(lengths, dtype=torch.int64),
                                   enforce_sorted=False)
    out, st = mod(inp, hx)
    if lengths is not None:
        out, _ = pad_packed_sequence(out, total_length=T)
    if mode == "LSTM":
        hn, cn = st
    else:
        hn, cn = st, None
    loss = (out * torch.from_numpy(R1)).sum() + (hn * torch.from_numpy(R2)).sum()
    if cn is not None:
        loss = loss + (cn * torch.from_numpy(R3)).sum()
    for p in mod.parameters():
        p.grad = None
    loss.backward()
    res = {
        "y": out.detach().numpy(), "h_n": hn.detach().numpy(),
        "c_n": None if cn is None else cn.detach().numpy(),
        "dx": xt.grad.numpy(),
        "dh0": None if h0t is None else h0t.grad.numpy(),
        "dc0": None if c0t is None else c0t.grad.numpy(),
        "grads": {k: p.grad.numpy().copy() for k, p in mod.named_parameters()},
    }
    return res


def check_against_torch(mode, T, B, I, H, L, bd, use_len, use_h0, bias, seed=0):
    rng = np.random.default_rng(seed)
    D = 2 if bd else 1
    params = make_params(rng, mode, I, H, L, bd, bias)
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((D * L, B, H)) if use_h0 else None
    c0 = rng.standard_normal((D * L, B, H)) if (use_h0 and mode == "LSTM") else None
    lengths = make_lengths(rng, T, B) if use_len else None
    R1 = rng.standard_normal((T, B, D * H))
    R2 = rng.standard_normal((D * L, B, H))
    R3 = rng.standard_normal((D * L, B, H))

    mod = torch_module(mode, I, H, L, bd, bias, params)
    tr = torch_forward_backward(mod, mode, x, h0, c0, lengths, R1, R2, R3)

    y, h_n, c_n, ctx = reference_forward(mode, params, x, h0, c0, lengths=lengths,
                                         num_layers=L, bidirectional=bd)
    dx, dh0, dc0, grads = reference_backward(ctx, R1, R2, R3 if mode == "LSTM" else None)

    np.testing.assert_allclose(y, tr["y"], rtol=RTOL, atol=ATOL, err_msg="y")
    np.testing.assert_allclose(h_n, tr["h_n"], rtol=RTOL, atol=ATOL, err_msg="h_n")
    if mode == "LSTM":
        np.testing.assert_allclose(c_n, tr["c_n"], rtol=RTOL, atol=ATOL, err_msg="c_n")
    else:
        assert c_n is None
    if lengths is not None:
        pad = np.arange(T)[:, None] >= lengths[None, :]
        assert np.all(y[pad] == 0.0), "padding outputs must be exactly 0"
        assert np.all(dx[pad] == 0.0), "padding input gradients must be exactly 0"
    np.testing.assert_allclose(dx, tr["dx"], rtol=RTOL, atol=ATOL, err_msg="dx")
    if use_h0:
        np.testing.assert_allclose(dh0, tr["dh0"], rtol=RTOL, atol=ATOL, err_msg="dh0")
        if mode == "LSTM":
            np.testing.assert_allclose(dc0, tr["dc0"], rtol=RTOL, atol=ATOL, err_msg="dc0")
    assert set(grads) == set(params)
    for k in params:
        assert grads[k].shape == params[k].shape, k
        np.testing.assert_allclose(grads[k], tr["grads"][k], rtol=RTOL, atol=ATOL, err_msg=k)


@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("mode", MODES)
def test_matches_torch(mode, case):
    _torch()
    check_against_torch(mode, *case)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", range(4))
def test_matches_torch_random_configs(mode, seed):
    _torch()
    rng = np.random.default_rng(1000 + seed)
    T = int(rng.integers(1, 7))
    B = int(rng.integers(1, 6))
    I = int(rng.integers(1, 8))
    H = int(rng.integers(1, 8))
    L = int(rng.integers(1, 4))
    bd = bool(rng.integers(2))
    check_against_torch(mode, T, B, I, H, L, bd, bool(rng.integers(2)),
                        bool(rng.integers(2)), bool(rng.integers(4)), seed=seed)


@pytest.mark.parametrize("mode", MODES)
def test_full_lengths_equal_no_lengths(mode):
    rng = np.random.default_rng(3)
    T, B, I, H, L = 4, 3, 2, 3, 2
    params = make_params(rng, mode, I, H, L, True)
    x = rng.standard_normal((T, B, I))
    a = reference_forward(mode, params, x, num_layers=L, bidirectional=True)
    b = reference_forward(mode, params, x, lengths=[T] * B, num_layers=L, bidirectional=True)
    for u, v in zip(a[:3], b[:3]):
        if u is not None:
            np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("mode", MODES)
def test_dropmasks_match_stacked_torch_layers(mode):
    """dropmasks[l-1] multiplies the input of layer l: compare with single-
    layer torch modules stacked by hand with the same masks in between."""
    torch = _torch()
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    rng = np.random.default_rng(7)
    T, B, I, H, L, bd = 5, 3, 4, 3, 3, True
    D = 2
    params = make_params(rng, mode, I, H, L, bd)
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((D * L, B, H))
    c0 = rng.standard_normal((D * L, B, H))
    lengths = np.array([5, 2, 4])
    masks = [(rng.random((T, B, D * H)) > 0.3) / 0.7 for _ in range(L - 1)]
    R1 = rng.standard_normal((T, B, D * H))
    R2 = rng.standard_normal((D * L, B, H))
    R3 = rng.standard_normal((D * L, B, H))

    y, h_n, c_n, ctx = reference_forward(mode, params, x, h0, c0, lengths, L, bd, masks)
    dx, dh0, dc0, grads = reference_backward(ctx, R1, R2, R3 if mode == "LSTM" else None)

    xt = torch.tensor(x, requires_grad=True)
    h0t = torch.tensor(h0, requires_grad=True)
    c0t = torch.tensor(c0, requires_grad=True)
    inp, hs, cs, mods = xt, [], [], []
    for layer in range(L):
        sub = {k.replace("_l%d" % layer, "_l0"): v for k, v in params.items()
               if "_l%d" % layer in k}
        mod = torch_module(mode, I if layer == 0 else D * H, H, 1, bd, True, sub)
        mods.append(mod)
        if layer > 0:
            inp = inp * torch.from_numpy(masks[layer - 1])
        packed = pack_padded_sequence(inp, torch.tensor(lengths), enforce_sorted=False)
        hx = h0t[layer * D:(layer + 1) * D]
        if mode == "LSTM":
            hx = (hx, c0t[layer * D:(layer + 1) * D])
        out, st = mod(packed, hx)
        inp, _ = pad_packed_sequence(out, total_length=T)
        if mode == "LSTM":
            hs.append(st[0])
            cs.append(st[1])
        else:
            hs.append(st)
    hn = torch.cat(hs)
    loss = (inp * torch.from_numpy(R1)).sum() + (hn * torch.from_numpy(R2)).sum()
    if mode == "LSTM":
        cn = torch.cat(cs)
        loss = loss + (cn * torch.from_numpy(R3)).sum()
        np.testing.assert_allclose(c_n, cn.detach().numpy(), rtol=RTOL, atol=ATOL)
    loss.backward()
    np.testing.assert_allclose(y, inp.detach().numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(h_n, hn.detach().numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(dh0, h0t.grad.numpy(), rtol=RTOL, atol=ATOL)
    if mode == "LSTM":
        np.testing.assert_allclose(dc0, c0t.grad.numpy(), rtol=RTOL, atol=ATOL)
    for layer, mod in enumerate(mods):
        for k, p in mod.named_parameters():
            name = k.replace("_l0", "_l%d" % layer)
            np.testing.assert_allclose(grads[name], p.grad.numpy(), rtol=RTOL, atol=ATOL,
                                       err_msg=name)


# ---------------------------------------------------------------- no-torch half

def _loss(mode, params, x, h0, c0, lengths, L, bd, masks, R1, R2, R3):
    y, h_n, c_n, _ = reference_forward(mode, params, x, h0, c0, lengths, L, bd, masks)
    s = np.sum(y * R1) + np.sum(h_n * R2)
    if c_n is not None:
        s += np.sum(c_n * R3)
    return s


# T, B, I, H, L, bidirectional, use_lengths, use_masks, bias
GC_CASES = [
    (3, 2, 2, 2, 2, True, True, True, True),
    (4, 3, 1, 3, 1, False, True, False, True),
    (1, 1, 3, 1, 1, True, False, False, True),
    (3, 2, 2, 3, 2, False, False, True, False),
]


@pytest.mark.parametrize("case", GC_CASES, ids=lambda c: "T%dB%dI%dH%dL%d%s%s%s%s" % (
    c[0], c[1], c[2], c[3], c[4], "bi" if c[5] else "", "-len" if c[6] else "",
    "-mask" if c[7] else "", "" if c[8] else "-nobias"))
@pytest.mark.parametrize("mode", MODES)
def test_reference_central_differences(mode, case):
    """Every element of every gradient of the reference against a float64
    central difference of loss = sum(y*R1) + sum(h_n*R2) [+ sum(c_n*R3)]."""
    T, B, I, H, L, bd, use_len, use_masks, bias = case
    rng = np.random.default_rng(11)
    D = 2 if bd else 1
    params = make_params(rng, mode, I, H, L, bd, bias, scale=0.8)
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((D * L, B, H))
    c0 = rng.standard_normal((D * L, B, H)) if mode == "LSTM" else None
    lengths = make_lengths(rng, T, B) if use_len else None
    masks = ([(rng.random((T, B, D * H)) > 0.3) / 0.7 for _ in range(L - 1)]
             if use_masks else None)
    R1 = rng.standard_normal((T, B, D * H))
    R2 = rng.standard_normal((D * L, B, H))
    R3 = rng.standard_normal((D * L, B, H))

    y, h_n, c_n, ctx = reference_forward(mode, params, x, h0, c0, lengths, L, bd, masks)
    if mode == "RNN_RELU":
        # Stay away from the kink of relu: finite differences would cross it.
        pre = np.concatenate([c["pre"].ravel() for lay in ctx["layers"]
                              for d in lay["steps"] for (_, _, c) in d])
        assert np.min(np.abs(pre)) > 1e-4, "pick another seed"
    dx, dh0, dc0, grads = reference_backward(ctx, R1, R2, R3)

    wrt = {"x": (x, dx), "h0": (h0, dh0)}
    if mode == "LSTM":
        wrt["c0"] = (c0, dc0)
    for k in params:
        wrt[k] = (params[k], grads[k])
    eps = 1e-6
    f = lambda: _loss(mode, params, x, h0, c0, lengths, L, bd, masks, R1, R2, R3)
    for name, (arr, g) in wrt.items():
        assert g.shape == arr.shape, name
        num = np.zeros_like(arr)
        flat, nflat = arr.reshape(-1), num.reshape(-1)   # views: edits reach the inputs
        for j in range(flat.size):
            old = flat[j]
            flat[j] = old + eps
            fp = f()
            flat[j] = old - eps
            fm = f()
            flat[j] = old
            nflat[j] = (fp - fm) / (2 * eps)
        np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-7, err_msg=name)


def test_reference_rejects_bad_mode():
    with pytest.raises(ValueError):
        ref.num_gates("LSTMX")
