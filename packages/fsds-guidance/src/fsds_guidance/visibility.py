"""Which landmarks and views a camera sees: the facing / silhouette test of the embedded FLAME
landmarks (:func:`landmark_visibility`, with :func:`vertex_normals` and :func:`embedded_normals`)
and the rule of which views show a face (:func:`face_in_view`). Split out of
:mod:`fsds_guidance.control`, which re-exports all of it."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "MIN_EYE_FRACTION",
    "SILHOUETTE_TOLERANCE",
    "embedded_normals",
    "face_in_view",
    "landmark_visibility",
    "vertex_normals",
]


#: A view keeps its ControlNet while at least this fraction of one eye's contour landmarks is
#: seen (:func:`face_in_view`).
MIN_EYE_FRACTION = 0.5
_EYE_SETS = ("FACE_LANDMARKS_LEFT_EYE", "FACE_LANDMARKS_RIGHT_EYE")


def face_in_view(
    visible: Tensor, landmark_ids: Tensor | None = None, min_fraction: float = MIN_EYE_FRACTION
) -> Tensor:
    """Which views show enough of the face for a control map the ControlNet knows.

    Every training image of ControlNetMediaPipeFace is one in which MediaPipe found a face, so
    it never saw an empty (or nearly empty) map. MediaPipe's face detector finds a face by its
    eyes, nose and mouth and finds none with no eye in view. The rule: a view shows a face while
    at least ``min_fraction`` of the landmarks of one eye contour (MediaPipe's ``LEFT_EYE`` or
    ``RIGHT_EYE`` set, both in FLAME's 105-point embedding) are visible. On the procedural
    head (facing test of :func:`landmark_visibility`, 10-degree steps, camera at 0.45 m) that
    keeps every view up to 110 degrees from the front at elevation 0 (100 at +30, 120 at -20)
    and drops the back and back three-quarter views, whose maps hold at most a few stray
    lines of the oval, a brow or the inner lips. The real FaceLandmarker on the teacher's
    renders already loses the face at 50–70 degrees; the rule is more permissive on purpose:
    a profile map (one eye, half the mouth, the near oval) is a face MediaPipe reports on
    profile photographs, and the paper conditions every view.

    Args:
        visible: ``[B, L]`` bool (:func:`landmark_visibility`).
        landmark_ids: ``[L]`` MediaPipe id of each row (``None``: rows are ids ``0..L-1``).
        min_fraction: fraction of one eye's landmarks that must be visible.

    Returns:
        ``[B]`` bool. With no eye landmark among the rows at all, a view counts as showing the
        face when any landmark is visible.
    """
    if visible.ndim != 2:
        raise ValueError(f"visible must be [B, L], got {tuple(visible.shape)}")
    num_points = visible.shape[1]
    ids = torch.arange(num_points) if landmark_ids is None else torch.as_tensor(landmark_ids).long().cpu()
    if ids.shape != (num_points,):
        raise ValueError(f"landmark_ids must be [L] = [{num_points}], got {tuple(ids.shape)}")
    from mediapipe.tasks.python.vision import FaceLandmarksConnections as conn

    vis = visible.bool()
    shown = torch.zeros(vis.shape[0], dtype=torch.bool, device=vis.device)
    any_eye = False
    for name in _EYE_SETS:
        eye_ids = torch.tensor(sorted({i for c in getattr(conn, name) for i in (c.start, c.end)}))
        rows = torch.nonzero(torch.isin(ids, eye_ids)).squeeze(1).to(vis.device)
        if rows.numel() == 0:
            continue
        any_eye = True
        shown |= vis[:, rows].float().mean(1) >= min_fraction
    return shown if any_eye else vis.any(1)


#: How far past the silhouette a landmark still counts as seen: ``cos`` of the angle between its
#: normal and the ray from the camera may reach this (0.2: about 11.5 degrees past edge-on).
SILHOUETTE_TOLERANCE = 0.2


def landmark_visibility(
    landmarks_cam: Tensor,
    normals_cam: Tensor,
    near: float = 1e-3,
    tolerance: float = SILHOUETTE_TOLERANCE,
) -> Tensor:
    """Which landmarks the camera can see (facing it, up to the silhouette, and in front of it).

    MediaPipe reports every landmark of a face it finds and the annotator draws them all; the
    facing test stands in for "on the part of the face a photograph shows". Outline landmarks
    (the face oval) sit where the surface turns edge-on, so the test lets a landmark face away
    by up to ``tolerance``: without it, half of a frontal face's oval would drop out.

    Args:
        landmarks_cam: ``[B, L, 3]`` landmark positions in OpenCV camera space (x right, y down,
            z forward).
        normals_cam: ``[B, L, 3]`` outward unit surface normals at the landmarks, same space
            (see :func:`vertex_normals` and :func:`embedded_normals`).
        near: minimum depth ``z``.
        tolerance: visible while ``dot(normal, point / |point|) < tolerance``; 0 is the strict
            test (the surface faces the camera at the origin).

    Returns:
        ``[B, L]`` bool.
    """
    if landmarks_cam.shape != normals_cam.shape or landmarks_cam.shape[-1] != 3:
        raise ValueError(
            f"landmarks_cam and normals_cam must both be [B, L, 3], got {tuple(landmarks_cam.shape)} "
            f"and {tuple(normals_cam.shape)}"
        )
    ray = landmarks_cam / landmarks_cam.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    # Rounding-robust as long as tolerance is not 0: a symmetric head seen exactly from the side
    # puts midline landmarks exactly edge-on (dot = 0 in exact arithmetic, +-1e-8 in float32,
    # whichever way the CPU's kernels summed), and the 0.2 threshold is far from that.
    facing = (normals_cam * ray).sum(-1) < tolerance
    return facing & (landmarks_cam[..., 2] > near)


def vertex_normals(vertices: Tensor, faces: Tensor) -> Tensor:
    """Area-weighted unit vertex normals of a triangle mesh.

    Args:
        vertices: ``[B, V, 3]``.
        faces: ``[F, 3]`` long, counter-clockwise seen from outside (FLAME's winding).

    Returns:
        ``[B, V, 3]`` unit normals (zero for unreferenced vertices).
    """
    faces = faces.long().to(vertices.device)
    v0, v1, v2 = (vertices[:, faces[:, i]] for i in range(3))  # [B, F, 3]
    fn = torch.cross(v1 - v0, v2 - v0, dim=-1)  # length = 2 * area
    out = torch.zeros_like(vertices)
    for i in range(3):
        out.index_add_(1, faces[:, i], fn)
    return out / out.norm(dim=-1, keepdim=True).clamp(min=1e-12)


def embedded_normals(normals: Tensor, faces: Tensor, face_idx: Tensor, bary_coords: Tensor) -> Tensor:
    """Normals at barycentrically embedded landmarks (flame_core ``LandmarkEmbedding``).

    Args:
        normals: ``[B, V, 3]`` vertex normals (:func:`vertex_normals`).
        faces: ``[F, 3]`` long.
        face_idx: ``[L]`` long, triangle of each landmark.
        bary_coords: ``[L, 3]`` barycentric weights.

    Returns:
        ``[B, L, 3]`` unit normals.
    """
    tri = faces.long().to(normals.device)[face_idx.long().to(normals.device)]  # [L, 3]
    w = bary_coords.to(normals)
    n = (normals[:, tri] * w.unsqueeze(0).unsqueeze(-1)).sum(2)  # [B, L, 3]
    return n / n.norm(dim=-1, keepdim=True).clamp(min=1e-12)
