"""The training loop of ``headstudio generate`` (and of the offline demo).

One step (ARCHITECTURE.md, "Data flow of one training step"): sample ``B`` poses (FLAME
expression/jaw/neck/eyes from a motion) and one random camera each, render the rigged Gaussians,
score the renders with the guidance (F-SDS, or photometric for :class:`~headstudio.guidance.ImageGuidance`),
add the mesh regularisation, back-propagate, Adam step, accumulate the screen-space gradients and
densify / prune on the schedule. The FLAME shape stops learning at ``train.shape_stop_step``.

Outputs in ``output_dir``::

    config.toml             the resolved configuration
    avatar.ply              the trained avatar (written at the end)
    checkpoints/last.pt     everything needed to continue exactly (atomic, every N steps,
                            on Ctrl-C and at the end)
    previews/step_XXXXX.png views × expressions grid every N steps
    log.jsonl               one JSON record per ``log_every`` steps

A resumed run (``resume=True``) continues bit-identically on the CPU, with any thread count (the
rigged-gaussians CPU backward sums in a fixed order); on CUDA the rasterizer's atomic adds make
gradients, and so a resumed run, equal only to rounding. The checkpoint
holds the Gaussians (their number changes with densification), the shape, the Adam state, the
densification state and every random generator (torch, CUDA, numpy, python, the trainer's
sampler generator and the guidance's own).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ._atomic import atomic_output
from .errors import HeadStudioError
from .guidance import FSDSGuidance, Guidance, GuidanceOutput, ImageGuidance, TargetSet, TrainBatch

__all__ = [
    "Trainer",
    "TrainBatch",
    "TrainingInterrupted",
    "NonFiniteLossError",
    "CHECKPOINT_FORMAT",
    "load_checkpoint",
]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
GAUSSIAN_KEYS = ("means", "quats", "log_scales", "opacity_logits", "sh")
PREVIEW_AZIMUTHS = (0.0, 45.0, 90.0, 180.0)
PREVIEW_MIN_SIZE = 64
PREVIEW_MAX_SIZE = 128


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training: a checkpoint was saved; ``str(err)`` says how to resume."""


class NonFiniteLossError(HeadStudioError):
    """The loss became NaN/inf; training stopped and the last good checkpoint was kept."""


# ------------------------------------------------------------------------------ RNG state


def _rng_state(generators: dict[str, torch.Generator], device: torch.device) -> dict[str, Any]:
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


def _set_rng_state(
    state: dict[str, Any], generators: dict[str, torch.Generator], device: torch.device
) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    for k, g in generators.items():
        g.set_state(state["generators"][k])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _to_plain(obj: Any) -> Any:
    """Dataclasses → ``{"__dataclass__": name, fields...}`` recursively (for checkpoints)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        d = {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        d["__dataclass__"] = type(obj).__name__
        return d
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_plain(v) for v in obj)
    return obj


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a trainer checkpoint (``torch.load(weights_only=True)``).

    Raises:
        HeadStudioError: the file is missing, unreadable or not a headstudio checkpoint.
    """
    p = Path(path)
    if not p.is_file():
        raise HeadStudioError(f"checkpoint '{p}' does not exist; run without --resume to start a new run.")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:
        raise HeadStudioError(
            f"checkpoint '{p}' is not readable ({type(err).__name__}); delete it and start again."
        ) from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise HeadStudioError(f"'{p}' is not a headstudio trainer checkpoint (format {CHECKPOINT_FORMAT}).")
    return ckpt


# ---------------------------------------------------------------------------------- trainer


