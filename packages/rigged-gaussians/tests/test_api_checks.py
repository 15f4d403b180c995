"""The public API: exports, backend dispatch and fallback, argument checks and the NaN policy."""

from __future__ import annotations

import warnings

import pytest
import rigged_gaussians as rg
import torch
from rigged_gaussians import _backend, reference, testing

HAS_EXT = _backend._extension() is not None
needs_ext = pytest.mark.skipif(not HAS_EXT, reason="rigged_gaussians._C is not built")


def _scene(**kw):  # noqa: ANN003, ANN202
    return testing.random_scene(12, C=2, width=24, height=20, **kw)


def _rig(**kw):  # noqa: ANN003, ANN202
    return testing.random_rig(20, B=2, C=1, width=24, height=20, n_lat=3, n_lon=4, **kw)


# ----------------------------------------------------------------------------- exports
def test_exports() -> None:
    assert rg.__version__ == "0.1.0"
    for name in (
        "cuda_available", "triangle_frames", "deform", "rasterize", "render_rigged",
        "TriangleFrames", "Deformed", "RasterMeta", "reference", "strategy", "ply",
    ):  # fmt: skip
        assert hasattr(rg, name), name
    assert isinstance(rg.cuda_available(), bool)


# ----------------------------------------------------------------------------- dispatch
def test_torch_backend_is_the_reference() -> None:
    """``backend="torch"`` runs the reference's own stages (the render signature lives only in the
    API): the same image as composing them by hand."""
    from rigged_gaussians import _pipeline
    from rigged_gaussians._types import Gaussians
    from rigged_gaussians.settings import RasterSettings

    s = _scene(sh_degree=1)
    rgb, alpha, meta = rg.rasterize(**s, backend="torch")
    st = RasterSettings.from_options(s["width"], s["height"], {"sh_degree": s["sh_degree"]})
    g = Gaussians(s["means"], s["quats"], s["scales"], s["opacities"], s["colors"])
    rgb2, alpha2, _ = _pipeline.render(reference, g, s["viewmats"], s["Ks"], s.get("backgrounds"), st)
    assert torch.equal(rgb, rgb2) and torch.equal(alpha, alpha2)
    assert not hasattr(reference, "rasterize") and not hasattr(reference, "render_rigged")
    assert isinstance(meta, rg.RasterMeta) and meta.width == 24 and meta.height == 20
    assert meta["radii"] is meta.radii


