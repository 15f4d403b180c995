"""Video-driven animation on a real face photograph (skimage's astronaut) moved by known rotations."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from flame_core import FlameModel
from flame_core.fitting import project
from flame_core.motion import MotionSequence
from flame_core.procedural import build_procedural_head
from headstudio import cli
from headstudio.animate.drive import (
    NUM_LANDMARKS,
    DriveOptions,
    detect_landmarks,
    fill_missing,
    fit_track,
    fit_video,
    least_active_frames,
    resolve_landmarker,
    video_to_motion,
)
from headstudio.animate.face_track import FaceTrack
from headstudio.avatar import Avatar
from headstudio.commands import common
from headstudio.config import InitConfig
from headstudio.errors import HeadStudioError
from headstudio.video import read_video_frames, write_video
from PIL import Image
from scipy.spatial.transform import Rotation
from skimage import data, transform

ANGLES = np.linspace(-15.0, 15.0, 9)  # in-plane rotation per frame, degrees, counter-clockwise


def _astronaut_clip(path: Path, blank_at: int | None = None) -> Path:
    """A 9-frame 320² MP4 of the astronaut's face rotated by ANGLES about the face centre."""
    img = data.astronaut()
    frames = []
    for i, a in enumerate(ANGLES):
        rot = transform.rotate(img, a, center=(250, 170), mode="edge", preserve_range=True)
        frame = rot.astype(np.uint8)[20:340, 90:410]
        frames.append(np.full_like(frame, 128) if i == blank_at else frame)
    write_video(path, frames, fps=10)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _astronaut_clip(tmp_path_factory.mktemp("drive") / "astronaut.mp4")


def _eye_line_deg(lm: np.ndarray) -> np.ndarray:
    """Angle of the line between the outer eye corners (landmarks 33 → 263), CCW positive."""
    d = lm[:, 263] - lm[:, 33]
    return np.degrees(np.arctan2(-d[:, 1], d[:, 0]))


def test_landmarks_follow_known_rotation(clip: Path) -> None:
    frames, fps = read_video_frames(clip)
    assert len(frames) == len(ANGLES)
    lm, found = detect_landmarks(frames, fps)
    assert lm.shape == (len(ANGLES), NUM_LANDMARKS, 2) and found.all()
    rel = _eye_line_deg(lm) - ANGLES  # the astronaut's own head tilt, constant if tracking is right
    assert np.ptp(rel) < 4.0, rel


def test_missing_face_frames_are_interpolated(tmp_path: Path) -> None:
    frames, fps = read_video_frames(_astronaut_clip(tmp_path / "gap.mp4", blank_at=4))
    lm, found = detect_landmarks(frames, fps)
    assert not found[4] and found[[3, 5]].all()
    filled = fill_missing(lm, found)
    assert np.isfinite(filled).all()
    np.testing.assert_allclose(filled[4], (lm[3] + lm[5]) / 2, atol=1e-4)
    with pytest.raises(HeadStudioError, match="no face was found"):
        fill_missing(lm, np.zeros(len(found), bool))


def test_landmarker_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEADSTUDIO_FACE_LANDMARKER", raising=False)
    assert resolve_landmarker().name == "face_landmarker.task"
    monkeypatch.setenv("HEADSTUDIO_FACE_LANDMARKER", str(tmp_path / "none.task"))
    with pytest.raises(HeadStudioError, match="none.task' does not exist"):
        resolve_landmarker()


def _roll_deg(motion) -> np.ndarray:
    """Head roll (about the camera axis, +z) of global_orient ∘ neck_pose per frame, degrees."""
    g = Rotation.from_rotvec(motion.global_orient.detach().double().numpy())
    n = Rotation.from_rotvec(motion.neck_pose.detach().double().numpy())
    m = (g * n).as_matrix()
    return np.degrees(np.arctan2(m[:, 1, 0], m[:, 0, 0]))


