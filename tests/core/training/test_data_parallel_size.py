"""A strategy declares the data-parallel ranks it forms before any process exists
(``Strategy.data_parallel_size``, what ``deepseek launch`` checks the batch split against); set-up
refuses one whose ``dp_size`` then disagrees, in one line naming it (docs/plugins.md, section 12)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deepseek import hookimpl
from deepseek.config.load import config_from_dict
from deepseek.errors import PluginError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.single import SingleDeviceStrategy
from deepseek.training.trainer import Trainer


class Halves(SingleDeviceStrategy):
    """Claims two data-parallel ranks in one process without declaring them."""

    @property
    def dp_size(self) -> int:
        return 2


class HalvesDeclared(Halves):
    @classmethod
    def data_parallel_size(cls, config: Any, world_size: int) -> int:
        return 2


class Plugin:
    @hookimpl
    def deepseek_register_strategies(self, register):  # noqa: ANN001, ANN201
        register("halves", Halves, description="dp_size without data_parallel_size")
        register("halves-declared", HalvesDeclared, description="both, agreeing")


def _config(strategy: str, tmp_path: Path, host: PluginHost) -> Any:
    data = {"model": {"name": "tiny", "d_model": 32, "n_heads": 2, "n_layers": 1, "max_seq_len": 32},
            "data": {"seq_len": 16, "batch_size": 4}, "train": {"max_steps": 1, "eval_interval": 0},
            "strategy": {"name": strategy}, "logging": {"runs_dir": str(tmp_path / "runs"), "plot": False}}
    return config_from_dict(data, host=host)


@pytest.fixture
def host() -> PluginHost:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="deepseek-halves").status == "ok"
    return host


def test_the_base_class_declares_every_process_a_data_parallel_rank(tmp_path: Path, host: PluginHost) -> None:
    config = _config("single", tmp_path, host)
    assert SingleDeviceStrategy.data_parallel_size(config, 1) == 1
    assert SingleDeviceStrategy.data_parallel_size(config, 4) == 4


def test_a_dp_size_the_strategy_did_not_declare_is_refused_at_set_up(tmp_path: Path, host: PluginHost) -> None:
    config = _config("halves", tmp_path, host)
    with pytest.raises(PluginError) as info:
        Trainer(config, run_dir=tmp_path / "run", host=host, quiet=True).fit()
    assert str(info.value) == (
        "strategy 'halves': dp_size is 2 after set-up, but its data_parallel_size(config, 1) gave 1; a strategy "
        "that overrides dp_size overrides data_parallel_size to agree (docs/plugins.md, 'Strategies')")
    assert not (tmp_path / "run").exists()


def test_a_declared_dp_size_passes_the_check(tmp_path: Path, host: PluginHost) -> None:
    """Set-up gets past the check to the batch split over the declared two ranks (4 rows: 2 each)."""
    from deepseek.training.engine import StepEngine

    engine = StepEngine(_config("halves-declared", tmp_path, host), host=host)
    engine.setup_environment()
    assert engine.strategy.dp_size == 2
