# Reduced-precision inference (src/include/fastrnn_q.h): QPlan, the int8 or
# bf16 weights of a frozen layer packed once, and qforward.

cdef extern from "fastrnn_q.h" nogil:
    int FRQ_INT8, FRQ_BF16
    int frq_isa(int prec)
    int frq_bf16_dot()
    int frq_set_bf16_dot(int on)
    int64_t frq_packed_len(const fr_desc *d, int prec, int k)
    int frq_pack(const fr_desc *d, int prec, int k, const void *w_ih, const float *s_ih,
                 const void *w_hh, const float *s_hh, const float *b_ih, const float *b_hh,
                 void *out)
    int64_t frq_work_len(const fr_desc *d, int prec)
    int frq_forward(const fr_desc *d, int prec, const float *x, const void *const *packed,
                    const float *h0, const float *c0, float *y, float *hn, float *cn,
                    void *work)

PRECISIONS = {"int8": 1, "bf16": 2}


cdef inline cnp.ndarray _aligned_bytes(int64_t n):
    """n bytes, 64-byte aligned (a view into a larger uint8 array)."""
    raw = np.empty(n + 64, np.uint8)
    off = (-raw.ctypes.data) % 64
    return raw[off:off + n]


def quant_isa(str precision):
    """The kernels the next qforward call runs: 16, 8 or 0 (portable)."""
    return frq_isa(PRECISIONS[precision])


def bf16_dot():
    """Whether bf16 products at width 16 run vdpbf16ps (AVX512_BF16)."""
    return bool(frq_bf16_dot())


def set_bf16_dot(on):
    """Let bf16 products at width 16 run vdpbf16ps (True, where the CPU has
    it) or the AVX-512 F FMAs that give its bits (False: tests, timings).
    Returns the state now."""
    if not isinstance(on, (bool, np.bool_)):
        raise TypeError(f"set_bf16_dot: expected a bool, got {type(on).__name__}")
    return bool(frq_set_bf16_dot(1 if on else 0))


cdef class QPlan:
    """A frozen layer's int8 or bf16 weights packed once for frq_forward.

    w_ih, w_hh: L*D arrays, int8 (int8) or uint16 bf16 bit patterns (bf16),
    (G*H, In) and (G*H, H); s_ih, s_hh: L*D float32 (G*H) row scales (int8)
    or None; b_ih, b_hh: L*D float32 (G*H) or None. The arrays are copied
    into the packed buffers: later changes to them do not reach the plan."""
    cdef readonly int cell, input_size, H, L, D, prec
    cdef readonly str precision
    cdef list packs
    cdef _PtrArray ppk

    def __init__(self, int cell, str precision, list w_ih, list w_hh, s_ih, s_hh, b_ih,
                 b_hh, int I, int H, int L, int D):
        if cell not in CELLS.values():
            raise ValueError(f"unknown cell kind {cell}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision: expected 'int8' or 'bf16', got {precision!r}")
        if I < 1 or H < 1 or L < 1 or D not in (1, 2):
            raise ValueError("QPlan: sizes must be >= 1 and D 1 or 2")
        cdef int K = L * D, k
        for name, lst in (("w_ih", w_ih), ("w_hh", w_hh), ("s_ih", s_ih), ("s_hh", s_hh),
                          ("b_ih", b_ih), ("b_hh", b_hh)):
            if lst is not None and len(lst) != K:
                raise ValueError(f"{name}: expected {K} arrays, got {len(lst)}")
        if (b_ih is None) != (b_hh is None):
            raise ValueError("b_ih and b_hh: give both or neither")
        cdef int prec = PRECISIONS[precision]
        wdt = np.dtype(np.int8) if prec == 1 else np.dtype(np.uint16)
        if prec == 1 and (s_ih is None or s_hh is None):
            raise ValueError("s_ih, s_hh: int8 weights need their row scales")
        ih, hh, bs = _weight_shapes(cell, I, H, L, D)
        cdef fr_desc d = _qdesc(cell, 1, 1, I, H, L, D, 1, NULL)
        if frq_packed_len(&d, prec, 0) < 0:
            raise ValueError(f"{precision}: sizes out of range (int8: input and "
                             f"hidden sizes <= 65536)")
        self.cell, self.input_size, self.H, self.L, self.D = cell, I, H, L, D
        self.prec, self.precision = prec, precision
        self.ppk = _PtrArray(K)
        self.packs = []
        cdef int st
        cdef void *pw
        cdef void *pr
        cdef void *psi
        cdef void *psh
        cdef void *pbi
        cdef void *pbh
        cdef void *out
        for k in range(K):
            _check(w_ih[k], f"w_ih[{k}]", wdt, ih[k])
            _check(w_hh[k], f"w_hh[{k}]", wdt, hh[k])
            psi = psh = pbi = pbh = NULL
            if prec == 1:
                _check(s_ih[k], f"s_ih[{k}]", np.dtype(np.float32), bs[k])
                _check(s_hh[k], f"s_hh[{k}]", np.dtype(np.float32), bs[k])
                psi, psh = _data(s_ih[k]), _data(s_hh[k])
            if b_ih is not None:
                _check(b_ih[k], f"b_ih[{k}]", np.dtype(np.float32), bs[k])
                _check(b_hh[k], f"b_hh[{k}]", np.dtype(np.float32), bs[k])
                pbi, pbh = _data(b_ih[k]), _data(b_hh[k])
            buf = _aligned_bytes(frq_packed_len(&d, prec, k))
            pw, pr, out = _data(w_ih[k]), _data(w_hh[k]), _data(buf)
            with nogil:
                st = frq_pack(&d, prec, k, pw, <const float *>psi, pr, <const float *>psh,
                              <const float *>pbi, <const float *>pbh, out)
            _raise_status(st, "frq_pack")
            self.packs.append(buf)
            self.ppk.p[k] = out


