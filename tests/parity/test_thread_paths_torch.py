"""The two thread paths added for shared cores and small bidirectional
layers, against torch autograd and float64 central differences.

- Directions side by side (src/portable/rnn_impl.h, forward_dir): a
  bidirectional layer too small to split a direction runs each direction on
  a thread of its own when fastrnn has 2 threads. Checked in float32 and
  float64 (the portable loop takes it too), forward and backward, odd sizes,
  batch 1, lengths and given initial states; float64 gradients by central
  differences with 2 threads.
- Slices taken over (src/fast/forward.h, slices_wait): the float32 fast
  loop's units split with its helpers sent home after step 0 (forced with
  the test switch), the first thread computing their slices. Float32 only:
  float64 never runs the fast loop, so its gradient check would not reach
  this path; the path's bits equal one thread's (tests/core/
  test_adaptive_threads.py), and here its outputs and gradients meet torch's.
"""
import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastrnn as fr  # noqa: E402
from fastrnn.backends.cpu import _ext  # noqa: E402

CELLS = ("lstm", "gru", "rnn_tanh")


def _state(cell, D, B, H, dtype, rng):
    h0 = rng.standard_normal((D, B, H)).astype(dtype)
    return (h0, rng.standard_normal((D, B, H)).astype(dtype)) if cell == "lstm" else h0


def _against_torch(helpers, cell, I, H, B, T, L, bidirectional, dtype, rng, lengths):
    module, layer = helpers.make_pair(cell, I, H, num_layers=L, bidirectional=bidirectional,
                                      dtype=dtype)
    oracle = copy.deepcopy(module).double()
    D = L * (2 if bidirectional else 1)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    state0 = _state(cell, D, B, H, dtype, rng)
    R = rng.standard_normal((T, B, (2 if bidirectional else 1) * H)).astype(dtype)
    ref = helpers.torch_run(oracle, x, state0, lengths, R=R)
    layer.zero_grad()
    y, st = layer.forward(x, state0=state0, lengths=lengths)
    helpers.assert_close(y, ref["y"], np.dtype(dtype), "y")
    h_n = st[0] if cell == "lstm" else st
    helpers.assert_close(h_n, ref["h_n"], np.dtype(dtype), "h_n")
    if cell == "lstm":
        helpers.assert_close(st[1], ref["c_n"], np.dtype(dtype), "c_n")
    y_inf, _ = layer(x, state0, lengths=lengths)
    np.testing.assert_array_equal(y_inf, y)
    dx, _ = layer.backward(R)
    helpers.assert_close(dx, ref["dx"], np.dtype(dtype), "dx")
    for name, g in ref["grads"].items():
        helpers.assert_close(layer.grads[name], g, np.dtype(dtype), f"grads[{name}]")


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("B, lengths", [(1, None), (1, [23]), (3, [23, 1, 12])])
def test_directions_side_by_side_match_torch(cell, dtype, B, lengths, helpers, rng,
                                             restore_threads):
    fr.set_num_threads(2)
    _against_torch(helpers, cell, 7, 37, B, 23, 2, True, dtype, rng,
                   None if lengths is None else np.array(lengths))


@pytest.mark.parametrize("cell", ["LSTM", "GRU", "RNN"])
def test_directions_side_by_side_gradients(cell, rng, restore_threads):
    """float64 central differences through a 2-layer bidirectional layer
    whose directions run side by side (2 threads), with lengths."""
    fr.set_num_threads(2)
    layer = getattr(fr, cell)(5, 11, num_layers=2, bidirectional=True, dtype="float64",
                              seed=4, batch_first=True)
    x = rng.standard_normal((3, 9, 5))
    fr.check_gradients(layer, x, lengths=np.array([9, 1, 6]))   # raises on a mismatch


@pytest.fixture
def slices_taken(restore_threads):
    """2 threads, adaptive on, helpers sent home after step 0 in every call."""
    was = fr.set_adaptive_threads(False)
    fr.set_num_threads(2)
    fr.set_adaptive_threads(True)
    _ext.set_leave_test(True)
    yield
    _ext.set_leave_test(False)
    fr.set_adaptive_threads(was)


# units-split shapes (B*G*H*H >= FR_FAST_MIN_WORK, no batch split): batch 1,
# a prime H, lengths
@pytest.mark.parametrize("cell, B, H, lengths", [
    ("lstm", 1, 128, None), ("lstm", 2, 199, [17, 5]), ("gru", 1, 160, [17]),
    ("rnn_tanh", 3, 211, [17, 1, 9])])
def test_slices_taken_over_match_torch(cell, B, H, lengths, helpers, rng, slices_taken):
    before = fr.thread_stats()["taken_slices"]
    _against_torch(helpers, cell, 13, H, B, 17, 1, False, "float32", rng,
                   None if lengths is None else np.array(lengths))
    assert fr.thread_stats()["taken_slices"] > before
