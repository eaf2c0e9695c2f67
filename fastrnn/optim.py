"""Optimizers, learning-rate schedules and gradient clipping (torch.optim semantics).

In short::

    opt = fr.optim.Adam(lr=1e-3)
    opt.attach(layer.parameters())   # (name, param, grad) triples
    ... forward / backward fill the grads ...
    fr.optim.clip_grad_norm(opt.params, max_norm=1.0)
    opt.step()                        # params updated in place
    opt.zero_grad()                   # grads filled with 0 in place
    sched = fr.optim.StepLR(opt, step_size=10)   # sched.step() once per epoch

NumPy: one vectorized pass per operation and parameter (a loop over
parameters, never over elements); Adam and AdamW run the same operations in
one pass in the backend's fused step where it has one (the CPU kernels'
fr_adam, the same bits; src/include/fastrnn_optim.h). In the parameter's
dtype, writing the parameter in place (the layers keep raw pointers to their
parameter arrays, so an array is never rebound). Each update follows the order of operations of torch's
single-tensor ("foreach=False") path, so float64 trajectories agree with torch
to ~1e-12 and float32 ones to float32 rounding. (Bit equality is not possible:
torch's vectorized CPU kernels fuse some multiply-adds, NumPy does not.)
Gradients are read, never modified, by step(). Scalars enter the array
arithmetic the way they enter torch's: a Python float is rounded to the array
dtype first (NumPy >= 2 "weak" scalars do this too).

Updates, with g the gradient, p the parameter, t the step count (from 1)::

  SGD(lr, momentum=mu, dampening=tau, nesterov, weight_decay=wd)
      d = g + wd*p
      b = d (t == 1),  b = mu*b + (1-tau)*d (t > 1)       [when mu != 0]
      d = d + mu*b (nesterov)  or  d = b                  [when mu != 0]
      p = p - lr*d
  Adam(lr, betas=(b1, b2), eps, weight_decay=wd, amsgrad); AdamW = decoupled decay
      Adam:  d = g + wd*p          AdamW: p = p*(1 - lr*wd), d = g
      m = lerp(m, d, 1-b1)         (= b1*m + (1-b1)*d)
      v = b2*v + (1-b2)*d*d
      vmax = max(vmax, v); v~ = vmax (amsgrad) or v
      p = p - (lr/(1-b1^t)) * m / (sqrt(v~)/sqrt(1-b2^t) + eps)
  RMSprop(lr, alpha=a, eps, weight_decay=wd, momentum=mu, centered)
      d = g + wd*p
      s = a*s + (1-a)*d*d
      r = lerp(r, d, 1-a); den = sqrt(s - r*r) + eps (centered)  or  sqrt(s) + eps
      b = mu*b + d/den; p = p - lr*b (mu > 0)  or  p = p - lr*d/den

Learning-rate schedules (torch.optim.lr_scheduler semantics, stepped once per
epoch after that epoch's optimizer steps; each reads the optimizer's lr at
construction as its base lr and uses torch's recursive formulas, so the lr
sequence is torch's): StepLR, ExponentialLR, CosineAnnealingLR, LinearLR /
LinearWarmup, LambdaLR, ReduceLROnPlateau (.step(metric)).

Clipping: clip_grad_norm (global norm as ``torch.nn.utils.clip_grad_norm_``, the
norm in float64 in a fixed order) and clip_grad_value.
"""
import math
import numbers

import numpy as np

from . import backends

