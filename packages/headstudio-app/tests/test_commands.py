"""The typed commands called directly (no argv, nothing patched): their policy (the resume rule,
the default run folder, which export options go together, the batch's GenerateOptions) and the
messages that name their options as ``«name»``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from headstudio.batch.runner import BatchOptions, plan_batch
from headstudio.cli.item import options_from_json
from headstudio.commands import RunFolder, export, generate
from headstudio.errors import HeadStudioError


def _options(tmp_path: Path, **kw) -> generate.GenerateOptions:
    return generate.GenerateOptions("a head", output=tmp_path / "run", device="cpu", **kw)


def test_generate_default_folder_is_the_prompts_slug() -> None:
    folder = generate.run_folder(generate.GenerateOptions("A DSLR portrait of Kratos!"))
    assert folder.path == Path("outputs/a-dslr-portrait-of-kratos")


def test_generate_resume_rule_before_any_work(tmp_path: Path) -> None:
    no_checkpoint = r"«resume»: no checkpoint at .*; run without «resume» to start"
    with pytest.raises(HeadStudioError, match=no_checkpoint):
        generate.run(_options(tmp_path, resume=True))
    assert not (tmp_path / "run").exists()  # refused before anything was written
    with pytest.raises(HeadStudioError, match="«dry_run» rehearses a new run; leave out «resume»"):
        generate.run(_options(tmp_path, resume=True, dry_run=True))
    run = RunFolder(tmp_path / "run")
    run.checkpoints.mkdir(parents=True)
    run.checkpoint.write_bytes(b"x")
    holds = r"«output» '.*run' already holds a run .*continue it with «resume»"
    with pytest.raises(HeadStudioError, match=holds):
        generate.run(_options(tmp_path))
    with pytest.raises(HeadStudioError, match="not readable by torch.load"):  # resume=None: continue it
        generate.run(_options(tmp_path, resume=None, overrides=("guidance.kind=image",)))
    assert sorted(p.name for p in run.path.iterdir()) == [RunFolder.LOCK, "checkpoints"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(HeadStudioError, match="«output» '.*file' exists and is not a directory"):
        generate.run(dataclasses.replace(_options(tmp_path), output=tmp_path / "file"))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"format": "web", "jaw": 0.3}, "«jaw» poses a single PLY; it applies to «format» ply, not web."),
        ({"format": "ply", "audio": "a.wav"}, "«audio» goes into a web export; use it with «format» web."),
        ({"format": "ply", "include_head_model": True}, "«include_head_model» applies to «format» web."),
        ({"format": "ply", "motion_frame": 2}, "«motion_frame» needs «motion» FILE."),
        ({"format": "web", "output": "x.ply"}, "«format» web writes a folder; give «output» a folder name"),
    ],
)
def test_export_option_compatibility(tmp_path: Path, fields: dict, message: str) -> None:
    if "audio" in fields:
        (tmp_path / "a.wav").write_bytes(b"RIFF")
        fields = {**fields, "audio": tmp_path / "a.wav"}
    fields = {"output": tmp_path / "o.ply", **fields}
    options = export.ExportOptions(avatar=tmp_path / "missing.ply", **fields)
    with pytest.raises(HeadStudioError) as info:
        export.run(options)  # refused before the (missing) avatar is read
    assert message in str(info.value)


def test_batch_items_are_generate_options_not_argv(tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    item_line = '{"prompt": "an old wizard", "seed": 3, "set": {"train.steps": 5}}\n'
    prompts.write_text(item_line, encoding="utf-8")
    options = BatchOptions(prompts, tmp_path / "out", overrides=("train.resolution=32",), steps=4)
    (item,) = plan_batch(options)
    got = item.generate_options(options, "cpu")
    assert got == generate.GenerateOptions(
        "an old wizard", output=tmp_path / "out" / "an-old-wizard", config=None,
        overrides=("train.resolution=32", "train.steps=4", "train.seed=3", "train.steps=5"), device="cpu",
        resume=None, progress=False, wait=True,
    )  # fmt: skip
    # what travels to the item's process (JSON) comes back as the same options
    assert options_from_json(json.dumps(dataclasses.asdict(got), default=str)) == got
