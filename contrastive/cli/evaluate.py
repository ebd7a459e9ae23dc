"""``contrastive eval knn | linear | fewshot``: measure representation quality, write a report."""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contrastive.cli.arguments import (
    add_labels_argument,
    checked_float,
    output_file,
    output_folder,
    positive_int,
    positive_int_list,
)
from contrastive.cli.commands import COMMANDS
from contrastive.cli.embed import (
    add_compute_arguments,
    add_encoder_arguments,
    evaluation_encoder_from_args,
    resolve_device,
    show_progress,
)
from contrastive.data.near_copy_settings import DEFAULT_THRESHOLD
from contrastive.errors import ContrastiveError
from contrastive.evaluation.report import (
    ROW_NAMES,
    build_report,
    knn_table,
    linear_table,
    top_k_metrics,
    write_report,
)
from contrastive.evaluation.settings import (
    DEFAULT_COUNTS,
    DEFAULT_DRAWS,
    DEFAULT_WEIGHT_DECAYS,
    METRICS,
    MODEL,
    RAW_PIXELS,
    Count,
    check_temperature,
    check_validation_fraction,
    parse_counts,
)

if TYPE_CHECKING:
    # The evaluators import torch: loaded by the functions that score, so that
    # `contrastive eval --help` and a mistyped flag are answered at once.
    from torch import Tensor

    from contrastive.embeddings import Embeddings
    from contrastive.encoder import Encoder
    from contrastive.evaluation.inputs import EmbedSettings
    from contrastive.evaluation.labels import LabeledPair
    from contrastive.evaluation.metrics import Gain

