"""Which distribution provided each component a run used, recorded in its checkpoints.

``trainer.json``'s ``components`` lists every registered component the run's config names (the
sections' ``name``s, the tables a component declares ``OPTIONS_OF`` another, such as a
multimodal model's fusion and encoders, and the trackers) with the distribution and version that
registered it. When a checkpoint is read back where one of them is not available (its plugin
uninstalled or disabled), the error names that distribution and how to get it back instead of
blaming the checkpoint (:func:`missing_component`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

from deepseek.config.components import OPTIONS_OF
from deepseek.errors import ComponentConflictError, ComponentNotFoundError
from deepseek.plugins.calls import SCRIPT_DIST

FIELDS = ("kind", "name", "distribution", "version")
"""The keys of each entry of ``trainer.json``'s ``components``, all strings."""


def _named(config: Any) -> Iterator[tuple[str, str]]:
    """``(kind, name)`` of every component ``config`` names."""
    from deepseek.config.load import COMPONENT_SECTIONS

    for section, kind in COMPONENT_SECTIONS.items():
        table = getattr(config, section)
        yield kind, table.name
        options = table.options
        if options is None or not dataclasses.is_dataclass(options):
            continue
        for f in dataclasses.fields(options):
            picked = f.metadata[OPTIONS_OF](options) if OPTIONS_OF in f.metadata else None
            if picked is not None:
                yield picked[0], getattr(options, picked[1])
    for name in config.logging.trackers:
        yield "tracker", name


def components_used(config: Any, lookups: Any) -> list[dict[str, str]]:
    """``[{kind, name, distribution, version}, ...]`` of every component ``config`` names, as
    ``lookups`` (the run's host) resolves them; a name it cannot resolve is left out."""
    out: list[dict[str, str]] = []
    for kind, name in _named(config):
        try:
            component = lookups.resolve(kind, name)
        except (ComponentNotFoundError, ComponentConflictError):
            continue
        entry = {"kind": kind, "name": name, "distribution": component.dist, "version": component.version}
        if entry not in out:
            out.append(entry)
    return out


def check_components(value: Any) -> str | None:
    """What is wrong with a ``components`` field read back from disk, or ``None``."""
    if not isinstance(value, list):
        return "a list of objects"
    for entry in value:
        if not (isinstance(entry, Mapping) and all(isinstance(entry.get(k), str) for k in FIELDS)):
            return f"a list of objects with string fields {', '.join(FIELDS)}"
    return None


def missing_component(exc: BaseException, state: Mapping[str, Any] | None) -> str | None:
    """For an error whose cause is a component no installed plugin provides, the note naming
    the distribution that provided it when the checkpoint was written (``state``: its
    ``trainer.json``) and how to get it back (``""`` for a script's component: there is nothing
    to install); ``None`` for any other error (the checkpoint's own fault)."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ComponentNotFoundError):
        cause = cause.__cause__
    if cause is None:
        return None
    recorded = (state or {}).get("components")
    if check_components(recorded) is not None:
        recorded = []
    text = str(cause)
    for entry in recorded:
        bare = entry["name"].rpartition(":")[2]
        if f"{entry['kind']} {entry['name']!r}" in text or f"{entry['kind']} {bare!r}" in text:
            dist = entry["distribution"]
            if dist == SCRIPT_DIST:  # nothing to install: the component's own message says where it is
                return ""
            said = f"{dist} " in text and "install" in text  # the lookup's own line says how to get it
            how = ("" if said else f"; install or enable {dist} (pip install {dist}; 'deepseek plugins list' shows "
                   "whether it is disabled)")
            if entry["kind"] == "strategy":  # every strategy writes and reads the one checkpoint format
                how += "; or resume it with a strategy installed here (--strategy single)"
            return (f"the checkpoint was trained with {entry['kind']} {entry['name']!r} from {dist} "
                    f"{entry['version']}{', which is not available here' if not said else ''}{how}")
    return "a component the checkpoint was trained with is not available here; install or enable the plugin that provides it"


def trained_with(state: Mapping[str, Any] | None, kind: str, name: str) -> Mapping[str, str] | None:
    """The ``components`` entry of ``trainer.json`` (``state``) for ``kind`` ``name``, if recorded."""
    recorded = (state or {}).get("components")
    if check_components(recorded) is not None:
        return None
    return next((e for e in recorded if e["kind"] == kind and e["name"] == name), None)


def ambiguity_note(kind: str, name: str, state: Mapping[str, Any] | None, example: str = "") -> str:
    """Why a checkpoint's ``kind`` ``name``, which several installed plugins register, was not
    resolved to the one it was trained with (``state``: its ``trainer.json``), and how to choose
    (``example``: a distribution to name as the example)."""
    from deepseek.plugins.settings import ENV_PREFER

    trained = trained_with(state, kind, name)
    why = ("the checkpoint does not record which one it was trained with" if trained is None else
           f"the run was trained with the one from {trained['distribution']} {trained['version']}, which is not "
           "among them")
    eg = f" (e.g. {ENV_PREFER}={example})" if example else ""
    return f"{why}; choose one with {ENV_PREFER}=<distribution>{eg} or leave the others out with --disable-plugins"


def component_note(exc: BaseException, state: Mapping[str, Any] | None) -> str | None:
    """For an error reading a checkpoint's config whose cause is a component the plugins
    installed here do not give as it was trained (none provides it: :func:`missing_component`;
    several do and none is chosen: :func:`ambiguity_note`), the note saying so; ``None`` for
    any other error (the checkpoint's own fault)."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, (ComponentNotFoundError, ComponentConflictError)):
        cause = cause.__cause__
    if isinstance(cause, ComponentConflictError) and cause.kind:
        return f"the file is not damaged: {ambiguity_note(cause.kind, cause.name, state)}"
    return missing_component(exc, state)


def prefer_recorded(config_data: dict[str, Any], state: Mapping[str, Any] | None, host: Any) -> dict[str, Any]:
    """A checkpoint's saved config with ``[plugins] prefer`` extended by the distributions its
    ``trainer.json`` records for the components whose names are now registered by several
    installed plugins (``host``'s): the run keeps the component it was trained with, where the
    bare name alone would be refused as ambiguous. Unchanged when nothing is ambiguous."""
    recorded = (state or {}).get("components")
    if check_components(recorded) is not None:
        return config_data
    from deepseek.plugins.host import get_host

    lookups = host if host is not None else get_host()
    extra: list[str] = []
    for entry in recorded:
        try:
            res = lookups.explain(entry["kind"], entry["name"])
        except Exception:  # noqa: BLE001 - a kind no plugin adds here: loading the config says so
            continue
        if res.winner is None and any(c.dist == entry["distribution"] for c in res.candidates):
            extra.append(entry["distribution"])
    if not extra:
        return config_data
    plugins = config_data.get("plugins")
    plugins = dict(plugins) if isinstance(plugins, Mapping) else {}
    prefer = plugins.get("prefer")
    prefer = list(prefer) if isinstance(prefer, list) else []
    plugins["prefer"] = prefer + [d for d in dict.fromkeys(extra) if d not in prefer]
    return {**config_data, "plugins": plugins}
