"""No source module of the four packages is over :data:`MAX_LINES` lines (docs/ARCHITECTURE.md,
"Conventions"; STYLE: small modules with one job). A module that grows past it is split along a
seam, and what moved out is still exported from where it was."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400


def _source_modules() -> dict[str, int]:
    """``{path relative to the repository: lines}`` of every ``.py`` under ``packages/*/src``."""
    return {
        str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines())
        for p in sorted(ROOT.glob("packages/*/src/**/*.py"))
    }


def test_the_walk_sees_every_package() -> None:
    modules = _source_modules()
    for package in ("flame_core", "rigged_gaussians", "fsds_guidance", "headstudio"):
        assert any(f"/src/{package}/" in m for m in modules), f"no module of {package} found"
    assert "packages/rigged-gaussians/src/rigged_gaussians/api.py" in modules
    assert "packages/headstudio-app/src/headstudio/cli/__init__.py" in modules  # nested folders too


def test_no_source_module_is_over_the_limit() -> None:
    over = {m: n for m, n in _source_modules().items() if n > MAX_LINES}
    assert not over, (
        f"source modules over {MAX_LINES} lines: {over}; split each along a seam into modules with "
        "one job, re-exporting what moved so its import paths keep working"
    )
