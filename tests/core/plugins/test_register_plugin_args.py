"""``PluginHost(settings)`` and ``host.register_plugin(plugin, dist=, version=, name=)`` given
values of the wrong kind: one line naming the argument, never an ``AttributeError`` from a
string method, and nothing registered (``None`` or a number was recorded as an ``ok`` plugin)."""

from __future__ import annotations

from typing import Any

import pytest

import deepseek
from deepseek.errors import PluginError, UsageError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings


class Callbacks:
    @deepseek.hookimpl
    def deepseek_train_step_end(self, trainer: Any, step: int, metrics: Any) -> None:
        """Nothing: a plugin to register."""


@pytest.mark.parametrize(("changes", "message"), [
    ({"plugin": None}, "register_plugin: plugin must be a module or an object with @hookimpl methods, got None"),
    ({"plugin": 5}, "register_plugin: plugin must be a module or an object with @hookimpl methods, got 5"),
    ({"dist": 5}, "register_plugin: dist must be a str, got 5 (int)"),
    ({"version": 1.0}, "register_plugin: version must be a str, got 1.0 (float)"),
    ({"name": ["cb"]}, "register_plugin: name must be a str, got ['cb'] (list)"),
])
def test_register_plugin_refuses_arguments_of_the_wrong_kind_and_records_nothing(changes: dict[str, Any],
                                                                               message: str) -> None:
    host = PluginHost(PluginSettings(autoload=False))
    before = set(host.records)
    with pytest.raises(PluginError) as caught:
        host.register_plugin(**{"plugin": Callbacks(), "dist": "my-callbacks", **changes})
    assert str(caught.value) == message
    assert set(host.records) == before


def test_a_plugin_host_of_settings_that_are_not_settings_or_a_kind_that_is_not_a_str_is_one_line() -> None:
    with pytest.raises(UsageError, match=r"^PluginHost\(settings=\): expected a deepseek.plugins.settings.PluginSettings"):
        PluginHost("strict")  # type: ignore[arg-type]
    host = PluginHost(PluginSettings(autoload=False))
    with pytest.raises(UsageError, match=r"^component kind: expected a name such as 'model' \(a str\), got None; kinds: "):
        host.resolve(None, "tiny")  # type: ignore[arg-type]
