"""``logging.trackers`` and the ``[trackers.<name>]`` tables, checked when a config is loaded.

The one place that turns the config's tracker names into registered :class:`Tracker` classes and
their validated ``Options``: an unknown name (did-you-mean), a table for a tracker that is not
listed, a bad key (field path ``trackers.<name>.<key>``) and whatever the tracker's own
:meth:`Tracker.check` refuses (a missing library) are one-line ``ConfigError`` s. The old
spelling ``logging.tensorboard = true`` is read as the ``tensorboard`` tracker.

Nothing here imports torch or a tracker's library.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from deepseek.config.components import build_options
from deepseek.config.validate import did_you_mean
from deepseek.errors import ComponentConflictError, ComponentNotFoundError, ConfigError
from deepseek.tracking.tracker import Tracker

if TYPE_CHECKING:
    from deepseek.config.schema import LoggingConfig, TrackersConfig
    from deepseek.plugins.host import PluginHost


def table_path(name: str) -> str:
    """``trackers.<name>`` as TOML writes it: a name holding anything but letters, digits, ``_``
    and ``-`` (``acme.csv``) is quoted (``trackers."acme.csv"``), as in its table header."""
    return f"trackers.{name}" if re.fullmatch(r"[A-Za-z0-9_-]+", name) else f'trackers."{name}"'


def _component(host: PluginHost, name: str) -> Any:
    """The registration of tracker ``name``, not loaded (a ConfigError naming ``logging.trackers``
    when no loaded plugin provides it, or several do)."""
    try:
        return host.resolve("tracker", name)
    except (ComponentNotFoundError, ComponentConflictError) as exc:
        raise ConfigError(f"logging.trackers: {exc}") from exc


def tracker_class(host: PluginHost, name: str) -> type[Tracker]:
    """The registered tracker ``name`` (a ConfigError naming ``logging.trackers`` when unknown)."""
    return _component(host, name).load_subclass(Tracker, see="docs/tracking.md section 5")


def tracker_options(host: PluginHost, name: str, table: Mapping[str, Any]) -> tuple[type[Tracker], Any]:
    """``(class, validated and checked options)`` of tracker ``name`` from its table's keys."""
    from deepseek.plugins.calls import class_calls

    cls = tracker_class(host, name)
    options = build_options(cls, dict(table), kind="tracker", name=name, path=table_path(name))
    with class_calls(host.resolve("tracker", name), "check"):  # a plugin's bug: one line naming it
        cls.check(options)
    return cls, options


def build_tracker(host: PluginHost, name: str, table: Mapping[str, Any]) -> Tracker:
    """A tracker instance from its keys (``deepseek.create_tracker``), not started."""
    from deepseek.plugins.calls import created

    _, options = tracker_options(host, name, table)
    return created(host.resolve("tracker", name), options)


def resolve_trackers(
    host: PluginHost, logging: LoggingConfig, tables: Any
) -> tuple[LoggingConfig, TrackersConfig]:
    """``logging`` with the tracker names as the run records them (``tensorboard = true`` moved
    into ``trackers``), and the options of each tracker from ``tables`` (the ``[trackers]`` table)."""
    from deepseek.config.schema import TrackersConfig

    names = tracker_names(host, logging, tables)
    options = {name: tracker_options(host, name, tables.get(name, {}))[1] for name in names}
    logging = dataclasses.replace(logging, trackers=tuple(names), tensorboard=False)
    return logging, TrackersConfig(options=options)


def tracker_names(host: PluginHost, logging: LoggingConfig, tables: Any) -> list[str]:
    """The checks of :func:`resolve_trackers` that load no tracker: the names listed (none empty or
    twice), a ``[trackers.<name>]`` table only for a listed one, and each name registered on
    ``host`` (``logging.trackers: ...`` for one that no loaded plugin provides, or several do).
    The names in the order the run records them. The job service runs it at submit
    (:func:`deepseek.config.load.check_component_names`)."""
    if not isinstance(tables, Mapping):
        raise ConfigError(f"trackers: expected a table of [trackers.<name>] tables, got {tables!r}")
    names = list(logging.trackers)
    for i, name in enumerate(names):
        if not name.strip():
            raise ConfigError(f"logging.trackers: entry {i} is an empty name; list registered trackers, e.g. "
                              "[\"tensorboard\"] (see 'deepseek plugins list')")
        if name in names[:i]:
            raise ConfigError(f"logging.trackers: {name!r} is listed twice; list each tracker once")
    if logging.tensorboard and "tensorboard" not in names:
        names.append("tensorboard")
    for key, table in tables.items():
        if key not in names:
            # [trackers.acme.csv] nests table csv in table acme; the tracker acme.csv needs quotes
            dotted = [f"{key}.{sub}" for sub, value in table.items() if isinstance(value, Mapping)] \
                if isinstance(table, Mapping) else []
            quoted = next((n for n in dotted if n in names), None)
            if quoted is not None:
                raise ConfigError(
                    f"{table_path(key)}: options of a tracker that logging.trackers does not list; for the "
                    f"tracker {quoted!r} quote its name: [{table_path(quoted)}]"
                )
            raise ConfigError(
                f"{table_path(key)}: options of a tracker that logging.trackers does not list"
                f"{did_you_mean(key, names)}; add {key!r} to logging.trackers or remove [{table_path(key)}]"
            )
        if not isinstance(table, Mapping):
            raise ConfigError(f"{table_path(key)}: expected a table of the tracker's options, got {table!r}")
    for name in names:
        _component(host, name)
    return names
