"""Model ``tidy.line-classifier``: byte embeddings averaged over a line (padding masked), then
residual MLP blocks and a linear head over the three line kinds. It returns the loss and the
accuracy, and offers per-block structure and activation checkpointing (no pipeline stages)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from deepseek.models.protocol import TrainableModel
from torch import nn
from torch.utils.checkpoint import checkpoint

from deepseek_tidy.lines import LABELS, positive


@dataclass(frozen=True)
class ClassifierOptions:
    """``[model]`` keys of ``tidy.line-classifier``."""

    width: int = field(default=64, metadata={"check": positive})
    depth: int = field(default=2, metadata={"check": positive})
    dropout: float = 0.0


class Block(nn.Module):
    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc = nn.Linear(width, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(F.gelu(self.fc(self.norm(x))))


class LineClassifier(TrainableModel):
    """``model(line={"ids", "mask"}, label=...)`` -> ``{"loss", "accuracy"}``."""

    Options = ClassifierOptions

    def __init__(self, options: ClassifierOptions) -> None:
        super().__init__()
        self.embed = nn.Embedding(256, options.width)
        self.blocks = nn.ModuleList(Block(options.width, options.dropout) for _ in range(options.depth))
        self.head = nn.Linear(options.width, len(LABELS))
        self.checkpointing = False

    def forward(self, line: dict[str, torch.Tensor], label: torch.Tensor) -> dict[str, torch.Tensor]:
        mask = line["mask"].unsqueeze(-1).to(self.embed.weight.dtype)
        x = (self.embed(line["ids"]) * mask).sum(1) / mask.sum(1).clamp_min(1)
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False) if self.checkpointing else block(x)
        logits = self.head(x).float()
        return {"loss": F.cross_entropy(logits, label), "accuracy": (logits.argmax(-1) == label).float().mean()}

    def block_modules(self) -> list[nn.Module]:
        return list(self.blocks)

    def set_activation_checkpointing(self, enabled: bool) -> None:
        self.checkpointing = bool(enabled)
