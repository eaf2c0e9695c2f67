"""The NumPy engine of the recurrent layers' variants: a production path for
what the C kernels do not compute (docs/variants.md).

    LSTM projections (proj_size), peepholes, coupled input-forget gates,
    ONNX activation functions (with alpha / beta), per-(t, b) validity masks
    with holes or left padding, Keras's "carry" padding, state resets, and
    the state after every step (return_states).

The plain configuration never comes here: fastrnn.recurrent sends a layer to
this engine only when one of the above is on, so the C path keeps its bits.

Shapes use the letters of docs/architecture.md; Hr = P (proj_size) when the
LSTM projects, else H, is the width of h and of each direction's output.
Per layer and direction (slot k = l*D + d) the engine runs one GEMM for the
input projection of all T steps and one GEMM per step for the recurrence;
backward collects the gate gradients of every step and forms the weight
gradients as whole-sequence GEMMs, as the C kernels do.

Cell equations (torch's gate order; F, G, Hc the activation slots; clip
clamps each pre-activation, ONNX's order: after the peephole term):
    LSTM  i = F(a_i + p_i*c), f = F(a_f + p_f*c)  (f = 1 - i: input_forget)
          g = G(a_g), c' = f*c + i*g, o = F(a_o + p_o*c'),
          h' = o*Hc(c')                     (h' = W_hr (o*Hc(c')): proj_size)
    GRU   r = F(a_r + b_r), z = F(a_z + b_z),
          n = G(a_n + r*b_n)  (linear_before_reset) or G(a_n + W_hn(r*h) + b_hn),
          h' = (1-z)*n + z*h
    RNN   h' = F(a + b)
with a = W_ih x + b_ih and b = W_hh h + b_hh.

Validity (lengths or mask) and resets, per step t and sequence b, in the
order a direction walks (t = 0..T-1 forward, T-1..0 reverse):
    resets: the state restarts from the initial state before the step (the
            reverse direction restarts before step t when resets[t+1]: each
            segment then runs as a sequence of its own); the carry restarts at 0
    valid:  the cell runs; output h'
    not:    the state is held; output 0 ("zeros") or the last valid output of
            this direction's walk ("carry"; 0 before the first)
"""
import numpy as np

from . import backends
from ._cells import num_gates

# ---- activations (ONNX's names and semantics) ------------------------------

# canonical name: (takes alpha, takes beta, default alpha, default beta); the
# defaults are the ONNX operators' (ONNX Runtime uses 0 where ONNX gives none
# for Affine, ScaledTanh and ThresholdedRelu: exporters write them out)
ACTIVATIONS = {
    "Sigmoid": (False, False, None, None),
    "Tanh": (False, False, None, None),
    "Relu": (False, False, None, None),
    "Affine": (True, True, 1.0, 0.0),
    "LeakyRelu": (True, False, 0.01, None),
    "ThresholdedRelu": (True, False, 1.0, None),
    "ScaledTanh": (True, True, 1.0, 1.0),
    "HardSigmoid": (True, True, 0.2, 0.5),
    "Elu": (True, False, 1.0, None),
    "Softsign": (False, False, None, None),
    "Softplus": (False, False, None, None),
}
_CANON = {k.lower(): k for k in ACTIVATIONS}

# ONNX's activation slots of each cell: LSTM (f, g, h), GRU (f, g), RNN (f)
SLOTS = {"LSTM": 3, "GRU": 2, "RNN_TANH": 1, "RNN_RELU": 1}
DEFAULT_ACTIVATIONS = {"LSTM": ("Sigmoid", "Tanh", "Tanh"), "GRU": ("Sigmoid", "Tanh"),
                       "RNN_TANH": ("Tanh",), "RNN_RELU": ("Relu",)}


