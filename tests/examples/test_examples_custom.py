"""The custom-layer example (fastrnn/examples/custom_layer.py, walked through
in docs/custom_layers.md): a NumPy layer trained with an LSTM inside a
Sequential beats the majority class, saves and loads with identical
predictions, passes check_gradients, and its planted wrong backward fails it."""
import json


def test_custom_layer_quick_run(tmp_path):
    from fastrnn.examples import custom_layer
    r = custom_layer.main(["--quick", "--out", str(tmp_path), "--verbose", "0"])
    assert r["accuracy"] > r["majority_test"] + 0.2
    assert r["loss_last"] < r["loss_first"]
    assert r["loaded_predictions_identical"] is True
    assert r["gradients_ok"] is True and r["planted_bug_caught"] is True
    with open(tmp_path / "custom_layer.json") as f:
        saved = json.load(f)["results"]
    assert saved["majority class"]["accuracy"] == r["majority_test"]
