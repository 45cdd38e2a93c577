"""Compatibility of a plugin distribution with the installed editions, from metadata alone.

Only ``packaging.specifiers`` is imported on the common path (``packaging.requirements`` and
``packaging.markers`` cost more than the rest of ``deepseek plugins list``): requirement lines
are split with a regular expression, and markers other than ``extra == "..."`` are evaluated by
``packaging.markers`` only when they occur.
"""

from __future__ import annotations

import re
from importlib import metadata

from deepseek.plugins.settings import normalize_dist

_REQ_RE = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:\[[^\]]*\])?\s*"
    r"(?P<spec>[^;]*?)\s*(?:;(?P<marker>.*))?$"
)
_EXTRA_ONLY = re.compile(r"""^\s*extra\s*==\s*["'][^"']*["']\s*$""")


def _installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _applies(marker: str | None) -> bool:
    """Whether a requirement with this marker applies to a plain install (no extras)."""
    if not marker or not marker.strip():
        return True
    if _EXTRA_ONLY.match(marker):
        return False
    from packaging.markers import InvalidMarker, Marker

    try:
        return Marker(marker).evaluate({"extra": ""})
    except InvalidMarker:
        return True


def incompatibility(dist: str | metadata.Distribution) -> str | None:
    """Why ``dist`` cannot work with the installed deepseek-* distributions, or ``None``.

    Reads the distribution's declared requirements (``Requires-Dist``, nothing is imported) and
    checks every requirement on a ``deepseek-*`` distribution against what is installed. The
    message names the exact install command that fixes it (:mod:`deepseek.plugins.install`).
    """
    if isinstance(dist, str):
        try:
            dist = metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            return None
    name = normalize_dist(dist.metadata["Name"] or "?")
    own = dist.version
    for line in dist.requires or []:
        match = _REQ_RE.match(line)
        if match is None:
            continue
        target = normalize_dist(match["name"])
        if not target.startswith("deepseek-") or target == name or not _applies(match["marker"]):
            continue
        spec_text = match["spec"].strip().strip("()").strip()
        if spec_text.startswith("@"):  # a direct URL: no version constraint to check
            spec_text = ""
        from packaging.specifiers import InvalidSpecifier, SpecifierSet

        try:
            spec = SpecifierSet(spec_text)
        except InvalidSpecifier:
            continue
        wanted = f"{target}{spec}"
        installed = _installed_version(target)
        from deepseek.plugins.catalogue import EDITIONS
        from deepseek.plugins.install import install_command, installer

        if installed is None:
            fix = install_command(target) if target in EDITIONS else f"{installer()} '{wanted}'"
            return f"{name} {own} requires {wanted}, which is not installed; fix: {fix}"
        if spec and not spec.contains(installed, prereleases=True):
            return (
                f"{name} {own} requires {wanted} but {target} {installed} is installed; "
                f"fix: {installer()} '{wanted}' (or install a release of {name} that supports "
                f"{target} {installed})"
            )
    return None


def required_dists(dist: str) -> list[str]:
    """The distributions ``dist`` requires on a plain install (its ``Requires-Dist`` lines but
    extras' ones), normalised; ``[]`` for one that is not installed. Nothing is imported."""
    try:
        found = metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return []
    return [normalize_dist(match["name"]) for line in found.requires or []
            if (match := _REQ_RE.match(line)) is not None and _applies(match["marker"])]
