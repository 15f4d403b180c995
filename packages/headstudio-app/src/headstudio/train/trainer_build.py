"""How a :class:`~headstudio.train.trainer.Trainer` is built: a fresh run (:meth:`TrainerBuild.new`)
or one continued from its checkpoint (:meth:`TrainerBuild.resume`). Split out of
:mod:`headstudio.train.trainer`, whose ``Trainer`` inherits these constructors."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from flame_core import FlameModel

from ..avatar import Avatar
from ..avatar_head import build_head
from ..config import HeadStudioConfig
from ..errors import HeadStudioError
from .checkpoint import (
    DamagedCheckpointError,
    load_checkpoint,
    resumed_config,
)
from .guidance import Guidance, build_guidance
from .run_folder import RunFolder
from .runtime import resolve_device
from .trainer_state import TrainerState

__all__ = ["TrainerBuild"]

#: ``new`` and ``resume`` return the class they are called on (``Trainer``).
_T = TypeVar("_T", bound="TrainerBuild")


def _head_from_config(config: HeadStudioConfig) -> FlameModel:
    """``config.head.flame_path`` (else ``HEADSTUDIO_FLAME_PATH``, else the procedural head), with
    the mouth interior unless ``head.mouth_interior`` is off (:func:`build_head`)."""
    h = config.head
    try:
        return build_head(h.flame_path, h.num_shape, h.num_expression, h.mouth_interior)
    except (OSError, ValueError) as err:
        raise HeadStudioError(f"could not load the head model: {err}") from err


class TrainerBuild(TrainerState):
    """The constructors of :class:`~headstudio.train.trainer.Trainer` (a mixin; ``cls`` is the
    trainer class, whose ``__init__`` only assembles ready parts)."""

    @classmethod
    def new(
        cls: type[_T],
        config: HeadStudioConfig,
        prompt: str | None = None,
        output_dir: RunFolder | str | Path = "outputs/run",
        *,
        guidance: Guidance | None = None,
        head: FlameModel | None = None,
        progress: bool = True,
        callback: Callable[[_T, int], None] | None = None,
    ) -> _T:
        """A fresh run: seeds every random generator, initialises the avatar on the neutral head.

        Args:
            guidance: a ready guidance (e.g. F-SDS with tiny test models, or image guidance);
                ``None`` builds the one named by ``config.guidance.kind``.
            head: the head model; ``None`` resolves ``config.head.flame_path`` (else the
                procedural head).
            (the rest as the class.)

        Raises:
            HeadStudioError: ``output_dir`` already holds a run (:meth:`RunFolder.require_new`),
                or a part cannot be built.
        """
        out = output_dir if isinstance(output_dir, RunFolder) else RunFolder(output_dir)
        out.require_new()
        seed = int(config.train.seed)
        device = resolve_device(config.train.device)
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)  # noqa: NPY002
        random.seed(seed)
        generator = torch.Generator().manual_seed(seed + 1)
        head = (head if head is not None else _head_from_config(config)).to(device)
        guidance = guidance if guidance is not None else build_guidance(config, head, device, prompt)
        init_gen = torch.Generator().manual_seed(seed)
        avatar = Avatar.initialize(head, config.init, generator=init_gen).to(device)
        guidance = cls._ready(guidance, prompt, device)
        return cls(config, prompt, out, head, guidance, avatar, device, generator, progress, callback)

    @classmethod
    def resume(
        cls: type[_T],
        output_dir: RunFolder | str | Path,
        config: HeadStudioConfig | None = None,
        prompt: str | None = None,
        *,
        guidance: Guidance | None = None,
        head: FlameModel | None = None,
        progress: bool = True,
        callback: Callable[[_T, int], None] | None = None,
    ) -> _T:
        """Continue the run in ``output_dir`` from its checkpoint, exactly where it stopped.

        The checkpoint's configuration is used, with ``train.steps`` and ``train.device`` from
        ``config`` when given; ``prompt`` defaults to the run's.

        Raises:
            HeadStudioError: no readable checkpoint, or a head model other than the run's
                (``argument="head"``).
        """
        out = output_dir if isinstance(output_dir, RunFolder) else RunFolder(output_dir)
        path = out.checkpoint
        ckpt = load_checkpoint(path)
        config = resumed_config(config, ckpt, path)
        prompt = prompt if prompt is not None else ckpt.prompt
        device = resolve_device(config.train.device)
        generator = torch.Generator().manual_seed(int(config.train.seed) + 1)
        head = (head if head is not None else _head_from_config(config)).to(device)
        got = str(head.identity_hash())
        if ckpt.head_hash not in (None, got):
            raise HeadStudioError(
                f"the run in '{out.path}' was made on another head model ({ckpt.head_hash[:12]}…, this one "
                "is "
                f"{got[:12]}…); resume it with the head model of the original run (head.flame_path or "
                "HEADSTUDIO_FLAME_PATH).",
                argument="head",
            )
        guidance = guidance if guidance is not None else build_guidance(config, head, device, prompt)
        g = ckpt.gaussians
        try:  # the checkpoint's fields are checked on loading; what only this head can tell
            avatar = Avatar(
                head,
                g["means"],
                g["quats"],
                g["log_scales"],
                g["opacity_logits"],
                g["sh"],
                ckpt.face_ids,
                ckpt.shape,
            ).to(device)
        except HeadStudioError as err:
            raise DamagedCheckpointError(path, err.message.rstrip(".")) from None
        guidance = cls._ready(guidance, prompt, device)
        trainer = cls(config, prompt, out, head, guidance, avatar, device, generator, progress, callback)
        try:
            trainer._restore(ckpt)
        except (ValueError, RuntimeError, KeyError, TypeError, IndexError) as err:
            detail = " ".join(str(err).split())[:160]
            raise DamagedCheckpointError(path, f"its state does not fit the run ({detail})") from None
        return trainer

    @staticmethod
    def _ready(guidance: Guidance, prompt: str | None, device: torch.device) -> Guidance:
        guidance.set_default_prompt(prompt)
        return guidance.to(device)
