"""F-SDS: FLAME-based, ControlNet-conditioned denoised score distillation.

References:
    Zhou et al., "HeadStudio: Text to Animatable Head Avatars with 3D Gaussian Splatting",
    ECCV 2024 (F-SDS, denoised SDS). Poole et al., "DreamFusion: Text-to-3D using 2D
    Diffusion", ICLR 2023 (SDS).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from .models import GuidanceModels
from .prompts import DEFAULT_NEGATIVE_PROMPT, PromptCache, view_prompts

logger = logging.getLogger(__name__)


@dataclass
class FSDSConfig:
    """Configuration of :class:`FSDS` (defaults: the paper's public code).

    Attributes:
        mode: ``"fsds"`` (denoised SDS, the paper) or ``"sds"`` (DreamFusion's SDS).
        guidance_scale: classifier-free guidance scale ``s``.
        controlnet_scale: ControlNet conditioning scale.
        t_range_phase1: ``(min, max)`` fraction of the 1000 training timesteps before
            ``t_switch_step``.
        t_range_phase2: the same from ``t_switch_step`` on.
        t_switch_step: training step where the timestep range shrinks.
        denoise_switch_t: ``t`` below which ``δ_d = ε_null`` (else ``ε_null − ε_neg``).
        negative_prompt: text of the negative condition.
        grad_clip: if set, the latent gradient is clamped elementwise to ``[-c, c]``.
        image_size: renders are resized to ``image_size²`` before the VAE (SD: 512; the tiny
            test models use 64).
        view_dependent: append "front/side/back/overhead view" to the prompt.
        vae_gradient_checkpointing: recompute the VAE encoder's blocks in the backward pass
            (less memory for batch 8 at 512², slower); enabled on the shared VAE.
    """

    mode: Literal["fsds", "sds"] = "fsds"
    guidance_scale: float = 7.5
    controlnet_scale: float = 1.5
    t_range_phase1: tuple[float, float] = (0.05, 0.8)
    t_range_phase2: tuple[float, float] = (0.02, 0.55)
    t_switch_step: int = 3000
    denoise_switch_t: int = 200
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT
    grad_clip: float | None = None
    image_size: int = 512
    view_dependent: bool = True
    vae_gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        if self.mode not in ("fsds", "sds"):
            raise ValueError(f"FSDSConfig.mode must be 'fsds' or 'sds', got {self.mode!r}")
        for name in ("t_range_phase1", "t_range_phase2"):
            lo, hi = getattr(self, name)
            if not 0.0 <= lo <= hi <= 1.0:
                raise ValueError(f"FSDSConfig.{name} must satisfy 0 <= min <= max <= 1, got {(lo, hi)}")
            setattr(self, name, (float(lo), float(hi)))
        if self.image_size % 8:
            raise ValueError(f"FSDSConfig.image_size must be a multiple of 8, got {self.image_size}")

    def to_dict(self) -> dict[str, Any]:
        """Plain (JSON-able) dict."""
        d = dataclasses.asdict(self)
        d["t_range_phase1"] = list(self.t_range_phase1)
        d["t_range_phase2"] = list(self.t_range_phase2)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FSDSConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown FSDSConfig keys {sorted(unknown)}; valid keys: {sorted(names)}")
        d = dict(d)
        for k in ("t_range_phase1", "t_range_phase2"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


@dataclass
class FSDSOutput:
    """Result of one guidance step.

    Attributes:
        loss: scalar; ``d loss / d latents = grad / B`` (zero, with no gradient, when skipped).
        timesteps: ``[B]`` long, the timesteps used.
        grad_norm: scalar float tensor, L2 norm of the latent gradient ``grad [B,4,h,w]``
            (after ``grad_clip``, before the division by ``B``; NaN when skipped).
        skipped: True when the gradient was not finite and was not applied.
        debug: with ``return_debug=True``: ``control`` ``[B,3,S,S]``, ``noisy`` (decoded noisy
            latents) and ``denoised`` (decoded one-step x0 prediction from ``ε_cfg``),
            ``[B,3,S,S]`` in 0..1.
    """

    loss: Tensor
    timesteps: Tensor
    grad_norm: Tensor
    skipped: bool = False
    debug: dict[str, Tensor] | None = field(default=None)


def _weigh_residual(residual: Tensor, weight: Tensor, k: int) -> Tensor:
    """``residual [k·B, C, h, w]`` (condition-major) times the per-view ``weight [B]``: exactly
    zero where the weight is 0 (even over non-finite residuals), untouched where it is 1."""
    w = weight.repeat(k).view(-1, 1, 1, 1)
    scaled = torch.where(w == 1, residual, (residual.float() * w).to(residual.dtype))
    return torch.where(w == 0, torch.zeros_like(residual), scaled)


class FSDS:
    r"""Denoised score distillation with ControlNet MediaPipeFace (HeadStudio's F-SDS).

    For renders ``x`` (``[B,3,H,W]`` in 0..1) resized to ``S²`` and encoded by the VAE to
    ``z = 0.18215·E(2x−1)`` (``vae.config.scaling_factor``), a timestep ``t`` and noise ``ε``,
    ``z_t = √ᾱ_t·z + √(1−ᾱ_t)·ε``. One batched ControlNet + UNet evaluation on the stacked
    conditions (text with view suffix, empty, negative) gives ``ε_text, ε_null, ε_neg``. Then

    - F-SDS (Zhou et al. 2024, HeadStudio, ECCV):
      ``δ_c = s·(ε_text − ε_null)``, ``δ_d = ε_null`` if ``t < 200`` else ``ε_null − ε_neg``,
      ``grad = w(t)·(δ_c + δ_d)``;
    - SDS (Poole et al. 2023, DreamFusion): ``ε_cfg = ε_null + s·(ε_text − ε_null)``,
      ``grad = w(t)·(ε_cfg − ε)`` (two conditions only, the negative is not evaluated);

    with ``w(t) = 1 − ᾱ_t`` and ``s`` the guidance scale. The loss is
    ``0.5·‖z − sg(z − grad)‖² / B``: summed over each view's latent, averaged over the ``B``
    views, so ``∂loss/∂z_b = grad_b / B`` and the update flows back through the differentiable
    VAE encoder into the renders. Dividing by the batch size (as the paper's public code does)
    makes a learning rate mean the same at any batch: a parameter seen by every view (a
    Gaussian of the avatar) gets the mean of the views' gradients, not their sum. Non-finite gradients
    are never applied: the output is flagged ``skipped`` (a warning is logged) and its loss is
    zero with zero gradients; the caller should then skip the optimiser step.

    Timesteps: ``t ~ U{⌊a·1000⌋ … ⌊b·1000⌋}`` per view with ``(a, b) = (0.05, 0.8)`` before step
    3000 and ``(0.02, 0.55)`` after.
    """

    def __init__(self, models: GuidanceModels, config: FSDSConfig | None = None) -> None:
        self.models = models
        self.config = config or FSDSConfig()
        self.prompts = PromptCache(models.tokenizer, models.text_encoder, self.config.negative_prompt)
        sched = models.scheduler
        self.num_train_timesteps = int(sched.config.num_train_timesteps)
        self.alphas_cumprod = sched.alphas_cumprod.to(models.device, torch.float32)
        if self.config.vae_gradient_checkpointing:
            models.vae.enable_gradient_checkpointing()

    # ----------------------------------------------------------------------------- schedule
    def timestep_range(self, step: int) -> tuple[int, int]:
        """Inclusive ``(t_min, t_max)`` for training step ``step``."""
        lo, hi = (
            self.config.t_range_phase1 if step < self.config.t_switch_step else self.config.t_range_phase2
        )
        return int(lo * self.num_train_timesteps), int(hi * self.num_train_timesteps)

    def sample_timesteps(
        self, batch_size: int, step: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """``[B]`` long timesteps, uniform on :meth:`timestep_range` (inclusive)."""
        lo, hi = self.timestep_range(step)
        gen_device = generator.device if generator is not None else "cpu"
        t = torch.randint(lo, hi + 1, (batch_size,), generator=generator, device=gen_device)
        return t.to(self.models.device)

    def weight(self, t: Tensor) -> Tensor:
        """``w(t) = 1 − ᾱ_t``, ``[B]`` float32."""
        return 1.0 - self.alphas_cumprod[t.to(self.alphas_cumprod.device).long()]

    # ----------------------------------------------------------------------------- networks
    def encode_images(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Differentiable ``[B,3,H,W]`` 0..1 → ``[B,4,S/8,S/8]`` scaled latents (float32)."""
        vae = self.models.vae
        size = self.config.image_size
        x = images
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
        x = (x * 2.0 - 1.0).to(device=self.models.device, dtype=self.models.dtype)
        posterior = vae.encode(x).latent_dist
        return posterior.sample(generator=generator).float() * float(vae.config.scaling_factor)

    def decode_latents(self, latents: Tensor) -> Tensor:
        """``[B,4,h,w]`` scaled latents → ``[B,3,8h,8w]`` images in 0..1 (no grad)."""
        vae = self.models.vae
        with torch.no_grad():
            x = vae.decode((latents / float(vae.config.scaling_factor)).to(self.models.dtype)).sample
        return ((x.float() + 1.0) / 2.0).clamp(0.0, 1.0)

    def predict_noise(
        self,
        latents_noisy: Tensor,
        t: Tensor,
        embeddings: Tensor,
        control: Tensor,
        control_weight: Tensor | None = None,
    ) -> Tensor:
        """One batched ControlNet + UNet evaluation over ``k`` stacked conditions.

        Args:
            latents_noisy: ``[B,4,h,w]``.
            t: ``[B]`` long.
            embeddings: ``[k·B, 77, D]`` condition-major (all views of condition 0, then 1, …).
            control: ``[B,3,S,S]`` control images in 0..1.
            control_weight: ``[B]`` per-view factor on the ControlNet's residuals, on top of
                ``controlnet_scale`` (``None``: 1 for every view). A view whose factor is 0 gets
                exactly the UNet's prediction without ControlNet (its residuals are replaced by
                zeros, whatever they hold); a factor of 1 leaves its residuals bit for bit as
                they were. When every factor is 0 the ControlNet is not run.

        Returns:
            ``[k·B,4,h,w]`` float32 noise predictions in the same order.
        """
        m = self.models
        bsz = latents_noisy.shape[0]
        k = embeddings.shape[0] // bsz
        x = latents_noisy.to(m.dtype).repeat(k, 1, 1, 1)
        tt = t.repeat(k)
        if m.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        weight = None
        if control_weight is not None:
            weight = torch.as_tensor(control_weight).reshape(-1).to(device=m.device, dtype=torch.float32)
            if weight.shape != (bsz,):
                raise ValueError(f"control_weight must be [B={bsz}], got {tuple(weight.shape)}")
        down: list[Tensor] | None = None
        mid: Tensor | None = None
        if weight is None or bool((weight != 0).any()):
            cond = control.to(device=m.device, dtype=m.dtype).repeat(k, 1, 1, 1)
            down, mid = m.controlnet(
                x,
                tt,
                encoder_hidden_states=embeddings,
                controlnet_cond=cond,
                conditioning_scale=self.config.controlnet_scale,
                return_dict=False,
            )
            if weight is not None and not bool((weight == 1).all()):
                down = [_weigh_residual(r, weight, k) for r in down]
                mid = _weigh_residual(mid, weight, k)
        eps = m.unet(
            x,
            tt,
            encoder_hidden_states=embeddings,
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
        ).sample
        return eps.float()

    # ----------------------------------------------------------------------------- formulas
    def compute_grad(
        self, eps_text: Tensor, eps_null: Tensor, eps_neg: Tensor | None, noise: Tensor, t: Tensor
    ) -> Tensor:
        """Latent gradient ``[B,4,h,w]`` of the configured mode (formulas in the class doc)."""
        s = self.config.guidance_scale
        w = self.weight(t).view(-1, 1, 1, 1)
        if self.config.mode == "sds":
            eps_cfg = eps_null + s * (eps_text - eps_null)
            return w * (eps_cfg - noise)
        if eps_neg is None:
            raise ValueError("F-SDS needs the negative-prompt prediction eps_neg")
        delta_c = s * (eps_text - eps_null)
        small_t = (t < self.config.denoise_switch_t).view(-1, 1, 1, 1)
        delta_d = torch.where(small_t, eps_null, eps_null - eps_neg)
        return w * (delta_c + delta_d)

    # ----------------------------------------------------------------------------- step
    def __call__(
        self,
        images: Tensor,
        control: Tensor,
        prompt: str,
        azimuth_deg: Tensor,
        elevation_deg: Tensor,
        step: int,
        return_debug: bool = False,
        generator: torch.Generator | None = None,
        *,
        control_weight: Tensor | None = None,
    ) -> FSDSOutput:
        """One guidance step.

        Args:
            images: ``[B,3,H,W]`` renders in 0..1 (requires grad).
            control: ``[B,3,S',S']`` control maps (:func:`~fsds_guidance.control.draw_control_map`),
                resized (nearest) to ``image_size`` if needed.
            prompt: the text prompt (a view suffix is appended per camera).
            azimuth_deg, elevation_deg: ``[B]`` camera angles.
            step: training step (selects the timestep range).
            return_debug: also return decoded preview images.
            generator: optional RNG for timesteps, VAE sampling and noise (its device must be
                the models' device).
            control_weight: ``[B]`` per-view factor on the ControlNet's residuals (see
                :meth:`predict_noise`); 0 turns the ControlNet off for that view, e.g. a view
                with no face in sight (:func:`~fsds_guidance.control.face_in_view`). ``None``:
                every view uses it at ``controlnet_scale``.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
        bsz = images.shape[0]
        if control.shape[0] != bsz or control.shape[1] != 3:
            raise ValueError(f"control must be [B={bsz}, 3, S, S], got {tuple(control.shape)}")
        cfg, m = self.config, self.models
        size = cfg.image_size
        if control.shape[-2:] != (size, size):
            control = F.interpolate(control.float(), size=(size, size), mode="nearest")

        latents = self.encode_images(images, generator=generator)  # [B,4,h,w] float32
        t = self.sample_timesteps(bsz, step, generator)
        if cfg.view_dependent:
            text = self.prompts.embed_batch(view_prompts(prompt, azimuth_deg, elevation_deg))
        else:
            text = self.prompts.embed(prompt).expand(bsz, -1, -1)
        conds = [text, self.prompts.empty(bsz)]
        if cfg.mode == "fsds":
            conds.append(self.prompts.negative(bsz))
        embeddings = torch.cat(conds, dim=0).to(m.dtype)

        with torch.no_grad():
            noise = torch.randn(
                latents.shape, generator=generator, device=latents.device, dtype=torch.float32
            )
            ab = self.alphas_cumprod[t].view(-1, 1, 1, 1)
            latents_noisy = ab.sqrt() * latents.detach() + (1.0 - ab).sqrt() * noise
            # control_weight only when given: subclasses and benchmarks override predict_noise
            # with the four-argument signature
            if control_weight is None:
                eps = self.predict_noise(latents_noisy, t, embeddings, control)
            else:
                eps = self.predict_noise(latents_noisy, t, embeddings, control, control_weight=control_weight)
            eps = eps.chunk(len(conds))
            eps_text, eps_null = eps[0], eps[1]
            eps_neg = eps[2] if cfg.mode == "fsds" else None
            grad = self.compute_grad(eps_text, eps_null, eps_neg, noise, t)
            finite = bool(torch.isfinite(grad).all()) and bool(torch.isfinite(latents).all())
            if cfg.grad_clip is not None:
                grad = grad.clamp(-cfg.grad_clip, cfg.grad_clip)
            grad_norm = grad.norm() if finite else torch.tensor(float("nan"), device=grad.device)

        if finite:
            target = (latents - grad).detach()
            loss = 0.5 * F.mse_loss(latents, target, reduction="sum") / bsz
        else:
            logger.warning(
                "F-SDS step %d: non-finite latent gradient (t=%s); skipped, nothing applied",
                step,
                t.tolist(),
            )
            # zero value and zero gradients whatever the (non-finite) latents hold
            loss = torch.where(torch.zeros((), dtype=torch.bool, device=latents.device), latents.sum(), 0.0)

        debug = None
        if return_debug:
            with torch.no_grad():
                eps_cfg = eps_null + cfg.guidance_scale * (eps_text - eps_null)
                x0 = (latents_noisy - (1.0 - ab).sqrt() * eps_cfg) / ab.sqrt()
                debug = {
                    "control": control.detach().float(),
                    "noisy": self.decode_latents(latents_noisy),
                    "denoised": self.decode_latents(x0),
                }
        return FSDSOutput(loss=loss, timesteps=t, grad_norm=grad_norm, skipped=not finite, debug=debug)
