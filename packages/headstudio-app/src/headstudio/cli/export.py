"""``headstudio export AVATAR -o OUT [--format ply|ply-sequence|web|glb]``."""

from __future__ import annotations

import argparse

from ..commands import export
from ..output.gltf.writer import PARTS
from ._args import Parser, avatar_fields, avatar_options, finite_float, flags_of, path_or_none, positive_int


def add_parser(sub: argparse._SubParsersAction, common: Parser) -> None:
    e = sub.add_parser(
        "export", parents=[common, avatar_options()],
        help="posed PLY, PLY sequence, a self-contained web viewer folder, or a glb for engines",
    )  # fmt: skip
    e.add_argument(
        "--format", choices=export.FORMATS, default="ply",
        help="ply: one posed PLY (default); ply-sequence: one world-space PLY per motion frame in the "
        "folder -o; web: a folder with the browser viewer that plays from file:// with no server; "
        "glb: one glTF binary with KHR_gaussian_splatting splats and a skinned, textured mesh with "
        "ARKit's 52 blendshapes (docs/ENGINE_EXPORT.md)",
    )  # fmt: skip
    e.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="OUT.ply, OUT.glb, or a folder for the other formats",
    )
    e.add_argument(
        "--expression", action="append", metavar="I=V", help="set expression component I to V (ply)"
    )
    e.add_argument("--jaw", type=finite_float, metavar="RAD", help="jaw opening in radians (ply)")
    e.add_argument(
        "--motion",
        metavar="FILE",
        help="motion (default for ply-sequence/web: the procedural one; glb: none, else an animation)",
    )
    e.add_argument("--motion-frame", type=int, metavar="K", help="which motion frame (ply)")
    e.add_argument("--audio", metavar="WAV", help="audio played with the motion (web)")
    e.add_argument(
        "--include-head-model", action="store_true",
        help="web: also ship a FLAME head's model so the sliders work offline. Off by default because the "
        "FLAME model is licensed and may not be passed on; without it a FLAME avatar's folder plays its "
        "baked motion only. The open procedural head's model is always included.",
    )  # fmt: skip
    e.add_argument("--parts", choices=PARTS, help="glb: the splats, the mesh, or both (default both)")
    e.add_argument(
        "--texture-size", type=positive_int, metavar="PX",
        help="glb: side of the mesh's baked colour texture in pixels (default 1024)",
    )  # fmt: skip
    e.set_defaults(handle=handle, flags=flags_of(e, output="-o"))


def handle(args: argparse.Namespace) -> int:
    res = export.run(
        export.ExportOptions(
            **avatar_fields(args),
            output=args.output,
            format=args.format,
            expression=tuple(args.expression) if args.expression is not None else None,
            jaw=args.jaw,
            motion=path_or_none(args.motion),
            motion_frame=args.motion_frame,
            audio=path_or_none(args.audio),
            include_head_model=args.include_head_model,
            parts=args.parts,
            texture_size=args.texture_size,
        )  # fmt: skip
    )
    if res.format == "ply-sequence":
        print(f"wrote {res.frames} PLY frames to {res.output}")
    elif res.format == "glb":
        held = [f"{res.gaussians} Gaussians"] if res.gaussians else []
        if res.vertices:
            held.append(f"a {res.vertices}-vertex mesh with {res.morph_targets} morph targets")
        if res.frames:
            held.append(f"{res.frames} animation frames")
        print(f"wrote {res.output} ({', '.join(held)})")
    elif res.format == "web":
        print(f"wrote {res.output}/index.html (open it in a browser; it needs no server)")
    else:
        print(f"wrote {res.output}")
    return 0
