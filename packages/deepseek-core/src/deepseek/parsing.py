"""JSON and TOML text read back from disk or a request, parsed as user input: a document nested
deeper than :data:`MAX_DEPTH` levels is a parse error like any other malformed text.

Python's parsers recurse once per level: a few thousand nested ``[`` raise ``RecursionError``
(not a ``ValueError``, so callers' "malformed file" handling missed it), and a document just
below that limit would exhaust the stack of the first recursive walk over it. No file the
framework writes or reads (configs, ``trainer.json``, ``metrics.jsonl``, ``config.json``) comes
near the limit.

An integer literal of more digits than Python converts (``sys.get_int_max_str_digits()``, 4,300 by
default) is a parse error too (:data:`TOO_LONG`): both parsers raise a bare ``ValueError`` for it,
which callers' handling of malformed text (``JSONDecodeError``, ``TOMLDecodeError``) missed.

Such a file is read whole through :func:`read_text`: a regular file of at most
:data:`MAX_FILE_BYTES` (a run folder's file replaced by a 2 GiB one, a FIFO or a link to
``/dev/zero`` would otherwise fill memory or block the command). A log is read from its end
through :func:`read_tail`: its last bytes only, however long the run that wrote it.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
from typing import Any, BinaryIO

import tomllib

MAX_DEPTH = 64
"""Nesting levels of arrays and tables a document may have."""

TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels of arrays and tables"
"""The message of the parse error for a document nested too deeply."""

TOO_LONG = f"holds an integer of more than {sys.get_int_max_str_digits():,} digits"
"""The message of the parse error for an integer literal longer than Python converts."""

MAX_FILE_BYTES = 16 << 20
"""The largest JSON or TOML file read back whole (configs, ``trainer.json``, ``commit.json``,
``sharded.json``, pointer files: a few KiB each)."""


class UnreadableFile(OSError):
    """A file read back that :func:`read_file` does not read: not a regular file, or larger than
    its reader takes. An ``OSError``, so a reader's handling of unreadable files covers it; its
    text is the reason alone."""

    def __str__(self) -> str:
        return str(self.strerror)


def open_file(path: str | os.PathLike[str], *, follow_links: bool = True) -> BinaryIO:
    """The regular file ``path`` (a link to one too, unless ``follow_links`` is false: then a link
    raises ``OSError`` ELOOP) opened to read bytes. A FIFO, a device or a socket (``/dev/zero``
    never ends; a FIFO would block the read) raises :class:`UnreadableFile`; a folder
    ``IsADirectoryError``, a missing file ``FileNotFoundError``, as ``open`` does."""
    flags = os.O_RDONLY | os.O_NONBLOCK | (0 if follow_links else os.O_NOFOLLOW)
    fd = os.open(path, flags)  # a FIFO opens without waiting for a writer
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):  # checked before fdopen, which refuses a folder naming the descriptor
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), os.fspath(path))
        raise UnreadableFile(errno.EINVAL, "not a regular file (a FIFO, device or socket)", os.fspath(path))
    return os.fdopen(fd, "rb")


def read_file(path: str | os.PathLike[str], limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of the regular file ``path`` (:func:`open_file`), at most ``limit`` of them: a
    larger file (a 2 GiB file read whole fills memory) raises :class:`UnreadableFile`, without
    reading it where its size says so (and after ``limit`` bytes where it grows while read). A
    read asks for the bytes the file holds, not ``limit``: Python allocates what a read asks for,
    so reading a file of 3 KiB took 16 MiB (the tokenizer's limit 256 MiB) for the while."""
    with open_file(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        data = b"" if size > limit else fh.read(size + 1)  # one byte more: a file that grew since
        if size < len(data) <= limit:
            data += fh.read(limit + 1 - len(data))
    if size > limit or len(data) > limit:
        raise UnreadableFile(errno.EFBIG, f"larger than {limit:,} bytes, the most such a file has", os.fspath(path))
    return data


def read_text(path: str | os.PathLike[str], limit: int = MAX_FILE_BYTES) -> str:
    """:func:`read_file` as UTF-8 text (``UnicodeDecodeError``, a ``ValueError``, for other bytes)."""
    return read_file(path, limit).decode("utf-8")


def read_tail(path: str | os.PathLike[str], size: int, *, follow_links: bool = True) -> str:
    """The last ``size`` bytes of the regular file ``path`` (:func:`open_file`; a log, any length)
    as text, bytes that are no UTF-8 replaced; when the read starts inside the file, its first,
    cut line is left out. One seek from the end: the file's length costs nothing."""
    with open_file(path, follow_links=follow_links) as fh:
        start = max(0, os.fstat(fh.fileno()).st_size - size)
        if start:
            fh.seek(start - 1)  # the byte before: a newline there means no line is cut
        data = fh.read(size + (1 if start else 0))
    if start:
        data = data[data.find(b"\n") + 1:] if b"\n" in data else b""
    return data.decode("utf-8", "replace")


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


class _Unparsed(json.JSONDecodeError):
    """A JSON document nested too deeply or holding too long an integer: its text is
    :data:`TOO_DEEP` or :data:`TOO_LONG` alone (the position ``JSONDecodeError`` adds,
    ``line 1 column 1 (char 0)``, is no place of the fault)."""

    def __str__(self) -> str:
        return self.msg


def loads_json(text: str | bytes) -> Any:
    """``json.loads``; a document nested too deeply or holding too long an integer raises
    ``json.JSONDecodeError`` (a ``ValueError``) as malformed JSON does, its text :data:`TOO_DEEP`
    or :data:`TOO_LONG`."""
    problem = TOO_DEEP
    try:
        value = json.loads(text)
    except RecursionError:
        value = None
    except (json.JSONDecodeError, UnicodeDecodeError):  # malformed text, or bytes that are no UTF-8/16/32
        raise
    except ValueError:  # int() of the literal: past sys.get_int_max_str_digits()
        problem, value = TOO_LONG, None
    else:
        if not too_deep(value):
            return value
    raise _Unparsed(problem, text if isinstance(text, str) else "", 0)


def loads_toml(text: str) -> dict[str, Any]:
    """``tomllib.loads``; a document nested too deeply or holding too long an integer raises
    ``tomllib.TOMLDecodeError`` (a ``ValueError``) as malformed TOML does, its text
    :data:`TOO_DEEP` or :data:`TOO_LONG`."""
    problem = TOO_DEEP
    try:
        value = tomllib.loads(text)
    except RecursionError:
        value = None
    except tomllib.TOMLDecodeError:
        raise
    except ValueError:  # int() of the literal: past sys.get_int_max_str_digits()
        problem, value = TOO_LONG, None
    else:
        if not too_deep(value, MAX_DEPTH + 1):  # the document's own table is a level
            return value
    raise tomllib.TOMLDecodeError(problem)