def _floats(value, name, n):
    """None or a list of n entries, each None (the default) or a float."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise TypeError(f"{name}: expected None or a list of floats aligned with "
                        f"activations, got {value!r}")
    out = []
    for v in value:
        if v is None:
            out.append(None)
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name}: expected floats (or None for the default), got {v!r}")
        if not np.isfinite(float(v)):
            raise ValueError(f"{name}: expected finite floats, got {v!r}")
        out.append(float(v))
    if len(out) != n:
        raise ValueError(f"{name}: expected {n} entries (one per activation), got {len(out)}")
    return tuple(out)


def normalize_activations(mode, activations, alpha, beta, num_directions):
    """The constructor's activations, activation_alpha and activation_beta
    checked and normalized: (names, alphas, betas), each a tuple or None.
    Names are ONNX's canonical spelling; alphas/betas are aligned with them."""
    if activations is None:
        if alpha is not None or beta is not None:
            raise ValueError("activation_alpha, activation_beta: given without activations")
        return None, None, None
    slots = SLOTS[mode]
    if isinstance(activations, (str, bytes)) or not hasattr(activations, "__len__"):
        raise TypeError(f"activations: expected a list of {slots} activation names, got "
                        f"{activations!r}")
    names = []
    for a in activations:
        if not isinstance(a, str):
            raise TypeError(f"activations: expected names (str), got {a!r}")
        canon = _CANON.get(a.lower())
        if canon is None:
            raise ValueError(f"activations: unknown activation {a!r}; known (ONNX, any case): "
                             f"{sorted(ACTIVATIONS)}")
        names.append(canon)
    allowed = (slots, 2 * slots) if num_directions == 2 else (slots,)
    if len(names) not in allowed:
        what = " (or twice that for both directions)" if num_directions == 2 else ""
        raise ValueError(f"activations: a {mode} layer takes {slots} activations{what}, "
                         f"got {len(names)}")
    return (tuple(names), _floats(alpha, "activation_alpha", len(names)),
            _floats(beta, "activation_beta", len(names)))


def resolve_activations(mode, names, alphas, betas, num_directions):
    """Per direction, the list of (name, alpha, beta) of each slot, defaults
    filled in."""
    if names is None:
        names = DEFAULT_ACTIVATIONS[mode]
    slots = SLOTS[mode]
    out = []
    for d in range(num_directions):
        base = d * slots if len(names) == 2 * slots else 0
        row = []
        for s in range(slots):
            j = base + s
            name = names[j]
            _, _, da, db = ACTIVATIONS[name]
            a = alphas[j] if alphas is not None and alphas[j] is not None else da
            b = betas[j] if betas is not None and betas[j] is not None else db
            row.append((name, a, b))
        out.append(row)
    return out


def is_default_activations(mode, names, alphas, betas, num_directions):
    """True when the activations are the cell's own (the C path's)."""
    if names is None:
        return True
    default = resolve_activations(mode, None, None, None, num_directions)
    got = resolve_activations(mode, names, alphas, betas, num_directions)
    return got == default


def onnx_alpha_beta(names, alphas, betas):
    """ONNX's activation_alpha and activation_beta lists for these aligned
    activations: each value consumed, in order, only by the activations that
    take it (as ONNX Runtime reads them), every default written out."""
    oa, ob = [], []
    for j, name in enumerate(names):
        ta, tb, da, db = ACTIVATIONS[name]
        if ta:
            oa.append(alphas[j] if alphas is not None and alphas[j] is not None else da)
        if tb:
            ob.append(betas[j] if betas is not None and betas[j] is not None else db)
    return oa, ob


