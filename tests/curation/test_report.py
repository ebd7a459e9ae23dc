"""The report folder: a second report into the same folder leaves none of the first's lists."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from contrastive.curation import CurationSettings, curate
from contrastive.curation.report import (
    check_selected_folder,
    link_images,
    summary_text,
    write_report,
)
from contrastive.embeddings import Embeddings
from contrastive.errors import ContrastiveError


def embedded_folder(root: Path, make_textured_folder) -> Embeddings:
    """Random embeddings of a labeled folder of 3 classes x 6 textured images."""
    paths = make_textured_folder(root, {"a": 6, "b": 6, "c": 6})
    rng = np.random.default_rng(0)
    return Embeddings(
        rng.standard_normal((len(paths), 8)).astype(np.float32),
        np.array([path.relative_to(root).as_posix() for path in paths]),
        np.repeat(np.arange(3), 6),
        ["a", "b", "c"],
        data_root=root,
    )


def test_a_second_report_removes_the_lists_it_does_not_write(
    tmp_path: Path, make_textured_folder
) -> None:
    dataset = embedded_folder(tmp_path / "data", make_textured_folder)
    make_textured_folder(tmp_path / "other", {"": 3}, seed=5)
    out = tmp_path / "report"
    full = curate(dataset, CurationSettings(select=3), against=tmp_path / "other")
    write_report(full, out, link_selected=True)
    first = {path.name for path in out.iterdir()}
    assert {"label_issues.csv", "leaks.csv", "selection.csv", "selection.png", "selected"} <= first
    (out / "notes.txt").write_text("mine")  # a person's file, not the report's
    (out / "keep").mkdir()
    (out / "keep" / "0001_x.png").write_text("mine")

    write_report(curate(dataset, CurationSettings(label_issues="no")), out)
    second = {path.name for path in out.iterdir()}
    for gone in ("label_issues.csv", "leaks.csv", "selection.csv", "selection.png", "selected"):
        assert gone not in second
    assert {"duplicates.csv", "outliers.csv", "summary.json", "notes.txt", "keep"} <= second
    assert (out / "keep" / "0001_x.png").read_text() == "mine"


def test_the_summary_counts_leaked_images_of_both_folders(
    tmp_path: Path, make_textured_folder
) -> None:
    # Two test images copy one training image (two copies of one file: exact too), a third
    # copies another: the summary said how many training images leaked, not test images.
    dataset = embedded_folder(tmp_path / "data", make_textured_folder)
    other = tmp_path / "other"
    make_textured_folder(other, {"": 4}, seed=5)
    for name, source in (
        ("000.png", "a/000.png"),
        ("001.png", "a/000.png"),
        ("002.png", "b/003.png"),
    ):
        (other / name).write_bytes((tmp_path / "data" / source).read_bytes())
    curation = curate(dataset, CurationSettings(label_issues="no"), against=other)
    summary = write_report(curation, tmp_path / "report", sheets=False)
    assert summary["counts"]["leaked_images"] == 2
    assert summary["counts"]["leaked_other_images"] == 3
    assert f"(2 of this folder's images, 3 of {other}'s)" in summary_text(summary)


def test_a_selected_folder_with_other_files_is_left_alone_and_not_linked_into(
    tmp_path: Path, make_textured_folder
) -> None:
    dataset = embedded_folder(tmp_path / "data", make_textured_folder)
    out = tmp_path / "report"
    (out / "selected").mkdir(parents=True)
    (out / "selected" / "notes.txt").write_text("mine")
    write_report(curate(dataset, CurationSettings(label_issues="no")), out, sheets=False)
    assert (out / "selected" / "notes.txt").read_text() == "mine"
    # --link-selected replaces selected/: a person's files there must survive, and the
    # refusal must come before anything of the earlier report is removed.
    (out / "outliers.csv").write_text("earlier")
    with pytest.raises(ContrastiveError, match="selected"):
        write_report(curate(dataset, CurationSettings(select=3)), out, link_selected=True)
    assert (out / "selected" / "notes.txt").read_text() == "mine"
    assert (out / "outliers.csv").read_text() == "earlier"
    with pytest.raises(ContrastiveError, match="selected"):
        check_selected_folder(out)
    with pytest.raises(ContrastiveError, match="not selection links"):
        link_images([tmp_path / "x.png"], out / "selected")
    assert (out / "selected" / "notes.txt").read_text() == "mine"


def test_earlier_links_are_replaced(tmp_path: Path, make_textured_folder) -> None:
    paths = make_textured_folder(tmp_path / "data", {"a": 3})
    link_images(paths, tmp_path / "selected")
    check_selected_folder(tmp_path)  # nothing but links: fine
    link_images(paths[:1], tmp_path / "selected")
    assert [entry.name[:5] for entry in (tmp_path / "selected").iterdir()] == ["0001_"]


def test_auto_label_check_skips_classes_of_one_image(
    tmp_path: Path, make_textured_folder, caplog
) -> None:
    # One image per class: nothing to cross-validate; "auto" skips rather than failing.
    paths = make_textured_folder(tmp_path / "data", {"a": 1, "b": 1, "c": 1, "d": 1})
    dataset = Embeddings(
        np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32),
        np.array([path.relative_to(tmp_path / "data").as_posix() for path in paths]),
        np.arange(4),
        ["a", "b", "c", "d"],
        data_root=tmp_path / "data",
    )
    curation = curate(dataset)
    assert curation.label_issues is None
    assert "no class has 2 labeled images" in caplog.text
    assert curation.label_issues_skipped == "no class has 2 labelled images to cross-validate"


@pytest.mark.parametrize(
    ("labels", "classes", "mode", "said"),
    [
        (None, [], "auto", "no class sub-folders"),
        (np.zeros(18, np.int64), ["a"], "auto", "the folder has one class"),
        (np.repeat(np.arange(3), 6), ["a", "b", "c"], "no", "not asked for"),
    ],
)
def test_the_summary_says_why_label_mistakes_were_not_looked_for(
    tmp_path: Path, make_textured_folder, labels, classes, mode: str, said: str
) -> None:
    dataset = embedded_folder(tmp_path / "data", make_textured_folder)
    dataset = Embeddings(
        dataset.embeddings, dataset.paths, labels, classes, data_root=dataset.data_root
    )
    summary = write_report(curate(dataset, CurationSettings(label_issues=mode)), tmp_path / "r")
    # Before: no line at all, which reads as "no mistakes found".
    assert f"- label mistakes: not looked for ({said})" in summary_text(summary)


def test_the_summary_says_how_far_the_label_probe_agrees_with_the_labels(
    tmp_path: Path, make_textured_folder
) -> None:
    dataset = embedded_folder(tmp_path / "data", make_textured_folder)
    # Features that are the labels, but for two images given another class's features.
    features = np.eye(3, 8, dtype=np.float32)[dataset.labels] * 5.0
    features[[0, 6]] = features[[12, 12]]
    dataset = Embeddings(
        features, dataset.paths, dataset.labels, dataset.classes, data_root=dataset.data_root
    )
    curation = curate(dataset, CurationSettings(label_issues="yes"))
    write_report(curation, tmp_path / "report", sheets=False)
    agreement = (curation.label_issues.suggested == dataset.labels).mean()
    assert agreement == pytest.approx(16 / 18)
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["label_probe_accuracy"] == pytest.approx(agreement)
    assert f"agrees with {agreement:.1%} of the labels" in summary_text(summary)
    assert "warning" not in summary_text(summary)  # a probe right on 16 of 18 is trusted


@pytest.mark.parametrize(
    ("agreement", "largest", "words"),
    [
        (0.175, 0.2, "no more than always naming the largest class (20.0%)"),
        (0.40, 0.2, "agrees with only 40.0% of the labels, little more than"),
        (0.60, 0.2, None),
        # One class of 85.5%: 88.5% was trusted before, and flagged 14 of 60 of a rare class.
        (0.885, 0.855, "agrees with only 88.5% of the labels, little more than always naming"),
        (0.95, 0.855, None),
    ],
)
def test_a_probe_too_weak_to_trust_is_called_out(
    agreement: float, largest: float, words: str | None
) -> None:
    counts = {
        "duplicate_groups": 0,
        "duplicate_images": 0,
        "exact_copies": 0,
        "unusual_groups": 0,
        "label_issues": 30,
        "labeled_images": 40,
    }
    summary = {
        "folder": "f",
        "images": 40,
        "counts": counts,
        "settings": {},
        "seconds": {},
        "label_probe_accuracy": agreement,
        "label_largest_class_share": largest,
    }
    text = summary_text(summary)
    if words is None:
        assert "warning" not in text
    else:
        assert words in text and "most of these flags are its own mistakes" in text


def test_images_without_embeddings_are_listed_in_the_report(
    tmp_path: Path, make_textured_folder
) -> None:
    root = tmp_path / "data"
    dataset = embedded_folder(root, make_textured_folder)
    (root / "b" / "broken.png").write_bytes(b"not an image")  # embedding skips it
    out = tmp_path / "report"
    summary = write_report(curate(dataset, CurationSettings(label_issues="no")), out)
    assert summary["counts"]["left_out"] == 1
    assert (out / "left_out.csv").read_text().splitlines() == ["path", "b/broken.png"]
    summary_md = (out / "summary.md").read_text()
    assert "left out: 1 image(s) of the folder without embeddings" in summary_md

    (root / "b" / "broken.png").unlink()
    summary = write_report(curate(dataset, CurationSettings(label_issues="no")), out)
    assert summary["counts"]["left_out"] == 0
    assert not (out / "left_out.csv").exists()  # the earlier report's list is gone
    assert "left out" not in (out / "summary.md").read_text()


def test_looking_for_left_out_images_repeats_no_warning_of_the_embedding(
    tmp_path: Path, make_textured_folder
) -> None:
    # `curate --run` embeds the folder (whose scan warns of the notes beside the images),
    # then lists the images left out: that second scan repeated the warning word for word.
    import warnings

    from contrastive.curation.pipeline import images_left_out

    root = tmp_path / "data"
    dataset = embedded_folder(root, make_textured_folder)
    (root / "notes.txt").write_text("not an image")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert images_left_out(dataset) == []
    assert [str(warning.message) for warning in caught] == []


def test_blank_images_are_listed_where_the_outlier_ranking_misses_them(
    tmp_path: Path, make_textured_folder
) -> None:
    root = tmp_path / "data"
    dataset = embedded_folder(root, make_textured_folder)
    # A uniform gray frame and an almost black one (a little JPEG-like noise), and a faint
    # but real gradient that stays: its spread is 7 levels.
    rng = np.random.default_rng(1)
    Image.new("RGB", (48, 48), (250, 250, 250)).save(root / "a" / "002.png")
    dark = rng.integers(0, 3, (48, 48, 3), dtype=np.uint8)
    Image.fromarray(dark).save(root / "c" / "004.png")
    ramp = np.repeat(np.linspace(100, 124, 48, dtype=np.uint8)[None, :, None], 48, 0)
    Image.fromarray(np.repeat(ramp, 3, 2)).save(root / "b" / "000.png")

    out = tmp_path / "report"
    curation = curate(dataset, CurationSettings(label_issues="no"))
    assert [str(dataset.paths[i]) for i in curation.blank] == ["a/002.png", "c/004.png"]
    summary = write_report(curation, out)
    assert summary["counts"]["blank_images"] == 2
    listed = (out / "blank.csv").read_text().splitlines()
    assert listed == ["path,label", "a/002.png,a", "c/004.png,c"]
    assert (out / "blank.png").is_file()
    assert "blank images (one colour, nothing to learn from): 2" in (out / "summary.md").read_text()

    # None left: the earlier list goes and the summary says nothing of blank images.
    for seed, path in enumerate(("a/002.png", "c/004.png"), start=7):
        make_textured_folder(tmp_path / "fresh", {"": 1}, seed=seed)
        (tmp_path / "fresh" / "000.png").rename(root / path)
    write_report(curate(dataset, CurationSettings(label_issues="no")), out)
    assert not (out / "blank.csv").exists()
    assert "blank images" not in (out / "summary.md").read_text()


def test_a_selection_of_no_images_is_refused_in_the_callers_words(
    tmp_path: Path, make_textured_folder
) -> None:
    dataset = embedded_folder(tmp_path / "data", make_textured_folder)
    with pytest.raises(ContrastiveError, match="^the selection must hold at least 1 image, got 0"):
        curate(dataset, CurationSettings(select=0))
    with pytest.raises(ContrastiveError, match="^cannot select 19 images to label: the folder"):
        curate(dataset, CurationSettings(select=19))


def test_links_to_files_with_names_near_the_length_limit_fit(
    tmp_path: Path, make_textured_folder
) -> None:
    (source,) = make_textured_folder(tmp_path / "data", {"": 1})
    long_name = tmp_path / "data" / ("图" * 83 + ".png")  # 249 bytes: no room for "0001_"
    source.rename(long_name)
    link_images([long_name], tmp_path / "selected")
    (link,) = (tmp_path / "selected").iterdir()
    assert link.name == "0001_" + "图" * 82 + ".png" and len(os.fsencode(link.name)) <= 255
    assert link.resolve() == long_name.resolve()


def test_exact_search_is_kept_where_the_searches_would_be_approximate(
    tmp_path: Path, make_textured_folder, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    import logging

    import contrastive.neighbours as neighbours

    dataset = embedded_folder(tmp_path / "data", make_textured_folder)
    # Two neighbours: each image's list holds enough (a shorter list is searched exactly).
    settings = CurationSettings(label_issues="no", outlier_k=2)
    exact = curate(dataset, settings)
    # 18 images pass as "large": 4 inverted lists, each image searched in its nearest only.
    monkeypatch.setattr(neighbours, "APPROXIMATE_ROWS", 5)
    monkeypatch.setattr(neighbours, "PROBED_LISTS", 1)
    with caplog.at_level(logging.INFO):
        approximate = curate(dataset, settings)
    assert "--exact-search compares every pair" in caplog.text
    assert not np.array_equal(approximate.outlier_scores, exact.outlier_scores)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        forced = curate(
            dataset, CurationSettings(label_issues="no", outlier_k=2, exact_search=True)
        )
    assert "approximate" not in caplog.text
    np.testing.assert_array_equal(forced.outlier_scores, exact.outlier_scores)
    np.testing.assert_array_equal(forced.nearest, exact.nearest)
    summary = write_report(forced, tmp_path / "report", sheets=False)
    assert summary["settings"]["exact_search"] is True
