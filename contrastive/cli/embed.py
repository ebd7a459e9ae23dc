"""``contrastive embed``: features of every image of a folder, saved as an ``.npz``."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from contrastive.backbone_config import BackboneConfig
from contrastive.cli.arguments import (
    add_labels_argument,
    output_file,
    output_folder,
    positive_int,
)
from contrastive.cli.commands import COMMANDS
from contrastive.data.label_table import unmatched_rows
from contrastive.errors import ContrastiveError
from contrastive.files import refuse_output_inside
from contrastive.hardware import MAX_AUTO_WORKERS
from contrastive.views.config import IMAGENET_MEAN, IMAGENET_STD, ViewConfig

# The functions that embed import torch (through the encoder and embeddings modules) when
# called, so that `--help` of embed, eval, export and curate answers at once.
if TYPE_CHECKING:
    from contrastive.embeddings import Embeddings
    from contrastive.encoder import Encoder

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Registers ``embed``."""
    parser = subparsers.add_parser(
        "embed",
        help=COMMANDS["embed"].help,
        description="Embed every image of a folder (evaluation transform, eval mode) into "
        "an .npz with embeddings, paths, labels and classes.",
    )
    add_encoder_arguments(parser, required=True)
    parser.add_argument("--data", required=True, type=Path, help="image folder to embed")
    parser.add_argument("--out", required=True, type=output_file, help="output .npz file")
    add_labels_argument(parser)
    parser.add_argument(
        "--projector",
        type=output_folder,
        metavar="DIR",
        help="also write a TensorBoard Embedding Projector export (tensors, "
        "metadata, thumbnail sprite) to DIR; needs `pip install tensorboard`",
    )
    add_compute_arguments(parser)
    parser.set_defaults(func=run)


def add_encoder_arguments(parser: argparse.ArgumentParser, required: bool) -> None:
    """``--run | --checkpoint`` plus the flags that rebuild a plain state_dict."""
    source = parser.add_mutually_exclusive_group(required=required)
    source.add_argument(
        "--run",
        type=Path,
        help="run folder (config.yaml + weights), or one of its Lightning .ckpt files",
    )
    source.add_argument(
        "--checkpoint",
        type=Path,
        help="Lightning .ckpt, or plain backbone state_dict .pt (then give "
        "--backbone and --input-size)",
    )
    add_weights_arguments(parser)
    parser.add_argument(
        "--projection-head",
        action="store_true",
        help="use the projection head's output (Lightning checkpoints only)",
    )


def add_weights_arguments(parser: argparse.ArgumentParser, input_size: bool = True) -> None:
    """The flags that say what weights recording no configuration are (a plain state_dict,
    another tool's checkpoint) and how their images are normalised; ``input_size=False``
    where the command defines ``--input-size`` itself."""
    parser.add_argument(
        "--backbone",
        metavar="NAME",
        help="architecture of a plain state_dict (overrides the run's): a torchvision "
        "classification model, resnet18_quarter, timm:NAME...",
    )
    parser.add_argument(
        "--small-image-stem",
        action="store_true",
        help="the plain state_dict uses the 3x3 small-image stem",
    )
    parser.add_argument(
        "--stem-stride",
        type=int,
        choices=(1, 2),
        default=1,
        help="stride of that small-image stem (the planner's stride-2 stems: 2)",
    )
    if input_size:
        parser.add_argument("--input-size", type=int, help="evaluation input size in pixels")
    parser.add_argument(
        "--weights-prefix",
        metavar="PREFIX",
        help="in a file of another tool, the backbone's weights are those under PREFIX "
        "(MoCo v2: encoder_q., DINO: teacher.backbone.); give --backbone and --input-size",
    )
    for statistic, imagenet in (("mean", IMAGENET_MEAN), ("std", IMAGENET_STD)):
        parser.add_argument(
            f"--{statistic}",
            type=float,
            nargs=3,
            metavar=("R", "G", "B"),
            help=f"normalisation {statistic}, 0-1 scale (default: the run's own; ImageNet's "
            f"{' '.join(map(str, imagenet))} for weights that record none)",
        )


