"""Starting weights: torchvision/timm state_dicts, run folders and Lightning checkpoints load
into a backbone strictly (classifier ignored), and bad files fail in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from contrastive.backbone_config import BackboneConfig
from contrastive.backbones import build_backbone, remove_classifier
from contrastive.encoder import (
    init_backbone_weights,
    load_encoder,
    read_backbone_weights,
    small_stem_of_weights,
)
from contrastive.errors import ContrastiveError
from contrastive.views.config import ViewConfig


def imagenet_style_file(tmp_path: Path, name: str = "resnet18") -> tuple[Path, nn.Module]:
    """A plain torchvision model's full state_dict (classifier included), as downloaded."""
    torch.manual_seed(3)
    plain = torchvision.models.get_model(name)
    path = tmp_path / f"{name}_imagenet.pth"
    torch.save(plain.state_dict(), path)
    return path, plain


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
def test_torchvision_state_dict_loads_and_gives_the_plain_models_features(
    tmp_path: Path, name: str
) -> None:
    path, plain = imagenet_style_file(tmp_path, name)
    backbone, _ = build_backbone(BackboneConfig(name))
    report = init_backbone_weights(backbone, path)
    assert "ignored the classifier" in report
    assert "missing" not in report and "\n" not in report
    remove_classifier(plain)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(backbone.eval()(images), plain.eval()(images))


def test_lightning_checkpoint_and_run_folder_give_the_backbone(tmp_path: Path) -> None:
    source, _ = build_backbone(BackboneConfig("resnet18_quarter"))
    weights = source.state_dict()
    checkpoint = {
        "state_dict": {
            **{f"backbone.{k}": v for k, v in weights.items()},
            "projection_head.layer.weight": torch.zeros(3, 3),
        },
        "hyper_parameters": {"config": {}},
    }
    torch.save(checkpoint, tmp_path / "last.ckpt")
    run = tmp_path / "run"
    run.mkdir()
    torch.save(weights, run / "backbone.pt")
    for file in (tmp_path / "last.ckpt", run, run / "backbone.pt"):
        loaded = read_backbone_weights(file)
        assert loaded.keys() == weights.keys()
        assert all(torch.equal(loaded[key], weights[key]) for key in weights)


def test_shape_mismatch_is_refused_naming_the_tensor(tmp_path: Path) -> None:
    path, _ = imagenet_style_file(tmp_path)
    small_stem, _ = build_backbone(BackboneConfig("resnet18", small_image_stem=True))
    with pytest.raises(ContrastiveError, match=r"conv1\.weight: file \(64, 3, 7, 7\)") as error:
        init_backbone_weights(small_stem, path, strict=False)
    assert "\n" not in str(error.value)


def test_missing_keys_fail_strictly_and_are_reported_otherwise(tmp_path: Path) -> None:
    backbone, _ = build_backbone(BackboneConfig("resnet18_quarter"))
    weights = backbone.state_dict()
    del weights["layer4.1.bn2.weight"]
    weights["extra.weight"] = torch.zeros(2)
    torch.save(weights, tmp_path / "partial.pt")
    with pytest.raises(ContrastiveError, match=r"1 missing key.*layer4\.1\.bn2\.weight.*extra"):
        init_backbone_weights(backbone, tmp_path / "partial.pt")
    fresh, _ = build_backbone(BackboneConfig("resnet18_quarter"))
    report = init_backbone_weights(fresh, tmp_path / "partial.pt", strict=False)
    assert "1 missing key(s)" in report and "1 unexpected key(s)" in report
    assert torch.equal(fresh.conv1.weight, backbone.conv1.weight)


