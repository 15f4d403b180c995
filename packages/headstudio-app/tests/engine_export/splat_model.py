"""A small software splat compositor that can follow either of two rule sets, so the differences
between three.js's ``GaussianSplat`` (0.187) and our rasterizer can be switched on one at a time.

It reads the splats from the GLB's KHR_gaussian_splatting attributes (what a loader reads), so
it also checks the file. ``Rules.ours()`` follows ``docs/ARCHITECTURE.md``'s (gsplat's)
conventions; ``Rules.three()`` follows ``three/examples/jsm/objects/GaussianSplat.js`` and
``utils/GaussianSplatUtils.js`` 0.187, read for facts:

==================  =====================================  ======================================
rule                ours (gsplat)                          three.js GaussianSplat
==================  =====================================  ======================================
kernel extent       every pixel with α ≥ 1/255 (≈3.3σ)     ``r² > 4`` discarded: cut at 2σ
α                   ``min(0.999, o·exp(−r²/2))``           ``o·s·exp(−r²/2)``, ``s = √(det Σ/det(Σ+0.3 I))``
colour              ``max(Σ f·Y + 0.5, 0)`` in float       DC colour, ``o`` and SH bands in 8 bits
stop                before T would reach 1e-4              none
Jacobian            ``x/z`` clamped to 1.3·tan(fov/2)      not clamped
==================  =====================================  ======================================

Both add 0.3 px² to the 2D covariance, sort each pixel's splats by camera depth of the mean and
blend ``Σ c α T`` over a transparent black background. Three sorts into 4096 depth bins (~0.1 mm
here); ``Rules.depth_bins`` models the order its CPU sort (WebGL2 backend) gives within a bin,
its parallel GPU sort (WebGPU) is not modelled. Not modelled either: its 8-bit blending of each
layer (a half-float target gives the same PSNR to 0.01 dB) and its culling of splats whose centre
lies beyond 1.4 times the clip box (none in the test's views).

Spherical harmonics up to degree 3 are evaluated with our reference's basis
(``rigged_gaussians.reference.sh_basis``; three's constants and signs are the same) in the
direction from the camera to the splat's centre, as both renderers do. Three stores the bands
above 0 as bytes, ``(round(128 c + 128) − 128) / 128`` clamped to [−1, 127/128], adds them to its
8-bit DC colour (clamped to [0, 1] first) and clamps the sum to [0, 1]; we clamp the sum at 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from headstudio.output.gltf.builder import read_accessor, read_glb
from rigged_gaussians.reference import sh_basis

SH_C0 = 0.28209479177387814
EPS2D = 0.3
ALPHA_MIN = 1.0 / 255.0


@dataclass(frozen=True)
class Rules:
    """One rule set (see the module docstring); each field switches one difference."""

    cut_2sigma: bool
    alpha_scale: bool
    bytes8: bool
    clamp_jacobian: bool
    alpha_limits: bool  # α ≤ 0.999, α ≥ 1/255 kept, stop before T ≤ 1e-4
    depth_bins: bool = False  # three's 4096-bin counting sort (see composite)

    @staticmethod
    def ours() -> Rules:
        return Rules(
            cut_2sigma=False, alpha_scale=False, bytes8=False, clamp_jacobian=True, alpha_limits=True
        )

    @staticmethod
    def three() -> Rules:
        return Rules(cut_2sigma=True, alpha_scale=True, bytes8=True, clamp_jacobian=False, alpha_limits=False)

    def but(self, **changes: bool) -> Rules:
        return replace(self, **changes)


@dataclass(frozen=True)
class Splats:
    """The splats of a GLB: ``means [N, 3]``, ``rotmats [N, 3, 3]``, ``scales [N, 3]`` (linear),
    ``opacities [N]``, ``sh0 [N, 3]``, ``sh_rest [N, K - 1, 3]`` (the bands above 0, ``K = (d + 1)²``;
    ``K - 1 = 0`` at degree 0), float64."""

    means: torch.Tensor
    rotmats: torch.Tensor
    scales: torch.Tensor
    opacities: torch.Tensor
    sh0: torch.Tensor
    sh_rest: torch.Tensor


def _rotmats(xyzw: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``[N, 3, 3]`` of glTF's xyzw quaternions ``[N, 4]`` (normalised here)."""
    x, y, z, w = (xyzw / xyzw.norm(dim=-1, keepdim=True)).unbind(-1)
    rows = [
        (1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)),
        (2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)),
        (2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)),
    ]
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