@needs_ext
def test_cpu_backend_wraps_meta_and_matches_reference() -> None:
    s = _scene(backgrounds=True)
    rgb, alpha, meta = rg.rasterize(**s, backend="cpu")
    rgb2, alpha2, meta2 = rg.rasterize(**s, backend="torch")
    assert isinstance(meta, rg.RasterMeta) and (meta.width, meta.height) == (24, 20)
    torch.testing.assert_close(rgb, rgb2, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(alpha, alpha2, atol=1e-5, rtol=1e-4)
    assert torch.equal(meta.radii, meta2.radii)
    r = _rig()
    rgb, alpha, meta = rg.render_rigged(**r, backend="cpu", depth=True)
    rgb2, alpha2, meta2 = rg.render_rigged(**r, backend="torch")
    assert isinstance(meta, rg.RasterMeta) and meta.depth.shape == (2, 1, 20, 24, 1)
    assert meta2.depth is None  # rendered only when asked
    torch.testing.assert_close(rgb, rgb2, atol=1e-5, rtol=1e-4)
    fr = rg.triangle_frames(r["vertices"], r["faces"], backend="cpu")
    assert isinstance(fr, rg.TriangleFrames)
    d = rg.deform(r["means"], r["quats"], r["log_scales"], r["face_ids"], fr, backend="cpu")
    assert isinstance(d, rg.Deformed) and d.means.shape == (2, 20, 3)


@needs_ext
def test_auto_picks_cpu_for_cpu_tensors(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    from rigged_gaussians._glue import NativeOps

    real = NativeOps.triangle_frames

    def spy(self, *a):  # noqa: ANN001, ANN002, ANN202
        calls.append(self.backend)
        return real(self, *a)

    monkeypatch.setattr(NativeOps, "triangle_frames", spy)
    r = _rig()
    rg.triangle_frames(r["vertices"], r["faces"])
    assert calls == ["cpu"]


def test_auto_falls_back_to_torch_with_one_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_backend, "_extension", lambda: None)
    monkeypatch.setattr(_backend, "_warned_fallback", False)
    r = _rig()
    with pytest.warns(RuntimeWarning, match="pip install"):
        fr = rg.triangle_frames(r["vertices"], r["faces"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fr2 = rg.triangle_frames(r["vertices"], r["faces"])  # no second warning
    ref = reference.triangle_frames(r["vertices"], r["faces"])
    assert torch.equal(fr.rotations, ref.rotations) and torch.equal(fr2.centroids, ref.centroids)
    with pytest.raises(RuntimeError, match="backend='cpu' needs the compiled"):
        rg.triangle_frames(r["vertices"], r["faces"], backend="cpu")


def test_backend_errors() -> None:
    r = _rig()
    with pytest.raises(ValueError, match="backend: expected one of"):
        rg.triangle_frames(r["vertices"], r["faces"], backend="gpu")
    if not rg.cuda_available():
        with pytest.raises(RuntimeError, match="backend='cuda'"):
            rg.triangle_frames(r["vertices"], r["faces"], backend="cuda")


# ----------------------------------------------------------------------------- shapes / dtypes
@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        (
            "means",
            torch.zeros(12, 4),
            r"means: expected shape \[N,3\] or \[C,N,3\] with C=2 \(from viewmats\), got \[12,4\]",
        ),
        (
            "quats",
            torch.zeros(11, 4),
            r"quats: expected shape \[N,4\] or \[C,N,4\] with .*N=12 \(from means\), got \[11,4\]",
        ),
        ("scales", torch.zeros(3, 12, 3), r"scales: expected shape .* with C=2 \(from viewmats\), N=12"),
        ("opacities", torch.zeros(12, 1), r"opacities: expected shape \[N\] or \[C,N\]"),
        ("colors", torch.zeros(12, 4), r"colors: expected 1..3 channels"),
        ("viewmats", torch.zeros(2, 3, 4), r"viewmats: expected shape \[C,4,4\], got \[2,3,4\]"),
        ("Ks", torch.zeros(3, 3, 3), r"Ks: expected shape \[C,3,3\] with C=2"),
        ("backgrounds", torch.zeros(2, 4), r"backgrounds: expected shape \[C,D\] with C=2 .*D=3"),
        ("means", torch.zeros(12, 3, dtype=torch.float64), r"dtype torch.float64 differs from viewmats"),
        ("opacities", torch.zeros(12, dtype=torch.int64), r"opacities: expected dtype float32 or float64"),
        ("quats", torch.zeros(12, 4, device="meta"), r"quats: on device meta but viewmats is on cpu"),
        ("means", [[0.0, 0.0, 0.0]] * 12, r"means: expected a torch.Tensor, got list"),
        ("absgrad", torch.zeros(2, 12, 3), r"absgrad: expected shape \[C,N,2\]"),
    ],
)
def test_rasterize_argument_errors(key: str, value: object, match: str) -> None:
    s = _scene()
    s[key] = value
    with pytest.raises((ValueError, TypeError), match=match):
        rg.rasterize(**s, backend="torch")


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"width": 0}, r"width: expected a positive number of pixels, got 0"),
        ({"height": -3}, r"height: expected a positive number of pixels, got -3"),
        ({"width": 24.0}, r"width: expected an int, got float"),
        ({"width": True}, r"width: expected an int, got bool"),
        ({"width": 50000, "height": 50000}, r"pixels exceed the int32 range"),
        ({"sh_degree": 4}, r"sh_degree: expected None or 0..3, got 4"),
        ({"tile_size": 12}, r"tile_size: expected 8, 16, 24 or 32, got 12"),
        ({"near_plane": 0.0}, r"near_plane: expected a finite value > 0"),
        ({"far_plane": 0.001}, r"far_plane: expected > near_plane"),
        ({"eps2d": -0.1}, r"eps2d: expected a finite value >= 0"),
        ({"radius_clip": float("nan")}, r"radius_clip: expected a finite value"),
        ({"tile_sizes": 8}, r"tile_sizes: not a render option; the options are depth, eps2d"),
        ({"depth": 1}, r"depth: expected a bool, got 1"),
        ({"tight_tiles": "yes"}, r"tight_tiles: expected a bool"),
    ],
)
def test_rasterize_option_errors(kw: dict, match: str) -> None:
    s = _scene()
    s.update(kw)
    with pytest.raises((ValueError, TypeError), match=match):
        rg.rasterize(**s, backend="torch")


