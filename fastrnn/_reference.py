"""Plain NumPy reference of torch.nn.RNN / LSTM / GRU, forward and backward.

This module is the readable specification of what the fast kernels compute and
a test oracle that needs no torch. It is written for clarity, not speed: one
Python loop over time steps, one over layers and one over directions.

Shapes (the letters used everywhere in fastrnn):
    T time steps, B batch, I input size, H hidden size,
    L layers, D directions (2 when bidirectional), G gates
    (1 for RNN, 4 for LSTM: i,f,g,o, 3 for GRU: r,z,n).
    Sequences are time-major: x (T,B,I), y (T,B,D*H).
    h0, c0, h_n, c_n are (D*L,B,H); slot k = layer*D + direction.

Parameters use torch's names and shapes, for layer l and direction suffix
sfx ("" forward, "_reverse" backward):
    weight_ih_l{l}{sfx} (G*H, In)   In = I for l == 0, D*H above
    weight_hh_l{l}{sfx} (G*H, H)
    bias_ih_l{l}{sfx}   (G*H,)      optional (absent = layer without bias)
    bias_hh_l{l}{sfx}   (G*H,)      optional

Cell equations (exactly torch's), with a = W_ih x + b_ih and b = W_hh h + b_hh:
    RNN_TANH  h' = tanh(a + b)
    RNN_RELU  h' = relu(a + b)
    LSTM      i,f,g,o = sig, sig, tanh, sig of the four H-blocks of a + b
              c' = f*c + i*g,   h' = o*tanh(c')
    GRU       r = sig(a_r + b_r), z = sig(a_z + b_z)
              n = tanh(a_n + r*b_n)          (b_hn inside the reset product)
              h' = (1-z)*n + z*h
    GRU with linear_before_reset=False (ONNX linear_before_reset=0, Keras
    reset_after=False): r and z as above, then
              n = tanh(a_n + W_hn (r*h) + b_hn)

Clip (ONNX `clip` attribute, clip > 0): every gate pre-activation v (the
argument of each sigmoid/tanh/relu above, not the LSTM cell state) is clamped
to [-clip, clip] first; its gradient is 0 where v was outside.

Variable lengths (what torch gives with pack_padded_sequence(enforce_sorted=
False) and pad_packed_sequence): step t of sequence b is active iff
t < lengths[b]. An inactive step keeps the state and outputs exactly 0. So the
forward direction ends with the state at the last valid step, and the reverse
direction, which walks t = T-1 .. 0, starts from h0 at t = lengths[b]-1.

Inter-layer dropout: dropmasks[l-1] (T,B,D*H), already scaled by 1/(1-p), is
multiplied into the input of layer l (l >= 1).
"""

import numpy as np

from ._cells import GATES

__all__ = ["MODES", "num_gates", "param_names", "reference_forward",
           "reference_backward"]

MODES = ("RNN_TANH", "RNN_RELU", "LSTM", "GRU")

def num_gates(mode):
    """Number of gates G of a cell kind the reference implements."""
    if mode not in MODES:
        raise ValueError("mode must be one of %s, got %r" % (MODES, mode))
    return GATES[mode]


def param_names(num_layers=1, bidirectional=False, bias=True):
    """torch's parameter names, in torch's order."""
    names = []
    for layer in range(num_layers):
        for sfx in ("", "_reverse") if bidirectional else ("",):
            names += ["weight_ih_l%d%s" % (layer, sfx), "weight_hh_l%d%s" % (layer, sfx)]
            if bias:
                names += ["bias_ih_l%d%s" % (layer, sfx), "bias_hh_l%d%s" % (layer, sfx)]
    return names


def _sigmoid(v):
    # Two branches so that neither overflows for large |v|.
    out = np.empty_like(v)
    pos = v >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-v[pos]))
    e = np.exp(v[~pos])
    out[~pos] = e / (1.0 + e)
    return out


