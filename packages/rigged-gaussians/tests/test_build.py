"""The built extension ``rigged_gaussians._C``: no libtorch, consistent CUDA flags, GPU-free import.

Also checks the source layout promised by the architecture: one source of math (the CUDA and
CPU backends both include the header-only ``csrc/include/rg`` and define none of it themselves).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

_C = pytest.importorskip("rigged_gaussians._C", reason="rigged_gaussians._C is not built")

REPO = Path(__file__).resolve().parents[3]
CSRC = REPO / "csrc"


def _needed_libs(so: Path) -> list[str]:
    """DT_NEEDED entries of a shared object (readelf if present, else a scan of the ELF bytes)."""
    if shutil.which("readelf"):
        out = subprocess.run(["readelf", "-d", str(so)], capture_output=True, text=True, check=True).stdout
        return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)
    data = so.read_bytes()
    return [m.decode() for m in re.findall(rb"(lib[\w.+-]+\.so[\w.]*)\x00", data)]


def test_extension_links_no_libtorch():
    so = Path(_C.__file__)
    needed = _needed_libs(so)
    assert needed, f"could not read the dynamic section of {so}"
    bad = [lib for lib in needed if re.match(r"lib(torch|c10|caffe2)", lib)]
    assert not bad, f"{so.name} links {bad}: the extension must take pointers, not libtorch types"
    if shutil.which("ldd"):
        out = subprocess.run(["ldd", str(so)], capture_output=True, text=True).stdout
        assert "libtorch" not in out and "libc10" not in out, out


def test_cuda_flags_are_consistent():
    has_cuda = _C.has_cuda()
    assert isinstance(has_cuda, bool)
    n = _C.cuda_device_count()
    assert isinstance(n, int) and n >= 0
    cuda_ops = [name for name in dir(_C) if name.endswith("_cuda") and name != "has_cuda"]
    if has_cuda:
        assert "rasterize_to_pixels_fwd_cuda" in cuda_ops
    else:
        assert cuda_ops == [], f"built without CUDA but exposes {cuda_ops}"
        assert n == 0
    import rigged_gaussians as rg

    if rg.cuda_available():
        assert has_cuda and n > 0


def test_cpu_ops_are_complete():
    ops = [
        "triangle_frames_fwd", "triangle_frames_bwd", "deform_fwd", "deform_bwd",
        "projection_fwd", "projection_bwd", "projection_rigged_fwd", "projection_rigged_bwd",
        "isect_count", "isect_fill", "isect_offset_encode", "rasterize_to_pixels_fwd",
        "rasterize_to_pixels_bwd",
    ]  # fmt: skip
    missing = [op for op in ops if not hasattr(_C, f"{op}_cpu")]
    assert not missing, missing
    if _C.has_cuda():
        assert not [op for op in ops if not hasattr(_C, f"{op}_cuda")]


def test_import_and_render_without_a_gpu():
    """A fresh interpreter that sees no GPU imports the module and renders on the CPU."""
    code = (
        "import rigged_gaussians as rg, rigged_gaussians._C as C\n"
        "from rigged_gaussians import testing\n"
        "assert C.cuda_device_count() == 0, C.cuda_device_count()\n"
        "assert not rg.cuda_available()\n"
        "s = testing.random_scene(50, C=1, width=32, height=24)\n"
        "rgb, alpha, meta = rg.rasterize(**s, backend='cpu')\n"
        "assert rgb.shape == (1, 24, 32, 3) and float(alpha.max()) > 0\n"
        "print('ok')\n"
    )
    env = {"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr[-2000:]


def test_num_threads_setting():
    before = _C.get_num_threads()
    try:
        _C.set_num_threads(3)
        assert _C.get_num_threads() == 3
        _C.set_num_threads(0)  # back to RG_NUM_THREADS / hardware concurrency
        assert _C.get_num_threads() >= 1
    finally:
        _C.set_num_threads(before)


# math that must live only in the shared headers (one source of math for both backends)
_SHARED_FUNCS = [
    "quat_to_rotmat", "rotmat_to_quat", "triangle_frame", "covariance", "persp_proj", "sh_basis",
    "projection_fwd_one", "projection_bwd_one", "frames_fwd_one", "deform_fwd_one", "tile_rect",
    "isect_fill_one",
]  # fmt: skip


@pytest.mark.skipif(not CSRC.is_dir(), reason="not a source checkout (no csrc/)")
def test_one_source_of_math():
    headers = "\n".join(p.read_text() for p in (CSRC / "include" / "rg").glob("*.h"))
    backends = {p: p.read_text() for d in ("cpu", "cuda") for p in (CSRC / d).glob("*.*[hup]")}
    for fn in _SHARED_FUNCS:
        define = re.compile(rf"^(?:RG_HD|inline|__device__|static)[^;{{]*\b{fn}\s*\(", re.M)
        assert define.search(headers), f"{fn} is not defined in csrc/include/rg"
        for path, text in backends.items():
            assert not define.search(text), f"{path.relative_to(REPO)} redefines {fn}"
    for d in ("cpu", "cuda"):
        text = "\n".join(p.read_text() for p in (CSRC / d).glob("*.*[pu]"))
        assert '#include "rg/' in text, f"csrc/{d} does not include the shared headers"


_IMPORT_AUDIT = """
import sys, importlib, json
import numpy, torch  # the declared dependencies (and whatever they import themselves)
before = set(sys.modules)
for m in ("", ".api", ".reference", ".ply", ".strategy", ".testing", "._cpu", "._cuda"):
    importlib.import_module("rigged_gaussians" + m)
top = {n.split(".")[0] for n in before}  # the dependencies and what they import themselves
new = {n.split(".")[0] for n in set(sys.modules) - before} - top
print(json.dumps(sorted(new - set(sys.stdlib_module_names) - {"rigged_gaussians"})))
"""


def test_imports_only_declared_dependencies():
    """Every module imports only the standard library, numpy and torch (pyproject's dependencies),
    so ``pip install rigged-gaussians`` alone is enough; and the package is marked typed."""
    import json

    res = subprocess.run([sys.executable, "-c", _IMPORT_AUDIT], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout.strip().splitlines()[-1]) == []
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    deps = re.search(r"^dependencies = \[(.*?)\]", pyproject, re.M | re.S).group(1)
    assert sorted(re.findall(r'"([a-z0-9_-]+)', deps)) == ["numpy", "torch"]
    import rigged_gaussians

    assert (Path(rigged_gaussians.__file__).parent / "py.typed").is_file()
