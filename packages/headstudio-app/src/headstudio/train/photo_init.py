"""Colour the fresh Gaussians from the photo before training.

Each Gaussian that the photo sees takes the photo's colour at its projection. "Sees" means: its
triangle faces the camera, nothing of the mesh lies in front of it (a depth buffer of the fitted
mesh, drawn far to near), and it projects inside the head mask. A Gaussian the photo does not see
takes the colour of its mirror image across the face's symmetry plane when that one is seen (the
other cheek, the other ear), and otherwise the distance-weighted colour of the nearest seen
Gaussians on the neutral head (the back of the skull continues the hair the photo shows at the
top; the nape continues the neck). Training then refines what the photo and its mirror show; what
neither shows keeps these colours (docs/METHOD.md, "Photo avatars").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree

from ..avatar import Avatar, rgb_to_sh
from .photo_views import PhotoView, _project

__all__ = ["ColourInit", "depth_buffer", "colour_from_photo"]

log = logging.getLogger(__name__)

#: a triangle counts as facing the camera above this cosine (grazing ones smear the background)
_FACING_COS = 0.2
#: a Gaussian is in front when its depth is within this of the depth buffer (scene units, m)
_DEPTH_TOL = 0.006
#: mirror partners farther apart than this (m) are not partners
_MIRROR_RADIUS = 0.006
#: neighbours averaged for the colour of an unseen Gaussian
_FILL_K = 8


@dataclass
class ColourInit:
    """What :func:`colour_from_photo` did.

    Attributes:
        seen: ``[N]`` bool, coloured from the photo.
        mirrored: ``[N]`` bool, coloured from their mirror partner.
        filled: ``[N]`` bool, coloured from the nearest seen Gaussians.
        rgb: ``[N, 3]`` the colours given.
    """

    seen: np.ndarray
    mirrored: np.ndarray
    filled: np.ndarray
    rgb: np.ndarray

    def summary(self) -> str:
        n = len(self.seen)
        return (
            f"{self.seen.sum() / n:.0%} of the Gaussians coloured from the photo, "
            f"{self.mirrored.sum() / n:.0%} "
            f"from their mirror image, {self.filled.sum() / n:.0%} from the nearest seen ones"
        )


def depth_buffer(
    vertices_px: np.ndarray, depth: np.ndarray, faces: np.ndarray, size: tuple[int, int]
) -> np.ndarray:
    """``[H, W]`` float32 nearest mesh depth per pixel (``inf`` where no triangle), drawn far to near.

    Args:
        vertices_px: ``[V, 2]`` projected vertices; depth: ``[V]`` camera depths; faces: ``[F, 3]``.
    """
    import cv2

    w, h = size
    zbuf = np.full((h, w), np.inf, np.float32)
    tri_z = depth[faces].mean(1)
    order = np.argsort(-tri_z)  # far first: nearer triangles overwrite
    pts = np.round((vertices_px[faces] - 0.5) * 16).astype(np.int32)  # pixel centres at +0.5
    ok = np.isfinite(vertices_px[faces]).all(axis=(1, 2)) & (depth[faces] > 0).all(1)
    for i in order[ok[order]]:
        cv2.fillPoly(zbuf, [pts[i]], float(tri_z[i]), lineType=cv2.LINE_8, shift=4)
    return zbuf


def _sample(image: np.ndarray, px: np.ndarray) -> np.ndarray:
    """Bilinear ``image [H, W, C]`` at ``px [N, 2]`` (clamped to the image)."""
    h, w = image.shape[:2]
    x = np.clip(px[:, 0] - 0.5, 0, w - 1)
    y = np.clip(px[:, 1] - 0.5, 0, h - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bot = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return top * (1 - fy) + bot * fy


@torch.no_grad()
def colour_from_photo(avatar: Avatar, view: PhotoView) -> ColourInit:
    """Set ``avatar``'s colours (SH band 0; higher bands zeroed) from the photo ``view`` (in place)."""
    w, h = view.size
    vm, K = view.viewmat.cpu(), view.K.cpu()
    pose = view.params().to(avatar.means.device)
    verts = avatar.pose(pose)[0].cpu().float()
    faces = avatar.head.faces.cpu().long().numpy()
    cam = verts @ vm[:3, :3].T + vm[:3, 3]
    px_v = _project(verts, vm, K).numpy()
    zbuf = depth_buffer(px_v, cam[:, 2].numpy(), faces, (w, h))

    g = avatar.world_gaussians(pose)
    means = g["means"].cpu().float()
    gcam = means @ vm[:3, :3].T + vm[:3, 3]
    gpx = _project(means, vm, K).numpy()
    fid = avatar.face_ids.cpu().numpy()
    tri = verts[torch.from_numpy(faces[fid])]  # [N, 3, 3]
    normal = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal = normal / normal.norm(dim=1, keepdim=True).clamp_min(1e-12)
    to_cam = -(means + (vm[:3, :3].T @ vm[:3, 3]))  # camera centre minus the point
    to_cam = to_cam / to_cam.norm(dim=1, keepdim=True).clamp_min(1e-12)
    facing = ((normal * to_cam).sum(1) > _FACING_COS).numpy()

    xi = np.clip(np.floor(gpx[:, 0]).astype(int), 0, w - 1)
    yi = np.clip(np.floor(gpx[:, 1]).astype(int), 0, h - 1)
    inside = (gpx[:, 0] >= 0) & (gpx[:, 0] < w) & (gpx[:, 1] >= 0) & (gpx[:, 1] < h)
    front = gcam[:, 2].numpy() <= zbuf[yi, xi] + _DEPTH_TOL
    mask = view.mask.cpu().numpy() * view.valid.cpu().numpy()
    in_mask = _sample(mask[..., None], gpx)[:, 0] > 0.5
    seen = inside & facing & front & in_mask
    rgb = np.full((len(seen), 3), 0.5, np.float32)
    rgb[seen] = _sample(view.image.cpu().numpy(), gpx[seen])

    # neutral-head positions: mirror partners and nearest neighbours
    neutral = avatar.world_gaussians()["means"].cpu().double().numpy()
    mirrored = np.zeros_like(seen)
    filled = np.zeros_like(seen)
    if seen.any():
        tree = cKDTree(neutral[seen])
        seen_rgb = rgb[seen]
        unseen = np.nonzero(~seen)[0]
        mirror_pts = neutral[unseen] * np.array([-1.0, 1.0, 1.0])
        d, j = tree.query(mirror_pts, k=1)
        hit = d < _MIRROR_RADIUS
        rgb[unseen[hit]] = seen_rgb[j[hit]]
        mirrored[unseen[hit]] = True
        rest = unseen[~hit]
        if len(rest):
            k = min(_FILL_K, int(seen.sum()))
            d, j = tree.query(neutral[rest], k=k)
            d, j = d.reshape(len(rest), k), j.reshape(len(rest), k)
            wgt = 1.0 / np.maximum(d, 1e-4) ** 2
            rgb[rest] = (seen_rgb[j] * wgt[..., None]).sum(1) / wgt.sum(1, keepdims=True)
            filled[rest] = True
    sh = avatar.sh.data
    sh.zero_()
    sh[:, 0, :] = torch.as_tensor(rgb_to_sh(torch.from_numpy(rgb)), dtype=sh.dtype, device=sh.device)
    out = ColourInit(seen, mirrored, filled, rgb)
    log.info("photo colours: %s", out.summary())
    return out