def test_sh_coefficient_count_checked() -> None:
    s = _scene(sh_degree=1)  # K = 4
    s["sh_degree"] = 2
    with pytest.raises(ValueError, match=r"colors: sh_degree=2 needs at least 9 SH coefficients"):
        rg.rasterize(**s, backend="torch")
    s["sh_degree"] = 0  # extra coefficients are allowed (ignored)
    rg.rasterize(**s, backend="torch")


def test_per_camera_inputs_accepted() -> None:
    s = _scene(sh_degree=1)
    for k in ("means", "quats", "scales", "opacities", "colors"):
        s[k] = s[k][None].expand(2, *s[k].shape).clone()
    rgb, _, _ = rg.rasterize(**s, backend="torch")
    s1 = _scene(sh_degree=1)
    rgb1, _, _ = rg.rasterize(**s1, backend="torch")
    torch.testing.assert_close(rgb, rgb1)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("vertices", torch.zeros(2, 10, 2), r"vertices: expected shape \[B,V,3\], got \[2,10,2\]"),
        ("faces", torch.zeros(5, 3), r"faces: expected an integer tensor"),
        ("faces", torch.tensor([[0, 1, 99]]), r"faces: index 99 out of range; expected 0 <= faces < 10"),
        ("face_ids", torch.full((20,), -1), r"face_ids: index -1 out of range"),
        ("face_ids", torch.full((20,), 16), r"face_ids: index 16 out of range; expected 0 <= face_ids < 16"),
        ("face_ids", torch.zeros(19, dtype=torch.long), r"face_ids: expected shape \[N\] with N=20"),
        ("viewmats", torch.zeros(3, 1, 4, 4), r"viewmats: expected shape \[B,C,4,4\] with B=2"),
        ("Ks", torch.zeros(2, 2, 3, 3), r"Ks: expected shape \[B,C,3,3\] with B=2 .*C=1"),
        ("log_scales", torch.zeros(20, 3, dtype=torch.float64), r"log_scales: dtype torch.float64"),
        ("absgrad", torch.zeros(1, 20, 2), r"absgrad: expected shape \[BC,N,2\] with BC=2"),
    ],
)
def test_render_rigged_argument_errors(key: str, value: object, match: str) -> None:
    r = _rig()
    r[key] = value
    with pytest.raises((ValueError, TypeError), match=match):
        rg.render_rigged(**r, backend="torch")


def test_deform_accepts_tuple_frames_and_checks_them() -> None:
    r = _rig()
    fr = rg.triangle_frames(r["vertices"], r["faces"], backend="torch")
    a = rg.deform(r["means"], r["quats"], r["log_scales"], r["face_ids"], fr, backend="torch")
    b = rg.deform(r["means"], r["quats"], r["log_scales"], r["face_ids"], tuple(fr), backend="torch")
    assert isinstance(a, rg.Deformed) and torch.equal(a.means, b.means)
    with pytest.raises(TypeError, match="frames: expected TriangleFrames"):
        rg.deform(r["means"], r["quats"], r["log_scales"], r["face_ids"], fr.centroids)
    with pytest.raises(ValueError, match=r"frames.sqrt_areas: expected shape \[B,F\] with B=2"):
        rg.deform(r["means"], r["quats"], r["log_scales"], r["face_ids"], (*tuple(fr)[:2], fr.sqrt_areas[:1]))


