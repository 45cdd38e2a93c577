"""A plugin dataset for the tests of the run tokenizer's check (``weights_source.check_data_tokenizer``):
it reads its ``data.tokenizer`` file by path, keeps it in the run folder and records its identity
in its data position, as core's text data does (the BPE parser, ``tokenizers``, is not in core's
environment). A test subclasses :class:`TokFile` with the rows its model takes (:meth:`TokFile.rows`).
Shared by tests/core/optimize/test_serving_run_tokenizer.py and
tests/enterprise/test_run_tokenizer_held.py, which loads it by its path (tests/core is not on the
enterprise tests' ``sys.path``: tests/enterprise/_core_tests.py says why)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from deepseek.data.dataset import Dataset
from deepseek.data.tokenizer import TOKENIZER_FILE, tokenizer_identity


@dataclass(frozen=True)
class TokFileOptions:
    tokenizer: str = ""


class TokFile(Dataset):
    """Seeded rows (:meth:`rows`), under the identity of the ``tokenizer.json`` it reads by path."""

    Options = TokFileOptions

    def __init__(self, options: Any, *, batch_size: int, seed: int) -> None:
        super().__init__(options, batch_size=batch_size, seed=seed)
        self.identity = tokenizer_identity(Path(options.tokenizer)) if options.tokenizer else "bytes"
        self.index = 0

    def rows(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """One batch, drawn from ``generator`` (seeded per batch)."""
        raise NotImplementedError

    def _batch(self, seed: int) -> dict[str, torch.Tensor]:
        return self.rows(torch.Generator().manual_seed(seed))

    def __next__(self) -> dict[str, torch.Tensor]:
        self.index += 1
        return self._batch(self.seed * 1000 + self.index)

    def validation_batches(self, limit: int) -> list[dict[str, torch.Tensor]]:
        return [self._batch(10**6 + i) for i in range(min(limit, 2))]

    def state_dict(self) -> dict[str, Any]:
        return {"index": self.index, "tokenizer": self.identity}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.index = int(state["index"])

    def run_files(self) -> dict[str, Path]:
        return {TOKENIZER_FILE: Path(self.options.tokenizer)} if self.options.tokenizer else {}
