"""Guidance: SSIM / PSNR, target sets, the guidance base class, photometric guidance and F-SDS with
the tiny test models (CPU)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from headstudio.cameras import camera_angles
from headstudio.errors import HeadStudioError
from headstudio.train.batch_sampler import BatchSampler, TrainBatch
from headstudio.train.guidance import FSDSGuidance, Guidance, GuidanceOutput, ImageGuidance
from headstudio.train.metrics import psnr, ssim
from headstudio.train.targets import TargetSet


def _images(seed: int, b: int = 2, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(b, 3, size // 4, size // 4, generator=g)
    return torch.nn.functional.interpolate(base, size=(size, size), mode="bilinear", align_corners=False)


# ------------------------------------------------------------------------------------ SSIM


def test_ssim_is_one_for_identical_images_and_drops_with_noise():
    x = _images(0)
    assert float(ssim(x, x)) == pytest.approx(1.0, abs=1e-6)
    g = torch.Generator().manual_seed(1)
    noisy = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    very = (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    s1, s2 = float(ssim(x, noisy)), float(ssim(x, very))
    assert 0.0 < s2 < s1 < 0.99


def test_ssim_matches_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    x, y = _images(2, b=1, size=40), _images(3, b=1, size=40)
    ours = float(ssim(x, y))
    ref = metrics.structural_similarity(
        x[0].permute(1, 2, 0).double().numpy(),
        y[0].permute(1, 2, 0).double().numpy(),
        channel_axis=2,
        data_range=1.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert ours == pytest.approx(ref, abs=1e-4)


def test_ssim_is_differentiable_and_gradient_ascent_improves_it():
    y = _images(4)
    x = _images(5).requires_grad_(True)
    before = float(ssim(x.detach(), y))
    for _ in range(20):
        (g,) = torch.autograd.grad(1 - ssim(x, y), x)
        with torch.no_grad():
            x -= 0.5 * g / g.abs().max() * 0.05
    assert float(ssim(x.detach(), y)) > before + 0.1


def test_ssim_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="ssim"):
        ssim(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))


def test_psnr_known_value():
    x = torch.zeros(1, 3, 4, 4)
    assert psnr(x, x + 0.1) == pytest.approx(20.0, abs=1e-4)
    assert math.isinf(psnr(x, x))


# ------------------------------------------------------------------------------ targets


def _orbit(az: float, el: float, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    from headstudio.cameras import orbit_camera

    vm, k = orbit_camera(az, el, 0.5, 40.0, size, size, (0.0, 0.0, 0.0))
    return torch.as_tensor(vm, dtype=torch.float32), torch.as_tensor(k, dtype=torch.float32)


def _target_set(t: int = 4, size: int = 32) -> TargetSet:
    cams = [_orbit(-90.0 + 60.0 * i, 10.0 * i, size) for i in range(t)]
    g = torch.Generator().manual_seed(7)
    return TargetSet(
        images=torch.rand(t, size, size, 3, generator=g),
        viewmats=torch.stack([c[0] for c in cams]),
        Ks=torch.stack([c[1] for c in cams]),
        flame={"expression": torch.randn(t, 10, generator=g), "jaw_pose": torch.randn(t, 3, generator=g)},
    )


def test_camera_angles_invert_orbit_camera():
    for az, el in [(0.0, 0.0), (45.0, 20.0), (-120.0, -25.0), (170.0, 5.0)]:
        vm, _ = _orbit(az, el)
        a, e = camera_angles(vm)
        assert float(a) == pytest.approx(az, abs=1e-3)
        assert float(e) == pytest.approx(el, abs=1e-3)


def test_target_set_save_load_round_trip(tmp_path):
    ts = _target_set()
    ts.save(tmp_path / "targets")
    assert sorted(p.name for p in (tmp_path / "targets" / "images").iterdir())[0] == "000000.png"
    back = TargetSet.load(tmp_path / "targets")
    assert len(back) == len(ts)
    assert torch.equal(back.viewmats, ts.viewmats) and torch.equal(back.Ks, ts.Ks)
    assert set(back.flame) == {"expression", "jaw_pose"}
    assert torch.equal(back.flame["expression"], ts.flame["expression"])
    assert torch.equal(back.backgrounds, torch.ones(4, 3))
    assert (back.images - ts.images).abs().max() <= 0.5 / 255 + 1e-6  # 8-bit PNG


def test_target_set_errors(tmp_path):
    with pytest.raises(HeadStudioError, match="targets.npz"):
        TargetSet.load(tmp_path)
    with pytest.raises(HeadStudioError, match="viewmats"):
        TargetSet(torch.zeros(2, 8, 8, 3), torch.zeros(3, 4, 4), torch.zeros(2, 3, 3), {})
    with pytest.raises(HeadStudioError, match="rows"):
        TargetSet(
            torch.zeros(2, 8, 8, 3), torch.zeros(2, 4, 4), torch.zeros(2, 3, 3), {"x": torch.zeros(3, 1)}
        )


class _Size:
    """Stands in for the trainer's BatchSampler: only its render size is read."""

    width = height = 16


