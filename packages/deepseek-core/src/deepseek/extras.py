"""The version of a library that a feature imports only when used, checked against the range the
edition declares for it.

An optional extra (``deepseek-core[hf]``: tokenizers, datasets and transformers; ``[onnx]``, ``[mlflow]``,
``[tensorboard]``, ``[wandb]``), or an edition's own dependency that only one feature imports
(enterprise's optuna, torchao, torch-pruning), has a version range in the edition's
``pyproject.toml``. pip checks it when it installs the extra, and nothing did afterwards: a library
installed before, downgraded since or installed with ``--no-deps`` failed with its own import error
or attribute error, or worse, gave a wrong result.

:func:`check_version` is the rule, in this one place: it reads the range from the edition's
installed metadata (``importlib.metadata.requires``), never from a copy in the code, and refuses
an installed version outside it in one line naming the package, the version installed, the range
wanted and the install command. It is called where the feature imports the library, before the
import. A library that installs under another distribution name as well (:data:`OTHER_NAMES`:
the full ``mlflow`` for the declared ``mlflow-skinny``) is held to the declared range under either
name. Nothing is checked when the edition's metadata is not installed (sources on ``sys.path``
only), or when no distribution of the library is installed (a missing library is said at the
import, naming the extra). Each verdict is reached once per process.

Nothing here imports torch.
"""

from __future__ import annotations

import functools
from importlib import metadata
from typing import NamedTuple

from deepseek.errors import UsageError

CORE_DIST = "deepseek-core"

OTHER_NAMES: dict[str, tuple[str, ...]] = {"mlflow-skinny": ("mlflow",)}
"""Declared distributions (normalized names) -> other distributions that install the same import
package, checked against the declared range too: ``mlflow`` is ``mlflow-skinny`` with the tracking
server and UI, and either provides ``import mlflow``."""


class Declared(NamedTuple):
    """A library's requirement in an edition's metadata: its range, the extra naming it (``""``:
    the edition's own dependency) and what to give pip (the library's own extras kept:
    ``psycopg[binary]>=3.1``)."""

    name: str
    specifier: str
    extra: str
    pip: str


@functools.cache
def declared(edition: str) -> dict[str, Declared]:
    """The requirements of installed distribution ``edition`` that apply here, by normalized
    name (empty when ``edition``'s metadata is not installed)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    try:
        lines = metadata.requires(edition) or []
        extras = metadata.metadata(edition).get_all("Provides-Extra") or []
    except metadata.PackageNotFoundError:
        return {}
    found: dict[str, Declared] = {}
    for line in lines:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            extra = ""
        else:
            named = [e for e in extras if req.marker.evaluate({"extra": e})]
            if not named:
                continue  # another Python's requirement
            extra = named[0]
        wanted = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
        found[canonicalize_name(req.name)] = Declared(req.name, str(req.specifier), extra,
                                                      f"{req.name}{wanted}{req.specifier}")
    return found


def check_version(package: str, *, where: str, edition: str = CORE_DIST,
                  error: type[UsageError] = UsageError) -> None:
    """Refuse an installed ``package`` outside the range ``edition`` declares for it (module
    docstring) with ``error``; ``where`` names what needs it (``data.tokenizer``, ``export
    --format onnx``)."""
    problem = _problem(package, edition)
    if problem is not None:
        raise error(f"{where}: {problem}")


def check_extra(extra: str, *, where: str, edition: str = CORE_DIST, error: type[UsageError] = UsageError) -> None:
    """:func:`check_version` for every library of ``edition``'s optional extra ``extra``."""
    for dep in declared(edition).values():
        if dep.extra == extra:
            check_version(dep.name, where=where, edition=edition, error=error)


def forget() -> None:
    """Drop the declared ranges and verdicts kept for this process (they are read once: the
    installed distributions do not change under a running command), so the next check reads the
    metadata again; for a process that installs or removes a distribution meanwhile (tests)."""
    declared.cache_clear()
    _problem.cache_clear()


@functools.cache
def _problem(package: str, edition: str) -> str | None:
    from packaging.specifiers import SpecifierSet
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version

    dep = declared(edition).get(canonicalize_name(package))
    if dep is None:
        if declared(edition):
            raise LookupError(f"{edition} declares no requirement on {package!r}; name one it declares")
        return None
    for name in (dep.name, *OTHER_NAMES.get(canonicalize_name(dep.name), ())):
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        try:
            fits = Version(installed) in SpecifierSet(dep.specifier, prereleases=True)
        except InvalidVersion:
            fits = False
        if not fits:
            from deepseek.plugins.install import installer

            needs = f"{edition}[{dep.extra}]" if dep.extra else edition
            also = "" if name == dep.name else f" (or {name}{dep.specifier})"
            pip = dep.pip if name == dep.name else f"{name}{dep.specifier}"
            return (f"{name} {installed} is installed, but {needs} needs {dep.name}{dep.specifier}{also}; install a "
                    f"version that fits with: {installer()} '{pip}'")
    return None


def missing_dependency(exc: BaseException) -> str | None:
    """The fix for ``exc`` when it is the import of a library an installed edition requires (not an
    extra's: those are named where their feature imports them) that is not installed, as after
    ``pip install --no-deps``: ``rich is not installed, but deepseek-core needs rich>=13; install
    it with: pip install 'rich>=13'``. ``None`` for any other error, and for a library that is
    installed (the import failed for another reason)."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    from packaging.utils import canonicalize_name

    from deepseek.plugins.catalogue import EDITIONS
    from deepseek.plugins.install import installer

    module = exc.name.partition(".")[0]
    for edition in EDITIONS:
        dep = declared(edition).get(canonicalize_name(module))
        if dep is None or dep.extra:
            continue
        try:
            metadata.version(dep.name)
        except metadata.PackageNotFoundError:
            return (f"{module} is not installed, but {edition} needs {dep.pip} (an install with --no-deps "
                    f"leaves it out); install it with: {installer()} '{dep.pip}'")
        return None
    return None


def check_importable(module: str, *, needed_for: str, edition: str = CORE_DIST) -> None:
    """Refuse, in one line with the install command, a library ``edition`` requires that does not
    import: called before a command writes anything (``train``: the checkpoint writer's libraries,
    before the run folder), so the failure is not met at the end of a run having left a run folder."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError as exc:
        missing = missing_dependency(exc)
        if missing is None:  # installed, yet fails to import
            from packaging.utils import canonicalize_name

            from deepseek.plugins.install import installer

            top = module.partition(".")[0]
            dep = declared(edition).get(canonicalize_name(top))
            pip = dep.pip if dep is not None else top
            missing = (f"{top} does not import ({type(exc).__name__}: {exc}); reinstall it with: "
                       f"{installer()} --force-reinstall '{pip}'")
        raise UsageError(f"{needed_for}: {missing}") from None
