"""Load a :class:`~deepseek.config.schema.Config` from TOML, ``--set`` overrides or plain data.

Order: file (or a saved config) -> ``--set a.b=c`` overrides -> typed sections (unknown keys are
errors with a did-you-mean) -> the strategy's own ``Options`` -> core's cross-field checks ->
every plugin's ``deepseek_validate_config`` hook. All of it runs before anything heavy starts;
torch is not imported here.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import os
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepseek.config.schema import SECTIONS, Config, StrategyConfig
from deepseek.config.validate import build_dataclass, did_you_mean
from deepseek.errors import ComponentConflictError, ComponentNotFoundError, ConfigError, UsageError

if TYPE_CHECKING:
    from deepseek.plugins.host import PluginHost

_DEFAULT = Config()

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse a TOML file; a missing, unreadable or malformed file is one clear ConfigError."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(
            f"{p}: config file not found; check the path, or run 'deepseek train' without a file "
            "to use the defaults"
        )
    if p.is_dir():
        raise ConfigError(f"{p}: is a directory, expected a TOML config file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read the config file: {exc}") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}; fix the syntax at that position") from exc


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"train.lr=1e-3"`` -> ``(["train", "lr"], 0.001)``.

    The value is read as a TOML literal (``3``, ``1e-3``, ``true``, ``"x"``, ``[1, 2]``) and
    otherwise taken as a plain string (``model.preset=tiny``).
    """
    key, sep, raw = item.partition("=")
    parts = [p.strip() for p in key.strip().split(".")]
    if not sep or len(parts) < 2 or not all(parts):
        raise UsageError(
            f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. --set train.lr=1e-3"
        )
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of ``data`` with every ``--set`` override applied (nested tables created)."""
    out = copy.deepcopy(data)
    for item in overrides:
        parts, value = parse_override(item)
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[: i + 1])
                raise UsageError(f"--set {item!r}: {where} is a value, not a table")
            node = child
        node[parts[-1]] = value
    return out


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Iterable[str] = (),
    *,
    base: Mapping[str, Any] | None = None,
    validate: bool = True,
    host: PluginHost | None = None,
) -> Config:
    """Build a validated Config from a TOML file (or ``base`` data, or the defaults) plus
    ``--set`` overrides. ``validate=False`` skips the plugins' ``deepseek_validate_config``;
    ``host`` as in :func:`config_from_dict`."""
    data: dict[str, Any] = dict(base or {}) if path is None else read_toml(path)
    return config_from_dict(apply_overrides(data, overrides), validate=validate, host=host)


def config_from_dict(
    data: Mapping[str, Any], *, validate: bool = True, host: PluginHost | None = None
) -> Config:
    """Build and check a Config from plain data (what a TOML file or ``Config.to_dict`` gives).

    Component lookups (strategy, model, the validate hook) go through ``host`` (default: the
    process's host) with the config's ``[plugins] prefer`` applied to them only; the host itself
    is left as it was."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"config: expected a table, got {type(data).__name__}")
    for key, value in data.items():
        if key not in SECTIONS:
            raise ConfigError(
                f"{key}: unknown config section{did_you_mean(key, SECTIONS)}; "
                f"allowed sections: {', '.join(SECTIONS)}"
            )
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a [{key}] table, got {value!r}")
    sections: dict[str, Any] = {}
    for name in SECTIONS:
        table = dict(data.get(name, {}))
        if name == "strategy":
            continue
        sections[name] = build_dataclass(type(getattr(_DEFAULT, name)), table, path=name)
    lookups = _lookups(host, sections["plugins"].prefer)
    # Cheap checks first; loading the strategy class imports torch.
    config = _resolve_paths(Config(**sections, strategy=StrategyConfig()))
    check_config(config, host=lookups)
    strategy = _build_strategy(dict(data.get("strategy", {})), lookups)
    config = dataclasses.replace(config, strategy=strategy)
    if validate:
        lookups.hook.deepseek_validate_config(config=config)
    return config


def _lookups(host: PluginHost | None, prefer: Iterable[str]) -> PluginHost:
    """``host`` (default: the process's) as seen by one config: its ``[plugins] prefer`` applied."""
    from deepseek.plugins.host import get_host

    return (host or get_host()).with_preference(prefer)


def _build_strategy(table: dict[str, Any], host: PluginHost) -> StrategyConfig:
    name = table.pop("name", "single")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"strategy.name: expected a strategy name (string), got {name!r}")
    try:
        component = host.resolve("strategy", name)
    except (ComponentNotFoundError, ComponentConflictError) as exc:
        raise ConfigError(f"strategy.name: {exc}") from exc
    cls = component.load()
    options_cls = getattr(cls, "Options", None)
    if options_cls is None or not dataclasses.is_dataclass(options_cls):
        if table:
            keys = ", ".join(sorted(table))
            raise ConfigError(f"strategy.{sorted(table)[0]}: strategy {name!r} takes no options (got {keys})")
        return StrategyConfig(name=name, options=None)
    fields = {f.name for f in dataclasses.fields(options_cls)}
    if "compression" in table and "compression" not in fields:
        raise ConfigError(_no_compression(name, table["compression"], host))
    return StrategyConfig(name=name, options=build_dataclass(options_cls, table, path="strategy"))


