"""Writers killed halfway leave no half file: the avatar (``Avatar.save``), the trainer checkpoint
(``save_checkpoint``) and ``headstudio export``.

A child process (``_killed_writer.py``) writes each file once completely, then again with other
contents; halfway through the bytes of the second write it stops and the test kills it with
SIGKILL (no Python cleanup runs). The target must still be the first, complete file, byte for
byte, reading back with its checksum verified; whatever the killed write left behind is a hidden
temporary file that no reader takes for the output.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from headstudio.train.checkpoint import load_checkpoint, previous_checkpoint_path
from rigged_gaussians.ply import load_ply

pytestmark = pytest.mark.slow  # three child processes, each importing torch and headstudio

CHILD = Path(__file__).with_name("_killed_writer.py")


def _kill_halfway(kind: str, flame: Path, target: Path, reference: Path) -> Path:
    """Run the child until it reports a half-written temporary file, SIGKILL it; the file's path."""
    child = subprocess.Popen(
        [sys.executable, str(CHILD), kind, str(flame), str(target), str(reference)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = "-"
        while line and not line.startswith("halfway "):  # blocks until the child is halfway (or exits)
            line = child.stdout.readline()
        assert line, f"the child did not stop halfway: {child.stderr.read()}"
        partial = Path(line.split(" ", 1)[1].strip())
        assert 0 < partial.stat().st_size < reference.stat().st_size  # truly half written
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=60) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        child.stderr.close()
    return partial


def _check_leftovers(folder: Path, outputs: set[str]) -> None:
    """Besides ``outputs``, only hidden temporary files."""
    others = {p.name for p in folder.iterdir()} - outputs
    assert all(name.startswith(".") for name in others), others


@pytest.mark.parametrize("kind", ["avatar", "export"])
def test_killed_ply_writer_leaves_the_previous_file(
    kind: str, tiny_flame: Path, tmp_path: Path, headstudio_cli
) -> None:
    target, reference = tmp_path / "out" / "avatar.ply", tmp_path / "reference.ply"
    target.parent.mkdir()
    partial = _kill_halfway(kind, tiny_flame, target, reference)
    assert target.read_bytes() == reference.read_bytes()
    assert load_ply(target, verify=True).integrity == "verified"
    if kind == "avatar":  # the app reads it as a whole avatar again
        res = headstudio_cli("export", str(target), "--flame", str(tiny_flame), "-o", str(tmp_path / "x.ply"))
        assert res.verdict == "accepted", res.err
    if partial.exists():  # a killed write's temporary file: damaged, and readers say so
        with pytest.raises(ValueError):
            load_ply(partial)
    outputs = {"avatar.ply"} | ({"avatar1.ply", "avatar2.ply"} if kind == "export" else set())
    _check_leftovers(target.parent, outputs)


def test_killed_checkpoint_writer_leaves_both_checkpoints(tiny_flame: Path, tmp_path: Path) -> None:
    target, reference = tmp_path / "checkpoints" / "last.pt", tmp_path / "reference.pt"
    target.parent.mkdir()
    _kill_halfway("checkpoint", tiny_flame, target, reference)
    assert target.read_bytes() == reference.read_bytes()
    assert load_checkpoint(target).step == 2
    assert load_checkpoint(previous_checkpoint_path(target)).step == 1
    _check_leftovers(target.parent, {"last.pt", "previous.pt"})
