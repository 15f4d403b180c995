"""Which GPUs the CUDA backend runs on, its debug mode and the NaN-opacity policy, on the CPU.

- The built ``CMAKE_CUDA_ARCHITECTURES`` (``build_info()``) against a device's compute
  capability: machine code (``NN-real``) runs on its major version at an equal or higher minor,
  PTX (``NN`` or ``NN-virtual``) on any equal or newer GPU. With mocked devices: a T4 (7.5) on
  the old default ``80;86;89;90`` falls back from ``auto`` with one warning naming
  ``CMAKE_CUDA_ARCHITECTURES`` and the rebuild command, and ``backend="cuda"`` raises it; the
  new default runs it, and a Blackwell (10.0, 12.0) through the PTX of compute_90.
- ``RG_CUDA_DEBUG=1`` reaches every CUDA record (``sync_debug``), never a CPU one. The C++ side
  (each op synchronises and raises naming itself) runs under the host emulation
  (``csrc/cuda/host_check/check_robust.cpp``).
- ``check_finite=False`` with a NaN opacity: the C++ CPU backend and the reference both cull the
  Gaussian (radii 0, never blended) and agree with the render without it.
"""

from __future__ import annotations

import types
import warnings
from typing import Any

import pytest
import rigged_gaussians as rg
import torch
from rigged_gaussians import _backend, testing
from rigged_gaussians.settings import RasterSettings

HAS_EXT = _backend._extension() is not None
needs_ext = pytest.mark.skipif(not HAS_EXT, reason="rigged_gaussians._C is not built")

NEW_DEFAULT = "75-real,80-real,86-real,89-real,90"  # CMakeLists.txt's default, as build_info records it
OLD_DEFAULT = "80,86,89,90"


def _runs(archs: str, cc: tuple[int, int]) -> bool | None:
    parsed = [_backend._CudaArch.parse(e) for e in archs.split(",")]
    if any(p is None for p in parsed):
        return None
    return any(p.runs_on(*cc) for p in parsed if p is not None)


