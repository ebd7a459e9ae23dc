"""The notebooks in ``notebooks/``: committed without outputs, and runnable headless.

``test_notebooks_run`` executes every notebook in order on a real Jupyter kernel of this
interpreter (nbclient), on a small subset of the demo digits and a few training epochs; an
error in any cell fails it. The executed copies and the figures the notebooks save are
left in ``test-artifacts/notebooks/`` (git-ignored) for a person to look at.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from contrastive.data.demo import ensure_demo_digits

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
# Sorted by name: 02, 03 and 04 reuse the run 01 trains.
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
ARTIFACTS = ROOT / "test-artifacts" / "notebooks"
KERNEL = "contrastive-test"
CELL_TIMEOUT_S = 300

# Figures the notebooks save under CONTRASTIVE_NOTEBOOK_OUT.
EXPECTED_FIGURES = [
    "explore/figures/map_pca.png",
    "explore/figures/map_tsne.png",
    "explore/figures/neighbours.png",
    "explore/figures/clusters.png",
    "explore/figures/outliers.png",
    "explore/figures/confusion.png",
    "explore/figures/augmentations.png",
    "quickstart/health.png",
    "benchmark/figures/benchmark.png",
    "curate/report/outliers.png",
    "curate/report/label_issues.png",
    "curate/report/selection.png",
]


def test_notebooks_have_no_outputs() -> None:
    assert [path.name for path in NOTEBOOKS] == [
        "01_quickstart.ipynb",
        "02_explore_embeddings.ipynb",
        "03_linear_probe_benchmark.ipynb",
        "04_curate.ipynb",
    ]
    for path in NOTEBOOKS:
        book = nbformat.read(path, as_version=4)
        nbformat.validate(book)
        for index, cell in enumerate(book.cells):
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, (
                    f"{path.name} cell {index} has outputs: clear them before committing"
                )


@pytest.fixture(scope="module")
def kernel_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Jupyter data folder holding a kernel spec that runs this very interpreter."""
    data = tmp_path_factory.mktemp("jupyter")
    spec = data / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "contrastive tests (this interpreter)",
                "language": "python",
                # One thread: the notebooks' problems are small, and on a shared machine (CI, two
                # busy cores) a second OpenMP thread that waits for a core slows small ops 10-50x.
                "env": {"MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"},
            }
        )
    )
    return data


def execute(book: nbformat.NotebookNode, cwd: Path) -> nbformat.NotebookNode:
    """Runs every cell on the test kernel; raises CellExecutionError on the first error."""
    client = NotebookClient(
        book, kernel_name=KERNEL, timeout=CELL_TIMEOUT_S, resources={"metadata": {"path": str(cwd)}}
    )
    return client.execute()


def notebook_settings(
    monkeypatch: pytest.MonkeyPatch, kernel_path: Path, **settings: str | Path
) -> None:
    """The test kernel and the ``CONTRASTIVE_NOTEBOOK_*`` variables: those given
    (``data=...`` sets ``CONTRASTIVE_NOTEBOOK_DATA``), the others unset."""
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    for name in ("data", "test", "out", "epochs", "labeled", "run", "runs", "budget"):
        key = f"CONTRASTIVE_NOTEBOOK_{name.upper()}"
        if name in settings:
            monkeypatch.setenv(key, str(settings[name]))
        else:
            monkeypatch.delenv(key, raising=False)


def run_notebook(path: Path, artifacts: Path) -> str:
    """Executes the notebook at ``path``, writes the executed copy into ``artifacts`` (also
    after a failure: the copy shows the error in its cell) and returns what it printed."""
    book = nbformat.read(path, as_version=4)
    try:
        execute(book, NOTEBOOK_DIR)
    finally:
        nbformat.write(book, artifacts / path.name)
    return "".join(
        output.get("text", "") for cell in book.cells for output in cell.get("outputs", [])
    )


@pytest.fixture(scope="module")
def small_digits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """25 train and 8 test images per digit, copied from the demo data."""
    digits = ensure_demo_digits()
    base = tmp_path_factory.mktemp("digits")
    for split, per_class in (("train", 25), ("test", 8)):
        for folder in sorted((digits / split).iterdir()):
            target = base / split / folder.name
            target.mkdir(parents=True)
            for image in sorted(folder.glob("*.png"))[:per_class]:
                shutil.copy2(image, target / image.name)
    return {"train": base / "train", "test": base / "test"}