__all__ = [
    "Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "get",
    "LRSchedule", "StepLR", "ExponentialLR", "CosineAnnealingLR", "LinearLR",
    "LinearWarmup", "LambdaLR", "ReduceLROnPlateau", "get_schedule",
    "clip_grad_norm", "clip_grad_value", "grad_norm",
]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# ---- argument checks --------------------------------------------------------------
def _real(value, name, lo=None, hi=None, lo_open=False, hi_open=False, finite=True):
    """`value` as a Python float, checked against [lo, hi] (ends open on request)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__} "
                        f"{value!r}")
    v = float(value)
    if math.isnan(v) or (finite and math.isinf(v)):
        raise ValueError(f"{name}: expected a finite number, got {v}")
    bad = ((lo is not None and (v < lo or (lo_open and v == lo)))
           or (hi is not None and (v > hi or (hi_open and v == hi))))
    if bad:
        lo_s = "-inf" if lo is None else repr(lo)
        hi_s = "inf" if hi is None else repr(hi)
        rng = ("(" if lo_open else "[") + f"{lo_s}, {hi_s}" + (")" if hi_open else "]")
        raise ValueError(f"{name}: expected a value in {rng}, got {v!r}")
    return v


def _int(value, name, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {int(value)}")
    return int(value)


def _bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__} {value!r}")
    return bool(value)


def _check_array(arr, what):
    """A float32/float64 ndarray that can be written in place."""
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{what}: expected a NumPy array (updated in place), got "
                        f"{type(arr).__name__}")
    if arr.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{what}: expected dtype float32 or float64, got {arr.dtype}")
    if not arr.flags.writeable:
        raise ValueError(f"{what}: the array is read-only; it must be writable to be "
                         "updated in place")
    return arr


# ---- optimizers -----------------------------------------------------------------
class Optimizer:
    """Base class of the optimizers: (name, param, grad) triples and per-parameter state.

    Subclasses define ``_config_names`` (constructor arguments besides params),
    ``_buffer_names()`` (state arrays, allocated with zeros at a parameter's first
    step) and ``_update(p, g, state, a, b)`` (one step of one parameter; a and b
    are scratch arrays of p's shape and dtype, shared by all parameters).

    Parameters
    ----------
    lr : float
        The learning rate (>= 0).
    params : list of (str, numpy.ndarray, numpy.ndarray), optional
        The (name, param, grad) triples to update (``layer.parameters()``, or an
        object with a ``parameters()`` method); or call `attach` later
        (``Sequential.compile`` does).
    """

    _config_names = ("lr",)

    def __init__(self, lr, params=None):
        self._lr = _real(lr, "lr", lo=0.0)
        self._params = []     # [(name, param, grad)]
        self._state = []      # per position: None (not stepped yet) or {"step": t, buf: array}
        self._scratch = None  # dtype -> flat array of 2*largest size, made at the first step
        self._step_count = 0  # step() calls since construction (or loaded)
        if params is not None:
            self.attach(params)

    # ---- hyper-parameters ----------------------------------------------------
    @property
    def lr(self):
        """The current learning rate (schedules set it)."""
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = _real(value, "lr", lo=0.0)

    @property
    def step_count(self):
        """How many times step() has run (restored by load_state_dict)."""
        return self._step_count

    @property
    def params(self):
        """The attached (name, param, grad) triples (a new list; same arrays)."""
        return list(self._params)

    def get_config(self):
        """Return the constructor arguments (current values, lr included).

        Returns
        -------
        dict
            JSON-able; ``type(opt)(**opt.get_config())`` or
            ``fr.optim.get(name, **config)`` rebuilds the optimizer.
        """
        cfg = {}
        for k in self._config_names:
            v = getattr(self, "_" + k)
            cfg[k] = list(v) if isinstance(v, tuple) else v
        return cfg

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    # ---- parameters ----------------------------------------------------------
    def attach(self, params):
        """Set the parameters to update, replacing any earlier set.

        State (moments, step counts) is kept for a position whose name, shape and
        dtype are unchanged, and dropped for every other position; call `reset` to
        drop all of it.

        Parameters
        ----------
        params : list of (str, numpy.ndarray, numpy.ndarray) or object
            (name, param, grad) triples (what ``layer.parameters()`` returns), or an
            object with a ``parameters()`` method. Params and grads are writable
            float32/float64 arrays of equal shape and dtype, sharing no memory.

        Raises
        ------
        TypeError, ValueError
            For anything else, naming the offending entry.
        """
        if hasattr(params, "parameters") and callable(params.parameters):
            params = params.parameters()
        if isinstance(params, np.ndarray) or not hasattr(params, "__iter__"):
            raise TypeError("params: expected a list of (name, param, grad) triples, got "
                            f"{type(params).__name__}")
        new = []
        for i, item in enumerate(params):
            if not isinstance(item, (tuple, list)) or len(item) != 3:
                raise TypeError(f"params[{i}]: expected a (name, param, grad) triple, got "
                                f"{type(item).__name__}")
            name, p, g = item
            if not isinstance(name, str):
                raise TypeError(f"params[{i}]: the name must be a str, got "
                                f"{type(name).__name__} {name!r}")
            what = f"params[{i}] ({name!r})"
            _check_array(p, what + " param")
            _check_array(g, what + " grad")
            if g.shape != p.shape or g.dtype != p.dtype:
                raise ValueError(f"{what}: the grad must match the param, got grad "
                                 f"{g.shape} {g.dtype} for param {p.shape} {p.dtype}")
            if np.may_share_memory(p, g):
                raise ValueError(f"{what}: the param and its grad share memory")
            new.append((name, p, g))
        arrays = [(f"params[{i}] ({n!r}) {kind}", a) for i, (n, p, g) in enumerate(new)
                  for kind, a in (("param", p), ("grad", g))]
        for j in range(len(arrays)):      # one array updated twice would be wrong, silently
            for k in range(j + 1, len(arrays)):
                if np.may_share_memory(arrays[j][1], arrays[k][1]):
                    raise ValueError(f"params: {arrays[j][0]} and {arrays[k][0]} share "
                                     "memory")
        old = {(i, n): (p.shape, p.dtype, st)
               for i, ((n, p, _), st) in enumerate(zip(self._params, self._state))}
        state = []
        for i, (n, p, _) in enumerate(new):
            prev = old.get((i, n))
            keep = prev is not None and prev[0] == p.shape and prev[1] == p.dtype
            state.append(prev[2] if keep else None)
        self._params, self._state, self._scratch = new, state, None

    def reset(self):
        """Forget all state (moments, momentum buffers, step counts)."""
        self._state = [None] * len(self._params)
        self._step_count = 0

    def zero_grad(self):
        """Fill every attached gradient with 0, in place."""
        for _, _, g in self._params:
            g.fill(0)

    # ---- the update -----------------------------------------------------------
    def _buffer_names(self):
        return ()

    def _update(self, p, g, state, a, b):  # pragma: no cover - abstract
        raise NotImplementedError

    def _scratch_pair(self, p):
        """Two scratch arrays of p's shape and dtype (views of one shared buffer)."""
        if self._scratch is None:
            sizes = {}
            for _, q, _ in self._params:
                sizes[q.dtype] = max(sizes.get(q.dtype, 0), q.size)
            self._scratch = {dt: (n, np.empty(2 * n, dtype=dt)) for dt, n in sizes.items()}
        n, flat = self._scratch[p.dtype]
        return flat[:p.size].reshape(p.shape), flat[n:n + p.size].reshape(p.shape)

    def step(self):
        """Update every attached parameter in place from its gradient."""
        for i, (_, p, g) in enumerate(self._params):
            st = self._state[i]
            if st is None:  # first step of this parameter: allocate its state once
                st = {"step": 0}
                for buf in self._buffer_names():
                    st[buf] = np.zeros_like(p)
                self._state[i] = st
            st["step"] += 1
            a, b = self._scratch_pair(p)
            self._update(p, g, st, a, b)
        self._step_count += 1

    # ---- checkpoints ----------------------------------------------------------
    def state_dict(self):
        """Return the optimizer's hyper-parameters and state, for a checkpoint.

        Returns
        -------
        config : dict
            JSON-able: class name, constructor arguments, step count, and per
            attached parameter its name, shape, dtype and step.
        arrays : dict of str to numpy.ndarray
            ``"<position>.<name>.<buffer>"`` to a copy of each state array.
        """
        params, arrays = [], {}
        for i, ((name, p, _), st) in enumerate(zip(self._params, self._state)):
            params.append({"name": name, "shape": list(p.shape), "dtype": p.dtype.name,
                           "step": 0 if st is None else int(st["step"])})
            if st is not None:
                for buf in self._buffer_names():
                    arrays[f"{i}.{name}.{buf}"] = st[buf].copy()
        config = {"class": type(self).__name__, "config": self.get_config(),
                  "step_count": self._step_count, "params": params}
        return config, arrays

    def load_state_dict(self, config, arrays):
        """Restore what `state_dict` returned into this optimizer.

        The attached parameters must have the saved names, shapes and dtypes, in the
        same order. Everything is checked before anything changes.

        Parameters
        ----------
        config : dict
            The first item `state_dict` returned.
        arrays : dict of str to numpy.ndarray
            The second item `state_dict` returned.

        Raises
        ------
        ValueError
            Saying what does not match.
        TypeError
            If config or arrays is not a dict.
        """
        if not isinstance(config, dict) or not isinstance(arrays, dict):
            raise TypeError("load_state_dict: expected (config: dict, arrays: dict) as "
                            "returned by state_dict()")
        for key in ("class", "config", "step_count", "params"):
            if key not in config:
                raise ValueError(f"config: missing entry {key!r} (not from state_dict()?)")
        if config["class"] != type(self).__name__:
            raise ValueError(f"config: saved from a {config['class']} optimizer, cannot "
                             f"load into a {type(self).__name__}")
        try:
            proto = type(self)(**config["config"])  # validates the hyper-parameters
        except TypeError as e:
            raise ValueError(f"config: bad hyper-parameters ({e})") from None
        saved = config["params"]
        if len(saved) != len(self._params):
            raise ValueError(f"config: saved state for {len(saved)} parameters, this "
                             f"optimizer has {len(self._params)} attached (attach the "
                             "parameters before loading)")
        expected = {}
        for i, (entry, (name, p, _)) in enumerate(zip(saved, self._params)):
            if not isinstance(entry, dict):
                raise ValueError(f"config params[{i}]: expected a dict, got {entry!r}")
            got = (entry.get("name"), tuple(entry.get("shape", ())), entry.get("dtype"))
            if got != (name, p.shape, p.dtype.name):
                raise ValueError(f"params[{i}]: saved {got[0]!r} {got[1]} {got[2]}, "
                                 f"attached {name!r} {p.shape} {p.dtype.name}")
            step = _int(entry.get("step"), f"config params[{i}] step", 0)
            if step > 0:
                for buf in proto._buffer_names():
                    expected[f"{i}.{name}.{buf}"] = (p, step)
        missing = sorted(set(expected) - set(arrays))
        extra = sorted(set(arrays) - set(expected))
        if missing or extra:
            raise ValueError(f"arrays: missing {missing}, unexpected {extra}")
        for key, (p, _) in expected.items():
            arr = np.asarray(arrays[key])
            if arr.shape != p.shape or arr.dtype.kind != "f":
                raise ValueError(f"arrays[{key!r}]: expected a float array of shape "
                                 f"{p.shape}, got {arr.dtype} {arr.shape}")
        step_count = _int(config["step_count"], "config step_count", 0)
        # everything checked: commit
        for k in self._config_names:
            setattr(self, "_" + k, getattr(proto, "_" + k))
        state = []
        for i, (entry, (name, p, _)) in enumerate(zip(saved, self._params)):
            if entry["step"] == 0:
                state.append(None)
                continue
            st = {"step": int(entry["step"])}
            for buf in self._buffer_names():
                st[buf] = np.array(arrays[f"{i}.{name}.{buf}"], dtype=p.dtype, copy=True)
            state.append(st)
        self._state, self._step_count = state, step_count


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay.

    As ``torch.optim.SGD``; the update is in this module's docstring.

    Parameters
    ----------
    lr : float, default 0.01
        Learning rate.
    momentum : float, default 0.0
        Momentum factor.
    dampening : float, default 0.0
        Dampening of the momentum.
    nesterov : bool, default False
        Nesterov momentum (needs momentum > 0 and dampening 0).
    weight_decay : float, default 0.0
        L2 penalty added to the gradient.
    params : list of (str, numpy.ndarray, numpy.ndarray), optional
        The (name, param, grad) triples to update (``layer.parameters()``, or an
        object with a ``parameters()`` method); or call `attach` later
        (``Sequential.compile`` does).

    Examples
    --------
    >>> import numpy as np
    >>> import fastrnn as fr
    >>> p, g = np.ones(3, np.float32), np.full(3, 0.5, np.float32)
    >>> fr.optim.SGD(lr=0.1, params=[("w", p, g)]).step()
    >>> p
    array([0.95, 0.95, 0.95], dtype=float32)
    """

    _config_names = ("lr", "momentum", "dampening", "nesterov", "weight_decay")

    def __init__(self, lr=0.01, momentum=0.0, dampening=0.0, nesterov=False,
                 weight_decay=0.0, params=None):
        self._momentum = _real(momentum, "momentum", lo=0.0)
        self._dampening = _real(dampening, "dampening")
        self._nesterov = _bool(nesterov, "nesterov")
        self._weight_decay = _real(weight_decay, "weight_decay", lo=0.0)
        if self._nesterov and (self._momentum <= 0 or self._dampening != 0):
            raise ValueError("nesterov: Nesterov momentum needs momentum > 0 and "
                             f"dampening == 0, got momentum={self._momentum}, "
                             f"dampening={self._dampening}")
        super().__init__(lr, params)

    def _buffer_names(self):
        return ("momentum_buffer",) if self._momentum != 0 else ()

    def _update(self, p, g, st, a, b):
        lr, wd, mu = self._lr, self._weight_decay, self._momentum
        d = g
        if wd != 0:  # d = g + wd*p
            np.multiply(p, wd, out=a)
            np.add(g, a, out=a)
            d = a
        if mu != 0:
            buf = st["momentum_buffer"]
            if st["step"] == 1:
                np.copyto(buf, d)
            else:  # buf = mu*buf + (1-dampening)*d
                buf *= mu
                np.multiply(d, 1 - self._dampening, out=b)
                buf += b
            if self._nesterov:  # d = d + mu*buf
                np.multiply(buf, mu, out=b)
                np.add(d, b, out=a)
                d = a
            else:
                d = buf
        np.multiply(d, -lr, out=b)  # p = p + (-lr)*d
        p += b


class Adam(Optimizer):
    """Adam (L2 weight decay added to the gradient; optional AMSGrad), as ``torch.optim.Adam``.

    Parameters
    ----------
    lr : float, default 1e-3
        Learning rate.
    betas : tuple of float, default (0.9, 0.999)
        Decay rates of the first and second moment estimates, in [0, 1).
    eps : float, default 1e-8
        Added to the denominator.
    weight_decay : float, default 0.0
        L2 penalty added to the gradient.
    amsgrad : bool, default False
        Use the maximum of the second moments so far (AMSGrad).
    params : list of (str, numpy.ndarray, numpy.ndarray), optional
        The (name, param, grad) triples to update (``layer.parameters()``, or an
        object with a ``parameters()`` method); or call `attach` later
        (``Sequential.compile`` does).
    """

    _config_names = ("lr", "betas", "eps", "weight_decay", "amsgrad")
    _decoupled = False
    _fused = True   # the backend's one-pass step where it has one (False: NumPy)

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, params=None):
        if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") \
                or len(betas) != 2:
            raise TypeError(f"betas: expected a pair (beta1, beta2), got {betas!r}")
        self._betas = (_real(betas[0], "betas[0]", lo=0.0, hi=1.0, hi_open=True),
                       _real(betas[1], "betas[1]", lo=0.0, hi=1.0, hi_open=True))
        self._eps = _real(eps, "eps", lo=0.0)
        self._weight_decay = _real(weight_decay, "weight_decay", lo=0.0)
        self._amsgrad = _bool(amsgrad, "amsgrad")
        super().__init__(lr, params)

    def _buffer_names(self):
        return (("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if self._amsgrad
                else ("exp_avg", "exp_avg_sq"))

    def _update(self, p, g, st, a, b):
        lr, wd, eps = self._lr, self._weight_decay, self._eps
        beta1, beta2 = self._betas
        m, v = st["exp_avg"], st["exp_avg_sq"]
        if self._fused and self._fused_update(p, g, st, m, v):
            return
        d = g
        if wd != 0:
            if self._decoupled:   # AdamW: p = p*(1 - lr*wd)
                p *= 1 - lr * wd
            else:                 # d = g + wd*p
                np.multiply(p, wd, out=a)
                np.add(g, a, out=a)
                d = a
        _lerp(m, d, 1 - beta1, b)        # m = m + (1-b1)*(d - m)
        v *= beta2                       # v = b2*v + ((1-b2)*d)*d
        np.multiply(d, 1 - beta2, out=b)
        b *= d
        v += b
        t = float(st["step"])
        bias_correction1 = 1 - beta1 ** t
        bias_correction2 = 1 - beta2 ** t
        step_size = lr / bias_correction1
        bias_correction2_sqrt = bias_correction2 ** 0.5
        if self._amsgrad:
            vmax = st["max_exp_avg_sq"]
            np.maximum(vmax, v, out=vmax)
            v = vmax
        np.sqrt(v, out=b)                # den = sqrt(v)/sqrt(bc2) + eps
        b /= bias_correction2_sqrt
        b += eps
        np.multiply(m, -step_size, out=a)  # p = p + ((-step_size)*m)/den
        a /= b
        p += a


    def _fused_update(self, p, g, st, m, v):
        """The same step in one pass, by the array's backend where it has one
        (the CPU kernels' fr_adam: the operations below, in their order, so
        the same bits); False when it declines (the NumPy path then runs)."""
        fused = getattr(backends.of(p), "adam_step", None)
        if fused is None:
            return False
        lr, wd = self._lr, self._weight_decay
        beta1, beta2 = self._betas
        t = float(st["step"])
        mode = 0 if wd == 0 else (2 if self._decoupled else 1)
        return fused(p, g, m, v, st["max_exp_avg_sq"] if self._amsgrad else None,
                     1 - beta1, beta2, 1 - beta2, (1 - beta2 ** t) ** 0.5, self._eps,
                     -(lr / (1 - beta1 ** t)), wd, 1 - lr * wd, mode)


class AdamW(Adam):
    """Adam with decoupled weight decay, as ``torch.optim.AdamW``.

    ``p *= 1 - lr*weight_decay`` before the Adam step.

    Parameters
    ----------
    lr : float, default 1e-3
        Learning rate.
    betas : tuple of float, default (0.9, 0.999)
        Decay rates of the first and second moment estimates, in [0, 1).
    eps : float, default 1e-8
        Added to the denominator.
    weight_decay : float, default 0.01
        Decoupled weight decay.
    amsgrad : bool, default False
        Use the maximum of the second moments so far (AMSGrad).
    params : list of (str, numpy.ndarray, numpy.ndarray), optional
        The (name, param, grad) triples to update (``layer.parameters()``, or an
        object with a ``parameters()`` method); or call `attach` later
        (``Sequential.compile`` does).
    """

    _decoupled = True

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01,
                 amsgrad=False, params=None):
        super().__init__(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, params=params)


class RMSprop(Optimizer):
    """RMSprop (optionally centered, with momentum and L2 weight decay), as ``torch.optim.RMSprop``.

    Parameters
    ----------
    lr : float, default 0.01
        Learning rate.
    alpha : float, default 0.99
        Smoothing constant of the squared-gradient average, in [0, 1].
    eps : float, default 1e-8
        Added to the denominator.
    weight_decay : float, default 0.0
        L2 penalty added to the gradient.
    momentum : float, default 0.0
        Momentum factor.
    centered : bool, default False
        Normalize by the estimated variance of the gradient.
    params : list of (str, numpy.ndarray, numpy.ndarray), optional
        The (name, param, grad) triples to update (``layer.parameters()``, or an
        object with a ``parameters()`` method); or call `attach` later
        (``Sequential.compile`` does).
    """

    _config_names = ("lr", "alpha", "eps", "weight_decay", "momentum", "centered")

    def __init__(self, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False, params=None):
        self._alpha = _real(alpha, "alpha", lo=0.0, hi=1.0)
        self._eps = _real(eps, "eps", lo=0.0)
        self._weight_decay = _real(weight_decay, "weight_decay", lo=0.0)
        self._momentum = _real(momentum, "momentum", lo=0.0)
        self._centered = _bool(centered, "centered")
        super().__init__(lr, params)

    def _buffer_names(self):
        names = ["square_avg"]
        if self._momentum > 0:
            names.append("momentum_buffer")
        if self._centered:
            names.append("grad_avg")
        return tuple(names)

    def _update(self, p, g, st, a, b):
        lr, wd, alpha, eps = self._lr, self._weight_decay, self._alpha, self._eps
        s = st["square_avg"]
        d = g
        if wd != 0:  # d = g + wd*p
            np.multiply(p, wd, out=a)
            np.add(g, a, out=a)
            d = a
        s *= alpha   # s = a*s + ((1-a)*d)*d
        np.multiply(d, 1 - alpha, out=b)
        b *= d
        s += b
        if self._centered:
            r = st["grad_avg"]
            _lerp(r, d, 1 - alpha, b)   # r = r + (1-a)*(d - r)
            np.multiply(r, -1.0, out=b)  # den = sqrt(s + (-r)*r)
            b *= r
            b += s
            np.sqrt(b, out=b)
        else:
            np.sqrt(s, out=b)
        b += eps
        if self._momentum > 0:  # buf = mu*buf + d/den; p = p + (-lr)*buf
            buf = st["momentum_buffer"]
            buf *= self._momentum
            np.divide(d, b, out=b)
            buf += b
            np.multiply(buf, -lr, out=b)
            p += b
        else:                   # p = p + ((-lr)*d)/den
            np.multiply(d, -lr, out=a)
            a /= b
            p += a


def _lerp(start, end, weight, tmp):
    """start = lerp(start, end, weight) in place, torch's formula: for |w| < 0.5
    start + w*(end - start), else end - (end - start)*(1 - w); w and 1 - w are
    rounded to the array dtype first, as torch's CPU kernel does."""
    w = start.dtype.type(weight)
    np.subtract(end, start, out=tmp)
    if abs(w) < 0.5:
        tmp *= w
        start += tmp
    else:
        tmp *= start.dtype.type(1) - w
        np.subtract(end, tmp, out=start)


_OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop}


