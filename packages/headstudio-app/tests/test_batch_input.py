"""`headstudio batch` before any work: the prompts file, folder names, the checks of bad input (one
line, exit 2, nothing written) and the summary; no item is trained here (tests/test_batch.py does)."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest
import torch
from flame_core import FlameModel
from headstudio import cli
from headstudio.avatar import Avatar
from headstudio.batch import pool
from headstudio.batch.items import read_items, slugify
from headstudio.batch.pool import plan_slots
from headstudio.batch.report import BatchReport, ItemRecord, read_records, summary_table
from headstudio.batch.runner import BatchOptions, plan_batch
from headstudio.config import InitConfig, config_to_dict, load_config
from headstudio.errors import HeadStudioError
from headstudio.train import run_folder


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_text_file_skips_comments_and_names_collisions_deterministically(tmp_path: Path) -> None:
    text = "# heads\n\nA DSLR portrait of Kratos!\n  \nA dslr portrait of KRATOS\nx\n"
    f = _write(tmp_path / "prompts.txt", text)
    items = read_items(f)
    assert [(i.index, i.prompt, i.name) for i in items] == [
        (3, "A DSLR portrait of Kratos!", "a-dslr-portrait-of-kratos"),
        (5, "A dslr portrait of KRATOS", "a-dslr-portrait-of-kratos-2"),
        (6, "x", "x"),
    ]
    assert [i.name for i in read_items(f)] == [i.name for i in items]  # the same file, the same folders
    assert slugify("!!!") == "avatar" and len(slugify("word " * 40)) <= 48


def test_jsonl_and_toml_items_become_overrides(tmp_path: Path) -> None:
    (tmp_path / "heads").mkdir()
    jsonl = _write(
        tmp_path / "p.jsonl",
        '{"prompt": "kratos", "seed": 3, "steps": 7, "flame": "heads/generic_model.pkl", "set": {"train": '
        '{"lr_color": 0.01}}}\n# a comment\n{"prompt": "kratos", "name": "kratos-again", "seed": 3, '
        '"steps": 7, "flame": "heads/generic_model.pkl", "set": ["train.lr_color=0.01"]}\n',
    )
    a, b = read_items(jsonl)
    flame = json.dumps(str(tmp_path / "heads" / "generic_model.pkl"))
    assert a.overrides == ("train.seed=3", "train.steps=7", f"head.flame_path={flame}", "train.lr_color=0.01")
    assert (a.name, b.name, b.overrides) == ("kratos", "kratos-again", a.overrides)  # named: asked on purpose
    toml = _write(tmp_path / "p.toml", '[[item]]\nprompt = "an old wizard"\nmotion = "talk.npz"\n')
    (item,) = read_items(toml)
    assert item.where == "p.toml [[item]] 1" and item.overrides[0].startswith("train.motion_path=")


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("p.txt", "", "holds no prompt"),
        ("p.txt", "# only a comment\n\n", "holds no prompt"),
        ("p.jsonl", '{"prompt": "a"}\n\n{"prompt": "b"\n', "p.jsonl line 3 is not valid JSON"),
        ("p.jsonl", '["a"]\n', "p.jsonl line 1 is a JSON list, not an object"),
        ("p.jsonl", '{"prompt": "a", "sed": 1}\n', "p.jsonl line 1: unknown field(s) sed"),
        ("p.jsonl", '{"prompt": "a", "seed": -1}\n', "p.jsonl line 1: seed must be an integer >= 0"),
        ("p.jsonl", '{"prompt": "a", "name": "A b"}\n', "p.jsonl line 1: name 'A b' is not a folder name"),
        ("p.txt", "a head\nb\na head\n", "p.txt line 3 repeats p.txt line 1"),
        ("p.toml", "[[item]]\nseed = 1\n", "p.toml [[item]] 1: no prompt"),
        ("p.toml", "prompt = 'a'\n", "unknown top-level key(s) prompt"),
    ],
)
def test_malformed_prompts_files_name_the_line(tmp_path: Path, name: str, text: str, expected: str) -> None:
    with pytest.raises(HeadStudioError) as info:
        read_items(_write(tmp_path / name, text))
    assert expected in str(info.value) and "\n" not in str(info.value)


def _batch(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = cli.main(["batch", *args])
    except SystemExit as e:  # argparse errors
        code = int(e.code)
    out, err = capsys.readouterr()
    return code, out, err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("text", "extra", "expected"),
    [
        ("", (), "holds no prompt"),
        ("a head\n\x07bad\n", (), "prompts.txt line 2: the prompt holds the control character"),
        ("a head\n", ("--set", "train.nope=1"), "unknown config key 'train.nope'"),
        ("a head\n", ("--workers", "0"), "--workers: 0 must be at least 1"),
        ("a head\n", ("--retries", "-1"), "--retries -1: give 0 or more"),
        ("a head\n", ("--ray", "127.0.0.1:{port}"), "no Ray cluster answers there"),
        ("a head\n", ("--ray", "nohost"), "give auto, HOST:PORT or ray://HOST:PORT"),
        ("a head\n", ("--ray", "", "--workers", "2"), "drop --workers"),
    ],
)
def test_bad_input_is_one_line_before_any_work(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, extra: tuple[str, ...], expected: str
) -> None:
    prompts = _write(tmp_path / "prompts.txt", text)
    out = tmp_path / "out"
    extra = tuple(a.format(port=_free_port()) for a in extra)
    code, stdout, err = _batch(capsys, str(prompts), "-o", str(out), "--device", "cpu", *extra)
    assert code == 2
    assert err.startswith("error: ") and expected in err and err.count("\n") == 1, err
    assert not out.exists() and stdout == ""  # nothing started, nothing written


def test_ray_missing_says_how_to_install_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    prompts = _write(tmp_path / "prompts.txt", "a head\n")
    code, _, err = _batch(capsys, str(prompts), "-o", str(tmp_path / "out"), "--ray")
    hint = 'pip install "headstudio-app[ray]"'
    assert code == 2 and err == f"error: --ray needs Ray, which is not installed; install it with: {hint}\n"
    assert not (tmp_path / "out").exists()


def test_an_item_setting_is_named_by_its_line(tmp_path: Path) -> None:
    text = '{"prompt": "a"}\n{"prompt": "b", "set": {"train.steps": "many"}}\n'
    prompts = _write(tmp_path / "p.jsonl", text)
    with pytest.raises(HeadStudioError, match="p.jsonl line 2: "):
        plan_batch(BatchOptions(prompts, tmp_path / "out"))


def test_a_folder_holding_another_items_run_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An edited prompts file never continues (or skips) the wrong avatar: the folder's checkpoint
    names another prompt."""
    prompts = _write(tmp_path / "p.jsonl", '{"prompt": "an old wizard", "name": "head"}\n')
    ckpt = tmp_path / "out" / "head" / "checkpoints" / "last.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"")
    seen = type("Checkpoint", (), {"prompt": "a young queen", "config": None})()
    monkeypatch.setattr(run_folder, "load_checkpoint", lambda path: seen)  # its prompt is all that is read
    with pytest.raises(HeadStudioError, match="holds the checkpoint of another item .*a young queen"):
        plan_batch(BatchOptions(prompts, tmp_path / "out"))


