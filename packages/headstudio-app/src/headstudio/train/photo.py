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

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from flame_core import FlameModel

from .._atomic import atomic_output
from ..avatar import Avatar
from ..errors import HeadStudioError
from .photo_fit import PhotoFit, fit_photo
from .photo_guidance import PhotoGuidance
from .photo_init import ColourInit, colour_from_photo
from .photo_input import Photo, PhotoFace, choose_face, find_faces, read_photo
from .photo_views import PhotoView, mirror_view, photo_view

__all__ = ["PhotoSetup", "prepare_photo", "init_photo_avatar", "PHOTO_RECORD", "load_photo_record", "restore_photo"]

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

    def guidance(self, mirror: bool = True) -> PhotoGuidance:
        """The photometric guidance of the photo's view (and its mirror)."""
        return PhotoGuidance([self.view, self.mirror] if mirror else [self.view])

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
    return PhotoSetup(photo, chosen, _number_from_left(faces, chosen), len(faces), fit, view, mirror_view(view))


def restore_photo(record: dict[str, Any], head: FlameModel, landmarker: str | Path | None = None) -> PhotoSetup:
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
    path = Path(run_dir) / PHOTO_RECORD
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(setup.record(), indent=1))
    return path


def load_photo_record(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's ``photo.json``, or ``None`` for a run not made from a photo.

    Raises:
        HeadStudioError: the file exists but is not a readable record.
    """
    path = Path(run_dir) / PHOTO_RECORD
    if not path.exists():
        return None
    try:
        rec = json.loads(path.read_text())
        for k in ("image", "sha256", "face", "size", "fit"):
            rec[k]  # noqa: B018 - presence check
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise HeadStudioError(
            f"'{path}' is damaged ({type(err).__name__}); start a new run from the photo.", argument="output_dir"
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