def test_timm_state_dict_loads(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm", reason="the timm extra is not installed")
    plain = timm.create_model("resnet18", pretrained=False)  # with its classifier
    torch.save(plain.state_dict(), tmp_path / "timm.pth")
    backbone, _ = build_backbone(BackboneConfig("timm:resnet18"))
    assert "ignored the classifier (fc.weight, fc.bias)" in init_backbone_weights(
        backbone, tmp_path / "timm.pth"
    )
    assert torch.equal(backbone.conv1.weight, plain.conv1.weight)


def test_imagenet_file_is_a_reference_encoder(tmp_path: Path) -> None:
    path, plain = imagenet_style_file(tmp_path)
    encoder = load_encoder(path, BackboneConfig("resnet18"), ViewConfig(input_size=64))
    assert torch.equal(encoder.backbone.conv1.weight, plain.conv1.weight)
    assert encoder.feature_dim == 512


def test_the_stem_is_read_off_the_first_convolution(tmp_path: Path) -> None:
    imagenet, _ = imagenet_style_file(tmp_path)
    small, _ = build_backbone(BackboneConfig("resnet18_quarter", small_image_stem=True))
    torch.save(small.state_dict(), tmp_path / "small.pt")
    mobilenet, _ = imagenet_style_file(tmp_path, "mobilenet_v3_small")
    assert small_stem_of_weights(imagenet) is False
    assert small_stem_of_weights(tmp_path / "small.pt") is True
    assert small_stem_of_weights(mobilenet) is None


def test_foreign_weights_bring_their_stem_unless_one_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from contrastive.cli import build_parser
    from contrastive.cli.train import _recipe_config, config_from_args

    imagenet, _ = imagenet_style_file(tmp_path)
    monkeypatch.chdir(tmp_path)

    def config(*flags: str):
        args = build_parser().parse_args(["train", "--data", "x", *flags])
        return config_from_args(args, base=_recipe_config(args))

    # The budget recipe's 3x3 stem made ImageNet weights fail on conv1's shape.
    budget = ("--time-budget", "1m", "--backbone", "resnet18", "--init-weights", str(imagenet))
    assert config(*budget).backbone == BackboneConfig("resnet18")
    given = config(*budget, "--small-image-stem").backbone
    assert given.small_image_stem  # the user's flag wins (and the load then names conv1)
    assert config("--time-budget", "1m").backbone.small_image_stem  # no weights: the recipe's
    # The default recipe's ImageNet stem: 3x3-stem weights bring theirs.
    small, _ = build_backbone(BackboneConfig("resnet18", small_image_stem=True))
    torch.save(small.state_dict(), tmp_path / "cifar.pt")
    assert config("--init-weights", "cifar.pt").backbone.small_image_stem


def test_lightly_example_checkpoint_starts_a_run_with_its_weights_and_stem(
    tmp_path: Path,
) -> None:
    # Lightly's examples train nn.Sequential(*list(resnet.children())[:-1]) as `backbone`.
    torch.manual_seed(4)
    plain = torchvision.models.resnet18()
    sequential = nn.Sequential(*list(plain.children())[:-1])
    checkpoint = tmp_path / "lightly.ckpt"
    state = {f"backbone.{key}": value for key, value in sequential.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {}}, checkpoint)
    assert small_stem_of_weights(checkpoint) is False
    backbone, _ = build_backbone(BackboneConfig("resnet18"))
    report = init_backbone_weights(backbone, checkpoint)
    assert "missing" not in report and "unexpected" not in report
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(backbone.eval()(images), sequential.eval()(images).flatten(1))


def test_an_init_weights_prefix_picks_moco_v2s_query_encoder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from contrastive.cli import build_parser
    from contrastive.cli.train import _recipe_config, config_from_args

    torch.manual_seed(5)
    query, key = torchvision.models.resnet18(), torchvision.models.resnet18()
    state = {f"module.encoder_q.{k}": v for k, v in query.state_dict().items()}
    state.update({f"module.encoder_k.{k}": v for k, v in key.state_dict().items()})
    state["module.queue"] = torch.zeros(128, 16)
    moco = tmp_path / "moco_v2.pth.tar"
    torch.save({"state_dict": state, "epoch": 200}, moco)
    backbone, _ = build_backbone(BackboneConfig("resnet18"))
    with pytest.raises(
        ContrastiveError, match=r"under encoder_k\., encoder_q\.: .*--init-weights-prefix"
    ):
        init_backbone_weights(backbone, moco)
    report = init_backbone_weights(backbone, moco, weights_prefix="encoder_q.")
    assert "missing" not in report and "unexpected" not in report
    assert torch.equal(backbone.conv1.weight, query.conv1.weight)
    # The flag reaches the config, and the stem is read off the picked network (7x7).
    monkeypatch.chdir(tmp_path)
    flags = ["train", "--data", "x", "--time-budget", "1m", "--backbone", "resnet18"]
    flags += ["--init-weights", str(moco), "--init-weights-prefix", "encoder_q."]
    args = build_parser().parse_args(flags)
    config = config_from_args(args, base=_recipe_config(args))
    assert config.init_weights_prefix == "encoder_q."
    assert config.backbone == BackboneConfig("resnet18")