def get(optimizer, **config):
    """Return an optimizer from its name and constructor arguments.

    Parameters
    ----------
    optimizer : str or Optimizer
        "sgd", "adam", "adamw", "rmsprop" (any case); an Optimizer instance
        passes through unchanged.
    **config
        Constructor arguments (not allowed with an instance).

    Returns
    -------
    Optimizer
        The optimizer.

    Raises
    ------
    ValueError
        For an unknown name.
    TypeError
        For anything else, or arguments given with an instance.
    """
    if isinstance(optimizer, Optimizer):
        if config:
            raise TypeError("get: constructor arguments given with an Optimizer "
                            f"instance ({sorted(config)}); pass a name instead")
        return optimizer
    if not isinstance(optimizer, str):
        raise TypeError(f"optimizer: expected a name or an Optimizer, got "
                        f"{type(optimizer).__name__}")
    cls = _OPTIMIZERS.get(optimizer.lower())
    if cls is None:
        raise ValueError(f"optimizer: unknown optimizer {optimizer!r}; known: "
                         f"{sorted(_OPTIMIZERS)}")
    return cls(**config)


# ---- learning-rate schedules --------------------------------------------------------
def _encode(v):
    """A float as JSON allows (inf/nan as strings)."""
    return v if math.isfinite(v) else repr(v)


