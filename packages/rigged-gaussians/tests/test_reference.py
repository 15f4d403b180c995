"""The pure-PyTorch reference: closed-form checks, a naive per-pixel rasterizer, gradchecks."""

from __future__ import annotations

import math
from functools import partial

import pytest
import rigged_gaussians as rg
import torch
from rigged_gaussians import reference as ref
from rigged_gaussians import testing
from rigged_gaussians.settings import RasterSettings

#: The reference's renders, reached as production code reaches them: the public functions with
#: backend="torch" (the render signature is written once, in rigged_gaussians.api).
rasterize = partial(rg.rasterize, backend="torch")
render_rigged = partial(rg.render_rigged, backend="torch")

D64 = torch.float64


def _random_rotations(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, 4, generator=g, dtype=D64)
    return ref.quat_to_rotmat(ref.quat_normalize(q))


# ----------------------------------------------------------------------------- frames
def test_triangle_frames_closed_form() -> None:
    v = torch.tensor([[[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 3.0, 0.0]]], dtype=D64)
    f = torch.tensor([[0, 1, 2]])
    fr = ref.triangle_frames(v, f)
    torch.testing.assert_close(fr.centroids, torch.tensor([[[2 / 3, 1.0, 0.0]]], dtype=D64))
    # t = x, n = z (e x e2 = (2,0,0) x (0,3,0) = (0,0,6)), b = t x n = -y
    R = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]], dtype=D64)
    torch.testing.assert_close(fr.rotations[0, 0], R)
    torch.testing.assert_close(fr.sqrt_areas, torch.tensor([[math.sqrt(3.0)]], dtype=D64))
    cent, rot, sa = fr  # unpacks like the backends' tuples
    assert cent is fr.centroids and rot is fr.rotations and sa is fr.sqrt_areas


def test_triangle_frames_orthonormal_and_right_handed() -> None:
    rig = testing.random_rig(10, B=3, dtype=D64)
    fr = ref.triangle_frames(rig["vertices"], rig["faces"])
    R = fr.rotations
    eye = torch.eye(3, dtype=D64).expand_as(R)
    torch.testing.assert_close(R.transpose(-1, -2) @ R, eye)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(R.shape[:2], dtype=D64))


def test_triangle_frames_gradcheck() -> None:
    g = torch.Generator().manual_seed(1)
    verts = torch.randn(2, 5, 3, generator=g, dtype=D64).requires_grad_(True)
    faces = torch.tensor([[0, 1, 2], [1, 3, 2], [2, 3, 4], [0, 4, 1]])
    w = torch.randn(3, generator=g, dtype=D64)

    def fn(v: torch.Tensor) -> tuple[torch.Tensor, ...]:
        fr = ref.triangle_frames(v, faces)
        return fr.centroids, fr.rotations, fr.sqrt_areas * w[0]

    assert torch.autograd.gradcheck(fn, (verts,))


def test_triangle_frames_zero_area_is_finite() -> None:
    v = torch.tensor(
        [[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 0.0]]], dtype=torch.float32
    ).requires_grad_(True)
    f = torch.tensor([[0, 1, 2], [0, 3, 1], [0, 0, 0]])  # collinear, repeated vertex, a point
    fr = ref.triangle_frames(v, f)
    for t in fr:
        assert torch.isfinite(t).all()
    torch.testing.assert_close(fr.sqrt_areas, torch.full((1, 3), 1e-6))
    (fr.centroids.sum() + fr.rotations.sum() + fr.sqrt_areas.sum()).backward()
    assert torch.isfinite(v.grad).all()


# ----------------------------------------------------------------------------- quaternions
def test_rotmat_to_quat_roundtrip_all_branches() -> None:
    R = _random_rotations(200, seed=2)
    # rotations by ~pi about x, y, z exercise the three non-trace branches
    for axis in range(3):
        a = torch.zeros(4, dtype=D64)
        a[0] = 0.01
        a[1 + axis] = 1.0
        R = torch.cat([R, ref.quat_to_rotmat(ref.quat_normalize(a))[None]])
    q = ref.rotmat_to_quat(R)
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(R.shape[0], dtype=D64))
    torch.testing.assert_close(ref.quat_to_rotmat(q), R)


