"""Where a command runs and what it loads: the torch device and an avatar file with its head.

Low in the import graph (torch, flame_core, the app's errors and the avatar), so the CLI, the
trainer and the demo all use it without importing each other (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from flame_core import FlameModel

from .avatar import Avatar
from .errors import HeadStudioError, require_file

__all__ = ["resolve_device", "load_head", "load_avatar"]

#: Errors of a file that is not what it claims to be (a pickle, a PLY, ...).
_READ_ERRORS = (ValueError, KeyError, OSError, EOFError, UnicodeDecodeError)


def _one_line(err: BaseException, limit: int = 160) -> str:
    text = " ".join(str(err).split())
    return (text or type(err).__name__)[:limit]


def resolve_device(name: str | torch.device | None) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` → ``torch.device`` (``auto``: CUDA when available).

    Raises:
        HeadStudioError: (``argument="device"``) an unknown name, CUDA asked for but not
            available, or a CUDA index beyond the devices present.
    """
    name = str(name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    m = re.fullmatch(r"cuda(?::(\d+))?", name)
    if m is None:
        raise HeadStudioError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N.", argument="device")
    if not torch.cuda.is_available():
        raise HeadStudioError(
            f"device {name} was asked for but CUDA is not available; use cpu.", argument="device"
        )
    count = torch.cuda.device_count()
    if int(m.group(1) or 0) >= count:
        raise HeadStudioError(
            f"device {name}: only {count} CUDA device(s) here; use cuda:0..cuda:{count - 1}.",
            argument="device",
        )
    return torch.device(name)


def load_head(flame: str | Path) -> FlameModel:
    """The official FLAME model in the pickle ``flame``.

    Raises:
        HeadStudioError: (``argument="flame"``) missing, not a ``.pkl``, or not a FLAME model.
    """
    path = require_file(flame, "FLAME model", (".pkl",))
    try:
        return FlameModel.from_file(path)
    except _READ_ERRORS as err:
        raise HeadStudioError(
            f"'{path}' is not a readable FLAME model ({_one_line(err)}); give the generic_model.pkl / "
            "flame2023.pkl the avatar was made with, or leave it out to use the head named in the "
            "avatar file.",
            argument="flame",
        ) from err


def load_avatar(path: str | Path, flame: str | Path | None, device: torch.device | str) -> Avatar:
    """Load an avatar PLY onto ``device`` in eval mode; its head from ``flame`` (a FLAME pickle)
    or, when ``None``, from the file's metadata.

    Raises:
        HeadStudioError: a missing or unreadable avatar or FLAME file, or a head the avatar was
            not made on.
    """
    p = require_file(path, "avatar", (".ply",))
    head = load_head(flame) if flame is not None else None
    try:
        avatar = Avatar.load(p, head=head)
    except _READ_ERRORS as err:
        raise HeadStudioError(
            f"'{p}' is not a readable headstudio avatar ({_one_line(err)}); give an avatar.ply written "
            "by `headstudio generate` or `headstudio demo`."
        ) from err
    return avatar.to(device).eval()
