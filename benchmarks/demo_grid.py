"""Old demo against new demo: one picture grid.

Rows: the old and the new demo avatar. Columns (:data:`VIEWS`): the turntable's framing at azimuth
0 (front), +45°, −45°, 90° (side) and 180° (back), and the front with the jaw open 0.25 rad.

Usage::

    python benchmarks/demo_grid.py --old OLD --new NEW -o docs/images/demo_old_vs_new.png

``OLD`` and ``NEW`` are each an ``avatar.ply``, rendered here with this checkout's code, or a folder
of the six views written by ``--render``. An avatar this checkout's code refuses (one made on an
earlier procedural head) is rendered with the code it was made with first::

    PYTHONPATH=<old checkout's package src folders> python benchmarks/demo_grid.py \\
        --render OLD/avatar.ply --views-out OLD_VIEWS

``--render`` uses only what every version of headstudio since the render module was written has
(``load_avatar``, ``frame_avatar``, ``orbit_views``, ``render_views``, under ``headstudio.train.runtime``
/ ``headstudio.output.rendering`` or, before the app was split into wings, ``headstudio.runtime`` /
``headstudio.rendering``).
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

#: (file stem, column title, azimuth in degrees, jaw opening in rad).
VIEWS = (
    ("front", "front", 0.0, 0.0),
    ("az+45", "+45°", 45.0, 0.0),
    ("az-45", "-45°", -45.0, 0.0),
    ("side", "side (90°)", 90.0, 0.0),
    ("back", "back (180°)", 180.0, 0.0),
    ("open_mouth", "jaw 0.25 rad", 0.0, 0.25),
)
LABEL_W, TITLE_H = 110, 26


def _render_api():  # noqa: ANN202
    """``(load_avatar, frame_avatar, orbit_views, render_views, ViewSettings)`` of whichever
    headstudio is importable (after or before the app's split into wings)."""
    try:
        from headstudio.output.rendering import ViewSettings, frame_avatar, orbit_views, render_views
        from headstudio.train.runtime import load_avatar
    except ImportError:
        from headstudio.rendering import ViewSettings, frame_avatar, orbit_views, render_views
        from headstudio.runtime import load_avatar
    return load_avatar, frame_avatar, orbit_views, render_views, ViewSettings


def render_views_of(avatar_path: Path, size: int) -> dict[str, np.ndarray]:
    """The :data:`VIEWS` of an avatar file: ``{stem: uint8 [size, size, 3]}``.

    Raises:
        headstudio.errors.HeadStudioError: the avatar cannot be loaded by this code (e.g. it was
            made on another procedural head).
    """
    import torch

    load_avatar, frame_avatar, orbit_views, render_views, ViewSettings = _render_api()
    avatar = load_avatar(avatar_path, None, torch.device("cpu"))
    s = ViewSettings()
    target, dist = frame_avatar(avatar, s)
    out = {}
    for stem, _, az, jaw in VIEWS:
        vm, k = orbit_views([az], s.elevation_deg, dist, s.fovy_deg, size, size, target.cpu())
        kw = {"jaw_pose": torch.tensor([[jaw, 0.0, 0.0]])} if jaw else {}
        if kw and "params" in inspect.signature(render_views).parameters:  # FlameParams (new code)
            from flame_core import FlameParams

            kw = {"params": FlameParams(**kw)}
        out[stem] = next(iter(render_views(avatar, vm, k, size, size, s.background, **kw)))
    return out


def save_views(views: dict[str, np.ndarray], folder: Path) -> Path:
    """Write ``views`` as ``<stem>.png`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for stem, img in views.items():
        Image.fromarray(img).save(folder / f"{stem}.png")
    return folder


def load_views(folder: Path) -> dict[str, np.ndarray]:
    """The :data:`VIEWS` written by ``--render`` into ``folder``.

    Raises:
        FileNotFoundError: a view is missing (the message names it and the command that writes it).
    """
    out = {}
    for stem, *_ in VIEWS:
        p = folder / f"{stem}.png"
        if not p.is_file():
            raise FileNotFoundError(
                f"'{p}' is missing; write the views with `python benchmarks/demo_grid.py --render "
                f"AVATAR.ply --views-out {folder}`"
            )
        out[stem] = np.asarray(Image.open(p).convert("RGB"))
    return out


def grid(rows: dict[str, dict[str, np.ndarray]], size: int) -> Image.Image:
    """One row per entry of ``rows`` (its name on the left), one column per view (titled)."""
    img = Image.new("RGB", (LABEL_W + len(VIEWS) * size, TITLE_H + len(rows) * size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for c, (_, title, *_) in enumerate(VIEWS):
        draw.text((LABEL_W + c * size + 6, 7), title, fill=(0, 0, 0))
    for r, (name, views) in enumerate(rows.items()):
        y = TITLE_H + r * size
        draw.text((6, y + size // 2 - 6), name, fill=(0, 0, 0))
        for c, (stem, *_) in enumerate(VIEWS):
            cell = Image.fromarray(views[stem])
            if cell.size != (size, size):
                cell = cell.resize((size, size), Image.BILINEAR)
            img.paste(cell, (LABEL_W + c * size, y))
    return img


def _views(source: Path, size: int, name: str) -> dict[str, np.ndarray]:
    if source.is_dir():
        return load_views(source)
    from headstudio.errors import HeadStudioError

    try:
        return render_views_of(source, size)
    except HeadStudioError as err:
        raise SystemExit(
            f"the {name} avatar '{source}' cannot be rendered by this checkout ({err}); render it with the "
            f"code it was made with: PYTHONPATH=<that checkout's package src folders> python "
            f"benchmarks/demo_grid.py --render {source} --views-out DIR, then pass --{name} DIR"
        ) from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", type=Path, help="old demo: avatar.ply or a folder of views (--render)")
    p.add_argument("--new", type=Path, help="new demo: avatar.ply or a folder of views (--render)")
    p.add_argument("-o", "--output", type=Path, help="the grid PNG")
    p.add_argument("--render", type=Path, help="render this avatar's views into --views-out and stop")
    p.add_argument("--views-out", type=Path, help="folder for --render's views")
    p.add_argument("--size", type=int, default=256, help="pixels per view (square)")
    args = p.parse_args(argv)
    if args.render is not None:
        if args.views_out is None:
            p.error("--render needs --views-out FOLDER")
        print(save_views(render_views_of(args.render, args.size), args.views_out))
        return 0
    if args.old is None or args.new is None or args.output is None:
        p.error("give --old, --new and -o (or --render with --views-out)")
    rows = {"old demo": _views(args.old, args.size, "old"), "new demo": _views(args.new, args.size, "new")}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    grid(rows, args.size).save(args.output)
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
