"""The plugin host: loads built-ins and entry-point plugins, isolates failures, collects components.

Loading happens in passes so that one plugin can implement hooks another one adds, and so that
every failure is blamed on the plugin that caused it:

1. import each plugin (built-ins first, then entry points by distribution name) after checking
   the loading policy and the distribution's declared requirements (metadata only);
2. let every plugin add its hookspecs (``deepseek_add_hookspecs``; :mod:`deepseek.plugins.add_specs`
   blames an earlier plugin's implementation that does not fit one on that plugin), then register
   all plugins with pluggy, which validates their hook signatures against the specs;
3. reject plugins implementing hooks that nobody specified;
4. run every registration hook, then ``deepseek_declare_run_files``, plugin by plugin, each in a
   transaction: a plugin that raises or registers something invalid keeps nothing it registered.

:meth:`PluginHost.register_plugin` runs passes 2-4 for one in-process plugin (tests, notebooks).
A failing plugin is reported (distribution, version, error) as a :class:`PluginWarning` and
skipped; in strict mode the first failure raises :class:`~deepseek.errors.PluginError`
(:mod:`deepseek.plugins.failures` drops what it registered and reports it).

A host is a value: code that looks components up takes the host to use (``load_config(host=)``,
``deepseek.cli.main.main(host=)``). :func:`get_host` is the process's host, built once from the
environment, for the library calls that take none (``deepseek.create_strategy``, ...).
"""

from __future__ import annotations

import functools
import importlib
import inspect
from dataclasses import dataclass
from typing import Any

import pluggy

from deepseek import hookspecs
from deepseek._version import __version__
from deepseek.errors import PluginError, UsageError
from deepseek.names import did_you_mean, meant_distribution
from deepseek.plugins import catalogue
from deepseek.plugins.add_specs import ADD_HOOKSPECS, AddSpecsMixin
from deepseek.plugins.compat import incompatibility, required_dists
from deepseek.plugins.discovery import ENTRY_POINT_GROUP, InstalledDist, installed_dists
from deepseek.plugins.failures import FailureMixin
from deepseek.plugins.impl_checks import undecorated_hooks, unknown_argument
from deepseek.plugins.kinds import hook_callers, registration_hooks
from deepseek.plugins.lookup import LookupMixin
from deepseek.plugins.records import (
    CORE_DIST,
    NAME_RE,
    Component,
    PluginRecord,
    PluginWarning,
    Resolution,
    describe_error,
    guard_hooks,
    import_advice,
    target_text,
)
from deepseek.plugins.registrar import (
    DECLARE_RUN_FILES,
    InvalidRegistration,
    Registrar,
    RunFilesDeclarer,
    call_hook,
    reserved_names,
)
from deepseek.plugins.settings import ENV_DENY, PluginSettings, normalize_dist

__all__ = [
    "CORE_DIST",
    "ENTRY_POINT_GROUP",
    "Component",
    "PluginHost",
    "PluginRecord",
    "PluginWarning",
    "Resolution",
    "get_host",
]

@dataclass(eq=False)
class _Loaded:
    record: PluginRecord
    plugin: Any
    name: str  # the name pluggy knows the plugin by: ``dist:entry-point``

    @property
    def label(self) -> str:
        """``plugin 'acme' (deepseek_acme.plugin)``: the entry point and its module, as failures name it."""
        module = self.plugin.__name__ if inspect.ismodule(self.plugin) else target_text(self.plugin)
        return f"plugin {self.name.partition(':')[2]!r} ({module})"


