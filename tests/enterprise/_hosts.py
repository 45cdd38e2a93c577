"""Plugin hosts for tests: the pro and enterprise editions (no other installed plugin), plus
test-only components registered in process as a throwaway distribution would register them."""

from __future__ import annotations

from collections.abc import Mapping

from deepseek import hookimpl
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings


def registering(hook: str, components: Mapping[str, object], declares: Mapping[str, object] | None = None) -> object:
    """A plugin whose ``hook`` (``deepseek_register_<kinds>``) registers each ``name: target`` of
    ``components`` (the description is the name; ``declares``, if given, is each one's declaration
    table, e.g. a strategy's ``{"memory_rows": [...]}``). It lives in the module of the first target, as
    a plugin's entry point lives beside its components: the host attributes the code of that
    module to the plugin's distribution (what ``loading_needs`` names)."""

    def register_all(self: object, register) -> None:  # type: ignore[no-untyped-def]  # noqa: ANN001
        for name, target in components.items():
            register(name, target, description=name, **({"declares": dict(declares)} if declares else {}))

    register_all.__name__ = hook
    first = next(iter(components.values()))
    module = first.partition(":")[0] if isinstance(first, str) else first.__module__
    return type("TestPlugin", (), {hook: hookimpl(register_all), "__module__": module})()


def enterprise_host(*plugins: tuple[object, str]) -> PluginHost:
    """A host of deepseek-pro and deepseek-enterprise with each ``(plugin, distribution)`` of
    ``plugins`` registered (version 1.0); a plugin the host refuses fails the test here."""
    host = PluginHost(PluginSettings(allow=frozenset({"deepseek-pro", "deepseek-enterprise"})))
    for plugin, dist in plugins:
        record = host.register_plugin(plugin, dist=dist, version="1.0")
        assert record.status == "ok", record.reason
    return host
