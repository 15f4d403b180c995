"""The viewer page in headless Chromium (software WebGL2): loading, sliders, motion, sharing, fidelity.

Fidelity bar: the browser's image must match ``headstudio render``'s at >= 35 dB PSNR. The two
renderers share every convention but differ in arithmetic the conventions leave open: 8-bit
back-to-front blending in the framebuffer against float front-to-back compositing, Spark's
float16 colours/scales and 10/10/12-bit quaternions in its splat buffer, per-splat depth sorting
against per-tile, no 0.999 alpha cap and no transmittance cut-off at 1e-4. Together those cost
little: 48.8-52.2 dB here. One wrong convention costs far more; measured on the posed SH-3 view
below (49.7 dB as built): a half-pixel camera offset 30.0 dB, the degree-1 SH signs flipped
31.9 dB, no eps2d low-pass 33.6 dB, a mirrored x axis 16.1 dB. 35 dB sits between the two
groups (and above the issue's 28 dB floor); the posed test re-checks two of the faults fall below it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from .conftest import SIZE, psnr

pytestmark = [pytest.mark.xdist_group("browser"), pytest.mark.slow]  # headless chromium

FIDELITY_DB = 35.0


def landmark_pixels(avatar: Any, ids: list[int], state: dict[str, Any], camera: dict[str, Any]) -> np.ndarray:
    """Pixel positions ``[len(ids), 2]`` of MediaPipe landmarks of the neutral head in a view."""
    from headstudio.cameras import orbit_camera

    head = avatar.head
    with torch.no_grad():
        verts = avatar.pose()
        lmk = head.landmark_embedding(verts, head.faces)[0]
    rows = [head.landmark_embedding.landmark_indices.tolist().index(i) for i in ids]
    vm, K = orbit_camera(
        state.get("az", 0.0),
        state.get("el", 0.0),
        camera["distance"],
        camera["fovy"],
        SIZE,
        SIZE,
        camera["target"],
    )
    cam = lmk[rows] @ vm[:3, :3].T + vm[:3, 3]
    uv = cam @ K.T
    return (uv[:, :2] / uv[:, 2:]).numpy()


def box(img: np.ndarray, xy: np.ndarray, r: int = 5) -> np.ndarray:
    x, y = int(round(xy[0])), int(round(xy[1]))
    return img[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1]


def test_page_loads_without_errors_and_shows_the_head(open_page: Any, teacher: Any, serve: Any) -> None:
    srv = serve(teacher)
    page = open_page(srv.url)
    img = page.image()
    assert page.errors == []
    # the background is the renderer's white; the head covers the middle of the view
    corners = np.concatenate([img[:8, :8], img[:8, -8:]]).reshape(-1, 3)
    assert np.abs(corners - 1.0).max() < 1e-6
    centre = img[SIZE // 2 - 10 : SIZE // 2 + 10, SIZE // 2 - 10 : SIZE // 2 + 10]
    assert (np.abs(centre - 1.0).sum(-1) > 0.2).mean() > 0.95
    # only this server was contacted, and the page wrote the whole view state into the hash
    assert all(
        u.startswith(srv.url.split("?")[0]) for u in page.requests if not u.startswith(("data:", "blob:"))
    )
    state = page.js("window.headstudio.getState()")
    hash_ = page.js("window.location.hash")
    for key in ("az=", "el=", "d=", "t=", "jaw=", "neck=", "eyes=", "e=", "f=", "play="):
        assert key in hash_
    assert state["d"] == pytest.approx(teacher_distance(page), rel=1e-6)


def teacher_distance(page: Any) -> float:
    return float(page.js("window.headstudio.manifest.camera.distance"))


def test_jaw_in_the_url_moves_the_mouth_not_the_forehead(open_page: Any, teacher: Any, serve: Any) -> None:
    srv = serve(teacher)
    camera = srv.data.manifest["camera"]
    base = srv.url.split("?")[0]
    closed = open_page(base + "#az=0&el=0&jaw=0").image()
    page = open_page(base + "#az=0&el=0&jaw=0.35")
    opened = page.image()
    assert page.js("window.headstudio.getState().jaw") == pytest.approx(0.35)
    mouth, forehead = landmark_pixels(teacher, [14, 151], {"az": 0, "el": 0}, camera)
    # the lower lip drops: pixels under the closed mouth change a lot
    lower = mouth + np.array([0.0, 3.0])
    assert np.abs(box(opened, lower) - box(closed, lower)).mean() > 0.05
    assert np.abs(box(opened, forehead) - box(closed, forehead)).max() < 2 / 255
    assert page.errors == []


def test_fidelity_against_headstudio_render(
    open_page: Any, teacher_path: Path, serve: Any, tmp_path: Path
) -> None:
    """``headstudio render --views 1`` (azimuth 0, the default framing) against the page's default view."""
    from headstudio.avatar import Avatar
    from PIL import Image

    ref_png = tmp_path / "ref.png"
    cmd = [
        sys.executable,
        "-m",
        "headstudio.cli",
        "render",
        str(teacher_path),
        "--views",
        "1",
        "--size",
        str(SIZE),
    ]
    subprocess.run([*cmd, "-o", str(ref_png), "--device", "cpu"], check=True, capture_output=True)
    ref = np.asarray(Image.open(ref_png).convert("RGB")).astype(np.float64) / 255
    avatar = Avatar.load(teacher_path)  # the file, as the render command read it
    page = open_page(serve(avatar).url)
    img = page.image()
    value = psnr(img, ref)
    print(f"fidelity (teacher, headstudio render --views 1): {value:.2f} dB")
    assert value >= FIDELITY_DB, f"browser vs headstudio render: {value:.2f} dB < {FIDELITY_DB}"
    assert page.errors == []


