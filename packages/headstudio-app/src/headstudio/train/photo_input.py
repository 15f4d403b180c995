"""A photograph as the input of a photo avatar: read it, find the face, refuse what cannot work.

Everything here runs before any training and writes nothing, so a refused photo leaves no trace:

- :func:`read_photo` decodes any image Pillow reads (EXIF orientation applied; greyscale, palette,
  CMYK, 16-bit and alpha images converted to 8-bit RGB; an alpha channel kept as a mask of what the
  photo shows) and refuses an unreadable or truncated file in one line.
- :func:`find_faces` runs MediaPipe's FaceLandmarker (IMAGE mode, several faces) and returns each
  face's 478 landmarks, its 52 blendshape scores and its head rotation.
- :func:`choose_face` picks the face to build (the largest, or the one the user numbered) and
  refuses a face that is too small or turned too far for the landmark fit.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..animate.face_track import NUM_LANDMARKS, resolve_landmarker
from ..errors import HeadStudioError

__all__ = [
    "MIN_FACE_PX",
    "MAX_YAW_DEG",
    "MAX_PITCH_DEG",
    "Photo",
    "PhotoFace",
    "read_photo",
    "find_faces",
    "choose_face",
]

log = logging.getLogger(__name__)

#: smallest face (the landmarks' bounding box, larger side) the fit accepts, in pixels: below it
#: MediaPipe's landmarks are too coarse for the lids and lips, and the photo has too few pixels to
#: texture the face.
MIN_FACE_PX = 64
#: largest head yaw the fit accepts (degrees from frontal). Past ~55-60 deg the far half of the face
#: is hidden and MediaPipe places its landmarks on the silhouette instead of the features, so the
#: fitted identity is wrong without any error; a three-quarter view (45 deg) still works.
MAX_YAW_DEG = 55.0
#: largest head pitch (looking up or down) accepted, degrees, for the same reason.
MAX_PITCH_DEG = 45.0
#: the most faces looked for in one photo
_MAX_FACES = 8


@dataclass
class Photo:
    """A decoded photograph.

    Attributes:
        path: where it was read from.
        rgb: ``[H, W, 3]`` uint8, EXIF orientation applied.
        alpha: ``[H, W]`` float32 in 0..1 when the file had an alpha channel (what the photo shows),
            else ``None``.
        sha256: hex digest of the file's bytes (the avatar records this, never the photo).
        notes: one-line remarks about conversions made (rotation, colour mode), for the log.
    """

    path: Path
    rgb: np.ndarray
    alpha: np.ndarray | None
    sha256: str
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        """``(W, H)`` in pixels."""
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])


@dataclass(eq=False)
class PhotoFace:
    """One face MediaPipe found in a photo.

    Attributes:
        landmarks: ``[478, 2]`` float32 pixels (x right, y down) in the photo.
        depth: ``[478]`` float32 MediaPipe's relative landmark depth (image-width units; smaller is
            nearer the camera).
        blendshapes: ``{name: score}`` MediaPipe's 52 blendshape scores.
        yaw_deg / pitch_deg / roll_deg: the head's rotation from MediaPipe's facial transformation
            (yaw > 0: the face turned towards the image's left side, i.e. the subject's right).
    """

    landmarks: np.ndarray
    depth: np.ndarray
    blendshapes: dict[str, float]
    yaw_deg: float
    pitch_deg: float
    roll_deg: float

    @property
    def box(self) -> tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)``: the landmarks' bounding box in pixels."""
        lo = self.landmarks.min(0)
        hi = self.landmarks.max(0)
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])

    @property
    def size_px(self) -> float:
        """The face's size: the larger side of the landmarks' bounding box, in pixels."""
        x0, y0, x1, y1 = self.box
        return max(x1 - x0, y1 - y0)

    @property
    def centre_x(self) -> float:
        x0, _, x1, _ = self.box
        return 0.5 * (x0 + x1)


def _to_rgb(im: Any, notes: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """Pillow image of any mode -> ``(rgb [H,W,3] uint8, alpha [H,W] float32 | None)``."""
    mode = im.mode
    alpha: np.ndarray | None = None
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        top = 65535.0 if mode.startswith("I;16") or (mode == "I" and hi > 255) else 255.0
        if mode == "F":
            top = hi if hi > 1.0 else 1.0
            lo = min(lo, 0.0)
        g = np.clip((a - min(lo, 0.0)) / max(top - min(lo, 0.0), 1e-12) * 255.0 + 0.5, 0, 255).astype(
            np.uint8
        )
        notes.append(f"{mode} greyscale converted to 8-bit RGB")
        return np.repeat(g[..., None], 3, axis=2), None
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = rgba[..., 3]
        # composite over mid grey: neither white nor black reads as skin or hair
        rgb = rgba[..., :3] * alpha[..., None] + 0.5 * (1.0 - alpha[..., None])
        notes.append("alpha channel kept as the mask of what the photo shows")
        return (rgb * 255.0 + 0.5).astype(np.uint8), alpha.astype(np.float32)
    if mode != "RGB":
        notes.append(f"{mode} image converted to RGB")
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8).copy(), None


