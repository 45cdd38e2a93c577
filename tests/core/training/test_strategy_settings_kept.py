"""A strategy's training settings are kept by the base class: the trainer calls core's final
``Strategy.place_for_training``, which keeps the run's ``StepSettings`` as ``self.settings`` and
then calls the strategy's ``setup`` (docs/plugins.md section 12). An outside author's ``setup``
that neither calls ``super()`` nor keeps the settings trained with the default ones (``grad_clip``
1.0 whatever ``train.grad_clip`` said, ``on_nonfinite = "skip"`` ignored, the model named
"model"); it now trains with the config's. A strategy overriding ``place_for_training`` is refused
in one line naming it and its distribution."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from deepseek import hookimpl
from deepseek.errors import PluginError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.engine import StepEngine
from deepseek.training.strategy import Strategy


@dataclass(frozen=True)
class BareOptions:
    device: str = "cpu"


class Bare(Strategy):
    """An outside author's one-device strategy, on core's ``Strategy`` alone: its ``setup`` keeps
    the model and the optimizer, calls no ``super()`` and keeps no settings."""

    name = "outside.bare"
    Options = BareOptions

    @property
    def device(self) -> torch.device:
        return torch.device(self.options.device)

    def setup(self, model: Any, optimizer_factory: Any, settings: Any) -> None:
        self.model = model.to(self.device)
        self.optimizer = optimizer_factory(self.model.named_parameters())

    def unwrapped_model(self) -> Any:
        return self.model

    def save_checkpoint(self, directory: Path, trainer_state: dict[str, Any]) -> None:
        raise AssertionError("no checkpoint in these tests")

    def load_checkpoint(self, directory: Path) -> dict[str, Any]:
        raise AssertionError("no checkpoint in these tests")


class Placing(Bare):
    """Overrides core's ``place_for_training`` (and so could drop the settings)."""

    def place_for_training(self, model: Any, optimizer_factory: Any, settings: Any) -> None:  # type: ignore[misc]
        self.setup(model, optimizer_factory, settings)


def _host(strategy: type) -> PluginHost:
    class Plugin:
        @hookimpl
        def deepseek_register_strategies(self, register: Any) -> None:
            register("outside.bare", strategy, description="an outside author's strategy")

    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="deepseek-outside").status == "ok"
    return host


# plain SGD (no momentum, no weight decay) at lr 1: a step moves the weights by exactly the
# clipped gradient, whose norm is train.grad_clip when the gradient is longer
CLIPPED = {"train": {"grad_clip": 0.01, "on_nonfinite": "skip"},
           "optimizer": {"name": "sgd", "momentum": 0.0, "weight_decay": 0.0},
           "strategy": {"name": "outside.bare"}}


def _flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()])


def test_a_setup_keeping_no_settings_trains_with_the_configs(tiny_config_on: Callable[..., Any]) -> None:
    """Was: the step clipped to the default 1.0 (the weights moved by min(norm, 1.0)) and applied
    the NaN step (every weight NaN)."""
    host = _host(Bare)
    engine = StepEngine(tiny_config_on(host, **CLIPPED), host=host)
    engine.setup_environment()
    model = engine.build_model()
    engine.setup_model(model)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (8, 33), generator=gen)
    batch = {"input_ids": ids[:, :-1], "targets": ids[:, 1:]}

    before = _flat(model)
    result = engine.step(batch, lr=1.0)
    moved = float((_flat(model) - before).norm())
    assert result.stepped and float(result.grad_norm) > 0.1  # the gradient is longer than the clip
    assert moved == pytest.approx(0.01, rel=1e-3)  # clipped to train.grad_clip = 0.01

    with torch.no_grad():
        model.wpe.weight[0, 0] = float("nan")  # every loss is NaN now
    before = _flat(model)
    result = engine.step(batch, lr=1.0)
    assert not result.stepped and math.isnan(float(result.loss))  # on_nonfinite = "skip": not applied
    assert torch.allclose(_flat(model), before, rtol=0.0, atol=0.0, equal_nan=True)  # no weight moved
    assert int(torch.isnan(_flat(model)).sum()) == 1  # only the weight the test poisoned
    assert engine.strategy.settings.model_name == "tiny"  # how blame lines name the model
    engine.strategy.teardown()


def test_a_strategy_overriding_place_for_training_is_refused_in_one_line(
        tiny_config_on: Callable[..., Any]) -> None:
    """When a config naming it loads, and at set-up (a config loaded on another host)."""
    line = (r"^strategy 'outside\.bare' \(deepseek-outside [^)]*\): overrides place_for_training, which core "
            r"calls to keep the run's settings before setup; override setup instead \(docs/plugins\.md section 12\)$")
    with pytest.raises(PluginError, match=line):
        tiny_config_on(_host(Placing), **CLIPPED)
    config = tiny_config_on(_host(Bare), **CLIPPED)
    with pytest.raises(PluginError, match=line):
        StepEngine(config, host=_host(Placing))
