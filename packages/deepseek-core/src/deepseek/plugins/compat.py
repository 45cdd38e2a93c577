"""Compatibility of a plugin distribution with the installed editions, from metadata alone."""

from __future__ import annotations

from importlib import metadata

from deepseek.plugins.settings import normalize_dist


def _installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def incompatibility(dist: str | metadata.Distribution) -> str | None:
    """Why ``dist`` cannot work with the installed deepseek-* distributions, or ``None``.

    Reads the distribution's declared requirements (``Requires-Dist``, nothing is imported) and
    checks every requirement on a ``deepseek-*`` distribution against what is installed. The
    message names the exact ``pip install`` command that fixes it.
    """
    from packaging.requirements import InvalidRequirement, Requirement

    if isinstance(dist, str):
        try:
            dist = metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            return None
    name = normalize_dist(dist.metadata["Name"] or "?")
    own = dist.version
    for line in dist.requires or []:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        target = normalize_dist(req.name)
        if not target.startswith("deepseek-") or target == name:
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        wanted = f"{target}{req.specifier}"
        installed = _installed_version(target)
        if installed is None:
            return (
                f"{name} {own} requires {wanted}, which is not installed; "
                f"fix: pip install '{wanted}'"
            )
        if req.specifier and not req.specifier.contains(installed, prereleases=True):
            return (
                f"{name} {own} requires {wanted} but {target} {installed} is installed; "
                f"fix: pip install '{wanted}' (or install a release of {name} that supports "
                f"{target} {installed})"
            )
    return None