def read_photo(path: str | Path) -> Photo:
    """Decode a photograph.

    Raises:
        HeadStudioError: the file is missing, not an image, truncated or empty (one line, naming
            the file and what to give instead).
    """
    from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise HeadStudioError(
            f"photo '{p}' does not exist; give the path of a JPEG or PNG photograph of a face.",
            argument="image",
        )
    data = p.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    notes: list[str] = []
    prev = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a cut-off download must be refused, not half-grey
    try:
        with Image.open(p) as im:
            im.load()
            orientation = im.getexif().get(0x0112, 1)
            im2 = ImageOps.exif_transpose(im)
            if orientation not in (None, 1):
                notes.append(f"EXIF orientation {orientation} applied")
            rgb, alpha = _to_rgb(im2 if im2 is not None else im, notes)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        first = " ".join(str(err).split()).split(". ")[0] or type(err).__name__
        raise HeadStudioError(
            f"photo '{p}' cannot be read ({first}); the file is not an image Pillow can decode, or it is "
            "truncated: give a complete JPEG or PNG photograph.",
            argument="image",
        ) from err
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = prev
    if rgb.ndim != 3 or rgb.shape[0] < 2 or rgb.shape[1] < 2:
        raise HeadStudioError(
            f"photo '{p}' is empty ({rgb.shape}); give a photograph of a face.", argument="image"
        )
    for n in notes:
        log.info("photo %s: %s", p.name, n)
    return Photo(p, rgb, alpha, digest, notes)


def _rotation_angles(matrix: np.ndarray) -> tuple[float, float, float]:
    """Yaw, pitch, roll in degrees from MediaPipe's 4x4 facial transformation (canonical face ->
    camera; the canonical face looks along +z, OpenGL camera axes: y up, the camera looks down -z)."""
    r = np.asarray(matrix, dtype=np.float64)[:3, :3]
    r = r / max(np.linalg.norm(r[:, 0]), 1e-12)
    yaw = math.degrees(math.atan2(r[0, 2], r[2, 2]))
    pitch = math.degrees(math.asin(float(np.clip(-r[1, 2], -1.0, 1.0))))
    roll = math.degrees(math.atan2(r[1, 0], r[1, 1]))
    return yaw, pitch, roll


def find_faces(photo: Photo | np.ndarray, model_path: str | Path | None = None) -> list[PhotoFace]:
    """Every face MediaPipe's FaceLandmarker finds (up to 8), largest first.

    Args:
        photo: a :class:`Photo` or an ``[H, W, 3]`` uint8 RGB array.
        model_path: the ``face_landmarker.task`` file (see ``face_track.resolve_landmarker``).
    """
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    rgb = photo.rgb if isinstance(photo, Photo) else np.asarray(photo)
    h, w = rgb.shape[:2]
    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(resolve_landmarker(model_path))),
        running_mode=vision.RunningMode.IMAGE,
        num_faces=_MAX_FACES,
        output_face_blendshapes=True,
        output_facial_transformation_matrixes=True,
    )
    image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb[..., :3]))
    # closed inside the `with` (closing it at interpreter exit crashes)
    with vision.FaceLandmarker.create_from_options(options) as landmarker:
        res = landmarker.detect(image)
    faces: list[PhotoFace] = []
    for i, pts in enumerate(res.face_landmarks or []):
        if len(pts) < NUM_LANDMARKS:
            continue
        xy = np.array([(q.x * w, q.y * h) for q in pts[:NUM_LANDMARKS]], np.float32)
        z = np.array([q.z for q in pts[:NUM_LANDMARKS]], np.float32)
        scores = {
            c.category_name: float(c.score) for c in (res.face_blendshapes[i] if res.face_blendshapes else [])
        }
        mats = res.facial_transformation_matrixes or []
        yaw, pitch, roll = _rotation_angles(np.asarray(mats[i])) if i < len(mats) else (0.0, 0.0, 0.0)
        faces.append(PhotoFace(xy, z, scores, yaw, pitch, roll))
    faces.sort(key=lambda f: -f.size_px)
    return faces


def choose_face(faces: list[PhotoFace], photo_name: str, face: int | None = None) -> PhotoFace:
    """The face to build: ``face`` (1-based, counted from the image's left), else the largest.

    Raises:
        HeadStudioError: no face; ``face`` out of range; the face is under :data:`MIN_FACE_PX`
            across; or it is turned past :data:`MAX_YAW_DEG` / :data:`MAX_PITCH_DEG`.
    """
    if not faces:
        raise HeadStudioError(
            f"no face was found in the photo '{photo_name}'; give a well-lit photograph in which one face "
            "is clearly visible, frontal or up to a three-quarter view.",
            argument="image",
        )
    by_x = sorted(faces, key=lambda f: f.centre_x)
    if face is not None:
        if not 1 <= face <= len(faces):
            raise HeadStudioError(
                f"face {face} was asked for but the photo '{photo_name}' shows {len(faces)} "
                f"face{'s' if len(faces) > 1 else ''}; number them 1..{len(faces)} from the image's left.",
                argument="face",
            )
        chosen = by_x[face - 1]
    else:
        chosen = faces[0]
        if len(faces) > 1:
            log.warning(
                "the photo '%s' shows %d faces; building face %d from the left, the largest (%.0f px); "
                "choose another by its number from the left",
                photo_name,
                len(faces),
                by_x.index(chosen) + 1,
                chosen.size_px,
            )
    if chosen.size_px < MIN_FACE_PX:
        raise HeadStudioError(
            f"the face in the photo '{photo_name}' is {chosen.size_px:.0f} px across, "
            f"under the {MIN_FACE_PX} px "
            "a photo avatar needs; use a larger or closer photograph of the face.",
            argument="image",
        )
    if abs(chosen.yaw_deg) > MAX_YAW_DEG or abs(chosen.pitch_deg) > MAX_PITCH_DEG:
        raise HeadStudioError(
            f"the face in the photo '{photo_name}' is turned {abs(chosen.yaw_deg):.0f} deg sideways and "
            f"{abs(chosen.pitch_deg):.0f} deg up or down; the fit supports up to {MAX_YAW_DEG:.0f} deg and "
            f"{MAX_PITCH_DEG:.0f} deg: use a frontal or three-quarter photograph.",
            argument="image",
        )
    return chosen
