"""View-dependent prompts and cached CLIP text embeddings.

View suffix thresholds (angles in degrees; azimuth 0 = camera in front of the face, measured
around the vertical axis, elevation positive = camera above the head):

- ``"overhead view"`` if ``elevation > 60``;
- otherwise with the azimuth wrapped to ``(-180, 180]``: ``"front view"`` if ``|az| < 45``,
  ``"back view"`` if ``|az| > 135``, else ``"side view"``.

The prompt sent to the text encoder is ``f"{prompt}, {suffix}"`` (DreamFusion's convention).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

#: The negative prompt of the paper (PAPER.md, F-SDS).
DEFAULT_NEGATIVE_PROMPT = (
    "unrealistic, blurry, low quality, out of focus, ugly, low contrast, dull, dark, low-resolution, gloomy"
)
OVERHEAD_ELEVATION_DEG = 60.0
FRONT_AZIMUTH_DEG = 45.0
BACK_AZIMUTH_DEG = 135.0
VIEWS = ("front view", "side view", "back view", "overhead view")


def view_suffix(azimuth_deg: float, elevation_deg: float) -> str:
    """The view phrase for one camera (thresholds in the module docstring)."""
    if elevation_deg > OVERHEAD_ELEVATION_DEG:
        return "overhead view"
    # The trainer passes the camera sampler's own angles, so a camera placed at exactly 45 or 135
    # degrees gets the same phrase on every CPU; angles read back from a view matrix
    # (headstudio.cameras.camera_angles) carry float32 error and may fall either side there.
    az = (float(azimuth_deg) + 180.0) % 360.0 - 180.0
    if az == -180.0:
        az = 180.0
    if abs(az) < FRONT_AZIMUTH_DEG:
        return "front view"
    if abs(az) > BACK_AZIMUTH_DEG:
        return "back view"
    return "side view"


def view_prompts(
    prompt: str, azimuth_deg: Tensor | Sequence[float], elevation_deg: Tensor | Sequence[float]
) -> list[str]:
    """``[B]`` prompts ``f"{prompt}, {view_suffix(az, el)}"`` for ``[B]`` cameras."""
    az = torch.as_tensor(azimuth_deg, dtype=torch.float64).reshape(-1).tolist()
    el = torch.as_tensor(elevation_deg, dtype=torch.float64).reshape(-1).tolist()
    if len(az) != len(el):
        raise ValueError(f"azimuth_deg has {len(az)} entries but elevation_deg has {len(el)}")
    return [f"{prompt}, {view_suffix(a, e)}" for a, e in zip(az, el, strict=True)]


def prompt_length(tokenizer, text_encoder) -> int:
    """Token count of an encoded prompt: the tokenizer's ``model_max_length``, capped by the text
    encoder's position count (``max_position_embeddings``, 77 for CLIP).

    A tokenizer folder without ``model_max_length`` in its ``tokenizer_config.json`` reads back
    with a huge placeholder (``1e30``); padding to it would fail, so the encoder decides.

    Raises:
        ValueError: neither gives a usable length.
    """
    limit = getattr(getattr(text_encoder, "config", None), "max_position_embeddings", None)
    length = int(getattr(tokenizer, "model_max_length", 0) or 0)
    if limit:
        length = min(length, int(limit)) if length > 0 else int(limit)
    if not 0 < length <= 100_000:
        raise ValueError(
            f"cannot tell the prompt length: the tokenizer's model_max_length is {length} and the text "
            "encoder has no max_position_embeddings; set model_max_length in tokenizer_config.json"
        )
    return length


class PromptCache:
    """CLIP text embeddings computed once per distinct string, never per step.

    Args:
        tokenizer: a ``CLIPTokenizer``.
        text_encoder: a frozen ``CLIPTextModel``.
        negative_prompt: text of the negative condition.

    ``encode_calls`` counts text-encoder invocations (one per distinct string); every prompt is
    padded or truncated to ``max_length`` tokens (:func:`prompt_length`).
    """

    def __init__(self, tokenizer, text_encoder, negative_prompt: str = DEFAULT_NEGATIVE_PROMPT) -> None:
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.negative_prompt = negative_prompt
        self.max_length = prompt_length(tokenizer, text_encoder)
        self._cache: dict[str, Tensor] = {}
        self.encode_calls = 0

    @torch.no_grad()
    def _encode(self, text: str) -> Tensor:
        tok = self.tokenizer(
            [text],
            padding="max_length",
            max_length=self.max_length,
            truncation=True,
            return_tensors="pt",
        )
        device = next(self.text_encoder.parameters()).device
        self.encode_calls += 1
        return self.text_encoder(tok.input_ids.to(device))[0]  # [1, max_length (77), D]

    def embed(self, text: str) -> Tensor:
        """``[1, 77, D]`` embedding of ``text`` (cached)."""
        emb = self._cache.get(text)
        if emb is None:
            emb = self._encode(text)
            self._cache[text] = emb
            logger.debug("encoded prompt %r", text)
        return emb

    def embed_batch(self, texts: Sequence[str]) -> Tensor:
        """``[B, 77, D]`` embeddings of ``B`` strings (each distinct string encoded once)."""
        return torch.cat([self.embed(t) for t in texts], dim=0)

    def empty(self, batch_size: int = 1) -> Tensor:
        """``[B, 77, D]`` embedding of the empty prompt."""
        return self.embed("").expand(batch_size, -1, -1)

    def negative(self, batch_size: int = 1) -> Tensor:
        """``[B, 77, D]`` embedding of the negative prompt."""
        return self.embed(self.negative_prompt).expand(batch_size, -1, -1)

    def views(self, prompt: str, azimuth_deg: Tensor, elevation_deg: Tensor) -> Tensor:
        """``[B, 77, D]`` embeddings of the view-dependent prompts for ``[B]`` cameras."""
        return self.embed_batch(view_prompts(prompt, azimuth_deg, elevation_deg))
