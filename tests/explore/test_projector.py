"""TensorBoard Embedding Projector export: file contents, sprite layout, config, limits."""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from contrastive.data.folder import ImageFolder
from contrastive.embeddings import Embeddings
from contrastive.errors import ContrastiveError
from contrastive.explore import projector
from contrastive.explore.images import load_thumbnail
from contrastive.explore.projector import export_projector, max_sprite_images

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "projector"


@pytest.fixture(scope="module")
def images(cifar10_small: dict[str, Path]) -> Embeddings:
    """30 of the small photo set's test images (3 per class) with random 5-D embeddings."""
    folder = ImageFolder.scan(cifar10_small["test"])
    labels, classes = folder.labels()
    keep = np.flatnonzero(np.arange(len(labels)) % 10 < 3)
    labels[keep[0]] = -1
    rng = np.random.default_rng(0)
    return Embeddings(
        rng.standard_normal((len(keep), 5)).astype(np.float32),
        [folder.relative_paths()[i] for i in keep],
        labels[keep],
        classes,
        folder.root,
    )


def test_files_hold_every_point(images: Embeddings, tmp_path: Path) -> None:
    export = export_projector(images, tmp_path, thumbnail_size=16)
    assert export.indices.tolist() == list(range(30))
    tensors = np.loadtxt(export.tensors_path, delimiter="\t")
    assert tensors.shape == (30, 5)
    np.testing.assert_allclose(tensors, images.embeddings, rtol=1e-6)

    lines = export.metadata_path.read_text().splitlines()
    assert lines[0] == "index\tpath\tclass\tlabel" and len(lines) == 31
    first, second = lines[1].split("\t"), lines[2].split("\t")
    assert first == ["0", images.paths[0], "unlabeled", "-1"]
    assert second == ["1", images.paths[1], images.label_name(1), str(images.labels[1])]


def test_sprite_is_a_square_grid_in_point_order(images: Embeddings, tmp_path: Path) -> None:
    export = export_projector(images, tmp_path, thumbnail_size=16)
    sprite = np.asarray(Image.open(export.sprite_path))
    assert sprite.shape == (6 * 16, 6 * 16, 3)  # ceil(sqrt(30)) = 6 thumbnails a side
    for point in range(30):
        row, col = divmod(point, 6)
        cell = sprite[row * 16 : (row + 1) * 16, col * 16 : (col + 1) * 16]
        # Exact: the thumbnails survive add_embedding's float round trip unchanged.
        np.testing.assert_array_equal(cell, load_thumbnail(images.image_path(point), 16))
    assert (sprite[5 * 16 :, 0:] == 0).all()  # cells 30..35 are unused: black
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(export.sprite_path, ARTIFACTS / "sprite.png")


def test_config_parses_as_a_projector_config(images: Embeddings, tmp_path: Path) -> None:
    export = export_projector(images, tmp_path, thumbnail_size=16)
    config_pb2 = pytest.importorskip("tensorboard.plugins.projector.projector_config_pb2")
    from google.protobuf import text_format

    config = text_format.Parse(export.config_path.read_text(), config_pb2.ProjectorConfig())
    (embedding,) = config.embeddings
    assert tmp_path / embedding.tensor_path == export.tensors_path
    assert tmp_path / embedding.metadata_path == export.metadata_path
    assert tmp_path / embedding.sprite.image_path == export.sprite_path
    assert list(embedding.sprite.single_image_dim) == [16, 16]
    for path in (export.tensors_path, export.metadata_path, export.sprite_path):
        assert path.is_file()


