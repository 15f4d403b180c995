"""Training guidance: what turns a batch of renders into loss terms.

:class:`Guidance` is the interface the trainer sees. Each step it may choose the batch
(:meth:`Guidance.sample_batch`; by default the trainer's :class:`~headstudio.train.batch_sampler.BatchSampler`
draws it), then scores the renders: ``guidance(renders [B,3,H,W], batch, step, vertices [B,V,3])
-> GuidanceOutput`` with unweighted ``loss_<name>`` terms. The trainer multiplies each term by
``loss.lambda_<name>`` (:meth:`headstudio.config.LossConfig.weight`) and skips the optimiser step
when the output says ``skipped``.

Two implementations:

* :class:`FSDSGuidance` — the paper's F-SDS (``fsds_guidance.FSDS``): the posed mesh's MediaPipe
  landmarks are projected with the batch cameras, hidden ones dropped, drawn into
  ControlNetMediaPipeFace control maps, and the renders are scored by the diffusion model
  (``loss_sds``).
* :class:`ImageGuidance` — photometric guidance against images with known cameras and FLAME
  parameters (a :class:`~headstudio.train.targets.TargetSet`): ``loss_l1`` and ``loss_ssim``
  (``1 − SSIM``). It also chooses the training batch (the cameras and expressions of the sampled
  targets), which is how the offline demo and the end-to-end quality test fit an avatar to a
  teacher.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from flame_core import FlameModel
from fsds_guidance import FSDS, GuidanceModels, load_guidance_models
from fsds_guidance.control import (
    draw_control_map,
    embedded_normals,
    face_in_view,
    landmark_visibility,
    vertex_normals,
)
from torch import Tensor

from ..cameras import camera_angles
from ..config import GuidanceConfig, HeadStudioConfig
from ..errors import HeadStudioError
from .batch_sampler import BatchSampler, TrainBatch
from .metrics import ssim
from .targets import TargetSet

__all__ = ["GuidanceOutput", "Guidance", "FSDSGuidance", "ImageGuidance", "build_guidance"]


@dataclass
class GuidanceOutput:
    """Result of one guidance evaluation.

    Attributes:
        losses: unweighted ``loss_<name>`` scalars, differentiable w.r.t. the renders (zero when
            ``skipped``); the trainer weighs them with ``loss.lambda_<name>``.
        skipped: True when the guidance could not produce a finite gradient; the trainer then
            skips the optimiser step.
        logs: other scalars for the progress bar and ``log.jsonl``.
        debug: optional images ``[B, 3, h, w]`` for previews (control maps, targets, ...).
    """

    losses: dict[str, Tensor]
    skipped: bool = False
    logs: dict[str, float] = field(default_factory=dict)
    debug: dict[str, Tensor] = field(default_factory=dict)


class Guidance:
    """Base class of everything that scores renders for the trainer.

    A subclass names the terms it returns in :attr:`loss_terms` (each needs a ``lambda_<name>``
    weight in :class:`~headstudio.config.LossConfig`) and implements :meth:`__call__`; the other
    methods have defaults for a guidance that keeps no state and does not choose its batches.
    """

    #: The ``loss_<name>`` terms :meth:`__call__` returns.
    loss_terms: ClassVar[tuple[str, ...]] = ()

    def __call__(self, renders: Tensor, batch: TrainBatch, step: int, vertices: Tensor) -> GuidanceOutput:
        """Score ``renders [B, 3, H, W]`` (0..1) of ``batch`` at the 1-based ``step``;
        ``vertices [B, V, 3]`` is the posed mesh of each render (no gradient)."""
        raise NotImplementedError(f"{type(self).__name__} must implement __call__")

    def sample_batch(self, sampler: BatchSampler, batch_size: int, generator: torch.Generator) -> TrainBatch:
        """The batch of the next step; default: ``sampler.sample(batch_size, generator)``."""
        return sampler.sample(batch_size, generator)

    def set_default_prompt(self, prompt: str | None) -> None:
        """Give the run's text prompt to a guidance built without one (default: ignored)."""

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps so a resumed run continues exactly (default: nothing)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (default: nothing to restore)."""

    def to(self, device: torch.device | str) -> Guidance:
        """Move the guidance's tensors to ``device`` (in place); returns self (default: none)."""
        return self


