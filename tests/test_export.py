"""``contrastive export``: ONNX / TorchScript / state_dict files that give the PyTorch
backbone's features on real images (1e-4 in fp32), at any batch size."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch import nn

from contrastive.backbone_config import BackboneConfig
from contrastive.backbones import build_backbone
from contrastive.cli import main
from contrastive.encoder import Encoder, load_encoder
from contrastive.errors import ContrastiveError
from contrastive.export import CARD_NAME, export_backbone, load_check_images
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
    # What a deployment must do to its images, printed and in the card beside the file.
    assert "resize the short side to 32 px, the long side to int(long * 32 / short)" in printed
    assert "centre-crop 32 x 32 px" in printed and "EXIF orientation" in printed
    assert "mean (0.3, 0.4, 0.5)" in printed and ("the model subtracts" in printed) == fold
    card = json.loads(out.with_name(out.name + ".json").read_text())
    assert card["normalization_in_model"] == fold and card["mean"] == list(VIEWS.mean)
    assert (card["resize_short_side"], card["crop"]) == (32, 32)
    assert card["output"] == {**card["output"], "shape": ["batch", 128], "l2_normalised": False}
    assert card["weights"]["run"] == str(run_dir) and card["weights"]["run_finished"]
    assert card["check"]["max_abs_difference_vs_pytorch"] == pytest.approx(difference, rel=0.1)
    assert card["backbone_config"]["name"] == "resnet18_quarter"
    # ... and inside the file where the format has room, so that it travels with a copy.
    if export_format == "onnx":
        import onnx

        inside = {prop.key: prop.value for prop in onnx.load(str(out)).metadata_props}
    elif export_format == "torchscript":
        inside = {CARD_NAME: ""}
        torch.jit.load(str(out), _extra_files=inside)
    if export_format != "state_dict":
        assert json.loads(inside[CARD_NAME])["preprocessing"] == card["preprocessing"]

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
    # The second as embed, eval and curate name the run (before: "unrecognized --run").
    for run in ([str(run_dir)], ["--run", str(run_dir)]):
        assert main(["export", *run, "--format", "torchscript"]) == 0
    assert (run_dir / "export" / "backbone.torchscript.pt").is_file()
    assert capsys.readouterr().out.count("(replaced the previous file)") == 1
    # A model that takes RGB in [0, 1] does not replace the one that takes normalised images.
    assert main(["export", str(run_dir), "--format", "torchscript", "--fold-normalization"]) == 0
    assert "replaced" not in capsys.readouterr().out
    card = json.loads((run_dir / "export" / "backbone.rgb01.torchscript.pt.json").read_text())
    assert card["normalization_in_model"] and card["input"]["values"] == "RGB in [0, 1]"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--format", "torchscript", "--out", "m.onnx"], "does not fit --format torchscript"),
        (["--format", "onnx", "--out", "m.pt"], "name it \\*.onnx"),
        (["--input-size", "100000"], "--input-size 100000: give 8 to 4096 pixels"),
        (["--input-size", "4"], "--input-size 4: give 8 to 4096 pixels"),
        (["--input-size", "0"], "--input-size 0: give 8 to 4096 pixels"),
        (["--opset", "5"], "--opset 5: the exporter writes opsets 9-20"),
        (["--opset", "21"], "--opset 21: the exporter writes opsets 9-20"),
        (["--format", "torchscript", "--opset", "17"], "applies to --format onnx, not torch"),
    ],
)
def test_bad_outputs_and_sizes_are_refused_before_any_work(
    run_dir: Path, capsys: pytest.CaptureFixture, flags: list[str], message: str
) -> None:
    assert main(["export", str(run_dir), *flags]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_an_older_opset_is_written_checked_and_recorded(run_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="the export extra is not installed")
    import onnx

    for opset, name in ((None, "default.onnx"), (13, "old.onnx")):
        out = tmp_path / name
        assert main(["export", str(run_dir), "--out", str(out), "--input-size", "32",
                     *(["--opset", str(opset)] if opset else [])]) == 0  # fmt: skip
        proto = onnx.load(str(out))
        written = next(entry.version for entry in proto.opset_import if entry.domain == "")
        inside = json.loads({prop.key: prop.value for prop in proto.metadata_props}[CARD_NAME])
        beside = json.loads(out.with_name(out.name + ".json").read_text())
        assert inside["onnx_opset"] == beside["onnx_opset"] == written
        assert beside["check"]["max_abs_difference_vs_pytorch"] < 1e-4
    assert written == 13


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


def test_an_export_given_as_weights_is_named(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["export", str(run_dir), "--format", "torchscript"]) == 0
    exported = run_dir / "export" / "backbone.torchscript.pt"
    for source in (exported, exported.with_suffix(".onnx")):
        source.touch()
        assert main(["export", str(source), "--images", str(run_dir.parent / "images")]) == 2
        error = capsys.readouterr().err
        kind = "TorchScript" if source == exported else "ONNX"
        assert f"is a{'n' if kind == 'ONNX' else ''} {kind} model (what contrastive export" in error
        assert "Traceback" not in error and "weights_only" not in error


def test_a_run_still_training_is_exported_with_its_step_named(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from contrastive.training.run_lock import training_holder

    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        out = tmp_path / "live.onnx"
        with caplog.at_level(logging.WARNING):
            assert main(["export", str(run_dir), "--out", str(out), "--format", "onnx"]) == 0
        assert f"is still being trained by process {holder.pid}" in caplog.text
        assert "--resume" not in caplog.text + capsys.readouterr().err
        weights = json.loads(out.with_name("live.onnx.json").read_text())["weights"]
        assert weights["training_now"].startswith(f"process {holder.pid} ")
        assert weights["run_finished"] is False
        assert training_holder(run_dir) is not None  # looking did not release the lock
    finally:
        holder.communicate("")
    assert training_holder(run_dir) is None


# Holds a run folder's lock, as a training does, until its stdin closes.
HOLDER = """
import sys
from pathlib import Path
from contrastive.training.run_lock import hold_run_folder
with hold_run_folder(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.read()
"""


def _readme_deployment_code() -> dict:
    """The README's ``preprocess`` / ``embed`` block, executed: the code users copy."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
    (code,) = [block for block in blocks if "def preprocess(path, card)" in block]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    return namespace


def _awkward_images(folder: Path) -> list[Path]:
    """Files whose decoding differs from a plain ``Image.open(p).convert("RGB")``."""
    from PIL import PngImagePlugin  # noqa: F401 - registers the 16-bit PNG writer

    folder.mkdir()
    rng = np.random.default_rng(1)
    photo = rng.integers(0, 256, (150, 200, 3), dtype=np.uint8)
    photo[:40, :60] = (250, 20, 20)  # a corner that shows a rotation
    sideways = Image.fromarray(photo)
    exif = sideways.getexif()
    exif[0x0112] = 6  # EXIF orientation: rotate 90 degrees on display
    sideways.save(folder / "sideways.jpg", exif=exif, quality=95)
    Image.fromarray(photo).save(folder / "wide.png")
    rgba = np.dstack([photo[:120, :90], np.tile(np.linspace(0, 255, 90), (120, 1))])
    Image.fromarray(rgba.astype(np.uint8)).save(folder / "transparent.png")
    twelve_bit = (rng.random((70, 50)) * 4095).astype(np.uint16)
    Image.fromarray(twelve_bit).save(folder / "sensor.png")
    palette = Image.fromarray(photo[:64, :64]).convert("P", palette=Image.Palette.ADAPTIVE)
    palette.info["transparency"] = 0
    palette.save(folder / "palette.png", transparency=0)
    Image.fromarray(photo[:, :, 0]).save(folder / "gray.png")
    Image.fromarray(rng.random((40, 60)).astype(np.float32)).save(folder / "unit.tif")
    outside = (rng.random((40, 60)) * 7 - 2).astype(np.float32)
    outside[0, 0] = np.nan
    Image.fromarray(outside).save(folder / "outside.tif")
    wide_range = (rng.random((50, 40)) * 200_000).astype(np.int32)
    Image.fromarray(wide_range).save(folder / "wide_range.tif")
    return sorted(folder.iterdir())


@pytest.mark.parametrize("size", [32, 72])
def test_the_readme_preprocessing_is_the_package_s(tmp_path: Path, size: int) -> None:
    from contrastive.data.folder import load_rgb
    from contrastive.export import deployment_card
    from contrastive.views.per_image import eval_transform

    views = ViewConfig(input_size=size, mean=VIEWS.mean, std=VIEWS.std)
    backbone, dim = build_backbone(BACKBONE)
    card = deployment_card(Encoder(backbone, dim, views, BACKBONE, "test"), size, "onnx", False)
    preprocess = _readme_deployment_code()["preprocess"]
    transform = eval_transform(views)
    for path in _awkward_images(tmp_path / "images"):
        expected = transform(load_rgb(path)).numpy()
        actual = preprocess(path, card)
        assert actual.shape == (3, size, size) and actual.dtype == np.float32, path.name
        np.testing.assert_allclose(actual, expected, atol=1e-6, rtol=0, err_msg=path.name)
    assert card["resize_short_side"] == (size if size < 64 else round(size / 0.875))


def test_the_readme_embed_gives_the_encoder_s_features(run_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="the export extra is not installed")
    out = tmp_path / "model.onnx"
    assert main(["export", str(run_dir), "--out", str(out), "--fold-normalization"]) == 0
    paths = _awkward_images(tmp_path / "images")
    features = _readme_deployment_code()["embed"](str(out), paths)
    expected = load_encoder(run_dir).embed(paths)
    expected = expected / expected.norm(dim=1, keepdim=True)
    np.testing.assert_allclose(features, expected.numpy(), atol=1e-5, rtol=0)


def test_weights_of_another_tool_are_exported_with_the_flags_embed_takes(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    weights = tmp_path / "plain.pt"
    torch.save(torch.load(run_dir / "backbone.pt", weights_only=True), weights)
    images = str(run_dir.parent / "images")
    assert main(["export", str(weights), "--images", images]) == 2
    assert "give --backbone and --input-size" in capsys.readouterr().err
    out = tmp_path / "plain.onnx"
    flags = ["--backbone", "resnet18_quarter", "--small-image-stem", "--input-size", "32"]
    assert main(["export", str(weights), *flags, "--images", images, "--out", str(out)]) == 0
    card = json.loads(out.with_name("plain.onnx.json").read_text())
    assert card["backbone_config"]["small_image_stem"] and card["mean"] == [0.485, 0.456, 0.406]
    # A run's own backbone.pt finds its training images through the config.yaml beside it.
    assert main(["export", str(run_dir / "backbone.pt"), "--out", str(tmp_path / "b.onnx")]) == 0
    assert f"images from {images}" in capsys.readouterr().out


def test_a_stride_2_stem_and_a_non_number_normalisation_are_read_as_given(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    images = run_dir.parent / "images"
    config = BackboneConfig("resnet10_quarter", small_image_stem=True, stem_stride=2)
    backbone, _ = build_backbone(config)
    weights = tmp_path / "strided.pt"
    torch.save(backbone.state_dict(), weights)
    flags = ["--backbone", "resnet10_quarter", "--small-image-stem", "--input-size", "32"]
    common = [str(weights), *flags, "--images", str(images)]
    out = tmp_path / "strided.onnx"
    assert main(["export", *common, "--stem-stride", "2", "--out", str(out)]) == 0
    assert json.loads(out.with_name("strided.onnx.json").read_text())["backbone_config"] == {
        "name": "resnet10_quarter",
        "small_image_stem": True,
        "stem_stride": 2,
    }
    # NaN passed every range check, and every feature came out NaN (the check "passed").
    assert main(["export", *common, "--stem-stride", "2", "--mean", "nan", "0.5", "0.5"]) == 2
    assert "must be finite numbers" in capsys.readouterr().err
