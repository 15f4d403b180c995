"""The GLB's KHR_gaussian_splatting splats rendered by a real loader, three.js 0.187
(``GLTFGaussianSplatLoaderExtension`` + ``GaussianSplat``, WebGPURenderer in headless Chromium),
against ``headstudio render`` at the same view.

Which loaders can (npm, December 2026): three.js 0.187 (already pinned for the mesh test) loads
the extension and renders it with WebGPURenderer, on WebGPU or on its WebGL2 backend; both run
here under SwiftShader. WebGPU needs a secure context (the page is served as
``http://localhost``, intercepted by Playwright; ``http://headstudio.test`` has no
``navigator.gpu``), ``--enable-unsafe-webgpu --use-webgpu-adapter=swiftshader``, and a read back
from a render target: presenting a WebGPU canvas under headless SwiftShader loses the device
("A valid external Instance reference no longer exists"). Babylon.js (``@babylonjs/loaders``
9.28) and PlayCanvas (2.23) also implement the extension; they were not needed.

The camera is exactly ``headstudio render``'s (``frame_avatar`` + ``orbit_views``: eye, look-at
target, +y up, 30° vertical FOV, square pixels, principal point at the centre). The avatar's
world is FLAME's, which is glTF's (+Y up, +Z forward, metres), and the export writes it as is,
so the same eye and target serve both. Both images are over black: ours is the app's composite
over a black background, three's the premultiplied colour of a transparent black target (its
``NormalBlending`` is ``src·α + dst·(1−α)``, alpha ``α + dst·(1−α)``), so nothing needs
un-premultiplying, and three's target alpha is its coverage, compared with ours.

The bar. Measured at 256² (the fixture's avatar, front / 45°): PSNR 29.2 / 29.6 dB over the
frame, 32.5 / 33.7 dB inside the head (both silhouettes, eroded 2 px), mask IoU 0.945 / 0.952,
best-overlap shift (0, 0); WebGPU and WebGL2 agree to 0.02 dB. Why not higher: ``splat_model``
composites the file's splats under either renderer's rules. Under ours it reproduces our
rasterizer (109 dB in float); under three's it predicts three's image to 55.2 dB on WebGL2 (its
CPU depth-bin sort modelled) and 52.5 dB on WebGPU (bins filled in parallel: order within a bin
not modelled), so it accounts for the difference. Switching the rules one at a time from ours to
three's:

* the kernel's extent: three discards ``r² > 4``, cutting every splat at 2σ (α there is still
  ``o·e⁻²``, 13.5% of its peak); we keep every pixel with α ≥ 1/255 (≈3.3σ). This alone takes
  ours to 48.4 dB of three's image: it is the difference. It thins the soft rims around the
  silhouette (three covers 29.8% of the frame, we 31.5%), so the frame's PSNR is the rims';
* three's Mip-Splatting-style opacity compensation for the 0.3 px² screen dilation (both add
  0.3; three also scales α by ``√(det Σ / det(Σ + 0.3 I))``): 51.2 dB between ours with and
  without it;
* three's 8-bit colours, opacities and SH bands: 71.5 dB at degree 0; our α ≤ 0.999, 1/255 floor
  and T stop: 52 dB; our clamped Jacobian: no change in this view;
* three's 4096-bin depth sort: 47.4 → 53.8 dB for the model at SH degree 3 on WebGL2 once
  modelled (with SH noise, neighbouring splats differ in colour, so their order shows); its
  8-bit blending of each layer: 0.003 dB (a half-float target), not modelled.

Both blend sRGB display values as they are (three's output colour space is set to linear so that
it does not encode them again), no tone mapping, no MSAA; SH up to degree 3 in both, with the same
basis. The bars: 25 dB over the frame, 30 dB inside, IoU 0.9, shift (0, 0); the model with three's
rules above ``MODEL_BAR`` (50 dB WebGL2, 44 dB WebGPU) and ours with the 2σ cut alone above 42 dB.
The direct comparison with our render is loose (a quaternion read as wxyz still gives 28.4 /
31.0 dB); the model comparison is what catches a misread file (wxyz 32.8 dB, opacity as a logit
38.6 dB, scales 25% larger 25.2 dB; ``test_a_misread_splat_attribute_misses_the_model``).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from headstudio.avatar import Avatar
from headstudio.commands import export
from headstudio.output.gltf.builder import read_accessor, read_glb
from headstudio.output.rendering import ViewSettings, frame_avatar, orbit_views, render_views
from PIL import Image
from scipy import ndimage

from .conftest import CLIENTS, node_modules
from .splat_model import Rules, composite, psnr, read_splats

log = logging.getLogger(__name__)

SIZE = 256
VIEWS = (0.0, 45.0)  # azimuths, degrees (0: the face)
BACKENDS = ("webgpu", "webgl")
ORIGIN = "http://localhost"  # a secure context: WebGPU's navigator.gpu exists only there
SETTINGS = ViewSettings(background=(0.0, 0.0, 0.0))


#: The model against three's image (PSNR, dB). Measured: 55.2 (WebGL2) and 52.5 (WebGPU) at SH
#: degree 0, 53.8 and 47.3-48.0 at degree 3; WebGPU's sort order within a depth bin varies.
MODEL_BAR = {"webgl": 50.0, "webgpu": 44.0}


def three_rules(backend: str) -> Rules:
    """The model's rules for three on ``backend``: its WebGL2 backend sorts on the CPU in a known
    order within each depth bin (modelled); its WebGPU sort fills the bins in parallel, so there
    the model sorts by exact depth and splats within one bin may differ in order."""
    return Rules.three().but(depth_bins=backend == "webgl")


@pytest.fixture(scope="module")
def splat_avatar(head: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Avatar, Path]:
    """The teacher avatar (25,132 splats) with anisotropic scales, random rotations and opacities
    between 0.3 and 0.99 (the teacher's own splats are round and all 0.95 opaque, so a misread
    rotation or opacity would not show), saved as a PLY, read back, and its splats exported by
    the command. Without the teacher's hair volume: randomly turned, its long flat splats fray the
    top of the silhouette, where three's mask and ours then differ by a pixel (measured: best
    shift (-1, 0), IoU 0.949)."""
    from headstudio.demo.teacher import build_teacher_avatar

    avatar = build_teacher_avatar(head, hair=False)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        avatar.log_scales.add_(0.35 * torch.randn(avatar.log_scales.shape, generator=g))
        q = torch.randn(avatar.quats.shape, generator=g)
        avatar.quats.copy_(q / q.norm(dim=-1, keepdim=True))
        o = 0.3 + 0.69 * torch.rand(avatar.opacity_logits.shape, generator=g)
        avatar.opacity_logits.copy_(torch.log(o / (1 - o)))
    d = tmp_path_factory.mktemp("splats")
    ply = avatar.save(d / "splats.ply")
    glb = d / "head.glb"
    export.run(export.ExportOptions(avatar=ply, format="glb", output=glb, parts="splats", device="cpu"))
    return Avatar.load(ply, head), glb


def _cameras(avatar: Avatar) -> list[tuple[np.ndarray, np.ndarray, dict]]:
    """Per view: ``viewmat [4, 4]``, ``K [3, 3]`` and the same camera for the page."""
    target, dist = frame_avatar(avatar, SETTINGS)
    vms, ks = orbit_views(VIEWS, SETTINGS.elevation_deg, dist, SETTINGS.fovy_deg, SIZE, SIZE, target)
    out = []
    for vm, k in zip(vms.numpy().astype(np.float64), ks.numpy().astype(np.float64)):
        eye = -vm[:3, :3].T @ vm[:3, 3]
        cam = dict(eye=eye.tolist(), target=target.tolist(), up=[0.0, 1.0, 0.0], fovy=SETTINGS.fovy_deg)
        cam.update(width=SIZE, height=SIZE, near=0.01, far=100.0)
        out.append((vm, k, cam))
    return out


@pytest.fixture(scope="module")
def ours(splat_avatar: tuple[Avatar, Path]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per view: our render over black as ``headstudio render`` writes it (uint8 ``[H, W, 3]``)
    and our alpha ``[H, W]``."""
    avatar, _ = splat_avatar
    out = []
    for vm, k, _ in _cameras(avatar):
        vm_t, k_t = (
            torch.as_tensor(vm, dtype=torch.float32)[None],
            torch.as_tensor(k, dtype=torch.float32)[None],
        )
        rgb = next(render_views(avatar, vm_t, k_t, SIZE, SIZE, SETTINGS.background))
        with torch.no_grad():
            alpha = avatar.render(vm_t[None], k_t[None], SIZE, SIZE, background=(0.0, 0.0, 0.0)).alpha
        out.append((rgb, alpha[0, 0, ..., 0].numpy().astype(np.float64)))
    return out


