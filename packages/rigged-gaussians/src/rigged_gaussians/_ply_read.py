"""Reading a 3D Gaussian PLY: :func:`load_ply` (split out of :mod:`rigged_gaussians.ply`, which
re-exports it; the format is in that module's docstring)."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rigged_gaussians._ply_format import (
    _HASH_TAG,
    _TYPES,
    PlyError,
    PlyGaussians,
    PlyIntegrityError,
    _digest,
)

__all__ = ["load_ply"]


# ----------------------------------------------------------------------------- reading
def _read_header(path: Path, raw: bytes) -> tuple[list[str], int]:
    if not raw.startswith(b"ply\n") and not raw.startswith(b"ply\r\n"):
        raise PlyError(f"'{path}' is not a PLY file (it does not start with 'ply')")
    # a line that is exactly "end_header" (a comment line cannot be: it starts with "comment ")
    mt = re.search(rb"\nend_header\r?\n", raw)
    if mt is None:
        raise PlyError(f"'{path}': PLY header has no 'end_header' line (truncated or not a PLY)")
    end, nl = mt.start() + 1, mt.end() - 1
    try:
        text = raw[:end].decode("ascii")
    except UnicodeDecodeError as err:
        raise PlyError(f"'{path}': PLY header is not ASCII") from err
    return [ln.rstrip("\r") for ln in text.split("\n")], nl + 1


def load_ply(path: str | os.PathLike[str], verify: bool = True) -> PlyGaussians:
    """Read a 3DGS PLY (ours, with rigging extras and metadata, or a plain one).

    Args:
        path: the file.
        verify: check the ``rg_sha256`` checksum when the file has one (``False``: read a damaged
            file anyway, for forensics; every other check still applies).

    Raises:
        PlyIntegrityError: the checksum does not match (the file was corrupted after writing).
        PlyError: the file is not a binary little-endian PLY of Gaussians, misses a required
            property, is shorter or longer than its header says, holds non-finite values or has
            malformed metadata; the message names the file and the field.
        FileNotFoundError: ``path`` does not exist.
    """
    path = Path(path)
    raw = path.read_bytes()
    lines, body_start = _read_header(path, raw)
    fmt = None
    elements: list[tuple[str, int, list[tuple[str, str]]]] = []
    meta_chunks: list[str] = []
    layouts: dict[str, tuple[str, int]] = {}
    checksum: str | None = None
    hashed: list[str] = []  # the header lines the checksum covers (all but its own)
    for ln in [*lines[:-1], "end_header"]:  # ``lines`` ends with the empty text after the last \n
        if ln.startswith(f"comment {_HASH_TAG} ") and checksum is None:
            checksum = ln.split(" ", 2)[2].strip()
        else:
            hashed.append(ln)
    for ln in lines[1:]:
        if not ln.strip():
            continue
        word, _, rest = ln.partition(" ")
        if word == "format":
            fmt = rest.strip()
        elif word == "comment":
            if rest.startswith("rg_metadata "):
                meta_chunks.append(rest[len("rg_metadata ") :])
            elif rest.startswith("rg_extra "):
                parts = rest.split()
                if len(parts) == 4 and parts[3].isdigit():
                    layouts[parts[1]] = (parts[2], int(parts[3]))
        elif word == "element":
            parts = rest.split()
            if len(parts) != 2 or not parts[1].isdigit():
                raise PlyError(f"'{path}': malformed header line {ln!r}")
            elements.append((parts[0], int(parts[1]), []))
        elif word == "property":
            parts = rest.split()
            if not elements:
                raise PlyError(f"'{path}': property before any element: {ln!r}")
            if parts and parts[0] == "list":
                elements[-1][2].append(("list", parts[-1]))
                continue
            if len(parts) != 2 or parts[0] not in _TYPES:
                raise PlyError(f"'{path}': unsupported property line {ln!r}")
            elements[-1][2].append((_TYPES[parts[0]], parts[1]))
        elif word in ("obj_info", "end_header"):
            continue
        else:
            raise PlyError(f"'{path}': unexpected header line {ln!r}")
    if fmt is None:
        raise PlyError(f"'{path}': PLY header has no 'format' line")
    if not fmt.startswith("binary_little_endian"):
        raise PlyError(
            f"'{path}': PLY format '{fmt}' is not supported; Gaussian PLYs are binary_little_endian "
            "(convert the file, e.g. re-save it with a 3DGS tool)"
        )
    if not elements or elements[0][0] != "vertex":
        raise PlyError(f"'{path}': the first PLY element must be 'vertex' (the Gaussians)")
    _, N, props = elements[0]
    if any(t == "list" for t, _ in props):
        raise PlyError(f"'{path}': list properties in the vertex element are not supported")
    names = {n for _, n in props}
    if len(names) != len(props):
        dup = sorted({n for _, n in props if sum(m == n for _, m in props) > 1})
        raise PlyError(f"'{path}': vertex properties {dup} occur more than once")
    dtype = np.dtype([(n, "<" + t) for t, n in props])
    required = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"]
    required += [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)]
    missing = [n for n in required if n not in names]
    if missing:
        raise PlyError(f"'{path}': not a 3DGS PLY, missing vertex properties {missing}")
    need = N * dtype.itemsize
    have = len(raw) - body_start
    if have < need:
        raise PlyError(
            f"'{path}': truncated, {N} Gaussians need {need} bytes of vertex data but the file has {have}"
        )
    if have > need and len(elements) == 1:
        raise PlyError(
            f"'{path}': {have - need} bytes of trailing data after the {N} Gaussians the header declares "
            "(the vertex count was edited or the file was appended to)"
        )
    integrity: Literal["verified", "absent", "skipped"] = "absent"
    if checksum is not None:
        integrity = "skipped"
        if verify:
            if _digest(hashed, memoryview(raw)[body_start : body_start + need]) != checksum:
                raise PlyIntegrityError(
                    f"'{path}' is corrupted: its {_HASH_TAG} checksum does not match its contents"
                )
            integrity = "verified"
    v = np.frombuffer(raw, dtype=dtype, count=N, offset=body_start)
    bad = [n for n in v.dtype.names or () if v.dtype[n].kind == "f" and not np.isfinite(v[n]).all()]
    if bad:
        count = int(sum((~np.isfinite(v[n])).sum() for n in bad))
        raise PlyError(
            f"'{path}': {count} non-finite value(s) (NaN/inf) in vertex properties {bad[:6]}; the file is "
            "corrupted"
        )

    def f(n: str) -> np.ndarray:
        return v[n].astype(np.float32)

    n_rest = sum(1 for n in names if re.fullmatch(r"f_rest_\d+", n))
    if n_rest % 3 or int(round(math.sqrt(n_rest // 3 + 1))) ** 2 != n_rest // 3 + 1:
        raise PlyError(f"'{path}': {n_rest} f_rest properties is not 3 * (K - 1) for K in 1, 4, 9, 16")
    missing_rest = [f"f_rest_{i}" for i in range(n_rest) if f"f_rest_{i}" not in names]
    if missing_rest:
        raise PlyError(f"'{path}': missing vertex properties {missing_rest}")
    K = n_rest // 3 + 1
    sh = np.empty((N, K, 3), dtype=np.float32)
    sh[:, 0, :] = np.stack([f(f"f_dc_{i}") for i in range(3)], -1)
    if K > 1:
        rest = np.stack([f(f"f_rest_{i}") for i in range(n_rest)], -1)
        sh[:, 1:, :] = rest.reshape(N, 3, K - 1).transpose(0, 2, 1)
    means = np.stack([f("x"), f("y"), f("z")], -1)
    quats = np.stack([f(f"rot_{i}") for i in range(4)], -1)
    with np.errstate(over="ignore"):
        scales = np.exp(np.stack([f(f"scale_{i}") for i in range(3)], -1))
        opacities = (1.0 / (1.0 + np.exp(-f("opacity").astype(np.float64)))).astype(np.float32)

    extra: dict[str, np.ndarray] = {}
    for name, (kind, k) in layouts.items():
        cols = [f"rg_{name}"] if k == 0 else [f"rg_{name}_{i}" for i in range(k)]
        absent = [c for c in cols if c not in names]
        if absent:
            raise PlyError(f"'{path}': extra '{name}' is declared but properties {absent} are missing")
        wrong = [c for c in cols if (dtype[c].kind == "f") != (kind == "float")]
        if wrong:
            raise PlyError(
                f"'{path}': extra '{name}' is declared {kind} but properties {wrong} are "
                f"{dtype[wrong[0]].name}; the header was edited or the file is corrupted"
            )
        arrs = [v[c].astype(np.int32 if kind == "int" else np.float32) for c in cols]
        extra[name] = arrs[0] if k == 0 else np.stack(arrs, -1)
    # rg_ properties without a layout line (e.g. written by another tool): group rg_<name>_<i>
    seen = {
        c for name, (_, k) in layouts.items() for c in ([f"rg_{name}"] + [f"rg_{name}_{i}" for i in range(k)])
    }
    groups: dict[str, list[tuple[int, str]]] = {}
    for _, n in props:
        if not n.startswith("rg_") or n in seen:
            continue
        mt = re.fullmatch(r"rg_(.+)_(\d+)", n)
        if mt:
            groups.setdefault(mt.group(1), []).append((int(mt.group(2)), n))
        else:
            extra[n[3:]] = np.array(v[n])
    for name, items in groups.items():
        items.sort()
        extra[name] = np.stack([np.array(v[c]) for _, c in items], -1)

    metadata: dict[str, Any] = {}
    if meta_chunks:
        try:
            metadata = json.loads("".join(meta_chunks))
        except json.JSONDecodeError as err:
            raise PlyError(f"'{path}': malformed rg_metadata JSON in the header ({err})") from err
        if not isinstance(metadata, dict):
            raise PlyError(f"'{path}': rg_metadata is not a JSON object")
    types = {n: t for t, n in props}
    return PlyGaussians(means, quats, scales, opacities, sh, extra, metadata, integrity, types)
