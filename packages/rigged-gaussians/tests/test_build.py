"""The built extension ``rigged_gaussians._C``: no libtorch, consistent CUDA flags, GPU-free import.

Also checks the source layout promised by the architecture: one source of math (the CUDA and
CPU backends both include the header-only ``csrc/include/rg`` and define none of it themselves).
"""

from __future__ import annotations

import os
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


def test_ops_are_complete():
    shared = [
        "triangle_frames_fwd", "triangle_frames_bwd", "deform_fwd", "deform_bwd",
        "projection_fwd", "projection_bwd", "projection_rigged_fwd", "projection_rigged_bwd",
        "isect_count", "isect_fill", "rasterize_to_pixels_fwd", "rasterize_to_pixels_bwd",
    ]  # fmt: skip
    missing = [op for op in [*shared, "isect_sort"] if not hasattr(_C, f"{op}_cpu")]
    assert not missing, missing
    if _C.has_cuda():
        cuda = [*shared, "isect_offsets", "radix_sort", "radix_sort_temp_bytes"]
        assert not [op for op in cuda if not hasattr(_C, f"{op}_cuda")]


def test_records_are_bound_from_one_field_list():
    """Every record of csrc/include/rg/ops.h is a class with exactly the fields of its X-macro
    list (parsed here from the header), pointers as integers; unknown fields are rejected."""
    header = (CSRC / "include" / "rg" / "ops.h").read_text() if CSRC.is_dir() else None
    records = {
        "Exec": "RG_EXEC_FIELDS", "FramesArgs": "RG_FRAMES_FIELDS", "DeformArgs": "RG_DEFORM_FIELDS",
        "ProjArgs": "RG_PROJ_FIELDS", "ProjGrads": "RG_PROJ_GRAD_FIELDS",
        "IsectArgs": "RG_ISECT_FIELDS", "SortArgs": "RG_SORT_FIELDS", "RasterArgs": "RG_RASTER_FIELDS",
        "RasterGrads": "RG_RASTER_GRAD_FIELDS",
    }  # fmt: skip
    for cls_name, macro in records.items():
        cls = getattr(_C, cls_name)
        if header is not None:
            body = re.search(rf"#define {macro}\(X\)(.*?)\n\n", header, re.S).group(1)
            names = re.findall(r"X\([^,]+,\s*(\w+),", body)
            assert list(cls.fields) == names, cls_name
        assert len(cls.fields) == len(set(cls.fields)) > 0
    a = _C.RasterArgs()
    a.means2d = 2**40 + 8  # a pointer round-trips as an integer
    assert a.means2d == 2**40 + 8 and a.device == -1 and a.tile_size == 16
    with pytest.raises(AttributeError):
        a.not_a_field = 1
    from rigged_gaussians import _checks

    assert dict(_C.ERROR_SLOTS) == _checks.ERROR_SLOTS


def test_build_info_says_what_was_built():
    import rigged_gaussians as rg

    info = rg.build_info()
    assert info["extension"] is True
    assert info["backends"][0] == "cpu" and ("cuda" in info["backends"]) == _C.has_cuda()
    assert info["cxx_compiler"] and info["pybind11"].count(".") == 2
    assert isinstance(info["cpu_simd"], bool) and info["cpu_simd"] == _C.rasterize_uses_simd()
    if _C.has_cuda():
        assert info["cuda_compiler"] and info["cuda_architectures"] and info["cuda_runtime"]
        assert info["cuda_skipped"] == ""
    else:
        assert info["cuda_skipped"].startswith("RG_CUDA=")
        assert info["cuda_compiler"] == info["cuda_architectures"] == info["cuda_runtime"] == ""


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
for m in (
    "", ".api", ".reference", ".ply", ".strategy", ".testing", "._glue", "._autograd", "._records",
    "._pipeline", ".settings", "._ply_format", "._ply_read", "._densify_types", "._densify_ops",
):
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


