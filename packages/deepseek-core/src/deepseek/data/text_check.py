"""What the ``text`` dataset asks of each file of ``data.path``, and when it is checked.

A file must be readable, and hold no NUL byte: byte ``0`` separates documents of byte tokens, and
no text file holds one (a binary file does — an image, a ``.pyc``, an archive — and so does UTF-16
text). With a tokenizer it must also be UTF-8. Each rule is refused in one line naming the file
(and the offset of the first offending byte) and how to fix it.

When: :func:`check_files` runs as the corpus opens, before a run writes anything. It reads every
file whole while the files total at most :data:`CHECK_WHOLE_BYTES` (256 MiB; measured on 2,000
files of 200 MB in the page cache, 2 shared cores: 0.11 s for byte tokens, 0.13 s with a tokenizer
on ASCII text, 0.46 s on text with an accented letter every few words, which must be decoded); a
larger corpus has the first :data:`CHECK_HEAD_BYTES` (64 KiB) of each file checked up front (0.08
to 0.3 s for those files), and the rest when its piece is read
(:meth:`deepseek.data.corpus.Piece.text` and ``whole(strict=True)``), with the same line. Empty files hold no text and are skipped; files the folder's glob does not reach,
hidden ones and anything that is not a regular file (a folder named ``*.txt``) are not read.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Sequence

from deepseek.errors import UsageError

CHECK_WHOLE_BYTES = 256 << 20
CHECK_HEAD_BYTES = 64 << 10
_CHUNK = 1 << 20


def binary_file(path: str, offset: int) -> UsageError:
    """``path`` holds a NUL byte at ``offset``."""
    return UsageError(
        f"data.path: {path!r} is not text (a NUL byte at offset {offset:,}: a binary file, or UTF-16 text); leave "
        "it out with data.pattern (e.g. '**/*.txt'), or save it as UTF-8 text"
    )


def not_utf8(path: str, byte: int, offset: int) -> UsageError:
    """``path`` has ``byte`` at ``offset``, where UTF-8 has no such byte."""
    return UsageError(
        f"data.path: {path!r} is not UTF-8 text (byte 0x{byte:02x} at offset {offset:,}); a tokenizer reads text: "
        "save the file as UTF-8 (iconv -f latin1 -t utf-8) or leave it out with data.pattern; or train on byte "
        "tokens (no data.tokenizer)"
    )


def unreadable(path: str, exc: OSError) -> UsageError:
    """``path`` could not be opened or read."""
    return UsageError(
        f"data.path: {path!r} cannot be read ({exc.strerror or exc}); make it readable (chmod a+r) or leave it "
        "out with data.pattern"
    )


def check_nul(path: str, data: bytes, offset: int) -> None:
    """Refuse ``data``, read from ``path`` at ``offset``, when it holds a NUL byte."""
    at = data.find(b"\0")
    if at >= 0:
        raise binary_file(path, offset + at)


def check_file(path: str, *, utf8: bool, limit: int) -> None:
    """Read the first ``limit`` bytes of ``path`` (all of a smaller file) and refuse what the
    module docstring lists; ``utf8``: the bytes must be UTF-8 too."""
    decoder = codecs.getincrementaldecoder("utf-8")() if utf8 else None
    done = 0
    try:
        with open(path, "rb") as f:
            while done < limit:
                chunk = f.read(min(_CHUNK, limit - done))
                if not chunk:
                    break
                check_nul(path, chunk, done)
                if decoder is not None:
                    _decode(decoder, path, chunk, done, final=False)
                done += len(chunk)
            whole = not f.read(1)
    except OSError as exc:
        raise unreadable(path, exc) from None
    if decoder is not None and whole:  # a character cut by the end of the file
        _decode(decoder, path, b"", done, final=True)


def _decode(decoder: codecs.IncrementalDecoder, path: str, chunk: bytes, offset: int, *, final: bool) -> None:
    pending = len(decoder.getstate()[0])  # bytes of a character the chunk before began
    if not pending and chunk.isascii():  # ASCII is UTF-8 (and much faster to tell)
        return
    try:
        decoder.decode(chunk, final=final)
    except UnicodeDecodeError as exc:
        raise not_utf8(path, exc.object[exc.start], offset - pending + exc.start) from None


def check_files(paths: Sequence[str], *, utf8: bool) -> None:
    """Check each of ``paths`` (regular files) up front, whole or its head (module docstring)."""
    try:
        sizes = [os.path.getsize(p) for p in paths]
    except OSError as exc:
        raise unreadable(str(exc.filename), exc) from None
    limit = max(sizes, default=0) if sum(sizes) <= CHECK_WHOLE_BYTES else CHECK_HEAD_BYTES
    for path, size in zip(paths, sizes, strict=True):
        if size:
            check_file(path, utf8=utf8, limit=limit)
