"""``contrastive embed`` and ``contrastive eval knn|linear`` end to end on tiny folders."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from lightly.models.modules import SimCLRProjectionHead

import contrastive.cli as cli
from contrastive.backbone_config import BackboneConfig
from contrastive.embeddings import load_embeddings
from contrastive.errors import ContrastiveError


def run_cli(*arguments: object) -> int:
    return cli.main([str(argument) for argument in arguments])


def embed(run_dir: Path, folder: Path, out: Path) -> Path:
    assert run_cli("embed", "--run", run_dir, "--data", folder, "--out", out, "--no-progress") == 0
    return out


def test_embed_then_knn_with_baselines(
    run_dir: Path, colour_folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    train = embed(run_dir, colour_folders["train"], tmp_path / "train.npz")
    test = embed(run_dir, colour_folders["test"], tmp_path / "test.npz")
    embedded = load_embeddings(train)
    assert embedded.embeddings.shape == (18, 128) and embedded.source == str(run_dir)
    capsys.readouterr()
    assert (
        run_cli(
            "eval",
            "knn",
            "--train",
            train,
            "--test",
            test,
            "--k",
            "1,5",
            "--baselines",
            "--no-progress",
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "| raw pixels" in printed and "k=5 top1" in printed
    assert "top5" not in printed  # 3 classes: top-5 is 100% by construction, so not printed
    report = json.loads((tmp_path / "train.knn.json").read_text())
    # How far 9 test images pin the top-1 down, and what guessing would score.
    top1 = report["results"]["model"]["k=1"]["top1"]
    low, high = report["data"]["model_top1_interval_95"]
    assert low < top1 < high or top1 in (low, high)
    assert high - low > 0.25 and report["data"]["test_largest_class_share"] == pytest.approx(1 / 3)
    assert f"9 test images: the model's k=1 top-1, {100 * top1:.2f}, lies in" in printed
    assert "naming the largest class would score 33.33" in printed
    assert set(report["results"]) == {"model", "random_init", "raw_pixels"}
    # Colour classes: raw pixels are perfectly separable.
    assert report["results"]["raw_pixels"]["k=1"] == {"top1": 1.0, "top5": 1.0}
    assert report["settings"]["k"] == [1, 5] and report["checkpoint"] == str(run_dir)
    # The interval, gains and recall are of the first k, and the JSON says so.
    assert report["data"]["model_figures_of"] == "k=1"
    assert "Wilson" in report["data"]["interval_methods"]["model_top1_interval_95"]
    assert report["data"]["train_count"] == 18 and report["data"]["test_count"] == 9
    # How much the model beats each baseline, paired on the same 9 test images: raw pixels
    # are right on all 9, so the gain over them is minus the images the model misses.
    gains = report["data"]["model_gain_interval_95"]
    assert set(gains) == {"random_init", "raw_pixels"}
    assert gains["raw_pixels"]["mean"] == pytest.approx(top1 - 1.0)
    assert gains["raw_pixels"]["low"] <= gains["raw_pixels"]["mean"] <= gains["raw_pixels"]["high"]
    assert "the model's k=1 top-1 against each baseline" in printed
    # Raw pixels are right on every image: the model is behind them or level, never ahead.
    raw = gains["raw_pixels"]
    assert ("behind raw pixels" if raw["high"] < 0 else "not told apart from raw pixels") in (
        printed
    )
    assert "ahead of raw pixels" not in printed
    recall = report["data"]["model_per_class_recall"]
    assert (
        list(recall) == embedded.classes.tolist() if hasattr(embedded.classes, "tolist") else True
    )
    balanced = 100 * sum(recall.values()) / len(recall)
    # The baselines' beside the model's (raw pixels find every colour class).
    assert f"balanced accuracy (mean recall) {balanced:.2f} (random init " in printed
    assert printed.count("raw pixels 100.00)") == 1
    assert report["data"]["balanced_accuracy"]["raw_pixels"] == 1.0
    assert report["data"]["balanced_accuracy"]["model"] == report["data"]["model_balanced_accuracy"]
    assert "note: k=" not in printed  # 6 training images per class, k at most 5
    # k above the training images of classes of one size leans nowhere: no advice to lower it.
    arguments = ["eval", "knn", "--train", train, "--test", test, "--k", "1,7"]
    assert run_cli(*arguments, "--out", tmp_path / "k7.json", "--no-progress") == 0
    assert "note: k=" not in capsys.readouterr().out


def test_a_large_k_is_noted_where_it_leans_to_the_large_classes() -> None:
    from contrastive.cli.evaluate import _large_k_note
    from contrastive.evaluation.labels import LabeledPair

    def pair(counts: list[int]) -> LabeledPair:
        labels = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
        features = torch.zeros(len(labels), 2)
        return LabeledPair(features, labels, features[:1], labels[:1], ["a", "b", "c"])

    assert _large_k_note([20, 100], pair([10, 9, 11])) == ""  # one size: leans nowhere
    note = _large_k_note([20, 200], pair([400, 60, 8]))
    assert note.startswith("\nnote: k=200 is more than the training images of 2 of 3 classes")


def test_default_k_fits_a_small_labeled_folder(
    run_dir: Path, colour_folders: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    # 18 train images: the default k=20,200 would ask for more neighbours than there are.
    arguments = ["eval", "knn", "--run", run_dir, "--no-progress"]
    arguments += ["--train", colour_folders["train"], "--test", colour_folders["test"]]
    assert run_cli(*arguments) == 0
    assert "18 train images vote: kNN with k=[18]" in capsys.readouterr().out
    report = json.loads((run_dir / "evaluation" / "knn.json").read_text())
    assert report["settings"]["k"] == [18] and set(report["results"]["model"]) == {"k=18"}
    # A k the user asks for is theirs: too many neighbours is still an error.
    error = one_line_error(capsys, *arguments, "--k", "20")
    assert "k values must lie in [1, 18]" in error and "--k values" not in error
    # A second evaluation into the run keeps the first report under its time, not lost.
    assert run_cli(*arguments, "--k", "3") == 0
    assert "the earlier one kept as knn." in capsys.readouterr().out
    kept = [path for path in (run_dir / "evaluation").glob("knn.*.json")]
    assert len(kept) == 1 and json.loads(kept[0].read_text()) == report
    assert json.loads((run_dir / "evaluation" / "knn.json").read_text())["settings"]["k"] == [3]


def test_linear_on_folders_writes_into_the_run(
    run_dir: Path, colour_folders: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    assert (
        run_cli(
            "eval",
            "linear",
            "--train",
            colour_folders["train"],
            "--test",
            colour_folders["test"],
            "--run",
            run_dir,
            "--weight-decay",
            "1e-3,1e-1",
            "--no-progress",
        )
        == 0
    )
    report = json.loads((run_dir / "evaluation" / "linear.json").read_text())
    model = report["results"]["model"]
    assert len(model["confusion_matrix"]) == 3 and len(model["per_class_accuracy"]) == 3
    assert model["weight_decay"] in (1e-3, 1e-1)
    assert report["settings"]["weight_decay_grid"] == [1e-3, 1e-1]
    assert report["data"]["model_figures_of"] == "linear"
    # Matched to the run it measured by more than a path that can move or be re-trained.
    import hashlib

    run = report["run"]
    expected_hash = hashlib.sha256((run_dir / "config.yaml").read_bytes()).hexdigest()
    assert run["config_sha256"] == expected_hash and run["folder"] == str(run_dir)
    assert run["method"] == "simclr" and "seed" in run and report["contrastive_version"]
    # The grid is searched on validation images the probe's --seed draws: that moves the
    # score as much as a training seed does, and a comparison should fix the weight decay.
    assert "so does the probe's --seed" in capsys.readouterr().out


def test_augmented_protocol_is_gone(
    run_dir: Path, colour_folders: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    # Removed (issue 13): on a CIFAR-10 subset it scored below the cached-feature probe.
    arguments = ["eval", "linear", "--protocol", "lightly", "--run", run_dir]
    arguments += ["--train", colour_folders["train"], "--test", colour_folders["test"]]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(*arguments)
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --protocol lightly" in capsys.readouterr().err


def one_line_error(capsys: pytest.CaptureFixture, *arguments: object) -> str:
    assert run_cli(*arguments) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "\n" not in error
    return error


def test_unlabeled_folder_is_refused(
    run_dir: Path,
    colour_folders: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    make_colour_folder: Callable[..., Path],
) -> None:
    flat = make_colour_folder(tmp_path / "flat", 2, seed=3)
    for image in flat.glob("*/*.png"):
        image.rename(flat / f"{image.parent.name}_{image.name}")
    error = one_line_error(
        capsys,
        "eval",
        "knn",
        "--train",
        colour_folders["train"],
        "--test",
        flat,
        "--run",
        run_dir,
        "--no-progress",
    )
    assert "--test" in error and "unlabeled" in error


def test_unseen_test_class_is_refused_before_anything_is_embedded(
    run_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    make_colour_folder: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    train = make_colour_folder(tmp_path / "train", 2, seed=0, classes=("blue", "green"))
    test = make_colour_folder(tmp_path / "test", 2, seed=1, classes=("blue", "red"))
    monkeypatch.setattr(
        "contrastive.evaluation.inputs.embed_folder",
        lambda *_a, **_k: pytest.fail("embedded before the classes were checked"),
    )
    error = one_line_error(
        capsys,
        "eval",
        "knn",
        "--train",
        train,
        "--test",
        test,
        "--run",
        run_dir,
        "--baselines",
        "--k",
        "1",
        "--no-progress",
    )
    assert "not in --train" in error and "red" in error


def test_mismatched_widths_are_refused(
    run_dir: Path, colour_folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    train = embed(run_dir, colour_folders["train"], tmp_path / "train.npz")
    narrow = load_embeddings(train)
    np.savez(
        tmp_path / "narrow.npz",
        embeddings=narrow.embeddings[:, :10],
        paths=narrow.paths,
        labels=narrow.labels,
        classes=narrow.classes,
    )
    error = one_line_error(
        capsys, "eval", "linear", "--train", train, "--test", tmp_path / "narrow.npz"
    )
    assert "128-d" in error and "10-d" in error


def test_checkpoint_of_another_architecture_is_refused(
    run_dir: Path, colour_folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    error = one_line_error(
        capsys,
        "embed",
        "--checkpoint",
        run_dir / "backbone.pt",
        "--backbone",
        "resnet18",
        "--input-size",
        "16",
        "--data",
        colour_folders["test"],
        "--out",
        tmp_path / "x.npz",
    )
    assert "does not fit backbone resnet18" in error


def test_folder_without_encoder_is_refused(
    colour_folders: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    error = one_line_error(
        capsys, "eval", "knn", "--train", colour_folders["train"], "--test", colour_folders["test"]
    )
    assert "give --run or --checkpoint" in error


def test_projector_from_checkpoint(
    run_dir: Path, colour_folders: dict[str, Path], tmp_path: Path
) -> None:
    backbone = torch.load(run_dir / "backbone.pt", weights_only=True)
    head = SimCLRProjectionHead(128, 64, 32)
    state = {
        **{f"backbone.{k}": v for k, v in backbone.items()},
        **{f"projection_head.{k}": v for k, v in head.state_dict().items()},
    }
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    # The head is rebuilt from the run's config, which holds the head's widths.
    config["method"].update(projection_hidden_dim=64, projection_output_dim=32)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / "checkpoints").mkdir()
    torch.save(
        {"state_dict": state, "hyper_parameters": {"config": config}},
        run_dir / "checkpoints" / "last.ckpt",
    )
    out = tmp_path / "projected.npz"
    assert (
        run_cli(
            "embed",
            "--run",
            run_dir,
            "--data",
            colour_folders["test"],
            "--out",
            out,
            "--projection-head",
            "--no-progress",
        )
        == 0
    )
    projected = load_embeddings(out)
    assert projected.embeddings.shape == (9, 32) and projected.feature == "projector"


def test_run_not_behind_the_npz_is_warned_and_not_recorded(
    run_dir: Path, tmp_path: Path, npz_pair: Callable[..., tuple[Path, Path]]
) -> None:
    # The scores come from the .npz files: the report must name their checkpoint, not --run.
    train, test = npz_pair(tmp_path, source="another_run")
    out = tmp_path / "knn.json"
    arguments = ["eval", "knn", "--run", run_dir, "--train", train, "--test", test, "--k", "1"]
    with pytest.warns(UserWarning) as caught:
        assert run_cli(*arguments, "--out", out, "--no-progress") == 0
    messages = [str(warning.message) for warning in caught]
    assert messages == [
        f"--run/--checkpoint {run_dir} is not used: the .npz files hold features of another_run"
    ]
    assert json.loads(out.read_text())["checkpoint"] == "another_run"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["linear", "--val-fraction", "0"], "argument --val-fraction: expected a number in (0, 1)"),
        (["linear", "--val-fraction", "-0.1"], "--val-fraction: expected a number in (0, 1)"),
        (["linear", "--val-fraction", "1"], "--val-fraction: expected a number in (0, 1)"),
        (["linear", "--val-fraction", "1.5"], "--val-fraction: expected a number in (0, 1)"),
        (["knn", "--temperature", "inf"], "argument --temperature: expected a finite number > 0"),
        (["knn", "--temperature", "0"], "argument --temperature: expected a finite number > 0"),
        (["knn", "--temperature", "nan"], "argument --temperature: expected a finite number > 0"),
        (["knn", "--k", "0"], "argument --k: expected integers >= 1"),
        (["knn", "--k", "5,-1"], "argument --k: expected integers >= 1"),
        (["fewshot", "--k", "0"], "argument --k: must be at least 1, got 0"),
        (["fewshot", "--temperature", "inf"], "argument --temperature: expected a finite"),
    ],
)
def test_bad_settings_are_refused_before_embedding(
    arguments: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # Folders that do not exist: a refusal here comes from argparse, before any embedding.
    with pytest.raises(SystemExit) as exit_info:
        run_cli("eval", *arguments, "--train", tmp_path / "a", "--test", tmp_path / "b")
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_missing_path_or_one_image_is_named_for_what_it_should_be(
    run_dir: Path, colour_folders: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    base = ["eval", "knn", "--run", run_dir, "--no-progress", "--train", colour_folders["train"]]
    error = one_line_error(capsys, *base, "--test", colour_folders["test"] / "nowhere")
    assert "--test" in error and "not found: give a folder of class sub-folders" in error
    image = next(colour_folders["test"].rglob("*.png"))
    error = one_line_error(capsys, *base, "--test", image)
    assert f"--test {image} is one image: give its folder" in error
    assert "pickle" not in error


def test_baselines_of_embeddings_from_plain_weights_take_the_architecture_flags(
    run_dir: Path, colour_folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    weights = tmp_path / "plain.pt"  # weights another tool saved: no config.yaml beside them
    weights.write_bytes((run_dir / "backbone.pt").read_bytes())
    flags = ("--backbone", "resnet18_quarter", "--input-size", "16")
    npz = {}
    for split in ("train", "test"):
        npz[split] = tmp_path / f"{split}.npz"
        assert (
            run_cli("embed", "--checkpoint", weights, *flags, "--data", colour_folders[split],
                    "--out", npz[split], "--no-progress")
            == 0
        )  # fmt: skip
    evaluate = ("eval", "knn", "--train", npz["train"], "--test", npz["test"], "--k", "3")
    error = one_line_error(capsys, *evaluate, "--baselines")
    assert "records no architecture: give --backbone NAME and --input-size PX" in error
    # Before, the same error came with both flags given.
    assert run_cli(*evaluate, "--baselines", *flags, "--no-progress") == 0
    report = json.loads((tmp_path / "train.knn.json").read_text())
    assert set(report["results"]) == {"model", "random_init", "raw_pixels"}


def test_mean_and_std_flags_normalise_plain_weights(
    run_dir: Path, colour_folders: dict[str, Path], tmp_path: Path
) -> None:
    from contrastive.encoder import load_encoder
    from contrastive.views.config import ViewConfig

    weights = tmp_path / "plain.pt"
    weights.write_bytes((run_dir / "backbone.pt").read_bytes())
    flags = ("--checkpoint", weights, "--backbone", "resnet18_quarter", "--input-size", "16")
    cifar = ("--mean", "0.4914", "0.4822", "0.4465", "--std", "0.247", "0.243", "0.261")
    for name, extra in (("imagenet", ()), ("cifar", cifar)):
        out = tmp_path / f"{name}.npz"
        assert run_cli("embed", *flags, *extra, "--data", colour_folders["test"], "--out", out,
                       "--no-progress") == 0  # fmt: skip
    default, given = (
        load_embeddings(tmp_path / "imagenet.npz"),
        load_embeddings(tmp_path / "cifar.npz"),
    )
    assert not np.allclose(default.embeddings, given.embeddings, atol=1e-3)
    assert given.preprocessing == "16 px, mean (0.4914, 0.4822, 0.4465), std (0.247, 0.243, 0.261)"
    # Features of the same weights under other normalisation do not compare: said.
    with pytest.warns(UserWarning, match="other preprocessing .*mean \\(0.485, 0.456, 0.406\\)"):
        run_cli("eval", "knn", "--train", tmp_path / "imagenet.npz", "--test",
                tmp_path / "cifar.npz", "--k", "3", "--out", tmp_path / "knn.json")  # fmt: skip
    views = ViewConfig(input_size=16, mean=(0.4914, 0.4822, 0.4465), std=(0.247, 0.243, 0.261))
    encoder = load_encoder(weights, BackboneConfig("resnet18_quarter"), views)
    files = [colour_folders["test"] / path for path in given.paths]
    assert np.allclose(encoder.embed(files).numpy(), given.embeddings, atol=1e-4)


def test_embed_picks_a_moco_files_query_encoder_with_a_weights_prefix(
    run_dir: Path, colour_folders: dict[str, Path], tmp_path: Path
) -> None:
    weights = torch.load(run_dir / "backbone.pt")
    moco = {f"encoder_q.{k}": v for k, v in weights.items()}
    moco.update({f"encoder_k.{k}": torch.zeros_like(v) for k, v in weights.items()})
    moco["queue"] = torch.zeros(16, 8)
    checkpoint = tmp_path / "moco.pth.tar"
    torch.save({"state_dict": moco, "epoch": 200}, checkpoint)
    ours = embed(run_dir, colour_folders["test"], tmp_path / "ours.npz")
    picked = tmp_path / "moco.npz"
    assert (
        run_cli("embed", "--checkpoint", checkpoint, "--weights-prefix", "encoder_q.",
                "--backbone", "resnet18_quarter", "--input-size", "16",
                "--data", colour_folders["test"], "--out", picked, "--no-progress")
        == 0
    )  # fmt: skip
    assert np.array_equal(load_embeddings(ours).embeddings, load_embeddings(picked).embeddings)


def flattened(folder: Path, flat: Path, table: Path, keep: Callable[[int], bool]) -> Path:
    """Copies each class folder's images into ``flat/`` as ``CLASS_NAME`` and writes the
    ``label,name`` table (STL-10's layout: the label first) of those ``keep(i)`` selects."""
    flat.mkdir()
    rows = ["label,name"]
    for index, image in enumerate(sorted(folder.glob("*/*.png"))):
        name = f"{image.parent.name}_{image.name}"
        (flat / name).write_bytes(image.read_bytes())
        if keep(index):
            rows.append(f"{image.parent.name},{name}")
    table.write_text("\n".join(rows) + "\n")
    return flat


def knn_top1(*arguments: object, out: Path) -> float:
    assert run_cli("eval", "knn", "--k", "3", "--no-progress", "--out", out, *arguments) == 0
    return json.loads(out.read_text())["results"]["model"]["k=3"]["top1"]


def test_labels_from_a_table_score_as_the_class_folders(
    run_dir: Path, colour_folders: dict[str, Path], tmp_path: Path, capsys
) -> None:
    table = tmp_path / "labels.csv"
    flat = flattened(colour_folders["train"], tmp_path / "flat", table, lambda index: True)
    test = colour_folders["test"]
    folders = knn_top1("--run", run_dir, "--train", colour_folders["train"], "--test", test,
                       out=tmp_path / "folders.json")  # fmt: skip
    # The table names no test image: the test set keeps its class folders.
    tabled = knn_top1("--run", run_dir, "--train", flat, "--test", test, "--labels", table,
                      out=tmp_path / "table.json")  # fmt: skip
    assert tabled == folders
    capsys.readouterr()
    out = tmp_path / "flat.npz"
    assert run_cli("embed", "--run", run_dir, "--data", flat, "--labels", table, "--out", out,
                   "--no-progress") == 0  # fmt: skip
    assert "18 of the 18 images labeled, 3 classes" in capsys.readouterr().out
    embedded = load_embeddings(out)
    named = [name.split("_")[0] for name in embedded.paths]
    assert [embedded.classes[label] for label in embedded.labels] == named
    npz = knn_top1("--run", run_dir, "--train", out, "--test", test, out=tmp_path / "npz.json")
    assert npz == folders


def test_a_mostly_unlabeled_folder_is_evaluated_on_its_labeled_images(
    run_dir: Path, colour_folders: dict[str, Path], tmp_path: Path
) -> None:
    table = tmp_path / "labels.csv"
    flat = flattened(colour_folders["train"], tmp_path / "flat", table, lambda i: i % 3 == 0)
    labelled = tmp_path / "labelled"
    for row in table.read_text().splitlines()[1:]:
        label, name = row.split(",")
        (labelled / label).mkdir(parents=True, exist_ok=True)
        (labelled / label / name).write_bytes((flat / name).read_bytes())
    test = colour_folders["test"]
    expected = knn_top1("--run", run_dir, "--train", labelled, "--test", test,
                        out=tmp_path / "labelled.json")  # fmt: skip
    with pytest.warns(UserWarning) as record:
        top1 = knn_top1("--run", run_dir, "--train", flat, "--test", test, "--labels", table,
                        "--baselines", out=tmp_path / "flat.json")  # fmt: skip
    assert top1 == expected
    warned = [str(warning.message) for warning in record]
    # Once, though three feature sets (model, random init, raw pixels) were scored.
    left_out = [text for text in warned if "12 of its 18 images have no label" in text]
    assert len(left_out) == 1 and "evaluating its 6 labeled images" in left_out[0]


def test_a_table_naming_no_image_is_one_line_error_before_embedding(
    run_dir: Path, colour_folders: dict[str, Path], tmp_path: Path, capsys
) -> None:
    table = tmp_path / "ids.csv"
    table.write_text("id,label\nA17,red\n")
    error = one_line_error(capsys, "eval", "knn", "--run", run_dir, "--train",
                           colour_folders["train"], "--test", colour_folders["test"],
                           "--labels", table, "--no-progress")  # fmt: skip
    assert "no row of" in error and "ids.csv" in error and "'A17' (in 'id')" in error
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,c\nx,y,z\n")
    with pytest.raises(SystemExit):  # a usage error, as argparse reports it
        run_cli("embed", "--run", run_dir, "--data", colour_folders["test"], "--labels", bad,
                "--out", tmp_path / "x.npz")  # fmt: skip
    error = capsys.readouterr().err.strip()
    assert (
        "\n" not in error
        and "argument --labels" in error
        and "bad.csv has no header and 3 columns" in error
    )


def test_a_projector_export_inside_the_data_folder_is_refused(
    run_dir: Path, colour_folders: dict[str, Path], tmp_path: Path, capsys
) -> None:
    error = one_line_error(capsys, "embed", "--run", run_dir, "--data", colour_folders["test"],
                           "--out", tmp_path / "x.npz", "--projector",
                           colour_folders["test"] / "projector")  # fmt: skip
    assert "--projector" in error and "is inside --data" in error
    assert not (tmp_path / "x.npz").exists()


def test_the_report_holds_balanced_accuracy_and_the_table_comes_before_writing(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch, npz_pair
) -> None:
    train, test = npz_pair(tmp_path)
    out = tmp_path / "knn.json"
    assert run_cli("eval", "knn", "--train", train, "--test", test, "--k", "3", "--out", out) == 0
    data = json.loads(out.read_text())["data"]
    recall = [value for value in data["model_per_class_recall"].values() if value is not None]
    assert data["model_balanced_accuracy"] == pytest.approx(sum(recall) / len(recall))
    printed = capsys.readouterr().out
    assert f"balanced accuracy (mean recall) {100 * data['model_balanced_accuracy']:.2f}" in printed

    def full_disk(report, path) -> None:  # noqa: ANN001
        raise ContrastiveError(f"cannot write {path}: No space left on device")

    monkeypatch.setattr("contrastive.cli.evaluate.write_report", full_disk)
    assert run_cli("eval", "knn", "--train", train, "--test", test, "--k", "3", "--out", out) == 2
    assert "| model" in capsys.readouterr().out  # the scores were printed all the same
    # A default place that cannot be written is refused before anything is computed.
    monkeypatch.setattr("os.access", lambda path, mode: Path(path) != train.parent)
    error = one_line_error(capsys, "eval", "knn", "--train", train, "--test", test)
    assert f"would be written to {train.parent}" in error and "give --out" in error
