"""Control maps of a FLAME-format head whose folder has only FLAME's 105-point MediaPipe embedding:
the face oval and the pupils, derived by flame_core, reach the ControlNet (fsds_guidance draws them)."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("mediapipe")

from flame_core import FlameModel  # noqa: E402
from flame_core.mediapipe_mesh import FACE_OVAL_IDS  # noqa: E402
from flame_core.procedural import build_procedural_head  # noqa: E402
from fsds_guidance.control import (  # noqa: E402
    PUPIL_PALETTE,
    draw_control_map,
    embedded_normals,
    face_in_view,
    landmark_visibility,
    vertex_normals,
)

SIZE = 512
OVAL_RGB = (10, 200, 10)


@pytest.fixture(scope="module")
def flame_file(tmp_path_factory):
    """The procedural head saved as FLAME's release ships: the model and the 105-point embedding."""
    folder = build_procedural_head().save(tmp_path_factory.mktemp("flame"), full_embedding=False)
    return folder / "procedural_flame.pkl"


@pytest.fixture(scope="module")
def model(flame_file):
    return FlameModel.from_file(flame_file)


def _camera(azimuth_deg: float, elevation_deg: float, distance: float, target: torch.Tensor):
    """OpenCV world-to-camera ``[4, 4]`` looking at ``target`` (azimuth 0: in front of the face)."""
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    offset = torch.tensor([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])
    eye = target + distance * offset
    forward = (target - eye) / (target - eye).norm()
    right = torch.linalg.cross(forward, torch.tensor([0.0, 1.0, 0.0]))
    right = right / right.norm()
    down = torch.linalg.cross(forward, right)
    view = torch.eye(4)
    view[:3, :3] = torch.stack([right, down, forward])
    view[:3, 3] = -view[:3, :3] @ eye
    return view


def _project(model: FlameModel, camera: torch.Tensor, eye_pose: torch.Tensor | None = None):
    """``(pixels [1, L, 2], visible [1, L], ids [L])`` as the F-SDS guidance computes them."""
    emb = model.landmark_embedding
    verts = model(eye_pose=eye_pose).vertices
    lmk = emb(verts, model.faces)
    nrm = embedded_normals(vertex_normals(verts, model.faces), model.faces, emb.face_idx, emb.bary_coords)
    p = lmk @ camera[:3, :3].T + camera[:3, 3]
    n = nrm @ camera[:3, :3].T
    f = 0.5 * SIZE / math.tan(math.radians(25.0))  # 50 degree field of view
    px = f * p[..., :2] / p[..., 2:] + SIZE / 2
    return px, landmark_visibility(p, n), emb.landmark_indices


def _mask(image: torch.Tensor, rgb: tuple[int, int, int]) -> torch.Tensor:
    return (image * 255).round().long().eq(torch.tensor(rgb).view(3, 1, 1)).all(0)


def test_flame_folder_maps_show_the_oval_and_the_pupils(flame_file, model):
    target = model().vertices[0].mean(0)
    px, vis, ids = _project(model, _camera(0.0, 0.0, 0.35, target))
    image = draw_control_map(px, vis, ids, size=SIZE)[0]
    # the whole oval is seen from the front and drawn as one closed loop
    rows = [ids.tolist().index(i) for i in FACE_OVAL_IDS]
    assert vis[0, rows].all()
    loop = px[0, rows]
    perimeter = float((loop - loop.roll(1, 0)).norm(dim=1).sum())
    assert _mask(image, OVAL_RGB).sum() > 1.5 * perimeter  # a 2-px line all the way round
    for pid, rgb in PUPIL_PALETTE.items():
        pupil = _mask(image, rgb)
        assert pupil.sum() == 16  # the annotator's 4x4 square
        ys, xs = pupil.nonzero(as_tuple=True)
        centre = px[0, ids.tolist().index(pid)]
        assert abs(float(xs.float().mean()) + 0.5 - float(centre[0])) <= 1.0
    # without the derived points (the 105-point file alone) neither would be drawn
    plain = FlameModel.from_file(flame_file, derive_landmarks=False)
    px, vis, ids = _project(plain, _camera(0.0, 0.0, 0.35, target))
    image = draw_control_map(px, vis, ids, size=SIZE)[0]
    assert _mask(image, OVAL_RGB).sum() == 0
    assert all(_mask(image, rgb).sum() == 0 for rgb in PUPIL_PALETTE.values())


