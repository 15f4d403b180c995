"""Typed configuration of a HeadStudio run, with the paper's defaults.

One dataclass per component (:class:`HeadConfig`, :class:`InitConfig`, :class:`CameraConfig`,
:class:`TrainConfig`, :class:`LossConfig`, :class:`DensifyConfig`, :class:`GuidanceConfig`),
gathered in :class:`HeadStudioConfig`. Defaults are the numbers of docs/METHOD.md (the paper's
equations and the authors' public ``configs/headstudio.yaml``). The densification section is
``rigged_gaussians.strategy.DensifyConfig`` itself.

Units (docs/METHOD.md has the table with sources): lengths of the world are metres; camera
distances and ``densify.scene_extent`` are scene units of ``camera.scene_scale`` metres each;
``densify.percent_dense`` and ``densify.max_world_size`` are fractions of the scene extent
(``4 × 0.2 m``: clone below 8 mm, prune above 2.4 cm); ``densify.grad_threshold`` is
dimensionless (each step's statistic has unit norm over the visible Gaussians);
``densify.max_screen_size`` is in pixels of the training render and prunes from step
``densify.screen_size_from``; schedules (``*_from``, ``*_until``, ``*_every``, ``*_step``) are
optimisation steps; learning rates are in :class:`TrainConfig`.

Deviations from the public code that we keep, one line each (docs/METHOD.md has the sources):

- ``train.lr_scale`` 1e-3 and ``train.lr_rotation`` 1e-2 are the paper's table, not the public
  code's 5e-3 / 1e-3: we reproduce the paper's numbers, and nothing measured here favours either.
- The mesh regulariser divides the excess by ``√S`` (the paper's Eq. 10), not by the area: the
  terms stay dimensionless, so ``loss.lambda_pos`` means the same on any head size.
- The position term applies from step 0, not from step 2400: the paper gives no delay, and
  Gaussians that leave their triangle early are the floaters it is meant to stop.
- ``densify.max_gaussians`` (500,000, ours; the public code has no budget): 5x the initial
  count, far below memory limits at batch 8 and 1024², so it only stops runaway growth.
- ``densify.max_world_size`` 0.03 of the extent (2.4 cm; 3DGS: 0.1, 8 cm on a 31 cm head).

A run's configuration is the defaults, then a TOML file, then ``--set key=value`` overrides::

    cfg = load_config("my.toml", ["train.steps=2000", "camera.fovy_deg=[30, 50]"])
    save_config(cfg, out_dir / "config.toml")   # the resolved configuration, kept with the outputs

Override values are read as TOML values (``100``, ``1e-3``, ``true``, ``[1.5, 2.0]``, ``"cuda"``)
and, when that fails, as a bare string (``train.device=cuda``); they are then coerced to the
field's declared type (a text field keeps the raw text of a value TOML reads as a number or bool,
so ``--set guidance.negative_prompt=true`` is the string ``"true"``). For a field that may be
``None`` the strings ``none`` / ``null`` mean ``None``; TOML has no null, so ``None`` values are
left out of saved files (they load back as their default, which is ``None`` for every such
field). Unknown keys and bad values raise
:class:`~headstudio.errors.HeadStudioError` naming the key and the valid choices. Values renamed
since (``guidance.mode = "dsds"``, now ``"fsds"``) still load, with one deprecation log line.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

import tomli_w
from fsds_guidance import FSDSConfig
from rigged_gaussians.strategy import DensifyConfig

from ._atomic import atomic_output
from ._typed_values import BadValue, coerce, describe, field_types
from .errors import HeadStudioError

__all__ = [
    "HeadConfig",
    "InitConfig",
    "CameraConfig",
    "TrainConfig",
    "LossConfig",
    "DensifyConfig",
    "GuidanceConfig",
    "HeadStudioConfig",
    "load_config",
    "config_to_dict",
    "config_from_dict",
    "save_config",
    "apply_overrides",
]

log = logging.getLogger(__name__)

#: Values that were renamed: ``(key, old value) -> new value``.
_RENAMED_VALUES = {("guidance.mode", "dsds"): "fsds"}


@dataclass
class HeadConfig:
    """The head model.

    Attributes:
        flame_path: an official FLAME pickle; ``None`` uses ``HEADSTUDIO_FLAME_PATH`` if set,
            else the open procedural head (``flame_core.FlameModel.resolve``).
        num_shape: shape components β used (and learned).
        num_expression: expression components ψ used by animation.
    """

    flame_path: str | None = None
    num_shape: int = 100
    num_expression: int = 100


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
            log-scales, quaternions, SH colours, opacity logits and β (the paper's table).
        betas: Adam betas.
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
    lr_scale: float = 1e-3
    lr_rotation: float = 1e-2
    lr_color: float = 1.25e-2
    lr_opacity: float = 1e-2
    lr_shape: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.99)
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
        lambda_pos: mesh regularisation of the positions (the paper: 0.1); the term is the mean
            excess over the tolerance of the violating Gaussians, in units of their triangle's
            size (dimensionless).
        lambda_scale: mesh regularisation of the scales (the paper: 0.1), the same units.
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
class GuidanceConfig:
    """Which guidance drives training, and the diffusion models of ``fsds``.

    Attributes:
        kind: ``fsds`` (ControlNet-guided score distillation, the paper) or ``image``
            (photometric fit to target images with known cameras and FLAME parameters).
        base_model: hub id or local diffusers directory of the SD 1.5 base model.
        controlnet: hub id or local directory of the MediaPipe-face ControlNet.
        controlnet_subfolder: its subfolder (``diffusion_sd15``); empty for none.
        guidance_scale: classifier-free guidance scale.
        controlnet_scale: ControlNet conditioning scale.
        mode: ``fsds`` (the paper's denoised score distillation) or ``sds`` (DreamFusion's);
            the old name ``dsds`` loads as ``fsds``.
        dtype: ``auto`` (float16 on CUDA, float32 on CPU), ``float16``, ``bfloat16``, ``float32``.
        t_range_phase1, t_range_phase2, t_switch_step: timestep ranges (fractions of 1000)
            before / from the switch step.
        negative_prompt: ``None`` uses the paper's negative prompt.
        view_dependent: append "front/side/back/overhead view" to the prompt.
        local_files_only: never touch the network when loading the models.
        targets_dir: image guidance: a directory written by ``TargetSet.save``.
    """

    kind: Literal["fsds", "image"] = "fsds"
    base_model: str = "stablediffusionapi/realistic-vision-51"
    controlnet: str = "CrucibleAI/ControlNetMediaPipeFace"
    controlnet_subfolder: str = "diffusion_sd15"
    guidance_scale: float = 7.5
    controlnet_scale: float = 1.5
    mode: Literal["fsds", "sds"] = "fsds"
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"
    t_range_phase1: tuple[float, float] = (0.05, 0.8)
    t_range_phase2: tuple[float, float] = (0.02, 0.55)
    t_switch_step: int = 3000
    negative_prompt: str | None = None
    view_dependent: bool = True
    local_files_only: bool = False
    targets_dir: str | None = None

    def to_fsds_config(self, image_size: int = 512) -> FSDSConfig:
        """The ``fsds_guidance.FSDSConfig`` of these settings."""
        kw: dict[str, Any] = {
            "mode": self.mode,
            "guidance_scale": self.guidance_scale,
            "controlnet_scale": self.controlnet_scale,
            "t_range_phase1": tuple(self.t_range_phase1),
            "t_range_phase2": tuple(self.t_range_phase2),
            "t_switch_step": self.t_switch_step,
            "image_size": image_size,
            "view_dependent": self.view_dependent,
        }
        if self.negative_prompt is not None:
            kw["negative_prompt"] = self.negative_prompt
        return FSDSConfig(**kw)


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


def _section_types() -> dict[str, type]:
    return {f.name: field_types(HeadStudioConfig)[f.name] for f in dataclasses.fields(HeadStudioConfig)}


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _coerce_field(key: str, value: Any, origin: str) -> tuple[str, str, Any]:
    """``(section, name, value coerced to the field type)`` of the key ``section.name``."""
    if isinstance(value, str) and (key, value) in _RENAMED_VALUES:
        new = _RENAMED_VALUES[key, value]
        log.warning("config key %s (%s): '%s' is deprecated; it is now called '%s'.", key, origin, value, new)
        value = new
    sections = _section_types()
    section, dot, name = key.partition(".")
    if not dot or section not in sections:
        raise HeadStudioError(
            f"unknown config key '{key}' ({origin}); keys are <section>.<name> with section one of "
            f"{', '.join(sections)}."
        )
    cls = sections[section]
    names = _field_names(cls)
    if name not in names:
        raise HeadStudioError(
            f"unknown config key '{key}' ({origin}); valid keys of [{section}]: {', '.join(names)}."
        )
    tp = field_types(cls)[name]
    try:
        coerced = coerce(value, tp)
    except BadValue:
        raise HeadStudioError(
            f"bad value for config key '{key}' ({origin}): {value!r}; expected {describe(tp)}."
        ) from None
    numbers = coerced if isinstance(coerced, tuple) else (coerced,)
    if any(isinstance(x, float) and not math.isfinite(x) for x in numbers):
        raise HeadStudioError(
            f"bad value for config key '{key}' ({origin}): {value!r}; expected finite numbers "
            f"({describe(tp)}), not nan or inf."
        )
    return section, name, coerced


def _section_error(
    cfg: HeadStudioConfig, section: str, values: Mapping[str, Any], err: ValueError
) -> HeadStudioError:
    """A section's own check (``__post_init__``: ``"<name>: expected <what>, got <value>"``) as the
    one line a config key's bad value gets."""
    m = re.match(r"(\w+): expected (.*), got ", str(err))
    if m is None:
        return HeadStudioError(f"bad value in config section [{section}]: {err}.")
    name, expected = m.groups()
    value = values[name] if name in values else getattr(getattr(cfg, section), name, None)
    return HeadStudioError(f"bad value for config key '{section}.{name}': {value!r}; expected {expected}.")


