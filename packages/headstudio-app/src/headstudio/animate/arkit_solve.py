"""FLAME motion -> ARKit weights by the face's geometry (what ``drive --arkit-out`` writes).

**Why geometry, not parameters.** Each fitted ARKit shape (:class:`~.arkit_fit.ArkitBasis`) is a
combination of FLAME parameters chosen so that the head's *landmarks* match that blendshape. A
motion made with other parameter directions (the procedural head's own blink components, a video
fit's expression) can move the landmarks just as a fitted shape does while lying far from it in
parameter space, so a projection there loses it (a full blink came out as eyeBlink 0.11-0.13;
BENCHMARKS.md, "ARKit curves on the drive round trip"). Here the weights are chosen to reproduce
the motion's landmark movement instead.

**The problem, per frame.** ``D [52, L·3]`` holds each fitted shape's landmark displacement from
the neutral face on the basis' head at its shape (the shape played alone at weight 1, exactly as
:func:`~.arkit.curves_to_motion` plays it; computed once per call), ``y [L·3]`` the frame's
displacement (its expression, jaw and eye parameters through the same head; the global and neck
rotation left out, since the curves carry head rotation in their own columns), both in mm. The
weights ``w ∈ [0, 1]^52`` minimise

    |Ω (wD − y)|² + λ|w|² + μ·Σw

with ``Ω`` a per-landmark weight (below), ``λ = ridge · u`` and ``μ = sparsity · u``, ``u`` the
median squared column norm of ``D`` (plain mm, so weighting a region up does not also press
harder on every curve). The ridge picks one answer where shapes cancel (``eyeLookIn`` +
``eyeLookOut``); the L1 term (linear, as ``w ≥ 0``) keeps out curves that buy little: a curve
is used only where it lowers the error by more than ``μ`` per unit of weight (on the procedural
head's blink it takes the mouth curves, there only to cancel side effects of others, from 0.43 to
0.24, and the other curves above 0.1 from 14 to 11); its cost is a dead zone, a movement worth less
than about ``μ`` is not written at all. One QR of the stacked
``[ΩDᵀ; √λ I]`` reduces every frame to a 52×52 bounded least-squares problem
(:func:`scipy.optimize.lsq_linear`, ``bvls``) with the same minimiser, the L1 term folded into its
right-hand side; 300 frames take about 1.5 s of CPU.

**Superposition and the jaw.** Landmarks are not linear in the weights (the jaw rotates, and
rotations of mixed shapes compose), so ``wD`` is only a first-order model of what the weights
play. ``refine`` chord Gauss-Newton steps correct it: each plays the current weights through the
head, ``L(w)``, and solves again for the target ``y − (L(w) − L(0) − wD)``, i.e. with the model's
error at the current weights moved onto the target (``D`` stays the Jacobian: the fixed-slope, or
chord, variant of Gauss-Newton, one batched forward per step). On the procedural head one step
lifts the share of the jaw motion's landmark movement the curves reproduce from 0.996 to 1.000.

**Region weights.** The landmarks are split into groups (:data:`LANDMARK_GROUPS`: each eye's
lids, each brow, each iris, the lips, the rest of the face), and each group's range ``s_g`` is
the largest RMS displacement any of the 52 shapes gives it. On the procedural head: lips 24 mm
(jawOpen), the rest of the face 15 mm (jawOpen), irises 4.5 mm, brows 3.6-3.8 mm, lids 3.0-3.3 mm
(eyeBlink*). A group that moves less than the face is weighted up by the square root of the
ratio, ``Ω_g = sqrt(max(1, s_face / s_g))`` (lids and brows about 2×, irises 1.8×, lips and
face 1). Why: in plain mm the few landmarks that define the eye shapes (14 per eye's lids) are
outvoted by the many skin landmarks around them, which the fitted shapes reproduce less
faithfully; weighted by the whole ratio (3.4-5× here), what no shape reproduces of the lids is
chased with other curves. Measured on the procedural head's own blink at full closure (with the
default ridge and L1 term):

| Ω | eyeBlink L / R | mouth curves (max) | other curves > 0.1 | blink reproduced |
| --- | --- | --- | --- | --- |
| 1 (mm) | 0.73 / 0.77 | 0.10 | 6 | 0.80 |
| sqrt of the ratio (this) | 0.83 / 0.87 | 0.24 | 11 | 0.79 |
| the ratio | 0.86 / 0.92 | 0.40 | 11 | 0.70 |

(eyeSquint* is 1.0 in all three: this blink lifts the lower lid, which the fitted eyeBlink* does
not.) All three return curves made from the basis in a curves → motion → curves round trip
(median r 1.00) and reproduce 0.96-0.97 of a brow raise and 0.999 of talking.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from flame_core.landmark_head import LandmarkHead
from flame_core.motion import MotionSequence

from ..errors import HeadStudioError
from .arkit_fit import (
    _BROW,
    _CORNER,
    _INNER_LIP,
    _IRIS,
    _LOWER_LID,
    _LOWER_LIP,
    _UPPER_LID,
    _UPPER_LIP,
    ArkitBasis,
    shape_digest,
)
from .arkit_names import ARKIT_NAMES

__all__ = ["LANDMARK_GROUPS", "ArkitProjector"]

log = logging.getLogger(__name__)

#: MediaPipe landmark ids of the groups whose errors are normalised separately (module docstring);
#: every landmark not listed is in the group "face".
LANDMARK_GROUPS: dict[str, tuple[int, ...]] = {
    "lids left": _UPPER_LID["Left"] + _LOWER_LID["Left"],
    "lids right": _UPPER_LID["Right"] + _LOWER_LID["Right"],
    "brow left": _BROW["Left"],
    "brow right": _BROW["Right"],
    "iris left": _IRIS["Left"],
    "iris right": _IRIS["Right"],
    "lips": tuple(sorted(set(_UPPER_LIP + _LOWER_LIP + _INNER_LIP + (_CORNER["Left"], _CORNER["Right"])))),
}
_MM = 1e3  # FLAME units are metres; the problem is posed in millimetres
_CHUNK = 256  # frames per forward pass


@dataclass
class ArkitProjector:
    """The per-frame geometric solve of :mod:`.arkit_solve` for one basis on its head.

    Attributes:
        basis: the fitted shapes.
        offsets: ``[52, L, 3]`` each shape's landmark displacement from the neutral face, mm.
        landmark_weight: ``[L]`` the weight ``Ω`` of each landmark's error (module docstring).
        group_range: group name -> its range ``s_g`` in mm (module docstring).
    """

    basis: ArkitBasis
    offsets: np.ndarray
    landmark_weight: np.ndarray
    group_range: dict[str, float]
    _head: LandmarkHead = field(repr=False)
    _beta: torch.Tensor = field(repr=False)
    _neutral: np.ndarray = field(repr=False)  # [L, 3] mm

    @classmethod
    def build(cls, head: Any, basis: ArkitBasis, shape: torch.Tensor | None = None) -> ArkitProjector:
        """Offsets and weights of ``basis`` on ``head`` at shape ``shape`` (``[1, S]``; ``None``: zeros).

        Raises:
            HeadStudioError: the head has no 478-point MediaPipe embedding, or the basis was fitted
                on another head or shape.
        """
        emb = getattr(head, "landmark_embedding", None)
        if emb is None or len(emb) < 478:
            raise HeadStudioError(
                "converting a motion to ARKit curves needs the head's 478-point MediaPipe landmark "
                "embedding; use the procedural head or a FLAME folder with mediapipe_landmark_embedding.npz."
            )
        beta = torch.zeros(1, int(head.num_shape)) if shape is None else torch.as_tensor(shape).reshape(1, -1)
        if basis.identity_hash and basis.identity_hash != str(head.identity_hash()):
            raise HeadStudioError(
                "the ARKit fit was made on another head model; refit it on this head "
                "(basis_for(avatar, refit=True))."
            )
        if basis.shape_digest and basis.shape_digest != shape_digest(beta):
            raise HeadStudioError(
                "the ARKit fit was made at another face shape; refit it at this shape "
                "(basis_for(avatar, refit=True))."
            )
        lh = LandmarkHead(head, emb)
        dtype = torch.float64 if lh.fast else torch.float32  # a non-FLAME head is evaluated as it is
        if lh.fast:
            lh.to(torch.float64)
        dev = head.faces.device
        beta = beta.detach().to(dev, dtype)
        proj = cls(basis, np.zeros(0), np.zeros(0), {}, lh, beta, np.zeros(0))
        K = len(ARKIT_NAMES)
        proj._neutral = proj._landmarks({"expression": torch.zeros(1, basis.expression.shape[1])})[0]
        offsets = proj._landmarks(basis.params(np.eye(K)).kwargs()) - proj._neutral  # [52, L, 3]
        L = offsets.shape[1]
        group = np.full(L, len(LANDMARK_GROUPS), np.int64)  # the rest: "face"
        for g, ids in enumerate(LANDMARK_GROUPS.values()):
            group[list(ids)] = g
        names = [*LANDMARK_GROUPS, "face"]
        ranges = {}
        for g, name in enumerate(names):
            rms = np.sqrt((offsets[:, group == g] ** 2).sum(-1).mean(-1))  # [52]
            ranges[name] = max(float(rms.max()), 1e-3)  # a group no shape moves: 1 µm
        # a group that moves less than the face weighs up by the square root of the ratio
        per_group = np.array([np.sqrt(max(1.0, ranges["face"] / ranges[n])) for n in names])
        weight = per_group[group]
        log.debug("ARKit solve: group ranges %s mm, weights %s", ranges, dict(zip(names, per_group.round(2))))
        proj.offsets, proj.landmark_weight, proj.group_range = offsets, weight, ranges
        return proj

    def _landmarks(self, kw: dict[str, torch.Tensor]) -> np.ndarray:
        """Landmarks ``[T, L, 3]`` in mm under ``expression [T, E]`` / ``jaw_pose [T, 3]`` /
        ``eye_pose [T, 6]`` (missing: zero) at the projector's shape, no head rotation."""
        T = next(iter(kw.values())).shape[0]
        dev, dt = self._beta.device, self._beta.dtype
        out = []
        with torch.no_grad():
            for s in range(0, T, _CHUNK):
                part = {k: v[s : s + _CHUNK].to(dev, dt) for k, v in kw.items()}
                n = next(iter(part.values())).shape[0]
                out.append(self._head(shape=self._beta.expand(n, -1), **part).cpu().double().numpy())
        return np.concatenate(out) * _MM

    def motion_offsets(self, motion: MotionSequence) -> np.ndarray:
        """``[T, L, 3]`` the motion's landmark displacement from the neutral face in mm (its
        expression, jaw and eye parameters; the head's global and neck rotation left out).

        Raises:
            HeadStudioError: the motion has more expression components than the head.
        """
        E = self.basis.expression.shape[1]
        expr = motion.expression.detach().cpu()
        if expr.shape[1] > E:
            raise HeadStudioError(
                f"the motion has {expr.shape[1]} expression parameters but the head has {E}; "
                "retarget it first."
            )
        kw = {"expression": expr, **{k: getattr(motion, k).detach().cpu() for k in ("jaw_pose", "eye_pose")}}
        return self._landmarks(kw) - self._neutral

    def played_offsets(self, weights: np.ndarray) -> np.ndarray:
        """``[T, L, 3]`` the landmark displacement (mm) that ARKit weights ``[T, 52]`` play through
        the basis (as :func:`~.arkit.curves_to_motion` plays them)."""
        return self._landmarks(self.basis.params(weights).kwargs()) - self._neutral

    def solve(
        self, target: np.ndarray, ridge: float = 1e-2, sparsity: float = 0.05, refine: int = 1
    ) -> np.ndarray:
        """ARKit weights ``[T, 52]`` in 0..1 reproducing landmark displacements ``target [T, L, 3]``
        (mm; module docstring).

        Args:
            target: what to reproduce (:meth:`motion_offsets`).
            ridge: the quadratic pull to zero, relative to the median squared column norm of the
                shapes' offsets (mm²).
            sparsity: the linear (L1) cost per unit of weight, same units: a curve is used only
                where it lowers the weighted squared error by more than that.
            refine: chord Gauss-Newton steps after the linear solve (0: superposition only).
        """
        from scipy.optimize import lsq_linear

        if not ridge > 0 or not sparsity >= 0 or refine < 0:
            raise HeadStudioError(
                f"ridge must be > 0, sparsity >= 0 and refine >= 0 (got {ridge}, {sparsity}, {refine}); "
                "the defaults are 1e-2, 0.05 and 1."
            )
        K = len(ARKIT_NAMES)
        T = target.shape[0]
        omega = np.repeat(self.landmark_weight, 3)  # [L·3]
        A = self.offsets.reshape(K, -1).T * omega[:, None]  # [L·3, 52]
        # the priors' unit: the median squared column norm in plain mm (the weights' choice does not
        # move it, so weighting a region up does not also press harder on every curve)
        norms = (self.offsets.reshape(K, -1) ** 2).sum(1)
        unit = float(np.median(norms[norms > 0])) if (norms > 0).any() else 1.0
        lam = float(ridge) * unit
        Q, R = np.linalg.qr(np.concatenate([A, np.sqrt(lam) * np.eye(K)], 0))  # [L·3+52, 52], [52, 52]
        Qa = Q[: A.shape[0]]  # the ridge rows' target is zero
        # the L1 term (w >= 0: linear) folds into the right-hand side: |Rw - Qᵀy + (μ/2) R⁻ᵀ1|²
        mu = float(sparsity) * unit
        shift = 0.5 * mu * np.linalg.solve(R.T, np.ones(K))
        D = self.offsets.reshape(K, -1)
        y = target.reshape(T, -1)
        w = np.zeros((T, K))
        goal = y
        for step in range(int(refine) + 1):
            rhs = (goal * omega) @ Qa - shift  # [T, 52]: Qᵀ [Ω y; 0], less the L1 term
            for t in range(T):
                w[t] = lsq_linear(R, rhs[t], bounds=(0.0, 1.0), method="bvls").x
            if step < refine:
                model_err = self.played_offsets(w).reshape(T, -1) - w @ D  # what superposition misses
                goal = y - model_err
        return w.astype(np.float32)

    def expressed(self, target: np.ndarray, weights: np.ndarray) -> float:
        """Share of ``target``'s landmark movement (``[T, L, 3]``, unweighted mm²) that ``weights``
        reproduce when played: ``1 − |played − target|² / |target|²`` (NaN when nothing moves)."""
        moved = float((target**2).sum())
        if moved <= 0:
            return float("nan")
        return 1.0 - float(((self.played_offsets(weights) - target) ** 2).sum()) / moved
