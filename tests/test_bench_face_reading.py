"""The face-reading benchmark's parts (benchmarks/bench_face_reading.py) and the old-vs-new grid
(benchmarks/demo_grid.py) on small renders: the teacher reads as a face whose mouth and eyes
MediaPipe sees move, a quick demo avatar goes through every function, and the figures, table and
PNGs say what was measured."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

pytest.importorskip("mediapipe")

from flame_core import FlameModel  # noqa: E402
from headstudio.demo.teacher import build_teacher_avatar  # noqa: E402

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SIZE = 256


def _load(name: str, path: Path) -> ModuleType:
    if not path.is_file():
        pytest.skip(f"{path} is not part of this checkout")
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # its dataclasses look their module up while being defined
    spec.loader.exec_module(mod)
    return mod


def _bench() -> ModuleType:
    return _load("bench_face_reading", ROOT / "benchmarks" / "bench_face_reading.py")


@pytest.fixture(scope="module")
def teacher():  # noqa: ANN201
    return build_teacher_avatar(FlameModel.procedural(num_expression=100)).eval()


@pytest.fixture(scope="module")
def quick_avatar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo avatar trained for a few steps at 16² (blurry: a stand-in for any demo file)."""
    from headstudio.demo.run import run_demo

    out = tmp_path_factory.mktemp("quick_demo")
    res = run_demo(out, size=16, steps=4, num_targets=8, num_heldout=2, video_frames=1, progress=False)
    return Path(res["avatar"])


def test_gain_and_r_against_known_lines() -> None:
    b = _bench()
    truth = np.linspace(0.0, 0.1, 12)
    g = b.gain_and_r(truth, 0.5 * truth + 0.02)
    assert g.gain == pytest.approx(0.5) and g.r == pytest.approx(1.0) and g.n == 12
    read = -2.0 * truth
    read[3] = np.nan  # a frame without a face is left out, not counted as 0
    g = b.gain_and_r(truth, read)
    assert g.gain == pytest.approx(-2.0) and g.r == pytest.approx(-1.0) and g.n == 11
    assert math.isnan(b.gain_and_r(np.zeros(5), np.arange(5.0)).gain)  # flat truth: no gain


