"""What several commands share: the avatar they read and the checks of an output path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..avatar import Avatar
from ..errors import HeadStudioError
from ..train.runtime import load_avatar, resolve_device

__all__ = ["AvatarOptions", "check_output", "open_avatar"]


@dataclass(frozen=True, kw_only=True)
class AvatarOptions:
    """The options of every command that reads an avatar.

    Attributes:
        avatar: the avatar ``.ply`` written by generate / demo.
        flame: the FLAME model of the avatar (``None``: the head named in its metadata).
        verify: check the file's integrity checksum (``False``: forensics on a damaged file).
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``.
        progress: draw progress bars.
    """

    avatar: Path
    flame: Path | None = None
    verify: bool = True
    device: str = "auto"
    progress: bool = True


def open_avatar(options: AvatarOptions) -> tuple[Avatar, torch.device]:
    """The avatar of ``options`` on its device (resolved once), in eval mode."""
    device = resolve_device(options.device)
    return load_avatar(options.avatar, options.flame, device, verify=options.verify), device


def check_output(path: str | Path, suffixes: tuple[str, ...], what: str = "output") -> Path:
    """An output file path: one of ``suffixes``, not a directory.

    Raises:
        HeadStudioError: a wrong suffix, or a directory of that name.
    """
    p = Path(path)
    if p.suffix.lower() not in suffixes:
        raise HeadStudioError(f"{what} '{p}' must end in {' or '.join(suffixes)}.")
    if p.exists() and p.is_dir():
        raise HeadStudioError(f"{what} '{p}' is a directory; give a file name.")
    return p
