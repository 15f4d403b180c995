"""CLIP score with a tiny random CLIP written to disk at run time (no download)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from headstudio.errors import HeadStudioError
from headstudio.output.evaluate import EVAL_VIEWS, ClipScorer, evaluate_avatar, render_eval_views


def test_clip_score_equals_hand_cosine(tiny_clip: Path, point_avatar) -> None:
    from transformers import CLIPModel, CLIPTokenizer

    prompt = "a portrait of a sphere"
    res = evaluate_avatar(point_avatar, prompt, models=[str(tiny_clip)], size=32)
    assert res.num_views == len(EVAL_VIEWS)
    score = res.scores[str(tiny_clip)]

    # Hand computation: normalise pixels ourselves (32² images need no resize / crop), run the
    # full CLIPModel forward, and undo its logit scale to get each image-text cosine.
    images = render_eval_views(point_avatar, 32)
    assert len({img.tobytes() for img in images}) == len(images), "views must differ"
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073])
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711])
    pix = (torch.from_numpy(np.stack(images)).float() / 255 - mean) / std
    model = CLIPModel.from_pretrained(tiny_clip).eval()
    ids = CLIPTokenizer.from_pretrained(tiny_clip)([prompt], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model(input_ids=ids, pixel_values=pix.permute(0, 3, 1, 2))
        cos = out.logits_per_image[:, 0] / model.logit_scale.exp()
    assert score == pytest.approx(float(cos.mean()), abs=1e-5)
    assert -1.0 <= score <= 1.0

    # A different prompt gives a different score (the text path matters).
    other = ClipScorer(str(tiny_clip)).score(images, "zzz qqq")
    assert other != pytest.approx(score, abs=1e-6)


def test_clip_errors(tiny_clip: Path, point_avatar, tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(HeadStudioError, match="prompt is empty"):
        evaluate_avatar(point_avatar, "  ", models=[str(tiny_clip)], size=32)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HeadStudioError, match="could not load CLIP model 'nobody/no-such-clip'"):
        ClipScorer("nobody/no-such-clip")
    with pytest.raises(HeadStudioError, match="does not exist"):
        ClipScorer(str(tmp_path / "missing" / "clip.dir"))