def test_fidelity_posed_oblique_view_sh3(open_page: Any, hard_avatar: Any, serve: Any) -> None:
    """A posed head (preset + sliders), seen from above and aside, SH degree 3: the page against
    ``headstudio.output.rendering.render_views`` (the renderer behind ``headstudio render``)."""
    from headstudio.output.rendering import orbit_views, render_views
    from headstudio.output.viewer import build_viewer_data
    from headstudio.output.viewer.protocol import PoseRequest, pose_flame_params

    presets = {
        "test": {
            "expression": torch.linspace(-0.5, 0.5, hard_avatar.head.num_expression),
            "jaw_pose": torch.tensor([0.1, 0.02, -0.01]),
            "eye_pose": torch.tensor([0.0, 0.0, 0.05, 0.0, 0.0, -0.05]),
        }
    }
    srv = serve(hard_avatar, presets=presets, data=build_viewer_data(hard_avatar, presets))
    cam = srv.data.manifest["camera"]
    target = [cam["target"][0], cam["target"][1] + 0.01, cam["target"][2]]
    expression = [0.8, -0.5, 0.3, 0.0, 0.6, 0.0, 0.0, 0.4, 0.0, 0.2]
    state = {"az": 35.0, "el": 12.0, "d": cam["distance"] * 0.8, "t": target, "jaw": 0.25,
             "neck": [0.1, -0.2, 0.05], "eyes": [0.1, -0.15], "e": expression, "preset": "test"}  # fmt: skip
    page = open_page(srv.url)
    img = page.set_state(state)
    req = PoseRequest(0, "test", tuple(expression), state["jaw"], tuple(state["neck"]), tuple(state["eyes"]))
    pose = pose_flame_params(req, presets, hard_avatar.head.num_expression)
    vms, ks = orbit_views([state["az"]], state["el"], state["d"], cam["fovy"], SIZE, SIZE, target)
    ref = (
        next(render_views(hard_avatar, vms, ks, SIZE, SIZE, (1.0, 1.0, 1.0), params=pose)).astype(np.float64)
        / 255
    )
    value = psnr(img, ref)
    print(f"fidelity (SH3, posed, az 35 el 12): {value:.2f} dB")
    assert value >= FIDELITY_DB, f"browser vs render_views: {value:.2f} dB < {FIDELITY_DB}"
    # the bar catches a wrong convention: half a pixel off, or no eps2d low-pass
    for fault in (
        "v.camera.setViewOffset(SIZE, SIZE, 0.5, 0.5, SIZE, SIZE)",
        "v.camera.clearViewOffset(); v.spark.preBlurAmount = 0",
    ):
        setup = f"const v = window.headstudio.viewer, SIZE = {SIZE}"
        page.js(f"(() => {{ {setup}; {fault}; v.needsRender = true; }})()")
        page.settle()
        assert psnr(page.image(), ref) < FIDELITY_DB, fault
    # the pose really is different from the neutral head (the comparison is not vacuous)
    neutral = next(render_views(hard_avatar, vms, ks, SIZE, SIZE, (1.0, 1.0, 1.0))).astype(np.float64) / 255
    assert psnr(neutral, ref) < FIDELITY_DB - 10
    assert page.errors == []


