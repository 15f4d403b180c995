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
    options = export.ExportOptions(
        avatar=tmp_path / "missing.ply", **{"output": tmp_path / "o.glb", **fields}
    )
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
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    with pytest.MonkeyPatch.context() as mp:  # as a user that is not root sees it
        real_access = os.access
        mp.setattr(os, "access", lambda p, mode: real_access(p, mode) and Path(p) != locked)
        with pytest.raises(HeadStudioError, match="permission denied"):
            export.run(
                export.ExportOptions(avatar=tmp_path / "missing.ply", format="glb", output=locked / "o.glb")
            )
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
    rc, stdout, err = _cli(
        capsys, "export", str(avatar_file), "--format", "glb", "--parts", "splats", "-o", str(out)
    )
    assert rc == 0, err
    assert stdout.strip() == f"wrote {out} ({teacher.num_gaussians} Gaussians)"
    doc, _ = read_glb(out.read_bytes())
    assert [m["name"] for m in doc["meshes"]] == ["gaussian_splats"]
    before = out.read_bytes()
    # a motion made for a head with more expression parameters: one line, the old file intact
    wide = tmp_path / "wide.npz"
    MotionSequence(expression=torch.zeros(3, 150), fps=30.0).save(wide)
    rc, _, err = _cli(
        capsys, "export", str(avatar_file), "--format", "glb", "--motion", str(wide), "-o", str(out)
    )
    _one_line(rc, err, "150 expression parameters but this head has 100")
    assert out.read_bytes() == before and _leftovers(tmp_path, {"head.glb", "wide.npz", "avatar.ply"}) == []
    rc, _, err = _cli(capsys, "export", str(avatar_file), "--parts", "mesh", "-o", str(tmp_path / "o.ply"))
    _one_line(rc, err, "--parts applies to --format glb.")
    rc, _, err = _cli(capsys, "export", str(avatar_file), "--format", "glb", "-o", str(tmp_path))
    _one_line(rc, err, "must end in .glb")


# -------------------------------------------------------------------------------- drive --arkit-out


