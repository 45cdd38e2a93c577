"""A component's ``Options`` is a frozen dataclass (docs/plugins.md sections 10 and 12): one that
is not is refused at registration where the target is a class, the plugin keeping nothing, one
line naming distribution, plugin, hook and component; and where a lazily registered target is
loaded (:func:`deepseek.config.components.options_class`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from deepseek import hookimpl
from deepseek.config.components import NoOptions, build_options, options_class
from deepseek.errors import PluginError
from deepseek.plugins.host import PluginHost, PluginWarning
from deepseek.plugins.settings import PluginSettings


@dataclass
class LooseOptions:
    width: int = 8


@dataclass(frozen=True)
class FirmOptions:
    width: int = 8


class Loose:
    Options = LooseOptions

    def __init__(self, options: LooseOptions) -> None:
        self.options = options


class Firm:
    Options = FirmOptions

    def __init__(self, options: FirmOptions) -> None:
        self.options = options


class _Plugin:
    def __init__(self, target: type) -> None:
        self.target = target

    @hookimpl
    def deepseek_register_models(self, register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        register("acme.firm", Firm)
        register("acme.loose", self.target)


def test_an_options_dataclass_that_is_not_frozen_is_refused_at_registration() -> None:
    host = PluginHost(PluginSettings(autoload=False))
    with pytest.warns(PluginWarning):
        record = host.register_plugin(_Plugin(Loose), dist="deepseek-acme", name="acme")
    assert record.status == "failed" and record.components == {}
    assert record.reason == (
        f"deepseek-acme 0.0.0 (deepseek-acme:acme, deepseek_register_models): model 'acme.loose' ({__name__}.Loose): its "
        "Options LooseOptions is a dataclass that is not frozen; declare it @dataclass(frozen=True): the validated "
        "options are the config's, read-only; fix the plugin or skip it with DEEPSEEK_DISABLE_PLUGINS=deepseek-acme")
    assert "acme.firm" not in host.names("model")  # transactional: the valid one before it is not kept either
    ok = PluginHost(PluginSettings(autoload=False)).register_plugin(_Plugin(Firm), dist="deepseek-acme", name="acme")
    assert ok.status == "ok", ok.reason


def test_a_lazy_targets_unfrozen_options_are_refused_where_it_is_loaded() -> None:
    with pytest.raises(PluginError, match=re.escape(
            "model 'acme.loose': its Options LooseOptions is a dataclass that is not frozen; declare it "
            "@dataclass(frozen=True): the validated options are the config's, read-only (docs/plugins.md section 10)")):
        build_options(Loose, {"width": 4}, kind="model", name="acme.loose", path="model")
    assert options_class(Firm, kind="model", name="acme.firm") is FirmOptions
    assert options_class(type("Bare", (), {"Options": NoOptions}), kind="tracker", name="t") is NoOptions
