"""Cameras: look-at orbit cameras and the random training-camera sampler.

Conventions (gsplat's, docs/ARCHITECTURE.md): ``viewmats`` map world to camera, OpenCV camera axes
(x right, y down, z forward), pinhole intrinsics ``K`` with the principal point at the image
centre (pixel centres at +0.5, so the centre is ``(W/2, H/2)``). The world is FLAME's: metres,
y up, the face looks along +z. Azimuth 0 puts the camera on the +z side looking at the face,
azimuth +90° on the +x side; positive elevation is above the head, looking down.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .config import CameraConfig
from .errors import HeadStudioError

__all__ = [
    "orbit_camera",
    "orbit_cameras",
    "intrinsics",
    "camera_angles",
    "CameraBatch",
    "CameraSampler",
    "head_target",
]


def intrinsics(fovy_deg: torch.Tensor | float, width: int, height: int) -> torch.Tensor:
    """Pinhole ``K [..., 3, 3]`` with square pixels, vertical field of view ``fovy_deg [...]``."""
    fovy = torch.as_tensor(fovy_deg, dtype=torch.float32)
    f = 0.5 * height / torch.tan(torch.deg2rad(fovy) / 2)
    K = torch.zeros(*fovy.shape, 3, 3)
    K[..., 0, 0] = f
    K[..., 1, 1] = f
    K[..., 0, 2] = width / 2
    K[..., 1, 2] = height / 2
    K[..., 2, 2] = 1.0
    return K


def orbit_cameras(
    azimuth_deg: torch.Tensor,
    elevation_deg: torch.Tensor,
    distance: torch.Tensor,
    target: torch.Tensor,
) -> torch.Tensor:
    """Look-at world→camera matrices ``[N, 4, 4]`` for cameras on spheres around ``target``.

    Args:
        azimuth_deg: ``[N]`` degrees (0: on +z looking at the face; 90: on +x).
        elevation_deg: ``[N]`` degrees (positive: above, looking down); kept inside ±89.9°
            so the up vector stays defined.
        distance: ``[N]`` distance to the target.
        target: ``[3]`` or ``[N, 3]`` look-at point.

    Returns:
        ``viewmats [N, 4, 4]`` float32, OpenCV camera convention, world up (+y) is image up.
    """
    az = torch.deg2rad(torch.as_tensor(azimuth_deg, dtype=torch.float32).reshape(-1))
    el = torch.deg2rad(torch.as_tensor(elevation_deg, dtype=torch.float32).reshape(-1).clamp(-89.9, 89.9))
    dist = torch.as_tensor(distance, dtype=torch.float32).reshape(-1)
    n = az.shape[0]
    tgt = torch.as_tensor(target, dtype=torch.float32).reshape(-1, 3).expand(n, 3)
    offset = torch.stack([el.cos() * az.sin(), el.sin(), el.cos() * az.cos()], dim=-1)
    eye = tgt + dist[:, None] * offset
    forward = -offset  # unit: from the eye to the target
    up = torch.tensor([0.0, 1.0, 0.0]).expand(n, 3)
    right = torch.linalg.cross(forward, up)
    right = right / right.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    down = torch.linalg.cross(forward, right)
    rot = torch.stack([right, down, forward], dim=1)  # rows: camera axes in world coordinates
    viewmats = torch.zeros(n, 4, 4)
    viewmats[:, :3, :3] = rot
    viewmats[:, :3, 3] = -(rot @ eye[:, :, None])[:, :, 0]
    viewmats[:, 3, 3] = 1.0
    return viewmats


def orbit_camera(
    azimuth_deg: float,
    elevation_deg: float,
    distance: float,
    fovy_deg: float,
    width: int,
    height: int,
    target: torch.Tensor | Sequence[float] = (0.0, 0.0, 0.0),
) -> tuple[torch.Tensor, torch.Tensor]:
    """One look-at camera on a sphere around ``target``.

    Returns:
        ``(viewmat [4, 4] world→camera (OpenCV), K [3, 3])``, float32.

    Raises:
        HeadStudioError: non-positive distance, size or a field of view outside (0°, 180°).
    """
    if not distance > 0:
        raise HeadStudioError(f"camera distance must be positive, got {distance}.")
    if not 0 < fovy_deg < 180:
        raise HeadStudioError(f"camera fovy_deg must be in (0, 180) degrees, got {fovy_deg}.")
    if width < 1 or height < 1:
        raise HeadStudioError(f"image size must be positive, got {width}x{height}.")
    vm = orbit_cameras(
        torch.tensor([float(azimuth_deg)]),
        torch.tensor([float(elevation_deg)]),
        torch.tensor([float(distance)]),
        torch.as_tensor(target, dtype=torch.float32).detach().cpu(),
    )[0]
    return vm, intrinsics(float(fovy_deg), width, height)


def camera_angles(
    viewmats: torch.Tensor, target: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Azimuth and elevation (degrees) of cameras ``viewmats [..., 4, 4]`` around ``target [3]``.

    The inverse of ``cameras.orbit_camera``'s placement: azimuth 0 on +z, 90 on +x, elevation
    positive above (``+y``). Returns two tensors of shape ``[...]``.
    """
    rot, trans = viewmats[..., :3, :3], viewmats[..., :3, 3]
    centre = -(rot.transpose(-1, -2) @ trans.unsqueeze(-1)).squeeze(-1)
    if target is not None:
        centre = centre - target.to(centre)
    az = torch.rad2deg(torch.atan2(centre[..., 0], centre[..., 2]))
    el = torch.rad2deg(torch.asin((centre[..., 1] / centre.norm(dim=-1).clamp_min(1e-12)).clamp(-1, 1)))
    return az, el


