# Array checks, allocations and pointer tables of the boundary (_ext.pyx).
# The kernels take exact dtype, C order and shape; everything else is
# refused here with a Python error before any C code runs.

cdef extern from "fastrnn.h" nogil:
    int FR_OK, FR_EINVAL, FR_ENOBLAS, FR_ETOOBIG


cdef inline bint _fits(object a, object dtype, tuple shape):
    """_check's test in C calls only (the streaming step() pays it per call):
    a native-order array of dtype's type, C-contiguous, of this shape."""
    if not cnp.PyArray_Check(a):
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>a
    cdef cnp.dtype want = <cnp.dtype>dtype
    if cnp.PyArray_TYPE(arr) != want.type_num or not cnp.PyArray_ISNOTSWAPPED(arr):
        return False
    if not cnp.PyArray_IS_C_CONTIGUOUS(arr):
        return False
    cdef int nd = cnp.PyArray_NDIM(arr), i
    if nd != len(shape):
        return False
    cdef cnp.npy_intp *dims = cnp.PyArray_DIMS(arr)
    for i in range(nd):
        if dims[i] != <cnp.npy_intp>shape[i]:
            return False
    return True


cdef inline _check(object a, str name, object dtype, tuple shape):
    """The kernels need exact dtype, C order and shape."""
    if _fits(a, dtype, shape):
        return
    if not isinstance(a, cnp.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {type(a).__name__}")
    if a.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {dtype}, got {a.dtype}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name}: expected a C-contiguous array")
    if a.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {a.shape}")


cdef inline void *_data(object a):
    """The data pointer of an array already checked, NULL for None."""
    if a is None:
        return NULL
    return cnp.PyArray_DATA(<cnp.ndarray>a)


cdef inline cnp.ndarray _empty(tuple shape, object dtype):
    """np.empty(shape, dtype) without the Python call (up to 8 dimensions)."""
    cdef cnp.npy_intp dims[8]
    cdef int nd = len(shape), i
    if nd > 8:
        raise ValueError(f"_empty: {nd} dimensions, at most 8")
    for i in range(nd):
        dims[i] = shape[i]
    return cnp.PyArray_EMPTY(nd, dims, (<cnp.dtype>dtype).type_num, 0)


# One scratch buffer of each dtype is kept between kernel calls, from
# _SCRATCH_MIN up to _SCRATCH_KEEP bytes: a buffer past glibc's largest mmap
# threshold (32 MiB) is otherwise fresh pages on every call, each faulted in
# and zeroed by the OS (benchmarks/RESULTS.md, "Scratch kept between
# calls"). A call takes the kept buffer out of _scratch_kept (dict.pop: one
# owner under the GIL) and gives it back when done, so calls on several
# threads at once never share one; the others allocate their own. A
# training forward's cache is taken the same way (slot 1) and given back by
# the backward that consumes it. Memory held: at most two buffers of each
# dtype; release_scratch() drops them.
_scratch_kept = {}
_SCRATCH_KEEP = 1 << 28
# below this, glibc's heap already hands freed memory back warm, and a kept
# buffer's fixed placement was slower (benchmarks/RESULTS.md, same section)
_SCRATCH_MIN = 1 << 25


cdef cnp.ndarray _take_scratch(int64_t n, object dtype, int slot=0):
    """A C-contiguous 1-D array of at least n elements of dtype for one
    kernel call's scratch (content undefined): the kept one of this slot
    (0: a call's scratch, 1: a training forward's cache, held until its
    backward) where it is large enough, else a new one. Give it back with
    _give_scratch(buf, slot)."""
    if n * (<cnp.dtype>dtype).itemsize < _SCRATCH_MIN:
        return _empty((n,), dtype)
    cdef int key = (<cnp.dtype>dtype).type_num * 2 + slot
    cdef object kept = _scratch_kept.pop(key, None)
    if kept is not None and (<cnp.ndarray>kept).shape[0] >= n:
        return <cnp.ndarray>kept
    return _empty((n,), dtype)


cdef cnp.ndarray _take_aligned_scratch(int64_t n):
    """_take_scratch's n bytes, 64-byte aligned: a view whose base goes back
    to _give_scratch."""
    cdef cnp.ndarray raw = _take_scratch(n + 64, np.dtype(np.uint8))
    cdef int64_t off = (-<int64_t><uintptr_t>cnp.PyArray_DATA(raw)) & 63
    return raw[off:off + n]


cdef _give_scratch(cnp.ndarray buf, int slot=0):
    """Keep buf (from _take_scratch) for the next call, unless it is larger
    than _SCRATCH_KEEP bytes or a larger one is kept already."""
    if buf.nbytes > _SCRATCH_KEEP or buf.nbytes < _SCRATCH_MIN:
        return
    cdef int key = cnp.PyArray_TYPE(buf) * 2 + slot
    cdef object kept = _scratch_kept.get(key)
    if kept is None or (<cnp.ndarray>kept).shape[0] < buf.shape[0]:
        _scratch_kept[key] = buf


# Caches lent to training forwards, by id: only these go back to slot 1
# (a cache array a caller made itself is never taken into the pool).
import weakref
_lent_caches = weakref.WeakValueDictionary()


cdef cnp.ndarray _lend_cache(int64_t n, object dtype):
    """A training forward's cache of n elements (a view of a slot-1 buffer);
    _return_cache gives it back after its backward."""
    cdef cnp.ndarray buf = _take_scratch(n, dtype, 1)
    if buf.nbytes >= _SCRATCH_MIN:
        _lent_caches[id(buf)] = buf
    return buf[:n]


cdef _return_cache(object cache):
    """Keep the buffer under cache for the next training forward, if
    _lend_cache lent it and it is not back already."""
    base = cache.base if isinstance(cache, np.ndarray) else None
    if base is not None and _lent_caches.get(id(base)) is base:
        del _lent_caches[id(base)]
        _give_scratch(<cnp.ndarray>base, 1)


def release_scratch():
    """Drop the scratch buffers kept between calls."""
    _scratch_kept.clear()


cdef inline _raise_status(int st, str kernel):
    """A kernel's FR_* status as a Python error (`kernel` names it)."""
    if st == FR_OK:
        return
    if st == FR_ETOOBIG:
        raise ValueError("sizes too large: T*B, 4*hidden_size or an array's "
                         "element count exceeds what the BLAS integer can index")
    if st == FR_ENOBLAS:
        raise RuntimeError(f"{kernel}: BLAS routines were not registered")
    raise ValueError(f"{kernel} rejected its arguments (status {st})")


cdef class _PtrArray:
    """A C array of data pointers of NumPy arrays, freed with the object."""
    cdef void **p
    cdef Py_ssize_t n

    def __cinit__(self, Py_ssize_t n):
        self.n = n
        self.p = <void **>malloc(max(n, 1) * sizeof(void *))
        if self.p == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.p)


cdef _PtrArray _ptrs(list arrays, str name, object dtype, list shapes, bint writable):
    cdef _PtrArray out = _PtrArray(len(arrays))
    cdef Py_ssize_t i
    for i in range(len(arrays)):
        _check(arrays[i], f"{name}[{i}]", dtype, shapes[i])
        if writable and not arrays[i].flags.writeable:
            raise ValueError(f"{name}[{i}]: array is read-only")
        out.p[i] = _data(arrays[i])
    return out
