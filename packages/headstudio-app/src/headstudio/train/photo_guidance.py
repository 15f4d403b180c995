"""Photometric guidance from one photograph: the photo's view and its mirror, through the head mask.

Each step renders the avatar at the photo's view and at its mirror view (:mod:`.photo_views`),
each over a random background colour. The target is the photo composited over the same colour
through the head mask, so a background pixel asks the avatar to be transparent there, whatever
the colour: the background is never baked into the avatar. Pixels the crop took from outside the
photo are not scored. The terms are the 3DGS photometric loss of :class:`ImageGuidance`
(``loss_l1``, ``loss_ssim``), the mirror view weighted by :data:`MIRROR_WEIGHT`.

What neither view shows (the back, the far sides, under the chin) is held by prior views: the
freshly coloured avatar rendered once from the side and the back (:func:`~.photo.prior_views`),
one drawn per step at :data:`PRIOR_WEIGHT`. Without them a Gaussian no view sees still gets tiny
gradients through the ones in front of it, and Adam, which normalises step sizes, turns those
into full-size random steps: the back of the head drifts into noise.

With a prompt and diffusion weights, :class:`PhotoFSDSGuidance` adds F-SDS on random views
(``loss_sds``) to the same step: the photo anchors identity, the diffusion model fills in what
the photo does not show and restyles it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..cameras import camera_angles
from .batch_sampler import BatchSampler, TrainBatch
from .guidance import Guidance, GuidanceOutput
from .metrics import ssim
from .photo_views import PhotoView

__all__ = ["PhotoGuidance", "PhotoFSDSGuidance", "MIRROR_WEIGHT", "PRIOR_WEIGHT"]

#: weight of the mirror view against the photo's own (asymmetries of hair, light and expression
#: make it weaker evidence)
MIRROR_WEIGHT = 0.5
#: weight of a prior view (the initial avatar seen from the side or back, see
#: :func:`~.photo.prior_views`): enough to hold what no photo view trains, weak against the photo
PRIOR_WEIGHT = 0.3


def _stack_flame(views: Sequence[PhotoView]) -> dict[str, Tensor]:
    keys = [k for k in views[0].flame if k != "shape"]
    return {k: torch.cat([v.flame[k].reshape(1, -1).float() for v in views]) for k in keys}


class PhotoGuidance(Guidance):
    """Fit the avatar to the photo's view(s) through the head mask.

    Args:
        views: the photo's view, then optionally its mirror (:func:`~.photo_views.mirror_view`).
        weights: one per view (default 1 for the photo, :data:`MIRROR_WEIGHT` for a mirror).
    """

    loss_terms = ("loss_l1", "loss_ssim")

    def __init__(
        self,
        views: Sequence[PhotoView],
        weights: Sequence[float] | None = None,
        priors: Sequence[PhotoView] = (),
        prior_weight: float = PRIOR_WEIGHT,
        priors_per_step: int = 1,
    ) -> None:
        if not views:
            raise ValueError("PhotoGuidance needs at least one view")
        w = list(weights) if weights is not None else [MIRROR_WEIGHT if v.mirrored else 1.0 for v in views]
        if len(w) != len(views):
            raise ValueError(f"{len(w)} weights for {len(views)} views")
        self.num_photo_views = len(views)
        self.priors_per_step = min(int(priors_per_step), len(priors))
        self.views = [*views, *priors]
        self.weights = torch.tensor([float(x) for x in w] + [float(prior_weight)] * len(priors))
        self._images = (
            torch.stack([v.image for v in self.views]).permute(0, 3, 1, 2).contiguous()
        )  # [V,3,H,W]
        self._masks = torch.stack(
            [torch.stack([v.mask, v.valid]) for v in self.views]
        ).contiguous()  # [V,2,H,W]
        self._viewmats = torch.stack([v.viewmat for v in self.views]).float()
        self._Ks = torch.stack([v.K for v in self.views]).float()
        self._flame = _stack_flame(self.views)
        self._size = self.views[0].size
        self._resized: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}

    @property
    def num_views(self) -> int:
        return len(self.views)

    def to(self, device: torch.device | str) -> PhotoGuidance:
        self._images = self._images.to(device)
        self._masks = self._masks.to(device)
        self._resized = {}
        return self

    def batch_for(
        self, indices: Tensor, width: int, height: int, backgrounds: Tensor | None = None
    ) -> TrainBatch:
        """The :class:`TrainBatch` of views ``indices [B]`` at ``width x height``."""
        idx = indices.long().cpu()
        W, H = self._size
        ks = self._Ks[idx].clone()
        ks[:, 0] *= width / W
        ks[:, 1] *= height / H
        vm = self._viewmats[idx]
        az, el = camera_angles(vm)
        bg = backgrounds if backgrounds is not None else torch.ones(len(idx), 3)
        return TrainBatch(
            viewmats=vm[:, None],
            Ks=ks[:, None],
            flame={k: v[idx] for k, v in self._flame.items()},
            azimuth_deg=az,
            elevation_deg=el,
            backgrounds=bg[:, None],
            target_indices=idx,
        )

    def sample_batch(self, sampler: BatchSampler, batch_size: int, generator: torch.Generator) -> TrainBatch:
        """The photo's views, then ``priors_per_step`` prior views drawn from ``generator``, each
        over a random background colour (``batch_size`` is the number of random views of a
        combined guidance, not of this one)."""
        idx = torch.arange(self.num_photo_views)
        n_prior = self.num_views - self.num_photo_views
        if self.priors_per_step > 0:
            pick = torch.randperm(n_prior, generator=generator)[: self.priors_per_step] + self.num_photo_views
            idx = torch.cat([idx, pick])
        bg = torch.rand(len(idx), 3, generator=generator)
        return self.batch_for(idx, sampler.width, sampler.height, bg)

    @property
    def batch_len(self) -> int:
        """Views in each of this guidance's batches."""
        return self.num_photo_views + self.priors_per_step

    def targets(self, indices: Tensor, height: int, width: int) -> tuple[Tensor, Tensor, Tensor]:
        """``(images [B,3,h,w], mask [B,1,h,w], weight [B,1,h,w])`` of views ``indices``."""
        key = (height, width)
        if key not in self._resized:
            imgs, masks = self._images, self._masks
            if (imgs.shape[-2], imgs.shape[-1]) != key:
                imgs = F.interpolate(imgs, size=key, mode="area")
                masks = F.interpolate(masks, size=key, mode="area")
            self._resized[key] = (imgs.contiguous(), masks.contiguous())
        imgs, masks = self._resized[key]
        i = indices.to(imgs.device).long()
        m = masks[i]
        return imgs[i], m[:, :1], m[:, 1:]

    def __call__(self, renders: Tensor, batch: TrainBatch, step: int, vertices: Tensor) -> GuidanceOutput:
        """Masked photometric terms of ``renders [B, 3, H, W]`` against the photo's views."""
        if batch.target_indices is None:
            raise ValueError("photo guidance needs batches from PhotoGuidance.sample_batch")
        img, mask, weight = self.targets(batch.target_indices, renders.shape[-2], renders.shape[-1])
        img, mask, weight = img.to(renders), mask.to(renders), weight.to(renders)
        bg = batch.backgrounds[:, 0, :, None, None].to(renders)
        target = mask * img + (1.0 - mask) * bg
        # unscored pixels (weight 0): the render itself, so SSIM sees no difference there either
        scored = (weight > 0).to(renders)
        target = scored * target + (1.0 - scored) * renders.detach()
        w = self.weights.to(renders)[batch.target_indices.to(renders.device)]
        per_view_l1 = ((renders - target).abs() * weight).flatten(1).sum(1) / (
            3 * scored.flatten(1).sum(1)
        ).clamp_min(1)
        l1 = (w * per_view_l1).sum() / w.sum()
        dissim = torch.stack([1.0 - ssim(renders[i : i + 1], target[i : i + 1]) for i in range(len(renders))])
        loss_ssim = (w * dissim).sum() / w.sum()
        return GuidanceOutput(
            losses={"loss_l1": l1, "loss_ssim": loss_ssim},
            logs={"photo_l1": float(per_view_l1[0].detach())},
            debug={"target": target.detach()},
        )