def test_quat_mul_composes_rotations() -> None:
    g = torch.Generator().manual_seed(3)
    p = ref.quat_normalize(torch.randn(20, 4, generator=g, dtype=D64))
    q = ref.quat_normalize(torch.randn(20, 4, generator=g, dtype=D64))
    torch.testing.assert_close(
        ref.quat_to_rotmat(ref.quat_mul(p, q)), ref.quat_to_rotmat(p) @ ref.quat_to_rotmat(q)
    )


# ----------------------------------------------------------------------------- deform
def test_deform_matches_definition() -> None:
    rig = testing.random_rig(40, B=2, dtype=D64)
    fr = ref.triangle_frames(rig["vertices"], rig["faces"])
    q = ref.quat_normalize(rig["quats"])
    out = ref.deform(rig["means"], q, rig["log_scales"], rig["face_ids"], fr)
    fid = rig["face_ids"]
    for b in range(2):
        R, T, sa = fr.rotations[b, fid], fr.centroids[b, fid], fr.sqrt_areas[b, fid, None]
        torch.testing.assert_close(out.means[b], T + sa * (R @ rig["means"][..., None])[..., 0])
        torch.testing.assert_close(out.scales[b], sa * rig["log_scales"].exp())
        torch.testing.assert_close(ref.quat_to_rotmat(out.quats[b]), R @ ref.quat_to_rotmat(q))


def test_deform_gradcheck_through_frames() -> None:
    rig = testing.random_rig(12, B=2, n_lat=3, n_lon=4, dtype=D64, seed=4)
    inputs = tuple(rig[k].clone().requires_grad_(True) for k in ("vertices", "means", "quats", "log_scales"))

    def fn(v, m, q, ls):  # noqa: ANN001, ANN202
        fr = ref.triangle_frames(v, rig["faces"])
        return tuple(ref.deform(m, q, ls, rig["face_ids"], fr))

    assert torch.autograd.gradcheck(fn, inputs)


# ----------------------------------------------------------------------------- SH
def test_sh_basis_orthonormal() -> None:
    n = 40000  # Fibonacci sphere quadrature
    i = torch.arange(n, dtype=D64) + 0.5
    z = 1 - 2 * i / n
    r = torch.sqrt(1 - z * z)
    phi = math.pi * (3 - math.sqrt(5)) * i
    d = torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], -1)
    Y = ref.sh_basis(3, d)
    gram = 4 * math.pi * (Y.T @ Y) / n
    torch.testing.assert_close(gram, torch.eye(16, dtype=D64), atol=2e-3, rtol=0)


def test_spherical_harmonics_degree0_and_clamp() -> None:
    c = torch.tensor([[[1.0, -5.0, 0.0]]], dtype=D64)
    out = ref.spherical_harmonics(0, torch.tensor([[0.0, 0.0, 2.0]], dtype=D64), c)
    torch.testing.assert_close(out, torch.tensor([[0.2820947917738781 + 0.5, 0.0, 0.5]], dtype=D64))


# ----------------------------------------------------------------------------- projection
def test_project_matches_pinhole_and_ewa() -> None:
    s = testing.random_scene(30, C=2, width=64, height=48, dtype=D64)
    C = 2
    R = ref.quat_to_rotmat(ref.quat_normalize(s["quats"]))[None].expand(C, -1, -1, -1)
    radii, means2d, depths, conics = ref.project(
        s["means"][None].expand(C, -1, -1),
        R,
        s["scales"][None].expand(C, -1, -1),
        None,  # no opacities: plain 3.33 sigma radii
        s["viewmats"],
        s["Ks"],
        RasterSettings(64, 48),
    )
    for c in range(C):
        Rc, tc, K = s["viewmats"][c, :3, :3], s["viewmats"][c, :3, 3], s["Ks"][c]
        pc = s["means"] @ Rc.T + tc
        uv = (pc @ K.T)[:, :2] / pc[:, 2:]
        vis = (radii[c] > 0).all(-1)
        assert vis.sum() > 20
        torch.testing.assert_close(means2d[c][vis], uv[vis])
        torch.testing.assert_close(depths[c], pc[:, 2])
        x, y, z = pc.unbind(-1)
        fx, fy = K[0, 0], K[1, 1]
        J = torch.zeros(30, 2, 3, dtype=D64)
        J[:, 0, 0], J[:, 0, 2] = fx / z, -fx * x / z**2
        J[:, 1, 1], J[:, 1, 2] = fy / z, -fy * y / z**2
        M = R[0] * s["scales"][:, None, :]
        cov2d = J @ Rc @ M @ M.transpose(1, 2) @ Rc.T @ J.transpose(1, 2) + 0.3 * torch.eye(2, dtype=D64)
        inv = torch.linalg.inv(cov2d)
        torch.testing.assert_close(
            conics[c][vis], torch.stack([inv[:, 0, 0], inv[:, 0, 1], inv[:, 1, 1]], -1)[vis]
        )
        expect = torch.ceil(3.33 * torch.sqrt(torch.stack([cov2d[:, 0, 0], cov2d[:, 1, 1]], -1)))
        assert torch.equal(radii[c][vis].to(D64), expect[vis])


