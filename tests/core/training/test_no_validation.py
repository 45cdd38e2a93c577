"""``data.eval_batches = 0`` turns validation off (Lightning's ``limit_val_batches=0``): the run
never asks the dataset for validation batches, never evaluates, writes no ``val_*`` value, checks
the model on its first training batch, resumes bit-exactly, and settings that need evaluations are
refused in one line when the config loads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from deepseek import hookimpl
from deepseek.config.ineffective import ineffective_settings
from deepseek.data.text import TextDataset
from deepseek.errors import ConfigError, UsageError
from deepseek.models.gpt import GPT, GPTConfig
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.metrics import read_metrics
from deepseek.training.trainer import Trainer


class NoValidation(TextDataset):
    """The embedded corpus with no validation data: asking for it is a failure of the test."""

    def validation_batches(self, limit: int) -> list[Any]:
        raise AssertionError("validation_batches was called in a run with data.eval_batches = 0")


class Picky(GPT):
    """A GPT that records the batches its ``check_data`` sees and refuses them when ``REFUSE``."""

    REFUSE = ""
    seen: list[Any] = []

    def __init__(self, options: GPTConfig) -> None:
        super().__init__(options)

    def check_data(self, batch: Any, dataset: Any) -> None:
        type(self).seen.append({k: v.clone() for k, v in batch.items()})
        if type(self).REFUSE:  # the contract: a refusal is raised (a returned one is the model's bug)
            raise UsageError(type(self).REFUSE)


class Plugin:
    evaluations: list[int] = []

    @hookimpl
    def deepseek_register_datasets(self, register):  # noqa: ANN001, ANN201
        register("noval", NoValidation, description="text without validation data")

    @hookimpl
    def deepseek_register_models(self, register):  # noqa: ANN001, ANN201
        register("picky", Picky, description="a GPT recording the data it is checked on")

    @hookimpl
    def deepseek_evaluate(self, trainer: Any, step: int, metrics: dict[str, Any]) -> None:
        type(self).evaluations.append(step)


@pytest.fixture(scope="module")
def host() -> PluginHost:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="deepseek-noval").status == "ok"
    return host


OFF = {"data": {"name": "noval", "eval_batches": 0}, "model": {"dropout": 0.1},
       "train": {"max_steps": 6, "warmup_steps": 2}, "checkpoint": {"interval": 3, "keep_last": 5}}


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.fixture
def config(host: PluginHost, tiny_config_on: Any) -> Any:
    """``config(train={...}, ...)``: the tiny config without validation (:data:`OFF`) on ``host``."""
    return lambda **sections: tiny_config_on(host, **merge(OFF, sections))


def test_a_run_without_validation_trains_and_claims_no_validation_figures(
        host: PluginHost, config: Any, tmp_path: Path) -> None:
    Plugin.evaluations = []
    trainer = Trainer(config(train={"eval_interval": 0}), run_dir=tmp_path / "run", quiet=True,
                      host=host)
    result = trainer.fit()
    assert result.step == 6 and len(result.losses) == 6
    assert (result.val_losses, result.val_metrics, result.monitor, result.best_checkpoint) == ([], {}, {}, None)
    assert Plugin.evaluations == []  # no evaluation, so no deepseek_evaluate hook
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 7))
    assert not [k for r in rows for k in r if k.startswith("val_")]
    assert not [k for k in result.metrics if k.startswith("val_")]
    state = json.loads((tmp_path / "run" / "checkpoints" / "step-6" / "trainer.json").read_text())
    assert state["monitor"] == {} and not [k for k in state["metrics"] if k.startswith("val_")]
    with pytest.raises(UsageError, match=r"^data.eval_batches: 0 turns validation off"):
        trainer.evaluate()


def test_the_model_is_checked_on_the_first_training_batch_without_moving_the_data(
        host: PluginHost, config: Any, tmp_path: Path) -> None:
    """The model is checked at set-up on the first training batch, drawn and put back: the run
    trains on what a run with validation trains on, and a refusal comes before anything is
    written."""
    Picky.seen, Picky.REFUSE = [], ""
    model = {"name": "picky", "d_model": 32, "n_heads": 2, "n_layers": 2, "max_seq_len": 32, "vocab_size": 256}
    off = Trainer(config(model=model), run_dir=tmp_path / "off", quiet=True, host=host).fit()
    first = Picky.seen
    assert len(first) == 1
    on = Trainer(config(model=model, data={"name": "text", "eval_batches": 2}),
                 run_dir=tmp_path / "on", quiet=True, host=host).fit()
    assert off.losses == on.losses  # the same batches, dropout draws and updates
    assert on.val_losses and not off.val_losses
    training = TextDataset(config().data.options, batch_size=8, seed=1337)
    assert torch.equal(first[0]["input_ids"], next(training)["input_ids"])  # the first training batch

    Picky.seen, Picky.REFUSE = [], "data: this model refuses the corpus"
    with pytest.raises(UsageError, match="^data: this model refuses the corpus$"):
        Trainer(config(model=model), run_dir=tmp_path / "refused", quiet=True, host=host).fit()
    assert not (tmp_path / "refused").exists()  # refused before step 1: a fresh run leaves no folder
    Picky.REFUSE = ""


def test_resume_without_validation_is_bit_exact(host: PluginHost, config: Any, tmp_path: Path) -> None:
    straight = Trainer(config(), run_dir=tmp_path / "straight", quiet=True, host=host).fit()
    resumed = Trainer(config(), run_dir=tmp_path / "resumed", quiet=True, host=host,
                      resume=tmp_path / "straight" / "checkpoints" / "step-3").fit()
    assert resumed.losses == straight.losses[3:]  # exact float equality
    assert resumed.resumed_at == 3 and resumed.val_losses == [] and resumed.monitor == {}


NEEDS = "need{s} evaluations, but data.eval_batches = 0 turns validation off (the run never evaluates); set " \
        "data.eval_batches >= 1, or "


@pytest.mark.parametrize(("sections", "message"), [
    ({"checkpoint": {"keep_best": True}}, "checkpoint.keep_best: " + NEEDS.format(s="s") + "checkpoint.keep_best = false"),
    ({"train": {"early_stop_patience": 2}},
     "train.early_stop_patience: " + NEEDS.format(s="s") + "train.early_stop_patience = 0"),
    ({"train": {"monitor": "val_accuracy"}}, "train.monitor: " + NEEDS.format(s="s") + 'train.monitor = "val_loss"'),
    ({"checkpoint": {"keep_best": True}, "train": {"early_stop_patience": 1, "monitor_mode": "max"}},
     "checkpoint.keep_best, train.early_stop_patience, train.monitor_mode: " + NEEDS.format(s="")
     + 'checkpoint.keep_best = false and train.early_stop_patience = 0 and train.monitor_mode = "min"'),
])
def test_settings_that_need_evaluations_are_one_line_config_errors(
        config: Any, sections: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config(**sections)
    assert str(caught.value) == message
    config(**merge(sections, {"data": {"name": "text", "eval_batches": 1}}))  # fine with validation


def test_an_eval_interval_without_validation_warns_and_zero_or_the_default_do_not(
        host: PluginHost, config: Any, tmp_path: Path) -> None:
    lines = ineffective_settings(config(train={"eval_interval": 2}), device_type="cpu",
                                 compute_dtype="fp32")
    assert lines == ["train.eval_interval: 2 does nothing: data.eval_batches = 0 turns validation off (the run "
                     "never evaluates); remove eval_interval, or set data.eval_batches >= 1 to evaluate every "
                     "eval_interval steps"]
    for interval in (0, 50):
        assert ineffective_settings(config(train={"eval_interval": interval}), device_type="cpu",
                                    compute_dtype="fp32") == []
    with pytest.raises(ConfigError, match=r"^data.eval_batches: must be >= 0, got -1"):
        config(data={"eval_batches": -1})


class Regression(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.mse_loss(self.linear(x), y)


class Stream(torch.utils.data.IterableDataset):
    """Endless samples, no validation set."""

    def __iter__(self) -> Any:
        g = torch.Generator().manual_seed(0)
        while True:
            x = torch.randn(4, generator=g)
            yield x, x.sum(0, keepdim=True)


def test_fit_without_validation_needs_no_val_data_and_holds_nothing_out(tmp_path: Path) -> None:
    import deepseek

    off = {"data": {"eval_batches": 0}, "logging": {"progress": False, "plot": False, "runs_dir": str(tmp_path)}}
    result = deepseek.fit(Regression, Stream(), batch_size=4, names=("x", "y"), quiet=True,
                          config={**off, "train": {"max_steps": 3}}, run_dir=tmp_path / "stream")
    assert result.step == 3 and (result.val_losses, result.val_metrics, result.monitor) == ([], {}, {})
    assert not [k for r in read_metrics(tmp_path / "stream" / "metrics.jsonl") for k in r if k.startswith("val_")]

    rows = torch.utils.data.TensorDataset(torch.randn(17, 4), torch.randn(17, 1))  # 17: none held out, 3 steps
    epoch = deepseek.fit(Regression, rows, batch_size=8, names=("x", "y"), quiet=True, max_epochs=1, config=off,
                         val_fraction=0.5, run_dir=tmp_path / "epoch")
    assert epoch.step == 3 and epoch.val_losses == []
    held = deepseek.fit(Regression, rows, batch_size=8, names=("x", "y"), quiet=True, max_epochs=1,
                        val_fraction=0.5, config={"logging": off["logging"]}, run_dir=tmp_path / "held")
    assert held.step == 2 and held.val_losses  # with validation: 8 of 17 held out, 9 rows, 2 steps
    # deepseek.evaluate of the run reads every full batch (the run's eval_batches 0 caps nothing)
    values = deepseek.evaluate(Regression(), rows, checkpoint=tmp_path / "epoch", names=("x", "y"))
    assert set(values) == {"val_loss"}