def test_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    b = _bench()
    with pytest.raises(SystemExit, match=r"avatar '.*nope\.ply' does not exist"):
        b.main(["--avatar", str(tmp_path / "nope.ply"), "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        b.main(["--avatar", str(tmp_path / "nope.ply"), "--size", "32"])
    assert "--size 32: give 64 to 4096 pixels" in capsys.readouterr().err


def test_teacher_reads_as_a_face_whose_mouth_and_eyes_move(teacher, tmp_path: Path) -> None:  # noqa: ANN001
    b = _bench()
    tt = b.turntable_detection(teacher, SIZE, azimuths=(0.0, 30.0, -30.0, 180.0))
    # a face from the front and turned 30°, none from behind: the reader can say no
    assert tt.found.tolist() == [True, True, True, False]
    assert tt.fraction == pytest.approx(0.75)
    png = b.turntable_png(tt, tmp_path / "tt.png", cell=64, cols=2)
    assert _png_size(png) == (128, 128)

    jaw = b.read_motion(teacher, b.jaw_sweep(6), SIZE)
    np.testing.assert_allclose(jaw.values, np.linspace(0.0, 0.3, 6), atol=1e-6)
    m = b.mouth_figures(jaw)
    # measured at 256²: r 0.99, gain 0.88, read 0.23 face heights open at 0.3 rad (truth 0.28)
    assert m["lip_r"] > 0.9, m
    assert m["lip_gain"] > 0.6, m
    assert m["lip_open"] > 0.1 and m["lip_open_true"] > m["lip_open"] * 0.5, m

    blink = b.read_motion(teacher, b.blink_sweep(6), SIZE)
    np.testing.assert_allclose(blink.values, np.linspace(0.0, 1.0, 6), atol=1e-6)
    e = b.eye_figures(blink)
    assert e["eye_r"] > 0.8 and e["eye_gain"] > 0.3, e  # measured r 0.97, gain 0.56
    assert e["eye_frames"] >= 10
    out = b.sweep_png({"teacher": jaw}, "lip_gap", (13, 14), tmp_path / "jaw.png", "jaw")
    assert out.is_file()


def test_every_part_runs_on_a_quick_demo_avatar(quick_avatar: Path, tmp_path: Path) -> None:
    from headstudio.train.runtime import load_avatar

    b = _bench()
    avatar = load_avatar(quick_avatar, None, torch.device("cpu"))
    tt = b.turntable_detection(avatar, 128, azimuths=(0.0, 60.0))
    assert tt.found.shape == (2,) and len(tt.frames) == 2 and tt.frames[0].shape == (128, 128, 3)
    assert tt.landmarks.shape == (2, 478, 2)
    assert np.isnan(tt.landmarks[~tt.found]).all()
    sw = b.read_motion(avatar, b.jaw_sweep(4), 128)
    assert sw.truth_px.shape == (4, 478, 2) and len(sw.frames) == 4
    # the true mesh opens whatever MediaPipe reads
    assert np.all(np.diff(sw.truth["lip_gap"]) > 0)
    figs = {
        "detection": tt.fraction,
        **b.mouth_figures(sw),
        **b.eye_figures(b.read_motion(avatar, b.blink_sweep(4), 128)),
    }
    figs["say_r"] = 0.6
    table = b.format_report({"demo avatar": figs})
    lines = table.splitlines()
    assert len(lines) == 2 + len(b.ROWS)
    say = next(line for line in lines if line.startswith("| say"))
    assert "0.32" in say and "0.60" in say and "≥ 0.5" in say and say.endswith("| yes |")
    drive = next(line for line in lines if "(jaw motion): r" in line)
    assert "n/a" in drive and drive.endswith("| **no** |")  # not measured is not met
    b.turntable_png(tt, tmp_path / "tt.png")
    b.sweep_png({"quick": sw}, "lip_gap", (13, 14), tmp_path / "jaw.png", "jaw")
    assert (tmp_path / "tt.png").is_file() and (tmp_path / "jaw.png").is_file()


def test_say_figure_uses_sentences_the_speech_code_was_not_tuned_on() -> None:
    from headstudio.animate.speech.lipsync import TEMPLATE_SENTENCES

    b = _bench()
    tests = _load("lipsync_tests", ROOT / "packages" / "headstudio-app" / "tests" / "test_lipsync.py")
    assert not set(b.UNSEEN_SENTENCES) & (set(TEMPLATE_SENTENCES) | set(tests.SENTENCES))
    pooled, per = b.say_jaw_loudness(b.UNSEEN_SENTENCES[:2])
    assert len(per) == 2 and all(math.isfinite(r) for r in per)
    assert 0.0 < pooled < 1.0


def test_demo_grid_from_an_avatar_and_from_a_views_folder(quick_avatar: Path, tmp_path: Path) -> None:
    g = _load("demo_grid", ROOT / "benchmarks" / "demo_grid.py")
    views = g.render_views_of(quick_avatar, 64)
    assert list(views) == [v[0] for v in g.VIEWS]
    assert not np.array_equal(views["front"], views["back"])
    assert not np.array_equal(views["front"], views["open_mouth"])  # the jaw opened
    folder = g.save_views(views, tmp_path / "old_views")
    out = tmp_path / "grid.png"
    assert g.main(["--old", str(folder), "--new", str(quick_avatar), "-o", str(out), "--size", "64"]) == 0
    assert _png_size(out) == (g.LABEL_W + 6 * 64, g.TITLE_H + 2 * 64)
    (folder / "back.png").unlink()
    with pytest.raises(FileNotFoundError, match="back.png.*--render"):
        g.load_views(folder)


def _png_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def test_drive_calibration_grid(teacher, tmp_path: Path) -> None:
    g = _load("drive_calibration_grid", ROOT / "benchmarks" / "drive_calibration_grid.py")
    assert g._peaks(np.array([0, 1, 5, 4, 0, 0, 0, 0, 3, 0, 0, 0, 0, 2.0]), 3) == [2, 8, 13]
    avatar = teacher.save(tmp_path / "teacher.ply")
    out = tmp_path / "calibration.png"
    args = ["--avatar", str(avatar), "--motion", "jaw", "--frames", "16", "--size", "256", "--columns", "2"]
    assert g.main([*args, "--out", str(out)]) == 0
    left, top, right, bottom = g.crop_box(256)
    rows = len(g.ROWS) * (bottom - top + g.TEXT_H)
    assert _png_size(out) == (g.LABEL_W + 2 * (right - left), rows)
