"""MP4 writing (frame count, audio stream, atomicity) and the render commands' outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from headstudio.errors import HeadStudioError
from headstudio.output.rendering import (
    ViewSettings,
    check_size,
    orbit_views,
    render_motion,
    render_stills,
    render_turntable,
)
from headstudio.video import VideoWriter, probe_video, read_video_frames, write_video
from PIL import Image


def test_video_roundtrip_odd_size(tmp_path: Path) -> None:
    frames = [np.full((33, 47, 3), 20 * i, np.uint8) for i in range(7)]
    out = tmp_path / "v.mp4"
    assert write_video(out, frames, fps=10) == 7
    info = probe_video(out)
    assert (info.num_frames, info.width, info.height, info.has_audio) == (7, 48, 34, False)
    back, fps = read_video_frames(out)
    assert len(back) == 7 and fps == pytest.approx(10)
    # Flat grey frames survive H.264 almost exactly.
    assert abs(float(back[3][:33, :47].mean()) - 60) < 3
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]


def test_video_with_audio(tmp_path: Path, sine_wav: Path) -> None:
    out = tmp_path / "a.mp4"
    write_video(out, [np.zeros((32, 32, 3), np.uint8)] * 25, fps=25, audio=sine_wav)
    info = probe_video(out)
    assert info.has_audio and info.num_frames == 25
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "tone.wav"]  # no temporaries left


def test_video_failure_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "broken.mp4"
    with pytest.raises(RuntimeError, match="boom"), VideoWriter(out, fps=10) as vw:
        vw.write(np.zeros((16, 16, 3), np.uint8))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(HeadStudioError, match="must end in .mp4"):
        VideoWriter(tmp_path / "x.avi", fps=10)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not a wav")
    with pytest.raises(HeadStudioError, match="not a readable WAV"):
        VideoWriter(out, fps=10, audio=bad)


def test_check_size() -> None:
    assert check_size(64) == (64, 64)
    for bad in (0, -5, 5000):
        with pytest.raises(HeadStudioError, match="impossible resolution"):
            check_size(bad)


def test_orbit_views_look_at_target() -> None:
    target = torch.tensor([0.0, 0.05, 0.0])
    vms, ks = orbit_views([0.0, 90.0, 180.0], 20.0, 1.0, 30.0, 64, 48, target)
    assert vms.shape == (3, 4, 4) and ks.shape == (3, 3, 3)
    cam = target @ vms[:, :3, :3].transpose(1, 2) + vms[:, :3, 3]  # [3, 3] target in camera space
    assert torch.allclose(cam[:, :2], torch.zeros(3, 2), atol=1e-5)
    assert torch.allclose(cam[:, 2], torch.ones(3), atol=1e-5)
    # Azimuth 0 is in front of the face (+z), elevation 20° is above (y-up world).
    eye0 = -vms[0, :3, :3].T @ vms[0, :3, 3]
    assert eye0[2] > 0.9 * np.cos(np.radians(20)) and eye0[1] > target[1]
    assert torch.allclose(ks[0, :2, 2], torch.tensor([32.0, 24.0]))


def test_turntable_frame_count(tmp_path: Path, point_avatar) -> None:
    out = tmp_path / "turn.mp4"
    n = render_turntable(point_avatar, out, num_frames=12, fps=12, size=48, progress=False)
    assert n == 12
    info = probe_video(out)
    assert info.num_frames == 12 and (info.width, info.height) == (48, 48)
    frames, _ = read_video_frames(out)
    assert frames[0].mean() < 254  # the head is in view (not a blank background)


def test_animate_procedural_with_audio(tmp_path: Path, point_avatar, sine_wav: Path) -> None:
    pytest.importorskip("flame_core.motion")
    out = tmp_path / "talk.mp4"
    n = render_motion(point_avatar, None, out, audio=sine_wav, fps=20, size=32, progress=False)
    info = probe_video(out)
    assert n == 20 == info.num_frames  # procedural motion as long as the 1 s audio
    assert info.has_audio


def test_animate_motion_file_resampled(tmp_path: Path, point_avatar) -> None:
    motion_mod = pytest.importorskip("flame_core.motion")
    seq = motion_mod.procedural_talking_motion(num_frames=30, fps=30.0, num_expression=100, seed=1)
    seq.save(tmp_path / "m.npz")
    out = tmp_path / "m.mp4"
    n = render_motion(point_avatar, tmp_path / "m.npz", out, fps=15, size=32, progress=False)
    expected = len(seq.resample(15))
    assert n == expected == probe_video(out).num_frames
    assert abs(expected - 15) <= 1
    frames, _ = read_video_frames(out)
    assert any(np.abs(f.astype(int) - frames[0]).sum() > 0 for f in frames[1:]), "the head must move"


def test_stills_grid_and_dir(tmp_path: Path, point_avatar) -> None:
    grid = render_stills(point_avatar, tmp_path / "grid.png", num_views=6, size=(40, 32))
    img = np.asarray(Image.open(grid[0]))
    assert img.shape == (64, 160, 3)  # 2 rows × 4 columns of 40×32
    paths = render_stills(point_avatar, tmp_path / "views", num_views=3, size=32)
    assert [p.name for p in paths] == ["view_000.png", "view_001.png", "view_002.png"]
    ims = [np.asarray(Image.open(p)) for p in paths]
    assert not np.array_equal(ims[0], ims[1])
    # Front and 180° views of the sphere's points are mirror-like but not identical.
    with pytest.raises(HeadStudioError, match=".png file or a directory"):
        render_stills(point_avatar, tmp_path / "x.jpg", num_views=2, size=32)
    with pytest.raises(HeadStudioError, match="impossible resolution"):
        render_stills(point_avatar, tmp_path / "y.png", num_views=2, size=0)
    assert ViewSettings().fovy_deg > 0
