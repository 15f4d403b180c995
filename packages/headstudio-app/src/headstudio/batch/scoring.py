"""``headstudio batch --eval``: the CLIP score of every finished avatar, each CLIP model loaded
once for the whole batch (after training, so it never competes with it for a GPU)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from ..errors import HeadStudioError
from ..output.evaluate import ClipScorer, render_eval_views
from ..train.run_folder import RunFolder
from ..train.runtime import load_avatar
from .report import ItemRecord

__all__ = ["score_records"]

log = logging.getLogger(__name__)


def score_records(
    records: Sequence[ItemRecord],
    models: Sequence[str],
    device: torch.device,
    size: int = 224,
    progress: bool = True,
) -> str | None:
    """Set ``clip_score`` / ``clip_scores`` of ``records`` (their ``output/avatar.ply`` against
    their prompt, averaged over the evaluation views as ``headstudio eval`` does); returns a line
    saying why there are no scores when a CLIP model is not at hand, else ``None``."""
    if not records:
        return None
    try:
        scorers = [ClipScorer(m, device) for m in models]
    except HeadStudioError as err:
        return f"no CLIP scores: {err}"
    for rec in tqdm(records, desc="CLIP score", unit="avatar", disable=not progress, dynamic_ncols=True):
        try:
            avatar = load_avatar(RunFolder(rec.output).avatar, None, device)
            images = render_eval_views(avatar, size)
            rec.clip_scores = {s.name: round(s.score(images, rec.prompt), 6) for s in scorers}
        except HeadStudioError as err:
            log.warning("%s: no CLIP score (%s)", rec.name, err)
            continue
        rec.clip_score = round(sum(rec.clip_scores.values()) / len(rec.clip_scores), 6)
    return None
