# Recurrent layers (vanilla RNN, LSTM, GRU; src/include/fastrnn.h): the
# weights' Plan, forward, backward, the streaming Stepper, and the model
# layers' GEMM.

cdef extern from "fastrnn.h" nogil:
    int FR_CELL_LSTM
    ctypedef struct fr_desc:
        int cell
        int64_t T, B, I_, H
        int L, D
        int num_threads
        const int64_t *lengths
        int gru_lbr
        double clip
        int batch_invariant
        int y_batch_first
    int fr_gemm_f32(int nt, char ta, char tb, int64_t M, int64_t N, int64_t K,
                    float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                    float beta, float *C, int64_t ldc)
    int fr_gemm_f64(int nt, char ta, char tb, int64_t M, int64_t N, int64_t K,
                    double alpha, const double *A, int64_t lda, const double *B, int64_t ldb,
                    double beta, double *C, int64_t ldc)
    int fr_num_gates(int cell)
    int fr_check_desc(const fr_desc *d)
    int64_t fr_cache_len(const fr_desc *d)
    int64_t fr_forward_work_len(const fr_desc *d, int training)
    int64_t fr_backward_work_len(const fr_desc *d)
    int fr_forward_f32(const fr_desc *d, const float *x,
                       const float *const *w_ih, const float *const *w_hh,
                       const float *const *b_ih, const float *const *b_hh,
                       const float *h0, const float *c0, const float *dropmask,
                       float *y, float *hn, float *cn, float *cache, float *work)
    int64_t fr_packed_len_f32(const fr_desc *d, int k)
    int fr_pack_f32(const fr_desc *d, const float *const *w_ih, const float *const *w_hh,
                    float *const *packed)
    int fr_forward_packed_f32(const fr_desc *d, const float *x,
                              const float *const *w_ih, const float *const *w_hh,
                              const float *const *b_ih, const float *const *b_hh,
                              const float *h0, const float *c0, const float *dropmask,
                              float *y, float *hn, float *cn, float *cache, float *work,
                              const float *const *packed, int width)
    ctypedef struct fr_rows_in:
        const int64_t *ids
        int64_t V
        const float *const *tables
    int fr_rows_table_f32(const fr_desc *d, const float *w_ih, const float *b_ih,
                          const float *b_hh, const float *E, int64_t V, float *out)
    int fr_forward_rows_f32(const fr_desc *d, const float *x,
                            const float *const *w_ih, const float *const *w_hh,
                            const float *const *b_ih, const float *const *b_hh,
                            const float *h0, const float *c0, float *y, float *hn,
                            float *cn, float *work, const float *const *packed, int width,
                            const fr_rows_in *rows)
    int fr_forward_f64(const fr_desc *d, const double *x,
                       const double *const *w_ih, const double *const *w_hh,
                       const double *const *b_ih, const double *const *b_hh,
                       const double *h0, const double *c0, const double *dropmask,
                       double *y, double *hn, double *cn, double *cache, double *work)
    int fr_backward_f32(const fr_desc *d, const float *x,
                        const float *const *w_ih, const float *const *w_hh,
                        const float *dropmask, const float *cache,
                        const float *dy, const float *dhn, const float *dcn,
                        float *dx, float *dh0, float *dc0,
                        float *const *dw_ih, float *const *dw_hh,
                        float *const *db_ih, float *const *db_hh, float *work)
    int fr_backward_f64(const fr_desc *d, const double *x,
                        const double *const *w_ih, const double *const *w_hh,
                        const double *dropmask, const double *cache,
                        const double *dy, const double *dhn, const double *dcn,
                        double *dx, double *dh0, double *dc0,
                        double *const *dw_ih, double *const *dw_hh,
                        double *const *db_ih, double *const *db_hh, double *work)

CELLS = {"RNN_TANH": 0, "RNN_RELU": 1, "LSTM": 2, "GRU": 3}


