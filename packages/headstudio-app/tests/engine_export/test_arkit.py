"""ARKit blendshapes: the per-head fit, its storage with the avatar, Live Link Face CSV in and
out, and MediaPipe as the outside reader of the fitted shapes."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from flame_core import FlameParams
from headstudio.animate.arkit import (
    ARKIT_NAMES,
    LIVE_LINK_NAMES,
    LIVE_LINK_POSE_COLUMNS,
    ArkitBasis,
    ArkitCurves,
    basis_for,
    curves_to_motion,
    read_live_link_csv,
    write_live_link_csv,
)
from headstudio.errors import HeadStudioError


def _curves(T: int = 5, fps: float = 60.0) -> ArkitCurves:
    rng = np.random.default_rng(0)
    return ArkitCurves(
        rng.random((T, 52)).astype(np.float32), fps,
        (0.1 * rng.standard_normal((T, 3))).astype(np.float32),
        (0.1 * rng.standard_normal((T, 6))).astype(np.float32), "14:03:52:58.500",
    )  # fmt: skip


def test_names_are_arkits_52_in_live_link_order() -> None:
    assert len(ARKIT_NAMES) == len(set(ARKIT_NAMES)) == 52
    # Live Link Face's header, as its recordings spell it
    header = (
        "EyeBlinkLeft,EyeLookDownLeft,EyeLookInLeft,EyeLookOutLeft,EyeLookUpLeft,EyeSquintLeft,EyeWideLeft,"
        "EyeBlinkRight,EyeLookDownRight,EyeLookInRight,EyeLookOutRight,EyeLookUpRight,EyeSquintRight,"
        "EyeWideRight,JawForward,JawRight,JawLeft,JawOpen,MouthClose,MouthFunnel,MouthPucker,MouthRight,"
        "MouthLeft,MouthSmileLeft,MouthSmileRight,MouthFrownLeft,MouthFrownRight,MouthDimpleLeft,"
        "MouthDimpleRight,MouthStretchLeft,MouthStretchRight,MouthRollLower,MouthRollUpper,MouthShrugLower,"
        "MouthShrugUpper,MouthPressLeft,MouthPressRight,MouthLowerDownLeft,MouthLowerDownRight,"
        "MouthUpperUpLeft,MouthUpperUpRight,BrowDownLeft,BrowDownRight,BrowInnerUp,BrowOuterUpLeft,"
        "BrowOuterUpRight,CheekPuff,CheekSquintLeft,CheekSquintRight,NoseSneerLeft,NoseSneerRight,TongueOut"
    )
    assert ",".join(LIVE_LINK_NAMES) == header


def test_live_link_csv_round_trip(tmp_path: Path) -> None:
    c = _curves()
    p = write_live_link_csv(tmp_path / "take.csv", c)
    lines = p.read_text().splitlines()
    assert lines[0].split(",") == ["Timecode", "BlendshapeCount", *LIVE_LINK_NAMES, *LIVE_LINK_POSE_COLUMNS]
    assert lines[1].split(",")[:2] == ["14:03:52:58.500", "61"]
    assert lines[2].split(",")[0] == "14:03:52:59.500"
    assert lines[3].split(",")[0] == "14:03:53:00.500"  # the frame counter wraps at the frame rate
    back = read_live_link_csv(p, fps=60.0)
    np.testing.assert_allclose(back.weights, c.weights, atol=1e-6)
    np.testing.assert_allclose(back.head_rotation, c.head_rotation, atol=1e-6)
    np.testing.assert_allclose(back.eye_rotation, c.eye_rotation, atol=1e-6)
    assert back.start_timecode == c.start_timecode and len(back) == 5
    assert not [q for q in tmp_path.iterdir() if q.name != "take.csv"]  # no temporary files left


def test_live_link_csv_reads_a_capture_without_pose_columns_in_any_case(tmp_path: Path) -> None:
    cols = ["timecode", "blendShapeCount", *LIVE_LINK_NAMES]
    rows = [",".join(cols)] + [f"00:00:00:{f:02d}.000,52," + ",".join(["0.25"] * 52) for f in range(30)]
    (tmp_path / "a.csv").write_text("\n".join(rows) + "\n")
    c = read_live_link_csv(tmp_path / "a.csv")
    assert c.fps == 30.0 and c.weights.shape == (30, 52) and np.all(c.weights == 0.25)
    assert np.all(c.head_rotation == 0)


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda h, r: (h.replace(",JawOpen", ""), [x.rsplit(",", 1)[0] for x in r]),
            "missing column(s) JawOpen",
        ),
        (lambda h, r: (h, [r[0] + ",0.5"] + r[1:]), "row 2 has 64 values but the header has 63"),
        (lambda h, r: (h, [r[0].replace(",61,", ",40,", 1)] + r[1:]), "BlendshapeCount '40'"),
        (lambda h, r: (h, [r[0].replace("0.5", "abc", 1)] + r[1:]), "not a number"),
        (lambda h, r: (h, [r[0].replace("00:00:00:00.000", "soon", 1)] + r[1:]), "HH:MM:SS:FF.fff"),
        (lambda h, r: (h, []), "no data rows"),
    ],
)
def test_live_link_csv_bad_input_is_one_clear_line(tmp_path: Path, edit: Any, message: str) -> None:
    header = ",".join(["Timecode", "BlendshapeCount", *LIVE_LINK_NAMES, *LIVE_LINK_POSE_COLUMNS])
    rows = ["00:00:00:00.000,61," + ",".join(["0.5"] * 61), "00:00:00:01.000,61," + ",".join(["0.5"] * 61)]
    h, r = edit(header, rows)
    (tmp_path / "bad.csv").write_text("\n".join([h, *r]) + "\n")
    with pytest.raises(HeadStudioError) as e:
        read_live_link_csv(tmp_path / "bad.csv", fps=30)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_missing_csv_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(HeadStudioError, match="does not exist"):
        read_live_link_csv(tmp_path / "nope.csv")


def test_fit_moves_the_subjects_side(head: Any, basis: ArkitBasis) -> None:
    """eyeBlinkLeft closes the subject's left eye (FLAME +x, MediaPipe 386/374), mouthSmileLeft
    lifts the subject's left corner (291); jawOpen is a jaw rotation; tongueOut is neutral."""
    from flame_core.landmark_head import LandmarkHead

    lh = LandmarkHead(head, head.landmark_embedding)
    p = basis.params(np.eye(52))
    with torch.no_grad():
        lm = lh(expression=p.expression, jaw_pose=p.jaw_pose, eye_pose=p.eye_pose).numpy()
        lm0 = lh(expression=torch.zeros(1, 100))[0].numpy()
    k = ARKIT_NAMES.index

    def gap(p: np.ndarray, up: int, lo: int) -> float:
        return float(p[up, 1] - p[lo, 1])

    for side, (up, lo), (oup, olo) in (("Left", (386, 374), (159, 145)), ("Right", (159, 145), (386, 374))):
        blink = lm[k(f"eyeBlink{side}")]
        assert gap(blink, up, lo) < 0.5 * gap(lm0, up, lo), side  # that eye closes
        assert gap(blink, oup, olo) > 0.9 * gap(lm0, oup, olo), side  # the other stays open
    for side, corner, other in (("Left", 291, 61), ("Right", 61, 291)):
        smile = lm[k(f"mouthSmile{side}")]
        rise, other_rise = smile[corner, 1] - lm0[corner, 1], smile[other, 1] - lm0[other, 1]
        assert rise > max(1e-3, 3 * other_rise), side
    assert basis.jaw_pose[k("jawOpen"), 0] == pytest.approx(0.35, abs=0.02)
    assert basis.jaw_pose[k("jawLeft"), 1] > 0.05 > -0.05 > basis.jaw_pose[k("jawRight"), 1]
    assert basis.eye_pose[k("eyeLookUpLeft"), 0] < -0.2 and abs(basis.eye_pose[k("eyeLookUpLeft"), 3]) < 1e-3
    t = k("tongueOut")
    assert not basis.expression[t].any() and not basis.jaw_pose[t].any()
    assert float(np.median(basis.residual_mm)) < 1.0


