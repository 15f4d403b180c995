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

import hashlib
import logging
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rigged_gaussians.strategy import DensifyState
from torch import Tensor

from ._atomic import atomic_output
from .config import HeadStudioConfig, config_from_dict, config_to_dict
from .errors import HeadStudioError

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
#: The key of the content digest (absent in format-1 files of earlier versions).
DIGEST_KEY = "sha256"
#: The file ``last.pt`` turns into when a new one is written, and where a damaged one is set aside.
PREVIOUS_NAME, SET_ASIDE_NAME = "previous.pt", "last.set-aside.pt"
#: The Gaussian parameters of a checkpoint and their columns (0: ``[N]``; ``None``: ``[N, K, 3]``).
_GAUSSIAN_COLUMNS: dict[str, int | None] = {
    "means": 3, "quats": 4, "log_scales": 3, "opacity_logits": 0, "sh": None,
}  # fmt: skip
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


def _densify_from_plain(d: Any, path: Path, n: int) -> DensifyState | None:
    if d is None:
        return None
    if not isinstance(d, dict) or d.get("__dataclass__") != _DENSIFY_TAG:
        raise DamagedCheckpointError(path, "the densification state does not match this version")
    for key in ("grad_accum", "count", "max_radii"):  # [N], or [0] before the first statistics
        t = d.get(key)
        _tensor(t, f"densify_state.{key}", (0 if isinstance(t, Tensor) and not t.numel() else n,), path)
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
            step = load_checkpoint(previous).step
        except HeadStudioError:
            pass
        else:
            return (
                f"the previous checkpoint '{previous}' (step {step}) is intact: continue from it with "
                "`headstudio generate PROMPT --output RUN --resume-previous` (the damaged file is kept as "
                f"{SET_ASIDE_NAME})"
            )
    return "no intact earlier checkpoint is kept, so start the run again (with another --output)"


def content_digest(d: dict[str, Any]) -> str:
    """SHA-256 of a checkpoint dict's entries except :data:`DIGEST_KEY`: every key, scalar and
    tensor (dtype, shape and bytes) in order, so any change to the contents changes it."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in d.items() if k != DIGEST_KEY})
    return h.hexdigest()


def _feed(h: Any, obj: Any) -> None:
    if isinstance(obj, Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}:".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}:".encode())
        for k, v in obj.items():
            _feed(h, k)
            _feed(h, v)
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}:".encode())
        for v in obj:
            _feed(h, v)
    elif obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        h.update(f"{type(obj).__name__}{obj!r};".encode())
    else:
        raise TypeError(f"a checkpoint cannot hold a {type(obj).__name__}")


def _tensor(x: Any, name: str, shape: tuple[int | None, ...], path: Path, kind: str = "f") -> Tensor:
    """``x`` checked: a tensor of ``shape`` (``None``: any size), float (``kind="f"``, finite) or
    integer (``"i"``)."""
    want = "[" + ", ".join("·" if d is None else str(d) for d in shape) + "]"
    if not isinstance(x, Tensor):
        raise DamagedCheckpointError(path, f"'{name}' is a {type(x).__name__}; expected a tensor {want}")
    if x.dim() != len(shape) or any(d is not None and d != g for d, g in zip(shape, x.shape, strict=True)):
        raise DamagedCheckpointError(path, f"'{name}' has shape {list(x.shape)}; expected {want}")
    if kind == "f" and not (x.is_floating_point() and bool(torch.isfinite(x).all())):
        raise DamagedCheckpointError(
            path, f"'{name}' is {x.dtype} with non-finite values; expected finite floats"
        )
    if kind == "i" and (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
        raise DamagedCheckpointError(path, f"'{name}' is {x.dtype}; expected integers")
    return x


def _field(d: dict[str, Any], key: str, kinds: type, path: Path) -> Any:
    if key not in d:
        raise DamagedCheckpointError(path, f"the entry '{key}' is missing")
    v = d[key]
    if not isinstance(v, kinds) or (isinstance(v, bool) and kinds is int):
        raise DamagedCheckpointError(path, f"'{key}' is {_short(v)}; expected a {kinds.__name__}")
    return v


def _short(v: Any) -> str:
    text = repr(v) if not isinstance(v, Tensor) else f"a tensor {list(v.shape)}"
    return text if len(text) <= 60 else text[:57] + "..."


def _check_optimizer(opt: Any, tensors: dict[str, Tensor], path: Path) -> None:
    """Adam's state matches the parameters: each named group's moments have its parameter's shape."""
    if (
        not isinstance(opt, dict)
        or not isinstance(opt.get("state"), dict)
        or not isinstance(opt.get("param_groups"), list)
    ):
        raise DamagedCheckpointError(path, "'optimizer' is not an optimizer state (state, param_groups)")
    for group in opt["param_groups"]:
        if not isinstance(group, dict) or not isinstance(group.get("params"), list):
            raise DamagedCheckpointError(path, f"'optimizer.param_groups' holds {_short(group)}")
        name = group.get("name")
        for pid in group["params"]:
            moments = opt["state"].get(pid, {})
            if not isinstance(moments, dict):
                raise DamagedCheckpointError(path, f"'optimizer.state[{pid}]' is {_short(moments)}")
            for key, value in moments.items():
                if key == "step":
                    continue
                if name in tensors:
                    _tensor(value, f"optimizer.state[{pid}].{key}", tuple(tensors[name].shape), path)


