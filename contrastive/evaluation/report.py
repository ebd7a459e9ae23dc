"""Evaluation reports: a JSON file with every number and setting, and a small printed table."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np

from contrastive.evaluation.settings import MODEL, RANDOM_INIT, RAW_PIXELS
from contrastive.files import write_text_atomic

#: Row labels of the feature sets, in the order they are printed.
ROW_NAMES = {MODEL: "model", RANDOM_INIT: "random init", RAW_PIXELS: "raw pixels"}


def build_report(
    protocol: str,
    settings: Mapping[str, Any],
    data: Mapping[str, Any],
    checkpoint: str,
    results: Mapping[str, Any],
) -> dict[str, Any]:
    """Assembles a report dict; every value ends up JSON-ready.

    Args:
        protocol: E.g. ``"knn"`` or ``"linear"``.
        settings: Protocol parameters (k, T, weight decay, ...).
        data: Data paths and counts.
        checkpoint: What was evaluated.
        results: ``{feature set: numbers}``.
    """
    from contrastive import __version__

    return to_jsonable(
        {
            "protocol": protocol,
            "settings": dict(settings),
            "checkpoint": checkpoint,
            "run": run_record(checkpoint) if checkpoint else None,
            "data": dict(data),
            "results": dict(results),
            "contrastive_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
    )


def run_record(checkpoint: str | os.PathLike) -> dict[str, Any] | None:
    """What a report needs to be matched to the run it measured, years later: the run's
    settings that decide its numbers and a hash of its ``config.yaml`` (None for weights
    that are not a run's)."""
    import hashlib

    import yaml

    from contrastive.encoder import RUN_BACKBONE, RUN_CONFIG, run_folder_of

    folder = run_folder_of(checkpoint)
    if folder is None:
        return None
    text = (folder / RUN_CONFIG).read_bytes()
    try:
        config = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        config = {}
    if not isinstance(config, Mapping):
        config = {}

    def name_of(section: str) -> Any:
        value = config.get(section)
        return value.get("name") if isinstance(value, Mapping) else None

    return {
        "folder": str(folder),
        "config_sha256": hashlib.sha256(text).hexdigest(),
        "finished": (folder / RUN_BACKBONE).is_file(),
        "seed": config.get("seed"),
        "method": name_of("method"),
        "loss": name_of("loss"),
        "backbone": name_of("backbone"),
        "epochs": config.get("epochs"),
        "max_steps": config.get("max_steps"),
        "time_budget": config.get("time_budget"),
    }


def to_jsonable(value: Any) -> Any:
    """Converts tensors, arrays, numpy scalars, tuples and non-string keys for ``json``.

    NaN becomes ``None`` so that the file is strict JSON.
    """
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    # A tensor exists only where torch was imported: `contrastive health` never imports it.
    torch = sys.modules.get("torch")
    if isinstance(value, np.ndarray) or (torch is not None and isinstance(value, torch.Tensor)):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def write_report(report: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Writes the report as indented JSON, atomically."""
    write_text_atomic(path, dumps(to_jsonable(report)) + "\n")


def dumps(value: Any, indent: int = 2, level: int = 0) -> str:
    """Indented JSON whose lists of scalars stay on one line (confusion-matrix rows).

    Args:
        value: JSON-ready value (see :func:`to_jsonable`).
        indent: Spaces per nesting level.
        level: Current nesting level.
    """
    inner = " " * (indent * (level + 1))
    if isinstance(value, Mapping) and value:
        items = [
            f"{inner}{json.dumps(key)}: {dumps(item, indent, level + 1)}"
            for key, item in value.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + " " * (indent * level) + "}"
    if isinstance(value, list) and any(isinstance(item, (list, Mapping)) for item in value):
        items = [inner + dumps(item, indent, level + 1) for item in value]
        return "[\n" + ",\n".join(items) + "\n" + " " * (indent * level) + "]"
    return json.dumps(value)


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table with padded columns, readable both raw and rendered."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"

    separator = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), separator, *(line(row) for row in rows)])


def percent(value: float | None) -> str:
    """``0.8123`` -> ``"81.23"``; missing values print as ``-``."""
    return "-" if value is None else f"{100 * value:.2f}"


def top_k_metrics(num_classes: int) -> tuple[str, ...]:
    """The accuracies worth printing: top-5 only above 5 classes, where it can be below 100%."""
    return ("top1", "top5") if num_classes > 5 else ("top1",)


def knn_table(
    results: Mapping[str, Mapping[str, Mapping[str, float]]],
    metrics: Sequence[str] = ("top1", "top5"),
) -> str:
    """Top-1/top-5 (%) per feature set and k.

    Args:
        results: ``{feature set: {"k=20": {"top1": .., "top5": ..}, ...}}``.
        metrics: The columns of each k (see :func:`top_k_metrics`).
    """
    ks = list(next(iter(results.values())))
    header = ["features", *(f"{k} {metric}" for k in ks for metric in metrics)]
    rows = [
        [
            ROW_NAMES.get(name, name),
            *(percent(per_k[k].get(metric)) for k in ks for metric in metrics),
        ]
        for name, per_k in results.items()
    ]
    return format_table(header, rows)


def linear_table(
    results: Mapping[str, Mapping[str, Any]], metrics: Sequence[str] = ("top1", "top5")
) -> str:
    """Top-1/top-5 (%) and the chosen weight decay per feature set.

    Args:
        results: ``{feature set: {"top1": .., "top5": .., "weight_decay": ..}}``.
        metrics: The accuracy columns (see :func:`top_k_metrics`).
    """
    header = ["features", *metrics, "weight decay"]
    rows = [
        [
            ROW_NAMES.get(name, name),
            *(percent(numbers.get(metric)) for metric in metrics),
            f"{numbers.get('weight_decay', 0.0):g}",
        ]
        for name, numbers in results.items()
    ]
    return format_table(header, rows)
