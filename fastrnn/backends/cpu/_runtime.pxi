# Runtime settings of the library, held once in C (src/runtime/, src/fast/
# dispatch.c): the BLAS and its thread pin, OpenMP's thread count, the step
# team, the fast path's switch and vector width, batch invariance.

cdef extern from "runtime/team.h" nogil:
    int fr_team_enable(int on)
    unsigned fr_team_jobs()

cdef extern from "runtime/runtime.h" nogil:
    int fr_set_leave_test(int on)
    int64_t fr_now_ns()
    void fr_note_region(int64_t start, int64_t wall, int64_t lost)
    void fr_pick_forget()
    void fr_pick_plant(int64_t one_ns, int64_t full_ns)

cdef extern from "fastrnn.h" nogil:
    ctypedef void (*fr_sgemm_fn)(char *, char *, int *, int *, int *, float *,
                                 float *, int *, float *, int *, float *,
                                 float *, int *) noexcept nogil
    ctypedef void (*fr_dgemm_fn)(char *, char *, int *, int *, int *, double *,
                                 double *, int *, double *, int *, double *,
                                 double *, int *) noexcept nogil
    void fr_set_blas(fr_sgemm_fn s, fr_dgemm_fn d)
    ctypedef void (*fr_blas_set_threads_fn)(int) noexcept nogil
    ctypedef int (*fr_blas_get_threads_fn)() noexcept nogil
    void fr_set_blas_threads_api(fr_blas_set_threads_fn set, fr_blas_get_threads_fn get)
    int fr_max_threads()
    int fr_set_num_threads(int n)
    int fr_num_threads_setting()
    int fr_num_threads()
    int fr_set_fast_path(int enable)
    int fr_set_fast_width(int width)
    int fr_set_batch_invariant(int on)
    int fr_batch_invariant()
    int fr_set_wait_policy(int passive)
    int fr_wait_passive()
    int fr_set_adaptive_threads(int on)
    int fr_adaptive_threads()
    int fr_full_threads()
    void fr_note_wait(int64_t waited_ns)
    void fr_thread_stats(int64_t *stalls, int64_t *solo_periods, int64_t *solo_left_ns,
                         int64_t *taken)
    int64_t fr_picked_one()

# BLAS comes from SciPy's own library, so threadpoolctl governs the same one.
fr_set_blas(<fr_sgemm_fn>sgemm, <fr_dgemm_fn>dgemm)


def register_blas_threads(size_t set_addr, size_t get_addr):
    """Give the kernels the BLAS's thread-count setter and getter (addresses
    of C functions void(int) and int(void)); 0, 0 unregisters."""
    if (set_addr == 0) != (get_addr == 0):
        raise ValueError("register_blas_threads: give both addresses or neither")
    fr_set_blas_threads_api(<fr_blas_set_threads_fn>set_addr,
                            <fr_blas_get_threads_fn>get_addr)


def set_fast_path(bint enable):
    """Use the AVX2/FMA float32 kernels (default where the CPU has them) or
    the portable BLAS path; returns whether the fast path is now on."""
    return bool(fr_set_fast_path(enable))


def set_step_team(bint enable):
    """Run one-step calls (streaming) on the step team's helper threads
    (src/runtime/team.h) or on OpenMP's (default); returns the previous setting.
    Both give the same bits (fastrnn.set_step_team says when to use it)."""
    return bool(fr_team_enable(enable))


def step_team_enabled():
    """Whether one-step calls take the step team now (set_step_team)."""
    return fr_team_enable(-1) != 0


def step_team_jobs():
    """One-step calls the step team has run in this process (mod 2**32)."""
    return fr_team_jobs()


def set_fast_width(width):
    """Vector width of the fast kernels: 16 (AVX-512, where the CPU has it)
    or 8 (AVX2/FMA); a wider request than the CPU runs gets its widest.
    Returns the width now in use (0: this CPU has no fast kernels). Both
    widths give the same bits; the default is the widest."""
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)):
        raise TypeError(f"set_fast_width: width must be 8 or 16, got {width!r}")
    if width not in (8, 16):
        raise ValueError(f"set_fast_width: width must be 8 or 16, got {width}")
    return fr_set_fast_width(int(width))


