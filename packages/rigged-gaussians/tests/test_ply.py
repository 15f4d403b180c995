"""PLY I/O: 3DGS layout, round trips with rigging extras and metadata, foreign and broken files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from rigged_gaussians.ply import SH_C0, PlyError, PlyIntegrityError, load_ply, save_ply


def _gaussians(n: int = 50, K: int = 16, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return dict(
        means=rng.normal(size=(n, 3)).astype(np.float32),
        quats=rng.normal(size=(n, 4)).astype(np.float32),
        scales=rng.uniform(1e-4, 0.2, size=(n, 3)).astype(np.float32),
        opacities=rng.uniform(0.0, 1.0, size=n).astype(np.float32),
        colors=rng.normal(size=(n, K, 3)).astype(np.float32),
    )


def _header(path: Path) -> list[str]:
    raw = path.read_bytes()
    return raw[: raw.index(b"\nend_header\n")].decode("ascii").splitlines()


def _write_raw_ply(
    path: Path, props: list[tuple[str, str]], rows: np.ndarray, fmt: str = "binary_little_endian"
) -> None:
    lines = ["ply", f"format {fmt} 1.0", f"element vertex {rows.shape[0]}"]
    lines += [f"property {t} {n}" for n, t in props]
    lines.append("end_header")
    dt = np.dtype([(n, "<f4") for n, _ in props])
    body = np.empty(rows.shape[0], dtype=dt)
    for i, (n, _) in enumerate(props):
        body[n] = rows[:, i]
    path.write_bytes(("\n".join(lines) + "\n").encode() + body.tobytes())


# ----------------------------------------------------------------------------- round trips
def test_round_trip_sh_extras_metadata(tmp_path: Path) -> None:
    g = _gaussians()
    n = 50
    extra = {
        "face_id": np.arange(n, dtype=np.int64) % 7,
        "local_means": np.random.default_rng(1).normal(size=(n, 3)).astype(np.float32),
        "local_opacity_logits": np.linspace(-3, 3, n).astype(np.float32),
        "flag_1": np.ones(n, dtype=np.float32),  # a name ending in _<digit> stays a scalar
    }
    meta = {
        "format": "headstudio-avatar",
        "shape": [0.1] * 300,
        "prompt": 'a "wizard"\nwith a beard, ünïcode, end_header',
        "nested": {"a": [1, 2, {"b": None}]},
        "long": "x" * 5000,
    }
    path = save_ply(tmp_path / "a.ply", **g, extra=extra, metadata=meta)
    ply = load_ply(path)
    np.testing.assert_array_equal(ply.means, g["means"])
    np.testing.assert_array_equal(ply.quats, g["quats"])
    np.testing.assert_allclose(ply.scales, g["scales"], rtol=1e-6)
    np.testing.assert_allclose(ply.opacities, np.clip(g["opacities"], 1e-7, 1 - 1e-7), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(ply.sh, g["colors"])
    assert ply.sh_degree == 3 and ply.num_gaussians == n
    assert set(ply.extra) == set(extra)
    assert ply.extra["face_id"].dtype == np.int32
    for k, v in extra.items():
        np.testing.assert_array_equal(ply.extra[k], v.astype(ply.extra[k].dtype))
    assert ply.metadata == meta
    # the metadata JSON spans several header lines, none longer than the chunk size + prefix
    lines = [ln for ln in _header(path) if ln.startswith("comment rg_metadata ")]
    assert len(lines) >= 6 and max(map(len, lines)) <= 1000 + len("comment rg_metadata ")


def test_rgb_colors_become_dc(tmp_path: Path) -> None:
    g = _gaussians(K=1)
    rgb = np.random.default_rng(2).uniform(size=(50, 3)).astype(np.float32)
    g["colors"] = rgb
    ply = load_ply(save_ply(tmp_path / "rgb.ply", **g))
    assert ply.sh.shape == (50, 1, 3) and ply.metadata == {} and ply.extra == {}
    np.testing.assert_allclose(ply.sh[:, 0] * SH_C0 + 0.5, rgb, atol=1e-6)


def test_torch_inputs_and_empty(tmp_path: Path) -> None:
    g = {k: torch.from_numpy(v) for k, v in _gaussians(n=5, K=4).items()}
    ply = load_ply(save_ply(tmp_path / "t.ply", **g, extra={"face_id": torch.arange(5)}))
    np.testing.assert_array_equal(ply.means, g["means"].numpy())
    g0 = {k: v[:0] for k, v in _gaussians(n=3, K=4).items()}
    ply = load_ply(save_ply(tmp_path / "e.ply", **g0, metadata={"a": 1}))
    assert ply.num_gaussians == 0 and ply.sh.shape == (0, 4, 3) and ply.metadata == {"a": 1}


# ----------------------------------------------------------------------------- layout
def test_standard_3dgs_layout(tmp_path: Path) -> None:
    g = _gaussians(n=4, K=4)
    sh = np.arange(4 * 4 * 3, dtype=np.float32).reshape(4, 4, 3)
    g["colors"] = sh
    path = save_ply(tmp_path / "l.ply", **g, extra={"face_id": np.arange(4)})
    hdr = _header(path)
    assert hdr[0] == "ply" and hdr[1] == "format binary_little_endian 1.0"
    props = [ln.split()[-1] for ln in hdr if ln.startswith("property")]
    expect = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    expect += [f"f_rest_{i}" for i in range(9)] + ["opacity", "scale_0", "scale_1", "scale_2"]
    expect += ["rot_0", "rot_1", "rot_2", "rot_3", "rg_face_id"]
    assert props == expect
    assert "property int rg_face_id" in hdr and "element vertex 4" in hdr
    raw = path.read_bytes()
    body = raw[raw.index(b"end_header\n") + len(b"end_header\n") :]
    dt = np.dtype([(p, "<i4" if p == "rg_face_id" else "<f4") for p in props])
    v = np.frombuffer(body, dtype=dt)
    assert len(body) == 4 * dt.itemsize
    np.testing.assert_array_equal(v["nx"], 0)
    # channel-major f_rest: red's 3 coefficients, then green's, then blue's
    np.testing.assert_array_equal(v["f_rest_0"], sh[:, 1, 0])
    np.testing.assert_array_equal(v["f_rest_2"], sh[:, 3, 0])
    np.testing.assert_array_equal(v["f_rest_3"], sh[:, 1, 1])
    np.testing.assert_array_equal(v["f_rest_8"], sh[:, 3, 2])
    np.testing.assert_allclose(v["scale_1"], np.log(g["scales"][:, 1]), rtol=1e-6)
    o = g["opacities"].astype(np.float64)
    np.testing.assert_allclose(v["opacity"], np.log(o / (1 - o)), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(v["rot_0"], g["quats"][:, 0])


def test_reads_plain_3dgs_ply(tmp_path: Path) -> None:
    n = 6
    rng = np.random.default_rng(3)
    props = [(p, "float") for p in ("x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2")]
    props += [(f"f_rest_{i}", "float") for i in range(45)]
    props += [
        (p, "float") for p in ("opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")
    ]
    rows = rng.normal(size=(n, len(props))).astype(np.float32)
    path = tmp_path / "plain.ply"
    _write_raw_ply(path, props, rows)
    ply = load_ply(path)
    col = {p: i for i, (p, _) in enumerate(props)}
    assert ply.sh.shape == (n, 16, 3) and ply.extra == {} and ply.metadata == {}
    np.testing.assert_array_equal(ply.sh[:, 5, 1], rows[:, col["f_rest_19"]])  # green, coefficient 5
    np.testing.assert_allclose(ply.scales[:, 2], np.exp(rows[:, col["scale_2"]]), rtol=1e-6)
    np.testing.assert_allclose(ply.opacities, 1 / (1 + np.exp(-rows[:, col["opacity"]])), rtol=1e-6)


# ----------------------------------------------------------------------------- broken / foreign
def test_truncated_file(tmp_path: Path) -> None:
    path = save_ply(tmp_path / "t.ply", **_gaussians(n=20))
    raw = path.read_bytes()
    path.write_bytes(raw[:-10])
    with pytest.raises(PlyError, match=r"t.ply'?: truncated, 20 Gaussians need \d+ bytes"):
        load_ply(path)
    path.write_bytes(raw[:40])
    with pytest.raises(PlyError, match="no 'end_header' line"):
        load_ply(path)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"\x89PNG\r\n\x1a\n....", "is not a PLY file"),
        (b"hello world\n", "is not a PLY file"),
        (
            b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n1\n",
            "'ascii 1.0' is not supported",
        ),
        (
            b"ply\nformat binary_big_endian 1.0\nelement vertex 0\nproperty float x\nend_header\n",
            "binary_big_endian",
        ),
        (
            b"ply\nformat binary_little_endian 1.0\nelement face 0\nend_header\n",
            "first PLY element must be 'vertex'",
        ),
        (
            b"ply\nformat binary_little_endian 1.0\nelement vertex 0\nproperty float x\nend_header\n",
            "missing vertex",
        ),
        (b"ply\nformat binary_little_endian 1.0\nwhat is this\nend_header\n", "unexpected header line"),
        (
            b"ply\nformat binary_little_endian 1.0\nelement vertex 0\nproperty\nend_header\n",
            "unsupported property line",
        ),
        (
            b"ply\nformat binary_little_endian 1.0\nelement vertex 0\nproperty float x\n"
            b"property float y\nproperty float x\nend_header\n",
            r"vertex properties \['x'\] occur more than once",
        ),
    ],
)
def test_foreign_files(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "x.ply"
    path.write_bytes(content)
    with pytest.raises(PlyError, match=match) as err:
        load_ply(path)
    assert "x.ply" in str(err.value)
    assert isinstance(err.value, ValueError)


def test_missing_property_named(tmp_path: Path) -> None:
    props = [
        (p, "float") for p in ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "scale_0", "scale_1", "scale_2")
    ]
    props += [(f"rot_{i}", "float") for i in range(4)]
    _write_raw_ply(tmp_path / "m.ply", props, np.zeros((2, len(props)), dtype=np.float32))
    with pytest.raises(PlyError, match=r"missing vertex properties \['opacity'\]"):
        load_ply(tmp_path / "m.ply")


def test_malformed_metadata(tmp_path: Path) -> None:
    path = save_ply(tmp_path / "j.ply", **_gaussians(n=2), metadata={"a": 1})
    raw = path.read_bytes().replace(b'comment rg_metadata {"a":1}', b'comment rg_metadata {"a":1, ')
    path.write_bytes(raw)
    with pytest.raises(PlyIntegrityError):  # the checksum sees the edit first
        load_ply(path)
    with pytest.raises(PlyError, match="malformed rg_metadata JSON"):
        load_ply(path, verify=False)


# ----------------------------------------------------------------------------- integrity
def _body_offset(raw: bytes) -> int:
    return raw.index(b"\nend_header\n") + len(b"\nend_header\n")


def test_checksum_written_verified_and_skippable(tmp_path: Path) -> None:
    path = save_ply(
        tmp_path / "h.ply", **_gaussians(n=30), extra={"face_id": np.arange(30)}, metadata={"a": 1}
    )
    assert sum(ln.startswith("comment rg_sha256 ") for ln in _header(path)) == 1
    assert load_ply(path).integrity == "verified"
    assert load_ply(path, verify=False).integrity == "skipped"


def test_every_body_byte_flip_is_caught(tmp_path: Path) -> None:
    path = save_ply(tmp_path / "f.ply", **_gaussians(n=40, K=4), extra={"face_id": np.arange(40) % 3})
    raw = bytearray(path.read_bytes())
    start = _body_offset(bytes(raw))
    rng = np.random.default_rng(0)
    for pos in rng.integers(start, len(raw), size=60):
        bad = bytearray(raw)
        bad[int(pos)] ^= 1 << int(rng.integers(0, 8))
        path.write_bytes(bytes(bad))
        with pytest.raises(PlyIntegrityError, match="is corrupted: its rg_sha256 checksum"):
            load_ply(path)


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        (b"element vertex 12", b"element vertex 11", "trailing data after the 11 Gaussians"),
        (b"element vertex 12", b"element vertex 13", "truncated, 13 Gaussians need"),
        (b'"v":1', b'"v":2', "rg_sha256 checksum does not match"),  # a metadata edit
        (b"rg_extra face_id int 0", b"rg_extra face_id float 0", "rg_sha256 checksum does not match"),
    ],
)
def test_header_edits_are_caught(tmp_path: Path, old: bytes, new: bytes, match: str) -> None:
    path = save_ply(
        tmp_path / "e.ply", **_gaussians(n=12), extra={"face_id": np.arange(12)}, metadata={"v": 1}
    )
    path.write_bytes(path.read_bytes().replace(old, new, 1))
    with pytest.raises(PlyError, match=match):
        load_ply(path)


def test_files_without_checksum_still_load_but_trailing_data_and_nan_do_not(tmp_path: Path) -> None:
    path = save_ply(tmp_path / "o.ply", **_gaussians(n=6))
    old = b"\n".join(ln for ln in path.read_bytes().split(b"\n") if not ln.startswith(b"comment rg_sha256"))
    path.write_bytes(old)
    assert load_ply(path).integrity == "absent" and load_ply(path).num_gaussians == 6
    path.write_bytes(old.replace(b"element vertex 6", b"element vertex 5"))
    with pytest.raises(PlyError, match="trailing data after the 5 Gaussians"):
        load_ply(path)
    raw = bytearray(old)
    start = _body_offset(old)
    raw[start : start + 4] = np.array([np.nan], dtype="<f4").tobytes()  # x of the first Gaussian
    path.write_bytes(bytes(raw))
    with pytest.raises(PlyError, match=r"1 non-finite value\(s\) \(NaN/inf\) in vertex properties \['x'\]"):
        load_ply(path)


# ----------------------------------------------------------------------------- writing
@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"means": np.zeros((5, 2))}, r"means: expected shape \[N,3\], got \[5,2\]"),
        ({"quats": np.zeros((4, 4))}, r"quats: expected shape \[5,4\], got \[4,4\]"),
        ({"scales": np.zeros((5, 3))}, r"scales: expected linear scales > 0"),
        ({"opacities": np.full(5, 1.5)}, r"opacities: expected activated opacities in \[0, 1\]"),
        ({"means": np.full((5, 3), np.nan)}, r"means: 15 non-finite value"),
        ({"colors": np.zeros((5, 5, 3))}, r"colors: expected 1, 4, 9 or 16 SH coefficients"),
        ({"extra": {"bad name": np.zeros(5)}}, r"extra: name 'bad name'"),
        ({"extra": {"f": np.zeros(4)}}, r"extra\['f'\]: expected shape \[N\] or \[N,k\] with N=5"),
        ({"extra": {"s": np.array(["a"] * 5)}}, r"extra\['s'\]: expected an int or float array"),
        ({"metadata": {"x": object()}}, r"metadata: not JSON-serialisable"),
        ({"metadata": {"x": float("nan")}}, r"metadata: not JSON-serialisable"),
    ],
)
def test_save_validation(tmp_path: Path, change: dict, match: str) -> None:
    g = _gaussians(n=5, K=4)
    g.update(change)
    with pytest.raises(ValueError, match=match):
        save_ply(tmp_path / "v.ply", **g)
    assert list(tmp_path.iterdir()) == []


def test_atomic_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "o.ply"
    save_ply(path, **_gaussians(n=3), metadata={"v": 1})
    save_ply(path, **_gaussians(n=4), metadata={"v": 2})
    assert load_ply(path).metadata == {"v": 2} and load_ply(path).num_gaussians == 4
    with pytest.raises(ValueError):
        save_ply(path, **{**_gaussians(n=4), "scales": -np.ones((4, 3))})
    assert load_ply(path).metadata == {"v": 2}  # a failed write leaves the old file
    assert sorted(p.name for p in path.parent.iterdir()) == ["o.ply"]  # no temporary left


def test_metadata_json_is_plain_ascii(tmp_path: Path) -> None:
    meta = {"k": "ü\n\tend_header\r\n"}
    path = save_ply(tmp_path / "u.ply", **_gaussians(n=2), metadata=meta)
    lines = [ln for ln in _header(path) if "rg_metadata" in ln]
    assert json.loads("".join(ln[len("comment rg_metadata ") :] for ln in lines)) == meta
    assert load_ply(path).metadata == meta
