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

The module is split along those seams: the 52 names in :mod:`.arkit_names`, the per-head fit in
:mod:`.arkit_fit`, the CSV I/O in :mod:`.live_link`; this module keeps the avatar glue and the
curves <-> motion maps, and re-exports the rest, so ``headstudio.animate.arkit`` imports as before.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from flame_core.motion import MotionSequence

from ..errors import HeadStudioError
from .arkit_fit import (
    BASIS_VERSION,
    ArkitBasis,
    arkit_landmark_targets,
    fit_arkit_basis,
    shape_digest,
)
from .arkit_names import ARKIT_NAMES, LIVE_LINK_NAMES, LIVE_LINK_POSE_COLUMNS
from .live_link import ArkitCurves, read_live_link_csv, write_live_link_csv

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
    "BASIS_VERSION",
    "METADATA_KEY",
    "shape_digest",
]

log = logging.getLogger(__name__)
METADATA_KEY = "arkit"


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


def curves_to_motion(curves: ArkitCurves, basis: ArkitBasis) -> MotionSequence:
    """A FLAME motion playing ARKit curves on the head the basis was fitted on.

    The curves give expression, jaw and eye parameters (``basis.params``); the captured
    head rotation becomes the neck pose (yaw about +y, pitch about +x, roll about +z; ARKit's
    pitch is positive looking down, FLAME's rotation about +x is positive tilting down too).
    """
    p = basis.params(curves.weights)
    yaw, pitch, roll = (curves.head_rotation[:, i].astype(np.float64) for i in range(3))
    neck = euler_to_axis_angle(yaw, pitch, roll)
    return MotionSequence(
        expression=p.expression,
        jaw_pose=p.jaw_pose,
        eye_pose=p.eye_pose,
        neck_pose=torch.as_tensor(neck, dtype=torch.float32),
        fps=float(curves.fps),
    )


def motion_to_curves(
    motion: MotionSequence,
    basis: ArkitBasis,
    head: Any,
    shape: torch.Tensor | None = None,
    ridge: float = 1e-2,
    sparsity: float = 0.05,
    refine: int = 1,
) -> ArkitCurves:
    """ARKit curves that best reproduce a FLAME motion on the basis' head (for ``drive --arkit-out``).

    Per frame, the weights in 0..1 are those whose fitted shapes, played on ``head`` at ``shape``,
    best reproduce the frame's landmark movement (its expression, jaw and eye parameters through
    the head): a bounded least-squares problem in landmark space with the errors weighted per
    face region, a small ridge and an L1 cost for sparsity, and ``refine`` chord Gauss-Newton
    steps for the jaw's rotation (:mod:`.arkit_solve` has the details and the reasons). The
    head's rotation (the global orientation composed with the neck pose, as a video fit splits
    it) becomes the head yaw/pitch/roll columns; the eye rotation columns stay zero (the
    ``eyeLook*`` curves carry the gaze).

    Args:
        motion: ``T`` frames.
        basis: the head's ARKit fit (:func:`basis_for`).
        head: the ``FlameModel`` the basis was fitted on (``avatar.head``).
        shape: ``[1, S]`` the shape it was fitted at (``avatar.shape``; ``None``: zeros).
        ridge / sparsity / refine: see :meth:`.arkit_solve.ArkitProjector.solve`.

    Raises:
        HeadStudioError: the basis was fitted on another head or shape, or the motion has more
            expression components than the head.
    """
    from scipy.spatial.transform import Rotation

    from .arkit_solve import ArkitProjector

    proj = ArkitProjector.build(head, basis, shape)
    w = proj.solve(proj.motion_offsets(motion), ridge=ridge, sparsity=sparsity, refine=refine)
    T = w.shape[0]
    neck = Rotation.from_rotvec(motion.neck_pose.detach().cpu().double().numpy())
    glob = Rotation.from_rotvec(motion.global_orient.detach().cpu().double().numpy())
    ypr = (glob * neck).as_euler("YXZ")  # the whole head's turn (a video fit puts most in global_orient)
    return ArkitCurves(w, float(motion.fps), ypr.astype(np.float32), np.zeros((T, 6), np.float32))


def euler_to_axis_angle(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """``R = R_y(yaw) R_x(pitch) R_z(roll)`` as axis-angle ``[T, 3]``."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler("YXZ", np.stack([yaw, pitch, roll], 1)).as_rotvec()
