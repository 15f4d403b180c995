"""Orbit cameras and the training camera sampler."""

from __future__ import annotations

import math

import pytest
import torch
from headstudio.cameras import CameraSampler, head_target, intrinsics, orbit_camera
from headstudio.config import CameraConfig
from headstudio.errors import HeadStudioError


def project(vm: torch.Tensor, K: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel ``[.., 2]`` and camera depth ``[..]`` of world points ``p [.., 3]``."""
    cam = p @ vm[:3, :3].T + vm[:3, 3]
    uv = cam @ K.T
    return uv[..., :2] / uv[..., 2:], cam[..., 2]


@pytest.mark.parametrize("az", [0.0, 37.0, 90.0, -120.0, 180.0])
@pytest.mark.parametrize("el", [-30.0, 0.0, 25.0])
def test_target_at_image_centre_and_rigid(az: float, el: float) -> None:
    target = torch.tensor([0.01, 0.02, -0.03])
    vm, K = orbit_camera(az, el, 0.6, 50.0, 64, 48, target)
    assert vm.shape == (4, 4) and K.shape == (3, 3) and vm.dtype == torch.float32
    uv, z = project(vm, K, target)
    torch.testing.assert_close(uv, torch.tensor([32.0, 24.0]), atol=1e-4, rtol=0)
    assert z.item() == pytest.approx(0.6, abs=1e-5)
    R = vm[:3, :3]
    torch.testing.assert_close(R @ R.T, torch.eye(3), atol=1e-5, rtol=0)
    assert torch.linalg.det(R).item() == pytest.approx(1.0, abs=1e-5)
    # the camera centre is at the documented spherical position
    eye = -R.T @ vm[:3, 3]
    a, e = math.radians(az), math.radians(el)
    expected = target + 0.6 * torch.tensor(
        [math.cos(e) * math.sin(a), math.sin(e), math.cos(e) * math.cos(a)]
    )
    torch.testing.assert_close(eye, expected, atol=1e-5, rtol=0)


def test_front_view_sees_the_face_upright() -> None:
    vm, K = orbit_camera(0.0, 0.0, 0.5, 40.0, 64, 64, (0.0, 0.0, 0.0))
    (_, z_centre), (_, z_nose) = project(vm, K, torch.zeros(3)), project(vm, K, torch.tensor([0.0, 0.0, 0.1]))
    assert z_nose < z_centre  # the face (+z side) is in front of the head centre
    uv_top, _ = project(vm, K, torch.tensor([0.0, 0.1, 0.0]))
    uv_left, _ = project(vm, K, torch.tensor([0.1, 0.0, 0.0]))
    assert uv_top[1] < 32  # world up is image up (OpenCV y down)
    assert uv_left[0] > 32  # the subject's left (+x) is on the viewer's right
    # behind the head: the back of the head is in front, mirrored left/right
    vm_b, _ = orbit_camera(180.0, 0.0, 0.5, 40.0, 64, 64, (0.0, 0.0, 0.0))
    (_, zb_nose) = project(vm_b, K, torch.tensor([0.0, 0.0, 0.1]))
    assert zb_nose > 0.5
    # elevation > 0 looks down: the top of the head comes nearer
    vm_up, _ = orbit_camera(0.0, 30.0, 0.5, 40.0, 64, 64, (0.0, 0.0, 0.0))
    assert project(vm_up, K, torch.tensor([0.0, 0.1, 0.0]))[1] < 0.5


def test_fov_sets_the_focal_length() -> None:
    K = intrinsics(90.0, 100, 80)
    assert K[1, 1].item() == pytest.approx(40.0, rel=1e-5) and K[0, 0].item() == pytest.approx(40.0, rel=1e-5)
    assert K[0, 2].item() == 50.0 and K[1, 2].item() == 40.0
    vm, K = orbit_camera(0.0, 0.0, 1.0, 60.0, 64, 64)
    # a point at the top edge of the vertical field of view projects to the top image border
    top = torch.tensor([0.0, math.tan(math.radians(30.0)) * 1.0, 0.0])
    assert project(vm, K, top)[0][1].item() == pytest.approx(0.0, abs=1e-3)


def _look_at(az_deg: float, el_deg: float, distance: float, fovy_deg: float, width: int, height: int, target):
    """An independent look-at construction of the same convention (FLAME y-up, azimuth 0 on +z,
    OpenCV x right / y down / z forward): the oracle for ``orbit_camera``."""
    tgt = torch.as_tensor(target, dtype=torch.float32).reshape(3)
    az, el = math.radians(az_deg), math.radians(el_deg)
    direction = [math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)]
    eye = tgt + distance * torch.tensor(direction)
    forward = (tgt - eye) / (tgt - eye).norm()
    right = torch.linalg.cross(forward, torch.tensor([0.0, 1.0, 0.0]))
    right = right / right.norm().clamp_min(1e-12)
    down = torch.linalg.cross(forward, right)
    rot = torch.stack([right, down, forward])  # rows: camera axes in world coordinates
    viewmat = torch.eye(4)
    viewmat[:3, :3] = rot
    viewmat[:3, 3] = -rot @ eye
    f = 0.5 * height / math.tan(math.radians(fovy_deg) / 2)
    K = torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])
    return viewmat, K


def test_matches_an_independent_look_at() -> None:
    for az, el in ((0.0, 0.0), (45.0, 20.0), (-100.0, -10.0)):
        vm, K = orbit_camera(az, el, 0.7, 45.0, 40, 30, (0.0, 0.05, 0.0))
        vm2, K2 = _look_at(az, el, 0.7, 45.0, 40, 30, (0.0, 0.05, 0.0))
        torch.testing.assert_close(vm, vm2, atol=1e-5, rtol=0)
        torch.testing.assert_close(K, K2, atol=1e-4, rtol=0)


@pytest.mark.parametrize("bad", [dict(distance=0.0), dict(fovy_deg=180.0), dict(width=0)])
def test_orbit_camera_rejects_bad_values(bad: dict) -> None:
    kw = dict(azimuth_deg=0.0, elevation_deg=0.0, distance=1.0, fovy_deg=40.0, width=8, height=8) | bad
    with pytest.raises(HeadStudioError):
        orbit_camera(**kw)


def test_sampler_stratifies_azimuth_and_respects_ranges() -> None:
    cfg = CameraConfig()
    sampler = CameraSampler(cfg, 32, 32, target=(0.0, 0.0, 0.0))
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        cams = sampler.sample(8, g)
        assert cams.viewmats.shape == (8, 1, 4, 4) and cams.Ks.shape == (8, 1, 3, 3)
        # one azimuth in each of the 8 strata of [-180, 180)
        strata = torch.floor((cams.azimuth_deg + 180.0) / 45.0).long()
        assert strata.tolist() == list(range(8))
        assert ((cams.elevation_deg >= -30) & (cams.elevation_deg <= 30)).all()
        assert ((cams.fovy_deg >= 40) & (cams.fovy_deg <= 70)).all()
        d = cams.distance / cfg.scene_scale
        assert ((d >= 1.5) & (d <= 2.0)).all()
        # the camera positions agree with the sampled spherical coordinates
        R, t = cams.viewmats[:, 0, :3, :3], cams.viewmats[:, 0, :3, 3]
        eye = -(R.transpose(1, 2) @ t[:, :, None])[:, :, 0]
        torch.testing.assert_close(eye.norm(dim=-1), cams.distance, atol=1e-5, rtol=1e-5)
        el = torch.rad2deg(torch.asin(eye[:, 1] / eye.norm(dim=-1)))
        torch.testing.assert_close(el, cams.elevation_deg, atol=1e-3, rtol=0)
        az = torch.rad2deg(torch.atan2(eye[:, 0], eye[:, 2]))
        diff = torch.remainder(az - cams.azimuth_deg + 180.0, 360.0) - 180.0
        assert diff.abs().max() < 1e-3
        f = cams.Ks[:, 0, 1, 1]
        torch.testing.assert_close(f, 16.0 / torch.tan(torch.deg2rad(cams.fovy_deg) / 2))
    # the jitter inside a stratum covers it (not always its start)
    az = torch.stack([sampler.sample(8, g).azimuth_deg for _ in range(200)])
    within = (az + 180.0) % 45.0
    assert within.min() < 3.0 and within.max() > 42.0


def test_sampler_is_deterministic_and_multi_camera() -> None:
    s = CameraSampler(CameraConfig(), 16, 16, target=(0.0, 0.0, 0.0))
    a = s.sample(4, torch.Generator().manual_seed(3), cameras_per_pose=2)
    b = s.sample(4, torch.Generator().manual_seed(3), cameras_per_pose=2)
    assert torch.equal(a.viewmats, b.viewmats) and a.viewmats.shape == (4, 2, 4, 4)
    assert a.azimuth_deg.shape == (8,)


def test_auto_target_is_the_head_centre() -> None:
    verts = torch.tensor([[-1.0, -2.0, 0.0], [1.0, 4.0, 2.0], [0.0, 0.0, 1.0]])
    torch.testing.assert_close(head_target(verts), torch.tensor([0.0, 1.0, 1.0]))
    s = CameraSampler(CameraConfig(target="auto"), 16, 16, vertices=verts)
    torch.testing.assert_close(s.target, torch.tensor([0.0, 1.0, 1.0]))
    with pytest.raises(HeadStudioError, match="auto"):
        CameraSampler(CameraConfig(target="auto"), 16, 16)
    s = CameraSampler(CameraConfig(target=(0.0, 0.5, 0.0)), 16, 16)
    torch.testing.assert_close(s.target, torch.tensor([0.0, 0.5, 0.0]))