cdef class Plan:
    """A layer's L*D weight (or gradient) arrays, checked once, with their C
    pointer tables. Kernel calls reuse it while the arrays are the same
    objects (fastrnn.recurrent rebuilds it when one is replaced).

    gru_lbr: 1 torch's GRU (default), 0 the reset-first GRU (ONNX
    linear_before_reset=0); clip: 0 none, > 0 gate pre-activations clamped
    to [-clip, clip] (ONNX clip). A forward/backward runs with the options of
    the weights' plan."""
    cdef readonly int cell, input_size, H, L, D, gru_lbr
    cdef readonly double clip
    cdef readonly object dtype
    cdef readonly list arrays
    cdef readonly bint has_bias
    cdef _PtrArray pw, pr, pbw, pbr
    # the weights packed once (pack()): their buffers, pointer table, width
    cdef list packs
    cdef _PtrArray ppk
    cdef readonly int packed_width

    def __init__(self, int cell, list w_ih, list w_hh, b_ih, b_hh, int I, int H,
                 int L, int D, bint writable=False, int gru_lbr=1, double clip=0.0):
        if cell not in CELLS.values():
            raise ValueError(f"unknown cell kind {cell}")
        if gru_lbr not in (0, 1):
            raise ValueError(f"gru_lbr: expected 0 or 1, got {gru_lbr}")
        if not clip >= 0:
            raise ValueError(f"clip: expected a value >= 0 (0: none), got {clip}")
        if I < 1 or H < 1 or L < 1 or D not in (1, 2):
            raise ValueError("Plan: sizes must be >= 1 and D 1 or 2")
        K = L * D
        for name, lst in (("w_ih", w_ih), ("w_hh", w_hh), ("b_ih", b_ih), ("b_hh", b_hh)):
            if lst is not None and len(lst) != K:
                raise ValueError(f"{name}: expected {K} arrays, got {len(lst)}")
        if (b_ih is None) != (b_hh is None):
            raise ValueError("b_ih and b_hh: give both or neither")
        if not w_ih or not isinstance(w_ih[0], np.ndarray):
            raise TypeError("w_ih: expected a list of numpy arrays")
        dt = w_ih[0].dtype
        if dt != np.float32 and dt != np.float64:
            raise TypeError(f"weights: expected float32 or float64, got {dt}")
        ih, hh, bs = _weight_shapes(cell, I, H, L, D)
        self.cell, self.input_size, self.H, self.L, self.D = cell, I, H, L, D
        self.gru_lbr, self.clip = gru_lbr, clip
        self.dtype = dt
        self.has_bias = b_ih is not None
        self.pw = _ptrs(w_ih, "w_ih", dt, ih, writable)
        self.pr = _ptrs(w_hh, "w_hh", dt, hh, writable)
        self.pbw = _ptrs(b_ih, "b_ih", dt, bs, writable) if b_ih is not None else None
        self.pbr = _ptrs(b_hh, "b_hh", dt, bs, writable) if b_hh is not None else None
        self.arrays = list(w_ih) + list(w_hh) + (list(b_ih) + list(b_hh) if b_ih is not None else [])

    def matches(self, store, list order, int gru_lbr, double clip):
        """True when store[order[i]] are the very arrays of this plan and the
        options are its own (the per-call test of a layer's cached plan)."""
        cdef Py_ssize_t i, n = len(order)
        if n != len(self.arrays) or gru_lbr != self.gru_lbr or clip != self.clip:
            return False
        for i in range(n):
            if store.get(order[i]) is not self.arrays[i]:
                return False
        return True

    def pack(self):
        """Pack the weights once for the fast float32 loops (fr_pack_f32):
        later forward calls on this plan read them and pack nothing (the
        same bits). The caller must not change the weights while packed
        (fastrnn.recurrent's frozen layers keep them read-only). Returns the
        vector width packed for, 0 where nothing needs packing (float64, no
        fast loops here, a cell they do not run)."""
        cdef fr_desc d
        cdef int k, K = self.L * self.D, w
        cdef int64_t n
        cdef _PtrArray ptrs
        self.unpack()
        if self.dtype != np.float32:
            return 0
        d.cell = self.cell
        d.T = 1
        d.B = 1
        d.I_ = self.input_size
        d.H = self.H
        d.L = self.L
        d.D = self.D
        d.num_threads = 1
        d.lengths = NULL
        d.gru_lbr = self.gru_lbr
        d.clip = self.clip
        d.batch_invariant = 0
        d.y_batch_first = 0
        if fr_packed_len_f32(&d, 0) <= 0:
            return 0
        ptrs = _PtrArray(K)
        bufs = []
        for k in range(K):
            n = fr_packed_len_f32(&d, k)
            raw = np.empty(n + 16, np.float32)
            off = (-raw.ctypes.data % 64) // 4      # 64-byte aligned start
            buf = raw[off:off + n]
            bufs.append(buf)
            ptrs.p[k] = _data(buf)
        with nogil:
            w = fr_pack_f32(&d, <const float *const *>self.pw.p,
                            <const float *const *>self.pr.p, <float *const *>ptrs.p)
        _raise_status(w if w < 0 else 0, "fr_pack_f32")
        if w == 0:
            return 0
        self.packs, self.ppk, self.packed_width = bufs, ptrs, w
        return w

    def unpack(self):
        """Drop the packed weights (forward calls pack again each time)."""
        self.packs, self.ppk, self.packed_width = None, None, 0

    @property
    def packed(self):
        return self.ppk is not None

    def keep_read_only(self):
        """For frozen layers, before each call: every weight array read-only
        again, and packed again if one had been made writeable (its values
        may have changed) or nothing is packed yet. Returns the width."""
        changed = False
        for a in self.arrays:
            if a.flags.writeable:
                a.flags.writeable = False
                changed = True
        if changed or self.ppk is None:
            return self.pack()
        return self.packed_width

    def same(self, list arrays):
        """True when `arrays` are the very objects this plan was made from."""
        cdef Py_ssize_t i
        if len(arrays) != len(self.arrays):
            return False
        for i in range(len(arrays)):
            if arrays[i] is not self.arrays[i]:
                return False
        return True


