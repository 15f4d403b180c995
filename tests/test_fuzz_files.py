"""Seeded fuzz: mutated avatar PLYs, FLAME pickles and motion files through `headstudio export`.

Every case must end either accepted, with the same exported Gaussians as the clean file (compared
exactly), or rejected with exit 2 and exactly one ``error:`` line naming the file; never an
internal error (exit 1) nor a traceback. The avatar's checksum must catch every byte flip in its
body. Motion files are third-party formats without a checksum: a flipped value bit there can make
another valid motion, counted apart as ``accepted-changed`` (its export must still be a finite PLY).

The cases (a few hundred, on a 42-vertex FLAME-layout head so each export takes milliseconds):
truncations, appended bytes, byte flips in header and body, edited header lines and counts, NaN /
inf injection, and, in consistent files without a checksum (as older headstudio wrote them),
wrong property types, dropped or reshaped rigging, out-of-range triangle ids, implausible values
and every metadata field malformed.
"""

from __future__ import annotations

import json
import pickle
import random
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from flame_core import FlameModel  # noqa: E402
from flame_core.motion import MotionSequence  # noqa: E402
from headstudio.avatar import Avatar  # noqa: E402
from headstudio.config import InitConfig  # noqa: E402
from rigged_gaussians.ply import load_ply  # noqa: E402

SEED = 16
_PLY_TYPES = {"float": "<f4", "double": "<f8", "int": "<i4", "uchar": "u1"}


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def tiny_avatar(tmp_path_factory, tiny_flame: Path) -> Path:
    """An avatar on the tiny head with every value random (so any change shows in the export)."""
    head = FlameModel.from_file(tiny_flame, num_shape=10, num_expression=10)
    g = torch.Generator().manual_seed(SEED)
    avatar = Avatar.initialize(head, InitConfig(points_per_face=2, sh_degree=1), generator=g)
    with torch.no_grad():
        for p in (
            avatar.means,
            avatar.quats,
            avatar.log_scales,
            avatar.opacity_logits,
            avatar.sh,
            avatar.shape,
        ):
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return avatar.save(tmp_path_factory.mktemp("fuzz_avatar") / "avatar.ply", prompt="a fuzzed head")


def _gaussians(path: Path) -> list[np.ndarray]:
    g = load_ply(path)
    return [g.means, g.quats, g.scales, g.opacities, g.sh]


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@dataclass
class Exporter:
    """Runs `headstudio export` on mutated copies of one input and judges each outcome."""

    cli: Callable
    tally: object
    folder: Path
    kind: str
    argv: Callable[[Path, Path], list[str]]  # (mutated file, output) -> export arguments
    suffix: str
    reference: list[np.ndarray] | None = None

    def run(self, case: str, data: bytes, must_reject: bool = False, changed: bool | None = None) -> str:
        """Export with ``data`` as the input; ``changed``: the mutated file reads as other values
        (a format without checksum), so an accepted export need not equal the clean one."""
        src, out = self.folder / f"{case}{self.suffix}", self.folder / "out.ply"
        src.write_bytes(data)
        out.unlink(missing_ok=True)
        res = self.cli(*self.argv(src, out))
        verdict, problem = res.verdict, None
        if verdict == "accepted":
            got = _gaussians(out)
            if must_reject:
                problem = "accepted; it must be rejected"
            elif changed:
                verdict = "accepted-changed"
                if not all(np.isfinite(a).all() for a in got):
                    problem = "accepted a changed file and exported non-finite values"
            elif not _same(got, self.reference):
                problem = "accepted, but the export differs from the clean file's"
        else:
            problem = res.refusal_problem(src.name, out)
        self.tally.add(self.kind, case, verdict if problem is None else "bad", problem)
        src.unlink()
        return verdict

    def clean(self, data: bytes) -> None:
        self.reference = None
        out = self.folder / "out.ply"
        res = self.cli(*self.argv(self._write("clean", data), out))
        assert res.rc == 0, res.err
        self.reference = _gaussians(out)

    def _write(self, case: str, data: bytes) -> Path:
        p = self.folder / f"{case}{self.suffix}"
        p.write_bytes(data)
        return p


