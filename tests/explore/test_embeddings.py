"""Loading and checking embeddings files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from contrastive.errors import ContrastiveError
from contrastive.explore import EmbeddingSet, load_embeddings


def _arrays(count: int = 4) -> dict[str, np.ndarray]:
    return {
        "embeddings": np.arange(count * 3, dtype=np.float64).reshape(count, 3),
        "paths": np.array([f"c{i % 2}/{i}.jpg" for i in range(count)]),
        "labels": np.array([0, 1, -1, 1][:count], dtype=np.int64),
        "classes": np.array(["c0", "c1"]),
    }


def test_round_trip_uses_the_stored_data_root(tmp_path: Path) -> None:
    file = tmp_path / "emb.npz"
    np.savez(file, **_arrays(), data_root=np.array(str(tmp_path)))
    loaded = load_embeddings(file)
    assert loaded.embeddings.dtype == np.float32 and loaded.embeddings.shape == (4, 3)
    assert loaded.paths == ["c0/0.jpg", "c1/1.jpg", "c0/2.jpg", "c1/3.jpg"]
    assert loaded.labels.tolist() == [0, 1, -1, 1] and loaded.labels.dtype == np.int64
    assert loaded.classes == ["c0", "c1"]
    assert loaded.data_root == tmp_path
    assert loaded.image_path(1) == tmp_path / "c1" / "1.jpg"
    assert [loaded.label_name(i) for i in range(4)] == ["c0", "c1", "unlabeled", "c1"]


def test_data_root_argument_overrides_the_stored_one(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    file = tmp_path / "emb.npz"
    np.savez(file, **_arrays(), data_root=np.array(str(tmp_path)))
    assert load_embeddings(file, data_root=other).data_root == other


def test_stored_root_missing_here_warns_but_loads(tmp_path: Path) -> None:
    file = tmp_path / "emb.npz"
    np.savez(file, **_arrays(), data_root=np.array("/no/such/folder"))
    with pytest.warns(UserWarning, match="data_root= to load_embeddings"):
        loaded = load_embeddings(file)
    assert len(loaded) == 4


def test_accepts_loaded_mappings_and_defaults_missing_labels() -> None:
    arrays = _arrays()
    del arrays["labels"], arrays["classes"]
    loaded = load_embeddings(arrays)
    assert loaded.labels.tolist() == [-1] * 4 and loaded.classes == []
    assert not loaded.is_labeled
    with pytest.raises(ContrastiveError, match="no data_root known"):
        loaded.image_path(0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"paths": np.array(["a.jpg"])}, "paths has 1 entries but embeddings has 4 rows"),
        ({"labels": np.array([0, 1, 2, 0])}, "label 2 of row 2"),
        ({"labels": np.array([0.0, 1.0, 1.0, 0.0])}, "labels must be integers"),
        ({"embeddings": np.zeros(4)}, "N x D"),
        ({"embeddings": np.array([[0.0, 1.0, 2.0]] * 3 + [[np.nan, 0.0, 0.0]])}, "first row 3"),
    ],
)
def test_inconsistent_arrays_are_refused(change: dict, message: str) -> None:
    with pytest.raises(ContrastiveError, match=message):
        load_embeddings({**_arrays(), **change})


def test_missing_key_is_named(tmp_path: Path) -> None:
    file = tmp_path / "emb.npz"
    arrays = _arrays()
    del arrays["paths"]
    np.savez(file, **arrays)
    with pytest.raises(ContrastiveError, match="has no 'paths' array"):
        load_embeddings(file)


def test_unreadable_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ContrastiveError, match="not found"):
        load_embeddings(tmp_path / "missing.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file")
    with pytest.raises(ContrastiveError, match="cannot read embeddings file"):
        load_embeddings(garbage)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, **{**_arrays(), "paths": np.array([object()] * 4, dtype=object)})
    with pytest.raises(ContrastiveError, match="cannot read embeddings file"):
        load_embeddings(pickled)


def test_data_root_argument_must_be_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ContrastiveError, match="data_root is not a folder"):
        load_embeddings(_arrays(), data_root=tmp_path / "nope")


def test_absolute_paths_need_no_root(tmp_path: Path) -> None:
    dataset = EmbeddingSet(np.ones((1, 2)), [str(tmp_path / "x.jpg")])
    assert dataset.image_path(0) == tmp_path / "x.jpg"


def test_reads_files_written_by_contrastive_embed(tmp_path: Path) -> None:
    writer = pytest.importorskip("contrastive.embeddings")
    arrays = _arrays()
    file = tmp_path / "written.npz"
    writer.save_embeddings(
        writer.Embeddings(
            arrays["embeddings"],
            arrays["paths"],
            arrays["labels"],
            arrays["classes"],
            data_root=str(tmp_path),
            source="run/last.ckpt",
            feature="backbone",
        ),
        file,
    )
    loaded = load_embeddings(file)
    np.testing.assert_array_equal(loaded.embeddings, arrays["embeddings"].astype(np.float32))
    assert loaded.paths == arrays["paths"].tolist()
    assert loaded.labels.tolist() == arrays["labels"].tolist()
    assert loaded.classes == ["c0", "c1"] and loaded.data_root == tmp_path
    in_memory = load_embeddings(writer.load_embeddings(file))
    np.testing.assert_array_equal(in_memory.embeddings, loaded.embeddings)
    assert in_memory.paths == loaded.paths and in_memory.data_root == tmp_path
