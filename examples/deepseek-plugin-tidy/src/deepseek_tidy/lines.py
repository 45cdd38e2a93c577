"""Dataset ``tidy.source-lines``: lines of the running Python's standard-library sources, each
labelled ``code``, ``comment`` or ``import``, as byte ids padded to a fixed width.

Batches are nested: ``{"line": {"ids": (B, W) int64, "mask": (B, W) bool}, "label": (B,) int64}``,
which the trainer handles like any pytree of tensors. Files go to validation by a stable hash of
their path; training rows are drawn from ``(seed, batch index)``, so the position is one integer
and a resumed run sees the same batches.
"""

from __future__ import annotations

import hashlib
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from deepseek.data.dataset import Dataset
from deepseek.errors import UsageError

LABELS = ("code", "comment", "import")


def label_of(line: str) -> int | None:
    """The class of a source line (``None``: blank, left out)."""
    text = line.strip()
    if not text:
        return None
    if text.startswith("#"):
        return 1
    if text.startswith(("import ", "from ")):
        return 2
    return 0


def positive(value: int) -> str | None:
    """Field check of the tidy options: 1 or more."""
    return None if value >= 1 else "must be >= 1"


@dataclass(frozen=True)
class LinesOptions:
    """``[data]`` keys of ``tidy.source-lines``."""

    width: int = field(default=48, metadata={"check": positive})
    """Bytes kept per line (longer lines are cut, shorter ones padded)."""
    files: int = field(default=200, metadata={"check": positive})
    """Standard-library files read (the first ones by path)."""
    val_fraction: float = 0.1
    """Share of files held out for validation."""


class SourceLines(Dataset):
    """Labelled source lines; see the module docstring."""

    Options = LinesOptions
    vocab_size = 256

    def __init__(self, options: LinesOptions, *, batch_size: int, seed: int) -> None:
        super().__init__(options, batch_size=batch_size, seed=seed)
        root = Path(sysconfig.get_paths()["stdlib"])
        paths = sorted(p for p in root.glob("*.py"))[: options.files]
        train: list[tuple[bytes, int]] = []
        val: list[tuple[bytes, int]] = []
        for path in paths:
            held_out = int(hashlib.blake2b(path.name.encode(), digest_size=4).hexdigest(), 16) / 2**32 < options.val_fraction
            rows = val if held_out else train
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                label = label_of(line)
                if label is not None:
                    rows.append((line.strip().encode("utf-8")[: options.width], label))
        if not train or not val:
            raise UsageError(f"data.files: {options.files} files give no {'training' if not train else 'validation'} "
                             "lines; read more files or change data.val_fraction")
        self.train_ids, self.train_mask, self.train_labels = self._encode(train)
        self.val = self._encode(val)
        self.index = 0

    def _encode(self, rows: list[tuple[bytes, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        width = self.options.width
        ids = torch.zeros(len(rows), width, dtype=torch.int64)
        mask = torch.zeros(len(rows), width, dtype=torch.bool)
        for i, (data, _) in enumerate(rows):
            ids[i, : len(data)] = torch.tensor(list(data), dtype=torch.int64)
            mask[i, : len(data)] = True
        return ids, mask, torch.tensor([label for _, label in rows])

    def _batch(self, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
        return {"line": {"ids": ids, "mask": mask}, "label": labels}

    def __next__(self) -> dict[str, Any]:
        self.index += 1
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.index)
        pick = torch.randint(0, len(self.train_labels), (self.batch_size,), generator=g)
        return self._batch(self.train_ids[pick], self.train_mask[pick], self.train_labels[pick])

    def validation_batches(self, limit: int) -> list[dict[str, Any]]:
        ids, mask, labels = self.val
        n = min(limit, len(labels) // self.batch_size) or 1
        return [self._batch(*(t[i * self.batch_size:(i + 1) * self.batch_size] for t in (ids, mask, labels)))
                for i in range(n)]

    def state_dict(self) -> dict[str, Any]:
        return {"index": self.index, "seed": self.seed, "rows": len(self.train_labels)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if (state.get("seed"), state.get("rows")) != (self.seed, len(self.train_labels)):
            raise UsageError("data position: saved for another seed or other source files; use the same "
                             "train.seed and data settings, or start a new run")
        self.index = int(state["index"])