def test_basis_is_stored_with_the_avatar(
    teacher: Any, basis: ArkitBasis, tmp_path: Path, monkeypatch: Any
) -> None:
    from headstudio.animate import arkit
    from headstudio.avatar import Avatar

    p = teacher.save(tmp_path / "a.ply")
    loaded = Avatar.load(p)

    def no_refit(*a: Any, **k: Any) -> None:
        raise AssertionError("the stored fit should be used")

    monkeypatch.setattr(arkit, "fit_arkit_basis", no_refit)
    b = basis_for(loaded)
    np.testing.assert_allclose(b.expression, basis.expression, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b.jaw_pose, basis.jaw_pose, rtol=1e-5, atol=1e-6)
    # an avatar saved before ARKit fits existed still loads and gets a fit on first use
    del loaded.metadata["arkit"]
    old = Avatar.load(loaded.save(tmp_path / "old.ply"))
    assert "arkit" not in old.metadata
    monkeypatch.setattr(arkit, "fit_arkit_basis", lambda head, shape: basis)
    assert basis_for(old) is basis and "arkit" in old.metadata


def test_curves_play_on_the_head(basis: ArkitBasis) -> None:
    c = _curves(T=3)
    c.weights[:] = 0
    c.weights[1, ARKIT_NAMES.index("jawOpen")] = 1.0
    m = curves_to_motion(c, basis)
    assert len(m) == 3 and m.fps == 60.0
    assert float(m.jaw_pose[1, 0]) == pytest.approx(0.35, abs=0.02) and float(m.jaw_pose[0].abs().max()) == 0
    assert m.neck_pose.abs().max() > 0  # the captured head rotation


