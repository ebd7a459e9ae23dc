"""``contrastive export``: ONNX / TorchScript / state_dict files that give the PyTorch
backbone's features on real images (1e-4 in fp32), at any batch size."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch import nn

from contrastive.backbones import BackboneConfig, build_backbone
from contrastive.cli import main
from contrastive.encoder import Encoder, load_encoder
from contrastive.errors import ContrastiveError
from contrastive.export import export_backbone, load_check_images
from contrastive.training.config import TrainConfig
from contrastive.views.config import ViewConfig

BACKBONE = BackboneConfig("resnet18_quarter", small_image_stem=True)
# Normalisation other than the default, so folding it in is really checked.
VIEWS = ViewConfig(input_size=32, mean=(0.3, 0.4, 0.5), std=(0.2, 0.25, 0.3))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder: config.yaml naming 6 real (random-pixel PNG) images, backbone.pt."""
    root = tmp_path_factory.mktemp("export")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for index in range(6):
        pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"{index}.png")
    run = root / "run"
    run.mkdir()
    config = TrainConfig(data=str(images), out=str(run), views=VIEWS, backbone=BACKBONE)
    (run / "config.yaml").write_text(yaml.safe_dump(config.to_dict()), encoding="utf-8")
    torch.manual_seed(0)
    backbone, _ = build_backbone(BACKBONE)
    with torch.no_grad():  # trained-looking batch-norm statistics
        for module in backbone.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    torch.save(backbone.state_dict(), run / "backbone.pt")
    return run


CASES = [
    ("onnx", False),
    ("onnx", True),
    ("torchscript", False),
    ("torchscript", True),
    ("state_dict", False),
]


@pytest.mark.parametrize(("export_format", "fold"), CASES)
def test_export_matches_pytorch_features(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, export_format: str, fold: bool
) -> None:
    if export_format == "onnx":
        pytest.importorskip("onnxruntime", reason="the export extra is not installed")
    out = tmp_path / f"model.{export_format}"
    args = ["export", str(run_dir), "--format", export_format, "--out", str(out)]
    assert main([*args, "--input-size", "32", *(["--fold-normalization"] if fold else [])]) == 0
    printed = capsys.readouterr().out
    difference = float(re.search(r"max abs difference (\S+)", printed).group(1))
    assert difference < 1e-4, printed
    assert "checked on 5 images" in printed
    # What a deployment must do to its images, which the file alone does not say.
    mean = ", ".join(f"{value:.4f}" for value in VIEWS.mean)
    assert (
        "preprocessing: resize the short side to 32 px, centre-crop 32 px, RGB in [0, 1]" in printed
    )
    assert f"mean ({mean})" in printed and ("the file subtracts" in printed) == fold

    # The file alone, at a batch size never traced, gives the backbone's features.
    encoder = load_encoder(run_dir)
    images = load_check_images(sorted((run_dir.parent / "images").glob("*.png")), 32)
    mean, std = torch.tensor(VIEWS.mean).view(1, 3, 1, 1), torch.tensor(VIEWS.std).view(1, 3, 1, 1)
    normalized = (images - mean) / std
    with torch.no_grad():
        expected = encoder.backbone(normalized)
    inputs = images if fold else normalized
    if export_format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        actual = torch.from_numpy(session.run(None, {"images": inputs.numpy()})[0])
    elif export_format == "torchscript":
        actual = torch.jit.load(str(out))(inputs)
    else:
        rebuilt, _ = build_backbone(BACKBONE)
        rebuilt.load_state_dict(torch.load(out, weights_only=True))
        with torch.no_grad():
            actual = rebuilt.eval()(inputs)
    assert len(images) == 6
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=0)


def test_default_path_and_size_come_from_the_run_and_a_rerun_says_it_replaces(
    run_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    for _ in range(2):
        assert main(["export", str(run_dir), "--format", "torchscript"]) == 0
    assert (run_dir / "export" / "backbone.torchscript.pt").is_file()
    assert capsys.readouterr().out.count("replacing ") == 1


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--format", "torchscript", "--out", "m.onnx"], "does not fit --format torchscript"),
        (["--format", "onnx", "--out", "m.pt"], "name it \\*.onnx"),
        (["--input-size", "100000"], "--input-size 100000: give 8 to 4096 pixels"),
        (["--input-size", "4"], "--input-size 4: give 8 to 4096 pixels"),
    ],
)
def test_bad_outputs_and_sizes_are_refused_before_any_work(
    run_dir: Path, capsys: pytest.CaptureFixture, flags: list[str], message: str
) -> None:
    assert main(["export", str(run_dir), *flags]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_state_dict_refuses_folded_normalization(run_dir: Path, tmp_path: Path) -> None:
    encoder = load_encoder(run_dir)
    with pytest.raises(ContrastiveError, match="fold-normalization needs --format onnx"):
        export_backbone(encoder, tmp_path / "x.pt", "state_dict", torch.rand(2, 3, 32, 32), True)


class Eigenvalues(nn.Module):
    """An operator ONNX has no equivalent for."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        gram = features.flatten(1).T @ features.flatten(1)
        return torch.linalg.eigh(gram)[0][None].expand(features.shape[0], -1)


def test_unexportable_layer_is_named(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="the export extra is not installed")
    backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.ReLU(), Eigenvalues()))
    encoder = Encoder(backbone, 4, VIEWS, BACKBONE, "test")
    with pytest.raises(ContrastiveError, match=r"layer 1\.1 \(Eigenvalues\).*linalg_eigh") as error:
        export_backbone(encoder, tmp_path / "x.onnx", "onnx", torch.rand(3, 3, 16, 16))
    assert "\n" not in str(error.value)


def test_missing_check_images_are_one_line(tmp_path: Path) -> None:
    from contrastive.cli.export import _training_data

    with pytest.raises(ContrastiveError, match="give --images DIR"):
        _training_data(tmp_path)


def test_check_images_pass_over_files_that_do_not_decode(tmp_path: Path) -> None:
    (tmp_path / "._a.png").write_bytes(b"Mac OS X metadata")
    (tmp_path / "b.png").write_bytes(b"")
    for name in ("c.png", "d.png", "e.png"):
        Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / name)
    paths = sorted(tmp_path.iterdir())
    images = load_check_images(paths, 16, count=2)
    assert images.shape == (2, 3, 16, 16)
    assert images[:, 0].min() > 0.7 and images[:, 1].max() < 0.1  # red, as written
    with pytest.raises(ContrastiveError, match=r"no readable image .*\._a\.png"):
        load_check_images(paths[:2], 16)


def test_a_folder_that_cannot_be_made_is_one_line(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # /proc/nope/bb.onnx passes the early check as root (os.access says /proc is writable)
    # and failed in mkdir with a 20-line traceback.
    def refuse(self: Path, *args: object, **kwargs: object) -> None:
        raise FileNotFoundError(2, "No such file or directory", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    out = tmp_path / "nope" / "bb.pt"
    with pytest.raises(ContrastiveError, match=r"^cannot write .*bb\.pt: No such file or dir"):
        export_backbone(load_encoder(run_dir), out, "torchscript", torch.rand(2, 3, 32, 32))