def read_splats(glb: Path) -> Splats:
    """The first KHR_gaussian_splatting primitive of ``glb``."""
    doc, binary = read_glb(glb.read_bytes())
    for mesh in doc["meshes"]:
        for prim in mesh["primitives"]:
            if "KHR_gaussian_splatting" not in prim.get("extensions", {}):
                continue
            a = {
                k: torch.as_tensor(read_accessor(doc, binary, i).astype(np.float64))
                for k, i in prim["attributes"].items()
            }
            ext = "KHR_gaussian_splatting:"
            rest = [a[f"{ext}SH_DEGREE_{d}_COEF_{c}"] for d in range(1, 4) for c in range(2 * d + 1)
                    if f"{ext}SH_DEGREE_{d}_COEF_{c}" in a]  # fmt: skip
            n = a["POSITION"].shape[0]
            return Splats(
                means=a["POSITION"],
                rotmats=_rotmats(a[ext + "ROTATION"]),
                scales=a[ext + "SCALE"],
                opacities=a[ext + "OPACITY"].reshape(-1),
                sh0=a[ext + "SH_DEGREE_0_COEF_0"],
                sh_rest=torch.stack(rest, 1) if rest else torch.zeros(n, 0, 3, dtype=torch.float64),
            )
    raise ValueError(f"{glb} holds no KHR_gaussian_splatting primitive; export it with --parts splats.")


def composite(
    s: Splats, viewmat: np.ndarray, K: np.ndarray, width: int, height: int, rules: Rules
) -> tuple[np.ndarray, np.ndarray]:
    """Render ``s`` seen by ``viewmat [4, 4]`` (world→camera, OpenCV) and ``K [3, 3]``.

    Returns ``rgb [H, W, 3]`` (over black, premultiplied) and ``alpha [H, W]``, float64.
    """
    vm = torch.as_tensor(viewmat, dtype=torch.float64)
    K = torch.as_tensor(K, dtype=torch.float64)
    Rc, tc = vm[:3, :3], vm[:3, 3]
    pc = s.means @ Rc.T + tc
    M = s.rotmats * s.scales[:, None, :]
    covc = Rc @ (M @ M.transpose(1, 2)) @ Rc.T
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    x, y, z = pc.unbind(-1)
    keep = z > 0.01
    if rules.clamp_jacobian:
        lim = 0.3 * 0.5 * width / fx, 0.3 * 0.5 * height / fy
        tx = z * torch.clamp(x / z, -(cx / fx + lim[0]), (width - cx) / fx + lim[0])
        ty = z * torch.clamp(y / z, -(cy / fy + lim[1]), (height - cy) / fy + lim[1])
    else:
        tx, ty = x, y
    zero = torch.zeros_like(z)
    J = torch.stack([fx / z, zero, -fx * tx / z**2, zero, fy / z, -fy * ty / z**2], -1).reshape(-1, 2, 3)
    cov = J @ covc @ J.transpose(1, 2)
    a0, b, c0 = cov[:, 0, 0], cov[:, 0, 1], cov[:, 1, 1]
    a, c = a0 + EPS2D, c0 + EPS2D
    det = a * c - b * b
    conic = torch.stack([c / det, -b / det, a / det], -1)
    mx, my = fx * x / z + cx, fy * y / z + cy
    op = s.opacities.clamp(0, 1)
    rgb = 0.5 + SH_C0 * s.sh0
    rest = s.sh_rest
    if rules.bytes8:  # Uint8ClampedArray: clamped, rounded half to even
        rgb = torch.round(rgb.clamp(0, 1) * 255) / 255
        op = torch.round(op * 255) / 255
        rest = (torch.round(rest * 128 + 128).clamp(0, 255) - 128) / 128
    if rest.shape[1]:
        degree = math.isqrt(rest.shape[1] + 1) - 1
        campos = -Rc.T @ tc
        d = s.means - campos
        ys = sh_basis(degree, d / d.norm(dim=-1, keepdim=True))[:, 1:]  # [N, K - 1]
        rgb = rgb + (ys[..., None] * rest).sum(1)
    rgb = rgb.clamp(0, 1) if rules.bytes8 else rgb.clamp_min(0)
    if rules.alpha_scale:
        op = op * torch.sqrt(torch.clamp((a0 * c0 - b * b) / det.clamp_min(1e-12), min=0))
    # the pixel boxes: the ellipse's extent at the kernel's cut
    ext = 2.0 if rules.cut_2sigma else 3.34
    rad = torch.ceil(ext * torch.sqrt(torch.maximum(a, c)))
    keep &= (det > 0) & (mx + rad > 0) & (mx - rad < width) & (my + rad > 0) & (my - rad < height)
    if keep.any() and rad[keep].max() > 128:
        raise ValueError(
            f"a splat reaches {int(rad[keep].max())} px; the model is for small test scenes (128 px at most)."
        )
    idx = torch.nonzero(keep).reshape(-1)
    pix, ids, alphas = [], [], []
    for r in torch.unique(rad[idx]).tolist():
        sel = idx[rad[idx] == r]
        off = torch.arange(-int(r), int(r) + 1, dtype=torch.float64)
        ox, oy = torch.meshgrid(off, off, indexing="xy")
        px = torch.floor(mx[sel])[:, None] + ox.reshape(1, -1)  # [n, k] pixel columns
        py = torch.floor(my[sel])[:, None] + oy.reshape(1, -1)
        dx, dy = px + 0.5 - mx[sel, None], py + 0.5 - my[sel, None]
        cs = conic[sel]
        sig = 0.5 * (cs[:, 0:1] * dx * dx + cs[:, 2:3] * dy * dy) + cs[:, 1:2] * dx * dy
        al = op[sel, None] * torch.exp(-sig)
        ok = (px >= 0) & (px < width) & (py >= 0) & (py < height) & (sig >= 0)
        if rules.cut_2sigma:
            ok &= 2 * sig <= 4
        if rules.alpha_limits:
            al = al.clamp(max=0.999)
            ok &= al >= ALPHA_MIN
        pix.append((py * width + px)[ok].long())
        ids.append(sel[:, None].expand_as(px)[ok])
        alphas.append(al[ok])
    pix_t, ids_t, al_t = torch.cat(pix), torch.cat(ids), torch.cat(alphas)
    rank = torch.empty_like(z, dtype=torch.long)
    rank[_front_to_back(s, z, Rc, tc, rules.depth_bins)] = torch.arange(z.numel())
    order = torch.argsort(pix_t * z.numel() + rank[ids_t])
    pix_t, ids_t, al_t = pix_t[order], ids_t[order], al_t[order]
    # front to back per pixel: T before each splat from a segmented cumulative sum of log(1 - α)
    log1m = torch.log1p(-al_t.clamp(max=1 - 1e-12))
    csum = torch.cumsum(log1m, 0)
    start = torch.ones_like(pix_t, dtype=torch.bool)
    start[1:] = pix_t[1:] != pix_t[:-1]
    seg = torch.cumsum(start.long(), 0) - 1
    base = (csum - log1m)[start][seg]  # the cumulative sum before each pixel's first splat
    t_after = torch.exp(csum - base)
    t_before = torch.exp(csum - log1m - base)
    w = al_t * t_before
    if rules.alpha_limits:
        w = torch.where(t_after > 1e-4, w, torch.zeros_like(w))
    img = torch.zeros(height * width, 3, dtype=torch.float64)
    img.index_add_(0, pix_t, w[:, None] * rgb[ids_t])
    alpha = torch.zeros(height * width, dtype=torch.float64).index_add_(0, pix_t, w)
    return img.reshape(height, width, 3).numpy(), alpha.reshape(height, width).numpy()