def _no_compression(name: str, method: Any, host: PluginHost) -> str:
    """The error for ``strategy.compression`` on a strategy that compresses no gradients, naming
    the registered strategies that do."""
    offered, seen = [], set()
    for other in host.names("strategy"):
        try:
            cls = host.resolve("strategy", other).load()
        except Exception:  # noqa: BLE001  (a broken or ambiguous plugin must not hide this message)
            continue
        methods = tuple(getattr(cls, "supports_compression", ()))
        if methods and cls not in seen:
            seen.add(cls)
            offered.append(f"{other} ({', '.join(methods)})")
    where = f"use {' or '.join(offered)}" if offered else "no installed strategy compresses gradients"
    return (f"strategy.compression: strategy {name!r} compresses no gradients (got {method!r}); "
            f"{where}, or remove strategy.compression")


def _resolve_paths(config: Config) -> Config:
    if not config.data.path:
        return config
    path = Path(config.data.path).expanduser()
    if not path.exists():
        raise ConfigError(
            f"data.path: {config.data.path!r} does not exist; point it at a text file or a folder "
            "of text files, or leave it empty for the embedded corpus"
        )
    data = dataclasses.replace(config.data, path=str(path.resolve()))
    return dataclasses.replace(config, data=data)


def check_config(config: Config, *, host: PluginHost | None = None) -> None:
    """Core's cross-field checks (one ConfigError naming the fields and the fix); the model is
    looked up in ``host`` (default: the process's) with the config's ``[plugins] prefer``."""
    host = _lookups(host, config.plugins.prefer)
    preset = config.model.preset
    try:
        host.resolve("model", preset)
    except (ComponentNotFoundError, ComponentConflictError) as exc:
        names = host.names("model")
        if isinstance(exc, ComponentConflictError):
            raise ConfigError(f"model.preset: {exc}") from exc
        raise ConfigError(
            f"model.preset: unknown model {preset!r}{did_you_mean(preset, names)}; "
            f"available: {', '.join(names) or 'none'}"
        ) from exc
    t, d = config.train, config.data
    if d.batch_size % t.grad_accum:
        raise ConfigError(
            f"train.grad_accum: data.batch_size={d.batch_size} is not divisible by "
            f"train.grad_accum={t.grad_accum}; make the batch a multiple of grad_accum"
        )
    if t.min_lr > t.lr:
        raise ConfigError(f"train.min_lr: {t.min_lr} is above train.lr={t.lr}; set min_lr <= lr")
    if config.logging.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(
            "logging.tensorboard: true but the tensorboard package is not installed; "
            "pip install tensorboard, or set logging.tensorboard = false"
        )


def dump_config(config: Config) -> str:
    """The resolved config as TOML text (loads back to an equal Config)."""
    import tomli_w

    return tomli_w.dumps(config.to_dict())


def write_config(config: Config, path: str | os.PathLike[str]) -> Path:
    """Write the resolved config as TOML atomically (temp file + rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(dump_config(config))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
