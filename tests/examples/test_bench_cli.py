"""The benchmark command's shape selection (python -m fastrnn.bench): custom
shapes, --batch, clear errors, and a small end-to-end run writing JSON."""
import json

import numpy as np
import pytest

import fastrnn as fr
from fastrnn import bench


def test_custom_shape_parses():
    s = bench.parse_custom("GRU:5:31:17:131:train:var")
    assert (s.cell, s.B, s.T, s.I, s.H, s.mode, s.var, s.table) == \
        ("gru", 5, 31, 17, 131, "train", True, 0)
    assert bench.flops(s) == 3.0 * 2 * 3 * 131 * (17 + 131) * bench.lengths_for(s).sum()


@pytest.mark.parametrize("spec, msg", [
    ("lstm:1:2:3:4", "expected cell:B:T:I:H:mode"),
    ("lstm:1:2:3:4:infer:xyz", "expected cell:B:T:I:H:mode"),
    ("conv:1:2:3:4:infer", "cell must be"),
    ("lstm:1:2:3:4:decode", "mode must be"),
    ("lstm:one:2:3:4:infer", "integers"),
    ("lstm:0:2:3:4:infer", ">= 1"),
    ("lstm:1:2:3:4:step", "T = 1"),
    ("lstm:4:5:3:4:infer:var", "T >= 10"),
])
def test_custom_shape_errors(spec, msg):
    with pytest.raises(ValueError, match=msg):
        bench.parse_custom(spec)
    with pytest.raises(SystemExit):
        bench.parse_args(["--shape", spec])


def test_batch_override_and_selection():
    args = bench.parse_args(["--shapes", "lat-lstm,db-lstm-b4", "--batch", "3",
                             "--shape", "rnn:2:9:5:7:infer"])
    assert [(s.name, s.B) for s in args.shape_list] == \
        [("lat-lstm@b3", 3), ("db-lstm-b4@b3", 3), ("rnn:2:9:5:7:infer", 2)]
    # --shape alone runs only the custom shapes
    assert [s.name for s in bench.parse_args(["--shape", "gru:1:1:3:4:step"]).shape_list] \
        == ["gru:1:1:3:4:step"]
    with pytest.raises(SystemExit):
        bench.parse_args(["--batch", "0"])


