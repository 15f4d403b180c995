"""Photo avatars judged by a face-recognition network (issue 23).

For each real face photograph that ships offline in a package (scikit-image's astronaut, Eileen
Collins; matplotlib's sample portrait of Grace Hopper), the offline photo pipeline
(``headstudio.train.photo``: fit, views, colours, masked photometric training) builds an avatar,
then the avatar is rendered and compared with the photo by dlib's face-recognition ResNet
(``dlib-bin`` + ``face-recognition-models``; 128-d embeddings, the same person is below 0.6):

- front view at the neutral face, and at the photo's own view and expression;
- the neutral face turned 30 deg to either side;
- a smile and an open mouth (the viewer's expression presets, retargeted to the head).

Also reported: MediaPipe's landmark error of the photo-view render against the photo (pixels of
the photo), PSNR / SSIM inside the head mask at the photo's view, the time of each stage, and a
control: the distance between the two different people's photos (what "not the same person"
reads). No second photo of the same person ships offline, so that comparison is not made.

A grid per photo is written to ``--out``: the photo, the avatar at its view, front, +-30 deg,
smiling, talking (open mouth) and the back.

Usage: ``python benchmarks/bench_photo.py [--steps 300] [--size 256] [--out DIR] [--quick]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from headstudio.train.metrics import psnr, ssim
from PIL import Image

GOAL_FRONT, GOAL_OTHER = 0.5, 0.6


def photographs() -> dict[str, np.ndarray]:
    """The real face photographs that ship offline in installed packages."""
    out: dict[str, np.ndarray] = {}
    from skimage import data

    out["astronaut"] = data.astronaut()
    spec = importlib.util.find_spec("matplotlib")
    if spec and spec.submodule_search_locations:
        p = Path(spec.submodule_search_locations[0]) / "mpl-data" / "sample_data" / "grace_hopper.jpg"
        if p.is_file():
            out["grace_hopper"] = np.asarray(Image.open(p).convert("RGB"))
    return out


class FaceRecognizer:
    """dlib's face detector, 68-point shape predictor and ResNet embedding, from the files that
    ``face-recognition-models`` ships (found by path: its ``__init__`` needs pkg_resources)."""

    def __init__(self) -> None:
        import dlib

        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit(
                "pip install dlib-bin face-recognition-models (the offline face-recognition network)"
            )
        models = Path(spec.submodule_search_locations[0]) / "models"
        self.detector = dlib.get_frontal_face_detector()
        self.shape = dlib.shape_predictor(str(models / "shape_predictor_68_face_landmarks.dat"))
        self.net = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))

    def embed(self, rgb: np.ndarray) -> np.ndarray | None:
        """128-d embedding of the largest face in ``rgb [H, W, 3]`` uint8, or ``None``."""
        img = np.ascontiguousarray(rgb[..., :3])
        dets = self.detector(img, 1)
        if len(dets) == 0:  # small renders: look again at twice the size
            img = np.asarray(Image.fromarray(img).resize((img.shape[1] * 2, img.shape[0] * 2), Image.LANCZOS))
            dets = self.detector(img, 1)
        if len(dets) == 0:
            return None
        d = max(dets, key=lambda r: r.width() * r.height())
        return np.array(self.net.compute_face_descriptor(img, self.shape(img, d), 1))


def _u8(x: torch.Tensor) -> np.ndarray:
    return (x.detach().clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def run_one(name: str, rgb: np.ndarray, args: argparse.Namespace, rec: FaceRecognizer, out: Path) -> dict:
    from flame_core import FlameModel
    from headstudio.config import HeadStudioConfig
    from headstudio.demo.photo import photo_stills
    from headstudio.train.photo import photo_config, prepare_photo, start_photo_run
    from headstudio.train.photo_input import find_faces

    work = Path(tempfile.mkdtemp(prefix=f"bench-photo-{name}-"))
    path = work / f"{name}.png"
    Image.fromarray(rgb).save(path)
    t0 = time.perf_counter()
    head = FlameModel.procedural()
    setup = prepare_photo(path, head, args.size, quick=args.quick)
    t_prep = time.perf_counter() - t0
    cfg = photo_config(HeadStudioConfig(), args.steps, args.size, with_sds=False)
    cfg.train.device = "cpu"
    # exactly what `headstudio generate --image` runs offline
    trainer = start_photo_run(cfg, setup, work / "run", head, progress=False)
    t1 = time.perf_counter()
    trainer.train()
    t_train = time.perf_counter() - t1
    total = time.perf_counter() - t0
    av = trainer.avatar.eval()
    v = setup.view
    size = args.size
    # the same stills as `headstudio demo --photo` writes
    renders = photo_stills(av, v.viewmat, v.K, size, v.params())
    photo_emb = rec.embed(rgb)
    dist: dict[str, float | None] = {}
    for k, img in renders.items():
        if k == "back":
            continue
        e = rec.embed(_u8(img))
        dist[k] = None if (e is None or photo_emb is None) else round(float(np.linalg.norm(e - photo_emb)), 3)
    # photo-view fidelity inside the head mask, and MediaPipe's landmarks on the render
    target = v.image.permute(2, 0, 1)[None]
    pred = renders["photo view"].permute(2, 0, 1)[None]
    m = (v.mask * v.valid)[None, None]
    bgw = torch.ones_like(target)
    t_m = m * target + (1 - m) * bgw
    p_m = m * pred + (1 - m) * bgw
    faces = find_faces(_u8(renders["photo view"]))
    lm_err = None
    if faces:
        crop = setup.view
        x0y0_scale = _crop_transform(setup)
        lms_photo_in_crop = (setup.face.landmarks - x0y0_scale[0]) * x0y0_scale[1]
        lm_err = float(np.linalg.norm(faces[0].landmarks - lms_photo_in_crop, axis=1).mean() / x0y0_scale[1])
        del crop
    result = {
        "photo": name,
        "distance": dist,
        "fit_reprojection_px": round(setup.fit.error_px, 3),
        "render_landmark_error_px": None if lm_err is None else round(lm_err, 2),
        "psnr_masked_db": round(psnr(p_m.clamp(0, 1), t_m), 2),
        "ssim_masked": round(float(ssim(p_m.clamp(0, 1), t_m)), 4),
        "seconds": {"prepare": round(t_prep, 1), "train": round(t_train, 1), "total": round(total, 1)},
        "num_gaussians": av.num_gaussians,
        "steps": args.steps,
        "size": size,
    }
    photo_crop = _u8(v.image)
    grid = [photo_crop] + [
        _u8(renders[k]) for k in ("photo view", "front", "+30", "-30", "smile", "talking", "back")
    ]
    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(grid, 1)).save(out / f"photo_{name}.png")
    return result


def _crop_transform(setup) -> tuple[np.ndarray, float]:
    from headstudio.train.photo_views import crop_box

    x0, y0, side = crop_box(setup.face)
    return np.array([x0, y0], np.float32), setup.view.size[0] / side


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--quick", action="store_true", help="a shorter landmark fit")
    ap.add_argument("--out", type=Path, default=Path("outputs/bench_photo"))
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    rec = FaceRecognizer()
    photos = photographs()
    results = []
    embs = {k: rec.embed(v) for k, v in photos.items()}
    for name, rgb in photos.items():
        r = run_one(name, rgb, args, rec, args.out)
        results.append(r)
        print(json.dumps(r), flush=True)
    if len(embs) >= 2 and all(e is not None for e in embs.values()):
        a, b = list(embs.values())[:2]
        print(f"control: distance between the two different people's photos {np.linalg.norm(a - b):.3f}")
    print(
        f"\n{'photo':14s} {'view':>6s} {'front':>6s} {'+30':>6s} {'-30':>6s} {'smile':>6s} {'talk':>6s}"
        "  PSNR  SSIM  lm px  time s"
    )
    for r in results:
        d = r["distance"]
        cells = " ".join(
            f"{'-' if d[k] is None else format(d[k], '.3f'):>6s}"
            for k in ("photo view", "front", "+30", "-30", "smile", "talking")
        )
        print(
            f"{r['photo']:14s} {cells}  {r['psnr_masked_db']:.1f} {r['ssim_masked']:.3f} "
            f"{r['render_landmark_error_px'] or float('nan'):5.1f}  {r['seconds']['total']:.0f}"
        )
    print(
        f"goal: front < {GOAL_FRONT}, +-30 deg and expressions < {GOAL_OTHER}; "
        "offline run <= 300 s on 2 cores"
    )
    (args.out / "bench_photo.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