def set_batch_invariant(bint on):
    """Batch-invariant forward calls (fastrnn.h, fr_set_batch_invariant) on or
    off; returns the previous setting."""
    return bool(fr_set_batch_invariant(on))


def batch_invariant():
    """Whether forward calls are batch-invariant now (set_batch_invariant)."""
    return fr_batch_invariant() != 0


cdef extern from *:
    """
    int fr_fast_spin_turns(void);  /* fast/schedule.h: the turns a waiting thread spins */
    """
    int fr_fast_spin_turns() nogil


def spin_turns():
    """The turns a thread waiting at the per-step meeting spins now, before
    it yields (0 under the passive wait policy); for the tests."""
    return fr_fast_spin_turns()


def set_wait_passive(bint on):
    """Passive waits (fastrnn.h, fr_set_wait_policy) on or off; returns the
    previous setting."""
    return bool(fr_set_wait_policy(on))


def wait_passive():
    """Whether fastrnn's waiting threads wait passively now."""
    return fr_wait_passive() != 0


def set_adaptive(bint on):
    """Adaptive threads (fastrnn.h, fr_set_adaptive_threads) on or off;
    returns the previous setting."""
    return bool(fr_set_adaptive_threads(on))


def adaptive():
    """Whether the thread count adapts to stalls now."""
    return fr_adaptive_threads() != 0


def full_threads():
    """The thread count without adaptation (the setting or OpenMP's default)."""
    return fr_full_threads()


def set_leave_test(bint on):
    """For the tests: the helpers of every units-split forward leave after
    step 0, as after a stall (the first thread takes their slices)."""
    return fr_set_leave_test(on) != 0


def note_wait(int64_t waited_ns):
    """Report a wait at a meeting, as a kernel's thread does (for the tests:
    2 ms or more is a stall)."""
    fr_note_wait(waited_ns)


def note_region(int64_t wall_ns, int64_t lost_ns):
    """Report a parallel region that ended now after wall_ns, a thread of it
    having lost lost_ns to the OS, as fr_region_end does (for the tests: 1 ms
    and a quarter of the time is a stall; shorter regions are judged together
    once they add up to 4 ms)."""
    if wall_ns < 0 or lost_ns < 0 or lost_ns > wall_ns:
        raise ValueError("note_region: expected 0 <= lost_ns <= wall_ns, got %d and %d"
                         % (lost_ns, wall_ns))
    fr_note_region(fr_now_ns() - wall_ns, wall_ns, lost_ns)


def thread_stats():
    """(stalls seen, one-thread periods begun, seconds left of the current
    one, slices taken from a late thread, calls run on one thread by their
    shape's measured times)."""
    cdef int64_t stalls = 0, periods = 0, left = 0, taken = 0
    fr_thread_stats(&stalls, &periods, &left, &taken)
    return int(stalls), int(periods), left * 1e-9, int(taken), int(fr_picked_one())


def forget_measured_threads():
    """Empty the measured thread counts' table of shapes (for the tests: the
    next calls of every shape measure both counts afresh)."""
    fr_pick_forget()


def plant_measured_times(int64_t one_ns, int64_t full_ns):
    """For the tests: every recurrent call records one_ns (run on one thread)
    or full_ns (the full count) as its time per step, in place of the
    clock's; 0, 0 gives the clock back."""
    if one_ns < 0 or full_ns < 0:
        raise ValueError("plant_measured_times: expected times >= 0, got %d and %d"
                         % (one_ns, full_ns))
    fr_pick_plant(one_ns, full_ns)


def max_threads():
    """Threads OpenMP would use by default (OMP_NUM_THREADS, threadpoolctl)."""
    return fr_max_threads()


def set_num_threads(int n):
    """fastrnn's own thread count (src/runtime/settings.c): n >= 1, or 0 for
    OpenMP's default. Returns the previous setting (0: the default)."""
    if n < 0:
        raise ValueError(f"set_num_threads: expected n >= 0 (0: OpenMP's default), got {n}")
    return fr_set_num_threads(n)


def num_threads_setting():
    """The count set with set_num_threads, 0 for OpenMP's default."""
    return fr_num_threads_setting()


def num_threads():
    """The thread count the next kernel call uses (>= 1)."""
    return fr_num_threads()
