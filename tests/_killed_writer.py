"""The child process of ``test_killed_writers.py``: it writes a file completely once, then writes
it again with other contents and stops halfway through the bytes, waiting to be killed.

``python _killed_writer.py KIND FLAME TARGET REFERENCE`` (KIND: avatar | checkpoint | export |
web | ply-sequence | web-swap). The first, complete write is copied to REFERENCE; the second write
goes through the real writer (``Avatar.save``, ``save_checkpoint``, ``headstudio export``) with its
``open`` replaced by one whose file, after half the bytes of the first write, is flushed to disk,
announced on stdout as ``halfway <temporary file>`` and left open while the process sleeps until
SIGKILL.

The folder exports (``web``: ``headstudio export --format web``; ``ply-sequence``) stop halfway
through ``data.js`` or through the third frame's PLY, inside the export's temporary folder.
``web-swap`` lets the second web export finish writing and stops it between the two renames of a
folder swap without an atomic exchange (as on a file system without ``RENAME_EXCHANGE``): the
previous folder has just been moved aside, announced as ``between <aside folder>``.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

SEED = 16


class _StopHalfway:
    """A binary file that stops (flushes, announces itself, sleeps) after ``limit`` bytes."""

    def __init__(self, fh: Any, limit: int) -> None:
        self._fh, self._limit, self._written = fh, limit, 0

    def write(self, data: Any) -> int:
        view = data if isinstance(data, str) else memoryview(data).cast("B")  # str: ASCII text
        room = self._limit - self._written
        if len(view) >= room:
            self._fh.write(view[:room])
            self._fh.flush()
            print(f"halfway {self._fh.name}", flush=True)
            while True:
                time.sleep(60)
        self._written += len(view)
        return self._fh.write(view)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)

    def __enter__(self) -> _StopHalfway:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()


def _stop_halfway(module: Any, limit: int, nth: int = 1) -> None:
    """Make the ``nth`` ``open(..., "w")`` inside ``module`` return a file that stops after
    ``limit`` bytes (the files opened before it are written whole)."""
    opened = 0

    def halting_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        nonlocal opened
        fh = open(file, mode, *args, **kwargs)  # noqa: SIM115 (closed by the wrapper)
        if "w" not in mode:
            return fh
        opened += 1
        return _StopHalfway(fh, limit) if opened == nth else fh

    module.open = halting_open


def _avatar(flame: Path, seed: int) -> Any:
    from flame_core import FlameModel
    from headstudio.avatar import Avatar
    from headstudio.config import InitConfig

    head = FlameModel.from_file(flame, num_shape=10, num_expression=10)
    return Avatar.initialize(
        head, InitConfig(points_per_face=8, sh_degree=1), generator=torch.Generator().manual_seed(seed)
    )


def _checkpoint(step: int) -> Any:
    """A checkpoint of 4,000 random Gaussians after ``step`` Adam steps."""
    from headstudio.config import HeadStudioConfig, config_to_dict
    from headstudio.train.checkpoint import Checkpoint, rng_state

    g = torch.Generator().manual_seed(SEED + step)
    n = 4000
    cols = {"means": (3,), "quats": (4,), "log_scales": (3,), "opacity_logits": (), "sh": (4, 3)}
    params = {k: torch.randn((n, *c), generator=g).requires_grad_() for k, c in cols.items()}
    shape = torch.zeros(1, 10, requires_grad=True)
    opt = torch.optim.Adam([{"params": [p], "name": k} for k, p in {**params, "shape": shape}.items()])
    for _ in range(step):
        sum(p.square().sum() for p in params.values()).backward()
        opt.step()
    return Checkpoint(
        step=step, num_skipped=0, gaussians={k: p.detach() for k, p in params.items()},
        face_ids=torch.randint(0, 80, (n,), generator=g), shape=shape.detach(), optimizer=opt.state_dict(),
        densify_state=None, guidance=None, rng=rng_state({}, torch.device("cpu")),
        config=config_to_dict(HeadStudioConfig()), prompt="a killed run", head_hash=None,
    )  # fmt: skip


def _pause_between_renames(target: Path) -> None:
    """Swap folders with two renames, and stop right after the first (``target`` moved aside)."""
    import headstudio._atomic as atomic

    atomic._RENAMEAT2 = None  # no RENAME_EXCHANGE: the two-rename swap
    rename = os.rename

    def pausing_rename(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        rename(src, dst, *args, **kwargs)
        if Path(src) == target:
            print(f"between {dst}", flush=True)
            while True:
                time.sleep(60)

    os.rename = pausing_rename


def _folder_export(kind: str, flame: Path, target: Path, reference: Path) -> None:
    """Export a folder (``web`` / ``ply-sequence``) of one avatar, copy it to ``reference``, then
    export another avatar there and stop (module docstring). The avatars and the motion are
    written beside ``reference``."""
    import headstudio.output.export as web_writer
    import rigged_gaussians.ply as ply_writer
    from flame_core.motion import MotionSequence
    from headstudio.cli import main as headstudio

    fmt = "ply-sequence" if kind == "ply-sequence" else "web"
    g = torch.Generator().manual_seed(SEED)
    expression, jaw = 0.5 * torch.randn(4, 10, generator=g), 0.1 * torch.rand(4, 3, generator=g)
    motion = reference.with_name("motion.npz")
    MotionSequence(expression=expression, jaw_pose=jaw, fps=30.0).save(motion)
    avatars = [_avatar(flame, seed).save(reference.with_name(f"avatar{seed}.ply")) for seed in (1, 2)]
    argv = ["--flame", str(flame), "--format", fmt, "--motion", str(motion), "-o", str(target), "-q"]
    argv += ["--device", "cpu"]
    assert headstudio(["export", str(avatars[0]), *argv]) == 0
    shutil.copytree(target, reference)
    if kind == "web-swap":
        _pause_between_renames(target)
    elif kind == "web":
        _stop_halfway(web_writer, (target / web_writer.WEB_DATA_FILE).stat().st_size // 2)
    else:
        _stop_halfway(ply_writer, (target / "frame_00002.ply").stat().st_size // 2, nth=3)
    headstudio(["export", str(avatars[1]), *argv])
    raise SystemExit("the second export finished: it was never stopped")


def main(kind: str, flame: Path, target: Path, reference: Path) -> None:
    if kind in ("web", "ply-sequence", "web-swap"):
        _folder_export(kind, flame, target, reference)
        return
    if kind == "avatar":
        import rigged_gaussians.ply as writer

        _avatar(flame, 1).save(target, prompt="first")
        second = _avatar(flame, 2)
        write_again = lambda: second.save(target, prompt="second")  # noqa: E731
    elif kind == "checkpoint":
        import headstudio.train.checkpoint as writer

        writer.save_checkpoint(_checkpoint(1), target)
        writer.save_checkpoint(_checkpoint(2), target)  # step 1 is now previous.pt
        write_again = lambda: writer.save_checkpoint(_checkpoint(3), target)  # noqa: E731
    else:
        import rigged_gaussians.ply as writer
        from headstudio.cli import main as headstudio

        avatars = []
        for seed in (1, 2):
            avatars.append(_avatar(flame, seed).save(target.with_name(f"avatar{seed}.ply")))
        argv = ["--flame", str(flame), "-o", str(target), "-q", "--device", "cpu"]
        assert headstudio(["export", str(avatars[0]), *argv]) == 0
        write_again = lambda: headstudio(["export", str(avatars[1]), *argv])  # noqa: E731
    shutil.copyfile(target, reference)
    _stop_halfway(writer, target.stat().st_size // 2)
    write_again()
    raise SystemExit("the second write finished: it was never stopped halfway")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
