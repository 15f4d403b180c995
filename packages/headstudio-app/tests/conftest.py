"""Shared fixtures for the headstudio-app tests (offline, CPU, tiny sizes)."""

from __future__ import annotations

import math
import wave
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from flame_core import FlameModel, FlameParams
from torch import nn


class PointAvatar(nn.Module):
    """A small Avatar-like object (same public surface as ``headstudio.avatar.Avatar``).

    Its "mesh" is 400 points on a sphere of radius 0.1 m around (0, 0.05, 0); the jaw pose moves
    the lower half down (x rotation in radians × 0.05 m), expression 0 widens it. Rendering splats
    each point as one pixel coloured by its normal, with the OpenCV cameras it is given.
    """

    def __init__(self, num_expression: int = 10) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        d = torch.randn(400, 3, generator=g)
        base = 0.1 * d / d.norm(dim=-1, keepdim=True) + torch.tensor([0.0, 0.05, 0.0])
        self.register_buffer("base", base)
        self.means = nn.Parameter(base.clone())
        # a real head (what commands read from it: num_expression, identity, landmarks for motions);
        # the points ignore its mesh
        self.head = FlameModel.procedural(num_shape=1, num_expression=num_expression)
        self.metadata = {"prompt": "a test sphere"}

    def pose(self, params: FlameParams | None = None) -> torch.Tensor:
        """``[B, V, 3]`` posed points."""
        p = params if params is not None else FlameParams()
        expression, jaw_pose = p.expression, p.jaw_pose
        b = next((t.shape[0] for t in (expression, jaw_pose) if t is not None), 1)
        v = self.base[None].repeat(b, 1, 1)
        if jaw_pose is not None:
            lower = (v[..., 1] < 0.05).float()
            v[..., 1] = v[..., 1] - 0.05 * jaw_pose[:, :1] * lower
        if expression is not None:
            v[..., 0] = v[..., 0] * (1 + 0.2 * expression[:, :1])
        return v

    def world_gaussians(self, params: FlameParams | None = None) -> dict[str, torch.Tensor]:
        v = self.pose(params)[0]
        n = v.shape[0]
        return {
            "means": v,
            "quats": torch.tensor([1.0, 0, 0, 0]).repeat(n, 1),
            "scales": torch.full((n, 3), 0.01),
            "opacities": torch.full((n,), 0.9),
            "sh": torch.full((n, 1, 3), 0.2),
        }

    def render(self, viewmats, Ks, width, height, params=None, background=(1.0, 1.0, 1.0)):
        if viewmats.dim() == 3:
            viewmats, Ks = viewmats[None], Ks[None]
        verts = self.pose(params)  # [B, V, 3]
        B, C = viewmats.shape[:2]
        if verts.shape[0] != B:
            verts = verts.expand(B, -1, -1)
        rgb = torch.tensor(background, dtype=torch.float32).expand(B, C, height, width, 3).clone()
        col = (self.base - self.base.mean(0)) / 0.2 + 0.5
        for b in range(B):
            for c in range(C):
                cam = verts[b] @ viewmats[b, c, :3, :3].T + viewmats[b, c, :3, 3]
                uv = cam @ Ks[b, c].T
                px = (uv[:, :2] / uv[:, 2:]).floor().long()
                ok = (
                    (cam[:, 2] > 0)
                    & (px[:, 0] >= 0)
                    & (px[:, 0] < width)
                    & (px[:, 1] >= 0)
                    & (px[:, 1] < height)
                )
                rgb[b, c, px[ok, 1], px[ok, 0]] = col[ok].clamp(0, 1)
        return SimpleNamespace(rgb=rgb, alpha=None, depth=None, meta=None)


@pytest.fixture
def point_avatar() -> PointAvatar:
    return PointAvatar()


@pytest.fixture
def sine_wav(tmp_path: Path) -> Path:
    """A 1 s, 16 kHz mono 440 Hz sine WAV."""
    p = tmp_path / "tone.wav"
    sr = 16000
    t = np.arange(sr) / sr
    data = (0.3 * np.sin(2 * math.pi * 440 * t) * 32767).astype("<i2")
    with wave.open(str(p), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(sr)
        wf.writeframes(data.tobytes())
    return p


def make_tiny_clip(root: Path) -> Path:
    """Save a random CLIP (32² images, 16-d embeddings) with a character-level tokenizer."""
    from fsds_guidance.testing import tiny_tokenizer
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    tok = tiny_tokenizer(root)  # the byte-level vocabulary fsds-guidance's tiny models use
    vocab = tok.get_vocab()
    eos = vocab["<|endoftext|>"]
    cfg = CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=77, eos_token_id=eos, pad_token_id=eos,
            bos_token_id=vocab["<|startoftext|>"],
        ),
        vision_config=dict(
            image_size=32, patch_size=8, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
            num_attention_heads=4,
        ),
        projection_dim=16,
    )  # fmt: skip
    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(root)
    tok.save_pretrained(root)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        root
    )
    return root


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random CLIP saved to a folder (``--clip-model DIR``); session-wide: read-only."""
    return make_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture(scope="session")
def playwright_driver() -> Any:
    """One Playwright driver for the whole session (skips when Playwright is not installed).

    Playwright's sync API runs an event loop on the calling thread while a driver is open, so a
    second ``sync_playwright()`` in the same process fails ("Sync API inside the asyncio loop")
    whenever one is still open, e.g. the viewer's session browser beside the glTF client tests on
    one xdist worker. Every browser test launches its browser from this driver instead.
    """
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        yield p
