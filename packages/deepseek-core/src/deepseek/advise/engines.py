"""Which registered strategy realises each row of the advisor's memory model.

Strategies declare the rows at registration, ``register(..., declares={"memory_rows": [...]})``,
so the advisor reads them without importing any strategy (``deepseek advise`` imports no torch).
For the first-party editions that are not installed, the catalogue's copy of their declarations
stands in (checked against the real ones wherever they are installed), so the advisor can still
recommend, say, ``deepseek-pro``'s ``fsdp`` for the ``zero3`` row.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Engine(NamedTuple):
    """The strategy that realises a memory row, and its edition (``core``, ``pro``, or a
    third-party distribution's name)."""

    strategy: str
    edition: str


def edition_name(dist: str) -> str:
    """``deepseek-pro`` -> ``pro``; other distributions keep their name."""
    from deepseek.plugins import catalogue

    return dist.removeprefix("deepseek-") if dist in catalogue.EDITIONS else dist


def row_engines(host: Any = None) -> dict[str, Engine]:
    """Memory row -> the strategy realising it on ``host`` (default: the process's plugin host).
    The first-party editions' strategies come first, installed (their declarations) or not (the
    catalogue's copy); a third-party strategy realises only the rows no edition's strategy does,
    so declaring ``ddp`` does not take the row, or its install advice, from deepseek-pro."""
    from deepseek.plugins import catalogue
    from deepseek.plugins.host import get_host

    host = host or get_host()
    engines: dict[str, Engine] = {}
    installed = list(host.components("strategy"))
    for comp in installed:
        if comp.dist in catalogue.EDITIONS:
            for row in comp.declared("memory_rows", ()):
                engines.setdefault(row, Engine(comp.name, edition_name(comp.dist)))
    for (kind, name), declared in catalogue.DECLARED.items():
        dist = catalogue.provider_of(kind, name)
        if kind != "strategy" or dist is None or dist in host.records:
            continue
        for row in declared.get("memory_rows", ()):
            engines.setdefault(row, Engine(name, edition_name(dist)))
    for comp in installed:
        for row in comp.declared("memory_rows", ()):
            engines.setdefault(row, Engine(comp.name, edition_name(comp.dist)))
    return engines
