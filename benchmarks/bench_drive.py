"""Round-trip benchmark of video-driven animation (``headstudio drive``).

Known motions of an avatar (``headstudio.animate.roundtrip.MOTIONS``: procedural talking, jaw only, brows,
blinks, gaze sweeps) are rendered to MP4; the same avatar is driven from those videos; MediaPipe's
FaceLandmarker measures both videos on the same features (inner-lip gap and mouth width over face
height, eye openness per eye, brow height, iris position). For every motion and every feature
that moves in it, the script prints Pearson r and the amplitude ratio (std driven / std source)
for

- ``ours``: ``headstudio.animate.drive`` with its defaults (region weights, landmark-pair differences,
  jaw first, one-euro filter, auto neutral);
- ``baseline`` (measured in the same run): the fit as it was before: every landmark weight 1, no
  pairs, one stage, the second-difference smoothing 1.0 that was the default, no filter, no
  neutral;
- ``fit``: our fitted mesh against MediaPipe's reading of the source (how faithfully the fit
  reproduces what the detector saw);
- ``ceiling``: MediaPipe's reading of the source against the avatar's true mesh under the known
  motion (the round trip cannot be more faithful than the detector's view of the source).

Goal (issue 15): every feature r >= 0.8 and amplitude 0.8-1.25 on every motion.

With ``--teacher`` the same runs on the procedural teacher avatar the demo learns from, and on
that teacher with a dark mouth interior (its mouth is painted lip-red inside, so MediaPipe
cannot see where the inner lips are): a diagnostic of what limits the mouth features.

Side-by-side PNGs (source / ours / baseline at the motion's strongest frames) are written to
``--out``. Also printed: fit seconds per frame, ours vs baseline. The ARKit curves that ``drive
--arkit-out`` writes for the same round trip are measured by ``bench_arkit.py``.

Usage: ``python benchmarks/bench_drive.py [--avatar AVATAR.ply] [--frames 90] [--size 512]
[--out DIR] [--motions talk jaw ...] [--teacher]``. Without ``--avatar`` the demo avatar is
trained first (``headstudio demo``'s defaults: many minutes on a 2-core CPU; pass the
``avatar.ply`` of an earlier ``headstudio demo`` to skip it).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _demo import train_demo_avatar
from flame_core import FlameModel
from flame_core.procedural import build_procedural_head
from flame_core.procedural_mesh import CAVITY
from headstudio.animate.drive import DriveOptions
from headstudio.animate.roundtrip import MOTIONS, RoundTrip, format_table, pre_issue_options, run_roundtrip
from headstudio.avatar import Avatar, rgb_to_sh
from headstudio.demo.teacher import build_teacher_avatar
from headstudio.train.runtime import load_avatar
from headstudio.video import read_video_frames
from PIL import Image

GOAL_R, GOAL_AMP = 0.8, (0.8, 1.25)


def _load(path: Path) -> Avatar:
    return load_avatar(path, None, torch.device("cpu"))


def _teachers() -> dict[str, Avatar]:
    """The procedural teacher avatar, and the same with a dark mouth cavity."""
    head = FlameModel.procedural()
    teacher = build_teacher_avatar(head).eval()
    dark = build_teacher_avatar(head).eval()
    cavity = torch.as_tensor(build_procedural_head().geometry.face_part == CAVITY)
    inside = cavity[dark.face_ids.cpu()]
    with torch.no_grad():
        dark.sh[inside, 0, :] = rgb_to_sh(torch.tensor([0.12, 0.03, 0.03]))
    return {"teacher": teacher, "teacher, dark mouth": dark}


def _strongest_frames(rt: RoundTrip, k: int = 4, spacing: int = 4) -> list[int]:
    """Frames where the true motion is furthest from rest (summed over its moving features)."""
    score = np.zeros(len(next(iter(rt.truth.values()))))
    for f in rt.moving:
        x = rt.truth[f]
        score += np.abs(x - np.median(x)) / max(float(np.std(x)), 1e-9)
    picked: list[int] = []
    for i in np.argsort(-score):
        if all(abs(int(i) - j) >= spacing for j in picked):
            picked.append(int(i))
        if len(picked) == k:
            break
    return sorted(picked)


def _side_by_side(rt: RoundTrip, path: Path) -> None:
    """Rows: source, ours, baseline; columns: the strongest frames; cropped to the face."""
    idx = _strongest_frames(rt)
    rows = []
    for video in [rt.video] + [d.video for d in rt.drives.values()]:
        frames, _ = read_video_frames(video)
        h, w = frames[0].shape[:2]
        crop = [
            f[int(0.1 * h) : int(0.72 * h), int(0.22 * w) : int(0.78 * w)] for f in (frames[i] for i in idx)
        ]
        rows.append(np.concatenate(crop, 1))
    Image.fromarray(np.concatenate(rows, 0)).save(path)


def _report(label: str, results: list[RoundTrip]) -> None:
    print(f"\n## {label}: round trip (ours), baseline, fit and ceiling — Pearson r | amplitude ratio\n")
    print(format_table(results, "ours", "baseline"))
    fails = [f for rt in results for f in rt.failures("ours", GOAL_R, GOAL_AMP)]
    base = [f for rt in results for f in rt.failures("baseline", GOAL_R, GOAL_AMP)]
    n = sum(len(rt.moving) for rt in results)
    goal = f"goal r >= {GOAL_R}, amplitude {GOAL_AMP[0]}-{GOAL_AMP[1]}"
    print(f"\n{goal}: ours meets it on {n - len(fails)}/{n} features, baseline on {n - len(base)}/{n}")
    frames = sum(len(rt.drives["ours"].drive.found) for rt in results)
    t_ours = sum(rt.drives["ours"].seconds for rt in results) / frames
    t_base = sum(rt.drives["baseline"].seconds for rt in results) / frames
    print(f"fit time per frame (detection included): ours {t_ours:.3f} s, baseline {t_base:.3f} s, "
          f"ratio baseline/ours {t_base / t_ours:.2f}")  # fmt: skip
    errs = [float(rt.drives["ours"].drive.error_px.mean()) for rt in results]
    print(f"mean landmark reprojection error (ours): {np.mean(errs):.2f} px")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--avatar", type=Path, help="avatar .ply (default: train the demo avatar)")
    p.add_argument("--frames", type=int, default=90)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--out", type=Path, help="videos and PNGs (default: a temporary directory)")
    p.add_argument("--motions", nargs="+", default=list(MOTIONS), choices=MOTIONS)
    p.add_argument("--teacher", action="store_true", help="also the teacher and the dark-mouth teacher")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory()
    out = args.out or Path(tmp.name)
    out.mkdir(parents=True, exist_ok=True)
    avatars = {"demo avatar": _load(args.avatar or train_demo_avatar(out))}
    if args.teacher:
        avatars.update(_teachers())
    variants = {"ours": DriveOptions(), "baseline": pre_issue_options()}
    print(f"# drive round trip: {args.frames} frames at {args.fps:g} fps, {args.size}² renders")
    for label, avatar in avatars.items():
        results = []
        slug = label.replace(" ", "_").replace(",", "")
        for name in args.motions:
            t0 = time.perf_counter()
            rt = run_roundtrip(
                avatar, name, out / slug, args.frames, args.fps, args.size, variants=variants
            )  # fmt: skip
            _side_by_side(rt, out / slug / f"{name}_side_by_side.png")
            print(f"[{label}] {name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            results.append(rt)
        _report(label, results)
    print(f"\nvideos and side-by-side PNGs in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