def test_custom_run_writes_json(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert bench.main(["--shape", "lstm:3:12:5:7:infer", "--shape", "gru:2:1:3:5:step",
                       "--engines", "fastrnn,numpy", "--quick", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    names = [r["name"] for r in data["results"]]
    assert names == ["lstm:3:12:5:7:infer", "gru:2:1:3:5:step"]
    lstm = data["results"][0]
    assert lstm["ms"]["fastrnn"] > 0 and lstm["ms"]["numpy"] > 0
    assert lstm["speedup_vs_best_peer"] == pytest.approx(
        lstm["ms"]["numpy"] / lstm["ms"]["fastrnn"])
    assert "lstm:3:12:5:7:infer" in capsys.readouterr().out


def test_infer_layer_frozen_unless_per_call(tmp_path, capsys):
    """Inference and steps are timed on a frozen copy (weights packed once),
    training on the layer itself; --per-call times the layer itself."""
    shape = bench.parse_custom("lstm:2:6:4:5:infer")
    case = bench.Case(shape)
    assert case.infer_layer.frozen and not case.layer.frozen
    assert np.array_equal(case.infer_layer(case.x)[0], case.layer(case.x)[0])
    assert bench.Case(shape, freeze=False).infer_layer is not None
    assert not bench.Case(shape, freeze=False).infer_layer.frozen
    assert not bench.Case(bench.parse_custom("lstm:2:6:4:5:train")).infer_layer.frozen
    for flag, want in (([], "frozen"), (["--per-call"], "per-call")):
        out = tmp_path / f"r{len(flag)}.json"
        assert bench.main(["--shape", "gru:2:5:3:4:infer", "--engines", "fastrnn", "--quick",
                           "--json", str(out)] + flag) == 0
        assert json.loads(out.read_text())["meta"]["fastrnn_infer"] == want
    assert "frozen copy" in capsys.readouterr().out


def test_step_team_flag(tmp_path, capsys):
    """--step-team runs fastrnn's steps on the step team for the run only;
    the JSON says which."""
    import fastrnn as fr
    was = fr.get_step_team()
    for flag, want in (([], False), (["--step-team"], True)):
        out = tmp_path / f"t{len(flag)}.json"
        assert bench.main(["--shape", "lstm:1:1:128:128:step", "--engines", "fastrnn",
                           "--quick", "--json", str(out)] + flag) == 0
        assert json.loads(out.read_text())["meta"]["step_team"] is want
        assert fr.get_step_team() is was
    assert "step team (--step-team)" in capsys.readouterr().out


def test_batch_invariant_flag(tmp_path, capsys, monkeypatch):
    """--batch-invariant runs fastrnn batch-invariant for the run only (the
    setting seen by the timed calls); the JSON says which."""
    import fastrnn as fr
    seen = []
    measure = bench.measure_spread

    def spy(*a, **kw):
        seen.append(fr.get_batch_invariant())
        return measure(*a, **kw)
    monkeypatch.setattr(bench, "measure_spread", spy)
    for flag, want in (([], False), (["--batch-invariant"], True)):
        seen.clear()
        out = tmp_path / f"b{len(flag)}.json"
        assert bench.main(["--shape", "gru:3:4:5:7:infer", "--engines", "fastrnn",
                           "--quick", "--json", str(out)] + flag) == 0
        assert json.loads(out.read_text())["meta"]["batch_invariant"] is want
        assert seen and set(seen) == {want}
        assert fr.get_batch_invariant() is False
    assert "batch-invariant (--batch-invariant)" in capsys.readouterr().out


def test_measure_interleaved_takes_repeats_in_turn():
    """After each engine's warm-up, repeat r of every engine runs before
    repeat r + 1 of any; an engine that fails is left out with its error."""
    from fastrnn import bench
    log = []

    def engine(name, fail_after=None):
        def fn():
            log.append(name)
            if fail_after is not None and log.count(name) > fail_after:
                raise RuntimeError(f"{name} broke")
        return fn

    fns = {"a": engine("a"), "b": engine("b"), "c": engine("c", fail_after=1000)}
    medians, errors = bench.measure_interleaved(fns, repeat=4, min_time=0.0,
                                                warmup_time=0.0, settle=0.0)
    assert set(medians) == {"a", "b", "c"} and not errors
    assert all(v > 0 for v in medians.values())
    assert log[6:] == ["a", "b", "c"] * 4   # 2 warm-up calls each, then 1 per repeat
    # with a pause before each turn, one untimed call wakes the engine's pool
    log.clear()
    bench.measure_interleaved(fns, repeat=3, min_time=0.0, warmup_time=0.0, settle=0.001)
    assert log[6:] == ["a", "a", "b", "b", "c", "c"] * 3
    log.clear()
    medians, errors = bench.measure_interleaved(
        {"a": engine("a"), "b": engine("b", fail_after=3)},
        repeat=4, min_time=0.0, warmup_time=0.0, settle=0.0)
    assert set(medians) == {"a"} and isinstance(errors["b"], RuntimeError)
    assert log.count("a") == 2 + 4


def test_stream_session_bench_runs(capsys):
    """benchmarks/stream_session.py: session and loop both timed, on a tiny case."""
    import os
    import runpy
    path = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks",
                        "stream_session.py")
    main = runpy.run_path(path)["main"]
    assert main(["--quick", "--streams", "5", "--input", "3", "--hidden", "7",
                 "--repeat", "1", "--threads", "1", "--cell", "gru"]) == 0
    out = capsys.readouterr().out
    assert "session" in out and "loop" in out and "loop / session" in out
    with pytest.raises(SystemExit):
        main(["--fraction", "0"])


def test_optim_step_bench_runs(capsys):
    """benchmarks/optim_step.py: the fused and the NumPy Adam timed (torch's
    too where installed), on tiny sizes; bad counts refused."""
    import os
    import runpy
    path = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "optim_step.py")
    main = runpy.run_path(path)["main"]
    assert main(["--quick", "--rounds", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "fastrnn (fused)" in out and "fastrnn (NumPy)" in out
    assert fr.optim.Adam._fused is True
    with pytest.raises(SystemExit):
        main(["--rounds", "0"])


def test_check_passes_and_reports_every_quantity():
    """The bench's check compares fastrnn with torch on y and the final
    states, and for training rows on dx and every weight gradient too."""
    pytest.importorskip("torch")
    infer = bench.check_against_torch(bench.Case(bench.parse_custom("lstm:3:12:5:7:infer:var")))
    assert set(infer) == {"y", "state0", "state1"}
    train = bench.check_against_torch(bench.Case(bench.parse_custom("gru:3:12:5:7:train")))
    assert set(train) == {"y", "state0", "dx", "dweight_ih_l0", "dweight_hh_l0",
                          "dbias_ih_l0", "dbias_hh_l0"}


@pytest.mark.parametrize("plant, spec, names", [
    # the input biases off by 1e-2 (the claim's rtol is 2e-4): outputs and states
    ("weight", "lstm:3:12:5:7:infer", "y, state0, state1"),
    ("weight", "gru:2:1:3:5:step", "y, state0"),
    # the forward right, one weight gradient 1e-3 too large
    ("gradient", "lstm:3:12:5:7:train:var", "dweight_hh_l0"),
])
def test_planted_wrong_result_fails_the_row(plant, spec, names, monkeypatch, tmp_path, capsys):
    """A row whose fastrnn results differ from torch's beyond the float32
    parity claim is not timed: FAIL in the table and the JSON, a note
    naming the quantities, exit status 1."""
    pytest.importorskip("torch")
    import fastrnn as fr
    if plant == "weight":
        make = bench.Case._fastrnn_layer

        def wrong_layer(self):
            layer = make(self)
            layer.params["bias_ih_l0"][...] += 1e-2
            return layer
        monkeypatch.setattr(bench.Case, "_fastrnn_layer", wrong_layer)
    else:
        backward = fr.LSTM.backward

        def wrong_backward(self, *a, **kw):
            out = backward(self, *a, **kw)
            self.grads["weight_hh_l0"] *= 1 + 1e-3
            return out
        monkeypatch.setattr(fr.LSTM, "backward", wrong_backward)
    out = tmp_path / "r.json"
    assert bench.main(["--shape", spec, "--engines", "fastrnn,torch", "--quick",
                       "--json", str(out)]) == 1
    row = json.loads(out.read_text())["results"][0]
    assert row["check"] == "FAIL" and row["ms"] == {} and row["speedup_vs_best_peer"] is None
    text = capsys.readouterr().out
    assert f"FAIL: fastrnn differs from torch on {spec}" in text
    assert f"beyond rtol 0.0002, atol 1e-05 x scale in {names} (" in text
    table_row = next(line for line in text.splitlines() if line.startswith(spec))
    assert "FAIL" in table_row and "check failed" in table_row


# ---------------------------------------------------------------------------
# --precision int8|bf16: reduced-precision engines in the same run

def test_precision_engine_selection():
    """--precision adds fastrnn's reduced copy and the peers of that precision;
    a family in --engines (fastrnn, torch, ort) brings its reduced engines;
    reduced engines need their --precision, and reduced weights need float32."""
    assert bench.parse_args([]).engines == list(bench.ENGINES)
    assert bench.parse_args(["--precision", "int8"]).engines == \
        list(bench.ENGINES) + ["fastrnn-int8", "torch-qint8", "ort-qint8"]
    assert bench.parse_args(["--precision", "bf16", "--engines", "fastrnn,torch"]).engines == \
        ["fastrnn", "torch", "fastrnn-bf16", "torch-fp16", "torch-bf16"]
    assert bench.parse_args(["--precision", "int8", "--engines",
                             "ort-qint8,fastrnn-int8"]).engines == ["fastrnn-int8", "ort-qint8"]
    for argv in (["--engines", "torch-qint8"], ["--precision", "bf16", "--engines", "ort-qint8"],
                 ["--precision", "int8", "--dtype", "float64"], ["--precision", "fp8"]):
        with pytest.raises(SystemExit):
            bench.parse_args(argv)


def test_precision_refused_clearly(monkeypatch, capsys):
    """Where this fastrnn cannot freeze with the asked weights, the bench
    refuses the option before timing anything: exit status 2 and why."""
    from fastrnn.recurrent import RNNBase
    plain = RNNBase.freeze

    def old_freeze(self):            # a fastrnn from before freeze(weights=...)
        return plain(self)
    monkeypatch.setattr(RNNBase, "freeze", old_freeze)
    assert "no layer.freeze(weights=...)" in bench.precision_refused("int8")
    assert bench.main(["--shape", "lstm:1:3:2:3:infer", "--precision", "int8", "--quick"]) == 2
    assert "--precision int8: this fastrnn has no layer.freeze" in capsys.readouterr().err

    def refusing(self, weights="float32"):
        raise ValueError("weights='bf16' needs AVX-512 (not on this CPU)")
    monkeypatch.setattr(RNNBase, "freeze", refusing)
    assert bench.precision_refused("bf16") == \
        "fastrnn refuses it: weights='bf16' needs AVX-512 (not on this CPU)"

    def ignoring(self, weights="float32"):   # takes the argument, keeps float32
        return plain(self)
    monkeypatch.setattr(RNNBase, "freeze", ignoring)
    assert bench.precision_refused("int8") == \
        "layer.freeze(weights='int8') gave weights_precision 'float32'"
    monkeypatch.setattr(RNNBase, "freeze", plain)
    assert bench.precision_refused("int8") is None


def test_reduced_peers_are_what_torch_and_ort_quantize():
    """torch's quantize_dynamic swaps LSTM and GRU for its quantized modules
    (qint8 and float16 weights) but has no quantized RNN; ONNX Runtime's
    quantize_dynamic turns LSTM into DynamicQuantizeLSTM and leaves GRU and
    RNN in float32: those peers are not run (named in the notes), never
    timed as float32 under a reduced-precision name."""
    pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    for cell in ("lstm", "gru", "rnn"):
        case = bench.Case(bench.parse_custom(f"{cell}:2:5:3:4:infer"), precision="int8")
        for kind in ("qint8", "fp16"):
            if cell == "rnn":
                with pytest.raises(bench.Unavailable, match="no %s RNN module" % kind):
                    case._torch_low(kind)
            else:
                m, _ = case._torch_low(kind)
                assert type(m).__module__.startswith("torch.ao.nn.quantized.dynamic")
        if cell == "lstm":
            ops = {n.op_type for n in onnx.load_from_string(case._ort_qint8()).graph.node}
            assert "DynamicQuantizeLSTM" in ops and "LSTM" not in ops
        else:
            with pytest.raises(bench.Unavailable, match="leaves %s in float32" % cell.upper()):
                case._ort_qint8()


def test_precision_int8_run(tmp_path, capsys):
    """--precision int8 times fastrnn's int8 copy beside the float32 engines and
    the int8 peers that exist for the cell (torch qint8: LSTM, GRU; ORT's
    DynamicQuantizeLSTM: LSTM), checks it against float32 within LOW_TOL,
    and reports speedups against the best float32 and the best int8 peer."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    specs = ["lstm:3:12:5:7:infer:var", "gru:2:1:3:5:step", "rnn:1:9:4:6:infer",
             "lstm:2:6:3:4:train"]
    out = tmp_path / "q.json"
    argv = sum((["--shape", s] for s in specs), []) + [
        "--precision", "int8", "--quick", "--repeat", "1", "--json", str(out)]
    assert bench.main(argv) == 0
    data = json.loads(out.read_text())
    assert data["meta"]["precision"] == "int8"
    assert data["meta"]["reduced_tolerance"] == {"max_rel": 0.05, "mean_rel": 0.005}
    rows = {r["name"]: r for r in data["results"]}
    want = {specs[0]: {"fastrnn-int8", "torch-qint8", "ort-qint8"},
            specs[1]: {"fastrnn-int8", "torch-qint8"}, specs[2]: {"fastrnn-int8"},
            specs[3]: set()}
    for name, engines in want.items():
        r = rows[name]
        assert r["check"] == "ok" and r["precision"] == "int8"
        assert {e for e in r["ms"] if "-" in e} == engines
        red = r["reduced"]
        if not engines:                      # training: float32 only
            assert red["check"] is None and red["ms"] is None
            continue
        assert red["check"] == "ok" and set(red["errors"]) == engines
        e = red["errors"]["fastrnn-int8"]
        assert 0 < e["max_rel"] <= 0.05 and e["mean_rel"] <= 0.005   # quantized, within
        f32 = {p: r["ms"][p] for p in bench.PEERS if p in r["ms"]}
        best = min(f32, key=f32.get)
        assert red["best_float32_peer"] == best
        assert red["speedup_vs_best_float32_peer"] == pytest.approx(
            f32[best] / r["ms"]["fastrnn-int8"])
        assert red["speedup_vs_fastrnn_float32"] == pytest.approx(
            r["ms"]["fastrnn"] / r["ms"]["fastrnn-int8"])
        peers = engines - {"fastrnn-int8"}
        if peers:
            assert red["best_reduced_peer"] in peers
            assert red["speedup_vs_best_reduced_peer"] == pytest.approx(
                min(r["ms"][p] for p in peers) / r["ms"]["fastrnn-int8"])
        else:
            assert red["best_reduced_peer"] is None
    text = capsys.readouterr().out
    header = next(line for line in text.splitlines() if line.startswith("name"))
    for col in ("fastrnn int8 ms", "torch qint8 ms", "ORT qint8 ms", "int8 vs fp32 peer",
                "vs int8 peer", "int8 err"):
        assert col in header
    assert "ort-qint8 not run (onnxruntime's quantize_dynamic leaves GRU in float32" in text
    assert "torch-qint8 not run (torch's quantize_dynamic has no qint8 RNN module" in text


@pytest.mark.parametrize("defect, spec", [
    # the recurrent weights' scale doubled (a 127 / 255 mix-up)
    ("scale", "lstm:3:12:5:7:infer:var"),
    ("scale", "gru:4:20:6:9:infer"),
    # the input and forget gates' rows swapped
    ("gates", "lstm:2:1:5:7:step"),
])
def test_precision_planted_error_fails_the_row(defect, spec, monkeypatch, tmp_path, capsys):
    """A fastrnn int8 copy whose results are off beyond LOW_TOL fails its row:
    not timed, FAIL in the table and the JSON, a note, exit status 1."""
    pytest.importorskip("torch")

    def wrong_low_layer(self):
        layer = self.layer.unfreeze()
        w = layer.params["weight_hh_l0"]
        if defect == "scale":
            w *= 2
        else:
            H = self.shape.H
            w[:2 * H] = np.concatenate([w[H:2 * H], w[:H]])
            b = layer.params["bias_ih_l0"]
            b[:2 * H] = np.concatenate([b[H:2 * H] + 1, b[:H]])
            w = layer.params["weight_ih_l0"]
            w[:2 * H] = np.concatenate([w[H:2 * H], w[:H]])
        return layer.freeze(weights=self.precision)
    monkeypatch.setattr(bench.Case, "low_layer", wrong_low_layer)
    out = tmp_path / "r.json"
    assert bench.main(["--shape", spec, "--engines", "fastrnn,torch", "--precision", "int8",
                       "--quick", "--json", str(out)]) == 1
    row = json.loads(out.read_text())["results"][0]
    assert row["check"] == "FAIL" and row["ms"] == {}
    assert row["reduced"]["check"] == "FAIL"
    text = capsys.readouterr().out
    assert f"FAIL: fastrnn int8 differs from float32 beyond its tolerance on {spec}" in text
    assert "differs from float32 beyond 0.05 (largest) and 0.005 (mean) x scale" in text
    table_row = next(line for line in text.splitlines() if line.startswith(spec))
    assert "FAIL" in table_row and "check failed" in table_row


def test_precision_bf16_runs_or_refuses(tmp_path, capsys):
    """--precision bf16 runs like int8 (torch's float16-weight and bfloat16
    modules as its peers) where fastrnn freezes bf16 weights, and is refused
    with the reason (exit status 2, nothing timed) where it does not."""
    pytest.importorskip("torch")
    out = tmp_path / "b.json"
    argv = ["--shape", "gru:2:7:3:5:infer", "--precision", "bf16", "--quick", "--repeat", "1",
            "--engines", "fastrnn,torch", "--json", str(out)]
    why = bench.precision_refused("bf16")
    if why is not None:
        assert bench.main(argv) == 2 and not out.exists()
        assert f"--precision bf16: {why}" in capsys.readouterr().err
        return
    assert bench.main(argv) == 0
    data = json.loads(out.read_text())
    r = data["results"][0]
    assert set(r["ms"]) == {"fastrnn", "torch", "fastrnn-bf16", "torch-fp16", "torch-bf16"}
    # the products that ran are named with the figures
    ext = fr.backends.cpu._ext
    want = {16: "vdpbf16ps (AVX512_BF16)" if ext.bf16_dot() else "FMAs (AVX-512 F)",
            8: "FMAs (AVX2)", 0: "portable C loops"}[ext.quant_isa("bf16")]
    assert data["meta"]["precision_kernels"] == want
    assert f"fastrnn's bf16 products: {want}" in capsys.readouterr().out
    with pytest.raises(ValueError, match="precision"):
        fr.backends.get("cpu").quant_kernels("int4")
    e = r["reduced"]["errors"]["fastrnn-bf16"]
    assert r["reduced"]["check"] == "ok" and e["max_rel"] <= 0.01 and e["mean_rel"] <= 0.001


def test_spread_min_median_max_and_flag(tmp_path, capsys, monkeypatch):
    """Each engine's min/median/max reach the JSON; a row whose spread is
    wider than the gap between fastrnn and the best peer is flagged '?'."""
    stats = bench.measure_spread({"a": lambda: None}, repeat=3, min_time=0.0,
                                 warmup_time=0.0, settle=0.0)[0]["a"]
    assert stats["min"] <= stats["median"] <= stats["max"]
    sp = {"fastrnn": {"min": 1.0, "median": 1.1, "max": 1.5},
          "torch": {"min": 1.1, "median": 1.2, "max": 1.3}}
    assert bench.spread_wider_than_gap(sp, "fastrnn", "torch") is True
    sp["torch"] = {"min": 2.0, "median": 2.1, "max": 2.2}
    assert bench.spread_wider_than_gap(sp, "fastrnn", "torch") is False
    assert bench.spread_wider_than_gap(sp, "fastrnn", "ort") is None
    # a fake spread wide enough: the row is flagged in the JSON and the table
    real = bench.measure_spread

    def wide(*a, **kw):
        st, err = real(*a, **kw)
        for v in st.values():
            v["min"], v["max"] = v["median"] * 0.1, v["median"] * 10
        return st, err
    monkeypatch.setattr(bench, "measure_spread", wide)
    out = tmp_path / "r.json"
    assert bench.main(["--shape", "lstm:3:12:5:7:infer", "--engines", "fastrnn,numpy",
                       "--quick", "--json", str(out)]) == 0
    row = json.loads(out.read_text())["results"][0]
    for e in ("fastrnn", "numpy"):
        assert row["ms_min"][e] < row["ms"][e] < row["ms_max"][e]
    assert row["spread_wider_than_gap"] is True
    text = capsys.readouterr().out
    table_row = next(line for line in text.splitlines() if line.startswith("lstm:3:12"))
    assert "numpy ?" in table_row and "990%/990%" in table_row
    assert "note: '?' after a speedup" in text


def test_machine_state_in_header_and_json(tmp_path, capsys, monkeypatch):
    """The JSON and the header keep the BLAS kernels and the machine's load;
    an OpenBLAS below the CPU's ISA gets a note naming OPENBLAS_CORETYPE."""
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 5 50 800 10 0 5 30 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
    assert bench.read_steal(str(stat)) == (30, 1000)   # the 8th field, of the sum of 8
    assert bench.read_steal(str(tmp_path / "none")) is None
    monkeypatch.setattr(bench, "read_steal", iter([(10, 1000), (30, 1400)]).__next__)
    out = tmp_path / "r.json"
    assert bench.main(["--shape", "gru:2:5:3:4:infer", "--engines", "fastrnn", "--quick",
                       "--json", str(out)]) == 0
    meta = json.loads(out.read_text())["meta"]
    assert meta["load"]["steal_share"] == pytest.approx(0.05)
    assert len(meta["load"]["loadavg"]) == 3
    text = capsys.readouterr().out
    assert "steal 5.0%" in text and "load average" in text
    pytest.importorskip("threadpoolctl")
    assert any(d["internal_api"] == "openblas" and d["architecture"] for d in meta["blas"])
    assert "BLAS: openblas" in text
    lib = {"internal_api": "openblas", "architecture": "Haswell", "version": "0.3",
           "filepath": "/x/libopenblas.so", "user_api": "blas"}
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    (note,) = bench.blas_warnings([lib], "avx2 fma avx512f avx512bw")
    assert "Haswell kernels on a CPU with AVX-512" in note and "OPENBLAS_CORETYPE" in note
    assert bench.blas_warnings([lib], "avx2 fma") == [
        "OPENBLAS_CORETYPE=Haswell: NumPy's OpenBLAS runs those kernels, whatever this "
        "CPU has"]
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    assert bench.blas_warnings([dict(lib, architecture="SkylakeX")], "avx2 avx512f") == []
    assert "Sandybridge" in bench.blas_warnings([dict(lib, architecture="Sandybridge")],
                                                "avx2 fma")[0]


def test_models_section_runs_and_checks(tmp_path, capsys):
    """--models times the examples' whole models on every engine at the
    batches asked for, after checking their outputs agree; alone, it skips
    the shape section."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    out = tmp_path / "m.json"
    assert bench.main(["--models", "sentiment,co2", "--model-batches", "1,3", "--quick",
                       "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["results"] == []
    rows = [(r["model"], r["B"]) for r in data["models"]]
    assert rows == [("sentiment", 1), ("sentiment", 3), ("co2", 1), ("co2", 3)]
    for r in data["models"]:
        assert set(r["ms"]) == {"fastrnn", "torch", "ort"}
        assert max(r["check"].values()) < 1e-4
        assert r["speedup"]["ort"] == pytest.approx(r["ms"]["ort"] / r["ms"]["fastrnn"])
        assert r["ms_min"]["fastrnn"] <= r["ms"]["fastrnn"] <= r["ms_max"]["fastrnn"]
    text = capsys.readouterr().out
    assert "whole models" in text and "vs ORT" in text
    with pytest.raises(SystemExit):
        bench.parse_args(["--models", "nosuch"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--models", "--model-batches", "0"])
    # every example model builds, and its three engines agree at batch 1
    from fastrnn import _bench_models as bm
    for spec in bm.MODELS:
        case = bm.ModelCase(spec, 1, 1)
        assert max(bm._check({e: case.runner(e)() for e in ("fastrnn", "torch", "ort")})
                   .values()) < 1e-4


def test_models_section_planted_wrong_output_fails(tmp_path, capsys, monkeypatch):
    """A model whose peer output differs beyond the float32 claim is not
    timed: FAIL in the table, a note, exit status 1."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from fastrnn import _bench_models as bm
    make = bm.ModelCase._run_ort

    def wrong(self):
        f = make(self)
        return lambda: f() * np.float32(1.01)
    monkeypatch.setattr(bm.ModelCase, "_run_ort", wrong)
    assert bench.main(["--models", "co2", "--model-batches", "2", "--quick"]) == 1
    text = capsys.readouterr().out
    assert "ort differs from fastrnn" in text and "check failed" in text


@pytest.mark.parametrize("peer", ["ort", "numpy"])
def test_pipeline_threads_bench_runs(peer, capsys):
    """benchmarks/pipeline_threads.py: fastrnn alone and alternating with a
    peer, both wait policies in one process, on a tiny run; the policy in
    force before comes back."""
    import os
    import runpy
    import fastrnn as fr
    if peer == "ort":
        pytest.importorskip("onnxruntime")
    path = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks",
                        "pipeline_threads.py")
    main = runpy.run_path(path)["main"]
    was = fr.get_wait_policy()
    assert main(["--quick", "--model", "co2", "--batch", "2", "--threads", "1",
                 "--peer", peer, "--wait-policy", "both"]) == 0
    assert fr.get_wait_policy() == was
    out = capsys.readouterr().out
    for policy in ("spin", "passive"):
        assert f"wait policy {policy}:" in out
    assert out.count("pipeline / alone (medians)") == 4
    assert "alone, 1 thread" not in out          # one thread: no floor to add
    assert f"{peer}'s threads after its call:" in out
    assert "fastrnn's threads after its call:" in out


def test_pipeline_threads_floor_on_one_thread(capsys):
    """With 2 threads the script also times fastrnn alone on one thread (the
    floor beside a peer holding a core), and gives the thread count back."""
    import os
    import runpy
    import fastrnn as fr
    path = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks",
                        "pipeline_threads.py")
    main = runpy.run_path(path)["main"]
    was = fr.get_num_threads()
    assert main(["--quick", "--model", "co2", "--batch", "2", "--threads", "2",
                 "--peer", "numpy"]) == 0
    assert fr.get_num_threads() == was
    out = capsys.readouterr().out
    assert out.count("alone, 1 thread: median") == 1
    assert "pipeline calls on 2 threads (adaptive threads' tries): " in out
    assert out.count("pipeline / alone on 1 thread (medians)") == 1



def test_pair_peers_tool_runs(capsys):
    """tools/pair_peers.py: fastrnn (2 threads, 1 thread) and ORT blocks in
    turn for a layer shape and a model (torch's for a training shape), the
    ratios printed; a bad spec is a clear error."""
    import os
    import runpy
    pytest.importorskip("onnxruntime")
    import fastrnn as fr
    path = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "pair_peers.py")
    main = runpy.run_path(path)["main"]
    was = fr.get_num_threads()
    assert main(["1", "lstm:2:5:3:4:infer", "co2:2"]) == 0
    assert fr.get_num_threads() == was       # the count it found comes back
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == ["lstm:2:5:3:4:infer", "co2:2"]
    assert all("ORT/fastrnn" in line and "1 thread" in line for line in out)
    pytest.importorskip("torch")
    assert main(["1", "gru:2:5:3:4:train"]) == 0
    out = capsys.readouterr().out
    assert "torch/fastrnn" in out and "ORT" not in out
    with pytest.raises(ValueError):
        main(["1", "lstm:2:5"])
    assert fr.get_num_threads() == was



