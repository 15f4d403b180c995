"""`headstudio batch --ray` on a local Ray cluster with fake GPUs (`ray.init(num_cpus=2, num_gpus=2)`):
one task per item, each asking for one GPU; a task's Ray worker is killed in the middle of its item,
Ray runs the task again and the item resumes from its checkpoint, bit-identical to an item that was
never stopped. Needs the `ray` extra: run with `nox -s ray` (deselected from the default run)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ray = pytest.importorskip("ray")

from headstudio import cli  # noqa: E402
from headstudio.batch.report import read_records  # noqa: E402
from headstudio.batch.testing import KillAfterCheckpoint, avatar_tensors  # noqa: E402

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def test_ray_batch_with_a_killed_task_retried(tmp_path: Path, tiny_batch_items, cluster, capsys) -> None:
    assert cluster.cluster_resources()["GPU"] == 2
    prompts = tmp_path / "items.jsonl"
    prompts.write_text(
        '{"prompt": "a DSLR portrait of Kratos", "name": "whole"}\n'
        '{"prompt": "a DSLR portrait of Kratos", "name": "killed"}\n'
        '{"prompt": "an old wizard"}\n'
    )
    out = tmp_path / "batch"
    killer = KillAfterCheckpoint(out / "killed", parent=True)  # the Ray worker running the task
    args = ["batch", str(prompts), "-o", str(out), "--ray", "--retries", "1", "--steps", "4"]
    code = cli.main([*args, *tiny_batch_items])
    killer.join()
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert "Ray cluster with 2 GPU(s), 2 CPU(s) (one GPU per item)" in stdout
    assert killer.killed is not None and killer.finished_before is False

    recs = read_records(out / "batch.jsonl")
    assert [r["status"] for r in recs.values()] == ["done"] * 3
    assert recs["killed"]["resumed"] is True and recs["whole"]["resumed"] is False
    log = (out / "_logs" / "killed.log").read_text()
    assert log.count("=== ") == 2 and "resuming" in log  # Ray ran the task again; it continued
    a, b = avatar_tensors(out / "whole" / "avatar.ply"), avatar_tensors(out / "killed" / "avatar.ply")
    for k in a:
        assert torch.equal(a[k], b[k]), k

    assert cli.main([*args, *tiny_batch_items]) == 0
    assert [r["status"] for r in read_records(out / "batch.jsonl").values()] == ["skipped"] * 3


def test_each_task_gets_its_own_gpu(cluster) -> None:
    """What Ray gives a task asking one of the 2 fake GPUs: one GPU id, its CUDA_VISIBLE_DEVICES."""
    from headstudio.batch.ray_backend import RayBackend

    backend = RayBackend(None, "auto", retries=0)
    assert backend.use_gpus and backend.capacity() == 2

    @ray.remote(num_gpus=1)
    def visible() -> tuple[list, str]:
        import os

        return ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES", "")

    ids = ray.get([visible.remote() for _ in range(2)])
    assert all(len(g) == 1 and env == str(g[0]) for g, env in ids)
