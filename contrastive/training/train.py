"""``train(config)``: the whole training path, from an image folder to a run directory.

Run directory layout::

    RUN_DIR/config.yaml              resolved TrainConfig
    RUN_DIR/metrics.csv              loss, lr, images/s, monitor kNN and collapse (CSVLogger)
    RUN_DIR/tensorboard/             the same scalars for TensorBoard (see --logger)
    RUN_DIR/checkpoints/last.ckpt    Lightning checkpoint (optimizer, scheduler, queue)
    RUN_DIR/checkpoints/epoch=NNN.ckpt  periodic checkpoints (``epoch=NNN-step=SSSSSS.ckpt``
                                     in a time-budget run: one per tenth of the budget)
    RUN_DIR/backbone.pt              plain torchvision state_dict of the trained backbone
    RUN_DIR/skipped_files.txt        images that could not be decoded (if any)
    RUN_DIR/data_files.json.gz       the training images (relative paths, count, hash):
                                     --resume says what changed since
    RUN_DIR/.contrastive-run         marker: image scans skip this folder (an --out inside
                                     --data is not data)
"""

from __future__ import annotations

import importlib.util
import logging
import math
import shlex
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.accelerators import CPUAccelerator
from pytorch_lightning.callbacks import Checkpoint, ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.loggers import (
    Logger,
    MLFlowLogger,
    TensorBoardLogger,
    WandbLogger,
)
from pytorch_lightning.utilities import rank_zero_only

from contrastive.console import show_messages
from contrastive.data.cache import CachedImageLoader
from contrastive.data.folder import (
    ImageFolder,
    check_bad_fraction,
    check_readable,
    read_skip_log,
    sample_paths,
)
from contrastive.data.image_files import RUN_MARKER
from contrastive.errors import ContrastiveError
from contrastive.files import check_writable_dir, write_text_atomic
from contrastive.hardware import check_accelerator
from contrastive.methods import DEFAULT_QUEUE_SIZE, METHODS, default_queue_size
from contrastive.training.budget import (
    BudgetPlan,
    FillTimeBudget,
    PlanTimeBudget,
    parse_duration,
    resolve_precision,
)
from contrastive.training.checkpoint_io import (
    AtomicCheckpointIO,
    explained_write_errors,
    save_torch_file,
)
from contrastive.training.collapse import CollapseMonitor
from contrastive.training.config import TrainConfig, dump_config
from contrastive.training.data import SKIP_LOG, batched_loader, per_image_loader
from contrastive.training.data_record import (
    DATA_RECORD,
    describe_change,
    relative_names,
    write_record,
)
from contrastive.training.health import health_callbacks
from contrastive.training.health_rules import MEMORISED_LAST, MEMORISED_LOSS, memorised
from contrastive.training.interrupt import GracefulInterrupt
from contrastive.training.last_checkpoint import SaveLastCheckpoint
from contrastive.training.lightning_compat import log_interval, set_step_limit
from contrastive.training.metrics_history import METRICS_FILE, HistoryCSVLogger, logged_losses
from contrastive.training.module import ContrastiveModule
from contrastive.training.progress import EpochSummary, progress_callbacks
from contrastive.training.projector_at_end import ProjectorAtEnd
from contrastive.training.resumable import LoaderPosition, ResumableLoader
from contrastive.training.resume import (
    LAST_CHECKPOINT,
    Progress,
    auto_resume,
    checkpoint_progress,
    finished,
    resolve_resume,
)
from contrastive.training.run_lock import LOCK_FILE, hold_run_folder
from contrastive.training.run_log import RUN_LOG, run_log
from contrastive.views.batched import BatchedViews

log = logging.getLogger(__name__)

# Refuse to start a run that could not even write its first checkpoints.
MIN_FREE_BYTES = 200 * 2**20

#: Checkpoints a time-budget run keeps besides ``last.ckpt`` (one per tenth of the budget),
#: and the least time between two: a checkpoint per epoch filled the disk on small folders
#: (a 1-minute run on 2 images kept 552 epochs' checkpoints, 3.5 GB).
KEPT_CHECKPOINTS_PER_BUDGET = 10
MIN_CHECKPOINT_INTERVAL_S = 60.0
#: Least time between two writes of ``last.ckpt`` in a budget run, whose writes cost the
#: budget's time (the end of training always writes it).
LAST_CHECKPOINT_INTERVAL_S = 30.0