def _front_to_back(
    s: Splats, z: torch.Tensor, Rc: torch.Tensor, tc: torch.Tensor, bins: bool
) -> torch.Tensor:
    """Splat indices ``[N]`` nearest first, by camera depth ``z [N]`` (camera ``Rc [3, 3]``,
    ``tc [3]``); with ``bins``, in the order three's CPU counting sort (WebGL2 backend) draws them
    reversed: 4096 bins of depth between the near and far ends of the splats' bounding sphere
    (each splat's box grown by 2√max(Σ_ii)), far bins drawn first and, within a bin, in index
    order, so a later index lies in front. (Its WebGPU sort fills the bins in parallel.)"""
    if not bins:
        return torch.argsort(z, stable=True)
    M = s.rotmats * s.scales[:, None, :]
    diag = (M * M).sum(-1)  # [N, 3] the covariance's diagonal
    r = 2.0 * diag.max(-1).values.sqrt()
    lo, hi = (s.means - r[:, None]).min(0).values, (s.means + r[:, None]).max(0).values
    centre = (lo + hi) / 2
    radius = ((s.means - centre).norm(dim=-1) + r).max()
    zc = (Rc @ centre + tc)[2]  # the sphere centre's camera depth
    near = torch.clamp(zc - radius, min=0.01)
    far = torch.maximum(near + 1e-4, zc + radius)
    scale = 4095 / torch.clamp(far - near, min=1e-4)
    b = torch.clamp(torch.floor((z - near) * scale), 0, 4095).long()
    idx = torch.arange(z.numel())
    return torch.argsort(b * z.numel() + (z.numel() - 1 - idx))


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB of images in 0..1 (``[H, W, 3]``), over ``mask [H, W]`` when given."""
    d = (np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2
    mse = float(d[mask].mean() if mask is not None else d.mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)
