"""A strategy's ``step_metrics()`` (docs/plugins.md section 12) is logged with each step, held to
its contract: a dict of names of its own to numbers. A name the step record holds already
(``loss``, ``lr``, the model's metric) used to replace that value in ``metrics.jsonl`` silently
(a plugin strategy returning ``{"loss": 123.0}`` logged a loss of 123.0 every step); now it, and a
value that is not a number, stop the run in one line naming the strategy and its distribution."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from deepseek import hookimpl
from deepseek.config.load import config_from_dict
from deepseek.errors import PluginError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.engine import checked_step_metrics
from deepseek.training.metrics import read_metrics
from deepseek.training.single import SingleDeviceStrategy
from deepseek.training.trainer import Trainer


class Reporting(SingleDeviceStrategy):
    """``single`` reporting the step metrics its host's ``reported`` holds."""

    def step_metrics(self) -> Any:
        return self.host.reported  # type: ignore[union-attr]


class Plugin:
    @hookimpl
    def deepseek_register_strategies(self, register):  # noqa: ANN001, ANN201
        register("acme.reporting", Reporting, description="single, reporting given step metrics")


TABLES = {"model": {"name": "tiny", "d_model": 32, "n_heads": 2, "n_layers": 1, "max_seq_len": 32},
          "data": {"seq_len": 16, "batch_size": 4, "eval_batches": 1}, "train": {"max_steps": 2, "eval_interval": 0},
          "strategy": {"name": "acme.reporting"}, "precision": {"dtype": "fp32"},
          "logging": {"progress": False, "plot": False}}


def _train(tmp_path: Path, reported: Any) -> Any:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="acme-parallel").status == "ok"
    host.reported = reported  # type: ignore[attr-defined]
    config = config_from_dict({**TABLES, "logging": {**TABLES["logging"], "runs_dir": str(tmp_path)}}, host=host)
    return Trainer(config, run_dir=tmp_path / "run", host=host, quiet=True).fit()


def test_a_strategys_own_step_metric_is_logged_with_each_step(tmp_path: Path) -> None:
    _train(tmp_path, {"acme_buckets": 3, "acme_ratio": 0.25})
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    steps = [r for r in rows if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2]
    assert all(r["acme_buckets"] == 3 and r["acme_ratio"] == 0.25 for r in steps)
    assert all(4.0 < r["loss"] < 7.0 for r in steps)  # the model's loss, untouched


def test_a_step_metric_named_like_the_loss_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(PluginError) as info:
        _train(tmp_path, {"loss": 123.0})
    message = str(info.value)
    assert message.startswith("strategy 'acme.reporting' (acme-parallel ") and "\n" not in message
    assert ("step_metrics returned 'loss', a value the trainer logs, which it would replace in the step record; "
            "it must return a dict of metric names of its own") in message


@pytest.mark.parametrize("reported", [{"acme_note": "fast"}, {"acme_ok": True}, [("acme", 1.0)]])
def test_a_step_metric_that_is_not_a_number_is_refused(tmp_path: Path, reported: Any) -> None:
    with pytest.raises(PluginError, match=r"^strategy 'acme\.reporting' \(acme-parallel .*\): step_metrics returned "):
        _train(tmp_path, reported)


def test_the_models_metric_is_the_models_and_loss_scale_the_strategys_to_report() -> None:
    with pytest.raises(PluginError, match=r"^strategy x: step_metrics returned 'accuracy', the model's metric, "):
        checked_step_metrics({"accuracy": 0.5}, "strategy x", ["accuracy"])
    assert checked_step_metrics({"loss_scale": 1024.0, "comm_bytes": 4096}, "strategy x", ["accuracy"]) == {
        "loss_scale": 1024.0, "comm_bytes": 4096}
    numpy_counts = {"acme_buckets": np.int64(3), "acme_ratio": np.float32(0.5)}
    assert checked_step_metrics(numpy_counts, "strategy x", []) == numpy_counts
    with pytest.raises(PluginError, match=r"step_metrics returned 'acme': tensor\(1\.\), not a number under a name"):
        checked_step_metrics({"acme": torch.tensor(1.0)}, "strategy x", [])