class PluginHost(LookupMixin, FailureMixin, AddSpecsMixin):
    """Loads core's built-ins and the installed plugins ``settings`` allow (default: from the
    environment), then answers component lookups.

    Every host is independent: building one changes no other host and no process state, so a
    test or a notebook builds the host it needs (``PluginHost(PluginSettings(allow=...))``) and
    adds in-process plugins with :meth:`register_plugin`.
    """

    def __init__(self, settings: PluginSettings | None = None) -> None:
        if settings is not None and not isinstance(settings, PluginSettings):
            raise UsageError(f"PluginHost(settings=): expected a deepseek.plugins.settings.PluginSettings or None, got "
                             f"{type(settings).__name__}")
        self.settings = settings or PluginSettings.from_env()
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}
        self.problems: list[str] = []
        self._config_prefer: tuple[str, ...] = ()
        self._components: dict[str, dict[str, list[Component]]] = {}
        self._loaded: list[_Loaded] = []
        self._hookspecs_of: dict[str, dict[str, bool]] = {}  # dist -> the hookspecs it added (kinds.hookspecs_added)
        self._withdrawn: dict[str, tuple[str, str]] = {}  # hook -> (dist, kind): a dropped plugin's hookspec (_drop)
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
        dists = [d for d in installed_dists() if d.name != CORE_DIST]
        for name in self.settings.unknown_names([CORE_DIST, *(d.name for d in dists)]):
            self._problem(
                f"plugin distribution {name!r} named in DEEPSEEK_PLUGINS / DEEPSEEK_DISABLE_PLUGINS "
                f"(or --plugins / --disable-plugins) is not installed{meant_distribution(name, [d.name for d in dists])}; "
                f"installed: {', '.join(sorted(d.name for d in dists)) or 'none'}"
            )
        for dist in dists:
            staged.extend(self._import_distribution(dist))
        self._install(staged)

    def register_plugin(
        self, plugin: object, *, dist: str, version: str = "0.0.0", name: str | None = None
    ) -> PluginRecord:
        """Load ``plugin`` (a module or object with ``@hookimpl`` methods) as the entry point of
        a distribution ``dist`` ``version`` that is not installed: for tests and notebooks.

        It takes the path of an installed plugin after its import: its ``deepseek_add_hookspecs``,
        pluggy's validation, the unknown-hook check, the registration hooks as transactions,
        failures reported with distribution, plugin and hook (a :class:`PluginWarning`, or
        :class:`~deepseek.errors.PluginError` in strict mode), and the blocklist
        (``DEEPSEEK_DISABLE_PLUGINS``). The allowlist and autoload choose among *installed*
        distributions and do not apply. ``deepseek plugins list`` / ``which`` show it under
        ``dist``; ``name`` (default: the module's or class's name) plays the entry point's name.
        Returns the distribution's record (check ``status``); a ``dist`` this host already knows
        is refused.
        """
        for arg, value in (("dist", dist), ("version", version), ("name", name)):
            if not (isinstance(value, str) or (arg == "name" and value is None)):
                raise PluginError(f"register_plugin: {arg} must be a str, got {value!r:.40} ({type(value).__name__})")
        if plugin is None or isinstance(plugin, (str, bytes, int, float, bool)):
            raise PluginError(f"register_plugin: plugin must be a module or an object with @hookimpl methods, got "
                              f"{plugin!r:.40}")
        dist = normalize_dist(dist)
        if not NAME_RE.match(dist):
            raise PluginError(
                f"register_plugin: invalid distribution name {dist!r}; use letters, digits and "
                "'-', e.g. 'deepseek-notebook'"
            )
        known = self.records.get(dist)
        if known is not None:
            raise PluginError(
                f"register_plugin: distribution {dist!r} is already known to this host "
                f"({known.version}, {known.status}); use another distribution name or a fresh "
                "PluginHost"
            )
        record = PluginRecord(dist, version, catalogue.edition_of(dist))
        module = plugin.__name__ if inspect.ismodule(plugin) else target_text(plugin)
        record.modules = [module]
        label = name or module.rpartition(":")[2].rpartition(".")[2] or module
        record.plugins = [label]
        self.records[dist] = record
        if denied := self.settings.denied(dist):
            record.status, record.reason = "disabled", denied
            self._trace(f"skip {dist} {version}: {denied}")
            return record
        self._trace(f"register {dist} {version}: {label} = {module} (in-process)")
        self._install([_Loaded(record, plugin, f"{dist}:{label}")])
        return record

    def derived(self) -> PluginHost:
        """A new host with this one's settings, its installed plugins loaded afresh, and the
        plugins registered in-process (:meth:`register_plugin`) registered again in order: for a
        run that adds plugins of its own (``deepseek.fit``'s script components) without changing
        this host."""
        fresh = PluginHost(self.settings)
        for ld in self._loaded:
            if ld.record.dist not in fresh.records:
                fresh.register_plugin(ld.plugin, dist=ld.record.dist, version=ld.record.version,
                                      name=ld.name.partition(":")[2])
        return fresh

    def _install(self, staged: list[_Loaded]) -> None:
        """Passes 2-4 for imported plugins: hookspecs, pluggy registration, unknown hooks,
        registration hooks."""
        staged = [ld for ld in staged if self._add_hookspecs(ld)]
        batch = [ld for ld in staged if ld.record.status == "ok" and self._register(ld)]
        self._reject_unknown_hooks(batch)
        for ld in batch:  # the hooks again for each: a plugin dropped before took its hookspecs out
            if ld in self._loaded:
                self._run_registration(ld, self.registration_hooks())
        self._settle(batch)  # implementers of a hookspec withdrawn in the pass, or of one it added (earlier ones)

    def _import_distribution(self, dist: InstalledDist) -> list[_Loaded]:
        record = PluginRecord(dist.name, dist.version, catalogue.edition_of(dist.name))
        record.modules = [ep.value for ep in dist.eps]
        record.plugins = [ep.name for ep in dist.eps]
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
                    f"import: {describe_error(exc)}; {import_advice(exc, ep.module, dist.name)}, or skip it "
                    f"with {ENV_DENY}={dist.name}",
                )
                return []
            if plugin is None:
                self._drop(record, f"entry point {ep.name!r} ({ep.value}) is None")
                return []
            out.append(_Loaded(record, plugin, f"{dist.name}:{ep.name}"))
        return out

    def _register(self, ld: _Loaded) -> bool:
        undecorated = undecorated_hooks(self.pm, ld.plugin)
        if undecorated:
            known = [n for n in dir(self.pm.hook) if n.startswith("deepseek_")]
            typos = "".join(f"; {n} is no hook's name{did_you_mean(n, known)}" for n in undecorated if n not in known)
            self._drop(
                ld.record,
                f"{ld.name} defines {', '.join(undecorated)} without @hookimpl, so it would "
                f"never be called; decorate it with 'from deepseek import hookimpl'{typos}",
            )
            return False
        wrong = unknown_argument(self.pm, ld.plugin, ld.label)
        if wrong:
            self._drop(ld.record, wrong)
            return False
        try:
            self.pm.register(ld.plugin, name=ld.name)
        except Exception as exc:  # noqa: BLE001 - pluggy's validation names the hook
            self._drop(ld.record, f"{ld.name} rejected by the plugin manager: {describe_error(exc)}")
            return False
        if ld.record.dist != CORE_DIST:  # core's bugs keep their traceback
            guard_hooks(self.pm, ld.plugin, f"{ld.record.dist} {ld.record.version}: {ld.label}", ld.record.dist,
                        skip=_called_by_the_host)
        for caller in self.pm.get_hookcallers(ld.plugin) or []:
            if not _called_by_the_host(caller.name) and caller.name not in ld.record.hooks:
                ld.record.hooks.append(caller.name)
        ld.record.hooks.sort()
        self._loaded.append(ld)
        return True

    def _reject_unknown_hooks(self, batch: list[_Loaded]) -> None:
        callers = hook_callers(self.pm)
        known = sorted(n for n, h in callers.items() if h.has_spec())
        for hook_name, hook in callers.items():
            if hook.has_spec() or hook_name in self._withdrawn:  # withdrawn: _drop_orphans reports it
                continue
            for impl in hook.get_hookimpls():
                ld = next((x for x in batch if x.plugin is impl.plugin), None)
                if ld is None or ld not in self._loaded:
                    continue
                # A hook of an installed plugin that is not loaded (an edition left out by
                # --plugins / DEEPSEEK_PLUGINS or disabled) is the likely cause; say so first.
                edition = catalogue.hook_unavailable_reason(hook_name, self.records)
                if impl.optionalhook:  # skipped, as the plugin asked; plugins list says so
                    ld.record.skipped.append(f"{hook_name}: " + (edition.removeprefix(f"hook {hook_name!r}; ")
                                                                 if edition else "no loaded distribution specifies it"))
                    continue
                if edition is not None:  # an edition's own hook: name the edition, not a lookalike
                    self._drop(ld.record, f"{ld.name} implements {edition}; or mark the implementation "
                               "@hookimpl(optionalhook=True) to load without that edition")
                    continue
                off = sorted(r.dist for r in self.records.values() if r.status == "disabled")
                needed = [d for d in off if d in required_dists(ld.record.dist)]  # a plugin it builds on
                hint = "".join(f"; it requires {d}, which is installed but not loaded: {self.records[d].reason}"
                               for d in needed) or did_you_mean(hook_name, known)
                if off and not needed:
                    hint += (f" (installed but not loaded: {', '.join(off)}; if one of them specifies the hook, "
                             "load it too, or mark the implementation @hookimpl(optionalhook=True))")
                self._drop(ld.record, f"{ld.name} implements unknown hook {hook_name!r}{hint}; neither core nor any "
                                      "loaded plugin specifies it (see docs/hooks.md)")

    def _run_registration(self, ld: _Loaded, hooks: dict[str, str], run_files: bool = True) -> None:
        """Every registration hook of ``ld`` in ``hooks``, then (``run_files``) its ``deepseek_declare_run_files``; the
        first that fails drops the plugin (:meth:`_drop`: nothing it registered or declared is kept)."""
        for hook_name, kind in (*hooks.items(), *([(DECLARE_RUN_FILES, "")] if run_files else [])):
            for impl in self._impls_of(ld, hook_name):
                where = f"{ld.record.dist} {ld.record.version} ({ld.name}, {hook_name})"
                if impl.hookwrapper or impl.wrapper:
                    self._drop(ld.record, f"{where}: a registration hook cannot be a wrapper")
                    return
                if hook_name == DECLARE_RUN_FILES:
                    declarer = RunFilesDeclarer(where, ld.record.dist, self.records, self._components)
                    if not self._call_registration(ld, hook_name, impl, where, declarer):
                        return
                    ld.record.run_files.extend(n for n in declarer.staged if n not in ld.record.run_files)
                    continue
                registrar = Registrar(kind, where, ld.record.dist, ld.record.version, getattr(impl.function, "__module__", "?"),
                                      self._components, self.records, reserved_names(self.pm, hook_name))
                if not self._call_registration(ld, hook_name, impl, where, registrar):
                    return
                for comp in registrar.staged:
                    self._trace(f"  {kind} {comp.name!r} -> {comp.target_text}")
                    self._components.setdefault(kind, {}).setdefault(comp.name, []).append(comp)
                    if comp.alias_of is None:
                        ld.record.components.setdefault(kind, []).append(comp.name)

    def _call_registration(self, ld: _Loaded, hook_name: str, impl: Any, where: str,
                           callback: Registrar | RunFilesDeclarer) -> bool:
        """Call one registration hook with its ``callback`` (``declare`` or ``register``); ``False``
        when it failed and ``ld`` was dropped."""
        self._trace(f"call {hook_name} of {ld.name}")
        try:
            declares = isinstance(callback, RunFilesDeclarer)
            returned = call_hook(impl.function, **{"declare" if declares else "register": callback})
            if returned is not None:  # components returned, not registered: none would exist
                raise InvalidRegistration(
                    f"{where}: returned a {type(returned).__name__}, which is not read; " + (
                        "declare the files with declare([...]) inside the hook and return None" if declares
                        else "register each component with register(name, \"module:attr\", ...) inside the hook and "
                        "return None"))
        except InvalidRegistration as exc:
            self._drop(ld.record, str(exc))
            return False
        except Exception as exc:  # noqa: BLE001
            self._drop(ld.record, f"{ld.label} raised in {hook_name}: {describe_error(exc)}")
            return False
        finally:
            callback.close()
        return True

    def registration_hooks(self) -> dict[str, str]:
        """Hook name -> component kind, plugins' hooks too (:func:`~deepseek.plugins.kinds.registration_hooks`)."""
        return registration_hooks(self.pm)

    def _impls_of(self, ld: _Loaded, hook_name: str) -> list[Any]:
        hook = getattr(self.pm.hook, hook_name, None)
        return [impl for impl in hook.get_hookimpls() if impl.plugin is ld.plugin] if hook is not None else []


def _called_by_the_host(hook: str) -> bool:
    """Whether the host itself calls ``hook`` while it loads plugins (set-up and registration)."""
    return hook.startswith("deepseek_register_") or hook in (ADD_HOOKSPECS, DECLARE_RUN_FILES)


@functools.cache
def get_host() -> PluginHost:
    """The process's host, for library calls that take no host (``deepseek.create_strategy``,
    ``deepseek.list_passes``, ...): built on first use with the settings of the ``DEEPSEEK_*``
    environment variables, then the same host for the life of the process.

    Nothing replaces or reconfigures it. Code that needs other settings builds its own
    :class:`PluginHost` and passes it on (``load_config(host=...)``, ``main(host=...)``); a config's
    ``[plugins] prefer`` applies through :meth:`PluginHost.with_preference`, never here.
    """
    return PluginHost(PluginSettings.from_env())
