"""Ctrl-C during a long job: finish the current step, then stop cleanly."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

__all__ = ["deferred_interrupts"]

log = logging.getLogger(__name__)


@contextlib.contextmanager
def deferred_interrupts(request_stop: Callable[[], bool]) -> Iterator[None]:
    """While inside, the first Ctrl-C (or SIGTERM, e.g. from a job scheduler or ``timeout``) calls
    ``request_stop()`` so the loop can finish its step and stop; a second one (``request_stop``
    returns ``True``: one had already come) raises ``KeyboardInterrupt`` at once. Outside the main
    thread signals cannot be caught and nothing changes. The previous handlers are restored.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if request_stop():
            raise KeyboardInterrupt
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        log.warning("%s: stopping after this step (again to stop at once)", name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
