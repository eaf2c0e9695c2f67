# One step of a cell's gate math after its products (src/include/fastrnn_cell.h).

cdef extern from "fastrnn_cell.h" nogil:
    int fr_cell_step_f32(int num_threads, int cell, int64_t B, int64_t H, float *pre,
                         const float *gh, const float *h, const float *c, float *h_out,
                         float *c_out, float *cache)
    int fr_cell_step_f64(int num_threads, int cell, int64_t B, int64_t H, double *pre,
                         const double *gh, const double *h, const double *c, double *h_out,
                         double *c_out, double *cache)
    int fr_cell_step_backward_f32(int num_threads, int cell, int64_t B, int64_t H,
                                  const float *acts, const float *h, const float *c,
                                  const float *c_out, const float *dh, const float *dy,
                                  float *dc, float *dgx, float *dgh, float *dhp)
    int fr_cell_step_backward_f64(int num_threads, int cell, int64_t B, int64_t H,
                                  const double *acts, const double *h, const double *c,
                                  const double *c_out, const double *dh, const double *dy,
                                  double *dc, double *dgx, double *dgh, double *dhp)


cdef object _step_arrays(str name, int cell, list arrays, list shapes, list written):
    """The dtype of a step's arrays (None entries: arrays the cell does not
    use), or None, having checked nothing more, when one is not a
    C-contiguous ndarray of the first's float dtype, a written one is
    read-only, or a written one shares a byte with another (the caller then
    takes its NumPy path; an in-place array is listed once). Shapes that
    disagree raise."""
    dt = None
    for arr in arrays:
        if arr is None:
            continue
        if not isinstance(arr, np.ndarray) or not arr.flags.c_contiguous:
            return None
        if dt is None:
            dt = arr.dtype
            if dt != np.float32 and dt != np.float64:
                return None
        elif arr.dtype != dt:
            return None
    if dt is None:
        return None
    cdef int i, j
    for i in range(len(arrays)):
        if arrays[i] is None:
            continue
        if arrays[i].shape != shapes[i]:
            raise ValueError(f"{name}: array {i} has shape {arrays[i].shape}, expected "
                             f"{shapes[i]}")
    # contiguous arrays: a byte span each; any overlap of a written one goes to NumPy
    cdef uintptr_t si, ni, sj, nj
    for i in written:
        if arrays[i] is None:
            continue
        if not arrays[i].flags.writeable:
            return None
        si, ni = <uintptr_t>_data(arrays[i]), arrays[i].nbytes
        for j in range(len(arrays)):
            if j == i or arrays[j] is None:
                continue
            sj, nj = <uintptr_t>_data(arrays[j]), arrays[j].nbytes
            if si < sj + nj and sj < si + ni:
                return None
    return dt


def _step_sizes(str name, int cell, pre):
    if cell not in CELLS.values():
        raise ValueError(f"{name}: unknown cell {cell}")
    if not isinstance(pre, np.ndarray) or pre.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D first array (B, G*H)")
    G = fr_num_gates(cell)   # the C kernels' gate table (fastrnn.h)
    if pre.shape[1] % G or pre.shape[0] < 1 or pre.shape[1] < 1:
        raise ValueError(f"{name}: {pre.shape[1]} gate columns is not {G} blocks of units")
    return pre.shape[0], pre.shape[1] // G, G


