"""One F-SDS step with the real downloaded weights (skipped unless HEADSTUDIO_REAL_WEIGHTS=1)."""

import os

import pytest
import torch
from fsds_guidance import FSDS, FSDSConfig, load_guidance_models
from fsds_guidance.control import draw_control_map

pytestmark = pytest.mark.skipif(
    os.environ.get("HEADSTUDIO_REAL_WEIGHTS") != "1",
    reason="real diffusion weights: set HEADSTUDIO_REAL_WEIGHTS=1 (and download them, see README)",
)


def test_real_weights_step():
    models = load_guidance_models(local_files_only=True)
    fsds = FSDS(models, FSDSConfig())
    images = torch.rand(1, 3, 512, 512, device=models.device, requires_grad=True)
    pts = torch.rand(1, 478, 2, device=models.device) * 200 + 156
    control = draw_control_map(pts, torch.ones(1, 478, dtype=torch.bool, device=models.device))
    out = fsds(images, control, "a portrait of a man", torch.zeros(1), torch.zeros(1), step=0)
    assert not out.skipped
    out.loss.backward()
    assert torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0
