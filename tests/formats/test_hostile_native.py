"""Hostile native model files and failed saves (issue 27): fr.load refuses
what would allocate past its cap before reading it, fr.save writes through
an exclusive temporary file and leaves nothing behind when it fails."""
import errno
import io
import json
import os
import struct
import zipfile
import zlib

import numpy as np
import pytest

import fastrnn as fr


def _model():
    return fr.Sequential([fr.Embedding(10, 4), fr.GRU(4, 6, batch_first=True),
                          fr.MeanPooling(), fr.Dense(6, 2)], seed=0)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "m.fastrnn"
    m = _model()
    m.compile(loss="cross_entropy", optimizer="adam", clip_norm=1.0, metrics=["accuracy"])
    m.save(path)
    return path.read_bytes()


def _members(blob):
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _rezip(members):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for n, b in members.items():
            zf.writestr(n, b)
    return out.getvalue()


def _edit_config(blob, edit):
    members = _members(blob)
    c = json.loads(members["config.json"])
    edit(c)
    members["config.json"] = json.dumps(c).encode()
    return _rezip(members)


def _raw_zip(members):
    """A ZIP archive written by hand: name -> (method, stored bytes, crc,
    uncompressed size). The sizes are whatever the caller claims."""
    out = io.BytesIO()
    central = []
    for name, (method, data, crc, size) in members.items():
        n = name.encode()
        off = out.tell()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc,
                              len(data), size, len(n), 0) + n + data)
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0,
                                   0x21, crc, len(data), size, len(n), 0, 0, 0, 0, 0, off) + n)
    start = out.tell()
    for c in central:
        out.write(c)
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central),
                          out.tell() - start, start, 0))
    return out.getvalue()


