"""How the plugin host isolates a failing plugin: what it registered is dropped (unregistered
from pluggy, the hookspecs it added taken out, its components and declared run files removed), its record says why, and the failure is reported (a
:class:`~deepseek.plugins.records.PluginWarning`, or in strict mode a
:class:`~deepseek.errors.PluginError`); plus the ``DEEPSEEK_TRACE_PLUGINS`` lines of the loading passes.

The passes that find the failures are :class:`~deepseek.plugins.host.PluginHost`'s.
"""

from __future__ import annotations

import sys
import warnings
from typing import TYPE_CHECKING, Any

from deepseek.errors import PluginError
from deepseek.plugins.kinds import remove_hookspecs
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

    def _drop(self, record: PluginRecord, why: str) -> None:
        if record.dist == CORE_DIST:
            raise PluginError(f"built-in plugin failed: {why}")
        for ld in [x for x in self._loaded if x.record is record]:
            if self.pm.is_registered(ld.plugin):
                self.pm.unregister(ld.plugin)
            self._loaded.remove(ld)
        remove_hookspecs(self.pm, self._hookspecs_of.pop(record.dist, {}))  # after its implementations left
        for kind_map in self._components.values():
            for name in list(kind_map):
                kind_map[name] = [c for c in kind_map[name] if c.dist != record.dist]
                if not kind_map[name]:
                    del kind_map[name]
        record.components.clear()
        record.hooks.clear()
        record.run_files.clear()
        message = why if why.startswith(f"{record.dist} ") else f"{record.dist} {record.version}: {why}"
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
