"""The teacher's hair volume: hair in the side and back silhouettes, the face left as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flame_core import FlameParams
from flame_core.model import FlameModel
from headstudio.cameras import head_target, orbit_camera
from headstudio.demo.teacher import build_teacher_avatar
from headstudio.demo.teacher_hair import TOP_BACK_THICKNESS

SIZE = 128
DISTANCE = 0.7


@pytest.fixture(scope="module")
def head() -> FlameModel:
    return FlameModel.procedural(num_shape=10, num_expression=10)


@pytest.fixture(scope="module")
def pair(head: FlameModel):  # noqa: ANN201
    """The teacher with and without its hair volume."""
    with_hair = build_teacher_avatar(head, points_per_face=1)
    return with_hair, build_teacher_avatar(head, points_per_face=1, hair=False)


def _render(avatar, az: float, el: float = 0.0, params: FlameParams | None = None):  # noqa: ANN001, ANN202
    tgt = head_target(avatar.pose()[0])  # the neutral head: the same camera for both avatars
    vm, K = orbit_camera(az, el, DISTANCE, 40.0, SIZE, SIZE, tgt)
    with torch.no_grad():
        out = avatar.render(vm[None], K[None], SIZE, SIZE, params, background=(1.0, 1.0, 1.0))
    return out.rgb[0, 0].numpy(), out.alpha[0, 0, ..., 0].numpy(), vm, K


def _pixel_size(K: torch.Tensor) -> float:
    """Metres per pixel at the head's distance."""
    return DISTANCE / float(K[0, 0])


def test_hair_raises_the_silhouette_above_and_behind_the_skull(pair) -> None:  # noqa: ANN001
    hair, bald = pair
    # side view: the top edge
    img_h, a_h, _, K = _render(hair, 90.0)
    _, a_b, _, _ = _render(bald, 90.0)
    solid_h, solid_b = a_h > 0.5, a_b > 0.5
    assert (solid_b & ~solid_h).sum() <= 2  # the hair only adds to the silhouette
    rows = np.arange(SIZE)[:, None]
    top_h = np.where(solid_h, rows, SIZE).min(0)  # topmost covered row per column
    top_b = np.where(solid_b, rows, SIZE).min(0)
    skull = top_b < SIZE // 2  # columns where the skull's top is in the upper half
    raised = (top_b - top_h)[skull]
    px = _pixel_size(K)
    # the crown's hair is TOP_BACK_THICKNESS thick (1.5 cm, 4 px at 0.7 m): most of it shows,
    # and the hair raises most of the skull's top contour by at least a pixel
    assert raised.max() * px >= 0.6 * TOP_BACK_THICKNESS, raised
    assert (raised >= 1).mean() > 0.6, raised
    # the hair is dark where it stands above the skull
    above = solid_h & ~solid_b
    assert above.sum() > 50 and img_h[above].mean() < 0.45
    # behind: the back of the head moves out (the far edge from the face, in the upper half)
    _, _, vm, K = _render(bald, 90.0)
    ends = torch.tensor([[0.0, 0.0, 0.1], [0.0, 0.0, -0.1]])  # in front of / behind the head
    cam = ends @ vm[:3, :3].T + vm[:3, 3]
    u = ((cam @ K.T)[:, 0] / cam[:, 2]).numpy()
    sign = 1 if u[1] > u[0] else -1  # +1: the back of the head is on the image's right
    cols = sign * np.arange(SIZE)[None, :]
    back_h = np.where(solid_h, cols, -(10**6)).max(1)  # the backmost covered column per row
    back_b = np.where(solid_b, cols, -(10**6)).max(1)
    crown = np.flatnonzero(solid_b.any(1))[:12]  # the skull's top rows (the crown down to ~4 cm)
    pushed = (back_h - back_b)[crown]
    assert pushed.max() >= 2 and (pushed >= 1).mean() > 0.6, pushed
    # back view: the top of the head rises too
    _, a_h, _, _ = _render(hair, 180.0)
    _, a_b, _, _ = _render(bald, 180.0)
    assert np.where(a_b > 0.5, rows, SIZE).min() - np.where(a_h > 0.5, rows, SIZE).min() >= 2


def test_the_face_is_unchanged(head: FlameModel, pair) -> None:  # noqa: ANN001
    """Front and three-quarter views with the mouth open: the hair changes no pixel of the face
    (eye corners to eye corners, the brows down to the chin) nor of the forehead between the
    brows up to mid-forehead (landmark 151)."""
    hair, bald = pair
    emb = head.landmark_embedding
    ids = [105, 334, 152, 33, 263, 151]  # brows, chin, outer eye corners, mid-forehead
    with torch.no_grad():
        lm = emb.select(ids)(head().vertices, head.faces)[0]
    jaw = FlameParams(jaw_pose=torch.tensor([[0.25, 0.0, 0.0]]))
    for az in (0.0, 30.0, -30.0):
        img_h, _, vm, K = _render(hair, az, params=jaw)
        img_b, _, _, _ = _render(bald, az, params=jaw)
        diff = np.abs(img_h - img_b).max(-1)
        cam = lm @ vm[:3, :3].T + vm[:3, 3]
        uv = ((cam @ K.T)[:, :2] / cam[:, 2:]).numpy()
        brow_top, chin = int(uv[:2, 1].min()), int(uv[2, 1]) + 1
        x0, x1 = int(uv[3:5, 0].min()) - 2, int(uv[3:5, 0].max()) + 3
        face = diff[brow_top + 2 : chin, x0:x1]
        assert face.size > 600 and face.max() < 1e-5, (az, face.max())
        b0, b1 = int(uv[:2, 0].min()) + 2, int(uv[:2, 0].max()) - 1
        forehead = diff[int(uv[5, 1]) : brow_top + 1, b0:b1]
        assert forehead.size > 40 and forehead.max() < 1e-5, (az, forehead.max())


def test_hair_is_bound_to_the_scalp_and_follows_the_head(head: FlameModel, pair) -> None:  # noqa: ANN001
    hair, bald = pair
    n = bald.num_gaussians
    assert hair.num_gaussians > n + 1000
    torch.testing.assert_close(hair.means[:n], bald.means, rtol=0, atol=0)  # the surface as it was
    ids = hair.face_ids[n:]
    base = head.num_base_faces
    assert int(ids.max()) < base  # skin, not the mouth interior
    world = hair.world_gaussians()["means"].detach()
    vert = head().vertices[0]
    centroid = vert[head.faces[ids]].mean(1)
    assert (centroid[:, 1] > 0.0).all()  # above the ears: the scalp
    off = (world[n:] - centroid).norm(dim=-1)
    assert off.max() < TOP_BACK_THICKNESS + 0.012  # within the thickness (plus the triangle)
    # a turned head carries its hair: the hair's offsets from their triangles turn rigidly
    neck = FlameParams(neck_pose=torch.tensor([[0.0, 0.6, 0.0]]))
    turned = hair.world_gaussians(neck)["means"].detach()[n:]
    v2 = hair.pose(neck)[0]
    c2 = v2[head.faces[ids]].mean(1)
    torch.testing.assert_close((turned - c2).norm(dim=-1), off, atol=2e-4, rtol=0)
