"""Byte-level tokenizer: a token is one byte of the UTF-8 encoding (vocabulary 256)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

SEPARATOR = 0
"""Byte placed between documents in packed streams (NUL never occurs in text files)."""


class ByteTokenizer:
    """UTF-8 bytes as tokens. ``decode`` replaces invalid sequences (a sampled model may emit
    half a multi-byte character) with U+FFFD instead of failing."""

    vocab_size: ClassVar[int] = 256
    separator: ClassVar[int] = SEPARATOR

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``: its UTF-8 bytes."""
        return list(text.encode("utf-8"))

    def decode(self, ids: Iterable[int] | Any) -> str:
        """Text of token ids (a list, bytes, or a 1-D tensor/array); invalid UTF-8 becomes U+FFFD."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        try:
            data = bytes(ids)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"ByteTokenizer.decode: token ids must be integers in 0..255 ({exc})") from exc
        return data.decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        return "ByteTokenizer(vocab_size=256)"
