"""Thread count of fastrnn's kernels.

fastrnn's own parallel passes run on OpenMP threads. By default they use as many
as OpenMP would (honouring OMP_NUM_THREADS and threadpoolctl limits on the
OpenMP runtime); set_num_threads(n) fixes the count for fastrnn alone.

The GEMMs go to the BLAS that SciPy ships (OpenBLAS); its thread count follows
OPENBLAS_NUM_THREADS / threadpoolctl (`threadpool_limits(n, user_api="blas")`)
and is deliberately left alone here: OpenBLAS's results can differ in the last
bit between thread counts, and fastrnn's own thread count must never change
the bits of a result.
"""
from . import _core
from ._validate import positive_int

_num_threads = None


def set_num_threads(n):
    """Use n OpenMP threads in fastrnn's kernels (None: the OpenMP default)."""
    global _num_threads
    _num_threads = None if n is None else positive_int(n, "n")


def get_num_threads():
    """Threads the next kernel call will use."""
    if _num_threads is not None:
        return _num_threads
    return max(1, _core.max_threads())