def _decode(v):
    return float(v)


class LRSchedule:
    """Base class of the epoch-based learning-rate schedules.

    At construction the schedule reads ``optimizer.lr`` as its base lr and (like
    torch's initial step) may set the lr for epoch 0; each `step` advances one
    epoch and sets ``optimizer.lr``. Pass a schedule in ``Sequential.fit``'s
    callbacks to step it once per epoch.

    Parameters
    ----------
    optimizer : Optimizer
        The optimizer whose lr it sets.
    """

    _config_names = ()

    def __init__(self, optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer: expected a fastrnn.optim Optimizer, got "
                            f"{type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_epoch = 0
        self.optimizer.lr = self._lr_at_start()
        self._last_lr = self.optimizer.lr

    def _lr_at_start(self):
        return self.optimizer.lr

    def _next_lr(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def step(self):
        """Advance one epoch and set the optimizer's lr.

        Returns
        -------
        float
            The new lr.
        """
        self.last_epoch += 1
        self.optimizer.lr = self._next_lr()
        self._last_lr = self.optimizer.lr
        return self._last_lr

    def get_last_lr(self):
        """Return the lr this schedule set last.

        Returns
        -------
        float
            The lr.
        """
        return self._last_lr

    def get_config(self):
        """Return the constructor arguments besides the optimizer.

        Returns
        -------
        dict
            Argument name to value.
        """
        return {k: getattr(self, k) for k in self._config_names}

    def state_dict(self):
        """Return the schedule's progress, for a checkpoint.

        Restore by building the schedule on the (fresh) optimizer, then loading this
        and the optimizer's state (the optimizer's state holds the current lr).

        Returns
        -------
        dict
            JSON-able: class name, config and progress.
        """
        return {"class": type(self).__name__, "config": self.get_config(),
                "base_lr": self.base_lr, "last_epoch": self.last_epoch,
                "last_lr": self._last_lr}

    def load_state_dict(self, state):
        """Restore what `state_dict` returned.

        Parameters
        ----------
        state : dict
            A `state_dict` of a schedule of this class and config.

        Raises
        ------
        ValueError
            If the class or config differ.
        """
        if not isinstance(state, dict) or state.get("class") != type(self).__name__:
            got = state.get("class") if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"state: expected the state_dict() of a "
                             f"{type(self).__name__}, got {got!r}")
        if state.get("config", {}) != self.get_config():
            raise ValueError(f"state: saved config {state.get('config')} differs from "
                             f"this schedule's {self.get_config()}")
        base_lr = _real(state["base_lr"], "state base_lr", lo=0.0)
        last_epoch = _int(state["last_epoch"], "state last_epoch", 0)
        last_lr = _real(state["last_lr"], "state last_lr", lo=0.0)
        self.base_lr, self.last_epoch, self._last_lr = base_lr, last_epoch, last_lr

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class StepLR(LRSchedule):
    """Multiply the lr by gamma every step_size epochs (``torch.optim.lr_scheduler.StepLR``).

    Parameters
    ----------
    optimizer : Optimizer
        The optimizer whose lr it sets.
    step_size : int
        Epochs between reductions.
    gamma : float, default 0.1
        The factor.
    """

    _config_names = ("step_size", "gamma")

    def __init__(self, optimizer, step_size, gamma=0.1):
        self.step_size = _int(step_size, "step_size", 1)
        self.gamma = _real(gamma, "gamma", lo=0.0)
        super().__init__(optimizer)

    def _next_lr(self):
        if self.last_epoch % self.step_size != 0:
            return self.optimizer.lr
        return self.optimizer.lr * self.gamma


class ExponentialLR(LRSchedule):
    """Multiply the lr by gamma every epoch (``torch.optim.lr_scheduler.ExponentialLR``).

    Parameters
    ----------
    optimizer : Optimizer
        The optimizer whose lr it sets.
    gamma : float
        The factor.
    """

    _config_names = ("gamma",)

    def __init__(self, optimizer, gamma):
        self.gamma = _real(gamma, "gamma", lo=0.0)
        super().__init__(optimizer)

    def _next_lr(self):
        return self.optimizer.lr * self.gamma


class CosineAnnealingLR(LRSchedule):
    """Anneal the lr from the base lr to eta_min over T_max epochs along a cosine.

    Then back up, periodically, as torch does, by torch's recursive formula:
    lr_t = eta_min + (lr_{t-1} - eta_min) * (1 + cos(pi t/T)) / (1 + cos(pi (t-1)/T)).

    Parameters
    ----------
    optimizer : Optimizer
        The optimizer whose lr it sets.
    T_max : int
        Epochs of a half period.
    eta_min : float, default 0.0
        The lowest lr.
    """

    _config_names = ("T_max", "eta_min")

    def __init__(self, optimizer, T_max, eta_min=0.0):
        self.T_max = _int(T_max, "T_max", 1)
        self.eta_min = _real(eta_min, "eta_min", lo=0.0)
        super().__init__(optimizer)

    def _next_lr(self):
        t, T, lr, eta_min = self.last_epoch, self.T_max, self.optimizer.lr, self.eta_min
        if (t - 1 - T) % (2 * T) == 0:
            return lr + (self.base_lr - eta_min) * (1 - math.cos(math.pi / T)) / 2
        return ((1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T))
                * (lr - eta_min) + eta_min)


