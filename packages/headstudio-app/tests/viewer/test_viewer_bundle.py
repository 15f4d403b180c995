"""The committed viewer bundle matches its sources, and the page's data format round-trips."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from headstudio.output.viewer.assets import avatar_arrays, build_viewer_data, pack_arrays, unpack_arrays
from headstudio.output.viewer.bundle import (
    STATIC_DIR,
    bundle_sources_hash,
    source_files,
    sources_hash,
    static_files,
)

WEB_DIR = Path(__file__).resolve().parents[2] / "web"


def test_committed_bundle_was_built_from_these_sources() -> None:
    recorded = bundle_sources_hash()
    actual = sources_hash(WEB_DIR)
    assert recorded == actual, (
        "headstudio/output/viewer/static/viewer.js was not built from the sources in "
        "packages/headstudio-app/web "
        "(they changed since); rebuild it with `nox -s web` and commit the result."
    )


def test_the_hash_covers_every_source(tmp_path: Path) -> None:
    """Changing any source file, or adding one, changes the hash (so the test above can fail)."""
    files = source_files(WEB_DIR)
    expected = {"src/main.js", "src/rig.js", "package.json", "package-lock.json", "build.mjs", "index.html"}
    assert expected <= set(files)
    copy = tmp_path / "web"
    for rel in files:
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(WEB_DIR / rel, copy / rel)
    base = sources_hash(copy)
    assert base == sources_hash(WEB_DIR)
    with (copy / "src" / "rig.js").open("a") as fh:
        fh.write("\n")
    assert sources_hash(copy) != base
    (copy / "src" / "rig.js").write_bytes((WEB_DIR / "src" / "rig.js").read_bytes())
    (copy / "src" / "extra.js").write_text("export {};\n")
    assert sources_hash(copy) != base


def test_bundle_files_are_package_data_and_minified() -> None:
    files = static_files()
    assert set(files) == {"index.html", "viewer.js", "THIRD_PARTY_LICENSES.txt"}
    js = files["viewer.js"].read_bytes()
    assert b"The rigged avatar as a Spark splat generator" not in js  # minified: comments gone
    assert b"hsMatToQuat" in js  # ... but the shader source is there
    assert len(js) < 4_000_000
    assert b"<!-- headstudio:data -->" in files["index.html"].read_bytes()
    licences = files["THIRD_PARTY_LICENSES.txt"].read_text()
    for dep in ("three", "@sparkjsdev/spark", "lil-gui"):
        assert dep in licences
    assert STATIC_DIR.parent.name == "viewer"


def test_arrays_round_trip() -> None:
    arrays = {
        "a": np.arange(7, dtype=np.float32),
        "b": np.arange(6, dtype=np.uint32).reshape(2, 3),
        "c": np.array([1, 65535], dtype=np.uint16),
        "d": np.ones((3, 1, 3), dtype=np.float32),
    }
    blob, layout = pack_arrays(arrays)
    assert all(spec["offset"] % 16 == 0 for spec in layout.values())
    back = unpack_arrays(blob, layout)
    for k, v in arrays.items():
        assert back[k].dtype == v.dtype and np.array_equal(back[k], v)
    with pytest.raises(TypeError, match="float64"):
        pack_arrays({"x": np.zeros(2)})


def test_manifest_describes_the_avatar(teacher: Any) -> None:
    data = build_viewer_data(teacher)
    m = data.manifest
    assert m["num_gaussians"] == teacher.num_gaussians and m["sh_degree"] == 0
    assert m["head"]["sliders"][:2] == ["smile", "pucker"] and len(m["head"]["sliders"]) == 10
    arrays = unpack_arrays(data.blobs["avatar.bin"], m["buffers"]["avatar.bin"])
    ref = avatar_arrays(teacher)
    for k in ref:
        assert np.array_equal(arrays[k], ref[k])
    assert arrays["opacities"].max() <= 1 and arrays["face_ids"].max() < m["num_faces"]
    with torch.no_grad():
        target = (teacher.pose()[0].min(0).values + teacher.pose()[0].max(0).values) / 2
    assert m["camera"]["target"] == pytest.approx(target.tolist(), abs=1e-6)
    assert m["camera"]["fovy"] == 30.0
    data.manifest_json()  # strict JSON (no NaN)


def test_presets_are_fitted_to_the_head(head: Any) -> None:
    from headstudio.output.viewer.presets import fit_presets

    presets = fit_presets(head)
    assert list(presets) == ["neutral", "smile", "open_mouth", "blink", "surprise"]
    assert float(presets["neutral"]["expression"].abs().max()) < 1e-4
    assert presets["smile"]["expression"][0] == pytest.approx(1.0, abs=0.05)  # the procedural smile
    assert presets["open_mouth"]["jaw_pose"][0] == pytest.approx(0.3, abs=0.02)
    assert presets["blink"]["expression"][5:7].tolist() == pytest.approx([1.0, 1.0], abs=0.05)


def test_a_head_that_cannot_be_fitted_gets_no_presets(
    head: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fit_targets refuses heads without a landmark embedding (a FLAME file without the MediaPipe
    embedding beside it); the viewer then has no presets, and says so, instead of failing."""
    from headstudio.output.viewer import presets

    def refuse(*_: Any, **__: Any) -> None:
        raise ValueError("head 'flame2023.pkl' has no MediaPipe landmark embedding")

    monkeypatch.setattr(presets, "fit_targets", refuse)
    with caplog.at_level("WARNING"):
        assert presets.fit_presets(head) == {}
    assert "no expression presets" in caplog.text and "landmark embedding" in caplog.text
