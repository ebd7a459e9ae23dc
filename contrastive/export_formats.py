"""What ``contrastive export`` writes: the formats, their file suffixes and the ONNX opsets.

Apart from :mod:`contrastive.export`, which imports torch, so that ``export --help`` and
the checks of its flags answer without it.
"""

from __future__ import annotations

from contrastive.errors import ContrastiveError

EXPORT_FORMATS = ("onnx", "torchscript", "state_dict")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "state_dict": ".pt"}

#: ONNX opsets the exporter writes (torch's TorchScript-based exporter stops at 20; a
#: ResNet exports at 9, checked at 9 and 11; another network may need a newer opset, and its
#: failure names the layer). None: torch's default.
ONNX_OPSETS = range(9, 21)


def check_opset(opset: int | None, export_format: str) -> None:
    """Refuses an opset the exporter does not write, or one given for another format.

    Raises:
        ContrastiveError: Naming the accepted opsets.
    """
    if opset is None:
        return
    if export_format != "onnx":
        raise ContrastiveError(f"--opset applies to --format onnx, not {export_format}")
    if opset not in ONNX_OPSETS:
        raise ContrastiveError(
            f"--opset {opset}: the exporter writes opsets {ONNX_OPSETS.start}-"
            f"{ONNX_OPSETS.stop - 1}"
        )
