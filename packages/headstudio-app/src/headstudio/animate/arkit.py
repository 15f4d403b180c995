"""ARKit's 52 blendshapes for any head, and Live Link Face CSV curves in and out.

**The fit.** Each of ARKit's 52 blendshapes is fitted once per head as one set of FLAME
parameters (``expression [E]``, ``jaw_pose [3]``, ``eye_pose [6]``) whose landmarks best match a
geometric description of that blendshape on the head's own 478 MediaPipe landmarks
(:func:`arkit_landmark_targets`): ``eyeBlinkLeft`` moves the upper lid of the subject's left eye
onto its lower lid, ``jawOpen`` swings the landmarks the jaw carries 0.35 rad about the jaw joint,
``mouthSmileLeft`` lifts the subject's left mouth corner up and out, ... Left and right are the
subject's, as in ARKit: the subject's left is FLAME's +x (MediaPipe ids 386/374, 291, 334, ...).
Sizes are in units of the head's own mouth width and eye openings, so the fit works on any shape.

The parameters are found by least squares over all 52 at once (a batch of 52 poses through
:class:`flame_core.landmark_head.LandmarkHead`), the summed squared landmark error plus small L2
priors: rounds of L-BFGS on the jaw and eye rotations with the expression held, then the
expression solved exactly at those rotations (the landmarks are affine in it there,
:meth:`~flame_core.landmark_head.LandmarkHead.expression_jacobian`). ``tongueOut`` has no
landmark and stays the neutral face (zero parameters).

A fitted :class:`ArkitBasis` maps ARKit weights ``[T, 52]`` to FLAME parameters linearly
(``expression = w · basis.expression``; jaw and eye axis-angles likewise, which is exact for one
shape at a time and a close approximation for mixes of small rotations), and is stored in the
avatar's metadata under ``"arkit"`` (:func:`store_basis`, :func:`basis_for`); avatars saved
before it load as before and get a fit on first use.

**Live Link Face CSV.** :func:`read_live_link_csv` / :func:`write_live_link_csv` use the column
layout of the Live Link Face app's recordings: ``Timecode, BlendshapeCount``, the 52 curves in
Live Link's order (PascalCase: ``EyeBlinkLeft``...), then ``HeadYaw, HeadPitch, HeadRoll,
LeftEyeYaw, LeftEyePitch, LeftEyeRoll, RightEyeYaw, RightEyePitch, RightEyeRoll`` (radians).
Timecodes are ``HH:MM:SS:FF.fff`` with ``FF`` frames at the recording's rate.

**Which side MediaPipe's scores name**: see docs/ENGINE_EXPORT.md (measured by the outside-reader test
``test_mediapipe_reads_fitted_blendshapes``).
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flame_core.landmark_head import LandmarkHead
from flame_core.motion import MotionSequence

from .._atomic import atomic_output
from ..errors import HeadStudioError

__all__ = [
    "ARKIT_NAMES",
    "LIVE_LINK_NAMES",
    "LIVE_LINK_POSE_COLUMNS",
    "ArkitBasis",
    "ArkitCurves",
    "arkit_landmark_targets",
    "fit_arkit_basis",
    "store_basis",
    "basis_for",
    "curves_to_motion",
    "motion_to_curves",
    "euler_to_axis_angle",
    "read_live_link_csv",
    "write_live_link_csv",
]

log = logging.getLogger(__name__)

#: ARKit's 52 blendshape names (camelCase, ``ARFaceAnchor.BlendShapeLocation``), in Live Link
#: Face's column order.
ARKIT_NAMES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight",
    "eyeLookOutRight", "eyeLookUpRight", "eyeSquintRight", "eyeWideRight", "jawForward", "jawRight",
    "jawLeft", "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthRight", "mouthLeft",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight", "mouthDimpleLeft",
    "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight", "mouthRollLower", "mouthRollUpper",
    "mouthShrugLower", "mouthShrugUpper", "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft",
    "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight", "browDownLeft", "browDownRight",
    "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff", "cheekSquintLeft",
    "cheekSquintRight", "noseSneerLeft", "noseSneerRight", "tongueOut",
)  # fmt: skip
#: The same names as Live Link Face's CSV header spells them (PascalCase).
LIVE_LINK_NAMES: tuple[str, ...] = tuple(n[0].upper() + n[1:] for n in ARKIT_NAMES)
#: The head and eye rotation columns after the 52 curves (radians).
LIVE_LINK_POSE_COLUMNS: tuple[str, ...] = (
    "HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
    "RightEyeYaw", "RightEyePitch", "RightEyeRoll",
)  # fmt: skip
BASIS_VERSION = 1
METADATA_KEY = "arkit"

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

    def flame_kwargs(self, weights: np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
        """FLAME parameters of ARKit weights ``[T, 52]``: ``expression [T, E]``, ``jaw_pose [T, 3]``,
        ``eye_pose [T, 6]`` (float32 tensors)."""
        w = np.asarray(weights, np.float64)
        if w.ndim != 2 or w.shape[1] != len(ARKIT_NAMES):
            raise HeadStudioError(f"ARKit weights must be [T, 52]; got {list(w.shape)}.")
        return {
            "expression": torch.as_tensor(w @ self.expression, dtype=torch.float32),
            "jaw_pose": torch.as_tensor(w @ self.jaw_pose, dtype=torch.float32),
            "eye_pose": torch.as_tensor(w @ self.eye_pose, dtype=torch.float32),
        }

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


def store_basis(avatar: Any, basis: ArkitBasis) -> None:
    """Keep the fit in the avatar's metadata (saved with it by ``Avatar.save``)."""
    avatar.metadata[METADATA_KEY] = basis.to_dict()


