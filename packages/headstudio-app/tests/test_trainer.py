"""The trainer on the CPU: outputs, exact resume, Ctrl-C, non-finite losses, skipped steps,
shape stop, densification and the loss weights (tiny F-SDS models, 32² renders, one Gaussian per
triangle)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal

import pytest
import torch
from headstudio.config import LossConfig
from headstudio.errors import HeadStudioError
from headstudio.train.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_KEYS, load_checkpoint
from headstudio.train.guidance import FSDSGuidance, Guidance, GuidanceOutput, ImageGuidance
from headstudio.train.targets import TargetSet
from headstudio.train.trainer import NonFiniteLossError, Trainer, TrainingInterrupted


@pytest.fixture(scope="module")
def head():
    from flame_core.model import FlameModel

    return FlameModel.procedural(num_shape=10, num_expression=10)


@pytest.fixture(scope="module")
def tiny_models():
    from fsds_guidance.testing import tiny_components

    return tiny_components()


def make_config(steps: int = 4, **train):
    from headstudio.config import HeadStudioConfig

    cfg = HeadStudioConfig()
    cfg.head.num_shape, cfg.head.num_expression = 10, 10
    t = cfg.train
    t.steps, t.batch_size, t.resolution, t.guidance_resolution, t.device = steps, 2, 32, 64, "cpu"
    t.log_every, t.preview_every, t.checkpoint_every = 1, 0, 0
    for k, v in train.items():
        setattr(t, k, v)
    cfg.init.points_per_face = 1
    cfg.densify.enabled = False
    return cfg


def fsds(cfg, head, models) -> FSDSGuidance:
    return FSDSGuidance(cfg.guidance, head, "cpu", models=models, prompt="a portrait", image_size=64, seed=0)


def params(tr: Trainer) -> dict[str, torch.Tensor]:
    out = {k: p.detach().clone() for k, p in tr.avatar.gaussian_params().items()}
    out["shape"] = tr.avatar.shape.detach().clone()
    out["face_ids"] = tr.avatar.face_ids.clone()
    return out


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].shape == b[k].shape, k
        assert torch.equal(a[k], b[k]), f"{k} differs"


class Scripted(Guidance):
    """Wraps a guidance; ``overrides[step]`` replaces its output at that step."""

    def __init__(self, inner, overrides):
        self.inner, self.overrides = inner, overrides
        self.loss_terms = inner.loss_terms

    def state_dict(self):
        return self.inner.state_dict()

    def __call__(self, renders, batch, step, vertices):
        out = self.inner(renders, batch, step, vertices)
        if step in self.overrides:
            return self.overrides[step](out, renders)
        return out


# ------------------------------------------------------------------------------------ outputs


def test_train_writes_all_outputs(tmp_path, head, tiny_models):
    from headstudio.avatar import Avatar
    from headstudio.config import load_config

    cfg = make_config(steps=4, preview_every=2, checkpoint_every=2)
    tr = Trainer.new(
        cfg, "a portrait", tmp_path, guidance=fsds(cfg, head, tiny_models), head=head, progress=False
    )
    before = params(tr)
    path = tr.train()
    assert path == tmp_path / "avatar.ply" and path.is_file()
    loaded = Avatar.load(path, head=head)
    assert loaded.num_gaussians == tr.avatar.num_gaussians
    assert torch.allclose(loaded.means, tr.avatar.means.detach(), atol=1e-6)
    assert load_config(tmp_path / "config.toml").train.steps == 4
    records = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(
        "loss" in r and "loss_sds" in r and r["num_gaussians"] == loaded.num_gaussians for r in records
    )
    assert sorted(p.name for p in (tmp_path / "previews").iterdir()) == ["step_00002.png", "step_00004.png"]
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert ckpt.step == 4 and ckpt.num_gaussians == loaded.num_gaussians
    after = params(tr)
    assert not torch.equal(before["sh"], after["sh"])  # training changed the colours
    # no temporary files left behind
    assert not [p for p in tmp_path.rglob("*partial*")]


def test_preview_grid_is_views_by_expressions(tmp_path, head, tiny_models):
    from PIL import Image

    cfg = make_config(steps=1)
    tr = Trainer.new(
        cfg, "a portrait", tmp_path, guidance=fsds(cfg, head, tiny_models), head=head, progress=False
    )
    rng = torch.get_rng_state()
    p = tr.save_preview()
    assert torch.equal(rng, torch.get_rng_state())  # previews consume no random numbers
    img = Image.open(p)
    assert img.size == (4 * 64, 3 * 64)
    a = torch.tensor(__import__("numpy").array(img), dtype=torch.float32)
    assert a.std() > 5  # not blank
    assert (a[:64] - a[128:]).abs().mean() > 0  # the open-jaw row differs from the neutral row


def test_existing_run_needs_resume_and_resume_needs_a_checkpoint(tmp_path, head, tiny_models):
    cfg = make_config(steps=1)
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "last.pt").write_bytes(b"junk")
    with pytest.raises(HeadStudioError, match="already holds a run.*resume") as info:
        Trainer.new(cfg, "p", tmp_path / "run", guidance=fsds(cfg, head, tiny_models), head=head)
    assert "«output»" in str(info.value)  # the CLI prints its flag
    with pytest.raises(HeadStudioError, match="not readable"):
        Trainer.resume(tmp_path / "run", cfg, "p", guidance=fsds(cfg, head, tiny_models), head=head)
    with pytest.raises(HeadStudioError, match="does not exist"):
        Trainer.resume(tmp_path / "other", cfg, "p", guidance=fsds(cfg, head, tiny_models), head=head)


# ------------------------------------------------------------------------------ exact resume


def _densify_config(cfg):
    d = cfg.densify
    d.enabled = True
    d.grad_threshold = 0.0  # every visible Gaussian qualifies: the count must change
    d.densify_from, d.densify_every, d.densify_until = 2, 2, 2
    d.prune_from, d.prune_every, d.prune_until = 4, 2, 6
    return cfg


@pytest.mark.slow
def test_interrupted_and_resumed_run_is_bit_identical(tmp_path, head, tiny_models):
    steps = 6
    cfg_a = _densify_config(make_config(steps=steps))
    full = Trainer.new(
        cfg_a,
        "a portrait",
        tmp_path / "a",
        guidance=fsds(cfg_a, head, tiny_models),
        head=head,
        progress=False,
    )
    n0 = full.avatar.num_gaussians
    full.train()
    assert full.avatar.num_gaussians != n0  # densification happened

    def stop_at_3(trainer, step):
        if step == 3:
            raise KeyboardInterrupt

    cfg_b = _densify_config(make_config(steps=steps))
    part = Trainer.new(
        cfg_b,
        "a portrait",
        tmp_path / "b",
        guidance=fsds(cfg_b, head, tiny_models),
        head=head,
        progress=False,
        callback=stop_at_3,
    )
    with pytest.raises(TrainingInterrupted, match="Trainer.resume") as info:
        part.train()
    assert "step 3/6" in str(info.value) and info.value.output_dir == tmp_path / "b"
    assert load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt").step == 3
    # the file keeps the format-1 layout (checkpoints of earlier versions resume; a change is a new format)
    raw = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)
    assert raw["format"] == CHECKPOINT_FORMAT == 1 and set(raw) == set(CHECKPOINT_KEYS)
    assert set(raw["avatar"]) == {"gaussians", "face_ids", "shape"}
    assert raw["densify_state"]["__dataclass__"] == "DensifyState"
    assert not (tmp_path / "b" / "avatar.ply").exists()
    # a different process state before resuming must not matter
    torch.manual_seed(1234)
    torch.rand(10)

    resumed = Trainer.resume(
        tmp_path / "b",
        make_config(steps=steps),
        None,
        guidance=fsds(cfg_b, head, tiny_models),
        head=head,
        progress=False,
    )
    assert resumed.step == 3 and resumed.prompt == "a portrait"
    resumed.train()
    assert_same(params(full), params(resumed))
    sa, sb = full.optimizer.state_dict(), resumed.optimizer.state_dict()
    for i in sa["state"]:
        for k in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(sa["state"][i][k], sb["state"][i][k])
    log_b = (tmp_path / "b" / "log.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in log_b] == list(range(1, steps + 1))
    assert log_b == (tmp_path / "a" / "log.jsonl").read_text().splitlines() or all(
        json.loads(x)["loss"] == json.loads(y)["loss"]
        for x, y in zip(log_b, (tmp_path / "a" / "log.jsonl").read_text().splitlines())
    )


def test_crash_after_periodic_checkpoint_resumes_exactly(tmp_path, head, tiny_models):
    """A run killed (any exception) after the step-2 checkpoint continues from step 2."""
    steps = 4
    cfg = make_config(steps=steps, checkpoint_every=2)
    full = Trainer.new(
        cfg, "p", tmp_path / "a", guidance=fsds(cfg, head, tiny_models), head=head, progress=False
    )
    full.train()

    def crash(trainer, step):
        if step == 3:
            raise RuntimeError("killed")

    part = Trainer.new(
        cfg,
        "p",
        tmp_path / "b",
        guidance=fsds(cfg, head, tiny_models),
        head=head,
        progress=False,
        callback=crash,
    )
    with pytest.raises(RuntimeError, match="killed"):
        part.train()
    resumed = Trainer.resume(
        tmp_path / "b",
        cfg,
        "p",
        guidance=fsds(cfg, head, tiny_models),
        head=head,
        progress=False,
    )
    assert resumed.step == 2
    resumed.train()
    assert_same(params(full), params(resumed))


# ------------------------------------------------------------------------------ Ctrl-C


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sigint_finishes_the_step_saves_and_stops(tmp_path, head, tiny_models, signum):
    def ctrl_c(trainer, step):
        if step == 2:
            os.kill(os.getpid(), signum)

    cfg = make_config(steps=5)
    tr = Trainer.new(
        cfg,
        "a portrait",
        tmp_path,
        guidance=fsds(cfg, head, tiny_models),
        head=head,
        progress=False,
        callback=ctrl_c,
    )
    previous = signal.getsignal(signum)
    with pytest.raises(TrainingInterrupted) as info:
        tr.train()
    msg = str(info.value)
    assert "checkpoint saved" in msg and f"Trainer.resume('{tmp_path}')" in msg
    assert info.value.summary.startswith("interrupted at step 2/5")
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt").step == 2
    assert signal.getsignal(signum) is previous  # handler restored


def test_cli_reports_interruption_with_exit_130(tmp_path, head, tiny_models, monkeypatch, capsys):
    from headstudio import cli
    from headstudio.train import guidance

    monkeypatch.setattr(guidance.FSDSGuidance, "_load_models", lambda self, config: tiny_models)
    real_new = Trainer.new.__func__

    def new(cls, *a, **kw):
        return real_new(cls, *a, **kw, callback=lambda tr, s: (_ for _ in ()).throw(KeyboardInterrupt))

    monkeypatch.setattr(Trainer, "new", classmethod(new))
    rc = cli.main(
        [
            "generate",
            "a portrait",
            "--output",
            str(tmp_path / "r"),
            "--device",
            "cpu",
            "-q",
            "--set",
            "train.resolution=32",
            "--set",
            "train.guidance_resolution=64",
            "--set",
            "init.points_per_face=1",
            "--set",
            "train.batch_size=1",
            "--steps",
            "3",
            "--set",
            "densify.enabled=false",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 130
    assert "interrupted at step 1/3" in err and f"--output {tmp_path / 'r'} --resume" in err


# ------------------------------------------------------------------------------ failures


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, head, tiny_models):
    cfg = make_config(steps=6, checkpoint_every=2)
    nan = {
        4: lambda out, r: GuidanceOutput({"loss_sds": out.losses["loss_sds"] * float("nan")}, logs=out.logs)
    }
    guid = Scripted(fsds(cfg, head, tiny_models), nan)
    tr = Trainer.new(cfg, "p", tmp_path, guidance=guid, head=head, progress=False)
    with pytest.raises(NonFiniteLossError, match="step 4") as info:
        tr.train()
    assert "step 2" in str(info.value) and "intact" in str(info.value)
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert ckpt.step == 2
    assert all(torch.isfinite(v).all() for v in ckpt.gaussians.values())
    assert not (tmp_path / "avatar.ply").exists()


def test_skipped_guidance_step_leaves_parameters_unchanged(tmp_path, head, tiny_models):
    cfg = make_config(steps=2)
    skip = {1: lambda out, r: GuidanceOutput({"loss_sds": r.sum() * 0.0}, skipped=True)}
    seen = {}
    tr = Trainer.new(
        cfg,
        "p",
        tmp_path,
        guidance=Scripted(fsds(cfg, head, tiny_models), skip),
        head=head,
        progress=False,
        callback=lambda t, s: seen.__setitem__(s, params(t)),
    )
    before = params(tr)
    tr.train()
    assert_same(before, seen[1])
    assert not torch.equal(seen[1]["sh"], seen[2]["sh"])
    assert tr.num_skipped == 1


# ------------------------------------------------------------------------------ shape stop


def _targets(head, n: int = 6, size: int = 32) -> TargetSet:
    from headstudio.cameras import CameraSampler, head_target
    from headstudio.config import CameraConfig

    with torch.no_grad():
        v = head().vertices
    cams = CameraSampler(CameraConfig(), size, size, head_target(v)).sample(
        n, torch.Generator().manual_seed(0)
    )
    g = torch.Generator().manual_seed(1)
    return TargetSet(
        images=torch.rand(n, size, size, 3, generator=g),
        viewmats=cams.viewmats[:, 0],
        Ks=cams.Ks[:, 0],
        flame={"expression": 0.5 * torch.randn(n, 10, generator=g)},
    )


def test_shape_stops_learning_at_shape_stop_step(tmp_path, head):
    cfg = make_config(steps=4, shape_stop_step=2, lr_shape=0.05)
    shapes = {}
    tr = Trainer.new(
        cfg,
        "p",
        tmp_path,
        guidance=ImageGuidance(_targets(head)),
        head=head,
        progress=False,
        callback=lambda t, s: shapes.__setitem__(s, t.avatar.shape.detach().clone()),
    )
    s0 = tr.avatar.shape.detach().clone()
    tr.train()
    assert not torch.equal(s0, shapes[1]) and not torch.equal(shapes[1], shapes[2])  # learning
    assert torch.equal(shapes[2], shapes[3]) and torch.equal(shapes[3], shapes[4])  # stopped


@pytest.mark.slow
def test_image_guidance_training_fits_teacher_renders(tmp_path, head):
    from flame_core.motion import procedural_talking_motion
    from headstudio.config import CameraConfig
    from headstudio.demo.run import render_targets
    from headstudio.demo.teacher import build_teacher_avatar

    teacher = build_teacher_avatar(head, points_per_face=1)
    motion = procedural_talking_motion(num_frames=30, num_expression=10)
    targets = render_targets(teacher, 8, 32, CameraConfig(), motion, torch.Generator().manual_seed(0))
    cfg = make_config(steps=20, lr_color=0.05, lr_opacity=0.05, background="white")
    cfg.train.batch_size = 4
    tr = Trainer.new(cfg, "p", tmp_path, guidance=ImageGuidance(targets), head=head, progress=False)
    tr.train()
    losses = [json.loads(x)["loss_l1"] for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


def test_resume_on_another_head_model_is_an_error(tmp_path, head, tiny_models):
    from flame_core.model import FlameModel

    cfg = make_config(steps=1)
    Trainer.new(cfg, "p", tmp_path, guidance=fsds(cfg, head, tiny_models), head=head, progress=False).train()
    other = FlameModel.procedural(num_shape=10, num_expression=10)
    other.identity_hash = lambda: "0" * 64  # stands in for an official FLAME file
    with pytest.raises(HeadStudioError, match="another head model") as info:
        Trainer.resume(tmp_path, make_config(steps=2), "p", head=other, guidance=fsds(cfg, head, tiny_models))
    assert info.value.argument == "head"


# ------------------------------------------------------------------------------ loss weights


@dataclasses.dataclass
class ToyLossConfig(LossConfig):
    """The configuration of a project that adds one loss: a new ``lambda_`` field, nothing else."""

    lambda_toy: float = 0.5


class ToyGuidance(Guidance):
    """A new guidance with a new term: ``loss_toy`` pulls every render towards black."""

    loss_terms = ("loss_toy",)

    def __call__(self, renders, batch, step, vertices):
        return GuidanceOutput({"loss_toy": renders.mean()})


def test_a_new_loss_term_needs_only_a_lambda_field(tmp_path, head):
    cfg = make_config(steps=3, lr_color=0.05, background="white")
    cfg.loss = ToyLossConfig()
    cfg.regularizer.pos_from = 0  # both regulariser terms from the first step
    tr = Trainer.new(cfg, "p", tmp_path, guidance=ToyGuidance(), head=head, progress=False)
    colour0 = tr.avatar.sh[:, 0].detach().mean()
    tr.train()
    records = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    for r in records:  # the total is the weighted sum of every term, the regulariser's included
        want = 0.5 * r["loss_toy"] + 0.1 * r["loss_pos"] + 0.1 * r["loss_scale"]
        assert r["loss"] == pytest.approx(want, rel=1e-5)
    assert tr.avatar.sh[:, 0].detach().mean() < colour0 - 0.01  # the term drives training: darker
    # without its lambda_ field the term cannot be weighed: one clear error before training
    cfg.loss = LossConfig()
    with pytest.raises(HeadStudioError, match="add a field lambda_toy"):
        Trainer.new(cfg, "p", tmp_path / "b", guidance=ToyGuidance(), head=head)
    # a zero weight leaves the term out; all of the guidance's at zero is an error
    cfg.loss = ToyLossConfig(lambda_toy=0.0)
    with pytest.raises(HeadStudioError, match="loss.lambda_toy"):
        Trainer.new(cfg, "p", tmp_path / "c", guidance=ToyGuidance(), head=head)


def test_weighted_loss_leaves_zero_weights_out(tmp_path, head):
    cfg = make_config(steps=1)
    cfg.loss = LossConfig(lambda_l1=2.0, lambda_ssim=0.0, lambda_pos=0.5)
    tr = Trainer.new(cfg, "p", tmp_path, guidance=ImageGuidance(_targets(head)), head=head, progress=False)
    terms = {
        "loss_l1": torch.tensor(0.25),
        "loss_ssim": torch.tensor(float("nan")),
        "loss_pos": torch.tensor(1.0),
    }
    assert float(tr.weighted_loss(terms)) == 2.0 * 0.25 + 0.5 * 1.0
    cfg.loss = LossConfig(lambda_l1=0.0, lambda_ssim=0.0)
    with pytest.raises(HeadStudioError, match="lambda_l1"):
        Trainer.new(cfg, "p", tmp_path / "b", guidance=ImageGuidance(_targets(head)), head=head)


# ------------------------------------------------------------- densification, units, diagnostics


def _teacher_targets(head, n: int = 8, size: int = 32) -> TargetSet:
    from flame_core.motion import procedural_talking_motion
    from headstudio.config import CameraConfig
    from headstudio.demo.run import render_targets
    from headstudio.demo.teacher import build_teacher_avatar

    teacher = build_teacher_avatar(head, points_per_face=1)
    motion = procedural_talking_motion(num_frames=30, num_expression=10)
    return render_targets(teacher, n, size, CameraConfig(), motion, torch.Generator().manual_seed(0))


def _densifying_config(steps: int = 6):
    """Image guidance at 32², densify on steps 2 and 4, prune-only on step 6, default threshold."""
    cfg = make_config(steps=steps, lr_color=0.05, lr_opacity=0.05, background="white")
    cfg.train.batch_size = 2
    d = cfg.densify
    d.enabled = True
    d.densify_from, d.densify_every, d.densify_until = 2, 2, 4
    d.prune_from, d.prune_every, d.prune_until = 6, 2, 6
    d.screen_size_from = 0
    return cfg


def test_budget_is_never_exceeded_and_says_when_it_binds(tmp_path, head, caplog):
    cfg = _densifying_config(steps=4)
    n0 = head.num_faces  # one Gaussian per triangle, below 80 % of the budget
    cfg.densify.max_gaussians = n0 + 3000
    tr = Trainer.new(
        cfg, "p", tmp_path, guidance=ImageGuidance(_teacher_targets(head)), head=head, progress=False
    )
    with caplog.at_level(logging.WARNING, logger="headstudio.train.trainer"):
        tr.train()
    counts = [json.loads(x)["num_gaussians"] for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert counts[0] == n0 and max(counts) == n0 + 3000 and all(c <= n0 + 3000 for c in counts)
    bound = [r.getMessage() for r in caplog.records if "budget bound" in r.getMessage()]
    assert len(bound) == 2 and "step 2" in bound[0] and "step 4" in bound[1]  # each time it binds
    passed = [r.getMessage() for r in caplog.records if "passed 80% of the budget" in r.getMessage()]
    assert len(passed) == 1  # once per run, though N stays above 80 % at every later record


def test_log_records_carry_the_health_figures(tmp_path, head):
    cfg = _densifying_config(steps=3)
    cfg.regularizer.pos_from = 2  # the position term (and its ratio) from step 2 on
    tr = Trainer.new(
        cfg, "p", tmp_path, guidance=ImageGuidance(_teacher_targets(head)), head=head, progress=False
    )
    tr.train()
    records = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    for r in records:
        for key in ("num_gaussians", "stat_mean", "stat_p50", "stat_p99", "n_cloned", "n_split", "n_pruned",
                    "grad_guidance", "grad_guidance_scale", "scale_ratio", "ms_per_step",
                    "n_skipped"):  # fmt: skip
            assert key in r, key
        assert r["ms_per_step"] > 0 and r["grad_guidance"] > 0 and r["n_skipped"] == 0
        assert r["grad_guidance_scale"] > 0 and r["scale_ratio"] > 0
        assert "peak_cuda_gib" not in r  # CPU run
    # before regularizer.pos_from there is no position term, so no ratio for it
    assert "loss_pos" not in records[0] and "reg_ratio" not in records[0]
    assert all("loss_pos" in r and r["reg_ratio"] >= 0 for r in records[1:])
    # step 1: the statistic of one step (normalised: sum of squares 1 over the visible Gaussians)
    assert 0 < records[0]["stat_p50"] <= records[0]["stat_p99"]
    # densification on step 2 shows in the record of step 2, then the statistic restarts
    assert records[1]["n_cloned"] + records[1]["n_split"] > 0 and records[1]["stat_p99"] == 0
    assert records[0]["n_cloned"] == records[2]["n_cloned"] == 0
    assert records[1]["num_gaussians"] > records[0]["num_gaussians"]


def test_position_learning_rate_follows_its_schedule(tmp_path, head):
    cfg = make_config(steps=3)
    cfg.train.lr_position_decay_steps = 2
    tr = Trainer.new(cfg, "p", tmp_path, guidance=ImageGuidance(_targets(head)), head=head, progress=False)
    seen = []
    for _ in range(3):
        tr.train_step()
        seen.append(next(g["lr"] for g in tr.optimizer.param_groups if g["name"] == "means"))
    assert seen == pytest.approx([2e-4, 2e-4 * 0.5**0.5, 1e-4])  # steps 1, 2, 3 use the rates at 0, 1, 2


def test_batch_size_does_not_change_the_gradients_end_to_end(tmp_path, head, tiny_models, monkeypatch):
    """B copies of one view give every parameter the gradient of B = 1 (the SDS term is a batch
    mean, the regulariser a mean over its violators), through render, guidance and regulariser."""
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    monkeypatch.setattr(DiagonalGaussianDistribution, "sample", lambda self, generator=None: self.mean)
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    real_randn = torch.randn

    def randn(*shape, **kw):  # F-SDS's noise: the same for every view
        size = tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape
        if len(size) == 4 and tuple(size[1:]) == (4, 8, 8):
            return noise.expand(*size).clone()
        return real_randn(*shape, **kw)

    monkeypatch.setattr(torch, "randn", randn)
    grads = {}
    for b in (1, 3):
        cfg = make_config(steps=1)
        cfg.train.batch_size = b
        g = fsds(cfg, head, tiny_models)
        monkeypatch.setattr(g.fsds, "sample_timesteps", lambda n, step, generator=None: torch.full((n,), 600))
        tr = Trainer.new(cfg, "p", tmp_path / str(b), guidance=g, head=head, progress=False)
        one = tr.batch_sampler.sample(1, torch.Generator().manual_seed(0))
        tr.sample_batch = lambda one=one, b=b: dataclasses.replace(
            one,
            viewmats=one.viewmats.expand(b, -1, -1, -1), Ks=one.Ks.expand(b, -1, -1, -1),
            flame={k: v.expand(b, -1) for k, v in one.flame.items()},
            azimuth_deg=one.azimuth_deg.expand(b), elevation_deg=one.elevation_deg.expand(b),
            backgrounds=one.backgrounds.expand(b, -1, -1),
        )  # fmt: skip
        step = tr.optimizer.step

        def capture(b=b, step=step, tr=tr):
            grads[b] = {k: p.grad.clone() for k, p in tr.avatar.gaussian_params().items()}
            grads[b]["shape"] = tr.avatar.shape.grad.clone()
            step()

        tr.optimizer.step = capture
        logs = tr.train_step()
        grads[b]["loss"] = torch.tensor(logs["loss"])
    assert grads[1]["means"].abs().sum() > 0
    for k in grads[1]:  # a batch sum instead of a mean would be 3x; rounding is ~1e-4 of the largest
        atol = max(1e-4 * float(grads[1][k].abs().max()), 1e-8)  # the quaternions' are ~1e-9: noise
        torch.testing.assert_close(grads[3][k], grads[1][k], rtol=1e-3, atol=atol)