class LinearLR(LRSchedule):
    """Ramp the lr factor linearly from start_factor to end_factor.

    Epoch 0 (set at construction) has start_factor, epoch total_iters and later
    end_factor, as ``torch.optim.lr_scheduler.LinearLR`` (recursive form).

    Parameters
    ----------
    optimizer : Optimizer
        The optimizer whose lr it sets.
    start_factor : float, default 1/3
        The factor of the base lr at epoch 0.
    end_factor : float, default 1.0
        The factor from epoch total_iters on.
    total_iters : int, default 5
        Epochs of the ramp.
    """

    _config_names = ("start_factor", "end_factor", "total_iters")

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5):
        self.start_factor = _real(start_factor, "start_factor", lo=0.0, hi=1.0,
                                  lo_open=True)
        self.end_factor = _real(end_factor, "end_factor", lo=0.0, hi=1.0)
        self.total_iters = _int(total_iters, "total_iters", 1)
        super().__init__(optimizer)

    def _lr_at_start(self):
        return self.optimizer.lr * self.start_factor

    def _next_lr(self):
        t, lr = self.last_epoch, self.optimizer.lr
        if t > self.total_iters:
            return lr
        s, e = self.start_factor, self.end_factor
        return lr * (1.0 + (e - s) / (self.total_iters * s + (t - 1) * (e - s)))