def basis_for(avatar: Any, refit: bool = False) -> ArkitBasis:
    """The avatar's ARKit fit: the stored one when it matches the head, else a new fit (stored).

    Avatars saved before ARKit fits existed have none; they get one here.
    """
    stored = None if refit else (avatar.metadata or {}).get(METADATA_KEY)
    head = avatar.head
    if stored is not None:
        try:
            b = ArkitBasis.from_dict(stored)
        except HeadStudioError as e:
            log.warning("%s", e)
        else:
            same_head = b.identity_hash == str(head.identity_hash())
            if (
                same_head
                and b.shape_digest == shape_digest(avatar.shape)
                and b.expression.shape[1] == head.num_expression
            ):
                return b
            log.info("the stored ARKit fit was made on another head or shape; refitting")
    b = fit_arkit_basis(head, avatar.shape.detach())
    store_basis(avatar, b)
    return b


# -------------------------------------------------------------------------------- the curves


@dataclass
class ArkitCurves:
    """ARKit blendshape curves over time.

    Attributes:
        weights: ``[T, 52]`` float32 in ``ARKIT_NAMES`` order (0..1 as captured).
        fps: frames per second.
        head_rotation: ``[T, 3]`` yaw, pitch, roll in radians (zeros when not captured).
        eye_rotation: ``[T, 6]`` left eye yaw, pitch, roll, then the right eye's.
        start_timecode: the first row's timecode (``HH:MM:SS:FF.fff``).
    """

    weights: np.ndarray
    fps: float
    head_rotation: np.ndarray
    eye_rotation: np.ndarray
    start_timecode: str = "00:00:00:00.000"

    def __len__(self) -> int:
        return int(self.weights.shape[0])


def curves_to_motion(curves: ArkitCurves, basis: ArkitBasis) -> MotionSequence:
    """A FLAME motion playing ARKit curves on the head the basis was fitted on.

    The curves give expression, jaw and eye parameters (``basis.flame_kwargs``); the captured
    head rotation becomes the neck pose (yaw about +y, pitch about +x, roll about +z; ARKit's
    pitch is positive looking down, FLAME's rotation about +x is positive tilting down too).
    """
    kw = basis.flame_kwargs(curves.weights)
    yaw, pitch, roll = (curves.head_rotation[:, i].astype(np.float64) for i in range(3))
    neck = euler_to_axis_angle(yaw, pitch, roll)
    return MotionSequence(
        expression=kw["expression"],
        jaw_pose=kw["jaw_pose"],
        eye_pose=kw["eye_pose"],
        neck_pose=torch.as_tensor(neck, dtype=torch.float32),
        fps=float(curves.fps),
    )


