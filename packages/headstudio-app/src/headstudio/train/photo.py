"""Photo avatars: one photograph in, an animatable avatar of that person out (docs/METHOD.md,
"Photo avatars").

1. :func:`prepare_photo` reads the photo, finds and checks the face, fits the head (identity,
   the photo's expression, jaw, gaze, pose and focal length) and cuts the training views: the
   photo's own and its mirror, with the head mask. Every refusal happens here, before anything is
   written.
2. :func:`init_photo_avatar` gives a fresh avatar the fitted identity and colours it from the photo.
3. Training fits the photo's views through the mask (:class:`~.photo_guidance.PhotoGuidance`),
   with F-SDS on random views when a prompt and diffusion weights are given.

The avatar's canonical face is neutral: the fitted expression, jaw and pose only describe the
photo's view. A run records the photo's path and SHA-256 (``photo.json``; the avatar's metadata
records the digest, never the photo); resuming reads the photo again and refuses another file.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from flame_core import FlameModel, FlameParams

from .._atomic import atomic_output
from ..avatar import Avatar
from ..config import HeadStudioConfig
from ..errors import HeadStudioError
from .photo_fit import PhotoFit, fit_photo
from .photo_guidance import PRIOR_WEIGHT, PhotoGuidance
from .photo_init import ColourInit, colour_from_photo
from .photo_input import Photo, PhotoFace, choose_face, find_faces, read_photo
from .photo_views import PhotoView, mirror_view, photo_view

__all__ = [
    "photo_config",
    "PHOTO_SIZE",
    "PHOTO_STEPS",
    "PhotoSetup",
    "prior_views",
    "square_on",
    "orbit",
    "prepare_photo",
    "init_photo_avatar",
    "PHOTO_RECORD",
    "load_photo_record",
    "restore_photo",
]

log = logging.getLogger(__name__)

#: initial opacity of a photo avatar's Gaussians (the paper's 0.1 suits F-SDS, which sees every
#: side; a photo sees one, and a translucent back shows the face through the head)
INIT_OPACITY = 0.9
#: the run folder's record of the photo (path, digest, face, fit)
PHOTO_RECORD = "photo.json"


@dataclass
class PhotoSetup:
    """A photo ready to train on.

    Attributes:
        photo: the decoded photo; face: the face built; face_number: its number from the image's
        left (1-based) among ``num_faces``; fit: the head fitted to it; view / mirror: the
        training views.
    """

    photo: Photo
    face: PhotoFace
    face_number: int
    num_faces: int
    fit: PhotoFit
    view: PhotoView
    mirror: PhotoView

    def guidance(self, priors: Sequence[PhotoView] = (), mirror: bool = True) -> PhotoGuidance:
        """The photometric guidance of the photo's view (and its mirror), with ``priors``."""
        return PhotoGuidance([self.view, self.mirror] if mirror else [self.view], priors=priors)

    def provenance(self) -> dict[str, Any]:
        """What the avatar's metadata records: that it was made from a photo, and the photo's
        SHA-256 (never the photo, nor its path)."""
        return {"kind": "photograph", "sha256": self.photo.sha256, "fit": self.fit.report()}

    def record(self) -> dict[str, Any]:
        """``photo.json`` of the run: enough to rebuild the same views on resume."""
        f = self.fit
        return {
            "image": str(self.photo.path),
            "sha256": self.photo.sha256,
            "face": self.face_number,
            "num_faces": self.num_faces,
            "size": self.view.size[0],
            "fit": {
                "shape": f.shape.reshape(-1).tolist(),
                "view": {k: v.reshape(-1).tolist() for k, v in f.view.items()},
                "focal": f.focal,
                "translation": f.translation.tolist(),
                "image_size": list(f.image_size),
                "error_px": f.error_px,
            },
            "report": f.report(),
        }


def _number_from_left(faces: list[PhotoFace], face: PhotoFace) -> int:
    return sorted(faces, key=lambda x: x.centre_x).index(face) + 1