def render_in_three(pw: Any, jobs: list[tuple[Path, str]], cams: list[dict]) -> list[dict[str, Any]]:
    """Load each ``(glb, backend)`` in a fresh page and render it at ``cams``; per job: the
    page's info and, per camera, three's rgb ``[H, W, 3]`` (uint8) and alpha ``[H, W]``."""
    nm = node_modules()
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).is_file():
        pytest.skip("chromium is not installed (apt-get install -y chromium, as .ci/run does)")
    models = {f"model{i}.glb": glb for i, (glb, _) in enumerate(jobs)}

    def serve(route: Any) -> None:
        url = route.request.url.split("://", 1)[1].split("/", 1)[1].split("?", 1)[0]
        if url in ("", "index.html"):
            return route.fulfill(path=str(CLIENTS / "splats_page.html"), content_type="text/html")
        if url in models:
            return route.fulfill(path=str(models[url]), content_type="model/gltf-binary")
        if url.startswith("three/"):
            f = (nm / url).resolve()
            if f.is_file() and nm.resolve() in f.parents:
                return route.fulfill(path=str(f), content_type="text/javascript")
        return route.fulfill(status=404, body="not here")

    args = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--no-first-run",
            "--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader"]  # fmt: skip
    results = []
    browser = pw.chromium.launch(executable_path=chromium, headless=True, args=args)
    try:
        for i, (_, backend) in enumerate(jobs):
            page = browser.new_page(viewport={"width": 64, "height": 64})
            errors: list[str] = []
            page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
            page.route(f"{ORIGIN}/**", serve)
            page.goto(f"{ORIGIN}/index.html?backend={backend}&model=model{i}.glb")
            ready = "window.headstudioReady === true || !!window.headstudioError"
            page.wait_for_function(ready, timeout=120_000)
            assert page.evaluate("window.headstudioError || null") is None and not errors, errors
            shots = []
            for cam in cams:
                r = page.evaluate("(c) => window.headstudio.render(c)", cam)
                assert r["kind"] == "Uint8Array", r["kind"]
                px = np.asarray(r["data"], np.uint8).reshape(SIZE, SIZE, 4)
                shots.append((px[..., :3].copy(), px[..., 3] / 255.0))
            results.append({"info": page.evaluate("window.headstudio.info"), "shots": shots})
            page.close()
    finally:
        browser.close()
    return results