def _byte_mutations(raw: bytes, rng: random.Random, flips: int, cuts: int) -> Iterator[tuple[str, bytes]]:
    """Byte flips anywhere, truncations, and bytes appended."""
    for i in range(flips):
        b = bytearray(raw)
        k = rng.randrange(len(b))
        b[k] ^= 1 << rng.randrange(8)
        yield f"flip{i}@{k}", bytes(b)
    for i in range(cuts):
        k = rng.randrange(len(raw))
        yield f"cut{i}@{k}", raw[:k]
    yield "append", raw + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))


# ----------------------------------------------------------------------------- avatar PLY
@dataclass
class PlyParts:
    """An avatar PLY taken apart: comment lines (the checksum dropped), properties and body."""

    comments: list[str]
    props: list[tuple[str, str]]  # (PLY type, name)
    body: np.ndarray  # structured, one field per property

    @classmethod
    def parse(cls, raw: bytes) -> PlyParts:
        end = raw.index(b"end_header\n") + len(b"end_header\n")
        lines = raw[:end].decode("ascii").splitlines()
        comments = [ln for ln in lines if ln.startswith("comment ") and "rg_sha256" not in ln]
        props = [(ln.split()[1], ln.split()[2]) for ln in lines if ln.startswith("property ")]
        body = np.frombuffer(raw[end:], dtype=cls.dtype(props)).copy()
        return cls(comments, props, body)

    @staticmethod
    def dtype(props: list[tuple[str, str]]) -> np.dtype:
        return np.dtype([(n, _PLY_TYPES[t]) for t, n in props])

    def to_bytes(self, count: int | None = None) -> bytes:
        n = len(self.body) if count is None else count
        lines = ["ply", "format binary_little_endian 1.0", *self.comments, f"element vertex {n}"]
        lines += [f"property {t} {n}" for t, n in self.props] + ["end_header"]
        return ("\n".join(lines) + "\n").encode("ascii") + self.body.tobytes()

    @property
    def meta(self) -> dict:
        return json.loads(
            "".join(c[len("comment rg_metadata ") :] for c in self.comments if " rg_metadata " in c)
        )

    def with_meta_text(self, text: str) -> PlyParts:
        rest = [c for c in self.comments if " rg_metadata " not in c]
        return replace(
            self,
            comments=rest + [f"comment rg_metadata {text[i : i + 900]}" for i in range(0, len(text), 900)],
        )

    def with_meta(self, **changes: object) -> PlyParts:
        meta = {k: v for k, v in {**self.meta, **changes}.items() if v is not _DROP}
        return self.with_meta_text(json.dumps(meta, separators=(",", ":")))

    def set_value(self, name: str, value: float, row: int = 3) -> PlyParts:
        body = self.body.copy()
        body[name][row] = value
        return replace(self, body=body)

    def retype(self, name: str, ply_type: str, convert: bool) -> PlyParts:
        """``name`` declared as ``ply_type``: its values converted, or its bytes reinterpreted."""
        props = [(ply_type if n == name else t, n) for t, n in self.props]
        if not convert:
            return replace(
                self, props=props, body=np.frombuffer(self.body.tobytes(), self.dtype(props)).copy()
            )
        body = np.empty(len(self.body), self.dtype(props))
        for _, n in props:
            body[n] = self.body[n]
        return replace(self, props=props, body=body)

    def keep(self, names: list[str], comments: list[str] | None = None) -> PlyParts:
        props = [(t, n) for t, n in self.props if n in names]
        body = np.empty(len(self.body), self.dtype(props))
        for _, n in props:
            body[n] = self.body[n]
        return PlyParts(self.comments if comments is None else comments, props, body)

    def add_column(self, name: str, ply_type: str, values: np.ndarray) -> PlyParts:
        props = [*self.props, (ply_type, name)]
        body = np.empty(len(self.body), self.dtype(props))
        for _, n in self.props:
            body[n] = self.body[n]
        body[name] = values
        return replace(self, props=props, body=body)


_DROP = object()


