"""The avatar's Gaussians as a KHR_gaussian_splatting point primitive.

Layout (the extension's attribute names, as PlayCanvas's ``splat-transform`` reads and writes
them): ``POSITION`` (float VEC3, with min/max), ``COLOR_0`` (normalised unsigned-byte RGBA: the
DC colour ``0.5 + C0·f_dc`` clamped, and the opacity: the fallback for viewers that draw points),
``KHR_gaussian_splatting:ROTATION`` (float VEC4, xyzw unit quaternion),
``KHR_gaussian_splatting:SCALE`` (float VEC3, linear: ``exp`` of the log-scales),
``KHR_gaussian_splatting:OPACITY`` (float SCALAR, post-sigmoid), and one
``KHR_gaussian_splatting:SH_DEGREE_l_COEF_c`` (float VEC3, raw RGB coefficients) for each SH
coefficient up to the avatar's degree (``l = 0..d``, ``c = 0..2l``; our ``sh[:, l² + c]``).

Coordinates: the avatar's world space at the neutral pose is FLAME's, +Y up, +Z forward (the face
looks along +Z), metres; that is glTF's convention, so positions and rotations are written as is.
"""

from __future__ import annotations

import numpy as np
import torch

from ...avatar import SH_C0, Avatar
from .builder import GltfBuilder

__all__ = ["EXTENSION", "splat_arrays", "add_splats"]

EXTENSION = "KHR_gaussian_splatting"
_PROPS = {"kernel": "ellipse", "colorSpace": "srgb_rec709_display", "projection": "perspective",
          "sortingMethod": "cameraDistance"}  # fmt: skip


def splat_arrays(avatar: Avatar) -> dict[str, np.ndarray]:
    """The primitive's attributes at the neutral pose, by glTF attribute name (float32/uint8)."""
    with torch.no_grad():
        g = avatar.world_gaussians()
    means = g["means"].detach().cpu().numpy().astype(np.float32)
    wxyz = g["quats"].detach().cpu().numpy().astype(np.float32)
    scales = g["scales"].detach().cpu().numpy().astype(np.float32)
    opac = g["opacities"].detach().cpu().numpy().astype(np.float32)
    sh = g["sh"].detach().cpu().numpy().astype(np.float32)  # [N, K, 3]
    rgb = np.clip(0.5 + SH_C0 * sh[:, 0], 0.0, 1.0)
    color = np.round(np.c_[rgb, np.clip(opac, 0, 1)] * 255).astype(np.uint8)
    out = {
        "POSITION": means,
        "COLOR_0": color,
        f"{EXTENSION}:ROTATION": np.ascontiguousarray(wxyz[:, [1, 2, 3, 0]]),
        f"{EXTENSION}:SCALE": scales,
        f"{EXTENSION}:OPACITY": opac,
    }
    degree = int(round(np.sqrt(sh.shape[1]))) - 1
    for lvl in range(degree + 1):
        for c in range(2 * lvl + 1):
            out[f"{EXTENSION}:SH_DEGREE_{lvl}_COEF_{c}"] = np.ascontiguousarray(sh[:, lvl * lvl + c])
    return out


def add_splats(b: GltfBuilder, avatar: Avatar) -> int:
    """Add the splats as a mesh with one POINTS primitive and a node; returns the node index."""
    attrs = {}
    for name, arr in splat_arrays(avatar).items():
        attrs[name] = b.add_accessor(arr, normalized=name == "COLOR_0", min_max=name == "POSITION")
    b.use_extension(EXTENSION)
    prim = {"attributes": attrs, "mode": 0, "extensions": {EXTENSION: dict(_PROPS)}}
    mesh = b.add("meshes", {"name": "gaussian_splats", "primitives": [prim]})
    return b.add("nodes", {"name": "gaussian_splats", "mesh": mesh})
