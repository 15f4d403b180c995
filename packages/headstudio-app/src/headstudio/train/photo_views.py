"""The photo as training views: a square crop around the head, a mask of the head, and its mirror.

- :func:`photo_view` crops the photo around the fitted head (the face box enlarged to take in the
  hair, ears and neck), resizes it to the training resolution and carries the fitted camera and
  FLAME parameters with it. Pixels the crop takes from outside the photo are marked invalid and
  never scored.
- :func:`head_mask` separates the head (face, hair, ears, neck) from the background with GrabCut
  (OpenCV, a colour-model graph cut) seeded by what the fit knows: inside the face oval is head,
  the fitted mesh's silhouette and a band above the forehead are probably head, the crop's border
  away from the neck is background, and a photo's alpha channel is obeyed. Clothes below the neck
  are cut off at the mesh's lowest point. Nothing of the background is scored as the avatar's.
- :func:`mirror_view` is the same view reflected across the face's symmetry plane: the flipped
  image, seen by the mirrored camera, of the head at the mirrored pose. A single photo shows one
  side of the face; its mirror image is the best evidence a single view gives of the other side.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
import torch
from flame_core import FlameModel, FlameParams
from torch import Tensor

from .photo_fit import PhotoFit
from .photo_input import Photo, PhotoFace

__all__ = [
    "PhotoView",
    "photo_view",
    "mirror_view",
    "head_mask",
    "mesh_silhouette",
    "mirror_flame",
    "crop_box",
]

log = logging.getLogger(__name__)

#: the crop's side over the face's size (landmark box): enough for hair above and the neck below
CROP_SCALE = 2.3
#: the crop's centre sits this fraction of the face's size above the face box's centre (hair)
CROP_RAISE = 0.12


@dataclass
class PhotoView:
    """One training view made from the photo.

    Attributes:
        image: ``[H, W, 3]`` float32 in 0..1.
        mask: ``[H, W]`` float32 in 0..1: the head (1) against the background (0).
        valid: ``[H, W]`` float32 weight of each pixel: 1 where the photo is trusted, 0 where
            nothing is scored (padding outside the photo; disagreements of mesh and mask), or a
            prior's weight where :func:`~.photo.fill_unscored` put the initial avatar's render.
        viewmat: ``[4, 4]`` world-to-camera (OpenCV).
        K: ``[3, 3]`` intrinsics at ``W x H``.
        flame: the head's keyword arguments for this view, each ``[1, ·]``.
        mirrored: whether this is the mirror image of the photo.
    """

    image: Tensor
    mask: Tensor
    valid: Tensor
    viewmat: Tensor
    K: Tensor
    flame: dict[str, Tensor]
    mirrored: bool = False

    @property
    def size(self) -> tuple[int, int]:
        """``(W, H)``."""
        return int(self.image.shape[1]), int(self.image.shape[0])

    def params(self) -> FlameParams:
        """The view's pose (``[1, ·]`` tensors) without ``shape``: an avatar poses with its own."""
        return FlameParams.from_kwargs({k: v for k, v in self.flame.items() if k != "shape"})


def crop_box(face: PhotoFace) -> tuple[float, float, float]:
    """``(x0, y0, side)`` of the square crop around ``face`` in photo pixels (may leave the photo)."""
    x0, y0, x1, y1 = face.box
    side = CROP_SCALE * face.size_px
    cx = 0.5 * (x0 + x1)
    cy = 0.5 * (y0 + y1) - CROP_RAISE * face.size_px
    return cx - side / 2.0, cy - side / 2.0, side