class Trainer:
    """Train an avatar: ``Trainer(config, prompt, output_dir).train() -> avatar.ply``.

    Args:
        config: the resolved ``HeadStudioConfig``.
        prompt: the text prompt (needed by F-SDS guidance; stored in the avatar).
        output_dir: where the outputs go (see the module docstring).
        resume: continue from ``output_dir/checkpoints/last.pt``.
        guidance: a ready :class:`~headstudio.guidance.Guidance` (e.g. F-SDS with tiny test models,
            or an :class:`~headstudio.guidance.ImageGuidance`); ``None`` builds the one named by
            ``config.guidance.kind``.
        head: the ``FlameModel``; ``None`` resolves ``config.head.flame_path`` (else the
            procedural head).
        progress: show the tqdm progress bar.
        callback: ``callback(trainer, step)`` after every completed step (tests use it to
            interrupt a run).
    """

    def __init__(
        self,
        config: Any,
        prompt: str | None = None,
        output_dir: str | Path = "outputs/run",
        resume: bool = False,
        guidance: Guidance | None = None,
        head: Any | None = None,
        progress: bool = True,
        callback: Callable[[Trainer, int], None] | None = None,
    ) -> None:
        from .cli import resolve_device

        self.output_dir = Path(output_dir)
        self.resume = bool(resume)
        self.progress = progress
        self.callback = callback
        self.checkpoint_path = self.output_dir / "checkpoints" / "last.pt"
        ckpt = None
        if self.resume:
            ckpt = load_checkpoint(self.checkpoint_path)
            config = self._resumed_config(config, ckpt)
            prompt = prompt if prompt is not None else ckpt.get("prompt")
        elif self.checkpoint_path.exists():
            raise HeadStudioError(
                f"'{self.output_dir}' already holds a run (checkpoints/last.pt); continue it with --resume "
                "or choose another --output."
            )
        self.config = config
        self.prompt = prompt
        self.device = resolve_device(config.train.device)
        t = config.train
        self.width = self.height = int(t.resolution)
        self.step = 0
        self.num_skipped = 0
        #: ``Avatar.render`` backend (``auto``; ``torch`` forces the pure-PyTorch reference).
        self.render_backend = "auto"
        self._stop_requested = False
        self._last_good_step: int | None = None

        if not self.resume:
            torch.manual_seed(t.seed)
            np.random.seed(t.seed % 2**32)  # noqa: NPY002
            random.seed(t.seed)
        self.generator = torch.Generator().manual_seed(int(t.seed) + 1)

        self.head = self._build_head(head).to(self.device)
        if ckpt is not None and ckpt.get("head_hash") not in (None, self._head_hash()):
            raise HeadStudioError(
                f"--resume: the run in '{self.output_dir}' was made on another head model "
                f"({ckpt['head_hash'][:12]}…, this one is {str(self._head_hash())[:12]}…); resume with the "
                "same --set head.flame_path (or HEADSTUDIO_FLAME_PATH) as the original run."
            )
        self.guidance = guidance if guidance is not None else self._build_guidance()
        if isinstance(self.guidance, FSDSGuidance) and self.guidance.prompt is None:
            self.guidance.prompt = prompt
        if isinstance(self.guidance, ImageGuidance):
            self.guidance.to(self.device)

        from .avatar import Avatar

        if ckpt is None:
            init_gen = torch.Generator().manual_seed(int(t.seed))
            self.avatar = Avatar.initialize(self.head, config.init, generator=init_gen).to(self.device)
        else:
            self.avatar = self._avatar_from_checkpoint(Avatar, ckpt)
        self.optimizer = self._make_optimizer()
        self._setup_samplers()
        self._setup_densify()
        if ckpt is not None:
            self._restore(ckpt)

    # ------------------------------------------------------------------------ construction
    def _resumed_config(self, config: Any, ckpt: dict[str, Any]) -> Any:
        """The checkpoint's configuration, with ``train.steps`` and ``train.device`` from ``config``."""
        from .config import config_from_dict, config_to_dict

        saved = config_from_dict(ckpt["config"], origin=str(self.checkpoint_path))
        if config is not None:
            mine, theirs = config_to_dict(config), config_to_dict(saved)
            changed = [
                f"{sec}.{k}"
                for sec, values in mine.items()
                for k, v in values.items()
                if theirs.get(sec, {}).get(k) != v and f"{sec}.{k}" not in ("train.steps", "train.device")
            ]
            if changed:
                log.warning("--resume: using the checkpoint's configuration; ignoring changes to %s", changed)
            saved.train.steps = config.train.steps
            saved.train.device = config.train.device
        return saved

    def _build_head(self, head: Any | None) -> Any:
        if head is not None:
            return head
        from flame_core.model import FlameModel

        h = self.config.head
        try:
            return FlameModel.resolve(h.flame_path, num_shape=h.num_shape, num_expression=h.num_expression)
        except (OSError, ValueError) as err:
            raise HeadStudioError(f"could not load the head model: {err}") from err

    def _build_guidance(self) -> Guidance:
        g, t, lc = self.config.guidance, self.config.train, self.config.loss
        if g.kind == "image":
            if not g.targets_dir:
                raise HeadStudioError(
                    "guidance.kind = image needs guidance.targets_dir (a directory written by "
                    "TargetSet.save)."
                )
            return ImageGuidance(TargetSet.load(g.targets_dir), lc.lambda_l1, lc.lambda_ssim)
        if not self.prompt or not str(self.prompt).strip():
            raise HeadStudioError("F-SDS guidance needs a text prompt.")
        return FSDSGuidance(
            g,
            self.head,
            self.device,
            prompt=self.prompt,
            image_size=t.guidance_resolution,
            seed=t.seed,
            lambda_sds=lc.lambda_sds,
        )

    def _avatar_from_checkpoint(self, avatar_cls: Any, ckpt: dict[str, Any]) -> Any:
        a = ckpt["avatar"]
        g = a["gaussians"]
        n = int(ckpt["num_gaussians"])
        if g["means"].shape[0] != n:
            raise HeadStudioError(f"checkpoint '{self.checkpoint_path}' is inconsistent (Gaussian count).")
        avatar = avatar_cls(
            self.head,
            means=g["means"],
            quats=g["quats"],
            log_scales=g["log_scales"],
            opacity_logits=g["opacity_logits"],
            sh=g["sh"],
            face_ids=a["face_ids"],
            shape=a["shape"],
            metadata=dict(a.get("metadata", {})),
        )
        return avatar.to(self.device)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        t = self.config.train
        groups = self.avatar.optimizer_groups(t)
        return torch.optim.Adam(groups, betas=tuple(t.betas), eps=t.eps)

    def _setup_samplers(self) -> None:
        from .animation import AnimationSampler
        from .cameras import CameraSampler

        cam = self.config.camera
        target = cam.target
        if isinstance(target, str):  # "auto": centre of the template head's bounding box (zero
            # shape, so a resumed run with a learned shape frames the same cameras)
            from .cameras import head_target

            with torch.no_grad():
                target = tuple(head_target(self.head().vertices[0]).tolist())
        self.target = torch.tensor(target, dtype=torch.float32)
        self.camera_sampler = CameraSampler(cam, self.width, self.height, self.target)
        motion = None
        if self.config.train.motion_path:
            from .rendering import load_motion

            motion = load_motion(self.config.train.motion_path)
        self.animation_sampler = AnimationSampler(
            motion, int(self.head.num_expression), seed=int(self.config.train.seed)
        )

    def _setup_densify(self) -> None:
        d = self.config.densify
        self.densify_state: Any = None
        if not d.enabled:
            self.densify_config = None
            return
        from rigged_gaussians import strategy

        self.densify_config = d.to_strategy()
        self.densify_state = strategy.DensifyState.create(self.avatar.num_gaussians, device=self.device)

    def _restore(self, ckpt: dict[str, Any]) -> None:
        self.step = int(ckpt["step"])
        self.num_skipped = int(ckpt.get("num_skipped", 0))
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.densify_config is not None and ckpt.get("densify_state") is not None:
            self.densify_state = _from_plain(ckpt["densify_state"], self.densify_state, self.device)
        if hasattr(self.guidance, "load_state_dict") and ckpt.get("guidance") is not None:
            self.guidance.load_state_dict(ckpt["guidance"])
        _set_rng_state(ckpt["rng"], {"trainer": self.generator}, self.device)
        self._last_good_step = self.step
        log.info(
            "resumed from %s at step %d (%d Gaussians)",
            self.checkpoint_path,
            self.step,
            self.avatar.num_gaussians,
        )

    # ------------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything :meth:`train` needs to continue exactly (what ``checkpoints/last.pt`` holds)."""
        from .config import config_to_dict

        gaussians = {k: p.detach().cpu().clone() for k, p in self.avatar.gaussian_params().items()}
        state = {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "num_gaussians": int(self.avatar.num_gaussians),
            "num_skipped": self.num_skipped,
            "avatar": {
                "gaussians": gaussians,
                "face_ids": self.avatar.face_ids.detach().cpu().clone(),
                "shape": self.avatar.shape.detach().cpu().clone(),
            },
            "optimizer": self.optimizer.state_dict(),
            "densify_state": _to_plain(self.densify_state),
            "guidance": self.guidance.state_dict() if hasattr(self.guidance, "state_dict") else None,
            "rng": _rng_state({"trainer": self.generator}, self.device),
            "config": config_to_dict(self.config),
            "prompt": self.prompt,
            "head_hash": self._head_hash(),
        }
        return state

    def _head_hash(self) -> str | None:
        fn = getattr(self.head, "identity_hash", None)
        return str(fn()) if callable(fn) else None

    def _params_finite(self) -> bool:
        ps = list(self.avatar.gaussian_params().values()) + [self.avatar.shape]
        return all(bool(torch.isfinite(p).all()) for p in ps)

    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/last.pt`` atomically (temp file + rename); returns its path.

        Raises:
            NonFiniteLossError: the parameters hold NaN/inf (the previous checkpoint is kept).
        """
        if not self._params_finite():
            raise NonFiniteLossError(self._non_finite_message("the parameters"))
        with atomic_output(self.checkpoint_path) as tmp:
            torch.save(self.state_dict(), tmp)
        self._last_good_step = self.step
        return self.checkpoint_path

    def _non_finite_message(self, what: str) -> str:
        if self._last_good_step is None:
            kept = "no checkpoint was written yet"
        else:
            kept = f"the last good checkpoint {self.checkpoint_path} (step {self._last_good_step}) is intact"
        return (
            f"{what} became non-finite (NaN/inf) at step {self.step + 1}; training stopped and {kept}. "
            "Lower the learning rates (--set train.lr_position=...) or change the seed, then continue "
            "with --resume."
        )

    # ------------------------------------------------------------------------ sampling
    def sample_batch(self) -> TrainBatch:
        """The poses, cameras and backgrounds of the next step (drawn from the trainer's generator)."""
        t = self.config.train
        b = int(t.batch_size)
        if hasattr(self.guidance, "sample_batch"):
            batch = self.guidance.sample_batch(b, self.generator, self.width, self.height)
            return batch.to(self.device)
        cams = self.camera_sampler.sample(b, self.generator)
        if t.animation:
            flame = self.animation_sampler.sample(b, self.generator)
        else:
            flame = {"expression": torch.zeros(b, int(self.head.num_expression))}
        if t.background == "random":
            bg = torch.rand(b, 1, 3, generator=self.generator)
        elif t.background == "black":
            bg = torch.zeros(b, 1, 3)
        else:
            bg = torch.ones(b, 1, 3)
        batch = TrainBatch(
            viewmats=cams.viewmats,
            Ks=cams.Ks,
            flame=flame,
            azimuth_deg=cams.azimuth_deg,
            elevation_deg=cams.elevation_deg,
            backgrounds=bg,
        )
        return batch.to(self.device)

    # ------------------------------------------------------------------------ one step
    def _densify_active(self, step: int) -> bool:
        d = self.config.densify
        return self.densify_config is not None and step <= max(d.densify_until, d.prune_until)

    def train_step(self) -> dict[str, float]:
        """One optimisation step (``self.step`` counts completed steps); returns its logs."""
        step = self.step + 1
        t, lc = self.config.train, self.config.loss
        batch = self.sample_batch()
        out = self.avatar.render(
            batch.viewmats,
            batch.Ks,
            self.width,
            self.height,
            background=batch.backgrounds,
            backend=self.render_backend,
            **batch.flame,
        )
        track = self._densify_active(step) and out.meta.means2d.requires_grad
        if track:
            out.meta.means2d.retain_grad()
        renders = out.rgb[:, 0].permute(0, 3, 1, 2)  # [B, 3, H, W]
        batch.vertices = out.vertices.detach()
        g: GuidanceOutput = self.guidance(renders, batch, step)
        losses: dict[str, Tensor] = {"loss_guidance": g.loss}
        parts: dict[str, Tensor] = {}
        if lc.lambda_pos > 0 or lc.lambda_scale > 0:
            losses["loss_reg"], parts = self._regularization(out.vertices)
        loss = sum(losses.values())
        logs = {k: float(v.detach()) for k, v in {**losses, **parts}.items()}
        logs.update(g.logs)
        logs["loss"] = float(loss.detach())
        if not math.isfinite(logs["loss"]):
            raise NonFiniteLossError(
                self._non_finite_message(f"the loss ({', '.join(f'{k}={v:.4g}' for k, v in logs.items())})")
            )
        if g.skipped:
            self.num_skipped += 1
            self.optimizer.zero_grad(set_to_none=True)
            logs["skipped"] = 1.0
            self.step = step
            return logs
        loss.backward()
        if step > t.shape_stop_step:
            self.avatar.shape.grad = None  # shape learning stops at shape_stop_step
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if track:
            self._densify(step, out.meta, out.vertices)
        self.step = step
        return logs

    def _regularization(self, vertices: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        from .regularization import mesh_regularization

        lc = self.config.loss
        p = self.avatar.gaussian_params()
        return mesh_regularization(
            p["means"],
            p["log_scales"],
            self.avatar.face_ids,
            vertices=vertices,
            faces=self.head.faces,
            lambda_pos=lc.lambda_pos,
            lambda_scale=lc.lambda_scale,
        )

    def _densify(self, step: int, meta: Any, vertices: Tensor) -> None:
        """Accumulate this step's screen-space gradients; densify / prune on the schedule."""
        import rigged_gaussians as rg
        from rigged_gaussians import strategy

        strategy.accumulate(self.densify_state, meta)
        cfg = self.densify_config
        if not (cfg.is_densify_step(step) or cfg.is_prune_step(step)):
            return
        frames = rg.triangle_frames(vertices[:1].detach(), self.head.faces.to(vertices.device))
        params, face_ids = self.avatar.gaussian_params(), self.avatar.face_ids
        new_params, new_face_ids, info = strategy.densify_and_prune(
            params,
            face_ids,
            self.densify_state,
            cfg,
            step,
            optimizer=self.optimizer,
            scene_scale=float(self.config.camera.scene_scale),
            sqrt_areas=frames.sqrt_areas[0],
            generator=self.generator,
        )
        if info["action"] != "none":
            self.avatar.set_gaussians(new_params, new_face_ids)
            log.info("step %d: %s", step, {k: v for k, v in info.items()})

    # ------------------------------------------------------------------------ loop
    @contextlib.contextmanager
    def _sigint_deferred(self) -> Iterator[None]:
        """First Ctrl-C (or SIGTERM, e.g. from a job scheduler or `timeout`): finish the current
        step, checkpoint, stop. A second one stops at once."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True
            name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
            log.warning("%s: stopping after this step (again to stop at once)", name)

        signums = [signal.SIGINT, signal.SIGTERM]
        previous = {s: signal.signal(s, handler) for s in signums}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def _interrupted(self) -> TrainingInterrupted:
        msg = (
            f"interrupted at step {self.step}/{self.config.train.steps}; checkpoint saved to "
            f"{self.checkpoint_path}. Continue with: headstudio generate "
            f"{json.dumps(self.prompt or '')} --output {self.output_dir} --resume"
        )
        return TrainingInterrupted(msg)

    def train(self) -> Path:
        """Run (or continue) training to ``config.train.steps``; returns the avatar path.

        Raises:
            TrainingInterrupted: Ctrl-C (a checkpoint was saved first; the message says how to
                resume).
            NonFiniteLossError: the loss became NaN/inf (the last good checkpoint is kept).
        """
        from tqdm.auto import tqdm

        from .config import save_config

        t = self.config.train
        self.output_dir.mkdir(parents=True, exist_ok=True)
        save_config(self.config, self.output_dir / "config.toml")
        total = int(t.steps)
        bar = tqdm(total=total, initial=self.step, disable=not self.progress, unit="it", dynamic_ncols=True)
        started = time.perf_counter()
        self._stop_requested = False
        in_step = False
        try:
            with self._sigint_deferred(), bar:
                while self.step < total:
                    in_step = True
                    logs = self.train_step()
                    in_step = False
                    bar.update(1)
                    bar.set_postfix(
                        loss=f"{logs['loss']:.4f}", N=int(self.avatar.num_gaussians), refresh=False
                    )
                    s = self.step
                    if t.log_every and (s % t.log_every == 0 or s == total):
                        self._log(logs, time.perf_counter() - started)
                    if t.preview_every and s % t.preview_every == 0:
                        self.save_preview()
                    if t.checkpoint_every and s % t.checkpoint_every == 0 and s < total:
                        self.save_checkpoint()
                    if self.callback is not None:
                        self.callback(self, s)
                    if self._stop_requested:
                        raise KeyboardInterrupt
        except KeyboardInterrupt as err:
            if isinstance(err, TrainingInterrupted):
                raise
            if in_step:  # forced stop in the middle of a step: the state is not consistent
                raise TrainingInterrupted(
                    f"stopped during step {self.step + 1}; the last checkpoint ({self.checkpoint_path}, step "
                    f"{self._last_good_step}) was kept. Continue with --resume."
                ) from None
            self.save_checkpoint()
            raise self._interrupted() from None
        self.save_checkpoint()
        from .config import config_to_dict

        avatar_path = self.output_dir / "avatar.ply"
        self.avatar.save(avatar_path, config=config_to_dict(self.config), prompt=self.prompt)
        log.info(
            "trained %d steps (%d skipped); avatar written to %s", self.step, self.num_skipped, avatar_path
        )
        return avatar_path

    def _log(self, logs: dict[str, float], elapsed: float) -> None:
        rec = {
            "step": self.step,
            "num_gaussians": int(self.avatar.num_gaussians),
            "elapsed_s": round(elapsed, 3),
        }
        rec.update({k: v for k, v in logs.items()})
        with open(self.output_dir / "log.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec) + "\n")

    # ------------------------------------------------------------------------ previews
    def preview_grid(self, size: int | None = None) -> np.ndarray:
        """``[rows·S, cols·S, 3]`` uint8: rows = expressions (neutral, smile, open jaw), columns =
        views (front, 45°, side, back) on a white background. Consumes no random numbers."""
        from .rendering import ViewSettings, frame_avatar, orbit_views

        s = int(size or max(PREVIEW_MIN_SIZE, min(self.width, PREVIEW_MAX_SIZE)))
        e = int(self.head.num_expression)
        expr = torch.zeros(3, e)
        if e > 0:
            expr[1, 0] = 1.5
        jaw = torch.zeros(3, 3)
        jaw[2, 0] = 0.3
        settings = ViewSettings(fovy_deg=30.0)
        was_training = self.avatar.training
        self.avatar.eval()
        with torch.no_grad():
            target, dist = frame_avatar(self.avatar, settings)
            vms, ks = orbit_views(PREVIEW_AZIMUTHS, 0.0, dist, settings.fovy_deg, s, s, target.cpu())
            c = len(PREVIEW_AZIMUTHS)
            vms = vms[None].expand(3, c, 4, 4).to(self.device)
            ks = ks[None].expand(3, c, 3, 3).to(self.device)
            out = self.avatar.render(
                vms,
                ks,
                s,
                s,
                background=(1.0, 1.0, 1.0),
                expression=expr.to(self.device),
                jaw_pose=jaw.to(self.device),
            )
        self.avatar.train(was_training)
        rgb = out.rgb.clamp(0, 1).mul(255).add(0.5).to(torch.uint8).cpu()  # [3, C, S, S, 3]
        return rgb.permute(0, 2, 1, 3, 4).reshape(3 * s, c * s, 3).numpy()

    def save_preview(self) -> Path:
        """Write ``previews/step_XXXXX.png`` (atomically); returns its path."""
        from PIL import Image

        path = self.output_dir / "previews" / f"step_{self.step:05d}.png"
        with atomic_output(path) as tmp:
            Image.fromarray(self.preview_grid()).save(tmp, format="PNG")
        return path


def _from_plain(obj: Any, like: Any, device: torch.device) -> Any:
    """Inverse of :func:`_to_plain` using ``like`` (an instance of the same dataclass) as template."""
    if isinstance(obj, dict) and "__dataclass__" in obj:
        values = {k: v for k, v in obj.items() if k != "__dataclass__"}
        cls = type(like) if like is not None else None
        if cls is None or not dataclasses.is_dataclass(cls):
            raise HeadStudioError("checkpoint densification state does not match this version.")
        kw = {k: _from_plain(v, getattr(like, k, None), device) for k, v in values.items()}
        return cls(**kw)
    if isinstance(obj, Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _from_plain(v, None, device) for k, v in obj.items()}
    return obj
