"""Label tables: which columns are read, which image each row names, and the errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from contrastive.data.label_table import match_labels, read_label_table, unmatched_rows
from contrastive.errors import ContrastiveError

IMAGES = [
    Path("/data/photos/cats/1.jpg"),
    Path("/data/photos/dogs/1.jpg"),
    Path("/data/photos/00007.png"),
    Path("/data/photos/img.v2.png"),
]


def table(tmp_path: Path, text: str, name: str = "labels.csv"):
    path = tmp_path / name
    path.write_text(text)
    return read_label_table(path)


def labels_of(match) -> list[str]:
    return [match.classes[i] if i >= 0 else "" for i in match.labels]


@pytest.mark.parametrize(
    ("text", "columns"),
    [
        # STL-10's train_data.csv: the label first, a header of known names.
        ("label,name\nb,00007.png\na,dogs/1.jpg\n", ("'name'", "'label'")),
        # One known name is enough with two columns.
        ("filename,digit\n00007.png,b\ndogs/1.jpg,a\n", ("'filename'", "'digit'")),
        ("Image;Species;Notes\n00007.png;b;x\ndogs/1.jpg;a;y\n", ("'Image'", "'Species'")),
        # No header: the column of image names is found by its extensions.
        ("b\t00007.png\na\tdogs/1.jpg\n", ("column 2", "column 1")),
    ],
)
def test_columns_are_found_by_header_name_or_extension(tmp_path, text, columns) -> None:
    read = table(tmp_path, text)
    assert read.columns == columns
    assert [(row.image, row.label) for row in read.rows] == [
        ("00007.png", "b"),
        ("dogs/1.jpg", "a"),
    ]
    assert labels_of(match_labels(read, IMAGES, "photos")) == ["", "a", "b", ""]


def test_rows_name_images_by_relative_or_absolute_path_file_name_or_stem(tmp_path) -> None:
    read = table(
        tmp_path,
        "path,label\nphotos/cats/1.jpg,cat\n/data/photos/dogs/1.jpg,dog\n00007,7\n"
        ".\\img.v2.png,10\n",
    )
    match = match_labels(read, IMAGES, "photos")
    assert labels_of(match) == ["cat", "dog", "7", "10"]
    # Numbers sort as numbers, names after them.
    assert match.classes == ["7", "10", "cat", "dog"]
    assert match.matched_rows == {0, 1, 2, 3}


def test_unmatched_rows_and_empty_labels_leave_images_unlabeled(tmp_path) -> None:
    with pytest.warns(UserWarning, match="1 row\\(s\\) with an empty label \\(line 3\\)"):
        read = table(tmp_path, "path,label\ncats/1.jpg,cat\ndogs/1.jpg,\nbirds/1.jpg,bird\n")
    match = match_labels(read, IMAGES, "photos")
    assert labels_of(match) == ["cat", "", "", ""]
    assert match.classes == ["cat"]
    message = unmatched_rows(read, match.matched_rows, "photos", "1.jpg")
    assert (
        message == "1 of the 3 rows of labels.csv name no image of photos: 'birds/1.jpg' (line 4)"
    )
    assert unmatched_rows(read, {0, 1, 2}, "photos", "1.jpg") is None


@pytest.mark.parametrize(
    ("text", "images", "message"),
    [
        (
            "path,label\n1.jpg,cat\n",
            IMAGES,
            "line 2: '1.jpg' fits 2 images of photos .*: write the image's path relative to photos",
        ),
        (
            "path,label\ncats/1.jpg,cat\n./cats/1.jpg,dog\n",
            IMAGES,
            "lines 2 and 3 give /data/photos/cats/1.jpg two labels \\('cat', 'dog'\\)",
        ),
    ],
)
def test_ambiguous_and_contradicting_rows_are_refused(tmp_path, text, images, message) -> None:
    with pytest.raises(ContrastiveError, match=message):
        match_labels(table(tmp_path, text), images, "photos")


def test_a_table_naming_no_image_gives_an_example_of_each_side(tmp_path) -> None:
    read = table(tmp_path, "id,label\nA17,cat\n")
    match = match_labels(read, IMAGES, "photos")
    assert (match.labels == -1).all()
    with pytest.raises(ContrastiveError, match="first row names 'A17' \\(in 'id'\\), the folder "):
        unmatched_rows(read, match.matched_rows, "photos", "1.jpg")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("path,label\n", "has a header but no rows"),
        ("a,b,c\n1.jpg,x,y\n", "has no header and 3 columns"),
        ("path,notes,more\n1.jpg,x,y\n", "none is the label column"),
        ("path,label\n1.jpg\n", "line 2 has 1 column\\(s\\), expected at least 2"),
    ],
)
def test_malformed_tables_are_refused_naming_the_file(tmp_path, text, message) -> None:
    with pytest.raises(ContrastiveError, match=message) as error:
        table(tmp_path, text)
    assert "labels.csv" in str(error.value)


def test_unreadable_tables_are_refused_naming_the_file(tmp_path) -> None:
    with pytest.raises(ContrastiveError, match="missing.csv not found"):
        read_label_table(tmp_path / "missing.csv")
    with pytest.raises(ContrastiveError, match="is a folder"):
        read_label_table(tmp_path)
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(ContrastiveError, match="binary.csv is not UTF-8 text"):
        read_label_table(tmp_path / "binary.csv")


def test_a_spreadsheets_byte_order_mark_and_blank_lines_are_ignored(tmp_path) -> None:
    path = tmp_path / "labels.csv"
    path.write_bytes("\ufeffPath,Label\r\n\r\ncats/1.jpg,cat\r\n".encode())
    read = read_label_table(path)
    assert read.columns == ("'Path'", "'Label'")
    assert [row.line for row in read.rows] == [3]
    assert np.array_equal(match_labels(read, IMAGES, "photos").labels, [0, -1, -1, -1])


def test_names_from_another_machine_or_in_another_case_find_their_image(tmp_path) -> None:
    read = table(
        tmp_path,
        "path,label\n"
        "/home/bio/photos/cats/1.jpg,cat\n"  # the folder's own name, then the path below it
        "C:\\Users\\bio\\photos\\00007.png,7\n"
        "IMG.V2.PNG,10\n"  # a camera's upper case for img.v2.png
        "/home/bio/train/dogs/1.jpg,dog\n",  # another folder's dogs/1.jpg: not this one
    )
    match = match_labels(read, IMAGES, "photos", root=Path("/data/photos"))
    assert labels_of(match) == ["cat", "", "7", "10"]
    assert match.matched_rows == {0, 1, 2}
    # Without the folder, an absolute path must match the image's own.
    assert labels_of(match_labels(read, IMAGES, "photos"))[0] == ""


def test_class_names_differing_only_in_case_are_warned_about(tmp_path) -> None:
    with pytest.warns(UserWarning, match="differ only in case are different classes: 'cat' "):
        read = table(tmp_path, "path,label\ncats/1.jpg,cat\ndogs/1.jpg,Cat\n00007,cat\n")
    assert match_labels(read, IMAGES, "photos").classes == ["Cat", "cat"]


def test_two_tables_merge_and_a_contradiction_names_both_files(tmp_path) -> None:
    train = table(tmp_path, "path,label\ncats/1.jpg,cat\n", "train.csv")
    test = table(tmp_path, "path,label\ndogs/1.jpg,dog\n", "test.csv")
    both = train.merged(test)
    assert both.name == "train.csv + test.csv" and len(both.rows) == 2
    assert labels_of(match_labels(both, IMAGES, "photos")) == ["cat", "dog", "", ""]
    other = table(tmp_path, "path,label\ncats/1.jpg,lynx\n", "other.csv")
    with pytest.raises(ContrastiveError, match="train.csv line 2 and other.csv line 2 give"):
        match_labels(train.merged(other), IMAGES, "photos")


def test_a_workbook_is_refused_with_the_way_to_export_it(tmp_path) -> None:
    (tmp_path / "labels.xlsx").write_bytes(b"PK\x03\x04 zipped sheets")
    (tmp_path / "saved-as.csv").write_bytes(b"\xd0\xcf\x11\xe0 an old .xls renamed")
    for name in ("labels.xlsx", "saved-as.csv"):
        with pytest.raises(ContrastiveError, match=f"{name} is a spreadsheet workbook, not text"):
            read_label_table(tmp_path / name)
