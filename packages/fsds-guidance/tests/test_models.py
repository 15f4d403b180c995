"""Model loading: fast, clear failure when weights are missing; tiny components."""

import time

import pytest
import torch
from fsds_guidance import GuidanceModelError, load_guidance_models
from fsds_guidance.models import SD15_DDIM_CONFIG


def _check_message(msg: str, *names: str) -> None:
    for n in names:
        assert n in msg
    assert "huggingface-cli download" in msg and "hf download" in msg
    assert "HEADSTUDIO_SD_MODEL" in msg and "HEADSTUDIO_CONTROLNET_MODEL" in msg
    assert "base=" in msg


def test_offline_missing_weights_fail_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    t0 = time.perf_counter()
    with pytest.raises(GuidanceModelError) as exc:
        load_guidance_models(base="headstudio-test/no-such-model", controlnet="headstudio-test/no-such-cn")
    assert time.perf_counter() - t0 < 10
    _check_message(str(exc.value), "headstudio-test/no-such-model", "headstudio-test/no-such-cn")
    assert "HF_HUB_OFFLINE" in str(exc.value)
    assert exc.value.__cause__ is None  # one message, no deep chained traceback


def test_env_vars_override_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("HEADSTUDIO_SD_MODEL", str(tmp_path / "missing-sd"))
    monkeypatch.setenv("HEADSTUDIO_CONTROLNET_MODEL", "headstudio-test/cn")
    t0 = time.perf_counter()
    with pytest.raises(GuidanceModelError, match="does not exist") as exc:
        load_guidance_models()
    assert time.perf_counter() - t0 < 5
    _check_message(str(exc.value), str(tmp_path / "missing-sd"), "headstudio-test/cn")


def test_nonexistent_and_empty_local_dirs_fail_fast(tmp_path):
    t0 = time.perf_counter()
    with pytest.raises(GuidanceModelError, match="does not exist"):
        load_guidance_models(base=str(tmp_path / "nope"), controlnet=str(tmp_path / "nope2"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(GuidanceModelError) as exc:
        load_guidance_models(base=str(empty), controlnet=str(empty), local_files_only=True)
    assert time.perf_counter() - t0 < 10
    _check_message(str(exc.value), str(empty))


def test_tiny_components_frozen_and_shaped(tiny_models):
    m = tiny_models
    for net in (m.unet, m.controlnet, m.vae, m.text_encoder):
        assert not net.training
        assert all(not p.requires_grad for p in net.parameters())
    assert m.dtype == torch.float32 and m.device.type == "cpu"
    lat = m.vae.encode(torch.zeros(1, 3, 64, 64)).latent_dist.mean
    assert lat.shape == (1, 4, 8, 8)
    ids = m.tokenizer(
        ["a man, front view"], padding="max_length", max_length=77, return_tensors="pt"
    ).input_ids
    assert ids.shape == (1, 77) and ids[0, 0] == m.tokenizer.bos_token_id
    assert m.text_encoder(ids)[0].shape == (1, 77, 32)
    sc = m.scheduler.config
    for k in ("beta_start", "beta_end", "beta_schedule", "num_train_timesteps"):
        assert sc[k] == SD15_DDIM_CONFIG[k]