def _signed_mutations(raw: bytes, rng: random.Random) -> Iterator[tuple[str, bytes, bool]]:
    """``(case, bytes, must_reject)`` of the file as written (with its checksum)."""
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    parts = PlyParts.parse(raw)
    for i in range(60):  # the checksum's job: every flip in the body
        b = bytearray(raw)
        k = rng.randrange(end, len(raw))
        b[k] ^= 1 << rng.randrange(8)
        yield f"body-flip{i}@{k}", bytes(b), True
    for i in range(20):
        b = bytearray(raw)
        k = rng.randrange(end)
        b[k] ^= 1 << rng.randrange(8)
        yield f"header-flip{i}@{k}", bytes(b), False
    for case, data in _byte_mutations(raw, rng, 0, 12):
        yield case, data, True
    n = len(parts.body)
    for count in (0, 1, n - 1, n + 1, n // 2, 10**9):
        yield (
            f"count{count}",
            raw.replace(f"element vertex {n}\n".encode(), f"element vertex {count}\n".encode()),
            True,
        )
    names = [nm for nm in parts.body.dtype.names if parts.body.dtype[nm].kind == "f"]
    for i in range(10):
        b = bytearray(raw)
        row, name = rng.randrange(n), rng.choice(names)
        off = end + row * parts.body.dtype.itemsize + parts.body.dtype.fields[name][1]
        b[off : off + 4] = np.float32(rng.choice([np.nan, np.inf, -np.inf])).tobytes()
        yield f"nan{i}-{name}", bytes(b), True
    edits = [
        (b"property float rot_3\n", b""), (b"property float x\n", b"property int x\n"),
        (b"binary_little_endian", b"binary_big_endian"), (b"binary_little_endian 1.0", b"ascii 1.0"),
        (b"end_header\n", b"end_headr\n"), (b'"num_expression":10', b'"num_expression":11'),
        (b"rg_extra local_means float 3", b"rg_extra local_means float 2"), (b"ply\n", b"plx\n"),
    ]  # fmt: skip
    for i, (old, new) in enumerate(edits):
        yield f"edit{i}", raw.replace(old, new, 1), True
    digest = re.search(rb"rg_sha256 ([0-9a-f]+)", raw).group(1)
    yield "checksum-edit", raw.replace(digest, digest[:-1] + (b"0" if digest[-1:] != b"0" else b"1")), True
    yield "checksum-dropped", re.sub(rb"comment rg_sha256 [0-9a-f]+\n", b"", raw), False
    yield "crlf-header", raw[:end].replace(b"\n", b"\r\n") + raw[end:], False


def _unsigned_mutations(parts: PlyParts, num_faces: int) -> Iterator[tuple[str, bytes]]:
    """Consistent files without a checksum (older headstudio): only the field checks can tell."""
    n = len(parts.body)
    meta = parts.meta
    yield "clean", parts.to_bytes()
    yield "empty", replace(parts, body=parts.body[:0]).to_bytes()
    yield "rows-dropped", replace(parts, body=parts.body[: n - 5]).to_bytes()
    values = [
        ("x", np.nan), ("f_dc_0", np.inf), ("rg_local_means_1", np.nan), ("rg_local_quats_2", -np.inf),
        ("opacity", np.nan), ("f_rest_4", np.nan), ("rg_local_log_scales_0", 1e30),
        ("rg_local_means_2", -1e20), ("rg_face_id", num_faces), ("rg_face_id", -1), ("rg_face_id", 2**31 - 1),
    ]  # fmt: skip
    for name, value in values:
        yield f"value-{name}={value}", parts.set_value(name, value).to_bytes()
    for name, ply_type, convert in (("x", "int", False), ("rg_face_id", "float", False),
                                    ("rg_local_means_0", "int", False), ("x", "double", True),
                                    ("rg_face_id", "uchar", True), ("scale_1", "double", True)):  # fmt: skip
        yield f"type-{name}-{ply_type}", parts.retype(name, ply_type, convert).to_bytes()
    all_names = [nm for _, nm in parts.props]
    yield "drop-rot_3", parts.keep([x for x in all_names if x != "rot_3"]).to_bytes()
    no_face = [c for c in parts.comments if "rg_extra face_id" not in c]
    yield "drop-face_id", parts.keep([x for x in all_names if x != "rg_face_id"], no_face).to_bytes()
    means2 = [c.replace("local_means float 3", "local_means float 2") for c in parts.comments]
    yield "reshape-means", parts.keep([x for x in all_names if x != "rg_local_means_2"], means2).to_bytes()
    quats5 = [c.replace("local_quats float 4", "local_quats float 5") for c in parts.comments]
    five = replace(
        parts.add_column("rg_local_quats_4", "float", parts.body["rg_local_quats_0"]), comments=quats5
    )
    yield "reshape-quats", five.to_bytes()
    face2 = [c.replace("face_id int 0", "face_id int 2") for c in parts.comments]
    two = parts.add_column("rg_face_id_0", "int", parts.body["rg_face_id"])
    two = two.add_column("rg_face_id_1", "int", parts.body["rg_face_id"])
    yield (
        "reshape-face_id",
        two.keep([x for x in two.body.dtype.names if x != "rg_face_id"], face2).to_bytes(),
    )
    plain = [x for x in all_names if not x.startswith("rg_")]
    yield "foreign-3dgs", parts.keep(plain, [parts.comments[0]]).to_bytes()
    yield "duplicate-property", replace(parts, props=[*parts.props[:-1], parts.props[0]]).to_bytes()
    bad_meta = {
        "format": ["other"], "format_version": [2, 0, "1", 1.5, True], "num_shape": [0, 301, "10", None],
        "num_expression": [-1, 101, 10.0], "sh_degree": [2, "1"], "num_gaussians": [n + 1, -1, str(n)],
        "shape": ["abc", [True] * 10, [0.0] * 11, [1e400]], "prompt": [5, ["a"]],
        "head": [[], {"identity_hash": 5}, {"identity_hash": "abc"}, None, _DROP],
        "config": ["x", [1]], "metadata": [[1], "x"],
    }  # fmt: skip
    for key, values in bad_meta.items():
        for v in values:
            yield f"meta-{key}={v if v is not _DROP else 'dropped'}", parts.with_meta(**{key: v}).to_bytes()
    for key in ("prompt", "metadata", "config", "num_gaussians", "sh_degree", "format"):
        yield f"meta-drop-{key}", parts.with_meta(**{key: _DROP}).to_bytes()
    text = json.dumps(meta, separators=(",", ":"))
    yield "meta-cut", parts.with_meta_text(text[:-7]).to_bytes()
    yield "meta-array", parts.with_meta_text("[1,2]").to_bytes()
    yield "meta-nan", parts.with_meta_text(text.replace('"shape":[', '"shape":[NaN,', 1)).to_bytes()


def test_fuzz_avatar_ply(
    tiny_avatar: Path, tiny_flame: Path, tmp_path: Path, headstudio_cli, fuzz_tally
) -> None:
    def argv(src: Path, out: Path) -> list[str]:
        return ["export", str(src), "--flame", str(tiny_flame), "-o", str(out)]

    raw = tiny_avatar.read_bytes()
    ex = Exporter(headstudio_cli, fuzz_tally, tmp_path, "avatar PLY", argv, ".ply")
    ex.clean(raw)
    rng = random.Random(SEED)
    body_flips = []
    for case, data, must_reject in _signed_mutations(raw, rng):
        verdict = ex.run(case, data, must_reject)
        if case.startswith("body-flip"):
            body_flips.append(verdict)
    assert body_flips.count("rejected") == len(body_flips) == 60, body_flips  # the checksum caught each

    ex.kind = "avatar PLY without checksum"
    head = FlameModel.from_file(tiny_flame, num_shape=10, num_expression=10)
    for case, data in _unsigned_mutations(PlyParts.parse(raw), head.num_faces):
        ex.run(case, data, must_reject=case not in ("clean",) and not case.startswith("meta-drop-"))

    ex.kind = "avatar PLY --no-verify"  # forensics: a flipped value may load, but nothing crashes
    ex.argv = lambda src, out: [*argv(src, out), "--no-verify"]
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    for i in range(12):
        b = bytearray(raw)
        k = rng.randrange(end, len(raw))
        b[k] ^= 1 << rng.randrange(8)
        ex.run(f"no-verify-flip{i}@{k}", bytes(b), changed=True)
    fuzz_tally.check()


# ----------------------------------------------------------------------------- FLAME pickle
def _flame_mutations(tiny: dict[str, np.ndarray]) -> Iterator[tuple[str, object]]:
    """Dicts (and non-dicts) pickled like a FLAME file, each wrong in one way."""

    def edit(**kw: object) -> dict:
        return {k: v for k, v in {**tiny, **kw}.items() if v is not _DROP}

    yield "drop-f", edit(f=_DROP)
    yield "drop-weights", edit(weights=_DROP)
    yield "v_template-2d", edit(v_template=tiny["v_template"][:, :2])
    yield "f-float", edit(f=tiny["f"].astype(np.float64))
    yield "f-out-of-range", edit(f=tiny["f"] + 1)
    yield (
        "shapedirs-nan",
        edit(
            shapedirs=np.where(
                np.arange(tiny["shapedirs"].size).reshape(tiny["shapedirs"].shape) == 7,
                np.nan,
                tiny["shapedirs"],
            )
        ),
    )
    yield (
        "shapedirs-odd",
        edit(
            shapedirs=tiny["shapedirs"][..., :21]
            if tiny["shapedirs"].shape[-1] > 21
            else np.concatenate([tiny["shapedirs"], tiny["shapedirs"][..., :1]], -1)
        ),
    )
    yield "kintree-two-roots", edit(kintree_table=np.array([[4294967295, 0, 1, 1, -1], [0, 1, 2, 3, 4]]))
    yield "weights-strings", edit(weights=np.full(tiny["weights"].shape, "w"))
    yield "other-head", edit(v_template=tiny["v_template"] * 1.05)
    yield "a-list", [tiny]
    yield "a-string", "not a model"


def test_fuzz_flame_pickle(
    tiny_avatar: Path, tiny_flame: Path, tmp_path: Path, headstudio_cli, fuzz_tally
) -> None:
    ex = Exporter(
        headstudio_cli, fuzz_tally, tmp_path, "FLAME pickle",
        lambda src, out: ["export", str(tiny_avatar), "--flame", str(src), "-o", str(out)], ".pkl",
    )  # fmt: skip
    raw = tiny_flame.read_bytes()
    ex.clean(raw)
    rng = random.Random(SEED + 1)
    for case, data in _byte_mutations(raw, rng, 24, 6):
        ex.run(case, data)
    from flame_core.io import load_flame_pickle

    for case, obj in _flame_mutations(load_flame_pickle(tiny_flame)):
        ex.run(case, pickle.dumps(obj, protocol=2), must_reject=True)
    ex.run("empty", b"", must_reject=True)
    fuzz_tally.check()


# ----------------------------------------------------------------------------- motion files
T = 6


def _motion_files(rng: np.random.Generator) -> dict[str, dict[str, np.ndarray]]:
    s = 0.3
    return {
        ".npz": {
            "expression": s * rng.normal(size=(T, 10)), "jaw_pose": 0.1 * rng.random((T, 3)),
            "neck_pose": 0.1 * rng.normal(size=(T, 3)), "eye_pose": 0.1 * rng.normal(size=(T, 6)),
            "fps": np.float64(25.0),
        },
        ".npy": {"frames": 0.1 * rng.normal(size=(T, 265))},
        ".pkl": {
            "expression": s * rng.normal(size=(T, 10)), "jaw_pose": 0.1 * rng.random((T, 3)),
            "leye_pose": 0.1 * rng.normal(size=(T, 3)), "reye_pose": 0.1 * rng.normal(size=(T, 3)),
            "body_pose_axis": 0.1 * rng.normal(size=(T, 21, 3)),
            "global_orient": 0.1 * rng.normal(size=(T, 3)),
            "fps": 30.0,
        },
    }  # fmt: skip


def _motion_bytes(suffix: str, fields: dict, folder: Path) -> bytes:
    p = folder / f"tmp{suffix}"
    if suffix == ".npz":
        with open(p, "wb") as fh:
            np.savez(
                fh,
                **{
                    k: np.asarray(v, dtype=v.dtype if isinstance(v, np.ndarray) else None)
                    for k, v in fields.items()
                },
            )
    elif suffix == ".npy":
        np.save(p, fields["frames"])
    else:
        p.write_bytes(pickle.dumps(fields, protocol=2))
    data = p.read_bytes()
    p.unlink()
    return data


def _motion_edits(fields: dict) -> Iterator[tuple[str, dict]]:
    key = "frames" if "frames" in fields else "expression"
    a = np.asarray(fields[key])
    nan = a.copy()
    nan[2, 1] = np.nan
    yield "nan", {**fields, key: nan}
    yield "zero-frames", {**fields, key: a[:0]}
    yield "reshaped", {**fields, key: a[:, None, :]}
    yield "strings", {**fields, key: np.full(a.shape, "x")}
    yield "too-narrow", {**fields, key: a[:, :3] if key == "frames" else a[:, :0]}
    if key == "expression":
        yield "dropped", {k: v for k, v in fields.items() if k != key}
        yield "jaw-wide", {**fields, "jaw_pose": np.zeros((T, 4))}
        yield "fps-negative", {**fields, "fps": np.float64(-1.0)}
        yield "fps-nan", {**fields, "fps": np.float64(np.nan)}
        yield "fps-text", {**fields, "fps": np.array("fast")}
        yield "extra-field", {**fields, "comment": np.array("made by hand")}


@pytest.mark.parametrize("suffix", [".npz", ".npy", ".pkl"])
def test_fuzz_motion_files(
    suffix: str, tiny_avatar: Path, tiny_flame: Path, tmp_path: Path, headstudio_cli, fuzz_tally
) -> None:
    fields = _motion_files(np.random.default_rng(SEED))[suffix]
    ex = Exporter(
        headstudio_cli, fuzz_tally, tmp_path, f"motion {suffix}",
        lambda src, out: ["export", str(tiny_avatar), "--flame", str(tiny_flame), "--motion", str(src),
                          "--motion-frame", "2", "-o", str(out)], suffix,
    )  # fmt: skip
    raw = _motion_bytes(suffix, fields, tmp_path)
    ex.clean(raw)
    clean = MotionSequence.load(ex._write("ref", raw)).tensors()

    def changed(data: bytes) -> bool:
        p = ex._write("probe", data)
        try:
            got = MotionSequence.load(p).tensors()
        except Exception:  # the CLI must reject it: judged there
            return False
        finally:
            p.unlink()
        return got.keys() != clean.keys() or any(not torch.equal(got[k], clean[k]) for k in got)

    rng = random.Random(SEED + 2)
    for case, data in _byte_mutations(raw, rng, 14, 5):
        ex.run(case, data, changed=changed(data))
    for case, edited in _motion_edits(fields):
        data = _motion_bytes(suffix, edited, tmp_path)
        ex.run(case, data, changed=changed(data))
    if suffix == ".pkl":
        ex.run("a-list", pickle.dumps([fields, fields]), must_reject=True)
    fuzz_tally.check()


def test_checksum_lines(tiny_avatar: Path, tiny_flame: Path, tmp_path: Path, headstudio_cli) -> None:
    """A flipped bit: one error line naming the checksum and the ways out; ``--no-verify`` reads it
    with one warning line. A file without checksum (older headstudio) reads with one line."""
    raw = tiny_avatar.read_bytes()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    flipped = bytearray(raw)
    flipped[end + 101] ^= 0x10
    src = tmp_path / "flipped.ply"
    src.write_bytes(flipped)
    argv = ["export", str(src), "--flame", str(tiny_flame), "-o", str(tmp_path / "out.ply")]
    res = headstudio_cli(*argv)
    assert res.verdict == "rejected", res.err
    assert res.err.count("\n") == 1 and str(src) in res.error, res.err
    assert "rg_sha256 checksum does not match" in res.error and "--no-verify" in res.error, res.error
    assert "re-export it from its run's checkpoint" in res.error, res.error
    res = headstudio_cli(*argv, "--no-verify")
    assert res.verdict == "accepted" and res.err.count("\n") == 1 and "integrity check skipped" in res.err

    src.write_bytes(re.sub(rb"comment rg_sha256 [0-9a-f]+\n", b"", raw))
    res = headstudio_cli(*argv)
    assert res.verdict == "accepted", res.err
    assert res.err.count("\n") == 1 and "has no integrity checksum" in res.err, res.err
    reference = tmp_path / "reference.ply"
    assert (
        headstudio_cli("export", str(tiny_avatar), "--flame", str(tiny_flame), "-o", str(reference)).rc == 0
    )
    assert _same(_gaussians(tmp_path / "out.ply"), _gaussians(reference))


def test_real_process(tiny_avatar: Path, tiny_flame: Path, tmp_path: Path) -> None:
    """One case through the real entry point in its own process (the others run in-process; the
    exit status of a subprocess is tested in headstudio-app's test_cli): a NaN in the body is exit
    status 2, one ``error:`` line naming the file, no traceback."""
    raw = tiny_avatar.read_bytes()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    nan = bytearray(raw)
    nan[end + 8 : end + 12] = np.float32(np.nan).tobytes()
    src = tmp_path / "nan.ply"
    src.write_bytes(nan)
    argv = [
        "export",
        str(src),
        "--flame",
        str(tiny_flame),
        "-o",
        str(tmp_path / "o.ply"),
        "-q",
        "--device",
        "cpu",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "headstudio.cli", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(src) in lines[0], proc.stderr
    assert not (tmp_path / "o.ply").exists()
