"""Print the environment that keeps numpy, torch and rigged_gaussians on their generic CPU code.

The same data can round differently on two CPUs: numpy and PyTorch pick SIMD kernels at run
time (SSE, AVX2, AVX-512: other summation orders, other polynomial approximations of log/exp),
their BLAS libraries pick per-CPU GEMM kernels, and rigged_gaussians picks its AVX2 rasterizer.
A geometric predicate that is decided by a rounding error then passes on one machine and fails
on the next (issue 20: CI on AVX2 passed, an AVX-512 Xeon failed). ``nox -s tests_generic`` runs
the tests with every one of those choices forced to its portable baseline, so whatever passes
here and in ``nox -s tests`` passes at both ends of the vector-width range.

Usage: ``env $(python scripts/generic_cpu_env.py) pytest ...`` (one ``KEY=VALUE`` per line), or
``python scripts/generic_cpu_env.py --check`` to print what the variables changed.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

# numpy's SIMD tables (numpy 2: numpy._core, numpy 1: numpy.core), as ``m``
_NUMPY_SIMD = (
    "try:\n from numpy._core import _multiarray_umath as m\n"
    "except ImportError:\n from numpy.core import _multiarray_umath as m\n"
)


def _numpy_dispatch_targets() -> list[str]:
    """The SIMD targets numpy may dispatch to beyond its baseline (numpy 2: ``X86_V3``,
    ``X86_V4``, ``AVX512_ICL``, ...; numpy 1: ``AVX2``, ``AVX512F``, ...), read from a clean
    process (the variable must be set before numpy is imported, and naming a baseline feature
    is an error)."""
    code = _NUMPY_SIMD + "print(' '.join(m.__cpu_dispatch__))"
    env = {k: v for k, v in os.environ.items() if k != "NPY_DISABLE_CPU_FEATURES"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.split()


def generic_cpu_env() -> dict[str, str]:
    """The variables (``{name: value}``) for this interpreter's numpy on this machine."""
    env = {
        # numpy: no dispatched SIMD kernels (the baseline only: SSE4.2 on x86-64, NEON on arm64)
        "NPY_DISABLE_CPU_FEATURES": ",".join(_numpy_dispatch_targets()),
        # PyTorch's ATen kernels: the scalar build ("default") instead of AVX2 / AVX-512
        "ATEN_CPU_CAPABILITY": "default",
        # Intel MKL (torch's BLAS/LAPACK on x86): conditional numerical reproducibility, the
        # code path every Intel-compatible CPU runs alike
        "MKL_CBWR": "COMPATIBLE",
        # rigged_gaussians: the portable scalar rasterizer instead of its AVX2 kernels
        "RG_RASTER_SIMD": "0",
    }
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        env["OPENBLAS_CORETYPE"] = "Nehalem"  # numpy's OpenBLAS: SSE4.2 GEMM kernels
        env["ONEDNN_MAX_CPU_ISA"] = "SSE41"  # torch's oneDNN (convolutions)
    elif machine in ("aarch64", "arm64"):
        env["OPENBLAS_CORETYPE"] = "ARMV8"
    return env


def _check(env: dict[str, str]) -> None:
    code = _NUMPY_SIMD + (
        "import torch\n"
        "on = [t for t in m.__cpu_dispatch__ if m.__cpu_features__.get(t)]\n"
        "print('numpy dispatch targets enabled:', on)\n"
        "print('torch CPU capability:', torch.backends.cpu.get_cpu_capability())\n"
    )
    plain = {k: v for k, v in os.environ.items() if k not in env}
    for name, extra in (("as is", {}), ("generic", env)):
        out = subprocess.run(
            [sys.executable, "-c", code], env={**plain, **extra}, capture_output=True, text=True, check=True
        )
        print(f"# {name}:\n{out.stdout}", end="")


if __name__ == "__main__":
    variables = generic_cpu_env()
    if "--check" in sys.argv[1:]:
        _check(variables)
    else:
        print("\n".join(f"{k}={v}" for k, v in variables.items()))
