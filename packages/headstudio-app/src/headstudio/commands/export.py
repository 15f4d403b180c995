"""``export``: a posed PLY, a PLY per motion frame, a self-contained web viewer folder, or a glTF
binary for engines (splats and/or a skinned mesh with ARKit morph targets, docs/ENGINE_EXPORT.md).

Which options go with which format is decided here, before the avatar is read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import HeadStudioError, require_file
from ..head_motion import MOTION_SUFFIXES
from ..output.export import (
    export_ply_sequence,
    export_posed,
    export_web,
    parse_expression_args,
    posed_flame_params,
)
from ..output.gltf.writer import PARTS, export_glb
from ..output.viewer.presets import fit_presets
from .common import AvatarOptions, check_output, open_avatar

__all__ = ["ExportOptions", "ExportResult", "run", "FORMATS"]

FORMATS = ("ply", "ply-sequence", "web", "glb")


@dataclass(frozen=True, kw_only=True)
class ExportOptions(AvatarOptions):
    """``format``: ``ply`` (one posed PLY), ``ply-sequence`` (a folder of one PLY per motion
    frame), ``web`` (a viewer folder) or ``glb`` (one glTF binary); ``expression`` (``"I=V"``
    items), ``jaw`` (radians) and ``motion_frame`` pose the ``ply``; ``motion`` / ``audio``;
    ``include_head_model`` (``web``); ``parts`` (``glb``: ``splats``, ``mesh`` or ``both``, ``None``:
    both) and ``texture_size`` (``glb``: the baked texture's side in pixels, ``None``: 1024)."""

    output: Path
    format: Literal["ply", "ply-sequence", "web", "glb"] = "ply"
    expression: tuple[str, ...] | None = None
    jaw: float | None = None
    motion: Path | None = None
    motion_frame: int | None = None
    audio: Path | None = None
    include_head_model: bool = False
    parts: Literal["splats", "mesh", "both"] | None = None
    texture_size: int | None = None


@dataclass(frozen=True)
class ExportResult:
    """``output``: the file or folder written; ``frames``: PLY frames of a ``ply-sequence``, or the
    animation frames of a ``glb``; ``gaussians`` / ``vertices`` / ``morph_targets``: what a ``glb``
    holds (0 for a part it leaves out)."""

    format: str
    output: Path
    frames: int = 0
    gaussians: int = 0
    vertices: int = 0
    morph_targets: int = 0


def _check_writable(out: Path) -> None:
    """Refuse an output whose folder cannot be created or written in, before any work.

    Raises:
        HeadStudioError: the nearest existing folder above ``out`` is a file or not writable.
    """
    parent = out.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise HeadStudioError(
            f"«output» '{out}' is inside '{parent}', which is a file; give a path in a folder."
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise HeadStudioError(
            f"«output» '{out}': cannot write in '{parent}' (permission denied); "
            "give a folder you can write to."
        )


def check(options: ExportOptions) -> Path:
    """The flag compatibility of ``options`` and their output path.

    Raises:
        HeadStudioError: an option of another format, or an output of the wrong kind.
    """
    fmt = options.format
    if fmt not in FORMATS:
        raise HeadStudioError(f"unknown export format '{fmt}'; give one of {', '.join(FORMATS)}.")
    if options.motion is not None:
        require_file(options.motion, "motion file", MOTION_SUFFIXES)
    if options.audio is not None:
        require_file(options.audio, "audio file")
    ply_only = {"expression": options.expression, "jaw": options.jaw, "motion_frame": options.motion_frame}
    for name, value in ply_only.items():
        if value is not None and fmt != "ply":
            raise HeadStudioError(f"«{name}» poses a single PLY; it applies to «format» ply, not {fmt}.")
    if options.audio is not None and fmt != "web":
        raise HeadStudioError("«audio» goes into a web export; use it with «format» web.")
    if options.include_head_model and fmt != "web":
        raise HeadStudioError("«include_head_model» applies to «format» web.")
    for name, value in {"parts": options.parts, "texture_size": options.texture_size}.items():
        if value is not None and fmt != "glb":
            raise HeadStudioError(f"«{name}» applies to «format» glb.")
    if fmt == "glb":
        if options.parts is not None and options.parts not in PARTS:
            raise HeadStudioError(f"«parts» must be one of {', '.join(PARTS)}; got '{options.parts}'.")
        if options.parts == "splats" and options.motion is not None:
            raise HeadStudioError("a motion animates the mesh; use «parts» mesh or both with «motion».")
        if options.texture_size is not None and not 16 <= options.texture_size <= 8192:
            raise HeadStudioError(f"«texture_size» must be 16 to 8192 pixels; got {options.texture_size}.")
        out = check_output(options.output, (".glb",))
        _check_writable(out)
        return out
    if fmt == "ply":
        out = check_output(options.output, (".ply",))
        if options.motion is None and options.motion_frame is not None:
            raise HeadStudioError("«motion_frame» needs «motion» FILE.")
        return out
    out = Path(options.output)
    if out.suffix.lower() == ".ply":
        raise HeadStudioError(f"«format» {fmt} writes a folder; give «output» a folder name, not '{out}'.")
    return out


def run(options: ExportOptions) -> ExportResult:
    out = check(options)
    avatar, _ = open_avatar(options)
    if options.format == "glb":
        try:
            got = export_glb(
                avatar, out, parts=options.parts or "both", motion=options.motion,
                texture_size=options.texture_size or 1024,
            )  # fmt: skip
        except PermissionError as e:  # a folder that passed the check but refuses the file
            raise HeadStudioError(
                f"«output» '{out}': cannot write there ({e.strerror}); give a folder you can write to."
            ) from None
        return ExportResult(
            options.format,
            out,
            got["num_frames"],
            got["num_gaussians"],
            got["num_vertices"],
            got["num_targets"],
        )
    if options.format == "ply-sequence":
        paths = export_ply_sequence(avatar, out, options.motion, progress=options.progress)
        return ExportResult(options.format, out, len(paths))
    if options.format == "web":
        procedural = avatar.head.source == "procedural"
        presets = fit_presets(avatar.head) if procedural or options.include_head_model else None
        export_web(
            avatar, out, options.motion, options.audio, include_head_model=options.include_head_model,
            presets=presets, progress=options.progress,
        )  # fmt: skip
        return ExportResult(options.format, out)
    num_expr = avatar.head.num_expression
    params = posed_flame_params(
        num_expr, parse_expression_args(list(options.expression or []), num_expr), options.jaw,
        options.motion, options.motion_frame or 0,
    )  # fmt: skip
    export_posed(avatar, out, params)
    return ExportResult(options.format, out)
