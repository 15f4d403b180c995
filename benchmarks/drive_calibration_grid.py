"""Picture of what the drive's jaw calibration changes (issue 22): one round-trip motion of an
avatar (:func:`headstudio.animate.roundtrip.run_roundtrip`), driven with ``headstudio drive``'s
defaults (calibrated on the avatar) and with ``--no-calibrate``. Rows: the source video, the
calibrated drive, the uncalibrated drive, at the frames where the true jaw is widest open; each
cell is the face from the nose to the chin with MediaPipe's inner-lip gap (face heights) written under it.

Usage: ``python benchmarks/drive_calibration_grid.py --avatar AVATAR.ply [--motion talk]
[--frames 90] [--size 512] [--out docs/images/drive_calibration.png]``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from headstudio.animate.drive import DriveOptions
from headstudio.animate.roundtrip import MOTIONS, roundtrip_motion, run_roundtrip
from headstudio.train.runtime import load_avatar
from headstudio.video import read_video_frames
from PIL import Image, ImageDraw

ROWS = (("source", "source video"), ("ours", "drive (calibrated)"), ("nocal", "drive --no-calibrate"))
LABEL_W, TEXT_H = 150, 18


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--avatar", type=Path, required=True)
    p.add_argument("--motion", default="talk", choices=MOTIONS)
    p.add_argument("--frames", type=int, default=90)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--columns", type=int, default=4)
    p.add_argument("--out", type=Path, default=Path("docs/images/drive_calibration.png"))
    args = p.parse_args(argv)
    avatar = load_avatar(args.avatar, None, torch.device("cpu"))
    variants = {"ours": DriveOptions(), "nocal": DriveOptions(calibrate=False)}
    with tempfile.TemporaryDirectory() as tmp:
        rt = run_roundtrip(avatar, args.motion, tmp, args.frames, 30.0, args.size, variants=variants)
        videos = {"source": rt.video, **{k: d.video for k, d in rt.drives.items()}}
        frames = {k: read_video_frames(v)[0] for k, v in videos.items()}
    # the round trip's own MediaPipe readings of the three videos
    gaps = {"source": rt.source["lip_gap"], **{k: d.driven["lip_gap"] for k, d in rt.drives.items()}}
    jaw = roundtrip_motion(args.motion, args.frames, 30.0, int(avatar.head.num_expression)).jaw_pose[:, 0]
    picks = _peaks(jaw.numpy(), args.columns)
    box = crop_box(args.size)
    cw, ch = box[2] - box[0], box[3] - box[1]
    grid = Image.new("RGB", (LABEL_W + cw * len(picks), (ch + TEXT_H) * len(ROWS)), "white")
    draw = ImageDraw.Draw(grid)
    for r, (key, label) in enumerate(ROWS):
        gap = gaps[key]
        y = r * (ch + TEXT_H)
        draw.text((6, y + ch // 2), label, fill="black")
        for c, t in enumerate(picks):
            x = LABEL_W + c * cw
            grid.paste(Image.fromarray(frames[key][t]).crop(box), (x, y))
            draw.text((x + 6, y + ch + 3), f"frame {t}: gap {gap[t]:.3f}", fill="black")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.out)
    amp = {k: d.driven_vs_source["lip_gap"] for k, d in rt.drives.items()}
    text = ", ".join(f"{k} {m.r:.2f} / {m.amplitude:.2f}" for k, m in amp.items())
    print(f"wrote {args.out}; lip gap r / amplitude: {text}")
    return 0


def crop_box(size: int) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` of the face from the nose to the chin in a ``size``² front
    render (``render_motion``'s framing)."""
    return int(0.28 * size), int(0.3 * size), int(0.72 * size), int(0.66 * size)


def _peaks(jaw: np.ndarray, k: int) -> list[int]:
    """``k`` frames where ``jaw`` is widest, at least 5 frames apart, in time order."""
    order = np.argsort(-jaw, kind="stable")
    picks: list[int] = []
    for t in order:
        if all(abs(int(t) - q) >= 5 for q in picks):
            picks.append(int(t))
        if len(picks) == k:
            break
    return sorted(picks)


if __name__ == "__main__":
    raise SystemExit(main())