# --------------------------------------------------------------------------
# One cell step, forward and backward. Each forward returns (h', c' or None,
# cache); each backward takes the cache and the gradients of h' (and c') and
# returns the gradients of the pre-activations on the input side (dgi, (B,G*H))
# and on the hidden side (dgh, (B,G*H)) together with the part of dh / dc that
# does not go through W_hh. For RNN and LSTM dgi == dgh; for GRU they differ
# only in the n block (r multiplies the hidden-side n pre-activation).
# The weight gradient of W_hh is dgh^T @ hin, where hin is h_prev, except in
# the n block of the reset-first GRU, where it is r*h_prev (cache["rh"]).
# --------------------------------------------------------------------------

def _clip(v, clip):
    """ONNX clip of a pre-activation: (clamped v, derivative mask)."""
    if not clip:
        return v, 1.0
    return np.clip(v, -clip, clip), ((v >= -clip) & (v <= clip)).astype(v.dtype)


def _cell_forward(mode, gi, h, c, w_hh, b_hh, lbr=True, clip=None):
    """gi = W_ih x + b_ih (B,G*H); h, c the previous state."""
    H = h.shape[1]
    if mode == "GRU" and not lbr:
        # reset first: n = tanh(a_n + W_hn (r*h) + b_hn)
        gh = h @ w_hh[:2 * H].T
        if b_hh is not None:
            gh = gh + b_hh[:2 * H]
        r, mr = _clip(gi[:, :H] + gh[:, :H], clip)
        z, mz = _clip(gi[:, H:2 * H] + gh[:, H:], clip)
        r, z = _sigmoid(r), _sigmoid(z)
        rh = r * h
        ghn = rh @ w_hh[2 * H:].T
        if b_hh is not None:
            ghn = ghn + b_hh[2 * H:]
        n, mn = _clip(gi[:, 2 * H:] + ghn, clip)
        n = np.tanh(n)
        hn = (1.0 - z) * n + z * h
        return hn, None, {"r": r, "z": z, "n": n, "rh": rh, "h": h,
                          "m": (mr, mz, mn)}
    gh = h @ w_hh.T
    if b_hh is not None:
        gh = gh + b_hh
    if mode == "RNN_TANH":
        pre, m = _clip(gi + gh, clip)
        hn = np.tanh(pre)
        return hn, None, {"hn": hn, "m": m}
    if mode == "RNN_RELU":
        pre, m = _clip(gi + gh, clip)
        hn = np.maximum(pre, 0.0)
        return hn, None, {"pre": pre, "m": m}
    if mode == "LSTM":
        pre, m = _clip(gi + gh, clip)
        i = _sigmoid(pre[:, 0 * H:1 * H])
        f = _sigmoid(pre[:, 1 * H:2 * H])
        g = np.tanh(pre[:, 2 * H:3 * H])
        o = _sigmoid(pre[:, 3 * H:4 * H])
        cn = f * c + i * g
        tc = np.tanh(cn)
        hn = o * tc
        return hn, cn, {"i": i, "f": f, "g": g, "o": o, "c": c, "tc": tc, "pre": pre,
                        "m": m}
    if mode == "GRU":
        r, mr = _clip(gi[:, 0 * H:1 * H] + gh[:, 0 * H:1 * H], clip)
        z, mz = _clip(gi[:, 1 * H:2 * H] + gh[:, 1 * H:2 * H], clip)
        r, z = _sigmoid(r), _sigmoid(z)
        ghn = gh[:, 2 * H:3 * H]
        n, mn = _clip(gi[:, 2 * H:3 * H] + r * ghn, clip)
        n = np.tanh(n)
        hn = (1.0 - z) * n + z * h
        return hn, None, {"r": r, "z": z, "n": n, "ghn": ghn, "h": h,
                          "m": (mr, mz, mn)}
    raise ValueError("unknown mode %r" % (mode,))


