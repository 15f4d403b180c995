"""Jaw calibration of video driving: how far MediaPipe and the fit see *this avatar's* mouth open.

MediaPipe's landmarks follow the lower face of a rendered avatar at only part of its true motion:
on the demo avatar, under a pure jaw motion, the lower lip, chin and jaw line move at a median 0.66
of the mesh's motion and the mouth corners at 0.41, while the upper inner lip moves up, against
the truth, so that the inner-lip gap alone reads at 0.95. A landmark fit of such a video recovers
about 0.66 of the true jaw (the fit itself is exact: on the mesh's own landmarks it recovers 1.0),
and the avatar driven by it opens its mouth by less than the video shows; MediaPipe, reading the
driven render, then finds even less, because small openings fall in its dead zone near a closed
mouth (issue 22).

The calibration measures this on the avatar itself (analysis by synthesis):

1. the avatar is rendered opening its jaw along a known path (:data:`CALIBRATION_PATH`: one wide
   and one small opening, with the mouth closed in between), with the face as large in the frame
   as in the video being driven, and encoded to MP4 as videos are (the encoding changes what
   MediaPipe reads of the lips by about 10 % at 256²);
2. MediaPipe reads the clip and the drive fits it with the same options (neutral ``auto``);
3. a first curve from the fitted jaw opening (relative to the neutral) to the true one
   (:func:`fit_jaw_calibration`: monotone, piecewise linear);
4. the clip's own fit, its jaw passed through that curve, is rendered and read again. The fit
   also puts some expression and head pitch into a pure jaw motion (it matches MediaPipe's lower
   lip and chin, which do not move as the inner-lip gap does), and with them MediaPipe reads the
   driven mouth as less open than the source's at the same jaw. So the final curve maps the
   fitted opening to the jaw at which the driven clip reads as the source clip read (the driven
   reading → jaw relation, inverted, at the source's reading of each frame).

The video's fitted jaw opening is then passed through the final curve (:meth:`JawCalibration.apply`),
so that the driven avatar opens its mouth as far as it needs for MediaPipe to read the opening
that MediaPipe read in the video: the jaw is 1.6–2x the uncalibrated fit (small openings more).
The price: where the video is of the avatar itself (the round trip), the driven mesh opens about
1.2–1.3x as far as the true motion, because the fit's extra expression is left in place
(BENCHMARKS.md, "Face reading"). Taking MediaPipe's landmark distortion out before the fit instead
recovered the true jaw (gain 0.99) but read back at only 0.72–0.87 of the source's amplitude,
depending on details as small as the calibration clip's size, so it was not kept. The calibration
assumes that MediaPipe reads the video's face as it reads the avatar's; for a person that is an
approximation, and ``--no-calibrate`` drives with the fit as it is. Where the calibration cannot
be made (MediaPipe does not find the avatar's face, or barely reads its mouth) the drive goes on
uncalibrated, with a warning.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flame_core.motion import MotionSequence
from scipy.optimize import nnls
from tqdm.auto import tqdm

from ..avatar import Avatar
from ..errors import HeadStudioError
from ..head_motion import fit_flame_params
from ..output.rendering import ViewSettings, frame_avatar, motion_frames, orbit_views
from ..video import VideoWriter, read_video_frames
from .drive import fit_track
from .drive_types import DriveOptions, DriveResult
from .face_metrics import FOREHEAD, NOSE_BASE, face_features
from .face_track import FaceTrack, detect_face

__all__ = [
    "CALIBRATION_PATH",
    "CALIBRATION_FPS",
    "MAX_GAIN",
    "JawCalibration",
    "fit_jaw_calibration",
    "calibration_motion",
    "mesh_landmarks_px",
    "calibrate_jaw",
    "JawCalibrator",
]

log = logging.getLogger(__name__)

#: The calibration clip's jaw opening (rad) at times (s), linear in between: closed, a wide
#: opening (0.35 rad, more than speech uses), closed, a small one.
CALIBRATION_PATH = ((0.0, 0.0), (0.2, 0.0), (0.8, 0.35), (1.27, 0.0), (1.47, 0.0), (1.73, 0.15), (2.0, 0.0))
CALIBRATION_FPS = 30.0
#: Least fitted opening (rad) of the calibration clip that counts as "MediaPipe saw the mouth open".
MIN_FITTED_OPENING = 0.02
#: Largest accepted ratio of true to fitted opening: beyond it MediaPipe barely reads this
#: avatar's mouth, and the curve would mostly amplify noise.
MAX_GAIN = 3.0
#: Least share of the calibration frames in which MediaPipe must find the face.
MIN_FOUND = 0.8
#: Render size of the calibration clip when the video's face size is unknown, and its bounds.
DEFAULT_SIZE, MIN_SIZE, MAX_SIZE = 512, 128, 1024
#: Step of the calibration's render size: videos whose faces differ in size by a few per cent
#: share one calibration (the round trip's motions would otherwise each make their own).
SIZE_STEP = 32


@dataclass(frozen=True)
class JawCalibration:
    """A monotone curve from the fitted jaw opening to the jaw the avatar needs (both in rad,
    relative to the neutral).

    Attributes:
        fitted: increasing knots of the fitted opening, starting at 0.
        true: the opening at each knot, non-decreasing, starting at 0.
        size: the calibration clip's render size (pixels, square).
        frames: calibration frames in which MediaPipe found the face.

    Beyond the last knot the curve goes on with its last slope; below 0 (a mouth closed tighter
    than at rest, which the clip does not show) it is the identity. The result is capped at
    :attr:`max_opening`.
    """

    fitted: tuple[float, ...]
    true: tuple[float, ...]
    size: int = DEFAULT_SIZE
    frames: int = 0
    max_opening: float = 0.6

    @property
    def gain(self) -> float:
        """True over fitted opening at the widest knot."""
        return self.true[-1] / self.fitted[-1]

    def apply(self, jaw_open: torch.Tensor) -> torch.Tensor:
        """The curve applied to ``jaw_open [T]`` (rad, relative to the neutral)."""
        x = jaw_open.detach().cpu().double().numpy()
        y = np.minimum(_evaluate(np.asarray(self.fitted), np.asarray(self.true), x), self.max_opening)
        return torch.as_tensor(y, dtype=jaw_open.dtype, device=jaw_open.device)

    def summary(self) -> str:
        """One line: how much the fitted jaw is opened."""
        mid = len(self.fitted) // 2
        return (
            f"jaw calibrated on the avatar ({self.frames} frames at {self.size}²): a fitted opening of "
            f"{self.fitted[mid]:.3f} rad drives {self.true[mid]:.3f} rad, {self.fitted[-1]:.3f} drives "
            f"{self.true[-1]:.3f} (gain {self.gain:.2f})"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (for ``drive --report``)."""
        return {
            "fitted": [round(v, 5) for v in self.fitted],
            "true": [round(v, 5) for v in self.true],
            "gain": round(self.gain, 4),
            "size": self.size,
            "frames": self.frames,
        }