def test_project_culls_edge_cases_with_zero_gradient() -> None:
    s = testing.random_scene(20, C=1, edge_cases=True, dtype=D64)
    means = s["means"].clone().requires_grad_(True)
    scales = s["scales"].clone().requires_grad_(True)
    R = ref.quat_to_rotmat(ref.quat_normalize(s["quats"]))[None]
    radii, means2d, depths, conics = ref.project(
        means[None], R, scales[None], None, s["viewmats"], s["Ks"], RasterSettings(64, 64)
    )
    # behind, before near, off-screen x2, beyond far are culled; huge and tiny are kept
    assert radii[0, [0, 1, 3, 4, 7]].eq(0).all()
    assert (radii[0, [2, 5, 6]] > 0).all()
    assert radii[0, 6].tolist() == [2, 2]  # tiny: eps2d alone, ceil(3.33 sqrt(0.3)) = 2
    assert depths[0, 0] < 0  # depth of a culled Gaussian is still reported
    (means2d.sum() + conics.sum() + depths.sum()).backward()
    assert torch.isfinite(means.grad).all() and torch.isfinite(scales.grad).all()
    assert means.grad[[0, 1, 3, 4, 7]].eq(0).all()


def test_jacobian_clamp_outside_fov() -> None:
    """A Gaussian just outside the view has its Jacobian clamped at 1.3 tan(fov/2) (gsplat)."""
    vm = torch.eye(4, dtype=D64)[None]
    K = torch.tensor([[[50.0, 0, 32], [0, 50.0, 32], [0, 0, 1]]], dtype=D64)
    means = torch.tensor([[[1.0, 0.0, 1.0]]], dtype=D64)  # x/z = 1 > lim = 32/50 + 0.3 * 0.64
    R = torch.eye(3, dtype=D64)[None, None]
    s = torch.full((1, 1, 3), 0.5, dtype=D64)
    radii, _, _, conics = ref.project(means, R, s, None, vm, K, RasterSettings(64, 64))
    lim = 32 / 50 + 0.3 * 0.64
    J = torch.tensor([[50.0, 0, -50.0 * lim], [0, 50.0, 0]], dtype=D64)
    cov2d = J @ (0.25 * torch.eye(3, dtype=D64)) @ J.T + 0.3 * torch.eye(2, dtype=D64)
    inv = torch.linalg.inv(cov2d)
    assert radii[0, 0, 0] > 0
    torch.testing.assert_close(conics[0, 0], torch.stack([inv[0, 0], inv[0, 1], inv[1, 1]]))


