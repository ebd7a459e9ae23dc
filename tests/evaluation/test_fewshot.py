"""Few-label evaluation: references at 'all', seeded draws, shrinking intervals, CLI, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import contrastive.cli as cli
from contrastive.encoder import load_encoder
from contrastive.errors import ContrastiveError
from contrastive.evaluation.fewshot import draw_labeled, few_label_evaluation, t_interval
from contrastive.evaluation.knn import knn_classify
from contrastive.evaluation.linear import linear_probe
from contrastive.evaluation.settings import ALL, parse_counts


def blobs(per_class: int, classes: int = 3, dim: int = 8, spread: float = 2.0, seed: int = 0):
    """Gaussian classes with overlapping clouds: accuracy well between chance and 100%."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(99)) * 1.5
    labels = torch.arange(classes).repeat_interleave(per_class)
    features = centres[labels] + spread * torch.randn(len(labels), dim, generator=generator)
    return features, labels


def test_all_labels_agree_with_knn_and_linear_probe() -> None:
    train, train_labels = blobs(60)
    test, test_labels = blobs(40, seed=1)
    grid = (1e-3, 1e-2, 1e-1)
    result = few_label_evaluation(
        train, train_labels, test, test_labels, [ALL], k=20, weight_decays=grid
    )
    knn = knn_classify(train, train_labels, test, k=20)[:, 0]
    probe = linear_probe(train, train_labels, test, test_labels, weight_decays=grid)
    scores = result.scores[ALL]
    assert scores["knn"][ALL].mean == pytest.approx((knn == test_labels).float().mean().item())
    assert scores["linear"][ALL].mean == pytest.approx(probe.summary["top1"])
    assert scores["knn"][ALL].accuracies == [scores["knn"][ALL].mean]  # one draw at 'all'
    assert result.weight_decay[ALL] == probe.weight_decay


def test_draws_depend_on_labels_and_seed_only() -> None:
    labels = torch.tensor([0, 1, 2] * 10 + [2, 2])
    first = draw_labeled(labels, 2, draws=4, seed=3)
    assert [d.tolist() for d in first] == [d.tolist() for d in draw_labeled(labels, 2, 4, 3)]
    assert [d.tolist() for d in first] != [d.tolist() for d in draw_labeled(labels, 2, 4, 4)]
    for draw in first:
        assert torch.bincount(labels[draw]).tolist() == [2, 2, 2]
    # Nested across counts: the 5-per-class sets extend the 2-per-class ones.
    for small, large in zip(first, draw_labeled(labels, 5, 4, 3)):
        assert set(small.tolist()) <= set(large.tolist())
    # Two encoders (different features, same labels) score the same labeled images: scaled
    # features (the same cosines) give identical kNN answers draw by draw.
    train, train_labels = blobs(10)
    test, test_labels = blobs(10, seed=1)
    a = few_label_evaluation(train, train_labels, test, test_labels, [1, 3], draws=3, seed=5)
    b = few_label_evaluation(2 * train, train_labels, 3 * test, test_labels, [1, 3], 3, 5)
    assert a.scores[ALL]["knn"][1].accuracies == b.scores[ALL]["knn"][1].accuracies


def test_short_classes_use_all_they_have_and_are_reported() -> None:
    train, train_labels = blobs(10)
    keep = torch.cat([torch.arange(20), torch.tensor([20, 21])])  # class 2 keeps 2 images
    result = few_label_evaluation(
        train[keep], train_labels[keep], *blobs(5, seed=1), counts=[1, 5], draws=2
    )
    assert result.short_classes[5] == {2: 2} and result.short_classes[1] == {}
    assert result.labeled == {1: 3, 5: 12}
    assert result.k == {1: 3, 5: 12}  # k capped at the labeled images


def test_counts_larger_than_every_class_are_left_out_with_a_warning() -> None:
    train, train_labels = blobs(10)
    with pytest.warns(UserWarning, match=r"^counts 20, 50 exceed every class \(the largest has 10"):
        result = few_label_evaluation(
            train, train_labels, *blobs(5, seed=1), counts=[1, 20, 50, "all"], draws=2
        )
    assert result.counts == [1, ALL]
    assert set(result.scores[ALL]["knn"]) == {1, ALL} and set(result.labeled) == {1, ALL}