def _replace_sections(cfg: HeadStudioConfig, changes: Mapping[str, Mapping[str, Any]]) -> None:
    """Each changed section of ``cfg`` rebuilt with ``dataclasses.replace``, so the section's own
    checks (``DensifyConfig.__post_init__``) run once on the new values."""
    for section, values in changes.items():
        try:
            setattr(cfg, section, dataclasses.replace(getattr(cfg, section), **values))
        except ValueError as err:
            raise _section_error(cfg, section, values, err) from None


def _parse_value(text: str) -> Any:
    """A TOML value (``1e-3``, ``[1, 2]``, ``"x"``, ``true``), else the bare string."""
    text = text.strip()
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(cfg: HeadStudioConfig, overrides: Sequence[str]) -> HeadStudioConfig:
    """Apply ``key=value`` overrides (``train.steps=100``) to ``cfg`` in place; returns it.

    Raises:
        HeadStudioError: an item without ``=``, an unknown key, or a value of the wrong type.
    """
    changes: dict[str, dict[str, Any]] = {}
    for item in overrides:
        key, sep, text = str(item).partition("=")
        if not sep or not key.strip():
            raise HeadStudioError(
                f"«overrides» '{item}' is not KEY=VALUE; "
                "e.g. «overrides» train.steps=2000 or «overrides» camera.fovy_deg=[30,50]."
            )
        value = _parse_value(text)
        try:
            section, name, coerced = _coerce_field(key.strip(), value, f"«overrides» {item}")
        except HeadStudioError:
            if isinstance(value, str):
                raise
            try:  # a text field given an unquoted word TOML reads as a number / bool: keep the text
                section, name, coerced = _coerce_field(key.strip(), text.strip(), f"«overrides» {item}")
            except HeadStudioError:
                pass
            else:
                changes.setdefault(section, {})[name] = coerced
                continue
            raise
        changes.setdefault(section, {})[name] = coerced
    _replace_sections(cfg, changes)
    _validate(cfg)
    return cfg


