"""Duplicate groups: exact and near copies of a centre image, within and across folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from contrastive.curation.duplicates import (
    SIMILARITY_TOLERANCE,
    copy_links,
    cross_groups,
    duplicate_groups,
    exact_copy_links,
    find_cross_duplicates,
    find_duplicates,
    leak_groups,
    similar_pairs,
)
from contrastive.data.near_copies import copy_groups
from contrastive.errors import ContrastiveError


def unit(rows: list[list[float]]) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.tensor(rows, dtype=torch.float32), dim=1)


def test_a_chain_of_look_alikes_is_split_so_that_each_member_copies_its_first() -> None:
    # Five images a ~ b ~ c ~ d ~ e, neighbours at cos 0.95, two apart only cos 0.81.
    angle = np.arccos(0.95)
    chain = [[np.cos(t), np.sin(t), 0.0] for t in np.arange(5) * angle]
    far = [0.0, 0.0, 1.0]
    groups = duplicate_groups(unit([*chain, far]), threshold=0.92)
    # b has the most links (with c: the lower index is the centre): b, a, c; then d, e.
    assert [g.members.tolist() for g in groups] == [[1, 0, 2], [3, 4]]
    for group in groups:
        np.testing.assert_allclose(group.similarity[1:], 0.95, atol=1e-3)
    assert float(unit([chain[0]])[0] @ unit([chain[2]])[0]) < 0.92


def test_copy_groups_centre_on_the_most_linked_image() -> None:
    # A star around 3 (links to 0, 1, 5) and a pair 2 ~ 4 linked to the star through 4 ~ 5.
    first, second = np.array([3, 3, 5, 2, 4]), np.array([0, 1, 3, 4, 5])
    assert copy_groups(first, second, 7) == [[3, 0, 1, 5], [4, 2]]
    assert copy_groups(np.zeros(0, np.int64), np.zeros(0, np.int64), 3) == []


def test_exact_copies_link_even_flat_images() -> None:
    # Zero fingerprints (flat images) match nothing by fingerprint; equal bytes still link.
    fingerprints = torch.zeros(4, 3)
    groups = duplicate_groups(fingerprints, ["x", "y", "x", "x"])
    assert [g.members.tolist() for g in groups] == [[0, 2, 3]]
    assert groups[0].exact.tolist() == [True, True, True]
    assert groups[0].similarity.tolist() == [1.0, 1.0, 1.0]
    first, second = exact_copy_links(["x", "y", "x", "x"])
    assert first.tolist() == [0, 0] and second.tolist() == [2, 3]


def test_digests_must_match_the_fingerprints() -> None:
    with pytest.raises(ContrastiveError, match="2 file digests for 3"):
        duplicate_groups(torch.eye(3), ["a", "b"])


def test_planted_exact_resized_and_jpeg_copies_are_found(
    tmp_path: Path, make_textured_folder
) -> None:
    paths = make_textured_folder(tmp_path / "data", {"": 20}, seed=1)
    original = Image.open(paths[3])
    (tmp_path / "data" / "exact.png").write_bytes(paths[3].read_bytes())
    original.resize((24, 24), Image.Resampling.BILINEAR).save(tmp_path / "data" / "small.png")
    Image.open(paths[7]).save(tmp_path / "data" / "low.jpg", quality=30)
    every = [*paths, *(tmp_path / "data" / n for n in ("exact.png", "small.png", "low.jpg"))]
    groups = find_duplicates(every)
    assert [g.members.tolist() for g in groups] == [[3, 20, 21], [7, 22]]
    assert groups[0].exact.tolist() == [True, True, False]
    assert (groups[0].similarity >= 0.92).all() and (groups[1].similarity >= 0.92).all()


def test_copies_across_two_folders_are_leaks(tmp_path: Path, make_textured_folder) -> None:
    train = make_textured_folder(tmp_path / "train", {"": 12}, seed=2)
    test = make_textured_folder(tmp_path / "test", {"": 6}, seed=3)
    # Test image 0 is a resized copy of train image 5; test 1 and 2 copy each other only.
    Image.open(train[5]).resize((32, 32)).save(test[0])
    Image.open(test[1]).save(test[2])
    groups = find_cross_duplicates(test, train)
    assert [g.members.tolist() for g in groups] == [[0, len(test) + 5]]
    assert [g.members.tolist() for g in find_duplicates(test)] == [[1, 2]]


def _near(vector: torch.Tensor, cosine: float, rng: np.random.Generator) -> torch.Tensor:
    """A unit vector at ``cosine`` to the unit ``vector``."""
    other = torch.from_numpy(rng.standard_normal(vector.shape[0]).astype(np.float32))
    other = other - (other @ vector) * vector
    other = other / other.norm()
    return cosine * vector + (1 - cosine**2) ** 0.5 * other


def test_leak_groups_are_those_of_both_sets_searched_together() -> None:
    # Planted links of every kind: within the first set, within the second, across, chains
    # through either set, exact copies (equal digests) across; the leak groups must be those
    # of one search over both sets, filtered by cross_groups, as before (none is left out).
    rng = np.random.default_rng(0)
    first = unit(rng.standard_normal((120, 16)).tolist())
    second = unit(rng.standard_normal((40, 16)).tolist())
    second[0] = _near(first[5], 0.97, rng)  # a copy across
    first[11] = _near(first[10], 0.96, rng)  # first 10 ~ 11 ~ second 1
    second[1] = _near(first[11], 0.95, rng)
    second[3] = _near(second[2], 0.98, rng)  # second 2 ~ 3 ~ first 20
    first[20] = _near(second[3], 0.94, rng)
    for index in (6, 7, 8):  # three copies of second 5 in the first set, one more within
        first[index * 3] = _near(second[5], 0.93 + 0.01 * (index - 6), rng)
    second[9] = _near(second[5], 0.99, rng)
    fingerprints = torch.cat([first, second])
    digests = [f"d{index}" for index in range(len(fingerprints))]
    digests[120 + 30] = digests[40]  # an exact copy across: equal bytes, any fingerprint
    split = len(first)

    together = cross_groups(duplicate_groups(fingerprints, digests), split)
    links = copy_links(fingerprints[:split], digests[:split])
    leaks = leak_groups(fingerprints, digests, split, links)

    assert len(together) == 5
    assert [g.members.tolist() for g in leaks] == [g.members.tolist() for g in together]
    for mine, reference in zip(leaks, together, strict=True):
        np.testing.assert_array_equal(mine.exact, reference.exact)
        np.testing.assert_allclose(mine.similarity, reference.similarity, atol=1e-6)


def test_leak_search_looks_from_both_sets() -> None:
    # With one candidate per image: the test image's nearest training image is D, so its
    # own search links it to D only; training image A (whose nearest is then the test
    # image) must still be linked to it. Searching both sets together missed A too: A's
    # nearest image of both sets is E, a look-alike of A.
    rng = np.random.default_rng(1)
    first = unit(rng.standard_normal((6, 16)).tolist())
    test_image = unit(rng.standard_normal((1, 16)).tolist())[0]
    first[1] = _near(test_image, 0.97, rng)  # D
    first[2] = _near(test_image, 0.94, rng)  # A
    first[3] = _near(first[2], 0.995, rng)  # E, A's look-alike
    fingerprints = torch.cat([first, test_image[None]])
    links = copy_links(first, threshold=0.92, candidates=1)
    groups = leak_groups(fingerprints, None, 6, links, threshold=0.92, candidates=1)
    leaked = {int(member) for group in groups for member in group.members}
    assert {1, 2, 6} <= leaked
    together = cross_groups(duplicate_groups(fingerprints, threshold=0.92, candidates=1), 6)
    assert 2 not in {int(member) for group in together for member in group.members}


def test_every_image_with_a_copy_in_the_other_set_is_in_a_leak_group() -> None:
    # Training images a ~ b ~ c and test image d ~ c, neighbours at cos 0.95 (two apart
    # 0.81): grouping around the most linked image gives b, a, c, which holds no test image,
    # and d's only copy is taken. The leak was not listed at all; now d comes with c.
    angle = np.arccos(0.95)
    chain = unit([[np.cos(t), np.sin(t), 0.0] for t in np.arange(4) * angle])
    links = copy_links(chain[:3], threshold=0.92)
    assert [g.members.tolist() for g in duplicate_groups(chain, threshold=0.92)] == [[1, 0, 2]]
    groups = leak_groups(chain, None, 3, links, threshold=0.92)
    assert [g.members.tolist() for g in groups] == [[2, 3]]
    np.testing.assert_allclose(groups[0].similarity, [1.0, 0.95], atol=1e-3)


def test_curate_against_searches_the_folder_once(
    tmp_path: Path, make_textured_folder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The folder's own pairs were searched twice: alone (its duplicates), then again in a
    # search over both folders (leaks). Now the second search covers the other folder only.
    import contrastive.curation.duplicates as duplicates
    from contrastive.curation import CurationSettings, curate
    from contrastive.embeddings import Embeddings

    paths = make_textured_folder(tmp_path / "data", {"": 30}, seed=4)
    others = make_textured_folder(tmp_path / "other", {"": 8}, seed=5)
    Image.open(paths[3]).save(paths[4])  # a duplicate within the folder
    Image.open(paths[7]).resize((40, 40)).save(others[2])  # and a leak
    searches: list[tuple[int, int | None]] = []
    search = duplicates.near_copy_pairs

    def recorded(queries, references=None, *args, **kwargs):
        searches.append((len(queries), None if references is None else len(references)))
        return search(queries, references, *args, **kwargs)

    monkeypatch.setattr(duplicates, "near_copy_pairs", recorded)
    dataset = Embeddings(
        np.random.default_rng(0).standard_normal((30, 8)).astype(np.float32),
        np.array([path.name for path in paths]),
        None,
        None,
        data_root=tmp_path / "data",
    )
    result = curate(dataset, CurationSettings(label_issues="no"), against=tmp_path / "other")
    assert sorted(searches, key=str) == sorted([(30, None), (8, None), (8, 30), (30, 8)], key=str)
    assert [g.members.tolist() for g in result.duplicates] == [[3, 4]]
    assert [g.members.tolist() for g in result.leaks] == [[7, 30 + 2]]


def test_threshold_one_finds_exact_copies_despite_float32_rounding() -> None:
    # Float32 puts the cosine of a row with itself a few last bits off 1 (0.99999994).
    base = np.random.default_rng(0).standard_normal((10, 128)).astype(np.float32)
    pairs, sims = similar_pairs(np.vstack([base, base]), threshold=1.0)
    assert sorted(map(tuple, pairs.tolist())) == [(i, i + 10) for i in range(10)]
    assert np.all(sims >= 1.0 - SIMILARITY_TOLERANCE)
    # Distinct rows stay out, also at a threshold just under 1.
    pairs, _ = similar_pairs(np.vstack([base, base + 0.01]), threshold=1.0)
    assert len(pairs) == 0


def test_curate_against_views_each_large_image_in_detail_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The folder is searched alone (its duplicates), then with the other folder (leaks):
    # before, each search decoded the folder's candidate images again for the detail check.
    from sklearn.datasets import load_sample_images

    import contrastive.data.near_copies as near_copies
    from contrastive.curation import CurationSettings, curate
    from contrastive.embeddings import Embeddings

    photos = load_sample_images().images
    crops = [
        Image.fromarray(photo[top : top + 160, left : left + 160])
        for photo in photos
        for top, left in ((60, 40), (200, 300))
    ]
    data, other = tmp_path / "data", tmp_path / "other"
    data.mkdir()
    other.mkdir()
    for index, crop in enumerate(crops):
        crop.save(data / f"{index}.png")
    crops[0].save(data / "copy.jpg", quality=90)  # a duplicate within the folder
    crops[1].resize((150, 150)).save(other / "leak.png")  # and one shared with the other
    names = sorted(path.name for path in data.iterdir())
    dataset = Embeddings(
        np.random.default_rng(0).standard_normal((len(names), 8)).astype(np.float32),
        np.array(names),
        None,
        None,
        data_root=data,
    )
    viewed: list[str] = []
    detail_thumbnail = near_copies._detail_thumbnail

    def counted(path: str) -> torch.Tensor | None:
        viewed.append(Path(path).name)
        return detail_thumbnail(path)

    monkeypatch.setattr(near_copies, "_detail_thumbnail", counted)
    result = curate(dataset, CurationSettings(label_issues="no"), against=other)
    assert [sorted(names[i] for i in g.members) for g in result.duplicates] == [
        ["0.png", "copy.jpg"]
    ]
    assert len(result.leaks) == 1
    assert sorted(viewed) == sorted(set(viewed)) and {"0.png", "copy.jpg", "1.png"} <= set(viewed)