def cell_step(int cell, pre, gh, h, c, h_out, c_out, cache, int num_threads):
    """One step's gate math after its products (fastrnn_cell.h): LSTM pre (B,
    4H) becomes the activations, c (B, H) in, c_out and h_out (B, H) out; GRU
    pre and gh (B, 3H), h (B, H) in, cache (B, 4H) and h_out out; RNN pre
    (B, H) over pre and into h_out. Arrays a cell does not use may be None.
    Returns False, having done nothing, for arrays the kernel does not take
    (the caller's NumPy path runs)."""
    B, H, G = _step_sizes("cell_step", cell, pre)
    is_lstm, is_gru = cell == CELLS["LSTM"], cell == CELLS["GRU"]
    arrays = [pre, gh if is_gru else None, h if is_gru else None, c if is_lstm else None,
              h_out, c_out if is_lstm else None, cache if is_gru else None]
    if (is_lstm and (c is None or c_out is None)) or \
            (is_gru and (gh is None or h is None or cache is None)) or h_out is None:
        raise ValueError("cell_step: an array the cell needs is None")
    shapes = [(B, G * H), (B, 3 * H), (B, H), (B, H), (B, H), (B, H), (B, 4 * H)]
    dt = _step_arrays("cell_step", cell, arrays, shapes, [0, 4, 5, 6])
    if dt is None:
        return False
    cdef void *p[7]
    cdef int i
    for i in range(7):
        p[i] = _data(arrays[i])
    cdef int st, ce = cell
    cdef int64_t b = B, hh = H
    if dt == np.float32:
        with nogil:
            st = fr_cell_step_f32(num_threads, ce, b, hh, <float *>p[0], <const float *>p[1],
                                  <const float *>p[2], <const float *>p[3], <float *>p[4],
                                  <float *>p[5], <float *>p[6])
    else:
        with nogil:
            st = fr_cell_step_f64(num_threads, ce, b, hh, <double *>p[0],
                                  <const double *>p[1], <const double *>p[2],
                                  <const double *>p[3], <double *>p[4], <double *>p[5],
                                  <double *>p[6])
    _raise_status(st, "fr_cell_step")
    return True


def cell_step_backward(int cell, acts, h, c, c_out, dh, dy, dc, dgx, dgh, dhp,
                       int num_threads):
    """The step's backward (fastrnn_cell.h): from acts (the forward's pre
    after the step, or GRU's cache), the gradient dh + dy of h_out and (LSTM)
    dc = dL/dc_out, write dgx (B, G*H), dgh (GRU, B, 3H), dhp (B, H) and
    (LSTM) dc = dL/dc in place. Returns False, having done nothing, for
    arrays the kernel does not take."""
    B, H, G = _step_sizes("cell_step_backward", cell, dgx)
    is_lstm, is_gru = cell == CELLS["LSTM"], cell == CELLS["GRU"]
    if acts is None or dh is None or dy is None or dgx is None or dhp is None or \
            (is_lstm and (c is None or c_out is None or dc is None)) or \
            (is_gru and (h is None or dgh is None)):
        raise ValueError("cell_step_backward: an array the cell needs is None")
    arrays = [acts, h if is_gru else None, c if is_lstm else None,
              c_out if is_lstm else None, dh, dy, dc if is_lstm else None, dgx,
              dgh if is_gru else None, dhp]
    shapes = [(B, (4 if is_gru else G) * H), (B, H), (B, H), (B, H), (B, H), (B, H),
              (B, H), (B, G * H), (B, 3 * H), (B, H)]
    dt = _step_arrays("cell_step_backward", cell, arrays, shapes, [6, 7, 8, 9])
    if dt is None:
        return False
    cdef void *p[10]
    cdef int i
    for i in range(10):
        p[i] = _data(arrays[i])
    cdef int st, ce = cell
    cdef int64_t b = B, hh = H
    if dt == np.float32:
        with nogil:
            st = fr_cell_step_backward_f32(
                num_threads, ce, b, hh, <const float *>p[0], <const float *>p[1],
                <const float *>p[2], <const float *>p[3], <const float *>p[4],
                <const float *>p[5], <float *>p[6], <float *>p[7], <float *>p[8],
                <float *>p[9])
    else:
        with nogil:
            st = fr_cell_step_backward_f64(
                num_threads, ce, b, hh, <const double *>p[0], <const double *>p[1],
                <const double *>p[2], <const double *>p[3], <const double *>p[4],
                <const double *>p[5], <double *>p[6], <double *>p[7], <double *>p[8],
                <double *>p[9])
    _raise_status(st, "fr_cell_step_backward")
    return True
