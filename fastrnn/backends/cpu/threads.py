"""Threads of the CPU backend's kernels (fr.set_num_threads, fr.set_step_team).

fastrnn's own parallel passes run on OpenMP threads. By default they use as many
as OpenMP would (honouring OMP_NUM_THREADS and threadpoolctl limits on the
OpenMP runtime); set_num_threads(n) fixes the count for fastrnn alone. The
setting lives in C (src/runtime/settings.c), once for the library.

The GEMMs go to the BLAS that SciPy ships (OpenBLAS). While a fastrnn kernel
runs, it holds that BLAS at one thread and splits its GEMMs over its own
OpenMP threads instead (two thread pools spinning on the same cores slow each
other down many times over); the BLAS's own count, which OPENBLAS_NUM_THREADS
and threadpoolctl set, comes back when the call returns. Other threads that
call SciPy's BLAS during a fastrnn call run it single-threaded meanwhile.
When SciPy's BLAS is not an OpenBLAS found here, every GEMM is one BLAS call
with the BLAS's own threads.
"""
import contextlib
import ctypes
import os
import threading

from ..._validate import positive_int
from . import _ext


def _switch(enabled, name):
    """enabled as a bool: True, False, 1 or 0; else TypeError naming the setter."""
    if not isinstance(enabled, (bool, int)) or enabled not in (0, 1):
        raise TypeError(f"{name}: expected True or False, got {enabled!r}")
    return bool(enabled)


def set_num_threads(n):
    """Use n OpenMP threads in fastrnn's kernels.

    The thread count never changes a result's bits. While a kernel runs it
    holds SciPy's OpenBLAS at one thread and shares its GEMMs among its own.

    Parameters
    ----------
    n : int or None
        The number of threads (>= 1); None goes back to OpenMP's default, which
        honours ``OMP_NUM_THREADS``.

    Examples
    --------
    >>> import fastrnn as fr
    >>> fr.set_num_threads(1)
    >>> fr.get_num_threads()
    1
    >>> fr.set_num_threads(None)
    """
    _ext.set_num_threads(0 if n is None else positive_int(n, "n"))


def get_num_threads():
    """Return the number of threads the next kernel call will use.

    That is the `set_num_threads` setting (or OpenMP's default), or 1 while
    adaptive threads has found the cores shared (`set_adaptive_threads`).

    Returns
    -------
    int
        The thread count.

    Examples
    --------
    >>> import fastrnn as fr
    >>> fr.get_num_threads() >= 1
    True
    """
    return _ext.num_threads()


def num_threads_setting():
    """The count set_num_threads fixed, or None for OpenMP's default."""
    return _ext.num_threads_setting() or None


def set_step_team(enabled):
    """Run one-step calls on fastrnn's own helper threads instead of OpenMP's (default: off).

    One-step calls are ``step()`` of a layer or model and any call with T = 1:
    handing a step's slices out through one atomic word costs less than
    starting an OpenMP region (docs/performance.md). Leave it off when other
    libraries in the process run OpenMP work between the steps (torch shares
    fastrnn's OpenMP threads, which spin for milliseconds after each of its
    calls). After fastrnn's own OpenMP work the team stands aside by itself for
    a while. Same bits either way.

    Parameters
    ----------
    enabled : bool
        Turn the team on or off.

    Returns
    -------
    bool
        The previous setting.

    Raises
    ------
    TypeError
        If enabled is not True or False.

    Examples
    --------
    >>> import fastrnn as fr
    >>> previous = fr.set_step_team(True)
    >>> fr.get_step_team()
    True
    >>> _ = fr.set_step_team(previous)
    """
    enabled = _switch(enabled, "set_step_team")
    return _ext.set_step_team(enabled)


def get_step_team():
    """Return whether one-step calls run on the step team (`set_step_team`).

    Returns
    -------
    bool
        The setting.

    Examples
    --------
    >>> import fastrnn as fr
    >>> fr.get_step_team() in (True, False)
    True
    """
    return _ext.step_team_enabled()


_WAIT_POLICIES = ("spin", "passive")


