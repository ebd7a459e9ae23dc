"""``contrastive train``: train an encoder on a folder of images."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contrastive.backbone_config import BackboneConfig
from contrastive.cli.commands import COMMANDS
from contrastive.cli.config_flags import (
    Flag,
    add_config_flags,
    apply_flags,
    config_flags,
    flag_values,
)
from contrastive.losses import DISTANCES, LOSSES
from contrastive.methods.config import METHOD_NAMES
from contrastive.recipes import RECIPES, choose_recipe, settings_for_recipe
from contrastive.training.config import (
    OPTIMIZERS,
    RECORD_FIELDS,
    VIEW_PIPELINES,
    TrainConfig,
    leaf_settings,
    load_config_file,
)
from contrastive.views.config import VIEW_PRESETS, ViewConfig, view_preset

HELP = COMMANDS["train"].help

if TYPE_CHECKING:
    from contrastive.data.folder import ImageFolder

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help=HELP,
        description=HELP + ". Defaults shown are TrainConfig's; --recipe and --config change "
        "them, and flags override both.",
    )
    add_training_arguments(parser)
    parser.set_defaults(func=run)


#: Flags whose name, choices or help differ from what the field alone gives.
FLAGS = {
    "out": Flag(show_default=False),  # required: every run names its directory
    # Any torchvision classification model or timm:NAME: too many for choices; BackboneConfig
    # checks the name and says where to find the names.
    "backbone.name": Flag("--backbone", metavar="NAME"),
    "method.name": Flag("--method", choices=sorted(METHOD_NAMES)),
    "loss.name": Flag("--loss", choices=LOSSES),
    "loss.distance": Flag(choices=DISTANCES),
    "optim.base_learning_rate": Flag("--lr"),
    "optim.optimizer": Flag(choices=OPTIMIZERS),
    "view_pipeline": Flag(choices=VIEW_PIPELINES),
    "cache_images": Flag("--cache"),
    "checkpoint_every_n_epochs": Flag("--checkpoint-every"),
    "monitor_every_n_epochs": Flag("--monitor-every"),
    "init_weights": Flag(metavar="FILE"),
    "init_weights_prefix": Flag(metavar="PREFIX"),
    "logger": Flag(metavar="NAMES"),
}

#: Fields that are records of a run, not options.
NO_FLAG = RECORD_FIELDS

#: ``--help`` sections and the config fields (or whole components) each one lists.
GROUPS = {
    "data and run": ("data", "out", "seed", "deterministic", "max_bad_fraction", "max_images"),
    "method": (
        "method",
        "loss",
        "backbone",
        "init_weights",
        "init_weights_prefix",
        "init_weights_strict",
    ),
    "views": ("views", "stored_size"),
    "optimisation": ("batch_size", "epochs", "time_budget", "max_steps", "optim"),
    "hardware": (
        "num_workers",
        "accelerator",
        "devices",
        "num_nodes",
        "sync_batchnorm",
        "precision",
        "view_pipeline",
        "cache_images",
        "cache_dir",
        "channels_last",
        "compile",
    ),
    "checkpoints and monitoring": (
        "checkpoint_every_n_epochs",
        "val_train",
        "val_test",
        "monitor_every_n_epochs",
        "logger",
        "projector_sample_size",
    ),
}


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`TrainConfig` field, plus ``--config``, ``--recipe``, ``--resume``
    and ``--views``; a flag left out keeps the recipe's or config file's value."""
    groups = {title: parser.add_argument_group(title) for title in GROUPS}
    run_group = groups["data and run"]
    run_group.add_argument("--config", help="YAML/JSON file with a (partial) TrainConfig")
    run_group.add_argument(
        "--recipe",
        choices=["auto", *RECIPES],
        default="auto",
        help="base settings that --config and flags override. auto (default): with "
        "--time-budget, a recipe planned for the folder's images and this machine (network, "
        "view and stored sizes, batch; printed with the reasons and saved in config.yaml; "
        "flags you give are kept and planned around), else plain ResNet-18 SimCLR; "
        "cpu-budget: the fixed CPU recipe measured on CIFAR-10 (quarter-width ResNet-18, 24 "
        "px views evaluated at 32 px); lightly-cifar10: Lightly's CIFAR-10 GPU benchmark; "
        "default: plain ResNet-18 SimCLR",
    )
    run_group.add_argument(
        "--plan-only",
        action="store_true",
        help="with --time-budget: print the planned recipe's reasons (stderr) and its "
        "configuration as YAML (stdout), then stop; --out is not needed",
    )
    run_group.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from checkpoints/last.ckpt with its saved settings; "
        "--epochs (--max-steps in a time-budget run) may be raised, and the learning-rate "
        "schedule then ramps to the cosine of the longer run; --data may name the images' "
        "new folder",
    )
    run_group.add_argument(
        "--no-progress",
        action="store_true",
        help="print epoch lines (loss, lr, images/s, time left) instead of the progress bar "
        "a terminal gets; a log file gets the lines anyway",
    )
    run_group.add_argument(
        "--auto-resume",
        action="store_true",
        help="continue the run in --out if it has a checkpoint (as --resume), else start it "
        "(a run stopped before its first checkpoint starts again): one command line for a "
        "run's first start and every restart (a preempted job, cron); a finished run is "
        "left as it is",
    )
    groups["views"].add_argument(
        "--views",
        choices=sorted(VIEW_PRESETS),
        help="augmentation preset that the view flags below modify (default: simclr)",
    )
    pairs = [(groups[title], paths) for title, paths in GROUPS.items()]
    add_config_flags(parser, TrainConfig, pairs, FLAGS, exclude=NO_FLAG)


