"""Read and write Gaussians as a standard 3DGS PLY, plus rigging extras and JSON metadata.

Layout (``binary_little_endian 1.0``, one ``vertex`` element, every property float32 unless
noted), as written by the 3DGS reference code so common splat viewers open the file::

    x y z  nx ny nz  f_dc_0..2  f_rest_0..(3(K-1)-1)  opacity  scale_0..2  rot_0..3  [extras]

- ``opacity`` is the logit of the activated opacity, ``scale_*`` the log of the linear scales,
  ``rot_*`` the quaternion in wxyz order, normals are zero.
- ``f_dc_*`` are the SH DC coefficients and ``f_rest_*`` the higher ones channel-major (all of
  red's ``K-1`` coefficients, then green's, then blue's), as 3DGS stores ``features_rest``.
  Plain RGB colours in 0..1 are written as DC only: ``f_dc = (c - 0.5) / 0.28209479``.
- Extras: ``extra={"face_id": int array [N], "local_means": float array [N,3], ...}`` become
  properties ``rg_face_id`` (int32) and ``rg_local_means_0..2`` (float32); a header line
  ``comment rg_extra <name> <int|float> <k>`` (``k = 0`` for ``[N]``) records each layout.
- Metadata: a JSON object (ASCII, escaped) in ``comment rg_metadata <chunk>`` lines of at most
  ``_CHUNK`` characters each, concatenated on reading.
- Integrity: ``comment rg_sha256 <hex>`` is the SHA-256 of every other header line (each followed
  by ``\n``, ``end_header`` included) and then the vertex data, so a flipped bit in the body, an
  edited count, a changed extra or metadata chunk all show. Splat viewers ignore comments.

Writing is atomic (a temporary file in the same directory, then ``os.replace``). Reading checks
the file and raises :class:`PlyError` (a ``ValueError``) naming the file and the problem: not a
PLY, ASCII or big-endian format, missing properties, a body shorter or longer than the header
says, non-finite values, malformed metadata, and (:class:`PlyIntegrityError`) a checksum that
does not match. Files without a checksum (older ones, other tools') still load;
:attr:`PlyGaussians.integrity` says which case it was.

The module is split: the shared parts (errors, :class:`PlyGaussians`, the checksum) in
:mod:`rigged_gaussians._ply_format`, reading in :mod:`rigged_gaussians._ply_read`; this module
writes and exports all of it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from rigged_gaussians._ply_format import (
    _CHUNK,
    _HASH_TAG,
    _OPACITY_EPS,
    SH_C0,
    PlyError,
    PlyGaussians,
    PlyIntegrityError,
    _digest,
)
from rigged_gaussians._ply_read import load_ply

__all__ = ["PlyError", "PlyIntegrityError", "PlyGaussians", "load_ply", "save_ply"]


# ----------------------------------------------------------------------------- writing
def _array(name: str, x: Any) -> np.ndarray:
    """``x`` (numpy array, torch tensor or sequence) as a numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _fmt(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _float_array(name: str, x: Any, shape: tuple[int | None, ...]) -> np.ndarray:
    a = _array(name, x)
    if a.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, a.shape, strict=True)):
        want = "[" + ",".join("N" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{name}: expected shape {want}, got {_fmt(a.shape)}")
    if not np.issubdtype(a.dtype, np.floating) and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name}: expected a numeric array, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: {int((~np.isfinite(a)).sum())} non-finite value(s); a PLY must be finite")
    return a


