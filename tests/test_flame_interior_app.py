"""The mouth interior on a FLAME file's head, through the app: new avatars get it by default
(``head.mouth_interior``), the avatar file records it, old files load as before, the viewer's
head model and the web export carry its triangles, and landmarks are unchanged.

The FLAME file is the procedural head reshaped (template stretched per axis), its expression
basis mixed by a random orthogonal matrix, saved as a FLAME pickle with only the 105-point
embedding beside it (what FLAME's release has)."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from flame_core import FlameModel
from flame_core.procedural import build_procedural_head
from headstudio.avatar import Avatar
from headstudio.config import HeadStudioConfig, InitConfig
from headstudio.train.runtime import load_avatar
from headstudio.train.trainer_build import _head_from_config
from rigged_gaussians.ply import load_ply, save_ply

NS, NE = 10, 10

pytestmark = pytest.mark.slow  # each FLAME load derives landmarks (and builds the interior): seconds


@pytest.fixture(scope="module")
def flame_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = (
        build_procedural_head()
        .disguised(seed=3, stretch=(1.08, 0.95, 1.05))
        .save(tmp_path_factory.mktemp("flame"), full_embedding=False)
    )
    return folder / "procedural_flame.pkl"


@pytest.fixture(scope="module")
def heads(flame_file: Path) -> tuple[FlameModel, FlameModel]:
    """``(with_interior, plain)``: the app's head of a new avatar, and flame_core's default."""
    return _head_from_config(_config(flame_file)), FlameModel.from_file(flame_file, NS, NE)


def _config(flame_file: Path, **head: object) -> HeadStudioConfig:
    cfg = HeadStudioConfig()
    cfg.head = dataclasses.replace(
        cfg.head, flame_path=str(flame_file), num_shape=NS, num_expression=NE, **head
    )
    return cfg


def _avatar(head: FlameModel) -> Avatar:
    return Avatar.initialize(head, InitConfig(points_per_face=1), torch.Generator().manual_seed(0))


def _header(path: Path) -> dict:
    return load_ply(path).metadata


def test_new_avatars_on_a_flame_file_get_the_interior(flame_file: Path, heads, tmp_path: Path) -> None:  # noqa: ANN001
    head, plain = heads
    assert plain.mouth_interior is None  # flame_core's own default is unchanged
    mi = head.mouth_interior
    assert mi is not None and head.num_base_faces == plain.num_faces < head.num_faces
    avatar = _avatar(head)
    on_interior = avatar.face_ids >= head.num_base_faces
    assert on_interior.sum() == head.num_faces - head.num_base_faces  # one Gaussian per triangle
    path = avatar.save(tmp_path / "a.ply")
    assert _header(path)["head"]["mouth_interior"] is True
    # loaded by the file's own record, and through the CLI's loader with the FLAME file given
    for loaded in (Avatar.load(path), load_avatar(path, flame_file, "cpu")):
        assert loaded.head.mouth_interior is not None
        assert loaded.head.identity_hash() == head.identity_hash()
        assert torch.equal(loaded.face_ids, avatar.face_ids)


def test_the_switch_turns_it_off(flame_file: Path, heads, tmp_path: Path) -> None:  # noqa: ANN001
    head = _head_from_config(_config(flame_file, mouth_interior=False))
    assert head.mouth_interior is None
    assert head.identity_hash() == heads[1].identity_hash()
    path = _avatar(head).save(tmp_path / "a.ply")
    assert _header(path)["head"]["mouth_interior"] is False
    assert Avatar.load(path).head.mouth_interior is None
    assert load_avatar(path, flame_file, "cpu").head.mouth_interior is None


def test_old_files_without_the_record_load_as_before(flame_file: Path, heads, tmp_path: Path) -> None:  # noqa: ANN001
    """A file written before the record (FLAME heads had no interior then) loads without one."""
    head = heads[1]
    new = _avatar(head).save(tmp_path / "new.ply")
    ply = load_ply(new)
    meta = json.loads(json.dumps(ply.metadata))
    del meta["head"]["mouth_interior"]
    old = tmp_path / "old.ply"
    save_ply(old, ply.means, ply.quats, ply.scales, ply.opacities, ply.sh, extra=ply.extra, metadata=meta)
    assert "mouth_interior" not in _header(old)["head"]
    for loaded in (Avatar.load(old), load_avatar(old, flame_file, "cpu")):
        assert loaded.head.mouth_interior is None
        assert loaded.head.identity_hash() == head.identity_hash()
    # a damaged record is named
    meta["head"]["mouth_interior"] = "yes"
    save_ply(old, ply.means, ply.quats, ply.scales, ply.opacities, ply.sh, extra=ply.extra, metadata=meta)
    with pytest.raises(Exception, match="mouth_interior"):
        Avatar.load(old)


def test_landmarks_are_unchanged(heads) -> None:  # noqa: ANN001
    with_mi, without = heads
    g = torch.Generator().manual_seed(5)
    pose = {
        "expression": 0.8 * torch.randn(3, NE, generator=g),
        "jaw_pose": torch.tensor([[0.3, 0.0, 0.0], [0.1, 0.05, 0.0], [0.0, 0.0, 0.0]]),
        "neck_pose": 0.2 * torch.randn(3, 3, generator=g),
    }
    with torch.no_grad():
        a, b = with_mi(**pose).vertices, without(**pose).vertices
        la = with_mi.landmark_embedding(a, with_mi.faces)
        lb = without.landmark_embedding(b, without.faces)
    V = without.num_vertices
    torch.testing.assert_close(a[:, :V], b, rtol=0, atol=1e-6)  # the interior only appends
    torch.testing.assert_close(la, lb, rtol=0, atol=1e-6)
    assert torch.equal(
        with_mi.landmark_embedding.landmark_indices, without.landmark_embedding.landmark_indices
    )


def test_viewer_head_model_and_web_export_carry_the_interior(heads, tmp_path: Path) -> None:  # noqa: ANN001
    from flame_core.motion import procedural_talking_motion
    from headstudio.output.export import export_web
    from headstudio.output.viewer.assets import unpack_arrays

    head = heads[0]
    avatar = _avatar(head)
    out = export_web(
        avatar, tmp_path / "web", procedural_talking_motion(num_frames=3, fps=30.0), include_head_model=True,
        progress=False,
    )  # fmt: skip
    text = (out / "data.js").read_text()
    payload = json.loads(text[text.index("=") + 1 : text.rindex(";")])
    m = payload["manifest"]
    assert (m["num_faces"], m["num_vertices"]) == (head.num_faces, head.num_vertices)
    blobs = {k: base64.b64decode(v) for k, v in payload["blobs"].items()}
    arrays = unpack_arrays(blobs["avatar.bin"], m["buffers"]["avatar.bin"])
    np.testing.assert_array_equal(arrays["faces"], head.faces.numpy())
    model = unpack_arrays(blobs["head.bin"], m["buffers"]["head.bin"])
    assert model["v_rest"].shape[0] == head.num_vertices and model["weights"].shape[0] == head.num_vertices


def test_a_flame_file_without_an_embedding_gets_none(
    tiny_flame: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The interior is built from the lips' landmarks: a file without an embedding gets none."""
    cfg = HeadStudioConfig()
    cfg.head = dataclasses.replace(cfg.head, flame_path=str(tiny_flame), num_shape=10, num_expression=10)
    with caplog.at_level(logging.WARNING):
        head = _head_from_config(cfg)
    assert head.mouth_interior is None and head.landmark_embedding is None
    assert any("gets no mouth interior" in r.getMessage() for r in caplog.records)
