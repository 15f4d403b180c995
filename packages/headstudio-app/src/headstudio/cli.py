"""The ``headstudio`` command line: generate, batch, animate, say, drive, render, export, view, eval, demo.

Every user-facing failure ends with one line ``error: <what was wrong and what to do>`` on stderr
and a non-zero exit status (2 for bad input, 130 for Ctrl-C, 1 for an internal error), with no
traceback unless ``--debug`` is given. Library errors name the argument they are about; the CLI
prefixes the flag that set it (``error: --device: ...``). Outputs are written atomically, so a
failed or interrupted command leaves no partial file under the final name.

Each command is one ``cmd_<name>(args)`` function and one block in :func:`build_parser`.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import re
import sys
import webbrowser
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch
from fsds_guidance import GuidanceModelError

from ._atomic import atomic_output
from .animate.drive import DriveOptions, resolve_landmarker, video_to_motion
from .animate.talk import lipsync_motion, say, synthesize_speech
from .batch.items import slugify
from .batch.report import summary_table
from .batch.runner import BatchOptions, open_backend, plan_batch, run_batch
from .config import load_config
from .demo.run import run_demo
from .errors import HeadStudioError, one_line, require_file
from .head_motion import MOTION_SUFFIXES, as_motion, default_motion
from .output.evaluate import DEFAULT_CLIP_MODELS, evaluate_avatar
from .output.export import (
    export_ply_sequence,
    export_posed,
    export_web,
    parse_expression_args,
    posed_flame_kwargs,
)
from .output.rendering import ViewSettings, check_size, render_motion, render_stills, render_turntable
from .output.viewer.launch import check_port, prepare_server, start_or_explain
from .output.viewer.presets import fit_presets
from .output.viewer.server import is_loopback
from .train.checkpoint import use_previous_checkpoint
from .train.preflight import dry_run
from .train.runtime import load_avatar, resolve_device
from .train.trainer import Trainer, TrainingInterrupted

__all__ = ["main", "build_parser"]

log = logging.getLogger("headstudio")

EXIT_USAGE = 2
EXIT_INTERNAL = 1
EXIT_INTERRUPTED = 130
#: `headstudio demo --quick`: render size and training steps of the smoke run.
QUICK_DEMO_SIZE = 32
QUICK_DEMO_STEPS = 60
#: The flag that sets each library argument named by ``HeadStudioError.argument``.
FLAGS = {"device": "--device", "flame": "--flame", "head": "--flame", "output_dir": "--output"}


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one ``error:`` line (no usage dump) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(EXIT_USAGE)


def _size(text: str) -> tuple[int, int]:
    """``512`` or ``640x480`` → ``(width, height)`` (validated later by rendering.check_size)."""
    m = re.fullmatch(r"\s*(-?\d+)\s*(?:[xX]\s*(-?\d+))?\s*", text)
    if m is None:
        raise argparse.ArgumentTypeError(f"impossible resolution '{text}'; give e.g. 512 or 640x480")
    w = int(m.group(1))
    return w, int(m.group(2)) if m.group(2) else w


def check_size_arg(size: int) -> int:
    """Validate a square render size given on the command line."""
    return check_size(size)[0]


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} must be at least 1")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not v > 0 or v != v or v == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a positive number")
    return v


def _finite_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number")
    return v


def _non_negative_float(text: str) -> float:
    v = _finite_float(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"{text} must be zero or positive")
    return v


def _check_output(path: str, suffixes: tuple[str, ...], what: str = "output") -> Path:
    p = Path(path)
    if p.suffix.lower() not in suffixes:
        raise HeadStudioError(f"{what} '{p}' must end in {' or '.join(suffixes)}.")
    if p.exists() and p.is_dir():
        raise HeadStudioError(f"{what} '{p}' is a directory; give a file name.")
    return p


# ----------------------------------------------------------------------------------- commands


def cmd_generate(args: argparse.Namespace) -> int:
    if not args.prompt.strip():
        raise HeadStudioError(
            'the prompt is empty; describe the head, e.g. headstudio generate "a DSLR portrait of Kratos".'
        )
    if args.config is not None:
        require_file(args.config, "config file", (".toml",))
    device = resolve_device(args.device)
    out_dir = Path(args.output) if args.output else Path("outputs") / slugify(args.prompt)
    if out_dir.exists() and not out_dir.is_dir():
        raise HeadStudioError(f"--output '{out_dir}' exists and is not a directory.")
    checkpoint = out_dir / "checkpoints" / "last.pt"
    resume = args.resume or args.resume_previous
    if args.dry_run and resume:
        raise HeadStudioError("--dry-run rehearses a new run; leave out --resume.")
    if args.resume and not checkpoint.is_file():
        raise HeadStudioError(
            f"--resume: no checkpoint at '{checkpoint}'; "
            "run without --resume to start, or give the --output of the run to continue."
        )
    if not resume and not args.dry_run and checkpoint.exists():
        raise HeadStudioError(
            f"--output '{out_dir}' already holds a run (checkpoints/last.pt); continue it with --resume "
            "or choose another --output."
        )
    overrides = list(args.set or [])
    if args.steps is not None:
        overrides.append(f"train.steps={args.steps}")
    overrides.append(f'train.device="{device}"')
    config_file = args.config
    if resume and config_file is None and (out_dir / "config.toml").is_file():
        # the run's own resolved config: without it the defaults (10,000 steps, F-SDS guidance, ...)
        # would replace the original run's settings, e.g. its --steps and --set values
        config_file = out_dir / "config.toml"
    try:
        config = load_config(config_file, overrides)
    except HeadStudioError:
        raise
    except (ValueError, KeyError, TypeError) as err:
        raise HeadStudioError(f"invalid configuration: {one_line(err)}") from err
    if args.dry_run:  # load everything, a few real steps, write nothing
        print("\n".join(dry_run(config, args.prompt).lines(config)))
        return 0
    if args.resume_previous:
        use_previous_checkpoint(checkpoint)
    if resume:
        trainer = Trainer.resume(out_dir, config, args.prompt, progress=not args.quiet)
    else:
        trainer = Trainer.new(config, args.prompt, out_dir, progress=not args.quiet)
    try:
        avatar_path = trainer.train()
    except TrainingInterrupted as err:
        raise KeyboardInterrupt(
            f"{err.summary}. Continue with: headstudio generate {json.dumps(args.prompt)} --output {out_dir} "
            "--resume"
        ) from None
    print(f"avatar written to {avatar_path}")
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    out = Path(args.output).absolute()
    options = BatchOptions(
        prompts=Path(args.prompts), output=out, overrides=tuple(args.set or ()),
        config=Path(args.config).absolute() if args.config else None, steps=args.steps, device=args.device,
        workers=args.workers, ray=args.ray, retries=args.retries, evaluate=args.eval,
        clip_models=tuple(args.clip_model or DEFAULT_CLIP_MODELS), progress=not args.quiet,
    )  # fmt: skip
    plan = plan_batch(options)  # every input check, before any work
    backend = open_backend(options, plan)
    n, todo = len(plan), sum(p.state.state != "finished" for p in plan)
    where = f" on a {backend.describe()}" if backend is not None else ""
    print(f"batch of {n} avatar(s) into {out}: {todo} to train, {n - todo} finished before (skipped){where}")
    report = run_batch(options, plan, backend)
    print(summary_table(report, options.evaluate))
    print(f"records in {out / 'batch.jsonl'}, item logs in {out / '_logs'}")
    if report.eval_note:
        print(f"--eval: {report.eval_note}")
    if report.stopped:
        resumable = report.count("interrupted")
        raise KeyboardInterrupt(
            f"batch stopped with {len(report.left)} of {n} avatar(s) left ({resumable} continue from their "
            "checkpoint); run the same command again to go on."
        )
    if report.count("failed"):
        sys.stderr.write(
            f"error: {report.count('failed')} of {n} avatar(s) failed (errors in the table and batch.jsonl, "
            "logs in _logs/); fix them and run the same command again: finished avatars are skipped.\n"
        )
        return EXIT_INTERNAL
    return 0


def cmd_animate(args: argparse.Namespace) -> int:
    w, h = check_size(*args.size)
    out = _check_output(args.output, (".mp4",))
    if args.motion is not None:
        require_file(args.motion, "motion file", MOTION_SUFFIXES)
    if args.audio is not None:
        require_file(args.audio, "audio file")
    avatar = load_avatar(args.avatar, args.flame, resolve_device(args.device), verify=args.verify)
    motion: Any = args.motion
    if args.audio is not None and args.motion is None:  # lip sync to the audio itself
        motion = lipsync_motion(avatar, args.audio, fps=args.fps or 30.0)
    n = render_motion(
        avatar, motion, out, audio=args.audio, fps=args.fps, size=(w, h), num_frames=args.frames,
        progress=not args.quiet,
    )  # fmt: skip
    print(f"wrote {out} ({n} frames)")
    return 0


def cmd_say(args: argparse.Namespace) -> int:
    w, h = check_size(*args.size)
    out = _check_output(args.output, (".mp4",))
    if args.motion_out is not None:
        _check_output(args.motion_out, (".npz",), "--motion-out")
    utterance = synthesize_speech(args.text, language=args.language, voice=args.voice, rate=args.rate)
    avatar = load_avatar(args.avatar, args.flame, resolve_device(args.device), verify=args.verify)
    res = say(
        avatar, utterance, out, fps=args.fps, size=(w, h), motion_out=args.motion_out, progress=not args.quiet
    )
    print(f"wrote {out} ({res.num_frames} frames, {res.duration:.2f} s of speech)")
    if res.motion is not None:
        print(f"motion saved to {res.motion}")
    return 0


def cmd_drive(args: argparse.Namespace) -> int:
    w, h = check_size(*args.size)
    out = _check_output(args.output, (".mp4",))
    require_file(args.video, "video", (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"))
    if args.save_motion is not None:
        _check_output(args.save_motion, (".npz",), "--save-motion")
    if args.report is not None:
        _check_output(args.report, (".json",), "--report")
    neutral = args.neutral.strip()
    if neutral.lower() not in ("auto", "none"):
        neutral = str(require_file(neutral, "--neutral image", (".png", ".jpg", ".jpeg", ".bmp", ".webp")))
    resolve_landmarker(args.landmarker)
    options = DriveOptions(
        neutral=neutral,
        min_cutoff=math.inf if args.no_filter else args.filter_min_cutoff,
        beta=args.filter_beta,
        d_cutoff=args.filter_d_cutoff,
        smoothing=args.smoothing,
        landmarker=args.landmarker,
    )
    avatar = load_avatar(args.avatar, args.flame, resolve_device(args.device), verify=args.verify)
    head = copy.deepcopy(avatar.head).cpu()  # the landmark fit runs on the CPU
    res = video_to_motion(
        head, args.video, save_motion=args.save_motion, max_frames=args.max_frames, options=options
    )
    print(res.summary())
    if args.report is not None:
        with atomic_output(args.report) as tmp:
            tmp.write_text(json.dumps(res.report(), indent=1) + "\n", encoding="utf-8")
    n = render_motion(avatar, res.motion, out, size=(w, h), progress=not args.quiet)
    print(f"wrote {out} ({n} frames)")
    if args.save_motion:
        print(f"motion saved to {args.save_motion}")
    if args.report:
        print(f"per-frame report (face found, reprojection error px) saved to {args.report}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    w, h = check_size(*args.size)
    settings = ViewSettings(elevation_deg=args.elevation)
    if args.turntable:
        out = _check_output(args.output, (".mp4",))
        avatar = load_avatar(args.avatar, args.flame, resolve_device(args.device), verify=args.verify)
        n = render_turntable(avatar, out, args.frames, args.fps, (w, h), settings, progress=not args.quiet)
        print(f"wrote {out} ({n} frames)")
    else:
        out = Path(args.output)
        if out.suffix and out.suffix.lower() != ".png":
            raise HeadStudioError(f"output '{out}' must be a .png file or a directory for --views.")
        avatar = load_avatar(args.avatar, args.flame, resolve_device(args.device), verify=args.verify)
        paths = render_stills(avatar, out, args.views, (w, h), settings)
        print(f"wrote {len(paths)} image(s): {paths[0] if len(paths) == 1 else out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    fmt = args.format
    if args.motion is not None:
        require_file(args.motion, "motion file", MOTION_SUFFIXES)
    if args.audio is not None:
        require_file(args.audio, "audio file")
    ply_only = {"--expression": args.expression, "--jaw": args.jaw, "--motion-frame": args.motion_frame}
    for flag, value in ply_only.items():
        if value is not None and fmt != "ply":
            raise HeadStudioError(f"{flag} poses a single PLY; it applies to --format ply, not {fmt}.")
    if args.audio is not None and fmt != "web":
        raise HeadStudioError("--audio goes into a web export; use it with --format web.")
    if args.include_head_model and fmt != "web":
        raise HeadStudioError("--include-head-model applies to --format web.")
    if fmt == "ply":
        out = _check_output(args.output, (".ply",))
        if args.motion is None and args.motion_frame is not None:
            raise HeadStudioError("--motion-frame needs --motion FILE.")
    else:
        out = Path(args.output)
        if out.suffix.lower() == ".ply":
            raise HeadStudioError(f"--format {fmt} writes a folder; give -o a folder name, not '{out}'.")
    avatar = load_avatar(args.avatar, args.flame, resolve_device(args.device), verify=args.verify)
    if fmt == "ply-sequence":
        paths = export_ply_sequence(avatar, out, args.motion, progress=not args.quiet)
        print(f"wrote {len(paths)} PLY frames to {out}")
        return 0
    if fmt == "web":
        procedural = avatar.head.source == "procedural"
        presets = fit_presets(avatar.head) if procedural or args.include_head_model else None
        export_web(
            avatar, out, args.motion, args.audio, include_head_model=args.include_head_model, presets=presets,
            progress=not args.quiet,
        )  # fmt: skip
        print(f"wrote {out}/index.html (open it in a browser; it needs no server)")
        return 0
    num_expr = avatar.head.num_expression
    kw = posed_flame_kwargs(
        num_expr, parse_expression_args(args.expression or [], num_expr), args.jaw, args.motion,
        args.motion_frame or 0,
    )  # fmt: skip
    export_posed(avatar, out, kw)
    print(f"wrote {out}")
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    if args.motion is not None:
        require_file(args.motion, "motion file", MOTION_SUFFIXES)
    if args.audio is not None:
        require_file(args.audio, "audio file")
    if not 0 <= args.port <= 65535:
        raise HeadStudioError(f"--port {args.port} is not a TCP port; give 1..65535, or 0 for any free one.")
    check_port(args.host, args.port)
    avatar = load_avatar(args.avatar, args.flame, resolve_device(args.device), verify=args.verify)
    motion = as_motion(args.motion) if args.motion is not None else default_motion(avatar.head, args.audio)
    server = prepare_server(avatar, motion, args.audio, host=args.host, port=args.port)

    def ready(url: str) -> None:
        if not is_loopback(args.host):
            print(f"serving beyond this machine on {args.host}: the page needs the token in this URL")
        print(f"headstudio viewer at {url}  (Ctrl-C to stop)", flush=True)
        if not args.no_browser:
            webbrowser.open(url)

    try:
        start_or_explain(server, ready)
    except KeyboardInterrupt:  # Ctrl-C is how a viewer stops: no error
        print("viewer stopped")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    if not args.prompt.strip():
        raise HeadStudioError("the prompt is empty; pass the text the avatar was made from with --prompt.")
    check_size(args.size)
    device = resolve_device(args.device)
    avatar = load_avatar(args.avatar, args.flame, device, verify=args.verify)
    res = evaluate_avatar(avatar, args.prompt, args.clip_model or DEFAULT_CLIP_MODELS, args.size, device)
    for m, s in res.scores.items():
        print(f"CLIP score {m}: {s:.4f}")
    if args.json:
        with atomic_output(args.json) as tmp:
            doc = {"prompt": res.prompt, "num_views": res.num_views, "scores": res.scores}
            tmp.write_text(json.dumps(doc, indent=2))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise HeadStudioError(f"--output '{out}' exists and is not a directory.")
    size, steps = (args.size, args.steps)
    if args.quick:
        size, steps = size or QUICK_DEMO_SIZE, steps or QUICK_DEMO_STEPS
    kwargs: dict[str, Any] = {"device": resolve_device(args.device), "progress": not args.quiet}
    if size is not None:
        kwargs["size"] = check_size_arg(size)
    if steps is not None:
        kwargs["steps"] = steps
    try:
        result = run_demo(out, **kwargs)
    except KeyboardInterrupt as err:
        # the trainer's message suggests `headstudio generate ... --resume`, which would finish the
        # avatar but not the demo's videos and PSNR; the demo itself always starts afresh
        raise KeyboardInterrupt(
            f"demo interrupted; its outputs in '{out}' are incomplete. Run `headstudio demo --output {out}` "
            "(with the same options) again to start afresh."
        ) from err
    if result is not None:
        print(result if isinstance(result, str) else json.dumps(result, indent=2, default=str))
    return 0


# ------------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of ``headstudio`` and its subcommands."""
    common = _Parser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    common.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    av = _Parser(add_help=False)
    av.add_argument("avatar", help="avatar .ply written by generate/demo")
    av.add_argument("--flame", metavar="PKL", help="FLAME model of the avatar (default: its metadata)")
    av.add_argument(
        "--no-verify", dest="verify", action="store_false",
        help="read the avatar even if its integrity checksum does not match (forensics on a damaged file)",
    )  # fmt: skip

    desc = "Text to animatable 3D Gaussian head avatars."
    p = _Parser(prog="headstudio", description=desc, parents=[common])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    g = sub.add_parser("generate", parents=[common], help="train an avatar from a text prompt")
    g.add_argument("prompt")
    g.add_argument("--config", metavar="TOML")
    g.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value (repeatable)")
    g.add_argument("--output", metavar="DIR", help="output directory (default outputs/<slug-of-prompt>)")
    g.add_argument("--resume", action="store_true", help="continue from DIR/checkpoints/last.pt")
    g.add_argument(
        "--resume-previous", action="store_true",
        help="continue from DIR/checkpoints/previous.pt, the checkpoint before last.pt (when last.pt is "
        "damaged; it is kept as last.set-aside.pt)",
    )  # fmt: skip
    g.add_argument("--steps", type=_positive_int)
    g.add_argument(
        "--dry-run", action="store_true",
        help="preflight: load everything, run 3 steps with these settings, print ms/step, the run's ETA and "
        "peak memory; writes nothing",
    )  # fmt: skip
    g.set_defaults(func=cmd_generate, flags={**FLAGS, "head": "--set head.flame_path"})

    b = sub.add_parser(
        "batch", parents=[common], help="many avatars from a prompts file, on every GPU or on Ray"
    )
    b.add_argument(
        "prompts", metavar="PROMPTS",
        help="one prompt per line (.txt; # comments), or .jsonl / .toml entries with prompt and per-item "
        "seed, steps, flame, motion, name, set",
    )  # fmt: skip
    b.add_argument("-o", "--output", required=True, metavar="DIR", help="one folder per avatar, batch.jsonl")
    b.add_argument(
        "--workers",
        type=_positive_int,
        metavar="N",
        help="local processes (default: one per GPU; 1 on the CPU)",
    )
    b.add_argument(
        "--ray", nargs="?", const="", metavar="ADDRESS",
        help="one Ray task (one GPU) per item: auto, HOST:PORT or ray://HOST:PORT of a running cluster, none "
        'for a local one; DIR must be shared storage. Needs pip install "headstudio-app[ray]"',
    )  # fmt: skip
    b.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="config value of every item (repeatable)"
    )
    b.add_argument("--config", metavar="TOML", help="configuration of every item")
    b.add_argument("--steps", type=_positive_int, help="training steps of every item")
    b.add_argument("--retries", type=int, default=1, metavar="R", help="attempts after a failure (default 1)")
    b.add_argument(
        "--eval", action="store_true", help="CLIP score of each avatar, if the CLIP models are at hand"
    )
    b.add_argument(
        "--clip-model", action="append", metavar="ID_OR_DIR", help="with --eval (default: the paper's 3)"
    )
    b.set_defaults(func=cmd_batch)

    a = sub.add_parser("animate", parents=[common, av], help="animate an avatar with a FLAME motion to MP4")
    a.add_argument("--motion", metavar="FILE", help="TalkSHOW .npy, SHOW .pkl or .npz (default: procedural)")
    a.add_argument("--audio", metavar="WAV", help="audio muxed in; without --motion, lip sync to it")
    a.add_argument("--fps", type=_positive_float, help="video frame rate (default: the motion's)")
    a.add_argument("--size", type=_size, default=(512, 512), help="512 or WxH")
    a.add_argument("--frames", type=_positive_int, help="render at most this many frames")
    a.add_argument("-o", "--output", required=True, metavar="OUT.mp4")
    a.set_defaults(func=cmd_animate)

    t = sub.add_parser("say", parents=[common, av], help="speak a text (offline, espeak-ng) to MP4")
    t.add_argument("text", help='what to say, e.g. "Hello, I am a Gaussian head."')
    t.add_argument("-o", "--output", required=True, metavar="OUT.mp4")
    t.add_argument("--voice", metavar="VARIANT", help="espeak-ng voice variant: f1..f5, m1..m7, klatt, ...")
    t.add_argument("--rate", type=_positive_int, default=175, metavar="WPM", help="words per minute (80-450)")
    t.add_argument("--language", default="en", metavar="L", help="espeak-ng language: en, en-us, de, fr, ...")
    t.add_argument("--motion-out", metavar="MOTION.npz", help="also save the motion")
    t.add_argument("--fps", type=_positive_float, default=30.0, help="video frame rate")
    t.add_argument("--size", type=_size, default=(512, 512), help="512 or WxH")
    t.set_defaults(func=cmd_say)

    d = sub.add_parser("drive", parents=[common, av], help="animate an avatar from a face video")
    d.add_argument("--video", required=True, metavar="IN.mp4")
    d.add_argument("-o", "--output", required=True, metavar="OUT.mp4")
    d.add_argument("--save-motion", metavar="MOTION.npz", help="also save the fitted motion")
    d.add_argument(
        "--report",
        metavar="REPORT.json",
        help="also save per-frame results: face found, landmark reprojection error in pixels, neutral",
    )
    d.add_argument(
        "--neutral",
        default="auto",
        metavar="auto|none|IMAGE",
        help="the actor's resting face, subtracted from the motion: auto (the video's least active "
        "frames), none, or a photo of the resting face (default auto)",
    )
    filter_args = (
        ("min-cutoff", "HZ", _positive_float, "cutoff of a still face, lower is smoother"),
        ("beta", "B", _non_negative_float, "how fast the cutoff rises with speed, higher keeps fast motion"),
        ("d-cutoff", "HZ", _positive_float, "cutoff of the speed estimate"),
    )
    defaults = DriveOptions()
    for (flag, metavar, kind, what), default in zip(
        filter_args, (defaults.min_cutoff, defaults.beta, defaults.d_cutoff)
    ):
        d.add_argument(
            f"--filter-{flag}",
            type=kind,
            default=default,
            metavar=metavar,
            help=f"one-euro filter on the landmarks, {flag}: {what} (default {default:g})",
        )
    d.add_argument("--no-filter", action="store_true", help="fit the raw landmarks")
    d.add_argument(
        "--smoothing",
        type=_non_negative_float,
        default=0.0,
        help="extra second-difference penalty over time in the FLAME fit (default 0)",
    )
    d.add_argument("--landmarker", metavar="TASK", help="MediaPipe face_landmarker.task")
    d.add_argument("--max-frames", type=_positive_int)
    d.add_argument("--size", type=_size, default=(512, 512))
    d.set_defaults(func=cmd_drive)

    r = sub.add_parser("render", parents=[common, av], help="turntable video or still images")
    mode = r.add_mutually_exclusive_group(required=True)
    mode.add_argument("--turntable", action="store_true", help="360° orbit to OUT.mp4")
    mode.add_argument("--views", type=_positive_int, metavar="N", help="N views to OUT.png (grid) or a dir")
    r.add_argument("-o", "--output", required=True)
    r.add_argument("--size", type=_size, default=(512, 512))
    r.add_argument("--frames", type=_positive_int, default=120, help="turntable frames")
    r.add_argument("--fps", type=_positive_float, default=30.0)
    r.add_argument("--elevation", type=_finite_float, default=0.0, help="camera elevation in degrees")
    r.set_defaults(func=cmd_render)

    e = sub.add_parser(
        "export", parents=[common, av], help="posed PLY, PLY sequence, or a self-contained web viewer folder"
    )
    e.add_argument(
        "--format", choices=("ply", "ply-sequence", "web"), default="ply",
        help="ply: one posed PLY (default); ply-sequence: one world-space PLY per motion frame in the "
        "folder -o; web: a folder with the browser viewer that plays from file:// with no server",
    )  # fmt: skip
    e.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="OUT.ply, or a folder for the other formats"
    )
    e.add_argument(
        "--expression", action="append", metavar="I=V", help="set expression component I to V (ply)"
    )
    e.add_argument("--jaw", type=_finite_float, metavar="RAD", help="jaw opening in radians (ply)")
    e.add_argument(
        "--motion", metavar="FILE", help="motion (default for ply-sequence/web: the procedural one)"
    )
    e.add_argument("--motion-frame", type=int, metavar="K", help="which motion frame (ply)")
    e.add_argument("--audio", metavar="WAV", help="audio played with the motion (web)")
    e.add_argument(
        "--include-head-model", action="store_true",
        help="web: also ship a FLAME head's model so the sliders work offline. Off by default because the "
        "FLAME model is licensed and may not be passed on; without it a FLAME avatar's folder plays its "
        "baked motion only. The open procedural head's model is always included.",
    )  # fmt: skip
    e.set_defaults(func=cmd_export)

    w = sub.add_parser("view", parents=[common, av], help="view and animate an avatar in the browser")
    w.add_argument("--motion", metavar="FILE", help="motion to play (default: the procedural talking motion)")
    w.add_argument("--audio", metavar="WAV", help="audio played in sync with the motion")
    w.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0: any free port)")
    w.add_argument(
        "--host", default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only); any other address requires the "
        "random token printed in the URL",
    )  # fmt: skip
    w.add_argument("--no-browser", action="store_true", help="print the URL, do not open a browser")
    w.set_defaults(func=cmd_view)

    v = sub.add_parser("eval", parents=[common, av], help="CLIP score against a prompt")
    v.add_argument("--prompt", required=True)
    v.add_argument(
        "--clip-model", action="append", metavar="ID_OR_DIR", help="repeatable (default: the paper's 3)"
    )
    v.add_argument("--size", type=int, default=224)
    v.add_argument("--json", metavar="OUT.json")
    v.set_defaults(func=cmd_eval)

    m = sub.add_parser("demo", parents=[common], help="offline demo: train from a teacher, videos, PSNR")
    m.add_argument("--output", default="outputs/demo", metavar="DIR")
    m.add_argument("--quick", action="store_true", help="smaller and shorter (a smoke run)")
    m.add_argument("--size", type=int, help="training / render resolution")
    m.add_argument("--steps", type=_positive_int, help="training steps")
    m.set_defaults(func=cmd_demo)
    return p


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    fmt = "%(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr, force=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (the console script exits with it)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    _configure_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except HeadStudioError as err:
        if args.debug:
            raise
        flag = getattr(args, "flags", FLAGS).get(err.argument or "")
        sys.stderr.write(f"error: {flag + ': ' if flag else ''}{err}\n")
        return EXIT_USAGE
    except GuidanceModelError as err:  # fsds-guidance's own message, then the flags that set its arguments
        if args.debug:
            raise
        sys.stderr.write(
            f"error: {one_line(err)} With headstudio, give local copies with --set guidance.base_model=DIR "
            "--set guidance.controlnet=DIR.\n"
        )
        return EXIT_USAGE
    except KeyboardInterrupt as err:
        if args.debug:
            raise
        if str(err).strip():  # an interrupted run: says where the checkpoint is and how to resume
            sys.stderr.write(f"error: {one_line(err)}\n")
        else:
            sys.stderr.write("error: interrupted (Ctrl-C); unfinished outputs were removed, run it again.\n")
        return EXIT_INTERRUPTED
    except Exception as err:
        if args.debug:
            raise
        if isinstance(err, torch.cuda.OutOfMemoryError):
            sys.stderr.write(
                "error: CUDA out of memory; use a smaller --size (or batch / resolution via --set), "
                "close other GPU programs, or run with --device cpu.\n"
            )
            return EXIT_USAGE
        if isinstance(err, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
            sys.stderr.write(f"error: {one_line(err)}; check the path and its permissions.\n")
            return EXIT_USAGE
        sys.stderr.write(
            f"error: internal error ({type(err).__name__}: {one_line(err, 300)}); "
            "run again with --debug for the traceback and report it.\n"
        )
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
