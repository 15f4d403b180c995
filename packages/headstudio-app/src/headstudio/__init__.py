"""headstudio: text to animatable 3D Gaussian head avatars."""

__version__ = "0.1.0"
