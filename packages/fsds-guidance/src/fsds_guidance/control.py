"""ControlNet MediaPipeFace control maps drawn from projected FLAME landmarks.

The control image is what ``CrucibleAI/ControlNetMediaPipeFace`` was trained on: MediaPipe
face-mesh contours drawn on black. Palette, line thickness and pupil marks follow the
annotator that produced its training data (``laion_face_common.py`` in
CrucibleAI/ControlNetMediaPipeFace, identical to ControlNet-v1-1's
``annotator/mediapipe_face/mediapipe_face_common.py``).

Colours: the annotator draws its colour tuples into a zero array and then *reverses the
channels* of the finished image before returning it ("flip BGR back to RGB"). The returned,
reversed image is what the ControlNet was trained on, so every tuple reaches the model with
its first and last entries swapped. The colours below are those of the returned RGB image
(the annotator's tuple reversed; oval and lips are palindromes and read the same either way):

============================  =================  ===============  ============================
feature (MediaPipe set)       annotator tuple    RGB the model    drawn as
                                                 was trained on
============================  =================  ===============  ============================
face oval                     (10, 200, 10)      (10, 200, 10)    lines, thickness 2
left eye                      (180, 200, 10)     (10, 200, 180)   lines, thickness 2
left eyebrow                  (180, 220, 10)     (10, 220, 180)   lines, thickness 2
right eye                     (10, 200, 180)     (180, 200, 10)   lines, thickness 2
right eyebrow                 (10, 220, 180)     (180, 220, 10)   lines, thickness 2
lips                          (10, 180, 10)      (10, 180, 10)    lines, thickness 2
right pupil (landmark 468)    (10, 200, 250)     (250, 200, 10)   4×4 square ``[y-2:y+2, x-2:x+2]``
left pupil (landmark 473)     (250, 200, 10)     (10, 200, 250)   4×4 square ``[y-2:y+2, x-2:x+2]``
============================  =================  ===============  ============================

"Left"/"right" are MediaPipe's names (``FACE_LANDMARKS_LEFT_EYE`` …), and they are the
*subject's*: on a frontal, unmirrored render of the offline teacher head, MediaPipe's
FaceLandmarker puts the ``LEFT_EYE`` contour and pupil 473 on the image's right (mean x ≈ 318
of 512 px) and ``RIGHT_EYE`` and pupil 468 on the image's left (x ≈ 197), as a person's left eye
appears on the right of a photograph of them. So in a frontal control map the eye on the image's
right is (10, 200, 180) with a (10, 200, 250) pupil, and the eye on the image's left is
(180, 200, 10) with a (250, 200, 10) pupil (``tests/test_control_map_oracle.py`` checks this
against the real FaceLandmarker and an independent re-drawing of the annotator's steps).

The annotator does *not* draw the iris connection sets (those lines are commented out there);
irises appear only as the two pupil squares, and only when the 478-point (refined) set is
present. Drawing order is the annotator's: oval, left eye, left eyebrow, right eye, right
eyebrow, lips, then pupils (later strokes win where they overlap).

Drawing here is vectorised in torch (no per-pixel or per-segment Python loop): each segment is
sampled at most 1 px apart (consecutive samples fall in 8-connected pixels), every sample
stamps a disc of diameter ``thickness``, and a ``scatter_reduce(amax)`` of the stroke order
picks the last stroke per pixel, so colours are exact (no anti-aliasing) and the result is
deterministic. Lines are close to, not pixel-identical with, OpenCV's ``cv2.line``.

Which landmarks and views the camera sees (:func:`landmark_visibility`, :func:`face_in_view`)
lives in :mod:`fsds_guidance.visibility`; this module re-exports it.
"""

from __future__ import annotations

import functools
import logging

import torch
from torch import Tensor

from .visibility import (
    MIN_EYE_FRACTION,
    SILHOUETTE_TOLERANCE,
    embedded_normals,
    face_in_view,
    landmark_visibility,
    vertex_normals,
)

__all__ = [
    "ANNOTATOR_PUPIL_TUPLES",
    "ANNOTATOR_TUPLES",
    "CONTROL_PALETTE",
    "LINE_THICKNESS",
    "MIN_EYE_FRACTION",
    "PUPIL_HALFWIDTH",
    "PUPIL_PALETTE",
    "SILHOUETTE_TOLERANCE",
    "draw_control_map",
    "draw_control_map_naive",
    "embedded_normals",
    "face_in_view",
    "landmark_visibility",
    "mediapipe_connections",
    "vertex_normals",
]

logger = logging.getLogger(__name__)

