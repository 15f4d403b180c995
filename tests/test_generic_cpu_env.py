"""scripts/generic_cpu_env.py (``nox -s tests_generic``): the variables it prints are accepted by
the installed numpy, torch and rigged_gaussians and turn their SIMD kernels off in a new process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "generic_cpu_env.py"

PROBE = """
import json, torch, rigged_gaussians
try:
    from numpy._core import _multiarray_umath as m
except ImportError:
    from numpy.core import _multiarray_umath as m
print(json.dumps({
    "numpy": [t for t in m.__cpu_dispatch__ if m.__cpu_features__.get(t)],
    "torch": torch.backends.cpu.get_cpu_capability(),
    "rg_simd": bool(rigged_gaussians.build_info().get("cpu_simd", False)),
}))
"""


def test_generic_env_turns_numpy_torch_and_rasterizer_simd_off():
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, check=True).stdout
    env = dict(line.split("=", 1) for line in out.splitlines())
    assert {"NPY_DISABLE_CPU_FEATURES", "ATEN_CPU_CAPABILITY", "MKL_CBWR", "RG_RASTER_SIMD"} <= set(env)
    assert all(" " not in v for v in env.values())  # usable as `env $(python scripts/generic_cpu_env.py) ...`
    plain = {k: v for k, v in os.environ.items() if k not in env}
    probe = subprocess.run(
        [sys.executable, "-c", PROBE], env={**plain, **env}, capture_output=True, text=True, check=True
    )
    assert json.loads(probe.stdout) == {"numpy": [], "torch": "DEFAULT", "rg_simd": False}