# ----------------------------------------------------------------------------- rasterizer
def _naive_blend(means2d, conics, feats, opac, radii, depths, W, H, ts, bg):  # noqa: ANN001, ANN202
    """Pixel-by-pixel sequential front-to-back blending (independent of the tiled version)."""
    C, N, D = feats.shape
    out = torch.zeros(C, H, W, D, dtype=feats.dtype)
    alphas = torch.zeros(C, H, W, 1, dtype=feats.dtype)
    for c in range(C):
        for i in range(H):
            for j in range(W):
                tx, ty = j // ts, i // ts
                cand = []
                for n in range(N):
                    if radii[c, n, 0] <= 0 and radii[c, n, 1] <= 0:
                        continue
                    mx, my = means2d[c, n].tolist()
                    rx, ry = radii[c, n].tolist()
                    x0 = min(max(0, math.floor((mx - rx) / ts)), 10**9)
                    x1 = math.ceil((mx + rx) / ts)
                    y0 = min(max(0, math.floor((my - ry) / ts)), 10**9)
                    y1 = math.ceil((my + ry) / ts)
                    if x0 <= tx < x1 and y0 <= ty < y1:
                        cand.append(n)
                cand.sort(key=lambda n: depths[c, n].item())
                T = 1.0
                acc = torch.zeros(D, dtype=feats.dtype)
                for n in cand:
                    dx = means2d[c, n, 0].item() - (j + 0.5)
                    dy = means2d[c, n, 1].item() - (i + 0.5)
                    a, b, cc = conics[c, n].tolist()
                    sig = 0.5 * (a * dx * dx + cc * dy * dy) + b * dx * dy
                    al = min(0.999, opac[c, n].item() * math.exp(-sig))
                    if sig < 0 or al < 1 / 255:
                        continue
                    if T * (1 - al) <= 1e-4:
                        break
                    acc += feats[c, n] * al * T
                    T *= 1 - al
                out[c, i, j] = acc + T * bg[c]
                alphas[c, i, j, 0] = 1 - T
    return out, alphas


@pytest.mark.parametrize("tile_size", [16, 8])
def test_rasterize_matches_naive_blending(tile_size: int) -> None:
    s = testing.random_scene(25, C=2, width=20, height=18, dtype=D64, seed=5, backgrounds=True)
    s["scales"] = s["scales"] * 2
    C = 2
    R = ref.quat_to_rotmat(ref.quat_normalize(s["quats"]))[None].expand(C, -1, -1, -1)
    st = RasterSettings(20, 18, tile_size=tile_size)  # the exact tile test on (the default)
    opac = s["opacities"][None].expand(C, -1)
    radii, means2d, depths, conics = ref.project(
        s["means"][None].expand(C, -1, -1),
        R,
        s["scales"][None].expand(C, -1, -1),
        opac,
        s["viewmats"],
        s["Ks"],
        st,
    )
    feats = s["colors"][None].expand(C, -1, -1)
    isect = ref.isect_tiles(means2d, radii, depths, conics, opac, st)
    got, got_a = ref.rasterize_to_pixels(means2d, conics, feats, opac, s["backgrounds"], isect, st)
    exp, exp_a = _naive_blend(
        means2d, conics, feats, opac, radii, depths, 20, 18, tile_size, s["backgrounds"]
    )
    torch.testing.assert_close(got, exp)
    torch.testing.assert_close(got_a, exp_a)
    assert got_a.max() > 0.9  # the scene really covers pixels


def _one_pixel_scene(opacities: list[float], colors: list[list[float]]) -> dict:
    n = len(opacities)
    vm = torch.eye(4, dtype=D64)[None]
    K = torch.tensor([[[100.0, 0, 8.0], [0, 100.0, 8.0], [0, 0, 1]]], dtype=D64)
    # means exactly on pixel centre (8.5, 8.5) at increasing depths
    z = torch.arange(1, n + 1, dtype=D64)
    means = torch.stack([0.5 * z / 100, 0.5 * z / 100, z], -1)
    return dict(
        means=means,
        quats=torch.tensor([[1.0, 0, 0, 0]] * n, dtype=D64),
        scales=torch.full((n, 3), 1e-4, dtype=D64),
        opacities=torch.tensor(opacities, dtype=D64),
        colors=torch.tensor(colors, dtype=D64),
        viewmats=vm,
        Ks=K,
        width=16,
        height=16,
        backgrounds=torch.tensor([[0.2, 0.4, 0.6]], dtype=D64),
    )


