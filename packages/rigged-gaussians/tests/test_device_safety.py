"""Device safety, deferred checks and the CPU-only-build warning, tested on the CPU.

- One device per call: tensors on ``cuda:0`` and ``cuda:1`` are rejected with the argument and
  both devices named (mocked CUDA tensors: a tensor subclass reporting another device).
- The CUDA records carry the inputs' device index and that device's current stream (the
  extension makes that device current for the op: ``DeviceGuard`` in csrc/cuda/device.h, run
  by the host emulation check and on a GPU by ``test_cuda_parity.py``).
- The deferred checks of a CUDA render (device-side flags raised at the intersection count's
  sync) run here on the CPU kernels: a bad face index is flagged by the kernel that meets it,
  never dereferenced, and raised naming the argument.
- CUDA tensors meeting a CPU-only build warn once, naming why (the build's recorded reason) and
  the fix.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import rigged_gaussians as rg
import torch
from rigged_gaussians import _backend, _checks, _pipeline, testing
from rigged_gaussians._types import Gaussians
from rigged_gaussians.settings import RasterSettings

HAS_EXT = _backend._extension() is not None
needs_ext = pytest.mark.skipif(not HAS_EXT, reason="rigged_gaussians._C is not built")


class _OnDevice(torch.Tensor):
    """A CPU tensor that reports another device (a mocked CUDA tensor)."""

    _fake: torch.device
    __torch_function__ = torch._C._disabled_torch_function_impl

    @property
    def device(self) -> torch.device:  # type: ignore[override]
        return self._fake


def _on(t: torch.Tensor, device: str) -> torch.Tensor:
    out = t.as_subclass(_OnDevice)
    out._fake = torch.device(device)
    return out


def test_mixed_device_indices_are_rejected_naming_both() -> None:
    s = testing.random_scene(8, C=1, width=16, height=16)
    s["means"] = _on(s["means"], "cuda:0")
    for k in ("quats", "scales", "opacities", "colors", "viewmats", "Ks"):
        s[k] = _on(s[k], "cuda:0")
    s["quats"] = _on(s["quats"], "cuda:1")
    with pytest.raises(ValueError, match=r"quats: on device cuda:1 but viewmats is on cuda:0"):
        rg.rasterize(**s)
    with pytest.raises(ValueError, match=r"b: on device cuda:1 but a is on cuda:0; put every input"):
        _checks.same_device(a=s["means"], b=s["quats"], c=None)
    assert _checks.same_device(a=s["means"], b=s["scales"]) == torch.device("cuda:0")


@needs_ext
def test_native_stages_check_devices_too() -> None:
    from rigged_gaussians._glue import NativeOps

    s = testing.random_scene(8, C=1, width=16, height=16)
    g = Gaussians(s["means"], _on(s["quats"], "cuda:1"), s["scales"], s["opacities"], s["colors"])
    with pytest.raises(ValueError, match=r"quats: on device cuda:1 but means is on cpu"):
        NativeOps("cpu").projection(g, s["viewmats"], s["Ks"], RasterSettings(16, 16))
    with pytest.raises(ValueError, match=r"the cuda backend needs cuda tensors, got them on cpu"):
        NativeOps("cuda").triangle_frames(torch.zeros(1, 3, 3), torch.zeros(1, 3, dtype=torch.int32))


@needs_ext
def test_cuda_records_carry_the_inputs_device_and_its_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """A record for tensors on cuda:1 names device 1 and cuda:1's current stream, whatever the
    current device; the deferred checks' error array rides along."""
    from rigged_gaussians._glue import NativeOps

    asked: list[torch.device] = []

    class _Stream:
        cuda_stream = 0xBEEF

    def current_stream(device: torch.device) -> _Stream:
        asked.append(device)
        return _Stream()

    monkeypatch.setattr(torch.cuda, "current_stream", current_stream)
    checks = _checks.Checks(torch.device("cpu"), deferred=True)
    rec = NativeOps("cuda", checks).record("RasterArgs", torch.device("cuda:1"), RasterSettings(40, 30))
    assert rec.native.device == 1 and rec.native.stream == 0xBEEF and asked == [torch.device("cuda:1")]
    assert rec.native.errors == checks.errors.data_ptr() and rec.native.width == 40
    cpu = NativeOps("cpu").record("RasterArgs", torch.device("cpu"))
    assert cpu.native.device == -1 and cpu.native.stream == 0 and cpu.native.errors == 0