# ----------------------------------------------------------------------------- loud builds
PKG = Path(__file__).resolve().parents[1]


def _cmake() -> str | None:
    found = shutil.which("cmake")
    if found is None:
        try:
            import cmake  # the PyPI package scikit-build-core builds with

            found = str(Path(cmake.CMAKE_BIN_DIR) / "cmake")
        except ImportError:
            return None
    return found


def _configure(build: Path, path: str, **env: str) -> subprocess.CompletedProcess:
    """Configure (not build) the extension with RG_CUDA=AUTO in ``build`` with ``PATH=path``."""
    import pybind11

    cmd = [
        _cmake(), "-S", str(PKG), "-B", str(build), "-DRG_CUDA=AUTO", "-DCMAKE_CUDA_ARCHITECTURES=80",
        f"-Dpybind11_DIR={pybind11.get_cmake_dir()}", f"-DPython_EXECUTABLE={sys.executable}",
    ]  # fmt: skip
    if shutil.which("ninja", path=path):
        cmd += ["-G", "Ninja"]
    full_env = {"PATH": path, "HOME": str(Path.home()), **env}
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=600)


def _path_without_nvcc() -> str:
    dirs = [d for d in os.environ.get("PATH", "").split(":") if d]
    return ":".join(d for d in dirs if not (Path(d) / "nvcc").exists())


_LOUD = "building WITHOUT the CUDA backend although this machine has an NVIDIA driver"


@pytest.mark.skipif(_cmake() is None or not CSRC.is_dir(), reason="needs cmake and a source checkout")
def test_auto_without_nvcc_warns_loudly_only_where_a_driver_is(tmp_path: Path) -> None:
    driver = tmp_path / "nvidia-version"  # stands for /proc/driver/nvidia/version
    driver.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module (fake)\n")
    res = _configure(tmp_path / "a", _path_without_nvcc(), RG_NVIDIA_DRIVER_PROBE=str(driver))
    assert res.returncode == 0, res.stderr[-2000:]
    assert _LOUD in " ".join(res.stderr.split()), res.stderr[-2000:]
    assert "CMake Warning" in res.stderr and "RG_CUDA=ON" in res.stderr
    info = (tmp_path / "a" / "rg_build_info.h").read_text()
    assert 'RG_BUILD_CUDA_SKIPPED "RG_CUDA=AUTO found an NVIDIA driver but no working CUDA compiler' in info
    # no driver: a status line only
    res = _configure(tmp_path / "b", _path_without_nvcc(), RG_NVIDIA_DRIVER_PROBE=str(tmp_path / "none"))
    assert res.returncode == 0 and _LOUD not in " ".join(res.stderr.split())
    assert "no CUDA compiler found, building the CPU backend only" in res.stdout


@pytest.mark.skipif(
    _cmake() is None or not CSRC.is_dir() or shutil.which("nvcc") is None,
    reason="needs cmake, nvcc and a source checkout",
)
def test_a_cached_notfound_cuda_compiler_is_looked_up_again(tmp_path: Path) -> None:
    """check_language caches NOTFOUND; a later configure of the same build directory with nvcc
    on PATH must find it (and build the CUDA backend), not stay CPU-only."""
    build = tmp_path / "build"
    res = _configure(build, _path_without_nvcc(), RG_NVIDIA_DRIVER_PROBE=str(tmp_path / "none"))
    assert res.returncode == 0, res.stderr[-2000:]
    assert re.search(r"CMAKE_CUDA_COMPILER:\w+=.*NOTFOUND", (build / "CMakeCache.txt").read_text())
    res = _configure(build, os.environ["PATH"])
    assert res.returncode == 0, res.stderr[-2000:]
    assert "rigged_gaussians: CUDA backend for architectures 80" in res.stdout, res.stdout[-2000:]
    assert 'RG_BUILD_CUDA_ARCHITECTURES "80"' in (build / "rg_build_info.h").read_text()