cdef fr_desc _desc(int cell, object x, int L, int D, int H, object lengths,
                   int num_threads, int gru_lbr, double clip) except *:
    cdef fr_desc d
    if cell < 0 or cell > 3:  # CELLS' values
        raise ValueError(f"unknown cell kind {cell}")
    if not isinstance(x, np.ndarray) or x.ndim != 3:
        raise ValueError("x: expected a 3-D (T, B, input_size) array")
    d.cell = cell
    d.T = x.shape[0]
    d.B = x.shape[1]
    d.I_ = x.shape[2]
    d.H = H
    d.L = L
    d.D = D
    d.num_threads = max(1, num_threads)
    d.lengths = NULL
    d.gru_lbr = gru_lbr
    d.clip = clip
    d.batch_invariant = 0   # the forward sets it (fr_batch_invariant)
    d.y_batch_first = 0     # (T, B, D*H); forward's batch_first sets it
    if lengths is not None:
        _check(lengths, "lengths", np.dtype(np.int64), (d.B,))
        d.lengths = <const int64_t *>_data(lengths)
    _raise_status(fr_check_desc(&d), "fastrnn kernel")
    return d


def _weight_shapes(int cell, int I, int H, int L, int D):
    G = fr_num_gates(cell)
    ih = [(G * H, I if l == 0 else D * H) for l in range(L) for _ in range(D)]
    hh = [(G * H, H)] * (L * D)
    b = [(G * H,)] * (L * D)
    return ih, hh, b


cdef int _forward_call(fr_desc *d, Plan plan, bint f32, void *px, void *ph0, void *pc0,
                       void *pm, void *py, void *phn, void *pcn, void *pcache,
                       void *pwork):
    """fr_forward of the plan's dtype on checked arrays' data, without the GIL."""
    cdef void **pw = plan.pw.p
    cdef void **pr = plan.pr.p
    cdef void **bw = plan.pbw.p if plan.pbw is not None else NULL
    cdef void **br = plan.pbr.p if plan.pbr is not None else NULL
    # local references: a repack by another thread (Plan.keep_read_only)
    # cannot free these buffers while this call reads them without the GIL
    cdef _PtrArray ppk = plan.ppk
    cdef list packs = plan.packs
    cdef void **pk = ppk.p if ppk is not None else NULL
    cdef int width = plan.packed_width if ppk is not None else 0
    cdef int st
    if f32:
        with nogil:
            st = fr_forward_packed_f32(d, <const float *>px, <const float *const *>pw,
                                       <const float *const *>pr, <const float *const *>bw,
                                       <const float *const *>br, <const float *>ph0,
                                       <const float *>pc0, <const float *>pm, <float *>py,
                                       <float *>phn, <float *>pcn, <float *>pcache,
                                       <float *>pwork, <const float *const *>pk, width)
    else:
        with nogil:
            st = fr_forward_f64(d, <const double *>px, <const double *const *>pw,
                                <const double *const *>pr, <const double *const *>bw,
                                <const double *const *>br, <const double *>ph0,
                                <const double *>pc0, <const double *>pm, <double *>py,
                                <double *>phn, <double *>pcn, <double *>pcache,
                                <double *>pwork)
    return st