cdef fr_desc _qdesc(int cell, int64_t T, int64_t B, int64_t I, int64_t H, int L, int D,
                    int num_threads, const int64_t *lengths):
    cdef fr_desc d
    d.cell = cell
    d.T = T
    d.B = B
    d.I_ = I
    d.H = H
    d.L = L
    d.D = D
    d.num_threads = max(1, num_threads)
    d.lengths = lengths
    d.gru_lbr = 1
    d.clip = 0.0
    d.batch_invariant = 0
    d.y_batch_first = 0
    return d


def qforward(QPlan plan, x, h0, c0, lengths, int num_threads, bint batch_first=False):
    """Inference through all layers and directions with the plan's weights.

    x (T,B,I) float32 C-contiguous; h0/c0 (L*D,B,H) float32 or None;
    lengths int64 (B,) in 1..T or None. Returns (y, h_n, c_n or None); y
    (T,B,D*H), or with batch_first (B,T,D*H), written so by the kernel."""
    if not isinstance(x, np.ndarray) or x.ndim != 3:
        raise ValueError("x: expected a 3-D (T, B, input_size) array")
    f32 = np.dtype(np.float32)
    _check(x, "x", f32, (x.shape[0], x.shape[1], plan.input_size))
    cdef fr_desc d = _desc(plan.cell, x, plan.L, plan.D, plan.H, lengths, num_threads, 1,
                           0.0)
    d.y_batch_first = batch_first
    cdef int64_t T = d.T, B = d.B, H = d.H, K = d.L * d.D
    st_shape = (K, B, H)
    if h0 is not None:
        _check(h0, "h0", f32, st_shape)
    is_lstm = plan.cell == CELLS["LSTM"]
    if c0 is not None:
        if not is_lstm:
            raise ValueError("c0: only an LSTM has a cell state")
        _check(c0, "c0", f32, st_shape)
    y = _empty((B, T, d.D * H) if batch_first else (T, B, d.D * H), f32)
    hn = _empty(st_shape, f32)
    cn = _empty(st_shape, f32) if is_lstm else None
    cdef int64_t n = frq_work_len(&d, plan.prec)
    if n < 0:
        raise ValueError("qforward: sizes out of range")
    work = _take_aligned_scratch(n)
    # local references: the buffers stay alive while C reads them without the GIL
    cdef list packs = plan.packs
    cdef _PtrArray ppk = plan.ppk
    cdef int st
    cdef int prec = plan.prec
    cdef void *px = _data(x)
    cdef void *ph0 = _data(h0)
    cdef void *pc0 = _data(c0)
    cdef void *py = _data(y)
    cdef void *phn = _data(hn)
    cdef void *pcn = _data(cn)
    cdef void *pwork = _data(work)
    with nogil:
        st = frq_forward(&d, prec, <const float *>px, <const void *const *>ppk.p,
                         <const float *>ph0, <const float *>pc0, <float *>py, <float *>phn,
                         <float *>pcn, pwork)
    _give_scratch(<cnp.ndarray>work.base)
    _raise_status(st, "frq_forward")
    return y, hn, cn