def _cell_backward(mode, cache, dhn, dcn, w_hh=None):
    """Returns (dgi, dgh, dh_direct, dc_prev); the full dh_prev is
    dh_direct + dgh @ W_hh (reset-first GRU: dgh[:, :2H] @ W_hh[:2H], its n
    block's path being in dh_direct)."""
    if mode == "RNN_TANH":
        hn = cache["hn"]
        da = dhn * (1.0 - hn * hn) * cache["m"]       # tanh' = 1 - tanh^2
        return da, da, 0.0, None
    if mode == "RNN_RELU":
        da = dhn * (cache["pre"] > 0) * cache["m"]    # relu'(0) = 0, as torch
        return da, da, 0.0, None
    if mode == "LSTM":
        i, f, g, o, c, tc = (cache[k] for k in ("i", "f", "g", "o", "c", "tc"))
        do = dhn * tc                                 # h' = o * tanh(c')
        dc = dcn + dhn * o * (1.0 - tc * tc)
        di = dc * g                                   # c' = f*c + i*g
        df = dc * c
        dg = dc * i
        dc_prev = dc * f
        da = np.concatenate([di * i * (1.0 - i),      # sigmoid' = s(1-s)
                             df * f * (1.0 - f),
                             dg * (1.0 - g * g),
                             do * o * (1.0 - o)], axis=1) * cache["m"]
        return da, da, 0.0, dc_prev
    if mode == "GRU":
        r, z, n, h = (cache[k] for k in ("r", "z", "n", "h"))
        mr, mz, mn = cache["m"]
        dn = dhn * (1.0 - z)                          # h' = (1-z)*n + z*h
        dz = dhn * (h - n)
        dh_direct = dhn * z
        dn_pre = dn * (1.0 - n * n) * mn              # n = tanh(n_pre)
        if "rh" in cache:                             # n_pre = a_n + W_hn (r*h) + b_hn
            H = h.shape[1]
            drh = dn_pre @ w_hh[2 * H:]
            dr = drh * h
            dh_direct = dh_direct + drh * r
            dn_h = dn_pre
        else:                                         # n_pre = a_n + r*(W_hn h + b_hn)
            dr = dn_pre * cache["ghn"]
            dn_h = dn_pre * r
        dr_pre = dr * r * (1.0 - r) * mr
        dz_pre = dz * z * (1.0 - z) * mz
        dgi = np.concatenate([dr_pre, dz_pre, dn_pre], axis=1)
        dgh = np.concatenate([dr_pre, dz_pre, dn_h], axis=1)
        return dgi, dgh, dh_direct, None
    raise ValueError("unknown mode %r" % (mode,))


# --------------------------------------------------------------------------
# One layer, one direction.
# --------------------------------------------------------------------------

def _run_direction(mode, w_ih, w_hh, b_ih, b_hh, x, h0, c0, active, reverse,
                   lbr=True, clip=None):
    """x (T,B,In), h0/c0 (B,H), active (T,B) bool.
    Returns y (T,B,H), h_n, c_n, cache."""
    T = x.shape[0]
    h, c = h0, c0
    y = np.zeros((T, x.shape[1], h0.shape[1]), dtype=x.dtype)
    steps = []
    order = range(T - 1, -1, -1) if reverse else range(T)
    for t in order:
        gi = x[t] @ w_ih.T
        if b_ih is not None:
            gi = gi + b_ih
        hn, cn, cache = _cell_forward(mode, gi, h, c, w_hh, b_hh, lbr, clip)
        m = active[t][:, None]
        steps.append((t, h, cache))
        y[t] = np.where(m, hn, 0.0)                 # padding outputs exactly 0
        h = np.where(m, hn, h)                      # inactive step keeps state
        if c is not None:
            c = np.where(m, cn, c)
    return y, h, c, steps