# ------------------------------------------------------------------------------ validation


def _check(ok: bool, key: str, value: Any, expected: str) -> None:
    if not ok:
        raise HeadStudioError(f"bad value for config key '{key}': {value!r}; expected {expected}.")


def _validate(cfg: HeadStudioConfig) -> None:
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
    for f in dataclasses.fields(LossConfig):
        v = getattr(cfg.loss, f.name)
        _check(v >= 0 and math.isfinite(v), f"loss.{f.name}", v, "a finite number >= 0")
    # [densify] checks itself (DensifyConfig.__post_init__, run by _replace_sections)
    for name in ("t_range_phase1", "t_range_phase2"):
        lo, hi = getattr(cfg.guidance, name)
        _check(0.0 <= lo <= hi <= 1.0, f"guidance.{name}", [lo, hi], "[min, max] with 0 <= min <= max <= 1")


# ------------------------------------------------------------------------- dict / TOML I/O


def config_to_dict(cfg: HeadStudioConfig) -> dict[str, dict[str, Any]]:
    """Nested plain dict (tuples as lists, ``None`` values left out: TOML has no null)."""
    out: dict[str, dict[str, Any]] = {}
    for sec in dataclasses.fields(cfg):
        d = {}
        for k, v in dataclasses.asdict(getattr(cfg, sec.name)).items():
            if v is None:
                continue
            d[k] = list(v) if isinstance(v, tuple) else v
        out[sec.name] = d
    return out


