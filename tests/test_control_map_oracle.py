"""Control maps against an oracle: the real MediaPipe FaceLandmarker run on a render of the offline
teacher head, its landmarks drawn by an independent re-implementation of the steps of the annotator
that made ControlNetMediaPipeFace's training data, compared feature by feature with the map
fsds_guidance draws from the head's own projected FLAME landmarks (same pose, same camera).

The annotator's steps, as its source reads: draw every connection of each MediaPipe contour set
with ``cv2.line`` (thickness 2) in the set's colour tuple into a zero array, set the 4×4 pupil
squares ``[y-2:y+2, x-2:x+2]`` of landmarks 468 and 473, then reverse the channels of the whole
image ("flip BGR back to RGB"). The tuples below are typed in from that source, not imported
from fsds_guidance, so a palette that forgets the final reversal disagrees with the oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch

mp = pytest.importorskip("mediapipe")
cv2 = pytest.importorskip("cv2")

from flame_core.model import FlameModel  # noqa: E402
from fsds_guidance.control import (  # noqa: E402
    draw_control_map,
    embedded_normals,
    landmark_visibility,
    vertex_normals,
)
from headstudio.animate.face_track import resolve_landmarker  # noqa: E402
from headstudio.cameras import head_target, orbit_camera  # noqa: E402
from headstudio.demo.teacher import build_teacher_avatar  # noqa: E402
from headstudio.errors import HeadStudioError  # noqa: E402
from mediapipe.tasks.python import BaseOptions, vision  # noqa: E402

SIZE = 512
FOVY = 40.0
DISTANCE = 0.45

# (MediaPipe set, the annotator's colour tuple as written there), in its drawing order
ANNOTATOR_SETS = [
    ("FACE_LANDMARKS_FACE_OVAL", (10, 200, 10)),
    ("FACE_LANDMARKS_LEFT_EYE", (180, 200, 10)),
    ("FACE_LANDMARKS_LEFT_EYEBROW", (180, 220, 10)),
    ("FACE_LANDMARKS_RIGHT_EYE", (10, 200, 180)),
    ("FACE_LANDMARKS_RIGHT_EYEBROW", (10, 220, 180)),
    ("FACE_LANDMARKS_LIPS", (10, 180, 10)),
]
ANNOTATOR_PUPILS = {468: (10, 200, 250), 473: (250, 200, 10)}


def annotator_map(landmarks_px: np.ndarray) -> np.ndarray:
    """The annotator's steps on MediaPipe's 478 landmarks ``[478, 2]`` (pixels): ``[S, S, 3]`` uint8
    RGB, as the image it returns."""
    conn = vision.FaceLandmarksConnections
    canvas = np.zeros((SIZE, SIZE, 3), np.uint8)
    pts = [(int(x), int(y)) for x, y in landmarks_px]
    for name, colour in ANNOTATOR_SETS:
        for c in getattr(conn, name):
            cv2.line(canvas, pts[c.start], pts[c.end], colour, 2)
    for idx, colour in ANNOTATOR_PUPILS.items():
        x, y = pts[idx]
        canvas[y - 2 : y + 2, x - 2 : x + 2, :] = colour
    return canvas[:, :, ::-1].copy()


@pytest.fixture(scope="module")
def head() -> FlameModel:
    return FlameModel.procedural(num_shape=10, num_expression=10)


@pytest.fixture(scope="module")
def teacher(head: FlameModel):  # noqa: ANN201
    return build_teacher_avatar(head, seed=0)


@pytest.fixture(scope="module")
def landmarker():  # noqa: ANN201
    try:
        path = resolve_landmarker()
    except HeadStudioError as e:
        pytest.skip(str(e))
    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(path)),
        running_mode=vision.RunningMode.IMAGE,
        num_faces=1,
    )
    with vision.FaceLandmarker.create_from_options(options) as detector:
        yield detector


def our_map(head: FlameModel, verts: torch.Tensor, viewmat: torch.Tensor, K: torch.Tensor) -> np.ndarray:
    """fsds_guidance's map of the head's own landmarks, projected as the F-SDS guidance does."""
    emb = head.landmark_embedding
    lmk = emb(verts, head.faces)
    nrm = embedded_normals(vertex_normals(verts, head.faces), head.faces, emb.face_idx, emb.bary_coords)
    p = lmk @ viewmat[:3, :3].T + viewmat[:3, 3]
    n = nrm @ viewmat[:3, :3].T
    uv = p @ K.T
    px = uv[..., :2] / uv[..., 2:]
    image = draw_control_map(px, landmark_visibility(p, n), emb.landmark_indices, size=SIZE)[0]
    return (image * 255).round().byte().permute(1, 2, 0).numpy()


def centroid(image: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray | None:
    """Mean ``(x, y)`` of the pixels of exactly colour ``rgb``; None if there are none."""
    ys, xs = np.nonzero((image == np.array(rgb, np.uint8)).all(-1))
    return None if len(xs) == 0 else np.array([xs.mean(), ys.mean()])


@pytest.mark.parametrize("azimuth", [0.0, 25.0, -25.0])
def test_each_feature_has_the_annotators_colour_on_the_same_side(head, teacher, landmarker, azimuth):
    with torch.no_grad():
        verts = teacher.pose()
        viewmat, K = orbit_camera(azimuth, 0.0, DISTANCE, FOVY, SIZE, SIZE, head_target(verts[0]))
        render = teacher.render(viewmat[None], K[None], SIZE, SIZE, background=(1.0, 1.0, 1.0))
        rgb = (render.rgb[0, 0].clamp(0, 1) * 255).round().byte().numpy()
        ours = our_map(head, verts, viewmat, K)
    found = landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb)))
    assert found.face_landmarks, f"MediaPipe found no face on the teacher's render at azimuth {azimuth}"
    mp_px = np.array([(q.x * SIZE, q.y * SIZE) for q in found.face_landmarks[0]])
    assert mp_px.shape == (478, 2)
    oracle = annotator_map(mp_px)

    oracle_colours = {tuple(c) for c in np.unique(oracle.reshape(-1, 3), axis=0).tolist()} - {(0, 0, 0)}
    features = [c[::-1] for _, c in ANNOTATOR_SETS] + [c[::-1] for c in ANNOTATOR_PUPILS.values()]
    assert oracle_colours <= set(features)
    # MediaPipe's face width in pixels: the scale of "the same place"
    face_width = float(np.ptp(mp_px[:468, 0]))
    assert face_width > 100  # the face fills a good part of the frame
    for colour in features:
        a, b = centroid(oracle, colour), centroid(ours, colour)
        assert a is not None and b is not None, (colour, a, b)
        # the same feature in the same place: eyes, brows, pupils and lips within 0.08 face widths
        # (measured: at most 0.03; the eyes are about 0.4 apart, so a left/right swap cannot
        # pass); the oval within 0.2 (measured 0.05 frontal, 0.11 at 25 degrees: MediaPipe runs the
        # far side of the oval along the visible cheek, where the head's own far-side oval points
        # are hidden and not drawn)
        tolerance = 0.2 if colour == (10, 200, 10) else 0.08
        assert np.abs(a - b).max() < tolerance * face_width, (colour, a, b, face_width)
    # the subject's left eye lies on the image's right in both, in the colour (10, 200, 180)
    for image in (oracle, ours):
        left, right = centroid(image, (10, 200, 180)), centroid(image, (180, 200, 10))
        assert left[0] > right[0]
        left_pupil, right_pupil = centroid(image, (10, 200, 250)), centroid(image, (250, 200, 10))
        assert left_pupil[0] > right_pupil[0]
