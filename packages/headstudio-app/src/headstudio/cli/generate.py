"""``headstudio generate PROMPT`` and ``headstudio generate --image PHOTO [PROMPT]``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..commands import generate
from ..train.trainer import TrainingInterrupted
from ._args import Parser, flags_of, path_or_none, positive_int

#: Option names of GenerateOptions whose flag is not their own name.
EXTRA_FLAGS = {"head": "--set head.flame_path", "overrides": "--set"}


def add_parser(sub: argparse._SubParsersAction, common: Parser) -> None:
    g = sub.add_parser(
        "generate", parents=[common], help="train an avatar from a text prompt, or from a photo (--image)"
    )
    g.add_argument("prompt", nargs="?", default="", help="the text prompt (optional with --image)")
    g.add_argument(
        "--image", metavar="PHOTO",
        help="make the avatar of the person in this photograph (offline without a prompt; with a prompt and "
        "diffusion weights the prompt restyles them). Use photos only of people who agreed.",
    )  # fmt: skip
    g.add_argument("--face", type=positive_int, metavar="N", help="with several faces: the Nth from the left")
    g.add_argument("--config", metavar="TOML")
    g.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value (repeatable)")
    g.add_argument("--output", metavar="DIR", help="output directory (default outputs/<slug-of-prompt>)")
    g.add_argument("--resume", action="store_true", help="continue from DIR/checkpoints/last.pt")
    g.add_argument(
        "--resume-previous", action="store_true",
        help="continue from DIR/checkpoints/previous.pt, the checkpoint before last.pt (when last.pt is "
        "damaged; it is kept as last.set-aside.pt)",
    )  # fmt: skip
    g.add_argument("--steps", type=positive_int)
    g.add_argument(
        "--dry-run", action="store_true",
        help="preflight: load everything, run 3 steps with these settings, print ms/step, the run's ETA and "
        "peak memory; writes nothing",
    )  # fmt: skip
    g.set_defaults(handle=handle, flags=flags_of(g, **EXTRA_FLAGS))


def options(args: argparse.Namespace) -> generate.GenerateOptions:
    return generate.GenerateOptions(
        args.prompt, image=path_or_none(args.image), face=args.face,
        output=path_or_none(args.output), config=path_or_none(args.config),
        overrides=tuple(args.set or ()), steps=args.steps, device=args.device, resume=args.resume,
        resume_previous=args.resume_previous, dry_run=args.dry_run, progress=not args.quiet,
    )  # fmt: skip


def run_options(opts: generate.GenerateOptions) -> generate.GenerateResult:
    """Run ``generate``; Ctrl-C ends with the command that continues the run."""
    try:
        return generate.run(opts)
    except TrainingInterrupted as err:
        folder = generate.run_folder(opts).path
        raise KeyboardInterrupt(
            f"{err.summary}. Continue with: {continue_hint(opts.prompt, folder, opts.image)}"
        ) from None


def handle(args: argparse.Namespace) -> int:
    opts = options(args)
    res = run_options(opts)
    if opts.dry_run:
        print("\n".join(res.report))
        return 0
    print(f"avatar written to {res.avatar}")
    return 0


def continue_hint(prompt: str, folder: Path, image: Path | None = None) -> str:
    """The command that continues the run in ``folder``."""
    if image is not None:
        text = f" {json.dumps(prompt)}" if prompt.strip() else ""
        return f"headstudio generate{text} --image {image} --output {folder} --resume"
    return f"headstudio generate {json.dumps(prompt)} --output {folder} --resume"
