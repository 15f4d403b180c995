"""Retargeting through landmarks: "what the face does" defined once, fitted to any head's parameters.

Expression components mean different things on different heads: the procedural head's component 0
is a smile, FLAME 2020's is a PCA mode. So a pose that must mean the same on every head (a viseme,
a viewer preset, a frame of the default training motion) is stored as *where the MediaPipe
landmarks go* (:class:`LandmarkTargets`), and :func:`fit_targets` finds the expression and jaw
of a given head that put its landmarks there.

Conventions:

- Landmarks live in the head's own frame (FLAME: metres, y up, the face looks along +z) with the
  neck and global pose at zero; targets are *displacements from the neutral face*, divided by a
  face scale (the RMS distance of the landmarks from their centroid on the neutral face), so they
  transfer between heads of different sizes. :func:`fit_targets` multiplies them by the target
  head's own face scale, measured on the landmarks both share.
- Eye rotations are joint rotations that mean the same on every FLAME-topology head; they are
  carried as they are (``eye_pose``), never fitted.
- The fit is 3D least squares over the shared landmarks (no camera, so no depth ambiguity), with
  small priors: ridge on the expression, and on the jaw's yaw/roll. Adam warm start, then L-BFGS.

Fits are cached in memory and on disk by ``(head.identity_hash()`` with its landmark embedding,
``targets.fingerprint())`` under
``$HEADSTUDIO_CACHE`` (default ``~/.cache/headstudio``)``/retarget``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import torch

from flame_core.io import atomic_path
from flame_core.landmark_head import LandmarkHead
from flame_core.landmark_targets import LandmarkTargets, _embedding, face_scale, neutral_landmarks
from flame_core.model import FlameModel
from flame_core.motion import MotionSequence, procedural_talking_motion

__all__ = [
    "LandmarkTargets",
    "fit_targets",
    "retarget_motion",
    "default_training_motion",
    "expression_presets",
    "face_scale",
    "neutral_landmarks",
    "landmark_error_px",
    "CACHE_ENV",
    "PRESET_NAMES",
]

log = logging.getLogger(__name__)

CACHE_ENV = "HEADSTUDIO_CACHE"
#: Bump when the fit changes so stale cache entries are not reused.
_FIT_VERSION = 1
#: Ridge weight of the expression coefficients (relative to the normalised landmark error).
EXPRESSION_PRIOR = 1e-6
#: Weight of the jaw's yaw and roll (a jaw opens about x; sideways motion stays small).
JAW_SIDE_PRIOR = 1e-4
#: The viewer's named presets, in order (:func:`expression_presets`).
PRESET_NAMES = ("neutral", "smile", "open_mouth", "blink", "surprise")

_memory_cache: dict[tuple[str, str, int, int], dict[str, torch.Tensor]] = {}


# ---------------------------------------------------------------------------------------- fit


def _cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV, "").strip()
    base = Path(root) if root else Path.home() / ".cache" / "headstudio"
    return base / "retarget"


def _cache_load(path: Path) -> dict[str, torch.Tensor] | None:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        return None
    except Exception as err:  # a damaged cache entry is refitted, never fatal
        log.warning("ignoring unreadable retarget cache %s (%s)", path, type(err).__name__)
        return None
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        return None
    return data


def _cache_save(path: Path, result: dict[str, torch.Tensor]) -> None:
    try:
        with atomic_path(path) as tmp:
            torch.save(result, tmp)
    except OSError as err:  # a read-only home still fits, it just does not remember
        log.info("retarget cache not written (%s)", err)


def fit_targets(
    head: FlameModel, targets: LandmarkTargets, *, cache: bool = True, iterations: int = 8
) -> dict[str, torch.Tensor]:
    """The head's parameters that reproduce ``targets``.

    Args:
        head: the head to fit (its shape stays zero: targets are about expression, not identity).
        targets: the poses.
        cache: use and fill the in-memory and on-disk caches.
        iterations: Gauss-Newton iterations (the expression enters linearly; only the jaw needs them).

    Returns:
        CPU float32 ``{"expression": [K, head.num_expression], "jaw_pose": [K, 3],
        "eye_pose": [K, 6], "error": [K]}`` where ``error`` is the RMS landmark error in units of
        the head's face scale (:func:`landmark_error_px` converts it to pixels).

    Raises:
        ValueError: the head has no landmark embedding, or shares fewer than 8 landmarks with the
            targets.
    """
    key = (_head_key(head), targets.fingerprint(), head.num_expression, int(iterations))
    if cache and key in _memory_cache:
        return {k: v.clone() for k, v in _memory_cache[key].items()}
    path = _cache_dir() / f"{key[0][:24]}-{key[1][:24]}-e{key[2]}-i{iterations}-v{_FIT_VERSION}.pt"
    if cache:
        hit = _cache_load(path)
        if hit is not None and tuple(hit.get("expression", torch.zeros(0)).shape) == (len(targets), key[2]):
            _memory_cache[key] = hit
            return {k: v.clone() for k, v in hit.items()}
    result = _fit(head, targets, iterations)
    if cache:
        _memory_cache[key] = result
        _cache_save(path, result)
    return {k: v.clone() for k, v in result.items()}


def _head_key(head: FlameModel) -> str:
    """The head's identity hash combined with its landmark embedding (both decide the fit)."""
    emb = _embedding(head)
    h = hashlib.sha256(head.identity_hash().encode())
    for t, kind in ((emb.face_idx, "<i8"), (emb.bary_coords, "<f4"), (emb.landmark_indices, "<i8")):
        h.update(np.ascontiguousarray(t.detach().cpu().numpy(), dtype=kind).tobytes())
    return h.hexdigest()