def _warp(img: np.ndarray, x0: float, y0: float, side: float, size: int, interp: int) -> np.ndarray:
    import cv2

    s = size / side
    m = np.array([[s, 0.0, -x0 * s], [0.0, s, -y0 * s]], np.float64)
    return cv2.warpAffine(img, m, (size, size), flags=interp, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def mesh_silhouette(vertices_px: np.ndarray, faces: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``[H, W]`` bool: pixels covered by the mesh's triangles ``faces [F, 3]`` at ``vertices_px [V, 2]``."""
    import cv2

    w, h = size
    out = np.zeros((h, w), np.uint8)
    # pixel centres are at +0.5 (gsplat's convention); OpenCV's are at the integers
    tris = np.round((vertices_px[faces] - 0.5) * 16).astype(np.int32)  # 4 fractional bits
    finite = np.isfinite(vertices_px[faces]).all(axis=(1, 2))
    cv2.fillPoly(out, list(tris[finite]), 1, lineType=cv2.LINE_8, shift=4)
    return out.astype(bool)


def _face_oval_ids() -> list[int]:
    """MediaPipe ids of the face oval, in order around it."""
    from mediapipe.tasks.python.vision import FaceLandmarksConnections as C

    edges = [(c.start, c.end) for c in C.FACE_LANDMARKS_FACE_OVAL]
    nxt = dict(edges)
    start = edges[0][0]
    ring = [start]
    while nxt.get(ring[-1], start) != start and len(ring) <= len(edges):
        ring.append(nxt[ring[-1]])
    return ring


def head_mask(
    rgb: np.ndarray,
    landmarks_px: np.ndarray,
    silhouette: np.ndarray,
    valid: np.ndarray,
    alpha: np.ndarray | None = None,
    iterations: int = 5,
) -> np.ndarray:
    """``[H, W]`` float32 mask of the head (face, hair, ears, neck) in a crop.

    Args:
        rgb: ``[H, W, 3]`` uint8 crop.
        landmarks_px: ``[478, 2]`` MediaPipe landmarks in the crop's pixels.
        silhouette: ``[H, W]`` bool, the fitted mesh's silhouette (head and neck).
        valid: ``[H, W]`` bool, pixels that come from the photo.
        alpha: ``[H, W]`` the photo's own alpha, if it had one (below 0.5 is background).
        iterations: GrabCut iterations.
    """
    import cv2

    h, w = rgb.shape[:2]
    oval = np.round(landmarks_px[_face_oval_ids()]).astype(np.int32)
    x0, y0 = landmarks_px.min(0)
    x1, y1 = landmarks_px.max(0)
    fw, fh = x1 - x0, y1 - y0
    m = np.full((h, w), cv2.GC_PR_BGD, np.uint8)
    # probably head: the mesh (skull, ears, neck) and a band above the forehead for hair
    hair = np.zeros((h, w), np.uint8)
    cv2.ellipse(
        hair, (int((x0 + x1) / 2), int(y0 + 0.1 * fh)), (int(0.68 * fw), int(0.55 * fh)), 0, 180, 360, 1, -1
    )
    m[(silhouette | hair.astype(bool))] = cv2.GC_PR_FGD
    # background: a border strip, except below the head where the neck leaves the crop
    b = max(2, int(0.03 * min(h, w)))
    border = np.zeros((h, w), bool)
    border[:b] = border[:, :b] = border[:, -b:] = True
    border[-b:] = True
    neck_cols = silhouette[-b:].any(0)
    border[-b:, neck_cols] = False
    m[border & ~silhouette] = cv2.GC_BGD
    if alpha is not None:
        m[alpha < 0.5] = cv2.GC_BGD
    m[~valid] = cv2.GC_BGD
    # certainly head: inside the face oval (shrunk towards its centre by 8 %)
    core = np.zeros((h, w), np.uint8)
    c = oval.mean(0)
    cv2.fillPoly(core, [np.round(c + 0.92 * (oval - c)).astype(np.int32)], 1)
    m[core.astype(bool)] = cv2.GC_FGD
    bgd = np.zeros((1, 65), np.float64)
    fgd = np.zeros((1, 65), np.float64)
    img = np.ascontiguousarray(rgb[..., :3])
    cv2.setRNGSeed(0)  # GrabCut's colour models start from k-means: deterministic
    cv2.grabCut(img, m, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    fg = ((m == cv2.GC_FGD) | (m == cv2.GC_PR_FGD)).astype(np.uint8)
    # nothing below the mesh's lowest point (clothes), nothing far from the mesh but the hair
    rows = np.nonzero(silhouette.any(1))[0]
    if len(rows):
        fg[rows.max() + 1 :] = 0
    reach = cv2.dilate(
        silhouette.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=max(1, int(0.3 * fw))
    )
    fg &= (reach | hair).astype(np.uint8)
    # the connected piece that holds the face, holes filled
    n, lab = cv2.connectedComponents(fg)
    if n > 2:
        keep = np.bincount(lab[core.astype(bool)].ravel(), minlength=n)
        keep[0] = 0
        fg = (lab == int(np.argmax(keep))).astype(np.uint8)
    inv = (1 - fg).astype(np.uint8)
    n, lab = cv2.connectedComponents(inv)
    edge_labels = set(np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))) - {0}
    holes = (inv == 1) & ~np.isin(lab, list(edge_labels))
    fg[holes] = 1
    soft = cv2.GaussianBlur(fg.astype(np.float32), (3, 3), 0.7)
    return np.clip(soft, 0.0, 1.0) * valid


def _pose_kwargs(fit: PhotoFit) -> dict[str, Tensor]:
    return {k: v.float().clone() for k, v in fit.flame_kwargs().items()}


def photo_view(photo: Photo, face: PhotoFace, fit: PhotoFit, head: FlameModel, size: int) -> PhotoView:
    """The photo cropped around the head at ``size x size``, with its mask, camera and pose."""
    import cv2

    x0, y0, side = crop_box(face)
    rgb = _warp(photo.rgb, x0, y0, side, size, cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)
    valid = _warp(np.ones(photo.rgb.shape[:2], np.float32), x0, y0, side, size, cv2.INTER_LINEAR) > 0.999
    alpha = None if photo.alpha is None else _warp(photo.alpha, x0, y0, side, size, cv2.INTER_LINEAR)
    s = size / side
    K = fit.intrinsics()
    K = torch.tensor(
        [[K[0, 0] * s, 0.0, (K[0, 2] - x0) * s], [0.0, K[1, 1] * s, (K[1, 2] - y0) * s], [0, 0, 1.0]]
    )
    flame = _pose_kwargs(fit)
    with torch.no_grad():
        verts = head(**flame).vertices[0].float()
    vm = fit.viewmat()
    px = _project(verts, vm, K).numpy()
    sil = mesh_silhouette(px, np.asarray(head.faces), (size, size))
    lms = (face.landmarks - np.array([x0, y0], np.float32)) * s
    mask = head_mask(rgb, lms, sil, valid, alpha)
    # where the fitted mesh says "head" but the photo says "not head" (a collar over the neck, a
    # hand, the mesh's own error at its outline) neither is trusted: those pixels are not scored,
    # so the avatar keeps its initial colours and opacity there instead of learning to vanish
    valid = valid & ~(sil & (mask < 0.5))
    frac = float(mask.mean())
    log.info("photo view: %d px crop of %.0f px, head mask covers %.0f %% of it", size, side, 100 * frac)
    return PhotoView(
        image=torch.from_numpy(rgb.astype(np.float32) / 255.0),
        mask=torch.from_numpy(mask.astype(np.float32)),
        valid=torch.from_numpy(valid.astype(np.float32)),
        viewmat=vm,
        K=K.float(),
        flame=flame,
    )


def _project(points: Tensor, viewmat: Tensor, K: Tensor) -> Tensor:
    """``points [N, 3]`` world -> ``[N, 2]`` pixels."""
    pc = points @ viewmat[:3, :3].T + viewmat[:3, 3]
    uv = pc @ K.T
    return uv[:, :2] / uv[:, 2:].clamp_min(1e-6)


#: reflection across the head's symmetry plane (FLAME's x = 0) and across the camera's x = 0
_S = torch.diag(torch.tensor([-1.0, 1.0, 1.0]))


def _mirror_rotvec(r: Tensor) -> Tensor:
    """Axis-angle ``[..., 3]`` of ``S R S`` (a rotation seen in a mirror): ``(a, -b, -c)``."""
    return r * torch.tensor([1.0, -1.0, -1.0], dtype=r.dtype)


def mirror_flame(flame: dict[str, Tensor]) -> dict[str, Tensor]:
    """FLAME keyword arguments of the mirrored head: rotations reflected, the eyes swapped.

    Expression coefficients are kept: FLAME's expression basis has no known mirror map, and the
    expressions a portrait holds are close to symmetric (the mirrored view is weighted below the
    photo's own; see METHOD.md).
    """
    out = dict(flame)
    for k in ("global_orient", "neck_pose", "jaw_pose"):
        if k in out:
            out[k] = _mirror_rotvec(out[k])
    if "eye_pose" in out:
        e = out["eye_pose"]
        out["eye_pose"] = torch.cat([_mirror_rotvec(e[..., 3:6]), _mirror_rotvec(e[..., 0:3])], -1)
    return out


def mirror_view(view: PhotoView) -> PhotoView:
    """``view`` reflected across the face's symmetry plane.

    The flipped image ``x -> W - x`` is what a camera ``x_cam' = S x_cam`` sees; with the head
    reflected too (``X = S X_m``) the camera becomes ``S V S`` and the head's pose the mirrored one
    (:func:`mirror_flame`): a symmetric head at the mirrored pose, seen by the mirrored camera,
    renders the flipped photo.
    """
    w = view.size[0]
    vm = view.viewmat.clone()
    vm[:3, :3] = _S @ vm[:3, :3] @ _S
    vm[:3, 3] = _S @ vm[:3, 3]
    K = view.K.clone()
    K[0, 2] = w - K[0, 2]
    return replace(
        view,
        image=view.image.flip(1),
        mask=view.mask.flip(1),
        valid=view.valid.flip(1),
        viewmat=vm,
        K=K,
        flame=mirror_flame(view.flame),
        mirrored=True,
    )
