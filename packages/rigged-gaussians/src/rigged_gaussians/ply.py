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
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = ["PlyError", "PlyIntegrityError", "PlyGaussians", "load_ply", "save_ply"]

SH_C0 = 0.28209479177387814
_CHUNK = 1000  # characters of JSON per header comment line
_OPACITY_EPS = 1e-7
_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip


_HASH_TAG = "rg_sha256"


class PlyError(ValueError):
    """A PLY file that cannot be read as 3D Gaussians (the message names the file)."""


class PlyIntegrityError(PlyError):
    """The file's ``rg_sha256`` checksum does not match its contents: it was corrupted after writing."""


def _digest(header_lines: list[str], body: bytes | memoryview) -> str:
    """SHA-256 of the header lines (without the checksum line), each + ``\n``, then the body."""
    h = hashlib.sha256()
    h.update("".join(ln + "\n" for ln in header_lines).encode("ascii"))
    h.update(body)
    return h.hexdigest()


@dataclass
class PlyGaussians:
    """Gaussians read from a PLY (numpy arrays, world space as stored).

    Attributes:
        means: ``[N,3]`` float32.
        quats: ``[N,4]`` wxyz, as stored (3DGS files are not always normalised).
        scales: ``[N,3]`` linear (``exp`` of the stored log-scales).
        opacities: ``[N]`` activated (``sigmoid`` of the stored logits).
        sh: ``[N,K,3]`` SH coefficients (``K = 1`` for DC only).
        extra: rigging extras by name (without the ``rg_`` prefix): ``[N]`` or ``[N,k]`` arrays.
        metadata: the JSON metadata (``{}`` when the file has none).
        integrity: ``"verified"`` (the checksum matched), ``"absent"`` (the file has none: older
            or another tool's) or ``"skipped"`` (``load_ply(..., verify=False)``).
        property_types: the vertex properties as the header declares them, name -> numpy type
            code (``"f4"``, ``"i4"``, ...), so a reader can insist on the types it wrote.
    """

    means: np.ndarray
    quats: np.ndarray
    scales: np.ndarray
    opacities: np.ndarray
    sh: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    integrity: Literal["verified", "absent", "skipped"] = "absent"
    property_types: dict[str, str] = field(default_factory=dict)

    @property
    def num_gaussians(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        return int(round(math.sqrt(self.sh.shape[1]))) - 1


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
