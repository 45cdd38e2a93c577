"""Optimizers and learning-rate schedules are component kinds like any other: core registers its
own through ``deepseek_register_optimizers`` and ``deepseek_register_lr_schedules``, a plugin's
appear beside them, and a target of the wrong type is refused when a config names it, naming the
distribution. (Training with them: tests/core/training/test_lr_schedules.py.)"""

from __future__ import annotations

import pytest

from deepseek import hookimpl
from deepseek.config.load import config_from_dict
from deepseek.errors import ConfigError, PluginError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.optimizers import SGD


class NotASchedule:
    """Registered as a schedule, but no LRSchedule."""


class KindsPlugin:
    @hookimpl
    def deepseek_register_optimizers(self, register):  # noqa: ANN001, ANN201
        register("kinds.sgd", SGD, description="core's SGD under another name")
        register("kinds.lazy", "deepseek.training.optimizers:AdamW", description="a lazy target")

    @hookimpl
    def deepseek_register_lr_schedules(self, register):  # noqa: ANN001, ANN201
        register("kinds.wrong", NotASchedule, description="not a schedule")


@pytest.fixture
def host() -> PluginHost:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(KindsPlugin(), dist="deepseek-kinds").status == "ok"
    return host


def test_core_and_plugin_components_are_listed_by_kind(host: PluginHost) -> None:
    assert {"adamw", "sgd", "kinds.lazy", "kinds.sgd"} <= set(host.names("optimizer"))
    assert {"cosine", "linear", "constant", "wsd", "kinds.wrong"} <= set(host.names("lr_schedule"))
    assert host.resolve("optimizer", "kinds.lazy").dist == "deepseek-kinds"
    config = config_from_dict({"optimizer": {"name": "kinds.sgd", "nesterov": True}}, host=host)
    assert config.optimizer.name == "kinds.sgd" and config.optimizer.options.nesterov is True


def test_a_target_of_the_wrong_type_names_its_distribution(host: PluginHost) -> None:
    with pytest.raises(PluginError, match=r"lr_schedule 'kinds.wrong' \(deepseek-kinds") as info:
        config_from_dict({"lr_schedule": {"name": "kinds.wrong"}}, host=host)
    assert "LRSchedule" in str(info.value) and "\n" not in str(info.value)


def test_a_core_only_name_is_refused_with_the_registered_ones(host: PluginHost) -> None:
    with pytest.raises(ConfigError, match=r"^optimizer\.name: unknown optimizer 'kinds\.sdg'; did you mean 'kinds\.sgd'"):
        config_from_dict({"optimizer": {"name": "kinds.sdg"}}, host=host)


def test_an_optimizer_without_create_is_refused_when_a_config_names_it() -> None:
    from deepseek.training.optimizers import OptimizerBuilder

    class NoCreate(OptimizerBuilder):
        """Declares what it is, builds nothing."""

    class Plugin:
        @hookimpl
        def deepseek_register_optimizers(self, register):  # noqa: ANN001, ANN201
            register("kinds.nocreate", NoCreate, description="no create()")

    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="deepseek-kinds").status == "ok"
    with pytest.raises(PluginError, match=r"^optimizer 'kinds.nocreate' \(deepseek-kinds .*does not implement the "
                                          r"abstract method\(s\) create of OptimizerBuilder"):
        config_from_dict({"optimizer": {"name": "kinds.nocreate"}}, host=host)