@dataclass
class TrainResult:
    """What a finished run produced.

    Attributes:
        run_dir: The run directory.
        module: The trained LightningModule (``module.backbone`` is the encoder).
        config: The resolved configuration.
        num_images: Images used for training.
        finished_at_step: Set where a resumed run had already finished: its last step
            (nothing was trained and no file was written).
    """

    run_dir: Path
    module: ContrastiveModule
    config: TrainConfig
    num_images: int
    finished_at_step: int | None = None

    @property
    def backbone(self) -> torch.nn.Module:
        """The trained encoder."""
        return self.module.backbone

    @property
    def backbone_path(self) -> Path:
        """The exported plain ``state_dict``."""
        return self.run_dir / "backbone.pt"


def _mark_run_dir(run_dir: Path) -> None:
    """Writes :data:`RUN_MARKER`: a scan of a folder that holds this run skips it."""
    marker = run_dir / RUN_MARKER
    with explained_write_errors(marker, "run marker"):
        marker.write_text("a contrastive run folder: scans of image folders skip it\n")


@dataclass
class _Run:
    """What :func:`train` builds before fitting: the pieces Lightning wires together."""

    config: TrainConfig
    checkpoint: Path | None
    paths: list[Path]
    skipped: dict
    steps_per_epoch: int
    trainer: pl.Trainer
    loader: Iterable
    decode_failures: dict
    module: ContrastiveModule


def train(
    config: TrainConfig,
    resume: bool | Literal["auto"] = False,
    budget_started: float | None = None,
    folder: ImageFolder | None = None,
    progress_bar: bool | None = None,
) -> TrainResult:
    """Trains an encoder on ``config.data`` and writes the run directory ``config.out``.

    Check (resume, inputs) -> build (trainer, data, module) -> fit (a budget run plans its
    steps when fit starts) -> export.

    Args:
        config: The run's configuration.
        resume: Continue the run in ``config.out`` from its last checkpoint; ``"auto"``:
            where it has one, else start it (:func:`~contrastive.training.resume.auto_resume`,
            the command line's ``--auto-resume``).
        budget_started: ``time.perf_counter()`` at which the time budget started, when
            work before this call counts against it (the recipe planner); default: now.
        folder: ``config.data`` already scanned (by the planner), so that a large folder
            is not listed twice; scanned here when None or another folder.
        progress_bar: Draw a progress bar (True) or print epoch lines (False); None: a
            bar where stderr is a terminal.

    Returns:
        The trained module and where everything was written.

    Raises:
        ContrastiveError: For bad input (missing/empty folder, batch larger than the data
            set, a run directory that already holds a run, ...), a non-finite loss, a
            file that cannot be written (full disk), or a run folder deleted while training.
        TrainingInterrupted: On Ctrl-C or SIGTERM, after saving ``checkpoints/last.ckpt``
            (a KeyboardInterrupt; the message says how to resume).
    """
    started = time.perf_counter() if budget_started is None else budget_started
    show_messages()
    if resume == "auto":
        resume = auto_resume(config.run_dir)
    # Before resume looks at the folder: it clears partial writes, which would be the other
    # training's files in progress.
    created = not config.run_dir.exists()
    held = False
    try:
        with hold_run_folder(config.run_dir):
            held = True
            return _train_holding_the_folder(config, resume, started, folder, progress_bar)
    except BaseException as error:
        # Looked at before the tidying below, which removes the folder of a refused run.
        gone = held and isinstance(error, OSError) and not config.run_dir.is_dir()
        if created:
            _remove_unused_run_dir(config.run_dir)
        if gone:
            # Lightning's loggers and checkpoints fail deep inside it once the folder is
            # gone (metrics.csv: No such file or directory), a traceback that hides why.
            raise ContrastiveError(
                f"the run folder {config.run_dir} was deleted or moved while training, and "
                "its checkpoints and logs with it: training stopped; start again with "
                "--out NEW_FOLDER"
            ) from error
        raise


def _remove_unused_run_dir(run_dir: Path) -> None:
    """Removes a run folder made by a run refused before it wrote anything but its lock,
    marker and log (one image, a bad setting, too many unreadable images): a folder of
    nothing would block nothing, yet look like a run."""
    try:
        if {path.name for path in run_dir.iterdir()} <= {LOCK_FILE, RUN_MARKER, RUN_LOG}:
            for name in (LOCK_FILE, RUN_MARKER, RUN_LOG):
                (run_dir / name).unlink(missing_ok=True)
            run_dir.rmdir()
    except OSError:  # a file appeared, or the folder is not ours to tidy: leave it
        pass


