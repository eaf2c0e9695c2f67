"""The benchmark command's shape selection (python -m fastrnn.bench): custom
shapes, --batch, clear errors, and a small end-to-end run writing JSON."""
import json

import numpy as np
import pytest

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
