"""The plugin host: loads built-ins and entry-point plugins, isolates failures, collects components.

Loading happens in three passes so that one plugin can implement hooks another one adds:

1. import each plugin (built-ins first, then entry points by distribution name), register it with
   pluggy and let it add hookspecs;
2. reject plugins implementing hooks that nobody specified;
3. run every registration hook plugin by plugin, each in a transaction: a plugin that raises keeps
   nothing it registered.
"""

from __future__ import annotations

import importlib
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from deepseek import hookspecs
from deepseek._version import __version__
from deepseek.errors import ComponentConflictError, ComponentNotFoundError, PluginError
from deepseek.plugins import catalogue
from deepseek.plugins.compat import incompatibility
from deepseek.plugins.settings import PluginSettings, normalize_dist

CORE_DIST = "deepseek-core"
ENTRY_POINT_GROUP = "deepseek"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_LAZY_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class PluginWarning(UserWarning):
    """A plugin was skipped (failed or blocked); the host keeps working without it."""


@dataclass(frozen=True)
class Component:
    """One registered component: a strategy, pass, encoder, model or command."""

    kind: str
    name: str
    target: Any
    dist: str
    version: str
    module: str
    aliases: tuple[str, ...] = ()
    description: str = ""
    alias_of: str | None = None

    @property
    def qualified_name(self) -> str:
        """``dist:name``, the form that picks this component when several share a name."""
        return f"{self.dist}:{self.name}"

    def load(self) -> Any:
        """The component's object, importing a lazy ``module:attribute`` target if needed."""
        if not isinstance(self.target, str):
            return self.target
        module_name, _, attr = self.target.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except Exception as exc:  # noqa: BLE001 - reported with the culprit named
            raise PluginError(
                f"{self.kind} {self.name!r} from {self.dist} {self.version} could not be loaded "
                f"from {self.target!r}: {type(exc).__name__}: {exc}; reinstall or upgrade {self.dist}"
            ) from exc
        return obj


