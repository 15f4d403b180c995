"""The procedurally textured teacher avatar used by the offline demo."""

from __future__ import annotations

import pytest
import torch
from flame_core.model import FlameModel
from headstudio.avatar import SH_C0
from headstudio.cameras import head_target, orbit_camera
from headstudio.demo.teacher import TEACHER_COLORS, build_teacher_avatar, teacher_colors
from headstudio.errors import HeadStudioError

SIZE = 64


@pytest.fixture(scope="module")
def head() -> FlameModel:
    return FlameModel.procedural(num_shape=10, num_expression=10)


@pytest.fixture(scope="module")
def teacher(head: FlameModel):  # noqa: ANN201
    return build_teacher_avatar(head, seed=0, points_per_face=1)


def landmarks(head: FlameModel) -> dict[int, torch.Tensor]:
    emb = head.landmark_embedding
    pos = emb(head().vertices, head.faces)[0]
    return {int(m): pos[i] for i, m in enumerate(emb.landmark_indices.tolist())}


def redness(rgb: torch.Tensor) -> torch.Tensor:
    return rgb[..., 0] - 0.5 * (rgb[..., 1] + rgb[..., 2])


def test_front_render_has_the_painted_regions(head: FlameModel, teacher) -> None:  # noqa: ANN001
    lm = landmarks(head)
    tgt = head_target(teacher.pose()[0])
    vm, K = orbit_camera(0.0, 0.0, 0.45, 40.0, SIZE, SIZE, tgt)
    with torch.no_grad():
        out = teacher.render(vm[None], K[None], SIZE, SIZE, background=(1.0, 1.0, 1.0))
    img = out.rgb[0, 0]
    assert img.std() > 0.1  # not a constant image

    def at(p: torch.Tensor, r: int = 0) -> torch.Tensor:
        cam = vm[:3, :3] @ p + vm[:3, 3]
        u, v = (K @ cam)[:2] / cam[2]
        x, y = int(u), int(v)
        return img[y - r : y + r + 1, x - r : x + r + 1].reshape(-1, 3).mean(0)

    lips = at((lm[0] + lm[17]) / 2)  # between the upper- and lower-lip centres
    cheek = at(lm[50], 1)
    forehead = at((lm[10] + lm[9]) / 2 if 9 in lm else lm[10] - torch.tensor([0, 0.01, 0]))
    top = at(torch.tensor([0.0, 0.105, 0.03]))
    assert redness(lips) > redness(cheek) + 0.1, (lips, cheek)
    assert lips.sum() < cheek.sum()  # lips are darker red, not just pink
    assert top.sum() < 0.5 * forehead.sum(), (top, forehead)  # dark hair on top, bright skin


def test_colors_by_region(head: FlameModel, teacher) -> None:  # noqa: ANN001
    colors = 0.5 + SH_C0 * teacher.sh[:, 0].detach()
    world = teacher.world_gaussians()["means"].detach()
    lm = landmarks(head)

    def nearest(p: torch.Tensor) -> torch.Tensor:
        return colors[(world - p).norm(dim=-1).argmin()]

    torch.testing.assert_close(nearest((lm[0] + lm[17]) / 2), torch.tensor(TEACHER_COLORS["lips"]))
    torch.testing.assert_close(nearest(lm[468]), torch.tensor(TEACHER_COLORS["pupil"]), atol=1e-6, rtol=0)
    torch.testing.assert_close(nearest(lm[473]), torch.tensor(TEACHER_COLORS["pupil"]), atol=1e-6, rtol=0)
    back_of_head = nearest(torch.tensor([0.0, 0.05, -0.095]))
    assert back_of_head.sum() < 0.8  # hair at the back
    brow = nearest(lm[105])
    assert brow.sum() < 0.8
    assert colors.min() >= 0 and colors.max() <= 1
    # skin varies smoothly: neighbouring Gaussians on the cheek have close colours, not all equal
    near_cheek = (world - lm[50]).norm(dim=-1) < 0.02
    c = colors[near_cheek]
    assert c.std(0).max() > 1e-3 and c.std(0).max() < 0.08


def test_deterministic_and_seeded(head: FlameModel, teacher) -> None:  # noqa: ANN001
    again = build_teacher_avatar(head, seed=0, points_per_face=1)
    assert torch.equal(again.sh, teacher.sh) and torch.equal(again.means, teacher.means)
    other = build_teacher_avatar(head, seed=1, points_per_face=1)
    assert not torch.equal(other.sh, teacher.sh)
    assert torch.sigmoid(teacher.opacity_logits).min() > 0.9
    assert teacher.metadata["teacher"] is True


def test_needs_a_landmark_embedding(head: FlameModel) -> None:
    class NoLandmarks(torch.nn.Module):
        faces = head.faces
        landmark_embedding = None

        def forward(self):  # noqa: ANN202
            return head()

    with pytest.raises(HeadStudioError, match="landmark embedding"):
        teacher_colors(NoLandmarks(), torch.zeros(1, 3), torch.zeros(1, dtype=torch.long))
