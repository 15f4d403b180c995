"""Where a command runs and what it loads: the torch device and an avatar file with its head.

Low in the import graph (torch, flame_core, the app's errors and the avatar), so the CLI, the
trainer and the demo all use it without importing each other (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import torch
from flame_core import FlameModel
from flame_core.io import load_flame_pickle

from ..avatar import Avatar
from ..avatar_io import AvatarFileError, read_avatar_file
from ..errors import HeadStudioError, one_line, require_file
from .checkpoint import load_checkpoint
from .run_folder import RunFolder

__all__ = ["resolve_device", "load_head", "check_flame_file", "load_avatar", "restore_advice"]

#: Errors of a file that is not what it claims to be (a pickle, a PLY, ...).
_READ_ERRORS = (ValueError, KeyError, OSError, EOFError, UnicodeDecodeError)


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


def load_head(flame: str | Path, mouth_interior: bool = False) -> FlameModel:
    """The official FLAME model in the pickle ``flame`` (with the mouth interior when asked: an
    avatar made with one plays on that head only).

    Raises:
        HeadStudioError: (``argument="flame"``) missing, not a ``.pkl``, or not a FLAME model.
    """
    path = require_file(flame, "FLAME model", (".pkl",))
    try:
        return FlameModel.from_file(path, mouth_interior=mouth_interior)
    except _READ_ERRORS as err:
        raise _unreadable_flame(path, err) from err


def check_flame_file(flame: str | Path) -> Path:
    """``flame`` as a path, once its pickle reads as a FLAME model (only the file: no embedding or
    mouth interior is built), so a bad ``--flame`` is named before the avatar is read.

    Raises:
        HeadStudioError: as :func:`load_head`.
    """
    path = require_file(flame, "FLAME model", (".pkl",))
    try:
        load_flame_pickle(path)
    except _READ_ERRORS as err:
        raise _unreadable_flame(path, err) from err
    return path


def _unreadable_flame(path: Path, err: BaseException) -> HeadStudioError:
    return HeadStudioError(
        f"'{path}' is not a readable FLAME model ({one_line(err, 160)}); give the generic_model.pkl / "
        "flame2023.pkl the avatar was made with, or leave it out to use the head named in the "
        "avatar file.",
        argument="flame",
    )


def restore_advice(avatar: Path, checksum: bool = False) -> str:
    """What to do about the damaged avatar file ``avatar``: the command that rewrites it from its
    run's checkpoint when its folder holds an intact one (``checkpoints/last.pt``, else
    ``previous.pt``), else a backup; ``checksum``: also how to read it anyway (forensics)."""
    folder = RunFolder(avatar.parent)
    run = folder.path
    forensic = "; «verify» reads it anyway (forensics)" if checksum else ""
    tries = (
        (folder.checkpoint, "«generate:resume»"),
        (folder.previous_checkpoint, "«generate:resume_previous»"),
    )
    for ckpt_path, flag in tries:
        if not ckpt_path.is_file():
            continue
        try:
            ckpt = load_checkpoint(ckpt_path)
        except HeadStudioError:
            continue
        prompt = shlex.quote(ckpt.prompt or "PROMPT")
        command = f"headstudio generate {prompt} «generate:output» {shlex.quote(str(run))} {flag}"
        return (
            f"restore it from its run's checkpoint '{ckpt_path}' (step {ckpt.step}): `{command}` rewrites "
            f"{folder.avatar} from it{forensic}"
        )
    return (
        "restore it from a backup, or re-export it from its run's checkpoint (`headstudio generate PROMPT "
        f"«generate:output» RUN «generate:resume»` rewrites RUN/avatar.ply){forensic}"
    )


def load_avatar(
    path: str | Path, flame: str | Path | None, device: torch.device | str, verify: bool = True
) -> Avatar:
    """Load an avatar PLY onto ``device`` in eval mode; its head from ``flame`` (a FLAME pickle)
    or, when ``None``, from the file's metadata.

    Args:
        verify: check the file's integrity checksum (``False``: ``--no-verify``, forensics).

    Raises:
        HeadStudioError: a missing, damaged (one line naming the field and how to restore the
            file: :func:`restore_advice`) or unreadable avatar or FLAME file, or a head the avatar
            was not made on.
    """
    p = require_file(path, "avatar", (".ply",))
    flame_path = check_flame_file(flame) if flame is not None else None
    try:
        f = read_avatar_file(p, verify=verify)
        # the FLAME file as the avatar was made on it: with the mouth interior if it recorded one
        head = load_head(flame_path, bool(f.head_mouth_interior)) if flame_path is not None else None
        avatar = Avatar.from_avatar_file(f, head)
    except AvatarFileError as err:
        if not err.damaged:
            raise
        raise HeadStudioError(f"avatar '{p}' {err.detail}; {restore_advice(p, err.checksum)}.") from None
    except _READ_ERRORS as err:
        raise HeadStudioError(
            f"'{p}' is not a readable headstudio avatar ({one_line(err, 160)}); give an avatar.ply written "
            "by `headstudio generate` or `headstudio demo`."
        ) from err
    return avatar.to(device).eval()