def test_cpu_slots_share_the_cores() -> None:
    slots = plan_slots("cpu", 2)
    assert [s.device for s in slots] == ["cpu", "cpu"]
    assert all(s.env["CUDA_VISIBLE_DEVICES"] == "" for s in slots)
    assert len(plan_slots("cpu", None)) == 1


def test_gpu_slots_one_per_visible_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each slot's items see one GPU (its CUDA_VISIBLE_DEVICES entry) and run on --device cuda."""

    monkeypatch.setattr(pool, "resolve_device", lambda d: torch.device(d.replace("auto", "cuda")))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")

    def gpus(device: str, workers: int | None) -> list[str]:
        slots = plan_slots(device, workers)
        assert {s.device for s in slots} == {"cuda"}
        return [s.env["CUDA_VISIBLE_DEVICES"] for s in slots]

    assert gpus("auto", None) == ["3", "5"]
    assert gpus("cuda", 3) == ["3", "5", "3"]  # more workers than GPUs: in turn
    assert gpus("cuda:1", None) == ["5"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert gpus("cuda", None) == ["0", "1"]


def test_summary_table_says_what_is_left() -> None:
    recs = [
        ItemRecord(1, "kratos", "kratos", "o/kratos", "done", 1, 12.0, 11636),
        ItemRecord(2, "wizard", "wizard", "o/wizard", "failed", 2, 3.0, error="FLAME file not found"),
        ItemRecord(3, "queen", "queen", "o/queen", "interrupted", 1, 5.0),
        ItemRecord(4, "elf", "elf", "o/elf", "pending"),
    ]
    table = summary_table(BatchReport(recs, stopped=True, seconds=75.0), with_clip=False)
    lines = table.splitlines()
    assert lines[0].split() == ["#", "name", "status", "tries", "time", "Gaussians", "error"]
    assert "11636" in lines[1] and "FLAME file not found" in lines[2] and lines[4].split()[-1] == "-"
    assert lines[-1] == "1 done, 1 failed, 1 interrupted, 1 pending in 1m15s; 3 left"


def _finished_avatar(folder: Path, prompt: str, steps: int) -> None:
    """What `generate --steps STEPS` leaves when it ends: a valid avatar naming its prompt and config."""
    avatar = Avatar.initialize(FlameModel.procedural(num_shape=10, num_expression=10), InitConfig(1))
    config = config_to_dict(load_config(None, [f"train.steps={steps}"]))
    avatar.save(folder / "avatar.ply", config=config, prompt=prompt)


def test_finished_items_are_skipped_and_scored_with_eval(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_clip: Path
) -> None:
    prompts = _write(tmp_path / "prompts.txt", "an old wizard\na young queen\n")
    out = tmp_path / "out"
    for name, prompt in (("an-old-wizard", "an old wizard"), ("a-young-queen", "a young queen")):
        _finished_avatar(out / name, prompt, steps=3)
    args = [str(prompts), "-o", str(out), "--steps", "3", "--device", "cpu", "-q", "--eval"]

    code, stdout, err = _batch(capsys, *args, "--clip-model", str(tmp_path / "no-clip"))
    assert code == 0, err
    assert "2 finished before (skipped)" in stdout and "--eval: no CLIP scores:" in stdout
    assert all(r["clip_score"] is None for r in read_records(out / "batch.jsonl").values())

    code, stdout, err = _batch(capsys, *args, "--clip-model", str(tiny_clip))
    assert code == 0, err
    recs = read_records(out / "batch.jsonl")
    assert [r["status"] for r in recs.values()] == ["skipped", "skipped"]
    for r in recs.values():
        assert -1.0 <= r["clip_score"] <= 1.0 and list(r["clip_scores"]) == [str(tiny_clip)]
        assert r["gaussians"] > 0
    assert stdout.splitlines()[1].split()[-2:] == ["CLIP", "error"]
    assert f"{recs['an-old-wizard']['clip_score']:.4f}" in stdout

    _finished_avatar(out / "a-young-queen", "a bronze statue", steps=3)  # another item's avatar there
    code, _, err = _batch(capsys, *args)
    assert code == 2 and "holds the avatar of another item (prompt 'a bronze statue')" in err


def test_an_item_may_be_a_photo_with_or_without_a_prompt(tmp_path):
    from headstudio.batch.items import read_items

    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "Ada Lovelace.png").write_bytes(b"not read here")
    f = tmp_path / "items.jsonl"
    f.write_text(
        '{"image": "photos/Ada Lovelace.png"}\n'
        '{"image": "photos/Ada Lovelace.png", "prompt": "this person as an elf", "steps": 50}\n'
    )
    a, b = read_items(f)
    assert a.image == tmp_path / "photos" / "Ada Lovelace.png" and a.prompt == "" and a.name == "ada-lovelace"
    assert b.image == a.image and b.prompt == "this person as an elf" and "train.steps=50" in b.overrides
    f.write_text('{"image": "photos/missing.png"}\n')
    with pytest.raises(HeadStudioError, match=r"items.jsonl line 1: photo .*missing.png' does not exist"):
        read_items(f)
    f.write_text('{"name": "x"}\n')
    with pytest.raises(HeadStudioError, match='no prompt; give "prompt"'):
        read_items(f)
