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
import subprocess
import sys
import zipfile
import zlib

import numpy as np
import pytest

import fastrnn as fr

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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
    """Keras reads activation null as linear: ONNX's Affine(1, 0) in the cell's
    slots; an unknown name is refused naming the file."""
    h5py_mod()
    cfg = model_cfg({"class_name": "LSTM", "config": lstm_cfg(activation=None)})
    arrays = {k: v for k, v in good_arrays().items() if k.startswith("layers/lstm/")}
    path = write_keras(tmp_path / "a.keras", cfg, h5_bytes(arrays))
    layer = fr.from_keras(path)[0]
    assert layer.activations == ["Sigmoid", "Affine", "Affine"]
    assert layer.activation_alpha[1:] == [1.0, 1.0] and layer.activation_beta[1:] == [0.0, 0.0]
    cfg = model_cfg({"class_name": "LSTM", "config": lstm_cfg(activation="selu")})
    path = write_keras(tmp_path / "b.keras", cfg, h5_bytes(arrays))
    with pytest.raises(NotImplementedError, match="activation='selu'") as e:
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

def _metadata_positions(weights):
    """Byte offsets of model.weights.h5 that are not array data: flips there
    damage the file's structure (flips in the data only change weights)."""
    h5py = h5py_mod()
    data = np.ones(len(weights), bool)
    with h5py.File(io.BytesIO(weights), "r") as f:
        for path, a in good_arrays().items():
            off = f[path].id.get_offset()
            data[off:off + a.nbytes] = False
    return np.flatnonzero(data)


def test_bit_flips_in_weights_give_value_error(tmp_path):
    weights = h5_bytes()
    meta = _metadata_positions(weights)
    rng = np.random.default_rng(27)
    path = str(tmp_path / "flip.keras")
    outcomes = {"ok": 0, "ValueError": 0}
    for pos in rng.choice(meta, 150, replace=False):
        b = bytearray(weights)
        b[pos] ^= 1 << int(rng.integers(8))
        write_keras(path, weights=bytes(b))
        try:
            fr.from_keras(path)
            outcomes["ok"] += 1
        except ValueError as e:
            assert path in str(e), f"byte {pos}: {e}"
            outcomes["ValueError"] += 1
        except Exception as e:  # noqa: BLE001 - the point of the test
            pytest.fail(f"byte {pos}: {type(e).__name__}: {e}")
    assert outcomes["ValueError"] > 20, outcomes


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


# ---- 10. nothing read from outside the file -------------------------------------

@pytest.fixture
def secret(tmp_path):
    p = tmp_path / "secret.bin"
    p.write_bytes(np.full(I * 4 * H, 7.0, "f4").tobytes())   # 192 bytes
    return str(p)


def _one_lstm(tmp_path, edit, name="x.keras"):
    cfg = model_cfg({"class_name": "LSTM", "config": lstm_cfg()})
    arrays = {k: v for k, v in good_arrays().items() if k.startswith("layers/lstm/")}
    return write_keras(tmp_path / name, cfg, h5_bytes(arrays, edit))


def test_external_storage_refused(tmp_path, secret):
    path = _one_lstm(tmp_path, lambda f: replace(
        f, "layers/lstm/cell/vars/0", shape=(I, 4 * H), dtype="f4",
        external=[(secret, 0, I * 4 * H * 4)]))
    with pytest.raises(ValueError, match="external") as e:
        fr.from_keras(path)
    assert path in str(e.value) and "'lstm'" in str(e.value)


def test_virtual_dataset_refused(tmp_path, secret):
    h5py = h5py_mod()
    src = str(tmp_path / "src.h5")
    with h5py.File(src, "w") as f:
        f.create_dataset("data", data=np.full((I, 4 * H), 7.0, "f4"))

    def edit(f):
        del f["layers/lstm/cell/vars/0"]
        layout = h5py.VirtualLayout(shape=(I, 4 * H), dtype="f4")
        layout[...] = h5py.VirtualSource(src, "data", shape=(I, 4 * H))
        f.create_virtual_dataset("layers/lstm/cell/vars/0", layout)

    path = _one_lstm(tmp_path, edit)
    with pytest.raises(ValueError, match="virtual") as e:
        fr.from_keras(path)
    assert path in str(e.value)


@pytest.mark.parametrize("where", ["layers/lstm/cell/vars/0", "layers/lstm/cell/vars",
                                   "layers/lstm/cell", "layers/lstm", "layers"])
def test_external_links_refused(tmp_path, where):
    h5py = h5py_mod()
    other = str(tmp_path / "other.h5")
    with h5py.File(other, "w") as f:    # the same weights, in another file
        for k, v in good_arrays().items():
            if k.startswith("layers/lstm/"):
                f.create_dataset(k, data=np.full_like(v, 7.0))

    def edit(f):
        del f[where]
        f[where] = h5py.ExternalLink(other, "/" + where)

    path = _one_lstm(tmp_path, edit)
    with pytest.raises(ValueError, match="external link") as e:
        fr.from_keras(path)
    assert path in str(e.value) and where in str(e.value)


def test_soft_links_refused(tmp_path):
    h5py = h5py_mod()

    def edit(f):
        f.create_dataset("elsewhere", data=f["layers/lstm/cell/vars/1"][()])
        del f["layers/lstm/cell/vars/1"]
        f["layers/lstm/cell/vars/1"] = h5py.SoftLink("/elsewhere")

    path = _one_lstm(tmp_path, edit)
    with pytest.raises(ValueError, match="soft link") as e:
        fr.from_keras(path)
    assert path in str(e.value)


