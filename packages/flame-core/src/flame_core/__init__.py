"""flame_core: the FLAME head model in PyTorch, official files or an open procedural head."""

__version__ = "0.1.0"
