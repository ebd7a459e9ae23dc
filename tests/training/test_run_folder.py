"""The run folder: which checkpoints a run keeps, and which output folders a new run refuses."""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta
from pathlib import Path

import pytest
import torch

from contrastive.data.image_files import RUN_MARKER
from contrastive.errors import ContrastiveError
from contrastive.hardware import check_accelerator
from contrastive.training.config import TrainConfig, load_config_file
from contrastive.training.last_checkpoint import SaveLastCheckpoint
from contrastive.training.resume import auto_resume, check_new_run_dir
from contrastive.training.train import _checkpoint_callbacks, train


@pytest.mark.parametrize(
    ("budget", "interval"), [("1m", 60.0), ("10m", 60.0), ("1h", 360.0), ("8h", 2880.0)]
)
def test_a_budget_run_keeps_a_checkpoint_per_tenth_of_its_budget(
    budget: str, interval: float
) -> None:
    config = TrainConfig(out="run", time_budget=budget, checkpoint_every_n_epochs=None)
    kept, last = _checkpoint_callbacks(config)
    assert kept.save_top_k == -1 and not kept.save_last
    assert kept._train_time_interval == timedelta(seconds=interval)
    assert kept._every_n_epochs == 0  # not per epoch: a small folder's epoch is a blink
    assert isinstance(last, SaveLastCheckpoint) and last.min_interval == 30.0
    assert last.path == Path("run") / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize(
    ("every", "budget", "expected"), [(3, None, 3), (3, "10m", 3), (None, None, 10)]
)
def test_epoch_checkpoints_where_set_or_without_a_budget(
    every: int | None, budget: str | None, expected: int
) -> None:
    config = TrainConfig(out="run", time_budget=budget, checkpoint_every_n_epochs=every)
    kept, last = _checkpoint_callbacks(config)
    assert (kept._every_n_epochs, kept.save_top_k, kept.save_last) == (expected, -1, None)
    assert last.min_interval == 0.0


def test_a_short_budget_run_writes_last_checkpoint_only(
    tiny_config: TrainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 3 epochs of 4 steps in far less than a minute: before, 3 kept epoch checkpoints.
    data = Path(tiny_config.data)
    monkeypatch.chdir(data.parent)  # the data given as typed, relative to here
    config = tiny_config.with_overrides(
        data=data.name, epochs=3, checkpoint_every_n_epochs=None, time_budget="1m", max_steps=12
    )
    result = train(config)
    # Recorded absolute, for export and compare-runs run from other folders.
    assert load_config_file(result.run_dir / "config.yaml")["data"] == str(data.absolute())
    assert (result.run_dir / RUN_MARKER).is_file()  # scans of a folder holding it skip it
    assert sorted(p.name for p in (result.run_dir / "checkpoints").iterdir()) == ["last.ckpt"]
    last = torch.load(result.run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 12


def test_last_checkpoint_holds_the_end_of_training_between_kept_ones(
    tiny_config: TrainConfig,
) -> None:
    # 3 epochs with a kept checkpoint every 2: before, last.ckpt was epoch 2's (step 8).
    result = train(tiny_config.with_overrides(epochs=3, checkpoint_every_n_epochs=2))
    checkpoints = result.run_dir / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["epoch=001.ckpt", "last.ckpt"]
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["global_step"] == 12
    assert torch.load(checkpoints / "epoch=001.ckpt", weights_only=True)["global_step"] == 8


def test_last_checkpoint_is_written_at_most_once_per_interval() -> None:
    class Strategy:
        def broadcast(self, value: bool, src: int) -> bool:
            return value

    class Trainer:
        strategy, global_step, saves = Strategy(), 0, []

        def save_checkpoint(self, path: Path) -> None:
            self.saves.append(self.global_step)

    now = [0.0]
    callback = SaveLastCheckpoint(Path("last.ckpt"), min_interval=30.0, clock=lambda: now[0])
    trainer = Trainer()
    for step in range(1, 8):  # an epoch every 10 s
        trainer.global_step, now[0] = step, 10.0 * step
        callback.on_train_epoch_end(trainer, None)
    callback.on_train_end(trainer, None)
    assert trainer.saves == [1, 4, 7]  # 10 s, 40 s, 70 s; the end was just saved
    trainer.global_step = 8
    callback.on_train_end(trainer, None)
    assert trainer.saves == [1, 4, 7, 8]


@pytest.mark.parametrize("held", ["config.yaml", "backbone.pt", "metrics.csv"])
def test_a_new_run_refuses_a_folder_holding_run_files(tmp_path: Path, held: str) -> None:
    (tmp_path / held).write_text("my: precious\n")
    with pytest.raises(ContrastiveError, match=f"already holds {held}; choose a new --out"):
        check_new_run_dir(tmp_path)
    assert (tmp_path / held).read_text() == "my: precious\n"


def test_a_new_run_takes_a_new_or_empty_folder(tmp_path: Path) -> None:
    check_new_run_dir(tmp_path / "new")
    (tmp_path / "empty").mkdir()
    check_new_run_dir(tmp_path / "empty")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ContrastiveError, match="is a file"):
        check_new_run_dir(tmp_path / "file")


def test_a_new_run_refuses_a_folder_of_the_users_own_files(tmp_path: Path) -> None:
    # Before: trained into a folder of earlier reports, mixing the files, rc 0.
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "knn.json").write_text("{}")
    with pytest.raises(ContrastiveError, match="holds 1 file\\(s\\) or folder\\(s\\) of no run"):
        check_new_run_dir(tmp_path / "reports")
    # A finder's metadata, a refused run's lock and log are no reason to refuse.
    (tmp_path / "used").mkdir()
    for name in (".DS_Store", ".contrastive-lock", "train.log"):
        (tmp_path / "used" / name).write_text("")
    check_new_run_dir(tmp_path / "used")


