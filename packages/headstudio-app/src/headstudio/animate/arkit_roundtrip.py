"""ARKit curves on the drive round trip: how faithfully ``headstudio drive --arkit-out`` captures
a known motion.

A known FLAME motion (:func:`headstudio.animate.roundtrip.roundtrip_motion`) of an avatar is
rendered to video and the avatar is driven from that video (as in
:func:`headstudio.animate.roundtrip.run_roundtrip`). Both motions are then converted to ARKit
curves the way ``drive --arkit-out`` converts: :func:`headstudio.animate.arkit.motion_to_curves`
through the avatar's fitted ARKit basis (:func:`headstudio.animate.arkit.basis_for`). So both
sides are in ARKit units (weights 0..1), and the comparison measures the capture, not the basis.

A curve is scored on a motion when it moves in the truth's curves (standard deviation at least
:data:`MIN_CURVE_STD`); per scored curve: Pearson r and the amplitude ratio ``std(captured) /
std(truth)`` (:func:`headstudio.animate.face_metrics.compare`).

What limits the figure besides the capture: ``motion_to_curves`` reproduces the motion's landmark
movement with the 52 fitted shapes (:mod:`headstudio.animate.arkit_solve`), and they span only
part of what FLAME's expressions can do, so the truth's curves need not reproduce the true motion
whole; :attr:`ArkitRoundTrip.expressed` says how much of its landmark movement they do
(:func:`expressed_share`). A movement the shapes cannot express is weak on both sides, and the r
of its curves then measures little.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from flame_core.motion import MotionSequence

from ..avatar import Avatar
from ..output.rendering import render_motion
from .arkit import ARKIT_NAMES, ArkitBasis, ArkitCurves, basis_for, motion_to_curves
from .arkit_solve import ArkitProjector
from .drive import DriveOptions
from .drive_calibration import drive_avatar
from .face_metrics import FeatureMatch, compare
from .roundtrip import roundtrip_motion

__all__ = [
    "MIN_CURVE_STD",
    "ArkitRoundTrip",
    "compare_curves",
    "arkit_roundtrip",
    "expressed_share",
    "format_arkit_table",
    "summary_line",
]

#: Smallest standard deviation (ARKit weight units, 0..1) of a curve of the true motion for it
#: to count as moving; below it the curve barely moves and its r would measure mostly noise.
MIN_CURVE_STD = 0.03


@dataclass
class ArkitRoundTrip:
    """One motion's ARKit curves, true and captured.

    Attributes:
        name: the motion.
        truth: the true motion's curves (``weights [T, 52]``).
        captured: the curves of the motion fitted to the rendered video (``weights [T, 52]``).
        matches: per moving curve (ARKit name), captured against truth.
        expressed: share of the true motion's landmark movement that the truth's curves reproduce
            (:func:`expressed_share`; 1: all; NaN when not computed).
        captured_motion: the FLAME motion the drive fitted (``None`` before it is set).
    """

    name: str
    truth: ArkitCurves
    captured: ArkitCurves
    matches: dict[str, FeatureMatch]
    expressed: float = math.nan
    captured_motion: MotionSequence | None = None

    @property
    def moving(self) -> tuple[str, ...]:
        """The scored curves, in ARKit order."""
        return tuple(self.matches)


def compare_curves(
    name: str, truth: ArkitCurves, captured: ArkitCurves, min_std: float = MIN_CURVE_STD
) -> ArkitRoundTrip:
    """Score ``captured`` against ``truth`` on the curves that move in ``truth`` (``[T, 52]`` each;
    a shorter side is compared on the common frames)."""
    n = min(len(truth), len(captured))
    tw, cw = truth.weights[:n].astype(np.float64), captured.weights[:n].astype(np.float64)
    moving = [k for k, s in zip(ARKIT_NAMES, tw.std(0)) if s >= min_std]
    idx = [ARKIT_NAMES.index(k) for k in moving]
    matches = compare({k: tw[:, i] for k, i in zip(moving, idx)}, {k: cw[:, i] for k, i in zip(moving, idx)})
    return ArkitRoundTrip(name, truth, captured, matches)


def arkit_roundtrip(
    avatar: Avatar,
    name: str,
    out_dir: str | Path,
    num_frames: int = 90,
    fps: float = 30.0,
    size: int = 256,
    captured: MotionSequence | None = None,
    basis: ArkitBasis | None = None,
    options: DriveOptions | None = None,
    landmarker: str | Path | None = None,
    progress: bool = False,
) -> ArkitRoundTrip:
    """The true and captured ARKit curves of round-trip motion ``name`` (module docstring).

    Args:
        avatar: the avatar (its head must have a MediaPipe embedding).
        name: one of :data:`headstudio.animate.roundtrip.MOTIONS`.
        out_dir: where the source video goes (``<name>_source.mp4``).
        num_frames / fps / size: the source clip (square frames of ``size`` pixels).
        captured: a motion already fitted to this clip's video (e.g. from
            :func:`~headstudio.animate.roundtrip.run_roundtrip`); ``None`` renders and drives here.
        basis: the ARKit fit (default: the avatar's, as ``drive --arkit-out`` uses).
        options: the drive's options (default ``DriveOptions()``, the ``drive`` command's).
        landmarker: FaceLandmarker model (see :func:`headstudio.animate.drive.resolve_landmarker`).
        progress: progress bars while rendering.
    """
    num_expr = int(getattr(avatar.head, "num_expression", 100))
    truth = roundtrip_motion(name, num_frames, fps, num_expr)
    if captured is None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        src = out / f"{name}_source.mp4"
        render_motion(avatar, truth, src, size=size, progress=progress)
        captured = drive_avatar(avatar, src, options, landmarker=landmarker, progress=progress).motion
    basis = basis if basis is not None else basis_for(avatar)
    shape = avatar.shape.detach()
    truth_curves = motion_to_curves(truth, basis, avatar.head, shape)
    rt = compare_curves(name, truth_curves, motion_to_curves(captured, basis, avatar.head, shape))
    rt.expressed = expressed_share(avatar, truth, truth_curves, basis)
    rt.captured_motion = captured
    return rt


def expressed_share(avatar: Avatar, motion: MotionSequence, curves: ArkitCurves, basis: ArkitBasis) -> float:
    """How much of ``motion``'s face movement ``curves`` reproduce: ``1 − |L(p) − L(w·B)|² /
    |L(p) − L(0)|²`` over its frames, with ``L`` the head's landmarks (at the avatar's shape,
    head pose left out), ``p`` the motion's expression, jaw and eye parameters and ``w`` the
    curves' weights ``[T, 52]`` played through ``basis`` (NaN for a motion that does not move):
    :meth:`~.arkit_solve.ArkitProjector.expressed`, the measure the solve itself uses."""
    proj = ArkitProjector.build(avatar.head, basis, avatar.shape.detach())
    return proj.expressed(proj.motion_offsets(motion), curves.weights)


def format_arkit_table(results: Sequence[ArkitRoundTrip]) -> str:
    """Markdown table: per motion and moving curve, Pearson r, amplitude ratio and the true std;
    per motion, the share of the true motion its curves express."""
    lines = [
        "| motion | ARKit curve | r | amp | true std | curves express |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for rt in results:
        share = f"{rt.expressed:.2f}"
        for k, m in rt.matches.items():
            lines.append(
                f"| {rt.name} | {k} | {m.r:.2f} | {m.amplitude:.2f} | {m.source_std:.3f} | {share} |"
            )
            share = ""
        if not rt.matches:
            lines.append(f"| {rt.name} | (no curve moves) | | | | {share} |")
    return "\n".join(lines)


def summary_line(results: Sequence[ArkitRoundTrip]) -> str:
    """Median r and amplitude over every scored curve of ``results``."""
    ms = [m for rt in results for m in rt.matches.values()]
    if not ms:
        return "no curve moves"
    rs = [m.r for m in ms if math.isfinite(m.r)]
    amps = [m.amplitude for m in ms if math.isfinite(m.amplitude)]
    return (
        f"{len(ms)} curves: median r {np.median(rs):.2f}, median amplitude {np.median(amps):.2f}"
        if rs and amps
        else f"{len(ms)} curves, none with a finite r"
    )
