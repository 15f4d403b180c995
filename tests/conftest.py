"""Cross-package fixtures: the tiny diffusion models written to disk in the hub layout."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory) -> tuple[Path, Path]:
    """``(base_dir, controlnet_dir)``: the tiny random-weight models saved as the hub repositories
    are laid out, for ``--set guidance.base_model=BASE --set guidance.controlnet=CN`` (the real
    loader, nothing patched). Session-wide: treat the folders as read-only (copy to change them)."""
    from fsds_guidance.testing import save_tiny_pipeline

    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny_pipeline"))


@pytest.fixture(scope="session")
def procedural_flame_file(tmp_path_factory) -> Path:
    """The open procedural head saved once as a FLAME file (``--set head.flame_path=FILE``), for
    tests that start many ``generate`` processes (each would otherwise build the head again).
    Session-wide: read-only."""
    from flame_core.procedural import build_procedural_head

    return build_procedural_head().save(tmp_path_factory.mktemp("procedural_flame")) / "procedural_flame.pkl"


@pytest.fixture(scope="session")
def tiny_batch_items(tiny_pipeline, procedural_flame_file) -> list[str]:
    """``--set`` arguments of tiny `headstudio batch` items (tiny models, the saved head)."""
    from headstudio.batchrun.testing import tiny_item_args

    return tiny_item_args(*tiny_pipeline, procedural_flame_file)