def test_intervals_shrink_with_draws_and_cover_the_known_answer() -> None:
    train, train_labels = blobs(100, spread=2.5)
    test, test_labels = blobs(100, seed=1, spread=2.5)

    def score(draws: int, seed: int):
        result = few_label_evaluation(
            train, train_labels, test, test_labels, [2], draws, seed, protocols=["knn"]
        )
        return result.scores[ALL]["knn"][2]

    # The known answer: the mean over many draws.
    truth = score(120, 1000).mean
    few, many = score(4, 0), score(40, 0)
    assert many.high - many.low < 0.6 * (few.high - few.low)
    assert many.low <= truth <= many.high


def test_accuracy_intervals_stay_within_0_and_1() -> None:
    train, train_labels = blobs(20, spread=6.0)
    test, test_labels = blobs(20, seed=1, spread=6.0)
    result = few_label_evaluation(
        train, train_labels, test, test_labels, [1], draws=2, seed=3, protocols=["knn"]
    )
    score = result.scores[ALL]["knn"][1]
    unclipped = t_interval(score.accuracies)
    assert unclipped[0] < 0 or unclipped[1] > 1  # two noisy draws: t = 12.7
    assert 0.0 <= score.low <= score.mean <= score.high <= 1.0


def test_t_interval_matches_scipy() -> None:
    import scipy.stats

    values = [0.5, 0.6, 0.55, 0.7, 0.65]
    expected = scipy.stats.t.interval(
        0.95, len(values) - 1, loc=sum(values) / 5, scale=scipy.stats.sem(values)
    )
    assert t_interval(values) == pytest.approx(expected)
    assert t_interval([0.4]) == (0.4, 0.4)
    # Two draws: t = 12.7, an accuracy's interval would reach below 0 (10.7 [-36.9, 58.4]).
    low, high = t_interval([0.07, 0.144])
    assert low < 0 < high < 1
    assert t_interval([0.07, 0.144], bounds=(0.0, 1.0)) == (0.0, pytest.approx(high))


@pytest.mark.parametrize(
    ("counts", "labels", "message"),
    [
        # Worded as the parameter: a Python caller gave no --counts.
        (
            [50, 20],
            torch.arange(3).repeat_interleave(10),
            r"^counts 20, 50 exceed every class \(the largest has 10 images\)",
        ),
        ([1], torch.zeros(30, dtype=torch.long), "at least two classes"),
    ],
)
def test_bad_input_is_one_line_error(counts, labels, message: str) -> None:
    with pytest.raises(ContrastiveError, match=message):
        few_label_evaluation(torch.randn(30, 4), labels, torch.randn(5, 4), labels[:5], counts)
    with pytest.raises(ContrastiveError, match="^counts: expected positive integers or 'all'"):
        parse_counts("1,0")
    with pytest.raises(ContrastiveError, match="^counts is empty"):
        parse_counts(" , ")


