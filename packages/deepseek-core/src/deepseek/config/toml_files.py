"""Config files on disk: reading a TOML file (a config, a search space, a cost table) with one
clear error for anything wrong with it, and writing a resolved config back as TOML.

What the tables mean (sections, components, checks) is :mod:`deepseek.config.load`'s.
"""

from __future__ import annotations

import errno
import os
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepseek import durable
from deepseek.errors import ConfigError
from deepseek.parsing import TOO_DEEP, TOO_LONG, UnreadableFile, loads_json, loads_toml, read_text
from deepseek.paths import broken_link, usual_mode

if TYPE_CHECKING:
    from deepseek.config.schema import Config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


MAX_CONFIG_BYTES = 16 << 20
"""The largest TOML file :func:`read_toml` reads (configs and search spaces are a few KiB)."""
_TRAIN_DEFAULTS_HINT = "check the path, or run 'deepseek train' without a file to use the defaults"


def read_toml(path: str | os.PathLike[str], *, missing_hint: str = _TRAIN_DEFAULTS_HINT,
              what: str = "config file") -> dict[str, Any]:
    """Parse a TOML file; a missing, unreadable, non-UTF-8 or malformed file is one clear
    ConfigError (``missing_hint`` is the fix a missing file's message offers; ``what`` names the
    file in it: "config file", "search space file", ...)."""
    p = Path(path)
    return toml_from_text(read_config_text(p, missing_hint=missing_hint, what=what), p)


def read_config_text(path: str | os.PathLike[str], *, missing_hint: str = _TRAIN_DEFAULTS_HINT,
                     what: str = "config file") -> str:
    """The text of the TOML file ``path`` (a regular file of at most :data:`MAX_CONFIG_BYTES`, UTF-8),
    unparsed; anything else is the one ConfigError line :func:`read_toml` raises for it."""
    p = Path(path)
    if not p.exists():
        link = broken_link(p)
        if link is not None:
            raise ConfigError(f"{p}: {link}; give the {what}'s own path")
        raise not_found(p, missing_hint, what)
    try:  # the file's kind and size are checked on the descriptor read: the path may be swapped after a check
        text = read_text(p, MAX_CONFIG_BYTES)
    except IsADirectoryError:
        raise ConfigError(f"{p}: is a directory, expected a TOML {what}") from None
    except UnreadableFile as exc:
        if exc.errno == errno.EFBIG:
            raise ConfigError(f"{p}: larger than {MAX_CONFIG_BYTES >> 20} MiB, too large for a TOML {what}; "
                              "check the path") from None
        raise ConfigError(f"{p}: not a regular file (a device, FIFO or socket); give a TOML {what}") from None
    except FileNotFoundError:
        raise not_found(p, missing_hint, what) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{p}: cannot read the {what}: byte 0x{exc.object[exc.start]:02x} at position {exc.start} is "
            "not UTF-8; save the file as UTF-8 text"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the {what}: {exc.strerror}; check the path and its permissions") from exc
    return text


def not_found(path: Path, missing_hint: str = _TRAIN_DEFAULTS_HINT, what: str = "config file") -> ConfigError:
    """The error :func:`read_toml` raises for a file that is not there."""
    return ConfigError(f"{path}: {what} not found; {missing_hint}")


def toml_from_text(text: str, path: Path) -> dict[str, Any]:
    """The tables of the text :func:`read_toml` read from ``path`` (a leading byte order mark,
    which some editors write, read past); malformed TOML is the one ConfigError line it raises.
    For text that stands for a file not read here (a job's file, checked when it is submitted)."""
    text = text.removeprefix("\ufeff")
    try:
        return loads_toml(text)
    except tomllib.TOMLDecodeError as exc:
        if str(exc) == TOO_DEEP:
            raise ConfigError(f"{path}: not a config: its values are {TOO_DEEP} (a config's are a few); check the "
                              "path and the file") from None
        if str(exc) == TOO_LONG:
            raise ConfigError(f"{path}: not a config: it {TOO_LONG} (no setting takes one); check the path and "
                              "the file, and give numbers a setting's range allows") from None
        raise ConfigError(f"{path}: not valid TOML: {exc}; {_json_instead(path, text) or 'fix the syntax at that position'}"
                          ) from exc


def _json_instead(path: Path, text: str) -> str:
    """How to go on when the file that is not TOML is JSON: a Hugging Face model's ``config.json``
    (``model_type``) is imported, other JSON rewritten as TOML; ``""`` for anything else."""
    try:
        data = loads_json(text)
    except ValueError:
        return ""
    if isinstance(data, dict) and isinstance(data.get("model_type"), str):
        return (f"it is a Hugging Face model's config.json ({data['model_type']}); import the model with "
                f"deepseek import-hf {path.parent} --out DIR, then give DIR/config.toml (docs/interop.md)")
    return "it is JSON; write it as TOML (docs/config.md)"


def toml_value(value: Any) -> str:
    """``value`` written as TOML writes it after ``key = ``, on one line: ``28``, ``"vision.swin"``
    (a TOML string, not Python's ``'vision.swin'``), ``true``, ``[28, 32]``, ``{ a = 1 }``: what a
    hint saying ``set <key> = <value>`` prints, so that the line pastes into a config file or after
    ``--set``. A ``TypeError`` for a value TOML cannot hold (``None``, an object)."""
    import tomli_w

    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        pairs = ", ".join(f"{tomli_w.dumps({k: 0})[:-5]} = {toml_value(v)}" for k, v in value.items())
        return f"{{ {pairs} }}" if pairs else "{}"
    return tomli_w.dumps({"v": value})[4:-1]  # "v = <value>\n"


def holds_in_toml(value: Any) -> bool:
    """Whether a config file can hold ``value`` (:func:`toml_value` writes it)."""
    try:
        toml_value(value)
    except (TypeError, ValueError):
        return False
    return True


def dump_config(config: Config) -> str:
    """The resolved config as TOML text (loads back to an equal Config)."""
    import tomli_w

    return tomli_w.dumps(config.to_dict())


def write_config(config: Config, path: str | os.PathLike[str], notes: Iterable[str] = ()) -> Path:
    """Write the resolved config as TOML atomically (temp file + rename), each of ``notes`` a
    comment line above the tables."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        usual_mode(fd)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("".join(f"# {line}\n" for line in notes) + dump_config(config))
        durable.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
