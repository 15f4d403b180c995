"""Trainer checkpoints: everything a run needs to continue exactly, in one atomic file.

A checkpoint (``checkpoints/last.pt``, ``torch.load(weights_only=True)``) holds the Gaussians
(their number changes with densification), the learned shape, the Adam state, the densification
statistics, the guidance's state, every random generator (torch, CUDA, numpy, python, the
trainer's sampler generator), the resolved configuration, the prompt and the head model's
identity hash. :class:`Checkpoint` is its typed form; on disk it is a plain dict of format
:data:`CHECKPOINT_FORMAT` (1), the layout headstudio has written since its first release::

    {"format": 1, "step", "num_gaussians", "num_skipped",
     "avatar": {"gaussians": {name: [N, ...]}, "face_ids": [N], "shape": [1, S]},
     "optimizer", "densify_state": {"__dataclass__": "DensifyState", ...} | None,
     "guidance": dict | None, "rng", "config", "prompt", "head_hash", "sha256"}

Integrity: ``sha256`` is the SHA-256 of every other entry (:func:`content_digest`), so a flipped
bit anywhere in the tensors or the settings shows (``torch.load`` itself checks no CRC). Format-1
files written before it existed load with one warning line. Every field is checked on loading;
a damaged file is one :class:`DamagedCheckpointError` line naming the field.

The previous checkpoint is kept: writing ``last.pt`` first turns the old one into
``previous.pt`` (both atomically, so a crash at any moment leaves two complete files or the old
pair). Resuming never falls back to it silently: when ``last.pt`` is damaged the error names
``previous.pt`` and its step, and :func:`use_previous_checkpoint` (``headstudio generate
--resume-previous``) continues from it, keeping the damaged file as ``last.set-aside.pt``.
"""

from __future__ import annotations

import logging
import os
import random
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flame_core.model import FLAME_PATH_ENV
from rigged_gaussians.strategy import DensifyState
from torch import Tensor

from .._atomic import atomic_output
from ..config import HeadStudioConfig, config_from_dict, config_to_dict, flatten_config
from ..errors import HeadStudioError
from ._checkpoint_fields import DIGEST_KEY, FieldError, check_fields, content_digest, short, tensor_field

__all__ = [
    "CHECKPOINT_FORMAT",
    "Checkpoint",
    "DamagedCheckpointError",
    "content_digest",
    "load_checkpoint",
    "save_checkpoint",
    "previous_checkpoint_path",
    "use_previous_checkpoint",
    "resumed_config",
    "rng_state",
    "set_rng_state",
]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
#: The keys of a format-1 checkpoint (a new key, or one gone, is a new format).
CHECKPOINT_KEYS = (
    "format", "step", "num_gaussians", "num_skipped", "avatar", "optimizer", "densify_state", "guidance",
    "rng", "config", "prompt", "head_hash", "sha256",
)  # fmt: skip
#: The file ``last.pt`` turns into when a new one is written, and where a damaged one is set aside.
PREVIOUS_NAME, SET_ASIDE_NAME = "previous.pt", "last.set-aside.pt"
_DENSIFY_TAG = "DensifyState"
#: Configuration keys a resumed run takes from the caller instead of the checkpoint.
RESUME_OVERRIDES = ("train.steps", "train.device")


# ------------------------------------------------------------------------------ RNG state


def rng_state(generators: dict[str, torch.Generator], device: torch.device) -> dict[str, Any]:
    """Every random state of the run, as tensors / plain Python (``torch.load(weights_only=True)``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 (the global state is what we save)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (
            str(kind),
            torch.from_numpy(keys.astype(np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ),
        "python": random.getstate(),
        "generators": {k: g.get_state() for k, g in generators.items()},
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(
    state: dict[str, Any], generators: dict[str, torch.Generator], device: torch.device
) -> None:
    """Restore :func:`rng_state` (the global generators and ``generators`` by name)."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    for k, g in generators.items():
        g.set_state(state["generators"][k])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


# ------------------------------------------------------------------------------ checkpoint


def _densify_to_plain(state: DensifyState | None) -> dict[str, Any] | None:
    if state is None:
        return None
    return {
        "grad_accum": state.grad_accum.detach().cpu().clone(),
        "count": state.count.detach().cpu().clone(),
        "max_radii": state.max_radii.detach().cpu().clone(),
        "__dataclass__": _DENSIFY_TAG,
    }


