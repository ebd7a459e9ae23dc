"""Export a trained backbone for deployment (ONNX, TorchScript, plain ``state_dict``), checked.

Every export is verified before it is reported: the written file is loaded back
(onnxruntime, ``torch.jit.load``, or a freshly built backbone) and run on a few real images
at a batch size other than the one traced, and its features are compared with the PyTorch
backbone's (:attr:`ExportResult.max_abs_difference`). The batch dimension is dynamic.

With ``fold_normalization`` the exported model takes RGB images scaled to ``[0, 1]`` and
normalises them itself (the run's mean/std become its first operation), so a deployment
does not need to know them.

Every export carries its deployment card (:func:`deployment_card`): the preprocessing that
gives the features ``contrastive embed --full-decode`` gives, the input and output, and the
weights it came from. It is written beside the file (``backbone.onnx.json``) and inside it
where the format has room (ONNX ``metadata_props``, a TorchScript extra file), so that it
travels with a copied model.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import re
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torchvision.transforms.v2 as T
from torch import Tensor, nn

from contrastive.backbones import build_backbone, describe_architecture
from contrastive.data.folder import BIT_DEPTH_VARIABLE, integer_bit_depth, load_rgb
from contrastive.encoder import Encoder, evaluation_mode, load_backbone_weights
from contrastive.errors import ContrastiveError
from contrastive.export_formats import EXPORT_FORMATS, SUFFIXES, check_opset
from contrastive.files import write_text_atomic
from contrastive.views.config import ViewConfig
from contrastive.views.per_image import eval_transform, evaluation_resize

#: The deployment card's key in ONNX ``metadata_props`` and its TorchScript extra file.
CARD_NAME = "contrastive.json"

#: A model with the normalisation folded in is named apart: the two take different inputs.
FOLDED_STEM = "backbone.rgb01"

#: Where a run's exports go by default: ``RUN/export/``.
EXPORT_FOLDER = "export"

# Traced at this batch size and checked at another, so a batch size baked in is caught.
_TRACE_BATCH = 2


class NormalizedBackbone(nn.Module):
    """``backbone((images - mean) / std)`` for images in ``[0, 1]``: ``(B, 3, H, W) -> (B, D)``."""

    def __init__(self, backbone: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, images: Tensor) -> Tensor:
        return self.backbone((images - self.mean) / self.std).flatten(start_dim=1)


class _Features(nn.Module):
    """The backbone with its output flattened to ``(B, D)``."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, images: Tensor) -> Tensor:
        return self.backbone(images).flatten(start_dim=1)


@dataclass(frozen=True)
class ExportResult:
    """A written and verified export.

    Attributes:
        path: The written file.
        card_path: Its deployment card, written beside it (:func:`deployment_card`).
        card: That card's content.
        format: ``onnx``, ``torchscript`` or ``state_dict``.
        input_size: Side of the square input images in pixels.
        fold_normalization: Whether the file takes ``[0, 1]`` images (else normalised ones).
        num_images: Real images the check ran on.
        max_abs_difference: Largest absolute difference between the export's features and
            the PyTorch backbone's on those images.
    """

    path: Path
    card_path: Path
    card: dict
    format: str
    input_size: int
    fold_normalization: bool
    num_images: int
    max_abs_difference: float


def load_check_images(paths: Sequence[Path], input_size: int, count: int | None = None) -> Tensor:
    """The first ``count`` (None: all) readable images of ``paths``, resized and
    centre-cropped as at evaluation, RGB in ``[0, 1]``: ``(N, 3, S, S)``.

    Files that do not decode are passed over, as training passes over them.

    Raises:
        ContrastiveError: If none of ``paths`` decodes.
    """
    from contrastive.views.config import ViewConfig

    # The evaluation transform without its final normalisation.
    transform = T.Compose(eval_transform(ViewConfig(input_size=input_size)).transforms[:-1])
    images = []
    for path in paths:
        try:
            image = load_rgb(path)
        # PIL's plugins raise a wide, undocumented range of exceptions on malformed data.
        except Exception:  # noqa: BLE001
            continue
        images.append(transform(image))
        if len(images) == count:
            break
    if not images:
        where = f" ({paths[0]} and others)" if paths else ""
        raise ContrastiveError(f"no readable image to check the export on{where}")
    return torch.stack(images)