def set_wait_policy(policy):
    """Choose how fastrnn's threads wait for each other inside a call.

    The threads of a time loop meet once a step. With ``"spin"`` (the
    default) a thread that arrives first spins for a few hundred
    microseconds, then yields the CPU at every turn; with ``"passive"`` it
    yields at once, and the step team's helpers sleep instead of spinning.
    ``"passive"`` is for cores that fastrnn does not have to itself (other
    processes, other pools): a thread that spins there takes a core that a
    late thread of its own team may need. A peer library's own spinning
    (ONNX Runtime's, after each call) is that library's setting: see
    docs/performance.md. The initial policy is the environment's:
    ``FASTRNN_WAIT_POLICY`` (``spin`` or ``passive``), else
    ``OMP_WAIT_POLICY`` (``passive`` or not). It never changes a result's
    bits (docs/performance.md, "Threads beside other thread pools").

    Parameters
    ----------
    policy : {"spin", "passive"}
        The new policy.

    Returns
    -------
    str
        The previous policy.

    Raises
    ------
    ValueError
        For another policy.

    Examples
    --------
    >>> import fastrnn as fr
    >>> previous = fr.set_wait_policy("passive")
    >>> fr.get_wait_policy()
    'passive'
    >>> _ = fr.set_wait_policy(previous)
    """
    if policy not in _WAIT_POLICIES:
        raise ValueError(f"policy: expected 'spin' or 'passive', got {policy!r}")
    return _WAIT_POLICIES[_ext.set_wait_passive(policy == "passive")]


def get_wait_policy():
    """Return how fastrnn's threads wait for each other (`set_wait_policy`).

    Returns
    -------
    str
        ``"spin"`` or ``"passive"``.

    Examples
    --------
    >>> import fastrnn as fr
    >>> fr.get_wait_policy() in ("spin", "passive")
    True
    """
    return _WAIT_POLICIES[_ext.wait_passive()]


def set_adaptive_threads(enabled):
    """Let fastrnn drop to one thread while its cores are shared (default: on).

    A stall is a thread of fastrnn's that waited 2 ms or more for a partner
    at a step's meeting, or that lost a quarter of a parallel pass's time to
    the OS: the partner (or the thread) had lost its core to another
    process, another library's pool or the hypervisor, which never happens
    on cores of its own. After one, the calls that start in the next 20 ms
    run on one thread; then the full count is tried again, and each try
    that stalls again at once doubles the period, up to 2 s. Inside a call,
    the threads that wait yield the CPU at once after a stall, and the
    forward time loop's first thread takes over the slices of a partner
    that is late. So a busy neighbour costs a stalled step now and then
    instead of every step (docs/performance.md, "Shared cores"). A
    recurrent call of a small shape (two steps or more, up to 2^20
    multiply-adds a step and 1e9 a call) also runs on one thread or the
    full count, whichever its shape's recent calls took less time with,
    trying the other now and then: two vCPUs that share one core of the
    host lose no time to the OS, yet a small layer's two threads run
    slower than one there. Off, the
    count is `get_num_threads`'s setting whatever the machine does. The
    initial setting is the environment's: ``FASTRNN_ADAPTIVE_THREADS=0``
    (or ``off``, ``false``) turns it off. The thread count never changes a
    result's bits.

    Parameters
    ----------
    enabled : bool
        Turn it on or off.

    Returns
    -------
    bool
        The previous setting.

    Raises
    ------
    TypeError
        If enabled is not True or False.

    Examples
    --------
    >>> import fastrnn as fr
    >>> previous = fr.set_adaptive_threads(False)
    >>> fr.get_adaptive_threads()
    False
    >>> _ = fr.set_adaptive_threads(previous)
    """
    enabled = _switch(enabled, "set_adaptive_threads")
    return _ext.set_adaptive(enabled)


def get_adaptive_threads():
    """Return whether the thread count adapts to shared cores (`set_adaptive_threads`).

    Returns
    -------
    bool
        The setting.

    Examples
    --------
    >>> import fastrnn as fr
    >>> fr.get_adaptive_threads() in (True, False)
    True
    """
    return _ext.adaptive()


def thread_stats():
    """Return what adaptive threads has seen in this process.

    Returns
    -------
    dict
        ``stalls``: waits of 2 ms or more at a step's meeting (counted
        whether adaptation is on or not); ``solo_periods``: times the calls
        went to one thread; ``solo_seconds_left``: how long the current
        one-thread period lasts (0.0 when none); ``taken_slices``: slices
        of a step that a thread took over from a late partner;
        ``measured_one``: recurrent calls of small shapes that ran on one
        thread because their shape's recent calls were faster on one;
        ``threads``: the count the next call uses (before that measure);
        ``full_threads``: the count without adaptation.

    Examples
    --------
    >>> import fastrnn as fr
    >>> sorted(fr.thread_stats())  # doctest: +NORMALIZE_WHITESPACE
    ['full_threads', 'measured_one', 'solo_periods', 'solo_seconds_left', 'stalls',
     'taken_slices', 'threads']
    """
    stalls, periods, left, taken, one = _ext.thread_stats()
    return {"stalls": stalls, "solo_periods": periods, "solo_seconds_left": left,
            "taken_slices": taken, "measured_one": one, "threads": _ext.num_threads(),
            "full_threads": _ext.full_threads()}


