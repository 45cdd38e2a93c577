"""What a model returns and what it takes are checked on the first validation batch, before the run
folder is written: a loss that is not one number, a metric named like a value the trainer logs
itself, a ``train.monitor`` that the evaluations will not report, batch keys the model's forward
does not take. The check leaves the random generators as it found them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepseek import hookimpl
from deepseek.config.components import NoOptions
from deepseek.config.load import config_from_dict
from deepseek.errors import ConfigError, PluginError, UsageError
from deepseek.models import split_output
from deepseek.models.protocol import TrainableModel
from deepseek.plugins.calls import BrokenAnswer
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.metrics import read_metrics
from deepseek.training.trainer import Trainer


class Probe(TrainableModel):
    """A bigram model on byte tokens whose output the tests choose (class attributes), and which
    draws one random number per call and records it."""

    LOSS_PER_ROW: ClassVar[bool] = False
    METRIC: ClassVar[str] = "accuracy"
    draws: ClassVar[list[tuple[bool, float]]] = []

    def __init__(self, options: Any = None) -> None:
        super().__init__()
        self.embed = nn.Embedding(256, 8)
        self.head = nn.Linear(8, 256)

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        type(self).draws.append((self.training, float(torch.rand(()))))
        logits = self.head(self.embed(input_ids))
        per_row = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none").mean(dim=1)
        loss = per_row if self.LOSS_PER_ROW else per_row.mean()
        return {"loss": loss, self.METRIC: (logits.argmax(-1) == targets).float().mean()}


class Tabular(nn.Module):
    """A model for other data: its forward takes ``features`` and ``label``, no ``check_data``."""

    Options = NoOptions

    def __init__(self, options: Any = None) -> None:
        super().__init__()
        self.head = nn.Linear(4, 2)

    def forward(self, features: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.head(features), label)


class ProbePlugin:
    @hookimpl
    def deepseek_register_models(self, register):  # noqa: ANN001, ANN201
        register("probe", Probe, description="a bigram model with a chosen output")
        register("tabular", Tabular, description="a model that takes features and a label")


@pytest.fixture
def host() -> PluginHost:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(ProbePlugin(), dist="deepseek-probe").status == "ok"
    return host


@pytest.fixture(autouse=True)
def _reset_probe() -> Any:
    yield
    Probe.LOSS_PER_ROW, Probe.METRIC, Probe.draws = False, "accuracy", []


def _train(host: PluginHost, run: Path, model: str = "probe", **train: Any) -> Any:
    config = {"model": {"name": model},
              "data": {"seq_len": 16, "batch_size": 4, "eval_batches": 2, "shuffle_buffer": 16},
              "train": {"max_steps": 2, "warmup_steps": 1, "eval_interval": 2, **train},
              "strategy": {"name": "single", "device": "cpu"}, "logging": {"progress": False, "plot": False}}
    return Trainer(config_from_dict(config, host=host), run_dir=run, quiet=True, host=host).fit()


def test_a_loss_per_row_is_refused_in_one_line_with_its_shape_and_the_fix(host: PluginHost, tmp_path: Path) -> None:
    """The model's broken answer: its plugin's line (was the user's UsageError, exit code 2)."""
    Probe.LOSS_PER_ROW = True
    with pytest.raises(PluginError) as caught:
        _train(host, tmp_path / "run")
    assert str(caught.value) == (
        f"model 'probe' (deepseek-probe 0.0.0, registered by {__name__}): forward returned a 'loss' that is a tensor "
        "of shape (4,) (float32); it must be the mean loss over the batch's rows, a 0-dim tensor: reduce it "
        "(loss.mean(), or reduction='mean' in the loss function); a bug in the plugin: upgrade it or report it to "
        "its authors")
    assert not (tmp_path / "run").exists()


def test_a_reserved_metric_name_is_refused_before_an_evaluation_logs_it(host: PluginHost, tmp_path: Path) -> None:
    """The model's broken answer: its plugin's line (was the user's UsageError)."""
    Probe.METRIC = "lr"
    Probe.METRIC = "lr"
    with pytest.raises(PluginError, match=r"^model 'probe' \(deepseek-probe 0\.0\.0, registered by .*\): forward "
                                          r"returned metrics \['lr'\], names the trainer logs itself; its metrics "
                                          r"must take other names \(any but .*\blr\b.*\) .*; a bug in the plugin"):
        _train(host, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # no metrics.jsonl with a val_lr row
    with pytest.raises(BrokenAnswer, match=r"^forward returned metrics \['grad_norm'\], names the trainer logs "
                                           r"itself"):
        split_output({"loss": torch.tensor(1.0), "grad_norm": 0.5})


def test_a_monitor_the_evaluations_do_not_report_is_refused_before_anything_is_written(
        host: PluginHost, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        _train(host, tmp_path / "run", monitor="val_acuracy")
    assert str(caught.value) == ("train.monitor: 'val_acuracy' is not an evaluation value of this run (did you mean "
                                 "'val_accuracy'?); it reports val_accuracy, val_bits_per_byte, val_loss")
    assert caught.value.exit_code == 2
    assert not (tmp_path / "run").exists()
    assert Probe.draws == [(False, Probe.draws[0][1])]  # one batch evaluated, no step trained


def test_a_model_metric_can_be_monitored(host: PluginHost, tmp_path: Path) -> None:
    result = _train(host, tmp_path / "run", monitor="val_accuracy", monitor_mode="max")
    evals = [r for r in read_metrics(result.run_dir / "metrics.jsonl") if "val_loss" in r]
    assert [r["step"] for r in evals] == [0, 2]
    assert result.monitor["best"] == max(r["val_accuracy"] for r in evals)


def test_the_check_leaves_the_random_generators_as_they_were(host: PluginHost, tmp_path: Path) -> None:
    _train(host, tmp_path / "run")
    # The check's evaluation of batch 0 and the step-0 evaluation of batch 0 draw the same
    # number: the check put the generator back, so the run draws what it drew without it.
    modes = [training for training, _ in Probe.draws]
    assert modes == [False, False, False, True, True, False, False]  # check; step 0 (2 batches); 2 steps; step 2
    assert Probe.draws[0][1] == Probe.draws[1][1]
    assert len({value for _, value in Probe.draws[1:]}) == 6


def test_batch_keys_the_forward_does_not_take_are_refused_in_one_line(host: PluginHost, tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        _train(host, tmp_path / "run", model="tabular")
    assert str(caught.value) == (
        "model 'tabular': the dataset's batches (keys ['input_ids', 'targets']) do not fit "
        "Tabular.forward(features, label): unexpected ['input_ids', 'targets']; missing ['features', 'label']; "
        "use a dataset whose batches have the keys the model's forward takes (data.name), or another model "
        "(model.name)")
    assert not (tmp_path / "run").exists()


def test_an_output_without_a_loss_names_what_it_held_and_the_fix() -> None:
    # a mapping without "loss" was "returned dict for a batch", not which keys it held; a per-row loss
    # returned bare had no fix in its line, where the same tensor under "loss" had one. Each is the
    # model's broken answer, which its forward block names it in (tests/core/models/test_model_broken_answers.py)
    with pytest.raises(BrokenAnswer) as caught:
        split_output({"acc": torch.tensor(1.0), "logits": torch.zeros(2, 3)})
    assert str(caught.value) == (
        "forward returned a dict without the key 'loss' (its keys: 'acc', 'logits') for a batch; it must return "
        "the mean loss (a 0-dim tensor) or a mapping with the key 'loss' (docs/plugins.md, 'Models')")
    with pytest.raises(BrokenAnswer) as caught:
        split_output(torch.zeros(4))
    assert str(caught.value) == (
        "forward returned a tensor of shape (4,) for a batch; it must return the mean loss (a 0-dim tensor: "
        "loss.mean(), or reduction='mean' in the loss function) or a mapping with the key 'loss' "
        "(docs/plugins.md, 'Models')")
    with pytest.raises(BrokenAnswer, match=r"^forward returned str for a batch; it must return the mean loss"):
        split_output("loss")
