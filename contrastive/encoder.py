"""Trained encoders loaded for inference: from a run folder, a Lightning checkpoint or weights.

An :class:`Encoder` bundles the backbone with what evaluation needs to feed it: the view
configuration (input size and normalisation of the evaluation transform) and the backbone
configuration (to rebuild it at random init for baselines).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image
from torch import Tensor, nn

from contrastive.backbone_config import BackboneConfig
from contrastive.backbones import build_backbone
from contrastive.data.folder import DECODE_ERRORS, load_rgb, to_rgb
from contrastive.errors import ContrastiveError
from contrastive.files import load_torch_safely, same_path
from contrastive.losses import LossConfig
from contrastive.methods import MethodConfig, build_method
from contrastive.views.config import ViewConfig
from contrastive.views.per_image import eval_transform

RUN_CONFIG = "config.yaml"
RUN_BACKBONE = "backbone.pt"
RUN_CHECKPOINT = Path("checkpoints") / "last.ckpt"


@dataclass
class Encoder:
    """A backbone ready for inference, with the configuration it was trained with.

    Attributes:
        backbone: Maps ``(B, 3, H, W)`` images to ``(B, feature_dim)`` features.
        feature_dim: Width of the backbone features.
        view_config: The run's views; evaluation uses its input size and normalisation.
        backbone_config: How to rebuild the backbone.
        source: What was loaded: the absolute run folder or checkpoint path (so that
            :func:`load_encoder` can reload it), or a description for baselines.
        projection_head: The training projector, when it was loaded from a checkpoint.
    """

    backbone: nn.Module
    feature_dim: int
    view_config: ViewConfig
    backbone_config: BackboneConfig
    source: str
    projection_head: nn.Module | None = None

    def embed(self, images: ImageInput | Sequence[ImageInput], batch_size: int = 256) -> Tensor:
        """Backbone features of images, through the run's evaluation transform (resize,
        center crop, the run's normalisation) with batch-norm in eval mode: the features
        ``contrastive embed`` computes for the same files.

        Args:
            images: One image or a sequence of them: PIL images, image file paths, or
                ``(H, W, 3)`` / ``(H, W)`` uint8 NumPy arrays.
            batch_size: Images per forward pass.

        Returns:
            ``(N, feature_dim)`` float features on the CPU, in the order given.

        Raises:
            ContrastiveError: For a tensor (the backbone itself takes batches already
                resized and normalised), another type, or an array of another shape or
                dtype, naming the item.
        """
        single = isinstance(images, str | os.PathLike | Image.Image | np.ndarray)
        items = [images] if single else list(images)
        if not items:
            raise ContrastiveError("embed needs at least one image")
        transform = eval_transform(self.view_config)
        device = next(self.backbone.parameters()).device
        batches = []
        with evaluation_mode(self.backbone), torch.no_grad():
            for start in range(0, len(items), batch_size):
                chunk = items[start : start + batch_size]
                pixels = torch.stack(
                    [transform(_as_pil(item, start + i)) for i, item in enumerate(chunk)]
                )
                try:
                    features = self.backbone(pixels.to(device))
                except NETWORK_INPUT_ERRORS as error:
                    if batches:
                        raise
                    raise first_batch_error(error, pixels, self.source) from error
                batches.append(features.flatten(start_dim=1).float().cpu())
        return torch.cat(batches)


#: What a network raises on images it was not built for (timm's ViT asserts its input size).
NETWORK_INPUT_ERRORS = (RuntimeError, AssertionError, ValueError)


def first_batch_error(error: BaseException, images: Tensor, source: str) -> ContrastiveError:
    """A network that failed on its first batch, in one line naming the input size.

    A ViT built for 224 px given 32 px images stopped with a 52-line traceback ending in
    timm's ``AssertionError: Input height (32) doesn't match model (224)``.
    """
    text = str(error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    height, width = images.shape[-2:]
    return ContrastiveError(
        f"{source} failed on {height}x{width} px images: {first} (a network built for one "
        "input size needs --input-size of that size)"
    )


#: What :meth:`Encoder.embed` takes for one image.
ImageInput = str | os.PathLike | Image.Image | np.ndarray


def _as_pil(item: object, index: int) -> Image.Image:
    """One input of :meth:`Encoder.embed` as an RGB PIL image."""
    if isinstance(item, Image.Image):
        return to_rgb(item)
    if isinstance(item, str | os.PathLike):
        try:
            return load_rgb(item)
        except DECODE_ERRORS as error:
            raise ContrastiveError(f"image {index}: cannot read {item}: {error}") from error
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8 or not (
            item.ndim == 2 or (item.ndim == 3 and item.shape[2] in (1, 3, 4))
        ):
            raise ContrastiveError(
                f"image {index}: an array must be uint8 (H, W), (H, W, 3) or (H, W, 4); got "
                f"{item.dtype} {item.shape}"
            )
        return to_rgb(Image.fromarray(item[:, :, 0] if item.shape[2:] == (1,) else item))
    if isinstance(item, Tensor):
        raise ContrastiveError(
            f"image {index} is a tensor: embed takes PIL images, paths or uint8 arrays; a batch "
            "already resized and normalised (contrastive.views.per_image.eval_transform) goes "
            "to encoder.backbone"
        )
    raise ContrastiveError(
        f"image {index} is a {type(item).__name__}: embed takes PIL images, paths or uint8 arrays"
    )


class EncoderFeatures(nn.Module):
    """Backbone features, optionally passed through the projection head: ``(B, D)``."""

    def __init__(self, backbone: nn.Module, projection_head: nn.Module | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.projection_head = projection_head

    def forward(self, images: Tensor) -> Tensor:
        """Args: images: ``(B, 3, H, W)``. Returns ``(B, D)`` features."""
        features = self.backbone(images).flatten(start_dim=1)
        return self.projection_head(features) if self.projection_head is not None else features


def feature_extractor(encoder: Encoder, projector: bool = False) -> EncoderFeatures:
    """The module computing an encoder's features (or its projector output).

    Raises:
        ContrastiveError: If ``projector`` is requested but the encoder has none.
    """
    if projector and encoder.projection_head is None:
        raise ContrastiveError(
            "the projection head's features need a Lightning checkpoint of ours with a "
            f"projection head; {encoder.source} has none"
        )
    return EncoderFeatures(encoder.backbone, encoder.projection_head if projector else None)


@contextlib.contextmanager
def evaluation_mode(*modules: nn.Module) -> Iterator[None]:
    """Puts modules in eval mode (frozen batch-norm statistics) and restores their modes."""
    saved = [(module, module.training) for root in modules for module in root.modules()]
    for root in modules:
        root.eval()
    try:
        yield
    finally:
        for module, training in saved:
            module.training = training


class MissingConfigurationError(ContrastiveError):
    """Weights that record no architecture or views (a plain state_dict, another tool's)."""


def load_encoder(
    source: str | os.PathLike,
    backbone_config: BackboneConfig | None = None,
    view_config: ViewConfig | None = None,
    with_projection_head: bool = False,
    weights_prefix: str | None = None,
) -> Encoder:
    """Loads an encoder from a run folder, a Lightning ``.ckpt`` or a plain state_dict.

    A run folder gives its ``config.yaml`` and ``backbone.pt`` (``checkpoints/last.ckpt``
    when there is no ``backbone.pt``, or when the projection head is wanted). A Lightning
    checkpoint carries its config in ``hyper_parameters["config"]``. A plain state_dict
    carries no config: ``backbone_config`` and ``view_config`` must be given. Given configs
    override those read from the run.

    Args:
        source: Run folder, ``.ckpt`` or ``.pt`` file.
        backbone_config: Architecture override (required for a plain state_dict).
        view_config: View override (required for a plain state_dict).
        with_projection_head: Also load the projection head (Lightning checkpoints only).
        weights_prefix: In a file of another tool, the backbone's weights are those under
            this prefix (``encoder_q.``, ``teacher.backbone.``; see
            :func:`backbone_weights_of`). The configs must then be given.

    Returns:
        The encoder, backbone in eval mode on the CPU.

    Raises:
        ContrastiveError: Missing files, unreadable configs, or weights of another
            architecture, each in one line.
    """
    path = Path(source).expanduser().absolute()
    if path.is_dir():
        return _load_run(path, backbone_config, view_config, with_projection_head)
    if not path.exists():
        # A mistyped run folder read "file not found", as if a file were expected.
        raise ContrastiveError(
            f"no run folder or weights file at {path} (a run folder, a .ckpt or a .pt file)"
        )
    if path.suffix.lower() in {".yaml", ".yml", ".json", ".csv", ".npz"}:
        # A file of a run, not its weights: the run folder is what was meant.
        raise ContrastiveError(
            f"{path} is not weights: give the run folder ({path.parent}), a .ckpt or a .pt file"
        )
    if path.name == RUN_BACKBONE and (path.parent / RUN_CONFIG).is_file():
        # A run's own weights: the config.yaml beside them says what they are.
        encoder = _load_run(path.parent, backbone_config, view_config, with_projection_head)
        return replace(encoder, source=str(path))
    content = _weights_file_content(path)
    recorded = isinstance(content, Mapping) and isinstance(_recorded_config(content), Mapping)
    if recorded and not weights_prefix:
        return _from_lightning(
            content, str(path), backbone_config, view_config, with_projection_head
        )
    # A plain state_dict, or a checkpoint of another tool: nothing says what it holds.
    if with_projection_head:
        raise ContrastiveError(
            f"{path} records no contrastive configuration, so its projection head cannot be "
            "rebuilt: leave out --projection-head (the backbone's features are read)"
        )
    if backbone_config is None or view_config is None:
        raise MissingConfigurationError(
            f"{path} holds weights without a contrastive configuration (a plain state_dict, or "
            "a checkpoint of another tool): give --backbone and --input-size (load_encoder: "
            "backbone_config and view_config)"
        )
    weights = backbone_weights_of(content, path, weights_prefix)
    return _assemble(weights, str(path), backbone_config, view_config)


def random_init_encoder(encoder: Encoder, seed: int = 0) -> Encoder:
    """The same architecture and views at random initialisation: the floor of every number.

    The global random state is left untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone, feature_dim = build_backbone(encoder.backbone_config)
    backbone.eval()
    return replace(
        encoder,
        backbone=backbone,
        feature_dim=feature_dim,
        source=f"random init (seed {seed})",
        projection_head=None,
    )


def load_backbone_weights(
    backbone: nn.Module, state_dict: Mapping[str, Tensor], source: str, config: BackboneConfig
) -> None:
    """Loads weights strictly, summarising any mismatch in one line.

    The weights of a classifier the backbone replaced by ``Identity`` (``fc.*`` of an
    ImageNet ``state_dict``) are ignored, so torchvision/timm files load as they are.

    Raises:
        ContrastiveError: Naming the file, the architecture, and the first mismatches.
    """
    state_dict, _ = without_removed_classifier(backbone, in_module_names(backbone, state_dict))
    problems = _mismatches(backbone, state_dict)
    if problems:
        hints = _stem_hint(backbone, state_dict) + _prefix_hint(backbone, state_dict)
        raise ContrastiveError(
            f"{source} does not fit backbone {config.name} (small_image_stem="
            f"{config.small_image_stem}): {'; '.join(problems)}{hints}"
        )


def in_module_names(module: nn.Module, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Renames the keys of weights saved from a wrapper to ``module``'s own names.

    - A prefix every key shares and ``module`` has no child of (``model.``, ``encoder.``: a
      Lightning module of another tool that holds the network alone) is removed.
    - Lightly's examples build their backbone as ``nn.Sequential(*list(resnet.children())
      [:-1])``, so its weights read ``0.weight``, ``4.0.conv1.weight``: child ``i`` of that
      ``Sequential`` is child ``i`` of ``module`` (``conv1``, ``layer1.0.conv1``).

    Any other layout, or one these renamings fit no better, is returned unchanged, for the
    strict load to name its mismatches as they are in the file.
    """
    expected = module.state_dict()

    def fitting(weights: Mapping[str, Tensor]) -> int:
        return sum(
            key in expected and expected[key].shape == value.shape for key, value in weights.items()
        )

    renamed = _renamed_to_children(module, state_dict)
    return renamed if fitting(renamed) > fitting(state_dict) else dict(state_dict)


def _renamed_to_children(module: nn.Module, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    names = [name for name, _ in module.named_children()]
    weights = dict(state_dict)
    while weights and all("." in key for key in weights):
        shared = {key.partition(".")[0] for key in weights}
        (prefix,) = shared if len(shared) == 1 else ("",)
        if not prefix or prefix in names or prefix.isdigit():
            break
        weights = {key.partition(".")[2]: value for key, value in weights.items()}
    renamed: dict[str, Tensor] = {}
    for key, value in weights.items():
        index, _, rest = key.partition(".")
        if not (index.isdigit() and rest and int(index) < len(names)):
            return weights
        renamed[f"{names[int(index)]}.{rest}"] = value
    return renamed


def _prefix_hint(
    module: nn.Module, state_dict: Mapping[str, Tensor], flag: str = "--weights-prefix"
) -> str:
    """Where a file's weights sit when they are not the backbone's names (several wrappers)."""
    expected = module.state_dict()
    unexpected = {key.partition(".")[0] for key in state_dict if key not in expected}
    names = {name for name, _ in module.named_children()}
    outside = sorted(prefix for prefix in unexpected if prefix not in names)
    if not outside or len(outside) < len(unexpected):
        return ""
    dotted = sorted({key.partition(".")[0] for key in state_dict if "." in key} & set(outside))
    if not dotted:
        return ""
    listed = ", ".join(f"{prefix}." for prefix in dotted[:4])
    return (
        f" (the file's weights are under {listed}: pick the backbone's with {flag}, "
        f"e.g. {flag} {dotted[0]}.)"
    )


def _stem_hint(module: nn.Module, state_dict: Mapping[str, Tensor]) -> str:
    """Which stem flag fits ResNet weights whose first convolution has the other kernel."""
    expected = module.state_dict().get("conv1.weight")
    found = state_dict.get("conv1.weight")
    if expected is None or found is None or found.ndim != 4 or found.shape == expected.shape:
        return ""
    if int(found.shape[-1]) == 3:
        return " (the file's conv1 is 3x3, the small-image stem: add --small-image-stem)"
    if int(found.shape[-1]) == 7:
        return " (the file's conv1 is 7x7, the ImageNet stem: leave out --small-image-stem)"
    return ""


def read_backbone_weights(
    source: str | os.PathLike, weights_prefix: str | None = None
) -> dict[str, Tensor]:
    """The backbone ``state_dict`` held by a file or run folder, whatever its packaging.

    Accepts a run folder (its ``backbone.pt``, else ``checkpoints/last.ckpt``), a Lightning
    checkpoint (its ``backbone.*`` weights), a plain ``state_dict`` (torchvision, timm, a
    run's ``backbone.pt``), one wrapped as ``{"state_dict": ...}`` or ``{"model": ...}``,
    or a ``.safetensors`` file. Nothing is downloaded.

    Raises:
        ContrastiveError: If the path holds no tensors, in one line naming it.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        weights, checkpoint = path / RUN_BACKBONE, path / RUN_CHECKPOINT
        if not weights.is_file() and not checkpoint.is_file():
            raise ContrastiveError(f"{path} holds no {RUN_BACKBONE} or {RUN_CHECKPOINT}")
        path = weights if weights.is_file() else checkpoint
    return backbone_weights_of(_weights_file_content(path), path, weights_prefix)


def _weights_file_content(path: Path) -> object:
    """What a weights file holds: ``torch.load``'s result, or a ``.safetensors`` mapping."""
    if path.suffix == ".safetensors" and path.is_file():
        from safetensors.torch import load_file  # installed with timm

        return load_file(path)
    return load_torch_safely(path)


def backbone_weights_of(
    content: object, path: Path, weights_prefix: str | None = None
) -> dict[str, Tensor]:
    """The backbone ``state_dict`` inside a weights file's content, unwrapped.

    ``{"state_dict": ...}`` (Lightning) and ``{"model": ...}`` (timm's train script, DeiT)
    are unwrapped; of a Lightning module's weights, those under ``backbone.`` are kept
    (ours, Lightly's examples, solo-learn), and a DDP wrapper's ``module.`` is removed.

    Args:
        content: What the file holds.
        path: The file, named in errors.
        weights_prefix: Keep only the tensors under this dotted prefix, which is removed
            (``encoder_q.`` of MoCo v2, ``teacher.backbone.`` of DINO); nested mappings
            count as prefixes. The automatic choices above are then not made.

    Raises:
        ContrastiveError: If the content holds no tensors (or none under the prefix), in
            one line naming ``path`` and what it holds.
    """
    if weights_prefix:
        return _under_prefix(content, path, weights_prefix)
    for wrapper in ("state_dict", "model"):  # Lightning / timm train script / DeiT layouts
        if isinstance(content, Mapping) and isinstance(content.get(wrapper), Mapping):
            content = content[wrapper]
    if not isinstance(content, Mapping) or not all(
        isinstance(value, Tensor) for value in content.values()
    ):
        found = sorted(str(key) for key in content) if isinstance(content, Mapping) else []
        networks = [key for key in found if isinstance(content[key], Mapping)]
        raise ContrastiveError(
            f"{path} holds no state_dict of tensors"
            + (
                f" (its keys: {', '.join(found[:6])}): pick the network with --weights-prefix, "
                f"e.g. --weights-prefix {networks[0]}."
                if networks
                else ""
            )
        )
    for prefix in ("backbone.", "module."):  # our Lightning module / a DDP-wrapped model
        inner = _with_prefix(content, prefix)
        if inner:
            return inner
    return dict(content)


def _under_prefix(content: object, path: Path, prefix: str) -> dict[str, Tensor]:
    """The tensors under ``prefix`` of a content whose nested mappings read as dotted keys."""
    prefix = prefix if prefix.endswith(".") else f"{prefix}."
    # A DDP wrapper's "module." (MoCo's module.encoder_q., DINO's student.module.) is
    # skipped, and a Lightning file's weights may be named without its state_dict wrapper.
    flat = _without_ddp(_flattened(content))
    wanted = _without_ddp_part(prefix)
    selected = _with_prefix(flat, wanted) or _with_prefix(flat, f"state_dict.{wanted}")
    if not selected:
        names = sorted({key.removeprefix("state_dict.").partition(".")[0] for key in flat})
        raise ContrastiveError(
            f"{path} holds no weights under {prefix} (its weights are under "
            f"{', '.join(f'{name}.' for name in names[:6]) or 'nothing'})"
        )
    return selected


def _without_ddp_part(key: str) -> str:
    return ".".join(part for part in key.split(".") if part != "module")


def _without_ddp(weights: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {_without_ddp_part(key): value for key, value in weights.items()}


def _flattened(content: object) -> dict[str, Tensor]:
    """Every tensor of nested mappings under its dotted path."""
    flat: dict[str, Tensor] = {}

    def walk(mapping: Mapping, path: str) -> None:
        for key, value in mapping.items():
            if isinstance(value, Tensor):
                flat[f"{path}{key}"] = value
            elif isinstance(value, Mapping):
                walk(value, f"{path}{key}.")

    if isinstance(content, Mapping):
        walk(content, "")
    return flat


def small_stem_of_weights(
    source: str | os.PathLike, weights_prefix: str | None = None
) -> bool | None:
    """Which stem ResNet weights were trained with, read off the first convolution.

    Returns:
        True for the small-image stem (a 3x3 ``conv1``), False for the ImageNet stem (7x7),
        None where the weights have no such convolution (not a torchvision-style ResNet).

    Raises:
        ContrastiveError: If the weights cannot be read (see :func:`read_backbone_weights`).
    """
    weights = read_backbone_weights(source, weights_prefix)
    # "0.weight": the first convolution of a Sequential of the ResNet's children (Lightly).
    first = weights.get("conv1.weight", weights.get("0.weight"))
    if first is None or first.ndim != 4:
        return None
    return {3: True, 7: False}.get(int(first.shape[-1]))


def recorded_backbone_config(source: str | os.PathLike) -> BackboneConfig | None:
    """The architecture one of our runs recorded beside its weights, if any.

    ``source`` may be a run folder, its ``backbone.pt`` or a checkpoint under
    ``checkpoints/``: the run's ``config.yaml`` is then found one or two folders up. Weights
    from elsewhere (torchvision, timm) record nothing.

    Returns:
        The run's backbone configuration, or ``None`` when no run configuration is found.

    Raises:
        ContrastiveError: If the run's ``config.yaml`` is unreadable or lacks a backbone.
    """
    path = Path(source).expanduser().absolute()
    folders = (path,) if path.is_dir() else (path.parent, path.parent.parent)
    for folder in folders:
        config_file = folder / RUN_CONFIG
        if config_file.is_file():
            try:
                config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
            except yaml.YAMLError as error:
                message = f"cannot parse {config_file}: {error}".splitlines()[0]
                raise ContrastiveError(message) from error
            backbone_config, _ = _configs(config, str(config_file), None, ViewConfig())
            return backbone_config
    return None


def run_folder_of(source: str | os.PathLike) -> Path | None:
    """The run folder of a run path, its ``backbone.pt`` or a checkpoint under
    ``checkpoints/`` (the folder holding ``config.yaml``); None for weights from elsewhere."""
    path = Path(source).expanduser().absolute()
    folders = (path,) if path.is_dir() else (path.parent, path.parent.parent)
    return next((folder for folder in folders if (folder / RUN_CONFIG).is_file()), None)


def without_removed_classifier(
    module: nn.Module, state_dict: Mapping[str, Tensor]
) -> tuple[dict[str, Tensor], list[str]]:
    """Drops the keys of layers ``module`` replaced by ``Identity`` (the removed classifier).

    Returns:
        ``(state_dict, dropped keys)``.
    """
    expected = module.state_dict()
    kept: dict[str, Tensor] = {}
    dropped: list[str] = []
    for key, value in state_dict.items():
        owner = key.rpartition(".")[0]
        try:
            removed = key not in expected and isinstance(module.get_submodule(owner), nn.Identity)
        except AttributeError:
            removed = False
        if removed:
            dropped.append(key)
        else:
            kept[key] = value
    return kept, dropped


def init_backbone_weights(
    backbone: nn.Module,
    source: str | os.PathLike,
    strict: bool = True,
    weights_prefix: str | None = None,
) -> str:
    """Loads starting weights into ``backbone`` (see :func:`read_backbone_weights`).

    Args:
        backbone: The freshly built backbone.
        source: The weights file or run folder.
        strict: Refuse missing or unexpected keys; off: load the rest and report them.
        weights_prefix: Take the tensors under this prefix (see :func:`backbone_weights_of`).

    Returns:
        A one-line report: tensors loaded, classifier keys ignored, keys missing/unexpected.

    Raises:
        ContrastiveError: On a shape mismatch (always), or missing/unexpected keys (strict),
            naming the first offending tensors.
    """
    state_dict, ignored = without_removed_classifier(
        backbone, in_module_names(backbone, read_backbone_weights(source, weights_prefix))
    )
    expected = backbone.state_dict()
    reshaped = [
        f"{key}: file {tuple(state_dict[key].shape)} vs model {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state_dict and tuple(state_dict[key].shape) != tuple(value.shape)
    ]
    if reshaped:
        raise ContrastiveError(
            f"init weights {source} do not fit the backbone: "
            f"{_describe(reshaped, 'shape mismatch(es)')}"
        )
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    problems = [
        problem
        for problem in (
            _describe(missing, "missing key(s)"),
            _describe(unexpected, "unexpected key(s)"),
        )
        if problem
    ]
    if problems and strict:
        raise ContrastiveError(
            f"init weights {source} do not fit the backbone: {'; '.join(problems)} "
            "(--no-init-weights-strict loads the matching tensors)"
            + _prefix_hint(backbone, state_dict, "--init-weights-prefix")
        )
    backbone.load_state_dict(state_dict, strict=False)
    loaded = len(expected) - len(missing)
    report = [f"initialised the backbone from {source}: {loaded}/{len(expected)} tensors"]
    if ignored:
        report.append(f"ignored the classifier ({', '.join(ignored[:2])})")
    return "; ".join(report + problems)


def _mismatches(module: nn.Module, state_dict: Mapping[str, Tensor]) -> list[str]:
    """Loads ``state_dict`` strictly into ``module``; returns the problems (none: loaded)."""
    expected = module.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    reshaped = [
        f"{key}: file {tuple(state_dict[key].shape)} vs model {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state_dict and tuple(state_dict[key].shape) != tuple(value.shape)
    ]
    problems = [
        _describe(missing, "missing key(s)"),
        _describe(unexpected, "unexpected key(s)"),
        _describe(reshaped, "shape mismatch(es)"),
    ]
    problems = [problem for problem in problems if problem]
    if not problems:
        try:
            module.load_state_dict(state_dict, strict=True)
        except RuntimeError as error:
            problems = [str(error).strip().splitlines()[0]]
    return problems


def _describe(items: list[str], what: str) -> str:
    if not items:
        return ""
    return f"{len(items)} {what} (e.g. {', '.join(items[:2])})"


def _load_run(
    run: Path,
    backbone_config: BackboneConfig | None,
    view_config: ViewConfig | None,
    with_projection_head: bool,
) -> Encoder:
    config_file = run / RUN_CONFIG
    if not config_file.is_file():
        raise ContrastiveError(f"{run} is not a run folder: {RUN_CONFIG} is missing")
    try:
        config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ContrastiveError(f"cannot parse {config_file}: {error}".splitlines()[0]) from error
    weights, checkpoint = run / RUN_BACKBONE, run / RUN_CHECKPOINT
    if with_projection_head or not weights.is_file():
        if not checkpoint.is_file():
            wanted = (
                f"{RUN_CHECKPOINT}"
                if with_projection_head
                else (f"{RUN_BACKBONE} or {RUN_CHECKPOINT}")
            )
            raise ContrastiveError(f"{run} holds no {wanted}")
        content = load_torch_safely(checkpoint)
        if not isinstance(content, Mapping) or "state_dict" not in content:
            raise ContrastiveError(f"{checkpoint} is not a Lightning checkpoint")
        encoder = _from_lightning(
            content,
            str(checkpoint),
            backbone_config,
            view_config,
            with_projection_head,
            config,
            str(config_file),
        )
        if not weights.is_file():
            warnings.warn(unfinished_run_message(run, content, config), stacklevel=3)
        return replace(encoder, source=str(run))
    backbone_config, view_config = _configs(config, str(config_file), backbone_config, view_config)
    state_dict = load_torch_safely(weights)
    if not isinstance(state_dict, Mapping):
        raise ContrastiveError(f"{weights} holds no state_dict")
    return replace(
        _assemble(state_dict, str(weights), backbone_config, view_config), source=str(run)
    )


def weights_identity(source: str | os.PathLike) -> str:
    """One name for the places that hold a finished run's final weights.

    A run folder, its ``backbone.pt`` and, once ``backbone.pt`` is written, its
    ``checkpoints/last.ckpt`` hold the same weights; each gives the run folder (the folder of
    an unfinished run gives its ``last.ckpt``, which it is read from). Any other
    source (``best.ckpt``, a file from elsewhere, a baseline) is returned as it is.
    """
    path = Path(source).expanduser()
    for run in (path.parent, path.parent.parent):
        finished = (run / RUN_CONFIG).is_file() and (run / RUN_BACKBONE).is_file()
        if finished and path in (run / RUN_BACKBONE, run / RUN_CHECKPOINT):
            return os.fspath(run.absolute())
    if path.is_dir() and (path / RUN_CONFIG).is_file():
        if not (path / RUN_BACKBONE).is_file():
            # An unfinished run's folder is read from its last checkpoint.
            return os.fspath((path / RUN_CHECKPOINT).absolute())
        return os.fspath(path.absolute())
    return os.fspath(source)


def same_weights_source(first: str | os.PathLike, second: str | os.PathLike) -> bool:
    """Whether two recorded sources name the same weights (see :func:`weights_identity`)."""
    return same_path(weights_identity(first), weights_identity(second))


def unfinished_run_message(run: Path, checkpoint: Mapping, config: object) -> str:
    """What a user should know before using a run whose training did not finish.

    Training writes ``backbone.pt`` when it ends; a run without it was interrupted (or is
    still training), and its last checkpoint may hold the weights it started from.
    """
    step = checkpoint.get("global_step")
    planned = config.get("max_steps") if isinstance(config, Mapping) else None
    if step is None:
        at = "an unknown step"
    else:
        at = f"step {step}" + (f" of {planned}" if planned else "")
    untrained = (
        " (before its first training step: these are the weights it started from)"
        if step == 0
        else ""
    )
    if step is not None and planned and step >= planned:
        # Every step ran; the run stopped while writing its final files.
        return (
            f"{run} trained all its {planned} steps but stopped before writing "
            f"{RUN_BACKBONE}: using {RUN_CHECKPOINT} (the final weights); `contrastive train "
            f"--resume --out {run}` writes the missing files"
        )
    return (
        f"{run} did not finish training (no {RUN_BACKBONE}): using {RUN_CHECKPOINT}, saved at "
        f"{at}{untrained}; finish it with `contrastive train --resume --out {run}`"
    )


def _from_lightning(
    content: Mapping,
    source: str,
    backbone_config: BackboneConfig | None,
    view_config: ViewConfig | None,
    with_projection_head: bool,
    config: object = None,
    config_source: str | None = None,
) -> Encoder:
    if config is None:
        config = _recorded_config(content)
        config_source = f"{source} (hyper_parameters.config)"
    config_source = config_source or source
    backbone_config, view_config = _configs(config, config_source, backbone_config, view_config)
    state_dict = content["state_dict"]
    backbone_weights = _with_prefix(state_dict, "backbone.")
    if not backbone_weights:
        found = sorted({key.partition(".")[0] for key in state_dict})
        raise ContrastiveError(
            f"{source} holds no backbone.* weights (its weights are under "
            f"{', '.join(f'{name}.' for name in found[:6]) or 'nothing'}): extract the "
            "backbone's state_dict into a .pt file and give that"
        )
    encoder = _assemble(backbone_weights, source, backbone_config, view_config)
    if not with_projection_head:
        return encoder
    head_weights = _with_prefix(state_dict, "projection_head.")
    if not head_weights:
        raise ContrastiveError(f"{source} holds no projection_head.* weights")
    method_config = _method_config(config, config_source)
    head = projection_head(method_config, encoder.feature_dim, head_weights, source)
    return replace(encoder, projection_head=head)


def _recorded_config(checkpoint: Mapping) -> object:
    """The run configuration our Lightning checkpoints carry (None in another tool's)."""
    hyper_parameters = checkpoint.get("hyper_parameters")
    return hyper_parameters.get("config") if isinstance(hyper_parameters, Mapping) else None


def projection_head(
    method_config: MethodConfig, feature_dim: int, state_dict: Mapping[str, Tensor], source: str
) -> nn.Module:
    """The run's projection head, rebuilt by :func:`build_method` and loaded strictly.

    Args:
        method_config: The run's ``method`` section (which head, its widths).
        feature_dim: Width of the backbone features the head takes.
        state_dict: The head's weights (``projection_head.*`` with the prefix removed).
        source: The file named in errors.

    Returns:
        The head in eval mode.

    Raises:
        ContrastiveError: If the weights do not fit the configured head, in one line.
    """
    # Only the head is kept; the backbone and loss the method wraps are throwaway parts.
    method = build_method(method_config, LossConfig(), nn.Identity(), feature_dim)
    head = method.projection_head
    problems = _mismatches(head, state_dict)
    if problems:
        raise ContrastiveError(
            f"{source}: projection_head.* does not fit the configured {method_config.name} head "
            f"(hidden {method_config.projection_hidden_dim or feature_dim}, output "
            f"{method_config.projection_output_dim}): {'; '.join(problems)}"
        )
    return head.eval()


def _with_prefix(state_dict: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {
        key[len(prefix) :]: value for key, value in state_dict.items() if key.startswith(prefix)
    }


def _configs(
    config: object,
    source: str,
    backbone_config: BackboneConfig | None,
    view_config: ViewConfig | None,
) -> tuple[BackboneConfig, ViewConfig]:
    if backbone_config is not None and view_config is not None:
        return backbone_config, view_config
    if not isinstance(config, Mapping):
        raise ContrastiveError(f"{source} holds no configuration mapping")
    if backbone_config is None:
        values = config.get("backbone")
        if not isinstance(values, Mapping):
            raise ContrastiveError(f"{source} has no 'backbone' section")
        try:
            backbone_config = BackboneConfig(**values)
        except TypeError as error:
            raise ContrastiveError(f"{source}: bad 'backbone' section: {error}") from error
    if view_config is None:
        values = config.get("views")
        if not isinstance(values, Mapping):
            raise ContrastiveError(f"{source} has no 'views' section")
        view_config = ViewConfig.from_dict(dict(values))
    return backbone_config, view_config


def _method_config(config: Mapping, source: str) -> MethodConfig:
    """The ``method`` section; missing means the defaults, as in ``TrainConfig.from_dict``."""
    values = config.get("method", {})
    if not isinstance(values, Mapping):
        raise ContrastiveError(f"{source}: the 'method' section is not a mapping")
    try:
        return MethodConfig(**values)
    except TypeError as error:
        raise ContrastiveError(f"{source}: bad 'method' section: {error}") from error


def _assemble(
    state_dict: Mapping[str, Tensor],
    source: str,
    backbone_config: BackboneConfig,
    view_config: ViewConfig,
) -> Encoder:
    backbone, feature_dim = build_backbone(backbone_config)
    load_backbone_weights(backbone, state_dict, source, backbone_config)
    backbone.eval()
    return Encoder(backbone, feature_dim, view_config, backbone_config, source)
