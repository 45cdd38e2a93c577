"""A plugin strategy's bugs are named as its own: an exception raised by the strategy's code in
``__init__``, ``setup``, ``train_step``, ``evaluate``, ``save_checkpoint`` or ``load_checkpoint`` is one line
naming the strategy and its distribution (was "internal error: IndexError: ..."), and so are a
``load_checkpoint`` that returns no trainer state and a ``save_checkpoint`` that writes none. What
the model or the engines beneath a strategy raise is not blamed on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deepseek import hookimpl
from deepseek.config.load import config_from_dict
from deepseek.errors import PluginError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training import checkpoint as ckpt
from deepseek.training.single import SingleDeviceStrategy
from deepseek.training.trainer import Trainer


class Halves(SingleDeviceStrategy):
    """``single``, with one of its methods broken as ``Options.broken`` names."""

    def __init__(self, options: Any = None, *, precision: Any, host: Any = None) -> None:
        if getattr(host, "broken", None) == "__init__":
            raise KeyError("acme")  # was "internal error: KeyError: 'acme'"
        super().__init__(options, precision=precision, host=host)

    def _broken(self, where: str) -> bool:
        return self.host is not None and getattr(self.host, "broken", None) == where

    def train_step(self, micro_batches: list[dict[str, Any]]) -> Any:
        if self._broken("train_step"):
            return [micro_batches[0]][3]  # IndexError, raised by the strategy's own line
        return super().train_step(micro_batches)

    def save_checkpoint(self, directory: Path, trainer_state: dict[str, Any]) -> None:
        if self._broken("save_checkpoint"):  # the weights, but not the trainer state
            ckpt.save_model_state(Path(directory) / ckpt.MODEL_FILE, self.model.state_dict())
            return
        super().save_checkpoint(directory, trainer_state)

    def load_checkpoint(self, directory: Path) -> dict[str, Any]:
        state = super().load_checkpoint(directory)
        return None if self._broken("load_checkpoint") else state  # type: ignore[return-value]


class Plugin:
    @hookimpl
    def deepseek_register_strategies(self, register):  # noqa: ANN001, ANN201
        register("acme.halves", Halves, description="single, with a bug on demand")


TABLES = {"model": {"name": "tiny", "d_model": 32, "n_heads": 2, "n_layers": 1, "max_seq_len": 32},
          "data": {"seq_len": 16, "batch_size": 4, "eval_batches": 1}, "train": {"max_steps": 2, "eval_interval": 0},
          "strategy": {"name": "acme.halves"}, "precision": {"dtype": "fp32"},
          "checkpoint": {"interval": 1}, "logging": {"progress": False, "plot": False}}


def _host(broken: str | None) -> PluginHost:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="acme-parallel").status == "ok"
    host.broken = broken  # type: ignore[attr-defined] - what Halves breaks, read through self.host
    return host


def _train(tmp_path: Path, host: PluginHost, run: str = "run", **kwargs: Any) -> Any:
    config = config_from_dict({**TABLES, "logging": {**TABLES["logging"], "runs_dir": str(tmp_path)}}, host=host)
    return Trainer(config, run_dir=tmp_path / run, host=host, quiet=True, **kwargs).fit()


def test_an_exception_in_a_strategys_own_code_names_it(tmp_path: Path) -> None:
    with pytest.raises(PluginError) as info:
        _train(tmp_path, _host("train_step"))
    assert str(info.value).startswith("strategy 'acme.halves' (acme-parallel ") and "\n" not in str(info.value)
    assert "train_step raised IndexError: list index out of range; a bug in the plugin" in str(info.value)


def test_an_exception_in_a_strategys_init_names_it(tmp_path: Path) -> None:
    with pytest.raises(PluginError) as info:
        _train(tmp_path, _host("__init__"))
    assert str(info.value).startswith("strategy 'acme.halves' (acme-parallel ") and "\n" not in str(info.value)
    assert "__init__ raised KeyError: 'acme'; a bug in the plugin" in str(info.value)


def test_a_save_checkpoint_that_writes_no_trainer_state_is_named(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match=r"^strategy 'acme\.halves' \(acme-parallel .*\): save_checkpoint wrote no trainer\.json; it must write "
                                          r"the trainer state it is given"):
        _train(tmp_path, _host("save_checkpoint"))
    assert not list((tmp_path / "run" / "checkpoints").glob("step-*"))  # nothing half-committed


def test_a_load_checkpoint_that_returns_no_trainer_state_is_named(tmp_path: Path) -> None:
    done = _train(tmp_path, _host(None))
    with pytest.raises(PluginError, match=r"^strategy 'acme\.halves' \(acme-parallel .*\): load_checkpoint returned "
                                          r"NoneType; it must return the trainer state it read \(a dict"):
        _train(tmp_path, _host("load_checkpoint"), run="resumed", resume=done.run_dir)


def test_what_the_model_raises_beneath_a_strategy_is_not_blamed_on_it(tmp_path: Path) -> None:
    """The model's error passes the strategy's block unchanged (core's model: not a plugin's)."""
    host = _host(None)
    config = config_from_dict({**TABLES, "logging": {**TABLES["logging"], "runs_dir": str(tmp_path)}}, host=host)
    trainer = Trainer(config, run_dir=tmp_path / "run", host=host, quiet=True)
    with pytest.raises(Exception) as info, trainer.engine.strategy_calls("train_step"):
        import torch

        torch.nn.functional.linear(torch.ones(2, 3), torch.ones(4, 5))
    assert not isinstance(info.value, PluginError), info.value