def motion_to_curves(motion: MotionSequence, basis: ArkitBasis, ridge: float = 1e-2) -> ArkitCurves:
    """ARKit curves that best reproduce a FLAME motion on the basis' head (for ``drive --arkit-out``).

    Per frame, the weights ``w`` in 0..1 minimise ``|w·B − p|²`` over the stacked expression, jaw
    and eye parameters ``p`` (a bounded linear least-squares problem; the rotations, in radians,
    weighted ×5 so the jaw's 0.35 rad of ``jawOpen`` weighs like the expression coefficients of a
    fitted shape, 1-2) plus ``ridge·|w|²``, which picks the sparse answer where shapes cancel
    each other. The head's rotation (the global orientation composed with the neck pose, as a
    video fit splits it) becomes the head yaw/pitch/roll columns; the eye rotation columns stay
    zero (the ``eyeLook*`` curves carry the gaze).
    """
    from scipy.optimize import lsq_linear
    from scipy.spatial.transform import Rotation

    E = basis.expression.shape[1]
    expr = motion.expression.detach().cpu().double().numpy()
    if expr.shape[1] > E:
        raise HeadStudioError(
            f"the motion has {expr.shape[1]} expression parameters but the head has {E}; retarget it first."
        )
    expr = np.pad(expr, ((0, 0), (0, E - expr.shape[1])))
    jaw = motion.jaw_pose.detach().cpu().double().numpy()
    eye = motion.eye_pose.detach().cpu().double().numpy()
    rot_w = 5.0
    A = np.concatenate([basis.expression, rot_w * basis.jaw_pose, rot_w * basis.eye_pose], 1).T  # [P, 52]
    P = np.concatenate([expr, rot_w * jaw, rot_w * eye], 1)  # [T, P]
    T, K = P.shape[0], len(ARKIT_NAMES)
    # a small pull to zero picks the sparse answer where shapes cancel (eyeLookIn + eyeLookOut)
    A = np.concatenate([A, np.sqrt(ridge) * np.eye(K)], 0)
    w = np.zeros((T, K), np.float32)
    for t in range(T):
        w[t] = lsq_linear(A, np.concatenate([P[t], np.zeros(K)]), bounds=(0.0, 1.0), method="bvls").x
    neck = Rotation.from_rotvec(motion.neck_pose.detach().cpu().double().numpy())
    glob = Rotation.from_rotvec(motion.global_orient.detach().cpu().double().numpy())
    ypr = (glob * neck).as_euler("YXZ")  # the whole head's turn (a video fit puts most in global_orient)
    return ArkitCurves(w, float(motion.fps), ypr.astype(np.float32), np.zeros((T, 6), np.float32))


