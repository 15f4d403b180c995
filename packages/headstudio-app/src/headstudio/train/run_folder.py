"""One training run's folder: its layout, its state, its resume rule and who writes it.

::

    folder = RunFolder("outputs/kratos")
    with folder.lock():                       # or HeadStudioError naming the process that writes it
        folder.check_start(resume=False)      # the resume rule (raises on the wrong mode)
        ...                                   # Trainer.new(config, prompt, folder).train()

The layout (every module that needs a path of a run asks this class for it)::

    config.toml               the resolved configuration
    avatar.ply                the trained avatar (written at the end)
    log.jsonl                 one JSON record per ``train.log_every`` steps
    checkpoints/last.pt       the latest checkpoint; previous.pt the one before it,
                              last.set-aside.pt a damaged last.pt set aside
    previews/step_XXXXX.png   preview grids
    .headstudio.lock          who writes the folder now (pid, host, command)

The state (:meth:`RunFolder.inspect`):

- ``new``: no checkpoint: a fresh run starts here.
- ``resumable``: ``checkpoints/last.pt`` is an intact checkpoint (an interrupted run, a killed
  process, more steps asked for than the avatar has).
- ``finished``: ``avatar.ply`` is a valid avatar (read back through the avatar loader) trained at
  least as many steps as asked, or with no checkpoint to continue.
- ``damaged``: ``checkpoints/last.pt`` is there but not readable (the note says why, and which
  earlier checkpoint is intact).

The lock (:mod:`.folder_lock`) is ``fcntl.flock`` on ``.headstudio.lock``: the kernel drops it
when the process ends, however it ends, so a killed process never blocks the next one. It is
re-entrant within a process (the command and the trainer it runs both hold it). A second process
is refused with one line that names the writer (:class:`RunFolderBusy`), or waits for it
(``wait=True``: a batch item retried while its killed attempt writes its last checkpoint).

Messages name the options of the commands as ``«name»`` (:mod:`headstudio.errors`); the CLI prints
them as its flags.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..avatar_io import read_avatar_file
from ..config import HeadStudioConfig, config_from_dict, config_to_dict, flatten_config
from ..errors import HeadStudioError, one_line
from .checkpoint import PREVIOUS_NAME, RESUME_OVERRIDES, SET_ASIDE_NAME, load_checkpoint
from .folder_lock import FolderLock, RunFolderBusy

__all__ = ["RunFolder", "RunState", "RunFolderBusy", "check_avatar", "settings_differ", "WHERE_KEYS"]

log = logging.getLogger(__name__)

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
class RunState:
    """Where a run folder stands (module docstring).

    Attributes:
        state: ``new``, ``resumable``, ``finished`` or ``damaged``.
        gaussians: the avatar's Gaussians (``finished``).
        note: why a present avatar is not taken as finished, or why the checkpoint is damaged.
    """

    state: Literal["new", "resumable", "finished", "damaged"]
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
    other = flatten_config(theirs)  # an embedded table's keys one by one (guidance.fsds.grad_clip)
    out = []
    for name, value in flatten_config(mine).items():
        if name not in WHERE_KEYS and name in other and other[name] != value:
            out.append(f"{name} is {other[name]!r} there, {value!r} here")
    return out


class RunFolder:
    """A run's folder (module docstring). Cheap to build: nothing is read until asked."""

    LOCK = ".headstudio.lock"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    # ------------------------------------------------------------------------------ layout
    @property
    def config(self) -> Path:
        return self.path / "config.toml"

    @property
    def avatar(self) -> Path:
        return self.path / "avatar.ply"

    @property
    def log(self) -> Path:
        return self.path / "log.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def checkpoint(self) -> Path:
        """``checkpoints/last.pt``: the checkpoint a run resumes from."""
        return self.checkpoints / "last.pt"

    @property
    def previous_checkpoint(self) -> Path:
        return self.checkpoints / PREVIOUS_NAME

    @property
    def set_aside_checkpoint(self) -> Path:
        return self.checkpoints / SET_ASIDE_NAME

    @property
    def previews(self) -> Path:
        return self.path / "previews"

    def preview(self, step: int) -> Path:
        return self.previews / f"step_{step:05d}.png"

    @property
    def lock_file(self) -> Path:
        return self.path / self.LOCK

    def has_checkpoint(self) -> bool:
        return self.checkpoint.is_file()

    # ------------------------------------------------------------------------------- state
    def check_is_folder(self) -> None:
        """Raises HeadStudioError when the path exists and is not a folder."""
        if self.path.exists() and not self.path.is_dir():
            raise HeadStudioError(f"«output» '{self.path}' exists and is not a directory.")

    def inspect(self, prompt: str | None = None, config: HeadStudioConfig | None = None) -> RunState:
        """The folder's state (module docstring). With ``prompt`` / ``config``, a run of another
        prompt or other settings is refused, and an avatar with fewer than ``config.train.steps``
        steps is not finished.

        Raises:
            HeadStudioError: the path is not a folder, or it holds another run.
        """
        if self.path.exists() and not self.path.is_dir():
            raise HeadStudioError(
                f"'{self.path}' exists and is not a folder; move it away or give another «output»."
            )
        mine = config_to_dict(config) if config is not None else None
        has_checkpoint = self.has_checkpoint()
        note = None
        if self.avatar.is_file():
            meta, reason = check_avatar(self.avatar)
            if meta is not None:
                saved = meta.get("config") or {}
                self._refuse_other_run("avatar", meta.get("prompt"), saved, prompt, mine)
                done = int((saved.get("train") or {}).get("steps", 0))
                asked = config.train.steps if config is not None else 0
                if done >= asked or not has_checkpoint:
                    return RunState("finished", int(meta["num_gaussians"]))
                note = f"avatar.ply has {done} steps of the {asked} asked; continuing its checkpoint"
            else:
                note = f"avatar.ply is not valid ({reason}); " + (
                    "rebuilding it from the checkpoint" if has_checkpoint else "training it again"
                )
        if not has_checkpoint:
            return RunState("new", note=note)
        try:
            ckpt = load_checkpoint(self.checkpoint)
        except HeadStudioError as err:  # resuming says the same, as the run's error
            log.info("%s: %s", self.path, err)
            return RunState("damaged", note=one_line(err, 400))
        self._refuse_other_run("checkpoint", ckpt.prompt, ckpt.config, prompt, mine)
        return RunState("resumable", note=note)

    def _refuse_other_run(
        self,
        what: str,
        prompt: str | None,
        config: dict[str, Any] | None,
        my_prompt: str | None,
        mine: dict[str, Any] | None,
    ) -> None:
        diffs = []
        if my_prompt is not None and prompt is not None and prompt != my_prompt:
            diffs.append(f"prompt {prompt!r}")
        if config is not None and mine is not None:
            diffs += settings_differ(mine, config)
        if diffs:
            raise HeadStudioError(
                f"'{self.path}' holds the {what} of another item ({'; '.join(diffs[:3])}); give the batch "
                "another «output», or move that folder away."
            )

    # ------------------------------------------------------------------------ resume rule
    def resolve_resume(self, resume: bool | None) -> bool:
        """The resume rule: whether a run in this folder continues its checkpoint.

        Args:
            resume: ``True``: continue (a checkpoint must be there); ``False``: start (none may
                be there); ``None``: continue when there is one (a batch item).

        Raises:
            HeadStudioError: ``True`` with no checkpoint, or ``False`` with one.
        """
        self.check_is_folder()
        if resume is None:
            return self.has_checkpoint()
        if resume and not self.has_checkpoint():
            raise HeadStudioError(
                f"«resume»: no checkpoint at '{self.checkpoint}'; run without «resume» to start, or give the "
                "«output» of the run to continue."
            )
        if not resume:
            self.require_new()
        return resume

    def require_new(self) -> None:
        """Raises HeadStudioError (``argument="output_dir"``) when the folder already holds a run."""
        if self.has_checkpoint():
            raise HeadStudioError(
                f"«output» '{self.path}' already holds a run (checkpoints/last.pt); continue it with "
                "«resume» "
                "or choose another «output».",
            )

    # ------------------------------------------------------------------------------- lock
    def holder(self) -> dict[str, Any] | None:
        """What the process that writes the folder wrote in its lock file (``pid``, ``host``,
        ``command``), or ``None`` when no process holds the lock."""
        return FolderLock(self.path, self.LOCK).holder()

    def holds_lock(self) -> bool:
        """Whether this process holds the folder's lock."""
        return FolderLock(self.path, self.LOCK).held_here()

    def lock(self, wait: bool = False, command: str | None = None) -> contextlib.AbstractContextManager[Path]:
        """Own the folder while the ``with`` block runs (module docstring); creates the folder.

        Args:
            wait: wait for another process that holds it, instead of refusing.
            command: written in the lock file for the refusal message (default: this process's
                command line).

        Raises:
            RunFolderBusy: another process holds the lock (``wait=False``).
            HeadStudioError: the path is not a folder.
        """
        self.check_is_folder()
        return FolderLock(self.path, self.LOCK).hold(wait, command)