def config_from_dict(d: Mapping[str, Any], origin: str = "config") -> HeadStudioConfig:
    """Build a config from a nested dict (missing keys keep their defaults).

    Raises:
        HeadStudioError: unknown section or key, or a value of the wrong type.
    """
    cfg = HeadStudioConfig()
    sections = _section_types()
    changes: dict[str, dict[str, Any]] = {}
    for section, values in d.items():
        if section not in sections:
            raise HeadStudioError(
                f"unknown config section [{section}] ({origin}); sections are {', '.join(sections)}."
            )
        if not isinstance(values, Mapping):
            raise HeadStudioError(
                f"config section [{section}] ({origin}) must be a table of key = value, got {values!r}."
            )
        for name, value in values.items():
            sec, field_name, coerced = _coerce_field(f"{section}.{name}", value, origin)
            changes.setdefault(sec, {})[field_name] = coerced
    try:
        _replace_sections(cfg, changes)
        _validate(cfg)
    except HeadStudioError as err:  # name where the value came from, as _coerce_field does
        raise HeadStudioError(f"{err.message.rstrip('.')} ({origin}).") from None
    return cfg


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> HeadStudioConfig:
    """Defaults, then the TOML file ``path`` (if given), then ``overrides`` (``key=value``).

    Raises:
        HeadStudioError: missing or unparsable file, unknown keys, bad values.
    """
    data: dict[str, Any] = {}
    origin = "defaults"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise HeadStudioError(f"config file '{p}' does not exist; check the «config» path.")
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise HeadStudioError(
                f"config file '{p}' is not valid TOML: {err}; correct the file there."
            ) from None
        origin = f"in {p}"
    cfg = config_from_dict(data, origin)
    return apply_overrides(cfg, overrides)


def save_config(cfg: HeadStudioConfig, path: str | Path) -> Path:
    """Write the resolved configuration as TOML (atomically); ``load_config`` reads it back."""
    p = Path(path)
    with atomic_output(p) as tmp:
        tmp.write_text(tomli_w.dumps(config_to_dict(cfg)), encoding="utf-8")
    return p