def add_compute_arguments(parser: argparse.ArgumentParser) -> None:
    """Batch size, workers, device and progress flags."""
    parser.add_argument("--batch-size", type=positive_int, default=256, help="images per batch")
    parser.add_argument(
        "--num-workers",
        type=int,
        help="DataLoader workers decoding images (default: one per CPU core, at most "
        f"{MAX_AUTO_WORKERS}, none for a single batch)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="hide progress bars (hidden anyway where stderr is not a terminal: a log file "
        "gets none)",
    )
    parser.add_argument(
        "--full-decode",
        action="store_true",
        help="decode large JPEGs whole (default: at reduced scale, never below the "
        "evaluation resize: ~8x faster on phone photos, features of cosine 1.0000)",
    )


def encoder_from_args(args: argparse.Namespace) -> Encoder | None:
    """Loads the encoder named by ``--run``/``--checkpoint`` (None when neither is given)."""
    from contrastive.encoder import load_encoder

    source = args.run or args.checkpoint
    if source is None:
        return None
    backbone_config, view_config = configs_from_args(args)
    encoder = load_encoder(
        source,
        backbone_config,
        view_config,
        with_projection_head=args.projection_head,
        weights_prefix=args.weights_prefix,
    )
    if view_config is None:
        encoder = replace(encoder, view_config=view_config_from_args(args, encoder.view_config))
    return encoder


def evaluation_encoder_from_args(args: argparse.Namespace) -> Encoder | None:
    """:func:`encoder_from_args`, or for ``--baselines`` of a ``--train`` .npz embedded from
    weights that record no architecture, those weights read with ``--backbone`` and
    ``--input-size`` (the baselines need the model's architecture and views)."""
    from contrastive.embeddings import load_embeddings
    from contrastive.encoder import load_encoder

    encoder = encoder_from_args(args)
    if encoder is not None or not args.baselines:
        return encoder
    backbone_config, view_config = configs_from_args(args)
    train = Path(args.train).expanduser()
    if view_config is None or train.suffix != ".npz" or not train.is_file():
        return None
    source = load_embeddings(train).source
    if not source or not Path(source).exists():
        return None
    return load_encoder(source, backbone_config, view_config, weights_prefix=args.weights_prefix)


def configs_from_args(args: argparse.Namespace) -> tuple[BackboneConfig | None, ViewConfig | None]:
    """The architecture and views ``--backbone``/``--input-size``/``--mean``/``--std`` give
    weights that record none (each None unless both ``--backbone`` and ``--input-size``)."""
    if not args.backbone or args.input_size is None:
        return (_backbone_config(args) if args.backbone else None), None
    views = view_config_from_args(args, ViewConfig(input_size=args.input_size))
    return _backbone_config(args), views


def _backbone_config(args: argparse.Namespace) -> BackboneConfig:
    return BackboneConfig(args.backbone, args.small_image_stem, args.stem_stride)


def view_config_from_args(args: argparse.Namespace, views: ViewConfig) -> ViewConfig:
    """``views`` with the evaluation size and normalisation the flags give."""
    changes: dict = {}
    if args.input_size is not None:
        changes["eval_input_size"] = args.input_size
    if args.mean is not None:
        changes["mean"] = tuple(args.mean)
    if args.std is not None:
        changes["std"] = tuple(args.std)
    return replace(views, **changes) if changes else views


def show_progress(args: argparse.Namespace) -> bool:
    """Whether to draw progress bars: not with ``--no-progress``, nor where stderr is not a
    terminal (a cron job's log would fill with carriage-return frames)."""
    return not args.no_progress and sys.stderr.isatty()


def resolve_device(name: str) -> str:
    """``auto`` picks CUDA when available."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ContrastiveError(
            f"--device {name}: not a device; use auto, cpu, cuda or cuda:N"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ContrastiveError(f"--device {name}: CUDA is not available")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ContrastiveError(f"--device {name}: only cpu, cuda and mps are supported")
    return name


def run(args: argparse.Namespace) -> int:
    """Embeds ``--data`` and writes ``--out``."""
    from contrastive.embeddings import save_embeddings

    if args.out.suffix != ".npz":
        raise ContrastiveError(f"--out must end in .npz, got {args.out}")
    # The export's thumbnail sprite would be scanned as an image of the folder next time.
    refuse_output_inside(args.projector, args.data, "--projector", "--data")
    encoder = encoder_from_args(args)
    if encoder is None:
        raise ContrastiveError("embed needs --run or --checkpoint")
    embedded = labelled_with_args(args, embed_with_args(args, encoder), str(args.data))
    save_embeddings(embedded, args.out)
    if args.projector is not None:
        # Imported here: the export pulls in matplotlib and TensorBoard; embedding needs neither.
        from contrastive.explore.projector import export_projector

        export_projector(embedded, args.projector)
        print(
            f"wrote a TensorBoard projector export to {args.projector} "
            f"(view it with: tensorboard --logdir {shlex.quote(str(args.projector))})"
        )
    labeled = int((embedded.labels >= 0).sum())
    feature = "projector" if args.projection_head else "backbone"
    print(
        f"wrote {args.out}: {len(embedded)} images x {embedded.embeddings.shape[1]}-d "
        f"{feature} features, {labeled} labeled in {len(embedded.classes)} classes"
    )
    return 0


def labelled_with_args(args: argparse.Namespace, embedded: Embeddings, where: str) -> Embeddings:
    """``embedded`` labelled by ``--labels`` (as it is without the flag), with a line that
    counts the labels and a warning naming rows that named no image.

    Raises:
        ContrastiveError: If no row names an image of ``where``, one fits two images, or two
            give one image different labels.
    """
    from contrastive.embeddings import with_label_table

    if args.labels is None:
        return embedded
    relabelled, match = with_label_table(embedded, args.labels, where)
    example = Path(str(embedded.paths[0])).name if len(embedded) else "none"
    message = unmatched_rows(args.labels, match.matched_rows, where, example)
    if message:
        log.warning("%s", message)
    labeled = int((relabelled.labels >= 0).sum())
    print(
        f"labels from {args.labels.describe()}: {labeled:,} of the {len(embedded):,} images "
        f"labeled, {len(relabelled.classes)} classes"
    )
    return relabelled


def embed_with_args(
    args: argparse.Namespace, encoder: Encoder, folder: Path | None = None
) -> Embeddings:
    """Embeds ``folder`` (default ``args.data``) with ``encoder`` as the embedding flags say
    (``--projection-head``, ``--batch-size``, ``--num-workers``, ``--device``,
    ``--no-progress``, ``--full-decode``)."""
    from contrastive.embeddings import embed_folder
    from contrastive.encoder import feature_extractor

    feature = "projector" if args.projection_head else "backbone"
    return embed_folder(
        args.data if folder is None else folder,
        encoder.view_config,
        {feature: feature_extractor(encoder, args.projection_head)},
        {feature: encoder.source},
        args.batch_size,
        args.num_workers,
        resolve_device(args.device),
        show_progress(args),
        args.full_decode,
    )[feature]
