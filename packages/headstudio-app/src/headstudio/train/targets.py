"""Images with known cameras and FLAME parameters: what the image guidance fits.

A :class:`TargetSet` is saved as a directory: ``targets.npz`` (cameras, FLAME parameters,
backgrounds, the image list) and ``images/000000.png ...`` (8-bit RGB), so captured images of
the same size can replace the rendered ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .._atomic import atomic_output
from ..errors import HeadStudioError

__all__ = ["TargetSet", "TARGETS_FILE"]

TARGETS_FILE = "targets.npz"
TARGETS_FORMAT = 1


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
