"""The built viewer bundle shipped as package data, and the hash that ties it to its sources.

``nox -s web`` builds ``packages/headstudio-app/web`` (``npm ci``, then ``node build.mjs``, esbuild)
into ``headstudio/output/viewer/static/``; the first line of ``viewer.js`` records the sha256 of the
sources it was built from (:func:`sources_hash`), so a test notices a stale bundle.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ...errors import HeadStudioError

__all__ = [
    "STATIC_DIR",
    "STATIC_FILES",
    "static_files",
    "bundle_sources_hash",
    "sources_hash",
    "source_files",
]

STATIC_DIR = Path(__file__).parent / "static"
#: The files of the page (served by ``headstudio view``, copied by ``export --format web``).
STATIC_FILES = ("index.html", "viewer.js", "THIRD_PARTY_LICENSES.txt")
_FIXED_SOURCES = ("build.mjs", "index.html", "package.json", "package-lock.json")


def static_files() -> dict[str, Path]:
    """``{name: path}`` of the bundle's files.

    Raises:
        HeadStudioError: the bundle is missing (a source checkout where ``nox -s web`` never ran).
    """
    files = {name: STATIC_DIR / name for name in STATIC_FILES}
    missing = [n for n, p in files.items() if not p.is_file()]
    if missing:
        raise HeadStudioError(
            f"the viewer bundle is incomplete (missing {', '.join(missing)} in {STATIC_DIR}); "
            "rebuild it with `nox -s web` or reinstall headstudio-app."
        )
    return files


def bundle_sources_hash(bundle: Path | None = None) -> str:
    """The sources hash recorded in the first line of ``viewer.js``."""
    path = bundle or STATIC_DIR / "viewer.js"
    with path.open("rb") as fh:
        first = fh.readline().decode("utf-8", "replace")
    m = re.search(r"sources sha256:([0-9a-f]{64})", first)
    if m is None:
        raise HeadStudioError(
            f"'{path}' does not record the hash of its sources; rebuild it with `nox -s web`."
        )
    return m.group(1)


def source_files(web_dir: Path) -> list[str]:
    """The files the bundle is built from, as sorted POSIX paths relative to ``web_dir``."""
    src = [p.relative_to(web_dir).as_posix() for p in (web_dir / "src").rglob("*") if p.is_file()]
    return sorted([*_FIXED_SOURCES, *src])


def sources_hash(web_dir: Path) -> str:
    """sha256 over ``path \\0 content \\0`` of every source file (as ``web/build.mjs`` computes it)."""
    h = hashlib.sha256()
    for rel in source_files(web_dir):
        h.update(rel.encode() + b"\0")
        h.update((web_dir / rel).read_bytes())
        h.update(b"\0")
    return h.hexdigest()