cdef bint _check_states(Plan plan, object dt, object h, object c, str hn, str cn,
                        tuple shape) except -1:
    """The given initial states (or their gradients) h, c of (L*D, B, H):
    exact dtype and shape, c for an LSTM only. Returns whether it is one."""
    if h is not None:
        _check(h, hn, dt, shape)
    is_lstm = plan.cell == CELLS["LSTM"]
    if c is not None:
        if not is_lstm:
            raise ValueError(f"{cn}: only an LSTM has a cell state")
        _check(c, cn, dt, shape)
    return is_lstm


def forward(Plan plan, x, h0, c0, dropmask, lengths, bint training, int num_threads,
            bint batch_first=False):
    """Run all layers and directions. Returns (y, h_n, c_n or None, cache or None).

    x (T,B,I) C-contiguous of the plan's dtype; h0/c0 (L*D,B,H) or None;
    dropmask (L-1,T,B,D*H) or None; lengths int64 (B,) or None. y is
    (T,B,D*H), or with batch_first (B,T,D*H), written so by the kernel.
    """
    if not isinstance(x, np.ndarray) or x.ndim != 3:
        raise ValueError("x: expected a 3-D (T, B, input_size) array")
    dt = plan.dtype
    _check(x, "x", dt, (x.shape[0], x.shape[1], plan.input_size))
    cdef fr_desc d = _desc(plan.cell, x, plan.L, plan.D, plan.H, lengths, num_threads,
                              plan.gru_lbr, plan.clip)
    # read once: the scratch below is sized for it (fastrnn.h)
    d.batch_invariant = fr_batch_invariant()
    d.y_batch_first = batch_first
    cdef int64_t T = d.T, B = d.B, H = d.H, K = d.L * d.D
    st_shape = (K, B, H)
    is_lstm = _check_states(plan, dt, h0, c0, "h0", "c0", st_shape)
    if dropmask is not None:
        if not training:
            raise ValueError("dropmask: dropout applies in training forward only")
        if d.L > 1:
            _check(dropmask, "dropmask", dt, (d.L - 1, T, B, d.D * H))
        else:
            dropmask = None

    y = _empty((B, T, d.D * H) if batch_first else (T, B, d.D * H), dt)
    hn = _empty(st_shape, dt)
    cn = _empty(st_shape, dt) if is_lstm else None
    # the cache lives until its backward, which gives it back (slot 1)
    cache = _lend_cache(fr_cache_len(&d), dt) if training else None
    work = _take_scratch(fr_forward_work_len(&d, training), dt)

    cdef int st = _forward_call(&d, plan, dt == np.float32, _data(x), _data(h0), _data(c0),
                                _data(dropmask), _data(y), _data(hn), _data(cn),
                                _data(cache), _data(work))
    _give_scratch(work)
    _raise_status(st, "fastrnn kernel")
    return y, hn, cn, cache


