"""What a text file of a dataset must be, and when it is checked.

The ``text`` dataset's files (``data.path``) must be readable and hold no NUL byte: byte ``0``
separates documents of byte tokens, and no text file holds one (a binary file does — an image, a
``.pyc``, an archive — and so does UTF-16 text). With a tokenizer they must also be UTF-8. The
``hf`` dataset's uncompressed ``.txt`` files (``data.files``) are held to the same rules, and must
always be UTF-8: Hugging Face ``datasets`` decodes them as UTF-8 whatever the tokens
(:data:`HF_TEXT`). Each rule is refused in one line naming the file, the offset of the first
offending byte and how to fix it.

When: :func:`check_files` reads every file **whole** as the corpus opens, before a run writes
anything, in 1 MiB reads (constant memory), so a bad byte anywhere stops the command before
training. Measured on one 300 MiB file in the page cache, 2 shared cores: 0.15 s for byte tokens,
0.27 s with a tokenizer on ASCII text (ASCII is told apart with ``bytes.isascii``), 1.8 s on French
text with an accented letter in every word (which must be decoded) — about 0.5 to 6 s per GiB, a
small part of what tokenizing that text costs. The data is read again when batches need it (from
the page cache when it fits). A piece read for a batch is checked again
(:meth:`deepseek.data.corpus.Piece.text` and ``whole(strict=True)``): that catches a file edited
during the run, with the same line. Empty files hold no text and are skipped; files the folder's
glob does not reach, hidden ones and anything that is not a regular file (a folder named
``*.txt``) are not read.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Sequence
from dataclasses import dataclass

from deepseek.errors import UsageError
from deepseek.parsing import UnreadableFile, open_file

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Files:
    """Which setting names the files, and what to say about leaving one out."""

    field: str
    """The config key whose files these are (``data.path``)."""
    leave_out: str
    """How to leave a file out (``leave it out with data.pattern``)."""
    byte_tokens_read_any: bool
    """Whether byte tokens read a file that is not UTF-8 (the ``text`` dataset: they do)."""
    example: str = ""
    """An example of leaving files out, after :attr:`leave_out` where a binary file is refused."""


TEXT = Files("data.path", "leave it out with data.pattern", True, " (e.g. '**/*.txt')")
"""The ``text`` dataset's files."""
HF_TEXT = Files("data.files", "leave it out of data.files", False)
"""The ``hf`` dataset's ``.txt`` files, which ``datasets`` decodes as UTF-8."""


def binary_file(path: str, offset: int, files: Files = TEXT) -> UsageError:
    """``path`` holds a NUL byte at ``offset``."""
    return UsageError(
        f"{files.field}: {path!r} is not text (a NUL byte at offset {offset:,}: a binary file, or UTF-16 text); "
        f"{files.leave_out}{files.example}, or save it as UTF-8 text"
    )


def not_utf8(path: str, byte: int, offset: int, files: Files = TEXT) -> UsageError:
    """``path`` has ``byte`` at ``offset``, where UTF-8 has no such byte."""
    reader = "a tokenizer reads text" if files.byte_tokens_read_any else "the 'hf' dataset reads .txt files as UTF-8"
    bytes_hint = "; or train on byte tokens (no data.tokenizer)" if files.byte_tokens_read_any else ""
    return UsageError(
        f"{files.field}: {path!r} is not UTF-8 text (byte 0x{byte:02x} at offset {offset:,}); {reader}: "
        f"save the file as UTF-8 (iconv -f latin1 -t utf-8) or {files.leave_out}{bytes_hint}"
    )


def unreadable(path: str, exc: OSError, files: Files = TEXT) -> UsageError:
    """``path`` could not be opened or read (or is no regular file: :class:`~deepseek.parsing.UnreadableFile`)."""
    fix = "put a regular file there" if isinstance(exc, UnreadableFile) else "make it readable (chmod a+r)"
    return UsageError(f"{files.field}: {path!r} cannot be read ({exc.strerror or exc}); {fix} or {files.leave_out}")


def check_nul(path: str, data: bytes, offset: int, files: Files = TEXT) -> None:
    """Refuse ``data``, read from ``path`` at ``offset``, when it holds a NUL byte."""
    at = data.find(b"\0")
    if at >= 0:
        raise binary_file(path, offset + at, files)


def check_file(path: str, *, utf8: bool, files: Files = TEXT) -> None:
    """Read ``path`` whole, 1 MiB at a time, and refuse what the module docstring lists; ``utf8``:
    the bytes must be UTF-8 too."""
    decoder = codecs.getincrementaldecoder("utf-8")() if utf8 else None
    done = 0
    try:
        with open_file(path) as f:  # a regular file: a FIFO put there after the caller's check would block
            while chunk := f.read(_CHUNK):
                check_nul(path, chunk, done, files)
                if decoder is not None:
                    _decode(decoder, path, chunk, done, files, final=False)
                done += len(chunk)
    except OSError as exc:
        raise unreadable(path, exc, files) from None
    if decoder is not None:  # a character cut by the end of the file
        _decode(decoder, path, b"", done, files, final=True)


def _decode(decoder: codecs.IncrementalDecoder, path: str, chunk: bytes, offset: int, files: Files, *,
            final: bool) -> None:
    pending = len(decoder.getstate()[0])  # bytes of a character the chunk before began
    if not pending and chunk.isascii():  # ASCII is UTF-8 (and much faster to tell)
        return
    try:
        decoder.decode(chunk, final=final)
    except UnicodeDecodeError as exc:
        raise not_utf8(path, exc.object[exc.start], offset - pending + exc.start, files) from None


def check_files(paths: Sequence[str], *, utf8: bool, files: Files = TEXT) -> None:
    """Check each of ``paths`` (regular files) whole, up front (module docstring)."""
    for path in paths:
        try:
            size = os.path.getsize(path)
        except OSError as exc:
            raise unreadable(path, exc, files) from None
        if size:
            check_file(path, utf8=utf8, files=files)