@pytest.mark.slow
def test_fitted_head_roll_follows_known_rotation(clip: Path, tmp_path: Path) -> None:
    head = FlameModel.procedural()
    res = video_to_motion(head, clip, save_motion=tmp_path / "m.npz")
    assert len(res.motion) == len(ANGLES)
    roll = _roll_deg(res.motion)
    rel = roll - ANGLES
    # The fitted roll follows the known rotation: same sign, within a few degrees (after the
    # subject's own constant tilt), and its total swing matches the 30° applied.
    assert np.ptp(rel) < 4.0, (roll, ANGLES)
    assert abs((roll[-1] - roll[0]) - 30.0) < 4.0
    assert (tmp_path / "m.npz").is_file()
    assert math.isfinite(float(torch.as_tensor(res.motion.expression).abs().max()))


class _RigidProceduralHead(torch.nn.Module):
    """The procedural head's template + expression blendshapes under a rigid head rotation.

    Enough of a FlameModel for the landmark fitter (``forward(...).vertices``, ``faces``,
    ``landmark_embedding``); lets the drive pipeline be checked without the full LBS model.
    """

    def __init__(self) -> None:
        super().__init__()
        ph = build_procedural_head()
        d = ph.model_dict
        self.register_buffer("v_template", torch.tensor(np.asarray(d["v_template"]), dtype=torch.float32))
        self.register_buffer(
            "expr_dirs", torch.tensor(np.asarray(d["shapedirs"])[:, :, 300:], dtype=torch.float32)
        )
        self.register_buffer("faces", torch.tensor(np.asarray(d["f"]), dtype=torch.long))
        self.landmark_embedding = ph.embedding

    def forward(self, expression=None, global_orient=None, neck_pose=None, translation=None, **_):
        v = self.v_template[None]
        if expression is not None:
            v = v + torch.einsum("vce,te->tvc", self.expr_dirs[..., : expression.shape[1]], expression)
        R = torch.eye(3)[None]
        for r in (global_orient, neck_pose):
            if r is not None:
                R = R @ _rodrigues(r)
        v = v @ R.transpose(1, 2)
        if translation is not None:
            v = v + translation[:, None]
        return SimpleNamespace(vertices=v)


def _rodrigues(r: torch.Tensor) -> torch.Tensor:
    """Axis-angle ``[T, 3]`` → rotation matrices ``[T, 3, 3]`` (differentiable)."""
    theta = r.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    k = r / theta
    K = torch.zeros(r.shape[0], 3, 3)
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 2] = -k[:, 2], k[:, 1], -k[:, 0]
    K[:, 1, 0], K[:, 2, 0], K[:, 2, 1] = k[:, 2], -k[:, 1], k[:, 0]
    s, c = theta.sin()[..., None], theta.cos()[..., None]
    return torch.eye(3) + s * K + (1 - c) * K @ K


@pytest.mark.slow
def test_fit_with_rigid_procedural_head_follows_rotation(clip: Path, tmp_path: Path) -> None:
    res = video_to_motion(_RigidProceduralHead(), clip, save_motion=tmp_path / "m.npz")
    roll = _roll_deg(res.motion)
    rel = roll - ANGLES
    assert np.ptp(rel) < 2.0, (roll, ANGLES)
    assert abs(rel.mean()) < 6.0  # the photograph's own tilt is about -3°
    assert float(torch.as_tensor(res.fit.error_px).max()) < 6.0


# ------------------------------------------------------------------ synthetic landmark tracks

SIZE = (256, 256)


def _bumps(T: int, centres: list[int], half_width: int, heights: list[float]) -> np.ndarray:
    x = np.arange(T, dtype=np.float64)
    out = np.zeros(T)
    for c, h in zip(centres, heights):
        u = np.clip((x - c) / half_width, -1.0, 1.0)
        out += h * 0.5 * (1.0 + np.cos(np.pi * u))
    return out


def _synthetic_track(head, motion) -> FaceTrack:
    """The procedural head's own 478 landmarks under ``motion``, seen by a fixed camera, as if
    MediaPipe had read them (no blendshape scores)."""
    with torch.no_grad():
        lm = head.landmark_embedding(head(**motion.flame_kwargs()).vertices, head.faces)
    T = lm.shape[0]
    px = project(lm, torch.tensor([[0.0, 0.01, 0.45]]).expand(T, -1), 1.2 * SIZE[0], SIZE).numpy()
    return FaceTrack(px.astype(np.float32), np.ones(T, bool), np.zeros((T, 0), np.float32), ())


