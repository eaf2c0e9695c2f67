# Regularized cells (src/include/fastrnn_reg.h): one layer and one direction
# of an LSTM or GRU with zoneout and recurrent dropout, or of a
# layer-normalized LSTM. Python names carry a reg_ prefix (REG_CELLS,
# reg_forward, ...) beside the plain recurrent layers' (_rnn.pxi).

cdef extern from "fastrnn_reg.h" nogil:
    int FRR_LSTM, FRR_GRU, FRR_LNLSTM
    ctypedef struct frr_desc:
        int cell
        int64_t T, B, I_, H
        int reverse
        int num_threads
        double zoneout
        const int64_t *lengths
        int batch_invariant
    int frr_check_desc(const frr_desc *d)
    int frr_num_gates(int cell)
    int frr_num_params(int cell)
    int64_t frr_cache_len(const frr_desc *d)
    int64_t frr_forward_work_len(const frr_desc *d, int training)
    int64_t frr_backward_work_len(const frr_desc *d)
    int frr_forward_f32(const frr_desc *d, const float *x, const float *const *w,
                        const float *h0, const float *c0,
                        const float *zmask, const float *rmask,
                        float *y, int64_t ldy, float *hn, float *cn,
                        float *cache, float *work)
    int frr_forward_f64(const frr_desc *d, const double *x, const double *const *w,
                        const double *h0, const double *c0,
                        const double *zmask, const double *rmask,
                        double *y, int64_t ldy, double *hn, double *cn,
                        double *cache, double *work)
    int frr_backward_f32(const frr_desc *d, const float *x, const float *const *w,
                         const float *zmask, const float *rmask, const float *cache,
                         const float *dy, int64_t ldy, const float *dhn, const float *dcn,
                         float *dx, int dx_accumulate, float *dh0, float *dc0,
                         float *const *dw, float *work)
    int frr_backward_f64(const frr_desc *d, const double *x, const double *const *w,
                         const double *zmask, const double *rmask, const double *cache,
                         const double *dy, int64_t ldy, const double *dhn, const double *dcn,
                         double *dx, int dx_accumulate, double *dh0, double *dc0,
                         double *const *dw, double *work)

REG_CELLS = {"LSTM": FRR_LSTM, "GRU": FRR_GRU, "LNLSTM": FRR_LNLSTM}


def reg_num_params(int cell):
    """Length of the parameter list of a cell kind (4, or 7 for LNLSTM)."""
    return frr_num_params(cell)


def reg_param_shapes(int cell, int I, int H):
    """Shapes of the kernel's parameter list, in its order (see rnn_reg.h)."""
    G = frr_num_gates(cell)
    if G == 0:
        raise ValueError(f"unknown cell kind {cell}")
    out = [(G * H, I), (G * H, H), (G * H,)]
    if cell == FRR_LNLSTM:
        out += [(4 * H,), (4 * H,), (H,), (H,)]
    else:
        out += [(G * H,)]
    return out


cdef _PtrArray _reg_params(int cell, list w, str name, object dtype, int I, int H,
                       bint writable):
    """Pointer table of a parameter list; bias entries (index 2, and 3 except
    for LNLSTM) may be None, together for LSTM/GRU."""
    shapes = reg_param_shapes(cell, I, H)
    if len(w) != len(shapes):
        raise ValueError(f"{name}: expected {len(shapes)} arrays, got {len(w)}")
    optional = [2] if cell == FRR_LNLSTM else [2, 3]
    if cell != FRR_LNLSTM and (w[2] is None) != (w[3] is None):
        raise ValueError(f"{name}: give both biases or neither")
    cdef _PtrArray out = _PtrArray(len(w))
    cdef Py_ssize_t i
    for i in range(len(w)):
        if w[i] is None:
            if i not in optional:
                raise ValueError(f"{name}[{i}]: required, got None")
            out.p[i] = NULL
            continue
        _check(w[i], f"{name}[{i}]", dtype, shapes[i])
        if writable and not w[i].flags.writeable:
            raise ValueError(f"{name}[{i}]: array is read-only")
        out.p[i] = _data(w[i])
    return out


cdef frr_desc _reg_desc(int cell, object x, int H, object lengths, bint reverse,
                    double zoneout, int num_threads) except *:
    cdef frr_desc d
    if frr_num_gates(cell) == 0:
        raise ValueError(f"unknown cell kind {cell}")
    if not isinstance(x, np.ndarray) or x.ndim != 3:
        raise ValueError("x: expected a 3-D (T, B, input_size) array")
    if not 0.0 <= zoneout <= 1.0:
        raise ValueError(f"zoneout: expected a probability in [0, 1], got {zoneout}")
    d.cell = cell
    d.T = x.shape[0]
    d.B = x.shape[1]
    d.I_ = x.shape[2]
    d.H = H
    d.reverse = 1 if reverse else 0
    d.num_threads = max(1, num_threads)
    d.zoneout = zoneout
    d.lengths = NULL
    d.batch_invariant = 0   # the forward sets it (fr_batch_invariant)
    if lengths is not None:
        _check(lengths, "lengths", np.dtype(np.int64), (d.B,))
        if d.B and (lengths.min() < 1 or lengths.max() > d.T):
            raise ValueError(f"lengths: expected values in 1..{d.T}")
        d.lengths = <const int64_t *>_data(lengths)
    _raise_status(frr_check_desc(&d), "fastrnn regularized kernel")
    return d


