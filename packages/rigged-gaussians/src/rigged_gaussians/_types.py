"""Typed inputs and outputs of the rigged_gaussians operations and pipeline stages.

The output dataclasses unpack like a tuple of their tensor fields (``cent, rot, sa =
triangle_frames(...)``). :class:`Gaussians`, :class:`Projected` and :class:`Intersections` are the
contracts between the render stages, the same for the native backends (``_glue.py``) and the
PyTorch reference (``reference.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

from torch import Tensor

__all__ = ["Deformed", "Gaussians", "Intersections", "Projected", "RasterMeta", "TriangleFrames"]


class _Unpackable:
    """Mixin: iterate over (and index) the dataclass fields in declaration order."""

    def __iter__(self) -> Iterator[Any]:
        return iter(getattr(self, f.name) for f in fields(self))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(fields(self))  # type: ignore[arg-type]


@dataclass
class TriangleFrames(_Unpackable):
    """Per-triangle frames of ``B`` poses of a mesh.

    Attributes:
        centroids: ``[B,F,3]`` triangle centroids ``T = (v0+v1+v2)/3``.
        rotations: ``[B,F,3,3]`` rotations whose columns are the normalised first edge ``t``,
            the unit normal ``n`` and ``b = t x n``.
        sqrt_areas: ``[B,F]`` ``sqrt(max(area, 1e-12))``.
    """

    centroids: Tensor
    rotations: Tensor
    sqrt_areas: Tensor


@dataclass
class Deformed(_Unpackable):
    """World-space Gaussians of ``B`` poses.

    Attributes:
        means: ``[B,N,3]`` world means ``sqrt(S) R mu + T``.
        quats: ``[B,N,4]`` wxyz quaternions ``quat(R) (x) q`` (not renormalised).
        scales: ``[B,N,3]`` linear world scales ``sqrt(S) exp(log_scale)``.
    """

    means: Tensor
    quats: Tensor
    scales: Tensor


@dataclass
class Gaussians:
    """The Gaussians of a render, input of the ``projection`` stage.

    World Gaussians (``frames is None``): ``means [N,3]|[C,N,3]``, ``quats [N,4]|[C,N,4]`` (wxyz,
    normalised by the projection), linear ``scales [N,3]|[C,N,3]``. Rigged Gaussians: LOCAL
    ``means [N,3]``, ``quats [N,4]``, ``scales`` = log-scales ``[N,3]``, bound to triangle
    ``face_ids [N]`` of ``frames`` (``B`` poses; camera ``c`` sees pose ``c // (C // B)``).
    ``opacities [N]|[C,N]`` activated; ``colors [N,D]|[C,N,D]`` (``D <= 3``) or SH
    ``[N,K,3]|[C,N,K,3]`` when the settings' ``sh_degree`` is set.
    """

    means: Tensor
    quats: Tensor
    scales: Tensor
    opacities: Tensor
    colors: Tensor
    frames: TriangleFrames | None = None
    face_ids: Tensor | None = None


@dataclass
class Projected(_Unpackable):
    """Output of the ``projection`` stage for ``C`` cameras and ``N`` Gaussians.

    Attributes:
        radii: ``[C,N,2]`` int32 per-axis screen radii; ``0`` for culled Gaussians.
        means2d: ``[C,N,2]`` pixel means (0 for culled Gaussians).
        depths: ``[C,N]`` camera-space z of the means.
        conics: ``[C,N,3]`` upper triangle ``(a, b, c)`` of the inverse 2D covariance.
        colors: ``[C,N,D]`` colours: SH evaluated (``D = 3``), or the input colours.
    """

    radii: Tensor
    means2d: Tensor
    depths: Tensor
    conics: Tensor
    colors: Tensor


@dataclass
class Intersections(_Unpackable):
    """Output of the ``isect_tiles`` stage: the (tile, Gaussian) pairs to blend.

    Attributes:
        offsets: ``[C,tile_h,tile_w]`` int32, the first entry of each tile in ``flatten_ids``
            (a tile's entries end where the next tile's begin, the last at ``M``).
        flatten_ids: ``[M]`` int32 ``c * N + n``, sorted by camera, tile, then depth (ties by
            index).
    """

    offsets: Tensor
    flatten_ids: Tensor

    @property
    def n_isects(self) -> int:
        """``M``, the number of intersections."""
        return int(self.flatten_ids.numel())


@dataclass
class RasterMeta:
    """Side outputs of a render (gsplat's ``meta`` dictionary, typed).

    Attributes:
        depth: ``[C,H,W,1]`` expected depth ``sum(w z) / alpha`` (``[B,C,H,W,1]`` from
            ``render_rigged``) when the render was asked for it (``depth=True``), else ``None``.
        radii: ``[C,N,2]`` int32 per-axis screen radii in pixels; ``0`` for culled Gaussians.
        means2d: ``[C,N,2]`` projected means in pixels; a non-leaf tensor of the graph, so
            ``meta.means2d.retain_grad()`` before ``backward`` gives the 2D-mean gradient used by
            densification. Zero for culled Gaussians.
        depths: ``[C,N]`` camera-space z of each Gaussian mean.
        visible: ``[C,N]`` bool, ``(radii > 0).all(-1)``.
        width: image width in pixels.
        height: image height in pixels.

    ``render_rigged`` flattens the per-camera entries over ``B*C`` (camera ``b*C + c``).
    ``meta["name"]`` reads a field, as with gsplat's dictionary.
    """

    depth: Tensor | None
    radii: Tensor
    means2d: Tensor
    depths: Tensor
    visible: Tensor
    width: int
    height: int

    def __getitem__(self, key: str) -> Any:
        if key not in {f.name for f in fields(self)}:
            raise KeyError(f"RasterMeta has no field {key!r}")
        return getattr(self, key)