def test_motion_playback_follows_the_audio(open_page: Any, teacher: Any, serve: Any, tone_wav: Path) -> None:
    from headstudio.head_motion import default_motion
    from headstudio.output.viewer import build_viewer_data

    motion = default_motion(teacher.head, tone_wav)
    data = build_viewer_data(teacher, motion=motion, audio=tone_wav)
    srv = serve(teacher, data=data, motion=motion, audio=tone_wav)
    page = open_page(srv.url + "#f=0&play=1")
    clock = []
    for _ in range(40):  # SwiftShader draws a frame in 0.1-1 s: wait for several
        page.page.wait_for_timeout(250)
        clock.append(page.js("[window.headstudio.audioTime(), window.headstudio.getState().f]"))
        if len(clock) >= 8 and len({f for _, f in clock}) >= 4:
            break
    times = [t for t, _ in clock]
    assert max(times) > min(times) + 0.5, f"the audio does not advance: {times}"
    assert len({f for _, f in clock}) >= 4, f"the frames do not change: {clock}"
    # every frame drawn while playing is the one the audio clock pointed at when it was drawn
    # (up to two frames late: the clock moves on while its vertices arrive)
    fps = float(motion.fps)
    log = page.js("window.headstudio.playLog()")
    assert len({f for _, f in log}) >= 3, log
    for t, shown in log:
        assert 0 <= int(t * fps) - shown <= 2, (t, shown, log)
    page.js("window.headstudio.setState({play: 0})")
    paused = page.js("window.headstudio.getState().f")
    page.page.wait_for_timeout(400)
    assert page.js("window.headstudio.getState().f") == paused
    assert page.js("window.headstudio.viewer.audio.paused")
    assert "play=0" in page.js("window.location.hash")
    assert page.errors == []


def test_orbit_updates_the_hash_and_the_link_reproduces_the_view(
    open_page: Any, teacher: Any, serve: Any
) -> None:
    srv = serve(teacher)
    page = open_page(srv.url + "#jaw=0.2&e=1,0,0,0,0,0,0,0,0,0")
    before = page.js("window.headstudio.getState()")
    # drag on the canvas: the orbit control turns the camera
    p = page.page
    p.mouse.move(SIZE / 2, SIZE / 2)
    p.mouse.down()
    p.mouse.move(SIZE / 2 + 30, SIZE / 2 - 10, steps=5)
    p.mouse.up()
    page.settle()
    p.wait_for_timeout(300)  # the hash is written at most every 100 ms
    after = page.js("window.headstudio.getState()")
    assert abs(after["az"] - before["az"]) > 5 and abs(after["el"] - before["el"]) > 1
    link = page.js("window.location.href")
    written = dict(kv.split("=", 1) for kv in link.split("#", 1)[1].split("&"))
    assert float(written["az"]) == pytest.approx(after["az"], abs=0.006)  # the hash keeps 0.01 degree
    shown = page.image()
    again = open_page(link)
    state = again.js("window.headstudio.getState()")
    for key, tol in (("az", 0.006), ("el", 0.006), ("d", 6e-5), ("jaw", 6e-5)):
        assert state[key] == pytest.approx(after[key], abs=tol)
    assert state["e"][0] == pytest.approx(1.0)
    assert psnr(again.image(), shown) > 40


def test_screenshot_and_clip(open_page: Any, teacher: Any, serve: Any) -> None:
    page = open_page(serve(teacher).url)
    url = page.js("window.headstudio.screenshot()")
    assert url.startswith("data:image/png;base64,") and len(url) > 1000
    clip = page.js("window.headstudio.record(1500)")
    assert clip["type"] == "video/webm" and clip["size"] > 0
    assert page.errors == []


def test_presets_fitted_to_the_head_pull_faces(open_page: Any, teacher: Any) -> None:
    """The named presets (landmark targets fitted to this head) move the right parts of the face."""
    from headstudio.output.viewer.launch import prepare_server

    srv = prepare_server(teacher, None, port=0)
    srv.start()
    try:
        camera = srv.data.manifest["camera"]
        page = open_page(srv.url)
        neutral = page.image()
        page.js("window.headstudio.applyPreset('smile')")
        page.settle()
        smile = page.image()
        state = page.js("window.headstudio.getState()")
        assert state["preset"] == "smile" and state["e"][0] == pytest.approx(1.0, abs=0.05)  # smile slider
        page.page.wait_for_timeout(300)  # the hash follows within 100 ms
        assert "preset=smile" in page.js("window.location.hash")
        corner_l, corner_r, forehead, eye = landmark_pixels(teacher, [61, 291, 151, 159], {}, camera)
        for corner in (corner_l, corner_r):
            assert np.abs(box(smile, corner, 3) - box(neutral, corner, 3)).mean() > 0.02
        assert np.abs(box(smile, forehead) - box(neutral, forehead)).max() < 2 / 255
        page.js("window.headstudio.applyPreset('blink')")
        page.settle()
        blink = page.image()
        assert np.abs(box(blink, eye, 3) - box(neutral, eye, 3)).mean() > 0.05
        assert page.errors == []
    finally:
        srv.stop()


def test_token_protected_server_works_end_to_end(open_page: Any, teacher: Any, serve: Any) -> None:
    """Bound beyond loopback, the page opened with its token loads everything (files, websocket)."""
    srv = serve(teacher, host="0.0.0.0")
    page = open_page(srv.url + "#jaw=0.3")
    assert page.js("window.headstudio.getState().jaw") == pytest.approx(0.3)
    assert page.js("window.headstudio.vertices().length") == 3 * teacher.head.num_vertices
    assert np.abs(page.image()[SIZE // 2, SIZE // 2] - 1.0).sum() > 0.2
    assert page.errors == []