def rows_tables(Plan plan, E, int num_threads):
    """Layer 0's input projection of every row of E (V, input_size), one
    (V, G*H) float32 table a direction (fr_rows_table_f32), for forward's
    `tables`; None where no forward would read them (float64, no bias, the
    fast path off or a cell it declines)."""
    if plan.dtype != np.float32 or plan.pbw is None or plan.pbr is None:
        return None
    if not isinstance(E, np.ndarray) or E.ndim != 2:
        raise ValueError("E: expected a 2-D (V, input_size) array")
    _check(E, "E", np.dtype(np.float32), (E.shape[0], plan.input_size))
    probe = np.empty((1, 1, plan.input_size), np.float32)
    cdef fr_desc d = _desc(plan.cell, probe, plan.L, plan.D, plan.H, None, num_threads,
                           plan.gru_lbr, plan.clip)
    cdef int64_t V = E.shape[0], GX = fr_num_gates(plan.cell) * plan.H
    cdef int k, st
    cdef void *pe = _data(E)
    cdef void *po
    cdef void *pw
    cdef void *pb
    cdef void *pr
    tables = []
    for k in range(plan.D):
        out = np.empty((V, GX), np.float32)
        po, pw = _data(out), plan.pw.p[k]
        pb, pr = plan.pbw.p[k], plan.pbr.p[k]
        with nogil:
            st = fr_rows_table_f32(&d, <const float *>pw, <const float *>pb,
                                   <const float *>pr, <const float *>pe, V, <float *>po)
        if st != 0:
            return None
        tables.append(out)
    return tables


def forward_rows(Plan plan, x, ids, list tables, h0, c0, lengths, int num_threads,
                 bint batch_first=False):
    """forward's inference, layer 0 reading its projection from `tables`
    (rows_tables) at ids (T, B) where it would use the fast GEMM
    (fr_forward_rows_f32): the same bits as forward. x (T, B, I) must hold
    the rows the ids stand for. Returns (y, h_n, c_n or None); y as
    forward's."""
    f32 = np.dtype(np.float32)
    if plan.dtype != f32:
        raise ValueError("forward_rows: float32 plans only")
    _check(x, "x", f32, (x.shape[0], x.shape[1], plan.input_size))
    if lengths is not None:
        _check(lengths, "lengths", np.dtype(np.int64), (x.shape[1],))
        if lengths.size and (lengths.min() < 1 or lengths.max() > x.shape[0]):
            raise ValueError(f"lengths: expected values in 1..{x.shape[0]}, got "
                             f"{lengths.min()}..{lengths.max()}")
    cdef fr_desc d = _desc(plan.cell, x, plan.L, plan.D, plan.H, lengths, num_threads,
                           plan.gru_lbr, plan.clip)
    d.batch_invariant = fr_batch_invariant()
    d.y_batch_first = batch_first
    cdef int64_t T = d.T, B = d.B, H = d.H, K = d.L * d.D
    _check(ids, "ids", np.dtype(np.int64), (T, B))
    if len(tables) != d.D:
        raise ValueError(f"tables: expected {d.D}, one a direction, got {len(tables)}")
    GX = fr_num_gates(plan.cell) * H
    V = tables[0].shape[0] if isinstance(tables[0], np.ndarray) and tables[0].ndim == 2 else 0
    for i, t in enumerate(tables):
        _check(t, f"tables[{i}]", f32, (V, GX))
    if ids.size and (ids.min() < 0 or ids.max() >= V):   # a table row each
        raise ValueError(f"ids: expected values in 0..{V - 1}, got {ids.min()}..{ids.max()}")
    st_shape = (K, B, H)
    is_lstm = _check_states(plan, f32, h0, c0, "h0", "c0", st_shape)
    y = _empty((B, T, d.D * H) if batch_first else (T, B, d.D * H), f32)
    hn = _empty(st_shape, f32)
    cn = _empty(st_shape, f32) if is_lstm else None
    work = _take_scratch(fr_forward_work_len(&d, 0), f32)
    cdef _PtrArray pt = _ptrs(tables, "tables", f32, [(V, GX)] * d.D, False)
    cdef fr_rows_in rows
    rows.ids = <const int64_t *>_data(ids)
    rows.V = V
    rows.tables = <const float *const *>pt.p
    cdef void **pw = plan.pw.p
    cdef void **pr = plan.pr.p
    cdef void **bw = plan.pbw.p if plan.pbw is not None else NULL
    cdef void **br = plan.pbr.p if plan.pbr is not None else NULL
    cdef _PtrArray ppk = plan.ppk
    cdef list packs = plan.packs
    cdef void **pk = ppk.p if ppk is not None else NULL
    cdef int width = plan.packed_width if ppk is not None else 0
    cdef void *px = _data(x)
    cdef void *ph0 = _data(h0)
    cdef void *pc0 = _data(c0)
    cdef void *py = _data(y)
    cdef void *phn = _data(hn)
    cdef void *pcn = _data(cn)
    cdef void *pwork = _data(work)
    cdef int st
    with nogil:
        st = fr_forward_rows_f32(&d, <const float *>px, <const float *const *>pw,
                                 <const float *const *>pr, <const float *const *>bw,
                                 <const float *const *>br, <const float *>ph0,
                                 <const float *>pc0, <float *>py, <float *>phn, <float *>pcn,
                                 <float *>pwork, <const float *const *>pk, width, &rows)
    _give_scratch(work)
    _raise_status(st, "fastrnn kernel")
    return y, hn, cn


