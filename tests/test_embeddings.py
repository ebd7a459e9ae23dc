"""Embedding files and folder embedding: contents, eval-mode inference, baselines' pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from torch import nn

from contrastive.backbone_config import BackboneConfig
from contrastive.backbones import build_backbone
from contrastive.data.folder import load_rgb
from contrastive.embeddings import (
    Embeddings,
    RawPixels,
    embed_folder,
    embed_images,
    load_embeddings,
    save_embeddings,
)
from contrastive.encoder import EncoderFeatures, load_encoder
from contrastive.errors import ContrastiveError
from contrastive.views.config import ViewConfig, view_preset
from contrastive.views.per_image import eval_transform

VIEWS = ViewConfig(input_size=16)


def write_images(root: Path, layout: dict[str, int], size: int = 20) -> Path:
    """``{class folder ('' for flat): count}`` images with distinct colours."""
    for index, (folder, count) in enumerate(layout.items()):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            colour = (40 * index + 10, 5 * i, 200 - 30 * index)
            Image.new("RGB", (size, size + 4), colour).save(root / folder / f"{i:03d}.png")
    return root


def small_embeddings() -> Embeddings:
    return Embeddings(
        np.arange(6, dtype=np.float32).reshape(3, 2),
        np.array(["a/0.png", "a/1.png", "loose.png"]),
        np.array([0, 0, -1]),
        np.array(["a"]),
        "/data",
        "/runs/x",
        "backbone",
    )


def test_file_round_trip_is_plain_numpy(tmp_path: Path) -> None:
    save_embeddings(small_embeddings(), tmp_path / "e.npz")
    with np.load(tmp_path / "e.npz", allow_pickle=False) as raw:
        assert raw["embeddings"].dtype == np.float32 and raw["embeddings"].shape == (3, 2)
        assert raw["labels"].dtype == np.int64 and raw["paths"][2] == "loose.png"
        assert list(raw["classes"]) == ["a"] and str(raw["data_root"]) == "/data"
    loaded = load_embeddings(tmp_path / "e.npz")
    assert np.array_equal(loaded.embeddings, small_embeddings().embeddings)
    assert loaded.paths.tolist() == small_embeddings().paths.tolist()
    assert loaded.labels.tolist() == [0, 0, -1] and loaded.classes.tolist() == ["a"]
    assert (loaded.data_root, loaded.source, loaded.feature) == (
        Path("/data"),
        "/runs/x",
        "backbone",
    )
    assert list(tmp_path.iterdir()) == [tmp_path / "e.npz"]  # no temporary left behind
    unknown_root = Embeddings(loaded.embeddings, loaded.paths)
    save_embeddings(unknown_root, tmp_path / "no_root.npz")
    assert load_embeddings(tmp_path / "no_root.npz").data_root is None


def _arrays(count: int = 4) -> dict[str, np.ndarray]:
    """The arrays of an embeddings file, float64 features as a user might pass them."""
    return {
        "embeddings": np.arange(count * 3, dtype=np.float64).reshape(count, 3),
        "paths": np.array([f"c{i % 2}/{i}.jpg" for i in range(count)]),
        "labels": np.array([0, 1, -1, 1][:count], dtype=np.int64),
        "classes": np.array(["c0", "c1"]),
    }


def test_files_written_by_numpy_load_with_their_data_root(tmp_path: Path) -> None:
    file = tmp_path / "emb.npz"
    np.savez(file, **_arrays(), data_root=np.array(str(tmp_path)))
    loaded = load_embeddings(file)
    assert loaded.embeddings.dtype == np.float32 and loaded.embeddings.shape == (4, 3)
    assert loaded.paths.tolist() == ["c0/0.jpg", "c1/1.jpg", "c0/2.jpg", "c1/3.jpg"]
    assert loaded.labels.tolist() == [0, 1, -1, 1] and loaded.labels.dtype == np.int64
    assert loaded.classes.tolist() == ["c0", "c1"] and loaded.is_labeled
    assert (loaded.data_root, loaded.source, loaded.feature) == (tmp_path, "", "backbone")
    assert loaded.image_path(1) == tmp_path / "c1" / "1.jpg"
    assert [loaded.label_name(i) for i in range(4)] == ["c0", "c1", "unlabeled", "c1"]


def test_data_root_argument_overrides_the_stored_one(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    file = tmp_path / "emb.npz"
    np.savez(file, **_arrays(), data_root=np.array(str(tmp_path)))
    assert load_embeddings(file, data_root=other).data_root == other
    with pytest.raises(ContrastiveError, match="data_root is not a folder"):
        load_embeddings(file, data_root=tmp_path / "nope")


def test_moved_files_load_but_cannot_show_images(tmp_path: Path) -> None:
    file = tmp_path / "emb.npz"
    np.savez(file, **_arrays(), data_root=np.array("/no/such/folder"))
    loaded = load_embeddings(file)
    assert len(loaded) == 4
    with pytest.raises(ContrastiveError, match="not a folder here; pass data_root="):
        loaded.image_path(0)


def test_labels_and_classes_are_optional(tmp_path: Path) -> None:
    arrays = _arrays()
    unlabeled = Embeddings(arrays["embeddings"], list(arrays["paths"]))
    assert unlabeled.labels.tolist() == [-1] * 4 and unlabeled.classes.tolist() == []
    assert not unlabeled.is_labeled and unlabeled.data_root is None
    with pytest.raises(ContrastiveError, match="no data_root known"):
        unlabeled.image_path(0)
    np.savez(tmp_path / "bare.npz", embeddings=arrays["embeddings"], paths=arrays["paths"])
    assert load_embeddings(tmp_path / "bare.npz").labels.tolist() == [-1] * 4


def test_absolute_paths_need_no_root(tmp_path: Path) -> None:
    dataset = Embeddings(np.ones((1, 2)), [str(tmp_path / "x.jpg")])
    assert dataset.image_path(0) == tmp_path / "x.jpg"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"paths": np.array(["a.jpg"])}, "paths has 1 entries but embeddings has 4 rows"),
        ({"labels": np.array([0, 1, 2, 0])}, "label 2 of row 2"),
        ({"labels": np.array([0, 1])}, "labels has shape \\(2,\\), expected \\(4,\\)"),
        ({"labels": np.array([0.0, 1.0, 1.0, 0.0])}, "labels must be integers"),
        ({"embeddings": np.zeros(4)}, r"must be 2-D \(rows x features\), got shape \(4,\)"),
        ({"embeddings": np.array([["a", "b", "c"]] * 4)}, "real numbers"),
        ({"embeddings": np.array([[0.0, 1.0, 2.0]] * 3 + [[np.nan, 0.0, 0.0]])}, "first row 3"),
        ({"classes": np.array(["x", "x"])}, "classes must be distinct names, but 'x' appears 2"),
        ({"classes": ()}, "labels given but classes is empty: pass classes="),
    ],
)
def test_inconsistent_arrays_are_refused(change: dict, message: str) -> None:
    with pytest.raises(ContrastiveError, match=message) as error:
        Embeddings(**{**_arrays(), **change})
    assert "\n" not in str(error.value)


def test_a_tensor_requiring_grad_is_detached() -> None:
    features = torch.randn(4, 3, requires_grad=True)
    dataset = Embeddings(features, _arrays()["paths"])
    np.testing.assert_array_equal(dataset.embeddings, features.detach().numpy())
    assert dataset.embeddings.dtype == np.float32


def test_bad_files_raise_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ContrastiveError, match="not found"):
        load_embeddings(tmp_path / "missing.npz")
    (tmp_path / "text.npz").write_text("hello")
    # Before: numpy's "contains pickled (object) data ... load it unsafely" advice.
    with pytest.raises(ContrastiveError, match="text.npz is not an embeddings .npz \\(not a Nu"):
        load_embeddings(tmp_path / "text.npz")
    np.savez(tmp_path / "pickled.npz", **{**_arrays(), "paths": np.array([object()] * 4)})
    with pytest.raises(ContrastiveError, match="cannot read"):
        load_embeddings(tmp_path / "pickled.npz")  # object arrays would need pickle
    np.savez(tmp_path / "partial.npz", embeddings=np.zeros((2, 2)))
    with pytest.raises(
        ContrastiveError, match="partial.npz is not an embeddings file: missing paths"
    ):
        load_embeddings(tmp_path / "partial.npz")
    np.savez(tmp_path / "short.npz", **{**_arrays(), "paths": np.array(["a"])})
    with pytest.raises(ContrastiveError, match="short.npz: paths has 1 entries") as error:
        load_embeddings(tmp_path / "short.npz")
    assert "\n" not in str(error.value)


def test_folder_embedding_matches_single_image_inference(tmp_path: Path) -> None:
    root = write_images(tmp_path / "data", {"cat": 3, "dog": 2, "": 1})
    torch.manual_seed(0)
    backbone, _ = build_backbone(BackboneConfig("resnet18_quarter"))
    extractors = {"backbone": EncoderFeatures(backbone), "raw_pixels": RawPixels()}
    result = embed_folder(
        root, VIEWS, extractors, {"backbone": "run"}, batch_size=4, progress=False
    )
    embedded, pixels = result["backbone"], result["raw_pixels"]
    assert list(embedded.paths) == [
        "000.png",
        "cat/000.png",
        "cat/001.png",
        "cat/002.png",
        "dog/000.png",
        "dog/001.png",
    ]
    assert embedded.labels.tolist() == [-1, 0, 0, 0, 1, 1]
    assert list(embedded.classes) == ["cat", "dog"]
    assert (embedded.source, embedded.feature, embedded.data_root) == (
        "run",
        "backbone",
        root.absolute(),
    )
    image = eval_transform(VIEWS)(load_rgb(root / "dog" / "001.png"))
    with torch.no_grad():
        expected = backbone.eval()(image[None])[0]
    assert np.allclose(embedded.embeddings[5], expected.numpy(), atol=1e-5)
    assert np.allclose(pixels.embeddings[5], image.flatten().numpy())


def test_embed_images_with_a_run_folder_or_encoder(tmp_path: Path) -> None:
    root = write_images(tmp_path / "data", {"cat": 2, "dog": 2})
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(
        yaml.safe_dump({"views": VIEWS.to_dict(), "backbone": {"name": "resnet18_quarter"}})
    )
    torch.manual_seed(3)
    backbone, _ = build_backbone(BackboneConfig("resnet18_quarter"))
    torch.save(backbone.state_dict(), run / "backbone.pt")

    embedded = embed_images(run, root, batch_size=3, progress=False)
    expected = embed_folder(root, VIEWS, {"backbone": EncoderFeatures(backbone)}, progress=False)[
        "backbone"
    ]
    assert (embedded.feature, embedded.source) == ("backbone", str(run.absolute()))
    assert list(embedded.paths) == list(expected.paths) and embedded.labels.tolist() == [0, 0, 1, 1]
    assert np.allclose(embedded.embeddings, expected.embeddings, atol=1e-5)
    again = embed_images(load_encoder(run), root, progress=False)
    assert np.allclose(again.embeddings, embedded.embeddings, atol=1e-5)
    with pytest.raises(ContrastiveError, match="last.ckpt"):
        embed_images(run, root, projection_head=True, progress=False)


def test_embedding_leaves_batch_norm_statistics_and_modes_alone(tmp_path: Path) -> None:
    root = write_images(tmp_path / "data", {"a": 4})
    backbone, _ = build_backbone(BackboneConfig("resnet18_quarter"))
    backbone.train()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    embed_folder(root, VIEWS, {"b": EncoderFeatures(backbone)}, progress=False)
    assert backbone.training and all(m.training for m in backbone.modules())
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())
    # Guard: the same forward pass in train mode would have moved the statistics.
    backbone(torch.randn(2, 3, 16, 16))
    assert not torch.equal(before["bn1.running_mean"], backbone.bn1.running_mean)


def test_unreadable_image_is_left_out(tmp_path: Path) -> None:
    root = write_images(tmp_path / "data", {"a": 3})
    (root / "a" / "001.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning, match="001.png"):
        result = embed_folder(root, VIEWS, {"p": RawPixels()}, progress=False)["p"]
    assert list(result.paths) == ["a/000.png", "a/002.png"]
    image = eval_transform(VIEWS)(load_rgb(root / "a" / "002.png"))
    assert np.allclose(result.embeddings[1], image.flatten().numpy())


def test_a_class_of_unreadable_files_only_is_left_out_and_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = write_images(tmp_path / "data", {"a": 2, "b": 1, "c": 2})
    (root / "b" / "000.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning, match="000.png"):
        result = embed_folder(root, VIEWS, {"p": RawPixels()}, progress=False)["p"]
    assert list(result.classes) == ["a", "c"] and result.labels.tolist() == [0, 0, 1, 1]
    assert "1 class folder(s) of" in caplog.text and "left out: b" in caplog.text


def test_raw_pixels_are_area_downsampled_above_32_px() -> None:
    images = torch.rand(2, 3, 64, 64)
    pixels = RawPixels()(images)
    assert pixels.shape == (2, 3 * 32 * 32)
    assert torch.allclose(pixels[0, 0], images[0, 0, :2, :2].mean())
    assert torch.equal(RawPixels()(images[:, :, :32, :32]), images[:, :, :32, :32].flatten(1))


def test_small_photo_set_embeds_every_image_with_its_class(cifar10_small: dict[str, Path]) -> None:
    features = EncoderFeatures(nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten()))
    result = embed_folder(
        cifar10_small["test"], view_preset("cifar"), {"f": features}, progress=False
    )["f"]
    assert result.embeddings.shape == (100, 12)
    assert np.bincount(result.labels).tolist() == [10] * 10
    folders = sorted(p.name for p in cifar10_small["test"].iterdir() if p.is_dir())
    assert list(result.classes) == folders and all(
        p.startswith(result.classes[label] + "/") for p, label in zip(result.paths, result.labels)
    )
    image = eval_transform(view_preset("cifar"))(load_rgb(cifar10_small["test"] / result.paths[0]))
    assert np.allclose(
        result.embeddings[0], F.adaptive_avg_pool2d(image, 2).flatten().numpy(), atol=1e-6
    )
