"""Installed plugin distributions: the entry points of group ``deepseek``, by distribution."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

from deepseek.plugins.settings import normalize_dist

ENTRY_POINT_GROUP = "deepseek"


@dataclass(frozen=True)
class InstalledDist:
    """One installed distribution with entry points in :data:`ENTRY_POINT_GROUP`."""

    name: str  # normalised (``deepseek-pro``)
    version: str
    eps: list[metadata.EntryPoint]  # sorted by name, one per distinct value
    distribution: metadata.Distribution | None


def installed_dists() -> list[InstalledDist]:
    """Every distribution with ``deepseek`` entry points, sorted by name (nothing is imported)."""
    grouped: dict[str, InstalledDist] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        name = normalize_dist(dist.name) if dist is not None else ep.module.split(".")[0]
        entry = grouped.setdefault(
            name, InstalledDist(name, dist.version if dist is not None else "?", [], dist)
        )
        if all(e.value != ep.value for e in entry.eps):
            entry.eps.append(ep)
    return [
        InstalledDist(d.name, d.version, sorted(d.eps, key=lambda e: e.name), d.distribution)
        for _, d in sorted(grouped.items())
    ]