def _smiling_talk(T: int = 24):
    """An actor with a resting smile (expression 0 = 1.0 throughout) who opens the mouth twice
    (jaw 0.05 → 0.3 rad) and blinks once: jaw, blinks and smile are known."""
    expr = np.zeros((T, 10))
    expr[:, 0] = 1.0
    expr[:, 5] = expr[:, 6] = _bumps(T, [17], 2, [1.0])
    jaw = np.zeros((T, 3))
    jaw[:, 0] = 0.05 + _bumps(T, [6, 13], 3, [0.25, 0.15])
    return MotionSequence(expression=expr, jaw_pose=jaw, fps=15.0)


@pytest.fixture(scope="module")
def smiling_fit():
    """The actor of :func:`_smiling_talk` fitted with the neutral estimated from the video and
    without a neutral (the fit is the expensive part: done once).

    The head's identity space is its three global proportions (like FLAME's, it holds no
    expressions), so the fitted identity cannot take up the resting smile by itself."""
    head = FlameModel.procedural(num_shape=3, num_expression=10)
    motion = _smiling_talk()
    track = _synthetic_track(head, motion)
    opts = DriveOptions(num_expression=10)
    auto = fit_track(head, track, 15.0, SIZE, opts)
    none = fit_track(head, track, 15.0, SIZE, dataclasses.replace(opts, neutral="none"))
    return motion, track, auto, none


@pytest.mark.slow
def test_least_active_frames_are_at_rest(smiling_fit) -> None:
    motion, track, auto, _ = smiling_fit
    frames = least_active_frames(track, track.landmarks, 0.25)
    assert len(frames) == 6
    jaw = motion.jaw_pose[:, 0].numpy()
    blink = motion.expression[:, 5].numpy()
    assert (jaw[frames] < 0.06).all(), (frames, jaw[frames])
    assert (blink[frames] < 0.05).all()
    np.testing.assert_array_equal(auto.neutral_frames, least_active_frames(track, auto.landmarks, 0.2))


def _face_mm(head, motion) -> np.ndarray:
    """The head's 478 landmarks ``[T, 478, 3]`` in mm under ``motion``'s expression, jaw and eyes
    (no head pose): what the motion does to the face."""
    kw = {k: v for k, v in motion.flame_kwargs().items() if k in ("expression", "jaw_pose", "eye_pose")}
    with torch.no_grad():
        return 1e3 * head.landmark_embedding(head(**kw).vertices, head.faces).numpy()


@pytest.mark.slow
def test_auto_neutral_drops_the_resting_smile_and_keeps_the_motion(smiling_fit) -> None:
    """Relative to the actor's neutral face: the resting smile (and resting jaw) are not passed on
    to the avatar, the mouth openings and the blink are."""
    motion, _, auto, none = smiling_fit
    head = FlameModel.procedural(num_shape=3, num_expression=10)
    neutral_face = _face_mm(head, MotionSequence(expression=np.zeros((1, 10)), fps=15.0))[0]
    jaw_true = motion.jaw_pose[:, 0].numpy()
    rest = jaw_true < 0.06
    corners = [61, 291]
    moved = {
        n: np.linalg.norm(_face_mm(head, r.motion)[rest][:, corners] - neutral_face[corners], axis=-1)
        for n, r in (("auto", auto), ("none", none))
    }
    true_smile = np.linalg.norm(_face_mm(head, motion)[rest][:, corners] - neutral_face[corners], axis=-1)
    assert true_smile.mean() > 3.0  # the actor's resting mouth corners sit ~4 mm from neutral
    assert moved["none"].mean() > 0.6 * true_smile.mean(), moved  # without a neutral: passed on
    assert moved["auto"].mean() < 1.0, moved  # relative to the actor's neutral: the avatar rests
    # the motion is kept: the jaw opening relative to rest, and the blink
    np.testing.assert_allclose(auto.motion.jaw_pose[:, 0].numpy(), jaw_true - 0.05, atol=0.04)
    face = _face_mm(head, auto.motion)
    lid = face[:, 145, 1] - face[:, 159, 1]  # lower minus upper lid height (y up): negative when open
    assert abs(lid[17]) < 0.5 * abs(np.median(lid)), lid  # the blink closes the eye more than half
    assert float(auto.error_px.max()) < 1.0