def _train_holding_the_folder(
    config: TrainConfig,
    resume: bool,
    started: float,
    folder: ImageFolder | None,
    progress_bar: bool | None = None,
) -> TrainResult:
    """:func:`train` once the run folder's lock is held."""
    config, checkpoint = resolve_resume(config, resume)
    progress = checkpoint_progress(checkpoint) if checkpoint is not None else None
    if checkpoint is not None and progress is not None and finished(config, progress):
        return _alreadyfinished(config, progress)  # touches no file, the log included
    with run_log(config.run_dir, config.plan):
        return _train_logged(config, checkpoint, progress, started, folder, progress_bar)


def _train_logged(
    config: TrainConfig,
    checkpoint: Path | None,
    progress: Progress | None,
    started: float,
    folder: ImageFolder | None,
    progress_bar: bool | None = None,
) -> TrainResult:
    """:func:`train` of a run that has steps to go, its messages copied to ``train.log``."""
    if config.data:
        # Recorded as an absolute path: export, compare-runs and --resume read it from
        # other working folders.
        config = config.with_overrides(data=str(Path(config.data).expanduser().absolute()))
    check_accelerator(config.accelerator)
    if checkpoint is not None and config.data and not Path(config.data).is_dir():
        raise ContrastiveError(
            f"the run's data folder {config.data} (in {config.run_dir / 'config.yaml'}) does "
            "not exist; if the images moved, pass their folder with --resume --data FOLDER"
        )
    inputs = _checked_inputs(config, folder)
    if checkpoint is None:  # a resumed run keeps its queue, said once when it started
        config = _with_queue_size(config, len(inputs[0]))
    _mark_run_dir(config.run_dir)
    # Unknown (an unreadable checkpoint, which Lightning then names): every row is kept.
    resume_step = None if checkpoint is None else progress.step if progress else math.inf
    run = _build(config, checkpoint, *inputs, resume_step=resume_step, progress_bar=progress_bar)
    _check_and_record_data(run)
    budgeted = config.time_budget is not None and config.max_steps is None
    if not budgeted:  # a budget run writes its config once planned, inside fit
        _write_config(run.config)
    try:
        _fit(run, started if budgeted else None)
    finally:
        if budgeted and run.trainer.max_steps > 0:
            # The budget plan is final once training stops (re-planned, or interrupted):
            # recorded so that --resume continues the same schedule.
            run.config = _with_steps(run.config, run.trainer.max_steps, run.steps_per_epoch)
            if run.trainer.is_global_zero:
                _write_config(run.config)
    return _export(run)


def _alreadyfinished(config: TrainConfig, progress: Progress) -> TrainResult:
    """The result of resuming a run that has nothing left to train: its saved weights.

    No file is written (a plain ``--resume`` of a finished run used to rewrite the run
    folder and lose ``metrics.csv``), except ``backbone.pt`` where it is missing (a full
    disk at the end of training); one line says how to continue it.
    """
    limit, length = (
        ("--max-steps", config.max_steps)
        if config.max_steps is not None
        else ("--epochs", config.epochs)
    )
    log.info(
        "%s is already finished at step %d: nothing to train; resume with a larger %s to "
        "continue it (%s %d trains as long again)",
        config.run_dir,
        progress.step,
        limit,
        limit,
        2 * length,
    )
    module = ContrastiveModule(config.to_dict())
    # The module's own parts; a view maker has no saved state of its own to restore.
    weights = {k: v for k, v in progress.state_dict.items() if not k.startswith("view_maker.")}
    module.load_state_dict(weights)
    backbone = config.run_dir / "backbone.pt"
    if not backbone.is_file() and rank_zero_only.rank == 0:
        # The run finished training but could not write its weights (a full disk at the
        # end): the checkpoint holds them, so this resume completes the run.
        save_torch_file(module.backbone.state_dict(), backbone, what="backbone weights")
        log.info("%s was missing: written from the last checkpoint", backbone)
    return TrainResult(
        run_dir=config.run_dir,
        module=module,
        config=config,
        num_images=0,
        finished_at_step=progress.step,
    )


