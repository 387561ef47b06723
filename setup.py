"""Builds hetload's compiled packed<->padded kernels from ``cuda/`` (metadata is in pyproject.toml).

- ``hetload/_C``: the CPU kernels (packed<->padded, and collate's re-based index copy),
  whenever torch and a C++ compiler exist at build time;
- ``hetload/_C_cuda``: the CUDA kernels, when torch has CUDA and ``nvcc`` is found.

Both are written against libtorch's stable ABI (``TORCH_TARGET_VERSION`` 2.10, ``abi3``), so one
build loads in any torch >= 2.10 and any Python >= 3.10. Without torch or a compiler the package
installs pure-torch; a part that fails to compile is skipped with a warning unless
``HETLOAD_REQUIRE_EXTENSION=1``. ``hetload build-ext`` reruns this build in place.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
KERNELS = Path("cuda")
# the kernels, one file per op family and device (a .cu file is the twin of a _cpu.cpp one)
KERNEL_FAMILIES = ("pad", "index", "read", "sampling", "grid", "augment", "surface")
CPU_SOURCES = tuple(f"{n}_cpu.cpp" for n in KERNEL_FAMILIES)
# index and read: CPU only (the re-base copy and the shard read run where the bytes are)
CUDA_SOURCES = tuple(f"{n}_cuda.cu" for n in KERNEL_FAMILIES if n not in ("index", "read"))
# stable-ABI target: the .so needs only what torch 2.10 already exports
TORCH_TARGET = "-DTORCH_TARGET_VERSION=0x020a000000000000"
# -fno-math-errno (sqrt never sets errno) and -fno-trapping-math (no floating-point trap is
# watched, so a select of two computed values may be a blend) let the branch-free loops vectorize
# (jitter's Box-Muller, cuda/random_common.h); neither changes a computed value (no
# reassociation, no contraction: -std=c++17 keeps -ffp-contract=off)
CXX_FLAGS = ["-O3", "-std=c++17", "-fno-math-errno", "-fno-trapping-math", TORCH_TARGET]
# --fmad=false: no fused multiply-add, so the CUDA kernels round as the CPU ones (grid voxels,
# rotations, surface areas); division and sqrt are IEEE-rounded by nvcc's default
NVCC_FLAGS = ["-O3", "-std=c++17", "--fmad=false", TORCH_TARGET, "-DUSE_CUDA"]
DEFAULT_CUDA_HOME = "/usr/local/cuda"
# what to compile for when no GPU is visible (torch's own detection needs a GPU): A100-class
# and H100 machine code, plus PTX that newer GPUs compile at load time
DEFAULT_ARCHES = "8.0;9.0+PTX"


def _log(message: str) -> None:
    print(f"hetload setup: {message}", file=sys.stderr)


def _require() -> bool:
    return os.environ.get("HETLOAD_REQUIRE_EXTENSION", "") not in ("", "0")


def _prepare_cuda_env(torch) -> None:
    """Defaults that make a CUDA build work without env vars (set before cpp_extension reads
    them): the toolkit's root, so ``-lcudart`` links, and target arches when no GPU is visible."""
    unset = not (os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"))
    if unset and Path(DEFAULT_CUDA_HOME, "include", "cuda_runtime.h").is_file():
        os.environ["CUDA_HOME"] = DEFAULT_CUDA_HOME
    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCHES


def _extensions() -> tuple[list, dict]:
    """The extensions this machine can build, and the ``cmdclass`` that builds them."""
    try:
        import torch
    except ImportError:
        _log("torch is not importable at build time: installing the pure-torch ops only")
        return [], {}
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        _log("no C++ compiler found: installing the pure-torch ops only")
        return [], {}
    if torch.version.cuda is not None:
        _prepare_cuda_env(torch)
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    headers = [str(p) for p in sorted(KERNELS.glob("*.h"))]
    extensions = [
        CppExtension(
            "hetload._C",
            [str(KERNELS / n) for n in CPU_SOURCES],
            depends=headers,
            extra_compile_args={"cxx": CXX_FLAGS},
            py_limited_api=True,
        )
    ]
    nvcc = shutil.which("nvcc") or (
        os.environ.get("CUDA_HOME") and shutil.which("nvcc", path=f"{os.environ['CUDA_HOME']}/bin")
    )
    if torch.version.cuda is None:
        _log(f"torch {torch.__version__} has no CUDA: building the CPU kernels only")
    elif not nvcc:
        _log("nvcc not found (set CUDA_HOME): building the CPU kernels only")
    else:
        extensions.append(
            CUDAExtension(
                "hetload._C_cuda",
                [str(KERNELS / n) for n in CUDA_SOURCES],
                depends=headers,
                extra_compile_args={"cxx": [*CXX_FLAGS, "-DUSE_CUDA"], "nvcc": NVCC_FLAGS},
                py_limited_api=True,
            )
        )
    return extensions, {"build_ext": _tolerant_build_ext()}


def _tolerant_build_ext():
    """torch's BuildExtension, except that a part that fails to compile is skipped (the ops fall
    back to pure torch) instead of failing the whole install."""
    from torch.utils.cpp_extension import BuildExtension

    class BuildKernels(BuildExtension):
        def build_extensions(self) -> None:
            try:
                super().build_extensions()
            except Exception as exc:  # e.g. torch's compiler check on a broken toolchain
                if _require():
                    raise
                _log(f"the C++ toolchain is unusable, the pure-torch ops will serve: {exc}")

        def build_extension(self, ext) -> None:
            try:
                super().build_extension(ext)
            except Exception as exc:
                if _require():
                    raise
                _log(f"building {ext.name} failed, the pure-torch ops will serve instead: {exc}")

        def copy_file(self, infile, outfile, *args, **kwargs):
            if not str(outfile).endswith(".so"):
                return super().copy_file(infile, outfile, *args, **kwargs)
            if not os.path.exists(infile):  # a part skipped above
                return outfile, 0
            # A running process maps the old library: replace it by rename (a new file), never
            # rewrite it in place, which would crash that process (`hetload build-ext`).
            partial = f"{outfile}.{os.getpid()}.tmp"
            shutil.copy2(infile, partial)
            os.replace(partial, outfile)
            return outfile, 1

    return BuildKernels


os.chdir(ROOT)
ext_modules, cmdclass = _extensions()
setup(
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    options={"bdist_wheel": {"py_limited_api": "cp310"}} if ext_modules else {},
)
