"""``contrastive export RUN --format onnx|torchscript|state_dict``: deployable backbone files."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from contrastive.cli.arguments import output_file
from contrastive.errors import ContrastiveError

if TYPE_CHECKING:
    from contrastive.views.config import ViewConfig

HELP = "export a run's backbone to ONNX, TorchScript or a state_dict, checked on real images"

#: Real images the export is checked on.
CHECK_IMAGES = 5

#: Largest accepted input side: 100,000 px ran a 2-core, 24 GiB machine out of memory.
MAX_INPUT_SIZE = 4096


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from contrastive.export import EXPORT_FORMATS

    parser = subparsers.add_parser("export", help=HELP, description=HELP + ".")
    parser.add_argument("run", type=Path, help="run folder or Lightning .ckpt")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="onnx", help="(default: onnx)")
    parser.add_argument(
        "--input-size",
        type=int,
        metavar="PX",
        help="side of the square input images (default: the run's evaluation size)",
    )
    parser.add_argument(
        "--fold-normalization",
        action="store_true",
        help="the exported model takes RGB in [0, 1] and applies the run's mean/std itself",
    )
    parser.add_argument(
        "--out", type=output_file, help="file to write (default: RUN/export/backbone.onnx etc.)"
    )
    parser.add_argument(
        "--images",
        type=Path,
        metavar="DIR",
        help="folder of images to check the export on (default: the run's training data)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from contrastive.data.folder import ImageFolder
    from contrastive.encoder import load_encoder
    from contrastive.export import (
        SUFFIXES,
        default_export_path,
        export_backbone,
        load_check_images,
    )

    if args.out is not None and (args.out.suffix.lower() == ".onnx") != (args.format == "onnx"):
        # A TorchScript file named .onnx (or the reverse) fails later in whatever loads it.
        raise ContrastiveError(
            f"--out {args.out} does not fit --format {args.format}: name it "
            f"*{SUFFIXES[args.format]}, or give the --format its name says"
        )
    encoder = load_encoder(args.run)
    input_size = args.input_size or encoder.view_config.evaluation_size
    if not 8 <= input_size <= MAX_INPUT_SIZE:
        raise ContrastiveError(
            f"--input-size {input_size}: give {8} to {MAX_INPUT_SIZE} pixels (the check runs "
            "the network on images of that side)"
        )
    folder = args.images or _training_data(args.run)
    paths = ImageFolder.scan(folder).paths
    out = args.out or default_export_path(args.run, args.format)
    if out.exists():
        print(f"replacing {out}")
    result = export_backbone(
        encoder,
        out,
        args.format,
        load_check_images(paths, input_size, CHECK_IMAGES),
        fold_normalization=args.fold_normalization,
    )
    takes = "RGB in [0, 1]" if result.fold_normalization else "normalised images"
    print(
        f"wrote {result.path} ({result.format}, input (batch, 3, {input_size}, {input_size}) "
        f"{takes}, output (batch, {encoder.feature_dim}))"
    )
    print(
        f"checked on {result.num_images} images from {folder}: max abs difference "
        f"{result.max_abs_difference:.2e} vs PyTorch"
    )
    print(_preprocessing(encoder.view_config, input_size, result.fold_normalization))
    return 0


def _preprocessing(views: ViewConfig, input_size: int, folded: bool) -> str:
    """How a deployment prepares images for the file, as the run's evaluation did."""
    from contrastive.views.per_image import evaluation_resize

    resize = evaluation_resize(replace(views, eval_input_size=input_size))
    steps = f"resize the short side to {resize} px, centre-crop {input_size} px, RGB in [0, 1]"
    mean = ", ".join(f"{value:.4f}" for value in views.mean)
    std = ", ".join(f"{value:.4f}" for value in views.std)
    if folded:
        return (
            f"preprocessing: {steps} (the file subtracts mean ({mean}) and divides by std ({std}))"
        )
    return f"preprocessing: {steps}, then subtract mean ({mean}) and divide by std ({std})"


def _training_data(source: Path) -> Path:
    """The ``data`` folder recorded in a run's ``config.yaml``."""
    config_file = (source if source.is_dir() else source.parent.parent) / "config.yaml"
    data = None
    if config_file.is_file():
        data = (yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}).get("data")
    if not data or not Path(data).is_dir():
        raise ContrastiveError(
            f"cannot find the training images of {source}: give --images DIR to check the export"
        )
    return Path(data)
