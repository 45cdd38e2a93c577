"""A model's declared metrics (``TrainableModel.metric_names``) and the one list of the values a
run reports (``deepseek.training.run_values.reported_values``): the names a run writes are those
of the list, a model whose forward returns other names than it declares is refused in one line
before the run folder is written, and ``train.monitor`` is checked against the declared names."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepseek import hookimpl
from deepseek.config.load import config_from_dict
from deepseek.errors import ConfigError, PluginError, UsageError
from deepseek.models.checks import declared_metrics
from deepseek.models.protocol import TrainableModel
from deepseek.plugins.calls import PLUGIN_BUG, BrokenAnswer
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.metrics import read_metrics
from deepseek.training.run_values import config_values, reported_values
from deepseek.training.trainer import Trainer


class Declaring(TrainableModel):
    """A bigram model on byte tokens reporting ``accuracy`` and ``top5``; it declares ``DECLARED``."""

    DECLARED: ClassVar[Any] = ("top5", "accuracy")

    def __init__(self, options: Any = None) -> None:
        super().__init__()
        self.embed = nn.Embedding(256, 8)
        self.head = nn.Linear(8, 256)

    def metric_names(self) -> Any:
        return type(self).DECLARED

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.head(self.embed(input_ids))
        top5 = (logits.topk(5, dim=-1).indices == targets.unsqueeze(-1)).any(-1).float().mean()
        return {"loss": F.cross_entropy(logits.transpose(1, 2), targets),
                "accuracy": (logits.argmax(-1) == targets).float().mean(), "top5": top5}


class Plugin:
    @hookimpl
    def deepseek_register_models(self, register):  # noqa: ANN001, ANN201
        register("declaring", Declaring, description="a bigram model declaring its metrics")


@pytest.fixture
def host() -> Any:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="deepseek-declaring").status == "ok"
    yield host
    Declaring.DECLARED = ("top5", "accuracy")


def _config(host: PluginHost, model: str = "declaring", **train: Any) -> Any:
    return config_from_dict({
        "model": {"name": model, **({"d_model": 32, "n_heads": 2, "n_layers": 1} if model == "tiny" else {})},
        "data": {"seq_len": 16, "batch_size": 4, "eval_batches": 2, "shuffle_buffer": 16},
        "train": {"max_steps": 2, "warmup_steps": 1, "eval_interval": 2, **train},
        "strategy": {"name": "single", "device": "cpu"}, "logging": {"progress": False, "plot": False}}, host=host)


def _train(host: PluginHost, run: Path, model: str = "declaring", **train: Any) -> Any:
    return Trainer(_config(host, model, **train), run_dir=run, quiet=True, host=host).fit()


@pytest.mark.parametrize("model", ["declaring", "tiny"])
def test_the_values_a_run_writes_are_the_listed_ones(host: PluginHost, tmp_path: Path, model: str) -> None:
    config = _config(host, model)
    planned = config_values(config, host)
    result = _train(host, tmp_path / "run", model)
    records = read_metrics(result.run_dir / "metrics.jsonl")
    evals = [r for r in records if "val_loss" in r]
    steps = [r for r in records if "val_loss" not in r]
    metrics = ("accuracy", "top5") if model == "declaring" else ()
    listed = reported_values(metrics, tokens=True, text=True)
    assert planned == listed and planned.complete
    assert len(evals) == 2 and all(set(r) - {"step"} == set(listed.evaluation) for r in evals)
    assert len(steps) == 2 and all(set(r) == set(listed.training) for r in steps)
    assert listed.command == (*listed.evaluation, "val_perplexity")


def test_a_model_whose_forward_returns_other_metrics_than_declared_is_refused(
        host: PluginHost, tmp_path: Path) -> None:
    """The model's two answers disagree: its plugin's bug (was the user's UsageError, exit code 2)."""
    Declaring.DECLARED = ("accuracy", "top1")
    with pytest.raises(PluginError) as caught:
        _train(host, tmp_path / "run")
    assert str(caught.value) == (
        f"model 'declaring' (deepseek-declaring 0.0.0, registered by {__name__}): metric_names() declares "
        "['accuracy', 'top1'] but forward returned ['accuracy', 'top5'] on the first validation batch (metrics are "
        "its scalar entries: a per-row tensor is not one, reduce it with .mean()); metric_names() must return the "
        f"names forward reports (docs/plugins.md, 'Models'); {PLUGIN_BUG}")
    assert not isinstance(caught.value, UsageError)  # the CLI's exit code 1, not the user's 2
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("declared", "error", "message"), [
    # a reserved name or no tuple of names: the model's broken answer (its plugin's PluginError in
    # its block: tests/core/models/test_model_broken_answers.py), was a UsageError
    (["accuracy", "lr"], BrokenAnswer, "metric_names() declares metrics ['lr'], names the trainer logs itself; its "
                                       "metrics must take other names (any but grad_norm, loss, loss_scale, lr, "
                                       "samples, samples_per_s, skipped, step, step_time, tokens, tokens_per_s) "
                                       "(docs/plugins.md, 'Models')"),
    ("accuracy", BrokenAnswer, "metric_names() returned 'accuracy'; it must return a tuple of the metric names "
                               "forward reports (() for none) or None when not declared (docs/plugins.md, 'Models')"),
])
def test_a_malformed_declaration_is_refused_in_one_line(declared: Any, error: type[Exception], message: str) -> None:
    Declaring.DECLARED = declared
    try:
        with pytest.raises(error) as caught:
            declared_metrics(Declaring())
        assert str(caught.value) == message
    finally:
        Declaring.DECLARED = ("top5", "accuracy")


