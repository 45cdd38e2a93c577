"""``--set`` overrides: ``SECTION.KEY=VALUE`` parsed as a TOML dotted key and literal, applied to
config data in order (a list of tables entered by index), and ``~SECTION.KEY`` removing a key.

One grammar for every command that takes ``--set`` (train, eval, tune's search space, compress
recipes, bench): :func:`parse_override`, :func:`parent_table`, :func:`apply_overrides`; a
component's ``KEY=VALUE`` options given on their own: :func:`parse_option`.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterable
from typing import Any

from deepseek.errors import UsageError
from deepseek.parsing import loads_toml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def _key_path(key: str) -> list[str] | None:
    """A TOML dotted key as its parts (``trackers."acme.csv".file`` -> three parts), or None."""
    try:
        node: Any = tomllib.loads(f"{key} = 0")
    except tomllib.TOMLDecodeError:
        return None
    parts: list[str] = []
    while isinstance(node, dict):
        (name, node), = node.items()
        parts.append(name)
    return parts


def _split_assignment(item: str) -> tuple[str, str, str]:
    """``KEY=VALUE`` split at the first ``=`` outside a quoted key part."""
    quote = ""
    for i, ch in enumerate(item):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "=":
            return item[:i], "=", item[i + 1:]
    return item, "", ""


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"train.lr=1e-3"`` -> ``(["train", "lr"], 0.001)``.

    The key is a TOML dotted key, so a part holding a dot is quoted as in a TOML file
    (``trackers."acme.csv".file=x.csv``). The value is read as a TOML literal (``3``, ``1e-3``,
    ``true``, ``"x"``, ``[1, 2]``) and otherwise taken as a plain string (``model.name=tiny``).
    """
    key, sep, raw = _split_assignment(item)
    parts = _key_path(key.strip()) if sep else None
    if not parts or len(parts) < 2 or not all(parts):
        raise UsageError(
            f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. --set train.lr=1e-3 (quote a part holding a "
            "dot or a character other than A-Z a-z 0-9 _ -: --set 'trackers.\"acme.csv\".file=x.csv')"
        )
    return parts, _value(raw)


def parse_option(item: str, problem: str) -> tuple[str, Any]:
    """One ``KEY=VALUE`` option of a component given on its own (compress's ``--set`` and
    ``--recipe`` words, bench train's ``--model-option``...): the key (a TOML dotted key, its parts
    joined by dots) and the value, read as :func:`parse_override` reads them. Where ``item`` is
    no such assignment (no ``=``, an empty or malformed key), one ``UsageError(problem)``: the
    caller's line names the option the user gave and its form, not ``--set SECTION.KEY``."""
    key, sep, raw = _split_assignment(item)
    parts = _key_path(key.strip()) if sep else None
    if not parts or not all(parts):
        raise UsageError(problem)
    return ".".join(parts), _value(raw)


def _value(raw: str) -> Any:
    """A ``--set`` value: a TOML literal (``3``, ``1e-3``, ``true``, ``"x"``, ``[1, 2]``), else the
    plain string."""
    raw = raw.strip()
    try:
        return loads_toml(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _is_index(part: str) -> bool:
    """``part`` is a list index as a path writes it: ``0``, ``12`` (ASCII digits, no sign, no
    leading zero)."""
    return part == "0" or (part.isascii() and part.isdigit() and not part.startswith("0"))


def parent_table(root: dict[str, Any], parts: list[str]) -> dict[str, Any]:
    """The table that holds the key ``parts[-1]`` of the dotted path ``parts`` under ``root``,
    creating missing tables on the way. A list of tables is entered by index
    (``optimizer.groups.0.lr_scale``: the first ``[[optimizer.groups]]`` table); an index enters
    only a list of tables the data already has. ValueError, naming the path and the fix, where the
    path meets a value, a list of values, an index the list does not have, or an index into a
    list the data does not have."""
    node: Any = root
    for i, part in enumerate(parts[:-1]):
        at = ".".join(parts[:i])
        if isinstance(node, list):
            _check_list_of_tables(node, at)
            count = len(node)
            if not _is_index(part) or int(part) >= count:
                raise ValueError(f"{at} is a list of {count} table(s), so the part after it is an index from 0 to "
                                 f"{count - 1} (got {part!r})")
            node = node[int(part)]
        elif part.isdigit() and part not in node:
            raise ValueError(f"{at} has no list of tables to enter at index {part}: the config gives no [[{at}]] "
                             f"table; add them to the config file, then set their keys by index ({at}.{part}.KEY)")
        else:
            node = node.setdefault(part, {})
        if not isinstance(node, (dict, list)):
            raise ValueError(f"{'.'.join(parts[: i + 1])} is a value, not a table; set it whole "
                             f"({'.'.join(parts[: i + 1])}=VALUE)")
    if isinstance(node, list):
        at = ".".join(parts[:-1])
        _check_list_of_tables(node, at)
        raise ValueError(f"{at} is a list of tables; set a key of one of them by its index, as in {at}.0.KEY")
    return node


def _check_list_of_tables(node: list[Any], at: str) -> None:
    """ValueError unless ``node`` (the list at path ``at``) holds tables to enter by index."""
    if not node:
        raise ValueError(f"{at} is an empty list; add a [[{at}]] table to the config file, then set its keys "
                         f"by index ({at}.0.KEY)")
    if not all(isinstance(item, dict) for item in node):
        raise ValueError(f"{at} is a list of values, not of tables, so it takes no index; set it whole, "
                         f"as in {at}=[...]")


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of ``data`` with every ``--set`` override applied in order, so the last of two for
    one key wins (nested tables created; a list of tables entered by index, :func:`parent_table`)."""
    out = copy.deepcopy(data)
    for item in overrides:
        if item.startswith("~"):  # remove a key: --set '~lr_schedule.every'
            _remove_key(out, item)
            continue
        parts, value = parse_override(item)
        try:
            node = parent_table(out, parts)
        except ValueError as exc:
            raise UsageError(f"--set {item!r}: {exc}") from None
        node[parts[-1]] = value
    return out


def _remove_key(data: dict[str, Any], item: str) -> None:
    """``--set '~SECTION.KEY'``: remove that key from ``data``; one UsageError line when the
    config has no such key."""
    parts = _key_path(item[1:].strip())
    if not parts or len(parts) < 2 or not all(parts) or "=" in item:
        raise UsageError(f"--set {item!r}: expected ~SECTION.KEY to remove a key, e.g. --set '~lr_schedule.every'")
    node: Any = data
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict) or parts[-1] not in node:
        raise UsageError(f"--set {item!r}: the config has no {'.'.join(parts)} to remove")
    del node[parts[-1]]