def _deflated_zeros(header, nbytes):
    """Raw deflate of `header` then `nbytes` zero bytes, built from one
    compressed MiB repeated (full flushes make the blocks independent)."""
    chunk = 1 << 20
    assert nbytes % chunk == 0
    head = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = head.compress(header) + head.flush(zlib.Z_FULL_FLUSH)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(b"\0" * chunk) + c.flush(zlib.Z_FULL_FLUSH)
    return data + block * (nbytes // chunk) + c.flush()


def _bomb(good, nbytes):
    """The good file whose Embedding weight is declared (and deflated) as
    nbytes of float32 zeros: a few MiB on disk."""
    members = _members(good)
    cfg = json.loads(members["config.json"])
    count = nbytes // 4
    cfg["arrays"]["model/0.weight"] = {"dtype": "float32", "shape": [count]}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f4", "fortran_order": False, "shape": (count,)})
    header = buf.getvalue()
    raw = {}
    for n, b in members.items():
        if n == "config.json":
            b = json.dumps(cfg).encode()
        if n == "arrays/model/0.weight.npy":
            raw[n] = (8, _deflated_zeros(header, nbytes), 0, len(header) + nbytes)
        else:
            raw[n] = (0, b, zlib.crc32(b), len(b))
    return _raw_zip(raw)


def _run_capped(tmp_path, code, limit=2 << 30):
    """conftest's run_capped with this file's cap."""
    from conftest import run_capped
    return run_capped(tmp_path, code, limit)


# ---- item 1: the zip bomb -----------------------------------------------------------
def test_zip_bomb_refused_before_reading(good, tmp_path):
    """3 MiB on disk, 3 GiB once inflated: refused by the cap on the declared
    sizes before any member is read (the old loader read it all, then
    MemoryError)."""
    bomb = _bomb(good, 3 << 30)
    assert len(bomb) < 4 << 20
    path = tmp_path / "bomb.fastrnn"
    path.write_bytes(bomb)
    out = _run_capped(tmp_path, f"""
        import fastrnn as fr
        try:
            fr.load({str(path)!r})
            print("LOADED")
        except Exception as e:
            print(type(e).__name__, e)
    """)
    assert out.startswith("ValueError"), out
    assert "load cap" in out and "bytes" in out


def test_zip_bomb_refused_in_process_without_allocating(good):
    import tracemalloc
    bomb = _bomb(good, 3 << 30)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="load cap"):
            fr.load(bomb)
        with pytest.raises(ValueError, match="load cap"):
            fr.load(bomb, max_bytes=1 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20


def test_compression_ratio_refused_even_under_a_raised_cap(good):
    """A member inflating 1000 times (zeros) past the ratio floor is a bomb,
    whatever cap the caller allowed; fr.save never compresses."""
    bomb = _bomb(good, 32 << 20)
    with pytest.raises(ValueError, match="compressed"):
        fr.load(bomb, max_bytes=1 << 30)


def test_declared_total_checked_against_the_cap(tmp_path):
    """Each member alone fits, all of them together do not: the total the
    config declares is what counts, checked before any array is read."""
    path = tmp_path / "m.fastrnn"
    fr.Sequential([fr.Dense(64, 64), fr.Dense(64, 64), fr.Dense(64, 64)]).save(path)
    with zipfile.ZipFile(path) as zf:
        assert max(i.file_size for i in zf.infolist()) < 20_000
    assert isinstance(fr.load(path, max_bytes=60_000), fr.Sequential)
    says = (r"fr.load\('.*m.fastrnn'\): the file \(config.json and the 6 arrays it "
            r"declares\) needs \d+ bytes, more than the load cap of 20000 bytes")
    with pytest.raises(ValueError, match=says):
        fr.load(path, max_bytes=20_000)


def test_member_bigger_than_the_cap_refused_by_its_size(good):
    """The central directory's uncompressed size is checked before the
    member is opened, even when the config declares no such array."""
    members = _members(good)
    raw = {n: (0, b, zlib.crc32(b), len(b)) for n, b in members.items()}
    name = "arrays/model/0.weight.npy"
    method, data, crc, _ = raw[name]
    raw[name] = (method, data, crc, 3 << 30)
    with pytest.raises(ValueError, match=f"{name} needs {3 << 30} bytes.*load cap"):
        fr.load(_raw_zip(raw))


def test_read_stops_at_the_declared_size(good):
    """A member longer than its .npy header says is refused without reading
    what is past the declared data."""
    members = _members(good)
    name = "arrays/model/3.weight.npy"
    members[name] += b"\0" * 3000  # within the header slack of the size check
    with pytest.raises(ValueError, match="larger than|more than"):
        fr.load(_rezip(members))


def test_max_bytes_argument_checked(good):
    for bad in (0, -1, 1.5, "1", True):
        with pytest.raises(ValueError, match="max_bytes"):
            fr.load(good, max_bytes=bad)


def test_load_limit_default_applies(good):
    prev = fr.formats.set_load_limit(4096)
    try:
        with pytest.raises(ValueError, match="load cap of 4096 bytes"):
            fr.load(good)
    finally:
        fr.formats.set_load_limit(prev)
    assert isinstance(fr.load(good), fr.Sequential)


# ---- items 2-4: saves ----------------------------------------------------------------
def test_save_onto_a_directory_is_a_clear_error(tmp_path):
    target = tmp_path / "m.fastrnn"
    target.mkdir()
    with pytest.raises(ValueError, match="directory"):
        _model().save(target)
    assert sorted(os.listdir(tmp_path)) == ["m.fastrnn"]
    assert os.listdir(target) == []


def test_save_into_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="folder"):
        fr.save(_model(), tmp_path / "nope" / "m.fastrnn")
    assert os.listdir(tmp_path) == []


def test_save_failing_mid_write_leaves_old_file_and_nothing_else(tmp_path, monkeypatch):
    path = tmp_path / "m.fastrnn"
    _model().save(path)
    before = path.read_bytes()
    calls = []
    real = zipfile.ZipFile.writestr

    def full_disk(self, *a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *a, **k)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", full_disk)
    m = _model()
    m.layers[0].params["weight"][...] = 7
    with pytest.raises(OSError) as e:
        m.save(path)
    assert e.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path) == ["m.fastrnn"]
    assert path.read_bytes() == before


def test_save_past_the_file_size_limit_leaves_old_file(tmp_path):
    """A real short write: RLIMIT_FSIZE makes the kernel refuse the bytes
    past 64 KiB (EFBIG, the disk-full path of write())."""
    path = tmp_path / "m.fastrnn"
    _model().save(path)
    before = path.read_bytes()
    out = _run_capped(tmp_path, f"""
        import errno, resource, signal
        import fastrnn as fr
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        m = fr.Sequential([fr.Embedding(4000, 16), fr.GRU(16, 6, batch_first=True)])
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, 1 << 16))
        try:
            m.save({str(path)!r})
            print("SAVED")
        except OSError as e:
            print("OSError", errno.errorcode.get(e.errno))
    """)
    assert out.startswith("OSError"), out
    assert sorted(os.listdir(tmp_path)) == ["capped.py", "m.fastrnn"]
    assert path.read_bytes() == before


