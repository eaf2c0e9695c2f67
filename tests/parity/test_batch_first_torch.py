"""The kernels' batch-first y and dy (fr_desc.y_batch_first) against torch
modules built with batch_first=True, on the float32 fast loop's paths (the
units split, the batch split, the variable-length batch split, one step)
and the float64 portable loop: odd and prime sizes, batch 1 (where the two
layouts are one and the time-major call runs), lengths and given initial
states; outputs, final states and every gradient. The float64 central
differences of the same path are in tests/core/test_gradcheck.py
(test_directional_gradients_batch_first, test_batch_first_gradients_*).
"""
import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastrnn as fr  # noqa: E402
from fastrnn import backends  # noqa: E402


def _state(cell, K, B, H, dtype, rng):
    h0 = (0.5 * rng.standard_normal((K, B, H))).astype(dtype)
    return (h0, (0.5 * rng.standard_normal((K, B, H))).astype(dtype)) if cell == "lstm" else h0


# (cell, B, T, I, H, layers, bidirectional, lengths): the units split
# (B*G*H*H >= 65,536 a step), the batch split (16 rows a thread, or 4 with
# a small W_hh), the variable-length batch split, one step, batch 1
CASES = [
    ("lstm", 8, 9, 13, 47, 1, False, None),
    ("gru", 8, 9, 13, 53, 2, True, [9, 1, 4, 9, 7, 2, 9, 5]),
    ("lstm", 37, 6, 5, 19, 1, False, None),
    ("rnn_tanh", 40, 5, 7, 31, 2, False, None),
    ("lstm", 37, 6, 5, 20, 1, True, "random"),
    ("gru", 8, 1, 16, 48, 1, False, None),
    ("lstm", 1, 11, 3, 29, 2, True, [6]),
    ("rnn_relu", 5, 7, 3, 11, 1, True, [7, 3, 1, 7, 2]),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c[:7])))
def test_batch_first_layer_matches_torch(case, dtype, helpers, rng, restore_threads):
    cell, B, T, I, H, L, bi, lengths = case
    fr.set_num_threads(2)
    module, layer = helpers.make_pair(cell, I, H, num_layers=L, bidirectional=bi,
                                      batch_first=True, dtype=dtype)
    oracle = copy.deepcopy(module).double()
    D = 2 if bi else 1
    if lengths == "random":
        lengths = rng.integers(1, T + 1, size=B)
    lengths = None if lengths is None else np.array(lengths)
    x = rng.standard_normal((B, T, I)).astype(dtype)
    state0 = _state(cell, L * D, B, H, dtype, rng)
    R = rng.standard_normal((B, T, D * H)).astype(dtype)
    ref = helpers.torch_run(oracle, x, state0, lengths, R=R, batch_first=True)
    seen = []
    be = backends.get("cpu")
    forward, backward = be.rnn_forward, be.rnn_backward
    try:
        be.rnn_forward = lambda *a, **k: (seen.append(k.get("batch_first", False)), forward(*a, **k))[1]
        be.rnn_backward = lambda *a, **k: (seen.append(k.get("batch_first", False)),
                                           backward(*a, **k))[1]
        layer.zero_grad()
        y, st = layer.forward(x, state0=state0, lengths=lengths)
        dx, dstate0 = layer.backward(R)
    finally:
        be.rnn_forward, be.rnn_backward = forward, backward
    assert seen == [B > 1, B > 1]   # the kernels' own layout, where it differs
    dt = np.dtype(dtype)
    helpers.assert_close(y, ref["y"], dt, "y")
    h_n = st[0] if cell == "lstm" else st
    helpers.assert_close(h_n, ref["h_n"], dt, "h_n")
    if cell == "lstm":
        helpers.assert_close(st[1], ref["c_n"], dt, "c_n")
    helpers.assert_close(dx, ref["dx"], dt, "dx")
    helpers.assert_close(dstate0[0] if cell == "lstm" else dstate0, ref["dh0"], dt, "dh0")
    if cell == "lstm":
        helpers.assert_close(dstate0[1], ref["dc0"], dt, "dc0")
    for name, g in ref["grads"].items():
        helpers.assert_close(layer.grads[name], g, dt, f"grads[{name}]")
    y_inf, _ = layer(x, state0, lengths=lengths)
    np.testing.assert_array_equal(y_inf, y)
