# Attention pooling after its product (src/include/fastrnn_pool.h).

cdef extern from "fastrnn_pool.h" nogil:
    int fr_attn_pool_f32(int num_threads, int64_t B, int64_t T, int64_t A, int64_t F,
                         float *z, const float *v, const float *x, const int64_t *lengths,
                         float *a, float *y)
    int fr_attn_pool_f64(int num_threads, int64_t B, int64_t T, int64_t A, int64_t F,
                         double *z, const double *v, const double *x,
                         const int64_t *lengths, double *a, double *y)


def attention_pool(z, v, x, lengths, a, y, int num_threads):
    """tanh over z (B*T, A) in place, then the weights a (B, T) and the pooled
    y (B, F) of x (B, T, F) (fastrnn_pool.h). Returns False, having done
    nothing, unless z, v, x, a, y are C-contiguous arrays of one float dtype,
    z, a, y writable and apart from each other and from v and x: the caller
    then takes its NumPy path. lengths: int64 (B,) in 1..T, or None."""
    arrays = (z, v, x, a, y)
    dt = z.dtype if isinstance(z, np.ndarray) else None
    if dt != np.float32 and dt != np.float64:
        return False
    for arr in arrays:
        if not isinstance(arr, np.ndarray) or arr.dtype != dt or not arr.flags.c_contiguous:
            return False
    for arr in (z, a, y):
        if not arr.flags.writeable:
            return False
    if x.ndim != 3 or z.ndim != 2 or v.ndim != 1 or a.ndim != 2 or y.ndim != 2:
        raise ValueError("attention_pool: z (B*T, A), v (A,), x (B, T, F), a (B, T), "
                         "y (B, F)")
    cdef int64_t B = x.shape[0], T = x.shape[1], F = x.shape[2], A = v.shape[0]
    if z.shape[0] != B * T or z.shape[1] != A or a.shape[0] != B or a.shape[1] != T \
            or y.shape[0] != B or y.shape[1] != F:
        raise ValueError(f"attention_pool: shapes z {z.shape}, v {v.shape}, x {x.shape}, "
                         f"a {a.shape}, y {y.shape} do not agree")
    # the written arrays are not restrict in C, but a shared byte would mix
    # results: any overlap goes to NumPy
    cdef list spans = [(<uintptr_t>_data(arr), arr.nbytes) for arr in arrays]
    cdef int i, j
    for i in (0, 3, 4):
        for j in range(5):
            if i != j and spans[i][0] < spans[j][0] + spans[j][1] \
                    and spans[j][0] < spans[i][0] + spans[i][1]:
                return False
    cdef const int64_t *pl = NULL
    if lengths is not None:
        _check(lengths, "lengths", np.dtype(np.int64), (B,))
        pl = <const int64_t *>_data(lengths)
    cdef void *pz = _data(z)
    cdef void *pv = _data(v)
    cdef void *px = _data(x)
    cdef void *pa = _data(a)
    cdef void *py = _data(y)
    cdef int st
    if dt == np.float32:
        with nogil:
            st = fr_attn_pool_f32(num_threads, B, T, A, F, <float *>pz, <const float *>pv,
                                  <const float *>px, pl, <float *>pa, <float *>py)
    else:
        with nogil:
            st = fr_attn_pool_f64(num_threads, B, T, A, F, <double *>pz, <const double *>pv,
                                  <const double *>px, pl, <double *>pa, <double *>py)
    _raise_status(st, "fr_attn_pool")
    return True