def set_batch_invariant(enabled):
    """Make inference give a sequence the same bits whatever batch it is in.

    With it on, the outputs and final states of a sequence (``layer(x)``,
    ``layer.step``, ``model.predict``, Dense and attention layers) are the
    same bits whether it runs alone or inside any batch, with any padding of
    T and on any thread count: every output element is reduced in one fixed
    order (one FMA chain over the inputs, from its bias), so predictions do
    not depend on how rows were split into batches (docs/tuning.md, "batch
    invariance"). Training's backward pass is not affected.

    Parameters
    ----------
    enabled : bool
        Turn it on or off.

    Returns
    -------
    bool
        The previous setting.

    Raises
    ------
    TypeError
        If enabled is not True or False.

    Examples
    --------
    >>> import fastrnn as fr
    >>> previous = fr.set_batch_invariant(True)
    >>> fr.get_batch_invariant()
    True
    >>> _ = fr.set_batch_invariant(previous)
    """
    enabled = _switch(enabled, "set_batch_invariant")
    global _saved
    with _scope_lock:
        if _scopes:   # a batch_invariant() block is open: it stays on until the last ends
            prev, _saved = _saved, enabled
            return prev
        return _ext.set_batch_invariant(enabled)


_scope_lock = threading.Lock()
_scopes = 0        # open batch_invariant() blocks, in every thread
_saved = False     # the setting to restore when the last block ends


@contextlib.contextmanager
def batch_invariant():
    """Run the block with batch-invariant inference (`set_batch_invariant`).

    Blocks in several threads and nested blocks are counted: the setting is on
    from the first block's start to the last block's end, then goes back to
    what it was (a `set_batch_invariant` call meanwhile sets what it goes
    back to). fastrnn's StreamSession and distributed scoring run inside one.

    Yields
    ------
    None
        The block runs with the setting on.

    Examples
    --------
    >>> import fastrnn as fr
    >>> with fr.batch_invariant():
    ...     fr.get_batch_invariant()
    True
    """
    global _scopes, _saved
    with _scope_lock:
        if _scopes == 0:
            _saved = _ext.set_batch_invariant(True)
        _scopes += 1
    try:
        yield
    finally:
        with _scope_lock:
            _scopes -= 1
            if _scopes == 0:
                _ext.set_batch_invariant(_saved)


def get_batch_invariant():
    """Return whether inference is batch-invariant (`set_batch_invariant`).

    Returns
    -------
    bool
        The setting.

    Examples
    --------
    >>> import fastrnn as fr
    >>> fr.get_batch_invariant() in (True, False)
    True
    """
    return _ext.batch_invariant()


def _scipy_openblas():
    """(set, get) addresses of the thread-count functions of the OpenBLAS
    behind scipy.linalg.cython_blas, or None when it cannot be found."""
    try:
        import scipy
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - both are dependencies
        return None
    scipy_root = os.path.dirname(os.path.dirname(os.path.abspath(scipy.__file__)))
    for info in threadpool_info():
        path = info.get("filepath") or ""
        if info.get("internal_api") != "openblas" or "64_" in os.path.basename(path):
            continue  # fastrnn uses the LP64 (32-bit int) BLAS SciPy exports
        if not os.path.abspath(path).startswith(scipy_root):
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_", ""):
            try:
                set_fn = getattr(lib, prefix + "openblas_set_num_threads")
                get_fn = getattr(lib, prefix + "openblas_get_num_threads")
            except AttributeError:
                continue
            return (ctypes.cast(set_fn, ctypes.c_void_p).value,
                    ctypes.cast(get_fn, ctypes.c_void_p).value)
    return None


def _setup_blas_threads():
    if os.environ.get("FASTRNN_NO_BLAS_PIN"):
        return False
    found = _scipy_openblas()
    if found is None:
        return False
    _ext.register_blas_threads(*found)
    return True


BLAS_PINNED = _setup_blas_threads()
