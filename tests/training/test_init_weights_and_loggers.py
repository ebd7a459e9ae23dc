"""``init_weights`` starts a run from earlier weights; ``logger`` adds Lightning's loggers
(TensorBoard read back with its own event reader) next to ``metrics.csv``."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from contrastive.errors import ContrastiveError
from contrastive.methods.config import MethodConfig
from contrastive.training.config import TrainConfig
from contrastive.training.metrics_history import HistoryCSVLogger
from contrastive.training.train import _build, _checked_inputs, train


def test_init_weights_load_into_backbone_and_momentum_copy(
    tiny_config: TrainConfig, tmp_path: Path
) -> None:
    torch.manual_seed(5)
    weights = {
        key: value + torch.randn_like(value.float()).to(value.dtype)
        for key, value in _built(tiny_config).backbone.state_dict().items()
    }
    torch.save(weights, tmp_path / "backbone.pt")
    config = replace(
        tiny_config,
        init_weights=str(tmp_path / "backbone.pt"),
        method=MethodConfig("moco", queue_size=16),
    )
    module = _built(config)
    for part in (module.backbone, module.method.momentum_backbone):
        state = part.state_dict()
        assert all(torch.equal(state[key], weights[key]) for key in weights)


def test_init_weights_of_another_architecture_fail_in_one_line(
    tiny_config: TrainConfig, tmp_path: Path
) -> None:
    torch.save({"conv1.weight": torch.zeros(8, 3, 3, 3)}, tmp_path / "other.pt")
    config = replace(tiny_config, init_weights=str(tmp_path / "other.pt"))
    with pytest.raises(ContrastiveError, match=r"conv1\.weight: file \(8, 3, 3, 3\)"):
        _built(config)


def _built(config: TrainConfig):  # noqa: ANN202 - the ContrastiveModule
    return _build(config, None, *_checked_inputs(config)).module


def test_tensorboard_event_files_hold_the_scalars(tiny_config: TrainConfig) -> None:
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator"
    )
    config = replace(
        tiny_config, logger="csv,tensorboard", health_sample_size=0, projector_sample_size=6
    )
    result = train(config)
    assert (config.run_dir / "metrics.csv").is_file()
    reader = event_accumulator.EventAccumulator(str(config.run_dir / "tensorboard"))
    reader.Reload()
    tags = set(reader.Tags()["scalars"])
    assert {"loss", "lr"} <= tags, tags
    losses = [event.value for event in reader.Scalars("loss")]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    # The projector of the final weights: 6 training images with their classes and thumbnails.
    projector = config.run_dir / "tensorboard"
    assert "embeddings" in (projector / "projector_config.pbtxt").read_text()
    tensors = (projector / "00000" / "embeddings" / "tensors.tsv").read_text().splitlines()
    assert len(tensors) == 6
    assert all(len(line.split("\t")) == result.module.feature_dim for line in tensors)
    metadata = (projector / "00000" / "embeddings" / "metadata.tsv").read_text().splitlines()
    assert metadata[0].split("\t") == ["index", "path", "class", "label"] and len(metadata) == 7
    assert (projector / "00000" / "embeddings" / "sprite.png").is_file()


def test_auto_logger_adds_tensorboard_when_installed(tiny_config: TrainConfig) -> None:
    from contrastive.training.train import _build_loggers

    loggers = _build_loggers(tiny_config)
    # metrics.csv comes first, from the CSV logger that keeps a resumed run's rows.
    assert isinstance(loggers[0], HistoryCSVLogger)
    names = [type(logger).__name__ for logger in loggers[1:]]
    try:
        import tensorboard  # noqa: F401

        assert names == ["TensorBoardLogger"]
    except ImportError:
        assert names == []


@pytest.mark.parametrize("name", ["mlflow", "wandb"])
def test_optional_loggers_are_built_offline_or_named_as_missing(
    tiny_config: TrainConfig, name: str
) -> None:
    from contrastive.training.train import _build_loggers

    config = replace(tiny_config, logger=name)
    if importlib.util.find_spec(name) is None:
        # Not installed here (they are optional extras): the user is told what to install.
        with pytest.raises(ContrastiveError, match=f"--logger {name} needs .*pip install {name}"):
            _build_loggers(config)
        return
    loggers = _build_loggers(config)
    assert [type(logger).__name__ for logger in loggers][0] == "CSVLogger"
    assert len(loggers) == 2


@pytest.mark.parametrize("name", ["mlflow", "wandb"])
def test_optional_loggers_record_a_real_run(tiny_config: TrainConfig, name: str) -> None:
    pytest.importorskip(name)  # optional extras: `pip install 'contrastive[mlflow]'`
    config = replace(tiny_config, logger=f"csv,{name}", health_sample_size=0)
    train(config)
    if name == "mlflow":
        from mlflow.tracking import MlflowClient

        from contrastive.training.train import mlflow_tracking_uri

        client = MlflowClient(tracking_uri=mlflow_tracking_uri(config.run_dir))
        experiment = client.get_experiment_by_name("contrastive")
        (run,) = client.search_runs([experiment.experiment_id])
        losses = [metric.value for metric in client.get_metric_history(run.info.run_id, "loss")]
    else:  # offline: the run's records stay in RUN/wandb until `wandb sync`
        records = list((config.run_dir / "wandb").rglob("*.wandb"))
        assert records and all(record.stat().st_size > 0 for record in records)
        losses = [1.0]
    assert losses and all(torch.isfinite(torch.tensor(losses)))


def test_unknown_logger_is_refused() -> None:
    with pytest.raises(ContrastiveError, match="unknown logger comet; use auto or"):
        TrainConfig(logger="csv,comet")
