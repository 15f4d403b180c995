"""The viewer's named expressions (neutral, smile, open mouth, blink, surprise) on this avatar's head.

They are defined once, as MediaPipe landmark targets (``flame_core.retarget.expression_presets``),
and fitted to whatever head the avatar was built on (``fit_targets``: cached per head identity),
so the same preset means the same face on the procedural head and on FLAME.
"""

from __future__ import annotations

import logging

import torch
from flame_core import FlameModel
from flame_core.retarget import expression_presets, fit_targets

__all__ = ["fit_presets"]

log = logging.getLogger(__name__)


def fit_presets(head: FlameModel) -> dict[str, dict[str, torch.Tensor]]:
    """``{name: {"expression" [E], "jaw_pose" [3], "eye_pose" [6]}}`` of every preset on ``head``.

    A head the landmark targets cannot be fitted to (no MediaPipe landmark embedding) gets no
    presets, with a warning: the sliders still work.
    """
    targets = expression_presets()
    try:
        fit = fit_targets(head, targets)
    except ValueError as err:
        log.warning("no expression presets for this head (%s); the sliders still work", err)
        return {}
    return {
        name: {key: fit[key][i].detach().float().cpu() for key in ("expression", "jaw_pose", "eye_pose")}
        for i, name in enumerate(targets.names)
    }
