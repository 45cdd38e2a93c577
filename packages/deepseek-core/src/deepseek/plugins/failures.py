"""How the plugin host isolates a failing plugin: what it registered is dropped (unregistered
from pluggy, the hookspecs it added taken out, its components and declared run files removed), its record says why, and the failure is reported (a
:class:`~deepseek.plugins.records.PluginWarning`, or in strict mode a
:class:`~deepseek.errors.PluginError`); plus the ``DEEPSEEK_TRACE_PLUGINS`` lines of the loading passes.
A loaded plugin (of the same batch, or of an earlier one when the dropped plugin was loaded before
this batch) implementing a hook whose hookspec a dropped plugin added is dropped in turn after the
registration pass (:meth:`FailureMixin._drop_orphans`; an ``optionalhook`` implementation is skipped). A plugin of an earlier batch whose ``optionalhook`` implementation was
skipped for want of a hookspec that a plugin of this batch adds takes it up then
(:meth:`FailureMixin._take_up_optional`): its note goes and its registration runs for that hook.

The passes that find the failures are :class:`~deepseek.plugins.host.PluginHost`'s.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from deepseek.errors import PluginError
from deepseek.plugins.kinds import hook_callers, prune_hooks, registration_hooks, remove_hookspecs
from deepseek.plugins.records import CORE_DIST, Component, PluginRecord, PluginWarning
from deepseek.plugins.settings import ENV_DENY, PluginSettings

if TYPE_CHECKING:
    import pluggy


class FailureMixin:
    """Failure isolation and tracing of :class:`~deepseek.plugins.host.PluginHost`."""

    settings: PluginSettings
    pm: pluggy.PluginManager
    problems: list[str]
    _components: dict[str, dict[str, list[Component]]]
    _loaded: list[Any]
    _hookspecs_of: dict[str, dict[str, bool]]
    _withdrawn: dict[str, tuple[str, str]]
    _run_registration: Callable[..., None]  # the host's: (plugin, {hook: kind}, run_files=)

    def _drop(self, record: PluginRecord, why: str) -> None:
        if record.dist == CORE_DIST:
            raise PluginError(f"built-in plugin failed: {why}")
        for ld in [x for x in self._loaded if x.record is record]:
            if self.pm.is_registered(ld.plugin):
                self.pm.unregister(ld.plugin)
            self._loaded.remove(ld)
        left = remove_hookspecs(self.pm, self._hookspecs_of.pop(record.dist, {}))  # after its implementations left
        self._withdrawn.update({name: (record.dist, kind) for name, kind in left.items()})
        prune_hooks(self.pm, self._withdrawn)  # a withdrawn hook whose last implementer this was
        self._forget_components(record)
        record.hooks.clear()
        record.run_files.clear()
        record.skipped.clear()  # a failed plugin skips nothing: it is out
        message = why if why.startswith(f"{record.dist} ") else f"{record.dist} {record.version}: {why}"
        if ENV_DENY not in message:
            message += f"; fix the plugin or skip it with {ENV_DENY}={record.dist}"
        self._fail(record, "failed", message)

    def _forget_components(self, record: PluginRecord, kind: str | None = None) -> None:
        """Unregister ``record``'s components: all of them, or those of ``kind``."""
        for k, kind_map in self._components.items():
            for name in list(kind_map) if kind in (None, k) else ():
                kind_map[name] = [c for c in kind_map[name] if c.dist != record.dist]
                if not kind_map[name]:
                    del kind_map[name]
        if kind is None:
            record.components.clear()
        else:
            record.components.pop(kind, None)

    def _drop_orphans(self, batch: list[Any]) -> None:
        """After the registration pass: a plugin of ``batch`` (:meth:`_settle`: every loaded one) implementing a hook whose hookspec a
        plugin dropped since added (``_withdrawn``; earlier in the same pass, its registration may
        have run already) implements an unknown hook (docs/plugins.md section 7): it is dropped
        with one line naming the hook and that plugin, and with it what it registered. An
        ``optionalhook`` implementation is skipped as an unknown one is (a note in the record), and
        the plugin keeps everything but its components of that hook's kind. Until none is left: a
        plugin dropped here withdraws the hookspecs it added in turn."""
        again = True
        while again:
            again = False
            for ld in [x for x in batch if x in self._loaded]:
                for name, hook in hook_callers(self.pm).items():
                    impl = next((i for i in hook.get_hookimpls() if i.plugin is ld.plugin), None)
                    if impl is None or hook.spec is not None or name not in self._withdrawn or ld not in self._loaded:
                        continue
                    owner, kind = self._withdrawn[name]
                    why = f"its hookspec's plugin {owner} failed to load"
                    if not impl.optionalhook:
                        self._drop(ld.record, f"{ld.label} implements {name}, whose hookspec {owner} added; {owner} "
                                   "failed to load (its own line says why), so no loaded plugin specifies the hook; "
                                   f"fix {owner}, or mark the implementation @hookimpl(optionalhook=True) to load "
                                   f"without it, or skip this plugin with {ENV_DENY}={ld.record.dist}")
                        again = True
                    elif not any(n.startswith(f"{name}: ") for n in ld.record.skipped):  # one note a hook
                        ld.record.skipped.append(f"{name}: {why}")
                        if kind:  # what its registration of that kind registered before the hookspec left
                            self._forget_components(ld.record, kind)

    def _settle(self, batch: list[Any]) -> None:
        """After the registration pass: the implementers of a hookspec withdrawn in it (:meth:`_drop_orphans`; an
        earlier plugin's too: a plugin of an earlier batch may have been dropped in this one, by a misfit
        (:mod:`deepseek.plugins.add_specs`) or a late registration), then the earlier plugins' optional
        implementations of a hook ``batch`` specified (:meth:`_take_up_optional`), and their implementers in turn."""
        self._drop_orphans(list(self._loaded))
        if self._take_up_optional(batch):  # a plugin dropped there took its hookspecs out in turn
            self._drop_orphans(list(self._loaded))

    def _take_up_optional(self, batch: list[Any]) -> bool:
        """A plugin loaded before ``batch`` whose ``optionalhook`` implementation was skipped (a note in
        its record: no loaded distribution specified the hook, or its hookspec's plugin failed) for a
        hook that is specified now (a plugin of ``batch`` added it) implements a known hook: the note
        goes, and where the hook is a registration hook its registration runs for it now, as it would
        have had the plugins loaded the other way round: one transaction, whose failure drops the
        plugin, keeping nothing it registered (docs/plugins.md section 7). True when one was dropped."""
        kinds, dropped = registration_hooks(self.pm), False
        for ld in [x for x in self._loaded if x not in batch]:
            for name, hook in hook_callers(self.pm).items():
                stale = [n for n in ld.record.skipped if n.startswith(f"{name}: ")]
                if not stale or hook.spec is None or ld not in self._loaded:
                    continue
                ld.record.skipped[:] = [n for n in ld.record.skipped if n not in stale]
                if name in kinds:
                    self._run_registration(ld, {name: kinds[name]}, run_files=False)
                    dropped = dropped or ld not in self._loaded
        return dropped

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
