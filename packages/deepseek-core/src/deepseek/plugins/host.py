"""The plugin host: loads built-ins and entry-point plugins, isolates failures, collects components.

Loading happens in passes so that one plugin can implement hooks another one adds, and so that
every failure is blamed on the plugin that caused it:

1. import each plugin (built-ins first, then entry points by distribution name) after checking
   the loading policy and the distribution's declared requirements (metadata only);
2. let every plugin add its hookspecs (``deepseek_add_hookspecs``), then register all plugins
   with pluggy, which validates their hook signatures against the specs;
3. reject plugins implementing hooks that nobody specified;
4. run every registration hook plugin by plugin, each in a transaction: a plugin that raises or
   registers something invalid keeps nothing it registered.

A failing plugin is reported (distribution, version, error) as a :class:`PluginWarning` and
skipped; in strict mode the first failure raises :class:`~deepseek.errors.PluginError`.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pluggy

from deepseek import hookspecs
from deepseek._version import __version__
from deepseek.errors import PluginError
from deepseek.plugins import catalogue
from deepseek.plugins.compat import incompatibility
from deepseek.plugins.lookup import LookupMixin, normalized
from deepseek.plugins.records import (
    Component,
    PluginRecord,
    PluginWarning,
    Resolution,
    describe_error,
)
from deepseek.plugins.registrar import InvalidRegistration, Registrar
from deepseek.plugins.settings import ENV_DENY, PluginSettings

__all__ = [
    "CORE_DIST",
    "ENTRY_POINT_GROUP",
    "Component",
    "PluginHost",
    "PluginRecord",
    "PluginWarning",
    "Resolution",
    "configure",
    "get_host",
    "set_preference",
]

CORE_DIST = "deepseek-core"
ENTRY_POINT_GROUP = "deepseek"
ADD_HOOKSPECS = "deepseek_add_hookspecs"


@dataclass(eq=False)
class _Loaded:
    record: PluginRecord
    plugin: Any
    name: str  # the name pluggy knows the plugin by


@dataclass(frozen=True)
class _Dist:
    name: str
    version: str
    eps: list[metadata.EntryPoint]
    distribution: metadata.Distribution | None


class PluginHost(LookupMixin):
    """Discovers plugins and answers component lookups. Use :func:`get_host` for the shared one."""

    def __init__(self, settings: PluginSettings | None = None) -> None:
        self.settings = settings or PluginSettings.from_env()
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}
        self.problems: list[str] = []
        self.config_prefer: tuple[str, ...] = _CONFIG_PREFER
        self._components: dict[str, dict[str, list[Component]]] = {}
        self._loaded: list[_Loaded] = []
        if self.settings.trace:
            self.pm.trace.root.setwriter(self._trace_write)
            self.pm.enable_tracing()
        self._load()

    # ------------------------------------------------------------------ loading

    def _load(self) -> None:
        from deepseek.builtins import BUILTIN_PLUGINS

        core = PluginRecord(CORE_DIST, __version__, catalogue.edition_of(CORE_DIST))
        core.modules = list(BUILTIN_PLUGINS)
        self.records[CORE_DIST] = core
        staged = [_Loaded(core, importlib.import_module(m), f"core:{m}") for m in BUILTIN_PLUGINS]
        dists = [d for d in _entry_points_by_dist() if d.name != CORE_DIST]
        for name in self.settings.unknown_names([CORE_DIST, *(d.name for d in dists)]):
            self._problem(
                f"plugin distribution {name!r} named in DEEPSEEK_PLUGINS / DEEPSEEK_DISABLE_PLUGINS "
                f"(or --plugins / --disable-plugins) is not installed; installed: "
                f"{', '.join(sorted(d.name for d in dists)) or 'none'}"
            )
        for dist in dists:
            staged.extend(self._import_distribution(dist))
        staged = [ld for ld in staged if self._add_hookspecs(ld)]
        for ld in staged:
            if ld.record.status == "ok":
                self._register(ld)
        self._reject_unknown_hooks()
        hooks = self.registration_hooks()
        for ld in list(self._loaded):
            if ld in self._loaded:
                self._run_registration(ld, hooks)

    def _import_distribution(self, dist: _Dist) -> list[_Loaded]:
        record = PluginRecord(dist.name, dist.version, catalogue.edition_of(dist.name))
        record.modules = [ep.value for ep in dist.eps]
        self.records[dist.name] = record
        wanted, why = self.settings.wants(dist.name)
        if not wanted:
            record.status, record.reason = "disabled", why
            self._trace(f"skip {dist.name} {dist.version}: {why}")
            return []
        problem = incompatibility(dist.distribution or dist.name)
        if problem:
            self._fail(record, "blocked", problem)
            return []
        out = []
        for ep in dist.eps:
            self._trace(f"import {dist.name} {dist.version}: {ep.name} = {ep.value}")
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 - isolation is the point
                self._fail(
                    record,
                    "failed",
                    f"{dist.name} {dist.version}: plugin {ep.name!r} ({ep.value}) failed to "
                    f"import: {describe_error(exc)}; upgrade or reinstall {dist.name}, or skip it "
                    f"with {ENV_DENY}={dist.name}",
                )
                return []
            if plugin is None:
                self._drop(record, f"entry point {ep.name!r} ({ep.value}) is None")
                return []
            out.append(_Loaded(record, plugin, f"{dist.name}:{ep.name}"))
        return out

    def _add_hookspecs(self, ld: _Loaded) -> bool:
        if ld.record.status != "ok":
            return False
        for attr in dir(ld.plugin):
            opts = self.pm.parse_hookimpl_opts(ld.plugin, attr)
            if opts is None or (opts.get("specname") or attr) != ADD_HOOKSPECS:
                continue
            self._trace(f"call {ADD_HOOKSPECS} of {ld.name}")
            try:
                _call(getattr(ld.plugin, attr), pluginmanager=self.pm)
            except Exception as exc:  # noqa: BLE001
                self._drop(ld.record, f"raised in {ADD_HOOKSPECS}: {describe_error(exc)}")
                return False
        return True

    def _register(self, ld: _Loaded) -> None:
        undecorated = [
            attr
            for attr in dir(ld.plugin)
            if attr.startswith("deepseek_")
            and callable(inspect.getattr_static(ld.plugin, attr, None))
            and self.pm.parse_hookimpl_opts(ld.plugin, attr) is None
            and self.pm.parse_hookspec_opts(ld.plugin, attr) is None
        ]
        if undecorated:
            self._drop(
                ld.record,
                f"{ld.name} defines {', '.join(undecorated)} without @hookimpl, so it would "
                "never be called; decorate it with 'from deepseek import hookimpl'",
            )
            return
        try:
            self.pm.register(ld.plugin, name=ld.name)
        except Exception as exc:  # noqa: BLE001 - pluggy's validation names the hook
            self._drop(ld.record, f"{ld.name} rejected by the plugin manager: {describe_error(exc)}")
            return
        self._loaded.append(ld)

    def _reject_unknown_hooks(self) -> None:
        callers = {
            n: h for n in dir(self.pm.hook) if isinstance(h := getattr(self.pm.hook, n), pluggy.HookCaller)
        }
        known = sorted(n for n, h in callers.items() if h.has_spec())
        for hook_name, hook in callers.items():
            if hook.has_spec():
                continue
            for impl in hook.get_hookimpls():
                ld = next((x for x in self._loaded if x.plugin is impl.plugin), None)
                if ld is None or impl.optionalhook:
                    continue
                close = difflib.get_close_matches(hook_name, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self._drop(
                    ld.record,
                    f"{ld.name} implements unknown hook {hook_name!r}{hint}; neither core nor any "
                    "loaded plugin specifies it (see docs/hooks.md)",
                )

    def _run_registration(self, ld: _Loaded, hooks: dict[str, str]) -> None:
        for hook_name, kind in hooks.items():
            for impl in self._impls_of(ld, hook_name):
                where = f"{ld.record.dist} {ld.record.version} ({ld.name}, {hook_name})"
                if impl.hookwrapper or impl.wrapper:
                    self._drop(ld.record, f"{where}: a registration hook cannot be a wrapper")
                    return
                registrar = Registrar(
                    kind, where, ld.record.dist, ld.record.version,
                    getattr(impl.function, "__module__", "?"), self._components,
                )
                self._trace(f"call {hook_name} of {ld.name}")
                try:
                    _call(impl.function, register=registrar)
                except InvalidRegistration as exc:
                    self._drop(ld.record, str(exc))
                    return
                except Exception as exc:  # noqa: BLE001
                    self._drop(ld.record, f"raised in {hook_name}: {describe_error(exc)}")
                    return
                finally:
                    registrar.close()
                for comp in registrar.staged:
                    self._trace(f"  {kind} {comp.name!r} -> {comp.target_text}")
                    self._components.setdefault(kind, {}).setdefault(comp.name, []).append(comp)
                    if comp.alias_of is None:
                        ld.record.components.setdefault(kind, []).append(comp.name)

    def registration_hooks(self) -> dict[str, str]:
        """Registration hook name -> component kind, including hooks added by plugins.

        A plugin's own hookspec counts when its name starts with ``deepseek_register_`` and its
        only argument is ``register``; the kind is the singular of the rest of the name
        (``deepseek_register_compressors`` -> ``compressor``).
        """
        hooks = dict(hookspecs.REGISTRATION_HOOKS)
        for hook_name in sorted(dir(self.pm.hook)):
            if not hook_name.startswith("deepseek_register_") or hook_name in hooks:
                continue
            hook = getattr(self.pm.hook, hook_name)
            if isinstance(hook, pluggy.HookCaller) and hook.spec is not None:
                if tuple(hook.spec.argnames) == ("register",):
                    kind = getattr(hook.spec.function, "deepseek_kind", None)
                    hooks[hook_name] = kind or _kind_from_hook(hook_name)
        return hooks

    def _impls_of(self, ld: _Loaded, hook_name: str) -> list[Any]:
        hook = getattr(self.pm.hook, hook_name, None)
        if hook is None:
            return []
        return [impl for impl in hook.get_hookimpls() if impl.plugin is ld.plugin]

    def _drop(self, record: PluginRecord, why: str) -> None:
        if record.dist == CORE_DIST:
            raise PluginError(f"built-in plugin failed: {why}")
        for ld in [x for x in self._loaded if x.record is record]:
            if self.pm.is_registered(ld.plugin):
                self.pm.unregister(ld.plugin)
            self._loaded.remove(ld)
        for kind_map in self._components.values():
            for name in list(kind_map):
                kind_map[name] = [c for c in kind_map[name] if c.dist != record.dist]
                if not kind_map[name]:
                    del kind_map[name]
        record.components.clear()
        message = why if why.startswith(record.dist) else f"{record.dist} {record.version}: {why}"
        if ENV_DENY not in message:
            message += f"; fix the plugin or skip it with {ENV_DENY}={record.dist}"
        self._fail(record, "failed", message)

    def _fail(self, record: PluginRecord, status: str, message: str) -> None:
        record.status, record.reason = status, message
        self._problem(message)

    def _problem(self, message: str) -> None:
        self.problems.append(message)
        self._trace(f"problem: {message}")
        if self.settings.strict:
            raise PluginError(f"{message} (strict plugin mode is on)")
        warnings.warn(message, PluginWarning, stacklevel=4)

    def _trace(self, message: str) -> None:
        if self.settings.trace:
            sys.stderr.write(f"[deepseek-trace] {message}\n")

    def _trace_write(self, text: str) -> None:
        for line in text.splitlines():
            sys.stderr.write(f"[deepseek-trace] {line}\n")


def _call(function: Any, **available: Any) -> Any:
    """Call a hook implementation with the subset of arguments it declares (as pluggy does)."""
    try:
        params = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return function(**available)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return function(**available)
    return function(**{k: v for k, v in available.items() if k in params})


def _kind_from_hook(hook_name: str) -> str:
    kind = hook_name.removeprefix("deepseek_register_")
    if kind.endswith("ies"):
        return kind[:-3] + "y"
    if kind.endswith(("sses", "ches", "shes")):
        return kind[:-2]
    return kind[:-1] if kind.endswith("s") else kind


def _entry_points_by_dist() -> list[_Dist]:
    from deepseek.plugins.settings import normalize_dist

    grouped: dict[str, _Dist] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        name = normalize_dist(dist.name) if dist is not None else ep.module.split(".")[0]
        entry = grouped.setdefault(
            name, _Dist(name, dist.version if dist is not None else "?", [], dist)
        )
        if all(e.value != ep.value for e in entry.eps):
            entry.eps.append(ep)
    return [
        _Dist(d.name, d.version, sorted(d.eps, key=lambda e: e.name), d.distribution)
        for _, d in sorted(grouped.items())
    ]


_HOST: PluginHost | None = None
_SETTINGS: PluginSettings | None = None
_CONFIG_PREFER: tuple[str, ...] = ()


def configure(settings: PluginSettings | None) -> None:
    """Set the loading policy for the shared host and forget any host already built."""
    global _HOST, _SETTINGS
    _SETTINGS = settings
    _HOST = None


def set_preference(dists: Sequence[str]) -> None:
    """Feed the config's ``[plugins] prefer`` list: earlier distributions win name conflicts.

    Applies to the shared host now and to any host built later; ``DEEPSEEK_PLUGIN_PREFER``
    still comes first.
    """
    global _CONFIG_PREFER
    _CONFIG_PREFER = normalized(dists)
    if _HOST is not None:
        _HOST.set_preference(_CONFIG_PREFER)


def get_host() -> PluginHost:
    """The shared plugin host, built on first use."""
    global _HOST
    if _HOST is None:
        _HOST = PluginHost(_SETTINGS)
    return _HOST
