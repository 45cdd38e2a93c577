"""Checksums of a committed checkpoint's files: the CRC-32 of every file, written into its commit
record (``commit.json``'s ``crc32``, beside the sizes) when the checkpoint is committed, and
checked when a command takes the checkpoint (:func:`~deepseek.training.checkpoint_lookup.resolve_checkpoint`).
A file changed after the commit with its size kept (a flipped bit on disk, a copy gone wrong, an
edit) is found before any of its values is used; the sizes alone found only truncation.

CRC-32 detects accidental damage, as in zip and PNG files; it is no defence against a deliberate
forgery (whoever can edit a file can edit the record). It reads ~4 GB/s on one core, so a
checkpoint of a 1.3B-parameter model with its AdamW state (~15 GB) costs a few seconds when
committed and when taken. Checkpoints committed before records carried checksums are taken on
their sizes alone.
"""

from __future__ import annotations

import functools
import os
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path

_CHUNK = 16 << 20
_HEX = frozenset("0123456789abcdef")


def crc32_of(path: str | os.PathLike[str], limit: int | None = None) -> str:
    """The CRC-32 of a file's bytes, as 8 lowercase hex digits; ``limit``: of its first ``limit +
    1`` bytes at most (a file checked against a record of ``limit`` bytes that has grown since its
    size was checked is read no further than it takes to differ). Opened through
    :func:`deepseek.parsing.open_file`: a FIFO put in the place of a committed file since its
    stat is an ``OSError`` (not a regular file), never waited on."""
    from deepseek.parsing import open_file

    crc, left = 0, None if limit is None else limit + 1
    with open_file(path) as fh:
        while chunk := fh.read(_CHUNK if left is None else min(_CHUNK, left)):
            crc = zlib.crc32(chunk, crc)
            if left is not None and not (left := left - len(chunk)):
                break
    return f"{crc:08x}"


def checksums_of(directory: Path, names: Iterable[str]) -> dict[str, str]:
    """``{name: crc32}`` of the files ``names`` (relative paths) under ``directory``."""
    return {name: crc32_of(directory / name) for name in names}


def is_checksum(value: object) -> bool:
    """``value`` is a checksum as a commit record holds it: 8 lowercase hex digits."""
    return isinstance(value, str) and len(value) == 8 and set(value) <= _HEX


def checksum_problem(directory: Path, recorded: Mapping[str, str], sizes: Mapping[str, int] | None = None) -> str | None:
    """Which file of ``directory`` no longer has the checksum its commit record lists, in one
    phrase, or None. ``sizes``: the byte sizes the record gives them; a file of another size now
    is named so before any file is read (a checksum reads the whole file: a record listing a file
    that has grown to gigabytes since is refused by its size, not read), and none is read past
    its recorded size. Each file is read once per process for as long as its size and
    modification time stay as they were."""
    sizes = sizes or {}
    try:
        stats = tuple((name, *_identity(directory / name)) for name in sorted(recorded))
    except OSError as exc:
        return f"cannot read {exc.filename}: {exc.strerror}"
    for name, _, size, _ in stats:
        if name in sizes and size != sizes[name]:
            return size_problem(name, size, sizes[name])
    return _problem(str(directory.resolve()), stats, tuple(sorted(recorded.items())),
                    tuple(sorted(sizes.items())))


def size_problem(name: str, size: int, recorded: int) -> str:
    """A committed file ``name`` of ``size`` bytes whose commit record gives ``recorded``, in one phrase."""
    return f"{name} is corrupt or truncated: {size} bytes, {recorded} were written"


def _identity(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=32)
def _problem(directory: str, stats: tuple[tuple[str, int, int, int], ...],
             recorded: tuple[tuple[str, str], ...], sizes: tuple[tuple[str, int], ...] = ()) -> str | None:
    """:func:`checksum_problem` of files identified by ``stats`` (inode, size, mtime): a file
    rewritten since gets another key and is read again; none read past its size in ``sizes``."""
    limits = dict(sizes)
    for name, want in recorded:
        try:
            got = crc32_of(Path(directory) / name, limits.get(name))
        except OSError as exc:
            return f"cannot read {name}: {exc.strerror}"
        if got != want:
            return f"{name} changed after it was committed: its CRC-32 is {got}, the commit recorded {want}"
    return None
