"""``generate``: train an avatar from a text prompt into its run folder.

The policy of a run: its folder (``outputs/<slug of the prompt>`` by default), the resume rule
(:meth:`RunFolder.resolve_resume`), the configuration it uses (a resumed run reads its own
``config.toml`` unless another is given), and the folder's lock for as long as it writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..batch.items import slugify
from ..config import HeadStudioConfig, load_config
from ..errors import HeadStudioError, one_line, require_file
from ..train.checkpoint import use_previous_checkpoint
from ..train.preflight import dry_run
from ..train.run_folder import RunFolder
from ..train.runtime import resolve_device
from ..train.trainer import Trainer

__all__ = ["GenerateOptions", "GenerateResult", "run", "run_folder"]


@dataclass(frozen=True)
class GenerateOptions:
    """What to train, where and how.

    Attributes:
        prompt: the text prompt.
        output: the run folder (``None``: ``outputs/<slug of the prompt>``).
        config: a TOML configuration (``None``: the defaults; a resumed run: its own).
        overrides: ``key=value`` configuration overrides, in order.
        steps: ``train.steps`` (after the overrides).
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``.
        resume: ``True``: continue the folder's checkpoint; ``False``: a new run; ``None``:
            continue when the folder holds a checkpoint (a batch item).
        resume_previous: continue from ``checkpoints/previous.pt`` (``last.pt`` is damaged).
        dry_run: load everything, run a few steps, report; write nothing.
        progress: draw the progress bar.
        wait: wait for another process that writes the folder instead of refusing (a batch
            item whose killed attempt still writes its checkpoint).
    """

    prompt: str
    output: Path | None = None
    config: Path | None = None
    overrides: tuple[str, ...] = ()
    steps: int | None = None
    device: str = "auto"
    resume: bool | None = False
    resume_previous: bool = False
    dry_run: bool = False
    progress: bool = True
    wait: bool = False


@dataclass(frozen=True)
class GenerateResult:
    """``avatar``: the trained avatar (``None`` for a dry run); ``folder``: the run folder;
    ``resumed``: it continued a checkpoint; ``report``: the dry run's lines."""

    folder: Path
    avatar: Path | None = None
    resumed: bool = False
    report: tuple[str, ...] = ()


def run_folder(options: GenerateOptions) -> RunFolder:
    """The run's folder: ``options.output``, else ``outputs/<slug of the prompt>``."""
    return RunFolder(
        options.output if options.output is not None else Path("outputs") / slugify(options.prompt)
    )


def _config(options: GenerateOptions, folder: RunFolder, resume: bool, device: str) -> HeadStudioConfig:
    overrides = list(options.overrides)
    if options.steps is not None:
        overrides.append(f"train.steps={options.steps}")
    overrides.append(f'train.device="{device}"')
    config_file = options.config
    if resume and config_file is None and folder.config.is_file():
        # the run's own resolved config: without it the defaults (10,000 steps, F-SDS guidance, ...)
        # would replace the original run's settings, e.g. its steps and overrides
        config_file = folder.config
    try:
        return load_config(config_file, overrides)
    except HeadStudioError:
        raise
    except (ValueError, KeyError, TypeError) as err:
        raise HeadStudioError(f"invalid configuration: {one_line(err)}") from err


def run(options: GenerateOptions) -> GenerateResult:
    """Train (or continue, or rehearse) the run of ``options``.

    Raises:
        HeadStudioError: bad input, a folder in the wrong state for the resume rule, or a folder
            another process writes (:class:`~headstudio.train.run_folder.RunFolderBusy`).
        TrainingInterrupted: Ctrl-C; the checkpoint says where to continue.
    """
    if not options.prompt.strip():
        raise HeadStudioError(
            'the prompt is empty; describe the head, e.g. headstudio generate "a DSLR portrait of Kratos".'
        )
    if options.config is not None:
        require_file(options.config, "config file", (".toml",))
    device = str(resolve_device(options.device))
    folder = run_folder(options)
    folder.check_is_folder()
    asks_resume = options.resume is True or options.resume_previous
    if options.dry_run:  # load everything, a few real steps, write nothing
        if asks_resume:
            raise HeadStudioError("«dry_run» rehearses a new run; leave out «resume».")
        config = _config(options, folder, False, device)
        return GenerateResult(folder.path, report=tuple(dry_run(config, options.prompt).lines(config)))
    with folder.lock(wait=options.wait):
        if options.resume_previous:  # continues previous.pt, put in last.pt's place below
            if options.resume is True:  # both asked: last.pt must be there as well
                folder.resolve_resume(True)
            resume = True
        else:
            resume = folder.resolve_resume(options.resume)
        config = _config(options, folder, resume, device)
        if options.resume_previous:
            use_previous_checkpoint(folder.checkpoint)
        if resume:
            trainer = Trainer.resume(folder, config, options.prompt, progress=options.progress)
        else:
            trainer = Trainer.new(config, options.prompt, folder, progress=options.progress)
        return GenerateResult(folder.path, trainer.train(), resumed=resume)
