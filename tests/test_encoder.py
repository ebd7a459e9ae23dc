"""Loading encoders from run folders, Lightning checkpoints and plain state_dicts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from lightly.models.modules import SimCLRProjectionHead
from torch import nn

from contrastive.backbone_config import BackboneConfig
from contrastive.backbones import build_backbone
from contrastive.encoder import (
    evaluation_mode,
    feature_extractor,
    load_encoder,
    random_init_encoder,
)
from contrastive.errors import ContrastiveError
from contrastive.losses import LossConfig
from contrastive.methods import MethodConfig, build_method
from contrastive.views.config import ViewConfig, view_preset

BACKBONE = BackboneConfig("resnet18_quarter", small_image_stem=True)
VIEWS = view_preset("cifar")


def config_dict() -> dict:
    return {
        "views": VIEWS.to_dict(),
        "method": {"name": "simclr"},
        "backbone": {"name": BACKBONE.name, "small_image_stem": BACKBONE.small_image_stem},
    }


def trained_backbone(seed: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    backbone, _ = build_backbone(BACKBONE)
    # Distinct running statistics, as after training, so loading them is visible.
    for module in backbone.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    return backbone


def write_checkpoint(path: Path, backbone: nn.Module, head: nn.Module | None) -> None:
    state = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    if head is not None:
        state.update({f"projection_head.{k}": v for k, v in head.state_dict().items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"state_dict": state, "hyper_parameters": {"config": config_dict()}, "epoch": 3}, path
    )


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(config_dict()))
    torch.save(trained_backbone().state_dict(), run / "backbone.pt")
    return run


def same_weights(first: nn.Module, second: nn.Module) -> bool:
    return all(
        torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values())
    )


def test_run_folder_gives_weights_and_configs(run_dir: Path) -> None:
    encoder = load_encoder(run_dir)
    assert same_weights(encoder.backbone, trained_backbone())
    assert encoder.view_config == VIEWS and encoder.backbone_config == BACKBONE
    assert encoder.feature_dim == 128 and not encoder.backbone.training
    assert encoder.source == str(run_dir.absolute())
    assert encoder.projection_head is None


def test_run_folder_without_backbone_pt_uses_last_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(config_dict()))
    write_checkpoint(run / "checkpoints" / "last.ckpt", trained_backbone(), None)
    assert same_weights(load_encoder(run).backbone, trained_backbone())


@pytest.mark.parametrize("method", ["simclr", "moco"])
def test_checkpoint_projection_head_is_rebuilt_from_the_config(tmp_path: Path, method: str) -> None:
    # The checkpoint as training writes it: the whole method's weights and its config.
    config = {
        **config_dict(),
        "method": {"name": method, "projection_hidden_dim": 64, "projection_output_dim": 32},
    }
    torch.manual_seed(2)
    trained = build_method(MethodConfig(**config["method"]), LossConfig(), trained_backbone(), 128)
    for module in trained.projection_head.modules():
        if isinstance(module, nn.BatchNorm1d):
            module.running_mean.uniform_(-1, 1)
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": trained.state_dict(), "hyper_parameters": {"config": config}}, path)
    encoder = load_encoder(path, with_projection_head=True)
    assert type(encoder.projection_head) is type(trained.projection_head)
    images = torch.randn(4, 3, 32, 32)
    trained.eval()
    with torch.no_grad():
        expected = trained.projection_head(trained.backbone(images))
        assert torch.allclose(
            feature_extractor(encoder, projector=True)(images), expected, atol=1e-5
        )
        assert feature_extractor(encoder)(images).shape == (4, 128)


def test_head_that_does_not_fit_the_config_gives_one_line(tmp_path: Path) -> None:
    # The config says the default head (128 -> 128 -> 128); the weights are 128 -> 64 -> 32.
    write_checkpoint(tmp_path / "model.ckpt", trained_backbone(), SimCLRProjectionHead(128, 64, 32))
    with pytest.raises(ContrastiveError, match="does not fit the configured simclr head") as error:
        load_encoder(tmp_path / "model.ckpt", with_projection_head=True)
    assert "\n" not in str(error.value) and "model.ckpt" in str(error.value)
    # Without the head, the backbone still loads from the same file.
    assert same_weights(load_encoder(tmp_path / "model.ckpt").backbone, trained_backbone())


def test_plain_state_dict_needs_and_uses_given_configs(tmp_path: Path) -> None:
    weights = tmp_path / "weights.pt"
    torch.save(trained_backbone().state_dict(), weights)
    with pytest.raises(ContrastiveError, match="--backbone and --input-size"):
        load_encoder(weights)
    encoder = load_encoder(weights, BACKBONE, ViewConfig(input_size=32))
    assert same_weights(encoder.backbone, trained_backbone())


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (BackboneConfig("resnet18_quarter"), "1 shape mismatch"),
        (BackboneConfig("resnet18_half", small_image_stem=True), "shape mismatch"),
        (BackboneConfig("resnet34", small_image_stem=True), "missing"),
    ],
)
def test_weights_of_another_architecture_give_one_line(
    tmp_path: Path, config: BackboneConfig, message: str
) -> None:
    weights = tmp_path / "weights.pt"
    torch.save(trained_backbone().state_dict(), weights)
    with pytest.raises(ContrastiveError, match=message) as error:
        load_encoder(weights, config, ViewConfig(input_size=32))
    assert "\n" not in str(error.value)
    assert str(weights) in str(error.value) and config.name in str(error.value)


def test_projector_without_head_is_refused(run_dir: Path) -> None:
    with pytest.raises(ContrastiveError, match="projection head"):
        feature_extractor(load_encoder(run_dir), projector=True)
    with pytest.raises(ContrastiveError, match="last.ckpt"):
        load_encoder(run_dir, with_projection_head=True)


def test_not_a_run_folder(tmp_path: Path) -> None:
    with pytest.raises(ContrastiveError, match="config.yaml is missing"):
        load_encoder(tmp_path)


def test_a_mistyped_run_folder_is_not_called_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ContrastiveError, match="^no run folder or weights file at .*runs/R1 "):
        load_encoder(tmp_path / "runs" / "R1")


def test_a_file_of_the_run_points_to_the_run_folder(run_dir: Path) -> None:
    with pytest.raises(ContrastiveError, match=f"not weights: give the run folder \\({run_dir}\\)"):
        load_encoder(run_dir / "config.yaml")


def test_random_init_is_seeded_and_leaves_global_state(run_dir: Path) -> None:
    encoder = load_encoder(run_dir)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first, second = random_init_encoder(encoder, seed=0), random_init_encoder(encoder, seed=0)
    assert torch.equal(torch.get_rng_state(), state)
    assert same_weights(first.backbone, second.backbone)
    assert not same_weights(first.backbone, encoder.backbone)
    assert not same_weights(first.backbone, random_init_encoder(encoder, seed=1).backbone)
    assert first.view_config == encoder.view_config and "random init" in first.source


def test_evaluation_mode_restores_every_module_mode() -> None:
    model = nn.Sequential(nn.BatchNorm1d(2), nn.Sequential(nn.Dropout(), nn.BatchNorm1d(2)))
    model.train()
    model[1][1].eval()
    with evaluation_mode(model):
        assert not any(module.training for module in model.modules())
    assert [module.training for module in model.modules()] == [True, True, True, True, False]


def test_a_run_that_did_not_finish_is_loaded_with_a_warning(run_dir: Path, tmp_path: Path) -> None:
    import shutil
    import warnings

    from contrastive.encoder import RUN_BACKBONE, RUN_CHECKPOINT

    unfinished = tmp_path / "unfinished"
    shutil.copytree(run_dir, unfinished)
    # Interrupted before its first step: a checkpoint, no backbone.pt (written at the end).
    weights = torch.load(unfinished / RUN_BACKBONE)
    (unfinished / RUN_BACKBONE).unlink()
    (unfinished / RUN_CHECKPOINT).parent.mkdir()
    state_dict = {f"backbone.{name}": tensor for name, tensor in weights.items()}
    torch.save({"state_dict": state_dict, "global_step": 0}, unfinished / RUN_CHECKPOINT)
    with pytest.warns(UserWarning, match=r"did not finish training .*saved at step 0") as caught:
        load_encoder(unfinished)
    message = str(caught[0].message)
    assert "weights it started from" in message
    assert f"contrastive train --resume --out {unfinished}" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_encoder(run_dir)  # a finished run: no warning


def test_a_run_stopped_after_its_last_step_is_not_called_unfinished() -> None:
    from contrastive.encoder import unfinished_run_message

    run = Path("runs/r")
    done = unfinished_run_message(run, {"global_step": 42}, {"max_steps": 42})
    assert done.startswith("runs/r trained all its 42 steps but stopped before writing")
    assert "did not finish" not in done and "--resume --out runs/r" in done
    partway = unfinished_run_message(run, {"global_step": 12}, {"max_steps": 42})
    assert "did not finish training" in partway and "saved at step 12 of 42" in partway
    unknown = unfinished_run_message(run, {"global_step": 42}, {})
    assert "did not finish training" in unknown and "saved at step 42;" in unknown


def lightly_example_backbone(seed: int = 1) -> nn.Sequential:
    """The backbone of Lightly's example recipes: a ResNet's children without ``fc``."""
    return nn.Sequential(*list(trained_backbone(seed).children())[:-1])


def test_lightly_example_weights_load_as_the_resnet_they_came_from(tmp_path: Path) -> None:
    sequential = lightly_example_backbone()
    weights = tmp_path / "backbone.pt"
    torch.save(sequential.state_dict(), weights)  # keys 0.weight, 4.0.conv1.weight, ...
    encoder = load_encoder(weights, BACKBONE, ViewConfig(input_size=32))
    assert same_weights(encoder.backbone, trained_backbone())
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = sequential.eval()(images).flatten(1)
        assert torch.allclose(encoder.backbone(images), expected, atol=1e-5)


def test_a_lightning_checkpoint_of_another_tool_needs_and_uses_given_configs(
    tmp_path: Path,
) -> None:
    sequential = lightly_example_backbone()
    head = SimCLRProjectionHead(128, 128, 32)
    state = {f"backbone.{k}": v for k, v in sequential.state_dict().items()}
    state.update({f"projection_head.{k}": v for k, v in head.state_dict().items()})
    checkpoint = tmp_path / "lightly.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": {"lr": 0.06}, "epoch": 9}, checkpoint)
    with pytest.raises(ContrastiveError, match="another tool.*--backbone and --input-size"):
        load_encoder(checkpoint)
    encoder = load_encoder(checkpoint, BACKBONE, ViewConfig(input_size=32))
    assert same_weights(encoder.backbone, trained_backbone())
    # Only our runs record the head's configuration: refused in one line, not AttributeError.
    with pytest.raises(ContrastiveError, match="leave out --projection-head"):
        load_encoder(checkpoint, BACKBONE, ViewConfig(input_size=32), with_projection_head=True)


@pytest.mark.parametrize(
    "packaging",
    [
        lambda weights: {"state_dict": weights},  # a plain state_dict, wrapped
        lambda weights: {"model": weights},  # timm's train script, DeiT
        lambda weights: {f"module.{k}": v for k, v in weights.items()},  # DDP
        lambda weights: {"state_dict": {f"model.{k}": v for k, v in weights.items()}},
        lambda weights: {"state_dict": {f"encoder.{k}": v for k, v in weights.items()}},
    ],
    ids=["state_dict", "model", "module", "lightning-model", "lightning-encoder"],
)
def test_weights_in_another_tools_packaging_load_as_the_backbone(tmp_path: Path, packaging) -> None:
    weights = tmp_path / "weights.ckpt"
    torch.save(packaging(trained_backbone().state_dict()), weights)
    encoder = load_encoder(weights, BACKBONE, ViewConfig(input_size=32))
    assert same_weights(encoder.backbone, trained_backbone())


@pytest.mark.parametrize(
    ("backbone_prefix", "head_key", "message"),
    [
        ("encoder.", "head.weight", r"under encoder\., head\."),
        # A Sequential of backbone and head under model.: renaming 0 -> conv1 fits nothing,
        # and the message once named keys the file does not hold (conv1.conv1.weight).
        ("model.0.", "model.1.weight", r"model\.0\.conv1\.weight"),
    ],
)
def test_weights_beside_other_modules_are_named_as_the_file_holds_them(
    tmp_path: Path, backbone_prefix: str, head_key: str, message: str
) -> None:
    state = {f"{backbone_prefix}{k}": v for k, v in trained_backbone().state_dict().items()}
    state[head_key] = torch.zeros(2, 128)
    checkpoint = tmp_path / "other.ckpt"
    torch.save({"state_dict": state}, checkpoint)
    with pytest.raises(ContrastiveError, match=message) as error:
        load_encoder(checkpoint, BACKBONE, ViewConfig(input_size=32))
    assert "\n" not in str(error.value) and "conv1.conv1" not in str(error.value)


def test_a_runs_backbone_file_is_read_with_the_config_beside_it(run_dir: Path) -> None:
    encoder = load_encoder(run_dir / "backbone.pt")
    assert encoder.backbone_config == BACKBONE
    assert same_weights(encoder.backbone, trained_backbone())


@pytest.mark.parametrize(
    ("small_image_stem", "hint"),
    [(True, "leave out --small-image-stem"), (False, "add --small-image-stem")],
)
def test_a_stem_mismatch_names_the_flag_that_fits(
    tmp_path: Path, small_image_stem: bool, hint: str
) -> None:
    torch.manual_seed(0)
    backbone, _ = build_backbone(BackboneConfig("resnet18", small_image_stem=not small_image_stem))
    weights = tmp_path / "weights.pt"
    torch.save(backbone.state_dict(), weights)
    with pytest.raises(ContrastiveError, match=hint):
        load_encoder(
            weights, BackboneConfig("resnet18", small_image_stem), ViewConfig(input_size=32)
        )


def test_normalisation_on_the_0_255_scale_is_refused() -> None:
    with pytest.raises(ContrastiveError, match="0-1 scale.*divide 0-255 values by 255"):
        ViewConfig(mean=(125.0, 123.0, 114.0), std=(63.0, 62.0, 66.0))


def test_a_weights_prefix_picks_the_backbone_of_moco_or_dino_files(tmp_path: Path) -> None:
    weights = trained_backbone().state_dict()
    other = trained_backbone(seed=2).state_dict()
    # MoCo v2's files come from DDP (module.encoder_q.), DINO's student too.
    moco = {f"module.encoder_q.{k}": v for k, v in weights.items()}
    moco.update({f"module.encoder_k.{k}": v for k, v in other.items()})
    moco.update({"queue": torch.zeros(128, 16), "queue_ptr": torch.zeros(1)})
    moco_file = tmp_path / "moco_v2.pth.tar"
    torch.save({"state_dict": moco, "epoch": 200, "arch": "resnet50"}, moco_file)
    dino_file = tmp_path / "dino.pth"
    torch.save(
        {
            "student": {f"module.backbone.{k}": v for k, v in other.items()},
            "teacher": {f"backbone.{k}": v for k, v in weights.items()},
            "epoch": 100,
        },
        dino_file,
    )
    views = ViewConfig(input_size=32)
    # Without a prefix, each file says where its weights are and which flag picks them.
    with pytest.raises(
        ContrastiveError, match=r"under encoder_k\., encoder_q\.: .*--weights-prefix"
    ):
        load_encoder(moco_file, BACKBONE, views)
    with pytest.raises(
        ContrastiveError,
        match=r"its keys: epoch, student, teacher\): .* --weights-prefix student\.$",
    ):
        load_encoder(dino_file, BACKBONE, views)
    picks = [(moco_file, "encoder_q.", 1), (dino_file, "teacher.backbone", 1)]
    picks.append((dino_file, "student.backbone.", 2))
    for path, prefix, seed in picks:
        encoder = load_encoder(path, BACKBONE, views, weights_prefix=prefix)
        assert same_weights(encoder.backbone, trained_backbone(seed))
    with pytest.raises(
        ContrastiveError, match=r"no weights under teacher\.head\. .*student\., teacher\."
    ):
        load_encoder(dino_file, BACKBONE, views, weights_prefix="teacher.head.")