def test_save_never_writes_through_a_planted_symlink(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    os.symlink(victim, tmp_path / "m.fastrnn.tmp")
    path = tmp_path / "m.fastrnn"
    _model().save(path)
    assert victim.read_bytes() == b"precious"
    assert sorted(os.listdir(tmp_path)) == ["m.fastrnn", "m.fastrnn.tmp", "victim"]
    assert isinstance(fr.load(path), fr.Sequential)


def test_saved_file_gets_the_usual_permissions(tmp_path):
    path = tmp_path / "m.fastrnn"
    _model().save(path)
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


# ---- item 6: load on things that are not files ---------------------------------------
def test_load_on_a_directory_fifo_or_device_says_what_it_is(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        fr.load(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="is a FIFO"):
        fr.load(fifo)
    link = tmp_path / "zero"
    os.symlink("/dev/zero", link)
    with pytest.raises(ValueError, match="is a device"):
        fr.load(link)
    with pytest.raises(FileNotFoundError, match="no such file"):
        fr.load(tmp_path / "missing.fastrnn")


def test_load_takes_memoryview_and_pathlike(good, tmp_path):
    assert isinstance(fr.load(memoryview(good)), fr.Sequential)
    p = tmp_path / "m.fastrnn"
    p.write_bytes(good)
    assert isinstance(fr.load(p), fr.Sequential)


# ---- item 6: compile settings checked field by field ---------------------------------
@pytest.mark.parametrize("edit, field", [
    (lambda c: c.__setitem__("compile", "adam"), "compile"),
    (lambda c: c["compile"].__setitem__("loss", "x"), "compile.loss"),
    (lambda c: c["compile"].pop("loss"), "compile.loss"),
    (lambda c: c["compile"]["loss"].__setitem__("name", 3), "compile.loss.name"),
    (lambda c: c["compile"]["loss"].__setitem__("config", []), "compile.loss.config"),
    (lambda c: c["compile"]["loss"]["config"].__setitem__("1x", 2), "compile.loss.config"),
    (lambda c: c["compile"].__setitem__("metrics", 5), "compile.metrics"),
    (lambda c: c["compile"].__setitem__("metrics", [3]), "compile.metrics"),
    (lambda c: c["compile"].__setitem__("clip_norm", "big"), "compile.clip_norm"),
    (lambda c: c["compile"].__setitem__("optimizer", 3), "compile.optimizer"),
    (lambda c: c["compile"]["optimizer"].__setitem__("class", ["Adam"]),
     "compile.optimizer.class"),
    (lambda c: c["compile"]["optimizer"].pop("config"), "compile.optimizer.config"),
    (lambda c: c["compile"]["optimizer"].__setitem__("config", "lr=1"),
     "compile.optimizer.config"),
    (lambda c: c["compile"]["optimizer"].__setitem__("state", 7), "compile.optimizer.state"),
    (lambda c: c["compile"].__setitem__("extra", 1), "compile"),
])
def test_bad_compile_settings_name_the_field(good, edit, field):
    with pytest.raises(ValueError, match=r"fr.load\('<bytes>'\): " + field.replace(".", r"\.")) \
            as e:
        fr.load(_edit_config(good, edit))
    assert "string indices" not in str(e.value) and "has no len" not in str(e.value)


def test_good_compile_settings_still_load(good):
    m = fr.load(good)
    assert m.loss.name == "cross_entropy" and m.clip_norm == 1.0 and m.metrics == ["accuracy"]


@pytest.mark.parametrize("loader", ["native", "keras"])
def test_fifo_swapped_in_after_the_check_is_refused_not_read(tmp_path, monkeypatch, loader):
    """A path checked as a regular file and then replaced by a FIFO (the race
    between check and open) is refused on the opened descriptor; a blocking
    open would hang here, so an alarm turns a hang into a failure."""
    import signal

    from fastrnn.formats import keras as fk, native as fn

    fifo = tmp_path / "swapped"
    os.mkfifo(fifo)
    if loader == "native":
        monkeypatch.setattr(fn, "open_source", lambda p, who: (str(fifo), str(fifo), None))
    else:
        monkeypatch.setattr(fk._files, "open_source",
                            lambda p, who: (str(fifo), str(fifo), None))
    call = (lambda: fr.load(str(fifo))) if loader == "native" else \
        (lambda: fr.from_keras(str(fifo)))

    def hang(signum, frame):
        raise TimeoutError("the load blocked on a FIFO")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(5)
    try:
        with pytest.raises(ValueError, match="FIFO"):
            call()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