@pytest.fixture(scope="module")
def three(splat_avatar: tuple[Avatar, Path], playwright_driver: Any) -> dict[str, dict[str, Any]]:
    """Per backend: :func:`render_in_three` of the exported GLB at the views."""
    avatar, glb = splat_avatar
    cams = [c for _, _, c in _cameras(avatar)]
    return dict(zip(BACKENDS, render_in_three(playwright_driver, [(glb, b) for b in BACKENDS], cams)))


def _masks(oa: np.ndarray, ta: np.ndarray) -> tuple[float, np.ndarray, tuple[int, int]]:
    """Mask IoU (α > 0.5), the inside of both silhouettes eroded 2 px, and the shift of three's
    mask (rows, columns within ±3 px) that overlaps ours best: (0, 0) when the head lies where
    ours lies. (The masks' centroids differ by more than a pixel in y: our wider rims at the
    shoulders, cut by the frame's edge.)"""
    mo, mt = oa > 0.5, ta > 0.5
    iou = float((mo & mt).sum() / max((mo | mt).sum(), 1))
    inner = ndimage.binary_erosion(mo & mt, iterations=2)
    shifts = [(dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)]
    overlap = [
        (mo & np.roll(mt, s, (0, 1))).sum() / max((mo | np.roll(mt, s, (0, 1))).sum(), 1) for s in shifts
    ]
    return iou, inner, shifts[int(np.argmax(overlap))]


