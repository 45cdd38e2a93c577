"""Packed token datasets: the ``[data]`` keys they share and their :class:`Dataset` base.

The ``text`` and ``hf`` datasets differ only in where documents come from (a
:class:`~deepseek.data.sources.DocSource`); tokenizing (bytes or ``data.tokenizer``), packing
into ``{"input_ids", "targets"}`` rows, validation batches, the resumable position, the model's
vocabulary and the run folder's tokenizer copy are this module's, once.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepseek.data.batch import Batch
from deepseek.data.dataset import Dataset, PredictedText
from deepseek.errors import ConfigError
from deepseek.parsing import loads_json, read_text

if TYPE_CHECKING:
    from deepseek.data.sources import DocSource
    from deepseek.data.tokenizer import Tokenizer


IGNORE_INDEX = -100
"""Targets equal to this are not predicted (the GPT's cross-entropy ignores them)."""


def _positive(value: int) -> str | None:
    return None if value >= 1 else "must be >= 1"


def _fraction(value: float) -> str | None:
    return None if 0.0 <= value < 1.0 else "must be in [0, 1)"


@dataclass(frozen=True)
class TokenOptions:
    """``[data]`` keys of every packed token dataset."""

    seq_len: int = field(default=128, metadata={"check": _positive})
    """Tokens per row."""
    val_fraction: float = field(default=0.05, metadata={"check": _fraction})
    """Share of files (by a stable hash of their names) held out for validation."""
    shuffle_buffer: int = field(default=1024, metadata={"check": _positive})
    """Rows shuffled together; memory is about ``shuffle_buffer * seq_len`` tokens."""
    tokenizer: str = ""
    """A Hugging Face ``tokenizer.json``, or a ``transformers`` tokenizer folder holding one
    (``deepseek tokenizer train`` writes one; needs ``pip install 'deepseek-core[hf]'``): the data
    is its token ids, a model that sets no ``vocab_size`` gets its vocabulary, and the run folder
    keeps a copy. Empty: byte tokens. Stored as the file's absolute path."""
    separator_token: str = "<|endoftext|>"
    """With ``tokenizer``: its special token placed between documents. Left at this default: the
    ``eos_token`` a ``tokenizer_config.json`` beside it declares, when the tokenizer has it
    (stored resolved)."""

    def __post_init__(self) -> None:
        if not self.tokenizer:
            return
        import importlib.util

        from deepseek.data.bpe import INSTALL_HF

        if importlib.util.find_spec("tokenizers") is None:
            raise ConfigError(f"data.tokenizer: BPE tokenizers need the Hugging Face tokenizers library, which "
                              f"is not installed; {INSTALL_HF}, or leave data.tokenizer empty for byte tokens")
        from deepseek.data.bpe import MAX_TOKENIZER_BYTES, choose_separator, tokenizer_file
        from deepseek.errors import UsageError

        try:
            path = tokenizer_file(self.tokenizer, "data.tokenizer")
        except UsageError as exc:
            raise ConfigError(str(exc)) from None
        if not path.is_file():
            raise ConfigError(f"data.tokenizer: {self.tokenizer!r} is not a file; point it at a tokenizer.json "
                              "(or a transformers tokenizer folder; 'deepseek tokenizer train' writes one) or "
                              "leave it empty for byte tokens")
        if not self.separator_token:
            raise ConfigError("data.separator_token: must not be empty with data.tokenizer; name the "
                              "tokenizer's document-separator token, e.g. \"<|endoftext|>\"")
        try:
            spec = loads_json(read_text(path, MAX_TOKENIZER_BYTES))  # a 2 GiB file is not read whole
        except (OSError, UnicodeDecodeError, ValueError):
            spec = None  # refused in one line when the tokenizer is opened
        object.__setattr__(self, "tokenizer", str(path.resolve()))
        try:
            separator = choose_separator(path, spec, self.separator_token)
        except UsageError as exc:  # a tokenizer_config.json beside it that is not one
            raise ConfigError(f"data.tokenizer: {exc}") from None
        object.__setattr__(self, "separator_token", separator)


class TokenDataset(Dataset):
    """Packed token rows of a :class:`DocSource` (global batches, seeded, resumable).
    Subclasses build the source in :meth:`open_source`."""

    Options = TokenOptions
    vocab_size = 256  # byte tokens; a tokenizer's size with data.tokenizer

    def __init__(self, options: TokenOptions, *, batch_size: int, seed: int) -> None:
        from deepseek.data.loader import PackedBatches
        from deepseek.data.tokenizer import open_tokenizer

        super().__init__(options, batch_size=batch_size, seed=seed)
        self.tokenizer = open_tokenizer(options.tokenizer, options.separator_token)
        self.vocab_size = self.tokenizer.vocab_size
        self.loader = PackedBatches(
            self.open_source(self.tokenizer), options.seq_len, batch_size, "train", seed=seed,
            shuffle_buffer=options.shuffle_buffer,
        )

    @abstractmethod
    def open_source(self, tokenizer: Tokenizer) -> DocSource:
        """The documents of ``self.options``, tokenized by ``tokenizer``."""

    def __next__(self) -> Batch:
        x, y = next(self.loader)
        return {"input_ids": x, "targets": y}

    def validation_batches(self, limit: int) -> list[Batch]:
        return [{"input_ids": x, "targets": y} for x, y in self.loader.val_batches(limit)]

    def epochs_done(self) -> int:
        """Passes over the training files: the epoch the next batch's rows come from (rows are
        shuffled within a block of ``shuffle_buffer`` rows, so a pass ends with the block that
        holds its end)."""
        return self.loader.epoch

    def state_dict(self) -> dict[str, Any]:
        return self.loader.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loader.load_state_dict(state)

    def count_tokens(self, batch: Batch) -> int | None:
        return int(batch["input_ids"].numel())

    def predicted_text(self, batch: Batch) -> PredictedText | None:
        """The targets the loss does not ignore (``-100``) and the bytes they stand for, per the
        tokenizer's :meth:`~deepseek.data.tokenizer.Tokenizer.token_bytes` (``None`` when it has none)."""
        import torch

        sizes = self.tokenizer.token_bytes()
        if sizes is None:
            return None
        targets = batch["targets"]
        kept = targets[targets != IGNORE_INDEX]
        return PredictedText(int(kept.numel()), int(torch.tensor(sizes, dtype=torch.int64)[kept].sum()))

    @classmethod
    def model_vocab_size(cls, options: TokenOptions) -> int | None:
        """The tokenizer's vocabulary with ``data.tokenizer``; bytes leave the model's default."""
        from deepseek.data.tokenizer import open_tokenizer

        return open_tokenizer(options.tokenizer, options.separator_token).vocab_size if options.tokenizer else None

    def run_files(self) -> dict[str, Path]:
        """``tokenizer.json``: the tokenizer, when there is one."""
        from deepseek.data.tokenizer import TOKENIZER_FILE

        return {TOKENIZER_FILE: Path(self.options.tokenizer)} if self.options.tokenizer else {}
