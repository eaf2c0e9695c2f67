# One decoder step of Luong attention (src/include/fastrnn_attend.h).

cdef extern from "fastrnn_attend.h" nogil:
    int fr_attend_f32(int num_threads, int64_t B, int64_t S, int64_t K, int64_t D,
                      const float *keys, const float *q, const float *enc,
                      const float *mask, float *a, float *ctx)
    int fr_attend_f64(int num_threads, int64_t B, int64_t S, int64_t K, int64_t D,
                      const double *keys, const double *q, const double *enc,
                      const double *mask, double *a, double *ctx)
    int fr_attend_backward_f32(int num_threads, int64_t B, int64_t S, int64_t K, int64_t D,
                               const float *keys, const float *enc, const float *a,
                               const float *dctx, const float *mask, float *ds,
                               float *dq)
    int fr_attend_backward_f64(int num_threads, int64_t B, int64_t S, int64_t K, int64_t D,
                               const double *keys, const double *enc, const double *a,
                               const double *dctx, const double *mask, double *ds,
                               double *dq)


cdef tuple _attend_sizes(str name, keys, enc):
    if not isinstance(keys, np.ndarray) or not isinstance(enc, np.ndarray) \
            or keys.ndim != 3 or enc.ndim != 3:
        raise ValueError(f"{name}: keys (B, S, K) and enc (B, S, D) must be 3-D arrays")
    if keys.shape[:2] != enc.shape[:2] or min(keys.shape) < 1 or enc.shape[2] < 1:
        raise ValueError(f"{name}: keys {keys.shape} and enc {enc.shape} do not agree")
    return keys.shape[0], keys.shape[1], keys.shape[2], enc.shape[2]


def attend(keys, q, enc, mask, a, ctx, int num_threads):
    """Luong attention of one step (fastrnn_attend.h): the weights a (B, S) and
    the context ctx (B, D) of the query q (B, K) over keys (B, S, K) and enc
    (B, S, D); mask (B, S) additive, 0 or -inf, or None. Returns False, having
    done nothing, unless the arrays are C-contiguous of one float dtype with
    a and ctx writable and apart from the rest (the caller's NumPy path
    runs)."""
    B, S, K, D = _attend_sizes("attend", keys, enc)
    arrays = [keys, q, enc, a, ctx, mask]
    dt = _step_arrays("attend", 0, arrays,
                      [(B, S, K), (B, K), (B, S, D), (B, S), (B, D), (B, S)], [3, 4])
    if dt is None:
        return False
    cdef void *p[6]
    cdef int i
    for i in range(6):
        p[i] = _data(arrays[i])
    cdef int st
    cdef int64_t b = B, s = S, k = K, d = D
    if dt == np.float32:
        with nogil:
            st = fr_attend_f32(num_threads, b, s, k, d, <const float *>p[0],
                               <const float *>p[1], <const float *>p[2],
                               <const float *>p[5], <float *>p[3], <float *>p[4])
    else:
        with nogil:
            st = fr_attend_f64(num_threads, b, s, k, d, <const double *>p[0],
                               <const double *>p[1], <const double *>p[2],
                               <const double *>p[5], <double *>p[3], <double *>p[4])
    _raise_status(st, "fr_attend")
    return True


def attend_backward(keys, enc, a, dctx, mask, ds, dq, int num_threads):
    """The step's backward (fastrnn_attend.h): from dctx (B, D), the scores'
    gradient ds (B, S) and the query's dq (B, K), both overwritten. Returns
    False, having done nothing, for arrays the kernel does not take."""
    B, S, K, D = _attend_sizes("attend_backward", keys, enc)
    arrays = [keys, enc, a, dctx, ds, dq, mask]
    dt = _step_arrays("attend_backward", 0, arrays,
                      [(B, S, K), (B, S, D), (B, S), (B, D), (B, S), (B, K), (B, S)], [4, 5])
    if dt is None:
        return False
    cdef void *p[7]
    cdef int i
    for i in range(7):
        p[i] = _data(arrays[i])
    cdef int st
    cdef int64_t b = B, s = S, k = K, d = D
    if dt == np.float32:
        with nogil:
            st = fr_attend_backward_f32(num_threads, b, s, k, d, <const float *>p[0],
                                        <const float *>p[1], <const float *>p[2],
                                        <const float *>p[3], <const float *>p[6],
                                        <float *>p[4], <float *>p[5])
    else:
        with nogil:
            st = fr_attend_backward_f64(num_threads, b, s, k, d, <const double *>p[0],
                                        <const double *>p[1], <const double *>p[2],
                                        <const double *>p[3], <const double *>p[6],
                                        <double *>p[4], <double *>p[5])
    _raise_status(st, "fr_attend_backward")
    return True