def _check_and_record_data(run: _Run) -> None:
    """Says where a resumed run's images changed since its record, then records this run's.

    The resumed run goes on (refusing would lose its work), but its checkpoint's place in
    the epoch and its steps per epoch belonged to the old file list: the user is told.
    """
    if rank_zero_only.rank != 0:  # one process writes, one warns
        return
    run_dir, root = run.config.run_dir, run.config.data
    names = relative_names(root, run.paths)  # once: a million paths take seconds to sort
    if run.checkpoint is not None:
        change = describe_change(run_dir, names)
        if change is not None:
            log.warning(
                "--resume: %s in %s (recorded in %s); training continues on the images found "
                "now, from the checkpoint's epoch and step",
                change,
                root,
                run_dir / DATA_RECORD,
            )
        elif (run_dir / DATA_RECORD).is_file():
            return  # the same images: the record stands
    write_record(run_dir, names)


def check_image_count(config: TrainConfig, count: int, where: str | Path) -> None:
    """Refuses a folder too small to train on, before any planning or decoding.

    Args:
        config: The run's settings (its devices decide how many processes share the data).
        count: Images found (after ``--max-images``).
        where: The folder, as named in the message.

    Raises:
        ContrastiveError: If there are fewer than two images per process.
    """
    world = expected_world_size(config)
    if count < 2 * world:
        # Each view is told apart from the other images' views: one image has none.
        raise ContrastiveError(
            f"contrastive training needs at least {2 * world} images"
            f"{f' ({world} processes)' if world > 1 else ''}; found {count} in {where}"
        )


def check_batch_fits(config: TrainConfig, count: int, where: str | Path) -> None:
    """Refuses a batch larger than the data, before any planning or decoding.

    Args:
        config: The run's settings (batch size and devices).
        count: Images found (after ``--max-images``).
        where: The folder, as named in the message.

    Raises:
        ContrastiveError: If one batch per process needs more images than there are.
    """
    world = expected_world_size(config)
    if config.batch_size * world > count:
        raise ContrastiveError(
            f"batch size {config.batch_size}{f' x {world} processes' if world > 1 else ''} "
            f"is larger than the data set ({count} images in {where}); "
            f"use --batch-size {count // world} or less"
        )


def _checked_inputs(
    config: TrainConfig, folder: ImageFolder | None = None
) -> tuple[list[Path], dict, int]:
    """Scans and checks the data and the run folder before anything is built.

    Returns:
        ``(paths, skipped, steps_per_epoch)``: the images to train on, the unreadable ones
        found so far with their reasons, and optimiser steps per epoch. Where the decoded
        cache is built (or read) before training, it is the check: it decodes every file,
        a stronger test than opening headers, which took 11.5 s of a 1-minute budget on
        100,000 images (2 cores); the unreadable files then come from the cache.
    """
    root = Path(config.data).expanduser().absolute()
    if folder is None or folder.root != root:
        folder = ImageFolder.scan(root)
    paths = folder.paths
    if config.max_images is not None and config.max_images < len(paths):
        paths = sample_paths(paths, config.max_images, config.seed)
        log.info(
            "a seeded sample of %d of the %d images (--max-images %d)",
            len(paths),
            len(folder),
            config.max_images,
        )
    world = expected_world_size(config)
    where = f"{folder.root}{' sampled by --max-images' if len(paths) < len(folder) else ''}"
    check_image_count(config, len(paths), where)
    check_batch_fits(config, len(paths), where)
    check_writable_dir(config.run_dir, min_free_bytes=MIN_FREE_BYTES)
    if _cache_decodes_every_file(config):
        paths, skipped = list(paths), {}
    else:
        paths, skipped = check_readable(paths, config.max_bad_fraction)
    log.info("training on %d images from %s", len(paths), folder.root)
    return paths, skipped, _steps_per_epoch(len(paths), config, world)


def _with_queue_size(config: TrainConfig, images: int) -> TrainConfig:
    """MoCo's queue sized for the data set (when not set), or a warning where the one set
    holds about as many keys as there are images; unchanged for in-batch methods."""
    method_class = METHODS.get(config.method.name)
    if method_class is None or not method_class.uses_memory_bank:
        return config
    world = expected_world_size(config)
    per_process = images // world
    where = f"the {per_process:,} images{' per process' if world > 1 else ''}"
    if config.method.queue_size is None:
        size = default_queue_size(per_process)
        if size < DEFAULT_QUEUE_SIZE:
            log.info(
                "MoCo queue: %d keys, a quarter of %s (a queue as large as the data set "
                "holds each image's own older key as a negative; --queue-size)",
                size,
                where,
            )
        return config.with_overrides(method=replace(config.method, queue_size=size))
    if config.method.queue_size >= per_process / 2:
        log.warning(
            "--queue-size %d is %s %s: each image often meets its own older key among "
            "its negatives and is pushed away from itself (the loss can rise); %d, a "
            "quarter of them, is the planned size",
            config.method.queue_size,
            "more than" if config.method.queue_size > per_process else "half or more of",
            where,
            default_queue_size(per_process),
        )
    return config


