"""`headstudio batch` on the CPU with the local pool: every item is a real `generate` process that
loads the tiny models from disk in the hub layout (nothing patched). A worker is killed in the
middle and resumes bit-identical; a failing item is recorded while the others finish; Ctrl-C
stops cleanly. The Ray backend's tests are in tests/ray (`nox -s ray`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("headstudio.trainer")

from headstudio import cli  # noqa: E402

pytestmark = pytest.mark.slow

#: Tiny items: 32² renders, the tiny models at 64², one point per face, 10 shape/expression terms.
TINY = [
    "--device", "cpu", "--set", "train.resolution=32", "--set", "train.guidance_resolution=64",
    "--set", "train.batch_size=1", "--set", "init.points_per_face=1", "--set", "head.num_shape=10",
    "--set", "head.num_expression=10", "--set", "train.log_every=1",
]  # fmt: skip


def models(tiny_pipeline: tuple[Path, Path]) -> list[str]:
    base, controlnet = tiny_pipeline
    return ["--set", f"guidance.base_model={base}", "--set", f"guidance.controlnet={controlnet}"]


def records(out: Path) -> dict[str, dict]:
    lines = (out / "batch.jsonl").read_text(encoding="utf-8").splitlines()
    return {r["name"]: r for r in map(json.loads, lines)}


def gaussians(path: Path) -> dict[str, torch.Tensor]:
    from headstudio.avatar import Avatar

    a = Avatar.load(path)  # the loader's checks: a valid avatar
    out = {k: p.detach() for k, p in a.gaussian_params().items()}
    out["face_ids"] = a.face_ids
    return out


def test_three_items_on_two_workers_then_a_rerun_skips_them(tmp_path: Path, tiny_pipeline, capsys) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# heads\nA DSLR portrait of Kratos\n\nan old wizard\na dslr portrait of kratos\n")
    out = tmp_path / "batch"
    args = ["batch", str(prompts), "-o", str(out), "--workers", "2", "--steps", "2", *TINY]
    args += models(tiny_pipeline)
    assert cli.main(args) == 0, capsys.readouterr().err
    stdout = capsys.readouterr().out
    names = ["a-dslr-portrait-of-kratos", "an-old-wizard", "a-dslr-portrait-of-kratos-2"]
    recs = records(out)
    assert list(recs) == names
    for name, item in zip(names, (2, 4, 5), strict=True):
        r = recs[name]
        assert (r["item"], r["status"], r["attempts"], r["error"]) == (item, "done", 1, None), r
        g = gaussians(out / name / "avatar.ply")
        assert r["gaussians"] == g["means"].shape[0] > 0
        assert all(torch.isfinite(v).all() for k, v in g.items() if k != "face_ids")
        assert len((out / name / "log.jsonl").read_text().splitlines()) == 2  # exactly as generate writes
    assert "3 done in" in stdout and "0 left" in stdout
    logs = {n: (out / "_logs" / f"{n}.log").read_text() for n in names}

    assert cli.main(args) == 0
    stdout = capsys.readouterr().out
    assert "3 finished before (skipped)" in stdout and "3 skipped in" in stdout
    assert [r["status"] for r in records(out).values()] == ["skipped"] * 3
    assert {n: (out / "_logs" / f"{n}.log").read_text() for n in names} == logs  # no process started


def _kill_when_checkpointed(folder: Path, seen: dict, deadline: float) -> None:
    """SIGKILL the `generate` process of ``folder`` once it has written a checkpoint (not its end)."""
    while time.monotonic() < deadline:
        if (folder / "checkpoints" / "last.pt").is_file():
            for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
                try:
                    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if b"headstudio.cli" in argv and str(folder).encode() in argv:
                    seen["finished_before"] = (folder / "avatar.ply").exists()
                    os.kill(pid, signal.SIGKILL)
                    seen["pid"] = pid
                    return
        time.sleep(0.02)


def test_killed_worker_resumes_bit_identical_and_a_failed_item_is_recorded(
    tmp_path: Path, tiny_pipeline, capsys
) -> None:
    """Items "whole" and "killed" are the same avatar; killed's process is SIGKILLed after its first
    checkpoint, retried, resumed from that checkpoint, and ends bit-identical to whole. "broken"
    names a FLAME file that does not exist: recorded failed after its retry, the others finish."""
    prompts = tmp_path / "items.jsonl"
    prompts.write_text(
        '{"prompt": "a DSLR portrait of Kratos", "name": "whole"}\n'
        '{"prompt": "a DSLR portrait of Kratos", "name": "killed"}\n'
        '{"prompt": "an old wizard", "flame": "heads/missing/generic_model.pkl"}\n'
    )
    out = tmp_path / "batch"
    seen: dict = {}
    killer = threading.Thread(
        target=_kill_when_checkpointed, args=(out / "killed", seen, time.monotonic() + 600), daemon=True
    )
    killer.start()
    args = ["batch", str(prompts), "-o", str(out), "--workers", "2", "--retries", "1", "--steps", "4"]
    code = cli.main([*args, *TINY, "--set", "train.checkpoint_every=1", *models(tiny_pipeline)])
    killer.join(timeout=1)
    _, err = capsys.readouterr()
    assert "pid" in seen and seen["finished_before"] is False  # killed in the middle of its training
    assert code == 1 and "1 of 3 avatar(s) failed" in err

    recs = records(out)
    whole = recs["whole"]
    assert (whole["status"], whole["attempts"], whole["resumed"]) == ("done", 1, False)
    killed = recs["killed"]
    assert (killed["status"], killed["attempts"], killed["resumed"]) == ("done", 2, True), killed
    log = (out / "_logs" / "killed.log").read_text()
    assert "attempt 2" in log and "resuming" in log
    a, b = gaussians(out / "whole" / "avatar.ply"), gaussians(out / "killed" / "avatar.ply")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    steps = [json.loads(x)["step"] for x in (out / "killed" / "log.jsonl").read_text().splitlines()]
    assert steps[-1] == 4

    broken = recs["an-old-wizard"]
    assert (broken["status"], broken["attempts"]) == ("failed", 2)
    assert "missing" in broken["error"] and "\n" not in broken["error"]
    assert not (out / "an-old-wizard" / "avatar.ply").exists()


def test_ctrl_c_checkpoints_the_running_item_and_says_what_is_left(tmp_path: Path, tiny_pipeline) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a DSLR portrait of Kratos\nan old wizard\n")
    out = tmp_path / "batch"
    cmd = [sys.executable, "-m", "headstudio.cli", "batch", str(prompts), "-o", str(out), "--workers", "1"]
    proc = subprocess.Popen(
        [*cmd, "-q", "--steps", "1000", *TINY, *models(tiny_pipeline)],
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
    recs = records(out)
    assert [r["status"] for r in recs.values()] == ["interrupted", "pending"]
    assert (first / "checkpoints" / "last.pt").is_file() and not (first / "avatar.ply").exists()
    assert not (out / "an-old-wizard").exists()
