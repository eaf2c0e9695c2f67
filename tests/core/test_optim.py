"""fastrnn.optim: optimizers, learning-rate schedules and gradient clipping.

Parity with torch.optim / torch.optim.lr_scheduler / torch.nn.utils (skipped
cleanly without torch): each optimizer over 20 steps of random gradients on a
few parameter shapes, float64 to ~1e-12 and float32 to float32 rounding;
schedules' lr sequences; clip_grad_norm_. Without torch: in-place updates
(same arrays, same memory), gradients left unchanged, state_dict round trips
that continue bit for bit, bad hyper-parameters and inputs rejected with the
argument named, and a training run of a real layer whose loss falls.
"""
import json
import math

import numpy as np
import pytest

import fastrnn as fr
from fastrnn import optim

SHAPES = [(7, 5), (13,), (3, 4, 6), (1,), (300,)]
STEPS = 20


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def _params(rng, dtype, shapes=SHAPES):
    """(name, param, grad) triples with random params and zero grads."""
    return [(f"p{i}", rng.standard_normal(s).astype(dtype), np.zeros(s, dtype))
            for i, s in enumerate(shapes)]


def _fill_grads(rng, triples, scale=0.5):
    for _, _, g in triples:
        g[...] = rng.standard_normal(g.shape) * scale


def _close(actual, expected, dtype, what):
    """float64: 1e-12 of the parameter scale; float32: a few float32 ulps of it."""
    scale = max(1.0, float(np.max(np.abs(expected))))
    if np.dtype(dtype) == np.float64:
        rtol, atol = 1e-12, 1e-12 * scale
    else:
        rtol, atol = 1e-5, 1e-6 * scale
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


# ---- optimizers against torch.optim ------------------------------------------------
OPT_CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.05)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1)),
    ("Adam", dict(lr=0.02, betas=(0.3, 0.9), eps=1e-6, amsgrad=True)),
    ("Adam", dict(lr=0.01, betas=(0.7, 0.95), weight_decay=0.05, amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, betas=(0.6, 0.9), weight_decay=0.2, amsgrad=True)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, weight_decay=0.1, momentum=0.9)),
    ("RMSprop", dict(lr=0.005, alpha=0.3, eps=1e-6, centered=True)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True, weight_decay=0.01)),
]


def _case_id(case):
    name, kw = case
    return name + "-" + "-".join(f"{k}={v}" for k, v in kw.items())


def _run_pair(torch, name, kw, dtype, rng, steps=STEPS, lr_at=None):
    """Step ours and torch's optimizer on the same gradients; compare every step.

    lr_at: optional epoch -> lr function applied to both before each step.
    """
    triples = _params(rng, dtype)
    tparams = [torch.tensor(p.copy(), requires_grad=True) for _, p, _ in triples]
    ours = getattr(optim, name)(**kw)
    ours.attach(triples)
    theirs = getattr(torch.optim, name)(tparams, **kw, foreach=False)
    for k in range(steps):
        _fill_grads(rng, triples)
        for (_, _, g), t in zip(triples, tparams):
            t.grad = torch.tensor(g.copy())
        if lr_at is not None:
            ours.lr = lr_at(k)
            theirs.param_groups[0]["lr"] = lr_at(k)
        ours.step()
        theirs.step()
        for (n, p, _), t in zip(triples, tparams):
            _close(p, t.detach().numpy(), dtype, f"{name} {kw} step {k + 1} {n}")
    return ours, theirs, triples


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", OPT_CASES, ids=_case_id)
def test_optimizer_matches_torch(torch, case, dtype, rng):
    name, kw = case
    ours, theirs, triples = _run_pair(torch, name, kw, dtype, rng)
    # the state buffers agree with torch's too
    (_, arrays) = ours.state_dict()
    for i, (n, p, _) in enumerate(triples):
        tstate = theirs.state[theirs.param_groups[0]["params"][i]]
        for key, value in tstate.items():
            if key == "step":
                assert float(value) == STEPS
                continue
            _close(arrays[f"{i}.{n}.{key}"], value.numpy(), dtype, f"state {key}")
        assert {k.split(".")[-1] for k in arrays if k.startswith(f"{i}.")} == \
            set(tstate) - {"step"}


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop"])
def test_changing_lr_matches_torch(torch, name, rng):
    kw = {"SGD": dict(lr=0.1, momentum=0.9), "Adam": dict(lr=0.01),
          "RMSprop": dict(lr=0.01, centered=True)}[name]
    _run_pair(torch, name, kw, np.float64, rng, lr_at=lambda k: 0.02 * 0.8 ** k)