def save_ply(
    path: str | os.PathLike[str],
    means: Any,
    quats: Any,
    scales: Any,
    opacities: Any,
    colors: Any,
    extra: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write Gaussians as a 3DGS PLY with rigging extras and metadata (atomically).

    Args:
        path: the file to write.
        means: ``[N,3]`` world means.
        quats: ``[N,4]`` wxyz quaternions.
        scales: ``[N,3]`` linear scales (``> 0``; stored as logs).
        opacities: ``[N]`` activated opacities in ``[0, 1]`` (stored as logits, clipped to
            ``[1e-7, 1 - 1e-7]``).
        colors: ``[N,3]`` RGB in 0..1 (stored as DC) or SH coefficients ``[N,K,3]``,
            ``K`` in 1, 4, 9, 16.
        extra: name -> ``[N]`` or ``[N,k]`` int or float arrays (``rg_<name>`` properties).
        metadata: a JSON-serialisable dict, stored in the header.

    Returns:
        ``Path(path)``.
    """
    path = Path(path)
    m = _float_array("means", means, (None, 3))
    N = m.shape[0]
    q = _float_array("quats", quats, (N, 4))
    s = _float_array("scales", scales, (N, 3))
    if (s <= 0).any():
        raise ValueError(f"scales: expected linear scales > 0, got minimum {s.min()} (pass exp(log_scales))")
    o = _float_array("opacities", opacities, (N,))
    if (o < 0).any() or (o > 1).any():
        raise ValueError(
            f"opacities: expected activated opacities in [0, 1], got range [{o.min()}, {o.max()}]"
        )
    c = _array("colors", colors)
    if c.ndim == 2:
        c = _float_array("colors", c, (N, 3))
        sh = ((c - 0.5) / SH_C0)[:, None, :]
    else:
        sh = _float_array("colors", c, (N, None, 3))
    K = sh.shape[1]
    if K not in (1, 4, 9, 16):
        raise ValueError(f"colors: expected 1, 4, 9 or 16 SH coefficients [N,K,3], got K={K}")

    cols: list[tuple[str, str, np.ndarray]] = []  # (name, ply type, values [N])
    for i, n in enumerate("xyz"):
        cols.append((n, "float", m[:, i]))
    for n in ("nx", "ny", "nz"):
        cols.append((n, "float", np.zeros(N)))
    for i in range(3):
        cols.append((f"f_dc_{i}", "float", sh[:, 0, i]))
    rest = sh[:, 1:, :].transpose(0, 2, 1).reshape(N, 3 * (K - 1))  # channel-major
    for i in range(rest.shape[1]):
        cols.append((f"f_rest_{i}", "float", rest[:, i]))
    oc = np.clip(o, _OPACITY_EPS, 1 - _OPACITY_EPS)
    cols.append(("opacity", "float", np.log(oc) - np.log1p(-oc)))
    for i in range(3):
        cols.append((f"scale_{i}", "float", np.log(s[:, i])))
    for i in range(4):
        cols.append((f"rot_{i}", "float", q[:, i]))

    comments: list[str] = []
    for name, value in (extra or {}).items():
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
            raise ValueError(f"extra: name {name!r} must be letters, digits and '_' (starting with a letter)")
        a = _array(f"extra['{name}']", value)
        if a.shape[:1] != (N,) or a.ndim not in (1, 2):
            raise ValueError(f"extra['{name}']: expected shape [N] or [N,k] with N={N}, got {_fmt(a.shape)}")
        if np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_:
            kind = "int"
            if a.size and (a.min() < -(2**31) or a.max() > 2**31 - 1):
                raise ValueError(f"extra['{name}']: values exceed the int32 range of a PLY int property")
        elif np.issubdtype(a.dtype, np.floating):
            kind = "float"
            if not np.isfinite(a).all():
                raise ValueError(f"extra['{name}']: non-finite values; a PLY must be finite")
        else:
            raise ValueError(f"extra['{name}']: expected an int or float array, got dtype {a.dtype}")
        k = 0 if a.ndim == 1 else a.shape[1]
        comments.append(f"rg_extra {name} {kind} {k}")
        if k == 0:
            cols.append((f"rg_{name}", kind, a))
        else:
            for i in range(k):
                cols.append((f"rg_{name}_{i}", kind, a[:, i]))

    if metadata is not None:
        if not isinstance(metadata, dict):
            raise ValueError(f"metadata: expected a dict, got {type(metadata).__name__}")
        try:
            text = json.dumps(metadata, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ValueError(f"metadata: not JSON-serialisable ({err})") from err
        for i in range(0, len(text), _CHUNK):
            comments.append(f"rg_metadata {text[i : i + _CHUNK]}")

    names = [n for n, _, _ in cols]
    if len(set(names)) != len(names):
        raise ValueError("extra: a name collides with another property; rename it")
    dtype = np.dtype([(n, "<i4" if t == "int" else "<f4") for n, t, _ in cols])
    body = np.empty(N, dtype=dtype)
    for n, _, v in cols:
        body[n] = v
    header = ["ply", "format binary_little_endian 1.0", "comment rg_format rigged_gaussians 1"]
    header += [f"comment {c}" for c in comments]
    header.append(f"element vertex {N}")
    header += [f"property {t} {n}" for n, t, _ in cols]
    header.append("end_header")
    payload = body.tobytes()
    header.insert(3, f"comment {_HASH_TAG} {_digest(header, payload)}")
    data = ("\n".join(header) + "\n").encode("ascii") + payload

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
