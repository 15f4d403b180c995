"""Atomic file output: write to a temporary file beside the target, rename when complete."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_output", "temp_path_beside"]


def _default_file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file (0o666 less the umask)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def temp_path_beside(target: Path, tag: str = "partial") -> Path:
    """Create an empty temporary file next to ``target`` (same suffix) and return its path.

    ``tempfile.mkstemp`` creates files readable by the owner only (0600); the file is given the
    usual permissions (0666 less the umask) so that, once renamed onto ``target``, the output is
    as readable as any other file the user writes.
    """
    fd, name = tempfile.mkstemp(prefix=f".{target.stem}.{tag}-", suffix=target.suffix, dir=target.parent)
    try:
        os.fchmod(fd, _default_file_mode())
    finally:
        os.close(fd)
    return Path(name)


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path with the target's suffix; rename it onto ``path`` on success.

    On any exception (including ``KeyboardInterrupt``) the temporary file is deleted and the
    target is left untouched, so a half-written file never appears under the final name.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_beside(target, "partial")
    try:
        yield tmp
        # writers that themselves write atomically (mkstemp + rename onto ``tmp``) leave 0600
        os.chmod(tmp, _default_file_mode())
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