# ----------------------------------------------------------------------------- NaN policy
def test_non_finite_inputs_rejected() -> None:
    s = _scene()
    s["means"] = s["means"].clone()
    s["means"][3, 1] = float("nan")
    with pytest.raises(
        ValueError, match=r"means: 1 non-finite value\(s\) \(NaN or inf\), first at index \(3, 1\)"
    ):
        rg.rasterize(**s, backend="torch")
    r = _rig()
    r["vertices"] = r["vertices"].clone()
    r["vertices"][1, 2, 0] = float("inf")
    with pytest.raises(ValueError, match=r"vertices: 1 non-finite"):
        rg.render_rigged(**r, backend="torch")
    with pytest.raises(ValueError, match=r"vertices: 1 non-finite"):
        rg.triangle_frames(r["vertices"], r["faces"], backend="torch")


@pytest.mark.parametrize("sh_degree", [None, 2])
@pytest.mark.parametrize("backend", ["torch", pytest.param("cpu", marks=needs_ext)])
def test_unchecked_nan_gaussians_are_culled(backend: str, sh_degree: int | None) -> None:
    s = _scene(sh_degree=sh_degree)
    s["means"] = s["means"].clone().requires_grad_(True)
    bad = s["means"].detach().clone()
    bad[0] = float("nan")
    s2 = dict(s, means=bad.requires_grad_(True))
    rgb, alpha, meta = rg.rasterize(**s2, backend=backend, check_finite=False, depth=True)
    assert torch.isfinite(rgb).all() and torch.isfinite(alpha).all() and torch.isfinite(meta.depth).all()
    assert not meta.visible[:, 0].any()
    (rgb.sum() + alpha.sum()).backward()
    grad = s2["means"].grad
    assert torch.isfinite(grad).all() and grad[0].eq(0).all() and grad[1:].abs().sum() > 0


def test_empty_scene_renders_background() -> None:
    s = _scene(backgrounds=True)
    for k in ("means", "quats", "scales", "opacities", "colors"):
        s[k] = s[k][:0]
    rgb, alpha, meta = rg.rasterize(**s, backend="torch")
    torch.testing.assert_close(rgb, s["backgrounds"][:, None, None, :].expand(2, 20, 24, 3))
    assert alpha.eq(0).all() and meta.radii.shape == (2, 0, 2)


def test_cuda_available_needs_kernels_torch_device_and_native_runtime(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each of the three conditions is needed; the native runtime's own device count is asked."""
    import types

    def fake_ext(kernels: bool, devices: int) -> types.ModuleType:
        m = types.ModuleType("fake_C")
        m.cuda_device_count = lambda: devices  # type: ignore[attr-defined]
        if kernels:
            m.rasterize_to_pixels_fwd_cuda = lambda **kw: None  # type: ignore[attr-defined]
        return m

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    # the compute-capability check has its own tests (test_cuda_selection.py): a matching GPU here
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(_backend, "_arch_mismatch", lambda ext, index: None)
    for kernels, devices, torch_sees, want in [
        (True, 1, True, True),
        (False, 1, True, False),
        (True, 1, False, False),
        (True, 0, True, False),  # e.g. a driver older than the extension's CUDA runtime
    ]:
        ext = fake_ext(kernels, devices)
        monkeypatch.setattr(_backend, "_extension", lambda ext=ext: ext)
        monkeypatch.setattr(torch.cuda, "is_available", lambda t=torch_sees: t)
        assert rg.cuda_available() is want, (kernels, devices, torch_sees)
    monkeypatch.setattr(_backend, "_warned_fallback", False)
    with pytest.raises(RuntimeError, match="CUDA runtime finds no device"):
        _backend._resolve("cuda", torch.device("cuda"))
    with pytest.warns(RuntimeWarning, match="CUDA runtime finds no device"):
        assert _backend._resolve("auto", torch.device("cuda")) == "torch"