def test_a_mistyped_monitor_is_refused_against_the_declared_names(host: PluginHost, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        _train(host, tmp_path / "run", monitor="val_top_5")
    assert str(caught.value) == ("train.monitor: 'val_top_5' is not an evaluation value of this run (did you mean "
                                 "'val_top5'?); it reports val_accuracy, val_bits_per_byte, val_loss, val_top5")
    assert not (tmp_path / "run").exists()


def test_the_gpt_declares_no_metrics_and_an_undeclared_model_is_not_listed() -> None:
    import deepseek

    assert declared_metrics(deepseek.create_model("tiny", device="meta")) == ()
    assert declared_metrics(nn.Linear(1, 1)) is None
    unknown = reported_values(None, tokens=False, text=False)
    assert not unknown.complete and not unknown.missing("val_anything")
    assert unknown.training == ("step", "loss", "lr", "grad_norm", "samples", "samples_per_s", "step_time", "skipped")


class Counting(Declaring):
    """``Declaring`` with a whole-set metric, ``seen_rare``, that it leaves out of an evaluation
    whose data gave nothing to measure it on (a modality, a class no row has)."""

    DECLARED: ClassVar[Any] = ("top5", "accuracy", "seen_rare")

    def metrics_from_totals(self, totals: Any) -> dict[str, float]:
        return {}


def test_a_whole_set_metric_the_data_did_not_measure_may_be_left_out() -> None:
    from deepseek.models.checks import check_declared_metrics

    got = check_declared_metrics(Counting(), ["accuracy", "top5"], whole_set=True)
    assert got == ("accuracy", "top5")
    with pytest.raises(BrokenAnswer, match=r"declares \['accuracy', 'seen_rare', 'top5'\] but forward returned "
                                           r"\['accuracy', 'top5', 'top9'\]"):  # never one it did not declare
        check_declared_metrics(Counting(), ["accuracy", "top5", "top9"], whole_set=True)
    with pytest.raises(BrokenAnswer, match=r"declares \['accuracy', 'seen_rare', 'top5'\] but forward returned "
                                           r"\['accuracy', 'top5'\]"):  # without whole-set metrics: exactly
        check_declared_metrics(Counting(), ["accuracy", "top5"])
