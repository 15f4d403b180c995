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
