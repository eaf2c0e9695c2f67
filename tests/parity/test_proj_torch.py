"""LSTM(proj_size=P) against torch.nn.LSTM(proj_size=P): values, final
states and every gradient (autograd), bidirectional, stacked, lengths,
given states, float32 and float64; from_torch / to_torch; fr.save / fr.load."""
import numpy as np
import pytest

import fastrnn as fr

torch = pytest.importorskip("torch")

CASES = [  # T, B, I, H, P, L, bidirectional
    (1, 1, 1, 2, 1, 1, False),
    (5, 3, 7, 11, 5, 1, False),
    (7, 1, 3, 5, 2, 2, True),
    (4, 2, 13, 3, 2, 3, False),
    (6, 5, 4, 7, 3, 2, True),
]


@pytest.mark.parametrize("case", CASES, ids=[f"T{c[0]}B{c[1]}I{c[2]}H{c[3]}P{c[4]}L{c[5]}"
                                             f"{'bi' if c[6] else ''}" for c in CASES])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_proj_lstm_matches_torch(case, dtype, helpers, rng):
    T, B, I, H, P, L, bi = case
    torch.manual_seed(int(rng.integers(1 << 30)))
    m = torch.nn.LSTM(I, H, num_layers=L, bidirectional=bi, proj_size=P,
                      dtype=torch.float64 if dtype == "float64" else torch.float32)
    layer = fr.from_torch(m)
    assert layer.proj_size == P and layer.dtype == np.dtype(dtype)
    D = 2 if bi else 1
    for lengths, state in ((None, None), ("lengths", "state")):
        x = rng.standard_normal((T, B, I)).astype(dtype)
        lens = rng.integers(1, T + 1, B) if lengths else None
        st = None
        if state:
            st = (rng.standard_normal((L * D, B, P)).astype(dtype),
                  rng.standard_normal((L * D, B, H)).astype(dtype))
        R = rng.standard_normal((T, B, D * P)).astype(dtype)
        if lens is not None:
            R[np.arange(T)[:, None] >= lens[None, :]] = 0
        R_h = rng.standard_normal((L * D, B, P)).astype(dtype)
        R_c = rng.standard_normal((L * D, B, H)).astype(dtype)
        ref = helpers.torch_run(m, x, st, lens, R, R_h, R_c)
        y, (h, c) = layer(x, st, lengths=lens)
        helpers.assert_close(y, ref["y"], dtype, "y")
        helpers.assert_close(h, ref["h_n"], dtype, "h_n")
        helpers.assert_close(c, ref["c_n"], dtype, "c_n")
        layer.zero_grad()
        y2, _ = layer.forward(x, st, lengths=lens)
        assert np.array_equal(y2, y)
        dx, ds = layer.backward(R, (R_h, R_c))
        helpers.assert_close(dx, ref["dx"], dtype, "dx")
        if st is not None:
            helpers.assert_close(ds[0], ref["dh0"], dtype, "dh0")
            helpers.assert_close(ds[1], ref["dc0"], dtype, "dc0")
        for k, g in ref["grads"].items():
            helpers.assert_close(layer.grads[k], g, dtype, k)


def test_proj_batch_first_step_and_to_torch(rng):
    layer = fr.LSTM(4, 6, proj_size=2, num_layers=2, batch_first=True, seed=3)
    m = fr.to_torch(layer)
    assert m.proj_size == 2 and m.batch_first
    x = rng.standard_normal((3, 5, 4)).astype(np.float32)
    y, (h, c) = layer(x)
    ty, (th, tc) = m(torch.from_numpy(x))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(c, tc.detach().numpy(), rtol=2e-4, atol=2e-5)
    st = None
    for t in range(5):
        yt, st = layer.step(x[:, t], st)
        np.testing.assert_allclose(yt, y[:, t], rtol=1e-5, atol=1e-6)
    back = fr.from_torch(m)
    assert back.get_config() == layer.get_config() | {"seed": None}
    assert all(np.array_equal(back.params[k], v) for k, v in layer.params.items())


def test_proj_save_load_and_min_params(rng, tmp_path):
    layer = fr.LSTM(3, 8, proj_size=2, num_layers=3, bidirectional=True, seed=0)
    model = fr.Sequential([layer, fr.LastStep(), fr.Dense(4, 1)])
    path = tmp_path / "proj.fr"
    fr.save(model, path)
    back = fr.load(path)
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    assert np.array_equal(back.predict(x), model.predict(x))
    assert back.layers[0].proj_size == 2
    from fastrnn.formats.native import _min_params
    cfg = layer.get_config()
    assert _min_params("LSTM", cfg) == sum(v.size for k, v in layer.params.items()
                                           if "bias" not in k)