@pytest.mark.parametrize(
    ("archs", "cc", "runs"),
    [
        (NEW_DEFAULT, (7, 5), True),  # T4: its own SASS
        (NEW_DEFAULT, (8, 7), True),  # Orin: sm_86 SASS runs on 8.7
        (NEW_DEFAULT, (9, 0), True),
        (NEW_DEFAULT, (10, 0), True),  # B200: JIT from compute_90 PTX
        (NEW_DEFAULT, (12, 0), True),  # RTX 50xx: the same
        (NEW_DEFAULT, (7, 0), False),  # V100: below the lowest SASS, older than the PTX
        (NEW_DEFAULT, (6, 1), False),
        (OLD_DEFAULT, (7, 5), False),  # the bug: T4 on the old default
        (OLD_DEFAULT, (8, 9), True),
        ("80-real,86-real", (9, 0), False),  # no PTX: nothing newer than sm_8x runs
        ("80-real,86-real", (8, 9), True),
        ("86-real", (8, 0), False),  # SASS never runs on a lower minor
        ("75-virtual", (8, 6), True),  # PTX only
        ("75-virtual", (7, 2), False),
        ("90a-real", (9, 0), True),  # arch-specific: this GPU only
        ("90a-real", (10, 0), False),
        ("100f-real", (10, 3), True),
        ("native", (7, 5), None),  # unknown: not judged
        ("all-major", (7, 5), None),
    ],
)
def test_architecture_rules(archs: str, cc: tuple[int, int], runs: bool | None) -> None:
    assert _runs(archs, cc) is runs


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A CUDA build of ``_C`` built for the architectures given, on mocked GPUs (capability per
    index); returns the setter ``fake(archs, {index: (major, minor)})``."""

    def fake(archs: str, caps: dict[int, tuple[int, int]]) -> None:
        ext = types.ModuleType("fake_C")
        ext.rasterize_to_pixels_fwd_cuda = lambda *a: None  # type: ignore[attr-defined]
        ext.build_info = lambda: {"backends": ["cpu", "cuda"], "cuda_architectures": archs}  # type: ignore[attr-defined]
        monkeypatch.setattr(_backend, "_extension", lambda: ext)
        monkeypatch.setattr(_backend, "_native_cuda_devices", lambda e: len(caps))
        monkeypatch.setattr(_backend, "_device_capability", lambda i: caps[i])
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(
            torch.cuda, "get_device_name", lambda i: "Tesla T4" if caps[i] == (7, 5) else "GPU"
        )
        monkeypatch.setattr(_backend, "_warned_fallback", False)

    return fake


def test_a_t4_on_the_old_default_falls_back_once_naming_the_rebuild(fake_gpu: Any) -> None:
    fake_gpu(OLD_DEFAULT, {0: (7, 5)})
    assert not rg.cuda_available() and not rg.cuda_available(0) and not rg.cuda_available("cuda:0")
    with pytest.warns(RuntimeWarning) as record:
        assert _backend._resolve("auto", torch.device("cuda", 0)) == "torch"
    msg = str(record[0].message)
    assert "cuda:0 (Tesla T4) has compute capability 7.5" in msg
    assert "CMAKE_CUDA_ARCHITECTURES=80;86;89;90 (no machine code" in msg
    assert (
        "`CMAKE_CUDA_ARCHITECTURES=75 RG_CUDA=ON pip install -v --force-reinstall --no-deps "
        "packages/rigged-gaussians`" in msg
    )
    assert "pure-PyTorch reference" in msg and "\n" not in msg
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _backend._resolve("auto", torch.device("cuda", 0)) == "torch"  # once only
    with pytest.raises(
        RuntimeError, match=r"^backend='cuda' cannot run here: cuda:0 \(Tesla T4\).*CMAKE_CUDA_ARCH"
    ):
        _backend._resolve("cuda", torch.device("cuda", 0))


def test_the_new_default_runs_turing_to_blackwell(fake_gpu: Any) -> None:
    fake_gpu(NEW_DEFAULT, {0: (7, 5), 1: (9, 0), 2: (12, 0), 3: (7, 0)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for i in range(3):
            assert rg.cuda_available(i)
            assert _backend._resolve("auto", torch.device("cuda", i)) == "cuda"
            assert _backend._resolve("cuda", torch.device("cuda", i)) == "cuda"
    # the device of the tensors decides, not the current one (cuda:0 here)
    assert rg.cuda_available() and not rg.cuda_available(torch.device("cuda:3"))
    with pytest.raises(
        RuntimeError, match=r"cuda:3 \(GPU\) has compute capability 7.0.*CMAKE_CUDA_ARCHITECTURES=70 "
    ):
        _backend._resolve("cuda", torch.device("cuda", 3))


def test_unknown_architectures_are_not_judged(fake_gpu: Any) -> None:
    fake_gpu("native", {0: (6, 0)})
    assert rg.cuda_available()  # the first launch says, as before
    with pytest.raises(ValueError, match="^device: expected a CUDA device"):
        rg.cuda_available("cpu")


@needs_ext
@pytest.mark.parametrize(
    ("value", "on"), [("1", True), ("yes", True), ("0", False), ("", False), (None, False)]
)
def test_cuda_debug_reaches_every_cuda_record(
    monkeypatch: pytest.MonkeyPatch, value: str | None, on: bool
) -> None:
    from rigged_gaussians._glue import NativeOps

    class _Stream:
        cuda_stream = 0

    monkeypatch.setattr(torch.cuda, "current_stream", lambda device: _Stream())
    if value is None:
        monkeypatch.delenv("RG_CUDA_DEBUG", raising=False)
    else:
        monkeypatch.setenv("RG_CUDA_DEBUG", value)
    for kind in ("IsectArgs", "SortArgs", "RasterArgs", "ProjArgs", "FramesArgs", "DeformArgs"):
        rec = NativeOps("cuda").record(kind, torch.device("cuda:0"), RasterSettings(8, 8))
        assert rec.native.sync_debug is on, kind
        assert NativeOps("cpu").record(kind, torch.device("cpu")).native.sync_debug is False


@needs_ext
@pytest.mark.parametrize("tight", [True, False])
def test_a_nan_opacity_is_culled_by_the_cpu_backend_and_the_reference(tight: bool) -> None:
    scene = testing.random_scene(60, C=2, width=48, height=40, seed=3)
    full, _, meta = rg.rasterize(**scene, backend="cpu", tight_tiles=tight)
    k = int(torch.argmax(scene["opacities"] * meta.visible.all(0)))  # opaque and seen by both
    nan = dict(scene, opacities=scene["opacities"].clone())
    nan["opacities"][k] = float("nan")
    keep = torch.arange(60) != k
    without = {
        key: (v[keep] if isinstance(v, torch.Tensor) and v.shape[:1] == (60,) else v)
        for key, v in scene.items()
    }
    out = {}
    for backend in ("cpu", "torch"):
        rgb, alpha, meta = rg.rasterize(**nan, backend=backend, tight_tiles=tight, check_finite=False)
        ref_rgb, ref_alpha, _ = rg.rasterize(**without, backend=backend, tight_tiles=tight)
        assert torch.isfinite(rgb).all() and torch.isfinite(alpha).all(), backend
        assert (meta.radii[:, k] == 0).all() and not meta.visible[:, k].any(), backend
        torch.testing.assert_close(rgb, ref_rgb, rtol=0, atol=1e-6, msg=backend)
        torch.testing.assert_close(alpha, ref_alpha, rtol=0, atol=1e-6, msg=backend)
        out[backend] = (rgb, alpha)
    # the image changed: the Gaussian was visible before
    assert (full - out["cpu"][0]).abs().max() > 1e-2
    torch.testing.assert_close(out["cpu"][0], out["torch"][0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out["cpu"][1], out["torch"][1], rtol=1e-4, atol=1e-4)
