"""Install commands that work as printed, here: the installer this interpreter has, and where
a first-party edition comes from for the way deepseek-core itself was installed.

- :func:`installer`: ``pip install`` when the ``pip`` on PATH belongs to this interpreter,
  ``<python> -m pip install`` when only the module is there, ``uv pip install --python
  <python>`` in an environment without pip (a uv-made venv, e.g. a nox session);
- :func:`edition_source`: from deepseek-core's ``direct_url.json`` (PEP 610): a local folder
  install (editable or not) -> the sibling folder ``packages/<dist>`` of that checkout; a wheel
  file -> the edition's wheel beside it; a VCS install -> the same repository and commit; a
  registry install (no ``direct_url.json``) -> ``<dist>==<core's version>``.

Nothing here imports torch.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from deepseek._version import __version__
from deepseek.parsing import loads_json

CORE_DIST = "deepseek-core"


def installer() -> str:
    """The install command of this interpreter's environment (without what to install)."""
    python = shlex.quote(sys.executable)
    if _has_pip():
        found = shutil.which("pip")
        if found and Path(found).parent == Path(sys.executable).parent:
            return "pip install"
        return f"{python} -m pip install"
    if shutil.which("uv"):
        return f"uv pip install --python {python}"
    return f"{python} -m ensurepip && {python} -m pip install"


def _has_pip() -> bool:
    # Installed metadata, not importlib.util.find_spec("pip"): setuptools' distutils shim reacts
    # to a lookup of "pip" by switching itself off for the whole process (torch's inductor then
    # breaks on the standard library's distutils).
    return _installed("pip")


def _core_origin() -> dict[str, Any] | None:
    """deepseek-core's ``direct_url.json`` (``None``: installed from a registry, or unknown)."""
    try:
        text = metadata.distribution(CORE_DIST).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    try:
        origin = loads_json(text) if text else None
    except json.JSONDecodeError:
        return None
    return origin if isinstance(origin, dict) and isinstance(origin.get("url"), str) else None


def _local(url: str) -> Path | None:
    parsed = urlparse(url)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else None


def edition_source(dist: str, origin: dict[str, Any] | None = None) -> str:
    """What to hand the installer for the first-party distribution ``dist`` (``deepseek-pro``),
    given deepseek-core's origin (default: read from its installed metadata)."""
    origin = _core_origin() if origin is None else origin
    pinned = f"{dist}=={__version__}"
    if not origin:
        return pinned
    url = origin["url"]
    where = _local(url)
    if "dir_info" in origin and where is not None:
        sibling = where.parent / dist
        if (sibling / "pyproject.toml").is_file():
            editable = "-e " if origin["dir_info"].get("editable") else ""
            return f"{editable}{shlex.quote(str(sibling))}"
    elif "archive_info" in origin and where is not None:
        wheels = sorted(where.parent.glob(f"{dist.replace('-', '_')}-{__version__}-*.whl"))
        if wheels:
            return shlex.quote(str(wheels[-1]))
    elif "vcs_info" in origin:
        vcs = origin["vcs_info"]
        ref = vcs.get("commit_id") or vcs.get("requested_revision")
        sub = str(Path(origin.get("subdirectory", f"packages/{CORE_DIST}")).parent / dist)
        at = f"@{ref}" if ref else ""
        return shlex.quote(f"{dist} @ {vcs.get('vcs', 'git')}+{url}{at}#subdirectory={sub}")
    return pinned


EDITIONS = ("deepseek-pro", "deepseek-enterprise")
"""The first-party editions above core, in order: each pins the one before it exactly."""


def install_command(dist: str) -> str:
    """The whole command installing the first-party distribution ``dist`` beside this core, with
    the editions below it that are not installed (deepseek-enterprise needs deepseek-pro, which a
    local checkout's or wheel folder's path alone does not bring: the resolver looked for it in the
    package registry)."""
    chain = [dist]
    if dist in EDITIONS:
        chain = [d for d in EDITIONS[: EDITIONS.index(dist) + 1] if d == dist or not _installed(d)]
    return f"{installer()} {' '.join(edition_source(d) for d in chain)}"


def _installed(dist: str) -> bool:
    """Whether distribution ``dist`` is installed in this environment (its metadata)."""
    try:
        metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return False
    return True