def test_adam_with_step_schedule_matches_torch(torch, rng):
    """A schedule drives our lr as torch's scheduler drives torch's."""
    triples = _params(rng, np.float64)
    tparams = [torch.tensor(p.copy(), requires_grad=True) for _, p, _ in triples]
    ours = optim.Adam(lr=0.05, params=triples)
    theirs = torch.optim.Adam(tparams, lr=0.05, foreach=False)
    s_ours = optim.StepLR(ours, step_size=2, gamma=0.5)
    s_theirs = torch.optim.lr_scheduler.StepLR(theirs, step_size=2, gamma=0.5)
    for epoch in range(6):
        for _ in range(3):
            _fill_grads(rng, triples)
            for (_, _, g), t in zip(triples, tparams):
                t.grad = torch.tensor(g.copy())
            ours.step()
            theirs.step()
        s_ours.step()
        s_theirs.step()
        assert ours.lr == theirs.param_groups[0]["lr"]
    for (_, p, _), t in zip(triples, tparams):
        _close(p, t.detach().numpy(), np.float64, "Adam+StepLR")


# ---- in place, gradients untouched, determinism -----------------------------------
@pytest.mark.parametrize("case", OPT_CASES, ids=_case_id)
def test_step_is_in_place_and_leaves_grads(case, rng):
    name, kw = case
    triples = _params(rng, np.float32)
    ids = [(id(p), p.ctypes.data, id(g), g.ctypes.data) for _, p, g in triples]
    before = [p.copy() for _, p, _ in triples]
    opt = optim.get(name, **kw)
    opt.attach(triples)
    for _ in range(3):
        _fill_grads(rng, triples)
        grads = [g.copy() for _, _, g in triples]
        opt.step()
        for (_, _, g), g0 in zip(triples, grads):
            np.testing.assert_array_equal(g, g0)  # step reads the grads only
    assert [(id(p), p.ctypes.data, id(g), g.ctypes.data) for _, p, g in triples] == ids
    for (_, p, _), p0 in zip(triples, before):
        assert p.dtype == np.float32
        assert not np.array_equal(p, p0)
    opt.zero_grad()
    assert all(not g.any() for _, _, g in triples)
    assert [(id(p), p.ctypes.data, id(g), g.ctypes.data) for _, p, g in triples] == ids
    assert opt.step_count == 3


def test_non_contiguous_params_are_updated_in_place(rng):
    base = rng.standard_normal((6, 8))
    p = base[:, ::2]                 # a strided view: updates must land in base
    g = np.ones((6, 4))
    ref_p = p.copy()
    optim.SGD(lr=0.5, params=[("w", p, g)]).step()
    np.testing.assert_array_equal(base[:, ::2], ref_p - 0.5)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop"])
def test_same_inputs_same_bits(name, rng):
    seed = int(rng.integers(1 << 30))
    out = []
    for _ in range(2):
        r = np.random.default_rng(seed)
        triples = _params(r, np.float64)
        opt = optim.get(name, lr=0.01)
        opt.attach(triples)
        for _ in range(5):
            _fill_grads(r, triples)
            opt.step()
        out.append(np.concatenate([p.ravel() for _, p, _ in triples]))
    assert out[0].tobytes() == out[1].tobytes()


def test_training_a_layer_lowers_the_loss():
    """Adam + clipping on a real LSTM (parameters()/grads, in place, in the loop)."""
    rng = np.random.default_rng(0)
    layer = fr.LSTM(3, 8, dtype="float64", seed=0)
    x = rng.standard_normal((6, 4, 3))
    target = fr.LSTM(3, 8, dtype="float64", seed=1)(x)[0]  # reachable: a teacher LSTM
    opt = optim.Adam(lr=0.02)
    opt.attach(layer.parameters())
    arrays = {n: p for n, p, _ in layer.parameters()}
    losses = []
    for _ in range(40):
        y, state = layer.forward(x)
        losses.append(0.5 * float(np.sum((y - target) ** 2)))
        opt.zero_grad()
        layer.backward(y - target)
        optim.clip_grad_norm(opt.params, max_norm=5.0)
        opt.step()
    assert losses[-1] < 0.1 * losses[0]
    assert all(layer.params[n] is p for n, p in arrays.items())


