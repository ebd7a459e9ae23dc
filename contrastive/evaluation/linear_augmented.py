"""Lightly's linear-evaluation protocol, for comparison with their published numbers.

Unlike the cached-feature probe (:mod:`contrastive.evaluation.linear`), every training image
is freshly augmented (random-resized crop + horizontal flip) and passed through the frozen
backbone in eval mode; a linear layer is trained with SGD (momentum 0.9, no weight decay,
learning rate ``0.1 * batch / 256``) on a cosine schedule stepped per batch, as in
``lightly.utils.benchmarking.LinearClassifier``. Test images use the evaluation transform.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
import torchvision.transforms.v2 as T
from torch import nn
from tqdm.auto import tqdm

from contrastive.data.folder import ImageDataset, ImageFolder
from contrastive.encoder import evaluation_mode
from contrastive.evaluation.labels import align_test_labels, check_labels
from contrastive.evaluation.metrics import classification_summary
from contrastive.views.config import ViewConfig
from contrastive.views.per_image import eval_transform


@dataclass(frozen=True)
class AugmentedLinearSettings:
    """Lightly's linear-evaluation hyper-parameters (ImageNet benchmark defaults).

    Attributes:
        epochs: Passes over the training images.
        batch_size: Images per step.
        base_learning_rate: Learning rate per 256 images.
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
        crop_scale: Random-resized-crop area range.
        num_workers: DataLoader worker processes.
        seed: Seed of the shuffling, augmentations and head initialisation.
    """

    epochs: int = 90
    batch_size: int = 256
    base_learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    crop_scale: tuple[float, float] = (0.08, 1.0)
    num_workers: int = 0
    seed: int = 0


def augmented_train_transform(
    view_config: ViewConfig, crop_scale: tuple[float, float] = (0.08, 1.0)
) -> T.Compose:
    """Random-resized crop to the input size and horizontal flip, then the run's normalisation."""
    return T.Compose(
        [
            T.RandomResizedCrop(view_config.input_size, scale=crop_scale, antialias=True),
            T.RandomHorizontalFlip(),
            T.ToImage(),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(list(view_config.mean), list(view_config.std)),
        ]
    )


def train_augmented_linear(
    features: nn.Module,
    feature_dim: int,
    view_config: ViewConfig,
    train_folder: ImageFolder,
    test_folder: ImageFolder,
    settings: AugmentedLinearSettings = AugmentedLinearSettings(),
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Trains a linear head on augmented images through a frozen feature module.

    Args:
        features: Maps ``(B, 3, H, W)`` images to ``(B, feature_dim)``; frozen, eval mode.
        feature_dim: Width of the features.
        view_config: Input size and normalisation.
        train_folder: Labeled training images.
        test_folder: Labeled test images (classes matched to the training ones by name).
        settings: Protocol hyper-parameters.
        device: Where to compute.
        progress: Show progress bars.

    Returns:
        The test summary (top-1/top-5, per-class accuracy, confusion matrix) plus
        ``final_train_loss`` and the ``settings``.

    Raises:
        ContrastiveError: If a folder is unlabeled or the test set has unseen classes.
    """
    train_labels, classes = train_folder.labels()
    test_labels, test_classes = test_folder.labels()
    check_labels(train_labels, classes, "--train")
    check_labels(test_labels, test_classes, "--test")
    test_labels = align_test_labels(classes, test_labels, test_classes)
    generator = torch.Generator().manual_seed(settings.seed)
    train_loader = torch.utils.data.DataLoader(
        ImageDataset(
            train_folder.paths,
            augmented_train_transform(view_config, settings.crop_scale),
            train_labels,
        ),
        batch_size=settings.batch_size,
        shuffle=True,
        generator=generator,
        drop_last=len(train_folder) > settings.batch_size,
        num_workers=settings.num_workers,
    )
    test_loader = torch.utils.data.DataLoader(
        ImageDataset(test_folder.paths, eval_transform(view_config), test_labels),
        batch_size=settings.batch_size,
        num_workers=settings.num_workers,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        head = nn.Linear(feature_dim, len(classes)).to(device)
        features.to(device)
        loss = _train(features, head, train_loader, settings, device, progress)
        logits, targets = _predict(features, head, test_loader, device)
    ranked = logits.topk(min(5, len(classes)), dim=1).indices
    summary = classification_summary(ranked, targets, len(classes))
    summary["final_train_loss"] = loss
    summary["settings"] = asdict(settings)
    return summary


def _train(
    features: nn.Module,
    head: nn.Linear,
    loader: torch.utils.data.DataLoader,
    settings: AugmentedLinearSettings,
    device: str | torch.device,
    progress: bool,
) -> float:
    learning_rate = settings.base_learning_rate * settings.batch_size / 256
    optimizer = torch.optim.SGD(
        head.parameters(),
        lr=learning_rate,
        momentum=settings.momentum,
        weight_decay=settings.weight_decay,
    )
    total_steps = max(1, settings.epochs * len(loader))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
    )
    loss_value = float("nan")
    with evaluation_mode(features):
        for _epoch in tqdm(
            range(settings.epochs),
            desc="linear (augmented)",
            unit="epoch",
            disable=not progress,
            leave=False,
        ):
            for images, labels, _indices in loader:
                with torch.no_grad():
                    batch_features = features(images.to(device)).flatten(start_dim=1)
                loss = F.cross_entropy(head(batch_features), labels.to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                loss_value = loss.detach().item()
    return loss_value


def _predict(
    features: nn.Module,
    head: nn.Linear,
    loader: torch.utils.data.DataLoader,
    device: str | torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    logits, targets = [], []
    with evaluation_mode(features, head), torch.no_grad():
        for images, labels, _indices in loader:
            logits.append(head(features(images.to(device)).flatten(start_dim=1)).cpu())
            targets.append(labels)
    if not logits:
        return torch.zeros(0, head.out_features), torch.zeros(0, dtype=torch.long)
    return torch.cat(logits), torch.cat(targets).long()


def feature_width(features: nn.Module, input_size: int) -> int:
    """Output width of a feature module on one blank image (the raw-pixel width varies)."""
    with evaluation_mode(features), torch.no_grad():
        device = next(iter(features.parameters()), torch.zeros(0)).device
        return int(features(torch.zeros(1, 3, input_size, input_size, device=device)).shape[1])