def _densify_from_plain(d: Any, n: int) -> DensifyState | None:
    if d is None:
        return None
    if not isinstance(d, dict) or d.get("__dataclass__") != _DENSIFY_TAG:
        raise FieldError("the densification state does not match this version")
    for key in ("grad_accum", "count", "max_radii"):  # [N], or [0] before the first statistics
        t = d.get(key)
        tensor_field(t, f"densify_state.{key}", (0 if isinstance(t, Tensor) and not t.numel() else n,))
    return DensifyState(grad_accum=d["grad_accum"], count=d["count"], max_radii=d["max_radii"])


class DamagedCheckpointError(HeadStudioError):
    """A checkpoint that cannot be resumed: ``detail`` names the field; the message names the
    previous checkpoint when one is intact, and what to do."""

    def __init__(self, path: Path, detail: str) -> None:
        self.path, self.detail = Path(path), detail
        super().__init__(f"checkpoint '{path}' is damaged: {detail}; {_damage_advice(self.path)}.")


def _damage_advice(path: Path) -> str:
    previous = previous_checkpoint_path(path)
    if path.name != PREVIOUS_NAME and previous.is_file():
        try:
            ckpt = load_checkpoint(previous)
        except HeadStudioError:
            pass
        else:
            run = shlex.quote(str(path.parent.parent))
            prompt = shlex.quote(ckpt.prompt or "PROMPT")
            command = f"headstudio generate {prompt} «generate:output» {run} «generate:resume_previous»"
            return (
                f"the previous checkpoint '{previous}' (step {ckpt.step}) is intact: continue from it with "
                f"`{command}` (the damaged file is kept as {SET_ASIDE_NAME})"
            )
    return "no intact earlier checkpoint is kept, so start the run again (with another «generate:output»)"


@dataclass
class Checkpoint:
    """The state of a run after ``step`` completed steps (module docstring).

    Attributes:
        step: completed optimisation steps.
        num_skipped: steps whose guidance was skipped (non-finite gradient).
        gaussians: the avatar's Gaussian parameters by name (``[N, ...]`` CPU tensors).
        face_ids: ``[N]`` triangle of each Gaussian.
        shape: ``[1, S]`` the learned FLAME shape.
        optimizer: ``torch.optim.Adam.state_dict()``.
        densify_state: the densification statistics (``None`` when densification is off).
        guidance: ``Guidance.state_dict()`` (``None`` in checkpoints of guidance without state).
        rng: :func:`rng_state`.
        config: the resolved configuration (``config_to_dict``).
        prompt: the text prompt.
        head_hash: ``identity_hash()`` of the head model.
    """

    step: int
    num_skipped: int
    gaussians: dict[str, Tensor]
    face_ids: Tensor
    shape: Tensor
    optimizer: dict[str, Any]
    densify_state: DensifyState | None
    guidance: dict[str, Any] | None
    rng: dict[str, Any]
    config: dict[str, Any]
    prompt: str | None
    head_hash: str | None

    @property
    def num_gaussians(self) -> int:
        return int(self.face_ids.shape[0])

    def to_dict(self) -> dict[str, Any]:
        """The on-disk form (format :data:`CHECKPOINT_FORMAT`, with its content digest)."""
        d = {
            "format": CHECKPOINT_FORMAT,
            "step": int(self.step),
            "num_gaussians": self.num_gaussians,
            "num_skipped": int(self.num_skipped),
            "avatar": {"gaussians": self.gaussians, "face_ids": self.face_ids, "shape": self.shape},
            "optimizer": self.optimizer,
            "densify_state": _densify_to_plain(self.densify_state),
            "guidance": self.guidance,
            "rng": self.rng,
            "config": self.config,
            "prompt": self.prompt,
            "head_hash": self.head_hash,
        }
        d[DIGEST_KEY] = content_digest(d)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], path: Path, verify: bool = True) -> Checkpoint:
        """Parse :meth:`to_dict` read from ``path``, checking the digest and every field.

        Raises:
            HeadStudioError: a newer format.
            DamagedCheckpointError: not format 1, a digest that does not match, or a field of the
                wrong type, shape or count (the message names it).
        """
        fmt = d.get("format")
        if isinstance(fmt, int) and not isinstance(fmt, bool) and fmt > CHECKPOINT_FORMAT:
            raise HeadStudioError(
                f"checkpoint '{path}' has format {fmt}; this headstudio reads format {CHECKPOINT_FORMAT}: "
                "upgrade headstudio to resume it."
            )
        if fmt != CHECKPOINT_FORMAT:
            raise DamagedCheckpointError(path, f"'format' is {short(fmt)}, not a headstudio checkpoint's 1")
        digest = d.get(DIGEST_KEY)
        if digest is None:
            log.warning("checkpoint '%s' has no integrity digest (an older headstudio wrote it)", path)
        elif verify and digest != content_digest(d):
            raise DamagedCheckpointError(path, "its content digest (sha256) does not match its contents")
        try:
            f = check_fields(d)
            densify_state = _densify_from_plain(d.get("densify_state"), f["num_gaussians"])
        except FieldError as err:
            raise DamagedCheckpointError(path, str(err)) from None
        del f["num_gaussians"]
        return cls(**f, densify_state=densify_state)


