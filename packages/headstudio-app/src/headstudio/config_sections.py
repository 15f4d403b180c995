"""The sections of a run's configuration, one dataclass each: ``[head]``, ``[init]``, ``[camera]``,
``[train]``, ``[loss]``, ``[regularizer]`` and ``[guidance]`` (``[densify]`` is
``rigged_gaussians.strategy.DensifyConfig`` itself). :mod:`headstudio.config` gathers them in
``HeadStudioConfig`` and reads and writes them (its docstring: the defaults and their sources).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from fsds_guidance import FSDSConfig
from rigged_gaussians.strategy import DensifyConfig

from .errors import HeadStudioError

__all__ = [
    "HeadConfig",
    "InitConfig",
    "CameraConfig",
    "TrainConfig",
    "LossConfig",
    "RegularizerConfig",
    "GuidanceConfig",
    "HeadStudioConfig",
    "validate_config",
]


@dataclass
class HeadConfig:
    """The head model.

    Attributes:
        flame_path: an official FLAME pickle; ``None`` uses ``HEADSTUDIO_FLAME_PATH`` if set,
            else the open procedural head (``flame_core.FlameModel.resolve``).
        num_shape: shape components β used (and learned).
        num_expression: expression components ψ used by animation.
        mouth_interior: give the head teeth, a tongue and a dark oral cavity
            (:mod:`flame_core.mouth_interior`), built from its own lips, for the Gaussians to
            bind to. A FLAME file needs its MediaPipe landmark embedding for it (without one the
            head gets none, with one warning). The avatar file records the choice, so it is
            loaded on the same head.
    """

    flame_path: str | None = None
    num_shape: int = 100
    num_expression: int = 100
    mouth_interior: bool = True


@dataclass
class InitConfig:
    """Uniform super-resolution initialisation (docs/METHOD.md, "Initialisation").

    Attributes:
        points_per_face: K Gaussians sampled uniformly on each triangle of the neutral mesh.
        knn: neighbours used for the initial scale (world scale = sqrt(mean kNN distance)).
        opacity: initial opacity (activated, in (0, 1)).
        color: initial grey level of the DC colour (0..1).
        sh_degree: spherical-harmonics degree of the colours (0..3).
    """

    points_per_face: int = 10
    knn: int = 3
    opacity: float = 0.1
    color: float = 0.5
    sh_degree: int = 0


@dataclass
class CameraConfig:
    """Random training cameras (docs/METHOD.md, "Training").

    Distances are in the paper's scene units; ``scene_scale`` converts them to metres. The
    authors' code recentres the neutral FLAME mesh and rescales it so that its largest extent is
    ``0.6 * 1.1**10 ≈ 1.56`` units (``create_from_flame`` with ``flame_scale = -10``); a FLAME
    head is ≈ 0.31 m along its largest extent, hence the default ``scene_scale = 0.2`` m per unit,
    which gives the paper's framing.

    Attributes:
        distance: ``(min, max)`` camera distance to the target, scene units.
        fovy_deg: ``(min, max)`` vertical field of view in degrees.
        elevation_deg: ``(min, max)`` elevation in degrees (positive looks down from above).
        azimuth_deg: ``(min, max)`` azimuth in degrees (0 looks at the face, +x side at +90).
        target: the look-at point in metres, or ``"auto"``: the centre of the neutral head's
            bounding box.
        scene_scale: metres per scene unit of ``distance``.
    """

    distance: tuple[float, float] = (1.5, 2.0)
    fovy_deg: tuple[float, float] = (40.0, 70.0)
    elevation_deg: tuple[float, float] = (-30.0, 30.0)
    azimuth_deg: tuple[float, float] = (-180.0, 180.0)
    target: tuple[float, float, float] | Literal["auto"] = "auto"
    scene_scale: float = 0.2


@dataclass
class TrainConfig:
    """The optimisation loop (docs/METHOD.md, "Training": Adam, learning rates, 10k steps, batch 8,
    1024² renders).

    Units of the learning rates: Adam's step is about ``lr`` in the parameter's own unit per
    step. The Gaussian means are local, in units of their triangle's size ``√S`` (docs/METHOD.md,
    "Rigged Gaussians"), so ``lr_position`` does not depend on the head's size; scales are
    ``log`` (dimensionless), rotations unnormalised quaternions, colours SH coefficients,
    opacities logits and the shape FLAME's β (standard deviations of its shape space).

    Attributes:
        steps: training steps.
        batch_size: poses (each with one random camera) per step.
        resolution: render size in pixels (square).
        guidance_resolution: size the renders are resized to for the diffusion model (px).
        seed: seed of every random generator of the run.
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``.
        shape_stop_step: the FLAME shape β stops being updated from this step on.
        lr_position: learning rate of the local means at step 0 (triangle units per step); the
            public code's 5e-5 times its spatial scale 4 (``cameras_extent``).
        lr_position_final, lr_position_decay_steps: the position rate decays exponentially
            (log-linearly) to ``lr_position_final`` at step ``lr_position_decay_steps`` and stays
            there (public code: 2.5e-5 × 4 at 30,000 steps; :meth:`position_lr`).
        lr_scale, lr_rotation, lr_color, lr_opacity, lr_shape: Adam learning rates of the
            log-scales, quaternions, SH colours, opacity logits and β (the public code's; the
            paper's table has 1e-3 for the scales and 1e-2 for the rotations).
        betas: Adam betas (the public code's 3DGS optimiser; the paper: (0.9, 0.99)).
        eps: Adam epsilon (the public code's 1e-15).
        background: ``random`` (one random colour per view), ``white`` or ``black``.
        log_every: steps between ``log.jsonl`` records.
        preview_every: steps between preview PNG grids (0: never).
        checkpoint_every: steps between checkpoints (0: only at the end / on Ctrl-C).
        motion_path: motion file whose frames animate training (``None``: the default training
            motion, :func:`headstudio.head_motion.default_motion`, retargeted to the head).
        animation: train with animation (sample expressions and poses) as the paper does.
    """

    steps: int = 10000
    batch_size: int = 8
    resolution: int = 1024
    guidance_resolution: int = 512
    seed: int = 0
    device: str = "auto"
    shape_stop_step: int = 8000
    lr_position: float = 2e-4
    lr_scale: float = 5e-3
    lr_rotation: float = 1e-3
    lr_color: float = 1.25e-2
    lr_opacity: float = 1e-2
    lr_shape: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-15
    background: Literal["random", "white", "black"] = "random"
    log_every: int = 10
    preview_every: int = 500
    checkpoint_every: int = 500
    motion_path: str | None = None
    animation: bool = True
    lr_position_final: float = 1e-4
    lr_position_decay_steps: int = 30000

    def position_lr(self, step: int) -> float:
        """The position learning rate at ``step``:
        ``lr_position · (lr_position_final / lr_position)^(min(step, D) / D)``, ``D`` the decay steps
        (3DGS's exponential schedule without its delay; constant when either rate is 0)."""
        lr0, lr1 = float(self.lr_position), float(self.lr_position_final)
        if lr0 <= 0 or lr1 <= 0:
            return lr0
        f = min(max(int(step), 0), int(self.lr_position_decay_steps)) / max(
            int(self.lr_position_decay_steps), 1
        )
        return math.exp((1 - f) * math.log(lr0) + f * math.log(lr1))


@dataclass
class LossConfig:
    """Weights ``lambda_<name>`` of the loss terms ``loss_<name>`` (docs/METHOD.md, "Losses").

    The guidance and the mesh regulariser return unweighted ``loss_<name>`` terms; the trainer
    multiplies each by its ``lambda_<name>`` (:meth:`weight`) and sums them, in one place. A new
    loss term is a new ``lambda_`` field here and nothing else.

    Every term is a mean that does not grow with the batch or the number of Gaussians, so a
    weight means the same at any batch size and avatar size.

    Attributes:
        lambda_sds: the score-distillation loss (a batch mean: its gradient on each view's
            latents is ``w(t)·δ / B``).
        lambda_pos: mesh regularisation of the positions (the paper: 0.1; the public code:
            10 × 0.01); the term is a mean over the violating Gaussians
            (:mod:`headstudio.train.regularization`, its form is ``regularizer.form``).
        lambda_scale: mesh regularisation of the scales (0.1 in both), the same kind of mean.
        lambda_l1: photometric L1 of the image guidance (3DGS: 0.8; colour units, a pixel mean).
        lambda_ssim: photometric 1 − SSIM of the image guidance (3DGS: 0.2; a pixel mean).
    """

    lambda_sds: float = 1.0
    lambda_pos: float = 0.1
    lambda_scale: float = 0.1
    lambda_l1: float = 0.8
    lambda_ssim: float = 0.2

    def weight(self, term: str) -> float:
        """The weight ``lambda_<name>`` of the loss term ``loss_<name>``.

        Raises:
            HeadStudioError: ``term`` is not ``loss_<name>``, or there is no ``lambda_<name>``.
        """
        name = term.removeprefix("loss_")
        if name == term or not name:
            raise HeadStudioError(f"loss term '{term}' must be named loss_<name>.")
        value = getattr(self, f"lambda_{name}", None)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise HeadStudioError(
                f"the loss term '{term}' has no weight: add a field lambda_{name}: float to "
                f"{type(self).__name__}."
            )
        return float(value)


@dataclass
class RegularizerConfig:
    """Which mesh regulariser (:mod:`headstudio.train.regularization`; docs/METHOD.md, "Mesh
    regularisation"). Its weights are ``loss.lambda_pos`` and ``loss.lambda_scale``.

    Attributes:
        form: ``code`` (the public code: the whole offset and scale of a violator over the
            triangle's area, in scene units) or ``paper`` (Eq. 10: the excess over the tolerance
            over ``√S``).
        pos_from: the position term is added from this step on (public code: 2400, with its
            prune-only phase; the paper: 0).
    """

    form: Literal["paper", "code"] = "code"
    pos_from: int = 2400


@dataclass
class GuidanceConfig:
    """Which guidance drives training, and the diffusion models of ``fsds``.

    Attributes:
        kind: ``fsds`` (ControlNet-guided score distillation, the paper) or ``image``
            (photometric fit to target images with known cameras and FLAME parameters).
        base_model: hub id or local diffusers directory of the SD 1.5 base model.
        controlnet: hub id or local directory of the MediaPipe-face ControlNet.
        controlnet_subfolder: its subfolder (``diffusion_sd15``); empty for none.
        dtype: ``auto`` (float16 on CUDA, float32 on CPU), ``float16``, ``bfloat16``, ``float32``.
        local_files_only: never touch the network when loading the models.
        targets_dir: image guidance: a directory written by ``TargetSet.save``.
        fsds: the score distillation itself, ``fsds_guidance.FSDSConfig`` embedded whole (the
            ``[guidance.fsds]`` table, keys ``guidance.fsds.<name>``): ``mode`` (``fsds``, the
            paper's denoised form, or ``sds``; the old name ``dsds`` loads as ``fsds``),
            ``guidance_scale``, ``controlnet_scale``, ``t_range_phase1`` / ``t_range_phase2`` /
            ``t_switch_step`` (timestep ranges, fractions of 1000, before / from the switch step),
            ``denoise_switch_t``, ``negative_prompt``, ``grad_clip``, ``view_dependent``,
            ``vae_gradient_checkpointing``. Its ``image_size`` is not a key: the guidance works
            at ``train.guidance_resolution``. The flat keys of earlier versions
            (``guidance.mode``, ``guidance.guidance_scale``, ...) still load into it.
    """

    kind: Literal["fsds", "image"] = "fsds"
    base_model: str = "stablediffusionapi/realistic-vision-51"
    controlnet: str = "CrucibleAI/ControlNetMediaPipeFace"
    controlnet_subfolder: str = "diffusion_sd15"
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"
    local_files_only: bool = False
    targets_dir: str | None = None
    fsds: FSDSConfig = field(default_factory=FSDSConfig)

    def to_fsds_config(self, image_size: int = 512) -> FSDSConfig:
        """The ``fsds_guidance.FSDSConfig`` of these settings, at ``image_size²`` pixels."""
        return dataclasses.replace(self.fsds, image_size=int(image_size))


@dataclass
class HeadStudioConfig:
    """The whole configuration of a run (``[head]``, ``[init]``, ... sections of the TOML)."""

    head: HeadConfig = field(default_factory=HeadConfig)
    init: InitConfig = field(default_factory=InitConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    regularizer: RegularizerConfig = field(default_factory=RegularizerConfig)


# ------------------------------------------------------------------------------ validation


def _check(ok: bool, key: str, value: Any, expected: str) -> None:
    if not ok:
        raise HeadStudioError(f"bad value for config key '{key}': {value!r}; expected {expected}.")


def validate_config(cfg: HeadStudioConfig) -> None:
    """Range checks that types alone do not express (a section with checks of its own, like
    ``[densify]``, ran them when it was built)."""
    h, i, c, t = cfg.head, cfg.init, cfg.camera, cfg.train
    _check(1 <= h.num_shape <= 300, "head.num_shape", h.num_shape, "1..300")
    _check(0 <= h.num_expression <= 100, "head.num_expression", h.num_expression, "0..100")
    _check(i.points_per_face >= 1, "init.points_per_face", i.points_per_face, "at least 1")
    _check(i.knn >= 1, "init.knn", i.knn, "at least 1")
    _check(0.0 < i.opacity < 1.0, "init.opacity", i.opacity, "a number in (0, 1)")
    _check(0.0 <= i.color <= 1.0, "init.color", i.color, "a number in [0, 1]")
    _check(0 <= i.sh_degree <= 3, "init.sh_degree", i.sh_degree, "0, 1, 2 or 3")
    for name, lo_min, hi_max in (
        ("distance", 1e-6, math.inf),
        ("fovy_deg", 1e-3, 179.0),
        ("elevation_deg", -90.0, 90.0),
        ("azimuth_deg", -360.0, 360.0),
    ):
        lo, hi = getattr(c, name)
        _check(
            lo_min <= lo <= hi <= hi_max,
            f"camera.{name}",
            [lo, hi],
            f"[min, max] with {lo_min} <= min <= max <= {hi_max}",
        )
    _check(c.scene_scale > 0, "camera.scene_scale", c.scene_scale, "a positive number")
    _check(t.steps >= 1, "train.steps", t.steps, "at least 1")
    _check(t.batch_size >= 1, "train.batch_size", t.batch_size, "at least 1")
    _check(8 <= t.resolution <= 4096, "train.resolution", t.resolution, "8..4096 pixels")
    _check(
        8 <= t.guidance_resolution <= 4096 and t.guidance_resolution % 8 == 0,
        "train.guidance_resolution",
        t.guidance_resolution,
        "a multiple of 8 in 8..4096",
    )
    lrs = (
        "lr_position",
        "lr_position_final",
        "lr_scale",
        "lr_rotation",
        "lr_color",
        "lr_opacity",
        "lr_shape",
    )
    for name in lrs:
        v = getattr(t, name)
        _check(v >= 0 and math.isfinite(v), f"train.{name}", v, "a finite number >= 0")
    _check(all(0 <= b < 1 for b in t.betas), "train.betas", list(t.betas), "[b1, b2] each in [0, 1)")
    for name in ("log_every", "preview_every", "checkpoint_every", "shape_stop_step"):
        _check(getattr(t, name) >= 0, f"train.{name}", getattr(t, name), "an integer >= 0")
    _check(
        t.lr_position_decay_steps >= 1,
        "train.lr_position_decay_steps",
        t.lr_position_decay_steps,
        "at least 1",
    )
    _check(cfg.regularizer.pos_from >= 0, "regularizer.pos_from", cfg.regularizer.pos_from, "an integer >= 0")
    for f in dataclasses.fields(LossConfig):
        v = getattr(cfg.loss, f.name)
        _check(v >= 0 and math.isfinite(v), f"loss.{f.name}", v, "a finite number >= 0")
    # [densify] and [guidance.fsds] check themselves (DensifyConfig / FSDSConfig.__post_init__, run
    # by _replace_sections)
