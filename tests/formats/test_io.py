"""Model files: exact round trips, resumed training, and hostile or broken
files refused with a clear error, never running code."""
import io
import json
import pickle
import zipfile

import numpy as np
import pytest

import fastrnn as fr


def trained_model():
    rng = np.random.default_rng(0)
    X = rng.integers(1, 10, size=(32, 7))
    L = rng.integers(1, 8, size=32)
    y = (X[:, 0] > 5).astype(np.int64)
    m = fr.Sequential([fr.Embedding(10, 4, padding_idx=0),
                       fr.GRU(4, 6, batch_first=True, bidirectional=True, num_layers=2,
                              dropout=0.1),
                       fr.MeanPooling(), fr.Dropout(0.2), fr.Dense(12, 8, activation="relu"),
                       fr.Dense(8, 2)], seed=0)
    m.compile(loss="cross_entropy", optimizer=fr.optim.Adam(lr=0.01), clip_norm=1.0,
              metrics=["accuracy"])
    m.fit(X, y, lengths=L, epochs=2, batch_size=8, seed=0, verbose=0)
    return m, X, y, L


def test_round_trip_exact(tmp_path):
    m, X, y, L = trained_model()
    path = tmp_path / "m.fastrnn"
    m.save(path)
    m2 = fr.load(path)
    np.testing.assert_array_equal(m.predict(X, lengths=L), m2.predict(X, lengths=L))
    assert m2.loss.name == "cross_entropy" and m2.clip_norm == 1.0
    assert m2.metrics == ["accuracy"]
    assert m2.evaluate(X, y, lengths=L) == m.evaluate(X, y, lengths=L)
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert "config.json" in names and all(n.endswith(".npy") for n in names if n != "config.json")
        json.loads(zf.read("config.json"))


def test_resumed_training_continues_identically(tmp_path):
    m, X, y, L = trained_model()
    path = tmp_path / "m.fastrnn"
    m.save(path)
    m2 = fr.load(path)
    for mm in (m, m2):
        mm.fit(X, y, lengths=L, epochs=1, batch_size=8, seed=7, verbose=0)
    for (n, p, _), (_, q, _) in zip(m.parameters(), m2.parameters()):
        np.testing.assert_array_equal(p, q, err_msg=n)


def test_every_layer_kind_round_trips(tmp_path):
    m = fr.Sequential([fr.LSTM(3, 5, batch_first=True, num_layers=2), fr.Activation("tanh"),
                       fr.RNN(5, 4, nonlinearity="relu", batch_first=True),
                       fr.LayerNormLSTM(4, 4, batch_first=True, zoneout=0.1),
                       fr.GRU(4, 4, batch_first=True, recurrent_dropout=0.2),
                       fr.GRU(4, 4, batch_first=True, linear_before_reset=False, clip=3.0),
                       fr.AttentionPooling(4, 2), fr.Dense(4, 1, bias=False)], seed=3)
    x = np.random.default_rng(1).standard_normal((4, 6, 3)).astype(np.float32)
    m.save(tmp_path / "a.fastrnn")
    m2 = fr.load(tmp_path / "a.fastrnn")
    np.testing.assert_array_equal(m(x), m2(x))
    assert m2.loss is None
    assert m2.layers[5].linear_before_reset is False and m2.layers[5].clip == 3.0
    with pytest.raises(ValueError, match="clip"):
        fr.LSTM(3, 4, zoneout=0.1, clip=2.0)
    for a, b in ((fr.MaxPooling(), fr.LastStep()),):
        s = fr.Sequential([fr.GRU(3, 2, batch_first=True), a])
        s.save(tmp_path / "b.fastrnn")
        np.testing.assert_array_equal(fr.load(tmp_path / "b.fastrnn")(x), s(x))


def _saved_bytes(folder):
    m, *_ = trained_model()
    path = folder / "m.fastrnn"
    m.save(path)
    return path.read_bytes()