class LinearWarmup(LinearLR):
    """Warm the lr up linearly from start_factor*lr to lr over warmup_epochs epochs, then keep it.

    LinearLR with end_factor=1.

    Parameters
    ----------
    optimizer : Optimizer
        The optimizer whose lr it sets.
    warmup_epochs : int
        Epochs of the warm-up.
    start_factor : float, default 0.1
        The factor of the lr at epoch 0.
    """

    _config_names = ("warmup_epochs", "start_factor")

    def __init__(self, optimizer, warmup_epochs, start_factor=0.1):
        self.warmup_epochs = _int(warmup_epochs, "warmup_epochs", 1)
        super().__init__(optimizer, start_factor=start_factor, end_factor=1.0,
                         total_iters=self.warmup_epochs)


class LambdaLR(LRSchedule):
    """Set lr = base_lr * lr_lambda(epoch), epoch 0 included (set at construction).

    As ``torch.optim.lr_scheduler.LambdaLR``. The function is not JSON-able:
    `get_config` returns it, `state_dict` leaves it out.

    Parameters
    ----------
    optimizer : Optimizer
        The optimizer whose lr it sets.
    lr_lambda : callable
        epoch (int) -> factor (float).
    """

    def __init__(self, optimizer, lr_lambda):
        if not callable(lr_lambda):
            raise TypeError(f"lr_lambda: expected a callable epoch -> factor, got "
                            f"{type(lr_lambda).__name__}")
        self.lr_lambda = lr_lambda
        super().__init__(optimizer)

    def _factor(self):
        return _real(self.lr_lambda(self.last_epoch),
                     f"lr_lambda({self.last_epoch})", lo=0.0)

    def _lr_at_start(self):
        return self.base_lr * self._factor()

    def _next_lr(self):
        return self.base_lr * self._factor()

    def get_config(self):
        return {"lr_lambda": self.lr_lambda}

    def state_dict(self):
        state = super().state_dict()
        state["config"] = {}
        return state

    def load_state_dict(self, state):
        if isinstance(state, dict):
            state = dict(state, config=self.get_config())
        super().load_state_dict(state)


