"""Shared helpers for the fastrnn test-suite.

Everything torch-related is optional: torch is imported lazily, so test files
that need no torch (the NumPy reference tests) still run where it is missing.

Helpers are plain functions exposed through the ``helpers`` fixture (a
namespace), so no test file has to import ``conftest`` by name.
"""
import types

import numpy as np
import pytest

try:  # keep CI fast and deterministic: torch's intra-op pool is not our subject
    import torch as _torch

    _torch.set_num_threads(1)
except Exception:  # pragma: no cover - torch is optional
    _torch = None


CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru")

# torch's parameter name stems, in torch's order per layer and direction
PARAM_STEMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")

GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}


def is_lstm(cell):
    return cell == "lstm"


def param_names(num_layers, bidirectional, bias=True):
    """torch's state_dict keys, in torch's order."""
    names = []
    for k in range(num_layers):
        for sfx in ("", "_reverse") if bidirectional else ("",):
            for stem in PARAM_STEMS if bias else PARAM_STEMS[:2]:
                names.append(f"{stem}_l{k}{sfx}")
    return names


def param_shapes(cell, input_size, hidden_size, num_layers, bidirectional, bias=True):
    """torch's parameter shapes, by name."""
    G, H = GATES[cell], hidden_size
    D = 2 if bidirectional else 1
    shapes = {}
    for name in param_names(num_layers, bidirectional, bias):
        layer = int(name.split("_l")[1].split("_")[0])
        In = input_size if layer == 0 else D * H
        if name.startswith("weight_ih"):
            shapes[name] = (G * H, In)
        elif name.startswith("weight_hh"):
            shapes[name] = (G * H, H)
        else:
            shapes[name] = (G * H,)
    return shapes


def make_fr(cell, input_size, hidden_size, **kw):
    """Construct a fastrnn layer of the given cell kind."""
    import fastrnn as fr

    if cell in ("rnn_tanh", "rnn_relu"):
        return fr.RNN(input_size, hidden_size, nonlinearity=cell[4:], **kw)
    if cell == "lstm":
        return fr.LSTM(input_size, hidden_size, **kw)
    if cell == "gru":
        return fr.GRU(input_size, hidden_size, **kw)
    raise ValueError(cell)


def make_torch(cell, input_size, hidden_size, num_layers=1, bias=True,
               batch_first=False, bidirectional=False, dropout=0.0,
               torch_seed=0, double=False):
    """Construct the torch module of the given cell kind (default torch init)."""
    import torch

    torch.manual_seed(torch_seed)
    kw = dict(num_layers=num_layers, bias=bias, batch_first=batch_first,
              bidirectional=bidirectional, dropout=dropout)
    if cell in ("rnn_tanh", "rnn_relu"):
        m = torch.nn.RNN(input_size, hidden_size, nonlinearity=cell[4:], **kw)
    elif cell == "lstm":
        m = torch.nn.LSTM(input_size, hidden_size, **kw)
    elif cell == "gru":
        m = torch.nn.GRU(input_size, hidden_size, **kw)
    else:
        raise ValueError(cell)
    if double:
        m = m.double()
    return m


def torch_state_to_numpy(module):
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def make_pair(cell, input_size, hidden_size, num_layers=1, bias=True,
              batch_first=False, bidirectional=False, dtype="float32",
              torch_seed=0):
    """A torch module and the fastrnn layer holding the same weights.

    For dtype float32 the torch module is float32 (its default init) and the
    fastrnn layer receives its weights through load_state_dict; use
    ``module.double()`` (on a deepcopy) as a float64 oracle where wanted.
    """
    m = make_torch(cell, input_size, hidden_size, num_layers=num_layers, bias=bias,
                   batch_first=batch_first, bidirectional=bidirectional,
                   torch_seed=torch_seed, double=(dtype == "float64"))
    layer = make_fr(cell, input_size, hidden_size, num_layers=num_layers, bias=bias,
                    batch_first=batch_first, bidirectional=bidirectional, dtype=dtype)
    layer.load_state_dict(torch_state_to_numpy(m))
    return m, layer


