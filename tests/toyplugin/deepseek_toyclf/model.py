"""A residual MLP classifier following deepseek's model contract."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from deepseek.models.protocol import TrainableModel


@dataclass(frozen=True)
class MLPOptions:
    features: int = 16
    hidden: int = 32
    classes: int = 4
    depth: int = 2
    dropout: float = 0.0


class Block(nn.Module):
    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc = nn.Linear(width, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(F.gelu(self.fc(self.norm(x))))


class BlobClassifier(TrainableModel):
    Options = MLPOptions

    def __init__(self, options: MLPOptions) -> None:
        super().__init__()
        self.inp = nn.Linear(options.features, options.hidden)
        self.blocks = nn.ModuleList(Block(options.hidden, options.dropout) for _ in range(options.depth))
        self.head = nn.Linear(options.hidden, options.classes)
        self.checkpointing = False

    def forward(self, features: torch.Tensor, label: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.inp(features)
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False) if self.checkpointing else block(x)
        logits = self.head(x).float()
        return {"loss": F.cross_entropy(logits, label), "accuracy": (logits.argmax(-1) == label).float().mean()}

    def block_modules(self):
        return list(self.blocks)

    def set_activation_checkpointing(self, enabled: bool) -> None:
        self.checkpointing = bool(enabled)