@pytest.mark.parametrize("backend", BACKENDS)
def test_threejs_renders_the_splats_as_headstudio_does(
    backend: str,
    splat_avatar: tuple[Avatar, Path],
    ours: list[tuple[np.ndarray, np.ndarray]],
    three: dict[str, dict[str, Any]],
    tmp_path: Path,
) -> None:
    """Front and 45°: three draws the file's splats (all of them, on the backend asked for),
    not a blank frame, the head where ours is, within the module's bars of our render; the
    side-by-side (ours | three | |difference|×4) goes to ``tmp_path`` (docs/images has one)."""
    res = three[backend]
    info = res["info"]
    want = {"webgpu": "webgpu", "webgl": "webgl2"}[backend]
    assert info["backend"] == want, (
        f"three.js fell back to {info['backend']}: this chromium gave no WebGPU adapter to a localhost "
        "page with --enable-unsafe-webgpu --use-webgpu-adapter=swiftshader"
    )
    assert info["splats"] == [splat_avatar[0].num_gaussians] and info["revision"] == "187"
    panels = []
    for az, (o_rgb, o_a), (t_rgb, t_a) in zip(VIEWS, ours, res["shots"]):
        o, t = o_rgb / 255.0, t_rgb / 255.0
        iou, inner, shift = _masks(o_a, t_a)
        whole, head = psnr(o, t), psnr(o, t, inner)
        log.info("%s, azimuth %g: PSNR %.2f dB, inside the head %.2f dB, mask IoU %.3f, best shift %s",
                 backend, az, whole, head, iou, shift)  # fmt: skip
        assert (t_a > 0.5).mean() > 0.15 and t_rgb.std() > 20, "three's frame is (nearly) blank"
        assert iou > 0.9 and shift == (0, 0), (iou, shift)
        assert whole > 25.0 and head > 30.0, (whole, head)
        diff = np.clip(np.abs(o - t) * 4 * 255, 0, 255).astype(np.uint8)
        panels.append(np.concatenate([o_rgb, t_rgb, diff], 1))
    Image.fromarray(np.concatenate(panels, 0)).save(tmp_path / f"glb_splats_threejs_{backend}.png")


@pytest.mark.slow
def test_the_splat_model_under_our_rules_is_our_rasterizer(
    splat_avatar: tuple[Avatar, Path], ours: list[tuple[np.ndarray, np.ndarray]]
) -> None:
    """The model (reading the GLB) against ``headstudio render`` (reading the PLY), front view:
    the model is trusted as an account of three's rules only because it is exact under ours."""
    avatar, glb = splat_avatar
    vm, k, _ = _cameras(avatar)[0]
    o_rgb, o_a = ours[0]
    m_rgb, m_a = composite(read_splats(glb), vm, k, SIZE, SIZE, Rules.ours())
    assert psnr(np.floor(m_rgb * 255 + 0.5) / 255, o_rgb / 255.0) > 60.0  # measured: 1-level ties only
    assert np.abs(m_a - o_a).max() < 1e-3  # float32 against float64 (measured 1.6e-4)


@pytest.mark.slow
def test_the_splat_model_accounts_for_the_difference(
    splat_avatar: tuple[Avatar, Path], three: dict[str, dict[str, Any]]
) -> None:
    """With three's rules the model is three's image (front view), and three's 2σ cut alone takes
    ours most of the way there (measured: 55.2 / 52.5 dB on WebGL2 / WebGPU, 48.4 dB)."""
    avatar, glb = splat_avatar
    splats = read_splats(glb)
    vm, k, _ = _cameras(avatar)[0]
    m_cut, _ = composite(splats, vm, k, SIZE, SIZE, Rules.ours().but(cut_2sigma=True))
    for backend in BACKENDS:
        m_three, a_three = composite(splats, vm, k, SIZE, SIZE, three_rules(backend))
        t_rgb, t_a = three[backend]["shots"][0]
        model, cut = psnr(m_three, t_rgb / 255.0), psnr(m_cut, t_rgb / 255.0)
        log.info(
            "%s: the model with three's rules %.2f dB, ours with the 2σ cut %.2f dB", backend, model, cut
        )
        assert model > MODEL_BAR[backend] and np.abs(a_three - t_a).mean() < 2e-3, model
        assert cut > 42.0, cut


def _misread(glb: Path, out: Path, how: str) -> Path:
    """A copy of ``glb`` with one splat attribute written the way a careless exporter might."""
    from headstudio.output.gltf.builder import GltfBuilder

    doc, binary = read_glb(glb.read_bytes())
    buf = bytearray(binary)
    attrs = doc["meshes"][0]["primitives"][0]["attributes"]
    name, change = {
        "quaternion wxyz": ("ROTATION", lambda a: a[:, [3, 0, 1, 2]]),
        "opacity logit": ("OPACITY", lambda a: np.log(a / (1 - a))),
        "scales 25% larger": ("SCALE", lambda a: a * 1.25),
    }[how]
    index = attrs["KHR_gaussian_splatting:" + name]
    acc = doc["accessors"][index]
    start = doc["bufferViews"][acc["bufferView"]].get("byteOffset", 0) + acc.get("byteOffset", 0)
    new = np.ascontiguousarray(change(read_accessor(doc, binary, index).astype(np.float64)), np.float32)
    buf[start : start + new.nbytes] = new.tobytes()
    b = GltfBuilder()
    b.doc = {k: v for k, v in doc.items() if k != "buffers"}
    b._bin = buf
    out.write_bytes(b.glb_bytes())
    return out


