"""Where packed token streams come from: documents of a split, tokenized one at a time.

A :class:`DocSource` is what :class:`~deepseek.data.loader.PackedBatches` packs. It splits its
data into *units* per split (the ``text`` corpus: file pieces; the ``hf`` dataset: files), in a
canonical order that the training stream shuffles per epoch, and each unit into *documents*
(a piece is one document; a record of a file is one). A :class:`DocReader` gives the token ids
of document ``i`` of a unit; a stream holds only the document it is reading (and the one
before), so memory stays bounded whatever the data's size.

:class:`PieceSource` is the ``text`` corpus with a tokenizer: byte tokens (``uint8``, exactly
the bytes of the files; a NUL byte in a user's file is refused, see
:mod:`deepseek.data.text_check`) or a BPE tokenizer's ids of each piece (a piece's bytes decoded as UTF-8,
invalid sequences, e.g. a character cut at a 1 MiB piece boundary, replaced by U+FFFD).

Nothing here imports torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from deepseek.data.corpus import Piece, Split, TextCorpus
from deepseek.data.tokenizer import ByteTokenizer, Tokenizer
from deepseek.errors import UsageError


class DocReader(ABC):
    """Token ids of the documents of a split's units."""

    @abstractmethod
    def doc(self, unit: Any, index: int) -> np.ndarray | None:
        """Ids of document ``index`` of ``unit`` (1-D integer array, without the separator), or
        ``None`` past the unit's last document. Documents are asked for in order; an empty
        array is a document with no text (skipped, no separator)."""


class DocSource(ABC):
    """Units and documents of a train and a validation split (see the module docstring)."""

    tokenizer: Tokenizer
    single_doc: bool = False
    """Every unit is exactly one document (positions then need no document index)."""

    @abstractmethod
    def units(self, split: Split) -> Sequence[Any]:
        """The split's units in canonical order (not empty: raise a one-line UsageError)."""

    @abstractmethod
    def reader(self) -> DocReader:
        """A reader with its own state (one per stream)."""

    @abstractmethod
    def fingerprint(self, split: Split) -> str:
        """Short hash that changes when the split's data changes."""

    def describe(self, split: Split) -> str:
        """The split in words, for errors (the ``hf`` dataset names its files)."""
        return f"the {'training' if split == 'train' else 'validation'} split"

    def offset_limit(self, split: Split) -> int | None:
        """The largest token offset a saved position may hold inside a document, when known
        without reading the data (``None``: checked when the document is read)."""
        return None


class PieceReader(DocReader):
    """Pieces of a text corpus as single documents, in bytes or a tokenizer's ids."""

    def __init__(self, tokenizer: Tokenizer, *, strict_text: bool = True) -> None:
        self.tokenizer = tokenizer
        self.bytes = isinstance(tokenizer, ByteTokenizer)
        self.strict_text = strict_text  # the corpus's rule for files that are not text

    def doc(self, unit: Piece, index: int) -> np.ndarray | None:
        if index > 0:
            return None
        if not self.bytes:
            return np.asarray(self.tokenizer.encode(unit.text(strict=self.strict_text)), dtype=np.int32)
        return np.frombuffer(unit.whole(strict=self.strict_text), dtype=np.uint8)


class PieceSource(DocSource):
    """A :class:`TextCorpus` tokenized by ``tokenizer`` (bytes when ``None``)."""

    single_doc = True

    def __init__(self, corpus: TextCorpus, tokenizer: Tokenizer | None = None) -> None:
        self.corpus = corpus
        self.tokenizer = tokenizer or ByteTokenizer()

    def units(self, split: Split) -> list[Piece]:
        pieces = self.corpus.pieces(split)
        if not pieces:
            raise UsageError("data: this split holds no text; use a larger corpus or change data.val_fraction")
        return pieces

    def reader(self) -> DocReader:
        return PieceReader(self.tokenizer, strict_text=self.corpus.strict_text)

    def fingerprint(self, split: Split) -> str:
        return self.corpus.fingerprint(split)

    def offset_limit(self, split: Split) -> int | None:
        if isinstance(self.tokenizer, ByteTokenizer):
            return max(p.length for p in self.units(split))
        return None