def _deferred_render(rig: dict[str, Any]) -> None:
    """render_rigged's pipeline on the CPU kernels with the CUDA path's deferred checks."""
    from rigged_gaussians._glue import NativeOps

    checks = _checks.Checks(torch.device("cpu"), deferred=True)
    V, F = rig["vertices"].shape[1], rig["faces"].shape[0]
    checks.index_range("faces", rig["faces"], V, f"V={V} vertices")
    checks.index_range("face_ids", rig["face_ids"], F, f"F={F} triangles")
    checks.finite(vertices=rig["vertices"], means=rig["means"])
    g = Gaussians(
        rig["means"],
        rig["quats"],
        rig["log_scales"],
        rig["opacities"],
        rig["colors"],
        face_ids=rig["face_ids"],
    )
    st = RasterSettings(rig["width"], rig["height"])
    _pipeline.render_rigged(
        NativeOps("cpu", checks), rig["vertices"], rig["faces"], g, rig["viewmats"], rig["Ks"], None, st
    )


@needs_ext
def test_deferred_checks_flag_in_the_kernels_and_raise_at_the_sync() -> None:
    rig = testing.random_rig(40, B=2, C=1, width=24, height=20, n_lat=3, n_lon=4)
    _deferred_render(rig)  # clean inputs: no error
    F = rig["faces"].shape[0]
    bad = dict(rig, face_ids=rig["face_ids"].clone())
    bad["face_ids"][3] = F + 1000  # far out of range: reading it would crash
    with pytest.raises(
        ValueError, match=rf"face_ids: an index is out of range; expected 0 <= face_ids < {F}"
    ):
        _deferred_render(bad)
    bad = dict(rig, faces=rig["faces"].clone())
    bad["faces"][2, 1] = -7
    with pytest.raises(ValueError, match=r"faces: an index is out of range"):
        _deferred_render(bad)
    bad = dict(rig, means=rig["means"].clone())
    bad["means"][5, 0] = float("inf")
    with pytest.raises(ValueError, match=r"means: non-finite value\(s\).*check_finite=False skips"):
        _deferred_render(bad)


def test_deferred_checks_report_in_slot_order() -> None:
    checks = _checks.Checks(torch.device("cpu"), deferred=True)
    checks.index_range("face_ids", torch.zeros(3, dtype=torch.long), 5, "F=5 triangles")
    checks.finite(a=torch.ones(2), b=torch.tensor([1.0, float("nan")]))
    flags = checks.device_flags()
    # the error slots (faces, face_ids, isect_fill), then one flag per finite check
    assert flags.dtype == torch.int64 and flags.tolist() == [0, 0, 0, 0, 1]
    checks.raise_flagged([0, 0, 0, 0, 0])  # nothing set: no error
    checks.raise_flagged([0, 0, 1, 0, 0])  # isect_fill: raised by the CUDA op in debug mode only
    with pytest.raises(ValueError, match="^b: non-finite"):
        checks.raise_flagged(flags.tolist())
    with pytest.raises(ValueError, match="^face_ids: an index is out of range"):
        checks.raise_flagged([0, 1, 0, 0, 1])
    assert _checks.Checks(torch.device("cpu"), deferred=False).device_flags() is None


@needs_ext
def test_cuda_tensors_on_a_cpu_only_build_warn_once_naming_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    if hasattr(_backend._extension(), "rasterize_to_pixels_fwd_cuda"):
        pytest.skip("this build has the CUDA backend")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(_backend, "_warned_fallback", False)
    skipped = rg.build_info()["cuda_skipped"]
    with pytest.warns(RuntimeWarning) as record:
        assert _backend._resolve("auto", torch.device("cuda", 0)) == "torch"
    msg = str(record[0].message)
    assert "built without the CUDA backend" in msg and skipped in msg
    assert "RG_CUDA=ON pip install -v packages/rigged-gaussians" in msg and "nvcc on PATH" in msg
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _backend._resolve("auto", torch.device("cuda", 0))  # once only
    with pytest.raises(RuntimeError, match="backend='cuda' needs rigged_gaussians._C built with CUDA"):
        _backend._resolve("cuda", torch.device("cuda", 0))
