"""Cross-package fixtures: the tiny diffusion models written to disk in the hub layout, a tiny
FLAME-layout head, and the helpers of the fuzz tests (in-process CLI runs and their tally)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory) -> tuple[Path, Path]:
    """``(base_dir, controlnet_dir)``: the tiny random-weight models saved as the hub repositories
    are laid out, for ``--set guidance.base_model=BASE --set guidance.controlnet=CN`` (the real
    loader, nothing patched). Session-wide: treat the folders as read-only (copy to change them)."""
    from fsds_guidance.testing import save_tiny_pipeline

    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny_pipeline"))


@pytest.fixture(scope="session")
def procedural_flame_file(tmp_path_factory) -> Path:
    """The open procedural head saved once as a FLAME file (``--set head.flame_path=FILE``), for
    tests that start many ``generate`` processes (each would otherwise build the head again).
    Session-wide: read-only."""
    from flame_core.procedural import build_procedural_head

    return build_procedural_head().save(tmp_path_factory.mktemp("procedural_flame")) / "procedural_flame.pkl"


@pytest.fixture(scope="session")
def tiny_batch_items(tiny_pipeline, procedural_flame_file) -> list[str]:
    """``--set`` arguments of tiny `headstudio batch` items (tiny models, the saved head)."""
    from headstudio.batch.testing import tiny_item_settings

    return [a for s in tiny_item_settings(*tiny_pipeline, procedural_flame_file) for a in ("--set", s)]


# --------------------------------------------------------------------------- fuzz helpers


def _icosphere() -> tuple[np.ndarray, np.ndarray]:
    """A once-subdivided unit icosahedron: vertices ``[42, 3]``, faces ``[80, 3]``."""
    t = (1 + 5**0.5) / 2
    base = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t), (0, -1, -t), (0, 1, -t),
            (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]  # fmt: skip
    faces = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4), (11, 10, 2),
             (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9), (4, 9, 5),
             (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]  # fmt: skip
    verts = [np.array(v, float) / np.linalg.norm(v) for v in base]
    mids: dict[tuple[int, int], int] = {}

    def mid(a: int, b: int) -> int:
        key = (min(a, b), max(a, b))
        if key not in mids:
            p = verts[a] + verts[b]
            verts.append(p / np.linalg.norm(p))
            mids[key] = len(verts) - 1
        return mids[key]

    out = []
    for a, b, c in faces:
        ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
        out += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
    return np.array(verts), np.array(out, dtype=np.int64)


def tiny_flame_dict(seed: int = 0) -> dict[str, np.ndarray]:
    """A FLAME-layout model of a 10 cm icosphere head (42 vertices, 80 faces, 10 + 10 components,
    the lower half on the jaw joint): what a FLAME pickle holds, small enough to fuzz."""
    v, f = _icosphere()
    rng = np.random.default_rng(seed)
    weights = np.zeros((len(v), 5))
    weights[:, 0] = 1.0
    jaw = v[:, 1] < -0.3
    weights[jaw, 0], weights[jaw, 2] = 0.5, 0.5
    return {
        "v_template": 0.1 * v,
        "f": f,
        "shapedirs": 0.01 * rng.normal(size=(len(v), 3, 20)),
        "posedirs": np.zeros((len(v), 3, 36)),
        "J_regressor": np.full((5, len(v)), 1.0 / len(v)),
        "weights": weights,
        "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
    }


@pytest.fixture(scope="session")
def tiny_flame(tmp_path_factory) -> Path:
    """:func:`tiny_flame_dict` saved as a FLAME pickle (read-only: copy it to change it)."""
    from flame_core.io import save_flame_pickle

    path = tmp_path_factory.mktemp("tiny_flame") / "tiny_flame.pkl"
    save_flame_pickle(tiny_flame_dict(), path)
    return path


@dataclass
class CliResult:
    """One in-process ``headstudio`` run: exit status and what it wrote."""

    rc: int
    out: str
    err: str

    @property
    def verdict(self) -> str:
        """``accepted`` (0), ``rejected`` (2 with exactly one ``error:`` line and no traceback), or
        what went wrong."""
        errors = [ln for ln in self.err.splitlines() if ln.startswith("error:")]
        if "Traceback" in self.err:
            return "traceback"
        if self.rc == 0:
            return "accepted"
        if self.rc == 2 and len(errors) == 1:
            return "rejected"
        return f"exit {self.rc} with {len(errors)} error line(s)"

    @property
    def error(self) -> str:
        return next((ln for ln in self.err.splitlines() if ln.startswith("error:")), "")

    def refusal_problem(self, name: str, output: Path) -> str | None:
        """What is wrong with a run that was not accepted (``None``: a clean refusal, one line
        naming the file ``name``, nothing written at ``output``)."""
        if self.verdict != "rejected":
            return f"{self.verdict}: {self.err.strip()[-400:]}"
        if name not in self.error:
            return f"the error line does not name the file: {self.error}"
        if output.exists():
            return f"rejected, yet '{output.name}' was written"
        return None


@pytest.fixture
def headstudio_cli(capsys) -> Callable[..., CliResult]:
    """``run(*argv)``: ``headstudio.cli.main([*argv, "-q", "--device", "cpu"])`` in-process."""
    from headstudio import cli

    def run(*argv: str) -> CliResult:
        capsys.readouterr()
        rc = cli.main([*argv, "-q", "--device", "cpu"])
        out, err = capsys.readouterr()
        return CliResult(rc, out, err)

    return run


class FuzzTally:
    """Outcomes of fuzz cases by file type; :meth:`check` fails listing every bad case."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[str, int]] = {}
        self.problems: list[str] = []

    def add(self, kind: str, case: str, verdict: str, problem: str | None = None) -> None:
        c = self.counts.setdefault(kind, {"tried": 0})
        c["tried"] += 1
        c[verdict] = c.get(verdict, 0) + 1
        if problem:
            self.problems.append(f"{kind} {case}: {problem}")

    def summary(self) -> str:
        return "; ".join(
            f"{kind}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items(), key=lambda kv: kv[0] != "tried"))
            for kind, c in self.counts.items()
        )

    def check(self) -> None:
        print(f"fuzz counts: {self.summary()}")
        assert not self.problems, f"{len(self.problems)} bad case(s):\n" + "\n".join(self.problems[:40])


@pytest.fixture
def fuzz_tally() -> FuzzTally:
    return FuzzTally()
