"""MediaPipe landmarks a FLAME folder's embedding lacks, derived from the model: face oval, irises.

FLAME's MediaPipe embedding (``mediapipe_landmark_embedding.npz``, 105 points) covers lips, eyes,
brows and nose; it has no face-oval and no iris points, which ControlNet MediaPipeFace's control
maps draw (the head's outline and the pupils). :func:`complete_mediapipe_embedding` appends them,
as barycentric points on the model's own triangles, so every consumer of the embedding gets them.
No FLAME vertex index is hard-coded; the model's arrays and FLAME's conventions (metres, y up,
the face looks along +z, joints root, neck, jaw, left eye, right eye) are all it uses.

Face oval (:data:`~flame_core.mediapipe_mesh.FACE_OVAL_IDS`): MediaPipe's canonical face mesh is
registered to the neutral template by a similarity transform fitted on the landmarks the
embedding already has (Umeyama). Each registered oval point gives a direction in the frontal
image plane, from the centroid of those landmarks, and an outer bound. Along that direction the
skin is probed with frontal rays (along −z); the oval point is the outermost hit before the
bound or the face's outline, whichever comes first. The outline is where the hit surface tilts
more than :data:`RIM_TILT_DEG` away from the view, or where the depth jumps (the ray has left the
face for the neck or an ear). So the oval lies on the face's frontal outline, where MediaPipe
puts it on a frontal photograph, and on the forehead where the canonical mesh puts it. The
embedding is static: when the head turns, the oval stays on the same skin, as MediaPipe's
landmarks do (FLAME's 68-point embedding instead slides its jaw contour with the yaw).

Irises (468–477): the eye vertices are those skinned mostly to an eye joint; the joint is the
eyeball's centre and the vertices' median distance to it the eyeball's radius. At zero
``eye_pose`` the gaze is the model's forward axis (+z), so each iris is five points where rays
from the eyeball centre meet the eyeball: the pupil (468 right, 473 left) on the forward axis,
then four on the rim of an iris of radius :data:`~flame_core.mediapipe_mesh.IRIS_RADIUS`
(towards the subject's left, up, right, down; the procedural head's order). Embedded on eyeball
triangles, they turn with the eye joint, i.e. with ``eye_pose``.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from flame_core.landmarks import LandmarkEmbedding
from flame_core.mediapipe_mesh import (
    FACE_OVAL_IDS,
    IRIS_RADIUS,
    LEFT_IRIS_IDS,
    RIGHT_IRIS_IDS,
    load_canonical_face_mesh,
)
from flame_core.raycast import frontal_hits, ray_cast

log = logging.getLogger(__name__)

__all__ = ["complete_mediapipe_embedding", "face_oval_embedding", "iris_embedding", "RIM_TILT_DEG"]

#: The oval stops where the skin turns more than this from the frontal view (its outline).
RIM_TILT_DEG = 70.0
#: FLAME's joints: root, neck, jaw, left eye (+x), right eye (−x).
LEFT_EYE_JOINT, RIGHT_EYE_JOINT = 3, 4
_MIN_ANCHORS = 6  # landmarks needed to register the canonical mesh (a similarity has 7 dof)
_SAMPLES = np.linspace(0.3, 1.0, 71)  # probe positions between the face centre and the bound


def _umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity ``(s, R, t)`` minimising ``sum |s R src_i + t - dst_i|²`` (``[N, 3]`` each)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    U, S, Vt = np.linalg.svd(xd.T @ xs / len(src))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])  # no reflection
    R = U @ D @ Vt
    s = float(np.trace(np.diag(S) @ D) / (xs**2).sum(1).mean())
    return s, R, mu_d - s * R @ mu_s


def _eye_labels(weights: np.ndarray) -> np.ndarray:
    """Joint each vertex is skinned to most ``[V]``."""
    return np.asarray(weights).argmax(1)


def _face_normals(tris: np.ndarray) -> np.ndarray:
    n = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-20)


def face_oval_embedding(
    vertices: np.ndarray,
    faces: np.ndarray,
    weights: np.ndarray,
    embedding: LandmarkEmbedding,
    ids: list[int] | tuple[int, ...] = FACE_OVAL_IDS,
) -> LandmarkEmbedding:
    """The face-oval landmarks ``ids`` on the skin of the mesh (method in the module docstring).

    Args:
        vertices: ``[V, 3]`` neutral template (metres, y up, face towards +z).
        faces: ``[F, 3]`` triangles.
        weights: ``[V, J]`` skinning weights (eyeball faces are left out).
        embedding: the landmarks the model has; at least six must be canonical-mesh ids (< 468).
        ids: MediaPipe oval ids to place.

    Raises:
        ValueError: too few landmarks to register the canonical mesh.
    """
    v, f = np.asarray(vertices, np.float64), np.asarray(faces, np.int64)
    known = embedding.landmark_indices.cpu().numpy()
    anchors = known < 468
    if anchors.sum() < _MIN_ANCHORS:
        raise ValueError(
            f"the embedding has {int(anchors.sum())} MediaPipe face-mesh landmarks; "
            f"at least {_MIN_ANCHORS} are needed to place the face oval"
        )
    pos = embedding(torch.as_tensor(v)[None], torch.as_tensor(f))[0].numpy()[anchors]
    canon = load_canonical_face_mesh().vertices
    s, R, t = _umeyama(canon[known[anchors]], pos)
    bound = canon[list(ids)] @ (s * R).T + t  # [K, 3] registered oval
    centre = pos.mean(0)

    labels = _eye_labels(weights)
    skin = ~np.isin(labels[f], (LEFT_EYE_JOINT, RIGHT_EYE_JOINT)).all(1)
    skin_ids = np.flatnonzero(skin)
    tris = v[f[skin_ids]]
    normals = _face_normals(tris)
    # frontal rays through points between the centre and each bound, in the image plane (x, y)
    xy = centre[None, None, :2] + _SAMPLES[None, :, None] * (bound[:, None, :2] - centre[None, None, :2])
    K, S = xy.shape[:2]
    hit, depth, bary = frontal_hits(xy.reshape(-1, 2), tris)
    hit, depth, bary = hit.reshape(K, S), depth.reshape(K, S), bary.reshape(K, S, 3)
    # a probe on an edge or vertex gets the most frontal of the triangles there (frontal_hits'
    # tie-break, the same whatever the rounding or the face order), so the tilt test below and
    # the 85-degree depth-jump test only meet generic values at their thresholds
    cos_tilt = np.where(hit >= 0, normals[np.maximum(hit, 0), 2], -1.0)
    step = np.linalg.norm(bound[:, :2] - centre[:2], axis=1) * (_SAMPLES[1] - _SAMPLES[0])  # [K]
    good = (hit >= 0) & (cos_tilt >= np.cos(np.deg2rad(RIM_TILT_DEG)))
    # a depth change steeper than an 85-degree slope between neighbours: the ray crossed the outline
    dz = np.abs(np.diff(np.where(hit >= 0, depth, 0.0), axis=1))
    good[:, 1:] &= dz <= np.tan(np.deg2rad(85.0)) * step[:, None]
    face_idx, bc = [], []
    for k in range(K):
        bad = np.flatnonzero(~good[k])
        last = (bad[0] if len(bad) else S) - 1  # outermost probe before the first failure
        if last < 0:
            raise ValueError(
                f"could not place face-oval landmark {ids[k]}: no frontal skin near the face centre"
            )
        face_idx.append(skin_ids[hit[k, last]])
        bc.append(bary[k, last])
    return LandmarkEmbedding(np.asarray(face_idx), np.asarray(bc), np.asarray(ids))


def iris_embedding(
    vertices: np.ndarray, faces: np.ndarray, weights: np.ndarray, joint_regressor: np.ndarray
) -> LandmarkEmbedding:
    """Ten iris landmarks (468–477) on the eyeballs (method in the module docstring).

    Args:
        vertices: ``[V, 3]`` neutral template.
        faces: ``[F, 3]``.
        weights: ``[V, 5]`` skinning weights (FLAME's joints; eyes are joints 3 and 4).
        joint_regressor: ``[5, V]`` (dense or scipy sparse).

    Raises:
        ValueError: the model has no eyeball skinned to an eye joint, or the eyes are swapped.
    """
    v, f = np.asarray(vertices, np.float64), np.asarray(faces, np.int64)
    joints = np.asarray(joint_regressor @ v)
    labels = _eye_labels(weights)
    if joints[LEFT_EYE_JOINT, 0] <= joints[RIGHT_EYE_JOINT, 0]:
        raise ValueError("the left eye joint is not on the +x side; is this a FLAME model?")
    face_idx, bc, ids = [], [], []
    for iris_ids, j in ((RIGHT_IRIS_IDS, RIGHT_EYE_JOINT), (LEFT_IRIS_IDS, LEFT_EYE_JOINT)):
        eye_f = np.flatnonzero((labels[f] == j).all(1))
        if len(eye_f) == 0:
            raise ValueError(f"no eyeball: no triangle is skinned to eye joint {j}")
        centre = joints[j]
        radius = float(np.median(np.linalg.norm(v[labels == j] - centre, axis=1)))
        tilt = np.arcsin(min(IRIS_RADIUS / radius, 0.95))
        dirs = [np.array([0.0, 0.0, 1.0])]
        for a in (0.0, 0.5 * np.pi, np.pi, 1.5 * np.pi):
            dirs.append(np.array([np.sin(tilt) * np.cos(a), np.sin(tilt) * np.sin(a), np.cos(tilt)]))
        dirs = np.stack(dirs)
        # these rays pass exactly through the eyeball's pole vertex and along its meridian edges
        # (a UV sphere around the joint): ray_cast's tolerance makes them hit on every CPU
        hit, _, bary = ray_cast(np.tile(centre, (len(dirs), 1)), dirs, v[f[eye_f]])
        if (hit < 0).any():
            raise ValueError(f"the eyeball of eye joint {j} is not closed in front of its centre")
        face_idx.extend(eye_f[hit].tolist())
        bc.extend(bary)
        ids.extend(iris_ids)
    return LandmarkEmbedding(np.asarray(face_idx), np.asarray(bc), np.asarray(ids))


def complete_mediapipe_embedding(
    model_dict: dict[str, np.ndarray], embedding: LandmarkEmbedding, source: str = "the model"
) -> LandmarkEmbedding:
    """``embedding`` plus the face-oval and iris landmarks it lacks, derived from ``model_dict``.

    Rows already there are kept as they are; derived rows are appended (face oval, then irises).
    A part that cannot be derived (too few landmarks, no eyeballs) is left out with a warning.

    Args:
        model_dict: FLAME arrays (:func:`flame_core.io.load_flame_pickle` layout).
        embedding: the model's MediaPipe embedding.
        source: a name for log messages.
    """
    have = set(embedding.landmark_indices.tolist())
    parts, names = [embedding], []
    v, f, w = model_dict["v_template"], model_dict["f"], model_dict["weights"]
    oval = [i for i in FACE_OVAL_IDS if i not in have]
    if oval:
        try:
            parts.append(face_oval_embedding(v, f, w, embedding, oval))
            names.append(f"{len(oval)} face-oval points")
        except (ValueError, FileNotFoundError) as e:
            log.warning("%s: no face oval in the control maps: %s", source, e)
    if not have.issuperset(RIGHT_IRIS_IDS + LEFT_IRIS_IDS):
        try:
            iris = iris_embedding(v, f, w, model_dict["J_regressor"])
            missing = [i for i in RIGHT_IRIS_IDS + LEFT_IRIS_IDS if i not in have]
            parts.append(iris.select(missing))
            names.append(f"{len(missing)} iris points")
        except ValueError as e:
            log.warning("%s: no irises in the control maps: %s", source, e)
    if len(parts) == 1:
        return embedding
    log.info("%s: derived %s from the model (its embedding lacks them)", source, " and ".join(names))
    return LandmarkEmbedding(
        np.concatenate([p.face_idx.cpu().numpy() for p in parts]),
        np.concatenate([p.bary_coords.cpu().numpy() for p in parts]),
        np.concatenate([p.landmark_indices.cpu().numpy() for p in parts]),
    )
