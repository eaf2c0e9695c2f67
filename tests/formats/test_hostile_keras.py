"""fr.from_keras on hostile .keras files and inputs (issue 27).

The files are built by hand with zipfile + h5py in Keras 3's layout
(config.json + model.weights.h5 with layers/<snake>/cell/vars/0..n), so only
h5py is needed; the fake live layers below need neither keras nor h5py.
Every damaged or hostile input must give a ValueError (or TypeError) naming
the file, the layer and the field, never an h5py/zipfile/int() exception, and
nothing may be read from outside the given file or allocated beyond the cap.
"""
import io
import json
import os
import zipfile

import numpy as np
import pytest

import fastrnn as fr

I, H = 3, 4   # input size and units of the hand-built LSTM: kernel (3, 16) is 192 bytes


def h5py_mod():
    return pytest.importorskip("h5py")


def lstm_cfg(name="lstm", **kw):
    cfg = {"name": name, "units": H, "activation": "tanh", "recurrent_activation": "sigmoid",
           "use_bias": True, "return_sequences": True, "return_state": False,
           "go_backwards": False}
    cfg.update(kw)
    return cfg


def gru_cfg(name, **kw):
    return lstm_cfg(**{"name": name, "reset_after": True, **kw})


def model_cfg(*layers):
    return {"class_name": "Sequential",
            "config": {"name": "seq", "layers": [{"class_name": "InputLayer",
                                                  "config": {"name": "input_layer"}},
                                                 *layers]}}


def good_config():
    bidir = {"class_name": "Bidirectional",
             "config": {"name": "bidirectional", "merge_mode": "concat",
                        "layer": {"class_name": "GRU", "config": gru_cfg("forward_gru")},
                        "backward_layer": {"class_name": "GRU",
                                           "config": gru_cfg("backward_gru",
                                                             go_backwards=True)}}}
    return model_cfg({"class_name": "LSTM", "config": lstm_cfg()}, bidir)


def good_arrays(seed=0):
    """h5 path -> array of the model of good_config()."""
    rng = np.random.default_rng(seed)
    out = {}
    for i, s in enumerate([(I, 4 * H), (H, 4 * H), (4 * H,)]):
        out[f"layers/lstm/cell/vars/{i}"] = rng.standard_normal(s).astype("f4")
    for d in ("forward_layer", "backward_layer"):
        for i, s in enumerate([(4 * H, 3 * H), (H, 3 * H), (2, 3 * H)]):
            out[f"layers/bidirectional/{d}/cell/vars/{i}"] = rng.standard_normal(s).astype("f4")
    return out


def h5_bytes(arrays=None, edit=None):
    """An HDF5 file of `arrays` (default: good_arrays()) in memory; edit(f) may
    change it before it is closed."""
    h5py = h5py_mod()
    bio = io.BytesIO()
    with h5py.File(bio, "w") as f:
        for path, a in (good_arrays() if arrays is None else arrays).items():
            f.create_dataset(path, data=a)
        f.create_group("vars")
        if edit is not None:
            edit(f)
    return bio.getvalue()


def write_keras(path, config=None, weights=None, compression=zipfile.ZIP_STORED, extra=()):
    config = good_config() if config is None else config
    weights = h5_bytes() if weights is None else weights
    with zipfile.ZipFile(path, "w", compression) as z:
        z.writestr("metadata.json", '{"keras_version": "3.15.1"}')
        z.writestr("config.json", config if isinstance(config, str) else json.dumps(config))
        z.writestr("model.weights.h5", weights)
        for name, data in extra:
            z.writestr(name, data)
    return str(path)


def replace(f, path, **kw):
    """Replace dataset `path` of an open h5py file by create_dataset(path, **kw)."""
    del f[path]
    return f.create_dataset(path, **kw)


@pytest.fixture
def good(tmp_path):
    return write_keras(tmp_path / "good.keras")


def test_hand_built_file_loads(good):
    h5py_mod()
    layers = fr.from_keras(good)
    assert [type(l).__name__ for l in layers] == ["LSTM", "GRU"]
    a = good_arrays()
    np.testing.assert_array_equal(layers[0].params["weight_ih_l0"],
                                  a["layers/lstm/cell/vars/0"].T)
    assert layers[1].bidirectional and layers[1].input_size == 4 * H


