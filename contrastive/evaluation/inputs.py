"""Feature sets to evaluate: from embeddings files or folders, with optional baselines.

Every evaluation can put its floor beside it: the same architecture at random init, and the
raw pixels the network sees (:class:`~contrastive.embeddings.RawPixels`). Folders are
embedded once for all requested feature sets.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from contrastive.data.folder import IMAGE_EXTENSIONS
from contrastive.embeddings import Embeddings, RawPixels, embed_folder, load_embeddings
from contrastive.encoder import Encoder, feature_extractor, load_encoder, random_init_encoder
from contrastive.errors import ContrastiveError
from contrastive.files import same_path

MODEL, RANDOM_INIT, RAW_PIXELS = "model", "random_init", "raw_pixels"


@dataclass(frozen=True)
class EmbedSettings:
    """How folders are embedded.

    Attributes:
        batch_size: Images per batch.
        num_workers: DataLoader worker processes; None chooses them
            (:func:`~contrastive.embeddings.loader_workers`).
        device: Where to compute.
        progress: Show progress bars.
        projector: Use the projection head's output instead of backbone features.
        seed: Seed of the random-init baseline.
    """

    batch_size: int = 256
    num_workers: int | None = 0
    device: str = "cpu"
    progress: bool = True
    projector: bool = False
    seed: int = 0


def baseline_extractors(encoder: Encoder, seed: int = 0) -> dict[str, nn.Module]:
    """The baselines' feature modules: the random-init backbone and raw pixels."""
    return {
        RANDOM_INIT: feature_extractor(random_init_encoder(encoder, seed)),
        RAW_PIXELS: RawPixels(),
    }


def evaluation_inputs(
    train: str | os.PathLike,
    test: str | os.PathLike,
    encoder: Encoder | None = None,
    baselines: bool = False,
    settings: EmbedSettings = EmbedSettings(),
) -> dict[str, tuple[Embeddings, Embeddings]]:
    """Train/test embeddings for the model and, on request, its baselines.

    Args:
        train: Embeddings file or image folder.
        test: Embeddings file or image folder.
        encoder: Needed to embed folders; for baselines of embeddings files it is otherwise
            loaded from the files' recorded ``source``.
        baselines: Add ``random_init`` and ``raw_pixels`` feature sets; their images come
            from the folders, or from the ``data_root`` recorded in embeddings files.
        settings: Embedding settings.

    Returns:
        ``{"model": (train, test), ["random_init": ..., "raw_pixels": ...]}``.

    Raises:
        ContrastiveError: If a folder is given without an encoder, or the baselines' images
            or architecture cannot be found.

    Warns:
        UserWarning: Once, if ``encoder`` is given but embeddings files hold features of
            another checkpoint: the model's scores are those files', not the encoder's.
    """
    if baselines and encoder is None:
        encoder = _recorded_encoder(train)
    extras: dict[str, nn.Module] = baseline_extractors(encoder, settings.seed) if baselines else {}
    sets = [
        _feature_sets(Path(path).expanduser(), name, encoder, extras, settings)
        for path, name in ((train, "--train"), (test, "--test"))
    ]
    if encoder is not None:
        _warn_unused_encoder(encoder, [sets[0][MODEL], sets[1][MODEL]])
    return {name: (sets[0][name], sets[1][name]) for name in sets[0]}


def _warn_unused_encoder(encoder: Encoder, models: list[Embeddings]) -> None:
    """Warns once when loaded features come from another checkpoint than ``encoder``: a
    report would otherwise credit the encoder with another model's scores."""
    others = {
        model.source
        for model in models
        if model.source and not same_path(model.source, encoder.source)
    }
    if others:
        warnings.warn(
            f"--run/--checkpoint {encoder.source} is not used: the .npz files hold features of "
            f"{', '.join(sorted(others))}",
            stacklevel=3,
        )


def _feature_sets(
    path: Path,
    name: str,
    encoder: Encoder | None,
    extras: Mapping[str, nn.Module],
    settings: EmbedSettings,
) -> dict[str, Embeddings]:
    if path.is_dir():
        if encoder is None:
            raise ContrastiveError(f"{name} {path} is a folder: give --run or --checkpoint")
        feature = "projector" if settings.projector else "backbone"
        extractors = {MODEL: feature_extractor(encoder, settings.projector), **extras}
        sources = {
            MODEL: encoder.source,
            RANDOM_INIT: f"random init (seed {settings.seed})",
            RAW_PIXELS: "raw pixels",
        }
        embedded = _embed(path, encoder, extractors, sources, settings)
        embedded[MODEL].feature = feature
        return embedded
    if not path.exists():
        raise ContrastiveError(
            f"{name} {path} not found: give a folder of class sub-folders or an embeddings .npz"
        )
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        raise ContrastiveError(
            f"{name} {path} is one image: give its folder of class sub-folders, or an "
            "embeddings .npz"
        )
    model = load_embeddings(path)
    if not extras:
        return {MODEL: model}
    folder = model.data_root
    if folder is None or not folder.is_dir():
        raise ContrastiveError(
            f"--baselines: {path} records no existing data folder ({str(folder or '')!r}); "
            f"give the image folder as {name}"
        )
    if encoder is None:
        raise ContrastiveError("--baselines needs --run or --checkpoint")
    sources = {RANDOM_INIT: f"random init (seed {settings.seed})", RAW_PIXELS: "raw pixels"}
    return {MODEL: model, **_embed(folder, encoder, extras, sources, settings)}


def _embed(
    folder: Path,
    encoder: Encoder,
    extractors: Mapping[str, nn.Module],
    sources: Mapping[str, str],
    settings: EmbedSettings,
) -> dict[str, Embeddings]:
    return embed_folder(
        folder,
        encoder.view_config,
        extractors,
        sources,
        settings.batch_size,
        settings.num_workers,
        torch.device(settings.device),
        settings.progress,
    )


def _recorded_encoder(train: str | os.PathLike) -> Encoder:
    """The encoder an embeddings file was made with, for its baselines' architecture."""
    path = Path(train).expanduser()
    if path.is_dir():
        raise ContrastiveError(f"--train {path} is a folder: give --run or --checkpoint")
    source = load_embeddings(path).source
    if not source or not Path(source).exists():
        raise ContrastiveError(
            f"--baselines: {path} records no existing checkpoint ({source!r}); give --run or "
            "--checkpoint"
        )
    return load_encoder(source)
