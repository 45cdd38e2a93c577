"""``trainer.should_stop`` (Lightning's): a callback sets it and the run ends before the next step
as a complete run: its step saved as at the end, the result saying why (``ended_early``), no
signal recorded; early stopping says why the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepseek import hookimpl
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.metrics import read_metrics
from deepseek.training.trainer import Trainer


class StopAtThree:
    @hookimpl
    def deepseek_train_step_end(self, trainer: Any, step: int, metrics: dict[str, Any]) -> None:
        if step == 3:
            trainer.should_stop = True


def test_a_callback_ends_the_run_as_complete(tiny_config_on: Any, tmp_path: Path) -> None:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(StopAtThree(), dist="deepseek-stopper").status == "ok"
    config = tiny_config_on(host, train={"max_steps": 8, "eval_interval": 4}, checkpoint={"interval": 5})
    result = Trainer(config, run_dir=tmp_path / "run", quiet=True, host=host).fit()
    assert result.step == 3 and result.stopped_by is None
    assert result.ended_early == "trainer.should_stop was set by a callback"
    assert result.checkpoint == tmp_path / "run" / "checkpoints" / "step-3"  # saved as at the end
    steps = [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in r]
    assert steps == [1, 2, 3]


def test_early_stopping_says_why_it_ended(tiny_config_on: Any, tmp_path: Path) -> None:
    host = PluginHost(PluginSettings(autoload=False))
    train = {"max_steps": 12, "eval_interval": 2, "monitor_mode": "max", "early_stop_patience": 2}
    result = Trainer(tiny_config_on(host, train=train), run_dir=tmp_path / "run", quiet=True, host=host).fit()
    assert result.step == 4 and result.stopped_by is None
    assert result.ended_early is not None and result.ended_early.startswith("early stopping: val_loss did not improve")
