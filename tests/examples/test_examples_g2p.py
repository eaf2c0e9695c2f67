"""Smoke test of the G2P example: a --quick run learns (beats the letter
baseline on WER and PER, greedy and beam), writes its plot and a model file
that fr.load reads back into the same predictions; --compare-torch times
both engines on the same batches."""
import json
import os

import numpy as np
import pytest

import fastrnn as fr
from fastrnn.examples import _g2p_data as G


def _need_data():
    try:
        G.find_data()
    except FileNotFoundError as e:
        pytest.skip(f"the CMUdict split is not here: {e}")


def test_g2p_quick_beats_the_baseline_and_saves(tmp_path):
    _need_data()
    from fastrnn.examples import g2p
    res = g2p.main(["--quick", "--out", str(tmp_path), "--threads", "1", "--verbose", "0"])
    base = res["letter baseline"]
    for name in ("fastrnn greedy", "fastrnn beam 5"):
        assert res[name]["wer"] < base["wer"] - 20, (name, res[name], base)
        assert res[name]["per"] < base["per"] / 2, (name, res[name], base)
    with open(tmp_path / "g2p.json") as f:
        assert json.load(f)["results"]["fastrnn greedy"]["wer"] == res["fastrnn greedy"]["wer"]
    svg = (tmp_path / "g2p_attention.svg").read_text()
    assert svg.startswith("<svg") or "<svg" in svg[:200]
    model = fr.load(tmp_path / "g2p.fastrnn")
    best = fr.load(tmp_path / "g2p_best.fastrnn")
    words = [[1, 2, 3], [4, 5, 6, 7, 8]]
    for a, b in zip(model.predict(words), best.predict(words)):
        np.testing.assert_array_equal(a, b)    # the file holds the best dev weights


def test_g2p_compare_torch_times_both(tmp_path):
    _need_data()
    pytest.importorskip("torch")
    from fastrnn.examples import g2p
    got = g2p.main(["--quick", "--compare-torch", "--epochs", "0", "--out", str(tmp_path),
                    "--threads", "1", "--verbose", "0", "--torch-words", "256"])
    assert got["words"] == 256
    assert got["fastrnn_fit_s"] > 0 and got["torch_fit_s"] > 0
    assert os.path.exists(tmp_path / "g2p_torch.json")


def test_g2p_resume_goes_on_and_averages(tmp_path):
    """--resume starts from the saved model and its optimizer (its dev score
    first in the log), trains --epochs more numbered from --start-epoch, and
    --average-last K scores the mean of the last K epochs' weights on dev."""
    _need_data()
    from fastrnn.examples import g2p
    first, second = tmp_path / "a", tmp_path / "b"
    g2p.main(["--quick", "--epochs", "2", "--out", str(first), "--threads", "1",
              "--verbose", "0"])
    res = g2p.main(["--quick", "--resume", str(first / "g2p.fastrnn"), "--start-epoch", "2",
                    "--epochs", "3", "--average-last", "3", "--out", str(second),
                    "--threads", "1", "--verbose", "0"])
    with open(second / "g2p_epochs.json") as f:
        log = json.load(f)
    assert [e["epoch"] for e in log] == [2, 3, 4, 5, "mean of the last 2", "mean of the last 3"]
    assert log[0]["resumed_from"] == str(first / "g2p.fastrnn") and log[0]["loss"] is None
    assert all(e["loss"] > 0 for e in log[1:4])
    assert res["fastrnn greedy"]["epochs"] == 3
    fr.load(second / "g2p.fastrnn")


def test_g2p_anneal_goes_on_from_the_best_epoch_at_a_constant_rate(tmp_path):
    """--anneal-after N: after epoch N the best dev epoch's weights go on at
    --anneal-lr with no halving, and --average-last averages only that
    phase's epochs (every k from 2), each mean scored on dev."""
    _need_data()
    from fastrnn.examples import g2p
    g2p.main(["--quick", "--epochs", "5", "--anneal-after", "2", "--anneal-lr", "1e-3",
              "--patience", "1", "--average-last", "4", "--out", str(tmp_path),
              "--threads", "1", "--verbose", "0"])
    with open(tmp_path / "g2p_epochs.json") as f:
        log = json.load(f)
    names = [e["epoch"] for e in log]
    assert names[:2] == [1, 2] and str(names[2]).startswith("anneal from dev")
    assert names[3:6] == [3, 4, 5]
    assert names[6:] == ["mean of the last 2", "mean of the last 3"]
    assert all(e["lr"] == 1e-3 for e in log[2:6])
    best = min((e["dev_wer"], e["dev_per"]) for e in log[:2])
    assert (log[2]["dev_wer"], log[2]["dev_per"]) == best
    fr.load(tmp_path / "g2p.fastrnn")


@pytest.mark.parametrize("argv, message", [
    (["--start-epoch", "3"], "--start-epoch"),
    (["--average-last", "-1"], "--average-last"),
    (["--anneal-after", "-1"], "--anneal-after"),
    (["--anneal-lr", "0"], "--anneal-lr"),
])
def test_g2p_refuses_bad_resume_flags(tmp_path, capsys, argv, message):
    from fastrnn.examples import g2p
    with pytest.raises(SystemExit):
        g2p.main(["--quick", "--out", str(tmp_path)] + argv)
    assert message in capsys.readouterr().err


def test_g2p_resume_refuses_another_model(tmp_path):
    _need_data()
    from fastrnn.examples import g2p
    path = tmp_path / "lstm.fastrnn"
    fr.Sequential([fr.LSTM(3, 4)]).save(path)
    with pytest.raises(SystemExit, match="expected a saved fr.Seq2Seq, got Sequential"):
        g2p.main(["--quick", "--resume", str(path), "--out", str(tmp_path)])