def test_resume_says_which_given_settings_it_ignores(
    tiny_config: TrainConfig, caplog: pytest.LogCaptureFixture
) -> None:
    train(tiny_config)
    with caplog.at_level(logging.WARNING, logger="contrastive.training"):
        train(
            tiny_config.with_overrides(
                epochs=2,
                batch_size=4,
                seed=7,
                optim=dataclasses.replace(tiny_config.optim, base_learning_rate=0.5),
                cache_images=False,
            ),
            resume=True,
        )
    (warning,) = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    # Named by the flags the user typed (before: "ignored: batch_size, seed, optim, ...").
    assert "ignored: --lr 0.5, --batch-size 4, --seed 7, --no-cache (" in warning
    assert "--init-weights" in warning


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_a_gpu_accelerator_without_a_gpu_is_refused_up_front() -> None:
    check_accelerator("cpu")
    check_accelerator("auto")
    for name in ("cuda", "gpu"):
        with pytest.raises(ContrastiveError, match=f"--accelerator {name}: no such device"):
            check_accelerator(name)


@pytest.mark.parametrize(
    "kept", ["backbone.pt", "checkpoints/epoch=9.ckpt", "reports/knn.json", "notes.txt"]
)
def test_auto_resume_removes_nothing_but_a_run_without_checkpoint(
    tmp_path: Path, kept: str
) -> None:
    # Weights, a kept checkpoint or a file of the user's own are left to the new run's
    # refusal: auto-resume starts again only a run that saved nothing.
    run_dir = tmp_path / "run"
    for name in (RUN_MARKER, "config.yaml", "metrics.csv", kept):
        (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / name).write_text("x")
    assert auto_resume(run_dir) is False
    assert (run_dir / kept).read_text() == "x"
    assert (run_dir / "config.yaml").read_text() == "x"
    with pytest.raises(ContrastiveError):
        check_new_run_dir(run_dir)


def test_auto_resume_of_a_new_or_unsaved_folder_starts_and_of_a_checkpoint_resumes(
    tmp_path: Path,
) -> None:
    assert auto_resume(tmp_path / "new") is False
    assert not (tmp_path / "new").exists()
    unsaved = tmp_path / "unsaved"
    (unsaved / "checkpoints").mkdir(parents=True)
    (unsaved / "checkpoints" / ".last.ckpt.123.tmp").write_text("half")
    (unsaved / "tensorboard").mkdir()
    for name in ("config.yaml", "metrics.csv", "train.log", "tensorboard/events"):
        (unsaved / name).write_text("x")
    # Without the run marker these could be the user's own (a config.yaml put where the
    # run is to go): left to the new run's refusal.
    assert auto_resume(unsaved) is False
    assert (unsaved / "config.yaml").read_text() == "x"
    (unsaved / RUN_MARKER).write_text("")
    assert auto_resume(unsaved) is False
    check_new_run_dir(unsaved)  # nothing left that a new run would refuse
    (unsaved / "checkpoints").mkdir()
    (unsaved / "checkpoints" / "last.ckpt").write_text("x")
    assert auto_resume(unsaved) is True


def test_train_resume_auto_starts_then_continues_from_python(tiny_config: TrainConfig) -> None:
    # resume="auto" is --auto-resume for scripts and notebooks.
    first = train(tiny_config, resume="auto")
    assert first.finished_at_step is None  # trained: 4 steps
    longer = train(tiny_config.with_overrides(epochs=2), resume="auto")
    last = torch.load(longer.run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 8  # continued to 2 epochs, not started again
    again = train(tiny_config.with_overrides(epochs=2), resume="auto")
    assert again.finished_at_step == 8