# ------------------------------------------------------------------------ image guidance


class ImageGuidance(Guidance):
    r"""Photometric guidance: fit renders to target images with known cameras and poses.

    Terms (the 3DGS photometric loss, Kerbl et al. 2023, with the default weights 0.8 / 0.2):
    ``loss_l1 = mean|x − y|`` and ``loss_ssim = 1 − SSIM(x, y)``. The training batch comes from
    the targets (:meth:`sample_batch`): their cameras (intrinsics rescaled to the render
    resolution), FLAME parameters and backgrounds.
    """

    loss_terms = ("loss_l1", "loss_ssim")

    def __init__(self, targets: TargetSet) -> None:
        self.targets = targets
        self._resized: dict[tuple[int, int], Tensor] = {}

    def to(self, device: torch.device | str) -> ImageGuidance:
        """Move the targets to ``device`` (in place); returns self."""
        self.targets = self.targets.to(device)
        self._resized = {}
        return self

    def sample_batch(self, sampler: BatchSampler, batch_size: int, generator: torch.Generator) -> TrainBatch:
        """A batch of ``batch_size`` distinct targets (with replacement if there are fewer).

        ``generator`` must be a CPU generator (the trainer's); intrinsics are rescaled from the
        targets' size to the sampler's ``width × height``.
        """
        t = len(self.targets)
        if batch_size <= t:
            idx = torch.randperm(t, generator=generator)[:batch_size]
        else:
            idx = torch.randint(0, t, (batch_size,), generator=generator)
        return self.batch_for(idx, sampler.width, sampler.height)

    def batch_for(self, indices: Tensor, width: int, height: int) -> TrainBatch:
        """The :class:`TrainBatch` of the targets ``indices [B]``, cameras for ``width × height``."""
        tg = self.targets
        dev = tg.viewmats.device
        idx = indices.to(dev).long()
        ks = tg.Ks[idx].clone()
        ks[:, 0] *= width / tg.width
        ks[:, 1] *= height / tg.height
        vm = tg.viewmats[idx]
        az, el = camera_angles(vm)
        return TrainBatch(
            viewmats=vm[:, None],
            Ks=ks[:, None],
            flame={k: v[idx.to(v.device)] for k, v in tg.flame.items()},
            azimuth_deg=az,
            elevation_deg=el,
            backgrounds=tg.backgrounds[idx][:, None],
            target_indices=idx,
        )

    def target_images(self, indices: Tensor, height: int, width: int) -> Tensor:
        """``[B, 3, height, width]`` targets (area-resampled once per size if needed)."""
        key = (height, width)
        if key not in self._resized:
            imgs = self.targets.images.permute(0, 3, 1, 2)
            if (self.targets.height, self.targets.width) != key:
                imgs = F.interpolate(imgs, size=key, mode="area")
            self._resized[key] = imgs.contiguous()
        imgs = self._resized[key]
        return imgs[indices.to(imgs.device).long()]

    def __call__(self, renders: Tensor, batch: TrainBatch, step: int, vertices: Tensor) -> GuidanceOutput:
        """Photometric terms of ``renders [B, 3, H, W]`` against the batch's targets."""
        if batch.target_indices is None:
            raise HeadStudioError(
                "image guidance needs batches from ImageGuidance.sample_batch (target_indices is None)."
            )
        target = self.target_images(batch.target_indices, renders.shape[-2], renders.shape[-1]).to(renders)
        l1 = (renders - target).abs().mean()
        dissimilarity = 1.0 - ssim(renders, target)
        return GuidanceOutput(
            losses={"loss_l1": l1, "loss_ssim": dissimilarity}, debug={"target": target.detach()}
        )


# ------------------------------------------------------------------------- F-SDS guidance


