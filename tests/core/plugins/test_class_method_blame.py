"""What a plugin component's own class methods and constructors raise while a config loads or a
run is built (``Dataset.model_num_classes``, ``check_config`` of an optimizer, a schedule or a
strategy, ``Tracker.check``, an ``OptimizerBuilder``'s ``__init__``) is one line naming the
component and its distribution, a bug of the plugin (was "internal error: AttributeError: ...")."""

from __future__ import annotations

from typing import Any

import pytest

from deepseek import hookimpl
from deepseek.config.load import config_from_dict
from deepseek.data.dataset import Dataset
from deepseek.errors import PluginError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.tracking import Tracker
from deepseek.training.build import create_optimizer_builder
from deepseek.training.optimizers import OptimizerBuilder
from deepseek.training.schedule import LRSchedule
from deepseek.training.single import SingleDeviceStrategy


class Labels(Dataset):
    def __next__(self) -> Any:
        raise AssertionError("not reached")

    def validation_batches(self, limit: int) -> Any:
        raise AssertionError("not reached")

    def state_dict(self) -> Any:
        return {}

    def load_state_dict(self, state: Any) -> None:
        pass

    @classmethod
    def model_num_classes(cls, options: Any) -> int:
        return options.classes  # no such option: AttributeError


class Opt(OptimizerBuilder):
    @classmethod
    def check_config(cls, options: Any, config: Any) -> None:
        raise KeyError("betas")

    def create(self, groups: Any, lr: float, *, master_weights: bool = False, accumulation: int = 1) -> Any:
        raise AssertionError("not reached")


class OptInit(Opt):
    @classmethod
    def check_config(cls, options: Any, config: Any) -> None:
        pass

    def __init__(self, options: Any, config: Any) -> None:
        raise ValueError("no state")


class Sched(LRSchedule):
    @classmethod
    def check_config(cls, options: Any, train: Any) -> None:
        raise TypeError("train")


class Strat(SingleDeviceStrategy):
    @classmethod
    def check_config(cls, config: Any) -> None:
        raise IndexError("ranks")


class Track(Tracker):
    @classmethod
    def check(cls, options: Any) -> None:
        raise RuntimeError("no library")


class Plugin:
    @hookimpl
    def deepseek_register_datasets(self, register):  # noqa: ANN001, ANN201
        register("cm.labels", Labels, description="model_num_classes raises")

    @hookimpl
    def deepseek_register_optimizers(self, register):  # noqa: ANN001, ANN201
        register("cm.opt", Opt, description="check_config raises")
        register("cm.opt-init", OptInit, description="__init__ raises")

    @hookimpl
    def deepseek_register_lr_schedules(self, register):  # noqa: ANN001, ANN201
        register("cm.sched", Sched, description="check_config raises")

    @hookimpl
    def deepseek_register_strategies(self, register):  # noqa: ANN001, ANN201
        register("cm.strat", Strat, description="check_config raises")

    @hookimpl
    def deepseek_register_trackers(self, register):  # noqa: ANN001, ANN201
        register("cm.track", Track, description="check raises")


@pytest.fixture(scope="module")
def host() -> PluginHost:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="deepseek-cm", version="0.2.0").status == "ok"
    return host


@pytest.mark.parametrize(("data", "kind", "name", "call", "error"), [
    ({"data": {"name": "cm.labels"}}, "dataset", "cm.labels", "model_num_classes", "AttributeError: "),
    ({"optimizer": {"name": "cm.opt"}}, "optimizer", "cm.opt", "check_config", "KeyError: 'betas'"),
    ({"lr_schedule": {"name": "cm.sched"}}, "lr_schedule", "cm.sched", "check_config", "TypeError: train"),
    ({"strategy": {"name": "cm.strat"}}, "strategy", "cm.strat", "check_config", "IndexError: ranks"),
    ({"logging": {"trackers": ["cm.track"]}}, "tracker", "cm.track", "check", "RuntimeError: no library"),
])
def test_a_class_method_that_raises_names_its_component(
        host: PluginHost, data: dict[str, Any], kind: str, name: str, call: str, error: str) -> None:
    with pytest.raises(PluginError) as caught:
        config_from_dict(data, host=host)
    message = str(caught.value)
    assert message.startswith(f"{kind} {name!r} (deepseek-cm 0.2.0, registered by "), message
    assert f": {call} raised {error}" in message and "a bug in the plugin" in message and "\n" not in message


def test_an_optimizer_builder_whose_init_raises_names_it(host: PluginHost) -> None:
    config = config_from_dict({"optimizer": {"name": "cm.opt-init"}}, host=host)
    with pytest.raises(PluginError, match=r"^optimizer 'cm.opt-init' \(deepseek-cm 0.2.0, registered by .*\): "
                                          r"__init__ raised ValueError: no state; a bug in the plugin"):
        create_optimizer_builder(config, host)


def test_core_components_errors_are_not_blamed_on_a_plugin(host: PluginHost, monkeypatch: pytest.MonkeyPatch) -> None:
    """deepseek's own components load, and a bug of theirs passes as it is (an internal error),
    not as 'a bug in the plugin' (it only loaded the config before: it could not fail that way)."""
    from deepseek.training.optimizers import AdamW

    config_from_dict({"optimizer": {"name": "adamw"}, "lr_schedule": {"name": "cosine"}}, host=host)

    def broken(cls: Any, options: Any, section: Any) -> None:
        raise KeyError("core bug")

    monkeypatch.setattr(AdamW, "check_config", classmethod(broken))
    with pytest.raises(KeyError, match="core bug"):
        config_from_dict({"optimizer": {"name": "adamw"}}, host=host)
