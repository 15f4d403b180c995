"""Video-driven animation on a real face photograph (skimage's astronaut) moved by known rotations."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from headstudio.drive import NUM_LANDMARKS, detect_landmarks, fill_missing, resolve_landmarker
from headstudio.errors import HeadStudioError
from headstudio.video import read_video_frames, write_video

ANGLES = np.linspace(-15.0, 15.0, 9)  # in-plane rotation per frame, degrees, counter-clockwise


def _astronaut_clip(path: Path, blank_at: int | None = None) -> Path:
    """A 9-frame 320² MP4 of the astronaut's face rotated by ANGLES about the face centre."""
    from skimage import data, transform

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
    from scipy.spatial.transform import Rotation

    g = Rotation.from_rotvec(motion.global_orient.detach().double().numpy())
    n = Rotation.from_rotvec(motion.neck_pose.detach().double().numpy())
    m = (g * n).as_matrix()
    return np.degrees(np.arctan2(m[:, 1, 0], m[:, 0, 0]))


def test_fitted_head_roll_follows_known_rotation(clip: Path, tmp_path: Path) -> None:
    try:
        from flame_core import FlameModel
        from flame_core.landmarks import fit_to_landmarks  # noqa: F401
    except ImportError:
        pytest.skip("flame_core.fit_to_landmarks is not available yet")

    from headstudio.drive import video_to_motion

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
        from flame_core.procedural import build_procedural_head

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


def test_fit_with_rigid_procedural_head_follows_rotation(clip: Path, tmp_path: Path) -> None:
    pytest.importorskip("flame_core.motion")
    pytest.importorskip("flame_core.procedural")
    from headstudio.drive import video_to_motion

    res = video_to_motion(_RigidProceduralHead(), clip, save_motion=tmp_path / "m.npz")
    roll = _roll_deg(res.motion)
    rel = roll - ANGLES
    assert np.ptp(rel) < 2.0, (roll, ANGLES)
    assert abs(rel.mean()) < 6.0  # the photograph's own tilt is about -3°
    assert float(torch.as_tensor(res.fit.error_px).max()) < 6.0
