"""Writers killed halfway leave no half file: the avatar (``Avatar.save``), the trainer checkpoint
(``save_checkpoint``) and ``headstudio export`` (a PLY, and the folders of ``--format web`` and
``--format ply-sequence``; the glb's killed export is in the engine-export tests, test_glb.py).

A child process (``_killed_writer.py``) writes each file once completely, then again with other
contents; halfway through the bytes of the second write it stops and the test kills it with
SIGKILL (no Python cleanup runs). The target must still be the first, complete file, byte for
byte, reading back with its checksum verified; whatever the killed write left behind is a hidden
temporary file that no reader takes for the output. A folder must still be the first complete
folder (the same files, byte for byte), also when the kill comes between the two renames of a
swap without an atomic exchange; the next export of it sweeps the killed one's leftovers.
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


def _kill_halfway(
    kind: str, flame: Path, target: Path, reference: Path, marker: str = "halfway", whole: Path | None = None
) -> Path:
    """Run the child until it reports a half-written temporary file (``marker`` ``halfway``; a
    file of ``0 < size <`` that of ``whole``, default ``reference``) or another stop (``between``),
    SIGKILL it; the path it reported."""
    child = subprocess.Popen(
        [sys.executable, str(CHILD), kind, str(flame), str(target), str(reference)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = "-"
        while line and not line.startswith(f"{marker} "):  # blocks until the child stops (or exits)
            line = child.stdout.readline()
        assert line, f"the child did not stop ({marker}): {child.stderr.read()}"
        partial = Path(line.split(" ", 1)[1].strip())
        if marker == "halfway":
            assert 0 < partial.stat().st_size < (whole or reference).stat().st_size  # truly half written
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
    if kind == "export":  # the next export of the same file sweeps the killed one's partial file
        avatar2 = str(target.with_name("avatar2.ply"))
        res = headstudio_cli("export", avatar2, "--flame", str(tiny_flame), "-o", str(target))
        assert res.verdict == "accepted", res.err
        assert {p.name for p in target.parent.iterdir()} == outputs
        assert target.read_bytes() != reference.read_bytes()


def test_killed_checkpoint_writer_leaves_both_checkpoints(tiny_flame: Path, tmp_path: Path) -> None:
    target, reference = tmp_path / "checkpoints" / "last.pt", tmp_path / "reference.pt"
    target.parent.mkdir()
    _kill_halfway("checkpoint", tiny_flame, target, reference)
    assert target.read_bytes() == reference.read_bytes()
    assert load_checkpoint(target).step == 2
    assert load_checkpoint(previous_checkpoint_path(target)).step == 1
    _check_leftovers(target.parent, {"last.pt", "previous.pt"})


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _export_again(headstudio_cli, fmt: str, tiny_flame: Path, tmp_path: Path, target: Path) -> None:
    """A following successful export of the second avatar to ``target`` (in this process)."""
    res = headstudio_cli(
        "export", str(tmp_path / "avatar2.ply"), "--flame", str(tiny_flame), "--format", fmt,
        "--motion", str(tmp_path / "motion.npz"), "-o", str(target),
    )  # fmt: skip
    assert res.verdict == "accepted", res.err


@pytest.mark.parametrize("fmt", ["web", "ply-sequence"])
def test_killed_folder_export_leaves_the_previous_folder(
    fmt: str, tiny_flame: Path, tmp_path: Path, headstudio_cli
) -> None:
    target, reference = tmp_path / "out" / fmt, tmp_path / "reference"
    target.parent.mkdir()
    whole = reference / ("data.js" if fmt == "web" else "frame_00002.ply")
    partial = _kill_halfway(fmt, tiny_flame, target, reference, whole=whole)
    first = _tree(reference)
    assert _tree(target) == first  # the first complete folder, file list and bytes
    assert partial.parent.name.startswith(f".{fmt}.partial-") and partial.parent.parent == target.parent
    if fmt == "ply-sequence":  # two whole frames and the third half-written in the killed folder
        whole_frames = sorted(p.name for p in partial.parent.glob("frame_*"))
        assert whole_frames == ["frame_00000.ply", "frame_00001.ply"]
    _check_leftovers(target.parent, {fmt})
    _export_again(headstudio_cli, fmt, tiny_flame, tmp_path, target)
    assert sorted(p.name for p in target.parent.iterdir()) == [fmt]  # the killed folder is swept
    second = _tree(target)
    assert second.keys() == first.keys() and second != first  # the second avatar's export


def test_folder_export_killed_between_the_renames_keeps_the_previous_folder(
    tiny_flame: Path, tmp_path: Path, headstudio_cli
) -> None:
    """Without an atomic exchange the swap is two renames; killed between them, the previous
    folder is whole under its aside name, and the next write (or ``recover_folder``) restores it."""
    from headstudio._atomic import recover_folder

    target, reference = tmp_path / "out" / "web", tmp_path / "reference"
    target.parent.mkdir()
    aside = _kill_halfway("web-swap", tiny_flame, target, reference, marker="between")
    assert not target.exists() and aside.parent == target.parent and aside.name.startswith(".web.old-")
    first = _tree(reference)
    assert _tree(aside) == first  # the previous complete folder, under its aside name
    assert recover_folder(target) == target  # what the next write does first
    assert _tree(target) == first and not aside.exists()
    _check_leftovers(target.parent, {"web"})  # the killed export's finished folder, hidden
    _export_again(headstudio_cli, "web", tiny_flame, tmp_path, target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["web"]
    assert _tree(target) != first
