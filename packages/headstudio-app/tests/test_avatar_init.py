"""Uniform super-resolution init: K per triangle, on the surface, kNN scales, inverse transform."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from headstudio.avatar_init import knn_scales, sample_on_triangles, uniform_superresolution_init
from headstudio.errors import HeadStudioError
from rigged_gaussians.reference import deform, triangle_frames


def small_mesh() -> tuple[torch.Tensor, torch.Tensor]:
    """A bumpy 6×6 grid (50 triangles of varied size and orientation)."""
    g = torch.Generator().manual_seed(1)
    n = 6
    xs, ys = torch.meshgrid(torch.linspace(0, 0.1, n), torch.linspace(0, 0.08, n), indexing="ij")
    zs = 0.01 * torch.randn(n, n, generator=g)
    verts = torch.stack([xs + 0.003 * torch.randn(n, n, generator=g), ys, zs], -1).reshape(-1, 3)
    faces = []
    for i in range(n - 1):
        for j in range(n - 1):
            a, b, c, d = i * n + j, (i + 1) * n + j, i * n + j + 1, (i + 1) * n + j + 1
            faces += [[a, b, c], [b, d, c]]
    return verts, torch.tensor(faces)


def test_k_points_per_face_on_their_triangles() -> None:
    verts, faces = small_mesh()
    K = 10
    g = uniform_superresolution_init(
        verts, faces, points_per_face=K, knn=3, generator=torch.Generator().manual_seed(0)
    )
    F = faces.shape[0]
    N = K * F
    assert g["means"].shape == (N, 3) and g["quats"].shape == (N, 4) and g["log_scales"].shape == (N, 3)
    assert g["face_ids"].dtype == torch.long
    assert torch.equal(torch.bincount(g["face_ids"], minlength=F), torch.full((F,), K))
    # identity rotations
    assert torch.equal(g["quats"], torch.tensor([1.0, 0, 0, 0]).expand(N, 4))
    # local means lie in the triangle plane: zero component along the normal (column 1 of R)
    assert g["means"][:, 1].abs().max() < 1e-5
    # deformed with the neutral mesh, the means are points inside their triangles
    frames = triangle_frames(verts[None], faces)
    d = deform(g["means"], g["quats"], g["log_scales"], g["face_ids"], frames)
    world = d.means[0]
    tri = verts[faces[g["face_ids"]]]  # [N, 3, 3]
    e0, e1, p = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], world - tri[:, 0]
    normal = torch.linalg.cross(e0, e1)
    assert (p * normal).sum(-1).abs().max() < 1e-8  # on the plane
    # barycentric coordinates all in [0, 1]
    m = torch.stack([e0, e1], -1)  # [N,3,2]
    uv = torch.linalg.lstsq(m.double(), p.double()[..., None]).solution[..., 0]
    bary = torch.stack([1 - uv.sum(-1), uv[:, 0], uv[:, 1]], -1)
    assert bary.min() > -1e-4 and bary.max() < 1 + 1e-4


def test_world_means_reproduce_the_sampled_points_and_scales_follow_knn() -> None:
    verts, faces = small_mesh()
    gen = torch.Generator().manual_seed(5)
    points, face_ids, bary = sample_on_triangles(verts, faces, 4, torch.Generator().manual_seed(5))
    g = uniform_superresolution_init(verts, faces, points_per_face=4, knn=3, generator=gen)
    assert torch.equal(g["face_ids"], face_ids)
    frames = triangle_frames(verts[None], faces)
    d = deform(g["means"], g["quats"], g["log_scales"], g["face_ids"], frames)
    torch.testing.assert_close(d.means[0], points, atol=1e-6, rtol=0)
    # the world scale is the RMS distance to the 3 nearest other points (brute force)
    dist = torch.cdist(points.double(), points.double())
    dist.fill_diagonal_(float("inf"))
    nn3 = dist.topk(3, largest=False).values
    expected = (nn3**2).mean(-1).clamp_min(1e-7).sqrt()
    torch.testing.assert_close(d.scales[0], expected[:, None].expand(-1, 3).float(), rtol=1e-5, atol=1e-7)
    # isotropic local scales: log s = log(s' / sqrt(S))
    torch.testing.assert_close(g["log_scales"][:, 0], g["log_scales"][:, 2])
    # sampled points are uniform on the triangle: mean barycentric ≈ 1/3 over many samples
    _, _, b = sample_on_triangles(verts, faces, 400, torch.Generator().manual_seed(0))
    assert np.allclose(b.mean(0).numpy(), 1 / 3, atol=0.01)
    assert b.min() >= 0


def test_knn_scales_simple_case() -> None:
    pts = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [3.0, 0, 0], [7.0, 0, 0]])
    s = knn_scales(pts, k=1)
    torch.testing.assert_close(s, torch.tensor([1.0, 1.0, 2.0, 4.0]))
    s2 = knn_scales(pts, k=2)
    assert s2[0].item() == pytest.approx(np.sqrt((1 + 9) / 2))
    with pytest.raises(HeadStudioError):
        knn_scales(pts[:2], k=3)


def test_deterministic_and_checks() -> None:
    verts, faces = small_mesh()
    a = uniform_superresolution_init(verts, faces, 2, generator=torch.Generator().manual_seed(3))
    b = uniform_superresolution_init(verts, faces, 2, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(HeadStudioError, match="points_per_face"):
        uniform_superresolution_init(verts, faces, 0)
    with pytest.raises(HeadStudioError, match="vertices"):
        uniform_superresolution_init(verts[:, :2], faces, 1)


def test_on_the_procedural_head() -> None:
    from flame_core.model import FlameModel

    head = FlameModel.procedural(num_shape=10, num_expression=10)
    verts = head().vertices[0]
    g = uniform_superresolution_init(verts, head.faces, 1, generator=torch.Generator().manual_seed(0))
    assert g["means"].shape == (head.num_faces, 3)
    assert torch.isfinite(g["means"]).all() and torch.isfinite(g["log_scales"]).all()
    frames = triangle_frames(verts[None], head.faces)
    world = deform(g["means"], g["quats"], g["log_scales"], g["face_ids"], frames).means[0]
    centroids = frames.centroids[0][g["face_ids"]]
    # every point stays within its triangle's circumradius-ish neighbourhood
    tau = (verts[head.faces] - frames.centroids[0][:, None]).norm(dim=-1).max(-1).values
    assert ((world - centroids).norm(dim=-1) <= tau[g["face_ids"]] + 1e-6).all()
