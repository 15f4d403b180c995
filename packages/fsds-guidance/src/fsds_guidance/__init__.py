"""fsds_guidance: FLAME-based score distillation with ControlNet MediaPipeFace."""

__version__ = "0.1.0"