# ---- attach ---------------------------------------------------------------------------
def test_reattach_keeps_matching_state_and_drops_the_rest(rng):
    triples = _params(rng, np.float64, shapes=[(3,), (4,)])
    opt = optim.Adam(lr=0.1, params=triples)
    _fill_grads(rng, triples)
    opt.step()
    config, _ = opt.state_dict()
    assert [e["step"] for e in config["params"]] == [1, 1]
    # same name/shape at position 0, a different name at position 1
    opt.attach([triples[0], ("other", np.zeros(4), np.zeros(4))])
    config, arrays = opt.state_dict()
    assert [e["step"] for e in config["params"]] == [1, 0]
    assert sorted(arrays) == ["0.p0.exp_avg", "0.p0.exp_avg_sq"]
    opt.reset()
    assert opt.state_dict()[1] == {}


def test_attach_accepts_a_layer():
    layer = fr.GRU(2, 3, seed=0)
    opt = optim.SGD(lr=0.1, params=layer)
    assert [n for n, _, _ in opt.params] == [n for n, _, _ in layer.parameters()]


@pytest.mark.parametrize("bad, match", [
    (lambda: [("w", np.zeros(3), np.zeros(4))], "params\\[0\\].*grad must match"),
    (lambda: [("w", np.zeros(3), np.zeros(3, np.float32))], "grad must match"),
    (lambda: [("w", np.zeros(3, np.int64), np.zeros(3, np.int64))], "float32 or float64"),
    (lambda: [("w", [0.0, 1.0], np.zeros(2))], "NumPy array"),
    (lambda: [("w", np.zeros(3))], "triple"),
    (lambda: [(0, np.zeros(3), np.zeros(3))], "name must be a str"),
    (lambda: np.zeros(3), "triples"),
])
def test_attach_rejects_bad_params(bad, match):
    with pytest.raises((TypeError, ValueError), match=match):
        optim.Adam().attach(bad())


def test_attach_rejects_shared_and_read_only_memory():
    p = np.zeros(4)
    with pytest.raises(ValueError, match="share memory"):
        optim.SGD().attach([("a", p, np.zeros(4)), ("b", p, np.zeros(4))])
    with pytest.raises(ValueError, match="share memory"):
        optim.SGD().attach([("a", p, p)])
    ro = np.zeros(4)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        optim.SGD().attach([("a", ro, np.zeros(4))])


# ---- hyper-parameters, config, get ----------------------------------------------------
@pytest.mark.parametrize("make, arg", [
    (lambda: optim.SGD(lr=-0.1), "lr"),
    (lambda: optim.SGD(lr=float("nan")), "lr"),
    (lambda: optim.SGD(momentum=-0.5), "momentum"),
    (lambda: optim.SGD(weight_decay=-1), "weight_decay"),
    (lambda: optim.SGD(nesterov=True), "nesterov"),
    (lambda: optim.SGD(momentum=0.9, dampening=0.1, nesterov=True), "nesterov"),
    (lambda: optim.Adam(lr=-1e-3), "lr"),
    (lambda: optim.Adam(betas=(1.0, 0.999)), "betas\\[0\\]"),
    (lambda: optim.Adam(betas=(0.9, -0.1)), "betas\\[1\\]"),
    (lambda: optim.Adam(betas=0.9), "betas"),
    (lambda: optim.Adam(eps=-1e-8), "eps"),
    (lambda: optim.Adam(weight_decay=-0.1), "weight_decay"),
    (lambda: optim.Adam(amsgrad=1), "amsgrad"),
    (lambda: optim.AdamW(weight_decay=-0.01), "weight_decay"),
    (lambda: optim.RMSprop(alpha=1.5), "alpha"),
    (lambda: optim.RMSprop(eps=-1.0), "eps"),
    (lambda: optim.RMSprop(momentum=-0.1), "momentum"),
    (lambda: optim.RMSprop(centered="yes"), "centered"),
    (lambda: optim.SGD(lr="0.1"), "lr"),
])
def test_bad_hyper_parameters_raise(make, arg):
    with pytest.raises((ValueError, TypeError), match=arg):
        make()


def test_lr_setter_validates():
    opt = optim.Adam()
    opt.lr = 0.5
    assert opt.lr == 0.5 and opt.get_config()["lr"] == 0.5
    for bad in (-1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="lr"):
            opt.lr = bad
    assert opt.lr == 0.5


@pytest.mark.parametrize("case", OPT_CASES, ids=_case_id)
def test_get_config_rebuilds(case):
    name, kw = case
    opt = optim.get(name.lower(), **kw)
    cfg = json.loads(json.dumps(opt.get_config()))
    again = optim.get(name, **cfg)
    assert type(again) is type(opt) and again.get_config() == opt.get_config()


