"""Where an item of a batch stands, read from its folder (what ``headstudio generate`` wrote there).

- ``finished``: ``avatar.ply`` is a valid avatar (read back through the avatar loader, which
  checks the file) of this item's prompt, trained at least as many steps as asked: skipped.
- ``partial``: ``checkpoints/last.pt`` is there (an interrupted run, a killed worker, an avatar
  that fails its checks, or more steps asked for): continued with ``generate --resume``.
- ``empty``: nothing to continue from: a fresh ``generate``.

A folder that holds the run of another prompt or other settings is refused before any work, so
an edited prompts file never continues or skips the wrong avatar.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..avatar_io import read_avatar_file
from ..config import HeadStudioConfig, config_from_dict, config_to_dict
from ..errors import HeadStudioError, one_line
from ..train.checkpoint import RESUME_OVERRIDES, load_checkpoint

__all__ = ["FolderState", "inspect_folder", "check_avatar", "settings_differ", "AVATAR", "CHECKPOINT"]

log = logging.getLogger(__name__)

AVATAR = "avatar.ply"
CHECKPOINT = Path("checkpoints") / "last.pt"
#: Keys that say where or how a run is done, not what it makes: they may change between runs.
#: (The head model itself is checked by its identity hash when a run resumes.)
WHERE_KEYS = frozenset(
    (
        *RESUME_OVERRIDES,
        "guidance.base_model",
        "guidance.controlnet",
        "guidance.controlnet_subfolder",
        "guidance.local_files_only",
        "guidance.dtype",
        "head.flame_path",
    )
)
#: Errors of a file that is not what it claims to be.
_READ_ERRORS = (HeadStudioError, ValueError, KeyError, OSError, EOFError, UnicodeDecodeError)


@dataclass(frozen=True)
class FolderState:
    """An item's folder: ``state`` (module docstring), the avatar's Gaussians when finished, and a
    ``note`` saying why a present avatar is not taken as finished."""

    state: Literal["empty", "partial", "finished"]
    gaussians: int | None = None
    note: str | None = None


def check_avatar(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """``(metadata, None)`` when ``path`` is a valid avatar (the avatar loader's checks), else
    ``(None, reason)`` in one line."""
    try:
        f = read_avatar_file(path)
    except _READ_ERRORS as err:
        return None, one_line(err, 300)
    meta = dict(f.meta)
    meta.setdefault("num_gaussians", int(f.face_ids.shape[0]))
    return meta, None


def settings_differ(mine: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """``section.key`` of the settings two runs do not share (keys in both, :data:`WHERE_KEYS`
    left out); ``theirs`` is read as a saved configuration (renamed values, types)."""
    try:
        theirs = config_to_dict(config_from_dict(theirs, origin="the folder's run"))
    except HeadStudioError:  # written by another version: compare what both know as it is
        pass
    out = []
    for section, values in mine.items():
        other = theirs.get(section) or {}
        for key, value in values.items():
            name = f"{section}.{key}"
            if name not in WHERE_KEYS and key in other and other[key] != value:
                out.append(f"{name} is {other[key]!r} there, {value!r} here")
    return out


def _refuse_other_run(
    folder: Path,
    what: str,
    prompt: str | None,
    config: dict[str, Any] | None,
    item_prompt: str,
    mine: dict[str, Any],
) -> None:
    diffs = []
    if prompt is not None and prompt != item_prompt:
        diffs.append(f"prompt {prompt!r}")
    if config is not None:
        diffs += settings_differ(mine, config)
    if diffs:
        raise HeadStudioError(
            f"'{folder}' holds the {what} of another item ({'; '.join(diffs[:3])}); give the batch another "
            "--output, or move that folder away."
        )


def inspect_folder(folder: Path, prompt: str, config: HeadStudioConfig) -> FolderState:
    """The state of an item's folder (module docstring).

    Raises:
        HeadStudioError: the folder holds a run of another prompt or other settings.
    """
    if folder.exists() and not folder.is_dir():
        raise HeadStudioError(
            f"'{folder}' exists and is not a folder; move it away or give another --output."
        )
    mine = config_to_dict(config)
    has_checkpoint = (folder / CHECKPOINT).is_file()
    note = None
    if (folder / AVATAR).is_file():
        meta, reason = check_avatar(folder / AVATAR)
        if meta is not None:
            saved = meta.get("config") or {}
            _refuse_other_run(folder, "avatar", meta.get("prompt"), saved, prompt, mine)
            done = int((saved.get("train") or {}).get("steps", 0))
            if done >= config.train.steps or not has_checkpoint:
                return FolderState("finished", int(meta["num_gaussians"]))
            note = f"avatar.ply has {done} steps of the {config.train.steps} asked; continuing its checkpoint"
        else:
            note = f"avatar.ply is not valid ({reason}); " + (
                "rebuilding it from the checkpoint" if has_checkpoint else "training it again"
            )
    if not has_checkpoint:
        return FolderState("empty", note=note)
    try:
        ckpt = load_checkpoint(folder / CHECKPOINT)
    except HeadStudioError as err:  # `generate --resume` says the same, as the item's error
        log.info("%s: %s", folder, err)
    else:
        _refuse_other_run(folder, "checkpoint", ckpt.prompt, ckpt.config, prompt, mine)
    return FolderState("partial", note=note)
