"""fsds_guidance: FLAME-based score distillation with ControlNet MediaPipeFace."""

from .fsds import FSDS, FSDSConfig, FSDSOutput
from .models import GuidanceModelError, GuidanceModels, load_guidance_models

__all__ = [
    "FSDS",
    "FSDSConfig",
    "FSDSOutput",
    "GuidanceModelError",
    "GuidanceModels",
    "load_guidance_models",
]

__version__ = "0.1.0"
