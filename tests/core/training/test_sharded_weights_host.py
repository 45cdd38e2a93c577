"""The weights of a sharded checkpoint (``deepseek.load_model``, ``generate``, ``eval``, a
``single`` resume, ``export_weights``, ``train.init_from``, ``deepseek.evaluate(model, data,
checkpoint=...)``) are read with its ``sharded.json`` checked as every reader checks it: the saved
groups held to the optimizer its ``trainer.json`` names, looked up on the plugin host passed in
(the command's or run's), not the process's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _negative_momentum import DAMAGED, MODEL, OPTIMIZER, Net, registered, write_sharded

import deepseek
from deepseek.config.load import config_from_dict
from deepseek.errors import CheckpointError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training import checkpoint as ckpt


@pytest.fixture
def host() -> PluginHost:
    return registered()


def _net_weights() -> dict[str, torch.Tensor]:
    """Weights no fresh ``Net`` has: loading them shows in every output."""
    return {"layer.weight": torch.arange(6.0).reshape(3, 2) / 4, "layer.bias": torch.tensor([0.5, -1.0, 0.25])}


def _sharded(out: Path, state: dict[str, torch.Tensor] | None = None) -> Path:
    """A sharded checkpoint of ``state`` (default: one tensor ``w``) as pro writes it, trained
    with the plugin's optimizer."""
    return write_sharded(out, state or {"w": torch.arange(4.0)})


def test_sharded_weights_are_read_on_the_host_passed_in(host: PluginHost, tmp_path: Path) -> None:
    directory = _sharded(tmp_path / "step-1")
    assert torch.equal(ckpt.load_model_state(directory, host)["w"], torch.arange(4.0))
    model = torch.nn.Module()
    model.register_buffer("w", torch.zeros(4))
    ckpt.load_into_model(model, directory, host)
    assert torch.equal(model.w, torch.arange(4.0))
    # on the process's host the name is not installed: momentum is held >= 0 there
    with pytest.raises(CheckpointError, match=DAMAGED):
        ckpt.load_model_state(directory)


def test_export_weights_reads_on_the_host_passed_in(host: PluginHost, tmp_path: Path) -> None:
    directory = _sharded(tmp_path / "step-1")
    out = ckpt.export_weights(directory, tmp_path / "w.safetensors", host=host)
    assert torch.equal(ckpt.load_model_state(out)["w"], torch.arange(4.0))
    with pytest.raises(CheckpointError, match=DAMAGED):
        ckpt.export_weights(directory, tmp_path / "other.safetensors")
    assert not (tmp_path / "other.safetensors").exists()


def test_init_from_reads_on_the_runs_host(host: PluginHost, tmp_path: Path) -> None:
    from deepseek.training.build import build_model

    directory = _sharded(tmp_path / "step-1", _net_weights())
    config = config_from_dict({"model": {"name": MODEL}, "train": {"init_from": str(directory)}}, host=host)
    model = build_model(config, host=host)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in _net_weights().items())


def test_evaluate_reads_the_checkpoint_on_the_host_passed_in(host: PluginHost, tmp_path: Path) -> None:
    directory = _sharded(tmp_path / "step-1", _net_weights())
    x = torch.randn(40, 2, generator=torch.Generator().manual_seed(0))
    data, names = torch.utils.data.TensorDataset(x, (x > 0).sum(1)), ("x", "label")
    loaded = Net()
    loaded.load_state_dict(_net_weights())
    want = deepseek.evaluate(loaded, data, names=names)
    assert deepseek.evaluate(Net(), data, names=names, checkpoint=directory, host=host) == want
    with pytest.raises(CheckpointError, match=DAMAGED):
        deepseek.evaluate(Net(), data, names=names, checkpoint=directory)


class Counting(PluginHost):
    """A host that records the optimizers looked up on it."""

    def __init__(self) -> None:
        super().__init__(PluginSettings(autoload=False))
        self.optimizers: list[str] = []

    def resolve(self, kind: str, name: str):  # noqa: ANN201
        if kind == "optimizer":
            self.optimizers.append(name)
        return super().resolve(kind, name)


def test_single_reads_a_sharded_checkpoint_once_on_the_runs_host(tmp_path: Path) -> None:
    """Weights and optimizer state from one read of ``sharded.json``: its groups held to the
    optimizer its ``trainer.json`` names once per load (was twice: once for each)."""
    from deepseek.training.build import optimizer_factory
    from deepseek.training.mixed_precision import Precision
    from deepseek.training.single import SingleDeviceStrategy
    from deepseek.training.strategy import StepSettings

    host = registered(Counting())
    directory = _sharded(tmp_path / "step-1", _net_weights())
    # the live optimizer is the one that wrote the checkpoint (a saved key the live optimizer neither
    # holds nor declares is refused on resume, and its declaration lets momentum be negative)
    factory = optimizer_factory(config_from_dict({"optimizer": {"name": OPTIMIZER}}, host=host), host=host)
    host.optimizers.clear()  # the lookups counted are the load's
    strategy = SingleDeviceStrategy({"device": "cpu"}, precision=Precision("fp32"), host=host)
    strategy.place_for_training(Net(), lambda named: factory([{"params": [p for _, p in named]}]), StepSettings())
    assert strategy.load_checkpoint(directory)["step"] == 1
    assert all(torch.equal(strategy.model.state_dict()[k], v) for k, v in _net_weights().items())
    assert strategy.optimizer.param_groups[0]["momentum"] == -0.5   # the checkpoint's groups, restored
    assert host.optimizers == [OPTIMIZER]
