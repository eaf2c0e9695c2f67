"""Build of fastrnn's C kernels (src/) and Cython boundaries (fastrnn/_core.pyx,
fastrnn/_losses.pyx, fastrnn/_reg.pyx).

BLAS is not linked: the kernels call the sgemm/dgemm that SciPy exports through
scipy.linalg.cython_blas. OpenMP is used when the compiler supports it; without
it the build still works, single-threaded, and says so loudly. No
-march=native: the extension must run on any x86-64.
"""
import os
import shutil
import subprocess
import sys
import tempfile

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup


def openmp_flags():
    """(compile, link) flags for OpenMP, or ([], []) when the compiler lacks it."""
    if os.environ.get("FASTRNN_NO_OPENMP"):
        return [], []
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc.split()[0]) is None:
        return ["-fopenmp"], ["-fopenmp"]  # let the real build report the problem
    src = "#include <omp.h>\nint main(void){return omp_get_max_threads() < 1;}\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "t.c")
        with open(path, "w") as f:
            f.write(src)
        res = subprocess.run(cc.split() + ["-fopenmp", path, "-o", os.path.join(tmp, "t")],
                             capture_output=True)
    if res.returncode == 0:
        return ["-fopenmp"], ["-fopenmp"]
    sys.stderr.write(
        "\n" + "*" * 70 + "\nWARNING: the C compiler does not support OpenMP; fastrnn "
        "is built\nsingle-threaded. Install a compiler with OpenMP (gcc) for speed.\n"
        + "*" * 70 + "\n\n")
    return [], []


def supported(flag):
    """[flag] when the C compiler accepts it (as an error-free compile), else []."""
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc.split()[0]) is None:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "t.c")
        with open(path, "w") as f:
            f.write("int main(void){return 0;}\n")
        res = subprocess.run(cc.split() + ["-Werror", flag, "-c", path, "-o",
                                           os.path.join(tmp, "t.o")], capture_output=True)
    return [flag] if res.returncode == 0 else []


omp_c, omp_l = openmp_flags()
# Loops start on 64-byte lines: without it, code added anywhere in
# rnn_fast_kernels.h moved the GEMM's and the tiles' loops across fetch lines
# and made them 5-8% slower (benchmarks/RESULTS.md, 2026-12-03 second stop).
extra_compile = (["-O3", "-fno-math-errno", "-Wno-unused-function"]
                 + supported("-falign-loops=64") + omp_c)
if os.environ.get("FASTRNN_SANITIZE"):  # ASan/UBSan build for the sanitizer job
    extra_compile += ["-O1", "-g", "-fno-omit-frame-pointer",
                      "-fsanitize=address,undefined"]
    omp_l = omp_l + ["-fsanitize=address,undefined"]

ext = Extension(
    "fastrnn._core",
    sources=["fastrnn/_core.pyx", "src/portable/rnn.c", "src/fast/dispatch.c",
             "src/fast/schedule.c", "src/fast/kernels_avx2.c", "src/fast/kernels_avx512.c", "src/runtime/team.c"],
    depends=["src/include/fastrnn.h", "src/portable/rnn_impl.h", "src/fast/fast.h",
             "src/fast/schedule.h", "src/fast/tuning.h", "src/fast/isa.h", "src/fast/simd_math.h", "src/fast/dot.h", "src/fast/panels.h",
             "src/fast/cell.h", "src/fast/forward.h", "src/fast/backward.h", "src/fast/gemm.h",
             "src/runtime/team.h"],
    include_dirs=["src/include", "src", numpy.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    extra_compile_args=extra_compile + supported("-pthread"),
    extra_link_args=omp_l + supported("-pthread"),  # the step team's helpers (rnn_team.c)
)

# The losses' kernels (CTC): no BLAS, same flags.
ext_losses = Extension(
    "fastrnn._losses",
    sources=["fastrnn/_losses.pyx", "src/portable/ctc.c"],
    depends=["src/include/fastrnn.h", "src/include/fastrnn_ctc.h", "src/portable/ctc_impl.h",
             "src/fast/tuning.h"],
    include_dirs=["src/include", "src", numpy.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    extra_compile_args=extra_compile,
    extra_link_args=omp_l,
)

# Regularized cells (zoneout, recurrent dropout, layer-normalized LSTM): a
# separate module whose kernels call _core's GEMMs and BLAS thread pin through
# pointers it takes from fastrnn._core at import (src/rnn_internal.h).
ext_reg = Extension(
    "fastrnn._reg",
    sources=["fastrnn/_reg.pyx", "src/portable/reg.c"],
    depends=["src/include/fastrnn.h", "src/include/fastrnn_reg.h", "src/portable/reg_impl.h",
             "src/runtime/runtime.h", "src/fast/tuning.h"],
    include_dirs=["src/include", "src", numpy.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    extra_compile_args=extra_compile,
    extra_link_args=omp_l,
)

setup(ext_modules=cythonize([ext, ext_losses, ext_reg],
                            compiler_directives={"language_level": 3}))