def test_get():
    adam = optim.Adam(lr=0.5)
    assert optim.get(adam) is adam
    assert isinstance(optim.get("ADAMW"), optim.AdamW)
    assert optim.get("adamw").get_config()["weight_decay"] == 0.01
    assert optim.get("sgd", lr=0.3, momentum=0.5).get_config()["momentum"] == 0.5
    with pytest.raises(ValueError, match="known.*adam.*rmsprop.*sgd"):
        optim.get("adagrad")
    with pytest.raises(TypeError):
        optim.get(adam, lr=0.1)
    with pytest.raises(TypeError):
        optim.get(3)


# ---- state_dict -------------------------------------------------------------------------
@pytest.mark.parametrize("case", OPT_CASES, ids=_case_id)
def test_state_dict_round_trip_continues_identically(case, rng, tmp_path):
    name, kw = case
    triples = _params(rng, np.float32)
    opt = optim.get(name, **kw)
    opt.attach(triples)
    for _ in range(4):
        _fill_grads(rng, triples)
        opt.step()
    opt.lr = opt.lr * 0.5  # a schedule's change travels with the checkpoint
    config, arrays = opt.state_dict()
    config = json.loads(json.dumps(config))          # JSON-able, survives JSON
    np.savez(tmp_path / "opt.npz", **arrays)         # arrays survive npz
    with np.load(tmp_path / "opt.npz") as f:
        arrays = {k: f[k] for k in f.files}

    clone = [(n, p.copy(), g.copy()) for n, p, g in triples]
    restored = optim.get(config["class"], **config["config"])
    restored.attach(clone)
    restored.load_state_dict(config, arrays)
    assert restored.lr == opt.lr and restored.step_count == 4
    for _ in range(5):
        _fill_grads(rng, triples)
        for (_, _, g), (_, _, g2) in zip(triples, clone):
            g2[...] = g
        opt.step()
        restored.step()
    for (_, p, _), (_, p2, _) in zip(triples, clone):
        assert p.tobytes() == p2.tobytes()


def test_state_dict_is_a_copy(rng):
    triples = _params(rng, np.float64, shapes=[(3,)])
    opt = optim.Adam(params=triples)
    _fill_grads(rng, triples)
    opt.step()
    _, arrays = opt.state_dict()
    snap = {k: v.copy() for k, v in arrays.items()}
    opt.step()
    for k in arrays:
        np.testing.assert_array_equal(arrays[k], snap[k])


def test_load_state_dict_checks(rng):
    triples = _params(rng, np.float64, shapes=[(3,), (2, 2)])
    opt = optim.Adam(params=triples)
    _fill_grads(rng, triples)
    opt.step()
    config, arrays = opt.state_dict()

    def fresh(params=None):
        o = optim.Adam()
        o.attach(params if params is not None else
                 [(n, p.copy(), g.copy()) for n, p, g in triples])
        return o

    with pytest.raises(ValueError, match="saved from a Adam.*SGD"):
        optim.SGD(params=[(n, p.copy(), g.copy()) for n, p, g in triples]) \
            .load_state_dict(config, arrays)
    with pytest.raises(ValueError, match="attach"):
        optim.Adam().load_state_dict(config, arrays)
    with pytest.raises(ValueError, match="params\\[1\\].*'p1'.*'q1'"):
        fresh([triples[0], ("q1", np.zeros((2, 2)), np.zeros((2, 2)))]) \
            .load_state_dict(config, arrays)
    with pytest.raises(ValueError, match="params\\[1\\]"):
        fresh([triples[0], ("p1", np.zeros(4), np.zeros(4))]).load_state_dict(config, arrays)
    with pytest.raises(ValueError, match="params\\[0\\].*float32"):
        fresh([("p0", np.zeros(3, np.float32), np.zeros(3, np.float32)), triples[1]]) \
            .load_state_dict(config, arrays)
    missing = dict(arrays)
    del missing["1.p1.exp_avg_sq"]
    with pytest.raises(ValueError, match="missing.*1.p1.exp_avg_sq"):
        fresh().load_state_dict(config, missing)
    with pytest.raises(ValueError, match="unexpected.*junk"):
        fresh().load_state_dict(config, dict(arrays, junk=np.zeros(1)))
    with pytest.raises(ValueError, match="shape"):
        fresh().load_state_dict(config, dict(arrays, **{"0.p0.exp_avg": np.zeros(4)}))
    bad = json.loads(json.dumps(config))
    bad["config"]["betas"] = [1.5, 0.9]
    with pytest.raises(ValueError, match="betas"):
        fresh().load_state_dict(bad, arrays)
    # a failed load changes nothing
    o = fresh()
    with pytest.raises(ValueError):
        o.load_state_dict(config, missing)
    assert o.state_dict()[1] == {} and o.step_count == 0
    # an amsgrad checkpoint brings its extra buffer along
    ams = optim.Adam(amsgrad=True, params=[(n, p.copy(), g.copy()) for n, p, g in triples])
    ams.step()
    c2, a2 = ams.state_dict()
    o = fresh()
    o.load_state_dict(c2, a2)
    assert o.get_config()["amsgrad"] is True and "0.p0.max_exp_avg_sq" in o.state_dict()[1]