def _fit(head: FlameModel, targets: LandmarkTargets, iterations: int) -> dict[str, torch.Tensor]:
    emb = _embedding(head)
    # rows the model derived (face oval, irises of a FLAME folder) are approximations of where
    # MediaPipe would put them: fitting them would pull the measured rows off their targets
    head_ids = [m for m in emb.landmark_indices.cpu().tolist() if m not in head.derived_landmark_ids]
    tgt_row = {int(m): i for i, m in enumerate(targets.landmark_ids.tolist())}
    shared = [m for m in head_ids if m in tgt_row]
    if len(shared) < 8:
        raise ValueError(
            f"head {head.source!r} shares {len(shared)} MediaPipe landmarks with the targets; at least 8 "
            "are needed to retarget (check its landmark embedding)"
        )
    sub = LandmarkHead(head, emb.select(shared))
    rows = torch.tensor([tgt_row[m] for m in shared], dtype=torch.long)
    dev = head.device
    K, E = len(targets), head.num_expression
    dt = torch.float64  # the normal equations want double precision
    sub = sub.to(dt)
    with torch.no_grad():
        neutral = sub(expression=torch.zeros(1, E, dtype=dt, device=dev))[0]  # [S, 3]
    # The offsets are in units of the reference's face scale; the size ratio between the heads is
    # measured on the landmarks both have, so a head with fewer landmarks gets the same motion.
    scale = face_scale(neutral.float().cpu())
    per_unit = scale / face_scale(targets.neutral[rows].float())  # metres per stored unit
    goal = neutral[None] + targets.offsets[:, rows].to(dev, dt) * per_unit  # [K, S, 3]
    with torch.no_grad():
        x, err = _gauss_newton(sub, goal / scale, targets.eye_pose.to(dev, dt), E, iterations, scale)
    out = {
        "expression": x[:, :E].float().cpu(),
        "jaw_pose": x[:, E:].float().cpu(),
        "eye_pose": targets.eye_pose.float().clone(),
        "error": err.float().cpu(),
    }
    log.info(
        "retargeted %d pose(s) to %s: RMS landmark error %.2e face scales (max %.2e)",
        K, head.source, float(out["error"].mean()), float(out["error"].max()),
    )  # fmt: skip
    return out


