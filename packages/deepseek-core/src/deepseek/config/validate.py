"""Build frozen dataclasses from plain TOML data, with errors that name the field path.

Supported field types: ``bool``, ``int``, ``float`` (finite: ``inf`` and ``nan`` are refused), ``str`` (no NUL character), ``Literal[...]``, ``X | None``,
``tuple[X, ...]``, ``list[X]``, ``dict[str, X]`` and nested dataclasses. A field may add a check
through ``field(metadata={"check": fn, "help": "..."})`` where ``fn(value)`` returns an error
string or ``None``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from deepseek.config.foreign_keys import unknown_keys
from deepseek.errors import QUOTED_LIMIT, ConfigError, clipped
from deepseek.names import did_you_mean

T = TypeVar("T")


def build_dataclass(cls: type[T], data: dict[str, Any], *, path: str, known: typing.Iterable[str] = ()) -> T:
    """Instantiate dataclass ``cls`` from ``data``; unknown keys and bad values raise
    :class:`ConfigError` naming ``path.key``. ``known``: further keys of the same table that
    are handled elsewhere (listed among the allowed keys of the message)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a table, got {_show(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    hints = _type_hints(cls)
    unknown = [key for key in data if key not in fields]  # all of them in the one line, not one per run
    if unknown:
        names = sorted({*fields, *known})
        raise ConfigError(f"{unknown_keys(path, unknown, names)}; allowed keys: {', '.join(names) or 'none'}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        fpath = f"{path}.{name}"
        converted = convert(value, hints[name], path=fpath)
        check = fields[name].metadata.get("check")
        if check is not None:
            problem = check(converted)
            if problem:
                raise ConfigError(f"{fpath}: {problem}, got {_show(value)}")
        kwargs[name] = converted
    try:
        built = cls(**kwargs)  # first the class's own rules (a key it requires, say)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    _check_defaults(cls, fields, hints, data, path)
    return built


@functools.lru_cache(maxsize=1024)
def _type_hints(cls: type) -> dict[str, Any]:
    """``cls``'s resolved field types, once per class (resolving them compiles each string
    annotation again: half the time of checking a config's plain sections). Read only."""
    return get_type_hints(cls)


def _check_defaults(cls: type, fields: dict[str, Any], hints: dict[str, Any], data: dict[str, Any], path: str) -> None:
    """The defaults of the fields ``data`` leaves out, held to their own type and check: a
    component's ``Options`` whose default breaks its rule is refused naming the default and the
    class, instead of a run built on it (or torch's error about it) much later."""
    for name, f in fields.items():
        if name in data or f.default is dataclasses.MISSING or f.default is None or dataclasses.is_dataclass(f.default):
            continue
        where = f"{path}.{name}"
        try:
            problem = fields[name].metadata.get("check", lambda _: None)(convert(f.default, hints[name], path=where))
        except ConfigError as exc:
            problem = str(exc).removeprefix(f"{where}: ")
        if problem:
            raise ConfigError(f"{where}: the default {_show(f.default)} of {cls.__module__}.{cls.__qualname__} breaks "
                              f"its own rule ({problem}); fix the default there, or set {where} meanwhile")


def convert(value: Any, tp: Any, *, path: str) -> Any:
    """Check ``value`` against type ``tp`` (converting int to float, lists to tuples)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, path=path)  # type: ignore[arg-type]
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            options = ", ".join(repr(a) for a in allowed)
            hint = did_you_mean(value, [str(a) for a in allowed]) if isinstance(value, str) else ""
            unquoted = next((a for a in allowed if not isinstance(a, str) and isinstance(value, str)
                             and str(a) == value.strip()), None)
            if unquoted is not None:  # --set strategy.stage="3": a string where a number is meant
                hint = f" (a string; write the number without quotes: {unquoted})"
            raise ConfigError(f"{path}: {_show(value)} is not allowed{hint}; allowed values: {options}")
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return convert(value, arg, path=path)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{path}: {_show(value)} has the wrong type; expected {_type_name(tp)}")
    if origin in (tuple, list):
        args = get_args(tp)
        item = args[0] if args else Any
        if not isinstance(value, (list, tuple)):
            tables = f" (in TOML, one [[{path}]] table per item)" if dataclasses.is_dataclass(item) else ""
            raise ConfigError(f"{path}: expected a list{tables}, got {_show(value)}")
        items = [convert(v, item, path=f"{path}.{i}") for i, v in enumerate(value)]  # as --set enters it
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a table, got {_show(value)}")
        args = get_args(tp)
        item = args[1] if len(args) == 2 else Any
        return {str(k): convert(v, item, path=f"{path}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            lower = str(value).lower()
            hint = f"; TOML writes it {lower} (lower case)" if lower in ("true", "false") and value != lower else ""
            raise ConfigError(f"{path}: expected true or false, got {_show(value)}{hint}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {_show(value)}")
        if not -(2**63) <= value < 2**63:  # TOML's integers are 64-bit
            shown = value if value.bit_length() < 1000 else f"an integer of {value.bit_length()} bits"  # str() refuses 4300+ digits
            raise ConfigError(f"{path}: {shown} is outside TOML's 64-bit integer range; give a smaller value")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {_show(value)}")
        if isinstance(value, int) and not -(2**63) <= value < 2**63:  # past a float's range too, at 10**309
            raise ConfigError(f"{path}: an integer of {value.bit_length()} bits is outside TOML's 64-bit integer range; "
                              "give a smaller value")
        if not math.isfinite(value):
            raise ConfigError(f"{path}: must be a finite number, got {value}; give a finite value")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {_show(value)}{_quote_hint(value)}")
        if "\x00" in value:  # no path, name or option holds one; the OS refuses it far from here
            raise ConfigError(f"{path}: contains a NUL character (\\u0000), got {_show(value)}; remove it")
        return value
    return value


def _type_name(tp: Any) -> str:
    """``tp`` as TOML users read it: ``a string or a list of strings``."""
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args if a is not type(None))
    if origin in (tuple, list):
        return f"a list of {_type_name(args[0]).removeprefix('a ').removeprefix('an ')}s" if args else "a list"
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    return names.get(tp) or getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _quote_hint(value: Any) -> str:
    """For a string field given a TOML number or boolean (``mode = nan``, ``--set name=true``: a
    ``--set`` value is a TOML literal first, docs/config.md), how to give that word as text."""
    if not isinstance(value, (bool, int, float)):
        return ""
    kind = "a boolean" if isinstance(value, bool) else "a number"
    return f"; TOML reads the value as {kind}: quote it to give text (in a file KEY = \"...\", --set 'KEY=\"...\"')"


def _show(value: Any) -> str:
    """A value as an error quotes it; a table by its keys (a ``--set`` path that went on below a
    value makes one: ``optimizer.betas.0=1`` sets ``betas`` to a table with key ``0``)."""
    if isinstance(value, dict):
        return f"a table (keys: {', '.join(map(str, value)) or 'none'})"
    shown, size = repr(value), ""
    if len(shown) > QUOTED_LIMIT:  # the line stays readable: its start and end, and how long it is
        shown = clipped(shown)
        size = f", {len(value):,} {'characters' if isinstance(value, str) else 'items'}" if isinstance(
            value, (str, list)) else ""
    return f"{shown} ({type(value).__name__}{size})"


def positive(value: float) -> str | None:
    """Field check: strictly positive."""
    return None if value > 0 else "must be > 0"


def non_negative(value: float) -> str | None:
    """Field check: zero or more."""
    return None if value >= 0 else "must be >= 0"


def probability(value: float) -> str | None:
    """Field check: a dropout-like probability, in [0, 1)."""
    return None if 0 <= value < 1 else "must be in [0, 1)"


def head_counts(width: int, most: int = 64) -> str:
    """The attention head counts up to ``most`` that divide ``width``, for the hint of a refused
    head count (``1, 2, 4, 8`` for 8; ``1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64`` for 768): every
    divisor of a width would be a long list, and of a huge width (``d_model = 10**18``) a search
    that outlasts the command."""
    return ", ".join(str(d) for d in range(1, min(width, most) + 1) if width % d == 0)