def export_backbone(
    encoder: Encoder,
    out: Path,
    export_format: str,
    check_images: Tensor,
    fold_normalization: bool = False,
    weights: Mapping[str, object] | None = None,
    opset: int | None = None,
) -> ExportResult:
    """Writes the encoder's backbone to ``out`` and verifies the file on ``check_images``.

    The deployment card goes beside the file (``out`` + ``.json``) and, for ONNX and
    TorchScript, inside it.

    Args:
        encoder: The trained encoder (its view config gives mean and std).
        out: The file to write.
        export_format: One of :data:`EXPORT_FORMATS`.
        check_images: ``(N, 3, S, S)`` RGB images in ``[0, 1]``; ``S`` is the export size.
        fold_normalization: Put the normalisation into the exported model.
        weights: Where the weights came from, recorded in the card (e.g. the checkpoint,
            its training step, whether the run had finished).
        opset: ONNX opset to write (older runtimes load only older opsets); None: torch's
            default. The file is checked with the installed onnxruntime either way.

    Raises:
        ContrastiveError: For an unknown format, a missing optional package, a layer that
            cannot be exported (named), or an unwritable file.
    """
    if export_format not in EXPORT_FORMATS:
        raise ContrastiveError(
            f"unknown export format {export_format!r}; choose one of {', '.join(EXPORT_FORMATS)}"
        )
    check_opset(opset, export_format)
    if fold_normalization and export_format == "state_dict":
        raise ContrastiveError(
            "--fold-normalization needs --format onnx or torchscript (a state_dict holds "
            "only the backbone's own weights)"
        )
    views = encoder.view_config
    normalized = (check_images - torch.tensor(views.mean).view(1, 3, 1, 1)) / torch.tensor(
        views.std
    ).view(1, 3, 1, 1)
    inputs = check_images if fold_normalization else normalized
    model = (
        NormalizedBackbone(encoder.backbone, views.mean, views.std)
        if fold_normalization
        else _Features(encoder.backbone)
    )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # e.g. a path under a file, or a system folder
        raise ContrastiveError(f"cannot write {out}: {error.strerror or error}") from None
    input_size = int(check_images.shape[-1])
    card = deployment_card(encoder, input_size, export_format, fold_normalization, weights)
    with evaluation_mode(model), torch.no_grad():
        model = model.float().to(memory_format=torch.contiguous_format)
        expected = _Features(encoder.backbone)(normalized)
        example = inputs[:_TRACE_BATCH]
        if export_format == "onnx":
            actual = _export_onnx(model, example, inputs, out, card, opset)
        elif export_format == "torchscript":
            actual = _export_torchscript(model, example, inputs, out, json.dumps(card, indent=2))
        else:
            actual = _export_state_dict(encoder, normalized, out)
    max_abs_difference = float((actual - expected).abs().max())
    card["check"] = {
        "images": len(check_images),
        "max_abs_difference_vs_pytorch": max_abs_difference,
    }
    card_path = out.with_name(out.name + ".json")
    write_text_atomic(card_path, json.dumps(card, indent=2) + "\n")
    return ExportResult(
        path=out,
        card_path=card_path,
        card=card,
        format=export_format,
        input_size=input_size,
        fold_normalization=fold_normalization,
        num_images=len(check_images),
        max_abs_difference=max_abs_difference,
    )