def test_compressed_datasets_refused(tmp_path):
    """A gzip chunk of a 16-float bias that inflates to 16 MiB: HDF5 inflates a
    chunk without bound, so filtered datasets are refused before reading."""
    def edit(f):
        d = replace(f, "layers/lstm/cell/vars/2", shape=(4 * H,), dtype="f4", chunks=(4 * H,),
                    compression="gzip")
        d.id.write_direct_chunk((0,), zlib.compress(b"\0" * (16 << 20), 9), 0)

    path = _one_lstm(tmp_path, edit)
    assert os.path.getsize(path) < 200_000
    with pytest.raises(ValueError, match="filter") as e:
        fr.from_keras(path)
    assert path in str(e.value) and "'lstm'" in str(e.value)


# ---- 11. shapes, dtypes and the cap checked before reading -----------------------

_HUGE = (24576, 32768)   # float32: 3 GiB, never written


def _huge_kernel(tmp_path, units):
    def edit(f):
        replace(f, "layers/lstm/cell/vars/0", shape=_HUGE, dtype="f4", chunks=(1024, 1024))
    cfg = model_cfg({"class_name": "LSTM", "config": lstm_cfg(units=units)})
    arrays = {k: v for k, v in good_arrays().items() if k.startswith("layers/lstm/")}
    return write_keras(tmp_path / f"huge{units}.keras", cfg, h5_bytes(arrays, edit))


_RUN_CAPPED = """
import resource, sys
sys.path.insert(0, {root!r})
import fastrnn as fr
vm = int([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmSize')][0]) << 10
resource.setrlimit(resource.RLIMIT_AS, (vm + (768 << 20),) * 2)
try:
    fr.from_keras({path!r})
    print('LOADED')
except Exception as e:
    print('RAISED', type(e).__name__, e)
"""


@pytest.mark.parametrize("units", [H, 8192])
def test_unwritten_huge_dataset_refused_before_reading(tmp_path, units):
    """The 3 GiB kernel of a small file: refused by shape (units=4) or by the
    cap (units=8192 makes the shape right); run under an address-space limit
    of 768 MiB above what the process holds, so reading it could not pass."""
    h5py_mod()
    path = _huge_kernel(tmp_path, units)
    assert os.path.getsize(path) < 20_000
    out = subprocess.run([sys.executable, "-c", _RUN_CAPPED.format(root=ROOT, path=path)],
                         capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1"))
    assert "RAISED ValueError" in out.stdout, out.stdout + out.stderr
    assert path in out.stdout
    assert ("shape" if units == H else "load cap") in out.stdout, out.stdout


@pytest.mark.parametrize("what,make", [
    ("int", lambda: np.zeros((I, 4 * H), "i4")),
    ("bool", lambda: np.zeros((I, 4 * H), bool)),
    ("complex", lambda: np.zeros((I, 4 * H), "c8")),
    ("string", lambda: np.array([b"abc"] * 3)),
    ("compound", lambda: np.zeros(3, [("a", "f4"), ("b", "f4")])),
    ("scalar", lambda: np.float32(1.0)),
    ("3-d", lambda: np.zeros((1, I, 4 * H), "f4")),
    ("wrong width", lambda: np.zeros((I, 4 * H + 1), "f4")),
])
def test_kernel_dtype_and_shape_checked(tmp_path, what, make):
    path = _one_lstm(tmp_path, lambda f: replace(f, "layers/lstm/cell/vars/0", data=make()))
    with pytest.raises(ValueError) as e:
        fr.from_keras(path)
    msg = str(e.value)
    assert path in msg and "'lstm'" in msg and "vars/0" in msg, msg


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


def test_arrays_counted_against_the_cap(tmp_path):
    """An unwritten kernel of 1.28 MB in a member of a few KB."""
    path = _one_lstm(tmp_path, lambda f: replace(f, "layers/lstm/cell/vars/0",
                                                 shape=(20000, 4 * H), dtype="f4",
                                                 chunks=(1000, 4 * H)))
    assert os.path.getsize(path) < 20_000
    assert len(fr.from_keras(path, max_bytes=4 << 20)) == 1
    with pytest.raises(ValueError, match="load cap") as e:
        fr.from_keras(path, max_bytes=1 << 20)
    assert "vars/0" in str(e.value) and path in str(e.value)


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


# ---- 13. node types ------------------------------------------------------------------

@pytest.mark.parametrize("edit,match", [
    (lambda f: (f.__delitem__("layers/lstm/cell/vars"),
                f.create_dataset("layers/lstm/cell/vars", data=np.zeros(3))), "vars"),
    (lambda f: (f.__delitem__("layers/lstm/cell/vars/1"),
                f.create_group("layers/lstm/cell/vars/1")), "vars/1"),
    (lambda f: (f.__delitem__("layers/lstm/cell"),
                f.create_dataset("layers/lstm/cell", data=np.zeros(3))), "cell"),
    (lambda f: f.__delitem__("layers/lstm"), "layers/lstm"),
    (lambda f: f.__delitem__("layers/lstm/cell/vars/2"), "vars"),
    (lambda f: f.create_dataset("layers/lstm/cell/vars/3", data=np.zeros(3, "f4")), "vars"),
    (lambda f: f.move("layers/lstm/cell/vars/2", "layers/lstm/cell/vars/\u00b2"), "vars"),
    (lambda f: f.move("layers/lstm/cell/vars/0", "layers/lstm/cell/vars/00"), "vars"),
], ids=["vars-dataset", "var-group", "cell-dataset", "no-layer", "too-few", "too-many",
        "superscript-2", "name-00"])
def test_node_types_checked(tmp_path, edit, match):
    path = _one_lstm(tmp_path, edit)
    with pytest.raises(ValueError, match=match) as e:
        fr.from_keras(path)
    assert path in str(e.value) and "'lstm'" in str(e.value), str(e.value)


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
