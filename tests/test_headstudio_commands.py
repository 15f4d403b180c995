"""End to end through the `headstudio` CLI with a real Avatar on the procedural head (CPU, tiny)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flame_core.motion")
rg_ply = pytest.importorskip("rigged_gaussians.ply")
avatar_mod = pytest.importorskip("headstudio.avatar")
config_mod = pytest.importorskip("headstudio.config")

from headstudio import cli  # noqa: E402
from headstudio.video import probe_video  # noqa: E402


@pytest.fixture(scope="module")
def avatar_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from flame_core import FlameModel

    head = FlameModel.procedural(num_shape=20, num_expression=20)
    avatar = avatar_mod.Avatar.initialize(head, config_mod.InitConfig())
    path = tmp_path_factory.mktemp("e2e") / "avatar.ply"
    avatar.save(path)
    return path


def test_animate_export_render(avatar_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--device", "cpu", "-q"]
    out = tmp_path / "talk.mp4"
    assert (
        cli.main(
            [
                "animate",
                str(avatar_file),
                "--frames",
                "6",
                "--fps",
                "10",
                "--size",
                "32",
                "-o",
                str(out),
                *base,
            ]
        )
        == 0
    )
    assert probe_video(out).num_frames == 6

    neutral, opened = tmp_path / "neutral.ply", tmp_path / "open.ply"
    assert cli.main(["export", str(avatar_file), "-o", str(neutral), *base]) == 0
    assert cli.main(["export", str(avatar_file), "-o", str(opened), "--jaw", "0.4", *base]) == 0
    a, b = rg_ply.load_ply(neutral), rg_ply.load_ply(opened)
    moved = np.linalg.norm(np.asarray(b.means) - np.asarray(a.means), axis=-1)
    assert moved.max() > 1e-3, "opening the jaw must move Gaussians"
    assert np.median(moved) < 1e-4, "most of the head (above the jaw) stays put"

    assert (
        cli.main(
            ["render", str(avatar_file), "--views", "2", "--size", "32", "-o", str(tmp_path / "v.png"), *base]
        )
        == 0
    )
    assert (tmp_path / "v.png").is_file()
    capsys.readouterr()


def test_corrupt_avatar_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"ply\nformat ascii 1.0\nend_header\n")
    rc = cli.main(["render", str(bad), "--views", "1", "-o", str(tmp_path / "x.png"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("error: ") and "bad.ply" in err