cdef _reg_check_y(object y, str name, object dt, int64_t T, int64_t B, int64_t H, int col):
    """y (T,B,ldy) C-contiguous, columns [col, col+H) inside a row."""
    if not isinstance(y, np.ndarray) or y.ndim != 3:
        raise ValueError(f"{name}: expected a 3-D (T, B, width) array")
    _check(y, name, dt, (T, B, y.shape[2]))
    if col < 0 or col + H > y.shape[2]:
        raise ValueError(f"{name}: columns [{col}, {col + H}) do not fit its width "
                         f"{y.shape[2]}")


def reg_forward(int cell, x, list w, h0, c0, zmask, rmask, y, int col, lengths,
            bint reverse, double zoneout, bint training, int num_threads):
    """One layer and direction. Writes its output into columns [col, col+H)
    of y (T,B,width), which the caller allocates (both directions of a
    bidirectional layer share it). Returns (h_n, c_n or None, cache or None).

    x (T,B,I) C-contiguous of the weights' dtype; w the kernel's parameter
    list; h0/c0 (B,H) or None; zmask (T,B,H), rmask (B,H) or None (training
    only); lengths int64 (B,) or None; zoneout: inference mixing probability.
    """
    if not w or not isinstance(w[0], np.ndarray) or w[0].ndim != 2:
        raise TypeError("w: expected a list of numpy arrays, W_ih first")
    dt = w[0].dtype
    if dt != np.float32 and dt != np.float64:
        raise TypeError(f"w: expected float32 or float64, got {dt}")
    cdef int H = w[1].shape[1] if isinstance(w[1], np.ndarray) and w[1].ndim == 2 else 0
    if H < 1:
        raise ValueError("w[1]: expected W_hh of shape (G*H, H)")
    cdef frr_desc d = _reg_desc(cell, x, H, lengths, reverse, zoneout, num_threads)
    d.batch_invariant = fr_batch_invariant()
    _check(x, "x", dt, (d.T, d.B, d.I_))
    cdef _PtrArray pw = _reg_params(cell, w, "w", dt, <int>d.I_, H, False)
    cdef int64_t T = d.T, B = d.B
    st_shape = (B, H)
    has_c = cell != FRR_GRU
    if h0 is not None:
        _check(h0, "h0", dt, st_shape)
    if c0 is not None:
        if not has_c:
            raise ValueError("c0: a GRU has no cell state")
        _check(c0, "c0", dt, st_shape)
    if not training and (zmask is not None or rmask is not None):
        raise ValueError("zmask, rmask: masks apply in training forward only")
    if zmask is not None:
        _check(zmask, "zmask", dt, (T, B, H))
    if rmask is not None:
        _check(rmask, "rmask", dt, st_shape)
    _reg_check_y(y, "y", dt, T, B, H, col)
    if not y.flags.writeable:
        raise ValueError("y: array is read-only")

    hn = np.empty(st_shape, dtype=dt)
    cn = np.empty(st_shape, dtype=dt) if has_c else None
    cache = np.empty(frr_cache_len(&d), dtype=dt) if training else None
    work = np.empty(frr_forward_work_len(&d, training), dtype=dt)

    cdef void *px = _data(x)
    cdef void *ph0 = _data(h0)
    cdef void *pc0 = _data(c0)
    cdef void *pz = _data(zmask)
    cdef void *pr = _data(rmask)
    cdef char *py = <char *>_data(y)
    cdef int64_t ldy = y.shape[2]
    cdef void *phn = _data(hn)
    cdef void *pcn = _data(cn)
    cdef void *pcache = _data(cache)
    cdef void *pwork = _data(work)
    cdef int st
    if dt == np.float32:
        with nogil:
            st = frr_forward_f32(&d, <const float *>px, <const float *const *>pw.p,
                                 <const float *>ph0, <const float *>pc0,
                                 <const float *>pz, <const float *>pr,
                                 (<float *>py) + col, ldy, <float *>phn, <float *>pcn,
                                 <float *>pcache, <float *>pwork)
    else:
        with nogil:
            st = frr_forward_f64(&d, <const double *>px, <const double *const *>pw.p,
                                 <const double *>ph0, <const double *>pc0,
                                 <const double *>pz, <const double *>pr,
                                 (<double *>py) + col, ldy, <double *>phn, <double *>pcn,
                                 <double *>pcache, <double *>pwork)
    _raise_status(st, "fastrnn regularized kernel")
    return hn, cn, cache


