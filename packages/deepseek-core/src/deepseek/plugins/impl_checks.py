"""Checks of a plugin object's hook implementations before pluggy registers it, each giving the
line that drops the plugin (:meth:`~deepseek.plugins.host.PluginHost.register_plugin` and entry
points alike): a hook's implementation without ``@hookimpl`` (never called), and an
implementation asking for an argument its hook does not pass (pluggy's own refusal named
neither the argument nor the hook's)."""

from __future__ import annotations

import inspect
from typing import Any

import pluggy

from deepseek.names import did_you_mean


def undecorated_hooks(pm: pluggy.PluginManager, plugin: Any) -> list[str]:
    """Callables of ``plugin`` named like a hook that are neither a hook implementation nor a
    hookspec: a missing ``@hookimpl``. Named like a hook: a hook's name (core's, the editions'
    known to :mod:`deepseek.plugins.catalogue`, or one a loaded plugin specifies), or one typo
    from it; any other ``deepseek_*`` function (a helper such as ``deepseek_acme_version``) is the
    plugin's own business and left alone, as pluggy leaves it."""
    import difflib

    from deepseek.plugins.catalogue import KIND_PROVIDERS
    from deepseek.plugins.kinds import registration_hook_of

    hooks = {n for n in dir(pm.hook) if n.startswith("deepseek_")} | {registration_hook_of(k, pm) for k in KIND_PROVIDERS}
    return [
        attr
        for attr in dir(plugin)
        if attr.startswith("deepseek_")
        and (attr in hooks or difflib.get_close_matches(attr, hooks, n=1, cutoff=0.85))
        and callable(inspect.getattr_static(plugin, attr, None))
        and pm.parse_hookimpl_opts(plugin, attr) is None
        and pm.parse_hookspec_opts(plugin, attr) is None
    ]


def unknown_argument(pm: pluggy.PluginManager, plugin: Any, label: str) -> str:
    """A hook implementation of ``plugin`` (named ``label``) asking for an argument its hook does
    not pass (a typo such as ``metric``): the line naming it with a did-you-mean, or ``""``."""
    for attr in dir(plugin):
        caller = getattr(pm.hook, attr, None) if attr.startswith("deepseek_") else None
        spec = caller.spec if isinstance(caller, pluggy.HookCaller) else None
        if spec is None or pm.parse_hookimpl_opts(plugin, attr) is None:
            continue
        try:
            params = inspect.signature(getattr(plugin, attr)).parameters
        except (TypeError, ValueError):
            continue
        for name, param in params.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or name in spec.argnames:
                continue
            if param.default is not param.empty:
                continue  # pluggy passes only the hook's arguments: a default is left alone
            return (f"{label}: {attr} asks for the argument {name!r}, which the hook does not pass"
                    f"{did_you_mean(name, spec.argnames)}; its arguments are {', '.join(spec.argnames)} "
                    f"({_reference(spec)})")
    return ""


def _reference(spec: Any) -> str:
    """Where a hook's arguments are documented: core's page, the enterprise edition's, or the
    module of a plugin's own hookspecs."""
    module = getattr(spec.namespace, "__name__", "")
    if module == "deepseek.hookspecs":
        return "docs/hooks.md"
    if module == "deepseek_enterprise.hookspecs":
        return "docs/hooks-enterprise.md"
    return f"its hookspec in {module}" if module else "its hookspec"