@pytest.mark.slow
def test_a_misread_splat_attribute_misses_the_model(
    splat_avatar: tuple[Avatar, Path], tmp_path: Path, playwright_driver: Any
) -> None:
    """The model test can fail: files with one attribute written wrong, rendered by three (WebGL2),
    miss the model of the right file by far more than the bar (measured: wxyz 32.8 dB, logit
    38.6 dB, 25% larger 25.2 dB, against 55.2 dB for the right file)."""
    avatar, glb = splat_avatar
    hows = ("quaternion wxyz", "opacity logit", "scales 25% larger")
    bad = [_misread(glb, tmp_path / f"bad{i}.glb", h) for i, h in enumerate(hows)]
    vm, k, cam = _cameras(avatar)[0]
    model, _ = composite(read_splats(glb), vm, k, SIZE, SIZE, three_rules("webgl"))
    for how, res in zip(hows, render_in_three(playwright_driver, [(b, "webgl") for b in bad], [cam])):
        got = psnr(model, res["shots"][0][0] / 255.0)
        log.info("%s: three's image %.2f dB from the model of the right file", how, got)
        assert got < MODEL_BAR["webgl"] - 5.0, (how, got)


@pytest.fixture(scope="module")
def sh_splat_avatar(
    splat_avatar: tuple[Avatar, Path], head: Any, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Avatar, Path]:
    """The same splats with SH degree 3: the bands above 0 drawn from 0.15·N(0, 1) (within
    three's byte range [−1, 1]), saved, read back and exported by the command."""
    base, glb = splat_avatar
    avatar = Avatar.load(glb.parent / "splats.ply", head)
    params = {k: v.detach().clone() for k, v in base.gaussian_params().items()}
    rest = 0.15 * torch.randn(base.num_gaussians, 15, 3, generator=torch.Generator().manual_seed(6))
    params["sh"] = torch.cat([params["sh"], rest], 1)
    avatar.set_gaussians(params, base.face_ids)
    d = tmp_path_factory.mktemp("sh_splats")
    ply = avatar.save(d / "sh_splats.ply")
    out = d / "head.glb"
    export.run(export.ExportOptions(avatar=ply, format="glb", output=out, parts="splats", device="cpu"))
    return Avatar.load(ply, head), out


@pytest.mark.slow
def test_threejs_reads_sh_degree_3(sh_splat_avatar: tuple[Avatar, Path], playwright_driver: Any) -> None:
    """SH degree 3 at 45°: the model with three's rules (byte-quantised bands, our basis) is
    three's image on both backends, the same splats without their bands are not (so three
    evaluates them, with our ordering and signs), and under our rules the model is our render."""
    avatar, glb = sh_splat_avatar
    assert avatar.sh_degree == 3
    splats = read_splats(glb)
    assert splats.sh_rest.shape == (avatar.num_gaussians, 15, 3)
    vm, k, cam = _cameras(avatar)[1]
    vm_t, k_t = torch.as_tensor(vm, dtype=torch.float32)[None], torch.as_tensor(k, dtype=torch.float32)[None]
    o_rgb = next(render_views(avatar, vm_t, k_t, SIZE, SIZE, SETTINGS.background)) / 255.0
    m_ours, _ = composite(splats, vm, k, SIZE, SIZE, Rules.ours())
    assert psnr(m_ours, o_rgb) > 45.0
    flat = replace(splats, sh_rest=splats.sh_rest[:, :0])
    for backend, res in zip(
        BACKENDS, render_in_three(playwright_driver, [(glb, b) for b in BACKENDS], [cam])
    ):
        m_three, _ = composite(splats, vm, k, SIZE, SIZE, three_rules(backend))
        m_flat, _ = composite(flat, vm, k, SIZE, SIZE, three_rules(backend))
        t = res["shots"][0][0] / 255.0
        model, without, direct = psnr(m_three, t), psnr(m_flat, t), psnr(o_rgb, t)
        log.info("SH 3, %s, 45°: the model %.2f dB, the model without the bands %.2f dB, ours %.2f dB",
                 backend, model, without, direct)  # fmt: skip
        assert model > MODEL_BAR[backend] and without < 40.0 and direct > 25.0, (model, without, direct)
