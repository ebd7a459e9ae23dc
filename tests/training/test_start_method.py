"""Start-method safety: configuring a run never initialises CUDA.

Lightning forks its DDP processes in notebooks and the Python API; a process forked after
CUDA was initialised cannot use CUDA. So everything before ``trainer.fit`` (importing the
package, building the configuration, resolving ``--precision auto``) must leave CUDA alone.
CUDA's initialisation is replaced by a spy, so the tests also hold on a machine without GPUs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from contrastive import hardware
from contrastive.hardware import GpuInfo, detect_hardware, nvml_gpus
from contrastive.training.budget import resolve_precision
from contrastive.training.config import TrainConfig

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cuda_init_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every initialisation of CUDA; pretends GPUs are present."""
    calls: list[str] = []
    monkeypatch.setattr(torch.cuda, "_lazy_init", lambda: calls.append("_lazy_init"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    return calls


@pytest.mark.parametrize(
    ("capabilities", "expected"),
    [
        ([(8, 0)], "bf16-mixed"),  # A100: native bf16
        ([(9, 0), (8, 6)], "bf16-mixed"),
        ([(7, 5)], "32-true"),  # T4 only emulates bf16
        ([(8, 0), (7, 0)], "32-true"),  # one V100 among them: the safe side
        ([], "32-true"),  # no NVML
    ],
)
@pytest.mark.parametrize("accelerator", ["auto", "gpu", "cuda"])
def test_auto_precision_on_gpus_does_not_initialise_cuda(
    cuda_init_calls: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capabilities: list[tuple[int, int]],
    expected: str,
    accelerator: str,
) -> None:
    gpus = [GpuInfo("GPU", 2**34, capability) for capability in capabilities]
    monkeypatch.setattr(hardware, "nvml_gpus", lambda: gpus)
    config = TrainConfig(accelerator=accelerator)

    assert resolve_precision(config.precision, config.accelerator) == expected
    # The plan's description of the machine says the same (one answer, one home).
    assert detect_hardware(accelerator).bf16 is (expected == "bf16-mixed")
    assert cuda_init_calls == []
    assert not torch.cuda.is_initialized()


@pytest.mark.parametrize("supported", [True, False])
def test_initialised_cuda_without_nvml_answers_for_itself(
    monkeypatch: pytest.MonkeyPatch, supported: bool
) -> None:
    # ROCm, or a notebook that already used the GPU: NVML lists nothing, CUDA can say.
    monkeypatch.setattr(hardware, "nvml_gpus", lambda: [])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: supported)

    assert resolve_precision("auto", "gpu") == ("bf16-mixed" if supported else "32-true")
    assert detect_hardware("gpu").bf16 is supported


def test_explicit_precision_is_kept(cuda_init_calls: list[str]) -> None:
    assert resolve_precision("16-mixed", "gpu") == "16-mixed"
    assert cuda_init_calls == []


def test_nvml_reader_answers_without_cuda() -> None:
    # No NVIDIA driver: empty; with one, a capability per GPU. CUDA stays untouched either way.
    capabilities = [gpu.compute_capability for gpu in nvml_gpus()]
    assert all(isinstance(major, int) and major >= 1 for major, _ in capabilities)
    assert not torch.cuda.is_initialized()


def test_importing_and_configuring_a_run_does_not_initialise_cuda() -> None:
    # A fresh interpreter: imports the CLI and training modules as a notebook would.
    script = """
import torch
calls = []
torch.cuda._lazy_init = lambda: calls.append(1)
torch.cuda.is_available = lambda: True
import contrastive.cli, contrastive.cli.train
from contrastive.training.train import train
from contrastive.training.budget import resolve_precision
from contrastive.training.config import TrainConfig
config = TrainConfig(accelerator="gpu")
resolve_precision(config.precision, config.accelerator)
print(len(calls), torch.cuda.is_initialized())
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "False"]