def _backprop_direction(mode, w_ih, w_hh, x, steps, active, dy, dh, dc):
    """Walk the steps of one direction in reverse processing order.
    Returns dx (T,B,In), dh0, dc0, and the parameter gradients."""
    dx = np.zeros_like(x)
    dw_ih = np.zeros_like(w_ih)
    dw_hh = np.zeros_like(w_hh)
    db_ih = np.zeros(w_ih.shape[0], dtype=x.dtype)
    db_hh = np.zeros(w_hh.shape[0], dtype=x.dtype)
    for t, h_prev, cache in reversed(steps):
        m = active[t][:, None]
        # y[t] = h' on active steps, 0 otherwise; h carries through inactive ones.
        dhn = np.where(m, dh + dy[t], 0.0)
        dcn = np.where(m, dc, 0.0) if dc is not None else None
        dgi, dgh, dh_direct, dc_prev = _cell_backward(mode, cache, dhn, dcn, w_hh)
        # Rows of inactive sequences are all zero in dgi/dgh here.
        dx[t] = dgi @ w_ih
        dw_ih += dgi.T @ x[t]
        db_ih += dgi.sum(axis=0)          # used only where the layer has biases
        db_hh += dgh.sum(axis=0)
        if "rh" in cache:                 # reset-first GRU
            H2 = 2 * h_prev.shape[1]
            dw_hh[:H2] += dgh[:, :H2].T @ h_prev
            dw_hh[H2:] += dgh[:, H2:].T @ cache["rh"]
            dh_prev = dh_direct + dgh[:, :H2] @ w_hh[:H2]
        else:
            dw_hh += dgh.T @ h_prev
            dh_prev = dh_direct + dgh @ w_hh
        dh = np.where(m, dh_prev, dh)
        if dc is not None:
            dc = np.where(m, dc_prev, dc)
    return dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------

def reference_forward(mode, params, x, h0=None, c0=None, lengths=None,
                      num_layers=1, bidirectional=False, dropmasks=None,
                      linear_before_reset=True, clip=None):
    """Forward pass of a torch-style multi-layer (bi)directional RNN/LSTM/GRU.

    mode       "RNN_TANH", "RNN_RELU", "LSTM" or "GRU"
    params     dict with torch's names (see the module docstring); bias keys
               may be absent (no bias)
    x          (T,B,I) time-major input
    h0, c0     (D*L,B,H) initial states or None (zeros); c0 only for LSTM
    lengths    (B,) integers in 1..T, or None (all T)
    dropmasks  None or a list of L-1 arrays (T,B,D*H) multiplied into the
               input of layers 1..L-1
    linear_before_reset  GRU only: True torch's GRU, False the reset-first one
    clip       None/0 or a positive bound for the gate pre-activations

    Returns (y, h_n, c_n, ctx): y (T,B,D*H), h_n (D*L,B,H), c_n (D*L,B,H) for
    LSTM else None, ctx for reference_backward.
    """
    G = num_gates(mode)
    x = np.asarray(x)
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
    x = x.astype(dtype)
    if x.ndim != 3:
        raise ValueError("x must be (T,B,I), got shape %s" % (x.shape,))
    T, B, _ = x.shape
    D = 2 if bidirectional else 1
    L = int(num_layers)
    H = np.asarray(params["weight_hh_l0"]).shape[1]
    if np.asarray(params["weight_hh_l0"]).shape[0] != G * H:
        raise ValueError("weight_hh_l0 must be (%d*H, H) for %s" % (G, mode))
    p = {k: np.asarray(v).astype(dtype) for k, v in params.items()}

    if lengths is None:
        lens = np.full(B, T, dtype=np.int64)
    else:
        lens = np.asarray(lengths).astype(np.int64).reshape(-1)
        if lens.shape != (B,) or lens.min() < 1 or lens.max() > T:
            raise ValueError("lengths must be (B,) integers in 1..T")
    active = np.arange(T)[:, None] < lens[None, :]          # (T,B)

    h0 = np.zeros((D * L, B, H), dtype) if h0 is None else np.asarray(h0).astype(dtype)
    if mode == "LSTM":
        c0 = np.zeros((D * L, B, H), dtype) if c0 is None else np.asarray(c0).astype(dtype)
    else:
        c0 = None
    if dropmasks is not None and len(dropmasks) != L - 1:
        raise ValueError("dropmasks must hold num_layers-1 arrays")

    h_n = np.zeros((D * L, B, H), dtype)
    c_n = np.zeros((D * L, B, H), dtype) if mode == "LSTM" else None
    layers = []
    inp = x
    for layer in range(L):
        if layer > 0 and dropmasks is not None:
            inp = inp * np.asarray(dropmasks[layer - 1]).astype(dtype)
        outs, dirs = [], []
        for d in range(D):
            sfx = "_reverse" if d == 1 else ""
            w_ih = p["weight_ih_l%d%s" % (layer, sfx)]
            w_hh = p["weight_hh_l%d%s" % (layer, sfx)]
            b_ih = p.get("bias_ih_l%d%s" % (layer, sfx))
            b_hh = p.get("bias_hh_l%d%s" % (layer, sfx))
            k = layer * D + d
            y_d, hk, ck, steps = _run_direction(
                mode, w_ih, w_hh, b_ih, b_hh, inp, h0[k],
                None if c0 is None else c0[k], active, reverse=(d == 1),
                lbr=linear_before_reset, clip=clip)
            h_n[k] = hk
            if c_n is not None:
                c_n[k] = ck
            outs.append(y_d)
            dirs.append(steps)
        layers.append({"input": inp, "steps": dirs})
        inp = np.concatenate(outs, axis=2)
    y = inp
    ctx = {"mode": mode, "params": p, "L": L, "D": D, "H": H, "dtype": dtype,
           "active": active, "layers": layers, "dropmasks": dropmasks,
           "x_shape": x.shape}
    return y, h_n, c_n, ctx


