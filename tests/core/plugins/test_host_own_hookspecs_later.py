"""A plugin registered in an earlier call whose ``optionalhook`` implementation was skipped (no
loaded distribution specified the hook) takes it up when a later plugin adds that hookspec: the
note goes and its registration runs for the hook then, one transaction (docs/plugins.md section 7)."""

from __future__ import annotations

import pytest
from _sprocket_specs import SprocketSpecs

from deepseek import hookimpl
from deepseek.plugins.host import PluginHost, PluginWarning
from deepseek.plugins.settings import PluginSettings


class _Early:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    @hookimpl
    def deepseek_register_models(self, register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        register("early.model", dict, description="kept whatever the sprockets do")

    @hookimpl(optionalhook=True)
    def deepseek_register_sprockets(self, register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        register("early.sprocket", dict, description="registered once a plugin specifies sprockets")
        if self.fail:
            raise RuntimeError("broken sprockets")

    @hookimpl(optionalhook=True)
    def deepseek_sprocket_made(self, sprocket):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        return f"early saw {sprocket}"


def _host() -> PluginHost:
    return PluginHost(PluginSettings(allow=frozenset()))


def test_an_earlier_optional_implementer_takes_up_a_hookspec_added_later() -> None:
    host = _host()
    early = host.register_plugin(_Early(), dist="deepseek-early")
    assert early.status == "ok" and early.components == {"model": ["early.model"]}
    assert sorted(n.partition(":")[0] for n in early.skipped) == ["deepseek_register_sprockets",
                                                                  "deepseek_sprocket_made"]
    ext = host.register_plugin(SprocketSpecs(), dist="deepseek-ext")
    assert ext.status == "ok", ext.reason
    assert early.skipped == []
    assert early.components == {"model": ["early.model"], "sprocket": ["early.sprocket"]}
    assert host.names("sprocket") == ["early.sprocket", "ext.sprocket"]
    assert host.create("sprocket", "early.sprocket", a=1) == {"a": 1}
    assert host.pm.hook.deepseek_sprocket_made(sprocket="s1") == ["early saw s1"]
    assert host.problems == []


def test_an_earlier_plugin_whose_late_registration_fails_is_dropped_keeping_nothing() -> None:
    host = _host()
    early = host.register_plugin(_Early(fail=True), dist="deepseek-early")
    assert early.status == "ok" and early.components == {"model": ["early.model"]}
    with pytest.warns(PluginWarning, match="broken sprockets"):
        ext = host.register_plugin(SprocketSpecs(), dist="deepseek-ext")
    assert ext.status == "ok" and host.names("sprocket") == ["ext.sprocket"]
    assert early.status == "failed" and early.components == {}
    assert early.reason.startswith("deepseek-early 0.0.0: plugin '_Early' (")
    assert "raised in deepseek_register_sprockets: RuntimeError: broken sprockets" in early.reason
    assert "early.model" not in host.names("model")
    assert host.pm.hook.deepseek_sprocket_made(sprocket="s1") == []