def preprocessing_steps(views: ViewConfig, input_size: int, folded: bool) -> list[str]:
    """What a deployment does to an image file to give the export the input ``contrastive
    embed --full-decode`` gives the backbone (the run's evaluation transform), in order."""
    resize = evaluation_resize(replace(views, eval_input_size=input_size))
    depth = integer_bit_depth()
    mean = ", ".join(repr(float(value)) for value in views.mean)
    std = ", ".join(repr(float(value)) for value in views.std)
    crop = (
        f"centre-crop {input_size} x {input_size} px (top = round((height - {input_size}) / 2), "
        "left likewise: torchvision's CenterCrop)"
    )
    normalise = (
        f"nothing more: the model subtracts mean ({mean}) and divides by std ({std}) itself"
        if folded
        else f"subtract mean ({mean}) and divide by std ({std}), per channel"
    )
    return [
        "decode the file and apply its EXIF orientation (PIL.ImageOps.exif_transpose)",
        "make it 8-bit RGB: transparent pixels composited onto white; integer images of more "
        "than 8 bits (values up to 65535) scaled by v * 255 / (2**bits - 1), bits the "
        "smallest of 8, 10, 12, 14, 16 that holds the image's maximum"
        + (f" (here fixed at {depth} bits by {BIT_DEPTH_VARIABLE})" if depth else "")
        + "; float images with values in [0, 1] scaled by 255; any other range stretched "
        "from the image's minimum to its maximum (NaN as 0); then rounded to 8 bits",
        f"resize the short side to {resize} px, the long side to int(long * {resize} / short) "
        "(truncated), bilinear with antialiasing: PIL's Image.resize(size, "
        "Image.Resampling.BILINEAR), as torchvision's Resize does on a PIL image",
        crop,
        "to float32 in [0, 1] (divide by 255), channels first: (batch, 3, height, width), RGB",
        normalise,
    ]


def deployment_card(
    encoder: Encoder,
    input_size: int,
    export_format: str,
    fold_normalization: bool,
    weights: Mapping[str, object] | None = None,
) -> dict:
    """What a service needs to use an export without ``contrastive``: preprocessing, input,
    output, architecture and where the weights came from (JSON-ready)."""
    from contrastive import __version__

    views = encoder.view_config
    backbone = encoder.backbone_config
    return {
        "format": export_format,
        "input": {
            "name": "images",
            "shape": ["batch", 3, input_size, input_size]
            if export_format == "onnx"
            else ["batch", 3, "height", "width"],
            "dtype": "float32",
            "channels": "RGB",
            "values": "RGB in [0, 1]" if fold_normalization else "normalised (see preprocessing)",
        },
        "preprocessing": preprocessing_steps(views, input_size, fold_normalization),
        "mean": [float(value) for value in views.mean],
        "std": [float(value) for value in views.std],
        "normalization_in_model": fold_normalization,
        "resize_short_side": evaluation_resize(replace(views, eval_input_size=input_size)),
        "crop": input_size,
        "output": {
            "name": "features",
            "shape": ["batch", encoder.feature_dim],
            "l2_normalised": False,
            "note": "divide each row by its L2 norm before cosine similarity or kNN, as "
            "contrastive eval does",
        },
        # Needed for a state_dict only: ONNX and TorchScript files hold the network.
        "architecture": describe_architecture(backbone),
        "backbone_config": asdict(backbone),
        "weights": dict(weights or {"source": encoder.source}),
        "reference": f"contrastive embed --run RUN --full-decode --input-size {input_size} gives "
        "these features for the same files",
        "contrastive_version": __version__,
        "exported_at": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def _export_onnx(
    model: nn.Module, example: Tensor, inputs: Tensor, out: Path, card: dict, opset: int | None
) -> Tensor:
    """Writes and checks the ONNX file; the opset it was written at goes into ``card`` (then
    embedded in the file) as ``onnx_opset``."""
    missing = [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise ContrastiveError(
            f"--format onnx needs {' and '.join(missing)}: pip install 'contrastive[export]'"
        )
    import onnxruntime

    try:
        # The exporter prints its whole graph on failure; the error below says what matters.
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")  # tracer warnings about Python values
            # The TorchScript-based exporter: the dynamo one needs onnxscript, and these are
            # plain feed-forward networks it handles fully.
            torch.onnx.export(
                model,
                (example,),
                str(out),
                dynamo=False,
                input_names=["images"],
                output_names=["features"],
                dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}},
                **({} if opset is None else {"opset_version": opset}),
            )
    except Exception as error:  # noqa: BLE001 - any exporter failure is reported by layer
        raise _not_exportable("ONNX", model, example, error) from error
    import onnx

    proto = onnx.load(str(out))
    card["onnx_opset"] = next(
        entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx")
    )
    onnx.helper.set_model_props(proto, {CARD_NAME: json.dumps(card, indent=2)})
    onnx.save(proto, str(out))
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (features,) = session.run(["features"], {"images": inputs.numpy()})
    return torch.from_numpy(features)