# ---- 8. config fields of the wrong type ----------------------------------------

BAD_UNITS = [float("inf"), float("nan"), "four", [4], True, -3, 0, 1e30, 4.0, None, {"u": 4}]


@pytest.mark.parametrize("units", BAD_UNITS, ids=repr)
def test_units_of_the_wrong_type(tmp_path, units):
    h5py_mod()
    path = write_keras(tmp_path / "u.keras",
                       model_cfg({"class_name": "LSTM", "config": lstm_cfg(units=units)}))
    with pytest.raises(ValueError) as e:
        fr.from_keras(path)
    msg = str(e.value)
    assert "'units'" in msg and "'lstm'" in msg and path in msg, msg


BAD_FIELDS = [
    ("use_bias", "false"), ("use_bias", 1), ("use_bias", None),
    ("reset_after", "yes"), ("go_backwards", "no"), ("go_backwards", 0),
    ("return_sequences", 1), ("return_state", "true"),
    ("activation", 3), ("activation", ["tanh"]), ("recurrent_activation", 1.5),
    ("name", 7),
]


@pytest.mark.parametrize("field,value", BAD_FIELDS, ids=repr)
def test_other_fields_of_the_wrong_type(tmp_path, field, value):
    h5py_mod()
    path = write_keras(tmp_path / "f.keras",
                       model_cfg({"class_name": "GRU",
                                  "config": gru_cfg(**{"name": "gru", field: value})}),
                       h5_bytes({f"layers/gru/cell/vars/{i}": np.zeros(s, "f4") for i, s in
                                 enumerate([(I, 3 * H), (H, 3 * H), (2, 3 * H)])}))
    with pytest.raises(ValueError) as e:
        fr.from_keras(path)
    msg = str(e.value)
    assert f"'{field}'" in msg and path in msg, msg


def _bidir(**over):
    cfg = {"name": "bi", "merge_mode": "concat",
           "layer": {"class_name": "GRU", "config": gru_cfg("fw")}}
    cfg.update(over)
    return model_cfg({"class_name": "Bidirectional", "config": cfg})