def test_cli_writes_report_table_and_plot(
    run_dir: Path, colour_folders: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "fewshot"
    # A plain state_dict as a second encoder (--backbone names its architecture).
    weights = tmp_path / "other.pt"
    weights.write_bytes((run_dir / "backbone.pt").read_bytes())
    arguments = [
        "eval", "fewshot", "--run", run_dir, "--train", colour_folders["train"],
        "--test", colour_folders["test"], "--baselines", "--counts", "1,2,all", "--draws", "3",
        "--encoder", f"other={weights}", "--backbone", "resnet18_quarter", "--out", out,
        "--no-progress",
    ]  # fmt: skip
    assert cli.main([str(a) for a in arguments]) == 0
    report = json.loads((out / "fewshot.json").read_text())
    assert list(report["results"]) == ["model", "other", "random_init", "raw_pixels"]
    raw = report["results"]["raw_pixels"]["scores"]["all"]
    assert raw["knn"]["all"]["mean"] == 1.0  # colour classes: pixels separate them
    assert len(raw["linear"]["2"]["draws"]) == 3
    # The same weights give the same numbers: the draws are shared.
    assert report["results"]["other"]["scores"] == report["results"]["model"]["scores"]
    assert report["leak_check"]["test_images"] == 9
    assert "| raw pixels" in (out / "fewshot.md").read_text()
    # The table's intervals cover the labelled draws; the test images' own sampling is said.
    assert (
        "Which 9 test images were drawn moves a score too: model's kNN top-1 with all labels,"
        in (out / "fewshot.md").read_text()
    )
    # The same weights: a gain of exactly 0 with no spread; the baselines' gains are paired.
    assert report["gains"]["other"]["knn"]["1"] == {"mean": 0.0, "low": 0.0, "high": 0.0}
    assert set(report["gains"]) == {"other", "random_init", "raw_pixels"}
    assert "| model   | raw pixels  | knn" in (out / "fewshot.md").read_text()
    # Which k each column's kNN used (eval knn's k=20 and 200 would differ from 'all').
    assert (
        "kNN neighbours (k = min(--k, labelled images)): 1/class 3, 2/class 6, all 18."
        in (out / "fewshot.md").read_text()
    )
    assert (out / "fewshot.png").stat().st_size > 10_000


def test_cli_unlabeled_test_folder_is_one_line_error(
    run_dir: Path, colour_folders: dict[str, Path], tmp_path: Path, capsys
) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for path in (colour_folders["test"] / "red").iterdir():
        (flat / path.name).write_bytes(path.read_bytes())
    arguments = [
        "eval", "fewshot", "--run", run_dir, "--train", colour_folders["train"],
        "--test", flat, "--counts", "1", "--no-progress", "--out", tmp_path / "out",
    ]  # fmt: skip
    assert cli.main([str(a) for a in arguments]) == 2
    error = capsys.readouterr().err
    assert "unlabeled" in error and error.count("\n") == 1


def fewshot_cli(*arguments: object) -> int:
    return cli.main(["eval", "fewshot", "--no-progress", *map(str, arguments)])


def test_cli_out_is_a_reusable_folder(tmp_path: Path, capsys, npz_pair) -> None:
    train, test = npz_pair(tmp_path)
    out = tmp_path / "report"
    arguments = ["--train", train, "--test", test, "--counts", "1,all", "--draws", "2"]
    # Rerunning into the same folder replaces its fewshot.* files.
    assert fewshot_cli(*arguments, "--out", out, "--no-leak-check") == 0
    (out / "fewshot.json").write_text("earlier")
    (out / "fewshot_without_copies.png").write_text("earlier")
    assert fewshot_cli(*arguments, "--out", out, "--no-leak-check") == 0
    assert json.loads((out / "fewshot.json").read_text())["protocol"] == "fewshot"
    assert not (out / "fewshot_without_copies.png").exists()
    # An existing file is refused before any work, by argparse.
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        fewshot_cli(*arguments, "--out", train)
    assert exit_info.value.code == 2
    assert "is a file; give a folder" in capsys.readouterr().err


@pytest.mark.parametrize("counts", ["0", "-1", "abc", " , "])
def test_cli_bad_counts_are_usage_errors(counts: str, tmp_path: Path, capsys) -> None:
    # A ContrastiveError raised by an argparse type escapes main's handler as a traceback.
    with pytest.raises(SystemExit) as exit_info:
        fewshot_cli("--train", tmp_path / "a.npz", "--test", tmp_path / "b.npz", "--counts", counts)
    assert exit_info.value.code == 2
    assert "argument --counts: counts" in capsys.readouterr().err


def test_cli_reports_the_counts_evaluated(tmp_path: Path, npz_pair) -> None:
    # 4 images per class: the default counts 5, 10, ... are dropped (with a warning) and
    # must not be listed in the report's settings.
    train, test = npz_pair(tmp_path)
    out = tmp_path / "report"
    with pytest.warns(UserWarning, match="exceed every class"):
        assert fewshot_cli(
            "--train", train, "--test", test, "--draws", "2", "--out", out, "--no-leak-check"
        ) == 0  # fmt: skip
    report = json.loads((out / "fewshot.json").read_text())
    assert report["settings"]["counts"] == ["1", "2", "all"]


def test_cli_unlabeled_folder_is_checked_and_never_ignored(
    tmp_path: Path, npz_pair, capsys
) -> None:
    train, test = npz_pair(tmp_path)
    args = ["--train", train, "--test", test, "--out", tmp_path / "report"]
    assert fewshot_cli(*args, "--unlabeled", tmp_path / "nope") == 2
    assert f"--unlabeled {tmp_path / 'nope'} is not a folder" in capsys.readouterr().err
    assert fewshot_cli(*args, "--unlabeled", tmp_path, "--no-leak-check") == 2
    assert "drop --no-leak-check or --unlabeled" in capsys.readouterr().err
    assert not (tmp_path / "report").exists()


def test_short_classes_are_listed_by_name() -> None:
    from contrastive.cli.fewshot import _short_classes

    short = {1: {}, 2: {2: 1, 0: 3}, 5: {2: 1}}
    assert _short_classes(short, ["daisy", "dandelion", "rose"]) == (
        "daisy (3 images), rose (1 image) at 2 per class; rose (1 image) at 5 per class"
    )


def test_counts_larger_than_every_class_are_warned_about_once_for_all_sets(
    tmp_path: Path, npz_pair
) -> None:
    import warnings

    from contrastive.embeddings import load_embeddings
    from contrastive.evaluation.fewshot_report import few_label_comparison

    train, test = (load_embeddings(path) for path in npz_pair(tmp_path))
    sets = {"model": (train, test), "baseline": (train, test), "other": (train, test)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        comparison = few_label_comparison(sets, [1, 10, 25, "all"], 2, 0, check_leaks=False)
    exceeded = [w for w in caught if "exceed every class" in str(w.message)]
    # Before: once per feature set (3 here; the sweep's --baselines printed it 3 times).
    assert len(exceeded) == 1
    assert all(result.counts == [1, "all"] for result in comparison.results.values())


def test_an_encoder_that_records_no_architecture_takes_options_after_its_path(
    run_dir: Path, colour_folders: dict[str, Path], tmp_path: Path, capsys
) -> None:
    # Lightly's example layout in a Lightning checkpoint of its own: no config of ours.
    backbone = torch.load(run_dir / "backbone.pt")
    names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    state = {}
    for key, value in backbone.items():
        child, _, rest = key.partition(".")
        state[f"backbone.{names.index(child)}.{rest}"] = value
    checkpoint = tmp_path / "lightly.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": {"lr": 0.06}}, checkpoint)
    out = tmp_path / "fewshot"
    arguments = [
        "eval", "fewshot", "--run", run_dir, "--train", colour_folders["train"],
        "--test", colour_folders["test"], "--counts", "1,all", "--draws", "2",
        "--encoder", f"lightly={checkpoint},backbone=resnet18_quarter,input-size=16",
        "--encoder", f"picked={checkpoint},backbone=resnet18_quarter,input-size=16,"
        "weights-prefix=state_dict.backbone.",
        "--out", out, "--no-progress",
    ]  # fmt: skip
    assert cli.main([str(a) for a in arguments]) == 0
    report = json.loads((out / "fewshot.json").read_text())
    assert report["results"]["lightly"]["scores"] == report["results"]["model"]["scores"]
    assert report["results"]["picked"]["scores"] == report["results"]["model"]["scores"]
    arguments[arguments.index("--encoder") + 1] = f"lightly={checkpoint},width=2"
    capsys.readouterr()
    assert cli.main([str(a) for a in arguments]) != 0
    assert "unknown option 'width=2'" in capsys.readouterr().err


