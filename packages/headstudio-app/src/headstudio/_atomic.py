"""Atomic output: write to a temporary file or folder beside the target, rename it in when complete.

Temporary names carry the writer's process id: ``.NAME.partial-PID-XXXX`` (files keep the
target's suffix, ``.STEM.partial-PID-XXXX.SUFFIX``), and a folder being replaced without an atomic
exchange is moved aside as ``.NAME.old-PID-XXXX``. A writer killed with SIGKILL (no cleanup runs)
leaves them behind; the next write of the same output sweeps those whose process is gone
(:func:`sweep_stale`), so leftovers never pile up and a live writer's files are never touched. The
liveness check sees this machine's processes only: two machines writing one output on a shared
disk at the same moment are not supported (nor were they before).

Folders (:func:`atomic_folder`) are swapped in with one ``renameat2(RENAME_EXCHANGE)`` where the
system has it (Linux 3.15+ on ext4, xfs, btrfs, tmpfs, ...), so the output's name always holds a
complete folder, the previous or the new one. Elsewhere the swap takes two renames (the old folder
aside, the new one in); a kill between them leaves no folder under the name but the previous one
whole under its aside name, and the next write of that output (or :func:`recover_folder`) renames
it back before anything else.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import HeadStudioError

__all__ = [
    "atomic_output",
    "atomic_folder",
    "exchange",
    "recover_folder",
    "sweep_stale",
    "temp_path_beside",
]

log = logging.getLogger(__name__)

#: Tag of a temporary file or folder being written.
PARTIAL = "partial"
#: Tag of a replaced folder moved aside (two-rename swaps only).
ASIDE = "old"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _default_file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file (0o666 less the umask)."""
    return 0o666 & ~_umask()


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (a zombie counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def temp_path_beside(target: Path, tag: str = PARTIAL) -> Path:
    """Create an empty temporary file ``.STEM.TAG-PID-XXXX.SUFFIX`` next to ``target``; its path.

    ``tempfile.mkstemp`` creates files readable by the owner only (0600); the file is given the
    usual permissions (0666 less the umask) so that, once renamed onto ``target``, the output is
    as readable as any other file the user writes.
    """
    fd, name = tempfile.mkstemp(
        prefix=f".{target.stem}.{tag}-{os.getpid()}-", suffix=target.suffix, dir=target.parent
    )
    try:
        os.fchmod(fd, _default_file_mode())
    finally:
        os.close(fd)
    return Path(name)


def _stale(parent: Path, prefix: str, folders: bool, suffix: str | None = None) -> list[Path]:
    """Folders (``folders``) or files of ``parent`` named ``PREFIX PID-...`` whose process ``PID``
    is gone. Telling them apart keeps a file output's sweep off a same-named folder output's
    temporaries (``out.ply`` and ``out/`` share the prefix ``.out.partial-``), and the reverse.

    With ``suffix`` (files): the name must end in it, or be ``.PREFIX PID-XXXX SUFFIX.*``: the
    temporary file of a writer that itself writes atomically beside our temporary file
    (``rigged_gaussians.ply.save_ply`` writes ``.NAME.tmp-PID`` and renames it onto ``NAME``).
    """
    out = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for p in parent.iterdir():
            if p.is_symlink() or p.is_dir() != folders:
                continue
            name = p.name
            nested = not folders and name.startswith(f".{prefix}")
            name = name[1:] if nested else name
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix) :]
            if suffix is not None and not (rest.endswith(suffix) or (nested and f"{suffix}." in rest)):
                continue  # another output's (another suffix)
            pid = rest.split("-", 1)[0]
            if pid.isdigit() and not _pid_alive(int(pid)):
                out.append(p)
    return out


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def sweep_stale(target: Path, folder: bool = False) -> list[Path]:
    """Delete what killed writers of ``target`` left beside it; the paths removed.

    For a file: ``.STEM.partial-PID-*SUFFIX`` files (and what a nested atomic writer left beside
    them, ``..STEM.partial-PID-*SUFFIX.*``). For a folder (``folder=True``):
    ``.NAME.partial-PID-*`` and ``.NAME.old-PID-*`` folders (call :func:`recover_folder` first,
    so a previous folder that only exists aside is restored rather than deleted). Only entries
    whose process ``PID`` is gone are touched.
    """
    target = Path(target)
    stem = target.name if folder else target.stem
    tags = (PARTIAL, ASIDE) if folder else (PARTIAL,)
    suffix = None if folder else target.suffix  # a file's temporaries keep its suffix
    removed = [p for tag in tags for p in _stale(target.parent, f".{stem}.{tag}-", folder, suffix)]
    for p in removed:
        _remove(p)
    if removed:
        log.info("removed %d temporary file(s) left by an earlier killed write of %s", len(removed), target)
    return removed


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path with the target's suffix; rename it onto ``path`` on success.

    On any exception (including ``KeyboardInterrupt``) the temporary file is deleted and the
    target is left untouched, so a half-written file never appears under the final name. Partial
    files of earlier writes that were killed (SIGKILL, power loss) are swept first.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(target)
    tmp = temp_path_beside(target, PARTIAL)
    try:
        yield tmp
        # writers that themselves write atomically (mkstemp + rename onto ``tmp``) leave 0600
        os.chmod(tmp, _default_file_mode())
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