def _render_front(avatar: Any, params: FlameParams | None, size: int = 512) -> np.ndarray:
    from headstudio.output.rendering import ViewSettings, frame_avatar, orbit_views

    vs = ViewSettings(margin=0.75)
    target, dist = frame_avatar(avatar, vs)
    vm, K = orbit_views([0.0], 0.0, dist, vs.fovy_deg, size, size, target)
    with torch.no_grad():
        img = avatar.render(vm, K, size, size, params).rgb[0, 0].clamp(0, 1).numpy()
    return (img * 255).astype(np.uint8)


@pytest.mark.slow
def test_mediapipe_reads_fitted_blendshapes(teacher: Any, basis: ArkitBasis) -> None:
    """The outside reader: render the head at one fitted blendshape, run MediaPipe's real
    FaceLandmarker (52 blendshape scores) and find that blendshape among the largest rises over
    the neutral face; the smiles are read on the subject's side (docs/ENGINE_EXPORT.md)."""
    from headstudio.animate.face_track import detect_face, resolve_landmarker

    try:
        resolve_landmarker()
    except HeadStudioError as e:
        pytest.skip(str(e))
    shapes = ["jawOpen", "mouthSmileLeft", "mouthSmileRight", "browInnerUp"]
    frames = [_render_front(teacher, None)]
    for s in shapes:
        w = np.zeros((1, 52))
        w[0, ARKIT_NAMES.index(s)] = 1.0
        frames.append(_render_front(teacher, basis.params(w)))
    track = detect_face(frames, None)
    assert track.found.all()
    names = list(track.blendshape_names)
    rise = track.blendshapes[1:] - track.blendshapes[0]
    opening = {
        "jawOpen",
        "mouthLowerDownLeft",
        "mouthLowerDownRight",
        "mouthUpperUpLeft",
        "mouthUpperUpRight",
    }
    for i, s in enumerate(shapes):
        top = [names[j] for j in np.argsort(-rise[i])[:3]]
        own = float(rise[i, names.index(s)])
        if s == "jawOpen":
            # on the head with a mouth interior (teeth, a dark inside) MediaPipe reads an opened jaw
            # mostly as the lips parting: measured, jawOpen itself rises 0.17 (7th), the lips'
            # mouthLowerDown / mouthUpperUp 0.56-0.80. The reading must be a mouth opening, with
            # jawOpen clearly up (docs/ENGINE_EXPORT.md)
            assert set(top) <= opening and own > 0.1, f"jawOpen: rises {top}, jawOpen itself {own:.3f}"
        else:
            assert s in top, f"{s}: MediaPipe's largest rises are {top}"
    left, right = names.index("mouthSmileLeft"), names.index("mouthSmileRight")
    assert rise[1, left] > rise[1, right] and rise[2, right] > rise[2, left]


