"""What every format does with files: atomic writes, checked sources, size caps.

One place for the rules the loaders and savers share:
- `atomic_write(path, who)`: a uniquely named temporary file created
  exclusively (O_EXCL, never through a planted symlink) in the target's
  folder, renamed over `path` only once complete; on any failure the
  temporary file is removed and an existing file at `path` is untouched.
- `open_source(source, who)`: a path must name a regular file (a directory, a
  FIFO or a device gets a ValueError that says so, a missing path a
  FileNotFoundError); bytes are read from memory.
- `max_bytes(value)` / `check_bytes(...)`: the cap on what one load may
  allocate (weights, decompressed members, folded constants) before it
  refuses. LOAD_LIMIT bytes by default; every loader takes max_bytes= to
  raise it on purpose, and `set_load_limit` changes the default.
"""
import contextlib
import io
import os
import stat
import tempfile

LOAD_LIMIT_DEFAULT = 1 << 30   # 1 GiB: larger than any model fastrnn ships, far below RAM
_limit = LOAD_LIMIT_DEFAULT


def set_load_limit(nbytes):
    """Set the default cap on the bytes one load may allocate.

    ``fr.load``, ``fr.from_onnx`` and ``fr.from_keras`` refuse a file that needs
    more, before allocating it, unless called with ``max_bytes=``.

    Parameters
    ----------
    nbytes : int
        The cap in bytes (>= 1).

    Returns
    -------
    int
        The previous cap.

    Raises
    ------
    ValueError
        If nbytes is not a positive int.
    """
    global _limit
    prev = _limit
    _limit = _check_limit(nbytes, "set_load_limit")
    return prev


def get_load_limit():
    """Return the default cap on the bytes one load may allocate.

    Returns
    -------
    int
        The cap in bytes (1 GiB unless `set_load_limit` changed it).
    """
    return _limit


def _check_limit(value, who):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{who}: the byte cap must be a positive int, got {value!r}")
    return value


def max_bytes(value, who="max_bytes"):
    """The cap a load runs under: `value` when given, else the default."""
    return _limit if value is None else _check_limit(value, who)


def check_bytes(nbytes, cap, what, who):
    """Refuse `what` (a description naming the member, node or dataset) when
    it needs more than `cap` bytes; say how to raise the cap."""
    if nbytes > cap:
        raise ValueError(f"{who}: {what} needs {nbytes} bytes, more than the load cap of "
                         f"{cap} bytes (pass max_bytes= or fr.formats.set_load_limit to "
                         "allow more)")


def _kind(mode):
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def regular_file(path, who):
    """`path` (str) checked to name an existing regular file (symlinks are
    followed to their target, which must be one)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{who}: no such file: {path!r}") from None
    except OSError as e:
        raise ValueError(f"{who}: cannot read {path!r} ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        link = " (a symlink to it)" if os.path.islink(path) else ""
        raise ValueError(f"{who}: {path!r} is {_kind(st.st_mode)}{link}, not a file")
    return path


def open_regular(path, who):
    """An open binary file of regular file `path`, checked on the opened file
    itself (fstat) and opened without blocking: a FIFO or device swapped in
    after an earlier check can neither hang the read nor be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FileNotFoundError(f"{who}: no such file: {path!r}") from None
    except OSError as e:
        raise ValueError(f"{who}: cannot read {path!r} ({e.strerror or e})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise ValueError(f"{who}: {path!r} is {_kind(st.st_mode)}, not a file")
    return os.fdopen(fd, "rb")


def open_source(source, who):
    """(readable, shown name, folder or None) of a path or bytes-like source."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source)), "<bytes>", None
    path = regular_file(os.fspath(source), who)
    return path, path, os.path.dirname(os.path.abspath(path))


@contextlib.contextmanager
def atomic_write(path, who):
    """Yield a binary file; on success it replaces `path` atomically, on any
    failure nothing is left behind and `path` keeps its old content."""
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if os.path.isdir(path):
        raise ValueError(f"{who}: {path!r} is a directory; give a file path")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{who}: folder {folder!r} does not exist")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)   # what open() would have given, not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
