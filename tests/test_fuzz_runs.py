"""Seeded fuzz: damaged checkpoints through `generate --resume`, damaged configs through
`generate --config`.

Each case is accepted with the same result as the clean file or rejected with exit 2 and one
``error:`` line naming the file; never exit 1, never a traceback. A checkpoint's result is the
avatar a finished run's ``--resume`` rewrites from it (compared exactly with the clean one's), and
a rejected ``last.pt`` must name the intact ``previous.pt`` and leave both files as they were. A
config's result is the resolved ``config.toml`` of the run, which must equal what the file says
as an independent TOML parser reads it (defaults for what it leaves out, the command line's
``--set`` on top). The runs are tiny: a 42-vertex head, image guidance on two 16² targets.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch
from headstudio import cli  # noqa: E402
from headstudio.config import HeadStudioConfig, config_to_dict  # noqa: E402
from headstudio.train.checkpoint import content_digest  # noqa: E402
from headstudio.train.targets import TargetSet  # noqa: E402
from rigged_gaussians.ply import load_ply  # noqa: E402

SEED = 16
PROMPT = "a tiny head"


def _targets(folder: Path) -> Path:
    """Two 16² images of random colours seen from the front: what image guidance fits."""
    g = torch.Generator().manual_seed(SEED)
    viewmats = torch.eye(4).repeat(2, 1, 1)
    viewmats[:, 2, 3] = 0.6
    Ks = torch.tensor([[16.0, 0, 8], [0, 16, 8], [0, 0, 1]]).repeat(2, 1, 1)
    TargetSet(torch.rand(2, 16, 16, 3, generator=g), viewmats, Ks, {"expression": torch.zeros(2, 10)}).save(
        folder
    )
    return folder


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory, tiny_flame: Path) -> dict[str, object]:
    """The settings every fuzzed run gets on the command line (so a mutated file cannot make a
    run expensive), a config file that says the same and more, and a finished two-step run."""
    root = tmp_path_factory.mktemp("fuzz_runs")
    sets = {
        "head.flame_path": str(tiny_flame), "head.num_shape": 10, "head.num_expression": 10,
        "init.points_per_face": 1, "train.batch_size": 1, "train.resolution": 16, "train.animation": False,
        "train.preview_every": 0, "guidance.kind": "image", "guidance.targets_dir": str(_targets(root / "t")),
    }  # fmt: skip
    argv = [a for k, v in sets.items() for a in ("--set", f"{k}={_toml(v)}")]
    config = root / "config.toml"
    config.write_text(
        "# a tiny run\n[head]\n" + f"flame_path = {_toml(tiny_flame)}\nnum_shape = 10\nnum_expression = 10\n"
        '[guidance]\nkind = "image"\n' + f"targets_dir = {_toml(sets['guidance.targets_dir'])}\n"
        'mode = "fsds"\nguidance_scale = 7.5\n'
        "[train]\nsteps = 2\nbatch_size = 1\nresolution = 16\nanimation = false\nlog_every = 1\n"
        "preview_every = 0\ncheckpoint_every = 1\nlr_position = 5e-5\nbetas = [0.9, 0.99]\nseed = 3\n"
        "[init]\npoints_per_face = 1\nopacity = 0.1\n"
        '[camera]\nfovy_deg = [40.0, 70.0]\ntarget = "auto"\nscene_scale = 0.2\n'
        "[loss]\nlambda_pos = 0.1\nlambda_scale = 0.1\n"
        "[densify]\nenabled = true\ngrad_threshold = 0.002\n",
        encoding="utf-8",
    )
    run = root / "run"
    assert (
        cli.main(["generate", PROMPT, "--config", str(config), "--output", str(run), "-q", "--device", "cpu"])
        == 0
    )
    assert (run / "checkpoints" / "previous.pt").is_file()  # step 1, kept when step 2 was written
    return {"sets": sets, "argv": argv, "config": config, "run": run}


def _toml(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return f'"{v}"' if isinstance(v, (str, Path)) else str(v)


def _gaussians(path: Path) -> list[np.ndarray]:
    g = load_ply(path)
    return [g.means, g.quats, g.scales, g.opacities, g.sh]


# ----------------------------------------------------------------------------- checkpoints
_DROP = object()


def _edited(d: dict, path: tuple[str, ...], value: object) -> dict:
    """A copy of the checkpoint dict ``d`` with the entry at ``path`` replaced (or dropped)."""
    out = dict(d)
    if len(path) == 1:
        if value is _DROP:
            out.pop(path[0])
        else:
            out[path[0]] = value
        return out
    out[path[0]] = _edited(d[path[0]], path[1:], value)
    return out


def _checkpoint_edits(d: dict) -> Iterator[tuple[str, object]]:
    g = d["avatar"]["gaussians"]
    n = d["num_gaussians"]
    nan = g["means"].clone()
    nan[1, 2] = float("nan")
    opt = {**d["optimizer"], "state": {**d["optimizer"]["state"], 0: {**d["optimizer"]["state"][0]}}}
    opt["state"][0]["exp_avg"] = torch.zeros(n + 1, 3)
    edits = {
        "drop-step": (("step",), _DROP),
        "step-text": (("step",), "x"),
        "step-negative": (("step",), -1),
        "count": (("num_gaussians",), n + 1),
        "means-2-columns": (("avatar", "gaussians", "means"), g["means"][:, :2]),
        "means-nan": (("avatar", "gaussians", "means"), nan),
        "drop-sh": (("avatar", "gaussians", "sh"), _DROP),
        "face_ids-float": (("avatar", "face_ids"), d["avatar"]["face_ids"].float()),
        "face_ids-out-of-range": (("avatar", "face_ids"), d["avatar"]["face_ids"] + 1000),
        "shape-1d": (("avatar", "shape"), d["avatar"]["shape"][0]),
        "optimizer-text": (("optimizer",), "x"),
        "optimizer-moments": (("optimizer",), opt),
        "rng-empty": (("rng",), {}),
        "rng-torch-floats": (("rng", "torch"), torch.zeros(3)),
        "config-unknown-key": (("config",), {"train": {"stepz": 1}}),
        "config-text": (("config",), "x"),
        "prompt-number": (("prompt",), 5),
        "densify-text": (("densify_state",), "x"),
        "guidance-text": (("guidance",), "x"),
        "head-hash-other": (("head_hash",), "0" * 64),
        "format-2": (("format",), 2),
        "format-text": (("format",), "1"),
        "extra-key": (("note",), "kept"),
    }
    for case, (path, value) in edits.items():
        yield case, _edited(d, path, value)
    yield "a-list", [d]


def _checkpoint_bytes(obj: object, folder: Path, sign: bool) -> bytes:
    if isinstance(obj, dict):
        obj = {k: v for k, v in obj.items() if k != "sha256"}
        if sign:
            obj["sha256"] = content_digest(obj)
    p = folder / "tmp.pt"
    torch.save(obj, p)
    data = p.read_bytes()
    p.unlink()
    return data


def test_fuzz_checkpoints(tiny_setup: dict, tmp_path: Path, headstudio_cli, fuzz_tally) -> None:
    clean_run: Path = tiny_setup["run"]
    reference_dir = tmp_path / "reference"
    shutil.copytree(clean_run, reference_dir)
    res = headstudio_cli("generate", PROMPT, "--output", str(reference_dir), "--resume")
    assert res.rc == 0, res.err
    reference = _gaussians(reference_dir / "avatar.ply")
    raw = (clean_run / "checkpoints" / "last.pt").read_bytes()
    previous = (clean_run / "checkpoints" / "previous.pt").read_bytes()

    def run(kind: str, case: str, data: bytes) -> None:
        folder = tmp_path / case
        shutil.copytree(clean_run, folder)
        (folder / "avatar.ply").unlink()
        (folder / "checkpoints" / "last.pt").write_bytes(data)
        res = headstudio_cli("generate", PROMPT, "--output", str(folder), "--resume")
        verdict, problem = res.verdict, None
        if verdict == "accepted":
            if not _same(_gaussians(folder / "avatar.ply"), reference):
                problem = "accepted, but the avatar differs from the clean checkpoint's"
        elif verdict == "rejected":
            damaged = "is damaged" in res.error
            if case not in res.error:
                problem = f"the error line does not name the run's file: {res.error}"
            elif damaged and "previous.pt' (step 1) is intact" not in res.error:
                problem = f"the error does not name the intact previous checkpoint: {res.error}"
            elif (folder / "checkpoints" / "last.pt").read_bytes() != data or (
                folder / "checkpoints" / "previous.pt"
            ).read_bytes() != previous:
                problem = "rejected, yet the checkpoints were changed"
        else:
            problem = f"{verdict}: {res.err.strip()[-400:]}"
        fuzz_tally.add(kind, case, verdict if problem is None else "bad", problem)
        shutil.rmtree(folder)

    rng = random.Random(SEED)
    for i in range(18):
        b = bytearray(raw)
        k = rng.randrange(len(b))
        b[k] ^= 1 << rng.randrange(8)
        run("checkpoint", f"flip{i}-{k}", bytes(b))
    for i in range(5):
        k = rng.randrange(len(raw))
        run("checkpoint", f"cut{i}-{k}", raw[:k])
    run("checkpoint", "append", raw + b"\x00garbage")
    run("checkpoint", "empty", b"")
    run("checkpoint", "text", b"this is not a checkpoint\n")
    clean = torch.load(clean_run / "checkpoints" / "last.pt", weights_only=True)
    for case, obj in _checkpoint_edits(clean):  # written by a faulty writer: a valid digest
        run("checkpoint (re-signed)", f"signed-{case}", _checkpoint_bytes(obj, tmp_path, sign=True))
    for case, obj in _checkpoint_edits(clean):  # as older headstudio wrote them: no digest
        run("checkpoint (no digest)", f"legacy-{case}", _checkpoint_bytes(obj, tmp_path, sign=False))
    fuzz_tally.check()


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b, strict=True))


# ----------------------------------------------------------------------------- configs
def _config_edits(text: str) -> Iterator[tuple[str, str]]:
    """``(case, text)``: the config with one line replaced, added or removed."""
    replace = {
        "steps-text": ("steps = 2", 'steps = "ten"'),
        "sh-fraction": ("opacity = 0.1", "opacity = 0.1\nsh_degree = 1.5"),
        "fovy-scalar": ("fovy_deg = [40.0, 70.0]", "fovy_deg = 40"),
        "fovy-triple": ("fovy_deg = [40.0, 70.0]", "fovy_deg = [30, 40, 50]"),
        "kind-number": ('kind = "image"', "kind = 5"),
        "animation-text": ("animation = false", 'animation = "no"'),
        "lambda-bool": ("lambda_pos = 0.1", "lambda_pos = true"),
        "num_shape-list": ("num_shape = 10", "num_shape = [10]"),
        "target-word": ('target = "auto"', 'target = "centre"'),
        "betas-one": ("betas = [0.9, 0.99]", "betas = [0.9]"),
        "unknown-key": ("seed = 3", "seed = 3\nstepz = 5"),
        "unknown-section": ("[loss]", "[trainer]\nx = 1\n[loss]"),
        "top-level-key": ("# a tiny run", "steps = 5"),
        "nested-table": ("[loss]", "[train.sub]\nx = 1\n[loss]"),
        "section-scalar": ("[loss]\nlambda_pos = 0.1\nlambda_scale = 0.1\n", "loss = 3\n"),
        "lr-nan": ("lr_position = 5e-5", "lr_position = nan"),
        "lambda-inf": ("lambda_pos = 0.1", "lambda_pos = inf"),
        "scale-minus-inf": ("scene_scale = 0.2", "scene_scale = -inf"),
        "guidance-nan": ("guidance_scale = 7.5", "guidance_scale = nan"),
        "fovy-nan": ("fovy_deg = [40.0, 70.0]", "fovy_deg = [nan, 70.0]"),
        "grad-nan": ("grad_threshold = 0.002", "grad_threshold = nan"),
        "opacity-range": ("opacity = 0.1", "opacity = 1.5"),
        "expression-range": ("num_expression = 10", "num_expression = 101"),
        "duplicate-key": ("seed = 3", "seed = 3\nseed = 4"),
        "open-string": ('kind = "image"', 'kind = "image'),
        "open-array": ("betas = [0.9, 0.99]", "betas = [0.9, 0.99"),
        "no-key": ("seed = 3", "= 3"),
        "flame-missing": ("num_shape = 10", "num_shape = 10\nflame_pathx = 1"),
        "drop-lambda": ("lambda_pos = 0.1\n", ""),
        "drop-loss": ("[loss]\nlambda_pos = 0.1\nlambda_scale = 0.1\n", ""),
        "deprecated-dsds": ('mode = "fsds"', 'mode = "dsds"'),
        "int-for-float": ("guidance_scale = 7.5", "guidance_scale = 8"),
    }
    for case, (old, new) in replace.items():
        assert old in text, old
        yield case, text.replace(old, new, 1)


def _expected_config(text: str, sets: dict[str, object]) -> dict[str, dict[str, object]]:
    """What the run must resolve: defaults, then the file as tomllib reads it, then ``--set``."""
    out = config_to_dict(HeadStudioConfig())
    fsds = out["guidance"]["fsds"]
    for section, values in tomllib.loads(text).items():
        for k, v in values.items():
            if section == "guidance" and k not in out["guidance"] and k in fsds:
                fsds[k] = v  # a flat key of the earlier layout: it lands in [guidance.fsds]
            elif isinstance(v, dict) and isinstance(out[section].get(k), dict):
                out[section][k].update(v)
            else:
                out[section][k] = v
    for key, value in {**sets, "train.steps": 1, "train.device": "cpu"}.items():
        section, name = key.split(".")
        out[section][name] = value
    if fsds.get("mode") == "dsds":
        fsds["mode"] = "fsds"
    return out


def test_fuzz_configs(tiny_setup: dict, tmp_path: Path, headstudio_cli, fuzz_tally) -> None:
    text = tiny_setup["config"].read_text(encoding="utf-8")
    sets = tiny_setup["sets"]

    def run(case: str, data: bytes) -> None:
        src, out = tmp_path / f"{case}.toml", tmp_path / f"run-{case}"
        src.write_bytes(data)
        res = headstudio_cli(
            "generate",
            PROMPT,
            "--config",
            str(src),
            "--output",
            str(out),
            "--steps",
            "1",
            *tiny_setup["argv"],
        )
        verdict, problem = res.verdict, None
        if verdict == "accepted":
            got = tomllib.loads((out / "config.toml").read_text(encoding="utf-8"))
            want = _expected_config(data.decode("utf-8"), sets)
            diff = [
                f"{s}.{k}"
                for s in want
                for k in set(want[s]) | set(got.get(s, {}))
                if got.get(s, {}).get(k) != want[s].get(k)
            ]
            if diff:
                problem = f"accepted, but the run resolved {diff} differently from the file"
        else:
            problem = res.refusal_problem(src.name, out)
        fuzz_tally.add("TOML config", case, verdict if problem is None else "bad", problem)
        src.unlink()
        shutil.rmtree(out, ignore_errors=True)

    run("clean", text.encode())
    rng = random.Random(SEED)
    raw = text.encode()
    for i in range(16):
        b = bytearray(raw)
        k = rng.randrange(len(b))
        b[k] ^= 1 << rng.randrange(8)
        run(f"flip{i}-{k}", bytes(b))
    for i in range(4):
        k = rng.randrange(len(raw))
        run(f"cut{i}-{k}", raw[:k])
    for case, edited in _config_edits(text):
        run(case, edited.encode())
    run("latin1-bytes", raw.replace(b"# a tiny run", b"# a tiny run \xe9\xff"))
    fuzz_tally.check()


def test_resume_previous_after_damage(tiny_setup: dict, tmp_path: Path, headstudio_cli) -> None:
    """A half ``last.pt``: ``--resume`` says so and names ``previous.pt`` with the command; that
    command continues from step 1, keeps the damaged file, and ends on the clean run's avatar."""
    run = tmp_path / "run"
    shutil.copytree(tiny_setup["run"], run)
    last = run / "checkpoints" / "last.pt"
    damaged = last.read_bytes()[: last.stat().st_size // 2]
    last.write_bytes(damaged)
    (run / "avatar.ply").unlink()
    res = headstudio_cli("generate", PROMPT, "--output", str(run), "--resume")
    assert res.verdict == "rejected", res.err
    assert f"checkpoint '{last}' is damaged" in res.error, res.error
    assert "previous.pt' (step 1) is intact" in res.error and "--resume-previous" in res.error, res.error
    assert not (run / "avatar.ply").exists()
    res = headstudio_cli("generate", PROMPT, "--output", str(run), "--resume-previous")
    assert res.verdict == "accepted", res.err
    assert (run / "checkpoints" / "last.set-aside.pt").read_bytes() == damaged
    assert _same(_gaussians(run / "avatar.ply"), _gaussians(tiny_setup["run"] / "avatar.ply"))
