"""Hostile or careless inputs to the core (issue 27): checkpoint path
patterns, oversized step() inputs, replaced parameters and out-of-range ids
are refused up front with errors that name what the user passed."""
import os

import numpy as np
import pytest

import fastrnn as fr


def _run_capped(tmp_path, code, limit=3 << 30):
    """conftest's run_capped with this file's cap."""
    from conftest import run_capped
    return run_capped(tmp_path, code, limit)


def _fit(model, callbacks, **kw):
    X = np.random.default_rng(0).standard_normal((8, 3, 2)).astype(np.float32)
    y = np.arange(8) % 2
    model.fit(X, y, epochs=2, batch_size=4, verbose=0, seed=0, callbacks=callbacks, **kw)


def _small_model():
    m = fr.Sequential([fr.GRU(2, 3, batch_first=True), fr.MeanPooling(), fr.Dense(3, 2)],
                      seed=0)
    m.compile(loss="cross_entropy", optimizer="adam", metrics=["accuracy"])
    return m


# ---- item 5: ModelCheckpoint path patterns -------------------------------------------
@pytest.mark.parametrize("pattern, says", [
    ("run{1}.fastrnn", "{1}"),
    ("run{}.fastrnn", "{}"),
    ("run{epoch.real}.fastrnn", "{epoch.real}"),
    ("run{epoch[0]}.fastrnn", "{epoch[0]}"),
    ("run{epoch:s}.fastrnn", "epoch"),
    ("run{epoch!x}.fastrnn", "epoch"),
    ("run{epoch.fastrnn", "run{epoch.fastrnn"),
    ("run}.fastrnn", "run}.fastrnn"),
    ("run{val_loss:d}.fastrnn", "val_loss"),
    ("run{epoch:{w}}.fastrnn", "epoch"),
])
def test_checkpoint_pattern_checked_when_built(pattern, says, tmp_path):
    with pytest.raises(ValueError, match=r"ModelCheckpoint: path") as e:
        fr.ModelCheckpoint(str(tmp_path / pattern), save_best_only=False)
    assert says in str(e.value)
    assert "{epoch}" in str(e.value) or "format" in str(e.value)


def test_checkpoint_unknown_field_names_the_logged_values(tmp_path):
    cb = fr.ModelCheckpoint(str(tmp_path / "ckpt_{step}.fastrnn"), save_best_only=False)
    with pytest.raises(ValueError, match=r"\{step\}.*not among the logged values.*'loss'"):
        _fit(_small_model(), [cb])
    assert os.listdir(tmp_path) == []


def test_checkpoint_epoch_and_logged_fields_format(tmp_path):
    cb = fr.ModelCheckpoint(tmp_path / "e{epoch:03d}-{loss:.2f}-{accuracy:.2f}.fastrnn",
                            save_best_only=False)
    _fit(_small_model(), [cb])
    names = sorted(os.listdir(tmp_path))
    assert [n[:5] for n in names] == ["e001-", "e002-"] and all(n.endswith(".fastrnn")
                                                                for n in names)
    assert isinstance(fr.load(tmp_path / names[1]), fr.Sequential)


def test_checkpoint_literal_braces_and_bytes_path(tmp_path):
    cb = fr.ModelCheckpoint(os.fsencode(tmp_path / "m{{x}}{epoch}.fastrnn"),
                            save_best_only=False)
    _fit(_small_model(), [cb])
    assert sorted(os.listdir(tmp_path)) == ["m{x}1.fastrnn", "m{x}2.fastrnn"]


def test_checkpoint_path_and_monitor_types():
    with pytest.raises(TypeError, match="ModelCheckpoint: path"):
        fr.ModelCheckpoint(5)
    with pytest.raises(TypeError, match="monitor"):
        fr.ModelCheckpoint("m.fastrnn", monitor=None)
    with pytest.raises(TypeError, match="monitor"):
        fr.EarlyStopping(monitor=3)