def test_image_guidance_batch_and_loss():
    ts = _target_set(t=4, size=32)
    guid = ImageGuidance(ts)
    assert isinstance(guid, Guidance) and guid.loss_terms == ("loss_l1", "loss_ssim")
    b1 = guid.sample_batch(_Size(), 3, torch.Generator().manual_seed(0))
    b2 = guid.sample_batch(_Size(), 3, torch.Generator().manual_seed(0))
    assert torch.equal(b1.target_indices, b2.target_indices)
    assert len(set(b1.target_indices.tolist())) == 3  # distinct targets while B <= T
    idx = b1.target_indices
    assert b1.viewmats.shape == (3, 1, 4, 4) and b1.backgrounds.shape == (3, 1, 3)
    # intrinsics rescaled from 32 to 16 pixels
    assert torch.allclose(b1.Ks[:, 0, :2], ts.Ks[idx, :2] / 2)
    assert torch.equal(b1.flame["jaw_pose"], ts.flame["jaw_pose"][idx])
    az, _ = camera_angles(ts.viewmats[idx])
    assert torch.allclose(b1.azimuth_deg, az)

    # at full size the exact targets give zero loss; anything else a positive differentiable one
    b = guid.batch_for(torch.tensor([2, 0]), 32, 32)
    exact = ts.images[[2, 0]].permute(0, 3, 1, 2)
    verts = torch.zeros(2, 5, 3)  # the image guidance does not read the mesh
    out = guid(exact.clone(), b, 1, verts)
    assert set(out.losses) == {"loss_l1", "loss_ssim"}
    assert all(float(v) == pytest.approx(0.0, abs=1e-6) for v in out.losses.values())
    x = torch.full_like(exact, 0.5, requires_grad=True)
    out = guid(x, b, 1, verts)
    assert (
        float((0.8 * out.losses["loss_l1"] + 0.2 * out.losses["loss_ssim"]).detach()) > 0.05
        and not out.skipped
    )
    assert float(out.losses["loss_l1"].detach()) == pytest.approx(
        float((x.detach() - exact).abs().mean()), rel=1e-5
    )
    assert float(out.losses["loss_ssim"].detach()) == pytest.approx(
        1.0 - float(ssim(x.detach(), exact)), rel=1e-6
    )
    sum(out.losses.values()).backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    # renders smaller than the targets: area-resampled targets
    small = guid(torch.zeros(2, 3, 16, 16), guid.batch_for(torch.tensor([2, 0]), 16, 16), 1, verts)
    assert out.debug["target"].shape == (2, 3, 32, 32) and small.debug["target"].shape == (2, 3, 16, 16)