def _rewrite(data, edit):
    """A copy of the archive with members changed by edit(dict name -> bytes)."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    edit(members)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for n, b in members.items():
            zf.writestr(n, b)
    return out.getvalue()


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return _saved_bytes(tmp_path_factory.mktemp("good"))


def test_load_from_bytes(good):
    assert isinstance(fr.load(good), fr.Sequential)


def test_truncated_and_garbage_files_refused(good, tmp_path):
    for cut in (0, 10, len(good) // 3, len(good) - 30):
        with pytest.raises(ValueError, match="fr.load"):
            fr.load(good[:cut])
    with pytest.raises(ValueError, match="not a fastrnn model"):
        fr.load(b"hello world" * 10)
    p = tmp_path / "x.fastrnn"
    p.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="not a fastrnn model"):
        fr.load(p)
    with pytest.raises(FileNotFoundError):
        fr.load(tmp_path / "missing.fastrnn")


class _Boom:
    def __reduce__(self):
        return (exec, ("raise SystemExit('code ran')",))


def test_pickle_bearing_array_refused(good):
    def edit(members):
        name = next(n for n in members if n.startswith("arrays/model/"))
        buf = io.BytesIO()
        np.save(buf, np.array([_Boom()], dtype=object), allow_pickle=True)
        members[name] = buf.getvalue()
    with pytest.raises(ValueError, match="dtype object|not allowed|config says"):
        fr.load(_rewrite(good, edit))


def test_path_tricks_and_extra_members_refused(good):
    for bad in ("../evil.npy", "/abs.npy", "arrays/../../x.npy", "script.py"):
        with pytest.raises(ValueError, match="unexpected member"):
            fr.load(_rewrite(good, lambda m, bad=bad: m.__setitem__(bad, b"x")))


def test_config_tampering_refused(good):
    def cfg_edit(fn):
        def edit(members):
            c = json.loads(members["config.json"])
            fn(c)
            members["config.json"] = json.dumps(c).encode()
        return _rewrite(good, edit)
    with pytest.raises(ValueError, match="unknown layer class"):
        fr.load(cfg_edit(lambda c: c["layers"][0].__setitem__("class", "os.system")))
    with pytest.raises(ValueError, match="newer"):
        fr.load(cfg_edit(lambda c: c.__setitem__("format_version", 99)))
    with pytest.raises(ValueError, match="bad config"):
        fr.load(cfg_edit(lambda c: c["layers"][1]["config"].__setitem__("hidden_size", -3)))
    with pytest.raises(ValueError, match="bad argument names|bad config"):
        fr.load(cfg_edit(lambda c: c["layers"][0]["config"].__setitem__("__class__", 1)))
    key = "model/0.weight"
    with pytest.raises(ValueError, match="config says|more than"):
        fr.load(cfg_edit(lambda c: c["arrays"][key].__setitem__("shape", [3, 3])))
    with pytest.raises(ValueError, match="dtype"):
        fr.load(cfg_edit(lambda c: c["arrays"][key].__setitem__("dtype", "object")))
    with pytest.raises(ValueError, match="missing"):
        fr.load(cfg_edit(lambda c: c["arrays"].__setitem__("model/9.weight",
                                                           {"dtype": "float32", "shape": [1]})))
    with pytest.raises(ValueError, match="JSON"):
        fr.load(_rewrite(good, lambda m: m.__setitem__("config.json", b"{not json")))


def test_oversized_member_refused(good):
    def edit(members):
        name = next(n for n in members if n.startswith("arrays/model/"))
        members[name] = members[name] + b"\0" * 100_000
    with pytest.raises(ValueError, match="more than|larger"):
        fr.load(_rewrite(good, edit))


def test_wrong_dtype_array_refused(good):
    def edit(members):
        name = "arrays/model/0.weight.npy"
        arr = np.load(io.BytesIO(members[name]))
        buf = io.BytesIO()
        np.save(buf, arr.astype(np.float64))
        members[name] = buf.getvalue()
    with pytest.raises(ValueError, match="config says|more than"):
        fr.load(_rewrite(good, edit))


def test_damaged_archive_always_value_error(good):
    """Bit flips, cut members and overwritten bytes anywhere in the file:
    zipfile's own errors (bad CRC, short member, unknown compression method)
    come out as fr.load's ValueError, never as BadZipFile/EOFError/..."""
    rng = np.random.default_rng(5)
    n_ok = 0
    for i in range(300):
        b = bytearray(good)
        if i % 3 == 0:
            for p in rng.integers(0, len(b), size=3):
                b[p] ^= 1 << int(rng.integers(8))
        elif i % 3 == 1:
            p = int(rng.integers(0, len(b) - 8))
            b[p:p + 8] = rng.integers(0, 256, size=8).astype(np.uint8).tobytes()
        else:
            b = b[:int(rng.integers(0, len(b)))]
        try:
            fr.load(bytes(b))
            n_ok += 1  # a flip in bytes no check covers (timestamps, attributes)
        except ValueError as e:
            assert "fr.load" in str(e)
    assert n_ok < 300