@dataclass
class PluginRecord:
    """What the host knows about one plugin distribution."""

    dist: str
    version: str
    edition: str
    modules: list[str] = field(default_factory=list)
    status: str = "ok"  # ok | blocked | failed | disabled
    reason: str = ""
    components: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form used by ``deepseek plugins list --json``."""
        return {
            "distribution": self.dist,
            "version": self.version,
            "edition": self.edition,
            "modules": list(self.modules),
            "status": self.status,
            "reason": self.reason,
            "components": {k: sorted(v) for k, v in sorted(self.components.items())},
        }


@dataclass
class _Loaded:
    record: PluginRecord
    plugin: Any
    name: str


class PluginHost:
    """Discovers plugins and answers component lookups. Use :func:`get_host` for the shared one."""

    def __init__(self, settings: PluginSettings | None = None) -> None:
        self.settings = settings or PluginSettings.from_env()
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}
        self.problems: list[str] = []
        self._components: dict[str, dict[str, list[Component]]] = {}
        self._loaded: list[_Loaded] = []
        if self.settings.trace:
            self.pm.trace.root.setwriter(lambda msg: sys.stderr.write(f"[deepseek-trace] {msg}"))
            self.pm.enable_tracing()
        self._load()

    # ------------------------------------------------------------------ loading

    def _load(self) -> None:
        core = PluginRecord(CORE_DIST, __version__, catalogue.edition_of(CORE_DIST))
        self.records[CORE_DIST] = core
        from deepseek.builtins import BUILTIN_PLUGINS

        core.modules = list(BUILTIN_PLUGINS)
        for module_name in BUILTIN_PLUGINS:
            self._admit(core, importlib.import_module(module_name), f"core:{module_name}")
        for dist, version, eps in _entry_points_by_dist():
            if dist == CORE_DIST:
                continue
            self._load_distribution(dist, version, eps)
        self._reject_unknown_hooks()
        for loaded in list(self._loaded):
            self._run_registration(loaded)

    def _load_distribution(self, dist: str, version: str, eps: list[metadata.EntryPoint]) -> None:
        record = PluginRecord(dist, version, catalogue.edition_of(dist))
        record.modules = [ep.value for ep in eps]
        self.records[dist] = record
        wanted, why = self.settings.wants(dist)
        if not wanted:
            record.status, record.reason = "disabled", why
            return
        problem = incompatibility(dist)
        if problem:
            self._fail(record, "blocked", problem)
            return
        for ep in eps:
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 - isolation is the point
                self._fail(
                    record,
                    "failed",
                    f"{dist} {version}: plugin {ep.name!r} ({ep.value}) failed to import: "
                    f"{type(exc).__name__}: {exc}; upgrade or reinstall it, or skip it with "
                    f"DEEPSEEK_DISABLE_PLUGINS={dist}",
                )
                return
            if not self._admit(record, plugin, f"{dist}:{ep.name}"):
                return

    def _admit(self, record: PluginRecord, plugin: Any, name: str) -> bool:
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # noqa: BLE001 - pluggy's validation names the hook
            self._fail(record, "failed", f"{record.dist} {record.version}: {exc}")
            return False
        loaded = _Loaded(record, plugin, name)
        self._loaded.append(loaded)
        try:
            for impl in self._impls_of(loaded, "deepseek_add_hookspecs"):
                impl.function(pluginmanager=self.pm)
        except Exception as exc:  # noqa: BLE001
            self._drop(loaded, f"raised in deepseek_add_hookspecs: {type(exc).__name__}: {exc}")
            return False
        return True

    def _reject_unknown_hooks(self) -> None:
        for hook_name in dir(self.pm.hook):
            hook = getattr(self.pm.hook, hook_name)
            if not isinstance(hook, pluggy.HookCaller) or hook.has_spec():
                continue
            for impl in hook.get_hookimpls():
                loaded = next((ld for ld in self._loaded if ld.plugin is impl.plugin), None)
                if loaded is not None and loaded.record.status == "ok":
                    known = ", ".join(sorted(n for n in dir(self.pm.hook) if n.startswith("deepseek_")))
                    self._drop(
                        loaded,
                        f"implements unknown hook {hook_name!r}; check the spelling against "
                        f"docs/hooks.md (known hooks: {known})",
                    )

    def _run_registration(self, loaded: _Loaded) -> None:
        for hook_name, kind in self.registration_hooks().items():
            for impl in self._impls_of(loaded, hook_name):
                staged: list[Component] = []
                register = self._make_register(loaded.record, kind, hook_name, impl, staged)
                try:
                    impl.function(register=register)
                except Exception as exc:  # noqa: BLE001
                    self._drop(loaded, f"raised in {hook_name}: {type(exc).__name__}: {exc}")
                    return
                for comp in staged:
                    self._components.setdefault(kind, {}).setdefault(comp.name, []).append(comp)
                    loaded.record.components.setdefault(kind, []).append(comp.name)

    def registration_hooks(self) -> dict[str, str]:
        """Registration hook name -> component kind, including hooks added by plugins."""
        hooks = dict(hookspecs.REGISTRATION_HOOKS)
        for hook_name in dir(self.pm.hook):
            if hook_name.startswith("deepseek_register_") and hook_name not in hooks:
                hook = getattr(self.pm.hook, hook_name)
                if isinstance(hook, pluggy.HookCaller) and hook.has_spec():
                    spec_fn = hook.spec.function if hook.spec else None
                    kind = getattr(spec_fn, "deepseek_kind", None) or _kind_from_hook(hook_name)
                    hooks[hook_name] = kind
        return hooks

    def _make_register(
        self, record: PluginRecord, kind: str, hook_name: str, impl: Any, staged: list[Component]
    ) -> Callable[..., None]:
        module = getattr(impl.function, "__module__", "?")

        def register(
            name: str, target: Any, *, aliases: Sequence[str] = (), description: str = ""
        ) -> None:
            where = f"{record.dist} {record.version} ({hook_name})"
            for n in (name, *aliases):
                if not isinstance(n, str) or not _NAME_RE.match(n):
                    raise PluginError(
                        f"{where}: invalid {kind} name {n!r}; use lower-case letters, digits, "
                        "'.', '_' or '-', starting with a letter or digit"
                    )
                if any(c.name == n for c in staged) or any(
                    c.dist == record.dist for c in self._components.get(kind, {}).get(n, [])
                ):
                    raise PluginError(f"{where}: {kind} {n!r} registered twice; register it once")
            if isinstance(target, str):
                if not _LAZY_RE.match(target):
                    raise PluginError(
                        f"{where}: {kind} {name!r} has target {target!r}; a lazy target must look "
                        "like 'package.module:attribute'"
                    )
            elif not callable(target):
                raise PluginError(
                    f"{where}: {kind} {name!r} target must be callable or a 'module:attribute' "
                    f"string, got {type(target).__name__}"
                )
            common = dict(target=target, dist=record.dist, version=record.version, module=module)
            staged.append(
                Component(kind, name, aliases=tuple(aliases), description=description, **common)
            )
            for alias in aliases:
                staged.append(
                    Component(kind, alias, description=description, alias_of=name, **common)
                )

        return register

    def _impls_of(self, loaded: _Loaded, hook_name: str) -> list[Any]:
        hook = getattr(self.pm.hook, hook_name, None)
        if hook is None:
            return []
        return [impl for impl in hook.get_hookimpls() if impl.plugin is loaded.plugin]

    def _drop(self, loaded: _Loaded, why: str) -> None:
        record = loaded.record
        if record.dist == CORE_DIST:
            raise PluginError(f"built-in plugin failed: {why}")
        for plugin_loaded in [ld for ld in self._loaded if ld.record is record]:
            if self.pm.is_registered(plugin_loaded.plugin):
                self.pm.unregister(plugin_loaded.plugin)
            self._loaded.remove(plugin_loaded)
        for kind_map in self._components.values():
            for name in list(kind_map):
                kind_map[name] = [c for c in kind_map[name] if c.dist != record.dist]
                if not kind_map[name]:
                    del kind_map[name]
        record.components.clear()
        message = why if why.startswith(record.dist) else f"{record.dist} {record.version}: {why}"
        if "DEEPSEEK_DISABLE_PLUGINS" not in message:
            message += f"; fix the plugin or skip it with DEEPSEEK_DISABLE_PLUGINS={record.dist}"
        self._fail(record, "failed", message)

    def _fail(self, record: PluginRecord, status: str, message: str) -> None:
        record.status, record.reason = status, message
        self.problems.append(message)
        if self.settings.strict:
            raise PluginError(f"{message} (strict plugin mode is on)")
        warnings.warn(message, PluginWarning, stacklevel=3)

    # ------------------------------------------------------------------ lookup

    @property
    def hook(self) -> Any:
        """pluggy's hook relay: ``host.hook.deepseek_train_start(trainer=...)``."""
        return self.pm.hook

    def names(self, kind: str) -> list[str]:
        """Sorted component names of one kind, aliases included."""
        return sorted(self._components.get(kind, {}))

    def kinds(self) -> list[str]:
        """Every component kind that has at least one component."""
        return sorted(k for k, v in self._components.items() if v)

    def candidates(self, kind: str, name: str) -> list[Component]:
        """Every component registered under ``name`` (without qualification)."""
        return list(self._components.get(kind, {}).get(name, []))

    def resolve(self, kind: str, name: str) -> Component:
        """The one component ``name`` refers to; clear errors for unknown or ambiguous names."""
        if ":" in name:
            dist_part, _, bare = name.partition(":")
            dist = normalize_dist(dist_part)
            found = [c for c in self.candidates(kind, bare) if c.dist == dist]
            if found:
                return found[0]
            others = ", ".join(c.qualified_name for c in self.candidates(kind, bare)) or "none"
            raise ComponentNotFoundError(
                f"{kind} {name!r}: {dist} registers no {kind} named {bare!r} "
                f"(candidates: {others}); see 'deepseek plugins which {kind} {bare}'"
            )
        found = self.candidates(kind, name)
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            for preferred in self.settings.prefer:
                for comp in found:
                    if comp.dist == preferred:
                        return comp
            a, b = found[0], found[1]
            raise ComponentConflictError(
                f"{kind} {name!r} is registered by both {a.dist} {a.version} ({a.module}) and "
                f"{b.dist} {b.version} ({b.module}); choose one as '{a.qualified_name}' or set "
                f"precedence with [plugins] prefer = [\"{a.dist}\"] or DEEPSEEK_PLUGIN_PREFER={a.dist}"
            )
        raise ComponentNotFoundError(self._not_found_message(kind, name))

    def _not_found_message(self, kind: str, name: str) -> str:
        provider = catalogue.provider_of(kind, name)
        if provider is not None:
            record = self.records.get(provider)
            if record is None:
                return (
                    f"{kind} {name!r} is provided by {provider} ({catalogue.edition_of(provider)}), "
                    f"which is not installed; install it with: {catalogue.install_command(provider)}"
                )
            if record.status != "ok":
                return (
                    f"{kind} {name!r} is provided by {provider} {record.version}, which is "
                    f"installed but {record.status}: {record.reason}"
                )
        import difflib

        available = self.names(kind)
        close = difflib.get_close_matches(name, available, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        listing = ", ".join(available) or "none"
        return f"unknown {kind} {name!r}; {hint}available: {listing}"

    def create(self, kind: str, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Resolve ``name`` and call its target with the given arguments."""
        return self.resolve(kind, name).load()(*args, **kwargs)

    def fingerprint(self) -> list[tuple[str, str, str]]:
        """(distribution, version, status) of every plugin, for cross-rank consistency checks."""
        return sorted((r.dist, r.version, r.status) for r in self.records.values())


def _kind_from_hook(hook_name: str) -> str:
    kind = hook_name.removeprefix("deepseek_register_")
    return kind[:-1] if kind.endswith("s") else kind


def _entry_points_by_dist() -> Iterable[tuple[str, str, list[metadata.EntryPoint]]]:
    grouped: dict[str, tuple[str, list[metadata.EntryPoint]]] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        name = normalize_dist(dist.name) if dist is not None else ep.module.split(".")[0]
        version = dist.version if dist is not None else "?"
        entry = grouped.setdefault(name, (version, []))
        if all(e.value != ep.value for e in entry[1]):
            entry[1].append(ep)
    for name in sorted(grouped):
        version, eps = grouped[name]
        yield name, version, sorted(eps, key=lambda e: e.name)


_HOST: PluginHost | None = None
_SETTINGS: PluginSettings | None = None


def configure(settings: PluginSettings | None) -> None:
    """Set the loading policy for the shared host and forget any host already built."""
    global _HOST, _SETTINGS
    _SETTINGS = settings
    _HOST = None


def get_host() -> PluginHost:
    """The shared plugin host, built on first use."""
    global _HOST
    if _HOST is None:
        _HOST = PluginHost(_SETTINGS)
    return _HOST
