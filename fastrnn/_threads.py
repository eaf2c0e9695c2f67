"""Thread count of fastrnn's kernels.

By default the kernels use as many OpenMP threads as OpenMP would (honouring
OMP_NUM_THREADS and threadpoolctl limits). set_num_threads(n) fixes the count
for fastrnn's OpenMP passes and, through threadpoolctl, for the BLAS that
SciPy provides (the one fastrnn's GEMMs call).
"""
from . import _core
from ._validate import positive_int

_num_threads = None


def set_num_threads(n):
    """Use n threads in fastrnn's kernels (None: back to the OpenMP default)."""
    global _num_threads
    if n is None:
        _num_threads = None
        return
    n = positive_int(n, "n")
    _num_threads = n
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return
    threadpool_limits(limits=n, user_api="blas")


def get_num_threads():
    """Threads the next kernel call will use."""
    if _num_threads is not None:
        return _num_threads
    return max(1, _core.max_threads())
