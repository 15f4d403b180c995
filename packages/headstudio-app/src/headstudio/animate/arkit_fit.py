"""The per-head fit of ARKit's 52 blendshapes as FLAME parameters (see :mod:`.arkit`).

:func:`fit_arkit_basis` fits them; :class:`ArkitBasis` holds the result and maps ARKit weights to
FLAME parameters; :func:`arkit_landmark_targets` gives each blendshape's landmark targets.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from flame_core import FlameParams
from flame_core.landmark_head import LandmarkHead

from ..errors import HeadStudioError
from .arkit_names import ARKIT_NAMES

__all__ = ["BASIS_VERSION", "ArkitBasis", "arkit_landmark_targets", "fit_arkit_basis", "shape_digest"]

log = logging.getLogger(__name__)

BASIS_VERSION = 1

# MediaPipe ids (subject's right eye / lips etc. are the image-left ones, FLAME's -x).
_UPPER_LID = {"Right": (246, 161, 160, 159, 158, 157, 173), "Left": (466, 388, 387, 386, 385, 384, 398)}
_LOWER_LID = {"Right": (7, 163, 144, 145, 153, 154, 155), "Left": (249, 390, 373, 374, 380, 381, 382)}
_IRIS = {"Left": tuple(range(473, 478)), "Right": tuple(range(468, 473))}
_CORNER = {"Right": 61, "Left": 291}
_UPPER_LIP = (185, 40, 39, 37, 0, 267, 269, 270, 409, 191, 80, 81, 82, 13, 312, 311, 310, 415)
_LOWER_LIP = (146, 91, 181, 84, 17, 314, 405, 321, 375, 95, 88, 178, 87, 14, 317, 402, 318, 324)
_INNER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 95, 88, 178, 87, 14, 317, 402, 318, 324)
_BROW = {
    "Right": (46, 53, 52, 65, 55, 70, 63, 105, 66, 107),
    "Left": (276, 283, 282, 295, 285, 300, 293, 334, 296, 336),
}
_BROW_INNER = {"Right": (55, 65, 107, 66), "Left": (285, 295, 336, 296)}
_BROW_OUTER = {"Right": (46, 53, 70, 63), "Left": (276, 283, 300, 293)}
_CHEEK = {"Right": 50, "Left": 280}
_NOSE_WING = {"Right": 98, "Left": 327}
_JAW, _EYE = 2, {"Left": 3, "Right": 4}  # FLAME joints (eye_pose is left then right)
_SIDE = {"Left": 1.0, "Right": -1.0}  # +x is the subject's left


@dataclass
class ArkitBasis:
    """FLAME parameters of each ARKit blendshape on one head.

    Attributes:
        expression: ``[52, E]``.
        jaw_pose: ``[52, 3]`` axis-angle.
        eye_pose: ``[52, 6]`` left eye then right eye, axis-angle.
        residual_mm: ``[52]`` RMS landmark error of each fitted shape against its target, in mm
            (FLAME units are metres).
        identity_hash: the head model the basis was fitted on.
        shape_digest: the shape β it was fitted at (:func:`shape_digest`).
    """

    expression: np.ndarray
    jaw_pose: np.ndarray
    eye_pose: np.ndarray
    residual_mm: np.ndarray
    identity_hash: str = ""
    shape_digest: str = ""

    def params(self, weights: np.ndarray | torch.Tensor) -> FlameParams:
        """FLAME parameters of ARKit weights ``[T, 52]``: ``expression [T, E]``, ``jaw_pose [T, 3]``,
        ``eye_pose [T, 6]`` (float32 tensors)."""
        w = np.asarray(weights, np.float64)
        if w.ndim != 2 or w.shape[1] != len(ARKIT_NAMES):
            raise HeadStudioError(f"ARKit weights must be [T, 52]; got {list(w.shape)}.")
        return FlameParams(
            expression=torch.as_tensor(w @ self.expression, dtype=torch.float32),
            jaw_pose=torch.as_tensor(w @ self.jaw_pose, dtype=torch.float32),
            eye_pose=torch.as_tensor(w @ self.eye_pose, dtype=torch.float32),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (floats rounded to 6 significant digits)."""

        def rows(a: np.ndarray) -> list[list[float]]:
            return [[float(f"{x:.6g}") for x in r] for r in np.asarray(a, np.float64)]

        return {
            "version": BASIS_VERSION,
            "names": list(ARKIT_NAMES),
            "identity_hash": self.identity_hash,
            "shape_digest": self.shape_digest,
            "expression": rows(self.expression),
            "jaw_pose": rows(self.jaw_pose),
            "eye_pose": rows(self.eye_pose),
            "residual_mm": [float(f"{x:.4g}") for x in self.residual_mm],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArkitBasis:
        """Inverse of :meth:`to_dict`.

        Raises:
            HeadStudioError: not a basis this version wrote (the message names the field).
        """
        if not isinstance(d, dict) or d.get("version") != BASIS_VERSION:
            raise HeadStudioError(
                f"the stored ARKit fit has version {d.get('version') if isinstance(d, dict) else None!r}, "
                f"expected {BASIS_VERSION}; refit it with fit_arkit_basis."
            )
        if list(d.get("names", [])) != list(ARKIT_NAMES):
            raise HeadStudioError("the stored ARKit fit does not list ARKit's 52 names in order; refit it.")
        arrs = {}
        for k, width in (("expression", None), ("jaw_pose", 3), ("eye_pose", 6)):
            a = np.asarray(d.get(k, []), np.float64)
            if a.ndim != 2 or a.shape[0] != len(ARKIT_NAMES) or (width and a.shape[1] != width):
                raise HeadStudioError(f"the stored ARKit fit's '{k}' has shape {list(a.shape)}; refit it.")
            arrs[k] = a
        res = np.asarray(d.get("residual_mm", np.zeros(len(ARKIT_NAMES))), np.float64)
        return cls(
            arrs["expression"],
            arrs["jaw_pose"],
            arrs["eye_pose"],
            res,
            str(d.get("identity_hash", "")),
            str(d.get("shape_digest", "")),
        )


# ----------------------------------------------------------------------------- the targets


def _rotation(axis: int, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def _landmark_joint_weights(head: Any) -> np.ndarray:
    """``[478, J]`` skinning weights of each landmark (barycentric blend of its triangle's corners)."""
    emb = head.landmark_embedding
    corners = head.faces[emb.face_idx.to(head.faces.device)].cpu()  # [L, 3]
    w = head.lbs_weights_t.detach().double().cpu()[:, corners]  # [J, L, 3]
    return torch.einsum("jlq,lq->lj", w, emb.bary_coords.double().cpu()).numpy()


def arkit_landmark_targets(
    landmarks: np.ndarray, joints: np.ndarray, joint_weights: np.ndarray
) -> np.ndarray:
    """Target landmark positions of each ARKit blendshape on one head.

    Args:
        landmarks: ``[478, 3]`` the head's neutral MediaPipe landmarks (FLAME coordinates: +x the
            subject's left, +y up, +z forward).
        joints: ``[5, 3]`` the head's neutral joints (root, neck, jaw, left eye, right eye).
        joint_weights: ``[478, 5]`` each landmark's skinning weights.

    Returns:
        ``[52, 478, 3]`` the landmarks at each blendshape at weight 1 (``tongueOut``: neutral).
    """
    p = np.asarray(landmarks, np.float64)
    L = p.shape[0]
    mw = float(np.linalg.norm(p[_CORNER["Left"]] - p[_CORNER["Right"]]))  # mouth width
    mouth_c = 0.5 * (p[13] + p[14])
    out = np.repeat(p[None], len(ARKIT_NAMES), 0)

    def falloff(centre: np.ndarray, sigma: float) -> np.ndarray:
        return np.exp(-((p - centre) ** 2).sum(1) / (2 * sigma**2))[:, None]

    def rotate_about(joint: int, r: np.ndarray) -> np.ndarray:
        j = joints[joint]
        moved = (p - j) @ r.T + j
        return joint_weights[:, joint : joint + 1] * (moved - p)

    def ids(seq: Sequence[int]) -> np.ndarray:
        m = np.zeros((L, 1))
        m[list(seq)] = 1.0
        return m

    def side_mask(side: str, soft: float = 0.25) -> np.ndarray:
        x = (p[:, 0] - mouth_c[0]) * _SIDE[side] / (soft * mw)
        return (1.0 / (1.0 + np.exp(-4.0 * x)))[:, None]

    d: dict[str, np.ndarray] = {}
    jaw_open = rotate_about(_JAW, _rotation(0, 0.35))
    for side in ("Left", "Right"):
        up, lo = np.array(_UPPER_LID[side]), np.array(_LOWER_LID[side])
        gap = p[lo] - p[up]  # upper lid -> lower lid
        # the skin above the upper lid follows it, less with distance (else holding those
        # landmarks still would keep the lid open); the lower lid and the eyeball stay
        centre_gap = float(np.linalg.norm(p[lo[3]] - p[up[3]]))
        dist = np.linalg.norm(p[:, None] - p[up][None], axis=-1).min(1)
        above = p[:, 1] > p[up, 1].min() - 0.25 * centre_gap
        follow = np.where(above, np.exp(-(dist**2) / (2 * (1.2 * centre_gap) ** 2)), 0.0)[:, None]
        follow[lo] = 0.0
        mean_gap = gap.mean(0)
        blink = 0.95 * follow * mean_gap
        blink[up] = 0.95 * gap
        d[f"eyeBlink{side}"] = blink
        wide = -0.4 * follow * mean_gap
        wide[up] = -0.4 * gap
        d[f"eyeWide{side}"] = wide
        squint = np.zeros((L, 3))
        squint[lo] = -0.35 * gap
        squint += falloff(p[_CHEEK[side]], 0.3 * mw) * np.array([0.0, 0.06 * mw, 0.0])
        d[f"eyeSquint{side}"] = squint
        s = _SIDE[side]
        eye = _EYE[side]
        # looking towards +x is a rotation about +y; looking up (+y) is a rotation about -x
        d[f"eyeLookUp{side}"] = rotate_about(eye, _rotation(0, -0.35))
        d[f"eyeLookDown{side}"] = rotate_about(eye, _rotation(0, 0.35))
        d[f"eyeLookOut{side}"] = rotate_about(eye, _rotation(1, 0.4 * s))  # away from the nose
        d[f"eyeLookIn{side}"] = rotate_about(eye, _rotation(1, -0.4 * s))
        corner = falloff(p[_CORNER[side]], 0.3 * mw)
        d[f"mouthSmile{side}"] = corner * np.array([0.10 * s * mw, 0.14 * mw, -0.04 * mw])
        d[f"mouthFrown{side}"] = corner * np.array([0.02 * s * mw, -0.14 * mw, 0.0])
        d[f"mouthDimple{side}"] = corner * np.array([0.08 * s * mw, 0.0, -0.08 * mw])
        d[f"mouthStretch{side}"] = corner * np.array([0.14 * s * mw, -0.05 * mw, 0.0])
        half = side_mask(side)
        d[f"mouthPress{side}"] = half * (
            ids(_UPPER_LIP) * np.array([0.0, -0.04 * mw, 0.0])
            + ids(_LOWER_LIP) * np.array([0.0, 0.05 * mw, 0.0])
        )
        d[f"mouthLowerDown{side}"] = half * ids(_LOWER_LIP) * np.array([0.0, -0.14 * mw, 0.0])
        d[f"mouthUpperUp{side}"] = half * ids(_UPPER_LIP) * np.array([0.0, 0.12 * mw, 0.0])
        brow = ids(_BROW[side])
        d[f"browDown{side}"] = brow * np.array([-0.05 * s * mw, -0.16 * mw, 0.0])
        d[f"browOuterUp{side}"] = ids(_BROW_OUTER[side]) * np.array([0.0, 0.18 * mw, 0.0]) + brow * np.array(
            [0.0, 0.05 * mw, 0.0]
        )
        d[f"cheekSquint{side}"] = falloff(p[_CHEEK[side]], 0.35 * mw) * np.array([0.0, 0.10 * mw, 0.0])
        d[f"noseSneer{side}"] = falloff(p[_NOSE_WING[side]], 0.25 * mw) * np.array([0.0, 0.10 * mw, 0.0])
    d["jawOpen"] = jaw_open
    d["jawLeft"] = rotate_about(_JAW, _rotation(1, 0.12))  # the chin (+z) swings towards +x
    d["jawRight"] = rotate_about(_JAW, _rotation(1, -0.12))
    d["jawForward"] = joint_weights[:, _JAW : _JAW + 1] * np.array([0.0, 0.0, 0.12 * mw])
    d["mouthClose"] = -ids(_LOWER_LIP) * jaw_open  # with jawOpen: the lips stay together
    lips = ids(_UPPER_LIP + _LOWER_LIP + (_CORNER["Left"], _CORNER["Right"]))
    towards_c = mouth_c - p
    d["mouthFunnel"] = lips * (np.array([0.0, 0.0, 0.15 * mw]) + 0.15 * towards_c * np.array([1.0, 0.0, 0.0]))
    d["mouthFunnel"] += ids(_INNER_LIP) * (-0.25 * towards_c * np.array([0.0, 1.0, 0.0]))
    d["mouthPucker"] = lips * (np.array([0.0, 0.0, 0.12 * mw]) + 0.35 * towards_c * np.array([1.0, 0.0, 0.0]))
    around = falloff(mouth_c, 0.6 * mw)
    d["mouthLeft"] = around * np.array([0.15 * mw, 0.0, 0.0])
    d["mouthRight"] = around * np.array([-0.15 * mw, 0.0, 0.0])
    d["mouthRollLower"] = ids(_LOWER_LIP) * np.array([0.0, 0.04 * mw, -0.10 * mw])
    d["mouthRollUpper"] = ids(_UPPER_LIP) * np.array([0.0, -0.04 * mw, -0.10 * mw])
    chin = falloff(p[17], 0.4 * mw)
    d["mouthShrugLower"] = np.maximum(ids(_LOWER_LIP), chin) * np.array([0.0, 0.08 * mw, 0.02 * mw])
    d["mouthShrugUpper"] = ids(_UPPER_LIP) * np.array([0.0, 0.07 * mw, 0.0])
    inner = ids(_BROW_INNER["Left"] + _BROW_INNER["Right"])
    d["browInnerUp"] = inner * np.array([0.0, 0.18 * mw, 0.0])
    cheeks = falloff(p[_CHEEK["Left"]], 0.5 * mw) + falloff(p[_CHEEK["Right"]], 0.5 * mw)
    outward = np.c_[np.sign(p[:, 0]), np.zeros(L), np.ones(L) * 0.5]
    d["cheekPuff"] = cheeks * outward * 0.10 * mw
    d["tongueOut"] = np.zeros((L, 3))
    iris = list(_IRIS["Left"] + _IRIS["Right"])
    for k, name in enumerate(ARKIT_NAMES):
        if not name.startswith("eyeLook"):
            d[name][iris] = 0.0  # the falloffs above never move the eyeballs
        out[k] = p + d[name]
    return out


# ----------------------------------------------------------------------------------- the fit


def fit_arkit_basis(
    head: Any,
    shape: torch.Tensor | None = None,
    num_expression: int | None = None,
    expression_prior: float = 2e-6,
    pose_prior: float = 1e-6,
    steps: int = 20,
    rounds: int = 1,
) -> ArkitBasis:
    """Fit ARKit's 52 blendshapes on one head (module docstring).

    Args:
        head: a ``FlameModel`` with a MediaPipe landmark embedding.
        shape: ``[1, S]`` the avatar's shape β (``None``: zeros).
        num_expression: expression components used (default: all of the head's).
        expression_prior: L2 weight on the expression coefficients (against the summed squared
            landmark error in m²).
        pose_prior: L2 weight on the jaw and eye axis-angles (same units).
        steps: L-BFGS iterations of each rotation stage.
        rounds: rotation-then-expression rounds.

    Returns:
        The :class:`ArkitBasis` (``[52, E]`` expression with ``E = head.num_expression``).
    """
    emb = getattr(head, "landmark_embedding", None)
    if emb is None or len(emb) < 478:
        raise HeadStudioError(
            "fitting ARKit blendshapes needs the head's 478-point MediaPipe landmark embedding; "
            "use the procedural head or a FLAME folder with mediapipe_landmark_embedding.npz."
        )
    E_all = int(head.num_expression)
    E = E_all if num_expression is None else max(0, min(int(num_expression), E_all))
    dev = head.faces.device
    beta = torch.zeros(1, int(head.num_shape)) if shape is None else torch.as_tensor(shape).reshape(1, -1)
    beta = beta.detach().to(dev, torch.float64)
    h64 = head if head.dtype == torch.float64 else _float64_copy(head)
    lh = LandmarkHead(h64, h64.landmark_embedding)
    K = len(ARKIT_NAMES)
    with torch.no_grad():
        out = h64(shape=beta)
        p0 = lh(shape=beta)[0].cpu().numpy()
        joints = out.joints[0].cpu().numpy()
    targets = torch.as_tensor(arkit_landmark_targets(p0, joints, _landmark_joint_weights(h64)), device=dev)
    betas = beta.expand(K, -1)
    expr = torch.zeros(K, E, dtype=torch.float64, device=dev)
    jaw = torch.zeros(K, 3, dtype=torch.float64, device=dev, requires_grad=True)
    eye = torch.zeros(K, 6, dtype=torch.float64, device=dev, requires_grad=True)
    scale = 1e3  # millimetres: a well-conditioned loss

    def residual() -> torch.Tensor:  # [K, L, 3] in mm
        lm = lh(shape=betas, expression=expr if E else None, jaw_pose=jaw, eye_pose=eye)
        return (lm - targets) * scale

    for _ in range(rounds):
        # the rotations (nonlinear) by L-BFGS with the expression held ...
        opt = torch.optim.LBFGS([jaw, eye], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

        def closure(opt: torch.optim.LBFGS = opt) -> torch.Tensor:
            opt.zero_grad()
            loss = residual().pow(2).sum() + pose_prior * scale**2 * (jaw.pow(2).sum() + eye.pow(2).sum())
            loss.backward()
            return loss

        opt.step(closure)
        if not E:
            continue
        # ... then the expression, exactly: at fixed rotations the landmarks are affine in it
        with torch.no_grad():
            expr.zero_()
            r0 = -residual() / scale  # [K, L, 3] target minus the landmarks at zero expression
            J = lh.expression_jacobian(jaw.detach(), eye.detach())[..., :E]  # [K, L, 3, E]
            J = J.reshape(K, -1, E)
            A = J.transpose(1, 2) @ J + expression_prior * torch.eye(E, dtype=J.dtype, device=dev)
            b = J.transpose(1, 2) @ r0.reshape(K, -1, 1)
            expr.copy_(torch.linalg.solve(A, b)[..., 0])
    with torch.no_grad():
        rms = residual().pow(2).sum(-1).mean(-1).sqrt().cpu().numpy()
        tongue = ARKIT_NAMES.index("tongueOut")
        for t in (expr, jaw, eye):
            t[tongue] = 0.0
    e_full = np.zeros((K, E_all))
    e_full[:, :E] = expr.detach().cpu().numpy()
    log.info("fitted ARKit blendshapes: RMS landmark error %.2f mm (worst %s %.2f mm)",
             float(np.mean(rms)), ARKIT_NAMES[int(np.argmax(rms))], float(np.max(rms)))  # fmt: skip
    return ArkitBasis(
        e_full,
        jaw.detach().cpu().numpy(),
        eye.detach().cpu().numpy(),
        rms,
        str(head.identity_hash()),
        shape_digest(beta),
    )


def _float64_copy(head: Any) -> Any:
    """A float64 copy of the head (``Module.to`` converts in place, so copy first)."""
    import copy

    return copy.deepcopy(head).to(torch.float64)


def shape_digest(shape: torch.Tensor | np.ndarray | None) -> str:
    """A short digest of a shape β (rounded to 1e-5, trailing zeros ignored)."""
    import hashlib

    a = (
        np.zeros(0)
        if shape is None
        else np.asarray(torch.as_tensor(shape).detach().cpu().double()).reshape(-1)
    )
    a = np.round(a, 5)
    nz = np.flatnonzero(a)
    a = a[: nz[-1] + 1] if len(nz) else a[:0]
    return hashlib.sha256((a + 0.0).tobytes()).hexdigest()[:16]