def prepare_photo(
    image: str | Path,
    head: FlameModel,
    size: int,
    *,
    face: int | None = None,
    quick: bool = False,
    landmarker: str | Path | None = None,
) -> PhotoSetup:
    """Read, check and fit a photo; cut its training views at ``size x size``.

    Raises:
        HeadStudioError: unreadable photo, no face, a face under 64 px or turned too far, a face
            number out of range, or a head without the MediaPipe embedding (one line each).
    """
    photo = read_photo(image)
    faces = find_faces(photo, landmarker)
    chosen = choose_face(faces, photo.path.name, face)
    fit = fit_photo(head, chosen, photo.size, quick=quick)
    view = photo_view(photo, chosen, fit, head, size)
    return PhotoSetup(
        photo, chosen, _number_from_left(faces, chosen), len(faces), fit, view, mirror_view(view)
    )


def restore_photo(
    record: dict[str, Any], head: FlameModel, landmarker: str | Path | None = None
) -> PhotoSetup:
    """The setup of a run's ``photo.json``: the photo read again (it must be the same file) and
    the recorded fit, so a resumed run trains on the same views.

    Raises:
        HeadStudioError: the photo is gone or changed.
    """
    path = Path(record["image"])
    photo = read_photo(path)
    if photo.sha256 != record["sha256"]:
        raise HeadStudioError(
            f"the photo '{path}' changed since the run started (SHA-256 {photo.sha256[:12]}…, the run's "
            f"{str(record['sha256'])[:12]}…); put the original back to resume, or start a new run.",
            argument="image",
        )
    faces = find_faces(photo, landmarker)
    chosen = choose_face(faces, photo.path.name, int(record["face"]) if len(faces) > 1 else None)
    r = record["fit"]
    fit = PhotoFit(
        shape=torch.tensor(r["shape"], dtype=torch.float32)[None],
        view={k: torch.tensor(v, dtype=torch.float32)[None] for k, v in r["view"].items()},
        focal=float(r["focal"]),
        translation=torch.tensor(r["translation"], dtype=torch.float32),
        image_size=(int(r["image_size"][0]), int(r["image_size"][1])),
        error_px=float(r["error_px"]),
        error_per_landmark=torch.zeros(0).numpy(),
        landmark_ids=torch.zeros(0, dtype=torch.long).numpy(),
    )
    view = photo_view(photo, chosen, fit, head, int(record["size"]))
    return PhotoSetup(photo, chosen, int(record["face"]), len(faces), fit, view, mirror_view(view))


def write_photo_record(setup: PhotoSetup, run_dir: str | Path) -> Path:
    """Write ``run_dir/photo.json`` atomically."""
    path = Path(getattr(run_dir, "path", run_dir)) / PHOTO_RECORD  # a RunFolder or a path
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(setup.record(), indent=1))
    return path


