# Declarations of fastrnn._core that the other Cython modules share.

cdef class _PtrArray:
    """A C array of data pointers of NumPy arrays (NULL for None), freed with
    the object (implemented in _core.pyx; _reg.pyx uses it too)."""
    cdef void **p
    cdef Py_ssize_t n
