"""Build script for cydnn's compiled kernels.

Every ``csrc/<name>.pyx`` becomes the extension ``cydnn._kernels.<name>``; ``.pxd`` files in
``csrc/`` are shared inline helpers (activation math) cimported by the modules, and ``csrc/core/``
holds what every kernel shares (BLAS wrapper, thread policy, SIMD selection, the SIMD GEMM
engines). Both folders are on the include path, so headers are named without their folder.

OpenMP is probed once by compiling a tiny program. Without it the kernels build serially and
the build prints a loud warning. Environment variables:

* ``CYDNN_NATIVE=1``      add ``-march=native`` (faster on the build machine, not portable).
* ``CYDNN_EXTENSIONS=a,b``  build only those modules (for quick rebuilds during development).
"""
import os
import shutil
import sys
import tempfile
import textwrap
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent.resolve()
CSRC = HERE / "csrc"
CORE = CSRC / "core"


def _compiler_supports_openmp(compiler):
    """Compile and link a program that uses OpenMP; True when that works."""
    tmp = tempfile.mkdtemp()
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(textwrap.dedent("""
                #include <omp.h>
                int main(void) { int n = 0;
                #pragma omp parallel reduction(+:n)
                n += 1;
                return n > 0 ? 0 : 1; }
            """))
        objs = compiler.compile([src], output_dir=tmp, extra_postargs=["-fopenmp"])
        compiler.link_executable(objs, os.path.join(tmp, "probe"), extra_postargs=["-fopenmp"])
        return True
    except Exception:  # any compile or link failure means: no OpenMP here
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class BuildExt(build_ext):
    def build_extensions(self):
        openmp = _compiler_supports_openmp(self.compiler)
        if not openmp:
            bar = "!" * 78
            sys.stderr.write(f"\n{bar}\n cydnn: the C compiler has no OpenMP support.\n"
                             f" The kernels are built SERIAL: training will use one core only.\n"
                             f" Install a compiler with OpenMP (gcc, or clang with libomp) and rebuild.\n{bar}\n\n")
        flags = ["-O3", "-ffp-contract=fast", "-fno-trapping-math", "-Wno-unused-function", "-Wno-unreachable-code"]
        if os.environ.get("CYDNN_NATIVE") == "1":
            flags.append("-march=native")
        for ext in self.extensions:
            ext.extra_compile_args = flags + (["-fopenmp"] if openmp else [])
            ext.extra_link_args = ["-fopenmp"] if openmp else []
        if not self.parallel:  # one compiler per core: the kernels are independent modules
            self.parallel = os.cpu_count() or 1
        super().build_extensions()


def extensions():
    from Cython.Build import cythonize

    only = {m for m in os.environ.get("CYDNN_EXTENSIONS", "").split(",") if m}
    exts = []
    for pyx in sorted(CSRC.glob("*.pyx")):
        if only and pyx.stem not in only:
            continue
        exts.append(Extension(f"cydnn._kernels.{pyx.stem}", [str(pyx.relative_to(HERE))],
                              include_dirs=[str(CSRC), str(CORE)],
                              depends=[str(h) for e in ("*.h", "*.pxd", "*.pxi") for h in CSRC.rglob(e)]))
    return cythonize(
        exts,
        include_path=[str(CSRC), str(CORE)],
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "nonecheck": False,
            "embedsignature": True,
        },
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
