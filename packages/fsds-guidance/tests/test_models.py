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
    import diffusers  # noqa: F401  (the first import takes seconds on a busy machine: not what is timed)
    import transformers  # noqa: F401

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


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory, tiny_models):
    """The session's tiny models written in the hub layout (same weights as ``tiny_models``)."""
    from fsds_guidance.testing import save_guidance_models

    root = tmp_path_factory.mktemp("hub")
    return save_guidance_models(tiny_models, root / "sd15", root / "controlnet")


def test_saved_pipeline_has_the_hub_layout_and_loads_back(saved_tiny, tiny_models):
    base, cn = saved_tiny
    assert {p.name for p in base.iterdir()} == {
        "model_index.json", "unet", "vae", "text_encoder", "tokenizer", "scheduler",
    }  # fmt: skip
    assert (cn / "diffusion_sd15" / "diffusion_pytorch_model.safetensors").is_file()
    assert {p.name for p in (base / "tokenizer").iterdir()} == {
        "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json",
    }  # fmt: skip
    # diffusers itself reads the folder as a Stable Diffusion pipeline
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(base, local_files_only=True)
    assert pipe.unet.config.sample_size == tiny_models.unet.config.sample_size
    models = load_guidance_models(base, cn, device="cpu", local_files_only=True)
    for name in ("unet", "controlnet", "vae", "text_encoder"):
        ours, theirs = getattr(models, name).state_dict(), getattr(tiny_models, name).state_dict()
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), name
    text = "a DSLR portrait of Kratos, front view"
    assert models.tokenizer(text).input_ids == tiny_models.tokenizer(text).input_ids


@pytest.mark.parametrize("max_length", [None, 10**30], ids=["missing", "huge"])
def test_tokenizer_without_a_usable_model_max_length(saved_tiny, tmp_path, max_length, tiny_models):
    """Tokenizer folders that never set model_max_length read back as 1e30 (padding to it
    overflowed); the text encoder's position count (77) decides instead."""
    import shutil

    from fsds_guidance import FSDS, FSDSConfig
    from fsds_guidance.testing import set_tokenizer_max_length

    base = shutil.copytree(saved_tiny[0], tmp_path / "sd15")
    set_tokenizer_max_length(base, max_length)
    models = load_guidance_models(base, saved_tiny[1], device="cpu", local_files_only=True)
    assert models.tokenizer.model_max_length == models.text_encoder.config.max_position_embeddings == 77
    fsds = FSDS(models, FSDSConfig(image_size=64))
    images = torch.rand(1, 3, 64, 64, requires_grad=True)
    out = fsds(images, torch.zeros(1, 3, 64, 64), "a portrait", torch.zeros(1), torch.zeros(1), step=0)
    out.loss.backward()
    assert torch.isfinite(images.grad).all() and fsds.prompts.embed("a").shape[:2] == (1, 77)
    # the same embedding as with a tokenizer that has the right length
    want = FSDS(tiny_models).prompts.embed("a portrait")
    torch.testing.assert_close(fsds.prompts.embed("a portrait"), want)


def test_sd15_configurations_have_the_published_sizes():
    """The kept configurations build SD 1.5's networks: parameter counts of the published models."""
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from fsds_guidance.testing import sd15_config, tiny_tokenizer
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):  # shapes only, no memory
        nets = {
            "unet": UNet2DConditionModel.from_config(sd15_config("unet")),
            "controlnet": ControlNetModel.from_config(sd15_config("controlnet")),
            "vae": AutoencoderKL.from_config(sd15_config("vae")),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**sd15_config("text_encoder"))),
        }
    counts = {k: sum(p.numel() for p in m.parameters()) for k, m in nets.items()}
    published = {"unet": 859_520_964, "controlnet": 361_279_120, "vae": 83_653_863}
    published["text_encoder"] = 123_060_480
    assert counts == published
    # the stand-in tokenizer speaks CLIP's id space: 49,408 ids, start/end of text at 49406/49407
    tok = tiny_tokenizer(vocab_size=49408)
    ids = tok("a DSLR portrait of Kratos, front view", padding="max_length", max_length=77).input_ids
    assert len(tok) == 49408 and (ids[0], max(ids)) == (49406, 49407) and len(ids) == 77
    with pytest.raises(ValueError, match="no SD 1.5 configuration"):
        sd15_config("unet2")