def torch_run(module, x, state0=None, lengths=None, R=None, R_h=None, R_c=None,
              batch_first=False):
    """Run a torch recurrent module with autograd; return every value and grad.

    loss = sum(y * R) + sum(h_n * R_h) + sum(c_n * R_c) (terms with None are
    left out). Inputs are NumPy arrays, converted to the module's dtype.
    lengths (or None) use pack_padded_sequence(enforce_sorted=False) +
    pad_packed_sequence(total_length=T): torch's variable-length semantics.
    Returns a dict with y, h_n, c_n, dx, dh0, dc0 (NumPy, None where absent)
    and grads (dict name -> NumPy).
    """
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    tdtype = next(module.parameters()).dtype
    lstm = isinstance(module, torch.nn.LSTM)
    module.zero_grad(set_to_none=True)

    xt = torch.tensor(np.asarray(x), dtype=tdtype, requires_grad=True)
    T = xt.shape[1] if batch_first else xt.shape[0]
    h0t = c0t = None
    hx = None
    if state0 is not None:
        if lstm:
            h0t = torch.tensor(np.asarray(state0[0]), dtype=tdtype, requires_grad=True)
            c0t = torch.tensor(np.asarray(state0[1]), dtype=tdtype, requires_grad=True)
            hx = (h0t, c0t)
        else:
            h0t = torch.tensor(np.asarray(state0), dtype=tdtype, requires_grad=True)
            hx = h0t

    if lengths is not None:
        packed = pack_padded_sequence(
            xt, torch.as_tensor(np.asarray(lengths), dtype=torch.int64),
            batch_first=batch_first, enforce_sorted=False)
        out, st = module(packed, hx)
        y, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=T)
    else:
        y, st = module(xt, hx)
    h_n, c_n = (st if lstm else (st, None))

    loss = y.new_zeros(())
    if R is not None:
        loss = loss + (y * torch.tensor(np.asarray(R), dtype=tdtype)).sum()
    if R_h is not None:
        loss = loss + (h_n * torch.tensor(np.asarray(R_h), dtype=tdtype)).sum()
    if R_c is not None and lstm:
        loss = loss + (c_n * torch.tensor(np.asarray(R_c), dtype=tdtype)).sum()
    if loss.requires_grad:
        loss.backward()

    def np_(t):
        return None if t is None else t.detach().numpy().copy()

    def g_(t):
        if t is None:
            return None
        return np.zeros(tuple(t.shape)) if t.grad is None else t.grad.numpy().copy()

    grads = {}
    for name, p in module.named_parameters():
        grads[name] = (np.zeros(tuple(p.shape)) if p.grad is None
                       else p.grad.detach().numpy().copy())
    return dict(y=np_(y), h_n=np_(h_n), c_n=np_(c_n), dx=g_(xt), dh0=g_(h0t),
                dc0=g_(c0t), grads=grads)


def assert_close(actual, expected, dtype, name="", rtol=None, atol=None):
    """Compare with the suite's tolerances.

    float32: rtol 2e-4, atol 1e-5 scaled by the largest |expected| (a
    gradient that is a sum of many O(scale) terms can only be resolved to
    a few float32 ulps of that scale); float64: rtol 1e-9, atol 1e-10 scaled
    likewise.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (
        f"{name}: shape {actual.shape} != expected {expected.shape}")
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    if str(np.dtype(dtype)) == "float32":
        rtol = 2e-4 if rtol is None else rtol
        atol = 1e-5 * scale if atol is None else atol
    else:
        rtol = 1e-9 if rtol is None else rtol
        atol = 1e-10 * scale if atol is None else atol
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol,
                               err_msg=f"mismatch in {name}")


def random_lengths(rng, B, T, mode):
    """mode: 'none' -> None, 'equal' -> all T, 'unequal' -> random in 1..T."""
    if mode == "none":
        return None
    if mode == "equal":
        return np.full(B, T, dtype=np.int64)
    lengths = rng.integers(1, T + 1, size=B).astype(np.int64)
    if B > 1 and T > 1 and np.all(lengths == lengths[0]):
        lengths[0] = 1 if lengths[0] != 1 else T
    return lengths


def stream(layer, xs, state=None):
    """Step a layer through the frames xs: (stacked outputs, last state)."""
    ys = []
    for xt in xs:
        y, state = layer.step(xt, state)
        ys.append(y)
    return np.stack(ys), state


helpers_ns = types.SimpleNamespace(
    CELLS=CELLS, GATES=GATES, PARAM_STEMS=PARAM_STEMS, is_lstm=is_lstm,
    param_names=param_names, param_shapes=param_shapes, make_fr=make_fr,
    make_torch=make_torch, make_pair=make_pair,
    torch_state_to_numpy=torch_state_to_numpy, torch_run=torch_run,
    assert_close=assert_close, random_lengths=random_lengths, stream=stream,
)


@pytest.fixture
def helpers():
    """Namespace of the helpers above (make_fr, make_pair, torch_run, ...)."""
    return helpers_ns


@pytest.fixture
def rng(request):
    """A NumPy Generator seeded from the test's node id (stable across runs).

    The id is taken as it was before the files moved into folders
    (tests/core/test_x.py::t -> tests/test_x.py::t), so every test still
    draws the numbers it always drew."""
    import zlib

    path, sep, rest = request.node.nodeid.partition("::")
    nodeid = "tests/" + path.rsplit("/", 1)[-1] + sep + rest
    return np.random.default_rng(zlib.crc32(nodeid.encode()))


@pytest.fixture
def restore_threads():
    """Restore fastrnn's thread setting after a test that changes it: the
    setting itself (None, OpenMP's default, stays None; restoring the count it
    gave would pin it and hide later threadpoolctl limits from other tests)."""
    import fastrnn as fr
    from fastrnn import _threads

    before = _threads._num_threads
    yield fr.get_num_threads()
    fr.set_num_threads(before)
