"""GPU benchmark of one F-SDS guidance step at full SD 1.5 size (random weights, no download).

Builds the SD 1.5 UNet, a ControlNet of the same shape (``ControlNetModel.from_unet``), the SD
VAE and the CLIP ViT-L/14 text encoder from their configurations written below, in fp16 on the
GPU, and times ``FSDS.__call__`` + ``loss.backward()`` for a batch of 512² renders: ours (one
batched ControlNet+UNet call over text/empty/negative) against three separate calls, measured in
the same run, with peak allocated memory. Goal (issue 4, H100): <= 60 ms per step at batch 8,
peak <= 14 GB. Exits cleanly (status 0) without a GPU.

Usage: ``python benchmarks/gpu_bench_guidance.py [--batch 8] [--repeats 10]``;
``--check-configs`` only builds the models on the meta device and prints parameter counts.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch

#: SD 1.5 ``unet/config.json`` (runwayml/stable-diffusion-v1-5; Realistic Vision 5.1 shares it).
SD15_UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    cross_attention_dim=768,
    attention_head_dim=8,
    norm_num_groups=32,
    norm_eps=1e-5,
    act_fn="silu",
    center_input_sample=False,
    downsample_padding=1,
    flip_sin_to_cos=True,
    freq_shift=0,
    mid_block_scale_factor=1,
)
#: SD 1.5 ``vae/config.json``.
SD15_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=4,
    norm_num_groups=32,
    act_fn="silu",
    sample_size=512,
    scaling_factor=0.18215,
)
#: SD 1.5 ``text_encoder/config.json`` (CLIP ViT-L/14 text tower).
SD15_TEXT = dict(
    vocab_size=49408,
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    projection_dim=768,
)
#: ``CrucibleAI/ControlNetMediaPipeFace/diffusion_sd15/config.json`` = SD 1.5 UNet encoder with
#: ControlNet's default conditioning embedding (16, 32, 96, 256), RGB conditioning.
SD15_CONTROLNET_EXTRA = dict(conditioning_embedding_out_channels=(16, 32, 96, 256))


def build_full_models(device: torch.device, dtype: torch.dtype):
    """SD 1.5-sized ``GuidanceModels`` with random weights (tiny tokenizer: ids < 49408)."""
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from diffusers.utils import logging as diffusers_logging
    from fsds_guidance.models import GuidanceModels, freeze, make_scheduler
    from fsds_guidance.testing import tiny_tokenizer
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device(device):
        unet = UNet2DConditionModel(**SD15_UNET)
        controlnet = ControlNetModel.from_unet(unet, **SD15_CONTROLNET_EXTRA)
        vae = AutoencoderKL(**SD15_VAE)
        text_encoder = CLIPTextModel(CLIPTextConfig(**SD15_TEXT))
    if device.type == "meta":
        return unet, controlnet, vae, text_encoder
    diffusers_logging.set_verbosity_error()  # random init: the fp32-module cast notice is moot
    models = GuidanceModels(
        unet=unet.to(dtype=dtype, memory_format=torch.channels_last),
        controlnet=controlnet.to(dtype=dtype, memory_format=torch.channels_last),
        vae=vae.to(dtype=dtype),
        text_encoder=text_encoder.to(dtype=dtype),
        tokenizer=tiny_tokenizer(),
        scheduler=make_scheduler(),
        device=device,
        dtype=dtype,
    )
    return freeze(models)


def check_configs() -> None:
    """Parameter counts (SD 1.5 reference: UNet 859.5 M, VAE 83.7 M, text 123.1 M)."""
    for name, net in zip(
        ("unet", "controlnet", "vae", "text_encoder"),
        build_full_models(torch.device("meta"), torch.float16),
        strict=True,
    ):
        print(f"{name:>13}: {sum(p.numel() for p in net.parameters()) / 1e6:8.2f} M parameters")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--render-size", type=int, default=512)
    parser.add_argument("--check-configs", action="store_true")
    parser.add_argument(
        "--vae-checkpointing", action="store_true", help="FSDSConfig(vae_gradient_checkpointing=True)"
    )
    args = parser.parse_args()
    if args.check_configs:
        check_configs()
        return 0
    if not torch.cuda.is_available():
        print("gpu_bench_guidance: no CUDA device available; nothing measured.")
        return 0

    from fsds_guidance import FSDS, FSDSConfig

    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    device = torch.device("cuda")
    models = build_full_models(device, torch.float16)

    class ThreeCallFSDS(FSDS):
        def predict_noise(self, latents_noisy, t, embeddings, control):
            parts = embeddings.split(latents_noisy.shape[0], dim=0)
            return torch.cat([FSDS.predict_noise(self, latents_noisy, t, e, control) for e in parts])

    bsz, size = args.batch, args.render_size
    images = torch.rand(bsz, 3, size, size, device=device, requires_grad=True)
    control = torch.zeros(bsz, 3, 512, 512, device=device)
    az = torch.linspace(-180, 180, bsz, device=device)
    el = torch.zeros(bsz, device=device)
    name = torch.cuda.get_device_name()
    print(
        f"{name}, torch {torch.__version__}, batch {bsz}, renders {size}², fp16 models, "
        f"VAE checkpointing {args.vae_checkpointing}"
    )

    results = {}
    for label, cls in (("3 calls", ThreeCallFSDS), ("1 batched", FSDS)):
        fsds = cls(models, FSDSConfig(vae_gradient_checkpointing=args.vae_checkpointing))
        skipped = 0

        def step(f=fsds) -> bool:
            images.grad = None
            out = f(images, control, "a portrait of a man", az, el, step=10)
            out.loss.backward()
            return out.skipped

        for _ in range(3):
            step()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(args.repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            skipped += step()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        peak = torch.cuda.max_memory_allocated() / 2**30
        results[label] = statistics.median(times)
        print(
            f"{label:>10}: {results[label]:8.1f} ms/step (median of {args.repeats}), peak {peak:.2f} GiB, "
            f"skipped (non-finite) {skipped}/{args.repeats}"
        )
    print(
        f"speed-up of the batched call: {results['3 calls'] / results['1 batched']:.2f}x "
        "(goal: <= 60 ms/step at batch 8 on an H100, peak <= 14 GB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