def _export_torchscript(
    model: nn.Module, example: Tensor, inputs: Tensor, out: Path, card: str
) -> Tensor:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(model, example, check_trace=False)
        traced.save(str(out), _extra_files={CARD_NAME: card})
    except Exception as error:  # noqa: BLE001 - any tracer failure is reported by layer
        raise _not_exportable("TorchScript", model, example, error) from error
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "torch.jit.load is deprecated": it is the check here
        return torch.jit.load(str(out), map_location="cpu")(inputs)


def _export_state_dict(encoder: Encoder, normalized: Tensor, out: Path) -> Tensor:
    torch.save(encoder.backbone.state_dict(), out)
    # Checked by loading into a backbone built from the name alone, as a user would.
    rebuilt, _ = build_backbone(encoder.backbone_config)
    load_backbone_weights(
        rebuilt, torch.load(out, weights_only=True), str(out), encoder.backbone_config
    )
    return _Features(rebuilt.eval())(normalized)


def _not_exportable(
    what: str, model: nn.Module, example: Tensor, error: Exception
) -> ContrastiveError:
    """One line naming the layer that could not be exported, and why."""
    layer = _layer_running_during(model, example, error) or _layer_of_operator(
        model, example, error
    )
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    where = f"layer {layer}" if layer else "the backbone"
    return ContrastiveError(f"cannot export to {what}: {where}: {reason}")


def _describe_layer(model: nn.Module, name: str) -> str:
    """``name (Class)`` of a submodule, without the wrapper's ``backbone.`` prefix."""
    module = model.get_submodule(name)
    return f"{name.removeprefix('backbone.')} ({type(module).__name__})"


def _layer_running_during(model: nn.Module, example: Tensor, error: Exception) -> str | None:
    """The innermost module whose forward raises ``error``'s kind of error when traced."""
    stack: list[str] = []
    failed: list[str] = []

    def enter(name: str):  # noqa: ANN202 - a forward pre-hook
        return lambda *_: stack.append(name)

    def leave(*_: object) -> None:
        stack.pop()

    handles = []
    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_pre_hook(enter(name)))
            handles.append(module.register_forward_hook(leave))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.trace(model, example, check_trace=False)
    except Exception:  # noqa: BLE001 - the failure being located
        failed = list(stack)
    finally:
        for handle in handles:
            handle.remove()
    return _describe_layer(model, failed[-1]) if failed else None


def _layer_of_operator(model: nn.Module, example: Tensor, error: Exception) -> str | None:
    """The module holding the operator an exporter refused (``'aten::name'`` in the error)."""
    operator = re.search(r"'(\w+::\w+)'", str(error))
    if not operator:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = torch.jit.trace(model, example, check_trace=False).inlined_graph
    for node in graph.nodes():
        if node.kind() == operator.group(1):
            scope = node.scopeName().rpartition("/")[2].removeprefix("__module.")
            return _describe_layer(model, scope) if scope else None
    return None


def default_export_path(source: Path, export_format: str, fold_normalization: bool = False) -> Path:
    """``RUN/export/backbone<suffix>`` (next to a checkpoint file's folder for a ``.ckpt``);
    ``backbone.rgb01<suffix>`` for a model that takes RGB in ``[0, 1]``."""
    run_dir = source if source.is_dir() else source.parent
    stem = FOLDED_STEM if fold_normalization else "backbone"
    return run_dir / EXPORT_FOLDER / f"{stem}{SUFFIXES[export_format]}"
