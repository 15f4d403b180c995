"""ARKit curves on the drive round trip: what ``headstudio drive --arkit-out`` captures of known motions.

For each round-trip motion (``headstudio.animate.roundtrip.MOTIONS``: procedural talking, jaw only,
brows, blinks, gaze sweeps) the avatar is rendered to MP4 with the true motion and driven from that
video with ``headstudio drive``'s defaults, as in ``bench_drive.py``. Both the true motion and the
captured one become ARKit curves through the avatar's fitted ARKit basis, exactly as ``drive
--arkit-out`` converts (``headstudio.animate.arkit.motion_to_curves``), so both sides are in ARKit
units. Printed per motion and per curve that moves in the truth (std >= 0.03): Pearson r and the
amplitude ratio (std captured / std true), and per motion the share of the true motion the 52
curves can express at all (the basis' limit, not the capture's).

The baseline measured in the same run is the drive round trip's own ceiling on the jaw: the
captured ``jaw_pose`` against the true one (no ARKit conversion), so a weak curve can be told
apart from a weak capture.

Usage: ``python benchmarks/bench_arkit.py [--avatar AVATAR.ply] [--frames 90] [--size 256]
[--motions talk jaw ...] [--teacher] [--out DIR]``. Without ``--avatar`` the demo avatar is trained
first (``headstudio demo``'s defaults, as ``bench_drive.py`` does: minutes on a 2-core CPU; pass the
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
from headstudio.animate.arkit import basis_for
from headstudio.animate.arkit_roundtrip import (
    ArkitRoundTrip,
    arkit_roundtrip,
    format_arkit_table,
    summary_line,
)
from headstudio.animate.face_metrics import pearson
from headstudio.animate.roundtrip import MOTIONS, roundtrip_motion
from headstudio.avatar import Avatar
from headstudio.demo.teacher import build_teacher_avatar
from headstudio.train.runtime import load_avatar


def _jaw_line(rt: ArkitRoundTrip, captured_jaw: np.ndarray, true_jaw: np.ndarray) -> str:
    w = rt.matches.get("jawOpen")
    r_jaw = pearson(true_jaw, captured_jaw)
    amp_jaw = float(np.std(captured_jaw) / np.std(true_jaw))
    arkit = f"jawOpen r {w.r:.2f} amp {w.amplitude:.2f}" if w else "jawOpen does not move"
    return f"{rt.name}: {arkit}; the captured jaw_pose itself: r {r_jaw:.2f} amp {amp_jaw:.2f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--avatar", type=Path, help="avatar .ply (default: train the demo avatar)")
    p.add_argument("--frames", type=int, default=90)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--out", type=Path, help="source videos (default: a temporary directory)")
    p.add_argument("--motions", nargs="+", default=list(MOTIONS), choices=MOTIONS)
    p.add_argument("--teacher", action="store_true", help="also the procedural teacher avatar")
    p.add_argument("--threads", type=int, default=1)
    args, _ = p.parse_known_args(argv)  # `nox -s bench -- ...` passes every script the same options
    torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory()
    out = args.out or Path(tmp.name)
    out.mkdir(parents=True, exist_ok=True)
    avatars: dict[str, Avatar] = {}
    avatars["demo avatar"] = load_avatar(args.avatar or train_demo_avatar(out), None, torch.device("cpu"))
    if args.teacher:
        avatars["teacher"] = build_teacher_avatar(FlameModel.procedural()).eval()
    clip = f"{args.frames} frames at {args.fps:g} fps, {args.size}² renders"
    print(f"# ARKit curves on the drive round trip: {clip}")
    for label, avatar in avatars.items():
        t0 = time.perf_counter()
        basis = basis_for(avatar)
        print(f"[{label}] ARKit basis: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        results, jaw_lines = [], []
        for name in args.motions:
            t0 = time.perf_counter()
            torch.manual_seed(0)
            rt = arkit_roundtrip(
                avatar, name, out / label.replace(" ", "_"), args.frames, args.fps, args.size, basis=basis
            )  # fmt: skip
            results.append(rt)
            if name in ("jaw", "talk"):
                true_jaw = roundtrip_motion(name, args.frames, args.fps).jaw_pose[:, 0].numpy()
                jaw_lines.append(_jaw_line(rt, rt.captured_motion.jaw_pose[:, 0].numpy(), true_jaw))
            print(f"[{label}] {name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        print(f"\n## {label}: captured vs true ARKit curves — Pearson r | amplitude ratio\n")
        print(format_arkit_table(results))
        print(f"\n{summary_line(results)}")
        for line in jaw_lines:
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
