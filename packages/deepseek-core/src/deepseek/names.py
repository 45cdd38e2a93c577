"""Comma-separated lists of names (``--passes``, ``--plugins``, ``DEEPSEEK_PLUGINS``,
``--modalities``, ...): the one splitter, which refuses an empty item instead of dropping it
(``--passes ,,`` would otherwise mean "no pass" and ``--plugins pro,`` hide a typo)."""

from __future__ import annotations

from deepseek.errors import UsageError


def split_names(text: str, *, where: str) -> tuple[str, ...]:
    """``"a, b,c"`` -> ``("a", "b", "c")``; an empty item (``a,,b``, ``,``, ``""``) is a
    UsageError naming ``where``."""
    items = tuple(item.strip() for item in str(text).split(","))
    if not all(items):
        raise UsageError(
            f"{where}: {text!r} has an empty name; give names separated by single commas, e.g. a,b"
        )
    return items
