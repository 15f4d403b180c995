"""Where landmarks go: :class:`LandmarkTargets` (one named set of MediaPipe landmark positions per
expression, in the head frame, divided by the reference's :func:`face_scale`) and the landmark
measurements of a head it is built from. Split out of :mod:`flame_core.retarget`, which fits
FLAME parameters to these targets and re-exports all of it."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from flame_core.model import FlameModel

__all__ = ["LandmarkTargets", "face_scale", "neutral_landmarks"]


# ------------------------------------------------------------------------------ measurement
def neutral_landmarks(head: FlameModel) -> tuple[torch.Tensor, torch.Tensor]:
    """``(landmarks [L, 3], landmark_ids [L])`` of the head's neutral face (zero shape and pose)."""
    emb = _embedding(head)
    with torch.no_grad():
        verts = head().vertices
        lmk = emb(verts, head.faces)[0]
    return lmk.detach().float().cpu(), emb.landmark_indices.detach().cpu()


def face_scale(landmarks: torch.Tensor) -> float:
    """RMS distance of ``landmarks [L, 3]`` from their centroid (the size the offsets are divided by)."""
    c = landmarks - landmarks.mean(0, keepdim=True)
    return float(c.pow(2).sum(-1).mean().sqrt())


def _embedding(head: FlameModel):
    emb = head.landmark_embedding
    if emb is None or len(emb) == 0:
        raise ValueError(
            f"head {head.source!r} has no MediaPipe landmark embedding; retargeting needs one "
            "(put mediapipe_landmark_embedding.npz beside the FLAME file)"
        )
    return emb


# ---------------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class LandmarkTargets:
    """K face poses defined by where the MediaPipe landmarks go, not by any head's expression basis.

    Attributes:
        names: ``K`` labels (``"smile"``, ``"AA"``, or frame numbers as text).
        offsets: ``[K, L, 3]`` landmark displacements from the reference head's neutral face, in the
            head frame, divided by the reference's :func:`face_scale`.
        neutral: ``[L, 3]`` the reference's neutral landmarks divided by the same scale (used to
            measure the target head's scale on the landmarks both heads share).
        landmark_ids: ``[L]`` MediaPipe ids (0..477) of the rows.
        eye_pose: ``[K, 6]`` eye rotations (axis-angle, left then right), carried as they are.
    """

    names: tuple[str, ...]
    offsets: torch.Tensor
    neutral: torch.Tensor
    landmark_ids: torch.Tensor
    eye_pose: torch.Tensor

    def __post_init__(self) -> None:
        K = len(self.names)
        L = int(self.landmark_ids.shape[0])
        if tuple(self.offsets.shape) != (K, L, 3):
            raise ValueError(f"offsets must be [K={K}, L={L}, 3]; got {tuple(self.offsets.shape)}")
        if tuple(self.neutral.shape) != (L, 3):
            raise ValueError(f"neutral must be [L={L}, 3]; got {tuple(self.neutral.shape)}")
        if tuple(self.eye_pose.shape) != (K, 6):
            raise ValueError(f"eye_pose must be [K={K}, 6]; got {tuple(self.eye_pose.shape)}")
        if len(set(self.names)) != K:
            raise ValueError("names must be unique")

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def from_poses(
        cls,
        head: FlameModel,
        names: Sequence[str],
        expression: torch.Tensor | None = None,
        jaw_pose: torch.Tensor | None = None,
        eye_pose: torch.Tensor | None = None,
    ) -> LandmarkTargets:
        """Record ``head``'s landmarks at ``K`` poses (``expression [K, <=E]``, ``jaw_pose [K, 3]``,
        ``eye_pose [K, 6]``; neck and global pose zero) as targets."""
        K = len(names)
        emb = _embedding(head)
        kw: dict[str, torch.Tensor] = {}
        for key, x in (("expression", expression), ("jaw_pose", jaw_pose), ("eye_pose", eye_pose)):
            if x is not None:
                x = torch.as_tensor(x, dtype=head.dtype, device=head.device)
                if x.ndim != 2 or x.shape[0] != K:
                    raise ValueError(f"{key} must be [K={K}, ·] (one row per name); got {tuple(x.shape)}")
                kw[key] = x
        if "expression" in kw and kw["expression"].shape[1] > head.num_expression:
            kw["expression"] = kw["expression"][:, : head.num_expression]
        neutral, ids = neutral_landmarks(head)
        scale = face_scale(neutral)
        with torch.no_grad():
            verts = head(**kw).vertices if kw else head().vertices.expand(K, -1, -1)
            lmk = emb(verts, head.faces).float().cpu()
        eyes = kw["eye_pose"].float().cpu() if "eye_pose" in kw else torch.zeros(K, 6)
        return cls(
            names=tuple(str(n) for n in names),
            offsets=(lmk - neutral[None]) / scale,
            neutral=neutral / scale,
            landmark_ids=ids.clone(),
            eye_pose=eyes,
        )

    def select(self, names: Sequence[str]) -> LandmarkTargets:
        """The targets named ``names``, in that order."""
        lut = {n: i for i, n in enumerate(self.names)}
        missing = [n for n in names if n not in lut]
        if missing:
            raise KeyError(f"no targets named {missing}; these exist: {list(self.names)}")
        rows = torch.tensor([lut[n] for n in names], dtype=torch.long)
        return LandmarkTargets(
            tuple(names), self.offsets[rows], self.neutral, self.landmark_ids, self.eye_pose[rows]
        )

    def fingerprint(self) -> str:
        """sha256 of the content (names, offsets, neutral, ids, eyes): the cache key."""
        h = hashlib.sha256()
        h.update("\x00".join(self.names).encode())
        for t in (self.offsets, self.neutral, self.eye_pose):
            h.update(np.ascontiguousarray(t.detach().cpu().numpy(), dtype="<f4").tobytes())
        h.update(np.ascontiguousarray(self.landmark_ids.cpu().numpy(), dtype="<i8").tobytes())
        return h.hexdigest()
