"""The host's pass that lets a plugin add hookspecs (``deepseek_add_hookspecs``), and who is to
blame when a hookspec it adds does not fit an implementation an earlier plugin registered.

An ``optionalhook`` implementation of a hook no loaded distribution specifies waits, registered,
for a hookspec. When a plugin loaded later (a later
:meth:`~deepseek.plugins.host.PluginHost.register_plugin` call) adds that hookspec, pluggy checks
the waiting implementation against it there and then, and its ``PluginValidationError`` (an
argument the hook does not pass, a wrapper that is no generator) is raised inside the *later*
plugin's ``deepseek_add_hookspecs``. The implementation is the earlier plugin's, so the earlier
plugin is the one dropped (one line naming its distribution, plugin and hook, keeping nothing it
registered), as pluggy would have refused it had it loaded after the hookspec; the later plugin's
call is undone (the hookspecs it added so far are taken out) and made again, until it adds its
hookspecs or fails for a reason of its own (docs/plugins.md section 7).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

from deepseek.plugins.impl_checks import unknown_argument
from deepseek.plugins.kinds import KindRefused, hookspecs_added, prune_hooks, remove_hookspecs
from deepseek.plugins.records import PluginRecord, describe_error
from deepseek.plugins.registrar import call_hook

if TYPE_CHECKING:
    from deepseek.plugins.host import _Loaded

ADD_HOOKSPECS = "deepseek_add_hookspecs"


class AddSpecsMixin:
    """Pass 2 of :class:`~deepseek.plugins.host.PluginHost`: each plugin's ``deepseek_add_hookspecs``."""

    pm: pluggy.PluginManager
    _loaded: list[Any]
    _hookspecs_of: dict[str, dict[str, bool]]
    _drop: Callable[[PluginRecord, str], None]
    _trace: Callable[[str], None]

    def _add_hookspecs(self, ld: _Loaded) -> bool:
        """Call ``ld``'s ``deepseek_add_hookspecs``, recording what it adds (taken out again if
        the plugin fails); ``False`` when it failed and was dropped."""
        if ld.record.status != "ok":
            return False
        for attr in dir(ld.plugin):
            opts = self.pm.parse_hookimpl_opts(ld.plugin, attr)
            if opts is None or (opts.get("specname") or attr) != ADD_HOOKSPECS:
                continue
            while True:  # again after each earlier plugin dropped for a misfit: one fewer each time
                self._trace(f"call {ADD_HOOKSPECS} of {ld.name}")
                added: dict[str, bool] = {}
                try:
                    with hookspecs_added(self.pm, added):
                        call_hook(getattr(ld.plugin, attr), pluginmanager=self.pm)
                except Exception as exc:  # noqa: BLE001 - isolation is the point
                    misfit = self._misfit(ld, exc, added)
                    if misfit is not None:
                        left = remove_hookspecs(self.pm, added)  # as before the call, which runs again
                        try:
                            self._drop(*misfit)  # strict mode: raises, with nothing of the call left
                        finally:
                            prune_hooks(self.pm, left)  # a hook only the dropped plugin implemented
                        continue
                    self._hookspecs_of.setdefault(ld.record.dist, {}).update(added)  # _drop: taken out
                    why = exc if isinstance(exc, KindRefused) else f"raised in {ADD_HOOKSPECS}: {describe_error(exc)}"
                    self._drop(ld.record, f"{ld.label} {why}")
                    return False
                self._hookspecs_of.setdefault(ld.record.dist, {}).update(added)
                break
        return True

    def _misfit(self, ld: _Loaded, exc: Exception, added: dict[str, bool]) -> tuple[PluginRecord, str] | None:
        """The record of the earlier plugin whose implementation of a hook ``ld`` just specified
        pluggy refused (``exc``), and the line that drops it; ``None`` when ``exc`` is not that."""
        if not isinstance(exc, pluggy.PluginValidationError):
            return None
        earlier = next((x for x in self._loaded if x.plugin is exc.plugin and x.record is not ld.record), None)
        hooks = [name for name, new in added.items() if not new and earlier is not None
                 and any(i.plugin is earlier.plugin for i in getattr(self.pm.hook, name).get_hookimpls())]
        if earlier is None or not hooks:
            return None
        hook = next((name for name in hooks if repr(name) in str(exc)), hooks[0])  # pluggy's line names it
        detail = unknown_argument(self.pm, earlier.plugin, "").removeprefix(": ")
        if not detail.startswith(f"{hook} "):  # not an argument: a wrapper that is no generator, ...
            detail = describe_error(exc)
        return earlier.record, (
            f"{earlier.record.dist} {earlier.record.version}: {earlier.label} implements {hook}, whose hookspec "
            f"{ld.record.dist} {ld.record.version} added after it loaded, and the implementation does not fit the "
            f"hookspec: {detail}")
