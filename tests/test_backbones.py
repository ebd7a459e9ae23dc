"""Backbones: feature widths, the small-image stem, plain-torchvision compatibility, and a
registry check that every listed family trains (one SimCLR step: finite loss, gradients
reach every parameter)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torchvision
from torch import nn

from contrastive.backbone_config import BackboneConfig
from contrastive.backbones import BACKBONES, build_backbone, remove_classifier, small_image_stem
from contrastive.errors import ContrastiveError
from contrastive.losses import LossConfig
from contrastive.methods import MethodConfig, build_method

# Final stage width: 512 for BasicBlock ResNets, 4 * 512 for Bottleneck (ResNet-50),
# 8 * base width for the narrow ResNets (8 * 32, 8 * 16).
FEATURE_DIMS = {
    "resnet18": 512,
    "resnet34": 512,
    "resnet50": 2048,
    "resnet18_half": 256,
    "resnet18_quarter": 128,
    "resnet10_half": 256,
    "resnet10_quarter": 128,
}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: small forward passes on a shared machine only lose time to more."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_every_torchvision_classification_model_is_a_backbone() -> None:
    assert set(FEATURE_DIMS) <= set(BACKBONES)
    assert set(torchvision.models.list_models(module=torchvision.models)) <= set(BACKBONES)
    # Detection/segmentation/video models are not image classifiers with pooled features.
    assert "fasterrcnn_resnet50_fpn" not in BACKBONES


@pytest.mark.parametrize("small_stem", [False, True])
@pytest.mark.parametrize("name", sorted(FEATURE_DIMS))
def test_feature_width(name: str, small_stem: bool) -> None:
    model, feature_dim = build_backbone(BackboneConfig(name, small_image_stem=small_stem))
    assert feature_dim == FEATURE_DIMS[name]
    assert isinstance(model.fc, nn.Identity)
    with torch.no_grad():
        measured = model.eval()(torch.zeros(1, 3, 16, 16)).shape[1]
    assert measured == feature_dim


@pytest.mark.parametrize(
    ("name", "widths", "blocks"),
    [
        ("resnet18_half", [32, 64, 128, 256], 2),
        ("resnet18_quarter", [16, 32, 64, 128], 2),
        ("resnet10_half", [32, 64, 128, 256], 1),
        ("resnet10_quarter", [16, 32, 64, 128], 1),
    ],
)
def test_narrow_resnets_have_their_depth_and_scaled_widths(
    name: str, widths: list[int], blocks: int
) -> None:
    model, _ = build_backbone(BackboneConfig(name))
    stages = [model.layer1, model.layer2, model.layer3, model.layer4]
    assert [len(stage) for stage in stages] == [blocks] * 4
    assert [stage[-1].conv2.out_channels for stage in stages] == widths
    assert model.conv1.out_channels == widths[0]


@pytest.mark.parametrize("name", ["resnet18", "resnet18_quarter", "resnet10_quarter"])
def test_small_image_stem(name: str) -> None:
    model, _ = build_backbone(BackboneConfig(name, small_image_stem=True))
    assert model.conv1.kernel_size == (3, 3)
    assert model.conv1.stride == (1, 1)
    assert model.conv1.padding == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    # 32 px stays 32 px into layer1 (the ImageNet stem divides by 4: 32 -> 8).
    stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
    assert stem(torch.zeros(2, 3, 32, 32)).shape[-2:] == (32, 32)

    imagenet, _ = build_backbone(BackboneConfig(name))
    assert imagenet.conv1.kernel_size == (7, 7)
    assert imagenet.conv1.stride == (2, 2)
    assert isinstance(imagenet.maxpool, nn.MaxPool2d)
    stem = nn.Sequential(imagenet.conv1, imagenet.bn1, imagenet.relu, imagenet.maxpool)
    assert stem(torch.zeros(2, 3, 32, 32)).shape[-2:] == (8, 8)


def test_stride_two_stem_shows_twice_the_view_for_the_same_feature_maps() -> None:
    strided, _ = build_backbone(BackboneConfig("resnet18_quarter", True, stem_stride=2))
    plain, _ = build_backbone(BackboneConfig("resnet18_quarter", True))
    assert strided.conv1.stride == (2, 2)
    maps = {}
    for name, model, size in (("strided", strided, 48), ("plain", plain, 24)):
        stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
        maps[name] = stem(torch.zeros(1, 3, size, size)).shape
    assert maps["strided"] == maps["plain"] == (1, 16, 24, 24)
    with pytest.raises(ContrastiveError, match="stem_stride must be 1 or 2"):
        BackboneConfig("resnet18", True, stem_stride=3)
    with pytest.raises(ContrastiveError, match="small-image stem only"):
        BackboneConfig("resnet18", stem_stride=2)


@pytest.mark.parametrize("small_stem", [False, True])
def test_resnet18_state_dict_loads_into_plain_torchvision(small_stem: bool) -> None:
    torch.manual_seed(0)
    model, _ = build_backbone(BackboneConfig("resnet18", small_image_stem=small_stem))
    with torch.no_grad():  # non-trivial batch-norm statistics, so the buffers matter too
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    plain = torchvision.models.resnet18()
    if small_stem:
        small_image_stem(plain)
    plain.fc = nn.Identity()
    plain.load_state_dict(model.state_dict(), strict=True)

    images = torch.randn(2, 3, 32, 32)
    model.eval()
    plain.eval()
    with torch.no_grad():
        assert torch.equal(plain(images), model(images))


def test_unknown_backbone_raises_with_where_to_find_names() -> None:
    with pytest.raises(ContrastiveError, match=r"vgg17.*list_models.*timm:NAME") as error:
        BackboneConfig("vgg17")
    assert "\n" not in str(error.value) and "did you mean" not in str(error.value)


def test_a_timm_name_without_its_prefix_is_suggested_with_it() -> None:
    pytest.importorskip("timm")
    with pytest.raises(ContrastiveError, match=r"did you mean timm:convnext_atto\?"):
        BackboneConfig("convnext_atto")


def test_small_image_stem_is_for_resnets_only() -> None:
    BackboneConfig("resnext50_32x4d", small_image_stem=True)
    with pytest.raises(ContrastiveError, match="ResNets.*convnext_tiny"):
        BackboneConfig("convnext_tiny", small_image_stem=True)


@pytest.mark.parametrize(
    ("name", "feature_dim", "classifier"),
    [
        ("mobilenet_v3_small", 1024, "classifier.3"),  # after the head's hidden layer
        ("efficientnet_b0", 1280, "classifier.1"),
        ("convnext_tiny", 768, "classifier.2"),
        ("regnet_y_400mf", 440, "fc"),
        ("squeezenet1_1", 512, "classifier.1"),  # a 1x1 conv classifier
        ("vit_b_16", 768, "heads.head"),
    ],
)
def test_torchvision_state_dict_loads_into_plain_model(
    name: str, feature_dim: int, classifier: str
) -> None:
    torch.manual_seed(0)
    model, measured_dim = build_backbone(BackboneConfig(name))
    assert measured_dim == feature_dim
    plain = torchvision.models.get_model(name)
    assert remove_classifier(plain) == (classifier, feature_dim)
    plain.load_state_dict(model.state_dict(), strict=True)
    if name != "vit_b_16":  # 224 px only; its forward is covered by the slow registry case
        images = torch.randn(2, 3, 64, 64)
        with torch.no_grad():
            torch.testing.assert_close(plain.eval()(images), model.eval()(images))
            assert model(images).shape == (2, feature_dim)


#: ``(name, input size)``: one backbone per family, at the smallest input it takes.
REGISTRY = [
    ("resnet18_quarter", 32),
    ("mobilenet_v3_small", 32),
    ("efficientnet_b0", 32),
    ("regnet_y_400mf", 32),
    ("convnext_tiny", 32),
    ("squeezenet1_1", 32),
    ("timm:resnet18", 32),
    # ViTs fix their input size (position embeddings): 224 px; ~25 s of CPU for vit_b_16.
    ("timm:vit_tiny_patch16_224", 224),
    pytest.param("vit_b_16", 224, marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("name", "input_size"), REGISTRY)
def test_registry_backbone_trains_one_simclr_step(name: str, input_size: int) -> None:
    if name.startswith("timm:"):
        pytest.importorskip("timm", reason="the timm extra is not installed")
    torch.manual_seed(0)
    backbone, feature_dim = build_backbone(BackboneConfig(name))
    method = build_method(
        MethodConfig("simclr", projection_output_dim=16), LossConfig(), backbone, feature_dim
    )
    method.train()
    images = torch.rand(3, 3, input_size, input_size)
    views = [images, images.flip(-1)]
    loss = method.training_loss(views, progress=0.0)
    assert torch.isfinite(loss)
    loss.backward()
    without = [n for n, p in method.named_parameters() if p.requires_grad and p.grad is None]
    assert not without, f"no gradient reaches {without[:3]}"
    bad = [
        n
        for n, p in method.named_parameters()
        if p.grad is not None and not p.grad.isfinite().all()
    ]
    assert not bad, f"non-finite gradients in {bad[:3]}"
    assert backbone.eval()(images).shape == (3, feature_dim)


def test_timm_backbone_gives_pooled_features_and_loads_into_plain_timm() -> None:
    timm = pytest.importorskip("timm", reason="the timm extra is not installed")
    model, feature_dim = build_backbone(BackboneConfig("timm:resnet18"))
    assert feature_dim == 512
    plain = timm.create_model("resnet18", pretrained=False, num_classes=0)
    plain.load_state_dict(model.state_dict(), strict=True)
    with pytest.raises(ContrastiveError, match="timm:resnet_nonexistent"):
        BackboneConfig("timm:resnet_nonexistent")


def test_the_architecture_text_names_where_each_family_s_classifier_was() -> None:
    from contrastive.backbones import describe_architecture

    assert describe_architecture(BackboneConfig("mobilenet_v3_small")).endswith(
        "then classifier.3 = Identity() (the classifier removed)"
    )
    text = describe_architecture(BackboneConfig("resnet10_quarter", True, stem_stride=2))
    assert "model.inplanes = 16" in text and "stride=2, padding=1" in text
    assert text.endswith("then fc = Identity() (the classifier removed)")


def test_the_narrow_resnet_rebuilt_as_its_text_says_takes_its_weights() -> None:
    from torchvision.models.resnet import BasicBlock

    # Followed literally, without contrastive's builder.
    model = torchvision.models.ResNet(BasicBlock, [1, 1, 1, 1])
    model.inplanes = 16
    model.conv1 = nn.Conv2d(3, 16, 7, stride=2, padding=3, bias=False)
    model.bn1 = nn.BatchNorm2d(16)
    for index, (width, stride) in enumerate(zip((16, 32, 64, 128), (1, 2, 2, 2), strict=True)):
        setattr(model, f"layer{index + 1}", model._make_layer(BasicBlock, width, 1, stride))
    model.conv1 = nn.Conv2d(
        3, model.conv1.out_channels, kernel_size=3, stride=2, padding=1, bias=False
    )
    model.maxpool = nn.Identity()
    model.fc = nn.Identity()
    ours, _ = build_backbone(BackboneConfig("resnet10_quarter", True, stem_stride=2))
    model.load_state_dict(ours.state_dict())  # strict: every key and shape
