"""JSON and TOML text read back from disk or a request, parsed as user input: a document nested
deeper than :data:`MAX_DEPTH` levels is a parse error like any other malformed text.

Python's parsers recurse once per level: a few thousand nested ``[`` raise ``RecursionError``
(not a ``ValueError``, so callers' "malformed file" handling missed it), and a document just
below that limit would exhaust the stack of the first recursive walk over it. No file the
framework writes or reads (configs, ``trainer.json``, ``metrics.jsonl``, ``config.json``) comes
near the limit.
"""

from __future__ import annotations

import json
from typing import Any

import tomllib

MAX_DEPTH = 64
"""Nesting levels of arrays and tables a document may have."""

TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels of arrays and tables"
"""The message of the parse error for a document nested too deeply."""


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` (parsed JSON or TOML) nests lists and dicts deeper than ``limit``."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def loads_json(text: str | bytes) -> Any:
    """``json.loads``; a document nested too deeply raises ``json.JSONDecodeError`` (a ``ValueError``)
    as malformed JSON does."""
    try:
        value = json.loads(text)
    except RecursionError:
        value = None
    else:
        if not too_deep(value):
            return value
    raise json.JSONDecodeError(TOO_DEEP, text if isinstance(text, str) else "", 0)


def loads_toml(text: str) -> dict[str, Any]:
    """``tomllib.loads``; a document nested too deeply raises ``tomllib.TOMLDecodeError`` (a
    ``ValueError``) as malformed TOML does."""
    try:
        value = tomllib.loads(text)
    except RecursionError:
        value = None
    else:
        if not too_deep(value, MAX_DEPTH + 1):  # the document's own table is a level
            return value
    raise tomllib.TOMLDecodeError(TOO_DEEP)