def test_motion_to_curves_recovers_the_curves(head: Any, basis: ArkitBasis) -> None:
    """FLAME motion made from known curves (``drive --arkit-out``'s direction) projects back to them."""
    from headstudio.animate.arkit import motion_to_curves

    rng = np.random.default_rng(1)
    w = np.zeros((6, 52), np.float32)
    frames = [["jawOpen"], ["mouthSmileLeft", "eyeBlinkRight"], ["browInnerUp"],
              ["eyeLookUpLeft", "eyeLookUpRight"], [], ["mouthPucker", "jawOpen"]]  # fmt: skip
    for t, names in enumerate(frames):
        for n in names:
            w[t, ARKIT_NAMES.index(n)] = rng.uniform(0.4, 1.0)
    c = ArkitCurves(w, 30.0, np.zeros((6, 3), np.float32), np.zeros((6, 6), np.float32))
    c.head_rotation[:, 0] = np.linspace(-0.2, 0.2, 6)
    back = motion_to_curves(curves_to_motion(c, basis), basis, head)
    keep = [i for i, n in enumerate(ARKIT_NAMES) if n != "tongueOut"]
    assert np.abs(back.weights[:, keep] - w[:, keep]).max() < 0.1
    np.testing.assert_allclose(back.head_rotation[:, 0], c.head_rotation[:, 0], atol=1e-5)


def test_a_true_blink_converts_to_eye_blink(head: Any, basis: ArkitBasis) -> None:
    """The procedural head's own blink (expressions 5, 6; not what the fitted eyeBlink* are made
    of) becomes eyeBlink >= 0.7 at full closure, on the closing eye only, with no jaw or gaze, no
    curve at all between the blinks, and the curves played back reproduce most of the blink's
    landmark movement. In FLAME parameter space (the conversion before) it came out as eyeBlink
    0.11-0.13, reproducing 0.22 of it.

    Not small, and so not asserted (measured at full closure): eyeSquint* 1.0, cheekSquint* 0.3-0.9,
    brow raises 0.2-0.5, cheekPuff 0.3 and mouthRoll* / mouthPucker 0.1-0.25. This blink also lifts
    the lower lid and the skin under it and pushes both lids forward over the eyeball, which the
    fitted eyeBlink* does not (alone it reproduces 0.54 of the blink's movement, with them 0.78);
    the fitted cheekPuff moves the lids 1.8 mm, and the mouth curves cancel its lip movement."""
    from headstudio.animate.arkit import motion_to_curves
    from headstudio.animate.arkit_solve import ArkitProjector
    from headstudio.animate.roundtrip import roundtrip_motion

    m = roundtrip_motion("blinks", 60, 30.0, 100)
    w = motion_to_curves(m, basis, head).weights
    e = m.expression.numpy()
    k = ARKIT_NAMES.index
    both, left, right = (int(np.argmax(x)) for x in (e[:, 5] * e[:, 6], e[:, 5] - e[:, 6], e[:, 6] - e[:, 5]))
    assert w[both, k("eyeBlinkLeft")] >= 0.7 and w[both, k("eyeBlinkRight")] >= 0.7, w[both]
    assert w[left, k("eyeBlinkLeft")] >= 0.7 and w[left, k("eyeBlinkRight")] < 0.1, w[left]
    assert w[right, k("eyeBlinkRight")] >= 0.7 and w[right, k("eyeBlinkLeft")] < 0.1, w[right]
    away = [i for i, n in enumerate(ARKIT_NAMES) if n.startswith(("jaw", "eyeLook"))]
    assert w[:, away].max() < 0.05, {ARKIT_NAMES[i]: float(w[:, i].max()) for i in away}
    still = e[:, 5:7].max(1) < 1e-6  # between the blinks: no curve at all
    assert still.any() and w[still].max() < 1e-3
    proj = ArkitProjector.build(head, basis)
    assert proj.expressed(proj.motion_offsets(m), w) > 0.7


def test_curves_round_trip_through_a_motion(head: Any, basis: ArkitBasis) -> None:
    """Curves -> FLAME motion -> curves returns the curves: r > 0.95 and the amplitude within 10%
    on each curve that moves (ten at once, on both sides of the face), the still ones near zero."""
    from headstudio.animate.arkit import motion_to_curves

    T = 40
    t = np.linspace(0.0, 1.0, T)
    moving = ["jawOpen", "eyeBlinkLeft", "eyeBlinkRight", "browInnerUp", "mouthSmileLeft",
              "mouthPucker", "eyeLookUpLeft", "eyeLookUpRight", "browDownRight", "mouthFunnel"]  # fmt: skip
    w = np.zeros((T, 52), np.float32)
    for j, n in enumerate(moving):
        w[:, ARKIT_NAMES.index(n)] = 0.45 + 0.4 * np.sin(2 * np.pi * (0.7 + 0.23 * j) * t + j)
    c = ArkitCurves(w, 30.0, np.zeros((T, 3), np.float32), np.zeros((T, 6), np.float32))
    back = motion_to_curves(curves_to_motion(c, basis), basis, head).weights
    for n in moving:  # measured: r 0.999-1.000, amplitude 0.98-1.00
        i = ARKIT_NAMES.index(n)
        assert np.corrcoef(w[:, i], back[:, i])[0, 1] > 0.95, n
        assert 0.9 < back[:, i].std() / w[:, i].std() < 1.1, n
    still = [i for i, n in enumerate(ARKIT_NAMES) if n not in moving]  # measured: at most 0.06
    assert back[:, still].max() < 0.1, {ARKIT_NAMES[i]: float(back[:, i].max()) for i in still}


