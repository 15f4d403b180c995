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
     "guidance": dict | None, "rng", "config", "prompt", "head_hash"}
"""

from __future__ import annotations

import logging
import random
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
    "load_checkpoint",
    "save_checkpoint",
    "resumed_config",
    "rng_state",
    "set_rng_state",
]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
#: The keys of a format-1 checkpoint (a new key, or one gone, is a new format).
CHECKPOINT_KEYS = (
    "format", "step", "num_gaussians", "num_skipped", "avatar", "optimizer", "densify_state", "guidance",
    "rng", "config", "prompt", "head_hash",
)  # fmt: skip
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


def _densify_from_plain(d: Any, path: Path) -> DensifyState | None:
    if d is None:
        return None
    if not isinstance(d, dict) or d.get("__dataclass__") != _DENSIFY_TAG:
        raise HeadStudioError(f"checkpoint '{path}': the densification state does not match this version.")
    return DensifyState(grad_accum=d["grad_accum"], count=d["count"], max_radii=d["max_radii"])


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
        """The on-disk form (format :data:`CHECKPOINT_FORMAT`)."""
        return {
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

    @classmethod
    def from_dict(cls, d: dict[str, Any], path: Path) -> Checkpoint:
        """Parse :meth:`to_dict` read from ``path``.

        Raises:
            HeadStudioError: another format, or an inconsistent Gaussian count.
        """
        if d.get("format") != CHECKPOINT_FORMAT:
            raise HeadStudioError(
                f"'{path}' is not a headstudio trainer checkpoint (format {CHECKPOINT_FORMAT})."
            )
        a = d["avatar"]
        if a["gaussians"]["means"].shape[0] != int(d["num_gaussians"]):
            raise HeadStudioError(f"checkpoint '{path}' is inconsistent (Gaussian count).")
        return cls(
            step=int(d["step"]),
            num_skipped=int(d.get("num_skipped", 0)),
            gaussians=dict(a["gaussians"]),
            face_ids=a["face_ids"],
            shape=a["shape"],
            optimizer=d["optimizer"],
            densify_state=_densify_from_plain(d.get("densify_state"), path),
            guidance=d.get("guidance"),
            rng=d["rng"],
            config=d["config"],
            prompt=d.get("prompt"),
            head_hash=d.get("head_hash"),
        )


def save_checkpoint(ckpt: Checkpoint, path: str | Path) -> Path:
    """Write ``ckpt`` to ``path`` atomically (temporary file + rename); returns the path."""
    p = Path(path)
    with atomic_output(p) as tmp:
        torch.save(ckpt.to_dict(), tmp)
    return p


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a trainer checkpoint (``torch.load(weights_only=True)``).

    Raises:
        HeadStudioError: the file is missing, unreadable or not a headstudio checkpoint.
    """
    p = Path(path)
    if not p.is_file():
        raise HeadStudioError(f"checkpoint '{p}' does not exist; start a new run instead of resuming.")
    try:
        d = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:
        raise HeadStudioError(
            f"checkpoint '{p}' is not readable ({type(err).__name__}); delete it and start again."
        ) from err
    if not isinstance(d, dict):
        raise HeadStudioError(f"'{p}' is not a headstudio trainer checkpoint (format {CHECKPOINT_FORMAT}).")
    return Checkpoint.from_dict(d, p)


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