def reg_backward(int cell, x, list w, list dw, zmask, rmask, lengths, bint reverse,
             cache, dy, int col, dhn, dcn, dx, bint dx_accumulate,
             bint want_dstate0, int num_threads):
    """Backward through time after reg_forward(..., training=True) with the same
    cell, x, w, masks, lengths and direction. dy: the gradient of the y the
    forward wrote, read at columns [col, col+H). Accumulates into the arrays of
    dw (same layout as w). dx: None (allocated) or a (T,B,I) array written, or
    added to when dx_accumulate. Returns (dx, dh0 or None, dc0 or None).
    """
    if not w or not isinstance(w[0], np.ndarray) or w[0].ndim != 2:
        raise TypeError("w: expected a list of numpy arrays, W_ih first")
    dt = w[0].dtype
    if dt != np.float32 and dt != np.float64:
        raise TypeError(f"w: expected float32 or float64, got {dt}")
    cdef int H = w[1].shape[1] if isinstance(w[1], np.ndarray) and w[1].ndim == 2 else 0
    if H < 1:
        raise ValueError("w[1]: expected W_hh of shape (G*H, H)")
    cdef frr_desc d = _reg_desc(cell, x, H, lengths, reverse, 0.0, num_threads)
    _check(x, "x", dt, (d.T, d.B, d.I_))
    cdef _PtrArray pw = _reg_params(cell, w, "w", dt, <int>d.I_, H, False)
    cdef _PtrArray pdw = _reg_params(cell, dw, "dw", dt, <int>d.I_, H, True)
    if (w[2] is None) != (dw[2] is None):
        raise ValueError("dw: bias gradients must match the weights' biases")
    cdef int64_t T = d.T, B = d.B
    st_shape = (B, H)
    has_c = cell != FRR_GRU
    _check(cache, "cache", dt, (frr_cache_len(&d),))
    _reg_check_y(dy, "dy", dt, T, B, H, col)
    if zmask is not None:
        _check(zmask, "zmask", dt, (T, B, H))
    if rmask is not None:
        _check(rmask, "rmask", dt, st_shape)
    if dhn is not None:
        _check(dhn, "dhn", dt, st_shape)
    if dcn is not None:
        if not has_c:
            raise ValueError("dcn: a GRU has no cell state")
        _check(dcn, "dcn", dt, st_shape)
    if dx is None:
        dx = np.empty((T, B, d.I_), dtype=dt)
        dx_accumulate = False
    else:
        _check(dx, "dx", dt, (T, B, d.I_))
        if not dx.flags.writeable:
            raise ValueError("dx: array is read-only")
    dh0 = np.empty(st_shape, dtype=dt) if want_dstate0 else None
    dc0 = np.empty(st_shape, dtype=dt) if (want_dstate0 and has_c) else None
    work = np.empty(frr_backward_work_len(&d), dtype=dt)

    cdef void *px = _data(x)
    cdef void *pz = _data(zmask)
    cdef void *pr = _data(rmask)
    cdef void *pcache = _data(cache)
    cdef char *pdy = <char *>_data(dy)
    cdef int64_t ldy = dy.shape[2]
    cdef void *pdhn = _data(dhn)
    cdef void *pdcn = _data(dcn)
    cdef void *pdx = _data(dx)
    cdef void *pdh0 = _data(dh0)
    cdef void *pdc0 = _data(dc0)
    cdef void *pwork = _data(work)
    cdef int acc = 1 if dx_accumulate else 0
    cdef int st
    if dt == np.float32:
        with nogil:
            st = frr_backward_f32(&d, <const float *>px, <const float *const *>pw.p,
                                  <const float *>pz, <const float *>pr,
                                  <const float *>pcache, (<const float *>pdy) + col, ldy,
                                  <const float *>pdhn, <const float *>pdcn,
                                  <float *>pdx, acc, <float *>pdh0, <float *>pdc0,
                                  <float *const *>pdw.p, <float *>pwork)
    else:
        with nogil:
            st = frr_backward_f64(&d, <const double *>px, <const double *const *>pw.p,
                                  <const double *>pz, <const double *>pr,
                                  <const double *>pcache, (<const double *>pdy) + col, ldy,
                                  <const double *>pdhn, <const double *>pdcn,
                                  <double *>pdx, acc, <double *>pdh0, <double *>pdc0,
                                  <double *const *>pdw.p, <double *>pwork)
    _raise_status(st, "fastrnn regularized kernel")
    return dx, dh0, dc0
