"""Build of fastrnn's C kernels (src/) and their Cython boundary, one extension
module (fastrnn/backends/cpu/_ext.pyx and the .pxi parts it includes).

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
# Loops start on 64-byte lines, so that code added elsewhere in a file never
# moves a hot loop across fetch lines (docs/tuning.md, "-falign-loops=64").
extra_compile = (["-O3", "-fno-math-errno", "-Wno-unused-function"]
                 + supported("-falign-loops=64") + omp_c)
plant_macros = []
if os.environ.get("FASTRNN_SANITIZE"):  # ASan/UBSan build for the sanitizer job
    # -fno-sanitize-recover: a UBSan report stops the process (by default UBSan
    # prints and goes on, and pytest drops a passing test's output).
    # -fno-wrapv: Python's CFLAGS carry -fwrapv, which defines signed overflow
    # as wrapping, so UBSan could not report one
    extra_compile += ["-O1", "-g", "-fno-omit-frame-pointer", "-fno-wrapv",
                      "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    omp_l = omp_l + ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    # tools/sanitize.sh's self-test: a defect planted on every kernel call
    # (src/portable/rnn.c, fr_check_desc) that the run must be stopped by
    plant = os.environ.get("FASTRNN_PLANT", "")
    if plant not in ("", "ub", "asan"):
        sys.exit(f"FASTRNN_PLANT={plant!r}: expected ub or asan")
    if plant:
        plant_macros = [("FR_PLANT_" + plant.upper(), "1")]
elif os.environ.get("FASTRNN_PLANT"):
    sys.exit("FASTRNN_PLANT needs FASTRNN_SANITIZE=1 (a planted defect is never built "
             "into a normal extension)")

# One extension module, fastrnn.backends.cpu._ext: the Cython boundary
# (_ext.pyx and the .pxi parts it includes) and every C file of src/, so that
# the library's C state (the BLAS and its thread pin, the step team, the fast
# path's switch and width) exists once.
C_SOURCES = sorted(os.path.join(d, f) for d, _, fs in os.walk("src") for f in fs
                   if f.endswith(".c"))
C_HEADERS = sorted(os.path.join(d, f) for d, _, fs in os.walk("src") for f in fs
                   if f.endswith(".h"))
CPU = "fastrnn/backends/cpu"
ext = Extension(
    "fastrnn.backends.cpu._ext",
    sources=[f"{CPU}/_ext.pyx"] + C_SOURCES,
    depends=C_HEADERS + sorted(f"{CPU}/{f}" for f in os.listdir(CPU) if f.endswith(".pxi")),
    include_dirs=["src/include", "src", numpy.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")] + plant_macros,
    extra_compile_args=extra_compile + supported("-pthread"),
    extra_link_args=omp_l + supported("-pthread"),  # the step team's helpers (runtime/team.c)
)

setup(ext_modules=cythonize([ext], compiler_directives={"language_level": 3}))
