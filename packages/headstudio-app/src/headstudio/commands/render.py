"""``render``: a turntable video or still images of an avatar."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import HeadStudioError
from ..output.rendering import ViewSettings, check_size, render_stills, render_turntable
from .common import AvatarOptions, check_output, open_avatar

__all__ = ["RenderOptions", "RenderResult", "run"]


@dataclass(frozen=True, kw_only=True)
class RenderOptions(AvatarOptions):
    """``views``: N still views to ``output`` (a ``.png`` grid or a folder); ``None``: a 360°
    turntable to ``output`` (``.mp4``) of ``frames`` frames at ``fps``; ``elevation`` in degrees."""

    output: Path
    views: int | None = None
    size: tuple[int, int] = (512, 512)
    frames: int = 120
    fps: float = 30.0
    elevation: float = 0.0


@dataclass(frozen=True)
class RenderResult:
    """The turntable (``frames``) or the still images (``images``)."""

    output: Path
    frames: int = 0
    images: tuple[Path, ...] = ()


def run(options: RenderOptions) -> RenderResult:
    w, h = check_size(*options.size)
    settings = ViewSettings(elevation_deg=options.elevation)
    if options.views is None:
        out = check_output(options.output, (".mp4",))
        avatar, _ = open_avatar(options)
        n = render_turntable(
            avatar, out, options.frames, options.fps, (w, h), settings, progress=options.progress
        )
        return RenderResult(out, frames=n)
    out = Path(options.output)
    if out.suffix and out.suffix.lower() != ".png":
        raise HeadStudioError(f"output '{out}' must be a .png file or a directory for «views».")
    avatar, _ = open_avatar(options)
    return RenderResult(out, images=tuple(render_stills(avatar, out, options.views, (w, h), settings)))