def head_target(vertices: torch.Tensor) -> torch.Tensor:
    """Centre ``[3]`` of the bounding box of ``vertices [V, 3]`` (or ``[1, V, 3]``)."""
    v = vertices.detach().reshape(-1, 3).float().cpu()
    return (v.min(0).values + v.max(0).values) / 2


@dataclass
class CameraBatch:
    """Cameras of one training step: B poses × C cameras.

    Attributes:
        viewmats: ``[B, C, 4, 4]`` world→camera.
        Ks: ``[B, C, 3, 3]`` intrinsics.
        azimuth_deg: ``[B*C]`` azimuths (degrees, in the configured range).
        elevation_deg: ``[B*C]`` elevations.
        distance: ``[B*C]`` distances in metres.
        fovy_deg: ``[B*C]`` vertical fields of view.
    """

    viewmats: torch.Tensor
    Ks: torch.Tensor
    azimuth_deg: torch.Tensor
    elevation_deg: torch.Tensor
    distance: torch.Tensor
    fovy_deg: torch.Tensor

    def to(self, device: torch.device | str) -> CameraBatch:
        """Copy to ``device``."""
        return CameraBatch(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


class CameraSampler:
    """Random training cameras (docs/METHOD.md, "Training"): distance, fovy, elevation uniform in
    their ranges; azimuth stratified across the batch (the batch splits the azimuth range into equal strata,
    one jittered sample in each, so every batch sees the head from all around).

    Args:
        config: the ranges (``distance`` in scene units × ``config.scene_scale`` metres).
        width, height: image size in pixels (for ``K``).
        target: look-at point ``[3]`` in metres; ``None`` uses ``config.target``, which, when
            ``"auto"``, needs ``vertices``.
        vertices: the neutral head ``[V, 3]``, for ``target = "auto"`` (its bounding-box centre).
    """

    def __init__(
        self,
        config: CameraConfig,
        width: int,
        height: int,
        target: torch.Tensor | Sequence[float] | None = None,
        vertices: torch.Tensor | None = None,
    ) -> None:
        if width < 1 or height < 1:
            raise HeadStudioError(f"CameraSampler: image size must be positive, got {width}x{height}.")
        self.config = config
        self.width = int(width)
        self.height = int(height)
        if target is None:
            if config.target == "auto":
                if vertices is None:
                    raise HeadStudioError(
                        "CameraSampler: camera.target is 'auto'; pass the neutral head's vertices "
                        "(vertices=) or an explicit target."
                    )
                target = head_target(vertices)
            else:
                target = config.target
        self.target = torch.as_tensor(target, dtype=torch.float32).detach().cpu().reshape(3)

    @staticmethod
    def _uniform(rng: tuple[float, float], n: int, generator: torch.Generator | None) -> torch.Tensor:
        lo, hi = float(rng[0]), float(rng[1])
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    def sample(
        self, batch_size: int, generator: torch.Generator | None = None, cameras_per_pose: int = 1
    ) -> CameraBatch:
        """Draw ``batch_size`` poses × ``cameras_per_pose`` cameras (CPU tensors).

        Args:
            batch_size: B.
            generator: a CPU ``torch.Generator`` (reproducible runs); ``None`` uses the global RNG.
            cameras_per_pose: C (training uses 1).
        """
        if batch_size < 1 or cameras_per_pose < 1:
            raise HeadStudioError(
                f"CameraSampler.sample: batch_size and cameras_per_pose must be >= 1, "
                f"got {batch_size} and {cameras_per_pose}."
            )
        cfg = self.config
        n = batch_size * cameras_per_pose
        lo, hi = float(cfg.azimuth_deg[0]), float(cfg.azimuth_deg[1])
        strata = (torch.arange(n, dtype=torch.float32) + torch.rand(n, generator=generator)) / n
        azimuth = lo + (hi - lo) * strata
        elevation = self._uniform(cfg.elevation_deg, n, generator)
        distance = self._uniform(cfg.distance, n, generator) * float(cfg.scene_scale)
        fovy = self._uniform(cfg.fovy_deg, n, generator)
        viewmats = orbit_cameras(azimuth, elevation, distance, self.target)
        Ks = intrinsics(fovy, self.width, self.height)
        shape = (batch_size, cameras_per_pose)
        return CameraBatch(
            viewmats=viewmats.reshape(*shape, 4, 4),
            Ks=Ks.reshape(*shape, 3, 3),
            azimuth_deg=azimuth,
            elevation_deg=elevation,
            distance=distance,
            fovy_deg=fovy,
        )
