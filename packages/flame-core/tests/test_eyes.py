"""Eyes: eyeball triangles turn with ``eye_pose``; a full blink closes the lids over the eyeballs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from flame_core.model import FlameModel
from flame_core.procedural import build_procedural_head
from flame_core.procedural_mesh import EYE_L, EYE_R, EYE_RADIUS
from flame_core.rotations import axis_angle_to_matrix


@pytest.fixture(scope="module")
def proc() -> FlameModel:
    return FlameModel.procedural(num_shape=10, num_expression=10, mouth_interior=True)


@pytest.fixture(scope="module")
def flame_format(tmp_path_factory) -> FlameModel:
    """The procedural head saved as a FLAME pickle with only the 105-point embedding (no irises:
    they are derived from the model) and loaded back with the mouth interior."""
    ph = build_procedural_head()
    folder = dataclasses.replace(ph).save(tmp_path_factory.mktemp("flame-eyes"), full_embedding=False)
    return FlameModel.from_file(folder / "procedural_flame.pkl", 10, 10, mouth_interior=True)


def _first_hit(origins: np.ndarray, direction: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Index of the nearest triangle ``tris [T, 3, 3]`` each ray meets (-1: none)."""
    a, e1, e2 = tris[:, 0], tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]
    p = np.cross(direction, e2)
    det = (e1 * p).sum(1)
    ok = np.abs(det) > 1e-14
    inv = np.where(ok, 1 / np.where(ok, det, 1), 0)
    out = np.full(len(origins), -1)
    for i, o in enumerate(origins):
        s = o - a
        u = (s * p).sum(1) * inv
        q = np.cross(s, e1)
        w = (q @ direction) * inv
        t = np.where(ok & (u >= 0) & (w >= 0) & (u + w <= 1), (q * e2).sum(1) * inv, np.inf)
        t[t <= 0] = np.inf
        if np.isfinite(t.min()):
            out[i] = int(np.argmin(t))
    return out


@pytest.mark.parametrize("name", ["proc", "flame_format"])
def test_points_on_the_irises_turn_with_eye_pose(name, request):
    m = request.getfixturevalue(name)
    f = m.faces
    emb = m.landmark_embedding.select([468, 473])  # pupils: right eye (joint 4), left eye (joint 3)
    with torch.no_grad():
        rest = m()
        v0 = rest.vertices[0]
        fi = emb.face_idx
        # Gaussians bound to the pupil triangles: their corners and a point inside
        corners = f[fi]  # [2, 3]
        eye = torch.tensor([[0.1, 0.35, 0.0, -0.2, -0.3, 0.05]])
        out = m(eye_pose=eye)
        for k, (joint, sl) in enumerate(((4, slice(3, 6)), (3, slice(0, 3)))):
            R = axis_angle_to_matrix(eye[:, sl])[0]
            c = rest.joints[0, joint]
            want = (v0[corners[k]] - c) @ R.T + c
            torch.testing.assert_close(out.vertices[0, corners[k]], want, atol=2e-6, rtol=0)
            assert (out.vertices[0, corners[k]] - v0[corners[k]]).norm(dim=-1).min() > 0.002
        # the eyelids do not turn with the eyes
        skin = torch.ones(m.num_vertices, dtype=torch.bool)
        skin[f[fi].unique()] = False
        w = torch.as_tensor(np.asarray(m.lbs_weights_t.T[:, 3:].sum(1) < 0.5))
        moved = (out.vertices[0] - v0).norm(dim=-1)[w & skin]
        assert moved.max() < 1e-6


def _eyeball_rays(m: FlameModel, expression: torch.Tensor, k: int) -> tuple[int, int]:
    """Frontal rays over eye ``k``'s opening: (rays meeting the eyeball first, rays meeting anything)."""
    g = build_procedural_head().geometry
    with torch.no_grad():
        v = m(expression=expression).vertices[0].double().numpy()
    f = m.faces.numpy()
    c = g.eye_centers[k]
    xs, ys = np.meshgrid(
        np.linspace(c[0] - 0.02, c[0] + 0.02, 33), np.linspace(c[1] - 0.014, c[1] + 0.014, 23)
    )
    o = np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, 0.3)], 1)
    near = np.linalg.norm(v[f].mean(1)[:, :2] - c[:2], axis=1) < 0.04
    ids = np.flatnonzero(near)
    hit = _first_hit(o, np.array([0.0, 0.0, -1.0]), v[f[ids]])
    part = np.full(len(f), -1)
    part[: m.num_base_faces] = g.face_part
    on_eye = np.isin(part[ids[hit[hit >= 0]]], [EYE_L, EYE_R])
    return int(on_eye.sum()), int((hit >= 0).sum())


@pytest.mark.parametrize("k", [0, 1])
def test_full_blink_hides_the_eyeball(proc, k):
    open_eye, total = _eyeball_rays(proc, torch.zeros(1, 10), k)
    assert open_eye > 100 and total > 600  # the open eye shows its eyeball
    ex = torch.zeros(1, 10)
    ex[0, 5 + k] = 1.0
    closed, _ = _eyeball_rays(proc, ex, k)
    assert closed == 0, f"{closed} frontal rays still meet eyeball {k} at a full blink"
    other, _ = _eyeball_rays(proc, ex, 1 - k)
    assert other > 100  # the other eye stays open
    # the closed lid clears the eyeball
    g = build_procedural_head().geometry
    with torch.no_grad():
        v = proc(expression=ex).vertices[0].double().numpy()[: len(g.part)]
    skin = g.part == 0
    d = np.linalg.norm(v[skin] - g.eye_centers[k], axis=1)
    assert d.min() > EYE_RADIUS + 0.0005
