"""The Avatar: posing, rendering, gradients, parameter groups and the PLY file format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from flame_core import FlameParams
from flame_core.model import FlameModel
from headstudio.avatar import SH_C0, Avatar, AvatarRender
from headstudio.cameras import head_target, orbit_camera
from headstudio.config import InitConfig, TrainConfig
from headstudio.errors import HeadStudioError
from rigged_gaussians.reference import deform, triangle_frames

SIZE = 32


@pytest.fixture(scope="module")
def head() -> FlameModel:
    return FlameModel.procedural(num_shape=10, num_expression=10)


@pytest.fixture
def avatar(head: FlameModel) -> Avatar:
    av = Avatar.initialize(head, InitConfig(points_per_face=1), torch.Generator().manual_seed(0))
    with torch.no_grad():  # make it less trivial than the init: colours, anisotropy, a shape
        g = torch.Generator().manual_seed(1)
        av.sh.add_(0.3 * torch.randn(av.sh.shape, generator=g))
        av.log_scales.add_(0.3 * torch.randn(av.log_scales.shape, generator=g))
        av.quats.add_(0.2 * torch.randn(av.quats.shape, generator=g))
        av.opacity_logits.add_(torch.randn(av.opacity_logits.shape, generator=g))
        av.shape.add_(0.5 * torch.randn(av.shape.shape, generator=g))
    return av


def cameras(avatar: Avatar, azimuths: list[float], dist: float = 0.45) -> tuple[torch.Tensor, torch.Tensor]:
    tgt = head_target(avatar.pose()[0])
    vms, ks = zip(*(orbit_camera(a, 0.0, dist, 40.0, SIZE, SIZE, tgt) for a in azimuths))
    return torch.stack(vms), torch.stack(ks)


def test_initialize(head: FlameModel) -> None:
    av = Avatar.initialize(head, InitConfig(points_per_face=2, sh_degree=1), torch.Generator().manual_seed(0))
    assert av.num_gaussians == 2 * head.num_faces
    assert av.sh_degree == 1 and av.sh.shape == (av.num_gaussians, 4, 3)
    torch.testing.assert_close(torch.sigmoid(av.opacity_logits), torch.full((av.num_gaussians,), 0.1))
    # the DC coefficient renders the configured grey: 0.5 + C0 * dc
    torch.testing.assert_close(0.5 + SH_C0 * av.sh[:, 0], torch.full((av.num_gaussians, 3), 0.5))
    assert torch.equal(av.sh[:, 1:], torch.zeros_like(av.sh[:, 1:]))
    assert torch.equal(av.shape, torch.zeros(1, head.num_shape))
    assert torch.equal(
        torch.bincount(av.face_ids, minlength=head.num_faces), torch.full((head.num_faces,), 2)
    )
    # the head is not a submodule: checkpoints hold only the avatar's own tensors
    assert set(av.state_dict()) == {
        "means",
        "quats",
        "log_scales",
        "opacity_logits",
        "sh",
        "shape",
        "face_ids",
    }


def test_render_shapes(avatar: Avatar) -> None:
    vms, ks = cameras(avatar, [0.0, 90.0])
    B = 2
    expr = torch.zeros(B, 10)
    expr[1, 0] = 2.0
    bg = torch.tensor([[[1.0, 1.0, 1.0], [0.0, 1.0, 0.0]], [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]])
    vms_b, ks_b = vms[None].expand(B, -1, -1, -1), ks[None].expand(B, -1, -1, -1)
    out = avatar.render(vms_b, ks_b, SIZE, SIZE, FlameParams(expression=expr), background=bg, depth=True)
    assert isinstance(out, AvatarRender)
    assert out.rgb.shape == (B, 2, SIZE, SIZE, 3) and out.alpha.shape == (B, 2, SIZE, SIZE, 1)
    assert out.depth.shape == (B, 2, SIZE, SIZE, 1)
    assert out.vertices.shape == (B, avatar.head.num_vertices, 3)
    assert out.meta.means2d.shape == (B * 2, avatar.num_gaussians, 2)
    # the head covers the image centre and not the corners, where each view shows its background
    assert out.alpha[0, 0, SIZE // 2, SIZE // 2, 0] > 0.9
    assert out.alpha[:, :, 0, 0].max() < 0.01
    torch.testing.assert_close(out.rgb[:, :, 0, 0], bg, atol=0.02, rtol=0)
    # the smiling pose differs from the neutral one, the two views differ from each other
    assert (out.rgb[0, 0] - out.rgb[1, 0]).abs().max() > 1e-3
    assert (out.rgb[0, 0] - out.rgb[0, 1]).abs().mean() > 1e-2
    # [C, 4, 4] cameras mean B = 1
    one = avatar.render(vms[:1], ks[:1], SIZE, SIZE)
    assert one.rgb.shape == (1, 1, SIZE, SIZE, 3)
    torch.testing.assert_close(one.rgb[0, 0], out.rgb[0, 0].where(out.alpha[0, 0] > 0.99, one.rgb[0, 0]))


def test_gradients_reach_all_parameters(avatar: Avatar) -> None:
    vms, ks = cameras(avatar, [30.0])
    jaw = FlameParams(jaw_pose=torch.tensor([[0.2, 0, 0]]))
    out = avatar.render(vms, ks, SIZE, SIZE, jaw, background=(0.2, 0.3, 0.4))
    target = torch.rand_like(out.rgb, generator=torch.Generator().manual_seed(0))
    ((out.rgb - target) ** 2).mean().backward()
    for name, p in avatar.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"no gradient reaches {name}"
    assert avatar.shape.grad.shape == (1, 10)


def test_pose_and_bad_inputs(avatar: Avatar) -> None:
    neutral = avatar.pose()
    assert neutral.shape == (1, avatar.head.num_vertices, 3)
    # the learned shape is used
    plain = avatar.head(shape=torch.zeros(1, 10)).vertices
    assert (neutral - plain).abs().max() > 1e-4
    torch.testing.assert_close(avatar.pose(shape=torch.zeros(1, 10)), plain)
    jaw_pose = torch.tensor([[0.0, 0, 0], [0.3, 0, 0]])
    jaw = avatar.pose(FlameParams(jaw_pose=jaw_pose))
    assert jaw.shape[0] == 2
    torch.testing.assert_close(jaw[0], neutral[0])
    assert (jaw[1] - neutral[0]).abs().max() > 1e-3
    # the oracle: the head model itself, at the avatar's shape
    expr = torch.linspace(-1, 1, 20).reshape(2, 10)
    with torch.no_grad():
        want = avatar.head(shape=avatar.shape.expand(2, -1), jaw_pose=jaw_pose, expression=expr).vertices
        torch.testing.assert_close(avatar.pose(FlameParams(expression=expr, jaw_pose=jaw_pose)), want)
    with pytest.raises(HeadStudioError, match="batch sizes"):
        avatar.pose(FlameParams(jaw_pose=torch.zeros(2, 3), expression=torch.zeros(3, 10)))
    vms, ks = cameras(avatar, [0.0])
    with pytest.raises(HeadStudioError, match="B = 1"):
        avatar.render(vms, ks, SIZE, SIZE, FlameParams(jaw_pose=torch.zeros(2, 3)))
    with pytest.raises(HeadStudioError, match="Ks"):
        avatar.render(vms, ks[:, :2], SIZE, SIZE)
    with pytest.raises(HeadStudioError, match="background"):
        avatar.render(vms, ks, SIZE, SIZE, background=(1.0, 1.0))


def test_param_groups_and_set_gaussians(avatar: Avatar) -> None:
    params = avatar.gaussian_params()
    assert list(params) == ["means", "quats", "log_scales", "opacity_logits", "sh"]
    assert all(params[k] is getattr(avatar, k) for k in params)
    t = TrainConfig()
    groups = {g["name"]: g for g in avatar.optimizer_groups(t)}
    expected = {
        "means": 2e-4,  # the public code's 5e-5 x its spatial scale 4
        "log_scales": 5e-3,  # the public code's rates (issue 20)
        "quats": 1e-3,
        "sh": 1.25e-2,
        "opacity_logits": 1e-2,
        "shape": 1e-3,
    }
    assert {k: g["lr"] for k, g in groups.items()} == expected
    assert groups["shape"]["params"][0] is avatar.shape and groups["means"]["params"][0] is avatar.means
    opt = torch.optim.Adam(avatar.optimizer_groups(t), betas=t.betas)
    assert len(opt.param_groups) == 6
    # densification result: keep every other Gaussian plus duplicates of the first 3
    keep = torch.cat([torch.arange(0, avatar.num_gaussians, 2), torch.arange(3)])
    new = {k: torch.nn.Parameter(v.detach()[keep].clone()) for k, v in params.items()}
    avatar.set_gaussians(new, avatar.face_ids[keep])
    assert avatar.num_gaussians == keep.numel()
    assert avatar.means is new["means"] and avatar.gaussian_params()["sh"] is new["sh"]
    with pytest.raises(HeadStudioError, match="missing"):
        avatar.set_gaussians({"means": new["means"]}, avatar.face_ids)
    with pytest.raises(HeadStudioError, match="face_ids"):
        avatar.set_gaussians(new, avatar.face_ids[:-1])


def test_the_old_flame_keywords_are_refused_naming_flame_params(avatar: Avatar) -> None:
    """Before FlameParams, the pose was keyword arguments (``jaw_pose=...``): each method refuses
    them in one line that names the fix, as it does a dict given for ``params``."""
    vms, ks = cameras(avatar, [0.0])
    calls = {
        "pose": lambda **kw: avatar.pose(**kw),
        "render": lambda **kw: avatar.render(vms, ks, SIZE, SIZE, **kw),
        "world_gaussians": lambda **kw: avatar.world_gaussians(**kw),
    }
    for method, call in calls.items():
        with pytest.raises(TypeError) as ei:
            call(jaw_pose=torch.zeros(1, 3), expression=torch.zeros(1, 10))
        msg = str(ei.value)
        assert (
            msg.startswith(f"Avatar.{method}() takes the pose as one flame_core.FlameParams")
            and "\n" not in msg
        )
        assert "pass params=FlameParams(expression=..., jaw_pose=...)" in msg
        with pytest.raises(TypeError, match=r"\['smile'\]; pass params=FlameParams\(\.\.\.\)"):
            call(smile=torch.zeros(1, 1))
        with pytest.raises(
            TypeError, match=r"params must be a flame_core.FlameParams, got dict.*from_kwargs"
        ):
            call(params={"jaw_pose": torch.zeros(1, 3)})


def test_world_gaussians_follow_the_pose(avatar: Avatar) -> None:
    g = avatar.world_gaussians()
    n = avatar.num_gaussians
    assert g["means"].shape == (n, 3) and g["quats"].shape == (n, 4) and g["scales"].shape == (n, 3)
    frames = triangle_frames(avatar.pose(), avatar.head.faces)
    d = deform(avatar.means, avatar.quats, avatar.log_scales, avatar.face_ids, frames)
    torch.testing.assert_close(g["means"], d.means[0])
    torch.testing.assert_close(g["scales"], d.scales[0])
    torch.testing.assert_close(g["quats"].norm(dim=-1), torch.ones(n))
    torch.testing.assert_close(g["opacities"], torch.sigmoid(avatar.opacity_logits))
    opened = avatar.world_gaussians(FlameParams(jaw_pose=torch.tensor([[0.3, 0.0, 0.0]])))
    moved = (opened["means"] - g["means"]).norm(dim=-1)
    assert moved.max() > 1e-3 and moved.median() < 1e-5
    with pytest.raises(HeadStudioError, match="one pose"):
        avatar.world_gaussians(FlameParams(jaw_pose=torch.zeros(2, 3)))


# --------------------------------------------------------------------------------- file format


@pytest.fixture
def ply():  # noqa: ANN201 - the rigged_gaussians.ply module
    return pytest.importorskip("rigged_gaussians.ply")


def test_save_load_round_trip(avatar: Avatar, head: FlameModel, tmp_path: Path, ply) -> None:
    avatar.metadata["note"] = "test"
    path = avatar.save(tmp_path / "a.ply", config={"train": {"steps": 3}}, prompt="a bronze statue")
    assert path.is_file() and not list(tmp_path.glob(".*partial*"))
    back = Avatar.load(path, head=head)
    for name, p in avatar.named_parameters():
        assert torch.equal(getattr(back, name), p), name
    assert torch.equal(back.face_ids, avatar.face_ids)
    assert back.metadata["note"] == "test"
    assert back.metadata["prompt"] == "a bronze statue" and back.metadata["config"] == {"train": {"steps": 3}}
    # without an explicit head: the procedural head is rebuilt from the file's identity
    again = Avatar.load(path)
    assert again.head.identity_hash() == head.identity_hash()
    assert again.head.num_shape == 10 and again.head.num_expression == 10
    assert torch.equal(again.means, avatar.means) and torch.equal(again.shape, avatar.shape)
    # a head with fewer shape components cannot hold the learned shape
    small = FlameModel.procedural(num_shape=5, num_expression=10)
    with pytest.raises(HeadStudioError, match="num_shape >= 10"):
        Avatar.load(path, head=small)
    # re-saving a loaded avatar keeps prompt and config
    again.save(tmp_path / "b.ply")
    meta = ply.load_ply(tmp_path / "b.ply").metadata
    assert meta["prompt"] == "a bronze statue" and meta["metadata"] == {"note": "test"}


def test_file_is_a_world_space_3dgs_ply(avatar: Avatar, tmp_path: Path, ply) -> None:
    path = avatar.save(tmp_path / "a.ply")
    g = ply.load_ply(path)
    world = avatar.world_gaussians()
    np.testing.assert_allclose(np.asarray(g.means), world["means"].detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(np.asarray(g.scales), world["scales"].detach().numpy(), rtol=1e-5)
    np.testing.assert_allclose(
        np.asarray(g.opacities).reshape(-1), world["opacities"].detach().numpy(), atol=1e-5
    )
    np.testing.assert_allclose(np.asarray(g.sh), avatar.sh.detach().numpy(), atol=1e-7)
    meta = g.metadata
    assert meta["format"] == "headstudio-avatar" and meta["format_version"] == 1
    assert meta["head"]["identity_hash"] == avatar.head.identity_hash()
    assert meta["head"]["source"] == "procedural"
    assert meta["shape"] == pytest.approx(avatar.shape.detach().reshape(-1).tolist())
    assert meta["num_gaussians"] == avatar.num_gaussians and meta["sh_degree"] == 0
    json.dumps(meta)


def test_loading_on_another_head_is_an_error(avatar: Avatar, tmp_path: Path, ply) -> None:
    from flame_core.procedural import build_procedural_head

    path = avatar.save(tmp_path / "a.ply")
    d = {k: np.array(v, copy=True) for k, v in build_procedural_head().model_dict.items()}
    d["v_template"] = d["v_template"] * 1.05
    other = FlameModel(d, num_shape=10, num_expression=10, source="/models/other_flame.pkl")
    with pytest.raises(HeadStudioError) as ei:
        Avatar.load(path, head=other)
    msg = str(ei.value)
    assert "made on head model" in msg and "/models/other_flame.pkl" in msg
    assert "leave the head model out" in msg and ei.value.argument == "head"  # the CLI says --flame
    assert avatar.head.identity_hash()[:12] in msg and other.identity_hash()[:12] in msg


def test_foreign_ply_is_an_error(tmp_path: Path, ply) -> None:
    n = 5
    p = tmp_path / "plain.ply"
    ply.save_ply(
        p,
        np.zeros((n, 3), np.float32),
        np.tile(np.array([1.0, 0, 0, 0], np.float32), (n, 1)),
        np.full((n, 3), 0.01, np.float32),
        np.full((n,), 0.5, np.float32),
        np.zeros((n, 1, 3), np.float32),
        extra={},
        metadata={},
    )
    with pytest.raises(HeadStudioError, match="headstudio"):
        Avatar.load(p)
    with pytest.raises(HeadStudioError, match="does not exist"):
        Avatar.load(tmp_path / "missing.ply")
    with pytest.raises(HeadStudioError, match=r"\.ply"):
        Avatar.initialize(FlameModel.procedural(num_shape=10, num_expression=10), InitConfig(1)).save(
            tmp_path / "a.txt"
        )