def _check_rng(rng: Any, path: Path) -> None:
    ok = (
        isinstance(rng, dict)
        and isinstance(rng.get("torch"), Tensor)
        and isinstance(rng.get("numpy"), (tuple, list))
        and len(rng["numpy"]) == 5
        and isinstance(rng.get("python"), (tuple, list))
        and len(rng["python"]) == 3
        and isinstance(rng.get("generators"), dict)
        and all(isinstance(g, Tensor) for g in rng["generators"].values())
    )
    if not ok:
        raise DamagedCheckpointError(path, "'rng' is not the random state headstudio saves")


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
            HeadStudioError: another format.
            DamagedCheckpointError: a digest that does not match, or a field of the wrong type,
                shape or count (the message names it).
        """
        if d.get("format") != CHECKPOINT_FORMAT:
            raise HeadStudioError(
                f"'{path}' is not a headstudio trainer checkpoint (format {CHECKPOINT_FORMAT})."
            )
        digest = d.get(DIGEST_KEY)
        if digest is None:
            log.warning("checkpoint '%s' has no integrity digest (an older headstudio wrote it)", path)
        elif verify and digest != content_digest(d):
            raise DamagedCheckpointError(path, "its content digest (sha256) does not match its contents")
        step = _field(d, "step", int, path)
        skipped = d.get("num_skipped", 0)
        n = _field(d, "num_gaussians", int, path)
        if step < 0 or n < 0 or not isinstance(skipped, int) or skipped < 0:
            raise DamagedCheckpointError(path, f"step {step}, num_gaussians {n}, num_skipped {skipped!r}")
        a = _field(d, "avatar", dict, path)
        g = _field(a, "gaussians", dict, path)
        gaussians = {}
        for name, cols in _GAUSSIAN_COLUMNS.items():
            shape = (n, None, 3) if cols is None else (n,) if cols == 0 else (n, cols)
            gaussians[name] = _tensor(g.get(name), f"avatar.gaussians.{name}", shape, path)
        face_ids = _tensor(a.get("face_ids"), "avatar.face_ids", (n,), path, kind="i")
        shape = _tensor(a.get("shape"), "avatar.shape", (1, None), path)
        _check_optimizer(d.get("optimizer"), {**gaussians, "shape": shape}, path)
        _check_rng(d.get("rng"), path)
        guidance = d.get("guidance")
        prompt, head_hash = d.get("prompt"), d.get("head_hash")
        if not (
            (guidance is None or isinstance(guidance, dict))
            and (prompt is None or isinstance(prompt, str))
            and (head_hash is None or isinstance(head_hash, str))
        ):
            raise DamagedCheckpointError(path, "'guidance', 'prompt' or 'head_hash' has the wrong type")
        return cls(
            step=step,
            num_skipped=skipped,
            gaussians=gaussians,
            face_ids=face_ids,
            shape=shape,
            optimizer=d["optimizer"],
            densify_state=_densify_from_plain(d.get("densify_state"), path, n),
            guidance=guidance,
            rng=d["rng"],
            config=_field(d, "config", dict, path),
            prompt=prompt,
            head_hash=head_hash,
        )


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
        HeadStudioError: the file is missing or not a headstudio checkpoint.
        DamagedCheckpointError: unreadable, a digest mismatch or a malformed field; the message
            names the previous checkpoint when it is intact.
    """
    p = Path(path)
    if not p.is_file():
        raise HeadStudioError(f"checkpoint '{p}' does not exist; start a new run instead of resuming.")
    try:
        d = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:
        detail = " ".join(str(err).split())[:120]
        raise DamagedCheckpointError(
            p, f"not readable by torch.load ({type(err).__name__}: {detail})"
        ) from None
    if not isinstance(d, dict):
        raise HeadStudioError(f"'{p}' is not a headstudio trainer checkpoint (format {CHECKPOINT_FORMAT}).")
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
            f"no previous checkpoint '{previous}' to continue from; resume from '{p}' with --resume, or "
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
    saved = config_from_dict(ckpt.config, origin=str(path))
    if config is None:
        return saved
    mine, theirs = config_to_dict(config), config_to_dict(saved)
    changed = [
        f"{sec}.{k}"
        for sec, values in mine.items()
        for k, v in values.items()
        if theirs.get(sec, {}).get(k) != v and f"{sec}.{k}" not in RESUME_OVERRIDES
    ]
    if changed:
        log.warning("resuming: using the checkpoint's configuration; ignoring changes to %s", changed)
    saved.train.steps = config.train.steps
    saved.train.device = config.train.device
    return saved
