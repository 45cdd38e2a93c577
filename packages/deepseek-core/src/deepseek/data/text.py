"""The ``text`` dataset: tokens of the embedded corpus or of your text files, packed.

Tokens are bytes (vocabulary 256), or with ``data.tokenizer`` the ids of a Hugging Face
``tokenizer.json`` (the model's vocabulary then follows the tokenizer, and the run folder keeps
a copy of it): see :mod:`deepseek.data.packed`.

Batches are ``{"input_ids": x, "targets": y}``, both ``(batch_size, seq_len)`` int64 with ``y``
being ``x`` shifted by one token: what the GPT models take. See :mod:`deepseek.data.corpus` for the
corpus and the train/validation split, :mod:`deepseek.data.loader` for packing and resuming.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from deepseek.data.packed import TokenDataset, TokenOptions
from deepseek.errors import ConfigError

if TYPE_CHECKING:
    from deepseek.data.sources import DocSource
    from deepseek.data.tokenizer import Tokenizer


@dataclass(frozen=True)
class TextOptions(TokenOptions):
    """``[data]`` keys of the ``text`` dataset."""

    path: str = ""
    """A text file or a folder of text files, streamed; empty: the embedded corpus (the running
    Python's standard-library sources). Stored as an absolute path."""
    pattern: str = ""
    """Glob of files to read under a ``path`` folder (default ``**/*``: every non-hidden file); with
    ``path`` a file or empty it selects nothing, and a warning says so."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.path:
            return
        path = Path(self.path).expanduser()
        if not path.exists():
            from deepseek.paths import broken_link

            link = broken_link(path)
            if link is not None:
                raise ConfigError(f"data.path: {self.path!r} {link}; point it at the text file or folder itself")
            raise ConfigError(
                f"data.path: {self.path!r} does not exist; point it at a text file or a folder "
                "of text files, or leave it empty for the embedded corpus"
            )
        object.__setattr__(self, "path", str(path.resolve()))


class TextDataset(TokenDataset):
    """Packed token rows of a text corpus (global batches, seeded, resumable)."""

    Options = TextOptions

    def open_source(self, tokenizer: Tokenizer) -> DocSource:
        from deepseek.data.corpus import open_corpus
        from deepseek.data.sources import PieceSource
        from deepseek.data.tokenizer import ByteTokenizer

        o = self.options
        corpus = open_corpus(o.path or None, pattern=o.pattern or None, val_fraction=o.val_fraction,
                             utf8=not isinstance(tokenizer, ByteTokenizer))
        return PieceSource(corpus, tokenizer)
