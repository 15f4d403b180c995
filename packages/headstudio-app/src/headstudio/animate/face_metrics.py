"""What a face does, measured from MediaPipe's 478 landmarks: mouth, eyes, brows, gaze.

The features are ratios of distances in the face's own frame (x along the line between the outer
eye corners, so head roll cancels), each divided by a length that does not move with the
expression, so that two videos of the same head can be compared frame by frame:

========== ===================================================================================
lip_gap    inner-lip gap (landmarks 13 → 14, positive when open) / face height
mouth_w    mouth width (lip corners 61 ↔ 291) / face height
eye_r      the subject's right eye (image left): lid gap 159 → 145 / eye width 33 ↔ 133
eye_l      the subject's left eye: lid gap 386 → 374 / eye width 263 ↔ 362
brow       mean height of the upper brow contours above their eye's corner line / face height
iris_x     iris centres (468, 473) along the eye axis from the corners' midpoint / eye width
iris_y     the same across the eye axis (down positive) / eye width
========== ===================================================================================

Face height is forehead top (10) to nose base (2): rigid under the jaw, lips, lids and brows.
:func:`compare` gives Pearson r and the amplitude ratio (standard deviations) per feature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "FEATURES",
    "face_features",
    "FeatureMatch",
    "compare",
    "pearson",
    "FOREHEAD",
    "NOSE_BASE",
    "EYE_R",
    "EYE_L",
    "BROW_R",
    "BROW_L",
    "IRIS_R",
    "IRIS_L",
    "LIP_INNER",
    "LIP_CORNERS",
]

FEATURES = ("lip_gap", "mouth_w", "eye_r", "eye_l", "brow", "iris_x", "iris_y")
FOREHEAD, NOSE_BASE = 10, 2
#: (outer corner, inner corner, upper lid, lower lid) of the subject's right / left eye.
EYE_R = (33, 133, 159, 145)
EYE_L = (263, 362, 386, 374)
BROW_R = (70, 63, 105, 66, 107)
BROW_L = (300, 293, 334, 296, 336)
IRIS_R, IRIS_L = 468, 473
LIP_INNER = (13, 14)
LIP_CORNERS = (61, 291)


def _rows(lm: np.ndarray, ids: int | tuple[int, ...]) -> np.ndarray:
    return lm[:, ids] if isinstance(ids, int) else lm[:, list(ids)].mean(1)


def face_features(landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """The features of the module docstring for every frame.

    Args:
        landmarks: ``[T, 478, 2]`` pixels (x right, y down); NaN rows (no face) give NaN features.

    Returns:
        ``{name: [T] float64}`` for every name in :data:`FEATURES`.
    """
    lm = np.asarray(landmarks, np.float64)
    if lm.ndim != 3 or lm.shape[1] < 478 or lm.shape[2] != 2:
        raise ValueError(f"landmarks must be [T, 478, 2]; got {lm.shape}")
    axis = lm[:, EYE_L[0]] - lm[:, EYE_R[0]]  # image left → right along the eyes
    ang = np.arctan2(axis[:, 1], axis[:, 0])
    c, s = np.cos(ang), np.sin(ang)
    rot = np.stack([np.stack([c, s], -1), np.stack([-s, c], -1)], 1)  # [T, 2, 2], undoes the roll
    a = np.einsum("tij,tlj->tli", rot, lm)  # face-aligned points; y still points down
    height = np.linalg.norm(a[:, NOSE_BASE] - a[:, FOREHEAD], axis=-1)
    out = {
        "lip_gap": (a[:, LIP_INNER[1], 1] - a[:, LIP_INNER[0], 1]) / height,
        "mouth_w": np.linalg.norm(a[:, LIP_CORNERS[1]] - a[:, LIP_CORNERS[0]], axis=-1) / height,
    }
    brows, ix, iy = [], [], []
    for name, eye, brow, iris in (("eye_r", EYE_R, BROW_R, IRIS_R), ("eye_l", EYE_L, BROW_L, IRIS_L)):
        outer, inner, up, lo = (a[:, i] for i in eye)
        width = np.linalg.norm(outer - inner, axis=-1)
        out[name] = (lo[:, 1] - up[:, 1]) / width
        mid = (outer + inner) / 2
        brows.append((mid[:, 1] - _rows(a, brow)[:, 1]) / height)
        d = a[:, iris] - mid
        ix.append(d[:, 0] / width)
        iy.append(d[:, 1] / width)
    out["brow"] = (brows[0] + brows[1]) / 2
    out["iris_x"] = (ix[0] + ix[1]) / 2
    out["iris_y"] = (iy[0] + iy[1]) / 2
    return out


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two ``[T]`` series over the frames where both are finite (NaN if flat)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return math.nan
    x, y = x[ok] - x[ok].mean(), y[ok] - y[ok].mean()
    den = math.sqrt(float((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / den) if den > 0 else math.nan


@dataclass(frozen=True)
class FeatureMatch:
    """How one feature of a driven video follows the source.

    Attributes:
        r: Pearson correlation over frames where both have a face.
        amplitude: ``std(driven) / std(source)`` over those frames.
        source_std: ``std(source)``, how much the feature moves in the source.
    """

    r: float
    amplitude: float
    source_std: float

    def meets(self, min_r: float, amp_range: tuple[float, float]) -> bool:
        """``r >= min_r`` and the amplitude ratio within ``amp_range`` (NaN fails)."""
        return bool(self.r >= min_r and amp_range[0] <= self.amplitude <= amp_range[1])


def compare(source: dict[str, np.ndarray], driven: dict[str, np.ndarray]) -> dict[str, FeatureMatch]:
    """Per feature: correlation and amplitude ratio of ``driven`` against ``source`` (both ``[T]``)."""
    out = {}
    for k in source:
        x, y = np.asarray(source[k], np.float64), np.asarray(driven[k], np.float64)
        n = min(len(x), len(y))
        x, y = x[:n], y[:n]
        ok = np.isfinite(x) & np.isfinite(y)
        sx = float(x[ok].std()) if ok.any() else math.nan
        sy = float(y[ok].std()) if ok.any() else math.nan
        out[k] = FeatureMatch(pearson(x, y), sy / sx if sx > 0 else math.nan, sx)
    return out