def previous_checkpoint_path(path: str | Path) -> Path:
    """The file the checkpoint before ``path`` is kept in (``checkpoints/previous.pt``)."""
    return Path(path).with_name(PREVIOUS_NAME)


def _replace_with_copy(src: Path, dst: Path) -> None:
    """Make ``dst`` a complete copy of ``src`` atomically (a hard link when the file system has
    them, else a byte copy; then a rename)."""
    with atomic_output(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def save_checkpoint(ckpt: Checkpoint, path: str | Path, keep_previous: bool = True) -> Path:
    """Write ``ckpt`` to ``path`` atomically (temporary file, fsync, rename); returns the path.

    With ``keep_previous`` the file ``path`` held becomes :func:`previous_checkpoint_path` once the
    new one is complete, so at every moment both names hold complete checkpoints.
    """
    p = Path(path)
    with atomic_output(p) as tmp:
        with open(tmp, "wb") as fh:
            torch.save(ckpt.to_dict(), fh)
            fh.flush()
            os.fsync(fh.fileno())
        if keep_previous and p.is_file():
            _replace_with_copy(p, previous_checkpoint_path(p))
    return p


def load_checkpoint(path: str | Path, verify: bool = True) -> Checkpoint:
    """Read a trainer checkpoint (``torch.load(weights_only=True)``), checking its digest and fields.

    Raises:
        HeadStudioError: the file is missing, or of a newer format.
        DamagedCheckpointError: unreadable, not a checkpoint, a digest mismatch or a malformed
            field; the message names the previous checkpoint when it is intact.
    """
    p = Path(path)
    if not p.is_file():
        raise HeadStudioError(f"checkpoint '{p}' does not exist; start a new run instead of resuming.")
    try:
        d = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:
        detail = " ".join(str(err).split()).split(". ")[0][:120]  # the first sentence
        raise DamagedCheckpointError(
            p, f"not readable by torch.load ({type(err).__name__}: {detail})"
        ) from None
    if not isinstance(d, dict):
        raise DamagedCheckpointError(p, f"it holds a {type(d).__name__}, not a headstudio checkpoint's dict")
    return Checkpoint.from_dict(d, p, verify=verify)


def use_previous_checkpoint(path: str | Path) -> Checkpoint:
    """Continue from the checkpoint before ``path``: check it, set ``path`` aside as
    ``last.set-aside.pt`` (kept for forensics) and put a copy of the previous one in its place.

    Returns:
        The previous checkpoint.

    Raises:
        HeadStudioError: there is no previous checkpoint, or it is damaged too.
    """
    p = Path(path)
    previous = previous_checkpoint_path(p)
    if not previous.is_file():
        raise HeadStudioError(
            f"no previous checkpoint '{previous}' to continue from; resume from '{p}' with "
            "«generate:resume», or "
            "start the run again."
        )
    ckpt = load_checkpoint(previous)
    if p.is_file():
        os.replace(p, p.with_name(SET_ASIDE_NAME))
    _replace_with_copy(previous, p)
    log.warning("continuing from the previous checkpoint %s (step %d)", previous, ckpt.step)
    return ckpt


def resumed_config(config: HeadStudioConfig | None, ckpt: Checkpoint, path: Path) -> HeadStudioConfig:
    """The checkpoint's configuration, with :data:`RESUME_OVERRIDES` taken from ``config`` (other
    differences are logged and ignored: a run continues with the settings it started with)."""
    try:
        saved = config_from_dict(ckpt.config, origin=str(path))
    except HeadStudioError as err:
        raise DamagedCheckpointError(
            path, f"its configuration does not load ({err.message.rstrip('.')})"
        ) from None
    if "mouth_interior" not in (ckpt.config.get("head") or {}):
        # a run from before the switch: the procedural head had the interior, a FLAME file none
        on_flame = saved.head.flame_path is not None or bool(os.environ.get(FLAME_PATH_ENV, "").strip())
        saved.head.mouth_interior = not on_flame
    if config is None:
        return saved
    mine, theirs = flatten_config(config_to_dict(config)), flatten_config(config_to_dict(saved))
    changed = [k for k, v in mine.items() if theirs.get(k) != v and k not in RESUME_OVERRIDES]
    if changed:
        log.warning("resuming: using the checkpoint's configuration; ignoring changes to %s", changed)
    saved.train.steps = config.train.steps
    saved.train.device = config.train.device
    return saved