def test_options_after_a_runs_path_resize_it_or_are_refused(
    run_dir: Path, colour_folders: dict[str, Path], tmp_path: Path, capsys
) -> None:
    out = tmp_path / "fewshot"
    base = [
        "eval", "fewshot", "--run", run_dir, "--train", colour_folders["train"],
        "--test", colour_folders["test"], "--counts", "all", "--draws", "2", "--out", out,
        "--no-progress", "--encoder",
    ]  # fmt: skip
    # input-size= applies to a run too (it was ignored without a word).
    from argparse import Namespace

    from contrastive.cli.fewshot import _load_extra_encoder

    flags = Namespace(backbone=None, small_image_stem=False, input_size=None)
    resized = _load_extra_encoder(flags, None, None, run_dir, {"input-size": "32"})
    assert (
        resized.view_config.evaluation_size
        == 32
        != load_encoder(run_dir).view_config.evaluation_size
    )
    assert cli.main([str(a) for a in [*base, f"other={run_dir},backbone=resnet50"]]) != 0
    error = capsys.readouterr().err
    assert "--encoder other:" in error and "records its architecture (resnet18_quarter)" in error


def test_an_encoders_error_names_it_and_its_options(
    run_dir: Path, colour_folders: dict[str, Path], tmp_path: Path, capsys
) -> None:
    torch.manual_seed(0)
    from contrastive.backbone_config import BackboneConfig
    from contrastive.backbones import build_backbone

    small, _ = build_backbone(BackboneConfig("resnet18", small_image_stem=True))
    weights = tmp_path / "cifar_resnet.pt"
    torch.save(small.state_dict(), weights)
    arguments = [
        "eval", "fewshot", "--run", run_dir, "--train", colour_folders["train"],
        "--test", colour_folders["test"], "--counts", "all", "--draws", "2",
        "--out", tmp_path / "fewshot", "--no-progress",
        "--encoder", f"solo={weights},backbone=resnet18,input-size=16",
    ]  # fmt: skip
    assert cli.main([str(a) for a in arguments]) != 0
    error = capsys.readouterr().err
    assert error.startswith("error: --encoder solo: ") and "add ,small-image-stem" in error