# ---- item 6: step() refuses too many rows before copying -----------------------------
def test_step_refuses_too_many_rows_before_copying(tmp_path):
    """step(x) with 2**31 rows: refused like __call__, before any copy (the
    old code converted a broadcast float64 view to 8 GiB first)."""
    out = _run_capped(tmp_path, """
        import numpy as np
        import fastrnn as fr
        rows = np.broadcast_to(np.zeros((1, 1)), (2**31, 1))       # float64, no memory
        rows32 = np.broadcast_to(np.zeros((1, 1), np.float32), (2**31, 1))
        for layer in (fr.GRU(1, 2), fr.LSTM(1, 2), fr.RNN(1, 2), fr.LayerNormLSTM(1, 2)):
            for name, call in (("step", lambda: layer.step(rows)),
                               ("call", lambda: layer(rows[None])),
                               ("call32", lambda: layer(rows32[None]))):
                try:
                    call()
                    print(name, "ran")
                except Exception as e:
                    print(name, type(e).__name__, str(e)[:60])
        m = fr.Sequential([fr.GRU(1, 2), fr.Dense(2, 1)])
        try:
            m.step(rows)
            print("model ran")
        except Exception as e:
            print("model", type(e).__name__, str(e)[:60])
    """)
    lines = out.splitlines()
    assert len(lines) == 13, out
    for line in lines:
        assert " ValueError " in line and "rows" in line, out


def test_step_checks_shape_before_converting():
    g = fr.GRU(3, 4)
    x = np.broadcast_to(np.zeros((1, 5)), (2**40, 5))   # wrong width, huge, no memory
    with pytest.raises(ValueError, match=r"x_t: expected shape \(B, input_size=3\)"):
        g.step(x)
    with pytest.raises(ValueError, match="x: expected last dimension input_size=3"):
        g(x[None])


# ---- item 6: a replaced parameter is reported under its own name ---------------------
@pytest.mark.parametrize("cls", [fr.GRU, fr.LSTM, fr.RNN, fr.LayerNormLSTM])
@pytest.mark.parametrize("bad, kind, says", [
    (np.zeros((5, 5), np.float32), ValueError, "shape"),
    (lambda s: np.zeros(s, np.float64), TypeError, "float64"),
    (lambda s: np.zeros(s[::-1], np.float32).T, ValueError, "C-contiguous"),
    (lambda s: [[0.0] * s[1]] * s[0], TypeError, "list"),
])
@pytest.mark.parametrize("call", ["call", "step", "forward"])
def test_replaced_weight_reported_by_its_name(cls, bad, kind, says, call):
    layer = cls(3, 4)
    shape = layer.params["weight_hh_l0"].shape
    layer.params["weight_hh_l0"] = bad(shape) if callable(bad) else bad
    x = np.zeros((2, 1, 3), np.float32)
    run = {"call": lambda: layer(x), "step": lambda: layer.step(x[0]),
           "forward": lambda: layer.forward(x)}[call]
    with pytest.raises(kind, match=r"params\['weight_hh_l0'\]") as e:
        run()
    assert says in str(e.value)
    assert "w_hh[" not in str(e.value) and "w[" not in str(e.value)


@pytest.mark.parametrize("cls", [fr.GRU, fr.LayerNormLSTM])
def test_missing_or_replaced_gradient_reported_by_name(cls):
    layer = cls(3, 4)
    x = np.zeros((2, 1, 3), np.float32)
    del layer.params["weight_ih_l0"]
    with pytest.raises(ValueError, match=r"params\['weight_ih_l0'\] is missing"):
        layer(x)
    layer = cls(3, 4)
    layer.grads["weight_hh_l0"] = np.zeros((1, 1), np.float32)
    y, _ = layer.forward(x)
    with pytest.raises(ValueError, match=r"grads\['weight_hh_l0'\]"):
        layer.backward(np.ones_like(y))


def test_replaced_weight_of_right_kind_still_runs():
    g = fr.GRU(3, 4)
    x = np.ones((2, 1, 3), np.float32)
    y0 = g(x)[0]
    g.params["weight_hh_l0"] = g.params["weight_hh_l0"].copy()
    np.testing.assert_array_equal(g(x)[0], y0)
    np.testing.assert_array_equal(g.step(x[0])[0], y0[0])


