"""FLAME motions in the app: reading motion files and fitting expressions to a head.

One place for what the trainer (``train.motion_path``), the animation sampler, ``animate`` and
``export`` all do with a motion: load a TalkSHOW ``.npy``, SHOW / TalkSHOW ``.pkl`` or our
``.npz`` (``flame_core.MotionSequence.load``), and truncate or zero-pad its expressions ``[T, E]``
to the ``num_expression`` components of the head that plays it. The default motion (no motion
given) is the procedural talking motion retargeted to the head through landmarks
(:func:`default_motion`), so it means the same on any head; :func:`training_motion` is what
training animates with.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import torch
from flame_core import FlameModel, FlameParams
from flame_core.motion import MotionSequence
from flame_core.retarget import default_training_motion

from .errors import HeadStudioError, require_file
from .video import audio_seconds

__all__ = [
    "MOTION_SUFFIXES",
    "load_motion",
    "as_motion",
    "default_motion",
    "training_motion",
    "TRAINING_MOTION_FRAMES",
    "fit_expression",
    "fit_flame_params",
]

log = logging.getLogger(__name__)

#: Motion file suffixes ``load_motion`` reads.
MOTION_SUFFIXES = (".npy", ".npz", ".pkl")
#: Frames of the default training motion (10 s at 30 fps).
TRAINING_MOTION_FRAMES = 300


def load_motion(path: str | Path) -> MotionSequence:
    """Load a motion file (TalkSHOW ``.npy``, SHOW/TalkSHOW ``.pkl``, ours ``.npz``).

    Raises:
        HeadStudioError: missing file, a suffix other than :data:`MOTION_SUFFIXES`, or a file
            flame_core cannot read.
    """
    p = require_file(path, "motion file", MOTION_SUFFIXES)
    try:
        return MotionSequence.load(p)
    except Exception as err:  # MotionFileError, pickle / zip errors from a wrong file
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise HeadStudioError(f"could not read motion file '{p}': {msg}") from err


def as_motion(motion: MotionSequence | str | Path) -> MotionSequence:
    """``motion`` itself, or the motion file it names loaded with :func:`load_motion`."""
    return load_motion(motion) if isinstance(motion, (str, Path)) else motion


def default_motion(
    head: FlameModel,
    audio: str | Path | None = None,
    fps: float = 30.0,
    num_frames: int | None = None,
    seed: int = 0,
) -> MotionSequence:
    """The talking motion used when none is given: ``num_frames`` frames, else as long as ``audio``,
    else 4 s; the procedural talking motion (of ``seed``) retargeted to ``head`` through landmarks
    (``flame_core.retarget.default_training_motion``), so it means the same on any head."""
    if num_frames is None:
        secs = audio_seconds(audio) if audio is not None else None
        num_frames = int(round((secs or 4.0) * fps))
    return default_training_motion(head, num_frames=max(1, int(num_frames)), fps=fps, seed=int(seed))


def training_motion(head: FlameModel, path: str | Path | None = None, seed: int = 0) -> MotionSequence:
    """The motion whose frames animate training on ``head``: the motion file ``path``, else the
    default motion (:func:`default_motion`, :data:`TRAINING_MOTION_FRAMES` frames of ``seed``).

    On a head other than the procedural one, training without a motion file says so in one
    warning line (the default motion is procedural, retargeted; a recorded one is better).

    Raises:
        HeadStudioError: the motion file cannot be read.
    """
    if path is not None:
        return load_motion(path)
    if head.source != "procedural":
        log.warning(
            "no train.motion_path: the animation trains on the procedural talking motion (%d frames at "
            "30 fps), retargeted to %s through its landmarks; give a recorded motion with "
            "«overrides» train.motion_path=FILE.",
            TRAINING_MOTION_FRAMES,
            head.source,
        )
    return default_motion(head, num_frames=TRAINING_MOTION_FRAMES, seed=seed)


def fit_expression(expr: torch.Tensor, num_expression: int) -> torch.Tensor:
    """Truncate or zero-pad ``expr [..., E]`` to ``[..., num_expression]`` (unchanged when equal)."""
    e = expr.shape[-1]
    if e == num_expression:
        return expr
    if e > num_expression:
        return expr[..., :num_expression]
    return torch.cat([expr, expr.new_zeros(*expr.shape[:-1], num_expression - e)], dim=-1)


def fit_flame_params(params: FlameParams, num_expression: int) -> FlameParams:
    """``params`` with ``expression [B, E]`` fitted to ``num_expression`` (:func:`fit_expression`)."""
    if params.expression is None:
        return params
    return replace(params, expression=fit_expression(params.expression, num_expression))
