"""``eval``: CLIP score of an avatar's renders against a prompt."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .._atomic import atomic_output
from ..errors import HeadStudioError
from ..output.evaluate import DEFAULT_CLIP_MODELS, evaluate_avatar
from ..output.rendering import check_size
from .common import AvatarOptions, open_avatar

__all__ = ["EvalOptions", "EvalResult", "run"]


@dataclass(frozen=True, kw_only=True)
class EvalOptions(AvatarOptions):
    """``prompt``: the text the avatar was made from; ``clip_models`` (``None``: the paper's 3);
    ``size`` of the renders; ``json``: also write the scores there."""

    prompt: str
    clip_models: tuple[str, ...] | None = None
    size: int = 224
    json: Path | None = None


@dataclass(frozen=True)
class EvalResult:
    """``scores``: CLIP score per model."""

    scores: dict[str, float]
    num_views: int


def run(options: EvalOptions) -> EvalResult:
    if not options.prompt.strip():
        raise HeadStudioError("the prompt is empty; pass the text the avatar was made from with «prompt».")
    check_size(options.size)
    avatar, device = open_avatar(options)
    res = evaluate_avatar(
        avatar, options.prompt, options.clip_models or DEFAULT_CLIP_MODELS, options.size, device
    )
    if options.json:
        with atomic_output(options.json) as tmp:
            doc = {"prompt": res.prompt, "num_views": res.num_views, "scores": res.scores}
            tmp.write_text(json.dumps(doc, indent=2))
    return EvalResult(dict(res.scores), res.num_views)
