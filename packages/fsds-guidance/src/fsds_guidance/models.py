"""Loading the frozen diffusion models (base SD 1.5 checkpoint + ControlNet MediaPipeFace).

Defaults are the paper's public code: base ``stablediffusionapi/realistic-vision-51`` and
ControlNet ``CrucibleAI/ControlNetMediaPipeFace`` (subfolder ``diffusion_sd15``), with a DDIM
scheduler built from SD 1.5's configuration kept here in code. Each may be a hub id or a
local directory; ``HEADSTUDIO_SD_MODEL`` / ``HEADSTUDIO_CONTROLNET_MODEL`` override the
defaults. Missing weights fail fast with one :class:`GuidanceModelError` saying what to do.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch

from .prompts import prompt_length

logger = logging.getLogger(__name__)

DEFAULT_BASE_MODEL = "stablediffusionapi/realistic-vision-51"
DEFAULT_CONTROLNET_MODEL = "CrucibleAI/ControlNetMediaPipeFace"
DEFAULT_CONTROLNET_SUBFOLDER = "diffusion_sd15"
ENV_SD_MODEL = "HEADSTUDIO_SD_MODEL"
ENV_CONTROLNET_MODEL = "HEADSTUDIO_CONTROLNET_MODEL"

#: DDIM configuration of Stable Diffusion 1.5 (``scheduler/scheduler_config.json``, DDIM form).
SD15_DDIM_CONFIG: dict = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "trained_betas": None,
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}


class GuidanceModelError(RuntimeError):
    """The diffusion weights could not be loaded; the message says how to get them."""


@dataclass
class GuidanceModels:
    """The frozen components F-SDS needs (diffusers / transformers objects)."""

    unet: torch.nn.Module  # UNet2DConditionModel
    controlnet: torch.nn.Module  # ControlNetModel
    vae: torch.nn.Module  # AutoencoderKL
    text_encoder: torch.nn.Module  # CLIPTextModel
    tokenizer: object  # CLIPTokenizer
    scheduler: object  # DDIMScheduler
    device: torch.device
    dtype: torch.dtype


def make_scheduler():
    """A ``DDIMScheduler`` with :data:`SD15_DDIM_CONFIG`."""
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(dict(SD15_DDIM_CONFIG))


def freeze(models: GuidanceModels) -> GuidanceModels:
    """Set every network to eval mode with ``requires_grad=False`` (in place)."""
    for m in (models.unet, models.controlnet, models.vae, models.text_encoder):
        m.eval()
        m.requires_grad_(False)
    return models


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith((".", "/", "~", "\\"))
        or os.path.isabs(name)
        or name.count("/") > 1
        or (os.sep != "/" and os.sep in name)
    )


def _help(base: str, controlnet: str, subfolder: str, reason: str) -> str:
    return (
        f"Could not load the guidance models: {reason}\n"
        f"  base model: {base!r}   ControlNet: {controlnet!r} (subfolder {subfolder!r})\n"
        "Download them once (needs network, ~4 GB):\n"
        f"  huggingface-cli download {DEFAULT_BASE_MODEL}    (or: hf download {DEFAULT_BASE_MODEL})\n"
        f"  huggingface-cli download {DEFAULT_CONTROLNET_MODEL} "
        f"--include '{DEFAULT_CONTROLNET_SUBFOLDER}/*'\n"
        "then run again (offline use reads the Hugging Face cache), or point at local directories:\n"
        f"  load_guidance_models(base='/path/to/sd15-dir', controlnet='/path/to/controlnet-dir')\n"
        f"  or set {ENV_SD_MODEL}=/path/to/sd15-dir and {ENV_CONTROLNET_MODEL}=/path/to/controlnet-dir\n"
        "(the base directory holds unet/, vae/, text_encoder/, tokenizer/ in diffusers layout; the "
        f"ControlNet directory holds config.json + weights, or a {subfolder!r} subfolder with them)."
    )


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` forbids the Hugging Face hub (``1``/``true``/``yes``/``on``)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face endpoint (``HF_ENDPOINT``) accepts a TCP connection within
    ``timeout`` seconds: a quick check before a download that would otherwise hang and retry."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


def _load_all(base, controlnet, cn_sub, dtype, local_only):
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    kw = {"local_files_only": local_only}
    mkw = {**kw, "low_cpu_mem_usage": importlib.util.find_spec("accelerate") is not None}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")
        unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet", torch_dtype=dtype, **mkw)
        vae = AutoencoderKL.from_pretrained(base, subfolder="vae", torch_dtype=dtype, **mkw)
        text_encoder = CLIPTextModel.from_pretrained(base, subfolder="text_encoder", torch_dtype=dtype, **kw)
        tokenizer = CLIPTokenizer.from_pretrained(base, subfolder="tokenizer", **kw)
        cn = ControlNetModel.from_pretrained(controlnet, subfolder=cn_sub, torch_dtype=dtype, **mkw)
    return unet, cn, vae, text_encoder, tokenizer


def load_guidance_models(
    base: str | os.PathLike | None = None,
    controlnet: str | os.PathLike | None = None,
    controlnet_subfolder: str | None = DEFAULT_CONTROLNET_SUBFOLDER,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    local_files_only: bool | None = None,
) -> GuidanceModels:
    """Load and freeze base UNet/VAE/CLIP text encoder/tokenizer, ControlNet and DDIM scheduler.

    Args:
        base: hub id or local diffusers directory of the SD 1.5 checkpoint; ``None`` reads
            ``HEADSTUDIO_SD_MODEL`` else ``stablediffusionapi/realistic-vision-51``.
        controlnet: hub id or local directory of the ControlNet; ``None`` reads
            ``HEADSTUDIO_CONTROLNET_MODEL`` else ``CrucibleAI/ControlNetMediaPipeFace``.
        controlnet_subfolder: subfolder holding the diffusers ControlNet (``diffusion_sd15``);
            for a local directory it is used only if it exists there.
        device: default ``cuda`` if available else ``cpu``.
        dtype: default float16 on CUDA, float32 on CPU.
        local_files_only: ``True`` never touches the network; ``None`` uses the local cache if
            complete, else (unless ``HF_HUB_OFFLINE`` is set) downloads after a 3 s
            reachability check.

    Raises:
        GuidanceModelError: weights missing/unreachable, with instructions.
    """
    base = str(base or os.environ.get(ENV_SD_MODEL) or DEFAULT_BASE_MODEL)
    controlnet = str(controlnet or os.environ.get(ENV_CONTROLNET_MODEL) or DEFAULT_CONTROLNET_MODEL)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dtype is None:
        dtype = torch.float16 if device.type == "cuda" else torch.float32
    sub = controlnet_subfolder or None
    cn_sub = sub
    for name in (base, controlnet):
        expanded = os.path.expanduser(name)
        if _looks_like_path(name) and not Path(expanded).is_dir():
            raise GuidanceModelError(
                _help(base, controlnet, sub or "", f"local directory {expanded!r} does not exist.")
            )
    base = os.path.expanduser(base)
    controlnet = os.path.expanduser(controlnet)
    if Path(controlnet).is_dir() and sub and not (Path(controlnet) / sub).is_dir():
        cn_sub = None

    offline = hub_offline() or local_files_only is True
    attempts = [True] if offline else [True, False]
    last: Exception | None = None
    loaded = None
    for local_only in attempts:
        if not local_only:
            if local_files_only is None and not hub_reachable():
                reason = "weights are not in the local cache and the hub is unreachable."
                raise GuidanceModelError(_help(base, controlnet, sub or "", reason)) from None
            logger.info("downloading guidance models %s, %s", base, controlnet)
        try:
            loaded = _load_all(base, controlnet, cn_sub, dtype, local_only)
            break
        except (OSError, ValueError) as exc:  # hub errors subclass OSError
            last = exc
            logger.debug("loading with local_files_only=%s failed: %s", local_only, exc)
    if loaded is None:
        reason = (
            "weights are not in the local cache and HF_HUB_OFFLINE / local_files_only forbids downloading"
            if offline
            else f"{type(last).__name__}: {str(last).splitlines()[0] if last else ''}"
        )
        raise GuidanceModelError(_help(base, controlnet, sub or "", reason + ".")) from None
    unet, cn, vae, text_encoder, tokenizer = loaded
    length = prompt_length(tokenizer, text_encoder)
    if tokenizer.model_max_length != length:
        # a tokenizer_config.json without model_max_length reads back as 1e30
        logger.info(
            "tokenizer model_max_length %s; using the text encoder's %d positions",
            tokenizer.model_max_length,
            length,
        )
        tokenizer.model_max_length = length
    models = GuidanceModels(
        unet=unet.to(device),
        controlnet=cn.to(device),
        vae=vae.to(device),
        text_encoder=text_encoder.to(device),
        tokenizer=tokenizer,
        scheduler=make_scheduler(),
        device=device,
        dtype=dtype,
    )
    if device.type == "cuda":
        models.unet.to(memory_format=torch.channels_last)
        models.controlnet.to(memory_format=torch.channels_last)
    # diffusers uses torch SDPA (AttnProcessor2_0) by default on torch >= 2.
    return freeze(models)
