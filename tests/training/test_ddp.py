"""Negatives gathered across processes: two CPU processes (gloo) behave like one big batch.

``ContrastiveModule`` always builds its loss with ``gather_distributed=True``. With two ranks
holding half a batch each, the mean of their losses equals the single-process loss on the
whole batch, and their gradients (before DDP averages them) are twice the single-process
gradients of their rows; MoCo's queue receives the keys of both ranks, identically on both.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from contrastive.backbone_config import BackboneConfig
from contrastive.errors import ContrastiveError
from contrastive.losses import LossConfig, build_loss
from contrastive.methods.config import MethodConfig
from contrastive.training.config import TrainConfig
from contrastive.training.module import ContrastiveModule
from contrastive.training.train import train

WORLD, PER_RANK, DIM, QUEUE = 2, 4, 8, 16
IN_BATCH = {
    "ntxent": LossConfig("ntxent"),
    "distance-cosine": LossConfig("distance", distance="cosine"),
    "distance-euclidean": LossConfig("distance", distance="euclidean"),
}
WITH_QUEUE = {
    "ntxent-queue": LossConfig("ntxent"),
    "distance-queue": LossConfig("distance", distance="cosine"),
}
REPO_ROOT = Path(__file__).resolve().parents[2]


def embeddings() -> tuple[torch.Tensor, torch.Tensor]:
    """The whole batch: two views ``(WORLD * PER_RANK, DIM)``, the same in every process."""
    generator = torch.Generator().manual_seed(0)
    return (
        torch.randn(WORLD * PER_RANK, DIM, generator=generator),
        torch.randn(WORLD * PER_RANK, DIM, generator=generator),
    )


def loss_and_grads(
    criterion: torch.nn.Module, first: torch.Tensor, second: torch.Tensor
) -> dict[str, torch.Tensor]:
    first, second = first.clone().requires_grad_(True), second.clone().requires_grad_(True)
    loss = criterion(first, second)
    loss.backward()
    return {"loss": loss.detach(), "grad_first": first.grad, "grad_second": second.grad}


def queue_step(
    criterion: torch.nn.Module, queries: torch.Tensor, keys: torch.Tensor
) -> dict[str, torch.Tensor]:
    loss = criterion(queries.clone().requires_grad_(True), keys)
    bank = criterion.memory_bank
    return {"loss": loss.detach(), "bank": bank.bank.clone(), "ptr": bank.bank_ptr.clone()}


def new_queue_loss(config: LossConfig, gather: bool) -> torch.nn.Module:
    # Lightly fills a new queue with torch.randn: the same seed gives every rank the same one.
    torch.manual_seed(7)
    return build_loss(config, 0.2, (QUEUE, DIM), gather_distributed=gather)


def rank_worker(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    try:
        first, second = embeddings()
        rows = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        results = {
            name: loss_and_grads(
                build_loss(config, 0.5, gather_distributed=True), first[rows], second[rows]
            )
            for name, config in IN_BATCH.items()
        }
        results.update(
            {
                name: queue_step(new_queue_loss(config, gather=True), first[rows], second[rows])
                for name, config in WITH_QUEUE.items()
            }
        )
        torch.save(results, out)
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def per_rank(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """What each of two gloo ranks computed (forked processes: no re-import of torch)."""
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("the rank processes are forked (POSIX only)")
    folder, port = tmp_path_factory.mktemp("ranks"), free_port()
    fork = multiprocessing.get_context("fork")
    outputs = [folder / f"rank{rank}.pt" for rank in range(WORLD)]
    ranks = [
        fork.Process(target=rank_worker, args=(rank, port, str(outputs[rank])))
        for rank in range(WORLD)
    ]
    for process in ranks:
        process.start()
    for process in ranks:
        process.join(timeout=120)
        if process.is_alive():
            process.kill()
    assert [process.exitcode for process in ranks] == [0] * WORLD
    return [torch.load(path, weights_only=True) for path in outputs]


@pytest.mark.parametrize("name", IN_BATCH)
def test_gathered_in_batch_loss_equals_one_big_batch(per_rank: list[dict], name: str) -> None:
    expected = loss_and_grads(build_loss(IN_BATCH[name], 0.5), *embeddings())

    mean_loss = sum(rank[name]["loss"] for rank in per_rank) / WORLD
    torch.testing.assert_close(mean_loss, expected["loss"], rtol=0, atol=1e-6)
    for grad in ("grad_first", "grad_second"):
        gathered = torch.cat([rank[name][grad] for rank in per_rank]) / WORLD
        torch.testing.assert_close(gathered, expected[grad], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", WITH_QUEUE)
def test_queue_is_filled_with_every_rank_keys_identically(per_rank: list[dict], name: str) -> None:
    expected = queue_step(new_queue_loss(WITH_QUEUE[name], gather=False), *embeddings())

    first_rank, second_rank = per_rank[0][name], per_rank[1][name]
    assert torch.equal(first_rank["bank"], second_rank["bank"])
    torch.testing.assert_close(first_rank["bank"], expected["bank"], rtol=0, atol=0)
    assert first_rank["ptr"].item() == second_rank["ptr"].item() == WORLD * PER_RANK
    mean_loss = (first_rank["loss"] + second_rank["loss"]) / WORLD
    torch.testing.assert_close(mean_loss, expected["loss"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", ["simclr", "moco"])
def test_training_module_gathers_negatives(method: str) -> None:
    config = TrainConfig(
        backbone=BackboneConfig("resnet18_quarter"), method=MethodConfig(method, queue_size=64)
    )
    criterion = ContrastiveModule(config.to_dict()).method.criterion
    assert criterion.gather_distributed
    if method == "moco":
        assert criterion.memory_bank.gather_distributed


def test_sync_batchnorm_on_cpus_is_refused_before_training(tiny_config: TrainConfig) -> None:
    config = tiny_config.with_overrides(devices=2, sync_batchnorm=True)

    with pytest.raises(ContrastiveError, match=r"^--sync-batchnorm needs GPUs"):
        train(config)
    assert not (config.run_dir / "checkpoints").exists()


@pytest.mark.slow
def test_two_process_ddp_training_on_cpu(
    tiny_images: Path, decoded_cache: Path, tmp_path: Path
) -> None:
    # Lightning's DDP launcher re-runs the command line for rank 1: a real CLI process.
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "contrastive",
            "train",
            "--data",
            str(tiny_images),
            "--out",
            str(run_dir),
            "--backbone",
            "resnet18_quarter",
            "--batch-size",
            "4",
            "--epochs",
            "2",
            "--input-size",
            "32",
            "--num-workers",
            "0",
            "--cache-dir",
            str(decoded_cache),
            "--accelerator",
            "cpu",
            "--devices",
            "2",
            "--precision",
            "32-true",
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    # 32 images, 2 processes of 4: 4 steps per epoch.
    assert state["global_step"] == 8
    assert (run_dir / "backbone.pt").is_file()
    assert result.stdout.count("trained on 32 images") == 1, result.stdout  # rank 0 only
