"""A resume whose config describes another model than the checkpoint's weights is one line naming
the checkpoint and the keys (``weights do not fit this model``), whatever the strategy: the trainer
checks the weights' names and shapes (the file's header) against the model before the strategy
sets up. A plugin strategy whose ``load_checkpoint`` loads the canonical files as
docs/plugins.md section 12 shows (``ckpt.load_model_state`` into ``model.load_state_dict``) ended
the run as a bug of that plugin, with torch's many-line size-mismatch report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deepseek import hookimpl
from deepseek.config.load import config_from_dict
from deepseek.errors import CheckpointError, PluginError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training import checkpoint as ckpt
from deepseek.training.single import SingleDeviceStrategy
from deepseek.training.trainer import Trainer


class Plain(SingleDeviceStrategy):
    """``single`` loading checkpoints the way the page's worked example does."""

    def load_checkpoint(self, directory: Path) -> dict[str, Any]:
        self.model.load_state_dict(ckpt.load_model_state(directory))
        ckpt.load_optimizer_state(directory, self.optimizer, self._param_names)
        return ckpt.read_trainer_state(directory)


class Plugin:
    @hookimpl
    def deepseek_register_strategies(self, register):  # noqa: ANN001, ANN201
        register("acme.plain", Plain, description="single with the documented load_checkpoint")


def _train(tmp_path: Path, host: PluginHost, d_model: int, **kwargs: Any) -> Any:
    config = config_from_dict({
        "model": {"name": "tiny", "d_model": d_model, "n_heads": 2, "n_layers": 1, "max_seq_len": 32},
        "data": {"seq_len": 16, "batch_size": 4, "eval_batches": 1},
        "train": {"max_steps": kwargs.pop("max_steps", 2), "eval_interval": 0},
        "strategy": {"name": "acme.plain"}, "precision": {"dtype": "fp32"}, "checkpoint": {"interval": 1},
        "logging": {"progress": False, "plot": False, "runs_dir": str(tmp_path)}}, host=host)
    return Trainer(config, run_dir=tmp_path / "run", host=host, quiet=True, **kwargs).fit()


def test_a_resume_with_another_model_is_refused_in_one_line_before_the_strategy_loads(tmp_path: Path) -> None:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="acme-parallel").status == "ok"
    done = _train(tmp_path, host, 32)
    before = sorted(p.name for p in (tmp_path / "run").rglob("*"))
    with pytest.raises(CheckpointError) as info:
        _train(tmp_path, host, 64, max_steps=4, resume=done.run_dir)
    message = str(info.value)
    assert not isinstance(info.value, PluginError) and "\n" not in message, message
    assert message.startswith(str(tmp_path / "run" / "checkpoints" / "step-2")), message
    assert "weights do not fit this model (shape mismatch ['wte.weight', 'wpe.weight'" in message, message
    assert sorted(p.name for p in (tmp_path / "run").rglob("*")) == before  # nothing written
    assert _train(tmp_path, host, 32, max_steps=4, resume=done.run_dir).step == 4  # its own model resumes
