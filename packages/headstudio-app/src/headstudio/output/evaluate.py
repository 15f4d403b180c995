"""CLIP score of an avatar against its prompt, as in the paper's table.

The score of one CLIP model is the cosine similarity between the image embedding of each
rendered view and the text embedding of the prompt, averaged over a fixed set of views
(:data:`EVAL_VIEWS`, neutral pose). The paper reports it for ViT-L/14, ViT-B/16 and ViT-B/32
(0.275 / 0.322 / 0.317 averaged over its 10 prompts).

Models are ``transformers`` ``CLIPModel`` checkpoints given by hub id or local directory. A hub id
is first looked up under ``$HEADSTUDIO_CLIP_ROOT/<id>`` (a directory of downloaded checkpoints),
then in the Hugging Face cache; nothing is downloaded when ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fsds_guidance.models import hub_offline, hub_reachable

from ..avatar import Avatar
from ..errors import HeadStudioError
from .rendering import ViewSettings, check_size, frame_avatar, orbit_views, render_views

__all__ = [
    "DEFAULT_CLIP_MODELS",
    "EVAL_VIEWS",
    "ClipScorer",
    "resolve_clip_source",
    "render_eval_views",
    "evaluate_avatar",
    "EvalResult",
]

log = logging.getLogger(__name__)

DEFAULT_CLIP_MODELS: tuple[str, ...] = (
    "openai/clip-vit-large-patch14",
    "openai/clip-vit-base-patch16",
    "openai/clip-vit-base-patch32",
)

#: Fixed evaluation views (azimuth°, elevation°), azimuth 0 = in front of the face.
EVAL_VIEWS: tuple[tuple[float, float], ...] = (
    (0.0, 0.0), (30.0, 0.0), (-30.0, 0.0), (60.0, 0.0), (-60.0, 0.0),
    (90.0, 0.0), (-90.0, 0.0), (0.0, 15.0), (0.0, -15.0),
)  # fmt: skip


def resolve_clip_source(model: str) -> str:
    """Map a hub id or directory to what ``from_pretrained`` should load.

    An existing directory is used as is; ``$HEADSTUDIO_CLIP_ROOT/<id>`` overrides a hub id.
    """
    if Path(model).is_dir():
        return str(Path(model))
    if os.path.sep in model and (model.startswith((".", "/", "~")) or Path(model).suffix):
        raise HeadStudioError(f"CLIP model directory '{model}' does not exist; check «clip_models».")
    root = os.environ.get("HEADSTUDIO_CLIP_ROOT")
    if root and (Path(root) / model).is_dir():
        return str(Path(root) / model)
    return model


def _image_processor_class() -> Any:
    """``CLIPImageProcessor``, or its PIL twin when torchvision is missing (which transformers
    would otherwise pick itself, with a warning line on stderr in the middle of the CLI's output)."""
    import transformers  # optional heavy dependency: imported when CLIP is used

    if importlib.util.find_spec("torchvision") is None and hasattr(transformers, "CLIPImageProcessorPil"):
        return transformers.CLIPImageProcessorPil
    return transformers.CLIPImageProcessor


class ClipScorer:
    """One CLIP model with its tokenizer and image processor.

    Args:
        model: hub id or local directory (see :func:`resolve_clip_source`).
        device: torch device for the model.
    """

    def __init__(self, model: str, device: str | torch.device = "cpu") -> None:
        src = resolve_clip_source(model)  # before importing transformers: a bad path fails fast
        from transformers import CLIPModel, CLIPTokenizer

        CLIPImageProcessor = _image_processor_class()

        self.name = model

        def load(local_only: bool) -> None:
            kw = {"local_files_only": local_only}
            self.model = CLIPModel.from_pretrained(src, **kw).to(device).eval()
            self.tokenizer = CLIPTokenizer.from_pretrained(src, **kw)
            self.image_processor = CLIPImageProcessor.from_pretrained(src, **kw)

        try:
            try:  # the local cache first: no network round trips (and retries) when it is there
                load(local_only=True)
            except (OSError, ValueError):
                if Path(src).is_dir() or hub_offline() or not hub_reachable():
                    raise
                load(local_only=False)
        except (OSError, ValueError) as err:
            raise HeadStudioError(
                f"could not load CLIP model '{model}' ({str(err).strip().splitlines()[0][:160]}); "
                f"if offline, download it once (`hf download {model}`) or pass «clip_models» /path/to/dir "
                f"(or set HEADSTUDIO_CLIP_ROOT to a directory holding {model})."
            ) from err
        self.device = torch.device(device)

    @torch.no_grad()
    def text_embedding(self, prompt: str) -> torch.Tensor:
        """Unit-norm text embedding ``[D]`` of ``prompt``."""
        tok = self.tokenizer([prompt], padding=True, truncation=True, return_tensors="pt").to(self.device)
        text_out = self.model.text_model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"])
        pooled = text_out.pooler_output
        emb = self.model.text_projection(pooled)[0]
        return emb / emb.norm()

    @torch.no_grad()
    def image_embeddings(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Unit-norm image embeddings ``[N, D]`` of uint8 images ``[H, W, 3]``."""
        pix = self.image_processor(images=list(images), return_tensors="pt")["pixel_values"].to(self.device)
        pooled = self.model.vision_model(pixel_values=pix).pooler_output
        emb = self.model.visual_projection(pooled)
        return emb / emb.norm(dim=-1, keepdim=True)

    def score(self, images: Sequence[np.ndarray], prompt: str) -> float:
        """Mean cosine similarity between each image and the prompt."""
        if not prompt.strip():
            raise HeadStudioError("the prompt is empty; pass the avatar's text with «prompt».")
        return float((self.image_embeddings(images) @ self.text_embedding(prompt)).mean())


def render_eval_views(
    avatar: Avatar, size: int = 224, views: Sequence[tuple[float, float]] = EVAL_VIEWS
) -> list[np.ndarray]:
    """Render the neutral avatar at the fixed views: a list of uint8 images ``[size, size, 3]``."""
    w, h = check_size(size)
    settings = ViewSettings()
    target, dist = frame_avatar(avatar, settings)
    az = [v[0] for v in views]
    el = [v[1] for v in views]
    vms, ks = orbit_views(az, el, dist, settings.fovy_deg, w, h, target)
    return list(render_views(avatar, vms, ks, w, h, settings.background))


@dataclass(frozen=True)
class EvalResult:
    """CLIP scores per model (``{model: score}``) for one prompt over ``num_views`` views."""

    prompt: str
    scores: dict[str, float]
    num_views: int


def evaluate_avatar(
    avatar: Avatar,
    prompt: str,
    models: Sequence[str] = DEFAULT_CLIP_MODELS,
    size: int = 224,
    device: str | torch.device = "cpu",
) -> EvalResult:
    """CLIP score of ``avatar`` against ``prompt`` for each model, averaged over :data:`EVAL_VIEWS`."""
    if not prompt or not prompt.strip():
        raise HeadStudioError("the prompt is empty; pass the text the avatar was made from with «prompt».")
    images = render_eval_views(avatar, size)
    scores = {}
    for m in models:
        scorer = ClipScorer(m, device)
        scores[m] = scorer.score(images, prompt)
        log.info("CLIP %s: %.4f", m, scores[m])
        del scorer
    return EvalResult(prompt=prompt, scores=scores, num_views=len(images))
