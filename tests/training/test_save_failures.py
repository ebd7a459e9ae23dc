"""A full disk or an unwritable output folder: one clear line, and no checkpoint lost.

Fixtures: ``tests/training/conftest.py``.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

import contrastive.files
from contrastive.errors import ContrastiveError
from contrastive.training.checkpoint_io import AtomicCheckpointIO
from contrastive.training.config import TrainConfig
from contrastive.training.train import train


def fill_disk_when(monkeypatch: pytest.MonkeyPatch, full: Any) -> None:
    """Makes ``torch.save`` fail with ENOSPC, after writing part of the file, once
    ``full(target_name, number_of_this_save)`` is true."""
    save = torch.save
    saves: list[str] = []

    def saving(obj: Any, path: Any, *args: Any, **kwargs: Any) -> None:
        saves.append(str(path))
        if full(os.path.basename(str(path)), len(saves)):
            Path(path).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", saving)


def hidden_files(folder: Path) -> list[str]:
    return [path.name for path in folder.iterdir() if path.name.startswith(".")]


def test_full_disk_at_a_checkpoint_names_it_and_keeps_the_previous(
    tiny_config: TrainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tiny_config.with_overrides(epochs=2)
    checkpoints = config.run_dir / "checkpoints"
    # Epoch 1 writes epoch=000.ckpt and last.ckpt; the disk is full from the third save on.
    fill_disk_when(monkeypatch, lambda name, number: number >= 3)

    with pytest.raises(ContrastiveError) as raised:
        train(config)

    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(
        f"cannot write checkpoint {checkpoints / 'epoch=001.ckpt'}: No space left on device"
    )
    assert message.endswith("free some disk space or choose another --out")
    monkeypatch.undo()
    state = AtomicCheckpointIO().load_checkpoint(checkpoints / "last.ckpt")
    assert (state["epoch"], state["global_step"]) == (0, 4)
    assert not hidden_files(checkpoints)


def test_full_disk_at_export_keeps_the_checkpoint_and_resume_exports(
    tiny_config: TrainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill_disk_when(monkeypatch, lambda name, number: ".backbone.pt." in name)

    with pytest.raises(
        ContrastiveError,
        match=r"^cannot write backbone weights .*backbone\.pt: "
        r"No space left on device",
    ):
        train(tiny_config)
    monkeypatch.undo()

    assert not (tiny_config.run_dir / "backbone.pt").exists()
    result = train(tiny_config, resume=True)
    assert result.backbone_path.is_file()


def test_output_folder_that_cannot_be_created_fails_before_training(
    tiny_config: TrainConfig, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    config = tiny_config.with_overrides(out=str(blocker / "run"))

    with pytest.raises(ContrastiveError, match=r"^cannot create output folder .*a-file/run"):
        train(config)


def test_too_little_free_space_fails_before_training(
    tiny_config: TrainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    usage = contrastive.files.shutil.disk_usage

    def nearly_full(path: Any) -> Any:
        return usage(path)._replace(free=10 * 2**20)

    monkeypatch.setattr(contrastive.files.shutil, "disk_usage", nearly_full)

    with pytest.raises(ContrastiveError, match=r"^only 0\.01 GB free on the disk holding"):
        train(tiny_config)
    assert not (tiny_config.run_dir / "checkpoints").exists()


def test_a_run_folder_deleted_while_training_stops_with_one_clear_line(
    tiny_config: TrainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from contrastive.training.module import ContrastiveModule

    config = tiny_config.with_overrides(epochs=2)
    step = ContrastiveModule.training_step

    def deleting_the_folder(self: ContrastiveModule, batch: Any, batch_idx: int) -> Any:
        if self.global_step == 5:  # after epoch 1's checkpoint and metrics rows
            shutil.rmtree(config.run_dir)
        return step(self, batch, batch_idx)

    monkeypatch.setattr(ContrastiveModule, "training_step", deleting_the_folder)

    # Before: FileNotFoundError: ... run/metrics.csv, from Lightning's CSV logger.
    with pytest.raises(ContrastiveError) as raised:
        train(config)

    message = str(raised.value)
    assert message.startswith(f"the run folder {config.run_dir} was deleted or moved while")
    assert message.endswith("start again with --out NEW_FOLDER")
    assert not config.run_dir.exists()


def test_an_os_error_of_a_refused_run_is_not_called_a_deleted_folder(
    tiny_config: TrainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    import contrastive.training.train as training

    def unreadable(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied", tiny_config.data)

    monkeypatch.setattr(training, "_checked_inputs", unreadable)

    # The refused run's empty folder is tidied away; that is not a folder deleted mid-run.
    with pytest.raises(PermissionError):
        train(tiny_config)
    assert not tiny_config.run_dir.exists()
