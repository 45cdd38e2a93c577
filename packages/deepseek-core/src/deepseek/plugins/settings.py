"""Which plugins the host loads, from the environment and the CLI."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace


def _names(value: str | None) -> frozenset[str] | None:
    if value is None:
        return None
    return frozenset(normalize_dist(v) for v in value.split(",") if v.strip())


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def normalize_dist(name: str) -> str:
    """Normalise a distribution name the way packaging does (``Deepseek_Pro`` -> ``deepseek-pro``)."""
    import re

    return re.sub(r"[-_.]+", "-", name.strip()).lower()


@dataclass(frozen=True)
class PluginSettings:
    """Plugin-loading policy.

    ``allow`` is an allowlist of distribution names (``None``: all); ``deny`` a blocklist;
    ``prefer`` orders distributions for resolving name conflicts (earlier wins).
    """

    autoload: bool = True
    allow: frozenset[str] | None = None
    deny: frozenset[str] = field(default_factory=frozenset)
    strict: bool = False
    trace: bool = False
    prefer: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PluginSettings:
        """Read ``DEEPSEEK_*`` variables (see docs/plugins.md)."""
        env = os.environ if environ is None else environ
        return cls(
            autoload=not _flag(env.get("DEEPSEEK_DISABLE_PLUGIN_AUTOLOAD")),
            allow=_names(env.get("DEEPSEEK_PLUGINS")),
            deny=_names(env.get("DEEPSEEK_DISABLE_PLUGINS")) or frozenset(),
            strict=_flag(env.get("DEEPSEEK_STRICT_PLUGINS")),
            trace=_flag(env.get("DEEPSEEK_TRACE_PLUGINS")),
            prefer=tuple(_names_ordered(env.get("DEEPSEEK_PLUGIN_PREFER"))),
        )

    def with_(self, **changes: object) -> PluginSettings:
        """A copy with some fields changed (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def wants(self, dist: str) -> tuple[bool, str]:
        """Whether to load ``dist``, and if not, why."""
        dist = normalize_dist(dist)
        if dist in self.deny:
            return False, "disabled by DEEPSEEK_DISABLE_PLUGINS / --disable-plugins"
        if self.allow is not None and dist not in self.allow:
            return False, "not in the allowlist DEEPSEEK_PLUGINS / --plugins"
        if not self.autoload and self.allow is None:
            return False, "autoload disabled by DEEPSEEK_DISABLE_PLUGIN_AUTOLOAD / --no-plugin-autoload"
        return True, ""


def _names_ordered(value: str | None) -> list[str]:
    if not value:
        return []
    return [normalize_dist(v) for v in value.split(",") if v.strip()]
