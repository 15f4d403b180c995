"""F-SDS: full tiny-model step, formulas with a mocked noise predictor, schedule, config."""

import logging

import pytest
import torch
from fsds_guidance import FSDS, FSDSConfig, FSDSOutput

AZ = torch.tensor([0.0, 100.0])
EL = torch.tensor([0.0, 10.0])


def _inputs(bsz=2, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(bsz, 3, size, size, generator=g).requires_grad_(True)
    control = torch.zeros(bsz, 3, 512, 512)
    control[:, 1, 200:300, 200:300] = 200 / 255
    return images, control


def test_full_step_gradients_reach_images(tiny_models):
    fsds = FSDS(tiny_models, FSDSConfig(image_size=64))
    images, control = _inputs(size=96)
    out = fsds(images, control, "a portrait of a man", AZ[:2], EL[:2], step=5, return_debug=True)
    assert isinstance(out, FSDSOutput) and not out.skipped
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert out.timesteps.shape == (2,) and out.timesteps.dtype == torch.long
    out.loss.backward()
    assert images.grad is not None
    assert torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0
    assert set(out.debug) == {"control", "noisy", "denoised"}
    for v in out.debug.values():
        assert v.shape == (2, 3, 64, 64) and v.min() >= 0 and v.max() <= 1
    # networks stay frozen
    assert all(not p.requires_grad for p in tiny_models.unet.parameters())
    assert all(p.grad is None for p in tiny_models.vae.parameters())


class _MockPredictor:
    """Known ε per condition; records inputs and the number of calls."""

    def __init__(self, shape, k, seed=1):
        g = torch.Generator().manual_seed(seed)
        self.eps = [torch.randn(shape, generator=g) for _ in range(k)]
        self.calls = 0
        self.noisy = None

    def __call__(self, latents_noisy, t, embeddings, control):
        self.calls += 1
        self.noisy = latents_noisy.clone()
        assert embeddings.shape[0] == len(self.eps) * latents_noisy.shape[0]
        return torch.cat(self.eps, dim=0)


def _run_mocked(fsds, t_values, monkeypatch):
    bsz = len(t_values)
    latents = torch.randn(bsz, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    latents.requires_grad_(True)
    k = 3 if fsds.config.mode == "fsds" else 2
    mock = _MockPredictor((bsz, 4, 8, 8), k)
    monkeypatch.setattr(fsds, "encode_images", lambda images, generator=None: latents)
    monkeypatch.setattr(fsds, "sample_timesteps", lambda b, step, generator=None: torch.tensor(t_values))
    monkeypatch.setattr(fsds, "predict_noise", mock)
    images, control = _inputs(bsz)
    out = fsds(images, control, "p", torch.zeros(bsz), torch.zeros(bsz), step=0)
    out.loss.backward()
    return latents, mock, out


def test_fsds_delta_both_sides_of_t200(tiny_models, monkeypatch):
    fsds = FSDS(tiny_models, FSDSConfig(image_size=64, guidance_scale=7.5))
    t = [199, 200, 20, 700]
    latents, mock, out = _run_mocked(fsds, t, monkeypatch)
    e_text, e_null, e_neg = mock.eps
    ac = tiny_models.scheduler.alphas_cumprod
    for i, ti in enumerate(t):
        w = 1.0 - ac[ti]
        delta_c = 7.5 * (e_text[i] - e_null[i])
        delta_d = e_null[i] if ti < 200 else e_null[i] - e_neg[i]
        # the loss is averaged over the batch: d loss / d z_i = grad_i / B
        torch.testing.assert_close(latents.grad[i] * len(t), w * (delta_c + delta_d), rtol=1e-5, atol=1e-6)
    assert mock.calls == 1
    # the two sides really differ (the switch is exercised)
    assert not torch.allclose(latents.grad[0] / (1 - ac[199]), latents.grad[1] / (1 - ac[200]))
    torch.testing.assert_close(out.grad_norm, latents.grad.norm() * len(t))


def test_sds_mode(tiny_models, monkeypatch):
    fsds = FSDS(tiny_models, FSDSConfig(image_size=64, mode="sds", guidance_scale=5.0))
    t = [100, 600]
    latents, mock, _ = _run_mocked(fsds, t, monkeypatch)
    e_text, e_null = mock.eps
    ac = tiny_models.scheduler.alphas_cumprod[torch.tensor(t)].view(-1, 1, 1, 1)
    noise = (mock.noisy - ac.sqrt() * latents.detach()) / (1 - ac).sqrt()
    expected = (1 - ac) * (e_null + 5.0 * (e_text - e_null) - noise)
    torch.testing.assert_close(latents.grad * len(t), expected, rtol=1e-4, atol=1e-5)


def test_grad_clip(tiny_models, monkeypatch):
    fsds = FSDS(tiny_models, FSDSConfig(image_size=64, grad_clip=0.01))
    latents, _, _ = _run_mocked(fsds, [500, 500], monkeypatch)
    grad = latents.grad * 2  # the clip bounds each view's gradient, before the batch mean
    assert grad.abs().max() <= 0.01 + 1e-7
    assert grad.abs().max() > 0.009


@pytest.mark.parametrize("mode", ["fsds", "sds"])
def test_loss_is_a_batch_mean(tiny_models, monkeypatch, mode):
    """Batch 1 and batch 4 of the same view give a shared parameter (as a Gaussian is to every
    view of a step) the same gradient: a learning rate means the same at any batch size."""
    cfg = FSDSConfig(image_size=64, mode=mode)
    theta = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    k = 3 if mode == "fsds" else 2
    eps = _MockPredictor((1, 4, 8, 8), k, seed=2).eps
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(6))

    def shared_grad(bsz: int) -> torch.Tensor:
        fsds = FSDS(tiny_models, cfg)
        param = theta.clone().requires_grad_(True)
        same = lambda x: x.expand(bsz, -1, -1, -1)  # noqa: E731  (every view identical)
        monkeypatch.setattr(fsds, "encode_images", lambda images, generator=None: same(param))
        monkeypatch.setattr(fsds, "sample_timesteps", lambda b, step, generator=None: torch.full((b,), 600))
        monkeypatch.setattr(fsds, "predict_noise", lambda x, t, e, c: torch.cat([same(p) for p in eps]))
        monkeypatch.setattr(torch, "randn", lambda shape, **kw: same(noise).clone())
        images, control = _inputs(bsz)
        out = fsds(images, control, "p", torch.zeros(bsz), torch.zeros(bsz), step=0)
        monkeypatch.undo()
        out.loss.backward()
        return param.grad

    one, four = shared_grad(1), shared_grad(4)
    assert one.abs().sum() > 0
    torch.testing.assert_close(four, one, rtol=1e-5, atol=1e-7)


def test_weight_is_one_minus_alpha_bar(tiny_models):
    fsds = FSDS(tiny_models, FSDSConfig(image_size=64))
    t = torch.tensor([0, 200, 999])
    expected = 1 - tiny_models.scheduler.alphas_cumprod[t]
    torch.testing.assert_close(fsds.weight(t), expected)
    assert fsds.weight(torch.tensor([999])) > 0.99 and fsds.weight(torch.tensor([0])) < 0.01


def test_timestep_schedule_phases(tiny_models):
    fsds = FSDS(tiny_models, FSDSConfig(image_size=64))
    assert fsds.timestep_range(0) == (50, 800)
    assert fsds.timestep_range(2999) == (50, 800)
    assert fsds.timestep_range(3000) == (20, 550)
    g = torch.Generator().manual_seed(0)
    t1 = fsds.sample_timesteps(4000, 10, g)
    t2 = fsds.sample_timesteps(4000, 5000, g)
    assert t1.min() >= 50 and t1.max() <= 800 and t1.min() < 60 and t1.max() > 790
    assert t2.min() >= 20 and t2.max() <= 550 and t2.min() < 30 and t2.max() > 540


def test_one_batched_unet_and_controlnet_call_per_step(tiny_models):
    fsds = FSDS(tiny_models, FSDSConfig(image_size=64))
    batches = {"unet": [], "controlnet": []}
    hooks = [
        getattr(tiny_models, name).register_forward_hook(
            lambda mod, args, kwargs, out, name=name: batches[name].append(args[0].shape[0]),
            with_kwargs=True,
        )
        for name in batches
    ]
    try:
        images, control = _inputs(bsz=2)
        fsds(images, control, "a woman", AZ, EL, step=1)
    finally:
        for h in hooks:
            h.remove()
    assert batches == {"unet": [6], "controlnet": [6]}


@pytest.fixture
def live_controlnet(tiny_models):
    """The tiny models with the ControlNet's zero convolutions (zero at initialisation, so its
    residuals vanish) set to random values for the test, restored afterwards."""
    cn = tiny_models.controlnet
    saved = {k: v.clone() for k, v in cn.state_dict().items()}
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in cn.named_parameters():
            if name.startswith(
                ("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding.conv_out")
            ):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    yield tiny_models
    cn.load_state_dict(saved)


def _noise_inputs(fsds, bsz=3, seed=0):
    """Noisy latents ``[B,4,8,8]``, timesteps, stacked embeddings of the three conditions and a
    control map with lines in it."""
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(bsz, 4, 8, 8, generator=g)
    t = torch.tensor([100, 400, 700][:bsz])
    text = fsds.prompts.embed("a portrait").expand(bsz, -1, -1)
    emb = torch.cat([text, fsds.prompts.empty(bsz), fsds.prompts.negative(bsz)])
    control = torch.zeros(bsz, 3, 64, 64)
    control[:, :, 20:40, 10:50] = torch.rand(bsz, 3, 20, 40, generator=g)
    return latents, t, emb, control


def test_control_weight_zero_is_exactly_no_controlnet_for_that_view(live_controlnet):
    tiny_models = live_controlnet
    with_cn = FSDS(tiny_models, FSDSConfig(image_size=64))
    without = FSDS(tiny_models, FSDSConfig(image_size=64, controlnet_scale=0.0))
    latents, t, emb, control = _noise_inputs(with_cn)
    full = with_cn.predict_noise(latents, t, emb, control)
    off = without.predict_noise(latents, t, emb, control)
    assert not torch.equal(full, off)  # the ControlNet matters here
    mixed = with_cn.predict_noise(latents, t, emb, control, torch.tensor([1.0, 0.0, 1.0]))
    rows = torch.arange(9).view(3, 3)  # [condition, view] -> row of the stacked batch
    assert torch.equal(mixed[rows[:, [0, 2]].reshape(-1)], full[rows[:, [0, 2]].reshape(-1)])
    assert torch.equal(mixed[rows[:, 1]], off[rows[:, 1]])
    # a weight of 1 everywhere is the unweighted call, bit for bit
    assert torch.equal(with_cn.predict_noise(latents, t, emb, control, torch.ones(3)), full)
    # a fractional weight scales the residuals: between the two
    half = with_cn.predict_noise(latents, t, emb, control, torch.full((3,), 0.5))
    assert not torch.equal(half, full) and not torch.equal(half, off)
    with pytest.raises(ValueError, match="control_weight"):
        with_cn.predict_noise(latents, t, emb, control, torch.ones(2))


def test_all_views_faceless_skips_the_controlnet(live_controlnet):
    tiny_models = live_controlnet
    fsds = FSDS(tiny_models, FSDSConfig(image_size=64))
    without = FSDS(tiny_models, FSDSConfig(image_size=64, controlnet_scale=0.0))
    latents, t, emb, control = _noise_inputs(fsds, bsz=2)
    calls = []
    hook = tiny_models.controlnet.register_forward_hook(lambda mod, args, out: calls.append(1))
    try:
        eps = fsds.predict_noise(latents, t, emb, control, torch.zeros(2))
    finally:
        hook.remove()
    assert calls == []
    assert torch.equal(eps, without.predict_noise(latents, t, emb, control))


def test_step_with_a_faceless_view_matches_the_runs_without_and_with_controlnet(live_controlnet):
    """Through the whole step (same seeds): the render gradients of the weighted view equal those of
    a run without ControlNet, the other views' those of a plain run."""

    def grads(config, weight):
        fsds = FSDS(live_controlnet, config)
        images, control = _inputs(bsz=3)
        az, el = torch.tensor([0.0, 180.0, 40.0]), torch.zeros(3)
        g = torch.Generator().manual_seed(11)
        out = fsds(images, control, "a portrait", az, el, step=5, generator=g, control_weight=weight)
        out.loss.backward()
        return images.grad

    cfg = FSDSConfig(image_size=64)
    plain = grads(cfg, None)
    no_cn = grads(FSDSConfig(image_size=64, controlnet_scale=0.0), None)
    mixed = grads(cfg, torch.tensor([1.0, 0.0, 1.0]))
    assert not torch.equal(plain[1], no_cn[1])
    torch.testing.assert_close(mixed[[0, 2]], plain[[0, 2]], rtol=0, atol=0)
    torch.testing.assert_close(mixed[1], no_cn[1], rtol=0, atol=0)


def test_nonfinite_gradient_skipped(tiny_models, monkeypatch, caplog):
    fsds = FSDS(tiny_models, FSDSConfig(image_size=64))
    images, control = _inputs()

    def bad(latents_noisy, t, embeddings, control):
        eps = torch.zeros(embeddings.shape[0], *latents_noisy.shape[1:])
        eps[0, 0, 0, 0] = float("nan")
        return eps

    monkeypatch.setattr(fsds, "predict_noise", bad)
    with caplog.at_level(logging.WARNING, logger="fsds_guidance.fsds"):
        out = fsds(images, control, "p", AZ, EL, step=0)
    assert out.skipped
    assert "non-finite" in caplog.text
    assert out.loss.item() == 0.0
    out.loss.backward()
    assert images.grad is not None and torch.all(images.grad == 0)


def test_config_round_trip_and_validation():
    cfg = FSDSConfig(mode="sds", guidance_scale=3.0, grad_clip=1.0, t_range_phase2=(0.1, 0.3))
    d = cfg.to_dict()
    import json

    assert FSDSConfig.from_dict(json.loads(json.dumps(d))) == cfg
    assert FSDSConfig().to_dict()["guidance_scale"] == 7.5
    assert FSDSConfig().controlnet_scale == 1.5
    with pytest.raises(ValueError, match="mode"):
        FSDSConfig(mode="vsd")
    with pytest.raises(ValueError, match="unknown FSDSConfig keys"):
        FSDSConfig.from_dict({"guidance": 1})
    with pytest.raises(ValueError, match="t_range_phase1"):
        FSDSConfig(t_range_phase1=(0.9, 0.1))


def test_vae_checkpointing_same_gradients_and_seeded_determinism():
    from fsds_guidance.testing import tiny_components

    grads = []
    for ckpt in (False, True, False):
        fsds = FSDS(tiny_components(seed=0), FSDSConfig(image_size=64, vae_gradient_checkpointing=ckpt))
        images, control = _inputs()
        out = fsds(images, control, "p", AZ, EL, step=0, generator=torch.Generator().manual_seed(7))
        out.loss.backward()
        grads.append((out.timesteps, images.grad))
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][0], grads[2][0])
    assert torch.equal(grads[0][1], grads[2][1])  # seeded runs are reproducible
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-5, atol=1e-7)