def test_image_guidance_needs_target_indices():
    # (zero weights for both of its terms: test_trainer.py::test_weighted_loss_leaves_zero_weights_out)
    ts = _target_set(t=2)
    b = ImageGuidance(ts).batch_for(torch.tensor([0]), 32, 32)
    b.target_indices = None
    with pytest.raises(HeadStudioError, match="sample_batch"):
        ImageGuidance(ts)(torch.zeros(1, 3, 32, 32), b, 1, torch.zeros(1, 5, 3))


def test_guidance_base_class_defaults():
    from flame_core.motion import procedural_talking_motion
    from headstudio.cameras import CameraSampler
    from headstudio.config import CameraConfig
    from headstudio.train.animation_sampler import AnimationSampler

    class Plain(Guidance):
        loss_terms = ("loss_plain",)

        def __call__(self, renders, batch, step, vertices):
            return GuidanceOutput({"loss_plain": renders.mean()})

    g = Plain()
    sampler = BatchSampler(
        CameraSampler(CameraConfig(), 16, 16, (0.0, 0.0, 0.0)),
        AnimationSampler(procedural_talking_motion(num_frames=20), 10),
        10,
    )
    a = g.sample_batch(sampler, 3, torch.Generator().manual_seed(0))
    b = sampler.sample(3, torch.Generator().manual_seed(0))
    assert torch.equal(a.viewmats, b.viewmats) and torch.equal(a.flame["expression"], b.flame["expression"])
    assert a.viewmats.shape == (3, 1, 4, 4) and a.backgrounds.shape == (3, 1, 3)
    assert g.state_dict() == {} and g.to("cpu") is g
    g.load_state_dict({})
    g.set_default_prompt("ignored")
    with pytest.raises(NotImplementedError):
        Guidance()(torch.zeros(1, 3, 8, 8), a, 1, torch.zeros(1, 5, 3))


# ------------------------------------------------------------------------------ F-SDS


@pytest.fixture(scope="module")
def tiny_fsds():
    from flame_core.model import FlameModel
    from fsds_guidance.testing import tiny_components
    from headstudio.config import GuidanceConfig

    head = FlameModel.procedural(num_shape=10, num_expression=10)
    guid = FSDSGuidance(
        GuidanceConfig(), head, "cpu", models=tiny_components(), prompt="a portrait", image_size=64, seed=0
    )
    return head, guid


def _fsds_batch(head, azimuths: list[float], size: int = 32) -> tuple[TrainBatch, torch.Tensor]:
    """A batch of cameras around the neutral head, with its posed vertices ``[B, V, 3]``."""
    from headstudio.cameras import head_target

    with torch.no_grad():
        verts = head(expression=torch.zeros(len(azimuths), 10)).vertices
    target = head_target(verts[0])
    from headstudio.cameras import orbit_camera

    cams = [orbit_camera(a, 0.0, 0.5, 40.0, size, size, target) for a in azimuths]
    vm = torch.stack([torch.as_tensor(c[0]) for c in cams])[:, None].float()
    ks = torch.stack([torch.as_tensor(c[1]) for c in cams])[:, None].float()
    batch = TrainBatch(
        viewmats=vm,
        Ks=ks,
        flame={},
        azimuth_deg=torch.tensor(azimuths),
        elevation_deg=torch.zeros(len(azimuths)),
        backgrounds=torch.ones(len(azimuths), 1, 3),
    )
    return batch, verts


def test_fsds_control_maps_follow_the_camera(tiny_fsds):
    head, guid = tiny_fsds
    batch, verts = _fsds_batch(head, [0.0, 180.0])
    ctrl = guid.control_maps(verts, batch, 32, 32)
    assert ctrl.shape == (2, 3, 64, 64)
    front = int((ctrl[0].sum(0) > 0).sum())
    back = int((ctrl[1].sum(0) > 0).sum())
    assert front > 100  # the face's landmarks are drawn
    # seen from behind the face is hidden; a few face-oval points beside the ears face sideways
    # and stay visible on the v2 skull (its temples are flatter), which F-SDS ignores anyway: such a
    # view has no eye in sight and gets no ControlNet (fsds_guidance.control.face_in_view)
    assert back < front // 5
    # drawn pixels lie in the central part of the image (the head is framed in the middle)
    ys, xs = torch.nonzero(ctrl[0].sum(0) > 0, as_tuple=True)
    assert 16 < float(xs.float().mean()) < 48 and 16 < float(ys.float().mean()) < 48


