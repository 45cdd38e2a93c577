"""The ``text`` dataset: tokens of the embedded corpus or of your text files, packed.

Tokens are bytes (vocabulary 256), or with ``data.tokenizer`` the ids of a Hugging Face
``tokenizer.json`` (the model's vocabulary then follows the tokenizer, and the run folder keeps
a copy of it: :meth:`TextDataset.run_files`).

Batches are ``{"input_ids": x, "targets": y}``, both ``(batch_size, seq_len)`` int64 with ``y``
being ``x`` shifted by one token: what the GPT models take. See :mod:`deepseek.data.corpus` for the
corpus and the train/validation split, :mod:`deepseek.data.loader` for packing and resuming.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepseek.data.batch import Batch
from deepseek.data.dataset import Dataset
from deepseek.errors import ConfigError


def _positive(value: int) -> str | None:
    return None if value >= 1 else "must be >= 1"


def _fraction(value: float) -> str | None:
    return None if 0.0 <= value < 1.0 else "must be in [0, 1)"


@dataclass(frozen=True)
class TextOptions:
    """``[data]`` keys of the ``text`` dataset."""

    path: str = ""
    """A text file or a folder of text files, streamed; empty: the embedded corpus (the running
    Python's standard-library sources). Stored as an absolute path."""
    pattern: str = ""
    """Glob of files to read under a ``path`` folder (default ``**/*``: every non-hidden file)."""
    seq_len: int = field(default=128, metadata={"check": _positive})
    """Tokens per row."""
    val_fraction: float = field(default=0.05, metadata={"check": _fraction})
    """Share of files (by a stable hash of their names) held out for validation."""
    shuffle_buffer: int = field(default=1024, metadata={"check": _positive})
    """Rows shuffled together; memory is about ``shuffle_buffer * seq_len`` tokens."""
    tokenizer: str = ""
    """A Hugging Face ``tokenizer.json`` (``deepseek tokenizer train`` writes one; needs
    ``pip install 'deepseek-core[hf]'``): the data is its token ids, a model that sets no
    ``vocab_size`` gets its vocabulary, and the run folder keeps a copy. Empty: byte tokens.
    Stored as an absolute path."""
    separator_token: str = "<|endoftext|>"
    """With ``tokenizer``: its special token placed between documents."""

    def __post_init__(self) -> None:
        resolve_tokenizer_path(self)
        if not self.path:
            return
        path = Path(self.path).expanduser()
        if not path.exists():
            raise ConfigError(
                f"data.path: {self.path!r} does not exist; point it at a text file or a folder "
                "of text files, or leave it empty for the embedded corpus"
            )
        object.__setattr__(self, "path", str(path.resolve()))


def resolve_tokenizer_path(options: Any) -> None:
    """``data.tokenizer`` of a frozen options instance made absolute; a missing file or a
    missing ``tokenizers`` library is one line (the file itself is checked when opened)."""
    if not options.tokenizer:
        return
    import importlib.util

    from deepseek.data.bpe import INSTALL_HF

    if importlib.util.find_spec("tokenizers") is None:
        raise ConfigError(f"data.tokenizer: BPE tokenizers need the Hugging Face tokenizers library, which is "
                          f"not installed; {INSTALL_HF}, or leave data.tokenizer empty for byte tokens")
    path = Path(options.tokenizer).expanduser()
    if not path.is_file():
        raise ConfigError(f"data.tokenizer: {options.tokenizer!r} is not a file; point it at a tokenizer.json "
                          "('deepseek tokenizer train' writes one) or leave it empty for byte tokens")
    if not options.separator_token:
        raise ConfigError("data.separator_token: must not be empty with data.tokenizer; name the tokenizer's "
                          "document-separator token, e.g. \"<|endoftext|>\"")
    object.__setattr__(options, "tokenizer", str(path.resolve()))


class TextDataset(Dataset):
    """Packed token rows of a text corpus (global batches, seeded, resumable)."""

    Options = TextOptions
    vocab_size = 256  # byte tokens; a tokenizer's size with data.tokenizer

    def __init__(self, options: TextOptions, *, batch_size: int, seed: int) -> None:
        from deepseek.data.corpus import open_corpus
        from deepseek.data.loader import PackedBatches
        from deepseek.data.sources import PieceSource
        from deepseek.data.tokenizer import open_tokenizer

        super().__init__(options, batch_size=batch_size, seed=seed)
        self.tokenizer = open_tokenizer(options.tokenizer, options.separator_token)
        self.vocab_size = self.tokenizer.vocab_size
        corpus = open_corpus(options.path or None, pattern=options.pattern or None, val_fraction=options.val_fraction)
        self.loader = PackedBatches(
            PieceSource(corpus, self.tokenizer), options.seq_len, batch_size, "train", seed=seed,
            shuffle_buffer=options.shuffle_buffer,
        )

    @classmethod
    def model_vocab_size(cls, options: TextOptions) -> int | None:
        """The tokenizer's vocabulary with ``data.tokenizer``; bytes leave the model's default."""
        from deepseek.data.tokenizer import open_tokenizer

        return open_tokenizer(options.tokenizer, options.separator_token).vocab_size if options.tokenizer else None

    def run_files(self) -> dict[str, Path]:
        """``tokenizer.json``: the tokenizer, when there is one."""
        from deepseek.data.tokenizer import TOKENIZER_FILE

        return {TOKENIZER_FILE: Path(self.options.tokenizer)} if self.options.tokenizer else {}

    def __next__(self) -> Batch:
        x, y = next(self.loader)
        return {"input_ids": x, "targets": y}

    def validation_batches(self, limit: int) -> list[Batch]:
        return [{"input_ids": x, "targets": y} for x, y in self.loader.val_batches(limit)]

    def state_dict(self) -> dict[str, Any]:
        return self.loader.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loader.load_state_dict(state)

    def count_tokens(self, batch: Batch) -> int | None:
        return int(batch["input_ids"].numel())
