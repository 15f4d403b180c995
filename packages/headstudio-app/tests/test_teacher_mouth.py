"""The teacher's mouth interior: a dark cavity and white teeth show when the jaw opens."""

from __future__ import annotations

import pytest
import torch
from flame_core import FlameParams
from flame_core.model import FlameModel
from headstudio.cameras import head_target, orbit_camera
from headstudio.demo.teacher import TEACHER_COLORS, build_teacher_avatar

SIZE = 128


@pytest.fixture(scope="module")
def teacher():  # noqa: ANN201
    head = FlameModel.procedural(num_shape=10, num_expression=10)
    assert head.mouth_interior is not None  # the procedural head has one by default
    return build_teacher_avatar(head, seed=0, points_per_face=2)


def _mouth_pixels(teacher, jaw: float) -> torch.Tensor:  # noqa: ANN001
    """Pixels ``[n, 3]`` inside the inner-lip box (between 78/308 and 13/14) of a frontal close-up."""
    head = teacher.head
    jaw_pose = torch.tensor([[jaw, 0.0, 0.0]])
    with torch.no_grad():
        verts = teacher.pose(FlameParams(jaw_pose=jaw_pose))
        lm = head.landmark_embedding.select([13, 14, 78, 308])(verts, head.faces)[0]
        tgt = head_target(teacher.pose()[0])
        vm, K = orbit_camera(0.0, 0.0, 0.3, 40.0, SIZE, SIZE, tgt)
        img = teacher.render(
            vm[None], K[None], SIZE, SIZE, FlameParams(jaw_pose=jaw_pose), background=(1.0, 1.0, 1.0)
        )
    img = img.rgb[0, 0]
    cam = lm @ vm[:3, :3].T + vm[:3, 3]
    uv = (cam @ K.T)[:, :2] / cam[:, 2:]
    x0, x1 = int(uv[2, 0]) + 2, int(uv[3, 0]) - 2
    y0, y1 = int(uv[0, 1]) + 1, int(uv[1, 1]) - 1
    return img[y0 : y1 + 1, x0 : x1 + 1].reshape(-1, 3)


def test_open_mouth_shows_a_dark_inside_and_teeth(teacher) -> None:  # noqa: ANN001
    px = _mouth_pixels(teacher, 0.3)
    assert len(px) > 40
    dark = (px.sum(-1) < 0.9).float().mean()
    white = (px.min(-1).values > 0.7).float().mean()
    red = ((px[:, 0] - px[:, 1:].mean(-1)) > 0.35).float().mean()
    # measured: 17 % dark, 11 % teeth, 42 % red (the inner lips); without an interior: a red blob
    assert dark > 0.12, f"only {dark:.0%} of the open mouth is dark"
    assert red < 0.6, f"{red:.0%} of the open mouth is lip-red"
    assert white > 0.05, f"only {white:.0%} of the open mouth shows teeth"
    skin = torch.tensor(TEACHER_COLORS["skin"])
    assert ((px - skin).norm(dim=-1) < 0.1).float().mean() < 0.1  # not skin-coloured between the lips


def test_interior_colours(teacher) -> None:  # noqa: ANN001
    from headstudio.avatar import SH_C0

    mi = teacher.head.mouth_interior
    rgb = teacher.sh[:, 0, :] * SH_C0 + 0.5
    for name in ("cavity", "upper_teeth", "tongue"):
        on = torch.isin(teacher.face_ids, torch.as_tensor(mi.part_faces(name)))
        assert on.any()
        torch.testing.assert_close(rgb[on].mean(0), torch.tensor(TEACHER_COLORS[name]), atol=1e-4, rtol=0)
