# The CTC loss (src/include/fastrnn_ctc.h): per-sample losses and gradients
# with respect to the logits.

cdef extern from "fastrnn_ctc.h" nogil:
    int64_t fr_ctc_work_len(int64_t T, int64_t C, int64_t S, int num_threads)
    int fr_ctc_f32(int64_t B, int64_t T, int64_t C, int64_t S, int blank,
                   int zero_infinity, int num_threads, const float *logits,
                   const int64_t *input_lengths, const int64_t *targets,
                   const int64_t *target_lengths, const double *grad_scale,
                   double *losses, float *grad, double *work)
    int fr_ctc_f64(int64_t B, int64_t T, int64_t C, int64_t S, int blank,
                   int zero_infinity, int num_threads, const double *logits,
                   const int64_t *input_lengths, const int64_t *targets,
                   const int64_t *target_lengths, const double *grad_scale,
                   double *losses, double *grad, double *work)


def ctc(logits, input_lengths, targets, target_lengths, int blank,
        bint zero_infinity, grad_scale, bint want_grad, int num_threads):
    """Per-sample CTC negative log likelihoods (float64 (B,)) and, when
    want_grad, grad_scale[b] * d loss_b / d logits (logits' dtype, (B,T,C));
    else None. logits (B,T,C) float32/float64; input_lengths (B,) int64 or
    None; targets (B,S) int64; target_lengths (B,) int64; grad_scale (B,)
    float64 or None. See src/include/fastrnn_ctc.h."""
    if not isinstance(logits, np.ndarray) or logits.ndim != 3:
        raise ValueError("logits: expected a 3-D numpy.ndarray (B, T, C)")
    dtype = logits.dtype
    if dtype != np.float32 and dtype != np.float64:
        raise TypeError(f"logits: expected dtype float32 or float64, got {dtype}")
    cdef int64_t B = logits.shape[0], T = logits.shape[1], C = logits.shape[2]
    _check(logits, "logits", dtype, (B, T, C))
    if not isinstance(targets, np.ndarray) or targets.ndim != 2:
        raise ValueError("targets: expected a 2-D numpy.ndarray (B, S)")
    cdef int64_t S = targets.shape[1]
    _check(targets, "targets", np.int64, (B, S))
    _check(target_lengths, "target_lengths", np.int64, (B,))
    if input_lengths is not None:
        _check(input_lengths, "input_lengths", np.int64, (B,))
    if grad_scale is not None:
        _check(grad_scale, "grad_scale", np.float64, (B,))
    if num_threads < 1:
        raise ValueError(f"num_threads: expected >= 1, got {num_threads}")
    if B < 1 or T < 1 or C < 1:
        raise ValueError(f"logits: expected B, T, C >= 1, got {(B, T, C)}")
    cdef int64_t wl = fr_ctc_work_len(T, C, S, num_threads)
    if wl < 0:
        raise ValueError(f"ctc: sizes T={T}, C={C}, S={S} are too large")

    losses = np.empty(B, dtype=np.float64)
    grad = np.empty((B, T, C), dtype=dtype) if want_grad else None
    work = np.empty(max(wl, 1), dtype=np.float64)
    cdef void *px = _data(logits)
    cdef const int64_t *pil = <const int64_t *>_data(input_lengths)
    cdef const int64_t *pt = <const int64_t *>_data(targets)
    cdef const int64_t *ptl = <const int64_t *>_data(target_lengths)
    cdef const double *ps = <const double *>_data(grad_scale)
    cdef double *pl = <double *>_data(losses)
    cdef void *pg = _data(grad)
    cdef double *pw = <double *>_data(work)
    cdef int zi = zero_infinity, nt = num_threads
    cdef int rc
    cdef bint f32 = dtype == np.float32
    with nogil:
        if f32:
            rc = fr_ctc_f32(B, T, C, S, blank, zi, nt, <const float *>px, pil, pt, ptl,
                            ps, pl, <float *>pg, pw)
        else:
            rc = fr_ctc_f64(B, T, C, S, blank, zi, nt, <const double *>px, pil, pt, ptl,
                            ps, pl, <double *>pg, pw)
    if rc != FR_OK:
        raise ValueError(f"ctc: the kernel rejected its arguments (status {rc}): a "
                         "length, label or blank out of range")
    return losses, grad
