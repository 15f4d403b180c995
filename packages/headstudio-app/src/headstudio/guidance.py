"""Training guidance: what turns a batch of renders into a loss.

Two interchangeable implementations of the :class:`Guidance` protocol:

* :class:`FSDSGuidance` — the paper's F-SDS (``fsds_guidance.FSDS``): the posed mesh's MediaPipe
  landmarks are projected with the batch cameras, hidden ones dropped, drawn into
  ControlNetMediaPipeFace control maps, and the renders are scored by the diffusion model.
* :class:`ImageGuidance` — photometric guidance against images with known cameras and FLAME
  parameters (a :class:`TargetSet`): ``λ_l1·L1 + λ_ssim·(1 − SSIM)``. It also chooses the
  training batch (the cameras and expressions of the sampled targets), which is how the
  offline demo and the end-to-end quality test fit an avatar to a teacher.

The trainer calls ``guidance(renders [B,3,H,W], batch, step)`` and skips the optimiser step when
the output says ``skipped`` (a non-finite F-SDS gradient).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import HeadStudioError

__all__ = [
    "TrainBatch",
    "GuidanceOutput",
    "Guidance",
    "FSDSGuidance",
    "ImageGuidance",
    "TargetSet",
    "ssim",
    "psnr",
    "camera_angles",
]

log = logging.getLogger(__name__)

TARGETS_FILE = "targets.npz"
TARGETS_FORMAT = 1


# ----------------------------------------------------------------------------------- batch


@dataclass
class TrainBatch:
    """The poses and cameras of one training step (``B`` poses, ``C`` cameras each; training
    uses ``C = 1``).

    Attributes:
        viewmats: ``[B, C, 4, 4]`` world→camera (OpenCV).
        Ks: ``[B, C, 3, 3]`` intrinsics at the render resolution.
        flame: FLAME keyword arguments ``[B, ·]`` (``expression``, ``jaw_pose``, ...).
        azimuth_deg: ``[B*C]`` camera azimuths (0 = front, +z).
        elevation_deg: ``[B*C]`` camera elevations.
        backgrounds: ``[B, C, 3]`` background colours in 0..1.
        target_indices: ``[B]`` long, the target of each pose (image guidance only).
        vertices: ``[B, V, 3]`` posed vertices, filled in by the trainer after rendering
            (F-SDS projects the landmarks from them).
    """

    viewmats: Tensor
    Ks: Tensor
    flame: dict[str, Tensor]
    azimuth_deg: Tensor
    elevation_deg: Tensor
    backgrounds: Tensor
    target_indices: Tensor | None = None
    vertices: Tensor | None = None

    @property
    def batch_size(self) -> int:
        return int(self.viewmats.shape[0])

    def to(self, device: torch.device | str) -> TrainBatch:
        """Copy every tensor to ``device``."""

        def mv(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        return TrainBatch(
            viewmats=self.viewmats.to(device),
            Ks=self.Ks.to(device),
            flame={k: v.to(device) for k, v in self.flame.items()},
            azimuth_deg=self.azimuth_deg.to(device),
            elevation_deg=self.elevation_deg.to(device),
            backgrounds=self.backgrounds.to(device),
            target_indices=mv(self.target_indices),
            vertices=mv(self.vertices),
        )


@dataclass
class GuidanceOutput:
    """Result of one guidance evaluation.

    Attributes:
        loss: scalar, differentiable w.r.t. the renders (zero when ``skipped``).
        skipped: True when the guidance could not produce a finite gradient; the trainer then
            skips the optimiser step.
        logs: scalars for the progress bar and ``log.jsonl`` (``loss_*`` entries unweighted).
        debug: optional images ``[B, 3, h, w]`` for previews (control maps, targets, ...).
    """

    loss: Tensor
    skipped: bool = False
    logs: dict[str, float] = field(default_factory=dict)
    debug: dict[str, Tensor] = field(default_factory=dict)


@runtime_checkable
class Guidance(Protocol):
    """Anything that scores renders: ``guidance(renders, batch, step) -> GuidanceOutput``."""

    def __call__(self, renders: Tensor, batch: TrainBatch, step: int) -> GuidanceOutput: ...


def camera_angles(viewmats: Tensor, target: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Azimuth and elevation (degrees) of cameras ``viewmats [..., 4, 4]`` around ``target [3]``.

    The inverse of ``cameras.orbit_camera``'s placement: azimuth 0 on +z, 90 on +x, elevation
    positive above (``+y``). Returns two tensors of shape ``[...]``.
    """
    rot, trans = viewmats[..., :3, :3], viewmats[..., :3, 3]
    centre = -(rot.transpose(-1, -2) @ trans.unsqueeze(-1)).squeeze(-1)
    if target is not None:
        centre = centre - target.to(centre)
    az = torch.rad2deg(torch.atan2(centre[..., 0], centre[..., 2]))
    el = torch.rad2deg(torch.asin((centre[..., 1] / centre.norm(dim=-1).clamp_min(1e-12)).clamp(-1, 1)))
    return az, el