def test_early_stop_before_transmittance_floor() -> None:
    s = _one_pixel_scene([1.0, 1.0, 1.0], [[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    rgb, alpha, meta = rasterize(**s, depth=True)
    # first: alpha = 0.999 -> T = 1e-3; second would bring T to 1e-6 <= 1e-4: stop before it
    torch.testing.assert_close(alpha[0, 8, 8, 0], torch.tensor(0.999, dtype=D64))
    expect = torch.tensor([0.999, 0.0, 0.0], dtype=D64) + 1e-3 * s["backgrounds"][0]
    torch.testing.assert_close(rgb[0, 8, 8], expect)
    torch.testing.assert_close(meta.depth[0, 8, 8, 0], torch.tensor(1.0, dtype=D64))


def test_low_alpha_skipped_and_background() -> None:
    s = _one_pixel_scene([0.003, 0.5], [[1.0, 0, 0], [0, 1.0, 0]])  # 0.003 < 1/255: skipped
    rgb, alpha, _ = rasterize(**s)
    torch.testing.assert_close(alpha[0, 8, 8, 0], torch.tensor(0.5, dtype=D64))
    torch.testing.assert_close(rgb[0, 8, 8], torch.tensor([0, 0.5, 0], dtype=D64) + 0.5 * s["backgrounds"][0])
    # pixels no Gaussian reaches show the background, alpha 0
    torch.testing.assert_close(rgb[0, 0, 0], s["backgrounds"][0])
    assert alpha[0, 0, 0, 0] == 0


def test_rasterize_float32_matches_float64() -> None:
    s64 = testing.random_scene(
        150, C=2, width=48, height=40, sh_degree=2, dtype=D64, seed=6, backgrounds=True
    )
    s32 = testing.random_scene(150, C=2, width=48, height=40, sh_degree=2, seed=6, backgrounds=True)
    rgb64, a64, m64 = rasterize(**s64)
    rgb32, a32, m32 = rasterize(**s32)
    assert (rgb64 - rgb32.double()).abs().mean() < 1e-4
    assert (a64 - a32.double()).abs().mean() < 1e-4
    assert torch.equal(m64.visible, m32.visible)


def test_rasterize_gradcheck_tiny_scene() -> None:
    s = testing.random_scene(3, C=1, width=16, height=16, dtype=D64, seed=7, backgrounds=True)
    s["means"] = s["means"] * 0.3
    s["scales"] = s["scales"] + 0.1
    names = ("means", "quats", "scales", "opacities", "colors", "backgrounds")
    inputs = tuple(s[k].clone().requires_grad_(True) for k in names)
    rest = {k: v for k, v in s.items() if k not in names}

    g = torch.Generator().manual_seed(0)
    w_rgb, w_a, w_d = (torch.rand(1, 16, 16, k, generator=g, dtype=D64) for k in (3, 1, 1))
    rgb, alpha, _ = rasterize(**s)
    assert alpha.max() > 0.3  # the Gaussians are on screen

    def fn(*args):  # noqa: ANN002, ANN202
        rgb, alpha, meta = rasterize(**dict(zip(names, args, strict=True)), **rest, depth=True)
        # random projections of every output: the full gradient w.r.t. every input is checked
        return (rgb * w_rgb).sum(), (alpha * w_a).sum(), (meta.depth * alpha * w_d).sum()

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-7, atol=1e-6, rtol=1e-4)


def test_rasterize_sh_gradcheck() -> None:
    s = testing.random_scene(2, C=2, width=16, height=16, sh_degree=3, dtype=D64, seed=8)
    s["means"] = s["means"] * 0.3
    s["scales"] = s["scales"] + 0.1
    names = ("means", "colors")
    inputs = tuple(s[k].clone().requires_grad_(True) for k in names)
    rest = {k: v for k, v in s.items() if k not in names}

    def fn(m, c):  # noqa: ANN001, ANN202
        return rasterize(means=m, colors=c, **rest)[0]

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-7, atol=1e-5, rtol=1e-3, fast_mode=True)


def test_rasterize_edge_cases_finite_outputs_and_grads() -> None:
    s = testing.random_scene(60, C=2, width=32, height=32, sh_degree=1, edge_cases=True, backgrounds=True)
    names = ("means", "quats", "scales", "opacities", "colors")
    for k in names:
        s[k].requires_grad_(True)
    rgb, alpha, meta = rasterize(**s, depth=True)
    for t in (rgb, alpha, meta.depth, meta.means2d, meta.depths):
        assert torch.isfinite(t).all()
    meta.means2d.retain_grad()
    (rgb.sum() + alpha.sum() + meta.depth.sum()).backward()
    for k in names:
        assert torch.isfinite(s[k].grad).all(), k
    assert meta.means2d.grad is not None and torch.isfinite(meta.means2d.grad).all()
    assert meta.means2d.grad[~meta.visible].eq(0).all()
    assert meta.radii.dtype == torch.int32 and meta.visible.dtype == torch.bool


def test_absgrad_bounds_the_2d_gradient() -> None:
    s = testing.random_scene(40, C=2, width=32, height=32, seed=9)
    s["means"].requires_grad_(True)
    absgrad = torch.zeros(2, 40, 2)
    rgb, alpha, meta = rasterize(**s, absgrad=absgrad)
    meta.means2d.retain_grad()
    (rgb * torch.linspace(-1, 1, 3)).sum().backward()
    g = meta.means2d.grad.abs()
    assert (absgrad >= g - 1e-5).all()
    assert (absgrad[meta.visible] > 0).float().mean() > 0.5
    assert (absgrad > g + 1e-4).any()  # mixed-sign pixels: |sum| < sum |.|


# ----------------------------------------------------------------------------- rigged
def test_render_rigged_equals_deform_then_rasterize() -> None:
    rig = testing.random_rig(80, B=2, C=2, width=32, height=32, sh_degree=1, dtype=D64, backgrounds=True)
    rgb, alpha, meta = render_rigged(**rig, depth=True)
    assert rgb.shape == (2, 2, 32, 32, 3) and alpha.shape == (2, 2, 32, 32, 1)
    assert meta.depth.shape == (2, 2, 32, 32, 1) and meta.radii.shape == (4, 80, 2)
    fr = ref.triangle_frames(rig["vertices"], rig["faces"])
    dfm = ref.deform(rig["means"], rig["quats"], rig["log_scales"], rig["face_ids"], fr)
    for b in range(2):
        r2, a2, m2 = rasterize(
            dfm.means[b], dfm.quats[b], dfm.scales[b], rig["opacities"], rig["colors"], rig["viewmats"][b],
            rig["Ks"][b], 32, 32, sh_degree=1, backgrounds=rig["backgrounds"][b], depth=True,
        )  # fmt: skip
        torch.testing.assert_close(rgb[b], r2)
        torch.testing.assert_close(alpha[b], a2)
        torch.testing.assert_close(meta.depth[b], m2.depth)
        assert torch.equal(meta.radii[2 * b : 2 * b + 2], m2.radii)
    assert alpha.mean() > 0.2


def test_render_rigged_gradients_reach_vertices_and_locals() -> None:
    rig = testing.random_rig(60, B=2, C=1, width=32, height=32, edge_cases=True)
    names = ("vertices", "means", "quats", "log_scales", "opacities", "colors")
    for k in names:
        rig[k].requires_grad_(True)
    rgb, alpha, meta = render_rigged(**rig)
    assert torch.isfinite(rgb).all() and torch.isfinite(alpha).all()
    (rgb.sum() + alpha.sum()).backward()
    for k in names:
        assert torch.isfinite(rig[k].grad).all(), k
        assert rig[k].grad.abs().sum() > 0, k


def test_absurd_scale_radius_does_not_wrap() -> None:
    s = testing.random_scene(10, C=1)
    s["scales"][0] = 1e9  # radius ~1e11 pixels: beyond int32
    rgb, alpha, meta = rasterize(**s)
    assert (meta.radii[0, 0] > 0).all() and meta.visible[0, 0]
    assert torch.isfinite(rgb).all() and alpha.max() > 0.5


def test_render_rigged_gradcheck_tiny_rig() -> None:
    rig = testing.random_rig(6, B=1, C=2, width=16, height=16, n_lat=3, n_lon=4, dtype=D64, seed=3, dist=2.5)
    names = ("vertices", "means", "quats", "log_scales", "opacities", "colors")
    inputs = tuple(rig[k].clone().requires_grad_(True) for k in names)
    rest = {k: v for k, v in rig.items() if k not in names}
    g = torch.Generator().manual_seed(1)
    w_rgb, w_a = (torch.rand(1, 2, 16, 16, k, generator=g, dtype=D64) for k in (3, 1))
    _, alpha, _ = render_rigged(**rig)
    assert alpha.max() > 0.3

    def fn(*args):  # noqa: ANN002, ANN202
        rgb, alpha, _ = render_rigged(**dict(zip(names, args, strict=True)), **rest)
        return (rgb * w_rgb).sum(), (alpha * w_a).sum()

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-7, atol=1e-6, rtol=1e-4)