# ---- schedules against torch ------------------------------------------------------------
def _torch_sched_lrs(torch, make, epochs, metrics=None, lr=0.1):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=lr)
    sched = make(torch.optim.lr_scheduler, opt)
    lrs = [opt.param_groups[0]["lr"]]
    for e in range(epochs):
        opt.step()  # no grads: a no-op that keeps the scheduler's order check quiet
        sched.step(*(() if metrics is None else (metrics[e],)))
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


def _our_sched_lrs(make, epochs, metrics=None, lr=0.1):
    opt = optim.SGD(lr=lr)
    sched = make(optim, opt)
    lrs = [opt.lr]
    for e in range(epochs):
        got = sched.step(*(() if metrics is None else (metrics[e],)))
        assert got == opt.lr == sched.get_last_lr()
        lrs.append(opt.lr)
    return lrs


SCHED_CASES = {
    "step": lambda m, o: m.StepLR(o, step_size=3, gamma=0.5),
    "step1": lambda m, o: m.StepLR(o, 1),
    "exponential": lambda m, o: m.ExponentialLR(o, gamma=0.93),
    "cosine": lambda m, o: m.CosineAnnealingLR(o, T_max=10),
    "cosine_eta_min_past_T": lambda m, o: m.CosineAnnealingLR(o, T_max=7, eta_min=0.01),
    "linear": lambda m, o: m.LinearLR(o, start_factor=0.25, end_factor=0.9, total_iters=6),
    "linear_default": lambda m, o: m.LinearLR(o),
    "lambda": lambda m, o: m.LambdaLR(o, lambda e: 1.0 / (1 + e) ** 0.5),
}


@pytest.mark.parametrize("key", sorted(SCHED_CASES))
def test_schedule_matches_torch(torch, key):
    make = SCHED_CASES[key]
    expected = _torch_sched_lrs(torch, make, 40)
    got = _our_sched_lrs(make, 40)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


def test_linear_warmup_is_torch_linear_lr(torch):
    expected = _torch_sched_lrs(
        torch, lambda m, o: m.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=4), 8)
    got = _our_sched_lrs(lambda m, o: m.LinearWarmup(o, warmup_epochs=4), 8)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    assert got[0] == pytest.approx(0.01) and got[4:] == pytest.approx([0.1] * 5)


# a metric that improves, stalls (noise within the threshold), worsens, improves again
PLATEAU_METRICS = ([1.0, 0.8, 0.6, 0.6, 0.59999, 0.61, 0.7, 0.6, 0.65, 0.62, 0.5, 0.5]
                   + [0.49] * 6 + [0.3, 0.31, 0.32, 0.33, 0.34, 0.35, 0.2] + [0.2] * 13)
PLATEAU_CASES = [
    dict(),
    dict(patience=0),
    dict(patience=2, factor=0.5),
    dict(patience=1, cooldown=2, factor=0.5),
    dict(patience=1, threshold=0.05, threshold_mode="abs"),
    dict(patience=1, factor=0.2, min_lr=0.005),
    dict(patience=0, factor=0.9, eps=0.02),
]


@pytest.mark.parametrize("kw", PLATEAU_CASES, ids=str)
@pytest.mark.parametrize("mode", ["min", "max"])
def test_plateau_matches_torch(torch, kw, mode):
    metrics = PLATEAU_METRICS if mode == "min" else [2.0 - m for m in PLATEAU_METRICS]

    def make(m, o):
        return m.ReduceLROnPlateau(o, mode=mode, **kw)

    expected = _torch_sched_lrs(torch, make, len(metrics), metrics)
    got = _our_sched_lrs(make, len(metrics), metrics)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    if kw in (dict(), dict(patience=0)):
        assert len(set(got)) > 1  # the sequence does exercise a reduction