@pytest.mark.slow
def test_summary_reports_faces_lost_frames_and_error(smiling_fit) -> None:
    _, track, auto, _ = smiling_fit
    assert auto.frames_with_face == 24 and auto.lost_frames == 0
    text = auto.summary()
    assert "face found in 24/24 frames" in text and "reprojection error mean" in text
    found = track.found.copy()
    found[[3, 4]] = False
    res = dataclasses.replace(auto, found=found)
    assert res.lost_frames == 2
    assert "face found in 22/24 frames (2 lost at frames 3-4, filled by interpolation)" in res.summary()
    worst = int(np.argmax(auto.error_px))
    assert f"max {auto.error_px[worst]:.2f} px at frame {worst}" in text
    rep = res.report()
    assert rep["lost_frames"] == [3, 4] and rep["found"][3] is False and rep["frames_with_face"] == 22
    assert len(rep["error_px"]) == 24
    assert rep["error_px"][worst] == pytest.approx(auto.error_px[worst], abs=1e-3)
    assert rep["neutral_frames"] == auto.neutral_frames.tolist() and len(rep["neutral"]["expression"]) == 10
    found[[3, 4, 5, 9, 20]] = False
    assert "(5 lost at frames 3-5, 9, 20," in dataclasses.replace(auto, found=found).summary()


# ------------------------------------------------------------------------------------ the CLI


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli.main([*argv, "-q", "--device", "cpu"])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def small_avatar(monkeypatch: pytest.MonkeyPatch):
    """A real (untrained) avatar on a small procedural head, returned by the CLI's loader."""
    head = FlameModel.procedural(num_shape=10, num_expression=10)
    avatar = Avatar.initialize(head, InitConfig(points_per_face=1), torch.Generator().manual_seed(0)).eval()
    monkeypatch.setattr(common, "load_avatar", lambda path, flame, device, verify=True: avatar)
    return avatar


@pytest.mark.slow
def test_cli_drive_reports_lost_frames_and_saves_the_motion(capsys, tmp_path: Path, small_avatar) -> None:
    video = _astronaut_clip(tmp_path / "gap.mp4", blank_at=4)
    (tmp_path / "avatar.ply").write_bytes(b"ply\n")
    out, motion, report = tmp_path / "out.mp4", tmp_path / "motion.npz", tmp_path / "report.json"
    rc, stdout, err = _cli(
        capsys, "drive", str(tmp_path / "avatar.ply"), "--video", str(video), "-o", str(out),
        "--save-motion", str(motion), "--report", str(report), "--size", "32", "--no-calibrate",
    )  # fmt: skip
    assert rc == 0, err
    assert "face found in 8/9 frames (1 lost at frame 4, filled by interpolation)" in stdout
    rep = json.loads(report.read_text())
    assert rep["lost_frames"] == [4] and len(rep["error_px"]) == 9 and 0 < rep["error_px_mean"] < 20
    assert "landmark reprojection error mean" in stdout and "neutral from" in stdout
    assert rep["jaw_calibration"] is None and "calibrat" not in stdout + err
    assert out.is_file() and "wrote" in stdout
    m = MotionSequence.load(motion)
    assert len(m) == 9 and m.fps == 10.0
    # the lost frame is interpolated, not frozen: its head roll lies between its neighbours'
    roll = _roll_deg(m)
    assert min(roll[3], roll[5]) - 0.5 < roll[4] < max(roll[3], roll[5]) + 0.5, roll


