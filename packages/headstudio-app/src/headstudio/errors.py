"""User-facing errors of the headstudio app.

Every failure a user can cause (a missing file, a wrong format, an impossible setting) raises
:class:`HeadStudioError` with a message that says what was wrong, with the value, and what to do.
The CLI prints ``error: <message>`` on one line and exits with status 2.

Library code speaks of its own arguments (``device``, ``output_dir``, ``head``); an error about
one names it in ``argument``, and the CLI prefixes the command-line flag that set it
(``error: --device: ...``).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["HeadStudioError", "one_line", "require_file"]


class HeadStudioError(Exception):
    """A failure the user can fix; ``str(err)`` is one line that says how."""

    def __init__(self, message: str, *, argument: str | None = None) -> None:
        super().__init__(" ".join(str(message).split()))
        self.message = str(self)
        #: the library argument the error is about (``"device"``, ...), or ``None``
        self.argument = argument


def one_line(err: BaseException, limit: int | None = None) -> str:
    """``err``'s message on one line (whitespace runs collapsed; its type's name when it has no
    message), cut to ``limit`` characters when given."""
    return (" ".join(str(err).split()) or type(err).__name__)[:limit]


def require_file(path: str | Path, what: str, suffixes: tuple[str, ...] | None = None) -> Path:
    """Check that ``path`` names an existing regular file, optionally with one of ``suffixes``.

    Args:
        path: the path given by the user.
        what: a short description used in the message ("avatar", "motion file", ...).
        suffixes: accepted lower-case suffixes such as ``(".ply",)``; ``None`` accepts any.

    Returns:
        The path as a :class:`Path`.

    Raises:
        HeadStudioError: the file is missing, is a directory, or has the wrong suffix.
    """
    p = Path(path)
    if not p.exists():
        raise HeadStudioError(f"{what} '{p}' does not exist; check the path.")
    if not p.is_file():
        raise HeadStudioError(f"{what} '{p}' is not a file; give the path of a file.")
    if suffixes is not None and p.suffix.lower() not in suffixes:
        raise HeadStudioError(
            f"{what} '{p}' has suffix '{p.suffix or '(none)'}'; expected one of {', '.join(suffixes)}."
        )
    return p
