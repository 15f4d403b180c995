"""`headstudio batch` on the CPU with the local pool: every item is a real `generate` process that
loads the tiny models from disk in the hub layout (nothing patched). A worker is killed in the
middle and resumes bit-identical; a failing item is recorded while the others finish; Ctrl-C
stops cleanly. The Ray backend's tests are tests/test_batch_ray.py (`nox -s ray`)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("headstudio.train.trainer")

from headstudio import cli  # noqa: E402
from headstudio.batch.report import read_records  # noqa: E402
from headstudio.batch.testing import KillAfterCheckpoint, avatar_tensors  # noqa: E402

pytestmark = pytest.mark.slow


def test_three_items_on_two_workers_then_a_rerun_skips_them(tmp_path: Path, tiny_batch_items, capsys) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# heads\nA DSLR portrait of Kratos\n\nan old wizard\na dslr portrait of kratos\n")
    out = tmp_path / "batch"
    args = ["batch", str(prompts), "-o", str(out), "--workers", "2", "--steps", "2", "--device", "cpu"]
    args += tiny_batch_items
    code = cli.main(args)
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert "3/3" in err and "done=3, running=0, failed=0, skipped=0" in err  # the progress bar
    names = ["a-dslr-portrait-of-kratos", "an-old-wizard", "a-dslr-portrait-of-kratos-2"]
    recs = read_records(out / "batch.jsonl")
    assert list(recs) == names
    for name, item in zip(names, (2, 4, 5), strict=True):
        r = recs[name]
        assert (r["item"], r["status"], r["attempts"], r["error"]) == (item, "done", 1, None), r
        g = avatar_tensors(out / name / "avatar.ply")
        assert r["gaussians"] == g["means"].shape[0] > 0
        assert all(torch.isfinite(v).all() for k, v in g.items() if k != "face_ids")
        assert len((out / name / "log.jsonl").read_text().splitlines()) == 2  # exactly as generate writes
    assert "3 done in" in stdout and "0 left" in stdout
    logs = {n: (out / "_logs" / f"{n}.log").read_text() for n in names}

    assert cli.main(args) == 0
    stdout, err = capsys.readouterr()
    assert "3 finished before (skipped)" in stdout and "skipped=3" in err and "3 skipped in" in stdout
    assert [r["status"] for r in read_records(out / "batch.jsonl").values()] == ["skipped"] * 3
    assert {n: (out / "_logs" / f"{n}.log").read_text() for n in names} == logs  # no process started


def test_killed_worker_resumes_bit_identical_and_a_failed_item_is_recorded(
    tmp_path: Path, tiny_batch_items, capsys
) -> None:
    """Items "whole" and "killed" are the same avatar; killed's process is SIGKILLed after its first
    checkpoint, retried, resumed from that checkpoint, and ends bit-identical to whole. The third
    item names a FLAME file that does not exist: recorded failed after its retry, the others finish."""
    prompts = tmp_path / "items.jsonl"
    prompts.write_text(
        '{"prompt": "a DSLR portrait of Kratos", "name": "whole"}\n'
        '{"prompt": "a DSLR portrait of Kratos", "name": "killed"}\n'
        '{"prompt": "an old wizard", "flame": "heads/missing/generic_model.pkl"}\n'
    )
    out = tmp_path / "batch"
    killer = KillAfterCheckpoint(out / "killed")
    args = ["batch", str(prompts), "-o", str(out), "--workers", "2", "--retries", "1", "--steps", "4"]
    code = cli.main([*args, "--device", "cpu", *tiny_batch_items])
    killer.join()
    _, err = capsys.readouterr()
    assert killer.killed is not None and killer.finished_before is False  # killed in the middle
    assert code == 1 and "1 of 3 avatar(s) failed" in err

    recs = read_records(out / "batch.jsonl")
    whole, killed = recs["whole"], recs["killed"]
    assert (whole["status"], whole["attempts"], whole["resumed"]) == ("done", 1, False)
    assert (killed["status"], killed["attempts"], killed["resumed"]) == ("done", 2, True), killed
    log = (out / "_logs" / "killed.log").read_text()
    assert "attempt 2" in log and "resuming" in log
    a, b = avatar_tensors(out / "whole" / "avatar.ply"), avatar_tensors(out / "killed" / "avatar.ply")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    steps = [json.loads(x)["step"] for x in (out / "killed" / "log.jsonl").read_text().splitlines()]
    assert steps[-1] == 4

    broken = recs["an-old-wizard"]
    assert (broken["status"], broken["attempts"]) == ("failed", 2)
    assert "missing" in broken["error"] and "\n" not in broken["error"]
    assert not (out / "an-old-wizard" / "avatar.ply").exists()


def test_ctrl_c_checkpoints_the_running_item_and_says_what_is_left(tmp_path: Path, tiny_batch_items) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a DSLR portrait of Kratos\nan old wizard\n")
    out = tmp_path / "batch"
    cmd = [sys.executable, "-m", "headstudio.cli", "batch", str(prompts), "-o", str(out), "--workers", "1"]
    proc = subprocess.Popen(
        [*cmd, "-q", "--steps", "1000", "--device", "cpu", *tiny_batch_items],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    first = out / "a-dslr-portrait-of-kratos"
    deadline = time.monotonic() + 300
    while not (first / "log.jsonl").is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # until it trains
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr
    assert "batch stopped with 2 of 2 avatar(s) left (1 continue from their checkpoint)" in stderr
    assert "1 interrupted, 1 pending" in stdout and "2 left" in stdout
    recs = read_records(out / "batch.jsonl")
    assert [r["status"] for r in recs.values()] == ["interrupted", "pending"]
    assert (first / "checkpoints" / "last.pt").is_file() and not (first / "avatar.ply").exists()
    assert not (out / "an-old-wizard").exists()