@pytest.mark.parametrize("config,field", [
    (_bidir(merge_mode=5), "merge_mode"),
    (_bidir(layer=["GRU"]), "layer"),
    (_bidir(layer={"class_name": "GRU", "config": [1]}), "config"),
    (_bidir(backward_layer="GRU"), "backward_layer"),
    (_bidir(backward_layer={"class_name": "GRU", "config": gru_cfg("bw", units="4")}), "units"),
    (model_cfg({"class_name": ["LSTM"], "config": lstm_cfg()}), "class_name"),
    (model_cfg({"class_name": "LSTM", "config": [1, 2]}), "config"),
    ({"class_name": "Sequential", "config": [1]}, "config"),
    ({"class_name": "Sequential", "config": {"layers": {"a": 1}}}, "layers"),
    ({"class_name": "Sequential", "config": {"name": "s"}}, "layers"),
    (model_cfg({"config": lstm_cfg()}), "class_name"),
    ({"config": {"layers": []}}, "class_name"),
    (model_cfg({"class_name": "Bidirectional", "config": {"name": "bi"}}), "layer"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_nested_config_fields(tmp_path, config, field):
    h5py_mod()
    path = write_keras(tmp_path / "n.keras", config)
    with pytest.raises(ValueError) as e:
        fr.from_keras(path)
    msg = str(e.value)
    assert f"'{field}'" in msg and path in msg, msg


def test_null_activation_is_keras_linear(tmp_path):
    """Keras reads activation null as linear, which fastrnn does not have."""
    h5py_mod()
    cfg = model_cfg({"class_name": "LSTM", "config": lstm_cfg(activation=None)})
    arrays = {k: v for k, v in good_arrays().items() if k.startswith("layers/lstm/")}
    path = write_keras(tmp_path / "a.keras", cfg, h5_bytes(arrays))
    with pytest.raises(NotImplementedError, match="activation='linear'") as e:
        fr.from_keras(path)
    assert path in str(e.value)


def test_bidirectional_of_a_backwards_layer(tmp_path):
    """Keras's Bidirectional(LSTM(go_backwards=True)) runs its 'forward' layer
    backwards: not fastrnn's bidirectional layer."""
    h5py_mod()
    cfg = _bidir(layer={"class_name": "GRU", "config": gru_cfg("fw", go_backwards=True)})
    path = write_keras(tmp_path / "b.keras", cfg)
    with pytest.raises(NotImplementedError, match="go_backwards") as e:
        fr.from_keras(path)
    assert path in str(e.value)


# ---- 9. bit flips ----------------------------------------------------------------

def test_bit_flips_in_the_zip_give_value_error(tmp_path, good):
    h5py_mod()
    data = open(good, "rb").read()
    rng = np.random.default_rng(28)
    path = str(tmp_path / "zflip.keras")
    for pos in rng.choice(len(data), 60, replace=False):
        b = bytearray(data)
        b[pos] ^= 1 << int(rng.integers(8))
        with open(path, "wb") as f:
            f.write(b)
        try:
            fr.from_keras(path)
        except ValueError as e:
            assert path in str(e), f"byte {pos}: {e}"
        except Exception as e:  # noqa: BLE001
            pytest.fail(f"byte {pos}: {type(e).__name__}: {e}")


def test_max_bytes_caps_the_weights(good):
    h5py_mod()
    assert len(fr.from_keras(good, max_bytes=1 << 20)) == 2
    with pytest.raises(ValueError, match="load cap") as e:
        fr.from_keras(good, max_bytes=10_000)    # the h5 member is ~18 KB, its arrays ~2 KB
    assert good in str(e.value)
    with pytest.raises(ValueError, match="max_bytes"):
        fr.from_keras(good, max_bytes=0)


@pytest.fixture
def small_limit():
    prev = fr.formats.set_load_limit(3000)
    yield
    fr.formats.set_load_limit(prev)


def test_default_limit_applies(good, small_limit):
    h5py_mod()
    with pytest.raises(ValueError, match="load cap") as e:
        fr.from_keras(good)
    assert good in str(e.value)


# ---- 12. the zip's members -------------------------------------------------------

def test_weights_member_bomb_refused_by_ratio(tmp_path):
    """A weights member padded with 4 MiB of zeros: deflated more than 200:1."""
    h5 = h5_bytes() + b"\0" * (4 << 20)
    path = write_keras(tmp_path / "bomb.keras", weights=h5, compression=zipfile.ZIP_DEFLATED)
    assert os.path.getsize(path) < 100_000
    with pytest.raises(ValueError, match="ratio") as e:
        fr.from_keras(path)
    assert path in str(e.value) and "model.weights.h5" in str(e.value)


def test_config_member_over_the_cap(tmp_path):
    cfg = good_config()
    cfg["config"]["padding"] = "x" * 20_000
    path = write_keras(tmp_path / "c.keras", cfg)
    assert len(fr.from_keras(path, max_bytes=1 << 20)) == 2
    with pytest.raises(ValueError, match="load cap") as e:
        fr.from_keras(path, max_bytes=12_000)
    assert "config.json" in str(e.value) and path in str(e.value)


def test_duplicate_members(tmp_path):
    """Two model.weights.h5 members: readers would differ on which is meant."""
    h5py_mod()
    path = str(tmp_path / "dup.keras")
    with pytest.warns(UserWarning, match="Duplicate name"):
        write_keras(path, extra=[("model.weights.h5", h5_bytes(good_arrays(seed=1)))])
    with pytest.raises(ValueError, match="2 members named model.weights.h5") as e:
        fr.from_keras(path)
    assert path in str(e.value)


def _patch_method(data, name, method):
    """The zip bytes with member `name`'s compression method set to `method`
    in its local and central headers."""
    b = bytearray(data)
    for sig, off in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        i = 0
        while (i := b.find(sig, i)) >= 0:
            nlen_at = 26 if sig == b"PK\x03\x04" else 28
            nstart = 30 if sig == b"PK\x03\x04" else 46
            n = int.from_bytes(b[i + nlen_at:i + nlen_at + 2], "little")
            if bytes(b[i + nstart:i + nstart + n]) == name.encode():
                b[i + off:i + off + 2] = method.to_bytes(2, "little")
            i += 4
    return bytes(b)


def test_unknown_compression_method(tmp_path, good):
    h5py_mod()
    path = tmp_path / "m.keras"
    path.write_bytes(_patch_method(open(good, "rb").read(), "model.weights.h5", 99))
    with pytest.raises(ValueError) as e:
        fr.from_keras(str(path))
    assert str(path) in str(e.value) and "model.weights.h5" in str(e.value)


def test_corrupt_deflate_stream(tmp_path):
    h5py_mod()
    path = write_keras(tmp_path / "d.keras", compression=zipfile.ZIP_DEFLATED)
    data = bytearray(open(path, "rb").read())
    i = data.find(b"PK\x03\x04", data.find(b"model.weights.h5") - 40)
    start = i + 30 + len("model.weights.h5")
    data[start:start + 64] = b"\xff" * 64     # not a deflate stream
    open(path, "wb").write(data)
    with pytest.raises(ValueError) as e:
        fr.from_keras(path)
    assert path in str(e.value)


# ---- sources ---------------------------------------------------------------------

def test_sources_that_are_not_files(tmp_path):
    h5py_mod()
    with pytest.raises(ValueError, match="directory") as e:
        fr.from_keras(str(tmp_path))
    assert str(tmp_path) in str(e.value)
    fifo = tmp_path / "fifo.keras"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="FIFO"):
        fr.from_keras(str(fifo))
    link = tmp_path / "zero.keras"
    os.symlink("/dev/zero", link)
    with pytest.raises(ValueError, match="device"):
        fr.from_keras(link)
    with pytest.raises(FileNotFoundError, match="no such file"):
        fr.from_keras(str(tmp_path / "missing.keras"))


def test_bytes_source(good):
    h5py_mod()
    data = open(good, "rb").read()
    assert len(fr.from_keras(data)) == 2
    with pytest.raises(ValueError, match="<bytes>"):
        fr.from_keras(data[:100])


# ---- the live path: the same config checks ------------------------------------------

def _fake(cls, **attrs):
    """An object that passes for a live Keras object of class `cls`."""
    return type(cls, (), dict(attrs, __module__="keras.src.fake"))()


def _fake_lstm(cfg, weights=None):
    ws = weights if weights is not None else [np.zeros(s, "f4") for s in
                                              [(I, 4 * H), (H, 4 * H), (4 * H,)]]
    return _fake("LSTM", name=cfg.get("name", "lstm"), built=True,
                 get_config=lambda self: cfg, get_weights=lambda self: ws)


@pytest.mark.parametrize("field,value", [("units", "four"), ("units", float("inf")),
                                         ("use_bias", "false"), ("go_backwards", "no"),
                                         ("return_sequences", 2)])
def test_live_layer_config_checked(field, value):
    layer = _fake_lstm(lstm_cfg(**{field: value}))
    with pytest.raises(ValueError) as e:
        fr.from_keras(layer)
    msg = str(e.value)
    assert f"'{field}'" in msg and "'lstm'" in msg, msg


def test_live_sequential_config_checked():
    dense = _fake("Dense", name="dense", get_config=lambda self: {"name": "dense",
                                                                  "use_bias": "no",
                                                                  "activation": "linear"},
                  get_weights=lambda self: [np.zeros((4, 2), "f4"), np.zeros(2, "f4")])
    model = _fake("Sequential", name="m", layers=[dense])
    with pytest.raises(ValueError) as e:
        fr.from_keras(model, sequential=True)
    assert "'use_bias'" in str(e.value) and "'dense'" in str(e.value), str(e.value)
    drop = _fake("Dropout", name="drop", get_config=lambda self: {"rate": "half"},
                 get_weights=lambda self: [])
    with pytest.raises(ValueError) as e:
        fr.from_keras(_fake("Sequential", name="m", layers=[drop]), sequential=True)
    assert "'rate'" in str(e.value) and "'drop'" in str(e.value), str(e.value)