cdef inline bint _is_exact(object a, int type_num, int nd, cnp.npy_intp d0,
                           cnp.npy_intp d1, cnp.npy_intp d2):
    """a is a native-order C-contiguous array of type_num with dims (d0, d1[, d2])."""
    if not cnp.PyArray_Check(a):
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if cnp.PyArray_TYPE(arr) != type_num or not cnp.PyArray_ISNOTSWAPPED(arr) \
            or not cnp.PyArray_IS_C_CONTIGUOUS(arr) or cnp.PyArray_NDIM(arr) != nd:
        return False
    cdef cnp.npy_intp *dims = cnp.PyArray_DIMS(arr)
    return dims[0] == d0 and dims[1] == d1 and (nd == 2 or dims[2] == d2)


cdef struct StepOptions:
    # the layer's options as the step last saw them (Stepper.refresh)
    bint active        # 0: the layer needs another path (zoneout or recurrent
                       # dropout on, or options other than the plan's)
    int gru_lbr        # GRU: 1 torch's cell, 0 reset first
    double clip        # 0: no clamp


cdef class Stepper:
    """The per-call path of a layer's streaming step(): one time step of all
    layers of a unidirectional plan, every check a C test and the scratch
    from the C heap (no NumPy call but the outputs' allocation).

    Made by fastrnn.recurrent from a plan, the layer's params dict and the
    names of the plan's arrays in it. The layer's options live in a C struct
    (StepOptions) that the layer refreshes (refresh()) whenever one of them
    changes, so a call reads nothing of the layer but its params dict; the
    thread count is the runtime's (fr_num_threads). A call returns None,
    having run nothing, when anything is not exactly what the kernel takes
    (options that need another path, an array of params replaced, x not a
    C-contiguous (B, input_size) array of the dtype, a state that is not
    exact (L, B, H) arrays): the caller then takes its full path, which
    converts or explains."""
    cdef readonly Plan plan
    cdef list names
    cdef dict params
    cdef StepOptions opts

    def __init__(self, Plan plan, dict params, list names):
        if plan.D != 1:
            raise ValueError("Stepper: a bidirectional plan cannot stream")
        if len(names) != len(plan.arrays):
            raise ValueError("Stepper: expected one name per array of the plan")
        self.plan, self.names = plan, names
        self.refresh(params, plan.gru_lbr, plan.clip, True)

    def refresh(self, dict params, int gru_lbr, double clip, bint active):
        """The layer's params dict and options now: active False when the
        plain kernels do not run the layer (zoneout, recurrent dropout)."""
        self.params = params
        self.opts.gru_lbr = gru_lbr
        self.opts.clip = clip
        self.opts.active = active and gru_lbr == self.plan.gru_lbr and clip == self.plan.clip

    @property
    def active(self):
        return bool(self.opts.active)

    def run(self, x, state):
        cdef Plan plan = self.plan
        cdef Py_ssize_t i, n = len(self.names)
        cdef bint is_lstm = plan.cell == FR_CELL_LSTM
        cdef int type_num = (<cnp.dtype>plan.dtype).type_num
        if not self.opts.active:
            return None
        cdef dict store = self.params
        for i in range(n):
            if store.get(self.names[i]) is not plan.arrays[i]:
                return None
        if not cnp.PyArray_Check(x) or cnp.PyArray_NDIM(<cnp.ndarray>x) != 2:
            return None
        cdef cnp.npy_intp B = cnp.PyArray_DIMS(<cnp.ndarray>x)[0]
        cdef cnp.npy_intp L = plan.L, H = plan.H
        if B < 1 or B > 2147483647 or not _is_exact(x, type_num, 2, B, plan.input_size, 0):
            return None   # B past int rows: the checked path refuses it before allocating
        h0 = c0 = None
        if state is not None:
            if is_lstm:
                if type(state) is not tuple or len(state) != 2:
                    return None
                h0 = (<tuple>state)[0]
                c0 = (<tuple>state)[1]
                if not (_is_exact(h0, type_num, 3, L, B, H)
                        and _is_exact(c0, type_num, 3, L, B, H)):
                    return None
            else:
                h0 = state
                if not _is_exact(h0, type_num, 3, L, B, H):
                    return None
        cdef fr_desc d
        d.cell, d.T, d.B, d.I_, d.H = plan.cell, 1, B, plan.input_size, H
        d.L, d.D, d.num_threads = plan.L, 1, fr_num_threads()
        d.lengths, d.gru_lbr, d.clip = NULL, self.opts.gru_lbr, self.opts.clip
        d.batch_invariant = fr_batch_invariant()
        d.y_batch_first = 0
        cdef cnp.npy_intp dims[3]
        dims[0], dims[1], dims[2] = B, H, 0
        y = cnp.PyArray_EMPTY(2, dims, type_num, 0)
        dims[0], dims[1], dims[2] = L, B, H
        hn = cnp.PyArray_EMPTY(3, dims, type_num, 0)
        cn = cnp.PyArray_EMPTY(3, dims, type_num, 0) if is_lstm else None
        cdef int64_t wlen = fr_forward_work_len(&d, 0)
        if wlen < 0:
            return None
        cdef bint f32 = type_num == cnp.NPY_FLOAT32
        cdef void *work = malloc(<size_t>wlen * (4 if f32 else 8))
        if work == NULL:
            raise MemoryError()
        cdef int st = _forward_call(&d, plan, f32, _data(x), _data(h0),
                                    _data(c0), NULL, _data(y), _data(hn), _data(cn),
                                    NULL, work)
        free(work)
        _raise_status(st, "fastrnn kernel")
        return y, ((hn, cn) if is_lstm else hn)