def test_projector_solve_matches_a_direct_minimiser() -> None:
    """The QR-reduced per-frame solve (ridge and L1 folded into a 52×52 bounded problem) has the
    minimiser of the full objective ``|Ω(wD − y)|² + λ|w|² + μΣw`` over ``[0, 1]^52``, found here
    directly by L-BFGS-B on random offsets (no head: superposition only)."""
    from headstudio.animate.arkit_solve import ArkitProjector
    from scipy.optimize import minimize

    rng = np.random.default_rng(3)
    L, K = 30, 52
    D = rng.normal(size=(K, L, 3)) * rng.uniform(0.1, 3.0, size=(K, 1, 1))
    omega = rng.uniform(0.5, 2.0, size=L)
    proj = ArkitProjector(None, D, omega, {}, None, None, None)  # type: ignore[arg-type]
    w_true = np.clip(rng.normal(0.3, 0.5, size=(2, K)), 0.0, 1.0)
    y = (w_true @ D.reshape(K, -1)).reshape(2, L, 3) + rng.normal(scale=0.3, size=(2, L, 3))
    ridge, sparsity = 0.02, 0.1
    got = proj.solve(y, ridge=ridge, sparsity=sparsity, refine=0)
    norms = (D.reshape(K, -1) ** 2).sum(1)
    lam, mu = ridge * np.median(norms), sparsity * np.median(norms)
    Aw = D.reshape(K, -1).T * np.repeat(omega, 3)[:, None]
    for t in range(2):
        yw = y[t].reshape(-1) * np.repeat(omega, 3)

        def f(w: np.ndarray, yw: np.ndarray = yw) -> tuple[float, np.ndarray]:
            r = Aw @ w - yw
            return float(r @ r + lam * w @ w + mu * w.sum()), 2 * Aw.T @ r + 2 * lam * w + mu

        ref = minimize(f, np.full(K, 0.5), jac=True, method="L-BFGS-B", bounds=[(0.0, 1.0)] * K,
                       options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 5000})  # fmt: skip
        np.testing.assert_allclose(got[t], ref.x, atol=2e-4)
        assert 0 < (got[t] == 0).sum() and 0 < (got[t] == 1).sum()  # both bounds are active
    with pytest.raises(HeadStudioError, match="ridge must be > 0"):
        proj.solve(y, ridge=0.0)


def test_motion_to_curves_needs_the_basis_head(head: Any, basis: ArkitBasis) -> None:
    from headstudio.animate.arkit import motion_to_curves

    z = np.zeros
    m = curves_to_motion(
        ArkitCurves(z((2, 52), np.float32), 30.0, z((2, 3), np.float32), z((2, 6), np.float32)), basis
    )
    with pytest.raises(HeadStudioError, match="another face shape; refit"):
        motion_to_curves(m, basis, head, torch.full((1, int(head.num_shape)), 0.5))
    other = dataclasses.replace(basis, identity_hash="0123")
    with pytest.raises(HeadStudioError, match="another head model; refit"):
        motion_to_curves(m, other, head)


def test_a_new_shape_gets_a_new_fit(teacher: Any, basis: ArkitBasis, monkeypatch: Any) -> None:
    import copy

    from headstudio.animate import arkit

    av = copy.deepcopy(teacher)
    calls: list[Any] = []
    monkeypatch.setattr(arkit, "fit_arkit_basis", lambda head, shape: calls.append(shape) or basis)
    assert basis_for(av) is not None and not calls  # the stored fit matches head and shape
    with torch.no_grad():
        av.shape[0, 0] = 0.5
    basis_for(av)
    assert len(calls) == 1 and float(calls[0][0, 0]) == 0.5