class ReduceLROnPlateau(LRSchedule):
    """Multiply the lr by factor when a metric has stopped improving.

    As ``torch.optim.lr_scheduler.ReduceLROnPlateau``: call ``.step(metric)`` once
    per epoch. Improvement: metric < best*(1-threshold) ("min", "rel"),
    < best - threshold ("min", "abs"), > best*(1+threshold) ("max", "rel"),
    > best + threshold ("max", "abs"). A NaN metric is never an improvement.

    Parameters
    ----------
    optimizer : Optimizer
        The optimizer whose lr it sets.
    mode : {"min", "max"}, default "min"
        Whether lower or higher metrics are better.
    factor : float, default 0.1
        The factor of a reduction, in [0, 1).
    patience : int, default 10
        Epochs without improvement tolerated before a reduction.
    threshold : float, default 1e-4
        The least change that counts as an improvement.
    threshold_mode : {"rel", "abs"}, default "rel"
        Whether threshold is relative to the best value or absolute.
    cooldown : int, default 0
        Epochs after a reduction in which bad epochs are not counted.
    min_lr : float, default 0.0
        The lr never goes below it.
    eps : float, default 1e-8
        A reduction smaller than eps is skipped.
    """

    _config_names = ("mode", "factor", "patience", "threshold", "threshold_mode",
                     "cooldown", "min_lr", "eps")

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0.0, eps=1e-8):
        if mode not in ("min", "max"):
            raise ValueError(f"mode: expected 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode: expected 'rel' or 'abs', got "
                             f"{threshold_mode!r}")
        self.mode, self.threshold_mode = mode, threshold_mode
        self.factor = _real(factor, "factor", lo=0.0, hi=1.0, hi_open=True)
        self.patience = _int(patience, "patience", 0)
        self.threshold = _real(threshold, "threshold", lo=0.0)
        self.cooldown = _int(cooldown, "cooldown", 0)
        self.min_lr = _real(min_lr, "min_lr", lo=0.0)
        self.eps = _real(eps, "eps", lo=0.0)
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer: expected a fastrnn.optim Optimizer, got "
                            f"{type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_epoch = 0
        self._last_lr = optimizer.lr
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def _is_better(self, a, best):
        if self.mode == "min":
            return a < (best * (1.0 - self.threshold) if self.threshold_mode == "rel"
                        else best - self.threshold)
        return a > (best * (self.threshold + 1.0) if self.threshold_mode == "rel"
                    else best + self.threshold)

    def step(self, metric):
        """Record this epoch's metric; reduce the lr if it has stopped improving.

        Parameters
        ----------
        metric : float
            The monitored value of this epoch (e.g. the validation loss).

        Returns
        -------
        float
            The optimizer's lr.

        Raises
        ------
        TypeError
            If metric is not a real number.
        """
        if isinstance(metric, (bool, np.bool_)):
            raise TypeError(f"metric: expected a real number, got {metric!r}")
        try:
            current = float(metric)
        except (TypeError, ValueError):
            raise TypeError(f"metric: expected a real number, got "
                            f"{type(metric).__name__} {metric!r}") from None
        self.last_epoch += 1
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs in cooldown do not count
        if self.num_bad_epochs > self.patience:
            old_lr = self.optimizer.lr
            new_lr = max(old_lr * self.factor, self.min_lr)
            if old_lr - new_lr > self.eps:
                self.optimizer.lr = new_lr
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = self.optimizer.lr
        return self._last_lr

    def state_dict(self):
        state = super().state_dict()
        state.update(best=_encode(self.best), num_bad_epochs=self.num_bad_epochs,
                     cooldown_counter=self.cooldown_counter)
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.best = _decode(state["best"])
        self.num_bad_epochs = _int(state["num_bad_epochs"], "state num_bad_epochs", 0)
        self.cooldown_counter = _int(state["cooldown_counter"], "state cooldown_counter",
                                     0)


_SCHEDULES = {"step": StepLR, "exponential": ExponentialLR, "cosine": CosineAnnealingLR,
              "linear": LinearLR, "warmup": LinearWarmup, "plateau": ReduceLROnPlateau}