def backward(Plan plan, Plan grads, x, dropmask, lengths, cache, dy, dhn, dcn,
             bint want_dstate0, int num_threads, bint batch_first=False):
    """Backward through time after forward(..., training=True) with the same
    plan, x, dropmask and lengths. Accumulates into the arrays of `grads` (a
    writable Plan of the gradients). Returns (dx, dh0 or None, dc0 or None).
    dy is (T,B,D*H), or with batch_first (B,T,D*H), read so by the kernel.
    """
    if not isinstance(x, np.ndarray) or x.ndim != 3:
        raise ValueError("x: expected a 3-D (T, B, input_size) array")
    dt = plan.dtype
    if (grads.cell, grads.input_size, grads.H, grads.L, grads.D, grads.dtype) != \
            (plan.cell, plan.input_size, plan.H, plan.L, plan.D, plan.dtype):
        raise ValueError("grads: its plan does not match the weights' plan")
    if grads.has_bias != plan.has_bias:
        raise ValueError("grads: bias gradients must match the weights' biases")
    _check(x, "x", dt, (x.shape[0], x.shape[1], plan.input_size))
    cdef fr_desc d = _desc(plan.cell, x, plan.L, plan.D, plan.H, lengths, num_threads,
                              plan.gru_lbr, plan.clip)
    d.y_batch_first = batch_first
    cdef int64_t T = d.T, B = d.B, H = d.H, K = d.L * d.D
    _check(cache, "cache", dt, (fr_cache_len(&d),))
    _check(dy, "dy", dt, (B, T, d.D * H) if batch_first else (T, B, d.D * H))
    st_shape = (K, B, H)
    is_lstm = _check_states(plan, dt, dhn, dcn, "dhn", "dcn", st_shape)
    if dropmask is not None:
        if d.L > 1:
            _check(dropmask, "dropmask", dt, (d.L - 1, T, B, d.D * H))
        else:
            dropmask = None

    dx = _empty((T, B, d.I_), dt)
    dh0 = _empty(st_shape, dt) if want_dstate0 else None
    dc0 = _empty(st_shape, dt) if (want_dstate0 and is_lstm) else None
    work = _take_scratch(fr_backward_work_len(&d), dt)

    cdef void *px = _data(x)
    cdef void *pm = _data(dropmask)
    cdef void *pcache = _data(cache)
    cdef void *pdy = _data(dy)
    cdef void *pdhn = _data(dhn)
    cdef void *pdcn = _data(dcn)
    cdef void *pdx = _data(dx)
    cdef void *pdh0 = _data(dh0)
    cdef void *pdc0 = _data(dc0)
    cdef void *pwork = _data(work)
    cdef void **pw = plan.pw.p
    cdef void **pr = plan.pr.p
    cdef void **gw = grads.pw.p
    cdef void **gr = grads.pr.p
    cdef void **dbw = grads.pbw.p if grads.pbw is not None else NULL
    cdef void **dbr = grads.pbr.p if grads.pbr is not None else NULL
    cdef int st
    if dt == np.float32:
        with nogil:
            st = fr_backward_f32(&d, <const float *>px, <const float *const *>pw,
                                 <const float *const *>pr, <const float *>pm,
                                 <const float *>pcache, <const float *>pdy,
                                 <const float *>pdhn, <const float *>pdcn,
                                 <float *>pdx, <float *>pdh0, <float *>pdc0,
                                 <float *const *>gw, <float *const *>gr,
                                 <float *const *>dbw, <float *const *>dbr,
                                 <float *>pwork)
    else:
        with nogil:
            st = fr_backward_f64(&d, <const double *>px, <const double *const *>pw,
                                 <const double *const *>pr, <const double *>pm,
                                 <const double *>pcache, <const double *>pdy,
                                 <const double *>pdhn, <const double *>pdcn,
                                 <double *>pdx, <double *>pdh0, <double *>pdc0,
                                 <double *const *>gw, <double *const *>gr,
                                 <double *const *>dbw, <double *const *>dbr,
                                 <double *>pwork)
    _give_scratch(work)
    _raise_status(st, "fastrnn kernel")
    _return_cache(cache)
    return dx, dh0, dc0