@pytest.mark.e2e
def test_kernel_is_this_interpreter(
    kernel_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_path))
    book = new_notebook(
        cells=[
            new_code_cell(
                "import os, sys\nprint(sys.executable)\nprint(os.environ.get('MPLBACKEND'))"
            )
        ]
    )
    executed = execute(book, tmp_path)
    assert executed.cells[0].outputs[0]["text"].split() == [sys.executable, "Agg"]


@pytest.mark.e2e
def test_notebooks_run(
    kernel_path: Path, small_digits: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    out = ARTIFACTS / "output"
    notebook_settings(
        monkeypatch,
        kernel_path,
        data=small_digits["train"],
        test=small_digits["test"],
        out=out,
        epochs="3",
    )
    printed = {path.name: run_notebook(path, ARTIFACTS) for path in NOTEBOOKS}

    # Training in a notebook says what it does, as on the command line, without Lightning's
    # banners (before: "GPU available: False, used: False" and no line of ours).
    assert "training on 250 images" in printed["01_quickstart.ipynb"]
    assert "GPU available" not in printed["01_quickstart.ipynb"]

    missing = [name for name in EXPECTED_FIGURES if not (out / name).is_file()]
    assert not missing, f"figures not saved: {missing}"
    for notebook, rows in (
        ("quickstart", ["trained", "random init", "raw pixels"]),
        ("benchmark", ["SimCLR + NT-Xent", "SimCLR + Euclidean", "random init", "raw pixels"]),
    ):
        scores = json.loads((out / notebook / "scores.json").read_text())["scores"]
        assert list(scores) == rows
        assert all(0.0 <= numbers["knn_top1"] <= 1.0 for numbers in scores.values())
    assert (out / "explore" / "projector" / "projector_config.pbtxt").is_file()
    # The explore, benchmark and curate notebooks reuse the quickstart's run instead of training.
    assert not (out / "explore" / "run").exists() and not (out / "benchmark" / "ntxent").exists()
    assert not (out / "curate" / "run").exists()


@pytest.fixture(scope="module")
def flat_digits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Demo digits copied into folders without class sub-folders: 8 per digit to curate and
    explore, 2 per digit as the folder searched for leaked copies."""
    digits = ensure_demo_digits()
    base = tmp_path_factory.mktemp("flat")
    for name, split, per_class in (("data", "train", 8), ("test", "test", 2)):
        (base / name).mkdir()
        for folder in sorted((digits / split).iterdir()):
            for image in sorted(folder.glob("*.png"))[:per_class]:
                shutil.copy2(image, base / name / f"{folder.name}_{image.name}")
    return {"data": base / "data", "test": base / "test"}


@pytest.mark.e2e
def test_notebooks_on_a_flat_folder(
    kernel_path: Path, flat_digits: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user's unlabeled folder, as the README suggests: curation and exploration run to the
    end and say why the label-based parts were skipped (before: 04 raised AttributeError on
    ``label_issues`` None, 02 a kNN error late, naming no variable to set)."""
    artifacts = ROOT / "test-artifacts" / "notebooks-flat"
    shutil.rmtree(artifacts, ignore_errors=True)
    artifacts.mkdir(parents=True)
    out = artifacts / "output"
    flat = {"data": flat_digits["data"], "out": out, "epochs": "1"}
    notebook_settings(monkeypatch, kernel_path, test=flat_digits["test"], **flat)
    printed = {"04_curate.ipynb": run_notebook(NOTEBOOK_DIR / "04_curate.ipynb", artifacts)}
    # Explore the unlabeled folder itself, with the run 04 trained on it; the kNN bank
    # (LABELED) defaults to DATA, which is flat too.
    notebook_settings(
        monkeypatch, kernel_path, test=flat_digits["data"], run=out / "curate" / "run", **flat
    )
    explore = NOTEBOOK_DIR / "02_explore_embeddings.ipynb"
    printed[explore.name] = run_notebook(explore, artifacts)

    report = out / "curate" / "report"
    assert "label mistakes not looked for: no class sub-folders" in printed["04_curate.ipynb"]
    assert (report / "outliers.png").is_file() and (report / "selection.png").is_file()
    assert not (report / "label_issues.png").exists()
    explored = printed["02_explore_embeddings.ipynb"]
    assert "CONTRASTIVE_NOTEBOOK_LABELED" in explored and "CONTRASTIVE_NOTEBOOK_TEST" in explored
    # No classes: k-means picks its count from the 80 images (round(sqrt(80 / 2)) = 6).
    assert "6 clusters" in explored
    figures = out / "explore" / "figures"
    assert (figures / "clusters.png").is_file() and (figures / "augmentations.png").is_file()
    assert not (figures / "confusion.png").exists()
    assert (out / "explore" / "projector" / "projector_config.pbtxt").is_file()