def euler_to_axis_angle(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """``R = R_y(yaw) R_x(pitch) R_z(roll)`` as axis-angle ``[T, 3]``."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler("YXZ", np.stack([yaw, pitch, roll], 1)).as_rotvec()


def _format_timecode(seconds: float, fps: float) -> str:
    frames_total = seconds * fps
    whole = int(math.floor(frames_total + 1e-9))
    sub = frames_total - whole
    f = whole % int(round(fps))
    s_total = whole // int(round(fps))
    h, rem = divmod(s_total, 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{s:02d}:{f:02d}.{int(round(sub * 1000)) % 1000:03d}"


def _parse_timecode(tc: str, fps: float, row: int, path: Path) -> float:
    parts = tc.strip().split(":")
    try:
        if len(parts) != 4:
            raise ValueError
        h, m, s = (int(x) for x in parts[:3])
        return h * 3600 + m * 60 + s + float(parts[3]) / fps
    except ValueError:
        raise HeadStudioError(
            f"{path}: row {row} has timecode '{tc}'; Live Link Face writes HH:MM:SS:FF.fff."
        ) from None


def write_live_link_csv(path: str | Path, curves: ArkitCurves) -> Path:
    """Write curves in Live Link Face's CSV layout (atomically).

    Returns:
        ``path`` as a ``Path``.
    """
    out = Path(path)
    w = np.asarray(curves.weights, np.float64)
    T = w.shape[0]
    if w.ndim != 2 or w.shape[1] != len(ARKIT_NAMES):
        raise HeadStudioError(f"ARKit curves must be [T, 52]; got {list(w.shape)}.")
    if not curves.fps > 0:
        raise HeadStudioError(f"ARKit curves need a positive frame rate; got {curves.fps}.")
    head = np.zeros((T, 3)) if curves.head_rotation is None else np.asarray(curves.head_rotation, np.float64)
    eyes = np.zeros((T, 6)) if curves.eye_rotation is None else np.asarray(curves.eye_rotation, np.float64)
    start = _parse_timecode(curves.start_timecode, curves.fps, 0, out)
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(["Timecode", "BlendshapeCount", *LIVE_LINK_NAMES, *LIVE_LINK_POSE_COLUMNS])
    count = len(ARKIT_NAMES) + len(LIVE_LINK_POSE_COLUMNS)
    for t in range(T):
        vals = [*w[t], *head[t], *eyes[t]]
        wr.writerow(
            [_format_timecode(start + t / curves.fps, curves.fps), count, *(f"{v:.6g}" for v in vals)]
        )
    with atomic_output(out) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    log.info("wrote %d frames of ARKit curves to %s", T, out)
    return out


def read_live_link_csv(path: str | Path, fps: float | None = None) -> ArkitCurves:
    """Read a Live Link Face CSV (or one :func:`write_live_link_csv` wrote).

    Columns are found by name (case-insensitive), so extra columns are ignored; the 52 blendshape
    columns and ``Timecode`` are required, the head/eye rotation columns optional (zeros).

    Args:
        path: the ``.csv``.
        fps: the recording's frame rate; ``None``: from the timecodes' frame numbers (the largest
            frame number seen + 1, rounded to 24/25/30/50/60 when close, kept as it is when the
            frame numbers wrap at a new second), 60 if undecidable.

    Raises:
        HeadStudioError: missing file or columns, a row with the wrong number of values, a
            non-numeric value, a ``BlendshapeCount`` that disagrees with the columns.
    """
    p = Path(path)
    if not p.is_file():
        raise HeadStudioError(f"ARKit curves file '{p}' does not exist; give a Live Link Face CSV.")
    rows = list(csv.reader(p.read_text(encoding="utf-8-sig").splitlines()))
    if not rows:
        raise HeadStudioError(
            f"{p}: empty file; a Live Link Face CSV starts with a Timecode,BlendshapeCount,... header."
        )
    header = [h.strip() for h in rows[0]]
    index = {h.lower(): i for i, h in enumerate(header)}
    missing = [n for n in ("Timecode", *LIVE_LINK_NAMES) if n.lower() not in index]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise HeadStudioError(
            f"{p}: missing column(s) {shown}; a Live Link Face CSV has Timecode, BlendshapeCount and "
            "the 52 ARKit curves (EyeBlinkLeft ... TongueOut)."
        )
    body = [r for r in rows[1:] if any(c.strip() for c in r)]
    if not body:
        raise HeadStudioError(f"{p}: no data rows after the header.")
    bs_col = index.get("blendshapecount")
    pose_cols = [index.get(c.lower()) for c in LIVE_LINK_POSE_COLUMNS]
    T = len(body)
    w = np.zeros((T, len(ARKIT_NAMES)), np.float32)
    pose = np.zeros((T, len(LIVE_LINK_POSE_COLUMNS)), np.float32)
    tcs: list[str] = []
    for t, r in enumerate(body):
        row = t + 2
        if len(r) != len(header):
            raise HeadStudioError(
                f"{p}: row {row} has {len(r)} values but the header has {len(header)} columns; "
                "every row needs one value per column."
            )
        if bs_col is not None:
            try:
                count = int(float(r[bs_col]))
            except ValueError:
                count = -1
            have = len(ARKIT_NAMES) + sum(c is not None for c in pose_cols)
            if count not in (len(ARKIT_NAMES), have, len(ARKIT_NAMES) + len(LIVE_LINK_POSE_COLUMNS)):
                raise HeadStudioError(
                    f"{p}: row {row} has BlendshapeCount {r[bs_col]!r}, but the file has "
                    f"{have} curve columns; fix the count or the columns."
                )
        try:
            w[t] = [float(r[index[n.lower()]]) for n in LIVE_LINK_NAMES]
            pose[t] = [float(r[c]) if c is not None else 0.0 for c in pose_cols]
        except ValueError:
            raise HeadStudioError(
                f"{p}: row {row} has a value that is not a number; every curve value must be one."
            ) from None
        tcs.append(r[index["timecode"]])
    if not (np.isfinite(w).all() and np.isfinite(pose).all()):
        raise HeadStudioError(f"{p}: NaN or infinite values; every curve value must be a finite number.")
    if fps is None:
        fps = _guess_fps(tcs)
    for t, tc in enumerate(tcs):  # validates every timecode
        _parse_timecode(tc, fps, t + 2, p)
    return ArkitCurves(w, float(fps), pose[:, :3].copy(), pose[:, 3:].copy(), tcs[0].strip())


def _guess_fps(timecodes: Sequence[str]) -> float:
    frames = []
    for tc in timecodes:
        parts = tc.strip().split(":")
        if len(parts) == 4:
            try:
                frames.append(int(float(parts[3])))
            except ValueError:
                pass
    if not frames or len(timecodes) < 2:
        return 60.0
    top = max(frames) + 1
    for rate in (24, 25, 30, 50, 60):
        if top <= rate and top >= rate - 2:
            return float(rate)
    # frame numbers that wrap to 0 at a new second count up to the rate itself (a 10 fps drive)
    wrapped = any(b < a for a, b in zip(frames, frames[1:], strict=False))
    return float(top) if wrapped else 60.0
