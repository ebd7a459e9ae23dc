"""``benchmarks/run_profile.py``: a run's sampled stacks summed by what they were doing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import run_profile  # noqa: E402  (benchmarks/ is not a package)

LOOP = (
    "thread (7): MainThread;main (contrastive/cli/__init__.py:149);"
    "Trainer.fit (pytorch_lightning/trainer/trainer.py:584)"
)
CONV = "_conv_forward (torch/nn/modules/conv.py:543)"
RAW = [
    f"{LOOP};training_step (contrastive/training/module.py:130);{CONV} 60",
    f"{LOOP};backward (torch/_tensor.py:625);_engine_run_backward (torch/autograd/graph.py:8) 30",
    # A health check embeds a sample: its convolutions are the health check's cost.
    f"{LOOP};on_train_batch_end (contrastive/training/health.py:300);{CONV} 5",
    f"{LOOP};advance (pytorch_lightning/loops/training_epoch_loop.py:352) 5",
    "thread (9): Thread-1;Queue.get (queue.py:180) 900",  # the prefetch thread, waiting
    "malformed line without a count",
]


def test_samples_go_to_the_first_category_their_frames_match() -> None:
    counts = run_profile.summarise(RAW)
    assert counts == {
        "forward": 60,
        "backward": 30,
        "health and monitors": 5,
        "Lightning's loop": 5,
    }
    report = run_profile.report(counts)
    assert report.splitlines()[0].startswith("forward")
    assert report.endswith(
        "the training step itself (backward, views, loss, forward, optimiser): 90.0%"
    )


def test_another_thread_can_be_summarised() -> None:
    assert run_profile.summarise(RAW, thread="Thread-1") == {"other": 900}


def test_a_recording_is_read_back(tmp_path, capsys) -> None:
    raw = tmp_path / "profile.txt"
    raw.write_text("\n".join(RAW))
    run_profile.main(["--raw", str(raw)])
    assert "forward" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        run_profile.main(["--raw", str(tmp_path / "missing.txt")])
    with pytest.raises(SystemExit):
        run_profile.main([])
