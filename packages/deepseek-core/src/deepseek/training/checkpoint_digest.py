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


def crc32_of(path: str | os.PathLike[str]) -> str:
    """The CRC-32 of a file's bytes, as 8 lowercase hex digits. Opened through
    :func:`deepseek.parsing.open_file`: a FIFO put in the place of a committed file since its
    stat is an ``OSError`` (not a regular file), never waited on."""
    from deepseek.parsing import open_file

    crc = 0
    with open_file(path) as fh:
        while chunk := fh.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return f"{crc:08x}"


def checksums_of(directory: Path, names: Iterable[str]) -> dict[str, str]:
    """``{name: crc32}`` of the files ``names`` (relative paths) under ``directory``."""
    return {name: crc32_of(directory / name) for name in names}


def is_checksum(value: object) -> bool:
    """``value`` is a checksum as a commit record holds it: 8 lowercase hex digits."""
    return isinstance(value, str) and len(value) == 8 and set(value) <= _HEX


def checksum_problem(directory: Path, recorded: Mapping[str, str]) -> str | None:
    """Which file of ``directory`` no longer has the checksum its commit record lists, in one
    phrase, or None. Each file is read once per process for as long as its size and
    modification time stay as they were."""
    try:
        stats = tuple((name, *_identity(directory / name)) for name in sorted(recorded))
    except OSError as exc:
        return f"cannot read {exc.filename}: {exc.strerror}"
    return _problem(str(directory.resolve()), stats, tuple(sorted(recorded.items())))


def _identity(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=32)
def _problem(directory: str, stats: tuple[tuple[str, int, int, int], ...],
             recorded: tuple[tuple[str, str], ...]) -> str | None:
    """:func:`checksum_problem` of files identified by ``stats`` (inode, size, mtime): a file
    rewritten since gets another key and is read again."""
    for name, want in recorded:
        try:
            got = crc32_of(Path(directory) / name)
        except OSError as exc:
            return f"cannot read {name}: {exc.strerror}"
        if got != want:
            return f"{name} changed after it was committed: its CRC-32 is {got}, the commit recorded {want}"
    return None
