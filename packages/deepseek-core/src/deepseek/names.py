"""Names typed by users: comma-separated lists of them (``--passes``, ``--plugins``,
``DEEPSEEK_PLUGINS``, ``--modalities``, ...), the one rule for the characters a free-form name may
hold (:func:`unprintable_in`), and the one rule for suggesting the name a mistyped one meant
("did you mean ...?")."""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Iterable, Sequence

from deepseek.errors import UsageError, escape


def unprintable_in(name: str) -> str | None:
    """What is wrong with ``name``, a name given as free text that becomes a file or folder name
    and is printed in lines (a run's ``logging.name``): ``holds a character that does not print
    ('\\x1b', character 2)`` for its first control or format character (a line break, a tab, ESC of
    a terminal sequence, NUL, a right-to-left override, a line separator; a byte that is not
    UTF-8), which messages can only show escaped; ``None`` when there is none (a space prints).
    Names checked by a pattern of their own (registered components, tenants, tune studies) hold
    none already."""
    for n, ch in enumerate(name, 1):
        if not ch.isprintable() and unicodedata.category(ch) != "Zs":
            return f"holds a character that does not print ('{escape(ch)}', character {n})"
    return None


def split_names(text: str, *, where: str) -> tuple[str, ...]:
    """``"a, b,c"`` -> ``("a", "b", "c")``; an empty item (``a,,b``, ``,``, ``""``) is a
    UsageError naming ``where``. (An empty item is refused rather than dropped: ``--passes ,,``
    would otherwise mean "no pass" and ``--plugins pro,`` hide a typo.)"""
    items = tuple(item.strip() for item in str(text).split(","))
    if not all(items):
        raise UsageError(
            f"{where}: {text!r} has an empty name; give names separated by single commas, e.g. a,b"
        )
    return items


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The choice ``name`` most likely meant, or ``None``: difflib's closest match (ratio at
    least 0.6), else a choice one edit away (a character changed, added or dropped, or two
    characters swapped), which difflib's ratio misses on short names (``tyni`` for ``tiny``)."""
    options = [str(c) for c in choices]
    name = str(name)  # a key of a Python mapping need not be a string: {5: ...} is an unknown key too
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    if close:
        return close[0]
    if len(name) < 3:  # one edit away from a one- or two-letter name is most names
        return None
    return next((c for c in options if _one_edit(name.lower(), c.lower())), None)


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` with :func:`closest`'s choice, or an empty string."""
    close = closest(name, choices)
    return f" (did you mean {close!r}?)" if close is not None else ""


def name_list_problem(names: Sequence[str], choices: Sequence[str], what: str) -> str | None:
    """What is wrong with ``names``, a list of distinct names among ``choices`` (``what`` says what
    each is: ``modality``), as words to follow the list in a message: ``names 'audoi', not a
    modality (did you mean 'audio'?)`` for the first unknown name, ``names 'vision' twice`` for the
    first repeated one; ``None`` when there is neither."""
    for name in names:
        if name not in choices:
            return f"names {name!r}, not a {what}{did_you_mean(name, choices)}"
    repeated = next((name for i, name in enumerate(names) if name in names[:i]), None)
    return f"names {repeated!r} twice" if repeated is not None else None


def _one_edit(a: str, b: str) -> bool:
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long = (a, b) if len(a) < len(b) else (b, a)
    i = next((k for k in range(len(short)) if short[k] != long[k]), len(short))
    return short[i:] == long[i + 1:]


def meant_distribution(name: str, installed: list[str]) -> str:
    """`` (did you mean 'acme-extras'?)`` for a distribution named by a typo or by a part of its
    name (``acme`` for the one installed ``acme-extras``); else ``""``."""
    hint = did_you_mean(name, installed)
    if hint:
        return hint
    bare = name.lower().replace("_", "-")
    parts = [d for d in installed if bare in d.lower().replace("_", "-").split("-")]
    return f" (did you mean {parts[0]!r}?)" if len(parts) == 1 else ""