def config_from_args(args: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    """Merges ``base`` (a recipe), ``--config``, ``--views`` and the flags given, in that order."""
    config = base or TrainConfig()
    if getattr(args, "config", None):
        config = TrainConfig.from_dict(_deep_merge(config.to_dict(), load_config_file(args.config)))
    if getattr(args, "views", None):
        config = config.with_overrides(views=view_preset(args.views))
    values = flag_values(args, TrainConfig)
    length_flags = [flag for flag in ("epochs", "max_steps") if flag in values]
    resumed = getattr(args, "resume", False)  # a resumed run keeps its own schedule
    if length_flags and "time_budget" not in values and config.time_budget and not resumed:
        # The run's length was given: a budget from the recipe or --config would plan its
        # own steps and silently outrank the flag (a 1-epoch run on 40 images ran 10 minutes).
        log.info(
            "--%s given: the %s time budget of the recipe or --config is not used",
            length_flags[0].replace("_", "-"),
            config.time_budget,
        )
        values["time_budget"] = None
    elif length_flags and values.get("time_budget") and not resumed:
        # Both given: the budget plans the steps (README: "every flag is kept"; not these).
        log.warning(
            "--%s is not used: --time-budget %s plans the number of steps itself (give one "
            "or the other)",
            length_flags[0].replace("_", "-"),
            values["time_budget"],
        )
    values = settings_for_recipe(values, config)
    values = _with_stem_of_weights(values, config)
    config = apply_flags(config, values, config_flags(TrainConfig, FLAGS, exclude=NO_FLAG))
    from contrastive.training.budget import check_time_budget

    check_time_budget(config.time_budget, "--time-budget")
    return config


def _with_stem_of_weights(values: dict[str, Any], config: TrainConfig) -> dict[str, Any]:
    """``--init-weights`` of a ResNet from elsewhere brings its stem, unless one was given.

    The recipe's stem belongs to its own training: ImageNet weights (a 7x7 ``conv1``) in the
    budget recipe's 3x3 stem failed on the shape of ``conv1``. Weights of one of our runs
    bring their whole recorded backbone when planned (:mod:`contrastive.planning.plan_run`).
    """
    from contrastive.backbone_config import is_torchvision_resnet
    from contrastive.encoder import small_stem_of_weights

    weights = values.get("init_weights")
    name = values.get("backbone.name", config.backbone.name)
    if not weights or "backbone.small_image_stem" in values or not is_torchvision_resnet(name):
        return values
    small = small_stem_of_weights(weights, values.get("init_weights_prefix"))
    if small is None or small == config.backbone.small_image_stem:
        return values
    log.info(
        "--init-weights %s were trained with the %s stem: the run uses it too",
        weights,
        "small-image (3x3)" if small else "ImageNet (7x7)",
    )
    stride = {} if small else {"backbone.stem_stride": 1}
    return {**values, "backbone.small_image_stem": small, **stride}


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _saved_config(args: argparse.Namespace) -> TrainConfig | None:
    """The configuration of the run being resumed, so flags not given keep its values
    (a plain ``--resume`` must not reset ``epochs`` to the default)."""
    out = getattr(args, "out", None)
    saved = Path(out or "") / "config.yaml"
    return TrainConfig.from_dict(load_config_file(saved)) if out and saved.is_file() else None


def _auto_resume(args: argparse.Namespace) -> bool:
    """``--auto-resume``: whether the run in ``--out`` is continued (see :func:`auto_resume`)."""
    from contrastive.errors import ContrastiveError
    from contrastive.training.resume import auto_resume

    if args.resume:
        raise ContrastiveError(
            "--resume and --auto-resume: give one (--auto-resume resumes where --out holds a "
            "checkpoint, and starts the run where it does not)"
        )
    out = getattr(args, "out", None)
    if out is None and getattr(args, "config", None):
        out = load_config_file(args.config).get("out")
    if out is None:
        raise ContrastiveError("--auto-resume needs --out: the run folder to resume or start")
    return auto_resume(Path(out))


def _recipe_config(args: argparse.Namespace) -> TrainConfig:
    """The base configuration named by ``--recipe`` (``auto``: see :func:`choose_recipe`)."""
    return RECIPES[choose_recipe(args.recipe, getattr(args, "time_budget", None))]()


def _planned(args: argparse.Namespace) -> bool:
    """Whether the recipe planner fills in the settings: ``--time-budget`` with the
    automatic recipe, on a new run."""
    return (
        args.recipe == "auto"
        and getattr(args, "time_budget", None) is not None
        and not (args.resume)
    )


def user_settings(args: argparse.Namespace) -> frozenset[str]:
    """Dotted paths of the settings the user chose (flags, ``--config``, ``--views``): the
    planner keeps them and plans the rest around them."""
    paths = set(flag_values(args, TrainConfig))
    if getattr(args, "config", None):
        paths |= set(leaf_settings(load_config_file(args.config)))
    if getattr(args, "views", None):
        # A preset names the augmentations; the sizes and crops stay the planner's.
        planned = {"input_size", "eval_input_size", "crop_scale"}
        paths |= {f"views.{name}" for name in ViewConfig.__dataclass_fields__} - {
            f"views.{name}" for name in planned
        }
    return frozenset(paths)


def run(args: argparse.Namespace) -> int:
    from contrastive.errors import ContrastiveError
    from contrastive.hardware import check_accelerator
    from contrastive.training.interrupt import TrainingInterrupted
    from contrastive.training.resume import check_new_run_dir
    from contrastive.training.run_lock import check_not_held
    from contrastive.training.train import check_batch_fits, check_image_count, train

    # Everything since the command started (imports, scanning, planning) counts.
    budget_started = getattr(args, "started", None) or time.perf_counter()
    if getattr(args, "auto_resume", False):
        args.resume = _auto_resume(args)
    base = _saved_config(args) if args.resume else _recipe_config(args)
    config = config_from_args(args, base=base)
    if not config.data and not args.resume:
        raise ContrastiveError("--data is required (or run `contrastive demo`)")
    plan_only = getattr(args, "plan_only", False)
    out_given = hasattr(args, "out") or bool(args.config and "out" in load_config_file(args.config))
    if not out_given and not plan_only:  # a plan writes nothing
        raise ContrastiveError("--out is required: the run directory to write")
    folder = None
    # Before planning and scanning: that work would be for nothing.
    check_accelerator(config.accelerator)
    if out_given:
        check_not_held(config.run_dir)
    if not args.resume and out_given:
        check_new_run_dir(config.run_dir)
    if _planned(args):
        from contrastive.data.folder import ImageFolder
        from contrastive.planning.plan_run import plan_run

        folder = ImageFolder.scan(config.data)  # listed once, for the plan and the run
        # The plan of a folder that cannot be trained on would be for nothing.
        count = min(len(folder), config.max_images or len(folder))
        check_image_count(config, count, folder.root)
        if "batch_size" in user_settings(args):  # else the planner fits the batch to the data
            check_batch_fits(config, count, folder.root)
        config, _ = plan_run(config, user_settings(args), folder=folder, started=budget_started)
    elif not args.resume and not plan_only:
        folder = _warn_if_views_upscale(config)
    if plan_only:
        if not _planned(args):
            raise ContrastiveError("--plan-only needs --time-budget (and the automatic recipe)")
        # The plan is this command's result: on stdout, as the YAML a run's config.yaml holds
        # (the reasons were logged on stderr), for a script to read or keep.
        import yaml

        planned = config.to_dict()
        if not out_given:
            planned.pop("out", None)  # a default folder no run would use: --out is required
        print(yaml.safe_dump(planned, sort_keys=False), end="")
        return 0
    if getattr(args, "config", None) and not args.resume:
        folder = _note_config_source(args, config, folder)
    try:
        result = train(
            config,
            resume=args.resume,
            budget_started=budget_started,
            folder=folder,
            progress_bar=False if args.no_progress else None,
        )
    except TrainingInterrupted as stop:
        from pytorch_lightning.utilities import rank_zero_only

        # One line saying how to continue, instead of the generic "interrupted"; under DDP
        # every process stopped at the same step, and one of them says so.
        if rank_zero_only.rank == 0:
            print(stop, file=sys.stderr)
        return stop.exit_code
    from pytorch_lightning.utilities import rank_zero_only

    if result.finished_at_step is not None:  # nothing trained: train() said so in one line
        return 0
    if rank_zero_only.rank == 0:  # one summary, not one per DDP process
        print(
            f"trained on {_images_trained(result.num_images, result.config, folder)}; "
            f"run directory: {result.run_dir}"
        )
        print(f"backbone weights ({_weights_kind(result.config.backbone)}): {result.backbone_path}")
        _warn_stale_exports(result.run_dir, result.backbone_path)
    return 0


def _images_trained(num_images: int, config: TrainConfig, folder: ImageFolder | None) -> str:
    """``N images``, or, where a budget's plan (or ``--max-images``) trained on a sample,
    ``N of the folder's M images (...)``: a bare count smaller than the folder reads as lost
    images."""
    if folder is None or config.max_images is None or config.max_images >= len(folder):
        return f"{num_images:,} images"
    return (
        f"{num_images:,} of the folder's {len(folder):,} images "
        f"(a seeded sample: max_images={config.max_images} in config.yaml)"
    )


def _warn_if_views_upscale(config: TrainConfig) -> ImageFolder | None:
    """Scans the folder (once: the run reuses the scan) and warns where the views are
    several times larger than its images: the default 224 px views on a folder of 32 px
    images cost 49 times the work of 32 px views, for no detail the images hold."""
    from contrastive.data.folder import ImageFolder
    from contrastive.errors import ContrastiveError
    from contrastive.planning.folder_stats import FolderStats

    try:
        folder = ImageFolder.scan(config.data)
        stats = FolderStats.from_paths(folder.paths, sample=500, decoded=0)
    except ContrastiveError:
        return None  # no image, or no header opens: the run's own checks say which
    warning = stats.upscale_warning(config.views.input_size)
    if warning is not None:
        log.warning(warning)
    return folder


def _note_config_source(
    args: argparse.Namespace, config: TrainConfig, folder: ImageFolder | None
) -> ImageFolder | None:
    """Says where ``--config RUN/config.yaml`` will not re-create RUN: a time-budget run's
    schedule is not replayed, and images changed since it are named. Returns the folder's
    scan where it made one (the run reuses it)."""
    from contrastive.data.folder import ImageFolder
    from contrastive.files import same_path
    from contrastive.training.data_record import DATA_RECORD, describe_change, relative_names

    path = Path(args.config)
    recorded = load_config_file(path)
    if recorded.get("time_budget") and recorded.get("max_steps") and not _planned(args):
        log.info(
            "--config %s is of a --time-budget %s run: this trains its final %s steps on one "
            "schedule; that run re-planned its schedule as it measured its speed, so it is not "
            "re-created step for step (compare runs with --epochs or --max-steps)",
            path,
            recorded["time_budget"],
            recorded["max_steps"],
        )
    source = path.parent
    data = recorded.get("data")
    if (
        not (source / DATA_RECORD).is_file()
        or not data
        or not same_path(data, config.data)
        or config.max_images is not None
    ):
        return folder
    folder = folder or ImageFolder.scan(config.data)
    change = describe_change(
        source, relative_names(folder.root, folder.paths), since=f"the run of {path} was trained"
    )
    if change is not None:
        log.warning("%s: its numbers came from the images it recorded in %s", change, DATA_RECORD)
    return folder


def _weights_kind(backbone: BackboneConfig) -> str:
    """What ``backbone.pt`` holds, in the terms of the library that can load it."""
    from contrastive.backbone_config import TIMM_PREFIX
    from contrastive.backbones import builds_in_torchvision

    if backbone.name.startswith(TIMM_PREFIX):
        return "plain timm state_dict"
    if builds_in_torchvision(backbone):
        return "plain torchvision state_dict"
    # The CPU plans' narrow ResNets and small stems: torchvision alone does not build them.
    return f"state_dict of contrastive's {backbone.name}; `contrastive export` for ONNX"


def _warn_stale_exports(run_dir: Path, backbone_path: Path) -> None:
    """Names exports older than the weights training just wrote (made mid-run, or before a
    ``--resume`` trained on): they are not of the final model."""
    from contrastive.export import EXPORT_FOLDER

    folder = run_dir / EXPORT_FOLDER
    if not folder.is_dir() or not backbone_path.is_file():
        return
    written = backbone_path.stat().st_mtime
    stale = sorted(
        path.name
        for path in folder.iterdir()
        if path.is_file() and not path.name.endswith(".json") and path.stat().st_mtime < written
    )
    if stale:
        log.warning(
            "%s holds %d export(s) made before this training ended (%s): they are not of the "
            "final weights; export again (`contrastive export %s`)",
            folder,
            len(stale),
            ", ".join(stale),
            shlex.quote(str(run_dir)),
        )
