"""``PluginSettings.as_env``: the ``DEEPSEEK_*`` variables that give another process (``deepseek
launch``'s workers) the same plugin settings, ``None`` for a variable to unset."""

from __future__ import annotations

import pytest

from deepseek.plugins.settings import PluginSettings


@pytest.mark.parametrize("settings", [
    PluginSettings(),
    PluginSettings(autoload=False, allow=frozenset({"deepseek-pro", "acme"}), deny=frozenset({"deepseek-tidy"}),
                   strict=True, trace=True, prefer=("deepseek-zeta", "deepseek-pro")),
    PluginSettings.from_env({"DEEPSEEK_PLUGINS": "pro"}).with_cli_options(disable_plugins="enterprise",
                                                                          strict_plugins=True),
], ids=["defaults", "every-field", "env-then-options"])
def test_the_variables_give_the_same_settings_back(settings: PluginSettings) -> None:
    env = settings.as_env()
    assert PluginSettings.from_env({k: v for k, v in env.items() if v is not None}) == settings
    assert set(env) == {"DEEPSEEK_DISABLE_PLUGIN_AUTOLOAD", "DEEPSEEK_PLUGINS", "DEEPSEEK_DISABLE_PLUGINS",
                        "DEEPSEEK_STRICT_PLUGINS", "DEEPSEEK_TRACE_PLUGINS", "DEEPSEEK_PLUGIN_PREFER"}
