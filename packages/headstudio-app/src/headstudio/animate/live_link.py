"""Live Link Face CSV curves in and out (see :mod:`.arkit` for the column layout)."""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._atomic import atomic_output
from ..errors import HeadStudioError
from .arkit_names import ARKIT_NAMES, LIVE_LINK_NAMES, LIVE_LINK_POSE_COLUMNS

__all__ = ["ArkitCurves", "read_live_link_csv", "write_live_link_csv"]

log = logging.getLogger(__name__)


@dataclass
class ArkitCurves:
    """ARKit blendshape curves over time.

    Attributes:
        weights: ``[T, 52]`` float32 in ``ARKIT_NAMES`` order (0..1 as captured).
        fps: frames per second.
        head_rotation: ``[T, 3]`` yaw, pitch, roll in radians (zeros when not captured).
        eye_rotation: ``[T, 6]`` left eye yaw, pitch, roll, then the right eye's.
        start_timecode: the first row's timecode (``HH:MM:SS:FF.fff``).
    """

    weights: np.ndarray
    fps: float
    head_rotation: np.ndarray
    eye_rotation: np.ndarray
    start_timecode: str = "00:00:00:00.000"

    def __len__(self) -> int:
        return int(self.weights.shape[0])


def _format_timecode(seconds: float, fps: float) -> str:
    frames_total = seconds * fps
    whole = int(math.floor(frames_total + 1e-9))
    sub = frames_total - whole
    f = whole % int(round(fps))
    s_total = whole // int(round(fps))
    h, rem = divmod(s_total, 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{s:02d}:{f:02d}.{int(round(sub * 1000)) % 1000:03d}"


def _parse_timecode(tc: str, fps: float, row: int, path: Path) -> float:
    parts = tc.strip().split(":")
    try:
        if len(parts) != 4:
            raise ValueError
        h, m, s = (int(x) for x in parts[:3])
        return h * 3600 + m * 60 + s + float(parts[3]) / fps
    except ValueError:
        raise HeadStudioError(
            f"{path}: row {row} has timecode '{tc}'; Live Link Face writes HH:MM:SS:FF.fff."
        ) from None


def write_live_link_csv(path: str | Path, curves: ArkitCurves) -> Path:
    """Write curves in Live Link Face's CSV layout (atomically).

    Returns:
        ``path`` as a ``Path``.
    """
    out = Path(path)
    w = np.asarray(curves.weights, np.float64)
    T = w.shape[0]
    if w.ndim != 2 or w.shape[1] != len(ARKIT_NAMES):
        raise HeadStudioError(f"ARKit curves must be [T, 52]; got {list(w.shape)}.")
    if not curves.fps > 0:
        raise HeadStudioError(f"ARKit curves need a positive frame rate; got {curves.fps}.")
    head = np.zeros((T, 3)) if curves.head_rotation is None else np.asarray(curves.head_rotation, np.float64)
    eyes = np.zeros((T, 6)) if curves.eye_rotation is None else np.asarray(curves.eye_rotation, np.float64)
    start = _parse_timecode(curves.start_timecode, curves.fps, 0, out)
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(["Timecode", "BlendshapeCount", *LIVE_LINK_NAMES, *LIVE_LINK_POSE_COLUMNS])
    count = len(ARKIT_NAMES) + len(LIVE_LINK_POSE_COLUMNS)
    for t in range(T):
        vals = [*w[t], *head[t], *eyes[t]]
        wr.writerow(
            [_format_timecode(start + t / curves.fps, curves.fps), count, *(f"{v:.6g}" for v in vals)]
        )
    with atomic_output(out) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    log.info("wrote %d frames of ARKit curves to %s", T, out)
    return out


def read_live_link_csv(path: str | Path, fps: float | None = None) -> ArkitCurves:
    """Read a Live Link Face CSV (or one :func:`write_live_link_csv` wrote).

    Columns are found by name (case-insensitive), so extra columns are ignored; the 52 blendshape
    columns and ``Timecode`` are required, the head/eye rotation columns optional (zeros).

    Args:
        path: the ``.csv``.
        fps: the recording's frame rate; ``None``: from the timecodes' frame numbers (the largest
            frame number seen + 1, rounded to 24/25/30/50/60 when close, kept as it is when the
            frame numbers wrap at a new second), 60 if undecidable.

    Raises:
        HeadStudioError: missing file or columns, a row with the wrong number of values, a
            non-numeric value, a ``BlendshapeCount`` that disagrees with the columns.
    """
    p = Path(path)
    if not p.is_file():
        raise HeadStudioError(f"ARKit curves file '{p}' does not exist; give a Live Link Face CSV.")
    rows = list(csv.reader(p.read_text(encoding="utf-8-sig").splitlines()))
    if not rows:
        raise HeadStudioError(
            f"{p}: empty file; a Live Link Face CSV starts with a Timecode,BlendshapeCount,... header."
        )
    header = [h.strip() for h in rows[0]]
    index = {h.lower(): i for i, h in enumerate(header)}
    missing = [n for n in ("Timecode", *LIVE_LINK_NAMES) if n.lower() not in index]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise HeadStudioError(
            f"{p}: missing column(s) {shown}; a Live Link Face CSV has Timecode, BlendshapeCount and "
            "the 52 ARKit curves (EyeBlinkLeft ... TongueOut)."
        )
    body = [r for r in rows[1:] if any(c.strip() for c in r)]
    if not body:
        raise HeadStudioError(f"{p}: no data rows after the header.")
    bs_col = index.get("blendshapecount")
    pose_cols = [index.get(c.lower()) for c in LIVE_LINK_POSE_COLUMNS]
    T = len(body)
    w = np.zeros((T, len(ARKIT_NAMES)), np.float32)
    pose = np.zeros((T, len(LIVE_LINK_POSE_COLUMNS)), np.float32)
    tcs: list[str] = []
    for t, r in enumerate(body):
        row = t + 2
        if len(r) != len(header):
            raise HeadStudioError(
                f"{p}: row {row} has {len(r)} values but the header has {len(header)} columns; "
                "every row needs one value per column."
            )
        if bs_col is not None:
            try:
                count = int(float(r[bs_col]))
            except ValueError:
                count = -1
            have = len(ARKIT_NAMES) + sum(c is not None for c in pose_cols)
            if count not in (len(ARKIT_NAMES), have, len(ARKIT_NAMES) + len(LIVE_LINK_POSE_COLUMNS)):
                raise HeadStudioError(
                    f"{p}: row {row} has BlendshapeCount {r[bs_col]!r}, but the file has "
                    f"{have} curve columns; fix the count or the columns."
                )
        try:
            w[t] = [float(r[index[n.lower()]]) for n in LIVE_LINK_NAMES]
            pose[t] = [float(r[c]) if c is not None else 0.0 for c in pose_cols]
        except ValueError:
            raise HeadStudioError(
                f"{p}: row {row} has a value that is not a number; every curve value must be one."
            ) from None
        tcs.append(r[index["timecode"]])
    if not (np.isfinite(w).all() and np.isfinite(pose).all()):
        raise HeadStudioError(f"{p}: NaN or infinite values; every curve value must be a finite number.")
    if fps is None:
        fps = _guess_fps(tcs)
    for t, tc in enumerate(tcs):  # validates every timecode
        _parse_timecode(tc, fps, t + 2, p)
    return ArkitCurves(w, float(fps), pose[:, :3].copy(), pose[:, 3:].copy(), tcs[0].strip())


def _guess_fps(timecodes: Sequence[str]) -> float:
    frames = []
    for tc in timecodes:
        parts = tc.strip().split(":")
        if len(parts) == 4:
            try:
                frames.append(int(float(parts[3])))
            except ValueError:
                pass
    if not frames or len(timecodes) < 2:
        return 60.0
    top = max(frames) + 1
    for rate in (24, 25, 30, 50, 60):
        if top <= rate and top >= rate - 2:
            return float(rate)
    # frame numbers that wrap to 0 at a new second count up to the rate itself (a 10 fps drive)
    wrapped = any(b < a for a, b in zip(frames, frames[1:], strict=False))
    return float(top) if wrapped else 60.0
