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
from pathlib import Path

import numpy as np
import torch
from flame_core.motion import MotionSequence
from tqdm.auto import tqdm

from ..avatar import Avatar
from ..errors import HeadStudioError
from ..head_motion import fit_flame_params
from ..output.rendering import ViewSettings, frame_avatar, motion_frames, orbit_views
from ..video import VideoWriter, read_video_frames
from .drive import fit_track, video_to_motion
from .drive_types import DriveOptions, DriveResult
from .face_metrics import FOREHEAD, NOSE_BASE, face_features
from .face_track import FaceTrack, detect_face
from .jaw_curve import MAX_GAIN, JawCalibration, evaluate, fit_jaw_calibration, monotone_curve

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
    "drive_avatar",
]

log = logging.getLogger(__name__)

#: The calibration clip's jaw opening (rad) at times (s), linear in between: closed, a wide
#: opening (0.35 rad, more than speech uses), closed, a small one.
CALIBRATION_PATH = ((0.0, 0.0), (0.2, 0.0), (0.8, 0.35), (1.27, 0.0), (1.47, 0.0), (1.73, 0.15), (2.0, 0.0))
CALIBRATION_FPS = 30.0
#: Least share of the calibration frames in which MediaPipe must find the face.
MIN_FOUND = 0.8
#: Render size of the calibration clip when the video's face size is unknown, and its bounds.
DEFAULT_SIZE, MIN_SIZE, MAX_SIZE = 512, 128, 1024
#: Step of the calibration's render size: videos whose faces differ in size by a few per cent
#: share one calibration (the round trip's motions would otherwise each make their own).
SIZE_STEP = 32


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
    log.info("calibrating the jaw on the avatar (a %d-frame clip at %d²)", len(motion), size)
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
        xk, yk = monotone_curve(read_drv[ok], jaw[ok, 0].double().numpy(), 5)  # driven reading → jaw
        cal = fit_jaw_calibration(x[ok], evaluate(xk, yk, read_src[ok]))
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
            try:
                cal: JawCalibration | None = calibrate_jaw(self.avatar, self.options, size, self.progress)
                log.info("%s", cal.summary())
            except HeadStudioError as err:
                log.warning("driving without jaw calibration: %s", err)
                cal = None
            made[key] = cal
        return made[key]


def drive_avatar(
    avatar: Avatar,
    video: str | Path,
    options: DriveOptions | None = None,
    *,
    landmarker: str | Path | None = None,
    save_motion: str | Path | None = None,
    max_frames: int | None = None,
    progress: bool = False,
) -> DriveResult:
    """:func:`headstudio.animate.drive.video_to_motion` for ``avatar``: a CPU copy of its head is
    fitted (the landmark fit runs on the CPU), with the avatar's jaw calibration when
    ``options.calibrate`` (:class:`JawCalibrator`), as ``headstudio drive`` and the round trips do."""
    opts = options or DriveOptions()
    head = copy.deepcopy(avatar.head).cpu()
    return video_to_motion(
        head, video, landmarker=landmarker, save_motion=save_motion, max_frames=max_frames, options=opts,
        calibrate=JawCalibrator(avatar, opts, progress),
    )  # fmt: skip
