"""Full-size rehearsal (issue 9): `headstudio generate` with SD 1.5-sized models, random weights.

Builds the UNet, ControlNet, VAE and CLIP text encoder from Stable Diffusion 1.5's published
configurations (``fsds_guidance/configs/sd15``) with random weights, writes them in the hub
layout (a pipeline folder and a ControlNet repository, float16 safetensors, ~2.9 GB), then runs
the real command on them::

    headstudio generate PROMPT --set guidance.base_model=DIR --set guidance.controlnet=DIR
        --set train.batch_size=1 --steps 2 (everything else: the default configuration)

and prints the seconds per training step and the peak memory. The models are built in a child
process, so the peak resident memory printed is that of the training run alone (it includes the
loaded models). The tokenizer is a byte-level stand-in over CLIP's 49,408 ids (the real
vocabulary cannot be downloaded here); outputs are noise, shapes, time and memory are real.

Usage: ``python benchmarks/rehearse.py [--device auto] [--steps 2] [--models DIR] [GENERATE ARGS]``
(``nox -s rehearse -- ...``). ``--models DIR`` keeps the written models there and reuses them;
any other argument (e.g. ``--set train.resolution=512``) is passed to ``headstudio generate``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "a DSLR portrait of Kratos"
DONE = "rehearsal-models.json"


def build_models(directory: Path) -> None:
    """Write the full-size random models to ``directory/sd15`` and ``directory/controlnet``."""
    import torch
    from diffusers.utils import logging as diffusers_logging
    from fsds_guidance.testing import full_size_components, save_guidance_models

    diffusers_logging.set_verbosity_error()  # random weights: the float16-cast notices are moot
    t0 = time.perf_counter()
    models = full_size_components(seed=0, dtype=torch.float16)
    base, cn = save_guidance_models(models, directory / "sd15", directory / "controlnet")
    sizes = {
        name: sum(p.numel() for p in getattr(models, name).parameters())
        for name in ("unet", "controlnet", "vae", "text_encoder")
    }
    (directory / DONE).write_text(json.dumps({"parameters": sizes, "base": str(base), "controlnet": str(cn)}))
    print(f"built and saved the models in {time.perf_counter() - t0:.0f} s: {sizes}", flush=True)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine(device: str) -> str:
    import torch

    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        lines = [ln for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")]
        name = lines[0].split(":", 1)[1].strip() if lines else name
    cpus = len(os.sched_getaffinity(0))
    load = os.getloadavg()[0]
    return f"{name}, {cpus} cores (load average {load:.0f}), torch {torch.__version__}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--models", type=Path, help="keep (and reuse) the written models here")
    parser.add_argument("--build-only", type=Path, help=argparse.SUPPRESS)
    args, args.extra = parser.parse_known_args()  # the rest goes to `headstudio generate`
    if args.build_only is not None:
        build_models(args.build_only)
        return 0

    root = args.models or Path(tempfile.mkdtemp(prefix="hs-rehearse-"))
    try:
        if not (root / DONE).is_file():
            root.mkdir(parents=True, exist_ok=True)
            subprocess.run([sys.executable, __file__, "--build-only", str(root)], check=True)
        info = json.loads((root / DONE).read_text())
        return rehearse(Path(info["base"]), Path(info["controlnet"]), root / "run", args)
    finally:
        if args.models is None:
            shutil.rmtree(root, ignore_errors=True)


def rehearse(base: Path, controlnet: Path, out: Path, args: argparse.Namespace) -> int:
    import torch
    from headstudio import cli

    shutil.rmtree(out, ignore_errors=True)
    argv = [
        "generate", PROMPT, "--output", str(out), "--steps", str(args.steps), "--device", args.device,
        "--set", f"guidance.base_model={base}", "--set", f"guidance.controlnet={controlnet}",
        "--set", "train.batch_size=1", "--set", "train.log_every=1",
        "--set", "train.preview_every=0", "--set", "train.checkpoint_every=0",
        *args.extra,
    ]  # fmt: skip
    cuda = torch.cuda.is_available() and args.device != "cpu"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0, cpu0 = time.perf_counter(), _cpu_seconds()
    code = cli.main(argv)
    wall, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    if code != 0:
        print(f"rehearsal failed: headstudio generate exited with {code}", file=sys.stderr)
        return code
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    elapsed = [r["elapsed_s"] for r in records]
    steps = [b - a for a, b in zip([0.0, *elapsed[:-1]], elapsed, strict=True)]
    rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB
    print("\nrehearsal: headstudio generate, SD 1.5-sized random models, default configuration, batch 1")
    print(f"  machine: {machine(args.device)}")
    print(f"  command: headstudio {' '.join(argv)}")
    print(f"  wall time of the command (load + {len(steps)} steps + save): {wall:.1f} s")
    print(f"  CPU time of the command (all threads; wall time on a shared machine is more): {cpu:.1f} s")
    for i, (s, r) in enumerate(zip(steps, records, strict=True), 1):
        loss = r.get("loss_sds", float("nan"))
        print(f"  step {i}: {s:.1f} s  (N = {r['num_gaussians']}, loss_sds = {loss:.4g})")
    print(f"  peak resident memory of the process: {rss_gib:.1f} GiB")
    if cuda:
        print(f"  peak CUDA memory allocated: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
