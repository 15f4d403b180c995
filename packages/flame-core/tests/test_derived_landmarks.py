"""Face oval and irises derived from the model when a FLAME folder has only the 105-point embedding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flame_core import FlameModel
from flame_core.derived_landmarks import complete_mediapipe_embedding, face_oval_embedding, iris_embedding
from flame_core.landmarks import LandmarkEmbedding
from flame_core.mediapipe_mesh import FACE_OVAL_IDS, LEFT_IRIS_IDS, RIGHT_IRIS_IDS
from flame_core.procedural import build_procedural_head
from flame_core.rotations import axis_angle_to_matrix

IRIS_IDS = list(RIGHT_IRIS_IDS + LEFT_IRIS_IDS)


@pytest.fixture(scope="module")
def head():
    return build_procedural_head()


@pytest.fixture(scope="module")
def flame_folder(head, tmp_path_factory):
    """The procedural head saved as FLAME's release ships: the model and the 105-point embedding."""
    return head.save(tmp_path_factory.mktemp("flame105"), full_embedding=False) / "procedural_flame.pkl"


def _points(emb: LandmarkEmbedding, ids, verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    return emb.select(list(ids))(torch.as_tensor(verts)[None], torch.as_tensor(faces))[0].numpy()


def _inside(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd rule: which ``points [N, 2]`` lie inside the closed ``polygon [M, 2]``."""
    a, b = polygon, np.roll(polygon, -1, 0)
    x, y = points[:, None, 0], points[:, None, 1]
    crosses = (a[:, 1] > y) != (b[:, 1] > y)
    dy = np.where(b[:, 1] == a[:, 1], 1e-30, b[:, 1] - a[:, 1])
    xc = a[:, 0] + (y - a[:, 1]) * (b[:, 0] - a[:, 0]) / dy
    return (crosses & (x < xc)).sum(1) % 2 == 1


def test_folder_with_105_points_gets_oval_and_irises(head, flame_folder):
    model = FlameModel.from_file(flame_folder)
    emb = model.landmark_embedding
    ids = emb.landmark_indices.tolist()
    assert len(emb) == 105 + 36 + 10
    assert ids[:105] == head.embedding105.landmark_indices.tolist()  # the file's rows come first, as read
    assert set(ids[105:]) == set(FACE_OVAL_IDS) | set(IRIS_IDS)
    torch.testing.assert_close(emb.face_idx[:105], head.embedding105.face_idx)
    plain = FlameModel.from_file(flame_folder, derive_landmarks=False).landmark_embedding
    assert len(plain) == 105
    # the procedural head's own 478-row embedding already has both: nothing is added
    assert complete_mediapipe_embedding(head.model_dict, head.embedding) is head.embedding


def test_irises_are_on_the_eyeballs_where_the_procedural_head_puts_them(head):
    d = head.model_dict
    iris = iris_embedding(d["v_template"], d["f"], d["weights"], d["J_regressor"])
    assert iris.landmark_indices.tolist() == IRIS_IDS
    ours = _points(iris, IRIS_IDS, d["v_template"], d["f"])
    # the procedural head places its irises from its own eyeball geometry (known centres, radius)
    want = _points(head.embedding, IRIS_IDS, d["v_template"], d["f"])
    np.testing.assert_allclose(ours, want, atol=5e-5)
    eyes = np.asarray(d["weights"]).argmax(1)[np.asarray(d["f"])[iris.face_idx.numpy()]]
    assert (eyes[:5] == 4).all() and (eyes[5:] == 3).all()  # right iris on the right eye joint


def test_pupils_turn_with_eye_pose(flame_folder):
    model = FlameModel.from_file(flame_folder, dtype=torch.float64)
    emb = model.landmark_embedding.select([468, 473])
    g = torch.Generator().manual_seed(0)
    eye_pose = torch.randn(3, 6, generator=g, dtype=torch.float64) * 0.3
    rest = emb(model().vertices, model.faces)[0]
    out = model(eye_pose=eye_pose)
    moved = emb(out.vertices, model.faces)  # [3, 2, 3]
    for k, (joint, sl) in enumerate(((4, slice(3, 6)), (3, slice(0, 3)))):  # 468 right, 473 left
        centre = out.joints[:, joint]
        R = axis_angle_to_matrix(eye_pose[:, sl])
        want = centre + torch.einsum("bij,bj->bi", R, rest[k] - centre)
        torch.testing.assert_close(moved[:, k], want, atol=1e-9, rtol=0)
    assert (moved - rest).norm(dim=-1).min() > 1e-3  # they did move (metres)


def test_oval_follows_the_face_outline(head):
    d = head.model_dict
    v, f = d["v_template"], d["f"]
    oval = face_oval_embedding(v, f, d["weights"], head.embedding105)
    assert oval.landmark_indices.tolist() == list(FACE_OVAL_IDS)
    ours = _points(oval, FACE_OVAL_IDS, v, f)
    # against the procedural head's own oval (the canonical mesh's, projected on its skin), seen
    # from the front: within about a centimetre
    theirs = _points(head.embedding, FACE_OVAL_IDS, v, f)
    err = np.linalg.norm(ours[:, :2] - theirs[:, :2], axis=1)
    assert err.mean() < 0.008 and err.max() < 0.012
    # a simple loop around the face: angles about the centre of the 105 landmarks turn once
    inner = _points(head.embedding105, head.embedding105.landmark_indices.tolist(), v, f)
    c = inner[:, :2].mean(0)
    ang = np.unwrap(np.arctan2(ours[:, 1] - c[1], ours[:, 0] - c[0]))
    steps = np.diff(np.r_[ang, ang[0] - 2 * np.pi])
    assert (steps < 0).all() and abs(steps.sum() + 2 * np.pi) < 1e-9  # clockwise from the forehead top
    # ... enclosing every inner landmark, and facing the front (the oval is visible from there)
    assert _inside(inner[:, :2], ours[:, :2]).all()
    tri = np.asarray(v)[np.asarray(f)[oval.face_idx.numpy()]]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert (n[:, 2] / np.linalg.norm(n, axis=1) > np.cos(np.deg2rad(70.5))).all()


def test_no_vertex_index_is_hard_coded(head):
    """Renumbering the vertices and faces moves nothing: the derivation uses only geometry."""
    d = head.model_dict
    rng = np.random.default_rng(0)
    V, F = len(d["v_template"]), len(d["f"])
    perm_v, perm_f = rng.permutation(V), rng.permutation(F)
    inv_v = np.argsort(perm_v)
    shuffled = {
        "v_template": d["v_template"][perm_v],
        "f": inv_v[d["f"]][perm_f],
        "weights": d["weights"][perm_v],
        "J_regressor": np.asarray(d["J_regressor"])[:, perm_v],
    }
    e105 = head.embedding105
    inv_f = np.argsort(perm_f)
    e105_shuffled = LandmarkEmbedding(inv_f[e105.face_idx.numpy()], e105.bary_coords, e105.landmark_indices)
    a = complete_mediapipe_embedding(d, e105)
    b = complete_mediapipe_embedding(shuffled, e105_shuffled)
    ids = list(FACE_OVAL_IDS) + IRIS_IDS
    want = _points(a, ids, d["v_template"], d["f"])
    np.testing.assert_allclose(_points(b, ids, shuffled["v_template"], shuffled["f"]), want, atol=1e-9)


def test_what_cannot_be_derived_is_left_out(head, caplog):
    d = dict(head.model_dict)
    few = head.embedding105.select([61, 291, 0])  # three landmarks cannot register the canonical mesh
    d["weights"] = np.eye(5)[np.zeros(len(d["v_template"]), np.int64)]  # nothing skinned to the eyes
    with caplog.at_level("WARNING"):
        out = complete_mediapipe_embedding(d, few, source="test head")
    assert out is few
    assert "no face oval" in caplog.text and "no irises" in caplog.text and "test head" in caplog.text
    with pytest.raises(ValueError, match="at least 6"):
        face_oval_embedding(d["v_template"], d["f"], d["weights"], few)