# ---- item 6: Embedding ids checked before the cast -----------------------------------
@pytest.mark.parametrize("ids, says", [
    (np.array([[1.0, 1e30]]), "1e+30"),
    (np.array([[1.0, -1e30]]), "-1e+30"),
    (np.array([[1.0, 2.0**63]]), "9.223372036854776e+18"),
    (np.array([[1, 2**64 - 1]], np.uint64), str(2**64 - 1)),
    (np.array([[1, 2**63]], np.uint64), str(2**63)),
])
def test_embedding_reports_the_actual_out_of_range_id(ids, says):
    e = fr.Embedding(10, 2)
    for call in (lambda: e(ids), lambda: e.step(ids[0]),
                 lambda: fr.Sequential([e, fr.GRU(2, 2, batch_first=True)]).step(ids[0])):
        with pytest.raises(ValueError, match="ids must lie in 0..9") as err:
            call()
        assert says in str(err.value)
        assert "-9223372036854775808" not in str(err.value)


def test_embedding_ids_in_range_still_work():
    e = fr.Embedding(10, 2)
    for ids in (np.array([[0.0, 9.0]]), np.array([[0, 9]], np.uint64), [[True, False]]):
        assert e(ids).shape == (1, 2, 2)


# ---- item 8: tests leave nothing in the system temp folder ---------------------------
def test_no_test_writes_a_fixed_name_in_the_temp_folder():
    """Tests write under pytest's tmp_path (removed by pytest, never shared by
    two runs); a fixed name in /tmp collides between concurrent runs and is
    left behind. conftest.py also redirects tempfile's folder for the run and
    fails the session if a test leaves a file there."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    me = os.path.abspath(__file__)
    found = []
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if not name.endswith(".py") or path == me:
                continue
            with open(path, encoding="utf-8") as f:
                for i, line in enumerate(f, 1):
                    if any(s in line for s in ('"/tmp', "'/tmp", "gettempdir(")):
                        found.append(f"{os.path.relpath(path, root)}:{i}: {line.strip()}")
    assert not found, "use tmp_path / tmp_path_factory:\n" + "\n".join(found)


# ---- item 7: the same for the other layers with parameters ---------------------------
@pytest.mark.parametrize("make, key, bad, kind, says", [
    (lambda: fr.Dense(3, 4), "weight", np.zeros((5, 5), np.float32), ValueError, "(4, 3)"),
    (lambda: fr.Dense(3, 4), "weight", np.zeros((4, 3), np.float64), TypeError, "float64"),
    (lambda: fr.Dense(3, 4), "bias", np.zeros((5,), np.float32), ValueError, "(4,)"),
    (lambda: fr.Embedding(10, 4), "weight", np.zeros((5, 5), np.float32), ValueError, "(10, 4)"),
    (lambda: fr.AttentionPooling(3, 2), "context", np.zeros((3,), np.float32), ValueError,
     "(2,)"),
    (lambda: fr.AttentionPooling(3, 2), "weight", None, ValueError, "missing"),
])
def test_replaced_parameter_of_other_layers_reported_by_name(make, key, bad, kind, says):
    layer = make()
    if bad is None:
        del layer.params[key]
    else:
        layer.params[key] = bad
    x = (np.array([[1, 2]]) if isinstance(layer, fr.Embedding)
         else np.zeros((2, 3, 3), np.float32))
    with pytest.raises(kind, match=rf"params\['{key}'\]") as e:
        layer(x)
    assert says in str(e.value)


def test_dense_weight_of_any_layout_still_runs():
    d = fr.Dense(3, 4)
    x = np.ones((2, 3), np.float32)
    y0 = d(x)
    d.params["weight"] = np.asfortranarray(d.params["weight"])
    np.testing.assert_array_equal(d(x), y0)


def test_step_fast_path_allocates_nothing_past_the_row_limit():
    """An exact float32 C-contiguous x_t of 2**31 rows (untouched virtual
    memory) takes the stepper's fast path; it must hand over to the checked
    path, which refuses it, before allocating outputs of that many rows."""
    import tracemalloc

    try:
        x = np.empty((2**31, 1), np.float32)   # pages never touched
    except MemoryError:
        pytest.skip("no 8 GiB of address space for the untouched input")
    gru = fr.GRU(1, 1, seed=0).eval()
    gru.step(np.zeros((1, 1), np.float32))   # the first call makes the stepper
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="rows"):
            gru.step(x)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del x
    assert peak < 64 << 20, f"step allocated {peak} bytes before refusing"