def gemm(a, b, c, bint trans_a, bint trans_b, double alpha, double beta, int num_threads):
    """c = alpha op(a) op(b) + beta c in place; a, b, c 2-D C-contiguous arrays
    of one float dtype, c writable. Bits independent of num_threads."""
    dtype = c.dtype
    if dtype != np.float32 and dtype != np.float64:
        raise TypeError(f"gemm: dtype {dtype} is not float32/float64")
    for arr, name in ((a, "a"), (b, "b"), (c, "c")):
        if not isinstance(arr, np.ndarray) or arr.dtype != dtype or arr.ndim != 2 \
                or not arr.flags.c_contiguous:
            raise ValueError(f"gemm: {name} must be a 2-D C-contiguous {dtype} array")
    if not c.flags.writeable:
        raise ValueError("gemm: c is read-only")
    cdef int64_t M = a.shape[1] if trans_a else a.shape[0]
    cdef int64_t K = a.shape[0] if trans_a else a.shape[1]
    cdef int64_t Kb = b.shape[1] if trans_b else b.shape[0]
    cdef int64_t N = b.shape[0] if trans_b else b.shape[1]
    if Kb != K or c.shape[0] != M or c.shape[1] != N:
        raise ValueError(f"gemm: shapes {a.shape}{'T' if trans_a else ''} x "
                         f"{b.shape}{'T' if trans_b else ''} -> {c.shape} do not agree")
    if num_threads < 1:
        raise ValueError("gemm: num_threads must be >= 1")
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    cdef int64_t lda = a.shape[1], ldb = b.shape[1], ldc = c.shape[1]
    cdef void *pa = _data(a)
    cdef void *pb = _data(b)
    cdef void *pc = _data(c)
    cdef int st
    if dtype == np.float32:
        with nogil:
            st = fr_gemm_f32(num_threads, ta, tb, M, N, K, <float>alpha, <float *>pa, lda,
                             <float *>pb, ldb, <float>beta, <float *>pc, ldc)
    else:
        with nogil:
            st = fr_gemm_f64(num_threads, ta, tb, M, N, K, alpha, <double *>pa, lda,
                             <double *>pb, ldb, beta, <double *>pc, ldc)
    _raise_status(st, "fastrnn kernel")