def _known_curves(T: int = 14, fps: float = 10.0) -> ArkitCurves:
    w = np.zeros((T, 52), np.float32)
    w[:, ARKIT_NAMES.index("jawOpen")] = np.linspace(0.0, 0.9, T)
    w[T // 2 :, ARKIT_NAMES.index("eyeBlinkLeft")] = 0.8
    head = np.zeros((T, 3), np.float32)
    head[:, 0] = np.linspace(-0.2, 0.2, T)  # yaw
    return ArkitCurves(w, fps, head, np.zeros((T, 6), np.float32))


@pytest.fixture
def fitted_video(monkeypatch: pytest.MonkeyPatch, basis: Any, tmp_path: Path) -> tuple[Path, ArkitCurves]:
    """A video whose fit (MediaPipe is not needed here) is the motion of known curves at 10 fps,
    with the head's yaw split between the global orientation and the neck, as a video fit does."""
    from types import SimpleNamespace

    from scipy.spatial.transform import Rotation

    curves = _known_curves()
    motion = curves_to_motion(curves, basis)
    yaw = curves.head_rotation[:, 0].astype(np.float64)
    glob = Rotation.from_euler("y", 0.7 * yaw[:, None]).as_rotvec()
    neck = Rotation.from_euler("y", 0.3 * yaw[:, None]).as_rotvec()
    motion.global_orient = torch.as_tensor(glob, dtype=torch.float32)
    motion.neck_pose = torch.as_tensor(neck, dtype=torch.float32)
    fit = SimpleNamespace(motion=motion, summary=lambda: "face found in 14/14 frames", report=lambda: {})
    seen: list[Path] = []

    def drive_avatar(avatar: Any, video: Path, *args: Any, **kw: Any) -> Any:
        seen.append(Path(video))
        return fit

    monkeypatch.setattr(drive, "drive_avatar", drive_avatar)
    monkeypatch.setattr(drive, "resolve_landmarker", lambda path: None)
    video = tmp_path / "actor.mp4"
    video.write_bytes(b"\0")
    return video, curves


def test_drive_writes_the_captured_face_as_arkit_curves(
    tmp_path: Path, avatar_file: Path, fitted_video: tuple[Path, ArkitCurves]
) -> None:
    video, curves = fitted_video
    csv = tmp_path / "curves.csv"
    res = drive.run(
        drive.DriveOptions(
            avatar=avatar_file, video=video, output=tmp_path / "o.mp4", arkit_out=csv, size=(32, 32),
            device="cpu", progress=False,
        )
    )  # fmt: skip
    assert res.arkit == csv and res.frames == len(curves) and (tmp_path / "o.mp4").is_file()
    header = csv.read_text().splitlines()[0].split(",")
    assert header[:3] == ["Timecode", "BlendshapeCount", "EyeBlinkLeft"] and "HeadYaw" in header
    back = read_live_link_csv(csv)
    assert back.fps == 10.0 and len(back) == len(curves)  # the video's rate (its frame numbers wrap at 10)
    assert np.abs(back.weights - curves.weights).max() < 0.1
    # the whole head's turn, global orientation and neck together
    np.testing.assert_allclose(back.head_rotation[:, 0], curves.head_rotation[:, 0], atol=1e-5)


def test_cli_drive_arkit_out_bad_suffix_is_one_line(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    avatar_file: Path,
    fitted_video: tuple[Path, ArkitCurves],
) -> None:
    video, _ = fitted_video
    out = tmp_path / "o.mp4"
    argv = ["drive", str(avatar_file), "--video", str(video), "-o", str(out), "--size", "32"]
    rc, _, err = _cli(capsys, *argv, "--arkit-out", str(tmp_path / "curves.txt"))
    _one_line(rc, err, "--arkit-out '", "must end in .csv")
    assert not out.exists()
    rc, stdout, err = _cli(capsys, *argv, "--arkit-out", str(tmp_path / "curves.csv"))
    assert rc == 0, err
    assert stdout.splitlines()[-1] == f"ARKit curves (Live Link Face CSV) saved to {tmp_path / 'curves.csv'}"


# ------------------------------------------------------------------------------- animate --arkit


def test_animate_plays_arkit_curves_through_the_avatars_basis(
    tmp_path: Path, avatar_file: Path, basis: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    curves = _known_curves(T=32, fps=30.0)  # frame numbers wrap at 30: the rate is read back
    csv = write_live_link_csv(tmp_path / "curves.csv", curves)
    played: list[Any] = []
    real = animate.render_motion

    def render_motion(avatar: Any, motion: Any, out: Path, **kw: Any) -> int:
        played.append(motion)
        return real(avatar, motion, out, **kw)

    monkeypatch.setattr(animate, "render_motion", render_motion)
    out = tmp_path / "o.mp4"
    res = animate.run(
        animate.AnimateOptions(
            avatar=avatar_file, output=out, arkit=csv, size=(32, 32), device="cpu", progress=False
        )
    )
    assert res.frames == 32 and out.is_file()
    (motion,) = played
    want = curves_to_motion(read_live_link_csv(csv), basis)
    assert motion.fps == 30.0
    for field in ("expression", "jaw_pose", "eye_pose", "neck_pose"):
        torch.testing.assert_close(getattr(motion, field), getattr(want, field))
    assert float(motion.jaw_pose[:, 0].abs().max()) > 0.1  # jawOpen opened the jaw


def test_cli_animate_arkit_bad_input_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, avatar_file: Path
) -> None:
    csv = write_live_link_csv(tmp_path / "curves.csv", _known_curves(T=3, fps=30.0))
    lines = csv.read_text().splitlines()
    cut = tmp_path / "cut.csv"  # the JawOpen column removed
    rows = [ln.split(",") for ln in lines]
    j = rows[0].index("JawOpen")
    cut.write_text("\n".join(",".join(r[:j] + r[j + 1 :]) for r in rows) + "\n")
    out = tmp_path / "o.mp4"
    rc, _, err = _cli(capsys, "animate", str(avatar_file), "--arkit", str(cut), "-o", str(out))
    _one_line(rc, err, "missing column(s) JawOpen")
    motion = tmp_path / "m.npz"
    MotionSequence(expression=torch.zeros(3, 100), fps=30.0).save(motion)
    rc, _, err = _cli(
        capsys, "animate", str(avatar_file), "--arkit", str(csv), "--motion", str(motion), "-o", str(out)
    )
    _one_line(rc, err, "--motion and --arkit both give the motion; give one of them.")
    assert not out.exists() and _leftovers(tmp_path, {"curves.csv", "cut.csv", "m.npz", "avatar.ply"}) == []
