"""``headstudio export --format web`` (a folder that plays from file:// offline) and ``ply-sequence``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from .conftest import SIZE

PRESETS = {
    "wide": {
        "expression": torch.linspace(0.6, -0.6, 100),
        "jaw_pose": torch.tensor([0.15, 0.03, 0.0]),
        "eye_pose": torch.tensor([0.0, 0.0, 0.02, 0.0, 0.0, -0.02]),
    }
}


@pytest.fixture(scope="module")
def short_motion() -> Any:
    from flame_core.motion import procedural_talking_motion

    return procedural_talking_motion(num_frames=45, fps=30.0)


@pytest.fixture(scope="module")
def web_dir(
    teacher: Any, short_motion: Any, tone_wav: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    from headstudio.output.export import export_web

    out = tmp_path_factory.mktemp("export") / "web"
    return export_web(teacher, out, short_motion, tone_wav, presets=PRESETS, progress=False)


def load_payload(folder: Path) -> dict[str, Any]:
    text = (folder / "data.js").read_text()
    return json.loads(text[text.index("=") + 1 : text.rindex(";")])


def test_web_folder_contents(web_dir: Path, teacher: Any, short_motion: Any) -> None:
    import base64

    from headstudio.output.viewer.assets import unpack_arrays
    from headstudio.output.viewer.bundle import STATIC_DIR

    names = sorted(p.name for p in web_dir.iterdir())
    assert names == ["THIRD_PARTY_LICENSES.txt", "audio.wav", "data.js", "index.html", "viewer.js"]
    assert (web_dir / "viewer.js").read_bytes() == (STATIC_DIR / "viewer.js").read_bytes()
    assert '<script src="data.js"></script>' in (web_dir / "index.html").read_text()
    payload = load_payload(web_dir)
    m = payload["manifest"]
    assert m["motion"] == {"frames": 45, "fps": 30.0, "file": "motion.bin"}
    assert m["head_model"]["rows"][-1] == "preset:wide" and m["audio"] == "audio.wav"
    # the baked frames are the head's vertices to within half a quantisation step
    motion = unpack_arrays(base64.b64decode(payload["blobs"]["motion.bin"]), m["buffers"]["motion.bin"])
    assert motion["frames"].dtype == np.uint16 and motion["frames"].shape == (
        45,
        teacher.head.num_vertices,
        3,
    )
    from headstudio.head_motion import fit_flame_params

    params = fit_flame_params(short_motion.params([7, 30]), 100)
    with torch.no_grad():
        want = teacher.pose(params).numpy()
    got = motion["lo"] + motion["frames"][[7, 30]].astype(np.float64) * motion["scale"]
    assert np.abs(got - want).max() <= motion["scale"].max() * 0.5 + 1e-7
    assert motion["scale"].max() < 1e-5  # 16 bits over a head: micrometres


def test_licensed_head_ships_baked_motion_only(teacher: Any, short_motion: Any, tmp_path: Path) -> None:
    from headstudio.output.export import export_web

    head = teacher.head
    source = head.source
    try:
        head.source = "/licensed/flame2023.pkl"  # what a FLAME head looks like to the exporter
        out = export_web(teacher, tmp_path / "w", short_motion, presets=PRESETS, progress=False)
        m = load_payload(out)["manifest"]
        assert m["head_model"] is None and m["presets"] == [] and "head.bin" not in m["buffers"]
        out = export_web(
            teacher, tmp_path / "w", short_motion, include_head_model=True, presets=PRESETS, progress=False
        )
        assert load_payload(out)["manifest"]["head_model"] is not None
    finally:
        head.source = source


def test_web_export_refuses_a_foreign_folder(teacher: Any, short_motion: Any, tmp_path: Path) -> None:
    from headstudio.errors import HeadStudioError
    from headstudio.output.export import export_web

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("do not delete")
    with pytest.raises(HeadStudioError, match="not empty and not an earlier export"):
        export_web(teacher, tmp_path / "mine", short_motion, progress=False)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "do not delete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no partial folder left behind


@pytest.mark.xdist_group("browser")
def test_web_folder_plays_from_file_offline(open_page: Any, web_dir: Path, teacher: Any) -> None:
    from headstudio.output.viewer.protocol import PoseRequest, pose_flame_params

    page = open_page((web_dir / "index.html").as_uri(), offline=True)
    img = page.image()
    assert np.abs(img[SIZE // 2, SIZE // 2] - 1.0).sum() > 0.2  # the head is drawn
    assert page.errors == []
    assert all(u.startswith(("file:", "data:", "blob:")) for u in page.requests), page.requests
    # the shipped head model poses the head exactly as the server's FLAME LBS does
    state = {"preset": "wide", "e": [0.5, -0.3, 0.2, 0.1, 0, 0, 0.4, 0, 0, -0.2], "jaw": 0.3,
             "neck": [0.1, -0.2, 0.05], "eyes": [0.1, -0.2]}  # fmt: skip
    posed = page.set_state(state)
    got = np.asarray(page.js("window.headstudio.vertices()")).reshape(-1, 3)
    req = PoseRequest(0, "wide", tuple(state["e"]), state["jaw"], tuple(state["neck"]), tuple(state["eyes"]))
    with torch.no_grad():
        want = teacher.pose(pose_flame_params(req, PRESETS, 100))[0].numpy()
    assert np.abs(got - want).max() < 2e-6
    assert np.abs(posed - img).max() > 0.3
    # motion frames come from the baked file, and playback runs without any server
    page.set_state({"f": 20, "play": 0})
    assert page.js("window.headstudio.shownFrame()") == 20
    page.js("window.headstudio.setState({play: 1})")
    for _ in range(40):  # SwiftShader on a loaded machine can take seconds to draw the next frame
        page.page.wait_for_timeout(250)
        if page.js("window.headstudio.getState().f") != 20:
            break
    page.settle()
    assert page.js("window.headstudio.getState().f") != 20
    # the shipped audio plays beside the page and is the clock of what is drawn
    assert page.js("window.headstudio.viewer.player.audio !== null")  # it did not fall back
    assert not page.js("window.headstudio.viewer.audio.paused")
    log = page.js("window.headstudio.playLog()")
    assert log and all(0 <= int(t * 30) - shown <= 2 for t, shown in log), log
    assert page.errors == []


def test_ply_sequence(teacher: Any, short_motion: Any, tmp_path: Path) -> None:
    from headstudio.head_motion import fit_flame_params
    from headstudio.output.export import export_ply_sequence
    from rigged_gaussians.ply import load_ply

    paths = export_ply_sequence(teacher, tmp_path / "seq", short_motion, progress=False)
    assert [p.name for p in paths] == [f"frame_{i:05d}.ply" for i in range(45)]
    for k in (0, 44):
        ply = load_ply(paths[k])
        with torch.no_grad():
            want = teacher.world_gaussians(fit_flame_params(short_motion.params([k]), 100))
        np.testing.assert_allclose(np.asarray(ply.means), want["means"].numpy(), atol=1e-6)
        assert ply.metadata["posed"] is True
    # a second export replaces the sequence (no stale frames of a longer one remain)
    paths = export_ply_sequence(teacher, tmp_path / "seq", short_motion.resample(15.0), progress=False)
    assert len(list((tmp_path / "seq").iterdir())) == len(paths) < 45