def _sigmoid(v):
    out = np.empty_like(v)
    pos = v >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-v[pos]))
    e = np.exp(v[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def _act(fn, x):
    """y = fn(x); fn is (name, alpha, beta)."""
    name, a, b = fn
    dt = x.dtype.type
    if name == "Sigmoid":
        return _sigmoid(x)
    if name == "Tanh":
        return np.tanh(x)
    if name == "Relu":
        return np.maximum(x, dt(0))
    if name == "Affine":
        return dt(a) * x + dt(b)
    if name == "LeakyRelu":
        return np.where(x >= 0, x, dt(a) * x)
    if name == "ThresholdedRelu":
        return np.where(x > dt(a), x, dt(0))
    if name == "ScaledTanh":
        return dt(a) * np.tanh(dt(b) * x)
    if name == "HardSigmoid":
        return np.clip(dt(a) * x + dt(b), dt(0), dt(1))
    if name == "Elu":
        return np.where(x >= 0, x, dt(a) * np.expm1(np.minimum(x, dt(0))))
    if name == "Softsign":
        return x / (dt(1) + np.abs(x))
    if name == "Softplus":
        return np.logaddexp(dt(0), x)
    raise AssertionError(name)


def _dact(fn, x, y):
    """d fn(x) / dx, given x and y = fn(x)."""
    name, a, b = fn
    dt = x.dtype.type
    if name == "Sigmoid":
        return y * (dt(1) - y)
    if name == "Tanh":
        return dt(1) - y * y
    if name == "Relu":
        return (x > 0).astype(x.dtype)
    if name == "Affine":
        return np.full_like(x, dt(a))
    if name == "LeakyRelu":
        return np.where(x >= 0, dt(1), dt(a)).astype(x.dtype)
    if name == "ThresholdedRelu":
        return (x > dt(a)).astype(x.dtype)
    if name == "ScaledTanh":
        t = np.tanh(dt(b) * x)
        return dt(a) * dt(b) * (dt(1) - t * t)
    if name == "HardSigmoid":
        v = dt(a) * x + dt(b)
        return np.where((v > 0) & (v < 1), dt(a), dt(0)).astype(x.dtype)
    if name == "Elu":
        return np.where(x >= 0, dt(1), y + dt(a)).astype(x.dtype)
    if name == "Softsign":
        d = dt(1) + np.abs(x)
        return dt(1) / (d * d)
    if name == "Softplus":
        return _sigmoid(x)
    raise AssertionError(name)


# ---- the engine -------------------------------------------------------------

class Spec:
    """What the engine needs of a layer: mode ("LSTM", "GRU", "RNN_TANH",
    "RNN_RELU"), H, P (proj_size, 0: none), L, D, bias, lbr
    (linear_before_reset), clip (None or > 0), peepholes, input_forget,
    acts (resolve_activations's per-direction lists), carry (padding)."""
    __slots__ = ("mode", "H", "P", "L", "D", "bias", "lbr", "clip", "peepholes",
                 "input_forget", "acts", "carry")

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw[k])

    @property
    def Hr(self):
        return self.P or self.H

    @property
    def G(self):
        return num_gates(self.mode)


class Cache:
    """What backward needs of a training forward."""
    __slots__ = ("inputs", "dirs", "valid", "resets", "dropmasks", "T", "B")


_gemm = backends.matmul   # thread-count-independent bits, as the kernels


def _weights(store, spec, l, d):
    n = f"l{l}{'_reverse' if d else ''}"
    w = {"w_ih": store[f"weight_ih_{n}"], "w_hh": store[f"weight_hh_{n}"]}
    if spec.bias:
        w["b_ih"], w["b_hh"] = store[f"bias_ih_{n}"], store[f"bias_hh_{n}"]
    if spec.P:
        w["w_hr"] = store[f"weight_hr_{n}"]
    if spec.peepholes:
        w["peep"] = store[f"peephole_{n}"]
    return w


def _clip(v, clip):
    """(v clamped to [-clip, clip], derivative mask or None)."""
    if not clip:
        return v, None
    c = v.dtype.type(clip)
    return np.clip(v, -c, c), (v >= -c) & (v <= c)


def _dir_resets(resets, reverse):
    """(T, B) restart flags in the walk's step order: the reverse direction
    restarts before step t when a segment begins at t+1."""
    if resets is None or not reverse:
        return resets
    out = np.zeros_like(resets)
    out[:-1] = resets[1:]
    return out


def _forward_dir(spec, w, acts, inp, h_init, c_init, valid, resets, reverse, keep):
    """One layer-direction over inp (T, B, In). Returns (out (T, B, Hr),
    h_after (T, B, Hr), c_after (T, B, H) or None, h_final, c_final, cache)."""
    T, B, In = inp.shape
    H, Hr, G, mode, dt = spec.H, spec.Hr, spec.G, spec.mode, inp.dtype
    lstm, gru = mode == "LSTM", mode == "GRU"
    F = acts[0]
    gi_all = _gemm(inp.reshape(T * B, In), w["w_ih"], trans_b=True).reshape(T, B, G * H)
    if spec.bias:
        gi_all += w["b_ih"]
    w_hh = w["w_hh"]
    b_hh = w.get("b_hh")
    gru_rz = gru and not spec.lbr
    if gru_rz:
        w_hh_rz, w_hh_n = w_hh[:2 * H], np.ascontiguousarray(w_hh[2 * H:])
        b_rz = None if b_hh is None else b_hh[:2 * H]
        b_n = None if b_hh is None else b_hh[2 * H:]
    zero_h = np.zeros((B, Hr), dt)
    h = zero_h.copy() if h_init is None else h_init.copy()
    h_start = h.copy()
    c = c_start = None
    if lstm:
        c = np.zeros((B, H), dt) if c_init is None else c_init.copy()
        c_start = c.copy()
    out = np.empty((T, B, Hr), dt)
    h_after = np.empty((T, B, Hr), dt)
    c_after = np.empty((T, B, H), dt) if lstm else None
    carry = np.zeros((B, Hr), dt) if spec.carry else None
    cache = None
    if keep:
        cache = {"pre": np.empty((T, B, G * H), dt), "act": np.empty((T, B, G * H), dt),
                 "mask": (np.ones((T, B, G * H), bool) if spec.clip else None),
                 "hprev": np.empty((T, B, Hr), dt)}
        if lstm:
            cache.update(cprev=np.empty((T, B, H), dt), cnew=np.empty((T, B, H), dt),
                         hc=np.empty((T, B, H), dt))
            if spec.P:
                cache["hraw"] = np.empty((T, B, H), dt)
        if gru:
            cache["ghn"] = np.empty((T, B, H), dt)   # b_n (lbr) or r*h (not lbr)
    order = range(T - 1, -1, -1) if reverse else range(T)
    peep = w.get("peep")
    for t in order:
        if resets is not None and resets[t].any():
            m = resets[t][:, None]
            h = np.where(m, h_start, h)
            if lstm:
                c = np.where(m, c_start, c)
            if carry is not None:
                carry = np.where(m, dt.type(0), carry)
        gi = gi_all[t]
        if gru_rz:
            gh = _gemm(h, w_hh_rz, trans_b=True)
            if b_rz is not None:
                gh += b_rz
        else:
            gh = _gemm(h, w_hh, trans_b=True)
            if b_hh is not None:
                gh += b_hh
        if lstm:
            pre = gi + gh
            if peep is not None:
                pre[:, :H] += peep[:H] * c
                pre[:, H:2 * H] += peep[H:2 * H] * c
            pre3, m3 = _clip(pre[:, :3 * H], spec.clip)
            i = _act(F, pre3[:, :H])
            f = (dt.type(1) - i) if spec.input_forget else _act(F, pre3[:, H:2 * H])
            g = _act(acts[1], pre3[:, 2 * H:])
            cn = f * c + i * g
            po = pre[:, 3 * H:]
            if peep is not None:
                po = po + peep[2 * H:] * cn
            po, mo = _clip(po, spec.clip)
            o = _act(F, po)
            hc = _act(acts[2], cn)
            hraw = o * hc
            hn = _gemm(hraw, w["w_hr"], trans_b=True) if spec.P else hraw
            if keep:
                cache["pre"][t, :, :3 * H] = pre3
                cache["pre"][t, :, 3 * H:] = po
                cache["act"][t] = np.concatenate([i, f, g, o], axis=1)
                if m3 is not None:
                    cache["mask"][t, :, :3 * H] = m3
                    cache["mask"][t, :, 3 * H:] = mo
                cache["cprev"][t], cache["cnew"][t], cache["hc"][t] = c, cn, hc
                if spec.P:
                    cache["hraw"][t] = hraw
        elif gru:
            prz, mrz = _clip(gi[:, :2 * H] + gh[:, :2 * H], spec.clip)
            rz = _act(F, prz)
            r, z = rz[:, :H], rz[:, H:]
            if spec.lbr:
                ghn = gh[:, 2 * H:]
                pn = gi[:, 2 * H:] + r * ghn
                keep_n = ghn
            else:
                keep_n = r * h
                ghn = _gemm(keep_n, w_hh_n, trans_b=True)
                if b_n is not None:
                    ghn += b_n
                pn = gi[:, 2 * H:] + ghn
            pn, mn = _clip(pn, spec.clip)
            n = _act(acts[1], pn)
            hn = (dt.type(1) - z) * n + z * h
            if keep:
                cache["pre"][t, :, :2 * H], cache["pre"][t, :, 2 * H:] = prz, pn
                cache["act"][t, :, :2 * H], cache["act"][t, :, 2 * H:] = rz, n
                if mrz is not None:
                    cache["mask"][t, :, :2 * H], cache["mask"][t, :, 2 * H:] = mrz, mn
                cache["ghn"][t] = keep_n
        else:
            pre, m = _clip(gi + gh, spec.clip)
            hn = _act(F, pre)
            if keep:
                cache["pre"][t], cache["act"][t] = pre, hn
                if m is not None:
                    cache["mask"][t] = m
        if keep:
            cache["hprev"][t] = h
        if valid is None:
            out[t] = hn
            h = hn
            if lstm:
                c = cn
        else:
            v = valid[t][:, None]
            h = np.where(v, hn, h)
            if lstm:
                c = np.where(v, cn, c)
            if carry is not None:
                carry = np.where(v, hn, carry)
                out[t] = carry
            else:
                out[t] = np.where(v, hn, dt.type(0))
        h_after[t] = h
        if lstm:
            c_after[t] = c
    return out, h_after, c_after, h, c, cache


def _backward_dir(spec, w, gw, acts, inp, cache, dout, dh_states, dc_states, dhn, dcn,
                  valid, resets, reverse):
    """Gradients through one layer-direction: accumulates into gw (the
    gradient arrays of its parameters), returns (dinp, dh_init, dc_init)."""
    T, B, In = inp.shape
    H, Hr, G, mode, dt = spec.H, spec.Hr, spec.G, spec.mode, inp.dtype
    lstm, gru = mode == "LSTM", mode == "GRU"
    F = acts[0]
    zero = dt.type(0)
    w_hh = w["w_hh"]
    dh = np.zeros((B, Hr), dt) if dhn is None else dhn.copy()
    dc = None
    if lstm:
        dc = np.zeros((B, H), dt) if dcn is None else dcn.copy()
    dh_init_acc = np.zeros((B, Hr), dt)
    dc_init_acc = np.zeros((B, H), dt) if lstm else None
    dcarry = np.zeros((B, Hr), dt) if spec.carry else None
    dGi = np.empty((T, B, G * H), dt)
    dGh = np.empty((T, B, G * H), dt) if gru else dGi
    dHp = np.empty((T, B, Hr), dt) if spec.P else None
    peep = w.get("peep")
    dpeep = np.zeros(3 * H, dt) if peep is not None else None
    pre_all, act_all, mask_all = cache["pre"], cache["act"], cache["mask"]
    order = range(T) if reverse else range(T - 1, -1, -1)
    for t in order:
        if dh_states is not None:
            dh = dh + dh_states[t]
        if dc_states is not None:
            dc = dc + dc_states[t]
        v = None if valid is None else valid[t][:, None]
        if v is None:
            dhnew = dh + dout[t]
            dcnew = dc
        else:
            if dcarry is not None:
                dvo = dout[t] + dcarry
                dcarry = np.where(v, zero, dcarry + dout[t])
            else:
                dvo = dout[t]
            dhnew = np.where(v, dh + dvo, zero)
            dcnew = np.where(v, dc, zero) if lstm else None
        pre, act = pre_all[t], act_all[t]
        mk = None if mask_all is None else mask_all[t]
        hprev = cache["hprev"][t]
        if lstm:
            if spec.P:
                dHp[t] = dhnew
                dhraw = _gemm(dhnew, w["w_hr"])
            else:
                dhraw = dhnew
            i, f, g, o = (act[:, k * H:(k + 1) * H] for k in range(4))
            cn, hc, cp = cache["cnew"][t], cache["hc"][t], cache["cprev"][t]
            dpo = dhraw * hc * _dact(F, pre[:, 3 * H:], o)
            if mk is not None:
                dpo *= mk[:, 3 * H:]
            dcc = dcnew + dhraw * o * _dact(acts[2], cn, hc)
            if peep is not None:
                dcc += dpo * peep[2 * H:]
            di = dcc * g
            dg = dcc * i
            df = dcc * cp
            dcprev = dcc * f
            if spec.input_forget:
                di = di - df
                dpf = np.zeros_like(df)
            else:
                dpf = df * _dact(F, pre[:, H:2 * H], f)
            dpi = di * _dact(F, pre[:, :H], i)
            dpg = dg * _dact(acts[1], pre[:, 2 * H:3 * H], g)
            dA = np.concatenate([dpi, dpf, dpg, dpo], axis=1)
            if mk is not None:
                dA[:, :3 * H] *= mk[:, :3 * H]
            if v is not None:
                dA = np.where(v, dA, zero)
            if peep is not None:
                dpi, dpf = dA[:, :H], dA[:, H:2 * H]
                dcprev = dcprev + dpi * peep[:H] + dpf * peep[H:2 * H]
                dpeep[:H] += (dpi * cp).sum(0)
                dpeep[H:2 * H] += (dpf * cp).sum(0)
                dpeep[2 * H:] += (dA[:, 3 * H:] * cn).sum(0)
            dGi[t] = dA
            dhprev = _gemm(dA, w_hh)
        elif gru:
            r, z, n = act[:, :H], act[:, H:2 * H], act[:, 2 * H:]
            dn = dhnew * (dt.type(1) - z)
            dz = dhnew * (hprev - n)
            dhprev = dhnew * z
            dpn = dn * _dact(acts[1], pre[:, 2 * H:], n)
            if mk is not None:
                dpn *= mk[:, 2 * H:]
            ghn = cache["ghn"][t]
            if spec.lbr:
                dr = dpn * ghn
                dghn = dpn * r
            else:
                dghn = dpn
                drh = _gemm(dpn, w_hh[2 * H:])
                dr = drh * hprev
                dhprev = dhprev + drh * r
            drz = np.concatenate([dr, dz], axis=1) * _dact(F, pre[:, :2 * H], act[:, :2 * H])
            if mk is not None:
                drz *= mk[:, :2 * H]
            dgi = np.concatenate([drz, dpn], axis=1)
            dgh = np.concatenate([drz, dghn], axis=1)
            if v is not None:
                dgi = np.where(v, dgi, zero)
                dgh = np.where(v, dgh, zero)
            dGi[t], dGh[t] = dgi, dgh
            if spec.lbr:
                dhprev = dhprev + _gemm(dgh, w_hh)
            else:
                dhprev = dhprev + _gemm(np.ascontiguousarray(dgh[:, :2 * H]), w_hh[:2 * H])
        else:
            dA = dhnew * _dact(F, pre, act)
            if mk is not None:
                dA *= mk
            if v is not None:
                dA = np.where(v, dA, zero)
            dGi[t] = dA
            dhprev = _gemm(dA, w_hh)
        if v is None:
            dh = dhprev
            if lstm:
                dc = dcprev
        else:
            dh = np.where(v, dhprev, dh)
            if lstm:
                dc = np.where(v, dcprev, dc)
        if resets is not None and resets[t].any():
            m = resets[t][:, None]
            dh_init_acc += np.where(m, dh, zero)
            dh = np.where(m, zero, dh)
            if lstm:
                dc_init_acc += np.where(m, dc, zero)
                dc = np.where(m, zero, dc)
            if dcarry is not None:
                dcarry = np.where(m, zero, dcarry)
    TB = T * B
    dGi2 = dGi.reshape(TB, G * H)
    _gemm(dGi2, inp.reshape(TB, In), trans_a=True, out=gw["w_ih"], beta=1.0)
    hprev2 = cache["hprev"].reshape(TB, Hr)
    if gru and not spec.lbr:
        dGh2 = dGh.reshape(TB, G * H)
        grz = _gemm(np.ascontiguousarray(dGh2[:, :2 * H]), hprev2, trans_a=True)
        gn = _gemm(np.ascontiguousarray(dGh2[:, 2 * H:]), cache["ghn"].reshape(TB, H),
                   trans_a=True)
        gw["w_hh"][:2 * H] += grz
        gw["w_hh"][2 * H:] += gn
    else:
        _gemm(dGh.reshape(TB, G * H), hprev2, trans_a=True, out=gw["w_hh"], beta=1.0)
    if spec.bias:
        gw["b_ih"] += dGi2.sum(0)
        gw["b_hh"] += dGh.reshape(TB, G * H).sum(0)
    if spec.P:
        _gemm(dHp.reshape(TB, Hr), cache["hraw"].reshape(TB, H), trans_a=True,
              out=gw["w_hr"], beta=1.0)
    if dpeep is not None:
        gw["peep"] += dpeep
    dinp = _gemm(dGi2, w["w_ih"]).reshape(T, B, In)
    dh_init = dh + dh_init_acc
    dc_init = (dc + dc_init_acc) if lstm else None
    return dinp, dh_init, dc_init


def forward(spec, params, x, h0, c0, valid, resets, dropmasks, training, want_states):
    """All layers and directions. x (T, B, I) time-major; h0 (L*D, B, Hr) and
    c0 (L*D, B, H) or None; valid and resets (T, B) bool or None; dropmasks
    (L-1, T, B, D*Hr) scaled, or None. Returns (y (T, B, D*Hr), h_n, c_n,
    states, cache): states (h_all (L, T, B, D*Hr), c_all (L, T, B, D*H) or
    None) when want_states, cache (a Cache) when training."""
    T, B = x.shape[0], x.shape[1]
    L, D, H, Hr, dt = spec.L, spec.D, spec.H, spec.Hr, x.dtype
    lstm = spec.mode == "LSTM"
    hn = np.empty((L * D, B, Hr), dt)
    cn = np.empty((L * D, B, H), dt) if lstm else None
    h_all = np.empty((L, T, B, D * Hr), dt) if want_states else None
    c_all = np.empty((L, T, B, D * H), dt) if (want_states and lstm) else None
    cache = None
    if training:
        cache = Cache()
        cache.inputs, cache.dirs, cache.valid, cache.resets = [], [], valid, resets
        cache.dropmasks, cache.T, cache.B = dropmasks, T, B
        if valid is not None:
            # padding content is arbitrary (inf, NaN); dW_ih spans every row
            x = np.where(valid[:, :, None], x, dt.type(0))
    inp = x
    for l in range(L):
        y = np.empty((T, B, D * Hr), dt)
        for d in range(D):
            k = l * D + d
            w = _weights(params, spec, l, d)
            out, h_after, c_after, hk, ck, dcache = _forward_dir(
                spec, w, spec.acts[d], inp, None if h0 is None else h0[k],
                None if c0 is None else c0[k], valid, _dir_resets(resets, d == 1), d == 1,
                training)
            y[:, :, d * Hr:(d + 1) * Hr] = out
            hn[k] = hk
            if lstm:
                cn[k] = ck
            if want_states:
                h_all[l, :, :, d * Hr:(d + 1) * Hr] = h_after
                if lstm:
                    c_all[l, :, :, d * H:(d + 1) * H] = c_after
            if cache is not None:
                cache.dirs.append(dcache)
        if cache is not None:
            cache.inputs.append(inp)
        inp = y * dropmasks[l] if (dropmasks is not None and l < L - 1) else y
    states = (h_all, c_all) if want_states else None
    return y, hn, cn, states, cache


def backward(spec, params, grads, cache, dy, dhn, dcn, dh_all, dc_all, want_dstate0):
    """Backward after forward(training=True): accumulates into grads and
    returns (dx, dh0 or None, dc0 or None); dy (T, B, D*Hr) time-major,
    dh_all / dc_all the gradients of forward's states, or None."""
    L, D, H, Hr = spec.L, spec.D, spec.H, spec.Hr
    lstm = spec.mode == "LSTM"
    B, dt = cache.B, dy.dtype
    dh0 = np.empty((L * D, B, Hr), dt)
    dc0 = np.empty((L * D, B, H), dt) if lstm else None
    dcur = dy
    for l in range(L - 1, -1, -1):
        inp = cache.inputs[l]
        dinp = None
        for d in range(D):
            k = l * D + d
            w = _weights(params, spec, l, d)
            gw = _weights(grads, spec, l, d)
            dhs = None if dh_all is None else dh_all[l, :, :, d * Hr:(d + 1) * Hr]
            dcs = None if dc_all is None else dc_all[l, :, :, d * H:(d + 1) * H]
            dx, dhk, dck = _backward_dir(
                spec, w, gw, spec.acts[d], inp, cache.dirs[k],
                dcur[:, :, d * Hr:(d + 1) * Hr], dhs, dcs,
                None if dhn is None else dhn[k], None if dcn is None else dcn[k],
                cache.valid, _dir_resets(cache.resets, d == 1), d == 1)
            dinp = dx if dinp is None else dinp + dx
            dh0[k] = dhk
            if lstm:
                dc0[k] = dck
        if l > 0 and cache.dropmasks is not None:
            dinp = dinp * cache.dropmasks[l - 1]
        dcur = dinp
    if not want_dstate0:
        return dcur, None, None
    return dcur, dh0, dc0