def _gauss_newton(
    sub: LandmarkHead,
    goal: torch.Tensor,
    eyes: torch.Tensor,
    E: int,
    iterations: int,
    scale: float,
    chunk: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pose Gauss-Newton on ``x = [expression (E), jaw (3)]`` for landmarks ``goal [K, S, 3]``
    (in face-scale units). Returns ``(x [K, E+3], rms error [K] in face-scale units)``.

    The expression columns of the Jacobian are exact (:meth:`LandmarkHead.expression_jacobian`); the
    jaw's three are central differences. Each step solves the regularised normal equations of every
    pose at once; it stops early once no parameter moves by more than 1e-9.
    """
    K = goal.shape[0]
    dt, dev = goal.dtype, goal.device
    n = E + 3
    prior = torch.zeros(n, dtype=dt, device=dev)
    prior[:E] = EXPRESSION_PRIOR
    prior[E + 1 :] = JAW_SIDE_PRIOR
    h = 1e-5
    probe = torch.cat([torch.zeros(1, 3), h * torch.eye(3), -h * torch.eye(3)]).to(dev, dt)  # [7, 3]
    x = torch.zeros(K, n, dtype=dt, device=dev)

    def landmarks(xs: torch.Tensor, ey: torch.Tensor) -> torch.Tensor:
        return sub(expression=xs[:, :E], jaw_pose=xs[:, E:], eye_pose=ey) / scale

    for _ in range(iterations):
        moved = 0.0
        for lo in range(0, K, chunk):
            xk, gk, ek = x[lo : lo + chunk], goal[lo : lo + chunk], eyes[lo : lo + chunk]
            k = xk.shape[0]
            jaws = (xk[:, None, E:] + probe[None]).reshape(-1, 3)
            rep = {"expression": xk[:, :E].repeat_interleave(7, 0), "eye_pose": ek.repeat_interleave(7, 0)}
            f = (sub(jaw_pose=jaws, **rep) / scale).view(k, 7, -1)
            r = f[:, 0] - gk.reshape(k, -1)  # [k, 3S]
            j_jaw = (f[:, 1:4] - f[:, 4:7]) / (2 * h)  # [k, 3, 3S]
            j_expr = sub.expression_jacobian(xk[:, E:], ek).reshape(k, -1, E).transpose(1, 2) / scale
            J = torch.cat([j_expr, j_jaw], 1)  # [k, n, 3S]
            H = J @ J.transpose(1, 2) + torch.diag_embed(prior.expand(k, n))
            g = J @ r[..., None] + (prior * xk)[..., None]
            dx = -torch.linalg.solve(H, g)[..., 0]
            dx[:, E:] = dx[:, E:].clamp(-0.2, 0.2)  # the jaw is the nonlinear part: bounded steps
            x[lo : lo + chunk] = xk + dx
            moved = max(moved, float(dx.abs().max()))
        if moved < 1e-9:
            break
    err = torch.cat([
        (landmarks(x[lo : lo + chunk], eyes[lo : lo + chunk]) - goal[lo : lo + chunk]).pow(2).sum(-1).mean(-1)
        for lo in range(0, K, chunk)
    ])  # fmt: skip
    return x, err.sqrt()


def landmark_error_px(error: torch.Tensor, image_size: int = 512, face_fraction: float = 0.6) -> torch.Tensor:
    """Convert :func:`fit_targets`' ``error`` (face-scale units) to pixels in a frontal view where the
    face's landmark spread (about ±1.5 face scales) fills ``face_fraction`` of ``image_size``."""
    return error * (face_fraction * image_size / 3.0)


# -------------------------------------------------------------------------------- motions


def retarget_motion(motion: MotionSequence, source: FlameModel, target: FlameModel) -> MotionSequence:
    """``motion`` (made for ``source``) re-expressed in ``target``'s expression and jaw space.

    Expression and jaw are refitted through the landmarks; neck, eyes, global pose and translation
    are copied. When both heads have the same identity hash the motion is returned unchanged.
    """
    if source.identity_hash() == target.identity_hash():
        return motion
    kw = motion.flame_kwargs(None)
    names = [f"frame{i:06d}" for i in range(len(motion))]
    targets = LandmarkTargets.from_poses(
        source, names, expression=kw["expression"], jaw_pose=kw["jaw_pose"], eye_pose=kw["eye_pose"]
    )
    fit = fit_targets(target, targets)
    return MotionSequence(
        expression=fit["expression"],
        jaw_pose=fit["jaw_pose"],
        neck_pose=kw["neck_pose"],
        eye_pose=kw["eye_pose"],
        global_orient=kw["global_orient"],
        translation=kw["translation"],
        fps=motion.fps,
    )


def default_training_motion(
    head: FlameModel, num_frames: int = 300, fps: float = 30.0, seed: int = 0
) -> MotionSequence:
    """The procedural talking motion (defined on the procedural head) retargeted to ``head``."""
    reference = FlameModel.procedural(num_shape=head.num_shape or 1, num_expression=100)
    motion = procedural_talking_motion(num_frames=num_frames, fps=fps, num_expression=100, seed=seed)
    if reference.identity_hash() == head.identity_hash():
        return _fit_width(motion, head.num_expression)
    log.info(
        "training motion: the procedural talking motion (%d frames), retargeted to %s through landmarks",
        num_frames, head.source,
    )  # fmt: skip
    return retarget_motion(motion, reference, head)


def _fit_width(motion: MotionSequence, num_expression: int) -> MotionSequence:
    kw = motion.flame_kwargs(None)
    e = kw["expression"]
    e = (
        e[:, :num_expression]
        if e.shape[1] >= num_expression
        else torch.nn.functional.pad(e, (0, num_expression - e.shape[1]))
    )
    return MotionSequence(
        expression=e, jaw_pose=kw["jaw_pose"], neck_pose=kw["neck_pose"], eye_pose=kw["eye_pose"],
        global_orient=kw["global_orient"], translation=kw["translation"], fps=motion.fps,
    )  # fmt: skip


def expression_presets() -> LandmarkTargets:
    """The viewer's presets (:data:`PRESET_NAMES`), defined once on the procedural head.

    Uses the procedural head's fixed expression meanings (0 smile, 3 brow raise, 5/6 blink,
    9 mouth corners) and its jaw.
    """
    head = FlameModel.procedural(num_shape=1, num_expression=10)
    K = len(PRESET_NAMES)
    expr = torch.zeros(K, 10)
    jaw = torch.zeros(K, 3)
    expr[1, 0] = 1.0  # smile
    jaw[2, 0] = 0.3  # open mouth
    expr[2, 9] = 0.6
    expr[3, 5] = expr[3, 6] = 1.0  # blink
    expr[4, 3] = 1.0  # surprise: brows up, mouth a little open
    jaw[4, 0] = 0.15
    return LandmarkTargets.from_poses(head, PRESET_NAMES, expression=expr, jaw_pose=jaw)
