"""Tiny random-weight models of the real diffusers / transformers classes, built offline.

Shapes are chosen so the whole pipeline keeps SD's geometry: the VAE downsamples 8× (four
blocks) and the ControlNet conditioning embedding downsamples 8× (four channel entries), so a
64² image (``FSDSConfig(image_size=64)``) gives 8² latents, the UNet's ``sample_size``. The
tokenizer is a real ``CLIPTokenizer`` over a byte-level vocabulary (every byte symbol, with and
without ``</w>``, no merges) written at run time to a temporary directory.

:func:`save_tiny_pipeline` writes them to disk in the hub layout (a pipeline folder and a
ControlNet repository), so tests can drive the real loader (:func:`load_guidance_models`, or
``headstudio generate --set guidance.base_model=DIR --set guidance.controlnet=DIR``).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from .models import DEFAULT_CONTROLNET_SUBFOLDER, GuidanceModels, freeze, make_scheduler

TINY_IMAGE_SIZE = 64
TINY_HIDDEN = 32
#: Stable Diffusion 1.5's architecture configurations (see the README there).
SD15_CONFIG_DIR = Path(__file__).parent / "configs" / "sd15"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte → printable unicode symbol table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def tiny_tokenizer(directory: str | Path | None = None, max_length: int = 77, vocab_size: int | None = None):
    """A ``CLIPTokenizer`` with a byte-level vocabulary (514 tokens: every byte symbol, with and
    without ``</w>``, then ``<|startoftext|>`` and ``<|endoftext|>``; no merges).

    ``vocab_size`` pads the vocabulary with never-produced filler tokens before the two special
    ones, so a larger text encoder (CLIP's 49408 tokens) gets its special ids at the same place
    as CLIP's (49406, 49407) and every id the tokenizer emits is valid for it.
    """
    from transformers import CLIPTokenizer

    directory = Path(directory or tempfile.mkdtemp(prefix="fsds_tiny_tok_"))
    directory.mkdir(parents=True, exist_ok=True)
    symbols = list(_bytes_to_unicode().values())
    vocab_list = symbols + [s + "</w>" for s in symbols]
    if vocab_size is not None:
        if vocab_size < len(vocab_list) + 2:
            raise ValueError(f"vocab_size must be at least {len(vocab_list) + 2}, got {vocab_size}")
        vocab_list += [f"<|unused{i}|>" for i in range(vocab_size - 2 - len(vocab_list))]
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(vocab_list)}
    (directory / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return CLIPTokenizer(
        str(directory / "vocab.json"),
        str(directory / "merges.txt"),
        model_max_length=max_length,
        pad_token="<|endoftext|>",
    )


def tiny_components(seed: int = 0, device: str | torch.device = "cpu") -> GuidanceModels:
    """Tiny fp32 UNet, ControlNet, VAE, CLIP text encoder, tokenizer and DDIM scheduler.

    Use with ``FSDSConfig(image_size=64)``: images ``[B,3,64,64]`` → latents ``[B,4,8,8]``.
    """
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=TINY_IMAGE_SIZE // 8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(4, 8),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TINY_HIDDEN,
        attention_head_dim=2,
        norm_num_groups=2,
    )
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(4, 8, 8, 8))
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(4, 4, 4, 4),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=2,
        sample_size=TINY_IMAGE_SIZE,
    )
    tokenizer = tiny_tokenizer()
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=TINY_HIDDEN,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    return _assemble(unet, controlnet, vae, text_encoder, tokenizer, device, torch.float32)


def _assemble(unet, controlnet, vae, text_encoder, tokenizer, device, dtype) -> GuidanceModels:
    device = torch.device(device)
    parts = [m.to(device=device, dtype=dtype) for m in (unet, controlnet, vae, text_encoder)]
    models = GuidanceModels(*parts, tokenizer, make_scheduler(), device=device, dtype=dtype)
    return freeze(models)


def sd15_config(name: str) -> dict:
    """The published architecture configuration ``name`` (``unet``, ``controlnet``, ``vae`` or
    ``text_encoder``) of Stable Diffusion 1.5, kept in ``fsds_guidance/configs/sd15/``."""
    path = SD15_CONFIG_DIR / f"{name}.json"
    if not path.is_file():
        have = sorted(p.stem for p in SD15_CONFIG_DIR.glob("*.json"))
        raise ValueError(f"no SD 1.5 configuration {name!r}; have {have}")
    return json.loads(path.read_text(encoding="utf-8"))


def full_size_components(
    seed: int = 0, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> GuidanceModels:
    """SD 1.5-sized UNet (860 M parameters), ControlNet (361 M), VAE (84 M) and CLIP ViT-L/14
    text encoder (123 M), built from :func:`sd15_config` with random weights, and DDIM.

    The real CLIP vocabulary cannot be downloaded here: the tokenizer is :func:`tiny_tokenizer`
    padded to CLIP's 49,408 ids (same special ids), so every id it emits is valid for the
    encoder but prompts are split into bytes, not CLIP's words. Shapes, time and memory are the
    real model's; outputs are noise. Needs about 6 GB in float32.
    """
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    text = sd15_config("text_encoder")
    return _assemble(
        UNet2DConditionModel.from_config(sd15_config("unet")),
        ControlNetModel.from_config(sd15_config("controlnet")),
        AutoencoderKL.from_config(sd15_config("vae")),
        CLIPTextModel(CLIPTextConfig(**text)),
        tiny_tokenizer(max_length=text["max_position_embeddings"], vocab_size=text["vocab_size"]),
        device,
        dtype,
    )


def save_guidance_models(
    models: GuidanceModels,
    base_dir: str | Path,
    controlnet_dir: str | Path,
    controlnet_subfolder: str = DEFAULT_CONTROLNET_SUBFOLDER,
) -> tuple[Path, Path]:
    """Write ``models`` in the layout of the hub repositories :func:`load_guidance_models` reads.

    ``base_dir``: a Stable Diffusion pipeline folder (``model_index.json``, ``unet/``, ``vae/``,
    ``text_encoder/``, ``tokenizer/``, ``scheduler/``; no safety checker); ``controlnet_dir``: a
    ControlNet repository with its model in ``controlnet_subfolder`` (``diffusion_sd15``, as in
    ``CrucibleAI/ControlNetMediaPipeFace``). Weights are safetensors.

    Returns:
        ``(base_dir, controlnet_dir)`` as paths, for ``--set guidance.base_model=...`` and
        ``--set guidance.controlnet=...``.
    """
    import diffusers

    base, cn = Path(base_dir), Path(controlnet_dir)
    parts = {
        "unet": models.unet,
        "vae": models.vae,
        "text_encoder": models.text_encoder,
        "tokenizer": models.tokenizer,
        "scheduler": models.scheduler,
    }
    for name, part in parts.items():
        if name == "tokenizer":
            _save_tokenizer_files(part, base / name)
        else:
            part.save_pretrained(base / name)
    index: dict = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": diffusers.__version__}
    for name, part in parts.items():
        library = "transformers" if type(part).__module__.startswith("transformers") else "diffusers"
        index[name] = [library, type(part).__name__]
    index.update(feature_extractor=[None, None], safety_checker=[None, None], requires_safety_checker=False)
    (base / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True), encoding="utf-8")
    models.controlnet.save_pretrained(cn / controlnet_subfolder if controlnet_subfolder else cn)
    return base, cn


def _save_tokenizer_files(tokenizer, directory: Path) -> None:
    """A CLIP tokenizer as the SD 1.5 repositories hold it: ``vocab.json``, ``merges.txt``,
    ``tokenizer_config.json`` and ``special_tokens_map.json`` (no ``tokenizer.json``)."""
    tokenizer.save_pretrained(directory)
    fast = directory / "tokenizer.json"
    model = json.loads(fast.read_text(encoding="utf-8"))["model"]
    (directory / "vocab.json").write_text(json.dumps(model["vocab"]), encoding="utf-8")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    (directory / "merges.txt").write_text("\n".join(["#version: 0.2", *merges]) + "\n", encoding="utf-8")
    fast.unlink()
    special = {k: str(getattr(tokenizer, k)) for k in ("bos_token", "eos_token", "pad_token", "unk_token")}
    (directory / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")


def save_tiny_pipeline(directory: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """:func:`tiny_components` written to ``directory/sd15`` and ``directory/controlnet`` (hub layout,
    see :func:`save_guidance_models`); returns ``(base_dir, controlnet_dir)``.

    Example::

        base, cn = save_tiny_pipeline(tmp_path)
        headstudio generate "..." --set guidance.base_model={base} --set guidance.controlnet={cn}
    """
    directory = Path(directory)
    return save_guidance_models(tiny_components(seed), directory / "sd15", directory / "controlnet")


def set_tokenizer_max_length(base_dir: str | Path, value: int | None) -> None:
    """Rewrite ``model_max_length`` in ``base_dir/tokenizer/tokenizer_config.json`` (``None``
    removes it, as in tokenizer folders that never set it)."""
    path = Path(base_dir) / "tokenizer" / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config.pop("model_max_length", None)
    if value is not None:
        config["model_max_length"] = value
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