#: Lightly's and DINO's kNN neighbour counts.
DEFAULT_KS = (20, 200)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Registers ``eval`` with its ``knn``, ``linear`` and ``fewshot`` sub-commands."""
    parser = subparsers.add_parser(
        "eval",
        help=COMMANDS["eval"].help,
        description="Measure representation quality.",
    )
    protocols = parser.add_subparsers(dest="protocol", metavar="PROTOCOL", required=True)

    knn = protocols.add_parser("knn", help="weighted kNN (Wu et al. 2018, as Lightly)")
    _add_common_arguments(knn)
    knn.add_argument(
        "--k",
        type=positive_int_list,
        default=None,
        help=f"neighbours, e.g. 20,200 (default: {','.join(map(str, DEFAULT_KS))}, each at most "
        "the number of train images)",
    )
    _add_temperature_argument(knn, "vote temperature T")
    knn.add_argument(
        "--metric",
        choices=METRICS,
        default="cosine",
        help="neighbour similarity (euclidean: plain L2, e.g. for 1-NN on pixels)",
    )
    knn.set_defaults(func=run_knn)

    linear = protocols.add_parser("linear", help="linear probe on frozen features")
    _add_common_arguments(linear)
    linear.add_argument(
        "--weight-decay",
        type=_float_list,
        default=list(DEFAULT_WEIGHT_DECAYS),
        help="candidate weight decays, comma-separated (e.g. 0.01,0.1,1), chosen on a "
        "validation split",
    )
    linear.add_argument(
        "--val-fraction",
        type=checked_float(check_validation_fraction, "a number in (0, 1)"),
        default=0.1,
        help="share of each training class held out to choose it, in (0, 1)",
    )
    linear.set_defaults(func=run_linear)

    fewshot = protocols.add_parser(
        "fewshot",
        help="kNN and linear probe with 1, 2, 5, ... labels per class, with error bars",
    )
    _add_common_arguments(fewshot, out_folder=True)
    add_fewshot_arguments(fewshot)
    fewshot.set_defaults(func=_run_fewshot)


def _add_common_arguments(parser: argparse.ArgumentParser, out_folder: bool = False) -> None:
    """The flags every protocol shares.

    Args:
        parser: The protocol's parser.
        out_folder: ``--out`` is a folder of several files (fewshot), not one JSON report.
    """
    parser.add_argument(
        "--train",
        required=True,
        type=Path,
        help="training embeddings .npz, or image folder (needs --run)",
    )
    parser.add_argument(
        "--test",
        required=True,
        type=Path,
        help="test embeddings .npz, or image folder (needs --run)",
    )
    add_labels_argument(parser, "; a set the tables name no image of keeps its class folders")
    add_encoder_arguments(parser, required=False)
    parser.add_argument(
        "--baselines",
        action="store_true",
        help="also evaluate the random-init backbone and raw pixels",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of baselines and splits")
    if out_folder:
        parser.add_argument(
            "--out",
            type=output_folder,
            help="folder for fewshot.json, .md and .png, created or reused (earlier fewshot.* "
            "files replaced; default: RUN/evaluation/fewshot with --run, else beside the "
            "--train .npz)",
        )
    else:
        parser.add_argument(
            "--out",
            type=output_file,
            help="JSON report (default: RUN/evaluation/PROTOCOL.json with --run, "
            "else beside the --train .npz or the --checkpoint)",
        )
    add_compute_arguments(parser)


def add_fewshot_arguments(parser: argparse.ArgumentParser) -> None:
    """The few-label flags (the common ``eval`` flags are added by the caller)."""
    parser.add_argument(
        "--encoder",
        action="append",
        default=[],
        metavar="NAME=PATH[,OPTION...]",
        help="another encoder to put side by side (repeatable): a run folder, a Lightning "
        ".ckpt, or weights that record no architecture (a plain state_dict, another tool's "
        "checkpoint), then options after the path: backbone=B, input-size=N, "
        "small-image-stem, weights-prefix=P (else --backbone, --input-size, the first "
        "encoder's); needs image folders%(default).0s",
    )
    parser.add_argument(
        "--counts",
        type=counts_argument,
        default=list(DEFAULT_COUNTS),
        help="labeled images per class, e.g. 1,10,100,all (default 1,2,5,10,25,100,all)",
    )
    parser.add_argument("--draws", type=int, default=DEFAULT_DRAWS, help="random draws per count")
    parser.add_argument(
        "--k", type=positive_int, default=200, help="kNN neighbours (capped at the labels)"
    )
    _add_temperature_argument(parser, "kNN vote temperature T")
    parser.add_argument(
        "--unlabeled",
        type=Path,
        help="unlabeled training folder, also searched for near-copies of test images",
    )
    parser.add_argument(
        "--near-copy-threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help="fingerprint cosine similarity from which images count as near-copies",
    )
    parser.add_argument(
        "--no-leak-check", action="store_true", help="skip the pixel-space near-copy check"
    )


def counts_argument(text: str) -> list[Count]:
    """An argparse type for ``--counts``: :func:`parse_counts` with its error reported by
    argparse (a ContrastiveError raised while parsing would escape as a traceback)."""
    try:
        return parse_counts(text)
    except ContrastiveError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_temperature_argument(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument(
        "--temperature",
        type=checked_float(check_temperature, "a finite number > 0"),
        default=0.1,
        help=help_text,
    )


def _float_list(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1e-4,1e-3, got {text!r}") from None


def voting_ks(requested: list[int] | None, voters: int) -> list[int]:
    """The k values to score: the user's as given (checked later), or the defaults, each at
    most ``voters`` so that a small labeled folder gets a score instead of an error."""
    if requested is not None:
        return sorted(set(requested))
    return sorted({min(k, voters) for k in DEFAULT_KS})


def _run_fewshot(args: argparse.Namespace) -> int:
    from contrastive.cli.fewshot import run_fewshot

    return run_fewshot(args, _embed_settings(args))


def run_knn(args: argparse.Namespace) -> int:
    """Weighted kNN on every feature set; prints the table, writes the report."""
    from contrastive.evaluation.knn import knn_rankings
    from contrastive.evaluation.metrics import topk_accuracy

    settings: dict[str, Any] = {"k": voting_ks(args.k, max(DEFAULT_KS))}

    def score(pair: LabeledPair) -> dict[str, Any]:
        ks = voting_ks(args.k, len(pair.train_labels))
        if ks != settings["k"]:
            print(f"note: {len(pair.train_labels)} train images vote: kNN with k={ks}")
            settings["k"] = ks
        rankings = knn_rankings(
            pair.train_features,
            pair.train_labels,
            pair.test_features,
            ks=ks,
            temperature=args.temperature,
            num_classes=len(pair.classes),
            metric=args.metric,
        )
        numbers = {
            f"k={k}": {
                f"top{t}": accuracy
                for t, accuracy in topk_accuracy(rankings[k], pair.test_labels, (1, 5)).items()
            }
            for k in ks
        }
        return numbers, rankings[ks[0]][:, 0]

    settings |= {
        "temperature": args.temperature,
        "metric": args.metric,
        "weights": "exp(similarity / T)",
    }
    return _evaluate_sets(args, "knn", settings, score, knn_table)


def run_linear(args: argparse.Namespace) -> int:
    """Linear probe (logistic regression on cached features) on every feature set."""
    from contrastive.evaluation.linear import linear_probe

    def score(pair: LabeledPair) -> dict[str, Any]:
        probe = linear_probe(
            pair.train_features,
            pair.train_labels,
            pair.test_features,
            pair.test_labels,
            len(pair.classes),
            args.weight_decay,
            args.val_fraction,
            args.seed,
        )
        numbers = {
            **probe.summary,
            "weight_decay": probe.weight_decay,
            "validation_accuracy": probe.validation_accuracy,
        }
        return numbers, probe.classifier.logits(pair.test_features).argmax(dim=1)

    settings = {
        "method": "multinomial logistic regression, full-batch L-BFGS, standardised "
        "features, loss = mean cross-entropy + wd/2 |W|^2",
        "weight_decay_grid": args.weight_decay,
        "validation_fraction": args.val_fraction,
        "seed": args.seed,
    }
    return _evaluate_sets(args, "linear", settings, score, linear_table)


def _evaluate_sets(
    args: argparse.Namespace,
    protocol: str,
    settings: dict[str, Any],
    score: Callable[[LabeledPair], tuple[dict[str, Any], Tensor]],
    table: Callable[[dict[str, Any], tuple[str, ...]], str],
) -> int:
    """Scores the labelled train/test pair of every feature set; prints and writes the report.

    ``score`` returns the report's numbers and the ``(M,)`` predicted classes of the first k
    or the probe (for the gains over the baselines and the model's recall per class).
    """
    from contrastive.evaluation.inputs import evaluation_inputs
    from contrastive.evaluation.labels import labeled_pair
    from contrastive.evaluation.metrics import confusion_matrix, per_class_accuracy

    check_default_report_place(args, protocol)
    encoder = evaluation_encoder_from_args(args)
    sets = evaluation_inputs(
        args.train, args.test, encoder, args.baselines, _embed_settings(args), args.labels
    )
    results: dict[str, Any] = {}
    hits: dict[str, Tensor] = {}
    balanced: dict[str, float | None] = {}
    for name, (train, test) in sets.items():
        pair = labeled_pair(train, test, f"--train {args.train}", f"--test {args.test}")
        with _messages_named(name):  # three sets' probe warnings read alike otherwise
            results[name], predicted = score(pair)
        hits[name] = predicted == pair.test_labels
        confusion = confusion_matrix(predicted, pair.test_labels, len(pair.classes))
        recalls = per_class_accuracy(confusion).tolist()
        balanced[name] = _mean_recall(recalls)
        if name == MODEL:
            model_pair, recall = pair, recalls
    return _finish(
        args, protocol, settings, sets, results, encoder, table, hits, model_pair, recall, balanced
    )


def _mean_recall(recall: list[float]) -> float | None:
    """Balanced accuracy: the mean recall of the classes that have test images."""
    present = [value for value in recall if not math.isnan(value)]
    return sum(present) / len(present) if present else None


@contextlib.contextmanager
def _messages_named(feature_set: str) -> Iterator[None]:
    """Starts the evaluators' log messages with the feature set they are about."""
    label = feature_set.replace("_", " ")

    def named(record: logging.LogRecord) -> bool:
        record.msg = f"{label}: {record.msg}"
        return True

    # A filter acts on the records of its own logger: each evaluator's.
    loggers = [logging.getLogger(f"contrastive.evaluation.{name}") for name in ("linear", "knn")]
    for logger in loggers:
        logger.addFilter(named)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(named)


def _finish(
    args: argparse.Namespace,
    protocol: str,
    settings: dict[str, Any],
    sets: dict[str, tuple[Embeddings, Embeddings]],
    results: dict[str, Any],
    encoder: Encoder | None,
    table: Callable[[dict[str, Any], tuple[str, ...]], str],
    hits: dict[str, Tensor],
    model_pair: LabeledPair,
    recall: list[float],
    balanced: dict[str, float | None],
) -> int:
    import numpy as np

    from contrastive.embeddings import RawPixels
    from contrastive.evaluation.metrics import accuracy_interval, paired_gain

    train, test = sets[MODEL]
    data = {
        "train": str(args.train),
        "test": str(args.test),
        "train_data_root": train.data_root,
        "test_data_root": test.data_root,
        "train_count": len(train),
        "test_count": len(test),
        "num_classes": len(train.classes),
        "classes": list(train.classes),
        "feature": train.feature,
        "feature_dim": int(train.embeddings.shape[1]),
    }
    if RAW_PIXELS in sets:
        data["raw_pixels"] = (
            f"evaluation-transformed, normalised pixels, at most "
            f"{RawPixels().side}x{RawPixels().side}"
        )
    # The features' own record: .npz inputs may come from another checkpoint than --run.
    checkpoint = train.source or (encoder.source if encoder is not None else "")
    test_labels = test.labels[test.labels >= 0]
    data["test_largest_class_share"] = float(np.bincount(test_labels).max() / len(test_labels))
    top1 = _first_top1(results[MODEL])
    if top1 is not None:
        data["model_top1_interval_95"] = accuracy_interval(top1[1], len(test_labels))
        # The interval, gains, recall and balanced accuracy are of one result: say which.
        data["model_figures_of"] = top1[0].strip() or protocol
        data["interval_methods"] = {
            "model_top1_interval_95": "Wilson score interval over the test images",
            "model_gain_interval_95": "normal approximation to the paired per-image difference",
        }
    gains = {name: paired_gain(hits[MODEL], other) for name, other in hits.items() if name != MODEL}
    if gains:
        data["model_gain_interval_95"] = {name: gain.to_dict() for name, gain in gains.items()}
    data["model_per_class_recall"] = {
        name: None if math.isnan(value) else value
        for name, value in zip(model_pair.classes, recall, strict=True)
    }
    data["model_balanced_accuracy"] = balanced[MODEL]
    # Of each feature set, for the same first k or probe: imbalanced classes move the
    # baselines' top-1 as much as the model's.
    data["balanced_accuracy"] = balanced
    report = build_report(protocol, settings, data, checkpoint, results)
    # Top-5 of 5 classes or fewer is 100% whatever the features: kept in the JSON, not printed.
    printed = table(results, top_k_metrics(len(train.classes)))
    precision = (
        _precision_line(len(test_labels), data, top1, _probe_seed_note(protocol, settings))
        + _gain_line(gains, top1)
        + _recall_line(recall, model_pair.classes, top1, balanced)
        + (_large_k_note(settings["k"], model_pair) if protocol == "knn" else "")
    )
    return _write_and_print(args, protocol, report, printed + "\n" + precision)


def _first_top1(numbers: dict[str, Any]) -> tuple[str, float] | None:
    """``(what, value)`` of the model's first top-1: the probe's, or that of the first k."""
    if "top1" in numbers:
        return "", numbers["top1"]
    for name, value in numbers.items():
        if isinstance(value, dict) and "top1" in value:
            return f"{name} ", value["top1"]
    return None


def _precision_line(
    count: int, data: dict[str, Any], top1: tuple[str, float] | None, seed_note: str = ""
) -> str:
    """How far the printed top-1 can be trusted, and what guessing scores on this test set."""
    guess = f"naming the largest class would score {100 * data['test_largest_class_share']:.2f}"
    if top1 is None:
        return f"{count} test images; {guess}"
    low, high = data["model_top1_interval_95"]
    return (
        f"{count} test images: the model's {top1[0]}top-1, {100 * top1[1]:.2f}, lies in "
        f"{100 * low:.2f}-{100 * high:.2f} with 95% confidence over which test images were "
        f"drawn (another training seed moves it too{seed_note}); {guess}"
    )


def _probe_seed_note(protocol: str, settings: dict[str, Any]) -> str:
    """The probe's own seed moves its score where it chose the weight decay (3 points
    between seeds 0-2 on 1,500 images, the same wd fixed giving one score)."""
    if protocol != "linear" or len(settings.get("weight_decay_grid") or []) < 2:
        return ""
    return (
        ", and so does the probe's --seed, which draws the validation images that choose its "
        "weight decay: fix --weight-decay when comparing runs"
    )


def _gain_line(gains: dict[str, Gain], top1: tuple[str, float] | None) -> str:
    """``the model's k=20 top-1 against each baseline, ...: ahead of random init by +33.15
    points (+28.03 to +38.26); behind raw pixels ...`` on a line of its own; empty without
    baselines. Ahead or behind only where the whole interval says so."""
    if not gains or top1 is None:
        return ""
    parts = []
    for name, gain in gains.items():
        if gain.low > 0:
            verdict = "ahead of"
        elif gain.high < 0:
            verdict = "behind"
        else:
            verdict = "not told apart from"
        parts.append(
            f"{verdict} {ROW_NAMES.get(name, name)}: {100 * gain.mean:+.2f} points "
            f"({100 * gain.low:+.2f} to {100 * gain.high:+.2f})"
        )
    return (
        f"\nthe model's {top1[0]}top-1 against each baseline, with 95% confidence over which "
        f"test images were drawn (paired: each classified the same images): {'; '.join(parts)}"
    )


#: Classes up to which the printed report lists each class's recall.
RECALL_LINE_CLASSES = 20


def _recall_line(
    recall: list[float],
    classes: list[str],
    top1: tuple[str, float] | None,
    balanced_of: dict[str, float | None],
) -> str:
    """Each class's recall and their mean (balanced accuracy), the baselines' beside it:
    top-1 hides a class never found where one class holds most test images."""
    if top1 is None or balanced_of.get(MODEL) is None:
        return ""
    balanced = f"balanced accuracy (mean recall) {100 * balanced_of[MODEL]:.2f}"
    baselines = [
        f"{ROW_NAMES.get(name, name)} {100 * value:.2f}"
        for name, value in balanced_of.items()
        if name != MODEL and value is not None
    ]
    if baselines:
        balanced += f" ({', '.join(baselines)})"
    if len(classes) > RECALL_LINE_CLASSES:
        return f"\nthe model's {top1[0]}{balanced}; per-class recall in the report"
    listed = ", ".join(
        f"{name} {100 * value:.1f}"
        for name, value in zip(classes, recall, strict=True)
        if not math.isnan(value)
    )
    return f"\nthe model's {top1[0]}recall per class: {listed}; {balanced}"


def _large_k_note(ks: list[int], pair: LabeledPair) -> str:
    """Warns where k is more than some classes' training images: the vote then leans to the
    largest class (at 400/60/8 images, k=200 named the largest class for every image)."""
    import torch

    counts = torch.bincount(pair.train_labels, minlength=len(pair.classes)).tolist()
    smaller = [(name, n) for name, n in zip(pair.classes, counts, strict=True) if 0 < n < max(ks)]
    # With classes of about one size a large k leans nowhere (10 per class: k=20 scored 34.0,
    # k=5 31.6): only where the largest class has twice the images of a small one.
    if not smaller or max(counts) < 2 * min(n for _, n in smaller):
        return ""
    shown = ", ".join(f"{name} {n}" for name, n in sorted(smaller, key=lambda item: item[1])[:3])
    return (
        f"\nnote: k={max(ks)} is more than the training images of {len(smaller)} of "
        f"{len(pair.classes)} classes ({shown}{' ...' if len(smaller) > 3 else ''}): the vote "
        "leans to the large classes; a smaller --k says more here"
    )


def _write_and_print(
    args: argparse.Namespace, protocol: str, report: dict[str, Any], table: str
) -> int:
    path = args.out or _default_report_path(args, protocol)
    print(table, flush=True)  # first: a report that cannot be written loses no result
    kept = None if args.out else keep_earlier_report(path)
    write_report(report, path)
    print(f"report: {path}" + (f" (the earlier one kept as {kept.name})" if kept else ""))
    return 0


def check_default_report_place(args: argparse.Namespace, protocol: str) -> None:
    """Refuses, before anything is embedded, a default report place that cannot be written
    (``--out`` is checked by the parser): the scores used to be computed, then lost.

    Raises:
        ContrastiveError: Naming the place and ``--out``.
    """
    if args.out is not None:
        return
    path = _default_report_path(args, protocol)
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not os.access(folder, os.W_OK):
        raise ContrastiveError(
            f"the report would be written to {path}, but {folder} is not writable; give "
            "--out with a writable place"
        )


def keep_earlier_report(path: Path) -> Path | None:
    """Renames a report at the default ``path`` to ``<stem>.<its time>.json`` first.

    The default name is per protocol, not per setting: a second ``eval knn --run RUN`` with
    other labels would replace the first (with its baselines) without a word. ``--out``
    names a file the user chose to write, and is replaced.

    Returns:
        Where the earlier report went (None when there was none).
    """
    if not path.is_file():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(path.stat().st_mtime))
    kept = path.with_name(f"{path.stem}.{stamp}{path.suffix}")
    number = 1
    while kept.exists():
        number += 1
        kept = path.with_name(f"{path.stem}.{stamp}-{number}{path.suffix}")
    path.rename(kept)
    return kept


def _default_report_path(args: argparse.Namespace, protocol: str) -> Path:
    """``RUN/evaluation/<protocol>.json``, else beside the train .npz or the checkpoint."""
    if args.run is not None:
        return args.run / "evaluation" / f"{protocol}.json"
    if args.train.is_file():
        return args.train.with_name(f"{args.train.stem}.{protocol}.json")
    if args.checkpoint is not None:
        return args.checkpoint.with_name(f"{args.checkpoint.stem}.{protocol}.json")
    return Path(f"{protocol}.json")


def _embed_settings(args: argparse.Namespace) -> EmbedSettings:
    from contrastive.evaluation.inputs import EmbedSettings

    return EmbedSettings(
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=resolve_device(args.device),
        progress=show_progress(args),
        projector=args.projection_head,
        seed=args.seed,
        full_decode=args.full_decode,
    )