#: (name, colour tuple as the annotator writes it) in its drawing order; names index
#: ``FaceLandmarksConnections``. These tuples are *not* the colours of the control image: see
#: :data:`CONTROL_PALETTE`.
ANNOTATOR_TUPLES: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("FACE_LANDMARKS_FACE_OVAL", (10, 200, 10)),
    ("FACE_LANDMARKS_LEFT_EYE", (180, 200, 10)),
    ("FACE_LANDMARKS_LEFT_EYEBROW", (180, 220, 10)),
    ("FACE_LANDMARKS_RIGHT_EYE", (10, 200, 180)),
    ("FACE_LANDMARKS_RIGHT_EYEBROW", (10, 220, 180)),
    ("FACE_LANDMARKS_LIPS", (10, 180, 10)),
)
#: MediaPipe pupil landmark id -> the annotator's tuple (its ``iris_landmark_spec``).
ANNOTATOR_PUPIL_TUPLES: dict[int, tuple[int, int, int]] = {468: (10, 200, 250), 473: (250, 200, 10)}


def _reversed(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    return (rgb[2], rgb[1], rgb[0])


#: (name, RGB colour in the control image) in the annotator's drawing order: its tuples with the
#: channels reversed, as in the image it returns (module docstring).
CONTROL_PALETTE: tuple[tuple[str, tuple[int, int, int]], ...] = tuple(
    (name, _reversed(rgb)) for name, rgb in ANNOTATOR_TUPLES
)
#: MediaPipe landmark id -> RGB colour of the pupil square in the control image.
PUPIL_PALETTE: dict[int, tuple[int, int, int]] = {k: _reversed(v) for k, v in ANNOTATOR_PUPIL_TUPLES.items()}
#: Half width of the pupil square in pixels (annotator's ``draw_pupils(halfwidth=2)``).
PUPIL_HALFWIDTH = 2
#: Line thickness of the annotator (``f_thick = 2``).
LINE_THICKNESS = 2


@functools.lru_cache(maxsize=1)
def mediapipe_connections() -> tuple[Tensor, Tensor, Tensor]:
    """The annotator's connection sets, from ``mediapipe.tasks.python.vision``.

    Returns:
        edges ``[E, 2]`` long (MediaPipe landmark ids), edge_colour ``[E]`` long index into
        ``colours``, colours ``[K, 3]`` uint8 where the pupils are the last two rows.
    """
    from mediapipe.tasks.python.vision import FaceLandmarksConnections as conn

    edges: list[tuple[int, int]] = []
    edge_colour: list[int] = []
    colours: list[tuple[int, int, int]] = []
    for k, (name, rgb) in enumerate(CONTROL_PALETTE):
        colours.append(rgb)
        for c in getattr(conn, name):
            edges.append((int(c.start), int(c.end)))
            edge_colour.append(k)
    colours.extend(PUPIL_PALETTE.values())
    return (
        torch.tensor(edges, dtype=torch.long),
        torch.tensor(edge_colour, dtype=torch.long),
        torch.tensor(colours, dtype=torch.uint8),
    )


def _restrict_edges(landmark_ids: Tensor, num_points: int) -> tuple[Tensor, Tensor, Tensor]:
    """Map the MediaPipe connection sets onto the rows present.

    Args:
        landmark_ids: ``[L]`` MediaPipe id of every row.
        num_points: ``L``.

    Returns:
        edges ``[E', 2]`` as row indices (both end points present), their colour index ``[E']``,
        pupil rows ``[P]`` and their colour index ``[P]`` packed as (edges, colour, pupils[P,2]).
    """
    edges, edge_colour, _ = mediapipe_connections()
    id_to_row = torch.full((max(int(landmark_ids.max()) + 1, 478),), -1, dtype=torch.long)
    id_to_row[landmark_ids.long().cpu()] = torch.arange(num_points)
    rows = id_to_row[edges]
    keep = (rows >= 0).all(dim=1)
    pupils = []
    for k, pid in enumerate(PUPIL_PALETTE):
        if id_to_row[pid] >= 0:
            pupils.append((int(id_to_row[pid]), len(CONTROL_PALETTE) + k))
    pupil_t = torch.tensor(pupils, dtype=torch.long).reshape(-1, 2)
    return rows[keep], edge_colour[keep], pupil_t


def _disc_offsets(thickness: int) -> Tensor:
    """Integer pixel offsets ``[S, 2]`` (dx, dy) of a disc of diameter ``thickness``."""
    r = max(thickness, 1) / 2.0
    ri = int(r)
    d = torch.arange(-ri, ri + 1)
    dy, dx = torch.meshgrid(d, d, indexing="ij")
    keep = (dx**2 + dy**2).float() <= r * r + 1e-6
    return torch.stack([dx[keep], dy[keep]], dim=-1)


def draw_control_map(
    landmarks_px: Tensor,
    visible: Tensor,
    landmark_ids: Tensor | None = None,
    size: int = 512,
    thickness: int = LINE_THICKNESS,
) -> Tensor:
    """Draw ControlNetMediaPipeFace control images.

    Args:
        landmarks_px: ``[B, L, 2]`` landmark positions in pixels (x right, y down) of a
            ``size × size`` image; pixel ``(i, j)`` covers ``[j, j+1) × [i, i+1)``.
        visible: ``[B, L]`` bool; hidden landmarks are not drawn and every segment touching one
            is dropped.
        landmark_ids: ``[L]`` MediaPipe id (0..477) of each row, e.g. flame_core's
            ``LandmarkEmbedding.landmark_indices`` for the 105-point subset. ``None`` means the
            rows are MediaPipe ids ``0..L-1`` (the full 468 or 478 set).
        size: output side in pixels.
        thickness: line thickness in pixels (annotator: 2).

    Returns:
        ``[B, 3, size, size]`` float32 in 0..1 on the device of ``landmarks_px``; black where
        nothing is drawn, otherwise exactly ``palette / 255``.
    """
    if landmarks_px.ndim != 3 or landmarks_px.shape[-1] != 2:
        raise ValueError(f"landmarks_px must be [B, L, 2], got {tuple(landmarks_px.shape)}")
    bsz, num_points, _ = landmarks_px.shape
    if visible.shape != (bsz, num_points):
        raise ValueError(f"visible must be [B, L] = {(bsz, num_points)}, got {tuple(visible.shape)}")
    if landmark_ids is None:
        if num_points not in (468, 478):
            raise ValueError(
                f"landmark_ids is None but L={num_points}; pass the MediaPipe id of each row "
                "(e.g. LandmarkEmbedding.landmark_indices) unless L is 468 or 478"
            )
        landmark_ids = torch.arange(num_points)
    landmark_ids = torch.as_tensor(landmark_ids).long().cpu()
    if landmark_ids.shape != (num_points,):
        raise ValueError(f"landmark_ids must be [L] = [{num_points}], got {tuple(landmark_ids.shape)}")
    device = landmarks_px.device
    edges, edge_colour, pupils = _restrict_edges(landmark_ids, num_points)
    _, _, colours = mediapipe_connections()
    edges, edge_colour, pupils = edges.to(device), edge_colour.to(device), pupils.to(device)
    pts = landmarks_px.detach().float()
    vis = visible.to(device=device, dtype=torch.bool)

    # --- line segments: [B, E] segments sampled at <= 1 px spacing --------------------------
    a, b = pts[:, edges[:, 0]], pts[:, edges[:, 1]]  # [B, E, 2]
    seg_ok = vis[:, edges[:, 0]] & vis[:, edges[:, 1]]
    seg_ok &= torch.isfinite(a).all(-1) & torch.isfinite(b).all(-1)
    length = torch.where(seg_ok, (b - a).norm(dim=-1), torch.zeros_like(seg_ok, dtype=pts.dtype))
    length = length.clamp(max=4.0 * size)  # far off-screen segments cost bounded samples
    n_samples = length.ceil().long() + 1  # [B, E], <= 1 px apart
    n_samples = torch.where(seg_ok, n_samples, torch.zeros_like(n_samples))
    flat_n = n_samples.reshape(-1)
    seg_id = torch.repeat_interleave(torch.arange(flat_n.numel(), device=device), flat_n)
    start = torch.cumsum(flat_n, 0) - flat_n
    k = torch.arange(seg_id.numel(), device=device) - start[seg_id]
    denom = (flat_n[seg_id] - 1).clamp(min=1).to(pts.dtype)
    s = (k.to(pts.dtype) / denom).unsqueeze(-1)
    a_f, b_f = a.reshape(-1, 2)[seg_id], b.reshape(-1, 2)[seg_id]
    p = a_f + s * (b_f - a_f)  # [N, 2] sample positions
    batch_of = seg_id // edges.shape[0]
    # stroke priority: colour group order first (annotator draws sets in order), +1 so 0 = empty
    order = edge_colour[seg_id % edges.shape[0]] + 1
    offs = _disc_offsets(thickness).to(device)
    # floor() is exact; a point lands on a pixel edge only by coincidence. The structural case, a
    # midline landmark seen by a frontal camera, projects to the principal point W/2 (an integer)
    # plus f x / z: float32 absorbs a rounding-level x (below ~1e-5 px), so it is W/2 exactly.
    pix = torch.floor(p).long().unsqueeze(1) + offs.unsqueeze(0)  # [N, S, 2]
    line_b = batch_of.unsqueeze(1).expand(-1, offs.shape[0])
    line_o = order.unsqueeze(1).expand(-1, offs.shape[0])
    xs, ys = pix[..., 0].reshape(-1), pix[..., 1].reshape(-1)
    bs, os_ = line_b.reshape(-1), line_o.reshape(-1)

    # --- pupils: 4x4 squares [y-h, y+h) x [x-h, x+h) ------------------------------------------
    if pupils.numel():
        h = PUPIL_HALFWIDTH
        d = torch.arange(-h, h, device=device)
        dy, dx = torch.meshgrid(d, d, indexing="ij")
        sq = torch.stack([dx.reshape(-1), dy.reshape(-1)], -1)  # [Q, 2]
        pp = pts[:, pupils[:, 0]]  # [B, P, 2]
        pv = vis[:, pupils[:, 0]] & torch.isfinite(pp).all(-1)
        centre = torch.floor(torch.nan_to_num(pp)).long()
        ppix = centre.unsqueeze(2) + sq.view(1, 1, -1, 2)  # [B, P, Q, 2]
        pb = torch.arange(bsz, device=device).view(-1, 1, 1).expand(ppix.shape[:3])
        po = (pupils[:, 1] + 1).view(1, -1, 1).expand(ppix.shape[:3])
        pm = pv.unsqueeze(-1).expand(ppix.shape[:3])
        xs = torch.cat([xs, ppix[..., 0][pm]])
        ys = torch.cat([ys, ppix[..., 1][pm]])
        bs = torch.cat([bs, pb[pm]])
        os_ = torch.cat([os_, po[pm]])

    inside = (xs >= 0) & (xs < size) & (ys >= 0) & (ys < size)
    flat = ((bs * size + ys) * size + xs)[inside]
    # last stroke per pixel = highest order; then write only the drawn pixels (sparse)
    canvas = torch.zeros(bsz * size * size, dtype=torch.int32, device=device)
    canvas.scatter_reduce_(0, flat, os_[inside].to(torch.int32), reduce="amax")
    lut = torch.cat([torch.zeros(1, 3, dtype=torch.uint8), colours]).to(device).float() / 255.0
    out = torch.zeros(bsz, 3, size * size, device=device)
    hw = size * size
    touched = canvas.nonzero().squeeze(1)  # unique drawn pixels
    out[touched // hw, :, touched % hw] = lut[canvas[touched].long()]
    return out.view(bsz, 3, size, size)


def draw_control_map_naive(
    landmarks_px: Tensor,
    visible: Tensor,
    landmark_ids: Tensor | None = None,
    size: int = 512,
    thickness: int = LINE_THICKNESS,
) -> Tensor:
    """Reference drawing with one Python iteration per segment (benchmark baseline and oracle).

    Same inputs, rules and output as :func:`draw_control_map`.
    """
    bsz, num_points, _ = landmarks_px.shape
    if landmark_ids is None:
        landmark_ids = torch.arange(num_points)
    edges, edge_colour, pupils = _restrict_edges(torch.as_tensor(landmark_ids).long(), num_points)
    _, _, colours = mediapipe_connections()
    out = torch.zeros(bsz, 3, size, size)
    offs = _disc_offsets(thickness)
    pts = landmarks_px.detach().float().cpu()
    vis = visible.bool().cpu()
    for bi in range(bsz):
        for (i, j), c in zip(edges.tolist(), edge_colour.tolist(), strict=True):
            if not (vis[bi, i] and vis[bi, j]):
                continue
            a, b = pts[bi, i], pts[bi, j]
            n = int(torch.ceil(min((b - a).norm(), 4.0 * size))) + 1
            s = (torch.arange(n, dtype=torch.float32) / max(n - 1, 1)).unsqueeze(-1)
            pix = torch.floor(a + s * (b - a)).long().unsqueeze(1) + offs.unsqueeze(0)
            pix = pix.reshape(-1, 2)
            ok = (pix >= 0).all(-1) & (pix < size).all(-1)
            pix = pix[ok]
            out[bi, :, pix[:, 1], pix[:, 0]] = colours[c].float().unsqueeze(-1) / 255.0
        for row, c in pupils.tolist():
            if not vis[bi, row]:
                continue
            x, y = (int(v) for v in torch.floor(pts[bi, row]).tolist())
            h = PUPIL_HALFWIDTH
            y0, y1, x0, x1 = max(y - h, 0), max(min(y + h, size), 0), max(x - h, 0), max(min(x + h, size), 0)
            out[bi, :, y0:y1, x0:x1] = colours[c].float().view(3, 1, 1) / 255.0
    return out
