"""Atomic writes survive failures and kills; loading never runs code from a file."""

from __future__ import annotations

import errno
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import contrastive.files as files
from contrastive.errors import ContrastiveError
from contrastive.files import (
    atomic_path,
    check_writable_dir,
    load_torch_safely,
    same_path,
    save_torch_atomic,
    write_text_atomic,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


class CreatesMarker:
    """Unpickling this calls ``open(marker, "w")``: a stand-in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.marker), "w")


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_state_dict_round_trips(tmp_path: Path) -> None:
    state = torch.nn.Linear(3, 2).state_dict()
    save_torch_atomic(state, tmp_path / "weights.pt")

    loaded = load_torch_safely(tmp_path / "weights.pt")

    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_torch_file_that_would_run_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    torch.save({"weights": torch.ones(2), "payload": CreatesMarker(marker)}, path)

    with pytest.raises(ContrastiveError, match=r"refusing to load .*evil\.pt.*open.*run code"):
        load_torch_safely(path)
    assert not marker.exists()

    # The payload is live: an unsafe load does run it.
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_plain_pickle_that_would_run_code_is_refused(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pkl"
    payload = pickle.dumps({"payload": CreatesMarker(marker)}, protocol=protocol)
    path.write_bytes(payload)

    with pytest.raises(ContrastiveError, match=r"evil\.pkl"):
        load_torch_safely(path)
    assert not marker.exists()

    pickle.loads(payload)
    assert marker.exists()


def test_missing_file_and_folder_are_named(tmp_path: Path) -> None:
    with pytest.raises(ContrastiveError, match=r"file not found: .*missing\.pt"):
        load_torch_safely(tmp_path / "missing.pt")
    with pytest.raises(ContrastiveError, match="not a file"):
        load_torch_safely(tmp_path)


@pytest.mark.parametrize(
    "content",
    [b"", b"this is not a torch file at all" * 10, b"\x89PNG\r\n\x1a\n" + bytes(100)],
    ids=["empty", "text", "png"],
)
def test_garbage_file_gives_a_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "garbage.pt"
    path.write_bytes(content)

    with pytest.raises(ContrastiveError, match=r"cannot read .*garbage\.pt as a torch file: \w+"):
        load_torch_safely(path)


def test_half_written_checkpoint_gives_a_clear_error(tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    torch.save({"weights": torch.zeros(10_000)}, good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])

    with pytest.raises(ContrastiveError, match=r"cannot read .*cut\.pt as a torch file"):
        load_torch_safely(cut)


def test_error_inside_the_block_keeps_the_old_file_and_no_temporaries(tmp_path: Path) -> None:
    target = tmp_path / "report.txt"
    write_text_atomic(target, "old")

    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_text("half of the new")
        raise RuntimeError("interrupted")

    assert target.read_text() == "old"
    assert files_in(tmp_path) == ["report.txt"]


def test_failed_rename_keeps_the_old_file_and_no_temporaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "weights.pt"
    save_torch_atomic({"version": torch.tensor(1)}, target)

    def failing_replace(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        save_torch_atomic({"version": torch.tensor(2)}, target)
    monkeypatch.undo()

    assert load_torch_safely(target)["version"].item() == 1
    assert files_in(tmp_path) == ["weights.pt"]


def test_kill_during_save_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint.pt"
    save_torch_atomic({"version": torch.tensor(1)}, target)
    # Pickling the Stall object blocks inside torch.save, with the temporary file open.
    child = textwrap.dedent("""
        import sys, time
        import torch
        from contrastive.files import save_torch_atomic

        class Stall:
            def __reduce__(self):
                print("writing", flush=True)
                time.sleep(60)
                return int, (0,)

        save_torch_atomic({"version": torch.ones(100_000), "stall": Stall()}, sys.argv[1])
    """)
    process = subprocess.Popen(
        [sys.executable, "-c", child, str(target)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "writing"
        assert any(name.endswith(".tmp") for name in files_in(tmp_path))
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=30)
        assert process.stdout is not None
        process.stdout.close()

    assert load_torch_safely(target)["version"].item() == 1
    # SIGKILL leaves no chance to clean up: only a hidden temporary is left behind.
    leftovers = [n for n in files_in(tmp_path) if n != "checkpoint.pt"]
    assert leftovers and all(n.startswith(".checkpoint.pt.") for n in leftovers)
    save_torch_atomic({"version": torch.tensor(2)}, target)
    assert load_torch_safely(target)["version"].item() == 2


def test_written_files_get_the_usual_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    write_text_atomic(tmp_path / "report.txt", "ok")

    assert (tmp_path / "report.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_non_utf8_file_names_are_written_as_their_bytes(tmp_path: Path) -> None:
    name = os.fsdecode(b"caf\xe9.png")
    write_text_atomic(tmp_path / "skipped_files.txt", f"{name}\n")

    assert (tmp_path / "skipped_files.txt").read_bytes() == b"caf\xe9.png\n"


def test_atomic_path_under_a_regular_file_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "somefile"
    blocker.write_text("a file, not a folder")

    with pytest.raises(ContrastiveError, match=r"cannot create folder .*somefile/run"):
        write_text_atomic(blocker / "run" / "report.txt", "never written")


def test_check_writable_dir_creates_the_folder_and_reports_free_space(tmp_path: Path) -> None:
    folder = tmp_path / "runs" / "run1"

    free = check_writable_dir(folder)

    assert folder.is_dir() and files_in(folder) == []
    assert free > 0


def test_check_writable_dir_under_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "somefile"
    blocker.write_text("a file, not a folder")

    with pytest.raises(ContrastiveError, match=r"cannot create output folder .*somefile/run"):
        check_writable_dir(blocker / "run")
    with pytest.raises(ContrastiveError, match=r"output path is a file, not a folder"):
        check_writable_dir(blocker)


def test_check_writable_dir_when_writing_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root ignores folder permissions, so the refusal is simulated where the probe is made.
    def denied(*_args: object, **_kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("tempfile.TemporaryFile", denied)

    with pytest.raises(ContrastiveError, match=r"cannot write to output folder .*: Permission"):
        check_writable_dir(tmp_path)


def test_check_writable_dir_in_a_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "readonly"
    folder.mkdir(mode=0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running with privileges that ignore folder permissions (root)")
        with pytest.raises(ContrastiveError, match="cannot write to output folder"):
            check_writable_dir(folder)
    finally:
        folder.chmod(0o700)


def test_check_writable_dir_with_too_little_free_space(tmp_path: Path) -> None:
    with pytest.raises(
        ContrastiveError,
        match=r"only .* GB free on the disk holding .*, "
        r"need at least 1000000000.00 GB",
    ):
        check_writable_dir(tmp_path, min_free_bytes=10**18)


def test_atomic_writes_get_the_mode_the_umask_allows(tmp_path: Path) -> None:
    import contrastive.files as files

    previous = os.umask(0o027)
    files._file_mode.cache_clear()
    try:
        write_text_atomic(tmp_path / "report.txt", "x")
    finally:
        os.umask(previous)
        files._file_mode.cache_clear()
    assert (tmp_path / "report.txt").stat().st_mode & 0o777 == 0o640


def test_a_folder_that_refuses_new_files_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(files.tempfile, "mkstemp", read_only)
    refused = pytest.raises(ContrastiveError, match=r"cannot write .*x\.npz: Read-only file system")
    with refused, atomic_path(tmp_path / "x.npz"):
        pass


def test_same_path_sees_one_place_written_two_ways(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "run").mkdir()
    monkeypatch.chdir(tmp_path)
    assert same_path("run", tmp_path / "run") and same_path("run/", "./run")
    assert not same_path("run", tmp_path / "other")