cdef class QStepper:
    """The per-call path of a narrow layer's streaming step(), as Stepper is
    for float32: one time step of all layers of a unidirectional QPlan,
    every check a C test and the scratch from the C heap. A call returns
    None, having run nothing, when anything is not exactly what frq_forward
    takes (x not a C-contiguous float32 (B, input_size) array, a state that
    is not exact (L, B, H) float32 arrays, options the narrow kernels do not
    run): the caller then takes its checked path, which converts or
    explains. The same kernels as qforward with T = 1: the same bits."""
    cdef readonly QPlan plan
    cdef bint on

    def __init__(self, QPlan plan):
        if plan.D != 1:
            raise ValueError("QStepper: a bidirectional plan cannot stream")
        self.plan = plan
        self.on = True

    def refresh(self, dict params, int gru_lbr, double clip, bint active):
        """The layer's options now (Stepper's signature): the narrow kernels
        run only torch's GRU (gru_lbr 1), no clip and no regularization."""
        self.on = active and gru_lbr == 1 and clip == 0.0

    @property
    def active(self):
        return bool(self.on)

    def run(self, x, state):
        cdef QPlan plan = self.plan
        cdef bint is_lstm = plan.cell == FR_CELL_LSTM
        if not self.on or not cnp.PyArray_Check(x) or cnp.PyArray_NDIM(<cnp.ndarray>x) != 2:
            return None
        cdef cnp.npy_intp B = cnp.PyArray_DIMS(<cnp.ndarray>x)[0]
        cdef cnp.npy_intp L = plan.L, H = plan.H
        if B < 1 or B > 2147483647 \
                or not _is_exact(x, cnp.NPY_FLOAT32, 2, B, plan.input_size, 0):
            return None
        h0 = c0 = None
        if state is not None:
            if is_lstm:
                if type(state) is not tuple or len(state) != 2:
                    return None
                h0 = (<tuple>state)[0]
                c0 = (<tuple>state)[1]
                if not (_is_exact(h0, cnp.NPY_FLOAT32, 3, L, B, H)
                        and _is_exact(c0, cnp.NPY_FLOAT32, 3, L, B, H)):
                    return None
            else:
                h0 = state
                if not _is_exact(h0, cnp.NPY_FLOAT32, 3, L, B, H):
                    return None
        cdef fr_desc d = _qdesc(plan.cell, 1, B, plan.input_size, H, plan.L, 1,
                                fr_num_threads(), NULL)
        cdef int64_t wlen = frq_work_len(&d, plan.prec)
        if wlen < 0:
            return None
        cdef cnp.npy_intp dims[3]
        dims[0], dims[1], dims[2] = B, H, 0
        y = cnp.PyArray_EMPTY(2, dims, cnp.NPY_FLOAT32, 0)
        dims[0], dims[1], dims[2] = L, B, H
        hn = cnp.PyArray_EMPTY(3, dims, cnp.NPY_FLOAT32, 0)
        cn = cnp.PyArray_EMPTY(3, dims, cnp.NPY_FLOAT32, 0) if is_lstm else None
        # frq_forward wants 64-byte aligned scratch: round the heap block up
        cdef char *raw = <char *>malloc(<size_t>wlen + 64)
        if raw == NULL:
            raise MemoryError()
        cdef void *work = <void *>(raw + (64 - (<uintptr_t>raw & 63)))
        # local references: the packed buffers stay alive without the GIL
        cdef list packs = plan.packs
        cdef _PtrArray ppk = plan.ppk
        cdef int prec = plan.prec
        cdef void *px = _data(x)
        cdef void *ph0 = _data(h0)
        cdef void *pc0 = _data(c0)
        cdef void *py = _data(y)
        cdef void *phn = _data(hn)
        cdef void *pcn = _data(cn)
        cdef int st
        with nogil:
            st = frq_forward(&d, prec, <const float *>px, <const void *const *>ppk.p,
                             <const float *>ph0, <const float *>pc0, <float *>py,
                             <float *>phn, <float *>pcn, work)
        free(raw)
        _raise_status(st, "frq_forward")
        return y, ((hn, cn) if is_lstm else hn)
