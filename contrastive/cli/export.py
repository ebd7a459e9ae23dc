"""``contrastive export RUN --format onnx|torchscript|state_dict``: deployable backbone files."""

from __future__ import annotations

import argparse
import logging
import warnings
from dataclasses import replace
from pathlib import Path

from contrastive.cli.arguments import add_run_argument, given_run, output_file
from contrastive.cli.commands import COMMANDS
from contrastive.cli.embed import add_weights_arguments, configs_from_args, view_config_from_args
from contrastive.errors import ContrastiveError

log = logging.getLogger(__name__)

HELP = COMMANDS["export"].help

#: Real images the export is checked on.
CHECK_IMAGES = 5

#: Largest accepted input side: 100,000 px ran a 2-core, 24 GiB machine out of memory.
MAX_INPUT_SIZE = 4096


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from contrastive.export_formats import EXPORT_FORMATS, ONNX_OPSETS

    parser = subparsers.add_parser("export", help=HELP, description=HELP + ".")
    add_run_argument(
        parser,
        "run folder, its .ckpt or backbone.pt; or weights of another tool (a plain "
        "state_dict: give --backbone and --input-size, and --images)",
    )
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
        "--out",
        type=output_file,
        help="file to write (default: RUN/export/backbone.onnx etc., backbone.rgb01.onnx etc. "
        "with --fold-normalization); its deployment card goes beside it as FILE.json",
    )
    parser.add_argument(
        "--images",
        type=Path,
        metavar="DIR",
        help="folder of images to check the export on (default: the run's training data)",
    )
    parser.add_argument(
        "--opset",
        type=int,
        metavar="N",
        help=f"ONNX opset to write, {ONNX_OPSETS.start}-{ONNX_OPSETS.stop - 1}, for a runtime "
        "that loads only older opsets (default: torch's, recorded in the card as onnx_opset)",
    )
    add_weights_arguments(parser, input_size=False)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from contrastive.backbones import builds_in_torchvision
    from contrastive.data.folder import ImageFolder
    from contrastive.encoder import load_encoder, run_folder_of
    from contrastive.export import default_export_path, export_backbone, load_check_images
    from contrastive.export_formats import SUFFIXES, check_opset
    from contrastive.training.run_lock import training_holder

    args.run = given_run(args)

    if args.out is not None and (args.out.suffix.lower() == ".onnx") != (args.format == "onnx"):
        # A TorchScript file named .onnx (or the reverse) fails later in whatever loads it.
        raise ContrastiveError(
            f"--out {args.out} does not fit --format {args.format}: name it "
            f"*{SUFFIXES[args.format]}, or give the --format its name says"
        )
    check_opset(args.opset, args.format)
    if args.input_size is not None and not 8 <= args.input_size <= MAX_INPUT_SIZE:
        raise ContrastiveError(
            f"--input-size {args.input_size}: give {8} to {MAX_INPUT_SIZE} pixels (the check "
            "runs the network on images of that side)"
        )
    run_dir = run_folder_of(args.run)
    holder = training_holder(run_dir) if run_dir is not None else None
    with warnings.catch_warnings():
        if holder is not None:
            # Its advice, to finish the run with --resume, is wrong while it trains.
            warnings.filterwarnings("ignore", message=".*did not finish training")
        backbone_config, view_config = configs_from_args(args)
        encoder = load_encoder(
            args.run, backbone_config, view_config, weights_prefix=args.weights_prefix
        )
    if view_config is None:
        encoder = replace(encoder, view_config=view_config_from_args(args, encoder.view_config))
    weights = _weights_record(encoder.source, run_dir, holder)
    if holder is not None:
        log.warning(
            "%s is still being trained by %s: exporting its last checkpoint (step %s); "
            "export again when the run ends (the card beside the file records the step)",
            run_dir,
            holder,
            weights.get("step", "unknown"),
        )
    input_size = args.input_size or encoder.view_config.evaluation_size
    folder = args.images or _training_data(args.run)
    paths = ImageFolder.scan(folder).paths
    out = args.out or default_export_path(args.run, args.format, args.fold_normalization)
    existed = out.exists()
    result = export_backbone(
        encoder,
        out,
        args.format,
        load_check_images(paths, input_size, CHECK_IMAGES),
        fold_normalization=args.fold_normalization,
        weights=weights,
        opset=args.opset,
    )
    takes = "RGB in [0, 1]" if result.fold_normalization else "normalised images"
    print(
        f"wrote {result.path}{' (replaced the previous file)' if existed else ''} "
        f"({result.format}, input (batch, 3, {input_size}, {input_size}) float32 {takes}, "
        f"output (batch, {encoder.feature_dim}) features, not L2-normalised)"
    )
    print(
        f"checked on {result.num_images} images from {folder}: max abs difference "
        f"{result.max_abs_difference:.2e} vs PyTorch"
    )
    if result.format == "state_dict" and not builds_in_torchvision(encoder.backbone_config):
        print(
            f"a state_dict of {encoder.backbone_config.name}"
            f"{' with the small-image stem' if encoder.backbone_config.small_image_stem else ''}"
            ", which torchvision alone does not build: load it with contrastive, rebuild it as "
            "the card's 'architecture' says, or export --format onnx or torchscript for a "
            "service without contrastive"
        )
    print(f"preprocessing (also in {result.card_path}, with the input, output and weights):")
    for number, step in enumerate(result.card["preprocessing"], start=1):
        print(f"  {number}. {step}")
    return 0


def _weights_record(source: str, run_dir: Path | None, holder: str | None) -> dict:
    """Where the exported weights came from, for the deployment card."""
    import torch

    from contrastive.encoder import RUN_BACKBONE, RUN_CHECKPOINT, weights_identity
    from contrastive.files import same_path

    record: dict = {"source": source}
    if run_dir is not None:
        record["run"] = str(run_dir)
        record["run_finished"] = (run_dir / RUN_BACKBONE).is_file() and holder is None
        # A finished run's final weights all name the run folder; an epoch checkpoint does not.
        final = same_path(weights_identity(source), run_dir)
        record["final_weights"] = record["run_finished"] and final
        if holder is not None:
            record["training_now"] = holder
    checkpoint = Path(source)
    if checkpoint.is_dir():
        checkpoint = checkpoint / RUN_CHECKPOINT
    if checkpoint.suffix == ".ckpt" and checkpoint.is_file():
        try:
            # Memory-mapped: only the step is read, not the weights.
            content = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
            record["step"] = int(content["global_step"])
        except Exception:  # noqa: BLE001 - the step is a note; the weights loaded already
            pass
    return record


def _training_data(source: Path) -> Path:
    """The ``data`` folder recorded in a run's ``config.yaml``."""
    from contrastive.encoder import run_folder_of
    from contrastive.training.config import load_config_file

    run_dir = run_folder_of(source)  # the folder holding config.yaml, if any
    data = None
    if run_dir is not None:
        config = load_config_file(run_dir / "config.yaml")
        data = config.get("data")
    if not data or not Path(data).is_dir():
        raise ContrastiveError(
            f"cannot find the training images of {source}: give --images DIR to check the export"
        )
    return Path(data)