@pytest.mark.slow
def test_cli_drive_goes_on_when_the_avatar_cannot_be_calibrated(
    capsys, tmp_path: Path, small_avatar, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An avatar MediaPipe cannot read (here: its calibration clip renders blank) is driven
    uncalibrated, with one warning that says why, not an error."""
    from headstudio.animate import drive_calibration

    def blank(avatar, motion, size, *args, **kwargs):  # noqa: ANN001, ANN202
        return (np.full((size[1], size[0], 3), 255, np.uint8) for _ in range(len(motion)))

    monkeypatch.setattr(drive_calibration, "motion_frames", blank)
    video = _astronaut_clip(tmp_path / "clip.mp4")
    (tmp_path / "avatar.ply").write_bytes(b"ply\n")
    report = tmp_path / "report.json"
    rc, stdout, err = _cli(
        capsys, "drive", str(tmp_path / "avatar.ply"), "--video", str(video), "-o", str(tmp_path / "out.mp4"),
        "--report", str(report), "--size", "32",
    )  # fmt: skip
    assert rc == 0, err
    want = "driving without jaw calibration: MediaPipe found the avatar's face in only 0 of the 61 frames"
    assert err.count(want) == 1, err
    assert json.loads(report.read_text())["jaw_calibration"] is None and "jaw calibrated" not in stdout


def test_cli_drive_video_without_a_face_is_one_line(capsys, tmp_path: Path, small_avatar) -> None:
    video = tmp_path / "empty.mp4"
    write_video(video, [np.full((64, 64, 3), 128, np.uint8)] * 5, fps=10)
    (tmp_path / "avatar.ply").write_bytes(b"ply\n")
    out = tmp_path / "out.mp4"
    rc, _, err = _cli(capsys, "drive", str(tmp_path / "avatar.ply"), "--video", str(video), "-o", str(out))
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no face was found in any of the 5 frames of"), err
    assert "empty.mp4" in lines[0] and not out.exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--filter-beta", "-1"], "zero or positive"),
        (["--filter-min-cutoff", "0"], "positive"),
        (["--filter-d-cutoff", "nan"], "positive"),
        (["--neutral", "MISSING.png"], "MISSING.png"),
        (["--neutral", "NOTIMG.txt"], "NOTIMG.txt"),
        (["--report", "r.txt"], "--report 'r.txt' must end in .json"),
    ],
)
def test_cli_drive_bad_options_are_one_line(capsys, tmp_path: Path, small_avatar, args, needle) -> None:
    (tmp_path / "avatar.ply").write_bytes(b"ply\n")
    (tmp_path / "in.mp4").write_bytes(b"\0")
    (tmp_path / "NOTIMG.txt").write_text("x")
    args = [str(tmp_path / a) if a.isupper() or a.startswith(("MISSING", "NOTIMG")) else a for a in args]
    rc, _, err = _cli(
        capsys, "drive", str(tmp_path / "avatar.ply"), "--video", str(tmp_path / "in.mp4"),
        "-o", str(tmp_path / "o.mp4"), *args,
    )  # fmt: skip
    assert rc == 2 and len(err.strip().splitlines()) == 1 and needle in err, err


def test_cli_defaults_are_the_library_defaults() -> None:
    opts = DriveOptions()
    args = cli.build_parser().parse_args(["drive", "a.ply", "--video", "v.mp4", "-o", "o.mp4"])
    assert (args.min_cutoff, args.beta, args.d_cutoff) == (
        opts.min_cutoff,
        opts.beta,
        opts.d_cutoff,
    )
    assert args.neutral == opts.neutral and args.smoothing == opts.smoothing and args.filter


@pytest.mark.slow
def test_neutral_image_is_the_actors_rest(clip: Path, tmp_path: Path) -> None:
    """The calibration photo is the same face as every frame of the clip (which only rotates it):
    relative to it, the clip has no expression left; without a neutral it keeps the photo's own."""
    photo = tmp_path / "rest.png"
    Image.fromarray(data.astronaut()[20:340, 90:410]).save(photo)
    frames, fps = read_video_frames(clip)
    head = FlameModel.procedural(num_shape=50, num_expression=10)
    opts = DriveOptions(num_expression=10, steps=80, lbfgs_steps=30)
    rel = fit_video(head, frames, fps, options=dataclasses.replace(opts, neutral=photo))
    absolute = fit_video(head, frames, fps, options=dataclasses.replace(opts, neutral="none"))
    e_rel = rel.motion.expression.abs().mean(0)
    e_abs = absolute.motion.expression.abs().mean(0)
    assert float(e_abs.max()) > 0.2, e_abs  # the astronaut's own resting expression
    assert float(e_rel.mean()) < 0.5 * float(e_abs.mean()), (e_rel, e_abs)
    assert len(rel.neutral_frames) == 0 and rel.neutral["expression"].shape == (10,)
    with pytest.raises(HeadStudioError, match="no face was found in the «neutral» image"):
        blank = tmp_path / "blank.png"
        Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(blank)
        fit_video(head, frames, fps, options=dataclasses.replace(opts, neutral=blank))
