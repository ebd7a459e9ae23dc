"""``contrastive eval fewshot``: accuracy with 1, 2, 5, ... labels per class, with error bars.

Writes ``fewshot.json`` (every draw's number, settings, leak check), ``fewshot.md`` (the
table) and ``fewshot.png`` (accuracy vs labels per class) into ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
from dataclasses import replace
from pathlib import Path

from contrastive.backbone_config import BackboneConfig
from contrastive.cli.embed import evaluation_encoder_from_args, show_progress
from contrastive.embeddings import Embeddings, recorded_data_root
from contrastive.encoder import Encoder, MissingConfigurationError, load_encoder
from contrastive.errors import ContrastiveError
from contrastive.evaluation.fewshot import FewShotResult
from contrastive.evaluation.fewshot_report import (
    CLEAN,
    LeakCheck,
    few_label_comparison,
    fewshot_table,
    gain_table,
    plot_fewshot,
)
from contrastive.evaluation.inputs import EmbedSettings, evaluation_inputs, labels_like
from contrastive.evaluation.metrics import accuracy_interval
from contrastive.evaluation.report import build_report, write_report
from contrastive.evaluation.settings import ALL, MODEL
from contrastive.files import refuse_output_inside, write_text_atomic
from contrastive.views.config import ViewConfig


def run_fewshot(args: argparse.Namespace, settings: EmbedSettings) -> int:
    """Embeds (or loads) every feature set, scores them, writes JSON, Markdown and PNG."""
    out = args.out or _default_out(args)
    if out.exists() and not out.is_dir():  # the default place; a given --out is checked by argparse
        raise ContrastiveError(f"{out} is a file; give --out a folder for the fewshot report")
    if args.unlabeled is not None:
        if not args.unlabeled.is_dir():
            raise ContrastiveError(f"--unlabeled {args.unlabeled} is not a folder")
        if args.no_leak_check:
            # The folder is read by the leak check only: say so rather than ignore it.
            raise ContrastiveError(
                "--unlabeled is searched by the leak check: drop --no-leak-check or --unlabeled"
            )
    for flag in ("--train", "--test", "--unlabeled"):
        given = getattr(args, flag[2:])
        folder = given if given is None or given.is_dir() else _recorded_root(given)
        refuse_output_inside(out, folder, "--out", flag)
    encoder = evaluation_encoder_from_args(args)
    # The images without a label stay: the leak check searches them too.
    sets = evaluation_inputs(
        args.train, args.test, encoder, args.baselines, settings, args.labels, keep_unlabeled=True
    )
    named = _extra_encoders(args, encoder, sets[MODEL])
    for name, extra in named.items():
        train_folder, test_folder = _folders(args, sets[MODEL])
        try:
            extra_sets = evaluation_inputs(
                train_folder, test_folder, extra, False, settings, args.labels, keep_unlabeled=True
            )
        except ContrastiveError as error:
            text = str(error).replace("computing model features", "computing its features")
            text = text.replace("needs --input-size", "needs input-size=")
            raise ContrastiveError(f"--encoder {name}: {text}") from error
        # The labels are the model's (an embeddings file may record a label table's).
        sets[name] = (
            labels_like(sets[MODEL][0], extra_sets[MODEL][0]),
            labels_like(sets[MODEL][1], extra_sets[MODEL][1]),
        )
    # Encoders first, baselines last.
    order = [MODEL, *named, *(name for name in sets if name != MODEL and name not in named)]
    sets = {name: sets[name] for name in order}
    comparison = few_label_comparison(
        sets,
        args.counts,
        args.draws,
        args.seed,
        args.k,
        args.temperature,
        check_leaks=not args.no_leak_check,
        unlabeled=args.unlabeled,
        threshold=args.near_copy_threshold,
        progress=show_progress(args),
    )
    out.mkdir(parents=True, exist_ok=True)
    train, test = sets[MODEL]
    settings_report = {
        # The counts evaluated: ones larger than every class are dropped (with a warning).
        "counts": [str(c) for c in next(iter(comparison.results.values())).counts],
        "draws": args.draws,
        "seed": args.seed,
        "interval": "95% Student-t interval over draws (spread of which images are labeled)",
        "gain_interval": "paired difference of the first feature set and each other; 95% "
        "normal interval over draws and test images",
        "knn": f"weighted kNN, cosine, exp(sim/T), T={args.temperature}, "
        f"k=min({args.k}, labeled images)",
        "linear": "logistic regression on features standardised with the whole training "
        "pool; wd = 1/labeled images; at 'all' wd chosen on a validation split",
        "encoders": {name: _source(sets[name][0]) for name in sets},
    }
    data = {
        "train": str(args.train),
        "test": str(args.test),
        "train_count": len(train),
        "test_count": len(test),
        "classes": comparison.classes,
    }
    summary = comparison.to_dict()
    report = build_report("fewshot", settings_report, data, _source(train), summary["results"])
    report["gains"] = summary["gains"]
    report["leak_check"] = summary["leak_check"]
    write_report(report, out / "fewshot.json")
    markdown = _markdown(comparison.results, comparison.leak_check, comparison.classes)
    write_text_atomic(out / "fewshot.md", markdown)
    from contrastive.files import save_figure

    save_figure(plot_fewshot(comparison.results), out / "fewshot.png")
    without_copies = out / "fewshot_without_copies.png"
    if comparison.leak_check is not None and comparison.leak_check.leaked:
        save_figure(plot_fewshot(comparison.results, CLEAN), without_copies)
    else:  # a plot of an earlier run into this folder would be taken for this run's
        without_copies.unlink(missing_ok=True)
    print(markdown)
    print(f"report: {out / 'fewshot.json'} (+ fewshot.md, fewshot.png)")
    return 0


def _short_classes(short: dict, classes: list[str]) -> str:
    """``rose (1 image) at 2 per class; ...``: by name, one clause per count."""
    clauses = []
    for count, per_class in short.items():
        if not per_class:
            continue
        named = ", ".join(
            f"{classes[index]} ({images} image{'s' if images != 1 else ''})"
            for index, images in sorted(per_class.items())
        )
        clauses.append(f"{named} at {count} per class")
    return "; ".join(clauses)


def _test_sampling_note(results: dict[str, FewShotResult]) -> str:
    """How far which test images were drawn moves the first set's kNN top-1 at its most
    labels: the table's intervals leave that out (``34.6 [34.2, 35.1]`` on 500 test images,
    whose Wilson interval is 30-38)."""
    name, first = next(iter(results.items()))
    per_count = first.scores.get(ALL, {}).get("knn", {})
    if not per_count:
        return ""
    count = list(per_count)[-1]
    score = per_count[count]
    tested = int(score.hits.shape[-1])
    low, high = accuracy_interval(score.mean, tested)
    labels = "all labels" if count == ALL else f"{count} labels per class"
    return (
        f" Which {tested} test images were drawn moves a score too: {name}'s kNN top-1 with "
        f"{labels}, {100 * score.mean:.1f}, lies in {100 * low:.1f}-{100 * high:.1f} with 95% "
        "confidence over the test images (Wilson); the gains below cover both."
    )


def _markdown(
    results: dict[str, FewShotResult], check: LeakCheck | None, classes: list[str]
) -> str:
    first = next(iter(results.values()))
    neighbours = ", ".join(
        f"{f'{count}/class' if count != ALL else 'all'} {k}" for count, k in first.k.items()
    )
    lines = [
        f"Test top-1 (%), mean [95% interval over which images are labelled] over "
        f"{first.draws} draws (seed {first.seed}).{_test_sampling_note(results)}",
        "",
        fewshot_table(results),
    ]
    if neighbours:
        # `eval knn` defaults to k=20 and 200: its numbers differ from the 'all' column here.
        lines += ["", f"kNN neighbours (k = min(--k, labelled images)): {neighbours}."]
    if len(results) > 1:
        lines += [
            "",
            "How much the first beats each other one, in top-1 points: mean [95% interval over "
            "which images are labelled and which test images were drawn; both are scored on "
            "the same ones].",
            "",
            gain_table(results),
        ]
    short = _short_classes(first.short_classes, classes)
    if short:
        lines += ["", f"Classes with fewer images than a count (all of theirs used): {short}."]
    if check is not None:
        lines += [
            "",
            f"Leak check: {len(check.leaked)} of {check.test_count} test images have a "
            f"pixel-space near-copy in {' / '.join(check.searched)} "
            f"(fingerprint cosine >= {check.threshold}).",
        ]
        if check.leaked:
            lines += ["", "Without them:", "", fewshot_table(results, CLEAN)]
            shown = list(check.leaked.items())[:20]
            lines += ["", *(f"- {test} ~ {matches[0][0]}" for test, matches in shown)]
    return "\n".join(lines) + "\n"


def _extra_encoders(
    args: argparse.Namespace, first: Encoder | None, model: tuple[Embeddings, Embeddings]
) -> dict[str, Encoder]:
    """Loads each ``--encoder NAME=PATH[,backbone=B][,input-size=N][,small-image-stem]``.

    A run or checkpoint of ours brings its architecture; weights that record none (a plain
    state_dict, another tool's checkpoint) take the options given after the path, else
    ``--backbone``/``--input-size``, else the first encoder's.
    """
    encoders: dict[str, Encoder] = {}
    for item in args.encoder:
        name, separator, value = item.partition("=")
        if not separator or not name or not value:
            raise ContrastiveError(f"--encoder expects NAME=PATH, got {item!r}")
        if name in encoders or name in (MODEL, "random_init", "raw_pixels"):
            raise ContrastiveError(f"--encoder name {name!r} is used twice or taken")
        source, options = _encoder_path_and_options(name, value)
        try:
            encoders[name] = _load_extra_encoder(args, first, model, source, options)
        except ContrastiveError as error:
            # Several encoders load here: the message says which, and flags become options.
            text = str(error).replace("add --small-image-stem", "add ,small-image-stem")
            text = text.replace("leave out --small-image-stem", "leave out small-image-stem")
            text = text.replace("needs --input-size", "needs input-size=")
            raise ContrastiveError(f"--encoder {name}: {text}") from error
    return encoders


def _load_extra_encoder(
    args: argparse.Namespace,
    first: Encoder | None,
    model: tuple[Embeddings, Embeddings],
    source: Path,
    options: dict[str, str],
) -> Encoder:
    encoder = None
    if "weights-prefix" not in options:  # picked out of another tool's file: nothing recorded
        with contextlib.suppress(MissingConfigurationError):
            encoder = load_encoder(source)
    if encoder is None:
        # Weights that record no architecture, read with _encoder_configs.
        backbone_config, view_config = _encoder_configs(args, first, model, options)
        if backbone_config is None or view_config is None:
            raise ContrastiveError(
                f"{source} records no architecture; give it after the path "
                f"(NAME={source},backbone=NAME,input-size=PX) or give --backbone and "
                "--input-size"
            )
        prefix = options.get("weights-prefix")
        try:
            return load_encoder(source, backbone_config, view_config, weights_prefix=prefix)
        except ContrastiveError as error:
            if "backbone" in options or args.backbone:
                raise
            raise ContrastiveError(
                f"{error} (no backbone= was given after the path: the first encoder's "
                f"{backbone_config.name} was tried)"
            ) from error
    given = sorted(set(options) - {"input-size"})
    if given:
        raise ContrastiveError(
            f"{source} records its architecture ({encoder.backbone_config.name}): "
            f"{', '.join(given)} after the path is for weights that record none"
        )
    if "input-size" in options:
        size = _option_size(options["input-size"])
        encoder = replace(encoder, view_config=replace(encoder.view_config, eval_input_size=size))
    return encoder


#: Options an ``--encoder`` may carry after its path, for weights that record no config.
ENCODER_OPTIONS = ("backbone", "input-size", "small-image-stem", "weights-prefix")


def _encoder_path_and_options(name: str, value: str) -> tuple[Path, dict[str, str]]:
    """Splits ``PATH[,key=value...]``; a path that exists as written keeps its commas."""
    whole = Path(value).expanduser()
    path_text, *parts = [value] if whole.exists() else value.split(",")
    options: dict[str, str] = {}
    for part in parts:
        key, _, option = part.partition("=")
        if key not in ENCODER_OPTIONS or (key == "small-image-stem") == bool(option):
            raise ContrastiveError(
                f"--encoder {name}: unknown option {part!r} (after the path: backbone=NAME, "
                "input-size=PX, small-image-stem, weights-prefix=PREFIX)"
            )
        options[key] = option
    source = Path(path_text).expanduser()
    if not source.exists():
        raise ContrastiveError(f"--encoder {name}: {source} does not exist")
    return source, options


def _encoder_configs(
    args: argparse.Namespace,
    first: Encoder | None,
    model: tuple[Embeddings, Embeddings],
    options: dict[str, str],
) -> tuple[BackboneConfig | None, ViewConfig | None]:
    """The architecture and views of weights that record none: the options after the path,
    else ``--backbone``/``--small-image-stem``/``--input-size``, else the first encoder's."""
    reference = first if first is not None else _recorded(model[0])
    if "backbone" in options:
        backbone_config = BackboneConfig(options["backbone"], "small-image-stem" in options)
    elif args.backbone:
        backbone_config = BackboneConfig(
            args.backbone, args.small_image_stem or "small-image-stem" in options
        )
    elif reference is not None:
        backbone_config = reference.backbone_config
        if "small-image-stem" in options:
            backbone_config = replace(backbone_config, small_image_stem=True)
    else:
        backbone_config = None
    view_config = reference.view_config if reference is not None else None
    size_text = options.get("input-size")
    size = args.input_size if size_text is None else _option_size(size_text)
    if size is not None:
        view_config = replace(view_config or ViewConfig(input_size=size), eval_input_size=size)
    return backbone_config, view_config


def _option_size(text: str) -> int:
    try:
        size = int(text)
    except ValueError:
        size = 0
    if size <= 0:
        raise ContrastiveError(f"--encoder input-size={text}: expected a positive integer")
    return size


def _recorded(train: Embeddings) -> Encoder | None:
    """The encoder the model's embeddings were made with, where its weights say what it is."""
    if not train.source or not Path(train.source).exists():
        return None
    try:
        return load_encoder(train.source)
    except MissingConfigurationError:  # plain weights: no architecture to lend others
        return None


def _folders(args: argparse.Namespace, model: tuple[Embeddings, Embeddings]) -> tuple[Path, Path]:
    """The labeled image folders: given directly, or recorded in the embeddings files."""
    folders = []
    for given, embedded, flag in (
        (args.train, model[0], "--train"),
        (args.test, model[1], "--test"),
    ):
        folder = given if given.is_dir() else embedded.data_root
        if folder is None or not folder.is_dir():
            raise ContrastiveError(
                f"--encoder needs image folders: {flag} {given} records none that exists"
            )
        folders.append(folder)
    return folders[0], folders[1]


def _recorded_root(path: Path) -> Path | None:
    """The image folder an embeddings file records (None for a missing or unreadable file:
    loading it reports that)."""
    try:
        return recorded_data_root(path)
    except (ContrastiveError, OSError):
        return None


def _source(embeddings: Embeddings) -> str:
    return embeddings.source or embeddings.feature


def _default_out(args: argparse.Namespace) -> Path:
    if args.run is not None:
        return args.run / "evaluation" / "fewshot"
    if args.train.is_file():
        return args.train.with_name(f"{args.train.stem}.fewshot")
    return Path("fewshot")