def test_plateau_nan_metric_is_a_bad_epoch():
    opt = optim.SGD(lr=1.0)
    sched = optim.ReduceLROnPlateau(opt, patience=1, factor=0.5)
    for m in (1.0, float("nan"), float("nan")):
        sched.step(m)
    assert opt.lr == 0.5
    sched.step(np.float32(0.5))  # NumPy scalars are fine
    with pytest.raises(TypeError, match="metric"):
        sched.step("low")


def _sched_factories():
    return {
        "step": lambda o: optim.StepLR(o, step_size=2, gamma=0.5),
        "exponential": lambda o: optim.ExponentialLR(o, gamma=0.9),
        "cosine": lambda o: optim.CosineAnnealingLR(o, T_max=5, eta_min=1e-3),
        "linear": lambda o: optim.LinearLR(o, start_factor=0.5, total_iters=4),
        "warmup": lambda o: optim.LinearWarmup(o, 3),
        "lambda": lambda o: optim.LambdaLR(o, lambda e: 0.9 ** e),
        "plateau": lambda o: optim.ReduceLROnPlateau(o, patience=1, cooldown=1,
                                                     factor=0.5),
    }


@pytest.mark.parametrize("key", sorted(_sched_factories()))
def test_schedule_state_dict_round_trip(key):
    make = _sched_factories()[key]
    metrics = [1.0, 0.9, 0.95, 0.97, 0.96, 0.99, 0.98, 0.5, 0.6, 0.7, 0.8, 0.9]

    def advance(sched, epochs):
        out = []
        for e in epochs:
            out.append(sched.step(metrics[e]) if key == "plateau" else sched.step())
        return out

    opt = optim.Adam(lr=0.1)
    sched = make(opt)
    advance(sched, range(5))
    s_state = json.loads(json.dumps(sched.state_dict()))
    o_config, o_arrays = opt.state_dict()
    rest = advance(sched, range(5, 12))

    opt2 = optim.Adam(lr=0.1)
    sched2 = make(opt2)             # the schedule first, then both states
    opt2.load_state_dict(json.loads(json.dumps(o_config)), o_arrays)
    sched2.load_state_dict(s_state)
    assert advance(sched2, range(5, 12)) == rest
    if key != "lambda":
        cfg = sched.get_config()
        assert json.loads(json.dumps(cfg)) == cfg
        assert optim.get_schedule(key, optim.Adam(), **cfg).get_config() == cfg


def test_schedule_load_checks():
    opt = optim.SGD(lr=0.1)
    state = optim.StepLR(opt, 3).state_dict()
    with pytest.raises(ValueError, match="StepLR"):
        optim.ExponentialLR(optim.SGD(), 0.9).load_state_dict(state)
    with pytest.raises(ValueError, match="config"):
        optim.StepLR(optim.SGD(), 4).load_state_dict(state)


@pytest.mark.parametrize("make, arg", [
    (lambda o: optim.StepLR(o, step_size=0), "step_size"),
    (lambda o: optim.StepLR(o, step_size=2.5), "step_size"),
    (lambda o: optim.StepLR(o, 2, gamma=-0.1), "gamma"),
    (lambda o: optim.ExponentialLR(o, gamma=float("nan")), "gamma"),
    (lambda o: optim.CosineAnnealingLR(o, T_max=0), "T_max"),
    (lambda o: optim.CosineAnnealingLR(o, 5, eta_min=-1.0), "eta_min"),
    (lambda o: optim.LinearLR(o, start_factor=0.0), "start_factor"),
    (lambda o: optim.LinearLR(o, end_factor=1.5), "end_factor"),
    (lambda o: optim.LinearWarmup(o, 0), "warmup_epochs"),
    (lambda o: optim.LambdaLR(o, 0.5), "lr_lambda"),
    (lambda o: optim.LambdaLR(o, lambda e: -1.0), "lr_lambda"),
    (lambda o: optim.ReduceLROnPlateau(o, mode="lowest"), "mode"),
    (lambda o: optim.ReduceLROnPlateau(o, factor=1.0), "factor"),
    (lambda o: optim.ReduceLROnPlateau(o, patience=-1), "patience"),
    (lambda o: optim.ReduceLROnPlateau(o, threshold_mode="pct"), "threshold_mode"),
    (lambda o: optim.ReduceLROnPlateau(o, cooldown=-2), "cooldown"),
    (lambda o: optim.ReduceLROnPlateau(o, min_lr=-1e-3), "min_lr"),
    (lambda o: optim.StepLR("adam", 3), "optimizer"),
    (lambda o: optim.ReduceLROnPlateau(None), "optimizer"),
    (lambda o: optim.get_schedule("onecycle", o), "known"),
])
def test_bad_schedule_arguments_raise(make, arg):
    with pytest.raises((ValueError, TypeError), match=arg):
        make(optim.SGD(lr=0.1))