# ------------------------------------------------------------------------------------ SSIM


def _gaussian_window(size: int, sigma: float, channels: int, like: Tensor) -> Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = (g / g.sum()).to(like)
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim(x: Tensor, y: Tensor, window_size: int = 11, sigma: float = 1.5, data_range: float = 1.0) -> Tensor:
    """Mean structural similarity of two image batches (Wang et al. 2004), differentiable.

    Gaussian window ``window_size`` (σ ``sigma``), valid convolution (no padding),
    ``C1 = (0.01·R)²``, ``C2 = (0.03·R)²``; for images smaller than the window the window shrinks
    to the image.

    Args:
        x, y: ``[B, C, H, W]`` images with values in ``[0, data_range]``.

    Returns:
        Scalar mean SSIM over batch, channels and positions (1 for identical images).
    """
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(
            f"ssim: x and y must both be [B, C, H, W], got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    size = min(window_size, x.shape[-1], x.shape[-2])
    ch = x.shape[1]
    w = _gaussian_window(size, sigma, ch, x)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, w, groups=ch)

    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x**2
    syy = blur(y * y) - mu_y**2
    sxy = blur(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return (num / den).mean()


def psnr(x: Tensor, y: Tensor, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB over all elements of ``x`` and ``y`` (same shape)."""
    mse = float(F.mse_loss(x.float(), y.float()))
    return float("inf") if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


# ------------------------------------------------------------------------------- targets


@dataclass
class TargetSet:
    """Images with known cameras and FLAME parameters (what :class:`ImageGuidance` fits).

    Attributes:
        images: ``[T, H, W, 3]`` float in 0..1.
        viewmats: ``[T, 4, 4]`` world→camera (OpenCV).
        Ks: ``[T, 3, 3]`` intrinsics for ``W × H`` images.
        flame: FLAME keyword arguments, each ``[T, ·]``.
        backgrounds: ``[T, 3]`` background colour the images were rendered / matted on
            (default white).
    """

    images: Tensor
    viewmats: Tensor
    Ks: Tensor
    flame: dict[str, Tensor]
    backgrounds: Tensor | None = None

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise HeadStudioError(f"TargetSet images must be [T, H, W, 3], got {tuple(self.images.shape)}.")
        t = self.images.shape[0]
        if t < 1:
            raise HeadStudioError("TargetSet needs at least one image.")
        self.images = self.images.float()
        if self.viewmats.shape != (t, 4, 4) or self.Ks.shape != (t, 3, 3):
            raise HeadStudioError(
                f"TargetSet of {t} images needs viewmats [T,4,4] and Ks [T,3,3], got "
                f"{tuple(self.viewmats.shape)} and {tuple(self.Ks.shape)}."
            )
        for k, v in self.flame.items():
            if v.shape[0] != t:
                raise HeadStudioError(f"TargetSet flame['{k}'] has {v.shape[0]} rows for {t} images.")
        if self.backgrounds is None:
            self.backgrounds = torch.ones(t, 3, dtype=torch.float32, device=self.images.device)
        elif self.backgrounds.shape != (t, 3):
            raise HeadStudioError(
                f"TargetSet backgrounds must be [T, 3], got {tuple(self.backgrounds.shape)}."
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def height(self) -> int:
        return int(self.images.shape[1])

    @property
    def width(self) -> int:
        return int(self.images.shape[2])

    def subset(self, indices: Tensor | list[int]) -> TargetSet:
        """The targets at ``indices`` (a new set)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return TargetSet(
            images=self.images[idx.to(self.images.device)],
            viewmats=self.viewmats[idx.to(self.viewmats.device)],
            Ks=self.Ks[idx.to(self.Ks.device)],
            flame={k: v[idx.to(v.device)] for k, v in self.flame.items()},
            backgrounds=self.backgrounds[idx.to(self.backgrounds.device)],
        )

    def to(self, device: torch.device | str) -> TargetSet:
        """Copy to ``device``."""
        return TargetSet(
            images=self.images.to(device),
            viewmats=self.viewmats.to(device),
            Ks=self.Ks.to(device),
            flame={k: v.to(device) for k, v in self.flame.items()},
            backgrounds=self.backgrounds.to(device),
        )

    def save(self, directory: str | Path) -> Path:
        """Write ``targets.npz`` (cameras, FLAME parameters, backgrounds) and
        ``images/000000.png ...`` (8-bit RGB) into ``directory``; returns it."""
        from PIL import Image

        from ._atomic import atomic_output

        d = Path(directory)
        (d / "images").mkdir(parents=True, exist_ok=True)
        names = []
        imgs = self.images.detach().clamp(0, 1).mul(255).add(0.5).to(torch.uint8).cpu().numpy()
        for i, img in enumerate(imgs):
            name = f"images/{i:06d}.png"
            with atomic_output(d / name) as tmp:
                Image.fromarray(img).save(tmp, format="PNG")
            names.append(name)
        arrays: dict[str, np.ndarray] = {
            "viewmats": self.viewmats.detach().float().cpu().numpy(),
            "Ks": self.Ks.detach().float().cpu().numpy(),
            "backgrounds": self.backgrounds.detach().float().cpu().numpy(),
            "meta": np.array(json.dumps({"format": TARGETS_FORMAT, "images": names})),
        }
        for k, v in self.flame.items():
            arrays[f"flame_{k}"] = v.detach().float().cpu().numpy()
        with atomic_output(d / TARGETS_FILE) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
        return d

    @classmethod
    def load(cls, directory: str | Path) -> TargetSet:
        """Read a directory written by :meth:`save` (images may be replaced by captured PNGs of
        the same size).

        Raises:
            HeadStudioError: missing or malformed ``targets.npz`` or images.
        """
        from PIL import Image

        d = Path(directory)
        f = d / TARGETS_FILE
        if not f.is_file():
            raise HeadStudioError(
                f"image guidance: no '{TARGETS_FILE}' in '{d}'; give a directory written by TargetSet.save."
            )
        try:
            with np.load(f, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
            meta = json.loads(str(data.pop("meta")))
            images = []
            for name in meta["images"]:
                with Image.open(d / name) as im:
                    images.append(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0)
        except (OSError, ValueError, KeyError) as err:
            raise HeadStudioError(f"image guidance: could not read targets in '{d}': {err}") from err
        flame = {k[len("flame_") :]: torch.from_numpy(v) for k, v in data.items() if k.startswith("flame_")}
        return cls(
            images=torch.from_numpy(np.stack(images)),
            viewmats=torch.from_numpy(data["viewmats"]),
            Ks=torch.from_numpy(data["Ks"]),
            flame=flame,
            backgrounds=torch.from_numpy(data["backgrounds"]),
        )


# ------------------------------------------------------------------------ image guidance


class ImageGuidance:
    r"""Photometric guidance: fit renders to target images with known cameras and poses.

    ``loss = λ_l1·mean|x − y| + λ_ssim·(1 − SSIM(x, y))`` (the 3DGS photometric loss, Kerbl et
    al. 2023), reported as ``loss_l1`` and ``loss_ssim`` in the logs. The training batch comes
    from the targets (:meth:`sample_batch`): their cameras (intrinsics rescaled to the render
    resolution), FLAME parameters and backgrounds.
    """

    def __init__(self, targets: TargetSet, lambda_l1: float = 0.8, lambda_ssim: float = 0.2) -> None:
        if lambda_l1 < 0 or lambda_ssim < 0 or lambda_l1 + lambda_ssim <= 0:
            raise HeadStudioError(
                f"image guidance weights lambda_l1={lambda_l1}, lambda_ssim={lambda_ssim}: both must be >= 0 "
                "and at least one > 0."
            )
        self.targets = targets
        self.lambda_l1 = float(lambda_l1)
        self.lambda_ssim = float(lambda_ssim)
        self._resized: dict[tuple[int, int], Tensor] = {}

    def to(self, device: torch.device | str) -> ImageGuidance:
        """Move the targets to ``device`` (in place); returns self."""
        self.targets = self.targets.to(device)
        self._resized = {}
        return self

    def sample_batch(
        self, batch_size: int, generator: torch.Generator, width: int, height: int
    ) -> TrainBatch:
        """A batch of ``batch_size`` distinct targets (with replacement if there are fewer).

        ``generator`` must be a CPU generator (the trainer's); intrinsics are rescaled from the
        targets' size to ``width × height``.
        """
        t = len(self.targets)
        if batch_size <= t:
            idx = torch.randperm(t, generator=generator)[:batch_size]
        else:
            idx = torch.randint(0, t, (batch_size,), generator=generator)
        return self.batch_for(idx, width, height)

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

    def __call__(self, renders: Tensor, batch: TrainBatch, step: int) -> GuidanceOutput:
        """Photometric loss of ``renders [B, 3, H, W]`` against the batch's targets."""
        if batch.target_indices is None:
            raise HeadStudioError(
                "image guidance needs batches from ImageGuidance.sample_batch (target_indices is None)."
            )
        target = self.target_images(batch.target_indices, renders.shape[-2], renders.shape[-1]).to(renders)
        l1 = (renders - target).abs().mean()
        s = ssim(renders, target) if self.lambda_ssim > 0 else renders.new_ones(())
        loss = self.lambda_l1 * l1 + self.lambda_ssim * (1.0 - s)
        logs = {"loss_l1": float(l1.detach()), "loss_ssim": float(1.0 - s.detach())}
        return GuidanceOutput(loss=loss, skipped=False, logs=logs, debug={"target": target.detach()})


# ------------------------------------------------------------------------- F-SDS guidance


def _cfg(config: Any, name: str, default: Any) -> Any:
    v = getattr(config, name, default)
    return default if v is None else v


def _resolve_dtype(name: str | torch.dtype | None, device: torch.device) -> torch.dtype | None:
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


class FSDSGuidance:
    r"""F-SDS guidance on the posed FLAME mesh (Zhou et al. 2024, HeadStudio).

    Per step: MediaPipe landmarks ``[B, L, 3]`` from the posed vertices (``head.landmark_embedding``),
    their normals, both moved to each camera's frame; :func:`fsds_guidance.control.landmark_visibility`
    drops those facing away; the rest are projected with the batch intrinsics (rescaled to the
    control map size) and drawn by :func:`fsds_guidance.control.draw_control_map`. The renders
    (resized to ``image_size``) and control maps go to :class:`fsds_guidance.FSDS`.

    Args:
        config: ``GuidanceConfig`` (model ids/dirs, ``guidance_scale``, ``controlnet_scale``,
            ``mode`` ``"dsds"``/``"fsds"`` or ``"sds"``, ``dtype``).
        head: the ``FlameModel`` (for ``faces`` and ``landmark_embedding``).
        device: where the diffusion models run.
        models: already-built ``GuidanceModels`` (e.g. ``fsds_guidance.testing.tiny_components()``);
            ``None`` loads them with ``load_guidance_models``.
        prompt: the text prompt (the trainer sets it when ``None``).
        image_size: resolution the renders are resized to (512 for SD 1.5; 64 for the tiny models).
        seed: seed of the guidance's own generator (timesteps, noise, VAE sampling).
        lambda_sds: weight of the F-SDS loss (``loss = λ_sds·loss_sds``).
    """

    def __init__(
        self,
        config: Any,
        head: Any,
        device: torch.device | str,
        models: Any | None = None,
        prompt: str | None = None,
        image_size: int = 512,
        seed: int = 0,
        lambda_sds: float = 1.0,
    ) -> None:
        from fsds_guidance import FSDS, FSDSConfig

        self.device = torch.device(device)
        if getattr(head, "landmark_embedding", None) is None:
            raise HeadStudioError(
                "F-SDS guidance needs MediaPipe landmarks on the head model; give a FLAME model with a "
                "landmark embedding (the procedural head has one) or use guidance.kind = 'image'."
            )
        self.head = head
        self.faces = head.faces.long().to(self.device)
        self.embedding = head.landmark_embedding.to(self.device)
        if models is None:
            models = self._load_models(config)
        self.models = models
        if hasattr(config, "to_fsds_config"):
            fcfg = config.to_fsds_config(image_size=int(image_size))
        else:
            mode = str(_cfg(config, "mode", "dsds")).lower()
            if mode not in ("dsds", "fsds", "sds"):
                raise HeadStudioError(f"guidance.mode = '{mode}' is unknown; use dsds (the paper) or sds.")
            fcfg = FSDSConfig(
                mode="sds" if mode == "sds" else "fsds",
                guidance_scale=float(_cfg(config, "guidance_scale", 7.5)),
                controlnet_scale=float(_cfg(config, "controlnet_scale", 1.5)),
                image_size=int(image_size),
            )
        self.fsds = FSDS(models, fcfg)
        self.image_size = int(image_size)
        self.prompt = prompt
        self.lambda_sds = float(lambda_sds)
        self.generator = torch.Generator(device=models.device).manual_seed(int(seed))

    def _load_models(self, config: Any) -> Any:
        from fsds_guidance import load_guidance_models
        from fsds_guidance.models import GuidanceModelError

        try:
            return load_guidance_models(
                base=_cfg(config, "base_model", None),
                controlnet=_cfg(config, "controlnet", None),
                controlnet_subfolder=_cfg(config, "controlnet_subfolder", "diffusion_sd15"),
                device=self.device,
                dtype=_resolve_dtype(_cfg(config, "dtype", "auto"), self.device),
                local_files_only=True if _cfg(config, "local_files_only", False) else None,
            )
        except GuidanceModelError as err:
            # fsds-guidance's message is several lines written for the Python API; the CLI's says
            # the same in one line, with the --set keys instead of load_guidance_models(...)
            first = (str(err).strip().splitlines() or ["could not load the guidance models"])[0].rstrip(".")
            base = _cfg(config, "base_model", "stablediffusionapi/realistic-vision-51")
            cn = _cfg(config, "controlnet", "CrucibleAI/ControlNetMediaPipeFace")
            sub = _cfg(config, "controlnet_subfolder", "diffusion_sd15")
            include = f" --include '{sub}/*'" if sub else ""
            raise HeadStudioError(
                f"{first}. Download them once (needs network, ~4 GB): `hf download {base}` and "
                f"`hf download {cn}{include}`, then run again; or use local copies with "
                "--set guidance.base_model=DIR --set guidance.controlnet=DIR "
                "(or HEADSTUDIO_SD_MODEL / HEADSTUDIO_CONTROLNET_MODEL)."
            ) from err

    # ------------------------------------------------------------------ state (checkpoints)
    def state_dict(self) -> dict[str, Any]:
        """The guidance's RNG state (saved in checkpoints so a resumed run continues exactly)."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.generator.set_state(state["generator"])

    # ------------------------------------------------------------------ control maps
    def control_maps(self, batch: TrainBatch, width: int, height: int) -> Tensor:
        """``[B, 3, S, S]`` control images of the batch (first camera of each pose) whose
        intrinsics are for ``width × height`` renders."""
        from fsds_guidance.control import (
            draw_control_map,
            embedded_normals,
            landmark_visibility,
            vertex_normals,
        )

        if batch.vertices is None:
            raise HeadStudioError("F-SDS guidance needs batch.vertices (the trainer fills them).")
        with torch.no_grad():
            verts = batch.vertices.detach().to(self.device).float()
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
            return draw_control_map(px, visible, self.embedding.landmark_indices.cpu(), size=self.image_size)

    def __call__(self, renders: Tensor, batch: TrainBatch, step: int) -> GuidanceOutput:
        """F-SDS loss of ``renders [B, 3, H, W]`` (0..1) for the batch's poses and cameras."""
        if not self.prompt:
            raise HeadStudioError("F-SDS guidance has no prompt; pass prompt= or give the trainer one.")
        control = self.control_maps(batch, renders.shape[-1], renders.shape[-2])
        out = self.fsds(
            renders.to(self.models.device),
            control,
            self.prompt,
            batch.azimuth_deg.reshape(-1)[: renders.shape[0]].cpu(),
            batch.elevation_deg.reshape(-1)[: renders.shape[0]].cpu(),
            step,
            generator=self.generator,
        )
        logs = {
            "loss_sds": float(out.loss.detach()),
            "grad_norm": float(out.grad_norm),
            "t_mean": float(out.timesteps.float().mean()),
        }
        loss = out.loss * self.lambda_sds
        return GuidanceOutput(loss=loss, skipped=bool(out.skipped), logs=logs, debug={"control": control})
