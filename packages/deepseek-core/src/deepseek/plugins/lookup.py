"""Component lookups of the plugin host: names, kinds, resolution with precedence, creation."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any, TypeVar

import pluggy

from deepseek.errors import ComponentConflictError, ComponentNotFoundError, UsageError
from deepseek.names import closest
from deepseek.plugins import catalogue
from deepseek.plugins.kinds import kind_aliases
from deepseek.plugins.records import Component, PluginRecord, Resolution
from deepseek.plugins.settings import ENV_PREFER, PluginSettings, normalize_dist, same_dist

_Host = TypeVar("_Host", bound="LookupMixin")


def normalized(dists: Iterable[str]) -> tuple[str, ...]:
    """Distribution names normalised and de-duplicated, order kept."""
    out: list[str] = []
    for d in dists:
        if d.strip() and normalize_dist(d) not in out:
            out.append(normalize_dist(d))
    return tuple(out)


class LookupMixin:
    """Everything :class:`~deepseek.plugins.host.PluginHost` answers once plugins are loaded."""

    settings: PluginSettings
    pm: pluggy.PluginManager
    records: dict[str, PluginRecord]
    _config_prefer: tuple[str, ...]
    _components: dict[str, dict[str, list[Component]]]

    def registration_hooks(self) -> dict[str, str]:  # provided by the host
        raise NotImplementedError

    @property
    def hook(self) -> Any:
        """pluggy's hook relay: ``host.hook.deepseek_train_start(trainer=...)``."""
        return self.pm.hook

    def kind_of(self, kind: str) -> str:
        """``kind`` as the host registers it: itself, or the kind whose registration hook's name
        reads two ways, ``kind`` being one of the readings (``cookie`` or ``cooky`` for
        ``deepseek_register_cookies``, kind ``cookies``), where no other hook claims it
        (:func:`~deepseek.plugins.kinds.kind_aliases`)."""
        if not isinstance(kind, str) or kind in self._components or kind in self.known_kinds():
            return kind
        return kind_aliases(self.pm).get(kind, kind)

    def names(self, kind: str) -> list[str]:
        """Sorted component names of one kind (either reading, :meth:`kind_of`), aliases included."""
        return sorted(self._components.get(self.kind_of(kind), {}))

    def kinds(self) -> list[str]:
        """Every component kind that has at least one component."""
        return sorted(k for k, v in self._components.items() if v)

    def known_kinds(self) -> list[str]:
        """Every component kind some registration hook accepts (with or without components)."""
        return sorted(set(self.registration_hooks().values()))

    def components(self, kind: str) -> list[Component]:
        """Every registered component of one kind, aliases excluded, sorted by name and dist."""
        comps = [c for cs in self._components.get(self.kind_of(kind), {}).values() for c in cs]
        return sorted((c for c in comps if c.alias_of is None), key=lambda c: (c.name, c.dist))

    def candidates(self, kind: str, name: str) -> list[Component]:
        """Every component registered under ``name`` (without qualification)."""
        return list(self._components.get(self.kind_of(kind), {}).get(name, []))

    def conflicts(self) -> list[Resolution]:
        """Every bare name (alias included) that more than one distribution registers, with how it
        resolves now: a winner where precedence picks one, else ``None`` and the error a lookup of
        that name raises."""
        return [self.explain(kind, name)
                for kind, by_name in sorted(self._components.items())
                for name, comps in sorted(by_name.items()) if len({c.dist for c in comps}) > 1]

    @property
    def config_prefer(self) -> tuple[str, ...]:
        """The config precedence this host applies (see :meth:`with_preference`); ``()`` on a
        host that is not such a view."""
        return self._config_prefer

    def with_preference(self: _Host, dists: Iterable[str]) -> _Host:
        """A view of this host that also resolves name conflicts by ``dists`` (a config's
        ``[plugins] prefer``; earlier wins), after ``DEEPSEEK_PLUGIN_PREFER``.

        The view shares everything else with this host (settings, loaded plugins, components,
        records, hooks): a plugin registered through either is seen by both. This host's own
        precedence does not change, so one run's config cannot change another's lookups.
        """
        view = copy.copy(self)
        view._config_prefer = normalized(dists)
        return view

    def preference(self) -> tuple[str, ...]:
        """Distributions in precedence order: ``DEEPSEEK_PLUGIN_PREFER`` then the config's."""
        out: list[str] = []
        for d in (*self.settings.prefer, *self._config_prefer):
            if d not in out:
                out.append(d)
        return tuple(out)

    def check_kind(self, kind: str) -> None:
        """Raise a one-line :class:`UsageError` if no registration hook accepts ``kind``."""
        known = self.known_kinds()
        if self.kind_of(kind) in known:
            return
        if not isinstance(kind, str):
            raise UsageError(f"component kind: expected a name such as 'model' (a str), got {kind!r:.40}; kinds: "
                             f"{', '.join(known)}")
        reason = catalogue.kind_unavailable_reason(kind, self.records)
        if reason is not None:
            raise ComponentNotFoundError(reason)
        close = closest(kind.rstrip("s"), known)
        hint = f"did you mean {close!r}? " if close else ""
        raise UsageError(f"unknown component kind {kind!r}; {hint}kinds: {', '.join(known)}")

    def explain(self, kind: str, name: str) -> Resolution:
        """How ``name`` resolves: the winning component (or ``None``), the candidates and why."""
        self.check_kind(kind)  # either reading (kind_of): the lookups below take it, and the lines name it as asked
        if not isinstance(name, str) or not name:
            raise UsageError(f"{kind} name: expected the name of a registered {kind} (a str), got {name!r:.60}; "
                             "'deepseek plugins list' names them")
        if ":" in name:
            dist_part, _, bare = name.partition(":")
            cands = tuple(self.candidates(kind, bare))
            found = [c for c in cands if same_dist(dist_part, c.dist)]
            if found:
                return Resolution(kind, name, cands, found[0], f"qualified as {name!r}")
            others = ", ".join(c.qualified_name for c in cands) or "none"
            return Resolution(
                kind, name, cands, None,
                f"{kind} {name!r}: no distribution {dist_part!r} registers {'an' if kind[0] in 'aeiou' else 'a'} {kind} named "
                f"{bare!r} (candidates: {others}); see 'deepseek plugins which {kind} {bare}'",
            )
        cands = tuple(self.candidates(kind, name))
        if len(cands) == 1:
            return Resolution(kind, name, cands, cands[0], "the only candidate")
        if not cands:
            return Resolution(kind, name, cands, None, self._not_found_message(kind, name))
        for preferred in self.preference():
            for comp in cands:
                if same_dist(preferred, comp.dist):
                    source = ENV_PREFER if preferred in self.settings.prefer else "[plugins] prefer"
                    return Resolution(kind, name, cands, comp, f"preferred by {source}")
        who = " and ".join(f"{c.dist} {c.version} ({c.module})" for c in cands)
        first = cands[0]
        if kind == "command":  # `deepseek dist:name` is no command, and a config's prefer comes too late
            return Resolution(
                kind, name, cands, None,
                f"command {name!r} is registered by both {who}; choose one with {ENV_PREFER}={first.dist}, "
                f"or disable the other with --disable-plugins",
            )
        return Resolution(
            kind, name, cands, None,
            f"{kind} {name!r} is registered by both {who}; choose one as "
            f"'{first.qualified_name}' or set precedence with [plugins] prefer = "
            f"[\"{first.dist}\"] or {ENV_PREFER}={first.dist}",
        )

    def resolve(self, kind: str, name: str) -> Component:
        """The one component ``name`` refers to; clear errors for unknown or ambiguous names."""
        res = self.explain(kind, name)
        if res.winner is not None:
            return res.winner
        if len(res.candidates) > 1 and ":" not in name:
            raise ComponentConflictError(res.reason, kind, name)
        raise ComponentNotFoundError(res.reason)

    def _not_found_message(self, kind: str, name: str) -> str:
        from deepseek.arguments import lookup_hint

        reason = catalogue.unavailable_reason(kind, name, self.records)
        if reason is not None:
            return reason
        available = self.names(kind)
        close = closest(name, available)
        hint = f"did you mean {close!r}? " if close else ""
        return (
            f"unknown {kind} {name!r}; {hint}available: {', '.join(available) or 'none'} "
            f"({lookup_hint()}){catalogue.unloaded_namesake(name, self.records)}"
        )

    def create(self, kind: str, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Resolve ``name`` and call its target with the given arguments; what the plugin's code
        raises there is one line naming it (:func:`deepseek.plugins.calls.created`)."""
        from deepseek.plugins.calls import created

        return created(self.resolve(kind, name), *args, **kwargs)

    def fingerprint(self) -> list[tuple[str, str, str]]:
        """(distribution, version, status) of every plugin, for cross-rank consistency checks."""
        return sorted((r.dist, r.version, r.status) for r in self.records.values())