def load_photo_record(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's ``photo.json``, or ``None`` for a run not made from a photo.

    Raises:
        HeadStudioError: the file exists but is not a readable record.
    """
    path = Path(getattr(run_dir, "path", run_dir)) / PHOTO_RECORD
    if not path.exists():
        return None
    try:
        rec = json.loads(path.read_text())
        for k in ("image", "sha256", "face", "size", "fit"):
            rec[k]  # noqa: B018 - presence check
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise HeadStudioError(
            f"'{path}' is damaged ({type(err).__name__}); start a new run from the photo.",
            argument="output_dir",
        ) from err
    return rec


@torch.no_grad()
def init_photo_avatar(avatar: Avatar, setup: PhotoSetup) -> ColourInit:
    """Give a fresh ``avatar`` the fitted identity and the photo's colours; record provenance."""
    shape = setup.fit.shape.to(avatar.shape)
    n = min(shape.shape[1], avatar.shape.shape[1])
    avatar.shape.data.zero_()
    avatar.shape.data[:, :n] = shape[:, :n]
    info = colour_from_photo(avatar, setup.view)
    # opaque from the start: what no view trains (the back, under the jaw) must hide what is
    # behind it instead of showing the face through the head
    avatar.opacity_logits.data.fill_(math.log(INIT_OPACITY / (1.0 - INIT_OPACITY)))
    avatar.metadata["source"] = setup.provenance()
    return info


#: offline photo runs: training resolution (the crop) and steps
PHOTO_SIZE = 256
PHOTO_STEPS = 300
#: the offline photo run's Gaussian budget
PHOTO_MAX_GAUSSIANS = 60_000


def photo_config(config: HeadStudioConfig, steps: int, size: int, with_sds: bool) -> HeadStudioConfig:
    """``config`` adapted to a photo run (a copy).

    Offline (no F-SDS) the run is a short photometric fit, like the demo's: its own learning
    rates for colour, opacity and scale, two Gaussians per triangle, the densify schedule
    compressed into the run, and the identity fixed by the landmark fit (``shape_stop_step = 0``:
    a single view cannot separate the head's shape from its texture). With F-SDS the configured
    schedule is kept and only the identity is fixed.
    """
    cfg = copy.deepcopy(config)
    t = cfg.train
    t.shape_stop_step = 0
    if with_sds:
        return cfg
    t.steps, t.resolution = int(steps), int(size)
    t.guidance_resolution = max(8, (int(size) // 8) * 8)
    t.lr_color, t.lr_opacity, t.lr_scale = 0.03, 0.03, 3e-3
    t.preview_every = max(1, steps // 4)
    t.checkpoint_every = max(1, steps // 3)
    t.log_every = max(1, steps // 50)
    cfg.init.points_per_face = 2
    cfg.guidance.kind = "image"
    d = cfg.densify
    # a CPU-sized budget: the photo's one view at 256 px needs far fewer than F-SDS's 500,000, and
    # every Gaussian costs render time
    d.max_gaussians = min(d.max_gaussians, PHOTO_MAX_GAUSSIANS)
    every = max(1, steps // 6)
    d.densify_from, d.densify_every, d.densify_until = every, every, 3 * every
    d.prune_from, d.prune_every, d.prune_until = 4 * every, every, 4 * every
    d.screen_size_from = every
    return cfg


#: prior views: how many, and the azimuth range they cover (degrees from the front; the photo
#: and its mirror cover the rest)
NUM_PRIOR_VIEWS = 16
_PRIOR_AZIMUTH = (70.0, 290.0)
_PRIOR_ELEVATION = (-15.0, 30.0)


def square_on(viewmat: torch.Tensor) -> torch.Tensor:
    """``viewmat`` turned to look at the unturned head square on (same distance and centre)."""
    front = viewmat.clone()
    front[:3, :3] = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=viewmat.dtype))
    return front


def orbit(front: torch.Tensor, azimuth_deg: float, elevation_deg: float = 0.0) -> torch.Tensor:
    """``front`` (a camera looking at the head square on) orbited around the head's centre."""
    a, e = math.radians(azimuth_deg), math.radians(elevation_deg)
    ry = torch.tensor([[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]])
    rx = torch.tensor([[1.0, 0.0, 0.0], [0.0, math.cos(e), -math.sin(e)], [0.0, math.sin(e), math.cos(e)]])
    vm = front.clone()
    vm[:3, :3] = front[:3, :3] @ ry @ rx
    return vm


@torch.no_grad()
def _render_rgba(
    avatar: Avatar,
    viewmat: torch.Tensor,
    K: torch.Tensor,
    size: tuple[int, int],
    pose: FlameParams,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rgb [H, W, 3] un-premultiplied, alpha [H, W])`` of ``avatar`` seen by one camera (CPU)."""
    w, h = size
    dev = avatar.means.device
    r = avatar.render(viewmat[None].to(dev), K[None].to(dev), w, h, pose.to(dev), background=(0.0, 0.0, 0.0))
    alpha = r.alpha[0, 0, ..., 0].clamp(0, 1).cpu()
    return (r.rgb[0, 0].cpu() / alpha[..., None].clamp_min(1e-4)).clamp(0, 1), alpha


@torch.no_grad()
def prior_views(
    avatar: Avatar, setup: PhotoSetup, num: int = NUM_PRIOR_VIEWS, seed: int = 0
) -> list[PhotoView]:
    """The freshly coloured ``avatar`` seen from ``num`` cameras around its side and back, at
    the neutral face: targets that keep what no photo view trains as it was initialised.

    The cameras are the photo's (distance, focal length) moved to azimuths evenly spread over
    70-290 deg with random elevations; each target's mask is the render's own alpha. A resumed run
    rebuilds the same views from the same seed (the initialisation is deterministic).
    """
    v = setup.view
    front = square_on(v.viewmat)
    gen = torch.Generator().manual_seed(int(seed) + 77)
    lo, hi = _PRIOR_AZIMUTH
    out: list[PhotoView] = []
    neutral = {k: torch.zeros_like(x) for k, x in v.flame.items() if k != "shape"}
    for i in range(num):
        az = lo + (hi - lo) * (i + 0.5) / num
        el = float(
            _PRIOR_ELEVATION[0] + (_PRIOR_ELEVATION[1] - _PRIOR_ELEVATION[0]) * torch.rand(1, generator=gen)
        )
        vm = orbit(front, az, el)
        rgb, alpha = _render_rgba(avatar, vm, v.K, v.size, FlameParams.from_kwargs(neutral))
        out.append(
            PhotoView(
                image=rgb,
                mask=alpha,
                valid=torch.ones_like(alpha),
                viewmat=vm,
                K=v.K.clone(),
                flame=dict(neutral),
            )
        )
    return out


def start_photo_run(
    config: HeadStudioConfig,
    setup: PhotoSetup,
    output_dir: str | Path,
    head: FlameModel,
    *,
    prompt: str | None = None,
    sds: Any = None,
    progress: bool = True,
) -> Any:
    """A fresh photo run, ready to ``train()``: the trainer, its avatar with the fitted identity
    and the photo's colours, the prior views, and ``photo.json`` written.

    Args:
        config: a :func:`photo_config` configuration.
        sds: an F-SDS guidance to combine with the photo's (with a prompt and weights), or ``None``.
    """
    from .photo_guidance import PhotoFSDSGuidance
    from .trainer import Trainer

    trainer = Trainer.new(config, prompt, output_dir, guidance=setup.guidance(), head=head, progress=progress)
    init_photo_avatar(trainer.avatar, setup)
    views = [fill_unscored(v, trainer.avatar) for v in (setup.view, setup.mirror)]
    photo = PhotoGuidance(views, priors=prior_views(trainer.avatar, setup, seed=int(config.train.seed)))
    guidance = photo if sds is None else PhotoFSDSGuidance(photo, sds)
    guidance.set_default_prompt(prompt)
    trainer.guidance = guidance.to(trainer.device)
    write_photo_record(setup, output_dir)
    return trainer


@torch.no_grad()
def fill_unscored(view: PhotoView, avatar: Avatar, weight: float = PRIOR_WEIGHT) -> PhotoView:
    """``view`` with its unscored pixels (outside the photo; where mesh and mask disagree) given
    the freshly coloured ``avatar``'s own render as the target, at ``weight``: what the photo
    cannot say there stays as initialised instead of drifting."""
    rgb, alpha = _render_rgba(avatar, view.viewmat, view.K, view.size, view.params())
    keep = view.valid > 0.999
    return replace(
        view,
        image=torch.where(keep[..., None], view.image, rgb),
        mask=torch.where(keep, view.mask, alpha),
        valid=torch.where(keep, torch.ones_like(alpha), torch.full_like(alpha, float(weight))),
    )