def _steps_per_epoch(images: int, config: TrainConfig, world_size: int) -> int:
    return max(1, images // (config.batch_size * world_size))


def _cache_decodes_every_file(config: TrainConfig) -> bool:
    return config.view_pipeline == "batched" and config.cache_images


def _build(
    config: TrainConfig,
    checkpoint: Path | None,
    paths: list[Path],
    skipped: dict,
    steps_per_epoch: int,
    resume_step: float | None = None,
    progress_bar: bool | None = None,
) -> _Run:
    """The trainer (with its callbacks), the data loader and the module, seeded.

    ``resume_step``: the checkpoint's step, where a run is resumed (see
    :func:`_build_loggers`); ``progress_bar``: see :func:`train`.
    """
    pl.seed_everything(config.seed, workers=True, verbose=False)
    trainer = _build_trainer(config, steps_per_epoch, resume_step, progress_bar)
    _check_sync_batchnorm(config, trainer)
    if config.view_pipeline == "batched":
        loader, decode_failures = batched_loader(
            paths, config, rank=trainer.global_rank, world_size=trainer.world_size
        )
        if isinstance(loader, CachedImageLoader):
            loader = ResumableLoader(loader)
            trainer.callbacks.append(LoaderPosition(loader))
        view_maker = BatchedViews(config.views, num_views=2)
    else:
        loader, decode_failures, view_maker = per_image_loader(paths, config), {}, None
    if decode_failures:
        check_bad_fraction(len(paths), decode_failures, config.max_bad_fraction)
        paths = [path for path in paths if path not in decode_failures]
        # A batch of all the images (a tiny folder's plan) no longer fits: said, not a
        # StopIteration from the budget probe's empty loader.
        check_batch_fits(
            config, len(paths), f"{config.data}, {len(decode_failures)} of its files unreadable"
        )
        steps_per_epoch = _steps_per_epoch(len(paths), config, trainer.world_size)
        if config.max_steps is not None:
            # The trainer's last epoch was counted with the unreadable files' batches: a
            # resumed budget run (959 of 963 images) stopped at step 574 of its 611.
            set_step_limit(trainer, config.max_steps, steps_per_epoch)
    trainer.callbacks.extend(health_callbacks(config, paths))
    trainer.callbacks.append(
        ProjectorAtEnd(config.data, paths, config.views, config.projector_sample_size, config.seed)
    )
    module = ContrastiveModule(config.to_dict(), view_maker=view_maker)
    if config.init_weights and checkpoint is None:  # a resumed run has its own weights
        _init_backbone(module, config)
    return _Run(
        config,
        checkpoint,
        paths,
        skipped,
        steps_per_epoch,
        trainer,
        loader,
        decode_failures,
        module,
    )


def environment_line(trainer: pl.Trainer) -> str:
    """What besides the config decides a run's numbers (into ``train.log``): the precision
    used, the threads, and the versions that compute it."""
    import importlib.metadata

    import torchvision

    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    precision = getattr(trainer, "precision", "?")
    kind = type(trainer.accelerator).__name__.removesuffix("Accelerator")
    threads = torch.get_num_threads()
    where = (
        f"{threads} CPU thread{'' if threads == 1 else 's'}"
        if kind == "CPU"
        else f"{trainer.num_devices} {kind} device(s)"
    )
    return (
        f"environment: precision {precision}, {where}, torch {torch.__version__}, torchvision "
        f"{torchvision.__version__}, lightly {version('lightly')}, pytorch-lightning "
        f"{version('pytorch-lightning')}, numpy {version('numpy')}"
    )


def _fit(run: _Run, budget_started: float | None) -> None:
    """Runs ``trainer.fit``; a budget run re-plans its end as it goes (:class:`FillTimeBudget`)."""
    trainer = run.trainer
    if budget_started is not None:
        budget = parse_duration(run.config.time_budget or 0)

        def record_plan(plan: BudgetPlan) -> None:
            _write_config(_with_steps(run.config, plan.max_steps, run.steps_per_epoch))

        # The plan is made inside fit, where rank 0's numbers reach every DDP process.
        trainer.callbacks.append(
            PlanTimeBudget(
                budget,
                budget_started,
                run.steps_per_epoch,
                run.loader,
                time_budget=str(run.config.time_budget),
                on_plan=record_plan,
            )
        )
        trainer.callbacks.append(FillTimeBudget(deadline=budget_started + budget))
    interrupt = GracefulInterrupt(
        run.config.run_dir / LAST_CHECKPOINT,
        resume_hint=f"contrastive train --resume --out {shlex.quote(str(run.config.run_dir))}",
    )
    trainer.callbacks.append(interrupt)
    log.info("%s", environment_line(trainer))
    # Epoch lines after every other epoch-end hook: printed before the kNN monitor's, a line
    # showed the previous epoch's monitor/knn_top1 beside this epoch's loss.
    trainer.callbacks.sort(key=lambda callback: isinstance(callback, EpochSummary))
    with warnings.catch_warnings(), interrupt.stopping_cleanly():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*The number of training batches.*")
        trainer.fit(
            run.module,
            train_dataloaders=run.loader,
            ckpt_path=str(run.checkpoint) if run.checkpoint else None,
        )
    _warn_if_memorised(trainer, run.config.run_dir)


def _warn_if_memorised(trainer: pl.Trainer, run_dir: Path) -> None:
    """Names a run whose last logged losses fell to near zero, read from ``metrics.csv`` as
    ``health`` reads them, so that the two agree (``health`` calls it memorised)."""
    if not trainer.is_global_zero:
        return
    losses = logged_losses(run_dir / METRICS_FILE)
    if memorised(losses):
        log.warning(
            "the training loss fell to %.3g (its last %d logged values under %g): the "
            "network tells its training images apart almost surely, which a few small images "
            "allow without learning general features (memorised); compare it with raw pixels "
            "(contrastive eval knn --baselines) before using it",
            losses[-1],
            MEMORISED_LAST,
            MEMORISED_LOSS,
        )


def _export(run: _Run) -> TrainResult:
    """Writes ``backbone.pt`` and ``skipped_files.txt`` (one process) and returns the result."""
    module, run_dir = run.module.to("cpu"), run.config.run_dir
    # Every DDP process ends here with the same weights; one writes them.
    if run.trainer.is_global_zero:
        save_torch_file(
            module.backbone.state_dict(), run_dir / "backbone.pt", what="backbone weights"
        )
        # Files that passed the quick header check but failed to decode while training
        # (pipelines without the cache): those of DataLoader workers are in the skip log.
        dataset = getattr(run.loader, "dataset", None)
        dataset = getattr(dataset, "dataset", dataset)  # the batched pipeline wraps it
        late = {Path(path): why for path, why in getattr(dataset, "skipped", {}).items()}
        late |= read_skip_log(run_dir / SKIP_LOG)
        _write_skipped(run_dir, {**run.skipped, **run.decode_failures, **late})
        (run_dir / SKIP_LOG).unlink(missing_ok=True)
        late_in_run = set(late) & set(run.paths)
        _warn_late_bad_fraction(run, len(late_in_run))
        num_images = len(run.paths) - len(late_in_run)
    else:
        num_images = len(run.paths)
    return TrainResult(run_dir=run_dir, module=module, config=run.config, num_images=num_images)


def _warn_late_bad_fraction(run: _Run, late: int) -> None:
    """Says so where files found bad while training (split among worker processes, none of
    which alone saw too many) add up to more than ``max_bad_fraction`` of the folder.

    The run has finished by then: its weights are kept, and the user is told what they
    were trained on.
    """
    total = len(run.paths) + len(run.skipped) + len(run.decode_failures)
    bad = late + len(run.skipped) + len(run.decode_failures)
    if late and bad > run.config.max_bad_fraction * total:
        log.warning(
            "%d of %d images (%.1f%%) could not be decoded, more than max_bad_fraction=%g "
            "allows; the run trained on the other %d (list: %s)",
            bad,
            total,
            100 * bad / total,
            run.config.max_bad_fraction,
            total - bad,
            run.config.run_dir / "skipped_files.txt",
        )


def _with_steps(config: TrainConfig, max_steps: int, steps_per_epoch: int) -> TrainConfig:
    return config.with_overrides(
        max_steps=max_steps, epochs=max(1, math.ceil(max_steps / steps_per_epoch))
    )


def _write_config(config: TrainConfig) -> None:
    path = config.run_dir / "config.yaml"
    with explained_write_errors(path, "run configuration"):
        write_text_atomic(path, dump_config(config))


def _write_skipped(run_dir: Path, skipped: dict) -> None:
    """Names every image that could not be decoded, with the reason, in the run directory."""
    if skipped:
        lines = [
            f"{path}\t{reason}"
            for path, reason in sorted(skipped.items(), key=lambda item: str(item[0]))
        ]
        target = run_dir / "skipped_files.txt"
        with explained_write_errors(target, "list of skipped files"):
            write_text_atomic(target, "\n".join(lines) + "\n")


def _check_sync_batchnorm(config: TrainConfig, trainer: pl.Trainer) -> None:
    """Refuses synchronised batch norm where PyTorch would fail inside the first step."""
    if (
        config.sync_batchnorm
        and trainer.world_size > 1
        and isinstance(trainer.accelerator, CPUAccelerator)
    ):
        raise ContrastiveError(
            "--sync-batchnorm needs GPUs (PyTorch's SyncBatchNorm has no "
            "CPU version); drop it to train on CPUs"
        )


def expected_world_size(config: TrainConfig) -> int:
    """Training processes Lightning will start, by its own parsing of ``devices``.

    ``2``, ``"2"``, ``"auto"``, ``-1`` (every GPU) and ``"0,1"`` count what the Trainer will
    use; flags Lightning rejects count as 1 here, and the Trainer built next names the error.
    Counting GPUs asks NVML (as the Trainer does), so CUDA stays uninitialised.
    """
    from lightning_fabric.utilities.exceptions import MisconfigurationException
    from pytorch_lightning.accelerators import AcceleratorRegistry

    name = config.accelerator
    try:
        if name in ("auto", "gpu"):  # Lightning's order of preference
            gpus = [
                n for n in ("mps", "cuda") if AcceleratorRegistry[n]["accelerator"].is_available()
            ]
            name = gpus[0] if gpus else "cpu" if name == "auto" else "no gpu"
        accelerator = AcceleratorRegistry[name]["accelerator"]
        devices = accelerator.auto_device_count() if config.devices == "auto" else config.devices
        count = len(accelerator.get_parallel_devices(accelerator.parse_devices(devices)))
    except (KeyError, TypeError, ValueError, MisconfigurationException):
        count = 1
    return max(count, 1) * max(config.num_nodes, 1)


def _init_backbone(module: ContrastiveModule, config: TrainConfig) -> None:
    """Loads ``config.init_weights`` into the backbone (and MoCo's momentum copy of it)."""
    from contrastive.encoder import init_backbone_weights

    report = init_backbone_weights(
        module.backbone,
        config.init_weights or "",
        strict=config.init_weights_strict,
        weights_prefix=config.init_weights_prefix,
    )
    log.info("%s", report)
    momentum_backbone = getattr(module.method, "momentum_backbone", None)
    if momentum_backbone is not None:  # a copy made at construction: it must start equal
        momentum_backbone.load_state_dict(module.backbone.state_dict())


def mlflow_tracking_uri(run_dir: Path) -> str:
    """Where ``--logger mlflow`` records a run: ``mlflow ui --backend-store-uri URI``."""
    return f"sqlite:///{(run_dir / 'mlflow.db').absolute()}"


def _build_loggers(config: TrainConfig, resume_step: float | None = None) -> list[Logger]:
    """Lightning's loggers for ``config.logger``; CSV first, so ``metrics.csv`` and
    ``trainer.logger`` stay the run's record whatever else is added.

    ``resume_step``: where a run is resumed, the checkpoint's step (``math.inf``: unknown);
    ``metrics.csv`` keeps its rows logged before it (:class:`HistoryCSVLogger`) instead of
    being deleted by Lightning's ``CSVLogger``.
    """
    run_dir = config.run_dir
    names = list(config.logger_names)
    if "auto" in names:
        names.remove("auto")
        if importlib.util.find_spec("tensorboard") is not None and "tensorboard" not in names:
            names.append("tensorboard")
    # Also for a new run: Lightning's CSVLogger warns that it will delete earlier logs as
    # soon as the folder holds anything (the run marker), and a new run has none to keep.
    csv_logger = HistoryCSVLogger(run_dir, math.inf if resume_step is None else resume_step)
    loggers: list[Logger] = [csv_logger]
    for name in names[1:]:
        package = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}[name]
        if importlib.util.find_spec(package) is None:
            raise ContrastiveError(
                f"--logger {name} needs the {package} package: pip install {package}"
            )
        if name == "tensorboard":
            loggers.append(
                TensorBoardLogger(
                    save_dir=run_dir, name="tensorboard", version="", default_hp_metric=False
                )
            )
        elif name == "mlflow":
            loggers.append(
                # A database store: MLflow 3 refuses the plain-file one.
                MLFlowLogger(
                    experiment_name="contrastive",
                    run_name=run_dir.name,
                    tracking_uri=mlflow_tracking_uri(run_dir),
                    artifact_location=(run_dir / "mlruns").absolute().as_uri(),
                )
            )
        else:  # offline: nothing leaves the machine; `wandb sync RUN/wandb` uploads later
            loggers.append(
                WandbLogger(
                    name=run_dir.name, save_dir=run_dir, offline=True, project="contrastive"
                )
            )
    return loggers