# ---- clipping -----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_matches_torch(torch, dtype, norm_type, max_norm, rng):
    grads = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    tparams = []
    for g in grads:
        t = torch.zeros(g.shape, dtype=getattr(torch, np.dtype(dtype).name),
                        requires_grad=True)
        t.grad = torch.tensor(g.copy())
        tparams.append(t)
    expected = float(torch.nn.utils.clip_grad_norm_(tparams, max_norm, norm_type))
    before = [g.copy() for g in grads]
    total = optim.clip_grad_norm(grads, max_norm, norm_type)
    assert isinstance(total, float)
    rtol = 1e-12 if dtype == np.float64 else 1e-6
    assert total == pytest.approx(expected, rel=rtol)
    for g, t in zip(grads, tparams):
        _close(g, t.grad.numpy(), dtype, "clipped grad")
    if max_norm > total:
        for g, b in zip(grads, before):
            np.testing.assert_array_equal(g, b)
    else:
        assert optim.grad_norm(grads, norm_type) == pytest.approx(max_norm, rel=1e-5)


def test_clip_grad_norm_in_place_triples_and_reproducible(rng):
    triples = _params(rng, np.float32)
    _fill_grads(rng, triples, scale=3.0)
    ids = [(id(g), g.ctypes.data) for _, _, g in triples]
    copy = [g.copy() for _, _, g in triples]
    total = optim.clip_grad_norm(triples, 1.0)
    assert total == optim.grad_norm(copy)   # same bits from the same values
    expected = math.sqrt(sum(float(np.sum(c.astype(np.float64) ** 2)) for c in copy))
    assert total == pytest.approx(expected, rel=1e-14)
    assert [(id(g), g.ctypes.data) for _, _, g in triples] == ids
    scale = np.float32(1.0 / (total + 1e-6))
    for (_, _, g), c in zip(triples, copy):
        np.testing.assert_array_equal(g, c * scale)
    # a non-contiguous gradient and a large one (more than one float64 block)
    big = rng.standard_normal(200_000)
    view = rng.standard_normal((50, 8))[:, ::3]
    both = math.sqrt(float(np.sum(big ** 2)) + float(np.sum(view ** 2)))
    assert optim.grad_norm([big, view]) == pytest.approx(both, rel=1e-13)
    assert optim.grad_norm([]) == 0.0 == optim.clip_grad_norm([], 1.0)


@pytest.mark.parametrize("bad", [np.inf, np.nan])
@pytest.mark.parametrize("norm_type", [2.0, math.inf])
def test_clip_grad_norm_non_finite_leaves_grads(bad, norm_type, rng):
    grads = [rng.standard_normal(5), rng.standard_normal(3)]
    grads[1][1] = bad
    before = [g.copy() for g in grads]
    total = optim.clip_grad_norm(grads, 1.0, norm_type)
    assert not math.isfinite(total)
    assert math.isnan(total) == math.isnan(bad)
    for g, b in zip(grads, before):
        np.testing.assert_array_equal(g, b)
    with pytest.raises(FloatingPointError, match="norm"):
        optim.clip_grad_norm(grads, 1.0, norm_type, error_if_nonfinite=True)
    for g, b in zip(grads, before):
        np.testing.assert_array_equal(g, b)


def test_clip_grad_value(torch, rng):
    grads = [rng.standard_normal(s) * 2 for s in SHAPES]
    tparams = []
    for g in grads:
        t = torch.zeros(g.shape, dtype=torch.float64, requires_grad=True)
        t.grad = torch.tensor(g.copy())
        tparams.append(t)
    torch.nn.utils.clip_grad_value_(tparams, 0.7)
    ids = [id(g) for g in grads]
    assert optim.clip_grad_value(grads, 0.7) is None
    for g, t in zip(grads, tparams):
        np.testing.assert_array_equal(g, t.grad.numpy())
    assert [id(g) for g in grads] == ids