def _evaluate(xk: np.ndarray, yk: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The piecewise-linear curve through ``(xk, yk)`` at ``x``: its last slope beyond the last
    knot, the identity below 0."""
    y = np.interp(x, xk, yk)
    slope = (yk[-1] - yk[-2]) / (xk[-1] - xk[-2])
    y = np.where(x > xk[-1], yk[-1] + (x - xk[-1]) * slope, y)
    return np.where(x < 0, x, y)


def _monotone_curve(x: np.ndarray, y: np.ndarray, num_knots: int) -> tuple[np.ndarray, np.ndarray]:
    """Knots ``(xk, yk)`` of the non-decreasing piecewise-linear curve through ``(0, 0)`` that best
    maps ``x`` to ``y``: ``xk`` is 0, quantiles of the positive ``x`` and its maximum; the rises
    between knots are fitted by non-negative least squares."""
    top = float(x.max())
    if not top > 0:
        raise ValueError("no opening was read on the calibration clip")
    pos = x[x > 1e-3 * top]
    inner = np.quantile(pos, np.linspace(0, 1, num_knots)[1:-1]) if len(pos) else np.zeros(0)
    xk = np.unique(np.r_[0.0, inner, top])
    xk = xk[np.r_[True, np.diff(xk) > 1e-3 * top]]  # knots apart; the last stays the maximum
    xk[-1] = top
    ramps = np.stack([np.clip((x - a) / (b - a), 0.0, 1.0) for a, b in zip(xk[:-1], xk[1:])], 1)
    rises, _ = nnls(ramps, y)
    return xk, np.r_[0.0, np.cumsum(rises)]


def fit_jaw_calibration(fitted: np.ndarray, true: np.ndarray, num_knots: int = 5) -> JawCalibration:
    """The monotone piecewise-linear curve through ``(0, 0)`` that best maps ``fitted`` to ``true``.

    The knots are 0 and quantiles of the positive fitted openings (the last at their maximum); the
    curve's rise between knots is fitted by non-negative least squares, so it never decreases.

    Args:
        fitted: ``[N]`` fitted jaw openings (rad, relative to the neutral).
        true: ``[N]`` the true openings of the same frames.
        num_knots: knots including 0.

    Raises:
        ValueError: the fitted jaw never opens by :data:`MIN_FITTED_OPENING`, or the curve's gain
            exceeds :data:`MAX_GAIN` (MediaPipe barely reads the mouth).
    """
    x, y = np.asarray(fitted, np.float64).ravel(), np.asarray(true, np.float64).ravel()
    if x.shape != y.shape or len(x) < num_knots:
        raise ValueError(f"need at least {num_knots} paired openings; got {x.shape} and {y.shape}")
    top = float(x.max())
    if not top >= MIN_FITTED_OPENING:
        raise ValueError(
            f"the fitted jaw opened at most {top:.3f} rad on a clip that opens {float(y.max()):.2f} rad: "
            "MediaPipe does not see this avatar's mouth open"
        )
    xk, yk = _monotone_curve(x, y, num_knots)
    if not yk[-1] > 0:
        raise ValueError("the calibration found no opening to map to")
    cal = JawCalibration(tuple(float(v) for v in xk), tuple(float(v) for v in yk))
    if cal.gain > MAX_GAIN:
        raise ValueError(
            f"MediaPipe reads this avatar's mouth at 1/{cal.gain:.1f} of its opening (more than "
            f"{MAX_GAIN:g}x under), too little to calibrate on"
        )
    return cal


def calibration_motion(num_expression: int, fps: float = CALIBRATION_FPS) -> MotionSequence:
    """:data:`CALIBRATION_PATH` as a motion (jaw only) at ``fps``."""
    times, jaw = np.asarray(CALIBRATION_PATH).T
    t = np.arange(int(round(times[-1] * fps)) + 1) / fps
    T = len(t)
    jaw_pose = np.zeros((T, 3))
    jaw_pose[:, 0] = np.interp(t, times, jaw)
    return MotionSequence(
        expression=np.zeros((T, num_expression)), jaw_pose=jaw_pose, eye_pose=np.zeros((T, 6)), fps=fps
    )


def mesh_landmarks_px(
    avatar: Avatar, motion: MotionSequence, size: tuple[int, int], chunk: int = 32
) -> np.ndarray:
    """The avatar's own 478 landmarks under ``motion``, in the pixels of
    :func:`headstudio.output.rendering.render_motion`'s video of ``size``.

    Returns:
        ``[T, 478, 2]`` float64 (x right, y down).
    """
    head = avatar.head
    emb = head.landmark_embedding
    s = ViewSettings()
    target, dist = frame_avatar(avatar, s)
    vms, ks = orbit_views([0.0], s.elevation_deg, dist, s.fovy_deg, size[0], size[1], target.cpu())
    vm, K = vms[0], ks[0]
    num_expr = int(getattr(head, "num_expression", 100))
    out = []
    with torch.no_grad():
        for start in range(0, len(motion), chunk):
            idx = list(range(start, min(start + chunk, len(motion))))
            verts = avatar.pose(fit_flame_params(motion.params(idx), num_expr)).cpu()
            lm = emb.to("cpu")(verts, head.faces.cpu())  # [b, 478, 3]
            px = (lm @ vm[:3, :3].T + vm[:3, 3]) @ K.T
            out.append((px[..., :2] / px[..., 2:]).double().numpy())
    return np.concatenate(out)


def _face_height(landmarks: np.ndarray) -> float:
    """Median forehead → nose-base distance (pixels) over the frames with a face."""
    d = np.linalg.norm(landmarks[:, FOREHEAD] - landmarks[:, NOSE_BASE], axis=-1)
    d = d[np.isfinite(d)]
    return float(np.median(d)) if len(d) else math.nan


def _size_for(avatar: Avatar, track: FaceTrack | None) -> int:
    """Square render size (a multiple of :data:`SIZE_STEP`) at which the avatar's face is about
    as tall as in ``track``'s video."""
    if track is None or not track.found.any():
        return DEFAULT_SIZE
    E = int(avatar.head.num_expression)
    rest = MotionSequence(expression=np.zeros((1, E)), jaw_pose=np.zeros((1, 3)), eye_pose=np.zeros((1, 6)))
    ref = _face_height(mesh_landmarks_px(avatar, rest, (512, 512)))
    want = _face_height(track.landmarks[track.found])
    if not (math.isfinite(ref) and math.isfinite(want) and ref > 0):
        return DEFAULT_SIZE
    return int(np.clip(round(512 * want / ref / SIZE_STEP) * SIZE_STEP, MIN_SIZE, MAX_SIZE))


def calibrate_jaw(
    avatar: Avatar, options: DriveOptions | None = None, size: int = DEFAULT_SIZE, progress: bool = False
) -> JawCalibration:
    """Steps 1–4 of the module docstring at render size ``size`` (``progress``: a bar over the
    four stages, which take about 10–15 s at 512² on two CPU cores).

    Raises:
        HeadStudioError: MediaPipe finds the face in too few calibration frames, or the fit sees
            no usable opening (see :func:`fit_jaw_calibration`).
    """
    opts = dataclasses.replace(options or DriveOptions(), neutral="auto", calibrate=False)
    motion = calibration_motion(int(avatar.head.num_expression))
    with tqdm(total=4, desc="jaw calibration", unit="stage", disable=not progress, leave=False) as bar:
        source = _read(avatar, motion, size, opts)
        bar.update()
        head = copy.deepcopy(avatar.head).cpu()
        res = fit_track(head, source, motion.fps, (size, size), opts, "the calibration clip")
        bar.update()
        cal = _calibrate(avatar, motion, size, opts, source, res, bar)
    return dataclasses.replace(cal, size=size, frames=int(source.found.sum()))


def _calibrate(
    avatar: Avatar,
    motion: MotionSequence,
    size: int,
    opts: DriveOptions,
    source: FaceTrack,
    res: DriveResult,
    bar: tqdm,
) -> JawCalibration:
    """Steps 3 and 4 from the clip's reading ``source`` and its fit ``res``."""
    rest = res.neutral_frames
    true = motion.jaw_pose[:, 0].double().numpy()
    true = true - float(np.median(true[rest]))
    fitted = res.motion.jaw_pose[:, 0]
    x = fitted.double().numpy()
    try:
        first = fit_jaw_calibration(x[source.found], true[source.found])
        jaw = res.motion.jaw_pose.clone()
        jaw[:, 0] = first.apply(fitted)
        bar.update()
        driven = _read(avatar, dataclasses.replace(res.motion, jaw_pose=jaw), size, opts)
        bar.update()
        read_src, read_drv = (face_features(t.landmarks)["lip_gap"] for t in (source, driven))
        ok = source.found & driven.found
        read_src, read_drv = read_src - np.nanmedian(read_src[rest]), read_drv - np.nanmedian(read_drv[rest])
        xk, yk = _monotone_curve(read_drv[ok], jaw[ok, 0].double().numpy(), 5)  # driven reading → jaw
        cal = fit_jaw_calibration(x[ok], _evaluate(xk, yk, read_src[ok]))
    except ValueError as err:
        raise HeadStudioError(str(err)) from err
    return cal


def _read(avatar: Avatar, motion: MotionSequence, size: int, opts: DriveOptions) -> FaceTrack:
    """MediaPipe's reading of ``motion`` rendered as ``render_motion`` renders it, through an MP4
    as the videos it calibrates for are.

    Raises:
        HeadStudioError: it finds the face in fewer than :data:`MIN_FOUND` of the frames.
    """
    with tempfile.TemporaryDirectory(prefix="headstudio-calibration-") as tmp:
        path = Path(tmp) / "clip.mp4"
        with VideoWriter(path, float(motion.fps)) as vw:
            for img in motion_frames(avatar, motion, (size, size)):
                vw.write(img)
        frames, fps = read_video_frames(path)
    track = detect_face(frames, fps, opts.landmarker)
    found, T = int(track.found.sum()), len(track.found)
    if found < MIN_FOUND * T:
        raise HeadStudioError(
            f"MediaPipe found the avatar's face in only {found} of the {T} frames of the jaw calibration clip"
        )
    return track


#: Calibrations made in this process, per avatar (weakly held) and (options, size).
_MADE: weakref.WeakKeyDictionary[Avatar, dict[tuple[str, int], JawCalibration | None]] = (
    weakref.WeakKeyDictionary()
)


class JawCalibrator:
    """The calibration of one avatar, made on first use at the video's face size and kept for the
    process per avatar, options and size (an avatar changed in place afterwards keeps its old
    calibration). Pass it to :func:`headstudio.animate.drive.video_to_motion` as ``calibrate``.

    Args:
        avatar: the avatar the motion will drive.
        options: the drive's options (the calibration fits with them).
        progress: a progress bar while calibrating.
    """

    def __init__(self, avatar: Avatar, options: DriveOptions | None = None, progress: bool = False) -> None:
        self.avatar = avatar
        self.options = options or DriveOptions()
        self.progress = progress

    def __call__(self, track: FaceTrack | None = None) -> JawCalibration | None:
        """The calibration for a video that MediaPipe read as ``track``, or ``None`` (with a
        warning) where it cannot be made."""
        size = _size_for(self.avatar, track)
        made = _MADE.setdefault(self.avatar, {})
        key = (repr(dataclasses.replace(self.options, neutral="auto", calibrate=False)), size)
        if key not in made:
            log.info("calibrating the jaw on the avatar (a %d-frame clip at %d²)", _clip_frames(), size)
            try:
                cal: JawCalibration | None = calibrate_jaw(self.avatar, self.options, size, self.progress)
                log.info("%s", cal.summary())
            except HeadStudioError as err:
                log.warning("driving without jaw calibration: %s", err)
                cal = None
            made[key] = cal
        return made[key]


def _clip_frames() -> int:
    return int(round(CALIBRATION_PATH[-1][0] * CALIBRATION_FPS)) + 1