def _checkpoint_callbacks(config: TrainConfig) -> list[Checkpoint]:
    """The checkpoints a run keeps, then ``last.ckpt`` (:class:`SaveLastCheckpoint`).

    Kept: one every ``checkpoint_every_n_epochs`` epochs; where that is None, one per tenth
    of the time budget and at least a minute apart (an epoch of a small folder can take a
    fraction of a second), or every 10 epochs in a run without a budget. ``last.ckpt``: at
    every epoch's end, in a budget run at most every ``LAST_CHECKPOINT_INTERVAL_S``.
    """
    directory = config.run_dir / "checkpoints"
    every_n_epochs = config.checkpoint_every_n_epochs
    if every_n_epochs is not None or config.time_budget is None:
        kept = ModelCheckpoint(
            dirpath=directory,
            filename="epoch={epoch:03d}",
            auto_insert_metric_name=False,
            every_n_epochs=every_n_epochs or 10,
            save_top_k=-1,
        )
        return [kept, SaveLastCheckpoint(config.run_dir / LAST_CHECKPOINT)]
    budget = parse_duration(config.time_budget)
    interval = max(MIN_CHECKPOINT_INTERVAL_S, budget / KEPT_CHECKPOINTS_PER_BUDGET)
    kept = ModelCheckpoint(
        dirpath=directory,
        filename="epoch={epoch:03d}-step={step:06d}",
        auto_insert_metric_name=False,
        train_time_interval=timedelta(seconds=interval),
        save_top_k=-1,
    )
    last = SaveLastCheckpoint(config.run_dir / LAST_CHECKPOINT, LAST_CHECKPOINT_INTERVAL_S)
    return [kept, last]