def reference_backward(ctx, dy, dh_n=None, dc_n=None):
    """Backward of reference_forward.

    dy (T,B,D*H), dh_n / dc_n (D*L,B,H) or None (zeros).
    Returns (dx, dh0, dc0, grads): dx (T,B,I), dh0 (D*L,B,H) (the gradient of
    the initial state, also when it defaulted to zeros), dc0 likewise for LSTM
    else None, and grads, a dict with the keys and shapes of params.
    """
    mode, p, L, D, H = ctx["mode"], ctx["params"], ctx["L"], ctx["D"], ctx["H"]
    dtype, active = ctx["dtype"], ctx["active"]
    T, B, _ = ctx["x_shape"]
    dy = np.asarray(dy).astype(dtype)
    dh_n = np.zeros((D * L, B, H), dtype) if dh_n is None else np.asarray(dh_n).astype(dtype)
    is_lstm = mode == "LSTM"
    if is_lstm:
        dc_n = np.zeros((D * L, B, H), dtype) if dc_n is None else np.asarray(dc_n).astype(dtype)
    dh0 = np.zeros((D * L, B, H), dtype)
    dc0 = np.zeros((D * L, B, H), dtype) if is_lstm else None
    grads = {}
    dout = dy                                   # gradient of the current layer's output
    for layer in range(L - 1, -1, -1):
        rec = ctx["layers"][layer]
        inp = rec["input"]
        dinp = np.zeros_like(inp)
        for d in range(D):
            sfx = "_reverse" if d == 1 else ""
            k = layer * D + d
            w_ih = p["weight_ih_l%d%s" % (layer, sfx)]
            w_hh = p["weight_hh_l%d%s" % (layer, sfx)]
            dx_d, dhk, dck, dw_ih, dw_hh, db_ih, db_hh = _backprop_direction(
                mode, w_ih, w_hh, inp, rec["steps"][d], active,
                dout[:, :, d * H:(d + 1) * H], dh_n[k],
                dc_n[k] if is_lstm else None)
            dinp += dx_d
            dh0[k] = dhk
            if is_lstm:
                dc0[k] = dck
            grads["weight_ih_l%d%s" % (layer, sfx)] = dw_ih
            grads["weight_hh_l%d%s" % (layer, sfx)] = dw_hh
            grads["bias_ih_l%d%s" % (layer, sfx)] = db_ih
            grads["bias_hh_l%d%s" % (layer, sfx)] = db_hh
        if layer > 0 and ctx["dropmasks"] is not None:
            dinp = dinp * np.asarray(ctx["dropmasks"][layer - 1]).astype(dtype)
        dout = dinp
    # Keep exactly the keys of params (the bias keys only where given).
    grads = {k: grads[k] if k in grads else np.zeros_like(p[k]) for k in p}
    return dout, dh0, dc0, grads
