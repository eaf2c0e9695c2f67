"""The layout docs/architecture.md promises, checked: the import contracts of
pyproject.toml, one compiled extension, C files of a readable size, no
measurements in the kernels' comments, one gate table, the backend seam, the
delegates of the formats, and the Layer protocol (a layer of the user's own
runs inside a Sequential)."""
import importlib
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

import fastrnn as fr
from fastrnn import backends
from fastrnn.layers import Layer

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_kept():
    """lint-imports' contracts (layering, no cycle, kernels only through
    fastrnn.backends) hold for the package as it is."""
    pytest.importorskip("importlinter")
    if not (ROOT / "pyproject.toml").is_file():
        pytest.skip("not run from a source checkout")
    import subprocess
    import sys
    res = subprocess.run([sys.executable, "-c",
                          "from importlinter.cli import lint_imports_command;"
                          "lint_imports_command(['--no-cache'])"],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "0 broken" in res.stdout


def test_one_compiled_extension():
    pkg = Path(fr.__file__).parent
    exts = sorted(p.relative_to(pkg).as_posix() for p in pkg.rglob("*.so"))
    exts += sorted(p.relative_to(pkg).as_posix() for p in pkg.rglob("*.pyd"))
    assert len(exts) == 1 and exts[0].startswith("backends/cpu/_ext."), exts
    for gone in ("fastrnn._core", "fastrnn._reg", "fastrnn._losses"):
        with pytest.raises(ImportError):
            importlib.import_module(gone)


def _c_files():
    src = ROOT / "src"
    if not src.is_dir():
        pytest.skip("not run from a source checkout")
    return sorted(p for p in src.rglob("*") if p.suffix in (".c", ".h"))


def test_c_files_of_readable_size():
    long = {p.relative_to(ROOT).as_posix(): n for p in _c_files()
            if (n := len(p.read_text().splitlines())) > 800}
    assert not long, f"C files over 800 lines: {long}"


# a figure with a unit of time or speed, a median or paired ratio, a named
# machine: what belongs in docs/tuning.md or benchmarks/RESULTS.md
_MEASUREMENT = re.compile(r"\b\d+(\.\d+)? ?(us|ms|ns|GFLOP/s|cycles)\b|\bmedians?\b|\bpaired\b"
                          r"|\bZen ?\d|\bEPYC\b|\b\d\.\d+x\b", re.I)


def test_no_measurements_in_kernel_comments():
    found = []
    for p in _c_files():
        for i, line in enumerate(p.read_text().splitlines(), 1):
            if _MEASUREMENT.search(line):
                found.append(f"{p.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not found, "measurements in src/ (move them to docs/tuning.md):\n" + "\n".join(found)


def test_measurement_check_sees_a_timing():
    """The pattern above catches what it is for."""
    for line in ("/* 4.5 against 5.2 us in C */", "paired medians, both orders",
                 "on the AVX2 EPYC VM", "LSTM B=8 0.95x", "300 GFLOP/s"):
        assert _MEASUREMENT.search(line), line
    for line in ("/* 64-byte aligned */", "(T,B,G*H) activated gates", "VW = 16 floats"):
        assert not _MEASUREMENT.search(line), line


def test_one_gate_table():
    from fastrnn._cells import GATES, num_gates
    assert {k: GATES[k] for k in ("LSTM", "GRU", "RNN_TANH", "RNN_RELU")} == \
        {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}
    for name, g in (("lstm", 4), ("RNN", 1), ("SimpleRNN", 1), ("LayerNormLSTM", 4)):
        assert num_gates(name) == g
    with pytest.raises(ValueError, match="unknown recurrent cell kind"):
        num_gates("LSTMX")
    pkg = Path(fr.__file__).parent
    tables = [p.relative_to(pkg).as_posix() for p in pkg.rglob("*.py")
              if re.search(r'"LSTM": 4|"lstm": 4', p.read_text())]
    assert tables == ["_cells.py"], tables


def test_backend_registry():
    cpu = backends.get("cpu")
    assert cpu is backends.get() and cpu.name == "cpu" and "cpu" in backends.available()
    assert backends.of(np.zeros(2)) is cpu and backends.of(None) is cpu
    assert isinstance(cpu, backends.Backend)
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        backends.get("tpu")

    class FakeCupyArray:  # what a CuPy array looks like to `of`
        __module__ = "cupy._core.core"
    with pytest.raises(TypeError, match="no CUDA backend"):
        backends.of(FakeCupyArray())
    with pytest.raises(TypeError):
        backends.register("x", 3)
    backends.register("broken", "fastrnn._no_such_module")
    try:
        with pytest.raises(ImportError, match="'broken' backend cannot be loaded"):
            backends.get("broken")
    finally:
        backends._MODULES.pop("broken", None)


def test_layers_find_their_backend():
    lstm, dense = fr.LSTM(3, 4), fr.Dense(4, 2)
    assert lstm.backend is backends.get("cpu") and dense.backend is backends.get("cpu")
    assert fr.Activation("relu").backend is backends.get("cpu")  # no parameters


def test_backend_entry_points_against_the_layer():
    """The CPU backend's entry points give what the layer gives (the layer is
    a thin caller of them)."""
    rng = np.random.default_rng(0)
    lstm = fr.LSTM(5, 7, num_layers=2, seed=3)
    x = rng.standard_normal((6, 3, 5)).astype(np.float32)
    cpu = backends.get("cpu")
    w = cpu.rnn_weights("LSTM", *lstm._lists(lstm.params), 5, 7, 2, 1)
    y, hn, cn, cache = cpu.rnn_forward(w, x, None, None, None, None, False)
    y2, (hn2, cn2) = lstm(x)
    assert cache is None
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(hn, hn2)
    np.testing.assert_array_equal(cn, cn2)
    with pytest.raises(KeyError):
        cpu.rnn_weights("LSTMX", *lstm._lists(lstm.params), 5, 7, 2, 1)
    a = rng.standard_normal((4, 3)).astype(np.float32)
    b = rng.standard_normal((3, 5)).astype(np.float32)
    c = np.zeros((4, 5), np.float32)
    cpu.gemm(a, b, c, False, False, 1.0, 0.0)
    np.testing.assert_allclose(c, a @ b, rtol=1e-6)


def test_thread_setting_lives_in_c(restore_threads):
    from fastrnn.backends.cpu import _ext, threads
    fr.set_num_threads(1)
    assert _ext.num_threads_setting() == 1 and threads.num_threads_setting() == 1
    assert fr.get_num_threads() == 1 == backends.get("cpu").num_threads()
    fr.set_num_threads(None)
    assert threads.num_threads_setting() is None and fr.get_num_threads() >= 1
    with pytest.raises(ValueError):
        _ext.set_num_threads(-1)
    with pytest.raises(ValueError):
        fr.set_num_threads(0)


def test_stepper_options_refreshed_not_read():
    """step()'s stepper holds the options in C: changing one through the
    layer refreshes it, and the stepper never reads the layer's __dict__."""
    rng = np.random.default_rng(1)
    gru = fr.GRU(3, 5, seed=0)
    x = rng.standard_normal((2, 3)).astype(np.float32)
    gru.step(x)
    st = gru._stepper
    assert st.active and st.run(x, None) is not None
    gru.zoneout = 0.2                      # the regularized kernels now
    assert not st.active and st.run(x, None) is None
    gru.zoneout = 0.0
    assert st.active
    gru.clip = 0.5                         # not the plan's options: the checked path
    assert not st.active
    y_clip, _ = gru.step(x)
    np.testing.assert_array_equal(y_clip, fr.GRU(3, 5, seed=0, clip=0.5).step(x)[0])
    gru.params = dict(gru.params)          # a new dict: the stepper follows it
    assert gru._stepper.run(x, None) is not None


def test_formats_delegates_and_public_calls(tmp_path):
    m = fr.Sequential([fr.GRU(3, 4, batch_first=True), fr.LastStep(), fr.Dense(4, 2)], seed=0)
    x = np.random.default_rng(2).standard_normal((5, 6, 3)).astype(np.float32)
    fr.save(m, tmp_path / "a.fastrnn")
    m.save(tmp_path / "b.fastrnn")
    assert (tmp_path / "a.fastrnn").read_bytes() == (tmp_path / "b.fastrnn").read_bytes()
    np.testing.assert_array_equal(fr.load(tmp_path / "a.fastrnn")(x), m(x))
    with pytest.raises(TypeError, match="expected an fr.Sequential"):
        fr.save(fr.LSTM(2, 2), tmp_path / "c.fastrnn")
    if importlib.util.find_spec("onnx") is not None:
        a = fr.to_onnx(m)
        b = m.to_onnx()
        assert a.SerializeToString() == b.SerializeToString()
        layer = fr.LSTM(3, 4)
        assert fr.to_onnx(layer).SerializeToString() == layer.to_onnx().SerializeToString()
    with pytest.raises(TypeError, match="expected a fastrnn RNN, LSTM, GRU or Sequential"):
        fr.to_onnx(fr.Dense(2, 2))


class Scale(Layer):
    """A layer of a user's own: y = x * s per feature, in NumPy."""

    has_params = True

    def __init__(self, features, dtype="float32"):
        super().__init__(dtype)
        self.features = features
        self.params["s"] = np.ones(features, self.dtype)
        self._init_grads()

    def _run(self, x, lengths, training):
        x = np.asarray(x, self.dtype)
        if training:
            self._ctx = dict(x=x, y_shape=x.shape)
        return x * self.params["s"]

    def _backward(self, ctx, dy):
        self.grads["s"] += (dy * ctx["x"]).reshape(-1, self.features).sum(axis=0)
        return dy * self.params["s"]


def test_a_layer_of_ones_own_trains_inside_a_model():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((16, 5, 3)).astype(np.float32)
    y = (x.sum(axis=(1, 2)) > 0).astype(np.int64)
    m = fr.Sequential([Scale(3), fr.LSTM(3, 8, batch_first=True), fr.MeanPooling(),
                       fr.Dense(8, 2)], seed=0)
    m.compile(loss="cross_entropy", optimizer=fr.optim.Adam(lr=0.05))
    h = m.fit(x, y, epochs=15, batch_size=8, seed=0, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]
    assert not np.array_equal(m.layers[0].params["s"], np.ones(3))  # it learned too
    assert m.summary(print_fn=None).count("Scale") == 1
    y_t, state = m.layers[0].step(x[:, 0])
    assert state is None
    np.testing.assert_array_equal(y_t, x[:, 0] * m.layers[0].params["s"])