def test_deeply_nested_config_refused(good):
    deep = b'{"format": "fastrnn-model", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(ValueError, match="JSON"):
        fr.load(_rewrite(good, lambda m: m.__setitem__("config.json", deep)))


def test_oversized_layer_config_refused_before_allocating(good):
    """A few bytes of JSON (hidden_size 10**6, a 10**6-word embedding) must not
    make fr.load allocate gigabytes: the config's parameter count is checked
    against the arrays the file holds before any layer is built."""
    import tracemalloc

    def grow(layer, **sizes):
        def edit(members):
            c = json.loads(members["config.json"])
            c["layers"][layer]["config"].update(sizes)
            members["config.json"] = json.dumps(c).encode()
        return _rewrite(good, edit)

    cases = [grow(1, hidden_size=10**6), grow(0, num_embeddings=10**9),
             grow(5, in_features=10**5, out_features=10**5), grow(1, num_layers=10**4)]
    tracemalloc.start()
    try:
        for data in cases:
            with pytest.raises(ValueError, match="parameters, the file holds"):
                fr.load(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20


def _config_paths(node, path=()):
    yield path
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _config_paths(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _config_paths(v, path + (i,))


def test_every_config_value_replaced_gives_value_error(tmp_path):
    """Each value of config.json (every nesting level) replaced by a list or
    null: a loaded model or fr.load's ValueError, never a TypeError
    from deep inside (a list as a layer class or dtype is unhashable)."""
    m = fr.Sequential([fr.Embedding(5, 2), fr.GRU(2, 3, batch_first=True, num_layers=2),
                       fr.LastStep(), fr.Dropout(0.1), fr.Dense(3, 2)], seed=0)
    m.compile(loss="cross_entropy", optimizer="adam", clip_norm=1.0, metrics=["accuracy"])
    m.fit(np.array([[1, 2], [3, 4]]), np.array([0, 1]), epochs=1, verbose=0, seed=0)
    m.save(tmp_path / "small.fastrnn")
    good = (tmp_path / "small.fastrnn").read_bytes()
    with zipfile.ZipFile(io.BytesIO(good)) as zf:
        members0 = {n: zf.read(n) for n in zf.namelist()}
    cfg0 = json.loads(members0["config.json"])
    # every key, but of each list (layers, optimizer entries) only the first
    # two items, and of the array specs only two: the rest repeat their form
    paths = [p for p in _config_paths(cfg0) if p and not any(
        isinstance(k, int) and k > 1 for k in p) and not (
        len(p) >= 2 and p[0] == "arrays" and p[1] not in list(cfg0["arrays"])[:2])]
    for path in paths:
        for new in ([], None):
            cfg = json.loads(members0["config.json"])
            node = cfg
            for k in path[:-1]:
                node = node[k]
            node[path[-1]] = new
            members = dict(members0, **{"config.json": json.dumps(cfg).encode()})
            out = io.BytesIO()
            with zipfile.ZipFile(out, "w") as zf:
                for name, data in members.items():
                    zf.writestr(name, data)
            try:
                fr.load(out.getvalue())
            except ValueError as e:
                assert "fr.load" in str(e)