def _build_trainer(
    config: TrainConfig,
    steps_per_epoch: int,
    resume_step: float | None = None,
    progress_bar: bool | None = None,
) -> pl.Trainer:
    run_dir = config.run_dir
    total_steps = config.max_steps or config.epochs * steps_per_epoch
    log_every = log_interval(max(1, min(50, steps_per_epoch)), total_steps)
    callbacks: list[pl.Callback] = [
        *_checkpoint_callbacks(config),
        *progress_callbacks(progress_bar),
        CollapseMonitor(check_every_n_steps=log_every),
    ]
    if config.val_train is not None and config.val_test is not None:
        from contrastive.training.knn_monitor import KNNMonitor

        callbacks.append(
            KNNMonitor(
                config.val_train,
                config.val_test,
                config.views,
                every_n_epochs=config.monitor_every_n_epochs,
            )
        )
    max_epochs = config.epochs
    if config.max_steps is not None:  # a step limit ends training in the epoch that holds it
        max_epochs = max(1, math.ceil(config.max_steps / steps_per_epoch))
    return pl.Trainer(
        default_root_dir=run_dir,
        max_epochs=max_epochs,
        max_steps=config.max_steps if config.max_steps is not None else -1,
        accelerator=config.accelerator,
        devices=config.devices,
        num_nodes=config.num_nodes,
        precision=resolve_precision(config.precision, config.accelerator),
        sync_batchnorm=config.sync_batchnorm,
        # "warn": GPU ops without a deterministic kernel (adaptive pooling's backward) warn
        # instead of failing; on CPU every op of these models is deterministic.
        deterministic="warn" if config.deterministic else None,
        logger=_build_loggers(config, resume_step),
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        log_every_n_steps=log_every,
        enable_model_summary=False,
        enable_progress_bar=any(isinstance(c, TQDMProgressBar) for c in callbacks),
        num_sanity_val_steps=0,
    )