class PhotoFSDSGuidance(Guidance):
    """The photo's views (:class:`PhotoGuidance`) and F-SDS on random views, in one step.

    The batch is the photo's views followed by ``batch_size`` random views from the trainer's
    sampler; each part is scored by its own guidance and the terms are summed by name.
    """

    loss_terms = ("loss_l1", "loss_ssim", "loss_sds")

    def __init__(self, photo: PhotoGuidance, sds: Guidance) -> None:
        self.photo, self.sds = photo, sds

    def set_default_prompt(self, prompt: str | None) -> None:
        self.sds.set_default_prompt(prompt)

    def state_dict(self) -> dict[str, Any]:
        return {"sds": self.sds.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.sds.load_state_dict(state.get("sds", {}))

    def to(self, device: torch.device | str) -> PhotoFSDSGuidance:
        self.photo.to(device)
        self.sds.to(device)
        return self

    def sample_batch(self, sampler: BatchSampler, batch_size: int, generator: torch.Generator) -> TrainBatch:
        p = self.photo.sample_batch(sampler, batch_size, generator)
        r = self.sds.sample_batch(sampler, batch_size, generator)
        keys = sorted(set(p.flame) | set(r.flame))
        flame: dict[str, Tensor] = {}
        for k in keys:
            a = p.flame.get(k)
            b = r.flame.get(k)
            if a is None or b is None or a.shape[1] != b.shape[1]:
                width = max(x.shape[1] for x in (a, b) if x is not None)
                a = (
                    F.pad(a, (0, width - a.shape[1]))
                    if a is not None
                    else torch.zeros(len(p.viewmats), width)
                )
                b = (
                    F.pad(b, (0, width - b.shape[1]))
                    if b is not None
                    else torch.zeros(len(r.viewmats), width)
                )
            flame[k] = torch.cat([a.to(b), b])
        return TrainBatch(
            viewmats=torch.cat([p.viewmats, r.viewmats.to(p.viewmats)]),
            Ks=torch.cat([p.Ks, r.Ks.to(p.Ks)]),
            flame=flame,
            azimuth_deg=torch.cat([p.azimuth_deg, r.azimuth_deg.to(p.azimuth_deg)]),
            elevation_deg=torch.cat([p.elevation_deg, r.elevation_deg.to(p.elevation_deg)]),
            backgrounds=torch.cat([p.backgrounds, r.backgrounds.to(p.backgrounds)]),
            target_indices=torch.cat(
                [p.target_indices, torch.full((len(r.viewmats),), -1, dtype=torch.long)]
            ),
        )

    def __call__(self, renders: Tensor, batch: TrainBatch, step: int, vertices: Tensor) -> GuidanceOutput:
        n = self.photo.batch_len
        assert batch.target_indices is not None
        head = TrainBatch(
            viewmats=batch.viewmats[:n],
            Ks=batch.Ks[:n],
            flame={k: v[:n] for k, v in batch.flame.items()},
            azimuth_deg=batch.azimuth_deg[:n],
            elevation_deg=batch.elevation_deg[:n],
            backgrounds=batch.backgrounds[:n],
            target_indices=batch.target_indices[:n],
        )
        tail = TrainBatch(
            viewmats=batch.viewmats[n:],
            Ks=batch.Ks[n:],
            flame={k: v[n:] for k, v in batch.flame.items()},
            azimuth_deg=batch.azimuth_deg[n:],
            elevation_deg=batch.elevation_deg[n:],
            backgrounds=batch.backgrounds[n:],
        )
        a = self.photo(renders[:n], head, step, vertices[:n])
        b = self.sds(renders[n:], tail, step, vertices[n:])
        return GuidanceOutput(
            losses={**a.losses, **b.losses},
            skipped=b.skipped,
            logs={**a.logs, **b.logs},
            debug={**{f"photo_{k}": v for k, v in a.debug.items()}, **b.debug},
        )