@pytest.mark.parametrize("call, arg", [
    (lambda g: optim.clip_grad_norm(g, -1.0), "max_norm"),
    (lambda g: optim.clip_grad_norm(g, float("nan")), "max_norm"),
    (lambda g: optim.clip_grad_norm(g, 1.0, norm_type=0), "norm_type"),
    (lambda g: optim.clip_grad_norm(g, 1.0, norm_type="l2"), "norm_type"),
    (lambda g: optim.clip_grad_norm([[1.0, 2.0]], 1.0), "grads\\[0\\]"),
    (lambda g: optim.clip_grad_norm([np.arange(3)], 1.0), "grads\\[0\\]"),
    (lambda g: optim.clip_grad_norm(5.0, 1.0), "grads"),
    (lambda g: optim.clip_grad_value(g, -0.1), "clip_value"),
])
def test_bad_clip_arguments_raise(call, arg):
    with pytest.raises((ValueError, TypeError), match=arg):
        call([np.ones(3)])


# ---- the fused Adam step (src/include/fastrnn_optim.h) -----------------------------

ADAM_CASES = [
    (optim.Adam, {}), (optim.Adam, {"weight_decay": 0.05}), (optim.Adam, {"amsgrad": True}),
    # 1 - beta1 >= 0.5: torch's lerp takes its other branch
    (optim.Adam, {"betas": (0.3, 0.6), "lr": 0.5, "eps": 1e-3}),
    (optim.AdamW, {}), (optim.AdamW, {"amsgrad": True, "weight_decay": 0.1,
                                      "betas": (0.1, 0.95)}),
]


@pytest.mark.parametrize("case", range(len(ADAM_CASES)))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_adam_gives_the_numpy_bits(case, dtype, monkeypatch, restore_threads):
    """The backend's one-pass Adam / AdamW step against the NumPy sequence it
    replaces: the same bits in the parameters and every moment buffer over 6
    steps, on 1 and 2 threads, sizes 1, a prime and one the threads split,
    gradients over 8 orders of magnitude with a NaN and an inf among them."""
    cls, kw = ADAM_CASES[case]

    def run(fused, n):
        monkeypatch.setattr(cls, "_fused", fused)
        rng = np.random.default_rng(n)
        p = rng.standard_normal(n).astype(dtype)
        g = np.zeros_like(p)
        opt = cls(params=[("w", p, g)], **kw)
        for s in range(6):
            g[:] = rng.standard_normal(n).astype(dtype) * 10.0 ** rng.uniform(-6, 2)
            if s == 3 and n > 3:
                g[1], g[2] = np.nan, np.inf
            with np.errstate(invalid="ignore"):
                opt.step()
        return [p] + [opt._state[0][b] for b in opt._buffer_names()]

    for nt in (1, 2):
        fr.set_num_threads(nt)
        for n in (1, 7, 70001):
            for a, b in zip(run(True, n), run(False, n)):
                assert np.array_equal(a.view(np.uint8), b.view(np.uint8)), (nt, n)


def test_fused_adam_declines_what_it_does_not_take():
    """Arrays the kernel does not take (a non-contiguous view, float16, a
    read-only parameter, two arrays sharing memory) leave the step to NumPy:
    the backend answers False and nothing is written; a bad option is an
    error."""
    be = fr.backends.get("cpu")
    p = np.ones((4, 6), np.float32)[:, ::2]
    g, m, v = (np.ones_like(p) for _ in range(3))
    args = (0.1, 0.999, 0.001, 0.5, 1e-8, -0.01, 0.0, 1.0, 0)
    assert be.adam_step(p, g, m, v, None, *args) is False
    assert np.all(p == 1) and np.all(m == 1)
    h = np.ones(5, np.float16)
    assert be.adam_step(h, h.copy(), h.copy(), h.copy(), None, *args) is False
    q = np.ones(5, np.float32)
    assert be.adam_step(q, q.copy(), q.copy(), q.copy(), None, *args) is True
    ro = np.ones(5, np.float32)
    ro.flags.writeable = False
    assert be.adam_step(ro, q.copy(), q.copy(), q.copy(), None, *args) is False
    # arrays that overlap (the kernel's pointers are restrict)
    buf = np.ones(9, np.float32)
    assert be.adam_step(buf[:5], buf[4:], q.copy(), q.copy(), None, *args) is False
    assert be.adam_step(q, q.copy(), q, q.copy(), None, *args) is False
    assert np.all(buf == 1)
    with pytest.raises(ValueError, match="wd_mode"):
        be.adam_step(q, q.copy(), q.copy(), q.copy(), None, *args[:-1], 3)