def test_an_encoder_beside_embeddings_of_plain_weights_is_not_blamed_on_them(
    run_dir: Path, colour_folders: dict[str, Path], tmp_path: Path
) -> None:
    weights = tmp_path / "plain.pt"  # no config.yaml beside it
    weights.write_bytes((run_dir / "backbone.pt").read_bytes())
    flags = ["--backbone", "resnet18_quarter", "--input-size", "16", "--no-progress"]
    for split in ("train", "test"):
        embedded = ["embed", "--checkpoint", weights, "--data", colour_folders[split]]
        assert (
            cli.main([str(a) for a in [*embedded, "--out", tmp_path / f"{split}.npz", *flags]]) == 0
        )
    # Before: "plain.pt holds weights without a contrastive configuration" for the .npz's
    # weights, though the encoder gave its own architecture.
    arguments = [
        "eval", "fewshot", "--train", tmp_path / "train.npz", "--test", tmp_path / "test.npz",
        "--counts", "all", "--draws", "2", "--out", tmp_path / "fewshot", "--no-progress",
        "--encoder", f"other={run_dir / 'backbone.pt'}",
        "--encoder", f"copy={weights},backbone=resnet18_quarter,input-size=16",
    ]  # fmt: skip
    assert cli.main([str(a) for a in arguments]) == 0
    report = json.loads((tmp_path / "fewshot" / "fewshot.json").read_text())
    assert report["results"]["copy"]["scores"] == report["results"]["model"]["scores"]


def test_cli_few_labels_of_a_table_in_a_mostly_unlabeled_folder(
    run_dir: Path, colour_folders: dict[str, Path], tmp_path: Path
) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    rows = ["path,label"]
    for index, image in enumerate(sorted(colour_folders["train"].glob("*/*.png"))):
        (flat / f"{image.parent.name}_{image.name}").write_bytes(image.read_bytes())
        if index % 2:
            rows.append(f"{image.parent.name}_{image.name},{image.parent.name}")
    (tmp_path / "labels.csv").write_text("\n".join(rows))
    out = tmp_path / "fewshot"
    arguments = [
        "--run", run_dir, "--train", flat, "--test", colour_folders["test"], "--labels",
        tmp_path / "labels.csv", "--counts", "1,all", "--draws", "2", "--baselines", "--out", out,
    ]  # fmt: skip
    with pytest.warns(UserWarning, match="9 of its 18 images have no label"):
        assert fewshot_cli(*arguments) == 0
    report = json.loads((out / "fewshot.json").read_text())
    # 9 labelled images of 18 (3 per class): 'all' is 3 per class; every test image scored.
    assert report["results"]["raw_pixels"]["scores"]["all"]["knn"]["all"]["mean"] == 1.0
    assert report["leak_check"]["test_images"] == 9
    # The images without a label trained the encoder too: searched for copies of test images.
    assert report["leak_check"]["searched"] == ["labeled train", "train without labels"]
    assert "all 9." in (out / "fewshot.md").read_text()


def test_cli_out_inside_an_image_folder_is_refused(
    run_dir: Path, colour_folders: dict[str, Path], tmp_path: Path, capsys
) -> None:
    # Its plots would be scanned as images of a new class 'reports' the next time.
    train = tmp_path / "train.npz"
    assert cli.main(["embed", "--run", str(run_dir), "--data", str(colour_folders["train"]),
                     "--out", str(train), "--no-progress"]) == 0  # fmt: skip
    for given, out in (
        (colour_folders["test"], colour_folders["test"] / "reports"),
        (colour_folders["test"], colour_folders["train"] / "reports"),  # the .npz's folder
    ):
        arguments = ["--run", run_dir, "--train", train, "--test", given, "--out", out]
        assert fewshot_cli(*arguments) == 2
        error = capsys.readouterr().err
        assert "is inside --t" in error and "the next scan would take the report's images" in error
        assert not out.exists()
