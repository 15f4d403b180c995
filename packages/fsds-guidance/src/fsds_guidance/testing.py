"""Tiny random-weight models of the real diffusers / transformers classes, built offline.

Shapes are chosen so the whole pipeline keeps SD's geometry: the VAE downsamples 8× (four
blocks) and the ControlNet conditioning embedding downsamples 8× (four channel entries), so a
64² image (``FSDSConfig(image_size=64)``) gives 8² latents, the UNet's ``sample_size``. The
tokenizer is a real ``CLIPTokenizer`` over a byte-level vocabulary (every byte symbol, with and
without ``</w>``, no merges) written at run time to a temporary directory.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from .models import GuidanceModels, freeze, make_scheduler

TINY_IMAGE_SIZE = 64
TINY_HIDDEN = 32


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


def tiny_tokenizer(directory: str | Path | None = None, max_length: int = 77):
    """A ``CLIPTokenizer`` with a minimal byte-level vocabulary (514 tokens)."""
    from transformers import CLIPTokenizer

    directory = Path(directory or tempfile.mkdtemp(prefix="fsds_tiny_tok_"))
    directory.mkdir(parents=True, exist_ok=True)
    symbols = list(_bytes_to_unicode().values())
    vocab_list = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
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
    device = torch.device(device)
    models = GuidanceModels(
        unet=unet.to(device),
        controlnet=controlnet.to(device),
        vae=vae.to(device),
        text_encoder=text_encoder.to(device),
        tokenizer=tokenizer,
        scheduler=make_scheduler(),
        device=device,
        dtype=torch.float32,
    )
    return freeze(models)