def get_schedule(schedule, optimizer, **config):
    """Return a schedule from its name and constructor arguments, bound to an optimizer.

    Parameters
    ----------
    schedule : str or LRSchedule
        "step", "exponential", "cosine", "linear", "warmup", "plateau", or a
        class name such as "StepLR"; an LRSchedule instance passes through.
    optimizer : Optimizer
        The optimizer whose lr it sets.
    **config
        Constructor arguments besides the optimizer.

    Returns
    -------
    LRSchedule
        The schedule.

    Raises
    ------
    ValueError
        For an unknown name.
    TypeError
        For anything else, or arguments given with an instance.
    """
    if isinstance(schedule, LRSchedule):
        if config:
            raise TypeError("get_schedule: constructor arguments given with a schedule "
                            "instance; pass a name instead")
        return schedule
    if not isinstance(schedule, str):
        raise TypeError(f"schedule: expected a name or an LRSchedule, got "
                        f"{type(schedule).__name__}")
    by_class = {cls.__name__.lower(): cls for cls in _SCHEDULES.values()}
    cls = _SCHEDULES.get(schedule.lower()) or by_class.get(schedule.lower())
    if cls is None:
        raise ValueError(f"schedule: unknown schedule {schedule!r}; known: "
                         f"{sorted(_SCHEDULES) + sorted(c.__name__ for c in by_class.values())}")
    return cls(optimizer, **config)


# ---- gradient clipping ---------------------------------------------------------------
_CHUNK = 1 << 16  # elements per float64 block of the norm (bounded scratch memory)


def _grad_list(grads):
    """Gradients from a list of arrays or of (name, param, grad) triples."""
    if isinstance(grads, np.ndarray):
        grads = [grads]
    if not hasattr(grads, "__iter__"):
        raise TypeError(f"grads: expected a list of arrays or (name, param, grad) "
                        f"triples, got {type(grads).__name__}")
    out = []
    for i, item in enumerate(grads):
        if isinstance(item, (tuple, list)) and len(item) == 3:
            item = item[2]
        out.append(_check_array(item, f"grads[{i}]"))
    return out


def _norm_type(norm_type):
    if isinstance(norm_type, str) and norm_type.lower() == "inf":
        return math.inf
    v = _real(norm_type, "norm_type", lo=0.0, lo_open=True, finite=False)
    return v


def grad_norm(grads, norm_type=2.0):
    """Return the norm of all gradients as if concatenated into one vector.

    ``(sum |g|^p)^(1/p)``, or ``max |g|`` for norm_type inf. Computed in float64,
    block by block in a fixed order, so the same gradients give the same bits
    whatever the thread count. NaN in a gradient gives NaN; inf gives inf (or NaN).

    Parameters
    ----------
    grads : list of numpy.ndarray or list of (str, numpy.ndarray, numpy.ndarray)
        The gradient arrays, or (name, param, grad) triples (``layer.parameters()``,
        ``optimizer.params``).
    norm_type : float or "inf", default 2.0
        The order p of the norm (> 0).

    Returns
    -------
    float
        The norm.
    """
    p = _norm_type(norm_type)
    grads = _grad_list(grads)
    if p == math.inf:
        maxima = [float(np.max(np.abs(g))) for g in grads if g.size]
        if any(math.isnan(m) for m in maxima):
            return math.nan
        return max(maxima, default=0.0)
    buf = np.empty(min(_CHUNK, max((g.size for g in grads), default=0)), np.float64)
    total = 0.0
    for g in grads:
        flat = g.reshape(-1)
        for start in range(0, flat.size, _CHUNK):
            blk = buf[:min(_CHUNK, flat.size - start)]
            np.copyto(blk, flat[start:start + blk.size])
            if p == 2.0:
                np.multiply(blk, blk, out=blk)
            else:
                np.abs(blk, out=blk)
                if p != 1.0:
                    np.power(blk, p, out=blk)
            total += float(np.add.reduce(blk))
    if p == 2.0:
        return math.sqrt(total)
    if p == 1.0:
        return total
    return total ** (1.0 / p)


def clip_grad_norm(grads, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale all gradients in place so that their global norm is at most max_norm.

    As ``torch.nn.utils.clip_grad_norm_``: with total = grad_norm(grads,
    norm_type) and coef = max_norm/(total + 1e-6), every gradient is multiplied by
    coef when coef < 1 (which, as in torch, includes totals within 1e-6 below
    max_norm) and left alone otherwise. A non-finite total (a NaN or inf in some
    gradient) leaves the gradients untouched and is returned, so the caller can
    skip the step (torch would multiply every gradient by 0 or NaN).

    Parameters
    ----------
    grads : list of numpy.ndarray or list of (str, numpy.ndarray, numpy.ndarray)
        The gradient arrays, or (name, param, grad) triples (``layer.parameters()``,
        ``optimizer.params``).
    max_norm : float
        The largest norm allowed.
    norm_type : float or "inf", default 2.0
        The order of the norm.
    error_if_nonfinite : bool, default False
        Raise instead of returning a non-finite total.

    Returns
    -------
    float
        The total norm before clipping.

    Raises
    ------
    FloatingPointError
        With ``error_if_nonfinite=True``, when the total is not finite.
    """
    max_norm = _real(max_norm, "max_norm", lo=0.0, finite=False)
    _bool(error_if_nonfinite, "error_if_nonfinite")
    grads = _grad_list(grads)
    total = grad_norm(grads, norm_type)
    if not math.isfinite(total):
        if error_if_nonfinite:
            raise FloatingPointError(
                f"clip_grad_norm: the total gradient norm (order {norm_type}) is "
                f"{total}; the gradients cannot be clipped")
        return total
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for g in grads:
            g *= coef
    return total


def clip_grad_value(grads, clip_value):
    """Clamp every gradient element into [-clip_value, clip_value], in place.

    As ``torch.nn.utils.clip_grad_value_``. NaN elements stay NaN.

    Parameters
    ----------
    grads : list of numpy.ndarray or list of (str, numpy.ndarray, numpy.ndarray)
        The gradient arrays, or (name, param, grad) triples (``layer.parameters()``,
        ``optimizer.params``).
    clip_value : float
        The bound (>= 0).
    """
    c = _real(clip_value, "clip_value", lo=0.0, finite=False)
    for g in _grad_list(grads):
        np.clip(g, -c, c, out=g)