def _resolve_dtype(name: str | torch.dtype | None, device: torch.device) -> torch.dtype | None:
    """``guidance.dtype`` as a torch dtype; ``None`` for ``auto`` (fp16 on CUDA, fp32 on CPU)."""
    if isinstance(name, torch.dtype):
        return name
    name = (name or "auto").lower()
    table = {"fp16": torch.float16, "float16": torch.float16, "half": torch.float16}
    table.update({"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16})
    table["bfloat16"] = torch.bfloat16
    if name == "auto":
        return None  # load_guidance_models: fp16 on CUDA, fp32 on CPU
    if name not in table:
        raise HeadStudioError(f"guidance.dtype = '{name}' is unknown; use auto, fp16, bf16 or fp32.")
    return table[name]


class FSDSGuidance(Guidance):
    r"""F-SDS guidance on the posed FLAME mesh (Zhou et al. 2024, HeadStudio; docs/METHOD.md).

    Per step: MediaPipe landmarks ``[B, L, 3]`` from the posed vertices (``head.landmark_embedding``),
    their normals, both moved to each camera's frame; :func:`fsds_guidance.control.landmark_visibility`
    drops those facing away; the rest are projected with the batch intrinsics (rescaled to the
    control map size) and drawn by :func:`fsds_guidance.control.draw_control_map`. The renders
    (resized to ``image_size``) and control maps go to :class:`fsds_guidance.FSDS`, whose loss is
    the term ``loss_sds``; views with no face in sight (:func:`fsds_guidance.control.face_in_view`)
    go without the ControlNet.

    Args:
        config: model ids/dirs, ``guidance_scale``, ``controlnet_scale``, ``mode`` (``fsds`` or
            ``sds``), ``dtype``.
        head: the head model (for ``faces`` and ``landmark_embedding``).
        device: where the diffusion models run.
        models: already-built models (e.g. ``fsds_guidance.testing.tiny_components()``);
            ``None`` loads them with ``fsds_guidance.load_guidance_models``, whose error (a
            ``GuidanceModelError`` saying how to get the weights) is passed on as it is.
        prompt: the text prompt (the trainer sets it when ``None``).
        image_size: resolution the renders are resized to (512 for SD 1.5; 64 for the tiny models).
        seed: seed of the guidance's own generator (timesteps, noise, VAE sampling).
    """

    loss_terms = ("loss_sds",)

    def __init__(
        self,
        config: GuidanceConfig,
        head: FlameModel,
        device: torch.device | str,
        models: GuidanceModels | None = None,
        prompt: str | None = None,
        image_size: int = 512,
        seed: int = 0,
    ) -> None:
        self.device = torch.device(device)
        if head.landmark_embedding is None:
            raise HeadStudioError(
                "F-SDS guidance needs MediaPipe landmarks on the head model; give a FLAME model with a "
                "landmark embedding (the procedural head has one) or use guidance.kind = 'image'."
            )
        self.head = head
        self.faces = head.faces.long().to(self.device)
        self.embedding = head.landmark_embedding.to(self.device)
        self.models = models if models is not None else self._load_models(config)
        self.fsds = FSDS(self.models, config.to_fsds_config(image_size=int(image_size)))
        self.image_size = int(image_size)
        self.prompt = prompt
        self.generator = torch.Generator(device=self.models.device).manual_seed(int(seed))

    def _load_models(self, config: GuidanceConfig) -> GuidanceModels:
        return load_guidance_models(
            base=config.base_model,
            controlnet=config.controlnet,
            controlnet_subfolder=config.controlnet_subfolder,
            device=self.device,
            dtype=_resolve_dtype(config.dtype, self.device),
            local_files_only=True if config.local_files_only else None,
        )

    def set_default_prompt(self, prompt: str | None) -> None:
        """Use ``prompt`` when the guidance was built without one."""
        if self.prompt is None:
            self.prompt = prompt

    # ------------------------------------------------------------------ state (checkpoints)
    def state_dict(self) -> dict[str, Any]:
        """The guidance's RNG state (saved in checkpoints so a resumed run continues exactly)."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.generator.set_state(state["generator"])

    # ------------------------------------------------------------------ control maps
    def control_maps(self, vertices: Tensor, batch: TrainBatch, width: int, height: int) -> Tensor:
        """``[B, 3, S, S]`` control images of the posed ``vertices [B, V, 3]`` seen by the first
        camera of each pose of ``batch``, whose intrinsics are for ``width × height`` renders."""
        px, visible = self._project_landmarks(vertices, batch, width, height)
        return draw_control_map(px, visible, self.embedding.landmark_indices.cpu(), size=self.image_size)

    def _project_landmarks(
        self, vertices: Tensor, batch: TrainBatch, width: int, height: int
    ) -> tuple[Tensor, Tensor]:
        """Landmark pixels ``[B, L, 2]`` in the ``S × S`` control map and their visibility ``[B, L]``."""
        if vertices.dim() != 3 or vertices.shape[0] != batch.batch_size or vertices.shape[-1] != 3:
            raise HeadStudioError(
                f"F-SDS guidance needs the posed vertices [B, V, 3] with B = {batch.batch_size}, "
                f"got {list(vertices.shape)}."
            )
        with torch.no_grad():
            verts = vertices.detach().to(self.device).float()
            lmk = self.embedding(verts, self.faces)  # [B, L, 3]
            normals = embedded_normals(
                vertex_normals(verts, self.faces),
                self.faces,
                self.embedding.face_idx,
                self.embedding.bary_coords,
            )
            vm = batch.viewmats[:, 0].to(self.device).float()  # [B, 4, 4]
            K = batch.Ks[:, 0].to(self.device).float()
            rot, trans = vm[:, :3, :3], vm[:, :3, 3]
            p_cam = lmk @ rot.transpose(1, 2) + trans[:, None]
            n_cam = normals @ rot.transpose(1, 2)
            visible = landmark_visibility(p_cam, n_cam)
            uv = p_cam @ K.transpose(1, 2)
            px = uv[..., :2] / uv[..., 2:].clamp_min(1e-6)
            # K is for the W × H render; the control map is S × S
            px = px * px.new_tensor([self.image_size / width, self.image_size / height])
            return px, visible

    def __call__(self, renders: Tensor, batch: TrainBatch, step: int, vertices: Tensor) -> GuidanceOutput:
        """F-SDS term of ``renders [B, 3, H, W]`` (0..1) for the batch's poses and cameras.

        A view that shows no face (:func:`fsds_guidance.control.face_in_view`: no eye in sight,
        i.e. back and back three-quarter views) is guided without the ControlNet: its control map
        would be empty or a few stray lines, an input the ControlNet never saw in training. The
        log ``n_faceless`` counts those views in the step's batch.
        """
        if not self.prompt:
            raise HeadStudioError("F-SDS guidance has no prompt; pass prompt= or give the trainer one.")
        px, visible = self._project_landmarks(vertices, batch, renders.shape[-1], renders.shape[-2])
        ids = self.embedding.landmark_indices.cpu()
        control = draw_control_map(px, visible, ids, size=self.image_size)
        has_face = face_in_view(visible, ids)
        out = self.fsds(
            renders.to(self.models.device),
            control,
            self.prompt,
            batch.azimuth_deg.reshape(-1)[: renders.shape[0]].cpu(),
            batch.elevation_deg.reshape(-1)[: renders.shape[0]].cpu(),
            step,
            generator=self.generator,
            control_weight=has_face.float(),
        )
        logs = {
            "grad_norm": float(out.grad_norm),
            "t_mean": float(out.timesteps.float().mean()),
            "n_faceless": float((~has_face).sum()),
        }
        return GuidanceOutput(
            losses={"loss_sds": out.loss}, skipped=bool(out.skipped), logs=logs, debug={"control": control}
        )


# ----------------------------------------------------------------------------- construction


def build_guidance(
    config: HeadStudioConfig, head: FlameModel, device: torch.device, prompt: str | None
) -> Guidance:
    """The guidance named by ``config.guidance.kind``: F-SDS with the configured diffusion
    models, or image guidance fitting the targets in ``config.guidance.targets_dir``.

    Raises:
        HeadStudioError: image guidance without ``targets_dir``, or F-SDS without a prompt.
        fsds_guidance.GuidanceModelError: the diffusion models could not be loaded (its message
            says how to get them).
    """
    g = config.guidance
    if g.kind == "image":
        if not g.targets_dir:
            raise HeadStudioError(
                "guidance.kind = image needs guidance.targets_dir (a directory written by TargetSet.save)."
            )
        return ImageGuidance(TargetSet.load(g.targets_dir))
    if not prompt or not str(prompt).strip():
        raise HeadStudioError("F-SDS guidance needs a text prompt.")
    return FSDSGuidance(
        g, head, device, prompt=prompt, image_size=config.train.guidance_resolution, seed=config.train.seed
    )
