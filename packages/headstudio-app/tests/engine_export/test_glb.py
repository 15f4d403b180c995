"""The GLB export read back in Python: layout, splat values, the skin against the head's LBS,
the baked texture against the Gaussian render, atomic writes and bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from flame_core import FlameParams
from headstudio.animate.arkit import ARKIT_NAMES
from headstudio.errors import HeadStudioError
from headstudio.output.gltf.builder import read_accessor, read_glb

from .conftest import TEXTURE

pytest.importorskip("xatlas", reason="the mesh export needs xatlas (pip install xatlas)")


def _doc(path: Path) -> tuple[dict, bytes]:
    return read_glb(path.read_bytes())


def test_layout(glb_both: Path, talk_motion: Any) -> None:
    doc, _ = _doc(glb_both)
    assert doc["extensionsUsed"] == ["KHR_gaussian_splatting"]
    splat = next(m for m in doc["meshes"] if m["name"] == "gaussian_splats")["primitives"][0]
    assert splat["mode"] == 0 and "KHR_gaussian_splatting" in splat["extensions"]
    ext = "KHR_gaussian_splatting:"
    want = {"POSITION", "COLOR_0", *(ext + n for n in ("ROTATION", "SCALE", "OPACITY", "SH_DEGREE_0_COEF_0"))}
    assert want <= set(splat["attributes"])
    head = next(m for m in doc["meshes"] if m["name"] == "head")
    names = head["extras"]["targetNames"]
    assert names[:52] == list(ARKIT_NAMES)
    used = np.flatnonzero(np.abs(talk_motion.expression.numpy()).max(0) > 1e-7)
    assert names[52:] == [f"flameExpression{i:02d}" for i in used]
    assert len(head["primitives"][0]["targets"]) == len(names)
    skin = doc["skins"][0]
    assert [doc["nodes"][j]["name"] for j in skin["joints"]] == ["neck", "head", "jaw", "eye_L", "eye_R"]
    anim = doc["animations"][0]
    times = doc["accessors"][anim["samplers"][0]["input"]]
    assert times["count"] == len(talk_motion) and times["max"][0] == pytest.approx(
        (len(talk_motion) - 1) / 25.0
    )
    paths = {(doc["nodes"][c["target"]["node"]]["name"], c["target"]["path"]) for c in anim["channels"]}
    assert {("jaw", "rotation"), ("head", "rotation"), ("eye_L", "rotation"), ("head", "weights")} <= paths


def test_splat_values_are_the_avatars(sh_avatar: Any, tmp_path: Path) -> None:
    """Linear scales, post-sigmoid opacity, xyzw rotations, every SH coefficient to degree 2."""
    from headstudio.output.gltf.writer import export_glb

    p = tmp_path / "s.glb"
    export_glb(sh_avatar, p, parts="splats")
    doc, binary = _doc(p)
    assert "skins" not in doc and len(doc["meshes"]) == 1
    attrs = doc["meshes"][0]["primitives"][0]["attributes"]

    def get(name: str) -> np.ndarray:
        return read_accessor(doc, binary, attrs[name]).astype(np.float64)

    with torch.no_grad():
        g = sh_avatar.world_gaussians()
    np.testing.assert_allclose(get("POSITION"), g["means"].numpy(), atol=1e-7)
    np.testing.assert_allclose(
        get("KHR_gaussian_splatting:SCALE"), g["scales"].numpy(), rtol=1e-6
    )  # linear, world
    np.testing.assert_allclose(
        get("KHR_gaussian_splatting:OPACITY"),
        torch.sigmoid(sh_avatar.opacity_logits).detach().numpy(),
        atol=1e-7,
    )
    np.testing.assert_allclose(
        get("KHR_gaussian_splatting:ROTATION"), g["quats"].numpy()[:, [1, 2, 3, 0]], atol=1e-7
    )
    for lvl in range(3):
        for c in range(2 * lvl + 1):
            got = get(f"KHR_gaussian_splatting:SH_DEGREE_{lvl}_COEF_{c}")
            np.testing.assert_array_equal(got, sh_avatar.sh[:, lvl * lvl + c].detach().numpy())
    assert "KHR_gaussian_splatting:SH_DEGREE_3_COEF_0" not in attrs
    color = read_accessor(doc, binary, attrs["COLOR_0"])
    assert color.dtype == np.uint8 and doc["accessors"][attrs["COLOR_0"]]["normalized"]


def test_skin_and_morphs_reproduce_the_heads_lbs(teacher: Any, glb_both: Path, talk_motion: Any) -> None:
    """The file's own skin, joints, animation and morph targets, evaluated as glTF defines them,
    against ``avatar.pose`` for the same frames. The procedural head has no pose-corrective
    blendshapes, so what remains is the expression-dependent joint shift and float rounding."""
    from headstudio.output.gltf.fidelity import gltf_skinned_vertices
    from headstudio.output.gltf.mesh import head_mesh

    vmap = head_mesh(teacher).vmap
    errs = []
    for f in (0, 7, 13, 19):
        with torch.no_grad():
            ref = teacher.pose(talk_motion.params([f]).to(torch.float32))[0].numpy()[vmap]
        errs.append(np.linalg.norm(gltf_skinned_vertices(glb_both, frame=f) - ref, axis=1))
    assert np.max(errs) < 5e-5  # metres


def test_arkit_morph_is_the_fitted_pose(teacher: Any, glb_both: Path, basis: Any) -> None:
    """jawOpen at 1 (rest joints) equals the head posed with the fitted jawOpen parameters, to
    the linearisation of the rotation in a morph target: the morph holds the exact offsets."""
    from headstudio.output.gltf.fidelity import gltf_skinned_vertices
    from headstudio.output.gltf.mesh import head_mesh

    vmap = head_mesh(teacher).vmap
    doc, _ = _doc(glb_both)
    n = len(next(m for m in doc["meshes"] if m["name"] == "head")["extras"]["targetNames"])
    w = np.zeros(n)
    w[ARKIT_NAMES.index("jawOpen")] = 1.0
    got = gltf_skinned_vertices(glb_both, weights=w)
    one = np.zeros((1, 52))
    one[0, ARKIT_NAMES.index("jawOpen")] = 1.0
    with torch.no_grad():
        ref = teacher.pose(basis.params(one))[0].numpy()[vmap]
        rest = teacher.pose()[0].numpy()[vmap]
    assert np.abs(got - ref).max() < 1e-5
    assert np.linalg.norm(got - rest, axis=1).max() > 5e-3  # the mouth really opens (> 5 mm)


def test_baked_texture_matches_the_gaussian_render(teacher: Any, glb_both: Path) -> None:
    from headstudio.output.gltf.fidelity import psnr, read_head_mesh, render_textured_mesh
    from headstudio.output.rendering import ViewSettings, frame_avatar, orbit_views

    m = read_head_mesh(glb_both)
    assert m["texture"].shape == (TEXTURE, TEXTURE, 3)
    vs = ViewSettings()
    target, dist = frame_avatar(teacher, vs)
    W = 128
    vm, K = orbit_views([0.0], 0.0, dist, vs.fovy_deg, W, W, target)
    with torch.no_grad():
        g = teacher.render(vm, K, W, W).rgb[0, 0].numpy()
    r, hit = render_textured_mesh(m["positions"], m["uvs"], m["indices"], m["texture"],
                                  vm[0].double().numpy(), K[0].double().numpy(), W, W)  # fmt: skip
    from scipy.ndimage import binary_erosion

    inner = binary_erosion(hit, iterations=3)  # the silhouette differs: splats reach past the mesh
    # where the mesh is, its colour is the Gaussians' (measured 20-21 dB; the bake is softer than
    # the alpha-composited render at the lips, brows, eyes and hairline) ...
    assert psnr(g, r, inner) > 19.0
    flat = np.full_like(g, g[inner].mean(0))
    assert psnr(g, r, inner) > psnr(g, flat, inner) + 2.5  # ... and not just their average colour


def test_bad_input_is_one_line(teacher: Any, tmp_path: Path) -> None:
    from flame_core.motion import MotionSequence
    from headstudio.output.gltf.writer import export_glb

    wide = MotionSequence(expression=torch.zeros(4, 150), fps=30.0)
    with pytest.raises(HeadStudioError, match="150 expression parameters but this head has 100"):
        export_glb(teacher, tmp_path / "a.glb", motion=wide)
    with pytest.raises(HeadStudioError, match=r"must end in \.glb"):
        export_glb(teacher, tmp_path / "a.gltf")
    with pytest.raises(HeadStudioError, match="«parts» must be one of"):
        export_glb(teacher, tmp_path / "a.glb", parts="hair")  # type: ignore[arg-type]
    with pytest.raises(HeadStudioError, match="use «parts» mesh or both"):
        export_glb(
            teacher, tmp_path / "a.glb", parts="splats", motion=MotionSequence(expression=torch.zeros(2, 100))
        )
    assert not list(tmp_path.iterdir())  # nothing partial left


CHILD = r"""
import sys, torch
from flame_core import FlameModel
from headstudio.avatar import Avatar
from headstudio.output.gltf import writer
src, out, stop = sys.argv[1], sys.argv[2], sys.argv[3] == "stop"
av = Avatar.load(src)
if stop:  # the second write stops halfway through its bytes and waits to be killed
    real_open = open
    class Half:
        def __init__(self, fh): self.fh = fh
        def __enter__(self): return self
        def __exit__(self, *a): self.fh.close()
        def write(self, data):
            self.fh.write(data[: len(data) // 2]); self.fh.flush()
            print("halfway", self.fh.name, flush=True)
            import time
            while True: time.sleep(60)
    writer.open = lambda f, mode="r", *a, **k: Half(real_open(f, mode, *a, **k))
    with torch.no_grad():
        av.sh.mul_(0.5)  # other contents
writer.export_glb(av, out, parts="splats")
print("done", flush=True)
"""


def test_killed_export_leaves_the_previous_file_and_the_next_sweeps(teacher: Any, tmp_path: Path) -> None:
    src = teacher.save(tmp_path / "a.ply")
    out = tmp_path / "out" / "head.glb"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ)
    subprocess.run(
        [sys.executable, str(script), str(src), str(out), "full"], check=True, env=env, timeout=600
    )
    first = out.read_bytes()
    proc = subprocess.Popen(
        [sys.executable, str(script), str(src), str(out), "stop"], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("halfway"), line
        partial = Path(line.split(" ", 1)[1].strip())
        assert partial.exists() and partial.parent == out.parent and partial.name.startswith(".head.partial-")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert out.read_bytes() == first  # the previous complete file
    assert partial.exists()  # the killed writer's temporary file ...
    subprocess.run(
        [sys.executable, str(script), str(src), str(out), "full"], check=True, env=env, timeout=600
    )
    assert not partial.exists()  # ... is swept by the next export
    assert sorted(p.name for p in out.parent.iterdir()) == ["head.glb"]
    read_glb(out.read_bytes())


def test_arkit_curves_become_the_clip(teacher: Any, basis: Any, tmp_path: Path) -> None:
    """Live Link curves (``animate --arkit``'s input) animate the 52 ARKit targets and the head."""
    from headstudio.animate.arkit import ArkitCurves
    from headstudio.output.gltf.fidelity import gltf_skinned_vertices
    from headstudio.output.gltf.mesh import head_mesh
    from headstudio.output.gltf.writer import export_glb

    w = np.zeros((3, 52), np.float32)
    w[1, ARKIT_NAMES.index("jawOpen")] = 1.0
    head_rot = np.zeros((3, 3), np.float32)
    head_rot[2, 0] = 0.3  # yaw
    curves = ArkitCurves(w, 60.0, head_rot, np.zeros((3, 6), np.float32))
    p = tmp_path / "c.glb"
    export_glb(teacher, p, parts="mesh", motion=curves, texture_size=64, basis=basis)
    doc, _ = _doc(p)
    head_mesh_ = next(m for m in doc["meshes"] if m["name"] == "head")
    assert head_mesh_["extras"]["targetNames"] == list(ARKIT_NAMES)
    vmap = head_mesh(teacher).vmap
    with torch.no_grad():
        ref = teacher.pose(basis.params(w[1:2]))[0].numpy()[vmap]
        rest = teacher.pose()[0].numpy()[vmap]
    assert np.abs(gltf_skinned_vertices(p, frame=1) - ref).max() < 1e-5
    turned = gltf_skinned_vertices(p, frame=2)
    with torch.no_grad():
        ref2 = teacher.pose(FlameParams(neck_pose=torch.tensor([[0.0, 0.3, 0.0]])))[0].numpy()[vmap]
    assert np.abs(turned - ref2).max() < 1e-5 and np.abs(turned - rest).max() > 1e-2