def test_large_sets_are_capped_to_what_the_sprite_holds(
    images: Embeddings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(projector, "SPRITE_MAX_SIDE", 64)  # 4 x 4 thumbnails of 16 px
    with pytest.warns(UserWarning, match="exporting a random 16 of 30 points"):
        export = export_projector(images, tmp_path, thumbnail_size=16)
    assert len(export.indices) == 16 == len(set(export.indices.tolist()))
    assert np.all(np.diff(export.indices) > 0)
    assert Image.open(export.sprite_path).size == (64, 64)
    rows = export.metadata_path.read_text().splitlines()[1:]
    assert [int(row.split("\t")[0]) for row in rows] == export.indices.tolist()
    np.testing.assert_allclose(
        np.loadtxt(export.tensors_path, delimiter="\t"),
        images.embeddings[export.indices],
        rtol=1e-6,
    )


def test_sprite_capacity_at_the_real_limit() -> None:
    assert max_sprite_images(32) == 256**2
    assert max_sprite_images(100) == 81**2


def test_without_images_there_is_no_sprite_and_no_cap(images: Embeddings, tmp_path: Path) -> None:
    with_sprite = export_projector(images, tmp_path, thumbnail_size=16)
    # Re-exporting without images replaces the earlier export, stale sprite included.
    export = export_projector(dataclasses.replace(images, data_root=None), tmp_path)
    assert export.sprite_path is None and not with_sprite.sprite_path.exists()
    assert "sprite" not in export.config_path.read_text()
    assert len(export.indices) == 30
    assert export_projector(images, tmp_path / "none", thumbnail_size=None).sprite_path is None


def test_tabs_in_paths_cannot_break_columns(tmp_path: Path) -> None:
    export = export_projector(Embeddings(np.eye(2), ["a\tb.jpg", "c\nd.jpg"]), tmp_path)
    lines = export.metadata_path.read_text().splitlines()
    assert lines[1:] == ["0\ta b.jpg\tunlabeled\t-1", "1\tc d.jpg\tunlabeled\t-1"]


def test_file_names_that_are_not_utf8_are_written_escaped(tmp_path: Path) -> None:
    name = os.fsdecode(b"caf\xe9.jpg")  # a Latin-1 name on a UTF-8 file system
    export = export_projector(Embeddings(np.eye(2), [name, "b.jpg"]), tmp_path)
    lines = export.metadata_path.read_text().splitlines()
    assert lines[1] == "0\tcaf\\xe9.jpg\tunlabeled\t-1"


def test_bad_inputs_are_refused(images: Embeddings, tmp_path: Path) -> None:
    with pytest.raises(ContrastiveError, match="thumbnail_size"):
        export_projector(images, tmp_path, thumbnail_size=0)
    moved = dataclasses.replace(images, data_root=tmp_path / "nope")
    with pytest.raises(ContrastiveError, match="data_root is not a folder"):
        export_projector(moved, tmp_path)
    missing = dataclasses.replace(images, paths=["gone.jpg", *images.paths[1:]])
    with pytest.raises(ContrastiveError, match="cannot read image .*gone.jpg"):
        export_projector(missing, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # images are read before anything is written


def test_missing_tensorboard_is_one_line(
    images: Embeddings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    with pytest.raises(ContrastiveError, match="needs TensorBoard: pip install tensorboard$"):
        export_projector(images, tmp_path)


def test_tensorboard_projector_plugin_serves_the_export(images: Embeddings, tmp_path: Path) -> None:
    plugin_module = pytest.importorskip("tensorboard.plugins.projector.projector_plugin")
    from tensorboard.plugins import base_plugin
    from werkzeug.test import EnvironBuilder

    export_projector(images, tmp_path, thumbnail_size=16)
    # `tensorboard --logdir tmp_path` builds the plugin the same way.
    plugin = plugin_module.ProjectorPlugin(
        base_plugin.TBContext(logdir=str(tmp_path), data_provider=None)
    )
    apps = plugin.get_plugin_apps()

    def get(route: str) -> tuple[str, bytes]:
        status: list[str] = []
        query = f"run=.&name={projector.TAG}:00000"
        environ = EnvironBuilder(path=route, query_string=query).get_environ()
        body = b"".join(apps[route](environ, lambda code, *_: status.append(code)))
        return status[0], body

    status, tensor = get("/tensor")
    assert status == "200 OK"
    np.testing.assert_allclose(
        np.frombuffer(tensor, dtype=np.float32).reshape(30, 5), images.embeddings, rtol=1e-6
    )
    status, metadata = get("/metadata")
    assert status == "200 OK" and len(metadata.decode().splitlines()) == 31
    status, sprite = get("/sprite_image")
    assert status == "200 OK" and sprite.startswith(b"\x89PNG")


def test_decoded_thumbnails_are_used_as_given_and_checked(
    images: Embeddings, tmp_path: Path
) -> None:
    # Thumbnails decoded elsewhere (training's projector) go into the sprite unchanged.
    decoded = np.random.default_rng(0).integers(0, 256, (30, 16, 16, 3), dtype=np.uint8)
    export = export_projector(images, tmp_path / "given", thumbnail_size=16, thumbnails=decoded)
    sprite = np.asarray(Image.open(export.sprite_path))
    np.testing.assert_array_equal(sprite[16:32, 32:48], decoded[6 * 1 + 2])
    with pytest.raises(ContrastiveError, match=r"thumbnails must be uint8 of shape \(30, 16"):
        export_projector(images, tmp_path / "bad", thumbnail_size=16, thumbnails=decoded[:29])