def test_threads_probe_tool_runs(capsys):
    """tools/threads_probe.py: one thread against two, a line each half
    second (one here); the thread settings come back; a bad spec is a
    clear error."""
    import os
    import runpy
    import fastrnn as fr
    from fastrnn.backends.cpu import threads
    path = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "threads_probe.py")
    main = runpy.run_path(path)["main"]
    setting, adaptive = threads.num_threads_setting(), fr.get_adaptive_threads()
    assert main(["lstm:2:5:3:4", "0"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and "1 thread" in out[0] and "2 threads" in out[0]
    assert threads.num_threads_setting() == setting
    assert fr.get_adaptive_threads() == adaptive
    with pytest.raises(ValueError, match="threads_probe: expected cell:B:T:I:H"):
        main(["lstm:2:5"])


def test_batch_first_pairs_tool_runs(capsys):
    """tools/batch_first_pairs.py: the kernels' batch-first y against the
    transposing copies, checked equal first; the thread count comes back;
    a bad spec is a clear error."""
    import os
    import runpy
    import fastrnn as fr
    path = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "batch_first_pairs.py")
    main = runpy.run_path(path)["main"]
    was = fr.get_num_threads()
    assert main(["1", "lstm:3:4:2:5:bi", "gru:2:3:2:4"]) == 0
    assert main(["1", "int8", "lstm:3:4:2:5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in out] == ["lstm:3:4:2:5:bi:", "gru:2:3:2:4:",
                                                   "lstm:3:4:2:5:"]
    assert out[0].startswith("float32 ") and out[2].startswith("int8 ")
    assert all("bf/old" in line for line in out)
    assert fr.get_num_threads() == was
    with pytest.raises(ValueError, match="batch_first_pairs: expected cell:B:T:I:H"):
        main(["1", "lstm:2:5"])


def test_idle_latency_bench_runs(capsys):
    """benchmarks/idle_latency.py: calls after a gap on 1 thread and on the
    full count, per workload; the thread count and adaptive threads come
    back as they were; bad arguments are refused."""
    import os
    import runpy
    import fastrnn as fr
    path = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks",
                        "idle_latency.py")
    main = runpy.run_path(path)["main"]
    was_n, was_a = fr.get_num_threads(), fr.get_adaptive_threads()
    assert main(["--gaps", "0,0.001", "--calls", "1"]) == 0
    assert fr.get_num_threads() == was_n and fr.get_adaptive_threads() == was_a
    lines = [line for line in capsys.readouterr().out.splitlines() if " gap " in line]
    assert len(lines) == 4 and all("1 thread" in line and "2 threads" in line for line in lines)
    assert main(["--gaps", "0", "--calls", "1", "--default"]) == 0
    assert fr.get_num_threads() == was_n and fr.get_adaptive_threads() == was_a
    lines = [line for line in capsys.readouterr().out.splitlines() if " gap " in line]
    assert len(lines) == 2 and all("default" in line for line in lines)
    with pytest.raises(SystemExit):
        main(["--calls", "0"])
