# The fused Adam / AdamW step (src/include/fastrnn_optim.h).

cdef extern from "fastrnn_optim.h" nogil:
    ctypedef struct fr_adam_args:
        double w1, beta2, omb2, bc2_sqrt, eps, neg_step, wd, decay
        int wd_mode, amsgrad
    int fr_adam_f32(int num_threads, int64_t n, float *p, const float *g, float *m,
                    float *v, float *vmax, const fr_adam_args *a)
    int fr_adam_f64(int num_threads, int64_t n, double *p, const double *g, double *m,
                    double *v, double *vmax, const fr_adam_args *a)


def adam_step(p, g, m, v, vmax, double w1, double beta2, double omb2, double bc2_sqrt,
              double eps, double neg_step, double wd, double decay, int wd_mode,
              int num_threads):
    """One fused Adam step in place (fastrnn_optim.h). Returns False, having
    done nothing, unless p, g, m, v (and vmax, or None) are C-contiguous
    arrays of one float dtype and one size, p, m, v, vmax writable, no two
    of them overlapping: the caller then takes its NumPy path."""
    arrays = (p, g, m, v) if vmax is None else (p, g, m, v, vmax)
    dt = p.dtype if isinstance(p, np.ndarray) else None
    if dt != np.float32 and dt != np.float64:
        return False
    for a in arrays:
        if not isinstance(a, np.ndarray) or a.dtype != dt or a.size != p.size \
                or not a.flags.c_contiguous:
            return False
    for a in (p, m, v) if vmax is None else (p, m, v, vmax):
        if not a.flags.writeable:
            return False
    # the kernel's arrays are restrict: any two that overlap go to NumPy
    cdef int64_t nbytes = p.nbytes, i, j
    cdef list starts = [<uintptr_t>_data(a) for a in arrays]
    for i in range(len(starts)):
        for j in range(i + 1, len(starts)):
            if starts[i] < starts[j] + nbytes and starts[j] < starts[i] + nbytes:
                return False
    if wd_mode not in (0, 1, 2) or num_threads < 1:
        raise ValueError("adam_step: wd_mode 0, 1 or 2 and num_threads >= 1")
    cdef fr_adam_args args
    args.w1, args.beta2, args.omb2, args.bc2_sqrt = w1, beta2, omb2, bc2_sqrt
    args.eps, args.neg_step, args.wd, args.decay = eps, neg_step, wd, decay
    args.wd_mode, args.amsgrad = wd_mode, vmax is not None
    cdef int64_t n = p.size
    cdef void *pp = _data(p)
    cdef void *pg = _data(g)
    cdef void *pm = _data(m)
    cdef void *pv = _data(v)
    cdef void *px = _data(vmax)
    cdef int st
    if dt == np.float32:
        with nogil:
            st = fr_adam_f32(num_threads, n, <float *>pp, <const float *>pg, <float *>pm,
                             <float *>pv, <float *>px, &args)
    else:
        with nogil:
            st = fr_adam_f64(num_threads, n, <double *>pp, <const double *>pg, <double *>pm,
                             <double *>pv, <double *>px, &args)
    _raise_status(st, "fr_adam")
    return True
