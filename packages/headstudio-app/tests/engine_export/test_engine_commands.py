"""The engine export through the commands: ``export --format glb``, ``drive --arkit-out`` and
``animate --arkit``, called directly (their Options) and once each through the CLI (exit 2 and one
line for bad input, nothing partial left)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from flame_core.motion import MotionSequence
from headstudio import cli
from headstudio.animate.arkit import (
    ARKIT_NAMES,
    ArkitCurves,
    curves_to_motion,
    read_live_link_csv,
    write_live_link_csv,
)
from headstudio.commands import animate, common, drive, export
from headstudio.errors import HeadStudioError
from headstudio.output.gltf.builder import read_glb

TEXTURE = 32  # the command's bake at its smallest useful size keeps these tests quick


@pytest.fixture
def avatar_file(tmp_path: Path, teacher: Any, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An avatar path whose loading yields the teacher avatar (with its stored ARKit fit)."""
    p = tmp_path / "avatar.ply"
    p.write_bytes(b"ply\n")
    monkeypatch.setattr(common, "load_avatar", lambda path, flame, device, verify=True: teacher)
    return p


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli.main([*argv, "-q", "--device", "cpu"])
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line(rc: int, err: str, *needles: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n in lines[0], lines[0]


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


# ------------------------------------------------------------------------------- export --format glb


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"format": "ply", "parts": "mesh"}, "«parts» applies to «format» glb."),
        ({"format": "web", "output": "w", "texture_size": 64}, "«texture_size» applies to «format» glb."),
        ({"format": "glb", "parts": "splats", "motion": "m.npz"}, "use «parts» mesh or both with «motion»"),
        ({"format": "glb", "jaw": 0.2}, "«jaw» poses a single PLY; it applies to «format» ply, not glb."),
        ({"format": "glb", "output": "o.gltf"}, "output '"),
        ({"format": "glb", "texture_size": 8}, "«texture_size» must be 16 to 8192 pixels"),
    ],
)
def test_glb_option_compatibility(tmp_path: Path, fields: dict, message: str) -> None:
    (tmp_path / "m.npz").write_bytes(b"x")
    fields = {**fields, **{k: tmp_path / v for k, v in fields.items() if k in ("output", "motion")}}
    options = export.ExportOptions(avatar=tmp_path / "missing.ply", **{"output": tmp_path / "o.glb", **fields})
    with pytest.raises(HeadStudioError) as info:
        export.run(options)  # refused before the (missing) avatar is read
    assert message in str(info.value)


def test_glb_output_that_cannot_be_written_is_refused_first(tmp_path: Path) -> None:
    (tmp_path / "a_dir.glb").mkdir()
    (tmp_path / "file").write_text("x")
    cases = {
        tmp_path / "a_dir.glb": "is a directory; give a file name",
        tmp_path / "file" / "sub" / "o.glb": "which is a file; give a path in a folder",
    }
    for out, message in cases.items():
        with pytest.raises(HeadStudioError, match=message):
            export.run(export.ExportOptions(avatar=tmp_path / "missing.ply", format="glb", output=out))
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        with pytest.raises(HeadStudioError, match="permission denied"):
            export.run(export.ExportOptions(avatar=tmp_path / "missing.ply", format="glb", output=locked / "o.glb"))
    assert _leftovers(tmp_path, {"a_dir.glb", "file", "locked"}) == []


def test_glb_command_writes_splats_mesh_and_the_motion(
    tmp_path: Path, avatar_file: Path, teacher: Any, talk_motion: Any
) -> None:
    pytest.importorskip("xatlas", reason="the mesh export needs xatlas (pip install xatlas)")
    motion = tmp_path / "talk.npz"
    talk_motion.save(motion)
    out = tmp_path / "out" / "head.glb"  # a folder that does not exist yet is made
    res = export.run(
        export.ExportOptions(
            avatar=avatar_file, format="glb", output=out, motion=motion, texture_size=TEXTURE, device="cpu"
        )
    )
    assert (res.format, res.output, res.frames) == ("glb", out, len(talk_motion))
    assert res.gaussians == teacher.num_gaussians and res.vertices > 0
    doc, _ = read_glb(out.read_bytes())
    names = {m["name"] for m in doc["meshes"]}
    assert names == {"gaussian_splats", "head"} and len(doc["animations"]) == 1
    head = next(m for m in doc["meshes"] if m["name"] == "head")
    assert head["extras"]["targetNames"][:52] == list(ARKIT_NAMES) and res.morph_targets == len(
        head["extras"]["targetNames"]
    )
    assert doc["asset"]["extras"]["headstudio"]["parts"] == "both"  # the default
    assert _leftovers(out.parent, {"head.glb"}) == []


def test_cli_glb_splats_and_bad_motion(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, avatar_file: Path, teacher: Any
) -> None:
    out = tmp_path / "head.glb"
    rc, stdout, err = _cli(capsys, "export", str(avatar_file), "--format", "glb", "--parts", "splats", "-o", str(out))
    assert rc == 0, err
    assert stdout.strip() == f"wrote {out} ({teacher.num_gaussians} Gaussians)"
    doc, _ = read_glb(out.read_bytes())
    assert [m["name"] for m in doc["meshes"]] == ["gaussian_splats"]
    before = out.read_bytes()
    # a motion made for a head with more expression parameters: one line, the old file intact
    wide = tmp_path / "wide.npz"
    MotionSequence(expression=torch.zeros(3, 150), fps=30.0).save(wide)
    rc, _, err = _cli(capsys, "export", str(avatar_file), "--format", "glb", "--motion", str(wide), "-o", str(out))
    _one_line(rc, err, "150 expression parameters but this head has 100")
    assert out.read_bytes() == before and _leftovers(tmp_path, {"head.glb", "wide.npz", "avatar.ply"}) == []
    rc, _, err = _cli(capsys, "export", str(avatar_file), "--parts", "mesh", "-o", str(tmp_path / "o.ply"))
    _one_line(rc, err, "--parts applies to --format glb.")
    rc, _, err = _cli(capsys, "export", str(avatar_file), "--format", "glb", "-o", str(tmp_path))
    _one_line(rc, err, "must end in .glb")