# --------------------------------------------------------------------------------- folders

_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _renameat2() -> Callable[..., int] | None:
    """libc's ``renameat2`` (glibc 2.28+), or ``None`` where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_RENAMEAT2 = _renameat2()


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap the paths ``a`` and ``b`` (both must exist); ``False`` where the system or
    the file system cannot (then nothing changed)."""
    if _RENAMEAT2 is None:
        return False
    rc = _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    # not supported by this kernel or file system (overlayfs answers EXDEV for some folders)
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, f"cannot swap '{a}' and '{b}': {os.strerror(err)}")


def recover_folder(out_dir: str | Path) -> Path | None:
    """Restore ``out_dir`` from its aside copy if a write was killed between its two renames.

    When ``out_dir`` is missing and a ``.NAME.old-PID-*`` folder of a finished process is beside
    it, that folder is the previous complete output: it is renamed back. Returns the restored
    path, or ``None`` when nothing needed restoring.
    """
    out = Path(out_dir)
    if os.path.lexists(out):
        return None
    asides = _stale(out.parent, f".{out.name}.{ASIDE}-", True)
    if not asides:
        return None
    aside = max(asides, key=lambda p: p.stat().st_mtime_ns)
    os.rename(aside, out)
    log.warning("restored '%s' from '%s', left by an export killed while swapping folders", out, aside.name)
    return out


def _swap_in(new: Path, out: Path) -> None:
    """Put the complete folder ``new`` under the name ``out``; the previous ``out`` (if any) ends
    up at ``new``'s path or aside, for the caller to delete."""
    if not os.path.lexists(out):
        os.rename(new, out)
        return
    if exchange(new, out):
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.{ASIDE}-{os.getpid()}-", dir=out.parent))
    aside.rmdir()
    os.rename(out, aside)  # killed after this: recover_folder renames it back
    os.rename(new, out)
    shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def atomic_folder(out_dir: str | Path, owned: Callable[[Path], bool]) -> Iterator[Path]:
    """Yield an empty folder beside ``out_dir``; on success it replaces ``out_dir``.

    ``owned(dir)`` says whether an existing ``out_dir`` is an earlier output that may be
    replaced; other non-empty folders are refused (one line, nothing written). What killed writes
    left is dealt with first: a previous folder left aside is restored, their temporaries swept.

    Raises:
        HeadStudioError: ``out_dir`` is a file, or a non-empty folder that ``owned`` rejects.
    """
    out = Path(out_dir)
    recover_folder(out)
    if out.exists():
        if not out.is_dir():
            raise HeadStudioError(f"output '{out}' exists and is not a directory; give a folder name.")
        if any(out.iterdir()) and not owned(out):
            raise HeadStudioError(
                f"output folder '{out}' is not empty and not an earlier export; choose another -o."
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(out, folder=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.{PARTIAL}-{os.getpid()}-", dir=out.parent))
    try:
        yield tmp
        tmp.chmod(0o777 & ~_umask())  # mkdtemp's 0700, as a plain mkdir would make it
        _swap_in(tmp, out)
    finally:  # the unfinished folder, or after an exchange the previous one
        _remove(tmp)