def test_fsds_loss_is_finite_and_reaches_the_renders(tiny_fsds):
    head, guid = tiny_fsds
    batch, verts = _fsds_batch(head, [0.0, 90.0])
    renders = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    state = guid.state_dict()
    out = guid(renders, batch, 10, verts)
    assert guid.loss_terms == ("loss_sds",) and set(out.losses) == {"loss_sds"}
    loss = out.losses["loss_sds"]
    assert not out.skipped and math.isfinite(float(loss.detach()))
    assert {"grad_norm", "t_mean", "n_faceless"} <= set(out.logs)
    assert out.logs["n_faceless"] == 0.0  # front and profile both show a face
    assert out.debug["control"].shape == (2, 3, 64, 64)
    loss.backward()
    assert renders.grad is not None and float(renders.grad.abs().sum()) > 0
    # the guidance's generator state restores exactly (checkpoints)
    guid.load_state_dict(state)
    again = guid(renders.detach(), batch, 10, verts)
    assert float(again.losses["loss_sds"]) == float(loss.detach())


def test_fsds_views_without_a_face_go_without_the_controlnet(tiny_fsds, monkeypatch):
    """The back view (no eye in sight) gets ControlNet weight 0, the others 1; the log counts it."""
    head, guid = tiny_fsds
    batch, verts = _fsds_batch(head, [0.0, 180.0, 90.0])
    seen = {}
    inner = guid.fsds

    def recording(*args, **kwargs):
        seen.update(kwargs)
        return inner(*args, **kwargs)

    monkeypatch.setattr(guid, "fsds", recording)
    out = guid(torch.rand(3, 3, 32, 32), batch, 10, verts)
    assert seen["control_weight"].tolist() == [1.0, 0.0, 1.0]
    assert out.logs["n_faceless"] == 1.0
    assert out.debug["control"].shape == (3, 3, 64, 64)


def test_fsds_non_finite_renders_are_skipped(tiny_fsds):
    head, guid = tiny_fsds
    batch, verts = _fsds_batch(head, [0.0])
    renders = torch.full((1, 3, 32, 32), float("nan"), requires_grad=True)
    out = guid(renders, batch, 1, verts)
    assert out.skipped
    assert float(out.losses["loss_sds"].detach()) == 0.0


def test_fsds_needs_vertices_prompt_and_landmarks(tiny_fsds):
    head, guid = tiny_fsds
    batch, verts = _fsds_batch(head, [0.0])
    with pytest.raises(HeadStudioError, match="vertices"):
        guid(torch.rand(1, 3, 32, 32), batch, 1, torch.cat([verts, verts]))  # two meshes for one render

    class NoLandmarks:
        landmark_embedding = None
        faces = head.faces

    from headstudio.config import GuidanceConfig

    with pytest.raises(HeadStudioError, match="landmark"):
        FSDSGuidance(GuidanceConfig(), NoLandmarks(), "cpu", models=guid.models)


def test_fsds_dtype_names():
    from headstudio.train.guidance import _resolve_dtype

    assert _resolve_dtype("float16", torch.device("cpu")) is torch.float16
    assert _resolve_dtype("auto", torch.device("cpu")) is None
    with pytest.raises(HeadStudioError, match="dtype"):
        _resolve_dtype("int8", torch.device("cpu"))


def test_target_images_uint8_round_trip_is_close():
    # guards the PNG quantisation assumption used by TargetSet.save/load
    x = np.linspace(0, 1, 256, dtype=np.float32)
    q = np.round(x * 255) / 255
    assert np.abs(q - x).max() <= 0.5 / 255 + 1e-7
