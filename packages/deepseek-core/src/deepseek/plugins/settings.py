"""Which plugins the host loads, from the environment and the CLI."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from deepseek.names import split_names

ENV_AUTOLOAD_OFF = "DEEPSEEK_DISABLE_PLUGIN_AUTOLOAD"
ENV_ALLOW = "DEEPSEEK_PLUGINS"
ENV_DENY = "DEEPSEEK_DISABLE_PLUGINS"
ENV_STRICT = "DEEPSEEK_STRICT_PLUGINS"
ENV_TRACE = "DEEPSEEK_TRACE_PLUGINS"
ENV_PREFER = "DEEPSEEK_PLUGIN_PREFER"
ENV_NAMES = (ENV_AUTOLOAD_OFF, ENV_ALLOW, ENV_DENY, ENV_STRICT, ENV_TRACE, ENV_PREFER)
"""Every variable :meth:`PluginSettings.from_env` reads and :meth:`PluginSettings.as_env` sets."""


def normalize_dist(name: str) -> str:
    """Normalise a distribution name the way packaging does (``Deepseek_Pro`` -> ``deepseek-pro``)."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def same_dist(wanted: str, dist: str) -> bool:
    """Whether a user-given name means ``dist``: ``deepseek-pro``, ``deepseek_pro`` or ``pro``."""
    wanted, dist = normalize_dist(wanted), normalize_dist(dist)
    return wanted == dist or f"deepseek-{wanted}" == dist


def _names(value: str | None, where: str) -> frozenset[str] | None:
    if value is None:
        return None
    return frozenset(_names_ordered(value, where))


def _names_ordered(value: str | None, where: str) -> list[str]:
    if value is None:
        return []
    return list(dict.fromkeys(normalize_dist(v) for v in split_names(value, where=where)))


def _value(env: Mapping[str, str], name: str) -> str | None:
    """An environment variable's value; set but blank counts as not set."""
    value = env.get(name)
    return value if value is not None and value.strip() else None


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class PluginSettings:
    """Plugin-loading policy.

    ``allow`` is an allowlist of distribution names (``None``: all); ``deny`` a blocklist;
    ``prefer`` orders distributions for resolving name conflicts (earlier wins). A name may be
    given in full (``deepseek-pro``) or without the ``deepseek-`` prefix (``pro``). Built-in
    components of deepseek-core are always loaded.
    """

    autoload: bool = True
    allow: frozenset[str] | None = None
    deny: frozenset[str] = field(default_factory=frozenset)
    strict: bool = False
    trace: bool = False
    prefer: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PluginSettings:
        """Read the ``DEEPSEEK_*`` variables (see docs/plugins.md)."""
        env = os.environ if environ is None else environ
        return cls(
            autoload=not _flag(env.get(ENV_AUTOLOAD_OFF)),
            allow=_names(_value(env, ENV_ALLOW), ENV_ALLOW),
            deny=_names(_value(env, ENV_DENY), ENV_DENY) or frozenset(),
            strict=_flag(env.get(ENV_STRICT)),
            trace=_flag(env.get(ENV_TRACE)),
            prefer=tuple(_names_ordered(_value(env, ENV_PREFER), ENV_PREFER)),
        )

    def with_(self, **changes: object) -> PluginSettings:
        """A copy with some fields changed (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def as_env(self) -> dict[str, str | None]:
        """The ``DEEPSEEK_*`` variables that give these settings to another process (``None``:
        unset it), so that ``deepseek launch``'s workers load the plugins its own root options
        chose; :meth:`from_env` of the result gives these settings back."""
        def names(values: frozenset[str] | tuple[str, ...] | None, ordered: bool = False) -> str | None:
            return ",".join(values if ordered else sorted(values)) if values else None

        return {ENV_AUTOLOAD_OFF: None if self.autoload else "1", ENV_ALLOW: names(self.allow),
                ENV_DENY: names(self.deny), ENV_STRICT: "1" if self.strict else None,
                ENV_TRACE: "1" if self.trace else None, ENV_PREFER: names(self.prefer, ordered=True)}

    def with_cli_options(
        self,
        *,
        plugins: str | None = None,
        disable_plugins: str | None = None,
        no_plugin_autoload: bool = False,
        strict_plugins: bool = False,
    ) -> PluginSettings:
        """These settings with the ``deepseek`` root options applied: ``--plugins A,B`` replaces
        the allowlist, ``--disable-plugins A,B`` adds to the blocklist, the flags switch on."""
        return self.with_(
            allow=_names(plugins, "--plugins"),
            deny=(self.deny | (_names(disable_plugins, "--disable-plugins") or frozenset()))
            if disable_plugins is not None else None,
            autoload=False if no_plugin_autoload else None,
            strict=True if strict_plugins else None,
        )

    def denied(self, dist: str) -> str:
        """Why the blocklist keeps ``dist`` out, or ``""``. It applies to every way of loading a
        plugin, entry point or :meth:`PluginHost.register_plugin`."""
        if any(same_dist(d, dist) for d in self.deny):
            return f"disabled by {ENV_DENY} / --disable-plugins (remove it there to load it)"
        return ""

    def wants(self, dist: str) -> tuple[bool, str]:
        """Whether to load the installed distribution ``dist``, and if not, why."""
        if denied := self.denied(dist):
            return False, denied
        if self.allow is not None and not any(same_dist(a, dist) for a in self.allow):
            return False, f"not in the allowlist {ENV_ALLOW} / --plugins (add it there to load it)"
        if not self.autoload and self.allow is None:
            return False, (
                f"autoload disabled by {ENV_AUTOLOAD_OFF} / --no-plugin-autoload (name it in "
                f"{ENV_ALLOW} / --plugins to load it)"
            )
        return True, ""

    def unknown_names(self, installed: Iterable[str]) -> list[str]:
        """Names in the allowlist or blocklist that match no installed distribution (typos)."""
        installed = list(installed)
        named = sorted((self.allow or frozenset()) | self.deny)
        return [n for n in named if not any(same_dist(n, d) for d in installed)]
