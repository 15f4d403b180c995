"""Motion sequences: readers (TalkSHOW .npy, SHOW .pkl, ours .npz), errors, resampling, procedural talk."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from flame_core.motion import MotionFileError, MotionSequence, procedural_talking_motion
from flame_core.rotations import axis_angle_to_matrix
from scipy.spatial.transform import Rotation

T = 12


def _rng(seed=0):
    return np.random.default_rng(seed)


def _talkshow(T: int = T, seed: int = 0) -> np.ndarray:
    a = _rng(seed).normal(0, 0.2, (T, 265)).astype(np.float32)
    return a


def _neck_ref(body: np.ndarray) -> np.ndarray:
    """Reference: SMPL-X neck (joint 12) then head (joint 15) composed, via scipy."""
    r = Rotation.from_rotvec(body[:, 11].astype(np.float64)) * Rotation.from_rotvec(
        body[:, 14].astype(np.float64)
    )
    return r.as_matrix()


def _show(T: int = T, seed: int = 1, flat_body: bool = False, with_global: bool = True) -> dict:
    rng = _rng(seed)
    d = {
        "expression": rng.normal(0, 1, (T, 100)).astype(np.float32),
        "jaw_pose": rng.normal(0, 0.1, (T, 3)).astype(np.float32),
        "leye_pose": rng.normal(0, 0.1, (T, 3)).astype(np.float32),
        "reye_pose": rng.normal(0, 0.1, (T, 3)).astype(np.float32),
        "body_pose_axis": rng.normal(0, 0.3, (T, 63) if flat_body else (T, 21, 3)).astype(np.float32),
    }
    if with_global:
        d["global_orient"] = rng.normal(0, 0.1, (T, 3)).astype(np.float32)
    return d


def _save_pkl(path, obj):
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=2)
    return path


def test_talkshow_npy_reader(tmp_path):
    a = _talkshow()
    np.save(tmp_path / "talk.npy", a)
    seq = MotionSequence.load(tmp_path / "talk.npy")
    assert len(seq) == T and seq.fps == 30.0 and seq.expression.dtype == torch.float32
    np.testing.assert_allclose(seq.expression.numpy(), a[:, 165:265])
    np.testing.assert_allclose(seq.jaw_pose.numpy(), a[:, 0:3])
    np.testing.assert_allclose(seq.eye_pose.numpy(), a[:, 3:9])
    assert not seq.global_orient.any() and not seq.translation.any()
    body = a[:, 12:75].reshape(T, 21, 3)
    got = axis_angle_to_matrix(seq.neck_pose.double()).numpy()
    np.testing.assert_allclose(got, _neck_ref(body), atol=1e-5)
    # neck is joint 12 (body index 11) with head (index 14) -- not the left collar (index 12)
    collar = Rotation.from_rotvec(body[:, 12].astype(np.float64)).as_matrix()
    assert np.abs(got - collar).max() > 0.05
    np.save(tmp_path / "batched.npy", a[None])  # [1, T, 265] is accepted too
    assert len(MotionSequence.load(tmp_path / "batched.npy", fps=25)) == T
    assert MotionSequence.load(tmp_path / "batched.npy", fps=25).fps == 25


@pytest.mark.parametrize("flat_body", [False, True])
def test_show_pkl_reader(tmp_path, flat_body):
    d = _show(flat_body=flat_body)
    seq = MotionSequence.load(_save_pkl(tmp_path / "show.pkl", d))
    np.testing.assert_allclose(seq.expression.numpy(), d["expression"])
    np.testing.assert_allclose(seq.jaw_pose.numpy(), d["jaw_pose"])
    np.testing.assert_allclose(seq.eye_pose.numpy(), np.c_[d["leye_pose"], d["reye_pose"]])
    np.testing.assert_allclose(seq.global_orient.numpy(), d["global_orient"])
    body = d["body_pose_axis"].reshape(T, 21, 3)
    np.testing.assert_allclose(
        axis_angle_to_matrix(seq.neck_pose.double()).numpy(), _neck_ref(body), atol=1e-5
    )


def test_show_pkl_optional_global_and_short_expression(tmp_path):
    d = _show(with_global=False)
    d["expression"] = d["expression"][:, :50]
    seq = MotionSequence.load(_save_pkl(tmp_path / "s.pkl", d))
    assert seq.num_expression == 50 and not seq.global_orient.any()


def test_npz_roundtrip(tmp_path):
    seq = procedural_talking_motion(num_frames=40, fps=25.0, seed=3)
    p = seq.save(tmp_path / "out" / "m.npz")
    assert sorted(x.name for x in p.parent.iterdir()) == ["m.npz"]
    back = MotionSequence.load(p)
    assert back.fps == 25.0 and len(back) == 40
    for k, v in seq.tensors().items():
        torch.testing.assert_close(getattr(back, k), v, rtol=0, atol=0)
    with pytest.raises(ValueError, match="npz"):
        seq.save(tmp_path / "m.npy")


def test_flame_kwargs(tmp_path):
    seq = procedural_talking_motion(num_frames=20, seed=1)
    kw = seq.flame_kwargs([3, 5, 7])
    assert set(kw) == {"expression", "jaw_pose", "neck_pose", "eye_pose", "global_orient", "translation"}
    assert kw["expression"].shape == (3, 100) and kw["eye_pose"].shape == (3, 6)
    torch.testing.assert_close(kw["jaw_pose"][1], seq.jaw_pose[5])
    assert seq.flame_kwargs(range(20))["neck_pose"].shape == (20, 3)
    assert seq.flame_kwargs(slice(0, 4))["expression"].shape == (4, 100)
    with pytest.raises(IndexError, match="20 frames"):
        seq.flame_kwargs([20])
    from flame_core import FlameModel

    out = FlameModel.procedural(num_shape=10, num_expression=100)(**kw)
    assert out.vertices.shape[0] == 3 and torch.isfinite(out.vertices).all()
    # the same frames as one FlameParams batch
    p = seq.params([3, 5, 7])
    assert p.kwargs().keys() == kw.keys() and all(torch.equal(p.kwargs()[k], kw[k]) for k in kw)
    with pytest.raises(IndexError, match="20 frames"):
        seq.params([20])


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.pop("jaw_pose"), "jaw_pose"),
        (lambda d: d.pop("body_pose_axis"), "body_pose_axis"),
        (lambda d: d.__setitem__("jaw_pose", np.zeros((T, 4))), "jaw_pose"),
        (lambda d: d.__setitem__("leye_pose", np.zeros((T - 1, 3))), "leye_pose"),
        (lambda d: d.__setitem__("body_pose_axis", np.zeros((T, 20, 3))), "body_pose_axis"),
        (lambda d: d["expression"].__setitem__((3, 4), np.nan), "expression"),
        (lambda d: d.__setitem__("expression", np.zeros((0, 100))), "expression"),
        (lambda d: d.__setitem__("global_orient", np.full((T, 3), np.inf)), "global_orient"),
    ],
)
def test_malformed_pkl(tmp_path, mutate, field):
    d = _show()
    mutate(d)
    p = _save_pkl(tmp_path / "bad.pkl", d)
    with pytest.raises(MotionFileError) as e:
        MotionSequence.load(p)
    msg = str(e.value)
    assert "bad.pkl" in msg and repr(field) in msg, msg


def test_malformed_files(tmp_path):
    np.save(tmp_path / "narrow.npy", np.zeros((T, 100), np.float32))
    with pytest.raises(MotionFileError, match=r"narrow.npy.*'frames'.*\[T, 265\]"):
        MotionSequence.load(tmp_path / "narrow.npy")
    np.save(tmp_path / "empty.npy", np.zeros((0, 265), np.float32))
    with pytest.raises(MotionFileError, match="empty.npy.*zero frames"):
        MotionSequence.load(tmp_path / "empty.npy")
    a = _talkshow()
    a[2, 170] = np.nan
    np.save(tmp_path / "nan.npy", a)
    with pytest.raises(MotionFileError, match="nan.npy.*NaN.*frame 2"):
        MotionSequence.load(tmp_path / "nan.npy")
    np.savez(tmp_path / "noexpr.npz", jaw_pose=np.zeros((T, 3)))
    with pytest.raises(MotionFileError, match="noexpr.npz.*'expression' is missing"):
        MotionSequence.load(tmp_path / "noexpr.npz")
    np.savez(tmp_path / "badeye.npz", expression=np.zeros((T, 10)), eye_pose=np.zeros((T, 3)))
    with pytest.raises(MotionFileError, match=r"badeye.npz.*'eye_pose'.*\(12, 6\)"):
        MotionSequence.load(tmp_path / "badeye.npz")
    np.savez(tmp_path / "badfps.npz", expression=np.zeros((T, 10)), fps=np.float64(-1))
    with pytest.raises(MotionFileError, match="badfps.npz.*'fps'"):
        MotionSequence.load(tmp_path / "badfps.npz")
    (tmp_path / "junk.pkl").write_bytes(b"junk")
    with pytest.raises(MotionFileError, match="junk.pkl"):
        MotionSequence.load(tmp_path / "junk.pkl")
    _save_pkl(tmp_path / "list.pkl", [1, 2])
    with pytest.raises(MotionFileError, match="list.pkl.*dict"):
        MotionSequence.load(tmp_path / "list.pkl")
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(MotionFileError, match="unknown motion format"):
        MotionSequence.load(tmp_path / "m.txt")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        MotionSequence.load(tmp_path / "missing.npz")
    assert issubclass(MotionFileError, ValueError)


def test_constructor_validation():
    with pytest.raises(ValueError, match="zero frames"):
        MotionSequence(expression=torch.zeros(0, 10))
    with pytest.raises(ValueError, match=r"jaw_pose has shape \(5, 2\); expected \[5, 3\]"):
        MotionSequence(expression=torch.zeros(5, 10), jaw_pose=torch.zeros(5, 2))
    with pytest.raises(ValueError, match="neck_pose contains NaN"):
        MotionSequence(expression=torch.zeros(2, 1), neck_pose=torch.tensor([[0.0, 0, 0], [np.nan, 0, 0]]))
    with pytest.raises(ValueError, match="fps"):
        MotionSequence(expression=torch.zeros(2, 1), fps=0)
    seq = MotionSequence(expression=np.zeros((4, 3), np.float64), fps=24)
    assert seq.expression.dtype == torch.float32 and seq.eye_pose.shape == (4, 6) and len(seq) == 4


def test_resample():
    T0 = 31
    t = np.arange(T0) / 30.0
    expr = np.stack([t, 2 * t], 1)
    jaw = np.c_[0.5 * t, 0 * t, 0 * t]  # a constant-speed rotation about x
    seq = MotionSequence(expression=expr, jaw_pose=jaw, fps=30.0)
    half = seq.resample(15)
    assert len(half) == 16 and half.fps == 15.0
    torch.testing.assert_close(half.expression, seq.expression[::2])
    torch.testing.assert_close(half.jaw_pose, seq.jaw_pose[::2], atol=1e-6, rtol=0)
    up = seq.resample(60)
    assert len(up) == 61
    tu = np.arange(61) / 60.0
    np.testing.assert_allclose(up.expression[:, 1].numpy(), 2 * tu, atol=1e-6)
    np.testing.assert_allclose(up.jaw_pose[:, 0].numpy(), 0.5 * tu, atol=1e-6)  # slerp keeps the speed
    # rotations interpolate along the short arc even when the axis-angle vectors flip sign
    a = np.array([[np.pi - 0.05, 0, 0], [-(np.pi - 0.05), 0, 0]])
    mid = MotionSequence(expression=np.zeros((2, 1)), neck_pose=a, fps=1.0).resample(2.0).neck_pose[1]
    R = axis_angle_to_matrix(mid.double())
    np.testing.assert_allclose(R.numpy(), Rotation.from_rotvec([np.pi, 0, 0]).as_matrix(), atol=1e-5)
    one = MotionSequence(expression=np.zeros((1, 2)), fps=30).resample(10)
    assert len(one) == 1
    with pytest.raises(ValueError, match="fps"):
        seq.resample(-1)


def test_procedural_talking_motion_properties():
    fps = 30.0
    seq = procedural_talking_motion(num_frames=300, fps=fps, num_expression=100, seed=0)
    assert len(seq) == 300 and seq.fps == fps and seq.expression.shape == (300, 100)
    again = procedural_talking_motion(num_frames=300, fps=fps, num_expression=100, seed=0)
    for k, v in seq.tensors().items():
        torch.testing.assert_close(getattr(again, k), v, rtol=0, atol=0)
    other = procedural_talking_motion(num_frames=300, fps=fps, seed=1)
    assert not torch.equal(other.jaw_pose, seq.jaw_pose)
    jaw = seq.jaw_pose[:, 0].numpy()
    assert 0.0 <= jaw.min() and 0.15 < jaw.max() < 0.35 and seq.jaw_pose[:, 1:].abs().max() == 0
    # syllable rhythm: the dominant frequency of the jaw opening lies in 2.5..6 Hz
    x = jaw - jaw.mean()
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / fps)
    band = (freqs >= 1.0) & (freqs <= 10)
    assert 2.5 <= freqs[band][spec[band].argmax()] <= 6.0
    # pauses: the jaw rests (nearly closed) for stretches of >= 0.25 s
    closed = jaw < 0.06
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, closed.astype(int), 0])))[::2]
    assert runs.max() >= 0.25 * fps
    # blinks: both eyelids, full closures, a few seconds apart
    blink = seq.expression[:, 5].numpy()
    torch.testing.assert_close(seq.expression[:, 5], seq.expression[:, 6])
    peaks = np.flatnonzero((blink[1:-1] > 0.9) & (blink[1:-1] >= blink[:-2]) & (blink[1:-1] > blink[2:])) + 1
    assert 2 <= len(peaks) <= 6 and np.diff(peaks).min() >= 2.0 * fps
    assert seq.expression[:, 3].max() > 0.2  # brows move
    assert seq.expression[:, 10:].abs().max() == 0
    assert 0.01 < seq.neck_pose.abs().max() < 0.3  # small head motion
    small = procedural_talking_motion(num_frames=5, num_expression=4)
    assert small.expression.shape == (5, 4)
    with pytest.raises(ValueError, match="num_frames"):
        procedural_talking_motion(num_frames=0)


def test_corrupt_files_are_motion_file_errors(tmp_path):
    """Corrupt bytes (a cut or damaged zip, a damaged pickle) are MotionFileErrors naming the file."""
    from flame_core.motion import procedural_talking_motion

    procedural_talking_motion(8).save(tmp_path / "m.npz")
    raw = (tmp_path / "m.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])  # no central directory: BadZipFile
    with pytest.raises(MotionFileError, match="cut.npz: not a motion .npz"):
        MotionSequence.load(tmp_path / "cut.npz")
    (tmp_path / "frame.pkl").write_bytes(b"\x80\x04\x95" + b"\xff" * 8)  # OverflowError in pickle
    with pytest.raises(MotionFileError, match="frame.pkl: not a SHOW/TalkSHOW .pkl"):
        MotionSequence.load(tmp_path / "frame.pkl")


def test_saved_files_have_the_usual_permissions(tmp_path):
    """Atomic writes go through mkstemp (0600); the saved files must be 0666 less the umask."""
    from flame_core.io import default_file_mode, save_flame_pickle
    from flame_core.procedural import build_procedural_head

    seq = procedural_talking_motion(num_frames=4)
    p = seq.save(tmp_path / "m.npz")
    assert p.stat().st_mode & 0o777 == default_file_mode()
    q = tmp_path / "head.pkl"
    save_flame_pickle(build_procedural_head().model_dict, q)
    assert q.stat().st_mode & 0o777 == default_file_mode()
