"""What the process of one batch item does before it trains: die with the process that started it.

The item's process is the CLI's item entry point (:data:`.launch.ITEM_MODULE`), so its messages
and exit statuses are those of ``headstudio generate``. It calls :func:`die_with_parent` first,
then runs :func:`headstudio.commands.generate.run` with the item's
:class:`~headstudio.commands.generate.GenerateOptions`, which waits for the item's folder lock
(a retried Ray task waits while the killed task's process writes its last checkpoint) and
continues the folder's checkpoint when there is one.

Only the standard library is imported here.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

__all__ = ["die_with_parent", "EXIT_ORPHANED"]

PR_SET_PDEATHSIG = 1
#: The exit status of an item whose batch is gone before it started.
EXIT_ORPHANED = 130


def die_with_parent(parent: int) -> str | None:
    """Ask the kernel for SIGTERM when the parent dies (Linux; a killed batch driver or Ray worker
    thus makes its item checkpoint and stop instead of training on unseen).

    Returns:
        ``None``, or one line saying that the parent ``parent`` is already gone (then the item
        must not start).
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):  # pragma: no cover - a libc without prctl
            pass
    if parent and os.getppid() != parent:
        return "the batch that started this item is gone; not starting it."
    return None