def test_pupils_move_with_eye_pose(model):
    target = model().vertices[0].mean(0)
    camera = _camera(0.0, 0.0, 0.35, target)

    def pupil_centres(eye_pose):
        px, vis, ids = _project(model, camera, eye_pose)
        image = draw_control_map(px, vis, ids, size=SIZE)[0]
        out = []
        for rgb in PUPIL_PALETTE.values():
            ys, xs = _mask(image, rgb).nonzero(as_tuple=True)
            assert len(xs) == 16
            out.append(torch.stack([xs.float().mean(), ys.float().mean()]))
        return torch.stack(out)  # [2 pupils, (x, y)] pixels

    rest = pupil_centres(None)
    look_left = torch.tensor([[0.0, 0.35, 0.0, 0.0, 0.35, 0.0]])  # both eyes turn towards +x
    look_down = torch.tensor([[0.3, 0.0, 0.0, 0.3, 0.0, 0.0]])
    dx = pupil_centres(look_left) - rest
    dy = pupil_centres(look_down) - rest
    assert (dx[:, 0] > 4).all() and (dx[:, 1].abs() < 2).all()  # world +x is image right
    assert (dy[:, 1] > 4).all() and (dy[:, 0].abs() < 2).all()  # gaze down: image y grows


NEAR_FRONTAL = [(0, 0, 0.3), (0, 20, 0.3), (0, -20, 0.3), (15, 0, 0.4), (-15, 10, 0.35)]


@pytest.mark.parametrize(("azimuth", "elevation", "distance"), NEAR_FRONTAL)
def test_oval_is_not_culled_in_frontal_views(model, azimuth, elevation, distance):
    """The oval sits on the face's outline; the facing test must not drop it in near-frontal views,
    where a photograph shows all of it (training cameras: 0.3–0.4 m away, ±30 degrees elevation)."""
    target = model().vertices[0].mean(0)
    _, vis, ids = _project(model, _camera(azimuth, elevation, distance, target))
    rows = [ids.tolist().index(i) for i in FACE_OVAL_IDS]
    assert vis[0, rows].all(), [i for i, v in zip(FACE_OVAL_IDS, vis[0, rows].tolist()) if not v]
    # the far side stays hidden: the subject's right cheek in profile from +x, its pupil from behind
    _, vis, ids = _project(model, _camera(90.0, 0.0, 0.35, target))
    assert not vis[0, [ids.tolist().index(i) for i in (234, 93, 132)]].any()
    _, vis, ids = _project(model, _camera(120.0, 0.0, 0.35, target))
    assert not vis[0, ids.tolist().index(468)]


def _eye_centre_x(image: torch.Tensor, rgb: tuple[int, int, int]) -> float:
    ys, xs = _mask(image, rgb).nonzero(as_tuple=True)
    assert len(xs) > 0, rgb
    return float(xs.float().mean())


@pytest.mark.parametrize("derive", [True, False])
def test_subjects_left_eye_is_on_the_image_right_in_its_colour(flame_file, derive):
    """A frontal view (camera on +z, the face looking at it, unmirrored): the subject's left eye
    (MediaPipe's LEFT_EYE, the head's +x side) lies on the image's right and is (10, 200, 180);
    the right eye, on the image's left, is (180, 200, 10); the same for the brows."""
    model = FlameModel.from_file(flame_file, derive_landmarks=derive)
    target = model().vertices[0].mean(0)
    px, vis, ids = _project(model, _camera(0.0, 0.0, 0.35, target))
    image = draw_control_map(px, vis, ids, size=SIZE)[0]
    centre = SIZE / 2
    assert _eye_centre_x(image, (10, 200, 180)) > centre + 20  # left eye, image right
    assert _eye_centre_x(image, (180, 200, 10)) < centre - 20  # right eye, image left
    assert _eye_centre_x(image, (10, 220, 180)) > centre + 20  # left brow
    assert _eye_centre_x(image, (180, 220, 10)) < centre - 20  # right brow
    left_eye = [ids.tolist().index(i) for i in (263, 362)]  # MediaPipe LEFT_EYE corners
    assert (px[0, left_eye, 0] > centre).all()


@pytest.mark.parametrize(
    ("azimuth", "elevation", "expected"),
    [
        (0, 0, True),
        (45, 20, True),
        (-90, 0, True),
        (100, -20, True),
        (150, 0, False),
        (180, 10, False),
        (-135, 30, False),
    ],
)
def test_face_in_view_keeps_front_and_profile_drops_back(model, azimuth, elevation, expected):
    """Front, three-quarter and profile views keep the ControlNet; back views, where no eye is in
    sight and the map would be empty or a few stray lines, drop it."""
    target = model().vertices[0].mean(0)
    px, vis, ids = _project(model, _camera(float(azimuth), float(elevation), 0.35, target))
    assert face_in_view(vis, ids).tolist() == [expected]
    if not expected:  # what would have been drawn: at most a few stray strokes
        image = draw_control_map(px, vis, ids, size=SIZE)[0]
        front = draw_control_map(*_project(model, _camera(0.0, 0.0, 0.35, target)), size=SIZE)[0]
        assert (image.sum(0) > 0).sum() < 0.25 * (front.sum(0) > 0).sum()
