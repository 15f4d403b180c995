"""``generate``: train an avatar from a text prompt, or from a photograph, into its run folder.

The policy of a run: its folder (``outputs/<slug of the prompt>`` by default), the resume rule
(:meth:`RunFolder.resolve_resume`), the configuration it uses (a resumed run reads its own
``config.toml`` unless another is given), and the folder's lock for as long as it writes.
"""

from __future__ import annotations

import logging
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

log = logging.getLogger(__name__)

__all__ = ["GenerateOptions", "GenerateResult", "run", "run_folder", "run_photo"]


@dataclass(frozen=True)
class GenerateOptions:
    """What to train, where and how.

    Attributes:
        prompt: the text prompt (may be empty with ``image``: an offline photo avatar).
        image: a photograph of the person to build (:mod:`headstudio.train.photo`).
        face: which face of the photograph, numbered from its left (``None``: the largest).
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
    image: Path | None = None
    face: int | None = None
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
    """The run's folder: ``options.output``, else ``outputs/<slug of the prompt>`` (of the photo's
    name when there is no prompt)."""
    if options.output is not None:
        return RunFolder(options.output)
    name = options.prompt if options.prompt.strip() or options.image is None else Path(options.image).stem
    return RunFolder(Path("outputs") / slugify(name))


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
    if options.image is not None:
        return run_photo(options)
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


def run_photo(options: GenerateOptions) -> GenerateResult:
    """Build (or continue) the avatar of the person in ``options.image`` (:mod:`~headstudio.train.photo`).

    Offline without a prompt, or when the diffusion weights cannot be loaded (said in one warning);
    with a prompt and weights, F-SDS on random views joins the photo's views. Every refusal of the
    photo (unreadable, no face, too small, turned too far) happens before anything is written.
    """
    from ..train import photo as ph

    if options.dry_run:
        raise HeadStudioError("«dry_run» rehearses a text-prompt run; leave it out with «image».")
    if options.config is not None:
        require_file(options.config, "config file", (".toml",))
    require_file(options.image, "photo")
    device = str(resolve_device(options.device))
    folder = run_folder(options)
    folder.check_is_folder()
    prompt = options.prompt.strip() or None
    setup = None
    if options.resume is not True and not options.resume_previous and not folder.checkpoint.exists():
        # a new run: the photo is read, checked and fitted before the folder is touched
        config = _config(options, folder, False, device)
        head = _head(config)
        size = config.train.resolution if _overrides_key(options, "train.resolution") else ph.PHOTO_SIZE
        setup = ph.prepare_photo(options.image, head, int(size), face=options.face)
    with folder.lock(wait=options.wait):
        if options.resume_previous:
            if options.resume is True:
                folder.resolve_resume(True)
            resume = True
        else:
            resume = folder.resolve_resume(options.resume)
        if resume:
            config = _config(options, folder, True, device)
            if options.resume_previous:
                use_previous_checkpoint(folder.checkpoint)
            return GenerateResult(folder.path, _resume_photo(options, folder, config, prompt), resumed=True)
        if setup is None:  # the folder's checkpoint vanished since: a new run after all
            config = _config(options, folder, False, device)
            head = _head(config)
            setup = ph.prepare_photo(options.image, head, ph.PHOTO_SIZE, face=options.face)
        sds = _sds_or_none(config, head, prompt)
        steps = options.steps if options.steps is not None else ph.PHOTO_STEPS
        cfg = ph.photo_config(config, steps, setup.view.size[0], with_sds=sds is not None)
        trainer = ph.start_photo_run(
            cfg, setup, folder, head, prompt=prompt, sds=sds, progress=options.progress
        )
        return GenerateResult(folder.path, trainer.train())


def _overrides_key(options: GenerateOptions, key: str) -> bool:
    return any(o.split("=", 1)[0].strip() == key for o in options.overrides)


def _head(config: HeadStudioConfig):  # noqa: ANN202 - FlameModel
    from ..train.trainer import _head_from_config

    return _head_from_config(config)


def _sds_or_none(config: HeadStudioConfig, head, prompt: str | None):  # noqa: ANN001, ANN202
    """F-SDS guidance for a photo run with a prompt, or ``None`` (no prompt; no weights)."""
    if prompt is None:
        return None
    from fsds_guidance import GuidanceModelError

    from ..train.guidance import FSDSGuidance

    try:
        sds = FSDSGuidance(
            config.guidance, head, resolve_device(config.train.device), prompt=prompt,
            image_size=config.train.guidance_resolution, seed=config.train.seed,
        )  # fmt: skip
    except GuidanceModelError as err:
        log.warning(
            "the diffusion models could not be loaded (%s); the photo avatar is built offline, from the "
            "photo alone",
            one_line(err, 200),
        )
        return None
    return sds


def _resume_photo(
    options: GenerateOptions, folder: RunFolder, config: HeadStudioConfig, prompt: str | None
) -> Path:
    """Continue a photo run: the photo read again (the same file), the same views rebuilt."""
    import torch

    from ..avatar import Avatar
    from ..train import photo as ph
    from ..train.photo_guidance import PhotoFSDSGuidance, PhotoGuidance

    record = ph.load_photo_record(folder.path)
    if record is None:
        raise HeadStudioError(
            f"the run in '{folder.path}' was not made from a photo; continue it without «image».",
            argument="image",
        )
    if Path(record["image"]).resolve() != Path(options.image).resolve():
        log.info(
            "photo run: continuing with '%s' (the run was started from '%s')", options.image, record["image"]
        )
        record = {**record, "image": str(options.image)}
    head = _head(config)
    setup = ph.restore_photo(record, head)
    init = Avatar.initialize(
        head, config.init, generator=torch.Generator().manual_seed(int(config.train.seed))
    )
    ph.init_photo_avatar(init, setup)
    views = [ph.fill_unscored(v, init) for v in (setup.view, setup.mirror)]
    guidance = PhotoGuidance(views, priors=ph.prior_views(init, setup, seed=int(config.train.seed)))
    sds = _sds_or_none(config, head, prompt or None)
    g = guidance if sds is None else PhotoFSDSGuidance(guidance, sds)
    trainer = Trainer.resume(folder, config, prompt, guidance=g, head=head, progress=options.progress)
    trainer.avatar.metadata["source"] = setup.provenance()
    return trainer.train()
