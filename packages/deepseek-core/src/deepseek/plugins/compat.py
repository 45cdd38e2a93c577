"""Compatibility of a plugin distribution with the installed editions, from metadata alone."""

from __future__ import annotations

from importlib import metadata

from deepseek.plugins.settings import normalize_dist


def incompatibility(dist: str) -> str | None:
    """Why ``dist`` cannot work with the installed deepseek-* distributions, or ``None``.

    Reads the distribution's declared requirements (no import) and checks every requirement on
    a ``deepseek-*`` distribution against what is installed, naming the exact fix.
    """
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        requires = metadata.distribution(dist).requires or []
    except metadata.PackageNotFoundError:
        return None
    for line in requires:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        target = normalize_dist(req.name)
        if not target.startswith("deepseek-"):
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        try:
            installed = metadata.version(target)
        except metadata.PackageNotFoundError:
            return f"{dist} requires {target}{req.specifier}, which is not installed; fix: pip install '{target}{req.specifier}'"
        if req.specifier and not req.specifier.contains(installed, prereleases=True):
            own = metadata.version(dist)
            return (
                f"{dist} {own} requires {target}{req.specifier} but {target} {installed} is "
                f"installed; fix: pip install '{target}{req.specifier}' (or install a {dist} "
                f"release made for {target} {installed})"
            )
    return None
