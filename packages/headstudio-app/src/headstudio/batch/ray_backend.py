"""``headstudio batch`` on Ray (``BatchOptions.ray``): one Ray task per item, ``num_gpus=1`` each.

Ray is an optional extra (``pip install "headstudio-app[ray]"``), imported only here and only
when a Ray batch is asked for. ``ADDRESS`` is ``auto`` (the cluster this machine belongs to),
``HOST:PORT`` or ``ray://HOST:PORT``; without one a cluster is started on this machine (or the
one in ``RAY_ADDRESS`` is joined), and an already initialised Ray (a script calling
:func:`headstudio.batch.runner.run_batch` itself) is used as it is.

A task runs the same item process as the local pool (:class:`~.launch.ItemProcess`), with the
GPU Ray gave it in ``CUDA_VISIBLE_DEVICES``. The batch's output folder must be shared storage
that every node sees at the same path. A task whose worker dies is re-run by Ray itself
(``max_retries``); the item continues from its checkpoint (its lock makes the new process wait
until the dying one has written it). A failed item is retried by the runner, as in the pool.
"""

from __future__ import annotations

import logging
import signal
import socket
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

from ..errors import HeadStudioError
from .launch import AttemptResult, ItemJob, ItemProcess

__all__ = ["RayBackend", "import_ray", "check_address", "INSTALL_HINT"]

log = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "headstudio-app[ray]"'
_CONNECT_TIMEOUT_S = 5.0


def import_ray() -> Any:
    """The ``ray`` module, or one line saying how to install it."""
    try:
        import ray  # optional heavy dependency: only for a Ray batch
    except ImportError:
        raise HeadStudioError(
            f"«ray» needs Ray, which is not installed; install it with: {INSTALL_HINT}"
        ) from None
    return ray


def check_address(address: str) -> None:
    """A ``HOST:PORT`` / ``ray://HOST:PORT`` address must answer (Ray itself would wait minutes).

    Raises:
        HeadStudioError: a malformed address, or nothing listening there.
    """
    if address == "auto":
        return
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise HeadStudioError(
            f"«ray» {address}: give auto, HOST:PORT or ray://HOST:PORT (or no address for a local cluster)."
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=_CONNECT_TIMEOUT_S).close()
    except OSError as err:
        why = err.strerror or type(err).__name__
        raise HeadStudioError(
            f"«ray» {address}: no Ray cluster answers there ({why}); start one with `ray start --head` or "
            "check the address."
        ) from None


def _run_task(job: ItemJob) -> AttemptResult:
    """The body of a Ray task (module level, so workers import it by name)."""
    return ItemProcess(job).run()


class RayBackend:
    """Run item jobs as Ray tasks.

    Args:
        address: ``None`` (a local cluster, or ``RAY_ADDRESS``), ``auto`` or an address.
        device: the batch's device: ``cpu`` asks no GPUs of Ray; otherwise each task asks
            one GPU when the cluster has any.
        retries: how often Ray re-runs a task whose worker died.

    Raises:
        HeadStudioError: Ray is missing, or the cluster cannot be reached.
    """

    def __init__(self, address: str | None, device: str, retries: int) -> None:
        if address:  # before the import: a wrong address is named whether Ray is installed or not
            check_address(address)
        ray = self.ray = import_ray()
        self._started = False
        if not ray.is_initialized():
            try:
                ray.init(
                    address=address or None, include_dashboard=False, log_to_driver=False,
                    logging_level=logging.WARNING,
                )  # fmt: skip
            except (ConnectionError, RuntimeError, ValueError, TimeoutError) as err:
                first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
                raise HeadStudioError(
                    f"«ray» {address or ''}: could not join a Ray cluster ({first})."
                ) from None
            self._started = True
        self.device = str(device).strip().lower()
        resources = ray.cluster_resources()
        self.use_gpus = self.device != "cpu" and resources.get("GPU", 0) >= 1
        self._remote = ray.remote(_run_task).options(
            num_gpus=1 if self.use_gpus else 0, num_cpus=1, max_retries=retries, retry_exceptions=False
        )
        self._running: dict[Any, ItemJob] = {}
        self._cancels = 0

    def describe(self) -> str:
        r = self.ray.cluster_resources()
        per = "one GPU per item" if self.use_gpus else "one CPU per item"
        return f"Ray cluster with {int(r.get('GPU', 0))} GPU(s), {int(r.get('CPU', 0))} CPU(s) ({per})"

    def capacity(self) -> int:
        """How many items can run at once (the cluster's GPUs, or CPUs; read again each time,
        as an autoscaling cluster grows and shrinks)."""
        r = self.ray.cluster_resources()
        return max(1, int(r.get("GPU" if self.use_gpus else "CPU", 1)))

    def submit(self, job: ItemJob, options_for: Callable[[str], Any]) -> Any:
        # the task sees only its own GPU (Ray sets CUDA_VISIBLE_DEVICES), so cuda:N becomes cuda;
        # auto lets the item pick CUDA when it has one
        device = "cuda" if self.device.startswith("cuda") else self.device
        ref = self._remote.remote(replace(job, options=asdict(options_for(device))))
        self._running[ref] = job
        return ref

    def wait(self, handles: list[Any], timeout: float) -> list[tuple[Any, AttemptResult]]:
        ray = self.ray
        ready, _ = ray.wait(handles, num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            self._running.pop(ref, None)
            try:
                res = ray.get(ref)
            except ray.exceptions.TaskCancelledError:
                res = AttemptResult("interrupted", 0.0, "stopped (Ctrl-C)")
            except ray.exceptions.RayError as err:  # the worker died more often than max_retries, ...
                first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
                res = AttemptResult("failed", 0.0, f"Ray: {type(err).__name__}: {first}")
            out.append((ref, res))
        return out

    def interrupt(self, sig: int = signal.SIGINT) -> None:
        """Cancel the running tasks: a KeyboardInterrupt in each, which the item process turns into
        a checkpoint and a stop; SIGKILL ends their workers at once."""
        for ref in list(self._running):
            self.ray.cancel(ref, force=sig == signal.SIGKILL)

    def close(self) -> None:
        if self._started:
            self.ray.shutdown()
